//! The XDP program's tables as user space sees them, and how an apply changes them.
//!
//! [`TableDataplane`] keeps an image of what the maps hold (services, reals, slot rows, FNAT
//! pools, settings) and who owns each id. An apply compiles the [`DesiredState`] into the next
//! image, diffs the two, and performs only the writes that differ, through a [`TableIo`]: the
//! pinned maps ([`super::xdp::XdpMaps`]) or the in-memory fake ([`super::fake::FakeTables`]).
//!
//! # Ids
//! The connection table remembers flows by service id and real id, so ids must not move under
//! established flows:
//! - a service keeps its id while its key (VIP, port, protocol) and everything its flows depend
//!   on (method, scheduler and its flags, persistence) are unchanged; changing one of those
//!   recreates that service, and only that one, under a new id with new real ids; its FNAT pool
//!   (local addresses) changes in place, as flows keep their local address and port;
//! - a real keeps its id while its service keeps its id and its address and port are unchanged;
//!   its weight (and TUN source) change in place;
//! - new ids are handed out next-fit: after the last one handed out, wrapping round and
//!   skipping ids in use before or after the apply. A removed id is therefore reused only once
//!   every other id has been handed out since, long after its stale flows expired; until then
//!   its cleared entry (all zero) makes the program treat those flows as having no real. The
//!   counters of a new id are zeroed before it becomes reachable;
//! - a service removed or recreated takes its real servers with it, in the same apply: the XDP
//!   program looks a packet's flow up before its service and takes the flow for live while its
//!   real server's entry exists (removed reals of a kept service drain: their flows go on).
//!
//! # Write order
//! Every intermediate state is one the XDP program can run with: new FNAT pools, then new and
//! changed reals, then slot rows, then the services that point at them; only then are removed
//! services deleted, and the reals and pools nobody points at any more cleared; the settings,
//! with `ready = 1`, come last. A row is rewritten entry by entry, only where it differs; while
//! that happens every entry names a real that exists.
//!
//! # Adoption
//! A restarted daemon reads the pinned maps back ([`TableDataplane::adopt`]): each service's
//! row and sorry server say which reals it owns; reals in no row (weight 0, or a TUN real with
//! no route) are matched on the first apply to a desired real of a kept service with the same
//! address and port. The same configuration then maps to the same ids and the first apply writes
//! nothing, so established flows keep flowing through a restart.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket},
    time::{Duration, Instant},
};

use lb_common::{
    lb::{
        LocalAddr, MAX_LADDR_GROUPS, MAX_LADDRS_PER_GROUP, MAX_REALS, MAX_SERVICES, Method, Real, RealStats,
        SLOTS_PER_SERVICE, Service, ServiceKey, ServiceStats, Settings, family, ipv4_words, ipv6_words,
        service_flags, words_octets,
    },
    maps,
};

use super::{
    Algorithm, ApplyReport, ApplyWarning, Counters, Dataplane, DataplaneError, DataplaneSettings,
    DesiredState, ForwardingMethod, Problem, Protocol, RealCounters, RealTarget, ServiceAddr,
    ServiceCounters, VirtualService,
    sched::{self, Candidate},
};

/// Id ranges and capacities of the tables. Ids run from 1 to the bound minus one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Service ids are below this (rows of `LBD_SLOTS`, entries of `LBD_SERVICE_STATS`).
    pub service_ids: u32,
    /// Most services at once (the capacity of `LBD_SERVICES`).
    pub services: u32,
    /// Real ids are below this (entries of `LBD_REALS` and `LBD_REAL_STATS`).
    pub real_ids: u32,
    /// FNAT pool ids are below this (pools of `LBD_LADDRS`).
    pub laddr_groups: u32,
}

impl Default for Limits {
    /// The capacities `lb_common` declares.
    fn default() -> Self {
        Self {
            service_ids: MAX_SERVICES,
            services: MAX_SERVICES,
            real_ids: MAX_REALS,
            laddr_groups: MAX_LADDR_GROUPS,
        }
    }
}

/// One map update: what [`TableIo::write`] performs and the fake records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableWrite {
    /// Insert or replace a service (`LBD_SERVICES`).
    Service {
        /// Its key.
        key: ServiceKey,
        /// Its value.
        service: Service,
    },
    /// Delete a service (`LBD_SERVICES`).
    RemoveService {
        /// Its key.
        key: ServiceKey,
    },
    /// Set a real (`LBD_REALS`); all zero clears it.
    Real {
        /// Its id.
        id: u32,
        /// Its value.
        real: Real,
    },
    /// Set one slot (`LBD_SLOTS`).
    Slot {
        /// `service id * SLOTS_PER_SERVICE + position`.
        index: u32,
        /// The real id.
        real: u32,
    },
    /// Set one FNAT local address (`LBD_LADDRS`); all zero clears it.
    LocalAddr {
        /// `pool * MAX_LADDRS_PER_GROUP + position`.
        index: u32,
        /// The address.
        addr: LocalAddr,
    },
    /// Set the settings (`LBD_SETTINGS`, entry 0).
    Settings(Settings),
    /// Zero a service's counters on every CPU (`LBD_SERVICE_STATS`) before the id is used.
    ResetServiceStats {
        /// The service id.
        id: u32,
    },
    /// Zero a real's counters on every CPU (`LBD_REAL_STATS`) and its active count
    /// (`LBD_REAL_ACTIVE`, which the least-connection schedulers read) before the id is used.
    ResetRealStats {
        /// The real id.
        id: u32,
    },
}

