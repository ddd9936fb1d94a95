//! Routes: keepalived's `virtual_routes`, installed while an instance is MASTER.
//!
//! A [`Route`] is what `ip route add` takes, reduced to what keepalived's `virtual_routes` are
//! used for: a destination, a gateway and/or output interface, a preferred source, a table, a
//! metric, a scope and a type (unicast, blackhole, unreachable, prohibit, throw, local).
//! Adding replaces a route with the same key (`ip route replace`), so a master taking over again
//! never fails on a route it left behind.

use std::net::IpAddr;

use netlink_packet_route::{
    AddressFamily,
    route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType},
};

use super::{Netlink, NetlinkError, addr::Scope, is_errno};

/// keepalived's routing protocol number (`RTPROT_KEEPALIVED`, `proto keepalived` in iproute2's
/// rt_protos), so that `ip route show proto keepalived` lists the routes a VRRP instance added.
pub const RTPROT_KEEPALIVED: u8 = 18;

/// The type of a route (`ip route add TYPE ...`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RouteKind {
    /// A gateway or direct route.
    #[default]
    Unicast,
    /// Packets are dropped silently.
    Blackhole,
    /// Packets are refused with ICMP unreachable.
    Unreachable,
    /// Packets are refused with ICMP prohibited.
    Prohibit,
    /// Lookup continues in the next table (policy routing).
    Throw,
    /// The destination is this host.
    Local,
}

impl From<RouteKind> for RouteType {
    fn from(kind: RouteKind) -> Self {
        match kind {
            RouteKind::Unicast => Self::Unicast,
            RouteKind::Blackhole => Self::BlackHole,
            RouteKind::Unreachable => Self::Unreachable,
            RouteKind::Prohibit => Self::Prohibit,
            RouteKind::Throw => Self::Throw,
            RouteKind::Local => Self::Local,
        }
    }
}

/// A route, as `ip route add` takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Destination network.
    pub destination: IpAddr,
    /// Its prefix length (0 for `default`).
    pub prefix_len: u8,
    /// `via`: the gateway.
    pub gateway: Option<IpAddr>,
    /// `dev`: the output interface index.
    pub oif: Option<u32>,
    /// `src`: the preferred source address.
    pub source: Option<IpAddr>,
    /// `table` (254 = main).
    pub table: u32,
    /// `metric`.
    pub metric: Option<u32>,
    /// `scope`; `None` picks iproute2's default (link for a direct unicast route, host for a
    /// local one, global otherwise).
    pub scope: Option<Scope>,
    /// The route type.
    pub kind: RouteKind,
    /// `proto`.
    pub protocol: u8,
}

impl Route {
    /// A unicast route to `destination/prefix_len` in the main table, protocol keepalived.
    pub fn new(destination: IpAddr, prefix_len: u8) -> Self {
        Route {
            destination,
            prefix_len,
            gateway: None,
            oif: None,
            source: None,
            table: u32::from(RouteHeader::RT_TABLE_MAIN),
            metric: None,
            scope: None,
            kind: RouteKind::Unicast,
            protocol: RTPROT_KEEPALIVED,
        }
    }

    fn scope(&self) -> RouteScope {
        match (self.scope, self.kind) {
            (Some(scope), _) => match scope {
                Scope::Global => RouteScope::Universe,
                Scope::Site => RouteScope::Site,
                Scope::Link => RouteScope::Link,
                Scope::Host => RouteScope::Host,
                Scope::Nowhere => RouteScope::NoWhere,
            },
            (None, RouteKind::Local) => RouteScope::Host,
            (None, RouteKind::Unicast) if self.gateway.is_none() => RouteScope::Link,
            (None, _) => RouteScope::Universe,
        }
    }

