//! `cargo xtask bench checks`: what lbd's health checkers cost. The real servers are another
//! host: a namespace joined to the checker's by a veth pair, where a server process holds each
//! connection to 10.1.0.0/16 port 80 until the client ends it (for TCP_CHECK, as a service
//! waiting for a request would) and answers a 3-byte page on 10.2.0.0/16 port 81 (for HTTP_GET
//! with a digest). Both ends of the pair have a queue and receive in NAPI threads of their own,
//! as a NIC's frames are received outside the checker: the checker's process is charged for its
//! own side of each probe, as on a load balancer whose real servers are other machines. (On
//! loopback the kernel runs the server's side of each handshake in the sender's context, which
//! charges it to the checker; the baseline is measured that way too, and reported beside.)
//!
//! A checker process runs `lb_daemon::check::Runner` on a generated configuration at delay_loop 1
//! and reports its CPU time per probe and its RSS. The floor, measured in the same run by the
//! same process, is the kernel's part of a probe: sockets connected a hundred at a time (and for
//! HTTP the page fetched) and reset, to the same addresses.
//!
//! The baseline, in the same run against the same server: keepalived 2.2.7's checker process
//! (`/usr/sbin/keepalived -C`) and lbd's on the same 1,000 TCP_CHECK servers, taking turns for
//! several rounds; the ratio reported is the median of the rounds', with its range and the load.
//! keepalived refuses to check without IPVS, which this kernel lacks: `tests/bench/ipvs-shim.c`,
//! preloaded, answers its IPVS socket options as an empty IPVS table would (nothing else of
//! keepalived is touched). Both processes' CPU is read from the kernel (/proc, getrusage); their
//! probes are the namespace's TCP active opens (keepalived) and the runner's count (lbd).
//!
//! `lb-bench-checks` (as root) prints a markdown table; `serve` and `check TCP HTTP SECONDS
//! [nofloor]` are its two halves.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::Path,
    time::{Duration, Instant},
};

use lb_tests::lab::{Lab, Netns, wait_until};

const TCP_REALS: usize = 10_000;
const HTTP_REALS: usize = 1_000;
const SECONDS: u64 = 10;
/// Real servers, seconds per measurement and rounds of the same-run keepalived baseline.
const BASELINE_REALS: usize = 1_000;
const BASELINE_SECONDS: u64 = 10;
const ROUNDS: usize = 5;
/// Rounds of each of the main table's sets against keepalived.
const SET_ROUNDS: usize = 2;
const KEEPALIVED: &str = "/usr/sbin/keepalived";
const PAGE: &[u8] = b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n";

/// Real server `i` of network `net` (1: TCP_CHECK, port 80; 2: HTTP_GET, port 81).
fn real(net: u8, i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, net, (i / 250) as u8, (i % 250) as u8 + 1)
}

/// Where the real servers are, seen from the checker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topology {
    /// On another host: the checker's namespace and the servers' joined by a veth pair whose
    /// two ends receive in NAPI threads of their own, as frames from a NIC are received in
    /// softirq or NAPI threads rather than in the checker. The checker is charged for what it
    /// asks of its kernel (the syscalls, and sending its SYN, ACK and reset), as on a load
    /// balancer whose real servers are other machines.
    Link,
    /// On the checker's own host (loopback): the kernel handles both ends of each handshake in
    /// the context of the process that sends, so the checker is charged for the servers' side
    /// of every connection as well.
    Loopback,
}

impl Topology {
    fn describe(self) -> &'static str {
        match self {
            Topology::Link => {
                "real servers on another host (a veth pair whose ends receive in NAPI threads; the checker is charged for its own side)"
            }
            Topology::Loopback => {
                "real servers on the checker's host (loopback; the checker is also charged for the servers' side of each handshake)"
            }
        }
    }
}

/// The two hosts of a measurement: the checker's namespace and the real servers'.
struct Hosts {
    checker: Netns,
    servers: Netns,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(),
        Some("detect") => detect(),
        Some("check") => {
            let n = |i: usize| args.get(i).and_then(|a| a.parse::<usize>().ok()).unwrap_or(0);
            check(n(1), n(2), n(3) as u64, args.get(4).is_none_or(|a| a != "nofloor"))
        }
        _ => orchestrate(),
    }
}

