//! Types shared by the XDP program (`lb-ebpf`) and the daemon (`lb-daemon`).
//!
//! Everything here is `#[repr(C)]` plain old data with explicit padding, so that the kernel and
//! user space agree on every byte, and BTF (emitted by the BPF build) names every field for
//! `bpftool map dump`. With the `user` feature the types implement [`aya::Pod`].
#![no_std]

pub mod stats;

/// Names of the maps the XDP program declares, as pinned under the daemon's pin directory.
pub mod maps {
    /// Per-CPU array of one [`crate::stats::GlobalStats`]: every packet outcome, by name.
    pub const GLOBAL_STATS: &str = "LBD_STATS";

    /// Every map the daemon pins, by name.
    pub const PINNED: &[&str] = &[GLOBAL_STATS];
}

/// Names of the programs in the object.
pub mod programs {
    /// The load balancer's XDP entry point.
    pub const LB_XDP: &str = "lb_xdp";
}

/// Default directory on a bpffs where the daemon pins its maps and links.
pub const DEFAULT_PIN_PATH: &str = "/sys/fs/bpf/lbd";
