//! keepalived keywords of the VRRP child, shown through real packets in namespaces:
//! `virtual_rules` (policy rules that follow MASTER), `unicast_ttl` (the TTL of unicast adverts,
//! which a real keepalived backup accepts: its TTL check is for multicast only),
//! `vrrp_startup_delay` (no takeover before the delay plus Master_Down_Interval),
//! `garp_extra_if` (periodic gratuitous ARPs on the VIPs' other interfaces), `garp_group`
//! (gratuitous ARPs paced per interface), `promote_secondaries` (the kernel setting, seen
//! keeping a VIP when its subnet's primary address goes), `unicast_fault_no_peer` (FAULT
//! for good, as real keepalived), `track_src_ip` (FAULT while the configured source address
//! is missing), `notify_deleted` (what a reload that deletes an instance notifies, compared
//! with real keepalived's) and `vmac_prefix` (the use_vmac interface's name, as keepalived's).

mod vrrp_kit;

use std::time::{Duration, Instant};

use lb_tests::{lab::Lab, process::Proc};
use vrrp_kit::{
    VipWatch, config, instance, ip4, lan, spawn_keepalived, start_keepalived, start_lbd, terminate,
};

/// `tcpdump` on `interface` of `ns`, line-buffered, with epoch timestamps.
fn capture(ns: &lb_tests::lab::Netns, label: &str, interface: &str, filter: &str) -> Proc {
    let mut args = vec!["-i", interface, "-nn", "-l", "-tt", "-v"];
    args.extend(filter.split(' '));
    let mut tcpdump = ns.spawn(label, "tcpdump", &args);
    lb_tests::lab::wait_until(Duration::from_secs(5), "tcpdump to listen", || {
        tcpdump.assert_running();
        tcpdump.log().contains("listening on")
    });
    tcpdump
}

/// The timestamps of the gratuitous ARPs for `vip` in a capture.
fn garps(capture: &Proc, vip: &str) -> Vec<f64> {
    capture
        .log()
        .lines()
        .filter(|l| l.contains(&format!("who-has {vip} ")) && l.contains(&format!("tell {vip},")))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn virtual_rules_follow_master_and_unicast_ttl_reaches_a_keepalived_backup() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 96, 2);
    let vip = ip4(96, 100);
    let unicast = |me: u8, peer: u8, priority: u8, extra: &str| {
        config(
            &format!("r{me}"),
            "",
            &[instance(
                "VI_1",
                96,
                priority,
                "0.2",
                &["10.96.0.100/24"],
                &format!(
                    "  version 3\n  unicast_src_ip 10.96.0.{me}\n  unicast_peer {{\n    10.96.0.{peer}\n  }}\n{extra}"
                ),
            )],
        )
    };
    let rules = "  virtual_rules {\n    from 192.168.96.0/24 table 96 preference 960\n  }\n";
    let adverts = capture(&r[1], "tcpdump-r2", "eth0", "ip proto 112");
    let (w1, w2) = (VipWatch::start(&r[0], "r1", vip), VipWatch::start(&r[1], "r2", vip));
    let mut a =
        start_lbd(&mut lab, &r[0], "lbd1", &unicast(1, 2, 150, &format!("  unicast_ttl 64\n{rules}")));
    let _b = start_keepalived(&lab, &r[1], "keepalived2", &unicast(2, 1, 100, ""));
    w1.wait_for(true, Duration::from_secs(5));
    // keepalived hears the TTL-64 adverts (no TTL check for unicast) and stays BACKUP.
    w2.assert_steady(false, Duration::from_secs(1));
    let log = adverts.log();
    let ours: Vec<&str> = log.lines().filter(|l| l.contains("10.96.0.1 > 10.96.0.2")).collect();
    assert!(!ours.is_empty(), "no advert from lbd captured:\n{log}");
    // tcpdump -v puts the IP header on the line before the addresses.
    let headers: Vec<&str> = log.lines().filter(|l| l.contains("proto VRRP (112)")).collect();
    assert!(headers.iter().any(|l| l.contains("ttl 64,")), "{log}");
    assert!(!headers.iter().any(|l| l.contains("ttl 255,")), "lbd sent a TTL-255 unicast advert:\n{log}");

    let rule = r[0].ip(&["rule", "show", "preference", "960"]);
    assert!(rule.contains("from 192.168.96.0/24 lookup 96") && rule.contains("proto keepalived"), "{rule:?}");
    assert!(r[1].ip(&["rule", "show", "preference", "960"]).trim().is_empty());

    // An orderly stop releases MASTER: the rule goes with the VIP.
    terminate(&mut a, "lbd1");
    w2.wait_for(true, Duration::from_secs(3));
    assert!(r[0].ip(&["rule", "show", "preference", "960"]).trim().is_empty(), "the rule outlived MASTER");
    assert!(!w1.holds());
}

