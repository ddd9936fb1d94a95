//! The parent process, as keepalived's: it reads the configuration, takes the main pid file,
//! starts one child process per subsystem the configuration has (VRRP; virtual servers with
//! their checkers and the data plane), and then only supervises them.
//!
//! - Children are this same program started again (`/proc/self/exe`, same arguments) with
//!   [`ROLE_VAR`] naming their role and a [`Channel`] on descriptor 3. A child is started only
//!   if the configuration has something for it, or with `--all`; `-P` and `-C` leave one out.
//! - Signals are forwarded: SIGHUP to every child (each re-reads the file; a child the new
//!   configuration needs is started, one it no longer needs is stopped), SIGUSR1 to every child
//!   while the parent writes `keepalived_parent.data`, the statistics and JSON signals to the
//!   children that write those files, SIGTERM / SIGINT to all, waiting `child_wait_time`
//!   (5 s by default) before SIGKILL.
//! - A child that dies is started again after keepalived's delay ([`restart_delay`]) unless
//!   `-R`; one that exits with a permanent error (1 fatal, 2 configuration, 4 permission) stops
//!   everything, as keepalived does.
//! - `startup_script` runs before the children start, `shutdown_script` after they exited
//!   (each killed after its timeout, 10 s by default).
//! - `/status` and `/metrics` (`--status-listen`) are served here, merged from the children's
//!   reports.
//! - BFD: the BFD child (started when the configuration has `bfd_instance`s, unless `-B`)
//!   reports its sessions' states on its channel; the parent keeps the latest state of each and
//!   passes changes on to the VRRP and checker children (only one of them if the instance says
//!   `vrrp` or `checker`). A child that starts is first told every known state; when the BFD
//!   child dies every session counts as down until its successor reports. SIGUSR1 reaches it
//!   too (it writes `keepalived_bfd.data`), and `/status` shows its sessions.
//! - `lvs_sync_daemon`: every 250 ms the parent reads the state of the VRRP instance the sync
//!   follows from the VRRP child's report and, when it changed (or a checker child started),
//!   tells the checker child (`sync master` / `sync backup`), which runs the sync
//!   ([`crate::sync`]).

use std::{
    fmt::Write as _,
    os::{fd::AsRawFd as _, unix::process::ExitStatusExt as _},
    path::Path,
    process::ExitStatus,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use nix::sys::signal::Signal;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::vrrp::script::Outcome;

use super::{
    Role, dump,
    pidfile::{self, PidFile},
    signals::{Request, SIGJSON, SIGSTATS_CLEAR, Signals},
    status,
};
use crate::{
    bfd::{BfdEvent, BfdStates},
    cli::Args,
    config::Config,
    daemon::control::{BfdChild, CHILD_FD, Channel, ROLE_VAR},
};

/// How long the parent waits for its children to stop before killing them (keepalived's
/// `child_wait_time` default).
const CHILD_WAIT_TIME: Duration = Duration::from_secs(5);

/// keepalived's `startup_script_timeout` / `shutdown_script_timeout` default.
const GLOBAL_SCRIPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest restart delay.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);

/// keepalived's respawn delay (lib/scheduler.c): a child that ran longer than a minute is
/// started again at once; otherwise the delay doubles from 0 and 1 s up to 32 s, then 60 s.
pub fn restart_delay(ran_for: Duration, previous: Option<Duration>) -> Duration {
    match previous {
        _ if ran_for > MAX_RESTART_DELAY => Duration::ZERO,
        None => Duration::ZERO,
        Some(d) if d.is_zero() => Duration::from_secs(1),
        Some(d) if d >= Duration::from_secs(32) => MAX_RESTART_DELAY,
        Some(d) => d * 2,
    }
}

/// keepalived's exit codes that are not worth a respawn.
fn permanent_error(code: i32) -> Option<&'static str> {
    match code {
        1 => Some("FATAL"),
        2 => Some("CONFIG"),
        4 => Some("MISSING_PERMISSION"),
        _ => None,
    }
}

/// One child process, running or not.
#[derive(Debug)]
struct Slot {
    role: Role,
    process: Option<tokio::process::Child>,
    pid: u32,
    channel: Option<Channel>,
    /// The BFD child's channel, served by a task of its own.
    bfd: Option<BfdChild>,
    started: Instant,
    last_delay: Option<Duration>,
    restart_at: Option<Instant>,
    /// Told to stop: its exit is expected.
    stopping: bool,
    respawns: u64,
}

