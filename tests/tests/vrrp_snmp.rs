//! lbd's SNMP (AgentX subagent) against net-snmp: an snmpd master agent and an snmptrapd in
//! the router's namespace (on a Unix socket in the lab's directory and the namespace's
//! loopback), snmpwalk reading KEEPALIVED-MIB, VRRP-MIB and VRRPv3-MIB as operators do, and
//! the notifications a state change sends; then the same walk of real keepalived 2.2.7 with
//! the same configuration, OID for OID.
//!
//! The snmpd / snmptrapd kit is `snmp_kit`.
#![expect(clippy::unwrap_used, reason = "tests: a failed step is a failed test")]

mod snmp_kit;
mod vrrp_kit;

use std::time::Duration;

use lb_tests::lab::{Lab, wait_until};
use snmp_kit::{KEEPALIVED_GLOBAL, Snmp, comparable, notifications};
use vrrp_kit::{ADVERT_TEXT, config, instance, lan, start_keepalived, start_lbd, terminate};

/// KEEPALIVED-MIB's VRRP part.
const KEEPALIVED_VRRP: &str = ".1.3.6.1.4.1.9586.100.5.2";
/// VRRP-MIB (RFC 2787).
const VRRP_MIB: &str = ".1.3.6.1.2.1.68";
/// VRRPv3-MIB (RFC 6527).
const VRRPV3_MIB: &str = ".1.3.6.1.2.1.207";
/// keepalived's vrrpInstanceStateChange notification.
const STATE_CHANGE: &str = ".1.3.6.1.4.1.9586.100.5.2.10.0.2";
/// vrrpInstanceState, as the notification carries it (without an index).
const TRAP_STATE: &str = ".1.3.6.1.4.1.9586.100.5.2.3.1.4 = INTEGER: ";
/// RFC 6527's vrrpv3NotifyNewMaster.
const V3_NEW_MASTER: &str = ".1.3.6.1.2.1.207.0.1";

