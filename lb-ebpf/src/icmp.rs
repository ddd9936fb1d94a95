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

/// Offsets of the addresses and ports an ICMP error's translation rewrites, and the checksum
/// changes so far.
struct Layout {
    v4: bool,
    outer_src: usize,
    outer_dst: usize,
    inner_src: usize,
    inner_dst: usize,
    /// The quoted transport header (source port, then destination port).
    inner_l4: usize,
    /// Outer addresses: the outer IPv4 header; the ICMPv6 pseudo-header.
    outer: Delta,
    /// Quoted addresses: the quoted IPv4 header, and the ICMP message.
    inner: Delta,
    /// Quoted ports: the ICMP message.
    ports: Delta,
}

impl Layout {
    /// The host that sent the quoted packet, which the error goes to: the outer destination,
    /// the quoted source and source port become `addr` and `port`.
    #[inline(always)]
    fn sender(&mut self, frame: &Frame, addr: &[u32; 4], port: u16) -> Result<(), ParseError> {
        self.end(frame, self.outer_dst, self.inner_src, self.inner_l4, addr, port)
    }

    /// The host the quoted packet was for, which the error comes from: the outer source, the
    /// quoted destination and destination port become `addr` and `port`.
    #[inline(always)]
    fn receiver(&mut self, frame: &Frame, addr: &[u32; 4], port: u16) -> Result<(), ParseError> {
        self.end(frame, self.outer_src, self.inner_dst, self.inner_l4 + 2, addr, port)
    }

    #[inline(always)]
    fn end(
        &mut self,
        frame: &Frame,
        outer: usize,
        inner: usize,
        port_at: usize,
        addr: &[u32; 4],
        port: u16,
    ) -> Result<(), ParseError> {
        if !set_addr(frame, outer, self.v4, addr, &mut self.outer)
            || !set_addr(frame, inner, self.v4, addr, &mut self.inner)
        {
            return Err(ParseError::Truncated);
        }
        let ptr = frame.ptr_at::<u16>(port_at)?;
        // SAFETY: in bounds (ptr_at).
        unsafe {
            self.ports.word(ptr.read_unaligned(), port);
            ptr.write_unaligned(port);
        }
        Ok(())
    }
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
    let (inner_l4, src, dst) = if v4 {
        let [version_ihl, _] = frame.bytes::<2>(il3)?;
        (il3 + usize::from(version_ihl & 0x0f) * 4, 12, 16)
    } else {
        (il3 + 40, 8, 24)
    };
    let mut at = Layout {
        v4,
        outer_src: h.l3 + src,
        outer_dst: h.l3 + dst,
        inner_src: il3 + src,
        inner_dst: il3 + dst,
        inner_l4,
        outer: Delta::default(),
        inner: Delta::default(),
        ports: Delta::default(),
    };
    let fnat = Method::from_u8(flow.method) == Some(Method::Fnat);
    let dst;
    let hop = if flow.direction == direction::ORIGINAL {
        // From the client's side, about a reply: to the real server (FNAT: from the local
        // address).
        let Some(real) = sched::real_ref(flow.real) else { return Ok(Outcome::DropNoReal) };
        at.sender(frame, &real.addr, if real.port != 0 { real.port } else { h.key.dport })?;
        if fnat {
            at.receiver(frame, &flow.nat_addr, flow.nat_port)?;
        }
        Hop::real(flow.real, real, h.l3, crate::clock::now_ns())
    } else {
        // From the real server's side, about a packet sent to it: to the client, from the VIP.
        if !nat::decrement_ttl(frame, h)? {
            return Ok(Outcome::PassNoService);
        }
        at.receiver(frame, &flow.nat_addr, flow.nat_port)?;
        if fnat {
            at.sender(frame, &flow.client_addr, flow.client_port)?;
        }
        dst = read_addr(frame, at.outer_dst, v4)?;
        Hop::reply(&dst, h.key.family, h.l3, crate::clock::now_ns())
    };
    let mut icmp = at.inner;
    icmp.add(at.ports);
    if v4 {
        let outer = frame.ptr_at::<u16>(h.l3 + 10)?;
        let inner = frame.ptr_at::<u16>(il3 + 10)?;
        // SAFETY: in bounds (ptr_at); unaligned accesses.
        unsafe {
            outer.write_unaligned(at.outer.apply(outer.read_unaligned()));
            let old = inner.read_unaligned();
            let new = at.inner.apply(old);
            inner.write_unaligned(new);
            icmp.word(old, new);
        }
    } else {
        icmp.add(at.outer);
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
