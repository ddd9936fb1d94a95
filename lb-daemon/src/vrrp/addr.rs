//! What a MASTER holds: its VIPs (`virtual_ipaddress`, `virtual_ipaddress_excluded`), its
//! `virtual_routes`, and the gratuitous ARPs / unsolicited NAs that announce the VIPs.
//!
//! Beyond keepalived (acassen/keepalived#2361): VIPs are installed on a kernel lease
//! ([`lease`]: Master_Down_Interval rounded up to whole seconds, at least [`MIN_LEASE`]) that the
//! master renews with its adverts ([`renewal_due`]). If the daemon is killed with SIGKILL the
//! kernel removes the VIPs by itself about when the backup takes over, instead of leaving them on
//! a dead master; an orderly stop removes them at once, and `-V` makes them permanent.
//!
//! Renewals go through a [`Renewer`] thread, never in the advert path: an address change takes
//! the kernel's RTNL lock inside the netlink `sendmsg` itself, which any other process (a
//! namespace being torn down, a busy `ip` command) may hold for tens of milliseconds while it
//! waits for a CPU, and a master that waited for it would miss its adverts (a priority
//! inversion: the VRRP thread is real-time, the lock holder is not). The thread is an ordinary
//! one with a netlink connection of its own, so only it waits.

use std::{collections::HashMap, time::Duration};

use tracing::{info, warn};

use super::{
    config::Vip,
    garp::{FrameSocket, gratuitous_arp, unsolicited_na},
};
use crate::netlink::{Netlink, addr::Lifetime, route::Route};

/// The shortest VIP lease: the kernel counts lifetimes in whole seconds, and a lease must
/// outlive at least a few renewals.
pub const MIN_LEASE: Duration = Duration::from_secs(2);

/// The lease of a master's VIPs: Master_Down_Interval rounded up, at least [`MIN_LEASE`].
pub fn lease(master_down_interval: Duration) -> Duration {
    let seconds = master_down_interval.as_secs() + u64::from(master_down_interval.subsec_nanos() > 0);
    Duration::from_secs(seconds).max(MIN_LEASE)
}

/// Whether a lease renewed at `age` ago needs renewing: after a quarter of it, so that three
/// renewals can be missed (a stalled or overloaded daemon) before the VIPs go.
pub fn renewal_due(lease: Duration, age: Duration) -> bool {
    age >= lease / 4
}

/// Renews VIP leases in a task of its own, in the order asked. [`Renewer::flush`] waits until
/// what was asked is done: before VIPs are removed or made permanent, so that a late renewal
/// cannot put back or shorten what was changed after it.
#[derive(Debug)]
pub struct Renewer {
    requests: tokio::sync::mpsc::UnboundedSender<RenewRequest>,
}

#[derive(Debug)]
enum RenewRequest {
    Renew { name: std::sync::Arc<str>, vips: std::sync::Arc<[Vip]>, lease: Duration },
    Flush(tokio::sync::oneshot::Sender<()>),
}

