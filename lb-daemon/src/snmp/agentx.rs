//! The AgentX wire format (RFC 2741 §6): the PDUs a subagent sends to and receives from its
//! master agent (net-snmp's snmpd), with no I/O.
//!
//! A PDU is a 20-byte header (§6.1) and a payload whose integers are in the byte order the
//! header's NETWORK_BYTE_ORDER flag says: the master answers in the order the subagent chose,
//! so lbd sends in network byte order, and decodes either (keepalived, through net-snmp, sends
//! little-endian on x86). Anything malformed decodes to an [`AgentxError`], never a panic.

use std::fmt;

/// `h.flags` bits (RFC 2741 §6.1).
pub mod flags {
    /// `INSTANCE_REGISTRATION`.
    pub const INSTANCE_REGISTRATION: u8 = 0x01;
    /// `NON_DEFAULT_CONTEXT`: a context octet string starts the payload.
    pub const NON_DEFAULT_CONTEXT: u8 = 0x08;
    /// `NETWORK_BYTE_ORDER`: the payload's integers are big-endian.
    pub const NETWORK_BYTE_ORDER: u8 = 0x10;
}

/// The header's length.
pub const HEADER_LEN: usize = 20;

/// The largest payload lbd accepts (a walk's GetBulk is a few hundred bytes; snmpd caps its
/// own PDUs far lower). Guards the read buffer against a bogus length.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// Why bytes are not an AgentX PDU.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentxError {
    /// Fewer bytes than the structure needs.
    #[error("agentx: truncated {what}")]
    Truncated {
        /// What was being read.
        what: &'static str,
    },
    /// `h.version` is not 1.
    #[error("agentx: version {0}, expected 1")]
    Version(u8),
    /// The payload length is larger than [`MAX_PAYLOAD`] or not a multiple of 4.
    #[error("agentx: payload length {0} is invalid")]
    PayloadLength(u32),
    /// An OID with more than 128 sub-identifiers (§5.1).
    #[error("agentx: OID with {0} sub-identifiers (at most 128)")]
    OidTooLong(u8),
    /// A varbind of a type RFC 2741 §5.4 does not define.
    #[error("agentx: unknown varbind type {0}")]
    VarbindType(u16),
    /// An octet string longer than the payload.
    #[error("agentx: octet string of {0} bytes overruns the PDU")]
    StringLength(u32),
}

/// PDU types (RFC 2741 §6.1 `h.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PduType {
    Open = 1,
    Close = 2,
    Register = 3,
    Unregister = 4,
    Get = 5,
    GetNext = 6,
    GetBulk = 7,
    TestSet = 8,
    CommitSet = 9,
    UndoSet = 10,
    CleanupSet = 11,
    Notify = 12,
    Ping = 13,
    IndexAllocate = 14,
    IndexDeallocate = 15,
    AddAgentCaps = 16,
    RemoveAgentCaps = 17,
    Response = 18,
}

impl PduType {
    fn from_u8(v: u8) -> Option<Self> {
        use PduType::*;
        [
            Open,
            Close,
            Register,
            Unregister,
            Get,
            GetNext,
            GetBulk,
            TestSet,
            CommitSet,
            UndoSet,
            CleanupSet,
            Notify,
            Ping,
            IndexAllocate,
            IndexDeallocate,
            AddAgentCaps,
            RemoveAgentCaps,
            Response,
        ]
        .into_iter()
        .find(|t| *t as u8 == v)
    }
}

/// `res.error` values lbd uses (RFC 2741 §6.2.16, and SNMP's error-status for sets).
pub mod error_status {
    /// No error.
    pub const NO_ERROR: u16 = 0;
    /// The object cannot be written (every lbd object is read-only).
    pub const NOT_WRITABLE: u16 = 17;
    /// An AgentX PDU the subagent does not handle.
    pub const PROCESSING_ERROR: u16 = 268;
}

