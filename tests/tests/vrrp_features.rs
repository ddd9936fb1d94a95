//! lbd's VRRP features between namespaces on a bridge: track_script weights (with the notify
//! FIFO and its priority changes), sync groups, unicast peers, IPv6, VRRPv2 passwords, notify
//! scripts and smtp_alert.
#![expect(clippy::unwrap_used, reason = "tests: a failed step is a failed test")]

mod vrrp_kit;

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{IpAddr, TcpListener},
    os::{fd::AsFd as _, unix::fs::PermissionsExt as _},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use lb_tests::lab::{Lab, Netns, wait_until};
use vrrp_kit::{
    ADVERT, ADVERT_TEXT, SLACK, VipWatch, config, instance, ip4, lan, master_down, ms, skew, start_lbd,
    terminate,
};

/// An executable shell script in the lab's directory.
fn script(lab: &Lab, name: &str, body: &str) -> PathBuf {
    let path = lab.write_file(name, &format!("#!/bin/sh\n{body}\n"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect()
}

/// Reads a notify FIFO's lines as they come, from a thread.
fn read_fifo(path: &Path) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let fifo = std::fs::File::open(path).unwrap();
    let seen = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(fifo).lines() {
            let Ok(line) = line else { return };
            seen.lock().unwrap().push(line);
        }
    });
    lines
}

#[test]
fn a_failing_track_script_lowers_priority_and_moves_the_vip() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 88, 2);
    let vip = ip4(88, 100);
    let flag = lab.dir().join("down.flag");
    let fifo = lab.dir().join("notify.fifo");
    let check = format!(
        "vrrp_script chk {{\n  script \"test ! -e {}\"\n  interval 0.1\n  weight -100\n}}\n",
        flag.display()
    );
    let tracked = config(
        "r1",
        &format!("  vrrp_notify_fifo {}\n  vrrp_notify_priority_changes\n", fifo.display()),
        &[
            check,
            instance(
                "VI_1",
                88,
                150,
                ADVERT_TEXT,
                &["10.88.0.100/24"],
                "  version 3\n  track_script {\n    chk\n  }\n",
            ),
        ],
    );
    let plain =
        config("r2", "", &[instance("VI_1", 88, 100, ADVERT_TEXT, &["10.88.0.100/24"], "  version 3\n")]);
    let (w1, w2) = (VipWatch::start(&r[0], "r1", vip), VipWatch::start(&r[1], "r2", vip));
    let a = start_lbd(&mut lab, &r[0], "lbd1", &tracked);
    // lbd created the FIFO and holds it open: what it wrote so far waits in it.
    let events = read_fifo(&fifo);
    let _b = start_lbd(&mut lab, &r[1], "lbd2", &plain);
    w1.wait_for(true, Duration::from_secs(5));
    w2.assert_steady(false, Duration::from_millis(500));

    let failed = Instant::now();
    std::fs::write(&flag, "").unwrap();
    let moved = w2.wait_for(true, Duration::from_secs(3)).saturating_duration_since(failed);
    w1.wait_for(false, Duration::from_secs(1));
    eprintln!("track_script failing (weight -100): the VIP moved after {}", ms(moved));
    // A script interval (0.1 s) and run, then r2's Master_Down_Interval as it discards r1's
    // priority-50 adverts.
    assert!(moved <= ADVERT + master_down(100) + SLACK, "took {}", ms(moved));
    assert!(a.log().contains("(VI_1) Changing effective priority from 150 to 50"), "{}", a.log());

    let recovered = Instant::now();
    std::fs::remove_file(&flag).unwrap();
    let back = w1.wait_for(true, Duration::from_secs(3)).saturating_duration_since(recovered);
    w2.wait_for(false, Duration::from_secs(1));
    eprintln!("track_script succeeding again: r1 preempted after {}", ms(back));

    // keepalived's FIFO lines, priority changes included, in order.
    let expected = [
        "INSTANCE \"VI_1\" BACKUP 150",
        "INSTANCE \"VI_1\" MASTER 150",
        "INSTANCE \"VI_1\" MASTER_PRIORITY 50",
        "INSTANCE \"VI_1\" BACKUP 50",
        "INSTANCE \"VI_1\" BACKUP_PRIORITY 150",
        "INSTANCE \"VI_1\" MASTER 150",
    ];
    wait_until(Duration::from_secs(3), "the notify FIFO's lines", || events.lock().unwrap().len() >= 6);
    assert_eq!(*events.lock().unwrap(), expected);
}

