//! What a MASTER holds: its VIPs (`virtual_ipaddress`, `virtual_ipaddress_excluded`), its
//! `virtual_routes` and `virtual_rules`, and the gratuitous ARPs / unsolicited NAs that announce the VIPs.
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
use crate::netlink::{Netlink, addr::Lifetime, route::Route, rule::Rule};

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
    /// Its connection's receive buffer is `rcvbuf` if given (`vrrp_netlink_cmd_rcv_bufs`).
    pub fn spawn(netlink: Netlink, rcvbuf: Option<crate::netlink::RcvBuf>) -> Self {
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
                match Netlink::connect_with(rcvbuf) {
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

/// Installs policy `rules` (ones already there are fine).
pub async fn add_rules(netlink: &Netlink, name: &str, rules: &[Rule]) {
    for rule in rules {
        if let Err(e) = netlink.add_rule(rule).await {
            warn!("({name}) cannot add {rule}: {}", chain(&e));
        }
    }
}

/// Removes policy `rules` (absent ones are fine).
pub async fn remove_rules(netlink: &Netlink, name: &str, rules: &[Rule]) {
    for rule in rules {
        if let Err(e) = netlink.delete_rule(rule).await {
            warn!("({name}) cannot remove {rule}: {}", chain(&e));
        }
    }
}

/// Sends gratuitous ARPs (IPv4) and unsolicited NAs (IPv6), one AF_PACKET socket per interface,
/// from a task of its own: the frames of an interface (or of a `garp_group`'s interfaces) are
/// paced by [`GarpPacing`] as keepalived paces them, without the engine waiting.
#[derive(Debug)]
pub struct Gratuitous {
    bursts: tokio::sync::mpsc::UnboundedSender<Burst>,
}

#[derive(Debug)]
struct Burst {
    name: String,
    vips: Vec<Vip>,
    repeat: u32,
}

impl Gratuitous {
    /// Starts the sending task (on the current runtime).
    pub fn spawn(pacing: GarpPacing) -> Self {
        let (bursts, queue) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(send_bursts(pacing, queue));
        Gratuitous { bursts }
    }

    /// Queues `repeat` rounds of one frame per VIP (keepalived's order: every VIP, then again);
    /// returns at once.
    pub fn send(&self, name: &str, vips: &[Vip], repeat: u32) {
        if repeat == 0 || vips.is_empty() {
            return;
        }
        let burst = Burst { name: name.to_owned(), vips: vips.to_vec(), repeat };
        if self.bursts.send(burst).is_err() {
            warn!("({name}) the gratuitous ARP task has ended; nothing sent");
        }
    }
}

/// Sends the queued bursts, each frame when its interface's (or group's) pacing allows: frames
/// of other interfaces do not wait for a paced one.
async fn send_bursts(pacing: GarpPacing, mut queue: tokio::sync::mpsc::UnboundedReceiver<Burst>) {
    use tokio::time::Instant;
    let mut sockets: HashMap<u32, FrameSocket> = HashMap::new();
    // When each pacing key may send again.
    let mut free: HashMap<(usize, u32, bool), Instant> = HashMap::new();
    // When each pacing key last sent.
    let mut sent: HashMap<(usize, u32, bool), Instant> = HashMap::new();
    // Frames by the time they are due (and the order they were queued in).
    let mut pending: std::collections::BTreeMap<(Instant, u64), (std::sync::Arc<str>, Vip)> =
        std::collections::BTreeMap::new();
    let mut queued = 0u64;
    loop {
        let next = pending.keys().next().map(|&(at, _)| at);
        tokio::select! {
            burst = queue.recv() => {
                let Some(Burst { name, vips, repeat }) = burst else { break };
                let name: std::sync::Arc<str> = name.into();
                let now = Instant::now();
                for round in 0..repeat {
                    for vip in &vips {
                        let ipv6 = vip.address.addr.is_ipv6();
                        if round == 0 {
                            info!(
                                "({name}) Sending/queueing gratuitous {} on {} for {}",
                                if ipv6 { "NAs" } else { "ARPs" },
                                vip.interface,
                                vip.address.addr
                            );
                        }
                        let (key, pause) = pacing.pace(vip.address.ifindex, ipv6);
                        let at = free.get(&key).map_or(now, |&free| free.max(now));
                        free.insert(key, at + pause);
                        pending.insert((at, queued), (name.clone(), vip.clone()));
                        queued += 1;
                    }
                }
            }
            () = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                let now = Instant::now();
                while let Some(entry) = pending.first_entry() {
                    if entry.key().0 > now {
                        break;
                    }
                    let (_, order) = *entry.key();
                    let (name, vip) = entry.remove();
                    // The pause counts from when the last frame really left (a late wake-up
                    // must not bring the next one closer).
                    let (key, pause) = pacing.pace(vip.address.ifindex, vip.address.addr.is_ipv6());
                    if let Some(&last) = sent.get(&key)
                        && last + pause > now
                    {
                        pending.insert((last + pause, order), (name, vip));
                        continue;
                    }
                    send_frame(&mut sockets, &name, &vip);
                    sent.insert(key, Instant::now());
                }
            }
        }
    }
}

/// Sends the gratuitous ARP / NA for `vip` (opening its interface's socket the first time).
fn send_frame(sockets: &mut HashMap<u32, FrameSocket>, name: &str, vip: &Vip) {
    let ifindex = vip.address.ifindex;
    let socket = match sockets.entry(ifindex) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(e) => match FrameSocket::open(ifindex) {
            Ok(socket) => e.insert(socket),
            Err(err) => {
                warn!("({name}) cannot open a frame socket on ifindex {ifindex}: {err}");
                return;
            }
        },
    };
    let frame: Vec<u8> = match vip.address.addr {
        std::net::IpAddr::V4(a) => gratuitous_arp(vip.mac, a).to_vec(),
        std::net::IpAddr::V6(a) => unsolicited_na(vip.mac, a).to_vec(),
    };
    if let Err(e) = socket.send(&frame) {
        warn!("({name}) gratuitous frame for {} not sent: {e}", vip.address.addr);
    }
}