#[test]
fn virtual_rules_are_removed_on_a_move_to_backup() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 99, 2);
    let vip = ip4(99, 100);
    let rules = "  virtual_rules {\n    to 192.168.99.0/24 table 99 preference 990\n  }\n";
    let make = |id: &str, priority: u8| {
        config(
            id,
            "",
            &[instance("VI_1", 99, priority, "0.2", &["10.99.0.100/24"], &format!("  version 3\n{rules}"))],
        )
    };
    let w1 = VipWatch::start(&r[0], "r1", vip);
    let _a = start_lbd(&mut lab, &r[0], "lbd1", &make("r1", 100));
    w1.wait_for(true, Duration::from_secs(5));
    assert!(r[0].ip(&["rule", "show", "preference", "990"]).contains("to 192.168.99.0/24 lookup 99"));
    // A higher priority preempts: r1 goes BACKUP and takes its rule away; r2 installs its own.
    let _b = start_lbd(&mut lab, &r[1], "lbd2", &make("r2", 200));
    w1.wait_for(false, Duration::from_secs(5));
    assert!(r[0].ip(&["rule", "show", "preference", "990"]).trim().is_empty());
    assert!(r[1].ip(&["rule", "show", "preference", "990"]).contains("to 192.168.99.0/24 lookup 99"));
}

#[test]
fn vrrp_startup_delay_holds_the_takeover_back() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 97, 1);
    let vip = ip4(97, 100);
    // advert_int 1, priority 150 (VRRPv2): Master_Down_Interval 3 + 106/256 s; with a 3 s delay
    // the VIP cannot come before 6.41 s.
    let conf = config(
        "r1",
        "  vrrp_startup_delay 3\n  vrrp_ipsets keepalived\n",
        &[instance("VI_1", 97, 150, "1", &["10.97.0.100/24"], "")],
    );
    let w1 = VipWatch::start(&r[0], "r1", vip);
    let started = Instant::now();
    let lbd = start_lbd(&mut lab, &r[0], "lbd1", &conf);
    let taken = w1.wait_for(true, Duration::from_secs(15)).saturating_duration_since(started);
    eprintln!("vrrp_startup_delay 3: VIP after {:.3} s", taken.as_secs_f64());
    assert!(taken >= Duration::from_millis(6_400), "took over after {taken:?}:\n{}", lbd.log());
    assert!(lbd.log().contains("Delaying startup for 3 seconds"), "{}", lbd.log());
    assert!(lbd.log().contains("(VI_1) Entering BACKUP STATE (init)"), "{}", lbd.log());
    // A keyword lbd parses but does not act on is named with its line and column.
    assert!(
        lbd.log().contains("lbd1.conf:4:3: notice: keyword 'vrrp_ipsets' is parsed, not supported yet"),
        "{}",
        lbd.log()
    );
}

