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

use tracing::{info, warn};

use crate::config::model::GlobalDefs;

/// The `SCHED_RR` priority of the VRRP thread without `vrrp_rt_priority`.
pub const DEFAULT_RT_PRIORITY: u32 = 1;

/// Applies `vrrp_priority` and real-time scheduling to the calling thread.
pub fn apply(global: &GlobalDefs) {
    if let Some(nice) = global.vrrp_priority {
        // SAFETY: setpriority on the calling thread (who = 0), no pointers.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
        if rc != 0 {
            warn!("cannot set vrrp_priority {nice}: {}", std::io::Error::last_os_error());
        }
    }
    let priority = global.vrrp_rt_priority.unwrap_or(DEFAULT_RT_PRIORITY);
    match set_round_robin(priority) {
        Ok(()) => info!("VRRP runs with real-time scheduling (SCHED_RR, priority {priority})"),
        Err(e) => warn!("cannot use real-time scheduling for VRRP (priority {priority}): {e}"),
    }
}

fn set_round_robin(priority: u32) -> std::io::Result<()> {
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
