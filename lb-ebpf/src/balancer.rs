//! The load-balancing path: service lookup, the connection table, scheduling, and the four
//! forwarding methods (NAT, DR, TUN, FNAT), plus the reply path of NAT and FNAT.

use aya_ebpf::{
    cty::c_void,
    helpers::{bpf_get_prandom_u32, generated::bpf_loop},
    programs::XdpContext,
};
use lb_common::{
    lb::{
        Flow, FlowCacheSlot, FlowCacheSlot6, FlowKey, LocalAddr, MAX_LADDRS_PER_GROUP, Method, Real, Service,
        ServiceKey, Settings, direction, family, service_flags, tcp_state,
    },
    stats::GlobalStats,
};

use crate::{
    Outcome, cache, clock, encap,
    forward::{self, Hop, Next},
    icmp,
    maps::{
        self, LBD_LADDRS, LBD_REAL_STATS, LBD_SCRATCH_FLOW, LBD_SERVICE_STATS, LBD_SERVICES, LBD_SETTINGS,
        per_cpu,
    },
    mem,
    nat::{self, Rewrite},
    parse::{self, Frame, Headers, IPPROTO_TCP, IPPROTO_UDP, ParseError, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
    sched, synproxy, toa,
};

/// Balances one IP packet whose headers are `h`: the full path (`lb_xdp_full`, `lb_xdp_v6`),
/// for what the flow caches did not send ([`cached`], [`cached6`]).
///
/// Flow first: a packet that is not a bare SYN is looked up in the connection table before
/// the service table, so a packet of an established flow (either direction) costs one hash
/// lookup, not two (three for a reply: the service and its port-0 wildcard missed first).
/// What [`tracked`] does not handle ([`Tracked::Other`]) goes on to the service lookup and
/// [`original`], which look again.
///
/// `V6`: the program is `lb_xdp_v6`, `h` an IPv6 packet's (whose flows go into the IPv6 flow
/// cache); else `lb_xdp_full`, `h` an IPv4 packet's.
#[inline(always)]
pub(crate) fn balance<const V6: bool>(
    ctx: &XdpContext,
    frame: &mut Frame,
    h: &mut Headers,
    stats: &mut GlobalStats,
) -> Outcome {
    let Some(settings) = LBD_SETTINGS.get(0) else { return Outcome::PassNotReady };
    if settings.ready == 0 {
        return Outcome::PassNotReady;
    }
    if h.fragment {
        return Outcome::PassFragment;
    }
    if h.key.proto == icmp::IPPROTO_ICMP && h.key.family == family::IPV4
        || h.key.proto == icmp::IPPROTO_ICMPV6 && h.key.family == family::IPV6
    {
        return icmp_error(ctx, frame, h, stats);
    }
    if h.key.proto != IPPROTO_TCP && h.key.proto != IPPROTO_UDP {
        return Outcome::PassNoService;
    }
    let bare_syn = h.key.proto == IPPROTO_TCP && h.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
    if !bare_syn {
        let tracked = if V6 {
            tracked::<FlowCacheSlot6>(ctx, h, settings, stats)
        } else {
            tracked::<FlowCacheSlot>(ctx, h, settings, stats)
        };
        match tracked {
            Tracked::Done(outcome) => return outcome,
            Tracked::ProxiedReply => return proxied_reply(ctx, h, stats),
            Tracked::Unknown | Tracked::Other => {}
        }
    }
    let mut key = ServiceKey { addr: h.key.dst, port: h.key.dport, proto: h.key.proto, family: h.key.family };
    let mut svc = LBD_SERVICES.get_ptr(&key);
    if svc.is_none() {
        // `virtual_server VIP 0`: every port of the VIP.
        key.port = 0;
        svc = LBD_SERVICES.get_ptr(&key);
    }
    match svc {
        Some(svc) => {
            // SAFETY: a value pointer from a successful lookup. Service entries are replaced,
            // not edited in place, by the daemon, so the fields read are consistent.
            let svc = unsafe { &*svc };
            if svc.flags & service_flags::SYN_PROXY != 0 && h.key.proto == IPPROTO_TCP {
                if let Some(outcome) = synproxy::intercept(ctx, h, svc, stats) {
                    return outcome;
                }
                // An accepted ACK is now a SYN of another length: the frame is read again.
                *frame = Frame::new(ctx.data(), ctx.data_end());
            }
            original(ctx, frame, h, svc, stats)
        }
        // A reply entry of any other packet was found (and translated) by `tracked`.
        None if bare_syn => reply_lookup(ctx, frame, h, stats),
        None => Outcome::PassNoService,
    }
}

/// An ICMP error about a tracked flow goes where the flow's packets in its direction go (see
/// [`icmp`]); anything else ICMP is the kernel's.
#[inline(always)]
fn icmp_error(ctx: &XdpContext, frame: &Frame, h: &mut Headers, stats: &mut GlobalStats) -> Outcome {
    match icmp::quoted(frame, h) {
        Ok(true) => {}
        Ok(false) => return Outcome::PassNoService,
        Err(_) => return Outcome::DropMalformed,
    }
    let Some(flow) = maps::conn(&h.key) else { return Outcome::PassNoService };
    // SAFETY: a value pointer from a successful lookup.
    let flow = unsafe { &*flow };
    match Method::from_u8(flow.method) {
        Some(Method::Nat | Method::Fnat) => icmp::translate(ctx, frame, h, flow, stats),
        // DR and TUN: the real server holds the VIP; the error goes to it unchanged.
        _ if flow.direction == direction::ORIGINAL => {
            stats.icmp_translated += 1;
            count_and_send(ctx, frame, h, flow).unwrap_or(Outcome::DropMalformed)
        }
        _ => Outcome::PassNoService,
    }
}

/// What the connection table says about a packet ([`tracked`]).
enum Tracked {
    /// Forwarded or translated: the packet's outcome.
    Done(Outcome),
    /// No entry.
    Unknown,
    /// A reply of a SYN proxy flow: [`proxied_reply`] translates it, off this call chain.
    ProxiedReply,
    /// An entry `tracked` leaves to the service lookup and `original`: expired, or of a real
    /// server that is gone (its service removed or recreated: the daemon clears a service's reals with it).
    Other,
}

/// A packet of a live tracked flow, on the full path: its entry in the connection table is
/// updated (TCP state, `last_seen_ns`), copied into a slot of its family's flow cache
/// ([`cache::offer`]: its flow's, which the entry point or `lb_xdp_v6` then serves, or
/// scratch) and the packet sent from there.
///
/// A flow is live while its real server's entry exists. That stands for its service too: the
/// daemon never removes a service (or recreates it under a new id) without clearing its real
/// servers in the same apply, and hands a cleared id out again only after every other
/// (`dataplane::tables`). A flow scheduled by a port-0 service stays with it when a service for
/// its port is added, as IPVS keeps a connection.
///
/// Not inlined: inlined into `lb_xdp_full`, its locals made that frame too large for the
/// longest chain of frames (entry, `original`, `new_flow`, `sched::schedule`, a `bpf_loop`
/// callback; 512 bytes in all). It calls `cache::forget` for packets that change state.
///
/// The frame is read again from `ctx` (see [`send`]).
/// `S`: the flow cache of `h`'s family.
#[inline(never)]
fn tracked<S: cache::Slot>(
    ctx: &XdpContext,
    h: &mut Headers,
    settings: &Settings,
    stats: &mut GlobalStats,
) -> Tracked {
    let frame = &Frame::new(ctx.data(), ctx.data_end());
    let now = clock::now_ns();
    // The entry point sent what its flow cache held; a packet that changes its flow's state
    // empties the flow's slot here.
    if !cache::stateless(h.tcp_flags) {
        cache::forget(&h.key);
    }
    let Some(entry) = maps::conn(&h.key) else { return Tracked::Unknown };
    // SAFETY: a value pointer from a successful lookup; only this flow's packets write it.
    let entry = unsafe { &mut *entry };
    if entry.direction == direction::REPLY {
        if entry.synproxy != 0 {
            return Tracked::ProxiedReply;
        }
    } else {
        let timeout = timeout_ns(settings, h.key.proto, entry.tcp_state);
        if now.saturating_sub(entry.last_seen_ns) > timeout || sched::real_ref(entry.real).is_none() {
            return Tracked::Other;
        }
        // The ACK that completes an FNAT handshake carries the client's address (see `toa`).
        let toa = h.key.proto == IPPROTO_TCP
            && entry.tcp_state == tcp_state::SYN
            && h.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) == TCP_ACK
            && entry.method == Method::Fnat as u8
            && entry.synproxy == 0
            && settings.fnat_toa != 0;
        entry.last_seen_ns = now;
        if h.key.proto == IPPROTO_TCP {
            track_tcp(entry, h.tcp_flags);
        }
        if toa {
            stats.flow_hits += 1;
            count(frame, entry);
            return Tracked::Done(send_with_toa(ctx, h, entry, stats));
        }
    }
    entry.last_seen_ns = now;
    let timeout = timeout_ns(settings, h.key.proto, entry.tcp_state);
    // Sent from the slot the entry is copied into (one kind of pointer for the verifier: with
    // a pointer into either map, it walked the rest twice and gave up).
    let Some(slot) = cache::offer::<S>(h, settings, entry, timeout) else { return Tracked::Other };
    match from_slot::<0, S>(ctx, frame, h, slot, stats) {
        Some(outcome) => Tracked::Done(outcome),
        None => Tracked::Other,
    }
}

