//! The data plane: what the daemon wants forwarded ([`DesiredState`]), the interface every
//! forwarding backend implements ([`Dataplane`]), and the backends.
//!
//! Only this module touches BPF maps. The pieces:
//! - this file: the backend-agnostic desired state (virtual services, their real servers,
//!   timeouts), the [`Dataplane`] trait, what an apply changed ([`ApplyReport`]) and the
//!   counters read back ([`ServiceCounters`]);
//! - [`tables`]: the XDP program's tables as user space sees them: stable id allocation, the
//!   diff between what the maps hold and what is desired, and the ordered writes that get from
//!   one to the other without disturbing established flows;
//! - [`sched`] and [`maglev`]: the scheduling slot rows the XDP program indexes;
//! - [`xdp`]: the XDP backend (loads the embedded object, pins and adopts its maps, attaches);
//! - [`fake`]: an in-memory backend that records every write, for unit tests;
//! - [`conns`]: tracked flows by addresses, for the connection sync (`lvs_sync_daemon`);
//! - [`bpffs`]: making sure the pin directory is on a bpffs;
//! - [`ipvs`]: the Linux IPVS backend (what keepalived drives), from the same [`DesiredState`].

pub mod bpffs;
pub mod conns;
pub mod fake;
pub mod ipvs;
pub mod maglev;
pub mod retry;
pub mod sched;
pub mod tables;
pub mod xdp;

use std::{fmt, net::IpAddr, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

/// What can go wrong while setting up, changing or reading the data plane.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// The pin directory could not be created or mounted.
    #[error("pin directory {path}: {reason}")]
    PinDirectory {
        /// The directory.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The kernel refused the object (verifier, BTF, map creation).
    #[error("loading the XDP object")]
    Load(#[source] Box<aya::EbpfError>),
    /// The object lacks something the daemon expects: it was built from other sources.
    #[error("the XDP object has no {kind} named {name}")]
    Missing {
        /// "program" or "map".
        kind: &'static str,
        /// Its name.
        name: &'static str,
    },
    /// A program operation (load, attach) failed.
    #[error("{action} program {program}{}", interface.as_deref().map(|i| format!(" on {i}")).unwrap_or_default())]
    Program {
        /// What was being done.
        action: &'static str,
        /// The program.
        program: &'static str,
        /// The interface, for attach.
        interface: Option<String>,
        /// The cause.
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// A map operation failed.
    #[error("map {map}")]
    Map {
        /// The map's name.
        map: &'static str,
        /// The cause.
        #[source]
        source: Box<aya::maps::MapError>,
    },
    /// A pinned map left by an earlier run does not have the shape this build expects (a
    /// different version of lbd pinned it): lbd will not write into it.
    #[error("pinned map {map} is incompatible with this lbd ({reason}); remove the pins to start afresh")]
    Incompatible {
        /// The map's name.
        map: &'static str,
        /// What differs.
        reason: String,
    },
    /// The number of possible CPUs, needed for per-CPU maps, could not be read.
    #[error("reading {path}")]
    Cpus {
        /// The sysfs file.
        path: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A virtual service of the desired state cannot be forwarded as described.
    #[error("virtual server {service}: {problem}")]
    Invalid {
        /// The virtual service.
        service: ServiceAddr,
        /// What is wrong with it.
        problem: Problem,
    },
    /// The kernel's IPVS refused a request or could not be reached.
    #[error("IPVS")]
    Ipvs(#[source] crate::netlink::ipvs::IpvsError),
    /// The global settings of the desired state are inconsistent.
    #[error("data plane settings: {reason}")]
    Settings {
        /// What is wrong.
        reason: String,
    },
    /// A table of the data plane has no room left.
    #[error("the {table} table is full ({capacity} entries)")]
    TableFull {
        /// The table.
        table: &'static str,
        /// Its capacity.
        capacity: u32,
    },
}

/// Why a virtual service of the desired state is rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The same VIP, port and protocol appear twice.
    DuplicateService,
    /// The same real server (address and port) appears twice in one service.
    DuplicateReal {
        /// Its address.
        addr: IpAddr,
        /// Its port.
        port: u16,
    },
    /// A real (or sorry) server's address family differs from the VIP's; the XDP program
    /// translates within one family only.
    FamilyMismatch {
        /// The server's address.
        addr: IpAddr,
    },
    /// The VIP is the unspecified address (fwmark services are not supported).
    UnspecifiedVip,
    /// A FNAT service has no local address of the VIP's family.
    NoLocalAddress,
    /// A FNAT service has more local addresses of the VIP's family than a pool holds.
    TooManyLocalAddresses {
        /// How many it has.
        count: usize,
        /// A pool's capacity.
        max: u32,
    },
    /// Persistence with a timeout under one second.
    ZeroPersistenceTimeout,
    /// A persistence prefix longer than the address.
    PersistencePrefix {
        /// The prefix length given.
        prefix: u8,
    },
    /// Something only Alibaba's IPVS kernel does (FULLNAT), asked of the Linux IPVS backend.
    NotInLinuxIpvs {
        /// The configuration keyword that asks for it (`lvs_method FNAT`).
        keyword: &'static str,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DuplicateService => write!(f, "defined twice"),
            Self::DuplicateReal { addr, port } => {
                write!(f, "real server {} defined twice", SocketText(*addr, *port))
            }
            Self::FamilyMismatch { addr } => {
                write!(f, "real server {addr} is not in the VIP's address family")
            }
            Self::UnspecifiedVip => write!(f, "the VIP is the unspecified address"),
            Self::NoLocalAddress => write!(f, "FNAT needs a local address in the VIP's family"),
            Self::TooManyLocalAddresses { count, max } => {
                write!(f, "{count} local addresses, at most {max} per pool")
            }
            Self::ZeroPersistenceTimeout => write!(f, "persistence timeout under one second"),
            Self::PersistencePrefix { prefix } => {
                write!(f, "persistence prefix /{prefix} is longer than the address")
            }
            Self::NotInLinuxIpvs { keyword } => write!(
                f,
                "`{keyword}` needs Alibaba's FULLNAT IPVS kernel, which the Linux IPVS data plane is not \
                 (the XDP data plane, lbd's default, forwards it)"
            ),
        }
    }
}

/// `addr:port`, with brackets around IPv6 addresses.
struct SocketText(IpAddr, u16);

impl fmt::Display for SocketText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.1),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.1),
        }
    }
}

