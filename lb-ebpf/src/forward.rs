//! Sending a rewritten packet on its way: a FIB lookup (the kernel's routes and neighbours)
//! gives the egress interface and the MAC addresses; the frame leaves with XDP_TX when that is
//! the interface it came in on, XDP_REDIRECT otherwise.

use aya_ebpf::{
    bindings::bpf_fib_lookup as FibParams,
    helpers::{bpf_fib_lookup, bpf_redirect},
    programs::XdpContext,
};
use lb_common::lb::family;

use crate::parse::{Frame, ParseError};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const BPF_FIB_LKUP_RET_SUCCESS: i64 = 0;
const BPF_FIB_LKUP_RET_NO_NEIGH: i64 = 7;

/// Where a packet goes.
pub(crate) enum Next {
    /// Out of the receiving interface.
    Tx,
    /// Out of another interface.
    Redirect,
    /// Route known, neighbour not resolved yet.
    NoNeighbour,
    /// No route (or the lookup failed).
    NoRoute,
}

/// Looks up the route to `dst` (of `fam`), writes the next hop's MAC and the egress interface's
/// MAC into the frame, and prepares the redirect. Not inlined: its 64-byte lookup struct gets
/// a stack frame of its own.
#[inline(never)]
pub(crate) fn route(ctx: &XdpContext, frame: &Frame, fam: u8, dst: &[u32; 4]) -> Result<Next, ParseError> {
    // SAFETY: bpf_fib_lookup params are plain data; all-zero is a valid start.
    let mut params: FibParams = unsafe { core::mem::zeroed() };
    let ingress = ctx.ingress_ifindex() as u32;
    params.ifindex = ingress;
    if fam == family::IPV4 {
        params.family = AF_INET;
        params.__bindgen_anon_4.ipv4_dst = dst[0];
    } else {
        params.family = AF_INET6;
        params.__bindgen_anon_4.ipv6_dst = *dst;
    }
    // SAFETY: ctx is the program's context; params is a valid, writable struct of the size given.
    let rc = unsafe {
        bpf_fib_lookup(ctx.ctx.cast(), &raw mut params, core::mem::size_of::<FibParams>() as i32, 0)
    };
    if rc == BPF_FIB_LKUP_RET_NO_NEIGH {
        return Ok(Next::NoNeighbour);
    }
    if rc != BPF_FIB_LKUP_RET_SUCCESS {
        return Ok(Next::NoRoute);
    }
    let eth = frame.ptr_at::<[u8; 12]>(0)?;
    let mut macs = [0u8; 12];
    macs[..6].copy_from_slice(&params.dmac);
    macs[6..].copy_from_slice(&params.smac);
    // SAFETY: the 12 MAC bytes are in bounds (ptr_at).
    unsafe { *eth = macs };
    if params.ifindex == ingress {
        Ok(Next::Tx)
    } else {
        // SAFETY: plain helper call; it records the target for XDP_REDIRECT.
        unsafe { bpf_redirect(params.ifindex, 0) };
        Ok(Next::Redirect)
    }
}
