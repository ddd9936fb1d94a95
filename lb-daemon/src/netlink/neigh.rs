//! Neighbour entries the data plane needs resolved before the first packet.
//!
//! The XDP program takes the real server's next hop from the kernel's FIB (`bpf_fib_lookup`); when
//! the neighbour (ARP / NDP) entry is missing it can only hand the packet to the kernel, which
//! then answers a SYN for the local VIP with a reset. So the daemon asks the kernel to keep the
//! next hop of every real server resolved: a *managed* neighbour entry (`NTF_EXT_MANAGED`, Linux
//! 5.16, made for this use), which the kernel resolves at once and keeps reachable without
//! traffic. Entries an operator set statically (`nud permanent` / `noarp`) are left alone.

use std::net::IpAddr;

use futures::TryStreamExt as _;
use netlink_packet_route::{
    AddressFamily,
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourExtFlags, NeighbourMessage, NeighbourState},
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteType},
};

use super::{Netlink, NetlinkError, is_errno};

/// Where the kernel sends packets for an address: the neighbour they go to and its interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NextHop {
    /// The gateway, or the destination itself when it is on a connected network.
    pub addr: IpAddr,
    /// The output interface.
    pub ifindex: u32,
}

impl std::fmt::Display for NextHop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on ifindex {}", self.addr, self.ifindex)
    }
}

/// The kernel's neighbour entries, read once for many decisions.
#[derive(Debug, Default)]
pub struct NeighbourTable {
    entries: Vec<(NextHop, NeighbourMessage)>,
}

/// What the kernel has for a next hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// No entry, or one the kernel made for its own traffic.
    Ordinary,
    /// A managed entry (lbd's, from an earlier run, or anyone's).
    Managed,
    /// A static entry (permanent or noarp): the operator's.
    Static,
}

impl NeighbourTable {
    /// What the table has for `hop`.
    pub fn entry(&self, hop: NextHop) -> Entry {
        match self.find(hop) {
            Some(m) if is_static(m) => Entry::Static,
            Some(m) if is_managed(m) => Entry::Managed,
            _ => Entry::Ordinary,
        }
    }

    fn find(&self, hop: NextHop) -> Option<&NeighbourMessage> {
        self.entries.iter().find(|(h, _)| *h == hop).map(|(_, m)| m)
    }
}

impl Netlink {
    /// The next hop of `destination` by the main routing decision, `None` when the kernel
    /// delivers it locally or has no unicast route (nothing to resolve then).
    pub async fn next_hop(&self, destination: IpAddr) -> Result<Option<NextHop>, NetlinkError> {
        let mut message = RouteMessage::default();
        message.header.address_family = family(destination);
        message.header.destination_prefix_length = if destination.is_ipv4() { 32 } else { 128 };
        message.attributes.push(RouteAttribute::Destination(RouteAddress::from(destination)));
        let request = format!("looking up the route to {destination}");
        let answer: Result<Vec<RouteMessage>, _> =
            self.handle().route().get(message).execute().try_collect().await;
        let routes = match answer {
            Ok(routes) => routes,
            // No route at all (ENETUNREACH) or a prohibit / blackhole route.
            Err(e) if is_errno(&e, libc::ENETUNREACH) || is_errno(&e, libc::EHOSTUNREACH) => {
                return Ok(None);
            }
            Err(e) if is_errno(&e, libc::EACCES) || is_errno(&e, libc::EINVAL) => return Ok(None),
            Err(source) => return Err(NetlinkError::Request { request, source }),
        };
        Ok(routes.first().and_then(|route| hop_of(route, destination)))
    }

