//! lbd's XDP entry points.
//!
//! This file holds the `#[xdp]` entry points and the outcome accounting only: parsing lives in
//! [`parse`], the balancing path in [`balancer`] (with [`sched`], [`nat`], [`encap`],
//! [`forward`]), maps in [`maps`]. Every packet gets exactly one [`Outcome`], which names both
//! the XDP action and the counter it bumps in `LBD_STATS`.
#![no_std]
#![no_main]
// Atomic add on shared map values (see sched::add_active).
#![feature(core_intrinsics)]
#![expect(internal_features, reason = "core_intrinsics: the only atomic add the BPF target offers")]
#![expect(
    clippy::needless_borrows_for_generic_args,
    reason = "map keys go by reference: a by-value key is one more copy on a 512-byte stack"
)]

mod balancer;
mod bench;
mod cache;
mod clock;
mod csum;
mod encap;
mod forward;
mod icmp;
mod maps;
mod mem;
mod nat;
mod parse;
mod sched;
mod synproxy;
mod toa;

use core::mem::MaybeUninit;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::stats::GlobalStats;

use crate::parse::{EtherType, Frame, Headers, ParseError};

/// What happened to a packet; each maps to one outcome counter of [`GlobalStats`].
#[derive(Clone, Copy)]
pub(crate) enum Outcome {
    PassNoService,
    PassFragment,
    PassNoNeigh,
    PassNotReady,
    PassTooBig,
    FwdTx,
    FwdRedirect,
    DropMalformed,
    DropNoReal,
    DropNoRoute,
    DropNoLaddr,
    DropResize,
    DropBadCookie,
    DropSynproxyEarly,
}

impl Outcome {
    #[inline(always)]
    fn action(self) -> u32 {
        match self {
            Self::PassNoService
            | Self::PassFragment
            | Self::PassNoNeigh
            | Self::PassNotReady
            | Self::PassTooBig => xdp_action::XDP_PASS,
            Self::FwdTx => xdp_action::XDP_TX,
            Self::FwdRedirect => xdp_action::XDP_REDIRECT,
            Self::DropMalformed
            | Self::DropNoReal
            | Self::DropNoRoute
            | Self::DropNoLaddr
            | Self::DropResize
            | Self::DropBadCookie
            | Self::DropSynproxyEarly => xdp_action::XDP_DROP,
        }
    }

    #[inline(always)]
    fn count(self, s: &mut GlobalStats) {
        match self.action() {
            xdp_action::XDP_PASS => s.pass += 1,
            xdp_action::XDP_DROP => s.drop += 1,
            _ => s.fwd += 1,
        }
        match self {
            Self::PassNoService => s.pass_no_service += 1,
            Self::PassFragment => s.pass_fragment += 1,
            Self::PassNoNeigh => s.pass_no_neigh += 1,
            Self::PassNotReady => s.pass_not_ready += 1,
            Self::PassTooBig => s.pass_too_big += 1,
            Self::FwdTx => s.fwd_tx += 1,
            Self::FwdRedirect => s.fwd_redirect += 1,
            Self::DropMalformed => s.drop_malformed += 1,
            Self::DropNoReal => s.drop_no_real += 1,
            Self::DropNoRoute => s.drop_no_route += 1,
            Self::DropNoLaddr => s.drop_no_laddr += 1,
            Self::DropResize => s.drop_resize += 1,
            Self::DropBadCookie => s.drop_bad_cookie += 1,
            Self::DropSynproxyEarly => s.drop_synproxy_early += 1,
        }
    }
}

/// The load balancer, attached to every interface that carries virtual services: the entry
/// point. It sends the IPv4 packets of flows in its flow cache ([`balancer::cached`]) and
/// tail-calls [`lb_xdp_v6`] for untagged IPv6, [`lb_xdp_full`] for everything else.
///
/// Programs apart from the full path because the verifier walks each alone: with the cache's
/// fast path ahead of the full path in one program, every way out of the fast path started
/// another walk of the full path, past the verifier's limit of 1M instructions. A tail call
/// costs a few nanoseconds on the packets the cache does not send; the cached ones make no
/// call at all.
#[xdp]
pub fn lb_xdp(ctx: XdpContext) -> u32 {
    let Some(stats) = maps::global_stats() else { return xdp_action::XDP_PASS };
    stats.rx_packets += 1;
    stats.rx_bytes += (ctx.data_end() - ctx.data()) as u64;
    // An untagged IPv6 frame goes straight to the IPv6 half of the full path (one tail call
    // and one Ethernet parse fewer); the full path hands tagged IPv6 on. Checked first: after
    // the IPv4 cache's miss, the check cost that cache's hits 5-7 ns in spilled registers.
    if Frame::new(ctx.data(), ctx.data_end()).untagged_ipv6() {
        // SAFETY: a tail call only replaces this program with `lb_xdp_v6` on the same context.
        unsafe { maps::LBD_PROGS.tail_call(&ctx, lb_common::programs::V6_PATH) };
    }
    if let Some(outcome) = balancer::cached(&ctx, stats) {
        return finish(stats, outcome);
    }
    // SAFETY: a tail call only replaces this program with `lb_xdp_full` on the same context.
    unsafe { maps::LBD_PROGS.tail_call(&ctx, lb_common::programs::FULL_PATH) };
    // Only when the daemon has not put the full path in the program array: the kernel's.
    finish(stats, Outcome::PassNotReady)
}