/// Which forwarding backend lbd runs (`--dataplane`, `global_defs` `lbd_dataplane`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// lbd's XDP program (the default).
    #[default]
    Xdp,
    /// The kernel's IPVS, as keepalived drives it.
    Ipvs,
}

impl Backend {
    /// From its keyword (`xdp`, `ipvs`).
    pub fn from_keyword(keyword: &str) -> Option<Self> {
        match keyword {
            "xdp" => Some(Self::Xdp),
            "ipvs" => Some(Self::Ipvs),
            _ => None,
        }
    }
}

/// Transport protocol of a virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// The IP protocol number.
    pub const fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
        }
    }

    /// From an IP protocol number.
    pub const fn from_number(number: u8) -> Option<Self> {
        match number {
            6 => Some(Self::Tcp),
            17 => Some(Self::Udp),
            _ => None,
        }
    }
}

/// What identifies a virtual service: what clients connect to (ipvsadm's `-t`/`-u`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[doc(alias = "virtual_server")]
pub struct ServiceAddr {
    /// The VIP.
    pub vip: IpAddr,
    /// The port; 0 forwards every port of the VIP (keepalived's persistent "all ports" service).
    pub port: u16,
    /// The protocol.
    pub protocol: Protocol,
}

impl fmt::Display for ServiceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let protocol = match self.protocol {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        };
        write!(f, "{protocol} {}", SocketText(self.vip, self.port))
    }
}

/// How a virtual service forwards to its real servers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[doc(alias = "lb_kind")]
#[doc(alias = "lvs_method")]
pub enum ForwardingMethod {
    /// Destination NAT (`NAT`, IPVS masquerading); keepalived's default.
    #[default]
    Nat,
    /// Direct routing (`DR`): only the destination MAC changes.
    Dr,
    /// IP-in-IP tunnel (`TUN`).
    Tun,
    /// Full NAT (`FNAT`): source from a local address pool, destination to the real server.
    Fnat,
}

