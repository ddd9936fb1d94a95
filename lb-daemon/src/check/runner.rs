//! The checkers at work: one tokio task per checker probes its real server on the schedule of
//! its [`CheckerState`]; a collecting task applies their changes to each virtual server's
//! [`ServiceState`], logs and runs the scripts as keepalived does, and publishes a new
//! [`DesiredState`] whenever what the data plane should forward changes.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
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
    CheckError, Endpoint, Health, ServiceHealth, checker_timing,
    dns::DnsProbe,
    file::FileProbe,
    http::HttpProbe,
    misc::MiscProbe,
    real_name,
    service::{Event, RealSpec, ServiceState},
    service_name,
    state::{Change, CheckerState, Probe},
};
use crate::{
    config::model::{Checker, Config, Script, VirtualServer},
    dataplane::DesiredState,
    vrrp::script::ScriptPolicy,
};

/// How long a notify or quorum script may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);

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
            Checker::HttpGet(h) => Prober::Http(HttpProbe::new(Endpoint::new(&h.conn, vs, rs), h, vhosts)),
            Checker::SslGet(h) => {
                Prober::Ssl(HttpProbe::new(Endpoint::new(&h.conn, vs, rs), h, vhosts), h.enable_sni)
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
            Checker::BfdCheck(_) => return Err(CheckError::Unusable("BFD_CHECK is not supported".into())),
        })
    }

    /// The time a probe may take.
    fn limit(&self, connect_timeout: Duration) -> Duration {
        match self {
            Prober::Misc(m) => m.timeout + Duration::from_secs(1),
            _ => connect_timeout,
        }
    }

    async fn probe(&self) -> Result<Probe, CheckError> {
        match self {
            Prober::Tcp(ep) => super::tcp::probe(ep).await,
            Prober::Http(h) => h.probe().await,
            Prober::Ssl(h, sni) => super::ssl::probe(h, *sni).await,
            Prober::Smtp(ep, helo) => super::smtp::probe(ep, helo).await,
            Prober::Dns(d) => d.probe().await,
            Prober::Misc(m) => m.probe().await,
            Prober::Udp(ep, u) => super::udp::probe(ep, u).await,
            Prober::Ping(ep) => super::ping::probe(ep).await,
            Prober::File(f) => f.probe().await,
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

/// A change reported by a checker task: (virtual server, real server, checker) and the change.
type Report = ((usize, usize, usize), Change);

/// Whether each checker counts its real server up, by [`checker_key`]: what a reload hands on.
type Verdicts = Arc<Mutex<HashMap<String, bool>>>;

/// The running checkers of one configuration. Dropping it stops them.
#[derive(Debug)]
pub struct Runner {
    desired: watch::Receiver<DesiredState>,
    tasks: Vec<JoinHandle<()>>,
    probes: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<oneshot::Sender<()>>>,
    verdicts: Verdicts,
}

/// What identifies a checker across reloads: its virtual and real server and its whole
/// configuration (any change makes it a new checker).
fn checker_key(vs: &VirtualServer, rs: &crate::config::model::RealServer, checker: &Checker) -> String {
    format!("{}|{}|{checker:?}", service_name(vs), real_name(vs, rs))
}

impl Runner {
    /// Starts the checkers of `config` (inside a tokio runtime). The desired state as the
    /// checkers start (alpha checkers down) is available at once from [`Runner::desired`].
    pub fn spawn(config: &Config) -> Runner {
        Self::spawn_after(config, None)
    }

    /// As [`Runner::spawn`], for a reload: a checker that `previous` also runs, unchanged,
    /// starts up or down as it is there, so that a reload neither brings a dead real server back
    /// nor takes a live one out. (Stop `previous` without omega: drop it.)
    pub fn spawn_after(config: &Config, previous: Option<&Runner>) -> Runner {
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
        for (v, vs) in config.virtual_servers.iter().enumerate() {
            let mut reals = Vec::new();
            for (r, rs) in vs.real_servers.iter().enumerate() {
                let mut checkers_up = Vec::new();
                for checker in &rs.checkers {
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
                    checkers_up.push(state.is_up());
                    if let Ok(mut v) = verdicts.lock() {
                        v.insert(id.clone(), state.is_up());
                    }
                    let names = (real_name(vs, rs), service_name(vs));
                    let key = (v, r, checkers_up.len() - 1);
                    let (reports, probes) = (report_tx.clone(), probes.clone());
                    let verdict = (verdicts.clone(), id);
                    tasks.push(tokio::spawn(run_checker(
                        key,
                        prober,
                        state,
                        names,
                        (reports, verdict),
                        probes,
                    )));
                }
                reals.push(RealSpec {
                    weight: configured_weight(vs, r),
                    inhibit: rs.inhibit_on_failure.unwrap_or(vs.inhibit_on_failure),
                    checkers_up,
                });
            }
            let (state, event) =
                ServiceState::new(reals, vs.quorum, vs.hysteresis, vs.sorry_server.is_some());
            services.push(state);
            if let Some(event) = event {
                handle_event(&config, &policy, v, event, &services[v]);
            }
        }
        let mut collector = Collector { config, policy, services };
        let (desired_tx, desired) = watch::channel(collector.desired());
        let (stop_tx, stop_rx) = oneshot::channel();
        tasks.push(tokio::spawn(async move { collector.run(report_rx, desired_tx, stop_rx).await }));
        Runner { desired, tasks, probes, stop: Some(stop_tx), verdicts }
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

async fn run_checker(
    key: (usize, usize, usize),
    prober: Prober,
    mut state: CheckerState,
    (rs, vs): (String, String),
    (reports, (verdicts, id)): (mpsc::UnboundedSender<Report>, (Verdicts, String)),
    probes: Arc<AtomicU64>,
) {
    loop {
        tokio::time::sleep_until(state.next_probe().into()).await;
        let limit = prober.limit(state.timing().connect_timeout);
        // Boxed: the task then holds a pointer, not room for the largest checker's probe
        // (HTTP over TLS), which keeps 10,000 idle TCP checkers small.
        let result = match tokio::time::timeout(limit, Box::pin(prober.probe())).await {
            Ok(result) => result,
            Err(_) => Err(CheckError::Timeout(limit)),
        };
        probes.fetch_add(1, Ordering::Relaxed);
        let probe = match &result {
            Ok(probe) => *probe,
            Err(e) => {
                debug!("{}", prober.describe(false, &rs, &vs, Some(e)));
                Probe::Down
            }
        };
        let Some(change) = state.on_probe(probe, std::time::Instant::now()) else { continue };
        match change {
            Change::Up { .. } => info!("{}", prober.describe(true, &rs, &vs, None)),
            Change::Down => warn!("{}", prober.describe(false, &rs, &vs, result.as_ref().err())),
        }
        if let Ok(mut v) = verdicts.lock() {
            v.insert(id.clone(), state.is_up());
        }
        if reports.send((key, change)).is_err() {
            return;
        }
    }
}

/// The collecting task's state.
#[derive(Debug)]
struct Collector {
    config: Arc<Config>,
    policy: ScriptPolicy,
    services: Vec<ServiceState>,
}

impl Collector {
    async fn run(
        &mut self,
        mut reports: mpsc::UnboundedReceiver<Report>,
        desired: watch::Sender<DesiredState>,
        mut stop: oneshot::Receiver<oneshot::Sender<()>>,
    ) {
        loop {
            let ((v, r, c), change) = tokio::select! {
                report = reports.recv() => match report {
                    Some(report) => report,
                    None => return,
                },
                done = &mut stop => {
                    // Err: the runner was dropped, not stopped; no omega then.
                    if let Ok(done) = done {
                        self.omega().await;
                        let _ = done.send(());
                    }
                    return;
                }
            };
            let Some(service) = self.services.get_mut(v) else { continue };
            let events = service.on_change(r, c, change);
            for event in events {
                handle_event(&self.config, &self.policy, v, event, &self.services[v]);
            }
            let next = self.desired();
            desired.send_if_modified(|current| {
                let modified = *current != next;
                *current = next;
                modified
            });
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
            health.set(v, ServiceHealth { reals: service.verdicts(), sorry: service.sorry_active() });
        }
        crate::lvs::desired_state_with(&self.config, &health).0
    }
}

/// Logs `event` of virtual server `v` as keepalived does and runs its script.
fn handle_event(config: &Config, policy: &ScriptPolicy, v: usize, event: Event, service: &ServiceState) {
    let vs = &config.virtual_servers[v];
    let vs_name = service_name(vs);
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
            info!("{action} {} {direction} VS {vs_name}", real_name(vs, rs));
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
        Event::QuorumGained(sum) => {
            info!(
                "Gained quorum {}+{}={} <= {sum} for VS {vs_name}",
                vs.quorum,
                vs.hysteresis,
                vs.quorum + vs.hysteresis
            );
            if let Some(sorry) = &vs.sorry_server {
                info!(
                    "Removing sorry server [{}]:{} from VS {vs_name}",
                    sorry.address,
                    sorry.port.unwrap_or(0)
                );
            }
            if let Some(script) = &vs.quorum_up {
                run_script(policy, script);
            }
        }
        Event::QuorumLost(sum) => {
            let threshold = vs.quorum.saturating_sub(vs.hysteresis);
            info!("Lost quorum {}-{}={threshold} > {sum} for VS {vs_name}", vs.quorum, vs.hysteresis);
            if let Some(script) = &vs.quorum_down {
                run_script(policy, script);
            }
            if let Some(sorry) = &vs.sorry_server {
                info!("Adding sorry server [{}]:{} to VS {vs_name}", sorry.address, sorry.port.unwrap_or(0));
            }
        }
    }
    debug!("VS {vs_name}: live weight {}, quorum {}", service.live_weight(), service.quorum_up());
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
        let same = Runner::spawn_after(&config(port, ""), Some(&runner));
        assert_eq!(reals(&same.desired()), ["127.0.0.2"]);
        // A checker whose configuration changed starts afresh (up, as keepalived without alpha).
        let mut other = config(port, "");
        if let Checker::TcpCheck(common) = &mut other.virtual_servers[0].real_servers[0].checkers[0] {
            common.connect_timeout = Some(Duration::from_secs(2));
        }
        let changed = Runner::spawn_after(&other, Some(&runner));
        assert_eq!(reals(&changed.desired()), ["127.0.0.1", "127.0.0.2"]);
        Ok(())
    }
}
