//! Interface addresses: VIPs and their leases.
//!
//! keepalived installs VIPs as permanent addresses, so after `kill -9` of the master the VIP stays
//! on it while the backup takes over (acassen/keepalived#2361). lbd can install a VIP with a
//! kernel lifetime instead ([`Lifetime::Lease`]: `valid_lft` = `preferred_lft`) and renew it at
//! every advert; if the daemon dies the kernel removes the address by itself when the lease runs
//! out. Renewal is an `RTM_NEWADDR` with `NLM_F_REPLACE`, which updates the lifetime in place
//! without removing the address, so no packet sees it missing.

use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use futures::TryStreamExt as _;
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope, CacheInfo,
};

use super::{Netlink, NetlinkError, is_errno};

/// How long the kernel keeps an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifetime {
    /// Until removed (what `ip addr add` does by default).
    Forever,
    /// Until this long after the last renewal (whole seconds, at least 1).
    Lease(Duration),
}

impl Lifetime {
    /// The `valid_lft` / `preferred_lft` value in seconds (0xffffffff = forever).
    fn seconds(self) -> u32 {
        match self {
            Self::Forever => u32::MAX,
            Self::Lease(d) => {
                let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
                u32::try_from(secs.max(1)).unwrap_or(u32::MAX - 1)
            }
        }
    }
}

/// An address on an interface, as `ip addr add` takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceAddress {
    /// The interface index.
    pub ifindex: u32,
    /// The address.
    pub addr: IpAddr,
    /// Its prefix length (32 / 128 for a host address).
    pub prefix_len: u8,
    /// IPv4 broadcast address (`brd`).
    pub broadcast: Option<Ipv4Addr>,
    /// Its scope (`scope host|link|global`).
    pub scope: Scope,
    /// IPv4 label (`label eth0:1`).
    pub label: Option<String>,
}

/// An address scope.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    /// `global`.
    #[default]
    Global,
    /// `site` (IPv6).
    Site,
    /// `link`.
    Link,
    /// `host`.
    Host,
    /// `nowhere`.
    Nowhere,
}

impl From<Scope> for AddressScope {
    fn from(scope: Scope) -> Self {
        match scope {
            Scope::Global => Self::Universe,
            Scope::Site => Self::Site,
            Scope::Link => Self::Link,
            Scope::Host => Self::Host,
            Scope::Nowhere => Self::Nowhere,
        }
    }
}

/// An address the kernel reports, with its remaining lifetime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledAddress {
    /// The interface index.
    pub ifindex: u32,
    /// The address.
    pub addr: IpAddr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// Seconds of validity left (`None`: forever).
    pub valid_left: Option<u32>,
    /// A secondary address (another of the same subnet came first).
    pub secondary: bool,
    /// An IPv6 address still in (or failed) duplicate address detection: nothing can be sent
    /// from it yet. An optimistic one (RFC 4429, IFA_F_OPTIMISTIC) is usable at once.
    pub tentative: bool,
}

impl std::fmt::Display for InterfaceAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} on ifindex {}", self.addr, self.prefix_len, self.ifindex)
    }
}

impl Netlink {
    /// Adds `address`, or renews it if it is there (NLM_F_REPLACE), with `lifetime`.
    pub async fn add_address(
        &self,
        address: &InterfaceAddress,
        lifetime: Lifetime,
    ) -> Result<(), NetlinkError> {
        let mut request =
            self.handle().address().add(address.ifindex, address.addr, address.prefix_len).replace();
        let message = request.message_mut();
        message.header.scope = address.scope.into();
        // A VIP must answer at once: no duplicate address detection (IPv6).
        message.header.flags = AddressHeaderFlags::Nodad;
        message.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
        if let Some(broadcast) = address.broadcast {
            message.attributes.push(AddressAttribute::Broadcast(broadcast));
        }
        if let Some(label) = &address.label {
            message.attributes.push(AddressAttribute::Label(label.clone()));
        }
        if lifetime != Lifetime::Forever {
            let seconds = lifetime.seconds();
            let mut info = CacheInfo::default();
            info.ifa_preferred = seconds;
            info.ifa_valid = seconds;
            message.attributes.push(AddressAttribute::CacheInfo(info));
        }
        request
            .execute()
            .await
            .map_err(|source| NetlinkError::Request { request: format!("adding {address}"), source })
    }

