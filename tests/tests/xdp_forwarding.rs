//! The XDP data plane, frame by frame, through BPF_PROG_TEST_RUN: every forwarding method
//! (NAT, DR, TUN, FNAT) and the reply path, IPv4 and IPv6, VLAN, IP options, fragments and
//! malformed frames, with the tables written directly into the maps.
//!
//! The runs happen inside a namespace with a veth, addresses, routes and static neighbours, so
//! the program's FIB lookups resolve real MAC addresses: output frames are compared byte for
//! byte with frames built independently (checksums computed from scratch by pnet).
#![expect(clippy::unwrap_used, reason = "tests: a failed step is a failed test")]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use aya::maps::{Array, HashMap};
use lb_common::{
    lb::{
        Method, Real, SLOTS_PER_SERVICE, Service, ServiceKey, SynProxySecret, ipv4_words, ipv6_words,
        service_flags,
    },
    maps,
};
use lb_tests::{
    fixture::{GW_MAC, REAL1_MAC, REAL3_MAC, REAL6_MAC, lb_namespace, load_tables, tunnelled_to_real3},
    lab::Lab,
    packet::{self, Packet, check_ipv4_tcp},
    xdp::{Expected, Fixture, XdpAction, XdpTestRun, run_table_on},
};
use pnet_packet::{
    Packet as _,
    ethernet::{EtherTypes, EthernetPacket},
    ipv4::{self, Ipv4Packet},
    ipv6::Ipv6Packet,
    tcp::{self, TcpFlags, TcpPacket},
};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The FNAT frame to the real server: source from the pool, destination the real, checksums
/// right. The port is random.
fn fnat_to_real(frame: &[u8]) -> Result<(), String> {
    let (src, sport, dst, dport) = check_ipv4_tcp(frame)?;
    if frame[..6] != REAL1_MAC {
        return Err("destination MAC is not the real server's".into());
    }
    if src != Ipv4Addr::new(10, 0, 0, 200) || sport < 1024 {
        return Err(format!("source {src}:{sport} is not from the local address pool"));
    }
    if (dst, dport) != (Ipv4Addr::new(10, 0, 0, 11), 8080) {
        return Err(format!("destination {dst}:{dport} is not the real server"));
    }
    Ok(())
}

#[test]
fn every_method_rewrites_frames_exactly() {
    let mut lab = Lab::new();
    let (lb, ifindex, lb_mac) = lb_namespace(&mut lab);
    lb.enter(|| {
        let mut program = XdpTestRun::lbd();
        load_tables(&mut program);
        let client = addr("10.9.0.7:40000");
        let syn = |vip: &str| Packet::tcp_syn(client, addr(vip));
        let v6_client = addr("[2001:db8:9::7]:40000");

        // NAT: destination rewritten to the real server (port 8080), MACs from the FIB.
        let nat_in = syn("10.0.0.100:80").build();
        let nat_out = Packet::tcp_syn(client, addr("10.0.0.11:8080")).macs(lb_mac, REAL1_MAC).build();
        let nat_ack_in = Packet::tcp(client, addr("10.0.0.100:80"), TcpFlags::ACK, b"data").build();
        let nat_ack_out = Packet::tcp(client, addr("10.0.0.11:8080"), TcpFlags::ACK, b"data")
            .macs(lb_mac, REAL1_MAC)
            .build();
        // The real server's answer, translated back to the VIP, TTL decremented, to the gateway.
        let reply_in =
            Packet::tcp(addr("10.0.0.11:8080"), client, TcpFlags::SYN | TcpFlags::ACK, &[]).build();
        let reply_out = Packet::tcp(addr("10.0.0.100:80"), client, TcpFlags::SYN | TcpFlags::ACK, &[])
            .ttl(63)
            .macs(lb_mac, GW_MAC)
            .build();
        // DR: only the MAC addresses change.
        let dr_in = syn("10.0.0.101:80").build();
        let dr_out = syn("10.0.0.101:80").macs(lb_mac, REAL3_MAC).build();
        // TUN: an outer IPv4 header from the LB to the real server, protocol 4.
        let tun_in = syn("10.0.0.102:80").build();
        let tun_out = tunnelled_to_real3(&syn("10.0.0.102:80"), lb_mac);
        // IPv6 NAT.
        let nat6_in = Packet::tcp_syn(v6_client, addr("[2001:db8::100]:80")).build();
        let nat6_out =
            Packet::tcp_syn(v6_client, addr("[2001:db8::11]:8080")).macs(lb_mac, REAL6_MAC).build();
        // NAT with IP options and with a VLAN tag.
        let opts_in =
            Packet::tcp_syn(addr("10.9.0.8:1000"), addr("10.0.0.100:80")).ipv4_options(&[1, 1, 1, 0]).build();
        let opts_out = Packet::tcp_syn(addr("10.9.0.8:1000"), addr("10.0.0.11:8080"))
            .ipv4_options(&[1, 1, 1, 0])
            .macs(lb_mac, REAL1_MAC)
            .build();
        let vlan_in = Packet::tcp_syn(addr("10.9.0.9:1000"), addr("10.0.0.100:80")).vlan(5).build();
        let vlan_out = Packet::tcp_syn(addr("10.9.0.9:1000"), addr("10.0.0.11:8080"))
            .vlan(5)
            .macs(lb_mac, REAL1_MAC)
            .build();
        // Not for a service, a fragment, no real server, truncated TCP.
        let other = Packet::tcp_syn(client, addr("10.0.0.1:22")).build();
        let mut fragment = syn("10.0.0.100:80").build();
        fragment[20] |= 0x20; // MF
        let empty = syn("10.0.0.104:80").build();
        let truncated = syn("10.0.0.100:80").build()[..14 + 20 + 10].to_vec();

        let table = vec![
            Fixture {
                description: "NAT: SYN to the VIP goes to the real server",
                input: nat_in.clone(),
                action: XdpAction::Tx,
                output: Expected::Bytes(nat_out.clone()),
            },
            Fixture {
                description: "NAT: the flow's next packet goes to the same real",
                input: nat_in,
                action: XdpAction::Tx,
                output: Expected::Bytes(nat_out),
            },
            Fixture {
                description: "NAT: the reply is translated back to the VIP",
                input: reply_in.clone(),
                action: XdpAction::Tx,
                output: Expected::Bytes(reply_out.clone()),
            },
            Fixture {
                description: "NAT: the next reply takes the cached route to the client",
                input: reply_in,
                action: XdpAction::Tx,
                output: Expected::Bytes(reply_out),
            },
            Fixture {
                description: "NAT: an ACK of the flow is found in the connection table first",
                input: nat_ack_in,
                action: XdpAction::Tx,
                output: Expected::Bytes(nat_ack_out),
            },
            Fixture {
                description: "DR: only the MACs change",
                input: dr_in,
                action: XdpAction::Tx,
                output: Expected::Bytes(dr_out),
            },
            Fixture {
                description: "TUN: IPIP to the real server",
                input: tun_in,
                action: XdpAction::Tx,
                output: Expected::Bytes(tun_out),
            },
            Fixture {
                description: "FNAT: source from the pool, destination the real",
                input: syn("10.0.0.103:80").build(),
                action: XdpAction::Tx,
                output: Expected::Check(fnat_to_real),
            },
            Fixture {
                description: "IPv6 NAT",
                input: nat6_in,
                action: XdpAction::Tx,
                output: Expected::Bytes(nat6_out),
            },
            Fixture {
                description: "NAT of a packet with IPv4 options",
                input: opts_in,
                action: XdpAction::Tx,
                output: Expected::Bytes(opts_out),
            },
            Fixture {
                description: "NAT of a VLAN-tagged packet keeps the tag",
                input: vlan_in,
                action: XdpAction::Tx,
                output: Expected::Bytes(vlan_out),
            },
            Fixture {
                description: "not for a service: passes untouched",
                input: other,
                action: XdpAction::Pass,
                output: Expected::Unchanged,
            },
            Fixture {
                description: "a fragment passes untouched",
                input: fragment,
                action: XdpAction::Pass,
                output: Expected::Unchanged,
            },
            Fixture {
                description: "no real server: dropped",
                input: empty,
                action: XdpAction::Drop,
                output: Expected::Any,
            },
            Fixture {
                description: "truncated TCP header: dropped",
                input: truncated,
                action: XdpAction::Drop,
                output: Expected::Any,
            },
        ];
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_table_on(&program, Some(ifindex), &table)
        }));
        if let Err(panic) = result {
            eprintln!("counters after the table: {:?}", program.stats());
            std::panic::resume_unwind(panic);
        }

        let stats = program.stats();
        assert_eq!(stats.new_flows, 7, "{stats:?}");
        assert_eq!(stats.flow_hits, 2, "{stats:?}");
        assert_eq!(stats.reply_translated, 2, "{stats:?}");
        assert_eq!(stats.drop_no_real, 1, "{stats:?}");
        assert_eq!(stats.drop_malformed, 1, "{stats:?}");
        assert_eq!(stats.pass_fragment, 1, "{stats:?}");
        assert_eq!(stats.pass_no_service, 1, "{stats:?}");
        assert_eq!(stats.fwd_tx, 11, "{stats:?}");
    });
}

