//! VRRP's `use_ipvlan` and `vrf`, in a VM whose kernel has ipvlan and VRF (this machine's has
//! neither; see `lb_tests::vm`): two lbd routers and a client on a bridge.
//!
//! - `use_ipvlan`: each router makes an ipvlan (mode l2, `private`) on eth0 with an address of
//!   its own; the adverts leave from it, the MASTER's VIP goes on it, the client pings the VIP,
//!   and a SIGTERM moves the VIP to the other router's ipvlan; the ipvlans go with lbd.
//! - `vrf`: eth0 of both routers is enslaved to the VRF `blue`. One instance has no interface
//!   and `vrf blue` (unicast, its sockets bound to the VRF device), the other `interface eth0`
//!   with `use_ipvlan` (the ipvlan is enslaved to `blue` as its parent is). Both elect the same
//!   MASTER, their VIPs land in the VRF's table (not the main one), answer the client, and move
//!   on a SIGTERM.
//!
//! ```text
//!  r1 10.S.0.1 ──┐
//!  r2 10.S.0.2 ──┼── [br0]
//!  r3 10.S.0.3 ──┘   (client)
//! ```
//!
//! The test runs itself in the VM (`LBD_IN_VM=1`), booted once for both parts; on the host it
//! only boots the VM and reports (and fails if the VM cannot boot or the part in it fails).
#![expect(clippy::unwrap_used, reason = "tests: a failed step is a failed test")]

mod vrrp_kit;

use std::time::Duration;

use std::net::IpAddr;

use lb_daemon::netlink::Netlink;
use lb_tests::{
    bins,
    lab::{Lab, Netns, wait_until},
    process::Proc,
};
use vrrp_kit::{config, instance, ip4, lan};

/// Emulated (TCG) guests are slow (each command started takes a second or more): generous
/// bounds, each a wait, never a measurement.
const SLOW: Duration = Duration::from_secs(120);

const NAME: &str = "use_ipvlan_and_vrf_in_a_vm";

#[test]
fn use_ipvlan_and_vrf_in_a_vm() {
    if std::env::var_os("LBD_IN_VM").is_some() {
        // Both parts run (one boot), each cleaning up after itself if it fails.
        let failed: Vec<&str> = [("use_ipvlan", ipvlan as fn()), ("vrf", vrf)]
            .into_iter()
            .filter_map(|(name, part)| {
                println!("== {name}");
                std::panic::catch_unwind(part).is_err().then_some(name)
            })
            .collect();
        assert!(failed.is_empty(), "failed in the VM: {failed:?}");
        return;
    }
    lb_tests::vm::run_test_in_vm(NAME, Duration::from_secs(900));
}

/// `ip -d link show NAME` in `ns`.
fn link(ns: &Netns, name: &str) -> String {
    ns.ip(&["-d", "link", "show", name])
}

