//! SNMP, as keepalived serves it: an AgentX subagent (RFC 2741) that connects to a master
//! agent (net-snmp's snmpd) on `snmp_socket` and answers for KEEPALIVED-MIB's VRRP part,
//! VRRP-MIB (RFC 2787) and VRRPv3-MIB (RFC 6527) in the VRRP child, and for KEEPALIVED-MIB's
//! checker part in the checker child, and sends their notifications (`enable_traps`).
//!
//! - [`agentx`]: the PDU codec (no I/O);
//! - [`mib`]: the VRRP child's objects and notifications, a pure function of the
//!   configuration and the VRRP engine's published [`crate::vrrp::status::VrrpStatus`]
//!   snapshot;
//! - [`checker`]: the checker child's (`enable_snmp_checker`), a pure function of the
//!   configuration and the checkers' published [`crate::check::status::CheckStatus`];
//! - [`agent`]: the task that holds the connection, in either child: it opens a session,
//!   registers the subtrees, answers Get / GetNext / GetBulk from a table built afresh for
//!   each request, refuses sets, and reconnects when the master goes away.
//!
//! Neither the VRRP engine nor the checkers know anything of SNMP: they publish their state,
//! and wake the agent's trap loop through a `watch` channel.

pub mod agent;
pub mod agentx;
pub mod checker;
pub mod mib;

pub use agent::SnmpAgent;

use std::path::PathBuf;

/// keepalived's default `snmp_socket` (net-snmp's default AgentX socket).
pub const DEFAULT_SOCKET: &str = "unix:/var/agentx/master";

/// Where the master agent listens, as `snmp_socket` / `-A` give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterAddress {
    /// `unix:/path` or `/path`.
    Unix(PathBuf),
    /// `tcp:host:port`, or `host:port` (net-snmp's default AgentX transport after the Unix
    /// socket is TCP).
    Tcp(String),
}

/// Why lbd cannot use an `snmp_socket`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnmpError {
    /// AgentX is a stream protocol; net-snmp's UDP transport is not supported.
    #[error("snmp_socket {0}: AgentX over UDP is not supported (use unix: or tcp:)")]
    Udp(String),
    /// Neither a path nor `host:port`.
    #[error("snmp_socket {0}: expected unix:PATH, tcp:HOST:PORT or HOST:PORT")]
    Address(String),
}

impl MasterAddress {
    /// Parses net-snmp's transport specification.
    pub fn parse(spec: &str) -> Result<Self, SnmpError> {
        let spec = spec.trim();
        let lower = spec.to_ascii_lowercase();
        if let Some(path) = lower.strip_prefix("unix:").map(|_| &spec[5..]) {
            return if path.is_empty() {
                Err(SnmpError::Address(spec.into()))
            } else {
                Ok(Self::Unix(path.into()))
            };
        }
        if spec.starts_with('/') {
            return Ok(Self::Unix(spec.into()));
        }
        if lower.starts_with("udp:") || lower.starts_with("udp6:") {
            return Err(SnmpError::Udp(spec.into()));
        }
        let rest = if lower.starts_with("tcp:") || lower.starts_with("tcp6:") {
            &spec[spec.find(':').map_or(0, |i| i + 1)..]
        } else {
            spec
        };
        match rest.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                let host = host.trim_start_matches('[').trim_end_matches(']');
                Ok(Self::Tcp(if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                }))
            }
            _ => Err(SnmpError::Address(spec.into())),
        }
    }

    /// The address in force: `-A` over `snmp_socket` over the default.
    pub fn of(flag: Option<&std::path::Path>, keyword: Option<&str>) -> Result<Self, SnmpError> {
        match (flag, keyword) {
            (Some(flag), _) => Self::parse(&flag.to_string_lossy()),
            (None, Some(keyword)) => Self::parse(keyword),
            (None, None) => Self::parse(DEFAULT_SOCKET),
        }
    }
}

impl std::fmt::Display for MasterAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
            Self::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_as_net_snmp_writes_them() {
        assert_eq!(
            MasterAddress::parse(DEFAULT_SOCKET),
            Ok(MasterAddress::Unix("/var/agentx/master".into()))
        );
        assert_eq!(MasterAddress::parse("/run/agentx"), Ok(MasterAddress::Unix("/run/agentx".into())));
        assert_eq!(MasterAddress::parse("tcp:localhost:705"), Ok(MasterAddress::Tcp("localhost:705".into())));
        assert_eq!(MasterAddress::parse("127.0.0.1:705"), Ok(MasterAddress::Tcp("127.0.0.1:705".into())));
        assert_eq!(MasterAddress::parse("tcp6:[::1]:705"), Ok(MasterAddress::Tcp("[::1]:705".into())));
        assert!(matches!(MasterAddress::parse("udp:localhost:705"), Err(SnmpError::Udp(_))));
        assert!(matches!(MasterAddress::parse("unix:"), Err(SnmpError::Address(_))));
        assert!(matches!(MasterAddress::parse("localhost"), Err(SnmpError::Address(_))));
        assert_eq!(
            MasterAddress::of(Some(std::path::Path::new("/tmp/a")), Some("tcp:h:1")),
            Ok(MasterAddress::Unix("/tmp/a".into()))
        );
        assert_eq!(MasterAddress::of(None, None), Ok(MasterAddress::Unix("/var/agentx/master".into())));
    }
}
