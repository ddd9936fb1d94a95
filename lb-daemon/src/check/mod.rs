//! Health checkers: keepalived's `TCP_CHECK`, `HTTP_GET`, `SSL_GET`, `SMTP_CHECK`, `DNS_CHECK`,
//! `MISC_CHECK`, `UDP_CHECK`, `PING_CHECK` and `FILE_CHECK`, and what their verdicts do to the
//! virtual servers.
//!
//! - [`state`]: one checker's retry/delay/alpha state machine (sans-IO, injected clock);
//! - [`service`]: one virtual server's logic (inhibit_on_failure, quorum, sorry server);
//! - one file per checker, each an async probe of one real server;
//! - [`alert`]: `smtp_alert` mails;
//! - [`runner`]: the tokio tasks that run the probes and hand the data plane a new
//!   [`DesiredState`](crate::dataplane::DesiredState) whenever a real server's state changes;
//! - [`status`]: what the runner publishes of its virtual servers for the SNMP agent.

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
pub mod probe_loop;
pub mod runner;
pub mod service;
pub mod smtp;
pub mod ssl;
pub mod state;
pub mod status;
pub mod tcp;
pub mod timed;
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
    /// `bind_if` names no interface of this host (keepalived's words).
    #[error("Checker can't bind to device {device}: {source}")]
    Device {
        /// The interface.
        device: Device,
        /// Why SO_BINDTODEVICE failed.
        source: std::io::Error,
    },
}

/// A checker's `bind_if`: the interface its sockets are bound to (SO_BINDTODEVICE), at most
/// 15 bytes as the kernel's names. Kept inline so that an [`Endpoint`] stays `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Device {
    name: [u8; 15],
    len: u8,
}

impl Device {
    /// The interface `name`, if it fits a kernel interface name (1 to 15 bytes, no NUL).
    pub fn new(name: &str) -> Option<Self> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() > 15 || bytes.contains(&0) {
            return None;
        }
        let mut out = Device { name: [0; 15], len: bytes.len() as u8 };
        out.name[..bytes.len()].copy_from_slice(bytes);
        Some(out)
    }

    /// The name's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.name[..usize::from(self.len)]
    }

    /// Binds `socket` to the interface, as keepalived does before binding and connecting.
    pub fn bind(&self, socket: socket2::SockRef<'_>) -> Result<(), CheckError> {
        socket
            .bind_device(Some(self.as_bytes()))
            .map_err(|source| CheckError::Device { device: *self, source })
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Device({self})")
    }
}