#[test]
fn a_sync_group_moves_together() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 89, 2);
    // r1's VI_2 tracks eth1, a link to a stub host that the test takes down.
    let stub = lab.netns("stub");
    lab.veth(&r[0], "eth1", &stub, "eth1");
    let log = lab.dir().join("group.log");
    let notify = script(&lab, "group-notify.sh", &format!("echo \"$*\" >> {}", log.display()));
    let group = |with_notify: bool| {
        format!(
            "vrrp_sync_group G {{\n  group {{\n    VI_1\n    VI_2\n  }}\n{}}}\n",
            if with_notify { format!("  notify {}\n", notify.display()) } else { String::new() }
        )
    };
    let r1 = config(
        "r1",
        "",
        &[
            group(false),
            instance("VI_1", 89, 150, ADVERT_TEXT, &["10.89.0.100/24"], "  version 3\n"),
            instance(
                "VI_2",
                90,
                150,
                ADVERT_TEXT,
                &["10.89.0.200/24"],
                "  version 3\n  track_interface {\n    eth1\n  }\n",
            ),
        ],
    );
    let r2 = config(
        "r2",
        "",
        &[
            group(true),
            instance("VI_1", 89, 100, ADVERT_TEXT, &["10.89.0.100/24"], "  version 3\n"),
            instance("VI_2", 90, 100, ADVERT_TEXT, &["10.89.0.200/24"], "  version 3\n"),
        ],
    );
    let (v1, v2) = (ip4(89, 100), ip4(89, 200));
    let w1 = [VipWatch::start(&r[0], "r1 VI_1", v1), VipWatch::start(&r[0], "r1 VI_2", v2)];
    let w2 = [VipWatch::start(&r[1], "r2 VI_1", v1), VipWatch::start(&r[1], "r2 VI_2", v2)];
    let a = start_lbd(&mut lab, &r[0], "lbd1", &r1);
    let b = start_lbd(&mut lab, &r[1], "lbd2", &r2);
    for w in &w1 {
        w.wait_for(true, Duration::from_secs(5));
    }
    w2[0].assert_steady(false, Duration::from_millis(300));
    assert!(!w2[1].holds());

    // eth1 losing its carrier faults VI_2 on r1, and so the whole group: both VIPs move.
    let down = Instant::now();
    stub.ip(&["link", "set", "eth1", "down"]);
    let moved: Vec<Duration> =
        w2.iter().map(|w| w.wait_for(true, Duration::from_secs(3)).saturating_duration_since(down)).collect();
    for w in &w1 {
        w.wait_for(false, Duration::from_secs(1));
    }
    eprintln!("sync group: VI_1 moved after {}, VI_2 after {}", ms(moved[0]), ms(moved[1]));
    let log_a = a.log();
    assert!(
        log_a.contains("(VI_1) Entering FAULT STATE") && log_a.contains("(VI_2) Entering FAULT STATE"),
        "{log_a}"
    );
    wait_until(Duration::from_secs(3), "r2's group notify for MASTER", || {
        lines(&log).contains(&"GROUP G MASTER 0".to_owned())
    });

    stub.ip(&["link", "set", "eth1", "up"]);
    for w in &w1 {
        w.wait_for(true, Duration::from_secs(3));
    }
    for w in &w2 {
        w.wait_for(false, Duration::from_secs(1));
    }
    wait_until(Duration::from_secs(3), "r2's group notify for BACKUP", || {
        lines(&log).iter().filter(|l| *l == "GROUP G BACKUP 0").count() >= 2
    });
    assert!(b.log().contains("VRRP_Group(G) Syncing instances to MASTER state"), "{}", b.log());
}

