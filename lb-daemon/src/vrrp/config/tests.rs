//! The mapping from keepalived.conf to what the runtime runs, on a fake host.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;
use crate::config::{LoadOptions, parse_str};

fn host() -> HostView {
    let link = |index, name: &str, mac: u8| Link {
        index,
        name: name.into(),
        up: true,
        running: true,
        loopback: false,
        mac: vec![2, 0, 0, 0, 0, mac],
        mtu: 1500,
        parent: None,
        controller: None,
        kind: None,
    };
    HostView {
        links: vec![
            link(2, "eth0", 1),
            link(3, "eth1", 2),
            link(4, "vrrp.51", 3),
            link(5, "v6mac", 4),
            link(6, "blue", 5),
        ],
        addresses: [
            (
                2,
                vec![
                    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100)),
                    IpAddr::V6("fe80::1".parse().unwrap_or(Ipv6Addr::UNSPECIFIED)),
                ],
            ),
            (3, vec![IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1))]),
            (5, vec![IpAddr::V6("fe80::2".parse().unwrap_or(Ipv6Addr::UNSPECIFIED))]),
        ]
        .into_iter()
        .collect(),
        tentative: Default::default(),
    }
}

fn planned(text: &str) -> (Plan, Vec<PlanError>) {
    let loaded =
        parse_str("test.conf", text, &LoadOptions { config_id: Some("t".into()), ..LoadOptions::default() });
    plan(&loaded.config, &host())
}

/// `VI_1` on eth0 (VRID 51, VIP 10.0.0.100/24) with `extra` lines.
fn instance(extra: &str) -> String {
    format!(
        "vrrp_instance VI_1 {{\n interface eth0\n virtual_router_id 51\n{extra}virtual_ipaddress {{\n  \
         10.0.0.100/24\n }}\n}}\n"
    )
}

fn only(text: &str) -> InstancePlan {
    let (plan, errors) = planned(text);
    assert_eq!(plan.instances.len(), 1, "errors: {errors:?}");
    plan.instances.into_iter().next().unwrap_or_else(|| unreachable!())
}

