//! Bounds-checked access to the frame.
//!
//! Every read goes through [`Frame::ptr_at`], which proves to the verifier that the access lies
//! between `data` and `data_end`.

use core::mem::size_of;

/// Length of an Ethernet header without tags.
const ETH_HLEN: usize = 14;
/// Length of one 802.1Q / 802.1ad tag.
const VLAN_HLEN: usize = 4;
/// At most this many stacked VLAN tags (QinQ) are skipped.
const MAX_VLAN_TAGS: usize = 2;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

/// Why a frame could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// The frame ends before the header does.
    Truncated,
}

/// The network-layer protocol a frame carries, after any VLAN tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EtherType {
    Ipv4,
    Ipv6,
    Other(u16),
}

/// The packet between `data` and `data_end`.
#[derive(Clone, Copy)]
pub(crate) struct Frame {
    data: usize,
    data_end: usize,
}

impl Frame {
    #[inline(always)]
    pub(crate) fn new(data: usize, data_end: usize) -> Self {
        Self { data, data_end }
    }

    /// Frame length in bytes.
    #[inline(always)]
    pub(crate) fn len(&self) -> usize {
        self.data_end - self.data
    }

    /// A pointer to a `T` at `offset`, if the whole `T` lies inside the frame.
    #[inline(always)]
    fn ptr_at<T>(&self, offset: usize) -> Result<*const T, ParseError> {
        let start = self.data + offset;
        if start + size_of::<T>() > self.data_end {
            return Err(ParseError::Truncated);
        }
        Ok(start as *const T)
    }

    /// A big-endian `u16` at `offset`.
    #[inline(always)]
    fn be16_at(&self, offset: usize) -> Result<u16, ParseError> {
        let ptr = self.ptr_at::<[u8; 2]>(offset)?;
        // SAFETY: `ptr_at` checked that both bytes lie inside the frame; [u8; 2] has no
        // alignment requirement.
        Ok(u16::from_be_bytes(unsafe { *ptr }))
    }

    /// The EtherType after skipping up to [`MAX_VLAN_TAGS`] VLAN tags.
    #[inline(always)]
    pub(crate) fn ether_type(&self) -> Result<EtherType, ParseError> {
        let mut offset = ETH_HLEN - 2;
        let mut proto = self.be16_at(offset)?;
        // Bounded loop: unrolled so older verifiers accept it.
        for _ in 0..MAX_VLAN_TAGS {
            if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
                break;
            }
            offset += VLAN_HLEN;
            proto = self.be16_at(offset)?;
        }
        Ok(match proto {
            ETH_P_IP => EtherType::Ipv4,
            ETH_P_IPV6 => EtherType::Ipv6,
            other => EtherType::Other(other),
        })
    }
}
