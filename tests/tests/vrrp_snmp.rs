//! lbd's SNMP (AgentX subagent) against net-snmp: an snmpd master agent and an snmptrapd in
//! the router's namespace (on a Unix socket in the lab's directory and the namespace's
//! loopback), snmpwalk reading KEEPALIVED-MIB, VRRP-MIB and VRRPv3-MIB as operators do, and
//! the notifications a state change sends; then the same walk of real keepalived 2.2.7 with
//! the same configuration, OID for OID.
//!
//! snmpd, snmpwalk and snmptrapd come from Debian's `snmpd`, `snmp` and `snmptrapd` packages
//! (`cargo xtask setup`): without them the tests fail, saying so.
#![expect(clippy::unwrap_used, reason = "tests: a failed step is a failed test")]

mod vrrp_kit;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use lb_tests::{
    lab::{Lab, Netns, wait_until},
    process::Proc,
};
use vrrp_kit::{ADVERT_TEXT, config, instance, lan, start_keepalived, start_lbd, terminate};

/// KEEPALIVED-MIB's VRRP part.
const KEEPALIVED_VRRP: &str = ".1.3.6.1.4.1.9586.100.5.2";
/// KEEPALIVED-MIB's global scalars.
const KEEPALIVED_GLOBAL: &str = ".1.3.6.1.4.1.9586.100.5.1";
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

/// Panics, saying what to install, unless net-snmp's programs are there.
fn require_net_snmp() {
    for (program, package) in
        [("/usr/sbin/snmpd", "snmpd"), ("/usr/bin/snmpwalk", "snmp"), ("/usr/sbin/snmptrapd", "snmptrapd")]
    {
        assert!(
            Path::new(program).exists(),
            "{program} is missing: install Debian's {package} package (`cargo xtask setup` does)"
        );
    }
}

/// An snmpd master agent (AgentX on a Unix socket in the lab's directory, SNMP on the
/// namespace's loopback) and an snmptrapd it sends its notifications to.
struct Snmp {
    ns: Netns,
    dir: PathBuf,
    snmpd_conf: PathBuf,
    socket: PathBuf,
    traps: PathBuf,
    snmpd: Proc,
    _trapd: Proc,
}

/// snmpd in the foreground, its persistent files in `dir`, no MIB files read.
fn spawn_snmpd(ns: &Netns, dir: &Path, conf: &Path) -> Proc {
    let persistent = format!("SNMP_PERSISTENT_DIR={}", dir.display());
    let conf = conf.display().to_string();
    ns.spawn("snmpd", "env", &[&persistent, "snmpd", "-f", "-m", "", "-Lo", "-C", "-c", &conf])
}

impl Snmp {
    fn start(lab: &Lab, ns: &Netns, label: &str) -> Self {
        require_net_snmp();
        let dir = lab.dir().join(format!("{label}-snmp"));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("agentx");
        let traps = dir.join("traps.log");
        let snmpd_conf = lab.write_file(
            &format!("{label}-snmpd.conf"),
            &format!(
                "master agentx\nagentXSocket unix:{}\nagentaddress udp:127.0.0.1:1161\n\
                 rocommunity public 127.0.0.1\ntrap2sink 127.0.0.1:1162 public\n",
                socket.display()
            ),
        );
        let trapd_conf = lab.write_file(&format!("{label}-snmptrapd.conf"), "disableAuthorization yes\n");
        let persistent = format!("SNMP_PERSISTENT_DIR={}", dir.display());
        let (traps_s, trapd_conf_s) = (traps.display().to_string(), trapd_conf.display().to_string());
        // -On: numeric OIDs in the trap log; -m "": no MIB files read.
        let trapd = ns.spawn(
            "snmptrapd",
            "env",
            &[
                &persistent,
                "snmptrapd",
                "-f",
                "-m",
                "",
                "-On",
                "-Lf",
                &traps_s,
                "-C",
                "-c",
                &trapd_conf_s,
                "udp:127.0.0.1:1162",
            ],
        );
        let snmpd = spawn_snmpd(ns, &dir, &snmpd_conf);
        wait_until(Duration::from_secs(10), "snmpd's AgentX socket", || socket.exists());
        wait_until(Duration::from_secs(10), "snmptrapd to start", || {
            std::fs::read_to_string(&traps).is_ok_and(|t| t.contains("NET-SNMP version"))
        });
        Self { ns: ns.clone(), dir, snmpd_conf, socket, traps, snmpd, _trapd: trapd }
    }

