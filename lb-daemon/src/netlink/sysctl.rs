//! The few sysctls the data plane depends on.
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

/// Turns IPv6 forwarding on (globally: the only switch the kernel's FIB lookup reads).
/// Returns whether it was off.
pub fn enable_ipv6_forwarding() -> io::Result<bool> {
    enable(PathBuf::from("/proc/sys/net/ipv6/conf/all/forwarding"))
}

fn enable(path: PathBuf) -> io::Result<bool> {
    let current = fs::read_to_string(&path)?;
    if current.trim() == "1" {
        return Ok(false);
    }
    fs::write(&path, "1").map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    Ok(true)
}
