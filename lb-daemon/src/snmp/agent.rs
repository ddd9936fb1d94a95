//! The AgentX subagent task, of the VRRP child and of the checker child: the connection to the
//! master agent, the requests it answers and the notifications it sends. What it serves comes
//! from a [`Served`] source: the VRRP engine's [`Source`], or the checkers'
//! [`super::checker::CheckerSource`].
//!
//! The connection is retried every [`RETRY`] while the master is away (snmpd started after
//! lbd, or restarted), as net-snmp's subagents do. A reader task turns the byte stream into
//! PDUs, so that the session loop can wait on the master, on the engine's state changes and on
//! a stop at once without losing half a PDU.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::{debug, info, warn};

use super::{
    MasterAddress,
    agentx::{
        AgentxError, Body, HEADER_LEN, Header, Oid, Pdu, SearchRange, Value, VarBind, close_reason,
        error_status,
    },
    mib::{self, Input, Mib, Parts},
};
use crate::{
    config::Config,
    vrrp::status::{InstanceStatus, VrrpStatus},
};

/// How long to wait before connecting again.
pub const RETRY: Duration = Duration::from_secs(1);

/// How long the master waits for lbd's answers (`o.timeout`, seconds; 0 would be the
/// master's default of 5 s).
const TIMEOUT: u8 = 5;

/// keepalived's registration priority (net-snmp's default, 127).
const PRIORITY: u8 = 127;

/// What an agent serves: the objects, and the notifications of what changed.
pub trait Served: Clone + Send + Sync + 'static {
    /// What a session remembers of the notifications it sent; it outlives a connection, so
    /// that a reconnection sends the changes made meanwhile, and only those.
    type Memory: Default + Send;

    /// The subtrees to register with the master agent.
    fn subtrees(&self) -> Vec<Oid>;

    /// The session's description in its Open PDU.
    fn description(&self) -> String;

    /// The objects as of now; `uptime` is in hundredths of a second since the agent started.
    fn mib(&self, uptime: u32) -> Mib;

    /// Wakes the session when there may be notifications to send.
    fn changes(&self) -> watch::Receiver<u64>;

    /// Whether `other` (a reload's source) carries on from this one: if not, what the session
    /// remembers starts afresh.
    fn carries_on(&self, other: &Self) -> bool;

    /// The notifications not sent yet, each as its varbinds after `sysUpTime.0`.
    fn notifications(&self, memory: &mut Self::Memory, uptime: u32) -> Vec<Vec<VarBind>>;

    /// The notifications an orderly stop sends.
    fn shutdown(&self, memory: &mut Self::Memory, uptime: u32) -> Vec<Vec<VarBind>>;
}

/// What the VRRP child's agent answers from: the configuration and the engine's status,
/// replaced on a reload.
#[derive(Debug, Clone)]
pub struct Source {
    /// The running configuration.
    pub config: Arc<Config>,
    /// The VRRP engine's published instances.
    pub status: VrrpStatus,
    /// The MIBs served.
    pub parts: Parts,
}

/// The running agent.
#[derive(Debug)]
pub struct SnmpAgent<S: Served = Source> {
    source: watch::Sender<S>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl<S: Served> SnmpAgent<S> {
    /// Starts the agent on the current runtime, connecting to `address`.
    pub fn spawn(address: MasterAddress, source: S) -> Self {
        info!("SNMP: AgentX subagent for {:?}, master agent at {address}", source.subtrees());
        let (source_tx, source_rx) = watch::channel(source);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(address, source_rx, stopped));
        Self { source: source_tx, stop, task }
    }

    /// What it answers from now.
    pub fn current(&self) -> S {
        self.source.borrow().clone()
    }

    /// A reload: answers from `source` from now on.
    pub fn follow(&self, source: S) {
        self.source.send_replace(source);
    }

