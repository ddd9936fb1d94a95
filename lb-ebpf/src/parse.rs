//! Bounds-checked parsing of the frame: Ethernet, up to two VLAN tags, IPv4 (with options) or
//! IPv6 (skipping the usual extension headers), and the TCP / UDP ports.
//!
//! Every read goes through [`Frame::ptr_at`], which proves to the verifier that the access lies
//! between `data` and `data_end`. Offsets are kept small and bounded (`l3 <= 22`, `l4 <= 22 +
//! 60 + 4 * 8 * 8`) so the verifier can track them.

use core::mem::{MaybeUninit, size_of};

use lb_common::lb::{FlowKey, family};

/// Length of an Ethernet header without tags.
pub(crate) const ETH_HLEN: usize = 14;
/// Length of one 802.1Q / 802.1ad tag.
pub(crate) const VLAN_HLEN: usize = 4;
/// At most this many stacked VLAN tags (QinQ) are skipped.
const MAX_VLAN_TAGS: usize = 2;
/// At most this many IPv6 extension headers are skipped.
const MAX_IPV6_EXT: usize = 4;
/// Largest offset of the IP header (two VLAN tags).
const MAX_L3: usize = ETH_HLEN + MAX_VLAN_TAGS * VLAN_HLEN;
/// Most bytes of IPv6 extension headers accepted before the transport header.
const MAX_IPV6_EXT_LEN: usize = 512;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

pub(crate) const IPPROTO_TCP: u8 = 6;
pub(crate) const IPPROTO_UDP: u8 = 17;

/// Why a frame could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// The frame ends before a header does.
    Truncated,
    /// A header field is impossible (IPv4 IHL < 5, total length shorter than the header).
    Malformed,
}

/// The network-layer protocol a frame carries, after any VLAN tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EtherType {
    Ipv4,
    Ipv6,
    Other,
}

/// The packet between `data` and `data_end`.
#[derive(Clone, Copy)]
pub(crate) struct Frame {
    pub(crate) data: usize,
    pub(crate) data_end: usize,
}

/// What the load balancer needs to know about an IP packet.
#[derive(Clone, Copy)]
pub(crate) struct Headers {
    /// The packet's addresses, ports (network order; 0 for protocols without ports), transport
    /// protocol (after IPv6 extension headers) and family ([`family::IPV4`] or
    /// [`family::IPV6`]): the key of its flow in the connection table, looked up in place.
    pub(crate) key: FlowKey,
    /// Offset of the IP header.
    pub(crate) l3: usize,
    /// Offset of the transport header.
    pub(crate) l4: usize,
    /// A non-first fragment, or a first fragment of a fragmented packet.
    pub(crate) fragment: bool,
    /// TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10); 0 otherwise.
    pub(crate) tcp_flags: u8,
}

