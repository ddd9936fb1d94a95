//! Linux IPVS over generic netlink (family `IPVS`, `include/uapi/linux/ip_vs.h`): the messages
//! keepalived and ipvsadm send, built and parsed here, and a blocking socket that exchanges them.
//!
//! - [`IpvsMessage`]: a command and its attributes, as generic netlink carries it;
//! - [`IpvsService`], [`IpvsDest`], [`Timeouts`]: what the attributes describe, with the
//!   requests that create, change, delete and list them ([`IpvsMessage::new_service`], ...);
//! - [`Transport`]: one request and its answers; [`IpvsSocket`] is the kernel's, tests put a
//!   fake in its place.

use std::{cell::Cell, fmt, io, net::IpAddr};

use netlink_packet_core::{
    DecodeError, Emitable, NLA_F_NESTED, NLA_TYPE_MASK, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload, Nla, NlaBuffer, NlasIterator, ParseableParametrized,
};
use netlink_packet_generic::{
    GenlFamily, GenlHeader, GenlMessage,
    ctrl::{GenlCtrl, GenlCtrlCmd, nlas::GenlCtrlAttrs},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_GENERIC};

/// The generic netlink family name (`IPVS_GENL_NAME`).
pub const FAMILY_NAME: &str = "IPVS";
/// `IPVS_GENL_VERSION`.
const VERSION: u8 = 1;

/// Commands (`IPVS_CMD_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Command {
    /// Add a service (also the command of each service in a dump).
    NewService = 1,
    /// Change a service's scheduler, flags, timeout, netmask.
    SetService = 2,
    /// Delete a service and its destinations.
    DelService = 3,
    /// List services (dump).
    GetService = 4,
    /// Add a destination (also the command of each destination in a dump).
    NewDest = 5,
    /// Change a destination's weight, method, thresholds.
    SetDest = 6,
    /// Delete a destination.
    DelDest = 7,
    /// List a service's destinations (dump).
    GetDest = 8,
    /// Set the TCP, TCP FIN and UDP timeouts.
    SetConfig = 12,
    /// Read the timeouts.
    GetConfig = 13,
    /// Delete every service and destination (`ipvsadm -C`).
    Flush = 17,
}

impl Command {
    const ALL: [Self; 11] = [
        Self::NewService,
        Self::SetService,
        Self::DelService,
        Self::GetService,
        Self::NewDest,
        Self::SetDest,
        Self::DelDest,
        Self::GetDest,
        Self::SetConfig,
        Self::GetConfig,
        Self::Flush,
    ];

    fn from_number(number: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|c| *c as u8 == number)
    }
}

// IPVS_CMD_ATTR_*
const CMD_ATTR_SERVICE: u16 = 1;
const CMD_ATTR_DEST: u16 = 2;
const CMD_ATTR_TIMEOUT_TCP: u16 = 4;
const CMD_ATTR_TIMEOUT_TCP_FIN: u16 = 5;
const CMD_ATTR_TIMEOUT_UDP: u16 = 6;
// IPVS_SVC_ATTR_*
const SVC_ATTR_AF: u16 = 1;
const SVC_ATTR_PROTOCOL: u16 = 2;
const SVC_ATTR_ADDR: u16 = 3;
const SVC_ATTR_PORT: u16 = 4;
const SVC_ATTR_FWMARK: u16 = 5;
const SVC_ATTR_SCHED_NAME: u16 = 6;
const SVC_ATTR_FLAGS: u16 = 7;
const SVC_ATTR_TIMEOUT: u16 = 8;
const SVC_ATTR_NETMASK: u16 = 9;
const SVC_ATTR_STATS: u16 = 10;
const SVC_ATTR_STATS64: u16 = 12;
// IPVS_DEST_ATTR_*
const DEST_ATTR_ADDR: u16 = 1;
const DEST_ATTR_PORT: u16 = 2;
const DEST_ATTR_FWD_METHOD: u16 = 3;
const DEST_ATTR_WEIGHT: u16 = 4;
const DEST_ATTR_U_THRESH: u16 = 5;
const DEST_ATTR_L_THRESH: u16 = 6;
const DEST_ATTR_ACTIVE_CONNS: u16 = 7;
const DEST_ATTR_INACT_CONNS: u16 = 8;
const DEST_ATTR_PERSIST_CONNS: u16 = 9;
const DEST_ATTR_STATS: u16 = 10;
const DEST_ATTR_STATS64: u16 = 12;
// IPVS_STATS_ATTR_*
const STATS_ATTR_CONNS: u16 = 1;
const STATS_ATTR_INPKTS: u16 = 2;
const STATS_ATTR_OUTPKTS: u16 = 3;
const STATS_ATTR_INBYTES: u16 = 4;
const STATS_ATTR_OUTBYTES: u16 = 5;

/// `IP_VS_SVC_F_PERSISTENT`.
pub const SVC_F_PERSISTENT: u32 = 0x0001;
/// `IP_VS_SVC_F_HASHED`: set by the kernel on every service it holds.
pub const SVC_F_HASHED: u32 = 0x0002;
/// `IP_VS_SVC_F_ONEPACKET`.
pub const SVC_F_ONEPACKET: u32 = 0x0004;
/// `IP_VS_SVC_F_SCHED1` (`sh-fallback`, `mh-fallback`).
pub const SVC_F_SCHED1: u32 = 0x0008;
/// `IP_VS_SVC_F_SCHED2` (`sh-port`, `mh-port`).
pub const SVC_F_SCHED2: u32 = 0x0010;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// The forwarding method of a destination (`IP_VS_CONN_F_FWD_MASK` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ForwardMethod {
    /// `IP_VS_CONN_F_MASQ` (NAT).
    Masq,
    /// `IP_VS_CONN_F_LOCALNODE`.
    LocalNode,
    /// `IP_VS_CONN_F_TUNNEL` (TUN).
    Tunnel,
    /// `IP_VS_CONN_F_DROUTE` (DR).
    DirectRoute,
    /// `IP_VS_CONN_F_BYPASS`.
    Bypass,
}

impl ForwardMethod {
    const fn number(self) -> u32 {
        match self {
            Self::Masq => 0,
            Self::LocalNode => 1,
            Self::Tunnel => 2,
            Self::DirectRoute => 3,
            Self::Bypass => 4,
        }
    }

    fn from_number(number: u32) -> Option<Self> {
        [Self::Masq, Self::LocalNode, Self::Tunnel, Self::DirectRoute, Self::Bypass]
            .into_iter()
            .find(|m| m.number() == number & 0x7)
    }
}

