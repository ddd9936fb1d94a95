//! The VRRP advertisement codec: VRRPv2 (RFC 3768) and VRRPv3 (RFC 5798), IPv4 and IPv6.
//!
//! This module owns the bytes of a VRRP message and of the IP header keepalived puts in front of
//! it; it knows nothing about configuration or state. Decoding parses into types that cannot hold
//! an invalid message ([`Vrid`] is never 0, [`MaxAdverInt`] is never 0 and fits 12 bits), checks
//! version, type, address count against length, and the checksum, and reports what was wrong as a
//! [`VrrpPacketError`]. It never panics and never indexes out of bounds: every read goes through
//! a bounds-checked `Reader`, as in rustls' codec. Encoding produces the bytes keepalived 2.2.7
//! sends, which the tests check against captures of real keepalived traffic.
//!
//! Checks that depend on the local configuration (VRID, authentication, address list, interval
//! for v2) belong to the state machine ([`super::state`]); checks that need the socket (TTL/hop
//! limit, multicast or unicast destination) belong to the socket layer, which uses
//! [`check_hop_limit`] and [`Ipv4VrrpPacket`] from here.
//!
//! Layout, one row per 32 bits (RFC 5798 §5.2, RFC 3768 §5.3):
//! ```text
//! |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//! |(rsvd) |     Max Adver Int     |           Checksum            |  v3
//! |   Auth Type   |   Adver Int   |           Checksum            |  v2
//! |         IPvX Address(es): Count × 4 (IPv4) or 16 (IPv6)       |
//! |        Authentication Data: 8 bytes (v2 only)                 |
//! ```

use std::cmp::Ordering;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::{NonZeroU8, NonZeroU16};
use std::time::Duration;

/// IP protocol number of VRRP (RFC 5798 §5.1.1.4).
pub const IPPROTO_VRRP: u8 = 112;
/// IP protocol number of the IPsec Authentication Header (RFC 4302), used by `auth_type AH`.
pub const IPPROTO_AH: u8 = 51;
/// TTL / hop limit every VRRP packet is sent with and must arrive with (RFC 5798 §5.1.1.3, §7.1).
pub const VRRP_TTL: u8 = 255;
/// IPv4 TOS / IPv6 traffic class keepalived sends with (internetwork control).
pub const VRRP_TOS: u8 = 0xc0;
/// The IPv4 multicast group of VRRP (RFC 5798 §5.1.1.2), keepalived's default `vrrp_mcast_group4`.
pub const VRRP_MCAST_GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The IPv6 multicast group of VRRP (RFC 5798 §5.1.2.2), keepalived's default `vrrp_mcast_group6`.
pub const VRRP_MCAST_GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// Priority of the address owner (RFC 5798 §5.2.4).
pub const PRIORITY_OWNER: u8 = 255;
/// Priority a master sends when it stops participating (RFC 5798 §5.2.4).
pub const PRIORITY_STOP: u8 = 0;
/// Length of the fixed VRRP header, before the addresses.
pub const HEADER_LEN: usize = 8;
/// Length of the VRRPv2 authentication data field (RFC 3768 §5.3.10).
pub const AUTH_DATA_LEN: usize = 8;
/// Length of an IPv4 header without options.
pub const IPV4_HEADER_LEN: usize = 20;
/// Length of the IPv6 fixed header.
pub const IPV6_HEADER_LEN: usize = 40;
/// Length of the AH header keepalived sends (HMAC-MD5-96 ICV, RFC 2403).
pub const AH_HEADER_LEN: usize = 24;
/// Length of the AH integrity check value keepalived sends (HMAC-MD5 truncated to 96 bits).
pub const AH_ICV_LEN: usize = 12;
/// VRRP message type ADVERTISEMENT, the only one defined (RFC 5798 §5.2.2).
const TYPE_ADVERTISEMENT: u8 = 1;
/// Largest Max Adver Int, in centiseconds (12 bits, RFC 5798 §5.2.7).
const MAX_ADVER_INT_MAX: u16 = 0x0fff;
/// AH Payload Len for a 24-byte header: length in 32-bit words minus 2 (RFC 4302 §2.2).
const AH_PAYLOAD_LEN: u8 = (AH_HEADER_LEN / 4 - 2) as u8;
/// IPv4 flag bits in the flags/fragment-offset word.
const IPV4_FLAG_DF: u16 = 0x4000;
const IPV4_FLAG_MF: u16 = 0x2000;
const IPV4_FRAGMENT_OFFSET: u16 = 0x1fff;

