//! lbd as operators run it: restarts that keep established flows (`-I`, kill -9), SIGHUP
//! reloads that change only what differs and refuse a broken configuration, the signal dumps,
//! pid files, and an orderly stop that removes everything.
//!
//! ```text
//!  client 10.50.0.2 ── [front] ── 10.50.0.1 lb 10.51.0.1 ── [back] ── r1 .11  r2 .12  r3 .13
//!  VIP 10.60.0.100:80 (NAT, rr); the client routes 10.60.0.0/24 via the lb.
//! ```
#![expect(clippy::unwrap_used, reason = "tests: a failed step is a failed test")]

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::Duration,
};

use lb_tests::{
    bins,
    lab::{Lab, LbHosts, Netns, wait_until},
    process::Proc,
};
use nix::sys::signal::Signal;

const VIP: &str = "10.60.0.100";

/// A NAT virtual server over the real servers `reals` (numbers 1 to 3), with `vrrp` VRRP
/// instances (VI_1, VI_2, ...) on the front interface.
fn config(reals: &[u8], vrrp: u8) -> String {
    let mut text = String::from("global_defs {\n    router_id lbt-daemon\n}\n");
    for i in 1..=vrrp {
        text.push_str(&format!(
            "vrrp_instance VI_{i} {{\n    interface eth0\n    virtual_router_id 6{i}\n    priority 150\n    \
             advert_int 0.2\n    version 3\n    virtual_ipaddress {{\n        10.50.0.5{i}/24\n    }}\n}}\n",
        ));
    }
    text.push_str(&format!(
        "virtual_server {VIP} 80 {{\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n"
    ));
    for r in reals {
        text.push_str(&format!("    real_server 10.51.0.1{r} 8080 {{\n    }}\n"));
    }
    text.push_str("}\n");
    text
}

struct Topology {
    lab: Lab,
    client: Netns,
    lb: Netns,
    reals: Vec<(Netns, Proc)>,
    pin_dir: PathBuf,
    _switch: Netns,
}

fn topology() -> Topology {
    let mut lab = Lab::new();
    let LbHosts { switch, client, lb, reals: hosts } = lab.lb_hosts(3);
    client.addr("eth0", "10.50.0.2/24");
    client.ip(&["route", "add", "10.60.0.0/24", "via", "10.50.0.1"]);
    lb.addr("eth0", "10.50.0.1/24");
    lb.addr("eth1", "10.51.0.1/24");
    let mut reals = Vec::new();
    for (i, ns) in (1..).zip(hosts) {
        let name = format!("r{i}");
        ns.addr("eth0", &format!("10.51.0.1{i}/24"));
        ns.ip(&["route", "add", "default", "via", "10.51.0.1"]);
        let server = ns.spawn("web", bins::web(), &[&name, "0.0.0.0:8080"]);
        reals.push((ns, server));
    }
    let pin_dir = lab.bpffs().join("lbd");
    Topology { lab, client, lb, reals, pin_dir, _switch: switch }
}

impl Topology {
    fn start(&self, label: &str, config: &Path, extra: &[&str]) -> Proc {
        let mut lbd = bins::spawn_lbd(&self.lab, &self.lb, label, config, &self.pin_dir, extra);
        wait_until(Duration::from_secs(30), &format!("{label} to program its virtual servers"), || {
            lbd.assert_running();
            lbd.log().contains("data plane:")
        });
        lbd
    }