/// The VRRP adverts `ns` sees on eth0 within a few seconds (tcpdump's lines).
fn adverts(ns: &Netns, count: &str) -> String {
    let out = ns.exec("timeout", &["10", "tcpdump", "-c", count, "-nn", "-i", "eth0", "ip proto 112"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ping(client: &Netns, address: &str) -> bool {
    client.exec("ping", &["-c", "1", "-W", "2", address]).status.success()
}

/// Waits until `vip`, which `router` holds, answers `client`'s pings; if it does not, shows
/// what the client and the router have and see before failing.
fn wait_answers(client: &Netns, router: &Netns, vip: &str, lbd: &Proc) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if ping(client, vip) {
            return;
        }
    }
    let capture =
        router.spawn("tcpdump", "timeout", &["8", "tcpdump", "-nn", "-e", "-i", "any", "arp or icmp"]);
    std::thread::sleep(Duration::from_secs(2));
    let answered = ping(client, vip);
    std::thread::sleep(Duration::from_secs(7));
    panic!(
        "{vip} does not answer (then: {answered}); client's neighbours:\n{}\nrouter's addresses:\n{}\n\
         router's routes:\n{}\nrouter's capture:\n{}\nlbd:\n{}",
        client.ip(&["neigh"]),
        router.ip(&["addr"]),
        router.ip(&["route", "show", "table", "all"]),
        capture.log(),
        lbd.log()
    );
}

/// Starts lbd in `ns` and waits for its first state (the kit's 15 s are too short in the VM).
fn start_lbd(lab: &mut Lab, ns: &Netns, label: &str, config: &str) -> Proc {
    let conf = lab.write_file(&format!("{label}.conf"), config);
    let pin = lab.bpffs().join("lbd");
    let mut lbd = bins::spawn_lbd(lab, ns, label, &conf, &pin, &[]);
    wait_until(SLOW, &format!("{label} to start VRRP"), || {
        lbd.assert_running();
        lbd.log().contains("Entering")
    });
    lbd
}

/// SIGTERM, and a clean exit.
fn stop(lbd: &mut Proc, label: &str) {
    lbd.signal(nix::sys::signal::Signal::SIGTERM);
    let status = lbd.wait(SLOW);
    assert!(status.success(), "{label} exited with {status:?}; log:\n{}", lbd.log());
}

/// Whether `ns` holds `vip` (through rtnetlink from inside it: no command to start).
fn holds(ns: &Netns, vip: IpAddr) -> bool {
    ns.enter(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async { vrrp_kit::holds(&Netlink::connect().unwrap(), vip).await })
    })
}

/// Waits until `ns` holds `vip` (or not).
fn wait_holds(ns: &Netns, label: &str, vip: IpAddr, wanted: bool) {
    let what = format!("{label} to {} {vip}", if wanted { "hold" } else { "drop" });
    wait_until(SLOW, &what, || holds(ns, vip) == wanted);
}

