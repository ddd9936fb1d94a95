//! The SYN proxy (`syn_proxy`) through real connections: curl and a bulk transfer through a
//! NAT and an FNAT VIP whose SYNs the XDP program answers with cookies, and a burst of spoofed
//! SYNs that gets cookie SYN-ACKs, creates no flow and reaches no real server.
//!
//! ```text
//!  client 10.50.0.2 ── [front] ── 10.50.0.1 lb 10.51.0.1 (+ FNAT 10.51.0.200) ── [back] ── r1 .11  r2 .12
//!  VIPs 10.60.0.100 (NAT), .103 (FNAT), both with syn_proxy; .101 (DR, syn_proxy ignored with a warning).
//! ```
#![expect(clippy::unwrap_used, reason = "tests: a failed step is a failed test")]

use std::{collections::BTreeSet, path::Path, time::Duration};

use aya::maps::{HashMap, Map, MapData};
use lb_common::{
    lb::{Flow, FlowKey, FlowKey4},
    maps,
};
use lb_tests::{
    bins,
    lab::{Lab, LbHosts, Netns, wait_until},
    packet::{self, Packet},
    xdp::{self, pinned_stats},
};

const CONFIG: &str = "\
global_defs {
    router_id lbt-synproxy
}
local_address_group LADDR {
    10.51.0.200
}
virtual_server 10.60.0.100 80 {
    lb_algo rr
    lb_kind NAT
    protocol TCP
    syn_proxy
    real_server 10.51.0.11 8080 {
    }
    real_server 10.51.0.12 8080 {
    }
}
virtual_server 10.60.0.101 80 {
    lb_algo rr
    lb_kind DR
    protocol TCP
    syn_proxy
    real_server 10.51.0.11 80 {
    }
}
virtual_server 10.60.0.103 80 {
    lb_algo rr
    lb_kind FNAT
    laddr_group_name LADDR
    protocol TCP
    syn_proxy
    real_server 10.51.0.11 8080 {
    }
    real_server 10.51.0.12 8080 {
    }
}
";

/// Bytes of the bulk transfer.
const BULK: usize = 4_000_000;
/// Spoofed SYNs in the burst.
const SPOOFED: u32 = 300;