impl TableWrite {
    /// The map it writes.
    pub fn map(&self) -> &'static str {
        match self {
            Self::Service { .. } | Self::RemoveService { .. } => maps::SERVICES,
            Self::Real { .. } => maps::REALS,
            Self::Slot { .. } => maps::SLOTS,
            Self::LocalAddr { .. } => maps::LADDRS,
            Self::Settings(_) => maps::SETTINGS,
            Self::ResetServiceStats { .. } => maps::SERVICE_STATS,
            Self::ResetRealStats { .. } => maps::REAL_STATS,
        }
    }
}

/// Access to the tables: the pinned maps, or the fake. Reads serve adoption and counters.
pub trait TableIo {
    /// The tables' id ranges.
    fn limits(&self) -> Limits;
    /// Performs one update.
    fn write(&mut self, write: &TableWrite) -> Result<(), DataplaneError>;
    /// Every service.
    fn read_services(&self) -> Result<Vec<(ServiceKey, Service)>, DataplaneError>;
    /// Every real entry that is not all zero, by id.
    fn read_reals(&self) -> Result<Vec<(u32, Real)>, DataplaneError>;
    /// `len` slots from index `start`.
    fn read_slots(&self, start: u32, len: u32) -> Result<Vec<u32>, DataplaneError>;
    /// `len` local addresses from index `start`.
    fn read_laddrs(&self, start: u32, len: u32) -> Result<Vec<LocalAddr>, DataplaneError>;
    /// The settings.
    fn read_settings(&self) -> Result<Settings, DataplaneError>;
    /// A service's counters, summed over CPUs.
    fn read_service_stats(&self, id: u32) -> Result<ServiceStats, DataplaneError>;
    /// A real's counters, summed over CPUs.
    fn read_real_stats(&self, id: u32) -> Result<RealStats, DataplaneError>;
    /// A real's active connections as the XDP program counts them for scheduling
    /// (`LBD_REAL_ACTIVE`); `None` where the tables have no such count.
    fn read_real_active(&self, id: u32) -> Result<Option<u64>, DataplaneError> {
        let _ = id;
        Ok(None)
    }
}

/// Finds the address the LB sends from towards a real server: the outer source of TUN packets.
pub trait TunnelSource: fmt::Debug + Send {
    /// The source address towards `real`; `None` when there is no route.
    fn source_towards(&self, real: IpAddr) -> Option<IpAddr>;
}

/// Asks the kernel's routing: a UDP socket `connect()`ed to the real server is bound to the
/// source address the kernel would use (no packet is sent), as IPVS's tunnel transmitter takes
/// the source of its route lookup.
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelRoutes;

impl TunnelSource for KernelRoutes {
    fn source_towards(&self, real: IpAddr) -> Option<IpAddr> {
        let any = match real {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let socket = UdpSocket::bind((any, 0)).ok()?;
        // Port 9 (discard): any port routes the same, and nothing is sent.
        socket.connect((real, 9)).ok()?;
        socket.local_addr().ok().map(|a| a.ip()).filter(|a| !a.is_unspecified())
    }
}

/// Fixed tunnel sources, by real server address (tests, or a daemon that knows better).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StaticRoutes {
    /// The source towards each real server; others have none.
    pub sources: BTreeMap<IpAddr, IpAddr>,
    /// The source towards any other IPv4 real server.
    pub default_v4: Option<Ipv4Addr>,
    /// The source towards any other IPv6 real server.
    pub default_v6: Option<Ipv6Addr>,
}

impl TunnelSource for StaticRoutes {
    fn source_towards(&self, real: IpAddr) -> Option<IpAddr> {
        self.sources.get(&real).copied().or(match real {
            IpAddr::V4(_) => self.default_v4.map(IpAddr::V4),
            IpAddr::V6(_) => self.default_v6.map(IpAddr::V6),
        })
    }
}

/// Who owns a real id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct RealOwner {
    service: u32,
    addr: IpAddr,
    port: u16,
    sorry: bool,
}