/// The entry point's fast path: a plain IPv4 TCP or UDP packet ([`Frame::plain_ipv4`],
/// untagged or after one VLAN tag) of a flow in the flow cache, sent from its slot. `None`
/// sends the packet down the full path (the tail call in `lb_xdp`), which does not read the
/// cache.
///
/// Inlined into the entry point, which is verified apart from the full path, with no
/// BPF-to-BPF call for any method (TUN encapsulates inline, [`encap::push4_at`]), once per
/// header layout: every offset is a constant.
#[inline(always)]
pub(crate) fn cached(ctx: &XdpContext, stats: &mut GlobalStats) -> Option<Outcome> {
    let frame = &Frame::new(ctx.data(), ctx.data_end());
    match frame.plain_ipv4::<{ parse::ETH_HLEN }>() {
        Some(h) => cached_at::<{ parse::ETH_HLEN }>(ctx, frame, h, stats),
        None => cached_at::<{ parse::ETH_HLEN + parse::VLAN_HLEN }>(
            ctx,
            frame,
            frame.plain_ipv4::<{ parse::ETH_HLEN + parse::VLAN_HLEN }>()?,
            stats,
        ),
    }
}

/// [`cached`] for a packet whose IP header is at `L3`.
#[inline(always)]
fn cached_at<const L3: usize>(
    ctx: &XdpContext,
    frame: &Frame,
    mut h: Headers,
    stats: &mut GlobalStats,
) -> Option<Outcome> {
    // A SYN, FIN or RST is the full path's (which empties the flow's slot): not looked up
    // here, so that a new flow does not touch a cold slot (a cache and TLB miss, about a
    // third of a new flow's cost when tried).
    if !cache::stateless(h.tcp_flags) {
        return None;
    }
    let settings = LBD_SETTINGS.get(0)?;
    if settings.ready == 0 {
        return None;
    }
    let slot = cache::lookup::<FlowCacheSlot>(&h, settings, clock::now_ns())?;
    let outcome = from_slot::<L3, _>(ctx, frame, &mut h, slot, stats)?;
    stats.ipv4 += 1;
    stats.flow_cache_hits += 1;
    Some(outcome)
}

