//! Notify scripts: `notify_master`, `notify_backup`, `notify_fault`, `notify_stop` (run with
//! their own arguments only) and `notify` (run with keepalived's four extra arguments
//! `INSTANCE|GROUP NAME MASTER|BACKUP|FAULT|STOP PRIORITY`; the priority is 0 for a group), as
//! keepalived 2.2.7's `vrrp_notify.c`: the state's own script first, then the generic one. An
//! instance a reload deletes gets FAULT, or with `notify_deleted` its script and DELETED.
//!
//! With `notify_fifo` / `vrrp_notify_fifo` each event is also written to the FIFOs as a line,
//! before the scripts run, as keepalived does: `INSTANCE "VI_1" MASTER 100`, `GROUP "G1" BACKUP
//! 0`, and with `notify_priority_changes` `INSTANCE "VI_1" MASTER_PRIORITY 90` (or
//! `BACKUP_PRIORITY`) when the effective priority changes, and `INSTANCE "VI_1" MASTER_RX_LOWER_PRI 100`
//! when a master hears a lower-priority advert (then `notify_master_rx_lower_pri` runs too, with
//! its own arguments only). A FIFO that does not exist is created;
//! it is opened read-write and non-blocking, so that a missing or slow reader never stalls VRRP
//! (a line that does not fit is dropped and logged). `notify_fifo_script` /
//! `vrrp_notify_fifo_script` start once, with the FIFO's path as their last argument, to read
//! it; at the end the FIFO is closed, so that they read what is left and then end of file, and
//! those still running a second later are killed.
//!
//! keepalived forks notify scripts without waiting, so two quick transitions can run their
//! scripts out of order. lbd runs them from one queue, in order: each script gets
//! [`ORDER_WAIT`] to finish before the next starts, and is left running (not killed) if it takes
//! longer, so a slow script delays the others by at most that.

use std::{
    fs::File,
    io::Write as _,
    os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _},
    path::Path,
    sync::Arc,
    time::Duration,
};

use tokio::{sync::mpsc, task::JoinHandle};
use tracing::{debug, warn};

use super::{
    config::NotifyPlan,
    script::{PreparedScript, ScriptPolicy},
    state::State,
};

/// How long a notify script may hold up the next one.
pub const ORDER_WAIT: Duration = Duration::from_secs(2);
/// How long a FIFO script may take to finish after the FIFO is closed.
const FIFO_SCRIPT_WAIT: Duration = Duration::from_secs(1);
/// How long a FIFO script may run: as long as the daemon.
const FOREVER: Duration = Duration::from_secs(u32::MAX as u64);
/// After this a notify script is killed (keepalived kills only `notify_stop` scripts, after 1 s
/// at shutdown; a notify script running this long is stuck).
const RUN_LIMIT: Duration = Duration::from_secs(3600);

/// Whose state changed: an instance or a sync group (`$1` of the generic script).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// `INSTANCE`.
    Instance,
    /// `GROUP`.
    Group,
}

impl Subject {
    fn keyword(self) -> &'static str {
        match self {
            Subject::Instance => "INSTANCE",
            Subject::Group => "GROUP",
        }
    }
}

/// The prepared notify scripts of an instance or group.
#[derive(Debug, Clone, Default)]
pub struct NotifyScripts {
    master: Option<Arc<PreparedScript>>,
    backup: Option<Arc<PreparedScript>>,
    fault: Option<Arc<PreparedScript>>,
    stop: Option<Arc<PreparedScript>>,
    generic: Option<Arc<PreparedScript>>,
    master_rx_lower_pri: Option<Arc<PreparedScript>>,
    deleted: Option<Arc<PreparedScript>>,
}

impl NotifyScripts {
    /// Prepares the scripts of `plan`; one that cannot run is logged and left out.
    pub fn prepare(plan: &NotifyPlan, policy: &ScriptPolicy, owner: &str) -> Self {
        let prepare = |script: &Option<crate::config::model::Script>, keyword: &str| {
            let script = script.as_ref()?;
            match policy.prepare(script) {
                Ok(prepared) => Some(Arc::new(prepared)),
                Err(e) => {
                    warn!("({owner}) {keyword} disabled: {e}");
                    None
                }
            }
        };
        NotifyScripts {
            master: prepare(&plan.master, "notify_master"),
            backup: prepare(&plan.backup, "notify_backup"),
            fault: prepare(&plan.fault, "notify_fault"),
            stop: prepare(&plan.stop, "notify_stop"),
            generic: prepare(&plan.generic, "notify"),
            master_rx_lower_pri: prepare(&plan.master_rx_lower_pri, "notify_master_rx_lower_pri"),
            deleted: prepare(&plan.deleted, "notify_deleted"),
        }
    }

    /// Whether there is nothing to run.
    pub fn is_empty(&self) -> bool {
        self.master.is_none()
            && self.backup.is_none()
            && self.fault.is_none()
            && self.stop.is_none()
            && self.generic.is_none()
            && self.master_rx_lower_pri.is_none()
            && self.deleted.is_none()
    }
}

struct Job {
    script: Arc<PreparedScript>,
    args: Vec<String>,
}