/// What the tables hold, as far as the daemon knows.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Image {
    /// Services by address. A service read back with an unusable id has id 0 here: it is
    /// overwritten or deleted by the next apply.
    services: BTreeMap<ServiceAddr, Service>,
    /// Services whose key lbd cannot have written (unknown protocol or family): deleted.
    foreign: Vec<ServiceKey>,
    /// Used part of each service's slot row, by service id.
    rows: BTreeMap<u32, Vec<u32>>,
    /// Real entries that are not all zero, by id.
    reals: BTreeMap<u32, Real>,
    /// Known owners of real ids (after adoption, those in no row are not known yet).
    owners: BTreeMap<u32, RealOwner>,
    /// FNAT pools up to their last used entry, by pool id.
    pools: BTreeMap<u32, Vec<LocalAddr>>,
    settings: Settings,
}

impl Image {
    /// What fresh maps hold: zeros.
    fn empty() -> Self {
        Self {
            services: BTreeMap::new(),
            foreign: Vec::new(),
            rows: BTreeMap::new(),
            reals: BTreeMap::new(),
            owners: BTreeMap::new(),
            pools: BTreeMap::new(),
            settings: zero_settings(),
        }
    }

    /// Reads the tables back.
    fn read(io: &impl TableIo) -> Result<Self, DataplaneError> {
        let limits = io.limits();
        let mut image = Self::empty();
        image.settings = io.read_settings()?;
        image.reals =
            io.read_reals()?.into_iter().filter(|(id, _)| *id != 0 && *id < limits.real_ids).collect();
        let mut ids = BTreeSet::new();
        for (key, mut service) in io.read_services()? {
            let Some(addr) = service_addr(&key) else {
                image.foreign.push(key);
                continue;
            };
            if service.id == 0 || service.id >= limits.service_ids || !ids.insert(service.id) {
                service.id = 0;
            }
            image.services.insert(addr, service);
        }
        for service in image.services.values() {
            if service.id == 0 {
                continue;
            }
            let len = service.slots_len.min(SLOTS_PER_SERVICE);
            let row = io.read_slots(service.id * SLOTS_PER_SERVICE, len)?;
            let sorry = (service.sorry_real != 0).then_some(service.sorry_real);
            let members = row.iter().map(|&id| (id, false)).chain(sorry.map(|id| (id, true)));
            for (id, is_sorry) in members {
                if image.owners.contains_key(&id) {
                    continue;
                }
                let Some((addr, port)) = image.reals.get(&id).and_then(real_addr) else { continue };
                image.owners.insert(id, RealOwner { service: service.id, addr, port, sorry: is_sorry });
            }
            image.rows.insert(service.id, row);
        }
        for pool in 1..limits.laddr_groups {
            let mut entries = io.read_laddrs(pool * MAX_LADDRS_PER_GROUP, MAX_LADDRS_PER_GROUP)?;
            while entries.last().is_some_and(|e| *e == LocalAddr::default()) {
                entries.pop();
            }
            if !entries.is_empty() {
                image.pools.insert(pool, entries);
            }
        }
        Ok(image)
    }
}

/// The last id handed out, per table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Cursors {
    service: u32,
    real: u32,
    pool: u32,
}

impl Cursors {
    /// After adoption: new ids start after the highest in use.
    fn after(image: &Image) -> Self {
        Self {
            service: image.services.values().map(|s| s.id).max().unwrap_or(0),
            real: image.reals.keys().copied().max().unwrap_or(0),
            pool: image.pools.keys().copied().max().unwrap_or(0),
        }
    }
}

/// Hands out the next free id after `cursor` below `bound`, wrapping round.
fn allocate(
    cursor: &mut u32,
    bound: u32,
    taken: &mut BTreeSet<u32>,
    table: &'static str,
) -> Result<u32, DataplaneError> {
    let range = u64::from(bound.saturating_sub(1));
    for step in 1..=range {
        let id = ((u64::from(*cursor) + step - 1) % range + 1) as u32;
        if taken.insert(id) {
            *cursor = id;
            return Ok(id);
        }
    }
    Err(DataplaneError::TableFull { table, capacity: bound.saturating_sub(1) })
}

/// The next image, the writes that lead to it, and the report.
#[derive(Debug)]
struct Plan {
    image: Image,
    writes: Vec<TableWrite>,
    report: ApplyReport,
    /// Real ids removed from the desired state whose entries stay for their flows.
    draining: BTreeSet<u32>,
}

/// Real servers removed from a service that stays keep their entry (out of the scheduling row,
/// so no new flow picks them) until this long after their removal, so that their established
/// flows carry on, as IPVS keeps the connections of a deleted destination. Their ids are not
/// handed out meanwhile.
#[derive(Clone, Copy, Debug)]
struct Drain<'a> {
    /// Since when each real id drains.
    since: &'a BTreeMap<u32, Instant>,
    now: Instant,
    /// How long a removed real's entry stays (the established TCP timeout).
    period: Duration,
}

/// A virtual service checked and put in the tables' terms.
struct Spec<'a> {
    vs: &'a VirtualService,
    family: u8,
    /// Service without id, slots_len and sorry_real.
    service: Service,
    pool: Option<Vec<LocalAddr>>,
    reals: Vec<RealTarget>,
}

