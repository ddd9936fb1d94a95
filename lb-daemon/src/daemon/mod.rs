//! The daemon as operators run it: a parent process ([`supervisor`]) and one child process per
//! subsystem, as keepalived: the VRRP child, and the checker child, which owns the virtual
//! servers' health checkers and the data plane.
//!
//! The BFD child runs the `bfd_instance` sessions ([`crate::bfd`]) and reports their states to
//! the parent, which passes them on to the VRRP child (`track_bfd`) and the checker child
//! (`BFD_CHECK`); each of those keeps the latest states in a watch channel its subsystem reads.
//!
//! A child is a [`Daemon`] in its [`Role`]: [`Daemon::start`] takes its pid file, reads the
//! configuration and sets up its subsystem; [`Daemon::run`] then re-applies the data plane
//! whenever a checker changes what it should forward, answers the parent's requests on the
//! [`control`] channel, and answers the signals the parent forwards until told to stop:
//! - SIGHUP reloads: a configuration with errors is refused (every error logged) and the running
//!   one stays; otherwise the data plane is handed the new desired state, of which it applies only
//!   the differences (an unrelated change disturbs no flow), and VRRP is restarted only if its
//!   part of the configuration changed, so unchanged instances keep their state; the checkers
//!   restart only if the virtual servers changed;
//! - SIGUSR1 / SIGUSR2 / SIGRTMIN+2 / SIGRTMAX-1 write keepalived's dump files ([`dump`]);
//! - SIGTERM / SIGINT stop: the VRRP child sends priority-0 adverts and removes its VIPs
//!   (unless `-V`); the checker child runs the `omega` scripts, then detaches and unpins the
//!   data plane unless `-I` leaves it forwarding for the next lbd;
//! - `lvs_sync_daemon` (checker child, XDP data plane): the connection sync ([`crate::sync`])
//!   sends the flows every refresh period while the parent says its VRRP instance is MASTER
//!   (`sync master` on the channel), and writes the flows it receives otherwise;
//! - the parent gone (the channel closed: it was killed): the VRRP child stops as on SIGTERM,
//!   so a backup takes over at once; the checker child leaves the data plane forwarding, as with
//!   `-I`, for the next lbd to adopt.
//!
//! - [`control`]: the parent-child channel;
//! - [`supervisor`]: the parent;
//! - [`logging`]: syslog / console / file, per `-S`, `-G`, `-l`, `-g`, `-D`;
//! - [`neighbours`]: the real servers' next hops, kept resolved;
//! - [`sched`]: each child's nice value, CPUs, memory locking and real-time scheduling;
//! - [`pidfile`]: keepalived's pid files;
//! - [`signals`]: the signals and what they ask for;
//! - [`status`]: `--status-listen`'s `/metrics` and `/status`.

pub mod control;
pub mod dump;
pub mod logging;
pub mod neighbours;
pub mod pidfile;
pub mod sched;
pub mod signals;
pub mod status;
pub mod supervisor;

use std::{path::Path, time::Instant};

use anyhow::Context as _;
use tracing::{error, info, warn};

use crate::bfd::{BfdEvent, BfdStates, BfdTask};
use crate::{
    check,
    cli::Args,
    config::{self, Config, Severity},
    dataplane::{
        AnyDataplane, Backend, Dataplane as _,
        ipvs::IpvsDataplane,
        xdp::{XdpDataplane, error_chain},
    },
    netlink::{Netlink, sysctl},
    vrrp::{
        Command, StopKind, VrrpTask,
        dbus::{self, Dbus},
        statics::Statics,
    },
};
use control::{Channel, ChildReport, ParentMessage};
use pidfile::PidFile;
use signals::{Request, Signals};

/// What a child process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// VRRP: instances, VIPs, routes, tracking, notify scripts.
    Vrrp,
    /// The virtual servers: health checkers and the data plane.
    Checker,
    /// The BFD sessions.
    Bfd,
}

impl Role {
    /// As keepalived's log names the child.
    pub fn name(self) -> &'static str {
        match self {
            Self::Vrrp => "VRRP",
            Self::Checker => "Healthcheck",
            Self::Bfd => "BFD",
        }
    }

    /// The value of [`control::ROLE_VAR`] for it.
    pub fn env_value(self) -> &'static str {
        match self {
            Self::Vrrp => "vrrp",
            Self::Checker => "checker",
            Self::Bfd => "bfd",
        }
    }

    /// The role named by an environment value.
    pub fn from_env_value(value: &str) -> Option<Self> {
        [Self::Vrrp, Self::Checker, Self::Bfd].into_iter().find(|r| r.env_value() == value)
    }

    /// The process name (`comm`) it takes with `process_names`: the configured one, else
    /// keepalived's default with lbd's prefix.
    pub fn process_name(self, config: &Config) -> String {
        let g = &config.global_defs;
        let configured = match self {
            Self::Vrrp => g.vrrp_process_name.clone(),
            Self::Checker => g.checker_process_name.clone(),
            Self::Bfd => g.bfd_process_name.clone(),
        };
        configured.unwrap_or_else(|| match self {
            Self::Vrrp => "lbd_vrrp".into(),
            Self::Checker => "lbd_ipvs".into(),
            Self::Bfd => "lbd_bfd".into(),
        })
    }
}

