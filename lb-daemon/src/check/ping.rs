//! `PING_CHECK`: an ICMP (or ICMPv6) echo request to the real server must be answered. The
//! echo goes through a raw socket (lbd runs as root), marked with `fwmark` and bound to the
//! `bind_if` interface; replies from other hosts or to other requests are skipped.

use std::{
    io,
    mem::MaybeUninit,
    net::{IpAddr, SocketAddr},
};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::{Interest, unix::AsyncFd};

use super::{CheckError, Endpoint, Probe};

/// The echo request: type, code 0, checksum, identifier, sequence, payload.
pub fn echo_request(v6: bool, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut packet = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(payload);
    if !v6 {
        // ICMPv6's checksum covers a pseudo-header: the kernel fills it in for raw sockets.
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    packet
}

/// The Internet checksum.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 =
        data.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Whether `packet` (an IPv4 datagram, or an ICMPv6 message) is the echo reply to `id`/`seq`.
pub fn is_reply(v6: bool, packet: &[u8], id: u16, seq: u16) -> bool {
    let icmp = if v6 {
        packet
    } else {
        let header = usize::from(packet.first().map_or(0, |b| b & 0x0f)) * 4;
        packet.get(header..).unwrap_or(&[])
    };
    icmp.len() >= 8
        && icmp[0] == if v6 { 129 } else { 0 }
        && icmp[4..6] == id.to_be_bytes()
        && icmp[6..8] == seq.to_be_bytes()
}

/// One echo.
pub async fn probe(ep: &Endpoint) -> Result<Probe, CheckError> {
    let v6 = ep.addr.is_ipv6();
    let (domain, protocol) =
        if v6 { (Domain::IPV6, Protocol::ICMPV6) } else { (Domain::IPV4, Protocol::ICMPV4) };
    let socket = Socket::new(domain, Type::RAW, Some(protocol)).map_err(CheckError::Connect)?;
    socket.set_nonblocking(true).map_err(CheckError::Connect)?;
    super::mark_and_bind_device(socket2::SockRef::from(&socket), ep)?;
    if let Some(bind) = ep.bind {
        socket.bind(&SockAddr::from(SocketAddr::new(bind.ip(), 0))).map_err(CheckError::Connect)?;
    }
    let target = ep.addr.ip();
    let id = super::random_u64() as u16;
    let seq = 1;
    let request = echo_request(v6, id, seq, b"lbd PING_CHECK");
    // SAFETY: the socket2 Socket owns its descriptor, which stays open and the same until the
    // AsyncFd (its owner) is dropped.
    let fd = unsafe { AsyncFd::register(socket) }.map_err(|e| CheckError::Connect(e.into()))?;
    fd.async_io(Interest::WRITABLE, |s| s.send_to(&request, &SockAddr::from(SocketAddr::new(target, 0))))
        .await?;
    let mut buf = [MaybeUninit::<u8>::uninit(); 1500];
    loop {
        let (n, from) = fd.async_io(Interest::READABLE, |s| s.recv_from(&mut buf)).await?;
        // SAFETY: recv_from initialised the first `n` bytes.
        let packet = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
        let from: Option<IpAddr> = from.as_socket().map(|a| a.ip());
        if from == Some(target) && is_reply(v6, packet, id, seq) {
            return Ok(Probe::Up);
        }
    }
}

/// An error for a socket that cannot be made (no privileges).
pub fn is_permission(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_checksum_and_reply_matching() {
        let req = echo_request(false, 0x1234, 1, b"abc");
        assert_eq!(checksum(&req), 0, "a packet with its checksum sums to zero");
        let mut ip = vec![0x45; 1];
        ip.extend_from_slice(&[0; 19]);
        let mut reply = req.clone();
        reply[0] = 0;
        ip.extend_from_slice(&reply);
        assert!(is_reply(false, &ip, 0x1234, 1));
        assert!(!is_reply(false, &ip, 0x1235, 1));
        let mut v6 = echo_request(true, 7, 1, b"");
        v6[0] = 129;
        assert!(is_reply(true, &v6, 7, 1));
    }

    #[tokio::test]
    async fn loopback_answers() {
        let ep = Endpoint {
            addr: "127.0.0.1:0".parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0))),
            bind: None,
            fwmark: None,
            device: None,
            timeout: std::time::Duration::from_secs(1),
            udp: false,
        };
        match tokio::time::timeout(ep.timeout, probe(&ep)).await {
            Ok(Err(CheckError::Connect(e))) if is_permission(&e) => {} // not root: nothing to test
            other => assert!(matches!(other, Ok(Ok(Probe::Up))), "{other:?}"),
        }
    }
}
