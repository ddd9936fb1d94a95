//! BFD (issue 6): lbd's BFD child against real keepalived 2.2.7's BFD process, and what its
//! sessions drive: `BFD_CHECK` (a real server whose BFD peer dies stops getting traffic through
//! the VIP, and gets it again when the peer returns) and `track_bfd` (a VIP moves to the
//! backup when the master's session goes down; an instance tracking it without weight faults).
//!
//! keepalived runs only its BFD process here (its configuration has nothing but
//! `bfd_instance`s), which needs no IPVS. Sessions run at 50 ms × 5: a detection time of 250 ms.
#![expect(clippy::unwrap_used, reason = "tests: a failed step is a failed test")]

mod vrrp_kit;

use std::{
    collections::BTreeSet,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use lb_tests::{
    bins,
    lab::{Lab, LbHosts, Netns, answers, wait_until},
    process::Proc,
};
use vrrp_kit::{ADVERT_TEXT, VipWatch, config, instance, ip4, lan};

/// The detection time of every session here: 5 × 50 ms.
const DETECTION: Duration = Duration::from_millis(250);
/// What a loaded 2-core machine may add to a timer and to a log line's timestamp.
const SLACK: Duration = Duration::from_millis(250);

/// A `bfd_instance` block at 50 ms × 5.
fn bfd_instance(name: &str, neighbor: &str, extra: &str) -> String {
    format!(
        "bfd_instance {name} {{\n  neighbor_ip {neighbor}\n  min_rx 50\n  min_tx 50\n  multiplier 5\n{extra}}}\n"
    )
}

/// Starts keepalived with `config` (only `bfd_instance`s: only its BFD process runs) in `ns`
/// and waits for its BFD child.
fn start_keepalived(lab: &Lab, ns: &Netns, label: &str, config: &str) -> Proc {
    let mut keepalived = vrrp_kit::spawn_keepalived(lab, ns, label, config, &[]);
    wait_until(Duration::from_secs(10), &format!("{label}'s BFD child"), || {
        keepalived.assert_running();
        keepalived.log().contains("Starting BFD child process")
    });
    keepalived
}

/// Starts lbd with `config` in `ns`.
fn start_lbd(lab: &mut Lab, ns: &Netns, label: &str, config: &str) -> Proc {
    start_lbd_with(lab, ns, label, config, &[])
}

/// As [`start_lbd`], with more arguments.
fn start_lbd_with(lab: &mut Lab, ns: &Netns, label: &str, config: &str, extra: &[&str]) -> Proc {
    let conf = lab.write_file(&format!("{label}.conf"), config);
    let pin = lab.bpffs().join(label);
    bins::spawn_lbd(lab, ns, label, &conf, &pin, extra)
}

/// Port of lbd's status listener, on its namespace's loopback.
const STATUS_PORT: u16 = 9112;

/// `keepalived_bfd.data` as lbd's BFD child writes it on SIGUSR1 (to the parent), once it
/// shows session `name` in `state`.
fn bfd_dump(lab: &Lab, lbd: &mut Proc, name: &str, state: &str) -> String {
    let path = lab.dir().join("keepalived_bfd.data");
    let wanted = format!(" BFD Instance = {name}\n");
    let mut text = String::new();
    wait_until(Duration::from_secs(5), &format!("keepalived_bfd.data with {name} {state}"), || {
        let _ = std::fs::remove_file(&path);
        lbd.signal(nix::sys::signal::Signal::SIGUSR1);
        std::thread::sleep(Duration::from_millis(200));
        text = std::fs::read_to_string(&path).unwrap_or_default();
        text.contains(&wanted) && text.contains(&format!("   local state = {state}\n"))
    });
    text
}

/// The value of the dump line `   NAME = VALUE`.
fn dump_value<'a>(text: &'a str, name: &str) -> &'a str {
    let prefix = format!("   {name} = ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// The sample of `metric` with `labels` in lbd's `/metrics`.
fn metric(metrics: &str, metric: &str, labels: &str) -> f64 {
    let prefix = format!("{metric}{{{labels}}} ");
    let line = metrics.lines().find_map(|l| l.strip_prefix(&prefix));
    line.unwrap_or_else(|| panic!("no {prefix} in\n{metrics}")).parse().unwrap()
}

/// lbd's `/status` session `name`.
fn status_session(ns: &Netns, name: &str) -> serde_json::Value {
    let status: serde_json::Value =
        serde_json::from_str(&ns.http_get(&format!("http://127.0.0.1:{STATUS_PORT}/status"))).unwrap();
    let sessions = status["bfd"].as_array().unwrap_or_else(|| panic!("no bfd in {status}"));
    sessions.iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no {name} in {status}")).clone()
}

/// Waits until `process`'s log from byte `mark` on contains `line`.
fn wait_for_line(process: &mut Proc, mark: usize, line: &str, timeout: Duration) {
    wait_until(timeout, line, || {
        process.assert_running();
        process.log().get(mark..).unwrap_or_default().contains(line)
    });
}

/// Seconds since midnight UTC now.
fn now_of_day() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64() % 86_400.0
}

