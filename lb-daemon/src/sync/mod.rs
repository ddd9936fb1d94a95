//! The connection sync (`lvs_sync_daemon`): while the VRRP instance it follows is MASTER, this
//! load balancer multicasts its tracked flows; otherwise it listens, and writes what it hears
//! into its own connection tables, so that after a VRRP takeover established connections keep
//! their real servers.
//!
//! The pieces:
//! - [`wire`]: the Linux IPVS sync protocol version 1, so lbd and IPVS directors on the same
//!   sync id understand each other;
//! - this file: the settings from `lvs_sync_daemon` ([`SyncSettings`]), the conversion between
//!   wire records and [`SyncedFlow`]s ([`to_conn`], [`from_conn`]), the receive-side counters
//!   ([`SyncCounters`]), and the multicast socket ([`SyncSocket`]).
//!
//! The master sends by walking the connection tables every [`REFRESH`] (IPVS's
//! `sync_refresh_period` idea with a short period: every live flow is sent again each time, so
//! a backup that starts late learns them all within one period), or less often when the walk
//! is long ([`refresh_after`]): a walk costs about as much as reading the tables through the
//! map syscalls, some 4.5 µs per flow (BENCHMARKS.md, `cargo xtask bench sync`). The daemon's checker child,
//! which owns the data plane, runs it; the VRRP child's instance state reaches it through the
//! parent (`sync master` / `sync backup` on the control channels).

pub mod wire;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4},
    time::Duration,
};

use thiserror::Error;

use crate::{
    config::model::LvsSyncDaemon,
    dataplane::{ForwardingMethod, Protocol, ServiceAddr, conns::SyncedFlow},
};
use lb_common::lb::tcp_state;

/// How often the master sends its whole table, at least.
pub const REFRESH: Duration = Duration::from_secs(1);

/// The walk may take at most this share of the time (1 / 10): a larger table is sent less often.
const WALK_SHARE: u32 = 10;

/// When the next walk of the tables is due after one that took `walk`: [`REFRESH`], or ten
/// times the walk (some 4.5 ms per 1,000 flows plus their encoding, so from about 20,000 flows
/// on) so that the sync never spends more than a tenth of a core.
pub fn refresh_after(walk: Duration) -> Duration {
    REFRESH.max(walk.saturating_mul(WALK_SHARE))
}

/// What can go wrong with the sync socket.
#[derive(Debug, Error)]
pub enum SyncError {
    /// Creating or setting up the socket.
    #[error("lvs_sync_daemon on {interface}: {action}")]
    Socket {
        /// The interface.
        interface: String,
        /// What was being done.
        action: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// `lvs_sync_daemon` resolved against its VRRP instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncSettings {
    /// The interface.
    pub interface: String,
    /// The VRRP instance it follows.
    pub instance: String,
    /// The sync id (default: the instance's VRID).
    pub syncid: u8,
    /// Largest datagram (default 1472: an Ethernet MTU's worth).
    pub maxlen: usize,
    /// Group and port.
    pub group: SocketAddrV4,
    /// Multicast TTL.
    pub ttl: u8,
}

impl SyncSettings {
    /// From the configuration; `None` without `lvs_sync_daemon` or its instance.
    pub fn of(config: &crate::config::model::Config) -> Option<Self> {
        let sd: &LvsSyncDaemon = config.global_defs.lvs_sync_daemon.as_ref()?;
        let instance = sd.instance.clone()?;
        let vrid = config.vrrp_instances.iter().find(|v| v.name == instance).map(|v| v.virtual_router_id);
        let group = match sd.group {
            Some(IpAddr::V4(g)) => g,
            _ => wire::DEFAULT_GROUP,
        };
        Some(Self {
            interface: sd.interface.clone(),
            instance,
            syncid: sd.id.or(vrid.flatten()).unwrap_or(0),
            maxlen: sd.maxlen.map_or(1472, usize::from).max(wire::HEADER_LEN + wire::CONN6_LEN + 28),
            group: SocketAddrV4::new(group, sd.port.unwrap_or(wire::DEFAULT_PORT)),
            ttl: sd.ttl.unwrap_or(1),
        })
    }
}

/// The wire record of a flow.
pub fn to_conn(flow: &SyncedFlow, timeout: u32) -> wire::Conn {
    let method = match flow.method {
        ForwardingMethod::Nat | ForwardingMethod::Fnat => wire::flags::MASQ,
        ForwardingMethod::Dr => wire::flags::DROUTE,
        ForwardingMethod::Tun => wire::flags::TUNNEL,
    };
    let state = match (flow.service.protocol, flow.tcp_state) {
        (Protocol::Udp, _) => wire::tcp_state::NONE,
        (Protocol::Tcp, tcp_state::SYN) => wire::tcp_state::SYN_RECV,
        (Protocol::Tcp, tcp_state::CLOSING) => wire::tcp_state::FIN_WAIT,
        (Protocol::Tcp, _) => wire::tcp_state::ESTABLISHED,
    };
    wire::Conn {
        protocol: flow.service.protocol.number(),
        flags: method,
        state,
        cport: flow.client.1,
        vport: flow.service.port,
        dport: flow.real.1,
        fwmark: 0,
        timeout,
        caddr: flow.client.0,
        vaddr: flow.service.vip,
        daddr: flow.real.0,
        seq: None,
    }
}

/// Why a received record is not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skipped {
    /// A persistence template, a fwmark service, or a one-packet flow: nothing to track.
    NotAFlow,
    /// A protocol lbd does not forward.
    Protocol,
    /// Addresses of different families.
    Family,
    /// A forwarding method lbd does not take over (local node, bypass).
    Method,
}

