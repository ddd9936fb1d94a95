//! The checkers at work: each checker probes its real server on the schedule of its
//! [`CheckerState`], the plain TCP_CHECKs and HTTP_GETs together in one
//! [`probe_loop`](super::probe_loop), the others as a tokio task each; a collecting task applies their changes to each virtual server's
//! [`ServiceState`], logs, mails and runs the scripts as keepalived does, and publishes a new
//! [`DesiredState`] whenever what the data plane should forward changes.
//!
//! Two inputs come from outside the checkers: the host's addresses, polled while a virtual
//! server has `ha_suspend` (its checkers probe only while its address is local), and the data
//! plane's active connection counts, which the daemon hands over with [`Runner::connections`]
//! for `uthreshold` / `lthreshold`. A third comes from the BFD child through the daemon: the
//! sessions' states, which `BFD_CHECK` checkers follow (a real server is down while its
//! session is; an alpha checker starts down until the session is reported up). [`Runner::checkers`] reports each checker's verdict, probe
//! count and last probe's duration, and [`Runner::status`] each virtual server's real servers
//! and quorum with the history of their changes (for the SNMP agent).

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
    time::Instant,
};
use tracing::{debug, error, info, warn};

use super::{
    CheckError, Endpoint, Health, ServiceHealth, alert, checker_timing,
    dns::DnsProbe,
    file::FileProbe,
    http::HttpProbe,
    misc::MiscProbe,
    probe_loop, real_name,
    service::{Event, RealSpec, ServiceState, Sorry, Thresholds},
    service_name,
    state::{Change, CheckerState, Probe},
    status::{ChangeKind, CheckStatus},
};
use crate::{
    bfd::BfdStates,
    config::model::{Checker, Config, RealServer, Script, VirtualServer, VsAddress},
    dataplane::{DesiredState, ServiceAddr, ServiceCounters},
    vrrp::{config::SmtpPlan, script::ScriptPolicy},
};

/// How long a notify or quorum script may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the host's addresses are read while a virtual server has `ha_suspend`.
const ADDRESS_POLL: Duration = Duration::from_millis(500);

/// A checker ready to probe.
#[derive(Debug)]
enum Prober {
    Tcp(Endpoint),
    Http(HttpProbe),
    Ssl(HttpProbe, bool),
    Smtp(Endpoint, String),
    Dns(DnsProbe),
    Misc(MiscProbe),
    Udp(Endpoint, Box<crate::config::model::UdpCheck>),
    Ping(Endpoint),
    File(FileProbe),
}

/// A probe in flight.
type ProbeFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Probe, CheckError>> + Send + 'a>>;

impl Prober {
    fn new(
        checker: &Checker,
        config: &Config,
        vs: &VirtualServer,
        index: (usize, usize),
        policy: &ScriptPolicy,
    ) -> Result<Self, CheckError> {
        let rs = &vs.real_servers[index.1];
        let vhosts = [rs.virtualhost.as_deref(), vs.virtualhost.as_deref()];
        Ok(match checker {
            Checker::TcpCheck(c) => Prober::Tcp(Endpoint::new(c, vs, rs)),
            Checker::HttpGet(h) => Prober::Http(HttpProbe::new(Endpoint::new(&h.conn, vs, rs), h, vhosts)?),
            Checker::SslGet(h) => {
                Prober::Ssl(HttpProbe::new(Endpoint::new(&h.conn, vs, rs), h, vhosts)?, h.enable_sni)
            }
            Checker::SmtpCheck(s) => Prober::Smtp(
                Endpoint::new(&s.conn, vs, rs),
                s.helo_name.clone().unwrap_or_else(|| super::smtp::DEFAULT_HELO.into()),
            ),
            Checker::DnsCheck(d) => Prober::Dns(DnsProbe::new(
                Endpoint::new(&d.conn, vs, rs),
                d.query_type.as_deref(),
                d.name.as_deref(),
            )?),
            Checker::MiscCheck(m) => {
                let script =
                    m.misc_path.as_ref().ok_or_else(|| CheckError::Unusable("no misc_path".into()))?;
                let script = policy.prepare(script).map_err(|e| CheckError::Unusable(e.to_string()))?;
                let timeout = m.misc_timeout.unwrap_or_else(|| checker_timing(checker, vs, rs).delay_loop);
                Prober::Misc(MiscProbe { script, timeout, dynamic: m.misc_dynamic })
            }
            Checker::UdpCheck(u) => Prober::Udp(Endpoint::new(&u.conn, vs, rs), u.clone()),
            Checker::PingCheck(c) => Prober::Ping(Endpoint::new(c, vs, rs)),
            Checker::FileCheck(f) => Prober::File(FileProbe::new(f, config, configured_weight(vs, index.1))?),
            Checker::BfdCheck(_) => {
                return Err(CheckError::Unusable(
                    "BFD_CHECK follows a BFD session; it does not probe".into(),
                ));
            }
        })
    }

    /// The time a probe may take: none for the checkers that talk (HTTP_GET, SSL_GET,
    /// SMTP_CHECK), whose every step has its own limit ([`super::timed`]).
    fn limit(&self, connect_timeout: Duration) -> Option<Duration> {
        match self {
            Prober::Misc(m) => Some(m.timeout + Duration::from_secs(1)),
            Prober::Http(_) | Prober::Ssl(..) | Prober::Smtp(..) => None,
            _ => Some(connect_timeout),
        }
    }

