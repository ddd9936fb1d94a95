//! SYN proxy with SYN cookies, for NAT and FNAT TCP services with `syn_proxy` (Alibaba LVS's
//! synproxy, in XDP).
//!
//! 1. A SYN to such a service is answered from here, with XDP_TX: a SYN-ACK whose sequence
//!    number is a SYN cookie and whose only option is the MSS. Nothing is stored, so a flood of
//!    spoofed SYNs fills no table and reaches no real server.
//! 2. The client's ACK, with no flow, is checked: `ack - 1` must be the cookie of its 4-tuple,
//!    `seq - 1` (the client's ISN), a recent time counter and an MSS index. A valid one becomes,
//!    in place, the SYN to a real server (the client's ISN, the MSS from the cookie) and takes
//!    the normal path: the scheduler picks the real, the flow is recorded (both entries marked
//!    [`synproxy_state::AWAITING_REAL`] with the cookie) and NAT / FNAT rewrite it. Anything
//!    else to the service without a flow is dropped, as IPVS's synproxy drops a bad ACK.
//! 3. The real server's SYN-ACK (a reply, through the LB) becomes, in place, the ACK that
//!    completes its handshake, sent back to it; both entries then hold the sequence offset
//!    (real ISN - cookie) and every later packet is shifted: the sequence number of replies,
//!    the acknowledgement number of the client's packets, with incremental checksums. The
//!    SYN-ACK offered no SACK, timestamps or window scaling, so the SYN to the real offers none
//!    either, and there are no SACK blocks or timestamps to translate.
//!
//! Client packets that arrive while the real server has not answered are dropped: the client
//! retransmits them (IPVS keeps the ACK and sends it on; XDP cannot hold a packet).
//!
//! The cookie is hand-written rather than the kernel's (`bpf_tcp_raw_gen_syncookie_ipv4` and
//! `bpf_tcp_raw_check_syncookie_ipv4`, which aya-ebpf 0.2 exposes): the kernel's check says
//! only valid or not, and the SYN to the real server needs the MSS the cookie encodes, which
//! only the kernel's secret can decode. Layout, most significant bit first: one bit of the
//! time counter (about 68.7 s per step, the current and the previous step are accepted), two
//! bits of MSS index, 29 bits of SipHash-2-4 keyed by [`SynProxySecret`] over the addresses,
//! ports, client ISN, counter and MSS index.

use aya_ebpf::{helpers::generated::bpf_xdp_adjust_tail, programs::XdpContext};
use lb_common::{
    lb::{Flow, FlowKey, Method, Service, SynProxySecret, family, synproxy_state},
    stats::GlobalStats,
};

