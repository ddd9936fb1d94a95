//! Frames for tests, built with pnet_packet, checksums included.
//!
//! ```
//! use lb_tests::packet::Packet;
//! let frame = Packet::udp("10.0.0.1:1234".parse().unwrap(), "10.0.0.2:53".parse().unwrap(), b"hi").vlan(7).build();
//! assert_eq!(frame.len(), 14 + 4 + 20 + 8 + 2);
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use pnet_packet::{
    ethernet::{EtherType, EtherTypes, MutableEthernetPacket},
    icmp::{IcmpTypes, MutableIcmpPacket},
    ip::{IpNextHeaderProtocol, IpNextHeaderProtocols},
    ipv4::{self, MutableIpv4Packet},
    ipv6::MutableIpv6Packet,
    tcp::{self, MutableTcpPacket, TcpFlags},
    udp::{self, MutableUdpPacket},
    vlan::MutableVlanPacket,
};

/// Default MACs: locally administered, easy to spot in dumps.
pub const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// See [`SRC_MAC`].
pub const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

#[derive(Clone, Debug)]
enum L4 {
    Udp { sport: u16, dport: u16 },
    Tcp { sport: u16, dport: u16, flags: u8, seq: u32, ack: u32, window: u16, options: Vec<u8> },
    IcmpEcho { id: u16, seq: u16 },
    Raw(IpNextHeaderProtocol),
}

/// A frame under construction: Ethernet, optional 802.1Q tags, IPv4 or IPv6, and a transport.
#[derive(Clone, Debug)]
pub struct Packet {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    vlans: Vec<u16>,
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    ipv4_options: Vec<u8>,
    l4: L4,
    payload: Vec<u8>,
}

impl Packet {
    fn new(src: IpAddr, dst: IpAddr, l4: L4, payload: &[u8]) -> Self {
        assert_eq!(src.is_ipv4(), dst.is_ipv4(), "source and destination of different families");
        Self {
            src_mac: SRC_MAC,
            dst_mac: DST_MAC,
            vlans: Vec::new(),
            src,
            dst,
            ttl: 64,
            ipv4_options: Vec::new(),
            l4,
            payload: payload.to_vec(),
        }
    }

    /// A UDP datagram from `src` to `dst`.
    pub fn udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Self {
        Self::new(src.ip(), dst.ip(), L4::Udp { sport: src.port(), dport: dst.port() }, payload)
    }

    /// A TCP segment from `src` to `dst` with `flags` (see [`TcpFlags`]).
    pub fn tcp(src: SocketAddr, dst: SocketAddr, flags: u8, payload: &[u8]) -> Self {
        let l4 = L4::Tcp {
            sport: src.port(),
            dport: dst.port(),
            flags,
            seq: 1,
            ack: 0,
            window: 64240,
            options: Vec::new(),
        };
        Self::new(src.ip(), dst.ip(), l4, payload)
    }

    /// A TCP SYN from `src` to `dst`.
    pub fn tcp_syn(src: SocketAddr, dst: SocketAddr) -> Self {
        Self::tcp(src, dst, TcpFlags::SYN, &[])
    }

    /// An ICMP echo request (IPv4 only).
    pub fn icmp_echo(src: Ipv4Addr, dst: Ipv4Addr, id: u16, seq: u16) -> Self {
        Self::new(src.into(), dst.into(), L4::IcmpEcho { id, seq }, b"lbd-test")
    }

    /// An ICMP (IPv4) or ICMPv6 error of `icmp_type` and `code` from `src` to `dst`: `rest` is
    /// the header's last four bytes (the MTU of "fragmentation needed" or "packet too big"),
    /// `quoted` the start of the packet it is about. The checksum is computed.
    pub fn icmp_error(
        src: IpAddr,
        dst: IpAddr,
        icmp_type: u8,
        code: u8,
        rest: [u8; 4],
        quoted: &[u8],
    ) -> Self {
        let mut message = vec![icmp_type, code, 0, 0];
        message.extend_from_slice(&rest);
        message.extend_from_slice(quoted);
        let (proto, csum) = match (src, dst) {
            (IpAddr::V4(_), IpAddr::V4(_)) => (1, pnet_packet::util::checksum(&message, 1)),
            (IpAddr::V6(s), IpAddr::V6(d)) => (
                58,
                pnet_packet::util::ipv6_checksum(&message, 1, &[], &s, &d, IpNextHeaderProtocols::Icmpv6),
            ),
            _ => panic!("source and destination of different families"),
        };
        message[2..4].copy_from_slice(&csum.to_be_bytes());
        Self::raw(src, dst, proto, &message)
    }