#[test]
fn unicast_peers_elect_fail_over_and_ignore_strangers() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 91, 3);
    let vip = ip4(91, 100);
    let unicast = |me: u8, peers: &[u8], priority: u8| {
        let peers: String = peers.iter().map(|p| format!("    10.91.0.{p}\n")).collect();
        config(
            &format!("r{me}"),
            "",
            &[instance(
                "VI_1",
                91,
                priority,
                ADVERT_TEXT,
                &["10.91.0.100/24"],
                &format!(
                    "  version 3\n  unicast_src_ip 10.91.0.{me}\n  check_unicast_src\n  unicast_peer {{\n{peers}  }}\n"
                ),
            )],
        )
    };
    let (w1, w2) = (VipWatch::start(&r[0], "r1", vip), VipWatch::start(&r[1], "r2", vip));
    let mut a = start_lbd(&mut lab, &r[0], "lbd1", &unicast(1, &[2], 150));
    let _b = start_lbd(&mut lab, &r[1], "lbd2", &unicast(2, &[1], 100));
    w1.wait_for(true, Duration::from_secs(5));
    w2.assert_steady(false, Duration::from_millis(500));

    // r3 is not one of r1's peers: its higher-priority unicast adverts are dropped.
    let _c = start_lbd(&mut lab, &r[2], "lbd3", &unicast(3, &[1], 200));
    w1.assert_steady(true, Duration::from_millis(800));
    assert!(a.log().contains("advert from 10.91.0.3, not a unicast peer"), "{}", a.log());

    let stopped = Instant::now();
    terminate(&mut a, "lbd1");
    let taken = w2.wait_for(true, Duration::from_secs(2)).saturating_duration_since(stopped);
    eprintln!("unicast SIGTERM: r2 holds the VIP after {}", ms(taken));
    assert!(taken <= skew(100) + SLACK, "took {}", ms(taken));
}

#[test]
fn ipv6_vrrpv3_elects_and_fails_over() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 92, 2);
    let vip: IpAddr = "fd92::100".parse().unwrap();
    let conf = |priority| {
        config(
            "r",
            "",
            &[instance("VI_6", 92, priority, ADVERT_TEXT, &["fe80::92:100/64", "fd92::100/64"], "")],
        )
    };
    let (w1, w2) = (VipWatch::start(&r[0], "r1", vip), VipWatch::start(&r[1], "r2", vip));
    let mut a = start_lbd(&mut lab, &r[0], "lbd1", &conf(150));
    let _b = start_lbd(&mut lab, &r[1], "lbd2", &conf(100));
    w1.wait_for(true, Duration::from_secs(5));
    w2.assert_steady(false, Duration::from_millis(500));
    assert!(r[0].ip(&["-6", "addr", "show", "dev", "eth0"]).contains("fe80::92:100/64"));

    let killed = Instant::now();
    a.kill();
    let taken = w2.wait_for(true, Duration::from_secs(3)).saturating_duration_since(killed);
    let expired = w1.wait_for(false, Duration::from_secs(6)).saturating_duration_since(killed);
    eprintln!("IPv6 kill -9: r2 holds the VIP after {}; r1's lease expired after {}", ms(taken), ms(expired));
    assert!(taken <= master_down(100) + SLACK, "took {}", ms(taken));
    assert!(expired <= Duration::from_millis(3_500), "the dead master kept its VIP for {}", ms(expired));
}

#[test]
fn vrrpv2_adverts_with_a_wrong_password_are_ignored() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 93, 3);
    let vip = ip4(93, 100);
    let conf = |priority, password: &str| {
        config(
            "r",
            "",
            &[instance(
                "VI_1",
                93,
                priority,
                "1",
                &["10.93.0.100/24"],
                &format!("  authentication {{\n    auth_type PASS\n    auth_pass {password}\n  }}\n"),
            )],
        )
    };
    let w = [
        VipWatch::start(&r[0], "r1", vip),
        VipWatch::start(&r[1], "r2 (wrong password)", vip),
        VipWatch::start(&r[2], "r3", vip),
    ];
    let _a = start_lbd(&mut lab, &r[0], "lbd1", &conf(150, "secret93"));
    let b = start_lbd(&mut lab, &r[1], "lbd2", &conf(100, "wrongpw9"));
    let _c = start_lbd(&mut lab, &r[2], "lbd3", &conf(50, "secret93"));
    w[0].wait_for(true, Duration::from_secs(6));
    // r2 discards r1's adverts (and r1 and r3 discard r2's): it takes the VIP as if alone.
    w[1].wait_for(true, Duration::from_secs(6));
    w[2].assert_steady(false, Duration::from_secs(1));
    assert!(w[0].holds(), "r1 gave the VIP up to an advert with a wrong password");
    assert!(b.log().contains("invalid password"), "{}", b.log());
}