    fn get(&self, path: &str) -> Result<String, String> {
        let out = self.client.exec("curl", &["-sS", "--max-time", "5", &format!("http://{VIP}{path}")]);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The real servers answering `n` requests.
    fn answering(&self, n: usize, lbd: &Proc) -> BTreeSet<String> {
        (0..n)
            .map(|_| self.get("/").unwrap_or_else(|e| panic!("request failed: {e}\n{}", lbd.log())))
            .collect()
    }

    /// A long transfer (`lines` lines, one per 100 ms) from the client through the VIP.
    fn long_transfer(&self, lines: u32) -> Proc {
        self.long_transfer_named("transfer", lines)
    }

    /// A long transfer, logged under `label` (distinct transfers need distinct logs).
    fn long_transfer_named(&self, label: &str, lines: u32) -> Proc {
        let url = format!("http://{VIP}/slow/{lines}");
        self.client.spawn(label, "curl", &["-sS", "-N", "--max-time", "120", &url])
    }
}

/// Waits for a transfer to end and checks it got every line, in order, from one real server.
fn assert_complete(transfer: &mut Proc, lines: u32, context: &str) {
    let status = transfer.wait(Duration::from_secs(120));
    let log = transfer.log();
    let got: Vec<&str> = log.lines().filter(|l| l.starts_with('r')).collect();
    assert!(
        status.success() && got.len() == lines as usize,
        "{context}: transfer broke ({status:?}):\n{log}"
    );
    let server = got[0].split(' ').next().unwrap();
    for (i, line) in got.iter().enumerate() {
        assert_eq!(*line, format!("{server} {i}"), "{context}: line {i}");
    }
}

/// The status listener's answer to GET `path`.
fn http_get(lb: &Netns, path: &str) -> String {
    lb.http_get(&format!("http://127.0.0.1:{STATUS_PORT}{path}"))
}

/// Port of the status listener, on the lb namespace's loopback.
const STATUS_PORT: u16 = 9110;

fn links_pinned(pin_dir: &Path) -> Vec<String> {
    std::fs::read_dir(pin_dir.join("links"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn restarts_keep_a_long_transfer_flowing() {
    let t = topology();
    let conf = t.lab.write_file("keepalived.conf", &config(&[1, 2, 3], 0));
    let mut lbd = t.start("lbd1", &conf, &["-I"]);
    assert_eq!(t.answering(3, &lbd).len(), 3, "round robin over three real servers");

    let lines = 250;
    let mut transfer = t.long_transfer(lines);
    wait_until(Duration::from_secs(10), "the transfer to start", || transfer.log().contains(" 5"));

    // SIGTERM with -I: the program stays attached and forwards on its own.
    lbd.signal(Signal::SIGTERM);
    assert!(lbd.wait(Duration::from_secs(15)).success(), "{}", lbd.log());
    assert!(lbd.log().contains("-I: the XDP program stays attached"), "{}", lbd.log());
    let mut pinned = links_pinned(&t.pin_dir);
    pinned.sort();
    assert_eq!(pinned, ["eth0", "eth1"], "links stay pinned");
    assert!(t.lb.ip(&["link", "show", "eth0"]).contains("xdp"), "still attached");
    assert_eq!(t.answering(3, &lbd).len(), 3, "new connections are forwarded with no daemon");
    transfer.assert_running();

    // The next daemon adopts the tables and swaps its program into the pinned links.
    let mut lbd = t.start("lbd2", &conf, &["-I"]);
    let log = lbd.log();
    assert!(log.contains("replaced in the link an earlier lbd pinned on eth0"), "{log}");
    assert!(log.contains("adopted 1 virtual services and 3 real servers"), "{log}");
    assert!(log.contains("unchanged"), "nothing to write after adoption: {log}");

    // kill -9: nothing runs at stop, the pinned links keep the program attached.
    lbd.kill();
    assert_eq!(t.answering(3, &lbd).len(), 3);
    let mut lbd = t.start("lbd3", &conf, &[]);
    transfer.assert_running();
    assert_complete(&mut transfer, lines, "across a -I restart and a kill -9 restart");

    // An orderly stop without -I removes the program and every pin.
    lbd.signal(Signal::SIGTERM);
    assert!(lbd.wait(Duration::from_secs(15)).success(), "{}", lbd.log());
    assert!(links_pinned(&t.pin_dir).is_empty());
    assert!(!t.pin_dir.join(lb_common::maps::CONNS).exists());
    assert!(!t.pin_dir.join(lb_common::maps::CONNS4).exists());
    assert!(!t.pin_dir.join(lb_common::maps::PROGS).exists(), "the program array is unpinned too");
    assert!(!t.lb.ip(&["link", "show", "eth0"]).contains("xdp"), "detached");
    assert!(t.get("/").is_err(), "nothing forwards after an orderly stop");
}

/// The pid in the lab's pid file of `label`'s `what` process (`main`, `vrrp`, `checkers`).
fn pid_of(t: &Topology, label: &str, what: &str) -> Option<i32> {
    std::fs::read_to_string(t.lab.dir().join(format!("{label}-{what}.pid"))).ok()?.trim().parse().ok()
}

fn alive(pid: i32) -> bool {
    // A zombie still has a /proc entry; its state says it is dead.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !matches!(stat.rsplit(')').next().and_then(|s| s.split_whitespace().next()), Some("Z"))
    })
}

fn kill9(pid: i32) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();
}

#[test]
fn dead_children_are_respawned_and_traffic_continues() {
    let t = topology();
    let conf = t.lab.write_file("keepalived.conf", &config(&[1, 2, 3], 1));
    let mut lbd = t.start("lbd", &conf, &[]);
    let masters = |lbd: &Proc| lbd.log().matches("(VI_1) Entering MASTER STATE").count();
    wait_until(Duration::from_secs(10), "VI_1 to become master", || masters(&lbd) == 1);
    let lines = 60;
    let mut transfer = t.long_transfer(lines);
    wait_until(Duration::from_secs(10), "the transfer to start", || transfer.log().contains(" 2"));

    // kill -9 of the checker child: the parent starts another at once (keepalived's first
    // delay is 0), which adopts the pinned data plane; the XDP program forwards meanwhile.
    let checker = pid_of(&t, "lbd", "checkers").unwrap();
    kill9(checker);
    // A reload while the new child starts: forwarded, it waits for the child's handlers
    // (blocked until then) instead of killing it.
    std::thread::sleep(Duration::from_millis(5));
    lbd.signal(Signal::SIGHUP);
    assert_eq!(t.answering(6, &lbd).len(), 3, "served while the checker child is down or starting");
    wait_until(Duration::from_secs(15), "a new checker child", || {
        pid_of(&t, "lbd", "checkers").is_some_and(|p| p != checker && alive(p))
            && lbd.log().matches("data plane:").count() >= 2
    });
    let log = lbd.log();
    assert!(log.contains(&format!("pid {checker} exited due to signal 9")), "{log}");
    assert!(log.contains(&format!("Healthcheck child process({checker}) died: Respawning")), "{log}");
    assert!(log.contains("Restart of Healthcheck process delayed 0 seconds"), "{log}");
    assert!(log.contains("adopted 1 virtual services and 3 real servers"), "{log}");
    assert_eq!(t.answering(6, &lbd).len(), 3, "served by the new checker child's data plane");
    assert!(!lbd.log().contains("due to signal 1 "), "a child killed by SIGHUP:\n{}", lbd.log());

    // kill -9 of the VRRP child: respawned, it starts in BACKUP and takes MASTER again.
    let vrrp = pid_of(&t, "lbd", "vrrp").unwrap();
    kill9(vrrp);
    wait_until(Duration::from_secs(15), "the new VRRP child to become master", || masters(&lbd) == 2);
    assert!(lbd.log().contains(&format!("VRRP child process({vrrp}) died: Respawning")), "{}", lbd.log());
    assert!(t.lb.ip(&["-4", "addr", "show", "dev", "eth0"]).contains("10.50.0.51/24"), "VIP held");

    assert_complete(
        &mut transfer,
        lines,
        &format!(
            "across the children's deaths
{}",
            lbd.log()
        ),
    );
    lbd.signal(Signal::SIGTERM);
    assert!(lbd.wait(Duration::from_secs(15)).success(), "{}", lbd.log());
}

#[test]
fn children_follow_what_the_configuration_has() {
    let t = topology();
    // VRRP only: no checker child, so no XDP program on the interfaces.
    let vrrp_only = config(&[], 1).replace(
        &format!("virtual_server {VIP} 80 {{\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n}}\n"),
        "",
    );
    assert!(!vrrp_only.contains("virtual_server"), "{vrrp_only}");
    let conf = t.lab.write_file("keepalived.conf", &vrrp_only);
    let mut lbd = bins::spawn_lbd(&t.lab, &t.lb, "lbd", &conf, &t.pin_dir, &[]);
    wait_until(Duration::from_secs(10), "VI_1 to become master", || {
        lbd.assert_running();
        lbd.log().contains("(VI_1) Entering MASTER STATE")
    });
    assert!(pid_of(&t, "lbd", "checkers").is_none(), "no checker child:\n{}", lbd.log());
    assert!(!t.lb.ip(&["link", "show", "eth0"]).contains("xdp"), "no XDP without virtual servers");

    // A reload that brings virtual servers starts the checker child.
    std::fs::write(&conf, config(&[1, 2, 3], 1)).unwrap();
    lbd.signal(Signal::SIGHUP);
    wait_until(Duration::from_secs(15), "the checker child to program the VIP", || {
        lbd.log().contains("data plane:")
    });
    assert!(pid_of(&t, "lbd", "checkers").is_some_and(alive));
    assert_eq!(t.answering(3, &lbd).len(), 3);

    // One that takes them away stops it: detached, and no respawn.
    std::fs::write(&conf, &vrrp_only).unwrap();
    lbd.signal(Signal::SIGHUP);
    wait_until(Duration::from_secs(15), "the checker child to stop", || {
        pid_of(&t, "lbd", "checkers").is_none()
    });
    assert!(!t.lb.ip(&["link", "show", "eth0"]).contains("xdp"), "detached");
    let log = lbd.log();
    assert!(log.contains("is no longer needed: stopping it"), "{log}");
    assert!(!log.contains("Respawning"), "{log}");
    assert!(
        !log.contains("(VI_1) Entering BACKUP STATE\n") && log.matches("(VI_1) Entering MASTER").count() == 1,
        "{log}"
    );
    lbd.signal(Signal::SIGTERM);
    assert!(lbd.wait(Duration::from_secs(15)).success(), "{}", lbd.log());
}

#[test]
fn changing_a_key_field_recreates_that_virtual_server_only() {
    let t = topology();
    // A second virtual server, on port 81, over the same real servers.
    let second = |algo: &str| {
        format!(
            "virtual_server {VIP} 81 {{\n    lb_algo {algo}\n    lb_kind NAT\n    protocol TCP\n    \
             real_server 10.51.0.11 8080 {{\n    }}\n    real_server 10.51.0.12 8080 {{\n    }}\n}}\n"
        )
    };
    let conf = t.lab.write_file("keepalived.conf", &(config(&[1, 2, 3], 0) + &second("rr")));
    let mut lbd = t.start("lbd", &conf, &[]);
    let lines = 40;
    let mut transfer = t.long_transfer(lines);
    wait_until(Duration::from_secs(10), "the transfer to start", || transfer.log().contains(" 2"));

    // The scheduler of the second one changes (to one of another kind: rr to wrr keeps the
    // data plane's entry as it is, nothing to recreate): it alone is recreated.
    std::fs::write(&conf, config(&[1, 2, 3], 0) + &second("sh")).unwrap();
    lbd.signal(Signal::SIGHUP);
    wait_until(Duration::from_secs(10), "the reload", || lbd.log().contains("Reload finished"));
    let log = lbd.log();
    let report =
        log.lines().rfind(|l| l.contains("services_recreated: 1")).unwrap_or_else(|| panic!("{log}"));
    assert!(report.contains("services_added: 0") && report.contains("services_removed: 0"), "{report}");
    let on_81: BTreeSet<String> = (0..4)
        .map(|_| {
            let out = t.client.exec("curl", &["-sS", "--max-time", "5", &format!("http://{VIP}:81/")]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        })
        .collect();
    // Source hashing: one client, one real server.
    assert!(on_81.len() == 1 && ["r1", "r2"].iter().any(|r| on_81.contains(*r)), "{on_81:?}");
    assert_complete(&mut transfer, lines, &format!("the other virtual server's flow\n{log}"));
    lbd.signal(Signal::SIGTERM);
    assert!(lbd.wait(Duration::from_secs(15)).success(), "{}", lbd.log());
}

#[test]
fn local_addresses_come_and_go_under_an_fnat_transfer() {
    let t = topology();
    for laddr in ["10.51.0.200/24", "10.51.0.201/24"] {
        t.lb.addr("eth1", laddr);
    }
    const FNAT_VIP: &str = "10.60.0.103";
    let fnat = |laddrs: &[&str]| {
        let mut text = config(&[], 0).replace(
            &format!("virtual_server {VIP} 80 {{\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n}}\n"),
            "",
        );
        text.push_str("local_address_group LADDR {\n");
        for l in laddrs {
            text.push_str(&format!("    {l}\n"));
        }
        text.push_str(&format!(
            "}}\nvirtual_server {FNAT_VIP} 80 {{\n    lb_algo rr\n    lb_kind FNAT\n    laddr_group_name LADDR\n    \
             protocol TCP\n"
        ));
        for r in 1..=3 {
            text.push_str(&format!("    real_server 10.51.0.1{r} 8080 {{\n    }}\n"));
        }
        text + "}\n"
    };
    let conf = t.lab.write_file("keepalived.conf", &fnat(&["10.51.0.200"]));
    let mut lbd = t.start("lbd", &conf, &[]);
    let get = || {
        let out = t.client.exec("curl", &["-sS", "--max-time", "5", &format!("http://{FNAT_VIP}/")]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    get();
    let lines = 50;
    let url = format!("http://{FNAT_VIP}/slow/{lines}");
    let mut transfer = t.client.spawn("transfer", "curl", &["-sS", "-N", "--max-time", "120", &url]);
    wait_until(Duration::from_secs(10), "the transfer to start", || transfer.log().contains(" 2"));

    for (step, laddrs) in [(1, &["10.51.0.200", "10.51.0.201"][..]), (2, &["10.51.0.201"][..])] {
        std::fs::write(&conf, fnat(laddrs)).unwrap();
        lbd.signal(Signal::SIGHUP);
        wait_until(Duration::from_secs(10), "the reload", || {
            lbd.log().matches("Reload finished").count() == step
        });
        let log = lbd.log();
        let report = log.lines().rfind(|l| l.contains("data plane:")).unwrap();
        assert!(report.contains("services_recreated: 0") && report.contains("reals_removed: 0"), "{report}");
        for _ in 0..6 {
            get();
        }
    }
    assert_complete(&mut transfer, lines, &format!("local addresses added and removed\n{}", lbd.log()));
    lbd.signal(Signal::SIGTERM);
    assert!(lbd.wait(Duration::from_secs(15)).success(), "{}", lbd.log());
}

#[test]
fn a_real_server_at_its_uthreshold_takes_no_new_connections() {
    let t = topology();
    let conf = config(&[1, 2], 0)
        .replace(
            "    real_server 10.51.0.11 8080 {\n    }",
            "    real_server 10.51.0.11 8080 {\n        uthreshold 1\n        TCP_CHECK {\n        }\n    }",
        )
        .replace("lb_algo rr\n", "lb_algo rr\n    delay_loop 1\n");
    assert!(conf.contains("uthreshold 1"), "{conf}");
    let conf = t.lab.write_file("keepalived.conf", &conf);
    let listen = format!("--status-listen=127.0.0.1:{STATUS_PORT}");
    let mut lbd = t.start("lbd", &conf, &[&listen]);
    // Two transfers, round robin: one holds a connection to r1, its threshold.
    let lines = 40;
    let mut transfers =
        [t.long_transfer_named("transfer1", lines), t.long_transfer_named("transfer2", lines)];
    wait_until(Duration::from_secs(10), "r1 to be held back", || {
        http_get(&t.lb, "/metrics").lines().any(|l| {
            l.starts_with("lbd_real_server_weight{") && l.contains("10.51.0.11:8080") && l.ends_with(" 0")
        })
    });
    assert_eq!(t.answering(6, &lbd), ["r2".to_owned()].into(), "r1 is at its uthreshold");
    for transfer in &mut transfers {
        assert_complete(transfer, lines, &lbd.log());
    }
    // Its connection closed, r1 takes new ones again.
    wait_until(Duration::from_secs(15), "r1 to come back", || t.answering(2, &lbd).contains("r1"));
    // The checker's own figures in /metrics.
    let metrics = http_get(&t.lb, "/metrics");
    let duration = metrics
        .lines()
        .find(|l| l.starts_with("lbd_check_duration_seconds{") && l.contains("TCP_CHECK"))
        .unwrap_or_else(|| panic!("no check duration in\n{metrics}"));
    let seconds: f64 = duration.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(seconds > 0.0 && seconds < 3.0, "{duration}");
    assert!(metrics.lines().any(|l| l.starts_with("lbd_check_up{") && l.ends_with(" 1")), "{metrics}");
    lbd.signal(Signal::SIGTERM);
    assert!(lbd.wait(Duration::from_secs(15)).success(), "{}", lbd.log());
}

#[test]
fn without_respawn_a_dead_child_stops_lbd_and_a_dead_parent_stops_its_children() {
    let t = topology();
    let conf = t.lab.write_file("keepalived.conf", &config(&[1, 2, 3], 1));

    // -R: a dead child ends lbd; the other child stops in order (its VIP removed).
    let mut lbd = t.start("lbd1", &conf, &["-R"]);
    wait_until(Duration::from_secs(10), "VI_1 to become master", || {
        lbd.log().contains("(VI_1) Entering MASTER STATE")
    });
    kill9(pid_of(&t, "lbd1", "checkers").unwrap());
    let status = lbd.wait(Duration::from_secs(15));
    assert!(!status.success(), "{}", lbd.log());
    assert!(lbd.log().contains("died: exiting (-R, no respawn)"), "{}", lbd.log());
    assert!(lbd.log().contains("(VI_1) removing VIPs"), "{}", lbd.log());
    assert!(!t.lb.ip(&["-4", "addr", "show", "dev", "eth0"]).contains("10.50.0.51/24"), "VIP removed");

    // kill -9 of the parent alone: the VRRP child hands over at once (priority 0, VIPs
    // removed), the checker child leaves the data plane forwarding for the next lbd.
    let lbd = t.start("lbd2", &conf, &[]);
    wait_until(Duration::from_secs(10), "VI_1 to become master", || {
        lbd.log().contains("(VI_1) Entering MASTER STATE")
    });
    let children = [pid_of(&t, "lbd2", "vrrp").unwrap(), pid_of(&t, "lbd2", "checkers").unwrap()];
    lbd.signal(Signal::SIGKILL);
    wait_until(Duration::from_secs(15), "the children to stop", || !children.iter().any(|p| alive(*p)));
    let log = lbd.log();
    assert!(log.contains("the parent process is gone: stopping"), "{log}");
    assert!(log.contains("(VI_1) sent 0 priority"), "{log}");
    assert!(log.contains("parent gone: the XDP program stays attached"), "{log}");
    assert!(!t.lb.ip(&["-4", "addr", "show", "dev", "eth0"]).contains("10.50.0.51/24"), "VIP removed");
    assert_eq!(t.answering(3, &lbd).len(), 3, "still forwarding with no lbd running");
    for what in ["vrrp", "checkers"] {
        assert!(pid_of(&t, "lbd2", what).is_none(), "{what} pid file removed");
    }
}

#[test]
fn reloads_change_only_what_differs_and_refuse_broken_configs() {
    let t = topology();
    let conf = t.lab.write_file("keepalived.conf", &config(&[1, 2], 1));
    let listen = format!("--status-listen=127.0.0.1:{STATUS_PORT}");
    let mut lbd = t.start("lbd", &conf, &[&listen]);
    wait_until(Duration::from_secs(10), "VRRP to become master", || {
        lbd.log().contains("Entering MASTER STATE")
    });
    let entering = |lbd: &Proc| lbd.log().matches("Entering").count();
    let transitions = entering(&lbd);
    assert_eq!(t.answering(4, &lbd), ["r1", "r2"].map(String::from).into());

    let lines = 120;
    let mut transfer = t.long_transfer(lines);
    // A steady stream of new connections while real servers come and go, 20 reloads.
    let sets: [&[u8]; 4] = [&[1, 2, 3], &[1, 3], &[1, 2], &[1, 2, 3]];
    for round in 0..20 {
        let reals = sets[round % sets.len()];
        std::fs::write(&conf, config(reals, 1)).unwrap();
        let reloads = lbd.log().matches("Reload finished").count();
        lbd.signal(Signal::SIGHUP);
        wait_until(Duration::from_secs(10), "the reload", || {
            lbd.log().matches("Reload finished").count() > reloads
        });
        let expected: BTreeSet<String> = reals.iter().map(|r| format!("r{r}")).collect();
        assert_eq!(t.answering(2 * reals.len(), &lbd), expected, "round {round}: {reals:?}");
    }
    assert!(lbd.log().contains("VRRP configuration unchanged"), "{}", lbd.log());
    assert_eq!(entering(&lbd), transitions, "VRRP did not flap:\n{}", lbd.log());
    lbd.assert_running();

    // A broken configuration: every error logged with file:line, the running one stays.
    std::fs::write(&conf, config(&[1], 1).replace("lb_algo rr", "lb_algo rr\n    delay_loop banana"))
        .unwrap();
    lbd.signal(Signal::SIGHUP);
    wait_until(Duration::from_secs(10), "the refused reload", || lbd.log().contains("Reload failed"));
    let log = lbd.log();
    assert!(log.contains(&format!("{}:", conf.display())) && log.contains("delay_loop"), "{log}");
    assert_eq!(t.answering(6, &lbd), ["r1", "r2", "r3"].map(String::from).into(), "still serving");
    let context =
        format!("across 20 reloads; stats {}\n{}", lb_tests::xdp::pinned_stats(&t.pin_dir), lbd.log());
    assert_complete(&mut transfer, lines, &context);

    // The signal dumps, in TMPDIR (the lab's directory), each written by the process it
    // concerns, as keepalived's.
    for (signal, file, needle) in [
        (Signal::SIGUSR1, "keepalived_check.data", "Real server = 10.51.0.13:8080, weight = 1"),
        (Signal::SIGUSR1, "keepalived.data", "VRRP Instance = VI_1, state = MASTER"),
        (Signal::SIGUSR1, "keepalived_parent.data", "Healthcheck child process: pid = "),
        (Signal::SIGUSR2, "keepalived.stats", "VRRP Instance: VI_1\n  Advertisements:\n"),
        (Signal::SIGUSR2, "keepalived_check.stats", "Virtual Server: TCP 10.60.0.100:80"),
    ] {
        let path = t.lab.dir().join(file);
        let _ = std::fs::remove_file(&path);
        lbd.signal(signal);
        wait_until(Duration::from_secs(5), file, || path.exists());
        wait_until(Duration::from_secs(5), needle, || {
            std::fs::read_to_string(&path).unwrap_or_default().contains(needle)
        });
    }
    let stats = std::fs::read_to_string(t.lab.dir().join("keepalived_check.stats")).unwrap();
    let packets: u64 = stats
        .lines()
        .skip_while(|l| !l.starts_with("Virtual Server:"))
        .nth(1)
        .and_then(|l| l.trim().strip_prefix("Packets: ")?.parse().ok())
        .unwrap();
    assert!(packets > 100, "the VIP's packets are counted: {stats}");
    // SIGRTMIN+2, which nix's Signal cannot name.
    let kill = std::process::Command::new("kill").args(["-36", &lbd.pid().to_string()]).status().unwrap();
    assert!(kill.success());
    let json = t.lab.dir().join("keepalived.json");
    let parse = || serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&json).ok()?).ok();
    wait_until(Duration::from_secs(5), "keepalived.json", || parse().is_some());
    let value = parse().unwrap();
    assert_eq!(value[0]["data"]["iname"], "VI_1", "{value}");
    assert_eq!(value[0]["data"]["state"], 2, "MASTER: {value}");
    assert!(value[0]["stats"]["advert_sent"].as_u64().unwrap() > 10, "{value}");
    // SIGRTMAX-1 writes the statistics, then clears the VRRP counters.
    let sent = |t: &Topology| -> u64 {
        let stats = std::fs::read_to_string(t.lab.dir().join("keepalived.stats")).unwrap_or_default();
        let mut lines = stats.lines().skip_while(|l| !l.contains("Sent:"));
        lines.next().and_then(|l| l.trim().strip_prefix("Sent: ")?.parse().ok()).unwrap_or(0)
    };
    let stats_file = t.lab.dir().join("keepalived.stats");
    std::fs::remove_file(&stats_file).unwrap();
    let kill = std::process::Command::new("kill").args(["-63", &lbd.pid().to_string()]).status().unwrap();
    assert!(kill.success());
    wait_until(Duration::from_secs(5), "keepalived.stats", || sent(&t) > 0);
    let before = sent(&t);
    assert!(before > 20, "adverts sent before the clear: {before}");
    std::fs::remove_file(&stats_file).unwrap();
    lbd.signal(Signal::SIGUSR2);
    wait_until(Duration::from_secs(5), "keepalived.stats", || {
        std::fs::read_to_string(&stats_file).is_ok_and(|s| s.contains("Priority Zero"))
    });
    assert!(sent(&t) < before, "cleared: {} after {before}", sent(&t));

    // /status and /metrics against the known state.
    let status: serde_json::Value = serde_json::from_str(&http_get(&t.lb, "/status")).unwrap();
    assert_eq!(status["vrrp"][0]["state"], "MASTER", "{status}");
    assert_eq!(status["vrrp"][0]["transitions"], 2, "BACKUP (init) then MASTER: {status}");
    assert_eq!(status["reloads"], 21, "{status}");
    assert_eq!(status["reload_failures"], 1, "{status}");
    let reals = status["virtual_servers"][0]["reals"].as_array().unwrap();
    assert_eq!(reals.len(), 3, "{status}");
    assert!(reals.iter().all(|r| r["weight"] == 1), "{status}");
    let metrics = http_get(&t.lb, "/metrics");
    for line in [
        r#"lbd_vrrp_state{instance="VI_1",interface="eth0",vrid="61",state="MASTER"} 1"#,
        r#"lbd_real_server_up{virtual_server="TCP 10.60.0.100:80",real_server="10.51.0.13:8080",sorry="false"} 1"#,
        "lbd_reload_failures_total 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line} in\n{metrics}");
    }

    // A new VRRP instance: VI_1 keeps MASTER through the engine's restart, VI_2 starts.
    std::fs::write(&conf, config(&[1, 2, 3], 2)).unwrap();
    lbd.signal(Signal::SIGHUP);
    wait_until(Duration::from_secs(10), "VI_2 to become master", || {
        lbd.log().contains("(VI_2) Entering MASTER STATE")
    });
    let log = lbd.log();
    assert!(log.contains("(VI_1) kept in MASTER STATE across the reload"), "{log}");
    assert_eq!(log.matches("(VI_1) Entering").count(), transitions, "VI_1 did not flap:\n{log}");
    assert!(!log.contains("(VI_1) sent 0 priority"), "{log}");
    assert!(t.lb.ip(&["-4", "addr", "show", "dev", "eth0"]).contains("10.50.0.51/24"), "VI_1's VIP stays");

    // Pid files: taken, refused to a second daemon, removed at the end.
    let pid_file = t.lab.dir().join("lbd-main.pid");
    let read_pid = |what: &str| -> i32 {
        let path = t.lab.dir().join(format!("lbd-{what}.pid"));
        std::fs::read_to_string(&path).unwrap().trim().parse().unwrap()
    };
    assert_eq!(read_pid("main"), lbd.pid().as_raw());
    // The children: each its own process, the parent's.
    for child in ["vrrp", "checkers"] {
        let pid = read_pid(child);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let ppid: i32 = stat.rsplit(')').next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
        assert_eq!(ppid, lbd.pid().as_raw(), "{child} child {pid}: {stat}");
    }
    let (conf_arg, pin_arg) = (conf.display().to_string(), t.pin_dir.display().to_string());
    let pid_arg = pid_file.display().to_string();
    let mut second = t.lb.spawn(
        "second",
        bins::lbd(),
        &["-n", "-l", "-f", &conf_arg, "--bpf-pin-path", &pin_arg, "-p", &pid_arg],
    );
    let status = second.wait(Duration::from_secs(10));
    assert!(!status.success() && second.log().contains("already running"), "{}", second.log());
    lbd.signal(Signal::SIGTERM);
    assert!(lbd.wait(Duration::from_secs(15)).success());
    for what in ["main", "vrrp", "checkers"] {
        assert!(!t.lab.dir().join(format!("lbd-{what}.pid")).exists(), "{what} pid file left");
    }
}

#[test]
fn signum_prints_keepalived_numbers() {
    for (name, number) in [("STOP", "15"), ("RELOAD", "1"), ("DATA", "10"), ("STATS", "12"), ("JSON", "36")] {
        let out = std::process::Command::new(bins::lbd()).args(["--signum", name]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), number, "{name}");
    }
    let out = std::process::Command::new(bins::lbd()).args(["--signum", "TDATA"]).output().unwrap();
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "Unknown sigfunc TDATA");
}

