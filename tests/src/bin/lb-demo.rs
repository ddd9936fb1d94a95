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
//! It grows with the features: today lbd loads the XDP program on both nodes and counts what
//! crosses them, while lb1 routes the client's requests to the web servers.

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
};

/// The configuration both load balancers run.
const CONFIG: &str = include_str!("demo-keepalived.conf");

fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let mut lab = Lab::new();
    println!("Building the topology in network namespaces ({}-*):", lab.dir().display());
    let switch = lab.netns("switch");
    let client = lab.netns("client");
    lab.plug(&switch, "front", &client, "eth0", "client");
    client.addr("eth0", "10.100.0.10/24");
    client.ip(&["route", "add", "10.200.0.0/24", "via", "10.100.0.2"]);
    println!("  client  10.100.0.10 on the front network");

    let mut lbs = Vec::new();
    for (i, name) in ["lb1", "lb2"].into_iter().enumerate() {
        let ns = lab.netns(name);
        lab.plug(&switch, "front", &ns, "eth0", &format!("{name}-f"));
        lab.plug(&switch, "back", &ns, "eth1", &format!("{name}-b"));
        ns.addr("eth0", &format!("10.100.0.{}/24", 2 + i));
        ns.addr("eth1", &format!("10.200.0.{}/24", 2 + i));
        ns.sysctl("net.ipv4.ip_forward", "1");
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
        ns.ip(&["route", "add", "default", "via", "10.200.0.2"]);
        let server = ns.spawn("web", bins::web(), &[&name, &format!("{addr}:80")]);
        println!("  {name}    {addr}:80 (answers with its name)");
        webs.push((addr, ns, server));
    }

    let config = lab.write_file("keepalived.conf", CONFIG);
    println!("\nStarting lbd on lb1 and lb2 with the embedded keepalived.conf:");
    let mut daemons = Vec::new();
    for (name, ns) in &lbs {
        let pin_dir = lab.bpffs().join("lbd");
        let lbd = ns.spawn(
            "lbd",
            bins::lbd(),
            &[
                "-n",
                "-l",
                "-i",
                name,
                "-f",
                &config.display().to_string(),
                "--bpf-pin-path",
                &pin_dir.display().to_string(),
            ],
        );
        daemons.push((*name, ns.clone(), lbd, pin_dir));
    }
    for (name, _, lbd, _) in &mut daemons {
        wait_until(Duration::from_secs(15), &format!("lbd on {name} to attach XDP"), || {
            lbd.assert_running();
            lbd.log().matches("XDP program attached").count() == 2
        });
        for line in lbd.log().lines().filter(|l| l.contains("attached")) {
            println!("  {name}: {}", strip_log_prefix(line));
        }
    }

    println!("\nThe client sends 9 HTTP requests, 3 to each web server, routed through lb1:");
    let mut answers = BTreeMap::<String, u32>::new();
    for round in 0..3 {
        for (addr, _, server) in &mut webs {
            server.assert_running();
            let body = curl(&client, &format!("http://{addr}/"))
                .with_context(|| format!("request {round} to {addr}"))?;
            *answers.entry(body.trim().to_owned()).or_default() += 1;
        }
    }
    for (server, count) in &answers {
        println!("  {server} answered {count} requests");
    }

    println!("\nWhat the XDP program counted (bpftool map dump pinned .../{GLOBAL_STATS}):");
    for (name, _, lbd, pin_dir) in &mut daemons {
        lbd.assert_running();
        let stats = bpftool_stats(&pin_dir.join(GLOBAL_STATS))?;
        println!("  {name}: {stats}");
    }

    println!("\nStopping lbd on both nodes (SIGTERM):");
    for (name, ns, lbd, pin_dir) in &mut daemons {
        lbd.signal(nix::sys::signal::Signal::SIGTERM);
        let status = lbd.wait(Duration::from_secs(10));
        if !status.success() {
            bail!("lbd on {name} exited with {status}:\n{}", lbd.log());
        }
        let attached = ns.ip(&["-d", "link", "show"]).contains("prog/xdp");
        println!(
            "  {name}: exited cleanly; XDP {}; pins {}",
            if attached { "still attached (!)" } else { "detached" },
            if pin_dir.join(GLOBAL_STATS).exists() { "left behind (!)" } else { "removed" }
        );
    }
    drop(daemons);
    drop(webs);
    drop(lab);
    println!("\nTopology removed. Demo done in {:.1} s.", started.elapsed().as_secs_f64());
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
