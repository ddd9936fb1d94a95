//! Every map of the XDP program, declared with BTF so `bpftool map dump` names each field.
//!
//! The daemon pins them by name (see `lb_common::maps`).

use aya_ebpf::{btf_maps::PerCpuArray, macros::btf_map};
use lb_common::stats::GlobalStats;

/// Outcome counters: one [`GlobalStats`] per CPU at index 0.
#[btf_map]

static LBD_STATS: PerCpuArray<GlobalStats, 1> = PerCpuArray::new();

/// This CPU's counters. `None` only if the map lookup fails, which the verifier still makes us
/// handle even though index 0 of a one-entry array always exists.
#[inline(always)]
pub(crate) fn global_stats() -> Option<&'static mut GlobalStats> {
    let ptr = LBD_STATS.get_ptr_mut(0)?;
    // SAFETY: the pointer comes from a successful per-CPU array lookup: it is valid, aligned,
    // and only this CPU's program invocation (which runs to completion without preemption
    // by another XDP run on the same CPU) touches this slot.
    Some(unsafe { &mut *ptr })
}
