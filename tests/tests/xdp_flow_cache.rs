//! The XDP program's flow cache (`LBD_FLOW_CACHE`, lb-ebpf/src/cache.rs), frame by frame
//! through BPF_PROG_TEST_RUN: established packets sent from a slot leave byte for byte as the
//! full path sends them, packets that change a flow's state take the full path, a new
//! generation or a removed real server sends flows back to the full path, slots are refreshed
//! from the connection table every second, and the per-service and per-real counters still
//! count every packet.
//!
//! The cache is per CPU: each test pins its thread to one CPU, so that every run meets the
//! slots the runs before it filled.
#![expect(clippy::unwrap_used, reason = "tests: a failed step is a failed test")]

use std::net::SocketAddr;

use aya::maps::{Array, HashMap, PerCpuArray};
use lb_common::{
    lb::{
        Flow, FlowCacheSlot, FlowKey4, Method, RealStats, SLOTS_PER_SERVICE, Scheduler, Service, ServiceKey,
        ServiceStats, Settings, ipv4_words, tcp_state,
    },
    maps,
};
use lb_tests::{
    fixture::{GW_MAC, REAL1_MAC, REAL3_MAC, lb_namespace, load_tables, tunnelled_to_real3},
    lab::Lab,
    packet::{Packet, check_ipv4_tcp},
    xdp::{XdpAction, XdpTestRun},
};
use pnet_packet::tcp::TcpFlags;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Pins the calling thread to one CPU: the flow cache is per CPU.
fn pin() {
    let mut cpus = nix::sched::CpuSet::new();
    cpus.set(0).unwrap();
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpus).unwrap();
}

/// Runs `test` with lbd's program, the fixture's tables loaded, in the fixture's LB namespace
/// (its interface index and MAC address), on one CPU.
fn with_program(test: impl FnOnce(&mut XdpTestRun, u32, [u8; 6]) + Send) {
    let mut lab = Lab::new();
    let (lb, ifindex, lb_mac) = lb_namespace(&mut lab);
    lb.enter(|| {
        pin();
        let mut program = XdpTestRun::lbd();
        load_tables(&mut program);
        test(&mut program, ifindex, lb_mac);
    });
}

/// Opens a TCP flow from `client` to `vip` (its SYN) and returns an ACK of it.
fn open(program: &XdpTestRun, ifindex: u32, client: SocketAddr, vip: SocketAddr) -> Vec<u8> {
    assert_eq!(program.run_on(ifindex, &Packet::tcp_syn(client, vip).build()).action, XdpAction::Tx);
    ack(client, vip).build()
}

/// An ACK with data from `client` to `to`.
fn ack(client: SocketAddr, to: SocketAddr) -> Packet {
    Packet::tcp(client, to, TcpFlags::ACK, b"data")
}

/// Packets and bytes counted on service `service` and on real `real`, summed over CPUs.
fn counted(program: &mut XdpTestRun, service: u32, real: u32) -> ((u64, u64), (u64, u64)) {
    let ebpf = program.ebpf_mut();
    let services: PerCpuArray<_, ServiceStats> =
        PerCpuArray::try_from(ebpf.map(maps::SERVICE_STATS).unwrap()).unwrap();
    let s = services.get(&service, 0).unwrap().iter().fold((0, 0), |a, s| (a.0 + s.packets, a.1 + s.bytes));
    let reals: PerCpuArray<_, RealStats> =
        PerCpuArray::try_from(ebpf.map(maps::REAL_STATS).unwrap()).unwrap();
    let r = reals.get(&real, 0).unwrap().iter().fold((0, 0), |a, s| (a.0 + s.packets, a.1 + s.bytes));
    (s, r)
}

/// The connection table's entry of an IPv4 TCP flow.
fn entry(program: &mut XdpTestRun, client: SocketAddr, vip: SocketAddr) -> Flow {
    let (SocketAddr::V4(c), SocketAddr::V4(v)) = (client, vip) else { panic!("IPv4 only") };
    let key = FlowKey4 {
        src: ipv4_words(c.ip().octets())[0],
        dst: ipv4_words(v.ip().octets())[0],
        sport: c.port().to_be(),
        dport: v.port().to_be(),
        proto: 6,
        pad: 0,
        pad2: 0,
    };
    let conns: HashMap<_, FlowKey4, Flow> =
        HashMap::try_from(program.ebpf_mut().map(maps::CONNS4).unwrap()).unwrap();
    conns.get(&key, 0).unwrap()
}

