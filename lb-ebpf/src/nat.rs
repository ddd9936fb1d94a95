//! Address and port rewriting with incremental checksum updates, and TTL handling.

use lb_common::lb::family;

use crate::{
    csum::Delta,
    parse::{Frame, Headers, IPPROTO_TCP, IPPROTO_UDP, ParseError},
};

/// What to rewrite; `None` keeps the field.
#[derive(Clone, Copy, Default)]
pub(crate) struct Rewrite {
    pub(crate) src: Option<[u32; 4]>,
    pub(crate) dst: Option<[u32; 4]>,
    pub(crate) sport: Option<u16>,
    pub(crate) dport: Option<u16>,
}

/// Applies `rw` to the packet described by `h`, fixing the IPv4 header checksum and the TCP /
/// UDP checksum (pseudo-header included), and updates `h` to match.
#[inline(never)]
pub(crate) fn rewrite(frame: &Frame, h: &mut Headers, rw: &Rewrite) -> Result<(), ParseError> {
    let v4 = h.key.family == family::IPV4;
    let words = if v4 { 1 } else { 4 };
    let (src_off, dst_off) = if v4 { (h.l3 + 12, h.l3 + 16) } else { (h.l3 + 8, h.l3 + 24) };
    let mut addr_delta = Delta::default();
    if let Some(src) = rw.src {
        addr_delta.addr(&h.key.src, &src, words);
        write_addr(frame, src_off, &src, v4)?;
        h.key.src = src;
    }
    if let Some(dst) = rw.dst {
        addr_delta.addr(&h.key.dst, &dst, words);
        write_addr(frame, dst_off, &dst, v4)?;
        h.key.dst = dst;
    }
    if v4 {
        let csum = frame.ptr_at::<u16>(h.l3 + 10)?;
        // SAFETY: in bounds (ptr_at); unaligned access through read/write_unaligned.
        unsafe { csum.write_unaligned(addr_delta.apply(csum.read_unaligned())) };
    }
    let mut l4_delta = addr_delta;
    if let Some(sport) = rw.sport {
        l4_delta.word(h.key.sport, sport);
        write_u16(frame, h.l4, sport)?;
        h.key.sport = sport;
    }
    if let Some(dport) = rw.dport {
        l4_delta.word(h.key.dport, dport);
        write_u16(frame, h.l4 + 2, dport)?;
        h.key.dport = dport;
    }
    match h.key.proto {
        IPPROTO_TCP => {
            let csum = frame.ptr_at::<u16>(h.l4 + 16)?;
            // SAFETY: in bounds (ptr_at).
            unsafe { csum.write_unaligned(l4_delta.apply(csum.read_unaligned())) };
        }
        IPPROTO_UDP => {
            let csum = frame.ptr_at::<u16>(h.l4 + 6)?;
            // SAFETY: in bounds (ptr_at).
            let old = unsafe { csum.read_unaligned() };
            // IPv4 UDP may carry no checksum (0): leave it so. A computed 0 is sent as 0xffff.
            if !(v4 && old == 0) {
                let new = l4_delta.apply(old);
                // SAFETY: in bounds (ptr_at).
                unsafe { csum.write_unaligned(if new == 0 { 0xffff } else { new }) };
            }
        }
        _ => {}
    }
    Ok(())
}

/// Decrements the IPv4 TTL / IPv6 hop limit, as a router does. Returns false (and changes
/// nothing) when it would reach zero: the kernel must answer with ICMP time exceeded.
#[inline(always)]
pub(crate) fn decrement_ttl(frame: &Frame, h: &Headers) -> Result<bool, ParseError> {
    if h.key.family == family::IPV4 {
        let word = frame.ptr_at::<[u8; 2]>(h.l3 + 8)?;
        // SAFETY: in bounds (ptr_at); [u8; 2] is unaligned.
        let [ttl, proto] = unsafe { *word };
        if ttl <= 1 {
            return Ok(false);
        }
        let mut delta = Delta::default();
        delta.word(u16::from_ne_bytes([ttl, proto]), u16::from_ne_bytes([ttl - 1, proto]));
        // SAFETY: as above.
        unsafe { *word = [ttl - 1, proto] };
        let csum = frame.ptr_at::<u16>(h.l3 + 10)?;
        // SAFETY: in bounds (ptr_at).
        unsafe { csum.write_unaligned(delta.apply(csum.read_unaligned())) };
    } else {
        // Next header and hop limit (two bytes: see Frame::ptr_at).
        let word = frame.ptr_at::<[u8; 2]>(h.l3 + 6)?;
        // SAFETY: in bounds (ptr_at).
        unsafe {
            if (*word)[1] <= 1 {
                return Ok(false);
            }
            (*word)[1] -= 1;
        }
    }
    Ok(true)
}

#[inline(always)]
pub(crate) fn write_addr(frame: &Frame, offset: usize, addr: &[u32; 4], v4: bool) -> Result<(), ParseError> {
    if v4 {
        let ptr = frame.ptr_at::<u32>(offset)?;
        // SAFETY: in bounds (ptr_at).
        unsafe { ptr.write_unaligned(addr[0]) };
    } else {
        let ptr = frame.ptr_at::<[u32; 4]>(offset)?;
        // SAFETY: in bounds (ptr_at).
        unsafe { ptr.write_unaligned(*addr) };
    }
    Ok(())
}

#[inline(always)]
fn write_u16(frame: &Frame, offset: usize, value: u16) -> Result<(), ParseError> {
    let ptr = frame.ptr_at::<u16>(offset)?;
    // SAFETY: in bounds (ptr_at).
    unsafe { ptr.write_unaligned(value) };
    Ok(())
}