#[test]
fn a_reload_neither_revives_a_dead_real_server_nor_fails_a_request() {
    let mut t = topology();
    let checked = |reals: &[u8]| {
        config(reals, 0).replace(
            "8080 {\n    }",
            "8080 {\n        TCP_CHECK {\n            connect_timeout 1\n            retry 0\n        }\n    }",
        )
    };
    let conf = t.lab.write_file(
        "keepalived.conf",
        &checked(&[1, 2])
            .replace("lb_algo rr", "lb_algo rr\n    delay_loop 1")
            .replace("router_id lbt-daemon", "router_id lbt-daemon\n    lbd_xdp_interfaces eth0 eth1"),
    );
    // An interface that is up but not named by lbd_xdp_interfaces gets no program.
    t.lb.ip(&["link", "add", "extra0", "type", "veth", "peer", "name", "extra1"]);
    t.lb.ip(&["link", "set", "extra0", "up"]);
    t.lb.ip(&["link", "set", "extra1", "up"]);
    let lbd = t.start("lbd", &conf, &[]);
    assert!(lbd.log().contains("attached to eth1") && !lbd.log().contains("extra"), "{}", lbd.log());
    assert_eq!(t.answering(4, &lbd), ["r1", "r2"].map(String::from).into());
    t.reals[1].1.kill();
    wait_until(Duration::from_secs(10), "the checker to take r2 out", || {
        lbd.log().contains("Removing service [10.51.0.12]:tcp:8080")
    });
    assert_eq!(t.answering(4, &lbd), ["r1"].map(String::from).into());
    // A reload that adds r3: r2's checker is unchanged, so r2 stays out from the first moment.
    std::fs::write(&conf, checked(&[1, 2, 3]).replace("lb_algo rr", "lb_algo rr\n    delay_loop 1")).unwrap();
    lbd.signal(Signal::SIGHUP);
    wait_until(Duration::from_secs(10), "the reload", || lbd.log().contains("Reload finished"));
    assert_eq!(t.answering(6, &lbd), ["r1", "r3"].map(String::from).into(), "{}", lbd.log());
}

