//! VRRP sockets: raw IP protocol 112 on one interface, one socket per interface and family,
//! shared by every instance there (the daemon demultiplexes by VRID).
//!
//! IPv4 adverts are sent with `IP_HDRINCL` and a header built by [`Ipv4Header`], so that TOS,
//! TTL, DF and the identification counter are keepalived's exactly. IPv6 adverts let the kernel
//! build the header (traffic class and hop limit set by socket options); the destination and
//! hop limit of received IPv6 adverts come from `IPV6_PKTINFO` / `IPV6_HOPLIMIT` control
//! messages, since raw IPv6 sockets do not deliver the header.
//!
//! Every advert carries the kernel's receive timestamp (`SO_TIMESTAMPNS`), as
//! [`Received::arrived`]: the backup's Master_Down_Timer and Skew_Time (RFC 5798 §6.4.2) run
//! from when the advert reached the host, not from when a loaded machine got round to reading
//! it (keepalived counts from the read).

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    os::fd::{AsRawFd as _, RawFd},
    sync::atomic::{AtomicU16, Ordering},
    time::{Duration, Instant, SystemTime},
};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrIn, SockaddrIn6, recvmsg};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use tokio::io::{Interest, unix::AsyncFd};

use super::{
    ah,
    packet::{
        AH_HEADER_LEN, AUTH_DATA_LEN, AhHeader, IPPROTO_AH, IPPROTO_VRRP, Ipv4Header, PseudoHeader,
        VRRP_MCAST_GROUP_V4, VRRP_TOS, VRRP_TTL, VrrpAdvert, VrrpPacketError,
    },
};

/// Largest advert accepted: header, 255 IPv6 addresses, auth data, AH, IP header.
const MAX_PACKET: usize = 8 + 255 * 16 + 8 + 24 + 60;

/// The oldest kernel timestamp believed: an older one (or one in the future) means the wall
/// clock was stepped between the packet's arrival and its reading, and the advert is dated when
/// it is read instead.
const MAX_STAMP_AGE: Duration = Duration::from_secs(1);

/// An advert as it arrived.
#[derive(Debug)]
pub struct Received {
    /// Source address (the sender's primary address).
    pub source: IpAddr,
    /// Destination address (multicast group or this router's unicast address).
    pub destination: IpAddr,
    /// TTL (IPv4) or hop limit (IPv6) it arrived with.
    pub hop_limit: u8,
    /// The decoded advert, or why it could not be decoded (the caller counts and drops it).
    pub advert: Result<VrrpAdvert, VrrpPacketError>,
    /// With `auth_type AH`: the AH header and the whole packet, for [`ah::verify`].
    pub ah: Option<(AhHeader, Vec<u8>)>,
    /// A unicast VRRPv3 advert whose checksum is keepalived's old one (pseudo-header with
    /// 224.0.0.18, `old_unicast_checksum`), not the RFC's.
    pub old_checksum: bool,
    /// When the advert reached the host (the kernel's receive timestamp); `None` without one.
    pub arrived: Option<Instant>,
}

/// How to sign an advert with `auth_type AH`.
#[derive(Debug, Clone, Copy)]
pub struct AhSigning<'a> {
    /// The key: `auth_pass`, zero-padded to 8 bytes.
    pub key: &'a [u8; AUTH_DATA_LEN],
    /// The advert's sequence number.
    pub sequence: u32,
    /// A unicast instance (the TTL is then left out of the ICV, as keepalived does).
    pub unicast: bool,
}

/// A raw VRRP socket bound to one interface.
#[derive(Debug)]
pub struct VrrpSocket {
    fd: AsyncFd<Socket>,
    /// IPv4 only: the next identification field (keepalived counts up from 1). Atomic so that
    /// one socket sends and receives from different tasks.
    next_id: AtomicU16,
    source: IpAddr,
    /// `unicast_ttl`: the TTL / hop limit of adverts to unicast peers.
    unicast_ttl: u8,
}

