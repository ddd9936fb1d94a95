//! lbd's health checkers driving forwarding: a real server whose web server is killed stops
//! getting requests through the VIP within one check cycle, no request fails once that is
//! detected, and it gets requests again when it recovers. One virtual server per checker
//! (TCP_CHECK, HTTP_GET with digests, MISC_CHECK, SSL_GET against self-signed `openssl
//! s_server`s), and one whose quorum is lost to a sorry server, with its quorum scripts, and one
//! whose hysteresis keeps it. Detection is timed against delay_loop + connect_timeout; a
//! genhash digest of a chunked page keeps its real up; alpha, notify scripts,
//! inhibit_on_failure, misc_dynamic, FILE_CHECK and connect_ip each have a scenario.
//!
//! ```text
//!  client 10.30.0.2 ── [front] ── 10.30.0.1 lb 10.31.0.1 ── [back] ── r1 .11  r2 .12  r3 .13 (+ sorry :9090)
//!  VIPs 10.40.0.100 (TCP_CHECK), .101 (HTTP_GET), .102 (MISC_CHECK), .103 (quorum 3, sorry server)
//!  10.40.0.104:443 (SSL_GET, reals' TLS servers on 8443), .106 (quorum 3, hysteresis 1)
//! ```
#![expect(clippy::unwrap_used, reason = "tests: a failed step is a failed test")]

use std::{collections::BTreeSet, path::Path, time::Duration};

use lb_tests::{
    bins,
    lab::{Lab, LbHosts, Netns, answers, wait_until},
    pages::{Answer, Pages},
    process::Proc,
};
use nix::sys::signal::Signal;

/// The TLS service's page, through its VIP.
const TLS_URL: &str = "https://10.40.0.104/page.http";

/// One check cycle (delay_loop 1) plus connect_timeout 1 and slack for a loaded machine.
const DETECTION: Duration = Duration::from_secs(4);

fn config(dir: &Path) -> String {
    let reals = |check: &dyn Fn(u32) -> String| {
        (1..=3)
            .map(|i| format!("    real_server 10.31.0.1{i} 8080 {{\n{}    }}\n", check(i)))
            .collect::<String>()
    };
    let vs = |vip: &str, extra: &str, body: String| {
        format!(
            "virtual_server {vip} 80 {{\n    delay_loop 1\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n{extra}{body}}}\n"
        )
    };
    let tcp =
        |_| "        TCP_CHECK {\n            connect_timeout 1\n            retry 0\n        }\n".to_owned();
    let http = |i| {
        let digest = lb_daemon::genhash::hex(&lb_daemon::genhash::body_digest(format!("r{i}\n").as_bytes()));
        format!(
            "        HTTP_GET {{\n            url {{\n                path /\n                digest {digest}\n            }}\n            connect_timeout 1\n            retry 0\n        }}\n"
        )
    };
    let misc = |i| {
        format!(
            "        MISC_CHECK {{\n            misc_path \"/usr/bin/curl -sf -o /dev/null --max-time 1 http://10.31.0.1{i}:8080/\"\n            misc_timeout 2\n            retry 0\n        }}\n"
        )
    };
    let ssl = |i| {
        let digest = lb_daemon::genhash::hex(&lb_daemon::genhash::body_digest(format!("r{i}\n").as_bytes()));
        format!(
            "        SSL_GET {{\n            url {{\n                path /page.http\n                digest {digest}\n            }}\n            connect_timeout 1\n            retry 0\n        }}\n"
        )
    };
    let tls_reals = reals(&ssl).replace(" 8080 {", " 8443 {");
    let dir = dir.display();
    let quorum = format!(
        "    quorum 3\n    quorum_up \"/usr/bin/touch {dir}/quorum-up\"\n    quorum_down \"/usr/bin/touch {dir}/quorum-down\"\n    sorry_server 10.31.0.13 9090\n"
    );
    // Quorum 3 with hysteresis 1: lost below 2 alive, so one dead real does not lose it.
    let hysteresis = format!(
        "    quorum 3\n    hysteresis 1\n    quorum_down \"/usr/bin/touch {dir}/hysteresis-down\"\n    sorry_server 10.31.0.13 9090\n"
    );
    [
        "global_defs {\n    router_id lbt-checks\n}\n".to_owned(),
        vs("10.40.0.100", "", reals(&tcp)),
        vs("10.40.0.101", "", reals(&http)),
        vs("10.40.0.102", "", reals(&misc)),
        vs("10.40.0.103", &quorum, reals(&tcp)),
        vs("10.40.0.104", "", tls_reals).replace("10.40.0.104 80 {", "10.40.0.104 443 {"),
        vs("10.40.0.106", &hysteresis, reals(&tcp)),
    ]
    .concat()
}

/// A self-signed TLS server (`openssl s_server -HTTP`) in `ns` on port 8443, serving
/// `page.http` from `dir`.
fn tls_server(ns: &Netns, dir: &Path, cert: &Path) -> Proc {
    let script = format!(
        "cd {} && exec openssl s_server -accept 8443 -cert {} -key {} -HTTP -quiet",
        dir.display(),
        cert.join("cert.pem").display(),
        cert.join("key.pem").display()
    );
    ns.spawn("tls", "sh", &["-c", &script])
}

