//! The BFD control packet (RFC 5880 §4.1), without authentication: decoding into a type that
//! holds only what §6.8.6 accepts, and encoding.
//!
//! ```text
//!  0                   1                   2                   3
//! |Vers |  Diag   |Sta|P|F|C|A|D|M|  Detect Mult  |    Length     |
//! |                       My Discriminator                        |
//! |                      Your Discriminator                       |
//! |                    Desired Min TX Interval                    |
//! |                   Required Min RX Interval                    |
//! |                 Required Min Echo RX Interval                 |
//! ```

use std::time::Duration;

use thiserror::Error;

/// The length of a control packet without authentication.
pub const LEN: usize = 24;
/// The protocol version.
const VERSION: u8 = 1;

/// A session state as carried on the wire (RFC 5880 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Administratively down.
    AdminDown = 0,
    /// Down.
    Down = 1,
    /// Init: the remote is heard, the three-way handshake is under way.
    Init = 2,
    /// Up.
    Up = 3,
}

impl State {
    fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            0 => Self::AdminDown,
            1 => Self::Down,
            2 => Self::Init,
            _ => Self::Up,
        }
    }

    /// As keepalived logs it.
    pub fn name(self) -> &'static str {
        match self {
            Self::AdminDown => "AdminDown",
            Self::Down => "Down",
            Self::Init => "Init",
            Self::Up => "Up",
        }
    }
}

/// The diagnostic code (RFC 5880 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Diag {
    /// No diagnostic.
    None,
    /// Control Detection Time Expired.
    TimeExpired,
    /// Echo Function Failed.
    EchoFailed,
    /// Neighbor Signaled Session Down.
    NeighborDown,
    /// Administratively Down.
    AdminDown,
    /// Any other code (forwarding plane reset, path down, ...), kept as received.
    Other(u8),
}

impl Diag {
    fn from_bits(bits: u8) -> Self {
        match bits & 0x1f {
            0 => Self::None,
            1 => Self::TimeExpired,
            2 => Self::EchoFailed,
            3 => Self::NeighborDown,
            7 => Self::AdminDown,
            other => Self::Other(other),
        }
    }

    /// RFC 5880's name of the code, as keepalived's data dump writes it.
    pub fn description(self) -> &'static str {
        match self.bits() {
            0 => "No Diagnostic",
            1 => "Control Detection Time Expired",
            2 => "Echo Function Failed",
            3 => "Neighbor Signaled Session Down",
            4 => "Forwarding Plane Reset",
            5 => "Path Down",
            6 => "Concatenated Path Down",
            7 => "Administratively Down",
            8 => "Reverse Concatenated Path Down",
            _ => "Unknown",
        }
    }

    fn bits(self) -> u8 {
        match self {
            Self::None => 0,
            Self::TimeExpired => 1,
            Self::EchoFailed => 2,
            Self::NeighborDown => 3,
            Self::AdminDown => 7,
            Self::Other(other) => other & 0x1f,
        }
    }
}