/// `lb_xdp_v6`'s fast path: an IPv6 TCP or UDP packet, parsed, of a flow in the IPv6 flow
/// cache, sent from its slot. `None`: the packet goes on to [`balance`].
///
/// Not inlined: in the entry's frame, its locals made the longest chain of frames (through
/// `balance`) larger than 512 bytes.
#[inline(never)]
pub(crate) fn cached6(ctx: &XdpContext, h: &mut Headers, stats: &mut GlobalStats) -> Option<Outcome> {
    let frame = &Frame::new(ctx.data(), ctx.data_end());
    if h.fragment
        || h.key.proto != IPPROTO_TCP && h.key.proto != IPPROTO_UDP
        || !cache::stateless(h.tcp_flags)
    {
        return None;
    }
    let settings = LBD_SETTINGS.get(0)?;
    if settings.ready == 0 {
        return None;
    }
    let slot = cache::lookup::<FlowCacheSlot6>(h, settings, clock::now_ns())?;
    let outcome = from_slot::<0, _>(ctx, frame, h, slot, stats)?;
    stats.flow_cache_hits += 1;
    Some(outcome)
}

/// Sends the packet `h` of the flow in `slot`. `FAST_L3`: `h` is the entry point's, from
/// [`Frame::plain_ipv4`] with its IP header at `FAST_L3`; 0: any other packet (the full
/// path's, the entry just copied into the slot; or `lb_xdp_v6`'s cache hit). `None` if its
/// real server is gone (its entry cleared): the slot is emptied, and the full path decides.
/// A cache hit is counted by the caller, on `Some`.
#[inline(always)]
fn from_slot<const FAST_L3: usize, S: cache::Slot>(
    ctx: &XdpContext,
    frame: &Frame,
    h: &mut Headers,
    slot: &mut S,
    stats: &mut GlobalStats,
) -> Option<Outcome> {
    let (proto, flow) = slot.parts();
    if flow.direction == direction::REPLY {
        return Some(translate_reply(ctx, frame, h, flow, stats).unwrap_or(Outcome::DropMalformed));
    }
    let Some(real) = sched::real_ref(flow.real) else {
        *proto = 0;
        return None;
    };
    stats.flow_hits += 1;
    count(frame, flow);
    Some(send_known::<FAST_L3>(ctx, frame, h, flow, real).unwrap_or(Outcome::DropMalformed))
}

