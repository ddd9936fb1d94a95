//! `HTTP_GET`: each `url` is fetched on its own connection; the status must be in the url's
//! `status_code` ranges (default 200-299) and the body's MD5 must equal its `digest`, computed
//! as genhash computes it ([`crate::genhash::body_digest`]).
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
    pub fn new(ep: Endpoint, check: &HttpCheck, virtualhosts: [Option<&str>; 2]) -> Self {
        let default_host = match ep.addr {
            std::net::SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
            std::net::SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        };
        let url = |u: &Url| UrlCheck {
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
        };
        HttpProbe {
            ep,
            protocol: check.http_protocol.unwrap_or(HttpProtocol::V1_0),
            urls: check.urls.iter().map(url).collect(),
        }
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
        let probe = HttpProbe::new(endpoint(addr), &check(vec![good]), [None, None]);
        assert!(matches!(probe.probe().await, Ok(Probe::Up)));
        let request = requests.recv().await.unwrap_or_default();
        let expected = genhash::request("/x", &addr, None, genhash::Protocol::Http10);
        assert_eq!(request.to_ascii_lowercase(), expected.to_ascii_lowercase());

        let bad = Url { path: Some("/".into()), digest: Some("00".repeat(16)), ..Url::default() };
        let probe = HttpProbe::new(endpoint(addr), &check(vec![bad]), [None, Some("vs.example")]);
        assert!(matches!(probe.probe().await, Err(CheckError::Digest { .. })));
        assert!(requests.recv().await.unwrap_or_default().contains("vs.example"));

        let teapot = Url { status_code: vec![StatusRange { from: 418, to: 418 }], ..Url::default() };
        let probe = HttpProbe::new(endpoint(addr), &check(vec![teapot]), [None, None]);
        assert!(matches!(probe.probe().await, Err(CheckError::Status { status: 200, .. })));
        Ok(())
    }

    #[tokio::test]
    async fn a_server_error_fails_the_default_status_range() -> Result<(), Box<dyn std::error::Error>> {
        let (addr, _requests) = server("HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n").await?;
        let probe = HttpProbe::new(endpoint(addr), &check(vec![Url::default()]), [None, None]);
        assert!(matches!(probe.probe().await, Err(CheckError::Status { status: 503, .. })));
        Ok(())
    }
}
