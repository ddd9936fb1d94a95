//! Address and port rewriting with incremental checksum updates, and TTL handling.

use lb_common::lb::family;

use crate::{
    csum::Delta,
    mem,
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
        let csum = frame.ptr_at::<u16>(h.l3 + 10)?.cast::<u8>();
        // SAFETY: in bounds (ptr_at), at an even offset (crate::mem).
        unsafe { mem::store16(csum, addr_delta.apply(mem::load16(csum))) };
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
            let csum = frame.ptr_at::<u16>(h.l4 + 16)?.cast::<u8>();
            // SAFETY: in bounds (ptr_at), at an even offset.
            unsafe { mem::store16(csum, l4_delta.apply(mem::load16(csum))) };
        }
        IPPROTO_UDP => {
            let csum = frame.ptr_at::<u16>(h.l4 + 6)?.cast::<u8>();
            // SAFETY: in bounds (ptr_at), at an even offset.
            let old = unsafe { mem::load16(csum) };
            // IPv4 UDP may carry no checksum (0): leave it so. A computed 0 is sent as 0xffff.
            if !(v4 && old == 0) {
                let new = l4_delta.apply(old);
                // SAFETY: in bounds (ptr_at).
                unsafe { mem::store16(csum, if new == 0 { 0xffff } else { new }) };
            }
        }
        _ => {}
    }
    Ok(())
}

/// [`rewrite`] for IPv4, inlined into the fast paths (a BPF-to-BPF call costs about 12 ns
/// here): `src` and `dst` are a new address (network order) and port, or `None` to keep them.
/// Callers pass literal `Some` / `None`, so each call site compiles to its own straight-line
/// code (fields set or not at run time would have LLVM store undefined payloads, which the
/// verifier rejects).
#[inline(always)]
pub(crate) fn rewrite4(
    frame: &Frame,
    h: &mut Headers,
    src: Option<(u32, u16)>,
    dst: Option<(u32, u16)>,
) -> Result<(), ParseError> {
    let ip = frame.ptr_at::<[u32; 5]>(h.l3)?.cast::<u8>();
    let mut addr_delta = Delta::default();
    let mut l4_delta = Delta::default();
    // SAFETY: the 20-byte IPv4 header is in bounds (ptr_at), at an even offset (crate::mem).
    unsafe {
        if let Some((addr, port)) = src {
            addr_delta.dword(h.key.src[0], addr);
            l4_delta.word(h.key.sport, port);
            mem::store32(ip.add(12), addr);
            h.key.src[0] = addr;
        }
        if let Some((addr, port)) = dst {
            addr_delta.dword(h.key.dst[0], addr);
            l4_delta.word(h.key.dport, port);
            mem::store32(ip.add(16), addr);
            h.key.dst[0] = addr;
        }
        let csum = ip.add(10);
        mem::store16(csum, addr_delta.apply(mem::load16(csum)));
    }
    l4_delta.add(addr_delta);
    // Ports and checksum: TCP's checksum is at 16, UDP's at 6 (parse checked 20 / 8 bytes).
    let (sport, dport) = (
        if let Some((_, port)) = src { port } else { h.key.sport },
        if let Some((_, port)) = dst { port } else { h.key.dport },
    );
    if h.key.proto == IPPROTO_TCP {
        let tcp = frame.ptr_at::<[u16; 9]>(h.l4)?.cast::<u8>();
        // SAFETY: in bounds (ptr_at), at an even offset.
        unsafe {
            mem::store16(tcp, sport);
            mem::store16(tcp.add(2), dport);
            let csum = tcp.add(16);
            mem::store16(csum, l4_delta.apply(mem::load16(csum)));
        }
    } else {
        let udp = frame.ptr_at::<[u16; 4]>(h.l4)?.cast::<u8>();
        // SAFETY: in bounds (ptr_at), at an even offset.
        unsafe {
            mem::store16(udp, sport);
            mem::store16(udp.add(2), dport);
            let csum = udp.add(6);
            let old = mem::load16(csum);
            // No checksum (0) stays so; a computed 0 is sent as 0xffff.
            if old != 0 {
                let new = l4_delta.apply(old);
                mem::store16(csum, if new == 0 { 0xffff } else { new });
            }
        }
    }
    h.key.sport = sport;
    h.key.dport = dport;
    Ok(())
}

/// Decrements the IPv4 TTL / IPv6 hop limit, as a router does. Returns false (and changes
/// nothing) when it would reach zero: the kernel must answer with ICMP time exceeded.
#[inline(always)]
pub(crate) fn decrement_ttl(frame: &Frame, h: &Headers) -> Result<bool, ParseError> {
    if h.key.family == family::IPV4 {
        let word = frame.ptr_at::<[u16; 2]>(h.l3 + 8)?.cast::<u8>();
        // SAFETY: TTL, protocol and checksum are in bounds (ptr_at), at an even offset.
        unsafe {
            let old = mem::load16(word);
            // TTL first in memory: the low byte on this little-endian target.
            if old & 0xff <= 1 {
                return Ok(false);
            }
            let new = old - 1;
            let mut delta = Delta::default();
            delta.word(old, new);
            mem::store16(word, new);
            let csum = word.add(2);
            mem::store16(csum, delta.apply(mem::load16(csum)));
        }
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
        let ptr = frame.ptr_at::<u32>(offset)?.cast::<u8>();
        // SAFETY: in bounds (ptr_at), at an even offset (crate::mem).
        unsafe { mem::store32(ptr, addr[0]) };
    } else {
        let ptr = frame.ptr_at::<[u32; 4]>(offset)?.cast::<u8>();
        // SAFETY: in bounds (ptr_at), at an even offset.
        unsafe {
            for (i, word) in addr.iter().enumerate() {
                mem::store32(ptr.add(4 * i), *word);
            }
        }
    }
    Ok(())
}

#[inline(always)]
fn write_u16(frame: &Frame, offset: usize, value: u16) -> Result<(), ParseError> {
    let ptr = frame.ptr_at::<u16>(offset)?.cast::<u8>();
    // SAFETY: in bounds (ptr_at), at an even offset (crate::mem).
    unsafe { mem::store16(ptr, value) };
    Ok(())
}
