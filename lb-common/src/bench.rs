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
}

/// Names of the benchmark's programs.
pub mod programs {
    /// The generator: run by BPF_PROG_TEST_RUN in live-frames mode, it writes the template
    /// over every frame, varies its flow, and sends it with XDP_TX.
    pub const GENERATOR: &str = "lb_bench_gen";
    /// The receiver: counts each frame in [`super::maps::RECEIVED`] and drops it.
    pub const SINK: &str = "lb_bench_sink";
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

/// Offset of the transport source port in the template's frame (Ethernet + 20-byte IPv4).
pub const SPORT_OFFSET: usize = 34;

#[cfg(feature = "user")]
// SAFETY: #[repr(C)], integers and byte arrays only, no implicit padding (64 + 4 + 4 bytes).
unsafe impl aya::Pod for GenTemplate {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_has_no_implicit_padding() {
        assert_eq!(size_of::<GenTemplate>(), FRAME_LEN + 4 + 4);
    }
}
