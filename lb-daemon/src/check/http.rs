//! `HTTP_GET`: a probe fetches one `url` (keepalived's cycle over the urls,
//! [`CheckerState::with_urls`](super::state::CheckerState::with_urls)) on a connection of its
//! own, and reads the answer until the server closes it
//! (as keepalived: a server that keeps the connection open fails the check by timing out), and
//! read as keepalived and genhash read it ([`crate::genhash::page`]: no header end in the
//! first 4095 bytes fails; the body is not decoded, so a chunked body is hashed with its chunk
//! sizes; bytes past `Content-Length` are not hashed). The status must be in the url's
//! `status_code` ranges (default 200-299), the body's MD5 must equal its `digest`, and its
//! `regex` must match the body (must not, with `regex_no_match`), starting between
//! `regex_min_offset` and `regex_max_offset`.
//! keepalived's regexes are PCRE2's; lbd's are the `regex` crate's, the same syntax for what
//! health pages use (no look-around, no back-references), with keepalived's `regex_options`
//! mapped to the crate's flags.
//!
//! The request is keepalived's: `GET PATH HTTP/1.0` (or 1.1 with `http_protocol`), its
//! User-Agent, and a Host header of the url's, the checker's, the real server's or the virtual
//! server's `virtualhost`, else `IP:PORT`. SSL_GET ([`super::ssl`]) sends the same over TLS.

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use super::{CheckError, Endpoint, Probe};
use crate::{
    config::model::{HttpCheck, HttpProtocol, StatusRange, Url},
    genhash,
};

/// One url to fetch, resolved from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlCheck {
    /// Path (and query).
    pub path: String,
    /// Host header.
    pub host: String,
    /// Expected digest, lower case.
    pub digest: Option<String>,
    /// Accepted status codes.
    pub status: Vec<StatusRange>,
    /// The url's `regex`, if any.
    pub regex: Option<BodyRegex>,
}

/// A url's `regex` with its options.
#[derive(Debug, Clone)]
pub struct BodyRegex {
    /// The compiled pattern.
    pub regex: regex::bytes::Regex,
    /// `regex_no_match`: a match fails the check.
    pub no_match: bool,
    /// `regex_min_offset`: a match must start at or after this body offset.
    pub min_offset: usize,
    /// `regex_max_offset`: a match must start at or before this body offset.
    pub max_offset: Option<usize>,
}

impl PartialEq for BodyRegex {
    fn eq(&self, other: &Self) -> bool {
        self.regex.as_str() == other.regex.as_str()
            && (self.no_match, self.min_offset, self.max_offset)
                == (other.no_match, other.min_offset, other.max_offset)
    }
}

impl Eq for BodyRegex {}

/// keepalived's PCRE2 options that only tune PCRE2 (or that the `regex` crate's syntax makes
/// moot): accepted and ignored.
const TUNING_OPTIONS: &[&str] = &[
    "allow_empty_class",
    "alt_bsux",
    "alt_circumflex",
    "alt_verbnames",
    "auto_callout",
    "dupnames",
    "match_unset_backref",
    "never_backslash_c",
    "never_ucp",
    "never_utf",
    "no_auto_capture",
    "no_auto_possess",
    "no_dotstar_anchor",
    "no_start_optimize",
    "ucp",
    "use_offset_limit",
];

