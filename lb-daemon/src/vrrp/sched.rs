//! How the VRRP thread is scheduled. A backup that waits for a CPU while its Master_Down_Timer
//! runs out takes over from a healthy master; at `advert_int 0.01` that timer is 36 ms, which a
//! loaded machine easily exceeds (measured in `cargo xtask bench vrrp`'s soak: keepalived with its
//! defaults changes state several times a minute there).
//!
//! So, beyond keepalived (where real-time scheduling is opt-in with `vrrp_rt_priority`), lbd runs
//! its VRRP thread with `SCHED_RR` by default, at [`DEFAULT_RT_PRIORITY`] (the lowest real-time
//! priority: above every ordinary process, below anything an administrator made real-time) or at
//! `vrrp_rt_priority` if set. The thread sleeps between adverts and uses microseconds of CPU per
//! advert; the kernel's real-time throttling (`kernel.sched_rt_runtime_us`, 95 % by default) stays
//! the safety net. `vrrp_priority` (a nice value) applies as in keepalived. Failures (no
//! CAP_SYS_NICE, e.g. in a container) are logged and VRRP runs as an ordinary thread.
//!
//! The policy is set with `SCHED_RESET_ON_FORK`: scripts (notify, vrrp_script) and threads
//! started from the VRRP thread run as ordinary ones, so that a busy script cannot take the CPU
//! from everything else.
//!
//! `max_auto_priority` / `min_auto_priority_delay` ([`AutoPriority`]) as keepalived 2.2.7 (measured
//! by stopping its VRRP process with SIGSTOP): when a timer runs at least
//! `min_auto_priority_delay` (1 s by default) after it was due, it logs `A thread timer expired
//! S.UUUUUU seconds ago`, then raises its real-time priority by one (`Set realtime priority N`;
//! the first step switches an ordinary process to `SCHED_RR` 1), never above
//! `max_auto_priority` (0, the default, and -1 turn this off; the keyword alone means 99). lbd's
//! thread starts real-time already, so the steps go up from its priority.

use tracing::{info, warn};

use crate::config::model::GlobalDefs;

/// The `SCHED_RR` priority of the VRRP thread without `vrrp_rt_priority`.
pub const DEFAULT_RT_PRIORITY: u32 = 1;

/// Applies `vrrp_priority` and real-time scheduling to the calling thread; whether it is
/// real-time.
pub fn apply(global: &GlobalDefs) -> bool {
    set_nice(global.vrrp_priority);
    let priority = rt_priority(global);
    match set_round_robin(priority) {
        Ok(()) => {
            info!("VRRP runs with real-time scheduling (SCHED_RR, priority {priority})");
            true
        }
        Err(e) => {
            warn!("cannot use real-time scheduling for VRRP (priority {priority}): {e}");
            false
        }
    }
}

/// Applies `vrrp_priority` (a nice value), if set, to the calling thread: the VRRP thread, and
/// its standby sender (a thread started by a `SCHED_RR` thread with `SCHED_RESET_ON_FORK` starts
/// at nice 0).
pub(super) fn set_nice(nice: Option<i32>) {
    if let Some(nice) = nice {
        // SAFETY: setpriority on the calling thread (who = 0), no pointers.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
        if rc != 0 {
            warn!("cannot set vrrp_priority {nice}: {}", std::io::Error::last_os_error());
        }
    }
}

/// `max_auto_priority`: raises the VRRP thread's real-time priority when its timers run late.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoPriority {
    /// The highest priority it may reach.
    max: u32,
    /// How late a timer must run to count.
    min_delay: std::time::Duration,
    /// The thread's priority now (0: not real-time).
    current: u32,
}

/// keepalived's `min_auto_priority_delay` default.
pub const DEFAULT_MIN_AUTO_PRIORITY_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

impl AutoPriority {
    /// The setting of `global`, if on, for a thread at real-time priority `current` (0: none).
    pub fn from_globals(global: &GlobalDefs, current: u32) -> Option<Self> {
        let max = u32::try_from(global.max_auto_priority?).ok().filter(|max| *max > 0)?;
        let min_delay = global.min_auto_priority_delay.unwrap_or(DEFAULT_MIN_AUTO_PRIORITY_DELAY);
        Some(AutoPriority { max, min_delay, current })
    }