/// The scheduling algorithm of a virtual service (`lb_algo` / `lvs_sched`), as IPVS names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[doc(alias = "lb_algo")]
#[doc(alias = "lvs_sched")]
pub enum Algorithm {
    /// `rr`: every available real server in turn.
    #[doc(alias = "rr")]
    RoundRobin,
    /// `wrr`: in turn, as often as its weight says (IPVS's interleaved sequence).
    #[doc(alias = "wrr")]
    WeightedRoundRobin,
    /// `lc`: fewest active connections.
    #[doc(alias = "lc")]
    LeastConnection,
    /// `wlc`: fewest active connections per unit of weight; keepalived's default.
    #[doc(alias = "wlc")]
    #[default]
    WeightedLeastConnection,
    /// `sh`: a hash of the client address (and port with [`Scheduling::hash_port`]).
    #[doc(alias = "sh")]
    SourceHashing,
    /// `dh`: a hash of the destination address.
    #[doc(alias = "dh")]
    DestinationHashing,
    /// `lblc`: the destination's last real server unless it is overloaded.
    #[doc(alias = "lblc")]
    LocalityBasedLeastConnection,
    /// `mh`: Maglev consistent hashing.
    #[doc(alias = "mh")]
    MaglevHashing,
}

impl Algorithm {
    /// Every algorithm with its keepalived/ipvsadm keyword.
    pub const ALL: [(&'static str, Self); 8] = [
        ("rr", Self::RoundRobin),
        ("wrr", Self::WeightedRoundRobin),
        ("lc", Self::LeastConnection),
        ("wlc", Self::WeightedLeastConnection),
        ("sh", Self::SourceHashing),
        ("dh", Self::DestinationHashing),
        ("lblc", Self::LocalityBasedLeastConnection),
        ("mh", Self::MaglevHashing),
    ];

    /// From its keyword (`rr`, `wrr`, ...); `None` for a scheduler lbd does not implement.
    pub fn from_keyword(keyword: &str) -> Option<Self> {
        Self::ALL.iter().find(|(k, _)| *k == keyword).map(|(_, a)| *a)
    }

    /// Its keyword.
    pub fn keyword(self) -> &'static str {
        Self::ALL.iter().find(|(_, a)| *a == self).map_or("?", |(k, _)| k)
    }
}

/// A scheduler and its flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Scheduling {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// `sh-port` / `mh-port`: the hash includes the client's source port.
    #[doc(alias = "sh-port")]
    #[doc(alias = "mh-port")]
    pub hash_port: bool,
    /// `ops`: one-packet scheduling, every UDP datagram scheduled anew (UDP services only, as
    /// IPVS; ignored for TCP).
    #[doc(alias = "ops")]
    pub one_packet: bool,
}

/// Client affinity (`persistence_timeout`, `persistence_granularity`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Persistence {
    /// How long a client sticks to its real server after its last packet (whole seconds).
    pub timeout: Duration,
    /// Prefix length of the client addresses that share a real server (keepalived's netmask,
    /// as a length); `None`: each client address on its own (/32 or /128).
    #[doc(alias = "persistence_granularity")]
    pub prefix: Option<u8>,
}

/// A real server of a virtual service (also used for the sorry server).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[doc(alias = "real_server")]
pub struct RealTarget {
    /// Its address (same family as the VIP).
    pub addr: IpAddr,
    /// Its port; 0 keeps the client's destination port.
    pub port: u16,
    /// Its weight: 0 takes no new flows but keeps established ones (`inhibit_on_failure`, or a
    /// server taken out by its checker). Ignored for the sorry server.
    pub weight: u32,
    /// `uthreshold`: no new flows at this many connections (0: none). IPVS enforces it itself;
    /// for the XDP data plane the checkers do, through the weight.
    #[serde(default)]
    pub upper_threshold: u32,
    /// `lthreshold`: new flows again under this many connections (0: none).
    #[serde(default)]
    pub lower_threshold: u32,
}

impl RealTarget {
    /// A real server without thresholds.
    pub const fn new(addr: IpAddr, port: u16, weight: u32) -> Self {
        Self { addr, port, weight, upper_threshold: 0, lower_threshold: 0 }
    }
}