#[test]
fn fnat_replies_return_to_the_client() {
    let mut lab = Lab::new();
    let (lb, ifindex, lb_mac) = lb_namespace(&mut lab);
    lb.enter(|| {
        let mut program = XdpTestRun::lbd();
        load_tables(&mut program);
        let client = addr("10.9.0.7:40001");
        let out = program.run_on(ifindex, &Packet::tcp_syn(client, addr("10.0.0.103:80")).build());
        assert_eq!(out.action, XdpAction::Tx);
        let (laddr, lport, _, _) = check_ipv4_tcp(&out.output).unwrap();
        // The real server answers the local address; the LB restores VIP and client.
        let answer = Packet::tcp(
            addr("10.0.0.11:8080"),
            SocketAddr::new(laddr.into(), lport),
            TcpFlags::SYN | TcpFlags::ACK,
            &[],
        )
        .build();
        let back = program.run_on(ifindex, &answer);
        assert_eq!(back.action, XdpAction::Tx);
        let expected = Packet::tcp(addr("10.0.0.103:80"), client, TcpFlags::SYN | TcpFlags::ACK, &[])
            .ttl(63)
            .macs(lb_mac, GW_MAC)
            .build();
        assert_eq!(back.output, expected);
        // A second client gets a different local port (or address): tuples never collide.
        let other =
            program.run_on(ifindex, &Packet::tcp_syn(addr("10.9.0.8:40001"), addr("10.0.0.103:80")).build());
        let (laddr2, lport2, _, _) = check_ipv4_tcp(&other.output).unwrap();
        assert_ne!((laddr, lport), (laddr2, lport2));
    });
}

/// The TOA option of an FNAT frame (see `packet::toa_option`), with its TCP header length.
fn toa_of(frame: &[u8]) -> (Option<SocketAddr>, usize) {
    let eth = EthernetPacket::new(frame).unwrap();
    let ip = Ipv4Packet::new(eth.payload()).unwrap();
    let tcp = TcpPacket::new(ip.payload()).unwrap();
    (packet::toa_option(frame), usize::from(tcp.get_data_offset()) * 4)
}

#[test]
fn fnat_handshake_acks_carry_the_client_address_in_a_toa_option() {
    let mut lab = Lab::new();
    let (lb, ifindex, _) = lb_namespace(&mut lab);
    lb.enter(|| {
        let mut program = XdpTestRun::lbd();
        load_tables(&mut program);
        let vip = addr("10.0.0.103:80");
        // Linux's ACK options: NOP, NOP, timestamps (a 32-byte header).
        let timestamps = [1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9];
        let ack = |client: SocketAddr, payload: &[u8]| {
            Packet::tcp(client, vip, TcpFlags::ACK, payload).seq_ack(1001, 5001, 502).tcp_options(&timestamps)
        };

        let client = addr("10.9.0.7:40002");
        program.run_on(ifindex, &Packet::tcp_syn(client, vip).build());
        let input = ack(client, &[]).build();
        let out = program.run_on(ifindex, &input);
        assert_eq!(out.action, XdpAction::Tx);
        fnat_to_real(&out.output).unwrap();
        assert_eq!(toa_of(&out.output), (Some(client), 40), "the handshake's ACK carries the client");
        assert_eq!(out.output.len(), input.len() + 8);
        // Later packets of the flow do not.
        let out = program.run_on(ifindex, &ack(client, b"GET / HTTP/1.0\r\n\r\n").build());
        fnat_to_real(&out.output).unwrap();
        assert_eq!(toa_of(&out.output), (None, 32));

        // A frame padded to Ethernet's 60 bytes: the padding makes room and is trimmed.
        let client = addr("10.9.0.8:40003");
        program.run_on(ifindex, &Packet::tcp_syn(client, vip).build());
        let mut padded = Packet::tcp(client, vip, TcpFlags::ACK, &[]).seq_ack(1001, 5001, 502).build();
        assert_eq!(padded.len(), 54);
        padded.resize(60, 0);
        let out = program.run_on(ifindex, &padded);
        fnat_to_real(&out.output).unwrap();
        assert_eq!(toa_of(&out.output), (Some(client), 28));
        assert_eq!(out.output.len(), 54 + 8);

        // A handshake ACK that carries data goes without the option (and is counted).
        let client = addr("10.9.0.9:40004");
        program.run_on(ifindex, &Packet::tcp_syn(client, vip).build());
        let out = program.run_on(ifindex, &ack(client, b"early data").build());
        fnat_to_real(&out.output).unwrap();
        assert_eq!(toa_of(&out.output), (None, 32));

        let stats = program.stats();
        assert_eq!((stats.toa_inserted, stats.toa_no_room), (2, 1), "{stats:?}");

        // `lbd_fnat_toa off`.
        let mut settings: Array<_, lb_common::lb::Settings> =
            Array::try_from(program.ebpf_mut().map_mut(maps::SETTINGS).unwrap()).unwrap();
        settings.set(0, lb_common::lb::Settings { ready: 1, fnat_toa: 0, ..Default::default() }, 0).unwrap();
        let client = addr("10.9.0.10:40005");
        program.run_on(ifindex, &Packet::tcp_syn(client, vip).build());
        let out = program.run_on(ifindex, &ack(client, &[]).build());
        fnat_to_real(&out.output).unwrap();
        assert_eq!(toa_of(&out.output), (None, 32));
        assert_eq!(program.stats().toa_inserted, 2);
    });
}