use crate::{
    Outcome, clock,
    csum::{self, Delta},
    encap::EncapError,
    maps::{LBD_SETTINGS, LBD_SYNPROXY_PENDING, LBD_SYNPROXY_SECRET, per_cpu},
    nat,
    parse::{Frame, Headers, ParseError, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
    toa,
};

/// Right shift of the coarse clock (ns) that gives the cookie's time counter: 2^36 ns, 68.7 s.
const COUNTER_SHIFT: u32 = 36;
/// MSS values a cookie can carry, by index: IPv4 (as Linux's syncookies).
const MSS_V4: [u16; 4] = [536, 1300, 1440, 1460];
/// The same for IPv6 (1280-byte minimum MTU).
const MSS_V6: [u16; 4] = [1220, 1420, 1440, 8940];
/// The window of the SYN-ACK and of the ACK to the real server (no window scaling is offered:
/// at most 65535).
const WINDOW: u16 = 65535;
/// TTL / hop limit of the packets the proxy answers with.
const TTL: u8 = 64;
const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;

/// For a TCP packet to a SYN proxy service that no live flow took (a bare SYN, or anything
/// else the connection table does not know): the outcome when it ends here, `None` when it
/// goes on to the normal path (then re-read the frame: a valid ACK was turned into a SYN of
/// another length).
///
/// Not inlined: its frame (and the cookie's) stays off the balancing path's call chain.
#[inline(never)]
pub(crate) fn intercept(
    ctx: &XdpContext,
    h: &mut Headers,
    svc: &Service,
    stats: &mut GlobalStats,
) -> Option<Outcome> {
    // Read from `ctx` here: a `Frame` passed down from the entry point reaches the verifier as
    // plain numbers (see `balancer::send`).
    let frame = &Frame::new(ctx.data(), ctx.data_end());
    let pending = per_cpu(&LBD_SYNPROXY_PENDING, 0)?;
    *pending = 0;
    if !matches!(Method::from_u8(svc.method), Some(Method::Nat | Method::Fnat)) {
        return None;
    }
    let secret = LBD_SYNPROXY_SECRET.get(0)?;
    if secret.key[0] | secret.key[1] == 0 {
        // The daemon has not written a secret: no proxy rather than guessable cookies.
        return None;
    }
    let flags = h.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN);
    let result = if flags == TCP_SYN {
        answer_syn(ctx, frame, h, secret, stats)
    } else if flags == TCP_ACK {
        match accept_ack(ctx, frame, h, secret) {
            Ok(Some(cookie)) => {
                stats.synproxy_cookies_valid += 1;
                *pending = (1 << 32) | u64::from(cookie);
                return None;
            }
            Ok(None) => Ok(Outcome::DropBadCookie),
            Err(e) => Err(e),
        }
    } else {
        Ok(Outcome::DropBadCookie)
    };
    Some(match result {
        Ok(outcome) => outcome,
        Err(EncapError::Resize) => Outcome::DropResize,
        Err(EncapError::Parse(_)) => Outcome::DropMalformed,
    })
}

/// A new flow scheduled from the ACK [`intercept`] accepted: marks it as the proxy's, with
/// the cookie (both of its entries are written from `flow` afterwards).
#[inline(always)]
pub(crate) fn adopt(flow: &mut Flow) {
    let Some(pending) = per_cpu(&LBD_SYNPROXY_PENDING, 0) else { return };
    if *pending >> 32 == 1 {
        flow.synproxy = synproxy_state::AWAITING_REAL;
        flow.syn_cookie = *pending as u32;
        *pending = 0;
    }
}

/// A client packet of a proxied flow, before it is sent to the real server: the outcome when
/// it is dropped (the real server has not answered yet), else `None` with the acknowledgement
/// number shifted. The SYN [`intercept`] made goes through untouched.
#[inline(never)]
pub(crate) fn to_real(frame: &Frame, h: &Headers, flow: &Flow) -> Option<Outcome> {
    if flow.synproxy == synproxy_state::AWAITING_REAL {
        return if h.tcp_flags & TCP_SYN != 0 { None } else { Some(Outcome::DropSynproxyEarly) };
    }
    if h.tcp_flags & TCP_ACK != 0 && shift(frame, h, 8, flow.seq_offset).is_err() {
        return Some(Outcome::DropMalformed);
    }
    None
}

/// A reply of a proxied flow (its REPLY entry `flow`): the real server's SYN-ACK becomes the
/// ACK that completes its handshake, sent back to it, and fixes the flow's sequence offset;
/// later replies get their sequence number shifted and go on (`None`).
#[inline(never)]
pub(crate) fn from_real(
    ctx: &XdpContext,
    frame: &Frame,
    h: &mut Headers,
    flow: &mut Flow,
    stats: &mut GlobalStats,
) -> Option<Outcome> {
    let result = if flow.synproxy == synproxy_state::AWAITING_REAL {
        real_answer(ctx, frame, h, flow, stats)
    } else {
        shift(frame, h, 4, 0u32.wrapping_sub(flow.seq_offset)).map(|()| None).map_err(EncapError::Parse)
    };
    match result {
        Ok(outcome) => outcome,
        Err(EncapError::Resize) => Some(Outcome::DropResize),
        Err(EncapError::Parse(_)) => Some(Outcome::DropMalformed),
    }
}

