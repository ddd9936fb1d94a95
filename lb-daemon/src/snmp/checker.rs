//! The checker child's part of KEEPALIVED-MIB (`enable_snmp_checker`), as keepalived 2.2.7's
//! checker serves it: a pure function from the configuration and the checkers' published
//! [`ServiceStatus`] to the objects under `check` (`.9586.100.5.3`), and the notifications a
//! change sends.
//!
//! - virtualServerGroupTable (1) and virtualServerGroupMemberTable (2): the
//!   `virtual_server_group`s, their members listed fwmarks first, then addresses and ranges, in
//!   configuration order (keepalived keeps them in two lists);
//! - virtualServerTable (3), by the virtual server's place in the configuration;
//! - realServerTable (4), by (virtual server, real server), the `sorry_server` first when there
//!   is one (keepalived's index 1 of its virtual server);
//! - lvsSyncDaemon (6): whether `lvs_sync_daemon` runs, its interface and instance;
//! - the notifications (5) realServerStateChange and virtualServerQuorumStateChange, the latter
//!   also once per virtual server when the checkers start; at an orderly stop, as keepalived,
//!   each alive real server's death, then each quorum as shutdown(3);
//! - and, when the VRRP child does not serve them, the global scalars (`.9586.100.5.1`).
//!
//! The values follow a walk of keepalived 2.2.7's checker with the same configuration (it ran
//! under `tests/bench/ipvs-shim.c`, this kernel having no IPVS: `testdata/keepalived-check-walk.txt`,
//! and the live comparison of `tests/tests/check_snmp.rs`).
//!
//! The columns keepalived reads from IPVS's counters come from lbd's data plane's own
//! counters, which the daemon hands over every second ([`Counters`]), summed over a group's
//! services: connections scheduled (virtualServerStatsConns / Conns64, realServerStatsConns),
//! packets and bytes from clients (…StatsInPkts / InPkts64, …StatsInBytes) and a real server's
//! open connections (realServerStatsActiveConns). **Left out**, the data plane not counting
//! them: the reply direction (…OutPkts, …OutBytes), inactive and persistent connections, and
//! the rates (virtualServerRate*, realServerRate*): absent rather than zeros that would look
//! like an idle service. The tunnel columns (virtualServerTunnel*, realServerTunnel*, for
//! `lvs_method TUN` with a tunnel type) and `lvsTimeouts` (7) are not served either.

use std::{collections::HashMap, net::IpAddr};

use super::{
    agent::{self, Served},
    agentx::{Oid, Value, VarBind},
    mib::{Input, KEEPALIVED, Mib, Parts, SNMP_TRAP_OID, address_bytes, address_type, command, truth},
};
use crate::{
    check::status::{ChangeKind, CheckStatus, ServiceStatus},
    config::{
        Config,
        model::{
            Family, LbAlgo, LbKind, LvsMethod, Protocol, RealServer, VirtualServer, VsAddress, VsgEntry,
        },
    },
    dataplane::ServiceCounters,
};

/// `keepalived.check`: the checker's subtree.
pub const CHECK: &[u32] = &[1, 3, 6, 1, 4, 1, 9586, 100, 5, 3];

/// keepalived's `connect_timeout` default, in microseconds (virtualServerConnTimeoutUsec).
const CONNECT_TIMEOUT_USEC: u32 = 5_000_000;

/// What the checker child's agent answers from: the configuration and the checkers' status,
/// replaced on a reload.
#[derive(Debug, Clone)]
pub struct CheckerSource {
    /// The running configuration.
    pub config: std::sync::Arc<Config>,
    /// The checkers' published state.
    pub status: CheckStatus,
    /// `enable_traps`.
    pub traps: bool,
    /// Whether this agent serves the global scalars (the VRRP child does not).
    pub globals: bool,
    /// The data plane's counters, as the daemon last read them.
    pub counters: Counters,
}

/// The data plane's counters, handed from the daemon to the agent.
pub type Counters = tokio::sync::watch::Receiver<Vec<ServiceCounters>>;

/// One virtual server's or real server's counters, summed over the data plane's services.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    packets: u64,
    bytes: u64,
    conns: u64,
    active: u64,
}

impl Sums {
    fn add(&mut self, c: &crate::dataplane::Counters) {
        self.packets = self.packets.wrapping_add(c.packets);
        self.bytes = self.bytes.wrapping_add(c.bytes);
        self.conns = self.conns.wrapping_add(c.new_conns);
        self.active = self.active.wrapping_add(c.active_conns);
    }
}

