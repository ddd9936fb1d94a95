//! The XDP data plane, frame by frame, through BPF_PROG_TEST_RUN: every forwarding method
//! (NAT, DR, TUN, FNAT) and the reply path, IPv4 and IPv6, VLAN, IP options, fragments and
//! malformed frames, with the tables written directly into the maps.
//!
//! The runs happen inside a namespace with a veth, addresses, routes and static neighbours, so
//! the program's FIB lookups resolve real MAC addresses: output frames are compared byte for
//! byte with frames built independently (checksums computed from scratch by pnet).
#![expect(clippy::unwrap_used, reason = "tests: a failed step is a failed test")]

use std::net::{Ipv4Addr, SocketAddr};

use aya::maps::{Array, HashMap};
use lb_common::{
    lb::{Real, Service, ServiceKey, ipv4_words},
    maps,
};
use lb_tests::{
    fixture::{GW_MAC, REAL1_MAC, REAL3_MAC, REAL6_MAC, lb_namespace, load_tables},
    lab::Lab,
    packet::{self, Packet},
    xdp::{Expected, Fixture, XdpAction, XdpTestRun, run_table_on},
};
use pnet_packet::{
    Packet as _,
    ethernet::{EtherTypes, EthernetPacket},
    ipv4::{self, Ipv4Packet},
    tcp::{self, TcpFlags, TcpPacket},
};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Checks that an IPv4 TCP frame has valid IP and TCP checksums; returns its IP packet.
fn check_ipv4_tcp(frame: &[u8]) -> Result<(Ipv4Addr, u16, Ipv4Addr, u16), String> {
    let eth = EthernetPacket::new(frame).ok_or("short frame")?;
    if eth.get_ethertype() != EtherTypes::Ipv4 {
        return Err(format!("ethertype {}", eth.get_ethertype()));
    }
    let ip = Ipv4Packet::new(eth.payload()).ok_or("short IP")?;
    if ipv4::checksum(&ip) != ip.get_checksum() {
        return Err("bad IPv4 checksum".into());
    }
    let tcp = TcpPacket::new(ip.payload()).ok_or("short TCP")?;
    if tcp::ipv4_checksum(&tcp, &ip.get_source(), &ip.get_destination()) != tcp.get_checksum() {
        return Err("bad TCP checksum".into());
    }
    Ok((ip.get_source(), tcp.get_source(), ip.get_destination(), tcp.get_destination()))
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
        let inner = syn("10.0.0.102:80").ip_bytes();
        let mut outer =
            Packet::raw("10.0.0.1".parse().unwrap(), "10.0.0.13".parse().unwrap(), 4, &inner).ip_bytes();
        outer[6] = 0; // no DF, id 0 (as the program writes them)
        outer[4..6].copy_from_slice(&[0, 0]);
        outer[10..12].copy_from_slice(&[0, 0]);
        let csum = ipv4::checksum(&Ipv4Packet::new(&outer).unwrap());
        outer[10..12].copy_from_slice(&csum.to_be_bytes());
        let tun_out = packet::ethernet(REAL3_MAC, lb_mac, EtherTypes::Ipv4, &outer);
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