/// The flow a received record describes.
pub fn from_conn(conn: &wire::Conn) -> Result<SyncedFlow, Skipped> {
    if conn.flags & (wire::flags::TEMPLATE | wire::flags::ONE_PACKET | wire::flags::NO_CPORT) != 0
        || conn.fwmark != 0
    {
        return Err(Skipped::NotAFlow);
    }
    let protocol = Protocol::from_number(conn.protocol).ok_or(Skipped::Protocol)?;
    if conn.caddr.is_ipv4() != conn.vaddr.is_ipv4() || conn.vaddr.is_ipv4() != conn.daddr.is_ipv4() {
        return Err(Skipped::Family);
    }
    let method = match conn.flags & wire::flags::FWD_MASK {
        wire::flags::MASQ => ForwardingMethod::Nat,
        wire::flags::DROUTE => ForwardingMethod::Dr,
        wire::flags::TUNNEL => ForwardingMethod::Tun,
        _ => return Err(Skipped::Method),
    };
    let tcp_state = match (protocol, conn.state) {
        (Protocol::Udp, _) => tcp_state::NONE,
        (Protocol::Tcp, wire::tcp_state::SYN_RECV | wire::tcp_state::SYN_SENT) => tcp_state::SYN,
        (Protocol::Tcp, wire::tcp_state::ESTABLISHED) => tcp_state::ESTABLISHED,
        (Protocol::Tcp, _) => tcp_state::CLOSING,
    };
    Ok(SyncedFlow {
        service: ServiceAddr { vip: conn.vaddr, port: conn.vport, protocol },
        client: (conn.caddr, conn.cport),
        real: (conn.daddr, conn.dport),
        method,
        tcp_state,
    })
}

/// What the backup side received, for the logs and `/status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncCounters {
    /// Messages accepted.
    pub messages: u64,
    /// Datagrams refused as malformed.
    pub malformed: u64,
    /// Messages of another sync id.
    pub other_syncid: u64,
    /// Records that are not flows lbd takes ([`Skipped`]).
    pub skipped: u64,
    /// Records turned into flows.
    pub flows: u64,
}

impl SyncCounters {
    /// Takes one datagram: its flows, if it is a message of `syncid`; counts the rest.
    pub fn receive(&mut self, syncid: u8, datagram: &[u8]) -> Vec<SyncedFlow> {
        let message = match wire::decode(datagram) {
            Ok(m) => m,
            Err(e) => {
                self.malformed += 1;
                tracing::debug!("lvs_sync_daemon: dropped a malformed message: {e}");
                return Vec::new();
            }
        };
        if message.syncid != syncid {
            self.other_syncid += 1;
            return Vec::new();
        }
        self.messages += 1;
        let mut flows = Vec::with_capacity(message.conns.len());
        for conn in &message.conns {
            match from_conn(conn) {
                Ok(flow) => flows.push(flow),
                Err(_) => self.skipped += 1,
            }
        }
        self.flows += flows.len() as u64;
        flows
    }
}

/// The sync socket: bound to the group's port and the interface, joined to the group on it.
/// (An IPv6 `group` is not supported: the IPv4 default group is used instead.)
#[derive(Debug)]
pub struct SyncSocket {
    socket: tokio::net::UdpSocket,
    group: SocketAddrV4,
}

impl SyncSocket {
    /// Opens the socket for `settings`, whose interface has index `ifindex`.
    pub fn open(settings: &SyncSettings, ifindex: u32) -> Result<Self, SyncError> {
        use socket2::{Domain, Socket, Type};
        let err = |action| {
            let interface = settings.interface.clone();
            move |source| SyncError::Socket { interface, action, source }
        };
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, None).map_err(err("creating the socket"))?;
        socket.set_reuse_address(true).map_err(err("SO_REUSEADDR"))?;
        socket.bind_device(Some(settings.interface.as_bytes())).map_err(err("binding to the interface"))?;
        let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, settings.group.port()));
        socket.bind(&any.into()).map_err(err("binding the port"))?;
        let index = socket2::InterfaceIndexOrAddress::Index(ifindex);
        socket.join_multicast_v4_n(settings.group.ip(), &index).map_err(err("joining the group"))?;
        socket.set_multicast_ttl_v4(u32::from(settings.ttl)).map_err(err("IP_MULTICAST_TTL"))?;
        socket.set_multicast_loop_v4(false).map_err(err("IP_MULTICAST_LOOP"))?;
        socket.set_nonblocking(true).map_err(err("O_NONBLOCK"))?;
        let socket = tokio::net::UdpSocket::from_std(socket.into()).map_err(err("registering the socket"))?;
        Ok(Self { socket, group: settings.group })
    }

    /// Sends one message to the group.
    pub async fn send(&self, message: &[u8]) -> std::io::Result<()> {
        self.socket.send_to(message, self.group).await.map(drop)
    }

    /// The next datagram and its sender. Cancel-safe.
    pub async fn recv(&self, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
        self.socket.recv_from(buf).await
    }
}

