//! The flow cache: copies of established flows' entries in a per-CPU, two-way set-associative
//! array in front of the connection table, so that most packets of a known flow are sent
//! without a hash table lookup.
//!
//! Why: the kernel's hash lookup of a flow key (`LBD_CONNS4`, a helper call whose hashing,
//! bucket walk and compare each return through the return thunk of this machine's Safe RET
//! mitigation) was about half of an established packet's cost. An array lookup is inlined by
//! the verifier; the set's index (two slots) is a hash of the key that the program computes.
//!
//! Where: only the entry point `lb_xdp` serves from the cache, and only plain IPv4 frames
//! (untagged or with one VLAN tag, without IP options, TCP or UDP:
//! [`crate::parse::Frame::plain_ipv4`]), with no BPF-to-BPF call
//! ([`crate::balancer::cached`]); everything else, misses included, goes by tail call to
//! `lb_xdp_full`, which fills the slots (a frame with two tags or with IP options always
//! takes the full path).
//!
//! Rules:
//! - Only IPv4 TCP and UDP packets that change no flow state are served from a slot: TCP
//!   without SYN, FIN or RST. Such a packet (on the full path) empties its flow's slot on this
//!   CPU.
//! - The full path ([`crate::balancer`]'s `tracked`) copies every packet's flow entry into a
//!   slot and sends the packet from there. A packet the entry point could have served keeps
//!   its flow in its slot: an established TCP flow, a UDP flow, or a reply entry (NAT, FNAT),
//!   not a SYN proxy flow. Anything else (IPv6, a frame the entry point does not parse, a
//!   SYN proxy flow, a packet that changes state) goes through the scratch slot, which stays
//!   empty, so that it evicts no flow; or through its flow's slot, if it has one, which it
//!   empties. When both slots of a set hold flows, a new one takes the slot that serves
//!   nothing (an expired or older-generation flow), else the one due soonest. A bare SYN that replaces a closed flow's entry empties its slot (the FIN or RST
//!   emptied it if it came through this CPU); a flow whose real server is gone empties it.
//!   Not every new flow: touching a cold slot made a new flow 1.3x dearer.
//! - Not covered: a flow evicted from a full connection table while its slot serves, whose
//!   client opens a new connection from the same port within the slot's second: that
//!   connection's packets on this CPU go to the evicted flow's real server until the slot
//!   expires. Likewise an entry rewritten in place by the daemon (connection sync) is seen
//!   when the slot expires.
//! - A slot serves for at most [`REFRESH_NS`] (less for flows whose timeout is under two
//!   seconds: half of it), then its flow takes the full path once, which looks the entry up,
//!   checks its timeout, refreshes its `last_seen_ns` (the daemon's flow views, restart
//!   adoption and expiry read it) and fills the slot again. State changed on another CPU (a FIN
//!   or RST there) is seen here within that time; meanwhile this CPU sends the flow's packets
//!   to the same real server, as the full path also does for a closing flow.
//! - A slot holds the [`Settings::generation`] it was filled in: the daemon bumps it when an
//!   apply writes services or real servers, and every slot of an older one is a miss. The real
//!   server's entry is read on every packet: a cleared one (a removed real) sends the packet
//!   the full path.
//!
//! Per CPU, not shared: no locks or sequence words, and a flow's packets stay on one CPU with
//! receive-side scaling; a slot is written only by the CPU that reads it.

use aya_ebpf::{btf_maps::PerCpuArray, macros::btf_map};
use lb_common::lb::{Flow, FlowCacheSlot, FlowKey, FlowKey4, Settings, direction, family, tcp_state};

use crate::{
    maps::per_cpu,
    parse::{ETH_HLEN, Headers, IPPROTO_UDP, TCP_FIN, TCP_RST, TCP_SYN, VLAN_HLEN},
    sched::mix,
};

/// Slots per CPU (a power of two): 768 KiB of 96-byte slots, in sets of two.
const SLOTS: u32 = 8192;

/// The scratch slot, after the sets: where the full path sends a packet whose flow it does not
/// keep in the cache from (IPv6, the SYN proxy, a tagged frame), so that it evicts no flow.
const SCRATCH: u32 = SLOTS;

/// How long a slot serves its flow before the full path looks the flow up again.
const REFRESH_NS: u64 = 1_000_000_000;

/// The flow cache, per CPU (not pinned: a restarted program starts with an empty one).
#[btf_map]
static LBD_FLOW_CACHE: PerCpuArray<FlowCacheSlot, { SLOTS as usize + 1 }> = PerCpuArray::new();

/// The set of `key` on this CPU: the two slots its flow may be in.
///
/// Two-way: with one slot per hash, the flows whose hashes collide (about one in eight of 1024
/// flows over 8192 slots) took each other's slot on every packet, and all of their packets
/// the full path.
#[inline(always)]
fn set(key: &FlowKey) -> Option<[&'static mut FlowCacheSlot; 2]> {
    let first = set_index(key);
    Some([per_cpu(&LBD_FLOW_CACHE, first)?, per_cpu(&LBD_FLOW_CACHE, first | 1)?])
}

/// The index of the first slot of `key`'s set.
#[inline(always)]
fn set_index(key: &FlowKey) -> u32 {
    let ports = u32::from(key.sport) << 16 | u32::from(key.dport);
    mix(mix(key.src[0], key.dst[0]), ports ^ u32::from(key.proto)) & (SLOTS - 2)
}

