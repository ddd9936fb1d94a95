//! keepalived 2.2.7's finer checker options, through real sockets: `bind_if` (the probe leaves
//! by the named interface, which a link-local real server needs), HTTP_GET's `connect_timeout`
//! on each read of the answer rather than on the whole of it, `fast_recovery`, and how an
//! SMTP_CHECK's `host` blocks inherit (or not) the SMTP_CHECK's options. Each scenario is
//! judged by lbd's verdicts ("Adding service" / "Removing service") on real servers in
//! namespaces.
//!
//! ```text
//!  lb ── via-a 10.51.0.1/24, fe80::1 ──── eth-a 10.51.0.2/24, fe80::3 ── real
//!     ── via-b fe80::1 ─────────────────── eth-b fe80::2 ─────────────────
//! ```
//! The real server's fe80::2 is on its link b only: IPv6 answers neighbour solicitations for a
//! link-local address only on its own link, so a probe of fe80::2 succeeds only if it leaves
//! the load balancer by via-b.
#![expect(clippy::unwrap_used, reason = "tests: a failed step is a failed test")]

use std::time::{Duration, Instant};

use lb_tests::{
    bins,
    lab::{Lab, Netns, wait_until},
    pages::{Answer, Pages},
    process::Proc,
};

/// The load balancer and the real server, wired as drawn above.
fn topology(lab: &mut Lab) -> (Netns, Netns) {
    let lb = lab.netns("lb");
    let real = lab.netns("real");
    lab.veth(&lb, "via-a", &real, "eth-a");
    lab.veth(&lb, "via-b", &real, "eth-b");
    lb.addr("via-a", "10.51.0.1/24");
    real.addr("eth-a", "10.51.0.2/24");
    for (ns, interface, address) in [
        (&lb, "via-a", "fe80::1/64"),
        (&lb, "via-b", "fe80::1/64"),
        (&real, "eth-a", "fe80::3/64"),
        (&real, "eth-b", "fe80::2/64"),
    ] {
        ns.addr(interface, address);
    }
    (lb, real)
}

/// A virtual server `vip` port 80 (delay_loop `delay_loop`) with real server `real` `port`
/// checked by `check`.
fn vs(vip: &str, delay_loop: u32, real: &str, port: u16, check: &str) -> String {
    format!(
        "virtual_server {vip} 80 {{\n    delay_loop {delay_loop}\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n    \
         real_server {real} {port} {{\n        {check}\n    }}\n}}\n"
    )
}

/// `virtual_servers` after a `global_defs`: the configuration file's text.
fn config_file(virtual_servers: &str) -> String {
    format!("global_defs {{\n    router_id lbt-kchecks\n}}\n{virtual_servers}")
}

/// Starts lbd on [`config_file`]`(virtual_servers)` in `lb` and waits for its first
/// data-plane update.
fn start_lbd(lab: &mut Lab, lb: &Netns, virtual_servers: &str) -> Proc {
    let config = lab.write_file("keepalived.conf", &config_file(virtual_servers));
    let pin_dir = lab.bpffs().join("lbd");
    bins::start_lbd(lab, lb, &config, &pin_dir, &[])
}

/// Whether lbd's log has `real`:`port` entering (`up`) or leaving `vip`.
fn logged(lbd: &Proc, up: bool, real: &str, port: u16, vip: &str) -> bool {
    let line = if up {
        format!("Adding service [{real}]:tcp:{port} to VS [{vip}]:tcp:80")
    } else {
        format!("Removing service [{real}]:tcp:{port} from VS [{vip}]:tcp:80")
    };
    lbd.log().contains(&line)
}

