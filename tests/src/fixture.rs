//! A load balancer's namespace and tables for frame-level tests and benchmarks of the XDP
//! program: one service per forwarding method, written straight into the maps.
//!
//! | VIP (TCP 80) | id | method | real |
//! |---|---|---|---|
//! | 10.0.0.100 | 1 | NAT | 1: 10.0.0.11:8080 |
//! | 10.0.0.101 | 2 | DR | 3: 10.0.0.13 |
//! | 10.0.0.102 | 3 | TUN | 3: 10.0.0.13 |
//! | 10.0.0.103 | 4 | FNAT (pool 10.0.0.200) | 1 |
//! | 2001:db8::100 | 5 | NAT | 4: [2001:db8::11]:8080 |
//! | 10.0.0.104 | 6 | NAT | none |
//! | 2001:db8::103 | 7 | FNAT (pool 2001:db8::200) | 4 |

use std::net::IpAddr;

use aya::{
    Ebpf,
    maps::{Array, HashMap},
};
use lb_common::{
    lb::{
        LocalAddr, MAX_LADDRS_PER_GROUP, Method, Real, SLOTS_PER_SERVICE, Scheduler, Service, ServiceKey,
        Settings, family, ipv4_words, ipv6_words,
    },
    maps,
};

use crate::{
    lab::{Lab, Netns},
    xdp::XdpTestRun,
};

/// MAC of real 1 (static neighbour).
pub const REAL1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];
/// MAC of real 3.
pub const REAL3_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x13];
/// MAC of the gateway towards the clients (10.9.0.0/24, 2001:db8:9::/64).
pub const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
/// MAC of real 4 (IPv6).
pub const REAL6_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x61];

/// Address words of an address.
pub fn words(ip: IpAddr) -> [u32; 4] {
    match ip {
        IpAddr::V4(v4) => ipv4_words(v4.octets()),
        IpAddr::V6(v6) => ipv6_words(v6.octets()),
    }
}

