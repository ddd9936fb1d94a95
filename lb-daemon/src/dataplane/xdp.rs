//! The XDP data plane: load the embedded object, pin its maps, adopt what a previous run left
//! in them, attach, write the tables, read counters.
//!
//! [`XdpDataplane`] implements [`Dataplane`] with the table engine of [`super::tables`] over
//! [`XdpMaps`], the typed pinned maps.
//!
//! Everything that must outlive the daemon is pinned under the pin directory: the maps (by
//! name) and, in `links/`, one BPF link per interface. A pinned link keeps the program attached
//! after the daemon exits (kill -9, or a stop with `-I`), so traffic keeps flowing with the
//! tables as they were; the next daemon loads its program against the same maps and swaps it
//! into each link atomically (`BPF_LINK_UPDATE`), so no packet meets an interface without a
//! program and no flow loses its entry. Only [`XdpDataplane::remove`] (an orderly stop) detaches.

use std::path::{Path, PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray, PerCpuValues, ProgramArray},
    programs::{
        ProgramError, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
    },
};
use lb_common::{
    lb::{
        Flow, FlowKey, FlowKey4, LocalAddr, MAX_LADDRS_PER_GROUP, Real, RealStats, SLOTS_PER_SERVICE,
        Service, ServiceKey, ServiceStats, Settings, SynProxySecret, family,
    },
    maps::{self, GLOBAL_STATS},
    programs::{FULL_PATH, LB_XDP, LB_XDP_FULL, LB_XDP_V6, V6_PATH},
    stats::GlobalStats,
};
use tracing::{info, warn};

use super::{
    ApplyReport, Dataplane, DataplaneError, DesiredState, ServiceCounters, bpffs,
    conns::{SyncedFlow, Unsynced, is_ipv4},
    tables::{Limits, TableDataplane, TableIo, TableWrite, TunnelSource},
};

/// The XDP object built by `cargo xtask build-ebpf` (`lb-ebpf`), embedded at build time.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("LBD_EBPF_OBJECT"));

/// How to attach the program to an interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// Native (driver) mode, falling back to generic mode, with a warning, where the driver has
    /// no XDP support.
    #[default]
    Auto,
    /// Native (driver) mode only.
    Driver,
    /// Generic (skb) mode only: slower, works on every device.
    Generic,
}

/// Subdirectory of the pin directory holding one pinned link per interface.
const LINKS_DIR: &str = "links";

/// An interface the program is attached to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// The interface.
    pub interface: String,
    /// The mode the kernel accepted; `None` when the program replaced the one of a link an
    /// earlier run pinned (the link keeps the mode it was created with).
    pub mode: Option<XdpMode>,
}

impl Attachment {
    /// Whether the program took over a link pinned by an earlier run.
    pub fn adopted(&self) -> bool {
        self.mode.is_none()
    }
}

/// The loaded XDP program and its pinned maps.
#[derive(Debug)]
pub struct XdpDataplane {
    ebpf: Ebpf,
    pin_dir: PathBuf,
    attachments: Vec<Attachment>,
    tables: Tables,
    /// The connection tables, for the connection sync (absent from old objects).
    conns: Option<Box<ConnMaps>>,
    /// An earlier build's program array of another shape, unpinned, whose full path slot now
    /// holds this build's full path (see [`bridge_old_progs`]); held until this dataplane goes.
    #[expect(dead_code, reason = "held for its file descriptor only")]
    old_progs: Option<Box<Map>>,
}

/// The load-balancing tables, if the object has them.
#[derive(Debug)]
enum Tables {
    Ready(Box<TableDataplane<XdpMaps>>),
    /// The object lacks this map (an object built before the tables existed): apply fails.
    Missing(&'static str),
}

impl XdpDataplane {
    /// Loads the embedded object, pinning (or, after a restart, reusing) its maps under
    /// `pin_dir`, which is put on a bpffs if it is not on one, and adopts what the tables hold.
    pub fn load(pin_dir: &Path) -> Result<Self, DataplaneError> {
        if bpffs::ensure(pin_dir)? {
            info!("mounted a bpffs on {}", pin_dir.display());
        }
        let stale = drop_stale_pins(pin_dir)?;
        for dropped in &stale.dropped {
            warn!("{dropped}; replaced by an empty map (its entries are lost, the other maps are kept)");
        }
        let mut loader = EbpfLoader::new();
        for &name in lb_common::maps::PINNED {
            // Reuses the pinned map if a previous run left it, so counters and flows survive a
            // restart.
            loader.map_pin_path(name, pin_dir.join(name));
        }
        let mut ebpf = loader.load(OBJECT).map_err(|e| DataplaneError::Load(Box::new(e)))?;
        load_programs(&mut ebpf)?;
        let old_progs = match stale.progs {
            Some(old) => Some(Box::new(bridge_old_progs(&mut ebpf, old)?)),
            None => None,
        };
        if synproxy_secret(&mut ebpf)? {
            info!("wrote a new SYN cookie secret");
        }
        let (moved, conns) = move_ipv4_flows(&mut ebpf)?;
        if moved > 0 {
            info!("moved {moved} IPv4 flows an earlier lbd kept in {} into {}", maps::CONNS, maps::CONNS4);
        }
        // The program holds its own references to the maps: taking them out of `ebpf` now
        // changes nothing for it.
        let tables = match XdpMaps::take(&mut ebpf)? {
            Ok(maps) => {
                let tables = TableDataplane::adopt(maps)?;
                let (services, reals) = tables.held();
                if services + reals > 0 {
                    info!(
                        "adopted {services} virtual services and {reals} real servers from the pinned maps"
                    );
                }
                Tables::Ready(Box::new(tables))
            }
            Err(missing) => Tables::Missing(missing),
        };
        Ok(Self { ebpf, pin_dir: pin_dir.to_path_buf(), attachments: Vec::new(), tables, conns, old_progs })
    }

    /// Uses `tunnel` rather than the kernel's routes to find TUN source addresses.
    pub fn set_tunnel_source(&mut self, tunnel: Box<dyn TunnelSource>) {
        if let Tables::Ready(tables) = &mut self.tables {
            tables.set_tunnel_source(tunnel);
        }
    }

