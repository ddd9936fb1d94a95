//! The flow cache: copies of established flows' entries in a per-CPU, two-way set-associative
//! array in front of the connection table, so that most packets of a known flow are sent
//! without a hash table lookup.
//!
//! Why: the kernel's hash lookup of a flow key (`LBD_CONNS4`, a helper call whose hashing,
//! bucket walk and compare each return through the return thunk of this machine's Safe RET
//! mitigation) was about half of an established packet's cost. An array lookup is inlined by
//! the verifier; the set's index (two slots) is a hash of the key that the program computes.
//!
//! IPv6 flows have a cache of their own (`LBD_FLOW_CACHE6`, whole keys), which `lb_xdp_v6`
//! reads after its parser, before its full path; the rules below hold for both.
//!
//! Where: only the entry point `lb_xdp` serves from the IPv4 cache, and only plain IPv4 frames
//! (untagged or with one VLAN tag, without IP options, TCP or UDP:
//! [`crate::parse::Frame::plain_ipv4`]), with no BPF-to-BPF call
//! ([`crate::balancer::cached`]); everything else, misses included, goes by tail call to
//! `lb_xdp_full` (untagged IPv6 straight to `lb_xdp_v6`), which fills the slots (a frame with
//! two tags or with IP options always takes the full path).
//!
//! Rules:
//! - Only TCP and UDP packets that change no flow state are served from a slot: TCP without
//!   SYN, FIN or RST. A packet that does (on the full path) empties its flow's slot on this
//!   CPU.
//! - The full path ([`crate::balancer`]'s `tracked`) copies every packet's flow entry into a
//!   slot of its family's cache and sends the packet from there. A packet whose later packets
//!   the cache could serve keeps its flow in its slot: an established TCP flow, a UDP flow,
//!   or a reply entry (NAT, FNAT), not a SYN proxy flow. Anything else (an IPv4 frame the
//!   entry point does not parse, a SYN proxy flow, a packet that changes state) goes through
//!   the scratch slot, which stays empty, so that it evicts no flow; or through its flow's
//!   slot, if it has one, which it empties. When both slots of a set hold flows, a new one
//!   takes the slot that serves nothing (an expired or older-generation flow), else the one
//!   due soonest. A bare SYN that replaces a closed flow's entry empties its slot (the FIN or RST
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
use lb_common::lb::{
    Flow, FlowCacheSlot, FlowCacheSlot6, FlowKey, FlowKey4, Settings, direction, family, tcp_state,
};

use crate::{
    maps::per_cpu,
    parse::{ETH_HLEN, Headers, IPPROTO_UDP, TCP_FIN, TCP_RST, TCP_SYN, VLAN_HLEN},
    sched::mix,
};

/// Slots per CPU (a power of two): 768 KiB of 96-byte slots, in sets of two.
const SLOTS: u32 = 8192;

/// Slots of the IPv6 cache per CPU (a power of two): 480 KiB of 120-byte slots.
const SLOTS6: u32 = 4096;

/// How long a slot serves its flow before the full path looks the flow up again.
const REFRESH_NS: u64 = 1_000_000_000;

/// The flow cache, per CPU (not pinned: a restarted program starts with an empty one). The
/// slot after the sets is the scratch slot: where the full path sends a packet whose flow it
/// does not keep in the cache from (a frame the entry point does not parse, the SYN proxy, a
/// packet that changes state), so that it evicts no flow.
#[btf_map]
static LBD_FLOW_CACHE: PerCpuArray<FlowCacheSlot, { SLOTS as usize + 1 }> = PerCpuArray::new();

/// The IPv6 flow cache, per CPU, read by `lb_xdp_v6`; its last slot is its scratch slot.
#[btf_map]
static LBD_FLOW_CACHE6: PerCpuArray<FlowCacheSlot6, { SLOTS6 as usize + 1 }> = PerCpuArray::new();

/// A slot of either cache: IPv4 ([`FlowCacheSlot`], a 16-byte key) or IPv6
/// ([`FlowCacheSlot6`], the whole key).
pub(crate) trait Slot: Sized + 'static {
    /// Slots in sets; the scratch slot's index.
    const SLOTS: u32;
    /// Whether [`find`] looks both slots of a set up before comparing keys. The lookups are
    /// helper calls to LLVM (the verifier inlines them): a compare between them keeps more
    /// values alive across a call, in spills, which cost the IPv4 fast path 4-6 ns; with the
    /// IPv6 key's longer compare, both up front made a frame too large for the longest chain.
    const BOTH_FIRST: bool;
    /// This CPU's slot `index`.
    fn at(index: u32) -> Option<&'static mut Self>;
    /// The index of the first slot of `key`'s set.
    fn set_index(key: &FlowKey) -> u32;
    /// Whether the slot holds the flow of `key` (word by word: an array comparison would be a
    /// call to a byte-at-a-time `bcmp`).
    fn holds(&self, key: &FlowKey) -> bool;
    /// Writes `key`.
    fn put_key(&mut self, key: &FlowKey);
    /// The key's protocol (0: empty) and the flow.
    fn parts(&mut self) -> (&mut u8, &mut Flow);
    /// The generation and expiry fields.
    fn stamps(&mut self) -> (&mut u32, &mut u64);

    /// Writes `key`, with protocol 0 (an empty slot) unless `keep`.
    #[inline(always)]
    fn set_key(&mut self, key: &FlowKey, keep: bool) {
        self.put_key(key);
        if !keep {
            *self.parts().0 = 0;
        }
    }
}