/// Everything that can be wrong with a VRRP packet, or with a request to encode one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VrrpPacketError {
    /// Fewer bytes than the part being read needs.
    #[error("truncated {what}: need {needed} bytes, have {available}")]
    Truncated {
        /// Which part was being read.
        what: &'static str,
        /// Bytes that part needs.
        needed: usize,
        /// Bytes there were.
        available: usize,
    },
    /// The version nibble is neither 2 nor 3 (RFC 5798 §5.2.1, RFC 3768 §5.3.1).
    #[error("unsupported VRRP version {version}, expected 2 or 3")]
    UnsupportedVersion {
        /// The version nibble received.
        version: u8,
    },
    /// The type nibble is not ADVERTISEMENT; RFC 5798 §5.2.2 says to discard it.
    #[error("unknown VRRP packet type {packet_type}, expected 1 (ADVERTISEMENT)")]
    UnknownType {
        /// The type nibble received.
        packet_type: u8,
    },
    /// VRID 0 is not a valid virtual router (RFC 5798 §5.2.3: 1..255).
    #[error("virtual router id 0 is not valid")]
    ZeroVrid,
    /// VRRPv2 is defined for IPv4 only (RFC 3768); keepalived forces v3 for IPv6.
    #[error("VRRPv2 carries IPv4 addresses only, not IPv6")]
    V2OverIpv6,
    /// The VRRPv2 auth type is not 0 (none), 1 (simple text) or 2 (IP AH).
    #[error("unknown VRRPv2 auth type {auth_type}")]
    UnknownAuthType {
        /// The auth type received.
        auth_type: u8,
    },
    /// An advertisement interval of 0 would make the master down timer expire at once.
    #[error("advertisement interval of 0 in a VRRPv{version} advert")]
    ZeroAdvertInterval {
        /// VRRP version of the advert (2 or 3).
        version: u8,
    },
    /// The message is not exactly as long as its address count says (RFC 5798 §7.1).
    #[error("VRRP message of {actual} bytes, but {count} addresses make {expected} bytes")]
    LengthMismatch {
        /// The Count IPvX Addr field.
        count: u8,
        /// The length it implies.
        expected: usize,
        /// The length received.
        actual: usize,
    },
    /// The VRRP checksum does not match (RFC 5798 §5.2.8, RFC 3768 §5.3.8).
    #[error("bad VRRP checksum {found:#06x}, expected {expected:#06x}")]
    BadChecksum {
        /// The checksum in the packet.
        found: u16,
        /// The checksum computed over the packet (and pseudo-header for v3).
        expected: u16,
    },
    /// More addresses than the 8-bit Count IPvX Addr field can hold.
    #[error("{count} addresses do not fit the 8-bit address count")]
    TooManyAddresses {
        /// The number of addresses given.
        count: usize,
    },
    /// The address list and the IP header are of different families.
    #[error("{addresses} address list in an {header} packet")]
    FamilyMismatch {
        /// Family of the address list.
        addresses: AddressFamily,
        /// Family of the IP header / pseudo-header.
        header: AddressFamily,
    },
    /// The IP header's version nibble is not the one expected.
    #[error("IP version {version} where IPv{expected} was expected")]
    WrongIpVersion {
        /// The version nibble received.
        version: u8,
        /// The version expected (4 or 6).
        expected: u8,
    },
    /// The IPv4 IHL is below 5 words.
    #[error("IPv4 header length of {ihl} words is below the minimum of 5")]
    BadHeaderLength {
        /// The IHL field.
        ihl: u8,
    },
    /// The IPv4 total length is shorter than the header or longer than what was received.
    #[error(
        "IPv4 total length {total_length} with a {header_length}-byte header, {available} bytes received"
    )]
    BadTotalLength {
        /// The Total Length field.
        total_length: u16,
        /// The header length from IHL.
        header_length: usize,
        /// Bytes received.
        available: usize,
    },
    /// The IPv4 header checksum does not match.
    #[error("bad IPv4 header checksum {found:#06x}, expected {expected:#06x}")]
    BadIpChecksum {
        /// The checksum in the header.
        found: u16,
        /// The checksum computed.
        expected: u16,
    },
    /// A fragment: VRRP packets are never fragmented, and the kernel reassembles before raw
    /// sockets see them.
    #[error("IPv4 fragment (offset {offset}, more fragments {more_fragments})")]
    Fragment {
        /// Fragment offset, in 8-byte units.
        offset: u16,
        /// The MF flag.
        more_fragments: bool,
    },
    /// The IP protocol / next header is neither VRRP nor AH.
    #[error("IP protocol {protocol} is neither VRRP (112) nor AH (51)")]
    UnexpectedProtocol {
        /// The protocol received.
        protocol: u8,
    },
    /// An AH header protecting something other than VRRP.
    #[error("AH next header {next_header} is not VRRP (112)")]
    AhNotVrrp {
        /// The AH Next Header field.
        next_header: u8,
    },
    /// An AH header of another length than keepalived's 24 bytes (HMAC-MD5-96).
    #[error("AH payload length {payload_len} is not {AH_PAYLOAD_LEN} (24-byte header)")]
    BadAhLength {
        /// The AH Payload Len field.
        payload_len: u8,
    },
    /// TTL / hop limit other than 255: the packet crossed a router (RFC 5798 §7.1).
    #[error("TTL/hop limit {found} is not 255")]
    BadHopLimit {
        /// The TTL / hop limit received.
        found: u8,
    },
    /// The packet would not fit the 16-bit IP length field.
    #[error("{length}-byte IP payload does not fit the 16-bit length field")]
    PacketTooLong {
        /// The length that did not fit.
        length: usize,
    },
}

/// An IP address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressFamily {
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
}

impl AddressFamily {
    /// The family of `address`.
    pub fn of(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(_) => AddressFamily::Ipv4,
            IpAddr::V6(_) => AddressFamily::Ipv6,
        }
    }

    /// Bytes per address.
    pub fn address_len(self) -> usize {
        match self {
            AddressFamily::Ipv4 => 4,
            AddressFamily::Ipv6 => 16,
        }
    }
}

impl fmt::Display for AddressFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressFamily::Ipv4 => "IPv4",
            AddressFamily::Ipv6 => "IPv6",
        })
    }
}

/// The VRRP protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// VRRPv2, RFC 3768: IPv4 only, interval in seconds, authentication fields.
    V2,
    /// VRRPv3, RFC 5798: IPv4 and IPv6, interval in centiseconds, pseudo-header checksum.
    V3,
}

impl Version {
    /// The value of the version nibble.
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VRRPv{}", self.number())
    }
}

/// A virtual router identifier, 1..=255 (RFC 5798 §5.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[doc(alias = "virtual_router_id")]
pub struct Vrid(NonZeroU8);

