//! The checker child's SNMP (`enable_snmp_checker`) against net-snmp: snmpd as AgentX master
//! and snmptrapd in the load balancer's namespace, a virtual server with one real server
//! listening and one on a closed port, and a group virtual server with a sorry server;
//! snmpwalk shows KEEPALIVED-MIB's virtualServerTable / realServerTable with each real
//! server's status, which follows a real server killed and started again, with
//! realServerStateChange and virtualServerQuorumStateChange notifications. The same steps run
//! first with real keepalived 2.2.7's checker (under `tests/bench/ipvs-shim.c`, this kernel
//! having no IPVS), and lbd must answer the same OIDs with the same types and values, and
//! send the same notifications, the IPVS counter columns lbd leaves out aside
//! (`lb-daemon/src/snmp/checker.rs`); requests through the VIP show in lbd's counters.
//!
//! ```text
//!  client 10.30.0.2 ── [front] ── 10.30.0.1 lb 10.31.0.1 ── [back] ── r1 10.31.0.11 (web on 8080, killed and restarted)
//!                         └─ r2 10.31.0.12 (nothing on 8080)
//!  VS 10.40.0.100:80 (r1 weight 2, r2 inhibit_on_failure), VS group G1 (r1, sorry 10.31.0.19)
//! ```
#![expect(clippy::unwrap_used, reason = "tests: a failed step is a failed test")]

mod snmp_kit;
mod vrrp_kit;

use std::time::Duration;

use lb_tests::{
    bins,
    lab::{Lab, LbHosts, Netns, wait_until},
    process::Proc,
};
use snmp_kit::{KEEPALIVED_GLOBAL, Snmp, comparable, notifications};
use vrrp_kit::{spawn_keepalived_env, terminate};

/// KEEPALIVED-MIB's checker part.
const CHECK: &str = ".1.3.6.1.4.1.9586.100.5.3";

/// How long a real server's death or recovery may take to show (delay_loop 2, a retry of 1
/// s, a loaded machine).
const CHANGE: Duration = Duration::from_secs(20);

fn config(snmp: &Snmp) -> String {
    format!(
        "global_defs {{
  router_id SNMPCHK
  enable_snmp_checker
  enable_traps
{}}}
virtual_server_group G1 {{
  10.40.0.101 80
  10.40.0.110-112 80
}}
virtual_server 10.40.0.100 80 {{
  delay_loop 1
  lb_algo wrr
  lb_kind NAT
  protocol TCP
  persistence_timeout 50
  quorum 2
  virtualhost www.example.com
  quorum_up /bin/true
  real_server 10.31.0.11 8080 {{
    weight 2
    notify_down /bin/true
    TCP_CHECK {{
      connect_timeout 1
    }}
  }}
  real_server 10.31.0.12 8080 {{
    weight 1
    inhibit_on_failure
    TCP_CHECK {{
      connect_timeout 1
      retry 0
    }}
  }}
}}
virtual_server group G1 {{
  delay_loop 2
  lb_algo rr
  lb_kind NAT
  protocol TCP
  sorry_server 10.31.0.19 8080
  real_server 10.31.0.11 8080 {{
    TCP_CHECK {{
      connect_timeout 1
    }}
  }}
}}
",
        snmp.global()
    )
}

/// realServerStatus of real server `r` of virtual server `v`.
fn status(v: u32, r: u32) -> String {
    format!("{CHECK}.4.1.6.{v}.{r}")
}

/// virtualServerQuorumStatus of virtual server `v`.
fn quorum(v: u32) -> String {
    format!("{CHECK}.3.1.23.{v}")
}

/// Whether a walk's line is one of the columns keepalived reads from IPVS's counters that lbd
/// leaves out (the reply direction, inactive and persistent connections, rates).
fn left_out(line: &str) -> bool {
    use lb_daemon::snmp::checker::{LEFT_OUT_RS, LEFT_OUT_VS};
    let column = |table: &str| -> Option<u32> {
        line.strip_prefix(&format!("{CHECK}.{table}.1."))?.split('.').next()?.parse().ok()
    };
    column("3").is_some_and(|c| LEFT_OUT_VS.contains(&c))
        || column("4").is_some_and(|c| LEFT_OUT_RS.contains(&c))
}

/// The number an snmpwalk value line ends with (`Gauge32: 3`), 0 if none.
fn count(value: Option<String>) -> u64 {
    value.and_then(|v| v.rsplit(' ').next().and_then(|n| n.parse().ok())).unwrap_or(0)
}

