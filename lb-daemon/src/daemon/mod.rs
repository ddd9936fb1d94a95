//! The daemon as operators run it: start, signals, reload, stop.
//!
//! [`Daemon::start`] takes the pid files, reads the configuration, sets up the data plane and
//! the health checkers (unless `-P`) and VRRP (unless `-C`); [`Daemon::run`] then re-applies
//! the data plane whenever a checker changes what it should forward, and answers signals until
//! told to stop:
//! - SIGHUP reloads: a configuration with errors is refused (every error logged) and the running
//!   one stays; otherwise the data plane is handed the new desired state, of which it applies only
//!   the differences (an unrelated change disturbs no flow), and VRRP is restarted only if its
//!   part of the configuration changed, so unchanged instances keep their state; the checkers
//!   restart only if the virtual servers changed;
//! - SIGUSR1 / SIGUSR2 / SIGRTMIN+2 / SIGRTMAX-1 write keepalived's dump files ([`dump`]);
//! - SIGTERM / SIGINT stop: VRRP first (priority-0 adverts, VIPs removed, unless `-V`), then the
//!   checkers (`omega` scripts), then the data plane, detached and unpinned unless `-I` leaves
//!   it forwarding for the next lbd.
//!
//! - [`logging`]: syslog / console / file, per `-S`, `-G`, `-l`, `-g`, `-D`;
//! - [`pidfile`]: keepalived's pid files;
//! - [`signals`]: the signals and what they ask for;
//! - [`status`]: `--status-listen`'s `/metrics` and `/status`.

pub mod dump;
pub mod logging;
pub mod pidfile;
pub mod signals;
pub mod status;

use std::{path::Path, time::Instant};

use anyhow::Context as _;
use tracing::{error, info, warn};

use crate::{
    check,
    cli::Args,
    config::{self, Config, Severity},
    dataplane::{
        Dataplane as _,
        xdp::{XdpDataplane, error_chain},
    },
    netlink::{Netlink, sysctl},
    vrrp::{StopKind, VrrpTask},
};
use pidfile::PidFile;
use signals::{Request, Signals};

/// The running daemon.
#[derive(Debug)]
pub struct Daemon {
    args: Args,
    config: Config,
    netlink: Netlink,
    dataplane: Option<XdpDataplane>,
    checks: Option<check::Runner>,
    interfaces: Vec<String>,
    vrrp: Option<VrrpTask>,
    signals: Signals,
    reloads: u64,
    reload_failures: u64,
    started: Instant,
    status_requests: Option<tokio::sync::mpsc::Receiver<status::SnapshotRequest>>,
    _pid_files: Vec<PidFile>,
}

impl Daemon {
    /// Starts every subsystem the command line and configuration ask for.
    pub async fn start(args: Args) -> anyhow::Result<Self> {
        // Handlers first: a HUP or TERM during start-up must not kill the daemon half set up.
        let signals = Signals::install().context("installing signal handlers")?;
        let pid_files = take_pid_files(&args)?;
        let (config, errors) = load(&args).context("reading the configuration")?;
        if errors > 0 {
            // As keepalived: what was wrong was left out, the rest runs.
            warn!("the configuration has {errors} errors (above); running without what they concern");
        }
        let netlink = Netlink::connect()?;
        let mut daemon = Self {
            args,
            config,
            netlink,
            dataplane: None,
            checks: None,
            interfaces: Vec::new(),
            vrrp: None,
            signals,
            reloads: 0,
            reload_failures: 0,
            started: Instant::now(),
            status_requests: None,
            _pid_files: pid_files,
        };
        if daemon.args.vrrp_only {
            info!("-P: VRRP only, no virtual servers");
        } else {
            daemon.start_dataplane().await?;
        }
        if daemon.args.check_only {
            info!("-C: virtual servers only, no VRRP");
        } else {
            daemon.vrrp = Some(VrrpTask::spawn(daemon.config.clone(), daemon.netlink.clone()));
        }
        if let Some(addr) = daemon.args.status_listen {
            let (requests, receiver) = tokio::sync::mpsc::channel(16);
            status::serve(addr, requests).await.with_context(|| format!("status listener on {addr}"))?;
            info!("serving /metrics and /status on http://{addr}");
            daemon.status_requests = Some(receiver);
        }
        Ok(daemon)
    }

