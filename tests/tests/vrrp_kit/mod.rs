//! What the VRRP system tests share: routers on a bridge, lbd and keepalived launchers,
//! keepalived.conf snippets, and [`VipWatch`], which follows from inside a namespace (through
//! rtnetlink, every 5 ms) whether it holds a VIP, so that failover times and double holdings are
//! measured rather than guessed.
#![allow(dead_code, reason = "each test file uses part of the kit")]

use std::{
    fs,
    net::IpAddr,
    os::fd::AsFd as _,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use lb_daemon::netlink::Netlink;
use lb_tests::{
    bins,
    lab::{Lab, Netns, wait_until},
    process::Proc,
};

/// A LAN: a switch namespace with a bridge and `n` routers `r1..rn`, each with `eth0` =
/// `10.SUBNET.0.i/24` (and `fd00:SUBNET::i/64`).
pub fn lan(lab: &mut Lab, subnet: u8, n: u8) -> Vec<Netns> {
    let switch = lab.netns("sw");
    (1..=n)
        .map(|i| {
            let router = lab.netns(&format!("r{i}"));
            lab.plug(&switch, "br0", &router, "eth0", &format!("p{i}"));
            router.addr("eth0", &format!("10.{subnet}.0.{i}/24"));
            router
        })
        .collect()
}

/// `10.SUBNET.0.LAST`.
pub fn ip4(subnet: u8, last: u8) -> IpAddr {
    IpAddr::from([10, subnet, 0, last])
}

/// A `vrrp_instance` block.
pub fn instance(name: &str, vrid: u8, priority: u8, advert: &str, vips: &[&str], extra: &str) -> String {
    let vips: String = vips.iter().map(|v| format!("    {v}\n")).collect();
    format!(
        "vrrp_instance {name} {{\n  state BACKUP\n  interface eth0\n  virtual_router_id {vrid}\n  \
         priority {priority}\n  advert_int {advert}\n{extra}  virtual_ipaddress {{\n{vips}  }}\n}}\n"
    )
}

/// A configuration: `global_defs` with `router_id` and `extra`, then `blocks`.
pub fn config(router_id: &str, global_extra: &str, blocks: &[String]) -> String {
    format!("global_defs {{\n  router_id {router_id}\n{global_extra}}}\n{}", blocks.concat())
}

/// Starts lbd in `ns` with `config` (written to the lab's directory as LABEL.conf).
pub fn start_lbd(lab: &mut Lab, ns: &Netns, label: &str, config: &str) -> Proc {
    start_lbd_with(lab, ns, label, config, &[])
}

/// As [`start_lbd`], with more command-line arguments.
pub fn start_lbd_with(lab: &mut Lab, ns: &Netns, label: &str, config: &str, extra: &[&str]) -> Proc {
    let conf = lab.write_file(&format!("{label}.conf"), config);
    let pin = lab.bpffs().join("lbd");
    let mut lbd = bins::spawn_lbd(lab, ns, label, &conf, &pin, extra);
    wait_started(&mut lbd, label);
    lbd
}

/// The pid of the VRRP child of the daemon started as `label` (keepalived's or lbd's `-r` file):
/// its main thread runs VRRP.
pub fn vrrp_pid(lab: &Lab, label: &str) -> i32 {
    let path = lab.dir().join(format!("{label}-vrrp.pid"));
    fs::read_to_string(&path)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid in {}", path.display()))
}

/// Waits for the first "Entering ... STATE" line, panicking with the log if it does not come.
fn wait_started(process: &mut Proc, label: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !process.log().contains("Entering") {
        process.assert_running();
        assert!(Instant::now() < deadline, "{label} did not start VRRP within 15 s; log:\n{}", process.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts a real keepalived (VRRP only) in `ns` with `config`.
pub fn start_keepalived(lab: &Lab, ns: &Netns, label: &str, config: &str) -> Proc {
    let mut keepalived = spawn_keepalived(lab, ns, label, config, &["-P"]);
    wait_started(&mut keepalived, label);
    keepalived
}

/// Spawns a real keepalived in `ns` with `config`, logging to its console in detail, its pid
/// files in the lab's directory, and `flags` (`-P`: VRRP only).
pub fn spawn_keepalived(lab: &Lab, ns: &Netns, label: &str, config: &str, flags: &[&str]) -> Proc {
    spawn_keepalived_env(lab, ns, label, config, &[], flags)
}

/// [`spawn_keepalived`] with more environment variables (`NAME=VALUE`).
pub fn spawn_keepalived_env(
    lab: &Lab,
    ns: &Netns,
    label: &str,
    config: &str,
    env: &[&str],
    flags: &[&str],
) -> Proc {
    let conf = lab.write_file(&format!("{label}.conf"), config);
    let pid = |what: &str| lab.dir().join(format!("{label}-{what}.pid")).display().to_string();
    let (main, vrrp, check, bfd) = (pid("main"), pid("vrrp"), pid("check"), pid("bfd"));
    let mut args = env.to_vec();
    args.extend(["keepalived", "-n", "-l", "-D", "-G"]);
    args.extend_from_slice(flags);
    args.extend([
        "-f",
        conf.to_str().unwrap_or_default(),
        "-p",
        &main,
        "-r",
        &vrrp,
        "-c",
        &check,
        "-b",
        &bfd,
    ]);
    ns.spawn(label, "env", &args)
}

/// Sends SIGTERM and waits for a clean exit.
pub fn terminate(process: &mut Proc, label: &str) {
    process.signal(nix::sys::signal::Signal::SIGTERM);
    let status = process.wait(Duration::from_secs(10));
    assert!(status.success(), "{label} exited with {status:?}; log:\n{}", process.log());
}

/// Follows whether a namespace holds an address, from a thread inside it.
#[derive(Debug)]
pub struct VipWatch {
    label: String,
    timeline: Arc<Mutex<Vec<(Instant, bool)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl VipWatch {
    /// Starts watching `ns` for `vip` (on any interface).
    pub fn start(ns: &Netns, label: &str, vip: IpAddr) -> Self {
        let timeline = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let path = PathBuf::from("/run/netns").join(ns.name());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let (timeline, stop) = (Arc::clone(&timeline), Arc::clone(&stop));
            std::thread::spawn(move || {
                let file = fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|e| panic!("entering {}: {e}", path.display()));
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap_or_else(|e| panic!("runtime: {e}"));
                runtime.block_on(async {
                    let netlink = Netlink::connect().unwrap_or_else(|e| panic!("netlink: {e}"));
                    let mut last = None;
                    let mut ready = Some(ready_tx);
                    while !stop.load(Ordering::Relaxed) {
                        let now = Instant::now();
                        let holds = holds(&netlink, vip).await;
                        if last != Some(holds) {
                            timeline.lock().unwrap_or_else(|e| e.into_inner()).push((now, holds));
                            last = Some(holds);
                        }
                        if let Some(ready) = ready.take() {
                            let _ = ready.send(());
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                });
            })
        };
        let _ = ready_rx.recv_timeout(Duration::from_secs(5));
        VipWatch { label: label.to_owned(), timeline, stop, thread: Some(thread) }
    }

    /// Whether it holds the VIP now.
    pub fn holds(&self) -> bool {
        self.timeline().last().is_some_and(|(_, holds)| *holds)
    }

    /// The changes seen so far: (when, holds).
    pub fn timeline(&self) -> Vec<(Instant, bool)> {
        self.timeline.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until it holds (or not) the VIP and returns when that began.
    pub fn wait_for(&self, holds: bool, timeout: Duration) -> Instant {
        wait_until(
            timeout,
            &format!("{} to {} the VIP", self.label, if holds { "hold" } else { "drop" }),
            || self.holds() == holds,
        );
        self.timeline().last().map_or_else(Instant::now, |(at, _)| *at)
    }

    /// Asserts it does not change for `period`.
    pub fn assert_steady(&self, holds: bool, period: Duration) {
        let before = self.timeline().len();
        std::thread::sleep(period);
        let timeline = self.timeline();
        assert_eq!(self.holds(), holds, "{}: VIP {}", self.label, if holds { "lost" } else { "taken" });
        assert_eq!(timeline.len(), before, "{}: VIP changed hands: {timeline:?}", self.label);
    }
}

impl Drop for VipWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Whether the namespace of `netlink` holds `vip`, on any interface.
pub async fn holds(netlink: &Netlink, vip: IpAddr) -> bool {
    let Ok(links) = netlink.links().await else { return false };
    for link in links {
        if let Ok(addresses) = netlink.addresses(link.index).await
            && addresses.iter().any(|a| a.addr == vip)
        {
            return true;
        }
    }
    false
}

/// The longest time both watches held the VIP at once, up to `until`.
pub fn longest_double_holding(a: &VipWatch, b: &VipWatch, until: Instant) -> Duration {
    let (a, b) = (a.timeline(), b.timeline());
    let mut events: Vec<(Instant, usize, bool)> =
        a.iter().map(|(t, h)| (*t, 0, *h)).chain(b.iter().map(|(t, h)| (*t, 1, *h))).collect();
    events.sort_by_key(|(t, _, _)| *t);
    let mut held = [false, false];
    let mut since: Option<Instant> = None;
    let mut longest = Duration::ZERO;
    for (at, who, holds) in events {
        held[who] = holds;
        match (held[0] && held[1], since) {
            (true, None) => since = Some(at),
            (false, Some(start)) => {
                longest = longest.max(at.saturating_duration_since(start));
                since = None;
            }
            _ => {}
        }
    }
    if let Some(start) = since {
        longest = longest.max(until.saturating_duration_since(start));
    }
    longest
}

/// Milliseconds, for messages.
pub fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// The advert interval of the lbd-only tests (VRRPv3): short enough for fast tests, long enough
/// that a loaded 2-core machine does not cause spurious failovers.
pub const ADVERT_TEXT: &str = "0.2";
/// [`ADVERT_TEXT`] as a duration.
pub const ADVERT: Duration = Duration::from_millis(200);
/// What a busy machine adds to a timer (scheduling, netlink, the watch's 5 ms poll).
pub const SLACK: Duration = Duration::from_millis(300);

/// Skew_Time of `priority` at [`ADVERT`] (RFC 5798 §6.1).
pub fn skew(priority: u32) -> Duration {
    ADVERT * (256 - priority) / 256
}

/// Master_Down_Interval of `priority` at [`ADVERT`] (RFC 5798 §6.1).
pub fn master_down(priority: u32) -> Duration {
    ADVERT * 3 + skew(priority)
}
