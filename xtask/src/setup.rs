//! Installing what the project needs on a Debian 12 machine with rustup, idempotently: each
//! step checks first and only installs what is missing.

use std::process::Command;

use anyhow::{Context as _, bail};

use crate::cmd::{self, output, step};

/// Debian packages: the BPF linker's LLVM, bpftool, the interop peer, and what tests use.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "bpftool",
    "iproute2",
    "ethtool",
    "keepalived",
    "curl",
    "iputils-ping",
    "procps",
    "time",
    // VRRP system tests capture adverts and ARP with it.
    "tcpdump",
    // The D-Bus system test (`enable_dbus`) starts a private bus of its own.
    "dbus-daemon",
    // `cargo xtask bench xdp`: the nftables DNAT baseline.
    "nftables",
    // The VM system tests (IPVS, VRRP use_ipvlan / vrf): a VM booting Debian's kernel
    // (tests/src/vm.rs), ipvsadm in it.
    "qemu-system-x86",
    "busybox-static",
    "xz-utils",
    "ipvsadm",
    // The SNMP system tests (tests/tests/vrrp_snmp.rs): the AgentX master agent, snmpwalk and
    // the trap receiver.
    "snmpd",
    "snmp",
    "snmptrapd",
];

/// bpf-linker built against LLVM 22 (what rustc nightly 1.97 emits).
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// `cargo xtask setup`: every step.
pub fn run() -> anyhow::Result<()> {
    step("setup: install what is missing");
    apt()?;
    rust_toolchains()?;
    bpf_linker()
}

fn apt() -> anyhow::Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|pkg| {
            output("dpkg-query", &["-W", "-f=${db:Status-Status}", pkg])
                .is_none_or(|status| status.trim() != "installed")
        })
        .collect();
    if missing.is_empty() {
        println!("    apt packages: all present");
        return Ok(());
    }
    println!("    apt packages to install: {}", missing.join(" "));
    if !crate::is_root() {
        bail!("installing {} needs root: run as root (sudo -E)", missing.join(" "));
    }
    let mut update = Command::new("apt-get");
    update.args(["-q", "update"]);
    cmd::run(update)?;
    let mut install = Command::new("apt-get");
    install
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["-q", "-y", "install", "--no-install-recommends"])
        .args(&missing);
    cmd::run(install).context("apt-get install")
}

fn rust_toolchains() -> anyhow::Result<()> {
    let toolchains =
        output("rustup", &["toolchain", "list"]).context("rustup is needed (https://rustup.rs)")?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        let mut install = Command::new("rustup");
        install.args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--component",
            "rust-src,clippy",
        ]);
        cmd::run(install)?;
    }
    for (toolchain, components) in
        [("nightly", &["rust-src", "clippy"][..]), ("stable", &["rustfmt", "clippy"][..])]
    {
        let installed = output("rustup", &["component", "list", "--installed", "--toolchain", toolchain])
            .unwrap_or_default();
        let missing: Vec<&str> =
            components.iter().copied().filter(|c| !installed.lines().any(|l| l.starts_with(c))).collect();
        if !missing.is_empty() {
            let mut add = Command::new("rustup");
            add.args(["component", "add", "--toolchain", toolchain]).args(&missing);
            cmd::run(add)?;
        }
    }
    println!("    rust toolchains: stable (rustfmt, clippy) and nightly (rust-src, clippy) present");
    Ok(())
}

fn bpf_linker() -> anyhow::Result<()> {
    if output("bpf-linker", &["--version"]).is_some_and(|v| v.contains(BPF_LINKER_VERSION)) {
        println!("    bpf-linker {BPF_LINKER_VERSION}: present");
        return Ok(());
    }
    println!("    installing bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (about a minute)");
    let path = std::env::var("PATH").unwrap_or_default();
    let mut install = Command::new("cargo");
    install
        // bpf-linker's build looks for llvm-config on PATH (Debian's default one is LLVM 14).
        .env("LLVM_PREFIX", LLVM_PREFIX)
        .env("PATH", format!("{LLVM_PREFIX}/bin:{path}"))
        .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
        .args(["--no-default-features", "--features", "llvm-22", "--locked"]);
    cmd::run(install).context("installing bpf-linker")
}