/// IPv6 FNAT: the handshake's ACK carries the client's IPv6 address and port (kind 253,
/// length 20), checksums right; later packets do not.
#[test]
fn fnat_ipv6_handshake_acks_carry_the_client_address_in_a_toa_option() {
    let mut lab = Lab::new();
    let (lb, ifindex, _) = lb_namespace(&mut lab);
    lb.enter(|| {
        let mut program = XdpTestRun::lbd();
        load_tables(&mut program);
        let vip = addr("[2001:db8::103]:80");
        let client = addr("[2001:db8:9::7]:40020");
        let to_real = |frame: &[u8]| {
            let (src, sport, dst, dport) = packet::check_ipv6_tcp(frame).unwrap();
            assert_eq!(frame[..6], REAL6_MAC);
            assert_eq!(src, "2001:db8::200".parse::<Ipv6Addr>().unwrap(), "from the pool");
            assert!(sport >= 1024);
            assert_eq!((dst, dport), ("2001:db8::11".parse().unwrap(), 8080));
        };
        let syn = program.run_on(ifindex, &Packet::tcp_syn(client, vip).build());
        assert_eq!(syn.action, XdpAction::Tx);
        to_real(&syn.output);
        let input = Packet::tcp(client, vip, TcpFlags::ACK, &[]).seq_ack(1001, 5001, 502).build();
        let out = program.run_on(ifindex, &input);
        assert_eq!(out.action, XdpAction::Tx);
        to_real(&out.output);
        assert_eq!(packet::toa_option(&out.output), Some(client));
        assert_eq!(out.output.len(), input.len() + 20);
        let out = program.run_on(ifindex, &Packet::tcp(client, vip, TcpFlags::ACK, b"GET /").build());
        to_real(&out.output);
        assert_eq!(packet::toa_option(&out.output), None);
        assert_eq!(program.stats().toa_inserted, 1);
    });
}

#[test]
fn flows_of_a_removed_service_stop_on_the_fast_path() {
    let mut lab = Lab::new();
    let (lb, ifindex, lb_mac) = lb_namespace(&mut lab);
    lb.enter(|| {
        let mut program = XdpTestRun::lbd();
        load_tables(&mut program);
        let client = addr("10.9.0.7:40003");
        let vip = addr("10.0.0.101:80");
        let ack = Packet::tcp(client, vip, TcpFlags::ACK, b"data").build();
        assert_eq!(program.run_on(ifindex, &Packet::tcp_syn(client, vip).build()).action, XdpAction::Tx);
        let out = program.run_on(ifindex, &ack);
        assert_eq!(out.action, XdpAction::Tx);
        assert_eq!(
            out.output,
            Packet::tcp(client, vip, TcpFlags::ACK, b"data").macs(lb_mac, REAL3_MAC).build()
        );
        // The daemon removes the DR service and, in the same apply, clears its real server.
        let ebpf = program.ebpf_mut();
        let mut services: HashMap<_, ServiceKey, Service> =
            HashMap::try_from(ebpf.map_mut(maps::SERVICES).unwrap()).unwrap();
        let key = ServiceKey { addr: ipv4_words([10, 0, 0, 101]), port: 80u16.to_be(), proto: 6, family: 4 };
        services.remove(&key).unwrap();
        let mut reals: Array<_, Real> = Array::try_from(ebpf.map_mut(maps::REALS).unwrap()).unwrap();
        reals.set(3, Real::default(), 0).unwrap();
        // The flow's entry is still in the connection table, but nothing forwards it now.
        let out = program.run_on(ifindex, &ack);
        assert_eq!(out.action, XdpAction::Pass);
        assert_eq!(out.output, ack);
        let stats = program.stats();
        assert_eq!((stats.flow_hits, stats.pass_no_service), (1, 1), "{stats:?}");
    });
}

