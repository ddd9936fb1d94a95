//! The kit every lbd system test uses.
//!
//! - [`lab`]: a [`lab::Lab`] owns uniquely named network namespaces, the veth pairs and bridges
//!   between them, bpffs mounts and the processes started inside; dropping it (also while a test
//!   panics) removes all of it. Nothing is ever created in the root namespace.
//! - [`pages`]: a web server of canned answers (odd pages for genhash and HTTP_GET).
//! - [`process`]: a process running inside a namespace, to signal, wait for and kill.
//! - [`packet`]: frames built with pnet_packet (Ethernet, 802.1Q, IPv4/IPv6, TCP/UDP/ICMP).
//! - [`xdp`]: runs an XDP program on one frame with BPF_PROG_TEST_RUN.
//! - [`bins`]: where the binaries under test are.
//! - [`fixture`]: a load balancer's namespace and tables for frame-level tests and benchmarks.
//! - [`vm`]: a command run in a VM booting Debian's kernel (for IPVS, which this kernel lacks).
#![cfg_attr(test, expect(clippy::unwrap_used, reason = "unit tests: a failed step is a failed test"))]
#![expect(clippy::missing_panics_doc, reason = "test kit: panicking with context is how it reports")]

pub mod bins;
pub mod fixture;
pub mod lab;
pub mod packet;
pub mod pages;
pub mod process;
pub mod vm;
pub mod xdp;

/// Panics with a clear message unless running as root: system tests create namespaces.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!("lbd system tests need root (network namespaces, XDP): run `cargo xtask test` as root");
    }
}
