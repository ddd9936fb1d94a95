//! The XDP program, attached by `lbd` in driver mode on a veth inside a namespace, counts the
//! packets it sees; the counters read the same through aya and through `bpftool map dump`.
//! And BPF_PROG_TEST_RUN on crafted frames gives the expected verdicts.
#![expect(clippy::unwrap_used, reason = "tests: a failed step is a failed test")]

use std::{
    net::{SocketAddr, UdpSocket},
    path::Path,
    process::Command,
    time::Duration,
};

use aya::maps::{Map, MapData};
use lb_common::{maps::GLOBAL_STATS, stats::GlobalStats};
use lb_tests::{
    bins,
    lab::{Lab, wait_until},
    packet::{self, Packet},
    process::describe,
    xdp::{Expected, Fixture, XdpAction, XdpTestRun, run_table},
};
use nix::sys::signal::Signal;
use pnet_packet::ethernet::EtherTypes;

/// The counters of a pinned `LBD_STATS`, read with aya.
fn stats_via_aya(pin: &Path) -> GlobalStats {
    let data = MapData::from_pin(pin).unwrap();
    let map = Map::PerCpuArray(data);
    lb_daemon::dataplane::xdp::read_stats(&map).unwrap()
}

/// The same counters as `bpftool -j map dump pinned` prints them, summed over CPUs by field name.
fn stats_via_bpftool(pin: &Path) -> GlobalStats {
    let out = Command::new("bpftool").args(["-j", "map", "dump", "pinned"]).arg(pin).output().unwrap();
    assert!(out.status.success(), "bpftool: {}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut sum = GlobalStats::default();
    // "formatted" is only there when the map carries BTF: part of what this test checks.
    let cpus = json[0]["formatted"]["values"]
        .as_array()
        .unwrap_or_else(|| panic!("no BTF-formatted values in {json}"));
    for cpu in cpus {
        let v = &cpu["value"];
        sum = sum.merged(&GlobalStats::from_fn(|name| {
            v[name].as_u64().unwrap_or_else(|| panic!("no field {name} in {v}"))
        }));
    }
    sum
}

#[test]
fn lbd_attaches_in_driver_mode_and_counts_packets() {
    let mut lab = Lab::new();
    let lb = lab.netns("lb");
    let client = lab.netns("client");
    lab.veth(&lb, "eth0", &client, "eth0");
    // No IPv6 on the link: no router solicitations or ND to make the counts vary.
    for ns in [&lb, &client] {
        ns.sysctl("net.ipv6.conf.eth0.disable_ipv6", "1");
    }
    lb.addr("eth0", "10.201.0.1/24");
    client.addr("eth0", "10.201.0.2/24");
    let bpffs = lab.bpffs();
    let pin_dir = bpffs.join("lbd");
    // No virtual server: `--all` starts the checker child (and with it the data plane) anyway.
    let config = lab.write_file("keepalived.conf", "global_defs {\n    router_id lbt\n}\n");

    // An earlier lbd whose counters had another layout left its map pinned: this one replaces
    // it rather than failing verification or writing fields where they are not.
    std::fs::create_dir_all(&pin_dir).unwrap();
    let pin = pin_dir.join(GLOBAL_STATS);
    let created = Command::new("bpftool")
        .args(["map", "create"])
        .arg(&pin)
        .args(["type", "percpu_array", "key", "4", "value", "8", "entries", "1", "name", GLOBAL_STATS])
        .output()
        .unwrap();
    assert!(created.status.success(), "bpftool: {}", String::from_utf8_lossy(&created.stderr));

    let mut lbd = bins::spawn_lbd(&lab, &lb, "lbd", &config, &pin_dir, &["--xdp-mode", "driver", "--all"]);
    wait_until(Duration::from_secs(10), "lbd to attach XDP to eth0", || {
        lbd.assert_running();
        lbd.log().contains("attached to eth0")
    });
    assert!(pin.exists(), "{} not pinned", pin.display());
    assert!(
        lbd.log().contains("pinned by an earlier lbd with key/value 4/8 bytes"),
        "the stale pin is reported:\n{}",
        lbd.log()
    );

    // Driver mode, as the kernel reports it.
    let link: serde_json::Value =
        serde_json::from_str(&lb.ip(&["-j", "-d", "link", "show", "eth0"])).unwrap();
    let xdp = &link[0]["xdp"];
    assert_eq!(xdp["mode"], 1, "expected XDP_ATTACHED_DRV in {xdp}");
    assert_eq!(xdp["prog"]["name"], "lb_xdp");

    let before = stats_via_aya(&pin);
    const N: u64 = 25;
    client.enter(|| {
        let socket = UdpSocket::bind("10.201.0.2:0").unwrap();
        let dst: SocketAddr = "10.201.0.1:9".parse().unwrap();
        for _ in 0..N {
            socket.send_to(b"lbd counts me", dst).unwrap();
        }
    });
    wait_until(Duration::from_secs(5), "the datagrams to be counted", || {
        stats_via_aya(&pin).ipv4 - before.ipv4 >= N
    });
    let via_aya = stats_via_aya(&pin);
    let via_bpftool = stats_via_bpftool(&pin);
    assert_eq!(via_aya, via_bpftool, "aya and bpftool disagree");
    assert_eq!(via_aya.ipv4 - before.ipv4, N, "exactly the datagrams sent are IPv4");
    assert!(via_aya.other_l3 >= 1, "the client's ARP request was seen: {via_aya:?}");
    assert_eq!(via_aya.ipv6, 0);
    assert_eq!(
        via_aya.rx_packets,
        via_aya.pass + via_aya.drop_malformed,
        "one outcome per packet: {via_aya:?}"
    );
    // 14 + 20 + 8 + 13 bytes per datagram.
    assert!(via_aya.rx_bytes - before.rx_bytes >= N * 55);

    // An orderly stop detaches the program and removes the pins.
    lbd.signal(Signal::SIGTERM);
    let status = lbd.wait(Duration::from_secs(10));
    assert!(status.success(), "lbd exited with {}; log:\n{}", describe(status), lbd.log());
    let link: serde_json::Value =
        serde_json::from_str(&lb.ip(&["-j", "-d", "link", "show", "eth0"])).unwrap();
    assert!(link[0].get("xdp").is_none(), "XDP still attached after stop: {}", link[0]);
    assert!(!pin.exists(), "pin left behind after stop");
}

/// A tagged frame that ends two bytes into its 802.1Q tag.
fn tcp6_tagged_cut() -> Vec<u8> {
    let frame = Packet::tcp_syn("[2001:db8::1]:1".parse().unwrap(), "[2001:db8::2]:2".parse().unwrap())
        .vlan(1)
        .build();
    frame[..16].to_vec()
}

#[test]
fn without_its_full_path_the_entry_point_passes_what_its_cache_does_not_send() {
    // The daemon fills the program array (pinned); should the tail call fail all the same, the
    // kernel gets the packet, counted as not ready.
    let mut lab = Lab::new();
    let (lb, ifindex, _) = lb_tests::fixture::lb_namespace(&mut lab);
    lb.enter(|| {
        let udp =
            Packet::udp("10.9.0.7:1000".parse().unwrap(), "10.0.0.99:53".parse().unwrap(), b"q").build();
        for (mut program, full_path) in [(XdpTestRun::lbd(), true), (XdpTestRun::lbd_entry_alone(), false)] {
            lb_tests::fixture::load_tables(&mut program);
            let out = program.run_on(ifindex, &udp);
            assert_eq!(out.action, XdpAction::Pass);
            assert_eq!(out.output, udp, "untouched");
            let stats = program.stats();
            assert_eq!((stats.rx_packets, stats.pass), (1, 1), "{stats:?}");
            assert_eq!(
                (stats.pass_no_service, stats.pass_not_ready),
                if full_path { (1, 0) } else { (0, 1) },
                "full path {full_path}: {stats:?}"
            );
        }
    });
}

#[test]
fn test_run_verdicts_on_crafted_frames() {
    let program = XdpTestRun::lbd();
    let v4 = |s: &str| -> SocketAddr { s.parse().unwrap() };
    let udp4 = Packet::udp(v4("10.0.0.1:1000"), v4("10.0.0.2:53"), b"query").build();
    let tcp6 = Packet::tcp_syn(v4("[2001:db8::1]:40000"), v4("[2001:db8::2]:80")).vlan(42).build();
    let qinq = Packet::udp(v4("10.0.0.1:1"), v4("10.0.0.2:2"), b"").vlan(10).vlan(20).build();
    let arp = packet::ethernet([0xff; 6], packet::SRC_MAC, EtherTypes::Arp, &[0u8; 28]);
    let table = [
        Fixture {
            description: "IPv4 UDP passes untouched",
            input: udp4.clone(),
            action: XdpAction::Pass,
            output: Expected::Unchanged,
        },
        Fixture {
            description: "802.1Q-tagged IPv6 TCP passes untouched",
            input: tcp6,
            action: XdpAction::Pass,
            output: Expected::Unchanged,
        },
        Fixture {
            description: "QinQ IPv4 passes untouched",
            input: qinq.clone(),
            action: XdpAction::Pass,
            output: Expected::Unchanged,
        },
        Fixture {
            description: "ARP passes untouched",
            input: arp,
            action: XdpAction::Pass,
            output: Expected::Unchanged,
        },
        // (BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header, so the shortest
        // malformed frames tested are cut inside the VLAN tags.)
        Fixture {
            description: "802.1Q tag cut short is dropped",
            input: tcp6_tagged_cut(),
            action: XdpAction::Drop,
            output: Expected::Any,
        },
        Fixture {
            description: "VLAN tag cut short is dropped",
            input: qinq[..17].to_vec(),
            action: XdpAction::Drop,
            output: Expected::Any,
        },
    ];
    run_table(&program, &table);

    let stats = program.stats();
    assert_eq!(stats.rx_packets, table.len() as u64);
    assert_eq!(stats.ipv4, 2);
    assert_eq!(stats.ipv6, 1);
    assert_eq!(stats.other_l3, 1);
    assert_eq!(stats.drop_malformed, 2);
    assert_eq!(stats.drop, 2);
    assert_eq!(stats.pass, 4);
}

#[test]
fn an_upgrade_that_reshapes_the_program_array_keeps_the_old_entry_point_on_a_full_path() {
    // An earlier build's entry point stays attached until the new daemon swaps its own into the
    // links; meanwhile it tail-calls through the earlier, one-entry program array, which the
    // new daemon unpins (another shape) and which the kernel would then empty.
    let mut lab = Lab::new();
    let pin_dir = lab.bpffs().join("lbd");
    std::fs::create_dir_all(&pin_dir).unwrap();
    let progs = pin_dir.join(lb_common::maps::PROGS);
    let old = XdpTestRun::earlier_build(1, &progs);
    let frame = Packet::tcp_syn("10.9.0.1:1000".parse().unwrap(), "10.0.0.100:80".parse().unwrap()).build();
    old.run(&frame);
    assert_eq!(old.stats().ipv4, 1, "the earlier build's full path");
    let dataplane = lb_daemon::dataplane::xdp::XdpDataplane::load(&pin_dir).unwrap();
    assert_eq!(aya::maps::MapInfo::from_pin(&progs).unwrap().max_entries(), 8, "the new array is pinned");
    old.run(&frame);
    let new = stats_via_aya(&pin_dir.join(GLOBAL_STATS));
    // Not ready: the new daemon has applied no configuration yet.
    assert_eq!((new.ipv4, new.pass_not_ready), (1, 1), "the new full path took the old entry point's packet");
    assert_eq!(old.stats().ipv4, 1, "and the old one did not");
    drop(dataplane);
}