/// The states (KEEPALIVED-MIB's VrrpState) of the vrrpInstanceStateChange notifications
/// `snmp` received for `name`, in order.
fn state_changes(snmp: &Snmp, name: &str) -> Vec<u32> {
    snmp.traps()
        .iter()
        .filter(|l| l.contains(STATE_CHANGE) && l.contains(&format!("\"{name}\"")))
        .filter_map(|l| {
            let at = l.find(TRAP_STATE)? + TRAP_STATE.len();
            l[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        })
        .collect()
}

/// Whether `seq` holds `wanted` in order (not necessarily next to each other).
fn in_order(seq: &[u32], wanted: &[u32]) -> bool {
    let mut it = seq.iter();
    wanted.iter().all(|w| it.any(|s| s == w))
}

const SNMP_GLOBALS: &str = "  enable_snmp_vrrp\n  enable_snmp_rfcv3\n  enable_traps\n";

#[test]
fn snmpwalk_shows_the_instance_and_its_state_changes_send_traps() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 41, 2);
    let snmp = Snmp::start(&lab, &r[0], "r1");
    let vi = |priority| {
        instance("VI_1", 41, priority, ADVERT_TEXT, &["10.41.0.100/24", "10.41.0.101"], "  version 3\n")
    };
    let r1 = config("r1", &format!("{SNMP_GLOBALS}{}", snmp.global()), &[vi(100)]);
    let mut lbd1 = start_lbd(&mut lab, &r[0], "lbd1", &r1);

    // Alone, r1 takes over: the walk shows it as keepalived shows its instances.
    let entry = |column: u32| format!("{KEEPALIVED_VRRP}.3.1.{column}.1");
    snmp.wait_value(KEEPALIVED_VRRP, &entry(4), "INTEGER: 2", Duration::from_secs(10));
    assert_eq!(snmp.value(KEEPALIVED_VRRP, &entry(2)).as_deref(), Some("STRING: \"VI_1\""));
    assert_eq!(snmp.value(KEEPALIVED_VRRP, &entry(3)).as_deref(), Some("Gauge32: 41"));
    assert_eq!(snmp.value(KEEPALIVED_VRRP, &entry(7)).as_deref(), Some("INTEGER: 100"));
    assert_eq!(snmp.value(KEEPALIVED_VRRP, &entry(10)).as_deref(), Some("STRING: \"eth0\""));
    assert_eq!(snmp.value(KEEPALIVED_VRRP, &entry(30)).as_deref(), Some("INTEGER: 3"));
    // vrrpAddressTable: the VIPs, with their masks.
    let address = |column: u32, n: u32| format!("{KEEPALIVED_VRRP}.6.1.{column}.1.{n}");
    assert_eq!(snmp.value(KEEPALIVED_VRRP, &address(3, 1)).as_deref(), Some("Hex-STRING: 0A 29 00 64"));
    assert_eq!(snmp.value(KEEPALIVED_VRRP, &address(5, 1)).as_deref(), Some("Gauge32: 24"));
    assert_eq!(snmp.value(KEEPALIVED_VRRP, &address(3, 2)).as_deref(), Some("Hex-STRING: 0A 29 00 65"));
    assert_eq!(snmp.value(KEEPALIVED_VRRP, &address(5, 2)).as_deref(), Some("Gauge32: 32"));
    // VRRPv3-MIB, indexed by (ifIndex, VRID, IPv4): master(3), itself the master.
    let ifindex = r[0].ip(&["-o", "link", "show", "eth0"]).split(':').next().unwrap().trim().to_string();
    let v3 = |column: u32| format!("{VRRPV3_MIB}.1.1.1.1.{column}.{ifindex}.41.1");
    assert_eq!(snmp.value(VRRPV3_MIB, &v3(6)).as_deref(), Some("INTEGER: 3"));
    assert_eq!(snmp.value(VRRPV3_MIB, &v3(3)).as_deref(), Some("Hex-STRING: 0A 29 00 01"));
    assert_eq!(snmp.value(VRRPV3_MIB, &v3(8)).as_deref(), Some("INTEGER: 2"));
    let assoc = format!("{VRRPV3_MIB}.1.1.2.1.2.{ifindex}.41.1.10.41.0.100");
    assert_eq!(snmp.value(VRRPV3_MIB, &assoc).as_deref(), Some("INTEGER: 1"));
    // enable_snmp_rfcv2 is off: nothing under VRRP-MIB.
    let under = |subtree: &str, l: &String| l.starts_with(&format!("{subtree}."));
    assert!(snmp.walk(VRRP_MIB).iter().all(|l| !under(VRRP_MIB, l)), "{:?}", snmp.walk(VRRP_MIB));
    wait_until(Duration::from_secs(5), "the takeover's notifications", || {
        in_order(&state_changes(&snmp, "VI_1"), &[2])
            && snmp.traps().iter().any(|l| l.contains(V3_NEW_MASTER) && l.contains(&v3(3)))
    });

    // snmpd restarts: lbd opens a new session and registers again.
    let mut snmp = snmp;
    snmp.restart_snmpd();
    snmp.wait_value(KEEPALIVED_VRRP, &entry(2), "STRING: \"VI_1\"", Duration::from_secs(10));

    // A higher-priority peer: r1 goes back to BACKUP, and says so.
    let mut lbd2 = start_lbd(&mut lab, &r[1], "lbd2", &config("r2", "", &[vi(200)]));
    snmp.wait_value(KEEPALIVED_VRRP, &entry(4), "INTEGER: 1", Duration::from_secs(5));
    assert_eq!(snmp.value(VRRPV3_MIB, &v3(6)).as_deref(), Some("INTEGER: 2"));
    // The master is now r2.
    assert_eq!(snmp.value(VRRPV3_MIB, &v3(3)).as_deref(), Some("Hex-STRING: 0A 29 00 02"));
    wait_until(Duration::from_secs(5), "the notification of BACKUP", || {
        in_order(&state_changes(&snmp, "VI_1"), &[2, 1])
    });

    // r2 stops: r1 takes over again.
    terminate(&mut lbd2, "lbd2");
    snmp.wait_value(KEEPALIVED_VRRP, &entry(4), "INTEGER: 2", Duration::from_secs(5));
    wait_until(Duration::from_secs(5), "the notification of MASTER again", || {
        in_order(&state_changes(&snmp, "VI_1"), &[2, 1, 2])
    });

    // An orderly stop: shutdown(5), as keepalived.
    terminate(&mut lbd1, "lbd1");
    wait_until(Duration::from_secs(5), "the shutdown notification", || {
        in_order(&state_changes(&snmp, "VI_1"), &[2, 1, 2, 5])
    });
    // Every change once, from the start's BACKUP: none missed, none twice.
    std::thread::sleep(Duration::from_millis(200));
    let notifications = snmp.traps().join("\n");
    assert_eq!(state_changes(&snmp, "VI_1"), [1, 2, 1, 2, 5], "{notifications}");
    eprintln!("notifications received:\n{notifications}");
}