impl VrrpSocket {
    /// Opens an IPv4 socket on `interface` (index `ifindex`), sending from `source`, joined to
    /// `group` unless it is `None` (unicast only); for adverts in AH (`auth_type AH`) if `ah`.
    pub fn open_v4(
        interface: &str,
        ifindex: u32,
        source: Ipv4Addr,
        group: Option<Ipv4Addr>,
        ah: bool,
    ) -> io::Result<Self> {
        let protocol = if ah { IPPROTO_AH } else { IPPROTO_VRRP };
        let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(i32::from(protocol))))?;
        socket.bind_device(Some(interface.as_bytes()))?;
        socket.set_header_included_v4(true)?;
        socket.set_multicast_loop_v4(false)?;
        set_int_option(socket.as_raw_fd(), libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)?;
        // By index, not by address: the source may belong to another interface (the parent of a
        // use_vmac macvlan), and the kernel refuses a multicast interface other than the bound
        // device.
        set_multicast_if_v4(socket.as_raw_fd(), ifindex, source)?;
        if let Some(group) = group {
            socket.join_multicast_v4_n(&group, &InterfaceIndexOrAddress::Index(ifindex))?;
        }
        Self::register(socket, source.into())
    }

    /// Opens an IPv6 socket on `interface` (index `ifindex`), sending from `source` (its
    /// link-local address, RFC 5798 §5.1.2.1), joined to `group` unless it is `None`.
    pub fn open_v6(
        interface: &str,
        ifindex: u32,
        source: Ipv6Addr,
        group: Option<Ipv6Addr>,
    ) -> io::Result<Self> {
        let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::from(i32::from(IPPROTO_VRRP))))?;
        socket.bind_device(Some(interface.as_bytes()))?;
        socket.bind(&SocketAddr::V6(SocketAddrV6::new(source, 0, 0, ifindex)).into())?;
        socket.set_multicast_loop_v6(false)?;
        socket.set_multicast_if_v6(ifindex)?;
        socket.set_multicast_hops_v6(u32::from(VRRP_TTL))?;
        socket.set_unicast_hops_v6(u32::from(VRRP_TTL))?;
        socket.set_tclass_v6(u32::from(VRRP_TOS))?;
        let fd = socket.as_raw_fd();
        set_int_option(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
        set_int_option(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)?;
        set_int_option(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)?;
        if let Some(group) = group {
            socket.join_multicast_v6(&group, ifindex)?;
        }
        Self::register(socket, source.into())
    }

    fn register(socket: Socket, source: IpAddr) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        // Readable only: adverts are sent straight away (a raw socket's send buffer does not
        // fill at advert rates), and a write interest would wake the runtime after every send
        // for nothing (an edge-triggered EPOLLOUT each time the buffer drains).
        // SAFETY: the Socket owns its descriptor and is moved into the AsyncFd, which neither
        // replaces nor closes it while registered.
        let fd = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE)? };
        Ok(Self { fd, next_id: AtomicU16::new(1), source, unicast_ttl: VRRP_TTL })
    }

    /// Sends unicast adverts with TTL (IPv4) or hop limit (IPv6) `ttl` (`unicast_ttl`) rather
    /// than 255; multicast adverts keep 255.
    pub fn with_unicast_ttl(mut self, ttl: u8) -> io::Result<Self> {
        if self.source.is_ipv6() {
            self.fd.get_ref().set_unicast_hops_v6(u32::from(ttl))?;
        }
        self.unicast_ttl = ttl;
        Ok(self)
    }

    /// Sets the socket's receive buffer (SO_RCVBUF: the kernel doubles it, and caps it at
    /// `net.core.rmem_max`), for `kernel_rx_buf_size` / `vrrp_rx_bufs_policy`.
    pub fn set_receive_buffer(&self, bytes: u32) -> io::Result<()> {
        self.fd.get_ref().set_recv_buffer_size(usize::try_from(bytes).unwrap_or(usize::MAX))
    }

    /// The address adverts are sent from.
    pub fn source(&self) -> IpAddr {
        self.source
    }

    /// Sends `advert` to `destination` (the group, or a unicast peer), in AH if `ah` (IPv4),
    /// with keepalived's old unicast checksum if `old_checksum` (IPv4 VRRPv3).
    pub async fn send(
        &self,
        advert: &VrrpAdvert,
        destination: IpAddr,
        ah: Option<AhSigning<'_>>,
        old_checksum: bool,
    ) -> io::Result<()> {
        self.send_now(advert, destination, ah, old_checksum)
    }

    /// [`VrrpSocket::send`] from any thread, runtime or not: one non-blocking `sendto`.
    pub fn send_now(
        &self,
        advert: &VrrpAdvert,
        destination: IpAddr,
        ah: Option<AhSigning<'_>>,
        old_checksum: bool,
    ) -> io::Result<()> {
        let summed =
            if old_checksum && destination.is_ipv4() { VRRP_MCAST_GROUP_V4.into() } else { destination };
        let pseudo = PseudoHeader::from_addresses(self.source, summed).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "source and destination families differ")
        })?;
        let invalid = |e: VrrpPacketError| io::Error::new(io::ErrorKind::InvalidInput, e);
        let message = advert.encode(&pseudo).map_err(invalid)?;
        let (packet, to) = match (self.source, destination) {
            (IpAddr::V4(source), IpAddr::V4(dst)) => {
                // keepalived skips 0 when the counter wraps.
                let id = self
                    .next_id
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |id| {
                        Some(id.checked_add(1).unwrap_or(1))
                    })
                    .unwrap_or(1);
                let mut header = Ipv4Header::vrrp(source, dst, id);
                if !dst.is_multicast() {
                    header.ttl = self.unicast_ttl;
                }
                let ah_len = if ah.is_some() { AH_HEADER_LEN } else { 0 };
                let mut packet = Vec::with_capacity(20 + ah_len + message.len());
                if let Some(signing) = &ah {
                    header.protocol = IPPROTO_AH;
                    header.encode_into(ah_len + message.len(), &mut packet).map_err(invalid)?;
                    let spi = u32::from(source);
                    AhHeader { spi, sequence: signing.sequence, icv: Default::default() }
                        .encode_into(&mut packet);
                    packet.extend_from_slice(&message);
                    ah::sign(signing.key, &mut packet, signing.unicast);
                } else {
                    header.encode_into(message.len(), &mut packet).map_err(invalid)?;
                    packet.extend_from_slice(&message);
                }
                (packet, SocketAddr::V4(SocketAddrV4::new(dst, 0)))
            }
            (_, IpAddr::V6(dst)) => (message, SocketAddr::V6(SocketAddrV6::new(dst, 0, 0, 0))),
            _ => unreachable!("pseudo-header construction checked the families"),
        };
        let to = to.into();
        // Non-blocking: a full send buffer is an error the caller logs; the next advert follows
        // an interval later in any case.
        self.fd.get_ref().send_to(&packet, &to).map(drop)
    }

    /// Waits for the next advert.
    pub async fn recv(&self) -> io::Result<Received> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next advert (registers `cx` for the socket's readiness if none waits).
    pub fn poll_recv(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<io::Result<Received>> {
        loop {
            let mut guard = match self.fd.poll_read_ready(cx) {
                std::task::Poll::Ready(guard) => guard?,
                std::task::Poll::Pending => return std::task::Poll::Pending,
            };
            if let Ok(result) = guard.try_io(|fd| self.read_one(fd.get_ref())) {
                return std::task::Poll::Ready(result);
            }
        }
    }

    /// The next advert if one is waiting, without a system call when the last readiness event
    /// said there is none.
    pub fn try_recv(&self) -> Option<io::Result<Received>> {
        match self.fd.try_io(Interest::READABLE, |socket| self.read_one(socket)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            result => Some(result),
        }
    }

    fn read_one(&self, socket: &Socket) -> io::Result<Received> {
        if self.source.is_ipv4() { recv_v4(socket.as_raw_fd()) } else { recv_v6(socket.as_raw_fd()) }
    }
}

/// Reads one raw IPv4 packet with its receive timestamp.
fn recv_v4(fd: RawFd) -> io::Result<Received> {
    let mut buf = [0u8; MAX_PACKET];
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!(libc::timespec);
    let msg =
        recvmsg::<SockaddrIn>(fd, &mut iov, Some(&mut cmsg), MsgFlags::empty()).map_err(io::Error::from)?;
    let mut arrived = None;
    for message in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmTimestampns(at) = message {
            arrived = arrival(Duration::from(at));
        }
    }
    let len = msg.bytes;
    Ok(Received { arrived, ..decode_v4(buf.get(..len).unwrap_or_default()) })
}