/// A child process's daemon.
#[derive(Debug)]
pub struct Daemon {
    role: Role,
    channel: Option<Channel>,
    /// The parent's channel closed: the parent was killed.
    parent_gone: bool,
    args: Args,
    config: Config,
    netlink: Netlink,
    dataplane: Option<AnyDataplane>,
    /// The checkers' last state when applying it failed, tried again on a timer.
    apply_retry: crate::dataplane::retry::ApplyRetry,
    /// The real servers' next hops the XDP data plane needs resolved.
    neighbours: neighbours::Neighbours,
    checks: Option<check::Runner>,
    interfaces: Vec<String>,
    /// `lvs_sync_daemon` (checker child, XDP data plane).
    sync: Option<crate::sync::SyncDaemon>,
    vrrp: Option<VrrpTask>,
    /// The VRRP child's D-Bus interface (`enable_dbus`).
    dbus: Option<Dbus>,
    /// The VRRP child's AgentX subagent (`enable_snmp_vrrp`, `enable_snmp_rfcv2/3`, `-x`).
    snmp: Option<crate::snmp::SnmpAgent>,
    /// The checker child's AgentX subagent (`enable_snmp_checker`, `-x`).
    snmp_checker: Option<crate::snmp::SnmpAgent<crate::snmp::checker::CheckerSource>>,
    /// The data plane's counters as last read, for the checker child's agent.
    snmp_counters: tokio::sync::watch::Sender<Vec<crate::dataplane::ServiceCounters>>,
    /// The VRRP child's `static_ipaddress` / `static_routes`.
    statics: Option<Statics>,
    /// The BFD child's sessions.
    bfd: Option<BfdTask>,
    /// The BFD sessions' states as the parent passes them on (VRRP and checker children).
    bfd_states: tokio::sync::watch::Sender<BfdStates>,
    signals: Signals,
    reloads: u64,
    reload_failures: u64,
    _pid_file: PidFile,
}

impl Daemon {
    /// Starts the subsystem of `role`; `channel` leads to the parent.
    pub async fn start(args: Args, role: Role, channel: Option<Channel>) -> anyhow::Result<Self> {
        // Handlers first: a HUP or TERM during start-up must not kill the daemon half set up.
        let signals = Signals::install().context("installing signal handlers")?;
        let pid_file = take_pid_file(&args, role)?;
        let (config, errors) = load(&args, true).context("reading the configuration")?;
        if config.global_defs.process_names
            && let Err(e) = nix::sys::prctl::set_name(&std::ffi::CString::new(role.process_name(&config))?)
        {
            warn!("setting the process name: {e}");
        }
        if errors > 0 {
            // As keepalived: what was wrong was left out, the rest runs.
            warn!("the configuration has {errors} errors (above); running without what they concern");
        }
        // vrrp_netlink_cmd_rcv_bufs: the VRRP child's command socket (VIPs, routes).
        let cmd_rcvbuf = match role {
            Role::Vrrp => crate::netlink::RcvBuf::from_keywords(
                config.global_defs.vrrp_netlink_cmd_rcv_bufs,
                config.global_defs.vrrp_netlink_cmd_rcv_bufs_force,
            ),
            Role::Checker | Role::Bfd => None,
        };
        let netlink = Netlink::connect_with(cmd_rcvbuf)?;
        let mut daemon = Self {
            role,
            channel,
            parent_gone: false,
            args,
            config,
            netlink,
            dataplane: None,
            apply_retry: crate::dataplane::retry::ApplyRetry::default(),
            neighbours: neighbours::Neighbours::default(),
            checks: None,
            interfaces: Vec::new(),
            sync: None,
            vrrp: None,
            dbus: None,
            snmp: None,
            snmp_checker: None,
            snmp_counters: tokio::sync::watch::Sender::new(Vec::new()),
            statics: None,
            bfd: None,
            bfd_states: tokio::sync::watch::Sender::new(BfdStates::new()),
            signals,
            reloads: 0,
            reload_failures: 0,
            _pid_file: pid_file,
        };
        match role {
            Role::Checker => daemon.start_dataplane().await?,
            Role::Vrrp => {
                daemon.statics = Some(Statics::install(&daemon.netlink, &daemon.config).await);
                let bfd = daemon.bfd_states.subscribe();
                daemon.dbus =
                    dbus::Settings::of(&daemon.config, daemon.args.namespace.as_deref()).map(Dbus::start);
                let events = daemon.dbus.as_ref().map(Dbus::events);
                let vrrp = VrrpTask::spawn(daemon.config.clone(), daemon.netlink.clone(), bfd, events);
                daemon.snmp = start_snmp(&daemon.args, &daemon.config, &vrrp);
                daemon.vrrp = Some(vrrp);
            }
            Role::Bfd => daemon.bfd = Some(BfdTask::spawn(&daemon.config)),
        }
        // Once set up: loading the XDP program spends seconds of CPU in one system call (the
        // verifier), which a real-time CPU limit would punish with SIGKILL.
        sched::ProcessSettings::of(role, &daemon.config.global_defs).apply(role);
        Ok(daemon)
    }

