//! BFD's sockets (RFC 5881): control packets go to UDP port 3784 of the neighbour from a source
//! port in 49152–65535 with TTL / hop limit 255 (keepalived's `ttl` / `hoplimit`), and are
//! received on port 3784 with the TTL they arrived with, for the GTSM check of §5.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::{AsRawFd as _, RawFd},
};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{Interest, unix::AsyncFd};

/// The single-hop control port.
pub const CONTROL_PORT: u16 = 3784;
/// The source ports RFC 5881 §4 allows.
const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;

/// A received datagram.
#[derive(Debug)]
pub struct Datagram {
    /// Who sent it.
    pub source: IpAddr,
    /// The TTL / hop limit it arrived with (0 if the kernel did not say).
    pub ttl: u8,
    /// Its length in the buffer.
    pub len: usize,
}

/// A non-blocking UDP socket registered with tokio.
#[derive(Debug)]
pub struct BfdSocket {
    fd: AsyncFd<Socket>,
}

fn set_int(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: setsockopt(2) with a pointer to a live c_int and its size.
    let r = unsafe {
        nix::libc::setsockopt(
            fd,
            level,
            name,
            (&raw const value).cast(),
            std::mem::size_of::<i32>() as nix::libc::socklen_t,
        )
    };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

impl BfdSocket {
    fn register(socket: Socket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        // SAFETY: the Socket owns its descriptor and is moved into the AsyncFd, which neither
        // replaces nor closes it while registered.
        let fd = unsafe { AsyncFd::register(socket)? };
        Ok(Self { fd })
    }

    /// The receiving socket of one address family: port 3784 on every address, reporting the
    /// TTL (hop limit) of each datagram.
    pub fn listen(v6: bool) -> io::Result<Self> {
        let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
        let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_address(true)?;
        let fd = socket.as_raw_fd();
        let any: SocketAddr = if v6 {
            socket.set_only_v6(true)?;
            set_int(fd, nix::libc::IPPROTO_IPV6, nix::libc::IPV6_RECVHOPLIMIT, 1)?;
            (Ipv6Addr::UNSPECIFIED, CONTROL_PORT).into()
        } else {
            set_int(fd, nix::libc::IPPROTO_IP, nix::libc::IP_RECVTTL, 1)?;
            (Ipv4Addr::UNSPECIFIED, CONTROL_PORT).into()
        };
        socket.bind(&any.into())?;
        Self::register(socket)
    }

    /// A session's sending socket: from `source` (any address if none) and a port of RFC
    /// 5881's range (tried from `first_port` on), with TTL / hop limit `ttl`.
    pub fn sender(neighbor: IpAddr, source: Option<IpAddr>, ttl: u8, first_port: u16) -> io::Result<Self> {
        let v6 = neighbor.is_ipv6();
        let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
        let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        if v6 {
            socket.set_unicast_hops_v6(u32::from(ttl))?;
        } else {
            socket.set_ttl_v4(u32::from(ttl))?;
        }
        let address =
            source.unwrap_or(if v6 { Ipv6Addr::UNSPECIFIED.into() } else { Ipv4Addr::UNSPECIFIED.into() });
        let span = u32::from(SOURCE_PORTS.end() - SOURCE_PORTS.start()) + 1;
        let start = u32::from(first_port.saturating_sub(*SOURCE_PORTS.start())) % span;
        let mut last = io::Error::from(io::ErrorKind::AddrInUse);
        for i in 0..span {
            let port = *SOURCE_PORTS.start() + ((start + i) % span) as u16;
            match socket.bind(&SocketAddr::new(address, port).into()) {
                Ok(()) => {
                    socket.connect(&SocketAddr::new(neighbor, CONTROL_PORT).into())?;
                    return Self::register(socket);
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Sends on a connected socket. A refused or unreachable neighbour is not an error worth
    /// more than a debug line: BFD is there to notice it.
    pub fn send(&self, bytes: &[u8]) -> io::Result<()> {
        match self.fd.get_ref().send(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Receives the next datagram into `buf`.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<Datagram> {
        self.fd.async_io(Interest::READABLE, |socket| recv(socket.as_raw_fd(), buf)).await
    }
}

fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<Datagram> {
    let mut iov = [io::IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(nix::libc::c_int);
    let msg = recvmsg::<SockaddrStorage>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT)
        .map_err(io::Error::from)?;
    let source = msg
        .address
        .and_then(|a| {
            a.as_sockaddr_in()
                .map(|s| IpAddr::V4(s.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
        })
        .map(|ip| match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        })
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let mut ttl = 0;
    for message in msg.cmsgs().map_err(io::Error::from)? {
        match message {
            ControlMessageOwned::Ipv4Ttl(t) => ttl = u8::try_from(t).unwrap_or(0),
            ControlMessageOwned::Ipv6HopLimit(h) => ttl = u8::try_from(h).unwrap_or(0),
            _ => {}
        }
    }
    Ok(Datagram { source, ttl, len: msg.bytes })
}
