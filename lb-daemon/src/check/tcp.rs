//! `TCP_CHECK`: a TCP connection to the real server succeeds (then is closed).
//!
//! [`connect`] is also how HTTP_GET, SSL_GET and SMTP_CHECK connect: from `bindto`:`bind_port`,
//! with `fwmark` as the socket's mark, bound to the `bind_if` interface (SO_BINDTODEVICE, set
//! before the bind as keepalived does: a link-local `bindto` or destination needs it).

use tokio::net::{TcpSocket, TcpStream};

use super::{CheckError, Endpoint, Probe, timed::Timed};

/// Connects to `ep` as keepalived's checkers do (the caller bounds the time).
pub async fn connect(ep: &Endpoint) -> Result<TcpStream, CheckError> {
    let socket = if ep.addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }
        .map_err(CheckError::Connect)?;
    super::mark_and_bind_device(socket2::SockRef::from(&socket), ep)?;
    if let Some(bind) = ep.bind {
        if bind.port() != 0 {
            socket.set_reuseaddr(true).map_err(CheckError::Connect)?;
        }
        socket.bind(bind).map_err(CheckError::Connect)?;
    }
    let stream = socket.connect(ep.addr).await.map_err(CheckError::Connect)?;
    // Close with a RST-free FIN; nodelay keeps request/response checks to one round trip.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Connects to `ep` within its `connect_timeout`, and gives each later read and write of the
/// connection as long ([`Timed`]): keepalived's limits for the checkers that talk.
pub async fn connect_timed(ep: &Endpoint) -> Result<Timed<TcpStream>, CheckError> {
    let stream = tokio::time::timeout(ep.timeout, connect(ep))
        .await
        .map_err(|_| CheckError::Timeout(ep.timeout))??;
    Ok(Timed::new(stream, ep.timeout))
}

/// One TCP_CHECK probe.
///
/// The connection is closed with a reset (SO_LINGER 0), as HAProxy closes its TCP checks: the
/// check leaves no TIME_WAIT socket behind, which at thousands of probes a second would hold
/// tens of thousands of them and make every connect's port search slower.
pub async fn probe(ep: &Endpoint) -> Result<Probe, CheckError> {
    let stream = connect(ep).await?;
    let _ = socket2::SockRef::from(&stream).set_linger(Some(std::time::Duration::ZERO));
    Ok(Probe::Up)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn endpoint(addr: std::net::SocketAddr) -> Endpoint {
        Endpoint { addr, bind: None, fwmark: None, device: None, timeout: Duration::from_secs(1), udp: false }
    }

    #[tokio::test]
    async fn connects_to_a_listener_and_fails_without_one() -> Result<(), Box<dyn std::error::Error>> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        assert!(matches!(probe(&endpoint(addr)).await, Ok(Probe::Up)));
        drop(listener);
        assert!(matches!(probe(&endpoint(addr)).await, Err(CheckError::Connect(_))));
        Ok(())
    }

    #[tokio::test]
    async fn binds_to_bindto_and_bind_port() -> Result<(), Box<dyn std::error::Error>> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let mut ep = endpoint(listener.local_addr()?);
        ep.bind = Some("127.0.0.2:0".parse()?);
        let stream = connect(&ep).await?;
        assert_eq!(stream.local_addr()?.ip(), "127.0.0.2".parse::<std::net::IpAddr>()?);
        Ok(())
    }
}
