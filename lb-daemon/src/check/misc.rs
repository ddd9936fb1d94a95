//! `MISC_CHECK`: runs `misc_path` (split into arguments, not through a shell, as keepalived
//! 2.2.7 does) as its `user`, killing it after `misc_timeout` (default: the delay_loop).
//! Exit 0 is up, anything else down; with `misc_dynamic`, 1 is down and 2-255 up with weight
//! `status - 2`.

use std::{os::unix::process::ExitStatusExt as _, time::Duration};

use super::{CheckError, Probe};
use crate::vrrp::script::{Outcome, PreparedScript};

/// A resolved MISC_CHECK.
#[derive(Debug, Clone)]
pub struct MiscProbe {
    /// The program.
    pub script: PreparedScript,
    /// Time limit.
    pub timeout: Duration,
    /// `misc_dynamic`.
    pub dynamic: bool,
}

impl MiscProbe {
    /// One run of the script.
    pub async fn probe(&self) -> Result<Probe, CheckError> {
        judge(self.script.run(&[], self.timeout).await, self.dynamic, &self.script.command)
    }
}

/// The verdict of a run that ended with `outcome`.
pub fn judge(outcome: Outcome, dynamic: bool, command: &str) -> Result<Probe, CheckError> {
    match outcome {
        Outcome::Exited(status) => match (status.code(), dynamic) {
            (Some(0), _) => Ok(Probe::Up),
            (Some(code @ 2..=255), true) => Ok(Probe::UpWithWeight(code as u32 - 2)),
            (Some(code), _) => Err(CheckError::Script(format!("{command} exited with status {code}"))),
            (None, _) => Err(CheckError::Script(format!(
                "{command} was killed by signal {}",
                status.signal().unwrap_or_default()
            ))),
        },
        Outcome::TimedOut => Err(CheckError::Script(format!("{command} timed out"))),
        Outcome::NotStarted => Err(CheckError::Script(format!("{command} could not be started"))),
    }
}

#[cfg(test)]
mod tests {
    use std::process::ExitStatus;

    use super::*;

    fn exited(code: i32) -> Outcome {
        Outcome::Exited(ExitStatus::from_raw(code << 8))
    }

    #[test]
    fn exit_codes_with_and_without_misc_dynamic() {
        assert!(matches!(judge(exited(0), false, "x"), Ok(Probe::Up)));
        assert!(judge(exited(1), false, "x").is_err());
        assert!(judge(exited(7), false, "x").is_err());
        assert!(matches!(judge(exited(0), true, "x"), Ok(Probe::Up)));
        assert!(judge(exited(1), true, "x").is_err());
        assert!(matches!(judge(exited(2), true, "x"), Ok(Probe::UpWithWeight(0))));
        assert!(matches!(judge(exited(250), true, "x"), Ok(Probe::UpWithWeight(248))));
        assert!(judge(Outcome::TimedOut, true, "x").is_err());
        assert!(judge(Outcome::Exited(ExitStatus::from_raw(9)), false, "x").is_err());
    }

    #[tokio::test]
    async fn runs_the_script_with_its_arguments() {
        let policy = crate::vrrp::script::ScriptPolicy::default();
        let script = |cmd: &str| crate::config::model::Script {
            command: cmd.into(),
            argv: cmd.split(' ').map(str::to_owned).collect(),
            user: None,
            group: None,
        };
        let Ok(prepared) = policy.prepare(&script("sh -c exit\\ 5 x")) else { panic!("sh not found") };
        let mut probe = MiscProbe { script: prepared, timeout: Duration::from_secs(5), dynamic: true };
        probe.script.args = vec!["-c".into(), "exit 5".into()];
        assert!(matches!(probe.probe().await, Ok(Probe::UpWithWeight(3))));
        probe.script.args = vec!["-c".into(), "sleep 5".into()];
        probe.timeout = Duration::from_millis(100);
        assert!(probe.probe().await.is_err());
    }
}