#[test]
fn established_packets_from_the_cache_leave_as_the_full_path_sends_them() {
    with_program(|program, ifindex, lb_mac| {
        let client = addr("10.9.0.7:41000");
        let mut hits = 0;
        // (VIP, service id, real id, the ACK as it leaves; FNAT's is checked below).
        let nat = addr("10.0.0.100:80");
        let dr = addr("10.0.0.101:80");
        let tun = addr("10.0.0.102:80");
        let fnat = addr("10.0.0.103:80");
        let cases = [
            (nat, 1, 1, Some(ack(client, addr("10.0.0.11:8080")).macs(lb_mac, REAL1_MAC).build())),
            (dr, 2, 3, Some(ack(client, dr).macs(lb_mac, REAL3_MAC).build())),
            (tun, 3, 3, Some(tunnelled_to_real3(&ack(client, tun), lb_mac))),
            (fnat, 4, 1, None),
        ];
        for (vip, service, _, expected) in cases {
            let input = open(program, ifindex, client, vip);
            // The handshake's ACK takes the full path, which establishes the flow and fills
            // its slot (not FNAT's, which carries the TOA option: the next ACK does).
            let full = program.run_on(ifindex, &input);
            assert_eq!(full.action, XdpAction::Tx, "{vip}");
            assert_eq!(program.stats().flow_cache_hits, hits, "{vip}: the handshake's ACK is not cached");
            let (expected, from_cache) = match expected {
                Some(expected) => {
                    assert_eq!(full.output, expected, "{vip}: the full path");
                    (expected, 4)
                }
                None => {
                    let second = program.run_on(ifindex, &input);
                    check_ipv4_tcp(&second.output).unwrap();
                    (second.output, 3)
                }
            };
            for _ in 0..from_cache {
                let out = program.run_on(ifindex, &input);
                assert_eq!(out.action, XdpAction::Tx, "{vip}");
                assert_eq!(out.output, expected, "{vip}");
            }
            hits += from_cache;
            assert_eq!(program.stats().flow_cache_hits, hits, "{vip}");
            // SYN and five ACKs, each counted with its bytes.
            let syn_len = Packet::tcp_syn(client, vip).build().len() as u64;
            let (s, _) = counted(program, service, 0);
            assert_eq!(s, (6, syn_len + 5 * input.len() as u64), "{vip}: service counters");
        }
        // Real 1 serves NAT and FNAT, real 3 DR and TUN.
        let (_, r1) = counted(program, 0, 1);
        let (_, r3) = counted(program, 0, 3);
        assert_eq!((r1.0, r3.0), (12, 12), "real counters");
        assert_eq!(r1.1, counted(program, 1, 0).0.1 + counted(program, 4, 0).0.1);

        // NAT replies: the second and later are sent from the slot of the reply entry.
        let reply_in = ack(addr("10.0.0.11:8080"), client).build();
        let reply_out = ack(nat, client).ttl(63).macs(lb_mac, GW_MAC).build();
        for _ in 0..3 {
            let out = program.run_on(ifindex, &reply_in);
            assert_eq!((out.action, &out.output), (XdpAction::Tx, &reply_out));
        }
        let stats = program.stats();
        assert_eq!(stats.flow_cache_hits, hits + 2, "{stats:?}");
        assert_eq!(stats.reply_translated, 3, "{stats:?}");
    });
}

