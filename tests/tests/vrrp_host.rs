//! keepalived keywords about how the VRRP child uses its host, shown in namespaces with a
//! running lbd: `nftables` / `no_accept` (the table keepalived 2.2.7 makes, compared rule for rule
//! with a real keepalived's, and traffic to a non-accepting master's VIP dropped), and the
//! receive buffers (`kernel_rx_buf_size`, `vrrp_rx_bufs_policy`, `vrrp_rx_bufs_multiplier`,
//! `vrrp_netlink_cmd_rcv_bufs(_force)`, `vrrp_netlink_monitor_rcv_bufs(_force)`), read back from
//! the sockets of a running lbd and of a real keepalived, and `max_auto_priority` /
//! `min_auto_priority_delay` (the VRRP thread's real-time priority rising after the process was
//! stopped past the delay), and `linkbeat_use_polling` (link down seen by polling, about a
//! second apart, not by netlink events); and a MASTER's VIP deleted by hand (`ip addr del`),
//! answered as keepalived 2.2.7 answers it; `disable_local_igmp` (no IGMP report for the VRRP
//! group, nor at a reload); `use_vmac_addr` and `vmac_addr_prefix` (a VMAC for the VIPs of another interface,
//! named as keepalived names it); and the advert source following the interface's address
//! without `mcast_src_ip` / `unicast_src_ip` (IPv4, and IPv6's link-local address with a peer
//! that never takes over); and a VRRP start that fails once its VMAC is made
//! (no VMAC, table or setting left, lbd stopped); reloads keeping use_vmac masters (their VMACs
//! and VIPs never deleted, the VIP answering pings 10 ms apart throughout) and removing the
//! VMACs the new configuration no longer has, and no IGMP / MLD report from a VMAC's virtual MAC
//! as its sockets close and open again; a reload whose new engine cannot start stopping the
//! masters it kept as an orderly stop does (priority 0, VIPs and VMACs removed), and one moving
//! a use_vmac instance to another interface moving its VMAC (same name, new parent); an IPv6
//! instance started while its only link-local address is in duplicate address detection (FAULT,
//! then MASTER from it once DAD is over, lbd running all along).

mod vrrp_kit;

use std::{
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::Duration,
};

use lb_tests::lab::{Lab, Netns, wait_until};
use vrrp_kit::{VipWatch, config, instance, ip4, lan, start_keepalived, start_lbd, terminate, vrrp_pid};

/// `tcpdump ARGS` in `ns`, once it listens.
fn tcpdump(ns: &Netns, args: &[&str]) -> lb_tests::process::Proc {
    let mut tcpdump = ns.spawn("tcpdump", "tcpdump", args);
    wait_until(Duration::from_secs(5), "tcpdump to listen", || {
        tcpdump.assert_running();
        tcpdump.log().contains("listening on")
    });
    tcpdump
}

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
    // The rule before the addresses (keepalived's order): the VIP never answers unprotected.
    let log = lbd.log();
    let rule = log.find("(VI_4) setting firewall drop rule").unwrap_or_else(|| panic!("{log}"));
    assert!(log.find("(VI_4) setting VIPs.").is_some_and(|vips| rule < vips), "{log}");
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
fn a_reload_leaves_a_kept_no_accept_master_s_drop_rule_in_place() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 72, 1);
    // Without and with use_vmac (whose rules the tables have from the start).
    for extra in ["", "  use_vmac\n"] {
        let conf = |priority: u8| {
            let v3 = "  version 3\n";
            let blocks = [
                instance("VI_4", 72, 150, "0.2", &["10.72.0.100/24"], &format!("{v3}{extra}")),
                instance("VI_5", 73, priority, "0.2", &["10.72.0.110/24"], v3),
            ];
            config("r1", "  nftables\n  vrrp_strict\n", &blocks)
        };
        let mut lbd = start_lbd(&mut lab, &r[0], "lbd", &conf(150));
        let in_set = || {
            let out = r[0].exec("nft", &["list", "set", "ip", "keepalived", "vips"]);
            String::from_utf8_lossy(&out.stdout).contains("10.72.0.100")
        };
        wait_until(Duration::from_secs(5), "VI_4's VIP in the drop set", in_set);
        // VI_5 changes, VI_4 is kept in MASTER: its VIP stays blocked all through the reload.
        lab.write_file("lbd.conf", &conf(140));
        lbd.signal(nix::sys::signal::Signal::SIGHUP);
        let start = std::time::Instant::now();
        let mut checks = 0;
        while start.elapsed() < Duration::from_secs(3) {
            assert!(in_set(), "VI_4's VIP unblocked during the reload:\n{}\n{}", ruleset(&r[0]), lbd.log());
            checks += 1;
        }
        let log = lbd.log();
        assert!(log.contains("(VI_4) kept in MASTER STATE across the reload"), "{log}");
        assert!(checks > 10, "{checks}");
        // Blocked once: leaving MASTER (FAULT, the link down) unblocks it.
        r[0].ip(&["link", "set", "eth0", "down"]);
        wait_until(Duration::from_secs(3), "VI_4's VIP out of the drop set", || !in_set());
        r[0].ip(&["link", "set", "eth0", "up"]);
        wait_until(Duration::from_secs(5), "VI_4's VIP in the drop set again", in_set);
        // The new engine took the tables over: its stop deletes them.
        terminate(&mut lbd, "lbd");
        assert!(ruleset(&r[0]).trim().is_empty(), "tables left after the stop:\n{}", ruleset(&r[0]));
    }
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

/// A socket of a process, as getsockopt tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SocketInfo {
    domain: i32,
    protocol: i32,
    rcvbuf: i32,
}

fn int_option(fd: &OwnedFd, option: i32) -> i32 {
    let mut value: libc::c_int = 0;
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(4);
    // SAFETY: getsockopt of an int option into a c_int of the length given.
    let rc = unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, option, (&raw mut value).cast(), &raw mut len)
    };
    assert_eq!(rc, 0, "getsockopt {option}: {}", std::io::Error::last_os_error());
    value
}