/// Field `n` (1-based, as proc(5) numbers them) of a thread's /proc stat line.
fn stat_field(stat: &str, n: usize) -> String {
    // The fields after the command name, which is in parentheses, start at field 3.
    stat.rsplit(')').next().unwrap().split_whitespace().nth(n - 3).unwrap().to_owned()
}

/// A /proc status line's value (`Cpus_allowed_list`, `VmLck`).
fn status_value(pid: i32, key: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(&format!("{key}:"))).unwrap();
    line.split_once(':').unwrap().1.trim().to_owned()
}

/// The (nice, policy, rt priority) of every thread of `pid`.
fn thread_scheduling(pid: i32) -> BTreeSet<(String, String, String)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.unwrap().path().join("stat")).ok())
        .map(|stat| (stat_field(&stat, 19), stat_field(&stat, 41), stat_field(&stat, 40)))
        .collect()
}

#[test]
fn each_child_runs_with_its_priority_cpus_memory_lock_and_rttime_limit() {
    let t = topology();
    let conf = config(&[1, 2, 3], 1).replace(
        "    router_id lbt-daemon\n",
        "    router_id lbt-daemon\n    checker_priority 5\n    checker_rt_priority 2\n    checker_no_swap\n    \
         checker_cpu_affinity 0\n    checker_rlimit_rttime 500000\n    vrrp_priority 4\n    vrrp_cpu_affinity 1\n",
    );
    let conf = t.lab.write_file("keepalived.conf", &conf);
    let mut lbd = t.start("lbd", &conf, &[]);
    wait_until(Duration::from_secs(10), "VI_1 to become master and the settings applied", || {
        let log = lbd.log();
        log.contains("(VI_1) Entering MASTER STATE")
            && log.contains("Healthcheck: nice 5, CPUs 0, scheduling SCHED_RR priority 2")
            && log.contains("VRRP: nice 4, CPUs 1")
    });

    // The checker child: every thread nice 5 and SCHED_RR (policy 2) at priority 2, on CPU 0,
    // its memory locked, RLIMIT_RTTIME as configured.
    let checker = pid_of(&t, "lbd", "checkers").unwrap();
    assert_eq!(
        thread_scheduling(checker),
        BTreeSet::from([("5".to_owned(), "2".to_owned(), "2".to_owned())]),
        "{}",
        lbd.log()
    );
    assert_eq!(status_value(checker, "Cpus_allowed_list"), "0");
    assert_ne!(status_value(checker, "VmLck"), "0 kB", "checker_no_swap locks its memory");
    let limits = std::fs::read_to_string(format!("/proc/{checker}/limits")).unwrap();
    let rttime = limits.lines().find(|l| l.starts_with("Max realtime timeout")).unwrap();
    assert_eq!(
        rttime.split_whitespace().skip(3).take(2).collect::<Vec<_>>(),
        ["500000", "500000"],
        "{rttime}"
    );

    // The VRRP child: nice 4 on CPU 1, memory not locked; its VRRP thread real-time (lbd's
    // default), the others ordinary.
    let vrrp = pid_of(&t, "lbd", "vrrp").unwrap();
    let threads = thread_scheduling(vrrp);
    assert!(threads.iter().all(|(nice, _, _)| nice == "4"), "{threads:?}");
    assert!(threads.contains(&("4".to_owned(), "2".to_owned(), "1".to_owned())), "{threads:?}");
    assert!(threads.contains(&("4".to_owned(), "0".to_owned(), "0".to_owned())), "{threads:?}");
    assert_eq!(status_value(vrrp, "Cpus_allowed_list"), "1");
    assert_eq!(status_value(vrrp, "VmLck"), "0 kB");

    // And it forwards, as without the settings.
    assert_eq!(t.answering(3, &lbd).len(), 3);
    lbd.signal(Signal::SIGTERM);
    assert!(lbd.wait(Duration::from_secs(15)).success(), "{}", lbd.log());
}