/// The monotonic instant of a kernel receive timestamp (`stamp`: wall-clock time since the
/// epoch), or `None` if it is in the future or older than [`MAX_STAMP_AGE`].
fn arrival(stamp: Duration) -> Option<Instant> {
    let (wall, now) = (SystemTime::now(), Instant::now());
    let age = wall.duration_since(SystemTime::UNIX_EPOCH.checked_add(stamp)?).ok()?;
    if age > MAX_STAMP_AGE {
        return None;
    }
    now.checked_sub(age)
}

/// Decodes a raw IPv4 packet (header included, as raw IPv4 sockets deliver it).
fn decode_v4(packet: &[u8]) -> Received {
    match Ipv4Header::decode(packet) {
        Ok((header, payload)) => {
            let pseudo = PseudoHeader::V4 { source: header.source, destination: header.destination };
            let (ah, message) = if header.protocol == IPPROTO_AH {
                match AhHeader::decode(payload) {
                    Ok((ah, message)) => (Some((ah, packet.to_vec())), Ok(message)),
                    Err(e) => (None, Err(e)),
                }
            } else {
                (None, Ok(payload))
            };
            let mut advert = message.clone().and_then(|m| VrrpAdvert::decode(m, &pseudo));
            let mut old_checksum = false;
            // keepalived before 1.3.6 summed unicast v3 adverts with the multicast group.
            if matches!(advert, Err(VrrpPacketError::BadChecksum { .. }))
                && !header.destination.is_multicast()
                && let Ok(message) = message
                && let Ok(old) = VrrpAdvert::decode(
                    message,
                    &PseudoHeader::V4 { source: header.source, destination: VRRP_MCAST_GROUP_V4 },
                )
                && old.version() == super::packet::Version::V3
            {
                advert = Ok(old);
                old_checksum = true;
            }
            Received {
                source: header.source.into(),
                destination: header.destination.into(),
                hop_limit: header.ttl,
                advert,
                ah,
                old_checksum,
                arrived: None,
            }
        }
        Err(e) => Received {
            source: Ipv4Addr::UNSPECIFIED.into(),
            destination: Ipv4Addr::UNSPECIFIED.into(),
            hop_limit: 0,
            advert: Err(e),
            ah: None,
            old_checksum: false,
            arrived: None,
        },
    }
}