fn spec(vs: &VirtualService) -> Result<Spec<'_>, DataplaneError> {
    let invalid = |problem| DataplaneError::Invalid { service: vs.addr, problem };
    let vip = vs.addr.vip;
    if vip.is_unspecified() {
        return Err(invalid(Problem::UnspecifiedVip));
    }
    let (_, family) = words(vip);
    let same_family = |a: IpAddr| a.is_ipv4() == vip.is_ipv4();
    let mut reals = vs.reals.clone();
    reals.sort_by_key(|r| (r.addr, r.port));
    for pair in reals.windows(2) {
        if let [a, b] = pair
            && (a.addr, a.port) == (b.addr, b.port)
        {
            return Err(invalid(Problem::DuplicateReal { addr: a.addr, port: a.port }));
        }
    }
    for r in reals.iter().chain(&vs.sorry_server) {
        if !same_family(r.addr) {
            return Err(invalid(Problem::FamilyMismatch { addr: r.addr }));
        }
    }
    let (persistence_timeout, persistence_mask) = match vs.persistence {
        None => (0, [0; 4]),
        Some(p) => {
            let secs = u32::try_from(p.timeout.as_secs()).unwrap_or(u32::MAX);
            if secs == 0 {
                return Err(invalid(Problem::ZeroPersistenceTimeout));
            }
            let bits: u8 = if vip.is_ipv4() { 32 } else { 128 };
            let prefix = p.prefix.unwrap_or(bits);
            if prefix > bits {
                return Err(invalid(Problem::PersistencePrefix { prefix }));
            }
            (secs, mask_words(vip.is_ipv4(), prefix))
        }
    };
    let algorithm = vs.scheduling.algorithm;
    let mut flags = 0;
    if vs.persistence.is_some() {
        flags |= service_flags::PERSISTENT;
    }
    // IPVS applies one-packet scheduling to UDP only.
    if vs.scheduling.one_packet && vs.addr.protocol == Protocol::Udp {
        flags |= service_flags::ONE_PACKET;
    }
    // sh-port and mh-port: the other schedulers hash no port.
    if vs.scheduling.hash_port && matches!(algorithm, Algorithm::SourceHashing | Algorithm::MaglevHashing) {
        flags |= service_flags::HASH_PORT;
    }
    // The SYN proxy needs the replies: NAT and FNAT TCP services.
    if vs.syn_proxy
        && vs.addr.protocol == Protocol::Tcp
        && matches!(vs.method, ForwardingMethod::Nat | ForwardingMethod::Fnat)
    {
        flags |= service_flags::SYN_PROXY;
    }
    let pool = if vs.method == ForwardingMethod::Fnat {
        let mut addrs: Vec<IpAddr> = vs.local_addresses.iter().copied().filter(|a| same_family(*a)).collect();
        addrs.sort();
        addrs.dedup();
        if addrs.is_empty() {
            return Err(invalid(Problem::NoLocalAddress));
        }
        if addrs.len() > MAX_LADDRS_PER_GROUP as usize {
            return Err(invalid(Problem::TooManyLocalAddresses {
                count: addrs.len(),
                max: MAX_LADDRS_PER_GROUP,
            }));
        }
        Some(addrs.into_iter().map(|a| LocalAddr { addr: words(a).0, family, pad: [0; 3] }).collect())
    } else {
        None
    };
    let service = Service {
        id: 0,
        slots_len: 0,
        persistence_timeout,
        persistence_mask,
        laddr_group: 0,
        sorry_real: 0,
        flags,
        method: method(vs.method) as u8,
        scheduler: sched::scheduler(algorithm) as u8,
    };
    Ok(Spec { vs, family, service, pool, reals })
}

/// Whether two services schedule and translate the same way, so flows of one are flows of the
/// other. The FNAT pool is not part of it: a flow holds its local address and port in its own
/// entries, and the pool only serves new flows, so a local address added or removed (another
/// pool) changes the service in place and disturbs no flow.
///
/// Nor is the SYN proxy: a proxied flow holds its sequence offset in its own entries, so
/// `syn_proxy` switched on or off applies to new flows and disturbs none.
fn same_identity(a: &Service, b: &Service) -> bool {
    let flags = |s: &Service| s.flags & !service_flags::SYN_PROXY;
    (a.method, a.scheduler, flags(a), a.persistence_timeout, a.persistence_mask)
        == (b.method, b.scheduler, flags(b), b.persistence_timeout, b.persistence_mask)
}

fn settings(desired: &DataplaneSettings) -> Result<Settings, DataplaneError> {
    if desired.fnat_port_min == 0 || desired.fnat_port_min > desired.fnat_port_max {
        return Err(DataplaneError::Settings {
            reason: format!(
                "FNAT port range {}-{} is empty or starts at 0",
                desired.fnat_port_min, desired.fnat_port_max
            ),
        });
    }
    let secs = |d: std::time::Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
    Ok(Settings {
        tcp_timeout: secs(desired.tcp_timeout),
        tcp_fin_timeout: secs(desired.tcp_fin_timeout),
        udp_timeout: secs(desired.udp_timeout),
        tcp_syn_timeout: secs(desired.tcp_syn_timeout),
        fnat_port_min: desired.fnat_port_min,
        fnat_port_max: desired.fnat_port_max,
        ready: 1,
        fnat_toa: u32::from(desired.fnat_toa),
        generation: 0,
    })
}

