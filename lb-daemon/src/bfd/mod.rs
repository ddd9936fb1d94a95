//! BFD (RFC 5880 asynchronous mode over RFC 5881 single-hop UDP), as keepalived 2.2.7's BFD
//! process runs its `bfd_instance`s, and the states it tells the VRRP and checker processes.
//!
//! - [`packet`]: the control packet codec;
//! - [`session`]: the sans-IO session state machine (Down / Init / Up / AdminDown, detection
//!   time, Poll / Final, `idle_tx` while not Up, `passive`);
//! - [`socket`]: the UDP sockets (port 3784, TTL 255 and its check);
//! - [`run`]: the BFD child's engine: one session per `bfd_instance`, reporting every session's
//!   state at start and each time it enters or leaves Up.
//!
//! Each session's variables can be asked for ([`BfdTask::status`]) as [`SessionStatus`]: the
//! BFD child writes them to `keepalived_bfd.data` and reports them for `/status` and `/metrics`.
//!
//! The states travel as [`BfdStates`]: the BFD child reports changes to the parent over its
//! control channel; the parent keeps the latest state of every instance and passes it on to
//! the VRRP and checker children (all of it to a child that starts, so that a restarted child
//! learns the current states); there they feed `track_bfd` and `BFD_CHECK`.

pub mod packet;
pub mod session;
pub mod socket;

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant, SystemTime},
};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::config::model::{BfdInstance, Config};
use packet::{ControlPacket, State};
use session::{Session, SessionConfig};
use socket::BfdSocket;

/// Every `bfd_instance`'s state as last reported: name → up. An instance not in the map has not
/// been reported yet.
pub type BfdStates = HashMap<String, bool>;

/// A state report of the BFD engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdEvent {
    /// The bfd_instance.
    pub name: String,
    /// Up or not.
    pub up: bool,
}

/// One session as the BFD child shows it: its configuration and its variables now. Intervals
/// in microseconds, as keepalived's dump gives them; times in seconds since the Unix epoch.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionStatus {
    /// The bfd_instance.
    pub name: String,
    /// `neighbor_ip`.
    pub neighbor: String,
    /// `source_ip`.
    pub source: Option<String>,
    /// `min_rx`: our Required Min RX Interval.
    pub min_rx_us: u64,
    /// `min_tx`: our Desired Min TX Interval while Up.
    pub min_tx_us: u64,
    /// `idle_tx`: our Desired Min TX Interval while not Up.
    pub idle_tx_us: u64,
    /// `multiplier`.
    pub multiplier: u8,
    /// The TTL (IPv4) or hop limit (IPv6) sent with.
    pub ttl: u8,
    /// `max_hops`.
    pub max_hops: u8,
    /// `passive`.
    pub passive: bool,
    /// Events go to the VRRP child.
    pub vrrp: bool,
    /// Events go to the checker child.
    pub checker: bool,
    /// Our state (`Up`, `Down`, `Init`, `AdminDown`).
    pub state: String,
    /// The remote's state as last heard.
    pub remote_state: String,
    /// Our discriminator.
    pub local_discriminator: u32,
    /// The remote's (0 while it is not heard).
    pub remote_discriminator: u32,
    /// Our diagnostic.
    pub local_diag: String,
    /// The remote's last diagnostic.
    pub remote_diag: String,
    /// The remote's Desired Min TX Interval.
    pub remote_min_tx_us: u64,
    /// The remote's Required Min RX Interval.
    pub remote_min_rx_us: u64,
    /// The remote's Detect Mult.
    pub remote_multiplier: u8,
    /// A Poll Sequence is under way.
    pub poll: bool,
    /// A Final is owed to the remote.
    pub fin: bool,
    /// The interval of our packets.
    pub tx_interval_us: u64,
    /// The interval of the remote's packets.
    pub remote_tx_interval_us: u64,
    /// Our detection time: silence this long takes the session down.
    pub detection_time_us: u64,
    /// The remote's detection time of us.
    pub remote_detection_time_us: u64,
    /// When a packet of the remote last came.
    pub last_seen: Option<f64>,
    /// When the state last changed (the start if never).
    pub last_state_change: f64,
}

