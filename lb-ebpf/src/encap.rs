//! TUN: IP-in-IP (IPv4 in IPv4, protocol 4) and IPv6-in-IPv6 (next header 41) encapsulation
//! towards the real server, and the decapsulation real servers run (`lb_decap`).

use aya_ebpf::{helpers::bpf_xdp_adjust_head, programs::XdpContext};
use lb_common::lb::family;

use crate::{
    csum, mem,
    parse::{Frame, ParseError},
};

/// IP protocol number of IPv4-in-IP.
pub(crate) const IPPROTO_IPIP: u8 = 4;
/// IP protocol number of IPv6-in-IP.
pub(crate) const IPPROTO_IPV6: u8 = 41;

/// Why encapsulation failed.
pub(crate) enum EncapError {
    /// The kernel refused to grow the frame.
    Resize,
    /// Bounds (cannot happen after a successful resize, but the verifier wants it handled).
    Parse(ParseError),
}

impl From<ParseError> for EncapError {
    fn from(e: ParseError) -> Self {
        Self::Parse(e)
    }
}

/// Prepends an outer header from `src` to `dst` (same family as the inner packet, whose IP
/// header starts at `l3`), keeping the Ethernet header (and VLAN tags) in front. The frame
/// must be re-read from `ctx` afterwards.
#[inline(never)]
pub(crate) fn push(
    ctx: &XdpContext,
    l3: usize,
    fam: u8,
    src: &[u32; 4],
    dst: &[u32; 4],
) -> Result<(), EncapError> {
    let outer_len: usize = if fam == family::IPV4 { 20 } else { 40 };
    let inner_len = ctx.data_end() - ctx.data() - l3;
    // SAFETY: ctx is the program's context.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(outer_len as i32)) } != 0 {
        return Err(EncapError::Resize);
    }
    let frame = Frame::new(ctx.data(), ctx.data_end());
    // Move the link-layer header (14, 18 or 22 bytes) to the new start.
    mem::move_link_header(&frame, outer_len, 0, l3)?;
    if fam == family::IPV4 {
        outer4(&frame, l3, inner_len, src[0], dst[0])?;
    } else {
        let payload = (inner_len as u16).to_be_bytes();
        let head: [u8; 8] = [0x60, 0, 0, 0, payload[0], payload[1], IPPROTO_IPV6, 64];
        let ptr = frame.ptr_at::<[u8; 8]>(l3)?;
        // SAFETY: in bounds (ptr_at).
        unsafe { *ptr = head };
        let addrs = frame.ptr_at::<[[u32; 4]; 2]>(l3 + 8)?.cast::<u8>();
        // SAFETY: in bounds (ptr_at), at an even offset.
        unsafe {
            for i in 0..4 {
                mem::store32(addrs.add(4 * i), src[i]);
                mem::store32(addrs.add(16 + 4 * i), dst[i]);
            }
        }
    }
    Ok(())
}

/// [`push`] for the entry point's fast path: an IPv4 frame whose IP header is at `L3` (a
/// constant), inlined (no BPF-to-BPF call, the link header moved in unrolled words).
#[inline(always)]
pub(crate) fn push4_at<const L3: usize>(ctx: &XdpContext, src: u32, dst: u32) -> Result<(), EncapError> {
    // Through `black_box`: with the constant offset, LLVM spilled the packet pointers as 32-bit
    // values to compute the length, which the verifier refuses (see `toa::insert`).
    let inner_len = core::hint::black_box(ctx.data_end() - ctx.data()) - L3;
    // SAFETY: ctx is the program's context.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -20) } != 0 {
        return Err(EncapError::Resize);
    }
    let frame = Frame::new(ctx.data(), ctx.data_end());
    mem::move_link_header(&frame, 20, 0, L3)?;
    outer4(&frame, L3, inner_len, src, dst)?;
    Ok(())
}

/// Writes an outer IPv4 header (IPIP, TTL 64) from `src` to `dst` at `l3`, for an inner packet
/// of `inner_len` bytes.
#[inline(always)]
fn outer4(frame: &Frame, l3: usize, inner_len: usize, src: u32, dst: u32) -> Result<(), ParseError> {
    // Written as five words straight into the frame, the checksum summed from them: an array
    // built on the stack first made `push`'s frame the deepest of the longest call chain.
    let total = ((inner_len + 20) as u16).to_be_bytes();
    let w0 = u32::from_ne_bytes([0x45, 0, total[0], total[1]]);
    let w2 = u32::from_ne_bytes([64, IPPROTO_IPIP, 0, 0]);
    let sum = csum::words32(&[w0, w2, src, dst]);
    let ptr = frame.ptr_at::<[u32; 5]>(l3)?.cast::<u8>();
    // SAFETY: in bounds (ptr_at), at an even offset (crate::mem). Little-endian target: the
    // checksum (bytes 10-11) is the high half of the third word.
    unsafe {
        mem::store32(ptr, w0);
        mem::store32(ptr.add(4), 0);
        mem::store32(ptr.add(8), w2 | u32::from(sum) << 16);
        mem::store32(ptr.add(12), src);
        mem::store32(ptr.add(16), dst);
    }
    Ok(())
}

/// Removes an outer IPIP / IPv6-in-IPv6 header at `l3` of length `outer_len`, keeping the
/// link-layer header. The EtherType is set to the inner family's.
#[inline(always)]
pub(crate) fn pop(
    ctx: &XdpContext,
    l3: usize,
    outer_len: usize,
    inner_ethertype: u16,
) -> Result<(), EncapError> {
    let frame = Frame::new(ctx.data(), ctx.data_end());
    // Move the link-layer header forward over the outer IP header.
    let ethertype = inner_ethertype.to_be_bytes();
    match (l3, outer_len) {
        (14, 20) => shift(&frame, 14, 20, ethertype)?,
        (14, _) => shift(&frame, 14, 40, ethertype)?,
        (18, 20) => shift(&frame, 18, 20, ethertype)?,
        (18, _) => shift(&frame, 18, 40, ethertype)?,
        (_, 20) => shift(&frame, 22, 20, ethertype)?,
        (_, _) => shift(&frame, 22, 40, ethertype)?,
    }
    // SAFETY: ctx is the program's context.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, outer_len as i32) } != 0 {
        return Err(EncapError::Resize);
    }
    Ok(())
}

/// Moves the link-layer header (`len` bytes) to offset `to`, ahead of the data kept, and sets
/// its EtherType (its last two bytes) to `ethertype`.
#[inline(always)]
fn shift(frame: &Frame, len: usize, to: usize, ethertype: [u8; 2]) -> Result<(), ParseError> {
    mem::move_link_header(frame, 0, to, len)?;
    let ptr = frame.ptr_at::<[u8; 2]>(to + len - 2)?;
    // SAFETY: in bounds (ptr_at).
    unsafe { *ptr = ethertype };
    Ok(())
}