/// Builds the hosts, starts the server, runs the checker three ways, prints the table.
fn orchestrate() -> anyhow::Result<()> {
    let mut lab = Lab::new();
    let me = std::env::current_exe()?;
    match std::env::var("LBD_BENCH_CHECKS").as_deref() {
        Ok("detect") => return detection(&mut lab, &me).map(drop),
        Ok("baseline") => {
            baseline(&mut lab, &me, Topology::Link)?;
            return baseline(&mut lab, &me, Topology::Loopback).map(drop);
        }
        Ok("sets") => return same_sets(&mut lab, &me),
        _ => {}
    }
    let hosts = bench_hosts(&mut lab, "checks", Topology::Link);
    let mut server = start_server(&hosts.servers, &me);
    println!("Layout: {}.\n", Topology::Link.describe());
    println!(
        "| checkers (delay_loop 1) | probes/s | CPU per probe (user + system) | CPU, % of a core | RSS | reals up at the end |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    let (mut floor, mut rss_all_tcp) = (None, f64::NAN);
    for (label, tcp, http) in [
        (format!("{TCP_REALS} TCP_CHECK"), TCP_REALS, 0),
        (format!("{HTTP_REALS} HTTP_GET"), 0, HTTP_REALS),
        (format!("{TCP_REALS} TCP_CHECK + {HTTP_REALS} HTTP_GET"), TCP_REALS, HTTP_REALS),
    ] {
        let (m, up, floor_us) = measure_lbd(&hosts.checker, &me, tcp, http, SECONDS, floor.is_none())?;
        let (user, sys) = m.per_probe();
        println!(
            "| {label} | {:.0} | {:.1} µs ({user:.1} + {sys:.1}) | {:.1}% | {:.1} MiB | {up} of {} |",
            m.rate,
            m.total(),
            (m.user + m.sys) * 100.0,
            m.rss_mib,
            tcp + http
        );
        floor = floor.or(Some(floor_us));
        if (tcp, http) == (TCP_REALS, 0) {
            rss_all_tcp = m.rss_mib;
        }
    }
    println!(
        "\nFloor (same run, same process): connects and resets to the same addresses, a hundred sockets at \
         a time, cost {:.1} µs of CPU per probe.",
        floor.unwrap_or(f64::NAN)
    );
    // Connections the server's listen queues could not take (SYNs dropped, retried by the
    // client a second later): what holds the probe rate under one per checker per delay_loop.
    let out = hosts.servers.exec("nstat", &["-az", "TcpExtListenOverflows", "TcpExtListenDrops"]);
    let counters: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("TcpExt"))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some(format!("{} {}", f.next()?.trim_start_matches("TcpExt"), f.next()?))
        })
        .collect();
    println!("Server namespace after the runs: {}.", counters.join(", "));
    server.kill();
    let (ratio, low, high) = baseline(&mut lab, &me, Topology::Link)?;
    baseline(&mut lab, &me, Topology::Loopback)?;
    same_sets(&mut lab, &me)?;
    let [refused, silent] = detection(&mut lab, &me)?;
    // The goals, judged on this run's numbers.
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    println!(
        "\nGoals, this run: CPU per TCP check at most half keepalived's (real servers on another host): {} \
         (median ratio {ratio:.2}, rounds {low:.2} to {high:.2}); under 64 MB RSS at {TCP_REALS} TCP_CHECK \
         servers: {} ({rss_all_tcp:.1} MiB); detection within delay_loop + connect_timeout (2 s): {} (lbd's \
         worst: {refused:.3} s refused, {silent:.3} s SYNs dropped).",
        verdict(ratio <= 0.5),
        verdict(rss_all_tcp * 1.048_576 < 64.0),
        verdict(refused < 2.0 && silent < 2.0),
    );
    Ok(())
}

/// The hosts of one measurement, with room for 10,000 connections a second. The servers'
/// namespace answers on every address of 10.1.0.0/16 to 10.3.0.0/16 (routes of type local).
fn bench_hosts(lab: &mut Lab, role: &str, topology: Topology) -> Hosts {
    let checker = lab.netns(role);
    let servers = match topology {
        Topology::Loopback => checker.clone(),
        Topology::Link => {
            let servers = lab.netns(&format!("{role}-rs"));
            lab.veth(&checker, "rs0", &servers, "lb0");
            checker.addr("rs0", "192.168.255.1/30");
            servers.addr("lb0", "192.168.255.2/30");
            checker.ip(&["route", "add", "10.0.0.0/8", "via", "192.168.255.2"]);
            for (ns, interface) in [(&checker, "rs0"), (&servers, "lb0")] {
                let threaded = format!("echo 1 > /sys/class/net/{interface}/threaded");
                let out = ns.exec("sh", &["-c", &threaded]);
                assert!(out.status.success(), "{threaded}: {}", String::from_utf8_lossy(&out.stderr));
                // A queue in front of the pair, as a NIC has: without one a veth drops what
                // its peer's ring cannot take (a burst of SYNs), and the probes retry a second
                // later.
                let out =
                    ns.exec("tc", &["qdisc", "add", "dev", interface, "root", "pfifo", "limit", "10000"]);
                assert!(out.status.success(), "tc qdisc: {}", String::from_utf8_lossy(&out.stderr));
            }
            servers
        }
    };
    for net in ["10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16"] {
        servers.ip(&["route", "add", "local", net, "dev", "lo"]);
    }
    servers.sysctl("net.core.somaxconn", "65535");
    checker.sysctl("net.ipv4.tcp_tw_reuse", "1");
    checker.sysctl("net.ipv4.ip_local_port_range", "1024 65535");
    Hosts { checker, servers }
}

