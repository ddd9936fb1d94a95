//! ICMP errors about tracked flows (destination unreachable with fragmentation needed, packet
//! too big, time exceeded, ...): the quoted packet is one the load balancer sent, so the error is
//! translated as its flow is, mirrored, and sent on to the side that sent the quoted packet.
//!
//! The quoted packet travelled the other way from the error: its 5-tuple, reversed, is the key
//! of the flow entry for the error's own direction. An error that came from the client's side
//! (about a reply) finds the ORIGINAL entry and goes to the real server; one from the real
//! server's side (about a packet sent to it) finds the REPLY entry and goes to the client. As
//! IPVS does, the outer addresses are translated too, so the error reaches the host whose
//! socket sent the quoted packet. The quoted transport checksum is left as it is: receivers do
//! not check it, and the quote usually stops after eight bytes of transport header.

use lb_common::{
    lb::{Flow, Method, direction, family},
    stats::GlobalStats,
};

use crate::{
    Outcome,
    balancer::after_nat,
    csum::Delta,
    forward::{self, Hop},
    nat,
    parse::{Frame, Headers, IPPROTO_TCP, IPPROTO_UDP, ParseError},
    sched,
};

pub(crate) const IPPROTO_ICMP: u8 = 1;
pub(crate) const IPPROTO_ICMPV6: u8 = 58;

/// Length of the ICMP / ICMPv6 header before the quoted packet.
const ICMP_HLEN: usize = 8;

/// Whether `icmp_type` of the family `fam` is an error that quotes a packet.
#[inline(always)]
fn is_error(fam: u8, icmp_type: u8) -> bool {
    if fam == family::IPV4 {
        // Destination unreachable, time exceeded, parameter problem.
        matches!(icmp_type, 3 | 11 | 12)
    } else {
        // Destination unreachable, packet too big, time exceeded, parameter problem.
        matches!(icmp_type, 1..=4)
    }
}

/// Reads the ICMP error at `h.l4` and puts the reversed 5-tuple of the TCP or UDP packet it
/// quotes into `h.key`. `Ok(false)`: not an error, or it quotes something else (the key is
/// unchanged then).
#[inline(never)]
pub(crate) fn quoted(frame: &Frame, h: &mut Headers) -> Result<bool, ParseError> {
    let [icmp_type, _code] = frame.bytes::<2>(h.l4)?;
    if !is_error(h.key.family, icmp_type) {
        return Ok(false);
    }
    let il3 = h.l4 + ICMP_HLEN;
    let (proto, il4, src, dst) = if h.key.family == family::IPV4 {
        let [version_ihl, _] = frame.bytes::<2>(il3)?;
        let ihl = usize::from(version_ihl & 0x0f);
        if version_ihl >> 4 != 4 || ihl < 5 {
            return Err(ParseError::Malformed);
        }
        // A non-first fragment quotes no ports.
        if frame.be16_at(il3 + 6)? & 0x1fff != 0 {
            return Ok(false);
        }
        let [_, proto] = frame.bytes::<2>(il3 + 8)?;
        let src = [u32::from_ne_bytes(frame.bytes::<4>(il3 + 12)?), 0, 0, 0];
        let dst = [u32::from_ne_bytes(frame.bytes::<4>(il3 + 16)?), 0, 0, 0];
        (proto, il3 + ihl * 4, src, dst)
    } else {
        let [version_tc, _] = frame.bytes::<2>(il3)?;
        if version_tc >> 4 != 6 {
            return Err(ParseError::Malformed);
        }
        // Extension headers in the quote are not followed: such errors pass.
        let [next, _] = frame.bytes::<2>(il3 + 6)?;
        (next, il3 + 40, frame.addr6_at(il3 + 8)?, frame.addr6_at(il3 + 24)?)
    };
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return Ok(false);
    }
    let ports = frame.bytes::<4>(il4)?;
    h.key.src = dst;
    h.key.dst = src;
    h.key.sport = u16::from_ne_bytes([ports[2], ports[3]]);
    h.key.dport = u16::from_ne_bytes([ports[0], ports[1]]);
    h.key.proto = proto;
    Ok(true)
}

/// Translates the ICMP error described by `h` (its key from [`quoted`]) by the NAT or FNAT
/// entry `flow`, and sends it on.
#[inline(never)]
pub(crate) fn translate(
    ctx: &aya_ebpf::programs::XdpContext,
    frame: &Frame,
    h: &Headers,
    flow: &Flow,
    stats: &mut GlobalStats,
) -> Outcome {
    translate_in(ctx, frame, h, flow, stats).unwrap_or(Outcome::DropMalformed)
}

/// Offsets of the addresses and ports an ICMP error's translation rewrites.
struct Layout {
    v4: bool,
    outer_src: usize,
    outer_dst: usize,
    inner_src: usize,
    inner_dst: usize,
    /// The quoted transport header (source port, then destination port).
    inner_l4: usize,
}

/// Checksum changes of a translation.
#[derive(Default)]
struct Deltas {
    /// Outer addresses: the outer IPv4 header; the ICMPv6 pseudo-header.
    outer: Delta,
    /// Quoted addresses: the quoted IPv4 header, and the ICMP message.
    inner: Delta,
    /// Quoted ports: the ICMP message.
    ports: Delta,
}