/// `Close` reasons (RFC 2741 §6.2.2).
pub mod close_reason {
    /// The subagent is shutting down.
    pub const SHUTDOWN: u8 = 5;
}

/// An object identifier.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Oid(pub Vec<u32>);

impl Oid {
    /// From its sub-identifiers.
    pub fn new(subids: &[u32]) -> Self {
        Self(subids.to_vec())
    }

    /// This OID followed by `more`.
    pub fn child(&self, more: &[u32]) -> Self {
        let mut v = self.0.clone();
        v.extend_from_slice(more);
        Self(v)
    }

    /// Whether `self` lies under `prefix` (or is it).
    pub fn starts_with(&self, prefix: &Oid) -> bool {
        self.0.starts_with(&prefix.0)
    }

    /// The null OID (no sub-identifiers).
    pub fn is_null(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.0 {
            write!(f, ".{s}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Oid({self})")
    }
}

/// A varbind's value (RFC 2741 §5.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Integer(i32),
    OctetString(Vec<u8>),
    Null,
    ObjectIdentifier(Oid),
    IpAddress([u8; 4]),
    Counter32(u32),
    Gauge32(u32),
    TimeTicks(u32),
    Opaque(Vec<u8>),
    Counter64(u64),
    NoSuchObject,
    NoSuchInstance,
    EndOfMibView,
}

impl Value {
    fn type_code(&self) -> u16 {
        match self {
            Self::Integer(_) => 2,
            Self::OctetString(_) => 4,
            Self::Null => 5,
            Self::ObjectIdentifier(_) => 6,
            Self::IpAddress(_) => 64,
            Self::Counter32(_) => 65,
            Self::Gauge32(_) => 66,
            Self::TimeTicks(_) => 67,
            Self::Opaque(_) => 68,
            Self::Counter64(_) => 70,
            Self::NoSuchObject => 128,
            Self::NoSuchInstance => 129,
            Self::EndOfMibView => 130,
        }
    }

    /// A DisplayString.
    pub fn string(s: &str) -> Self {
        Self::OctetString(s.as_bytes().to_vec())
    }
}

/// A name and its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VarBind {
    pub name: Oid,
    pub value: Value,
}

/// A range of OIDs to search (RFC 2741 §5.2): from `start` (itself included if `include`) up
/// to, not including, `end` (no bound if null).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchRange {
    pub start: Oid,
    pub include: bool,
    pub end: Oid,
}

/// The header fields a PDU carries besides its type and payload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub session_id: u32,
    pub transaction_id: u32,
    pub packet_id: u32,
}

/// A PDU's body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// §6.2.1: `timeout` seconds, the subagent's OID and description.
    Open { timeout: u8, id: Oid, description: Vec<u8> },
    /// §6.2.2.
    Close { reason: u8 },
    /// §6.2.3 (`range_subid` and `upper_bound` not used by lbd: 0).
    Register { context: Option<Vec<u8>>, timeout: u8, priority: u8, subtree: Oid, instance: bool },
    /// §6.2.5.
    Get { context: Option<Vec<u8>>, ranges: Vec<SearchRange> },
    /// §6.2.6.
    GetNext { context: Option<Vec<u8>>, ranges: Vec<SearchRange> },
    /// §6.2.7.
    GetBulk { context: Option<Vec<u8>>, non_repeaters: u16, max_repetitions: u16, ranges: Vec<SearchRange> },
    /// §6.2.10: `sysUpTime.0` (optional), `snmpTrapOID.0`, then the trap's objects.
    Notify { context: Option<Vec<u8>>, varbinds: Vec<VarBind> },
    /// §6.2.12.
    Ping { context: Option<Vec<u8>> },
    /// §6.2.16.
    Response { sys_up_time: u32, error: u16, index: u16, varbinds: Vec<VarBind> },
    /// §6.2.8 `TestSet`: its varbinds (lbd refuses every set).
    TestSet { context: Option<Vec<u8>>, varbinds: Vec<VarBind> },
    /// A PDU lbd does not need to look inside: its type and raw payload.
    Other { pdu_type: PduType },
}