/// What identifies an IPVS service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceId {
    /// Address, port and protocol (`-t`, `-u`).
    Addr {
        /// The virtual address.
        addr: IpAddr,
        /// The port.
        port: u16,
        /// The IP protocol number.
        protocol: u16,
    },
    /// A firewall mark (`-f`); lbd does not create these, but a dump may hold them.
    Fwmark {
        /// Whether the mark is for IPv6 packets.
        ipv6: bool,
        /// The mark.
        mark: u32,
    },
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Addr { addr: IpAddr::V4(a), port, protocol } => write!(f, "{protocol}/{a}:{port}"),
            Self::Addr { addr: IpAddr::V6(a), port, protocol } => write!(f, "{protocol}/[{a}]:{port}"),
            Self::Fwmark { mark, .. } => write!(f, "fwmark {mark}"),
        }
    }
}

/// Traffic counters of a service or destination (`IPVS_*_ATTR_STATS64`, or the 32-bit
/// `STATS` from older kernels).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets in (client to server).
    pub in_packets: u64,
    /// Packets out.
    pub out_packets: u64,
    /// Bytes in.
    pub in_bytes: u64,
    /// Bytes out.
    pub out_bytes: u64,
}

/// A virtual service as IPVS holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpvsService {
    /// What identifies it.
    pub id: ServiceId,
    /// The scheduler's name (`wlc`, `rr`, ...).
    pub scheduler: String,
    /// `IP_VS_SVC_F_*` flags ([`SVC_F_HASHED`] is the kernel's own and not compared).
    pub flags: u32,
    /// Persistence timeout in seconds (0 without persistence).
    pub timeout: u32,
    /// Persistence granularity as a prefix length (32 or 128: each client on its own).
    pub prefix: u8,
    /// Counters (zero in requests).
    pub stats: Stats,
}

/// A destination (real server) of a service, as IPVS holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpvsDest {
    /// Its address.
    pub addr: IpAddr,
    /// Its port.
    pub port: u16,
    /// How packets reach it.
    pub method: ForwardMethod,
    /// Its weight.
    pub weight: u32,
    /// Upper connection threshold (0: none).
    pub upper_threshold: u32,
    /// Lower connection threshold (0: none).
    pub lower_threshold: u32,
    /// Active connections (dumps only).
    pub active_conns: u32,
    /// Inactive connections (dumps only).
    pub inactive_conns: u32,
    /// Persistent-template connections (dumps only).
    pub persistent_conns: u32,
    /// Counters (dumps only).
    pub stats: Stats,
}

impl IpvsDest {
    /// A destination as a request describes it (no counters).
    pub fn new(addr: IpAddr, port: u16, method: ForwardMethod, weight: u32) -> Self {
        Self {
            addr,
            port,
            method,
            weight,
            upper_threshold: 0,
            lower_threshold: 0,
            active_conns: 0,
            inactive_conns: 0,
            persistent_conns: 0,
            stats: Stats::default(),
        }
    }
}

/// The connection timeouts in seconds (`ipvsadm --set`; 0 leaves one unchanged).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// Established TCP.
    pub tcp: u32,
    /// TCP after FIN.
    pub tcp_fin: u32,
    /// UDP.
    pub udp: u32,
}

/// An attribute value as the uapi header types it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    U16(u16),
    /// A `__be16`.
    Be16(u16),
    U32(u32),
    Bytes(Vec<u8>),
    Nested(Vec<Attr>),
}

/// One netlink attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Attr {
    kind: u16,
    value: Value,
}

impl Attr {
    const fn new(kind: u16, value: Value) -> Self {
        Self { kind, value }
    }
}

impl Nla for Attr {
    fn value_len(&self) -> usize {
        match &self.value {
            Value::U16(_) | Value::Be16(_) => 2,
            Value::U32(_) => 4,
            Value::Bytes(b) => b.len(),
            Value::Nested(attrs) => attrs.as_slice().buffer_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self.value {
            Value::Nested(_) => self.kind | NLA_F_NESTED,
            _ => self.kind,
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match &self.value {
            Value::U16(v) => buffer[..2].copy_from_slice(&v.to_ne_bytes()),
            Value::Be16(v) => buffer[..2].copy_from_slice(&v.to_be_bytes()),
            Value::U32(v) => buffer[..4].copy_from_slice(&v.to_ne_bytes()),
            Value::Bytes(b) => buffer[..b.len()].copy_from_slice(b),
            Value::Nested(attrs) => attrs.as_slice().emit(buffer),
        }
    }
}

/// A command and its attributes: the payload of an IPVS generic netlink message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpvsMessage {
    /// The command.
    pub command: Command,
    attrs: Vec<Attr>,
}

impl GenlFamily for IpvsMessage {
    fn family_name() -> &'static str {
        FAMILY_NAME
    }

    fn command(&self) -> u8 {
        self.command as u8
    }

    fn version(&self) -> u8 {
        VERSION
    }
}

impl Emitable for IpvsMessage {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer);
    }
}

impl ParseableParametrized<[u8], GenlHeader> for IpvsMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        let command = Command::from_number(header.cmd)
            .ok_or_else(|| DecodeError::from(format!("unknown IPVS command {}", header.cmd)))?;
        Ok(Self { command, attrs: parse_attrs(buf)? })
    }
}

/// The attributes in `buf`, nested ones parsed as such (their kinds are known by the caller,
/// so only the nested flag or the known nesting attribute kinds mark them).
fn parse_attrs(buf: &[u8]) -> Result<Vec<Attr>, DecodeError> {
    NlasIterator::new(buf).map(|nla| nla.map(raw_attr)).collect()
}

fn raw_attr(nla: NlaBuffer<&[u8]>) -> Attr {
    Attr::new(nla.kind() & NLA_TYPE_MASK, Value::Bytes(nla.value().to_vec()))
}

fn nested(value: &Value) -> Result<Vec<Attr>, DecodeError> {
    match value {
        Value::Bytes(b) => parse_attrs(b),
        Value::Nested(attrs) => Ok(attrs.clone()),
        _ => Err("expected nested attributes".into()),
    }
}

fn bytes(value: &Value) -> Vec<u8> {
    match value {
        Value::Bytes(b) => b.clone(),
        Value::U16(v) => v.to_ne_bytes().to_vec(),
        Value::Be16(v) => v.to_be_bytes().to_vec(),
        Value::U32(v) => v.to_ne_bytes().to_vec(),
        Value::Nested(attrs) => {
            let mut b = vec![0; attrs.as_slice().buffer_len()];
            attrs.as_slice().emit(&mut b);
            b
        }
    }
}