/// A virtual service and its real servers, as the daemon wants it forwarded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[doc(alias = "virtual_server")]
pub struct VirtualService {
    /// What clients connect to.
    pub addr: ServiceAddr,
    /// How it forwards.
    pub method: ForwardingMethod,
    /// How it picks a real server.
    pub scheduling: Scheduling,
    /// Client affinity, if any.
    pub persistence: Option<Persistence>,
    /// FNAT source addresses (`local_address_group`, ranges expanded); ignored by the other
    /// methods. Addresses of the other family are left out; order does not matter.
    #[doc(alias = "local_address_group")]
    pub local_addresses: Vec<IpAddr>,
    /// Where flows go when no real server is available.
    pub sorry_server: Option<RealTarget>,
    /// SYN proxy (`syn_proxy`): SYNs are answered with SYN cookies and a real server sees a
    /// connection only once the client completed the handshake. NAT and FNAT TCP services
    /// only (the replies must come back through the load balancer); ignored otherwise.
    #[serde(default)]
    pub syn_proxy: bool,
    /// The real servers, alive or not (a dead one has weight 0 or is left out, per
    /// `inhibit_on_failure`). Order does not matter.
    pub reals: Vec<RealTarget>,
}

impl VirtualService {
    /// A service with no real server, NAT and wlc as keepalived defaults them.
    pub fn new(addr: ServiceAddr) -> Self {
        Self {
            addr,
            method: ForwardingMethod::default(),
            scheduling: Scheduling::default(),
            persistence: None,
            local_addresses: Vec::new(),
            sorry_server: None,
            syn_proxy: false,
            reals: Vec::new(),
        }
    }
}

/// Global settings of the data plane (`lvs_timeouts` and the FNAT port range).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[doc(alias = "lvs_timeouts")]
pub struct DataplaneSettings {
    /// Established TCP flows (`lvs_timeouts tcp`; IPVS default 900 s).
    pub tcp_timeout: Duration,
    /// TCP flows after FIN or RST (`lvs_timeouts tcpfin`; IPVS default 120 s).
    pub tcp_fin_timeout: Duration,
    /// UDP flows (`lvs_timeouts udp`; IPVS default 300 s).
    pub udp_timeout: Duration,
    /// TCP flows whose handshake has not completed (IPVS SYN_RECV: 60 s).
    pub tcp_syn_timeout: Duration,
    /// First FNAT local port.
    pub fnat_port_min: u16,
    /// Last FNAT local port.
    pub fnat_port_max: u16,
    /// FNAT adds the client's address to the ACK that completes a TCP handshake (TOA).
    pub fnat_toa: bool,
}

impl Default for DataplaneSettings {
    fn default() -> Self {
        let d = lb_common::lb::Settings::default();
        let secs = |s: u32| Duration::from_secs(u64::from(s));
        Self {
            tcp_timeout: secs(d.tcp_timeout),
            tcp_fin_timeout: secs(d.tcp_fin_timeout),
            udp_timeout: secs(d.udp_timeout),
            tcp_syn_timeout: secs(d.tcp_syn_timeout),
            fnat_port_min: d.fnat_port_min,
            fnat_port_max: d.fnat_port_max,
            fnat_toa: d.fnat_toa != 0,
        }
    }
}

/// Everything the daemon wants forwarded. Plain data: the daemon translates the configuration
/// (and checker results) into it and hands it to [`Dataplane::apply`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredState {
    /// The virtual services (each [`ServiceAddr`] once; order does not matter).
    pub services: Vec<VirtualService>,
    /// Timeouts and FNAT ports.
    pub settings: DataplaneSettings,
}

/// A problem an apply worked around rather than failing for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyWarning {
    /// No source address towards a TUN real server (no route): it takes no new flows.
    NoTunnelSource {
        /// The service.
        service: ServiceAddr,
        /// The real server's address.
        real: IpAddr,
    },
    /// Something the backend cannot do and forwards without, as keepalived on a stock kernel
    /// (`syn_proxy` with Linux IPVS).
    Ignored {
        /// The service.
        service: ServiceAddr,
        /// The configuration keyword left unapplied.
        keyword: String,
        /// Why.
        reason: String,
    },
    /// More available real servers than the scheduler's row holds: the rest take no new flows.
    RowTruncated {
        /// The service.
        service: ServiceAddr,
        /// Available real servers.
        available: usize,
        /// Those in the row.
        used: usize,
    },
}

impl fmt::Display for ApplyWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoTunnelSource { service, real } => {
                write!(f, "{service}: no route to real server {real}, it takes no new flows")
            }
            Self::Ignored { service, keyword, reason } => write!(f, "{service}: {keyword} ignored: {reason}"),
            Self::RowTruncated { service, available, used } => write!(
                f,
                "{service}: {available} available real servers, the scheduler uses the first {used}"
            ),
        }
    }
}