/// The notify queue. Dropping it stops running queued scripts; [`Notifier::close`] waits for
/// them.
#[derive(Debug)]
pub struct Notifier {
    jobs: mpsc::UnboundedSender<Job>,
    task: JoinHandle<()>,
    fifos: Vec<(String, File)>,
    /// The FIFO scripts' tasks (each waits for its script).
    fifo_scripts: Vec<JoinHandle<()>>,
}

/// Opens (creating it if needed) the notify FIFO at `path`, read-write and non-blocking.
pub fn open_fifo(path: &str) -> std::io::Result<File> {
    match std::fs::metadata(path) {
        Ok(meta) if !meta.file_type().is_fifo() => {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "exists and is not a FIFO"));
        }
        Ok(_) => {}
        Err(_) => nix::unistd::mkfifo(Path::new(path), nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(std::io::Error::from)?,
    }
    std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_NONBLOCK).open(path)
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}", self.script.command, self.args)
    }
}

impl Notifier {
    /// Starts the queue on the current runtime, writing events to the FIFOs at `fifos` too
    /// (one that cannot be opened is logged and left out), each with its reader script if it
    /// has one.
    pub fn spawn(fifos: &[(&str, Option<PreparedScript>)]) -> Self {
        let mut opened = Vec::new();
        let mut fifo_scripts = Vec::new();
        for (path, script) in fifos {
            match open_fifo(path) {
                Ok(file) => opened.push(((*path).to_owned(), file)),
                Err(e) => {
                    warn!("cannot open notify FIFO {path}: {e}");
                    continue;
                }
            }
            if let Some(script) = script.clone() {
                let path = (*path).to_owned();
                fifo_scripts.push(tokio::spawn(async move {
                    let outcome = script.run(std::slice::from_ref(&path), FOREVER).await;
                    debug!("notify FIFO script {} for {path} ended: {outcome:?}", script.command);
                }));
            }
        }
        let fifos = opened;
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
        let task = tokio::spawn(async move {
            while let Some(job) = queue.recv().await {
                debug!("running notify script {} {}", job.script.command, job.args.join(" "));
                let run = tokio::spawn(async move { job.script.run(&job.args, RUN_LIMIT).await });
                // Left running (the handle is dropped, not the task) when it takes longer.
                let _ = tokio::time::timeout(ORDER_WAIT, run).await;
            }
        });
        Notifier { jobs, task, fifos, fifo_scripts }
    }

    fn write_fifos(&self, line: &str) {
        for (path, mut fifo) in self.fifos.iter().map(|(p, f)| (p, f)) {
            if let Err(e) = fifo.write_all(line.as_bytes()) {
                warn!("notify FIFO {path}: {e}; dropped {}", line.trim_end());
            }
        }
    }

    /// Writes the state of `subject` `name` to the FIFOs, as a notify would, without running
    /// scripts (`fifo_write_vrrp_states_on_reload`).
    pub fn state_to_fifos(&self, subject: Subject, name: &str, state: State, priority: u8) {
        self.write_fifos(&state_line(subject, name, state.keepalived_name(), priority));
    }

    /// Writes a priority change (`notify_priority_changes`) to the FIFOs.
    pub fn priority_changed(&self, subject: Subject, name: &str, state: State, priority: u8) {
        if matches!(state, State::Master | State::Backup) {
            let state = state.keepalived_name();
            self.write_fifos(&format!("{} \"{name}\" {state}_PRIORITY {priority}\n", subject.keyword()));
        }
    }

    /// Writes keepalived's `MASTER_RX_LOWER_PRI` line: instance `name`, master with `priority`,
    /// heard a lower-priority advert; and queues its `notify_master_rx_lower_pri` script.
    pub fn master_rx_lower_pri(&self, scripts: &NotifyScripts, name: &str, priority: u8) {
        self.write_fifos(&format!(
            "{} \"{name}\" MASTER_RX_LOWER_PRI {priority}\n",
            Subject::Instance.keyword()
        ));
        if let Some(script) = &scripts.master_rx_lower_pri {
            let _ = self.jobs.send(Job { script: Arc::clone(script), args: Vec::new() });
        }
    }

    /// Queues the scripts for `subject` `name` entering `state` with `priority`.
    pub fn notify(&self, scripts: &NotifyScripts, subject: Subject, name: &str, state: State, priority: u8) {
        let specific = match state {
            State::Master => &scripts.master,
            State::Backup => &scripts.backup,
            State::Fault => &scripts.fault,
            State::Stop => &scripts.stop,
            State::Init => &None,
        };
        self.send(specific.as_ref(), scripts, subject, name, state.keepalived_name(), priority);
    }

    /// Queues the scripts of instance `name`, which a reload deleted, as keepalived 2.2.7 runs
    /// them: with `notify_deleted`, its script and `DELETED`; without, `FAULT` for the generic
    /// script and the FIFOs only (not `notify_fault`).
    pub fn deleted(&self, scripts: &NotifyScripts, name: &str, priority: u8, notify_deleted: bool) {
        let (specific, state) =
            if notify_deleted { (scripts.deleted.as_ref(), "DELETED") } else { (None, "FAULT") };
        self.send(specific, scripts, Subject::Instance, name, state, priority);
    }