fn array<const N: usize>(value: &Value, what: &str) -> Result<[u8; N], DecodeError> {
    let b = bytes(value);
    b.get(..N)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| DecodeError::from(format!("{what}: {} bytes, expected {N}", b.len())))
}

fn u16_of(value: &Value, what: &str) -> Result<u16, DecodeError> {
    array(value, what).map(u16::from_ne_bytes)
}

fn be16_of(value: &Value, what: &str) -> Result<u16, DecodeError> {
    array(value, what).map(u16::from_be_bytes)
}

fn u32_of(value: &Value, what: &str) -> Result<u32, DecodeError> {
    array(value, what).map(u32::from_ne_bytes)
}

/// A counter: 4 bytes in `STATS`, 8 in `STATS64` (and for the byte counters of both).
fn counter_of(value: &Value) -> Result<u64, DecodeError> {
    let b = bytes(value);
    match b.len() {
        4 => Ok(u64::from(u32_of(value, "counter")?)),
        8 => Ok(u64::from_ne_bytes(array(value, "counter")?)),
        n => Err(DecodeError::from(format!("counter: {n} bytes"))),
    }
}

/// An `nf_inet_addr` (16 bytes, IPv4 in the first four) of family `af`.
fn addr_of(value: &Value, af: u16) -> Result<IpAddr, DecodeError> {
    let b = bytes(value);
    match af {
        AF_INET if b.len() >= 4 => Ok(IpAddr::from([b[0], b[1], b[2], b[3]])),
        AF_INET6 => Ok(IpAddr::from(array::<16>(value, "IPv6 address")?)),
        _ => Err(DecodeError::from(format!("address of family {af}: {} bytes", b.len()))),
    }
}

fn inet_addr(addr: IpAddr) -> Value {
    let mut b = vec![0; 16];
    match addr {
        IpAddr::V4(a) => b[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => b.copy_from_slice(&a.octets()),
    }
    Value::Bytes(b)
}

const fn family(addr: IpAddr) -> u16 {
    match addr {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    }
}

/// `IPVS_SVC_ATTR_NETMASK`: for IPv4 the netmask itself (`__be32`), for IPv6 the prefix length
/// as a host-order number (the kernel compares it with 128).
fn netmask(ipv6: bool, prefix: u8) -> Value {
    if ipv6 {
        Value::U32(u32::from(prefix.min(128)))
    } else {
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0);
        Value::Bytes(mask.to_be_bytes().to_vec())
    }
}

fn prefix_of(value: &Value, ipv6: bool) -> Result<u8, DecodeError> {
    let raw: [u8; 4] = array(value, "netmask")?;
    let prefix = if ipv6 { u32::from_ne_bytes(raw) } else { u32::from_be_bytes(raw).leading_ones() };
    u8::try_from(prefix).map_err(|_| DecodeError::from(format!("netmask prefix {prefix}")))
}

fn parse_stats(attrs: &[Attr]) -> Result<Stats, DecodeError> {
    let mut stats = Stats::default();
    for attr in attrs {
        let slot = match attr.kind {
            STATS_ATTR_CONNS => &mut stats.conns,
            STATS_ATTR_INPKTS => &mut stats.in_packets,
            STATS_ATTR_OUTPKTS => &mut stats.out_packets,
            STATS_ATTR_INBYTES => &mut stats.in_bytes,
            STATS_ATTR_OUTBYTES => &mut stats.out_bytes,
            _ => continue,
        };
        *slot = counter_of(&attr.value)?;
    }
    Ok(stats)
}

/// `IPVS_*_ATTR_STATS64`.
fn stats_attrs(stats: &Stats) -> Value {
    let counters = [
        (STATS_ATTR_CONNS, stats.conns),
        (STATS_ATTR_INPKTS, stats.in_packets),
        (STATS_ATTR_OUTPKTS, stats.out_packets),
        (STATS_ATTR_INBYTES, stats.in_bytes),
        (STATS_ATTR_OUTBYTES, stats.out_bytes),
    ];
    Value::Nested(
        counters.iter().map(|(k, v)| Attr::new(*k, Value::Bytes(v.to_ne_bytes().to_vec()))).collect(),
    )
}

/// The attributes that identify a service.
fn service_id_attrs(id: &ServiceId) -> Vec<Attr> {
    match *id {
        ServiceId::Addr { addr, port, protocol } => vec![
            Attr::new(SVC_ATTR_AF, Value::U16(family(addr))),
            Attr::new(SVC_ATTR_PROTOCOL, Value::U16(protocol)),
            Attr::new(SVC_ATTR_ADDR, inet_addr(addr)),
            Attr::new(SVC_ATTR_PORT, Value::Be16(port)),
        ],
        ServiceId::Fwmark { ipv6, mark } => vec![
            Attr::new(SVC_ATTR_AF, Value::U16(if ipv6 { AF_INET6 } else { AF_INET })),
            Attr::new(SVC_ATTR_FWMARK, Value::U32(mark)),
        ],
    }
}

impl IpvsService {
    fn is_ipv6(&self) -> bool {
        match self.id {
            ServiceId::Addr { addr, .. } => addr.is_ipv6(),
            ServiceId::Fwmark { ipv6, .. } => ipv6,
        }
    }

    /// Every attribute of a full entry (what `NEW_SERVICE` and `SET_SERVICE` need).
    fn attrs(&self) -> Vec<Attr> {
        let mut sched = self.scheduler.as_bytes().to_vec();
        sched.push(0);
        let mut flags = (self.flags & !SVC_F_HASHED).to_ne_bytes().to_vec();
        flags.extend_from_slice(&u32::MAX.to_ne_bytes());
        let mut attrs = service_id_attrs(&self.id);
        attrs.extend([
            Attr::new(SVC_ATTR_SCHED_NAME, Value::Bytes(sched)),
            Attr::new(SVC_ATTR_FLAGS, Value::Bytes(flags)),
            Attr::new(SVC_ATTR_TIMEOUT, Value::U32(self.timeout)),
            Attr::new(SVC_ATTR_NETMASK, netmask(self.is_ipv6(), self.prefix)),
        ]);
        attrs
    }