#[test]
fn a_plain_instance_maps_to_keepalived_defaults() {
    let plan = only(
        "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n priority 150\n advert_int 1\n\
         virtual_ipaddress {\n  10.0.0.100/24\n  10.0.0.101 dev eth1 label eth1:vip\n }\n}\n",
    );
    assert_eq!(plan.name, "VI_1");
    assert_eq!(plan.interface.name, "eth0");
    let p = &plan.params;
    assert_eq!((p.vrid.get(), p.version, p.priority), (51, Version::V2, 150));
    // The VIP left on the interface by a killed daemon is never taken as the source.
    assert_eq!(p.source_address, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    assert_eq!(
        p.addresses,
        AddressList::V4(vec![Ipv4Addr::new(10, 0, 0, 100), Ipv4Addr::new(10, 0, 0, 101)])
    );
    assert_eq!((p.garp_master_repeat, p.garp_master_delay), (5, Some(Duration::from_secs(5))));
    assert_eq!(p.preempt, Preempt::On);
    assert_eq!(plan.transport, Transport::Multicast { group: IpAddr::V4(VRRP_MCAST_GROUP_V4) });
    assert_eq!(plan.vips[0].address.prefix_len, 24);
    assert_eq!((plan.vips[0].address.ifindex, plan.vips[0].mac), (2, [2, 0, 0, 0, 0, 1]));
    assert_eq!(plan.vips[1].address.ifindex, 3);
    assert_eq!(plan.vips[1].address.label.as_deref(), Some("eth1:vip"));
    assert_eq!(
        plan.tracking,
        [TrackEntry { object: TrackedObject::Interface("eth0".into()), weight: 0, reverse: false }]
    );
}

#[test]
fn unicast_v3_with_nopreempt_and_pass_ignored() {
    let plan = only(
        "vrrp_instance VI_2 {\n interface eth0\n virtual_router_id 52\n version 3\n advert_int 0.1\n\
         nopreempt\n dont_track_primary\n unicast_src_ip 10.0.0.1\n unicast_peer {\n  10.0.0.2 min_ttl 250\n }\n\
         check_unicast_src\n virtual_ipaddress {\n  10.0.0.200\n }\n}\n",
    );
    assert_eq!(plan.params.version, Version::V3);
    assert_eq!(plan.params.advert_interval, Duration::from_millis(100));
    assert_eq!(plan.params.preempt, Preempt::Off);
    assert!(plan.tracking.is_empty(), "dont_track_primary");
    let Transport::Unicast { peers, check_source, old_checksum } = &plan.transport else {
        panic!("{:?}", plan.transport)
    };
    assert_eq!(*old_checksum, OldChecksum::Detect);
    assert!(*check_source);
    assert_eq!(peers[0].min_ttl, Some(250));
}

#[test]
fn ipv6_instances_use_the_link_local_source_and_ff02_12() {
    let plan = only(
        "vrrp_instance V6 {\n interface eth0\n virtual_router_id 53\n advert_int 0.5\n\
         virtual_ipaddress {\n  fe80::53:1/64\n  fd53::1/64\n }\n}\n",
    );
    assert_eq!(plan.params.version, Version::V3, "IPv6 is always v3");
    assert_eq!(plan.params.source_address, IpAddr::V6("fe80::1".parse().unwrap_or(Ipv6Addr::UNSPECIFIED)));
    assert_eq!(plan.transport, Transport::Multicast { group: IpAddr::V6(VRRP_MCAST_GROUP_V6) });
}

#[test]
fn an_ipv6_source_in_duplicate_address_detection_is_a_last_resort_and_pending() {
    let text = "vrrp_instance V6 {\n interface eth0\n virtual_router_id 53\n\
                virtual_ipaddress {\n  fd53::1/64\n }\n}\n";
    let loaded =
        parse_str("test.conf", text, &LoadOptions { config_id: Some("t".into()), ..LoadOptions::default() });
    let tentative = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1));
    let usable = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 9));
    let mut host = host();
    host.tentative.insert((2, tentative));
    // The only one: taken, pending.
    let (plan_, errors) = plan(&loaded.config, &host);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(plan_.instances[0].params.source_address, tentative);
    assert!(plan_.instances[0].source_pending);
    // A usable one after it comes first.
    host.addresses.entry(2).or_default().push(usable);
    let (plan_, _) = plan(&loaded.config, &host);
    assert_eq!(plan_.instances[0].params.source_address, usable);
    assert!(!plan_.instances[0].source_pending);
}

#[test]
fn tracking_weights_and_sync_groups() {
    let (plan, errors) = planned(
        "vrrp_script chk {\n script \"/bin/true\"\n interval 0.5\n weight -20\n fall 2\n}\n\
         track_file tf {\n file /tmp/lbd-none\n}\n\
         vrrp_sync_group G {\n group {\n  A\n  B\n }\n notify /bin/true\n}\n\
         vrrp_instance A {\n interface eth0\n virtual_router_id 60\n track_script {\n  chk\n }\n\
         virtual_ipaddress {\n  10.0.0.60\n }\n}\n\
         vrrp_instance B {\n interface eth1\n virtual_router_id 61\n track_interface {\n  eth0 weight 10\n }\n\
         virtual_ipaddress {\n  10.1.0.61\n }\n}\n\
         vrrp_instance C {\n interface eth0\n virtual_router_id 62\n track_script {\n  chk weight 5 reverse\n }\n\
         track_file {\n  tf weight 3\n }\n virtual_ipaddress {\n  10.0.0.62\n }\n}\n",
    );
    assert_eq!(plan.instances.len(), 3);
    assert_eq!(plan.groups.len(), 1);
    assert_eq!(plan.groups[0].members, [0, 1]);
    assert_eq!(plan.instances[0].group, Some(0));
    assert_eq!(plan.scripts.len(), 1, "one script, tracked twice");
    assert_eq!(plan.scripts[0].fall, 2);
    assert_eq!(plan.scripts[0].timeout, Duration::from_millis(500), "timeout defaults to the interval");
    // In a sync group without sync_group_tracking_weight, weights become 0 (FAULT), with a warning.
    assert!(plan.instances[0].tracking.iter().all(|t| t.weight == 0));
    assert!(plan.instances[1].tracking.iter().all(|t| t.weight == 0));
    assert!(
        errors.iter().any(|e| e.instance == "A" && e.message.contains("ignoring weight -20")),
        "{errors:?}"
    );
    let c = &plan.instances[2].tracking;
    assert!(c.contains(&TrackEntry { object: TrackedObject::Script(0), weight: 5, reverse: true }));
    assert!(c.contains(&TrackEntry { object: TrackedObject::File(0), weight: 3, reverse: false }));
}

