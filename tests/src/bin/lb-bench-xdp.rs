//! `cargo xtask bench xdp`, part 1: the XDP program's own cost per packet, by
//! BPF_PROG_TEST_RUN, for a new TCP flow and an established one in each forwarding method,
//! with a trivial XDP_TX program measured in the same run as the floor.
//!
//! Every measurement is one repeat=1 call on a fresh copy of the frame (with repeat=N the
//! kernel hands a rewriting program its own output from the second run on), in a namespace
//! whose routes and neighbours make the FIB lookups succeed as on a real load balancer. The
//! figure is the median of the kernel-reported durations; "net" subtracts the floor's median.
//! Prints a markdown table on stdout.

use std::{net::SocketAddr, time::Duration};

use lb_common::programs::FLOOR_XDP;
use lb_tests::{
    fixture::{lb_namespace, load_tables},
    lab::Lab,
    packet::Packet,
    xdp::{XdpAction, XdpTestRun},
};
use pnet_packet::tcp::TcpFlags;

const RUNS: u16 = 5000;

fn median(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_nanos() as f64
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("valid address")
}

fn main() {
    let runs: u16 = std::env::var("LBD_BENCH_RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(RUNS);
    let mut lab = Lab::new();
    let (lb, ifindex, _) = lb_namespace(&mut lab);
    let rows = lb.enter(|| {
        let floor = XdpTestRun::load(lb_daemon::dataplane::xdp::OBJECT, FLOOR_XDP);
        let frame = Packet::tcp_syn(addr("10.9.0.7:40000"), addr("10.0.0.100:80")).build();
        let floor_ns = median((0..runs).map(|_| floor.run_on(ifindex, &frame).duration).collect());

        let mut program = XdpTestRun::lbd();
        load_tables(&mut program);
        let mut rows = Vec::new();
        for (method, vip) in
            [("NAT", "10.0.0.100"), ("DR", "10.0.0.101"), ("TUN", "10.0.0.102"), ("FNAT", "10.0.0.103")]
        {
            // New flows: a new client port every run.
            let mut new = Vec::new();
            for i in 0..runs {
                let client = SocketAddr::new("10.9.1.1".parse().expect("valid"), 1024 + i);
                let out =
                    program.run_on(ifindex, &Packet::tcp_syn(client, addr(&format!("{vip}:80"))).build());
                assert_eq!(out.action, XdpAction::Tx, "{method}: new flow not forwarded");
                new.push(out.duration);
            }
            // Established: ACKs of one flow.
            let client = addr("10.9.2.1:5000");
            let syn = Packet::tcp_syn(client, addr(&format!("{vip}:80"))).build();
            program.run_on(ifindex, &syn);
            let ack = Packet::tcp(client, addr(&format!("{vip}:80")), TcpFlags::ACK, b"payload").build();
            let established: Vec<_> = (0..runs)
                .map(|_| {
                    let out = program.run_on(ifindex, &ack);
                    assert_eq!(out.action, XdpAction::Tx, "{method}: established flow not forwarded");
                    out.duration
                })
                .collect();
            rows.push((method, median(new), median(established)));
        }
        (floor_ns, rows)
    });
    let (floor_ns, rows) = rows;
    println!("| method | new TCP flow (ns) | net of floor | established flow (ns) | net of floor |");
    println!("| --- | --- | --- | --- | --- |");
    for (method, new, established) in rows {
        println!(
            "| {method} | {new:.0} | {:.0} | {established:.0} | {:.0} |",
            new - floor_ns,
            established - floor_ns
        );
    }
    println!();
    println!(
        "Floor (trivial XDP_TX program, same run): {floor_ns:.0} ns per call; medians of {runs} calls each."
    );
}
