//! VRRP virtual-MAC interfaces (keepalived's `use_vmac`): a macvlan on the instance's interface
//! whose MAC is the RFC 5798 §7.3 virtual router MAC, `00:00:5e:00:01:VRID` for IPv4 and
//! `00:00:5e:00:02:VRID` for IPv6. The VIPs live on it, so hosts learn the virtual MAC and a
//! takeover needs no ARP cache update.
//!
//! `use_ipvlan` makes an ipvlan instead (mode l2, with the `bridge`, `private` or `vepa` flag):
//! it shares its parent's MAC, so a takeover needs gratuitous ARPs as without a VMAC, but the
//! VIPs and adverts live on an interface of their own. Both are enslaved to the VRF their parent
//! is in, as keepalived does, so that their addresses land in the VRF's table.
//!
//! An IPv6 macvlan gets no kernel-generated link-local address (its EUI-64 would come from the
//! virtual MAC, so every router of the group would claim the same one and fail DAD): like
//! keepalived, lbd turns address generation off on it and gives it the parent's link-local
//! address (or one derived from the parent's MAC), which its adverts are sent from.

use std::net::{IpAddr, Ipv6Addr};

use netlink_packet_route::link::{IpVlanFlags, IpVlanMode, LinkMessage, MacVlanMode};
use rtnetlink::{LinkIpVlan, LinkMacVlan, LinkUnspec};

use super::{
    Link, Netlink, NetlinkError,
    addr::{InterfaceAddress, Lifetime, Scope},
    is_errno,
};

/// The virtual router MAC of RFC 5798 §7.3 for `vrid`.
pub fn virtual_mac(vrid: u8, ipv6: bool) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, if ipv6 { 0x02 } else { 0x01 }, vrid]
}

/// The EUI-64 link-local address (`fe80::/64`) of an interface with `mac` (RFC 4291 App. A).
pub fn link_local_from_mac(mac: [u8; 6]) -> Ipv6Addr {
    let [a, b, c, d, e, f] = mac;
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([a ^ 0x02, b]),
        u16::from_be_bytes([c, 0xff]),
        u16::from_be_bytes([0xfe, d]),
        u16::from_be_bytes([e, f]),
    )
}

impl Netlink {
    /// Creates (or finds, if a previous run or a reload's previous engine left it) the macvlan
    /// `name` on `parent` with `mac`, in private mode as keepalived does, enslaved to
    /// `controller` (the parent's VRF) if given, and brings it up. An
    /// interface `name` on another parent or with another MAC (an instance moved to another
    /// interface, or to the other family) is removed and made anew. With
    /// `link_local` (an IPv6 instance's macvlan), the kernel generates no IPv6 address on it and
    /// it gets `link_local`. Returns it, and whether it was created (rather than found).
    pub async fn create_vmac(
        &self,
        name: &str,
        parent: u32,
        mac: [u8; 6],
        controller: Option<u32>,
        link_local: Option<Ipv6Addr>,
    ) -> Result<(Link, bool), NetlinkError> {
        let mut builder = LinkMacVlan::new(name, parent, MacVlanMode::Private).address(mac.to_vec());
        if let Some(controller) = controller {
            builder = builder.controller(controller);
        }
        // Down first when it needs IPv6 settings: the kernel adds its link-local address as the
        // interface comes up.
        let message = if link_local.is_some() { builder.build() } else { builder.up().build() };
        let (link, created) = self
            .add_or_find(name, "macvlan", message, controller, |existing| {
                if existing.parent == Some(parent) && existing.mac == mac {
                    Ok(true)
                } else if existing.parent.is_none() {
                    // Not a device on a parent (not a VMAC lbd left): not lbd's to remove.
                    Err(NetlinkError::NotAVmac(name.to_owned()))
                } else {
                    Ok(false)
                }
            })
            .await?;
        if link_local.is_some() {
            // IN6_ADDR_GEN_MODE_NONE.
            let path = format!("/proc/sys/net/ipv6/conf/{name}/addr_gen_mode");
            std::fs::write(&path, "1").map_err(|source| NetlinkError::Sysctl { path, source })?;
        }
        if !link.up {
            self.set_link_up(link.index, true).await?;
        }
        if let Some(address) = link_local {
            let address = InterfaceAddress {
                ifindex: link.index,
                addr: IpAddr::V6(address),
                prefix_len: 64,
                broadcast: None,
                scope: Scope::Link,
                label: None,
            };
            self.add_address(&address, Lifetime::Forever).await?;
        }
        Ok((link, created))
    }

    /// Creates (or finds, as [`Netlink::create_vmac`] does) the ipvlan `name` on `parent`, in
    /// mode l2 with `flags` (keepalived's `use_ipvlan`), enslaved to `controller` (the parent's
    /// VRF) if given, and brings it up. An interface `name` that is an ipvlan on another parent
    /// is removed and made anew; one that is not an ipvlan is not lbd's
    /// ([`NetlinkError::NotAnIpvlan`]). Returns it, and whether it was created.
    pub async fn create_ipvlan(
        &self,
        name: &str,
        parent: u32,
        flags: IpvlanFlag,
        controller: Option<u32>,
    ) -> Result<(Link, bool), NetlinkError> {
        let mut builder = LinkIpVlan::new(name, parent, IpVlanMode::L2).flag(flags.bits()).up();
        if let Some(controller) = controller {
            builder = builder.controller(controller);
        }
        let (link, created) = self
            .add_or_find(name, "ipvlan", builder.build(), controller, |existing| {
                if existing.kind.as_deref() != Some("ipvlan") {
                    Err(NetlinkError::NotAnIpvlan(name.to_owned()))
                } else {
                    Ok(existing.parent == Some(parent))
                }
            })
            .await?;
        if !link.up {
            self.set_link_up(link.index, true).await?;
        }
        Ok((link, created))
    }