#[inline(always)]
fn real_answer(
    ctx: &XdpContext,
    frame: &Frame,
    h: &mut Headers,
    flow: &mut Flow,
    stats: &mut GlobalStats,
) -> Result<Option<Outcome>, EncapError> {
    let seq = be32(frame, h.l4 + 4)?;
    let flags = h.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST);
    if flags & TCP_RST != 0 {
        // The real server refused: the client accepts a reset only at the sequence number it
        // expects, the cookie's next.
        shift(frame, h, 4, flow.syn_cookie.wrapping_add(1).wrapping_sub(seq))?;
        return Ok(None);
    }
    if flags != TCP_SYN | TCP_ACK {
        return Ok(Some(Outcome::DropSynproxyEarly));
    }
    let offset = seq.wrapping_sub(flow.syn_cookie);
    flow.synproxy = synproxy_state::SHIFTING;
    flow.seq_offset = offset;
    // The client's entry: its key is the client's packet, from the reply entry's fields.
    let fnat = Method::from_u8(flow.method) == Some(Method::Fnat);
    let key = FlowKey {
        src: if fnat { flow.client_addr } else { h.key.dst },
        dst: flow.nat_addr,
        sport: if fnat { flow.client_port } else { h.key.dport },
        dport: flow.nat_port,
        proto: h.key.proto,
        family: h.key.family,
        pad: 0,
    };
    if let Some(entry) = crate::maps::conn(&key) {
        // SAFETY: a value pointer from a successful lookup; only this flow's packets write it.
        let entry = unsafe { &mut *entry };
        entry.synproxy = synproxy_state::SHIFTING;
        entry.seq_offset = offset;
    }
    let ack = be32(frame, h.l4 + 8)?;
    turn_around(frame, h)?;
    let out = Segment {
        seq: ack,
        ack: seq.wrapping_add(1),
        window: WINDOW,
        mss: 0,
        sport: h.key.sport,
        dport: h.key.dport,
        flags: TCP_ACK,
        ttl: TTL,
    };
    write_segment(ctx, frame, h, &out)?;
    stats.synproxy_real_answers += 1;
    // FNAT: this ACK is the one the real server's TOA module reads the client from.
    if fnat && LBD_SETTINGS.get(0).is_some_and(|s| s.fnat_toa != 0) {
        match toa::insert(ctx, h, &flow.client_addr, flow.client_port)? {
            toa::Inserted::Yes => stats.toa_inserted += 1,
            toa::Inserted::NoRoom => stats.toa_no_room += 1,
        }
    }
    Ok(Some(Outcome::FwdTx))
}

/// A SYN: answered with a SYN-ACK carrying a cookie, back where it came from.
#[inline(always)]
fn answer_syn(
    ctx: &XdpContext,
    frame: &Frame,
    h: &mut Headers,
    secret: &SynProxySecret,
    stats: &mut GlobalStats,
) -> Result<Outcome, EncapError> {
    let isn = be32(frame, h.l4 + 4)?;
    let mss = client_mss(frame, h)?;
    let table = if h.key.family == family::IPV4 { &MSS_V4 } else { &MSS_V6 };
    let index = if mss >= table[3] {
        3
    } else if mss >= table[2] {
        2
    } else if mss >= table[1] {
        1
    } else {
        0
    };
    let counter = (clock::now_ns() >> COUNTER_SHIFT) as u32;
    let cookie = cookie(secret, &h.key, isn, counter, index);
    turn_around(frame, h)?;
    let out = Segment {
        seq: cookie,
        ack: isn.wrapping_add(1),
        window: WINDOW,
        mss: table[index as usize & 3],
        sport: h.key.sport,
        dport: h.key.dport,
        flags: TCP_SYN | TCP_ACK,
        ttl: TTL,
    };
    write_segment(ctx, frame, h, &out)?;
    stats.synproxy_cookies_sent += 1;
    Ok(Outcome::FwdTx)
}

