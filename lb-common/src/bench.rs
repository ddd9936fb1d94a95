//! The frame generator of `cargo xtask bench xdp` (end-to-end part): its template, shared by the
//! benchmark (which writes it) and the generator program `lb_bench_gen` (which sends it).
//!
//! These programs and maps are in lbd's object but never attached by lbd.

/// Names of the benchmark's maps.
pub mod maps {
    /// Array of one [`super::GenTemplate`].
    pub const TEMPLATE: &str = "LBD_BENCH_TEMPLATE";
    /// Per-CPU array of one `u64`: frames the receiver (`lb_bench_sink`) counted and dropped.
    pub const RECEIVED: &str = "LBD_BENCH_RX";
    /// Array of one [`super::RefForward`]: what the reference middles rewrite.
    pub const REF_FORWARD: &str = "LBD_BENCH_REF";
    /// Device map of one entry (index 0): where the reference middles redirect.
    pub const REF_DEVICES: &str = "LBD_BENCH_DEVS";
}

/// Names of the benchmark's programs.
pub mod programs {
    /// The generator: run by BPF_PROG_TEST_RUN in live-frames mode, it writes the template
    /// over every frame, varies its flow, and sends it with XDP_TX.
    pub const GENERATOR: &str = "lb_bench_gen";
    /// The receiver: counts each frame in [`super::maps::RECEIVED`] and drops it.
    pub const SINK: &str = "lb_bench_sink";
    /// Reference middle: a plain forwarder, the MAC addresses rewritten and XDP_REDIRECT
    /// through a device map.
    pub const REF_REDIRECT: &str = "lb_bench_redirect";
    /// Reference middle: stateless DNAT, the destination address and port of an IPv4 TCP frame
    /// for the VIP rewritten (incremental checksums), the MAC addresses, XDP_REDIRECT through a
    /// device map.
    pub const REF_DNAT: &str = "lb_bench_dnat";
}

/// Length of the generated frames (64-byte frames, as the usual packet-rate figures use).
pub const FRAME_LEN: usize = 64;

/// What the generator sends: an Ethernet + IPv4 + TCP or UDP frame, whose source port it
/// varies over `flows` values from the template's (the transport checksum is updated to match,
/// so the kernel's conntrack accepts the frames).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenTemplate {
    /// The whole frame.
    pub frame: [u8; FRAME_LEN],
    /// How many flows (source ports) to cycle through; 0 counts as 1.
    pub flows: u32,
    /// Offset of the transport checksum in `frame` (TCP: 50). A UDP template must carry a
    /// checksum (not 0): the generator updates it.
    pub csum_offset: u32,
}

/// What the reference middles rewrite (addresses and ports in network byte order, as in
/// memory).
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefForward {
    /// Destination MAC address of forwarded frames.
    pub dmac: [u8; 6],
    /// Source MAC address of forwarded frames.
    pub smac: [u8; 6],
    /// The virtual address the DNAT middle translates (others pass).
    pub vip: [u8; 4],
    /// The real server's address it translates to.
    pub real: [u8; 4],
    /// The virtual port (TCP).
    pub vport: [u8; 2],
    /// The real server's port.
    pub rport: [u8; 2],
}

/// Offset of the transport source port in the template's frame (Ethernet + 20-byte IPv4).
pub const SPORT_OFFSET: usize = 34;

#[cfg(feature = "user")]
// SAFETY: #[repr(C)], integers and byte arrays only, no implicit padding (64 + 4 + 4 bytes).
unsafe impl aya::Pod for GenTemplate {}

#[cfg(feature = "user")]
// SAFETY: #[repr(C)], byte arrays only, no padding (6 + 6 + 4 + 4 + 2 + 2 bytes, align 4).
unsafe impl aya::Pod for RefForward {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_has_no_implicit_padding() {
        assert_eq!(size_of::<GenTemplate>(), FRAME_LEN + 4 + 4);
        assert_eq!(size_of::<RefForward>(), 24);
    }
}