    /// An IPv4/IPv6 packet of protocol `proto` carrying `payload` as is.
    pub fn raw(src: IpAddr, dst: IpAddr, proto: u8, payload: &[u8]) -> Self {
        Self::new(src, dst, L4::Raw(IpNextHeaderProtocol(proto)), payload)
    }

    /// Sets the Ethernet addresses.
    #[must_use]
    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Self {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    /// Adds an 802.1Q tag (outermost first).
    #[must_use]
    pub fn vlan(mut self, id: u16) -> Self {
        self.vlans.push(id);
        self
    }

    /// Sets the IPv4 TTL / IPv6 hop limit.
    #[must_use]
    pub fn ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the TCP sequence number, acknowledgement number and window (TCP only).
    #[must_use]
    pub fn seq_ack(mut self, seq_number: u32, ack_number: u32, window_size: u16) -> Self {
        if let L4::Tcp { seq, ack, window, .. } = &mut self.l4 {
            (*seq, *ack, *window) = (seq_number, ack_number, window_size);
        }
        self
    }

    /// Sets the TCP options (padded to a multiple of 4 bytes with End of Options; TCP only).
    #[must_use]
    pub fn tcp_options(mut self, bytes: &[u8]) -> Self {
        if let L4::Tcp { options, .. } = &mut self.l4 {
            *options = bytes.to_vec();
            while !options.len().is_multiple_of(4) {
                options.push(0);
            }
        }
        self
    }

    /// Adds IPv4 options (padded to a multiple of 4 bytes with End of Options).
    #[must_use]
    pub fn ipv4_options(mut self, options: &[u8]) -> Self {
        self.ipv4_options = options.to_vec();
        while !self.ipv4_options.len().is_multiple_of(4) {
            self.ipv4_options.push(0);
        }
        self
    }

    /// The transport header and payload, checksummed for the addresses.
    fn l4_bytes(&self) -> (IpNextHeaderProtocol, Vec<u8>) {
        match self.l4 {
            L4::Udp { sport, dport } => {
                let mut buf = vec![0u8; 8 + self.payload.len()];
                let mut udp = MutableUdpPacket::new(&mut buf).expect("buffer sized for the header");
                udp.set_source(sport);
                udp.set_destination(dport);
                udp.set_length(u16::try_from(8 + self.payload.len()).expect("payload fits a datagram"));
                udp.set_payload(&self.payload);
                let csum = match (self.src, self.dst) {
                    (IpAddr::V4(s), IpAddr::V4(d)) => udp::ipv4_checksum(&udp.to_immutable(), &s, &d),
                    (IpAddr::V6(s), IpAddr::V6(d)) => udp::ipv6_checksum(&udp.to_immutable(), &s, &d),
                    _ => unreachable!("families checked in new"),
                };
                udp.set_checksum(csum);
                (IpNextHeaderProtocols::Udp, buf)
            }
            L4::Tcp { sport, dport, flags, seq, ack, window, ref options } => {
                let header = 20 + options.len();
                let mut buf = vec![0u8; header + self.payload.len()];
                buf[20..header].copy_from_slice(options);
                let mut tcp = MutableTcpPacket::new(&mut buf).expect("buffer sized for the header");
                tcp.set_source(sport);
                tcp.set_destination(dport);
                tcp.set_sequence(seq);
                tcp.set_acknowledgement(ack);
                tcp.set_data_offset(u8::try_from(header / 4).expect("options are at most 40 bytes"));
                tcp.set_flags(flags);
                tcp.set_window(window);
                tcp.set_payload(&self.payload);
                let csum = match (self.src, self.dst) {
                    (IpAddr::V4(s), IpAddr::V4(d)) => tcp::ipv4_checksum(&tcp.to_immutable(), &s, &d),
                    (IpAddr::V6(s), IpAddr::V6(d)) => tcp::ipv6_checksum(&tcp.to_immutable(), &s, &d),
                    _ => unreachable!("families checked in new"),
                };
                tcp.set_checksum(csum);
                (IpNextHeaderProtocols::Tcp, buf)
            }
            L4::IcmpEcho { id, seq } => {
                let mut buf = vec![0u8; 8 + self.payload.len()];
                buf[4..6].copy_from_slice(&id.to_be_bytes());
                buf[6..8].copy_from_slice(&seq.to_be_bytes());
                buf[8..].copy_from_slice(&self.payload);
                let mut icmp = MutableIcmpPacket::new(&mut buf).expect("buffer sized for the header");
                icmp.set_icmp_type(IcmpTypes::EchoRequest);
                let csum = pnet_packet::icmp::checksum(&icmp.to_immutable());
                icmp.set_checksum(csum);
                (IpNextHeaderProtocols::Icmp, buf)
            }
            L4::Raw(proto) => (proto, self.payload.clone()),
        }
    }

    /// The IP packet (no Ethernet header).
    pub fn ip_bytes(&self) -> Vec<u8> {
        let (proto, l4) = self.l4_bytes();
        match (self.src, self.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                ipv4_packet(src, dst, proto, self.ttl, &self.ipv4_options, &l4)
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => ipv6_packet(src, dst, proto, self.ttl, &l4),
            _ => unreachable!("families checked in new"),
        }
    }

    /// The whole frame.
    pub fn build(&self) -> Vec<u8> {
        let ip = self.ip_bytes();
        let ethertype = if self.src.is_ipv4() { EtherTypes::Ipv4 } else { EtherTypes::Ipv6 };
        // Innermost first: wrap the IP packet in each tag from the inside out.
        let mut inner = ip;
        let mut inner_type = ethertype;
        for &id in self.vlans.iter().rev() {
            let mut tagged = vec![0u8; 4 + inner.len()];
            let mut vlan = MutableVlanPacket::new(&mut tagged).expect("buffer sized for the tag");
            vlan.set_vlan_identifier(id);
            vlan.set_ethertype(inner_type);
            vlan.set_payload(&inner);
            inner = tagged;
            inner_type = EtherTypes::Vlan;
        }
        ethernet(self.dst_mac, self.src_mac, inner_type, &inner)
    }
}

/// An Ethernet frame.
pub fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: EtherType, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 14 + payload.len()];
    let mut eth = MutableEthernetPacket::new(&mut buf).expect("buffer sized for the header");
    eth.set_destination(dst.into());
    eth.set_source(src.into());
    eth.set_ethertype(ethertype);
    eth.set_payload(payload);
    buf
}

