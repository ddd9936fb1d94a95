//! lbd with the Linux IPVS data plane (`lbd_dataplane ipvs`), in a VM whose kernel has IPVS
//! (this machine's has none; see `lb_tests::vm`): a NAT virtual server with two real servers in
//! namespaces, curl through the VIP, a TCP_CHECK failure taking a real server out of IPVS;
//! `lvs_flush` empties IPVS at start and `lvs_flush_onstop` at the stop (another tool's services
//! included, which the default stop would leave).
//!
//! ```text
//!  client 10.30.0.2 ── [front] ── 10.30.0.1 lb (VIP 10.40.0.100 on lo) 10.31.0.1 ── [back] ── r1 .11  r2 .12
//! ```
//!
//! The test runs itself in the VM (`LBD_IN_VM=1`); on the host it only boots the VM and reports.

use std::time::Duration;

use lb_tests::{
    bins,
    lab::{Lab, LbHosts, answers, wait_until},
};

const CONFIG: &str = "\
global_defs {
    router_id lbt-ipvs
    lbd_dataplane ipvs
    lvs_flush
    lvs_flush_onstop
}
virtual_server 10.40.0.100 80 {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 10.31.0.11 8080 {
        TCP_CHECK {
            connect_timeout 1
            retry 0
        }
    }
    real_server 10.31.0.12 8080 {
        TCP_CHECK {
            connect_timeout 1
            retry 0
        }
    }
}
";

/// Emulated (TCG) guests are slow: generous bounds, each a wait, never a measurement.
const SLOW: Duration = Duration::from_secs(60);

#[test]
fn nat_through_ipvs_and_a_failed_check_takes_the_real_out() {
    if std::env::var_os("LBD_IN_VM").is_some() {
        return in_vm();
    }
    lb_tests::vm::run_test_in_vm(
        "nat_through_ipvs_and_a_failed_check_takes_the_real_out",
        Duration::from_secs(900),
    );
}

fn ipvsadm(lb: &lb_tests::lab::Netns) -> String {
    let out = lb.exec("ipvsadm", &["-Ln"]);
    assert!(out.status.success(), "ipvsadm -Ln: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn in_vm() {
    let mut lab = Lab::new();
    let LbHosts { switch: _switch, client, lb, reals: hosts } = lab.lb_hosts(2);
    client.addr("eth0", "10.30.0.2/24");
    client.ip(&["route", "add", "10.40.0.0/24", "via", "10.30.0.1"]);
    lb.addr("eth0", "10.30.0.1/24");
    lb.addr("eth1", "10.31.0.1/24");
    // The VIP is local, as VRRP would make it; IPVS NAT replies are forwarded.
    lb.addr("lo", "10.40.0.100/32");
    lb.sysctl("net.ipv4.ip_forward", "1");
    let mut reals = Vec::new();
    for (i, ns) in (1..).zip(hosts) {
        ns.addr("eth0", &format!("10.31.0.1{i}/24"));
        ns.ip(&["route", "add", "default", "via", "10.31.0.1"]);
        let server = ns.spawn("web", bins::web(), &[&format!("r{i}"), "0.0.0.0:8080"]);
        reals.push((ns, server));
    }
    // Another tool's service, there before lbd: lvs_flush deletes it.
    ipvsadm_run(&lb, &["-A", "-t", "192.0.2.9:53", "-s", "rr"]);
    assert!(ipvsadm(&lb).contains("192.0.2.9:53"));
    let config = lab.write_file("keepalived.conf", CONFIG);
    let pins = lab.dir().join("pins");
    let mut lbd = bins::spawn_lbd(&lab, &lb, "lbd", &config, &pins, &[]);
    wait_until(SLOW, "lbd to program IPVS", || {
        lbd.assert_running();
        lbd.log().contains("data plane: 1 virtual services")
    });
    assert!(lbd.log().contains("forwarding with the kernel's IPVS"), "{}", lbd.log());
    let table = ipvsadm(&lb);
    println!("{table}");
    assert!(table.contains("TCP  10.40.0.100:80 rr"), "{table}");
    assert!(!table.contains("192.0.2.9"), "lvs_flush: {table}");
    assert!(lbd.log().contains("lvs_flush: IPVS flushed"), "{}", lbd.log());
    for real in ["10.31.0.11:8080", "10.31.0.12:8080"] {
        assert!(table.contains(&format!("-> {real}")) && table.contains("Masq"), "{table}");
    }
    let seen = answers(&client, "10.40.0.100:80", 6, &lbd);
    assert_eq!(seen, ["r1".to_owned(), "r2".to_owned()].into(), "round robin over both");

    // r2's server dies: its TCP_CHECK fails and lbd deletes it from IPVS, as keepalived does.
    reals[1].1.kill();
    wait_until(SLOW, "r2 to leave IPVS", || !ipvsadm(&lb).contains("10.31.0.12:8080"));
    println!("{}", ipvsadm(&lb));
    let seen = answers(&client, "10.40.0.100:80", 4, &lbd);
    assert_eq!(seen, ["r1".to_owned()].into(), "every request still answered, by r1");

    // An orderly stop with lvs_flush_onstop empties IPVS: lbd's virtual server and another
    // tool's service added meanwhile (which the default stop leaves alone).
    ipvsadm_run(&lb, &["-A", "-u", "192.0.2.10:53", "-s", "rr"]);
    lbd.signal(nix::sys::signal::Signal::SIGTERM);
    lbd.wait(SLOW);
    let table = ipvsadm(&lb);
    assert!(!table.contains("10.40.0.100") && !table.contains("192.0.2.10"), "{table}");
    assert!(!table.lines().any(|l| l.starts_with("TCP") || l.starts_with("UDP")), "{table}");
    assert!(lbd.log().contains("lvs_flush_onstop: IPVS flushed"), "{}", lbd.log());
}

fn ipvsadm_run(lb: &lb_tests::lab::Netns, args: &[&str]) {
    let out = lb.exec("ipvsadm", args);
    assert!(out.status.success(), "ipvsadm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}