impl Vrid {
    /// The VRID `id`, or `None` for 0.
    pub const fn new(id: u8) -> Option<Self> {
        match NonZeroU8::new(id) {
            Some(id) => Some(Vrid(id)),
            None => None,
        }
    }

    /// The VRID as a number.
    pub const fn get(self) -> u8 {
        self.0.get()
    }
}

impl fmt::Display for Vrid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// VRRPv3 Max Adver Int: 1..=4095 centiseconds (RFC 5798 §5.2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MaxAdverInt(NonZeroU16);

impl MaxAdverInt {
    /// `centiseconds` as a Max Adver Int, or `None` if it is 0 or above 4095.
    pub const fn from_centiseconds(centiseconds: u16) -> Option<Self> {
        if centiseconds > MAX_ADVER_INT_MAX {
            return None;
        }
        match NonZeroU16::new(centiseconds) {
            Some(cs) => Some(MaxAdverInt(cs)),
            None => None,
        }
    }

    /// The interval in centiseconds.
    pub const fn centiseconds(self) -> u16 {
        self.0.get()
    }

    /// The interval as a [`Duration`].
    pub fn duration(self) -> Duration {
        Duration::from_millis(u64::from(self.centiseconds()) * 10)
    }
}

/// VRRPv2 Auth Type (RFC 2338 §5.3.6; RFC 3768 §5.3.6 keeps only 0 but keepalived still
/// sends 1 and 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthType {
    /// 0: no authentication.
    None,
    /// 1: a clear-text password in the authentication data (keepalived `auth_type PASS`).
    #[doc(alias = "PASS")]
    SimpleText,
    /// 2: IPsec AH in front of the VRRP message (keepalived `auth_type AH`).
    #[doc(alias = "AH")]
    IpAh,
}

impl AuthType {
    /// The wire value.
    pub fn number(self) -> u8 {
        match self {
            AuthType::None => 0,
            AuthType::SimpleText => 1,
            AuthType::IpAh => 2,
        }
    }

    fn from_number(number: u8) -> Result<Self, VrrpPacketError> {
        match number {
            0 => Ok(AuthType::None),
            1 => Ok(AuthType::SimpleText),
            2 => Ok(AuthType::IpAh),
            auth_type => Err(VrrpPacketError::UnknownAuthType { auth_type }),
        }
    }
}

/// The fields that differ between VRRPv2 and VRRPv3.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VersionFields {
    /// RFC 3768 §5.3.
    V2 {
        /// Auth Type.
        auth_type: AuthType,
        /// Adver Int, in seconds.
        adver_int: NonZeroU8,
        /// The 8 authentication data bytes that end every v2 message: the password padded with
        /// zeros for [`AuthType::SimpleText`], zeros otherwise as sent by keepalived. Kept as
        /// received so that decode → encode round-trips.
        auth_data: [u8; AUTH_DATA_LEN],
    },
    /// RFC 5798 §5.2. The 4 reserved bits are sent as 0 and ignored on receive (§5.2.6).
    V3 {
        /// Max Adver Int.
        max_adver_int: MaxAdverInt,
    },
}

/// The IPvX Address(es) of an advert: all IPv4 or all IPv6 (RFC 5798 §5.2.9).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AddressList {
    /// IPv4 addresses.
    V4(Vec<Ipv4Addr>),
    /// IPv6 addresses; the first should be link-local (keepalived only warns if not).
    V6(Vec<Ipv6Addr>),
}

impl AddressList {
    /// The family of the list.
    pub fn family(&self) -> AddressFamily {
        match self {
            AddressList::V4(_) => AddressFamily::Ipv4,
            AddressList::V6(_) => AddressFamily::Ipv6,
        }
    }

    /// The number of addresses.
    pub fn len(&self) -> usize {
        match self {
            AddressList::V4(list) => list.len(),
            AddressList::V6(list) => list.len(),
        }
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `address` is in the list.
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self, address) {
            (AddressList::V4(list), IpAddr::V4(a)) => list.contains(&a),
            (AddressList::V6(list), IpAddr::V6(a)) => list.contains(&a),
            _ => false,
        }
    }

    /// The addresses, as [`IpAddr`]s.
    pub fn iter(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let (v4, v6) = match self {
            AddressList::V4(list) => (Some(list.iter().copied().map(IpAddr::V4)), None),
            AddressList::V6(list) => (None, Some(list.iter().copied().map(IpAddr::V6))),
        };
        v4.into_iter().flatten().chain(v6.into_iter().flatten())
    }
}

/// Source and destination of the IP header, for the VRRPv3 checksum pseudo-header
/// (RFC 5798 §5.2.8). For unicast adverts the destination is the real peer address, as
/// keepalived 2.2.7 does by default (its `old_unicast_checksum` option used the multicast group
/// instead: retry with [`VRRP_MCAST_GROUP_V4`] to accept such peers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PseudoHeader {
    /// IPv4 pseudo-header: source, destination, zero, protocol, VRRP length.
    V4 {
        /// IPv4 source.
        source: Ipv4Addr,
        /// IPv4 destination.
        destination: Ipv4Addr,
    },
    /// IPv6 pseudo-header (RFC 8200 §8.1): source, destination, 32-bit length, next header.
    V6 {
        /// IPv6 source.
        source: Ipv6Addr,
        /// IPv6 destination.
        destination: Ipv6Addr,
    },
}

impl PseudoHeader {
    /// The family of the addresses.
    pub fn family(&self) -> AddressFamily {
        match self {
            PseudoHeader::V4 { .. } => AddressFamily::Ipv4,
            PseudoHeader::V6 { .. } => AddressFamily::Ipv6,
        }
    }

