//! `SMTP_CHECK`: the server's banner is 2xx, `HELO helo_name` is answered 2xx, then `QUIT`.
//! Multi-line replies (`250-...`) are read to their last line. The connect, and each read and
//! write, may take `connect_timeout` ([`super::timed`]), as keepalived's.

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

use super::{CheckError, Endpoint, Probe};

/// keepalived's default `helo_name`.
pub const DEFAULT_HELO: &str = "smtpchecker.keepalived.org";

/// One SMTP_CHECK probe.
pub async fn probe(ep: &Endpoint, helo: &str) -> Result<Probe, CheckError> {
    let stream = super::tcp::connect_timed(ep).await?;
    let mut stream = BufReader::new(stream);
    expect_2xx(&mut stream, "banner").await?;
    stream.get_mut().write_all(format!("HELO {helo}\r\n").as_bytes()).await?;
    expect_2xx(&mut stream, "HELO").await?;
    stream.get_mut().write_all(b"QUIT\r\n").await?;
    Ok(Probe::Up)
}

/// Reads one reply (all its lines) and requires a 2xx code.
async fn expect_2xx<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    what: &str,
) -> Result<(), CheckError> {
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Err(CheckError::Smtp(format!("connection closed before the {what} reply")));
        }
        let bytes = line.as_bytes();
        if bytes.len() < 4 || !bytes[..3].iter().all(u8::is_ascii_digit) {
            return Err(CheckError::Smtp(format!("malformed {what} reply {:?}", line.trim_end())));
        }
        if bytes[3] != b'-' {
            break;
        }
    }
    if line.starts_with('2') {
        Ok(())
    } else {
        Err(CheckError::Smtp(format!("{what} reply {:?}", line.trim_end())))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncReadExt as _;

    use super::*;

    async fn sink(
        banner: &'static str,
    ) -> std::io::Result<(std::net::SocketAddr, tokio::task::JoinHandle<String>)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let Ok((mut s, _)) = listener.accept().await else { return String::new() };
            let _ = s.write_all(banner.as_bytes()).await;
            let mut got = Vec::new();
            let mut buf = [0; 256];
            while let Ok(n @ 1..) = s.read(&mut buf).await {
                got.extend_from_slice(&buf[..n]);
                if got.ends_with(b"QUIT\r\n") {
                    break;
                }
                if got.ends_with(b"\r\n") {
                    let _ = s.write_all(b"250 hello\r\n").await;
                }
            }
            String::from_utf8_lossy(&got).into_owned()
        });
        Ok((addr, task))
    }

    fn endpoint(addr: std::net::SocketAddr) -> Endpoint {
        Endpoint { addr, bind: None, fwmark: None, device: None, timeout: Duration::from_secs(2), udp: false }
    }

    #[tokio::test]
    async fn banner_helo_quit() -> Result<(), Box<dyn std::error::Error>> {
        let (addr, task) = sink("220-first\r\n220 mx ready\r\n").await?;
        assert!(matches!(probe(&endpoint(addr), "me.example").await, Ok(Probe::Up)));
        assert_eq!(task.await?, "HELO me.example\r\nQUIT\r\n");
        let (addr, _task) = sink("554 go away\r\n").await?;
        assert!(matches!(probe(&endpoint(addr), DEFAULT_HELO).await, Err(CheckError::Smtp(_))));
        Ok(())
    }
}