/// lbd's log from byte `mark` on.
fn since(lbd: &Proc, mark: usize) -> String {
    lbd.log().get(mark..).unwrap_or_default().to_owned()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// The client, the load balancer and the three real servers' namespaces, wired as drawn above.
struct Topology {
    client: Netns,
    lb: Netns,
    reals: Vec<Netns>,
    _switch: Netns,
}

fn topology(lab: &mut Lab) -> Topology {
    let LbHosts { switch, client, lb, reals } = lab.lb_hosts(3).with_addresses();
    Topology { client, lb, reals, _switch: switch }
}

/// Starts lbd on `config` in the load balancer and waits for its first data-plane update.
fn start_lbd(lab: &mut Lab, lb: &Netns, config: &str) -> Proc {
    let config = lab.write_file("keepalived.conf", config);
    let pin_dir = lab.bpffs().join("lbd");
    let mut lbd = bins::spawn_lbd(lab, lb, "lbd", &config, &pin_dir, &[]);
    wait_until(Duration::from_secs(30), "lbd to program its virtual servers", || {
        lbd.assert_running();
        lbd.log().contains("data plane:")
    });
    lbd
}

#[test]
fn checkers_take_a_dead_real_server_out_and_bring_it_back() {
    let mut lab = Lab::new();
    let Topology { client, lb, reals: hosts, _switch } = topology(&mut lab);
    let mut reals = Vec::new();
    for (i, ns) in hosts.into_iter().enumerate() {
        let name = format!("r{}", i + 1);
        let server = ns.spawn("web", bins::web(), &[&name, "0.0.0.0:8080"]);
        reals.push((ns, server));
    }
    let _sorry = reals[2].0.spawn("sorry", bins::web(), &["sorry", "0.0.0.0:9090"]);

    let dir = lab.dir().to_owned();
    lab.self_signed_cert("lbt-checks");
    let mut tls = Vec::new();
    for (i, (ns, _)) in reals.iter().enumerate() {
        let page_dir = dir.join(format!("r{}", i + 1));
        std::fs::create_dir_all(&page_dir).unwrap();
        let page = format!("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nr{}\n", i + 1);
        std::fs::write(page_dir.join("page.http"), page).unwrap();
        tls.push((tls_server(ns, &page_dir, &dir), page_dir));
    }
    for (i, (ns, _)) in reals.iter().enumerate() {
        wait_until(Duration::from_secs(10), "the TLS servers", || {
            tls[i].0.assert_running();
            ns.exec("bash", &["-c", "exec 3<>/dev/tcp/127.0.0.1/8443"]).status.success()
        });
    }
    let mut lbd = start_lbd(&mut lab, &lb, &config(&dir));
    // The first checks (within the warmup of one delay_loop) find every server up.
    std::thread::sleep(Duration::from_secs(2));
    let all = set(&["r1", "r2", "r3"]);
    for vip in ["10.40.0.100", "10.40.0.101", "10.40.0.102", "10.40.0.103", TLS_URL] {
        assert_eq!(answers(&client, vip, 9, &lbd), all, "{vip} before the failure\n{}", lbd.log());
    }
    assert!(!dir.join("quorum-down").exists(), "quorum held at start:\n{}", lbd.log());
    assert!(!dir.join("quorum-up").exists(), "no quorum_up without a gain:\n{}", lbd.log());
    assert!(!lbd.log().contains("Removing service"), "every server is up at start:\n{}", lbd.log());

    // r2's web server dies.
    let mark = lbd.log().len();
    reals[1].1.kill();
    wait_until(DETECTION, "every checker to take r2 out", || {
        let log = since(&lbd, mark);
        ["100", "101", "102", "103", "106"].iter().all(|vip| {
            log.contains(&format!("Removing service [10.31.0.12]:tcp:8080 from VS [10.40.0.{vip}]:tcp:80"))
        })
    });
    let log = since(&lbd, mark);
    assert!(log.contains("TCP connection to [10.31.0.12]:tcp:8080 failed."), "{log}");
    assert!(log.contains("Lost quorum 3-0=3 > 2 for VS [10.40.0.103]:tcp:80"), "{log}");
    assert!(log.contains("Adding sorry server [10.31.0.13]:9090 to VS [10.40.0.103]:tcp:80"), "{log}");
    wait_until(Duration::from_secs(2), "quorum_down to run", || dir.join("quorum-down").exists());
    // Hysteresis: two of three alive is not below 3 - 1; .106 keeps its quorum and its reals.
    assert!(!since(&lbd, mark).contains("Lost quorum 3-1"), "{}", lbd.log());
    assert!(!dir.join("hysteresis-down").exists(), "hysteresis holds the quorum:\n{}", lbd.log());
    assert_eq!(answers(&client, "10.40.0.106", 6, &lbd), set(&["r1", "r3"]), "hysteresis: no sorry server");
    // Once detected, no request fails and none reaches r2.
    for vip in ["10.40.0.100", "10.40.0.101", "10.40.0.102"] {
        assert_eq!(answers(&client, vip, 12, &lbd), set(&["r1", "r3"]), "{vip} with r2 dead");
    }
    assert_eq!(answers(&client, "10.40.0.103", 6, &lbd), set(&["sorry"]), "quorum lost: the sorry server");

    // quorum_up runs only on the gain, not before.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!dir.join("quorum-up").exists(), "quorum_up before the gain:\n{}", lbd.log());

    // r2 recovers.
    let mark = lbd.log().len();
    let _web = reals[1].0.spawn("web-again", bins::web(), &["r2", "0.0.0.0:8080"]);
    wait_until(DETECTION, "every checker to bring r2 back", || {
        let log = since(&lbd, mark);
        ["100", "101", "102", "103"].iter().all(|vip| {
            log.contains(&format!("Adding service [10.31.0.12]:tcp:8080 to VS [10.40.0.{vip}]:tcp:80"))
        })
    });
    let log = since(&lbd, mark);
    assert!(log.contains("Gained quorum 3+0=3 <= 3 for VS [10.40.0.103]:tcp:80"), "{log}");
    wait_until(Duration::from_secs(2), "quorum_up to run", || dir.join("quorum-up").exists());
    for vip in ["10.40.0.100", "10.40.0.101", "10.40.0.102", "10.40.0.103", TLS_URL] {
        assert_eq!(answers(&client, vip, 9, &lbd), all, "{vip} after r2 recovered");
    }

    // r2's TLS server dies: SSL_GET takes it out of the TLS service only.
    let mark = lbd.log().len();
    tls[1].0.kill();
    let removed = "Removing service [10.31.0.12]:tcp:8443 from VS [10.40.0.104]:tcp:443";
    wait_until(DETECTION, "SSL_GET to take r2 out", || since(&lbd, mark).contains(removed));
    assert_eq!(answers(&client, TLS_URL, 12, &lbd), set(&["r1", "r3"]), "TLS with r2's server dead");
    assert_eq!(answers(&client, "10.40.0.100", 9, &lbd), all, "plain HTTP still reaches r2");
    let mark = lbd.log().len();
    let _tls_again = tls_server(&reals[1].0, &tls[1].1, &dir);
    let added = "Adding service [10.31.0.12]:tcp:8443 to VS [10.40.0.104]:tcp:443";
    wait_until(DETECTION, "SSL_GET to bring r2 back", || since(&lbd, mark).contains(added));
    assert_eq!(answers(&client, TLS_URL, 9, &lbd), all, "TLS after r2 recovered");
    lbd.assert_running();
}

/// Virtual server `vip`:80 (delay_loop 1, rr, NAT) with the three reals on 8080, each checked
/// by `check`.
fn same_check_vs(vip: &str, check: &str) -> String {
    let reals = (1..=3)
        .map(|i| format!("    real_server 10.31.0.1{i} 8080 {{\n        {check}\n    }}\n"))
        .collect::<String>();
    format!(
        "virtual_server {vip} 80 {{\n    delay_loop 1\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n{reals}}}\n"
    )
}

/// SMTP_CHECK, DNS_CHECK and UDP_CHECK against lbt-services, and PING_CHECK against the host.
fn protocol_config() -> String {
    let vs = same_check_vs;
    [
        vs(
            "10.40.0.110",
            "SMTP_CHECK {\n connect_port 25\n connect_timeout 1\n retry 0\n helo_name lbt.example\n }",
        ),
        vs(
            "10.40.0.111",
            "DNS_CHECK {\n connect_port 53\n connect_timeout 1\n retry 0\n type A\n name lbt.example.\n }",
        ),
        vs("10.40.0.112", "UDP_CHECK {\n connect_port 53\n connect_timeout 1\n retry 0\n }"),
        vs("10.40.0.113", "PING_CHECK {\n connect_timeout 1\n retry 0\n }"),
        // A host block is a checker of its own: every real also checks r2's SMTP server. As in
        // keepalived 2.2.7 a host takes none of the SMTP_CHECK's connection options: it names
        // its port and connect_timeout itself (checks_keepalived.rs has the rest).
        vs(
            "10.40.0.114",
            "SMTP_CHECK {\n connect_port 25\n connect_timeout 1\n retry 0\n host {\n connect_ip 10.31.0.12\n \
             connect_port 25\n connect_timeout 1\n }\n }",
        ),
    ]
    .concat()
}

#[test]
fn smtp_dns_udp_and_ping_checkers_follow_their_servers() {
    let mut lab = Lab::new();
    let Topology { client, lb, reals, _switch } = topology(&mut lab);
    let mut services: Vec<Proc> = reals
        .iter()
        .enumerate()
        .map(|(i, ns)| ns.spawn("services", bins::services(), &[&format!("r{}", i + 1)]))
        .collect();
    for service in &mut services {
        wait_until(Duration::from_secs(10), "lbt-services", || {
            service.assert_running();
            service.log().contains("listening")
        });
    }
    let lbd = start_lbd(&mut lab, &lb, &protocol_config());
    std::thread::sleep(Duration::from_secs(2));
    let all = set(&["r1", "r2", "r3"]);
    let vips = ["10.40.0.110", "10.40.0.111", "10.40.0.112", "10.40.0.113"];
    for vip in vips {
        assert_eq!(answers(&client, vip, 9, &lbd), all, "{vip} at start\n{}", lbd.log());
    }
    assert!(!lbd.log().contains("Removing service"), "every server is up at start:\n{}", lbd.log());

    // r2's SMTP, DNS and web servers die (its host still answers pings).
    let mark = lbd.log().len();
    services[1].kill();
    wait_until(DETECTION, "SMTP, DNS and UDP checks to take r2 out", || {
        let log = since(&lbd, mark);
        vips[..3].iter().all(|vip| {
            log.contains(&format!("Removing service [10.31.0.12]:tcp:8080 from VS [{vip}]:tcp:80"))
        })
    });
    for vip in &vips[..3] {
        assert_eq!(answers(&client, vip, 12, &lbd), set(&["r1", "r3"]), "{vip} with r2's services dead");
    }
    // SMTP_CHECK's host block: r1 and r3 fail their second check (r2's SMTP server) too.
    wait_until(DETECTION, "SMTP host checks to take every real out of .114", || {
        let log = since(&lbd, mark);
        (1..=3).all(|i| {
            log.contains(&format!("Removing service [10.31.0.1{i}]:tcp:8080 from VS [10.40.0.114]:tcp:80"))
        })
    });
    assert!(!since(&lbd, mark).contains("VS [10.40.0.113]"), "r2 still answers pings:\n{}", lbd.log());
    let mark = lbd.log().len();
    services[1] = reals[1].spawn("services-again", bins::services(), &["r2"]);
    wait_until(DETECTION, "SMTP, DNS and UDP checks to bring r2 back", || {
        let log = since(&lbd, mark);
        vips[..3]
            .iter()
            .all(|vip| log.contains(&format!("Adding service [10.31.0.12]:tcp:8080 to VS [{vip}]:tcp:80")))
    });
    for vip in &vips[..3] {
        assert_eq!(answers(&client, vip, 9, &lbd), all, "{vip} after r2 recovered");
    }
    wait_until(DETECTION, "SMTP host checks to bring the reals back to .114", || {
        let log = since(&lbd, mark);
        (1..=3).all(|i| {
            log.contains(&format!("Adding service [10.31.0.1{i}]:tcp:8080 to VS [10.40.0.114]:tcp:80"))
        })
    });
    assert_eq!(answers(&client, "10.40.0.114", 9, &lbd), all, ".114 after r2 recovered");

    // r2's link goes down: PING_CHECK takes it out too; it comes back with the link.
    let mark = lbd.log().len();
    reals[1].ip(&["link", "set", "eth0", "down"]);
    let removed = "Removing service [10.31.0.12]:tcp:8080 from VS [10.40.0.113]:tcp:80";
    wait_until(DETECTION, "PING_CHECK to take r2 out", || since(&lbd, mark).contains(removed));
    assert!(
        since(&lbd, mark).contains("ICMP echo check on service [10.31.0.12]:tcp:8080 failed"),
        "{}",
        lbd.log()
    );
    assert_eq!(answers(&client, "10.40.0.113", 12, &lbd), set(&["r1", "r3"]), "ping: r2 unreachable");
    let mark = lbd.log().len();
    reals[1].ip(&["link", "set", "eth0", "up"]);
    reals[1].ip(&["route", "replace", "default", "via", "10.31.0.1"]);
    let added = "Adding service [10.31.0.12]:tcp:8080 to VS [10.40.0.113]:tcp:80";
    wait_until(DETECTION * 2, "PING_CHECK to bring r2 back", || since(&lbd, mark).contains(added));
    assert_eq!(answers(&client, "10.40.0.113", 9, &lbd), all, "ping: r2 back");
    drop(services);
}

/// keepalived's extras: url regexes, `sorry_server_inhibit`, `ha_suspend` and `smtp_alert`.
///
/// VIPs 10.40.0.120 (HTTP_GET, regex `^r[13]$` multiline), .121 (HTTP_GET, regex `R1` caseless
/// with regex_no_match, smtp_alert off), .122 (quorum 3, sorry server with
/// sorry_server_inhibit), .123 (TCP_CHECK, ha_suspend; 10.40.0.123 is not on the load balancer
/// until the test adds it). Mail goes to an SMTP sink in the client's namespace.
fn extras_config() -> String {
    let reals = |check: &str, extra: &str| {
        (1..=3)
            .map(|i| format!("    real_server 10.31.0.1{i} 8080 {{\n{extra}        {check}\n    }}\n"))
            .collect::<String>()
    };
    let vs = |vip: &str, extra: &str, reals: String| {
        format!(
            "virtual_server {vip} 80 {{\n    delay_loop 1\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n{extra}{reals}}}\n"
        )
    };
    let http = |regex: &str| {
        format!("HTTP_GET {{\n url {{\n path /\n {regex}\n }}\n connect_timeout 1\n retry 0\n }}")
    };
    let tcp = "TCP_CHECK {\n connect_timeout 1\n retry 0\n }";
    [
        "global_defs {\n    router_id lbt-extras\n    notification_email {\n        ops@lbt.example\n    }\n    \
         notification_email_from lbd@lbt.example\n    smtp_server 10.30.0.2 25\n    smtp_connect_timeout 3\n}\n"
            .to_owned(),
        vs("10.40.0.120", "", reals(&http("regex \"^r[13]$\"\n regex_options multiline"), "")),
        vs(
            "10.40.0.121",
            "",
            reals(&http("regex R1\n regex_options caseless\n regex_no_match"), "        smtp_alert off\n"),
        ),
        vs(
            "10.40.0.122",
            "    quorum 3\n    sorry_server 10.31.0.13 9090\n    sorry_server_inhibit\n",
            reals(tcp, ""),
        ),
        vs("10.40.0.123", "    ha_suspend\n", reals(tcp, "")),
    ]
    .concat()
}

/// How many of `n` requests to `vip` fail.
fn failures(client: &Netns, vip: &str, n: usize) -> usize {
    let url = format!("http://{vip}/");
    (0..n).filter(|_| !client.exec("curl", &["-sS", "--max-time", "2", &url]).status.success()).count()
}

#[test]
fn regex_sorry_server_inhibit_ha_suspend_and_smtp_alert() {
    let mut lab = Lab::new();
    let Topology { client, lb, reals: hosts, _switch } = topology(&mut lab);
    let mut sink = client.spawn("smtp-sink", bins::services(), &["sink"]);
    wait_until(Duration::from_secs(10), "the SMTP sink", || {
        sink.assert_running();
        sink.log().contains("listening")
    });
    let mut reals = Vec::new();
    for (i, ns) in hosts.into_iter().enumerate() {
        let server = ns.spawn("web", bins::web(), &[&format!("r{}", i + 1), "0.0.0.0:8080"]);
        reals.push((ns, server));
    }
    let _sorry = reals[2].0.spawn("sorry", bins::web(), &["sorry", "0.0.0.0:9090"]);
    let mut lbd = start_lbd(&mut lab, &lb, &extras_config());
    std::thread::sleep(Duration::from_secs(2));

    // Regexes: r2's page fails .120's, r1's fails .121's (caseless, regex_no_match).
    assert_eq!(answers(&client, "10.40.0.120", 9, &lbd), set(&["r1", "r3"]), "{}", lbd.log());
    assert_eq!(answers(&client, "10.40.0.121", 9, &lbd), set(&["r2", "r3"]), "{}", lbd.log());
    assert!(lbd.log().contains("Regex did not match url(/), regex [^r[13]$]"), "{}", lbd.log());
    let all = set(&["r1", "r2", "r3"]);
    assert_eq!(answers(&client, "10.40.0.122", 9, &lbd), all);
    // ha_suspend: 10.40.0.123 is not here; its checkers wait.
    assert!(
        lbd.log().contains(
            "Suspending healthchecker for service [10.31.0.12]:tcp:8080 for VS [10.40.0.123]:tcp:80"
        ),
        "{}",
        lbd.log()
    );
    // smtp_alert: r2 down in .120 is mailed; .121's reals have smtp_alert off.
    let mail = "Subject: [lbt-extras] Realserver [10.31.0.12]:tcp:8080 of virtual server [10.40.0.120]:tcp:80 - DOWN";
    wait_until(Duration::from_secs(5), "the DOWN mail", || sink.log().contains(mail));
    assert!(!sink.log().contains("[10.40.0.121]"), "smtp_alert off:\n{}", sink.log());

    // r2's web server dies: .122 loses its quorum to the sorry server; .123's checker is
    // suspended, so r2 stays in it and requests to it fail.
    let mark = lbd.log().len();
    reals[1].1.kill();
    let lost = "Lost quorum 3-0=3 > 2 for VS [10.40.0.122]:tcp:80";
    wait_until(DETECTION, "the quorum of .122 to be lost", || since(&lbd, mark).contains(lost));
    std::thread::sleep(Duration::from_secs(1));
    assert!(!since(&lbd, mark).contains("from VS [10.40.0.123]"), "suspended:\n{}", lbd.log());
    assert!(failures(&client, "10.40.0.123", 9) > 0, "r2 dead and not taken out of the suspended VS");
    assert_eq!(answers(&client, "10.40.0.122", 6, &lbd), set(&["sorry"]));
    let mail = "Subject: [lbt-extras] Virtualserver [10.40.0.122]:tcp:80 - DOWN";
    wait_until(Duration::from_secs(5), "the quorum mail", || sink.log().contains(mail));
    // A long transfer from the sorry server, under way when the quorum comes back.
    let mut slow = client.spawn("slow", "curl", &["-sS", "--max-time", "20", "http://10.40.0.122/slow/40"]);

    // 10.40.0.123 comes to the load balancer: its checkers run and take r2 out.
    let mark = lbd.log().len();
    lb.addr("lo", "10.40.0.123/32");
    let removed = "Removing service [10.31.0.12]:tcp:8080 from VS [10.40.0.123]:tcp:80";
    wait_until(DETECTION, "the resumed checker to take r2 out", || since(&lbd, mark).contains(removed));
    assert!(since(&lbd, mark).contains("Activating healthchecker for service [10.31.0.12]:tcp:8080"));
    assert_eq!(answers(&client, "10.40.0.123", 12, &lbd), set(&["r1", "r3"]), "no request fails");

    // r2 recovers: .122 gains its quorum; the sorry server stays, at weight 0: new requests go
    // to the reals, the transfer under way finishes.
    let mark = lbd.log().len();
    let _web = reals[1].0.spawn("web-again", bins::web(), &["r2", "0.0.0.0:8080"]);
    let gained = "Gained quorum 3+0=3 <= 3 for VS [10.40.0.122]:tcp:80";
    wait_until(DETECTION, "the quorum of .122 to come back", || since(&lbd, mark).contains(gained));
    assert!(
        since(&lbd, mark).contains("Disabling sorry server [10.31.0.13]:9090 from VS [10.40.0.122]:tcp:80")
    );
    assert_eq!(answers(&client, "10.40.0.122", 9, &lbd), all, "the reals again");
    // The data plane still holds the sorry server (without sorry_server_inhibit it is removed).
    let data = lab.dir().join("keepalived_check.data");
    lbd.signal(Signal::SIGUSR1);
    wait_until(Duration::from_secs(5), "keepalived_check.data", || data.exists());
    let text = std::fs::read_to_string(&data).unwrap();
    assert!(text.contains("Sorry server = 10.31.0.13:9090"), "keepalived_check.data:\n{text}");
    let status = slow.wait(Duration::from_secs(20));
    assert!(status.success(), "the sorry server's transfer broke:\n{}", slow.log());
    assert!(slow.log().contains("sorry 39"), "the whole transfer:\n{}", slow.log());
    let mail = "Subject: [lbt-extras] Virtualserver [10.40.0.122]:tcp:80 - UP";
    wait_until(Duration::from_secs(5), "the quorum mail", || sink.log().contains(mail));
    lbd.assert_running();
}

/// Polls `condition` every 5 ms for up to `limit`: how long it took to hold, if it did.
fn time_until(limit: Duration, mut condition: impl FnMut() -> bool) -> Option<Duration> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if condition() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// TCP_CHECK (.100) and HTTP_GET (.101) on the three reals, delay_loop 1, connect_timeout 1,
/// retry 0.
fn timing_config() -> String {
    let vs = same_check_vs;
    [
        vs("10.40.0.100", "TCP_CHECK {\n connect_timeout 1\n retry 0\n }"),
        vs("10.40.0.101", "HTTP_GET {\n url {\n path /\n }\n connect_timeout 1\n retry 0\n }"),
    ]
    .concat()
}

/// The issue's bound: a failed real leaves the data plane within one delay_loop plus
/// connect_timeout of its failure, for a refused connection (its web server killed) and a
/// silent host (its namespace drops the checks' SYNs), for TCP_CHECK and HTTP_GET. Timed from
/// the failure to lbd's removal line, then checked through the VIP.
#[test]
fn detection_within_delay_loop_plus_connect_timeout() {
    /// delay_loop 1 + connect_timeout 1 + 0.5 s.
    const BOUND: Duration = Duration::from_millis(2500);
    let mut lab = Lab::new();
    let Topology { client, lb, reals: hosts, _switch } = topology(&mut lab);
    let mut reals = Vec::new();
    for (i, ns) in hosts.into_iter().enumerate() {
        let server = ns.spawn("web", bins::web(), &[&format!("r{}", i + 1), "0.0.0.0:8080"]);
        reals.push((ns, server));
    }
    let lbd = start_lbd(&mut lab, &lb, &timing_config());
    std::thread::sleep(Duration::from_secs(2));
    let all = set(&["r1", "r2", "r3"]);
    for vip in ["10.40.0.100", "10.40.0.101"] {
        assert_eq!(answers(&client, vip, 9, &lbd), all, "{vip} at start\n{}", lbd.log());
    }
    let removed = |real: &str, log: &str| {
        ["100", "101"].map(|vip| {
            log.contains(&format!(
                "Removing service [10.31.0.1{real}]:tcp:8080 from VS [10.40.0.{vip}]:tcp:80"
            ))
        })
    };
    let mut times = Vec::new();
    // r2's web server is killed (refused), then r3's SYNs are dropped (r2 stays dead).
    for (real, silent, left) in [("2", false, ["r1", "r3"].as_slice()), ("3", true, ["r1"].as_slice())] {
        let mark = lbd.log().len();
        let index = if real == "2" { 1 } else { 2 };
        if silent {
            let out = reals[index].0.exec(
                "nft",
                &["add table inet silent { chain input { type filter hook input priority 0; tcp dport 8080 drop; }; }"],
            );
            assert!(out.status.success(), "nft: {}", String::from_utf8_lossy(&out.stderr));
        } else {
            reals[index].1.kill();
        }
        let mut seen = [None, None];
        let started = std::time::Instant::now();
        time_until(BOUND * 2, || {
            let now = removed(real, &since(&lbd, mark));
            for (slot, gone) in seen.iter_mut().zip(now) {
                if gone && slot.is_none() {
                    *slot = Some(started.elapsed());
                }
            }
            seen.iter().all(Option::is_some)
        });
        let failure = if silent { "SYNs dropped" } else { "refused" };
        for (checker, time) in ["TCP_CHECK", "HTTP_GET"].iter().zip(seen) {
            let time =
                time.unwrap_or_else(|| panic!("{checker}, {failure}: r{real} never removed\n{}", lbd.log()));
            assert!(
                time <= BOUND,
                "{checker}, {failure}: r{real} removed after {time:?} > {BOUND:?}\n{}",
                lbd.log()
            );
            times.push(format!("{checker} {failure} {time:?}"));
        }
        for vip in ["10.40.0.100", "10.40.0.101"] {
            assert_eq!(answers(&client, vip, 9, &lbd), set(left), "{vip}: r{real} gone ({failure})");
        }
    }
    eprintln!("detection times: {times:?}");
}

/// A digest genhash prints for a chunked page keeps the real server up: HTTP_GET hashes the
/// page as genhash does (the chunk sizes included). A digest of the decoded body, which is not
/// what keepalived hashes, takes its real out.
#[test]
fn a_genhash_digest_of_a_chunked_page_keeps_the_real_up() {
    let mut lab = Lab::new();
    let Topology { client, lb, reals: hosts, _switch } = topology(&mut lab);
    let chunked =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7\r\n-world\n\r\n0\r\n\r\n";
    let servers: Vec<Pages> = hosts
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            let name = format!("r{}\n", i + 1);
            let root = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{name}", name.len());
            Pages::serve(
                ns,
                "0.0.0.0:8081".parse().unwrap(),
                vec![("/", Answer::Close(root.into_bytes())), ("/chunked", Answer::Close(chunked.to_vec()))],
            )
        })
        .collect();
    // The digest, by lbd's genhash and by keepalived's, from the load balancer.
    let ours = lb.exec(bins::workspace_bin("genhash"), &["-s", "10.31.0.11", "-p", "8081", "-u", "/chunked"]);
    let theirs = lb.exec("/usr/bin/genhash", &["-s", "10.31.0.11", "-p", "8081", "-u", "/chunked"]);
    let digest = String::from_utf8_lossy(&ours.stdout).trim().to_owned();
    assert_eq!(digest, String::from_utf8_lossy(&theirs.stdout).trim(), "both genhash agree");
    let decoded = lb_daemon::genhash::hex(&lb_daemon::genhash::body_digest(b"hello-world\n"));
    assert_ne!(digest, decoded);
    let real = |i: u32, digest: &str| {
        format!(
            "    real_server 10.31.0.1{i} 8081 {{\n        HTTP_GET {{\n url {{\n path /chunked\n digest {digest}\n }}\n connect_timeout 1\n retry 0\n }}\n    }}\n"
        )
    };
    let config = format!(
        "virtual_server 10.40.0.105 80 {{\n    delay_loop 1\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n{}{}{}}}\n",
        real(1, &digest),
        real(2, &decoded),
        real(3, &digest)
    );
    let lbd = start_lbd(&mut lab, &lb, &config);
    let removed = "Removing service [10.31.0.12]:tcp:8081 from VS [10.40.0.105]:tcp:80";
    wait_until(DETECTION, "HTTP_GET to take out the real with the decoded body's digest", || {
        lbd.log().contains(removed)
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(lbd.log().contains("MD5 digest error"), "{}", lbd.log());
    assert!(!lbd.log().contains("Removing service [10.31.0.11]"), "{}", lbd.log());
    assert!(!lbd.log().contains("Removing service [10.31.0.13]"), "{}", lbd.log());
    assert_eq!(answers(&client, "10.40.0.105", 9, &lbd), set(&["r1", "r3"]), "{}", lbd.log());
    drop(servers);
}

/// VIPs 10.40.0.130 (alpha, notify_up / notify_down), .131 (inhibit_on_failure), .132
/// (MISC_CHECK with misc_dynamic, wrr), .133 (FILE_CHECK), .134 (connect_ip / connect_port:
/// r2's check goes to r3:9091).
fn features_config(dir: &Path) -> String {
    let dir = dir.display();
    let tcp = "TCP_CHECK {\n connect_timeout 1\n retry 0\n }";
    let real = |i: u32, port: u16, extra: &str, check: &str| {
        format!("    real_server 10.31.0.1{i} {port} {{\n{extra}        {check}\n    }}\n")
    };
    let vs = |vip: &str, algo: &str, reals: String| {
        format!(
            "virtual_server {vip} 80 {{\n    delay_loop 1\n    lb_algo {algo}\n    lb_kind NAT\n    protocol TCP\n{reals}}}\n"
        )
    };
    let misc = |file: &str| {
        format!("MISC_CHECK {{\n misc_path \"{dir}/weight.sh {file}\"\n misc_dynamic\n retry 0\n }}")
    };
    [
        format!("global_defs {{\n    router_id lbt-features\n}}\ntrack_file state {{\n    file {dir}/state\n    weight 0\n}}\n"),
        vs(
            "10.40.0.130",
            "rr",
            real(1, 8080, "", tcp)
                + &real(
                    2,
                    8081,
                    &format!(
                        "        notify_up \"{dir}/notify.sh up r2\"\n        notify_down \"{dir}/notify.sh down r2\"\n"
                    ),
                    "TCP_CHECK {\n connect_timeout 1\n retry 0\n alpha\n }",
                ),
        ),
        vs("10.40.0.131", "rr", real(1, 8080, "", tcp) + &real(2, 8080, "        inhibit_on_failure\n", tcp)),
        vs("10.40.0.132", "wrr", real(1, 8080, "", &misc("w1")) + &real(2, 8080, "", &misc("w2"))),
        vs("10.40.0.133", "rr", real(1, 8080, "", tcp) + &real(3, 8080, "", "FILE_CHECK {\n track_file state\n }")),
        vs(
            "10.40.0.134",
            "rr",
            real(1, 8080, "", tcp)
                + &real(2, 8080, "", "TCP_CHECK {\n connect_ip 10.31.0.13\n connect_port 9091\n connect_timeout 1\n retry 0\n }"),
        ),
    ]
    .concat()
}

/// Writes an executable shell script.
fn script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// How many of `n` requests to `vip` each real answered.
fn split(client: &Netns, vip: &str, n: usize, lbd: &Proc) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..n {
        for answer in answers(client, vip, 1, lbd) {
            *counts.entry(answer).or_insert(0) += 1;
        }
    }
    counts
}