/// The sync as the checker child runs it: the socket, the role, the counters.
#[derive(Debug)]
pub struct SyncDaemon {
    /// The settings.
    pub settings: SyncSettings,
    socket: SyncSocket,
    /// Whether the followed instance is MASTER (send) rather than not (receive).
    pub master: bool,
    /// What was received.
    pub counters: SyncCounters,
    /// Messages sent.
    pub sent: u64,
    buf: Vec<u8>,
}

impl SyncDaemon {
    /// Starts as a backup (as keepalived does until the instance's state is known).
    pub fn new(settings: SyncSettings, socket: SyncSocket) -> Self {
        Self {
            settings,
            socket,
            master: false,
            counters: SyncCounters::default(),
            sent: 0,
            buf: vec![0; 65_536],
        }
    }

    /// The flows of the next datagram (none for a master, which ignores what it hears, or for a
    /// datagram that is not for it). Cancel-safe.
    pub async fn receive(&mut self) -> Vec<SyncedFlow> {
        let len = match self.socket.recv(&mut self.buf).await {
            Ok((len, _)) => len,
            Err(e) => {
                tracing::warn!("lvs_sync_daemon: receiving: {e}");
                tokio::time::sleep(REFRESH).await;
                return Vec::new();
            }
        };
        if self.master {
            return Vec::new();
        }
        self.counters.receive(self.settings.syncid, &self.buf[..len])
    }

    /// Sends `flows` to the backups, in as many messages as `maxlen` needs.
    pub async fn send(&mut self, flows: &[SyncedFlow]) {
        let conns: Vec<wire::Conn> = flows.iter().map(|f| to_conn(f, timeout_of(f))).collect();
        for message in wire::encode(self.settings.syncid, &conns, self.settings.maxlen) {
            match self.socket.send(&message).await {
                Ok(()) => self.sent += 1,
                Err(e) => {
                    tracing::warn!("lvs_sync_daemon: sending: {e}");
                    return;
                }
            }
        }
    }
}

/// The timeout a record carries: IPVS's defaults for the state (a backup applies its own).
fn timeout_of(flow: &SyncedFlow) -> u32 {
    match (flow.service.protocol, flow.tcp_state) {
        (Protocol::Udp, _) => 300,
        (Protocol::Tcp, tcp_state::ESTABLISHED) => 900,
        (Protocol::Tcp, tcp_state::SYN) => 60,
        (Protocol::Tcp, _) => 120,
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn flow(method: ForwardingMethod, state: u8) -> SyncedFlow {
        SyncedFlow {
            service: ServiceAddr { vip: "10.0.0.100".parse().unwrap(), port: 80, protocol: Protocol::Tcp },
            client: ("10.0.0.1".parse().unwrap(), 40000),
            real: ("10.0.1.3".parse().unwrap(), 80),
            method,
            tcp_state: state,
        }
    }

    #[test]
    fn a_long_walk_spaces_the_refreshes() {
        assert_eq!(refresh_after(Duration::from_millis(3)), REFRESH);
        assert_eq!(refresh_after(Duration::from_millis(340)), Duration::from_millis(3_400));
    }

    #[test]
    fn flows_cross_the_wire_and_back() {
        for method in [ForwardingMethod::Nat, ForwardingMethod::Dr, ForwardingMethod::Tun] {
            for state in [tcp_state::SYN, tcp_state::ESTABLISHED, tcp_state::CLOSING] {
                let f = flow(method, state);
                let messages = wire::encode(5, &[to_conn(&f, 900)], 1472);
                let mut counters = SyncCounters::default();
                assert_eq!(counters.receive(5, &messages[0]), vec![f]);
                assert_eq!(counters.receive(6, &messages[0]), vec![]);
                assert_eq!((counters.messages, counters.other_syncid, counters.flows), (1, 1, 1));
            }
        }
    }

    #[test]
    fn templates_and_garbage_are_counted_not_taken() {
        let mut template = to_conn(&flow(ForwardingMethod::Dr, tcp_state::ESTABLISHED), 300);
        template.flags |= wire::flags::TEMPLATE;
        let mut local = to_conn(&flow(ForwardingMethod::Dr, tcp_state::ESTABLISHED), 300);
        local.flags = wire::flags::LOCALNODE;
        let message = wire::encode(1, &[template, local], 1472).remove(0);
        let mut counters = SyncCounters::default();
        assert!(counters.receive(1, &message).is_empty());
        assert_eq!(counters.skipped, 2);
        assert!(counters.receive(1, &[1, 2, 3]).is_empty());
        assert_eq!(counters.malformed, 1);
    }
}
