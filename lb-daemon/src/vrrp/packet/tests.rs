//! Codec tests: keepalived 2.2.7 captures decoded field by field and re-encoded byte for byte,
//! the bytes quoted in issue 4, every decode error, and a random-input round trip.

use super::*;
use crate::test_rng::Rng;

/// The captures of `/work/shared/reference/vrrp-captures`, decoded in its README.md.
const CAPTURES: &[(&str, &[u8])] = &[
    ("vrrp-v2-pass.pcap", include_bytes!("../testdata/vrrp-v2-pass.pcap")),
    ("vrrp-v3.pcap", include_bytes!("../testdata/vrrp-v3.pcap")),
    ("vrrp-v3-cs.pcap", include_bytes!("../testdata/vrrp-v3-cs.pcap")),
    ("vrrp-unicast-v2.pcap", include_bytes!("../testdata/vrrp-unicast-v2.pcap")),
    ("vrrp-unicast-v3.pcap", include_bytes!("../testdata/vrrp-unicast-v3.pcap")),
    ("vrrp-v3-ipv6.pcap", include_bytes!("../testdata/vrrp-v3-ipv6.pcap")),
];

const VR5_V4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const VR6_V4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const VIP_V4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
const VR5_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x77, 0xff, 0xfe00, 1);
const VR6_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x77, 0xff, 0xfe00, 2);

fn vrid77() -> Vrid {
    Vrid::new(77).unwrap_or_else(|| unreachable!("77 is not 0"))
}

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).unwrap_or_default();
            u8::from_str_radix(text, 16).unwrap_or_else(|_| panic!("bad hex {text}"))
        })
        .collect()
}

fn mcast_v4(source: Ipv4Addr) -> PseudoHeader {
    PseudoHeader::V4 { source, destination: VRRP_MCAST_GROUP_V4 }
}

/// A classic libpcap file (microsecond, either byte order): the frames it holds.
fn pcap_frames(file: &[u8]) -> Vec<&[u8]> {
    let mut reader = Reader::new(file);
    let magic: [u8; 4] = reader.array("pcap magic").unwrap_or_else(|e| panic!("{e}"));
    let little = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] => false,
        other => panic!("not a microsecond pcap file: magic {other:02x?}"),
    };
    let u32_at = |bytes: [u8; 4]| if little { u32::from_le_bytes(bytes) } else { u32::from_be_bytes(bytes) };
    let _rest_of_header: [u8; 16] = reader.array("pcap header").unwrap_or_else(|e| panic!("{e}"));
    let link_type: [u8; 4] = reader.array("pcap header").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(u32_at(link_type), 1, "captures are Ethernet (LINKTYPE_ETHERNET)");
    let mut frames = Vec::new();
    while !reader.rest().is_empty() {
        let _timestamp: [u8; 8] = reader.array("record header").unwrap_or_else(|e| panic!("{e}"));
        let captured = u32_at(reader.array("record header").unwrap_or_else(|e| panic!("{e}")));
        let _original: [u8; 4] = reader.array("record header").unwrap_or_else(|e| panic!("{e}"));
        let len = usize::try_from(captured).unwrap_or(usize::MAX);
        frames.push(reader.take("frame", len).unwrap_or_else(|e| panic!("{e}")));
    }
    frames
}

/// What a capture frame holds, if it is VRRP.
enum Frame<'a> {
    V4(&'a [u8]),
    V6(&'a [u8]),
}

fn vrrp_frames(file: &[u8]) -> Vec<Frame<'_>> {
    pcap_frames(file)
        .into_iter()
        .filter_map(|frame| {
            let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
            let packet = frame.get(14..)?;
            match ethertype {
                0x0800 if packet.get(9) == Some(&IPPROTO_VRRP) => Some(Frame::V4(packet)),
                0x86dd if packet.get(6) == Some(&IPPROTO_VRRP) => Some(Frame::V6(packet)),
                _ => None,
            }
        })
        .collect()
}