/// A real server's weight and connections in the data plane, from `keepalived_check.stats`
/// (lbd reads them from the XDP maps when SIGUSR2 asks for the file).
/// `service` as the file names it (`TCP 10.40.0.131:80`).
fn data_plane_real(lab: &Lab, lbd: &Proc, service: &str, real: &str) -> Option<(u64, u64)> {
    let file = lab.dir().join("keepalived_check.stats");
    let _ = std::fs::remove_file(&file);
    lbd.signal(Signal::SIGUSR2);
    wait_until(Duration::from_secs(5), "keepalived_check.stats", || file.exists());
    std::thread::sleep(Duration::from_millis(100));
    let text = std::fs::read_to_string(&file).unwrap();
    let block = text.split("Virtual Server: ").find(|b| b.starts_with(&format!("{service}\n")))?;
    let rest = block.split(&format!("Real Server: {real}\n")).nth(1)?;
    let field = |name: &str| -> Option<u64> {
        rest.lines().find_map(|l| l.trim().strip_prefix(name)?.trim().parse().ok())
    };
    Some((field("Weight:")?, field("Connections:")?))
}

/// alpha, notify_up / notify_down, inhibit_on_failure, misc_dynamic, FILE_CHECK and
/// connect_ip / connect_port, each judged by where requests through the VIP go.
#[test]
fn alpha_notify_inhibit_misc_dynamic_file_check_and_connect_ip() {
    let mut lab = Lab::new();
    let Topology { client, lb, reals: hosts, _switch } = topology(&mut lab);
    let dir = lab.dir().to_owned();
    std::fs::write(dir.join("state"), "0\n").unwrap();
    // misc_dynamic: exit 2 + weight.
    std::fs::write(dir.join("w1"), "5").unwrap();
    std::fs::write(dir.join("w2"), "3").unwrap();
    script(&dir.join("weight.sh"), &format!("exit $(cat {}/$1)", dir.display()));
    script(&dir.join("notify.sh"), &format!("echo \"$@\" >> {}/notify.log", dir.display()));
    let mut webs = Vec::new();
    for (i, ns) in hosts.iter().enumerate() {
        webs.push(ns.spawn("web", bins::web(), &[&format!("r{}", i + 1), "0.0.0.0:8080"]));
    }
    let mut check_target = hosts[2].spawn("web-9091", bins::web(), &["r3-9091", "0.0.0.0:9091"]);
    wait_until(Duration::from_secs(5), "the web servers", || {
        webs.iter_mut().chain([&mut check_target]).all(|w| {
            w.assert_running();
            w.log().contains("listening")
        })
    });
    let mut lbd = start_lbd(&mut lab, &lb, &features_config(&dir));

    // alpha: r2:8081 (nothing listens there) starts down, so no request fails from the start.
    // Without alpha it would be in until its first check failed.
    assert_eq!(answers(&client, "10.40.0.130", 6, &lbd), set(&["r1"]), "alpha: r2 starts down");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(answers(&client, "10.40.0.131", 6, &lbd), set(&["r1", "r2"]));
    assert_eq!(answers(&client, "10.40.0.133", 6, &lbd), set(&["r1", "r3"]));
    assert_eq!(answers(&client, "10.40.0.134", 6, &lbd), set(&["r1", "r2"]));
    // misc_dynamic: exit 5 and 3 give weights 3 and 1.
    let counts = split(&client, "10.40.0.132", 40, &lbd);
    let (r1, r2) = (counts.get("r1").copied().unwrap_or(0), counts.get("r2").copied().unwrap_or(0));
    assert!(r2 > 0 && r1 >= 2 * r2, "weights 3:1: {counts:?}\n{}", lbd.log());

    // alpha's first success brings r2 in, with notify_up; its failure takes it out, with
    // notify_down.
    let mut web_8081 = hosts[1].spawn("web-8081", bins::web(), &["r2", "0.0.0.0:8081"]);
    let added = "Adding service [10.31.0.12]:tcp:8081 to VS [10.40.0.130]:tcp:80";
    wait_until(DETECTION, "r2 up in .130", || lbd.log().contains(added));
    assert_eq!(answers(&client, "10.40.0.130", 6, &lbd), set(&["r1", "r2"]));
    let notified = || std::fs::read_to_string(dir.join("notify.log")).unwrap_or_default();
    wait_until(Duration::from_secs(2), "notify_up", || !notified().is_empty());
    web_8081.kill();
    let removed = "Removing service [10.31.0.12]:tcp:8081 from VS [10.40.0.130]:tcp:80";
    wait_until(DETECTION, "r2 down in .130", || lbd.log().contains(removed));
    wait_until(Duration::from_secs(2), "notify_down", || notified().lines().count() == 2);
    assert_eq!(notified(), "up r2\ndown r2\n", "notify scripts, their arguments, in order");

    // connect_ip / connect_port: r2's check in .134 goes to r3:9091; r2's own server is fine.
    let mark = lbd.log().len();
    check_target.kill();
    let removed = "Removing service [10.31.0.12]:tcp:8080 from VS [10.40.0.134]:tcp:80";
    wait_until(DETECTION, "r2 out of .134", || since(&lbd, mark).contains(removed));
    assert_eq!(answers(&client, "10.40.0.134", 6, &lbd), set(&["r1"]));
    assert!(!since(&lbd, mark).contains("[10.31.0.12]:tcp:8080 from VS [10.40.0.131]"), "{}", lbd.log());

    // FILE_CHECK: a non-zero value (weight 0) takes r3 out; 0 brings it back.
    std::fs::write(dir.join("state"), "1\n").unwrap();
    let removed = "Removing service [10.31.0.13]:tcp:8080 from VS [10.40.0.133]:tcp:80";
    wait_until(DETECTION, "FILE_CHECK to take r3 out", || lbd.log().contains(removed));
    assert_eq!(answers(&client, "10.40.0.133", 6, &lbd), set(&["r1"]));
    std::fs::write(dir.join("state"), "0\n").unwrap();
    let added = "Adding service [10.31.0.13]:tcp:8080 to VS [10.40.0.133]:tcp:80";
    wait_until(DETECTION, "FILE_CHECK to bring r3 back", || lbd.log().contains(added));
    assert_eq!(answers(&client, "10.40.0.133", 6, &lbd), set(&["r1", "r3"]));

    // misc_dynamic: the exit codes swap, so do the weights.
    std::fs::write(dir.join("w1"), "3").unwrap();
    std::fs::write(dir.join("w2"), "5").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let counts = split(&client, "10.40.0.132", 40, &lbd);
    let (r1, r2) = (counts.get("r1").copied().unwrap_or(0), counts.get("r2").copied().unwrap_or(0));
    assert!(r1 > 0 && r2 >= 2 * r1, "weights 1:3: {counts:?}\n{}", lbd.log());

    // inhibit_on_failure: r2's web server dies; r2 stays in .131's table at weight 0 and gets
    // no new connection; no request fails.
    let mark = lbd.log().len();
    webs[1].kill();
    let disabled = "Disabling service [10.31.0.12]:tcp:8080 from VS [10.40.0.131]:tcp:80";
    wait_until(DETECTION, "r2 at weight 0 in .131", || since(&lbd, mark).contains(disabled));
    let before = data_plane_real(&lab, &lbd, "TCP 10.40.0.131:80", "10.31.0.12:8080");
    let Some((0, connections)) = before else {
        panic!("r2 in .131's table at weight 0: {before:?}\n{}", lbd.log())
    };
    assert_eq!(answers(&client, "10.40.0.131", 9, &lbd), set(&["r1"]));
    assert_eq!(
        data_plane_real(&lab, &lbd, "TCP 10.40.0.131:80", "10.31.0.12:8080"),
        Some((0, connections)),
        "no new connection to the inhibited real"
    );
    lbd.assert_running();
}