    /// One probe. Each kind's future is boxed on its own, so a probe in flight holds only its
    /// own kind's state: a TCP_CHECK's connect is a few hundred bytes, an SSL_GET's handshake
    /// several kilobytes (one future for all kinds would be the size of the largest).
    /// `url` is the url an HTTP_GET or SSL_GET fetches ([`CheckerState::url`]).
    fn probe(&self, url: usize) -> ProbeFuture<'_> {
        match self {
            Prober::Tcp(ep) => Box::pin(super::tcp::probe(ep)),
            Prober::Http(h) => Box::pin(h.probe(url)),
            Prober::Ssl(h, sni) => Box::pin(super::ssl::probe(h, url, *sni)),
            Prober::Smtp(ep, helo) => Box::pin(super::smtp::probe(ep, helo)),
            Prober::Dns(d) => Box::pin(d.probe()),
            Prober::Misc(m) => Box::pin(m.probe()),
            Prober::Udp(ep, u) => Box::pin(super::udp::probe(ep, u)),
            Prober::Ping(ep) => Box::pin(super::ping::probe(ep)),
            Prober::File(f) => Box::pin(f.probe()),
        }
    }

    /// keepalived's log line for a change.
    fn describe(&self, up: bool, rs: &str, vs: &str, error: Option<&CheckError>) -> String {
        let why = error.map(|e| format!(" ({e})")).unwrap_or_default();
        match self {
            Prober::Tcp(ep) => {
                format!("TCP connection to {ep} {}.{why}", if up { "success" } else { "failed" })
            }
            Prober::Misc(m) => format!(
                "Misc check for [{rs} VS {vs}] by [{}] {}.{why}",
                m.script.command,
                if up { "succeeded" } else { "failed" }
            ),
            Prober::Http(h) | Prober::Ssl(h, _) => {
                let kind = if matches!(self, Prober::Http(_)) { "HTTP_GET" } else { "SSL_GET" };
                if up {
                    format!("{kind} check on service {} succeeded.", h.ep)
                } else {
                    format!("{kind} check on service {} failed{why}.", h.ep)
                }
            }
            Prober::Smtp(ep, _) | Prober::Udp(ep, _) | Prober::Ping(ep) => {
                let kind = match self {
                    Prober::Smtp(..) => "SMTP",
                    Prober::Udp(..) => "UDP",
                    _ => "ICMP echo",
                };
                format!("{kind} check on service {ep} {}.{why}", if up { "succeeded" } else { "failed" })
            }
            Prober::Dns(d) => {
                format!("DNS check on service {} {}.{why}", d.ep, if up { "succeeded" } else { "failed" })
            }
            Prober::File(f) => {
                format!("FILE_CHECK {} for {rs} {}.{why}", f.path.display(), if up { "up" } else { "down" })
            }
        }
    }
}

/// A real server's configured weight (the virtual server's default, else 1).
fn configured_weight(vs: &VirtualServer, rs: usize) -> u32 {
    let weight = vs.real_servers[rs].weight.or(vs.weight).unwrap_or(1);
    u32::try_from(weight).unwrap_or(0)
}

/// A real server's `uthreshold` / `lthreshold`, if it has either.
fn thresholds(rs: &RealServer) -> Option<Thresholds> {
    (rs.uthreshold.is_some() || rs.lthreshold.is_some())
        .then(|| Thresholds { upper: rs.uthreshold.unwrap_or(0), lower: rs.lthreshold.unwrap_or(0) })
}

/// The address whose presence on this host lets the checkers of an `ha_suspend` virtual server
/// run (`None`: never suspended, as for fwmark and group services).
fn suspend_address(vs: &VirtualServer) -> Option<IpAddr> {
    match vs.address {
        VsAddress::Ip { address, .. } if vs.ha_suspend => Some(address),
        _ => None,
    }
}

/// Whether the checkers of a virtual server whose `ha_suspend` address is `vip` are suspended
/// when the host has `local` addresses.
pub fn suspended(vip: Option<IpAddr>, local: &HashSet<IpAddr>) -> bool {
    vip.is_some_and(|vip| !local.contains(&vip))
}

/// The host's addresses (of the network namespace lbd runs in).
fn local_addresses() -> HashSet<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else { return HashSet::new() };
    addrs
        .filter_map(|a| a.address)
        .filter_map(|a| {
            a.as_sockaddr_in()
                .map(|s| IpAddr::V4(s.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
        })
        .collect()
}

/// The host's addresses as they change.
type LocalAddresses = watch::Receiver<Arc<HashSet<IpAddr>>>;

/// Polls the host's addresses; the task ends when every receiver is gone.
fn watch_local_addresses() -> (LocalAddresses, JoinHandle<()>) {
    let (tx, rx) = watch::channel(Arc::new(local_addresses()));
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(ADDRESS_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !tx.is_closed() {
            tick.tick().await;
            let now = local_addresses();
            tx.send_if_modified(|current| {
                let modified = **current != now;
                if modified {
                    *current = Arc::new(now);
                }
                modified
            });
        }
    });
    (rx, task)
}

/// A change reported by a checker task: (virtual server, real server, checker) and the change.
type Report = ((usize, usize, usize), Change);

/// Whether each checker counts its real server up, by [`checker_key`]: what a reload hands on.
type Verdicts = Arc<Mutex<HashMap<String, bool>>>;

/// One checker's live figures, written by its task.
#[derive(Debug, Default)]
struct Gauge {
    up: AtomicBool,
    suspended: AtomicBool,
    probes: AtomicU64,
    /// The last probe's duration in nanoseconds, 0 before the first.
    last_nanos: AtomicU64,
}

/// One checker as [`Runner::checkers`] reports it (for status pages and metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckerHealth {
    /// Its virtual server, as keepalived names it (`[10.0.0.1]:tcp:80`).
    pub virtual_server: String,
    /// Its real server (`[10.0.1.1]:tcp:80`).
    pub real_server: String,
    /// Its keyword (`TCP_CHECK`, ...).
    pub kind: &'static str,
    /// Whether it counts its real server up.
    pub up: bool,
    /// Whether it is suspended (`ha_suspend`).
    pub suspended: bool,
    /// Probes run so far.
    pub probes: u64,
    /// How long the last probe took, until its verdict or its time limit (`None` before the
    /// first).
    pub last_duration: Option<Duration>,
}

/// A checker's names and gauge, for [`Runner::checkers`].
#[derive(Debug)]
struct Listed {
    virtual_server: String,
    real_server: String,
    kind: &'static str,
    gauge: Arc<Gauge>,
}

/// The running checkers of one configuration. Dropping it stops them.
#[derive(Debug)]
pub struct Runner {
    desired: watch::Receiver<DesiredState>,
    tasks: Vec<JoinHandle<()>>,
    probes: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<oneshot::Sender<()>>>,
    verdicts: Verdicts,
    checkers: Vec<Listed>,
    connections: Option<mpsc::UnboundedSender<Vec<ServiceCounters>>>,
    status: CheckStatus,
}

