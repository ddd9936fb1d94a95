//! How a child process runs, by keepalived's per-child `global_defs` keywords:
//! `<child>_priority` (nice value), `<child>_no_swap` (all memory locked, `mlockall`),
//! `<child>_rt_priority` (`SCHED_RR` at that priority), `<child>_cpu_affinity` (CPUs it may
//! run on) and `<child>_rlimit_rttime` (RLIMIT_RTTIME, microseconds of CPU a real-time thread
//! may use without blocking; the kernel signals, then kills, a thread that exceeds it), where
//! `<child>` is `vrrp`, `checker` or `bfd`.
//!
//! They apply to every thread the child has once its subsystem is set up (the XDP program's
//! verification, seconds of CPU in one system call, runs before real-time scheduling and its
//! CPU limit); threads started later inherit them from their creator. Real-time scheduling is set with `SCHED_RESET_ON_FORK`, so scripts the
//! child runs (MISC_CHECK, notify) run as ordinary processes. For the VRRP child, the VRRP
//! thread's own real-time scheduling (on by default) is [`crate::vrrp`]'s; `vrrp_rt_priority`
//! is applied there. A setting the kernel refuses (no CAP_SYS_NICE in a container, a CPU that
//! does not exist) is logged and the child runs without it, as keepalived does.

use std::io;

use nix::{
    sched::CpuSet,
    sys::{
        mman::{MlockAllFlags, mlockall},
        resource::{Resource, setrlimit},
    },
    unistd::Pid,
};
use tracing::{info, warn};

use super::Role;
use crate::config::model::GlobalDefs;

/// One child's settings, from the configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessSettings {
    /// The nice value.
    pub nice: Option<i32>,
    /// Lock all memory.
    pub no_swap: bool,
    /// `SCHED_RR` at this priority, for every thread.
    pub rt_priority: Option<u32>,
    /// The CPUs it may run on (all when empty).
    pub cpus: Vec<u32>,
    /// RLIMIT_RTTIME, microseconds.
    pub rlimit_rttime: Option<u64>,
}

impl ProcessSettings {
    /// The settings of the child in `role`.
    pub fn of(role: Role, g: &GlobalDefs) -> Self {
        match role {
            Role::Vrrp => Self {
                nice: g.vrrp_priority,
                no_swap: g.vrrp_no_swap,
                // The VRRP thread's, set by the VRRP engine itself.
                rt_priority: None,
                cpus: g.vrrp_cpu_affinity.clone(),
                rlimit_rttime: g.vrrp_rlimit_rttime,
            },
            Role::Checker => Self {
                nice: g.checker_priority,
                no_swap: g.checker_no_swap,
                rt_priority: g.checker_rt_priority,
                cpus: g.checker_cpu_affinity.clone(),
                rlimit_rttime: g.checker_rlimit_rttime,
            },
            Role::Bfd => Self {
                nice: g.bfd_priority,
                no_swap: g.bfd_no_swap,
                rt_priority: g.bfd_rt_priority,
                cpus: g.bfd_cpu_affinity.clone(),
                rlimit_rttime: g.bfd_rlimit_rttime,
            },
        }
    }

