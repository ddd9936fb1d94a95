//! TOA ("TCP option address"): FNAT hides the client's address from the real server, so, as
//! Alibaba's FNAT does, the client's address and port travel in a TCP option of the ACK that
//! completes the handshake: kind 254, length 8, then the port and the IPv4 address in network
//! order; for an IPv6 client kind 253, length 20, the port and the IPv6 address (the layout
//! the TOA modules that read IPv6 expect: Alibaba's, Huawei's). A real server with a TOA module reads it when it accepts the connection and
//! `getpeername` returns the client; without one the kernel ignores the unknown option.
//!
//! With `syn_proxy` the ACK that completes the real server's handshake is the load balancer's
//! own, and carries it.
//!
//! Only a bare ACK (no payload) gets the option: appending it then moves nothing, and the
//! packet stays far below any MTU. An ACK that carries data, or whose TCP header has no room
//! left for it (60 bytes at most), is sent without it and counted.

use aya_ebpf::{helpers::generated::bpf_xdp_adjust_tail, programs::XdpContext};

use lb_common::lb::family;

use crate::{
    csum::{self, Delta},
    encap::EncapError,
    mem,
    parse::{Frame, Headers},
};

/// The option kind for an IPv4 client (Alibaba's `TCPOPT_TOA`).
pub(crate) const TCPOPT_TOA: u8 = 254;
/// Its length: kind, length, port (2), IPv4 address (4).
const TCPOLEN_TOA: usize = 8;
/// The option kind for an IPv6 client (`TCPOPT_TOA_V6` of the TOA modules that read IPv6).
pub(crate) const TCPOPT_TOA_V6: u8 = 253;
/// Its length: kind, length, port (2), IPv6 address (16).
const TCPOLEN_TOA_V6: usize = 20;
/// The longest TCP header (data offset 15).
const TCP_MAX_HEADER: usize = 60;
/// The fixed IPv6 header, before any extension header.
const IPV6_HEADER: usize = 40;

/// What [`insert`] did.
pub(crate) enum Inserted {
    /// The option is in the packet.
    Yes,
    /// The packet carries data or its header is full: sent without the option.
    NoRoom,
}

/// Appends the TOA option with the client's address `addr` (words in network order, one for
/// IPv4) and port `port` (network order) to the TCP packet `h` (IPv4: kind 254, length 8;
/// IPv6: kind 253, length 20), fixing the data offset, the IP length, the IPv4 header checksum
/// and the TCP checksum. The frame must be read again from `ctx` afterwards.
#[inline(never)]
pub(crate) fn insert(
    ctx: &XdpContext,
    h: &Headers,
    addr: &[u32; 4],
    port: u16,
) -> Result<Inserted, EncapError> {
    let v6 = h.key.family == family::IPV6;
    let frame = Frame::new(ctx.data(), ctx.data_end());
    // The IP length field: IPv4's total length, IPv6's payload length (after the fixed header).
    let (len_at, len_base) = if v6 { (h.l3 + 4, h.l3 + IPV6_HEADER) } else { (h.l3 + 2, h.l3) };
    let ip_len = usize::from(frame.be16_at(len_at)?);
    let [offset_byte, flags] = frame.bytes::<2>(h.l4 + 12)?;
    let tcp_len = usize::from(offset_byte >> 4) * 4;
    let opt_len = if v6 { TCPOLEN_TOA_V6 } else { TCPOLEN_TOA };
    if h.l4 < len_base || h.l4 - len_base + tcp_len != ip_len || tcp_len + opt_len > TCP_MAX_HEADER {
        return Ok(Inserted::NoRoom);
    }
    let end = h.l4 + tcp_len;
    // Also trims Ethernet padding after the IP packet (a short frame padded to 60 bytes).
    // (The length through black_box: otherwise LLVM folds `data_end - data` into a 32-bit sum
    // with the packet pointer, which the verifier refuses.)
    let delta = (end + opt_len) as i64 - core::hint::black_box(frame.len()) as i64;
    // SAFETY: ctx is the program's context.
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta as i32) } != 0 {
        return Err(EncapError::Resize);
    }
    let frame = Frame::new(ctx.data(), ctx.data_end());
    // Each field as it sits in memory (network order), summed as native words (RFC 1071).
    let kind_len = if v6 {
        u16::from_ne_bytes([TCPOPT_TOA_V6, TCPOLEN_TOA_V6 as u8])
    } else {
        u16::from_ne_bytes([TCPOPT_TOA, TCPOLEN_TOA as u8])
    };
    let old_offset = u16::from_ne_bytes([offset_byte, flags]);
    let new_offset =
        u16::from_ne_bytes([(offset_byte & 0x0f) | (((tcp_len + opt_len) / 4) << 4) as u8, flags]);
    let mut tcp = Delta::default();
    tcp.word(0, kind_len);
    tcp.word(0, port);
    tcp.addr(&[0; 4], addr, if v6 { 4 } else { 1 });
    tcp.word(old_offset, new_offset);
    // The pseudo-header's TCP length.
    tcp.word((tcp_len as u16).to_be(), ((tcp_len + opt_len) as u16).to_be());
    let new_ip_len = ((ip_len + opt_len) as u16).to_be();

    let header = frame.ptr_at::<[u8; 20]>(h.l4)?.cast::<u8>();
    // SAFETY: every pointer is in bounds (ptr_at); header fields lie at even offsets
    // (crate::mem); the option is written unaligned.
    unsafe {
        if v6 {
            let option = frame.ptr_at::<[u8; TCPOLEN_TOA_V6]>(end)?.cast::<u8>();
            option.cast::<u16>().write_unaligned(kind_len);
            option.add(2).cast::<u16>().write_unaligned(port);
            option.add(4).cast::<[u32; 4]>().write_unaligned(*addr);
        } else {
            let option = frame.ptr_at::<[u8; TCPOLEN_TOA]>(end)?.cast::<u8>();
            option.cast::<u16>().write_unaligned(kind_len);
            option.add(2).cast::<u16>().write_unaligned(port);
            option.add(4).cast::<u32>().write_unaligned(addr[0]);
        }
        mem::store16(header.add(12), new_offset);
        let csum = header.add(16);
        mem::store16(csum, tcp.apply(mem::load16(csum)));
    }
    if v6 {
        let length = frame.ptr_at::<u16>(len_at)?.cast::<u8>();
        // SAFETY: in bounds (ptr_at), at an even offset (crate::mem).
        unsafe { mem::store16(length, new_ip_len) };
    } else {
        csum::set_ipv4_total_length(&frame, h.l3, new_ip_len, Delta::default())?;
    }
    Ok(Inserted::Yes)
}