fn recv_v6(fd: RawFd) -> io::Result<Received> {
    let mut buf = [0u8; MAX_PACKET];
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int, libc::timespec);
    let msg =
        recvmsg::<SockaddrIn6>(fd, &mut iov, Some(&mut cmsg), MsgFlags::empty()).map_err(io::Error::from)?;
    let source = msg.address.map(|a| a.ip()).unwrap_or(Ipv6Addr::UNSPECIFIED);
    let mut destination = Ipv6Addr::UNSPECIFIED;
    let mut hop_limit = 0;
    let mut arrived = None;
    for message in msg.cmsgs().map_err(io::Error::from)? {
        match message {
            ControlMessageOwned::Ipv6PacketInfo(info) => destination = Ipv6Addr::from(info.ipi6_addr.s6_addr),
            ControlMessageOwned::Ipv6HopLimit(limit) => hop_limit = u8::try_from(limit).unwrap_or(0),
            ControlMessageOwned::ScmTimestampns(at) => arrived = arrival(Duration::from(at)),
            _ => {}
        }
    }
    let len = msg.bytes;
    let pseudo = PseudoHeader::V6 { source, destination };
    let advert = VrrpAdvert::decode(buf.get(..len).unwrap_or_default(), &pseudo);
    Ok(Received {
        source: source.into(),
        destination: destination.into(),
        hop_limit,
        advert,
        ah: None,
        old_checksum: false,
        arrived,
    })
}

/// `IP_MULTICAST_IF` with an `ip_mreqn`: send multicast out of `ifindex`, from `source`.
fn set_multicast_if_v4(fd: RawFd, ifindex: u32, source: Ipv4Addr) -> io::Result<()> {
    let request = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr { s_addr: u32::from_ne_bytes(source.octets()) },
        imr_ifindex: i32::try_from(ifindex).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
    };
    // SAFETY: setsockopt with a pointer to an ip_mreqn and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            (&raw const request).cast(),
            size_of::<libc::ip_mreqn>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