impl Slot {
    fn new(role: Role) -> Self {
        Self {
            role,
            process: None,
            pid: 0,
            channel: None,
            bfd: None,
            started: Instant::now(),
            last_delay: None,
            restart_at: None,
            stopping: false,
            respawns: 0,
        }
    }

    fn running(&self) -> bool {
        self.process.is_some()
    }

    /// Sends signal number `signal` (real-time ones too, which nix's `Signal` does not name).
    fn signal(&self, signal: i32) {
        if !self.running() {
            return;
        }
        // SAFETY: kill(2) with a pid this process started and a signal number.
        if unsafe { nix::libc::kill(self.pid as i32, signal) } != 0 {
            let e = std::io::Error::last_os_error();
            warn!("{} child process({}): kill -{signal}: {e}", self.role.name(), self.pid);
        }
    }

    /// Starts the child: this program again, with the same arguments, its role in the
    /// environment and its end of the channel as descriptor 3.
    fn spawn(&mut self) -> anyhow::Result<()> {
        let (channel, child_end) = Channel::pair().context("creating the control channel")?;
        let mut args = std::env::args_os();
        let mut command = tokio::process::Command::new("/proc/self/exe");
        if let Some(arg0) = args.next() {
            command.arg0(arg0);
        }
        command.args(args).env(ROLE_VAR, self.role.env_value());
        let fd = child_end.as_raw_fd();
        let blocked = super::signals::handled_set();
        // SAFETY: between fork and exec only async-signal-safe calls: pthread_sigmask, dup2
        // and fcntl.
        unsafe {
            command.pre_exec(move || {
                super::signals::block(&blocked)?;
                let r = if fd == CHILD_FD {
                    nix::libc::fcntl(fd, nix::libc::F_SETFD, 0)
                } else {
                    nix::libc::dup2(fd, CHILD_FD)
                };
                if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
            });
        }
        let process = command.spawn().with_context(|| format!("starting the {} child", self.role.name()))?;
        self.pid = process.id().unwrap_or(0);
        if self.role == Role::Vrrp {
            super::signals::set_stop_target(Some(self.pid));
        }
        info!("Starting {} child process, pid={}", self.role.name(), self.pid);
        self.process = Some(process);
        self.channel = Some(channel);
        self.started = Instant::now();
        self.restart_at = None;
        self.stopping = false;
        Ok(())
    }
}

/// The parent process.
#[derive(Debug)]
pub struct Supervisor {
    args: Args,
    config: Config,
    signals: Signals,
    slots: Vec<Slot>,
    status_requests: Option<mpsc::Receiver<status::SnapshotRequest>>,
    reloads: u64,
    started: Instant,
    seq: u64,
    /// The BFD sessions' latest states.
    bfd_states: BfdStates,
    bfd_events: mpsc::UnboundedReceiver<BfdEvent>,
    bfd_events_tx: mpsc::UnboundedSender<BfdEvent>,
    /// The state of `lvs_sync_daemon`'s VRRP instance last told to the checker child (`None`:
    /// not told yet).
    sync_master: Option<bool>,
    _pid_file: PidFile,
}

/// How often the parent reads the VRRP child's instance states for `lvs_sync_daemon`.
const SYNC_POLL: std::time::Duration = std::time::Duration::from_millis(250);

impl Supervisor {
    /// Takes the main pid file and starts the children the configuration needs.
    pub async fn start(args: Args) -> anyhow::Result<Self> {
        // The forwarder first, so that it runs before tokio's handler (signal-hook runs a signal's
        // actions in the order they were registered): the VRRP child's kill(2) before the write
        // that wakes this runtime. The stop signals wait, blocked, until both are installed
        // (`Signals::install` unblocks them).
        super::signals::block(&super::signals::handled_set()).context("blocking the stop signals")?;
        super::signals::forward_stop_at_once().context("installing the stop forwarder")?;
        let signals = Signals::install().context("installing signal handlers")?;
        let pid_file = PidFile::create(args.pid_file.as_deref().unwrap_or(Path::new(pidfile::DEFAULT_MAIN)))?;
        // The children log the configuration's diagnostics; the parent only needs its shape.
        let (config, _) = super::load(&args, false).context("reading the configuration")?;
        let (bfd_events_tx, bfd_events) = mpsc::unbounded_channel();
        let mut supervisor = Self {
            args,
            config,
            signals,
            slots: vec![Slot::new(Role::Vrrp), Slot::new(Role::Checker), Slot::new(Role::Bfd)],
            status_requests: None,
            reloads: 0,
            started: Instant::now(),
            seq: 0,
            bfd_states: BfdStates::new(),
            bfd_events,
            bfd_events_tx,
            sync_master: None,
            _pid_file: pid_file,
        };
        let g = &supervisor.config.global_defs;
        run_global_script("startup_script", g.startup_script.as_ref(), g.startup_script_timeout, g).await;
        for i in 0..supervisor.slots.len() {
            if supervisor.wanted(supervisor.slots[i].role) {
                supervisor.spawn(i).await?;
            }
        }
        if !supervisor.slots.iter().any(Slot::running) {
            warn!("the configuration has neither VRRP instances nor virtual servers: no child started");
        }
        if let Some(addr) = supervisor.args.status_listen {
            let (requests, receiver) = mpsc::channel(16);
            status::serve(addr, requests).await.with_context(|| format!("status listener on {addr}"))?;
            info!("serving /metrics and /status on http://{addr}");
            supervisor.status_requests = Some(receiver);
        }
        Ok(supervisor)
    }

