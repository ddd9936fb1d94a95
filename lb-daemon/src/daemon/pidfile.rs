//! Pid files, as keepalived keeps them: written at start, refused when the recorded process
//! still runs, removed on a clean exit.
//!
//! keepalived 2.2.7's defaults are `/run/keepalived.pid` (parent), `/run/vrrp.pid` (VRRP child)
//! and `/run/checkers.pid` (checker child). lbd runs its subsystems in one process, so each pid
//! file it writes holds that process's pid: `kill -HUP $(cat /run/keepalived.pid)` and scripts
//! reading the others keep working.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

/// keepalived's default pid file of the parent process.
pub const DEFAULT_MAIN: &str = "/run/keepalived.pid";
/// keepalived's default pid file of the VRRP child.
pub const DEFAULT_VRRP: &str = "/run/vrrp.pid";
/// keepalived's default pid file of the checker child.
pub const DEFAULT_CHECKERS: &str = "/run/checkers.pid";
/// keepalived's default pid file of the BFD child.
pub const DEFAULT_BFD: &str = "/run/bfd.pid";

/// Why a pid file could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    /// Another daemon runs with this pid file (keepalived: "daemon is already running").
    #[error("{path}: daemon is already running (pid {pid})")]
    Running {
        /// The pid file.
        path: PathBuf,
        /// The running process.
        pid: i32,
    },
    /// The file could not be written.
    #[error("writing pid file {path}")]
    Write {
        /// The pid file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A pid file this process wrote; removed when dropped.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes this process's pid to `path`, unless the pid it holds is a live process other
    /// than this one. A stale file (dead process, garbage) is replaced.
    pub fn create(path: &Path) -> Result<Self, PidFileError> {
        let own = std::process::id() as i32;
        if let Some(pid) = read(path)
            && pid != own
            && alive(pid)
        {
            return Err(PidFileError::Running { path: path.to_path_buf(), pid });
        }
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut file = std::fs::File::create(path)?;
            writeln!(file, "{own}")
        };
        write().map_err(|source| PidFileError::Write { path: path.to_path_buf(), source })?;
        Ok(Self { path: path.to_path_buf() })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Only our own: a successor may have taken the path already.
        if read(&self.path) == Some(std::process::id() as i32) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn read(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok().filter(|pid| *pid > 0)
}

fn alive(pid: i32) -> bool {
    // Signal 0 checks existence; EPERM still means "exists".
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(e) => e == nix::errno::Errno::EPERM,
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lbd-pidfile-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("sub").join("x.pid")
    }

    #[test]
    fn written_then_removed_on_drop() {
        let path = scratch("drop");
        let pid = PidFile::create(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{}\n", std::process::id()));
        drop(pid);
        assert!(!path.exists());
    }

    #[test]
    fn a_live_other_process_is_refused_and_a_stale_file_replaced() {
        let path = scratch("live");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        // pid 1 always runs.
        std::fs::write(&path, "1\n").unwrap();
        let err = PidFile::create(&path).unwrap_err();
        assert!(matches!(err, PidFileError::Running { pid: 1, .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n", "left alone");
        std::fs::write(&path, "not a pid").unwrap();
        let _pid = PidFile::create(&path).unwrap();
        assert_eq!(read(&path), Some(std::process::id() as i32));
    }
}