    /// Sends the shutdown notifications (with `enable_traps`), closes the session and waits
    /// for the task to end.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        // A master that does not read cannot hold the daemon's stop for long.
        if tokio::time::timeout(Duration::from_secs(2), self.task).await.is_err() {
            warn!("SNMP: the agent did not stop in time");
        }
    }
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("connecting: {0}")]
    Connect(#[source] std::io::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Pdu(#[from] AgentxError),
    #[error("the master agent refused the session (error {0})")]
    Refused(u16),
    #[error("the master agent closed the session (reason {0})")]
    Closed(u8),
    #[error("the master agent closed the connection")]
    Eof,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn connect(address: &MasterAddress) -> std::io::Result<Box<dyn Stream>> {
    Ok(match address {
        MasterAddress::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
        MasterAddress::Tcp(host_port) => Box::new(tokio::net::TcpStream::connect(host_port.as_str()).await?),
    })
}

async fn run<S: Served>(
    address: MasterAddress,
    mut source: watch::Receiver<S>,
    mut stopped: watch::Receiver<bool>,
) {
    // One for the agent's life: what it has seen outlives a connection, so that a
    // reconnection sends the changes made meanwhile, and only those.
    let mut session = Session::<S>::new(tokio::time::Instant::now());
    let mut failures = 0u32;
    loop {
        if *stopped.borrow() {
            return;
        }
        let result = match connect(&address).await {
            Ok(stream) => {
                failures = 0;
                session.run(stream, &mut source, &mut stopped).await
            }
            Err(e) => Err(SessionError::Connect(e)),
        };
        match result {
            Ok(()) => return,
            // Said once, then quietly retried: snmpd may start later.
            Err(e) if failures == 0 => {
                warn!("SNMP: master agent at {address}: {e}; retrying every {RETRY:?}")
            }
            Err(e) => debug!("SNMP: master agent at {address}: {e}"),
        }
        failures += 1;
        tokio::select! {
            () = tokio::time::sleep(RETRY) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// One connection's session.
struct Session<S: Served> {
    started: tokio::time::Instant,
    session_id: u32,
    packet_id: u32,
    /// The Register PDUs sent, by packet id, until answered.
    registering: HashMap<u32, Oid>,
    /// What the source's notifications remember.
    memory: S::Memory,
    /// The last MIB built, if it was large: when it was built, and the source's change count
    /// then ([`Session::mib`]).
    cache: Option<(tokio::time::Instant, u64, Arc<Mib>)>,
}

/// A MIB with this many objects or more (a checker child's with a few hundred real servers) is
/// reused for [`CACHE_FOR`] while no state changes: a walk asks for each object in turn, and
/// building it again for each request would make a walk quadratic.
const CACHE_FROM: usize = 10_000;
/// How long a large MIB is reused (its counters and weights lag by as much, at most).
const CACHE_FOR: Duration = Duration::from_secs(1);

/// Reads PDUs off the stream into a channel; ends on EOF or a malformed PDU.
async fn read_pdus(mut rd: impl AsyncRead + Unpin, tx: mpsc::Sender<Result<Pdu, SessionError>>) {
    loop {
        let mut header = [0u8; HEADER_LEN];
        let result = match rd.read_exact(&mut header).await {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(SessionError::Eof),
            Err(e) => Err(e.into()),
            Ok(_) => match Pdu::payload_len(&header) {
                Err(e) => Err(e.into()),
                Ok(len) => {
                    let mut bytes = header.to_vec();
                    bytes.resize(HEADER_LEN + len.unwrap_or(0), 0);
                    match rd.read_exact(&mut bytes[HEADER_LEN..]).await {
                        Err(e) => Err(e.into()),
                        Ok(_) => Pdu::decode(&bytes).map_err(Into::into),
                    }
                }
            },
        };
        let end = result.is_err();
        if tx.send(result).await.is_err() || end {
            return;
        }
    }
}

impl<S: Served> Session<S> {
    fn new(started: tokio::time::Instant) -> Self {
        Self {
            started,
            session_id: 0,
            packet_id: 0,
            registering: HashMap::new(),
            memory: S::Memory::default(),
            cache: None,
        }
    }

    /// The objects to answer from: `source`'s, as of now, or a large MIB built less than
    /// [`CACHE_FOR`] ago with no state change since.
    fn mib(&mut self, source: &S) -> Arc<Mib> {
        let seq = *source.changes().borrow();
        if let Some((at, built_at, mib)) = &self.cache
            && *built_at == seq
            && at.elapsed() < CACHE_FOR
        {
            return Arc::clone(mib);
        }
        let mib = Arc::new(source.mib(self.uptime()));
        self.cache = (mib.len() >= CACHE_FROM).then(|| (tokio::time::Instant::now(), seq, Arc::clone(&mib)));
        mib
    }

    fn uptime(&self) -> u32 {
        u32::try_from(self.started.elapsed().as_millis() / 10).unwrap_or(u32::MAX)
    }

    fn header(&mut self) -> Header {
        self.packet_id = self.packet_id.wrapping_add(1);
        Header { session_id: self.session_id, transaction_id: 0, packet_id: self.packet_id }
    }

    async fn run(
        &mut self,
        stream: Box<dyn Stream>,
        source: &mut watch::Receiver<S>,
        stopped: &mut watch::Receiver<bool>,
    ) -> Result<(), SessionError> {
        self.session_id = 0;
        self.registering.clear();
        let (rd, mut wr) = tokio::io::split(stream);
        let (tx, mut rx) = mpsc::channel(16);
        let reader = tokio::spawn(read_pdus(rd, tx));
        let result = self.serve(&mut wr, &mut rx, source, stopped).await;
        reader.abort();
        result
    }

    async fn serve(
        &mut self,
        wr: &mut (impl AsyncWrite + Unpin),
        rx: &mut mpsc::Receiver<Result<Pdu, SessionError>>,
        source: &mut watch::Receiver<S>,
        stopped: &mut watch::Receiver<bool>,
    ) -> Result<(), SessionError> {
        let mut current = source.borrow_and_update().clone();
        // Open (RFC 2741 §7.1.1): the master's Response carries the session id.
        let open = Pdu {
            header: self.header(),
            body: Body::Open {
                timeout: TIMEOUT,
                id: Oid::new(mib::KEEPALIVED),
                description: current.description().into_bytes(),
            },
        };
        wr.write_all(&open.encode()).await?;
        loop {
            let pdu = rx.recv().await.ok_or(SessionError::Eof)??;
            if let Body::Response { error, .. } = pdu.body
                && pdu.header.packet_id == open.header.packet_id
            {
                if error != error_status::NO_ERROR {
                    return Err(SessionError::Refused(error));
                }
                self.session_id = pdu.header.session_id;
                break;
            }
        }
        for subtree in current.subtrees() {
            let header = self.header();
            self.registering.insert(header.packet_id, subtree.clone());
            let register =
                Body::Register { context: None, timeout: 0, priority: PRIORITY, subtree, instance: false };
            wr.write_all(&Pdu { header, body: register }.encode()).await?;
        }
        info!("SNMP: AgentX session {} open", self.session_id);
        let mut changes = current.changes();
        changes.mark_changed();
        loop {
            tokio::select! {
                pdu = rx.recv() => {
                    let pdu = pdu.ok_or(SessionError::Eof)??;
                    if let Body::Close { reason } = pdu.body {
                        return Err(SessionError::Closed(reason));
                    }
                    if let Some(answer) = self.answer(pdu, &current) {
                        wr.write_all(&answer.encode()).await?;
                    }
                }
                changed = changes.changed() => {
                    if changed.is_err() {
                        // The engine went (a reload replaces it): wait for the next source.
                        changes = watch::channel(0).1;
                        continue;
                    }
                    let uptime = self.uptime();
                    for trap in current.notifications(&mut self.memory, uptime) {
                        wr.write_all(&self.notify(trap).encode()).await?;
                    }
                }
                _ = source.changed() => {
                    let next = source.borrow_and_update().clone();
                    // A reload that kept the engine keeps its changes; a new engine counts afresh.
                    if !current.carries_on(&next) {
                        self.memory = S::Memory::default();
                    }
                    current = next;
                    self.cache = None;
                    changes = current.changes();
                    changes.mark_changed();
                }
                _ = stopped.changed() => {
                    let uptime = self.uptime();
                    for trap in current.shutdown(&mut self.memory, uptime) {
                        wr.write_all(&self.notify(trap).encode()).await?;
                    }
                    let close = Pdu { header: self.header(), body: Body::Close { reason: close_reason::SHUTDOWN } };
                    wr.write_all(&close.encode()).await?;
                    wr.flush().await?;
                    return Ok(());
                }
            }
        }
    }

    /// The answer to a PDU from the master, if it wants one.
    fn answer(&mut self, pdu: Pdu, source: &S) -> Option<Pdu> {
        let (error, index, varbinds) = match pdu.body {
            Body::Response { error, .. } => {
                if let Some(subtree) = self.registering.remove(&pdu.header.packet_id) {
                    if error == error_status::NO_ERROR {
                        debug!("SNMP: registered {subtree}");
                    } else {
                        // 263: duplicateRegistration (another agent has it).
                        warn!("SNMP: registering {subtree}: the master agent answered error {error}");
                    }
                } else if error != error_status::NO_ERROR {
                    warn!("SNMP: the master agent answered error {error} to packet {}", pdu.header.packet_id);
                }
                return None;
            }
            Body::Get { ranges, .. } => {
                let mib = self.mib(source);
                (
                    0,
                    0,
                    ranges.into_iter().map(|r| VarBind { value: mib.get(&r.start), name: r.start }).collect(),
                )
            }
            Body::GetNext { ranges, .. } => {
                let mib = self.mib(source);
                (0, 0, ranges.iter().map(|r| mib.next(r)).collect())
            }
            Body::GetBulk { non_repeaters, max_repetitions, ranges, .. } => {
                let mib = self.mib(source);
                (0, 0, bulk(&mib, usize::from(non_repeaters), usize::from(max_repetitions), ranges))
            }
            // Every object is read-only (RFC 2741 §7.2.4.1: the error goes on the first varbind).
            Body::TestSet { .. } => (error_status::NOT_WRITABLE, 1, Vec::new()),
            Body::Other { pdu_type: super::agentx::PduType::CommitSet | super::agentx::PduType::UndoSet } => {
                (0, 0, Vec::new())
            }
            Body::Other { pdu_type: super::agentx::PduType::CleanupSet } => return None,
            Body::Ping { .. } => (0, 0, Vec::new()),
            _ => (error_status::PROCESSING_ERROR, 0, Vec::new()),
        };
        Some(Pdu {
            header: pdu.header,
            body: Body::Response { sys_up_time: self.uptime(), error, index, varbinds },
        })
    }

    fn notify(&mut self, trap: Vec<VarBind>) -> Pdu {
        let mut varbinds =
            vec![VarBind { name: Oid::new(mib::SYS_UP_TIME), value: Value::TimeTicks(self.uptime()) }];
        varbinds.extend(trap);
        Pdu { header: self.header(), body: Body::Notify { context: None, varbinds } }
    }
}

/// What the VRRP child's agent remembers of its notifications.
#[derive(Debug, Default)]
pub struct VrrpMemory {
    /// The last engine state change notified ([`crate::vrrp::status::StateChange::seq`]).
    last_seq: u64,
    /// Instance name → the state last notified.
    notified: HashMap<String, &'static str>,
    /// Sync group name → the state last notified.
    groups_notified: HashMap<String, &'static str>,
}

impl Source {
    /// What the tables and notifications are built from.
    fn input<'a>(&'a self, instances: &'a [InstanceStatus], router_id: &'a str, uptime: u32) -> Input<'a> {
        Input { config: &self.config, instances, router_id, version: VERSION, uptime }
    }
}

impl Served for Source {
    type Memory = VrrpMemory;

    fn subtrees(&self) -> Vec<Oid> {
        self.parts.subtrees()
    }

    fn description(&self) -> String {
        format!("lbd {} (keepalived-compatible VRRP)", env!("CARGO_PKG_VERSION"))
    }

    fn mib(&self, uptime: u32) -> Mib {
        let instances = self.status.snapshot();
        let router_id = router_id(&self.config);
        Mib::build(self.parts, &self.input(&instances, &router_id, uptime))
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.status.state_changes()
    }

    fn carries_on(&self, other: &Self) -> bool {
        self.status.same(&other.status)
    }

    /// The notifications of the engine's state changes not notified yet, each with the state
    /// it entered then (even if it has left it since), in order.
    fn notifications(&self, memory: &mut VrrpMemory, uptime: u32) -> Vec<Vec<VarBind>> {
        let changes = self.status.changes_since(memory.last_seq);
        let Some(last) = changes.last() else { return Vec::new() };
        memory.last_seq = last.seq;
        let mut instances = self.status.snapshot();
        let router_id = router_id(&self.config);
        let mut traps = Vec::new();
        for change in changes {
            let Some(instance) = instances.get_mut(change.index) else { continue };
            instance.state = change.state;
            debug!("SNMP: ({}) state change {} to {}", instance.name, change.seq, change.state);
            memory.notified.insert(instance.name.clone(), change.state);
            let input = self.input(&instances, &router_id, uptime);
            if self.parts.traps {
                traps.extend(mib::state_change_traps(self.parts, &input, change.index));
            }
            traps.extend(mib::group_state_changes(
                self.parts,
                &input,
                change.index,
                &mut memory.groups_notified,
            ));
        }
        traps
    }

    /// keepalived's shutdown notifications: each instance's state change to shutdown.
    fn shutdown(&self, memory: &mut VrrpMemory, uptime: u32) -> Vec<Vec<VarBind>> {
        if !self.parts.traps || !self.parts.keepalived {
            return Vec::new();
        }
        let mut instances = self.status.snapshot();
        // Those whose stop the engine published have said so already.
        instances.retain(|s| memory.notified.get(&s.name).is_none_or(|state| *state != "STOP"));
        for s in &mut instances {
            s.state = "STOP";
        }
        let router_id = router_id(&self.config);
        let input = self.input(&instances, &router_id, uptime);
        let parts = Parts { rfcv2: false, rfcv3: false, ..self.parts };
        (0..instances.len()).flat_map(|i| mib::state_change_traps(parts, &input, i)).collect()
    }
}

/// `version.0`: keepalived's version line, naming lbd.
pub const VERSION: &str = concat!("Keepalived v2.2.7 (lbd ", env!("CARGO_PKG_VERSION"), ")");

/// `routerId.0`: `router_id`, else the host name (as keepalived).
pub fn router_id(config: &Config) -> String {
    config.global_defs.router_id.clone().unwrap_or_else(|| {
        nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default()
    })
}

/// GetBulk (RFC 2741 §7.2.3.3): the first `non_repeaters` ranges once, then the others
/// `max_repetitions` times, interleaved, each continuing from its last answer.
pub(super) fn bulk(
    mib: &Mib,
    non_repeaters: usize,
    max_repetitions: usize,
    ranges: Vec<SearchRange>,
) -> Vec<VarBind> {
    let split = non_repeaters.min(ranges.len());
    let mut out: Vec<VarBind> = ranges[..split].iter().map(|r| mib.next(r)).collect();
    let mut repeaters: Vec<SearchRange> = ranges[split..].to_vec();
    for _ in 0..max_repetitions {
        if repeaters.is_empty() {
            break;
        }
        let mut all_ended = true;
        for range in &mut repeaters {
            let vb = mib.next(range);
            if vb.value != Value::EndOfMibView {
                all_ended = false;
                range.start = vb.name.clone();
                range.include = false;
            }
            out.push(vb);
        }
        if all_ended {
            break;
        }
    }
    out
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn source() -> Source {
        let text = "vrrp_instance VI_1 {\n interface d0\n virtual_router_id 51\n priority 150\n \
                    virtual_ipaddress {\n 10.9.0.100/24\n }\n}\n";
        let loaded = crate::config::parse_str("t.conf", text, &crate::config::LoadOptions::default());
        let status = VrrpStatus::default();
        status.set(vec![InstanceStatus {
            name: "VI_1".into(),
            interface: "d0".into(),
            vrid: 51,
            version: 2,
            state: "BACKUP",
            base_priority: 150,
            effective_priority: 150,
            ifindex: 3,
            ..InstanceStatus::default()
        }]);
        Source { config: Arc::new(loaded.config), status, parts: parts() }
    }

    fn parts() -> Parts {
        Parts { keepalived: true, rfcv2: true, rfcv3: true, traps: true }
    }

    /// A source of `objects` objects that counts its builds.
    #[derive(Debug, Clone)]
    struct Counted {
        objects: u32,
        builds: Arc<std::sync::atomic::AtomicUsize>,
        changes: Arc<watch::Sender<u64>>,
    }

    impl Served for Counted {
        type Memory = ();

        fn subtrees(&self) -> Vec<Oid> {
            Vec::new()
        }

        fn description(&self) -> String {
            String::new()
        }

        fn mib(&self, _uptime: u32) -> Mib {
            self.builds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut mib = Mib::default();
            for i in 0..self.objects {
                mib.put(&[1], &[i], Value::Integer(0));
            }
            mib
        }

        fn changes(&self) -> watch::Receiver<u64> {
            self.changes.subscribe()
        }

        fn carries_on(&self, _other: &Self) -> bool {
            true
        }

        fn notifications(&self, _memory: &mut (), _uptime: u32) -> Vec<Vec<VarBind>> {
            Vec::new()
        }

        fn shutdown(&self, _memory: &mut (), _uptime: u32) -> Vec<Vec<VarBind>> {
            Vec::new()
        }
    }

    #[test]
    fn a_large_mib_is_built_once_a_second_or_on_a_change_a_small_one_for_every_request() {
        let builds = |c: &Counted| c.builds.load(std::sync::atomic::Ordering::Relaxed);
        let large = Counted {
            objects: u32::try_from(CACHE_FROM).unwrap(),
            builds: Arc::default(),
            changes: Arc::new(watch::Sender::new(0)),
        };
        let mut session = Session::<Counted>::new(tokio::time::Instant::now());
        for _ in 0..5 {
            assert_eq!(session.mib(&large).len(), CACHE_FROM);
        }
        assert_eq!(builds(&large), 1, "a walk's requests share one build");
        large.changes.send_replace(1);
        session.mib(&large);
        assert_eq!(builds(&large), 2, "a state change is seen at once");
        // A second later.
        if let Some((at, ..)) = &mut session.cache {
            *at = at.checked_sub(CACHE_FOR).unwrap();
        }
        session.mib(&large);
        assert_eq!(builds(&large), 3, "counters are at most CACHE_FOR old");

        let small = Counted { objects: 10, builds: Arc::default(), changes: Arc::new(watch::Sender::new(0)) };
        let mut session = Session::<Counted>::new(tokio::time::Instant::now());
        for _ in 0..5 {
            session.mib(&small);
        }
        assert_eq!(builds(&small), 5);
    }

    /// A whole session against a fake master over a socket pair: Open, Registers, a GetNext,
    /// a TestSet, a state change's notifications, and the Close on stop.
    #[tokio::test]
    async fn session_against_a_master() {
        let (ours, mut master) = tokio::net::UnixStream::pair().unwrap();
        let source = source();
        let status = source.status.clone();
        let (_source_tx, mut source_rx) = watch::channel(source);
        let (stop, mut stopped) = watch::channel(false);
        let session = tokio::spawn(async move {
            let mut session = Session::<Source>::new(tokio::time::Instant::now());
            session.run(Box::new(ours), &mut source_rx, &mut stopped).await
        });
        async fn recv(s: &mut tokio::net::UnixStream) -> Pdu {
            let mut h = [0u8; HEADER_LEN];
            s.read_exact(&mut h).await.unwrap();
            let mut b = h.to_vec();
            b.resize(HEADER_LEN + Pdu::payload_len(&h).unwrap().unwrap(), 0);
            s.read_exact(&mut b[HEADER_LEN..]).await.unwrap();
            Pdu::decode(&b).unwrap()
        }
        let response = |header: Header, session_id: u32| Pdu {
            header: Header { session_id, ..header },
            body: Body::Response { sys_up_time: 0, error: 0, index: 0, varbinds: Vec::new() },
        };
        let open = recv(&mut master).await;
        assert!(matches!(open.body, Body::Open { .. }));
        master.write_all(&response(open.header, 42).encode()).await.unwrap();
        let mut registered = Vec::new();
        for _ in 0..4 {
            let pdu = recv(&mut master).await;
            assert_eq!(pdu.header.session_id, 42);
            let Body::Register { subtree, .. } = &pdu.body else { panic!("not a Register: {pdu:?}") };
            registered.push(subtree.to_string());
            master.write_all(&response(pdu.header, 42).encode()).await.unwrap();
        }
        assert_eq!(
            registered,
            [".1.3.6.1.4.1.9586.100.5.1", ".1.3.6.1.4.1.9586.100.5.2", ".1.3.6.1.2.1.68", ".1.3.6.1.2.1.207"]
        );
        let get_next = Pdu {
            header: Header { session_id: 42, transaction_id: 7, packet_id: 100 },
            body: Body::GetNext {
                context: None,
                ranges: vec![SearchRange {
                    start: Oid::new(mib::KEEPALIVED).child(&[2, 3, 1, 2]),
                    include: false,
                    end: Oid::default(),
                }],
            },
        };
        master.write_all(&get_next.encode()).await.unwrap();
        let answer = recv(&mut master).await;
        assert_eq!(answer.header.packet_id, 100);
        assert_eq!(answer.header.transaction_id, 7);
        let Body::Response { varbinds, .. } = &answer.body else { panic!("not a Response: {answer:?}") };
        assert_eq!(varbinds[0].name.to_string(), ".1.3.6.1.4.1.9586.100.5.2.3.1.2.1");
        assert_eq!(varbinds[0].value, Value::string("VI_1"));
        let test_set = Pdu {
            header: Header { session_id: 42, transaction_id: 8, packet_id: 101 },
            body: Body::TestSet { context: None, varbinds: varbinds.clone() },
        };
        master.write_all(&test_set.encode()).await.unwrap();
        let refused = recv(&mut master).await;
        assert!(matches!(refused.body, Body::Response { error: error_status::NOT_WRITABLE, index: 1, .. }));
        // The engine enters BACKUP, then at once MASTER: keepalived's notification of each, in
        // order, then the RFCs' of the takeover.
        status.state_changed(0, "BACKUP");
        status.update(0, |s| {
            s.state = "MASTER";
            s.transitions += 1;
            s.stats.become_master += 1;
            s.source_address = Some("10.9.0.1".parse().unwrap());
        });
        status.state_changed(0, "MASTER");
        let mut traps = Vec::new();
        for _ in 0..4 {
            let pdu = recv(&mut master).await;
            let Body::Notify { varbinds, .. } = pdu.body else { panic!("not a Notify: {pdu:?}") };
            assert_eq!(varbinds[0].name, Oid::new(mib::SYS_UP_TIME));
            traps.push(format!("{:?} {:?}", varbinds[1].value, varbinds.get(3).map(|v| &v.value)));
        }
        assert!(
            traps[0].contains(".1.3.6.1.4.1.9586.100.5.2.10.0.2") && traps[0].ends_with("Some(Integer(1))"),
            "{traps:?}"
        );
        assert!(
            traps[1].contains(".1.3.6.1.4.1.9586.100.5.2.10.0.2") && traps[1].ends_with("Some(Integer(2))"),
            "{traps:?}"
        );
        assert!(traps[2].contains(".1.3.6.1.2.1.68.0.1"), "{traps:?}");
        assert!(traps[3].contains(".1.3.6.1.2.1.207.0.1"), "{traps:?}");
        // The engine stops (its STOP published), then the daemon stops the agent: one
        // notification of shutdown(5), then the Close.
        status.update(0, |s| s.state = "STOP");
        status.state_changed(0, "STOP");
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.send(true).unwrap();
        let shutdown = recv(&mut master).await;
        let Body::Notify { varbinds, .. } = shutdown.body else { panic!("not a Notify: {shutdown:?}") };
        assert_eq!(varbinds[3].value, Value::Integer(5));
        let close = recv(&mut master).await;
        assert_eq!(close.body, Body::Close { reason: close_reason::SHUTDOWN });
        session.await.unwrap().unwrap();
    }

    #[test]
    fn bulk_interleaves_and_stops_at_the_end() {
        let source = source();
        let instances = source.status.snapshot();
        let input =
            Input { config: &source.config, instances: &instances, router_id: "r", version: "v", uptime: 0 };
        let mib = Mib::build(Parts { rfcv2: true, ..Parts::default() }, &input);
        let range = |s: &[u32]| SearchRange { start: Oid::new(s), include: false, end: Oid::default() };
        let out = bulk(&mib, 1, 3, vec![range(&[1, 3, 6]), range(mib::VRRP_MIB), range(&[1, 3, 7])]);
        // 1 non-repeater, then 3 rounds of 2; the last range is past the end from the start.
        assert_eq!(out.len(), 1 + 3 * 2);
        assert_eq!(out[0].name, Oid::new(mib::VRRP_MIB).child(&[1, 1, 0]));
        assert_eq!(out[1].name, Oid::new(mib::VRRP_MIB).child(&[1, 1, 0]));
        assert_eq!(out[2].value, Value::EndOfMibView);
        assert_eq!(out[3].name, Oid::new(mib::VRRP_MIB).child(&[1, 2, 0]));
    }
}