/// [`send`] for a packet sent from a cache slot: NAT, FNAT and DR of IPv4 inline, without a
/// BPF-to-BPF call (about 12 ns each here), TUN with one (`encap::push`) unless `FAST_L3`;
/// IPv6 and SYN proxy flows through `send`.
#[inline(always)]
fn send_known<const FAST_L3: usize>(
    ctx: &XdpContext,
    frame: &Frame,
    h: &mut Headers,
    flow: &Flow,
    real: &Real,
) -> Result<Outcome, ParseError> {
    // IPv6, and SYN proxy flows (whose acknowledgement numbers `send` shifts).
    if h.key.family != family::IPV4 || flow.synproxy != 0 {
        return send(ctx, h, flow);
    }
    let rport = if real.port != 0 { real.port } else { h.key.dport };
    let hop = Hop::real(flow.real, real, h.l3, flow.last_seen_ns);
    match Method::from_u8(flow.method) {
        Some(Method::Nat) => {
            nat::rewrite4(frame, h, None, Some((real.addr[0], rport)))?;
            Ok(after_nat(forward::route_cached(ctx, frame, &hop)))
        }
        Some(Method::Fnat) => {
            nat::rewrite4(frame, h, Some((flow.nat_addr[0], flow.nat_port)), Some((real.addr[0], rport)))?;
            Ok(after_nat(forward::route_cached(ctx, frame, &hop)))
        }
        Some(Method::Dr) => Ok(after_l2(forward::route_cached(ctx, frame, &hop))),
        Some(Method::Tun) => tunnel::<FAST_L3>(ctx, h, &hop, real),
        None => Ok(Outcome::DropNoReal),
    }
}

/// [`send`] for the ACK that completes an FNAT handshake, with the client's address added
/// first (or counted as not added). Its own path to the end: the frame is read again after
/// the resize, and no packet pointer from before it may meet one from after.
#[inline(always)]
fn send_with_toa(ctx: &XdpContext, h: &mut Headers, flow: &Flow, stats: &mut GlobalStats) -> Outcome {
    match toa::insert(ctx, h, &h.key.src, h.key.sport) {
        Ok(toa::Inserted::Yes) => stats.toa_inserted += 1,
        Ok(toa::Inserted::NoRoom) => stats.toa_no_room += 1,
        Err(encap::EncapError::Resize) => return Outcome::DropResize,
        Err(encap::EncapError::Parse(_)) => return Outcome::DropMalformed,
    }
    send(ctx, h, flow).unwrap_or(Outcome::DropMalformed)
}

/// How long an idle flow in this state lives, in nanoseconds.
#[inline(always)]
fn timeout_ns(settings: &Settings, proto: u8, state: u8) -> u64 {
    let secs = if proto == IPPROTO_UDP {
        settings.udp_timeout
    } else {
        match state {
            tcp_state::SYN => settings.tcp_syn_timeout,
            tcp_state::CLOSING => settings.tcp_fin_timeout,
            _ => settings.tcp_timeout,
        }
    };
    u64::from(secs) * 1_000_000_000
}

/// Client to VIP: find or schedule the flow, count, and forward.
///
/// Not inlined, like the functions it calls: each BPF-to-BPF call has its own stack frame, and
/// the deepest chain of frames must fit in 512 bytes. It returns a plain `Outcome`: the BPF
/// backend passes a two-field result through a hidden pointer argument, and calls take at
/// most five arguments.
#[inline(never)]
fn original(
    ctx: &XdpContext,
    frame: &Frame,
    h: &mut Headers,
    svc: &Service,
    stats: &mut GlobalStats,
) -> Outcome {
    original_flow(ctx, frame, h, svc, stats).unwrap_or(Outcome::DropMalformed)
}

#[inline(always)]
fn original_flow(
    ctx: &XdpContext,
    frame: &Frame,
    h: &mut Headers,
    svc: &Service,
    stats: &mut GlobalStats,
) -> Result<Outcome, ParseError> {
    let Some(settings) = LBD_SETTINGS.get(0) else { return Ok(Outcome::PassNotReady) };
    let now = clock::now_ns();
    let tcp = h.key.proto == IPPROTO_TCP;
    let syn_only = tcp && h.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
    // A bare SYN is nearly always a new flow: scheduled and recorded without looking the table
    // up first (that lookup, a miss on a cold bucket, was about a tenth of a new flow's cost);
    // `new_flow` inserts it only if absent and deals with a flow already there. Not for the
    // SYN proxy, whose accepted ACK hands its cookie over once (`synproxy::adopt`).
    let if_absent = new_if_absent(h, svc);
    let mut known: Option<&Flow> = None;
    if !if_absent && let Some(entry) = maps::conn(&h.key) {
        // SAFETY: a value pointer from a successful lookup; only this flow's packets write it.
        let entry = unsafe { &mut *entry };
        let expired =
            now.saturating_sub(entry.last_seen_ns) > timeout_ns(settings, h.key.proto, entry.tcp_state);
        let reused = syn_only && entry.tcp_state == tcp_state::CLOSING;
        if entry.direction == direction::ORIGINAL && entry.service == svc.id && !expired && !reused {
            entry.last_seen_ns = now;
            if tcp {
                track_tcp(entry, h.tcp_flags);
            }
            known = Some(entry);
        } else if entry.direction == direction::ORIGINAL && tcp && entry.tcp_state != tcp_state::CLOSING {
            // The flow is being replaced: it no longer counts as active on its real.
            sched::add_active(entry.real, u64::MAX);
        }
    }
    // A known flow is sent from its entry in the table, a new one from per-CPU scratch (not
    // the stack, which is nearly full) that `new_flow` fills.
    let flow: &Flow = match known {
        Some(entry) => {
            stats.flow_hits += 1;
            entry
        }
        None => {
            let Some(flow) = per_cpu(&LBD_SCRATCH_FLOW, 0) else { return Ok(Outcome::DropMalformed) };
            // SAFETY: a per-CPU map value, valid for a `Flow`.
            unsafe { mem::zero(&raw mut *flow) };
            if let Some(outcome) = new_flow(h, svc, stats, flow) {
                return Ok(outcome);
            }
            flow
        }
    };
    count_and_send(ctx, frame, h, flow)
}

