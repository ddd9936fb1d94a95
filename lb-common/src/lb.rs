//! The load balancer's tables: virtual services, real servers, scheduling slots, local address
//! pools (FNAT), connections and persistence.
//!
//! Addresses are stored as four `u32` words in network byte order (the bytes as on the wire);
//! an IPv4 address uses the first word and leaves the others zero. Ports are in network byte
//! order too, so the XDP program compares and copies them without swapping.
//!
//! Id 0 is "none" in every table: service ids and real ids start at 1.

/// Capacity of the service table (virtual services, one per VIP:port:protocol).
pub const MAX_SERVICES: u32 = 1024;
/// Capacity of the real server table (across all services).
pub const MAX_REALS: u32 = 131_072;
/// Scheduling slots per service: a prime, as Maglev wants (RFC-less, Eisenbud et al. 2016).
pub const SLOTS_PER_SERVICE: u32 = 4093;
/// Local addresses per FNAT pool.
pub const MAX_LADDRS_PER_GROUP: u32 = 64;
/// Capacity of the FNAT local address pools.
pub const MAX_LADDR_GROUPS: u32 = 64;
/// Default capacity of the connection table (entries; each flow takes two in NAT and FNAT).
pub const DEFAULT_MAX_CONNS: u32 = 262_144;
/// Most reals scanned by the least-connection schedulers for one new flow.
pub const MAX_LC_SCAN: u32 = 256;

/// `family` values.
pub mod family {
    /// IPv4.
    pub const IPV4: u8 = 4;
    /// IPv6.
    pub const IPV6: u8 = 6;
}

/// How a service forwards to its real servers (`lb_kind` / `lvs_method`).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[doc(alias = "lb_kind")]
pub enum Method {
    /// Destination NAT; the LB is the real servers' gateway and translates replies back.
    Nat = 0,
    /// Direct routing: only the destination MAC changes; real servers hold the VIP on lo.
    Dr = 1,
    /// IP-in-IP (or IPv6-in-IPv6) tunnel to the real server.
    Tun = 2,
    /// Full NAT: source from a local address pool, destination to the real server.
    Fnat = 3,
}

impl Method {
    /// From its `u8` value, as stored in [`Service::method`].
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::Nat),
            1 => Some(Self::Dr),
            2 => Some(Self::Tun),
            3 => Some(Self::Fnat),
            _ => None,
        }
    }
}

/// How a service picks a real server for a new flow (`lb_algo` / `lvs_sched`).
///
/// The hash and round-robin schedulers read a slot row that user space fills (weights
/// applied); the least-connection ones scan the row's reals and their active counts.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[doc(alias = "lb_algo")]
pub enum Scheduler {
    /// Round robin (and weighted round robin: the row repeats reals by weight, interleaved).
    RoundRobin = 0,
    /// Least connections (wlc with equal weights).
    LeastConn = 1,
    /// Weighted least connections.
    WeightedLeastConn = 2,
    /// Source hashing: the row is a weighted ring indexed by a hash of the client address.
    SourceHash = 3,
    /// Destination hashing: as `SourceHash`, by the destination address.
    DestinationHash = 4,
    /// Locality-based least connections: the destination's last real unless overloaded.
    LocalityLeastConn = 5,
    /// Maglev: the row is a Maglev lookup table indexed by the 5-tuple hash.
    Maglev = 6,
}

impl Scheduler {
    /// From its `u8` value, as stored in [`Service::scheduler`].
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::RoundRobin),
            1 => Some(Self::LeastConn),
            2 => Some(Self::WeightedLeastConn),
            3 => Some(Self::SourceHash),
            4 => Some(Self::DestinationHash),
            5 => Some(Self::LocalityLeastConn),
            6 => Some(Self::Maglev),
            _ => None,
        }
    }
}

/// Key of the service table: what a client connects to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[doc(alias = "virtual_server")]
pub struct ServiceKey {
    /// The VIP.
    pub addr: [u32; 4],
    /// The port (network order); 0 matches every port of the VIP.
    pub port: u16,
    /// IP protocol: 6 TCP, 17 UDP (132 SCTP is not forwarded).
    pub proto: u8,
    /// [`family::IPV4`] or [`family::IPV6`].
    pub family: u8,
}

/// Service flags.
pub mod service_flags {
    /// Clients stick to a real server for `persistence_timeout` seconds.
    pub const PERSISTENT: u16 = 1 << 0;
    /// One-packet scheduling (`ops`): every UDP datagram is scheduled anew, nothing tracked.
    pub const ONE_PACKET: u16 = 1 << 1;
    /// Hash schedulers include the source port (`sh-port` / `mh-port`).
    pub const HASH_PORT: u16 = 1 << 2;
    /// SYN proxy (`syn_proxy`, NAT and FNAT TCP services): the XDP program answers SYNs with
    /// SYN cookies and opens the connection to the real server only for a valid ACK.
    pub const SYN_PROXY: u16 = 1 << 3;
}

