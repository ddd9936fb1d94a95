//! Incremental Internet checksum updates (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')).
//!
//! One's complement sums do not depend on byte order (RFC 1071 §2(B)), so fields are loaded
//! and stored in native order straight from the packet, and so are the checksums.

use crate::{
    mem,
    parse::{Frame, ParseError},
};

/// A running sum of checksum changes.
#[derive(Clone, Copy, Default)]
pub(crate) struct Delta(u32);

impl Delta {
    /// A 16-bit word changed from `old` to `new`.
    #[inline(always)]
    pub(crate) fn word(&mut self, old: u16, new: u16) {
        self.0 += u32::from(!old) + u32::from(new);
        self.0 = (self.0 & 0xffff) + (self.0 >> 16);
    }

    /// The changes of `other` as well.
    #[inline(always)]
    pub(crate) fn add(&mut self, other: Delta) {
        self.0 += other.0;
        self.0 = (self.0 & 0xffff) + (self.0 >> 16);
    }

    /// A 32-bit field changed from `old` to `new`.
    #[inline(always)]
    pub(crate) fn dword(&mut self, old: u32, new: u32) {
        self.word(old as u16, new as u16);
        self.word((old >> 16) as u16, (new >> 16) as u16);
    }

    /// An address (one word for IPv4, four for IPv6) changed.
    #[inline(always)]
    pub(crate) fn addr(&mut self, old: &[u32; 4], new: &[u32; 4], words: usize) {
        self.dword(old[0], new[0]);
        if words == 4 {
            self.dword(old[1], new[1]);
            self.dword(old[2], new[2]);
            self.dword(old[3], new[3]);
        }
    }

    /// The checksum `csum` updated by this delta.
    #[inline(always)]
    pub(crate) fn apply(self, csum: u16) -> u16 {
        let mut sum = u32::from(!csum) + self.0;
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        !(sum as u16)
    }
}

/// The Internet checksum of an IPv4 header whose checksum field is zero, given as its
/// non-zero 32-bit words (in memory order).
#[inline(always)]
pub(crate) fn words32(words: &[u32; 4]) -> u16 {
    let mut sum: u32 = 0;
    for w in words {
        sum += (w & 0xffff) + (w >> 16);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Sets the total length of the IPv4 header at `l3` of `frame` to `total` (network order),
/// updating the header checksum for that change and for `others`, the header's other changes
/// (already written).
#[inline(always)]
pub(crate) fn set_ipv4_total_length(
    frame: &Frame,
    l3: usize,
    total: u16,
    mut others: Delta,
) -> Result<(), ParseError> {
    let header = frame.ptr_at::<[u8; 20]>(l3)?.cast::<u8>();
    // SAFETY: 20 bytes in bounds (ptr_at); header fields lie at even offsets (crate::mem).
    unsafe {
        let length = header.add(2);
        others.word(mem::load16(length), total);
        mem::store16(length, total);
        let csum = header.add(10);
        mem::store16(csum, others.apply(mem::load16(csum)));
    }
    Ok(())
}
