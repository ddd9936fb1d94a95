//! The demo `cargo xtask demo` runs: a client, two load balancers running `lbd` with the
//! embedded keepalived.conf, and three web servers, each in its own network namespace, joined
//! by two bridges. It prints what happens and removes everything when it ends.
//!
//! ```text
//!   client 10.100.0.10 ── [front bridge] ── lb1 10.100.0.2 / lb2 10.100.0.3   (VIP 10.100.0.100)
//!                                           lb1 10.200.0.2 / lb2 10.200.0.3   (gateway VIP 10.200.0.1)
//!   web1 .11  web2 .12  web3 .13 ────────── [back bridge]
//! ```
//!
//! VRRP elects lb1 (priority 150) and puts both VIPs on it; the client's requests to the VIP
//! are spread round robin over the web servers by lb1's XDP program (NAT). Then lb1's lbd is
//! killed with SIGKILL: lb2 takes the VIPs over, lb1's VIPs expire by themselves (their kernel
//! lease is no longer renewed), and the requests flow through lb2.

use std::{
    collections::BTreeMap,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use lb_common::maps::GLOBAL_STATS;
use lb_tests::{
    bins,
    lab::{Lab, Netns, wait_until},
    process::Proc,
};
use nix::sys::signal::Signal;

/// The configuration both load balancers run.
const CONFIG: &str = include_str!("demo-keepalived.conf");
const VIP: &str = "10.100.0.100";

fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let mut lab = Lab::new();
    println!("Building the topology in network namespaces ({}-*):", lab.dir().display());
    let switch = lab.netns("switch");
    let client = lab.netns("client");
    lab.plug(&switch, "front", &client, "eth0", "client");
    client.addr("eth0", "10.100.0.10/24");
    println!("  client  10.100.0.10 on the front network");

    let mut lbs = Vec::new();
    for (i, name) in ["lb1", "lb2"].into_iter().enumerate() {
        let ns = lab.netns(name);
        lab.plug(&switch, "front", &ns, "eth0", &format!("{name}-f"));
        lab.plug(&switch, "back", &ns, "eth1", &format!("{name}-b"));
        ns.addr("eth0", &format!("10.100.0.{}/24", 2 + i));
        ns.addr("eth1", &format!("10.200.0.{}/24", 2 + i));
        println!("  {name}     10.100.0.{} (front), 10.200.0.{} (back)", 2 + i, 2 + i);
        lbs.push((name, ns));
    }

    let mut webs = Vec::new();
    for i in 1..=3 {
        let name = format!("web{i}");
        let ns = lab.netns(&name);
        lab.plug(&switch, "back", &ns, "eth0", &name);
        let addr = format!("10.200.0.1{i}");
        ns.addr("eth0", &format!("{addr}/24"));
        // The gateway is the back VIP: NAT replies return through whichever lb is master.
        ns.ip(&["route", "add", "default", "via", "10.200.0.1"]);
        let server = ns.spawn("web", bins::web(), &[&name, &format!("{addr}:80")]);
        println!("  {name}    {addr}:80 (answers with its name)");
        webs.push((addr, ns, server));
    }

    let config = lab.write_file("keepalived.conf", CONFIG);
    println!("\nStarting lbd on lb1 and lb2 with the embedded keepalived.conf (VIP {VIP}):");
    let mut daemons = Vec::new();
    for (name, ns) in &lbs {
        let pin_dir = lab.bpffs().join("lbd");
        let lbd = bins::spawn_lbd(&lab, ns, name, &config, &pin_dir, &["-i", name]);
        daemons.push((*name, ns.clone(), lbd, pin_dir));
    }
    let start = Instant::now();
    for (name, _, lbd, _) in &mut daemons {
        wait_until(Duration::from_secs(30), &format!("lbd on {name} to program its data plane"), || {
            lbd.assert_running();
            lbd.log().contains("data plane:")
        });
    }
    wait_until(Duration::from_secs(15), "lb1 to hold the VIP", || has_vip(&lbs[0].1));
    println!("  lb1 is MASTER and holds {VIP} after {:.2} s; lb2 is BACKUP", start.elapsed().as_secs_f64());
    for (name, _, lbd, _) in &daemons {
        for line in lbd.log().lines().filter(|l| l.contains("attached") || l.contains("STATE")) {
            println!("    {name}: {}", strip_log_prefix(line));
        }
    }

    println!("\nThe client sends 9 HTTP requests to http://{VIP}/ (round robin, NAT):");
    spread(&client, &mut webs)?;
    print_stats("lb1", &daemons[0].3)?;

    println!(
        "\nlb1's lbd, parent and children, is killed with SIGKILL (no goodbye advert, nothing cleaned up):"
    );
    let killed = Instant::now();
    daemons[0].2.kill();
    wait_until(Duration::from_secs(15), "lb2 to take the VIP over", || has_vip(&lbs[1].1));
    println!("  lb2 holds {VIP} after {:.2} s", killed.elapsed().as_secs_f64());
    wait_until(Duration::from_secs(15), "lb1's VIP lease to expire", || !has_vip(&lbs[0].1));
    println!(
        "  lb1's copy of {VIP} expired by itself after {:.2} s (kernel address lease; keepalived leaves it there)",
        killed.elapsed().as_secs_f64()
    );

    println!("\nThe client sends 9 more requests, now through lb2:");
    if let Err(e) = spread(&client, &mut webs) {
        print_stats("lb2", &daemons[1].3)?;
        println!("lb2's log:\n{}", daemons[1].2.log());
        return Err(e);
    }
    print_stats("lb2", &daemons[1].3)?;

    println!("\nStopping lbd on lb2 (SIGTERM):");
    let (_, ns, lbd, pin_dir) = &mut daemons[1];
    lbd.signal(Signal::SIGTERM);
    let status = lbd.wait(Duration::from_secs(10));
    if !status.success() {
        bail!("lbd on lb2 exited with {status}:\n{}", lbd.log());
    }
    let attached = ns.ip(&["-d", "link", "show"]).contains("prog/xdp");
    println!(
        "  lb2: exited cleanly; VIP {}; XDP {}; pins {}",
        if has_vip(ns) { "still there (!)" } else { "removed" },
        if attached { "still attached (!)" } else { "detached" },
        if pin_dir.join(GLOBAL_STATS).exists() { "left behind (!)" } else { "removed" }
    );
    drop(daemons);
    drop(webs);
    drop(lab);
    println!("\nTopology removed. Demo done in {:.1} s.", started.elapsed().as_secs_f64());
    Ok(())
}