/// A bare SYN is inserted without a lookup first (`BPF_NOEXIST`): a retransmitted SYN finds
/// its flow there and follows it (no second new flow, no second active connection), and a SYN
/// on a flow that was reset replaces it with a newly scheduled one.
#[test]
fn a_syn_on_a_known_flow_follows_it_or_replaces_a_closed_one() {
    let mut lab = Lab::new();
    let (lb, ifindex, lb_mac) = lb_namespace(&mut lab);
    lb.enter(|| {
        let mut program = XdpTestRun::lbd();
        load_tables(&mut program);
        // The DR service 10.0.0.101:80 gets a second real (real 1, 10.0.0.11), round robin.
        let ebpf = program.ebpf_mut();
        let mut slots: Array<_, u32> = Array::try_from(ebpf.map_mut(maps::SLOTS).unwrap()).unwrap();
        slots.set(2 * SLOTS_PER_SERVICE + 1, 1, 0).unwrap();
        let mut services: HashMap<_, ServiceKey, Service> =
            HashMap::try_from(ebpf.map_mut(maps::SERVICES).unwrap()).unwrap();
        let key = ServiceKey { addr: ipv4_words([10, 0, 0, 101]), port: 80u16.to_be(), proto: 6, family: 4 };
        let service = services.get(&key, 0).unwrap();
        services.insert(key, Service { slots_len: 2, ..service }, 0).unwrap();
        let active = |program: &mut XdpTestRun| -> (u64, u64) {
            let reals: Array<_, u64> =
                Array::try_from(program.ebpf_mut().map(maps::REAL_ACTIVE).unwrap()).unwrap();
            (reals.get(&1, 0).unwrap(), reals.get(&3, 0).unwrap())
        };
        let real_mac = |frame: &[u8]| -> [u8; 6] { frame[..6].try_into().unwrap() };

        let client = addr("10.9.0.7:40009");
        let vip = addr("10.0.0.101:80");
        let syn = Packet::tcp_syn(client, vip).build();
        let first = program.run_on(ifindex, &syn);
        assert_eq!(first.action, XdpAction::Tx);
        let mac = real_mac(&first.output);
        assert!(mac == REAL1_MAC || mac == REAL3_MAC, "{:02x?}", mac);
        assert_eq!(first.output, Packet::tcp_syn(client, vip).macs(lb_mac, mac).build());
        let before = active(&mut program);
        assert_eq!(before.0 + before.1, 1, "{before:?}");

        // Retransmitted, twice: the same real, still one flow and one active connection.
        for _ in 0..2 {
            let again = program.run_on(ifindex, &syn);
            assert_eq!(again.action, XdpAction::Tx);
            assert_eq!(again.output, first.output);
        }
        let stats = program.stats();
        assert_eq!((stats.new_flows, stats.flow_hits), (1, 2), "{stats:?}");
        assert_eq!(active(&mut program), before);

        // The client resets the flow; its next SYN (the same port) is a new flow. Round robin
        // has moved on, so over a few rounds both reals are seen; each flow's ACK follows its SYN.
        let mut seen = std::collections::BTreeSet::new();
        for round in 0..4u64 {
            let rst = program.run_on(ifindex, &Packet::tcp(client, vip, TcpFlags::RST, &[]).build());
            assert_eq!(rst.action, XdpAction::Tx);
            let renewed = program.run_on(ifindex, &syn);
            assert_eq!(renewed.action, XdpAction::Tx);
            let mac = real_mac(&renewed.output);
            seen.insert(mac);
            let ack = program.run_on(ifindex, &Packet::tcp(client, vip, TcpFlags::ACK, b"x").build());
            assert_eq!(real_mac(&ack.output), mac, "round {round}");
            assert_eq!(program.stats().new_flows, 2 + round);
            let (a, b) = active(&mut program);
            assert_eq!(a + b, 1, "round {round}: the reset flow no longer counts ({a}, {b})");
        }
        assert_eq!(seen.len(), 2, "{seen:02x?}");
    });
}

/// A packet larger than its route's MTU (the veth's 1500 bytes) goes to the kernel, which
/// answers with ICMP fragmentation needed or fragments it: whether the route comes from the
/// program's cache or from a FIB lookup. TUN counts the 20 bytes of its outer header.
#[test]
fn packets_larger_than_the_route_mtu_go_to_the_kernel() {
    let mut lab = Lab::new();
    let (lb, ifindex, _) = lb_namespace(&mut lab);
    lb.enter(|| {
        for (method, vip, overhead) in [("NAT", "10.0.0.100:80", 0), ("TUN", "10.0.0.102:80", 20)] {
            // A fresh program each time: an empty route cache.
            let mut program = XdpTestRun::lbd();
            load_tables(&mut program);
            let vip = addr(vip);
            // IP length 1500 once the method is applied: payload 1500 - 20 (IP) - 20 (TCP).
            let payload = |ip_len: usize| vec![0x5a; ip_len - 40 - overhead];
            // First packet of a flow, too big: the FIB lookup reports it.
            let client = addr("10.9.0.8:41000");
            let big_syn = Packet::tcp(client, vip, TcpFlags::SYN, &payload(1501)).build();
            assert_eq!(program.run_on(ifindex, &big_syn).action, XdpAction::Pass, "{method}: lookup");
            // A small packet caches the route; a full-size one still fits; one byte more does not.
            let client = addr("10.9.0.8:41001");
            assert_eq!(program.run_on(ifindex, &Packet::tcp_syn(client, vip).build()).action, XdpAction::Tx);
            let fits = Packet::tcp(client, vip, TcpFlags::ACK, &payload(1500)).build();
            let out = program.run_on(ifindex, &fits);
            assert_eq!(out.action, XdpAction::Tx, "{method}: 1500 bytes fit the cached route");
            assert_eq!(out.output.len(), fits.len() + overhead);
            let big = Packet::tcp(client, vip, TcpFlags::ACK, &payload(1501)).build();
            assert_eq!(program.run_on(ifindex, &big).action, XdpAction::Pass, "{method}: cached route");
            let stats = program.stats();
            assert_eq!((stats.pass_too_big, stats.fwd_tx), (2, 2), "{method}: {stats:?}");
        }
    });
}

/// The first `len` bytes of an IP packet: what an ICMP error quotes.
fn quote(packet: &Packet, len: usize) -> Vec<u8> {
    packet.ip_bytes()[..len].to_vec()
}

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