/// Gives `socket` `ep`'s mark (`fwmark`) and binds it to `ep`'s device (`bind_if`), those it
/// has: what every checker's socket gets before its bind and connect.
pub fn mark_and_bind_device(socket: socket2::SockRef<'_>, ep: &Endpoint) -> Result<(), CheckError> {
    if let Some(mark) = ep.fwmark {
        socket.set_mark(mark).map_err(CheckError::Connect)?;
    }
    ep.device.map_or(Ok(()), |d| d.bind(socket))
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
    /// `bind_if` (SO_BINDTODEVICE) on the checker's sockets.
    pub device: Option<Device>,
    /// `connect_timeout`: the whole probe's time limit, except for the checkers that talk
    /// (HTTP_GET, SSL_GET, SMTP_CHECK), where it limits the connect and each read and write.
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
            // The parser refuses names that do not fit.
            device: conn.bind_if.as_deref().and_then(Device::new),
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

/// The checkers of `rs` as keepalived 2.2.7 runs them: each `host { }` block of an SMTP_CHECK
/// is a checker of its own on the same real server ("The SMTP_CHECK host block is deprecated.
/// Please define additional checkers."). As keepalived 2.2.7 builds them (observed with
/// `keepalived -C -d`): a host has only its own connection options (its `connect_ip` and
/// `connect_port`, else the real server's; no `bindto`, `bind_if` or `fwmark` of the
/// SMTP_CHECK) and its own `connect_timeout`, else none at all (0 s, so that its check
/// always fails); its timing options and `helo_name` are the SMTP_CHECK's (the parser puts
/// timing options written in a host there). The SMTP_CHECK's own connection is checked too
/// when any connection option is set outside the hosts; otherwise the hosts replace it.
pub fn expanded_checkers(rs: &RealServer) -> Vec<std::borrow::Cow<'_, Checker>> {
    use std::borrow::Cow;
    let mut out = Vec::with_capacity(rs.checkers.len());
    for checker in &rs.checkers {
        let Checker::SmtpCheck(smtp) = checker else {
            out.push(Cow::Borrowed(checker));
            continue;
        };
        if smtp.hosts.is_empty() {
            out.push(Cow::Borrowed(checker));
            continue;
        }
        let main = &smtp.conn;
        if crate::config::lvs::smtp_has_own_connection(main) {
            let mut alone = (**smtp).clone();
            alone.hosts.clear();
            out.push(Cow::Owned(Checker::SmtpCheck(Box::new(alone))));
        }
        for host in &smtp.hosts {
            let conn = CheckCommon {
                connect_ip: host.connect_ip,
                connect_port: host.connect_port,
                bindto: host.bindto,
                bind_port: host.bind_port,
                bind_if: host.bind_if.clone(),
                connect_timeout: Some(host.connect_timeout.unwrap_or(Duration::ZERO)),
                fwmark: host.fwmark,
                ..main.clone()
            };
            let one = crate::config::model::SmtpCheck {
                conn,
                helo_name: smtp.helo_name.clone(),
                hosts: Vec::new(),
            };
            out.push(Cow::Owned(Checker::SmtpCheck(Box::new(one))));
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    /// The first virtual server of `text` (protocol, scheduler and method set).
    fn vs(text: &str) -> VirtualServer {
        let loaded = crate::config::parse_str("t.conf", text, &Default::default());
        loaded
            .config
            .virtual_servers
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no virtual server in {text}"))
    }

    fn service(vs_extra: &str, rs: &str, rs_extra: &str, checker: &str) -> VirtualServer {
        vs(&format!(
            "virtual_server 10.0.0.1 80 {{\n protocol TCP\n lb_algo rr\n lb_kind NAT\n{vs_extra}\n \
             real_server {rs} {{\n{rs_extra}\n{checker}\n }}\n}}\n"
        ))
    }

    fn timing_of(vs: &VirtualServer) -> state::Timing {
        let rs = &vs.real_servers[0];
        checker_timing(&rs.checkers[0], vs, rs)
    }

    #[test]
    fn checker_timing_has_keepalived_defaults_per_kind() {
        let t = |checker: &str| timing_of(&service("", "10.1.0.1 8080", "", checker));
        let http = t("HTTP_GET {\n url {\n path /\n }\n }");
        assert_eq!((http.retry, http.delay_before_retry), (1, 3 * SEC));
        assert_eq!((http.delay_loop, http.warmup, http.connect_timeout), (60 * SEC, 60 * SEC, 5 * SEC));
        assert!(!http.alpha);
        let ssl = t("SSL_GET {\n url {\n path /\n }\n }");
        assert_eq!((ssl.retry, ssl.delay_before_retry), (1, 3 * SEC));
        for other in ["TCP_CHECK {\n }", "SMTP_CHECK {\n }", "UDP_CHECK {\n }", "PING_CHECK {\n }"] {
            let timing = t(other);
            assert_eq!((timing.retry, timing.delay_before_retry), (1, SEC), "{other}");
        }
        let misc = t("MISC_CHECK {\n misc_path /bin/true\n }");
        assert_eq!((misc.retry, misc.delay_before_retry), (0, SEC));
        let dns = t("DNS_CHECK {\n delay_loop 7\n }");
        assert_eq!((dns.retry, dns.delay_before_retry, dns.delay_loop), (3, 7 * SEC, 7 * SEC));
        let file = timing_of(&vs(
            "track_file f {\n file /tmp/lbd-no-such-file\n}\nvirtual_server 10.0.0.1 80 {\n protocol TCP\n \
             lb_algo rr\n lb_kind NAT\n delay_loop 9\n real_server 10.1.0.1 8080 {\n FILE_CHECK {\n track_file f\n }\n }\n}\n",
        ));
        assert_eq!((file.delay_loop, file.warmup, file.retry), (SEC, Duration::ZERO, 0));
    }

    #[test]
    fn checker_timing_takes_the_checker_then_the_real_then_the_virtual_server() {
        let checker = "TCP_CHECK {\n retry 4\n }";
        let t = timing_of(&service(
            " delay_loop 5\n retry 9\n delay_before_retry 8\n connect_timeout 7\n alpha",
            "10.1.0.1 8080",
            " retry 6\n delay_before_retry 2",
            checker,
        ));
        assert_eq!(t.retry, 4, "the checker's");
        assert_eq!(t.delay_before_retry, 2 * SEC, "the real's");
        assert_eq!(
            (t.delay_loop, t.warmup, t.connect_timeout),
            (5 * SEC, 5 * SEC, 7 * SEC),
            "the virtual server's"
        );
        assert!(t.alpha, "the virtual server's alpha");
        let t = timing_of(&service(" alpha", "10.1.0.1 8080", "", "TCP_CHECK {\n alpha no\n warmup 0\n }"));
        assert!(!t.alpha, "the checker's alpha wins");
        assert_eq!(t.warmup, Duration::ZERO);
    }

    #[test]
    fn endpoint_falls_back_from_the_checker_to_the_real_and_the_virtual_server() {
        let ep = |vs: &VirtualServer| {
            let rs = &vs.real_servers[0];
            Endpoint::new(rs.checkers[0].common().unwrap_or_else(|| unreachable!()), vs, rs)
        };
        // The real server's address and port, keepalived's 5 s.
        let plain = ep(&service("", "10.1.0.1 8080", "", "TCP_CHECK {\n }"));
        assert_eq!(
            plain,
            Endpoint {
                addr: "10.1.0.1:8080".parse().unwrap_or_else(|_| unreachable!()),
                bind: None,
                fwmark: None,
                device: None,
                timeout: 5 * SEC,
                udp: false,
            }
        );
        assert_eq!(plain.to_string(), "[10.1.0.1]:tcp:8080");
        // connect_ip / connect_port: the check goes elsewhere; bindto and bind_port; fwmark.
        let moved = ep(&service(
            " connect_timeout 3",
            "10.1.0.1 8080",
            "",
            "TCP_CHECK {\n connect_ip 10.2.0.9\n connect_port 9000\n bindto 10.0.0.5\n bind_port 4000\n fwmark 7\n }",
        ));
        assert_eq!(moved.addr, "10.2.0.9:9000".parse().unwrap_or_else(|_| unreachable!()));
        assert_eq!(moved.bind, Some("10.0.0.5:4000".parse().unwrap_or_else(|_| unreachable!())));
        assert_eq!((moved.fwmark, moved.timeout), (Some(7), 3 * SEC));
        // A real without a port takes the virtual server's; bind_port alone binds to any
        // address of the family; the checker's connect_timeout beats the real's.
        let v6 = vs("virtual_server 2001:db8::1 443 {\n protocol UDP\n lb_algo rr\n lb_kind NAT\n \
                     real_server 2001:db8::2 {\n connect_timeout 4\n UDP_CHECK {\n bind_port 5000\n connect_timeout 2\n }\n }\n}\n");
        let e = ep(&v6);
        assert_eq!(e.addr, "[2001:db8::2]:443".parse().unwrap_or_else(|_| unreachable!()));
        assert_eq!(e.bind, Some("[::]:5000".parse().unwrap_or_else(|_| unreachable!())));
        assert_eq!((e.timeout, e.udp), (2 * SEC, true));
    }

    #[test]
    fn smtp_host_blocks_are_checkers_of_their_own() {
        let smtp = |body: &str| {
            let vs = service(
                " connect_timeout 7",
                "10.1.0.1 25",
                "",
                &format!("SMTP_CHECK {{\n helo_name h.example\n{body}\n }}"),
            );
            let rs = &vs.real_servers[0];
            expanded_checkers(rs)
                .iter()
                .map(|c| {
                    let Checker::SmtpCheck(s) = c.as_ref() else { panic!("{c:?}") };
                    assert!(s.hosts.is_empty());
                    assert_eq!(s.helo_name.as_deref(), Some("h.example"));
                    let ep = Endpoint::new(&s.conn, &vs, rs);
                    let timing = checker_timing(c, &vs, rs);
                    (ep.addr.to_string(), ep.fwmark, ep.timeout.as_secs(), timing.retry)
                })
                .collect::<Vec<_>>()
        };
        // No host: the SMTP_CHECK alone, with the virtual server's connect_timeout.
        assert_eq!(smtp(""), [("10.1.0.1:25".to_owned(), None, 7, 1)]);
        // Hosts and no connection of its own: the hosts replace it. They take none of its
        // connection options (fwmark, connect_timeout: 0 without their own) but its retry,
        // wherever written.
        assert_eq!(
            smtp(
                " retry 3\n host {\n connect_ip 10.1.0.7\n }\n host {\n connect_port 2525\n connect_timeout 2\n }"
            ),
            [("10.1.0.7:25".to_owned(), None, 0, 3), ("10.1.0.1:2525".to_owned(), None, 2, 3)]
        );
        // Its own connection too (any connection option): checked as well as each host.
        assert_eq!(
            smtp(
                " fwmark 4\n host {\n connect_ip 10.1.0.7\n retry 5\n connect_timeout 1\n }\n connect_port 587"
            ),
            [("10.1.0.1:587".to_owned(), Some(4), 7, 5), ("10.1.0.7:25".to_owned(), None, 1, 5)]
        );
    }
}
