//! Benchmarks. Each records its numbers, the command that reproduces them and a baseline
//! measured in the same run in BENCHMARKS.md.

use clap::Subcommand;

/// What to measure.
#[derive(Debug, Subcommand)]
pub enum Bench {
    /// Parse and validate 1,000 virtual servers x 100 real servers: `lbd -t` against
    /// `keepalived -t` on the same file.
    Config,
    /// The XDP program's cost per packet (BPF_PROG_TEST_RUN) in each forwarding method, new
    /// and established flows, with a trivial XDP_TX program as the floor; then the end-to-end
    /// forwarding rate over veth with a live-frames generator, against kernel forwarding and
    /// nftables DNAT. `LBD_BENCH_BASELINE_OBJECT=PATH` adds another build of the object (main's)
    /// to both, for a before / after comparison.
    Xdp,
    /// VRRP failover times (kill -9, SIGTERM) of lbd and keepalived in the same run, at
    /// advert_int 1, 0.1 and 0.01 s.
    Vrrp,
    /// Health checkers at delay_loop 1: 10,000 real servers with TCP_CHECK and 1,000 with
    /// HTTP_GET; CPU time per probe and RSS, with a bare connect as the floor.
    Checks,
    /// The connection sync's table walk, write and encoding for 100,000 flows, against a bare
    /// iteration of the same table (`lvs_sync_daemon`).
    Sync,
}

/// Runs one benchmark.
pub fn run(what: Bench) -> anyhow::Result<()> {
    match what {
        Bench::Config => crate::bench_config::run(&crate::root()),
        Bench::Xdp => xdp(),
        Bench::Vrrp => crate::bench_vrrp::run(&crate::root()),
        Bench::Checks => checks(),
        Bench::Sync => sync(),
    }
}