/// Every socket `pid` holds, through duplicates of its descriptors (pidfd_getfd, as root).
fn sockets(pid: i32) -> Vec<SocketInfo> {
    // SAFETY: pidfd_open(pid, 0) returns a new descriptor or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    assert!(pidfd >= 0, "pidfd_open {pid}: {}", std::io::Error::last_os_error());
    // SAFETY: a descriptor just returned to us, owned from here on.
    let pidfd = unsafe { OwnedFd::from_raw_fd(i32::try_from(pidfd).unwrap_or(-1)) };
    let mut found = Vec::new();
    let entries =
        std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"));
    for entry in entries.flatten() {
        let is_socket =
            std::fs::read_link(entry.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:"));
        let Some(target) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        if !is_socket {
            continue;
        }
        // SAFETY: pidfd_getfd(pidfd, fd, 0) returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0) };
        if fd < 0 {
            continue;
        }
        // SAFETY: a descriptor just returned to us, owned from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(i32::try_from(fd).unwrap_or(-1)) };
        found.push(SocketInfo {
            domain: int_option(&fd, libc::SO_DOMAIN),
            protocol: int_option(&fd, libc::SO_PROTOCOL),
            rcvbuf: int_option(&fd, libc::SO_RCVBUF),
        });
    }
    found
}

/// The receive buffers of `pid`'s IPv4 VRRP sockets and its rtnetlink sockets.
fn buffers(pid: i32) -> (Vec<i32>, Vec<i32>) {
    let all = sockets(pid);
    let of = |domain: i32, protocol: i32| -> Vec<i32> {
        let mut sizes: Vec<i32> =
            all.iter().filter(|s| s.domain == domain && s.protocol == protocol).map(|s| s.rcvbuf).collect();
        sizes.sort_unstable();
        sizes
    };
    (of(libc::AF_INET, 112), of(libc::AF_NETLINK, libc::NETLINK_ROUTE))
}

#[test]
fn receive_buffers_are_set_as_keepalived_sets_them() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 74, 2);
    // The command sockets' 5 MB is above net.core.rmem_max (4 MB here): only SO_RCVBUFFORCE
    // gets it.
    let global = "  vrrp_rx_bufs_policy MTU\n  vrrp_rx_bufs_multiplier 4\n  vrrp_netlink_cmd_rcv_bufs 5000000\n  \
                  vrrp_netlink_cmd_rcv_bufs_force true\n  vrrp_netlink_monitor_rcv_bufs 400000\n";
    let instances = |vrid: u8| {
        [("VI_1", ""), ("VI_2", ""), ("VI_3", "  kernel_rx_buf_size 50000\n")]
            .iter()
            .zip(vrid..)
            .map(|((name, extra), vrid)| {
                instance(name, vrid, 100, "1", &[&format!("10.74.0.{}/24", 100 + vrid)], extra)
            })
            .collect::<Vec<_>>()
    };
    let _keepalived = start_keepalived(&lab, &r[0], "keepalived1", &config("r1", global, &instances(10)));
    let lbd = start_lbd(&mut lab, &r[1], "lbd2", &config("r2", global, &instances(20)));
    let (theirs_vrrp, theirs_netlink) = buffers(vrrp_pid(&lab, "keepalived1"));
    let (ours_vrrp, ours_netlink) = buffers(vrrp_pid(&lab, "lbd2"));
    eprintln!("keepalived: VRRP {theirs_vrrp:?}, rtnetlink {theirs_netlink:?}");
    eprintln!("lbd: VRRP {ours_vrrp:?}, rtnetlink {ours_netlink:?}");
    // The kernel doubles what is asked: MTU 1500 × 4 for VI_1 and VI_2, plus VI_3's 50000.
    let expected = 2 * (1500 * 4 * 2 + 50_000);
    // keepalived's receiving socket has it (its sending one has the minimum); lbd sends and
    // receives on one socket.
    assert_eq!(theirs_vrrp.last(), Some(&expected), "keepalived: {theirs_vrrp:?}");
    assert_eq!(ours_vrrp, [expected], "lbd: {}", lbd.log());
    // keepalived: one command socket (forced past rmem_max), one monitor socket.
    assert_eq!(theirs_netlink, [800_000, 10_000_000]);
    // lbd has more command connections (the VIP lease renewer has its own): each is sized.
    assert!(ours_netlink.contains(&800_000) && ours_netlink.contains(&10_000_000), "{ours_netlink:?}");
    assert!(ours_netlink.iter().all(|size| [800_000, 10_000_000].contains(size)), "{ours_netlink:?}");
}

/// The real-time priorities of `pid`'s threads that run SCHED_RR (from /proc/PID/task/*/stat),
/// by thread name, sorted.
fn round_robin_priorities(pid: i32) -> Vec<(String, u32)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap_or_else(|e| panic!("{pid}: {e}"));
    let mut found = Vec::new();
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        let name =
            stat.split_once('(').and_then(|(_, rest)| rest.rsplit_once(')')).map_or("", |(name, _)| name);
        // Fields 40 (rt_priority) and 41 (policy), counted from the state (field 3).
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
        let (Some(priority), Some(policy)) = (fields.get(37), fields.get(38)) else { continue };
        if policy.parse::<i32>().ok() == Some(libc::SCHED_RR) {
            found.push((name.to_owned(), priority.parse().unwrap_or(0)));
        }
    }
    found.sort();
    found
}

#[test]
fn max_auto_priority_raises_the_vrrp_thread_after_a_late_timer() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 75, 1);
    let conf = config(
        "r1",
        "  max_auto_priority 3\n  min_auto_priority_delay 300000\n",
        &[instance("VI_1", 75, 150, "0.2", &["10.75.0.100/24"], "  version 3\n")],
    );
    let w1 = VipWatch::start(&r[0], "r1", ip4(75, 100));
    let lbd = start_lbd(&mut lab, &r[0], "lbd1", &conf);
    w1.wait_for(true, Duration::from_secs(5));
    let pid = vrrp_pid(&lab, "lbd1");
    // lbd's VRRP thread is real-time from the start, at 1, and so is its standby sender, which
    // stays there (it sleeps but when the VRRP thread is late).
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_owned();
    let threads = |main: u32| {
        let mut threads = vec![(name.clone(), main), ("vrrp-standby".to_owned(), 1)];
        threads.sort();
        threads
    };
    assert_eq!(round_robin_priorities(pid), threads(1), "{}", lbd.log());
    let child = nix::unistd::Pid::from_raw(pid);
    for expected in [2, 3, 3] {
        let lines = lbd.log().matches("A thread timer expired").count();
        // Stopped for 0.8 s: the next advert timer runs far more than 0.3 s late.
        nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGSTOP).unwrap_or_else(|e| panic!("{e}"));
        std::thread::sleep(Duration::from_millis(800));
        nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGCONT).unwrap_or_else(|e| panic!("{e}"));
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while lbd.log().matches("A thread timer expired").count() == lines
            || round_robin_priorities(pid) != threads(expected)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "no late timer seen or priority not {expected}: {:?}; log:\n{}",
                round_robin_priorities(pid),
                lbd.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // One step per late timer, never past max_auto_priority.
    assert!(lbd.log().contains("Set realtime priority 2") && lbd.log().contains("Set realtime priority 3"));
    assert!(!lbd.log().contains("Set realtime priority 4"), "{}", lbd.log());
}

#[test]
fn linkbeat_use_polling_sees_link_down_by_polling_every_second() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 76, 1);
    let conf = config(
        "r1",
        "",
        &[instance("VI_1", 76, 150, "0.2", &["10.76.0.100/24"], "  version 3\n  linkbeat_use_polling\n")],
    );
    let w1 = VipWatch::start(&r[0], "r1", ip4(76, 100));
    let lbd = start_lbd(&mut lab, &r[0], "lbd1", &conf);
    w1.wait_for(true, Duration::from_secs(5));
    // keepalived 2.2.7, measured the same way: FAULT 6, 11, 99, 197, 373 and 948 ms after the
    // link went down (a poll a second); through netlink events it takes milliseconds.
    let mut delays = Vec::new();
    for offset in [130, 470, 820, 250, 610] {
        std::thread::sleep(Duration::from_millis(offset));
        let down = std::time::Instant::now();
        r[0].ip(&["link", "set", "eth0", "down"]);
        let gone = w1.wait_for(false, Duration::from_secs(3));
        delays.push(gone.saturating_duration_since(down));
        r[0].ip(&["link", "set", "eth0", "up"]);
        w1.wait_for(true, Duration::from_secs(5));
    }
    eprintln!("link down to FAULT: {delays:?}");
    let log = lbd.log();
    assert!(log.contains("Linkbeat reports eth0 down") && log.contains("Linkbeat reports eth0 up"), "{log}");
    assert!(!log.contains("Netlink reports eth0"), "a netlink event was acted on:\n{log}");
    // A poll a second, and slack for a loaded machine.
    assert!(delays.iter().all(|d| *d < Duration::from_millis(2_000)), "{delays:?}");
    // Five polls at random phases: not all within 150 ms of the event, as netlink would be.
    assert!(delays.iter().any(|d| *d > Duration::from_millis(150)), "{delays:?}");
}