#[test]
fn broken_instances_are_left_out_with_their_name() {
    let (plan, errors) = planned(
        "vrrp_instance NOIF {\n interface eth9\n virtual_router_id 70\n virtual_ipaddress {\n  10.9.0.1\n }\n}\n\
         vrrp_instance NOVRID {\n interface eth0\n virtual_ipaddress {\n  10.0.0.71\n }\n}\n\
         vrrp_instance OK {\n interface eth0\n virtual_router_id 72\n virtual_ipaddress {\n  10.0.0.72\n }\n}\n",
    );
    assert_eq!(plan.instances.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["OK"]);
    assert!(errors.iter().any(|e| e.instance == "NOIF" && e.message.contains("eth9")), "{errors:?}");
    assert!(errors.iter().any(|e| e.instance == "NOVRID"), "{errors:?}");
}

#[test]
fn virtual_routes_map_to_rtnetlink_routes() {
    let plan = only(
        "vrrp_instance R {\n interface eth0\n virtual_router_id 80\n virtual_ipaddress {\n  10.0.0.80\n }\n\
         virtual_routes {\n  192.168.80.0/24 via 10.0.0.254\n  blackhole 192.168.81.0/24\n  192.168.82.0/24 dev eth1 table 100 metric 7\n }\n}\n",
    );
    assert_eq!(plan.routes.len(), 3);
    assert_eq!(plan.routes[0].gateway, Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 254))));
    assert_eq!(plan.routes[0].oif, None);
    assert_eq!(plan.routes[1].kind, RouteKind::Blackhole);
    assert_eq!((plan.routes[2].oif, plan.routes[2].table, plan.routes[2].metric), (Some(3), 100, Some(7)));
    assert_eq!(plan.routes[2].protocol, RTPROT_KEEPALIVED);
}

#[test]
fn use_vmac_puts_vips_and_adverts_on_the_macvlan() {
    let config = "vrrp_instance M {\n interface eth0\n virtual_router_id 51\n use_vmac\n\
                  virtual_ipaddress {\n  10.0.0.51/24\n }\n}\n";
    let loaded = parse_str("t.conf", config, &LoadOptions::default());
    assert_eq!(
        vmacs_wanted(&loaded.config),
        [VmacWanted {
            name: "vrrp.51".into(),
            parent: "eth0".into(),
            mac: [0, 0, 0x5e, 0, 1, 51],
            ipv6: false,
            ipvlan: None,
        }]
    );
    let plan = only(config);
    assert_eq!(plan.interface.name, "vrrp.51");
    assert_eq!(plan.base_interface.name, "eth0");
    assert_eq!(plan.vips[0].address.ifindex, 4);
    assert_eq!(plan.params.source_address, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), "the parent's address");
    // vmac_prefix replaces "vrrp" in the default name; a name of the instance's own wins.
    let prefixed = parse_str(
        "t.conf",
        &format!("global_defs {{\n vmac_prefix vk\n}}\n{config}"),
        &LoadOptions::default(),
    );
    assert_eq!(vmacs_wanted(&prefixed.config)[0].name, "vk.51");
    let named = config.replace("use_vmac\n", "use_vmac mine\n");
    let prefixed = parse_str(
        "t.conf",
        &format!("global_defs {{\n vmac_prefix vk\n}}\n{named}"),
        &LoadOptions::default(),
    );
    assert_eq!(vmacs_wanted(&prefixed.config)[0].name, "mine");
}