pub(crate) const TCP_FIN: u8 = 0x01;
pub(crate) const TCP_SYN: u8 = 0x02;
pub(crate) const TCP_RST: u8 = 0x04;
pub(crate) const TCP_ACK: u8 = 0x10;

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
    ///
    /// Verifier note: keep `T` at least two bytes long. For one byte LLVM rewrites the check
    /// into `ptr >= end`, and the verifier grants no readable range from that form.
    #[inline(always)]
    pub(crate) fn ptr_at<T>(&self, offset: usize) -> Result<*mut T, ParseError> {
        let start = self.data + offset;
        if start + size_of::<T>() > self.data_end {
            return Err(ParseError::Truncated);
        }
        Ok(start as *mut T)
    }

    /// `N` bytes at `offset`.
    #[inline(always)]
    pub(crate) fn bytes<const N: usize>(&self, offset: usize) -> Result<[u8; N], ParseError> {
        let ptr = self.ptr_at::<[u8; N]>(offset)?;
        // SAFETY: `ptr_at` checked the bytes lie inside the frame; arrays of u8 are unaligned.
        Ok(unsafe { *ptr })
    }

    /// A big-endian `u16` at `offset`.
    #[inline(always)]
    pub(crate) fn be16_at(&self, offset: usize) -> Result<u16, ParseError> {
        let ptr = self.ptr_at::<[u8; 2]>(offset)?;
        // SAFETY: in bounds (ptr_at); header fields lie at even offsets (crate::mem).
        Ok(u16::from_be(unsafe { crate::mem::load16(ptr.cast()) }))
    }

    /// The 32-bit word (memory order) at the even `offset`.
    #[inline(always)]
    pub(crate) fn word_at(&self, offset: usize) -> Result<u32, ParseError> {
        let ptr = self.ptr_at::<[u8; 4]>(offset)?;
        // SAFETY: in bounds (ptr_at); header fields lie at even offsets (crate::mem).
        Ok(unsafe { crate::mem::load32(ptr.cast()) })
    }

    /// Four address words (network order in memory) at `offset`.
    #[inline(always)]
    pub(crate) fn addr6_at(&self, offset: usize) -> Result<[u32; 4], ParseError> {
        let ptr = self.ptr_at::<[u32; 4]>(offset)?;
        // SAFETY: checked in bounds; read_unaligned because packet data has no alignment.
        Ok(unsafe { ptr.read_unaligned() })
    }

    /// The headers of the frames the entry point's flow cache serves: an IPv4 packet without
    /// options at `L3` (14: untagged; 18: after one 802.1Q or 802.1ad tag), not part of a
    /// fragmented packet, carrying TCP or UDP. Read inline at fixed offsets; `None` for any
    /// other frame (left to [`Self::ether_type`] and [`Self::ipv4`] on the full path, which
    /// also judge malformed ones).
    #[inline(always)]
    pub(crate) fn plain_ipv4<const L3: usize>(&self) -> Option<Headers> {
        const { assert!(L3 == ETH_HLEN || L3 == ETH_HLEN + VLAN_HLEN) };
        let l4 = L3 + 20;
        // Ethernet, a tag, IPv4 and the first 8 bytes of the transport header: all UDP needs.
        let ptr = self.ptr_at::<[u8; ETH_HLEN + VLAN_HLEN + 20 + 8]>(0).ok()?.cast::<u8>();
        // SAFETY: in bounds (ptr_at; an untagged frame reads 4 bytes less); even offsets
        // (crate::mem).
        let (outer_type, ether_type, version_ihl, total_len, frag, proto, src, dst, sport, dport) = unsafe {
            (
                crate::mem::load16(ptr.add(ETH_HLEN - 2)),
                crate::mem::load16(ptr.add(L3 - 2)),
                *ptr.add(L3),
                crate::mem::load16(ptr.add(L3 + 2)),
                crate::mem::load16(ptr.add(L3 + 6)),
                *ptr.add(L3 + 9),
                crate::mem::load32(ptr.add(L3 + 12)),
                crate::mem::load32(ptr.add(L3 + 16)),
                crate::mem::load16(ptr.add(l4)),
                crate::mem::load16(ptr.add(l4 + 2)),
            )
        };
        // Compared in network order: 0x0800 and 0x3fff (MF and the offset) as they lie in memory.
        if L3 != ETH_HLEN && outer_type != ETH_P_8021Q.to_be() && outer_type != ETH_P_8021AD.to_be()
            || ether_type != ETH_P_IP.to_be()
            || version_ihl != 0x45
            || u16::from_be(total_len) < 20
            || frag & 0x3fffu16.to_be() != 0
        {
            return None;
        }
        let tcp_flags = match proto {
            // The whole 20-byte header must be there: its checksum is rewritten.
            IPPROTO_TCP => self.bytes::<20>(l4).ok()?[13],
            IPPROTO_UDP => 0,
            _ => return None,
        };
        let key = FlowKey {
            src: [src, 0, 0, 0],
            dst: [dst, 0, 0, 0],
            sport,
            dport,
            proto,
            family: family::IPV4,
            pad: 0,
        };
        Some(Headers { key, l3: L3, l4, fragment: false, tcp_flags })
    }

    /// Whether the frame is untagged IPv6 (the entry point sends it straight to `lb_xdp_v6`).
    #[inline(always)]
    pub(crate) fn untagged_ipv6(&self) -> bool {
        self.be16_at(ETH_HLEN - 2) == Ok(ETH_P_IPV6)
    }

    /// The network-layer protocol and the offset of its header, after up to
    /// [`MAX_VLAN_TAGS`] VLAN tags.
    #[inline(always)]
    pub(crate) fn ether_type(&self) -> Result<(EtherType, usize), ParseError> {
        let mut offset = ETH_HLEN - 2;
        let mut proto = self.be16_at(offset)?;
        for _ in 0..MAX_VLAN_TAGS {
            if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
                break;
            }
            offset += VLAN_HLEN;
            proto = self.be16_at(offset)?;
        }
        // One range instead of three constants for the verifier (see maps::opaque). The
        // unsigned tag length is bounded alone so that l3 keeps its lower bound of 14.
        let tags = crate::maps::opaque(offset + 2 - ETH_HLEN);
        if tags > MAX_L3 - ETH_HLEN {
            return Err(ParseError::Malformed);
        }
        let l3 = ETH_HLEN + tags;
        Ok((
            match proto {
                ETH_P_IP => EtherType::Ipv4,
                ETH_P_IPV6 => EtherType::Ipv6,
                _ => EtherType::Other,
            },
            l3,
        ))
    }

    /// Parses the IPv4 header at `l3` and the ports after it into `out`, which it initialises
    /// when it returns `Ok` (an out parameter rather than a result: see below; uninitialised
    /// rather than zeroed first: zeroing is a byte-at-a-time `memset`, see [`crate::mem`]).
    ///
    /// Not inlined, nor is `ipv6`: their locals then live in their own stack frames, off the
    /// entry point's, which heads the deepest call chain (512 bytes for the whole chain).
    #[inline(never)]
    pub(crate) fn ipv4(&self, l3: usize, out: &mut MaybeUninit<Headers>) -> Result<(), ParseError> {
        let [version_ihl, _tos] = self.bytes::<2>(l3)?;
        let ihl = usize::from(version_ihl & 0x0f);
        if version_ihl >> 4 != 4 || ihl < 5 {
            return Err(ParseError::Malformed);
        }
        let total_len = usize::from(self.be16_at(l3 + 2)?);
        if total_len < ihl * 4 {
            return Err(ParseError::Malformed);
        }
        let frag = self.be16_at(l3 + 6)?;
        let [_, proto] = self.bytes::<2>(l3 + 8)?;
        let src = self.word_at(l3 + 12)?;
        let dst = self.word_at(l3 + 16)?;
        // MF set or a non-zero offset: part of a fragmented packet.
        let fragment = frag & 0x3fff != 0;
        let l4 = l3 + ihl * 4;
        let key = FlowKey {
            src: [src, 0, 0, 0],
            dst: [dst, 0, 0, 0],
            sport: 0,
            dport: 0,
            proto,
            family: family::IPV4,
            pad: 0,
        };
        let mut headers = Headers { key, l3, l4, fragment, tcp_flags: 0 };
        if !fragment {
            self.ports(&mut headers)?;
        }
        out.write(headers);
        Ok(())
    }

    /// Parses the IPv6 header at `l3`, skipping hop-by-hop, routing and destination options
    /// headers, and the ports after them, into `out`.
    #[inline(never)]
    pub(crate) fn ipv6(&self, l3: usize, out: &mut MaybeUninit<Headers>) -> Result<(), ParseError> {
        // Two bytes, not one: LLVM turns a one-byte bounds check into `ptr >= end`, from which
        // the verifier grants no readable range.
        let [version_tc, _] = self.bytes::<2>(l3)?;
        if version_tc >> 4 != 6 {
            return Err(ParseError::Malformed);
        }
        let [next, _hop] = self.bytes::<2>(l3 + 6)?;
        let src = self.addr6_at(l3 + 8)?;
        let dst = self.addr6_at(l3 + 24)?;
        let mut proto = next;
        let mut l4 = l3 + 40;
        let mut fragment = false;
        for _ in 0..MAX_IPV6_EXT {
            match proto {
                // Hop-by-hop, routing, destination options: length in 8-byte units, minus one.
                0 | 43 | 60 => {
                    let [nh, len] = self.bytes::<2>(l4)?;
                    proto = nh;
                    l4 += (usize::from(len) + 1) * 8;
                }
                // Fragment header: fixed 8 bytes. An "atomic fragment" (offset 0, M=0) is whole.
                44 => {
                    let [nh, _] = self.bytes::<2>(l4)?;
                    let offset_m = self.be16_at(l4 + 2)?;
                    fragment = offset_m & 0xfff9 != 0;
                    proto = nh;
                    l4 += 8;
                }
                _ => break,
            }
        }
        // One range instead of a constant per extension-header layout (see maps::opaque).
        let ext = crate::maps::opaque(l4 - (l3 + 40));
        if ext > MAX_IPV6_EXT_LEN {
            return Err(ParseError::Malformed);
        }
        let l4 = l3 + 40 + ext;
        let key = FlowKey { src, dst, sport: 0, dport: 0, proto, family: family::IPV6, pad: 0 };
        let mut headers = Headers { key, l3, l4, fragment, tcp_flags: 0 };
        if !fragment {
            self.ports(&mut headers)?;
        }
        out.write(headers);
        Ok(())
    }

    /// Reads the ports (and TCP flags) of TCP and UDP.
    #[inline(always)]
    fn ports(&self, h: &mut Headers) -> Result<(), ParseError> {
        match h.key.proto {
            IPPROTO_TCP => {
                // The whole 20-byte header must be there: we rewrite its checksum.
                let ptr = self.ptr_at::<[u8; 20]>(h.l4)?.cast::<u8>();
                // SAFETY: checked in bounds; an even offset (crate::mem).
                unsafe {
                    h.key.sport = crate::mem::load16(ptr);
                    h.key.dport = crate::mem::load16(ptr.add(2));
                    h.tcp_flags = *ptr.add(13);
                }
            }
            IPPROTO_UDP => {
                let ptr = self.ptr_at::<[u8; 8]>(h.l4)?.cast::<u8>();
                // SAFETY: checked in bounds; an even offset.
                unsafe {
                    h.key.sport = crate::mem::load16(ptr);
                    h.key.dport = crate::mem::load16(ptr.add(2));
                }
            }
            _ => {}
        }
        Ok(())
    }
}