    /// Every neighbour entry of both families.
    pub async fn neighbour_table(&self) -> Result<NeighbourTable, NetlinkError> {
        let messages: Vec<NeighbourMessage> = self
            .handle()
            .neighbours()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|source| NetlinkError::Request { request: "listing neighbours".into(), source })?;
        let entries = messages
            .into_iter()
            .filter_map(|m| {
                let addr = m.attributes.iter().find_map(|a| match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
                    _ => None,
                })?;
                Some((NextHop { addr, ifindex: m.header.ifindex }, m))
            })
            .collect();
        Ok(NeighbourTable { entries })
    }

    /// Makes the kernel keep `hop` resolved: a managed entry replaces whatever dynamic entry is
    /// there (check [`NeighbourTable::entry`] first: a static one must stay).
    pub async fn keep_resolved(&self, hop: NextHop) -> Result<(), NetlinkError> {
        let mut add =
            self.handle().neighbours().add(hop.ifindex, hop.addr).state(NeighbourState::None).replace();
        add.message_mut().attributes.push(NeighbourAttribute::ExtFlags(NeighbourExtFlags::Managed));
        add.execute()
            .await
            .map_err(|source| NetlinkError::Request { request: format!("keeping {hop} resolved"), source })
    }

    /// Removes the managed entry of `hop` that `table` shows; any other entry stays. Whether one
    /// was removed.
    pub async fn release_resolved(&self, table: &NeighbourTable, hop: NextHop) -> Result<bool, NetlinkError> {
        let Some(existing) = table.find(hop).filter(|m| is_managed(m)) else { return Ok(false) };
        match self.handle().neighbours().del(existing.clone()).execute().await {
            Ok(()) => Ok(true),
            Err(e) if is_errno(&e, libc::ENOENT) => Ok(false),
            Err(source) => {
                Err(NetlinkError::Request { request: format!("removing the managed entry of {hop}"), source })
            }
        }
    }
}

fn family(addr: IpAddr) -> AddressFamily {
    if addr.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 }
}

/// The next hop a route lookup's answer names for `destination`.
fn hop_of(route: &RouteMessage, destination: IpAddr) -> Option<NextHop> {
    if route.header.kind != RouteType::Unicast {
        return None;
    }
    let mut hop = NextHop { addr: destination, ifindex: 0 };
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::Gateway(RouteAddress::Inet(v4)) => hop.addr = IpAddr::V4(*v4),
            RouteAttribute::Gateway(RouteAddress::Inet6(v6)) => hop.addr = IpAddr::V6(*v6),
            RouteAttribute::Oif(index) => hop.ifindex = *index,
            _ => {}
        }
    }
    (hop.ifindex != 0).then_some(hop)
}

fn is_static(entry: &NeighbourMessage) -> bool {
    matches!(entry.header.state, NeighbourState::Permanent | NeighbourState::Noarp)
}

fn is_managed(entry: &NeighbourMessage) -> bool {
    entry
        .attributes
        .iter()
        .any(|a| matches!(a, NeighbourAttribute::ExtFlags(f) if f.contains(NeighbourExtFlags::Managed)))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn route(kind: RouteType, attributes: Vec<RouteAttribute>) -> RouteMessage {
        let mut message = RouteMessage::default();
        message.header.kind = kind;
        message.attributes = attributes;
        message
    }

    #[test]
    fn a_connected_destination_is_its_own_next_hop_and_a_gateway_replaces_it() {
        let real = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 5));
        let connected = route(RouteType::Unicast, vec![RouteAttribute::Oif(4)]);
        assert_eq!(hop_of(&connected, real), Some(NextHop { addr: real, ifindex: 4 }));
        let routed = route(
            RouteType::Unicast,
            vec![
                RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(10, 0, 0, 1))),
                RouteAttribute::Oif(2),
            ],
        );
        assert_eq!(
            hop_of(&routed, real),
            Some(NextHop { addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), ifindex: 2 })
        );
    }

    #[test]
    fn local_and_unreachable_destinations_have_no_next_hop() {
        let addr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(hop_of(&route(RouteType::Local, vec![RouteAttribute::Oif(1)]), addr), None);
        assert_eq!(hop_of(&route(RouteType::Unreachable, vec![]), addr), None);
        assert_eq!(hop_of(&route(RouteType::Unicast, vec![]), addr), None);
    }
}