    /// Applies the settings to the calling process, every thread of it; what fails is logged.
    pub fn apply(&self, role: Role) {
        if *self == Self::default() {
            return;
        }
        let what = role.name();
        if let Some(limit) = self.rlimit_rttime {
            // Before real-time scheduling, so that no real-time thread runs unlimited.
            match setrlimit(Resource::RLIMIT_RTTIME, limit, limit) {
                Ok(()) => info!("{what}: RLIMIT_RTTIME {limit} us"),
                Err(e) => warn!("{what}: cannot set RLIMIT_RTTIME {limit}: {e}"),
            }
        }
        if self.no_swap {
            match mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE) {
                Ok(()) => info!("{what}: memory locked (no swap)"),
                Err(e) => warn!("{what}: cannot lock its memory: {e}"),
            }
        }
        let cpus = match cpu_set(&self.cpus) {
            Ok(set) => set,
            Err(e) => {
                warn!("{what}: CPU affinity {:?}: {e}", self.cpus);
                None
            }
        };
        let threads = match threads() {
            Ok(threads) => threads,
            Err(e) => {
                warn!("{what}: listing its threads: {e}");
                vec![0]
            }
        };
        let mut failed = Vec::new();
        for tid in threads {
            if let Some(nice) = self.nice
                // SAFETY: setpriority on a thread id of this process, no pointers. The `who`
                // argument's type differs between libcs.
                && unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as _, nice) } != 0
            {
                failed.push(format!("priority {nice}: {}", io::Error::last_os_error()));
            }
            if let Some(set) = &cpus
                && let Err(e) = nix::sched::sched_setaffinity(Pid::from_raw(tid), set)
            {
                failed.push(format!("CPU affinity {:?}: {e}", self.cpus));
            }
            if let Some(priority) = self.rt_priority
                && let Err(e) = set_round_robin(tid, priority)
            {
                failed.push(format!("SCHED_RR priority {priority}: {e}"));
            }
        }
        failed.dedup();
        for failure in &failed {
            warn!("{what}: cannot set {failure}");
        }
        if failed.is_empty() {
            info!(
                "{what}: nice {}, CPUs {}, scheduling {}",
                self.nice.map_or("unchanged".into(), |n| n.to_string()),
                if self.cpus.is_empty() {
                    "all".into()
                } else {
                    self.cpus.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
                },
                self.rt_priority.map_or("unchanged".into(), |p| format!("SCHED_RR priority {p}")),
            );
        }
    }
}

/// The CPU set of `cpus`, `None` for all.
fn cpu_set(cpus: &[u32]) -> nix::Result<Option<CpuSet>> {
    if cpus.is_empty() {
        return Ok(None);
    }
    let mut set = CpuSet::new();
    for &cpu in cpus {
        set.set(cpu as usize)?;
    }
    Ok(Some(set))
}

/// The thread ids of this process.
fn threads() -> io::Result<Vec<i32>> {
    let mut tids = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task")? {
        if let Some(tid) = entry?.file_name().to_str().and_then(|s| s.parse().ok()) {
            tids.push(tid);
        }
    }
    Ok(tids)
}

fn set_round_robin(tid: i32, priority: u32) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: i32::try_from(priority).map_err(|_| io::ErrorKind::InvalidInput)?,
    };
    // SAFETY: sched_setscheduler on a thread of this process with a valid sched_param.
    let rc = unsafe {
        libc::sched_setscheduler(tid, libc::SCHED_RR | libc::SCHED_RESET_ON_FORK, &raw const param)
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn each_child_takes_its_own_keywords() {
        let g = GlobalDefs {
            vrrp_priority: Some(-5),
            vrrp_rt_priority: Some(10),
            checker_priority: Some(3),
            checker_no_swap: true,
            checker_rt_priority: Some(2),
            checker_cpu_affinity: vec![0],
            bfd_rlimit_rttime: Some(20_000),
            ..GlobalDefs::default()
        };
        let vrrp = ProcessSettings::of(Role::Vrrp, &g);
        assert_eq!(
            vrrp,
            ProcessSettings { nice: Some(-5), ..ProcessSettings::default() },
            "rt: the engine's"
        );
        assert_eq!(
            ProcessSettings::of(Role::Checker, &g),
            ProcessSettings {
                nice: Some(3),
                no_swap: true,
                rt_priority: Some(2),
                cpus: vec![0],
                rlimit_rttime: None
            }
        );
        assert_eq!(
            ProcessSettings::of(Role::Bfd, &g),
            ProcessSettings { rlimit_rttime: Some(20_000), ..ProcessSettings::default() }
        );
    }

    #[test]
    fn cpu_lists_become_sets_and_bad_cpus_are_refused() {
        assert!(cpu_set(&[]).unwrap().is_none());
        let set = cpu_set(&[0, 1]).unwrap().unwrap();
        assert!(set.is_set(0).unwrap() && set.is_set(1).unwrap() && !set.is_set(2).unwrap());
        assert!(cpu_set(&[100_000]).is_err());
    }
}
