//! VIPs on a lease: an address lbd installs with a lifetime disappears by itself when nobody
//! renews it (the fix for acassen/keepalived#2361), and renewing it keeps it in place.
#![expect(clippy::unwrap_used, reason = "tests: a failed step is a failed test")]

use std::{net::IpAddr, time::Duration};

use lb_daemon::netlink::{
    Netlink,
    addr::{InterfaceAddress, Lifetime, Scope},
};
use lb_tests::lab::{Lab, Netns, wait_until};

/// Runs `f` with a Netlink handle bound to `ns`.
fn in_ns<R: Send>(ns: &Netns, f: impl AsyncFnOnce(Netlink) -> R + Send) -> R {
    ns.enter(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let netlink = Netlink::connect().unwrap();
            f(netlink).await
        })
    })
}

fn has_address(ns: &Netns, addr: &str) -> bool {
    ns.ip(&["-br", "addr", "show", "dev", "eth0"])
        .split_whitespace()
        .any(|word| word.split('/').next() == Some(addr))
}

#[test]
fn leased_vips_expire_unless_renewed_and_forever_ones_stay() {
    let mut lab = Lab::new();
    let a = lab.netns("a");
    let b = lab.netns("b");
    lab.veth(&a, "eth0", &b, "eth0");

    let vip = |addr: &str, prefix_len| InterfaceAddress {
        ifindex: 0,
        addr: addr.parse::<IpAddr>().unwrap(),
        prefix_len,
        broadcast: None,
        scope: Scope::Global,
        label: None,
    };
    let (v4, v6, permanent) = (vip("10.77.0.100", 24), vip("2001:db8:77::100", 64), vip("10.77.0.200", 32));
    let ifindex = in_ns(&a, async |nl| {
        let link = nl.link_by_name("eth0").await.unwrap();
        assert!(matches!(
            nl.link_by_name("nope0").await,
            Err(lb_daemon::netlink::NetlinkError::NoSuchLink(_))
        ));
        let lease = Lifetime::Lease(Duration::from_secs(2));
        for address in [&v4, &v6] {
            nl.add_address(&InterfaceAddress { ifindex: link.index, ..address.clone() }, lease)
                .await
                .unwrap();
        }
        nl.add_address(&InterfaceAddress { ifindex: link.index, ..permanent.clone() }, Lifetime::Forever)
            .await
            .unwrap();
        let installed = nl.addresses(link.index).await.unwrap();
        let v4_installed = installed.iter().find(|i| i.addr == v4.addr).unwrap();
        assert!(v4_installed.valid_left.is_some_and(|s| s <= 2), "lease not set: {v4_installed:?}");
        let permanent_installed = installed.iter().find(|i| i.addr == permanent.addr).unwrap();
        assert_eq!(permanent_installed.valid_left, None);
        link.index
    });
    assert!(has_address(&a, "10.77.0.100") && has_address(&a, "2001:db8:77::100"));

    // Renewing every 500 ms for 3 s keeps the 2 s lease alive past its first expiry.
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(500));
        in_ns(&a, async |nl| {
            nl.add_address(
                &InterfaceAddress { ifindex, ..v4.clone() },
                Lifetime::Lease(Duration::from_secs(2)),
            )
            .await
            .unwrap();
        });
        assert!(has_address(&a, "10.77.0.100"), "renewed VIP vanished");
    }

    // Without renewal, both leased VIPs go away by themselves; the permanent one stays.
    wait_until(Duration::from_secs(5), "the unrenewed leases to expire", || {
        !has_address(&a, "10.77.0.100") && !has_address(&a, "2001:db8:77::100")
    });
    assert!(has_address(&a, "10.77.0.200"));

    // Deleting reports whether the address was there.
    in_ns(&a, async |nl| {
        let permanent = InterfaceAddress { ifindex, ..permanent.clone() };
        assert!(nl.delete_address(&permanent).await.unwrap());
        assert!(!nl.delete_address(&permanent).await.unwrap());
    });
    assert!(!has_address(&a, "10.77.0.200"));
}