/// Counts a packet of `flow` on its service and real server, and sends it.
#[inline(always)]
fn count_and_send(
    ctx: &XdpContext,
    frame: &Frame,
    h: &mut Headers,
    flow: &Flow,
) -> Result<Outcome, ParseError> {
    count(frame, flow);
    send(ctx, h, flow)
}

/// Counts a packet of `flow` on its service and real server.
#[inline(always)]
fn count(frame: &Frame, flow: &Flow) {
    let bytes = frame.len() as u64;
    if let Some(s) = per_cpu(&LBD_SERVICE_STATS, flow.service) {
        s.packets += 1;
        s.bytes += bytes;
    }
    if let Some(s) = per_cpu(&LBD_REAL_STATS, flow.real) {
        s.packets += 1;
        s.bytes += bytes;
    }
}

/// Rewrites the packet of `flow` per its method and sends it to the real server.
///
/// The frame is read again from `ctx`: a `Frame` passed down from two calls up reached the
/// verifier as plain numbers, not packet pointers.
#[inline(never)]
fn send(ctx: &XdpContext, h: &mut Headers, flow: &Flow) -> Result<Outcome, ParseError> {
    let frame = &Frame::new(ctx.data(), ctx.data_end());
    let Some(real) = sched::real_ref(flow.real) else { return Ok(Outcome::DropNoReal) };
    if flow.synproxy != 0
        && let Some(outcome) = synproxy::to_real(frame, h, flow)
    {
        return Ok(outcome);
    }
    let rport = if real.port != 0 { real.port } else { h.key.dport };
    match Method::from_u8(flow.method) {
        Some(Method::Nat) => {
            nat::rewrite(
                frame,
                h,
                &Rewrite { dst: Some(real.addr), dport: Some(rport), ..Rewrite::default() },
            )?;
            let next =
                forward::route_cached(ctx, frame, &Hop::real(flow.real, real, h.l3, flow.last_seen_ns));
            Ok(after_nat(next))
        }
        Some(Method::Fnat) => {
            let rw = Rewrite {
                src: Some(flow.nat_addr),
                sport: Some(flow.nat_port),
                dst: Some(real.addr),
                dport: Some(rport),
            };
            nat::rewrite(frame, h, &rw)?;
            let next =
                forward::route_cached(ctx, frame, &Hop::real(flow.real, real, h.l3, flow.last_seen_ns));
            Ok(after_nat(next))
        }
        Some(Method::Dr) => {
            let next =
                forward::route_cached(ctx, frame, &Hop::real(flow.real, real, h.l3, flow.last_seen_ns));
            Ok(after_l2(next))
        }
        Some(Method::Tun) => tunnel::<0>(ctx, h, &Hop::real(flow.real, real, h.l3, flow.last_seen_ns), real),
        None => Ok(Outcome::DropNoReal),
    }
}

/// TUN: encapsulates the packet towards `real` and sends it to `hop`. `FAST_L3`: `h` is
/// [`Frame::plain_ipv4`]'s, its IP header at `FAST_L3`, encapsulated inline
/// ([`encap::push4_at`]).
#[inline(always)]
fn tunnel<const FAST_L3: usize>(
    ctx: &XdpContext,
    h: &Headers,
    hop: &Hop<'_>,
    real: &Real,
) -> Result<Outcome, ParseError> {
    let pushed = if FAST_L3 != 0 {
        encap::push4_at::<FAST_L3>(ctx, real.tunnel_source[0], real.addr[0])
    } else {
        encap::push(ctx, h.l3, h.key.family, &real.tunnel_source, &real.addr)
    };
    match pushed {
        Ok(()) => {
            let frame = Frame::new(ctx.data(), ctx.data_end());
            Ok(after_l2(forward::route_cached(ctx, &frame, hop)))
        }
        Err(encap::EncapError::Resize) => Ok(Outcome::DropResize),
        Err(encap::EncapError::Parse(e)) => Err(e),
    }
}