fn ipvlan() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 61, 3);
    // The routers' addresses in the VIP's subnet are on their ipvlans only: an ipvlan shares its
    // parent's MAC and takes the frames of its addresses, ARP replies included, so a parent with
    // an address in the same subnet would send the VIP's replies and never learn the client's
    // MAC (keepalived's ipvlan is the same).
    for router in &r[..2] {
        router.ip(&["addr", "flush", "dev", "eth0"]);
    }
    let vip = ip4(61, 100);
    let conf = |id: &str, priority: u8, own: &str| {
        config(
            id,
            "",
            &[instance(
                "VI_1",
                61,
                priority,
                "1",
                &["10.61.0.100/24"],
                &format!("  version 3\n  use_ipvlan ipv61 {own}/24 private\n"),
            )],
        )
    };
    // Without an address on the ipvlan (nor on eth0) the instance has no advert source, which
    // lbd finds out once the ipvlan is made: it removes it again and stops.
    let no_source = lab.write_file("nosource.conf", &conf("r1", 150, "").replace(" /24", ""));
    let pin = lab.bpffs().join("lbd");
    let mut failed = bins::spawn_lbd(&lab, &r[0], "nosource", &no_source, &pin, &[]);
    let status = failed.wait(SLOW);
    let log = failed.log();
    assert!(!status.success() && log.contains("(ipvlan) ipv61 created on eth0"), "{status:?}:\n{log}");
    assert!(log.contains("no IPv4 address on eth0"), "{log}");
    assert!(r[0].try_ip(&["link", "show", "ipv61"]).is_err(), "the ipvlan outlived a failed start:\n{log}");

    let mut a = start_lbd(&mut lab, &r[0], "lbd1", &conf("r1", 150, "10.61.0.11"));
    let mut b = start_lbd(&mut lab, &r[1], "lbd2", &conf("r2", 100, "10.61.0.12"));
    wait_holds(&r[0], "r1", vip, true);
    // Longer than Master_Down_Interval: r2 hears r1's adverts, and stays BACKUP.
    std::thread::sleep(Duration::from_secs(5));
    assert!(!b.log().contains("Entering MASTER STATE") && !holds(&r[1], vip), "r2 took over:\n{}", b.log());

    // Each router has an ipvlan in l2 mode, private, with its parent's MAC and its own address;
    // the MASTER's VIP is on it.
    for (router, own) in r[..2].iter().zip(["10.61.0.11/24", "10.61.0.12/24"]) {
        let ipvlan = link(router, "ipv61");
        assert!(
            ipvlan.contains("ipvlan") && ipvlan.contains("mode l2") && ipvlan.contains("private"),
            "{ipvlan}"
        );
        let mac = router.mac("eth0").iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        assert!(ipvlan.contains(&format!("link/ether {mac}")), "not the parent's MAC {mac}: {ipvlan}");
        let addresses = router.ip(&["-4", "addr", "show", "dev", "ipv61"]);
        assert!(addresses.contains(own), "{addresses}");
    }
    let on_ipvlan = r[0].ip(&["-4", "addr", "show", "dev", "ipv61"]);
    assert!(on_ipvlan.contains("10.61.0.100/24"), "the VIP is not on r1's ipvlan: {on_ipvlan}");
    assert!(!r[0].ip(&["-4", "addr", "show", "dev", "eth0"]).contains("10.61.0.100"));
    // The adverts leave from the ipvlan's address (keepalived's source with use_ipvlan ADDRESS).
    let seen = adverts(&r[2], "2");
    assert!(seen.contains("10.61.0.11 > 224.0.0.18"), "adverts: {seen}");
    // The client reaches the VIP, at r1's MAC (the ipvlan's).
    assert!(ping(&r[2], "10.61.0.100"), "the VIP does not answer on r1");
    let neighbour = r[2].ip(&["neigh", "show", "10.61.0.100"]);
    let mac = r[0].mac("eth0").iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    assert!(neighbour.contains(&mac), "{neighbour}");

    // A reload that adds an instance with an ipvlan keeps the unchanged MASTER's (the same
    // interface, its VIP still on it); the next one, deleting that instance, removes its ipvlan.
    let kept = link(&r[0], "ipv61");
    let other = instance(
        "VI_2",
        64,
        150,
        "1",
        &["10.61.0.164/24"],
        "  version 3\n  use_ipvlan ipv64 10.61.0.21/24\n",
    );
    let reload = |configs: &[String], times: usize| {
        lab.write_file("lbd1.conf", &config("r1", "", configs));
        a.signal(nix::sys::signal::Signal::SIGHUP);
        wait_until(SLOW, "the reload", || {
            a.log().matches("(VI_1) kept in MASTER STATE across the reload").count() == times
        });
    };
    let only_vi_1 = conf("r1", 150, "10.61.0.11");
    let vi_1 = only_vi_1[only_vi_1.find("vrrp_instance").unwrap()..].to_owned();
    reload(&[vi_1.clone(), other], 1);
    wait_until(SLOW, "ipv64", || r[0].try_ip(&["link", "show", "ipv64"]).is_ok());
    reload(&[vi_1], 2);
    wait_until(SLOW, "ipv64 to go", || r[0].try_ip(&["link", "show", "ipv64"]).is_err());
    assert_eq!(link(&r[0], "ipv61").lines().next(), kept.lines().next(), "the ipvlan was made anew");
    assert!(holds(&r[0], vip) && !holds(&r[1], vip), "{}", a.log());

    // SIGTERM: the VIP moves to r2's ipvlan, and r1's ipvlan goes with lbd.
    stop(&mut a, "lbd1");
    wait_holds(&r[1], "r2", vip, true);
    assert!(r[0].try_ip(&["link", "show", "ipv61"]).is_err(), "the ipvlan outlived lbd");
    assert!(r[1].ip(&["-4", "addr", "show", "dev", "ipv61"]).contains("10.61.0.100/24"));
    wait_answers(&r[2], &r[1], "10.61.0.100", &b);
    stop(&mut b, "lbd2");
    assert!(r[1].try_ip(&["link", "show", "ipv61"]).is_err(), "the ipvlan outlived lbd");
    assert!(r[0].ip(&["link", "show", "eth0"]).contains("UP"), "the parent went down");
}

