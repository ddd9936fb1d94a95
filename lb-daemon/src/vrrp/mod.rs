//! The VRRP engine (RFC 5798 VRRPv3, RFC 3768 VRRPv2), compatible with keepalived 2.2.7.
//!
//! It is layered like rustls: the wire format and the protocol logic know nothing of sockets or
//! clocks, so that they are tested byte for byte and transition by transition, and the layers
//! that do I/O stay thin.
//!
//! - [`packet`]: the advert codec. Decodes VRRPv2/v3 adverts over IPv4/IPv6 into types that
//!   cannot hold an invalid message and returns a typed [`packet::VrrpPacketError`] for anything
//!   malformed; encodes them (and keepalived's IPv4 header) to the bytes keepalived sends.
//!   Checksums, including the v3 pseudo-header, live here.
//! - [`state`]: the sans-IO state machine of RFC 5798 §6 with keepalived's extensions
//!   (preempt_delay, nopreempt, lower_prio_no_advert, tracking weights, FAULT). An
//!   [`state::Instance`] takes [`state::Event`]s stamped with the time and returns
//!   [`state::Action`]s; it never reads a clock or touches the network.
//! - later: `socket` (raw sockets: multicast/unicast send and receive, TTL and unicast-peer
//!   checks, driving instances from their deadlines), `addr` (VIPs and virtual routes through
//!   [`crate::netlink`], gratuitous ARP / unsolicited NA), `track` (interfaces, scripts, files →
//!   `Fault` and `PriorityAdjustment` events), sync groups and notify scripts.
//!
//! Data flow for a received advert: socket → [`packet::Ipv4VrrpPacket::decode`] (or
//! [`packet::VrrpAdvert::decode`] for IPv6) → [`packet::check_hop_limit`] → dispatch by VRID →
//! [`state::Instance::handle`] → actions → socket / addr / notify. The instance builds the adverts
//! it asks to send ([`state::Instance::advert`]); the socket encodes them per destination, since
//! the v3 checksum covers the destination address.

pub mod packet;
pub mod socket;
pub mod state;