#[test]
fn startup_script_runs_before_the_children_and_shutdown_script_after_them() {
    let t = topology();
    let dir = t.lab.dir().display().to_string();
    let script = |name: &str, body: &str| {
        let path = t.lab.write_file(name, &format!("#!/bin/sh\n{body}\n"));
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        path.display().to_string()
    };
    // Each says whether a child's pid file exists when it runs; the shutdown script then
    // outlives its timeout.
    let startup = script(
        "startup.sh",
        &format!(
            "if [ -e {dir}/lbd-checkers.pid ]; then echo startup-late; else echo startup; fi >> {dir}/events"
        ),
    );
    let shutdown = script(
        "shutdown.sh",
        &format!(
            "if [ -e {dir}/lbd-checkers.pid ]; then echo shutdown-early; else echo shutdown; fi >> {dir}/events\n\
             sleep 30\necho not-killed >> {dir}/events"
        ),
    );
    let conf = config(&[1, 2, 3], 0).replace(
        "    router_id lbt-daemon\n",
        &format!(
            "    router_id lbt-daemon\n    startup_script {startup}\n    shutdown_script {shutdown}\n    \
             shutdown_script_timeout 1\n"
        ),
    );
    let conf = t.lab.write_file("keepalived.conf", &conf);
    let mut lbd = t.start("lbd", &conf, &[]);
    assert_eq!(t.answering(3, &lbd).len(), 3);
    let events = || std::fs::read_to_string(t.lab.dir().join("events")).unwrap_or_default();
    assert_eq!(events(), "startup\n", "{}", lbd.log());

    let stopping = std::time::Instant::now();
    lbd.signal(Signal::SIGTERM);
    assert!(lbd.wait(Duration::from_secs(20)).success(), "{}", lbd.log());
    let log = lbd.log();
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "the shutdown script was killed at its timeout\n{log}"
    );
    assert_eq!(events(), "startup\nshutdown\n", "{log}");
    assert!(log.contains(&format!("startup_script {startup} succeeded")), "{log}");
    assert!(log.contains(&format!("shutdown_script {shutdown} timed out after 1s: killed")), "{log}");
}