#[test]
fn ipv6_use_vmac_has_the_v6_mac_and_sends_from_the_macvlan_link_local() {
    let config = "vrrp_instance M {\n interface eth0\n virtual_router_id 52\n use_vmac v6mac\n\
                  virtual_ipaddress {\n  2001:db8::52/64\n }\n}\n";
    let loaded = parse_str("t.conf", config, &LoadOptions::default());
    assert_eq!(
        vmacs_wanted(&loaded.config),
        [VmacWanted {
            name: "v6mac".into(),
            parent: "eth0".into(),
            mac: [0, 0, 0x5e, 0, 2, 52],
            ipv6: true,
            ipvlan: None,
        }]
    );
    let plan = only(config);
    assert_eq!(plan.interface.name, "v6mac");
    assert_eq!(plan.vmac.as_ref().map(|v| v.mac), Some([0, 0, 0x5e, 0, 2, 52]));
    assert_eq!(plan.vips[0].address.ifindex, 5);
    assert_eq!(
        plan.params.source_address,
        IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2)),
        "the macvlan's link-local"
    );
}

#[test]
fn use_ipvlan_puts_vips_and_adverts_on_the_ipvlan_which_sends_from_its_address() {
    let config = instance(" use_ipvlan 10.0.0.9/24 private\n");
    let loaded = parse_str("t.conf", &config, &LoadOptions::default());
    assert!(loaded.is_clean(), "{:?}", loaded.diagnostics);
    let flag = IpvlanFlag::Private;
    let address = Some(model::IpPrefix { addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)), len: 24 });
    assert_eq!(
        vmacs_wanted(&loaded.config),
        [VmacWanted {
            name: "vrrp.51".into(),
            parent: "eth0".into(),
            mac: [0; 6],
            ipv6: false,
            ipvlan: Some(IpvlanWanted { flag, address }),
        }]
    );
    let (plan, errors) = planned(&config);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(plan.firewall.is_none(), "keepalived's VMAC firewall rules are not for ipvlans");
    let plan = &plan.instances[0];
    assert_eq!(plan.interface.name, "vrrp.51");
    assert_eq!(plan.vips[0].address.ifindex, 4);
    let vmac = plan.vmac.as_ref().map(|v| (v.ipvlan, v.mac, v.xmit_base));
    assert_eq!(vmac, Some((true, [2, 0, 0, 0, 0, 1], false)), "an ipvlan with its parent's MAC");
    assert_eq!(plan.params.source_address, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)), "the ipvlan's address");
    // A name of its own, bridge by default; mcast_src_ip wins over the ipvlan's address.
    let named = instance(" use_ipvlan v6mac\n mcast_src_ip 10.0.0.1\n");
    let loaded = parse_str("t.conf", &named, &LoadOptions::default());
    let wanted = vmacs_wanted(&loaded.config);
    assert_eq!(wanted[0].name, "v6mac");
    assert_eq!(wanted[0].ipvlan, Some(IpvlanWanted { flag: IpvlanFlag::Bridge, address: None }));
    let plan = only(&named);
    assert_eq!(
        (plan.interface.index, plan.params.source_address),
        (5, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))
    );
}

#[test]
fn use_ipvlan_gives_way_to_use_vmac_and_drops_an_address_of_the_other_family() {
    let both = parse_str("t.conf", &instance(" use_vmac\n use_ipvlan\n"), &LoadOptions::default());
    let wanted = vmacs_wanted(&both.config);
    assert_eq!(wanted.len(), 1);
    assert!(wanted[0].ipvlan.is_none(), "{wanted:?}");
    assert!(
        both.diagnostics.iter().any(|d| d.to_string().contains("ignoring use_ipvlan")),
        "{:?}",
        both.diagnostics
    );
    let v6 = parse_str("t.conf", &instance(" use_ipvlan 2001:db8::9/64\n"), &LoadOptions::default());
    assert_eq!(vmacs_wanted(&v6.config)[0].ipvlan.and_then(|i| i.address), None);
    assert!(v6.diagnostics.iter().any(|d| d.to_string().contains("MUST match")), "{:?}", v6.diagnostics);
}