impl SessionStatus {
    /// Whether the session is Up.
    pub fn up(&self) -> bool {
        self.state == State::Up.name()
    }
}

/// Microseconds of `d`.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Seconds since the Unix epoch of `t`.
fn epoch_seconds(t: SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

/// A request for every session's [`SessionStatus`].
type StatusQuery = oneshot::Sender<Vec<SessionStatus>>;

/// Why BFD cannot run.
#[derive(Debug, thiserror::Error)]
pub enum BfdError {
    /// The receiving socket could not be opened.
    #[error("BFD: cannot listen on UDP port {port}")]
    Listen {
        /// The port.
        port: u16,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// One running `bfd_instance`.
#[derive(Debug)]
struct Instance {
    name: String,
    /// Its configuration.
    config: BfdInstance,
    /// When a packet of the remote last came.
    last_seen: Option<SystemTime>,
    /// When the state last changed.
    last_change: SystemTime,
    neighbor: IpAddr,
    /// The TTL a packet must arrive with, at least (None: no check).
    min_ttl: Option<u8>,
    session: Session,
    socket: Option<BfdSocket>,
    source: Option<IpAddr>,
    ttl: u8,
    /// The state last reported (Up or not).
    reported_up: bool,
}

/// The TTL a received packet must have at least: keepalived's `max_hops` hops below the TTL
/// (IPv4) or hop limit (IPv6) the instance sends with; 255 turns the check off.
fn min_ttl(b: &BfdInstance, v6: bool) -> Option<u8> {
    let sent = if v6 { b.hoplimit } else { b.ttl };
    (b.max_hops != 255).then(|| sent.saturating_sub(b.max_hops))
}

/// A seed for discriminators and jitter.
fn seed() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (t.as_nanos() as u64) ^ (u64::from(std::process::id()) << 32)
}

/// The sessions of `config`'s instances with a neighbour (the parser reported the others).
fn instances(config: &Config, now: Instant) -> Vec<Instance> {
    let base = seed();
    config
        .bfd_instances
        .iter()
        .enumerate()
        .filter_map(|(i, b)| {
            let neighbor = b.neighbor_ip?;
            let session_config = SessionConfig {
                min_rx: b.min_rx,
                min_tx: b.min_tx,
                idle_tx: b.idle_tx,
                multiplier: b.multiplier,
                passive: b.passive,
            };
            let discr = (base as u32).wrapping_add(i as u32 * 0x9e37).max(1);
            Some(Instance {
                name: b.name.clone(),
                config: b.clone(),
                last_seen: None,
                last_change: SystemTime::now(),
                neighbor,
                min_ttl: min_ttl(b, neighbor.is_ipv6()),
                session: Session::new(session_config, discr, base.rotate_left(i as u32 + 1), now),
                socket: None,
                source: b.source_ip,
                ttl: if neighbor.is_ipv6() { b.hoplimit } else { b.ttl },
                reported_up: false,
            })
        })
        .collect()
}

/// Runs the sessions of `config`'s `bfd_instance`s until `stop` changes, sending every
/// instance's state at start (Down) and at each change into or out of Up to `events`, and
/// answering `queries` with every session's status. When `stop` turns true, every session
/// first tells its peer it goes AdminDown.
pub async fn run(
    config: &Config,
    events: mpsc::UnboundedSender<BfdEvent>,
    mut queries: mpsc::UnboundedReceiver<StatusQuery>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), BfdError> {
    let mut instances = instances(config, Instant::now());
    let listen = |v6: bool| {
        instances
            .iter()
            .any(|i| i.neighbor.is_ipv6() == v6)
            .then(|| BfdSocket::listen(v6))
            .transpose()
            .map_err(|source| BfdError::Listen { port: socket::CONTROL_PORT, source })
    };
    let (v4, v6) = (listen(false)?, listen(true)?);
    for instance in &instances {
        let _ = events.send(BfdEvent { name: instance.name.clone(), up: false });
    }
    let (mut buf4, mut buf6) = ([0u8; 512], [0u8; 512]);
    loop {
        let now = Instant::now();
        for instance in &mut instances {
            let (change, packet) = instance.session.poll(now);
            if let Some(change) = change {
                instance.changed(change, &events);
            }
            if let Some(packet) = packet {
                instance.send(&packet);
            }
        }
        let deadline = instances.iter().filter_map(|i| i.session.next_deadline()).min();
        tokio::select! {
            biased;
            _ = stop.changed() => {
                if *stop.borrow() {
                    for instance in &mut instances {
                        instance.admin_down(&events);
                    }
                }
                return Ok(());
            }
            Some(reply) = queries.recv() => {
                let _ = reply.send(instances.iter().map(Instance::status).collect());
            }
            received = recv(v4.as_ref(), &mut buf4) => dispatch(&mut instances, received, &buf4, &events),
            received = recv(v6.as_ref(), &mut buf6) => dispatch(&mut instances, received, &buf6, &events),
            () = sleep_until(deadline) => {}
        }
    }
}

impl Instance {
    fn status(&self) -> SessionStatus {
        let info = self.session.info();
        let b = &self.config;
        SessionStatus {
            name: self.name.clone(),
            neighbor: self.neighbor.to_string(),
            source: self.source.map(|s| s.to_string()),
            min_rx_us: micros(b.min_rx),
            min_tx_us: micros(b.min_tx),
            idle_tx_us: micros(b.idle_tx),
            multiplier: b.multiplier,
            ttl: self.ttl,
            max_hops: b.max_hops,
            passive: b.passive,
            vrrp: b.vrrp || !b.checker,
            checker: b.checker || !b.vrrp,
            state: info.state.name().into(),
            remote_state: info.remote_state.name().into(),
            local_discriminator: info.local_discr,
            remote_discriminator: info.remote_discr,
            local_diag: info.diag.description().into(),
            remote_diag: info.remote_diag.description().into(),
            remote_min_tx_us: micros(info.remote_min_tx),
            remote_min_rx_us: micros(info.remote_min_rx),
            remote_multiplier: info.remote_mult,
            poll: info.poll,
            fin: info.fin,
            tx_interval_us: micros(info.tx_interval),
            remote_tx_interval_us: micros(info.remote_tx_interval),
            detection_time_us: micros(info.detection_time),
            remote_detection_time_us: micros(info.remote_detection_time),
            last_seen: self.last_seen.map(epoch_seconds),
            last_state_change: epoch_seconds(self.last_change),
        }
    }

    fn changed(&mut self, change: session::Change, events: &mpsc::UnboundedSender<BfdEvent>) {
        self.last_change = SystemTime::now();
        let diag = format!("{:?}", change.diag);
        let line =
            format!("BFD_Instance({}) Entering {} state (local diag - {diag})", self.name, change.to.name());
        if matches!(change.to, State::Down | State::AdminDown) {
            warn!("{line}")
        } else {
            info!("{line}")
        }
        let up = change.to == State::Up;
        if up != self.reported_up {
            self.reported_up = up;
            let _ = events.send(BfdEvent { name: self.name.clone(), up });
        }
    }

    /// Takes the session AdminDown and tells the peer (a few copies: one lost datagram would
    /// leave the peer to a detection time).
    fn admin_down(&mut self, events: &mpsc::UnboundedSender<BfdEvent>) {
        let (change, packet) = self.session.admin_down();
        if let Some(change) = change {
            self.changed(change, events);
        }
        for _ in 0..ADMIN_DOWN_COPIES {
            self.send(&packet);
        }
    }

    fn send(&mut self, packet: &ControlPacket) {
        if self.socket.is_none() {
            let port = 49152 + (seed() % 16384) as u16;
            match BfdSocket::sender(self.neighbor, self.source, self.ttl, port) {
                Ok(socket) => self.socket = Some(socket),
                Err(e) => {
                    warn!("BFD_Instance({}): cannot open a socket to {}: {e}", self.name, self.neighbor);
                    return;
                }
            }
        }
        if let Some(socket) = &self.socket
            && let Err(e) = socket.send(&packet.encode())
        {
            debug!("BFD_Instance({}): sending to {}: {e}", self.name, self.neighbor);
        }
    }
}

async fn recv(socket: Option<&BfdSocket>, buf: &mut [u8]) -> std::io::Result<socket::Datagram> {
    match socket {
        Some(socket) => socket.recv(buf).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Hands a received datagram to the session of its neighbour; what no session takes is logged
/// at debug level and dropped.
fn dispatch(
    instances: &mut [Instance],
    received: std::io::Result<socket::Datagram>,
    buf: &[u8],
    events: &mpsc::UnboundedSender<BfdEvent>,
) {
    let datagram = match received {
        Ok(d) => d,
        Err(e) => {
            warn!("BFD: receiving: {e}");
            return;
        }
    };
    let now = Instant::now();
    let packet = match ControlPacket::decode(&buf[..datagram.len.min(buf.len())]) {
        Ok(p) => p,
        Err(e) => {
            debug!("BFD: packet from {} dropped: {e}", datagram.source);
            return;
        }
    };
    let Some(instance) = instances.iter_mut().find(|i| {
        i.neighbor == datagram.source
            && (packet.your_discr == 0 || packet.your_discr == i.session.local_discr())
    }) else {
        debug!("BFD: packet from {} for no bfd_instance dropped", datagram.source);
        return;
    };
    if instance.min_ttl.is_some_and(|min| datagram.ttl < min) {
        debug!("BFD_Instance({}): packet with TTL {} dropped", instance.name, datagram.ttl);
        return;
    }
    match instance.session.receive(&packet, now) {
        Ok(change) => {
            instance.last_seen = Some(SystemTime::now());
            if let Some(change) = change {
                instance.changed(change, events);
            }
        }
        Err(e) => debug!("BFD_Instance({}): packet dropped: {e}", instance.name),
    }
    // An answer owed at once (Final, a state change) goes now.
    let (change, packet) = instance.session.poll(now);
    if let Some(change) = change {
        instance.changed(change, events);
    }
    if let Some(packet) = packet {
        instance.send(&packet);
    }
}

/// AdminDown packets sent to each peer at an orderly stop.
const ADMIN_DOWN_COPIES: usize = 3;

/// The BFD engine running as a task of the BFD child.
#[derive(Debug)]
pub struct BfdTask {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    events: mpsc::UnboundedReceiver<BfdEvent>,
    queries: mpsc::UnboundedSender<StatusQuery>,
    instances: Vec<BfdInstance>,
}

impl BfdTask {
    /// Runs the sessions of `config`'s `bfd_instance`s on the current tokio runtime.
    pub fn spawn(config: &Config) -> Self {
        let (stop, stopped) = watch::channel(false);
        let (events_tx, events) = mpsc::unbounded_channel();
        let (queries, queries_rx) = mpsc::unbounded_channel();
        let engine_config = config.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = run(&engine_config, events_tx, queries_rx, stopped).await {
                tracing::error!("{}", crate::dataplane::xdp::error_chain(&e));
            }
        });
        Self { stop, task, events, queries, instances: config.bfd_instances.clone() }
    }

    /// Every session's status now; none once the engine has ended.
    pub async fn status(&self) -> Vec<SessionStatus> {
        let (reply, answer) = oneshot::channel();
        if self.queries.send(reply).is_err() {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }

    /// The instances it runs.
    pub fn instances(&self) -> &[BfdInstance] {
        &self.instances
    }

    /// The next state report; never, once the engine has ended. Cancel-safe.
    pub async fn next_event(&mut self) -> BfdEvent {
        match self.events.recv().await {
            Some(event) => event,
            None => std::future::pending().await,
        }
    }

    /// Stops the sessions: with `admin_down` (an orderly stop of lbd), each peer is told the
    /// session goes AdminDown and takes it down at once; without (a reload that restarts the
    /// sessions), the peers hear nothing until the new sessions start.
    pub async fn stop(self, admin_down: bool) {
        let _ = self.stop.send(admin_down);
        let _ = self.task.await;
    }
}