    fn parse(attrs: &[Attr]) -> Result<Self, DecodeError> {
        let find = |kind| attrs.iter().find(|a| a.kind == kind).map(|a| &a.value);
        let af = u16_of(find(SVC_ATTR_AF).ok_or("service without an address family")?, "af")?;
        let ipv6 = af == AF_INET6;
        let id = match find(SVC_ATTR_FWMARK) {
            Some(mark) => ServiceId::Fwmark { ipv6, mark: u32_of(mark, "fwmark")? },
            None => ServiceId::Addr {
                addr: addr_of(find(SVC_ATTR_ADDR).ok_or("service without an address")?, af)?,
                port: find(SVC_ATTR_PORT).map_or(Ok(0), |v| be16_of(v, "port"))?,
                protocol: find(SVC_ATTR_PROTOCOL).map_or(Ok(0), |v| u16_of(v, "protocol"))?,
            },
        };
        let scheduler = find(SVC_ATTR_SCHED_NAME)
            .map(|v| {
                let b = bytes(v);
                String::from_utf8_lossy(b.split(|c| *c == 0).next().unwrap_or_default()).into_owned()
            })
            .unwrap_or_default();
        let stats = match find(SVC_ATTR_STATS64).or_else(|| find(SVC_ATTR_STATS)) {
            Some(v) => parse_stats(&nested(v)?)?,
            None => Stats::default(),
        };
        Ok(Self {
            id,
            scheduler,
            flags: find(SVC_ATTR_FLAGS).map_or(Ok(0), |v| u32_of(v, "flags"))?,
            timeout: find(SVC_ATTR_TIMEOUT).map_or(Ok(0), |v| u32_of(v, "timeout"))?,
            prefix: find(SVC_ATTR_NETMASK).map_or(Ok(if ipv6 { 128 } else { 32 }), |v| prefix_of(v, ipv6))?,
            stats,
        })
    }
}

impl IpvsDest {
    /// Every attribute of a full entry (what `NEW_DEST` and `SET_DEST` need).
    fn attrs(&self) -> Vec<Attr> {
        let mut attrs = self.id_attrs();
        attrs.extend([
            Attr::new(DEST_ATTR_FWD_METHOD, Value::U32(self.method.number())),
            Attr::new(DEST_ATTR_WEIGHT, Value::U32(self.weight)),
            Attr::new(DEST_ATTR_U_THRESH, Value::U32(self.upper_threshold)),
            Attr::new(DEST_ATTR_L_THRESH, Value::U32(self.lower_threshold)),
        ]);
        attrs
    }

    fn id_attrs(&self) -> Vec<Attr> {
        vec![
            Attr::new(DEST_ATTR_ADDR, inet_addr(self.addr)),
            Attr::new(DEST_ATTR_PORT, Value::Be16(self.port)),
        ]
    }

    fn parse(attrs: &[Attr], af: u16) -> Result<Self, DecodeError> {
        let find = |kind| attrs.iter().find(|a| a.kind == kind).map(|a| &a.value);
        let u32_or_0 = |kind, what| find(kind).map_or(Ok(0), |v| u32_of(v, what));
        let method_number = u32_or_0(DEST_ATTR_FWD_METHOD, "forwarding method")?;
        let stats = match find(DEST_ATTR_STATS64).or_else(|| find(DEST_ATTR_STATS)) {
            Some(v) => parse_stats(&nested(v)?)?,
            None => Stats::default(),
        };
        Ok(Self {
            addr: addr_of(find(DEST_ATTR_ADDR).ok_or("destination without an address")?, af)?,
            port: find(DEST_ATTR_PORT).map_or(Ok(0), |v| be16_of(v, "port"))?,
            method: ForwardMethod::from_number(method_number)
                .ok_or_else(|| DecodeError::from(format!("forwarding method {method_number}")))?,
            weight: u32_or_0(DEST_ATTR_WEIGHT, "weight")?,
            upper_threshold: u32_or_0(DEST_ATTR_U_THRESH, "upper threshold")?,
            lower_threshold: u32_or_0(DEST_ATTR_L_THRESH, "lower threshold")?,
            active_conns: u32_or_0(DEST_ATTR_ACTIVE_CONNS, "active connections")?,
            inactive_conns: u32_or_0(DEST_ATTR_INACT_CONNS, "inactive connections")?,
            persistent_conns: u32_or_0(DEST_ATTR_PERSIST_CONNS, "persistent connections")?,
            stats,
        })
    }
}

impl IpvsMessage {
    fn with(command: Command, attrs: Vec<Attr>) -> Self {
        Self { command, attrs }
    }

    fn service_attr(attrs: Vec<Attr>) -> Attr {
        Attr::new(CMD_ATTR_SERVICE, Value::Nested(attrs))
    }

    fn dest_attr(attrs: Vec<Attr>) -> Attr {
        Attr::new(CMD_ATTR_DEST, Value::Nested(attrs))
    }

    /// `IPVS_CMD_NEW_SERVICE`.
    pub fn new_service(service: &IpvsService) -> Self {
        Self::with(Command::NewService, vec![Self::service_attr(service.attrs())])
    }

    /// `IPVS_CMD_SET_SERVICE`.
    pub fn set_service(service: &IpvsService) -> Self {
        Self::with(Command::SetService, vec![Self::service_attr(service.attrs())])
    }

    /// `IPVS_CMD_DEL_SERVICE`.
    pub fn del_service(id: &ServiceId) -> Self {
        Self::with(Command::DelService, vec![Self::service_attr(service_id_attrs(id))])
    }

    /// `IPVS_CMD_FLUSH`: every service and destination deleted, whoever made them.
    pub fn flush() -> Self {
        Self::with(Command::Flush, Vec::new())
    }

    /// `IPVS_CMD_GET_SERVICE` (sent as a dump: every service).
    pub fn get_services() -> Self {
        Self::with(Command::GetService, Vec::new())
    }

    /// `IPVS_CMD_NEW_DEST`.
    pub fn new_dest(service: &ServiceId, dest: &IpvsDest) -> Self {
        Self::dest_command(Command::NewDest, service, dest.attrs())
    }

    /// `IPVS_CMD_SET_DEST`.
    pub fn set_dest(service: &ServiceId, dest: &IpvsDest) -> Self {
        Self::dest_command(Command::SetDest, service, dest.attrs())
    }

    /// `IPVS_CMD_DEL_DEST`.
    pub fn del_dest(service: &ServiceId, dest: &IpvsDest) -> Self {
        Self::dest_command(Command::DelDest, service, dest.id_attrs())
    }

