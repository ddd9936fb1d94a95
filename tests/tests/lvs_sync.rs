//! `lvs_sync_daemon`: two lbd load balancers in a VRRP pair; the master multicasts its
//! connection table (IPVS sync protocol v1), the backup writes it into its own, so that when
//! the master is killed (kill -9) and the backup takes the VIP, established connections keep
//! their real servers. Without the sync, the backup schedules the first packets it sees of
//! those connections afresh (round robin), and most land on a real server that resets them.
//!
//! ```text
//!  client 10.30.0.2 ── [front] ── lb1 10.30.0.1 / lb2 10.30.0.3 (VRRP 10.30.0.254) ── [back] ── r1 .11  r2 .12  r3 .13
//!     lb1 10.31.0.1, lb2 10.31.0.2
//!  VIP 10.40.0.100:80 (DR, rr); the client routes 10.40.0.0/24 via 10.30.0.254; the real
//!  servers answer the client directly through lb2's kernel (it stays up).
//! ```
#![expect(clippy::unwrap_used, reason = "tests: a failed step is a failed test")]

use std::time::{Duration, Instant};

use lb_tests::{
    bins,
    lab::{Lab, Netns, wait_until},
    process::Proc,
    xdp::dr_tun_real,
};

/// Connections opened through the VIP.
const CONNECTIONS: usize = 12;
/// Lines each transfer streams, one per 100 ms.
const LINES: u32 = 150;

/// lb1 (150) takes `lvs_sync_daemon` in global_defs, lb2 (100) keepalived's deprecated
/// `lvs_sync_daemon_interface` in its instance (same sync id: the default is the VRID, 42).
fn config(priority: u8, sync: bool) -> String {
    let (sync, deprecated) = match (sync, priority) {
        (false, _) => ("", ""),
        (true, 150) => ("    lvs_sync_daemon eth0 VI_1 id 42\n", ""),
        (true, _) => ("", "    lvs_sync_daemon_interface eth0\n"),
    };
    let reals: String = (1..=3).map(|i| format!("    real_server 10.31.0.1{i} 80 {{\n    }}\n")).collect();
    format!(
        "global_defs {{\n    router_id lbt-sync-{priority}\n{sync}}}\n\
         vrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 42\n    \
         priority {priority}\n    advert_int 0.2\n    version 3\n{deprecated}    virtual_ipaddress {{\n        \
         10.30.0.254/24\n    }}\n}}\n\
         virtual_server 10.40.0.100 80 {{\n    lb_algo rr\n    lb_kind DR\n    protocol TCP\n{reals}}}\n"
    )
}

struct Pair {
    lab: Lab,
    client: Netns,
    lbs: Vec<Netns>,
    reals: Vec<(Netns, Proc)>,
    /// Each started lbd's pin directory.
    pins: Vec<std::path::PathBuf>,
    _decaps: Vec<aya::Ebpf>,
    _switch: Netns,
}

fn pair() -> Pair {
    let mut lab = Lab::new();
    let switch = lab.netns("sw");
    let client = lab.netns("client");
    lab.plug(&switch, "front", &client, "eth0", "client");
    client.addr("eth0", "10.30.0.2/24");
    client.ip(&["route", "add", "10.40.0.0/24", "via", "10.30.0.254"]);
    let lbs: Vec<Netns> = (1..=2u8)
        .map(|i| {
            let lb = lab.netns(&format!("lb{i}"));
            lab.plug(&switch, "front", &lb, "eth0", &format!("lb{i}-f"));
            lab.plug(&switch, "back", &lb, "eth1", &format!("lb{i}-b"));
            lb.addr("eth0", &format!("10.30.0.{}/24", 2 * i - 1));
            lb.addr("eth1", &format!("10.31.0.{i}/24"));
            lb.sysctl("net.ipv4.ip_forward", "1");
            lb.sysctl("net.ipv4.conf.all.forwarding", "1");
            lb.sysctl("net.ipv4.conf.eth0.forwarding", "1");
            lb
        })
        .collect();
    let mut reals = Vec::new();
    let mut decaps = Vec::new();
    for i in 1..=3 {
        let name = format!("r{i}");
        let ns = lab.netns(&name);
        lab.plug(&switch, "back", &ns, "eth0", &name);
        ns.addr("eth0", &format!("10.31.0.1{i}/24"));
        ns.ip(&["route", "add", "default", "via", "10.31.0.2"]);
        decaps.push(dr_tun_real(&ns, &["10.40.0.100/32"]));
        let server = ns.spawn("web", bins::web(), &[&name, "0.0.0.0:80"]);
        reals.push((ns, server));
    }
    Pair { lab, client, lbs, reals, pins: Vec::new(), _decaps: decaps, _switch: switch }
}

impl Pair {
    fn start(&mut self, i: usize, sync: bool) -> Proc {
        let label = format!("lbd{}", i + 1);
        let conf =
            self.lab.write_file(&format!("{label}.conf"), &config(if i == 0 { 150 } else { 100 }, sync));
        let pin = self.lab.bpffs().join(&label);
        let mut lbd = bins::spawn_lbd(&self.lab, &self.lbs[i], &label, &conf, &pin, &[]);
        self.pins.push(pin);
        wait_until(Duration::from_secs(40), &format!("{label} to program its virtual servers"), || {
            lbd.assert_running();
            lbd.log().contains("data plane:")
        });
        lbd
    }