/// A minimal SMTP server in `ns` on port 25 that keeps what it is sent.
struct SmtpSink {
    received: Arc<Mutex<String>>,
}

impl SmtpSink {
    fn start(ns: &Netns) -> Self {
        let received = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let path = PathBuf::from("/run/netns").join(ns.name());
        let sink = Arc::clone(&received);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap();
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let listener = TcpListener::bind("0.0.0.0:25").unwrap();
            ready_tx.send(()).unwrap();
            // Ends with the namespace (the lab kills nothing here, but the listener dies with
            // the test process).
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let _ = stream.write_all(b"220 sink\r\n");
                let mut in_data = false;
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    sink.lock().unwrap().push_str(&line);
                    let reply: &[u8] = if in_data {
                        if line == ".\r\n" {
                            in_data = false;
                            b"250 queued\r\n"
                        } else {
                            b""
                        }
                    } else if line.starts_with("DATA") {
                        in_data = true;
                        b"354 go on\r\n"
                    } else if line.starts_with("QUIT") {
                        let _ = stream.write_all(b"221 bye\r\n");
                        break;
                    } else {
                        b"250 ok\r\n"
                    };
                    let _ = stream.write_all(reply);
                    line.clear();
                }
            }
        });
        ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        SmtpSink { received }
    }

    fn text(&self) -> String {
        self.received.lock().unwrap().clone()
    }
}

#[test]
fn notify_scripts_run_in_order_with_keepalived_arguments_and_smtp_alerts_are_sent() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 94, 2);
    let log = lab.dir().join("notify.log");
    let notify = script(&lab, "notify.sh", &format!("echo \"$*\" >> {}", log.display()));
    let n = notify.display();
    let sink = SmtpSink::start(&r[1]);
    let global = "  smtp_server 10.94.0.2 25\n  smtp_connect_timeout 5\n  notification_email_from lbd@example.org\n  \
                  notification_email {\n    ops@example.org\n  }\n";
    let conf = config(
        "lb94",
        global,
        &[instance(
            "VI_1",
            94,
            150,
            ADVERT_TEXT,
            &["10.94.0.100/24"],
            &format!(
                "  version 3\n  smtp_alert\n  notify_backup \"{n} backup\"\n  notify_master \"{n} master\"\n  \
                 notify_fault \"{n} fault\"\n  notify_stop \"{n} stop\"\n  notify \"{n} generic\"\n"
            ),
        )],
    );
    let w = VipWatch::start(&r[0], "r1", ip4(94, 100));
    let mut a = start_lbd(&mut lab, &r[0], "lbd1", &conf);
    w.wait_for(true, Duration::from_secs(5));
    wait_until(Duration::from_secs(5), "the MASTER alert mail", || {
        sink.text().contains("Subject: [lb94] VRRP Instance VI_1 - Entering MASTER state")
    });
    terminate(&mut a, "lbd1");
    assert_eq!(
        lines(&log),
        [
            "backup",
            "generic INSTANCE VI_1 BACKUP 150",
            "master",
            "generic INSTANCE VI_1 MASTER 150",
            "stop",
            "generic INSTANCE VI_1 STOP 150",
        ],
        "lbd log:\n{}",
        a.log()
    );
    let mail = sink.text();
    assert!(
        mail.contains("RCPT TO:<ops@example.org>") && mail.contains("MAIL FROM:<lbd@example.org>"),
        "{mail}"
    );
    assert!(mail.contains("=> VRRP Instance is now owning VRRP VIPs <="), "{mail}");
}

