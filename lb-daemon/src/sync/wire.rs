//! The Linux IPVS connection synchronisation protocol, version 1 (what `ip_vs_sync.c` sends
//! on UDP 224.0.0.81:8848), encoded and decoded by hand.
//!
//! A message (one datagram):
//!
//! ```text
//!  0        1        2        3
//! | 0      | syncid | size (be16, whole datagram)  |
//! | nconns | ver=1  | spare (0)                     |
//! | connection 1 ... | connection n                 |
//! ```
//!
//! A connection: `type` (bit 0: IPv6), `protocol`, `ver_size` (be16: version in the top 4 bits,
//! always 0, and the record's length without padding in the low 12), `flags` (be32), `state`
//! (be16), `cport`, `vport`, `dport` (be16), `fwmark` (be32), `timeout` (be32, seconds), then
//! `caddr`, `vaddr`, `daddr` (4 or 16 bytes each): 36 bytes for IPv4, 72 for IPv6. Options
//! follow as type, length, data (type 1: sequence data, two `init_seq, delta, previous_delta`
//! triples of be32; 2: persistence engine data; 3: its name); the next record starts at the
//! next multiple of 4. Unknown options are skipped, as the kernel does with those it does not
//! need. A message the kernel would refuse (first byte not 0, wrong version, size not the
//! datagram's, a record past the end, a record version other than 0, a zero-length option) is
//! refused here too, with a [`WireError`] saying why; nothing here panics on any input.
//!
//! Version 0 (the pre-2.6.39 format, `net.ipv4.vs.sync_version=0`) is not spoken: its first
//! byte is the connection count, so it is recognised and refused as [`WireError::Version0`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

/// The IPVS sync multicast group.
pub const DEFAULT_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
/// The IPVS sync UDP port.
pub const DEFAULT_PORT: u16 = 8848;
/// The protocol version this module speaks.
pub const VERSION: u8 = 1;
/// Length of the message header.
pub const HEADER_LEN: usize = 8;
/// Length of an IPv4 connection record without options.
pub const CONN4_LEN: usize = 36;
/// Length of an IPv6 connection record without options.
pub const CONN6_LEN: usize = 72;
/// Most connections in one message (the count is one byte).
pub const MAX_CONNS: usize = 255;

/// Option types.
mod opt {
    /// Sequence adjustment data (`ip_vs_sync_conn_options`, 24 bytes).
    pub const SEQ_DATA: u8 = 1;
}

/// Length of the sequence option's data.
const SEQ_DATA_LEN: usize = 24;

/// `ip_vs_conn` flags (`IP_VS_CONN_F_*`) the records carry.
pub mod flags {
    /// Mask of the forwarding method.
    pub const FWD_MASK: u32 = 0x0007;
    /// NAT (masquerading).
    pub const MASQ: u32 = 0x0000;
    /// Local node.
    pub const LOCALNODE: u32 = 0x0001;
    /// IP-in-IP tunnel.
    pub const TUNNEL: u32 = 0x0002;
    /// Direct routing.
    pub const DROUTE: u32 = 0x0003;
    /// Entry learnt from a sync message (the backup sets it).
    pub const SYNC: u32 = 0x0020;
    /// The client port is not known (persistence templates).
    pub const NO_CPORT: u32 = 0x0800;
    /// A persistence template, not a connection.
    pub const TEMPLATE: u32 = 0x1000;
    /// One-packet scheduling: never synced.
    pub const ONE_PACKET: u32 = 0x2000;
}

/// IPVS TCP states (`IP_VS_TCP_S_*`), as the `state` field carries them.
pub mod tcp_state {
    /// No state.
    pub const NONE: u16 = 0;
    /// Established.
    pub const ESTABLISHED: u16 = 1;
    /// SYN sent.
    pub const SYN_SENT: u16 = 2;
    /// SYN received.
    pub const SYN_RECV: u16 = 3;
    /// FIN wait.
    pub const FIN_WAIT: u16 = 4;
    /// TIME_WAIT.
    pub const TIME_WAIT: u16 = 5;
    /// Closed.
    pub const CLOSE: u16 = 6;
    /// CLOSE_WAIT.
    pub const CLOSE_WAIT: u16 = 7;
    /// LAST_ACK.
    pub const LAST_ACK: u16 = 8;
}