/// Compiles `desired` against the current image `old`: ids, entries, rows; then the writes.
fn plan(
    desired: &DesiredState,
    old: &Image,
    cursors: &mut Cursors,
    limits: Limits,
    tunnel: &dyn TunnelSource,
    drain: Drain<'_>,
    bump: bool,
) -> Result<Plan, DataplaneError> {
    let mut specs = desired.services.iter().map(spec).collect::<Result<Vec<_>, _>>()?;
    specs.sort_by_key(|s| s.vs.addr);
    for pair in specs.windows(2) {
        if let [a, b] = pair
            && a.vs.addr == b.vs.addr
        {
            return Err(DataplaneError::Invalid { service: a.vs.addr, problem: Problem::DuplicateService });
        }
    }
    if specs.len() > limits.services as usize {
        return Err(DataplaneError::TableFull { table: maps::SERVICES, capacity: limits.services });
    }

    let mut new = Image::empty();
    new.settings = settings(&desired.settings)?;
    let mut report = ApplyReport::default();
    // Ids in use before or after this apply: none of them can be handed out.
    let mut taken_services: BTreeSet<u32> =
        old.services.values().map(|s| s.id).filter(|&id| id != 0).collect();
    let mut taken_reals: BTreeSet<u32> = old.reals.keys().copied().collect();
    let mut taken_pools: BTreeSet<u32> = old.pools.keys().copied().collect();
    let owned: BTreeMap<RealOwner, u32> = old.owners.iter().map(|(&id, &owner)| (owner, id)).collect();
    // Reals read back in no row: claimable by address and port.
    let mut orphans: BTreeMap<(IpAddr, u16), Vec<u32>> = BTreeMap::new();
    for (&id, real) in &old.reals {
        if !old.owners.contains_key(&id)
            && let Some(key) = real_addr(real)
        {
            orphans.entry(key).or_default().push(id);
        }
    }
    let mut kept_services = BTreeSet::new();

    for spec in &specs {
        let vs = spec.vs;
        let mut service = spec.service;
        if let Some(pool) = &spec.pool {
            let shared = new.pools.iter().find(|(_, p)| *p == pool).map(|(&id, _)| id);
            let existing = || old.pools.iter().find(|(id, p)| *p == pool && !new.pools.contains_key(id));
            service.laddr_group = match (shared, existing()) {
                (Some(id), _) => id,
                (None, Some((&id, _))) => id,
                (None, None) => {
                    allocate(&mut cursors.pool, limits.laddr_groups, &mut taken_pools, maps::LADDRS)?
                }
            };
            new.pools.insert(service.laddr_group, pool.clone());
        }
        let previous = old.services.get(&vs.addr);
        let kept = previous.filter(|p| p.id != 0 && same_identity(p, &service));
        service.id = match kept {
            Some(p) => {
                kept_services.insert(p.id);
                p.id
            }
            None => {
                if previous.is_some() {
                    report.services_recreated += 1;
                } else {
                    report.services_added += 1;
                }
                allocate(&mut cursors.service, limits.service_ids, &mut taken_services, maps::SERVICES)?
            }
        };

        let mut real_id = |addr: IpAddr, port: u16, sorry: bool| -> Result<u32, DataplaneError> {
            let owner = RealOwner { service: service.id, addr, port, sorry };
            if let Some(&id) = owned.get(&owner) {
                return Ok(id);
            }
            if kept.is_some()
                && let Some(id) = orphans.get_mut(&(addr, port)).and_then(Vec::pop)
            {
                return Ok(id);
            }
            allocate(&mut cursors.real, limits.real_ids, &mut taken_reals, maps::REALS)
        };
        let entry = |target: &RealTarget, weight: u32, warnings: &mut Vec<ApplyWarning>| {
            let tunnel_source = if vs.method == ForwardingMethod::Tun {
                let source =
                    tunnel.source_towards(target.addr).filter(|s| s.is_ipv4() == target.addr.is_ipv4());
                if source.is_none() {
                    warnings.push(ApplyWarning::NoTunnelSource { service: vs.addr, real: target.addr });
                }
                source.map(|s| words(s).0)
            } else {
                Some([0; 4])
            };
            let real = Real {
                addr: words(target.addr).0,
                tunnel_source: tunnel_source.unwrap_or_default(),
                port: target.port.to_be(),
                family: spec.family,
                pad: 0,
                weight,
            };
            (real, tunnel_source.is_some())
        };

        let mut candidates = Vec::with_capacity(spec.reals.len());
        for target in &spec.reals {
            let id = real_id(target.addr, target.port, false)?;
            let (real, routable) = entry(target, target.weight, &mut report.warnings);
            new.reals.insert(id, real);
            new.owners.insert(
                id,
                RealOwner { service: service.id, addr: target.addr, port: target.port, sorry: false },
            );
            if routable && target.weight > 0 {
                candidates.push(Candidate {
                    id,
                    weight: target.weight,
                    addr: target.addr,
                    port: target.port,
                });
            }
        }
        if let Some(sorry) = &vs.sorry_server {
            let id = real_id(sorry.addr, sorry.port, true)?;
            let (real, routable) = entry(sorry, 1, &mut report.warnings);
            new.reals.insert(id, real);
            new.owners.insert(
                id,
                RealOwner { service: service.id, addr: sorry.addr, port: sorry.port, sorry: true },
            );
            if routable {
                service.sorry_real = id;
            }
        }
        let row = sched::build(vs.scheduling.algorithm, &candidates);
        if row.used < candidates.len() {
            report.warnings.push(ApplyWarning::RowTruncated {
                service: vs.addr,
                available: candidates.len(),
                used: row.used,
            });
        }
        service.slots_len = row.slots.len() as u32;
        new.rows.insert(service.id, row.slots);
        new.services.insert(vs.addr, service);
    }

    // Removed reals of kept services drain: same entry, in no row.
    let mut draining = BTreeSet::new();
    let mut released = 0;
    for (&id, real) in &old.reals {
        let Some(owner) = old.owners.get(&id) else { continue };
        if new.reals.contains_key(&id) || !kept_services.contains(&owner.service) {
            continue;
        }
        match drain.since.get(&id) {
            Some(&since) if drain.now.saturating_duration_since(since) >= drain.period => released += 1,
            since => {
                if since.is_none() {
                    report.reals_removed += 1;
                }
                new.reals.insert(id, *real);
                new.owners.insert(id, *owner);
                draining.insert(id);
            }
        }
    }

    let mut writes = diff(old, &new, &kept_services, &mut report);
    // Last: the settings, and with them `ready`; a new generation if services or reals
    // changed, which empties the XDP program's flow cache.
    let flows_move = writes.iter().any(|w| {
        matches!(w, TableWrite::Service { .. } | TableWrite::RemoveService { .. } | TableWrite::Real { .. })
    });
    new.settings.generation = old.settings.generation.wrapping_add(u32::from(flows_move || bump));
    if old.settings != new.settings {
        writes.push(TableWrite::Settings(new.settings));
    }
    // A drained real's release was counted when it was removed.
    report.reals_removed -= released;
    report.writes = writes.len();
    Ok(Plan { image: new, writes, report, draining })
}

