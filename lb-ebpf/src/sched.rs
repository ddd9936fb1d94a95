//! Picking a real server for a new flow.
//!
//! The hash and round-robin schedulers index the service's slot row, which user space fills
//! with weights applied (Maglev table, weighted rings, interleaved wrr sequence); the
//! least-connection schedulers scan the row's reals and their shared active counts.

use core::{
    intrinsics::{AtomicOrdering, atomic_xadd},
    mem::MaybeUninit,
};

use aya_ebpf::{cty::c_void, helpers::generated::bpf_loop};
use lb_common::lb::{
    LblcKey, MAX_LC_SCAN, Persist, PersistKey, Real, SLOTS_PER_SERVICE, Scheduler, Service, service_flags,
};

use crate::{
    maps::{LBD_LBLC, LBD_PERSIST, LBD_REAL_ACTIVE, LBD_REALS, LBD_RR, LBD_SLOTS},
    mem,
    parse::Headers,
};

/// Mixes one word into a hash (multiply-xorshift; good spread, cheap in BPF).
#[inline(always)]
pub(crate) fn mix(h: u32, w: u32) -> u32 {
    let mut x = (h ^ w).wrapping_mul(0x9e37_79b1);
    x ^= x >> 15;
    x = x.wrapping_mul(0x85eb_ca77);
    x ^ (x >> 13)
}

/// Hash of an address (all four words).
#[inline(always)]
pub(crate) fn hash_addr(seed: u32, a: &[u32; 4]) -> u32 {
    mix(mix(mix(mix(seed, a[0]), a[1]), a[2]), a[3])
}

/// A hash seed from the service address the packet is for (VIP and port).
#[inline(always)]
fn service_seed(h: &Headers) -> u32 {
    mix(h.key.dst[0] ^ h.key.dst[1] ^ h.key.dst[2] ^ h.key.dst[3], u32::from(h.key.dport))
}

/// The real with id `id`, copied. A cleared entry (family 0: a removed real) is none.
#[inline(always)]
pub(crate) fn real(id: u32) -> Option<Real> {
    real_ref(id).copied()
}

/// The real with id `id`, in the map. A cleared entry (family 0: a removed real) is none, so
/// a stale flow of a removed real is dropped, never sent to 0.0.0.0.
#[inline(always)]
pub(crate) fn real_ref(id: u32) -> Option<&'static Real> {
    if id == 0 {
        return None;
    }
    LBD_REALS.get(id).filter(|r| r.family != 0)
}

/// Active connections of real `id`. A count that went below zero (flows of an earlier owner
/// of the id closing) wraps to huge values: read as zero.
#[inline(always)]
fn active(id: u32) -> u64 {
    let count = LBD_REAL_ACTIVE.get(id).copied().unwrap_or(0);
    if count > i64::MAX as u64 { 0 } else { count }
}

/// Adds `delta` (two's complement) to real `id`'s active count, atomically.
#[inline(always)]
pub(crate) fn add_active(id: u32, delta: u64) {
    if let Some(ptr) = LBD_REAL_ACTIVE.get_ptr_mut(id) {
        // SAFETY: an array map value: valid and 8-byte aligned; shared between CPUs, so only
        // touched atomically. (core's AtomicU64 has no fetch_add on the BPF target; the
        // intrinsic lowers to BPF's atomic add, `lock *(u64 *)(r + 0) += r`.)
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(ptr, delta) };
    }
}

#[inline(always)]
fn slot(svc: &Service, index: u32) -> u32 {
    LBD_SLOTS.get(svc.id * SLOTS_PER_SERVICE + index).copied().unwrap_or(0)
}

