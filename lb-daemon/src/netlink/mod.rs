//! The kernel's network configuration, as the daemon sees and changes it.
//!
//! Only this module builds netlink messages (through rtnetlink). [`Netlink`] is a handle on one
//! rtnetlink connection, bound to the network namespace the daemon runs in:
//! - links: [`Netlink::links`], [`Netlink::link_by_name`];
//! - addresses, including VIPs held on a lease ([`addr`]);
//! - next hops kept resolved for the data plane ([`neigh`]);
//! - routes ([`route`]), policy rules ([`rule`]), link events ([`monitor`]), and VRRP
//!   virtual-MAC interfaces ([`vmac`]);
//! - Linux IPVS's virtual services and real servers over generic netlink ([`ipvs`], its own
//!   blocking socket).

pub mod addr;
pub mod ipvs;
pub mod monitor;
pub mod neigh;
pub mod route;
pub mod rule;
pub mod sysctl;
pub mod vmac;

use std::io;

use futures::TryStreamExt as _;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};

/// A network interface of the current network namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Its index.
    pub index: u32,
    /// Its name (`eth0`).
    pub name: String,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// Carrier present and operational (IFF_RUNNING).
    pub running: bool,
    /// A loopback device.
    pub loopback: bool,
    /// Its hardware address (6 bytes on Ethernet; empty for devices without one).
    pub mac: Vec<u8>,
}

impl Link {
    fn from_message(message: &LinkMessage) -> Self {
        let flags = message.header.flags;
        let mut link = Self {
            index: message.header.index,
            name: String::new(),
            up: flags.contains(LinkFlags::Up),
            running: flags.contains(LinkFlags::Running),
            loopback: flags.contains(LinkFlags::Loopback),
            mac: Vec::new(),
        };
        for attribute in &message.attributes {
            match attribute {
                LinkAttribute::IfName(name) => link.name.clone_from(name),
                LinkAttribute::Address(mac) => link.mac.clone_from(mac),
                _ => {}
            }
        }
        link
    }
}

/// What can go wrong asking or telling the kernel.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The rtnetlink socket could not be opened.
    #[error("opening an rtnetlink socket")]
    Connect(#[source] io::Error),
    /// A request failed.
    #[error("{request}")]
    Request {
        /// What was asked, e.g. "adding 10.0.0.1/24 to ifindex 2".
        request: String,
        /// The kernel's answer.
        #[source]
        source: rtnetlink::Error,
    },
    /// No interface has that name.
    #[error("no interface named {0}")]
    NoSuchLink(String),
    /// A sysctl could not be written.
    #[error("writing {path}")]
    Sysctl {
        /// The /proc/sys file.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// A handle on an rtnetlink connection. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Netlink {
    handle: rtnetlink::Handle,
}

impl Netlink {
    /// Opens a connection and spawns its I/O task on the current tokio runtime.
    pub fn connect() -> Result<Self, NetlinkError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Connect)?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// Every interface, in index order.
    pub async fn links(&self) -> Result<Vec<Link>, NetlinkError> {
        let messages: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|source| NetlinkError::Request { request: "listing links".into(), source })?;
        Ok(messages.iter().map(Link::from_message).collect())
    }

    /// The interface named `name`.
    pub async fn link_by_name(&self, name: &str) -> Result<Link, NetlinkError> {
        let result: Result<Vec<LinkMessage>, _> =
            self.handle.link().get().match_name(name.to_owned()).execute().try_collect().await;
        match result {
            Ok(messages) => messages
                .first()
                .map(Link::from_message)
                .ok_or_else(|| NetlinkError::NoSuchLink(name.to_owned())),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {
                Err(NetlinkError::NoSuchLink(name.to_owned()))
            }
            Err(source) => Err(NetlinkError::Request { request: format!("looking up link {name}"), source }),
        }
    }

    pub(crate) fn handle(&self) -> &rtnetlink::Handle {
        &self.handle
    }
}

/// Whether a failed request failed with `errno`.
pub(crate) fn is_errno(error: &rtnetlink::Error, errno: i32) -> bool {
    matches!(error, rtnetlink::Error::NetlinkError(e) if e.raw_code() == -errno)
}