/// Starts the server (`serve`) in `ns` and waits until it listens.
fn start_server(ns: &Netns, me: &Path) -> lb_tests::process::Proc {
    let mut server = ns.spawn("server", me, &["serve"]);
    wait_until(Duration::from_secs(10), "the server", || {
        server.assert_running();
        server.log().contains("listening")
    });
    server
}

/// The address and port of the real server whose failure `detection` times.
const VICTIM: (Ipv4Addr, u16) = (Ipv4Addr::new(10, 3, 0, 1), 82);
/// Failures timed by `detection`.
const DETECTIONS: usize = 20;

/// keepalived's checker and lbd's watch the same real server (TCP_CHECK, delay_loop 1,
/// connect_timeout 1, retry 0) at the same time; its listener is closed at a random moment and
/// opened again, `DETECTIONS` times. Both report through their output, read by this process
/// every millisecond: the time from the close to the line saying the real server is down.
/// Returns lbd's worst detection time for each failure (refused, silent), NaN if one was missed.
fn detection(lab: &mut Lab, me: &Path) -> anyhow::Result<[f64; 2]> {
    let hosts = bench_hosts(lab, "detect", Topology::Link);
    let ns = &hosts.checker;
    let shim = lb_tests::bins::ipvs_shim(lab.dir())?;
    let conf = lab.write_file("keepalived-detect.conf", &detect_config());
    let main_pid = lab.dir().join("keepalived-detect.pid").display().to_string();
    let checker_pid = lab.dir().join("keepalived-detect-checkers.pid").display().to_string();
    let preload = format!("LD_PRELOAD={}", shim.display());
    let listen = || {
        hosts.servers.enter(|| {
            let l = TcpListener::bind(SocketAddr::from(VICTIM))?;
            l.set_nonblocking(true)?;
            Ok::<_, std::io::Error>(l)
        })
    };
    let mut victim = Some(listen()?);
    let conf = conf.display().to_string();
    let mut keepalived = ns.spawn(
        "keepalived-detect",
        "env",
        &[&preload, KEEPALIVED, "-n", "-l", "-C", "-f", &conf, "-p", &main_pid, "-c", &checker_pid],
    );
    let mut lbd = ns.spawn("lbd-detect", me, &["detect"]);
    // keepalived logs a failed TCP_CHECK and a successful one (retry 0: the first failure
    // removes the real server); lbd's runner prints `down` and `up`.
    let (k_down_line, k_up_line) = (
        format!("TCP_CHECK on service [{}]:tcp:{} failed", VICTIM.0, VICTIM.1),
        format!("TCP connection to [{}]:tcp:{} success", VICTIM.0, VICTIM.1),
    );
    let k_down = |log: &str| log.matches(&k_down_line).count();
    let k_up = |log: &str| log.matches(&k_up_line).count();
    let l_down = |log: &str| log.lines().filter(|l| *l == "down").count();
    let l_up = |log: &str| log.lines().filter(|l| *l == "up").count();
    wait_until(Duration::from_secs(20), "both checkers", || {
        keepalived.assert_running();
        lbd.assert_running();
        keepalived.log().contains("Startup complete") && l_up(&lbd.log()) > 0
    });
    // Refused: the listener is closed (connects get a reset). Silent: the namespace drops the
    // probes' SYNs (a host that died without a word), so a probe waits for connect_timeout.
    let mut rows = Vec::new();
    for silent in [false, true] {
        let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        let mut seed = std::process::id() as u64 | 1;
        for _ in 0..DETECTIONS {
            // Both have seen the real server up since it last came back.
            std::thread::sleep(Duration::from_millis(1500));
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            std::thread::sleep(Duration::from_micros(seed % 1_000_000));
            let (k_before, l_before) = (k_down(&keepalived.log()), l_down(&lbd.log()));
            let (k_up_before, l_up_before) = (k_up(&keepalived.log()), l_up(&lbd.log()));
            if silent {
                nft(
                    ns,
                    &format!(
                        "add table ip victim {{ chain out {{ type filter hook output priority 0; ip daddr {} tcp dport {} drop; }}; }}",
                        VICTIM.0, VICTIM.1
                    ),
                )?;
            } else {
                drop(victim.take());
            }
            let failed = Instant::now();
            let mut seen: [Option<f64>; 2] = [None, None];
            while seen.iter().any(Option::is_none) && failed.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(1));
                if seen[0].is_none() && k_down(&keepalived.log()) > k_before {
                    seen[0] = Some(failed.elapsed().as_secs_f64());
                }
                if seen[1].is_none() && l_down(&lbd.log()) > l_before {
                    seen[1] = Some(failed.elapsed().as_secs_f64());
                }
            }
            for (all, one) in times.iter_mut().zip(seen) {
                all.push(one.unwrap_or(f64::NAN));
            }
            if silent {
                nft(ns, "delete table ip victim")?;
            } else {
                victim = Some(listen()?);
            }
            wait_until(Duration::from_secs(10), "both checkers to see the real server again", || {
                if let Some(l) = &victim {
                    while l.accept().is_ok() {}
                }
                k_up(&keepalived.log()) > k_up_before && l_up(&lbd.log()) > l_up_before
            });
        }
        let failure = if silent { "SYNs dropped" } else { "listener closed" };
        rows.push((format!("keepalived 2.2.7 -C (IPVS shim) | {failure}"), times[0].clone()));
        rows.push((format!("lbd (`check::Runner`) | {failure}"), times[1].clone()));
    }
    keepalived.kill();
    lbd.kill();
    println!(
        "\nDetection, same run: both checkers watch one real server (TCP_CHECK, delay_loop 1, connect_timeout 1, \
         retry 0) at the same time; it fails at a random moment, {DETECTIONS} times each way: its listener is \
         closed (connects are refused) or the namespace drops the probes' SYNs (connects time out); time until \
         each checker says it is down (its output read every millisecond by the harness).\n"
    );
    println!("| checker process | failure | failures | detected | min | median | p90 | max |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (label, all) in &rows {
        let mut found: Vec<f64> = all.iter().copied().filter(|t| t.is_finite()).collect();
        found.sort_by(f64::total_cmp);
        let at = |q: f64| {
            found.get(((found.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN)
        };
        println!(
            "| {label} | {} | {} | {:.3} s | {:.3} s | {:.3} s | {:.3} s |",
            all.len(),
            found.len(),
            at(0.0),
            at(0.5),
            at(0.9),
            at(1.0)
        );
    }
    println!("\nGoal: detection within one delay_loop plus connect_timeout (2 s) of the failure.");
    // lbd's rows are the second of each failure's pair; a missed failure makes its worst NaN.
    let worst = |row: usize| {
        rows.get(row).map_or(f64::NAN, |(_, all)| {
            all.iter()
                .copied()
                .fold(0.0, |a: f64, t| if a.is_nan() || t.is_nan() { f64::NAN } else { a.max(t) })
        })
    };
    Ok([worst(1), worst(3)])
}

/// Runs one nft command in `ns`.
fn nft(ns: &Netns, command: &str) -> anyhow::Result<()> {
    let out = ns.exec("nft", &[command]);
    anyhow::ensure!(out.status.success(), "nft {command}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

fn detect_config() -> String {
    format!(
        "virtual_server 10.0.0.3 82 {{\n delay_loop 1\n protocol TCP\n real_server {} {} {{\n  TCP_CHECK {{\n   \
         connect_timeout 1\n   retry 0\n  }}\n }}\n}}\n",
        VICTIM.0, VICTIM.1
    )
}

/// Runs the checker of `detect_config` and prints `up` / `down` as its real server comes and goes.
fn detect() -> anyhow::Result<()> {
    let loaded = lb_daemon::config::parse_str("detect.conf", &detect_config(), &Default::default());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut runner = lb_daemon::check::Runner::spawn(&loaded.config);
        let mut up = None;
        loop {
            let now = runner.desired().services.iter().any(|s| !s.reals.is_empty());
            if up != Some(now) {
                println!("{}", if now { "up" } else { "down" });
                up = Some(now);
            }
            runner.changed().await;
        }
    })
}

/// CPU and memory of one checker process over one measurement.
#[derive(Debug, Clone, Copy)]
struct Measured {
    /// Probes a second.
    rate: f64,
    /// User and system CPU seconds a second.
    user: f64,
    sys: f64,
    rss_mib: f64,
}

impl Measured {
    /// CPU per probe in µs: (user, system).
    fn per_probe(&self) -> (f64, f64) {
        (self.user / self.rate * 1e6, self.sys / self.rate * 1e6)
    }

    fn total(&self) -> f64 {
        let (user, sys) = self.per_probe();
        user + sys
    }
}

/// The 1-minute load average.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// The median and the range of `values`.
fn median_and_range(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = match n {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    };
    (median, sorted.first().copied().unwrap_or(f64::NAN), sorted.last().copied().unwrap_or(f64::NAN))
}

/// keepalived's checker and lbd's on the same `BASELINE_REALS` TCP_CHECK servers, taking turns
/// for `ROUNDS` rounds (who goes first alternates, so that a load rising or falling over the run
/// weighs on both alike); prints each round, the median ratio and its range, and returns those
/// (median, lowest, highest).
///
/// Each measurement has a namespace and a server of its own: in a namespace used before,
/// keepalived's checker ran at about 100 probes a second and 1 ms of CPU per probe from its
/// second round on (lbd's did not change), so that the ratio said more about the namespace's
/// history than about the checkers.
fn baseline(lab: &mut Lab, me: &Path, topology: Topology) -> anyhow::Result<(f64, f64, f64)> {
    let shim = lb_tests::bins::ipvs_shim(lab.dir())?;
    let conf = lab.write_file("keepalived.conf", &config(BASELINE_REALS, 0));
    let mut rounds = Vec::new();
    let mut failed = 0;
    let mut lbd_up = Vec::new();
    for round in 0..ROUNDS {
        let load = load_average();
        let (mut k, mut l) = (None, None);
        for keepalived_turn in [round % 2 == 0, round % 2 == 1] {
            let role = format!("base{topology:?}{round}{}", if keepalived_turn { "k" } else { "l" });
            let hosts = bench_hosts(lab, &role.to_lowercase(), topology);
            let _server = start_server(&hosts.servers, me);
            if keepalived_turn {
                let (m, f) = measure_keepalived(lab, &hosts.checker, &shim, &conf, round)?;
                failed += f;
                k = Some(m);
            } else {
                let (m, up, _) = measure_lbd(&hosts.checker, me, BASELINE_REALS, 0, BASELINE_SECONDS, false)?;
                lbd_up.push(up);
                l = Some(m);
            }
        }
        let (Some(k), Some(l)) = (k, l) else { anyhow::bail!("round {round} measured nothing") };
        rounds.push((load, k, l));
    }
    println!(
        "\nSame-run baseline, {}: {BASELINE_REALS} TCP_CHECK servers at delay_loop 1, fresh namespaces and a \
         server process for each measurement; {ROUNDS} rounds, each measuring keepalived's checker and lbd's for {BASELINE_SECONDS} s after a 3 s \
         warm-up, one at a time (the first of a round alternates).\n",
        topology.describe()
    );
    println!(
        "| round | load average (1 min) | keepalived probes/s | keepalived CPU per probe (user + system) | \
         lbd probes/s | lbd CPU per probe (user + system) | ratio lbd / keepalived |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let cell = |m: &Measured| {
        let (user, sys) = m.per_probe();
        format!("{:.1} µs ({user:.1} + {sys:.1})", user + sys)
    };
    for (i, (load, k, l)) in rounds.iter().enumerate() {
        println!(
            "| {} | {load:.2} | {:.0} | {} | {:.0} | {} | {:.2} |",
            i + 1,
            k.rate,
            cell(k),
            l.rate,
            cell(l),
            l.total() / k.total()
        );
    }
    let ratios: Vec<f64> = rounds.iter().map(|(_, k, l)| l.total() / k.total()).collect();
    let (ratio, low, high) = median_and_range(&ratios);
    let (k_median, ..) = median_and_range(&rounds.iter().map(|(_, k, _)| k.total()).collect::<Vec<_>>());
    let (l_median, ..) = median_and_range(&rounds.iter().map(|(_, _, l)| l.total()).collect::<Vec<_>>());
    let (load, load_low, load_high) = median_and_range(&rounds.iter().map(|r| r.0).collect::<Vec<_>>());
    let rss = |m: fn(&(f64, Measured, Measured)) -> f64| {
        median_and_range(&rounds.iter().map(m).collect::<Vec<_>>()).0
    };
    println!(
        "\nlbd's CPU per TCP check is {ratio:.2} × keepalived's (median of {ROUNDS} rounds; range {low:.2} to \
         {high:.2}; goal: at most 0.5): {l_median:.1} µs against {k_median:.1} µs (medians). Load average \
         {load:.2} (median; {load_low:.2} to {load_high:.2}). RSS: keepalived {:.1} MiB (parent + checker), lbd \
         {:.1} MiB. keepalived logged {failed} failed checks; lbd had {:?} of {BASELINE_REALS} reals up at the \
         end of its rounds.",
        rss(|r| r.1.rss_mib),
        rss(|r| r.2.rss_mib),
        lbd_up
    );
    Ok((ratio, low, high))
}

/// keepalived's checker and lbd's on the main table's sets (10,000 TCP_CHECK, 1,000 HTTP_GET),
/// `SET_ROUNDS` rounds each, taking turns (who goes first alternates), each measurement in a fresh
/// namespace with its own server: CPU per probe and RSS side by side.
fn same_sets(lab: &mut Lab, me: &Path) -> anyhow::Result<()> {
    let shim = lb_tests::bins::ipvs_shim(lab.dir())?;
    println!(
        "\nThe main table's sets, keepalived's checker and lbd's taking turns for {SET_ROUNDS} rounds (a fresh \
         namespace and server for each, {BASELINE_SECONDS} s once probing steadily; real servers on another \
         host). The floor is the kernel's part of a probe, measured in lbd's process after its round: \
         sockets connected a hundred at a time, (HTTP) the request sent and the page read, and reset, to \
         the same addresses; what a checker spends above it is its own:\n"
    );
    println!(
        "| set | round | load average (1 min) | keepalived probes/s | keepalived CPU per probe | keepalived RSS \
         (parent + checker) | lbd probes/s | lbd CPU per probe | lbd RSS | ratio lbd / keepalived | floor | \
         above the floor, lbd / keepalived |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let sets =
        [(format!("{TCP_REALS} TCP_CHECK"), TCP_REALS, 0), (format!("{HTTP_REALS} HTTP_GET"), 0, HTTP_REALS)];
    for (set, (label, tcp, http)) in sets.into_iter().enumerate() {
        let conf = lab.write_file(&format!("keepalived-set{set}.conf"), &config(tcp, http));
        for round in 0..SET_ROUNDS {
            let load = load_average();
            let (mut k, mut l) = (None, None);
            for keepalived_turn in [round % 2 == 0, round % 2 == 1] {
                let role = format!("set{set}{round}{}", if keepalived_turn { "k" } else { "l" });
                let hosts = bench_hosts(lab, &role, Topology::Link);
                let _server = start_server(&hosts.servers, me);
                if keepalived_turn {
                    k = Some(measure_keepalived(lab, &hosts.checker, &shim, &conf, 100 + set * 10 + round)?);
                } else {
                    l = Some(measure_lbd(&hosts.checker, me, tcp, http, BASELINE_SECONDS, true)?);
                }
            }
            let (Some((k, failed)), Some((l, up, floor))) = (k, l) else {
                anyhow::bail!("{label}: nothing measured")
            };
            println!(
                "| {label} | {} | {load:.2} | {:.0} | {:.1} µs | {:.1} MiB | {:.0} | {:.1} µs | {:.1} MiB | {:.2} | \
                 {floor:.1} µs | {:.1} / {:.1} µs |",
                round + 1,
                k.rate,
                k.total(),
                k.rss_mib,
                l.rate,
                l.total(),
                l.rss_mib,
                l.total() / k.total(),
                l.total() - floor,
                k.total() - floor,
            );
            if failed > 0 || up < (tcp + http) as f64 {
                println!(
                    "\n({label}, round {}: keepalived logged {failed} failed checks; lbd had {up} of {} up.)\n",
                    round + 1,
                    tcp + http
                );
            }
        }
    }
    Ok(())
}

/// One round of keepalived's checker on `conf`: what it costs, and the failed checks it logged.
fn measure_keepalived(
    lab: &Lab,
    ns: &Netns,
    shim: &Path,
    conf: &Path,
    round: usize,
) -> anyhow::Result<(Measured, usize)> {
    let pid = |what: &str| lab.dir().join(format!("keepalived-{what}.pid"));
    // Left behind by the previous round's SIGKILL.
    let _ = std::fs::remove_file(pid("main"));
    let _ = std::fs::remove_file(pid("checkers"));
    let preload = format!("LD_PRELOAD={}", shim.display());
    let (conf, main_pid, checker_pid) = (
        conf.display().to_string(),
        pid("main").display().to_string(),
        pid("checkers").display().to_string(),
    );
    let mut keepalived = ns.spawn(
        &format!("keepalived-{round}"),
        "env",
        &[&preload, KEEPALIVED, "-n", "-l", "-C", "-f", &conf, "-p", &main_pid, "-c", &checker_pid],
    );
    wait_until(Duration::from_secs(20), "keepalived's checker", || {
        keepalived.assert_running();
        keepalived.log().contains("Startup complete") && pid("checkers").exists()
    });
    let read_pid =
        |path: &Path| -> anyhow::Result<u32> { Ok(std::fs::read_to_string(path)?.trim().parse()?) };
    let (main, checker) = (read_pid(&pid("main"))?, read_pid(&pid("checkers"))?);
    // keepalived activates its checkers one by one after "Startup complete" (10,000 take about
    // 30 s here, with no probe made meanwhile), then probes them all at once and waits about 15 s
    // before probing steadily: measure once all are active and it has probed in each of 3
    // seconds in a row.
    let reals = std::fs::read_to_string(conf)?.matches("real_server").count();
    wait_until(Duration::from_secs(180), "keepalived to activate every checker", || {
        keepalived.assert_running();
        keepalived.log().matches("Activating healthchecker for service").count() >= reals
    });
    let (mut last, mut busy_seconds, waiting) = (ns.tcp_counter("ActiveOpens"), 0, Instant::now());
    while busy_seconds < 3 {
        anyhow::ensure!(waiting.elapsed() < Duration::from_secs(120), "keepalived's checker does not probe");
        std::thread::sleep(Duration::from_secs(1));
        let now = ns.tcp_counter("ActiveOpens");
        busy_seconds = if now > last { busy_seconds + 1 } else { 0 };
        last = now;
    }
    let (opens, cpu, started) = (ns.tcp_counter("ActiveOpens"), proc_cpu(checker)?, Instant::now());
    std::thread::sleep(Duration::from_secs(BASELINE_SECONDS));
    let (opens_after, cpu_after) = (ns.tcp_counter("ActiveOpens"), proc_cpu(checker)?);
    let elapsed = started.elapsed().as_secs_f64();
    let rss_mib = proc_rss_mib(main) + proc_rss_mib(checker);
    // "TCP_CHECK on service ... failed", "HTTP_CHECK on service ... failed ...".
    let failed = keepalived.log().matches("_CHECK on service").count();
    keepalived.kill();
    let measured = Measured {
        rate: (opens_after - opens) as f64 / elapsed,
        user: (cpu_after.0 - cpu.0) / elapsed,
        sys: (cpu_after.1 - cpu.1) / elapsed,
        rss_mib,
    };
    Ok((measured, failed))
}

/// One round of lbd's checker (`check::Runner` in a process of its own) on `tcp` TCP_CHECK and
/// `http` HTTP_GET real servers: what it costs, the real servers up at the end, and with
/// `floor` the floor's CPU per probe in µs (NaN without).
fn measure_lbd(
    ns: &Netns,
    me: &Path,
    tcp: usize,
    http: usize,
    seconds: u64,
    floor: bool,
) -> anyhow::Result<(Measured, f64, f64)> {
    let floor = if floor { "floor" } else { "nofloor" };
    let out = ns.exec(me, &["check", &tcp.to_string(), &http.to_string(), &seconds.to_string(), floor]);
    anyhow::ensure!(out.status.success(), "checker: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let value = |key: &str| -> f64 {
        text.lines().find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse().ok())).unwrap_or(f64::NAN)
    };
    let measured = Measured {
        rate: value("probes_per_s"),
        user: value("user_s_per_s"),
        sys: value("sys_s_per_s"),
        rss_mib: value("rss_mib"),
    };
    Ok((measured, value("reals_up"), value("floor_user_us") + value("floor_sys_us")))
}