/// The slot of `set` that holds `key`'s flow, if one does.
#[inline(always)]
fn find(set: [&'static mut FlowCacheSlot; 2], key: &FlowKey) -> Option<&'static mut FlowCacheSlot> {
    let [a, b] = set;
    if holds(a, key) {
        Some(a)
    } else if holds(b, key) {
        Some(b)
    } else {
        None
    }
}

/// Whether `slot` holds the flow of the IPv4 key `key` (word by word: an array comparison
/// would be a call to a byte-at-a-time `bcmp`).
#[inline(always)]
fn holds(slot: &FlowCacheSlot, key: &FlowKey) -> bool {
    let k = &slot.key;
    let ports = u32::from(k.sport ^ key.sport) | u32::from(k.dport ^ key.dport) << 16;
    (k.src ^ key.src[0]) | (k.dst ^ key.dst[0]) | ports | u32::from(k.proto ^ key.proto) == 0
}

/// Whether a packet with these TCP flags (0 for UDP) changes no flow state.
#[inline(always)]
pub(crate) fn stateless(tcp_flags: u8) -> bool {
    tcp_flags & (TCP_SYN | TCP_FIN | TCP_RST) == 0
}

/// The slot that sends this IPv4 TCP or UDP packet, which changes no flow state
/// ([`stateless`]), if there is one, stamped `now`.
#[inline(always)]
pub(crate) fn lookup(h: &Headers, settings: &Settings, now: u64) -> Option<&'static mut FlowCacheSlot> {
    let slot = find(set(&h.key)?, &h.key)?;
    if slot.generation != settings.generation || now >= slot.until_ns {
        return None;
    }
    slot.flow.last_seen_ns = now;
    Some(slot)
}

/// The full path's offer of the packet `h` of the flow entry `flow` (already updated for the
/// packet): copied into a slot, which the packet is then sent from. A packet the entry point
/// may serve later packets of ([`cacheable`]) goes into its flow's slot, which keeps it;
/// any other into the scratch slot, which is left empty, or into its flow's slot if the flow
/// has one, which is then emptied. `timeout_ns`: the flow's timeout in its state. `None` only
/// if the array lookup fails.
#[inline(always)]
pub(crate) fn offer(
    h: &Headers,
    settings: &Settings,
    flow: &Flow,
    timeout_ns: u64,
) -> Option<&'static mut FlowCacheSlot> {
    // The entry's `last_seen_ns` is now: `tracked` has just stamped it.
    let keep = cacheable(h, flow);
    // The index is chosen first and looked up once: a slot pointer of one origin for the
    // verifier, which otherwise walks the rest of the path once per origin.
    let index = if h.key.family != family::IPV4 {
        SCRATCH
    } else {
        let first = set_index(&h.key);
        let a = per_cpu(&LBD_FLOW_CACHE, first)?;
        let b = per_cpu(&LBD_FLOW_CACHE, first | 1)?;
        // The flow's own slot; else, for a flow to keep, a slot that serves nothing, else
        // the one that would serve for less long; else the scratch slot, so that a packet
        // that is not to be kept evicts no flow that is.
        let now = flow.last_seen_ns;
        if holds(a, &h.key) {
            first
        } else if holds(b, &h.key) {
            first | 1
        } else if !keep {
            SCRATCH
        } else if !live(a, settings, now) {
            first
        } else if !live(b, settings, now) || b.until_ns <= a.until_ns {
            first | 1
        } else {
            first
        }
    };
    let slot = per_cpu(&LBD_FLOW_CACHE, index)?;
    slot.key = FlowKey4::of(&h.key);
    if !keep {
        slot.key.proto = 0;
    }
    slot.generation = settings.generation;
    slot.until_ns = flow.last_seen_ns + core::cmp::min(REFRESH_NS, timeout_ns / 2);
    slot.flow = *flow;
    Some(slot)
}

/// Whether later packets of the flow entry `flow`, of which `h` is a packet, may be sent from
/// the flow's slot by the entry point (see the module's rules): an IPv4 packet without options,
/// untagged or after one VLAN tag (what [`crate::parse::Frame::plain_ipv4`] reads), of an established TCP
/// flow, a UDP flow or a reply entry, not a SYN proxy flow, and not one that changes state.
#[inline(always)]
fn cacheable(h: &Headers, flow: &Flow) -> bool {
    // The header offsets compared through an opaque value: compared directly, they would be
    // known exactly on one branch and as a range on the other, and the verifier would walk
    // the rest of the path twice (see `maps::opaque`).
    // 0 for an IP header after 14 or 18 bytes (untagged, or one tag) and without options.
    let layout = crate::maps::opaque((h.l3.wrapping_sub(ETH_HLEN) & !VLAN_HLEN) | (h.l4 ^ (h.l3 + 20)));
    h.key.family == family::IPV4
        && layout == 0
        && flow.synproxy == 0
        && stateless(h.tcp_flags)
        && (h.key.proto == IPPROTO_UDP
            || flow.direction == direction::REPLY
            || flow.tcp_state == tcp_state::ESTABLISHED)
}

/// Whether `slot` would serve a packet at `now`: it holds a flow of the current generation
/// that is not yet due for the full path.
#[inline(always)]
fn live(slot: &FlowCacheSlot, settings: &Settings, now: u64) -> bool {
    slot.key.proto != 0 && slot.generation == settings.generation && slot.until_ns > now
}

/// Empties the slot of `key` (on this CPU): its flow's entry is being replaced, or its state
/// changes. Not inlined: its two slot pointers made `new_flow`'s frame too large for the
/// longest chain of frames.
#[inline(never)]
pub(crate) fn forget(key: &FlowKey) {
    if key.family == family::IPV4
        && let Some(set) = set(key)
        && let Some(slot) = find(set, key)
    {
        slot.key.proto = 0;
    }
}
