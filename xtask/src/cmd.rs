//! Running commands, with their failures explained.

use std::{
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

use crate::root;

/// Prints a step header.
pub fn step(what: &str) {
    println!("==> {what}");
}

/// Runs `command`, inheriting stdio; fails if it does.
pub fn run(mut command: Command) -> anyhow::Result<()> {
    let status = command.status().with_context(|| format!("starting {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

/// `cargo ARGS` in the workspace root, with the toolchain the workspace uses. The variables
/// cargo set for xtask itself are dropped: build scripts that watch them (ring's watches
/// `CARGO_MANIFEST_DIR`) would otherwise rebuild whenever a build from the shell and one from
/// xtask alternate.
pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(root()).args(args);
    for (var, _) in std::env::vars_os() {
        let name = var.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || matches!(&*name, "CARGO_MANIFEST_DIR" | "CARGO_MANIFEST_PATH" | "CARGO_PRIMARY_PACKAGE")
        {
            command.env_remove(&var);
        }
    }
    run(command)
}

/// Builds the release `lbd` (with [`cargo`]) and returns its path.
pub fn build_release_lbd() -> anyhow::Result<std::path::PathBuf> {
    println!("==> building lbd (release)");
    cargo(&["build", "--release", "-p", "lb-daemon", "--bin", "lbd"])?;
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), std::path::PathBuf::from);
    Ok(target.join("release/lbd"))
}

/// `cargo +nightly ARGS` in `dir` (the BPF crate), clean of the variables the outer cargo set
/// for the stable toolchain.
pub fn nightly_cargo(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let mut command = Command::new("cargo");
    command.current_dir(dir).arg("+nightly").args(args);
    for var in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO",
        "RUSTUP_TOOLCHAIN",
        "CARGO_TARGET_DIR",
    ] {
        command.env_remove(var);
    }
    run(command)
}

/// Output of a command, if it ran and succeeded.
pub fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).stderr(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Network namespaces named like the test kit's (`lbt<pid>x...`) whose process is gone.
pub fn leftover_namespaces() -> anyhow::Result<Vec<String>> {
    let list = output("ip", &["netns", "list"]).unwrap_or_default();
    Ok(list
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| {
            let Some(rest) = name.strip_prefix("lbt") else { return false };
            let pid = rest.split('x').next().unwrap_or_default();
            !pid.is_empty() && !Path::new(&format!("/proc/{pid}")).exists()
        })
        .map(str::to_owned)
        .collect())
}