    /// Adds the link of `message` (a `kind` named `name`); if there is one of that name already,
    /// keeps it when `fits` says so, else removes it and adds the new one (or fails with what
    /// `fits` returned). A link kept is enslaved to `controller` (or freed) if it is not.
    /// Returns the link, and whether it was created.
    async fn add_or_find(
        &self,
        name: &str,
        kind: &str,
        message: LinkMessage,
        controller: Option<u32>,
        fits: impl Fn(&Link) -> Result<bool, NetlinkError>,
    ) -> Result<(Link, bool), NetlinkError> {
        let created = match self.handle().link().add(message.clone()).execute().await {
            Ok(()) => true,
            Err(e) if is_errno(&e, libc::EEXIST) => {
                let existing = self.link_by_name(name).await?;
                if fits(&existing)? {
                    if existing.controller != controller {
                        self.set_controller(existing.index, controller).await?;
                    }
                    false
                } else {
                    self.delete_link(existing.index).await?;
                    self.handle().link().add(message).execute().await.map_err(|source| {
                        NetlinkError::Request { request: format!("creating {kind} {name} anew"), source }
                    })?;
                    true
                }
            }
            Err(source) => {
                return Err(NetlinkError::Request { request: format!("creating {kind} {name}"), source });
            }
        };
        Ok((self.link_by_name(name).await?, created))
    }

    /// Enslaves interface `index` to `controller` (a VRF), or frees it with `None`
    /// (`ip link set dev X master Y | nomaster`).
    pub async fn set_controller(&self, index: u32, controller: Option<u32>) -> Result<(), NetlinkError> {
        let builder = LinkUnspec::new_with_index(index);
        let message = match controller {
            Some(controller) => builder.controller(controller),
            None => builder.nocontroller(),
        }
        .build();
        self.handle().link().set(message).execute().await.map_err(|source| NetlinkError::Request {
            request: format!("setting the master of ifindex {index} to {controller:?}"),
            source,
        })
    }

    /// Sets interface `index` up or down (`ip link set dev X up|down`).
    pub async fn set_link_up(&self, index: u32, up: bool) -> Result<(), NetlinkError> {
        let builder = LinkUnspec::new_with_index(index);
        let message = if up { builder.up() } else { builder.down() }.build();
        self.handle().link().set(message).execute().await.map_err(|source| NetlinkError::Request {
            request: format!("setting ifindex {index} {}", if up { "up" } else { "down" }),
            source,
        })
    }

    /// Removes interface `index`. Returns whether it was there.
    pub async fn delete_link(&self, index: u32) -> Result<bool, NetlinkError> {
        match self.handle().link().del(index).execute().await {
            Ok(()) => Ok(true),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(false),
            Err(source) => {
                Err(NetlinkError::Request { request: format!("removing ifindex {index}"), source })
            }
        }
    }
}

/// The flag of a `use_ipvlan` interface (keepalived's `bridge`, the default, `private` or
/// `vepa`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum IpvlanFlag {
    /// Slaves talk to each other through the parent (no flag).
    #[default]
    Bridge,
    /// IPVLAN_F_PRIVATE: slaves do not talk to each other.
    Private,
    /// IPVLAN_F_VEPA: traffic between slaves goes out to the switch.
    Vepa,
}

impl IpvlanFlag {
    /// Its keyword.
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "bridge" => Some(Self::Bridge),
            "private" => Some(Self::Private),
            "vepa" => Some(Self::Vepa),
            _ => None,
        }
    }

    /// Its IFLA_IPVLAN_FLAGS value.
    fn bits(self) -> IpVlanFlags {
        match self {
            Self::Bridge => IpVlanFlags::empty(),
            Self::Private => IpVlanFlags::Private,
            Self::Vepa => IpVlanFlags::Vepa,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipvlan_flags_are_keepalived_words_and_the_kernel_bits() {
        assert_eq!(IpvlanFlag::parse("private").map(IpvlanFlag::bits), Some(IpVlanFlags::Private));
        assert_eq!(IpvlanFlag::parse("vepa").map(IpvlanFlag::bits), Some(IpVlanFlags::Vepa));
        assert_eq!(IpvlanFlag::parse("bridge").map(|f| f.bits().bits()), Some(0));
        assert_eq!(IpvlanFlag::default(), IpvlanFlag::Bridge);
        assert_eq!(IpvlanFlag::parse("l3"), None);
    }

    #[test]
    fn virtual_macs_follow_rfc_5798() {
        assert_eq!(virtual_mac(77, false), [0, 0, 0x5e, 0, 1, 77]);
        assert_eq!(virtual_mac(1, true), [0, 0, 0x5e, 0, 2, 1]);
    }

    #[test]
    fn link_local_is_the_eui_64_of_the_mac() {
        // What the kernel gives an interface with this MAC (addr_gen_mode eui64).
        let expected = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x4c1a, 0x3bff, 0xfe02, 0xfd10);
        assert_eq!(link_local_from_mac([0x4e, 0x1a, 0x3b, 0x02, 0xfd, 0x10]), expected);
        assert_eq!(
            link_local_from_mac(virtual_mac(5, true)),
            Ipv6Addr::new(0xfe80, 0, 0, 0, 0x200, 0x5eff, 0xfe00, 0x205)
        );
    }
}
