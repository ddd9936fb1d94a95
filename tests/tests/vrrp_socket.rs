//! VRRP sockets through real interfaces: lbd's sockets exchange adverts over IPv4 and IPv6, and
//! decode what a real keepalived 2.2.7 sends.
#![expect(clippy::unwrap_used, reason = "tests: a failed step is a failed test")]

mod vrrp_kit;

use std::{
    net::{IpAddr, Ipv4Addr},
    num::NonZeroU8,
    time::Duration,
};

use lb_daemon::vrrp::{
    packet::{
        AddressList, AuthType, MaxAdverInt, VRRP_MCAST_GROUP_V4, VRRP_MCAST_GROUP_V6, VersionFields, Vrid,
        VrrpAdvert,
    },
    socket::{Received, VrrpSocket},
};
use lb_tests::lab::{Lab, Netns};

/// Runs `f` on a tokio runtime on a thread inside `ns`.
fn in_ns<R: Send>(ns: &Netns, f: impl AsyncFnOnce() -> R + Send) -> R {
    ns.enter(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f()))
}

fn ifindex(ns: &Netns, interface: &str) -> u32 {
    let out = ns.ip(&["-o", "link", "show", interface]);
    out.split(':').next().unwrap().trim().parse().unwrap()
}

async fn next_advert(socket: &VrrpSocket, timeout: Duration) -> Received {
    tokio::time::timeout(timeout, socket.recv()).await.expect("no advert before the timeout").unwrap()
}

#[test]
fn lbd_sockets_exchange_adverts_over_ipv4_and_ipv6() {
    let mut lab = Lab::new();
    let a = lab.netns("a");
    let b = lab.netns("b");
    lab.veth(&a, "eth0", &b, "eth0");
    a.addr("eth0", "10.78.0.1/24");
    b.addr("eth0", "10.78.0.2/24");
    let (a_idx, b_idx) = (ifindex(&a, "eth0"), ifindex(&b, "eth0"));
    let (a_ll, b_ll) = (a.link_local("eth0"), b.link_local("eth0"));

    let v4 = VrrpAdvert {
        vrid: Vrid::new(78).unwrap(),
        priority: 150,
        fields: VersionFields::V2 {
            auth_type: AuthType::SimpleText,
            adver_int: NonZeroU8::new(1).unwrap(),
            auth_data: *b"secret78",
        },
        addresses: AddressList::V4(vec![Ipv4Addr::new(10, 78, 0, 100)]),
    };
    let v6 = VrrpAdvert {
        vrid: Vrid::new(78).unwrap(),
        priority: 100,
        fields: VersionFields::V3 { max_adver_int: MaxAdverInt::from_centiseconds(10).unwrap() },
        addresses: AddressList::V6(vec!["fe80::78:100".parse().unwrap(), "fd78::100".parse().unwrap()]),
    };

    // Receivers first (joined to the groups), then senders.
    std::thread::scope(|scope| {
        let receiver = scope.spawn(|| {
            in_ns(&b, async || {
                let r4 = VrrpSocket::open_v4(
                    "eth0",
                    b_idx,
                    Ipv4Addr::new(10, 78, 0, 2),
                    Some(VRRP_MCAST_GROUP_V4),
                    false,
                )
                .unwrap();
                let r6 = VrrpSocket::open_v6("eth0", b_idx, b_ll, Some(VRRP_MCAST_GROUP_V6)).unwrap();
                (
                    next_advert(&r4, Duration::from_secs(5)).await,
                    next_advert(&r6, Duration::from_secs(5)).await,
                )
            })
        });
        std::thread::sleep(Duration::from_millis(300));
        in_ns(&a, async || {
            let s4 = VrrpSocket::open_v4("eth0", a_idx, Ipv4Addr::new(10, 78, 0, 1), None, false).unwrap();
            let s6 = VrrpSocket::open_v6("eth0", a_idx, a_ll, None).unwrap();
            s4.send(&v4, VRRP_MCAST_GROUP_V4.into(), None, false).await.unwrap();
            s6.send(&v6, VRRP_MCAST_GROUP_V6.into(), None, false).await.unwrap();
        });
        let (got4, got6) = receiver.join().unwrap();
        assert_eq!(got4.source, IpAddr::from([10, 78, 0, 1]));
        assert_eq!(got4.destination, IpAddr::from(VRRP_MCAST_GROUP_V4));
        assert_eq!(got4.hop_limit, 255);
        assert_eq!(got4.advert.unwrap(), v4);
        assert_eq!(got6.source, IpAddr::from(a_ll));
        assert_eq!(got6.destination, IpAddr::from(VRRP_MCAST_GROUP_V6));
        assert_eq!(got6.hop_limit, 255);
        assert_eq!(got6.advert.unwrap(), v6);
    });
}

