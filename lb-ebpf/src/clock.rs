//! The program's clock: flow and persistence timestamps, the next-hop cache's age.

use aya_ebpf::helpers::generated::bpf_ktime_get_coarse_ns;

/// CLOCK_MONOTONIC in nanoseconds, at the resolution of a timer tick (1 to 10 ms).
///
/// The coarse clock, not `bpf_ktime_get_ns`: that reads the TSC, which costs 30 to 40 ns per
/// call on the virtual machines measured here, as much as the whole budget of an established
/// packet; the coarse one reads the last tick's time. Timeouts are whole seconds. Every
/// timestamp of the program must come from here: two clocks would not compare.
#[inline(always)]
pub(crate) fn now_ns() -> u64 {
    // SAFETY: plain helper call.
    unsafe { bpf_ktime_get_coarse_ns() }
}
