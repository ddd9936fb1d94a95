//! The end-to-end benchmark's frame generator and receiver (`cargo xtask bench xdp`), and two
//! reference middles it measures lbd against in the same run: a plain XDP_REDIRECT forwarder
//! and a stateless DNAT. They share lbd's object for convenience only: lbd never attaches
//! them, and they touch none of its maps.

use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::{Array, DevMap, PerCpuArray},
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use lb_common::bench::{FRAME_LEN, GenTemplate, RefForward, SPORT_OFFSET};

use crate::{
    csum::Delta,
    maps::per_cpu,
    mem::{copy_mac, load16, load32, store16, store32},
    parse::Frame,
};

/// The frame to send (written by the benchmark).
#[btf_map]
static LBD_BENCH_TEMPLATE: Array<GenTemplate, 1> = Array::new();

/// The generator's position in the flow cycle, per CPU.
#[btf_map]
static LBD_BENCH_SEQ: PerCpuArray<u32, 1> = PerCpuArray::new();

/// Frames received by the sink, per CPU.
#[btf_map]
static LBD_BENCH_RX: PerCpuArray<u64, 1> = PerCpuArray::new();

/// What the reference middles rewrite (written by the benchmark).
#[btf_map]
static LBD_BENCH_REF: Array<RefForward, 1> = Array::new();

/// Where the reference middles redirect: index 0.
#[btf_map]
static LBD_BENCH_DEVS: DevMap<1> = DevMap::new();

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

/// Reference middle: the MAC addresses rewritten, XDP_REDIRECT through the device map (the
/// shared notes' "XDP_REDIRECT forwarder").
#[xdp]
pub fn lb_bench_redirect(ctx: XdpContext) -> u32 {
    let frame = Frame::new(ctx.data(), ctx.data_end());
    let (Some(conf), Ok(eth)) = (LBD_BENCH_REF.get(0), frame.ptr_at::<[u8; 12]>(0)) else {
        return xdp_action::XDP_ABORTED;
    };
    let eth = eth.cast::<u8>();
    // SAFETY: 12 bytes in bounds (ptr_at), 2-byte aligned (see `mem`); the MACs are 6 bytes.
    unsafe {
        copy_mac(eth, conf.dmac.as_ptr());
        copy_mac(eth.add(6), conf.smac.as_ptr());
    }
    LBD_BENCH_DEVS.redirect(0, 0).unwrap_or(xdp_action::XDP_ABORTED)
}

/// Reference middle: stateless DNAT (the shared notes' "redirect + stateless DNAT"). An IPv4
/// TCP frame without options for the VIP and port gets the real server's address and port,
/// both checksums updated incrementally, the MAC addresses, and XDP_REDIRECT through the
/// device map; anything else passes.
#[xdp]
pub fn lb_bench_dnat(ctx: XdpContext) -> u32 {
    // Ethernet (14) + IPv4 without options (20) + TCP (20).
    const IP: usize = 14;
    const TCP: usize = IP + 20;
    let frame = Frame::new(ctx.data(), ctx.data_end());
    let (Some(conf), Ok(hdr)) = (LBD_BENCH_REF.get(0), frame.ptr_at::<[u8; TCP + 20]>(0)) else {
        return xdp_action::XDP_ABORTED;
    };
    let p = hdr.cast::<u8>();
    // SAFETY: every access lies in the 54 bytes `ptr_at` checked, at even offsets (2-byte
    // aligned, see `mem`); the configuration's fields are 2-byte aligned in its 4-aligned value.
    unsafe {
        let (ethertype, version, proto) = (load16(p.add(12)), load16(p.add(IP)), load16(p.add(IP + 8)));
        let (daddr, dport) = (load32(p.add(IP + 16)), load16(p.add(TCP + 2)));
        let (vip, vport) = (load32(conf.vip.as_ptr()), load16(conf.vport.as_ptr()));
        // 0x0800 and version 4 with a 20-byte header, protocol 6 (the word's second byte).
        if ethertype != 0x0800u16.to_be() || version & 0xff != 0x45 || proto >> 8 != 6 {
            return xdp_action::XDP_PASS;
        }
        if daddr != vip || dport != vport {
            return xdp_action::XDP_PASS;
        }
        let (real, rport) = (load32(conf.real.as_ptr()), load16(conf.rport.as_ptr()));
        let mut ip = Delta::default();
        ip.dword(daddr, real);
        store32(p.add(IP + 16), real);
        store16(p.add(IP + 10), ip.apply(load16(p.add(IP + 10))));
        let mut tcp = ip;
        tcp.word(dport, rport);
        store16(p.add(TCP + 2), rport);
        store16(p.add(TCP + 16), tcp.apply(load16(p.add(TCP + 16))));
        copy_mac(p, conf.dmac.as_ptr());
        copy_mac(p.add(6), conf.smac.as_ptr());
    }
    LBD_BENCH_DEVS.redirect(0, 0).unwrap_or(xdp_action::XDP_ABORTED)
}