/// Builds the checker benchmark, runs it as root, and records its table.
fn checks() -> anyhow::Result<()> {
    crate::cmd::step("build the checker benchmark");
    crate::cmd::cargo(&["build", "--release", "--package", "lb-tests", "--bin", "lb-bench-checks"])?;
    crate::cmd::step("run it (a minute or so)");
    let bin = crate::root().join("target/release/lb-bench-checks");
    let out = std::process::Command::new(&bin).output()?;
    anyhow::ensure!(out.status.success(), "{}: {}", bin.display(), String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{table}");
    let section = format!(
        "## Health checkers: CPU per probe and memory\n\n\
         Command: `cargo xtask bench checks` (tests/src/bin/lb-bench-checks.rs). The real servers \
         are another host: a namespace joined to the checker's by a veth pair with a queue at each \
         end and NAPI threads receiving, where a server process accepts on 10.1.0.0/16:80 and \
         serves a page on 10.2.0.0/16:81. A checker process runs `lb_daemon::check::Runner` at \
         delay_loop 1 for 10 s after a 3 s warm-up; CPU is the checker process's time (user: lbd's \
         own work per probe; system: its system calls and its side of the handshakes; the \
         servers' side is received in the NAPI threads, as a NIC's frames are received outside \
         the checker); RSS is the checker process's, configuration included.\n\n\
         Machine: {}.\n\n{table}\n\
         The baseline is keepalived 2.2.7's own checker process on the same servers in the same \
         run: it refuses to run without IPVS, which this kernel lacks, so tests/bench/ipvs-shim.c \
         (LD_PRELOAD) answers its IPVS socket options as an empty IPVS table would; its CPU \
         includes the same kernel work as lbd's. The 1,000 TCP_CHECK baseline is also measured \
         with the servers on the checker's host (loopback), where this kernel (tick accounting) \
         charges the softirq work of both ends of each handshake to the checker that connects. \
         keepalived and lbd take turns over \
         several rounds (who goes first alternates) and the ratio is the median of the rounds', \
         shown with its range and the load average. Goal: at most half its CPU per check, under 64 MB RSS at 10,000 \
         servers. `LBD_BENCH_CHECKS=detect` runs the detection part \
         alone, `LBD_BENCH_CHECKS=baseline` the rounds against keepalived alone (they print their \
         tables, record nothing).\n",
        machine()
    );
    record("checks", &section)
}

/// Runs the ignored unit test that measures the sync's cost and records its numbers.
fn sync() -> anyhow::Result<()> {
    crate::build_ebpf()?;
    crate::cmd::step("measure the connection sync (lb-daemon unit test sync_cost_per_100k_flows)");
    let machine = machine();
    let out = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(crate::root())
        .args([
            "test",
            "-p",
            "lb-daemon",
            "--lib",
            "sync_cost_per_100k_flows",
            "--",
            "--ignored",
            "--nocapture",
        ])
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let line = stdout.lines().find(|l| l.starts_with("SYNC-COST")).unwrap_or_default();
    let value = |key: &str| -> anyhow::Result<f64> {
        let prefix = format!("{key}=");
        let word = line.split_whitespace().find_map(|w| w.strip_prefix(&prefix));
        Ok(word.ok_or_else(|| anyhow::anyhow!("no {key} in {line:?}"))?.parse()?)
    };
    let raw = value("raw_iter_ms")?;
    let row = |what: &str, ms: f64| {
        format!("| {what} | {ms:.1} | {:.2} | {:.2}x |\n", ms * 10.0 / 1000.0, ms / raw)
    };
    let table = format!(
        "| step (100,000 IPv4 DR flows) | ms | µs per flow | vs bare iteration |\n| --- | --- | --- | --- |\n{}{}{}{}{}",
        row("bare iteration of LBD_CONNS4 (baseline)", raw),
        row("master: walk to flows by address (`synced_flows`)", value("walk_ms")?),
        row("master: encode to IPVS sync v1 messages", value("encode_ms")?),
        row("backup: write received flows, new (`install_synced`)", value("install_ms")?),
        row("backup: the same flows again, known (a refresh)", value("known_ms")?),
    );
    print!("{table}");
    let section = format!(
        "## Connection sync (lvs_sync_daemon): cost per 100,000 flows\n\n\
         Command: `cargo xtask bench sync` (the ignored unit test \
         `dataplane::xdp::tests::sync_cost_per_100k_flows`, debug build, as root: loads the XDP object \
         with its maps pinned on a private bpffs, one DR service over 3 reals, writes 100,000 \
         flows as a backup would, then times a bare iteration of the table, the master's walk and \
         the encoding (best of 3 each), the first write (once) and a refresh (best of 3); {} messages of at most 1472 bytes).\n\n\
         Machine: {machine}.\n\n{table}\n\
         The walk costs what the map syscalls cost (one get-next-key and one lookup per entry): \
         the master walks every `REFRESH` (1 s), or every ten walk times when that is longer \
         (from about 20,000 flows on), so the sync never takes more than a tenth of a core.\n",
        value("messages")?
    );
    record("sync", &section)
}

/// Builds the XDP object and the bench binary, runs both of its parts as root, and records
/// their tables.
fn xdp() -> anyhow::Result<()> {
    crate::build_ebpf()?;
    crate::cmd::step("build the XDP benchmark");
    crate::cmd::cargo(&["build", "--release", "--package", "lb-tests", "--bin", "lb-bench-xdp"])?;
    let bin = crate::root().join("target/release/lb-bench-xdp");
    let baseline = std::env::var("LBD_BENCH_BASELINE_OBJECT").ok();
    let command = match &baseline {
        Some(path) => format!("LBD_BENCH_BASELINE_OBJECT={path} cargo xtask bench xdp"),
        None => "cargo xtask bench xdp".to_owned(),
    };
    let run = |part: &str| -> anyhow::Result<String> {
        crate::cmd::step(&format!("run it: {part}"));
        let out = std::process::Command::new(&bin).arg(part).output()?;
        anyhow::ensure!(out.status.success(), "{}: {}", bin.display(), String::from_utf8_lossy(&out.stderr));
        let table = String::from_utf8_lossy(&out.stdout).into_owned();
        print!("{table}");
        Ok(table)
    };
    let machine_before = machine();
    let table = run("per-packet")?;
    let verifier = run("verifier")?;
    let section = format!(
        "## XDP program: cost per packet (BPF_PROG_TEST_RUN)\n\n\
         Command: `{command}` (tests/src/bin/lb-bench-xdp.rs, part `per-packet`: one repeat=1 call \
         per frame on a fresh copy, in a namespace whose FIB lookups succeed; medians of the \
         kernel-reported durations; the floor is a trivial XDP_TX program measured in the same \
         run).\n\n\
         Machine: {machine_before}.\n\n{table}\n\
         Anchors from shared/notes (Katran, this machine): about 70 ns net per new TCP flow and 57 ns \
         per established-flow packet. Goal: an established NAT or TUN packet at or under 40 ns net.\n\n\
         The verifier's budget (part `verifier`): instructions the kernel's verifier walked for each \
         program as the daemon loads them (`verified_insns`; the limit is 1,000,000 per program, \
         and a program near it may fail to load on another kernel or compiler):\n\n{verifier}",
    );
    record("xdp", &section)?;
    let machine_before = machine();
    let table = run("live")?;
    let section = format!(
        "## XDP program: end-to-end forwarding rate over veth (live frames)\n\n\
         Command: `{command}` (tests/src/bin/lb-bench-xdp.rs, part `live`: namespaces gen - lb - \
         sink joined by veths; an XDP generator run by BPF_PROG_TEST_RUN with \
         BPF_F_TEST_XDP_LIVE_FRAMES sends out of gen, what the middle namespace forwards is counted \
         and dropped by an XDP program in sink; every middle measured in the same run).\n\n\
         Machine: {machine_before}.\n\n{table}\n\
         Anchors from shared/notes (a faster machine, same setup): XDP redirect + stateless DNAT \
         14-15.5 Mpps, Katran 7.8 Mpps, kernel forwarding 4.5 Mpps, nftables DNAT 2.9 Mpps. Goal: \
         at least 12 Mpps. Normalized by the kernel forwarding rate of the same run (the column \
         \"rate vs kernel forwarding\" above), the anchors are: goal 12 / 4.5 = 2.67x, Katran \
         7.8 / 4.5 = 1.73x, stateless DNAT 3.1-3.4x, nftables DNAT 0.64x.\n",
    );
    record("xdp-live", &section)
}

/// The machine, for the record: CPU, cores, kernel, load average now.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    format!("{cpu}, {cores} cores, Linux {kernel}, load average {load} when measured")
}

/// Replaces (or appends) the section between `<!-- bench:NAME:start -->` and `...:end -->` in
/// BENCHMARKS.md.
pub fn record(name: &str, section: &str) -> anyhow::Result<()> {
    let path = crate::root().join("BENCHMARKS.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n\n".to_owned());
    let (start, end) = (format!("<!-- bench:{name}:start -->"), format!("<!-- bench:{name}:end -->"));
    let block = format!("{start}\n{}\n{end}\n", section.trim_end());
    let new = match (text.find(&start), text.find(&end)) {
        (Some(a), Some(b)) if a < b => {
            format!("{}{block}{}", &text[..a], text[b + end.len()..].trim_start_matches('\n'))
        }
        _ => format!("{}\n{block}", text.trim_end()),
    };
    std::fs::write(&path, new)?;
    println!("    recorded in {}", path.display());
    Ok(())
}