#[test]
fn vlan_tagged_established_packets_are_sent_from_the_cache_as_the_full_path_sends_them() {
    // The entry point also serves frames with one 802.1Q tag (a trunk port); two tags, or IP
    // options, still take the full path every time.
    with_program(|program, ifindex, lb_mac| {
        let client = addr("10.9.1.8:41000");
        let mut hits = 0;
        for (vip, tags) in [
            ("10.0.0.100:80", 1),
            ("10.0.0.101:80", 1),
            ("10.0.0.102:80", 1),
            ("10.0.0.103:80", 1),
            ("10.0.0.101:80", 2),
        ] {
            let vip = addr(vip);
            let client = SocketAddr::new(client.ip(), client.port() + hits as u16 + tags);
            let tag = |p: Packet| if tags == 1 { p.vlan(5) } else { p.vlan(5).vlan(6) };
            assert_eq!(
                program.run_on(ifindex, &tag(Packet::tcp_syn(client, vip)).build()).action,
                XdpAction::Tx
            );
            let input = tag(ack(client, vip)).build();
            // The handshake's ACK (and FNAT's next, after the TOA option) fill the slot.
            let mut full = program.run_on(ifindex, &input);
            if vip.port() == 80 && vip.ip() == addr("10.0.0.103:80").ip() {
                full = program.run_on(ifindex, &input);
            }
            assert_eq!(full.action, XdpAction::Tx, "{vip}");
            assert_eq!(full.output[12..14], [0x81, 0x00], "{vip}: still tagged");
            if vip == addr("10.0.0.100:80") {
                let nat = tag(ack(client, addr("10.0.0.11:8080")).macs(lb_mac, REAL1_MAC)).build();
                assert_eq!(full.output, nat, "the full path's NAT rewrite");
            }
            for _ in 0..3 {
                let out = program.run_on(ifindex, &input);
                assert_eq!((out.action, &out.output), (XdpAction::Tx, &full.output), "{vip}, {tags} tags");
            }
            if tags == 1 {
                hits += 3;
            }
            assert_eq!(program.stats().flow_cache_hits, hits, "{vip}, {tags} tags");
        }
    });
}

#[test]
fn ipv6_established_packets_are_sent_from_the_ipv6_cache_as_the_full_path_sends_them() {
    // `lb_xdp_v6` serves IPv6 flows from its own cache, after its parser: tagged frames and
    // extension headers included.
    with_program(|program, ifindex, _| {
        let mut hits = 0;
        for (i, (vip, tagged)) in
            [("[2001:db8::100]:80", false), ("[2001:db8::103]:80", false), ("[2001:db8::100]:80", true)]
                .into_iter()
                .enumerate()
        {
            let vip = addr(vip);
            let client = SocketAddr::new("2001:db8:9::7".parse().unwrap(), 42000 + i as u16);
            let tag = |p: Packet| if tagged { p.vlan(5) } else { p };
            assert_eq!(
                program.run_on(ifindex, &tag(Packet::tcp_syn(client, vip)).build()).action,
                XdpAction::Tx
            );
            let input = tag(ack(client, vip)).build();
            // The handshake's ACK (and FNAT's next, after the TOA option) fill the slot.
            let mut full = program.run_on(ifindex, &input);
            if vip.ip() == addr("[2001:db8::103]:80").ip() {
                full = program.run_on(ifindex, &input);
            }
            assert_eq!(full.action, XdpAction::Tx, "{vip}");
            if !tagged {
                lb_tests::packet::check_ipv6_tcp(&full.output).unwrap();
            }
            for _ in 0..3 {
                let out = program.run_on(ifindex, &input);
                assert_eq!((out.action, &out.output), (XdpAction::Tx, &full.output), "{vip}");
            }
            hits += 3;
            assert_eq!(program.stats().flow_cache_hits, hits, "{vip}, tagged: {tagged}");
        }
        // A reply of the NAT flow: the first fills the reply entry's slot, the next are hits.
        let client = SocketAddr::new("2001:db8:9::7".parse().unwrap(), 42000);
        let reply = ack(addr("[2001:db8::11]:8080"), client).build();
        let first = program.run_on(ifindex, &reply);
        assert_eq!(first.action, XdpAction::Tx);
        for _ in 0..2 {
            assert_eq!(program.run_on(ifindex, &reply).output, first.output);
        }
        assert_eq!(program.stats().flow_cache_hits, hits + 2, "replies");
    });
}