/// A virtual service.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Service {
    /// Its id: its row in the slot table and its index in the service counters (1-based).
    pub id: u32,
    /// Entries used in its slot row (0: no real available).
    pub slots_len: u32,
    /// Persistence timeout in seconds (with [`service_flags::PERSISTENT`]).
    pub persistence_timeout: u32,
    /// Client address mask for persistence (`persistence_granularity`).
    pub persistence_mask: [u32; 4],
    /// FNAT local address pool (row of the laddr table, 1-based; 0 none).
    pub laddr_group: u32,
    /// Real server used when none is available (`sorry_server`; 0 none).
    pub sorry_real: u32,
    /// [`service_flags`].
    pub flags: u16,
    /// [`Method`] as `u8`.
    pub method: u8,
    /// [`Scheduler`] as `u8`.
    pub scheduler: u8,
}

/// A real server, in the real table at its id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[doc(alias = "real_server")]
pub struct Real {
    /// Its address.
    pub addr: [u32; 4],
    /// Source of the outer header for TUN (the LB's address towards it).
    pub tunnel_source: [u32; 4],
    /// Its port (network order); 0 keeps the client's destination port.
    pub port: u16,
    /// [`family::IPV4`] or [`family::IPV6`].
    pub family: u8,
    /// Reserved, zero.
    pub pad: u8,
    /// Weight; 0 takes no new flows (existing ones continue).
    pub weight: u32,
}

/// Key of a tracked flow: the packet's own 5-tuple, in the direction it travels.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Source address.
    pub src: [u32; 4],
    /// Destination address.
    pub dst: [u32; 4],
    /// Source port (network order; ICMP echo: the identifier).
    pub sport: u16,
    /// Destination port (network order).
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// Address family.
    pub family: u8,
    /// Reserved, zero.
    pub pad: u16,
}

/// Key of the IPv4 connection table: an IPv4 packet's [`FlowKey`] in 16 bytes, so that an
/// established IPv4 packet hashes and compares 16 bytes, not 40. IPv6 flows keep the wide table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey4 {
    /// Source address (network order in memory).
    pub src: u32,
    /// Destination address.
    pub dst: u32,
    /// Source port (network order; ICMP echo: the identifier).
    pub sport: u16,
    /// Destination port (network order).
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// Reserved, zero.
    pub pad: u8,
    /// Reserved, zero.
    pub pad2: u16,
}

impl FlowKey4 {
    /// The narrow key of an IPv4 flow's wide key (the first word of each address).
    #[inline(always)]
    pub const fn of(key: &FlowKey) -> Self {
        Self {
            src: key.src[0],
            dst: key.dst[0],
            sport: key.sport,
            dport: key.dport,
            proto: key.proto,
            pad: 0,
            pad2: 0,
        }
    }
}

/// Which way a tracked flow entry translates.
pub mod direction {
    /// Client to VIP: schedule to `real`, rewrite per the method.
    pub const ORIGINAL: u8 = 0;
    /// Real server to client (NAT) or to the local address (FNAT): translate back.
    pub const REPLY: u8 = 1;
}

/// TCP states the connection table distinguishes (for timeouts and active counts).
pub mod tcp_state {
    /// Not TCP.
    pub const NONE: u8 = 0;
    /// SYN seen, handshake not complete.
    pub const SYN: u8 = 1;
    /// Handshake complete (an ACK after the SYN).
    pub const ESTABLISHED: u8 = 2;
    /// FIN or RST seen: closing.
    pub const CLOSING: u8 = 3;
}

/// A tracked flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    /// Last packet, `bpf_ktime_get_coarse_ns` (CLOCK_MONOTONIC at tick resolution).
    pub last_seen_ns: u64,
    /// The real server.
    pub real: u32,
    /// The service.
    pub service: u32,
    /// ORIGINAL: the FNAT local address. REPLY: the VIP (new source).
    pub nat_addr: [u32; 4],
    /// REPLY in FNAT: the client address (new destination).
    pub client_addr: [u32; 4],
    /// ORIGINAL: the FNAT local port. REPLY: the VIP port (new source port).
    pub nat_port: u16,
    /// REPLY in FNAT: the client port (new destination port).
    pub client_port: u16,
    /// [`direction`].
    pub direction: u8,
    /// [`tcp_state`].
    pub tcp_state: u8,
    /// [`Method`] as `u8`.
    pub method: u8,
    /// [`synproxy_state`]: whether the flow was opened by the SYN proxy, and how far.
    pub synproxy: u8,
    /// SYN proxy: the LB's initial sequence number towards the client (the SYN cookie).
    pub syn_cookie: u32,
    /// SYN proxy, once the real server answered: its initial sequence number minus
    /// `syn_cookie`, subtracted from the sequence numbers of replies and added to the
    /// acknowledgement numbers of the client's packets (wrapping).
    pub seq_offset: u32,
}

