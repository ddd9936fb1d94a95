//! Finds the XDP object built by `cargo xtask build-ebpf` and hands its path to the crate, which
//! embeds it. Building the eBPF crate needs nightly, rust-src and bpf-linker, so it is a step of
//! its own rather than a nested cargo run here; a missing object fails the build with what to run.

use std::{env, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=LBD_EBPF_OBJECT");
    let object = match env::var_os("LBD_EBPF_OBJECT") {
        Some(path) => PathBuf::from(path),
        None => {
            let manifest_dir =
                PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
            manifest_dir.join("../target/ebpf/bpfel-unknown-none/release/lb-ebpf")
        }
    };
    println!("cargo:rerun-if-changed={}", object.display());
    if !object.is_file() {
        panic!(
            "\n\nthe XDP object {} is missing.\n\
             Build it first with:\n\n    cargo xtask build-ebpf\n\n\
             (or point LBD_EBPF_OBJECT at a built lb-ebpf object)\n",
            object.display()
        );
    }
    let object = object.canonicalize().expect("the object exists, so it has a canonical path");
    println!("cargo:rustc-env=LBD_EBPF_OBJECT={}", object.display());
}
