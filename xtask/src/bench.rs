//! Benchmarks. Each records its numbers, the command that reproduces them and a baseline
//! measured in the same run in BENCHMARKS.md.

use clap::Subcommand;

/// What to measure.
#[derive(Debug, Subcommand)]
pub enum Bench {
    /// Parse and validate 1,000 virtual servers x 100 real servers: `lbd -t` against
    /// `keepalived -t` on the same file.
    Config,
}

/// Runs one benchmark.
pub fn run(what: Bench) -> anyhow::Result<()> {
    match what {
        Bench::Config => crate::bench_config::run(&crate::root()),
    }
}
