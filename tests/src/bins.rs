//! Paths of the binaries the system tests run.

use std::path::PathBuf;

/// The path of a binary of this workspace: `$LBD_<NAME>_BIN` if set, else next to the test
/// executable's directory (`target/<profile>/`), where `cargo xtask test` builds them.
pub fn workspace_bin(name: &str) -> PathBuf {
    let var = format!("LBD_{}_BIN", name.to_uppercase().replace('-', "_"));
    if let Some(path) = std::env::var_os(&var) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test binary has a path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let mut dir = exe.parent().expect("deps dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build it first (`cargo build --workspace --bins`, which `cargo xtask test` does) or set {var}",
        path.display()
    );
    path
}

/// The `lbd` daemon.
pub fn lbd() -> PathBuf {
    workspace_bin("lbd")
}

/// The demo web server (answers every request with its name).
pub fn web() -> PathBuf {
    workspace_bin("lbt-web")
}

/// Starts `lbd` in `ns` as the tests run it: in the foreground (`-n`), logging to the console
/// (`-l`), with `config`, its maps pinned under `pin_dir`, and its pid files (keepalived's
/// `-p`, `-r`, `-c`, `-b`) in the lab's directory, named after `label`, so that several daemons of
/// one test (or of tests running at once) do not claim the same ones. `TMPDIR` is the lab's
/// directory, where the signal dumps (`keepalived.data`, ...) go. `extra` follows.
pub fn spawn_lbd(
    lab: &crate::lab::Lab,
    ns: &crate::lab::Netns,
    label: &str,
    config: &std::path::Path,
    pin_dir: &std::path::Path,
    extra: &[&str],
) -> crate::process::Proc {
    spawn_lbd_env(lab, ns, label, config, pin_dir, &[], extra)
}

/// [`spawn_lbd`] with more environment variables (`NAME=VALUE`).
pub fn spawn_lbd_env(
    lab: &crate::lab::Lab,
    ns: &crate::lab::Netns,
    label: &str,
    config: &std::path::Path,
    pin_dir: &std::path::Path,
    env: &[&str],
    extra: &[&str],
) -> crate::process::Proc {
    let pid = |what: &str| lab.dir().join(format!("{label}-{what}.pid")).display().to_string();
    let (config, pin_dir) = (config.display().to_string(), pin_dir.display().to_string());
    let (main, vrrp, checkers, bfd) = (pid("main"), pid("vrrp"), pid("checkers"), pid("bfd"));
    let (tmpdir, lbd) = (format!("TMPDIR={}", lab.dir().display()), lbd().display().to_string());
    let mut args = vec![&*tmpdir];
    args.extend_from_slice(env);
    args.extend([
        &*lbd,
        "-n",
        "-l",
        "-f",
        &config,
        "--bpf-pin-path",
        &pin_dir,
        "-p",
        &main,
        "-r",
        &vrrp,
        "-c",
        &checkers,
        "-b",
        &bfd,
    ]);
    args.extend_from_slice(extra);
    ns.spawn(label, "env", &args)
}

/// [`spawn_lbd`] (label `lbd`, no extra arguments), then waits until it has programmed its
/// virtual servers (its `data plane:` report) and pings each of `reals` from `ns`: the host
/// must reach them (lbd keeps their next hops resolved itself, tested in lb_forwarding.rs).
pub fn start_lbd(
    lab: &crate::lab::Lab,
    ns: &crate::lab::Netns,
    config: &std::path::Path,
    pin_dir: &std::path::Path,
    reals: &[&str],
) -> crate::process::Proc {
    let mut lbd = spawn_lbd(lab, ns, "lbd", config, pin_dir, &[]);
    crate::lab::wait_until(std::time::Duration::from_secs(30), "lbd to program its virtual servers", || {
        lbd.assert_running();
        lbd.log().contains("data plane:")
    });
    for real in reals {
        let out = ns.exec("ping", &["-c", "1", "-W", "2", real]);
        assert!(out.status.success(), "lbd's host cannot reach {real}");
    }
    lbd
}

/// The checker tests' SMTP, DNS and web server.
pub fn services() -> PathBuf {
    workspace_bin("lbt-services")
}

/// The UDP test server (answers every datagram with its name).
pub fn udp_echo() -> PathBuf {
    workspace_bin("lbt-udp-echo")
}

/// Builds `tests/bench/ipvs-shim.c` into `dir` (once) and returns its path: an `LD_PRELOAD`
/// library that answers keepalived's IPVS socket options as a kernel with an empty IPVS table
/// would, so that keepalived's checker runs on a kernel without IPVS (baselines only).
pub fn ipvs_shim(dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    let shim = dir.join("ipvs-shim.so");
    if shim.exists() {
        return Ok(shim);
    }
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/ipvs-shim.c");
    let out = std::process::Command::new("cc")
        .args(["-O2", "-shared", "-fPIC", "-o"])
        .arg(&shim)
        .arg(source)
        .arg("-ldl")
        .output()?;
    anyhow::ensure!(out.status.success(), "cc ipvs-shim.c: {}", String::from_utf8_lossy(&out.stderr));
    Ok(shim)
}
