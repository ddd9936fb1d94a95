//! `auth_type AH`: the IPsec Authentication Header keepalived puts in front of VRRPv2 adverts
//! over IPv4 (RFC 2402 with HMAC-MD5-96, RFC 2403), computed as keepalived 2.2.7 does it
//! (`vrrp.c`: `vrrp_update_pkt`, `vrrp_in_chk_ipsecah`):
//! - the ICV is HMAC-MD5 keyed with the 8 bytes of `auth_pass` (zero-padded), over the whole
//!   IPv4 packet with TOS, flags/fragment offset, header checksum and the ICV itself zeroed, and
//!   with the TTL zeroed too for unicast instances only; truncated to 96 bits;
//! - the SPI is the sender's IPv4 address;
//! - one sequence number per instance, shared by what it sends and what it accepts: a master
//!   counts up from the highest number it accepted as backup, a backup drops an advert whose
//!   number is not above the last one accepted (anti-replay).
//!
//! The header codec is [`super::packet::AhHeader`]; this module only signs and verifies.

use hmac::{Hmac, Mac as _};
use md5::Md5;

use super::packet::{AH_ICV_LEN, AUTH_DATA_LEN, IPV4_HEADER_LEN};

/// Where the ICV sits in the AH header: after next header, length, reserved, SPI, sequence.
const ICV_OFFSET: usize = 12;
/// IPv4 header bytes AH treats as mutable (RFC 2402 §3.3.3.1.1.1): TOS, flags and fragment
/// offset, header checksum; the TTL only for unicast, as keepalived does.
const TOS: usize = 1;
const FRAGMENT: std::ops::Range<usize> = 6..8;
const TTL: usize = 8;
const CHECKSUM: std::ops::Range<usize> = 10..12;

/// The ICV of the IPv4 packet `packet` (IP header, AH header, VRRP message), computed with its
/// mutable fields and its ICV zeroed.
pub fn icv(key: &[u8; AUTH_DATA_LEN], packet: &[u8], unicast: bool) -> [u8; AH_ICV_LEN] {
    let mut copy = packet.to_vec();
    let header_len = copy.first().map_or(IPV4_HEADER_LEN, |b| usize::from(b & 0x0f) * 4);
    if let Some(b) = copy.get_mut(TOS) {
        *b = 0;
    }
    if unicast && let Some(b) = copy.get_mut(TTL) {
        *b = 0;
    }
    for range in [FRAGMENT, CHECKSUM, header_len + ICV_OFFSET..header_len + ICV_OFFSET + AH_ICV_LEN] {
        if let Some(bytes) = copy.get_mut(range) {
            bytes.fill(0);
        }
    }
    let mut mac = <Hmac<Md5>>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    mac.update(&copy);
    let digest = mac.finalize().into_bytes();
    let mut out = [0; AH_ICV_LEN];
    out.copy_from_slice(digest.get(..AH_ICV_LEN).unwrap_or_default());
    out
}

/// Writes the ICV into `packet`, an encoded IPv4 packet whose AH header has its SPI and
/// sequence number set.
pub fn sign(key: &[u8; AUTH_DATA_LEN], packet: &mut [u8], unicast: bool) {
    let value = icv(key, packet, unicast);
    let header_len = packet.first().map_or(IPV4_HEADER_LEN, |b| usize::from(b & 0x0f) * 4);
    if let Some(field) = packet.get_mut(header_len + ICV_OFFSET..header_len + ICV_OFFSET + AH_ICV_LEN) {
        field.copy_from_slice(&value);
    }
}

/// Whether the ICV `received` is that of `packet` (as received, ICV included).
pub fn verify(key: &[u8; AUTH_DATA_LEN], packet: &[u8], unicast: bool, received: &[u8; AH_ICV_LEN]) -> bool {
    let expected = icv(key, packet, unicast);
    expected.iter().zip(received).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// An instance's AH sequence number (keepalived's `ipsecah_counter`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sequence {
    last: u32,
}

impl Sequence {
    /// The number for the next advert sent. keepalived stops counting at 0xfffffffe (after
    /// some 136 years of one advert a second).
    #[expect(clippy::should_implement_trait, reason = "a counter that stops, not an iterator")]
    pub fn next(&mut self) -> u32 {
        if self.last < 0xffff_fffe {
            self.last += 1;
        }
        self.last
    }

