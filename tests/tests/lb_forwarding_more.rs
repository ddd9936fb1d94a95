//! lbd forwarding beyond IPv4 TCP round robin: TCP over IPv6 VIPs in every method (FNAT's
//! handshakes telling the real servers the client's IPv6 address in a TOA option), UDP
//! services, and the spread of new connections under the weighted, hashing and least-connection
//! schedulers.
//!
//! ```text
//!  client 10.70.0.2 fd70::2 ── [front] ── lb 10.70.0.1 fd70::1 │ 10.71.0.1 fd71::1 (+ FNAT .200 ::200)
//!                                         ── [back] ── r1 .11 ::11  r2 .12 ::12  r3 .13 ::13
//!  VIPs 10.72.0.0/24 and fd72::/64; the client routes them via the lb, the reals default via the lb.
//! ```
#![expect(clippy::unwrap_used, reason = "tests: a failed step is a failed test")]

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket},
    path::PathBuf,
    time::Duration,
};

use lb_tests::{
    bins,
    lab::{Lab, LbHosts, Netns, wait_until},
    packet::{self, Capture},
    process::Proc,
    xdp::dr_tun_real,
};
use pnet_packet::{
    Packet as _,
    ethernet::{EtherTypes, EthernetPacket},
    ipv6::Ipv6Packet,
    tcp::{TcpFlags, TcpPacket},
};

/// The lab: a client, the load balancer running lbd with `config`, three real servers each
/// running the web server (ports 80 and 8080, both families on one socket) and the UDP server (see
/// [`UDP_BINDS`]), with the DR/TUN VIPs of [`LO_VIPS`] on `lo` and the decapsulation program
/// on `eth0`.
struct Topology {
    client: Netns,
    lbd: Proc,
    pin_dir: PathBuf,
    reals: Vec<(Netns, Proc, Proc)>,
    _decaps: Vec<aya::Ebpf>,
    _lab: Lab,
}

/// The DR and TUN VIPs the real servers hold on `lo`.
const LO_VIPS: [&str; 8] = [
    "10.72.0.101/32",
    "10.72.0.102/32",
    "10.72.0.111/32",
    "10.72.0.112/32",
    "fd72::101/128",
    "fd72::102/128",
    "fd72::111/128",
    "fd72::112/128",
];

/// Where the real servers' UDP server listens: NAT and FNAT on the wildcard (both families), DR
/// and TUN on the VIP itself.
const UDP_BINDS: [&str; 5] =
    ["[::]:8053", "10.72.0.111:53", "10.72.0.112:53", "[fd72::111]:53", "[fd72::112]:53"];

const GLOBAL: &str = "\
global_defs {
    router_id lbt-forwarding-more
}
local_address_group LADDR {
    10.71.0.200
    fd71::200
}
";

/// A virtual server `vip port` of `kind` and `protocol` with `algo`, over the real servers
/// `(number, weight)` on `real_port` (addresses 10.71.0.1N, or fd71::1N for an IPv6 VIP).
fn virtual_server(
    vip: &str,
    port: u16,
    kind: &str,
    protocol: &str,
    algo: &str,
    reals: &[(u8, u32)],
) -> String {
    let real_port = if matches!(kind, "NAT" | "FNAT") { 8000 + port } else { port };
    let laddr = if kind == "FNAT" { "    laddr_group_name LADDR\n" } else { "" };
    let mut text = format!(
        "virtual_server {vip} {port} {{\n    lb_algo {algo}\n    lb_kind {kind}\n{laddr}    protocol {protocol}\n"
    );
    for (n, weight) in reals {
        let addr = if vip.contains(':') { format!("fd71::1{n}") } else { format!("10.71.0.1{n}") };
        text.push_str(&format!("    real_server {addr} {real_port} {{\n        weight {weight}\n    }}\n"));
    }
    text.push_str("}\n");
    text
}

const EQUAL: [(u8, u32); 3] = [(1, 1), (2, 1), (3, 1)];