#[test]
fn garp_extra_if_repeats_on_other_interfaces_and_garp_group_paces_them() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 98, 2);
    // r1's second interface eth1 faces h (10.198.0.0/24).
    let h = lab.netns("h");
    lab.veth(&r[0], "eth1", &h, "eth0");
    r[0].addr("eth1", "10.198.0.1/24");
    h.addr("eth0", "10.198.0.2/24");
    let conf = config(
        "r1",
        "",
        &[
            "garp_group {\n  garp_interval 0.4\n  interface eth1\n}\n".to_string(),
            instance(
                "VI_1",
                98,
                150,
                "0.2",
                &["10.98.0.100/24", "10.198.0.100/24 dev eth1"],
                "  version 3\n  garp_master_repeat 3\n  garp_master_delay 0\n  garp_extra_if all 1\n",
            ),
        ],
    );
    let lan_side = capture(&r[1], "tcpdump-lan", "eth0", "arp");
    let other_side = capture(&h, "tcpdump-h", "eth0", "arp");
    let w1 = VipWatch::start(&r[0], "r1", ip4(98, 100));
    let _a = start_lbd(&mut lab, &r[0], "lbd1", &conf);
    w1.wait_for(true, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(4_500));

    // eth1: the 3 of the takeover, 0.4 s apart (garp_group), then one a second (garp_extra_if).
    let other = garps(&other_side, "10.198.0.100");
    eprintln!("eth1 gratuitous ARPs at {other:?}");
    assert!(other.len() >= 6, "expected 3 + at least 3 on eth1, got {other:?}\n{}", other_side.log());
    for pair in other.windows(2) {
        assert!(pair[1] - pair[0] >= 0.39, "gratuitous ARPs on eth1 less than 0.4 s apart: {other:?}");
    }
    // eth0 (the instance's own interface): the takeover's 3 only, back to back (no group there).
    let own = garps(&lan_side, "10.98.0.100");
    eprintln!("eth0 gratuitous ARPs at {own:?}");
    assert_eq!(own.len(), 3, "{}", lan_side.log());
    assert!(own[2] - own[0] < 0.3, "eth0's burst was paced: {own:?}");
}

/// `net.ipv4.conf.INTERFACE.KEY` inside `ns`.
fn ipv4_conf(ns: &lb_tests::lab::Netns, interface: &str, key: &str) -> String {
    let out = ns.exec("cat", &[&format!("/proc/sys/net/ipv4/conf/{interface}/{key}")]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn promote_secondaries_keeps_the_vip_when_its_subnets_primary_address_goes() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 93, 2);
    // Each router also has 10.193.0.i/24, the primary address of the VIP's subnet: the VIP
    // 10.193.0.100/24 is a secondary address behind it.
    for (i, router) in r.iter().enumerate() {
        router.addr("eth0", &format!("10.193.0.{}/24", i + 1));
    }
    let make = |id: &str, extra: &str| {
        config(
            id,
            "",
            &[instance("VI_1", 93, 150, "0.2", &["10.193.0.100/24"], &format!("  version 3\n{extra}"))],
        )
    };
    let vip = "10.193.0.100".parse().unwrap_or_else(|e| panic!("{e}"));
    let (w1, w2) = (VipWatch::start(&r[0], "r1", vip), VipWatch::start(&r[1], "r2", vip));
    assert_eq!(ipv4_conf(&r[0], "eth0", "promote_secondaries"), "0");
    let mut a = start_lbd(&mut lab, &r[0], "lbd1", &make("r1", "  promote_secondaries\n"));
    w1.wait_for(true, Duration::from_secs(5));
    assert_eq!(ipv4_conf(&r[0], "eth0", "promote_secondaries"), "1", "{}", a.log());
    r[0].ip(&["addr", "del", "10.193.0.1/24", "dev", "eth0"]);
    // The kernel promoted the VIP instead of deleting it with the primary.
    let addresses = r[0].ip(&["-4", "addr", "show", "dev", "eth0"]);
    assert!(addresses.contains("inet 10.193.0.100/24"), "{addresses}");
    w1.assert_steady(true, Duration::from_millis(500));
    // An orderly stop puts the setting back.
    terminate(&mut a, "lbd1");
    assert_eq!(ipv4_conf(&r[0], "eth0", "promote_secondaries"), "0");

    // Without the keyword (r2): the setting is left alone, and removing the subnet's primary
    // address takes the VIP with it.
    let _b = start_lbd(&mut lab, &r[1], "lbd2", &make("r2", ""));
    w2.wait_for(true, Duration::from_secs(5));
    assert_eq!(ipv4_conf(&r[1], "eth0", "promote_secondaries"), "0");
    r[1].ip(&["addr", "del", "10.193.0.2/24", "dev", "eth0"]);
    let addresses = r[1].ip(&["-4", "addr", "show", "dev", "eth0"]);
    assert!(!addresses.contains("10.193.0.100"), "{addresses}");
}