/// Process `pid`'s (user, system) CPU seconds so far.
fn proc_cpu(pid: u32) -> anyhow::Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN) / hz;
    Ok((field(11), field(12)))
}

/// Process `pid`'s resident set in MiB.
fn proc_rss_mib(pid: u32) -> f64 {
    status_rss_mib(&format!("/proc/{pid}/status"))
}

/// Accepts on 0.0.0.0:80 (holding each connection until the client ends it) and 0.0.0.0:81
/// (answering a page), forever.
fn serve() -> anyhow::Result<()> {
    let tcp = TcpListener::bind("0.0.0.0:80")?;
    let http = TcpListener::bind("0.0.0.0:81")?;
    for listener in [&tcp, &http] {
        // A backlog for 10,000 connections a second (std listens with 128).
        // SAFETY: listen(2) on a socket we own; calling it again only changes the backlog.
        let rc = unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(listener), 65535) };
        anyhow::ensure!(rc == 0, "listen: {}", std::io::Error::last_os_error());
    }
    // Port 80 holds each connection until the client ends it, as a service waiting for a
    // request would (a server that closed first would keep the TIME_WAIT of every probe).
    tcp.set_nonblocking(true)?;
    let t = std::thread::spawn(move || -> std::io::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
        runtime.block_on(async move {
            let tcp = tokio::net::TcpListener::from_std(tcp)?;
            loop {
                let (mut stream, _) = tcp.accept().await?;
                tokio::spawn(async move {
                    use tokio::io::AsyncReadExt as _;
                    let mut buf = [0; 64];
                    while let Ok(1..) = stream.read(&mut buf).await {}
                });
            }
        })
    });
    std::thread::spawn(move || {
        for mut stream in http.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
            let mut buf = [0; 1024];
            let mut head = Vec::new();
            while let Ok(n @ 1..) = stream.read(&mut buf) {
                head.extend_from_slice(&buf[..n]);
                if head.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let _ = stream.write_all(PAGE);
        }
    });
    println!("listening");
    let _ = t.join();
    Ok(())
}