/// An ACK: with a valid cookie, turned into the SYN to the real server (the client's ISN, the
/// MSS from the cookie) and the cookie returned; `None` when invalid.
#[inline(always)]
fn accept_ack(
    ctx: &XdpContext,
    frame: &Frame,
    h: &mut Headers,
    secret: &SynProxySecret,
) -> Result<Option<u32>, EncapError> {
    let isn = be32(frame, h.l4 + 4)?.wrapping_sub(1);
    let cookie = be32(frame, h.l4 + 8)?.wrapping_sub(1);
    let window = frame.be16_at(h.l4 + 14)?;
    let now = (clock::now_ns() >> COUNTER_SHIFT) as u32;
    // The counter's low bit picks the step: this one or the previous.
    let counter = if (now ^ (cookie >> 31)) & 1 == 0 { now } else { now.wrapping_sub(1) };
    let index = (cookie >> 29) & 3;
    if self::cookie(secret, &h.key, isn, counter, index) != cookie {
        return Ok(None);
    }
    let table = if h.key.family == family::IPV4 { &MSS_V4 } else { &MSS_V6 };
    let out = Segment {
        seq: isn,
        ack: 0,
        window,
        mss: table[index as usize & 3],
        sport: h.key.sport,
        dport: h.key.dport,
        flags: TCP_SYN,
        ttl: 0,
    };
    write_segment(ctx, frame, h, &out)?;
    h.tcp_flags = TCP_SYN;
    Ok(Some(cookie))
}

/// The cookie of a SYN with key `key` and ISN `isn`, at time step `counter` with MSS index
/// `index` (see the module doc).
#[inline(never)]
fn cookie(secret: &SynProxySecret, key: &FlowKey, isn: u32, counter: u32, index: u32) -> u32 {
    let w = |lo: u32, hi: u32| u64::from(lo) | u64::from(hi) << 32;
    let mut sip = SipHash::new(secret.key[0], secret.key[1]);
    sip.compress(w(key.src[0], key.src[1]));
    sip.compress(w(key.src[2], key.src[3]));
    sip.compress(w(key.dst[0], key.dst[1]));
    sip.compress(w(key.dst[2], key.dst[3]));
    sip.compress(w(u32::from(key.sport) | u32::from(key.dport) << 16, isn));
    sip.compress(w(counter & 1, index));
    let hash = sip.finish(48) as u32;
    (counter & 1) << 31 | (index & 3) << 29 | hash & 0x1fff_ffff
}

/// SipHash-2-4 over whole 8-byte words.
struct SipHash {
    v: [u64; 4],
}

impl SipHash {
    #[inline(always)]
    fn new(k0: u64, k1: u64) -> Self {
        Self {
            v: [
                k0 ^ 0x736f_6d65_7073_6575,
                k1 ^ 0x646f_7261_6e64_6f6d,
                k0 ^ 0x6c79_6765_6e65_7261,
                k1 ^ 0x7465_6462_7974_6573,
            ],
        }
    }

    #[inline(always)]
    fn round(&mut self) {
        let [mut v0, mut v1, mut v2, mut v3] = self.v;
        v0 = v0.wrapping_add(v1);
        v1 = v1.rotate_left(13) ^ v0;
        v0 = v0.rotate_left(32);
        v2 = v2.wrapping_add(v3);
        v3 = v3.rotate_left(16) ^ v2;
        v0 = v0.wrapping_add(v3);
        v3 = v3.rotate_left(21) ^ v0;
        v2 = v2.wrapping_add(v1);
        v1 = v1.rotate_left(17) ^ v2;
        v2 = v2.rotate_left(32);
        self.v = [v0, v1, v2, v3];
    }

    #[inline(always)]
    fn compress(&mut self, m: u64) {
        self.v[3] ^= m;
        self.round();
        self.round();
        self.v[0] ^= m;
    }

    #[inline(always)]
    fn finish(mut self, len: u64) -> u64 {
        self.compress(len << 56);
        self.v[2] ^= 0xff;
        self.round();
        self.round();
        self.round();
        self.round();
        self.v[0] ^ self.v[1] ^ self.v[2] ^ self.v[3]
    }
}