#[test]
fn unicast_fault_no_peer_stays_in_fault_like_keepalived() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 91, 3);
    let notify = lab.write_file("notify.sh", "#!/bin/sh\necho \"$*\" >> \"$(dirname \"$0\")/notify.log\"\n");
    std::fs::set_permissions(&notify, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{e}"));
    let make = |me: u8, extra: &str| {
        config(
            &format!("r{me}"),
            "",
            &[instance(
                "VI_1",
                90 + me,
                150,
                "0.2",
                &[&format!("10.91.0.{}/24", 100 + me)],
                &format!(
                    "  version 3\n  unicast_src_ip 10.91.0.{me}\n  notify \"{} r{me}\"\n{extra}",
                    notify.display()
                ),
            )],
        )
    };
    let watches: Vec<VipWatch> = (1..=3u8)
        .map(|i| VipWatch::start(&r[usize::from(i - 1)], &format!("r{i}"), ip4(91, 100 + i)))
        .collect();
    let a = start_lbd(&mut lab, &r[0], "lbd1", &make(1, "  unicast_fault_no_peer\n"));
    // keepalived logs no "Entering" line for a FAULT it starts in.
    let mut b = spawn_keepalived(&lab, &r[1], "keepalived2", &make(2, "  unicast_fault_no_peer\n"), &["-P"]);
    lb_tests::lab::wait_until(Duration::from_secs(10), "keepalived to start", || {
        b.assert_running();
        b.log().contains("Startup complete")
    });
    // Without the keyword, a unicast keyword without peers falls back to multicast.
    let c = start_lbd(&mut lab, &r[2], "lbd3", &make(3, ""));
    watches[2].wait_for(true, Duration::from_secs(5));
    // r3 took over after its Master_Down_Interval; r1 and r2 never do.
    watches[0].assert_steady(false, Duration::from_millis(1_500));
    watches[1].assert_steady(false, Duration::ZERO);
    let log = a.log();
    assert!(log.contains("(VI_1) Cannot use unicast without any peers - going to fault state"), "{log}");
    assert!(log.contains("(VI_1) Entering FAULT STATE"), "{log}");
    assert!(c.log().contains("Defaulting to multicast"), "{}", c.log());
    assert!(
        b.log().contains("(VI_1) Cannot use unicast without any peers - going to fault state"),
        "{}",
        b.log()
    );
    let notified = std::fs::read_to_string(lab.dir().join("notify.log")).unwrap_or_default();
    let lines: Vec<&str> = notified.lines().collect();
    // The notify scripts: FAULT for both r1 (lbd) and r2 (keepalived), never MASTER or BACKUP.
    for who in ["r1", "r2"] {
        let theirs: Vec<&str> = lines.iter().copied().filter(|l| l.starts_with(&format!("{who} "))).collect();
        assert_eq!(theirs, [format!("{who} INSTANCE VI_1 FAULT 150")], "{notified}");
    }
}