fn config(tcp: usize, http: usize) -> String {
    let mut text = String::from("virtual_server 10.0.0.1 80 {\n delay_loop 1\n protocol TCP\n");
    for i in 0..tcp {
        text.push_str(&format!(
            " real_server {} 80 {{\n  TCP_CHECK {{\n   connect_timeout 2\n  }}\n }}\n",
            real(1, i)
        ));
    }
    text.push_str("}\n");
    if http == 0 {
        return text;
    }
    let digest = lb_daemon::genhash::hex(&lb_daemon::genhash::body_digest(b"ok\n"));
    text.push_str("virtual_server 10.0.0.2 81 {\n delay_loop 1\n protocol TCP\n");
    for i in 0..http {
        text.push_str(&format!(
            " real_server {} 81 {{\n  HTTP_GET {{\n   url {{\n    path /\n    digest {digest}\n   }}\n   connect_timeout 2\n  }}\n }}\n",
            real(2, i)
        ));
    }
    text.push_str("}\n");
    text
}

/// The process's (user, system) CPU seconds so far.
fn cpu_seconds() -> (f64, f64) {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (tv(usage.ru_utime), tv(usage.ru_stime))
}

fn rss_mib() -> f64 {
    status_rss_mib("/proc/self/status")
}

fn status_rss_mib(path: &str) -> f64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// Probes of the floor made together: one wait serves them all.
const FLOOR_BATCH: usize = 100;