/// The MSS option of a SYN; RFC 9293's default (536, IPv6: 1220) without one.
#[inline(always)]
fn client_mss(frame: &Frame, h: &Headers) -> Result<u16, ParseError> {
    let default = if h.key.family == family::IPV4 { MSS_V4[0] } else { MSS_V6[0] };
    let [offset, _] = frame.bytes::<2>(h.l4 + 12)?;
    let end = usize::from(offset >> 4) * 4;
    let mut at = 20;
    // Options are at most 40 bytes; Linux and the others put the MSS first.
    for _ in 0..8 {
        if at + 4 > end {
            break;
        }
        let [kind, len] = frame.bytes::<2>(h.l4 + at)?;
        match kind {
            OPT_END => break,
            OPT_NOP => at += 1,
            OPT_MSS if len == 4 => return frame.be16_at(h.l4 + at + 2),
            _ if len < 2 => break,
            _ => at += usize::from(len),
        }
    }
    Ok(default)
}

/// Sends the packet back: MAC and IP addresses swapped (which changes no checksum), and the
/// ports in `h` (the caller writes the TCP header).
#[inline(always)]
fn turn_around(frame: &Frame, h: &mut Headers) -> Result<(), ParseError> {
    let eth = frame.ptr_at::<[u8; 12]>(0)?.cast::<u8>();
    // SAFETY: 12 bytes in bounds (ptr_at); unaligned accesses only (scalars: a local array
    // would be zeroed by a byte-at-a-time memset, see crate::mem).
    unsafe {
        let (a, b) = (eth.cast::<u32>().read_unaligned(), eth.add(4).cast::<u16>().read_unaligned());
        let (c, d) = (eth.add(6).cast::<u32>().read_unaligned(), eth.add(10).cast::<u16>().read_unaligned());
        eth.cast::<u32>().write_unaligned(c);
        eth.add(4).cast::<u16>().write_unaligned(d);
        eth.add(6).cast::<u32>().write_unaligned(a);
        eth.add(10).cast::<u16>().write_unaligned(b);
    }
    let v4 = h.key.family == family::IPV4;
    let (src_off, dst_off) = if v4 { (h.l3 + 12, h.l3 + 16) } else { (h.l3 + 8, h.l3 + 24) };
    nat::write_addr(frame, src_off, &h.key.dst, v4)?;
    nat::write_addr(frame, dst_off, &h.key.src, v4)?;
    let (src, sport) = (h.key.src, h.key.sport);
    h.key.src = h.key.dst;
    h.key.sport = h.key.dport;
    h.key.dst = src;
    h.key.dport = sport;
    Ok(())
}

/// A TCP header the proxy writes (host order but for the ports, which are as in the packet).
struct Segment {
    seq: u32,
    ack: u32,
    /// 0: no option; else an MSS option of this value (a 24-byte header).
    mss: u16,
    window: u16,
    sport: u16,
    dport: u16,
    flags: u8,
    /// 0 keeps the TTL / hop limit.
    ttl: u8,
}

