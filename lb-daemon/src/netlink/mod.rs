//! The kernel's network configuration, as the daemon sees and changes it.
//!
//! Only this module asks the kernel about links and addresses. Today it lists links; VIPs and
//! routes (rtnetlink) come with VRRP.

use std::collections::BTreeMap;

use nix::{ifaddrs::getifaddrs, net::if_::InterfaceFlags};

/// A network interface of the current network namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Its name (`eth0`).
    pub name: String,
    /// Administratively up.
    pub up: bool,
    /// A loopback device.
    pub loopback: bool,
}

/// What can go wrong asking the kernel.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// Listing the interfaces failed.
    #[error("listing interfaces")]
    ListLinks(#[source] nix::Error),
}

/// Every interface of the current network namespace, sorted by name.
pub fn links() -> Result<Vec<Link>, NetlinkError> {
    let mut by_name = BTreeMap::new();
    for ifaddr in getifaddrs().map_err(NetlinkError::ListLinks)? {
        let flags = ifaddr.flags;
        by_name.entry(ifaddr.interface_name.clone()).or_insert_with(|| Link {
            name: ifaddr.interface_name,
            up: flags.contains(InterfaceFlags::IFF_UP),
            loopback: flags.contains(InterfaceFlags::IFF_LOOPBACK),
        });
    }
    Ok(by_name.into_values().collect())
}