#[test]
fn a_vip_deleted_by_hand_makes_the_master_send_priority_zero_and_take_its_vips_back() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 77, 2);
    let conf = config(
        "r1",
        "",
        &[instance("VI_1", 77, 150, "0.2", &["10.77.0.100/24", "10.77.0.101/24"], "  version 3\n")],
    );
    let w1 = VipWatch::start(&r[0], "r1", ip4(77, 100));
    let lbd = start_lbd(&mut lab, &r[0], "lbd1", &conf);
    w1.wait_for(true, Duration::from_secs(5));
    let tcpdump = tcpdump(&r[1], &["-i", "eth0", "-nn", "-l", "-v", "ip", "proto", "112"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!tcpdump.log().contains("prio 0"), "{}", tcpdump.log());
    r[0].ip(&["addr", "del", "10.77.0.100/24", "dev", "eth0"]);
    // keepalived 2.2.7, measured: "Netlink reflector reports IP 10.77.0.100 removed from eth0",
    // "(VI_1) Entering BACKUP STATE", "(VI_1) sent 0 priority", "(VI_1) removing VIPs.", then
    // "(VI_1) Receive advertisement timeout" and MASTER again, both VIPs set, within a second.
    wait_until(Duration::from_secs(3), "MASTER again", || {
        lbd.log().matches("Entering MASTER STATE").count() == 2
    });
    w1.wait_for(true, Duration::from_secs(2));
    let other = r[0].ip(&["-br", "addr", "show", "dev", "eth0"]);
    assert!(other.contains("10.77.0.101/24"), "{other}");
    let log = lbd.log();
    let at = |line: &str| log.find(line).unwrap_or_else(|| panic!("no {line:?} in:\n{log}"));
    let reported = at("Netlink reflector reports IP 10.77.0.100 removed from eth0");
    let backup = at("(VI_1) Entering BACKUP STATE\n");
    let zero = at("(VI_1) sent 0 priority");
    let master = log.rfind("(VI_1) Entering MASTER STATE").unwrap_or_default();
    assert!(reported < backup && reported < zero && backup < master && zero < master, "{log}");
    wait_until(Duration::from_secs(3), "the priority-0 advert on the wire", || {
        tcpdump.log().contains("prio 0")
    });
}

#[test]
fn disable_local_igmp_keeps_the_vrrp_group_join_off_the_wire_until_the_stop() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 78, 3);
    let tcpdump = tcpdump(&r[1], &["-i", "eth0", "-nn", "-l", "igmp"]);
    let sysctl = |ns: &Netns| {
        let out = ns.exec("cat", &["/proc/sys/net/ipv4/igmp_link_local_mcast_reports"]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let conf = |id: &str, global: &str, vrid: u8| {
        config(
            id,
            global,
            &[instance("VI_1", vrid, 100, "0.2", &[&format!("10.78.0.{vrid}/24")], "  version 3\n")],
        )
    };
    let mut quiet = start_lbd(&mut lab, &r[0], "lbd1", &conf("r1", "  disable_local_igmp\n", 101));
    assert_eq!(sysctl(&r[0]), "0");
    // Without the keyword, joining 224.0.0.18 is reported (the capture works).
    let _loud = start_lbd(&mut lab, &r[2], "lbd3", &conf("r3", "", 103));
    wait_until(Duration::from_secs(5), "r3's IGMP report", || tcpdump.log().contains("10.78.0.3 > "));
    std::thread::sleep(Duration::from_millis(500));
    assert!(!tcpdump.log().contains("10.78.0.1 > "), "r1 reported its group:\n{}", tcpdump.log());
    // r1 did join the group: not reported, not missing.
    let groups = r[0].ip(&["maddr", "show", "dev", "eth0"]);
    assert!(groups.contains("224.0.0.18"), "r1 has not joined 224.0.0.18:\n{groups}");
    // keepalived puts the setting back as it stops.
    terminate(&mut quiet, "lbd1");
    assert_eq!(sysctl(&r[0]), "1");
    // And when VRRP cannot start (no instance can run): put back at once.
    let broken = conf("r1", "  disable_local_igmp\n", 101).replace("interface eth0", "interface nothere");
    let conf_path = lab.write_file("broken.conf", &broken);
    let pin = lab.bpffs().join("lbd");
    let mut lbd = lb_tests::bins::spawn_lbd(&lab, &r[0], "broken", &conf_path, &pin, &[]);
    wait_until(Duration::from_secs(10), "the VRRP error", || lbd.log().contains("no VRRP instance can run"));
    assert_eq!(sysctl(&r[0]), "1", "{}", lbd.log());
    lbd.kill();
}

#[test]
fn use_vmac_addr_puts_other_interfaces_vips_on_vmacs_named_as_keepalived_names_them() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 79, 1);
    // r1's second interface eth1 faces h (10.179.0.0/24).
    let h = lab.netns("h");
    lab.veth(&r[0], "eth1", &h, "eth0");
    r[0].addr("eth1", "10.179.0.1/24");
    h.addr("eth0", "10.179.0.2/24");
    let conf = |global: &str| {
        config(
            "r1",
            global,
            &[instance(
                "VI_1",
                79,
                150,
                "0.2",
                &["10.79.0.100/24", "10.179.0.100/24 dev eth1"],
                "  version 3\n  use_vmac\n  use_vmac_addr\n",
            )],
        )
    };
    // keepalived 2.2.7, measured: vrrp.79 on eth0 and, for eth1's VIP, vadr.79 with
    // vmac_addr_prefix vadr, else vrrp1.79 (vrrp.79 being taken), both with the virtual MAC.
    for (global, name) in [("  vmac_addr_prefix vadr\n", "vadr.79"), ("", "vrrp1.79")] {
        let arp = tcpdump(&h, &["-i", "eth0", "-e", "-nn", "-l", "arp"]);
        let w1 = VipWatch::start(&r[0], "r1", "10.179.0.100".parse().unwrap_or(ip4(79, 100)));
        let mut lbd = start_lbd(&mut lab, &r[0], "lbd1", &conf(global));
        w1.wait_for(true, Duration::from_secs(5));
        let link = r[0].ip(&["-br", "link", "show", name]);
        assert!(link.starts_with(&format!("{name}@eth1")) && link.contains("00:00:5e:00:01:4f"), "{link}");
        let on_vmac = r[0].ip(&["-br", "addr", "show", "dev", name]);
        assert!(on_vmac.contains("10.179.0.100/24"), "{on_vmac}\n{}", lbd.log());
        assert!(r[0].ip(&["-br", "addr", "show", "dev", "vrrp.79"]).contains("10.79.0.100/24"));
        // h reaches the VIP, announced from the virtual MAC.
        h.ip(&["neigh", "flush", "dev", "eth0"]);
        assert!(pings(&h, "10.179.0.100"), "{}", lbd.log());
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        let announced = |log: &str| {
            log.lines().any(|l| {
                l.contains("00:00:5e:00:01:4f > ff:ff:ff:ff:ff:ff") && l.contains("tell 10.179.0.100")
            }) && log.contains("Reply 10.179.0.100 is-at 00:00:5e:00:01:4f")
        };
        while !announced(&arp.log()) {
            assert!(
                std::time::Instant::now() < deadline,
                "no gratuitous ARP or ARP reply from the VMAC:\n{}\nlbd:\n{}",
                arp.log(),
                lbd.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        terminate(&mut lbd, "lbd1");
        assert!(r[0].try_ip(&["link", "show", name]).is_err(), "{name} left after the stop");
        assert!(r[0].try_ip(&["link", "show", "vrrp.79"]).is_err(), "vrrp.79 left after the stop");
    }
}

#[test]
fn without_a_configured_source_adverts_follow_the_interface_s_address() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 80, 2);
    let vip: std::net::IpAddr = "192.168.80.100".parse().unwrap_or(ip4(80, 100));
    let conf = config("r1", "", &[instance("VI_1", 80, 150, "0.2", &["192.168.80.100/32"], "  version 3\n")]);
    let w1 = VipWatch::start(&r[0], "r1", vip);
    let adverts = tcpdump(&r[1], &["-i", "eth0", "-nn", "-l", "ip", "proto", "112"]);
    let lbd = start_lbd(&mut lab, &r[0], "lbd1", &conf);
    w1.wait_for(true, Duration::from_secs(5));
    let from = |source: &str| adverts.log().lines().any(|l| l.contains(&format!("IP {source} > 224.0.0.18")));
    wait_until(Duration::from_secs(2), "adverts from 10.80.0.1", || from("10.80.0.1"));
    // keepalived 2.2.7, measured: its only address gone, "Deassigned address" and FAULT (priority
    // 0 sent, VIPs removed); an address added, "Assigned address", BACKUP, then MASTER from it.
    r[0].ip(&["addr", "del", "10.80.0.1/24", "dev", "eth0"]);
    w1.wait_for(false, Duration::from_secs(2));
    wait_until(Duration::from_secs(2), "FAULT", || lbd.log().contains("(VI_1) Entering FAULT STATE"));
    assert!(lbd.log().contains("Deassigned address 10.80.0.1 from interface eth0"), "{}", lbd.log());
    r[0].ip(&["addr", "add", "10.80.0.9/24", "dev", "eth0"]);
    w1.wait_for(true, Duration::from_secs(3));
    assert!(lbd.log().contains("Assigned address 10.80.0.9 for interface eth0"), "{}", lbd.log());
    wait_until(Duration::from_secs(2), "adverts from 10.80.0.9", || from("10.80.0.9"));
    // Another address there: the source moves to it, without FAULT.
    r[0].ip(&["addr", "add", "10.99.0.9/24", "dev", "eth0"]);
    r[0].ip(&["addr", "del", "10.80.0.9/24", "dev", "eth0"]);
    wait_until(Duration::from_secs(2), "adverts from 10.99.0.9", || from("10.99.0.9"));
    w1.assert_steady(true, Duration::from_millis(600));
    assert_eq!(lbd.log().matches("Entering FAULT STATE").count(), 1, "{}", lbd.log());
}