/// Replaces the TCP header and everything after it with `out` (no payload), fixing the IP
/// length (and TTL) and every checksum. `frame` is the packet before; it must be re-read
/// from `ctx` afterwards.
#[inline(never)]
fn write_segment(ctx: &XdpContext, frame: &Frame, h: &Headers, out: &Segment) -> Result<(), EncapError> {
    let tcp_len: usize = if out.mss != 0 { 24 } else { 20 };
    let delta = (h.l4 + tcp_len) as i64 - frame.len() as i64;
    // Called even for a delta of 0: the frame is then read once, after the call (a pointer
    // read before it and merged with one read after is truncated, and the verifier refuses it).
    // SAFETY: ctx is the program's context.
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta as i32) } != 0 {
        return Err(EncapError::Resize);
    }
    let frame = Frame::new(ctx.data(), ctx.data_end());
    // Each field as it sits in memory (network order), loaded as a native word: one's
    // complement sums do not depend on byte order (RFC 1071).
    let (seq, ack) = (out.seq.to_be(), out.ack.to_be());
    let offset_flags = u16::from_ne_bytes([(tcp_len as u8 / 4) << 4, out.flags]);
    let window = out.window.to_be();
    let (kind_len, mss) = (u16::from_ne_bytes([OPT_MSS, 4]), out.mss.to_be());
    let v4 = h.key.family == family::IPV4;
    // The pseudo-header (addresses, protocol, length), then the header.
    let mut sum: u32 = u32::from(6u16.to_be()) + u32::from((tcp_len as u16).to_be());
    let words = if v4 { 1 } else { 4 };
    for i in 0..4 {
        if i < words {
            let (s, d) = (h.key.src[i], h.key.dst[i]);
            sum += (s & 0xffff) + (s >> 16) + (d & 0xffff) + (d >> 16);
        }
    }
    sum += u32::from(out.sport) + u32::from(out.dport);
    sum += (seq & 0xffff) + (seq >> 16) + (ack & 0xffff) + (ack >> 16);
    sum += u32::from(offset_flags) + u32::from(window);
    if out.mss != 0 {
        sum += u32::from(kind_len) + u32::from(mss);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    let head = frame.ptr_at::<[u8; 20]>(h.l4)?.cast::<u8>();
    // SAFETY: 20 bytes in bounds (ptr_at); unaligned accesses only.
    unsafe {
        head.cast::<u16>().write_unaligned(out.sport);
        head.add(2).cast::<u16>().write_unaligned(out.dport);
        head.add(4).cast::<u32>().write_unaligned(seq);
        head.add(8).cast::<u32>().write_unaligned(ack);
        head.add(12).cast::<u16>().write_unaligned(offset_flags);
        head.add(14).cast::<u16>().write_unaligned(window);
        head.add(16).cast::<u16>().write_unaligned(!(sum as u16));
        head.add(18).cast::<u16>().write_unaligned(0);
    }
    if out.mss != 0 {
        let option = frame.ptr_at::<[u16; 2]>(h.l4 + 20)?;
        // SAFETY: in bounds (ptr_at).
        unsafe { option.write_unaligned([kind_len, mss]) };
    }
    if v4 {
        let total = ((h.l4 - h.l3 + tcp_len) as u16).to_be();
        let mut ttl_change = Delta::default();
        if out.ttl != 0 {
            let ttl = frame.ptr_at::<[u8; 2]>(h.l3 + 8)?;
            // SAFETY: in bounds (ptr_at); byte accesses only.
            unsafe {
                let [old, proto] = *ttl;
                ttl_change.word(u16::from_ne_bytes([old, proto]), u16::from_ne_bytes([out.ttl, proto]));
                *ttl = [out.ttl, proto];
            }
        }
        csum::set_ipv4_total_length(&frame, h.l3, total, ttl_change)?;
    } else {
        let payload = ((h.l4 - h.l3 - 40 + tcp_len) as u16).to_be();
        let len = frame.ptr_at::<u16>(h.l3 + 4)?;
        let hop = frame.ptr_at::<[u8; 2]>(h.l3 + 6)?;
        // SAFETY: in bounds (ptr_at).
        unsafe {
            len.write_unaligned(payload);
            if out.ttl != 0 {
                (*hop)[1] = out.ttl;
            }
        }
    }
    Ok(())
}

/// Adds `delta` to the 32-bit field at `offset` of the TCP header (4: sequence number, 8:
/// acknowledgement number), fixing the checksum.
#[inline(always)]
fn shift(frame: &Frame, h: &Headers, offset: usize, delta: u32) -> Result<(), ParseError> {
    let field = frame.ptr_at::<u32>(h.l4 + offset)?;
    let csum = frame.ptr_at::<u16>(h.l4 + 16)?;
    // SAFETY: in bounds (ptr_at); unaligned accesses only.
    unsafe {
        let old = field.read_unaligned();
        let new = u32::from_be(old).wrapping_add(delta).to_be();
        let mut d = Delta::default();
        d.dword(old, new);
        field.write_unaligned(new);
        csum.write_unaligned(d.apply(csum.read_unaligned()));
    }
    Ok(())
}

#[inline(always)]
fn be32(frame: &Frame, offset: usize) -> Result<u32, ParseError> {
    Ok(u32::from_be_bytes(frame.bytes::<4>(offset)?))
}