/// A control packet that passed the checks of RFC 5880 §6.8.6 that need no session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlPacket {
    /// The sender's diagnostic.
    pub diag: Diag,
    /// The sender's state.
    pub state: State,
    /// Poll.
    pub poll: bool,
    /// Final.
    pub fin: bool,
    /// Control plane independent.
    pub cpi: bool,
    /// Demand mode.
    pub demand: bool,
    /// Detect Mult (non-zero).
    pub detect_mult: u8,
    /// My Discriminator (non-zero).
    pub my_discr: u32,
    /// Your Discriminator (zero only in Down / AdminDown).
    pub your_discr: u32,
    /// Desired Min TX Interval.
    pub desired_min_tx: Duration,
    /// Required Min RX Interval.
    pub required_min_rx: Duration,
    /// Required Min Echo RX Interval.
    pub required_min_echo_rx: Duration,
}

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PacketError {
    /// Fewer bytes than a packet, or than its Length field says.
    #[error("truncated packet ({0} bytes)")]
    Truncated(usize),
    /// Not version 1.
    #[error("unsupported version {0}")]
    Version(u8),
    /// Length below 24 (26 with authentication).
    #[error("bad length {0}")]
    Length(u8),
    /// Authentication present: no bfd_instance configures it.
    #[error("authentication present but not configured")]
    Authentication,
    /// Detect Mult zero.
    #[error("detect multiplier zero")]
    DetectMult,
    /// Multipoint bit set.
    #[error("multipoint bit set")]
    Multipoint,
    /// My Discriminator zero.
    #[error("my discriminator zero")]
    MyDiscriminator,
    /// Your Discriminator zero in a state other than Down or AdminDown.
    #[error("your discriminator zero in state {0}")]
    YourDiscriminator(&'static str),
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn word(bytes: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&bytes[at..at + 4]);
    u32::from_be_bytes(w)
}

impl ControlPacket {
    /// Decodes a UDP payload.
    pub fn decode(bytes: &[u8]) -> Result<Self, PacketError> {
        if bytes.len() < LEN {
            return Err(PacketError::Truncated(bytes.len()));
        }
        let version = bytes[0] >> 5;
        if version != VERSION {
            return Err(PacketError::Version(version));
        }
        let flags = bytes[1];
        let auth = flags & 0x04 != 0;
        let length = bytes[3];
        if usize::from(length) < LEN || (auth && length < 26) {
            return Err(PacketError::Length(length));
        }
        if usize::from(length) > bytes.len() {
            return Err(PacketError::Truncated(bytes.len()));
        }
        if auth {
            return Err(PacketError::Authentication);
        }
        let state = State::from_bits(flags >> 6);
        let packet = ControlPacket {
            diag: Diag::from_bits(bytes[0]),
            state,
            poll: flags & 0x20 != 0,
            fin: flags & 0x10 != 0,
            cpi: flags & 0x08 != 0,
            demand: flags & 0x02 != 0,
            detect_mult: bytes[2],
            my_discr: word(bytes, 4),
            your_discr: word(bytes, 8),
            desired_min_tx: Duration::from_micros(u64::from(word(bytes, 12))),
            required_min_rx: Duration::from_micros(u64::from(word(bytes, 16))),
            required_min_echo_rx: Duration::from_micros(u64::from(word(bytes, 20))),
        };
        if packet.detect_mult == 0 {
            return Err(PacketError::DetectMult);
        }
        if flags & 0x01 != 0 {
            return Err(PacketError::Multipoint);
        }
        if packet.my_discr == 0 {
            return Err(PacketError::MyDiscriminator);
        }
        if packet.your_discr == 0 && !matches!(state, State::Down | State::AdminDown) {
            return Err(PacketError::YourDiscriminator(state.name()));
        }
        Ok(packet)
    }

    /// Encodes it.
    pub fn encode(&self) -> [u8; LEN] {
        let mut out = [0u8; LEN];
        out[0] = (VERSION << 5) | self.diag.bits();
        out[1] = ((self.state as u8) << 6)
            | (u8::from(self.poll) << 5)
            | (u8::from(self.fin) << 4)
            | (u8::from(self.cpi) << 3)
            | (u8::from(self.demand) << 1);
        out[2] = self.detect_mult;
        out[3] = LEN as u8;
        out[4..8].copy_from_slice(&self.my_discr.to_be_bytes());
        out[8..12].copy_from_slice(&self.your_discr.to_be_bytes());
        out[12..16].copy_from_slice(&micros(self.desired_min_tx).to_be_bytes());
        out[16..20].copy_from_slice(&micros(self.required_min_rx).to_be_bytes());
        out[20..24].copy_from_slice(&micros(self.required_min_echo_rx).to_be_bytes());
        out
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn sample() -> ControlPacket {
        ControlPacket {
            diag: Diag::NeighborDown,
            state: State::Init,
            poll: true,
            fin: false,
            cpi: false,
            demand: false,
            detect_mult: 5,
            my_discr: 0x0102_0304,
            your_discr: 0xa0b0_c0d0,
            desired_min_tx: Duration::from_millis(10),
            required_min_rx: Duration::from_micros(2500),
            required_min_echo_rx: Duration::ZERO,
        }
    }

    #[test]
    fn a_packet_round_trips_with_rfc_5880_bytes() {
        let bytes = sample().encode();
        assert_eq!(
            bytes,
            [
                0x23, 0xa0, 5, 24, 1, 2, 3, 4, 0xa0, 0xb0, 0xc0, 0xd0, 0, 0, 0x27, 0x10, 0, 0, 0x09, 0xc4, 0,
                0, 0, 0
            ]
        );
        assert_eq!(ControlPacket::decode(&bytes).unwrap(), sample());
        // Flags one by one.
        for (poll, fin, cpi, demand) in [(false, true, false, false), (false, false, true, true)] {
            let p = ControlPacket { poll, fin, cpi, demand, state: State::Up, ..sample() };
            assert_eq!(ControlPacket::decode(&p.encode()).unwrap(), p);
        }
        // Trailing bytes beyond Length are ignored.
        let mut longer = bytes.to_vec();
        longer.extend_from_slice(&[9, 9]);
        assert_eq!(ControlPacket::decode(&longer).unwrap(), sample());
    }

    #[test]
    fn malformed_packets_are_refused_with_the_reason() {
        let good = sample().encode();
        let with = |i: usize, v: u8| {
            let mut b = good;
            b[i] = v;
            ControlPacket::decode(&b)
        };
        assert_eq!(ControlPacket::decode(&good[..23]), Err(PacketError::Truncated(23)));
        assert_eq!(with(0, 0x43), Err(PacketError::Version(2)));
        assert_eq!(with(3, 20), Err(PacketError::Length(20)));
        assert_eq!(with(3, 30), Err(PacketError::Truncated(24)));
        assert_eq!(with(1, 0xa4), Err(PacketError::Length(24)));
        assert_eq!(with(2, 0), Err(PacketError::DetectMult));
        assert_eq!(with(1, 0xa1), Err(PacketError::Multipoint));
        let mut zero_my = good;
        zero_my[4..8].fill(0);
        assert_eq!(ControlPacket::decode(&zero_my), Err(PacketError::MyDiscriminator));
        let mut zero_your = good;
        zero_your[8..12].fill(0);
        assert_eq!(ControlPacket::decode(&zero_your), Err(PacketError::YourDiscriminator("Init")));
        zero_your[1] = 0x40; // Down
        assert_eq!(ControlPacket::decode(&zero_your).unwrap().state, State::Down);
    }
}