/// The outcome after a NAT rewrite: without a neighbour entry, the kernel forwards the packet
/// (its destination is now the real server) and resolves the neighbour itself.
#[inline(always)]
pub(crate) fn after_nat(next: Next) -> Outcome {
    match next {
        Next::Tx => Outcome::FwdTx,
        Next::Redirect => Outcome::FwdRedirect,
        Next::NoNeighbour | Next::NoRoute => Outcome::PassNoNeigh,
        Next::TooBig => Outcome::PassTooBig,
    }
}

/// The outcome after DR / TUN: the destination is still the VIP (DR), so the kernel cannot
/// forward it; without a route or neighbour the packet is dropped (health checks keep the
/// real servers' neighbour entries fresh).
#[inline(always)]
fn after_l2(next: Next) -> Outcome {
    match next {
        Next::Tx => Outcome::FwdTx,
        Next::Redirect => Outcome::FwdRedirect,
        Next::NoNeighbour | Next::NoRoute => Outcome::DropNoRoute,
        Next::TooBig => Outcome::PassTooBig,
    }
}

/// Updates the TCP state of a known flow from the client's flags.
#[inline(always)]
fn track_tcp(flow: &mut Flow, flags: u8) {
    if flags & (TCP_FIN | TCP_RST) != 0 {
        if flow.tcp_state != tcp_state::CLOSING {
            flow.tcp_state = tcp_state::CLOSING;
            sched::add_active(flow.real, u64::MAX);
            if let Some(s) = per_cpu(&LBD_REAL_STATS, flow.real) {
                s.closed_conns += 1;
            }
        }
    } else if flow.tcp_state == tcp_state::SYN && flags & TCP_ACK != 0 {
        flow.tcp_state = tcp_state::ESTABLISHED;
    }
}

/// Schedules a new flow and records it (both directions for NAT and FNAT) into `flow`.
/// Returns the outcome when the packet cannot be forwarded.
///
/// For a bare SYN ([`new_if_absent`]: not looked up before), the flow's entry is written only if
/// none is there, before anything else is; a live flow found there is copied into `flow` and
/// sent as a known one (see [`syn_of_known`]), anything else is replaced.
///
/// Not inlined (nor its helpers): BPF-to-BPF calls keep their stack frames apart, and the
/// whole program must fit 512 bytes of stack.
#[inline(never)]
fn new_flow(h: &Headers, svc: &Service, stats: &mut GlobalStats, flow: &mut Flow) -> Option<Outcome> {
    let if_absent = new_if_absent(h, svc);
    let mut real_id = sched::schedule(svc, h);
    if real_id == 0 {
        real_id = svc.sorry_real;
    }
    if real_id == 0 {
        if let Some(s) = per_cpu(&LBD_SERVICE_STATS, svc.id) {
            s.no_real += 1;
        }
        return Some(Outcome::DropNoReal);
    }
    let Some(real) = sched::real_ref(real_id) else { return Some(Outcome::DropNoReal) };
    let tcp = h.key.proto == IPPROTO_TCP;
    flow.last_seen_ns = clock::now_ns();
    flow.real = real_id;
    flow.service = svc.id;
    flow.direction = direction::ORIGINAL;
    flow.method = svc.method;
    flow.tcp_state = if !tcp {
        tcp_state::NONE
    } else if h.tcp_flags & (TCP_FIN | TCP_RST) != 0 {
        tcp_state::CLOSING
    } else if h.tcp_flags & TCP_SYN == 0 {
        // Picked up mid-stream (after a restart without pinned state): established.
        tcp_state::ESTABLISHED
    } else {
        tcp_state::SYN
    };
    if svc.flags & service_flags::SYN_PROXY != 0 {
        synproxy::adopt(flow);
    }
    let rport = if real.port != 0 { real.port } else { h.key.dport };
    let method = Method::from_u8(svc.method);
    if method == Some(Method::Fnat) && !fnat_source(svc, h, real, rport, flow) {
        return Some(Outcome::DropNoLaddr);
    }
    // The original direction first: if it is taken, nothing else is written.
    if !maps::conn_insert(&h.key, flow, if_absent) && if_absent {
        if syn_of_known(h, svc, flow) {
            stats.flow_hits += 1;
            return None;
        }
        // The flow it replaces may be in the flow cache, if its FIN or RST went through
        // another CPU.
        cache::forget(&h.key);
        maps::conn_insert(&h.key, flow, false);
    }
    match method {
        // The reply entry is written from `flow` itself, set up as the reply and then back
        // as the original: one 64-byte buffer instead of two on a tight stack.
        Some(Method::Nat) => {
            let rkey = FlowKey { src: real.addr, dst: h.key.src, sport: rport, dport: h.key.sport, ..h.key };
            flow.direction = direction::REPLY;
            flow.nat_addr = h.key.dst;
            flow.nat_port = h.key.dport;
            maps::conn_insert(&rkey, flow, false);
            flow.direction = direction::ORIGINAL;
            // SAFETY: a field of `flow` (not `= [0; 4]`: a byte-at-a-time memset, crate::mem).
            unsafe { mem::zero(&raw mut flow.nat_addr) };
            flow.nat_port = 0;
        }
        Some(Method::Fnat) => {
            let (laddr, lport) = (flow.nat_addr, flow.nat_port);
            let rkey = FlowKey { src: real.addr, dst: laddr, sport: rport, dport: lport, ..h.key };
            flow.direction = direction::REPLY;
            flow.nat_addr = h.key.dst;
            flow.nat_port = h.key.dport;
            flow.client_addr = h.key.src;
            flow.client_port = h.key.sport;
            maps::conn_insert(&rkey, flow, false);
            flow.direction = direction::ORIGINAL;
            flow.nat_addr = laddr;
            flow.nat_port = lport;
            // SAFETY: as above.
            unsafe { mem::zero(&raw mut flow.client_addr) };
            flow.client_port = 0;
        }
        _ => {}
    }
    stats.new_flows += 1;
    if tcp && flow.tcp_state != tcp_state::CLOSING {
        sched::add_active(real_id, 1);
    }
    if let Some(s) = per_cpu(&LBD_SERVICE_STATS, svc.id) {
        s.new_conns += 1;
    }
    if let Some(s) = per_cpu(&LBD_REAL_STATS, real_id) {
        s.new_conns += 1;
    }
    None
}

