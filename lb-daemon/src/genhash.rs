//! `genhash`: the MD5 digest of a web page's body, as keepalived's genhash computes it for
//! `HTTP_GET { url { digest ... } }`.
//!
//! The request bytes, the digest (body only, headers excluded), the output and the exit codes
//! follow keepalived 2.2.7's genhash (shared/reference/keepalived-cli.md §2). The HTTP_GET
//! and SSL_GET checkers read pages with the same [`page`], so a digest genhash prints is one
//! they accept.

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
    let host = match virtualhost {
        Some(vhost) => vhost.to_owned(),
        None => match server {
            SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        },
    };
    request_to(url, &host, protocol)
}

/// The request for `url` with Host header `host` (genhash's and the HTTP_GET checker's).
pub fn request_to(url: &str, host: &str, protocol: Protocol) -> String {
    let version = if protocol == Protocol::Http11 { "1.1" } else { "1.0" };
    let close = if protocol == Protocol::Http10 { "" } else { "Connection: close\r\n" };
    format!("GET {url} HTTP/{version}\r\nUser-Agent: KeepAliveClient\r\n{close}Host: {host}\r\n\r\n")
}

/// keepalived reads a response into a buffer of 4096 bytes, one of them kept for a NUL: the
/// headers must end within the first 4095 bytes (else "no data received"), and the status and
/// `Content-Length` are read from those bytes.
pub const HEAD_BUFFER: usize = 4095;

/// A response as keepalived 2.2.7's HTTP_GET checker and genhash read it: the bytes received
/// until the server closed the connection, split at the first `\r\n\r\n`. The body is not
/// decoded: a chunked body is hashed with its chunk sizes, as keepalived hashes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<'a> {
    /// Status line and headers, with the blank line that ends them.
    pub head: &'a [u8],
    /// The status code, read as keepalived reads it: the text between the first space and the
    /// next one, as C's `atoi` reads it (0 when there is no number).
    pub status: u16,
    /// `Content-Length:` (case-sensitive, the first occurrence in the first 4095 bytes),
    /// when its digits are followed by the end of the line.
    pub content_length: Option<u64>,
    /// Everything after the head, up to the server's close (the input of a url's `regex`).
    pub body: &'a [u8],
    /// The body cut at `content_length`: the bytes the digest covers (bytes past
    /// `Content-Length` are ignored; fewer are hashed as received).
    pub hashed: &'a [u8],
}

/// Reads `raw` as keepalived does; `None` when the headers do not end within
/// [`HEAD_BUFFER`] bytes (keepalived: "no data received from remote webserver").
pub fn page(raw: &[u8]) -> Option<Page<'_>> {
    let first = &raw[..raw.len().min(HEAD_BUFFER)];
    let end = first.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    // keepalived's string functions stop at the first NUL.
    let text = &first[..first.iter().position(|&b| b == 0).unwrap_or(first.len())];
    let content_length = content_length(text);
    let body = &raw[end..];
    let cut = content_length.map_or(body.len(), |n| body.len().min(usize::try_from(n).unwrap_or(usize::MAX)));
    Some(Page { head: &raw[..end], status: status_code(first), content_length, body, hashed: &body[..cut] })
}

/// The digest of `raw` as keepalived computes it (`None`: no headers, no digest).
pub fn page_digest(raw: &[u8]) -> Option<[u8; 16]> {
    page(raw).map(|p| body_digest(p.hashed))
}

/// The status code between the first space and the next one, read by C's `atoi`.
fn status_code(first: &[u8]) -> u16 {
    let Some(space) = first.iter().position(|&b| b == b' ') else { return 0 };
    let rest = &first[space + 1..];
    let token = &rest[..rest.iter().position(|&b| b == b' ' || b == 0).unwrap_or(rest.len())];
    let (value, _) = c_number(token);
    u16::try_from(value).unwrap_or(0)
}

/// `Content-Length:` parsed as keepalived 2.2.7 parses it (observed): leading white space and
/// a sign are skipped, base-10 digits read, and the value kept only when the next byte ends the
/// line (`"5 "`, `"5x"` and `" "` mean no length; an empty value means 0). A negative value
/// wraps, as `strtoul`'s, to a length no body reaches.
fn content_length(text: &[u8]) -> Option<u64> {
    const NAME: &[u8] = b"Content-Length:";
    let at = text.windows(NAME.len()).position(|w| w == NAME)? + NAME.len();
    let (value, end) = c_number(&text[at..]);
    matches!(text.get(at + end), Some(b'\r' | b'\n')).then_some(value as u64)
}