/// A new checker's first verdict recorded and its entry listed (for `/status`): its gauge,
/// which its task keeps current.
fn enlist(
    checkers: &mut Vec<Listed>,
    verdicts: &Verdicts,
    id: &str,
    (real_server, virtual_server): &(String, String),
    kind: &'static str,
    up: bool,
) -> Arc<Gauge> {
    if let Ok(mut v) = verdicts.lock() {
        v.insert(id.to_owned(), up);
    }
    let gauge = Arc::new(Gauge::default());
    gauge.up.store(up, Ordering::Relaxed);
    checkers.push(Listed {
        virtual_server: virtual_server.clone(),
        real_server: real_server.clone(),
        kind,
        gauge: gauge.clone(),
    });
    gauge
}

/// What identifies a checker across reloads: its virtual and real server and its whole
/// configuration (any change makes it a new checker).
fn checker_key(vs: &VirtualServer, rs: &RealServer, checker: &Checker) -> String {
    format!("{}|{}|{checker:?}", service_name(vs), real_name(vs, rs))
}

impl Runner {
    /// Starts the checkers of `config` (inside a tokio runtime). The desired state as the
    /// checkers start (alpha checkers down) is available at once from [`Runner::desired`].
    pub fn spawn(config: &Config) -> Runner {
        Self::spawn_after(config, None, &watch::channel(BfdStates::new()).1)
    }

    /// As [`Runner::spawn`], for a reload: a checker that `previous` also runs, unchanged,
    /// starts up or down as it is there, so that a reload neither brings a dead real server back
    /// nor takes a live one out. (Stop `previous` without omega: drop it.) `bfd` gives the BFD
    /// sessions' states for `BFD_CHECK`.
    pub fn spawn_after(
        config: &Config,
        previous: Option<&Runner>,
        bfd: &watch::Receiver<BfdStates>,
    ) -> Runner {
        let before: HashMap<String, bool> =
            previous.and_then(|p| p.verdicts.lock().ok().map(|v| v.clone())).unwrap_or_default();
        let verdicts = Verdicts::default();
        let config = Arc::new(config.clone());
        let policy = ScriptPolicy::from_globals(&config.global_defs);
        let (report_tx, report_rx) = mpsc::unbounded_channel();
        let now = Instant::now();
        let probes = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        let mut services = Vec::new();
        let mut checkers = Vec::new();
        // Plain TCP_CHECKs and HTTP_GETs, probed by one loop.
        let mut looped = Vec::new();
        let local = config.virtual_servers.iter().any(|vs| suspend_address(vs).is_some()).then(|| {
            let (rx, task) = watch_local_addresses();
            tasks.push(task);
            rx
        });
        for (v, vs) in config.virtual_servers.iter().enumerate() {
            let mut reals = Vec::new();
            for (r, rs) in vs.real_servers.iter().enumerate() {
                let mut checkers_up = Vec::new();
                for checker in super::expanded_checkers(rs).iter().map(AsRef::as_ref) {
                    if let Checker::BfdCheck(b) = checker {
                        let id = checker_key(vs, rs, checker);
                        let names = (real_name(vs, rs), service_name(vs));
                        let name = b.name.clone().unwrap_or_default();
                        let up = bfd
                            .borrow()
                            .get(&name)
                            .copied()
                            .or_else(|| before.get(&id).copied())
                            .unwrap_or(!checker_timing(checker, vs, rs).alpha);
                        checkers_up.push(up);
                        let gauge = enlist(&mut checkers, &verdicts, &id, &names, checker.keyword(), up);
                        let task = BfdCheckTask {
                            key: (v, r, checkers_up.len() - 1),
                            name,
                            up,
                            names,
                            states: bfd.clone(),
                            reports: report_tx.clone(),
                            verdict: (verdicts.clone(), id),
                            gauge,
                        };
                        tasks.push(tokio::spawn(task.run()));
                        continue;
                    }
                    let prober = match Prober::new(checker, &config, vs, (v, r), &policy) {
                        Ok(p) => p,
                        Err(e) => {
                            warn!(
                                "{} of {} in VS {}: {e}; checker ignored",
                                checker.keyword(),
                                real_name(vs, rs),
                                service_name(vs)
                            );
                            continue;
                        }
                    };
                    let timing = checker_timing(checker, vs, rs);
                    let jitter = (super::random_u64() % 1_000_001) as f64 / 1_000_000.0;
                    let id = checker_key(vs, rs, checker);
                    let state = match before.get(&id) {
                        Some(&up) => CheckerState::resume(timing, now.into_std(), jitter, up),
                        None => CheckerState::new(timing, now.into_std(), jitter),
                    };
                    let state = match checker {
                        Checker::HttpGet(h) | Checker::SslGet(h) => {
                            state.with_urls(h.urls.len(), h.fast_recovery.unwrap_or(false))
                        }
                        _ => state,
                    };
                    checkers_up.push(state.is_up());
                    let names = (real_name(vs, rs), service_name(vs));
                    let gauge =
                        enlist(&mut checkers, &verdicts, &id, &names, checker.keyword(), state.is_up());
                    let task = CheckerTask {
                        key: (v, r, checkers_up.len() - 1),
                        prober,
                        state,
                        names,
                        reports: report_tx.clone(),
                        verdict: (verdicts.clone(), id),
                        probes: probes.clone(),
                        gauge,
                        suspend: suspend_address(vs).zip(local.clone()),
                        log_all_failures: checker
                            .common()
                            .and_then(|c| c.log_all_failures)
                            .or(config.global_defs.checker_log_all_failures)
                            .unwrap_or(false),
                    };
                    match task.loop_target() {
                        Some((addr, limit, gets)) => {
                            looped.push(probe_loop::Entry { addr, limit, gets, checker: task });
                        }
                        None => tasks.push(tokio::spawn(task.run())),
                    }
                }
                reals.push(RealSpec {
                    weight: configured_weight(vs, r),
                    inhibit: rs.inhibit_on_failure.unwrap_or(vs.inhibit_on_failure),
                    checkers_up,
                    thresholds: thresholds(rs),
                });
            }
            let sorry = match (&vs.sorry_server, vs.sorry_server_inhibit) {
                (None, _) => Sorry::None,
                (Some(_), false) => Sorry::Plain,
                (Some(_), true) => Sorry::Inhibit,
            };
            services.push(ServiceState::new(reals, vs.quorum, vs.hysteresis, sorry));
        }
        if !looped.is_empty() {
            tasks.push(tokio::spawn(probe_loop::run(looped)));
        }
        let smtp = crate::vrrp::config::smtp_plan(&config);
        let connection_keys = connection_keys(&config);
        let status = CheckStatus::default();
        let mut collector = Collector {
            services: services.iter().map(|(s, _)| s.clone()).collect(),
            config,
            policy,
            smtp,
            connection_keys,
            status: status.clone(),
        };
        status.set(collector.services.iter().map(ServiceState::status).collect());
        for (v, (_, event)) in services.into_iter().enumerate() {
            match event {
                Some(event) => collector.handle_events(v, [event], None),
                // As keepalived's checker at start: each virtual server's quorum state, once
                // (a quorum lost at start is published by its event).
                None => {
                    if let Some(service) = collector.services.get(v) {
                        collector.publish(v, &[ChangeKind::Quorum(service.quorum_up())]);
                    }
                }
            }
        }
        let (connections, connections_rx) = if collector.connection_keys.is_empty() {
            (None, None)
        } else {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        };
        let (desired_tx, desired) = watch::channel(collector.desired());
        let (stop_tx, stop_rx) = oneshot::channel();
        tasks.push(tokio::spawn(async move {
            collector.run(report_rx, connections_rx, desired_tx, stop_rx).await
        }));
        Runner { desired, tasks, probes, stop: Some(stop_tx), verdicts, checkers, connections, status }
    }