/// The writes from `old` to `new`, in an order that keeps every intermediate state usable.
fn diff(old: &Image, new: &Image, kept: &BTreeSet<u32>, report: &mut ApplyReport) -> Vec<TableWrite> {
    let mut writes = Vec::new();
    let old_service_ids: BTreeSet<u32> = old.services.values().map(|s| s.id).collect();

    // Counters of new ids start from zero.
    for service in new.services.values() {
        if !old_service_ids.contains(&service.id) {
            writes.push(TableWrite::ResetServiceStats { id: service.id });
        }
    }
    for &id in new.reals.keys() {
        if !old.reals.contains_key(&id) {
            writes.push(TableWrite::ResetRealStats { id });
            report.reals_added += 1;
        }
    }
    // Pools, before the services that use them.
    for (&pool, entries) in &new.pools {
        let before = old.pools.get(&pool).map_or(&[][..], Vec::as_slice);
        let len = entries.len().max(before.len());
        for i in 0..len {
            let want = entries.get(i).copied().unwrap_or_default();
            if before.get(i).copied().unwrap_or_default() != want {
                writes.push(TableWrite::LocalAddr {
                    index: pool * MAX_LADDRS_PER_GROUP + i as u32,
                    addr: want,
                });
            }
        }
    }
    // Reals, before the rows that name them.
    for (&id, real) in &new.reals {
        match old.reals.get(&id) {
            Some(before) if before == real => {}
            Some(_) => {
                report.reals_updated += 1;
                writes.push(TableWrite::Real { id, real: *real });
            }
            None => writes.push(TableWrite::Real { id, real: *real }),
        }
    }
    // Rows, entry by entry where they differ.
    let mut rewritten = BTreeSet::new();
    for (&id, row) in &new.rows {
        let before = old.rows.get(&id).map_or(&[][..], Vec::as_slice);
        for (i, &real) in row.iter().enumerate() {
            if before.get(i) != Some(&real) {
                writes.push(TableWrite::Slot { index: id * SLOTS_PER_SERVICE + i as u32, real });
                rewritten.insert(id);
            }
        }
    }
    report.rows_rewritten = rewritten.len();
    // Services, now that what they point at exists.
    for (addr, service) in &new.services {
        if old.services.get(addr) != Some(service) {
            writes.push(TableWrite::Service { key: service_key(addr), service: *service });
            if kept.contains(&service.id) {
                report.services_updated += 1;
            }
        } else if rewritten.contains(&service.id) {
            report.services_updated += 1;
        }
    }
    // Then what nothing points at any more.
    for addr in old.services.keys() {
        if !new.services.contains_key(addr) {
            writes.push(TableWrite::RemoveService { key: service_key(addr) });
            report.services_removed += 1;
        }
    }
    for key in &old.foreign {
        writes.push(TableWrite::RemoveService { key: *key });
    }
    for &id in old.reals.keys() {
        if !new.reals.contains_key(&id) {
            writes.push(TableWrite::Real { id, real: Real::default() });
            report.reals_removed += 1;
        }
    }
    for (&pool, entries) in &old.pools {
        if !new.pools.contains_key(&pool) {
            for (i, entry) in entries.iter().enumerate() {
                if *entry != LocalAddr::default() {
                    let index = pool * MAX_LADDRS_PER_GROUP + i as u32;
                    writes.push(TableWrite::LocalAddr { index, addr: LocalAddr::default() });
                }
            }
        }
    }
    writes
}

