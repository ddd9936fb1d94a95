//! The kernel's network configuration, as the daemon sees and changes it.
//!
//! Only this module builds netlink messages (through rtnetlink). [`Netlink`] is a handle on one
//! rtnetlink connection, bound to the network namespace the daemon runs in:
//! - links: [`Netlink::links`], [`Netlink::link_by_name`];
//! - addresses, including VIPs held on a lease ([`addr`]);
//! - next hops kept resolved for the data plane ([`neigh`]);
//! - routes ([`route`]), policy rules ([`rule`]), link events ([`monitor`]), and VRRP
//!   virtual-MAC interfaces and ipvlans ([`vmac`]);
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
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkInfo, LinkMessage};

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
    /// Its MTU.
    pub mtu: u32,
    /// The interface it sits on (IFLA_LINK: a macvlan's or VLAN's parent), if any.
    pub parent: Option<u32>,
    /// The device it is enslaved to (IFLA_MASTER: a VRF, a bridge), if any.
    pub controller: Option<u32>,
    /// Its kind (IFLA_INFO_KIND: `macvlan`, `ipvlan`, `vrf`...), if it has one.
    pub kind: Option<String>,
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
            mtu: 0,
            parent: None,
            controller: None,
            kind: None,
        };
        for attribute in &message.attributes {
            match attribute {
                LinkAttribute::IfName(name) => link.name.clone_from(name),
                LinkAttribute::Address(mac) => link.mac.clone_from(mac),
                LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
                LinkAttribute::Link(parent) => link.parent = Some(*parent),
                LinkAttribute::Controller(controller) => link.controller = Some(*controller),
                LinkAttribute::LinkInfo(infos) => {
                    link.kind = infos.iter().find_map(|info| match info {
                        LinkInfo::Kind(kind) => Some(kind.to_string()),
                        _ => None,
                    });
                }
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
    /// The receive buffer could not be set (keepalived only warns: the socket works without).
    #[error("cannot set the netlink receive buffer to {bytes} bytes{}", if *force { " (forced)" } else { "" })]
    RcvBuf {
        /// The size asked for.
        bytes: u32,
        /// SO_RCVBUFFORCE.
        force: bool,
        /// setsockopt's error.
        #[source]
        source: io::Error,
    },
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
    /// An interface has the name a use_vmac interface needs, and sits on no parent: not one to
    /// remove and make anew.
    #[error("interface {0} is in the way of a use_vmac interface of that name (it has no parent)")]
    NotAVmac(String),
    /// An interface has the name a use_ipvlan interface needs, and is not an ipvlan: not one to
    /// remove and make anew.
    #[error("interface {0} is in the way of a use_ipvlan interface of that name (it is not an ipvlan)")]
    NotAnIpvlan(String),
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
        Self::connect_with(None)
    }

    /// [`Netlink::connect`], with the socket's receive buffer set to `rcvbuf` if given.
    pub fn connect_with(rcvbuf: Option<RcvBuf>) -> Result<Self, NetlinkError> {
        let (mut connection, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Connect)?;
        if let Some(rcvbuf) = rcvbuf {
            rcvbuf.apply_or_warn(connection.socket_mut());
        }
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

/// The receive buffer of a netlink socket: keepalived's `vrrp_netlink_cmd_rcv_bufs` /
/// `vrrp_netlink_monitor_rcv_bufs` and their `_force` (SO_RCVBUFFORCE, which may exceed
/// `net.core.rmem_max`, rather than SO_RCVBUF). The kernel doubles the size for its own
/// bookkeeping, as for any socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RcvBuf {
    /// The size asked for, in bytes.
    pub bytes: u32,
    /// SO_RCVBUFFORCE.
    pub force: bool,
}

impl RcvBuf {
    /// The buffer of a `*_rcv_bufs BYTES` / `*_rcv_bufs_force [BOOL]` pair; none without a size
    /// (or with 0: the system's default).
    pub fn from_keywords(bytes: Option<u32>, force: Option<bool>) -> Option<Self> {
        bytes.filter(|b| *b > 0).map(|bytes| RcvBuf { bytes, force: force.unwrap_or(false) })
    }

    /// Sets it on `socket`, warning if it cannot: the socket works with the default size.
    pub fn apply_or_warn(self, socket: &impl std::os::fd::AsRawFd) {
        if let Err(e) = self.apply(socket) {
            let source = std::error::Error::source(&e).map(ToString::to_string).unwrap_or_default();
            tracing::warn!("{e}: {source}");
        }
    }

    /// Sets it on `socket`.
    pub fn apply(self, socket: &impl std::os::fd::AsRawFd) -> Result<(), NetlinkError> {
        let option = if self.force { libc::SO_RCVBUFFORCE } else { libc::SO_RCVBUF };
        let value = libc::c_int::try_from(self.bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: setsockopt on an open socket with a c_int value of the size given.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&raw const value).cast(),
                libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(4),
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(NetlinkError::RcvBuf {
                bytes: self.bytes,
                force: self.force,
                source: io::Error::last_os_error(),
            })
        }
    }
}

/// Whether a failed request failed with `errno`.
pub(crate) fn is_errno(error: &rtnetlink::Error, errno: i32) -> bool {
    matches!(error, rtnetlink::Error::NetlinkError(e) if e.raw_code() == -errno)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receive_buffer_that_cannot_be_set_is_its_own_error() {
        // Not a socket: setsockopt fails.
        let file = std::fs::File::open("/proc/self/stat").expect("a file");
        let e = RcvBuf { bytes: 4096, force: true }.apply(&file).expect_err("not a socket");
        assert!(matches!(e, NetlinkError::RcvBuf { bytes: 4096, force: true, .. }), "{e:?}");
        assert_eq!(e.to_string(), "cannot set the netlink receive buffer to 4096 bytes (forced)");
    }
}