impl BodyRegex {
    /// Compiles the `regex` of `url`, if it has one.
    pub fn new(url: &Url) -> Result<Option<Self>, CheckError> {
        let Some(pattern) = &url.regex else { return Ok(None) };
        let mut anchored = false;
        let mut builder = regex::bytes::RegexBuilder::new(pattern);
        for option in &url.regex_options {
            match option.as_str() {
                "caseless" => builder.case_insensitive(true),
                "multiline" => builder.multi_line(true),
                "dotall" => builder.dot_matches_new_line(true),
                "extended" => builder.ignore_whitespace(true),
                "ungreedy" => builder.swap_greed(true),
                "utf" => builder.unicode(true),
                "anchored" => {
                    anchored = true;
                    &mut builder
                }
                o if TUNING_OPTIONS.contains(&o) => &mut builder,
                o => {
                    return Err(CheckError::Unusable(format!(
                        "regex_options {o} is not supported (regex {pattern:?})"
                    )));
                }
            };
        }
        let regex = builder.build().map_err(|e| CheckError::Unusable(format!("regex {pattern:?}: {e}")))?;
        let offset = |o: Option<u64>| o.map(|o| usize::try_from(o).unwrap_or(usize::MAX));
        let min_offset = offset(url.regex_min_offset).unwrap_or(0);
        // PCRE2_ANCHORED: the match starts where the search does.
        let max_offset = if anchored { Some(min_offset) } else { offset(url.regex_max_offset) };
        Ok(Some(BodyRegex { regex, no_match: url.regex_no_match, min_offset, max_offset }))
    }

    /// Whether `body` passes: a match starting between the offsets, or none with `no_match`.
    pub fn passes(&self, body: &[u8]) -> bool {
        let found = body.get(self.min_offset..).is_some()
            && self
                .regex
                .find_at(body, self.min_offset)
                .is_some_and(|m| self.max_offset.is_none_or(|max| m.start() <= max));
        found != self.no_match
    }
}

/// An HTTP_GET / SSL_GET checker, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProbe {
    /// Where to connect.
    pub ep: Endpoint,
    /// HTTP version.
    pub protocol: HttpProtocol,
    /// The urls, all of which must pass (one per probe).
    pub urls: Vec<UrlCheck>,
}

impl HttpProbe {
    /// Resolves `check`: the Host header of each url falls back on `virtualhosts` (the
    /// real server's, then the virtual server's) and then on the endpoint.
    pub fn new(ep: Endpoint, check: &HttpCheck, virtualhosts: [Option<&str>; 2]) -> Result<Self, CheckError> {
        let default_host = match ep.addr {
            std::net::SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
            std::net::SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        };
        let url = |u: &Url| -> Result<UrlCheck, CheckError> {
            Ok(UrlCheck {
                path: u.path.clone().unwrap_or_else(|| "/".into()),
                host: u
                    .virtualhost
                    .as_deref()
                    .or(check.virtualhost.as_deref())
                    .or(virtualhosts[0])
                    .or(virtualhosts[1])
                    .map_or_else(|| default_host.clone(), str::to_owned),
                digest: u.digest.as_ref().map(|d| d.to_ascii_lowercase()),
                status: if u.status_code.is_empty() {
                    vec![StatusRange { from: 200, to: 299 }]
                } else {
                    u.status_code.clone()
                },
                regex: BodyRegex::new(u)?,
            })
        };
        Ok(HttpProbe {
            ep,
            protocol: check.http_protocol.unwrap_or(HttpProtocol::V1_0),
            urls: check.urls.iter().map(url).collect::<Result<_, _>>()?,
        })
    }

    /// The url of index `url` (keepalived checks one url per probe,
    /// [`CheckerState::with_urls`](super::state::CheckerState::with_urls)).
    pub fn url(&self, url: usize) -> Result<&UrlCheck, CheckError> {
        self.urls.get(url).ok_or_else(|| CheckError::Unusable(format!("no url {url}")))
    }

    /// One probe of url `url` over plain TCP: the connect, and each read and write after it, may
    /// take `connect_timeout` ([`super::timed`]).
    pub async fn probe(&self, url: usize) -> Result<Probe, CheckError> {
        let url = self.url(url)?;
        let stream = super::tcp::connect_timed(&self.ep).await?;
        self.check_url(stream, url).await?;
        Ok(Probe::Up)
    }