#[test]
fn vrf_without_an_interface_binds_to_the_vrf_device_for_unicast_only() {
    let unicast = "vrrp_instance U {\n vrf blue\n virtual_router_id 9\n unicast_src_ip 10.0.0.1\n \
                   unicast_peer {\n  10.0.0.2\n }\n virtual_ipaddress {\n  10.0.0.9/24 dev eth0\n }\n}\n";
    let plan = only(unicast);
    assert_eq!(plan.interface.name, "blue", "the advert socket's device");
    assert_eq!(plan.vips[0].address.ifindex, 2);
    // Multicast needs an interface.
    let multicast = unicast.replace(" unicast_peer {\n  10.0.0.2\n }\n", "");
    let (plan, errors) = planned(&multicast);
    assert!(plan.instances.is_empty());
    assert!(errors[0].message.contains("needs unicast_peer"), "{errors:?}");
    // keepalived ignores vrf next to an interface.
    let loaded = parse_str("t.conf", &instance(" vrf blue\n"), &LoadOptions::default());
    assert_eq!(loaded.config.vrrp_instances[0].vrf, None);
    assert!(
        loaded.diagnostics.iter().any(|d| d.to_string().contains("Cannot specify VRF")),
        "{:?}",
        loaded.diagnostics
    );
    assert_eq!(only(&instance(" vrf blue\n")).interface.name, "eth0");
}

#[test]
fn strict_mode_applies_keepalived_rules() {
    let base =
        "global_defs {\n vrrp_strict\n}\nvrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n";
    // Unicast peers and a missing VIP list keep the instance from running.
    let (plan, errors) = planned(&format!(
        "{base} priority 100\n unicast_peer {{\n  10.0.0.2\n }}\n virtual_ipaddress {{\n  10.0.0.100\n }}\n}}\n"
    ));
    assert!(plan.instances.is_empty());
    assert!(errors.iter().any(|e| e.message.contains("Unicast peers are not supported in strict mode")));
    let (plan, errors) = planned(&format!("{base} priority 100\n}}\n"));
    assert!(plan.instances.is_empty());
    assert!(errors.iter().any(|e| e.message.contains("No VIP specified")));

    // The rest is reset with a warning naming the line, as keepalived does.
    let text = format!(
        "{base} state MASTER\n priority 100\n preempt_delay 10\n garp_lower_prio_repeat 3\n\
         higher_prio_send_advert\n lower_prio_no_advert false\n\
         authentication {{\n  auth_type PASS\n  auth_pass secret\n }}\n virtual_ipaddress {{\n  10.0.0.100\n }}\n}}\n"
    );
    let loaded =
        parse_str("test.conf", &text, &LoadOptions { config_id: Some("t".into()), ..LoadOptions::default() });
    for (expected, line) in [
        ("State MASTER must match being address owner", 7),
        ("preempt_delay", 9),
        ("Strict mode requires no repeat garps", 10),
        ("higher_prio_send_advert to be clear", 11),
        ("Strict mode requires no lower priority advert", 12),
        ("Strict mode does not support authentication", 13),
    ] {
        assert!(
            loaded.diagnostics.iter().any(|d| d.message.contains(expected) && d.line == line),
            "{expected} at line {line}: {:?}",
            loaded.diagnostics
        );
    }
    let (planned, _) = super::plan(&loaded.config, &host());
    let p = &planned.instances[0].params;
    assert_eq!(p.initial_state, InitialState::Backup, "state MASTER only for the owner");
    assert_eq!(p.preempt, Preempt::On);
    assert_eq!(p.authentication, Authentication::None);
    assert_eq!(p.garp_lower_prio_repeat, 0);
    assert!(p.lower_prio_no_advert && !p.higher_prio_send_advert);

    // The owner keeps state MASTER; without strict mode nothing is reset.
    let owner =
        only(&format!("{base} state MASTER\n priority 255\n virtual_ipaddress {{\n  10.0.0.100\n }}\n}}\n"));
    assert_eq!(owner.params.initial_state, InitialState::Master);
    let lax = only(
        "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n state MASTER\n priority 100\n\
         preempt_delay 10\n higher_prio_send_advert\n virtual_ipaddress {\n  10.0.0.100\n }\n}\n",
    );
    assert_eq!(lax.params.initial_state, InitialState::Master);
    assert_eq!(lax.params.preempt, Preempt::Delayed(Duration::from_secs(10)));
    assert!(!lax.params.lower_prio_no_advert && lax.params.higher_prio_send_advert);
}