/// A data plane driven by tables: the XDP program's maps, or the fake.
#[derive(Debug)]
pub struct TableDataplane<T> {
    io: T,
    image: Image,
    /// A write failed: the image may not match the tables; read them again before planning.
    stale: bool,
    cursors: Cursors,
    tunnel: Box<dyn TunnelSource>,
    /// Removed real servers whose entries stay for their flows, since when.
    draining: BTreeMap<u32, Instant>,
}

impl<T: TableIo> TableDataplane<T> {
    /// Takes over the tables as they are (empty when fresh, a previous run's when pinned),
    /// finding TUN sources through the kernel's routes.
    pub fn adopt(io: T) -> Result<Self, DataplaneError> {
        let image = Image::read(&io)?;
        let cursors = Cursors::after(&image);
        Ok(Self {
            io,
            image,
            stale: false,
            cursors,
            tunnel: Box::new(KernelRoutes),
            draining: BTreeMap::new(),
        })
    }

    /// Uses `tunnel` to find the outer source address of TUN packets.
    pub fn with_tunnel_source(mut self, tunnel: Box<dyn TunnelSource>) -> Self {
        self.tunnel = tunnel;
        self
    }

    /// Uses `tunnel` from the next apply on.
    pub fn set_tunnel_source(&mut self, tunnel: Box<dyn TunnelSource>) {
        self.tunnel = tunnel;
    }

    /// How many services and reals the tables held when adopted (or after the last apply).
    pub fn held(&self) -> (usize, usize) {
        (self.image.services.len(), self.image.reals.len())
    }

    /// The service and real tables indexed for the connection sync.
    pub fn sync_index(&self) -> super::conns::SyncIndex {
        let mut index = super::conns::SyncIndex::default();
        for (addr, service) in &self.image.services {
            if service.id != 0 {
                index.services.insert(service.id, (*addr, *service));
            }
        }
        for (&id, owner) in &self.image.owners {
            index.reals.insert((owner.service, owner.addr, owner.port), id);
            index.real_addrs.insert(id, (owner.addr, owner.port));
        }
        index
    }

    /// The tables.
    pub fn io(&self) -> &T {
        &self.io
    }

    /// The tables, to change behind the data plane's back (tests).
    pub fn io_mut(&mut self) -> &mut T {
        &mut self.io
    }

    /// Gives the tables back (a test's "daemon exit": adopt them again).
    pub fn into_io(self) -> T {
        self.io
    }
}

impl<T: TableIo> TableDataplane<T> {
    /// [`Dataplane::apply`] at `now` (the drain periods of removed reals count from it).
    pub fn apply_at(&mut self, desired: &DesiredState, now: Instant) -> Result<ApplyReport, DataplaneError> {
        // After a failed apply, services or reals may have been written without the new
        // generation that goes with them: this apply writes one whatever it changes.
        // (`stale` stays set until an apply succeeds.)
        let bump = self.stale;
        if self.stale {
            self.image = Image::read(&self.io)?;
        }
        let drain = Drain { since: &self.draining, now, period: desired.settings.tcp_timeout };
        let (limits, tunnel) = (self.io.limits(), self.tunnel.as_ref());
        let plan = plan(desired, &self.image, &mut self.cursors, limits, tunnel, drain, bump)?;
        for write in &plan.writes {
            if let Err(e) = self.io.write(write) {
                self.stale = true;
                return Err(e);
            }
        }
        self.image = plan.image;
        self.stale = false;
        self.draining.retain(|id, _| plan.draining.contains(id));
        for id in plan.draining {
            self.draining.entry(id).or_insert(now);
        }
        Ok(plan.report)
    }
}