/// What one daemon shows: the walks with every real server checked once, and after r1's
/// death; the notifications from its start to its stop.
struct Seen {
    walk: Vec<String>,
    walk_dead: Vec<String>,
    traps: Vec<String>,
}

fn walk_all(snmp: &Snmp) -> Vec<String> {
    comparable([KEEPALIVED_GLOBAL, CHECK].iter().flat_map(|s| snmp.walk(s)).collect())
}

/// Runs one daemon through the steps: started with r1's web server up and nothing on r2's
/// port, r1's server killed, then started again, then the daemon stopped. With a `client`,
/// requests through the first VIP (after the walk) must show in the counters.
fn steps(
    snmp: &Snmp,
    r1: &Netns,
    web: &mut Proc,
    client: Option<&Netns>,
    start: impl FnOnce() -> Proc,
    label: &str,
) -> Seen {
    let before = notifications(&snmp.traps()).len();
    let mut daemon = start();
    // r2 found dead (retry 0), r1 alive in both virtual servers (the group's sorry server is 1).
    snmp.wait_value(CHECK, &status(1, 2), "INTEGER: 2", CHANGE);
    snmp.wait_value(CHECK, &status(1, 1), "INTEGER: 1", CHANGE);
    snmp.wait_value(CHECK, &status(2, 2), "INTEGER: 1", CHANGE);
    // The group's checker (delay_loop 2) has probed once.
    std::thread::sleep(Duration::from_secs(3));
    let walk = walk_all(snmp);
    eprintln!("{label}: {} lines under {CHECK} and {KEEPALIVED_GLOBAL}", walk.len());
    if let Some(client) = client {
        // Three requests through the VIP reach r1 (r2 is dead): the virtual server's and r1's
        // connections and packets count them (the data plane's counters, read every second).
        for _ in 0..3 {
            let out = client.exec("curl", &["-sS", "--max-time", "3", "http://10.40.0.100/"]);
            assert!(
                out.status.success(),
                "request: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                daemon.log()
            );
        }
        let (vs_conns, rs_conns, rs_packets) =
            (format!("{CHECK}.3.1.27.1"), format!("{CHECK}.4.1.14.1.1"), format!("{CHECK}.4.1.28.1.1"));
        wait_until(Duration::from_secs(5), "the counters to show the requests", || {
            count(snmp.value(CHECK, &vs_conns)) >= 3 && count(snmp.value(CHECK, &rs_conns)) >= 3
        });
        assert!(count(snmp.value(CHECK, &rs_packets)) >= 9, "{:?}", snmp.value(CHECK, &rs_packets));
        assert_eq!(count(snmp.value(CHECK, &format!("{CHECK}.4.1.14.1.2"))), 0, "r2 is dead: no connection");
        eprintln!(
            "{label}: the requests through the VIP show in virtualServerStatsConns and realServerStatsConns"
        );
    }

    web.kill();
    snmp.wait_value(CHECK, &status(1, 1), "INTEGER: 2", CHANGE);
    snmp.wait_value(CHECK, &status(2, 2), "INTEGER: 2", CHANGE);
    snmp.wait_value(CHECK, &quorum(1), "INTEGER: 2", CHANGE);
    snmp.wait_value(CHECK, &quorum(2), "INTEGER: 2", CHANGE);
    let walk_dead = walk_all(snmp);
    eprintln!("{label}: r1 is dead, both quorums lost");

    *web = r1.spawn("web", bins::web(), &["r1", "0.0.0.0:8080"]);
    snmp.wait_value(CHECK, &status(1, 1), "INTEGER: 1", CHANGE);
    snmp.wait_value(CHECK, &status(2, 2), "INTEGER: 1", CHANGE);
    snmp.wait_value(CHECK, &quorum(1), "INTEGER: 1", CHANGE);
    snmp.wait_value(CHECK, &quorum(2), "INTEGER: 1", CHANGE);
    eprintln!("{label}: r1 is back, both quorums met");

    terminate(&mut daemon, label);
    // Its session is gone from snmpd before the next daemon registers the same subtrees.
    wait_until(Duration::from_secs(5), "the daemon's subtrees to go", || {
        snmp.walk(CHECK).iter().all(|l| !l.starts_with(&format!("{CHECK}.")))
    });
    std::thread::sleep(Duration::from_millis(300));
    let traps = notifications(&snmp.traps()).into_iter().skip(before).collect();
    Seen { walk, walk_dead, traps }
}