/// Seconds since midnight UTC of the timestamp of lbd's first log line after byte `mark` that
/// contains `what` (lbd logs `2026-11-30T12:29:19.591561Z  WARN ...`).
fn logged_at(log: &str, mark: usize, what: &str) -> f64 {
    let line = log.get(mark..).unwrap_or_default().lines().find(|l| l.contains(what)).unwrap();
    let time = line.split('T').nth(1).unwrap().split('Z').next().unwrap();
    let mut parts = time.split(':').map(|p| p.parse::<f64>().unwrap());
    let (h, m, s) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
    h * 3600.0 + m * 60.0 + s
}

#[test]
fn sessions_with_keepalived_come_up_and_a_death_is_detected_within_the_detection_time() {
    let mut lab = Lab::new();
    let a = lab.netns("lbd");
    let b = lab.netns("ka");
    lab.veth(&a, "eth0", &b, "eth0");
    a.addr("eth0", "10.52.0.1/24");
    b.addr("eth0", "10.52.0.2/24");

    let ka_config = config("ka-bfd", "", &[bfd_instance("to_lbd", "10.52.0.1", "  source_ip 10.52.0.2\n")]);
    let mut keepalived = start_keepalived(&lab, &b, "ka", &ka_config);
    let lbd_config = bfd_instance("to_ka", "10.52.0.2", "  source_ip 10.52.0.1\n");
    let listen = format!("--status-listen=127.0.0.1:{STATUS_PORT}");
    let mut lbd = start_lbd_with(&mut lab, &a, "lbd", &lbd_config, &[&listen]);
    wait_for_line(&mut lbd, 0, "Starting BFD child process", Duration::from_secs(10));
    // Only the BFD child: the configuration has no VRRP instance and no virtual server.
    assert!(!lbd.log().contains("Starting VRRP child"), "{}", lbd.log());
    assert!(!lbd.log().contains("Starting Healthcheck child"), "{}", lbd.log());
    wait_for_line(&mut lbd, 0, "BFD_Instance(to_ka) Entering Up state", Duration::from_secs(15));
    wait_for_line(&mut keepalived, 0, "(to_lbd) Entering Up state", Duration::from_secs(5));
    // keepalived agreed to lbd's 50 ms rates by the poll sequence.
    wait_for_line(&mut keepalived, 0, "Detection time is 250000 us", Duration::from_secs(5));

    // Up and steady at 50 ms for two seconds.
    let mark = lbd.log().len();
    std::thread::sleep(Duration::from_secs(2));
    assert!(!lbd.log()[mark..].contains("Entering Down"), "flapped:\n{}", lbd.log());
    assert!(!keepalived.log().contains("Entering Down"), "keepalived flapped:\n{}", keepalived.log());

    // SIGUSR1: the BFD child writes keepalived_bfd.data with the session's variables. The
    // remote discriminator is keepalived's: the one it logs with -D is not printed, but it is
    // the one lbd's packets carry, and non-zero only once heard.
    let up = bfd_dump(&lab, &mut lbd, "to_ka", "Up");
    assert!(up.starts_with("------< Global definitions >------\n"), "{up}");
    assert!(up.contains("------< BFD Topology >------\n BFD Instance = to_ka\n   Neighbor IP = 10.52.0.2\n"));
    assert!(lbd.log().contains("keepalived_bfd.data"), "{}", lbd.log());
    for (name, value) in [
        ("Source IP", "10.52.0.1"),
        ("Required min RX interval", "50000 us"),
        ("Detection multiplier", "5"),
        ("remote state", "Up"),
        ("local diag", "No Diagnostic"),
        // keepalived's 50 ms × 5 after its poll sequence.
        ("remote min tx intv", "50000 us"),
        ("remote detect multiplier", "5"),
        ("local tx intv", "50000 us"),
        ("local detection time", "250000 us"),
    ] {
        assert_eq!(dump_value(&up, name), value, "{name} in\n{up}");
    }
    let remote_discr =
        u32::from_str_radix(dump_value(&up, "remote discriminator").trim_start_matches("0x"), 16).unwrap();
    assert_ne!(remote_discr, 0, "{up}");
    let last_seen: f64 = dump_value(&up, "last seen").split(' ').next().unwrap().parse().unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((now - 2.0..=now).contains(&last_seen), "last seen {last_seen}, now {now}:\n{up}");

    // /status and /metrics show the same session.
    let session = status_session(&a, "to_ka");
    assert_eq!(session["state"], "Up", "{session}");
    assert_eq!(session["remote_discriminator"], remote_discr, "{session}");
    assert_eq!(session["detection_time_us"], 250_000, "{session}");
    let up_since = session["last_state_change"].as_f64().unwrap();
    let metrics = a.http_get(&format!("http://127.0.0.1:{STATUS_PORT}/metrics"));
    let labels = r#"instance="to_ka",neighbor="10.52.0.2""#;
    assert_eq!(metric(&metrics, "lbd_bfd_session_state", &format!("{labels},state=\"Up\"")), 1.0);
    assert_eq!(metric(&metrics, "lbd_bfd_session_state", &format!("{labels},state=\"Down\"")), 0.0);
    assert_eq!(metric(&metrics, "lbd_bfd_session_up", labels), 1.0);
    assert_eq!(metric(&metrics, "lbd_bfd_remote_discriminator", labels), f64::from(remote_discr));
    assert_eq!(metric(&metrics, "lbd_bfd_detection_time_seconds", labels), 0.25);

    // keepalived killed: down within the detection time.
    let mark = lbd.log().len();
    let killed = now_of_day();
    keepalived.kill();
    wait_for_line(
        &mut lbd,
        mark,
        "BFD_Instance(to_ka) Entering Down state (local diag - TimeExpired)",
        Duration::from_secs(5),
    );
    let took = logged_at(&lbd.log(), mark, "Entering Down state") - killed;
    eprintln!("session down {:.0} ms after keepalived was killed (detection time 250 ms)", took * 1000.0);
    assert!(took >= 0.0 && took <= (DETECTION + SLACK).as_secs_f64(), "down after {took} s:\n{}", lbd.log());

    // The dump and the endpoints show it Down, the remote forgotten, the change after the Up.
    let down = bfd_dump(&lab, &mut lbd, "to_ka", "Down");
    assert_eq!(dump_value(&down, "local diag"), "Control Detection Time Expired", "{down}");
    assert_eq!(dump_value(&down, "remote discriminator"), "0x0", "{down}");
    assert_eq!(dump_value(&down, "local tx intv"), "1000000 us", "back to idle_tx:\n{down}");
    let session = status_session(&a, "to_ka");
    assert_eq!(
        (&session["state"], &session["remote_discriminator"]),
        (&"Down".into(), &0.into()),
        "{session}"
    );
    let down_since = session["last_state_change"].as_f64().unwrap();
    assert!(down_since > up_since + 1.5, "state changes at {up_since} and {down_since}");
    let metrics = a.http_get(&format!("http://127.0.0.1:{STATUS_PORT}/metrics"));
    assert_eq!(metric(&metrics, "lbd_bfd_session_state", &format!("{labels},state=\"Down\"")), 1.0);
    assert_eq!(metric(&metrics, "lbd_bfd_session_up", labels), 0.0);
    assert_eq!(metric(&metrics, "lbd_bfd_last_state_change_timestamp_seconds", labels), down_since);

    // keepalived back: up again.
    let mark = lbd.log().len();
    let mut keepalived = start_keepalived(&lab, &b, "ka-again", &ka_config);
    wait_for_line(&mut lbd, mark, "BFD_Instance(to_ka) Entering Up state", Duration::from_secs(15));

    // lbd's BFD child killed: keepalived sees the session go down, the parent starts a new
    // child, and the session comes up again.
    let bfd_pid: i32 =
        std::fs::read_to_string(lab.dir().join("lbd-bfd.pid")).unwrap().trim().parse().unwrap();
    let mark = lbd.log().len();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(bfd_pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_for_line(&mut keepalived, 0, "(to_lbd) Entering Down state", Duration::from_secs(5));
    wait_for_line(&mut lbd, mark, "BFD child process(", Duration::from_secs(5));
    wait_for_line(&mut lbd, mark, "BFD_Instance(to_ka) Entering Up state", Duration::from_secs(15));
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn a_real_server_whose_bfd_peer_dies_gets_no_traffic_until_it_returns() {
    let mut lab = Lab::new();
    let LbHosts { switch: _switch, client, lb, reals } = lab.lb_hosts(2).with_addresses();
    let _web: Vec<Proc> = (1..)
        .zip(&reals)
        .map(|(i, ns)| ns.spawn("web", bins::web(), &[&format!("r{i}"), "0.0.0.0:8080"]))
        .collect();
    let ka_config = config("ka-r1", "", &[bfd_instance("lb", "10.31.0.1", "")]);
    let _keepalived = start_keepalived(&lab, &reals[0], "ka", &ka_config);
    let lbd_config = format!(
        "{}virtual_server 10.40.0.100 80 {{\n  delay_loop 1\n  lb_algo rr\n  lb_kind NAT\n  protocol TCP\n\
           real_server 10.31.0.11 8080 {{\n    BFD_CHECK {{\n      name r1\n    }}\n  }}\n\
           real_server 10.31.0.12 8080 {{\n    TCP_CHECK {{\n      connect_timeout 1\n      retry 0\n    }}\n  }}\n}}\n",
        bfd_instance("r1", "10.31.0.11", "")
    );
    let mut lbd = start_lbd(&mut lab, &lb, "lbd", &lbd_config);
    wait_for_line(&mut lbd, 0, "BFD_Instance(r1) Entering Up state", Duration::from_secs(20));
    // `answers` fails at the first failed request: the data plane must be in place first (the
    // session can come up before the XDP program has passed the verifier).
    wait_for_line(&mut lbd, 0, "XDP program attached", Duration::from_secs(30));
    let both = set(&["r1", "r2"]);
    wait_until(Duration::from_secs(10), "both reals to answer through the VIP", || {
        answers(&client, "10.40.0.100", 6, &lbd) == both
    });

    // r1's BFD peer dies: r1 is taken out, and no request fails or reaches it.
    let mark = lbd.log().len();
    drop(_keepalived);
    wait_for_line(
        &mut lbd,
        mark,
        "Removing service [10.31.0.11]:tcp:8080 from VS [10.40.0.100]:tcp:80",
        DETECTION + Duration::from_secs(3),
    );
    assert!(lbd.log()[mark..].contains("BFD check of [r1] RS([10.31.0.11]:tcp:8080)"), "{}", lbd.log());
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(answers(&client, "10.40.0.100", 8, &lbd), set(&["r2"]), "with r1's peer dead");

    // The peer returns: r1 is back.
    let _keepalived = start_keepalived(&lab, &reals[0], "ka-again", &ka_config);
    wait_until(Duration::from_secs(15), "r1 to answer through the VIP again", || {
        answers(&client, "10.40.0.100", 6, &lbd) == both
    });
}

#[test]
fn track_bfd_moves_a_vip_and_faults_an_instance_without_weight() {
    let mut lab = Lab::new();
    let routers = lan(&mut lab, 53, 3);
    let (vip, vip2) = ("10.53.0.100/24", "10.53.0.101/24");
    let ka_config = config("ka-peer", "", &[bfd_instance("to_r1", "10.53.0.1", "")]);
    let keepalived = start_keepalived(&lab, &routers[2], "ka", &ka_config);

    let track = |weight: &str| format!("  track_bfd {{\n    peer{weight}\n  }}\n");
    let r1 = config(
        "r1",
        "",
        &[
            bfd_instance("peer", "10.53.0.3", ""),
            instance("VI_1", 53, 150, ADVERT_TEXT, &[vip], &track(" weight -100")),
            instance("VI_2", 54, 150, ADVERT_TEXT, &[vip2], &track("")),
        ],
    );
    let r2 = config("r2", "", &[instance("VI_1", 53, 100, ADVERT_TEXT, &[vip], "")]);
    let (w1, w2) =
        (VipWatch::start(&routers[0], "r1", ip4(53, 100)), VipWatch::start(&routers[1], "r2", ip4(53, 100)));
    let mut lbd1 = start_lbd(&mut lab, &routers[0], "lbd1", &r1);
    let _lbd2 = start_lbd(&mut lab, &routers[1], "lbd2", &r2);
    wait_for_line(&mut lbd1, 0, "BFD_Instance(peer) Entering Up state", Duration::from_secs(20));
    w1.wait_for(true, Duration::from_secs(10));
    w2.wait_for(false, Duration::from_secs(5));
    wait_for_line(&mut lbd1, 0, "(VI_2) Entering MASTER STATE", Duration::from_secs(5));

    // The peer dies: VI_1's priority drops by 100 and r2 takes the VIP; VI_2 faults.
    let mark = lbd1.log().len();
    drop(keepalived);
    // r2 preempts once r1's lower priority adverts have kept it waiting a Master_Down_Interval
    // (VRRPv2 rounds the 0.2 s interval to 1 s: 3.6 s).
    w2.wait_for(true, DETECTION + Duration::from_secs(6));
    w1.wait_for(false, Duration::from_secs(2));
    wait_for_line(
        &mut lbd1,
        mark,
        "(VI_1) Changing effective priority from 150 to 50",
        Duration::from_secs(1),
    );
    wait_for_line(&mut lbd1, mark, "(VI_2) Entering FAULT STATE", Duration::from_secs(1));
    assert!(lbd1.log()[mark..].contains("VRRP_Track_BFD(peer) down"), "{}", lbd1.log());

    // The peer returns: r1 takes the VIP back (it preempts), VI_2 leaves FAULT.
    let mark = lbd1.log().len();
    let _keepalived = start_keepalived(&lab, &routers[2], "ka-again", &ka_config);
    w1.wait_for(true, Duration::from_secs(15));
    w2.wait_for(false, Duration::from_secs(2));
    wait_for_line(&mut lbd1, mark, "(VI_2) Entering MASTER STATE", Duration::from_secs(5));
}

#[test]
fn an_orderly_stop_takes_the_peers_session_down_with_admin_down() {
    let mut lab = Lab::new();
    let a = lab.netns("lbd");
    let b = lab.netns("ka");
    lab.veth(&a, "eth0", &b, "eth0");
    a.addr("eth0", "10.54.0.1/24");
    b.addr("eth0", "10.54.0.2/24");
    // A detection time of 10 s (1 s × 10): keepalived's session going down within 2 s of
    // lbd's SIGTERM can only be lbd's AdminDown, not a timeout.
    let slow = |name: &str, neighbor: &str, source: &str| {
        format!(
            "bfd_instance {name} {{\n  neighbor_ip {neighbor}\n  source_ip {source}\n  min_rx 1000\n  \
             min_tx 1000\n  multiplier 10\n}}\n"
        )
    };
    let ka_config = config("ka-bfd", "", &[slow("to_lbd", "10.54.0.1", "10.54.0.2")]);
    let mut keepalived = start_keepalived(&lab, &b, "ka", &ka_config);
    let mut lbd = start_lbd(&mut lab, &a, "lbd", &slow("to_ka", "10.54.0.2", "10.54.0.1"));
    wait_for_line(&mut lbd, 0, "BFD_Instance(to_ka) Entering Up state", Duration::from_secs(20));
    wait_for_line(&mut keepalived, 0, "(to_lbd) Entering Up state", Duration::from_secs(10));

    let mark = keepalived.log().len();
    lbd.signal(nix::sys::signal::Signal::SIGTERM);
    wait_for_line(&mut keepalived, mark, "(to_lbd) Entering Down state", Duration::from_secs(2));
    let status = lbd.wait(Duration::from_secs(10));
    assert!(status.success(), "lbd stopped: {status:?}\n{}", lbd.log());
    assert!(
        lbd.log().contains("BFD_Instance(to_ka) Entering AdminDown state (local diag - AdminDown)"),
        "{}",
        lbd.log()
    );
}