    fn holds_vip(&self, i: usize) -> bool {
        self.lbs[i].ip(&["-4", "addr", "show", "dev", "eth0"]).contains("10.30.0.254")
    }
}

/// How a transfer ended: every line from one real server, or broken.
fn outcome(transfer: &mut Proc) -> Result<String, String> {
    let status = transfer.wait(Duration::from_secs(60));
    let log = transfer.log();
    let got: Vec<&str> = log.lines().filter(|l| l.starts_with('r')).collect();
    let server = got.first().and_then(|l| l.split(' ').next()).unwrap_or("?").to_owned();
    let in_order = got.iter().enumerate().all(|(i, l)| *l == format!("{server} {i}"));
    if status.success() && got.len() == LINES as usize && in_order {
        Ok(server)
    } else {
        Err(format!("{} lines, {status:?}: {}", got.len(), log.lines().last().unwrap_or_default()))
    }
}

/// Opens the transfers through lb1, kills lb1 once lb2 has had time to learn them, waits for
/// lb2 to take the VIP, and returns each transfer's outcome with both logs.
fn failover(sync: bool) -> (Vec<Result<String, String>>, String, String) {
    let mut pair = pair();
    let mut lb1 = pair.start(0, sync);
    wait_until(Duration::from_secs(10), "lb1 to take the VIP", || pair.holds_vip(0));
    let lb2 = pair.start(1, sync);
    assert!(!pair.holds_vip(1), "lb2 took the VIP from lb1:\n{}", lb2.log());
    for (_, server) in &mut pair.reals {
        server.assert_running();
    }
    let url = "http://10.40.0.100/slow/".to_owned() + &LINES.to_string();
    let mut transfers: Vec<Proc> = (0..CONNECTIONS)
        .map(|i| pair.client.spawn(&format!("t{i}"), "curl", &["-sS", "-N", "--max-time", "60", &url]))
        .collect();
    // Every transfer under way (its first lines arrived), then two sync periods.
    wait_until(Duration::from_secs(10), "every transfer to start", || {
        transfers.iter().all(|t| t.log().starts_with('r'))
    });
    std::thread::sleep(Duration::from_millis(2_500));
    let learnt = tracked_flows(&pair.pins[1]);
    eprintln!("sync {sync}: lb2 tracks {learnt} flows to the VIP before the failover");
    if sync {
        assert_eq!(learnt, CONNECTIONS, "lb2 did not learn every connection:\n{}", lb2.log());
    } else {
        assert_eq!(learnt, 0, "lb2 tracks flows without the sync");
    }
    let killed = Instant::now();
    lb1.kill();
    wait_until(Duration::from_secs(5), "lb2 to take the VIP", || pair.holds_vip(1));
    eprintln!("sync {sync}: lb2 holds the VIP {} ms after kill -9 of lb1", killed.elapsed().as_millis());
    let outcomes = transfers.iter_mut().map(outcome).collect();
    (outcomes, lb1.log(), lb2.log())
}

/// The ORIGINAL entries for the VIP in the IPv4 connection table pinned under `pin_dir`.
fn tracked_flows(pin_dir: &std::path::Path) -> usize {
    use lb_common::lb::{Flow, FlowKey4, direction};
    let data = aya::maps::MapData::from_pin(pin_dir.join(lb_common::maps::CONNS4)).unwrap();
    let map = aya::maps::HashMap::<_, FlowKey4, Flow>::try_from(aya::maps::Map::LruHashMap(data)).unwrap();
    let vip = u32::from_ne_bytes([10, 40, 0, 100]);
    map.iter().flatten().filter(|(key, flow)| key.dst == vip && flow.direction == direction::ORIGINAL).count()
}

#[test]
fn with_the_sync_every_connection_survives_a_failover_on_its_real_server() {
    let (outcomes, log1, log2) = failover(true);
    let broken: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert!(
        broken.is_empty(),
        "{} of {CONNECTIONS} connections broke: {broken:?}\nlb1:\n{log1}\nlb2:\n{log2}",
        broken.len()
    );
    let servers: std::collections::BTreeSet<_> = outcomes.iter().flatten().collect();
    assert_eq!(servers.len(), 3, "round robin spread the connections over the three real servers");
    assert!(log1.contains("connection sync as master"), "lb1:\n{log1}");
    assert!(log2.contains("lvs_sync_daemon: first flows received from the master"), "lb2:\n{log2}");
    assert!(log2.contains("lvs_sync_daemon: now master"), "lb2:\n{log2}");
}

#[test]
fn without_the_sync_the_backup_sends_connections_to_other_real_servers() {
    let (outcomes, _, log2) = failover(false);
    let broken = outcomes.iter().filter(|o| o.is_err()).count();
    eprintln!("without lvs_sync_daemon: {broken} of {CONNECTIONS} connections broke after the failover");
    // Round robin over three real servers on lb2 picks each connection's own real for about a
    // third of them: all twelve surviving would take a mapping that round robin does not make.
    assert!(broken > 0, "no connection broke without the sync\nlb2:\n{log2}");
}