/// A slot of the XDP program's flow cache (`LBD_FLOW_CACHE`, per CPU, not pinned): a copy of
/// an established flow's entry in the connection table, found by a hash of its key that the
/// program computes, so that its packets are sent without a hash table lookup. The full path
/// fills a slot and empties it when the flow's state changes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCacheSlot {
    /// The flow's key; protocol 0: an empty slot.
    pub key: FlowKey4,
    /// The [`Settings::generation`] it was filled in: a slot of another one is a miss.
    pub generation: u32,
    /// Reserved, zero.
    pub pad: u32,
    /// Until when (the program's clock, ns) it serves packets before the full path looks
    /// the flow up again and refreshes its entry's `last_seen_ns`.
    pub until_ns: u64,
    /// The flow's entry, as the full path last saw it.
    pub flow: Flow,
}

/// A slot of the XDP program's IPv6 flow cache (`LBD_FLOW_CACHE6`, per CPU, not pinned): as
/// [`FlowCacheSlot`], with the whole key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCacheSlot6 {
    /// The flow's key; protocol 0: an empty slot.
    pub key: FlowKey,
    /// The [`Settings::generation`] it was filled in: a slot of another one is a miss.
    pub generation: u32,
    /// Reserved, zero.
    pub pad: u32,
    /// Until when (the program's clock, ns) it serves packets before the full path looks
    /// the flow up again.
    pub until_ns: u64,
    /// The flow's entry, as the full path last saw it.
    pub flow: Flow,
}

/// [`Flow::synproxy`] values.
pub mod synproxy_state {
    /// Not opened by the SYN proxy: nothing to shift.
    pub const NONE: u8 = 0;
    /// The SYN went to the real server; its SYN-ACK has not come back. The client's packets
    /// are dropped meanwhile (it retransmits them).
    pub const AWAITING_REAL: u8 = 1;
    /// The real server answered: sequence numbers are shifted by [`super::Flow::seq_offset`].
    pub const SHIFTING: u8 = 2;
}

/// The SYN cookie secret (one entry, pinned: cookies sent before a daemon restart stay valid
/// after it). All zero: not set yet, and the SYN proxy is off.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynProxySecret {
    /// SipHash-2-4 key.
    pub key: [u64; 2],
}

/// Key of the persistence table: a service and a (masked) client address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PersistKey {
    /// The client address, masked by the service's persistence mask.
    pub client: [u32; 4],
    /// The service.
    pub service: u32,
}

/// Key of the lblc table: a service and a destination address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LblcKey {
    /// The destination address.
    pub dst: [u32; 4],
    /// The service.
    pub service: u32,
}

/// A persistence entry: which real a client sticks to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Persist {
    /// Last use, `bpf_ktime_get_coarse_ns`.
    pub last_seen_ns: u64,
    /// The real server.
    pub real: u32,
    /// Reserved, zero.
    pub pad: u32,
}

/// An FNAT local address (`local_address_group`), in the laddr table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[doc(alias = "local_address_group")]
pub struct LocalAddr {
    /// The address.
    pub addr: [u32; 4],
    /// [`family::IPV4`] or [`family::IPV6`]; 0 marks an unused slot.
    pub family: u8,
    /// Reserved, zero.
    pub pad: [u8; 3],
}

/// Global settings the daemon writes (one entry).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[doc(alias = "lvs_timeouts")]
pub struct Settings {
    /// Established TCP timeout, seconds (`lvs_timeouts tcp`; IPVS default 900).
    pub tcp_timeout: u32,
    /// TCP timeout after FIN/RST, seconds (`lvs_timeouts tcpfin`; IPVS default 120).
    pub tcp_fin_timeout: u32,
    /// UDP timeout, seconds (`lvs_timeouts udp`; IPVS default 300).
    pub udp_timeout: u32,
    /// Timeout of a TCP flow whose handshake has not completed, seconds.
    pub tcp_syn_timeout: u32,
    /// First FNAT local port.
    pub fnat_port_min: u16,
    /// Last FNAT local port.
    pub fnat_port_max: u16,
    /// Non-zero once the daemon has written the tables: until then every packet passes.
    pub ready: u32,
    /// Non-zero: FNAT adds the client's address to the ACK that completes a TCP handshake
    /// (the TOA option, as Alibaba's FNAT; `lbd_fnat_toa`).
    pub fnat_toa: u32,
    /// Bumped by the daemon on every apply that writes services or real servers: the XDP
    /// program's flow caches ([`FlowCacheSlot`], [`FlowCacheSlot6`]) serve only slots of the
    /// current generation.
    pub generation: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            tcp_timeout: 900,
            tcp_fin_timeout: 120,
            udp_timeout: 300,
            tcp_syn_timeout: 60,
            fnat_port_min: 1024,
            fnat_port_max: 65535,
            ready: 0,
            fnat_toa: 1,
            generation: 0,
        }
    }
}