fn topology(services: &[String]) -> Topology {
    let mut lab = Lab::new();
    let LbHosts { client, lb, reals: hosts, .. } = lab.lb_hosts(3);
    client.addr("eth0", "10.70.0.2/24");
    client.addr("eth0", "fd70::2/64");
    client.ip(&["route", "add", "10.72.0.0/24", "via", "10.70.0.1"]);
    client.ip(&["-6", "route", "add", "fd72::/64", "via", "fd70::1"]);
    for cidr in ["10.70.0.1/24", "fd70::1/64"] {
        lb.addr("eth0", cidr);
    }
    for cidr in ["10.71.0.1/24", "10.71.0.200/24", "fd71::1/64", "fd71::200/64"] {
        lb.addr("eth1", cidr);
    }

    let mut reals = Vec::new();
    let mut decaps = Vec::new();
    for (i, ns) in (1..).zip(hosts) {
        let name = format!("r{i}");
        ns.addr("eth0", &format!("10.71.0.1{i}/24"));
        ns.addr("eth0", &format!("fd71::1{i}/64"));
        ns.ip(&["route", "add", "default", "via", "10.71.0.1"]);
        ns.ip(&["-6", "route", "add", "default", "via", "fd71::1"]);
        // DR and TUN: the VIPs on lo.
        decaps.push(dr_tun_real(&ns, &LO_VIPS));
        let web = ns.spawn("web", bins::web(), &[&name, "[::]:80", "[::]:8080"]);
        let mut udp_args = vec![name.as_str()];
        udp_args.extend(UDP_BINDS);
        let udp = ns.spawn("udp", bins::udp_echo(), &udp_args);
        reals.push((ns, web, udp));
    }

    let mut config = GLOBAL.to_owned();
    for service in services {
        config.push_str(service);
    }
    let config = lab.write_file("keepalived.conf", &config);
    let pin_dir = lab.bpffs().join("lbd");
    let mut lbd = bins::spawn_lbd(&lab, &lb, "lbd", &config, &pin_dir, &[]);
    wait_until(Duration::from_secs(60), "lbd to program its virtual servers", || {
        lbd.assert_running();
        lbd.log().contains("data plane:")
    });
    // The real servers' neighbour entries, as health checks would leave them (DR and TUN send
    // frames straight to the real server's MAC).
    for i in 1..=3 {
        for addr in [format!("10.71.0.1{i}"), format!("fd71::1{i}")] {
            let out = lb.exec("ping", &["-c", "1", "-W", "2", &addr]);
            assert!(out.status.success(), "lb cannot reach r{i} at {addr}");
        }
    }
    for (_, web, udp) in &mut reals {
        web.assert_running();
        udp.assert_running();
    }
    Topology { client, lbd, pin_dir, reals, _decaps: decaps, _lab: lab }
}

impl Topology {
    /// Starts capturing what each real server's eth0 receives and sends, in the order of
    /// `reals`.
    fn capture_reals(&self) -> Vec<Capture> {
        self.reals.iter().map(|(ns, ..)| ns.enter(|| Capture::open("eth0")).unwrap()).collect()
    }