fn ipv4_packet(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: IpNextHeaderProtocol,
    ttl: u8,
    options: &[u8],
    l4: &[u8],
) -> Vec<u8> {
    let header_len = 20 + options.len();
    let mut buf = vec![0u8; header_len + l4.len()];
    let mut ip = MutableIpv4Packet::new(&mut buf).expect("buffer sized for the header");
    ip.set_version(4);
    ip.set_header_length(u8::try_from(header_len / 4).expect("options are at most 40 bytes"));
    ip.set_total_length(u16::try_from(header_len + l4.len()).expect("packet fits 64 KiB"));
    ip.set_identification(0x1234);
    ip.set_flags(ipv4::Ipv4Flags::DontFragment);
    ip.set_ttl(ttl);
    ip.set_next_level_protocol(proto);
    ip.set_source(src);
    ip.set_destination(dst);
    buf[20..header_len].copy_from_slice(options);
    buf[header_len..].copy_from_slice(l4);
    let mut ip = MutableIpv4Packet::new(&mut buf).expect("buffer sized for the header");
    let csum = ipv4::checksum(&ip.to_immutable());
    ip.set_checksum(csum);
    buf
}

fn ipv6_packet(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    proto: IpNextHeaderProtocol,
    hop_limit: u8,
    l4: &[u8],
) -> Vec<u8> {
    let mut buf = vec![0u8; 40 + l4.len()];
    let mut ip = MutableIpv6Packet::new(&mut buf).expect("buffer sized for the header");
    ip.set_version(6);
    ip.set_payload_length(u16::try_from(l4.len()).expect("payload fits 64 KiB"));
    ip.set_next_header(proto);
    ip.set_hop_limit(hop_limit);
    ip.set_source(src);
    ip.set_destination(dst);
    ip.set_payload(l4);
    buf
}

/// An AF_PACKET socket of `protocol` (network order; 0: none received) on `interface` of the
/// calling thread's network namespace, and the interface's index.
fn packet_socket(interface: &str, protocol: u16, flags: i32) -> std::io::Result<(std::os::fd::OwnedFd, i32)> {
    let name = std::ffi::CString::new(interface).map_err(std::io::Error::other)?;
    // SAFETY: a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: plain socket creation; the descriptor is owned (and closed) below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | flags, i32::from(protocol)) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let socket = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    Ok((socket, i32::try_from(ifindex).map_err(std::io::Error::other)?))
}