    /// The message that identifies (and, for an add, describes) this route.
    fn message(&self, for_delete: bool) -> RouteMessage {
        let mut message = RouteMessage::default();
        let header = &mut message.header;
        header.address_family =
            if self.destination.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
        header.destination_prefix_length = self.prefix_len;
        match u8::try_from(self.table) {
            Ok(table) => header.table = table,
            Err(_) => {
                header.table = RouteHeader::RT_TABLE_UNSPEC;
                message.attributes.push(RouteAttribute::Table(self.table));
            }
        }
        if for_delete {
            // As `ip route del`: any scope and protocol match (RT_SCOPE_NOWHERE, RTPROT_UNSPEC in
            // the kernel's fib_table_delete).
            message.header.scope = RouteScope::NoWhere;
            message.header.protocol = RouteProtocol::Unspec;
        } else {
            message.header.scope = self.scope();
            message.header.protocol = RouteProtocol::from(self.protocol);
        }
        message.header.kind = self.kind.into();
        if self.prefix_len > 0 {
            message.attributes.push(RouteAttribute::Destination(route_address(self.destination)));
        }
        if let Some(gateway) = self.gateway {
            message.attributes.push(RouteAttribute::Gateway(route_address(gateway)));
        }
        if let Some(oif) = self.oif {
            message.attributes.push(RouteAttribute::Oif(oif));
        }
        if let Some(source) = self.source {
            message.attributes.push(RouteAttribute::PrefSource(route_address(source)));
        }
        if let Some(metric) = self.metric {
            message.attributes.push(RouteAttribute::Priority(metric));
        }
        message
    }
}

fn route_address(address: IpAddr) -> RouteAddress {
    match address {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "route {}/{}", self.destination, self.prefix_len)?;
        if let Some(gateway) = self.gateway {
            write!(f, " via {gateway}")?;
        }
        if let Some(oif) = self.oif {
            write!(f, " dev ifindex {oif}")?;
        }
        if self.table != u32::from(RouteHeader::RT_TABLE_MAIN) {
            write!(f, " table {}", self.table)?;
        }
        Ok(())
    }
}

impl Netlink {
    /// Adds `route`, replacing one with the same destination, table and metric
    /// (`ip route replace`).
    pub async fn add_route(&self, route: &Route) -> Result<(), NetlinkError> {
        self.handle()
            .route()
            .add(route.message(false))
            .replace()
            .execute()
            .await
            .map_err(|source| NetlinkError::Request { request: format!("adding {route}"), source })
    }

    /// Removes `route`. Returns whether it was there.
    pub async fn delete_route(&self, route: &Route) -> Result<bool, NetlinkError> {
        match self.handle().route().del(route.message(true)).execute().await {
            Ok(()) => Ok(true),
            Err(e) if is_errno(&e, libc::ESRCH) || is_errno(&e, libc::ENOENT) => Ok(false),
            Err(source) => Err(NetlinkError::Request { request: format!("removing {route}"), source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_defaults_follow_iproute2() {
        let mut direct = Route::new("10.0.0.0".parse().unwrap_or(IpAddr::from([0; 4])), 24);
        direct.oif = Some(2);
        assert_eq!(direct.scope(), RouteScope::Link);
        let mut via = direct.clone();
        via.gateway = Some(IpAddr::from([10, 0, 0, 1]));
        assert_eq!(via.scope(), RouteScope::Universe);
        let blackhole = Route { kind: RouteKind::Blackhole, ..direct.clone() };
        assert_eq!(blackhole.scope(), RouteScope::Universe);
        let local = Route { kind: RouteKind::Local, ..direct };
        assert_eq!(local.scope(), RouteScope::Host);
    }

    #[test]
    fn large_tables_go_in_an_attribute() {
        let route = Route { table: 1000, ..Route::new(IpAddr::from([10, 0, 0, 0]), 8) };
        let message = route.message(false);
        assert_eq!(message.header.table, RouteHeader::RT_TABLE_UNSPEC);
        assert!(message.attributes.contains(&RouteAttribute::Table(1000)));
        let delete = route.message(true);
        assert_eq!(delete.header.scope, RouteScope::NoWhere);
    }
}