#[test]
fn udp_flows_are_cached_too() {
    with_program(|program, ifindex, lb_mac| {
        // A NAT service for UDP 10.0.0.100:53, id 7, to real 1.
        let ebpf = program.ebpf_mut();
        let mut slots: Array<_, u32> = Array::try_from(ebpf.map_mut(maps::SLOTS).unwrap()).unwrap();
        slots.set(7 * SLOTS_PER_SERVICE, 1, 0).unwrap();
        let mut services: HashMap<_, ServiceKey, Service> =
            HashMap::try_from(ebpf.map_mut(maps::SERVICES).unwrap()).unwrap();
        let key = ServiceKey { addr: ipv4_words([10, 0, 0, 100]), port: 53u16.to_be(), proto: 17, family: 4 };
        let service = Service {
            id: 7,
            slots_len: 1,
            method: Method::Nat as u8,
            scheduler: Scheduler::RoundRobin as u8,
            ..Service::default()
        };
        services.insert(key, service, 0).unwrap();

        let client = addr("10.9.0.7:5353");
        let input = Packet::udp(client, addr("10.0.0.100:53"), b"query").build();
        let expected = Packet::udp(client, addr("10.0.0.11:8080"), b"query").macs(lb_mac, REAL1_MAC).build();
        for _ in 0..4 {
            let out = program.run_on(ifindex, &input);
            assert_eq!((out.action, &out.output), (XdpAction::Tx, &expected));
        }
        // New flow, full path (fills the slot), then two from the cache.
        let stats = program.stats();
        assert_eq!((stats.new_flows, stats.flow_hits, stats.flow_cache_hits), (1, 3, 2), "{stats:?}");
        let (s, _) = counted(program, 7, 1);
        assert_eq!(s, (4, 4 * input.len() as u64));
    });
}

/// FIN and RST change a flow's state: they take the full path and empty the slot, and the
/// packets after them follow the state the full path left (a closing flow, then a new one).
#[test]
fn a_rst_or_fin_takes_the_full_path_and_later_packets_follow_the_new_state() {
    with_program(|program, ifindex, lb_mac| {
        let vip = addr("10.0.0.101:80");
        let active = |program: &mut XdpTestRun| -> u64 {
            let reals: Array<_, u64> =
                Array::try_from(program.ebpf_mut().map(maps::REAL_ACTIVE).unwrap()).unwrap();
            reals.get(&3, 0).unwrap()
        };
        for (client, flags) in
            [(addr("10.9.0.7:42000"), TcpFlags::RST), (addr("10.9.0.7:42001"), TcpFlags::FIN)]
        {
            let hits = program.stats().flow_cache_hits;
            let input = open(program, ifindex, client, vip);
            let out_of = |flags: u8| Packet::tcp(client, vip, flags, b"data").macs(lb_mac, REAL3_MAC).build();
            for _ in 0..3 {
                assert_eq!(program.run_on(ifindex, &input).output, out_of(TcpFlags::ACK));
            }
            assert_eq!(program.stats().flow_cache_hits, hits + 2);
            assert_eq!(active(program), 1);
            let closing = Packet::tcp(client, vip, flags | TcpFlags::ACK, b"data").build();
            let out = program.run_on(ifindex, &closing);
            assert_eq!((out.action, out.output), (XdpAction::Tx, out_of(flags | TcpFlags::ACK)));
            assert_eq!(program.stats().flow_cache_hits, hits + 2, "{flags:#x} went the full path");
            assert_eq!(entry(program, client, vip).tcp_state, tcp_state::CLOSING);
            assert_eq!(active(program), 0, "{flags:#x}: no longer active");
            // The closing flow's packets still go to its real, by the full path, which
            // refreshes the entry: none is sent from the emptied slot.
            let before = entry(program, client, vip).last_seen_ns;
            std::thread::sleep(std::time::Duration::from_millis(20));
            for _ in 0..2 {
                assert_eq!(program.run_on(ifindex, &input).output, out_of(TcpFlags::ACK));
            }
            assert_eq!(program.stats().flow_cache_hits, hits + 2, "{flags:#x}: a closing flow is not cached");
            assert!(entry(program, client, vip).last_seen_ns > before);
            assert_eq!(entry(program, client, vip).tcp_state, tcp_state::CLOSING);
        }

        // A new connection from the reset flow's port replaces it, and is cached in turn.
        let client = addr("10.9.0.7:42000");
        let new_flows = program.stats().new_flows;
        let hits = program.stats().flow_cache_hits;
        let input = open(program, ifindex, client, vip);
        assert_eq!(program.stats().new_flows, new_flows + 1);
        for _ in 0..3 {
            program.run_on(ifindex, &input);
        }
        assert_eq!(entry(program, client, vip).tcp_state, tcp_state::ESTABLISHED);
        assert_eq!(program.stats().flow_cache_hits, hits + 2);
        assert_eq!(active(program), 1);
    });
}

