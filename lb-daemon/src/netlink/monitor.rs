//! Link and address events: what `ip monitor link` and `ip monitor address` show, for tracking
//! interfaces (keepalived's `track_interface`, and an instance's own interface unless
//! `dont_track_primary`) and source addresses (`track_src_ip`).
//!
//! A [`LinkMonitor`] is its own rtnetlink connection bound to the RTNLGRP_LINK multicast group;
//! the kernel sends an RTM_NEWLINK on every flag or carrier change and an RTM_DELLINK when an
//! interface goes away. An [`AddressMonitor`] is bound to RTNLGRP_IPV4_IFADDR and
//! RTNLGRP_IPV6_IFADDR: an RTM_NEWADDR when an address is added (or its lifetime renewed), an
//! RTM_DELADDR when it goes.

use futures::StreamExt as _;
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::{
    MulticastGroup,
    packet_core::{NetlinkMessage, NetlinkPayload},
    sys::SocketAddr,
};

use super::{Link, NetlinkError, RcvBuf, addr::local_address};

/// A change to an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkChange {
    /// Created, or its flags, carrier or name changed: its state now.
    Updated(Link),
    /// Removed.
    Removed(Link),
}

/// An rtnetlink connection bound to multicast groups. Dropping it closes the connection.
#[derive(Debug)]
struct Subscription {
    messages: futures::channel::mpsc::UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>,
    connection: tokio::task::JoinHandle<()>,
}

impl Subscription {
    /// Subscribes to `groups` of the current network namespace, spawning the connection's I/O
    /// task on the current tokio runtime.
    /// The socket's receive buffer is `rcvbuf` if given.
    fn open(groups: &[MulticastGroup], rcvbuf: Option<RcvBuf>) -> Result<Self, NetlinkError> {
        let (mut connection, _handle, messages) =
            rtnetlink::new_multicast_connection(groups).map_err(NetlinkError::Connect)?;
        if let Some(rcvbuf) = rcvbuf {
            rcvbuf.apply_or_warn(connection.socket_mut());
        }
        Ok(Self { messages, connection: tokio::spawn(connection) })
    }

    /// The next message; `None` if the connection ended.
    async fn next(&mut self) -> Option<NetlinkMessage<RouteNetlinkMessage>> {
        self.messages.next().await.map(|(message, _)| message)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// A subscription to link events. Dropping it closes the connection.
#[derive(Debug)]
pub struct LinkMonitor(Subscription);

impl LinkMonitor {
    /// Subscribes to link events of the current network namespace, spawning the connection's
    /// I/O task on the current tokio runtime; the socket's receive buffer is `rcvbuf` if given.
    pub fn open(rcvbuf: Option<RcvBuf>) -> Result<Self, NetlinkError> {
        Subscription::open(&[MulticastGroup::Link], rcvbuf).map(Self)
    }

    /// The next change; `None` if the connection ended.
    pub async fn next(&mut self) -> Option<LinkChange> {
        loop {
            let message = self.0.next().await?;
            match message.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
                    return Some(LinkChange::Updated(Link::from_message(&link)));
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => {
                    return Some(LinkChange::Removed(Link::from_message(&link)));
                }
                _ => {}
            }
        }
    }
}

/// An address added to or removed from an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressChange {
    /// The interface's index.
    pub ifindex: u32,
    /// The address.
    pub addr: std::net::IpAddr,
    /// Added (or renewed) rather than removed.
    pub added: bool,
}

/// A subscription to IPv4 and IPv6 address events. Dropping it closes the connection.
#[derive(Debug)]
pub struct AddressMonitor(Subscription);

impl AddressMonitor {
    /// Subscribes to address events of the current network namespace, spawning the
    /// connection's I/O task on the current tokio runtime; the socket's receive buffer is
    /// `rcvbuf` if given.
    pub fn open(rcvbuf: Option<RcvBuf>) -> Result<Self, NetlinkError> {
        Subscription::open(&[MulticastGroup::Ipv4Ifaddr, MulticastGroup::Ipv6Ifaddr], rcvbuf).map(Self)
    }

    /// The next change; `None` if the connection ended.
    pub async fn next(&mut self) -> Option<AddressChange> {
        loop {
            let message = self.0.next().await?;
            let (message, added) = match &message.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(m)) => (m, true),
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelAddress(m)) => (m, false),
                _ => continue,
            };
            if let Some(addr) = local_address(message) {
                return Some(AddressChange { ifindex: message.header.index, addr, added });
            }
        }
    }
}