/// bind_if with a link-local real server: the checks that leave by via-b (TCP_CHECK, HTTP_GET,
/// PING_CHECK, UDP_CHECK, each alpha) bring fe80::2 up; the same TCP_CHECK bound to via-a takes it down;
/// an interface that does not exist fails every probe with keepalived's message; a link-local
/// real server without bind_if is keepalived's configuration error, with its line.
#[test]
fn bind_if_sends_the_probe_by_the_named_interface() {
    let mut lab = Lab::new();
    let (lb, real) = topology(&mut lab);
    let mut web = real.spawn("web", bins::web(), &["r6", "[::]:8081"]);
    let _echo = real.spawn("echo", bins::udp_echo(), &["r6", "[::]:5353"]);
    wait_until(Duration::from_secs(5), "the web server", || {
        web.assert_running();
        web.log().contains("listening")
    });
    let ll = |extra: &str, device: &str| {
        format!(
            "{extra}\n        bindto fe80::1\n        bind_if {device}\n        connect_timeout 1\n        retry 0\n"
        )
    };
    let config = [
        vs("2001:db8:52::10", 1, "fe80::2", 8081, &format!("TCP_CHECK {{\n{}}}", ll("alpha", "via-b"))),
        vs("2001:db8:52::11", 1, "fe80::2", 8081, &format!("TCP_CHECK {{\n{}}}", ll("", "via-a"))),
        vs(
            "2001:db8:52::12",
            1,
            "fe80::2",
            8081,
            &format!(
                "HTTP_GET {{\n{}        url {{\n            path /\n        }}\n}}",
                ll("alpha", "via-b")
            ),
        ),
        vs("2001:db8:52::13", 1, "fe80::2", 8081, &format!("PING_CHECK {{\n{}}}", ll("alpha", "via-b"))),
        vs("2001:db8:52::14", 1, "fe80::2", 8081, &format!("TCP_CHECK {{\n{}}}", ll("", "nosuch0"))),
        vs("2001:db8:52::15", 1, "fe80::2", 8081, "TCP_CHECK {\n        connect_timeout 1\n    }"),
        // The echo server's answer, "r6\n", starts 72 36.
        vs(
            "2001:db8:52::16",
            1,
            "fe80::2",
            8081,
            &format!(
                "UDP_CHECK {{\n{}        connect_port 5353\n        require_reply 7236\n}}",
                ll("alpha", "via-b")
            ),
        ),
    ]
    .concat();
    let lbd = start_lbd(&mut lab, &lb, &config);
    let up = |vip: &str| logged(&lbd, true, "fe80::2", 8081, vip);
    let down = |vip: &str| logged(&lbd, false, "fe80::2", 8081, vip);
    wait_until(Duration::from_secs(6), "the checks by via-b to bring fe80::2 up", || {
        ["2001:db8:52::10", "2001:db8:52::12", "2001:db8:52::13", "2001:db8:52::16"].iter().all(|vip| up(vip))
    });
    wait_until(Duration::from_secs(6), "the checks by via-a and nosuch0 to take fe80::2 down", || {
        down("2001:db8:52::11") && down("2001:db8:52::14")
    });
    let log = lbd.log();
    assert!(
        log.contains("Checker can't bind to device nosuch0: No such device"),
        "keepalived's message for an unknown interface:\n{log}"
    );
    // A link-local real server without bind_if: an error naming the file and the checker's
    // line (the last TCP_CHECK), and no checker.
    let text = config_file(&config);
    let line = text.lines().collect::<Vec<_>>().iter().rposition(|l| l.contains("TCP_CHECK")).unwrap() + 1;
    assert!(
        log.lines().any(|l| l.contains(&format!("keepalived.conf:{line}:"))
            && l.contains(
                "error: Checker link local address fe80::2 requires a bind_if - ignoring TCP_CHECK"
            )),
        "a link-local real server without bind_if, at line {line}:\n{log}"
    );
    assert!(!up("2001:db8:52::15") && !down("2001:db8:52::15"), "no checker for it:\n{log}");
    // A few more cycles: the verdicts hold.
    std::thread::sleep(Duration::from_secs(3));
    for vip in ["2001:db8:52::10", "2001:db8:52::12", "2001:db8:52::13", "2001:db8:52::16"] {
        assert!(!down(vip), "{vip}: fe80::2 stays up by via-b\n{}", lbd.log());
    }
    for vip in ["2001:db8:52::11", "2001:db8:52::14"] {
        assert!(!up(vip), "{vip}: fe80::2 stays down\n{}", lbd.log());
    }
}

/// A page whose 200 answer comes in `pieces` bytes of body, each `pause` after the one before.
fn slow_page(pieces: usize, pause: Duration) -> Answer {
    let mut parts = vec![(Duration::ZERO, b"HTTP/1.0 200 OK\r\n\r\n".to_vec())];
    parts.extend((0..pieces).map(|_| (pause, b"x".to_vec())));
    Answer::Pieces(parts)
}

/// HTTP_GET's connect_timeout limits each read of the answer, as keepalived's (observed:
/// keepalived 2.2.7 passes a page sent a byte every 0.7 s for 4.2 s with connect_timeout 1, and
/// fails one that stalls 1.5 s mid-answer): a slow page whose pauses are each shorter than
/// connect_timeout passes however long it takes in all; a stall longer than connect_timeout
/// fails the check; the same stall passes with a longer connect_timeout.
#[test]
fn connect_timeout_limits_each_read_of_the_answer_not_the_whole() {
    let mut lab = Lab::new();
    let (lb, real) = topology(&mut lab);
    let _pages = Pages::serve(
        &real,
        "10.51.0.2:8090".parse().unwrap(),
        vec![
            // Six pauses of 0.6 s: 3.6 s in all, three times connect_timeout.
            ("/slow", slow_page(6, Duration::from_millis(600))),
            (
                "/stall",
                Answer::Pieces(vec![
                    (Duration::ZERO, b"HTTP/1.0 200 OK\r\n\r\nx".to_vec()),
                    (Duration::from_millis(1600), b"y".to_vec()),
                ]),
            ),
        ],
    );
    let http = |path: &str, timeout: u32, alpha: &str| {
        format!(
            "HTTP_GET {{\n        url {{\n            path {path}\n        }}\n        connect_timeout {timeout}\n        \
             retry 0\n        {alpha}\n    }}"
        )
    };
    let config = [
        vs("10.52.0.20", 2, "10.51.0.2", 8090, &http("/slow", 1, "alpha")),
        vs("10.52.0.21", 2, "10.51.0.2", 8090, &http("/stall", 1, "")),
        vs("10.52.0.22", 2, "10.51.0.2", 8090, &http("/stall", 2, "alpha")),
    ]
    .concat();
    let lbd = start_lbd(&mut lab, &lb, &config);
    let seen = |up: bool, vip: &str| logged(&lbd, up, "10.51.0.2", 8090, vip);
    wait_until(Duration::from_secs(15), "the slow page and the short stall to pass", || {
        seen(true, "10.52.0.20") && seen(true, "10.52.0.22")
    });
    wait_until(Duration::from_secs(10), "the long stall to fail", || seen(false, "10.52.0.21"));
    std::thread::sleep(Duration::from_secs(5));
    assert!(!seen(false, "10.52.0.20") && !seen(false, "10.52.0.22"), "they stay up:\n{}", lbd.log());
    assert!(!seen(true, "10.52.0.21"), "it stays down:\n{}", lbd.log());
}