#[test]
fn use_vmac_moves_igmp_and_mld_off_the_vmacs_in_keepalived_s_table() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 81, 1);
    let conf = config(
        "r1",
        "  vrrp_strict\n",
        &[
            instance("VI_4", 81, 150, "0.2", &["10.81.0.100/24"], "  version 3\n  use_vmac\n"),
            instance(
                "VI_6",
                82,
                150,
                "0.2",
                &["fe80::82/64", "fd00:81::100/64"],
                "  version 3\n  use_vmac\n",
            ),
        ],
    );
    let complete = |ns: &Netns| {
        let text = ruleset(ns);
        text.contains("10.81.0.100") && text.contains("fd00:81::100") && text.contains("fe80::82")
    };
    let w1 = VipWatch::start(&r[0], "r1", ip4(81, 100));
    // keepalived 2.2.7 first, then lbd, in the same namespace: the same interface names.
    let mut keepalived = start_keepalived(&lab, &r[0], "keepalived1", &conf);
    w1.wait_for(true, Duration::from_secs(10));
    wait_until(Duration::from_secs(5), "keepalived's table", || complete(&r[0]));
    let theirs = ruleset(&r[0]);
    terminate(&mut keepalived, "keepalived1");
    w1.wait_for(false, Duration::from_secs(3));
    assert!(ruleset(&r[0]).trim().is_empty(), "keepalived left:\n{}", ruleset(&r[0]));
    let mut lbd = start_lbd(&mut lab, &r[0], "lbd1", &conf);
    w1.wait_for(true, Duration::from_secs(10));
    wait_until(Duration::from_secs(5), "lbd's table", || complete(&r[0]));
    let ours = ruleset(&r[0]);
    eprintln!("keepalived 2.2.7:\n{theirs}");
    assert!(theirs.contains("dup to ip daddr device oif map @vmac_map drop"), "{theirs}");
    assert!(theirs.contains("icmpv6 type nd-router-solicit"), "{theirs}");
    assert_eq!(ours, theirs, "lbd's ruleset differs from keepalived's:\n{ours}\n{}", lbd.log());
    terminate(&mut lbd, "lbd1");
    assert!(ruleset(&r[0]).trim().is_empty(), "lbd left:\n{}", ruleset(&r[0]));
}