#[test]
fn track_src_ip_faults_while_the_configured_source_is_missing() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 90, 2);
    let vip = ip4(90, 100);
    // r1 (150) sends from 10.90.0.11, an address the test adds and removes; r2 (100) backs it up.
    let make = |id: &str, priority: u8, extra: &str| {
        config(
            id,
            "",
            &[instance("VI_1", 90, priority, "0.2", &["10.90.0.100/24"], &format!("  version 3\n{extra}"))],
        )
    };
    let (w1, w2) = (VipWatch::start(&r[0], "r1", vip), VipWatch::start(&r[1], "r2", vip));
    let _b = start_lbd(&mut lab, &r[1], "lbd2", &make("r2", 100, ""));
    w2.wait_for(true, Duration::from_secs(5));
    // The source is not there at startup: FAULT, r2 keeps the VIP.
    let a =
        start_lbd(&mut lab, &r[0], "lbd1", &make("r1", 150, "  mcast_src_ip 10.90.0.11\n  track_src_ip\n"));
    lb_tests::lab::wait_until(Duration::from_secs(5), "r1 in FAULT", || {
        a.log().contains("Entering FAULT STATE")
    });
    w2.assert_steady(true, Duration::from_secs(1));
    assert!(!w1.holds());
    // Added: r1 leaves FAULT and preempts r2 with its adverts from 10.90.0.11.
    let adverts = capture(&r[1], "tcpdump-r2", "eth0", "ip proto 112");
    r[0].addr("eth0", "10.90.0.11/24");
    w1.wait_for(true, Duration::from_secs(5));
    w2.wait_for(false, Duration::from_secs(2));
    lb_tests::lab::wait_until(Duration::from_secs(2), "an advert from 10.90.0.11", || {
        adverts.log().contains("10.90.0.11 > 224.0.0.18")
    });
    // Removed: FAULT again, and r2 takes over.
    r[0].ip(&["addr", "del", "10.90.0.11/24", "dev", "eth0"]);
    w2.wait_for(true, Duration::from_secs(3));
    assert!(!w1.holds(), "{}", a.log());
    let log = a.log();
    assert!(log.contains("source address 10.90.0.11 removed from eth0"), "{log}");
    assert_eq!(log.matches("(VI_1) Entering FAULT STATE").count(), 2, "{log}");
}