/// The `smtp_alert` subjects of `router_id`'s instance VI_1 in `mail`, in order: `MASTER`, ...
fn mailed_states(mail: &str, router_id: &str) -> Vec<String> {
    let prefix = format!("Subject: [{router_id}] VRRP Instance VI_1 - Entering ");
    mail.lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str())?.strip_suffix(" state"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn no_email_faults_mails_no_fault_transition() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 92, 3);
    // r3 is the mail server; r1 and r2 each track eth1, a link to a stub host of their own.
    let sink = SmtpSink::start(&r[2]);
    let stubs: Vec<Netns> = (1..=2).map(|i| lab.netns(&format!("stub{i}"))).collect();
    for (router, stub) in r.iter().zip(&stubs) {
        lab.veth(router, "eth1", stub, "eth1");
    }
    let make = |id: &str, vrid: u8, extra_global: &str| {
        let global = format!(
            "  smtp_server 10.92.0.3 25\n  smtp_connect_timeout 5\n  notification_email {{\n    ops@example.org\n  }}\n\
             {extra_global}"
        );
        let vip = format!("10.92.0.{vrid}/24");
        config(
            id,
            &global,
            &[instance(
                "VI_1",
                vrid,
                150,
                ADVERT_TEXT,
                &[&vip],
                "  version 3\n  smtp_alert\n  track_interface {\n    eth1\n  }\n",
            )],
        )
    };
    let (w1, w2) = (VipWatch::start(&r[0], "r1", ip4(92, 101)), VipWatch::start(&r[1], "r2", ip4(92, 102)));
    let a = start_lbd(&mut lab, &r[0], "lbd1", &make("quiet", 101, "  no_email_faults\n"));
    let b = start_lbd(&mut lab, &r[1], "lbd2", &make("loud", 102, ""));
    w1.wait_for(true, Duration::from_secs(5));
    w2.wait_for(true, Duration::from_secs(5));
    let both_mailed = |count: usize| {
        let mail = sink.text();
        mailed_states(&mail, "quiet").len() >= count && mailed_states(&mail, "loud").len() > count
    };
    wait_until(Duration::from_secs(5), "the MASTER mails", || {
        let mail = sink.text();
        mailed_states(&mail, "quiet").len() == 2 && mailed_states(&mail, "loud").len() == 2
    });
    // FAULT: the tracked link goes down, then comes back (BACKUP, then MASTER again).
    for stub in &stubs {
        stub.ip(&["link", "set", "eth1", "down"]);
    }
    w1.wait_for(false, Duration::from_secs(3));
    w2.wait_for(false, Duration::from_secs(3));
    wait_until(Duration::from_secs(5), "the FAULT mail of r2", || {
        mailed_states(&sink.text(), "loud").contains(&"FAULT".to_owned())
    });
    for stub in &stubs {
        stub.ip(&["link", "set", "eth1", "up"]);
    }
    w1.wait_for(true, Duration::from_secs(5));
    w2.wait_for(true, Duration::from_secs(5));
    wait_until(Duration::from_secs(5), "the mails after FAULT", || both_mailed(4));
    // What is mailed after that is checked too: nothing more should come.
    std::thread::sleep(Duration::from_millis(500));
    let mail = sink.text();
    assert!(a.log().contains("(VI_1) Entering FAULT STATE"), "{}", a.log());
    assert!(b.log().contains("(VI_1) Entering FAULT STATE"), "{}", b.log());
    assert_eq!(mailed_states(&mail, "quiet"), ["BACKUP", "MASTER", "BACKUP", "MASTER"], "{mail}");
    assert_eq!(mailed_states(&mail, "loud"), ["BACKUP", "MASTER", "FAULT", "BACKUP", "MASTER"], "{mail}");
}

