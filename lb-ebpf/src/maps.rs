//! Every map of the XDP program, declared with BTF so `bpftool map dump` names each field.
//!
//! The names are the symbols; user space pins them by the same names (`lb_common::maps`).
//! Sizes are defaults: the daemon may resize the connection table at load time.

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST, bpf_fib_lookup as FibParams},
    btf_maps::{Array, HashMap, LruHashMap, PerCpuArray, ProgramArray},
    macros::btf_map,
};
use lb_common::{
    lb::{
        DEFAULT_MAX_CONNS, Flow, FlowKey, FlowKey4, LblcKey, LocalAddr, MAX_LADDR_GROUPS,
        MAX_LADDRS_PER_GROUP, MAX_REALS, MAX_SERVICES, Persist, PersistKey, Real, RealStats,
        SLOTS_PER_SERVICE, Service, ServiceKey, ServiceStats, Settings, SynProxySecret, family,
    },
    stats::GlobalStats,
};

use crate::forward::{NextHop, REPLY_HOP_SLOTS};

/// Outcome counters: one [`GlobalStats`] per CPU at index 0.
#[btf_map]
static LBD_STATS: PerCpuArray<GlobalStats, 1> = PerCpuArray::new();

/// The full path (`lb_xdp_full`) at index `lb_common::programs::FULL_PATH`, which the entry
/// point tail-calls, and its IPv6 half (`lb_xdp_v6`) at `lb_common::programs::V6_PATH`; filled
/// and pinned by the daemon.
#[btf_map]
///
/// Eight entries, of which two are used: room for later splits without changing the map's
/// shape (a pinned array of another shape is replaced at an upgrade, see the daemon's
/// `bridge_old_progs`).
pub(crate) static LBD_PROGS: ProgramArray<8> = ProgramArray::new();

/// Global settings, written by the daemon.
#[btf_map]
pub(crate) static LBD_SETTINGS: Array<Settings, 1> = Array::new();

/// Virtual services by VIP, port and protocol.
#[btf_map]
pub(crate) static LBD_SERVICES: HashMap<ServiceKey, Service, { MAX_SERVICES as usize }> = HashMap::new();

/// Real servers by id.
#[btf_map]
pub(crate) static LBD_REALS: Array<Real, { MAX_REALS as usize }> = Array::new();

/// Scheduling rows: `SLOTS_PER_SERVICE` real ids per service id.
#[btf_map]
pub(crate) static LBD_SLOTS: Array<u32, { (MAX_SERVICES * SLOTS_PER_SERVICE) as usize }> = Array::new();

/// FNAT local address pools.
#[btf_map]
pub(crate) static LBD_LADDRS: Array<LocalAddr, { (MAX_LADDR_GROUPS * MAX_LADDRS_PER_GROUP) as usize }> =
    Array::new();

/// The connection table of IPv6 flows: both directions of NAT and FNAT flows, the original
/// direction of DR and TUN flows. Go through [`conn`] and [`conn_insert`], which pick the table
/// by family.
#[btf_map]
static LBD_CONNS: LruHashMap<FlowKey, Flow, { DEFAULT_MAX_CONNS as usize }> = LruHashMap::new();

/// The connection table of IPv4 flows, as [`LBD_CONNS`] with a 16-byte key: an established
/// IPv4 packet hashes and compares 16 bytes instead of 40.
#[btf_map]
static LBD_CONNS4: LruHashMap<FlowKey4, Flow, { DEFAULT_MAX_CONNS as usize }> = LruHashMap::new();

/// The flow of `key` in the connection table of its family.
#[inline(always)]
pub(crate) fn conn(key: &FlowKey) -> Option<*mut Flow> {
    if key.family == family::IPV4 {
        LBD_CONNS4.get_ptr_mut(&FlowKey4::of(key))
    } else {
        LBD_CONNS.get_ptr_mut(key)
    }
}

/// Records `flow` under `key` in the connection table of its family (an LRU: a full table
/// evicts its least recently used flow); with `if_absent`, only if the key is not there
/// (BPF_NOEXIST). Returns whether it was written. Not inlined: new flows only, and its narrow
/// key then stays off the stack frames of the longest call chain.
#[inline(never)]
pub(crate) fn conn_insert(key: &FlowKey, flow: &Flow, if_absent: bool) -> bool {
    let flags = if if_absent { u64::from(BPF_NOEXIST) } else { u64::from(BPF_ANY) };
    if key.family == family::IPV4 {
        LBD_CONNS4.insert(&FlowKey4::of(key), flow, flags).is_ok()
    } else {
        LBD_CONNS.insert(key, flow, flags).is_ok()
    }
}