#[test]
fn a_reload_that_deletes_instances_notifies_fault_or_deleted_like_keepalived() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 89, 2);
    let log = lab.dir().join("notify.log");
    let notify = lab.write_file("notify.sh", &format!("#!/bin/sh\necho \"$*\" >> {}\n", log.display()));
    std::fs::set_permissions(&notify, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{e}"));
    let n = notify.display();
    // Router i runs VI_1..VI_3 with VRIDs i1..i3 (no election between the routers); VI_2 has
    // notify_deleted with a script, VI_3 nothing of the kind.
    let make = |me: u8, names: &[&str]| {
        let blocks: Vec<String> = names
            .iter()
            .map(|name| {
                let k: u8 = name[3..].parse().unwrap_or_else(|e| panic!("{e}"));
                let vrid = me * 10 + k;
                let deleted = if k == 2 {
                    format!("  notify_deleted \"{n} r{me} deleted {name}\"\n")
                } else {
                    String::new()
                };
                instance(
                    name,
                    vrid,
                    150,
                    "0.2",
                    &[&format!("10.89.0.{vrid}/24")],
                    &format!(
                        "  version 3\n  notify \"{n} r{me}\"\n  notify_stop \"{n} r{me} stop {name}\"\n  \
                         notify_fault \"{n} r{me} fault {name}\"\n{deleted}"
                    ),
                )
            })
            .collect();
        config(&format!("r{me}"), "  script_user root\n", &blocks)
    };
    let all = ["VI_1", "VI_2", "VI_3"];
    let mut a = start_lbd(&mut lab, &r[0], "lbd1", &make(1, &all));
    let b = start_keepalived(&lab, &r[1], "keepalived2", &make(2, &all));
    let watches: Vec<VipWatch> = [11, 12, 13, 21, 22, 23]
        .iter()
        .map(|&vrid| VipWatch::start(&r[usize::from(vrid / 10 - 1)], &format!("vrid {vrid}"), ip4(89, vrid)))
        .collect();
    for watch in &watches {
        watch.wait_for(true, Duration::from_secs(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&log, "").unwrap_or_else(|e| panic!("{e}"));
    // The reload keeps VI_1 only.
    std::fs::write(lab.dir().join("lbd1.conf"), make(1, &["VI_1"])).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(lab.dir().join("keepalived2.conf"), make(2, &["VI_1"])).unwrap_or_else(|e| panic!("{e}"));
    a.signal(nix::sys::signal::Signal::SIGHUP);
    b.signal(nix::sys::signal::Signal::SIGHUP);
    for (i, watch) in watches.iter().enumerate() {
        // VI_1 stays, VI_2 and VI_3 go.
        if i % 3 == 0 {
            watch.assert_steady(true, Duration::ZERO);
        } else {
            watch.wait_for(false, Duration::from_secs(5));
        }
    }
    let notified = |me: &str| {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let mut lines: Vec<String> =
            text.lines().filter_map(|l| l.strip_prefix(&format!("{me} "))).map(str::to_owned).collect();
        lines.sort();
        lines
    };
    lb_tests::lab::wait_until(Duration::from_secs(5), "the notify scripts", || notified("r1").len() >= 3);
    std::thread::sleep(Duration::from_millis(500));
    let expected = ["INSTANCE VI_2 DELETED 150", "INSTANCE VI_3 FAULT 150", "deleted VI_2"];
    assert_eq!(notified("r2"), expected, "keepalived:\n{}", b.log());
    assert_eq!(notified("r1"), expected, "lbd:\n{}", a.log());
    let log = a.log();
    assert!(
        log.contains("(VI_2) deleted by the reload") && log.contains("(VI_3) deleted by the reload"),
        "{log}"
    );
    assert!(!log.contains("(VI_2) Entering STOP") && !log.contains("(VI_1) Entering STOP"), "{log}");
    terminate(&mut a, "lbd1");
}

#[test]
fn vmac_prefix_names_the_use_vmac_interface_as_keepalived_does() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 88, 2);
    let make = |me: u8| {
        let vrid = 80 + me;
        config(
            &format!("r{me}"),
            "  vmac_prefix vk\n",
            &[instance(
                "VI_1",
                vrid,
                150,
                "0.2",
                &[&format!("10.88.0.{vrid}/24")],
                "  version 3\n  use_vmac\n",
            )],
        )
    };
    let (w1, w2) = (VipWatch::start(&r[0], "r1", ip4(88, 81)), VipWatch::start(&r[1], "r2", ip4(88, 82)));
    let mut a = start_lbd(&mut lab, &r[0], "lbd1", &make(1));
    let _b = start_keepalived(&lab, &r[1], "keepalived2", &make(2));
    w1.wait_for(true, Duration::from_secs(5));
    w2.wait_for(true, Duration::from_secs(5));
    // keepalived's name for VRID 82 and lbd's for VRID 81, each a macvlan holding the VIP.
    for (router, name, vip) in [(&r[0], "vk.81", "10.88.0.81/24"), (&r[1], "vk.82", "10.88.0.82/24")] {
        let link = router.ip(&["-d", "link", "show", name]);
        assert!(link.contains("macvlan"), "{link}");
        assert!(router.ip(&["-4", "addr", "show", "dev", name]).contains(vip));
    }
    terminate(&mut a, "lbd1");
    assert!(r[0].try_ip(&["link", "show", "vk.81"]).is_err(), "the macvlan outlived lbd");
}
