//! Running keepalived's scripts: notify scripts and `vrrp_script` checks.
//!
//! As keepalived 2.2.7 (`notify.c`): the command line is already split into arguments by the
//! configuration parser and is executed directly, not through a shell; it runs as the script's
//! `user`/`group`, else `global_defs { script_user }`, else the `keepalived_script` user if it
//! exists, else root. With `enable_script_security` a script is refused when it, or a directory
//! above it, can be changed by someone other than root and the user it runs as; without it, a
//! script run as root is allowed with keepalived's "SECURITY VIOLATION" warning.

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use nix::unistd::{Group, User};
use tracing::warn;

use crate::config::model::{GlobalDefs, Script};

/// keepalived's default script user, used when it exists.
pub const DEFAULT_SCRIPT_USER: &str = "keepalived_script";

/// Why a script cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    /// The command line is empty.
    #[error("empty script command")]
    Empty,
    /// No such user.
    #[error("script user {0} does not exist")]
    NoSuchUser(String),
    /// No such group.
    #[error("script group {0} does not exist")]
    NoSuchGroup(String),
    /// The program is not found (not a file, or not on PATH).
    #[error("script {0} not found")]
    NotFound(String),
    /// `enable_script_security` refused it.
    #[error("script {path} is not secure: {why} (enable_script_security)")]
    Insecure {
        /// The file or directory at fault.
        path: String,
        /// What is wrong with it.
        why: String,
    },
}

/// The global script settings (`script_user`, `enable_script_security`).
#[derive(Debug, Clone, Default)]
pub struct ScriptPolicy {
    /// `script_user USER [GROUP]`.
    pub user: Option<(String, Option<String>)>,
    /// `enable_script_security`.
    pub security: bool,
}

impl ScriptPolicy {
    /// The policy of `global_defs`.
    pub fn from_globals(global: &GlobalDefs) -> Self {
        ScriptPolicy {
            user: global.script_user.as_ref().map(|u| (u.user.clone(), u.group.clone())),
            security: global.enable_script_security,
        }
    }

    /// Resolves `script` into something ready to run: user, group, program path, security.
    pub fn prepare(&self, script: &Script) -> Result<PreparedScript, ScriptError> {
        let program = script.argv.first().ok_or(ScriptError::Empty)?;
        let path = resolve_program(program).ok_or_else(|| ScriptError::NotFound(program.clone()))?;
        let (user, group) = match (&script.user, &self.user) {
            (Some(user), _) => (Some(user.clone()), script.group.clone()),
            (None, Some((user, group))) => (Some(user.clone()), group.clone()),
            (None, None) => (None, None),
        };
        let (uid, default_gid) = match user {
            Some(name) => {
                let user = User::from_name(&name)
                    .ok()
                    .flatten()
                    .ok_or_else(|| ScriptError::NoSuchUser(name.clone()))?;
                (user.uid.as_raw(), user.gid.as_raw())
            }
            None => match User::from_name(DEFAULT_SCRIPT_USER).ok().flatten() {
                Some(user) => (user.uid.as_raw(), user.gid.as_raw()),
                None => (0, 0),
            },
        };
        let gid = match group {
            Some(name) => Group::from_name(&name)
                .ok()
                .flatten()
                .ok_or_else(|| ScriptError::NoSuchGroup(name.clone()))?
                .gid
                .as_raw(),
            None => default_gid,
        };
        if self.security {
            check_secure(&path, uid, gid)?;
        } else if uid == 0 {
            static WARNED: AtomicBool = AtomicBool::new(false);
            if !WARNED.swap(true, Ordering::Relaxed) {
                warn!("SECURITY VIOLATION - scripts are being executed but script_security not enabled.");
            }
        }
        Ok(PreparedScript {
            command: script.command.clone(),
            program: path,
            args: script.argv.iter().skip(1).cloned().collect(),
            uid,
            gid,
        })
    }
}

/// A script ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedScript {
    /// The command line as written, for log lines.
    pub command: String,
    /// The program, resolved.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// User to run as.
    pub uid: u32,
    /// Group to run as.
    pub gid: u32,
}

/// How a script run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It exited (or was killed by a signal) with this status.
    Exited(ExitStatus),
    /// It ran longer than the timeout and was killed.
    TimedOut,
    /// It could not be started.
    NotStarted,
}

impl Outcome {
    /// Exit status 0.
    pub fn success(self) -> bool {
        matches!(self, Outcome::Exited(status) if status.success())
    }
}