    /// The source address.
    pub fn source(&self) -> IpAddr {
        match *self {
            PseudoHeader::V4 { source, .. } => IpAddr::V4(source),
            PseudoHeader::V6 { source, .. } => IpAddr::V6(source),
        }
    }

    /// The pseudo-header from a source and destination of the same family, `None` if they differ.
    pub fn from_addresses(source: IpAddr, destination: IpAddr) -> Option<Self> {
        match (source, destination) {
            (IpAddr::V4(source), IpAddr::V4(destination)) => Some(PseudoHeader::V4 { source, destination }),
            (IpAddr::V6(source), IpAddr::V6(destination)) => Some(PseudoHeader::V6 { source, destination }),
            _ => None,
        }
    }

    /// One's complement sum of the pseudo-header for a VRRP message of `length` bytes.
    fn sum(&self, length: usize) -> u64 {
        match self {
            PseudoHeader::V4 { source, destination } => {
                let mut sum = ones_complement_add(0, &source.octets());
                sum = ones_complement_add(sum, &destination.octets());
                sum + u64::from(IPPROTO_VRRP) + (length as u64 & 0xffff)
            }
            PseudoHeader::V6 { source, destination } => {
                let mut sum = ones_complement_add(0, &source.octets());
                sum = ones_complement_add(sum, &destination.octets());
                let length = length as u64 & 0xffff_ffff;
                sum + (length >> 16) + (length & 0xffff) + u64::from(IPPROTO_VRRP)
            }
        }
    }
}

/// A VRRP ADVERTISEMENT, the only VRRP message (RFC 5798 §5.2, RFC 3768 §5.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[doc(alias = "vrrphdr_t")]
pub struct VrrpAdvert {
    /// Virtual Rtr ID.
    pub vrid: Vrid,
    /// Priority: 255 owner, 1..=254 backups, 0 master stopping (RFC 5798 §5.2.4).
    pub priority: u8,
    /// Version-specific fields (and so the version).
    pub fields: VersionFields,
    /// The virtual addresses.
    pub addresses: AddressList,
}

impl VrrpAdvert {
    /// The protocol version of the advert.
    pub fn version(&self) -> Version {
        match self.fields {
            VersionFields::V2 { .. } => Version::V2,
            VersionFields::V3 { .. } => Version::V3,
        }
    }

    /// The advertisement interval the advert carries: Adver Int (v2) or Max Adver Int (v3).
    pub fn adver_interval(&self) -> Duration {
        match self.fields {
            VersionFields::V2 { adver_int, .. } => Duration::from_secs(u64::from(adver_int.get())),
            VersionFields::V3 { max_adver_int } => max_adver_int.duration(),
        }
    }

    /// The number of bytes [`VrrpAdvert::encode`] produces.
    pub fn encoded_len(&self) -> usize {
        message_len(self.version(), self.addresses.family(), self.addresses.len())
    }

    /// Decodes the VRRP message `message` (the IP payload, after any AH header) received with
    /// the IP addresses in `pseudo`, checking version, type, length and checksum.
    ///
    /// The checksum covers the message alone for v2 (RFC 3768 §5.3.8) and the message plus the
    /// IPv4/IPv6 pseudo-header for v3 (RFC 5798 §5.2.8).
    pub fn decode(message: &[u8], pseudo: &PseudoHeader) -> Result<Self, VrrpPacketError> {
        let mut reader = Reader::new(message);
        let [version_type, vrid, priority, count] = reader.array("VRRP header")?;
        let [rsvd_or_auth, interval_low] = reader.array("VRRP header")?;
        let found_checksum = reader.u16("VRRP header")?;

        let version = match version_type >> 4 {
            2 => Version::V2,
            3 => Version::V3,
            version => return Err(VrrpPacketError::UnsupportedVersion { version }),
        };
        let packet_type = version_type & 0x0f;
        if packet_type != TYPE_ADVERTISEMENT {
            return Err(VrrpPacketError::UnknownType { packet_type });
        }
        let vrid = Vrid::new(vrid).ok_or(VrrpPacketError::ZeroVrid)?;
        let family = pseudo.family();
        if version == Version::V2 && family == AddressFamily::Ipv6 {
            return Err(VrrpPacketError::V2OverIpv6);
        }

        let expected = message_len(version, family, usize::from(count));
        if message.len() != expected {
            return Err(VrrpPacketError::LengthMismatch { count, expected, actual: message.len() });
        }
        let expected_checksum = vrrp_checksum(version, message, pseudo);
        if found_checksum != expected_checksum {
            return Err(VrrpPacketError::BadChecksum { found: found_checksum, expected: expected_checksum });
        }

        let addresses = match family {
            AddressFamily::Ipv4 => AddressList::V4(
                (0..count)
                    .map(|_| reader.array("IPv4 address").map(Ipv4Addr::from))
                    .collect::<Result<_, _>>()?,
            ),
            AddressFamily::Ipv6 => AddressList::V6(
                (0..count)
                    .map(|_| reader.array("IPv6 address").map(Ipv6Addr::from))
                    .collect::<Result<_, _>>()?,
            ),
        };
        let fields = match version {
            Version::V2 => VersionFields::V2 {
                auth_type: AuthType::from_number(rsvd_or_auth)?,
                adver_int: NonZeroU8::new(interval_low)
                    .ok_or(VrrpPacketError::ZeroAdvertInterval { version: 2 })?,
                auth_data: reader.array("authentication data")?,
            },
            Version::V3 => {
                // The high nibble is reserved: ignored on receive (RFC 5798 §5.2.6).
                let centiseconds = u16::from_be_bytes([rsvd_or_auth & 0x0f, interval_low]);
                VersionFields::V3 {
                    max_adver_int: MaxAdverInt::from_centiseconds(centiseconds)
                        .ok_or(VrrpPacketError::ZeroAdvertInterval { version: 3 })?,
                }
            }
        };
        Ok(VrrpAdvert { vrid, priority, fields, addresses })
    }