    /// What `/status` and `/metrics` show.
    pub fn snapshot(&self) -> status::Snapshot {
        let virtual_servers = match self.dataplane.as_ref().map(|d| d.service_stats()) {
            Some(Ok(services)) => services,
            Some(Err(e)) => {
                warn!("reading the data plane's counters: {}", error_chain(&e));
                Vec::new()
            }
            None => Vec::new(),
        };
        status::Snapshot {
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            reloads: self.reloads,
            reload_failures: self.reload_failures,
            vrrp: self.vrrp.as_ref().map(|v| v.status().snapshot()).unwrap_or_default(),
            virtual_servers,
        }
    }

    async fn start_dataplane(&mut self) -> anyhow::Result<()> {
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
        // The checkers start with the data plane: alpha real servers are left out from the start.
        let checks = check::Runner::spawn(&self.config);
        apply_virtual_servers(&self.config, &checks.desired(), &self.interfaces, &mut dataplane)?;
        self.dataplane = Some(dataplane);
        self.checks = Some(checks);
        Ok(())
    }

    /// Answers signals until one says stop, then stops.
    pub async fn run(mut self) -> anyhow::Result<()> {
        // systemd (Type=notify): started. Without NOTIFY_SOCKET this does nothing.
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        loop {
            let request = tokio::select! {
                request = self.signals.next() => request,
                Some(status::SnapshotRequest(reply)) = recv_status(&mut self.status_requests) => {
                    let _ = reply.send(self.snapshot());
                    continue;
                }
                desired = checks_changed(&mut self.checks) => {
                    if let Some(dataplane) = &mut self.dataplane {
                        match dataplane.apply(&desired) {
                            Ok(report) => info!("data plane: {report:?}"),
                            Err(e) => error!("applying the checkers' changes: {}", error_chain(&e)),
                        }
                    }
                    continue;
                }
            };
            match request {
                Request::Stop(signal) => {
                    info!("received {signal}");
                    break;
                }
                Request::Reload => self.reload().await,
                Request::Data => self.write_dump(dump::Kind::Data),
                Request::Stats => self.write_dump(dump::Kind::Stats),
                Request::StatsClear => self.write_dump(dump::Kind::StatsClear),
                Request::Json => self.write_dump(dump::Kind::Json),
            }
        }
        self.stop().await
    }

    /// SIGHUP: reads the configuration again and applies what changed.
    pub async fn reload(&mut self) {
        let started = Instant::now();
        self.reloads += 1;
        info!("Reloading ...");
        let _ = sd_notify::notify(&[
            sd_notify::NotifyState::Reloading,
            sd_notify::NotifyState::monotonic_usec_now().unwrap_or(sd_notify::NotifyState::Custom("")),
        ]);
        self.reload_config().await;
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        info!("Reload finished in {} usec", started.elapsed().as_micros());
    }