#[test]
fn static_addresses_routes_and_rules_default_to_eth0_and_unknown_devices_are_reported() {
    let text = "static_ipaddress {\n 192.168.5.1/24\n 192.168.6.1/24 dev eth1 label eth1:st\n 192.168.7.1/24 dev nosuch\n}\n\
                static_routes {\n 192.168.50.0/24 via 10.0.0.254\n 192.168.51.0/24 dev eth1 table 100\n}\n\
                static_rules {\n from 192.168.50.0/24 table 100 preference 10\n to fd00::/8 fwmark 0x10/0xff lookup main\n}\n";
    let loaded = parse_str("t.conf", text, &LoadOptions::default());
    let (statics, errors) = static_plan(&loaded.config, &host());
    let placed: Vec<_> =
        statics.addresses.iter().map(|v| (v.address.addr.to_string(), v.address.ifindex)).collect();
    assert_eq!(placed, [("192.168.5.1".to_owned(), 2), ("192.168.6.1".to_owned(), 3)]);
    assert_eq!(statics.addresses[1].address.label.as_deref(), Some("eth1:st"));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].message.contains("nosuch"), "{errors:?}");
    assert_eq!(statics.routes.len(), 2);
    assert_eq!(statics.routes[0].gateway, Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 254))));
    assert_eq!((statics.routes[1].oif, statics.routes[1].table), (Some(3), 100));
    assert_eq!(statics.rules.len(), 2, "{errors:?}");
    assert_eq!(statics.rules[0].from, Some((IpAddr::V4(Ipv4Addr::new(192, 168, 50, 0)), 24)));
    assert_eq!(
        (statics.rules[0].table, statics.rules[0].preference, statics.rules[0].ipv6),
        (100, Some(10), false)
    );
    assert_eq!(
        (statics.rules[1].table, statics.rules[1].fwmark, statics.rules[1].ipv6),
        (254, Some((16, Some(255))), true)
    );

    // Without eth0 or a default_interface, an address without dev has nowhere to go.
    let bare = HostView { links: host().links.into_iter().filter(|l| l.name != "eth0").collect(), ..host() };
    let (statics, errors) = static_plan(&loaded.config, &bare);
    assert_eq!(statics.addresses.len(), 1);
    assert!(errors.iter().any(|e| e.message.contains("no dev")), "{errors:?}");
}

#[test]
fn new_keywords_map_onto_the_plan() {
    // vrrp_min_garp: one gratuitous ARP, no second burst; an instance's own setting wins.
    let min = only(&format!("global_defs {{\n vrrp_min_garp\n}}\n{}", instance("")));
    assert_eq!((min.params.garp_master_repeat, min.params.garp_master_delay), (1, None));
    let own = only(&format!("global_defs {{\n vrrp_min_garp\n}}\n{}", instance(" garp_master_repeat 3\n")));
    assert_eq!(own.params.garp_master_repeat, 3);
    // unicast_ttl applies to unicast instances only (keepalived resets it otherwise).
    let unicast = only(&instance(" unicast_ttl 64\n unicast_peer {\n  10.0.0.2\n }\n"));
    assert_eq!(unicast.unicast_ttl, 64);
    assert_eq!(only(&instance(" unicast_ttl 64\n")).unicast_ttl, 255);
    // garp_extra_if: the instance's, else the global one; 0 turns it off.
    let extra = only(&format!("global_defs {{\n vrrp_garp_extra_if 100\n}}\n{}", instance("")));
    assert_eq!(extra.garp_extra_if.map(|g| (g.all, g.interval)), Some((false, Duration::from_secs(100))));
    let off =
        only(&format!("global_defs {{\n vrrp_garp_extra_if 100\n}}\n{}", instance(" garp_extra_if 0\n")));
    assert_eq!(off.garp_extra_if, None);
    // virtual_rules become rules; the VIPs' default interface is kept for garp_extra_if.
    let rules = only(&instance(" virtual_rules {\n  from 192.168.1.0/24 table 100\n }\n"));
    assert_eq!(rules.rules.len(), 1);
    assert_eq!(
        (rules.rules[0].from, rules.rules[0].table),
        (Some(("192.168.1.0".parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), 24)), 100)
    );
    assert_eq!(rules.vip_interface, 2);
    // garp_group: its interfaces share its pauses; unknown interfaces are reported.
    let (plan, errors) = planned(&format!(
        "global_defs {{\n vrrp_gna_interval 0.2\n}}\ngarp_group {{\n garp_interval 0.5\n interfaces {{\n  eth0\n  \
         eth1\n  nope0\n }}\n}}\n{}",
        instance("")
    ));
    assert_eq!(plan.garp_pacing.gna_interval, Duration::from_millis(200));
    assert_eq!(plan.garp_pacing.groups.get(&2), Some(&(0, Duration::from_millis(500), Duration::ZERO)));
    assert_eq!(plan.garp_pacing.groups.get(&3), plan.garp_pacing.groups.get(&2));
    assert!(errors.iter().any(|e| e.message.contains("nope0")), "{errors:?}");
}