/// Per-service counters (per CPU; the daemon sums them).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceStats {
    /// Packets to the VIP.
    pub packets: u64,
    /// Bytes to the VIP.
    pub bytes: u64,
    /// Flows scheduled.
    pub new_conns: u64,
    /// Packets dropped for want of an available real server.
    pub no_real: u64,
}

/// Per-real counters (per CPU; the daemon sums them).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RealStats {
    /// Packets forwarded to it.
    pub packets: u64,
    /// Bytes forwarded to it.
    pub bytes: u64,
    /// Flows scheduled to it.
    pub new_conns: u64,
    /// Flows closed (FIN/RST seen): active = new_conns - closed_conns.
    pub closed_conns: u64,
}

/// `[u32; 4]` words of an IPv4 address (network order in memory).
pub const fn ipv4_words(octets: [u8; 4]) -> [u32; 4] {
    [u32::from_ne_bytes(octets), 0, 0, 0]
}

/// `[u32; 4]` words of an IPv6 address (network order in memory).
pub const fn ipv6_words(o: [u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([o[0], o[1], o[2], o[3]]),
        u32::from_ne_bytes([o[4], o[5], o[6], o[7]]),
        u32::from_ne_bytes([o[8], o[9], o[10], o[11]]),
        u32::from_ne_bytes([o[12], o[13], o[14], o[15]]),
    ]
}

/// The bytes of address words.
pub const fn words_octets(w: [u32; 4]) -> [u8; 16] {
    let [a, b, c, d] = [w[0].to_ne_bytes(), w[1].to_ne_bytes(), w[2].to_ne_bytes(), w[3].to_ne_bytes()];
    [a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3], c[0], c[1], c[2], c[3], d[0], d[1], d[2], d[3]]
}

#[cfg(feature = "user")]
mod pod {
    //! aya::Pod for the map types: each is #[repr(C)], made only of integers and arrays of
    //! them, with every padding byte an explicit field, so every bit pattern is a valid value.
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for super::ServiceKey {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for super::Service {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for super::Real {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for super::FlowKey {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for super::FlowKey4 {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for super::Flow {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for super::FlowCacheSlot {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for super::FlowCacheSlot6 {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for super::PersistKey {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for super::Persist {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for super::LblcKey {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for super::LocalAddr {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for super::Settings {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for super::ServiceStats {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for super::RealStats {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for super::SynProxySecret {}
}

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    use super::*;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<ServiceKey>(), 20);
        assert_eq!(size_of::<Service>(), 4 * 3 + 16 + 4 * 2 + 2 + 1 + 1);
        assert_eq!(size_of::<Real>(), 16 + 16 + 2 + 1 + 1 + 4);
        assert_eq!(size_of::<FlowKey>(), 40);
        assert_eq!(size_of::<FlowKey4>(), 16);
        assert_eq!(size_of::<Flow>(), 8 + 4 + 4 + 16 + 16 + 2 + 2 + 4 + 8);
        assert_eq!(size_of::<SynProxySecret>(), 16);
        assert_eq!(size_of::<PersistKey>(), 20);
        assert_eq!(size_of::<Persist>(), 16);
        assert_eq!(size_of::<LocalAddr>(), 20);
        assert_eq!(size_of::<Settings>(), 4 * 4 + 2 * 2 + 4 + 4 + 4);
        assert_eq!(size_of::<FlowCacheSlot>(), 16 + 4 + 4 + 8 + size_of::<Flow>());
        assert_eq!(core::mem::offset_of!(FlowCacheSlot, flow), 32);
        assert_eq!(size_of::<FlowCacheSlot6>(), 40 + 4 + 4 + 8 + size_of::<Flow>());
    }

    #[test]
    fn address_words_round_trip() {
        let v6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(words_octets(ipv6_words(v6)), v6);
        let v4 = words_octets(ipv4_words([10, 0, 0, 1]));
        assert_eq!(&v4[..4], &[10, 0, 0, 1]);
        assert!(v4[4..].iter().all(|b| *b == 0));
    }

    #[test]
    fn enums_round_trip_through_u8() {
        for m in [Method::Nat, Method::Dr, Method::Tun, Method::Fnat] {
            assert_eq!(Method::from_u8(m as u8), Some(m));
        }
        for s in 0..7u8 {
            assert_eq!(Scheduler::from_u8(s).map(|s| s as u8), Some(s));
        }
        assert_eq!(Scheduler::from_u8(7), None);
    }
}
