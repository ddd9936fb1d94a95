//! Packet outcome counters.
//!
//! One named field per outcome, rather than an array indexed by an enum, so that
//! `bpftool map dump pinned .../LBD_STATS` prints what each number means.

/// Global counters of the XDP program, kept per CPU (the daemon sums them).
///
/// Every packet the program sees increments `rx_packets` and exactly one outcome counter.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[doc(alias = "LBD_STATS")]
pub struct GlobalStats {
    /// Packets seen by the program.
    pub rx_packets: u64,
    /// Bytes seen by the program (frame length, without the FCS).
    pub rx_bytes: u64,
    /// Passed to the kernel stack untouched: not for any virtual service.
    pub pass: u64,
    /// Dropped because the frame was truncated or malformed.
    pub drop_malformed: u64,
    /// Frames carrying IPv4.
    pub ipv4: u64,
    /// Frames carrying IPv6.
    pub ipv6: u64,
    /// Frames of any other EtherType (ARP, LLDP, ...), passed.
    pub other_l3: u64,
}

impl GlobalStats {
    /// Adds `other` field by field (summing the per-CPU copies). Wraps like the kernel counters.
    #[must_use]
    pub fn merged(self, other: &Self) -> Self {
        Self {
            rx_packets: self.rx_packets.wrapping_add(other.rx_packets),
            rx_bytes: self.rx_bytes.wrapping_add(other.rx_bytes),
            pass: self.pass.wrapping_add(other.pass),
            drop_malformed: self.drop_malformed.wrapping_add(other.drop_malformed),
            ipv4: self.ipv4.wrapping_add(other.ipv4),
            ipv6: self.ipv6.wrapping_add(other.ipv6),
            other_l3: self.other_l3.wrapping_add(other.other_l3),
        }
    }
}

#[cfg(feature = "user")]
// SAFETY: `GlobalStats` is `#[repr(C)]`, made only of `u64`s (no padding), and valid for any bits.
unsafe impl aya::Pod for GlobalStats {}

#[cfg(test)]
mod tests {
    use super::GlobalStats;

    #[test]
    fn merged_sums_every_field() {
        let a = GlobalStats { rx_packets: 1, rx_bytes: 60, pass: 1, ipv4: 1, ..Default::default() };
        let b = GlobalStats { rx_packets: 2, rx_bytes: 10, drop_malformed: 2, ..Default::default() };
        let sum = a.merged(&b);
        assert_eq!(sum.rx_packets, 3);
        assert_eq!(sum.rx_bytes, 70);
        assert_eq!(sum.pass, 1);
        assert_eq!(sum.drop_malformed, 2);
        assert_eq!(sum.ipv4, 1);
    }

    #[test]
    fn layout_has_no_padding() {
        assert_eq!(core::mem::size_of::<GlobalStats>(), 7 * 8);
    }
}