    /// Removes `address`. Returns whether it was there.
    pub async fn delete_address(&self, address: &InterfaceAddress) -> Result<bool, NetlinkError> {
        let mut message = AddressMessage::default();
        message.header.family = match address.addr {
            IpAddr::V4(_) => netlink_packet_route::AddressFamily::Inet,
            IpAddr::V6(_) => netlink_packet_route::AddressFamily::Inet6,
        };
        message.header.index = address.ifindex;
        message.header.prefix_len = address.prefix_len;
        // As `ip addr del`: the kernel matches IFA_LOCAL (IPv4) or either attribute (IPv6).
        message.attributes.push(AddressAttribute::Local(address.addr));
        message.attributes.push(AddressAttribute::Address(address.addr));
        match self.handle().address().del(message).execute().await {
            Ok(()) => Ok(true),
            Err(e) if is_errno(&e, libc::EADDRNOTAVAIL) || is_errno(&e, libc::ENOENT) => Ok(false),
            Err(source) => Err(NetlinkError::Request { request: format!("removing {address}"), source }),
        }
    }

    /// Every address of interface `ifindex`.
    pub async fn addresses(&self, ifindex: u32) -> Result<Vec<InstalledAddress>, NetlinkError> {
        let messages: Vec<AddressMessage> = self
            .handle()
            .address()
            .get()
            .set_link_index_filter(ifindex)
            .execute()
            .try_collect()
            .await
            .map_err(|source| NetlinkError::Request {
                request: format!("listing addresses of ifindex {ifindex}"),
                source,
            })?;
        Ok(messages
            .iter()
            .filter_map(|m| {
                let valid_left = m.attributes.iter().find_map(|attribute| match attribute {
                    AddressAttribute::CacheInfo(info) if info.ifa_valid != u32::MAX => Some(info.ifa_valid),
                    _ => None,
                });
                Some(InstalledAddress {
                    ifindex: m.header.index,
                    addr: local_address(m)?,
                    prefix_len: m.header.prefix_len,
                    valid_left,
                    secondary: m.header.flags.contains(AddressHeaderFlags::Secondary),
                    tentative: unusable(m.header.flags),
                })
            })
            .collect())
    }
}

/// Whether an address with `flags` is out of use: in duplicate address detection (unless
/// optimistic, RFC 4429, which the kernel lets sockets use), or failed it.
fn unusable(flags: AddressHeaderFlags) -> bool {
    (flags.contains(AddressHeaderFlags::Tentative) && !flags.contains(AddressHeaderFlags::Optimistic))
        || flags.contains(AddressHeaderFlags::Dadfailed)
}

/// The interface's own address in `message`: IFA_LOCAL, where IFA_ADDRESS may be a peer's.
pub(crate) fn local_address(message: &AddressMessage) -> Option<IpAddr> {
    let mut addr = None;
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(a) => addr = Some(*a),
            AddressAttribute::Address(a) if addr.is_none() => addr = Some(*a),
            _ => {}
        }
    }
    addr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optimistic_addresses_are_usable_tentative_and_failed_ones_not() {
        use AddressHeaderFlags as F;
        assert!(!unusable(F::Permanent));
        assert!(unusable(F::Tentative));
        assert!(!unusable(F::Tentative | F::Optimistic));
        assert!(unusable(F::Dadfailed | F::Tentative));
        assert!(unusable(F::Dadfailed | F::Optimistic));
    }

    #[test]
    fn lease_seconds_round_up_and_never_zero() {
        assert_eq!(Lifetime::Lease(Duration::from_millis(3_610)).seconds(), 4);
        assert_eq!(Lifetime::Lease(Duration::from_secs(3)).seconds(), 3);
        assert_eq!(Lifetime::Lease(Duration::from_millis(10)).seconds(), 1);
        assert_eq!(Lifetime::Forever.seconds(), u32::MAX);
    }
}
