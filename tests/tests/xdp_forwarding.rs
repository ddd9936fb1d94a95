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
