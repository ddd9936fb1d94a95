//! TOA ("TCP option address"): FNAT hides the client's address from the real server, so, as
//! Alibaba's FNAT does, the client's IPv4 address and port travel in a TCP option of the ACK
//! that completes the handshake: kind 254, length 8, then the port and the address in network
//! order. A real server with a TOA module reads it when it accepts the connection and
//! `getpeername` returns the client; without one the kernel ignores the unknown option.
//!
//! With `syn_proxy` the ACK that completes the real server's handshake is the load balancer's
//! own, and carries it.
//!
//! Only a bare ACK (no payload) gets the option: appending it then moves nothing, and the
//! packet stays far below any MTU. An ACK that carries data, or whose TCP header has no 8
//! bytes left (60 at most), is sent without it and counted.

use aya_ebpf::{helpers::generated::bpf_xdp_adjust_tail, programs::XdpContext};

use crate::{
    csum::Delta,
    encap::EncapError,
    mem,
    parse::{Frame, Headers},
};

/// The option kind (Alibaba's `TCPOPT_ADDR`).
pub(crate) const TCPOPT_ADDR: u8 = 254;
/// The option length: kind, length, port (2), IPv4 address (4).
const TCPOLEN_ADDR: usize = 8;
/// The longest TCP header (data offset 15).
const TCP_MAX_HEADER: usize = 60;

/// What [`insert4`] did.
pub(crate) enum Inserted {
    /// The option is in the packet.
    Yes,
    /// The packet carries data or its header is full: sent without the option.
    NoRoom,
}

/// Appends the TOA option with the client's address `addr` and port `port` (network order)
/// to the IPv4 TCP packet `h`, fixing the data offset, the IP length and both checksums. The
/// frame must be read again from `ctx` afterwards.
#[inline(never)]
pub(crate) fn insert4(ctx: &XdpContext, h: &Headers, addr: u32, port: u16) -> Result<Inserted, EncapError> {
    let frame = Frame::new(ctx.data(), ctx.data_end());
    let ip_len = usize::from(frame.be16_at(h.l3 + 2)?);
    let [offset_byte, flags] = frame.bytes::<2>(h.l4 + 12)?;
    let tcp_len = usize::from(offset_byte >> 4) * 4;
    if h.l4 - h.l3 + tcp_len != ip_len || tcp_len + TCPOLEN_ADDR > TCP_MAX_HEADER {
        return Ok(Inserted::NoRoom);
    }
    let end = h.l4 + tcp_len;
    // Also trims Ethernet padding after the IP packet (a short frame padded to 60 bytes).
    let delta = (end + TCPOLEN_ADDR) as i64 - frame.len() as i64;
    // SAFETY: ctx is the program's context.
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta as i32) } != 0 {
        return Err(EncapError::Resize);
    }
    let frame = Frame::new(ctx.data(), ctx.data_end());
    // Each field as it sits in memory (network order), summed as native words (RFC 1071).
    let kind_len = u16::from_ne_bytes([TCPOPT_ADDR, TCPOLEN_ADDR as u8]);
    let old_offset = u16::from_ne_bytes([offset_byte, flags]);
    let new_offset =
        u16::from_ne_bytes([(offset_byte & 0x0f) | (((tcp_len + TCPOLEN_ADDR) / 4) << 4) as u8, flags]);
    let mut tcp = Delta::default();
    tcp.word(0, kind_len);
    tcp.word(0, port);
    tcp.dword(0, addr);
    tcp.word(old_offset, new_offset);
    // The pseudo-header's TCP length.
    tcp.word((tcp_len as u16).to_be(), ((tcp_len + TCPOLEN_ADDR) as u16).to_be());
    let mut ip = Delta::default();
    ip.word((ip_len as u16).to_be(), ((ip_len + TCPOLEN_ADDR) as u16).to_be());

    let option = frame.ptr_at::<[u8; TCPOLEN_ADDR]>(end)?.cast::<u8>();
    let header = frame.ptr_at::<[u8; 20]>(h.l4)?.cast::<u8>();
    let ip_header = frame.ptr_at::<[u8; 20]>(h.l3)?.cast::<u8>();
    // SAFETY: every pointer is in bounds (ptr_at); header fields lie at even offsets
    // (crate::mem); the option is written unaligned.
    unsafe {
        option.cast::<u16>().write_unaligned(kind_len);
        option.add(2).cast::<u16>().write_unaligned(port);
        option.add(4).cast::<u32>().write_unaligned(addr);
        mem::store16(header.add(12), new_offset);
        let csum = header.add(16);
        mem::store16(csum, tcp.apply(mem::load16(csum)));
        mem::store16(ip_header.add(2), ((ip_len + TCPOLEN_ADDR) as u16).to_be());
        let csum = ip_header.add(10);
        mem::store16(csum, ip.apply(mem::load16(csum)));
    }
    Ok(Inserted::Yes)
}