impl PreparedScript {
    /// Runs the script with `extra` arguments appended and waits for it, killing it (and its
    /// process group) after `timeout`.
    pub async fn run(&self, extra: &[String], timeout: Duration) -> Outcome {
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(&self.args)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        // Switching user needs privileges; running as ourselves needs no change.
        if nix::unistd::geteuid().as_raw() != self.uid {
            command.uid(self.uid);
        }
        if nix::unistd::getegid().as_raw() != self.gid {
            command.gid(self.gid);
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                warn!("cannot run script {}: {e}", self.command);
                return Outcome::NotStarted;
            }
        };
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(status)) => Outcome::Exited(status),
            Ok(Err(e)) => {
                warn!("waiting for script {}: {e}", self.command);
                Outcome::NotStarted
            }
            Err(_) => {
                if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                let _ = child.kill().await;
                Outcome::TimedOut
            }
        }
    }
}

/// `program` if it names a file, else its first match on `PATH`.
pub(crate) fn resolve_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return path.is_file().then_some(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| candidate.is_file())
}

/// keepalived's `check_script_secure`, simplified: the script and every directory above it must
/// be owned by root or by the user it runs as, and not writable by group or others (a group
/// write is tolerated for root's group and the script's group; a sticky directory, like /tmp,
/// protects entries its owner does not own).
fn check_secure(path: &Path, uid: u32, gid: u32) -> Result<(), ScriptError> {
    let insecure =
        |p: &Path, why: &str| ScriptError::Insecure { path: p.display().to_string(), why: why.into() };
    let path = path.canonicalize().map_err(|_| ScriptError::NotFound(path.display().to_string()))?;
    let mut current = Some(path.as_path());
    let mut child_owned_by_trusted = true;
    while let Some(p) = current {
        let meta = std::fs::metadata(p).map_err(|_| ScriptError::NotFound(p.display().to_string()))?;
        let trusted_owner = meta.uid() == 0 || meta.uid() == uid;
        if !trusted_owner {
            return Err(insecure(p, "owned by another user"));
        }
        let mode = meta.mode();
        let sticky = meta.is_dir() && mode & 0o1000 != 0;
        let group_write = mode & 0o020 != 0 && meta.gid() != 0 && meta.gid() != gid;
        let other_write = mode & 0o002 != 0;
        if (group_write || other_write) && !(sticky && child_owned_by_trusted) {
            return Err(insecure(p, "writable by group or others"));
        }
        child_owned_by_trusted = trusted_owner;
        current = p.parent();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(argv: &[&str]) -> Script {
        Script {
            command: argv.join(" "),
            argv: argv.iter().map(|a| (*a).to_string()).collect(),
            user: None,
            group: None,
        }
    }

    #[test]
    fn programs_resolve_on_path_and_missing_ones_are_refused() {
        let policy = ScriptPolicy::default();
        let prepared = policy.prepare(&script(&["true", "a"])).unwrap_or_else(|e| panic!("{e}"));
        assert!(prepared.program.ends_with("true"));
        assert_eq!(prepared.args, ["a"]);
        assert_eq!(
            policy.prepare(&script(&["/nonexistent/lbd-script"])),
            Err(ScriptError::NotFound("/nonexistent/lbd-script".into()))
        );
        assert_eq!(policy.prepare(&script(&[])), Err(ScriptError::Empty));
    }

    #[test]
    fn unknown_users_are_refused() {
        let policy = ScriptPolicy { user: Some(("lbd-no-such-user".into(), None)), security: false };
        assert_eq!(
            policy.prepare(&script(&["true"])),
            Err(ScriptError::NoSuchUser("lbd-no-such-user".into()))
        );
    }

    #[test]
    fn system_binaries_are_secure_and_world_writable_files_are_not() {
        let root_owned = Path::new("/bin/sh");
        if std::fs::metadata(root_owned).is_ok_and(|m| m.uid() == 0) {
            assert_eq!(check_secure(root_owned, 0, 0), Ok(()));
        }
        let dir = std::env::temp_dir().join(format!("lbd-script-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let file = dir.join("s.sh");
        std::fs::write(&file, "#!/bin/sh\n").unwrap_or_else(|e| panic!("{e}"));
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o777))
            .unwrap_or_else(|e| panic!("{e}"));
        let me = nix::unistd::geteuid().as_raw();
        assert!(matches!(check_secure(&file, me, 0), Err(ScriptError::Insecure { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn runs_with_arguments_and_times_out() {
        let policy = ScriptPolicy::default();
        let ok = policy.prepare(&script(&["sh", "-c", "test \"$0\" = x"])).unwrap_or_else(|e| panic!("{e}"));
        assert!(ok.run(&["x".into()], Duration::from_secs(5)).await.success());
        assert!(!ok.run(&["y".into()], Duration::from_secs(5)).await.success());
        let slow = policy.prepare(&script(&["sleep", "5"])).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(slow.run(&[], Duration::from_millis(50)).await, Outcome::TimedOut);
    }
}