    fn dest_command(command: Command, service: &ServiceId, dest: Vec<Attr>) -> Self {
        Self::with(command, vec![Self::service_attr(service_id_attrs(service)), Self::dest_attr(dest)])
    }

    /// `IPVS_CMD_GET_DEST` (sent as a dump: every destination of `service`).
    pub fn get_dests(service: &ServiceId) -> Self {
        Self::with(Command::GetDest, vec![Self::service_attr(service_id_attrs(service))])
    }

    /// `IPVS_CMD_SET_CONFIG` with the three timeouts.
    pub fn set_timeouts(timeouts: &Timeouts) -> Self {
        Self::with(
            Command::SetConfig,
            vec![
                Attr::new(CMD_ATTR_TIMEOUT_TCP, Value::U32(timeouts.tcp)),
                Attr::new(CMD_ATTR_TIMEOUT_TCP_FIN, Value::U32(timeouts.tcp_fin)),
                Attr::new(CMD_ATTR_TIMEOUT_UDP, Value::U32(timeouts.udp)),
            ],
        )
    }

    /// `IPVS_CMD_GET_CONFIG`.
    pub fn get_timeouts() -> Self {
        Self::with(Command::GetConfig, Vec::new())
    }

    /// A service as a `GET_SERVICE` dump answers it, counters included (what a fake kernel
    /// answers in tests).
    pub fn service_entry(service: &IpvsService) -> Self {
        let mut attrs = service.attrs();
        attrs.push(Attr::new(SVC_ATTR_STATS64, stats_attrs(&service.stats)));
        Self::with(Command::NewService, vec![Self::service_attr(attrs)])
    }

    /// A destination as a `GET_DEST` dump answers it, counters included.
    pub fn dest_entry(dest: &IpvsDest) -> Self {
        let mut attrs = dest.attrs();
        attrs.extend([
            Attr::new(DEST_ATTR_ACTIVE_CONNS, Value::U32(dest.active_conns)),
            Attr::new(DEST_ATTR_INACT_CONNS, Value::U32(dest.inactive_conns)),
            Attr::new(DEST_ATTR_PERSIST_CONNS, Value::U32(dest.persistent_conns)),
            Attr::new(DEST_ATTR_STATS64, stats_attrs(&dest.stats)),
        ]);
        Self::with(Command::NewDest, vec![Self::dest_attr(attrs)])
    }

    fn find(&self, kind: u16) -> Option<&Value> {
        self.attrs.iter().find(|a| a.kind == kind).map(|a| &a.value)
    }

    /// The service this message carries (a `GET_SERVICE` answer, or any request naming one).
    pub fn service(&self) -> Result<IpvsService, DecodeError> {
        let attrs = nested(self.find(CMD_ATTR_SERVICE).ok_or("no service attribute")?)?;
        IpvsService::parse(&attrs)
    }

    /// The service this message names: its identifying attributes only.
    pub fn service_id(&self) -> Result<ServiceId, DecodeError> {
        let attrs = nested(self.find(CMD_ATTR_SERVICE).ok_or("no service attribute")?)?;
        let mut with_defaults = attrs;
        with_defaults.retain(|a| a.kind != SVC_ATTR_STATS && a.kind != SVC_ATTR_STATS64);
        IpvsService::parse(&with_defaults).map(|s| s.id)
    }

    /// The destination this message carries, of a service of family `ipv6`.
    pub fn dest(&self, ipv6: bool) -> Result<IpvsDest, DecodeError> {
        let attrs = nested(self.find(CMD_ATTR_DEST).ok_or("no destination attribute")?)?;
        IpvsDest::parse(&attrs, if ipv6 { AF_INET6 } else { AF_INET })
    }

    /// The timeouts of a `GET_CONFIG` answer or `SET_CONFIG` request.
    pub fn timeouts(&self) -> Result<Timeouts, DecodeError> {
        let get = |kind, what| self.find(kind).map_or(Ok(0), |v| u32_of(v, what));
        Ok(Timeouts {
            tcp: get(CMD_ATTR_TIMEOUT_TCP, "tcp timeout")?,
            tcp_fin: get(CMD_ATTR_TIMEOUT_TCP_FIN, "tcp fin timeout")?,
            udp: get(CMD_ATTR_TIMEOUT_UDP, "udp timeout")?,
        })
    }

    /// The whole netlink message: header (`family` as its type, `seq`), generic header, and
    /// attributes; a dump when `dump`, otherwise a request that asks for an acknowledgement.
    pub fn to_bytes(&self, family: u16, seq: u32, dump: bool) -> Vec<u8> {
        frame(GenlMessage::from_payload(self.clone()), family, seq, dump)
    }

    /// Parses one whole netlink message carrying an IPVS payload (what the kernel answers, or
    /// what [`IpvsMessage::to_bytes`] built).
    pub fn from_bytes(buf: &[u8]) -> Result<Self, DecodeError> {
        match NetlinkMessage::<GenlMessage<Self>>::deserialize(buf)?.payload {
            NetlinkPayload::InnerMessage(m) => Ok(m.payload),
            other => Err(DecodeError::from(format!("not an IPVS message: {other:?}"))),
        }
    }
}

fn frame<F>(mut message: GenlMessage<F>, family: u16, seq: u32, dump: bool) -> Vec<u8>
where
    F: GenlFamily + Emitable + fmt::Debug,
{
    message.set_resolved_family_id(family);
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { NLM_F_ACK };
    header.sequence_number = seq;
    let mut message = NetlinkMessage::new(header, NetlinkPayload::from(message));
    message.finalize();
    let mut buf = vec![0; message.buffer_len()];
    message.serialize(&mut buf);
    buf
}

