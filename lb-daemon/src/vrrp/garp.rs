//! Gratuitous ARP and unsolicited neighbour advertisements, sent when an instance becomes
//! MASTER so that hosts and switches move the VIPs to this router at once.
//!
//! The frames are byte for byte what keepalived 2.2.7 sends (shared/reference/vrrp-captures):
//! - ARP: a *request* "who-has VIP tell VIP", broadcast, target MAC ff:ff:ff:ff:ff:ff;
//! - IPv6: an ICMPv6 neighbour advertisement (RFC 4861 §4.4) from the VIP to ff02::1 with only
//!   the Override flag and a target link-layer address option, hop limit 255.
//!
//! They go out through an AF_PACKET socket bound to the interface, so the Ethernet source is
//! exactly the MAC we choose (the interface's own, or the virtual MAC with `use_vmac`).

use std::{
    io,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

/// Length of a gratuitous ARP frame.
pub const GARP_LEN: usize = 42;
/// Length of an unsolicited NA frame.
pub const NA_LEN: usize = 86;

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const BROADCAST: [u8; 6] = [0xff; 6];
/// ff02::1, all nodes.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The gratuitous ARP keepalived sends for `vip`, from `mac`.
pub fn gratuitous_arp(mac: [u8; 6], vip: Ipv4Addr) -> [u8; GARP_LEN] {
    let mut f = [0u8; GARP_LEN];
    f[0..6].copy_from_slice(&BROADCAST);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    // Ethernet / IPv4, hardware length 6, protocol length 4, operation 1 (request).
    f[14..22].copy_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]);
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&vip.octets());
    f[32..38].copy_from_slice(&BROADCAST);
    f[38..42].copy_from_slice(&vip.octets());
    f
}

/// The unsolicited neighbour advertisement keepalived sends for `vip`, from `mac`.
pub fn unsolicited_na(mac: [u8; 6], vip: Ipv6Addr) -> [u8; NA_LEN] {
    let mut f = [0u8; NA_LEN];
    // Ethernet: 33:33 + the low 32 bits of ff02::1.
    f[0..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    // IPv6: version 6, payload 32 bytes, next header 58 (ICMPv6), hop limit 255 (RFC 4861 §7.1.2).
    f[14..22].copy_from_slice(&[0x60, 0, 0, 0, 0x00, 0x20, 58, 255]);
    f[22..38].copy_from_slice(&vip.octets());
    f[38..54].copy_from_slice(&ALL_NODES.octets());
    // ICMPv6 type 136, code 0, checksum (below), flags: Override only.
    f[54..62].copy_from_slice(&[136, 0, 0, 0, 0x20, 0, 0, 0]);
    f[62..78].copy_from_slice(&vip.octets());
    // Option 2 (target link-layer address), length 1 (8 bytes).
    f[78..80].copy_from_slice(&[2, 1]);
    f[80..86].copy_from_slice(&mac);
    let csum = icmpv6_checksum(&vip, &ALL_NODES, &f[54..86]);
    f[56..58].copy_from_slice(&csum.to_be_bytes());
    f
}

/// The ICMPv6 checksum (RFC 4443 §2.3) of `message` (checksum field zero) between `src` and `dst`.
fn icmpv6_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, message: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for chunk in bytes.chunks(2) {
            let word = u16::from_be_bytes([chunk[0], chunk.get(1).copied().unwrap_or(0)]);
            sum += u32::from(word);
        }
    };
    add(&src.octets());
    add(&dst.octets());
    let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
    add(&len.to_be_bytes());
    add(&[0, 0, 0, 58]);
    add(message);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // The fold above leaves sum <= 0xffff.
    !(sum as u16)
}

/// An AF_PACKET socket that sends whole frames out of one interface.
#[derive(Debug)]
pub struct FrameSocket {
    fd: OwnedFd,
    ifindex: i32,
}

impl FrameSocket {
    /// Opens a socket for interface `ifindex` (needs CAP_NET_RAW).
    pub fn open(ifindex: u32) -> io::Result<Self> {
        let ifindex = i32::try_from(ifindex).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // Protocol 0: this socket only sends, it receives nothing.
        // SAFETY: plain socket(2) call; the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd, ifindex })
    }

    /// Sends one Ethernet frame as is.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = self.ifindex;
        addr.sll_halen = 6;
        if frame.len() >= 6 {
            addr.sll_addr[..6].copy_from_slice(&frame[..6]);
        }
        // SAFETY: the buffer and address pointers are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(char::is_ascii_hexdigit).collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_default()).collect()
    }

    const MAC: [u8; 6] = [0x02, 0x77, 0, 0, 0, 0x01];

    #[test]
    fn garp_matches_keepalived_capture() {
        let captured = hex(
            "ffff ffff ffff 0277 0000 0001 0806 0001 0800 06 04 0001 0277 0000 0001 0a4d 0064 ffff ffff ffff 0a4d 0064",
        );
        assert_eq!(gratuitous_arp(MAC, Ipv4Addr::new(10, 77, 0, 100)).to_vec(), captured);
    }

    #[test]
    fn unsolicited_na_matches_keepalived_capture() {
        let vip: Ipv6Addr = "fe80::77:100".parse().unwrap_or(Ipv6Addr::UNSPECIFIED);
        let captured = hex(&format!(
            "3333 0000 0001 0277 0000 0001 86dd 6000 0000 0020 3aff {} {} 88 00 5438 20000000 {} 02 01 0277 0000 0001",
            "fe80 0000 0000 0000 0000 0000 0077 0100",
            "ff02 0000 0000 0000 0000 0000 0000 0001",
            "fe80 0000 0000 0000 0000 0000 0077 0100",
        ));
        assert_eq!(unsolicited_na(MAC, vip).to_vec(), captured);
    }
}