/// C's `strtol` in base 10 over `text`: white space, a sign, digits. The value (saturated)
/// and where the parse stopped (0 when there are no digits, as `strtol`'s end pointer).
fn c_number(text: &[u8]) -> (i128, usize) {
    let mut i = text.iter().position(|b| !b" \t\n\x0b\x0c\r".contains(b)).unwrap_or(text.len());
    let negative = text.get(i) == Some(&b'-');
    if matches!(text.get(i), Some(b'+' | b'-')) {
        i += 1;
    }
    let digits = text[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return (0, 0);
    }
    let value = text[i..i + digits].iter().fold(0i128, |v, d| {
        v.saturating_mul(10).saturating_add(i128::from(d - b'0')).min(i128::from(u64::MAX))
    });
    (if negative { -value } else { value }, i + digits)
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

/// What genhash fetches, and how.
#[derive(Clone, Debug)]
pub struct Query<'a> {
    /// `-s` and `-p`.
    pub server: SocketAddr,
    /// `-u`.
    pub url: &'a str,
    /// `-V`.
    pub virtualhost: Option<&'a str>,
    /// `-P`.
    pub protocol: Protocol,
    /// `-t`: for the connection, and for each read.
    pub timeout: Duration,
    /// `-S` (and `-I`).
    pub tls: Tls,
    /// `-m`: the socket's mark (SO_MARK).
    pub fwmark: Option<u32>,
}

/// Why a fetch gave no page: each prints keepalived's line on stdout (genhash exits 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The connection was refused or could not be made.
    Connect,
    /// The connection did not complete in time.
    ConnectTimeout,
    /// Nothing came back in time.
    NoAnswer,
    /// The answer stalled before the server closed.
    ReadTimeout,
    /// Reading failed (a reset, a TLS error).
    Read,
}

impl Failure {
    /// keepalived 2.2.7's line (observed).
    pub fn message(self) -> &'static str {
        match self {
            Failure::Connect => "Connection failed",
            Failure::ConnectTimeout => "Timeout connecting",
            Failure::NoAnswer => "Timeout WEB read",
            Failure::ReadTimeout => "Timeout HTTP read",
            Failure::Read => "Read error with",
        }
    }
}

/// Connects to `query.server` with its mark and time limit.
fn connect(query: &Query<'_>) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(query.server),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if let Some(mark) = query.fwmark {
        socket.set_mark(mark)?;
    }
    socket.connect_timeout(&query.server.into(), query.timeout)?;
    Ok(socket.into())
}

/// Fetches `query.url` and returns the raw response (everything until the server closed),
/// or why not.
pub fn fetch(query: &Query<'_>) -> Result<Vec<u8>, Failure> {
    let stream = connect(query).map_err(|e| match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => Failure::ConnectTimeout,
        _ => Failure::Connect,
    })?;
    let setup = |s: &TcpStream| -> std::io::Result<()> {
        s.set_read_timeout(Some(query.timeout))?;
        s.set_write_timeout(Some(query.timeout))
    };
    setup(&stream).map_err(|_| Failure::Connect)?;
    let request = request(query.url, &query.server, query.virtualhost, query.protocol);
    let Some(sni) = query.tls else { return exchange(stream, &request) };
    // The same client as SSL_GET: no certificate verification, as keepalived's genhash.
    let config = crate::check::ssl::client_config().map_err(|_| Failure::Connect)?;
    let name = crate::check::ssl::server_name(query.virtualhost.filter(|_| sni), query.server.ip())
        .map_err(|_| Failure::Connect)?;
    let connection = rustls::ClientConnection::new(config, name).map_err(|_| Failure::Connect)?;
    exchange(rustls::StreamOwned::new(connection, stream), &request)
}

/// Sends `request` and reads until the server closes, each read within the stream's
/// timeout. A TLS server closing without close_notify still ends the response, as it does
/// for genhash.
fn exchange(mut stream: impl Read + Write, request: &str) -> Result<Vec<u8>, Failure> {
    stream.write_all(request.as_bytes()).and_then(|()| stream.flush()).map_err(|e| match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => Failure::NoAnswer,
        _ => Failure::Read,
    })?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(raw),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => return Ok(raw),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) => {
                return Err(if raw.is_empty() { Failure::NoAnswer } else { Failure::ReadTimeout });
            }
            Err(_) => return Err(Failure::Read),
        }
    }
}

/// The verbose report genhash prints with `-v` for a page.
pub fn verbose_report(page: &Page<'_>, url: &str, elapsed: Duration) -> String {
    let digest = body_digest(page.hashed);
    let bar = |title: &str| format!("-----------------------[ {title} ]-----------------------\n");
    let mut out = bar("   HTTP Header Buffer   ");
    out.push_str(&hex_dump(page.head));
    out.push_str(&bar("HTTP Header Ascii Buffer"));
    out.push_str(&String::from_utf8_lossy(page.head).replace('\r', ""));
    out.push('\n');
    out.push_str(&hex_dump(page.hashed));
    out.push('\n');
    out.push_str(&bar("   HTML hash resulting   "));
    out.push_str(&hex_dump(&digest));
    out.push_str(&bar("HTML hash final resulting"));
    out.push_str(&hex(&digest));
    out.push_str("\n\n");
    let _ = writeln!(out, "Global response time for [{url}] = {} usecs", elapsed.as_micros());
    out
}