#[test]
fn a_vrrp_start_that_fails_after_its_vmac_is_made_leaves_nothing_behind_and_stops_lbd() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 83, 1);
    // eth0 has no IPv4 address: the instance has no advert source, which lbd finds out only once
    // it has made the VMAC (the interfaces are read again with it), set disable_local_igmp and
    // installed the VMAC's nftables rules, and started its link and address monitors.
    r[0].ip(&["addr", "flush", "dev", "eth0"]);
    let sysctl = || {
        let out = r[0].exec("cat", &["/proc/sys/net/ipv4/igmp_link_local_mcast_reports"]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(sysctl(), "1");
    assert_eq!(arp_settings(&r[0], "eth0"), ["0", "0"]);
    let links = r[0].spawn("ip-monitor", "ip", &["monitor", "link"]);
    std::thread::sleep(Duration::from_millis(200));
    let conf = config(
        "r1",
        "  disable_local_igmp\n",
        &[instance("VI_1", 83, 150, "0.2", &["10.83.0.100/24"], "  version 3\n  use_vmac\n")],
    );
    let conf_path = lab.write_file("lbd1.conf", &conf);
    let pin = lab.bpffs().join("lbd");
    let mut lbd = lb_tests::bins::spawn_lbd(&lab, &r[0], "lbd1", &conf_path, &pin, &[]);
    // As keepalived, whose VRRP child exits with a permanent error: lbd stops.
    let status = lbd.wait(Duration::from_secs(15));
    let log = lbd.log();
    assert!(!status.success(), "lbd exited with {status:?}:\n{log}");
    assert!(log.contains("no IPv4 address on eth0") && log.contains("no VRRP instance can run"), "{log}");
    assert!(log.contains("(vmac) vrrp.83 created on eth0"), "{log}");
    // The VMAC was there, and is gone.
    assert!(links.log().contains("vrrp.83@eth0"), "no VMAC seen:\n{}", links.log());
    assert!(r[0].try_ip(&["link", "show", "vrrp.83"]).is_err(), "vrrp.83 left behind:\n{log}");
    assert!(ruleset(&r[0]).trim().is_empty(), "tables left behind:\n{}\n{log}", ruleset(&r[0]));
    assert_eq!(sysctl(), "1", "igmp_link_local_mcast_reports not restored:\n{log}");
    assert_eq!(arp_settings(&r[0], "eth0"), ["0", "0"], "eth0's arp_ignore, arp_filter not restored");
    // No lbd process is left (the tasks it started went with it).
    let pids = r[0].exec("pgrep", &["-f", &conf_path.display().to_string()]);
    assert!(!pids.status.success(), "lbd processes left: {}", String::from_utf8_lossy(&pids.stdout));
}

/// `net.ipv4.conf.INTERFACE.arp_ignore` and `arp_filter` in `ns` (set while a VMAC is on it).
fn arp_settings(ns: &Netns, interface: &str) -> [String; 2] {
    ["arp_ignore", "arp_filter"].map(|key| {
        let out = ns.exec("cat", &[&format!("/proc/sys/net/ipv4/conf/{interface}/{key}")]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    })
}

/// Two VRRPv3 instances for reload tests: VI_1 (VRID SUBNET, VIP 10.SUBNET.0.100, `extra`),
/// which a reload keeps, and VI_2 (VRID SUBNET+1, VIP 10.SUBNET.0.110) at `priority`, which
/// a reload changes when `priority` does (so VRRP restarts).
fn kept_and_changing(subnet: u8, extra: &str, priority: u8) -> [String; 2] {
    [
        instance(
            "VI_1",
            subnet,
            150,
            "0.2",
            &[&format!("10.{subnet}.0.100/24")],
            &format!("  version 3\n{extra}"),
        ),
        instance("VI_2", subnet + 1, priority, "0.2", &[&format!("10.{subnet}.0.110/24")], "  version 3\n"),
    ]
}

/// [`kept_and_changing`] with use_vmac on VI_1, and VI_6 (VRID SUBNET+2, VIP
/// fd00:SUBNET::100), an IPv6 instance with use_vmac that a reload keeps too.
fn vmac_masters(subnet: u8, priority: u8) -> String {
    let [kept, changing] = kept_and_changing(subnet, "  use_vmac\n", priority);
    let v6 = instance(
        "VI_6",
        subnet + 2,
        150,
        "0.2",
        &[&format!("fd00:{subnet}::100/64")],
        "  version 3\n  use_vmac\n",
    );
    config("r1", "", &[kept, changing, v6])
}

/// Reloads `lbd` (label `lbd`) once per priority of `priorities` with `conf` of it, each time
/// waiting until VI_1 is kept in MASTER, then `pause`.
fn reload_keeping_vi_1(
    lab: &Lab,
    lbd: &lb_tests::process::Proc,
    conf: impl Fn(u8) -> String,
    priorities: &[u8],
    pause: Duration,
) {
    let kept = lbd.log().matches("(VI_1) kept in MASTER STATE across the reload").count();
    for (reload, &priority) in priorities.iter().enumerate() {
        lab.write_file("lbd.conf", &conf(priority));
        lbd.signal(nix::sys::signal::Signal::SIGHUP);
        wait_until(Duration::from_secs(5), "the reload", || {
            lbd.log().matches("(VI_1) kept in MASTER STATE across the reload").count() > kept + reload
        });
        std::thread::sleep(pause);
    }
}

/// The (time, value) samples of a sampler's output `text` (lines "EPOCH VALUE").
fn timed_samples(text: &str) -> Vec<(f64, String)> {
    text.lines()
        .filter_map(|l| {
            let (at, value) = l.split_once(' ')?;
            Some((at.parse().ok()?, value.to_owned()))
        })
        .collect()
}

/// `/sys/class/net/NAME/ifindex` in `ns`.
fn ifindex(ns: &Netns, name: &str) -> String {
    let out = ns.exec("cat", &[&format!("/sys/class/net/{name}/ifindex")]);
    assert!(out.status.success(), "no {name} in {}", ns.name());
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn a_reload_keeps_unchanged_use_vmac_masters_vmacs_and_vips_without_a_gap() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 84, 2);
    // VI_2 changes at each reload (so VRRP restarts); VI_1 and VI_6, with use_vmac, do not.
    let conf = |priority: u8| vmac_masters(84, priority);
    let w1 = VipWatch::start(&r[0], "r1", ip4(84, 100));
    let w6 = VipWatch::start(&r[0], "r1-6", "fd00:84::100".parse().unwrap_or(ip4(84, 100)));
    assert_eq!(arp_settings(&r[0], "eth0"), ["0", "0"]);
    let mut lbd = start_lbd(&mut lab, &r[0], "lbd", &conf(150));
    w1.wait_for(true, Duration::from_secs(5));
    w6.wait_for(true, Duration::from_secs(5));
    let vmacs = || (ifindex(&r[0], "vrrp.84"), ifindex(&r[0], "vrrp.86"));
    let before = vmacs();
    // The parent must not answer ARP for the VMACs' VIPs at any moment of the reloads.
    assert_eq!(arp_settings(&r[0], "eth0"), ["1", "1"]);
    // Each sample with its time (bash's clock, no process per sample).
    let arp_ignore = r[0].spawn(
        "arp-ignore",
        "bash",
        &[
            "-c",
            "while :; do read v < /proc/sys/net/ipv4/conf/eth0/arp_ignore; echo \"$EPOCHREALTIME $v\"; \
             sleep 0.002; done",
        ],
    );
    let monitor = r[0].spawn("ip-monitor", "ip", &["-o", "monitor", "link", "address"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(pings(&r[1], "10.84.0.100"), "the VIP does not answer:\n{}", lbd.log());
    // 10 ms apart, all through the reloads (however long they take), until stopped.
    let mut ping = r[1].spawn("ping", "ping", &["-n", "-i", "0.01", "10.84.0.100"]);
    std::thread::sleep(Duration::from_millis(300));
    let reloads_began = std::time::SystemTime::now();
    reload_keeping_vi_1(&lab, &lbd, conf, &[140, 150, 140, 150, 140], Duration::from_millis(400));
    let reloads_ended = std::time::SystemTime::now();
    ping.signal(nix::sys::signal::Signal::SIGINT);
    let status = ping.wait(Duration::from_secs(10));
    let (pinged, log, events) = (ping.log(), lbd.log(), monitor.log());
    assert_eq!(log.matches("(VI_6) kept in MASTER STATE across the reload").count(), 5, "{log}");
    // Exact: neither VMAC nor their VIPs went at any moment (VI_2's VIP, on eth0, does).
    let deleted: Vec<&str> = events
        .lines()
        .filter(|l| l.starts_with("Deleted") && (l.contains("vrrp.8") || l.contains("10.84.0.100")))
        .collect();
    assert!(deleted.is_empty(), "deleted during the reloads: {deleted:#?}\n{log}");
    assert!(events.contains("Deleted") && events.contains("10.84.0.110"), "no event seen:\n{events}");
    assert_eq!(vmacs(), before, "a VMAC made anew:\n{events}");
    assert_eq!(log.matches("(vmac) vrrp.84 created on eth0").count(), 1, "{log}");
    assert_eq!(log.matches("(vmac) vrrp.84 on eth0 already there").count(), 5, "{log}");
    // And the client saw no gap (pings 10 ms apart: a loss beyond one is not noise).
    let summary = |suffix: &str| {
        pinged
            .lines()
            .find_map(|l| l.split(", ").find_map(|part| part.strip_suffix(suffix)?.parse::<u32>().ok()))
            .unwrap_or_else(|| panic!("no ping summary ({status:?}):\n{pinged}"))
    };
    let (sent, received) = (summary(" packets transmitted"), summary(" received"));
    assert!(sent >= 100, "{sent} pings sent:\n{pinged}");
    assert!(received + 1 >= sent, "{received} of {sent} pings answered:\n{pinged}\n{log}");
    w1.assert_steady(true, Duration::from_millis(100));
    w6.assert_steady(true, Duration::from_millis(100));
    let samples = timed_samples(&arp_ignore.log());
    drop(arp_ignore);
    // The samples span the reloads, from before the first to after the last.
    let epoch =
        |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    let (first, last) = (samples.first().map_or(f64::MAX, |s| s.0), samples.last().map_or(0.0, |s| s.0));
    assert!(
        first < epoch(reloads_began) && last > epoch(reloads_ended),
        "arp_ignore sampled from {first} to {last}, the reloads ran from {} to {}",
        epoch(reloads_began),
        epoch(reloads_ended)
    );
    assert!(samples.iter().all(|(_, v)| v == "1"), "eth0's arp_ignore went back during a reload:\n{log}");
    // The watchers (every 5 ms) saw each VIP arrive once and never leave.
    for watch in [&w1, &w6] {
        let changes: Vec<bool> =
            watch.timeline().into_iter().map(|(_, holds)| holds).skip_while(|h| !h).collect();
        assert_eq!(changes, [true], "{log}");
    }
    // keepalived puts the parent's settings back as it stops.
    terminate(&mut lbd, "lbd");
    assert_eq!(arp_settings(&r[0], "eth0"), ["0", "0"], "eth0's arp_ignore, arp_filter not restored");
}

#[test]
fn without_a_configured_source_ipv6_adverts_follow_the_interface_s_link_local_address() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 85, 3);
    let vip: std::net::IpAddr = "fd00:85::100".parse().unwrap_or(ip4(85, 100));
    let conf = |priority: u8| {
        config("r", "", &[instance("VI_6", 85, priority, "0.2", &["fd00:85::100/64"], "  version 3\n")])
    };
    let (w1, w2) = (VipWatch::start(&r[0], "r1", vip), VipWatch::start(&r[1], "r2", vip));
    let w3 = VipWatch::start(&r[2], "r3", vip);
    let adverts = tcpdump(&r[1], &["-i", "eth0", "-nn", "-l", "ip6", "proto", "112"]);
    let first = r[0].link_local("eth0").to_string();
    let lbd = start_lbd(&mut lab, &r[0], "lbd1", &conf(150));
    w1.wait_for(true, Duration::from_secs(5));
    // Two backups: another lbd and keepalived 2.2.7.
    let _peer = start_lbd(&mut lab, &r[1], "lbd2", &conf(100));
    let _keepalived = start_keepalived(&lab, &r[2], "keepalived3", &conf(50));
    let from = |source: &str| adverts.log().lines().any(|l| l.contains(&format!("IP6 {source} > ff02::12")));
    wait_until(Duration::from_secs(2), "adverts from eth0's link-local address", || from(&first));
    // Another link-local address, then the first one gone: the adverts move to it, and the peer
    // keeps seeing its master (no FAULT, no takeover).
    r[0].ip(&["addr", "add", "fe80::85:9/64", "dev", "eth0", "nodad"]);
    r[0].ip(&["addr", "del", &format!("{first}/64"), "dev", "eth0"]);
    wait_until(Duration::from_secs(2), "adverts from fe80::85:9", || from("fe80::85:9"));
    w1.assert_steady(true, Duration::from_millis(800));
    assert!(w2.timeline().iter().all(|(_, holds)| !holds), "r2 took over:\n{}", lbd.log());
    assert!(w3.timeline().iter().all(|(_, holds)| !holds), "keepalived took over:\n{}", lbd.log());
    let log = lbd.log();
    assert!(log.contains(&format!("Deassigned address {first} from interface eth0")), "{log}");
    assert!(log.contains("(VI_6) adverts now from fe80::85:9") && !log.contains("FAULT"), "{log}");
    // No link-local address left: FAULT, and the peer takes over.
    r[0].ip(&["addr", "del", "fe80::85:9/64", "dev", "eth0"]);
    w2.wait_for(true, Duration::from_secs(3));
    w1.wait_for(false, Duration::from_secs(2));
    wait_until(Duration::from_secs(2), "FAULT", || lbd.log().contains("(VI_6) Entering FAULT STATE"));
    // A new one, through duplicate address detection (about a second): taken once it is out of
    // it (a socket cannot be bound to a tentative address), then MASTER again from it.
    r[0].sysctl("net.ipv6.conf.eth0.accept_dad", "1");
    r[0].ip(&["addr", "add", "fe80::85:10/64", "dev", "eth0"]);
    let shown = r[0].ip(&["-6", "addr", "show", "dev", "eth0"]);
    assert!(shown.contains("tentative"), "no duplicate address detection:\n{shown}");
    w1.wait_for(true, Duration::from_secs(5));
    wait_until(Duration::from_secs(2), "adverts from fe80::85:10", || from("fe80::85:10"));
    let log = lbd.log();
    assert!(log.contains("Assigned address fe80::85:10 for interface eth0"), "{log}");
    assert!(!log.contains("cannot send from"), "a tentative address was tried:\n{log}");
    assert_eq!(log.matches("Entering FAULT STATE").count(), 1, "{log}");
}

#[test]
fn a_reload_removes_the_vmacs_of_instances_it_deletes_or_takes_use_vmac_from() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 86, 1);
    let vmac = |vrid: u8| {
        instance("VI_1", vrid, 150, "0.2", &[&format!("10.86.0.{vrid}/24")], "  version 3\n  use_vmac\n")
            .replace("VI_1", &format!("VI_{vrid}"))
    };
    let plain = |vrid: u8| {
        instance(&format!("VI_{vrid}"), vrid, 150, "0.2", &[&format!("10.86.0.{vrid}/24")], "  version 3\n")
    };
    let w1 = VipWatch::start(&r[0], "r1", ip4(86, 87));
    let mut lbd = start_lbd(&mut lab, &r[0], "lbd", &config("r1", "", &[vmac(86), vmac(87), vmac(88)]));
    w1.wait_for(true, Duration::from_secs(5));
    let kept = ifindex(&r[0], "vrrp.87");
    // VI_86 deleted, VI_88 without use_vmac now, VI_87 unchanged.
    lab.write_file("lbd.conf", &config("r1", "", &[vmac(87), plain(88)]));
    lbd.signal(nix::sys::signal::Signal::SIGHUP);
    wait_until(Duration::from_secs(5), "the reload", || {
        lbd.log().contains("(VI_87) kept in MASTER STATE across the reload")
    });
    wait_until(Duration::from_secs(3), "vrrp.86 and vrrp.88 removed", || {
        r[0].try_ip(&["link", "show", "vrrp.86"]).is_err()
            && r[0].try_ip(&["link", "show", "vrrp.88"]).is_err()
    });
    assert_eq!(ifindex(&r[0], "vrrp.87"), kept, "{}", lbd.log());
    w1.assert_steady(true, Duration::from_millis(300));
    terminate(&mut lbd, "lbd");
    assert!(r[0].try_ip(&["link", "show", "vrrp.87"]).is_err(), "vrrp.87 left after the stop");
}