/// What can go wrong talking to IPVS.
#[derive(Debug, thiserror::Error)]
pub enum IpvsError {
    /// The generic netlink socket could not be opened.
    #[error("opening a generic netlink socket")]
    Socket(#[source] io::Error),
    /// The kernel has no IPVS family (no IPVS, or `ip_vs` not loaded).
    #[error(
        "the kernel has no IPVS (generic netlink family \"IPVS\" not found; is the ip_vs module loaded?)"
    )]
    NoIpvs,
    /// Sending or receiving failed.
    #[error("{request}")]
    Io {
        /// What was asked.
        request: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The kernel refused a request.
    #[error("{request}: the kernel says")]
    Kernel {
        /// What was asked.
        request: String,
        /// The kernel's errno.
        #[source]
        source: io::Error,
    },
    /// An answer could not be parsed.
    #[error("{request}: malformed answer: {reason}")]
    Decode {
        /// What was asked.
        request: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl IpvsError {
    /// The kernel's errno, when the kernel refused the request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Kernel { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// One request and its answers: the kernel's socket, or a fake in tests.
pub trait Transport {
    /// Sends `message` (as a dump when `dump`) and returns the messages answered (none for an
    /// acknowledged change).
    fn request(&self, message: &IpvsMessage, dump: bool) -> Result<Vec<IpvsMessage>, IpvsError>;
}

/// A blocking generic netlink socket speaking to the kernel's IPVS.
#[derive(Debug)]
pub struct IpvsSocket {
    socket: Socket,
    family: u16,
    seq: Cell<u32>,
}

impl IpvsSocket {
    /// Opens a socket and resolves the IPVS family ([`IpvsError::NoIpvs`] when the kernel has
    /// none).
    pub fn open() -> Result<Self, IpvsError> {
        let mut socket = Socket::new(NETLINK_GENERIC).map_err(IpvsError::Socket)?;
        socket.bind_auto().map_err(IpvsError::Socket)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(IpvsError::Socket)?;
        let mut this = Self { socket, family: 0, seq: Cell::new(0) };
        let query = GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![GenlCtrlAttrs::FamilyName(FAMILY_NAME.to_owned())],
        };
        let request = "resolving the generic netlink family IPVS";
        let seq = this.next_seq();
        this.send(&frame(GenlMessage::from_payload(query), libc::GENL_ID_CTRL as u16, seq, false), request)?;
        let answers = match this.receive::<GenlCtrl>(seq, false, request) {
            Err(e) if e.errno() == Some(libc::ENOENT) => return Err(IpvsError::NoIpvs),
            other => other?,
        };
        this.family = answers
            .iter()
            .flat_map(|a| &a.nlas)
            .find_map(|nla| match nla {
                GenlCtrlAttrs::FamilyId(id) => Some(*id),
                _ => None,
            })
            .ok_or(IpvsError::NoIpvs)?;
        Ok(this)
    }

    fn next_seq(&self) -> u32 {
        let seq = self.seq.get().wrapping_add(1);
        self.seq.set(seq);
        seq
    }

    fn send(&self, buf: &[u8], request: &str) -> Result<(), IpvsError> {
        self.socket
            .send(buf, 0)
            .map(drop)
            .map_err(|source| IpvsError::Io { request: request.to_owned(), source })
    }

    /// The answers to request `seq`: until `NLMSG_DONE` for a dump, until the acknowledgement
    /// otherwise.
    fn receive<F>(&self, seq: u32, dump: bool, request: &str) -> Result<Vec<F>, IpvsError>
    where
        F: ParseableParametrized<[u8], GenlHeader> + fmt::Debug,
    {
        let mut answers = Vec::new();
        loop {
            let (buf, _) = self
                .socket
                .recv_from_full()
                .map_err(|source| IpvsError::Io { request: request.to_owned(), source })?;
            let mut offset = 0;
            while offset < buf.len() {
                let decode = |reason: String| IpvsError::Decode { request: request.to_owned(), reason };
                let message = NetlinkMessage::<GenlMessage<F>>::deserialize(&buf[offset..])
                    .map_err(|e| decode(e.to_string()))?;
                let length = message.header.length as usize;
                if length == 0 {
                    return Err(decode("a message of length 0".into()));
                }
                offset += length.next_multiple_of(4);
                if message.header.sequence_number != seq {
                    continue;
                }
                match message.payload {
                    NetlinkPayload::InnerMessage(m) => answers.push(m.payload),
                    NetlinkPayload::Error(e) if e.code.is_some() => {
                        return Err(IpvsError::Kernel { request: request.to_owned(), source: e.to_io() });
                    }
                    NetlinkPayload::Error(_) if !dump => return Ok(answers),
                    NetlinkPayload::Done(_) => return Ok(answers),
                    _ => {}
                }
            }
        }
    }
}

impl Transport for IpvsSocket {
    fn request(&self, message: &IpvsMessage, dump: bool) -> Result<Vec<IpvsMessage>, IpvsError> {
        let request = describe(message);
        let seq = self.next_seq();
        self.send(&message.to_bytes(self.family, seq, dump), &request)?;
        self.receive::<IpvsMessage>(seq, dump, &request)
    }
}

/// A request as ipvsadm would say it, for error messages.
pub fn describe(message: &IpvsMessage) -> String {
    let service = message.service_id().map(|s| s.to_string()).unwrap_or_default();
    let dest = message
        .dest(matches!(message.service_id(), Ok(ServiceId::Addr { addr: IpAddr::V6(_), .. })))
        .map(|d| match d.addr {
            IpAddr::V4(a) => format!(" real server {a}:{}", d.port),
            IpAddr::V6(a) => format!(" real server [{a}]:{}", d.port),
        })
        .unwrap_or_default();
    let verb = match message.command {
        Command::NewService => "adding IPVS service",
        Command::SetService => "changing IPVS service",
        Command::DelService => "deleting IPVS service",
        Command::GetService => "listing IPVS services",
        Command::NewDest => "adding to IPVS service",
        Command::SetDest => "changing in IPVS service",
        Command::DelDest => "deleting from IPVS service",
        Command::GetDest => "listing the real servers of IPVS service",
        Command::SetConfig => "setting the IPVS timeouts",
        Command::GetConfig => "reading the IPVS timeouts",
        Command::Flush => "flushing IPVS",
    };
    format!("{verb} {service}{dest}").trim_end().to_owned()
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    //! Expected bytes are written from `include/uapi/linux/ip_vs.h` and `linux/netlink.h`:
    //! `nlmsghdr` (len, type, flags, seq, pid), `genlmsghdr` (cmd, version, reserved), then
    //! attributes (`nla_len`, `nla_type`, value padded to 4). Host byte order is little-endian.

    use super::*;

    const FAMILY: u16 = 0x25;

    fn tcp_service() -> IpvsService {
        IpvsService {
            id: ServiceId::Addr { addr: "10.0.0.1".parse().unwrap(), port: 80, protocol: 6 },
            scheduler: "wlc".into(),
            flags: 0,
            timeout: 0,
            prefix: 32,
            stats: Stats::default(),
        }
    }

    /// `nlmsghdr` for a message of `len` bytes.
    fn header(len: u32, flags: u16, seq: u32) -> Vec<u8> {
        let mut b = len.to_le_bytes().to_vec();
        b.extend(FAMILY.to_le_bytes());
        b.extend(flags.to_le_bytes());
        b.extend(seq.to_le_bytes());
        b.extend([0; 4]);
        b
    }

    /// `IPVS_SVC_ATTR_AF`, `PROTOCOL`, `ADDR`, `PORT` of TCP 10.0.0.1:80.
    const TCP_10_0_0_1_80: [u8; 44] = [
        6, 0, 1, 0, 2, 0, 0, 0, // AF_INET
        6, 0, 2, 0, 6, 0, 0, 0, // IPPROTO_TCP
        20, 0, 3, 0, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // nf_inet_addr
        6, 0, 4, 0, 0, 80, 0, 0, // port, network order
    ];

    #[test]
    fn new_service_bytes() {
        let mut want = header(104, 0x0005, 7); // NLM_F_REQUEST | NLM_F_ACK
        want.extend([1, 1, 0, 0]); // IPVS_CMD_NEW_SERVICE, version 1
        want.extend([84, 0, 1, 0x80]); // IPVS_CMD_ATTR_SERVICE | NLA_F_NESTED
        want.extend(TCP_10_0_0_1_80);
        want.extend([8, 0, 6, 0, b'w', b'l', b'c', 0]); // SCHED_NAME
        want.extend([12, 0, 7, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]); // FLAGS {flags, mask}
        want.extend([8, 0, 8, 0, 0, 0, 0, 0]); // TIMEOUT
        want.extend([8, 0, 9, 0, 0xff, 0xff, 0xff, 0xff]); // NETMASK 255.255.255.255
        assert_eq!(IpvsMessage::new_service(&tcp_service()).to_bytes(FAMILY, 7, false), want);
    }

    #[test]
    fn persistent_one_packet_service_bytes() {
        let mut service = tcp_service();
        service.id = ServiceId::Addr { addr: "10.0.0.1".parse().unwrap(), port: 80, protocol: 17 };
        service.scheduler = "sh".into();
        service.flags = SVC_F_PERSISTENT | SVC_F_ONEPACKET | SVC_F_SCHED2 | SVC_F_HASHED;
        service.timeout = 300;
        service.prefix = 24;
        let bytes = IpvsMessage::set_service(&service).to_bytes(FAMILY, 1, false);
        assert_eq!(bytes[16], 2, "IPVS_CMD_SET_SERVICE");
        let tail: Vec<u8> = [
            &[7, 0, 6, 0, b's', b'h', 0, 0][..], // nla_len leaves out the padding
            &[12, 0, 7, 0, 0x15, 0, 0, 0, 0xff, 0xff, 0xff, 0xff], // HASHED is the kernel's
            &[8, 0, 8, 0, 0x2c, 0x01, 0, 0],     // 300 s
            &[8, 0, 9, 0, 0xff, 0xff, 0xff, 0x00], // 255.255.255.0
        ]
        .concat();
        assert!(bytes.ends_with(&tail), "{bytes:02x?}");
        assert_eq!(bytes[24 + 12], 17, "IPPROTO_UDP");
    }

    #[test]
    fn ipv6_dest_bytes() {
        let service = ServiceId::Addr { addr: "2001:db8::1".parse().unwrap(), port: 443, protocol: 17 };
        let mut dest = IpvsDest::new("2001:db8::10".parse().unwrap(), 8443, ForwardMethod::DirectRoute, 3);
        dest.upper_threshold = 100;
        dest.lower_threshold = 10;
        let mut want = header(132, 0x0005, 2);
        want.extend([5, 1, 0, 0]); // IPVS_CMD_NEW_DEST
        want.extend([48, 0, 1, 0x80]);
        want.extend([6, 0, 1, 0, 10, 0, 0, 0]); // AF_INET6
        want.extend([6, 0, 2, 0, 17, 0, 0, 0]);
        want.extend([20, 0, 3, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        want.extend([6, 0, 4, 0, 0x01, 0xbb, 0, 0]); // 443
        want.extend([64, 0, 2, 0x80]); // IPVS_CMD_ATTR_DEST | NLA_F_NESTED
        want.extend([20, 0, 1, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10]);
        want.extend([6, 0, 2, 0, 0x20, 0xfb, 0, 0]); // 8443
        want.extend([8, 0, 3, 0, 3, 0, 0, 0]); // IP_VS_CONN_F_DROUTE
        want.extend([8, 0, 4, 0, 3, 0, 0, 0]); // weight
        want.extend([8, 0, 5, 0, 100, 0, 0, 0]); // u_thresh
        want.extend([8, 0, 6, 0, 10, 0, 0, 0]); // l_thresh
        assert_eq!(IpvsMessage::new_dest(&service, &dest).to_bytes(FAMILY, 2, false), want);
    }

    #[test]
    fn del_dest_and_dumps_bytes() {
        let service = tcp_service().id;
        let dest = IpvsDest::new("10.0.1.2".parse().unwrap(), 8080, ForwardMethod::Masq, 0);
        let mut want = header(100, 0x0005, 3);
        want.extend([7, 1, 0, 0]); // IPVS_CMD_DEL_DEST
        want.extend([48, 0, 1, 0x80]);
        want.extend(TCP_10_0_0_1_80);
        want.extend([32, 0, 2, 0x80]);
        want.extend([20, 0, 1, 0, 10, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        want.extend([6, 0, 2, 0, 0x1f, 0x90, 0, 0]);
        assert_eq!(IpvsMessage::del_dest(&service, &dest).to_bytes(FAMILY, 3, false), want);

        let mut want = header(20, 0x0005, 6); // NLM_F_REQUEST | NLM_F_ACK, no attribute
        want.extend([17, 1, 0, 0]); // IPVS_CMD_FLUSH, version 1
        assert_eq!(IpvsMessage::flush().to_bytes(FAMILY, 6, false), want);
        assert_eq!(IpvsMessage::from_bytes(&want).unwrap().command, Command::Flush);

        let mut want = header(20, 0x0301, 4); // NLM_F_REQUEST | NLM_F_DUMP
        want.extend([4, 1, 0, 0]); // IPVS_CMD_GET_SERVICE
        assert_eq!(IpvsMessage::get_services().to_bytes(FAMILY, 4, true), want);

        let mut want = header(68, 0x0301, 5);
        want.extend([8, 1, 0, 0, 48, 0, 1, 0x80]); // IPVS_CMD_GET_DEST, the service
        want.extend(TCP_10_0_0_1_80);
        assert_eq!(IpvsMessage::get_dests(&service).to_bytes(FAMILY, 5, true), want);
    }

    #[test]
    fn set_timeouts_bytes() {
        let mut want = header(44, 0x0005, 9);
        want.extend([12, 1, 0, 0]); // IPVS_CMD_SET_CONFIG
        want.extend([8, 0, 4, 0, 0x84, 0x03, 0, 0]); // TIMEOUT_TCP 900
        want.extend([8, 0, 5, 0, 120, 0, 0, 0]); // TIMEOUT_TCP_FIN
        want.extend([8, 0, 6, 0, 0x2c, 0x01, 0, 0]); // TIMEOUT_UDP 300
        let timeouts = Timeouts { tcp: 900, tcp_fin: 120, udp: 300 };
        let bytes = IpvsMessage::set_timeouts(&timeouts).to_bytes(FAMILY, 9, false);
        assert_eq!(bytes, want);
        assert_eq!(IpvsMessage::from_bytes(&bytes).unwrap().timeouts().unwrap(), timeouts);
    }

    /// A service as the kernel dumps it (`ip_vs_genl_fill_service`), with 64-bit counters.
    #[test]
    fn parses_a_dumped_service() {
        let mut stats64 = vec![];
        for (kind, value) in [(1u16, 5u64), (2, 40), (3, 30), (4, 4000), (5, 9000)] {
            stats64.extend([12, 0]);
            stats64.extend(kind.to_le_bytes());
            stats64.extend(value.to_le_bytes());
        }
        let mut svc = TCP_10_0_0_1_80.to_vec();
        svc.extend([8, 0, 6, 0, b'r', b'r', 0, 0]);
        svc.extend([12, 0, 7, 0, 3, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]); // PERSISTENT | HASHED
        svc.extend([8, 0, 8, 0, 60, 0, 0, 0]);
        svc.extend([8, 0, 9, 0, 0xff, 0xff, 0, 0]); // 255.255.0.0
        svc.extend([(stats64.len() + 4) as u8, 0, 12, 0x80]); // STATS64
        svc.extend(&stats64);
        let len = 16 + 4 + 4 + svc.len();
        let mut bytes = header(len as u32, 0x0002, 4); // NLM_F_MULTI
        bytes.extend([1, 1, 0, 0]);
        bytes.extend([(svc.len() + 4) as u8, 0, 1, 0x80]);
        bytes.extend(&svc);
        let service = IpvsMessage::from_bytes(&bytes).unwrap().service().unwrap();
        assert_eq!(service.id, tcp_service().id);
        assert_eq!(service.scheduler, "rr");
        assert_eq!(service.flags, SVC_F_PERSISTENT | SVC_F_HASHED);
        assert_eq!((service.timeout, service.prefix), (60, 16));
        let want = Stats { conns: 5, in_packets: 40, out_packets: 30, in_bytes: 4000, out_bytes: 9000 };
        assert_eq!(service.stats, want);
    }

    /// A destination as the kernel dumps it (`ip_vs_genl_fill_dest`), with the 32-bit `STATS`
    /// of older kernels (byte counters are 64-bit there too).
    #[test]
    fn parses_a_dumped_dest() {
        let mut dest = vec![];
        dest.extend([20, 0, 1, 0, 10, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        dest.extend([6, 0, 2, 0, 0x1f, 0x90, 0, 0]);
        dest.extend([8, 0, 3, 0, 2, 0, 0, 0]); // TUNNEL
        dest.extend([8, 0, 4, 0, 7, 0, 0, 0]);
        dest.extend([8, 0, 7, 0, 11, 0, 0, 0]); // active
        dest.extend([8, 0, 8, 0, 12, 0, 0, 0]); // inactive
        dest.extend([8, 0, 9, 0, 13, 0, 0, 0]); // persistent
        dest.extend([32, 0, 10, 0x80]); // STATS
        dest.extend([8, 0, 1, 0, 2, 0, 0, 0]);
        dest.extend([8, 0, 2, 0, 9, 0, 0, 0]);
        dest.extend([12, 0, 4, 0, 0xe8, 0x03, 0, 0, 0, 0, 0, 0]);
        dest.extend([8, 0, 99, 0, 1, 1, 1, 1]); // an attribute from a newer kernel
        let mut bytes = header((16 + 4 + 4 + dest.len()) as u32, 0x0002, 5);
        bytes.extend([5, 1, 0, 0]);
        bytes.extend([(dest.len() + 4) as u8, 0, 2, 0x80]);
        bytes.extend(&dest);
        let dest = IpvsMessage::from_bytes(&bytes).unwrap().dest(false).unwrap();
        assert_eq!((dest.addr, dest.port), ("10.0.1.2".parse().unwrap(), 8080));
        assert_eq!((dest.method, dest.weight), (ForwardMethod::Tunnel, 7));
        assert_eq!((dest.active_conns, dest.inactive_conns, dest.persistent_conns), (11, 12, 13));
        assert_eq!(dest.stats, Stats { conns: 2, in_packets: 9, in_bytes: 1000, ..Stats::default() });
    }

    #[test]
    fn ipv6_netmask_is_a_prefix_length_and_round_trips() {
        let mut service = tcp_service();
        service.id = ServiceId::Addr { addr: "2001:db8::1".parse().unwrap(), port: 0, protocol: 6 };
        service.prefix = 64;
        service.flags = SVC_F_PERSISTENT;
        service.timeout = 10;
        let bytes = IpvsMessage::new_service(&service).to_bytes(FAMILY, 1, false);
        assert!(bytes.ends_with(&[8, 0, 9, 0, 64, 0, 0, 0]));
        assert_eq!(IpvsMessage::from_bytes(&bytes).unwrap().service().unwrap(), service);
    }

    #[test]
    fn malformed_answers_are_errors() {
        let mut bytes = header(32, 0x0002, 4);
        bytes.extend([1, 1, 0, 0, 12, 0, 1, 0x80, 6, 0, 1, 0, 2, 0, 0, 0]); // AF only
        let message = IpvsMessage::from_bytes(&bytes).unwrap();
        assert!(message.service().unwrap_err().to_string().contains("address"));
        let mut bytes = header(20, 0, 4);
        bytes.extend([99, 1, 0, 0]);
        assert!(IpvsMessage::from_bytes(&bytes).is_err(), "unknown command");
        let mut bytes = header(28, 0, 4);
        bytes.extend([1, 1, 0, 0, 40, 0, 1, 0]); // attribute longer than the message
        assert!(IpvsMessage::from_bytes(&bytes).is_err());
    }
}