/// Why a datagram is not a sync message this side accepts.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than a header.
    #[error("{len} bytes, shorter than the {HEADER_LEN}-byte header")]
    Short {
        /// Its length.
        len: usize,
    },
    /// A version 0 message (first byte, the connection count, not zero).
    #[error("a version 0 message (set net.ipv4.vs.sync_version=1 on the sender)")]
    Version0,
    /// A version other than 1.
    #[error("protocol version {0}, expected 1")]
    Version(u8),
    /// The header's size is not the datagram's.
    #[error("the header says {said} bytes, the datagram has {len}")]
    Size {
        /// The header's size.
        said: u16,
        /// The datagram's.
        len: usize,
    },
    /// A connection record runs past the end.
    #[error("connection {index} runs past the end of the message")]
    Truncated {
        /// Its index.
        index: usize,
    },
    /// A connection record of a version other than 0.
    #[error("connection {index} has record version {version}")]
    RecordVersion {
        /// Its index.
        index: usize,
        /// Its version.
        version: u8,
    },
    /// A record's length is shorter than its fixed part.
    #[error("connection {index} says {size} bytes, less than its fixed part")]
    RecordSize {
        /// Its index.
        index: usize,
        /// The length it gives.
        size: usize,
    },
    /// A malformed option (zero length, past the record's end, or a bad sequence option).
    #[error("connection {index} has a malformed option")]
    Option {
        /// Its index.
        index: usize,
    },
}

/// The sequence adjustment of one direction (`struct ip_vs_seq`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seq {
    /// Where the adjustment starts.
    pub init_seq: u32,
    /// The delta after it.
    pub delta: u32,
    /// The delta before it.
    pub previous_delta: u32,
}

/// One synchronised connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conn {
    /// IP protocol (6 TCP, 17 UDP, 132 SCTP).
    pub protocol: u8,
    /// `IP_VS_CONN_F_*` ([`flags`]).
    pub flags: u32,
    /// Protocol state ([`tcp_state`] for TCP).
    pub state: u16,
    /// Client port.
    pub cport: u16,
    /// Virtual port.
    pub vport: u16,
    /// Real server (destination) port.
    pub dport: u16,
    /// Firewall mark of a fwmark service (0 otherwise).
    pub fwmark: u32,
    /// Timeout, seconds.
    pub timeout: u32,
    /// Client address.
    pub caddr: IpAddr,
    /// Virtual address.
    pub vaddr: IpAddr,
    /// Real server address.
    pub daddr: IpAddr,
    /// Sequence adjustments (incoming, outgoing), when the sender has them.
    pub seq: Option<(Seq, Seq)>,
}

impl Conn {
    /// Whether the record is IPv6 (all three addresses are; a mixed record is encoded by the
    /// client address's family, and the others as that family's unspecified address if not).
    fn ipv6(&self) -> bool {
        self.caddr.is_ipv6()
    }

    /// Its encoded length without padding.
    pub fn len(&self) -> usize {
        let fixed = if self.ipv6() { CONN6_LEN } else { CONN4_LEN };
        fixed + self.seq.map_or(0, |_| 2 + SEQ_DATA_LEN)
    }

    /// Always false: a record has a fixed part (clippy's `len` without `is_empty`).
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// A decoded message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The sync id of the sender.
    pub syncid: u8,
    /// Its connections.
    pub conns: Vec<Conn>,
}

const fn padded(len: usize) -> usize {
    (len + 3) & !3
}

/// Encodes `conns` into as few messages as fit `maxlen` bytes each (at least one record per
/// message, at most [`MAX_CONNS`]). No connection gives no message.
pub fn encode(syncid: u8, conns: &[Conn], maxlen: usize) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let mut count = 0usize;
    for conn in conns {
        let len = padded(conn.len());
        if count > 0 && (count == MAX_CONNS || current.len() + len > maxlen) {
            messages.push(finish(std::mem::take(&mut current), syncid, count));
            count = 0;
        }
        if count == 0 {
            current = vec![0; HEADER_LEN];
        }
        encode_conn(conn, &mut current);
        count += 1;
    }
    if count > 0 {
        messages.push(finish(current, syncid, count));
    }
    messages
}