    /// What the checkers publish of their virtual servers (for the SNMP agent).
    pub fn status(&self) -> &CheckStatus {
        &self.status
    }

    /// Stops the checkers; virtual servers with `omega` run the `notify_down` scripts of their
    /// alive real servers and, if they hold their quorum, `quorum_down` (waited for).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let (done_tx, done_rx) = oneshot::channel();
            if stop.send(done_tx).is_ok() {
                let _ = done_rx.await;
            }
        }
    }

    /// Probes run so far, by all checkers.
    pub fn probes(&self) -> u64 {
        self.probes.load(Ordering::Relaxed)
    }

    /// Every checker's verdict, probe count and last probe's duration, in configuration order.
    pub fn checkers(&self) -> Vec<CheckerHealth> {
        self.checkers
            .iter()
            .map(|c| {
                let nanos = c.gauge.last_nanos.load(Ordering::Relaxed);
                CheckerHealth {
                    virtual_server: c.virtual_server.clone(),
                    real_server: c.real_server.clone(),
                    kind: c.kind,
                    up: c.gauge.up.load(Ordering::Relaxed),
                    suspended: c.gauge.suspended.load(Ordering::Relaxed),
                    probes: c.gauge.probes.load(Ordering::Relaxed),
                    last_duration: (nanos != 0).then(|| Duration::from_nanos(nanos)),
                }
            })
            .collect()
    }

    /// Whether a real server has `uthreshold` / `lthreshold`, so that the daemon should hand
    /// the data plane's counters to [`Runner::connections`].
    pub fn wants_connections(&self) -> bool {
        self.connections.is_some()
    }

    /// Hands over the data plane's counters (`Dataplane::service_stats`): real servers at their
    /// `uthreshold` get weight 0 until they fall below their `lthreshold`; a change shows in
    /// [`Runner::changed`]. Call it about once a second while [`Runner::wants_connections`].
    pub fn connections(&self, stats: &[ServiceCounters]) {
        if let Some(tx) = &self.connections {
            let _ = tx.send(stats.to_vec());
        }
    }

    /// The desired state as the checkers see it now.
    pub fn desired(&self) -> DesiredState {
        self.desired.borrow().clone()
    }

    /// Waits for the next change of the desired state and returns it.
    pub async fn changed(&mut self) -> DesiredState {
        if self.desired.changed().await.is_err() {
            // The collector ended (never, short of a panic): nothing will change any more.
            std::future::pending::<()>().await;
        }
        self.desired.borrow_and_update().clone()
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The data plane's (service, real address, real port) of each real server with thresholds,
/// as (virtual server, real server) indexes.
fn connection_keys(config: &Config) -> HashMap<(ServiceAddr, IpAddr, u16), (usize, usize)> {
    let mut keys = HashMap::new();
    for (v, vs) in config.virtual_servers.iter().enumerate() {
        for addr in crate::lvs::service_addresses(config, vs) {
            for (r, rs) in vs.real_servers.iter().enumerate() {
                if thresholds(rs).is_some() {
                    keys.insert((addr, rs.address, rs.port.unwrap_or(addr.port)), (v, r));
                }
            }
        }
    }
    keys
}

/// One checker's task.
struct CheckerTask {
    key: (usize, usize, usize),
    prober: Prober,
    state: CheckerState,
    /// Its real and virtual server's names.
    names: (String, String),
    reports: mpsc::UnboundedSender<Report>,
    verdict: (Verdicts, String),
    probes: Arc<AtomicU64>,
    gauge: Arc<Gauge>,
    /// `ha_suspend`: the address that must be local, and the host's addresses.
    suspend: Option<(IpAddr, LocalAddresses)>,
    /// `log_all_failures` (or global `checker_log_all_failures`): every failed probe of an up
    /// checker is logged, retries included, not only the one that takes it down.
    log_all_failures: bool,
}

impl CheckerTask {
    async fn run(mut self) {
        loop {
            self.wait_while_suspended().await;
            tokio::time::sleep_until(self.state.next_probe().into()).await;
            if self.suspend.as_ref().is_some_and(|(vip, local)| suspended(Some(*vip), &local.borrow())) {
                continue;
            }
            let limit = self.prober.limit(self.state.timing().connect_timeout);
            let started = std::time::Instant::now();
            // Boxed (by kind): the task holds a pointer, not room for the largest checker's
            // probe, which keeps 10,000 idle TCP checkers small.
            let probe = self.prober.probe(self.state.url());
            let result = match limit {
                Some(limit) => {
                    tokio::time::timeout(limit, probe).await.unwrap_or(Err(CheckError::Timeout(limit)))
                }
                None => probe.await,
            };
            if !probe_loop::Scheduled::record(&mut self, result, started, probe_loop::Ended::now()) {
                return;
            }
        }
    }

    /// `ha_suspend`: while the virtual server's address is not on this host, no probe runs and
    /// the verdict stays as it is (keepalived's "Suspending healthchecker").
    async fn wait_while_suspended(&mut self) {
        let Some((vip, local)) = &mut self.suspend else { return };
        if !suspended(Some(*vip), &local.borrow_and_update()) {
            return;
        }
        let (rs, vs) = &self.names;
        info!("Suspending healthchecker for service {rs} for VS {vs}");
        self.state.suspend();
        self.gauge.suspended.store(true, Ordering::Relaxed);
        let vip = *vip;
        if local.wait_for(|l| !suspended(Some(vip), l)).await.is_err() {
            // The address watcher ended (the runner is going away).
            std::future::pending::<()>().await;
        }
        info!("Activating healthchecker for service {rs} for VS {vs}");
        self.state.resume_probes(std::time::Instant::now());
        self.gauge.suspended.store(false, Ordering::Relaxed);
    }

    /// Where the probe loop connects, its time limit and what it fetches, for a plain
    /// TCP_CHECK or HTTP_GET (no `bindto`, `bind_port`, `bind_if`, `fwmark` or `ha_suspend`; an
    /// HTTP_GET with at least one url), which [`probe_loop`](super::probe_loop) runs; `None`
    /// for any other checker, which runs as a task of its own.
    fn loop_target(&self) -> Option<(std::net::SocketAddr, Duration, Vec<probe_loop::Get>)> {
        let plain = |ep: &super::Endpoint| {
            ep.bind.is_none() && ep.fwmark.is_none() && ep.device.is_none() && self.suspend.is_none()
        };
        let limit = self.state.timing().connect_timeout;
        match &self.prober {
            Prober::Tcp(ep) if plain(ep) => Some((ep.addr, limit, Vec::new())),
            Prober::Http(h) if plain(&h.ep) && !h.urls.is_empty() => {
                let get = |u: &super::http::UrlCheck| probe_loop::Get {
                    request: h.request(u).into_bytes(),
                    url: u.clone(),
                };
                Some((h.ep.addr, limit, h.urls.iter().map(get).collect()))
            }
            _ => None,
        }
    }
}

impl probe_loop::Scheduled for CheckerTask {
    fn due(&self) -> std::time::Instant {
        self.state.next_probe()
    }

    fn url(&self) -> usize {
        self.state.url()
    }

    /// Records a probe's result (gauges, verdict, log line) and reports a change of verdict;
    /// `false` once the collector is gone.
    fn record(
        &mut self,
        result: Result<Probe, CheckError>,
        started: std::time::Instant,
        ended: probe_loop::Ended,
    ) -> bool {
        let nanos = u64::try_from((ended.seen - started).as_nanos()).unwrap_or(u64::MAX).max(1);
        self.gauge.last_nanos.store(nanos, Ordering::Relaxed);
        self.gauge.probes.fetch_add(1, Ordering::Relaxed);
        self.probes.fetch_add(1, Ordering::Relaxed);
        let (rs, vs) = &self.names;
        let probe = match &result {
            Ok(probe) => *probe,
            Err(e) if self.log_all_failures && self.state.is_up() => {
                info!("{}", self.prober.describe(false, rs, vs, Some(e)));
                Probe::Down
            }
            Err(e) => {
                debug!("{}", self.prober.describe(false, rs, vs, Some(e)));
                Probe::Down
            }
        };
        // The next probe is due a delay_loop after the earliest this one can have ended.
        let Some(change) = self.state.on_probe(probe, ended.earliest) else { return true };
        let (rs, vs) = &self.names;
        match change {
            Change::Up { .. } => info!("{}", self.prober.describe(true, rs, vs, None)),
            Change::Down => warn!("{}", self.prober.describe(false, rs, vs, result.as_ref().err())),
        }
        self.gauge.up.store(self.state.is_up(), Ordering::Relaxed);
        if let Ok(mut v) = self.verdict.0.lock() {
            v.insert(self.verdict.1.clone(), self.state.is_up());
        }
        self.reports.send((self.key, change)).is_ok()
    }
}

/// A `BFD_CHECK`: follows its session's state as the BFD child reports it.
struct BfdCheckTask {
    key: (usize, usize, usize),
    name: String,
    up: bool,
    names: (String, String),
    states: watch::Receiver<BfdStates>,
    reports: mpsc::UnboundedSender<Report>,
    verdict: (Verdicts, String),
    gauge: Arc<Gauge>,
}

impl BfdCheckTask {
    async fn run(mut self) {
        loop {
            let reported = self.states.borrow_and_update().get(&self.name).copied();
            if let Some(up) = reported.filter(|&up| up != self.up) {
                self.up = up;
                let (rs, vs) = &self.names;
                let line = format!(
                    "BFD check of [{}] RS({rs}) VS({vs}) is {}",
                    self.name,
                    if up { "UP" } else { "DOWN" }
                );
                if up {
                    info!("{line}")
                } else {
                    warn!("{line}")
                }
                self.gauge.up.store(up, Ordering::Relaxed);
                self.gauge.probes.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut v) = self.verdict.0.lock() {
                    v.insert(self.verdict.1.clone(), up);
                }
                let change = if up { Change::Up { weight: None } } else { Change::Down };
                if self.reports.send((self.key, change)).is_err() {
                    return;
                }
            }
            if self.states.changed().await.is_err() {
                // No more reports (the daemon is going away, or runs without BFD).
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The collecting task's state.
#[derive(Debug)]
struct Collector {
    config: Arc<Config>,
    policy: ScriptPolicy,
    services: Vec<ServiceState>,
    /// Where `smtp_alert` mails go.
    smtp: Option<SmtpPlan>,
    /// See [`connection_keys`].
    connection_keys: HashMap<(ServiceAddr, IpAddr, u16), (usize, usize)>,
    /// Where the real servers' and quorums' changes are published.
    status: CheckStatus,
}

impl Collector {
    async fn run(
        &mut self,
        mut reports: mpsc::UnboundedReceiver<Report>,
        mut connections: Option<mpsc::UnboundedReceiver<Vec<ServiceCounters>>>,
        desired: watch::Sender<DesiredState>,
        mut stop: oneshot::Receiver<oneshot::Sender<()>>,
    ) {
        // Without checkers the reports end at once; the counters and the stop still come.
        let mut reporting = true;
        loop {
            tokio::select! {
                report = reports.recv(), if reporting => match report {
                    Some(((v, r, c), change)) => {
                        let Some(service) = self.services.get_mut(v) else { continue };
                        let events = service.on_change(r, c, change);
                        let rs = &self.config.virtual_servers[v].real_servers[r];
                        let kind = super::expanded_checkers(rs).get(c).map(|c| c.keyword());
                        // Published even without events: a failing checker of a real server
                        // already dead changes no verdict, but its count of failing checkers.
                        self.handle_events(v, events, kind);
                    }
                    None => {
                        reporting = false;
                        continue;
                    }
                },
                Some(stats) = next_stats(&mut connections) => self.on_connections(&stats),
                done = &mut stop => {
                    // Err: the runner was dropped, not stopped; no omega then.
                    if let Ok(done) = done {
                        self.omega().await;
                        let _ = done.send(());
                    }
                    return;
                }
            };
            let next = self.desired();
            desired.send_if_modified(|current| {
                let modified = *current != next;
                *current = next;
                modified
            });
        }
    }

    /// Applies the data plane's active connection counts to the real servers with thresholds.
    fn on_connections(&mut self, stats: &[ServiceCounters]) {
        let mut active: HashMap<(usize, usize), u64> =
            self.connection_keys.values().map(|&key| (key, 0)).collect();
        for service in stats {
            for real in service.reals.iter().filter(|r| !r.sorry) {
                if let Some(key) = self.connection_keys.get(&(service.service, real.addr, real.port))
                    && let Some(sum) = active.get_mut(key)
                {
                    *sum += real.counters.active_conns;
                }
            }
        }
        for ((v, r), count) in active {
            if let Some(event) = self.services.get_mut(v).and_then(|s| s.on_connections(r, count)) {
                self.handle_events(v, [event], None);
            }
        }
    }

    /// keepalived's `omega` at shutdown.
    async fn omega(&self) {
        let mut scripts = Vec::new();
        for (vs, service) in self.config.virtual_servers.iter().zip(&self.services) {
            if !vs.omega {
                continue;
            }
            for (r, rs) in vs.real_servers.iter().enumerate() {
                if service.alive(r)
                    && let Some(script) = &rs.notify_down
                {
                    scripts.push(&**script);
                }
            }
            if service.quorum_up()
                && let Some(script) = &vs.quorum_down
            {
                scripts.push(script);
            }
        }
        let runs = scripts.into_iter().filter_map(|script| match self.policy.prepare(script) {
            Ok(prepared) => Some(async move { prepared.run(&[], SCRIPT_TIMEOUT).await }),
            Err(e) => {
                error!("cannot run {}: {e}", script.command);
                None
            }
        });
        futures::future::join_all(runs).await;
    }

    fn desired(&self) -> DesiredState {
        let mut health = Health::default();
        for (v, service) in self.services.iter().enumerate() {
            health.set(v, ServiceHealth { reals: service.verdicts(), sorry: service.sorry_verdict() });
        }
        crate::lvs::desired_state_with(&self.config, &health).0
    }

    /// Handles `events` of virtual server `v` ([`Collector::handle_event`]), then publishes
    /// the virtual server and its changes.
    fn handle_events(&self, v: usize, events: impl IntoIterator<Item = Event>, kind: Option<&str>) {
        let mut changes = Vec::new();
        for event in events {
            changes.extend(match event {
                Event::RealUp(r) => Some(ChangeKind::Real(r, true)),
                Event::RealDown(r) => Some(ChangeKind::Real(r, false)),
                Event::QuorumGained(_) => Some(ChangeKind::Quorum(true)),
                Event::QuorumLost(_) => Some(ChangeKind::Quorum(false)),
                Event::Weight(..) | Event::Overloaded(_) | Event::Unloaded(_) => None,
            });
            self.handle_event(v, event, kind);
        }
        self.publish(v, &changes);
    }

    /// Publishes virtual server `v` as it is now (one copy, whatever the number of changes),
    /// then its `changes`.
    fn publish(&self, v: usize, changes: &[ChangeKind]) {
        let Some(service) = self.services.get(v) else { return };
        let now = service.status();
        let up = now.reals_up();
        self.status.set_service(v, now);
        for &change in changes {
            self.status.publish(v, change, up);
        }
    }

    /// Logs `event` of virtual server `v` as keepalived does, mails it (`smtp_alert`) and runs
    /// its script; `kind` is the keyword of the checker behind a real server's change.
    fn handle_event(&self, v: usize, event: Event, kind: Option<&str>) {
        let (config, policy) = (&*self.config, &self.policy);
        let vs = &config.virtual_servers[v];
        let vs_name = service_name(vs);
        let router_id = self.smtp.as_ref().map(|p| p.router_id.as_str()).unwrap_or_default();
        let mail = |enabled: bool, message: (String, String)| {
            if let Some(plan) = &self.smtp
                && enabled
            {
                alert::send(plan, message);
            }
        };
        match event {
            Event::RealUp(r) | Event::RealDown(r) => {
                let rs = &vs.real_servers[r];
                let up = matches!(event, Event::RealUp(_));
                let inhibit = rs.inhibit_on_failure.unwrap_or(vs.inhibit_on_failure);
                let action = match (up, inhibit) {
                    (true, false) => "Adding service",
                    (true, true) => "Enabling service",
                    (false, false) => "Removing service",
                    (false, true) => "Disabling service",
                };
                let direction = if up { "to" } else { "from" };
                let rs_name = real_name(vs, rs);
                info!("{action} {rs_name} {direction} VS {vs_name}");
                let kind = kind.unwrap_or("CHECK").trim_end_matches("_CHECK");
                mail(
                    alert::enabled(rs.smtp_alert, &config.global_defs),
                    alert::real_message(router_id, &rs_name, &vs_name, up, kind),
                );
                let script = if up { &rs.notify_up } else { &rs.notify_down };
                if let Some(script) = script {
                    run_script(policy, script);
                }
            }
            Event::Weight(r, weight) => {
                info!(
                    "Changing weight to {weight} for service {} of VS {vs_name}",
                    real_name(vs, &vs.real_servers[r])
                );
            }
            Event::Overloaded(r) | Event::Unloaded(r) => {
                let rs = &vs.real_servers[r];
                let t = thresholds(rs).unwrap_or_default();
                if matches!(event, Event::Overloaded(_)) {
                    info!(
                        "Real server {} of VS {vs_name} reached uthreshold {}: no new connections",
                        real_name(vs, rs),
                        t.upper
                    );
                } else {
                    info!(
                        "Real server {} of VS {vs_name} fell below lthreshold {}: new connections again",
                        real_name(vs, rs),
                        if t.lower == 0 { t.upper * 3 / 4 } else { t.lower }
                    );
                }
            }
            Event::QuorumGained(sum) => {
                info!(
                    "Gained quorum {}+{}={} <= {sum} for VS {vs_name}",
                    vs.quorum,
                    vs.hysteresis,
                    vs.quorum + vs.hysteresis
                );
                if let Some(sorry) = &vs.sorry_server {
                    let verb = if vs.sorry_server_inhibit { "Disabling" } else { "Removing" };
                    info!(
                        "{verb} sorry server [{}]:{} from VS {vs_name}",
                        sorry.address,
                        sorry.port.unwrap_or(0)
                    );
                }
                mail(
                    alert::enabled(vs.smtp_alert, &config.global_defs),
                    alert::quorum_message(router_id, &vs_name, true),
                );
                if let Some(script) = &vs.quorum_up {
                    run_script(policy, script);
                }
            }
            Event::QuorumLost(sum) => {
                let threshold = vs.quorum.saturating_sub(vs.hysteresis);
                info!("Lost quorum {}-{}={threshold} > {sum} for VS {vs_name}", vs.quorum, vs.hysteresis);
                mail(
                    alert::enabled(vs.smtp_alert, &config.global_defs),
                    alert::quorum_message(router_id, &vs_name, false),
                );
                if let Some(script) = &vs.quorum_down {
                    run_script(policy, script);
                }
                if let Some(sorry) = &vs.sorry_server {
                    info!(
                        "Adding sorry server [{}]:{} to VS {vs_name}",
                        sorry.address,
                        sorry.port.unwrap_or(0)
                    );
                }
            }
        }
        if let Some(service) = self.services.get(v) {
            debug!("VS {vs_name}: live weight {}, quorum {}", service.live_weight(), service.quorum_up());
        }
    }
}

/// The next counters handed to [`Runner::connections`], if the runner takes them.
async fn next_stats(
    connections: &mut Option<mpsc::UnboundedReceiver<Vec<ServiceCounters>>>,
) -> Option<Vec<ServiceCounters>> {
    match connections {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Runs a notify or quorum script in the background.
fn run_script(policy: &ScriptPolicy, script: &Script) {
    match policy.prepare(script) {
        Ok(prepared) => {
            tokio::spawn(async move {
                let outcome = prepared.run(&[], SCRIPT_TIMEOUT).await;
                debug!("script {} ended: {outcome:?}", prepared.command);
            });
        }
        Err(e) => error!("cannot run {}: {e}", script.command),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LoadOptions, parse_str};

    fn config(port: u16, extra: &str) -> Config {
        let text = format!(
            "virtual_server 10.0.0.1 80 {{\n protocol TCP\n delay_loop 1\n{extra}\
             real_server 127.0.0.1 {port} {{\n  TCP_CHECK {{\n   connect_timeout 1\n   retry 0\n   warmup 0\n  }}\n }}\n\
             real_server 127.0.0.2 80 {{\n }}\n}}\n"
        );
        parse_str("test.conf", &text, &LoadOptions::default()).config
    }

    fn reals(desired: &DesiredState) -> Vec<String> {
        desired.services[0].reals.iter().map(|r| r.addr.to_string()).collect()
    }

    #[tokio::test]
    async fn a_dead_real_is_taken_out_and_comes_back() -> Result<(), Box<dyn std::error::Error>> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut runner = Runner::spawn(&config(addr.port(), ""));
        assert_eq!(reals(&runner.desired()), ["127.0.0.1", "127.0.0.2"]);
        drop(listener);
        let desired = tokio::time::timeout(Duration::from_secs(5), runner.changed()).await?;
        assert_eq!(reals(&desired), ["127.0.0.2"], "the real without a checker stays");
        assert!(runner.probes() >= 1);
        let _listener = tokio::net::TcpListener::bind(addr).await?;
        let desired = tokio::time::timeout(Duration::from_secs(5), runner.changed()).await?;
        assert_eq!(reals(&desired), ["127.0.0.1", "127.0.0.2"]);
        Ok(())
    }

    #[tokio::test]
    async fn a_bfd_check_follows_its_session() -> Result<(), Box<dyn std::error::Error>> {
        let text = "bfd_instance peer {\n neighbor_ip 10.0.0.9\n}\n\
            virtual_server 10.0.0.1 80 {\n protocol TCP\n\
             real_server 127.0.0.1 80 {\n  BFD_CHECK {\n   name peer\n  }\n }\n\
             real_server 127.0.0.2 80 {\n  BFD_CHECK {\n   name peer\n   alpha\n  }\n }\n}\n";
        let config = parse_str("test.conf", text, &LoadOptions::default()).config;
        let (states, bfd) = watch::channel(BfdStates::new());
        let mut runner = Runner::spawn_after(&config, None, &bfd);
        // Not reported yet: up, and down with alpha.
        assert_eq!(reals(&runner.desired()), ["127.0.0.1"]);
        states.send_modify(|s| {
            s.insert("peer".into(), true);
        });
        let desired = tokio::time::timeout(Duration::from_secs(5), runner.changed()).await?;
        assert_eq!(reals(&desired), ["127.0.0.1", "127.0.0.2"]);
        states.send_modify(|s| {
            s.insert("peer".into(), false);
        });
        let desired = tokio::time::timeout(Duration::from_secs(5), runner.changed()).await?;
        assert!(reals(&desired).is_empty());
        assert!(runner.checkers().iter().all(|c| c.kind == "BFD_CHECK" && !c.up));
        // A reload's runner starts from the states known now.
        let again = Runner::spawn_after(&config, Some(&runner), &bfd);
        assert!(reals(&again.desired()).is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn omega_runs_quorum_down_at_stop() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("lbd-omega-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let flag = dir.join("quorum-down");
        let extra = format!(" omega\n quorum_down \"/usr/bin/touch {}\"\n", flag.display());
        let runner = Runner::spawn(&config(9, &extra));
        runner.stop().await;
        let ran = flag.exists();
        std::fs::remove_dir_all(&dir)?;
        assert!(ran, "quorum_down ran at stop");
        Ok(())
    }

    #[tokio::test]
    async fn a_reload_keeps_an_unchanged_checkers_verdict() -> Result<(), Box<dyn std::error::Error>> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        drop(listener);
        let mut runner = Runner::spawn(&config(port, ""));
        let desired = tokio::time::timeout(Duration::from_secs(5), runner.changed()).await?;
        assert_eq!(reals(&desired), ["127.0.0.2"], "the dead real is out");
        // Reloaded with the same checker: still out from the start, not back until proven alive.
        let same = Runner::spawn_after(&config(port, ""), Some(&runner), &watch::channel(BfdStates::new()).1);
        assert_eq!(reals(&same.desired()), ["127.0.0.2"]);
        // A checker whose configuration changed starts afresh (up, as keepalived without alpha).
        let mut other = config(port, "");
        if let Checker::TcpCheck(common) = &mut other.virtual_servers[0].real_servers[0].checkers[0] {
            common.connect_timeout = Some(Duration::from_secs(2));
        }
        let changed = Runner::spawn_after(&other, Some(&runner), &watch::channel(BfdStates::new()).1);
        assert_eq!(reals(&changed.desired()), ["127.0.0.1", "127.0.0.2"]);
        Ok(())
    }

    #[tokio::test]
    async fn checkers_report_their_verdict_and_last_probe_duration() -> Result<(), Box<dyn std::error::Error>>
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let runner = Runner::spawn(&config(listener.local_addr()?.port(), ""));
        let before = runner.checkers();
        assert_eq!(before.len(), 1);
        assert_eq!((before[0].kind, before[0].probes, before[0].last_duration), ("TCP_CHECK", 0, None));
        tokio::time::timeout(Duration::from_secs(5), async {
            while runner.checkers()[0].probes == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await?;
        let after = &runner.checkers()[0];
        assert!(after.up && !after.suspended);
        assert_eq!(after.virtual_server, "[10.0.0.1]:tcp:80");
        let took = after.last_duration.unwrap_or_default();
        assert!(took > Duration::ZERO && took < Duration::from_secs(1), "{took:?}");
        Ok(())
    }

    #[test]
    fn ha_suspend_wants_the_address_on_this_host() {
        let local: HashSet<IpAddr> = ["127.0.0.1".parse().unwrap_or(IpAddr::from([0; 4]))].into();
        assert!(!suspended(None, &local), "no ha_suspend: never");
        assert!(!suspended(Some(IpAddr::from([127, 0, 0, 1])), &local));
        assert!(suspended(Some(IpAddr::from([10, 0, 0, 1])), &local));
        assert!(local_addresses().contains(&IpAddr::from([127, 0, 0, 1])), "loopback is read");
    }

    #[tokio::test]
    async fn ha_suspend_holds_the_probes_of_a_vip_not_on_this_host() -> Result<(), Box<dyn std::error::Error>>
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        drop(listener);
        let away = Runner::spawn(&config(port, " ha_suspend\n"));
        let text = config(port, "").virtual_servers[0].clone();
        let mut here = config(port, " ha_suspend\n");
        here.virtual_servers[0].address =
            VsAddress::Ip { address: IpAddr::from([127, 0, 0, 1]), port: Some(80) };
        let mut here = Runner::spawn(&here);
        let desired = tokio::time::timeout(Duration::from_secs(5), here.changed()).await?;
        assert_eq!(desired.services[0].reals.len(), 1, "the local VIP's checker took the dead real out");
        assert_eq!(away.probes(), 0, "10.0.0.1 is not here: no probe");
        assert!(away.checkers()[0].suspended && away.checkers()[0].up, "suspended, verdict kept");
        assert_eq!(reals(&away.desired()).len(), text.real_servers.len());
        Ok(())
    }

    fn counters(real: &str, port: u16, active: u64) -> Vec<ServiceCounters> {
        use crate::dataplane::{Counters, Protocol, RealCounters};
        let addr = |a: &str| a.parse().unwrap_or(IpAddr::from([0; 4]));
        vec![ServiceCounters {
            service: ServiceAddr { vip: addr("10.0.0.1"), port: 80, protocol: Protocol::Tcp },
            counters: Counters::default(),
            no_real: 0,
            reals: vec![RealCounters {
                addr: addr(real),
                port,
                sorry: false,
                weight: 1,
                counters: Counters { active_conns: active, ..Counters::default() },
            }],
        }]
    }

    #[tokio::test]
    async fn uthreshold_sets_weight_zero_until_lthreshold() -> Result<(), Box<dyn std::error::Error>> {
        let text = "virtual_server 10.0.0.1 80 {\n protocol TCP\n real_server 127.0.0.2 80 {\n  weight 3\n  uthreshold 4\n  lthreshold 2\n }\n real_server 127.0.0.3 80 {\n }\n}\n";
        let config = parse_str("test.conf", text, &LoadOptions::default()).config;
        let mut runner = Runner::spawn(&config);
        assert!(runner.wants_connections());
        let weight = |d: &DesiredState| d.services[0].reals[0].weight;
        assert_eq!(weight(&runner.desired()), 3);
        runner.connections(&counters("127.0.0.2", 80, 4));
        let desired = tokio::time::timeout(Duration::from_secs(2), runner.changed()).await?;
        assert_eq!(weight(&desired), 0, "at uthreshold: no new connections");
        runner.connections(&counters("127.0.0.2", 80, 2));
        runner.connections(&counters("127.0.0.2", 80, 1));
        let desired = tokio::time::timeout(Duration::from_secs(2), runner.changed()).await?;
        assert_eq!(weight(&desired), 3, "below lthreshold: back");
        assert!(!Runner::spawn(&config_without_thresholds()).wants_connections());
        Ok(())
    }

    fn config_without_thresholds() -> Config {
        config(9, "")
    }
}
