//! `genhash`: the MD5 digest of a web page's body, as keepalived's genhash computes it for
//! `HTTP_GET { url { digest ... } }`.
//!
//! The request bytes, the digest (body only, headers excluded), the output and the exit codes
//! follow keepalived 2.2.7's genhash (shared/reference/keepalived-cli.md §2). The HTTP_GET
//! checker will use [`body_digest`] to compare pages with configured digests.

use std::{
    fmt::Write as _,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use md5::{Digest as _, Md5};

/// The HTTP flavour of the request (`-P`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// `1.0` (default).
    #[default]
    Http10,
    /// `1.0c`: HTTP/1.0 with `Connection: close`.
    Http10Close,
    /// `1.1` (always with `Connection: close`).
    Http11,
}

impl Protocol {
    /// From genhash's `-P` argument.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "1.0" => Some(Self::Http10),
            "1.0c" => Some(Self::Http10Close),
            "1.1" => Some(Self::Http11),
            _ => None,
        }
    }
}

/// The request genhash sends: `GET URL HTTP/1.x`, its User-Agent, and a Host header of
/// `server:port` or the virtual host.
pub fn request(url: &str, server: &SocketAddr, virtualhost: Option<&str>, protocol: Protocol) -> String {
    let version = if protocol == Protocol::Http11 { "1.1" } else { "1.0" };
    let close = if protocol == Protocol::Http10 { "" } else { "Connection: close\r\n" };
    let host = match virtualhost {
        Some(vhost) => vhost.to_owned(),
        None => match server {
            SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        },
    };
    format!("GET {url} HTTP/{version}\r\nUser-Agent: KeepAliveClient\r\n{close}Host: {host}\r\n\r\n")
}

/// A response split at the end of its headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response<'a> {
    /// Status line and headers, with the blank line that ends them.
    pub head: &'a [u8],
    /// Everything after.
    pub body: &'a [u8],
}

/// Splits `raw` at the first `\r\n\r\n` (no header end: all head, empty body).
pub fn split(raw: &[u8]) -> Response<'_> {
    match raw.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => Response { head: &raw[..i + 4], body: &raw[i + 4..] },
        None => Response { head: raw, body: &[] },
    }
}

/// The MD5 of the body, 16 bytes.
pub fn body_digest(body: &[u8]) -> [u8; 16] {
    Md5::digest(body).into()
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// genhash's hex dump: decimal offset, 8 bytes, " - ", 8 bytes, then the printable characters.
pub fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (n, chunk) in bytes.chunks(16).enumerate() {
        let hex_part: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let (left, right) = hex_part.split_at(hex_part.len().min(8));
        let mut line = format!("{:04}  {}", n * 16, left.join(" "));
        if !right.is_empty() {
            line.push_str(" - ");
            line.push_str(&right.join(" "));
        }
        // Pad to the full width of 16 bytes ("xx " * 16 + "- ").
        let width = 6 + 16 * 3 + 2 - 1;
        while line.len() < width {
            line.push(' ');
        }
        line.push_str("   ");
        line.extend(chunk.iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '.' }));
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// TLS for `-S`: `Some(sni)`, sending the virtual host as SNI when `sni` (`-I`).
pub type Tls = Option<bool>;

/// Fetches `url` from `server` (over TLS with `tls`) and returns the raw response, or why not.
pub fn fetch(
    server: &SocketAddr,
    url: &str,
    virtualhost: Option<&str>,
    protocol: Protocol,
    timeout: Duration,
    tls: Tls,
) -> std::io::Result<Vec<u8>> {
    let stream = TcpStream::connect_timeout(server, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let request = request(url, server, virtualhost, protocol);
    let Some(sni) = tls else { return exchange(stream, &request) };
    // The same client as SSL_GET: no certificate verification, as keepalived's genhash.
    let tls_error = |e: crate::check::CheckError| std::io::Error::other(e.to_string());
    let config = crate::check::ssl::client_config().map_err(tls_error)?;
    let name = crate::check::ssl::server_name(virtualhost.filter(|_| sni), server.ip()).map_err(tls_error)?;
    let connection = rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    exchange(rustls::StreamOwned::new(connection, stream), &request)
}

/// Sends `request` and reads until the server closes. A TLS server closing without
/// close_notify still ends the response, as it does for genhash.
fn exchange(mut stream: impl Read + Write, request: &str) -> std::io::Result<Vec<u8>> {
    stream.write_all(request.as_bytes())?;
    stream.flush()?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => Ok(raw),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => Ok(raw),
        Err(e) => Err(e),
    }
}