#[test]
fn static_addresses_routes_and_rules_are_kept_followed_on_reload_and_removed_on_stop() {
    let t = topology();
    let statics = |address: &str, route: &str| {
        format!(
            "{}static_ipaddress {{\n    {address} dev eth1\n}}\nstatic_routes {{\n    {route} via 10.51.0.11\n}}\n\
             static_rules {{\n    from {route} table 100 preference 1000\n}}\n",
            config(&[1, 2, 3], 1)
        )
    };
    let rules = || t.lb.ip(&["-4", "rule", "show"]);
    let conf = t.lab.write_file("keepalived.conf", &statics("10.52.0.1/24", "10.53.0.0/24"));
    let mut lbd = t.start("lbd", &conf, &[]);
    let addresses = || t.lb.ip(&["-4", "addr", "show", "dev", "eth1"]);
    let routes = || t.lb.ip(&["-4", "route", "show"]);
    wait_until(Duration::from_secs(10), "the static address and route", || {
        addresses().contains("10.52.0.1/24")
            && routes().contains("10.53.0.0/24 via 10.51.0.11")
            && rules().contains("1000:\tfrom 10.53.0.0/24 lookup 100 proto keepalived")
    });
    assert!(!addresses().contains("valid_lft 0"), "static addresses have no lease: {}", addresses());

    std::fs::write(&conf, statics("10.52.0.2/24", "10.54.0.0/24")).unwrap();
    lbd.signal(Signal::SIGHUP);
    wait_until(Duration::from_secs(10), "the reload to replace them", || {
        let (a, r) = (addresses(), routes());
        a.contains("10.52.0.2/24")
            && !a.contains("10.52.0.1/24")
            && r.contains("10.54.0.0/24 via 10.51.0.11")
            && !r.contains("10.53.0.0/24")
            && rules().contains("from 10.54.0.0/24 lookup 100")
            && !rules().contains("10.53.0.0")
    });

    lbd.signal(Signal::SIGTERM);
    assert!(lbd.wait(Duration::from_secs(15)).success(), "{}", lbd.log());
    assert!(!addresses().contains("10.52.0.2"), "{}", addresses());
    assert!(!routes().contains("10.54.0.0"), "{}", routes());
    assert!(!rules().contains("10.54.0.0"), "{}", rules());
}