/// Sends `frames` as they are out of `interface` of the network namespace the calling thread
/// is in (see [`crate::lab::Netns::enter`]), through an AF_PACKET socket: spoofed sources
/// included, which no ordinary socket sends.
pub fn send_frames(interface: &str, frames: &[Vec<u8>]) -> std::io::Result<()> {
    let (socket, ifindex) = packet_socket(interface, 0, 0)?;
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = ifindex;
    addr.sll_halen = 6;
    for frame in frames {
        addr.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: the buffer and the address are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                std::os::fd::AsRawFd::as_raw_fd(&socket),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if sent < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Every frame an interface receives or sends, as the kernel hands it to packet sockets
/// (tcpdump's view), from when it is opened.
#[derive(Debug)]
pub struct Capture {
    socket: std::os::fd::OwnedFd,
}

impl Capture {
    /// Starts capturing on `interface` of the network namespace the calling thread is in (see
    /// [`crate::lab::Netns::enter`]); the capture goes on after the thread leaves it.
    pub fn open(interface: &str) -> std::io::Result<Self> {
        let all = (libc::ETH_P_ALL as u16).to_be();
        let (socket, ifindex) = packet_socket(interface, all, libc::SOCK_NONBLOCK)?;
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = all;
        addr.sll_ifindex = ifindex;
        // SAFETY: the address is valid for the length given.
        let rc = unsafe {
            libc::bind(
                std::os::fd::AsRawFd::as_raw_fd(&socket),
                (&raw const addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self { socket })
    }

    /// The frames captured since the last call.
    pub fn frames(&self) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            // SAFETY: the buffer is valid for its length.
            let n = unsafe {
                libc::recv(
                    std::os::fd::AsRawFd::as_raw_fd(&self.socket),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                )
            };
            let Ok(n) = usize::try_from(n) else { return frames };
            frames.push(buf[..n].to_vec());
        }
    }
}

/// Checks that an Ethernet frame carrying IPv4 TCP has valid IP and TCP checksums; returns
/// its source and destination addresses and ports.
pub fn check_ipv4_tcp(frame: &[u8]) -> Result<(Ipv4Addr, u16, Ipv4Addr, u16), String> {
    use pnet_packet::{
        Packet as _,
        ethernet::EthernetPacket,
        ipv4::{self, Ipv4Packet},
        tcp::{self, TcpPacket},
    };
    let eth = EthernetPacket::new(frame).ok_or("short frame")?;
    if eth.get_ethertype() != EtherTypes::Ipv4 {
        return Err(format!("ethertype {}", eth.get_ethertype()));
    }
    let ip = Ipv4Packet::new(eth.payload()).ok_or("short IP")?;
    if ipv4::checksum(&ip) != ip.get_checksum() {
        return Err("bad IPv4 checksum".into());
    }
    let tcp = TcpPacket::new(ip.payload()).ok_or("short TCP")?;
    if tcp::ipv4_checksum(&tcp, &ip.get_source(), &ip.get_destination()) != tcp.get_checksum() {
        return Err("bad TCP checksum".into());
    }
    Ok((ip.get_source(), tcp.get_source(), ip.get_destination(), tcp.get_destination()))
}

/// Source and destination (address, port) of an Ethernet frame carrying IPv6 TCP (no
/// extension headers), after checking the TCP checksum; an error says what is wrong.
pub fn check_ipv6_tcp(frame: &[u8]) -> Result<(Ipv6Addr, u16, Ipv6Addr, u16), String> {
    use pnet_packet::{
        Packet as _,
        ethernet::EthernetPacket,
        ipv6::Ipv6Packet,
        tcp::{self, TcpPacket},
    };
    let eth = EthernetPacket::new(frame).ok_or("short frame")?;
    if eth.get_ethertype() != EtherTypes::Ipv6 {
        return Err(format!("ethertype {}", eth.get_ethertype()));
    }
    let ip = Ipv6Packet::new(eth.payload()).ok_or("short IP")?;
    if usize::from(ip.get_payload_length()) != ip.payload().len() {
        return Err(format!("payload length {} for {} bytes", ip.get_payload_length(), ip.payload().len()));
    }
    let tcp = TcpPacket::new(ip.payload()).ok_or("short TCP")?;
    if tcp::ipv6_checksum(&tcp, &ip.get_source(), &ip.get_destination()) != tcp.get_checksum() {
        return Err("bad TCP checksum".into());
    }
    Ok((ip.get_source(), tcp.get_source(), ip.get_destination(), tcp.get_destination()))
}

/// The client address of the TOA option in an Ethernet frame carrying TCP, if it has one
/// (see lbd's FNAT): over IPv4 kind 254, length 8 (port, IPv4 address); over IPv6 kind 253,
/// length 20 (port, IPv6 address).
pub fn toa_option(frame: &[u8]) -> Option<SocketAddr> {
    use pnet_packet::{
        Packet as _, ethernet::EthernetPacket, ipv4::Ipv4Packet, ipv6::Ipv6Packet, tcp::TcpPacket,
    };
    let eth = EthernetPacket::new(frame)?;
    let (proto, payload, v6) = match eth.get_ethertype() {
        EtherTypes::Ipv4 => {
            let ip = Ipv4Packet::new(eth.payload())?;
            (ip.get_next_level_protocol(), ip.payload().to_vec(), false)
        }
        EtherTypes::Ipv6 => {
            let ip = Ipv6Packet::new(eth.payload())?;
            (ip.get_next_header(), ip.payload().to_vec(), true)
        }
        _ => return None,
    };
    if proto != IpNextHeaderProtocols::Tcp {
        return None;
    }
    let tcp = TcpPacket::new(&payload)?;
    let options = tcp.get_options_raw();
    let (kind, len) = if v6 { (253, 20) } else { (254, 8) };
    let mut i = 0;
    while i < options.len() {
        match options[i] {
            0 => return None,
            1 => i += 1,
            k if k == kind => {
                let o = options.get(i..i + len)?;
                if usize::from(o[1]) != len {
                    return None;
                }
                let port = u16::from_be_bytes([o[2], o[3]]);
                let ip: IpAddr = if v6 {
                    Ipv6Addr::from(<[u8; 16]>::try_from(&o[4..20]).ok()?).into()
                } else {
                    Ipv4Addr::new(o[4], o[5], o[6], o[7]).into()
                };
                return Some(SocketAddr::new(ip, port));
            }
            _ => i += usize::from(*options.get(i + 1)?).max(2),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use pnet_packet::{Packet as _, ethernet::EthernetPacket, ipv4::Ipv4Packet, udp::UdpPacket};

    use super::*;

    #[test]
    fn udp_frame_has_valid_checksums() {
        let src: SocketAddr = "10.0.0.1:1000".parse().unwrap();
        let dst: SocketAddr = "10.0.0.2:2000".parse().unwrap();
        let frame = Packet::udp(src, dst, b"hello").build();
        let eth = EthernetPacket::new(&frame).unwrap();
        assert_eq!(eth.get_ethertype(), EtherTypes::Ipv4);
        let ip = Ipv4Packet::new(eth.payload()).unwrap();
        assert_eq!(ipv4::checksum(&ip), ip.get_checksum());
        let udp = UdpPacket::new(ip.payload()).unwrap();
        let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else { unreachable!() };
        assert_eq!(udp::ipv4_checksum(&udp, &s, &d), udp.get_checksum());
        assert_eq!(udp.payload(), b"hello");
    }

    #[test]
    fn vlan_tags_nest_outermost_first() {
        let frame = Packet::udp("[::1]:1".parse().unwrap(), "[::2]:2".parse().unwrap(), b"")
            .vlan(100)
            .vlan(200)
            .build();
        assert_eq!(&frame[12..14], &[0x81, 0x00]);
        assert_eq!(u16::from_be_bytes([frame[14], frame[15]]) & 0xfff, 100);
        assert_eq!(&frame[16..18], &[0x81, 0x00]);
        assert_eq!(u16::from_be_bytes([frame[18], frame[19]]) & 0xfff, 200);
        assert_eq!(&frame[20..22], &[0x86, 0xdd]);
    }

    #[test]
    fn ipv4_options_extend_the_header() {
        let frame = Packet::tcp_syn("10.0.0.1:1".parse().unwrap(), "10.0.0.2:80".parse().unwrap())
            .ipv4_options(&[1, 1, 1])
            .build();
        assert_eq!(frame[14] & 0x0f, 6);
    }
}