/// Picks a real for a new flow of `svc`; 0 when none is available.
///
/// Not inlined: a BPF-to-BPF call keeps its stack frame apart from the caller's (512 bytes
/// in all).
#[inline(never)]
pub(crate) fn schedule(svc: &Service, h: &Headers) -> u32 {
    let persistent = svc.flags & service_flags::PERSISTENT != 0;
    // Computed whether used or not: a zeroed `PersistKey` would be a byte-at-a-time `memset`
    // (see crate::mem).
    let m = &svc.persistence_mask;
    let pkey = PersistKey {
        client: [h.key.src[0] & m[0], h.key.src[1] & m[1], h.key.src[2] & m[2], h.key.src[3] & m[3]],
        service: svc.id,
    };
    let now = if persistent { crate::clock::now_ns() } else { 0 };
    if persistent && let Some(entry) = LBD_PERSIST.get_ptr_mut(&pkey) {
        // SAFETY: a hash map value pointer from a successful lookup; LRU eviction may recycle
        // it concurrently, in which case we read another client's real: harmless.
        let entry = unsafe { &mut *entry };
        let fresh =
            now.saturating_sub(entry.last_seen_ns) < u64::from(svc.persistence_timeout) * 1_000_000_000;
        if fresh && real(entry.real).is_some_and(|r| r.weight > 0) {
            entry.last_seen_ns = now;
            return entry.real;
        }
    }
    let len = svc.slots_len;
    if len == 0 {
        return 0;
    }
    let with_port = svc.flags & service_flags::HASH_PORT != 0;
    let chosen = match Scheduler::from_u8(svc.scheduler) {
        Some(Scheduler::RoundRobin) | None => {
            let Some(pos) = LBD_RR.get_ptr_mut(svc.id) else { return 0 };
            // One rotation shared by all CPUs. A plain read and write, not an atomic
            // fetch-and-add: the BPF backend emits the add without BPF_FETCH here and then
            // reads a stale register. Two CPUs racing may pick the same slot once; the rotation
            // carries on.
            // SAFETY: an array map value: valid and aligned.
            let current = unsafe { pos.read_volatile() };
            // SAFETY: as above.
            unsafe { pos.write_volatile(current.wrapping_add(1)) };
            slot(svc, (current % u64::from(len)) as u32)
        }
        Some(Scheduler::SourceHash) | Some(Scheduler::Maglev) => {
            // Seeded by the service's address, not its id: two load balancers with the same
            // tables send a client to the same real (Maglev's point), across restarts too.
            let mut hash = hash_addr(service_seed(h), &h.key.src);
            if with_port {
                hash = mix(hash, u32::from(h.key.sport));
            }
            slot(svc, hash % len)
        }
        Some(Scheduler::DestinationHash) => slot(svc, hash_addr(service_seed(h), &h.key.dst) % len),
        Some(Scheduler::LeastConn) => least_conn(svc, len, false),
        Some(Scheduler::WeightedLeastConn) => least_conn(svc, len, true),
        Some(Scheduler::LocalityLeastConn) => locality(svc, h, len),
    };
    if chosen != 0 && persistent {
        let entry = Persist { last_seen_ns: now, real: chosen, pad: 0 };
        let _ = LBD_PERSIST.insert(&pkey, &entry, 0);
    }
    chosen
}

/// State of a least-connection scan, shared with [`least_conn_step`].
#[repr(C)]
struct LeastConnScan {
    row: u32,
    weighted: u32,
    best: u32,
    pad: u32,
    best_active: u64,
    best_weight: u64,
}

/// The real with the fewest active connections (per unit of weight if `weighted`).
///
/// The scan runs under `bpf_loop`, whose callback the verifier checks once, rather than as
/// an unrolled loop it would walk `MAX_LC_SCAN` times on every path.
#[inline(always)]
fn least_conn(svc: &Service, len: u32, weighted: bool) -> u32 {
    let mut scan = MaybeUninit::<LeastConnScan>::uninit();
    let p = scan.as_mut_ptr();
    // SAFETY: `p` points to `scan`: zeroed (a struct literal with zeros is a byte-at-a-time
    // memset, see crate::mem), then its non-zero fields set.
    unsafe {
        mem::zero(p);
        (*p).row = svc.id * SLOTS_PER_SERVICE;
        (*p).weighted = u32::from(weighted);
        (*p).best_weight = 1;
    }
    let count = if len < MAX_LC_SCAN { len } else { MAX_LC_SCAN };
    // SAFETY: the callback is a BPF function of the expected signature; the context points to
    // `scan`, which outlives the call.
    unsafe {
        bpf_loop(count, least_conn_step as *mut c_void, p.cast(), 0);
        (*p).best
    }
}

/// One step of [`least_conn`]: slot `i` of the row.
extern "C" fn least_conn_step(i: u32, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the context given, a LeastConnScan on the caller's stack.
    let scan = unsafe { &mut *ctx.cast::<LeastConnScan>() };
    let id = LBD_SLOTS.get(scan.row + i).copied().unwrap_or(0);
    let Some(r) = real_ref(id) else { return 0 };
    if r.weight == 0 {
        return 0;
    }
    let a = active(id);
    let w = if scan.weighted != 0 { u64::from(r.weight) } else { 1 };
    // a / w < best_active / best_weight, without division.
    if scan.best == 0 || a * scan.best_weight < scan.best_active * w {
        scan.best = id;
        scan.best_active = a;
        scan.best_weight = w;
    }
    0
}

/// lblc: the destination's previous real while it is not overloaded (more active connections
/// than twice its weight, as IPVS), else the weighted least-connection choice.
#[inline(always)]
fn locality(svc: &Service, h: &Headers, len: u32) -> u32 {
    let key = LblcKey { dst: h.key.dst, service: svc.id };
    if let Some(ptr) = LBD_LBLC.get_ptr(&key) {
        // SAFETY: a value pointer from a successful lookup.
        let id = unsafe { *ptr };
        if let Some(r) = real(id)
            && r.weight > 0
            && active(id) <= 2 * u64::from(r.weight)
        {
            return id;
        }
    }
    let id = least_conn(svc, len, true);
    if id != 0 {
        let _ = LBD_LBLC.insert(&key, &id, 0);
    }
    id
}