/// A new generation in the settings (the daemon's apply of changed services or reals) sends
/// every cached flow through the full path once; a removed real server's flows stop, even
/// from the cache.
#[test]
fn a_new_generation_or_a_removed_real_sends_cached_flows_the_full_path() {
    with_program(|program, ifindex, _| {
        let client = addr("10.9.0.7:43000");
        let vip = addr("10.0.0.101:80");
        let input = open(program, ifindex, client, vip);
        for _ in 0..3 {
            assert_eq!(program.run_on(ifindex, &input).action, XdpAction::Tx);
        }
        assert_eq!(program.stats().flow_cache_hits, 2);

        let set_generation = |program: &mut XdpTestRun, generation: u32| {
            let mut settings: Array<_, Settings> =
                Array::try_from(program.ebpf_mut().map_mut(maps::SETTINGS).unwrap()).unwrap();
            settings.set(0, Settings { ready: 1, generation, ..Settings::default() }, 0).unwrap();
        };
        set_generation(program, 1);
        let before = entry(program, client, vip).last_seen_ns;
        std::thread::sleep(std::time::Duration::from_millis(20));
        // The full path once (which refreshes the entry and fills the slot again), then the cache.
        for _ in 0..3 {
            assert_eq!(program.run_on(ifindex, &input).action, XdpAction::Tx);
        }
        assert_eq!(program.stats().flow_cache_hits, 4);
        assert!(entry(program, client, vip).last_seen_ns > before, "the full path refreshed it");

        // The real server is removed (its entry cleared; the service stays): the flow's
        // packets are dropped, before and after the generation moves on, as the daemon's
        // apply does it.
        let mut reals: Array<_, lb_common::lb::Real> =
            Array::try_from(program.ebpf_mut().map_mut(maps::REALS).unwrap()).unwrap();
        reals.set(3, lb_common::lb::Real::default(), 0).unwrap();
        assert_eq!(program.run_on(ifindex, &input).action, XdpAction::Drop);
        set_generation(program, 2);
        assert_eq!(program.run_on(ifindex, &input).action, XdpAction::Drop);
        let stats = program.stats();
        assert_eq!((stats.flow_cache_hits, stats.drop_no_real), (4, 2), "{stats:?}");
    });
}

/// A slot serves its flow for a second at most: then the full path looks the flow up again
/// and refreshes its entry's `last_seen_ns`, which the daemon's flow views and expiry read.
#[test]
fn a_slot_sends_its_flow_the_full_path_every_second() {
    with_program(|program, ifindex, _| {
        let client = addr("10.9.0.7:44000");
        let vip = addr("10.0.0.100:80");
        let input = open(program, ifindex, client, vip);
        program.run_on(ifindex, &input);
        program.run_on(ifindex, &input);
        let filled = entry(program, client, vip).last_seen_ns;
        std::thread::sleep(std::time::Duration::from_millis(300));
        program.run_on(ifindex, &input);
        assert_eq!(program.stats().flow_cache_hits, 2);
        assert_eq!(entry(program, client, vip).last_seen_ns, filled, "not looked up");
        std::thread::sleep(std::time::Duration::from_millis(1000));
        program.run_on(ifindex, &input);
        assert_eq!(program.stats().flow_cache_hits, 2, "the full path after a second");
        assert!(entry(program, client, vip).last_seen_ns >= filled + 1_000_000_000);
        program.run_on(ifindex, &input);
        assert_eq!(program.stats().flow_cache_hits, 3, "and the cache again");
    });
}