/// [`Slot::parts`] and [`Slot::stamps`], for slot types with the same field names.
macro_rules! slot_fields {
    () => {
        #[inline(always)]
        fn parts(&mut self) -> (&mut u8, &mut Flow) {
            (&mut self.key.proto, &mut self.flow)
        }

        #[inline(always)]
        fn stamps(&mut self) -> (&mut u32, &mut u64) {
            (&mut self.generation, &mut self.until_ns)
        }
    };
}

impl Slot for FlowCacheSlot {
    const SLOTS: u32 = SLOTS;
    const BOTH_FIRST: bool = true;

    #[inline(always)]
    fn at(index: u32) -> Option<&'static mut Self> {
        per_cpu(&LBD_FLOW_CACHE, index)
    }

    #[inline(always)]
    fn set_index(key: &FlowKey) -> u32 {
        let ports = u32::from(key.sport) << 16 | u32::from(key.dport);
        mix(mix(key.src[0], key.dst[0]), ports ^ u32::from(key.proto)) & (SLOTS - 2)
    }

    #[inline(always)]
    fn holds(&self, key: &FlowKey) -> bool {
        let k = &self.key;
        let ports = u32::from(k.sport ^ key.sport) | u32::from(k.dport ^ key.dport) << 16;
        (k.src ^ key.src[0]) | (k.dst ^ key.dst[0]) | ports | u32::from(k.proto ^ key.proto) == 0
    }

    #[inline(always)]
    fn put_key(&mut self, key: &FlowKey) {
        self.key = FlowKey4::of(key);
    }

    slot_fields!();
}

impl Slot for FlowCacheSlot6 {
    const SLOTS: u32 = SLOTS6;
    const BOTH_FIRST: bool = false;

    #[inline(always)]
    fn at(index: u32) -> Option<&'static mut Self> {
        per_cpu(&LBD_FLOW_CACHE6, index)
    }

    #[inline(always)]
    fn set_index(key: &FlowKey) -> u32 {
        let [s0, s1, s2, s3] = key.src;
        let [d0, d1, d2, d3] = key.dst;
        let ports = u32::from(key.sport) << 16 | u32::from(key.dport);
        let addrs = mix(mix(s0 ^ s1, s2 ^ s3), mix(d0 ^ d1, d2 ^ d3));
        mix(addrs, ports ^ u32::from(key.proto)) & (SLOTS6 - 2)
    }

    #[inline(always)]
    fn holds(&self, key: &FlowKey) -> bool {
        let k = &self.key;
        let mut diff = u32::from(k.sport ^ key.sport) | u32::from(k.dport ^ key.dport) << 16;
        diff |= u32::from(k.proto ^ key.proto);
        for i in 0..4 {
            diff |= (k.src[i] ^ key.src[i]) | (k.dst[i] ^ key.dst[i]);
        }
        diff == 0
    }

    #[inline(always)]
    fn put_key(&mut self, key: &FlowKey) {
        self.key = *key;
    }

    slot_fields!();
}

/// The slot of `key`'s set on this CPU that holds its flow, if one does.
///
/// Sets of two slots: with one slot per hash, the flows whose hashes collide (about one in
/// eight of 1024 flows over 8192 slots) took each other's slot on every packet, and all of
/// their packets the full path.
#[inline(always)]
fn find<S: Slot>(key: &FlowKey) -> Option<&'static mut S> {
    let first = S::set_index(key);
    if S::BOTH_FIRST {
        let (a, b) = (S::at(first)?, S::at(first | 1)?);
        return if a.holds(key) {
            Some(a)
        } else if b.holds(key) {
            Some(b)
        } else {
            None
        };
    }
    let a = S::at(first)?;
    if a.holds(key) {
        return Some(a);
    }
    let b = S::at(first | 1)?;
    if b.holds(key) { Some(b) } else { None }
}

/// Whether a packet with these TCP flags (0 for UDP) changes no flow state.
#[inline(always)]
pub(crate) fn stateless(tcp_flags: u8) -> bool {
    tcp_flags & (TCP_SYN | TCP_FIN | TCP_RST) == 0
}

/// The slot that sends this TCP or UDP packet, which changes no flow state ([`stateless`]),
/// if there is one, stamped `now`: an IPv4 one ([`FlowCacheSlot`]) for the entry point's
/// plain frames, an IPv6 one for `lb_xdp_v6`.
#[inline(always)]
pub(crate) fn lookup<S: Slot>(h: &Headers, settings: &Settings, now: u64) -> Option<&'static mut S> {
    let slot = find::<S>(&h.key)?;
    let (generation, until_ns) = slot.stamps();
    if *generation != settings.generation || now >= *until_ns {
        return None;
    }
    slot.parts().1.last_seen_ns = now;
    Some(slot)
}