/// The counters of virtual server `vs` (over its services) and of its real servers (`sorry`
/// first if it has one, then in configuration order).
fn sums(config: &Config, vs: &VirtualServer, counters: &[ServiceCounters]) -> (Sums, Vec<Sums>) {
    let services = crate::lvs::service_addresses(config, vs);
    let mut total = Sums::default();
    let sorry = vs.sorry_server.as_ref();
    let mut reals = vec![Sums::default(); vs.real_servers.len() + usize::from(sorry.is_some())];
    let first = usize::from(sorry.is_some());
    // Real server index by (address, port or None): one lookup per counted real, not a search.
    let mut index: HashMap<(IpAddr, Option<u16>), usize> = HashMap::with_capacity(vs.real_servers.len());
    for (r, rs) in vs.real_servers.iter().enumerate().rev() {
        index.insert((rs.address, rs.port), r);
    }
    for service in counters.iter().filter(|c| services.contains(&c.service)) {
        total.add(&service.counters);
        for real in &service.reals {
            let at = if real.sorry {
                sorry.is_some().then_some(0)
            } else {
                // A real server without a port takes its service's.
                let own = index.get(&(real.addr, Some(real.port)));
                let default =
                    (real.port == service.service.port).then(|| index.get(&(real.addr, None))).flatten();
                match (own, default) {
                    (Some(&a), Some(&b)) => Some(a.min(b)),
                    (a, b) => a.or(b).copied(),
                }
                .map(|r| r + first)
            };
            if let Some(slot) = at.and_then(|i| reals.get_mut(i)) {
                slot.add(&real.counters);
            }
        }
    }
    (total, reals)
}

/// An SNMP Counter32 / Gauge32 of a 64-bit count: its low 32 bits (as IPVS's 32-bit counters wrap).
fn low32(n: u64) -> u32 {
    (n & u64::from(u32::MAX)) as u32
}

/// What the checker child's agent remembers of its notifications.
#[derive(Debug, Default)]
pub struct CheckerMemory {
    /// The last change notified ([`crate::check::status::StatusChange::seq`]).
    last_seq: u64,
}

/// KEEPALIVED-MIB's virtualServerType: fwmark(1), ip(2), group(3).
fn vs_type(vs: &VirtualServer) -> i32 {
    match vs.address {
        VsAddress::Fwmark { .. } => 1,
        VsAddress::Ip { .. } => 2,
        VsAddress::Group { .. } => 3,
    }
}

/// tcp(1), udp(2), sctp(3).
fn protocol(vs: &VirtualServer) -> i32 {
    match vs.protocol.unwrap_or(Protocol::Tcp) {
        Protocol::Tcp => 1,
        Protocol::Udp => 2,
        Protocol::Sctp => 3,
    }
}

fn algorithm(algo: LbAlgo) -> i32 {
    match algo {
        LbAlgo::Rr => 1,
        LbAlgo::Wrr => 2,
        LbAlgo::Lc => 3,
        LbAlgo::Wlc => 4,
        LbAlgo::Lblc => 5,
        LbAlgo::Lblcr => 6,
        LbAlgo::Dh => 7,
        LbAlgo::Sh => 8,
        LbAlgo::Sed => 9,
        LbAlgo::Nq => 10,
        LbAlgo::Fo => 11,
        LbAlgo::Ovf => 12,
        LbAlgo::Mh => 13,
        LbAlgo::Twos => 14,
    }
}

/// nat(1), dr(2), tun(3); keepalived has no value for lbd's FNAT, and leaves the column out.
fn forwarding(method: Option<&LvsMethod>) -> Option<i32> {
    match method.map_or(LbKind::Nat, |m| m.kind) {
        LbKind::Nat => Some(1),
        LbKind::Dr => Some(2),
        LbKind::Tun => Some(3),
        LbKind::Fnat => None,
    }
}