#[test]
fn icmp_errors_follow_their_flows() {
    let mut lab = Lab::new();
    let (lb, ifindex, lb_mac) = lb_namespace(&mut lab);
    lb.enter(|| {
        let mut program = XdpTestRun::lbd();
        load_tables(&mut program);
        let client = addr("10.9.0.7:40010");
        let (vip, real) = (addr("10.0.0.100:80"), addr("10.0.0.11:8080"));
        let syn_ack = TcpFlags::SYN | TcpFlags::ACK;
        let mtu = 1400u32.to_be_bytes();
        for (vip, fam) in [(vip, 4), (addr("10.0.0.101:80"), 4), (addr("[2001:db8::100]:80"), 6)] {
            let client = if fam == 4 { client } else { addr("[2001:db8:9::7]:40010") };
            let out = program.run_on(ifindex, &Packet::tcp_syn(client, vip).build());
            assert_eq!(out.action, XdpAction::Tx);
        }
        // NAT, from the real server's side (fragmentation needed on the way to the client,
        // about the packet the LB sent it): to the client, from the VIP, quoting the VIP.
        let from_real =
            Packet::icmp_error(real.ip(), client.ip(), 3, 4, mtu, &quote(&Packet::tcp_syn(client, real), 28));
        let to_client =
            Packet::icmp_error(vip.ip(), client.ip(), 3, 4, mtu, &quote(&Packet::tcp_syn(client, vip), 28))
                .ttl(63)
                .macs(lb_mac, GW_MAC);
        // NAT, from the client's side (a router, about the reply from the VIP): to the real
        // server, quoting it.
        let router = ip("10.9.0.254");
        let from_router = Packet::icmp_error(
            router,
            vip.ip(),
            3,
            4,
            mtu,
            &quote(&Packet::tcp(vip, client, syn_ack, &[]), 28),
        );
        let to_real = Packet::icmp_error(
            router,
            real.ip(),
            3,
            4,
            mtu,
            &quote(&Packet::tcp(real, client, syn_ack, &[]), 28),
        )
        .macs(lb_mac, REAL1_MAC);
        // DR: the real server holds the VIP; only the MACs change.
        let dr_vip = addr("10.0.0.101:80");
        let dr_error = || {
            Packet::icmp_error(
                router,
                dr_vip.ip(),
                3,
                4,
                mtu,
                &quote(&Packet::tcp(dr_vip, client, syn_ack, &[]), 28),
            )
        };
        // IPv6 NAT: packet too big from the real server's side.
        let (client6, vip6, real6) =
            (addr("[2001:db8:9::7]:40010"), addr("[2001:db8::100]:80"), addr("[2001:db8::11]:8080"));
        let mtu6 = 1280u32.to_be_bytes();
        let too_big = Packet::icmp_error(
            real6.ip(),
            client6.ip(),
            2,
            0,
            mtu6,
            &quote(&Packet::tcp_syn(client6, real6), 48),
        );
        let too_big_out = Packet::icmp_error(
            vip6.ip(),
            client6.ip(),
            2,
            0,
            mtu6,
            &quote(&Packet::tcp_syn(client6, vip6), 48),
        )
        .ttl(63)
        .macs(lb_mac, GW_MAC);
        // Not about a tracked flow; a quote cut short; an echo request.
        let stranger = Packet::icmp_error(
            router,
            vip.ip(),
            3,
            4,
            mtu,
            &quote(&Packet::tcp(vip, addr("10.9.0.99:1"), syn_ack, &[]), 28),
        )
        .build();
        let cut = Packet::icmp_error(
            router,
            vip.ip(),
            3,
            4,
            mtu,
            &quote(&Packet::tcp(vip, client, syn_ack, &[]), 22),
        )
        .build();
        let echo =
            Packet::icmp_echo("10.9.0.7".parse().unwrap(), "10.0.0.100".parse().unwrap(), 1, 1).build();

        let table = vec![
            Fixture {
                description: "NAT: an error from the real server's side goes to the client, from the VIP",
                input: from_real.build(),
                action: XdpAction::Tx,
                output: Expected::Bytes(to_client.build()),
            },
            Fixture {
                description: "NAT: an error from the client's side goes to the real server",
                input: from_router.build(),
                action: XdpAction::Tx,
                output: Expected::Bytes(to_real.build()),
            },
            Fixture {
                description: "DR: an error about a reply goes to the real server unchanged",
                input: dr_error().build(),
                action: XdpAction::Tx,
                output: Expected::Bytes(dr_error().macs(lb_mac, REAL3_MAC).build()),
            },
            Fixture {
                description: "IPv6 NAT: packet too big from the real server's side goes to the client",
                input: too_big.build(),
                action: XdpAction::Tx,
                output: Expected::Bytes(too_big_out.build()),
            },
            Fixture {
                description: "an error about no tracked flow passes",
                input: stranger,
                action: XdpAction::Pass,
                output: Expected::Unchanged,
            },
            Fixture {
                description: "an error whose quote is cut before the ports is dropped",
                input: cut,
                action: XdpAction::Drop,
                output: Expected::Any,
            },
            Fixture {
                description: "an echo request passes",
                input: echo,
                action: XdpAction::Pass,
                output: Expected::Unchanged,
            },
        ];
        run_table_on(&program, Some(ifindex), &table);
        let stats = program.stats();
        assert_eq!((stats.icmp_translated, stats.drop_malformed), (4, 1), "{stats:?}");
    });
}

#[test]
fn fnat_icmp_errors_are_translated_both_ways() {
    let mut lab = Lab::new();
    let (lb, ifindex, lb_mac) = lb_namespace(&mut lab);
    lb.enter(|| {
        let mut program = XdpTestRun::lbd();
        load_tables(&mut program);
        let (client, vip, real) = (addr("10.9.0.7:40011"), addr("10.0.0.103:80"), addr("10.0.0.11:8080"));
        let out = program.run_on(ifindex, &Packet::tcp_syn(client, vip).build());
        assert_eq!(out.action, XdpAction::Tx);
        let (laddr, lport, _, _) = check_ipv4_tcp(&out.output).unwrap();
        let local = SocketAddr::new(laddr.into(), lport);
        let syn_ack = TcpFlags::SYN | TcpFlags::ACK;
        let mtu = 1400u32.to_be_bytes();
        // From the real server's side, about local -> real: to the client, VIP -> client.
        let error =
            Packet::icmp_error(real.ip(), local.ip(), 3, 4, mtu, &quote(&Packet::tcp_syn(local, real), 28));
        let back = program.run_on(ifindex, &error.build());
        assert_eq!(back.action, XdpAction::Tx);
        let expected =
            Packet::icmp_error(vip.ip(), client.ip(), 3, 4, mtu, &quote(&Packet::tcp_syn(client, vip), 28))
                .ttl(63)
                .macs(lb_mac, GW_MAC);
        assert_eq!(back.output, expected.build());
        // From the client's side, about VIP -> client: to the real server, local -> real.
        let router = ip("10.9.0.254");
        let error = Packet::icmp_error(
            router,
            vip.ip(),
            3,
            4,
            mtu,
            &quote(&Packet::tcp(vip, client, syn_ack, &[]), 28),
        );
        let forth = program.run_on(ifindex, &error.build());
        assert_eq!(forth.action, XdpAction::Tx);
        let expected = Packet::icmp_error(
            local.ip(),
            real.ip(),
            3,
            4,
            mtu,
            &quote(&Packet::tcp(real, local, syn_ack, &[]), 28),
        )
        .macs(lb_mac, REAL1_MAC);
        assert_eq!(forth.output, expected.build());
    });
}

/// Adds the SYN proxy's services to the fixture's tables (NAT 10.0.0.105 and FNAT 10.0.0.106,
/// TCP 80, both to real 1; NAT [2001:db8::105]:80 to real 4) and its secret.
fn load_synproxy_services(program: &mut XdpTestRun) {
    let ebpf = program.ebpf_mut();
    let mut slots: Array<_, u32> = Array::try_from(ebpf.map_mut(maps::SLOTS).unwrap()).unwrap();
    for service in [7, 8] {
        slots.set(service * SLOTS_PER_SERVICE, 1, 0).unwrap();
    }
    slots.set(9 * SLOTS_PER_SERVICE, 4, 0).unwrap();
    let mut services: HashMap<_, ServiceKey, Service> =
        HashMap::try_from(ebpf.map_mut(maps::SERVICES).unwrap()).unwrap();
    let v6 = ipv6_words("2001:db8::105".parse::<Ipv6Addr>().unwrap().octets());
    for (addr, id, method) in [
        (ipv4_words([10, 0, 0, 105]), 7, Method::Nat),
        (ipv4_words([10, 0, 0, 106]), 8, Method::Fnat),
        (v6, 9, Method::Nat),
    ] {
        let family = if id == 9 { 6 } else { 4 };
        let key = ServiceKey { addr, port: 80u16.to_be(), proto: 6, family };
        let service = Service {
            id,
            slots_len: 1,
            laddr_group: u32::from(method == Method::Fnat),
            method: method as u8,
            flags: service_flags::SYN_PROXY,
            ..Service::default()
        };
        services.insert(key, service, 0).unwrap();
    }
    let mut secret: Array<_, SynProxySecret> =
        Array::try_from(ebpf.map_mut(maps::SYNPROXY_SECRET).unwrap()).unwrap();
    secret.set(0, SynProxySecret { key: [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210] }, 0).unwrap();
}