/// What genhash prints for one fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Runs one fetch and returns what genhash prints (it always exits 0 once it has fetched).
pub fn run(query: &Query<'_>, verbose: bool) -> Output {
    let started = Instant::now();
    let stdout = |text: String| Output { stdout: text, stderr: String::new() };
    match fetch(query) {
        Ok(raw) => match page(&raw) {
            Some(page) if verbose => stdout(verbose_report(&page, query.url, started.elapsed())),
            Some(page) => stdout(format!("{}\n", hex(&body_digest(page.hashed)))),
            // No headers: nothing on stdout.
            None => {
                Output { stdout: String::new(), stderr: "no data received from remote webserver\n".into() }
            }
        },
        Err(failure) => stdout(format!("{}\n", failure.message())),
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
        assert_eq!(hex(&page_digest(raw).unwrap_or_default()), "a602ec42f4ceeeb5826ca1cdd22b79ff");
    }

    /// What keepalived 2.2.7's genhash printed for each answer (observed, /usr/bin/genhash
    /// against a server sending these bytes and closing): the MD5 of these bytes.
    #[test]
    fn pages_read_as_keepalived_reads_them() {
        let hashed = |raw: &'static [u8]| page(raw).map(|p| p.hashed);
        // Chunked: not decoded, the chunk sizes are hashed too.
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        assert_eq!(hashed(chunked), Some(&b"5\r\nhello\r\n0\r\n\r\n"[..]));
        // Bytes past Content-Length are not hashed; fewer are hashed as received.
        assert_eq!(hashed(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA"), Some(&b"hello"[..]));
        assert_eq!(hashed(b"HTTP/1.0 200 OK\r\nContent-Length: 50\r\n\r\nshort"), Some(&b"short"[..]));
        // No Content-Length: everything until the close.
        assert_eq!(hashed(b"HTTP/1.0 200 OK\r\n\r\nall of it\n"), Some(&b"all of it\n"[..]));
        // The header's spelling: case-sensitive, found anywhere (even in X-Content-Length or the
        // body), digits then the line's end; an empty value is 0.
        let cl = |value: &str| {
            let raw = format!("HTTP/1.0 200 OK\r\n{value}\r\n\r\nhelloEXTRA");
            page(raw.as_bytes()).and_then(|p| p.content_length)
        };
        assert_eq!(cl("Content-Length: 5"), Some(5));
        assert_eq!(cl("Content-Length:5"), Some(5));
        assert_eq!(cl("Content-Length:\t+05"), Some(5));
        assert_eq!(cl("X-Content-Length: 5"), Some(5));
        assert_eq!(cl("Content-Length:"), Some(0));
        assert_eq!(cl("Content-Length: -1"), Some(u64::MAX));
        for none in [
            "content-length: 5",
            "CONTENT-LENGTH: 5",
            "Content-Length: 5 ",
            "Content-Length: 5x",
            "Content-Length: ",
        ] {
            assert_eq!(cl(none), None, "{none:?}");
        }
        assert_eq!(hashed(b"HTTP/1.0 200 OK\r\n\r\nab Content-Length: 2\r\n"), Some(&b"ab"[..]));
        // keepalived's strings stop at a NUL.
        assert_eq!(
            page(b"HTTP/1.0 200 OK\r\n\r\na\0 Content-Length: 1\r\n").and_then(|p| p.content_length),
            None
        );
        // No header end (LF-only lines, nothing, headers past 4095 bytes): no page.
        assert_eq!(page(b"HTTP/1.0 200 OK\nContent-Length: 2\n\nab"), None);
        assert_eq!(page(b""), None);
        let long = format!("HTTP/1.0 200 OK\r\nX: {}\r\n\r\nhello", "a".repeat(4100));
        assert_eq!(page(long.as_bytes()), None);
        let fits = format!("HTTP/1.0 200 OK\r\nX: {}\r\n\r\nhello", "a".repeat(4070));
        assert_eq!(page(fits.as_bytes()).map(|p| p.hashed), Some(&b"hello"[..]));
    }

    #[test]
    fn status_read_as_keepalived_reads_it() {
        let status = |raw: &'static [u8]| page(raw).map(|p| p.status);
        assert_eq!(status(b"HTTP/1.0 404 Not Found\r\n\r\n"), Some(404));
        assert_eq!(status(b"HTTP/1.0 200\r\nX: y\r\n\r\n"), Some(200));
        assert_eq!(status(b"HTTP/1.0  200 OK\r\n\r\n"), Some(0));
        assert_eq!(status(b"garbage\r\n\r\nbody"), Some(0));
    }

    #[test]
    fn hex_dump_lines_as_genhash() {
        let dump = hex_dump(b"HTTP/1.0 200 OK\r\n5 GMT\r\n\r\n");
        let lines: Vec<&str> = dump.lines().collect();
        assert_eq!(lines[0], "0000  48 54 54 50 2f 31 2e 30 - 20 32 30 30 20 4f 4b 0d   HTTP/1.0 200 OK.");
        assert_eq!(lines[1], "0016  0a 35 20 47 4d 54 0d 0a - 0d 0a                     .5 GMT....");
    }
}