#[test]
fn flows_whose_hashes_collide_are_all_served_from_the_cache() {
    // 200 established flows: with one slot per hash (8192 per CPU), about two pairs of them
    // would share a slot and take it from each other on every packet (these 200 do); sets of
    // two slots keep both.
    with_program(|program, ifindex, _| {
        let vip = addr("10.0.0.101:80");
        let clients: Vec<SocketAddr> =
            (0..200u16).map(|i| SocketAddr::new([10, 9, 3, (i % 50) as u8 + 1].into(), 20000 + i)).collect();
        let acks: Vec<Vec<u8>> = clients.iter().map(|&c| open(program, ifindex, c, vip)).collect();
        // The first ACK of each flow fills its slot (the full path), the next ones are hits.
        for ack in &acks {
            assert_eq!(program.run_on(ifindex, ack).action, XdpAction::Tx);
        }
        let hits = program.stats().flow_cache_hits;
        for round in 0..2 {
            for ack in &acks {
                assert_eq!(program.run_on(ifindex, ack).action, XdpAction::Tx);
            }
            let served = program.stats().flow_cache_hits - hits;
            assert_eq!(served, 200 * (round + 1), "round {round}: every packet sent from the cache");
        }
    });
}

/// The keys of the flows this CPU's flow cache holds (slots with a protocol).
fn cached_flows(program: &mut XdpTestRun) -> Vec<FlowKey4> {
    let cache: PerCpuArray<_, FlowCacheSlot> =
        PerCpuArray::try_from(program.ebpf_mut().map("LBD_FLOW_CACHE").unwrap()).unwrap();
    let cpu = 0; // see `pin`
    cache.iter().map(|slot| slot.unwrap()[cpu]).filter(|s| s.key.proto != 0).map(|s| s.key).collect()
}

#[test]
fn frames_the_cache_cannot_serve_evict_no_flow_it_serves() {
    // 3000 flows served from the cache, then as many flows whose frames carry IP options (the
    // entry point serves only frames without: their packets always take the full path). Those
    // go through a scratch slot: before it, each took a slot of its set, and with 6000 flows
    // over 4096 sets of two, many sets lost a served flow to one that is never served.
    with_program(|program, ifindex, _| {
        let vip = addr("10.0.0.101:80");
        let client = |net: u8, i: u16| SocketAddr::new([10, 9, net, (i % 200) as u8 + 1].into(), 20000 + i);
        let served: Vec<Vec<u8>> = (0..3000).map(|i| open(program, ifindex, client(4, i), vip)).collect();
        // Each flow's first ACK fills its slot, the second is sent from there, unless its set
        // holds more flows than two.
        let before = program.stats().flow_cache_hits;
        for ack in served.iter().chain(&served) {
            assert_eq!(program.run_on(ifindex, ack).action, XdpAction::Tx);
        }
        let hits = program.stats().flow_cache_hits - before;
        assert!(hits > 2400, "most of the 3000 flows are served from the cache: {hits}");
        let held = cached_flows(program);
        assert!(held.len() > 2700, "the cache holds most of them: {}", held.len());
        let options = [1, 1, 1, 0]; // NOP NOP NOP EOL: one 4-byte word of options
        for i in 0..3000 {
            let c = client(5, i);
            let syn = Packet::tcp_syn(c, vip).ipv4_options(&options).build();
            assert_eq!(program.run_on(ifindex, &syn).action, XdpAction::Tx);
            let ack = ack(c, vip).ipv4_options(&options).build();
            for _ in 0..2 {
                assert_eq!(program.run_on(ifindex, &ack).action, XdpAction::Tx);
            }
        }
        let after = cached_flows(program);
        let lost = held.iter().filter(|k| !after.contains(k)).count();
        let taken = after.iter().filter(|k| !held.contains(k)).count();
        assert_eq!((lost, taken), (0, 0), "served flows lost, slots taken by flows with options");
    });
}