#[test]
fn disable_local_igmp_keeps_reloads_off_the_wire_too() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 87, 2);
    let igmp = tcpdump(&r[1], &["-i", "eth0", "-nn", "-l", "igmp"]);
    let conf = |priority: u8| config("r1", "  disable_local_igmp\n", &kept_and_changing(87, "", priority));
    let w1 = VipWatch::start(&r[0], "r1", ip4(87, 100));
    let mut lbd = start_lbd(&mut lab, &r[0], "lbd", &conf(150));
    w1.wait_for(true, Duration::from_secs(5));
    reload_keeping_vi_1(&lab, &lbd, conf, &[140, 150, 140], Duration::ZERO);
    std::thread::sleep(Duration::from_millis(500));
    // Neither a leave as the old engine's socket closes nor a join as the new one's opens.
    assert!(!igmp.log().contains("10.87.0.1 > "), "r1 reported its group:\n{}", igmp.log());
    // The last engine puts the setting back.
    terminate(&mut lbd, "lbd");
    let out = r[0].exec("cat", &["/proc/sys/net/ipv4/igmp_link_local_mcast_reports"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
}

#[test]
fn a_reload_sends_no_igmp_or_mld_report_from_a_kept_vmac() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 89, 2);
    let conf = |priority: u8| vmac_masters(89, priority);
    let w1 = VipWatch::start(&r[0], "r1", ip4(89, 100));
    let mut lbd = start_lbd(&mut lab, &r[0], "lbd", &conf(150));
    w1.wait_for(true, Duration::from_secs(5));
    // MLD reports carry a hop-by-hop header: "ip6", not "icmp6".
    let reports = tcpdump(&r[1], &["-i", "eth0", "-e", "-nn", "-l", "igmp or ip6"]);
    reload_keeping_vi_1(&lab, &lbd, conf, &[140, 150, 140], Duration::ZERO);
    std::thread::sleep(Duration::from_millis(500));
    let log = reports.log();
    // keepalived's rules send them through the parent: from its MAC, never the virtual MAC (which
    // would move the switches' entry for it) as the old sockets leave and the new ones join:
    // IGMP for the IPv4 instance's VMAC, MLD for the IPv6 one's (the rules keepalived makes; the
    // IPv4 VMAC's own link-local address is the kernel's business).
    let from_vmac: Vec<&str> = log
        .lines()
        .filter(|l| {
            (l.contains("00:00:5e:00:01:59 >") && l.contains("igmp"))
                || (l.contains("00:00:5e:00:02:5b >") && l.contains("multicast listener"))
        })
        .collect();
    assert!(from_vmac.is_empty(), "reports from a VMAC: {from_vmac:#?}\n{}", lbd.log());
    assert!(log.contains("igmp v3 report"), "no report seen at all:\n{log}");
    terminate(&mut lbd, "lbd");
}