/// A whole PDU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pdu {
    pub header: Header,
    pub body: Body,
}

impl Pdu {
    /// Its type.
    pub fn pdu_type(&self) -> PduType {
        match &self.body {
            Body::Open { .. } => PduType::Open,
            Body::Close { .. } => PduType::Close,
            Body::Register { .. } => PduType::Register,
            Body::Get { .. } => PduType::Get,
            Body::GetNext { .. } => PduType::GetNext,
            Body::GetBulk { .. } => PduType::GetBulk,
            Body::Notify { .. } => PduType::Notify,
            Body::Ping { .. } => PduType::Ping,
            Body::Response { .. } => PduType::Response,
            Body::TestSet { .. } => PduType::TestSet,
            Body::Other { pdu_type } => *pdu_type,
        }
    }

    /// The payload length the header at the start of `bytes` announces, once 20 bytes are
    /// there: how many more bytes make the PDU.
    pub fn payload_len(header: &[u8]) -> Result<Option<usize>, AgentxError> {
        let Some(h) = header.get(..HEADER_LEN) else { return Ok(None) };
        if h[0] != 1 {
            return Err(AgentxError::Version(h[0]));
        }
        let raw = [h[16], h[17], h[18], h[19]];
        let len = if h[2] & flags::NETWORK_BYTE_ORDER != 0 {
            u32::from_be_bytes(raw)
        } else {
            u32::from_le_bytes(raw)
        };
        if len as usize > MAX_PAYLOAD || !len.is_multiple_of(4) {
            return Err(AgentxError::PayloadLength(len));
        }
        Ok(Some(len as usize))
    }

