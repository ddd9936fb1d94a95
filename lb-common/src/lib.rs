//! Types shared by the XDP program (`lb-ebpf`) and the daemon (`lb-daemon`).
//!
//! Everything here is `#[repr(C)]` plain old data with explicit padding, so that the kernel and
//! user space agree on every byte, and BTF (emitted by the BPF build) names every field for
//! `bpftool map dump`. With the `user` feature the types implement [`aya::Pod`].
#![no_std]

pub mod bench;
pub mod lb;
pub mod stats;

/// Names of the maps the XDP program declares, as pinned under the daemon's pin directory.
pub mod maps {
    /// Per-CPU array of one [`crate::stats::GlobalStats`]: every packet outcome, by name.
    pub const GLOBAL_STATS: &str = "LBD_STATS";
    /// Array of one [`crate::lb::Settings`].
    pub const SETTINGS: &str = "LBD_SETTINGS";
    /// Hash [`crate::lb::ServiceKey`] → [`crate::lb::Service`].
    pub const SERVICES: &str = "LBD_SERVICES";
    /// Array of [`crate::lb::Real`] by real id.
    pub const REALS: &str = "LBD_REALS";
    /// Array of real ids: [`crate::lb::SLOTS_PER_SERVICE`] per service, by service id.
    pub const SLOTS: &str = "LBD_SLOTS";
    /// Array of [`crate::lb::LocalAddr`]: [`crate::lb::MAX_LADDRS_PER_GROUP`] per FNAT pool.
    pub const LADDRS: &str = "LBD_LADDRS";
    /// LRU hash [`crate::lb::FlowKey`] → [`crate::lb::Flow`]: the connection table of IPv6 flows.
    pub const CONNS: &str = "LBD_CONNS";
    /// LRU hash [`crate::lb::FlowKey4`] → [`crate::lb::Flow`]: the connection table of IPv4 flows.
    pub const CONNS4: &str = "LBD_CONNS4";
    /// LRU hash [`crate::lb::PersistKey`] → [`crate::lb::Persist`].
    pub const PERSIST: &str = "LBD_PERSIST";
    /// Per-CPU array of [`crate::lb::ServiceStats`] by service id.
    pub const SERVICE_STATS: &str = "LBD_SERVICE_STATS";
    /// Per-CPU array of [`crate::lb::RealStats`] by real id.
    pub const REAL_STATS: &str = "LBD_REAL_STATS";
    /// Array of `u64` by real id: active connections (shared by all CPUs; scheduling input of
    /// the least-connection schedulers).
    pub const REAL_ACTIVE: &str = "LBD_REAL_ACTIVE";
    /// Per-CPU array of `u32` by service id: round-robin positions.
    pub const RR_POSITIONS: &str = "LBD_RR";
    /// LRU hash [`crate::lb::LblcKey`] → real id: the lblc scheduler's destination table.
    pub const LBLC: &str = "LBD_LBLC";
    /// Array of one [`crate::lb::SynProxySecret`]: the SYN cookie key, which the daemon fills
    /// from getrandom once and which outlives daemon restarts with the pin.
    pub const SYNPROXY_SECRET: &str = "LBD_SYNPROXY_SECRET";
    /// Program array (8 entries, 2 used): index [`crate::programs::FULL_PATH`] holds
    /// `lb_xdp_full`, which the entry point `lb_xdp` tail-calls for every packet its flow cache
    /// does not send, index [`crate::programs::V6_PATH`] `lb_xdp_v6`, which both tail-call for
    /// IPv6. Pinned, so that the attached entry point still reaches them when the daemon is
    /// gone (the kernel empties a program array when the last user-space reference to it
    /// closes).
    pub const PROGS: &str = "LBD_PROGS";

    /// Every map the daemon pins, by name. Pinned maps survive a daemon restart, and a
    /// restarted daemon adopts them: flows in the connection table keep their real server.
    pub const PINNED: &[&str] = &[
        GLOBAL_STATS,
        SETTINGS,
        SERVICES,
        REALS,
        SLOTS,
        LADDRS,
        CONNS,
        CONNS4,
        PERSIST,
        SERVICE_STATS,
        REAL_STATS,
        REAL_ACTIVE,
        RR_POSITIONS,
        LBLC,
        SYNPROXY_SECRET,
        PROGS,
    ];
}

/// Names of the programs in the object.
pub mod programs {
    /// The load balancer's XDP entry point: sends what its flow cache holds, tail-calls
    /// [`LB_XDP_V6`] for untagged IPv6 and [`LB_XDP_FULL`] for the rest.
    pub const LB_XDP: &str = "lb_xdp";
    /// The load balancer's full path, reached from [`LB_XDP`] by a tail call through
    /// [`crate::maps::PROGS`] at index [`FULL_PATH`]; never attached itself.
    pub const LB_XDP_FULL: &str = "lb_xdp_full";
    /// Index of [`LB_XDP_FULL`] in [`crate::maps::PROGS`].
    pub const FULL_PATH: u32 = 0;
    /// The full path for IPv6 packets, with a flow cache of its own, reached from [`LB_XDP`]
    /// or [`LB_XDP_FULL`] by a tail call through [`crate::maps::PROGS`] at index [`V6_PATH`];
    /// never attached itself.
    pub const LB_XDP_V6: &str = "lb_xdp_v6";
    /// Index of [`LB_XDP_V6`] in [`crate::maps::PROGS`].
    pub const V6_PATH: u32 = 1;
    /// XDP program for real servers behind a TUN service: strips the IPIP / IPv6-in-IPv6
    /// header (this kernel has no ipip module), so the inner packet reaches the VIP on lo.
    pub const DECAP_XDP: &str = "lb_decap";
    /// A program that returns XDP_TX and nothing else: the floor of the XDP benchmark.
    pub const FLOOR_XDP: &str = "lb_floor";
    /// A program that passes every frame: on the far end of a veth whose peer sends frames
    /// with XDP_TX (tests), see `lb_pass`.
    pub const PASS_XDP: &str = "lb_pass";
}

/// Default directory on a bpffs where the daemon pins its maps and links.
pub const DEFAULT_PIN_PATH: &str = "/sys/fs/bpf/lbd";