/// An MSS option of `mss`, then NOP, NOP, SACK permitted (which the proxy does not offer).
fn mss_sack(mss: u16) -> Vec<u8> {
    let [hi, lo] = mss.to_be_bytes();
    vec![2, 4, hi, lo, 1, 1, 4, 2]
}

/// The TCP sequence number of an IPv4 frame without VLAN tags or IP options.
fn seq_of(frame: &[u8]) -> u32 {
    u32::from_be_bytes(frame[14 + 20 + 4..14 + 20 + 8].try_into().unwrap())
}

#[test]
fn synproxy_answers_with_cookies_and_splices_the_real_server_in() {
    let mut lab = Lab::new();
    let (lb, ifindex, lb_mac) = lb_namespace(&mut lab);
    lb.enter(|| {
        let mut program = XdpTestRun::lbd();
        load_tables(&mut program);
        load_synproxy_services(&mut program);
        let (client, vip, real) = (addr("10.9.0.7:40020"), addr("10.0.0.105:80"), addr("10.0.0.11:8080"));
        let (syn_ack, ack, psh_ack) =
            (TcpFlags::SYN | TcpFlags::ACK, TcpFlags::ACK, TcpFlags::PSH | TcpFlags::ACK);
        let client_isn = 1000;
        let syn = Packet::tcp_syn(client, vip).seq_ack(client_isn, 0, 64240).tcp_options(&mss_sack(1460));

        // The SYN is answered from the LB: a SYN-ACK from the VIP, the cookie as its sequence
        // number, only an MSS option, back out of the interface it came in on.
        let out = program.run_on(ifindex, &syn.build());
        assert_eq!(out.action, XdpAction::Tx);
        let cookie = seq_of(&out.output);
        let answer = |cookie: u32, mss: u16| {
            Packet::tcp(vip, client, syn_ack, &[])
                .seq_ack(cookie, client_isn + 1, 65535)
                .tcp_options(&mss.to_be_bytes().iter().fold(vec![2, 4], |mut o, b| {
                    o.push(*b);
                    o
                }))
                .macs(packet::DST_MAC, packet::SRC_MAC)
                .build()
        };
        assert_eq!(out.output, answer(cookie, 1460));
        // Same SYN, same cookie: nothing was stored, and the SYN-ACK is a function of it.
        assert_eq!(program.run_on(ifindex, &syn.build()).output, answer(cookie, 1460));

        let from_client = |flags: u8, seq: u32, ack_number: u32, data: &[u8]| {
            Packet::tcp(client, vip, flags, data).seq_ack(seq, ack_number, 64240)
        };
        let to_real = |flags: u8, seq: u32, ack_number: u32, data: &[u8]| {
            Packet::tcp(client, real, flags, data).seq_ack(seq, ack_number, 64240).macs(lb_mac, REAL1_MAC)
        };
        let real_isn = 0x8000_0000u32;
        let from_real = |flags: u8, seq: u32, data: &[u8]| {
            Packet::tcp(real, client, flags, data).seq_ack(seq, client_isn + 1 + 3, 64240)
        };
        let bare_syn = Packet::tcp_syn(addr("10.9.0.8:40021"), vip).seq_ack(77, 0, 1024);
        let table = vec![
            Fixture {
                description: "a SYN without options gets a SYN-ACK with the default MSS (frame grown)",
                input: bare_syn.build(),
                action: XdpAction::Tx,
                output: Expected::Check(|frame| {
                    let (src, sport, dst, dport) = check_ipv4_tcp(frame)?;
                    let options = &frame[14 + 20 + 20..];
                    if (src, sport, dst, dport)
                        != (Ipv4Addr::new(10, 0, 0, 105), 80, Ipv4Addr::new(10, 9, 0, 8), 40021)
                        || frame[14 + 20 + 13] != TcpFlags::SYN | TcpFlags::ACK
                        || options != [2, 4, 2, 24]
                    {
                        return Err("not a SYN-ACK from the VIP with MSS 536".into());
                    }
                    Ok(())
                }),
            },
            Fixture {
                description: "an ACK whose cookie is wrong is dropped",
                input: from_client(ack, client_isn + 1, cookie.wrapping_add(2), &[]).build(),
                action: XdpAction::Drop,
                output: Expected::Any,
            },
            Fixture {
                description: "an ACK from another client port with this cookie is dropped",
                input: Packet::tcp(addr("10.9.0.7:40099"), vip, ack, &[])
                    .seq_ack(client_isn + 1, cookie.wrapping_add(1), 64240)
                    .build(),
                action: XdpAction::Drop,
                output: Expected::Any,
            },
            Fixture {
                description: "the ACK with the cookie becomes the SYN to the real server (client ISN, MSS)",
                input: from_client(ack, client_isn + 1, cookie.wrapping_add(1), &[]).build(),
                action: XdpAction::Tx,
                output: Expected::Bytes(
                    to_real(TcpFlags::SYN, client_isn, 0, &[]).tcp_options(&[2, 4, 0x05, 0xb4]).build(),
                ),
            },
            Fixture {
                description: "client data before the real server answered is dropped",
                input: from_client(psh_ack, client_isn + 1, cookie.wrapping_add(1), b"GET").build(),
                action: XdpAction::Drop,
                output: Expected::Any,
            },
            Fixture {
                description: "the real server's SYN-ACK becomes the ACK that completes its handshake",
                input: Packet::tcp(real, client, syn_ack, &[])
                    .seq_ack(real_isn, client_isn + 1, 64240)
                    .tcp_options(&[2, 4, 0x05, 0xb4])
                    .build(),
                action: XdpAction::Tx,
                output: Expected::Bytes(
                    Packet::tcp(client, real, ack, &[])
                        .seq_ack(client_isn + 1, real_isn + 1, 65535)
                        .macs(packet::DST_MAC, packet::SRC_MAC)
                        .build(),
                ),
            },
            Fixture {
                description: "client data: acknowledgement shifted into the real server's numbers",
                input: from_client(psh_ack, client_isn + 1, cookie.wrapping_add(1), b"GET").build(),
                action: XdpAction::Tx,
                output: Expected::Bytes(to_real(psh_ack, client_isn + 1, real_isn + 1, b"GET").build()),
            },
            Fixture {
                description: "the real server's data: sequence shifted into the cookie's numbers",
                input: from_real(psh_ack, real_isn + 1, b"HTTP").build(),
                action: XdpAction::Tx,
                output: Expected::Bytes(
                    Packet::tcp(vip, client, psh_ack, b"HTTP")
                        .seq_ack(cookie.wrapping_add(1), client_isn + 4, 64240)
                        .ttl(63)
                        .macs(lb_mac, GW_MAC)
                        .build(),
                ),
            },
        ];
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_table_on(&program, Some(ifindex), &table)
        }));
        let stats = program.stats();
        if let Err(panic) = result {
            eprintln!("counters after the table: {stats:?}");
            std::panic::resume_unwind(panic);
        }
        assert_eq!(stats.synproxy_cookies_sent, 3, "{stats:?}");
        assert_eq!(stats.drop_bad_cookie, 2, "{stats:?}");
        assert_eq!(stats.synproxy_cookies_valid, 1, "{stats:?}");
        assert_eq!(stats.drop_synproxy_early, 1, "{stats:?}");
        assert_eq!(stats.synproxy_real_answers, 1, "{stats:?}");
        assert_eq!(stats.new_flows, 1, "{stats:?}");
    });
}

