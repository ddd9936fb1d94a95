//! `UDP_CHECK`: a datagram with `payload` (default: 16 random bytes) to the real server. With
//! `require_reply` the server must answer within the timeout, with a reply of between
//! `min_reply_length` and `max_reply_length` bytes that starts with the hex pattern (`x`
//! matches any nibble); without it, the check fails only if an ICMP error (port unreachable)
//! comes back.
//!
//! [`socket`] is also DNS_CHECK's socket: bound to `bindto`:`bind_port` and to the `bind_if`
//! interface, marked with `fwmark`, connected so that ICMP errors are reported.

use tokio::net::UdpSocket;

use super::{CheckError, Endpoint, Probe};
use crate::config::model::UdpCheck;

/// A UDP socket connected to `ep`.
pub async fn socket(ep: &Endpoint) -> Result<UdpSocket, CheckError> {
    let domain = if ep.addr.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))
        .map_err(CheckError::Connect)?;
    s.set_nonblocking(true).map_err(CheckError::Connect)?;
    super::mark_and_bind_device(socket2::SockRef::from(&s), ep)?;
    if let Some(bind) = ep.bind {
        s.set_reuse_address(true).map_err(CheckError::Connect)?;
        s.bind(&bind.into()).map_err(CheckError::Connect)?;
    }
    let socket = UdpSocket::from_std(s.into()).map_err(CheckError::Connect)?;
    socket.connect(ep.addr).await.map_err(CheckError::Connect)?;
    Ok(socket)
}

/// One UDP_CHECK probe.
pub async fn probe(ep: &Endpoint, check: &UdpCheck) -> Result<Probe, CheckError> {
    let socket = socket(ep).await?;
    let payload = match &check.payload {
        Some(p) => p.clone(),
        None => [super::random_u64().to_be_bytes(), super::random_u64().to_be_bytes()].concat(),
    };
    socket.send(&payload).await?;
    let mut buf = vec![0; 65536];
    let Some(pattern) = &check.require_reply else {
        // No answer needed: only an ICMP error within (most of) the timeout fails.
        return match tokio::time::timeout(ep.timeout.mul_f64(0.9), socket.recv(&mut buf)).await {
            Err(_) | Ok(Ok(_)) => Ok(Probe::Up),
            Ok(Err(e)) => Err(CheckError::Io(e)),
        };
    };
    let n = socket.recv(&mut buf).await?;
    judge_reply(&buf[..n], pattern, check.min_reply_length, check.max_reply_length)
}

/// Whether `reply` passes `require_reply`, `min_reply_length` and `max_reply_length`.
pub fn judge_reply(
    reply: &[u8],
    pattern: &str,
    min: Option<u32>,
    max: Option<u32>,
) -> Result<Probe, CheckError> {
    let len = reply.len() as u64;
    if min.is_some_and(|m| len < u64::from(m)) || max.is_some_and(|m| len > u64::from(m)) {
        return Err(CheckError::Udp(format!("reply of {len} bytes is outside the length limits")));
    }
    let nibbles: Vec<char> = pattern.chars().filter(|c| !c.is_whitespace()).collect();
    for (i, want) in nibbles.iter().enumerate() {
        let Some(byte) = reply.get(i / 2) else {
            return Err(CheckError::Udp("reply shorter than require_reply".into()));
        };
        let got = if i % 2 == 0 { byte >> 4 } else { byte & 0xf };
        match want.to_digit(16) {
            Some(w) if w != u32::from(got) => {
                return Err(CheckError::Udp("reply does not match require_reply".into()));
            }
            _ => {}
        }
    }
    Ok(Probe::Up)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn endpoint(addr: std::net::SocketAddr) -> Endpoint {
        Endpoint {
            addr,
            bind: None,
            fwmark: None,
            device: None,
            timeout: Duration::from_millis(500),
            udp: true,
        }
    }

    #[test]
    fn reply_patterns_and_lengths() {
        assert!(judge_reply(&[0xab, 0xcd, 0xef], "abxd", None, None).is_ok());
        assert!(judge_reply(&[0xab, 0xcd], "abce", None, None).is_err());
        assert!(judge_reply(&[0xab], "abcd", None, None).is_err());
        assert!(judge_reply(&[1, 2, 3], "", Some(4), None).is_err());
        assert!(judge_reply(&[1, 2, 3], "", Some(1), Some(2)).is_err());
        assert!(judge_reply(&[1, 2, 3], "", Some(3), Some(3)).is_ok());
    }

    #[tokio::test]
    async fn echo_passes_and_a_closed_port_fails() -> Result<(), Box<dyn std::error::Error>> {
        let echo = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = echo.local_addr()?;
        tokio::spawn(async move {
            let mut buf = [0; 64];
            while let Ok((n, peer)) = echo.recv_from(&mut buf).await {
                let _ = echo.send_to(&buf[..n], peer).await;
            }
        });
        let check = UdpCheck {
            payload: Some(vec![0x12, 0x34]),
            require_reply: Some("12x4".into()),
            ..UdpCheck::default()
        };
        assert!(matches!(probe(&endpoint(addr), &check).await, Ok(Probe::Up)));
        let closed = UdpSocket::bind("127.0.0.1:0").await?.local_addr()?;
        assert!(probe(&endpoint(closed), &UdpCheck::default()).await.is_err(), "port unreachable");
        Ok(())
    }
}