    /// Encodes the advert to be sent with the IP addresses in `pseudo` (which v3 checksums).
    pub fn encode(&self, pseudo: &PseudoHeader) -> Result<Vec<u8>, VrrpPacketError> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(pseudo, &mut out)?;
        Ok(out)
    }

    /// Appends the encoded advert to `out`; on error `out` is left unchanged.
    pub fn encode_into(&self, pseudo: &PseudoHeader, out: &mut Vec<u8>) -> Result<(), VrrpPacketError> {
        let version = self.version();
        let family = self.addresses.family();
        if family != pseudo.family() {
            return Err(VrrpPacketError::FamilyMismatch { addresses: family, header: pseudo.family() });
        }
        if version == Version::V2 && family == AddressFamily::Ipv6 {
            return Err(VrrpPacketError::V2OverIpv6);
        }
        let count = u8::try_from(self.addresses.len())
            .map_err(|_| VrrpPacketError::TooManyAddresses { count: self.addresses.len() })?;

        let start = out.len();
        out.push((version.number() << 4) | TYPE_ADVERTISEMENT);
        out.push(self.vrid.get());
        out.push(self.priority);
        out.push(count);
        match &self.fields {
            VersionFields::V2 { auth_type, adver_int, .. } => {
                out.push(auth_type.number());
                out.push(adver_int.get());
            }
            VersionFields::V3 { max_adver_int } => {
                out.extend_from_slice(&max_adver_int.centiseconds().to_be_bytes());
            }
        }
        out.extend_from_slice(&[0, 0]);
        match &self.addresses {
            AddressList::V4(list) => list.iter().for_each(|a| out.extend_from_slice(&a.octets())),
            AddressList::V6(list) => list.iter().for_each(|a| out.extend_from_slice(&a.octets())),
        }
        if let VersionFields::V2 { auth_data, .. } = &self.fields {
            out.extend_from_slice(auth_data);
        }
        let message = out.get_mut(start..).unwrap_or_default();
        let checksum = vrrp_checksum(version, message, pseudo);
        if let Some(field) = message.get_mut(6..8) {
            field.copy_from_slice(&checksum.to_be_bytes());
        }
        Ok(())
    }
}

/// Length of a VRRP message of `version` with `count` addresses of `family`.
fn message_len(version: Version, family: AddressFamily, count: usize) -> usize {
    let auth = match version {
        Version::V2 => AUTH_DATA_LEN,
        Version::V3 => 0,
    };
    HEADER_LEN + count * family.address_len() + auth
}

/// The checksum `message` should carry: its checksum field (bytes 6..8) counts as zero.
fn vrrp_checksum(version: Version, message: &[u8], pseudo: &PseudoHeader) -> u16 {
    let initial = match version {
        // RFC 3768 §5.3.8: the VRRP message only.
        Version::V2 => 0,
        // RFC 5798 §5.2.8: the pseudo-header too.
        Version::V3 => pseudo.sum(message.len()),
    };
    // Offset 6 is even, so summing around the field keeps 16-bit alignment.
    let before = message.get(..6).unwrap_or(message);
    let after = message.get(8..).unwrap_or_default();
    fold(ones_complement_add(ones_complement_add(initial, before), after))
}

/// Adds `bytes`, as big-endian 16-bit words (an odd last byte padded with zero), to `sum`.
fn ones_complement_add(sum: u64, bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(2);
    let mut sum = (&mut chunks).fold(sum, |sum, word| match word {
        [high, low] => sum + u64::from(u16::from_be_bytes([*high, *low])),
        _ => sum,
    });
    if let [last] = chunks.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

/// Folds a sum to 16 bits and complements it (RFC 1071).
fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // The loop leaves at most 16 bits.
    !(sum as u16)
}

/// The Internet checksum of `bytes` (RFC 1071), as used by the IPv4 header.
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    fold(ones_complement_add(0, bytes))
}

/// Checks the TTL (IPv4) or hop limit (IPv6) of a received advert: it must be 255, proving the
/// sender is on the link (RFC 5798 §7.1). keepalived skips this for unicast peers (whose
/// `unicast_peer { ... min_ttl max_ttl }` range applies instead).
pub fn check_hop_limit(hop_limit: u8) -> Result<(), VrrpPacketError> {
    if hop_limit == VRRP_TTL { Ok(()) } else { Err(VrrpPacketError::BadHopLimit { found: hop_limit }) }
}

/// An IPv4 header without options, as keepalived builds it with `IP_HDRINCL`:
/// `45 c0 LL LL ID ID 00 00 ff 70 CS CS SRC DST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[doc(alias = "iphdr")]
pub struct Ipv4Header {
    /// Type of service; keepalived sends [`VRRP_TOS`].
    pub tos: u8,
    /// Identification; keepalived's count up from 1 per sending router (see [`Ipv4IdCounter`]).
    pub identification: u16,
    /// Don't Fragment; keepalived does not set it.
    pub dont_fragment: bool,
    /// Time to live; [`VRRP_TTL`] on send, checked on receive with [`check_hop_limit`].
    pub ttl: u8,
    /// Protocol: [`IPPROTO_VRRP`], or [`IPPROTO_AH`] with `auth_type AH`.
    pub protocol: u8,
    /// Source address.
    pub source: Ipv4Addr,
    /// Destination address: the multicast group or a unicast peer.
    pub destination: Ipv4Addr,
}