#[test]
fn synproxy_fnat_flow_reaches_the_real_from_the_pool_and_shifts_both_ways() {
    let mut lab = Lab::new();
    let (lb, ifindex, lb_mac) = lb_namespace(&mut lab);
    lb.enter(|| {
        let mut program = XdpTestRun::lbd();
        load_tables(&mut program);
        load_synproxy_services(&mut program);
        let (client, vip, real) = (addr("10.9.0.7:40030"), addr("10.0.0.106:80"), addr("10.0.0.11:8080"));
        let syn = Packet::tcp_syn(client, vip).seq_ack(500, 0, 64240).tcp_options(&mss_sack(1440)).build();
        let out = program.run_on(ifindex, &syn);
        assert_eq!(out.action, XdpAction::Tx);
        let cookie = seq_of(&out.output);
        let ack = Packet::tcp(client, vip, TcpFlags::ACK, &[]).seq_ack(501, cookie.wrapping_add(1), 64240);
        let out = program.run_on(ifindex, &ack.build());
        assert_eq!(out.action, XdpAction::Tx);
        fnat_to_real(&out.output).unwrap();
        let (laddr, lport, _, _) = check_ipv4_tcp(&out.output).unwrap();
        let local = SocketAddr::new(laddr.into(), lport);
        assert_eq!((out.output[14 + 20 + 13], seq_of(&out.output)), (TcpFlags::SYN, 500));
        assert_eq!(&out.output[14 + 20 + 20..], &[2, 4, 0x05, 0xa0], "MSS 1440 from the cookie");
        // The real server answers the local address; the LB completes its handshake, with
        // the client's address in a TOA option.
        let real_isn = 7u32;
        let answer =
            Packet::tcp(real, local, TcpFlags::SYN | TcpFlags::ACK, &[]).seq_ack(real_isn, 501, 29200);
        let out = program.run_on(ifindex, &answer.build());
        assert_eq!(out.action, XdpAction::Tx);
        let [hi, lo] = 40030u16.to_be_bytes();
        assert_eq!(
            out.output,
            Packet::tcp(local, real, TcpFlags::ACK, &[])
                .seq_ack(501, real_isn + 1, 65535)
                .tcp_options(&[254, 8, hi, lo, 10, 9, 0, 7])
                .macs(packet::DST_MAC, packet::SRC_MAC)
                .build()
        );
        assert_eq!(program.stats().toa_inserted, 1);
        // Both directions shifted, FNAT translated.
        let data = Packet::tcp(client, vip, TcpFlags::ACK, b"x").seq_ack(501, cookie.wrapping_add(1), 64240);
        let out = program.run_on(ifindex, &data.build());
        assert_eq!(out.action, XdpAction::Tx);
        let expected = Packet::tcp(local, real, TcpFlags::ACK, b"x")
            .seq_ack(501, real_isn + 1, 64240)
            .macs(lb_mac, REAL1_MAC)
            .build();
        assert_eq!(out.output, expected);
        let reply = Packet::tcp(real, local, TcpFlags::ACK, b"y").seq_ack(real_isn + 1, 502, 29200);
        let out = program.run_on(ifindex, &reply.build());
        assert_eq!(out.action, XdpAction::Tx);
        let expected = Packet::tcp(vip, client, TcpFlags::ACK, b"y")
            .seq_ack(cookie.wrapping_add(1), 502, 29200)
            .ttl(63)
            .macs(lb_mac, GW_MAC)
            .build();
        assert_eq!(out.output, expected);
    });
}

/// A TCP frame (no VLAN tag) parsed: its addresses, ports, sequence and acknowledgement
/// numbers and flags, once its IP and TCP checksums are checked against a full recomputation.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Segment {
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
}

fn checked_segment(frame: &[u8]) -> Result<Segment, String> {
    let eth = EthernetPacket::new(frame).ok_or("short frame")?;
    let (src, dst, tcp_bytes, csum) = if eth.get_ethertype() == EtherTypes::Ipv4 {
        let ip = Ipv4Packet::new(eth.payload()).ok_or("short IPv4")?;
        if ipv4::checksum(&ip) != ip.get_checksum() {
            return Err(format!("bad IPv4 checksum {:#06x}", ip.get_checksum()));
        }
        let end = usize::from(ip.get_total_length());
        if end != eth.payload().len() {
            return Err(format!("IPv4 total length {end}, frame has {}", eth.payload().len()));
        }
        let tcp = TcpPacket::new(ip.payload()).ok_or("short TCP")?;
        let csum = tcp::ipv4_checksum(&tcp, &ip.get_source(), &ip.get_destination());
        (IpAddr::from(ip.get_source()), IpAddr::from(ip.get_destination()), ip.payload().to_vec(), csum)
    } else if eth.get_ethertype() == EtherTypes::Ipv6 {
        let ip = Ipv6Packet::new(eth.payload()).ok_or("short IPv6")?;
        let len = usize::from(ip.get_payload_length());
        if len + 40 != eth.payload().len() {
            return Err(format!("IPv6 payload length {len}, frame has {}", eth.payload().len() - 40));
        }
        let tcp = TcpPacket::new(ip.payload()).ok_or("short TCP")?;
        let csum = tcp::ipv6_checksum(&tcp, &ip.get_source(), &ip.get_destination());
        (IpAddr::from(ip.get_source()), IpAddr::from(ip.get_destination()), ip.payload().to_vec(), csum)
    } else {
        return Err(format!("ethertype {}", eth.get_ethertype()));
    };
    let tcp = TcpPacket::new(&tcp_bytes).ok_or("short TCP")?;
    if csum != tcp.get_checksum() {
        return Err(format!("bad TCP checksum {:#06x}, should be {csum:#06x}", tcp.get_checksum()));
    }
    Ok(Segment {
        src: SocketAddr::new(src, tcp.get_source()),
        dst: SocketAddr::new(dst, tcp.get_destination()),
        seq: tcp.get_sequence(),
        ack: tcp.get_acknowledgement(),
        flags: tcp.get_flags(),
    })
}