    /// Attaches the program to `interface` through a link pinned under `links/`, or, when an
    /// earlier run left such a link, swaps this program into it atomically (`mode` is then
    /// ignored: the link keeps its mode).
    pub fn attach(&mut self, interface: &str, mode: AttachMode) -> Result<Attachment, DataplaneError> {
        let links = self.pin_dir.join(LINKS_DIR);
        std::fs::create_dir_all(&links)
            .map_err(|e| DataplaneError::PinDirectory { path: links.clone(), reason: e.to_string() })?;
        let pin = links.join(interface);
        let program = lb_program(&mut self.ebpf)?;
        if pin.exists() {
            let adopted = PinnedLink::from_pin(&pin)
                .map_err(|e| e.to_string())
                .and_then(|pinned| XdpLink::try_from(FdLink::from(pinned)).map_err(|e| e.to_string()));
            match adopted {
                Ok(link) => {
                    program
                        .attach_to_link(link)
                        .map_err(|e| program_error("replace", LB_XDP, Some(interface), e))?;
                    let attachment = Attachment { interface: interface.to_owned(), mode: None };
                    self.attachments.push(attachment.clone());
                    return Ok(attachment);
                }
                Err(e) => {
                    warn!("{}: unusable pinned link ({e}); attaching afresh", pin.display());
                    let _ = std::fs::remove_file(&pin);
                }
            }
        }
        let used = match mode {
            AttachMode::Driver => attach(program, interface, XdpMode::Driver)?,
            AttachMode::Generic => attach(program, interface, XdpMode::Skb)?,
            AttachMode::Auto => match attach(program, interface, XdpMode::Driver) {
                Ok(mode) => mode,
                Err(driver_error) => {
                    warn!(
                        "{interface}: native XDP failed ({}), falling back to generic mode",
                        error_chain(&driver_error)
                    );
                    attach(program, interface, XdpMode::Skb)?
                }
            },
        };
        let (used, id) = used;
        let link = program
            .take_link(id)
            .map_err(|e| program_error("take the link of", LB_XDP, Some(interface), e))?;
        match FdLink::try_from(link) {
            Ok(link) => {
                link.pin(&pin).map_err(|e| DataplaneError::PinDirectory {
                    path: pin.clone(),
                    reason: format!("pinning the link: {e}"),
                })?;
            }
            // A netlink attachment (no bpf_link on this kernel): it stays attached until
            // detached, and cannot be handed to the next run.
            Err(e) => warn!("{interface}: the attachment cannot be pinned ({e}); it ends with lbd"),
        }
        let attachment = Attachment { interface: interface.to_owned(), mode: Some(used) };
        self.attachments.push(attachment.clone());
        Ok(attachment)
    }

    /// Detaches the program from interfaces an earlier run attached it to and `keep` does not
    /// name (their pinned links are removed). Returns those interfaces.
    pub fn detach_others(&self, keep: &[String]) -> Vec<String> {
        let links = self.pin_dir.join(LINKS_DIR);
        let Ok(entries) = std::fs::read_dir(&links) else { return Vec::new() };
        let mut detached = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if keep.contains(&name) {
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => detached.push(name),
                Err(e) => warn!("removing pinned link {}: {e}", entry.path().display()),
            }
        }
        detached
    }

    /// The interfaces the program is attached to.
    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// The directory where the maps are pinned.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// The outcome counters, summed over CPUs.
    pub fn stats(&self) -> Result<GlobalStats, DataplaneError> {
        let map =
            self.ebpf.map(GLOBAL_STATS).ok_or(DataplaneError::Missing { kind: "map", name: GLOBAL_STATS })?;
        read_stats(map)
    }

    /// Detaches the program and removes the pins: the orderly end of the data plane. (A
    /// daemon that means to come back and adopt its flows calls [`XdpDataplane::release`].)
    pub fn remove(self) -> Result<(), DataplaneError> {
        let Self { ebpf, pin_dir, tables, .. } = self;
        // Dropping the Ebpf closes every link it owns; a pinned link goes with its pin.
        drop(ebpf);
        drop(tables);
        let links = pin_dir.join(LINKS_DIR);
        if let Err(e) = std::fs::remove_dir_all(&links)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!("removing pinned links {}: {e}", links.display());
        }
        for name in lb_common::maps::PINNED {
            let pin = pin_dir.join(name);
            if let Err(e) = std::fs::remove_file(&pin)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                warn!("removing pin {}: {e}", pin.display());
            }
        }
        Ok(())
    }

    /// Lets go of the data plane without touching it (`-I`, `--dont-release-ipvs`): the
    /// program stays attached through its pinned links and keeps forwarding with the tables as
    /// they are, until a new daemon adopts them.
    pub fn release(self) {
        drop(self);
    }

    fn tables(&self) -> Result<&TableDataplane<XdpMaps>, DataplaneError> {
        match &self.tables {
            Tables::Ready(tables) => Ok(tables),
            Tables::Missing(name) => Err(DataplaneError::Missing { kind: "map", name }),
        }
    }
}

impl Dataplane for XdpDataplane {
    fn apply(&mut self, desired: &DesiredState) -> Result<ApplyReport, DataplaneError> {
        match &mut self.tables {
            Tables::Ready(tables) => tables.apply(desired),
            Tables::Missing(name) => Err(DataplaneError::Missing { kind: "map", name }),
        }
    }

    fn service_stats(&self) -> Result<Vec<ServiceCounters>, DataplaneError> {
        self.tables()?.service_stats()
    }
}

/// The load balancer's tables: the pinned maps, typed.
pub struct XdpMaps {
    services: HashMap<MapData, ServiceKey, Service>,
    reals: Array<MapData, Real>,
    slots: Array<MapData, u32>,
    laddrs: Array<MapData, LocalAddr>,
    settings: Array<MapData, Settings>,
    service_stats: PerCpuArray<MapData, ServiceStats>,
    real_stats: PerCpuArray<MapData, RealStats>,
    /// Absent from objects built before the least-connection schedulers.
    real_active: Option<Array<MapData, u64>>,
    limits: Limits,
    cpus: usize,
}

impl std::fmt::Debug for XdpMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpMaps")
            .field("limits", &self.limits)
            .field("cpus", &self.cpus)
            .finish_non_exhaustive()
    }
}

/// What a map must look like: its key and value sizes.
struct Shape {
    name: &'static str,
    key: usize,
    value: usize,
}

impl Shape {
    const fn of<K, V>(name: &'static str) -> Self {
        Self { name, key: size_of::<K>(), value: size_of::<V>() }
    }
}

