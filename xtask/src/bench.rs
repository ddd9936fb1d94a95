//! Benchmarks. Each records its numbers, the command that reproduces them and a baseline
//! measured in the same run in BENCHMARKS.md.

use clap::Subcommand;

/// What to measure.
#[derive(Debug, Subcommand)]
pub enum Bench {}

/// Runs one benchmark.
pub fn run(what: Bench) -> anyhow::Result<()> {
    match what {}
}