/// The load balancer's full path for IPv4, reached from [`lb_xdp`] by a tail call (never
/// attached): parsing, the connection table, scheduling, every method, ICMP, the SYN proxy. An
/// IPv6 packet goes on to [`lb_xdp_v6`] by another tail call. The entry point has counted the
/// packet as received.
///
/// One program per family because the verifier walks the full path once per way the headers
/// can be laid out: with both families in one program it walked 94 % of its limit of 1M
/// instructions, each family about half (`lb-bench-xdp verifier`).
#[xdp]
pub fn lb_xdp_full(ctx: XdpContext) -> u32 {
    full_path::<false>(&ctx)
}

/// The load balancer's full path for IPv6, reached by a tail call from [`lb_xdp`] (untagged
/// frames) or [`lb_xdp_full`] (tagged ones): the IPv6 flow cache ([`balancer::cached6`]),
/// then the full path.
#[xdp]
pub fn lb_xdp_v6(ctx: XdpContext) -> u32 {
    full_path::<true>(&ctx)
}

/// The full path of one family: the IPv4 program, or (`V6`) the IPv6 one. The IPv4 program
/// hands IPv6 on; the IPv6 program sees nothing else.
#[inline(always)]
fn full_path<const V6: bool>(ctx: &XdpContext) -> u32 {
    let mut frame = Frame::new(ctx.data(), ctx.data_end());
    let Some(stats) = maps::global_stats() else { return xdp_action::XDP_PASS };
    let mut headers = MaybeUninit::<Headers>::uninit();
    let parsed = match frame.ether_type() {
        Ok((EtherType::Ipv4, l3)) if !V6 => {
            stats.ipv4 += 1;
            frame.ipv4(l3, &mut headers)
        }
        Ok((EtherType::Ipv6, l3)) if V6 => {
            stats.ipv6 += 1;
            frame.ipv6(l3, &mut headers)
        }
        Ok((EtherType::Ipv6, _)) => {
            // SAFETY: a tail call only replaces this program with `lb_xdp_v6` on the same context.
            unsafe { maps::LBD_PROGS.tail_call(ctx, lb_common::programs::V6_PATH) };
            // Only when the daemon has not put the IPv6 half in the program array.
            return finish(stats, Outcome::PassNotReady);
        }
        Ok(_) => {
            stats.other_l3 += 1;
            return finish(stats, Outcome::PassNoService);
        }
        Err(e) => Err(e),
    };
    if parsed.is_err() {
        return finish(stats, Outcome::DropMalformed);
    }
    // SAFETY: ipv4 / ipv6 returned Ok, so they wrote `headers`.
    let h = unsafe { headers.assume_init_mut() };
    if V6 {
        if let Some(outcome) = balancer::cached6(ctx, h, stats) {
            return finish(stats, outcome);
        }
        // The packet is as it was, but the call may have resized it for the verifier, which
        // forgets every packet pointer after one.
        frame = Frame::new(ctx.data(), ctx.data_end());
    }
    let outcome = balancer::balance::<V6>(ctx, &mut frame, h, stats);
    finish(stats, outcome)
}

/// Counts the packet's outcome and returns its XDP action.
#[inline(always)]
fn finish(stats: &mut GlobalStats, outcome: Outcome) -> u32 {
    outcome.count(stats);
    outcome.action()
}

/// For real servers behind a TUN service: strips an IPIP or IPv6-in-IPv6 header and passes the
/// inner packet to the kernel, which delivers it to the VIP held on lo. Everything else passes
/// untouched. (Like Katran's decap; this kernel has no ipip module.)
#[xdp]
pub fn lb_decap(ctx: XdpContext) -> u32 {
    try_decap(&ctx).unwrap_or(xdp_action::XDP_PASS)
}

#[inline(always)]
fn try_decap(ctx: &XdpContext) -> Result<u32, ParseError> {
    let frame = Frame::new(ctx.data(), ctx.data_end());
    let (ether_type, l3) = frame.ether_type()?;
    let (outer_len, inner_ethertype) = match ether_type {
        EtherType::Ipv4 => {
            let mut h = MaybeUninit::<Headers>::uninit();
            frame.ipv4(l3, &mut h)?;
            // SAFETY: ipv4 returned Ok, so it wrote `h`.
            let h = unsafe { h.assume_init_ref() };
            if h.key.proto != encap::IPPROTO_IPIP || h.fragment || h.l4 != l3 + 20 {
                return Ok(xdp_action::XDP_PASS);
            }
            (20, 0x0800)
        }
        EtherType::Ipv6 => {
            let [_, next] = frame.bytes::<2>(l3 + 5)?;
            if next != encap::IPPROTO_IPV6 {
                return Ok(xdp_action::XDP_PASS);
            }
            (40, 0x86dd)
        }
        EtherType::Other => return Ok(xdp_action::XDP_PASS),
    };
    match encap::pop(ctx, l3, outer_len, inner_ethertype) {
        Ok(()) => Ok(xdp_action::XDP_PASS),
        Err(_) => Ok(xdp_action::XDP_DROP),
    }
}

/// The benchmark floor: sends every frame back untouched. `cargo xtask bench xdp` subtracts its
/// BPF_PROG_TEST_RUN cost (the harness's own) from the balancer's.
#[xdp]
pub fn lb_floor(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_TX
}

/// Passes every frame. For the system tests' veths: frames an XDP program sends back with
/// XDP_TX are queued on the peer veth, and the peer is told to poll them only when it has an
/// XDP program of its own (`veth_xdp_flush`); with GRO alone they wait for the next frame the
/// kernel sends through that veth, seconds later or never. Real NICs flush XDP_TX themselves.
#[xdp]
pub fn lb_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // The verifier rejects any reachable panic path, so this is never executed; it exists
    // because no_std binaries must name a handler.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