/// fast_recovery, as keepalived 2.2.7's HTTP_GET: after a failure the failed url passes, then
/// every url is checked again before the real comes back; without fast_recovery one url per
/// delay_loop, with it all at once. Three urls, delay_loop 2: without fast_recovery the real
/// comes back no sooner than three delay_loops after the server does; with it, within the
/// down checker's retry interval (delay_loop) and a little.
#[test]
fn fast_recovery_brings_the_real_back_once_every_url_passed_at_once() {
    let mut lab = Lab::new();
    let (lb, real) = topology(&mut lab);
    let http = |fast: &str| {
        let url = |path: &str| format!("        url {{\n            path {path}\n        }}\n");
        format!(
            "HTTP_GET {{\n{}{}{}        connect_timeout 1\n        retry 0\n        delay_before_retry 1\n        {fast}\n    }}",
            url("/a"),
            url("/b"),
            url("/c")
        )
    };
    let config = [
        vs("10.52.0.30", 2, "10.51.0.2", 8091, &http("fast_recovery")),
        vs("10.52.0.31", 2, "10.51.0.2", 8091, &http("")),
    ]
    .concat();
    // Nothing listens yet: both checkers go down at their first probe.
    let lbd = start_lbd(&mut lab, &lb, &config);
    let seen = |up: bool, vip: &str| logged(&lbd, up, "10.51.0.2", 8091, vip);
    wait_until(Duration::from_secs(8), "both checkers down", || {
        seen(false, "10.52.0.30") && seen(false, "10.52.0.31")
    });
    let _pages = Pages::serve(&real, "10.51.0.2:8091".parse().unwrap(), vec![]);
    let back = Instant::now();
    wait_until(Duration::from_secs(4), "fast_recovery to bring the real back", || seen(true, "10.52.0.30"));
    let fast = back.elapsed();
    wait_until(Duration::from_secs(15), "the real back without fast_recovery", || seen(true, "10.52.0.31"));
    let slow = back.elapsed();
    assert!(
        slow >= Duration::from_millis(5_900),
        "without fast_recovery: a pass of the failed url, then /a, /b and /c a delay_loop apart \
         ({slow:?}, fast_recovery {fast:?})\n{}",
        lbd.log()
    );
}

/// SMTP_CHECK host blocks as keepalived 2.2.7 builds them (observed with `keepalived -C -d`): a
/// host takes none of the SMTP_CHECK's connection options, not even its connect_timeout, and
/// without one of its own its timeout is 0, so that its check always fails; with its own it
/// checks its server. The SMTP_CHECK's own connection (it sets connect_timeout) is checked too.
#[test]
fn smtp_host_blocks_have_their_own_connection_options() {
    let mut lab = Lab::new();
    let (lb, real) = topology(&mut lab);
    let mut services = real.spawn("services", bins::services(), &["r1"]);
    wait_until(Duration::from_secs(10), "lbt-services", || {
        services.assert_running();
        services.log().contains("listening")
    });
    let smtp = |host: &str| {
        format!(
            "SMTP_CHECK {{\n        connect_timeout 1\n        retry 0\n        host {{\n{host}        }}\n    }}"
        )
    };
    let config = [
        vs("10.52.0.40", 1, "10.51.0.2", 25, &smtp("            connect_ip 10.51.0.2\n")),
        vs(
            "10.52.0.41",
            1,
            "10.51.0.2",
            25,
            &smtp("            connect_ip 10.51.0.2\n            connect_timeout 1\n"),
        ),
    ]
    .concat();
    let lbd = start_lbd(&mut lab, &lb, &config);
    let seen = |up: bool, vip: &str| logged(&lbd, up, "10.51.0.2", 25, vip);
    wait_until(Duration::from_secs(6), "the host without connect_timeout to fail", || {
        seen(false, "10.52.0.40")
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(!seen(false, "10.52.0.41"), "the host with its own connect_timeout passes:\n{}", lbd.log());
    assert!(!seen(true, "10.52.0.40"), "a host without connect_timeout never passes:\n{}", lbd.log());
    assert!(
        lbd.log().contains("SMTP_CHECK host without connect_timeout"),
        "the notice at the host's line:\n{}",
        lbd.log()
    );
}
