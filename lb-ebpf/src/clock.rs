//! The program's clock: flow and persistence timestamps, the next-hop cache's age.

use aya_ebpf::{
    btf_maps::PerCpuArray,
    helpers::generated::{bpf_jiffies64, bpf_ktime_get_coarse_ns},
    macros::btf_map,
};

use crate::maps::per_cpu;

/// The last coarse time read on this CPU and the tick (jiffies) it was read in.
#[repr(C)]
struct Tick {
    jiffies: u64,
    ns: u64,
}

/// This CPU's [`Tick`] (not pinned: a cache, rebuilt by the first packet of every tick).
#[btf_map]
static LBD_CLOCK: PerCpuArray<Tick, 1> = PerCpuArray::new();

/// CLOCK_MONOTONIC in nanoseconds, at the resolution of a timer tick (1 to 10 ms).
///
/// The coarse clock, not `bpf_ktime_get_ns`: that reads the TSC, which costs 30 to 40 ns per
/// call on the virtual machines measured here, as much as the whole budget of an established
/// packet; the coarse one reads the last tick's time. Timeouts are whole seconds. Every
/// timestamp of the program must come from here: two clocks would not compare.
///
/// Even the coarse helper costs about 15 ns here (a seqcount retry loop and a timespec
/// conversion), so its value is cached per CPU with the tick it was read in: `bpf_jiffies64`
/// is a plain load (the verifier inlines it), and the helper runs once per tick and CPU. The
/// kernel advances jiffies just before the coarse time at a tick, so a value read in between
/// is up to one tick old for that tick: monotonic on each CPU, well within the timeouts'
/// resolution. Across CPUs it is not: a time stamped by another CPU may be a tick ahead of
/// this CPU's now, so ages are taken with `saturating_sub` (a stamp from the future is fresh).
#[inline(always)]
pub(crate) fn now_ns() -> u64 {
    // SAFETY: plain helper call (inlined by the verifier).
    let jiffies = unsafe { bpf_jiffies64() };
    let Some(tick) = per_cpu(&LBD_CLOCK, 0) else { return coarse_ns() };
    if tick.jiffies != jiffies || tick.ns == 0 {
        tick.ns = coarse_ns();
        tick.jiffies = jiffies;
    }
    tick.ns
}

#[inline(always)]
fn coarse_ns() -> u64 {
    // SAFETY: plain helper call.
    unsafe { bpf_ktime_get_coarse_ns() }
}