/// Persistence: which real a (masked) client sticks to, per service.
#[btf_map]
pub(crate) static LBD_PERSIST: LruHashMap<PersistKey, Persist, 65536> = LruHashMap::new();

/// Per-service counters.
#[btf_map]
pub(crate) static LBD_SERVICE_STATS: PerCpuArray<ServiceStats, { MAX_SERVICES as usize }> =
    PerCpuArray::new();

/// Per-real counters.
#[btf_map]
pub(crate) static LBD_REAL_STATS: PerCpuArray<RealStats, { MAX_REALS as usize }> = PerCpuArray::new();

/// Active connections per real, shared by all CPUs (atomic adds).
#[btf_map]
pub(crate) static LBD_REAL_ACTIVE: Array<u64, { MAX_REALS as usize }> = Array::new();

/// Round-robin positions per service, shared by all CPUs: one global rotation, as IPVS does,
/// rather than one per CPU.
#[btf_map]
pub(crate) static LBD_RR: Array<u64, { MAX_SERVICES as usize }> = Array::new();

/// lblc: the real last chosen for a destination.
#[btf_map]
pub(crate) static LBD_LBLC: LruHashMap<LblcKey, u32, 65536> = LruHashMap::new();

/// Routes cached by [`crate::forward::route_cached`]: to the real servers by real id, then
/// [`REPLY_HOP_SLOTS`] for the destinations of replies. Not pinned: a restarted daemon starts
/// with an empty cache.
#[btf_map]
pub(crate) static LBD_NEXT_HOPS: Array<NextHop, { (MAX_REALS + REPLY_HOP_SLOTS) as usize }> = Array::new();

/// The SYN cookie key (pinned; the daemon writes it once, from getrandom).
#[btf_map]
pub(crate) static LBD_SYNPROXY_SECRET: Array<SynProxySecret, 1> = Array::new();

/// Per-CPU hand-over from `synproxy::intercept` to `synproxy::adopt`: `1 << 32 | cookie`
/// while the ACK it accepted is being scheduled, else 0.
#[btf_map]
pub(crate) static LBD_SYNPROXY_PENDING: PerCpuArray<u64, 1> = PerCpuArray::new();

/// Per-CPU scratch for the flow being handled: off the stack, which is 512 bytes for the
/// deepest call chain and nearly full.
#[btf_map]
pub(crate) static LBD_SCRATCH_FLOW: PerCpuArray<Flow, 1> = PerCpuArray::new();

/// Per-CPU scratch for `bpf_fib_lookup`'s parameters (64 bytes off the stack).
#[btf_map]
pub(crate) static LBD_SCRATCH_FIB: PerCpuArray<FibParams, 1> = PerCpuArray::new();

/// Scratch space for [`opaque`].
#[btf_map]
static LBD_SCRATCH: PerCpuArray<u64, 1> = PerCpuArray::new();

/// `value`, made opaque to the verifier by a round trip through a map.
///
/// Verifier workaround: header offsets that are one of a few constants (14, 18 or 22 after
/// VLAN tags; 40, 48, ... after IPv6 extension headers) make the verifier walk the whole rest
/// of the program once per constant, because states with different constants never prune each
/// other. An opaque value bounded by one check is a single range, explored once.
#[inline(always)]
pub(crate) fn opaque(value: usize) -> usize {
    match LBD_SCRATCH.get_ptr_mut(0) {
        Some(slot) => {
            // SAFETY: this CPU's scratch slot, used only for this round trip.
            unsafe {
                core::ptr::write_volatile(slot, value as u64);
                core::ptr::read_volatile(slot) as usize
            }
        }
        None => value,
    }
}

/// This CPU's outcome counters. `None` only if the lookup fails, which the verifier still makes
/// us handle although index 0 of a one-entry array always exists.
#[inline(always)]
pub(crate) fn global_stats() -> Option<&'static mut GlobalStats> {
    let ptr = LBD_STATS.get_ptr_mut(0)?;
    // SAFETY: the pointer comes from a successful per-CPU array lookup: it is valid, aligned,
    // and only this CPU's program invocation (which runs to completion on this CPU) uses it.
    Some(unsafe { &mut *ptr })
}

/// A mutable reference into a per-CPU array slot.
#[inline(always)]
pub(crate) fn per_cpu<T, const N: usize>(map: &PerCpuArray<T, N>, index: u32) -> Option<&'static mut T> {
    let ptr = map.get_ptr_mut(index)?;
    // SAFETY: as in `global_stats`: a per-CPU slot only this invocation uses.
    Some(unsafe { &mut *ptr })
}
