//! What the host's kernel is doing that a backup's timing depends on: whether packets it has
//! received are still waiting to be delivered.
//!
//! Received packets reach their sockets from softirq context. When softirqs pile up, the kernel
//! hands them to its `ksoftirqd/N` threads, ordinary tasks that compete for the CPU with every
//! other process: on a loaded host the master's adverts can wait there for longer than
//! Master_Down_Interval while the backup, a real-time thread, runs on time and finds none
//! (`cargo xtask bench vrrp`'s soak, advert_int 0.01 s: takeovers handled on time with the
//! master's advert read 2-3 ms later). A runnable `ksoftirqd` at that moment is the sign.

use std::fs;
use std::path::PathBuf;

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
    fn this_host_has_softirq_threads_and_they_can_be_read() {
        // Every Linux host has one per CPU; reading them must work (busy or not).
        let threads = SoftirqThreads::find();
        assert!(!threads.is_empty());
        let _ = threads.busy();
    }
}