#[test]
fn unicast_without_peers_falls_back_to_multicast_unless_unicast_fault_no_peer() {
    let no_peer = TrackEntry { object: TrackedObject::NoUnicastPeer, weight: 0, reverse: false };
    // unicast_src_ip alone: multicast from that address, with keepalived's deprecation warning.
    let (plan, errors) = planned(&instance(" unicast_src_ip 10.0.0.1\n"));
    assert!(matches!(plan.instances[0].transport, Transport::Multicast { .. }));
    assert!(!plan.instances[0].tracking.contains(&no_peer));
    assert!(errors.iter().any(|e| e.to_string().contains("Defaulting to multicast")), "{errors:?}");
    // unicast_fault_no_peer (alone or with a source): FAULT for good.
    for extra in [" unicast_fault_no_peer\n", " unicast_src_ip 10.0.0.1\n unicast_fault_no_peer\n"] {
        let (plan, errors) = planned(&instance(extra));
        assert!(plan.instances[0].tracking.contains(&no_peer), "{extra}");
        assert!(
            errors.iter().any(
                |e| e.to_string() == "(VI_1) Cannot use unicast without any peers - going to fault state"
            ),
            "{errors:?}"
        );
    }
    // With peers the keyword changes nothing.
    let unicast = only(&instance(" unicast_fault_no_peer\n unicast_peer {\n  10.0.0.2\n }\n"));
    assert!(matches!(unicast.transport, Transport::Unicast { .. }));
    assert!(!unicast.tracking.contains(&no_peer));
    let evaluation = crate::vrrp::track::evaluate(&[no_peer], &crate::vrrp::track::TrackStatus::default());
    assert!(evaluation.fault);
}