#[inline(always)]
fn translate_in(
    ctx: &aya_ebpf::programs::XdpContext,
    frame: &Frame,
    h: &Headers,
    flow: &Flow,
    stats: &mut GlobalStats,
) -> Result<Outcome, ParseError> {
    let v4 = h.key.family == family::IPV4;
    let il3 = h.l4 + ICMP_HLEN;
    let inner_l4 = if v4 {
        let [version_ihl, _] = frame.bytes::<2>(il3)?;
        il3 + usize::from(version_ihl & 0x0f) * 4
    } else {
        il3 + 40
    };
    let at = if v4 {
        Layout {
            v4,
            outer_src: h.l3 + 12,
            outer_dst: h.l3 + 16,
            inner_src: il3 + 12,
            inner_dst: il3 + 16,
            inner_l4,
        }
    } else {
        Layout {
            v4,
            outer_src: h.l3 + 8,
            outer_dst: h.l3 + 24,
            inner_src: il3 + 8,
            inner_dst: il3 + 24,
            inner_l4,
        }
    };
    let fnat = Method::from_u8(flow.method) == Some(Method::Fnat);
    let mut d = Deltas::default();
    let hop = if flow.direction == direction::ORIGINAL {
        // From the client's side, about a reply: to the real server.
        let Some(real) = sched::real_ref(flow.real) else { return Ok(Outcome::DropNoReal) };
        let rport = if real.port != 0 { real.port } else { h.key.dport };
        if !set_addr(frame, at.outer_dst, at.v4, &real.addr, &mut d.outer) {
            return Err(ParseError::Truncated);
        }
        if !set_addr(frame, at.inner_src, at.v4, &real.addr, &mut d.inner) {
            return Err(ParseError::Truncated);
        }
        set_port(frame, at.inner_l4, rport, &mut d.ports)?;
        if fnat {
            if !set_addr(frame, at.outer_src, at.v4, &flow.nat_addr, &mut d.outer) {
                return Err(ParseError::Truncated);
            }
            if !set_addr(frame, at.inner_dst, at.v4, &flow.nat_addr, &mut d.inner) {
                return Err(ParseError::Truncated);
            }
            set_port(frame, at.inner_l4 + 2, flow.nat_port, &mut d.ports)?;
        }
        Hop::real(flow.real, real, crate::clock::now_ns())
    } else {
        // From the real server's side, about a packet sent to it: to the client.
        if !nat::decrement_ttl(frame, h)? {
            return Ok(Outcome::PassNoService);
        }
        if !set_addr(frame, at.outer_src, at.v4, &flow.nat_addr, &mut d.outer) {
            return Err(ParseError::Truncated);
        }
        if !set_addr(frame, at.inner_dst, at.v4, &flow.nat_addr, &mut d.inner) {
            return Err(ParseError::Truncated);
        }
        set_port(frame, at.inner_l4 + 2, flow.nat_port, &mut d.ports)?;
        if fnat {
            if !set_addr(frame, at.outer_dst, at.v4, &flow.client_addr, &mut d.outer) {
                return Err(ParseError::Truncated);
            }
            if !set_addr(frame, at.inner_src, at.v4, &flow.client_addr, &mut d.inner) {
                return Err(ParseError::Truncated);
            }
            set_port(frame, at.inner_l4, flow.client_port, &mut d.ports)?;
        }
        let dst = read_addr(frame, at.outer_dst, at.v4)?;
        Hop::reply(&dst, h.key.family, crate::clock::now_ns())
    };
    let mut icmp = d.inner;
    icmp.add(d.ports);
    if at.v4 {
        let outer = frame.ptr_at::<u16>(h.l3 + 10)?;
        let inner = frame.ptr_at::<u16>(il3 + 10)?;
        // SAFETY: in bounds (ptr_at); unaligned accesses.
        unsafe {
            outer.write_unaligned(d.outer.apply(outer.read_unaligned()));
            let old = inner.read_unaligned();
            let new = d.inner.apply(old);
            inner.write_unaligned(new);
            icmp.word(old, new);
        }
    } else {
        icmp.add(d.outer);
    }
    let csum = frame.ptr_at::<u16>(h.l4 + 2)?;
    // SAFETY: in bounds (ptr_at).
    unsafe { csum.write_unaligned(icmp.apply(csum.read_unaligned())) };
    stats.icmp_translated += 1;
    Ok(after_nat(forward::route_cached(ctx, frame, &hop)))
}

/// Writes address `new` at `offset` (4 bytes if `v4`, else 16), adding the change to `delta`.
/// Not inlined: its temporaries stay off the frame of `translate`, in the deepest chain.
#[inline(never)]
fn set_addr(frame: &Frame, offset: usize, v4: bool, new: &[u32; 4], delta: &mut Delta) -> bool {
    set_addr_in(frame, offset, v4, new, delta).is_ok()
}

#[inline(always)]
fn set_addr_in(
    frame: &Frame,
    offset: usize,
    v4: bool,
    new: &[u32; 4],
    delta: &mut Delta,
) -> Result<(), ParseError> {
    let old = read_addr(frame, offset, v4)?;
    delta.addr(&old, new, if v4 { 1 } else { 4 });
    nat::write_addr(frame, offset, new, v4)
}

/// The address at `offset` (4 bytes if `v4`, else 16).
#[inline(always)]
fn read_addr(frame: &Frame, offset: usize, v4: bool) -> Result<[u32; 4], ParseError> {
    if v4 { Ok([u32::from_ne_bytes(frame.bytes::<4>(offset)?), 0, 0, 0]) } else { frame.addr6_at(offset) }
}

/// Writes port `new` (network order) at `offset`, adding the change to `delta`.
#[inline(always)]
fn set_port(frame: &Frame, offset: usize, new: u16, delta: &mut Delta) -> Result<(), ParseError> {
    let ptr = frame.ptr_at::<u16>(offset)?;
    // SAFETY: in bounds (ptr_at).
    unsafe {
        delta.word(ptr.read_unaligned(), new);
        ptr.write_unaligned(new);
    }
    Ok(())
}