/// What an apply changed. All zero (and [`ApplyReport::writes`] zero) when the data plane
/// already matched.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReport {
    /// Virtual services created.
    pub services_added: usize,
    /// Virtual services deleted.
    pub services_removed: usize,
    /// Virtual services deleted and created again because a field that identifies their flows
    /// changed (method, scheduler, persistence, local address pool): their flows start over.
    pub services_recreated: usize,
    /// Virtual services changed in place (scheduling row, sorry server).
    pub services_updated: usize,
    /// Real servers created (including those of added and recreated services).
    pub reals_added: usize,
    /// Real servers deleted (including those of removed and recreated services).
    pub reals_removed: usize,
    /// Real servers changed in place (weight, tunnel source).
    pub reals_updated: usize,
    /// Scheduling rows with at least one entry rewritten.
    pub rows_rewritten: usize,
    /// Backend operations performed (map updates for XDP).
    pub writes: usize,
    /// Problems worked around.
    pub warnings: Vec<ApplyWarning>,
}

impl ApplyReport {
    /// Whether the apply changed nothing.
    pub fn is_noop(&self) -> bool {
        self.writes == 0
    }
}

/// Traffic counters of a virtual or real server, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Packets from clients.
    pub packets: u64,
    /// Bytes from clients.
    pub bytes: u64,
    /// Flows scheduled.
    pub new_conns: u64,
    /// Flows scheduled and not yet closed (for a service: the sum over its real servers).
    #[doc(alias = "activeconns")]
    pub active_conns: u64,
}

/// Counters of one real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealCounters {
    /// Its address.
    pub addr: IpAddr,
    /// Its port.
    pub port: u16,
    /// Whether it is the service's sorry server.
    pub sorry: bool,
    /// Its weight as applied.
    pub weight: u32,
    /// Its counters.
    pub counters: Counters,
}

/// Counters of one virtual service and its real servers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceCounters {
    /// The service.
    pub service: ServiceAddr,
    /// Its counters.
    pub counters: Counters,
    /// Packets dropped because no real server was available.
    pub no_real: u64,
    /// Its real servers (and sorry server).
    pub reals: Vec<RealCounters>,
}

/// A forwarding backend: the XDP program ([`xdp::XdpDataplane`]), the in-memory fake
/// ([`fake::FakeDataplane`]), and Linux IPVS ([`ipvs::IpvsDataplane`]).
///
/// The daemon calls [`Dataplane::apply`] with the whole desired state whenever anything in it
/// changes (configuration reload, a checker taking a server in or out, VRRP state); the
/// backend changes only what differs, so that established flows of unchanged servers keep
/// flowing.
pub trait Dataplane {
    /// Makes the data plane forward `desired`. On error nothing is assumed about what was
    /// written; the next apply converges from whatever the backend then holds.
    fn apply(&mut self, desired: &DesiredState) -> Result<ApplyReport, DataplaneError>;

    /// Counters of every virtual service the data plane holds, each with its real servers.
    fn service_stats(&self) -> Result<Vec<ServiceCounters>, DataplaneError>;

    /// Counters of one real server of one service.
    fn real_stats(
        &self,
        service: &ServiceAddr,
        addr: IpAddr,
        port: u16,
    ) -> Result<Option<RealCounters>, DataplaneError> {
        let services = self.service_stats()?;
        Ok(services
            .into_iter()
            .find(|s| s.service == *service)
            .and_then(|s| s.reals.into_iter().find(|r| r.addr == addr && r.port == port && !r.sorry)))
    }
}

/// The backend the daemon runs, chosen at start ([`Backend`]).
#[derive(Debug)]
pub enum AnyDataplane {
    /// The XDP program.
    Xdp(xdp::XdpDataplane),
    /// The kernel's IPVS.
    Ipvs(ipvs::IpvsDataplane),
}

impl Dataplane for AnyDataplane {
    fn apply(&mut self, desired: &DesiredState) -> Result<ApplyReport, DataplaneError> {
        match self {
            Self::Xdp(d) => d.apply(desired),
            Self::Ipvs(d) => d.apply(desired),
        }
    }

    fn service_stats(&self) -> Result<Vec<ServiceCounters>, DataplaneError> {
        match self {
            Self::Xdp(d) => d.service_stats(),
            Self::Ipvs(d) => d.service_stats(),
        }
    }
}