    /// Writes the FIFO line and queues `specific`, then the generic script with `state`.
    fn send(
        &self,
        specific: Option<&Arc<PreparedScript>>,
        scripts: &NotifyScripts,
        subject: Subject,
        name: &str,
        state: &str,
        priority: u8,
    ) {
        self.write_fifos(&state_line(subject, name, state, priority));
        if let Some(script) = specific {
            let _ = self.jobs.send(Job { script: Arc::clone(script), args: Vec::new() });
        }
        if let Some(script) = &scripts.generic {
            let args =
                vec![subject.keyword().to_owned(), name.to_owned(), state.to_owned(), priority.to_string()];
            let _ = self.jobs.send(Job { script: Arc::clone(script), args });
        }
    }

    /// Runs what is queued, waiting at most `timeout`, then closes the FIFOs and lets their
    /// scripts finish.
    pub async fn close(self, timeout: Duration) {
        let Notifier { jobs, task, fifos, fifo_scripts } = self;
        drop(jobs);
        if tokio::time::timeout(timeout, task).await.is_err() {
            warn!("notify scripts still running after {timeout:?}");
        }
        drop(fifos);
        for mut script in fifo_scripts {
            if tokio::time::timeout(FIFO_SCRIPT_WAIT, &mut script).await.is_err() {
                // Dropping its run kills it.
                script.abort();
            }
        }
    }
}

/// keepalived's FIFO line for a state: `INSTANCE "VI_1" MASTER 100`.
fn state_line(subject: Subject, name: &str, state: &str, priority: u8) -> String {
    format!("{} \"{name}\" {state} {priority}\n", subject.keyword())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::Script;

    #[tokio::test]
    async fn scripts_run_in_order_with_keepalived_arguments() {
        let dir = std::env::temp_dir().join(format!("lbd-notify-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let log = dir.join("log");
        let script = |tag: &str| Script {
            command: format!("sh -c ... {tag}"),
            argv: vec![
                "sh".into(),
                "-c".into(),
                format!("echo \"{tag} $*\" >> {}", log.display()),
                "notify".into(),
            ],
            user: None,
            group: None,
        };
        let plan = NotifyPlan {
            master: Some(script("master")),
            backup: Some(script("backup")),
            fault: None,
            stop: Some(script("stop")),
            generic: Some(script("generic")),
            master_rx_lower_pri: Some(script("lower")),
            deleted: Some(script("deleted")),
        };
        let scripts = NotifyScripts::prepare(&plan, &ScriptPolicy::default(), "VI_1");
        let fifo_path = dir.join("fifo").display().to_string();
        // The FIFO's reader script copies it to a file, until end of file.
        let copy = dir.join("copy");
        let reader = Script {
            command: "sh -c cat".into(),
            argv: vec!["sh".into(), "-c".into(), format!("cat \"$1\" > {}", copy.display()), "reader".into()],
            user: None,
            group: None,
        };
        let reader = ScriptPolicy::default().prepare(&reader).unwrap_or_else(|e| panic!("{e}"));
        let notifier = Notifier::spawn(&[(&fifo_path, Some(reader))]);
        notifier.priority_changed(Subject::Instance, "VI_1", State::Backup, 140);
        notifier.notify(&scripts, Subject::Instance, "VI_1", State::Backup, 150);
        notifier.notify(&scripts, Subject::Instance, "VI_1", State::Master, 150);
        notifier.master_rx_lower_pri(&scripts, "VI_1", 150);
        notifier.notify(&scripts, Subject::Group, "G1", State::Fault, 0);
        notifier.notify(&scripts, Subject::Instance, "VI_1", State::Stop, 150);
        notifier.deleted(&scripts, "VI_2", 100, true);
        notifier.deleted(&scripts, "VI_3", 100, false);
        notifier.close(Duration::from_secs(10)).await;
        let lines = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(
            lines.lines().collect::<Vec<_>>(),
            [
                "backup ",
                "generic INSTANCE VI_1 BACKUP 150",
                "master ",
                "generic INSTANCE VI_1 MASTER 150",
                "lower ",
                "generic GROUP G1 FAULT 0",
                "stop ",
                "generic INSTANCE VI_1 STOP 150",
                "deleted ",
                "generic INSTANCE VI_2 DELETED 100",
                "generic INSTANCE VI_3 FAULT 100",
            ]
        );
        // The FIFO got keepalived's lines in the same order, and its script read them all
        // before it ended (close waits for it).
        let text = std::fs::read_to_string(&copy).unwrap_or_default();
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [
                "INSTANCE \"VI_1\" BACKUP_PRIORITY 140",
                "INSTANCE \"VI_1\" BACKUP 150",
                "INSTANCE \"VI_1\" MASTER 150",
                "INSTANCE \"VI_1\" MASTER_RX_LOWER_PRI 150",
                "GROUP \"G1\" FAULT 0",
                "INSTANCE \"VI_1\" STOP 150",
                "INSTANCE \"VI_2\" DELETED 100",
                "INSTANCE \"VI_3\" FAULT 100",
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