/// Real keepalived and lbd, one after the other in the same namespace (same interface, same
/// index) with the same configuration, both MASTER: every OID keepalived answers under the
/// VRRP MIBs, lbd answers with the same type and value; and nothing more.
#[test]
fn lbd_answers_the_oids_keepalived_answers() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 42, 1);
    let snmp = Snmp::start(&lab, &r[0], "r1");
    r[0].addr("eth0", "fd42::1/64");
    let globals = format!("  enable_snmp_vrrp\n  enable_snmp_rfc\n  enable_traps\n{}", snmp.global());
    let blocks = [
        instance("VI_1", 42, 150, "1", &["10.42.0.100/24", "10.42.0.101"], ""),
        instance("VI_6", 43, 100, "1", &["fd42::100/64"], "  version 3\n"),
        instance(
            "VI_2",
            44,
            120,
            "2",
            &["10.42.0.102/24 brd 10.42.0.255 scope link label eth0:vip"],
            "  authentication {\n    auth_type PASS\n    auth_pass secret\n  }\n  notify_master /bin/true\n  \
             preempt_delay 3\n  garp_master_delay 2\n",
        ),
        "vrrp_sync_group G1 {\n  group {\n    VI_2\n  }\n  notify_backup /bin/true\n}\n".to_string(),
    ];
    let conf = config("WALK", &globals, &blocks);
    let subtrees = [KEEPALIVED_GLOBAL, KEEPALIVED_VRRP, VRRP_MIB, VRRPV3_MIB];
    let walk_all = || -> Vec<String> { comparable(subtrees.iter().flat_map(|s| snmp.walk(s)).collect()) };
    let both_master = |label: &str| {
        for i in [1, 2, 3] {
            snmp.wait_value(
                KEEPALIVED_VRRP,
                &format!("{KEEPALIVED_VRRP}.3.1.4.{i}"),
                "INTEGER: 2",
                Duration::from_secs(15),
            );
        }
        eprintln!("{label}: both instances MASTER");
    };

    let mut keepalived = start_keepalived(&lab, &r[0], "keepalived", &conf);
    both_master("keepalived");
    let theirs = walk_all();
    terminate(&mut keepalived, "keepalived");
    drop(keepalived);
    // Its session is gone from snmpd before lbd registers the same subtrees.
    wait_until(Duration::from_secs(5), "keepalived's subtrees to go", || {
        snmp.walk(KEEPALIVED_VRRP).iter().all(|l| !l.starts_with(&format!("{KEEPALIVED_VRRP}.")))
    });

    std::thread::sleep(Duration::from_millis(300));
    let keepalived_traps = notifications(&snmp.traps());

    let mut lbd = start_lbd(&mut lab, &r[0], "lbd", &conf);
    both_master("lbd");
    let ours = walk_all();
    terminate(&mut lbd, "lbd");
    std::thread::sleep(Duration::from_millis(300));
    let lbd_traps: Vec<String> =
        notifications(&snmp.traps()).into_iter().skip(keepalived_traps.len()).collect();
    assert!(keepalived_traps.len() >= 9, "keepalived sent too few notifications: {keepalived_traps:#?}");
    eprintln!("{} notifications each, e.g. {:?}", lbd_traps.len(), lbd_traps.first());
    // The same notifications, from start to stop (their order between instances aside).
    let (mut theirs_sorted, mut ours_sorted) = (keepalived_traps.clone(), lbd_traps.clone());
    theirs_sorted.sort();
    ours_sorted.sort();
    assert_eq!(
        ours_sorted, theirs_sorted,
        "keepalived sent:\n{keepalived_traps:#?}\nlbd sent:\n{lbd_traps:#?}"
    );

    // What keepalived 2.2.7 gets wrong, which lbd does not copy (lb-daemon/src/snmp/mib.rs):
    // - vrrpAddressAdvertising: notAdvertised(2) for the addresses of every instance after the
    //   first (VI_6's and VI_2's), though they are in the adverts;
    // - vrrpAddressStatus: unset(2) for VI_2's address (the one with brd, scope and label),
    //   though it is on the interface;
    // - vrrpOperTable and vrrpRouterStatsTable list only the first VRRPv2 instance of the
    //   interface (VI_1), not VI_2 (VRID 44).
    let ifindex = r[0].ip(&["-o", "link", "show", "eth0"]).split(':').next().unwrap().trim().to_string();
    let v2_second = [format!("{VRRP_MIB}.1.3.1."), format!("{VRRP_MIB}.2.4.1.")];
    let known = |l: &String| {
        let (oid, _) = l.split_once(" = ").unwrap_or((l, ""));
        oid.starts_with(&format!("{KEEPALIVED_VRRP}.6.1.11.2."))
            || oid.starts_with(&format!("{KEEPALIVED_VRRP}.6.1.11.3."))
            || oid == format!("{KEEPALIVED_VRRP}.6.1.10.3.1")
            || v2_second
                .iter()
                .any(|p| oid.starts_with(p.as_str()) && oid.ends_with(&format!(".{ifindex}.44")))
    };
    let (theirs, ours): (Vec<String>, Vec<String>) = (
        theirs.into_iter().filter(|l| !known(l)).collect(),
        ours.into_iter().filter(|l| !known(l)).collect(),
    );
    std::fs::write(lab.dir().join("walk-keepalived.txt"), theirs.join("\n")).unwrap();
    std::fs::write(lab.dir().join("walk-lbd.txt"), ours.join("\n")).unwrap();
    let missing: Vec<&String> = theirs.iter().filter(|l| !ours.contains(l)).collect();
    let extra: Vec<&String> = ours.iter().filter(|l| !theirs.contains(l)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "keepalived answered, lbd did not (or otherwise): {missing:#?}\nlbd answered, keepalived did not: {extra:#?}"
    );
    assert!(theirs.len() > 100, "keepalived's walk is too short to compare: {theirs:#?}");
}