fn curl(ns: &Netns, pin_dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["-sS", "--max-time", "20"];
    all.extend_from_slice(args);
    let out = ns.exec("curl", &all);
    assert!(
        out.status.success(),
        "curl {args:?}: {}\nstats: {}\nsockets: {}",
        String::from_utf8_lossy(&out.stderr),
        pinned_stats(pin_dir),
        String::from_utf8_lossy(&ns.exec("ss", &["-tani"]).stdout)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A named counter of the pinned `LBD_STATS`.
fn counter(pin_dir: &Path, name: &str) -> u64 {
    let path = pin_dir.join(maps::GLOBAL_STATS);
    let data = MapData::from_pin(&path).unwrap();
    let stats = lb_daemon::dataplane::xdp::read_stats(&Map::PerCpuArray(data)).unwrap();
    stats.fields().iter().find(|(k, _)| *k == name).map(|(_, v)| *v).unwrap()
}

/// Entries of the pinned connection tables (IPv4 and IPv6).
fn flows(pin_dir: &Path) -> usize {
    let data = MapData::from_pin(pin_dir.join(maps::CONNS4)).unwrap();
    let v4: HashMap<_, FlowKey4, Flow> = HashMap::try_from(Map::LruHashMap(data)).unwrap();
    let data = MapData::from_pin(pin_dir.join(maps::CONNS)).unwrap();
    let v6: HashMap<_, FlowKey, Flow> = HashMap::try_from(Map::LruHashMap(data)).unwrap();
    v4.keys().count() + v6.keys().count()
}

#[test]
fn synproxy_serves_nat_and_fnat_and_absorbs_spoofed_syns() {
    let mut lab = Lab::new();
    let LbHosts { switch, client, lb, reals: hosts } = lab.lb_hosts(2);
    client.addr("eth0", "10.50.0.2/24");
    client.ip(&["route", "add", "10.60.0.0/24", "via", "10.50.0.1"]);
    lb.addr("eth0", "10.50.0.1/24");
    lb.addr("eth1", "10.51.0.1/24");
    lb.addr("eth1", "10.51.0.200/24");
    let mut reals = Vec::new();
    for (i, ns) in (1..).zip(hosts) {
        ns.addr("eth0", &format!("10.51.0.1{i}/24"));
        ns.ip(&["route", "add", "default", "via", "10.51.0.1"]);
        let server = ns.spawn("web", bins::web(), &[&format!("r{i}"), "0.0.0.0:8080"]);
        reals.push((ns, server));
    }
    // The cookie SYN-ACKs leave the LB with XDP_TX: without a program on the switch's end of
    // the LB's veth they wait there for the next frame the LB's kernel sends (see lb_pass).
    let _pass = switch.enter(|| xdp::attach_pass("lb-f"));
    let config = lab.write_file("keepalived.conf", CONFIG);
    let pin_dir = lab.bpffs().join("lbd");
    let mut lbd = bins::start_lbd(&lab, &lb, &config, &pin_dir, &["10.51.0.11", "10.51.0.12"]);
    assert!(
        lbd.log().contains("syn_proxy needs the replies through the load balancer"),
        "the DR service's syn_proxy is reported:\n{}",
        lbd.log()
    );

    for (method, vip) in [("NAT", "10.60.0.100"), ("FNAT", "10.60.0.103")] {
        let before = counter(&pin_dir, "synproxy_cookies_valid");
        let answers: BTreeSet<String> =
            (0..4).map(|_| curl(&client, &pin_dir, &[&format!("http://{vip}/")])).collect();
        assert_eq!(
            answers,
            ["r1", "r2"].map(str::to_owned).into(),
            "{method}: both real servers answer through the proxy\nstats: {}\nlog:\n{}",
            pinned_stats(&pin_dir),
            lbd.log()
        );
        let started = std::time::Instant::now();
        let size = curl(
            &client,
            &pin_dir,
            &["-o", "/dev/null", "-w", "%{size_download}", &format!("http://{vip}/bytes/{BULK}")],
        );
        eprintln!("{method}: bulk in {:?}; stats {}", started.elapsed(), pinned_stats(&pin_dir));
        assert_eq!(size, BULK.to_string(), "{method}: the bulk transfer arrives whole");
        assert_eq!(
            counter(&pin_dir, "synproxy_cookies_valid") - before,
            5,
            "{method}: every connection went through a cookie\nstats: {}",
            pinned_stats(&pin_dir)
        );
    }
    for name in ["synproxy_cookies_sent", "synproxy_real_answers"] {
        assert!(counter(&pin_dir, name) >= 10, "{name}: {}", pinned_stats(&pin_dir));
    }

    // A burst of SYNs from spoofed sources: answered by the LB alone.
    let lb_mac = lb.mac("eth0");
    let client_mac = client.mac("eth0");
    let frames: Vec<Vec<u8>> = (0..SPOOFED)
        .map(|i| {
            let src = format!("10.50.{}.{}:{}", 1 + i / 200, 1 + i % 200, 1024 + i);
            let vip = if i % 2 == 0 { "10.60.0.100:80" } else { "10.60.0.103:80" };
            Packet::tcp_syn(src.parse().unwrap(), vip.parse().unwrap())
                .seq_ack(i * 7919, 0, 64240)
                .tcp_options(&[2, 4, 0x05, 0xb4])
                .macs(client_mac, lb_mac)
                .build()
        })
        .collect();
    let (flows_before, sent_before) = (flows(&pin_dir), counter(&pin_dir, "synproxy_cookies_sent"));
    let reals_before: Vec<u64> = reals.iter().map(|(ns, _)| ns.tcp_counter("InSegs")).collect();
    client.enter(|| packet::send_frames("eth0", &frames)).unwrap();
    wait_until(Duration::from_secs(10), "cookie SYN-ACKs for the spoofed SYNs", || {
        counter(&pin_dir, "synproxy_cookies_sent") - sent_before >= u64::from(SPOOFED)
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(counter(&pin_dir, "synproxy_cookies_sent") - sent_before, u64::from(SPOOFED));
    assert_eq!(flows(&pin_dir), flows_before, "the spoofed SYNs created no flow entry");
    let reals_after: Vec<u64> = reals.iter().map(|(ns, _)| ns.tcp_counter("InSegs")).collect();
    assert_eq!(reals_after, reals_before, "no TCP segment reached a real server");

    // The proxy still serves after the burst.
    let out = client.exec("curl", &["-sS", "--max-time", "10", "http://10.60.0.100/"]);
    assert!(
        out.status.success(),
        "after the burst: {}\nstats {}\nclient {}\nlb {}",
        String::from_utf8_lossy(&out.stderr),
        pinned_stats(&pin_dir),
        client.ip(&["-s", "link", "show", "eth0"]),
        lb.ip(&["-s", "link", "show", "eth0"])
    );
    lbd.assert_running();
    for (_, server) in &mut reals {
        server.assert_running();
    }
}