fn vrf() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 62, 3);
    for router in &r[..2] {
        router.ip(&["link", "add", "blue", "type", "vrf", "table", "10"]);
        router.ip(&["link", "set", "blue", "up"]);
        router.ip(&["link", "set", "eth0", "master", "blue"]);
    }
    let (unicast_vip, ipvlan_vip) = (ip4(62, 100), ip4(62, 200));
    let conf = |id: &str, priority: u8, me: u8, peer: u8| {
        let unicast = format!(
            "vrrp_instance VI_U {{\n  state BACKUP\n  vrf blue\n  virtual_router_id 62\n  priority {priority}\n  \
             advert_int 1\n  version 3\n  unicast_src_ip 10.62.0.{me}\n  unicast_peer {{\n    10.62.0.{peer}\n  }}\n  \
             virtual_ipaddress {{\n    10.62.0.100/24 dev eth0\n  }}\n}}\n"
        );
        let ipvlan =
            instance("VI_I", 63, priority, "1", &["10.62.0.200/24"], "  version 3\n  use_ipvlan ipv63\n");
        config(id, "", &[unicast, ipvlan])
    };
    let mut a = start_lbd(&mut lab, &r[0], "lbd1", &conf("r1", 150, 1, 2));
    let mut b = start_lbd(&mut lab, &r[1], "lbd2", &conf("r2", 100, 2, 1));
    wait_holds(&r[0], "r1", unicast_vip, true);
    wait_holds(&r[0], "r1", ipvlan_vip, true);
    // The unicast adverts go through the VRF, r1 to r2: longer than Master_Down_Interval, r2
    // stays BACKUP.
    std::thread::sleep(Duration::from_secs(5));
    assert!(!b.log().contains("Entering MASTER STATE"), "r2 took over:\n{}", b.log());
    assert!(!holds(&r[1], unicast_vip) && !holds(&r[1], ipvlan_vip), "both routers hold a VIP");

    // The ipvlan is in its parent's VRF; the VIPs are in the VRF's table, not the main one.
    for router in &r[..2] {
        let ipvlan = link(router, "ipv63");
        assert!(ipvlan.contains("master blue"), "the ipvlan is not in the VRF: {ipvlan}");
    }
    let table = r[0].ip(&["route", "show", "vrf", "blue"]);
    let local = r[0].ip(&["route", "show", "table", "10", "type", "local"]);
    assert!(local.contains("10.62.0.100") && local.contains("10.62.0.200"), "VRF table 10: {table}\n{local}");
    let main = r[0].ip(&["route", "show", "table", "main"]);
    assert!(!main.contains("10.62.0.100") && !main.contains("10.62.0.200"), "main table: {main}");
    let local_main = r[0].ip(&["route", "show", "table", "local"]);
    assert!(
        !local_main.contains("10.62.0.100"),
        "the VIP is in the main namespace's local table: {local_main}"
    );
    for vip in ["10.62.0.100", "10.62.0.200"] {
        assert!(ping(&r[2], vip), "{vip} does not answer on r1");
    }

    // SIGTERM: both VIPs move to r2, in its VRF.
    stop(&mut a, "lbd1");
    wait_holds(&r[1], "r2", unicast_vip, true);
    wait_holds(&r[1], "r2", ipvlan_vip, true);
    let local = r[1].ip(&["route", "show", "table", "10", "type", "local"]);
    assert!(local.contains("10.62.0.100") && local.contains("10.62.0.200"), "r2's VRF table 10: {local}");
    assert!(r[0].try_ip(&["link", "show", "ipv63"]).is_err(), "the ipvlan outlived lbd");
    for vip in ["10.62.0.100", "10.62.0.200"] {
        wait_answers(&r[2], &r[1], vip, &b);
    }
    stop(&mut b, "lbd2");
}