/// The verbose report genhash prints with `-v`.
pub fn verbose_report(raw: &[u8], url: &str, elapsed: Duration) -> String {
    let response = split(raw);
    let digest = body_digest(response.body);
    let bar = |title: &str| format!("-----------------------[ {title} ]-----------------------\n");
    let mut out = bar("   HTTP Header Buffer   ");
    out.push_str(&hex_dump(response.head));
    out.push_str(&bar("HTTP Header Ascii Buffer"));
    out.push_str(&String::from_utf8_lossy(response.head).replace('\r', ""));
    out.push('\n');
    out.push_str(&hex_dump(response.body));
    out.push('\n');
    out.push_str(&bar("   HTML hash resulting   "));
    out.push_str(&hex_dump(&digest));
    out.push_str(&bar("HTML hash final resulting"));
    out.push_str(&hex(&digest));
    out.push_str("\n\n");
    let _ = writeln!(out, "Global response time for [{url}] = {} usecs", elapsed.as_micros());
    out
}

/// Runs one fetch and returns what genhash prints on stdout.
pub fn run(
    server: &SocketAddr,
    url: &str,
    virtualhost: Option<&str>,
    protocol: Protocol,
    verbose: bool,
    timeout: Duration,
    tls: Tls,
) -> String {
    let started = Instant::now();
    match fetch(server, url, virtualhost, protocol, timeout, tls) {
        Ok(raw) if verbose => verbose_report(&raw, url, started.elapsed()),
        Ok(raw) => format!("{}\n", hex(&body_digest(split(&raw).body))),
        // keepalived's genhash prints this on stdout and exits 0.
        Err(_) => "Connection failed\n".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_match_keepalived_byte_for_byte() {
        let server: SocketAddr = "127.0.0.1:18091".parse().unwrap_or_else(|_| unreachable!());
        assert_eq!(
            request("/x", &server, None, Protocol::Http10),
            "GET /x HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: 127.0.0.1:18091\r\n\r\n"
        );
        assert_eq!(
            request("/x", &server, None, Protocol::Http10Close),
            "GET /x HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nConnection: close\r\nHost: 127.0.0.1:18091\r\n\r\n"
        );
        assert_eq!(
            request("/x", &server, Some("vhost.example"), Protocol::Http11),
            "GET /x HTTP/1.1\r\nUser-Agent: KeepAliveClient\r\nConnection: close\r\nHost: vhost.example\r\n\r\n"
        );
    }

    #[test]
    fn digest_covers_the_body_only() {
        let raw = b"HTTP/1.0 200 OK\r\nContent-Length: 30\r\n\r\nHello keepalived genhash test\n";
        assert_eq!(hex(&body_digest(split(raw).body)), "a602ec42f4ceeeb5826ca1cdd22b79ff");
    }

    #[test]
    fn hex_dump_lines_as_genhash() {
        let dump = hex_dump(b"HTTP/1.0 200 OK\r\n5 GMT\r\n\r\n");
        let lines: Vec<&str> = dump.lines().collect();
        assert_eq!(lines[0], "0000  48 54 54 50 2f 31 2e 30 - 20 32 30 30 20 4f 4b 0d   HTTP/1.0 200 OK.");
        assert_eq!(lines[1], "0016  0a 35 20 47 4d 54 0d 0a - 0d 0a                     .5 GMT....");
    }
}