impl XdpMaps {
    /// Takes the table maps out of `ebpf`, checking that each (perhaps pinned by an earlier
    /// run) has the shape this build writes. `Ok(Err(name))` when the object lacks a map.
    pub fn take(ebpf: &mut Ebpf) -> Result<Result<Self, &'static str>, DataplaneError> {
        let required = [
            Shape::of::<ServiceKey, Service>(maps::SERVICES),
            Shape::of::<u32, Real>(maps::REALS),
            Shape::of::<u32, u32>(maps::SLOTS),
            Shape::of::<u32, LocalAddr>(maps::LADDRS),
            Shape::of::<u32, Settings>(maps::SETTINGS),
            Shape::of::<u32, ServiceStats>(maps::SERVICE_STATS),
            Shape::of::<u32, RealStats>(maps::REAL_STATS),
        ];
        if let Some(missing) = required.iter().find(|s| ebpf.map(s.name).is_none()) {
            return Ok(Err(missing.name));
        }
        let mut entries = std::collections::HashMap::new();
        for shape in required.iter().chain([&Shape::of::<u32, u64>(maps::REAL_ACTIVE)]) {
            if let Some(map) = ebpf.map(shape.name) {
                entries.insert(shape.name, check(shape, map)?);
            }
        }
        let max = |name: &str| entries.get(name).copied().unwrap_or(u32::MAX);
        let limits = Limits {
            service_ids: (max(maps::SLOTS) / SLOTS_PER_SERVICE).min(max(maps::SERVICE_STATS)),
            services: max(maps::SERVICES),
            real_ids: max(maps::REALS).min(max(maps::REAL_STATS)).min(max(maps::REAL_ACTIVE)),
            laddr_groups: max(maps::LADDRS) / MAX_LADDRS_PER_GROUP,
        };
        let cpus = aya::util::nr_cpus().map_err(|(path, source)| DataplaneError::Cpus { path, source })?;
        Ok(Ok(Self {
            services: typed(ebpf, maps::SERVICES, HashMap::try_from)?,
            reals: typed(ebpf, maps::REALS, Array::try_from)?,
            slots: typed(ebpf, maps::SLOTS, Array::try_from)?,
            laddrs: typed(ebpf, maps::LADDRS, Array::try_from)?,
            settings: typed(ebpf, maps::SETTINGS, Array::try_from)?,
            service_stats: typed(ebpf, maps::SERVICE_STATS, PerCpuArray::try_from)?,
            real_stats: typed(ebpf, maps::REAL_STATS, PerCpuArray::try_from)?,
            real_active: match ebpf.map(maps::REAL_ACTIVE) {
                Some(_) => Some(typed(ebpf, maps::REAL_ACTIVE, Array::try_from)?),
                None => None,
            },
            limits,
            cpus,
        }))
    }

    /// Adds `delta` to real `id`'s active connection count (none without the map).
    fn add_active(&mut self, id: u32, delta: i64) -> Result<(), DataplaneError> {
        let Some(active) = &mut self.real_active else { return Ok(()) };
        let count = active.get(&id, 0).map_err(|e| map_error(maps::REAL_ACTIVE, e))?;
        active.set(id, count.wrapping_add_signed(delta), 0).map_err(|e| map_error(maps::REAL_ACTIVE, e))
    }

    fn zeros<T: aya::Pod + Default>(&self, map: &'static str) -> Result<PerCpuValues<T>, DataplaneError> {
        PerCpuValues::try_from(vec![T::default(); self.cpus])
            .map_err(|e| map_error(map, MapError::IoError(e)))
    }
}

/// Makes sure the SYN cookie secret is set: one from getrandom on the first run, the pinned
/// one (left as it is) after a restart, so that cookies sent before it stay valid. Returns
/// whether it wrote one. An object without the map (built before the SYN proxy) needs none.
/// An lbd from before the IPv4 flow table kept IPv4 flows in the wide table, which this program
/// reads for IPv6 only: an upgrade moves them over, so their connections keep their real
/// servers. Returns how many moved.
/// Returns how many moved, and the two tables (kept for the connection sync).
fn move_ipv4_flows(ebpf: &mut Ebpf) -> Result<(usize, Option<Box<ConnMaps>>), DataplaneError> {
    let (Some(wide), Some(narrow)) = (ebpf.take_map(maps::CONNS), ebpf.take_map(maps::CONNS4)) else {
        return Ok((0, None));
    };
    let mut wide: HashMap<MapData, FlowKey, Flow> =
        HashMap::try_from(wide).map_err(|e| map_error(maps::CONNS, e))?;
    let mut narrow: HashMap<MapData, FlowKey4, Flow> =
        HashMap::try_from(narrow).map_err(|e| map_error(maps::CONNS4, e))?;
    let ipv4: Vec<FlowKey> =
        wide.keys().filter_map(Result::ok).filter(|key| key.family == family::IPV4).collect();
    let mut moved = 0;
    for key in ipv4 {
        // Gone meanwhile (expired, evicted): nothing to move.
        let Ok(flow) = wide.get(&key, 0) else { continue };
        narrow.insert(FlowKey4::of(&key), flow, 0).map_err(|e| map_error(maps::CONNS4, e))?;
        let _ = wide.remove(&key);
        moved += 1;
    }
    Ok((moved, Some(Box::new(ConnMaps { wide, narrow }))))
}

/// The connection tables: IPv6 flows in the wide one, IPv4 flows in the narrow one.
struct ConnMaps {
    wide: HashMap<MapData, FlowKey, Flow>,
    narrow: HashMap<MapData, FlowKey4, Flow>,
}

impl std::fmt::Debug for ConnMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnMaps").finish_non_exhaustive()
    }
}

/// The wide key of an IPv4 table key.
fn wide_key(key: &FlowKey4) -> FlowKey {
    FlowKey {
        src: [key.src, 0, 0, 0],
        dst: [key.dst, 0, 0, 0],
        sport: key.sport,
        dport: key.dport,
        proto: key.proto,
        family: family::IPV4,
        pad: 0,
    }
}

/// What a pass of the connection sync did on the backup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncedCounts {
    /// Flows written (or refreshed).
    pub installed: u64,
    /// Flows of services this load balancer does not have.
    pub unknown_service: u64,
    /// Flows of real servers this load balancer does not have.
    pub unknown_real: u64,
    /// FNAT flows, or flows whose method differs from the local service's.
    pub method: u64,
}