impl<T: TableIo> Dataplane for TableDataplane<T> {
    fn apply(&mut self, desired: &DesiredState) -> Result<ApplyReport, DataplaneError> {
        self.apply_at(desired, Instant::now())
    }

    fn service_stats(&self) -> Result<Vec<ServiceCounters>, DataplaneError> {
        let mut by_service: BTreeMap<u32, Vec<(u32, RealOwner)>> = BTreeMap::new();
        for (&id, &owner) in &self.image.owners {
            if self.draining.contains_key(&id) {
                // Removed: no longer a real server of the service, whatever flows remain.
                continue;
            }
            by_service.entry(owner.service).or_default().push((id, owner));
        }
        let mut out = Vec::with_capacity(self.image.services.len());
        for (addr, service) in &self.image.services {
            if service.id == 0 {
                continue;
            }
            let stats = self.io.read_service_stats(service.id)?;
            let mut reals = Vec::new();
            let mut active = 0u64;
            for &(id, owner) in by_service.get(&service.id).map_or(&[][..], Vec::as_slice) {
                let r = self.io.read_real_stats(id)?;
                let active_conns = match self.io.read_real_active(id)? {
                    // The program's own count (flows replaced or expired included). Closes of
                    // flows that outlived an earlier owner of the id can take it below zero,
                    // which wraps: that reads as none.
                    Some(active) if active > i64::MAX as u64 => 0,
                    Some(active) => active,
                    // Summed over CPUs first: a flow may open on one CPU and close on another.
                    None => r.new_conns.saturating_sub(r.closed_conns),
                };
                let counters =
                    Counters { packets: r.packets, bytes: r.bytes, new_conns: r.new_conns, active_conns };
                active = active.saturating_add(counters.active_conns);
                let weight = self.image.reals.get(&id).map_or(0, |r| r.weight);
                reals.push(RealCounters {
                    addr: owner.addr,
                    port: owner.port,
                    sorry: owner.sorry,
                    weight,
                    counters,
                });
            }
            reals.sort_by_key(|r| (r.sorry, r.addr, r.port));
            out.push(ServiceCounters {
                service: *addr,
                counters: Counters {
                    packets: stats.packets,
                    bytes: stats.bytes,
                    new_conns: stats.new_conns,
                    active_conns: active,
                },
                no_real: stats.no_real,
                reals,
            });
        }
        Ok(out)
    }
}

/// Settings as fresh maps hold them: all zero, not ready.
pub(crate) fn zero_settings() -> Settings {
    Settings {
        tcp_timeout: 0,
        tcp_fin_timeout: 0,
        udp_timeout: 0,
        tcp_syn_timeout: 0,
        fnat_port_min: 0,
        fnat_port_max: 0,
        ready: 0,
        fnat_toa: 0,
        generation: 0,
    }
}

/// The table's method for a forwarding method.
const fn method(method: ForwardingMethod) -> Method {
    match method {
        ForwardingMethod::Nat => Method::Nat,
        ForwardingMethod::Dr => Method::Dr,
        ForwardingMethod::Tun => Method::Tun,
        ForwardingMethod::Fnat => Method::Fnat,
    }
}

/// Address words and family of an address.
pub fn words(addr: IpAddr) -> ([u32; 4], u8) {
    match addr {
        IpAddr::V4(a) => (ipv4_words(a.octets()), family::IPV4),
        IpAddr::V6(a) => (ipv6_words(a.octets()), family::IPV6),
    }
}

/// The address stored as `words` with `family`; `None` for an unknown family or stray bytes.
pub fn addr_from(words: [u32; 4], family: u8) -> Option<IpAddr> {
    let octets = words_octets(words);
    match family {
        family::IPV4 if octets[4..].iter().all(|b| *b == 0) => {
            Some(IpAddr::V4(Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3])))
        }
        family::IPV6 => Some(IpAddr::V6(Ipv6Addr::from(octets))),
        _ => None,
    }
}

/// The table key of a service.
pub fn service_key(addr: &ServiceAddr) -> ServiceKey {
    let (words, family) = words(addr.vip);
    ServiceKey { addr: words, port: addr.port.to_be(), proto: addr.protocol.number(), family }
}

/// The service a table key names; `None` if lbd cannot have written it.
pub fn service_addr(key: &ServiceKey) -> Option<ServiceAddr> {
    Some(ServiceAddr {
        vip: addr_from(key.addr, key.family)?,
        port: u16::from_be(key.port),
        protocol: Protocol::from_number(key.proto)?,
    })
}

fn real_addr(real: &Real) -> Option<(IpAddr, u16)> {
    Some((addr_from(real.addr, real.family)?, u16::from_be(real.port)))
}

/// The persistence mask: `prefix` leading one bits, as address words.
fn mask_words(ipv4: bool, prefix: u8) -> [u32; 4] {
    if ipv4 {
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        ipv4_words(mask.to_be_bytes())
    } else {
        let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
        ipv6_words(mask.to_be_bytes())
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests;
