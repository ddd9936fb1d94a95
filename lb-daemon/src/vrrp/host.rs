//! What the host is doing that a backup's timing depends on: whether packets it has received
//! are still waiting to be delivered, and whether its hypervisor stopped some of its CPUs.
//!
//! - Received packets reach their sockets from softirq context. When softirqs pile up, the
//!   kernel hands them to its `ksoftirqd/N` threads, ordinary tasks that compete for the CPU
//!   with every other process: the master's adverts can wait there while the backup, a
//!   real-time thread, runs on time and finds none. A runnable `ksoftirqd` is the sign.
//! - A virtual machine's CPUs are stopped by its host at times (steal time in `/proc/stat`),
//!   one at a time or all together. A master on a stopped CPU of the same host (routers in
//!   containers or VMs side by side, the soak of `cargo xtask bench vrrp`) sends its advert
//!   late while its backup runs on another CPU: measured there, a master stopped 26.8 ms at
//!   `advert_int 0.01`, its advert read 0.1-3 ms after the backup took over. Steal that grew
//!   on one CPU, since about the last advert, by half the slack a master has before its backup
//!   takes over (Master_Down_Interval − Master_Adver_Interval) is the sign.
//!
//! Either makes the Master_Down_Timer's stall grace apply ([`super::state::Event::TimerHostBusy`]):
//! a few milliseconds more, once, before taking over.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The `/proc/PID/stat` files of the host's `ksoftirqd/N` threads, found once at start.
#[derive(Debug, Default)]
pub struct SoftirqThreads {
    stats: Vec<PathBuf>,
}

impl SoftirqThreads {
    /// Finds the `ksoftirqd/N` threads under `/proc` (none found: [`busy`](Self::busy) is
    /// always false).
    pub fn find() -> Self {
        let Ok(entries) = fs::read_dir("/proc") else { return Self::default() };
        let stats = entries
            .flatten()
            .filter(|entry| {
                entry.file_name().to_str().is_some_and(|name| name.bytes().all(|b| b.is_ascii_digit()))
            })
            .filter(|entry| {
                fs::read_to_string(entry.path().join("comm")).is_ok_and(|comm| comm.starts_with("ksoftirqd/"))
            })
            .map(|entry| entry.path().join("stat"))
            .collect();
        SoftirqThreads { stats }
    }

    /// Whether any of them is runnable or running now: received packets wait for it.
    pub fn busy(&self) -> bool {
        self.stats.iter().any(|path| fs::read(path).is_ok_and(|stat| state_of(&stat) == Some(b'R')))
    }

    /// How many were found.
    pub fn len(&self) -> usize {
        self.stats.len()
    }

    /// Whether none was found.
    pub fn is_empty(&self) -> bool {
        self.stats.is_empty()
    }
}

/// How often, at most, the steal counters are read when adverts arrive.
const STEAL_SAMPLE: Duration = Duration::from_millis(100);

/// Per-CPU steal time, read from `/proc/stat` when adverts arrive (at most every
/// [`STEAL_SAMPLE`]) and again when a Master_Down_Timer runs out.
#[derive(Debug, Default)]
pub struct Steal {
    last: Option<(Instant, Vec<u64>)>,
}

impl Steal {
    /// An advert arrived at `now`: the reference for [`Steal::grew`], refreshed if older than
    /// [`STEAL_SAMPLE`].
    pub fn advert(&mut self, now: Instant) {
        if self.last.as_ref().is_none_or(|(at, _)| now.saturating_duration_since(*at) >= STEAL_SAMPLE) {
            self.last = read_steal().map(|steal| (now, steal));
        }
    }

    /// Whether any CPU's steal time grew by at least `min` since the reference (so within
    /// [`STEAL_SAMPLE`] before the last advert, or since).
    pub fn grew(&self, min: Duration) -> bool {
        let Some((_, before)) = &self.last else { return false };
        // SAFETY: sysconf has no memory arguments.
        let per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100).max(1);
        let ticks = (min.as_millis() as u64 * per_second).div_ceil(1000).max(1);
        read_steal().is_some_and(|now| grew(before, &now, ticks))
    }
}

/// Whether any counter of `now` is at least `by` above its counterpart in `before`.
fn grew(before: &[u64], now: &[u64], by: u64) -> bool {
    before.iter().zip(now).any(|(b, n)| n.saturating_sub(*b) >= by)
}

/// The steal column of every `cpuN` line of `/proc/stat`.
fn read_steal() -> Option<Vec<u64>> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    Some(steal_of(&stat))
}

/// The steal column (the eighth number) of every `cpuN` line of a `/proc/stat` text.
fn steal_of(stat: &str) -> Vec<u64> {
    stat.lines()
        .filter(|line| line.starts_with("cpu") && line.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .filter_map(|line| line.split_ascii_whitespace().nth(8)?.parse().ok())
        .collect()
}

/// The state letter of a `/proc/PID/stat` line: the field after the command name, which is in
/// parentheses and may itself contain parentheses and spaces.
fn state_of(stat: &[u8]) -> Option<u8> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    stat.get(close + 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_follows_the_last_parenthesis() {
        assert_eq!(state_of(b"15 (ksoftirqd/1) R 2 0 0 0 -1"), Some(b'R'));
        assert_eq!(state_of(b"15 (a) b) (c) S 2 0"), Some(b'S'));
        assert_eq!(state_of(b"15 (ksoftirqd/1)"), None);
        assert_eq!(state_of(b""), None);
    }

    #[test]
    fn steal_is_the_eighth_number_of_each_cpu_line() {
        let stat = "cpu  6705119 233716 1829737 5532173 152058 0 108771 138603 0 0\n\
                    cpu0 3272924 126018 918449 2901269 53118 0 12738 67805 0 0\n\
                    cpu1 3432195 107698 911287 2630904 98939 0 96032 70797 0 0\n\
                    intr 1 2 3\n";
        assert_eq!(steal_of(stat), [67805, 70797]);
        assert!(!grew(&[67805, 70797], &[67805, 70797], 1));
        assert!(grew(&[67805, 70797], &[67805, 70798], 1));
        assert!(!grew(&[67805, 70797], &[67805, 70798], 2));
        assert!(grew(&[67805, 70797], &[67807, 70797], 2));
        let mut steal = Steal::default();
        assert!(!steal.grew(Duration::from_millis(10)), "no reference yet");
        steal.advert(Instant::now());
        assert_eq!(steal.last.as_ref().map(|(_, v)| v.len()), read_steal().map(|v| v.len()));
    }

    #[test]
    fn this_host_has_softirq_threads_and_they_can_be_read() {
        // Every Linux host has one per CPU; reading them must work (busy or not).
        let threads = SoftirqThreads::find();
        assert!(!threads.is_empty());
        let _ = threads.busy();
    }
}
