//! `HTTP_GET`: each `url` is fetched on its own connection; the status must be in the url's
//! `status_code` ranges (default 200-299) and the body's MD5 must equal its `digest`, computed
//! as genhash computes it ([`crate::genhash::body_digest`]), and its `regex` must match the body
//! (must not, with `regex_no_match`), starting between `regex_min_offset` and `regex_max_offset`.
//! keepalived's regexes are PCRE2's; lbd's are the `regex` crate's, the same syntax for what
//! health pages use (no look-around, no back-references), with keepalived's `regex_options`
//! mapped to the crate's flags.
//!
//! The request is keepalived's: `GET PATH HTTP/1.0` (or 1.1 with `http_protocol`), its
//! User-Agent, and a Host header of the url's, the checker's, the real server's or the virtual
//! server's `virtualhost`, else `IP:PORT`. SSL_GET ([`super::ssl`]) sends the same over TLS.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::{Request, Version};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

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
    /// The urls, all of which must pass.
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

    /// One probe over plain TCP.
    pub async fn probe(&self) -> Result<Probe, CheckError> {
        for url in &self.urls {
            let stream = super::tcp::connect(&self.ep).await?;
            self.check_url(stream, url).await?;
        }
        Ok(Probe::Up)
    }

    /// Fetches `url` over `io` and judges the answer.
    pub async fn check_url<S>(&self, io: S, url: &UrlCheck) -> Result<(), CheckError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (status, body) = get(io, self.request(url)?).await?;
        if !url.status.iter().any(|r| (r.from..=r.to).contains(&status)) {
            return Err(CheckError::Status { path: url.path.clone(), status });
        }
        if let Some(want) = &url.digest {
            let got = genhash::hex(&genhash::body_digest(&body));
            if &got != want {
                return Err(CheckError::Digest { path: url.path.clone(), got, want: want.clone() });
            }
        }
        if let Some(regex) = &url.regex
            && !regex.passes(&body)
        {
            return Err(CheckError::Regex {
                path: url.path.clone(),
                pattern: regex.regex.as_str().to_owned(),
                matched: regex.no_match,
            });
        }
        Ok(())
    }

    /// keepalived's request for `url` (the same bytes as genhash's).
    fn request(&self, url: &UrlCheck) -> Result<Request<Empty<Bytes>>, CheckError> {
        let mut builder = Request::get(url.path.as_str())
            .version(if self.protocol == HttpProtocol::V1_1 { Version::HTTP_11 } else { Version::HTTP_10 })
            .header("User-Agent", "KeepAliveClient");
        if self.protocol != HttpProtocol::V1_0 {
            builder = builder.header("Connection", "close");
        }
        builder
            .header("Host", url.host.as_str())
            .body(Empty::new())
            .map_err(|e| CheckError::Http(e.to_string()))
    }
}

/// Sends `request` on a fresh HTTP/1 connection over `io`; the status and the whole body.
async fn get<S>(io: S, request: Request<Empty<Bytes>>) -> Result<(u16, Bytes), CheckError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http = |e: hyper::Error| CheckError::Http(e.to_string());
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(http)?;
    // The connection task ends with the server's close, or is aborted when the body is in.
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let result = async {
        let response = sender.send_request(request).await.map_err(http)?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.map_err(http)?.to_bytes();
        Ok((status, body))
    }
    .await;
    driver.abort();
    result
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
        Endpoint { addr, bind: None, fwmark: None, timeout: Duration::from_secs(2), udp: false }
    }

    #[tokio::test]
    async fn sends_keepalived_request_and_checks_digest_and_status() -> Result<(), Box<dyn std::error::Error>>
    {
        let (addr, mut requests) = server("HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello").await?;
        let digest = genhash::hex(&genhash::body_digest(b"hello"));
        let good = Url { path: Some("/x".into()), digest: Some(digest.to_uppercase()), ..Url::default() };
        let probe = HttpProbe::new(endpoint(addr), &check(vec![good]), [None, None])?;
        assert!(matches!(probe.probe().await, Ok(Probe::Up)));
        let request = requests.recv().await.unwrap_or_default();
        let expected = genhash::request("/x", &addr, None, genhash::Protocol::Http10);
        assert_eq!(request.to_ascii_lowercase(), expected.to_ascii_lowercase());

        let bad = Url { path: Some("/".into()), digest: Some("00".repeat(16)), ..Url::default() };
        let probe = HttpProbe::new(endpoint(addr), &check(vec![bad]), [None, Some("vs.example")])?;
        assert!(matches!(probe.probe().await, Err(CheckError::Digest { .. })));
        assert!(requests.recv().await.unwrap_or_default().contains("vs.example"));

        let teapot = Url { status_code: vec![StatusRange { from: 418, to: 418 }], ..Url::default() };
        let probe = HttpProbe::new(endpoint(addr), &check(vec![teapot]), [None, None])?;
        assert!(matches!(probe.probe().await, Err(CheckError::Status { status: 200, .. })));
        Ok(())
    }

    #[tokio::test]
    async fn a_server_error_fails_the_default_status_range() -> Result<(), Box<dyn std::error::Error>> {
        let (addr, _requests) = server("HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n").await?;
        let probe = HttpProbe::new(endpoint(addr), &check(vec![Url::default()]), [None, None])?;
        assert!(matches!(probe.probe().await, Err(CheckError::Status { status: 503, .. })));
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
        assert!(matches!(probe.probe().await, Err(CheckError::Regex { matched: false, .. })));
        let probe = HttpProbe::new(endpoint(addr), &check(vec![url(true)]), [None, None])?;
        assert!(matches!(probe.probe().await, Ok(Probe::Up)));
        Ok(())
    }
}