/// Whether [`new_flow`] inserts only if absent: for a bare SYN, which `original_flow` did not
/// look up (computed in both, not passed: an argument made the verifier walk `new_flow` once
/// per value).
#[inline(always)]
fn new_if_absent(h: &Headers, svc: &Service) -> bool {
    h.key.proto == IPPROTO_TCP
        && h.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
        && svc.flags & service_flags::SYN_PROXY == 0
}

/// A bare SYN whose flow `new_flow` found in the table (a retransmitted SYN, a reused port),
/// `flow` its new schedule: as the lookup before scheduling would have had it, a live flow of
/// this service is refreshed and copied into `flow` (true: send it as it is); an expired one,
/// one closing, or one of another service is to be replaced (false), and no longer counts as
/// active on its real.
#[inline(never)]
fn syn_of_known(h: &Headers, svc: &Service, flow: &mut Flow) -> bool {
    let Some(settings) = LBD_SETTINGS.get(0) else { return false };
    let Some(entry) = maps::conn(&h.key) else { return false };
    // SAFETY: a value pointer from a successful lookup; only this flow's packets write it.
    let entry = unsafe { &mut *entry };
    let now = flow.last_seen_ns;
    let expired = now.saturating_sub(entry.last_seen_ns) > timeout_ns(settings, h.key.proto, entry.tcp_state);
    let closing = entry.tcp_state == tcp_state::CLOSING;
    if entry.direction == direction::ORIGINAL && entry.service == svc.id && !expired && !closing {
        entry.last_seen_ns = now;
        track_tcp(entry, h.tcp_flags);
        *flow = *entry;
        return true;
    }
    if entry.direction == direction::ORIGINAL && !closing {
        sched::add_active(entry.real, u64::MAX);
    }
    false
}

/// Picks an FNAT local address and port for a flow to `real` into `flow.nat_addr` /
/// `flow.nat_port`: an address of the service's pool by client hash, and a random port whose
/// reply tuple is free. Returns false when none is found.
#[inline(never)]
fn fnat_source(svc: &Service, h: &Headers, real: &Real, rport: u16, flow: &mut Flow) -> bool {
    let Some(settings) = LBD_SETTINGS.get(0) else { return false };
    let base = svc.laddr_group * MAX_LADDRS_PER_GROUP;
    let mut count = PoolCount { base, count: 0 };
    // SAFETY: the callback is a BPF function of the expected signature; the context points to
    // `count`, which outlives the call. (bpf_loop: the verifier checks the body once.)
    unsafe {
        bpf_loop(MAX_LADDRS_PER_GROUP, pool_count_step as *mut c_void, (&raw mut count).cast(), 0);
    }
    let count = count.count;
    if count == 0 {
        return false;
    }
    let Some(laddr) = LBD_LADDRS.get(base + sched::hash_addr(u32::from(h.key.sport), &h.key.src) % count)
    else {
        return false;
    };
    let min = u32::from(settings.fnat_port_min);
    let range = u32::from(settings.fnat_port_max).saturating_sub(min) + 1;
    let mut rkey = FlowKey {
        src: real.addr,
        dst: laddr.addr,
        sport: rport,
        dport: 0,
        proto: h.key.proto,
        family: h.key.family,
        pad: 0,
    };
    for _ in 0..8 {
        // SAFETY: plain helper call.
        let port = (min + unsafe { bpf_get_prandom_u32() } % range) as u16;
        rkey.dport = port.to_be();
        if maps::conn(&rkey).is_none() {
            flow.nat_addr = laddr.addr;
            flow.nat_port = rkey.dport;
            return true;
        }
    }
    false
}