    /// Kills snmpd and starts it again (its AgentX sessions are gone).
    fn restart_snmpd(&mut self) {
        self.snmpd.kill();
        self.snmpd = spawn_snmpd(&self.ns, &self.dir, &self.snmpd_conf);
    }

    /// `snmp_socket` for it.
    fn global(&self) -> String {
        format!("  snmp_socket unix:{}\n", self.socket.display())
    }

    /// `snmpwalk -On` of `subtree`: its lines.
    fn walk(&self, subtree: &str) -> Vec<String> {
        self.try_walk(subtree).unwrap_or_else(|e| panic!("snmpwalk {subtree}: {e}"))
    }

    /// As [`Snmp::walk`], or snmpwalk's error (snmpd not answering).
    fn try_walk(&self, subtree: &str) -> Result<Vec<String>, String> {
        let out = self.ns.exec(
            "snmpwalk",
            &["-m", "", "-On", "-v2c", "-c", "public", "-t", "1", "-r", "0", "127.0.0.1:1161", subtree],
        );
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim_end().to_string()).collect())
    }

    /// The value of `oid` in a walk of `subtree`, if it is there.
    fn value(&self, subtree: &str, oid: &str) -> Option<String> {
        let prefix = format!("{oid} = ");
        self.walk(subtree).into_iter().find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
    }

    /// Waits until `oid` reads `value`.
    fn wait_value(&self, subtree: &str, oid: &str, value: &str, timeout: Duration) {
        // snmpd may be restarting: a walk that fails is tried again.
        let line = format!("{oid} = {value}");
        wait_until(timeout, &line, || self.try_walk(subtree).is_ok_and(|lines| lines.contains(&line)));
    }

    /// The notifications received, one line each.
    fn traps(&self) -> Vec<String> {
        std::fs::read_to_string(&self.traps).unwrap_or_default().lines().map(str::to_string).collect()
    }

    /// The states (KEEPALIVED-MIB's VrrpState) of the vrrpInstanceStateChange notifications
    /// received for `name`, in order.
    fn state_changes(&self, name: &str) -> Vec<u32> {
        self.traps()
            .iter()
            .filter(|l| l.contains(STATE_CHANGE) && l.contains(&format!("\"{name}\"")))
            .filter_map(|l| {
                let at = l.find(TRAP_STATE)? + TRAP_STATE.len();
                l[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
            })
            .collect()
    }
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
        in_order(&snmp.state_changes("VI_1"), &[2])
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
        in_order(&snmp.state_changes("VI_1"), &[2, 1])
    });

    // r2 stops: r1 takes over again.
    terminate(&mut lbd2, "lbd2");
    snmp.wait_value(KEEPALIVED_VRRP, &entry(4), "INTEGER: 2", Duration::from_secs(5));
    wait_until(Duration::from_secs(5), "the notification of MASTER again", || {
        in_order(&snmp.state_changes("VI_1"), &[2, 1, 2])
    });

    // An orderly stop: shutdown(5), as keepalived.
    terminate(&mut lbd1, "lbd1");
    wait_until(Duration::from_secs(5), "the shutdown notification", || {
        in_order(&snmp.state_changes("VI_1"), &[2, 1, 2, 5])
    });
    // Every change once, from the start's BACKUP: none missed, none twice.
    std::thread::sleep(Duration::from_millis(200));
    let notifications = snmp.traps().join("\n");
    assert_eq!(snmp.state_changes("VI_1"), [1, 2, 1, 2, 5], "{notifications}");
    eprintln!("notifications received:\n{notifications}");
}

/// The notifications in snmptrapd's log, each as its varbinds after `sysUpTime.0`.
fn notifications(log: &[String]) -> Vec<String> {
    log.iter()
        .filter_map(|l| l.strip_prefix(".1.3.6.1.2.1.1.3.0 = "))
        .filter_map(|l| l.split_once('\t').map(|(_, rest)| rest.trim_end().to_string()))
        // snmpd's own coldStart.
        .filter(|l| !l.contains(".1.3.6.1.6.3.1.1.5.1"))
        .collect()
}

/// The lines of a walk with what differs between two daemons' runs blanked: up times and
/// counters, and keepalived's version string.
fn comparable(lines: Vec<String>) -> Vec<String> {
    lines
        .into_iter()
        .map(|l| match l.split_once(" = ") {
            Some((oid, v)) if v.starts_with("Timeticks") || v.starts_with("Counter") => {
                format!("{oid} = (varies)")
            }
            Some((oid, _)) if oid == format!("{KEEPALIVED_GLOBAL}.1.0") => format!("{oid} = (version)"),
            _ => l,
        })
        .collect()
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
