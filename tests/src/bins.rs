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

/// The checker tests' SMTP, DNS and web server.
pub fn services() -> PathBuf {
    workspace_bin("lbt-services")
}
