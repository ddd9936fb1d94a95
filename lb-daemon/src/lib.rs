//! lbd: a keepalived-compatible load balancer whose forwarding runs in XDP.
//!
//! The binaries (`lbd`, `genhash`) are thin; everything they do lives here so that the system
//! tests and benchmarks drive the same code:
//! - [`dataplane`] owns the XDP program and its maps (nothing else touches them);
//! - [`netlink`] owns every question asked of, and change made to, the kernel's network stack.
//! - [`check`] runs the health checkers and turns their verdicts into the desired state.
//! - [`cli`] is keepalived's command line.
//! - [`genhash`] computes web pages' digests as keepalived's genhash does.
//! - [`lvs`] turns the configuration's virtual servers into the data plane's desired state.
//! - [`daemon`] is the program operators run: start, signals, reload, dumps, stop.
//! - [`config`] reads keepalived.conf (and lbd's TOML model) into a typed model, with diagnostics.
//! - [`snmp`] is the AgentX subagent serving keepalived's and the RFCs' VRRP MIBs.
//! - [`vrrp`] is the VRRP engine: packet codec, sans-IO state machine, and (later) sockets.

pub mod bfd;
pub mod check;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod genhash;
pub mod history;
pub mod lvs;
pub mod netlink;
pub mod snmp;
pub mod sync;
#[cfg(test)]
mod test_rng;
pub mod vrrp;