fn has_vip(ns: &Netns) -> bool {
    ns.ip(&["-4", "-br", "addr", "show", "dev", "eth0"]).contains(&format!("{VIP}/"))
}

/// Nine requests to the VIP; prints which web server answered how often.
fn spread(client: &Netns, webs: &mut [(String, Netns, Proc)]) -> anyhow::Result<()> {
    for (_, _, server) in webs.iter_mut() {
        server.assert_running();
    }
    let mut answers = BTreeMap::<String, u32>::new();
    for round in 0..9 {
        let body = curl(client, &format!("http://{VIP}/")).with_context(|| format!("request {round}"))?;
        *answers.entry(body.trim().to_owned()).or_default() += 1;
    }
    for (server, count) in &answers {
        println!("  {server} answered {count} requests");
    }
    Ok(())
}

fn print_stats(name: &str, pin_dir: &std::path::Path) -> anyhow::Result<()> {
    println!("  {name}'s XDP counters (bpftool map dump pinned .../{GLOBAL_STATS}):");
    println!("    {}", bpftool_stats(&pin_dir.join(GLOBAL_STATS))?);
    Ok(())
}

fn curl(ns: &Netns, url: &str) -> anyhow::Result<String> {
    let out = ns.exec("curl", &["-sS", "--max-time", "5", url]);
    if !out.status.success() {
        bail!("curl {url}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The non-zero counters of a pinned stats map, summed over CPUs, as `name=value` pairs.
fn bpftool_stats(pin: &std::path::Path) -> anyhow::Result<String> {
    let out = Command::new("bpftool").args(["-j", "map", "dump", "pinned"]).arg(pin).output()?;
    if !out.status.success() {
        bail!("bpftool: {}", String::from_utf8_lossy(&out.stderr));
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let mut sums = BTreeMap::<String, u64>::new();
    for cpu in json[0]["formatted"]["values"].as_array().context("no BTF-formatted values")? {
        for (field, value) in cpu["value"].as_object().context("value is not a struct")? {
            *sums.entry(field.clone()).or_default() += value.as_u64().unwrap_or_default();
        }
    }
    Ok(sums.iter().filter(|(_, v)| **v != 0).map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "))
}

/// A log line without tracing's timestamp and level.
fn strip_log_prefix(line: &str) -> &str {
    line.split_once(" INFO ").map_or(line, |(_, rest)| rest.trim_start())
}
