//! A process started inside a namespace by [`crate::lab::Netns::spawn`].

use std::{
    fs,
    os::unix::process::{CommandExt as _, ExitStatusExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill, killpg},
    unistd::Pid,
};

/// A running process, in a process group of its own; killed (with its group) on drop.
#[derive(Debug)]
pub struct Proc {
    label: String,
    child: Child,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Starts `command` with stdout and stderr appended to `log`.
    pub fn spawn(label: &str, mut command: Command, log: &Path) -> Self {
        let file = fs::File::create(log).unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let stderr = file.try_clone().unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        command.stdin(Stdio::null()).stdout(file).stderr(stderr).process_group(0);
        let child = command.spawn().unwrap_or_else(|e| panic!("starting {label} ({command:?}): {e}"));
        Self { label: label.to_owned(), child, log: log.to_path_buf(), status: None }
    }

    /// Its pid (also its process group id).
    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pids fit in i32"))
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal)
            .unwrap_or_else(|e| panic!("{} ({}): kill -{signal}: {e}", self.label, self.pid()));
    }

    /// Sends `signal` to its whole process group (an lbd and its child processes).
    pub fn signal_group(&self, signal: Signal) {
        killpg(self.pid(), signal)
            .unwrap_or_else(|e| panic!("{} ({}): kill -{signal} -PGID: {e}", self.label, self.pid()));
    }

    /// Everything it printed so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it has exited (reaping it if so).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().unwrap_or_else(|e| panic!("{}: wait: {e}", self.label));
        }
        self.status
    }

    /// Waits up to `timeout` for it to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for it to exit, panicking with its log if it has not within `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        self.wait_timeout(timeout)
            .unwrap_or_else(|| panic!("{} did not exit within {timeout:?}; log:\n{}", self.label, self.log()))
    }

    /// Panics, showing its log, if it has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.exited() {
            panic!("{} exited early ({}); log:\n{}", self.label, describe(status), self.log());
        }
    }

    /// SIGKILLs its whole process group and reaps it.
    pub fn kill(&mut self) {
        if self.exited().is_none() {
            let _ = killpg(self.pid(), Signal::SIGKILL);
            self.status = self.child.wait().ok();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// "exit code N" or "signal N".
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => format!("{status:?}"),
    }
}
