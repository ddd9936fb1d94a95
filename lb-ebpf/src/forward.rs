//! Sending a rewritten packet on its way: a FIB lookup (the kernel's routes and neighbours)
//! gives the egress interface and the MAC addresses; the frame leaves with XDP_TX when that is
//! the interface it came in on, XDP_REDIRECT otherwise.
//!
//! Packets take the route from a cache ([`route_cached`]) instead of a `bpf_fib_lookup` each:
//! the lookup is most of an established packet's cost. Routes to real servers are cached by
//! real id, routes to clients (NAT and FNAT replies) in a direct-mapped table by address hash.
//! A cached route is used for at most [`NEXT_HOP_TTL_NS`] before it is looked up again, so
//! route and neighbour changes take effect within that time.

use core::mem::size_of;

use aya_ebpf::{
    bindings::bpf_fib_lookup as FibParams,
    helpers::{bpf_fib_lookup, bpf_redirect},
    programs::XdpContext,
};
use lb_common::lb::{MAX_REALS, Real, family};

use crate::{
    maps::{LBD_NEXT_HOPS, LBD_SCRATCH_FIB, per_cpu},
    mem,
    parse::{Frame, ParseError},
};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const BPF_FIB_LKUP_RET_SUCCESS: i64 = 0;
const BPF_FIB_LKUP_RET_NO_NEIGH: i64 = 7;
const BPF_FIB_LKUP_RET_FRAG_NEEDED: i64 = 8;

/// How long a cached route is used before it is looked up again.
pub(crate) const NEXT_HOP_TTL_NS: u64 = 100_000_000;

/// Where a packet goes.
pub(crate) enum Next {
    /// Out of the receiving interface.
    Tx,
    /// Out of another interface.
    Redirect,
    /// Route known, neighbour not resolved yet.
    NoNeighbour,
    /// Larger than the route's MTU.
    TooBig,
    /// No route (or the lookup failed).
    NoRoute,
}

/// A route to one destination, as the last FIB lookup found it (see [`route_cached`]).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct NextHop {
    /// The address the route is for (a real id may be reused for another; reply slots are
    /// shared by addresses with the same hash).
    pub(crate) addr: [u32; 4],
    /// Destination then source MAC, as they go into the Ethernet header.
    pub(crate) macs: [u8; 12],
    /// The egress interface; 0: no route cached.
    pub(crate) ifindex: u32,
    /// The interface the packets came in on when it was looked up (XDP_TX or XDP_REDIRECT,
    /// and the lookup's input interface, depend on it).
    pub(crate) ingress: u32,
    /// The route's MTU: larger packets go to the kernel ([`Next::TooBig`]).
    pub(crate) mtu: u32,
    /// When it was looked up ([`crate::clock::now_ns`]).
    pub(crate) stamp_ns: u64,
}

/// Slots of [`crate::maps::LBD_NEXT_HOPS`] after the real ids: a direct-mapped cache of the
/// routes towards other destinations (the clients NAT and FNAT replies go to), by address hash.
pub(crate) const REPLY_HOP_SLOTS: u32 = 4096;

/// A destination and its slot in the route cache.
///
/// The address by reference (into the real's map entry, or the packet's headers): a copy
/// here would be one more stack object in the entry point's frame, which heads the longest
/// chain of stack frames (512 bytes for the whole chain).
pub(crate) struct Hop<'a> {
    /// The destination address.
    pub(crate) addr: &'a [u32; 4],
    /// Now ([`crate::clock::now_ns`]).
    pub(crate) now: u64,
    /// Offset of the IP header: the packet's IP length is checked against the route's MTU.
    pub(crate) l3: usize,
    /// Its slot: a real id, or a reply slot ([`Hop::reply`]).
    pub(crate) slot: u32,
    /// [`family::IPV4`] or [`family::IPV6`].
    pub(crate) family: u8,
}

impl<'a> Hop<'a> {
    /// The route to real server `real` (id `id`), for a packet whose IP header is at `l3`.
    #[inline(always)]
    pub(crate) fn real(id: u32, real: &'a Real, l3: usize, now: u64) -> Self {
        Self { addr: &real.addr, now, l3, slot: id, family: real.family }
    }

    /// The route to `addr` of family `fam`, by its reply slot.
    #[inline(always)]
    pub(crate) fn reply(addr: &'a [u32; 4], fam: u8, l3: usize, now: u64) -> Self {
        let hash = crate::sched::mix(addr[0] ^ addr[1] ^ addr[2] ^ addr[3], 0);
        Self { addr, now, l3, slot: MAX_REALS + (hash & (REPLY_HOP_SLOTS - 1)), family: fam }
    }
}