impl XdpDataplane {
    /// Every live flow of the connection tables that another load balancer can take over
    /// (ORIGINAL entries of DR, TUN and NAT services; not FNAT). Walks the whole tables.
    pub fn synced_flows(&self) -> Result<Vec<SyncedFlow>, DataplaneError> {
        let (Some(conns), Ok(tables)) = (&self.conns, self.tables()) else { return Ok(Vec::new()) };
        let index = tables.sync_index();
        let mut flows = Vec::new();
        for entry in conns.narrow.iter() {
            let (key, flow) = entry.map_err(|e| map_error(maps::CONNS4, e))?;
            flows.extend(index.flow_of(&wide_key(&key), &flow));
        }
        for entry in conns.wide.iter() {
            let (key, flow) = entry.map_err(|e| map_error(maps::CONNS, e))?;
            flows.extend(index.flow_of(&key, &flow));
        }
        Ok(flows)
    }

    /// Writes the entries that send `flows` to the same real servers as on the load balancer
    /// they came from, refreshing (overwriting) those it has: the master's view is the current
    /// one, and a refresh keeps a long connection's entry from expiring here. The real servers'
    /// active connection counts follow, as the XDP program keeps them for the flows it
    /// schedules (TCP flows not closing count), so that a synced flow that closes after a
    /// takeover does not take a count below zero. (Those counts are read and written back here
    /// while the XDP program may add to them: on a backup, which forwards none of the service's
    /// packets, nothing does.)
    pub fn install_synced(&mut self, flows: &[SyncedFlow]) -> Result<SyncedCounts, DataplaneError> {
        let mut counts = SyncedCounts::default();
        let index = self.tables()?.sync_index();
        let Some(conns) = &mut self.conns else { return Ok(counts) };
        let now = monotonic_coarse_ns();
        let mut active: std::collections::BTreeMap<u32, i64> = std::collections::BTreeMap::new();
        for synced in flows {
            let entries = match index.entries_of(synced, now) {
                Ok(entries) => entries,
                Err(Unsynced::UnknownService) => {
                    counts.unknown_service += 1;
                    continue;
                }
                Err(Unsynced::UnknownReal) => {
                    counts.unknown_real += 1;
                    continue;
                }
                Err(Unsynced::Method) => {
                    counts.method += 1;
                    continue;
                }
            };
            for (key, flow) in entries {
                let before = if is_ipv4(&key) {
                    let narrow = FlowKey4::of(&key);
                    let before = conns.narrow.get(&narrow, 0).ok();
                    conns.narrow.insert(narrow, flow, 0).map_err(|e| map_error(maps::CONNS4, e))?;
                    before
                } else {
                    let before = conns.wide.get(&key, 0).ok();
                    conns.wide.insert(key, flow, 0).map_err(|e| map_error(maps::CONNS, e))?;
                    before
                };
                let counted = |f: &Flow| {
                    f.direction == lb_common::lb::direction::ORIGINAL
                        && key.proto == 6
                        && f.tcp_state != lb_common::lb::tcp_state::CLOSING
                };
                if let Some(before) = before.filter(counted) {
                    *active.entry(before.real).or_default() -= 1;
                }
                if counted(&flow) {
                    *active.entry(flow.real).or_default() += 1;
                }
            }
            counts.installed += 1;
        }
        if let Tables::Ready(tables) = &mut self.tables {
            for (id, delta) in active.into_iter().filter(|(_, d)| *d != 0) {
                tables.io_mut().add_active(id, delta)?;
            }
        }
        Ok(counts)
    }
}

/// `CLOCK_MONOTONIC_COARSE` in nanoseconds: the clock of `bpf_ktime_get_coarse_ns`.
fn monotonic_coarse_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes only `ts`, valid for a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &raw mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

fn synproxy_secret(ebpf: &mut Ebpf) -> Result<bool, DataplaneError> {
    let name = maps::SYNPROXY_SECRET;
    let Some(map) = ebpf.map_mut(name) else { return Ok(false) };
    let mut secret: Array<&mut MapData, SynProxySecret> =
        Array::try_from(map).map_err(|e| map_error(name, e))?;
    if secret.get(&0, 0).map_err(|e| map_error(name, e))?.key != [0, 0] {
        return Ok(false);
    }
    let mut bytes = [0u8; 16];
    let mut filled = 0;
    while filled < bytes.len() {
        let rest = &mut bytes[filled..];
        // SAFETY: getrandom writes at most `rest.len()` bytes into `rest`, which is valid for them.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        match usize::try_from(n) {
            Ok(n) => filled += n,
            Err(_) => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(map_error(name, MapError::IoError(e)));
                }
            }
        }
    }
    let (k0, k1) = bytes.split_at(8);
    let word = |b: &[u8]| u64::from_ne_bytes(b.try_into().unwrap_or([1; 8]));
    let key = SynProxySecret { key: [word(k0), word(k1)] };
    secret.set(0, key, 0).map_err(|e| map_error(name, e))?;
    Ok(true)
}

/// What [`drop_stale_pins`] unpinned.
struct Stale {
    /// What was unpinned and why, for the log.
    dropped: Vec<String>,
    /// The program array, if it was of another shape: opened before it was unpinned.
    progs: Option<MapData>,
}

/// Unpins the maps an earlier lbd left in `pin_dir` with another shape than this build's (key,
/// value or entries: an upgrade that changed a table). The loader reuses a pinned map as it
/// is, and the program would then fail verification, or read fields where they are not.
///
/// The program array is opened before it is unpinned, and returned: the entry point an
/// earlier build left attached tail-calls its full path through it, and the kernel empties a
/// program array when its last user-space reference (here, the pin) goes.
fn drop_stale_pins(pin_dir: &Path) -> Result<Stale, DataplaneError> {
    // A parse of its own (under a millisecond in a release build): aya 0.14's
    // `EbpfLoader::load` reuses a pin whatever its shape, so the check comes before the load,
    // and the loader takes only bytes, which it parses again (no parsed `Object`; a loaded
    // map's definition is private to aya).
    let object = aya_obj::Object::parse(OBJECT)
        .map_err(|e| DataplaneError::Load(Box::new(aya::EbpfError::from(e))))?;
    let mut stale = Stale { dropped: Vec::new(), progs: None };
    for &name in lb_common::maps::PINNED {
        let path = pin_dir.join(name);
        let Some(def) = object.maps.get(name) else { continue };
        if !path.exists() {
            continue;
        }
        let want = (def.key_size(), def.value_size(), def.max_entries());
        let reason = match aya::maps::MapInfo::from_pin(&path) {
            Ok(info) if (info.key_size(), info.value_size(), info.max_entries()) == want => continue,
            Ok(info) => format!(
                "key/value {}/{} bytes, {} entries; this build's: {}/{} bytes, {} entries",
                info.key_size(),
                info.value_size(),
                info.max_entries(),
                want.0,
                want.1,
                want.2
            ),
            Err(e) => format!("unreadable ({e})"),
        };
        if name == maps::PROGS {
            match MapData::from_pin(&path) {
                Ok(old) => stale.progs = Some(old),
                Err(e) => warn!("{}: cannot open the earlier program array ({e})", path.display()),
            }
        }
        std::fs::remove_file(&path).map_err(|e| DataplaneError::PinDirectory {
            path: path.clone(),
            reason: format!("removing a stale pin: {e}"),
        })?;
        stale.dropped.push(format!("{}: pinned by an earlier lbd with {reason}", path.display()));
    }
    Ok(stale)
}