    async fn reload_config(&mut self) {
        let config = match load(&self.args) {
            Ok((config, 0)) => config,
            Ok((_, errors)) => {
                self.reload_failures += 1;
                error!(
                    "Reload failed: {errors} errors in the configuration; the running configuration stays"
                );
                return;
            }
            Err(e) => {
                self.reload_failures += 1;
                error!("Reload failed: {}; the running configuration stays", error_chain(e.as_ref()));
                return;
            }
        };
        if let Some(dataplane) = &mut self.dataplane {
            let servers_changed = config.virtual_servers != self.config.virtual_servers
                || config.virtual_server_groups != self.config.virtual_server_groups
                || config.local_address_groups != self.config.local_address_groups;
            if servers_changed || self.checks.is_none() {
                // The old checkers go without their omega scripts (the servers are not going
                // down); unchanged checkers carry on from their verdicts.
                self.checks = Some(check::Runner::spawn_after(&config, self.checks.as_ref()));
            }
            let desired = self.checks.as_ref().map(check::Runner::desired).unwrap_or_default();
            if let Err(e) = apply_virtual_servers(&config, &desired, &self.interfaces, dataplane) {
                error!("Reload: {}", error_chain(e.as_ref()));
            }
        }
        if let Some(vrrp) = self.vrrp.take() {
            self.vrrp = match vrrp.reload(config.clone()).await {
                Ok(vrrp) => Some(vrrp),
                Err(e) => {
                    error!("{}", error_chain(&e));
                    Some(VrrpTask::spawn(config.clone(), self.netlink.clone()))
                }
            };
        }
        self.config = config;
    }

    fn write_dump(&self, kind: dump::Kind) {
        let vrrp = self.vrrp.as_ref().map(|v| v.status().snapshot()).unwrap_or_default();
        let source = dump::Source { config: &self.config, dataplane: self.dataplane.as_ref(), vrrp };
        match dump::write(kind, &source) {
            Ok(path) => info!("{} written to {}", kind.what(), path.display()),
            Err(e) => error!("writing the {}: {e}", kind.what()),
        }
    }

    /// Stops VRRP, then the data plane, as `-V` and `-I` say.
    pub async fn stop(self) -> anyhow::Result<()> {
        info!("Stopping");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        if let Some(vrrp) = self.vrrp {
            let kind = if self.args.dont_release_vrrp { StopKind::KeepVips } else { StopKind::Orderly };
            if let Err(e) = vrrp.stop(kind).await {
                error!("{}", error_chain(&e));
            }
        }
        if let Some(checks) = self.checks {
            // omega: the virtual servers' down scripts, before the data plane goes.
            checks.stop().await;
        }
        if let Some(dataplane) = self.dataplane {
            match dataplane.stats() {
                Ok(stats) => info!(
                    "packets seen: {}, passed: {}, dropped malformed: {}",
                    stats.rx_packets, stats.pass, stats.drop_malformed
                ),
                Err(e) => warn!("reading the counters: {}", error_chain(&e)),
            }
            if self.args.dont_release_ipvs {
                info!(
                    "-I: the XDP program stays attached and forwarding; the next lbd adopts its flows from {}",
                    dataplane.pin_dir().display()
                );
                dataplane.release();
            } else {
                dataplane.remove()?;
            }
        }
        info!("Stopped");
        Ok(())
    }
}

/// The pid files of `args`, keepalived's defaults where not given.
fn take_pid_files(args: &Args) -> anyhow::Result<Vec<PidFile>> {
    let main = args.pid_file.as_deref().unwrap_or(Path::new(pidfile::DEFAULT_MAIN));
    let vrrp = args.vrrp_pid_file.as_deref().unwrap_or(Path::new(pidfile::DEFAULT_VRRP));
    let checkers = args.checkers_pid_file.as_deref().unwrap_or(Path::new(pidfile::DEFAULT_CHECKERS));
    let mut files = vec![PidFile::create(main)?];
    if !args.check_only {
        files.push(PidFile::create(vrrp)?);
    }
    if !args.vrrp_only {
        files.push(PidFile::create(checkers)?);
    }
    Ok(files)
}

/// Reads the configuration, logging its diagnostics (each with its file:line), and counts its
/// errors.
fn load(args: &Args) -> anyhow::Result<(Config, usize)> {
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
                error!("{d}");
            }
            Severity::Warning => warn!("{d}"),
            Severity::Notice => info!("{d}"),
        }
    }
    Ok((loaded.config, errors))
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
    dataplane: &mut XdpDataplane,
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