impl Ipv4Header {
    /// The header keepalived sends a VRRP message with (RFC 5798 §5.1.1).
    pub fn vrrp(source: Ipv4Addr, destination: Ipv4Addr, identification: u16) -> Self {
        Ipv4Header {
            tos: VRRP_TOS,
            identification,
            dont_fragment: false,
            ttl: VRRP_TTL,
            protocol: IPPROTO_VRRP,
            source,
            destination,
        }
    }

    /// Decodes an IPv4 header and returns it with its payload, cut at Total Length (link-layer
    /// padding after it is ignored). Options are skipped. Fragments are refused.
    pub fn decode(packet: &[u8]) -> Result<(Self, &[u8]), VrrpPacketError> {
        let mut reader = Reader::new(packet);
        let [version_ihl, tos] = reader.array("IPv4 header")?;
        let total_length = reader.u16("IPv4 header")?;
        let identification = reader.u16("IPv4 header")?;
        let flags_fragment = reader.u16("IPv4 header")?;
        let [ttl, protocol] = reader.array("IPv4 header")?;
        let found_checksum = reader.u16("IPv4 header")?;
        let source = Ipv4Addr::from(reader.array::<4>("IPv4 header")?);
        let destination = Ipv4Addr::from(reader.array::<4>("IPv4 header")?);

        let version = version_ihl >> 4;
        if version != 4 {
            return Err(VrrpPacketError::WrongIpVersion { version, expected: 4 });
        }
        let ihl = version_ihl & 0x0f;
        if ihl < 5 {
            return Err(VrrpPacketError::BadHeaderLength { ihl });
        }
        let header_length = usize::from(ihl) * 4;
        let bad_length =
            VrrpPacketError::BadTotalLength { total_length, header_length, available: packet.len() };
        let header = packet.get(..header_length).ok_or(bad_length.clone())?;
        if usize::from(total_length) < header_length {
            return Err(bad_length);
        }
        let payload = packet.get(header_length..usize::from(total_length)).ok_or(bad_length)?;

        let expected_checksum = fold(ones_complement_add(
            ones_complement_add(0, header.get(..10).unwrap_or_default()),
            header.get(12..).unwrap_or_default(),
        ));
        if found_checksum != expected_checksum {
            return Err(VrrpPacketError::BadIpChecksum {
                found: found_checksum,
                expected: expected_checksum,
            });
        }
        let offset = flags_fragment & IPV4_FRAGMENT_OFFSET;
        let more_fragments = flags_fragment & IPV4_FLAG_MF != 0;
        if offset != 0 || more_fragments {
            return Err(VrrpPacketError::Fragment { offset, more_fragments });
        }
        let header = Ipv4Header {
            tos,
            identification,
            dont_fragment: flags_fragment & IPV4_FLAG_DF != 0,
            ttl,
            protocol,
            source,
            destination,
        };
        Ok((header, payload))
    }

    /// Appends the 20-byte header for a payload of `payload_len` bytes to `out`, with its
    /// checksum; on error `out` is left unchanged.
    pub fn encode_into(&self, payload_len: usize, out: &mut Vec<u8>) -> Result<(), VrrpPacketError> {
        let total_length = u16::try_from(IPV4_HEADER_LEN + payload_len)
            .map_err(|_| VrrpPacketError::PacketTooLong { length: payload_len })?;
        let flags: u16 = if self.dont_fragment { IPV4_FLAG_DF } else { 0 };
        let start = out.len();
        out.extend_from_slice(&[0x45, self.tos]);
        out.extend_from_slice(&total_length.to_be_bytes());
        out.extend_from_slice(&self.identification.to_be_bytes());
        out.extend_from_slice(&flags.to_be_bytes());
        out.extend_from_slice(&[self.ttl, self.protocol, 0, 0]);
        out.extend_from_slice(&self.source.octets());
        out.extend_from_slice(&self.destination.octets());
        let header = out.get_mut(start..).unwrap_or_default();
        let checksum = internet_checksum(header);
        if let Some(field) = header.get_mut(10..12) {
            field.copy_from_slice(&checksum.to_be_bytes());
        }
        Ok(())
    }
}

/// The IPv4 Identification counter keepalived's adverts show: 1, 2, 3… per sending router,
/// wrapping and skipping 0 (with `IP_HDRINCL` an ID of 0 asks the kernel to pick one).
#[derive(Debug, Clone, Default)]
pub struct Ipv4IdCounter {
    last: u16,
}

impl Ipv4IdCounter {
    /// A counter whose first ID is 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next ID.
    #[expect(clippy::should_implement_trait, reason = "an endless counter, not an iterator")]
    pub fn next(&mut self) -> u16 {
        self.last = self.last.checked_add(1).unwrap_or(1);
        self.last
    }
}

/// The IPv6 fixed header (RFC 8200 §3), without extension headers. Sockets fill it in for
/// VRRP; this exists to read captures and raw frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Header {
    /// Traffic class; keepalived sends [`VRRP_TOS`].
    pub traffic_class: u8,
    /// Flow label (20 bits); chosen by the kernel per socket.
    pub flow_label: u32,
    /// Next header: [`IPPROTO_VRRP`].
    pub next_header: u8,
    /// Hop limit; [`VRRP_TTL`] on send, checked with [`check_hop_limit`].
    pub hop_limit: u8,
    /// Source: the interface's link-local address (RFC 5798 §5.1.2.1).
    pub source: Ipv6Addr,
    /// Destination: [`VRRP_MCAST_GROUP_V6`] or a unicast peer.
    pub destination: Ipv6Addr,
}

