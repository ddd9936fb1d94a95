//! `cargo xtask bench xdp`: the XDP program measured two ways. Prints markdown on stdout.
//!
//! `lb-bench-xdp per-packet`: the program's own cost per packet, by BPF_PROG_TEST_RUN, for a
//! new TCP flow and an established one in each forwarding method, with a trivial XDP_TX
//! program measured in the same run as the floor. Every measurement is one repeat=1 call on a
//! fresh copy of the frame (with repeat=N the kernel hands a rewriting program its own output
//! from the second run on), in a namespace whose routes and neighbours make the FIB lookups
//! succeed as on a real load balancer. The figure is the median of the kernel-reported
//! durations; "net" subtracts the floor's median.
//!
//! `lb-bench-xdp live`: the end-to-end forwarding rate over veth between three namespaces,
//! all on one CPU. A generator (`lb_bench_gen`, run by BPF_PROG_TEST_RUN with live frames)
//! sends 64-byte TCP frames of 1024 flows out of `gen`'s veth with XDP_TX; the middle
//! namespace forwards them to `sink`, whose XDP program counts and drops them. The middle is,
//! in the same run: nothing but a counting receiver (the harness floor), two reference XDP
//! middles (a plain XDP_REDIRECT forwarder and a stateless DNAT, `lb-ebpf/src/bench.rs`: what
//! the shared notes measured at 15.7 and 14-15.5 Mpps on the anchor machine), lbd's program
//! (NAT, established flows), the kernel's IPv4 forwarding, and nftables DNAT with conntrack.
//! The middle's own cost per packet is the difference of 1 / rate from the floor's; lbd's rate
//! is also given relative to the stateless DNAT's, which normalizes away this machine's speed.
//!
//! `lb-bench-xdp verifier`: how much of the verifier's budget (1M instructions per program)
//! each of lbd's programs takes as the daemon loads them.
//!
//! `LBD_BENCH_BASELINE_OBJECT=PATH` measures another build of lbd's object (main's, say) the
//! same way in the same run, for a before / after comparison.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap as AyaHashMap, PerCpuArray, xdp::DevMap},
    programs::{TestRun as _, TestRunAttrs, TestRunOptions, Xdp, XdpMode},
};
use lb_common::{
    bench::{FRAME_LEN, GenTemplate, RefForward, maps as bench_maps, programs as bench_programs},
    lb::{Method, Real, SLOTS_PER_SERVICE, Service, ServiceKey, family, ipv4_words, service_flags},
    programs::{FLOOR_XDP, LB_XDP},
};
use lb_daemon::dataplane::Algorithm;
use lb_tests::{
    fixture::{lb_namespace, load_tables, load_tables_into},
    lab::{Lab, Netns},
    packet::Packet,
    xdp::{XdpAction, XdpTestRun},
};
use pnet_packet::tcp::TcpFlags;

const RUNS: u16 = 5000;
/// Rounds of the per-packet measurement; each cell keeps its best round.
const PER_PACKET_ROUNDS: u8 = 5;
/// Frames per live measurement.
const FRAMES: u32 = 5_000_000;
/// Live measurements per middle; the best is kept (other load on the machine only slows).
const ROUNDS: usize = 3;
/// Flows the generator cycles through.
const FLOWS: u32 = 1024;
/// Frames the generator hands the kernel at a time.
const BATCH: u32 = 64;
/// The CPU everything runs on.
const CPU: usize = 1;
/// Row names of the reference middles.
const REF_REDIRECT_ROW: &str = "reference: XDP_REDIRECT forwarder (MACs, devmap)";
const REF_DNAT_ROW: &str = "reference: redirect + stateless DNAT (address, port, checksums, MACs)";

fn median(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_nanos() as f64
}

/// Runs per call of [`hot`].
const HOT_REPEAT: u32 = 100_000;

