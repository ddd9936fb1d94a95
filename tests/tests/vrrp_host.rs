//! keepalived keywords about how the VRRP child uses its host, shown in namespaces with a
//! running lbd: `nftables` / `no_accept` (the table keepalived 2.2.7 makes, compared rule for rule
//! with a real keepalived's, and traffic to a non-accepting master's VIP dropped).

mod vrrp_kit;

use std::time::Duration;

use lb_tests::lab::{Lab, Netns, wait_until};
use vrrp_kit::{VipWatch, config, instance, ip4, lan, start_keepalived, start_lbd, terminate};

/// Whether one ping from `from` to `to` is answered within a second.
fn pings(from: &Netns, to: &str) -> bool {
    from.exec("ping", &["-c", "1", "-W", "1", to]).status.success()
}

/// `nft list ruleset` in `ns`, with counter values and handles blanked out.
fn ruleset(ns: &Netns) -> String {
    let out = ns.exec("nft", &["list", "ruleset"]);
    assert!(out.status.success(), "nft list ruleset: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .map(|line| match line.find("counter packets") {
            Some(at) => {
                let rest = &line[at..];
                let verdict = rest.split_whitespace().skip(5).collect::<Vec<_>>().join(" ");
                format!("{}counter {verdict}", &line[..at])
            }
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The packets counted by the rule of `ns`'s `table ip keepalived` that drops `ip daddr @vips`.
fn dropped_in(ns: &Netns) -> u64 {
    let out = ns.exec("nft", &["list", "table", "ip", "keepalived"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find(|l| l.contains("ip daddr @vips"))
        .and_then(|l| l.split_whitespace().skip_while(|w| *w != "packets").nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("no counted drop rule in:\n{text}"))
}

/// An IPv4 instance and an IPv6 one (a global VIP and a link-local one), both VRRPv3.
fn two_instances(subnet: u8, vrid: u8, accept: &str) -> Vec<String> {
    vec![
        instance(
            "VI_4",
            vrid,
            150,
            "0.2",
            &[&format!("10.{subnet}.0.100/24"), &format!("10.{subnet}.0.101/24")],
            &format!("  version 3\n{accept}"),
        ),
        instance(
            "VI_6",
            vrid + 1,
            150,
            "0.2",
            &[&format!("fd00:{subnet}::100/64"), "fe80::77/64"],
            &format!("  version 3\n{accept}"),
        ),
    ]
}

#[test]
fn a_no_accept_master_drops_traffic_to_its_vips_and_accept_lets_it_through() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 71, 2);
    let vip = ip4(71, 100);
    let global = "  nftables\n  nftables_counters\n  vrrp_strict\n";
    let w1 = VipWatch::start(&r[0], "r1", vip);
    // vrrp_strict without accept: no_accept.
    let mut lbd = start_lbd(&mut lab, &r[0], "lbd1", &config("r1", global, &two_instances(71, 71, "")));
    // Nothing is made while BACKUP.
    assert!(ruleset(&r[0]).trim().is_empty(), "a table before MASTER:\n{}", ruleset(&r[0]));
    w1.wait_for(true, Duration::from_secs(5));
    wait_until(Duration::from_secs(5), "the VIPs in the drop set", || {
        ruleset(&r[0]).contains("elements = { 10.71.0.100, 10.71.0.101 }")
    });
    assert!(pings(&r[1], "10.71.0.1"), "the primary address answers");
    assert!(!pings(&r[1], "10.71.0.100"), "a no_accept master answered on its VIP:\n{}", ruleset(&r[0]));
    assert!(dropped_in(&r[0]) >= 1, "{}", ruleset(&r[0]));
    assert!(lbd.log().contains("(VI_4) setting firewall drop rule"), "{}", lbd.log());
    // An orderly stop deletes the tables.
    terminate(&mut lbd, "lbd1");
    assert!(ruleset(&r[0]).trim().is_empty(), "tables left after the stop:\n{}", ruleset(&r[0]));
    w1.wait_for(false, Duration::from_secs(2));

    // accept: no table, and the VIP answers.
    let _lbd =
        start_lbd(&mut lab, &r[0], "lbd2", &config("r1", global, &two_instances(71, 71, "  accept\n")));
    w1.wait_for(true, Duration::from_secs(5));
    assert!(pings(&r[1], "10.71.0.100"), "an accepting master did not answer on its VIP");
    assert!(ruleset(&r[0]).trim().is_empty(), "a table with accept:\n{}", ruleset(&r[0]));
}

#[test]
fn the_nftables_table_is_keepalived_s_rule_for_rule() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 72, 2);
    // Both routers alone on their VRIDs (different ones), each becomes MASTER of both.
    let global = "  nftables kvtab\n  nftables_priority -5\n  nftables_counters\n  vrrp_strict\n";
    let (w1, w2) = (VipWatch::start(&r[0], "r1", ip4(72, 100)), VipWatch::start(&r[1], "r2", ip4(72, 100)));
    let mut keepalived =
        start_keepalived(&lab, &r[0], "keepalived1", &config("r1", global, &two_instances(72, 72, "")));
    let mut lbd = start_lbd(&mut lab, &r[1], "lbd2", &config("r2", global, &two_instances(72, 82, "")));
    w1.wait_for(true, Duration::from_secs(10));
    w2.wait_for(true, Duration::from_secs(10));
    let complete = |ns: &Netns| {
        let text = ruleset(ns);
        text.contains("10.72.0.100") && text.contains("fd00:72::100") && text.contains("fe80::77")
    };
    wait_until(Duration::from_secs(5), "keepalived's and lbd's tables", || {
        complete(&r[0]) && complete(&r[1])
    });
    let (theirs, ours) = (ruleset(&r[0]), ruleset(&r[1]));
    eprintln!("keepalived 2.2.7:\n{theirs}");
    assert_eq!(ours, theirs, "lbd's ruleset differs from keepalived's:\n{ours}");
    assert!(theirs.contains("table ip6 kvtab") && theirs.contains("priority filter - 5"), "{theirs}");

    terminate(&mut keepalived, "keepalived1");
    terminate(&mut lbd, "lbd2");
    assert_eq!(ruleset(&r[1]).trim(), ruleset(&r[0]).trim(), "after the stop");
    assert!(ruleset(&r[1]).trim().is_empty());
}