#[test]
fn captures_decode_and_reencode_byte_for_byte() {
    let mut total = 0;
    for (name, file) in CAPTURES {
        let frames = vrrp_frames(file);
        assert!(frames.len() >= 5, "{name}: only {} VRRP frames", frames.len());
        let mut ids: std::collections::HashMap<IpAddr, u16> = std::collections::HashMap::new();
        let mut priorities = Vec::new();
        for frame in frames {
            total += 1;
            let advert = match frame {
                Frame::V4(bytes) => {
                    let packet = Ipv4VrrpPacket::decode(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert_eq!(packet.encode().as_deref(), Ok(bytes), "{name}: IPv4 packet re-encodes");
                    let ip = packet.ip;
                    assert_eq!((ip.tos, ip.ttl, ip.protocol, ip.dont_fragment), (0xc0, 255, 112, false));
                    assert_eq!(check_hop_limit(ip.ttl), Ok(()));
                    assert!(packet.ah.is_none());
                    // The ID counts up from 1 per sending router.
                    let id = ids.entry(IpAddr::V4(ip.source)).or_insert(0);
                    *id += 1;
                    assert_eq!(ip.identification, *id, "{name}: IPv4 ID of {}", ip.source);
                    assert!([VR5_V4, VR6_V4].contains(&ip.source), "{name}: source {}", ip.source);
                    if name.contains("unicast") {
                        let peer = if ip.source == VR5_V4 { VR6_V4 } else { VR5_V4 };
                        assert_eq!(ip.destination, peer, "{name}: unicast goes to the peer");
                    } else {
                        assert_eq!(ip.destination, VRRP_MCAST_GROUP_V4);
                    }
                    assert_eq!(packet.advert.addresses, AddressList::V4(vec![VIP_V4]));
                    packet.advert
                }
                Frame::V6(bytes) => {
                    let (ip, message) = Ipv6Header::decode(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
                    let mut encoded = Vec::new();
                    ip.encode_into(message.len(), &mut encoded).unwrap_or_else(|e| panic!("{name}: {e}"));
                    let advert = VrrpAdvert::decode(message, &ip.pseudo_header())
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                    advert.encode_into(&ip.pseudo_header(), &mut encoded).unwrap_or_else(|e| panic!("{e}"));
                    assert_eq!(encoded, bytes, "{name}: IPv6 packet re-encodes");
                    assert_eq!((ip.traffic_class, ip.hop_limit, ip.next_header), (0xc0, 255, 112));
                    assert!([VR5_LL, VR6_LL].contains(&ip.source), "{name}: source {}", ip.source);
                    assert_eq!(ip.destination, VRRP_MCAST_GROUP_V6);
                    let link_local = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0x77, 0x100);
                    let unique_local = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 0x100);
                    assert_eq!(advert.addresses, AddressList::V6(vec![link_local, unique_local]));
                    advert
                }
            };
            assert_eq!(advert.vrid, vrid77());
            assert!([150, 100, 0].contains(&advert.priority), "{name}: priority {}", advert.priority);
            priorities.push(advert.priority);
            match (&advert.fields, *name) {
                (VersionFields::V2 { auth_type, adver_int, auth_data }, "vrrp-v2-pass.pcap") => {
                    assert_eq!(
                        (*auth_type, adver_int.get(), auth_data),
                        (AuthType::SimpleText, 1, b"secret77")
                    );
                }
                (VersionFields::V2 { auth_type, adver_int, auth_data }, "vrrp-unicast-v2.pcap") => {
                    assert_eq!((*auth_type, adver_int.get(), auth_data), (AuthType::None, 1, &[0; 8]));
                }
                (VersionFields::V3 { max_adver_int }, "vrrp-v3-cs.pcap") => {
                    assert_eq!(max_adver_int.centiseconds(), 10);
                    assert_eq!(advert.adver_interval(), Duration::from_millis(100));
                }
                (VersionFields::V3 { max_adver_int }, _) if name.contains("v3") => {
                    assert_eq!(max_adver_int.centiseconds(), 100);
                    assert_eq!(advert.adver_interval(), Duration::from_secs(1));
                }
                (fields, _) => panic!("{name}: unexpected {fields:?}"),
            }
        }
        // vr5 advertises at 150, stops with 0; vr6 takes over at 100 and stops with 0.
        assert_eq!(priorities.first(), Some(&150), "{name}");
        assert_eq!(priorities.last(), Some(&0), "{name}");
        assert_eq!(priorities.iter().filter(|&&p| p == 0).count(), 2, "{name}: two prio-0 adverts");
    }
    assert_eq!(total, 114, "README: 114 VRRP packets in all");
}