#[test]
fn fifo_write_vrrp_states_on_reload_tells_the_fifo_the_kept_masters_state() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 87, 2);
    // Router i: VI_1 (VRID 80 + i) alone, its FIFO read across the reload (the engine that
    // restarts closes it, then opens it again).
    let fifos: Vec<PathBuf> = (1..=2).map(|i| lab.dir().join(format!("notify{i}.fifo"))).collect();
    let make = |me: u8, option: &str| {
        let vrid = 80 + me;
        config(
            &format!("r{me}"),
            &format!("  vrrp_notify_fifo {}\n{option}", fifos[usize::from(me - 1)].display()),
            &[instance("VI_1", vrid, 150, ADVERT_TEXT, &[&format!("10.87.0.{vrid}/24")], "  version 3\n")],
        )
    };
    let watches = [VipWatch::start(&r[0], "r1", ip4(87, 81)), VipWatch::start(&r[1], "r2", ip4(87, 82))];
    let lbds = [
        start_lbd(&mut lab, &r[0], "lbd1", &make(1, "  fifo_write_vrrp_states_on_reload\n")),
        start_lbd(&mut lab, &r[1], "lbd2", &make(2, "")),
    ];
    let events: Vec<Arc<Mutex<Vec<String>>>> = fifos
        .iter()
        .map(|path| {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let (path, seen) = (path.clone(), Arc::clone(&lines));
            std::thread::spawn(move || {
                for _ in 0..2 {
                    let Ok(fifo) = std::fs::File::open(&path) else { return };
                    for line in BufReader::new(fifo).lines() {
                        let Ok(line) = line else { break };
                        seen.lock().unwrap().push(line);
                    }
                }
            });
            lines
        })
        .collect();
    for watch in &watches {
        watch.wait_for(true, Duration::from_secs(5));
    }
    let master = "INSTANCE \"VI_1\" MASTER 150".to_owned();
    wait_until(Duration::from_secs(3), "the MASTER lines", || {
        events.iter().all(|e| e.lock().unwrap().contains(&master))
    });
    // A reload that changes nothing.
    for lbd in &lbds {
        lbd.signal(nix::sys::signal::Signal::SIGHUP);
    }
    wait_until(Duration::from_secs(5), "r1's state after the reload", || {
        events[0].lock().unwrap().iter().filter(|l| **l == master).count() == 2
    });
    std::thread::sleep(Duration::from_millis(500));
    for watch in &watches {
        watch.assert_steady(true, Duration::ZERO);
    }
    let r1 = lbds[0].log();
    assert!(r1.contains("(VI_1) kept in MASTER STATE across the reload"), "{r1}");
    assert_eq!(events[0].lock().unwrap().iter().filter(|l| **l == master).count(), 2, "{r1}");
    // Without the option nothing is written (nor restarted).
    assert_eq!(
        *events[1].lock().unwrap(),
        ["INSTANCE \"VI_1\" BACKUP 150", master.as_str()],
        "{}",
        lbds[1].log()
    );
}

#[test]
fn use_vmac_virtual_routes_and_excluded_addresses() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 95, 3);
    let vip = ip4(95, 100);
    let master = config(
        "r1",
        "",
        &[instance(
            "VI_1",
            95,
            150,
            ADVERT_TEXT,
            &["10.95.0.100/24"],
            "  version 3\n  use_vmac\n  virtual_ipaddress_excluded {\n    10.95.0.150/24\n  }\n  \
             virtual_routes {\n    192.168.95.0/24 via 10.95.0.254\n  }\n",
        )],
    );
    let backup =
        config("r2", "", &[instance("VI_1", 95, 100, ADVERT_TEXT, &["10.95.0.100/24"], "  version 3\n")]);
    // r3 learns addresses from gratuitous ARPs, so it shows which MAC they announced.
    r[2].sysctl("net.ipv4.conf.eth0.arp_accept", "1");
    let (w1, w2) = (VipWatch::start(&r[0], "r1", vip), VipWatch::start(&r[1], "r2", vip));
    let mut a = start_lbd(&mut lab, &r[0], "lbd1", &master);
    let _b = start_lbd(&mut lab, &r[1], "lbd2", &backup);
    w1.wait_for(true, Duration::from_secs(5));
    w2.assert_steady(false, Duration::from_millis(500));

    // The macvlan carries the RFC 5798 virtual MAC (95 = 0x5f) and the VIP.
    let link = r[0].ip(&["-d", "link", "show", "vrrp.95"]);
    assert!(link.contains("link/ether 00:00:5e:00:01:5f") && link.contains("macvlan"), "{link}");
    assert!(r[0].ip(&["-4", "addr", "show", "dev", "vrrp.95"]).contains("10.95.0.100/24"));
    assert!(r[0].ip(&["-4", "addr", "show"]).contains("10.95.0.150/24"), "excluded VIP missing");
    let route = r[0].ip(&["route", "show", "192.168.95.0/24"]);
    assert!(route.contains("via 10.95.0.254") && route.contains("proto keepalived"), "{route:?}");
    // The gratuitous ARPs announce the VIP at the virtual MAC, and the VIP answers.
    let neighbour = r[2].ip(&["neigh", "show", "10.95.0.100"]);
    assert!(neighbour.contains("00:00:5e:00:01:5f"), "{neighbour:?}");
    let ping = r[2].exec("ping", &["-c", "1", "-W", "2", "10.95.0.100"]);
    assert!(ping.status.success(), "{}", String::from_utf8_lossy(&ping.stdout));

    terminate(&mut a, "lbd1");
    assert!(r[0].try_ip(&["link", "show", "vrrp.95"]).is_err(), "the macvlan outlived lbd");
    assert!(r[0].ip(&["route", "show", "192.168.95.0/24"]).trim().is_empty(), "the route outlived lbd");
    assert!(!r[0].ip(&["-4", "addr", "show"]).contains("10.95.0.150"), "the excluded VIP outlived lbd");
    w2.wait_for(true, Duration::from_secs(2));
}

