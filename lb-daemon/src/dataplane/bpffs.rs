//! Making sure the pin directory lives on a bpffs.
//!
//! Pins only work on a bpffs. Like Cilium, when the configured directory is not on one, lbd
//! mounts one there rather than failing; an existing mount is reused as it is.

use std::path::Path;

use nix::{
    mount::{MsFlags, mount},
    sys::statfs::{BPF_FS_MAGIC, statfs},
};

use super::DataplaneError;

/// Whether `path` is on a bpffs.
pub fn is_bpffs(path: &Path) -> bool {
    statfs(path).is_ok_and(|fs| fs.filesystem_type() == BPF_FS_MAGIC)
}

/// Creates `pin_dir` (and its parents) and mounts a bpffs on it unless it already is on one.
///
/// Returns whether a bpffs was mounted.
pub fn ensure(pin_dir: &Path) -> Result<bool, DataplaneError> {
    let err = |reason: String| DataplaneError::PinDirectory { path: pin_dir.to_path_buf(), reason };
    std::fs::create_dir_all(pin_dir).map_err(|e| err(format!("cannot create it: {e}")))?;
    if is_bpffs(pin_dir) {
        return Ok(false);
    }
    mount(Some("bpffs"), pin_dir, Some("bpf"), MsFlags::empty(), Some("mode=0700"))
        .map_err(|e| err(format!("not on a bpffs, and mounting one there failed: {e}")))?;
    Ok(true)
}
