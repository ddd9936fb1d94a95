//! Packet outcome counters.
//!
//! One named field per outcome, rather than an array indexed by an enum, so that
//! `bpftool map dump pinned .../LBD_STATS` prints what each number means.

macro_rules! global_stats {
    ($($(#[$doc:meta])* $field:ident,)+) => {
        /// Global counters of the XDP program, kept per CPU (the daemon sums them).
        ///
        /// Every packet the program sees increments `rx_packets`, one of `ipv4` / `ipv6` /
        /// `other_l3` when it parses that far, and exactly one outcome: a `pass_*`, `fwd_*` or
        /// `drop_*` counter. `pass`, `fwd` and `drop` are their totals.
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        #[doc(alias = "LBD_STATS")]
        pub struct GlobalStats {
            $($(#[$doc])* pub $field: u64,)+
        }

        impl GlobalStats {
            /// Field names, in order (as bpftool prints them).
            pub const FIELDS: &[&str] = &[$(stringify!($field)),+];

            /// Adds `other` field by field (summing the per-CPU copies). Wraps like the kernel.
            #[must_use]
            pub fn merged(self, other: &Self) -> Self {
                Self { $($field: self.$field.wrapping_add(other.$field),)+ }
            }

            /// Builds the counters from a function of each field's name (bpftool's JSON, say).
            pub fn from_fn(mut value: impl FnMut(&str) -> u64) -> Self {
                Self { $($field: value(stringify!($field)),)+ }
            }

            /// The fields with their names, in order.
            pub fn fields(&self) -> [(&'static str, u64); Self::FIELDS.len()] {
                [$((stringify!($field), self.$field)),+]
            }
        }
    };
}

global_stats! {
    /// Packets seen by the program.
    rx_packets,
    /// Bytes seen by the program (frame length, without the FCS).
    rx_bytes,
    /// Frames carrying IPv4.
    ipv4,
    /// Frames carrying IPv6.
    ipv6,
    /// Frames of any other EtherType (ARP, LLDP, ...).
    other_l3,
    /// Passed to the kernel stack, all reasons.
    pass,
    /// Passed: not for a virtual service (nor a reply of a tracked flow).
    pass_no_service,
    /// Passed: an IP fragment (ports unknown), left to the kernel.
    pass_fragment,
    /// Passed after NAT translation: no neighbour entry yet, the kernel forwards and resolves it.
    pass_no_neigh,
    /// Passed: the tables are not loaded yet.
    pass_not_ready,
    /// Passed: larger than its route's MTU; the kernel answers (ICMP fragmentation needed /
    /// packet too big) or fragments.
    pass_too_big,
    /// Forwarded, all ways.
    fwd,
    /// Forwarded back out of the receiving interface (XDP_TX).
    fwd_tx,
    /// Forwarded out of another interface (XDP_REDIRECT).
    fwd_redirect,
    /// New flows scheduled to a real server.
    new_flows,
    /// Packets of a known flow (original direction).
    flow_hits,
    /// Reply packets translated back (NAT, FNAT).
    reply_translated,
    /// ICMP errors about a tracked flow, translated.
    icmp_translated,
    /// Dropped, all reasons.
    drop,
    /// Dropped: truncated or malformed headers.
    drop_malformed,
    /// Dropped: no real server available and no sorry server.
    drop_no_real,
    /// Dropped: no route to the real server, or (DR, TUN) no neighbour entry for it.
    drop_no_route,
    /// Dropped: FNAT found no free local address and port.
    drop_no_laddr,
    /// Dropped: the packet could not be resized (encapsulation).
    drop_resize,
    /// Dropped: an ACK to a SYN proxy service with no flow and no valid SYN cookie (IPVS's
    /// synproxy drops them too).
    drop_bad_cookie,
    /// Dropped: a client packet of a SYN proxy flow whose real server has not answered yet
    /// (the client retransmits it).
    drop_synproxy_early,
    /// SYN proxy: SYNs answered with a SYN cookie (each also counts as `fwd_tx`).
    synproxy_cookies_sent,
    /// SYN proxy: ACKs with a valid cookie, turned into a SYN to a real server.
    synproxy_cookies_valid,
    /// SYN proxy: real servers' SYN-ACKs turned into the ACK that completes their handshake.
    synproxy_real_answers,
    /// FNAT: handshake-completing ACKs given the client's address in a TOA option.
    toa_inserted,
    /// FNAT: handshake-completing ACKs sent without the TOA option (they carried data, or
    /// their TCP header had no room).
    toa_no_room,
    /// Packets of a known flow (either direction) sent from the flow cache, without a
    /// connection-table lookup (also counted in `flow_hits` or `reply_translated`).
    flow_cache_hits,
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
    fn layout_has_no_padding_and_names_every_field() {
        assert_eq!(core::mem::size_of::<GlobalStats>(), GlobalStats::FIELDS.len() * 8);
        let stats = GlobalStats { flow_cache_hits: 7, ..Default::default() };
        assert_eq!(stats.fields().last(), Some(&("flow_cache_hits", 7)));
    }
}