impl Ipv6Header {
    /// Decodes an IPv6 fixed header and returns it with its payload, cut at Payload Length.
    pub fn decode(packet: &[u8]) -> Result<(Self, &[u8]), VrrpPacketError> {
        let mut reader = Reader::new(packet);
        let first = reader.u32("IPv6 header")?;
        let payload_length = reader.u16("IPv6 header")?;
        let [next_header, hop_limit] = reader.array("IPv6 header")?;
        let source = Ipv6Addr::from(reader.array::<16>("IPv6 header")?);
        let destination = Ipv6Addr::from(reader.array::<16>("IPv6 header")?);
        let version = (first >> 28) as u8;
        if version != 6 {
            return Err(VrrpPacketError::WrongIpVersion { version, expected: 6 });
        }
        let payload = reader.take("IPv6 payload", usize::from(payload_length))?;
        let header = Ipv6Header {
            traffic_class: (first >> 20) as u8,
            flow_label: first & 0x000f_ffff,
            next_header,
            hop_limit,
            source,
            destination,
        };
        Ok((header, payload))
    }

    /// Appends the 40-byte header for a payload of `payload_len` bytes to `out`.
    pub fn encode_into(&self, payload_len: usize, out: &mut Vec<u8>) -> Result<(), VrrpPacketError> {
        let payload_length =
            u16::try_from(payload_len).map_err(|_| VrrpPacketError::PacketTooLong { length: payload_len })?;
        let first = (6u32 << 28) | (u32::from(self.traffic_class) << 20) | (self.flow_label & 0x000f_ffff);
        out.extend_from_slice(&first.to_be_bytes());
        out.extend_from_slice(&payload_length.to_be_bytes());
        out.extend_from_slice(&[self.next_header, self.hop_limit]);
        out.extend_from_slice(&self.source.octets());
        out.extend_from_slice(&self.destination.octets());
        Ok(())
    }

    /// The pseudo-header for the VRRP checksum.
    pub fn pseudo_header(&self) -> PseudoHeader {
        PseudoHeader::V6 { source: self.source, destination: self.destination }
    }
}

/// The IPsec AH header keepalived puts between the IPv4 header and a VRRPv2 message with
/// `auth_type AH` (RFC 2402 §2, keepalived's `ipsec_ah_t`): next header 112, a 24-byte header,
/// SPI = the sender's IPv4 address, a sequence number and a 96-bit HMAC-MD5 ICV. This codec
/// identifies and carries it; computing and checking the ICV is the socket layer's job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[doc(alias = "ipsec_ah_t")]
pub struct AhHeader {
    /// Security Parameters Index; keepalived uses the source address.
    pub spi: u32,
    /// Sequence number (anti-replay).
    pub sequence: u32,
    /// Integrity check value, HMAC-MD5-96.
    pub icv: [u8; AH_ICV_LEN],
}

impl AhHeader {
    /// Decodes an AH header protecting VRRP and returns it with what follows.
    pub fn decode(bytes: &[u8]) -> Result<(Self, &[u8]), VrrpPacketError> {
        let mut reader = Reader::new(bytes);
        let [next_header, payload_len] = reader.array("AH header")?;
        let _reserved = reader.u16("AH header")?;
        let spi = reader.u32("AH header")?;
        let sequence = reader.u32("AH header")?;
        let icv = reader.array("AH header")?;
        if next_header != IPPROTO_VRRP {
            return Err(VrrpPacketError::AhNotVrrp { next_header });
        }
        if payload_len != AH_PAYLOAD_LEN {
            return Err(VrrpPacketError::BadAhLength { payload_len });
        }
        Ok((AhHeader { spi, sequence, icv }, reader.rest()))
    }

    /// Appends the 24-byte header to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[IPPROTO_VRRP, AH_PAYLOAD_LEN, 0, 0]);
        out.extend_from_slice(&self.spi.to_be_bytes());
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.icv);
    }
}

/// A whole IPv4 VRRP packet as an `IP_HDRINCL` raw socket sends and receives it: IPv4 header,
/// optional AH header, VRRP message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ipv4VrrpPacket {
    /// The IPv4 header. On encode its `protocol` is set from `ah`.
    pub ip: Ipv4Header,
    /// The AH header, with `auth_type AH`.
    pub ah: Option<AhHeader>,
    /// The advert.
    pub advert: VrrpAdvert,
}

impl Ipv4VrrpPacket {
    /// Decodes a packet, checking the IPv4 header checksum and the VRRP message (including its
    /// checksum, with the pseudo-header built from the IPv4 source and destination). The TTL is
    /// returned, not checked: use [`check_hop_limit`] (multicast) or the unicast peer's range.
    pub fn decode(packet: &[u8]) -> Result<Self, VrrpPacketError> {
        let (ip, payload) = Ipv4Header::decode(packet)?;
        let (ah, message) = match ip.protocol {
            IPPROTO_VRRP => (None, payload),
            IPPROTO_AH => {
                let (ah, message) = AhHeader::decode(payload)?;
                (Some(ah), message)
            }
            protocol => return Err(VrrpPacketError::UnexpectedProtocol { protocol }),
        };
        let pseudo = PseudoHeader::V4 { source: ip.source, destination: ip.destination };
        let advert = VrrpAdvert::decode(message, &pseudo)?;
        Ok(Ipv4VrrpPacket { ip, ah, advert })
    }