    /// One HTTP request to `vip` (port 80) on a new connection: the answering real's name.
    fn get(&self, vip: &str) -> String {
        let host = if vip.contains(':') { format!("[{vip}]") } else { vip.to_owned() };
        let out = self.client.exec("curl", &["-sS", "--max-time", "10", &format!("http://{host}/")]);
        assert!(
            out.status.success(),
            "curl {vip}: {}\nlbd log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.lbd.log()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Starts a long transfer from `vip` (a process named `name`) and waits for its first
    /// line: the real serving it.
    fn hold(&self, vip: &str, name: &str) -> (Proc, String) {
        let url = format!("http://{vip}/slow/600");
        let transfer = self.client.spawn(name, "curl", &["-sS", "-N", "--max-time", "120", &url]);
        let mut real = String::new();
        wait_until(Duration::from_secs(30), "the long transfer's first line", || {
            real = transfer.log().split_whitespace().next().unwrap_or_default().to_owned();
            !real.is_empty()
        });
        (transfer, real)
    }

    /// How many of `n` new connections to `vip` each real answered.
    fn spread(&self, vip: &str, n: usize) -> BTreeMap<String, u32> {
        let mut answers = BTreeMap::new();
        for _ in 0..n {
            *answers.entry(self.get(vip)).or_default() += 1;
        }
        answers
    }

    /// One datagram to `vip` from a new socket (a new source port, so a new flow), on a
    /// connected socket: the answer only counts if it came from the VIP. The answering real's
    /// name.
    fn udp(&self, vip: SocketAddr) -> String {
        self.client.enter(|| {
            let any: SocketAddr = if vip.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }.parse().unwrap();
            let socket = UdpSocket::bind(any).unwrap();
            socket.connect(vip).unwrap();
            socket.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut buf = [0u8; 256];
            // A lost datagram is retried from the same port (the same flow); a loaded machine
            // may be slow but does not lose all of them.
            for _ in 0..5 {
                socket.send(b"who are you?").unwrap();
                if let Ok(len) = socket.recv(&mut buf) {
                    return String::from_utf8_lossy(&buf[..len]).trim().to_owned();
                }
            }
            panic!("no UDP answer from {vip}\nlbd log:\n{}", self.lbd.log());
        })
    }

    fn udp_spread(&self, vip: &str, n: usize) -> BTreeMap<String, u32> {
        let vip: SocketAddr = vip.parse().unwrap();
        let mut answers = BTreeMap::new();
        for _ in 0..n {
            *answers.entry(self.udp(vip)).or_default() += 1;
        }
        answers
    }
}

fn counts(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

#[test]
fn tcp_over_ipv6_vips_in_every_method() {
    let methods = [("NAT", "fd72::100"), ("DR", "fd72::101"), ("TUN", "fd72::102"), ("FNAT", "fd72::103")];
    let services: Vec<String> =
        methods.iter().map(|(kind, vip)| virtual_server(vip, 80, kind, "TCP", "rr", &EQUAL)).collect();
    let mut lab = topology(&services);
    let mut captures = Vec::new();
    for (method, vip) in methods {
        if method == "FNAT" {
            // What the real servers see of FNAT's connections, for the TOA option below.
            captures = lab.capture_reals();
        }
        assert_eq!(
            lab.spread(vip, 9),
            counts(&[("r1", 3), ("r2", 3), ("r3", 3)]),
            "{method} via {vip}: round robin over the three real servers\nlbd log:\n{}",
            lab.lbd.log()
        );
    }

    // FNAT: the ACK that completes each handshake tells the real server the client's IPv6
    // address and port (TOA, kind 253), in a segment its kernel accepts (checksums right).
    let out =
        lab.client.exec("curl", &["-sS", "--max-time", "10", "--local-port", "45678", "http://[fd72::103]/"]);
    assert!(out.status.success(), "curl from port 45678: {}", String::from_utf8_lossy(&out.stderr));
    let client: IpAddr = "fd70::2".parse().unwrap();
    let mut toas = Vec::new();
    for (n, capture) in (1..).zip(&captures) {
        let real: Ipv6Addr = format!("fd71::1{n}").parse().unwrap();
        let connections = fnat_connections(&capture.frames(), real);
        assert!(connections.len() >= 3, "r{n}: {} FNAT connections", connections.len());
        for (port, segments) in connections {
            // After the SYN (and any retransmission of it), the bare ACK that completes the
            // handshake, with the option; no other segment has one.
            let handshake = segments.iter().position(|s| s.flags & TcpFlags::SYN == 0);
            let ack = handshake.map(|i| &segments[i]);
            assert!(
                ack.is_some_and(|s| s.flags == TcpFlags::ACK && s.payload == 0 && s.toa.is_some()),
                "r{n}, connection from the pool's port {port}: {segments:?}"
            );
            let with_toa: Vec<SocketAddr> = segments.iter().filter_map(|s| s.toa).collect();
            assert_eq!(with_toa.len(), 1, "r{n}, port {port}: {segments:?}");
            toas.extend(with_toa);
        }
        let errors = lab.reals[n - 1].0.tcp_counter("InCsumErrors");
        assert_eq!(errors, 0, "r{n}'s kernel dropped TCP segments with bad checksums");
    }
    assert_eq!(toas.len(), 10, "one TOA per FNAT connection: {toas:?}");
    assert!(toas.iter().all(|a| a.ip() == client), "{toas:?}");
    assert!(toas.contains(&SocketAddr::new(client, 45678)), "{toas:?}");
    let ports: BTreeSet<u16> = toas.iter().map(SocketAddr::port).collect();
    assert_eq!(ports.len(), 10, "each connection its own client port: {toas:?}");
    let stats = lb_tests::xdp::pinned_stats(&lab.pin_dir);
    assert!(stats.split(' ').any(|s| s == "toa_inserted=10"), "{stats}");
    lab.lbd.assert_running();
}

/// A TCP segment an FNAT connection brought to a real server.
#[derive(Debug)]
struct Segment {
    flags: u8,
    payload: usize,
    toa: Option<SocketAddr>,
}

/// The FNAT connections (from the local address fd71::200 to port 8080) that the real server
/// `real` received in `frames`: each its source port and its segments in order, every one with
/// its checksum checked. (A SYN after other segments from the same port starts a new one: the
/// pool's ports are random and may come again.)
fn fnat_connections(frames: &[Vec<u8>], real: Ipv6Addr) -> Vec<(u16, Vec<Segment>)> {
    let laddr: Ipv6Addr = "fd71::200".parse().unwrap();
    let mut connections: Vec<(u16, Vec<Segment>)> = Vec::new();
    for frame in frames {
        let Some(eth) = EthernetPacket::new(frame) else { continue };
        let Some(ip) = Ipv6Packet::new(eth.payload()) else { continue };
        if eth.get_ethertype() != EtherTypes::Ipv6 || (ip.get_source(), ip.get_destination()) != (laddr, real)
        {
            continue;
        }
        let (_, sport, _, dport) = packet::check_ipv6_tcp(frame)
            .unwrap_or_else(|e| panic!("a segment from the pool to {real}: {e}"));
        assert_eq!(dport, 8080, "{real}: a segment to port {dport}");
        let tcp = TcpPacket::new(ip.payload()).unwrap();
        let segment =
            Segment { flags: tcp.get_flags(), payload: tcp.payload().len(), toa: packet::toa_option(frame) };
        let syn = segment.flags & TcpFlags::SYN != 0;
        match connections.iter_mut().rev().find(|(port, _)| *port == sport) {
            Some((_, segments)) if !(syn && segments.iter().any(|s| s.flags & TcpFlags::SYN == 0)) => {
                segments.push(segment);
            }
            _ => connections.push((sport, vec![segment])),
        }
    }
    connections
}

#[test]
fn udp_through_vips_in_every_method() {
    let services = [
        virtual_server("10.72.0.110", 53, "NAT", "UDP", "rr", &EQUAL),
        virtual_server("10.72.0.111", 53, "DR", "UDP", "rr", &EQUAL),
        virtual_server("10.72.0.112", 53, "TUN", "UDP", "rr", &EQUAL),
        virtual_server("10.72.0.113", 53, "FNAT", "UDP", "rr", &EQUAL),
        virtual_server("fd72::110", 53, "NAT", "UDP", "rr", &EQUAL),
        virtual_server("fd72::111", 53, "DR", "UDP", "rr", &EQUAL),
        virtual_server("fd72::112", 53, "TUN", "UDP", "rr", &EQUAL),
        virtual_server("fd72::113", 53, "FNAT", "UDP", "rr", &EQUAL),
    ];
    let lab = topology(&services);
    for (method, vip) in [
        ("NAT", "10.72.0.110:53"),
        ("DR", "10.72.0.111:53"),
        ("TUN", "10.72.0.112:53"),
        ("FNAT", "10.72.0.113:53"),
        ("NAT", "[fd72::110]:53"),
        ("DR", "[fd72::111]:53"),
        ("TUN", "[fd72::112]:53"),
        ("FNAT", "[fd72::113]:53"),
    ] {
        assert_eq!(
            lab.udp_spread(vip, 9),
            counts(&[("r1", 3), ("r2", 3), ("r3", 3)]),
            "UDP {method} via {vip}: each new client port round robin over the three real servers\nlbd log:\n{}",
            lab.lbd.log()
        );
    }
}

#[test]
fn schedulers_spread_new_connections_by_weight_hash_and_load() {
    let services = [
        virtual_server("10.72.0.120", 80, "NAT", "TCP", "wrr", &[(1, 3), (2, 1), (3, 0)]),
        virtual_server("10.72.0.121", 80, "NAT", "TCP", "sh", &EQUAL),
        virtual_server("fd72::121", 80, "NAT", "TCP", "sh", &EQUAL),
        virtual_server("10.72.0.122", 80, "NAT", "TCP", "lc", &EQUAL),
    ];
    let lab = topology(&services);
    // wrr: IPVS's sequence over weights 3:1 is r1 r1 r1 r2 (gcd 1); weight 0 takes nothing.
    assert_eq!(
        lab.spread("10.72.0.120", 12),
        counts(&[("r1", 9), ("r2", 3)]),
        "wrr 3:1:0\nlbd log:\n{}",
        lab.lbd.log()
    );
    // sh: one client, one real, whatever its source port.
    for vip in ["10.72.0.121", "fd72::121"] {
        let answers = lab.spread(vip, 6);
        assert_eq!(answers.len(), 1, "sh via {vip}: one client went to several reals: {answers:?}");
    }
    // lc: while one connection stays open (a long transfer), new short ones go to the reals
    // without any, never to its real (round robin would).
    let (transfer, busy) = lab.hold("10.72.0.122", "transfer");
    let answers = lab.spread("10.72.0.122", 6);
    assert!(
        !answers.contains_key(&busy),
        "lc: a new connection went to {busy}, which holds the open one: {answers:?}\nlbd log:\n{}",
        lab.lbd.log()
    );
    drop(transfer);
}

#[test]
fn wlc_dh_lblc_and_mh_through_real_connections() {
    let services = [
        virtual_server("10.72.0.130", 80, "NAT", "TCP", "wlc", &[(1, 2), (2, 1), (3, 0)]),
        virtual_server("10.72.0.131", 80, "NAT", "TCP", "dh", &EQUAL),
        virtual_server("10.72.0.132", 80, "NAT", "TCP", "lblc", &EQUAL),
        virtual_server("10.72.0.133", 80, "NAT", "TCP", "mh", &EQUAL),
        virtual_server("fd72::133", 80, "NAT", "TCP", "mh", &EQUAL),
    ];
    let lab = topology(&services);
    // wlc: each new connection goes to the least active connections per unit of weight. Three
    // held open over weights 2:1:0 take r1 twice and r2 once, in whichever order; r3 never.
    let held: Vec<(Proc, String)> =
        (0..3).map(|i| lab.hold("10.72.0.130", &format!("transfer{i}"))).collect();
    let mut busy = BTreeMap::new();
    for (_, real) in &held {
        *busy.entry(real.clone()).or_default() += 1;
    }
    assert_eq!(
        busy,
        counts(&[("r1", 2), ("r2", 1)]),
        "wlc 2:1:0 with three open\nlbd log:\n{}",
        lab.lbd.log()
    );
    drop(held);
    // dh and lblc: one destination, one real (lblc: while it is not overloaded); mh: one
    // client, one real, whatever its source port.
    for (algo, vip) in
        [("dh", "10.72.0.131"), ("lblc", "10.72.0.132"), ("mh", "10.72.0.133"), ("mh", "fd72::133")]
    {
        let answers = lab.spread(vip, 6);
        assert_eq!(answers.len(), 1, "{algo} via {vip}: spread over several reals: {answers:?}");
        assert_eq!(answers.values().sum::<u32>(), 6);
    }
}

#[test]
fn icmp_errors_from_a_real_server_reach_the_client_translated() {
    // Nothing listens on the real servers' port 8054: each answers with ICMP port unreachable
    // (from its own address, quoting client -> real:8054), which the load balancer translates.
    let services = [
        virtual_server("10.72.0.140", 54, "NAT", "UDP", "rr", &EQUAL),
        virtual_server("fd72::140", 54, "NAT", "UDP", "rr", &EQUAL),
    ];
    let lab = topology(&services);
    for vip in ["10.72.0.140:54", "[fd72::140]:54"] {
        let vip: SocketAddr = vip.parse().unwrap();
        let refused = lab.client.enter(|| {
            let any: SocketAddr = if vip.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }.parse().unwrap();
            let socket = UdpSocket::bind(any).unwrap();
            socket.connect(vip).unwrap();
            socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = [0u8; 64];
            // The kernel reports an error to a connected socket only when it quotes the
            // socket's own peer: the VIP, not the real server.
            (0..5).any(|_| {
                socket.send(b"anyone?").unwrap();
                matches!(socket.recv(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
            })
        });
        assert!(refused, "no translated port unreachable from {vip}\nlbd log:\n{}", lab.lbd.log());
    }
}
