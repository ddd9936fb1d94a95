//! VRRP virtual-MAC interfaces (keepalived's `use_vmac`): a macvlan on the instance's interface
//! whose MAC is the RFC 5798 §7.3 virtual router MAC, `00:00:5e:00:01:VRID` for IPv4 and
//! `00:00:5e:00:02:VRID` for IPv6. The VIPs live on it, so hosts learn the virtual MAC and a
//! takeover needs no ARP cache update.

use netlink_packet_route::link::MacVlanMode;
use rtnetlink::{LinkMacVlan, LinkUnspec};

use super::{Link, Netlink, NetlinkError, is_errno};

/// The virtual router MAC of RFC 5798 §7.3 for `vrid`.
pub fn virtual_mac(vrid: u8, ipv6: bool) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, if ipv6 { 0x02 } else { 0x01 }, vrid]
}

impl Netlink {
    /// Creates (or finds, if a previous run left it) the macvlan `name` on `parent` with `mac`,
    /// in private mode as keepalived does, and brings it up.
    pub async fn create_vmac(&self, name: &str, parent: u32, mac: [u8; 6]) -> Result<Link, NetlinkError> {
        let message = LinkMacVlan::new(name, parent, MacVlanMode::Private).address(mac.to_vec()).up().build();
        match self.handle().link().add(message).execute().await {
            Ok(()) => {}
            Err(e) if is_errno(&e, libc::EEXIST) => {}
            Err(source) => {
                return Err(NetlinkError::Request { request: format!("creating macvlan {name}"), source });
            }
        }
        let link = self.link_by_name(name).await?;
        if !link.up {
            self.set_link_up(link.index, true).await?;
        }
        Ok(link)
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
}
