//! Developer commands: `cargo xtask <command>`.
//!
//! - `setup`: install what is missing (apt packages, nightly rust-src, bpf-linker), idempotently.
//! - `build-ebpf`: build the XDP object with BTF (nightly, build-std, bpf-linker).
//! - `build`: the object, then every binary.
//! - `test`: setup, fmt check, clippy -D warnings (host and BPF target), unit tests, and the
//!   namespaced system tests as root. `.ci/run` runs exactly this.
//! - `demo`: setup, build, and run the demo topology (as root).
//! - `bench <what>`: benchmarks, recorded in BENCHMARKS.md.

mod bench;
mod bench_config;
mod bench_vrrp;
mod cmd;
mod paired;
mod setup;

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

use crate::cmd::{cargo, step};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "lbd's developer commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install what is missing: apt packages, nightly rust-src, bpf-linker (idempotent).
    Setup,
    /// Build the XDP object (target/ebpf/bpfel-unknown-none/release/lb-ebpf) with BTF.
    BuildEbpf,
    /// Build the XDP object and every binary.
    Build {
        /// Build in release mode.
        #[arg(long)]
        release: bool,
    },
    /// Run every check and test: fmt, clippy, unit tests, system tests (as root).
    Test {
        /// Skip `setup` (for a machine known to have everything).
        #[arg(long)]
        no_setup: bool,
        /// Only run tests whose name contains this (passed to cargo test).
        filter: Option<String>,
    },
    /// Install, build, and run the demo topology in network namespaces (as root).
    Demo {
        /// Skip `setup`.
        #[arg(long)]
        no_setup: bool,
    },
    /// Run a benchmark and record it in BENCHMARKS.md.
    Bench {
        #[command(subcommand)]
        what: bench::Bench,
    },
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Setup => setup::run(),
        Command::BuildEbpf => build_ebpf(),
        Command::Build { release } => build(release),
        Command::Test { no_setup, filter } => test(no_setup, filter.as_deref()),
        Command::Demo { no_setup } => demo(no_setup),
        Command::Bench { what } => bench::run(what),
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// Where the XDP object lands.
pub fn ebpf_object() -> PathBuf {
    root().join("target/ebpf/bpfel-unknown-none/release/lb-ebpf")
}

pub(crate) fn build_ebpf() -> anyhow::Result<()> {
    step("build the XDP object");
    let dir = root().join("lb-ebpf");
    // lb-ebpf/.cargo/config.toml sets the BPF target, build-std and the BTF flags.
    cmd::nightly_cargo(&dir, &["build", "--release", "--target-dir", "../target/ebpf"])
        .context("building lb-ebpf (needs nightly with rust-src and bpf-linker: `cargo xtask setup`)")?;
    println!("    {}", ebpf_object().display());
    Ok(())
}

fn build(release: bool) -> anyhow::Result<()> {
    build_ebpf()?;
    step("build the binaries");
    let mut args = vec!["build", "--workspace", "--exclude", "lb-ebpf", "--bins"];
    if release {
        args.push("--release");
    }
    cargo(&args)
}

fn test(no_setup: bool, filter: Option<&str>) -> anyhow::Result<()> {
    if !no_setup {
        setup::run()?;
    }
    if !is_root() {
        bail!("the system tests need root (network namespaces, XDP): run `sudo -E cargo xtask test`");
    }
    step("rustfmt --check");
    cargo(&["fmt", "--all", "--check"]).context("formatting differs: run `cargo fmt --all`")?;
    build_ebpf()?;
    step("clippy on the XDP program (BPF target)");
    cmd::nightly_cargo(
        &root().join("lb-ebpf"),
        &["clippy", "--release", "--target-dir", "../target/ebpf", "--", "-D", "warnings"],
    )?;
    step("clippy on the workspace");
    cargo(&["clippy", "--workspace", "--exclude", "lb-ebpf", "--all-targets", "--", "-D", "warnings"])?;
    step("build the binaries the system tests run");
    cargo(&["build", "--workspace", "--exclude", "lb-ebpf", "--bins"])?;
    let filter: Vec<&str> = filter.into_iter().collect();
    step("unit tests");
    let mut args = vec!["test", "--workspace", "--exclude", "lb-ebpf", "--exclude", "lb-tests"];
    args.extend(&filter);
    cargo(&args)?;
    step("system tests (network namespaces, as root)");
    let mut args = vec!["test", "--package", "lb-tests"];
    args.extend(&filter);
    cargo(&args)?;
    step("nothing left behind");
    let left = cmd::leftover_namespaces()?;
    if !left.is_empty() {
        bail!("system tests left network namespaces behind: {}", left.join(", "));
    }
    println!("    no test namespaces remain");
    Ok(())
}

fn demo(no_setup: bool) -> anyhow::Result<()> {
    if !no_setup {
        setup::run()?;
    }
    if !is_root() {
        bail!("the demo builds network namespaces and attaches XDP: run `sudo -E cargo xtask demo`");
    }
    build(false)?;
    step("demo");
    cmd::run(std::process::Command::new(root().join("target/debug/lb-demo")))
}

fn is_root() -> bool {
    cmd::output("id", &["-u"]).is_some_and(|uid| uid.trim() == "0")
}