    /// Decodes one PDU from exactly `bytes` (header and payload).
    pub fn decode(bytes: &[u8]) -> Result<Self, AgentxError> {
        let len = Self::payload_len(bytes)?.ok_or(AgentxError::Truncated { what: "header" })?;
        let payload =
            bytes.get(HEADER_LEN..HEADER_LEN + len).ok_or(AgentxError::Truncated { what: "payload" })?;
        let flags = bytes[2];
        let mut r = Reader { bytes: payload, big: flags & flags::NETWORK_BYTE_ORDER != 0 };
        let header = Header {
            session_id: Reader { bytes: &bytes[4..8], big: r.big }.u32("header")?,
            transaction_id: Reader { bytes: &bytes[8..12], big: r.big }.u32("header")?,
            packet_id: Reader { bytes: &bytes[12..16], big: r.big }.u32("header")?,
        };
        let pdu_type = PduType::from_u8(bytes[1]).ok_or(AgentxError::VarbindType(u16::from(bytes[1])))?;
        let context = |r: &mut Reader<'_>| -> Result<Option<Vec<u8>>, AgentxError> {
            if flags & flags::NON_DEFAULT_CONTEXT != 0 { Ok(Some(r.octets()?)) } else { Ok(None) }
        };
        let body = match pdu_type {
            PduType::Open => {
                let timeout = r.u8s::<4>("open")?[0];
                Body::Open { timeout, id: r.oid()?.0, description: r.octets()? }
            }
            PduType::Close => Body::Close { reason: r.u8s::<4>("close")?[0] },
            PduType::Register => {
                let context = context(&mut r)?;
                let [timeout, priority, range_subid, _] = r.u8s::<4>("register")?;
                let subtree = r.oid()?.0;
                if range_subid != 0 {
                    r.u32("register upper bound")?;
                }
                Body::Register {
                    context,
                    timeout,
                    priority,
                    subtree,
                    instance: flags & flags::INSTANCE_REGISTRATION != 0,
                }
            }
            PduType::Get | PduType::GetNext => {
                let context = context(&mut r)?;
                let ranges = r.ranges()?;
                if pdu_type == PduType::Get {
                    Body::Get { context, ranges }
                } else {
                    Body::GetNext { context, ranges }
                }
            }
            PduType::GetBulk => {
                let context = context(&mut r)?;
                let non_repeaters = r.u16("getbulk")?;
                let max_repetitions = r.u16("getbulk")?;
                Body::GetBulk { context, non_repeaters, max_repetitions, ranges: r.ranges()? }
            }
            PduType::Notify => {
                let context = context(&mut r)?;
                Body::Notify { context, varbinds: r.varbinds()? }
            }
            PduType::TestSet => {
                let context = context(&mut r)?;
                Body::TestSet { context, varbinds: r.varbinds()? }
            }
            PduType::Ping => Body::Ping { context: context(&mut r)? },
            PduType::Response => Body::Response {
                sys_up_time: r.u32("response")?,
                error: r.u16("response")?,
                index: r.u16("response")?,
                varbinds: r.varbinds()?,
            },
            other => Body::Other { pdu_type: other },
        };
        Ok(Pdu { header, body })
    }

    /// Encodes it in network byte order.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        let mut flags = flags::NETWORK_BYTE_ORDER;
        let mut context = |w: &mut Writer, c: &Option<Vec<u8>>| {
            if let Some(c) = c {
                flags |= flags::NON_DEFAULT_CONTEXT;
                w.octets(c);
            }
        };
        match &self.body {
            Body::Open { timeout, id, description } => {
                w.bytes(&[*timeout, 0, 0, 0]);
                w.oid(id, false);
                w.octets(description);
            }
            Body::Close { reason } => w.bytes(&[*reason, 0, 0, 0]),
            Body::Register { context: c, timeout, priority, subtree, instance } => {
                context(&mut w, c);
                if *instance {
                    flags |= flags::INSTANCE_REGISTRATION;
                }
                w.bytes(&[*timeout, *priority, 0, 0]);
                w.oid(subtree, false);
            }
            Body::Get { context: c, ranges } | Body::GetNext { context: c, ranges } => {
                context(&mut w, c);
                w.ranges(ranges);
            }
            Body::GetBulk { context: c, non_repeaters, max_repetitions, ranges } => {
                context(&mut w, c);
                w.u16(*non_repeaters);
                w.u16(*max_repetitions);
                w.ranges(ranges);
            }
            Body::Notify { context: c, varbinds } | Body::TestSet { context: c, varbinds } => {
                context(&mut w, c);
                w.varbinds(varbinds);
            }
            Body::Ping { context: c } => context(&mut w, c),
            Body::Response { sys_up_time, error, index, varbinds } => {
                w.u32(*sys_up_time);
                w.u16(*error);
                w.u16(*index);
                w.varbinds(varbinds);
            }
            Body::Other { .. } => {}
        }
        let payload = w.0;
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.extend_from_slice(&[1, self.pdu_type() as u8, flags, 0]);
        out.extend_from_slice(&self.header.session_id.to_be_bytes());
        out.extend_from_slice(&self.header.transaction_id.to_be_bytes());
        out.extend_from_slice(&self.header.packet_id.to_be_bytes());
        // The payload is built in memory from lbd's own values: far below u32::MAX.
        out.extend_from_slice(&u32::try_from(payload.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(&payload);
        out
    }
}

/// The `internet` prefix an OID may be compressed against (§5.1).
const INTERNET: [u32; 4] = [1, 3, 6, 1];