    /// What this child shows of itself in `/status` and `/metrics`.
    pub async fn report(&self, seq: u64) -> ChildReport {
        let virtual_servers = match self.dataplane.as_ref().map(|d| d.service_stats()) {
            Some(Ok(services)) => services,
            Some(Err(e)) => {
                warn!("reading the data plane's counters: {}", error_chain(&e));
                Vec::new()
            }
            None => Vec::new(),
        };
        ChildReport {
            seq,
            reload_failures: self.reload_failures,
            vrrp: self.vrrp.as_ref().map(|v| v.status().snapshot()).unwrap_or_default(),
            virtual_servers,
            checks: self
                .checks
                .as_ref()
                .map(|c| c.checkers().into_iter().map(Into::into).collect())
                .unwrap_or_default(),
            bfd: self.bfd_sessions().await.unwrap_or_default(),
        }
    }

    /// The BFD sessions, in the BFD child.
    async fn bfd_sessions(&self) -> Option<Vec<crate::bfd::SessionStatus>> {
        match &self.bfd {
            Some(bfd) => Some(bfd.status().await),
            None => None,
        }
    }

    async fn start_dataplane(&mut self) -> anyhow::Result<()> {
        let backend = self.args.dataplane.or(self.config.global_defs.lbd_dataplane).unwrap_or_default();
        let mut dataplane = match backend {
            Backend::Xdp => AnyDataplane::Xdp(self.start_xdp().await?),
            Backend::Ipvs => {
                let mut ipvs = IpvsDataplane::open().context("setting up the IPVS data plane")?;
                info!("forwarding with the kernel's IPVS (as keepalived)");
                if self.config.global_defs.lvs_flush {
                    ipvs.flush().context("lvs_flush: flushing IPVS")?;
                    info!("lvs_flush: IPVS flushed");
                }
                AnyDataplane::Ipvs(ipvs)
            }
        };
        // The checkers start with the data plane: alpha real servers are left out from the start.
        let checks = check::Runner::spawn_after(&self.config, None, &self.bfd_states.subscribe());
        apply_virtual_servers(&self.config, &checks.desired(), &self.interfaces, &mut dataplane)?;
        if let AnyDataplane::Xdp(_) = dataplane {
            self.neighbours.sync(&self.netlink, &crate::lvs::desired_state(&self.config).0).await;
        }
        match dataplane {
            AnyDataplane::Xdp(_) => self.sync = self.start_sync().await,
            AnyDataplane::Ipvs(_) if self.config.global_defs.lvs_sync_daemon.is_some() => {
                warn!("lvs_sync_daemon: not run with the IPVS data plane (only with lbd's XDP data plane)");
            }
            AnyDataplane::Ipvs(_) => {}
        }
        self.dataplane = Some(dataplane);
        self.snmp_checker =
            start_snmp_checker(&self.args, &self.config, &checks, self.snmp_counters.subscribe());
        self.checks = Some(checks);
        Ok(())
    }

    /// `lvs_sync_daemon`: opens the sync socket. A failure is logged and the daemon runs
    /// without the sync, as keepalived does when the kernel refuses its sync daemon.
    async fn start_sync(&self) -> Option<crate::sync::SyncDaemon> {
        let settings = crate::sync::SyncSettings::of(&self.config)?;
        let link = match self.netlink.link_by_name(&settings.interface).await {
            Ok(link) => link,
            Err(e) => {
                error!("lvs_sync_daemon: interface {}: {e}", settings.interface);
                return None;
            }
        };
        match crate::sync::SyncSocket::open(&settings, link.index) {
            Ok(socket) => {
                info!(
                    "lvs_sync_daemon: syncid {} on {} ({}), following {}",
                    settings.syncid, settings.interface, settings.group, settings.instance
                );
                Some(crate::sync::SyncDaemon::new(settings, socket))
            }
            Err(e) => {
                error!("{}", error_chain(&e));
                None
            }
        }
    }