#[test]
fn issue_bytes_v2_pass() {
    let expected = [hex("21 4d 96 01 01 01 c9 7b 0a4d0064"), b"secret77".to_vec()].concat();
    let advert = VrrpAdvert {
        vrid: vrid77(),
        priority: 150,
        fields: VersionFields::V2 {
            auth_type: AuthType::SimpleText,
            adver_int: NonZeroU8::MIN,
            auth_data: *b"secret77",
        },
        addresses: AddressList::V4(vec![VIP_V4]),
    };
    assert_eq!(advert.encode(&mcast_v4(VR5_V4)), Ok(expected.clone()));
    // v2 ignores the pseudo-header: any addresses decode it.
    let elsewhere = PseudoHeader::V4 { source: VR6_V4, destination: VR5_V4 };
    assert_eq!(VrrpAdvert::decode(&expected, &elsewhere), Ok(advert.clone()));
    // The prio-0 advert on SIGTERM: byte 2 = 0 and checksum 0x5f7c.
    let stop = VrrpAdvert { priority: PRIORITY_STOP, ..advert };
    let bytes = stop.encode(&mcast_v4(VR5_V4)).unwrap_or_default();
    assert_eq!(bytes.get(2..8), Some(&hex("00 01 01 01 5f 7c")[..]));
}

#[test]
fn issue_bytes_v3() {
    let advert = VrrpAdvert {
        vrid: vrid77(),
        priority: 150,
        fields: VersionFields::V3 {
            max_adver_int: MaxAdverInt::from_centiseconds(100).unwrap_or_else(|| panic!()),
        },
        addresses: AddressList::V4(vec![VIP_V4]),
    };
    let expected = hex("31 4d 96 01 00 64 42 bf 0a4d0064");
    assert_eq!(advert.encode(&mcast_v4(VR5_V4)), Ok(expected.clone()));
    assert_eq!(VrrpAdvert::decode(&expected, &mcast_v4(VR5_V4)), Ok(advert.clone()));
    // Unicast: the pseudo-header carries the real destination (0x1883, not 0x42bf).
    let unicast = PseudoHeader::V4 { source: VR5_V4, destination: VR6_V4 };
    assert_eq!(advert.encode(&unicast), Ok(hex("31 4d 96 01 00 64 18 83 0a4d0064")));
    // The same bytes against the wrong destination fail the checksum.
    assert_eq!(
        VrrpAdvert::decode(&expected, &unicast),
        Err(VrrpPacketError::BadChecksum { found: 0x42bf, expected: 0x1883 })
    );
    // Prio 0, and advert_int 0.1 (10 centiseconds).
    let stop = VrrpAdvert { priority: 0, ..advert.clone() };
    assert_eq!(stop.encode(&mcast_v4(VR5_V4)), Ok(hex("31 4d 00 01 00 64 d8 bf 0a 4d 00 64")));
    let fast =
        VersionFields::V3 { max_adver_int: MaxAdverInt::from_centiseconds(10).unwrap_or_else(|| panic!()) };
    let fast = VrrpAdvert { fields: fast, ..advert };
    assert_eq!(fast.encode(&mcast_v4(VR5_V4)), Ok(hex("31 4d 96 01 00 0a 43 19 0a 4d 00 64")));
    assert_eq!(
        VrrpAdvert { priority: 0, ..fast }.encode(&mcast_v4(VR5_V4)),
        Ok(hex("31 4d 00 01 00 0a d9 19 0a 4d 00 64"))
    );
}