    /// Encodes the packet. The IPv4 protocol is [`IPPROTO_AH`] if `ah` is set, else
    /// [`IPPROTO_VRRP`]; the VRRPv3 checksum uses the IPv4 source and destination.
    pub fn encode(&self) -> Result<Vec<u8>, VrrpPacketError> {
        let pseudo = PseudoHeader::V4 { source: self.ip.source, destination: self.ip.destination };
        let ah_len = if self.ah.is_some() { AH_HEADER_LEN } else { 0 };
        let mut message = Vec::with_capacity(IPV4_HEADER_LEN + ah_len + self.advert.encoded_len());
        self.advert.encode_into(&pseudo, &mut message)?;
        let ip =
            Ipv4Header { protocol: if self.ah.is_some() { IPPROTO_AH } else { IPPROTO_VRRP }, ..self.ip };
        let mut out = Vec::with_capacity(IPV4_HEADER_LEN + ah_len + message.len());
        ip.encode_into(ah_len + message.len(), &mut out)?;
        if let Some(ah) = &self.ah {
            ah.encode_into(&mut out);
        }
        out.extend_from_slice(&message);
        Ok(out)
    }
}

/// Fuzz entry point (`fuzz/fuzz_targets/vrrp_advert.rs`): decodes `data` in two ways and, for
/// whatever decodes, checks that encoding gives it back.
///
/// 1. `data` as an IPv4 packet from a raw socket ([`Ipv4VrrpPacket`]).
/// 2. The first byte picks IPv4 (bit 0 clear) or IPv6 and whether to fix up the VRRP checksum
///    (bit 1, so that the fuzzer reaches past it); then come source and destination addresses
///    (8 or 32 bytes) for the pseudo-header, then the VRRP message.
///
/// Panics if a decoded packet does not re-encode, or re-encodes to something else: to the same
/// bytes when the VRRPv3 reserved bits were zero, to an equal value in any case.
pub fn fuzz_decode(data: &[u8]) {
    if let Ok(packet) = Ipv4VrrpPacket::decode(data) {
        let bytes = match packet.encode() {
            Ok(bytes) => bytes,
            Err(error) => panic!("decoded IPv4 packet {packet:?} does not re-encode: {error}"),
        };
        assert_eq!(Ipv4VrrpPacket::decode(&bytes).as_ref(), Ok(&packet), "IPv4 packet round trip");
    }

    let Some((&selector, rest)) = data.split_first() else { return };
    let mut reader = Reader::new(rest);
    let pseudo = if selector & 1 == 0 {
        let (Ok(source), Ok(destination)) = (reader.array::<4>(""), reader.array::<4>("")) else { return };
        PseudoHeader::V4 { source: source.into(), destination: destination.into() }
    } else {
        let (Ok(source), Ok(destination)) = (reader.array::<16>(""), reader.array::<16>("")) else { return };
        PseudoHeader::V6 { source: source.into(), destination: destination.into() }
    };
    let mut message = reader.rest().to_vec();
    if selector & 2 != 0 {
        let version = if message.first().is_some_and(|b| b >> 4 == 2) { Version::V2 } else { Version::V3 };
        let checksum = vrrp_checksum(version, &message, &pseudo);
        if let Some(field) = message.get_mut(6..8) {
            field.copy_from_slice(&checksum.to_be_bytes());
        }
    }
    let Ok(advert) = VrrpAdvert::decode(&message, &pseudo) else { return };
    let bytes = match advert.encode(&pseudo) {
        Ok(bytes) => bytes,
        Err(error) => panic!("decoded advert {advert:?} does not re-encode: {error}"),
    };
    assert_eq!(VrrpAdvert::decode(&bytes, &pseudo).as_ref(), Ok(&advert), "advert round trip");
    let reserved_bits_clear =
        advert.version() == Version::V2 || message.get(4).is_some_and(|b| b & 0xf0 == 0);
    if reserved_bits_clear {
        assert_eq!(bytes, message, "advert re-encodes to other bytes");
    }
}

/// Orders two addresses of the same family as unsigned numbers in network byte order, the
/// tie-break of RFC 5798 §6.4.3. `None` if the families differ.
pub fn compare_addresses(a: IpAddr, b: IpAddr) -> Option<Ordering> {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => Some(a.octets().cmp(&b.octets())),
        (IpAddr::V6(a), IpAddr::V6(b)) => Some(a.octets().cmp(&b.octets())),
        _ => None,
    }
}

/// A bounds-checked cursor over received bytes (rustls' `codec::Reader`): every read either
/// returns the bytes or a [`VrrpPacketError::Truncated`] naming what was being read.
#[derive(Debug)]
struct Reader<'a> {
    rest: &'a [u8],
    consumed: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes, consumed: 0 }
    }

    fn truncated(&self, what: &'static str, len: usize) -> VrrpPacketError {
        VrrpPacketError::Truncated {
            what,
            needed: self.consumed + len,
            available: self.consumed + self.rest.len(),
        }
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], VrrpPacketError> {
        let (head, tail) = self.rest.split_first_chunk::<N>().ok_or_else(|| self.truncated(what, N))?;
        self.rest = tail;
        self.consumed += N;
        Ok(*head)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, VrrpPacketError> {
        self.array(what).map(u16::from_be_bytes)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, VrrpPacketError> {
        self.array(what).map(u32::from_be_bytes)
    }

    fn take(&mut self, what: &'static str, len: usize) -> Result<&'a [u8], VrrpPacketError> {
        let (head, tail) = self.rest.split_at_checked(len).ok_or_else(|| self.truncated(what, len))?;
        self.rest = tail;
        self.consumed += len;
        Ok(head)
    }

    fn rest(&self) -> &'a [u8] {
        self.rest
    }
}

#[cfg(test)]
mod tests;