/// xorshift64*: reproducible random inputs (the seed is printed on failure).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn u32(&mut self) -> u32 {
        (self.next() >> 32) as u32
    }
}

/// Linux's SYN options: MSS, SACK permitted, timestamps, NOP, window scale.
fn linux_syn_options(mss: u16, tsval: u32) -> Vec<u8> {
    let mut o = vec![2, 4];
    o.extend(mss.to_be_bytes());
    o.extend([4, 2, 8, 10]);
    o.extend(tsval.to_be_bytes());
    o.extend([0, 0, 0, 0, 1, 3, 3, 7]);
    o
}

/// Many handshakes through the proxy, each with random client addresses, ports, ISNs, options
/// (none, MSS only, Linux's) and real server ISNs, IPv4 (NAT, FNAT) and IPv6 (NAT): every frame
/// the proxy writes or shifts (SYN-ACK, SYN to the real, ACK to the real, data both ways) has
/// IP and TCP checksums that a full recomputation agrees with, and the expected numbers.
#[test]
fn synproxy_checksums_hold_for_random_handshakes() {
    let mut lab = Lab::new();
    let (lb, ifindex, _) = lb_namespace(&mut lab);
    lb.enter(|| {
        let mut program = XdpTestRun::lbd();
        load_tables(&mut program);
        load_synproxy_services(&mut program);
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
        let mut rng = Rng(seed);
        let (psh_ack, ack) = (TcpFlags::PSH | TcpFlags::ACK, TcpFlags::ACK);
        for round in 0..600 {
            let (vip, real): (SocketAddr, SocketAddr) = match round % 3 {
                0 => (addr("10.0.0.105:80"), addr("10.0.0.11:8080")),
                1 => (addr("10.0.0.106:80"), addr("10.0.0.11:8080")),
                _ => (addr("[2001:db8::105]:80"), addr("[2001:db8::11]:8080")),
            };
            let port = 1024 + (rng.u32() % 64000) as u16;
            let client = if vip.is_ipv4() {
                SocketAddr::new(Ipv4Addr::new(10, 9, 0, 1 + (rng.u32() % 250) as u8).into(), port)
            } else {
                let host = rng.next();
                let v6 = Ipv6Addr::from((0x2001_0db8_0009_0000u128 << 64) | u128::from(host));
                SocketAddr::new(v6.into(), port)
            };
            let isn = rng.u32();
            let mss = 500 + (rng.u32() % 9000) as u16;
            let options = match rng.u32() % 3 {
                0 => Vec::new(),
                1 => vec![2, 4, (mss >> 8) as u8, mss as u8],
                _ => linux_syn_options(mss, rng.u32()),
            };
            let context =
                format!("seed {seed:#x} round {round}: {client} -> {vip}, ISN {isn:#x}, options {options:?}");
            let syn = Packet::tcp_syn(client, vip).seq_ack(isn, 0, rng.u32() as u16).tcp_options(&options);
            let out = program.run_on(ifindex, &syn.build());
            assert_eq!(out.action, XdpAction::Tx, "SYN: {context}");
            let syn_ack = checked_segment(&out.output).unwrap_or_else(|e| panic!("SYN-ACK: {e}: {context}"));
            assert_eq!(
                (syn_ack.src, syn_ack.dst, syn_ack.ack),
                (vip, client, isn.wrapping_add(1)),
                "{context}"
            );
            let cookie = syn_ack.seq;

            // The ACK (with timestamps or not) becomes the SYN to the real server.
            let mut ack_packet = Packet::tcp(client, vip, ack, &[]).seq_ack(
                isn.wrapping_add(1),
                cookie.wrapping_add(1),
                rng.u32() as u16,
            );
            if rng.u32().is_multiple_of(2) {
                let mut ts = vec![1, 1, 8, 10];
                ts.extend(rng.u32().to_be_bytes());
                ts.extend(rng.u32().to_be_bytes());
                ack_packet = ack_packet.tcp_options(&ts);
            }
            let out = program.run_on(ifindex, &ack_packet.build());
            assert_eq!(out.action, XdpAction::Tx, "ACK: {context}");
            let syn =
                checked_segment(&out.output).unwrap_or_else(|e| panic!("SYN to the real: {e}: {context}"));
            assert_eq!((syn.dst, syn.seq, syn.flags), (real, isn, TcpFlags::SYN), "{context}");
            let local = syn.src;

            // The real server's SYN-ACK becomes the ACK that completes its handshake.
            let real_isn = rng.u32();
            let answer = Packet::tcp(real, local, TcpFlags::SYN | TcpFlags::ACK, &[])
                .seq_ack(real_isn, isn.wrapping_add(1), rng.u32() as u16)
                .tcp_options(&linux_syn_options(1460, rng.u32()));
            let out = program.run_on(ifindex, &answer.build());
            assert_eq!(out.action, XdpAction::Tx, "real's SYN-ACK: {context}");
            let done =
                checked_segment(&out.output).unwrap_or_else(|e| panic!("ACK to the real: {e}: {context}"));
            let expected = (local, real, isn.wrapping_add(1), real_isn.wrapping_add(1), ack);
            assert_eq!((done.src, done.dst, done.seq, done.ack, done.flags), expected, "{context}");

            // Data both ways, shifted.
            let data = Packet::tcp(client, vip, psh_ack, b"GET /").seq_ack(
                isn.wrapping_add(1),
                cookie.wrapping_add(1),
                rng.u32() as u16,
            );
            let out = program.run_on(ifindex, &data.build());
            assert_eq!(out.action, XdpAction::Tx, "client data: {context}");
            let to_real =
                checked_segment(&out.output).unwrap_or_else(|e| panic!("client data: {e}: {context}"));
            assert_eq!((to_real.dst, to_real.ack), (real, real_isn.wrapping_add(1)), "{context}");
            let reply = Packet::tcp(real, local, psh_ack, b"HTTP/1.1 200").seq_ack(
                real_isn.wrapping_add(1),
                isn.wrapping_add(6),
                rng.u32() as u16,
            );
            let out = program.run_on(ifindex, &reply.build());
            assert_eq!(out.action, XdpAction::Tx, "real's data: {context}");
            let back = checked_segment(&out.output).unwrap_or_else(|e| panic!("real's data: {e}: {context}"));
            assert_eq!((back.src, back.dst, back.seq), (vip, client, cookie.wrapping_add(1)), "{context}");
        }
    });
}