/// Mean cost of one run of `program` on `frame` over [`HOT_REPEAT`] runs in one call, best of
/// five calls: caches warm and no per-call harness. Valid only for frames the program rewrites
/// idempotently (DR: the MAC addresses).
fn hot(program: &XdpTestRun, ifindex: u32, frame: &[u8]) -> f64 {
    (0..5)
        .map(|_| program.run_repeated_on(ifindex, frame, HOT_REPEAT).duration.as_nanos() as f64)
        .fold(f64::MAX, f64::min)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("valid address")
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// lbd's object measured as "this build": the one the daemon embeds, or the file
/// `LBD_BENCH_OBJECT` names (to compare variants without rebuilding the daemon).
fn this_object() -> Vec<u8> {
    match std::env::var("LBD_BENCH_OBJECT") {
        Ok(path) => std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")),
        Err(_) => lb_daemon::dataplane::xdp::OBJECT.to_vec(),
    }
}

/// The object to compare against, if `LBD_BENCH_BASELINE_OBJECT` names one.
fn baseline() -> Option<Vec<u8>> {
    let path = std::env::var("LBD_BENCH_BASELINE_OBJECT").ok()?;
    Some(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

fn main() {
    let baseline = baseline();
    match std::env::args().nth(1).as_deref() {
        Some("per-packet") => per_packet(baseline.as_deref()),
        Some("live") => live(baseline.as_deref()),
        Some("warm") => warm(),
        Some("new-flows") => new_flows(),
        Some("verifier") => verifier(baseline.as_deref()),
        other => {
            eprintln!("usage: lb-bench-xdp per-packet|live|warm|new-flows|verifier (got {other:?})");
            std::process::exit(2);
        }
    }
}

/// The verifier's budget: each of lbd's programs loaded as the daemon loads them, and the
/// instructions the kernel's verifier walked for it (`verified_insns`), against its limit of
/// 1,000,000 per program. A program near the limit fails to load on a kernel or compiler whose
/// walk is a little longer, so the share left is a figure to keep, like a time.
fn verifier(baseline: Option<&[u8]>) {
    const LIMIT: f64 = 1_000_000.0;
    let count = |object: &[u8]| -> Vec<(String, u32)> {
        let mut lbd = XdpTestRun::load(object, LB_XDP);
        let mut rows = Vec::new();
        for (name, program) in lbd.ebpf_mut().programs() {
            let Ok(info) = program.info() else { continue };
            if let Some(insns) = info.verified_instruction_count() {
                rows.push((name.to_owned(), insns));
            }
        }
        rows.sort();
        rows
    };
    let this = count(&this_object());
    let before = baseline.map(count).unwrap_or_default();
    println!("| program | verified instructions | share of the limit | baseline object |");
    println!("| --- | --- | --- | --- |");
    for (name, insns) in &this {
        let base =
            before.iter().find(|(n, _)| n == name).map_or_else(|| "-".to_owned(), |(_, b)| b.to_string());
        println!("| `{name}` | {insns} | {:.1} % | {base} |", f64::from(*insns) / LIMIT * 100.0);
    }
    for (name, insns) in before.iter().filter(|(n, _)| !this.iter().any(|(t, _)| t == n)) {
        println!("| `{name}` (baseline only) | - | - | {insns} |");
    }
}

/// For profiling (`perf record -a -g` around it): the warm DR established packet of
/// `per-packet`, [`HOT_REPEAT`] runs per call for `LBD_BENCH_SECONDS` (default 10) seconds, so
/// that the program, not the setup, fills the profile. Prints the mean cost per run.
fn warm() {
    let seconds: u64 = env_or("LBD_BENCH_SECONDS", 10);
    let mut lab = Lab::new();
    let (lb, ifindex, _) = lb_namespace(&mut lab);
    let (runs, total) = lb.enter(|| {
        let mut program = XdpTestRun::load(lb_daemon::dataplane::xdp::OBJECT, LB_XDP);
        load_tables(&mut program);
        let ack =
            Packet::tcp(addr("10.9.2.1:5000"), addr("10.0.0.101:80"), TcpFlags::ACK, b"payload").build();
        program.run_on(ifindex, &Packet::tcp_syn(addr("10.9.2.1:5000"), addr("10.0.0.101:80")).build());
        let (start, mut runs, mut total) = (Instant::now(), 0u64, 0.0);
        while start.elapsed() < Duration::from_secs(seconds) {
            total += program.run_repeated_on(ifindex, &ack, HOT_REPEAT).duration.as_nanos() as f64;
            runs += 1;
        }
        (runs, total)
    });
    println!("warm DR established: {:.1} ns per run (mean of {runs} calls)", total / runs as f64);
}

/// For profiling the new-flow path (`perf record -a -g` around it): repeat=1 calls, each a SYN
/// of a client not seen before, to `LBD_BENCH_VIP` (default 10.0.0.100, the NAT service; the
/// scheduler services of [`sched_tables`] are 10.0.1.1-9) for `LBD_BENCH_SECONDS` (default 10)
/// seconds of calls, on a freshly loaded program every `LBD_BENCH_FLOWS` (default 50,000) calls
/// so that the connection table never fills (a full LRU evicts on every insert). Prints the
/// mean cost per call as the kernel reports it.
fn new_flows() {
    let seconds: u64 = env_or("LBD_BENCH_SECONDS", 10);
    let vip: String = env_or("LBD_BENCH_VIP", "10.0.0.100".to_owned());
    let mut lab = Lab::new();
    let (lb, ifindex, _) = lb_namespace(&mut lab);
    let flows: u32 = env_or("LBD_BENCH_FLOWS", 50_000);
    let (calls, total) = lb.enter(|| {
        let (mut calls, mut total, mut measured) = (0u32, 0.0, Duration::ZERO);
        while measured < Duration::from_secs(seconds) {
            let mut program = XdpTestRun::load(&this_object(), LB_XDP);
            load_tables(&mut program);
            sched_tables(program.ebpf_mut());
            let start = Instant::now();
            for _ in 0..flows {
                let syn = Packet::tcp_syn(distinct_client(calls), addr(&format!("{vip}:80"))).build();
                let out = program.run_on(ifindex, &syn);
                assert_eq!(out.action, XdpAction::Tx, "{vip}: new flow not forwarded");
                total += out.duration.as_nanos() as f64;
                calls += 1;
            }
            measured += start.elapsed();
        }
        (calls, total)
    });
    println!("new flows to {vip}: {:.1} ns per call (mean of {calls} calls)", total / f64::from(calls));
}

/// Client `i` of 2^32: its own address (10.x.y.z) and port, so that each is a new flow and, for
/// persistence and the source-hash schedulers, a new client.
fn distinct_client(i: u32) -> SocketAddr {
    let [a, b, c, d] = i.to_be_bytes();
    SocketAddr::new([10, 128 | (b & 0x7f), c, d].into(), 1024 + u16::from(a))
}

/// The services of the per-scheduler rows: one DR service per scheduler at 10.0.1.1-8 (ids
/// 10-17, in [`Algorithm::ALL`]'s order), and rr with persistence (all of the client address,
/// 300 s) at 10.0.1.9 (id 18), over four reals (ids 10-13, weights 1-4, at the fixture's
/// 10.0.0.11 and 10.0.0.13) with the rows the daemon builds.
fn sched_tables(ebpf: &mut Ebpf) {
    use lb_daemon::dataplane::sched::{Candidate, build, scheduler};
    let ids = [10u32, 11, 12, 13];
    let mut reals: Array<_, Real> =
        Array::try_from(ebpf.map_mut(lb_common::maps::REALS).expect("map")).expect("the real table");
    let candidates: Vec<Candidate> = ids
        .iter()
        .zip(1u32..)
        .map(|(&id, weight)| {
            let octet = if id % 2 == 0 { 11 } else { 13 };
            let real = Real {
                addr: ipv4_words([10, 0, 0, octet]),
                tunnel_source: ipv4_words([10, 0, 0, 1]),
                family: family::IPV4,
                weight,
                ..Real::default()
            };
            reals.set(id, real, 0).expect("a real");
            Candidate { id, weight, addr: [10, 0, 0, octet].into(), port: 0 }
        })
        .collect();
    let rows: Vec<(u32, Algorithm, u16)> = Algorithm::ALL
        .iter()
        .zip(10u32..)
        .map(|(&(_, algorithm), id)| (id, algorithm, 0))
        .chain([(18, Algorithm::RoundRobin, service_flags::PERSISTENT)])
        .collect();
    let mut slots: Array<_, u32> =
        Array::try_from(ebpf.map_mut(lb_common::maps::SLOTS).expect("map")).expect("the slot table");
    let mut services = Vec::new();
    for &(id, algorithm, flags) in &rows {
        let row = build(algorithm, &candidates);
        for (i, &real) in row.slots.iter().enumerate() {
            slots.set(id * SLOTS_PER_SERVICE + i as u32, real, 0).expect("a slot");
        }
        let key = ServiceKey {
            addr: ipv4_words([10, 0, 1, (id - 9) as u8]),
            port: 80u16.to_be(),
            proto: 6,
            family: family::IPV4,
        };
        let service = Service {
            id,
            slots_len: row.slots.len() as u32,
            persistence_timeout: if flags != 0 { 300 } else { 0 },
            persistence_mask: [u32::MAX; 4],
            flags,
            method: Method::Dr as u8,
            scheduler: scheduler(algorithm) as u8,
            ..Service::default()
        };
        services.push((key, service));
    }
    let mut map: AyaHashMap<_, ServiceKey, Service> =
        AyaHashMap::try_from(ebpf.map_mut(lb_common::maps::SERVICES).expect("map")).expect("the services");
    for (key, service) in services {
        map.insert(key, service, 0).expect("a service");
    }
}

/// The far end of the warm NAT measurement's ping-pong: a NAT service at the NAT service's real
/// server (10.0.0.11:8080, id 19) whose real server (id 14) is the NAT VIP, 10.0.0.100:80.
fn nat_mirror(ebpf: &mut Ebpf) {
    let mut reals: Array<_, Real> =
        Array::try_from(ebpf.map_mut(lb_common::maps::REALS).expect("map")).expect("the real table");
    let real = Real {
        addr: ipv4_words([10, 0, 0, 100]),
        port: 80u16.to_be(),
        family: family::IPV4,
        weight: 1,
        ..Real::default()
    };
    reals.set(14, real, 0).expect("a real");
    let mut slots: Array<_, u32> =
        Array::try_from(ebpf.map_mut(lb_common::maps::SLOTS).expect("map")).expect("the slot table");
    slots.set(19 * SLOTS_PER_SERVICE, 14, 0).expect("a slot");
    let key = ServiceKey {
        addr: ipv4_words([10, 0, 0, 11]),
        port: 8080u16.to_be(),
        proto: 6,
        family: family::IPV4,
    };
    let service = Service { id: 19, slots_len: 1, method: Method::Nat as u8, ..Service::default() };
    let mut map: AyaHashMap<_, ServiceKey, Service> =
        AyaHashMap::try_from(ebpf.map_mut(lb_common::maps::SERVICES).expect("map")).expect("the services");
    map.insert(key, service, 0).expect("a service");
}

/// Names of the rows of [`sched_costs`], in [`sched_tables`]' order.
fn sched_rows() -> Vec<String> {
    Algorithm::ALL
        .iter()
        .map(|(name, _)| format!("DR, {name}"))
        .chain(["DR, rr + persistence".to_owned()])
        .collect()
}

/// Median cost of a new flow per scheduler (the services of [`sched_tables`]); each run a new
/// client (address and port), each round clients of its own.
fn sched_costs(program: &XdpTestRun, ifindex: u32, runs: u16, round: u8) -> Vec<f64> {
    (1..=sched_rows().len() as u8)
        .map(|n| {
            let vip = SocketAddr::new([10, 0, 1, n].into(), 80);
            let first = u32::from(round) << 24 | u32::from(n) << 16;
            median(
                (0..u32::from(runs))
                    .map(|i| {
                        let out = program
                            .run_on(ifindex, &Packet::tcp_syn(distinct_client(first + i), vip).build());
                        assert_eq!(out.action, XdpAction::Tx, "{vip}: new flow not forwarded");
                        out.duration
                    })
                    .collect(),
            )
        })
        .collect()
}

/// Median cost of a new flow and of an established flow's packet, per method. Each `round`
/// uses clients of its own, so that its new flows are new.
fn method_costs(program: &XdpTestRun, ifindex: u32, runs: u16, round: u8) -> Vec<(&'static str, f64, f64)> {
    let mut rows = Vec::new();
    for (method, vip, vlan) in [
        ("NAT", "10.0.0.100", None),
        ("DR", "10.0.0.101", None),
        ("TUN", "10.0.0.102", None),
        ("FNAT", "10.0.0.103", None),
        ("NAT, 802.1Q tag", "10.0.0.100", Some(5)),
        ("NAT, IPv6", "2001:db8::100", None),
        ("FNAT, IPv6", "2001:db8::103", None),
    ] {
        let vip = SocketAddr::new(vip.parse().expect("valid"), 80);
        // Clients in 10.9.0.0/16 or 2001:db8:9::/64, whose route goes via the gateway.
        let client = |net: u8| -> IpAddr {
            match vip {
                SocketAddr::V4(_) => [10, 9, net, round + 1].into(),
                SocketAddr::V6(_) => [0x2001, 0xdb8, 9, 0, 0, 0, u16::from(net), u16::from(round) + 1].into(),
            }
        };
        let frame = |p: Packet| match vlan {
            Some(id) => p.vlan(id).build(),
            None => p.build(),
        };
        // New flows: a new client port every run.
        let mut new = Vec::new();
        for i in 0..runs {
            let client = SocketAddr::new(client(1), 1024 + i);
            let out = program.run_on(ifindex, &frame(Packet::tcp_syn(client, vip)));
            assert_eq!(out.action, XdpAction::Tx, "{method}: new flow not forwarded");
            new.push(out.duration);
        }
        // Established: ACKs of one flow.
        let client = SocketAddr::new(client(2), 5000);
        program.run_on(ifindex, &frame(Packet::tcp_syn(client, vip)));
        let ack = frame(Packet::tcp(client, vip, TcpFlags::ACK, b"payload"));
        let established: Vec<_> = (0..runs)
            .map(|_| {
                let out = program.run_on(ifindex, &ack);
                assert_eq!(out.action, XdpAction::Tx, "{method}: established flow not forwarded");
                out.duration
            })
            .collect();
        rows.push((method, median(new), median(established)));
    }
    rows
}

/// Cell by cell, the lower of two tables of [`method_costs`] (`None`: the other).
fn best(a: Option<Rows>, b: Rows) -> Rows {
    match a {
        None => b,
        Some(a) => a.iter().zip(&b).map(|(x, y)| (x.0, x.1.min(y.1), x.2.min(y.2))).collect(),
    }
}

type Rows = Vec<(&'static str, f64, f64)>;

fn per_packet(baseline: Option<&[u8]>) {
    let runs: u16 = env_or("LBD_BENCH_RUNS", RUNS);
    let rounds: u8 = env_or("LBD_BENCH_ROUNDS", PER_PACKET_ROUNDS);
    let mut lab = Lab::new();
    let (lb, ifindex, _) = lb_namespace(&mut lab);
    // The far end of the warm NAT ping-pong (see `nat_mirror`) is a neighbour of the LB.
    lb.ip(&["neigh", "add", "10.0.0.100", "lladdr", "02:00:00:00:00:64", "dev", "eth0", "nud", "permanent"]);
    let (floor_ns, rows, before, (hot_floor, hot_dr, hot_nat), scheds) = lb.enter(|| {
        let floor = XdpTestRun::load(lb_daemon::dataplane::xdp::OBJECT, FLOOR_XDP);
        let frame = Packet::tcp_syn(addr("10.9.0.7:40000"), addr("10.0.0.100:80")).build();
        // Fresh maps every round: FNAT's new flows take local ports of one address towards one
        // real server, and rounds of them would run out.
        let load = |object: &[u8]| {
            let mut program = XdpTestRun::load(object, LB_XDP);
            load_tables(&mut program);
            sched_tables(program.ebpf_mut());
            nat_mirror(program.ebpf_mut());
            program
        };
        let dr_ack =
            Packet::tcp(addr("10.9.2.1:5000"), addr("10.0.0.101:80"), TcpFlags::ACK, b"payload").build();
        // Rounds alternate between the programs, and each cell keeps its best round: other load
        // on the machine only slows a measurement down.
        // NAT established, warm: a flow to the NAT VIP whose rewritten packet is a flow of
        // `nat_mirror`'s service, rewritten back; both set up by their SYN, then established by
        // the first ACKs of the repeated runs.
        let nat_ack =
            Packet::tcp(addr("10.9.2.9:5000"), addr("10.0.0.100:80"), TcpFlags::ACK, b"payload").build();
        let nat_syns = [
            Packet::tcp_syn(addr("10.9.2.9:5000"), addr("10.0.0.100:80")).build(),
            Packet::tcp_syn(addr("10.9.2.9:5000"), addr("10.0.0.11:8080")).build(),
        ];
        let hot_nat_of = |program: &XdpTestRun| {
            for syn in &nat_syns {
                program.run_on(ifindex, syn);
            }
            hot(program, ifindex, &nat_ack)
        };
        let (mut floor_ns, mut hot_floor) = (f64::MAX, f64::MAX);
        // (this build, baseline)
        let (mut hot_dr, mut hot_nat) = ((f64::MAX, f64::MAX), (f64::MAX, f64::MAX));
        let (mut rows, mut before) = (None, None);
        let mut scheds = vec![(f64::MAX, f64::MAX); sched_rows().len()];
        let keep_best =
            |cells: &mut [f64], new: Vec<f64>| cells.iter_mut().zip(new).for_each(|(c, n)| *c = c.min(n));
        let object = this_object();
        for round in 0..rounds {
            let program = load(&object);
            let baseline = baseline.map(load);
            floor_ns =
                floor_ns.min(median((0..runs).map(|_| floor.run_on(ifindex, &frame).duration).collect()));
            hot_floor = hot_floor.min(hot(&floor, ifindex, &frame));
            // The two programs take turns going first: whichever runs second in a round was
            // measured up to 1.5x faster in A/A runs (the same object as both).
            for turn in 0..2 {
                if (turn + round) % 2 == 0 {
                    rows = Some(best(rows, method_costs(&program, ifindex, runs, round)));
                    let mut after: Vec<f64> = scheds.iter().map(|c| c.1).collect();
                    keep_best(&mut after, sched_costs(&program, ifindex, runs, round));
                    scheds.iter_mut().zip(after).for_each(|(c, a)| c.1 = a);
                    hot_dr.0 = hot_dr.0.min(hot(&program, ifindex, &dr_ack));
                    hot_nat.0 = hot_nat.0.min(hot_nat_of(&program));
                } else if let Some(baseline) = &baseline {
                    before = Some(best(before, method_costs(baseline, ifindex, runs, round)));
                    let mut b: Vec<f64> = scheds.iter().map(|c| c.0).collect();
                    keep_best(&mut b, sched_costs(baseline, ifindex, runs, round));
                    scheds.iter_mut().zip(b).for_each(|(c, b)| c.0 = b);
                    hot_dr.1 = hot_dr.1.min(hot(baseline, ifindex, &dr_ack));
                    hot_nat.1 = hot_nat.1.min(hot_nat_of(baseline));
                }
            }
        }
        let rows = rows.expect("at least one round");
        (floor_ns, rows, before, (hot_floor, hot_dr, hot_nat), scheds)
    });
    println!("| method | new TCP flow (ns) | net of floor | established flow (ns) | net of floor |");
    println!("| --- | --- | --- | --- | --- |");
    for (method, new, established) in &rows {
        println!(
            "| {method} | {new:.0} | {:.0} | {established:.0} | {:.0} |",
            new - floor_ns,
            established - floor_ns
        );
    }
    println!();
    println!(
        "Floor (trivial XDP_TX program, same run): {floor_ns:.0} ns per call; medians of {runs} calls each, \
         best of {rounds} rounds (the programs alternate round by round)."
    );
    println!();
    println!(
        "Warm, without the per-call harness (the program run {HOT_REPEAT} times in one call on the same \
         buffer; best of 5 calls; net of the floor program run the same way, {hot_floor:.0} ns): a DR \
         established packet (whose rewrite, the MAC addresses, is idempotent) costs {:.0} ns per run, \
         {:.0} ns net; a NAT established packet {:.0} ns, {:.0} ns net (two NAT flows in a ping-pong: the \
         client's packet to the NAT VIP is rewritten to its real server 10.0.0.11:8080, a NAT service \
         there sends it back to the VIP, each run a cached established flow's).",
        hot_dr.0,
        hot_dr.0 - hot_floor,
        hot_nat.0,
        hot_nat.0 - hot_floor
    );
    if let Some(before) = before {
        println!();
        println!(
            "Before / after, same run (before: `LBD_BENCH_BASELINE_OBJECT`, main's object), net of floor:"
        );
        println!();
        println!(
            "| method | new flow before (ns) | after | ratio | established before (ns) | after | ratio |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- |");
        for ((method, new_b, est_b), (_, new_a, est_a)) in before.iter().zip(&rows) {
            let (new_b, new_a, est_b, est_a) =
                (new_b - floor_ns, new_a - floor_ns, est_b - floor_ns, est_a - floor_ns);
            println!(
                "| {method} | {new_b:.0} | {new_a:.0} | {:.1}x | {est_b:.0} | {est_a:.0} | {:.1}x |",
                new_b / new_a.max(1.0),
                est_b / est_a.max(1.0)
            );
        }
        println!();
        for (what, (after, before)) in [("DR", hot_dr), ("NAT", hot_nat)] {
            println!(
                "Warm {what} established (as above), before: {before:.0} ns per run, {:.0} ns net; after: \
                 {:.0} ns net ({:.1}x).",
                before - hot_floor,
                after - hot_floor,
                (before - hot_floor) / (after - hot_floor).max(1.0)
            );
        }
    }
    println!();
    println!(
        "New TCP flow per scheduler (DR services over four reals of weights 1-4 at two addresses, rows \
         built as the daemon builds them; a new client address and port every call), net of floor; before: \
         `LBD_BENCH_BASELINE_OBJECT`:"
    );
    println!();
    println!("| service | new flow before (ns) | after (ns) | ratio |");
    println!("| --- | --- | --- | --- |");
    for (name, (b, a)) in sched_rows().iter().zip(&scheds) {
        let a = a - floor_ns;
        if *b == f64::MAX {
            println!("| {name} | - | {a:.0} | - |");
        } else {
            let b = b - floor_ns;
            println!("| {name} | {b:.0} | {a:.0} | {:.1}x |", b / a.max(1.0));
        }
    }
}

/// The live-frames topology: gen:eth0 — lb:eth1 (10.9.0.1/24), lb:eth0 (10.0.0.1/24) —
/// sink:eth0 (10.0.0.11, real server 1 of the fixture's NAT service 10.0.0.100:80).
struct Live {
    gen_ns: Netns,
    lb: Netns,
    sink: Netns,
    generator: Ebpf,
    gen_ifindex: u32,
    template: Vec<u8>,
}

/// Loads `program` of `object` and attaches it to `interface` of `ns` (native mode).
fn attach(ns: &Netns, object: &[u8], program: &str, interface: &str) -> Ebpf {
    ns.enter(|| {
        let mut ebpf = EbpfLoader::new().load(object).unwrap_or_else(|e| panic!("loading the object: {e:?}"));
        let split = program == LB_XDP && ebpf.program(lb_common::programs::LB_XDP_FULL).is_some();
        if split {
            // With the full path it tail-calls (an older build's object has one program).
            lb_daemon::dataplane::xdp::load_programs(&mut ebpf).unwrap_or_else(|e| {
                panic!("loading {program}: {}", lb_daemon::dataplane::xdp::error_chain(&e))
            });
        }
        let xdp: &mut Xdp = ebpf.program_mut(program).expect("program").try_into().expect("XDP");
        if !split {
            xdp.load().unwrap_or_else(|e| {
                panic!("loading {program}: {}", lb_daemon::dataplane::xdp::error_chain(&e))
            });
        }
        xdp.attach(interface, XdpMode::Driver)
            .unwrap_or_else(|e| panic!("attaching {program} to {interface}: {e}"));
        ebpf
    })
}

/// The interface index of `interface` in `ns`.
fn ifindex(ns: &Netns, interface: &str) -> u32 {
    let out = ns.ip(&["-o", "link", "show", interface]);
    out.split(':').next().and_then(|i| i.trim().parse().ok()).expect("ifindex")
}

/// Attaches the reference middle `program` to lb:eth1, forwarding to the sink (out of lb:eth0)
/// and, for the DNAT, translating 10.0.0.100:80 to 10.0.0.11:8080 as lbd's NAT service does.
fn reference(live: &Live, program: &str) -> Ebpf {
    let mut ebpf = attach(&live.lb, lb_daemon::dataplane::xdp::OBJECT, program, "eth1");
    let conf = RefForward {
        dmac: live.sink.mac("eth0"),
        smac: live.lb.mac("eth0"),
        vip: [10, 0, 0, 100],
        real: [10, 0, 0, 11],
        vport: 80u16.to_be_bytes(),
        rport: 8080u16.to_be_bytes(),
    };
    let mut map: Array<_, RefForward> =
        Array::try_from(ebpf.map_mut(bench_maps::REF_FORWARD).expect("reference map")).expect("array");
    map.set(0, conf, 0).expect("reference configuration");
    let mut devices =
        DevMap::try_from(ebpf.map_mut(bench_maps::REF_DEVICES).expect("device map")).expect("device map");
    // The kernel resolves the index in the updating thread's namespace: lb's, not this one's.
    let index = ifindex(&live.lb, "eth0");
    live.lb.enter(|| devices.set(0, index, None, 0)).expect("device map entry");
    ebpf
}

/// Frames counted by a sink's program.
fn received(sink: &Ebpf) -> u64 {
    let map: PerCpuArray<_, u64> =
        PerCpuArray::try_from(sink.map(bench_maps::RECEIVED).expect("sink map")).expect("per-CPU array");
    map.get(&0, 0).expect("reading the sink's count").iter().sum()
}

impl Live {
    fn new(lab: &mut Lab) -> Self {
        let gen_ns = lab.netns("gen");
        let lb = lab.netns("lb");
        let sink = lab.netns("sink");
        lab.veth(&gen_ns, "eth0", &lb, "eth1");
        lab.veth(&lb, "eth0", &sink, "eth0");
        gen_ns.addr("eth0", "10.9.0.2/24");
        lb.addr("eth1", "10.9.0.1/24");
        lb.addr("eth0", "10.0.0.1/24");
        sink.addr("eth0", "10.0.0.11/24");
        let sink_mac = sink.mac("eth0").iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        lb.ip(&["neigh", "add", "10.0.0.11", "lladdr", &sink_mac, "dev", "eth0", "nud", "permanent"]);
        lb.sysctl("net.ipv4.conf.all.forwarding", "1");
        let generator = gen_ns.enter(|| {
            let mut ebpf = EbpfLoader::new()
                .load(lb_daemon::dataplane::xdp::OBJECT)
                .unwrap_or_else(|e| panic!("loading the object: {e:?}"));
            let xdp: &mut Xdp =
                ebpf.program_mut(bench_programs::GENERATOR).expect("generator").try_into().expect("XDP");
            xdp.load().unwrap_or_else(|e| panic!("loading the generator: {e}"));
            ebpf
        });
        let gen_ifindex = ifindex(&gen_ns, "eth0");
        Self { gen_ns, lb, sink, generator, gen_ifindex, template: Vec::new() }
    }

    /// Makes the generator send frames to `dst`.
    fn aim(&mut self, dst: &str) {
        let frame = Packet::tcp(addr("10.9.0.2:10000"), addr(dst), TcpFlags::ACK, &[0; 10])
            .macs(self.gen_ns.mac("eth0"), self.lb.mac("eth1"))
            .build();
        assert_eq!(frame.len(), FRAME_LEN);
        let mut bytes = [0u8; FRAME_LEN];
        bytes.copy_from_slice(&frame);
        let mut map: Array<_, GenTemplate> =
            Array::try_from(self.generator.map_mut(bench_maps::TEMPLATE).expect("template map"))
                .expect("array");
        map.set(0, GenTemplate { frame: bytes, flows: FLOWS, csum_offset: 50 }, 0).expect("template");
        self.template = frame;
    }

    /// Sends `frames` frames on CPU [`CPU`]; returns the time it took as the kernel measured it
    /// (its timer stops while the sender is rescheduled: other load on the machine then counts
    /// less than in wall time), and the wall time.
    fn send(&self, frames: u32) -> (Duration, Duration) {
        let xdp: &Xdp =
            self.generator.program(bench_programs::GENERATOR).expect("generator").try_into().expect("XDP");
        // struct xdp_md: data_end is the frame length, ingress_ifindex the sending veth.
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(FRAME_LEN as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&self.gen_ifindex.to_ne_bytes());
        self.gen_ns.enter(|| {
            let mut cpus = nix::sched::CpuSet::new();
            cpus.set(CPU).expect("CPU index");
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpus).expect("pinning to one CPU");
            let opts = TestRunOptions {
                data_in: Some(&self.template),
                ctx_in: Some(&ctx),
                repeat: frames,
                attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                ..Default::default()
            };
            let start = Instant::now();
            let result = xdp.test_run(opts).unwrap_or_else(|e| panic!("live frames: {e}"));
            // The kernel reports the mean time per frame, in whole nanoseconds.
            (result.duration * frames, start.elapsed())
        })
    }

    /// Best rate of [`ROUNDS`] runs (frames per second the sink counted, in the kernel's time
    /// and in wall time), after a warm-up that creates the flows.
    fn rate(&self, sink: &Ebpf, frames: u32) -> Rate {
        self.send(FLOWS * 16);
        let mut best = Rate { kernel: 0.0, wall: 0.0 };
        for _ in 0..ROUNDS {
            let before = received(sink);
            let (kernel, wall) = self.send(frames);
            let got = (received(sink) - before) as f64;
            best.kernel = best.kernel.max(got / kernel.as_secs_f64());
            best.wall = best.wall.max(got / wall.as_secs_f64());
        }
        best
    }
}

/// Frames per second.
#[derive(Clone, Copy)]
struct Rate {
    /// In the kernel's time of the sending test run.
    kernel: f64,
    /// In wall time.
    wall: f64,
}

fn live(baseline: Option<&[u8]>) {
    let frames: u32 = env_or("LBD_BENCH_FRAMES", FRAMES);
    let object = lb_daemon::dataplane::xdp::OBJECT;
    let mut lab = Lab::new();
    let mut live = Live::new(&mut lab);
    let sink_prog = attach(&live.sink, object, bench_programs::SINK, "eth0");
    let mut rows: Vec<(String, Rate)> = Vec::new();

    // Floor: the middle counts and drops.
    live.aim("10.0.0.100:80");
    {
        let first_hop = attach(&live.lb, object, bench_programs::SINK, "eth1");
        rows.push(("harness floor: the first hop counts and drops".into(), live.rate(&first_hop, frames)));
    }
    for (name, program) in
        [(REF_REDIRECT_ROW, bench_programs::REF_REDIRECT), (REF_DNAT_ROW, bench_programs::REF_DNAT)]
    {
        let _middle = reference(&live, program);
        rows.push((name.into(), live.rate(&sink_prog, frames)));
    }
    // lbd, NAT, established flows (after the warm-up), this object and the baseline's.
    for (name, object) in [("lbd NAT (this build)", Some(object)), ("lbd NAT (baseline object)", baseline)] {
        let Some(object) = object else { continue };
        let mut lbd = attach(&live.lb, object, LB_XDP, "eth1");
        load_tables_into(&mut lbd);
        rows.push((format!("{name}: XDP_REDIRECT to the real server"), live.rate(&sink_prog, frames)));
    }
    // The kernel's forwarding, frames addressed to the real server.
    live.aim("10.0.0.11:8080");
    rows.push(("kernel IPv4 forwarding".into(), live.rate(&sink_prog, frames)));
    // nftables DNAT to the real server.
    live.aim("10.0.0.100:80");
    let rules = "table ip lbbench {\n chain pre {\n  type nat hook prerouting priority -100;\n  \
                 ip daddr 10.0.0.100 tcp dport 80 dnat to 10.0.0.11:8080\n }\n}\n";
    let path = lab.write_file("nft-dnat.conf", rules);
    let out = live.lb.exec("nft", &["-f", path.to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "nft -f: {}", String::from_utf8_lossy(&out.stderr));
    rows.push(("nftables DNAT (conntrack)".into(), live.rate(&sink_prog, frames)));

    let floor = rows[0].1.kernel;
    println!(
        "| middle namespace | rate (Mpps) | own cost per packet (ns) | rate vs stateless DNAT | rate vs kernel \
         forwarding | rate in wall time (Mpps) |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    let rate_of =
        |prefix: &str| rows.iter().find(|(name, _)| name.starts_with(prefix)).map(|(_, r)| r.kernel);
    let kernel = rate_of("kernel").unwrap_or(1.0);
    let dnat = rate_of(REF_DNAT_ROW).unwrap_or(1.0);
    for (i, (name, rate)) in rows.iter().enumerate() {
        let own = if i == 0 { 0.0 } else { 1e9 / rate.kernel - 1e9 / floor };
        println!(
            "| {name} | {:.2} | {own:.1} | {:.2}x | {:.2}x | {:.2} |",
            rate.kernel / 1e6,
            rate.kernel / dnat,
            rate.kernel / kernel,
            rate.wall / 1e6
        );
    }
    println!();
    println!(
        "64-byte TCP frames of {FLOWS} flows, batches of {BATCH}, {frames} frames per measurement, best \
         of {ROUNDS}; generator, middle and sink all on CPU {CPU}. Rate: frames the sink counted per \
         second of the generator's test run as the kernel times it (its timer stops while the sender \
         is rescheduled, so other load on this shared machine counts less); the wall-time rate is \
         given too. Own cost: 1 / rate minus the floor's."
    );
    if let Some(lbd) = rate_of("lbd NAT (this build)") {
        println!();
        println!(
            "Normalized by the stateless DNAT of the same run (the anchor machine's 14-15.5 Mpps, 14.75 in \
             the middle): lbd NAT forwards at {:.2}x its rate; the goal, 12 Mpps, is 12 / 14.75 = 0.81x, \
             Katran's 7.8 Mpps 0.53x.",
            lbd / dnat
        );
    }
}