/// A reload keeping `r1`'s VI_1 (MASTER, `extra`) whose new engine cannot start: lbd stops,
/// and VI_1 stops as an orderly stop stops it (priority 0, its VIP gone at once), so `r2`'s
/// backup takes over within its Skew_Time, not its Master_Down_Interval, and never both hold
/// the VIP.
fn a_failed_reload_releases_the_kept_master(subnet: u8, extra: &str) {
    let mut lab = Lab::new();
    let r = lan(&mut lab, subnet, 2);
    let vip = ip4(subnet, 100);
    // advert_int 1: Master_Down_Interval 3.6 s for the backup, Skew_Time 0.6 s.
    let conf = |priority: u8| {
        let blocks = [
            instance(
                "VI_1",
                subnet,
                150,
                "1",
                &[&format!("10.{subnet}.0.100/24")],
                &format!("  version 3\n{extra}"),
            ),
            instance("VI_2", subnet + 1, priority, "1", &[&format!("10.{subnet}.0.110/24")], "  version 3\n"),
        ];
        config("r1", "", &blocks)
    };
    let (w1, w2) = (VipWatch::start(&r[0], "r1", vip), VipWatch::start(&r[1], "r2", vip));
    let mut master = start_lbd(&mut lab, &r[0], "lbd1", &conf(150));
    w1.wait_for(true, Duration::from_secs(8));
    let backup_conf = config(
        "r2",
        "",
        &[instance(
            "VI_1",
            subnet,
            100,
            "1",
            &[&format!("10.{subnet}.0.100/24")],
            &format!("  version 3\n{extra}"),
        )],
    );
    let _backup = start_lbd(&mut lab, &r[1], "lbd2", &backup_conf);
    std::thread::sleep(Duration::from_secs(2));
    assert!(w1.holds() && !w2.holds(), "{}", master.log());
    // eth0 renamed under the running lbd (its VIP stays on it): VI_1 is unchanged, so the
    // reload keeps it, but the new engine finds no eth0 for any instance.
    r[0].ip(&["link", "set", "eth0", "name", "eth9"]);
    lab.write_file("lbd1.conf", &conf(140));
    let reloaded = std::time::Instant::now();
    master.signal(nix::sys::signal::Signal::SIGHUP);
    let status = master.wait(Duration::from_secs(10));
    let log = master.log();
    assert!(!status.success(), "lbd exited with {status:?}:\n{log}");
    assert!(log.contains("no VRRP instance can run"), "{log}");
    let gone = w1.wait_for(false, Duration::from_secs(5));
    let taken = w2.wait_for(true, Duration::from_secs(8));
    let (gone, taken) = (gone.saturating_duration_since(reloaded), taken.saturating_duration_since(reloaded));
    // At once, and in about the backup's Skew_Time (0.6 s), well under its 3.6 s.
    assert!(gone < Duration::from_secs(1), "the VIP left after {}:\n{log}", vrrp_kit::ms(gone));
    assert!(taken < Duration::from_millis(2000), "taken over after {}:\n{log}", vrrp_kit::ms(taken));
    let both = vrrp_kit::longest_double_holding(&w1, &w2, std::time::Instant::now());
    assert_eq!(both, Duration::ZERO, "both held the VIP:\n{log}");
    assert!(log.contains("(VI_1) sent 0 priority"), "{log}");
    if !extra.is_empty() {
        assert!(r[0].try_ip(&["link", "show", &format!("vrrp.{subnet}")]).is_err(), "VMAC left:\n{log}");
        // (eth0's arp_ignore / arp_filter cannot be put back: lbd knows them by the old name.)
    }
    assert!(ruleset(&r[0]).trim().is_empty(), "tables left behind:\n{}\n{log}", ruleset(&r[0]));
}