#[test]
fn ipv6_use_vmac_carries_the_v6_virtual_mac_and_its_own_link_local() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 96, 3);
    let vip: IpAddr = "fd96::100".parse().unwrap();
    let conf = |priority| {
        config("r", "", &[instance("VI_6", 96, priority, ADVERT_TEXT, &["fd96::100/64"], "  use_vmac\n")])
    };
    r[2].ip(&["-6", "addr", "add", "fd96::3/64", "dev", "eth0", "nodad"]);
    let (w1, w2) = (VipWatch::start(&r[0], "r1", vip), VipWatch::start(&r[1], "r2", vip));
    let mut a = start_lbd(&mut lab, &r[0], "lbd1", &conf(150));
    let _b = start_lbd(&mut lab, &r[1], "lbd2", &conf(100));
    w1.wait_for(true, Duration::from_secs(5));
    w2.assert_steady(false, Duration::from_millis(500));

    // The macvlan carries the RFC 5798 IPv6 virtual MAC (96 = 0x60), the VIP and one link-local
    // address: its parent's, not the EUI-64 of the virtual MAC that every router would share.
    for router in &r[..2] {
        let link = router.ip(&["-d", "link", "show", "vrrp.96"]);
        assert!(link.contains("link/ether 00:00:5e:00:02:60") && link.contains("macvlan"), "{link}");
        let parent = link_locals(router, "eth0");
        assert_eq!(link_locals(router, "vrrp.96"), parent, "the macvlan's link-local addresses");
        assert_eq!(parent.len(), 1, "{parent:?}");
    }
    assert!(r[0].ip(&["-6", "addr", "show", "dev", "vrrp.96"]).contains("fd96::100/64"));
    // The VIP answers at the virtual MAC.
    let ping = || r[2].exec("ping", &["-6", "-c", "1", "-W", "2", "fd96::100"]).status.success();
    assert!(ping(), "the VIP does not answer on r1");
    let neighbour = r[2].ip(&["-6", "neigh", "show", "fd96::100"]);
    assert!(neighbour.contains("00:00:5e:00:02:60"), "{neighbour:?}");

    // Failover: the VIP moves to r2's macvlan, at the same MAC, so r3 reaches it at once.
    terminate(&mut a, "lbd1");
    assert!(r[0].try_ip(&["link", "show", "vrrp.96"]).is_err(), "the macvlan outlived lbd");
    w2.wait_for(true, Duration::from_secs(2));
    assert!(r[1].ip(&["-6", "addr", "show", "dev", "vrrp.96"]).contains("fd96::100/64"));
    assert!(ping(), "the VIP does not answer on r2");
}