/// Routes a packet to `hop`: from the cache while the entry is fresh, for the same
/// destination and ingress interface, else by a FIB lookup whose answer is cached when it is
/// complete.
///
/// A plain `Next`, not a `Result`: a two-field result is a hidden sixth argument, and BPF
/// calls take five. A frame too short for its MAC addresses (the caller parsed further
/// already: it cannot happen) is `NoRoute`.
#[inline(always)]
pub(crate) fn route_cached(ctx: &XdpContext, frame: &Frame, hop: &Hop<'_>) -> Next {
    let ingress = ctx.ingress_ifindex() as u32;
    let len = frame.len().saturating_sub(hop.l3) as u32;
    let Some(entry) = LBD_NEXT_HOPS.get_ptr_mut(hop.slot) else {
        return refresh(ctx, hop.addr, hop.slot, hop.family, len);
    };
    // SAFETY: an array map value pointer from a successful lookup. Another CPU may refresh
    // the entry meanwhile; it writes the same route unless the route just changed.
    let entry = unsafe { &mut *entry };
    if entry.ifindex != 0
        && entry.ingress == ingress
        && same_addr(&entry.addr, hop.addr)
        && hop.now.saturating_sub(entry.stamp_ns) < NEXT_HOP_TTL_NS
    {
        if len > entry.mtu {
            return Next::TooBig;
        }
        let Ok(eth) = frame.ptr_at::<[u8; 12]>(0) else { return Next::NoRoute };
        let (eth, macs) = (eth.cast::<u8>(), entry.macs.as_ptr());
        // SAFETY: both are 12 bytes long (ptr_at, the array).
        unsafe {
            mem::copy_mac(eth, macs);
            mem::copy_mac(eth.add(6), macs.add(6));
        }
        return send_on(ingress, entry.ifindex);
    }
    refresh(ctx, hop.addr, hop.slot, hop.family, len)
}

/// The cache miss of [`route_cached`] (a [`Hop`] in scalars: no stack copy) for a packet
/// of IP length `len`: a FIB lookup, whose answer is cached when complete. Not inlined, and
/// it calls nothing: its frame ends the deepest chain of stack frames.
#[inline(never)]
fn refresh(ctx: &XdpContext, addr: &[u32; 4], slot: u32, fam: u8, len: u32) -> Next {
    let ingress = ctx.ingress_ifindex() as u32;
    let frame = Frame::new(ctx.data(), ctx.data_end());
    let Some(params) = per_cpu(&LBD_SCRATCH_FIB, 0) else { return Next::NoRoute };
    let rc = lookup(ctx, fam, addr, ingress, len, params);
    let Ok(next) = finish(&frame, rc, params, ingress) else { return Next::NoRoute };
    if matches!(next, Next::Tx | Next::Redirect)
        && let Some(entry) = LBD_NEXT_HOPS.get_ptr_mut(slot)
    {
        // SAFETY: as in `route_cached`.
        let entry = unsafe { &mut *entry };
        entry.ifindex = 0;
        entry.addr = *addr;
        let macs = entry.macs.as_mut_ptr();
        // SAFETY: 12 bytes long; dmac and smac 6 each.
        unsafe {
            mem::copy_mac(macs, params.dmac.as_ptr());
            mem::copy_mac(macs.add(6), params.smac.as_ptr());
        }
        entry.ingress = ingress;
        // SAFETY: on success the kernel leaves the route's MTU in this union.
        entry.mtu = u32::from(unsafe { params.__bindgen_anon_1.mtu_result });
        entry.stamp_ns = crate::clock::now_ns();
        entry.ifindex = params.ifindex;
    }
    next
}

/// A FIB lookup towards `dst` for a packet of IP length `len`, as if it came in on `ingress`,
/// into `params` (per-CPU scratch: 64 bytes off the stack); returns the helper's return code.
/// With the length given, the kernel checks it against the route's MTU and returns the MTU.
#[inline(always)]
fn lookup(ctx: &XdpContext, fam: u8, dst: &[u32; 4], ingress: u32, len: u32, params: &mut FibParams) -> i64 {
    let p: *mut FibParams = params;
    // SAFETY: `p` points to the caller's struct; it is zeroed (all-zero is a valid `bpf_fib_lookup`); ctx is
    // the program's context and the struct is writable, of the size given.
    unsafe {
        mem::zero(p);
        (*p).ifindex = ingress;
        (*p).__bindgen_anon_1.tot_len = len as u16;
        if fam == family::IPV4 {
            (*p).family = AF_INET;
            (*p).__bindgen_anon_4.ipv4_dst = dst[0];
        } else {
            (*p).family = AF_INET6;
            (*p).__bindgen_anon_4.ipv6_dst = *dst;
        }
        bpf_fib_lookup(ctx.ctx.cast(), p, size_of::<FibParams>() as i32, 0)
    }
}

/// Acts on a lookup's return code `rc` and result `params`: the MACs into the frame and the
/// redirect on success.
#[inline(always)]
fn finish(frame: &Frame, rc: i64, params: &FibParams, ingress: u32) -> Result<Next, ParseError> {
    if rc == BPF_FIB_LKUP_RET_NO_NEIGH {
        return Ok(Next::NoNeighbour);
    }
    if rc == BPF_FIB_LKUP_RET_FRAG_NEEDED {
        return Ok(Next::TooBig);
    }
    if rc != BPF_FIB_LKUP_RET_SUCCESS {
        return Ok(Next::NoRoute);
    }
    let eth = frame.ptr_at::<[u8; 12]>(0)?.cast::<u8>();
    // SAFETY: the 12 MAC bytes are in bounds (ptr_at); dmac and smac are 6 bytes each.
    unsafe {
        mem::copy_mac(eth, params.dmac.as_ptr());
        mem::copy_mac(eth.add(6), params.smac.as_ptr());
    }
    Ok(send_on(ingress, params.ifindex))
}

/// Word by word: an array comparison would be a call to a byte-at-a-time `bcmp`.
#[inline(always)]
fn same_addr(a: &[u32; 4], b: &[u32; 4]) -> bool {
    (a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) == 0
}

/// XDP_TX out of the receiving interface, else a redirect to `egress`.
#[inline(always)]
fn send_on(ingress: u32, egress: u32) -> Next {
    if egress == ingress {
        Next::Tx
    } else {
        // SAFETY: plain helper call; it records the target for XDP_REDIRECT.
        unsafe { bpf_redirect(egress, 0) };
        Next::Redirect
    }
}