fn set_int_option(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: setsockopt with a pointer to an int and its size.
    let rc = unsafe {
        libc::setsockopt(fd, level, name, (&raw const value).cast(), size_of::<i32>() as libc::socklen_t)
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vrrp::packet::{AddressList, MaxAdverInt, VersionFields, Vrid};

    /// keepalived's unicast v3 advert (vrrp-captures 2c: VRID 77, priority 150, 10.77.0.100,
    /// 10.77.0.1 → 10.77.0.2), its checksum summed with `summed` as destination.
    fn unicast_v3(summed: Ipv4Addr) -> Vec<u8> {
        let advert = VrrpAdvert {
            vrid: Vrid::new(77).unwrap_or_else(|| unreachable!()),
            priority: 150,
            fields: VersionFields::V3 {
                max_adver_int: MaxAdverInt::from_centiseconds(100).unwrap_or_else(|| unreachable!()),
            },
            addresses: AddressList::V4(vec![Ipv4Addr::new(10, 77, 0, 100)]),
        };
        let (source, peer) = (Ipv4Addr::new(10, 77, 0, 1), Ipv4Addr::new(10, 77, 0, 2));
        let message = advert
            .encode(&PseudoHeader::V4 { source, destination: summed })
            .unwrap_or_else(|e| panic!("{e}"));
        let mut packet = Vec::new();
        Ipv4Header::vrrp(source, peer, 1)
            .encode_into(message.len(), &mut packet)
            .unwrap_or_else(|e| panic!("{e}"));
        packet.extend_from_slice(&message);
        packet
    }

    #[test]
    fn kernel_timestamps_become_instants_unless_implausible() {
        let wall = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let at = arrival(wall.saturating_sub(Duration::from_millis(30))).unwrap_or_else(|| panic!("refused"));
        let age = at.elapsed();
        assert!(age >= Duration::from_millis(30) && age < Duration::from_secs(1), "{age:?}");
        // A stamp from the future or from long ago (the wall clock stepped): not believed.
        assert_eq!(arrival(wall + Duration::from_secs(60)), None);
        assert_eq!(arrival(wall.saturating_sub(Duration::from_secs(60))), None);
    }

    #[tokio::test]
    async fn an_advert_is_dated_when_it_reached_the_host_not_when_it_is_read() {
        // Unicast on loopback (as root, the tests' premise): the advert waits 50 ms in the
        // socket before it is read.
        let address = Ipv4Addr::new(127, 0, 0, 1);
        let socket = VrrpSocket::open_v4("lo", 1, address, None, false).unwrap_or_else(|e| panic!("{e}"));
        let advert = VrrpAdvert {
            vrid: Vrid::new(231).unwrap_or_else(|| unreachable!()),
            priority: 0,
            fields: VersionFields::V3 {
                max_adver_int: MaxAdverInt::from_centiseconds(1).unwrap_or_else(|| unreachable!()),
            },
            addresses: AddressList::V4(vec![Ipv4Addr::new(127, 0, 0, 231)]),
        };
        // The kernel stamps packets on arrival once some socket asked for it, from a deferred
        // work item: until it ran (the first socket of a quiet host), a packet is stamped when
        // read. A first advert, read and left behind, gives it time.
        socket.send(&advert, address.into(), None, false).await.unwrap_or_else(|e| panic!("{e}"));
        let _ = tokio::time::timeout(Duration::from_secs(5), socket.recv()).await;
        std::thread::sleep(Duration::from_millis(20));
        let sent = Instant::now();
        socket.send(&advert, address.into(), None, false).await.unwrap_or_else(|e| panic!("{e}"));
        // Queued (its receive path can wait for a CPU on a loaded machine), then left there.
        let mut poll = libc::pollfd { fd: socket.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: poll on one valid pollfd.
        assert_eq!(unsafe { libc::poll(&raw mut poll, 1, 5000) }, 1, "nothing came back");
        let queued = Instant::now();
        std::thread::sleep(Duration::from_millis(50));
        let received = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let received = socket.recv().await.unwrap_or_else(|e| panic!("{e}"));
                if received.advert.as_ref().is_ok_and(|a| a.vrid == advert.vrid) {
                    break received;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the advert did not come back"));
        let read = Instant::now();
        let arrived = received.arrived.unwrap_or_else(|| panic!("no receive timestamp"));
        assert!(
            arrived <= queued && arrived + Duration::from_millis(50) <= read,
            "dated {:?} before the read",
            read - arrived
        );
        // Timestamps in microseconds on some kernels: allow a little before the send.
        assert!(arrived + Duration::from_millis(1) >= sent, "dated before it was sent");
    }

    #[test]
    fn old_unicast_checksums_are_recognised() {
        let rfc = decode_v4(&unicast_v3(Ipv4Addr::new(10, 77, 0, 2)));
        assert!(rfc.advert.is_ok() && !rfc.old_checksum);
        // The capture's README: summed against 224.0.0.18 the checksum is 0x42bf.
        let old = unicast_v3(VRRP_MCAST_GROUP_V4);
        assert_eq!(old[26..28], [0x42, 0xbf]);
        let decoded = decode_v4(&old);
        assert!(decoded.advert.is_ok() && decoded.old_checksum, "{:?}", decoded.advert);
        // Any other checksum is still wrong.
        let mut broken = old;
        broken[27] ^= 1;
        assert!(matches!(decode_v4(&broken).advert, Err(VrrpPacketError::BadChecksum { .. })));
    }
}