/// A keepalived.conf for one VRRP instance.
fn keepalived_conf(version: u8, advert_int: &str, auth: &str, vip: &str) -> String {
    format!(
        "global_defs {{\n  router_id ka\n  vrrp_version {version}\n}}\n\
         vrrp_instance VI_1 {{\n  state MASTER\n  interface eth0\n  virtual_router_id 79\n  priority 150\n  \
         advert_int {advert_int}\n{auth}  virtual_ipaddress {{\n    {vip}\n  }}\n}}\n"
    )
}

#[test]
fn lbd_decodes_real_keepalived_adverts() {
    let mut lab = Lab::new();
    let ka = lab.netns("ka");
    let me = lab.netns("lbd");
    lab.veth(&ka, "eth0", &me, "eth0");
    ka.addr("eth0", "10.79.0.1/24");
    me.addr("eth0", "10.79.0.2/24");
    let idx = ifindex(&me, "eth0");
    let me_ll = me.link_local("eth0");

    let cases = [
        (
            "v2-pass",
            keepalived_conf(
                2,
                "1",
                "  authentication {\n    auth_type PASS\n    auth_pass secret79\n  }\n",
                "10.79.0.100/24",
            ),
        ),
        ("v3", keepalived_conf(3, "0.1", "", "10.79.0.100/24")),
        ("v3-ipv6", keepalived_conf(3, "0.1", "", "fe80::79:100/64\n    fd79::100/64")),
    ];
    for (name, config) in cases {
        let mut keepalived = vrrp_kit::start_keepalived(&lab, &ka, name, &config);
        let received = in_ns(&me, async || {
            let socket = if name.ends_with("ipv6") {
                VrrpSocket::open_v6("eth0", idx, me_ll, Some(VRRP_MCAST_GROUP_V6)).unwrap()
            } else {
                VrrpSocket::open_v4(
                    "eth0",
                    idx,
                    Ipv4Addr::new(10, 79, 0, 2),
                    Some(VRRP_MCAST_GROUP_V4),
                    false,
                )
                .unwrap()
            };
            // keepalived starts in BACKUP and takes over after Master_Down_Interval.
            let first = next_advert(&socket, Duration::from_secs(8)).await;
            // Stopping keepalived sends a priority-0 advert (RFC 5798 §6.4.3): decode it too.
            keepalived.signal(nix::sys::signal::Signal::SIGTERM);
            loop {
                let next = next_advert(&socket, Duration::from_secs(3)).await;
                let advert = next.advert.unwrap_or_else(|e| panic!("{name}: advert did not decode: {e}"));
                if advert.priority == 0 {
                    break;
                }
            }
            first
        });
        let advert =
            received.advert.unwrap_or_else(|e| panic!("{name}: keepalived's advert did not decode: {e}"));
        assert_eq!(received.hop_limit, 255, "{name}");
        assert_eq!(advert.vrid.get(), 79, "{name}");
        assert_eq!(advert.priority, 150, "{name}");
        match (name, &advert.fields, &advert.addresses) {
            ("v2-pass", VersionFields::V2 { auth_type, auth_data, adver_int }, AddressList::V4(vips)) => {
                assert_eq!(*auth_type, AuthType::SimpleText);
                assert_eq!(auth_data, b"secret79");
                assert_eq!(adver_int.get(), 1);
                assert_eq!(vips, &[Ipv4Addr::new(10, 79, 0, 100)]);
            }
            ("v3", VersionFields::V3 { max_adver_int }, AddressList::V4(vips)) => {
                assert_eq!(max_adver_int.centiseconds(), 10);
                assert_eq!(vips, &[Ipv4Addr::new(10, 79, 0, 100)]);
            }
            ("v3-ipv6", VersionFields::V3 { .. }, AddressList::V6(vips)) => {
                assert_eq!(vips.len(), 2);
                assert!(matches!(received.source, IpAddr::V6(s) if s.segments()[0] == 0xfe80));
            }
            other => panic!("unexpected advert for {name}: {other:?}"),
        }
        assert!(
            keepalived.wait(Duration::from_secs(10)).success(),
            "{name}: keepalived failed:\n{}",
            keepalived.log()
        );
    }
}