/// Puts this build's full path into an earlier build's program array `old` (index
/// [`FULL_PATH`], where every build has had it), so that the entry point that build left
/// attached keeps reaching a full path until [`XdpDataplane::attach`] swaps this build's entry
/// point into its link: without it, every packet its flow cache did not send went to the
/// kernel meanwhile, and for good if this build failed to attach. The new full path reaches
/// the rest (`lb_xdp_v6`) through this build's own array.
fn bridge_old_progs(ebpf: &mut Ebpf, old: MapData) -> Result<Map, DataplaneError> {
    let full = xdp_program(ebpf, LB_XDP_FULL)?;
    let fd = full.fd().map_err(|e| program_error("take the fd of", LB_XDP_FULL, None, e))?;
    let mut old = Map::ProgramArray(old);
    let mut array = ProgramArray::try_from(&mut old).map_err(|e| map_error(maps::PROGS, e))?;
    array.set(FULL_PATH, fd, 0).map_err(|e| map_error(maps::PROGS, e))?;
    info!(
        "the earlier build's program array now leads to this build's full path until the links are swapped"
    );
    Ok(old)
}

/// The kernel's view of a map: its max_entries, after checking its key and value sizes.
fn check(shape: &Shape, map: &Map) -> Result<u32, DataplaneError> {
    let data = match map {
        Map::Array(d) | Map::HashMap(d) | Map::PerCpuArray(d) | Map::LruHashMap(d) => d,
        _ => {
            return Err(DataplaneError::Incompatible {
                map: shape.name,
                reason: "unexpected map type".into(),
            });
        }
    };
    let info = data.info().map_err(|e| map_error(shape.name, e))?;
    let (key, value) = (info.key_size() as usize, info.value_size() as usize);
    if (key, value) != (shape.key, shape.value) {
        return Err(DataplaneError::Incompatible {
            map: shape.name,
            reason: format!(
                "key/value of {key}/{value} bytes, this build writes {}/{}",
                shape.key, shape.value
            ),
        });
    }
    Ok(info.max_entries())
}

fn typed<M>(
    ebpf: &mut Ebpf,
    name: &'static str,
    convert: impl FnOnce(Map) -> Result<M, MapError>,
) -> Result<M, DataplaneError> {
    let map = ebpf.take_map(name).ok_or(DataplaneError::Missing { kind: "map", name })?;
    convert(map).map_err(|e| map_error(name, e))
}

fn map_error(map: &'static str, e: MapError) -> DataplaneError {
    DataplaneError::Map { map, source: Box::new(e) }
}