fn finish(mut message: Vec<u8>, syncid: u8, count: usize) -> Vec<u8> {
    let size = u16::try_from(message.len()).unwrap_or(u16::MAX);
    message[0] = 0;
    message[1] = syncid;
    message[2..4].copy_from_slice(&size.to_be_bytes());
    message[4] = u8::try_from(count).unwrap_or(u8::MAX);
    message[5] = VERSION;
    message[6..8].copy_from_slice(&[0, 0]);
    message
}

fn put_addr(out: &mut Vec<u8>, addr: IpAddr, ipv6: bool) {
    match (addr, ipv6) {
        (IpAddr::V4(a), false) => out.extend_from_slice(&a.octets()),
        (IpAddr::V6(a), true) => out.extend_from_slice(&a.octets()),
        (_, false) => out.extend_from_slice(&[0; 4]),
        (_, true) => out.extend_from_slice(&[0; 16]),
    }
}

fn encode_conn(conn: &Conn, out: &mut Vec<u8>) {
    let ipv6 = conn.ipv6();
    let len = conn.len();
    out.push(u8::from(ipv6));
    out.push(conn.protocol);
    out.extend_from_slice(&(u16::try_from(len).unwrap_or(0) & 0x0fff).to_be_bytes());
    out.extend_from_slice(&conn.flags.to_be_bytes());
    out.extend_from_slice(&conn.state.to_be_bytes());
    out.extend_from_slice(&conn.cport.to_be_bytes());
    out.extend_from_slice(&conn.vport.to_be_bytes());
    out.extend_from_slice(&conn.dport.to_be_bytes());
    out.extend_from_slice(&conn.fwmark.to_be_bytes());
    out.extend_from_slice(&conn.timeout.to_be_bytes());
    for addr in [conn.caddr, conn.vaddr, conn.daddr] {
        put_addr(out, addr, ipv6);
    }
    if let Some((incoming, outgoing)) = conn.seq {
        out.push(opt::SEQ_DATA);
        out.push(SEQ_DATA_LEN as u8);
        for s in [incoming, outgoing] {
            for word in [s.init_seq, s.delta, s.previous_delta] {
                out.extend_from_slice(&word.to_be_bytes());
            }
        }
    }
    out.resize(out.len() + padded(len) - len, 0);
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Decodes one datagram.
pub fn decode(datagram: &[u8]) -> Result<Message, WireError> {
    if datagram.len() < HEADER_LEN {
        return Err(WireError::Short { len: datagram.len() });
    }
    if datagram[0] != 0 {
        return Err(WireError::Version0);
    }
    if datagram[5] != VERSION {
        return Err(WireError::Version(datagram[5]));
    }
    let said = be16(datagram, 2);
    if usize::from(said) != datagram.len() {
        return Err(WireError::Size { said, len: datagram.len() });
    }
    let count = usize::from(datagram[4]);
    let mut conns = Vec::with_capacity(count);
    let mut at = HEADER_LEN;
    for index in 0..count {
        let rest = datagram.get(at..).unwrap_or_default();
        if rest.len() < CONN4_LEN {
            return Err(WireError::Truncated { index });
        }
        let ver_size = be16(rest, 2);
        let version = (ver_size >> 12) as u8;
        if version != 0 {
            return Err(WireError::RecordVersion { index, version });
        }
        let size = usize::from(ver_size & 0x0fff);
        let ipv6 = rest[0] & 1 != 0;
        let fixed = if ipv6 { CONN6_LEN } else { CONN4_LEN };
        if size < fixed {
            return Err(WireError::RecordSize { index, size });
        }
        let Some(record) = rest.get(..size) else { return Err(WireError::Truncated { index }) };
        conns.push(decode_conn(record, ipv6, fixed).ok_or(WireError::Option { index })?);
        // The last record's padding may be missing: the kernel stops at the count.
        at += padded(size).min(rest.len());
    }
    Ok(Message { syncid: datagram[1], conns })
}

fn decode_conn(r: &[u8], ipv6: bool, fixed: usize) -> Option<Conn> {
    let addr = |at: usize| -> IpAddr {
        if ipv6 {
            let mut o = [0u8; 16];
            o.copy_from_slice(&r[at..at + 16]);
            IpAddr::V6(Ipv6Addr::from(o))
        } else {
            IpAddr::V4(Ipv4Addr::new(r[at], r[at + 1], r[at + 2], r[at + 3]))
        }
    };
    let width = if ipv6 { 16 } else { 4 };
    let mut conn = Conn {
        protocol: r[1],
        flags: be32(r, 4),
        state: be16(r, 8),
        cport: be16(r, 10),
        vport: be16(r, 12),
        dport: be16(r, 14),
        fwmark: be32(r, 16),
        timeout: be32(r, 20),
        caddr: addr(24),
        vaddr: addr(24 + width),
        daddr: addr(24 + 2 * width),
        seq: None,
    };
    let mut at = fixed;
    while at < r.len() {
        let kind = r[at];
        let len = usize::from(*r.get(at + 1)?);
        let data = r.get(at + 2..at + 2 + len)?;
        if len == 0 {
            return None;
        }
        if kind == opt::SEQ_DATA {
            if len != SEQ_DATA_LEN {
                return None;
            }
            let seq = |o: usize| Seq {
                init_seq: be32(data, o),
                delta: be32(data, o + 4),
                previous_delta: be32(data, o + 8),
            };
            conn.seq = Some((seq(0), seq(12)));
        }
        at += 2 + len;
    }
    Some(conn)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use crate::test_rng::Rng;

    fn conn4() -> Conn {
        Conn {
            protocol: 6,
            flags: flags::DROUTE,
            state: tcp_state::ESTABLISHED,
            cport: 40000,
            vport: 80,
            dport: 8080,
            fwmark: 0,
            timeout: 900,
            caddr: "10.0.0.1".parse().unwrap(),
            vaddr: "10.0.0.100".parse().unwrap(),
            daddr: "10.0.1.2".parse().unwrap(),
            seq: None,
        }
    }

    #[test]
    fn an_ipv4_connection_has_the_kernels_bytes() {
        let bytes = encode(7, &[conn4()], 1472);
        assert_eq!(bytes.len(), 1);
        #[rustfmt::skip]
        let expected: Vec<u8> = vec![
            0, 7, 0, 44, 1, 1, 0, 0,            // header: reserved, syncid, size 44, 1 conn, v1
            0, 6, 0, 36,                        // type IPv4, TCP, version 0 / size 36
            0, 0, 0, 3,                         // flags: DROUTE
            0, 1, 0x9c, 0x40,                   // state ESTABLISHED, cport 40000
            0, 80, 0x1f, 0x90,                  // vport 80, dport 8080
            0, 0, 0, 0,                         // fwmark
            0, 0, 3, 0x84,                      // timeout 900
            10, 0, 0, 1, 10, 0, 0, 100, 10, 0, 1, 2,
        ];
        assert_eq!(bytes[0], expected);
        assert_eq!(decode(&expected).unwrap(), Message { syncid: 7, conns: vec![conn4()] });
    }

    #[test]
    fn an_ipv6_connection_with_sequence_data_is_padded_to_32_bits() {
        let mut conn = conn4();
        conn.caddr = "2001:db8::1".parse().unwrap();
        conn.vaddr = "2001:db8::100".parse().unwrap();
        conn.daddr = "2001:db8:1::2".parse().unwrap();
        conn.flags = flags::MASQ;
        let seq = Seq { init_seq: 1, delta: 2, previous_delta: 3 };
        conn.seq = Some((seq, Seq { init_seq: 0xdead_beef, ..seq }));
        let bytes = encode(1, &[conn.clone(), conn4()], 1472).remove(0);
        // 8 header + (72 + 26 = 98, padded to 100) + 36.
        assert_eq!(bytes.len(), 8 + 100 + 36);
        assert_eq!(&bytes[8..12], &[1, 6, 0, 98]);
        assert_eq!(&bytes[8 + 72..8 + 74], &[1, 24]);
        assert_eq!(&bytes[8 + 74..8 + 78], &[0, 0, 0, 1]);
        assert_eq!(&bytes[8 + 86..8 + 90], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(&bytes[8 + 98..8 + 100], &[0, 0], "padding");
        assert_eq!(&bytes[8 + 100..8 + 104], &[0, 6, 0, 36]);
        assert_eq!(decode(&bytes).unwrap().conns, vec![conn, conn4()]);
    }

    #[test]
    fn messages_split_at_maxlen_and_at_255_connections() {
        let conns = vec![conn4(); 300];
        let split = encode(3, &conns, 8 + 36 * 10);
        assert_eq!(split.len(), 30);
        assert!(split.iter().all(|m| m.len() == 8 + 360 && m[4] == 10));
        let big = encode(3, &conns, 65_000);
        assert_eq!(big.iter().map(|m| m[4]).collect::<Vec<_>>(), vec![255, 45]);
        let total: usize = big.iter().map(|m| decode(m).unwrap().conns.len()).sum();
        assert_eq!(total, 300);
        assert!(encode(3, &[], 1500).is_empty());
    }

    #[test]
    fn malformed_messages_are_refused_with_the_reason() {
        let good = encode(7, &[conn4()], 1472).remove(0);
        assert_eq!(decode(&good[..5]), Err(WireError::Short { len: 5 }));
        let mut v0 = good.clone();
        v0[0] = 1;
        assert_eq!(decode(&v0), Err(WireError::Version0));
        let mut v2 = good.clone();
        v2[5] = 2;
        assert_eq!(decode(&v2), Err(WireError::Version(2)));
        assert_eq!(decode(&good[..40]), Err(WireError::Size { said: 44, len: 40 }));
        let mut two = good.clone();
        two[4] = 2;
        assert_eq!(decode(&two), Err(WireError::Truncated { index: 1 }));
        let mut recver = good.clone();
        recver[10] = 0x10;
        assert_eq!(decode(&recver), Err(WireError::RecordVersion { index: 0, version: 1 }));
        let mut small = good.clone();
        small[11] = 20;
        assert_eq!(decode(&small), Err(WireError::RecordSize { index: 0, size: 20 }));
        let mut long = good.clone();
        long[11] = 40;
        assert_eq!(decode(&long), Err(WireError::Truncated { index: 0 }));
        let mut zero_opt = good;
        zero_opt.extend_from_slice(&[1, 0, 0, 0]);
        zero_opt[3] = 48;
        zero_opt[11] = 40;
        assert_eq!(decode(&zero_opt), Err(WireError::Option { index: 0 }));
    }

    /// A random connection record.
    fn random_conn(rng: &mut Rng) -> Conn {
        let ipv6 = rng.next().is_multiple_of(2);
        let mut word = || rng.next() as u32;
        let (protocol, flags, state, cport, vport, dport, fwmark, timeout) = (
            word() as u8,
            word(),
            word() as u16,
            word() as u16,
            word() as u16,
            word() as u16,
            word(),
            word(),
        );
        let seq = rng.next().is_multiple_of(3).then(|| {
            let s = Seq { init_seq: rng.next() as u32, delta: 5, previous_delta: rng.next() as u32 };
            (s, Seq { delta: rng.next() as u32, ..s })
        });
        Conn {
            protocol,
            flags,
            state,
            cport,
            vport,
            dport,
            fwmark,
            timeout,
            caddr: rng.addr(ipv6),
            vaddr: rng.addr(ipv6),
            daddr: rng.addr(ipv6),
            seq,
        }
    }

    #[test]
    fn any_connections_round_trip_whatever_the_maxlen() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..500 {
            let n = (rng.next() % 600) as usize;
            let conns: Vec<Conn> = (0..n).map(|_| random_conn(&mut rng)).collect();
            let maxlen = 120 + (rng.next() % 9000) as usize;
            let syncid = rng.next() as u8;
            let mut back = Vec::new();
            for message in encode(syncid, &conns, maxlen) {
                assert!(message.len() <= maxlen.max(HEADER_LEN + 100));
                let decoded = decode(&message).unwrap();
                assert_eq!(decoded.syncid, syncid);
                back.extend(decoded.conns);
            }
            assert_eq!(back, conns);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut rng = Rng(42);
        let good = encode(9, &[conn4(), conn4()], 1472).remove(0);
        for _ in 0..20_000 {
            let mut bytes = good.clone();
            for _ in 0..(rng.next() % 6) {
                let i = (rng.next() as usize) % bytes.len();
                bytes[i] = rng.next() as u8;
            }
            bytes.truncate(HEADER_LEN + (rng.next() as usize) % bytes.len());
            let len = bytes.len() as u16;
            if rng.next().is_multiple_of(2) && bytes.len() >= 4 {
                bytes[2..4].copy_from_slice(&len.to_be_bytes());
                bytes[0] = 0;
                bytes[5] = 1;
            }
            let _ = decode(&bytes);
        }
    }
}