/// The load balancer's namespace: eth0 with 10.0.0.1/24 and 2001:db8::1/64, static
/// neighbours for the real servers and a gateway towards the clients.
pub fn lb_namespace(lab: &mut Lab) -> (Netns, u32, [u8; 6]) {
    let lb = lab.netns("lb");
    let peer = lab.netns("peer");
    lab.veth(&lb, "eth0", &peer, "eth0");
    lb.addr("eth0", "10.0.0.1/24");
    lb.addr("eth0", "2001:db8::1/64");
    for (ip, mac) in [
        ("10.0.0.11", REAL1_MAC),
        ("10.0.0.13", REAL3_MAC),
        ("10.0.0.254", GW_MAC),
        ("2001:db8::11", REAL6_MAC),
    ] {
        let mac = mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        lb.ip(&["neigh", "add", ip, "lladdr", &mac, "dev", "eth0", "nud", "permanent"]);
    }
    lb.ip(&["route", "add", "10.9.0.0/24", "via", "10.0.0.254"]);
    lb.ip(&["-6", "route", "add", "2001:db8:9::/64", "via", "2001:db8::fe"]);
    lb.ip(&[
        "neigh",
        "add",
        "2001:db8::fe",
        "lladdr",
        "02:00:00:00:00:fe",
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    // bpf_fib_lookup answers only where forwarding is on (as a load balancer has it).
    lb.sysctl("net.ipv4.conf.eth0.forwarding", "1");
    lb.sysctl("net.ipv6.conf.all.forwarding", "1");
    let out = lb.ip(&["-o", "link", "show", "eth0"]);
    let ifindex = out.split(':').next().expect("fixture setup").trim().parse().expect("fixture setup");
    let mac = lb.mac("eth0");
    (lb, ifindex, mac)
}

/// [`Settings`] without its last field, `generation` (28 bytes), as objects built before it
/// have it.
#[repr(C)]
#[derive(Clone, Copy)]
struct SettingsBeforeGeneration([u8; 28]);

// SAFETY: `#[repr(C)]` bytes: no padding, valid for any bits.
unsafe impl aya::Pod for SettingsBeforeGeneration {}

impl SettingsBeforeGeneration {
    fn of(settings: &Settings) -> Self {
        // SAFETY: `Settings` is `#[repr(C)]` plain data of 32 bytes; its first 28 are copied.
        Self(unsafe { std::ptr::read_unaligned(std::ptr::from_ref(settings).cast::<[u8; 28]>()) })
    }
}

/// Writes the tables: one service per method, each with one real server, plus an empty one.
pub fn load_tables(program: &mut XdpTestRun) {
    load_tables_into(program.ebpf_mut());
}

/// As [`load_tables`], into the maps of any loaded copy of lbd's object (one attached to an
/// interface, say).
pub fn load_tables_into(ebpf: &mut Ebpf) {
    let value = Settings { ready: 1, ..Settings::default() };
    let map = ebpf.map_mut(maps::SETTINGS).expect("fixture setup");
    match Array::<_, Settings>::try_from(&mut *map) {
        Ok(mut settings) => settings.set(0, value, 0).expect("fixture setup"),
        // An object built before `Settings::generation` (a baseline in a before / after bench).
        Err(_) => {
            let mut settings: Array<_, SettingsBeforeGeneration> =
                Array::try_from(map).expect("fixture setup");
            settings.set(0, SettingsBeforeGeneration::of(&value), 0).expect("fixture setup");
        }
    }

    let mut reals: Array<_, Real> =
        Array::try_from(ebpf.map_mut(maps::REALS).expect("fixture setup")).expect("fixture setup");
    let v4 = |o: [u8; 4]| ipv4_words(o);
    let real = |a: [u32; 4], port: u16, fam: u8| Real {
        addr: a,
        tunnel_source: if fam == family::IPV4 {
            v4([10, 0, 0, 1])
        } else {
            words("2001:db8::1".parse().expect("fixture setup"))
        },
        port: port.to_be(),
        family: fam,
        pad: 0,
        weight: 1,
    };
    reals.set(1, real(v4([10, 0, 0, 11]), 8080, family::IPV4), 0).expect("fixture setup");
    reals.set(3, real(v4([10, 0, 0, 13]), 0, family::IPV4), 0).expect("fixture setup");
    reals
        .set(4, real(words("2001:db8::11".parse().expect("fixture setup")), 8080, family::IPV6), 0)
        .expect("fixture setup");

    let mut slots: Array<_, u32> =
        Array::try_from(ebpf.map_mut(maps::SLOTS).expect("fixture setup")).expect("fixture setup");
    for (service, real) in [(1, 1), (2, 3), (3, 3), (4, 1), (5, 4), (7, 4)] {
        slots.set(service * SLOTS_PER_SERVICE, real, 0).expect("fixture setup");
    }
    let mut laddrs: Array<_, LocalAddr> =
        Array::try_from(ebpf.map_mut(maps::LADDRS).expect("fixture setup")).expect("fixture setup");
    laddrs
        .set(
            MAX_LADDRS_PER_GROUP,
            LocalAddr { addr: v4([10, 0, 0, 200]), family: family::IPV4, pad: [0; 3] },
            0,
        )
        .expect("fixture setup");
    laddrs
        .set(
            2 * MAX_LADDRS_PER_GROUP,
            LocalAddr {
                addr: words("2001:db8::200".parse().expect("fixture setup")),
                family: family::IPV6,
                pad: [0; 3],
            },
            0,
        )
        .expect("fixture setup");

    let mut services: HashMap<_, ServiceKey, Service> =
        HashMap::try_from(ebpf.map_mut(maps::SERVICES).expect("fixture setup")).expect("fixture setup");
    let svc = |vip: &str, id: u32, method: Method, slots_len: u32| {
        let ip: IpAddr = vip.parse().expect("fixture setup");
        let key = ServiceKey {
            addr: words(ip),
            port: 80u16.to_be(),
            proto: 6,
            family: if ip.is_ipv4() { family::IPV4 } else { family::IPV6 },
        };
        let service = Service {
            id,
            slots_len,
            laddr_group: u32::from(method == Method::Fnat),
            method: method as u8,
            scheduler: Scheduler::RoundRobin as u8,
            ..Service::default()
        };
        (key, service)
    };
    for (key, service) in [
        svc("10.0.0.100", 1, Method::Nat, 1),
        svc("10.0.0.101", 2, Method::Dr, 1),
        svc("10.0.0.102", 3, Method::Tun, 1),
        svc("10.0.0.103", 4, Method::Fnat, 1),
        svc("2001:db8::100", 5, Method::Nat, 1),
        svc("10.0.0.104", 6, Method::Nat, 0),
        {
            let (key, service) = svc("2001:db8::103", 7, Method::Fnat, 1);
            (key, Service { laddr_group: 2, ..service })
        },
    ] {
        services.insert(key, service, 0).expect("fixture setup");
    }
}

/// The frame the LB sends to TUN service 10.0.0.102's real server (real 3, 10.0.0.13) for
/// `inner`: an outer IPv4 header from 10.0.0.1, protocol 4, no DF, id 0 (as the program
/// writes them), from `lb_mac` to the real's MAC.
pub fn tunnelled_to_real3(inner: &crate::packet::Packet, lb_mac: [u8; 6]) -> Vec<u8> {
    use pnet_packet::ipv4::{self, Ipv4Packet};
    let inner = inner.ip_bytes();
    let src = "10.0.0.1".parse().expect("an address");
    let mut outer =
        crate::packet::Packet::raw(src, "10.0.0.13".parse().expect("an address"), 4, &inner).ip_bytes();
    outer[6] = 0;
    outer[4..6].copy_from_slice(&[0, 0]);
    outer[10..12].copy_from_slice(&[0, 0]);
    let csum = ipv4::checksum(&Ipv4Packet::new(&outer).expect("an IPv4 header"));
    outer[10..12].copy_from_slice(&csum.to_be_bytes());
    crate::packet::ethernet(REAL3_MAC, lb_mac, pnet_packet::ethernet::EtherTypes::Ipv4, &outer)
}