/// Whether a map error says the key was not there.
fn not_found(e: &MapError) -> bool {
    match e {
        MapError::KeyNotFound | MapError::ElementNotFound => true,
        MapError::SyscallError(e) => e.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

impl TableIo for XdpMaps {
    fn limits(&self) -> Limits {
        self.limits
    }

    fn write(&mut self, write: &TableWrite) -> Result<(), DataplaneError> {
        let map = write.map();
        let result = match *write {
            TableWrite::Service { key, service } => self.services.insert(key, service, 0),
            TableWrite::RemoveService { key } => match self.services.remove(&key) {
                // Already gone is what was wanted.
                Err(e) if not_found(&e) => Ok(()),
                other => other,
            },
            TableWrite::Real { id, real } => self.reals.set(id, real, 0),
            TableWrite::Slot { index, real } => self.slots.set(index, real, 0),
            TableWrite::LocalAddr { index, addr } => self.laddrs.set(index, addr, 0),
            TableWrite::Settings(settings) => self.settings.set(0, settings, 0),
            TableWrite::ResetServiceStats { id } => {
                let zeros = self.zeros(map)?;
                self.service_stats.set(id, zeros, 0)
            }
            TableWrite::ResetRealStats { id } => {
                let zeros = self.zeros(map)?;
                self.real_stats.set(id, zeros, 0).map_err(|e| map_error(map, e))?;
                match &mut self.real_active {
                    Some(active) => {
                        active.set(id, 0, 0).map_err(|e| map_error(maps::REAL_ACTIVE, e))?;
                        Ok(())
                    }
                    None => Ok(()),
                }
            }
        };
        result.map_err(|e| map_error(map, e))
    }

    fn read_services(&self) -> Result<Vec<(ServiceKey, Service)>, DataplaneError> {
        self.services.iter().collect::<Result<_, _>>().map_err(|e| map_error(maps::SERVICES, e))
    }

    fn read_reals(&self) -> Result<Vec<(u32, Real)>, DataplaneError> {
        let mut reals = Vec::new();
        for id in 1..self.limits.real_ids {
            let real = self.reals.get(&id, 0).map_err(|e| map_error(maps::REALS, e))?;
            if real != Real::default() {
                reals.push((id, real));
            }
        }
        Ok(reals)
    }

    fn read_slots(&self, start: u32, len: u32) -> Result<Vec<u32>, DataplaneError> {
        (start..start.saturating_add(len))
            .map(|i| self.slots.get(&i, 0).map_err(|e| map_error(maps::SLOTS, e)))
            .collect()
    }

    fn read_laddrs(&self, start: u32, len: u32) -> Result<Vec<LocalAddr>, DataplaneError> {
        (start..start.saturating_add(len))
            .map(|i| self.laddrs.get(&i, 0).map_err(|e| map_error(maps::LADDRS, e)))
            .collect()
    }

    fn read_settings(&self) -> Result<Settings, DataplaneError> {
        self.settings.get(&0, 0).map_err(|e| map_error(maps::SETTINGS, e))
    }

    fn read_service_stats(&self, id: u32) -> Result<ServiceStats, DataplaneError> {
        let per_cpu = self.service_stats.get(&id, 0).map_err(|e| map_error(maps::SERVICE_STATS, e))?;
        Ok(per_cpu.iter().fold(ServiceStats::default(), |sum, cpu| ServiceStats {
            packets: sum.packets.wrapping_add(cpu.packets),
            bytes: sum.bytes.wrapping_add(cpu.bytes),
            new_conns: sum.new_conns.wrapping_add(cpu.new_conns),
            no_real: sum.no_real.wrapping_add(cpu.no_real),
        }))
    }

    fn read_real_stats(&self, id: u32) -> Result<RealStats, DataplaneError> {
        let per_cpu = self.real_stats.get(&id, 0).map_err(|e| map_error(maps::REAL_STATS, e))?;
        Ok(per_cpu.iter().fold(RealStats::default(), |sum, cpu| RealStats {
            packets: sum.packets.wrapping_add(cpu.packets),
            bytes: sum.bytes.wrapping_add(cpu.bytes),
            new_conns: sum.new_conns.wrapping_add(cpu.new_conns),
            closed_conns: sum.closed_conns.wrapping_add(cpu.closed_conns),
        }))
    }

    fn read_real_active(&self, id: u32) -> Result<Option<u64>, DataplaneError> {
        match &self.real_active {
            Some(active) => active.get(&id, 0).map(Some).map_err(|e| map_error(maps::REAL_ACTIVE, e)),
            None => Ok(None),
        }
    }
}

/// Sums the per-CPU copies of the `LBD_STATS` map.
pub fn read_stats(map: &aya::maps::Map) -> Result<GlobalStats, DataplaneError> {
    let map_err = |e| DataplaneError::Map { map: GLOBAL_STATS, source: Box::new(e) };
    let array = PerCpuArray::<_, GlobalStats>::try_from(map).map_err(map_err)?;
    let per_cpu = array.get(&0, 0).map_err(map_err)?;
    Ok(per_cpu.iter().fold(GlobalStats::default(), |sum, cpu| sum.merged(cpu)))
}

fn lb_program(ebpf: &mut Ebpf) -> Result<&mut Xdp, DataplaneError> {
    xdp_program(ebpf, LB_XDP)
}

fn xdp_program<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Xdp, DataplaneError> {
    let missing = DataplaneError::Missing { kind: "program", name };
    ebpf.program_mut(name).ok_or(missing)?.try_into().map_err(|e| program_error("find", name, None, e))
}

/// Loads the load balancer's programs of `ebpf` into the kernel, all before any is used: the
/// entry point (`lb_xdp`, the one to attach), the full path and its IPv6 half, which then go
/// into the program array they tail-call (the IPv6 half first, so that the full path finds it
/// from its first packet). The program array stays in `ebpf`: the kernel empties it when its
/// last user-space reference (an fd or a pin) goes.
///
/// On a restart the array is the pinned one (or, after an upgrade that changed its shape, the
/// earlier one gets this full path too: [`bridge_old_progs`]): the entry point an earlier run
/// left attached tail-calls this full path from here on, until [`XdpDataplane::attach`] swaps this entry
/// point into the links, a moment later. Meanwhile the old entry point still serves hits from
/// its own flow cache, which this full path does not update: a state change (FIN, RST) seen
/// then reaches the old cache only when its slot expires (at most a second), as a change on
/// another CPU does.
///
/// Public for the tests and benchmarks, which load the object without the daemon, and which
/// may compare an older build's object, whose full path is one program: an object without
/// `lb_xdp_v6` loads without it.
pub fn load_programs(ebpf: &mut Ebpf) -> Result<(), DataplaneError> {
    lb_program(ebpf)?.load().map_err(|e| program_error("load", LB_XDP, None, e))?;
    let mut fds = Vec::with_capacity(2);
    for (index, name) in [(V6_PATH, LB_XDP_V6), (FULL_PATH, LB_XDP_FULL)] {
        if name == LB_XDP_V6 && ebpf.program(name).is_none() {
            continue;
        }
        let program = xdp_program(ebpf, name)?;
        program.load().map_err(|e| program_error("load", name, None, e))?;
        let fd = program
            .fd()
            .and_then(|fd| {
                fd.try_clone().map_err(|io_error| {
                    ProgramError::SyscallError(aya::sys::SyscallError { call: "dup", io_error })
                })
            })
            .map_err(|e| program_error("take the fd of", name, None, e))?;
        fds.push((index, fd));
    }
    let map = ebpf.map_mut(maps::PROGS).ok_or(DataplaneError::Missing { kind: "map", name: maps::PROGS })?;
    let mut progs = ProgramArray::try_from(map).map_err(|e| map_error(maps::PROGS, e))?;
    for (index, fd) in &fds {
        progs.set(*index, fd, 0).map_err(|e| map_error(maps::PROGS, e))?;
    }
    Ok(())
}

fn attach(
    program: &mut Xdp,
    interface: &str,
    mode: XdpMode,
) -> Result<(XdpMode, aya::programs::xdp::XdpLinkId), DataplaneError> {
    let id =
        program.attach(interface, mode).map_err(|e| program_error("attach", LB_XDP, Some(interface), e))?;
    Ok((mode, id))
}

fn program_error(
    action: &'static str,
    program: &'static str,
    interface: Option<&str>,
    e: ProgramError,
) -> DataplaneError {
    DataplaneError::Program { action, program, interface: interface.map(str::to_owned), source: Box::new(e) }
}

/// An error and its causes on one line, for logs.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        line.push_str(": ");
        line.push_str(&e.to_string());
        cause = e.source();
    }
    line
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    //! The XDP backend against the kernel: apply, read back, adopt after a "restart". Needs
    //! root (to load the object and mount a bpffs); skips, saying so, otherwise. Nothing is
    //! attached to any interface.

    use std::net::IpAddr;

    use nix::mount::{MntFlags, umount2};

    use super::*;
    use crate::dataplane::{
        Algorithm, ForwardingMethod, RealTarget, ServiceAddr, VirtualService, tables::StaticRoutes,
    };

    /// A bpffs on a fresh directory, unmounted and removed on drop.
    struct PinDir(PathBuf);

    impl Drop for PinDir {
        fn drop(&mut self) {
            let _ = umount2(&self.0, MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn desired() -> DesiredState {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let real = |a: &str, weight| RealTarget::new(ip(a), 8080, weight);
        let mut mh = VirtualService::new(ServiceAddr {
            vip: ip("10.0.0.1"),
            port: 80,
            protocol: crate::dataplane::Protocol::Tcp,
        });
        mh.scheduling.algorithm = Algorithm::MaglevHashing;
        mh.reals = vec![real("10.1.0.1", 1), real("10.1.0.2", 2), real("10.1.0.3", 0)];
        let mut tun = VirtualService::new(ServiceAddr {
            vip: ip("2001:db8::1"),
            port: 443,
            protocol: crate::dataplane::Protocol::Tcp,
        });
        tun.method = ForwardingMethod::Tun;
        tun.reals = vec![real("2001:db8:1::1", 1)];
        let mut fnat = VirtualService::new(ServiceAddr {
            vip: ip("10.0.0.2"),
            port: 53,
            protocol: crate::dataplane::Protocol::Udp,
        });
        fnat.method = ForwardingMethod::Fnat;
        fnat.local_addresses = vec![ip("10.9.0.1"), ip("10.9.0.2")];
        fnat.reals = vec![real("10.1.0.1", 1)];
        fnat.sorry_server = Some(real("10.1.0.9", 1));
        DesiredState { services: vec![mh, tun, fnat], ..DesiredState::default() }
    }

    fn routes() -> Box<StaticRoutes> {
        Box::new(StaticRoutes {
            default_v6: Some("2001:db8::fe".parse().unwrap()),
            ..StaticRoutes::default()
        })
    }

    #[test]
    fn an_upgrade_moves_ipv4_flows_from_the_wide_table_to_the_ipv4_one() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: loading XDP objects and mounting a bpffs need root");
            return;
        }
        let dir = PinDir(std::env::temp_dir().join(format!("lbd-dataplane-upgrade-{}", std::process::id())));
        drop(XdpDataplane::load(&dir.0).unwrap());
        // What an lbd of before the IPv4 table left: an IPv4 and an IPv6 flow in the wide table.
        let wide_map = || {
            let data = MapData::from_pin(dir.0.join(maps::CONNS)).unwrap();
            HashMap::<MapData, FlowKey, Flow>::try_from(Map::LruHashMap(data)).unwrap()
        };
        let v4 = FlowKey {
            src: [u32::from_ne_bytes([10, 9, 0, 2]), 0, 0, 0],
            dst: [u32::from_ne_bytes([10, 0, 0, 1]), 0, 0, 0],
            sport: 40000u16.to_be(),
            dport: 80u16.to_be(),
            proto: 6,
            family: family::IPV4,
            pad: 0,
        };
        let v6 = FlowKey { src: [1, 2, 3, 4], dst: [5, 6, 7, 8], family: family::IPV6, ..v4 };
        let flow = Flow { real: 2, last_seen_ns: 12345, ..Flow::default() };
        let mut wide = wide_map();
        wide.insert(v4, flow, 0).unwrap();
        wide.insert(v6, flow, 0).unwrap();
        drop(wide);

        drop(XdpDataplane::load(&dir.0).unwrap());
        let data = MapData::from_pin(dir.0.join(maps::CONNS4)).unwrap();
        let narrow = HashMap::<MapData, FlowKey4, Flow>::try_from(Map::LruHashMap(data)).unwrap();
        assert_eq!(narrow.get(&FlowKey4::of(&v4), 0).unwrap(), flow);
        let wide = wide_map();
        assert!(wide.get(&v4, 0).is_err(), "moved, not copied");
        assert_eq!(wide.get(&v6, 0).unwrap(), flow, "IPv6 flows stay");
    }

    #[test]
    fn apply_read_back_and_adopt_after_a_restart() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: loading XDP objects and mounting a bpffs need root");
            return;
        }
        let dir = PinDir(std::env::temp_dir().join(format!("lbd-dataplane-test-{}", std::process::id())));

        let mut dataplane = XdpDataplane::load(&dir.0).unwrap();
        dataplane.set_tunnel_source(routes());
        let report = dataplane.apply(&desired()).unwrap();
        assert_eq!(report.services_added, 3);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        assert!(dataplane.apply(&desired()).unwrap().is_noop());
        let stats = dataplane.service_stats().unwrap();
        assert_eq!(stats.len(), 3);
        assert!(stats.iter().all(|s| s.counters == crate::dataplane::Counters::default()));
        let maps = match &dataplane.tables {
            Tables::Ready(tables) => tables.io(),
            Tables::Missing(name) => panic!("object without {name}"),
        };
        assert_eq!(maps.read_settings().unwrap().ready, 1);
        let services = maps.read_services().unwrap();
        assert_eq!(services.len(), 3);
        let reals = maps.read_reals().unwrap();
        assert_eq!(reals.len(), 6, "{reals:?}");

        // A restart: the maps stay pinned, a new daemon adopts them and writes nothing.
        drop(dataplane);
        let mut dataplane = XdpDataplane::load(&dir.0).unwrap();
        dataplane.set_tunnel_source(routes());
        let report = dataplane.apply(&desired()).unwrap();
        assert!(report.is_noop(), "{report:?}");
        let maps = match &dataplane.tables {
            Tables::Ready(tables) => tables.io(),
            Tables::Missing(name) => panic!("object without {name}"),
        };
        let mut again = maps.read_services().unwrap();
        let mut before = services;
        again.sort_by_key(|(_, s)| s.id);
        before.sort_by_key(|(_, s)| s.id);
        assert_eq!(again, before);
        assert_eq!(maps.read_reals().unwrap(), reals);

        // And an empty state empties the tables.
        let report = dataplane.apply(&DesiredState::default()).unwrap();
        assert_eq!((report.services_removed, report.reals_removed), (3, 6));
        dataplane.remove().unwrap();
    }

    fn index_of(index: &crate::dataplane::conns::SyncIndex, addr: ServiceAddr) -> u32 {
        index.services.iter().find(|(_, (a, _))| *a == addr).map(|(id, _)| *id).unwrap()
    }

    fn synced(
        service: ServiceAddr,
        client: IpAddr,
        cport: u16,
        real: IpAddr,
        method: ForwardingMethod,
    ) -> SyncedFlow {
        let tcp_state = lb_common::lb::tcp_state::ESTABLISHED;
        SyncedFlow { service, client: (client, cport), real: (real, 8080), method, tcp_state }
    }

    #[test]
    fn synced_flows_are_written_and_read_back_through_the_kernel_maps() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: loading XDP objects and mounting a bpffs need root");
            return;
        }
        let dir = PinDir(std::env::temp_dir().join(format!("lbd-dataplane-sync-{}", std::process::id())));
        let mut dataplane = XdpDataplane::load(&dir.0).unwrap();
        dataplane.set_tunnel_source(routes());
        let desired = desired();
        dataplane.apply(&desired).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let [mh, tun, fnat] = [0, 1, 2].map(|i| (desired.services[i].addr, desired.services[i].method));
        // NAT flows over every real, the weight-0 one too (its flows continue, as in IPVS).
        let mut flows: Vec<SyncedFlow> = (0..300u16)
            .map(|i| {
                let client = IpAddr::from([10, 9, (i / 250) as u8, (i % 250) as u8 + 1]);
                synced(mh.0, client, 1000 + i, ip(&format!("10.1.0.{}", 1 + i % 3)), mh.1)
            })
            .collect();
        flows.push(synced(tun.0, ip("2001:db8:9::1"), 5000, ip("2001:db8:1::1"), tun.1));
        let taken = flows.clone();
        flows.push(synced(fnat.0, ip("10.9.9.9"), 5000, ip("10.1.0.1"), fnat.1));
        let nowhere = ServiceAddr { port: 81, ..mh.0 };
        flows.push(synced(nowhere, ip("10.9.9.9"), 5001, ip("10.1.0.1"), mh.1));
        flows.push(synced(mh.0, ip("10.9.9.9"), 5002, ip("10.1.0.77"), mh.1));

        let counts = dataplane.install_synced(&flows).unwrap();
        assert_eq!(counts, SyncedCounts { installed: 301, unknown_service: 1, unknown_real: 1, method: 1 });
        let mut back = dataplane.synced_flows().unwrap();
        let order = |f: &SyncedFlow| (f.client, f.service.port);
        back.sort_by_key(order);
        let mut expected = taken;
        expected.sort_by_key(order);
        assert_eq!(back, expected);
        // NAT flows have their reply entries: 2 entries per IPv4 flow in the narrow table.
        let conns = dataplane.conns.as_ref().unwrap();
        assert_eq!(conns.narrow.keys().count(), 600);
        // The reals' active counts follow: 100 TCP flows each (not the reply entries).
        let active = |dataplane: &XdpDataplane, id| match &dataplane.tables {
            Tables::Ready(tables) => tables.io().read_real_active(id).unwrap().unwrap(),
            Tables::Missing(name) => panic!("object without {name}"),
        };
        let index = dataplane.tables().unwrap().sync_index();
        let ids: Vec<u32> = (1..=3)
            .map(|i| index.reals[&(index_of(&index, mh.0), ip(&format!("10.1.0.{i}")), 8080)])
            .collect();
        assert_eq!(ids.iter().map(|&id| active(&dataplane, id)).collect::<Vec<_>>(), vec![100; 3]);
        // Installing again refreshes the same entries and counts nothing twice; a flow that
        // moved to another real server (or closed) moves (or drops) its count.
        assert_eq!(dataplane.install_synced(&flows).unwrap().installed, 301);
        assert_eq!(dataplane.synced_flows().unwrap().len(), 301);
        let mut moved = flows[0];
        moved.real.0 = ip("10.1.0.2");
        let mut closed = flows[1];
        closed.tcp_state = lb_common::lb::tcp_state::CLOSING;
        dataplane.install_synced(&[moved, closed]).unwrap();
        assert_eq!(ids.iter().map(|&id| active(&dataplane, id)).collect::<Vec<_>>(), vec![99, 100, 100]);
        dataplane.remove().unwrap();
    }

    /// The cost of the sync's table walk, per 100,000 flows: `cargo test -p lb-daemon --lib
    /// sync_cost -- --ignored --nocapture` (as root; `cargo xtask bench sync` records it).
    #[test]
    #[ignore = "a measurement: run by cargo xtask bench sync"]
    fn sync_cost_per_100k_flows() {
        const FLOWS: u32 = 100_000;
        let dir =
            PinDir(std::env::temp_dir().join(format!("lbd-dataplane-sync-cost-{}", std::process::id())));
        let mut dataplane = XdpDataplane::load(&dir.0).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let addr = ServiceAddr { vip: ip("10.0.0.5"), port: 80, protocol: crate::dataplane::Protocol::Tcp };
        let mut dr = VirtualService::new(addr);
        dr.method = ForwardingMethod::Dr;
        dr.reals = (1..=3).map(|i| RealTarget::new(ip(&format!("10.1.0.{i}")), 8080, 1)).collect();
        dataplane.apply(&DesiredState { services: vec![dr], ..DesiredState::default() }).unwrap();
        let flows: Vec<SyncedFlow> = (0..FLOWS)
            .map(|i| {
                let client = IpAddr::from([10, 200 + (i >> 16) as u8, (i >> 8) as u8, i as u8]);
                synced(
                    addr,
                    client,
                    1024 + (i % 50_000) as u16,
                    ip(&format!("10.1.0.{}", 1 + i % 3)),
                    ForwardingMethod::Dr,
                )
            })
            .collect();
        let best = |f: &mut dyn FnMut()| {
            (0..3)
                .map(|_| {
                    let t = std::time::Instant::now();
                    f();
                    t.elapsed()
                })
                .min()
                .unwrap()
        };
        let fresh = std::time::Instant::now();
        assert_eq!(dataplane.install_synced(&flows).unwrap().installed, u64::from(FLOWS));
        let install = fresh.elapsed();
        let known =
            best(&mut || assert_eq!(dataplane.install_synced(&flows).unwrap().installed, u64::from(FLOWS)));
        let conns = dataplane.conns.as_ref().unwrap();
        let raw = best(&mut || assert_eq!(conns.narrow.iter().count(), FLOWS as usize));
        let walk = best(&mut || assert_eq!(dataplane.synced_flows().unwrap().len(), FLOWS as usize));
        let found = dataplane.synced_flows().unwrap();
        let conns: Vec<_> = found.iter().map(|f| crate::sync::to_conn(f, 900)).collect();
        let mut messages = 0;
        let encode = best(&mut || messages = crate::sync::wire::encode(1, &conns, 1472).len());
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        println!(
            "SYNC-COST flows={FLOWS} raw_iter_ms={:.1} walk_ms={:.1} encode_ms={:.1} messages={messages} install_ms={:.1} known_ms={:.1}",
            ms(raw),
            ms(walk),
            ms(encode),
            ms(install),
            ms(known)
        );
        dataplane.remove().unwrap();
    }
}
