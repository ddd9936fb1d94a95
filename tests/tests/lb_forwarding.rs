//! lbd forwarding real TCP connections (curl to a web server) through its VIPs, in each method:
//! NAT, DR, TUN and FNAT, spread round robin over three real servers; the real servers' next hops
//! kept resolved by lbd, so that a first connection is not lost.
//!
//! ```text
//!  client 10.30.0.2 ── [front] ── 10.30.0.1 lb 10.31.0.1 (+ FNAT 10.31.0.200) ── [back] ── r1 .11  r2 .12  r3 .13
//!  VIPs 10.40.0.100 (NAT), .101 (DR), .102 (TUN), .103 (FNAT); the client routes 10.40.0.0/24 via the lb.
//! ```

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use lb_tests::{
    bins,
    lab::{Lab, LbHosts, Netns, wait_until},
    packet::{self, Capture},
    xdp::dr_tun_real,
};
use nix::sys::signal::Signal;

const CONFIG: &str = "\
global_defs {
    router_id lbt-forwarding
}
local_address_group LADDR {
    10.31.0.200
}
virtual_server 10.40.0.100 80 {
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 10.31.0.11 8080 {
    }
    real_server 10.31.0.12 8080 {
    }
    real_server 10.31.0.13 8080 {
    }
}
virtual_server 10.40.0.101 80 {
    lb_algo rr
    lb_kind DR
    protocol TCP
    real_server 10.31.0.11 80 {
    }
    real_server 10.31.0.12 80 {
    }
    real_server 10.31.0.13 80 {
    }
}
virtual_server 10.40.0.102 80 {
    lb_algo rr
    lb_kind TUN
    protocol TCP
    real_server 10.31.0.11 80 {
    }
    real_server 10.31.0.12 80 {
    }
    real_server 10.31.0.13 80 {
    }
}
virtual_server 10.40.0.103 80 {
    lb_algo rr
    lb_kind FNAT
    laddr_group_name LADDR
    protocol TCP
    real_server 10.31.0.11 8080 {
    }
    real_server 10.31.0.12 8080 {
    }
    real_server 10.31.0.13 8080 {
    }
}
";