/// Whether a walk's line is one of the counter columns lbd serves from its data plane.
fn served_counter(line: &str) -> bool {
    let column = |table: &str| -> Option<u32> {
        line.strip_prefix(&format!("{CHECK}.{table}.1."))?.split('.').next()?.parse().ok()
    };
    column("3").is_some_and(|c| [27, 28, 30, 38, 39].contains(&c))
        || column("4").is_some_and(|c| [14, 15, 18, 20, 27, 28].contains(&c))
}

/// keepalived's walk without the IPVS counter columns lbd leaves out, and lbd's, line for line;
/// with `traffic` (lbd forwarded requests, keepalived's shim did not), the counters' values
/// aside.
fn assert_same_walk(theirs: &[String], ours: &[String], traffic: bool, what: &str) {
    let blank = |l: &String| match l.split_once(" = ") {
        Some((oid, _)) if traffic && served_counter(l) => format!("{oid} = (counter)"),
        _ => l.clone(),
    };
    let theirs: Vec<String> = theirs.iter().filter(|l| !left_out(l)).map(blank).collect();
    let ours: Vec<String> = ours.iter().map(blank).collect();
    let missing: Vec<&String> = theirs.iter().filter(|l| !ours.contains(l)).collect();
    let extra: Vec<&String> = ours.iter().filter(|l| !theirs.contains(l)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: keepalived answered, lbd did not (or otherwise): {missing:#?}\nlbd answered, keepalived did not: {extra:#?}"
    );
    assert!(theirs.len() > 100, "{what}: keepalived's walk is too short to compare: {theirs:#?}");
}

#[test]
fn lbd_answers_the_checker_oids_keepalived_answers_and_follows_the_real_servers() {
    let mut lab = Lab::new();
    let LbHosts { lb, reals, switch: _switch, client } = lab.lb_hosts(2).with_addresses();
    let snmp = Snmp::start(&lab, &lb, "lb");
    let conf = config(&snmp);
    let mut web = reals[0].spawn("web", bins::web(), &["r1", "0.0.0.0:8080"]);
    wait_until(Duration::from_secs(10), "r1's web server", || {
        reals[0].exec("bash", &["-c", "exec 3<>/dev/tcp/10.31.0.11/8080"]).status.success()
    });

    let shim = bins::ipvs_shim(lab.dir()).unwrap();
    let preload = format!("LD_PRELOAD={}", shim.display());
    let keepalived = steps(
        &snmp,
        &reals[0],
        &mut web,
        None,
        || spawn_keepalived_env(&lab, &lb, "keepalived", &conf, &[&preload], &["-C"]),
        "keepalived",
    );

    let lbd_conf = lab.write_file("lbd.conf", &conf);
    let pin = lab.bpffs().join("lbd");
    let lbd = steps(
        &snmp,
        &reals[0],
        &mut web,
        Some(&client),
        || bins::spawn_lbd(&lab, &lb, "lbd", &lbd_conf, &pin, &[]),
        "lbd",
    );

    std::fs::write(lab.dir().join("walk-keepalived.txt"), keepalived.walk.join("\n")).unwrap();
    std::fs::write(lab.dir().join("walk-lbd.txt"), lbd.walk.join("\n")).unwrap();
    assert_same_walk(&keepalived.walk, &lbd.walk, false, "r2 dead");
    assert_same_walk(&keepalived.walk_dead, &lbd.walk_dead, true, "r1 and r2 dead");
    // r2's row as operators read it: dead, one failed check, inhibited (kept with weight 0).
    for (column, value) in [(6, "INTEGER: 2"), (7, "INTEGER: 1"), (10, "INTEGER: 2"), (13, "Gauge32: 1")] {
        let line = format!("{CHECK}.4.1.{column}.1.2 = {value}");
        assert!(lbd.walk.contains(&line), "{line} not in {:#?}", lbd.walk);
    }

    // The same notifications from start to stop: each virtual server's quorum at start, r2's
    // death, r1's death and recovery in both virtual servers with the quorums they cost, and
    // shutdown(3) for each at stop (their order between virtual servers aside).
    let (mut theirs, mut ours) = (keepalived.traps.clone(), lbd.traps.clone());
    theirs.sort();
    ours.sort();
    assert_eq!(ours, theirs, "keepalived sent:\n{:#?}\nlbd sent:\n{:#?}", keepalived.traps, lbd.traps);
    let state_changes = lbd.traps.iter().filter(|t| t.contains(&format!("{CHECK}.5.0.1"))).count();
    assert!(state_changes >= 5, "too few realServerStateChange notifications: {:#?}", lbd.traps);
    eprintln!("{} notifications each, e.g. {:?}", lbd.traps.len(), lbd.traps.first());
}