/// Counting the addresses of an FNAT pool: used entries come first.
#[repr(C)]
struct PoolCount {
    base: u32,
    count: u32,
}

extern "C" fn pool_count_step(i: u32, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the context given, a PoolCount on the caller's stack.
    let pool = unsafe { &mut *ctx.cast::<PoolCount>() };
    match LBD_LADDRS.get(pool.base + i) {
        Some(LocalAddr { family, .. }) if *family != 0 => {
            pool.count += 1;
            0
        }
        // The first unused entry ends the pool: stop the loop.
        _ => 1,
    }
}

/// A bare SYN for no service: the reply direction of a tracked flow, or nothing of ours.
#[inline(never)]
fn reply_lookup(ctx: &XdpContext, frame: &Frame, h: &mut Headers, stats: &mut GlobalStats) -> Outcome {
    let Some(flow) = maps::conn(&h.key) else { return Outcome::PassNoService };
    // SAFETY: a value pointer from a successful lookup.
    let flow = unsafe { &mut *flow };
    if flow.direction != direction::REPLY {
        return Outcome::PassNoService;
    }
    reply(ctx, frame, h, flow, stats)
}

/// A reply of a SYN proxy flow (see [`synproxy::from_real`]): the real server's SYN-ACK ends
/// here; anything later has its sequence number shifted, then goes as any reply. Called from
/// [`balance`]: under `tracked`, the proxy's frames made the chain longer than 512 bytes.
/// It looks the flow up again: a BPF function cannot hand a map value pointer back to its caller.
#[inline(never)]
fn proxied_reply(ctx: &XdpContext, h: &mut Headers, stats: &mut GlobalStats) -> Outcome {
    let frame = &Frame::new(ctx.data(), ctx.data_end());
    let Some(flow) = maps::conn(&h.key) else { return Outcome::PassNoService };
    // SAFETY: a value pointer from a successful lookup; only this flow's packets write it.
    let flow = unsafe { &mut *flow };
    if let Some(outcome) = synproxy::from_real(ctx, frame, h, flow, stats) {
        return outcome;
    }
    reply(ctx, frame, h, flow, stats)
}

/// Real server to client (NAT) or to a local address (FNAT), by the reply entry `flow`:
/// translate back. A plain `Outcome`: a two-field result is a hidden sixth argument.
#[inline(never)]
fn reply(
    ctx: &XdpContext,
    frame: &Frame,
    h: &mut Headers,
    flow: &mut Flow,
    stats: &mut GlobalStats,
) -> Outcome {
    translate_reply(ctx, frame, h, flow, stats).unwrap_or(Outcome::DropMalformed)
}

#[inline(always)]
fn translate_reply(
    ctx: &XdpContext,
    frame: &Frame,
    h: &mut Headers,
    flow: &mut Flow,
    stats: &mut GlobalStats,
) -> Result<Outcome, ParseError> {
    flow.last_seen_ns = clock::now_ns();
    // The LB routes replies: TTL expiry is the kernel's to report.
    if !nat::decrement_ttl(frame, h)? {
        return Ok(Outcome::PassNoService);
    }
    // One literal per method, read from the entry in place: a rewrite whose fields are set
    // or not at run time has LLVM store the unset ones' undefined payloads, which the
    // verifier rejects once `nat::rewrite` is inlined.
    let fnat = Method::from_u8(flow.method) == Some(Method::Fnat);
    if h.key.family == family::IPV4 {
        let src = Some((flow.nat_addr[0], flow.nat_port));
        if fnat {
            nat::rewrite4(frame, h, src, Some((flow.client_addr[0], flow.client_port)))?;
        } else {
            nat::rewrite4(frame, h, src, None)?;
        }
    } else if fnat {
        let rw = Rewrite {
            src: Some(flow.nat_addr),
            sport: Some(flow.nat_port),
            dst: Some(flow.client_addr),
            dport: Some(flow.client_port),
        };
        nat::rewrite(frame, h, &rw)?;
    } else {
        let rw = Rewrite { src: Some(flow.nat_addr), sport: Some(flow.nat_port), ..Rewrite::default() };
        nat::rewrite(frame, h, &rw)?;
    }
    stats.reply_translated += 1;
    let next =
        forward::route_cached(ctx, frame, &Hop::reply(&h.key.dst, h.key.family, h.l3, flow.last_seen_ns));
    Ok(after_nat(next))
}
