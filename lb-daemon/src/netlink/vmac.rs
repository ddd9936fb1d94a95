//! VRRP virtual-MAC interfaces (keepalived's `use_vmac`): a macvlan on the instance's interface
//! whose MAC is the RFC 5798 §7.3 virtual router MAC, `00:00:5e:00:01:VRID` for IPv4 and
//! `00:00:5e:00:02:VRID` for IPv6. The VIPs live on it, so hosts learn the virtual MAC and a
//! takeover needs no ARP cache update.
//!
//! An IPv6 macvlan gets no kernel-generated link-local address (its EUI-64 would come from the
//! virtual MAC, so every router of the group would claim the same one and fail DAD): like
//! keepalived, lbd turns address generation off on it and gives it the parent's link-local
//! address (or one derived from the parent's MAC), which its adverts are sent from.

use std::net::{IpAddr, Ipv6Addr};

use netlink_packet_route::link::MacVlanMode;
use rtnetlink::{LinkMacVlan, LinkUnspec};

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
    /// `name` on `parent` with `mac`, in private mode as keepalived does, and brings it up. An
    /// interface `name` on another parent or with another MAC (an instance moved to another
    /// interface, or to the other family) is removed and made anew. With
    /// `link_local` (an IPv6 instance's macvlan), the kernel generates no IPv6 address on it and
    /// it gets `link_local`. Returns it, and whether it was created (rather than found).
    pub async fn create_vmac(
        &self,
        name: &str,
        parent: u32,
        mac: [u8; 6],
        link_local: Option<Ipv6Addr>,
    ) -> Result<(Link, bool), NetlinkError> {
        let builder = LinkMacVlan::new(name, parent, MacVlanMode::Private).address(mac.to_vec());
        // Down first when it needs IPv6 settings: the kernel adds its link-local address as the
        // interface comes up.
        let message = if link_local.is_some() { builder.build() } else { builder.up().build() };
        let created = match self.handle().link().add(message.clone()).execute().await {
            Ok(()) => true,
            Err(e) if is_errno(&e, libc::EEXIST) => {
                let existing = self.link_by_name(name).await?;
                if existing.parent == Some(parent) && existing.mac == mac {
                    false
                } else if existing.parent.is_none() {
                    // Not a device on a parent (not a VMAC lbd left): not lbd's to remove.
                    return Err(NetlinkError::NotAVmac(name.to_owned()));
                } else {
                    self.delete_link(existing.index).await?;
                    self.handle().link().add(message).execute().await.map_err(|source| {
                        NetlinkError::Request { request: format!("creating macvlan {name} anew"), source }
                    })?;
                    true
                }
            }
            Err(source) => {
                return Err(NetlinkError::Request { request: format!("creating macvlan {name}"), source });
            }
        };
        let link = self.link_by_name(name).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