impl Renewer {
    /// Starts the renewal thread (with a runtime and a netlink connection of its own); if that
    /// fails, a task on the current runtime using `netlink`.
    pub fn spawn(netlink: Netlink) -> Self {
        let (requests, queue) = tokio::sync::mpsc::unbounded_channel();
        let (started, outcome) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new().name("vip-leases".into()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = started.send(Err((queue, e.to_string())));
                    return;
                }
            };
            runtime.block_on(async move {
                match Netlink::connect() {
                    Ok(own) => {
                        let _ = started.send(Ok(()));
                        serve(own, queue).await;
                    }
                    Err(e) => {
                        let _ = started.send(Err((queue, chain(&e))));
                    }
                }
            });
        });
        let (requests, queue, why) = match thread.map(|_| outcome.recv()) {
            Ok(Ok(Ok(()))) => return Renewer { requests },
            Ok(Ok(Err((queue, why)))) => (requests, queue, why),
            // The thread is gone, and the queue with it.
            Ok(Err(e)) => new_queue(e.to_string()),
            Err(e) => new_queue(e.to_string()),
        };
        warn!("VIP lease renewals run in the VRRP task ({why})");
        tokio::spawn(serve(netlink, queue));
        Renewer { requests }
    }

    /// Asks for `vips` to be put on a fresh `lease`; returns at once.
    pub fn renew(&self, name: &std::sync::Arc<str>, vips: &std::sync::Arc<[Vip]>, lease: Duration) {
        let request = RenewRequest::Renew { name: name.clone(), vips: vips.clone(), lease };
        if self.requests.send(request).is_err() {
            warn!("({name}) the VIP lease renewal task has ended; lease not renewed");
        }
    }

    /// Waits until every renewal asked before is done.
    pub async fn flush(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.requests.send(RenewRequest::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

type RenewQueue = tokio::sync::mpsc::UnboundedReceiver<RenewRequest>;

fn new_queue(why: String) -> (tokio::sync::mpsc::UnboundedSender<RenewRequest>, RenewQueue, String) {
    let (requests, queue) = tokio::sync::mpsc::unbounded_channel();
    (requests, queue, why)
}

async fn serve(netlink: Netlink, mut queue: tokio::sync::mpsc::UnboundedReceiver<RenewRequest>) {
    while let Some(request) = queue.recv().await {
        match request {
            RenewRequest::Renew { name, vips, lease } => {
                add(&netlink, &name, &vips, Lifetime::Lease(lease)).await;
            }
            RenewRequest::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// Installs `vips` with `lifetime` (or renews them: the kernel replaces the lifetime in place).
/// Failures are logged; the others are still installed.
pub async fn add(netlink: &Netlink, name: &str, vips: &[Vip], lifetime: Lifetime) {
    for vip in vips {
        if let Err(e) = netlink.add_address(&vip.address, lifetime).await {
            warn!("({name}) cannot set VIP {}: {}", vip.address, chain(&e));
        }
    }
}

/// Removes `vips` (absent ones are fine).
pub async fn remove(netlink: &Netlink, name: &str, vips: &[Vip]) {
    for vip in vips {
        if let Err(e) = netlink.delete_address(&vip.address).await {
            warn!("({name}) cannot remove VIP {}: {}", vip.address, chain(&e));
        }
    }
}

/// Installs `routes`.
pub async fn add_routes(netlink: &Netlink, name: &str, routes: &[Route]) {
    for route in routes {
        if let Err(e) = netlink.add_route(route).await {
            warn!("({name}) cannot add {route}: {}", chain(&e));
        }
    }
}

/// Removes `routes` (absent ones are fine).
pub async fn remove_routes(netlink: &Netlink, name: &str, routes: &[Route]) {
    for route in routes {
        if let Err(e) = netlink.delete_route(route).await {
            warn!("({name}) cannot remove {route}: {}", chain(&e));
        }
    }
}

/// Sends gratuitous ARPs (IPv4) and unsolicited NAs (IPv6), one AF_PACKET socket per interface.
#[derive(Debug, Default)]
pub struct Gratuitous {
    sockets: HashMap<u32, FrameSocket>,
}

impl Gratuitous {
    /// Sends `repeat` frames per VIP, `interval` apart (keepalived's `vrrp_garp_interval`; 0
    /// sends each burst back to back).
    pub async fn send(&mut self, name: &str, vips: &[Vip], repeat: u32, interval: Duration) {
        for vip in vips {
            let ifindex = vip.address.ifindex;
            let socket = match self.sockets.entry(ifindex) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => match FrameSocket::open(ifindex) {
                    Ok(socket) => e.insert(socket),
                    Err(err) => {
                        warn!("({name}) cannot open a frame socket on ifindex {ifindex}: {err}");
                        continue;
                    }
                },
            };
            let frame: Vec<u8> = match vip.address.addr {
                std::net::IpAddr::V4(a) => gratuitous_arp(vip.mac, a).to_vec(),
                std::net::IpAddr::V6(a) => unsolicited_na(vip.mac, a).to_vec(),
            };
            info!(
                "({name}) Sending/queueing gratuitous {} on {} for {}",
                if vip.address.addr.is_ipv4() { "ARPs" } else { "NAs" },
                vip.interface,
                vip.address.addr
            );
            for n in 0..repeat {
                if n > 0 && !interval.is_zero() {
                    tokio::time::sleep(interval).await;
                }
                if let Err(e) = socket.send(&frame) {
                    warn!("({name}) gratuitous frame for {} not sent: {e}", vip.address.addr);
                    break;
                }
            }
        }
    }
}

/// `error: cause: cause`.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_round_up_with_a_floor() {
        assert_eq!(lease(Duration::from_millis(361)), MIN_LEASE);
        assert_eq!(lease(Duration::from_millis(3_609)), Duration::from_secs(4));
        assert_eq!(lease(Duration::from_secs(3)), Duration::from_secs(3));
        assert!(renewal_due(Duration::from_secs(2), Duration::from_millis(500)));
        assert!(!renewal_due(Duration::from_secs(4), Duration::from_millis(500)));
    }
}
