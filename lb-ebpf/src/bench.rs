//! The end-to-end benchmark's frame generator and receiver (`cargo xtask bench xdp`). They
//! share lbd's object for convenience only: lbd never attaches them, and they touch none of
//! its maps.

use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::{Array, PerCpuArray},
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use lb_common::bench::{FRAME_LEN, GenTemplate, SPORT_OFFSET};

use crate::{csum::Delta, maps::per_cpu, parse::Frame};

/// The frame to send (written by the benchmark).
#[btf_map]
static LBD_BENCH_TEMPLATE: Array<GenTemplate, 1> = Array::new();

/// The generator's position in the flow cycle, per CPU.
#[btf_map]
static LBD_BENCH_SEQ: PerCpuArray<u32, 1> = PerCpuArray::new();

/// Frames received by the sink, per CPU.
#[btf_map]
static LBD_BENCH_RX: PerCpuArray<u64, 1> = PerCpuArray::new();

/// The generator, run by BPF_PROG_TEST_RUN with live frames: the kernel recycles the frames'
/// pages without resetting them and the forwarders rewrite headers in place, so the whole
/// template is written every time; then the source port (and the checksum) of the next flow.
#[xdp]
pub fn lb_bench_gen(ctx: XdpContext) -> u32 {
    let frame = Frame::new(ctx.data(), ctx.data_end());
    let (Some(template), Some(seq), Ok(dst)) =
        (LBD_BENCH_TEMPLATE.get(0), per_cpu(&LBD_BENCH_SEQ, 0), frame.ptr_at::<[u8; FRAME_LEN]>(0))
    else {
        return xdp_action::XDP_ABORTED;
    };
    // Word copies (a byte array copy to packet memory is expanded one byte at a time);
    // volatile loads, which LLVM cannot merge back into such a copy.
    let (src, dst) = (template.frame.as_ptr().cast::<u64>(), dst.cast::<u64>());
    for i in 0..FRAME_LEN / 8 {
        // SAFETY: both are FRAME_LEN bytes long (the template's array, ptr_at); the template is
        // 8-byte aligned (its repr), the packet side written unaligned.
        unsafe { dst.add(i).write_unaligned(src.add(i).read_volatile()) };
    }
    let flows = if template.flows == 0 { 1 } else { template.flows };
    *seq = if *seq + 1 >= flows { 0 } else { *seq + 1 };
    let (Ok(sport), Ok(csum)) =
        (frame.ptr_at::<u16>(SPORT_OFFSET), frame.ptr_at::<u16>(template.csum_offset as usize & 0x3f))
    else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: both in bounds (ptr_at); unaligned accesses.
    unsafe {
        let old = sport.read_unaligned();
        let new = (u16::from_be(old).wrapping_add(*seq as u16)).to_be();
        let mut delta = Delta::default();
        delta.word(old, new);
        sport.write_unaligned(new);
        csum.write_unaligned(delta.apply(csum.read_unaligned()));
    }
    xdp_action::XDP_TX
}

/// The receiver: counts and drops.
#[xdp]
pub fn lb_bench_sink(_ctx: XdpContext) -> u32 {
    if let Some(count) = per_cpu(&LBD_BENCH_RX, 0) {
        *count += 1;
    }
    xdp_action::XDP_DROP
}