    /// Accepts `received` if it is above the last number accepted or sent, and remembers it.
    pub fn accept(&mut self, received: u32) -> bool {
        if received > self.last {
            self.last = received;
            true
        } else {
            false
        }
    }

    /// The last number accepted or sent.
    pub fn last(&self) -> u32 {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::vrrp::packet::{AhHeader, Ipv4Header, Ipv4VrrpPacket, PseudoHeader, VrrpAdvert};

    #[test]
    fn hmac_md5_matches_rfc_2202() {
        // RFC 2202 §2, test case 2 ("Jefe"), the key shorter than a block as auth_pass is.
        let mut mac = <Hmac<Md5>>::new_from_slice(b"Jefe").unwrap_or_else(|_| unreachable!());
        mac.update(b"what do ya want for nothing?");
        let digest: Vec<u8> = mac.finalize().into_bytes().to_vec();
        assert_eq!(
            digest,
            [0x75, 0x0c, 0x78, 0x3e, 0x6a, 0xb0, 0xb5, 0x03, 0xea, 0xa8, 0x6e, 0x31, 0x0a, 0x5d, 0xb7, 0x38]
        );
    }

    /// A VRRPv2 advert with auth type AH (VRID 51, priority 100, VIP 10.0.0.100) in keepalived's
    /// IPv4 and AH headers, ICV zero.
    fn packet(tos: u8, ttl: u8, sequence: u32) -> Vec<u8> {
        let (source, group) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(224, 0, 0, 18));
        let mut message =
            vec![0x21, 0x33, 0x64, 0x01, 0x02, 0x01, 0x00, 0x00, 10, 0, 0, 100, 0, 0, 0, 0, 0, 0, 0, 0];
        let sum = crate::vrrp::packet::internet_checksum(&message);
        message[6..8].copy_from_slice(&sum.to_be_bytes());
        let advert = VrrpAdvert::decode(&message, &PseudoHeader::V4 { source, destination: group })
            .unwrap_or_else(|e| panic!("{e}"));
        let ip = Ipv4Header { tos, ttl, ..Ipv4Header::vrrp(source, group, 7) };
        let ah = AhHeader { spi: u32::from(source), sequence, icv: [0; AH_ICV_LEN] };
        Ipv4VrrpPacket { ip, ah: Some(ah), advert }.encode().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn signed_packets_verify_whatever_their_mutable_fields() {
        let key = *b"secret77";
        let mut sent = packet(0xc0, 255, 1);
        sign(&key, &mut sent, false);
        let (_, payload) = Ipv4Header::decode(&sent).unwrap_or_else(|e| panic!("{e}"));
        let (ah, _) = AhHeader::decode(payload).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(ah.icv, [0; AH_ICV_LEN]);
        assert!(verify(&key, &sent, false, &ah.icv));

        // A router on the way may change TOS (and, for unicast, the TTL): still valid.
        let mut remarked = packet(0x00, 255, 1);
        sign(&key, &mut remarked, false);
        assert_eq!(icv(&key, &remarked, false), ah.icv, "TOS is not covered");
        let routed = packet(0xc0, 250, 1);
        assert!(!verify(&key, &routed, false, &ah.icv), "multicast: the TTL is covered");
        let mut unicast = packet(0xc0, 255, 1);
        sign(&key, &mut unicast, true);
        let value = icv(&key, &unicast, true);
        assert!(verify(&key, &packet(0xc0, 250, 1), true, &value), "unicast: the TTL is not covered");

        // The wrong key, or any other change, fails.
        assert!(!verify(b"secret78", &sent, false, &ah.icv));
        assert!(!verify(&key, &packet(0xc0, 255, 2), false, &ah.icv));
    }

    #[test]
    fn sequence_numbers_count_up_and_refuse_replays() {
        let mut sequence = Sequence::default();
        assert_eq!((sequence.next(), sequence.next()), (1, 2));
        assert!(!sequence.accept(2), "not above the last one");
        assert!(sequence.accept(40));
        assert_eq!(sequence.next(), 41, "a new master continues from what it heard");
        let mut end = Sequence { last: 0xffff_fffe };
        assert_eq!(end.next(), 0xffff_fffe);
    }
}
