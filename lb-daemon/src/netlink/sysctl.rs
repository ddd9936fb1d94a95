//! The few sysctls the data plane and VRRP depend on.
//!
//! The XDP program resolves next hops with `bpf_fib_lookup`, which answers only where the
//! kernel forwards: IPv4 forwarding on the receiving interface, IPv6 forwarding globally (the
//! kernel checks `net.ipv6.conf.all.forwarding`). A load balancer forwards anyway (IPVS NAT
//! needs `ip_forward` too), so lbd turns it on for the interfaces it serves and says so.

use std::{fs, io, path::PathBuf};

/// Turns IPv4 forwarding on for `interface`. Returns whether it was off.
pub fn enable_ipv4_forwarding(interface: &str) -> io::Result<bool> {
    enable(PathBuf::from(format!("/proc/sys/net/ipv4/conf/{interface}/forwarding")))
}

/// Lets `interface` accept packets whose source is one of this host's addresses.
///
/// A translated NAT/FNAT reply carries the VIP as its source. When the XDP program finds no
/// neighbour entry for the client yet (after a VRRP failover the new master has never talked
/// to it), it passes the translated packet to the kernel to forward and resolve the neighbour;
/// without `accept_local` the kernel drops it as a martian (local source on input).
pub fn enable_accept_local(interface: &str) -> io::Result<bool> {
    enable(PathBuf::from(format!("/proc/sys/net/ipv4/conf/{interface}/accept_local")))
}

/// Turns IPv6 forwarding on (globally: the only switch the kernel's FIB lookup reads).
/// Returns whether it was off.
pub fn enable_ipv6_forwarding() -> io::Result<bool> {
    enable(PathBuf::from("/proc/sys/net/ipv6/conf/all/forwarding"))
}

/// Sets `net.ipv4.conf.INTERFACE.KEY` to `value`. Returns what it was if that differed (so that
/// it can be put back), `None` if it already was `value`.
pub fn set_ipv4_conf(interface: &str, key: &str, value: &str) -> io::Result<Option<String>> {
    set(PathBuf::from(format!("/proc/sys/net/ipv4/conf/{interface}/{key}")), value)
}

/// Sets `net.ipv4.KEY` (e.g. `igmp_link_local_mcast_reports`) to `value`, returning what it was
/// as [`set_ipv4_conf`] does.
pub fn set_ipv4(key: &str, value: &str) -> io::Result<Option<String>> {
    set(PathBuf::from(format!("/proc/sys/net/ipv4/{key}")), value)
}

fn set(path: PathBuf, value: &str) -> io::Result<Option<String>> {
    let with_path = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let current = fs::read_to_string(&path).map_err(with_path)?;
    let current = current.trim();
    if current == value {
        return Ok(None);
    }
    fs::write(&path, value).map_err(with_path)?;
    Ok(Some(current.to_owned()))
}

fn enable(path: PathBuf) -> io::Result<bool> {
    let current = fs::read_to_string(&path)?;
    if current.trim() == "1" {
        return Ok(false);
    }
    fs::write(&path, "1").map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    Ok(true)
}