/// `n` bare probes of the floor, TCP_CHECKs or (`http`) HTTP_GETs of the bench's page, in
/// batches of [`FLOOR_BATCH`] non-blocking sockets: each connected, (HTTP) its request sent and
/// the page read to the server's close, then reset by `connect(AF_UNSPEC)` for the next batch.
/// The batch waits for its sockets with poll(2), a few wakeups for a hundred probes: what is
/// left is the kernel's work for each probe.
fn floor_probes(n: usize, http: bool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let sockets = (0..FLOOR_BATCH)
        .map(|_| socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM.nonblocking(), None))
        .collect::<std::io::Result<Vec<_>>>()?;
    let unspec = libc::sockaddr { sa_family: libc::AF_UNSPEC as libc::sa_family_t, sa_data: [0; 14] };
    let request = b"GET / HTTP/1.0\r\nHost: h\r\n\r\n";
    let mut page = [0u8; 4096];
    // Waits until every socket still in `pending` is ready for `events`; keeps the others.
    let wait = |pending: &mut Vec<usize>, events: libc::c_short| -> std::io::Result<Vec<usize>> {
        let mut fds: Vec<libc::pollfd> = pending
            .iter()
            .map(|&s| libc::pollfd { fd: sockets[s].as_raw_fd(), events, revents: 0 })
            .collect();
        // SAFETY: poll writes the revents of the array it is given.
        if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 5_000) } <= 0 {
            return Err(std::io::Error::other("floor: no answer within 5 s"));
        }
        let (ready, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(pending).into_iter().zip(&fds).partition(|(_, fd)| fd.revents != 0);
        *pending = waiting.into_iter().map(|(s, _)| s).collect();
        Ok(ready.into_iter().map(|(s, _)| s).collect())
    };
    for batch in 0..n.div_ceil(FLOOR_BATCH) {
        let mut pending = Vec::new();
        for (s, socket) in sockets.iter().enumerate() {
            let i = batch * FLOOR_BATCH + s;
            let addr = if http { (real(2, i % HTTP_REALS), 81) } else { (real(1, i % TCP_REALS), 80) };
            match socket.connect(&SocketAddr::from(addr).into()) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
                Err(e) => return Err(e),
            }
            pending.push(s);
        }
        let mut reading = Vec::new();
        while !pending.is_empty() {
            for s in wait(&mut pending, libc::POLLOUT)? {
                if let Some(e) = sockets[s].take_error()? {
                    return Err(e);
                }
                if http {
                    sockets[s].send(request)?;
                    reading.push(s);
                }
            }
        }
        while !reading.is_empty() {
            for s in wait(&mut reading, libc::POLLIN)? {
                loop {
                    match (&sockets[s]).read(&mut page) {
                        Ok(0) => break,
                        Ok(_) => {}
                        // The rest of the page comes later: wait for it again.
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            reading.push(s);
                            break;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        for socket in &sockets {
            // SAFETY: connect reads the AF_UNSPEC address we own.
            let rc = unsafe {
                libc::connect(
                    socket.as_raw_fd(),
                    &unspec,
                    std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
                )
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Runs the checkers of `tcp` + `http` real servers for `seconds` after a warm-up and prints
/// `key value` lines; then, with `floor`, the floor.
fn check(tcp: usize, http: usize, seconds: u64, floor: bool) -> anyhow::Result<()> {
    let loaded = lb_daemon::config::parse_str("bench.conf", &config(tcp, http), &Default::default());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let runner = lb_daemon::check::Runner::spawn(&loaded.config);
        // The first probes are spread over one delay_loop (warmup); let them settle.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (probes, cpu, started) = (runner.probes(), cpu_seconds(), Instant::now());
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let elapsed = started.elapsed().as_secs_f64();
        let now = cpu_seconds();
        println!("probes_per_s {}", (runner.probes() - probes) as f64 / elapsed);
        println!("user_s_per_s {}", (now.0 - cpu.0) / elapsed);
        println!("sys_s_per_s {}", (now.1 - cpu.1) / elapsed);
        println!("rss_mib {}", rss_mib());
        let up = runner.desired().services.iter().map(|s| s.reals.len()).sum::<usize>();
        println!("reals_up {up}");
    });
    // The checkers' tasks end with their runtime, and close their sockets (a connection the
    // loop had not yet sent its request on would hold the server's one HTTP thread).
    drop(runtime);
    if !floor {
        return Ok(());
    }
    // The floor: the kernel's part of a probe, as cheap as a checker can make it: sockets
    // connected a hundred at a time, (for HTTP) a request sent and the page read to the
    // server's close, and reset, to the same addresses.
    let n = 20_000;
    let cpu = cpu_seconds();
    floor_probes(n, tcp == 0)?;
    let now = cpu_seconds();
    println!("floor_user_us {}", (now.0 - cpu.0) / n as f64 * 1e6);
    println!("floor_sys_us {}", (now.1 - cpu.1) / n as f64 * 1e6);
    Ok(())
}