    /// Fetches `url` over `io` and judges the answer.
    pub async fn check_url<S>(&self, io: S, url: &UrlCheck) -> Result<(), CheckError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let raw = get(io, &self.request(url)).await?;
        judge(&raw, url)
    }

    /// keepalived's request for `url` (the same bytes as genhash's).
    pub fn request(&self, url: &UrlCheck) -> String {
        let protocol = match self.protocol {
            HttpProtocol::V1_0 => genhash::Protocol::Http10,
            HttpProtocol::V1_0C => genhash::Protocol::Http10Close,
            HttpProtocol::V1_1 => genhash::Protocol::Http11,
        };
        genhash::request_to(&url.path, &url.host, protocol)
    }
}

/// Judges the response `raw` to `url` as keepalived 2.2.7 does.
pub fn judge(raw: &[u8], url: &UrlCheck) -> Result<(), CheckError> {
    let Some(page) = genhash::page(raw) else {
        return Err(CheckError::Http(format!("no data received url({})", url.path)));
    };
    if !url.status.iter().any(|r| (r.from..=r.to).contains(&page.status)) {
        return Err(CheckError::Status { path: url.path.clone(), status: page.status });
    }
    if let Some(want) = &url.digest {
        let got = genhash::hex(&genhash::body_digest(page.hashed));
        if &got != want {
            return Err(CheckError::Digest { path: url.path.clone(), got, want: want.clone() });
        }
    }
    if let Some(regex) = &url.regex
        && !regex.passes(page.body)
    {
        return Err(CheckError::Regex {
            path: url.path.clone(),
            pattern: regex.regex.as_str().to_owned(),
            matched: regex.no_match,
        });
    }
    Ok(())
}

/// The most lbd reads of one answer: a health page larger than this fails the check
/// (keepalived streams any size; lbd keeps the page to hash and match it).
pub const MAX_PAGE: usize = 64 << 20;

/// Room added to the page before each read.
pub const READ_ROOM: usize = 16 * 1024;

/// The failure of an answer past [`MAX_PAGE`].
pub fn too_large() -> CheckError {
    CheckError::Http(format!("answer larger than {MAX_PAGE} bytes"))
}