/// The pause between two gratuitous ARPs (`vrrp_garp_interval`) or NAs (`vrrp_gna_interval`)
/// on one interface, or on all the interfaces of a `garp_group` together (its `garp_interval`,
/// `gna_interval`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GarpPacing {
    /// `vrrp_garp_interval`.
    pub garp_interval: Duration,
    /// `vrrp_gna_interval`.
    pub gna_interval: Duration,
    /// ifindex → (its `garp_group`'s number, the group's ARP and NA pauses).
    pub groups: HashMap<u32, (usize, Duration, Duration)>,
}

impl GarpPacing {
    /// The key frames on `ifindex` are paced under (shared by a group's interfaces) and their
    /// pause.
    fn pace(&self, ifindex: u32, ipv6: bool) -> ((usize, u32, bool), Duration) {
        match self.groups.get(&ifindex) {
            Some(&(group, garp, gna)) => ((group + 1, 0, ipv6), if ipv6 { gna } else { garp }),
            None => ((0, ifindex, ipv6), if ipv6 { self.gna_interval } else { self.garp_interval }),
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

    #[test]
    fn garp_groups_pace_their_interfaces_together_and_others_alone() {
        let (second, tenth) = (Duration::from_secs(1), Duration::from_millis(100));
        let pacing = GarpPacing {
            garp_interval: tenth,
            gna_interval: Duration::ZERO,
            groups: HashMap::from([(2, (0, second, tenth)), (3, (0, second, tenth))]),
        };
        assert_eq!(pacing.pace(2, false), pacing.pace(3, false));
        assert_eq!(pacing.pace(2, false).1, second);
        assert_eq!(pacing.pace(3, true).1, tenth);
        assert_ne!(pacing.pace(2, false).0, pacing.pace(2, true).0);
        assert_eq!(pacing.pace(7, false), ((0, 7, false), tenth));
        assert_eq!(pacing.pace(7, true), ((0, 7, true), Duration::ZERO));
        assert_ne!(pacing.pace(7, false).0, pacing.pace(8, false).0);
    }
}
