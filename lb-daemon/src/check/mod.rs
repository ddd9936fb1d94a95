//! Health checkers: keepalived's `TCP_CHECK`, `HTTP_GET`, `SSL_GET`, `SMTP_CHECK`, `DNS_CHECK`,
//! `MISC_CHECK`, `UDP_CHECK`, `PING_CHECK` and `FILE_CHECK`, and what their verdicts do to the
//! virtual servers.
//!
//! - [`state`]: one checker's retry/delay/alpha state machine (sans-IO, injected clock);
//! - [`service`]: one virtual server's logic (inhibit_on_failure, quorum, sorry server);
//! - one file per checker, each an async probe of one real server;
//! - [`alert`]: `smtp_alert` mails;
//! - [`runner`]: the tokio tasks that run the probes and hand the data plane a new
//!   [`DesiredState`](crate::dataplane::DesiredState) whenever a real server's state changes.

use std::{
    collections::HashMap,
    fmt,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use crate::config::model::{
    CheckCommon, Checker, Config, Protocol as ConfigProtocol, RealServer, VirtualServer, VsAddress,
};

pub mod alert;
pub mod dns;
pub mod file;
pub mod http;
pub mod misc;
pub mod ping;
pub mod runner;
pub mod service;
pub mod smtp;
pub mod ssl;
pub mod state;
pub mod tcp;
pub mod tcp_loop;
pub mod udp;

pub use runner::{CheckerHealth, Runner};
pub use service::RealVerdict;
pub use state::Probe;

/// keepalived's `connect_timeout` default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// keepalived's `delay_loop` default.
pub const DEFAULT_DELAY_LOOP: Duration = Duration::from_secs(60);

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Connecting failed.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// The probe did not finish in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// An HTTP status code outside the accepted ranges.
    #[error("HTTP status code error url({path}), status_code [{status}]")]
    Status {
        /// The url's path.
        path: String,
        /// The status received.
        status: u16,
    },
    /// A body whose MD5 differs from the url's digest.
    #[error("MD5 digest error url({path}), digest [{got}], expected [{want}]")]
    Digest {
        /// The url's path.
        path: String,
        /// The digest of the body received.
        got: String,
        /// The configured digest.
        want: String,
    },
    /// A body that does not match the url's regex (or matches it, with `regex_no_match`).
    #[error("Regex {} url({path}), regex [{pattern}]", if *matched { "matched" } else { "did not match" })]
    Regex {
        /// The url's path.
        path: String,
        /// The pattern.
        pattern: String,
        /// Whether it matched (a failure with `regex_no_match`).
        matched: bool,
    },
    /// An HTTP protocol error.
    #[error("HTTP: {0}")]
    Http(String),
    /// A TLS error.
    #[error("TLS: {0}")]
    Tls(String),
    /// An unexpected SMTP reply.
    #[error("SMTP: {0}")]
    Smtp(String),
    /// An unexpected DNS answer.
    #[error("DNS: {0}")]
    Dns(String),
    /// An unexpected UDP answer.
    #[error("UDP: {0}")]
    Udp(String),
    /// ICMP echo failed.
    #[error("ICMP: {0}")]
    Ping(String),
    /// The script failed.
    #[error("{0}")]
    Script(String),
    /// The tracked file says down, or cannot be read.
    #[error("{0}")]
    File(String),
    /// The checker cannot run (missing configuration or unsupported).
    #[error("{0}")]
    Unusable(String),
}

/// Where a connecting checker connects, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// `connect_ip`:`connect_port`, defaulting to the real server's.
    pub addr: SocketAddr,
    /// `bindto`:`bind_port`.
    pub bind: Option<SocketAddr>,
    /// `fwmark` (SO_MARK) on the checker's sockets.
    pub fwmark: Option<u32>,
    /// The whole probe's time limit.
    pub timeout: Duration,
    /// TCP or UDP, for log lines.
    pub udp: bool,
}

impl Endpoint {
    /// The endpoint of a checker with options `conn` on real server `rs` of `vs`.
    pub fn new(conn: &CheckCommon, vs: &VirtualServer, rs: &RealServer) -> Self {
        let ip = conn.connect_ip.unwrap_or(rs.address);
        let port = conn.connect_port.or(rs.port).unwrap_or_else(|| vs_port(vs));
        let bind = match (conn.bindto, conn.bind_port) {
            (Some(ip), port) => Some(SocketAddr::new(ip, port.unwrap_or(0))),
            (None, Some(port)) => {
                let any = if ip.is_ipv4() { IpAddr::from([0u8; 4]) } else { IpAddr::from([0u16; 8]) };
                Some(SocketAddr::new(any, port))
            }
            (None, None) => None,
        };
        let timeout = conn.connect_timeout.or(rs.connect_timeout).or(vs.connect_timeout);
        Endpoint {
            addr: SocketAddr::new(ip, port),
            bind,
            fwmark: conn.fwmark,
            timeout: timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            udp: vs.protocol == Some(ConfigProtocol::Udp),
        }
    }
}

impl fmt::Display for Endpoint {
    /// keepalived's `[10.0.0.2]:tcp:80`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]:{}:{}", self.addr.ip(), if self.udp { "udp" } else { "tcp" }, self.addr.port())
    }
}