/// Sends `request` over `io` and reads the answer until the server closes the connection.
/// A TLS server closing without close_notify still ends the answer, as it does for keepalived.
async fn get<S>(mut io: S, request: &str) -> Result<Vec<u8>, CheckError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    io.write_all(request.as_bytes()).await?;
    io.flush().await?;
    let mut raw = Vec::new();
    loop {
        // Read straight into the page, 16 KiB of room at a time.
        raw.reserve(READ_ROOM);
        match io.read_buf(&mut raw).await {
            Ok(0) => return Ok(raw),
            Ok(_) if raw.len() > MAX_PAGE => {
                return Err(too_large());
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => return Ok(raw),
            Err(e) => return Err(CheckError::Io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// A one-shot server answering every connection with `response`; the requests it got.
    async fn server(
        response: &'static str,
    ) -> std::io::Result<(std::net::SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = vec![0; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
                let _ = s.write_all(response.as_bytes()).await;
            }
        });
        Ok((addr, rx))
    }

    fn check(urls: Vec<Url>) -> HttpCheck {
        HttpCheck { urls, ..HttpCheck::default() }
    }

    fn endpoint(addr: std::net::SocketAddr) -> Endpoint {
        Endpoint { addr, bind: None, fwmark: None, device: None, timeout: Duration::from_secs(2), udp: false }
    }

    #[tokio::test]
    async fn sends_keepalived_request_and_checks_digest_and_status() -> Result<(), Box<dyn std::error::Error>>
    {
        let (addr, mut requests) = server("HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello").await?;
        let digest = genhash::hex(&genhash::body_digest(b"hello"));
        let good = Url { path: Some("/x".into()), digest: Some(digest.to_uppercase()), ..Url::default() };
        let probe = HttpProbe::new(endpoint(addr), &check(vec![good]), [None, None])?;
        assert!(matches!(probe.probe(0).await, Ok(Probe::Up)));
        let request = requests.recv().await.unwrap_or_default();
        let expected = genhash::request("/x", &addr, None, genhash::Protocol::Http10);
        assert_eq!(request.to_ascii_lowercase(), expected.to_ascii_lowercase());

        let bad = Url { path: Some("/".into()), digest: Some("00".repeat(16)), ..Url::default() };
        let probe = HttpProbe::new(endpoint(addr), &check(vec![bad]), [None, Some("vs.example")])?;
        assert!(matches!(probe.probe(0).await, Err(CheckError::Digest { .. })));
        assert!(requests.recv().await.unwrap_or_default().contains("vs.example"));

        let teapot = Url { status_code: vec![StatusRange { from: 418, to: 418 }], ..Url::default() };
        let probe = HttpProbe::new(endpoint(addr), &check(vec![teapot]), [None, None])?;
        assert!(matches!(probe.probe(0).await, Err(CheckError::Status { status: 200, .. })));
        Ok(())
    }

    #[tokio::test]
    async fn a_server_error_fails_the_default_status_range() -> Result<(), Box<dyn std::error::Error>> {
        let (addr, _requests) = server("HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n").await?;
        let probe = HttpProbe::new(endpoint(addr), &check(vec![Url::default()]), [None, None])?;
        assert!(matches!(probe.probe(0).await, Err(CheckError::Status { status: 503, .. })));
        Ok(())
    }

    /// keepalived 2.2.7's HTTP_GET verdicts (observed: `/usr/sbin/keepalived -C` with the IPVS
    /// shim, retry 0, one real server per case, against a server sending these bytes then
    /// closing).
    #[test]
    fn verdicts_match_keepalived_on_odd_pages() {
        let url = |digest: &[u8], status: Option<u16>| UrlCheck {
            path: "/".into(),
            host: "h".into(),
            digest: Some(genhash::hex(&genhash::body_digest(digest))),
            status: vec![
                status.map_or(StatusRange { from: 200, to: 299 }, |s| StatusRange { from: s, to: s }),
            ],
            regex: None,
        };
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7\r\n-world\n\r\n0\r\n\r\n";
        assert!(judge(chunked, &url(b"5\r\nhello\r\n7\r\n-world\n\r\n0\r\n\r\n", None)).is_ok());
        assert!(matches!(judge(chunked, &url(b"hello-world\n", None)), Err(CheckError::Digest { .. })));
        let extra = b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA-BYTES\n";
        assert!(judge(extra, &url(b"hello", None)).is_ok());
        assert!(matches!(judge(extra, &url(b"helloEXTRA-BYTES\n", None)), Err(CheckError::Digest { .. })));
        let close = b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\nno length here\n";
        assert!(judge(close, &url(b"no length here\n", None)).is_ok());
        let not_found = b"HTTP/1.0 404 Not Found\r\nContent-Length: 10\r\n\r\nnot found\n";
        assert!(matches!(
            judge(not_found, &url(b"not found\n", None)),
            Err(CheckError::Status { status: 404, .. })
        ));
        assert!(judge(not_found, &url(b"not found\n", Some(404))).is_ok());
        let short = b"HTTP/1.0 200 OK\r\nContent-Length: 50\r\n\r\nshortbody\n";
        assert!(judge(short, &url(b"shortbody\n", None)).is_ok());
        let lf = b"HTTP/1.0 200 OK\nContent-Length: 6\n\nlfbody";
        assert!(matches!(judge(lf, &url(b"lfbody", None)), Err(CheckError::Http(_))));
        let no_status = b"garbage\r\n\r\nbody\n";
        assert!(matches!(judge(no_status, &url(b"body\n", None)), Err(CheckError::Status { status: 0, .. })));
    }

    #[tokio::test]
    async fn a_reset_after_the_body_fails_and_a_server_that_keeps_the_connection_times_out()
    -> Result<(), Box<dyn std::error::Error>> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = vec![0; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello").await;
                n += 1;
                if n == 1 {
                    // A reset: keepalived fails the check ("Read error with").
                    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                } else {
                    // Kept open: keepalived waits for the close ("Timeout HTTP read").
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        });
        let url = Url { path: Some("/".into()), ..Url::default() };
        let probe = HttpProbe::new(endpoint(addr), &check(vec![url]), [None, None])?;
        assert!(matches!(probe.probe(0).await, Err(CheckError::Io(_))));
        let kept = tokio::time::timeout(Duration::from_millis(500), probe.probe(0)).await;
        assert!(kept.is_err(), "the probe waits for the server's close");
        Ok(())
    }

    fn regex(
        pattern: &str,
        options: &[&str],
        no_match: bool,
        offsets: (Option<u64>, Option<u64>),
    ) -> BodyRegex {
        let url = Url {
            regex: Some(pattern.into()),
            regex_options: options.iter().map(|o| (*o).to_owned()).collect(),
            regex_no_match: no_match,
            regex_min_offset: offsets.0,
            regex_max_offset: offsets.1,
            ..Url::default()
        };
        BodyRegex::new(&url).ok().flatten().unwrap_or_else(|| panic!("regex {pattern}"))
    }

    #[test]
    fn regex_matches_the_body_with_keepalived_options_and_offsets() {
        let body = b"<html>\nStatus: OK\n</html>\n";
        assert!(regex("Status: OK", &[], false, (None, None)).passes(body));
        assert!(!regex("status: ok", &[], false, (None, None)).passes(body));
        assert!(regex("status: ok", &["caseless"], false, (None, None)).passes(body));
        assert!(!regex("^Status", &[], false, (None, None)).passes(body));
        assert!(regex("^Status", &["multiline"], false, (None, None)).passes(body));
        assert!(regex("html>.Status", &["dotall"], false, (None, None)).passes(body));
        assert!(!regex("Status: OK", &[], true, (None, None)).passes(body), "regex_no_match");
        assert!(regex("Status: DOWN", &[], true, (None, None)).passes(body));
        // "Status" starts at offset 7.
        assert!(regex("Status", &[], false, (Some(7), Some(7))).passes(body));
        assert!(!regex("Status", &[], false, (Some(8), None)).passes(body), "min offset past it");
        assert!(!regex("Status", &[], false, (None, Some(6))).passes(body), "max offset before it");
        assert!(!regex("Status", &[], false, (Some(1_000), None)).passes(body), "min offset past the end");
        assert!(regex("Status", &["anchored"], false, (Some(7), None)).passes(body));
        assert!(!regex("Status", &["anchored"], false, (None, None)).passes(body));
        assert!(regex("OK", &["no_start_optimize"], false, (None, None)).passes(body), "tuning ignored");
        let bad = Url { regex: Some("(".into()), ..Url::default() };
        assert!(matches!(BodyRegex::new(&bad), Err(CheckError::Unusable(_))));
        let unknown = Url { regex: Some("x".into()), regex_options: vec!["bogus".into()], ..Url::default() };
        assert!(matches!(BodyRegex::new(&unknown), Err(CheckError::Unusable(_))));
    }

    #[tokio::test]
    async fn a_body_without_the_regex_fails_the_check() -> Result<(), Box<dyn std::error::Error>> {
        let (addr, _requests) = server("HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\nstate=bad").await?;
        let url = |no_match| Url {
            regex: Some("state=(ok|good)".into()),
            regex_no_match: no_match,
            ..Url::default()
        };
        let probe = HttpProbe::new(endpoint(addr), &check(vec![url(false)]), [None, None])?;
        assert!(matches!(probe.probe(0).await, Err(CheckError::Regex { matched: false, .. })));
        let probe = HttpProbe::new(endpoint(addr), &check(vec![url(true)]), [None, None])?;
        assert!(matches!(probe.probe(0).await, Ok(Probe::Up)));
        Ok(())
    }
}