    /// A timer ran `late` after it was due: the priority to switch to, if it should rise.
    pub fn late(&mut self, late: std::time::Duration) -> Option<u32> {
        if late < self.min_delay || self.current >= self.max {
            return None;
        }
        self.current += 1;
        Some(self.current)
    }

    /// Applies [`AutoPriority::late`] to the calling thread, logging as keepalived does.
    pub fn check(&mut self, late: std::time::Duration) {
        if late < self.min_delay {
            return;
        }
        info!("A thread timer expired {}.{:06} seconds ago", late.as_secs(), late.subsec_micros());
        if let Some(priority) = self.late(late) {
            match set_round_robin(priority) {
                Ok(()) => info!("Set realtime priority {priority}"),
                Err(e) => warn!("cannot set realtime priority {priority}: {e}"),
            }
        }
    }
}

/// The real-time priority [`apply`] gives the VRRP thread (if the kernel lets it).
pub fn rt_priority(global: &GlobalDefs) -> u32 {
    global.vrrp_rt_priority.unwrap_or(DEFAULT_RT_PRIORITY)
}

pub(super) fn set_round_robin(priority: u32) -> std::io::Result<()> {
    let param = libc::sched_param {
        sched_priority: i32::try_from(priority).map_err(|_| std::io::ErrorKind::InvalidInput)?,
    };
    // SAFETY: sched_setscheduler on the calling thread (pid 0) with a valid sched_param.
    let rc =
        unsafe { libc::sched_setscheduler(0, libc::SCHED_RR | libc::SCHED_RESET_ON_FORK, &raw const param) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_priority_rises_one_step_per_late_timer_up_to_its_maximum() {
        let globals = |max: Option<i32>, delay_ms: Option<u64>| GlobalDefs {
            max_auto_priority: max,
            min_auto_priority_delay: delay_ms.map(std::time::Duration::from_millis),
            ..GlobalDefs::default()
        };
        assert_eq!(AutoPriority::from_globals(&globals(None, None), 1), None);
        assert_eq!(AutoPriority::from_globals(&globals(Some(0), None), 1), None);
        assert_eq!(AutoPriority::from_globals(&globals(Some(-1), None), 1), None);
        let ms = std::time::Duration::from_millis;
        let mut auto = AutoPriority::from_globals(&globals(Some(3), None), 1).unwrap_or_else(|| panic!("on"));
        assert_eq!(auto.late(ms(999)), None, "under the default second");
        assert_eq!(auto.late(ms(1000)), Some(2));
        assert_eq!(auto.late(ms(5000)), Some(3));
        assert_eq!(auto.late(ms(5000)), None, "at the maximum");
        let mut auto =
            AutoPriority::from_globals(&globals(Some(10), Some(100)), 0).unwrap_or_else(|| panic!("on"));
        assert_eq!(auto.late(ms(150)), Some(1), "an ordinary thread becomes real-time at 1");
    }

    #[test]
    fn the_thread_becomes_round_robin() {
        // As root (the tests' premise) the call succeeds; the policy is then visible.
        std::thread::spawn(|| {
            set_round_robin(DEFAULT_RT_PRIORITY).unwrap_or_else(|e| panic!("{e}"));
            // SAFETY: sched_getscheduler on the calling thread.
            let policy = unsafe { libc::sched_getscheduler(0) };
            assert_eq!(policy, libc::SCHED_RR | libc::SCHED_RESET_ON_FORK);
            // What it starts runs as an ordinary thread (and so would a script it forks).
            let child = std::thread::spawn(|| {
                // SAFETY: sched_getscheduler on the calling thread.
                unsafe { libc::sched_getscheduler(0) }
            });
            assert_eq!(child.join().unwrap_or(-1), libc::SCHED_OTHER);
            assert!(set_round_robin(1000).is_err(), "out of range");
        })
        .join()
        .unwrap_or_else(|_| panic!("thread failed"));
    }
}