#[test]
fn track_src_ip_tracks_a_configured_source_only() {
    let instance = |extra: &str| instance(&format!(" track_src_ip\n{extra}"));
    let tracked = |plan: &InstancePlan| {
        plan.tracking
            .iter()
            .filter_map(|t| match t.object {
                TrackedObject::Address { ifindex, address } => Some((ifindex, address, t.weight)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    // A configured source (even one not on the interface yet) is tracked on eth0, weight 0.
    let configured = only(&instance(" mcast_src_ip 10.0.0.11\n"));
    assert_eq!(tracked(&configured), [(2, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 11)), 0)]);
    // keepalived ignores the keyword when the source comes from the interface.
    assert_eq!(tracked(&only(&instance(""))), []);
}

#[test]
fn no_accept_follows_strict_mode_accept_and_the_owner_and_brings_the_nftables_table() {
    let no_accept = |global: &str, extra: &str| {
        let (plan, errors) = planned(&format!("global_defs {{\n{global}}}\n{}", instance(extra)));
        assert_eq!(plan.instances.len(), 1, "{errors:?}");
        (plan.instances[0].no_accept, plan.firewall)
    };
    assert_eq!(no_accept("", ""), (false, None), "accept unless strict");
    let (blocks, firewall) = no_accept(" vrrp_strict\n", " version 3\n");
    assert!(blocks);
    let firewall = firewall.unwrap_or_else(|| panic!("no table"));
    assert_eq!((firewall.table.as_str(), firewall.priority, firewall.counters), ("keepalived", -1, false));
    assert!(firewall.link_local_by_index && !firewall.link_local_by_name);
    assert_eq!(no_accept(" vrrp_strict\n", " version 3\n accept\n"), (false, None));
    assert_eq!(no_accept(" vrrp_strict\n", " version 3\n priority 255\n"), (false, None), "the owner");
    let (blocks, firewall) = no_accept(
        " nftables lbdtab\n nftables_priority 7\n nftables_counters\n",
        " no_accept\n dont_track_primary\n",
    );
    let firewall = firewall.unwrap_or_else(|| panic!("no table"));
    assert!(blocks && firewall.counters && firewall.link_local_by_name && !firewall.link_local_by_index);
    assert_eq!((firewall.table.as_str(), firewall.priority), ("lbdtab", 7));
    let (_, firewall) = no_accept(" nftables_ifindex\n", " no_accept\n dont_track_primary\n");
    assert!(firewall.is_some_and(|f| f.link_local_by_index && !f.link_local_by_name));
}

#[test]
fn an_instance_s_receive_buffer_share_follows_keepalived_s_policy() {
    let share = |global: &str, extra: &str| {
        let (plan, errors) = planned(&format!("global_defs {{\n{global}}}\n{}", instance(extra)));
        assert_eq!(plan.instances.len(), 1, "{errors:?}");
        plan.instances[0].rx_buf_size
    };
    assert_eq!(share("", ""), 0, "the system's default");
    assert_eq!(share("", " kernel_rx_buf_size 50000\n"), 50_000);
    assert_eq!(share(" vrrp_rx_bufs_policy MTU\n", ""), 4_500);
    assert_eq!(share(" vrrp_rx_bufs_policy MTU\n vrrp_rx_bufs_multiplier 4\n", ""), 6_000);
    // keepalived 2.2.7, measured: a VRRPv2 advert with one VIP is 40 bytes (20 of IP header).
    assert_eq!(share(" vrrp_rx_bufs_policy ADVERT\n", ""), 120);
    assert_eq!(share(" vrrp_rx_bufs_policy ADVERT\n", " version 3\n"), 96);
    assert_eq!(share(" vrrp_rx_bufs_policy 100000\n", ""), 100_000);
    assert_eq!(share(" vrrp_rx_bufs_policy MTU\n", " kernel_rx_buf_size 7\n"), 7, "the instance's own wins");
}

#[test]
fn linkbeat_polls_the_interfaces_keepalived_polls() {
    let polled = |top: &str, extra: &str| planned(&format!("{top}{}", instance(extra))).0.linkbeat;
    assert!(polled("", "").is_empty());
    assert_eq!(polled("", " linkbeat_use_polling\n"), ["eth0"]);
    assert_eq!(polled("linkbeat_interfaces {\n eth1 ETHTOOL\n}\n", ""), ["eth1"]);
    assert_eq!(
        polled("linkbeat_use_polling\n", " track_interface {\n  eth1\n }\n"),
        ["eth0", "eth1"],
        "every tracked interface"
    );
}

#[test]
fn use_vmac_addr_wants_a_vmac_per_other_interface_named_as_keepalived() {
    let names = |global: &str, extra: &str| {
        let text = format!(
            "global_defs {{\n{global}}}\nvrrp_instance VI_1 {{\n interface eth0\n virtual_router_id 51\n{extra}\
             virtual_ipaddress {{\n  10.0.0.100/24\n  10.1.0.100/24 dev eth1\n  10.1.0.101/24 dev eth1\n }}\n}}\n"
        );
        let loaded = parse_str("t.conf", &text, &LoadOptions::default());
        address_vmacs(&loaded.config)
            .into_iter()
            .map(|(instance, dev, w)| (instance, dev, w.name, w.parent))
            .collect::<Vec<_>>()
    };
    let own = (None, None, "vrrp.51".to_owned(), "eth0".to_owned());
    let for_eth1 =
        |name: &str| (Some("VI_1".to_owned()), Some("eth1".to_owned()), name.to_owned(), "eth1".to_owned());
    assert_eq!(names("", " use_vmac\n"), std::slice::from_ref(&own));
    assert_eq!(names("", " use_vmac\n use_vmac_addr\n"), [own.clone(), for_eth1("vrrp1.51")]);
    assert_eq!(names(" vmac_addr_prefix vadr\n", " use_vmac\n use_vmac_addr\n"), [own, for_eth1("vadr.51")]);
    assert_eq!(names(" vmac_prefix v\n", " use_vmac_addr\n"), [for_eth1("v.51")]);
}