#[test]
fn a_reload_that_cannot_start_stops_the_masters_it_kept_in_order() {
    a_failed_reload_releases_the_kept_master(66, "");
}

#[test]
fn a_reload_that_cannot_start_stops_the_use_vmac_masters_it_kept_in_order() {
    a_failed_reload_releases_the_kept_master(68, "  use_vmac\n");
}

#[test]
fn a_reload_moving_a_use_vmac_instance_to_another_interface_moves_its_vmac() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 69, 2);
    // A second LAN on eth1.
    let switch = lab.netns("sw2");
    for (i, router) in r.iter().enumerate() {
        lab.plug(&switch, "br0", router, "eth1", &format!("q{}", i + 1));
        router.addr("eth1", &format!("10.70.0.{}/24", i + 1));
    }
    let conf = |interface: &str, vip: &str| {
        let block = instance("VI_1", 69, 150, "0.2", &[vip], "  version 3\n  use_vmac\n");
        config("r1", "", &[block.replace("interface eth0", &format!("interface {interface}"))])
    };
    let parent = || {
        let out = r[0].exec("ip", &["-o", "link", "show", "vrrp.69"]);
        String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).unwrap_or_default().to_owned()
    };
    let lbd = start_lbd(&mut lab, &r[0], "lbd", &conf("eth0", "10.69.0.100/24"));
    wait_until(Duration::from_secs(5), "VI_1 on vrrp.69", || pings(&r[1], "10.69.0.100"));
    assert_eq!(parent(), "vrrp.69@eth0:");
    // The same VRID on eth1: vrrp.69 by name still, but on another parent.
    let adverts = tcpdump(&r[1], &["-i", "eth1", "-e", "-nn", "-l", "ip", "proto", "112"]);
    lab.write_file("lbd.conf", &conf("eth1", "10.70.0.100/24"));
    lbd.signal(nix::sys::signal::Signal::SIGHUP);
    wait_until(Duration::from_secs(5), "VI_1's VIP on eth1's LAN", || pings(&r[1], "10.70.0.100"));
    let log = lbd.log();
    assert_eq!(parent(), "vrrp.69@eth1:", "{log}");
    wait_until(Duration::from_secs(3), "adverts from the VMAC on eth1", || {
        adverts
            .log()
            .lines()
            .any(|l| l.contains("00:00:5e:00:01:45 > 01:00:5e:00:00:12") && l.contains("10.70.0.1 >"))
    });
}

#[test]
fn an_ipv6_instance_whose_only_link_local_address_is_in_dad_waits_for_it() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 67, 1);
    let vip: std::net::IpAddr = "fd00:67::100".parse().unwrap_or(ip4(67, 100));
    let w = VipWatch::start(&r[0], "r1", vip);
    // eth0's only link-local address, in duplicate address detection for about 3 s.
    r[0].ip(&["-6", "addr", "flush", "dev", "eth0", "scope", "link"]);
    r[0].sysctl("net.ipv6.conf.eth0.accept_dad", "1");
    r[0].sysctl("net.ipv6.conf.eth0.dad_transmits", "3");
    r[0].ip(&["-6", "addr", "add", "fe80::67:1/64", "dev", "eth0"]);
    let tentative = || {
        let out = r[0].exec("ip", &["-6", "addr", "show", "dev", "eth0", "scope", "link"]);
        String::from_utf8_lossy(&out.stdout).contains("tentative")
    };
    assert!(tentative(), "fe80::67:1 not tentative");
    let conf = config("r1", "", &[instance("VI_6", 67, 150, "0.2", &["fd00:67::100/64"], "  version 3\n")]);
    let mut lbd = start_lbd(&mut lab, &r[0], "lbd", &conf);
    assert!(tentative(), "DAD over before lbd started: the test shows nothing");
    // FAULT meanwhile (no VIP), MASTER from fe80::67:1 once DAD is over.
    w.wait_for(true, Duration::from_secs(8));
    let log = lbd.log();
    assert!(!tentative(), "MASTER before DAD was over:\n{log}");
    assert!(log.contains("(VI_6) fe80::67:1 is in duplicate address detection"), "{log}");
    assert!(log.contains("(VI_6) adverts now from fe80::67:1"), "{log}");
    lbd.assert_running();
    terminate(&mut lbd, "lbd");
}

#[test]
fn a_reload_switching_a_use_vmac_instance_between_ipv4_and_ipv6_remakes_its_vmac_with_the_family_s_mac() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 82, 2);
    r[1].addr("eth0", "fd00:82::2/64");
    let conf = |vip: &str| {
        config("r1", "", &[instance("VI_1", 82, 150, "0.2", &[vip], "  version 3\n  use_vmac\n")])
    };
    // vrrp.82's MAC: 00:00:5e:00:01:52 for IPv4, 00:00:5e:00:02:52 for IPv6 (VRID 82 = 0x52).
    let mac = || {
        let out = r[0].exec("ip", &["-o", "link", "show", "vrrp.82"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split_whitespace().skip_while(|w| *w != "link/ether").nth(1).unwrap_or_default().to_owned()
    };
    let mut lbd = start_lbd(&mut lab, &r[0], "lbd", &conf("10.82.0.100/24"));
    wait_until(Duration::from_secs(5), "the IPv4 VIP on vrrp.82", || pings(&r[1], "10.82.0.100"));
    assert_eq!(mac(), "00:00:5e:00:01:52", "{}", lbd.log());
    for (vip, address, family_mac, filter) in [
        ("fd00:82::100/64", "fd00:82::100", "00:00:5e:00:02:52", ["ip6", "proto", "112"]),
        ("10.82.0.100/24", "10.82.0.100", "00:00:5e:00:01:52", ["ip", "proto", "112"]),
    ] {
        let adverts = tcpdump(&r[1], &["-i", "eth0", "-e", "-nn", "-l", filter[0], filter[1], filter[2]]);
        lab.write_file("lbd.conf", &conf(vip));
        lbd.signal(nix::sys::signal::Signal::SIGHUP);
        wait_until(Duration::from_secs(5), "the VIP of the other family", || pings(&r[1], address));
        let log = lbd.log();
        assert_eq!(mac(), family_mac, "{log}");
        wait_until(Duration::from_secs(3), "adverts from the family's VMAC", || {
            adverts.log().contains(&format!(" {family_mac} > "))
        });
        let other = if address.contains(':') { "10.82.0.100" } else { "fd00:82::100" };
        assert!(!pings(&r[1], other), "the old family's VIP {other} still answers:\n{log}");
    }
    terminate(&mut lbd, "lbd");
    assert!(r[0].try_ip(&["link", "show", "vrrp.82"]).is_err(), "vrrp.82 left after the stop");
}