#[test]
fn issue_bytes_v3_ipv6() {
    let message = hex("31 4d 96 02 00 64 3c 36 fe 80 00 00 00 00 00 00 00 00 00 00 00 77 01 00
         fd 77 00 00 00 00 00 00 00 00 00 00 00 00 01 00");
    let pseudo = PseudoHeader::V6 { source: VR5_LL, destination: VRRP_MCAST_GROUP_V6 };
    let advert = VrrpAdvert::decode(&message, &pseudo).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(advert.addresses.len(), 2);
    assert_eq!(advert.encode(&pseudo), Ok(message));
}

#[test]
fn ipv4_header_bytes() {
    let header = Ipv4Header::vrrp(VR5_V4, VRRP_MCAST_GROUP_V4, 1);
    let mut out = Vec::new();
    assert_eq!(header.encode_into(20, &mut out), Ok(()));
    assert_eq!(out, hex("45 c0 00 28 00 01 00 00 ff 70 d0 44 0a 4d 00 01 e0 00 00 12"));
    let mut counter = Ipv4IdCounter::new();
    assert_eq!((counter.next(), counter.next()), (1, 2));
    let mut wrapped = Ipv4IdCounter { last: u16::MAX };
    assert_eq!(wrapped.next(), 1, "skips 0, which would let the kernel choose");
}

#[test]
fn ipv4_decode_ignores_link_padding_and_options() {
    let header = Ipv4Header::vrrp(VR5_V4, VRRP_MCAST_GROUP_V4, 7);
    let advert_bytes = hex("31 4d 96 01 00 64 42 bf 0a4d0064");
    let mut packet = Vec::new();
    assert_eq!(header.encode_into(advert_bytes.len(), &mut packet), Ok(()));
    packet.extend_from_slice(&advert_bytes);
    let mut padded = packet.clone();
    padded.extend_from_slice(&[0; 14]);
    let decoded = Ipv4VrrpPacket::decode(&padded).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(decoded.encode(), Ok(packet.clone()));

    // The same packet with a 4-byte option (IHL 6): options are skipped.
    let mut with_option = hex("46 c0 00 24 00 07 00 00 ff 70 00 00 0a 4d 00 01 e0 00 00 12 01 01 01 00");
    let checksum = internet_checksum(&with_option);
    with_option.splice(10..12, checksum.to_be_bytes());
    with_option.extend_from_slice(&advert_bytes);
    assert_eq!(Ipv4VrrpPacket::decode(&with_option).map(|p| p.advert), Ok(decoded.advert));
}

#[test]
fn ah_header_round_trip() {
    let ah = AhHeader { spi: u32::from(VR5_V4), sequence: 42, icv: [0xab; AH_ICV_LEN] };
    let advert = VrrpAdvert {
        vrid: vrid77(),
        priority: 150,
        fields: VersionFields::V2 { auth_type: AuthType::IpAh, adver_int: NonZeroU8::MIN, auth_data: [0; 8] },
        addresses: AddressList::V4(vec![VIP_V4]),
    };
    let packet =
        Ipv4VrrpPacket { ip: Ipv4Header::vrrp(VR5_V4, VRRP_MCAST_GROUP_V4, 1), ah: Some(ah), advert };
    let bytes = packet.encode().unwrap_or_default();
    assert_eq!(bytes.len(), 20 + 24 + 20);
    assert_eq!(bytes.get(9), Some(&IPPROTO_AH));
    assert_eq!(bytes.get(20..24), Some(&[112, 4, 0, 0][..]));
    let decoded = Ipv4VrrpPacket::decode(&bytes).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(decoded.ip.protocol, IPPROTO_AH);
    assert_eq!(decoded.ah, packet.ah);
    assert_eq!(decoded.advert, packet.advert);

    let mut other = bytes.clone();
    if let Some(next) = other.get_mut(20) {
        *next = 6;
    }
    assert_eq!(Ipv4VrrpPacket::decode(&other), Err(VrrpPacketError::AhNotVrrp { next_header: 6 }));
    let mut long = bytes;
    if let Some(len) = long.get_mut(21) {
        *len = 5;
    }
    assert_eq!(Ipv4VrrpPacket::decode(&long), Err(VrrpPacketError::BadAhLength { payload_len: 5 }));
}

/// A valid v3 IPv4 message with its checksum recomputed after `edit`.
fn edited_v3(edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut message = hex("31 4d 96 01 00 64 42 bf 0a4d0064");
    edit(&mut message);
    let version = if message.first().is_some_and(|b| b >> 4 == 2) { Version::V2 } else { Version::V3 };
    let checksum = vrrp_checksum(version, &message, &mcast_v4(VR5_V4));
    if let Some(field) = message.get_mut(6..8) {
        field.copy_from_slice(&checksum.to_be_bytes());
    }
    message
}

fn set(message: &mut [u8], index: usize, value: u8) {
    if let Some(byte) = message.get_mut(index) {
        *byte = value;
    }
}

#[test]
fn decode_errors_say_what_was_wrong() {
    let pseudo = mcast_v4(VR5_V4);
    let decode = |message: &[u8]| VrrpAdvert::decode(message, &pseudo);
    assert_eq!(
        decode(&[0x31, 0x4d, 0x96]),
        Err(VrrpPacketError::Truncated { what: "VRRP header", needed: 4, available: 3 })
    );
    assert_eq!(
        decode(&edited_v3(|m| set(m, 0, 0x41))),
        Err(VrrpPacketError::UnsupportedVersion { version: 4 })
    );
    assert_eq!(decode(&edited_v3(|m| set(m, 0, 0x32))), Err(VrrpPacketError::UnknownType { packet_type: 2 }));
    assert_eq!(decode(&edited_v3(|m| set(m, 1, 0))), Err(VrrpPacketError::ZeroVrid));
    assert_eq!(
        decode(&edited_v3(|m| set(m, 3, 2))),
        Err(VrrpPacketError::LengthMismatch { count: 2, expected: 16, actual: 12 })
    );
    assert_eq!(
        decode(&edited_v3(|m| m.push(0))),
        Err(VrrpPacketError::LengthMismatch { count: 1, expected: 12, actual: 13 })
    );
    assert_eq!(decode(&edited_v3(|m| set(m, 5, 0))), Err(VrrpPacketError::ZeroAdvertInterval { version: 3 }));
    // Reserved bits are ignored on receive (RFC 5798 §5.2.6).
    let reserved = edited_v3(|m| set(m, 4, 0xf0));
    assert_eq!(decode(&reserved).map(|a| a.adver_interval()), Ok(Duration::from_secs(1)));
    // 12 bits of interval: 0x0fff centiseconds.
    let slowest = edited_v3(|m| m.splice(4..6, [0x0f, 0xff]).for_each(drop));
    assert_eq!(decode(&slowest).map(|a| a.adver_interval()), Ok(Duration::from_millis(40_950)));

    let mut bad = hex("31 4d 96 01 00 64 42 bf 0a4d0064");
    set(&mut bad, 7, 0xc0);
    assert_eq!(decode(&bad), Err(VrrpPacketError::BadChecksum { found: 0x42c0, expected: 0x42bf }));

    let v2 = || [hex("21 4d 96 01 01 01 c9 7b 0a4d0064"), b"secret77".to_vec()].concat();
    let v2_edited = |index: usize, value: u8| {
        edited_v3(|m| {
            *m = v2();
            set(m, index, value);
        })
    };
    assert_eq!(decode(&v2_edited(4, 3)), Err(VrrpPacketError::UnknownAuthType { auth_type: 3 }));
    assert_eq!(decode(&v2_edited(5, 0)), Err(VrrpPacketError::ZeroAdvertInterval { version: 2 }));
    let mut no_auth = v2();
    no_auth.truncate(12);
    assert_eq!(decode(&no_auth), Err(VrrpPacketError::LengthMismatch { count: 1, expected: 20, actual: 12 }));
    let v6 = PseudoHeader::V6 { source: VR5_LL, destination: VRRP_MCAST_GROUP_V6 };
    assert_eq!(VrrpAdvert::decode(&v2(), &v6), Err(VrrpPacketError::V2OverIpv6));
}

#[test]
fn encode_errors() {
    let advert = VrrpAdvert {
        vrid: vrid77(),
        priority: 100,
        fields: VersionFields::V3 {
            max_adver_int: MaxAdverInt::from_centiseconds(100).unwrap_or_else(|| panic!()),
        },
        addresses: AddressList::V4(vec![VIP_V4; 256]),
    };
    let mut out = vec![1, 2, 3];
    assert_eq!(
        advert.encode_into(&mcast_v4(VR5_V4), &mut out),
        Err(VrrpPacketError::TooManyAddresses { count: 256 })
    );
    assert_eq!(out, [1, 2, 3], "nothing written on error");
    let v6 = PseudoHeader::V6 { source: VR5_LL, destination: VRRP_MCAST_GROUP_V6 };
    assert_eq!(
        advert.encode(&v6),
        Err(VrrpPacketError::FamilyMismatch { addresses: AddressFamily::Ipv4, header: AddressFamily::Ipv6 })
    );
    let v2_v6 = VrrpAdvert {
        fields: VersionFields::V2 { auth_type: AuthType::None, adver_int: NonZeroU8::MIN, auth_data: [0; 8] },
        addresses: AddressList::V6(vec![VR5_LL]),
        ..advert
    };
    assert_eq!(v2_v6.encode(&v6), Err(VrrpPacketError::V2OverIpv6));
    assert_eq!(MaxAdverInt::from_centiseconds(0), None);
    assert_eq!(MaxAdverInt::from_centiseconds(4096), None);
    assert_eq!(Vrid::new(0), None);
}

#[test]
fn ipv4_header_errors() {
    let good =
        hex("45 c0 00 20 00 01 00 00 ff 70 d0 4c 0a 4d 00 01 e0 00 00 12 31 4d 96 01 00 64 42 bf 0a4d0064");
    assert!(Ipv4VrrpPacket::decode(&good).is_ok());
    let with = |index: usize, value: u8| {
        let mut packet = good.clone();
        set(&mut packet, index, value);
        packet
    };
    assert_eq!(
        Ipv4Header::decode(&good[..19]).map(|_| ()),
        Err(VrrpPacketError::Truncated { what: "IPv4 header", needed: 20, available: 19 })
    );
    assert_eq!(
        Ipv4VrrpPacket::decode(&with(0, 0x65)),
        Err(VrrpPacketError::WrongIpVersion { version: 6, expected: 4 })
    );
    assert_eq!(Ipv4VrrpPacket::decode(&with(0, 0x44)), Err(VrrpPacketError::BadHeaderLength { ihl: 4 }));
    assert_eq!(
        Ipv4VrrpPacket::decode(&with(3, 0x21)),
        Err(VrrpPacketError::BadTotalLength { total_length: 0x21, header_length: 20, available: 32 })
    );
    assert_eq!(
        Ipv4VrrpPacket::decode(&with(3, 0x10)),
        Err(VrrpPacketError::BadTotalLength { total_length: 0x10, header_length: 20, available: 32 })
    );
    assert_eq!(
        Ipv4VrrpPacket::decode(&with(11, 0x4d)),
        Err(VrrpPacketError::BadIpChecksum { found: 0xd04d, expected: 0xd04c })
    );
    let fix = |mut packet: Vec<u8>| {
        packet.splice(10..12, [0, 0]);
        let checksum = internet_checksum(packet.get(..20).unwrap_or_default());
        packet.splice(10..12, checksum.to_be_bytes());
        packet
    };
    assert_eq!(
        Ipv4VrrpPacket::decode(&fix(with(6, 0x20))),
        Err(VrrpPacketError::Fragment { offset: 0, more_fragments: true })
    );
    assert_eq!(
        Ipv4VrrpPacket::decode(&fix(with(9, 17))),
        Err(VrrpPacketError::UnexpectedProtocol { protocol: 17 })
    );
    assert_eq!(check_hop_limit(254), Err(VrrpPacketError::BadHopLimit { found: 254 }));
    let df = Ipv4VrrpPacket::decode(&fix(with(6, 0x40))).map(|p| p.ip.dont_fragment);
    assert_eq!(df, Ok(true));
}

#[test]
fn address_order_is_network_order() {
    let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    let b = IpAddr::V4(Ipv4Addr::new(9, 255, 255, 255));
    assert_eq!(compare_addresses(a, b), Some(Ordering::Greater));
    assert_eq!(compare_addresses(IpAddr::V6(VR5_LL), IpAddr::V6(VR6_LL)), Some(Ordering::Less));
    assert_eq!(compare_addresses(a, IpAddr::V6(VR5_LL)), None);
}

#[test]
fn random_inputs_never_panic_and_round_trip() {
    let mut rng = Rng(0x5eed_1bd0_0000_0001);
    let seeds: Vec<Vec<u8>> = CAPTURES
        .iter()
        .flat_map(|(_, file)| vrrp_frames(file))
        .map(|frame| match frame {
            Frame::V4(bytes) => bytes.to_vec(),
            Frame::V6(bytes) => {
                // Selector 3: IPv6, fix the checksum; then the addresses and the message.
                let mut input = vec![3];
                input.extend_from_slice(bytes.get(8..).unwrap_or_default());
                input
            }
        })
        .collect();
    for round in 0..20_000 {
        let mut input = match seeds.get(round % seeds.len()) {
            Some(seed) if round % 3 != 0 => seed.clone(),
            _ => (0..rng.next() % 80).map(|_| rng.byte()).collect(),
        };
        for _ in 0..rng.next() % 4 {
            if input.is_empty() {
                break;
            }
            let index = (rng.next() % input.len() as u64) as usize;
            set(&mut input, index, rng.byte());
        }
        if rng.next().is_multiple_of(5) {
            input.truncate((rng.next() % (input.len() as u64 + 1)) as usize);
        }
        fuzz_decode(&input);
        // Also as a checksum-fixed IPv4 message behind a selector byte.
        let mut selected = vec![2, 10, 77, 0, 1, 224, 0, 0, 18];
        selected.extend_from_slice(input.get(20..).unwrap_or_default());
        fuzz_decode(&selected);
    }
}

/// A random advert that the codec must carry: either version, either family (v3 for IPv6),
/// any priority and interval, 1 to 16 addresses, v2 authentication of each type.
fn random_advert(rng: &mut Rng) -> VrrpAdvert {
    let vrid = Vrid::new(rng.byte().max(1)).unwrap_or_else(|| unreachable!("not 0"));
    let ipv6 = rng.next().is_multiple_of(3);
    let count = 1 + (rng.next() % 16) as usize;
    let addresses = if ipv6 {
        AddressList::V6(
            (0..count)
                .map(|_| Ipv6Addr::from(u128::from(rng.next()) << 64 | u128::from(rng.next())))
                .collect(),
        )
    } else {
        AddressList::V4((0..count).map(|_| Ipv4Addr::from(rng.next() as u32)).collect())
    };
    let fields = if ipv6 || rng.next().is_multiple_of(2) {
        let centiseconds = 1 + (rng.next() % 4095) as u16;
        VersionFields::V3 {
            max_adver_int: MaxAdverInt::from_centiseconds(centiseconds)
                .unwrap_or_else(|| unreachable!("in range")),
        }
    } else {
        let auth_type = [AuthType::None, AuthType::SimpleText, AuthType::IpAh][(rng.next() % 3) as usize];
        let auth_data = match auth_type {
            AuthType::SimpleText => std::array::from_fn(|_| rng.byte()),
            _ => [0; 8],
        };
        let adver_int = std::num::NonZeroU8::new(rng.byte().max(1)).unwrap_or_else(|| unreachable!("not 0"));
        VersionFields::V2 { auth_type, adver_int, auth_data }
    };
    VrrpAdvert { vrid, priority: rng.byte(), fields, addresses }
}

#[test]
fn random_adverts_encode_decode_and_encode_to_the_same_bytes() {
    let mut rng = Rng(0x5eed_1bd0_0000_0002);
    for _ in 0..20_000 {
        let advert = random_advert(&mut rng);
        let pseudo = match advert.addresses {
            AddressList::V4(_) => PseudoHeader::V4 {
                source: Ipv4Addr::from(rng.next() as u32),
                destination: VRRP_MCAST_GROUP_V4,
            },
            AddressList::V6(_) => PseudoHeader::V6 {
                source: VR5_LL,
                destination: Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12),
            },
        };
        let bytes = advert.encode(&pseudo).unwrap_or_else(|e| panic!("{advert:?} does not encode: {e}"));
        let decoded = VrrpAdvert::decode(&bytes, &pseudo).unwrap_or_else(|e| panic!("{advert:?}: {e}"));
        assert_eq!(decoded, advert);
        assert_eq!(decoded.encode(&pseudo).as_deref(), Ok(bytes.as_slice()), "{advert:?}");
        // And what decodes goes through the fuzz target's checks too.
        let mut input = vec![if advert.addresses.family() == AddressFamily::Ipv6 { 1 } else { 0 }];
        match pseudo {
            PseudoHeader::V4 { source, destination } => {
                input.extend_from_slice(&source.octets());
                input.extend_from_slice(&destination.octets());
            }
            PseudoHeader::V6 { source, destination } => {
                input.extend_from_slice(&source.octets());
                input.extend_from_slice(&destination.octets());
            }
        }
        input.extend_from_slice(&bytes);
        fuzz_decode(&input);
    }
}