/// The IPv6 link-local addresses of `interface` in `ns`.
fn link_locals(ns: &Netns, interface: &str) -> Vec<String> {
    ns.ip(&["-6", "addr", "show", "dev", interface, "scope", "link"])
        .lines()
        .filter_map(|line| line.trim().strip_prefix("inet6 "))
        .filter_map(|rest| rest.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Sends 3 VRRPv3 adverts for VRID `vrid` with `priority` and `vips` from `ns`'s `eth0`
/// (its address `source`) to 224.0.0.18, [`ADVERT`] apart: another router claiming MASTER.
fn claim_master(ns: &Netns, source: std::net::Ipv4Addr, vrid: u8, priority: u8, vips: &[std::net::Ipv4Addr]) {
    use lb_daemon::vrrp::{
        packet::{AddressList, MaxAdverInt, VRRP_MCAST_GROUP_V4, VersionFields, Vrid, VrrpAdvert},
        socket::VrrpSocket,
    };
    let out = ns.ip(&["-o", "link", "show", "eth0"]);
    let ifindex: u32 = out.split(':').next().unwrap().trim().parse().unwrap();
    let advert = VrrpAdvert {
        vrid: Vrid::new(vrid).unwrap(),
        priority,
        fields: VersionFields::V3 { max_adver_int: MaxAdverInt::from_centiseconds(20).unwrap() },
        addresses: AddressList::V4(vips.to_vec()),
    };
    ns.enter(|| {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
            let socket = VrrpSocket::open_v4("eth0", ifindex, source, None, false).unwrap();
            for _ in 0..3 {
                socket.send(&advert, VRRP_MCAST_GROUP_V4.into(), None, false).await.unwrap();
                tokio::time::sleep(ADVERT).await;
            }
        });
    });
}

#[test]
fn a_master_hearing_a_lower_priority_runs_its_script_and_the_fifo_script_reads_every_line() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 89, 2);
    let vip = ip4(89, 100);
    let fifo = lab.dir().join("notify.fifo");
    let (copy, lower) = (lab.dir().join("fifo-copy"), lab.dir().join("lower.log"));
    // keepalived starts the FIFO script with the FIFO's path as its last argument.
    let reader = script(
        &lab,
        "fifo-reader.sh",
        &format!("while read -r l; do echo \"$l\" >> {}; done < \"$1\"", copy.display()),
    );
    let on_lower = script(&lab, "lower.sh", &format!("echo \"$*\" >> {}", lower.display()));
    let conf = config(
        "r1",
        &format!("  notify_fifo {}\n  notify_fifo_script {}\n", fifo.display(), reader.display()),
        &[instance(
            "VI_1",
            89,
            150,
            ADVERT_TEXT,
            &["10.89.0.100/24"],
            &format!("  version 3\n  notify_master_rx_lower_pri \"{} rx-lower\"\n", on_lower.display()),
        )],
    );
    let w = VipWatch::start(&r[0], "r1", vip);
    let mut a = start_lbd(&mut lab, &r[0], "lbd1", &conf);
    w.wait_for(true, Duration::from_secs(5));
    assert!(lines(&lower).is_empty(), "no lower priority heard yet");
    // r2 believes it is master, with priority 100: r1 stays master and runs the script.
    claim_master(
        &r[1],
        std::net::Ipv4Addr::new(10, 89, 0, 2),
        89,
        100,
        &[std::net::Ipv4Addr::new(10, 89, 0, 100)],
    );
    wait_until(Duration::from_secs(3), "notify_master_rx_lower_pri", || !lines(&lower).is_empty());
    assert_eq!(lines(&lower)[0], "rx-lower", "run with its own arguments only");
    w.assert_steady(true, Duration::from_millis(300));
    terminate(&mut a, "lbd1");
    // The script read everything lbd wrote, STOP included, then the end of the FIFO: it has
    // ended (nothing in the namespace runs it any more).
    let copied = lines(&copy);
    assert_eq!(
        copied.iter().filter(|l| !l.contains("MASTER_RX_LOWER_PRI")).collect::<Vec<_>>(),
        ["INSTANCE \"VI_1\" BACKUP 150", "INSTANCE \"VI_1\" MASTER 150", "INSTANCE \"VI_1\" STOP 150"],
        "lbd log:\n{}",
        a.log()
    );
    assert!(copied.contains(&"INSTANCE \"VI_1\" MASTER_RX_LOWER_PRI 150".to_owned()), "{copied:?}");
    let left = || {
        let out = std::process::Command::new("ip").args(["netns", "pids", r[0].name()]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    wait_until(Duration::from_secs(2), "the FIFO script to end", || left().is_empty());
}