struct Reader<'a> {
    bytes: &'a [u8],
    big: bool,
}

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], AgentxError> {
        if self.bytes.len() < n {
            return Err(AgentxError::Truncated { what });
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u8s<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], AgentxError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, AgentxError> {
        let b = self.u8s::<2>(what)?;
        Ok(if self.big { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) })
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, AgentxError> {
        let b = self.u8s::<4>(what)?;
        Ok(if self.big { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, AgentxError> {
        let b = self.u8s::<8>(what)?;
        Ok(if self.big { u64::from_be_bytes(b) } else { u64::from_le_bytes(b) })
    }

    /// An OID and its `include` byte.
    fn oid(&mut self) -> Result<(Oid, bool), AgentxError> {
        let [n, prefix, include, _] = self.u8s::<4>("oid")?;
        if n > 128 {
            return Err(AgentxError::OidTooLong(n));
        }
        let mut subids = Vec::with_capacity(usize::from(n) + 5);
        if prefix != 0 {
            subids.extend_from_slice(&INTERNET);
            subids.push(u32::from(prefix));
        }
        for _ in 0..n {
            subids.push(self.u32("oid")?);
        }
        Ok((Oid(subids), include != 0))
    }

    fn octets(&mut self) -> Result<Vec<u8>, AgentxError> {
        let len = self.u32("octet string")?;
        let padded = (len as usize).checked_add(3).map(|l| l & !3).ok_or(AgentxError::StringLength(len))?;
        if padded > self.bytes.len() {
            return Err(AgentxError::StringLength(len));
        }
        let all = self.take(padded, "octet string")?;
        Ok(all[..len as usize].to_vec())
    }

    fn ranges(&mut self) -> Result<Vec<SearchRange>, AgentxError> {
        let mut out = Vec::new();
        while !self.bytes.is_empty() {
            let (start, include) = self.oid()?;
            let (end, _) = self.oid()?;
            out.push(SearchRange { start, include, end });
        }
        Ok(out)
    }

    fn varbinds(&mut self) -> Result<Vec<VarBind>, AgentxError> {
        let mut out = Vec::new();
        while !self.bytes.is_empty() {
            let code = self.u16("varbind")?;
            self.u16("varbind")?;
            let (name, _) = self.oid()?;
            let value = match code {
                2 => Value::Integer(self.u32("integer")? as i32),
                4 => Value::OctetString(self.octets()?),
                5 => Value::Null,
                6 => Value::ObjectIdentifier(self.oid()?.0),
                64 => {
                    let b = self.octets()?;
                    Value::IpAddress(b.try_into().map_err(|_| AgentxError::Truncated { what: "ip address" })?)
                }
                65 => Value::Counter32(self.u32("counter32")?),
                66 => Value::Gauge32(self.u32("gauge32")?),
                67 => Value::TimeTicks(self.u32("timeticks")?),
                68 => Value::Opaque(self.octets()?),
                70 => Value::Counter64(self.u64("counter64")?),
                128 => Value::NoSuchObject,
                129 => Value::NoSuchInstance,
                130 => Value::EndOfMibView,
                other => return Err(AgentxError::VarbindType(other)),
            };
            out.push(VarBind { name, value });
        }
        Ok(out)
    }
}

#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }

    fn u16(&mut self, v: u16) {
        self.bytes(&v.to_be_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_be_bytes());
    }

    fn oid(&mut self, oid: &Oid, include: bool) {
        let s = &oid.0;
        let (prefix, rest) = match s.get(4) {
            Some(&p) if s.starts_with(&INTERNET) && (1..=255).contains(&p) => (p as u8, &s[5..]),
            _ => (0, &s[..]),
        };
        // An OID longer than 128 sub-identifiers is not one lbd builds; truncated rather
        // than sent malformed.
        let rest = &rest[..rest.len().min(128)];
        self.bytes(&[rest.len() as u8, prefix, u8::from(include), 0]);
        for v in rest {
            self.u32(*v);
        }
    }

    fn octets(&mut self, b: &[u8]) {
        self.u32(u32::try_from(b.len()).unwrap_or(u32::MAX));
        self.bytes(b);
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
    }

    fn ranges(&mut self, ranges: &[SearchRange]) {
        for r in ranges {
            self.oid(&r.start, r.include);
            self.oid(&r.end, false);
        }
    }

    fn varbinds(&mut self, varbinds: &[VarBind]) {
        for vb in varbinds {
            self.u16(vb.value.type_code());
            self.u16(0);
            self.oid(&vb.name, false);
            match &vb.value {
                Value::Integer(v) => self.u32(*v as u32),
                Value::OctetString(b) | Value::Opaque(b) => self.octets(b),
                Value::ObjectIdentifier(o) => self.oid(o, false),
                Value::IpAddress(a) => self.octets(a),
                Value::Counter32(v) | Value::Gauge32(v) | Value::TimeTicks(v) => self.u32(*v),
                Value::Counter64(v) => self.bytes(&v.to_be_bytes()),
                Value::Null | Value::NoSuchObject | Value::NoSuchInstance | Value::EndOfMibView => {}
            }
        }
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    const KEEPALIVED_OPEN: &[u8] = include_bytes!("testdata/keepalived-open.bin");
    const KEEPALIVED_REGISTER: &[u8] = include_bytes!("testdata/keepalived-register.bin");
    const KEEPALIVED_NOTIFY: &[u8] = include_bytes!("testdata/keepalived-notify.bin");
    const KEEPALIVED_CLOSE: &[u8] = include_bytes!("testdata/keepalived-close.bin");

    fn round_trip(pdu: &Pdu) {
        let bytes = pdu.encode();
        assert_eq!(Pdu::payload_len(&bytes).unwrap(), Some(bytes.len() - HEADER_LEN));
        assert_eq!(&Pdu::decode(&bytes).unwrap(), pdu);
    }

    #[test]
    fn keepalived_open_decodes() {
        // keepalived 2.2.7's Open, captured with strace (little-endian, as net-snmp sends it).
        let pdu = Pdu::decode(KEEPALIVED_OPEN).unwrap();
        assert_eq!(pdu.header.packet_id, 0x4ed4_7f6c);
        match &pdu.body {
            Body::Open { timeout, id, description } => {
                assert_eq!(*timeout, 1);
                assert_eq!(id.to_string(), ".1.3.6.1.4.1.8072.3.2.10");
                assert_eq!(description, b"Net-SNMP AgentX sub-agent");
            }
            other => panic!("not an Open: {other:?}"),
        }
        round_trip(&pdu);
    }

    #[test]
    fn keepalived_register_decodes() {
        // Its first Register: version, in the default context (an empty context octet string
        // with NON_DEFAULT_CONTEXT set, as net-snmp does).
        let pdu = Pdu::decode(KEEPALIVED_REGISTER).unwrap();
        assert_eq!(pdu.header.session_id, 8);
        match &pdu.body {
            Body::Register { context, priority, subtree, .. } => {
                assert_eq!(context.as_deref(), Some(&b""[..]));
                assert_eq!(*priority, 127);
                assert_eq!(subtree.to_string(), ".1.3.6.1.4.1.9586.100.5.1.1");
            }
            other => panic!("not a Register: {other:?}"),
        }
        round_trip(&pdu);
    }

    #[test]
    fn keepalived_notify_decodes() {
        // vrrpInstanceStateChange for VI_1 entering BACKUP.
        let pdu = Pdu::decode(KEEPALIVED_NOTIFY).unwrap();
        let Body::Notify { varbinds, .. } = &pdu.body else { panic!("not a Notify: {pdu:?}") };
        assert_eq!(varbinds[0].name.to_string(), ".1.3.6.1.2.1.1.3.0");
        assert!(matches!(varbinds[0].value, Value::TimeTicks(_)));
        assert_eq!(varbinds[1].name.to_string(), ".1.3.6.1.6.3.1.1.4.1.0");
        assert_eq!(
            varbinds[1].value,
            Value::ObjectIdentifier(Oid::new(&[1, 3, 6, 1, 4, 1, 9586, 100, 5, 2, 10, 0, 2]))
        );
        assert_eq!(varbinds[2].value, Value::string("VI_1"));
        assert_eq!(varbinds[3].value, Value::Integer(1));
        assert_eq!(varbinds[5].value, Value::string("ORACLE"));
        round_trip(&pdu);
        let close = Pdu::decode(KEEPALIVED_CLOSE).unwrap();
        assert_eq!(close.body, Body::Close { reason: close_reason::SHUTDOWN });
    }

    #[test]
    fn every_body_round_trips() {
        let oid = Oid::new(&[1, 3, 6, 1, 2, 1, 68, 1, 3, 1, 3, 3, 51]);
        let ranges = vec![
            SearchRange { start: oid.clone(), include: true, end: Oid::default() },
            SearchRange { start: Oid::new(&[1, 3, 6]), include: false, end: Oid::new(&[1, 3, 7]) },
        ];
        let values = vec![
            Value::Integer(-5),
            Value::OctetString(b"abcde".to_vec()),
            Value::Null,
            Value::ObjectIdentifier(oid.clone()),
            Value::IpAddress([10, 0, 0, 1]),
            Value::Counter32(7),
            Value::Gauge32(8),
            Value::TimeTicks(9),
            Value::Opaque(vec![1]),
            Value::Counter64(u64::MAX),
            Value::NoSuchObject,
            Value::NoSuchInstance,
            Value::EndOfMibView,
        ];
        let varbinds: Vec<_> = values.into_iter().map(|value| VarBind { name: oid.clone(), value }).collect();
        let header = Header { session_id: 1, transaction_id: 2, packet_id: 3 };
        for body in [
            Body::Open { timeout: 5, id: oid.clone(), description: b"lbd".to_vec() },
            Body::Close { reason: 1 },
            Body::Register {
                context: None,
                timeout: 0,
                priority: 127,
                subtree: oid.clone(),
                instance: false,
            },
            Body::Get { context: Some(b"ctx".to_vec()), ranges: ranges.clone() },
            Body::GetNext { context: None, ranges: ranges.clone() },
            Body::GetBulk { context: None, non_repeaters: 1, max_repetitions: 10, ranges },
            Body::Notify { context: None, varbinds: varbinds.clone() },
            Body::Ping { context: None },
            Body::Response { sys_up_time: 1, error: 0, index: 0, varbinds: varbinds.clone() },
            Body::TestSet { context: None, varbinds },
        ] {
            round_trip(&Pdu { header, body });
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(Pdu::decode(&[1, 1, 0]), Err(AgentxError::Truncated { what: "header" }));
        let mut bad = KEEPALIVED_OPEN.to_vec();
        bad[0] = 2;
        assert_eq!(Pdu::decode(&bad), Err(AgentxError::Version(2)));
        let mut long = KEEPALIVED_OPEN.to_vec();
        long[16] = 0xff;
        long[17] = 0xff;
        long[18] = 0xff;
        assert!(matches!(Pdu::decode(&long), Err(AgentxError::PayloadLength(_))));
        // Every truncation of every capture is an error, never a panic.
        for capture in [KEEPALIVED_OPEN, KEEPALIVED_REGISTER, KEEPALIVED_NOTIFY] {
            for n in 0..capture.len() {
                assert!(Pdu::decode(&capture[..n]).is_err(), "{n} bytes decoded");
            }
            // Corrupting any byte never panics.
            for i in 0..capture.len() {
                let mut c = capture.to_vec();
                c[i] ^= 0xff;
                let _ = Pdu::decode(&c);
            }
        }
    }

    #[test]
    fn oids_compress_against_internet() {
        let mut w = Writer::default();
        w.oid(&Oid::new(&[1, 3, 6, 1, 4, 1, 9586]), true);
        assert_eq!(w.0, [2, 4, 1, 0, 0, 0, 0, 1, 0, 0, 0x25, 0x72]);
        let mut w = Writer::default();
        w.oid(&Oid::new(&[1, 3, 6, 1]), false);
        assert_eq!(w.0[..4], [4, 0, 0, 0]);
    }
}