    /// Whether the configuration (and the command line) asks for a child in `role`.
    fn wanted(&self, role: Role) -> bool {
        match role {
            Role::Vrrp => !self.args.check_only && (self.args.all || !self.config.vrrp_instances.is_empty()),
            Role::Checker => {
                !self.args.vrrp_only && (self.args.all || !self.config.virtual_servers.is_empty())
            }
            Role::Bfd => {
                !self.args.no_bfd
                    && !self.args.vrrp_only
                    && !self.args.check_only
                    && (self.args.all || !self.config.bfd_instances.is_empty())
            }
        }
    }

    /// Starts the child of slot `i`: the BFD child's reports are read by a task of their own;
    /// a VRRP or checker child is told the BFD states known so far.
    async fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        self.slots[i].spawn()?;
        let slot = &mut self.slots[i];
        match slot.role {
            Role::Bfd => {
                slot.bfd = slot.channel.take().map(|c| BfdChild::serve(c, self.bfd_events_tx.clone()));
            }
            Role::Vrrp | Role::Checker => {
                let role = slot.role;
                if role == Role::Checker {
                    // A new checker child starts as a sync backup: tell it the state again.
                    self.sync_master = None;
                }
                let mut events: Vec<BfdEvent> = self
                    .bfd_states
                    .iter()
                    .filter(|(name, _)| self.bfd_instance_reaches(name, role))
                    .map(|(name, &up)| BfdEvent { name: name.clone(), up })
                    .collect();
                events.sort_by(|a, b| a.name.cmp(&b.name));
                let slot = &mut self.slots[i];
                for event in events {
                    if let Some(channel) = &mut slot.channel
                        && let Err(e) = channel.send_bfd(&event).await
                    {
                        warn!("{} child process({}): {e}", slot.role.name(), slot.pid);
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether events of bfd_instance `name` go to the child in `role` (keepalived's `vrrp` /
    /// `checker` in the instance: only there; neither: both).
    fn bfd_instance_reaches(&self, name: &str, role: Role) -> bool {
        match self.config.bfd_instances.iter().find(|b| b.name == name) {
            Some(b) if b.vrrp || b.checker => {
                (role == Role::Vrrp && b.vrrp) || (role == Role::Checker && b.checker)
            }
            _ => true,
        }
    }

    /// A BFD state report: a change is passed on to the VRRP and checker children.
    async fn bfd_event(&mut self, event: BfdEvent) {
        if self.bfd_states.insert(event.name.clone(), event.up) == Some(event.up) {
            return;
        }
        for i in 0..self.slots.len() {
            let role = self.slots[i].role;
            if role == Role::Bfd || !self.bfd_instance_reaches(&event.name, role) {
                continue;
            }
            let slot = &mut self.slots[i];
            if let Some(channel) = &mut slot.channel
                && let Err(e) = channel.send_bfd(&event).await
            {
                warn!("{} child process({}): {e}", slot.role.name(), slot.pid);
            }
        }
    }

    /// `lvs_sync_daemon`: reads the state of its VRRP instance from the VRRP child and tells
    /// the checker child when it changed.
    async fn poll_sync_state(&mut self) {
        let Some(instance) =
            self.config.global_defs.lvs_sync_daemon.as_ref().and_then(|s| s.instance.clone())
        else {
            return;
        };
        self.seq += 1;
        let seq = self.seq;
        let Some(vrrp) = self.slots.iter_mut().find(|s| s.role == Role::Vrrp) else { return };
        let Some(channel) = &mut vrrp.channel else { return };
        let report = match channel.query(seq).await {
            Ok(report) => report,
            Err(e) => {
                warn!("lvs_sync_daemon: reading the VRRP child's state: {e}");
                return;
            }
        };
        let Some(state) = report.vrrp.iter().find(|i| i.name == instance).map(|i| i.state) else { return };
        let master = state == "MASTER";
        if self.sync_master == Some(master) {
            return;
        }
        let Some(checker) = self.slots.iter_mut().find(|s| s.role == Role::Checker) else { return };
        let Some(channel) = &mut checker.channel else { return };
        match channel.send_sync(master).await {
            Ok(()) => {
                info!("lvs_sync_daemon: {instance} is {state}: connection sync as {}", sync_name(master));
                self.sync_master = Some(master);
            }
            Err(e) => warn!("checker child process({}): {e}", checker.pid),
        }
    }

    /// Supervises until a signal says stop or a child fails for good; returns the exit code.
    pub async fn run(mut self) -> u8 {
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        let mut sync_poll = tokio::time::interval(SYNC_POLL);
        sync_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let code = loop {
            let restart = self.slots.iter().filter_map(|s| s.restart_at).min();
            let request = tokio::select! {
                request = self.signals.next() => request,
                (i, status) = next_exit(&mut self.slots) => {
                    if let Some(code) = self.child_exited(i, status) {
                        break code;
                    }
                    if self.slots[i].role == Role::Bfd {
                        // Nobody runs the sessions: they count as down until a new child says.
                        let names: Vec<String> = self.bfd_states.keys().cloned().collect();
                        for name in names {
                            self.bfd_event(BfdEvent { name, up: false }).await;
                        }
                    }
                    continue;
                }
                () = sleep_until(restart) => {
                    self.restart_due().await;
                    continue;
                }
                _ = sync_poll.tick(), if self.config.global_defs.lvs_sync_daemon.is_some() => {
                    self.poll_sync_state().await;
                    continue;
                }
                Some(event) = self.bfd_events.recv() => {
                    self.bfd_event(event).await;
                    continue;
                }
                Some(status::SnapshotRequest(reply)) = super::recv_status(&mut self.status_requests) => {
                    let snapshot = self.snapshot().await;
                    let _ = reply.send(snapshot);
                    continue;
                }
            };
            match request {
                Request::Stop(signal) => {
                    // Forwarded before anything is logged: an orderly failover waits for the
                    // VRRP child's priority-0 advert.
                    self.signal_stop();
                    info!("received {signal}");
                    break 0;
                }
                Request::Reload => self.reload().await,
                Request::Data => {
                    self.forward(nix::libc::SIGUSR1, &[Role::Vrrp, Role::Checker, Role::Bfd]);
                    self.write_parent_data();
                }
                Request::Stats => self.forward(nix::libc::SIGUSR2, &[Role::Vrrp, Role::Checker]),
                Request::StatsClear => self.forward(SIGSTATS_CLEAR, &[Role::Vrrp, Role::Checker]),
                Request::Json => self.forward(SIGJSON, &[Role::Vrrp]),
            }
        };
        self.stop().await;
        code
    }

    fn forward(&self, signal: i32, roles: &[Role]) {
        for slot in self.slots.iter().filter(|s| roles.contains(&s.role)) {
            slot.signal(signal);
        }
    }

    /// SIGHUP: every child re-reads the file; children the new configuration needs are
    /// started, those it no longer needs stopped. A configuration with errors changes no child
    /// (they refuse it themselves, logging its errors).
    async fn reload(&mut self) {
        self.reloads += 1;
        info!("Reloading");
        let _ = sd_notify::notify(&[
            sd_notify::NotifyState::Reloading,
            sd_notify::NotifyState::monotonic_usec_now().unwrap_or(sd_notify::NotifyState::Custom("")),
        ]);
        match super::load(&self.args, false) {
            Ok((config, 0)) => self.config = config,
            Ok(_) | Err(_) => {
                self.forward(nix::libc::SIGHUP, &[Role::Vrrp, Role::Checker, Role::Bfd]);
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
                return;
            }
        }
        for i in 0..self.slots.len() {
            let wanted = self.wanted(self.slots[i].role);
            let slot = &mut self.slots[i];
            match (slot.running(), wanted) {
                (true, true) => slot.signal(nix::libc::SIGHUP),
                (true, false) => {
                    info!(
                        "{} child process({}) is no longer needed: stopping it",
                        slot.role.name(),
                        slot.pid
                    );
                    slot.stopping = true;
                    slot.signal(nix::libc::SIGTERM);
                }
                (false, true) if slot.restart_at.is_none() => {
                    if let Err(e) = self.spawn(i).await {
                        error!("{e:#}");
                    }
                }
                (false, _) => slot.restart_at = slot.restart_at.filter(|_| wanted),
            }
        }
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    }

    /// A child exited: expected, respawned, or the end of everything (the exit code returned).
    fn child_exited(&mut self, i: usize, status: std::io::Result<ExitStatus>) -> Option<u8> {
        let dont_respawn = self.args.dont_respawn;
        let wanted = self.wanted(self.slots[i].role);
        let slot = &mut self.slots[i];
        if slot.role == Role::Vrrp {
            super::signals::set_stop_target(None);
        }
        slot.process = None;
        slot.channel = None;
        slot.bfd = None;
        let (name, pid) = (slot.role.name(), slot.pid);
        let how = match &status {
            Ok(s) => match (s.code(), s.signal()) {
                (Some(code), _) => format!("with status {code}"),
                (None, Some(signal)) => format!(
                    "due to signal {signal} ({})",
                    Signal::try_from(signal).map(|s| s.as_str()).unwrap_or("real-time")
                ),
                _ => format!("{s:?}"),
            },
            Err(e) => format!("(wait failed: {e})"),
        };
        if slot.stopping || !wanted {
            info!("{name} child process({pid}) exited {how}");
            slot.stopping = false;
            return None;
        }
        warn!("pid {pid} exited {how}");
        if let Some(code) = status.as_ref().ok().and_then(ExitStatus::code)
            && let Some(kind) = permanent_error(code)
        {
            error!("pid {pid} exited with permanent error {kind}. Terminating");
            return Some(code as u8);
        }
        if dont_respawn {
            error!("{name} child process({pid}) died: exiting (-R, no respawn)");
            return Some(1);
        }
        let delay = restart_delay(slot.started.elapsed(), slot.last_delay);
        slot.last_delay = Some(delay);
        slot.restart_at = Some(Instant::now() + delay);
        warn!("{name} child process({pid}) died: Respawning");
        info!("Restart of {name} process delayed {} seconds to limit respawn rate", delay.as_secs());
        None
    }

    /// Starts the children whose restart delay is over.
    async fn restart_due(&mut self) {
        let now = Instant::now();
        for i in 0..self.slots.len() {
            if self.slots[i].restart_at.is_some_and(|at| at <= now) {
                self.slots[i].respawns += 1;
                if let Err(e) = self.spawn(i).await {
                    error!("{e:#}");
                    let slot = &mut self.slots[i];
                    let delay = restart_delay(Duration::ZERO, slot.last_delay);
                    slot.last_delay = Some(delay);
                    slot.restart_at = Some(now + delay);
                }
            }
        }
    }

    /// `/status` and `/metrics`: the parent's counters and what each child reports.
    async fn snapshot(&mut self) -> status::Snapshot {
        self.seq += 1;
        let mut snapshot = status::Snapshot {
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            reloads: self.reloads,
            ..Default::default()
        };
        for slot in &mut self.slots {
            let report = match (&mut slot.channel, &slot.bfd) {
                (Some(channel), _) => channel.query(self.seq).await,
                (None, Some(bfd)) => bfd.query(self.seq).await,
                (None, None) => continue,
            };
            match report {
                Ok(report) => {
                    snapshot.reload_failures = snapshot.reload_failures.max(report.reload_failures);
                    snapshot.vrrp.extend(report.vrrp);
                    snapshot.virtual_servers.extend(report.virtual_servers);
                    snapshot.checks.extend(report.checks);
                    snapshot.bfd.extend(report.bfd);
                }
                Err(e) => warn!("{} child process({}): {e}", slot.role.name(), slot.pid),
            }
        }
        snapshot
    }

    /// SIGUSR1: the parent's own dump, `keepalived_parent.data`.
    fn write_parent_data(&self) {
        let mut text = crate::config::dump::dump(&self.config);
        text.push_str("------< Parent process >------\n");
        let _ = writeln!(text, " pid = {}", std::process::id());
        for slot in &self.slots {
            let _ = match (&slot.process, slot.restart_at) {
                (Some(_), _) => writeln!(
                    text,
                    " {} child process: pid = {}, respawns = {}",
                    slot.role.name(),
                    slot.pid,
                    slot.respawns
                ),
                (None, Some(_)) => writeln!(text, " {} child process: waiting to respawn", slot.role.name()),
                (None, None) => writeln!(text, " {} child process: not running", slot.role.name()),
            };
        }
        match dump::write_file("keepalived_parent.data", &text) {
            Ok(path) => info!("parent data dump written to {}", path.display()),
            Err(e) => error!("writing the parent data dump: {e}"),
        }
    }

    /// SIGTERM to every child not yet told to stop.
    fn signal_stop(&mut self) {
        for slot in self.slots.iter_mut().filter(|s| !s.stopping) {
            slot.stopping = true;
            if !super::signals::stop_forwarded_to(slot.pid) {
                slot.signal(nix::libc::SIGTERM);
            }
        }
    }

    /// SIGTERM to every child, then waits for them, `child_wait_time` at most before SIGKILL.
    async fn stop(mut self) {
        self.signal_stop();
        info!("Stopping");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        let wait = self.config.global_defs.child_wait_time.unwrap_or(CHILD_WAIT_TIME);
        for slot in &mut self.slots {
            let Some(process) = &mut slot.process else { continue };
            match tokio::time::timeout(wait, process.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    warn!("{} process failed to die - forcing termination", slot.role.name());
                    let _ = process.kill().await;
                }
            }
        }
        let g = &self.config.global_defs;
        run_global_script("shutdown_script", g.shutdown_script.as_ref(), g.shutdown_script_timeout, g).await;
        info!("Stopped lbd {}", env!("CARGO_PKG_VERSION"));
    }
}

/// Runs `startup_script` (before the children start) or `shutdown_script` (after they exited),
/// as `script_user` / `enable_script_security` say, killed after its timeout (10 s by default).
/// lbd goes on whatever the script does, as keepalived.
async fn run_global_script(
    keyword: &str,
    script: Option<&crate::config::model::Script>,
    timeout: Option<Duration>,
    global: &crate::config::model::GlobalDefs,
) {
    let Some(script) = script else { return };
    let policy = crate::vrrp::script::ScriptPolicy::from_globals(global);
    let prepared = match policy.prepare(script) {
        Ok(prepared) => prepared,
        Err(e) => {
            error!("{keyword} {}: {e}", script.command);
            return;
        }
    };
    let timeout = timeout.unwrap_or(GLOBAL_SCRIPT_TIMEOUT);
    match prepared.run(&[], timeout).await {
        Outcome::Exited(status) if status.success() => info!("{keyword} {} succeeded", script.command),
        Outcome::Exited(status) => warn!("{keyword} {} failed: {status}", script.command),
        Outcome::TimedOut => warn!("{keyword} {} timed out after {timeout:?}: killed", script.command),
        Outcome::NotStarted => {}
    }
}

/// The next child to exit, with its status; never, if none runs.
async fn next_exit(slots: &mut [Slot]) -> (usize, std::io::Result<ExitStatus>) {
    let waits: Vec<_> = slots
        .iter_mut()
        .enumerate()
        .filter_map(|(i, slot)| slot.process.as_mut().map(|p| Box::pin(async move { (i, p.wait().await) })))
        .collect();
    if waits.is_empty() {
        return std::future::pending().await;
    }
    futures::future::select_all(waits).await.0
}

/// Sleeps until `deadline`; forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The sync daemon's role name, as keepalived logs it.
const fn sync_name(master: bool) -> &'static str {
    if master { "master" } else { "backup" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_delays_follow_keepalived() {
        let quick = Duration::from_secs(1);
        let mut delays = Vec::new();
        let mut last = None;
        for _ in 0..10 {
            let d = restart_delay(quick, last);
            delays.push(d.as_secs());
            last = Some(d);
        }
        assert_eq!(delays, [0, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
        // A child that ran more than a minute is started again at once.
        assert_eq!(restart_delay(Duration::from_secs(61), Some(Duration::from_secs(32))), Duration::ZERO);
    }

    #[test]
    fn permanent_errors_are_keepalived_s() {
        assert_eq!(permanent_error(1), Some("FATAL"));
        assert_eq!(permanent_error(2), Some("CONFIG"));
        assert_eq!(permanent_error(4), Some("MISSING_PERMISSION"));
        assert_eq!(permanent_error(0), None);
        assert_eq!(permanent_error(3), None);
    }
}