/// The full path's offer of the packet `h` of the flow entry `flow` (already updated for the
/// packet): copied into a slot of the cache of its family (`S`), which the packet is then
/// sent from. A packet whose flow's later packets the cache may serve ([`cacheable`]) goes
/// into its flow's slot, which keeps it; any other into the scratch slot, which is left empty,
/// or into its flow's slot if the flow has one, which is then emptied. `timeout_ns`: the
/// flow's timeout in its state. `None` only if the array lookup fails.
#[inline(always)]
pub(crate) fn offer<S: Slot>(
    h: &Headers,
    settings: &Settings,
    flow: &Flow,
    timeout_ns: u64,
) -> Option<&'static mut S> {
    // The entry's `last_seen_ns` is now: `tracked` has just stamped it.
    let now = flow.last_seen_ns;
    let keep = cacheable(h, flow);
    // The index is chosen first and looked up once: a slot pointer of one origin for the
    // verifier, which otherwise walks the rest of the path once per origin.
    let index = slot_index::<S>(&h.key, settings.generation, keep, now);
    let slot = S::at(index)?;
    slot.set_key(&h.key, keep);
    let (generation, until_ns) = slot.stamps();
    *generation = settings.generation;
    *until_ns = now + core::cmp::min(REFRESH_NS, timeout_ns / 2);
    *slot.parts().1 = *flow;
    Some(slot)
}

/// The slot [`offer`] fills for `key`: the flow's own slot; else, for a flow to `keep`, a slot
/// that serves nothing at `now`, else the one that would serve for less long; else the scratch
/// slot, so that a packet that is not to be kept evicts no flow that is.
///
/// Not inlined: with two slots of the IPv6 cache compared inline, `tracked`'s frame made the
/// longest chain of frames larger than 512 bytes.
#[inline(never)]
fn slot_index<S: Slot>(key: &FlowKey, generation: u32, keep: bool, now: u64) -> u32 {
    let first = S::set_index(key);
    let (Some(a), Some(b)) = (S::at(first), S::at(first | 1)) else { return S::SLOTS };
    if a.holds(key) {
        first
    } else if b.holds(key) {
        first | 1
    } else if !keep {
        S::SLOTS
    } else if !live(a, generation, now) {
        first
    } else if !live(b, generation, now) || *b.stamps().1 <= *a.stamps().1 {
        first | 1
    } else {
        first
    }
}

/// Whether later packets of the flow entry `flow`, of which `h` is a packet, may be sent from
/// the flow's slot (see the module's rules): of an established TCP flow, a UDP flow or a reply
/// entry, not a SYN proxy flow, and not one that changes state; if IPv4, by the entry point,
/// so an IPv4 packet without options, untagged or after one VLAN tag (what
/// [`crate::parse::Frame::plain_ipv4`] reads). IPv6 packets are served by `lb_xdp_v6` after
/// its parser, whatever their layout.
#[inline(always)]
fn cacheable(h: &Headers, flow: &Flow) -> bool {
    // The header offsets compared through an opaque value: compared directly, they would be
    // known exactly on one branch and as a range on the other, and the verifier would walk
    // the rest of the path twice (see `maps::opaque`).
    // 0 for an IP header after 14 or 18 bytes (untagged, or one tag) and without options.
    let layout = if h.key.family == family::IPV4 {
        crate::maps::opaque((h.l3.wrapping_sub(ETH_HLEN) & !VLAN_HLEN) | (h.l4 ^ (h.l3 + 20)))
    } else {
        0
    };
    layout == 0
        && flow.synproxy == 0
        && stateless(h.tcp_flags)
        && (h.key.proto == IPPROTO_UDP
            || flow.direction == direction::REPLY
            || flow.tcp_state == tcp_state::ESTABLISHED)
}

/// Whether `slot` would serve a packet at `now`: it holds a flow of the current generation
/// that is not yet due for the full path.
#[inline(always)]
fn live<S: Slot>(slot: &mut S, generation: u32, now: u64) -> bool {
    let proto = *slot.parts().0;
    let (filled_in, until_ns) = slot.stamps();
    proto != 0 && *filled_in == generation && *until_ns > now
}

/// Empties the slot of `key` (on this CPU): its flow's entry is being replaced, or its state
/// changes. Not inlined: its slot pointers made `new_flow`'s frame too large for the longest
/// chain of frames.
#[inline(never)]
pub(crate) fn forget(key: &FlowKey) {
    if key.family == family::IPV4 {
        if let Some(slot) = find::<FlowCacheSlot>(key) {
            slot.key.proto = 0;
        }
    } else if let Some(slot) = find::<FlowCacheSlot6>(key) {
        slot.key.proto = 0;
    }
}