    /// Loads the XDP program and attaches it to the interfaces it serves.
    async fn start_xdp(&mut self) -> anyhow::Result<XdpDataplane> {
        let mut dataplane =
            XdpDataplane::load(&self.args.bpf_pin_path).context("setting up the XDP data plane")?;
        let wanted = match (&self.args.xdp_interfaces, &self.config.global_defs.lbd_xdp_interfaces) {
            (flag, _) if !flag.is_empty() => flag.clone(),
            (_, keyword) => keyword.clone(),
        };
        self.interfaces = if wanted.is_empty() {
            self.netlink.links().await?.into_iter().filter(|l| l.up && !l.loopback).map(|l| l.name).collect()
        } else {
            wanted
        };
        for interface in dataplane.detach_others(&self.interfaces) {
            info!("XDP program detached from {interface} (no longer served)");
        }
        for interface in &self.interfaces {
            let attachment = dataplane.attach(interface, self.args.xdp_mode)?;
            match attachment.mode {
                Some(mode) => info!("XDP program attached to {interface} ({mode:?} mode)"),
                None => info!("XDP program replaced in the link an earlier lbd pinned on {interface}"),
            }
        }
        info!("maps pinned under {}", dataplane.pin_dir().display());
        Ok(dataplane)
    }

    /// Answers signals until one says stop, then stops.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let mut connections_tick = tokio::time::interval(std::time::Duration::from_secs(1));
        connections_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sync_next = tokio::time::Instant::now();
        let mut failed = None;
        loop {
            let request = tokio::select! {
                request = self.signals.next() => request,
                message = next_request(&mut self.channel) => {
                    let seq = match message {
                        Some(ParentMessage::Status(seq)) => seq,
                        Some(ParentMessage::SyncMaster(master)) => {
                            if let Some(sync) = &mut self.sync {
                                info!("lvs_sync_daemon: now {}", if master { "master" } else { "backup" });
                                sync.master = master;
                            }
                            continue;
                        }
                        Some(ParentMessage::Bfd(event)) => {
                            self.bfd_states.send_if_modified(|states| {
                                states.insert(event.name, event.up) != Some(event.up)
                            });
                            continue;
                        }
                        None => {
                            warn!("the parent process is gone: stopping");
                            self.parent_gone = true;
                            break;
                        }
                    };
                    let report = self.report(seq).await;
                    if let Some(channel) = &mut self.channel
                        && let Err(e) = channel.answer(&report).await
                    {
                        warn!("answering the parent: {e}");
                    }
                    continue;
                }
                _ = connections_tick.tick() => {
                    // uthreshold / lthreshold: the checkers weigh the reals' open connections;
                    // the checker child's SNMP agent serves the counters.
                    if let (Some(checks), Some(dataplane)) = (&self.checks, &self.dataplane)
                        && (checks.wants_connections() || self.snmp_checker.is_some())
                    {
                        match dataplane.service_stats() {
                            Ok(stats) => {
                                checks.connections(&stats);
                                if self.snmp_checker.is_some() {
                                    self.snmp_counters.send_replace(stats);
                                }
                            }
                            Err(e) => warn!("reading the connection counts: {}", error_chain(&e)),
                        }
                    }
                    continue;
                }
                flows = sync_receive(&mut self.sync) => {
                    if let (Some(AnyDataplane::Xdp(dataplane)), false) = (&mut self.dataplane, flows.is_empty()) {
                        match dataplane.install_synced(&flows) {
                            Ok(counts) if self.sync.as_ref().is_some_and(|s| s.counters.messages == 1) => {
                                info!("lvs_sync_daemon: first flows received from the master: {counts:?}");
                            }
                            Ok(counts) => tracing::debug!("lvs_sync_daemon: {counts:?}"),
                            Err(e) => warn!("lvs_sync_daemon: writing synced flows: {}", error_chain(&e)),
                        }
                    }
                    continue;
                }
                () = tokio::time::sleep_until(sync_next), if self.sync.as_ref().is_some_and(|s| s.master) => {
                    let started = std::time::Instant::now();
                    if let (Some(sync), Some(AnyDataplane::Xdp(dataplane))) = (&mut self.sync, &self.dataplane) {
                        match dataplane.synced_flows() {
                            Ok(flows) => sync.send(&flows).await,
                            Err(e) => warn!("lvs_sync_daemon: reading the flows: {}", error_chain(&e)),
                        }
                    }
                    sync_next = tokio::time::Instant::now() + crate::sync::refresh_after(started.elapsed());
                    continue;
                }
                event = bfd_event(&mut self.bfd) => {
                    if let Some(channel) = &mut self.channel
                        && let Err(e) = channel.send_bfd(&event).await
                    {
                        warn!("telling the parent BFD_Instance({})'s state: {e}", event.name);
                    }
                    continue;
                }
                ended = vrrp_ended(&mut self.vrrp) => {
                    // VRRP could not start: the child stops, and lbd with it (a permanent
                    // error), as keepalived's VRRP child does.
                    self.vrrp = None;
                    match ended {
                        Ok(()) => continue,
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                request = dbus_request(&mut self.dbus) => {
                    if let Some(e) = self.dbus_request(request).await {
                        failed = Some(e);
                        break;
                    }
                    continue;
                }
                desired = checks_changed(&mut self.checks) => {
                    if let Some(dataplane) = &mut self.dataplane {
                        match self.apply_retry.apply(dataplane, desired, std::time::Instant::now()) {
                            Ok(report) => info!("data plane: {report:?}"),
                            Err(e) => error!(
                                "applying the checkers' changes: {} (retrying in {:?})",
                                error_chain(&e),
                                self.apply_retry.due().map(|at| at.saturating_duration_since(std::time::Instant::now()))
                            ),
                        }
                    }
                    continue;
                }
                () = apply_due(&self.apply_retry) => {
                    if let Some(dataplane) = &mut self.dataplane {
                        match self.apply_retry.retry(dataplane, std::time::Instant::now()) {
                            Some(Ok(report)) => info!("data plane (retried): {report:?}"),
                            Some(Err(e)) => error!("applying the checkers' changes again: {}", error_chain(&e)),
                            None => {}
                        }
                    }
                    continue;
                }
            };
            match request {
                Request::Stop(signal) => {
                    // VRRP first, before anything is logged: its priority-0 adverts start the
                    // backups' Skew_Time.
                    if let Some(vrrp) = &self.vrrp {
                        vrrp.request_stop(self.stop_kind());
                        tokio::task::yield_now().await;
                    }
                    info!("received {signal}");
                    break;
                }
                Request::Reload => {
                    // An engine that failed as the signal came wins over it (it would have, had
                    // it been seen first): lbd stops rather than starting VRRP afresh, without
                    // what the failed engine held.
                    if let Some(e) = self.reload().await {
                        failed = Some(e);
                        break;
                    }
                }
                Request::Data => self.write_dump(dump::Kind::Data).await,
                Request::Stats => self.write_dump(dump::Kind::Stats).await,
                Request::StatsClear => self.write_dump(dump::Kind::StatsClear).await,
                Request::Json => self.write_dump(dump::Kind::Json).await,
            }
        }
        self.stop().await?;
        match failed {
            Some(e) => Err(anyhow::Error::new(e).context("VRRP could not start: stopping")),
            None => Ok(()),
        }
    }

    /// Carries out a D-Bus caller's request; a reload's VRRP failure, as [`Daemon::reload`].
    async fn dbus_request(&mut self, request: dbus::Request) -> Option<crate::vrrp::VrrpError> {
        match request {
            dbus::Request::PrintData { done } => {
                info!("Printing VRRP data on DBus request");
                self.write_dump(dump::Kind::Data).await;
                let _ = done.send(());
            }
            dbus::Request::PrintStats { clear, done } => {
                if clear {
                    info!("Printing and clearing VRRP stats on DBus request");
                    self.write_dump(dump::Kind::StatsClear).await;
                } else {
                    info!("Printing VRRP stats on DBus request");
                    self.write_dump(dump::Kind::Stats).await;
                }
                let _ = done.send(());
            }
            dbus::Request::SendGarp { instance, done } => match &self.vrrp {
                Some(vrrp) => vrrp.command(Command::SendGratuitous { instance, done }),
                None => {
                    let _ = done.send(false);
                }
            },
            // keepalived's VRRP child sends its parent SIGHUP: every child reloads.
            dbus::Request::ReloadConfig => match (&self.channel, nix::unistd::getppid()) {
                (Some(_), parent) if parent.as_raw() > 1 => {
                    if let Err(e) = nix::sys::signal::kill(parent, nix::sys::signal::Signal::SIGHUP) {
                        error!("DBus ReloadConfig: signalling the parent: {e}");
                    }
                }
                _ => return self.reload().await,
            },
        }
        None
    }

    /// SIGHUP: reads the configuration again and applies what changed. Returns the VRRP
    /// engine's failure if it had failed (it could not start) before the reload reached it: the
    /// reload then leaves VRRP stopped.
    pub async fn reload(&mut self) -> Option<crate::vrrp::VrrpError> {
        let started = Instant::now();
        self.reloads += 1;
        info!("Reloading ...");
        if let Some(vrrp) = &mut self.vrrp
            && vrrp.is_finished()
        {
            let ended = vrrp.ended().await;
            self.vrrp = None;
            if let Err(e) = ended {
                return Some(e);
            }
        }
        let failed = self.reload_config().await;
        info!("Reload finished in {} usec", started.elapsed().as_micros());
        failed
    }

    async fn reload_config(&mut self) -> Option<crate::vrrp::VrrpError> {
        let config = match load(&self.args, true) {
            Ok((config, 0)) => config,
            Ok((_, errors)) => {
                self.reload_failures += 1;
                error!(
                    "Reload failed: {errors} errors in the configuration; the running configuration stays"
                );
                return None;
            }
            Err(e) => {
                self.reload_failures += 1;
                error!("Reload failed: {}; the running configuration stays", error_chain(e.as_ref()));
                return None;
            }
        };
        if let Some(dataplane) = &mut self.dataplane {
            let servers_changed = config.virtual_servers != self.config.virtual_servers
                || config.virtual_server_groups != self.config.virtual_server_groups
                || config.local_address_groups != self.config.local_address_groups;
            if servers_changed || self.checks.is_none() {
                // The old checkers go without their omega scripts (the servers are not going
                // down); unchanged checkers carry on from their verdicts.
                self.checks = Some(check::Runner::spawn_after(
                    &config,
                    self.checks.as_ref(),
                    &self.bfd_states.subscribe(),
                ));
            }
            if let (Some(snmp), Some(checks)) = (&self.snmp_checker, &self.checks)
                && let Some(source) =
                    checker_source(&self.args, &config, checks, self.snmp_counters.subscribe())
            {
                // The agent answers from the new configuration and checkers.
                snmp.follow(source);
            }
            let desired = self.checks.as_ref().map(check::Runner::desired).unwrap_or_default();
            match apply_virtual_servers(&config, &desired, &self.interfaces, dataplane) {
                Ok(()) => self.apply_retry.settled(),
                Err(e) => {
                    error!("Reload: {} (retrying)", error_chain(e.as_ref()));
                    self.apply_retry.failed(desired, std::time::Instant::now());
                }
            }
            if let AnyDataplane::Xdp(_) = dataplane {
                self.neighbours.sync(&self.netlink, &crate::lvs::desired_state(&config).0).await;
            }
        }
        if let Some(statics) = &mut self.statics {
            statics.reload(&self.netlink, &config).await;
        }
        let mut failed = None;
        if let Some(vrrp) = self.vrrp.take() {
            // The running engine's failure (it could not start, or panicked) as the reload
            // stopped it: lbd stops, as it would have had it been seen before the signal.
            match vrrp.reload(config.clone()).await {
                Ok(vrrp) => {
                    // The agent answers from the new engine (its parts and socket stay those
                    // it started with, as keepalived's).
                    if let Some(snmp) = &self.snmp {
                        snmp.follow(crate::snmp::agent::Source {
                            config: std::sync::Arc::new(config.clone()),
                            status: vrrp.status().clone(),
                            parts: snmp.current().parts,
                        });
                    }
                    self.vrrp = Some(vrrp);
                }
                Err(e) => failed = Some(e),
            }
        }
        if let Some(bfd) = self.bfd.take() {
            self.bfd = Some(if bfd.instances() == config.bfd_instances.as_slice() {
                info!("BFD configuration unchanged: every session keeps its state");
                bfd
            } else {
                info!("BFD configuration changed: restarting the sessions");
                bfd.stop(false).await;
                BfdTask::spawn(&config)
            });
        }
        if self.role == Role::Vrrp
            && dbus::Settings::of(&config, self.args.namespace.as_deref()).as_ref()
                != self.dbus.as_ref().map(Dbus::settings)
        {
            warn!(
                "enable_dbus / dbus_service_name / the D-Bus paths changed: they take effect at the next start"
            );
        }
        if let Some(dbus) = &self.dbus {
            dbus.reloaded(&config);
        }
        self.config = config;
        failed
    }

    async fn write_dump(&self, kind: dump::Kind) {
        let vrrp = self.vrrp.as_ref().map(|v| v.status().snapshot()).unwrap_or_default();
        let bfd = self.bfd_sessions().await;
        let source = dump::Source { config: &self.config, dataplane: self.dataplane.as_ref(), vrrp, bfd };
        match dump::write(kind, self.role, &source) {
            Some(Ok(path)) => {
                info!("{} written to {}", kind.what(), path.display());
                if kind == dump::Kind::StatsClear
                    && let Some(vrrp) = &self.vrrp
                {
                    vrrp.status().clear_stats();
                }
            }
            Some(Err(e)) => error!("writing the {}: {e}", kind.what()),
            None => {}
        }
    }

    /// How VRRP stops: `-V` keeps the VIPs.
    fn stop_kind(&self) -> StopKind {
        if self.args.dont_release_vrrp { StopKind::KeepVips } else { StopKind::Orderly }
    }

    /// Stops VRRP, then the data plane, as `-V` and `-I` say.
    pub async fn stop(self) -> anyhow::Result<()> {
        info!("Stopping");
        let kind = self.stop_kind();
        if let Some(vrrp) = self.vrrp
            && let Err(e) = vrrp.stop(kind).await
        {
            error!("{}", error_chain(&e));
        }
        if let Some(snmp) = self.snmp {
            // After VRRP: its notifications say each instance is shut down.
            snmp.stop().await;
        }
        if let Some(dbus) = self.dbus {
            dbus.stop().await;
        }
        if let Some(statics) = self.statics
            && !self.args.dont_release_vrrp
        {
            statics.remove(&self.netlink).await;
        }
        if let Some(bfd) = self.bfd {
            // The peers see the sessions go AdminDown rather than time out.
            bfd.stop(true).await;
        }
        if let Some(snmp) = self.snmp_checker {
            // Before the checkers: each virtual server's quorum notification says shutdown.
            snmp.stop().await;
        }
        if let Some(checks) = self.checks {
            // omega: the virtual servers' down scripts, before the data plane goes.
            checks.stop().await;
        }
        let keep = self.args.dont_release_ipvs || self.parent_gone;
        match self.dataplane {
            None => {}
            // keepalived deletes its virtual servers one by one unless -I.
            Some(AnyDataplane::Ipvs(_)) if keep => {
                info!("IPVS keeps the virtual servers (-I or parent gone)")
            }
            Some(AnyDataplane::Ipvs(mut ipvs)) => match self.config.global_defs.lvs_flush_on_stop {
                Some(config::model::LvsFlushOnStop::All) => {
                    ipvs.flush()?;
                    info!("lvs_flush_onstop: IPVS flushed");
                }
                // `VS`, or nothing said: lbd's own virtual servers go, one by one.
                Some(config::model::LvsFlushOnStop::Vs) | None => ipvs.remove()?,
            },
            Some(AnyDataplane::Xdp(dataplane)) => {
                match dataplane.stats() {
                    Ok(stats) => info!(
                        "packets seen: {}, passed: {}, dropped malformed: {}",
                        stats.rx_packets, stats.pass, stats.drop_malformed
                    ),
                    Err(e) => warn!("reading the counters: {}", error_chain(&e)),
                }
                if keep {
                    info!(
                        "{}: the XDP program stays attached and forwarding; the next lbd adopts its flows from {}",
                        if self.parent_gone { "parent gone" } else { "-I" },
                        dataplane.pin_dir().display()
                    );
                    dataplane.release();
                } else {
                    self.neighbours.release(&self.netlink).await;
                    dataplane.remove()?;
                }
            }
        }
        info!("Stopped");
        Ok(())
    }
}

/// The pid file of the child in `role` (`-r`, `-c`), keepalived's defaults where not given.
fn take_pid_file(args: &Args, role: Role) -> anyhow::Result<PidFile> {
    let path = match role {
        Role::Vrrp => args.vrrp_pid_file.as_deref().unwrap_or(Path::new(pidfile::DEFAULT_VRRP)),
        Role::Checker => args.checkers_pid_file.as_deref().unwrap_or(Path::new(pidfile::DEFAULT_CHECKERS)),
        Role::Bfd => args.bfd_pid_file.as_deref().unwrap_or(Path::new(pidfile::DEFAULT_BFD)),
    };
    Ok(PidFile::create(path)?)
}

/// Reads the configuration, logging its diagnostics (each with its file:line) if `log`, and
/// counts its errors.
fn load(args: &Args, log: bool) -> anyhow::Result<(Config, usize)> {
    let options = config::LoadOptions {
        config_id: args.config_id.clone(),
        all_config: args.all_config,
        deny_includes: false,
    };
    let loaded = config::load(&args.use_file, &options)?;
    let mut errors = 0;
    for d in &loaded.diagnostics {
        match d.severity {
            Severity::Error => {
                errors += 1;
                if log {
                    error!("{d}");
                }
            }
            Severity::Warning if log => warn!("{d}"),
            Severity::Notice if log => info!("{d}"),
            Severity::Warning | Severity::Notice => {}
        }
    }
    Ok((loaded.config, errors))
}

/// The next request of the parent, if there is a channel: `None` when the parent is gone.
async fn next_request(channel: &mut Option<Channel>) -> Option<ParentMessage> {
    match channel {
        Some(channel) => channel.next_request().await,
        None => std::future::pending().await,
    }
}

/// The next state report of the BFD sessions, if this child runs them.
/// The flows of the next sync datagram, if the sync runs.
async fn sync_receive(
    sync: &mut Option<crate::sync::SyncDaemon>,
) -> Vec<crate::dataplane::conns::SyncedFlow> {
    match sync {
        Some(sync) => sync.receive().await,
        None => std::future::pending().await,
    }
}

async fn bfd_event(bfd: &mut Option<BfdTask>) -> BfdEvent {
    match bfd {
        Some(bfd) => bfd.next_event().await,
        None => std::future::pending().await,
    }
}

/// The next request of the status listener, if there is one.
async fn recv_status(
    requests: &mut Option<tokio::sync::mpsc::Receiver<status::SnapshotRequest>>,
) -> Option<status::SnapshotRequest> {
    match requests {
        Some(requests) => requests.recv().await,
        None => std::future::pending().await,
    }
}

/// The next D-Bus request, if the interface runs.
async fn dbus_request(dbus: &mut Option<Dbus>) -> dbus::Request {
    match dbus {
        Some(dbus) => dbus.request().await,
        None => std::future::pending().await,
    }
}

/// The master agent's address: `-A`, else `snmp_socket`, else net-snmp's default (`None`,
/// said, if it is unusable).
fn snmp_address(args: &Args, config: &Config) -> Option<crate::snmp::MasterAddress> {
    crate::snmp::MasterAddress::of(
        args.snmp_agent_socket.as_deref(),
        config.global_defs.snmp_socket.as_deref(),
    )
    .map_err(|e| error!("SNMP: {e}"))
    .ok()
}

/// The VRRP child's AgentX subagent, if SNMP is enabled (`enable_snmp_vrrp`,
/// `enable_snmp_rfcv2`, `enable_snmp_rfcv3`, or `-x` for all), on `-A` / `snmp_socket`.
fn start_snmp(args: &Args, config: &Config, vrrp: &VrrpTask) -> Option<crate::snmp::SnmpAgent> {
    let parts = crate::snmp::mib::Parts::of(&config.global_defs, args.snmp);
    if !parts.any() {
        return None;
    }
    let address = snmp_address(args, config)?;
    let source = crate::snmp::agent::Source {
        config: std::sync::Arc::new(config.clone()),
        status: vrrp.status().clone(),
        parts,
    };
    Some(crate::snmp::SnmpAgent::spawn(address, source))
}

/// What the checker child's agent serves, if `enable_snmp_checker` (or `-x`) is on: the
/// checkers' part of KEEPALIVED-MIB, and the global scalars when the VRRP child does not
/// serve them (as keepalived's checker).
fn checker_source(
    args: &Args,
    config: &Config,
    checks: &check::Runner,
    counters: crate::snmp::checker::Counters,
) -> Option<crate::snmp::checker::CheckerSource> {
    if !(args.snmp || config.global_defs.enable_snmp_checker) {
        return None;
    }
    // The VRRP child serves them if it runs (not `-C`; some instance, or `--all`) with its
    // KEEPALIVED-MIB part.
    let vrrp_serves_globals = crate::snmp::mib::Parts::of(&config.global_defs, args.snmp).keepalived
        && !args.check_only
        && (args.all || !config.vrrp_instances.is_empty());
    Some(crate::snmp::checker::CheckerSource {
        config: std::sync::Arc::new(config.clone()),
        status: checks.status().clone(),
        traps: config.global_defs.enable_traps,
        globals: !vrrp_serves_globals,
        counters,
    })
}

/// The checker child's AgentX subagent, if `enable_snmp_checker` (or `-x`) is on, on `-A` /
/// `snmp_socket`.
fn start_snmp_checker(
    args: &Args,
    config: &Config,
    checks: &check::Runner,
    counters: crate::snmp::checker::Counters,
) -> Option<crate::snmp::SnmpAgent<crate::snmp::checker::CheckerSource>> {
    let source = checker_source(args, config, checks, counters)?;
    let address = snmp_address(args, config)?;
    Some(crate::snmp::SnmpAgent::spawn(address, source))
}

/// The VRRP engine's end, if it runs and ends by itself ([`VrrpTask::ended`]).
async fn vrrp_ended(vrrp: &mut Option<VrrpTask>) -> Result<(), crate::vrrp::VrrpError> {
    match vrrp {
        Some(vrrp) => vrrp.ended().await,
        None => std::future::pending().await,
    }
}

/// When a failed apply is due to be tried again (never, if none failed).
async fn apply_due(retry: &crate::dataplane::retry::ApplyRetry) {
    match retry.due() {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// The next desired state the checkers publish, if they run.
async fn checks_changed(checks: &mut Option<check::Runner>) -> crate::dataplane::DesiredState {
    match checks {
        Some(checks) => checks.changed().await,
        None => std::future::pending().await,
    }
}

/// Programs `desired` (the configuration's virtual servers as the checkers see them) into the
/// data plane, saying what of the configuration it cannot forward.
fn apply_virtual_servers(
    config: &Config,
    desired: &crate::dataplane::DesiredState,
    interfaces: &[String],
    dataplane: &mut AnyDataplane,
) -> anyhow::Result<()> {
    let (_, notes) = crate::lvs::desired_state(config);
    for note in notes {
        warn!("{note}");
    }
    if !desired.services.is_empty() {
        for interface in interfaces {
            if sysctl::enable_ipv4_forwarding(interface)? {
                info!(
                    "{interface}: IPv4 forwarding turned on (the data plane routes through the kernel's FIB)"
                );
            }
            if sysctl::enable_accept_local(interface)? {
                info!(
                    "{interface}: accept_local turned on (replies the kernel forwards carry the VIP as source)"
                );
            }
        }
        if desired.services.iter().any(|s| s.addr.vip.is_ipv6()) && sysctl::enable_ipv6_forwarding()? {
            info!("IPv6 forwarding turned on (the data plane routes through the kernel's FIB)");
        }
    }
    let report = dataplane.apply(desired).context("programming the virtual servers")?;
    if report.is_noop() {
        info!("data plane: {} virtual services, unchanged", desired.services.len());
    } else {
        info!("data plane: {} virtual services, {report:?}", desired.services.len());
    }
    for warning in &report.warnings {
        warn!("{warning}");
    }
    Ok(())
}