/// The virtual server's port (0 for fwmark and group services).
fn vs_port(vs: &VirtualServer) -> u16 {
    match vs.address {
        VsAddress::Ip { port, .. } => port.unwrap_or(0),
        _ => 0,
    }
}

/// keepalived's name of a real server, `[10.0.0.2]:tcp:80`.
pub fn real_name(vs: &VirtualServer, rs: &RealServer) -> String {
    let proto = if vs.protocol == Some(ConfigProtocol::Udp) { "udp" } else { "tcp" };
    format!("[{}]:{proto}:{}", rs.address, rs.port.unwrap_or_else(|| vs_port(vs)))
}

/// keepalived's name of a virtual server, `[10.0.0.100]:tcp:80` (or its group/fwmark).
pub fn service_name(vs: &VirtualServer) -> String {
    let proto = if vs.protocol == Some(ConfigProtocol::Udp) { "udp" } else { "tcp" };
    match &vs.address {
        VsAddress::Ip { address, port } => format!("[{address}]:{proto}:{}", port.unwrap_or(0)),
        VsAddress::Fwmark { mark } => format!("FWM {mark}"),
        VsAddress::Group { name } => name.clone(),
    }
}

/// The timing options every checker has, and keepalived's per-checker defaults of
/// `retry` and `delay_before_retry`.
pub fn timing(
    conn: &CheckCommon,
    vs: &VirtualServer,
    rs: &RealServer,
    default_retry: u32,
    default_delay_before_retry: Duration,
) -> state::Timing {
    let delay_loop = conn.delay_loop.or(rs.delay_loop).or(vs.delay_loop).unwrap_or(DEFAULT_DELAY_LOOP);
    state::Timing {
        delay_loop,
        retry: conn.retry.or(rs.retry).or(vs.retry).unwrap_or(default_retry),
        delay_before_retry: conn
            .delay_before_retry
            .or(rs.delay_before_retry)
            .or(vs.delay_before_retry)
            .unwrap_or(default_delay_before_retry),
        warmup: conn.warmup.or(rs.warmup).or(vs.warmup).unwrap_or(delay_loop),
        alpha: conn.alpha.or(rs.alpha).unwrap_or(vs.alpha),
        connect_timeout: conn
            .connect_timeout
            .or(rs.connect_timeout)
            .or(vs.connect_timeout)
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
    }
}

/// The timing of `checker` on `rs`, with its kind's defaults (keepalived 2.2.7: HTTP and SSL
/// retry once after 3 s, DNS three times a delay_loop apart, MISC not at all, the others once
/// after 1 s).
pub fn checker_timing(checker: &Checker, vs: &VirtualServer, rs: &RealServer) -> state::Timing {
    const SEC: Duration = Duration::from_secs(1);
    let (conn, retry, delay) = match checker {
        Checker::HttpGet(h) | Checker::SslGet(h) => (&h.conn, 1, 3 * SEC),
        Checker::DnsCheck(d) => {
            let loop_ = d.conn.delay_loop.or(rs.delay_loop).or(vs.delay_loop).unwrap_or(DEFAULT_DELAY_LOOP);
            (&d.conn, 3, loop_)
        }
        Checker::TcpCheck(c) | Checker::PingCheck(c) => (c, 1, SEC),
        Checker::SmtpCheck(s) => (&s.conn, 1, SEC),
        Checker::MiscCheck(m) => (&m.conn, 0, SEC),
        Checker::UdpCheck(u) => (&u.conn, 1, SEC),
        Checker::FileCheck(_) | Checker::BfdCheck(_) => {
            let mut t = timing(&CheckCommon::default(), vs, rs, 0, SEC);
            if let Checker::BfdCheck(b) = checker {
                t.alpha = b.alpha.unwrap_or(t.alpha);
            }
            // A file is read once a second, whatever the delay_loop.
            t.delay_loop = SEC;
            t.warmup = Duration::ZERO;
            return t;
        }
    };
    timing(conn, vs, rs, retry, delay)
}

/// The health of the configuration's real servers, per virtual server (by index in
/// `Config::virtual_servers`), for [`crate::lvs::desired_state_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    services: HashMap<usize, ServiceHealth>,
}

/// The health of one virtual server's real servers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceHealth {
    /// One verdict per real server, in configuration order.
    pub reals: Vec<RealVerdict>,
    /// The sorry server: in with weight 1 while it takes the traffic, in with weight 0 under
    /// `sorry_server_inhibit` while the quorum holds, out otherwise.
    pub sorry: RealVerdict,
}

impl Health {
    /// Sets the health of virtual server `vs`.
    pub fn set(&mut self, vs: usize, health: ServiceHealth) {
        self.services.insert(vs, health);
    }

    /// The health of virtual server `vs`, if known.
    pub fn service(&self, vs: usize) -> Option<&ServiceHealth> {
        self.services.get(&vs)
    }
}

/// Whether `config` has any checker at all.
pub fn has_checkers(config: &Config) -> bool {
    config.virtual_servers.iter().flat_map(|vs| &vs.real_servers).any(|rs| !rs.checkers.is_empty())
}

/// A random number for ids and warmup delays (not for anything secret).
pub fn random_u64() -> u64 {
    use std::hash::BuildHasher as _;
    std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now())
}
