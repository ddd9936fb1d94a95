//! lbd's XDP entry points.
//!
//! This file holds the `#[xdp]` entry points and the outcome accounting only; parsing lives in
//! [`parse`], map declarations in [`maps`]. Every path returns an XDP action and bumps exactly
//! one named outcome counter in `LBD_STATS`.
#![no_std]
#![no_main]

mod maps;
mod parse;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::stats::GlobalStats;

use crate::parse::{EtherType, Frame};

/// What happened to a packet; each maps to one counter of [`GlobalStats`].
#[derive(Clone, Copy)]
enum Outcome {
    PassIpv4,
    PassIpv6,
    PassOtherL3,
    DropMalformed,
}

impl Outcome {
    #[inline(always)]
    fn action(self) -> u32 {
        match self {
            Self::PassIpv4 | Self::PassIpv6 | Self::PassOtherL3 => xdp_action::XDP_PASS,
            Self::DropMalformed => xdp_action::XDP_DROP,
        }
    }

    #[inline(always)]
    fn count(self, stats: &mut GlobalStats) {
        match self {
            Self::PassIpv4 => {
                stats.ipv4 += 1;
                stats.pass += 1;
            }
            Self::PassIpv6 => {
                stats.ipv6 += 1;
                stats.pass += 1;
            }
            Self::PassOtherL3 => {
                stats.other_l3 += 1;
                stats.pass += 1;
            }
            Self::DropMalformed => stats.drop_malformed += 1,
        }
    }
}

/// The load balancer's XDP program, attached to every interface that carries virtual services.
#[xdp]
pub fn lb_xdp(ctx: XdpContext) -> u32 {
    let frame = Frame::new(ctx.data(), ctx.data_end());
    let outcome = classify(&frame);
    if let Some(stats) = maps::global_stats() {
        stats.rx_packets += 1;
        stats.rx_bytes += frame.len() as u64;
        outcome.count(stats);
    }
    outcome.action()
}

#[inline(always)]
fn classify(frame: &Frame) -> Outcome {
    match frame.ether_type() {
        Err(_) => Outcome::DropMalformed,
        Ok(EtherType::Ipv4) => Outcome::PassIpv4,
        Ok(EtherType::Ipv6) => Outcome::PassIpv6,
        Ok(EtherType::Other(_)) => Outcome::PassOtherL3,
    }
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