fn curl(ns: &Netns, url: &str) -> String {
    let out = ns.exec("curl", &["-sS", "--max-time", "5", url]);
    assert!(out.status.success(), "curl {url}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The hosts of the tests: the lab (kept alive), client, LB and the real servers (namespace,
/// web server), DR/TUN decap programs.
struct Hosts {
    switch: Netns,
    client: Netns,
    lb: Netns,
    reals: Vec<(Netns, lb_tests::process::Proc)>,
    _decaps: Vec<aya::Ebpf>,
    lab: Lab,
}

fn hosts() -> Hosts {
    let mut lab = Lab::new();
    let LbHosts { switch, client, lb, reals: hosts } = lab.lb_hosts(3).with_addresses();
    lb.addr("eth1", "10.31.0.200/24");

    let mut reals = Vec::new();
    let mut decaps = Vec::new();
    for (i, ns) in (1..).zip(hosts) {
        let name = format!("r{i}");
        // DR and TUN: the VIPs on lo.
        decaps.push(dr_tun_real(&ns, &["10.40.0.101/32", "10.40.0.102/32"]));
        let server = ns.spawn("web", bins::web(), &[&name, "0.0.0.0:80", "0.0.0.0:8080"]);
        reals.push((ns, server));
    }

    Hosts { lab, switch, client, lb, reals, _decaps: decaps }
}

#[test]
fn tcp_connections_reach_every_real_server_in_every_method() {
    let Hosts { mut lab, switch, client, lb, mut reals, _decaps } = hosts();
    let config = lab.write_file("keepalived.conf", CONFIG);
    let pin_dir = lab.bpffs().join("lbd");
    let mut lbd = bins::start_lbd(&lab, &lb, &config, &pin_dir, &["10.31.0.11", "10.31.0.12", "10.31.0.13"]);
    for (_, server) in &mut reals {
        server.assert_running();
    }

    let stats = lb_tests::xdp::pinned_stats;
    let probe = client.exec("curl", &["-sS", "--max-time", "3", "http://10.40.0.100/"]);
    if !probe.status.success() {
        let links = |ns: &Netns| ns.ip(&["-s", "link", "show"]);
        panic!(
            "first request failed: {}\nstats: {}\nlb links: {}\nr1 links: {}\nsw: {}\nlog:\n{}",
            String::from_utf8_lossy(&probe.stderr),
            stats(&pin_dir),
            links(&lb),
            links(&reals[0].0),
            links(&switch),
            lbd.log()
        );
    }
    // What the real servers receive, for FNAT's TOA option below.
    let captures: Vec<Capture> = reals
        .iter()
        .map(|(ns, _)| ns.enter(|| Capture::open("eth0")).expect("packet socket on a real server"))
        .collect();
    for (method, vip) in
        [("NAT", "10.40.0.100"), ("DR", "10.40.0.101"), ("TUN", "10.40.0.102"), ("FNAT", "10.40.0.103")]
    {
        let mut answers = BTreeMap::<String, u32>::new();
        for _ in 0..9 {
            *answers.entry(curl(&client, &format!("http://{vip}/"))).or_default() += 1;
        }
        let expected: BTreeMap<String, u32> =
            [("r1", 3), ("r2", 3), ("r3", 3)].map(|(k, v)| (k.to_owned(), v)).into();
        assert_eq!(
            answers,
            expected,
            "{method} via {vip}: round robin over the three real servers\nlbd log:\n{}",
            lbd.log()
        );
    }

    // FNAT: the ACK that completes each handshake tells the real server the client's address
    // and port (TOA), in a segment its kernel accepts (checksums right).
    let out =
        client.exec("curl", &["-sS", "--max-time", "5", "--local-port", "45678", "http://10.40.0.103/"]);
    assert!(out.status.success(), "curl from port 45678: {}", String::from_utf8_lossy(&out.stderr));
    let toas: Vec<SocketAddr> = captures
        .iter()
        .flat_map(Capture::frames)
        .filter_map(|frame| {
            let toa = packet::toa_option(&frame)?;
            packet::check_ipv4_tcp(&frame).unwrap_or_else(|e| panic!("TOA segment: {e}"));
            Some(toa)
        })
        .collect();
    assert_eq!(toas.len(), 10, "one TOA per FNAT connection: {toas:?}");
    let client_ip = IpAddr::from([10, 30, 0, 2]);
    assert!(toas.iter().all(|a| a.ip() == client_ip), "{toas:?}");
    assert!(toas.contains(&SocketAddr::new(client_ip, 45678)), "{toas:?}");
    let stats = lb_tests::xdp::pinned_stats(&pin_dir);
    assert!(stats.contains("toa_inserted"), "{stats}");
    lbd.assert_running();
}

/// The LB's neighbour entry of `addr` on eth1 (`ip neigh show` line, empty when none).
fn neighbour(lb: &Netns, addr: &str) -> String {
    lb.ip(&["neigh", "show", addr, "dev", "eth1"]).trim().to_owned()
}

#[test]
fn lbd_keeps_the_real_servers_resolved_so_the_first_connection_is_forwarded() {
    let Hosts { mut lab, client, lb, mut reals, _decaps, .. } = hosts();
    // r3's entry is the operator's: static, it must be left as it is.
    let r3_mac = reals[2].0.mac("eth0").map(|b| format!("{b:02x}")).join(":");
    lb.ip(&["neigh", "add", "10.31.0.13", "lladdr", &r3_mac, "dev", "eth1", "nud", "permanent"]);
    let config = lab.write_file("keepalived.conf", CONFIG);
    let pin_dir = lab.bpffs().join("lbd");
    // No ping from the LB first (start_lbd's): nothing but lbd resolves the real servers.
    let mut lbd = bins::spawn_lbd(&lab, &lb, "lbd", &config, &pin_dir, &[]);
    wait_until(Duration::from_secs(30), "r1 and r2 resolved by lbd (managed neighbour entries)", || {
        lbd.assert_running();
        ["10.31.0.11", "10.31.0.12"].iter().all(|a| {
            let entry = neighbour(&lb, a);
            entry.contains("managed") && entry.contains("REACHABLE")
        })
    });
    assert_eq!(neighbour(&lb, "10.31.0.13"), format!("10.31.0.13 lladdr {r3_mac} PERMANENT"));
    for (_, server) in &mut reals {
        server.assert_running();
    }

    // The first connection of each method is forwarded (none handed to the kernel, which would
    // have answered the SYN for its local VIP with a reset).
    for vip in ["10.40.0.100", "10.40.0.101", "10.40.0.102", "10.40.0.103"] {
        let mut answers = std::collections::BTreeSet::new();
        for _ in 0..3 {
            answers.insert(curl(&client, &format!("http://{vip}/")));
        }
        assert_eq!(answers.len(), 3, "{vip}: {answers:?}\nlbd log:\n{}", lbd.log());
    }
    let stats = lb_tests::xdp::pinned_stats(&pin_dir);
    assert!(!stats.contains("pass_no_neigh"), "a packet waited for a neighbour: {stats}");

    // An orderly stop removes what lbd made, and only that.
    lbd.signal(Signal::SIGTERM);
    assert!(lbd.wait(Duration::from_secs(20)).success(), "lbd stopped\n{}", lbd.log());
    for a in ["10.31.0.11", "10.31.0.12"] {
        let entry = neighbour(&lb, a);
        assert!(!entry.contains("managed"), "{a}: {entry}");
    }
    assert_eq!(neighbour(&lb, "10.31.0.13"), format!("10.31.0.13 lladdr {r3_mac} PERMANENT"));
}