fn secs(d: Option<std::time::Duration>) -> u32 {
    d.map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

fn usecs(d: Option<std::time::Duration>) -> u32 {
    d.map_or(0, |d| u32::try_from(d.as_micros()).unwrap_or(u32::MAX))
}

fn gauge(n: usize) -> Value {
    Value::Gauge32(u32::try_from(n).unwrap_or(u32::MAX))
}

/// A column of virtualServerEntry (3.1) or realServerEntry (4.1), without its index.
fn column(table: u32, col: u32) -> Vec<u32> {
    [CHECK, &[table, 1, col]].concat()
}

/// The virtual server's port, for real servers without one.
fn vs_port(vs: &VirtualServer) -> u16 {
    match vs.address {
        VsAddress::Ip { port, .. } => port.unwrap_or(0),
        _ => 0,
    }
}

/// Builds the checker's objects (and the global scalars, if `source.globals`) from the
/// checkers' `services` and the data plane's `counters`.
pub fn build(
    source: &CheckerSource,
    services: &[ServiceStatus],
    counters: &[ServiceCounters],
    router_id: &str,
    uptime: u32,
) -> Mib {
    let mut mib = Mib::default();
    let config = &*source.config;
    if source.globals {
        let input = Input { config, instances: &[], router_id, version: agent::VERSION, uptime };
        mib.global(&input, Parts { keepalived: true, traps: source.traps, ..Parts::default() });
    }
    groups(&mut mib, config);
    for ((vs, status), v) in config.virtual_servers.iter().zip(services).zip(1u32..) {
        let (total, reals) = sums(config, vs, counters);
        virtual_server(&mut mib, config, vs, status, v);
        virtual_server_counters(&mut mib, total, v);
        real_servers(&mut mib, vs, status, v);
        real_server_counters(&mut mib, &reals, v);
    }
    let sync = config.global_defs.lvs_sync_daemon.as_ref();
    mib.put(CHECK, &[6, 1, 0], truth(sync.is_some()));
    if let Some(sync) = sync {
        mib.put(CHECK, &[6, 2, 0], Value::string(&sync.interface));
        if let Some(instance) = &sync.instance {
            mib.put(CHECK, &[6, 3, 0], Value::string(instance));
        }
    }
    mib
}

fn groups(mib: &mut Mib, config: &Config) {
    for (group, g) in config.virtual_server_groups.iter().zip(1u32..) {
        mib.put(CHECK, &[1, 1, 2, g], Value::string(&group.name));
        let fwmarks = group.entries.iter().filter(|e| matches!(e, VsgEntry::Fwmark { .. }));
        let addresses = group.entries.iter().filter(|e| matches!(e, VsgEntry::Address { .. }));
        for (entry, m) in fwmarks.chain(addresses).zip(1u32..) {
            let e = |col: u32| [2, 1, col, g, m];
            match entry {
                VsgEntry::Fwmark { mark, .. } => {
                    mib.put(CHECK, &e(2), Value::Integer(1));
                    mib.put(CHECK, &e(3), Value::Gauge32(*mark));
                }
                VsgEntry::Address { range, port } => {
                    let single = range.start == range.end;
                    mib.put(CHECK, &e(2), Value::Integer(if single { 2 } else { 3 }));
                    mib.put(CHECK, &e(4), Value::Integer(address_type(range.start)));
                    if single {
                        mib.put(CHECK, &e(5), Value::OctetString(address_bytes(range.start)));
                    } else {
                        mib.put(CHECK, &e(6), Value::OctetString(address_bytes(range.start)));
                        mib.put(CHECK, &e(7), Value::OctetString(address_bytes(range.end)));
                    }
                    mib.put(CHECK, &e(8), Value::Gauge32(u32::from(port.unwrap_or(0))));
                }
            }
        }
    }
}

/// `persistence_granularity` as keepalived shows it: an IPv4 netmask's bytes (all ones by
/// default), or an IPv6 prefix length.
fn granularity(vs: &VirtualServer) -> (Option<Vec<u8>>, Option<u32>) {
    let text = vs.persistence_granularity.as_deref();
    let v4 = text
        .and_then(|t| t.parse::<std::net::Ipv4Addr>().ok())
        .map_or(vec![0xff; 4], |m| m.octets().to_vec());
    match vs.address {
        VsAddress::Ip { address: IpAddr::V4(_), .. } => (Some(v4), None),
        VsAddress::Ip { address: IpAddr::V6(_), .. } => {
            (None, Some(text.and_then(|t| t.parse().ok()).unwrap_or(128)))
        }
        // No address family of its own: keepalived shows both, the IPv6 one unset (all ones).
        _ => (Some(v4), Some(text.and_then(|t| t.parse().ok()).unwrap_or(u32::MAX))),
    }
}

/// The address family (InetAddressType) of a virtual server: its address's, else `ip_family`,
/// else its group's first address's, else IPv4.
fn family(config: &Config, vs: &VirtualServer) -> i32 {
    match (&vs.address, vs.ip_family) {
        (VsAddress::Ip { address, .. }, _) => address_type(*address),
        (_, Some(Family::Inet6)) => 2,
        (_, Some(Family::Inet)) => 1,
        (VsAddress::Group { name }, None) => config
            .virtual_server_groups
            .iter()
            .find(|g| &g.name == name)
            .and_then(|g| {
                g.entries.iter().find_map(|e| match e {
                    VsgEntry::Address { range, .. } => Some(address_type(range.start)),
                    VsgEntry::Fwmark { .. } => None,
                })
            })
            .unwrap_or(1),
        (VsAddress::Fwmark { .. }, None) => 1,
    }
}

fn virtual_server(mib: &mut Mib, config: &Config, vs: &VirtualServer, status: &ServiceStatus, v: u32) {
    let e = |col: u32| [3, 1, col, v];
    mib.put(CHECK, &e(2), Value::Integer(vs_type(vs)));
    // virtualServerAddrType: also for groups and fwmarks (their family).
    mib.put(CHECK, &e(5), Value::Integer(family(config, vs)));
    match &vs.address {
        VsAddress::Group { name } => mib.put(CHECK, &e(3), Value::string(name)),
        VsAddress::Fwmark { mark } => mib.put(CHECK, &e(4), Value::Gauge32(*mark)),
        VsAddress::Ip { address, port } => {
            mib.put(CHECK, &e(6), Value::OctetString(address_bytes(*address)));
            mib.put(CHECK, &e(7), Value::Gauge32(u32::from(port.unwrap_or(0))));
        }
    }
    mib.put(CHECK, &e(8), Value::Integer(protocol(vs)));
    mib.put(CHECK, &e(9), Value::Integer(algorithm(vs.effective_sched())));
    if let Some(kind) = forwarding(vs.lvs_method.as_ref()) {
        mib.put(CHECK, &e(10), Value::Integer(kind));
    }
    // virtualServerStatus: keepalived 2.2.7 gives alive(1) once the service is set up, whatever
    // its quorum.
    mib.put(CHECK, &e(11), Value::Integer(1));
    if let Some(host) = &vs.virtualhost {
        mib.put(CHECK, &e(12), Value::string(host));
    }
    let persistence = vs.persistence_timeout.filter(|t| *t > 0);
    mib.put(CHECK, &e(13), truth(persistence.is_some()));
    if let Some(timeout) = persistence {
        mib.put(CHECK, &e(14), Value::Gauge32(timeout));
    }
    let (granularity4, granularity6) = granularity(vs);
    if let Some(mask) = granularity4 {
        mib.put(CHECK, &e(15), Value::OctetString(mask));
    }
    mib.put(CHECK, &e(16), Value::Gauge32(secs(Some(vs.effective_delay_loop()))));
    mib.put(CHECK, &e(17), truth(vs.ha_suspend));
    mib.put(CHECK, &e(18), truth(vs.alpha));
    mib.put(CHECK, &e(19), truth(vs.omega));
    mib.put(CHECK, &e(20), gauge(vs.real_servers.len()));
    mib.put(CHECK, &e(21), Value::Gauge32(status.reals_up()));
    mib.put(CHECK, &e(22), Value::Gauge32(vs.quorum));
    mib.put(CHECK, &e(23), Value::Integer(if status.quorum_up { 1 } else { 2 }));
    if let Some(script) = &vs.quorum_up {
        mib.put(CHECK, &e(24), command(script));
    }
    if let Some(script) = &vs.quorum_down {
        mib.put(CHECK, &e(25), command(script));
    }
    mib.put(CHECK, &e(26), Value::Gauge32(vs.hysteresis));
    // 27-36 and 38-50: the counters and rates ([`virtual_server_counters`]).
    mib.put(CHECK, &e(37), truth(vs.ops));
    if let Some(prefix) = granularity6 {
        mib.put(CHECK, &e(51), Value::Gauge32(prefix));
    }
    mib.put(CHECK, &e(52), truth(vs.hashed));
    mib.put(CHECK, &e(53), truth(vs.sh_fallback));
    mib.put(CHECK, &e(54), truth(vs.sh_port));
    mib.put(CHECK, &e(55), truth(vs.flag_3));
    mib.put(CHECK, &e(56), Value::Integer(if vs.inhibit_on_failure { 2 } else { 1 }));
    mib.put(CHECK, &e(57), Value::Gauge32(vs.retry.unwrap_or(0)));
    mib.put(CHECK, &e(58), Value::Gauge32(secs(vs.delay_before_retry)));
    mib.put(CHECK, &e(59), Value::Gauge32(secs(vs.warmup)));
    mib.put(CHECK, &e(60), Value::Integer(vs.weight.unwrap_or(1)));
    mib.put(CHECK, &e(61), truth(vs.smtp_alert == Some(true)));
    mib.put(CHECK, &e(62), truth(vs.mh_fallback));
    mib.put(CHECK, &e(63), truth(vs.mh_port));
    mib.put(CHECK, &e(64), Value::Gauge32(usecs(Some(vs.effective_delay_loop()))));
    mib.put(CHECK, &e(65), Value::Gauge32(usecs(vs.delay_before_retry)));
    mib.put(CHECK, &e(66), Value::Gauge32(usecs(vs.warmup)));
    mib.put(
        CHECK,
        &e(67),
        Value::Gauge32(vs.connect_timeout.map_or(CONNECT_TIMEOUT_USEC, |t| usecs(Some(t)))),
    );
    if let Some(name) = &vs.snmp_name {
        mib.put(CHECK, &e(71), Value::string(name));
    }
}

/// virtualServerStatsConns, InPkts, InBytes, Conns64, InPkts64 (see the module's
/// documentation for those left out).
fn virtual_server_counters(mib: &mut Mib, total: Sums, v: u32) {
    let e = |col: u32| [3, 1, col, v];
    mib.put(CHECK, &e(27), Value::Gauge32(low32(total.conns)));
    mib.put(CHECK, &e(28), Value::Counter32(low32(total.packets)));
    mib.put(CHECK, &e(30), Value::Counter64(total.bytes));
    mib.put(CHECK, &e(38), Value::Counter64(total.conns));
    mib.put(CHECK, &e(39), Value::Counter64(total.packets));
}

/// realServerStatsConns, ActiveConns, InPkts, InBytes, Conns64, InPkts64.
fn real_server_counters(mib: &mut Mib, reals: &[Sums], v: u32) {
    for (sums, r) in reals.iter().zip(1u32..) {
        let e = |col: u32| [4, 1, col, v, r];
        mib.put(CHECK, &e(14), Value::Gauge32(low32(sums.conns)));
        mib.put(CHECK, &e(15), Value::Gauge32(low32(sums.active)));
        mib.put(CHECK, &e(18), Value::Counter32(low32(sums.packets)));
        mib.put(CHECK, &e(20), Value::Counter64(sums.bytes));
        mib.put(CHECK, &e(27), Value::Counter64(sums.conns));
        mib.put(CHECK, &e(28), Value::Counter64(sums.packets));
    }
}

fn real_servers(mib: &mut Mib, vs: &VirtualServer, status: &ServiceStatus, v: u32) {
    let sorry = vs.sorry_server.as_ref();
    let first = if sorry.is_some() { 2 } else { 1 };
    if let Some(sorry) = sorry {
        let e = |col: u32| [4, 1, col, v, 1];
        mib.put(CHECK, &e(2), Value::Integer(2));
        mib.put(CHECK, &e(3), Value::Integer(address_type(sorry.address)));
        mib.put(CHECK, &e(4), Value::OctetString(address_bytes(sorry.address)));
        mib.put(CHECK, &e(5), Value::Gauge32(u32::from(sorry.port.unwrap_or_else(|| vs_port(vs)))));
        let method = vs.sorry_server_lvs_method.as_ref().or(vs.lvs_method.as_ref());
        if let Some(kind) = forwarding(method) {
            mib.put(CHECK, &e(40), Value::Integer(kind));
        }
        // keepalived's sorry server has none of the checker settings: all zero, smtp_alert off.
        mib.put(CHECK, &e(42), truth(false));
        for col in [43, 44, 45, 46, 48, 49, 50, 51] {
            mib.put(CHECK, &e(col), Value::Gauge32(0));
        }
        mib.put(CHECK, &e(47), truth(false));
    }
    for ((rs, r), real) in vs.real_servers.iter().zip(first..).zip(&status.reals) {
        let e = |col: u32| [4, 1, col, v, r];
        mib.put(CHECK, &e(2), Value::Integer(1));
        mib.put(CHECK, &e(3), Value::Integer(address_type(rs.address)));
        mib.put(CHECK, &e(4), Value::OctetString(address_bytes(rs.address)));
        mib.put(CHECK, &e(5), Value::Gauge32(u32::from(rs.port.unwrap_or_else(|| vs_port(vs)))));
        mib.put(CHECK, &e(6), Value::Integer(if real.alive { 1 } else { 2 }));
        mib.put(CHECK, &e(7), Value::Integer(i32::try_from(real.weight).unwrap_or(i32::MAX)));
        if let Some(upper) = rs.uthreshold.filter(|u| *u > 0) {
            mib.put(CHECK, &e(8), Value::Gauge32(upper));
        }
        if let Some(lower) = rs.lthreshold.filter(|l| *l > 0) {
            mib.put(CHECK, &e(9), Value::Gauge32(lower));
        }
        let inhibit = rs.inhibit_on_failure.unwrap_or(vs.inhibit_on_failure);
        mib.put(CHECK, &e(10), Value::Integer(if inhibit { 2 } else { 1 }));
        if let Some(script) = &rs.notify_up {
            mib.put(CHECK, &e(11), command(script));
        }
        if let Some(script) = &rs.notify_down {
            mib.put(CHECK, &e(12), command(script));
        }
        mib.put(CHECK, &e(13), Value::Gauge32(real.failed_checks));
        // 14-39: the counters and rates ([`real_server_counters`]).
        if let Some(kind) = forwarding(rs.lvs_method.as_ref().or(vs.lvs_method.as_ref())) {
            mib.put(CHECK, &e(40), Value::Integer(kind));
        }
        if let Some(host) = &rs.virtualhost {
            mib.put(CHECK, &e(41), Value::string(host));
        }
        mib.put(CHECK, &e(42), truth(rs.alpha.unwrap_or(vs.alpha)));
        real_timing(mib, vs, rs, &e);
        // realServerSmtpAlert: keepalived's unset (-1) reads as on.
        mib.put(CHECK, &e(47), truth(rs.smtp_alert.unwrap_or(true)));
        if let Some(name) = &rs.snmp_name {
            mib.put(CHECK, &e(55), Value::string(name));
        }
    }
}

/// realServerRetry, DelayBeforeRetry, Warmup, DelayLoop and their microsecond columns: the
/// real server's own settings, else its virtual server's.
fn real_timing(mib: &mut Mib, vs: &VirtualServer, rs: &RealServer, e: &dyn Fn(u32) -> [u32; 5]) {
    let retry = rs.retry.or(vs.retry).unwrap_or(0);
    let before_retry = rs.delay_before_retry.or(vs.delay_before_retry);
    let warmup = rs.warmup.or(vs.warmup);
    let delay_loop = Some(rs.delay_loop.unwrap_or_else(|| vs.effective_delay_loop()));
    let connect = rs.connect_timeout.or(vs.connect_timeout);
    mib.put(CHECK, &e(43), Value::Gauge32(retry));
    mib.put(CHECK, &e(44), Value::Gauge32(secs(before_retry)));
    mib.put(CHECK, &e(45), Value::Gauge32(secs(warmup)));
    mib.put(CHECK, &e(46), Value::Gauge32(secs(delay_loop)));
    mib.put(CHECK, &e(48), Value::Gauge32(usecs(before_retry)));
    mib.put(CHECK, &e(49), Value::Gauge32(usecs(warmup)));
    mib.put(CHECK, &e(50), Value::Gauge32(usecs(delay_loop)));
    mib.put(CHECK, &e(51), Value::Gauge32(connect.map_or(CONNECT_TIMEOUT_USEC, |t| usecs(Some(t)))));
}

/// The virtual server's identity as the notifications carry it: its type, then its group
/// name, fwmark or address and port.
fn vs_identity(vs: &VirtualServer) -> Vec<VarBind> {
    let vb = |col: u32, value: Value| VarBind { name: Oid(column(3, col)), value };
    let mut out = vec![vb(2, Value::Integer(vs_type(vs)))];
    match &vs.address {
        VsAddress::Group { name } => out.push(vb(3, Value::string(name))),
        VsAddress::Fwmark { mark } => out.push(vb(4, Value::Gauge32(*mark))),
        VsAddress::Ip { address, port } => {
            out.push(vb(5, Value::Integer(address_type(*address))));
            out.push(vb(6, Value::OctetString(address_bytes(*address))));
            out.push(vb(7, Value::Gauge32(u32::from(port.unwrap_or(0)))));
        }
    }
    out.push(vb(8, Value::Integer(protocol(vs))));
    out
}

fn trap_oid(n: u32) -> VarBind {
    VarBind {
        name: Oid::new(SNMP_TRAP_OID),
        value: Value::ObjectIdentifier(Oid([CHECK, &[5, 0, n]].concat())),
    }
}

fn router(router_id: &str) -> VarBind {
    VarBind { name: Oid([KEEPALIVED, &[1, 2, 0]].concat()), value: Value::string(router_id) }
}

/// keepalived's realServerStateChange for real server `r` (index in the configuration) of `vs`,
/// now `alive` or dead, after which `reals_up` of its real servers are alive.
pub fn real_server_trap(
    vs: &VirtualServer,
    (r, alive): (usize, bool),
    reals_up: u32,
    router_id: &str,
) -> Option<Vec<VarBind>> {
    let rs = vs.real_servers.get(r)?;
    let vb = |table: u32, col: u32, value: Value| VarBind { name: Oid(column(table, col)), value };
    let mut out = vec![
        trap_oid(1),
        vb(4, 3, Value::Integer(address_type(rs.address))),
        vb(4, 4, Value::OctetString(address_bytes(rs.address))),
        vb(4, 5, Value::Gauge32(u32::from(rs.port.unwrap_or_else(|| vs_port(vs))))),
        vb(4, 6, Value::Integer(if alive { 1 } else { 2 })),
    ];
    out.extend(vs_identity(vs));
    out.push(vb(3, 21, Value::Gauge32(reals_up)));
    out.push(vb(3, 20, gauge(vs.real_servers.len())));
    out.push(router(router_id));
    Some(out)
}

/// keepalived's virtualServerQuorumStateChange: `state` met(1), notMet(2) or shutdown(3).
pub fn quorum_trap(vs: &VirtualServer, state: i32, reals_up: u32, router_id: &str) -> Vec<VarBind> {
    let vb = |col: u32, value: Value| VarBind { name: Oid(column(3, col)), value };
    let mut out = vec![trap_oid(2)];
    out.extend(vs_identity(vs));
    out.push(vb(23, Value::Integer(state)));
    out.push(vb(22, Value::Gauge32(vs.quorum)));
    out.push(vb(21, Value::Gauge32(reals_up)));
    out.push(vb(20, gauge(vs.real_servers.len())));
    out.push(router(router_id));
    out
}

impl Served for CheckerSource {
    type Memory = CheckerMemory;

    fn subtrees(&self) -> Vec<Oid> {
        let mut out = Vec::new();
        if self.globals {
            out.push(Oid::new(KEEPALIVED).child(&[1]));
        }
        out.push(Oid::new(CHECK));
        out
    }

    fn description(&self) -> String {
        format!("lbd {} (keepalived-compatible checkers)", env!("CARGO_PKG_VERSION"))
    }

    fn mib(&self, uptime: u32) -> Mib {
        let counters = self.counters.borrow().clone();
        build(self, &self.status.snapshot(), &counters, &agent::router_id(&self.config), uptime)
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.status.changed()
    }

    fn carries_on(&self, other: &Self) -> bool {
        self.status.same(&other.status)
    }

    fn notifications(&self, memory: &mut CheckerMemory, _uptime: u32) -> Vec<Vec<VarBind>> {
        let changes = self.status.changes_since(memory.last_seq);
        let Some(last) = changes.last() else { return Vec::new() };
        memory.last_seq = last.seq;
        if !self.traps {
            return Vec::new();
        }
        let router_id = agent::router_id(&self.config);
        changes
            .iter()
            .filter_map(|change| {
                let vs = self.config.virtual_servers.get(change.service)?;
                match change.kind {
                    ChangeKind::Real(r, alive) => {
                        real_server_trap(vs, (r, alive), change.reals_up, &router_id)
                    }
                    ChangeKind::Quorum(up) => {
                        Some(quorum_trap(vs, if up { 1 } else { 2 }, change.reals_up, &router_id))
                    }
                }
            })
            .collect()
    }

    /// keepalived's shutdown notifications, for each virtual server: each alive real server
    /// taken out (realServerStateChange, dead), then its quorum, shutdown(3).
    fn shutdown(&self, _memory: &mut CheckerMemory, _uptime: u32) -> Vec<Vec<VarBind>> {
        if !self.traps {
            return Vec::new();
        }
        let router_id = agent::router_id(&self.config);
        let mut out = Vec::new();
        for (vs, status) in self.config.virtual_servers.iter().zip(self.status.snapshot()) {
            let mut up = status.reals_up();
            for (r, _) in status.reals.iter().enumerate().filter(|(_, real)| real.alive) {
                up = up.saturating_sub(1);
                out.extend(real_server_trap(vs, (r, false), up, &router_id));
            }
            out.push(quorum_trap(vs, 3, up, &router_id));
        }
        out
    }
}

/// The virtualServerEntry columns keepalived fills from IPVS that lbd leaves out.
pub const LEFT_OUT_VS: &[u32] = &[29, 31, 32, 33, 34, 35, 36, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50];
/// The realServerEntry columns keepalived fills from IPVS that lbd leaves out.
pub const LEFT_OUT_RS: &[u32] =
    &[16, 17, 19, 21, 22, 23, 24, 25, 26, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::status::RealStatus;

    /// The configuration of `testdata/keepalived-check-walk.txt`.
    const CONFIG: &str = include_str!("testdata/keepalived-check-walk.conf");

    fn source() -> CheckerSource {
        let loaded = crate::config::parse_str(
            "keepalived-check-walk.conf",
            CONFIG,
            &crate::config::LoadOptions::default(),
        );
        assert!(loaded.is_clean(), "{:?}", loaded.diagnostics);
        CheckerSource {
            config: std::sync::Arc::new(loaded.config),
            status: CheckStatus::default(),
            traps: true,
            globals: false,
            counters: tokio::sync::watch::channel(Vec::new()).1,
        }
    }

    fn real(alive: bool, weight: u32) -> RealStatus {
        RealStatus { alive, weight, failed_checks: u32::from(!alive) }
    }

    /// The walk's state: the first virtual server's second real server dead, the rest alive.
    fn services() -> Vec<ServiceStatus> {
        vec![
            ServiceStatus { reals: vec![real(true, 2), real(false, 1)], quorum_up: true },
            ServiceStatus { reals: vec![real(true, 1)], quorum_up: true },
        ]
    }

    /// Every OID keepalived 2.2.7's checker served for the walk's configuration is served
    /// with the same type and value, and nothing more, the IPVS counters (left out) aside.
    #[test]
    fn matches_keepalived_walk() {
        let mib = build(&source(), &services(), &[], "SNMPCHK", 0);
        let ours: Vec<String> = mib
            .iter()
            .map(|(o, v)| format!("{o} = {}", crate::snmp::mib::render(v)).trim_end().to_string())
            .collect();
        let theirs: Vec<String> = include_str!("testdata/keepalived-check-walk.txt")
            .lines()
            .map(|l| l.trim_end().to_string())
            .filter(|l| !ipvs_counter(l))
            .collect();
        // With no traffic, the counters served are keepalived's zeros.
        let missing: Vec<_> = theirs.iter().filter(|l| !ours.contains(l)).collect();
        let extra: Vec<_> = ours.iter().filter(|l| !theirs.contains(l)).collect();
        assert!(missing.is_empty() && extra.is_empty(), "missing: {missing:#?}\nextra: {extra:#?}");
    }

    /// Whether a walk's line is one of the IPVS counter columns lbd leaves out.
    fn ipvs_counter(line: &str) -> bool {
        let vs = Oid(column(3, 0)).to_string();
        let rs = Oid(column(4, 0)).to_string();
        let col = |prefix: &str| -> Option<u32> {
            line.strip_prefix(prefix.trim_end_matches('0'))?.split('.').next()?.parse().ok()
        };
        col(&vs).is_some_and(|c| LEFT_OUT_VS.contains(&c))
            || col(&rs).is_some_and(|c| LEFT_OUT_RS.contains(&c))
    }

    /// The data plane's counters for the first virtual server: its real servers' connections
    /// and packets, summed into the virtual server's.
    #[test]
    fn counters_from_the_data_plane() {
        use crate::dataplane::{Counters as C, RealCounters, ServiceAddr};
        let source = source();
        let service = ServiceAddr {
            vip: IpAddr::from([10, 77, 0, 100]),
            port: 80,
            protocol: crate::dataplane::Protocol::Tcp,
        };
        let real = |last: u8, n: u64| RealCounters {
            addr: IpAddr::from([10, 77, 1, last]),
            port: 8080,
            sorry: false,
            weight: 1,
            counters: C { packets: 10 * n, bytes: 600 * n, new_conns: n, active_conns: 1 },
        };
        let counters = [ServiceCounters {
            service,
            counters: C { packets: 40, bytes: 2400, new_conns: 4, active_conns: 2 },
            no_real: 0,
            reals: vec![real(1, 3), real(2, 1)],
        }];
        let mib = build(&source, &services(), &counters, "r", 0);
        let get = |suffix: &[u32]| mib.get(&Oid::new(CHECK).child(suffix));
        assert_eq!(get(&[3, 1, 27, 1]), Value::Gauge32(4));
        assert_eq!(get(&[3, 1, 30, 1]), Value::Counter64(2400));
        assert_eq!(get(&[3, 1, 27, 2]), Value::Gauge32(0));
        assert_eq!(get(&[4, 1, 14, 1, 1]), Value::Gauge32(3));
        assert_eq!(get(&[4, 1, 15, 1, 2]), Value::Gauge32(1));
        assert_eq!(get(&[4, 1, 28, 1, 2]), Value::Counter64(10));
        // The reply direction is not counted: left out.
        assert_eq!(get(&[4, 1, 19, 1, 1]), Value::NoSuchObject);
    }

    #[test]
    fn notifications_as_keepalived_sends_them() {
        let source = source();
        source.status.set(services());
        let mut memory = CheckerMemory::default();
        let mut after = services()[0].clone();
        after.reals[0].alive = false;
        after.quorum_up = false;
        let up = after.reals_up();
        source.status.set_service(0, after);
        source.status.publish(0, ChangeKind::Real(0, false), up);
        source.status.publish(0, ChangeKind::Quorum(false), up);
        let traps = source.notifications(&mut memory, 0);
        let render = |t: &Vec<VarBind>| -> Vec<String> {
            t.iter().map(|vb| format!("{} = {}", vb.name, crate::snmp::mib::render(&vb.value))).collect()
        };
        assert_eq!(
            render(&traps[0]),
            [
                ".1.3.6.1.6.3.1.1.4.1.0 = OID: .1.3.6.1.4.1.9586.100.5.3.5.0.1",
                ".1.3.6.1.4.1.9586.100.5.3.4.1.3 = INTEGER: 1",
                ".1.3.6.1.4.1.9586.100.5.3.4.1.4 = Hex-STRING: 0A 4D 01 01 ",
                ".1.3.6.1.4.1.9586.100.5.3.4.1.5 = Gauge32: 8080",
                ".1.3.6.1.4.1.9586.100.5.3.4.1.6 = INTEGER: 2",
                ".1.3.6.1.4.1.9586.100.5.3.3.1.2 = INTEGER: 2",
                ".1.3.6.1.4.1.9586.100.5.3.3.1.5 = INTEGER: 1",
                ".1.3.6.1.4.1.9586.100.5.3.3.1.6 = Hex-STRING: 0A 4D 00 64 ",
                ".1.3.6.1.4.1.9586.100.5.3.3.1.7 = Gauge32: 80",
                ".1.3.6.1.4.1.9586.100.5.3.3.1.8 = INTEGER: 1",
                ".1.3.6.1.4.1.9586.100.5.3.3.1.21 = Gauge32: 0",
                ".1.3.6.1.4.1.9586.100.5.3.3.1.20 = Gauge32: 2",
                ".1.3.6.1.4.1.9586.100.5.1.2.0 = STRING: \"SNMPCHK\"",
            ]
        );
        let quorum = render(&traps[1]);
        assert_eq!(quorum[0], ".1.3.6.1.6.3.1.1.4.1.0 = OID: .1.3.6.1.4.1.9586.100.5.3.5.0.2");
        assert_eq!(quorum[6], ".1.3.6.1.4.1.9586.100.5.3.3.1.23 = INTEGER: 2");
        assert_eq!(quorum[7], ".1.3.6.1.4.1.9586.100.5.3.3.1.22 = Gauge32: 2");
        // Sent once: nothing new.
        assert!(source.notifications(&mut memory, 0).is_empty());
        // At stop: the alive real servers taken out, then shutdown(3) for each virtual server
        // (the first has none alive left); the group's names it.
        let stop = source.shutdown(&mut memory, 0);
        assert_eq!(stop.len(), 3);
        assert_eq!(render(&stop[1])[4], ".1.3.6.1.4.1.9586.100.5.3.4.1.6 = INTEGER: 2");
        let group = render(&stop[2]);
        assert_eq!(group[2], ".1.3.6.1.4.1.9586.100.5.3.3.1.3 = STRING: \"G1\"");
        assert_eq!(group[4], ".1.3.6.1.4.1.9586.100.5.3.3.1.23 = INTEGER: 3");
    }
}
