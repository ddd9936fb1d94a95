//! A bounded, numbered history of changes, for readers that look now and then and must see
//! every change since their last look (the SNMP agents' notifications): each change gets the
//! next number from 1, the last few are kept, and a watch carries the last number so that a
//! reader waits for a change rather than polling. The VRRP engine's state changes
//! ([`crate::vrrp::status`]) and the checkers' ([`crate::check::status`]) are kept in one each.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use tokio::sync::watch;

/// The history: shared by its clones.
#[derive(Debug, Clone)]
pub struct History<T> {
    kept: Arc<Mutex<VecDeque<(u64, T)>>>,
    last: Arc<watch::Sender<u64>>,
    capacity: usize,
}

impl<T: Clone> History<T> {
    /// An empty history keeping the last `capacity` changes.
    pub fn new(capacity: usize) -> Self {
        Self { kept: Arc::default(), last: Arc::new(watch::Sender::new(0)), capacity: capacity.max(1) }
    }

    /// Records the change `make` builds from its number, and wakes the readers.
    pub fn push(&self, make: impl FnOnce(u64) -> T) {
        let Ok(mut kept) = self.kept.lock() else { return };
        let seq = kept.back().map_or(1, |(seq, _)| seq + 1);
        if kept.len() == self.capacity {
            kept.pop_front();
        }
        kept.push_back((seq, make(seq)));
        drop(kept);
        self.last.send_replace(seq);
    }

    /// The changes after number `seq` that are still kept, oldest first.
    pub fn since(&self, seq: u64) -> Vec<T> {
        self.kept
            .lock()
            .map(|kept| kept.iter().filter(|(s, _)| *s > seq).map(|(_, change)| change.clone()).collect())
            .unwrap_or_default()
    }

    /// A receiver that sees the last change's number whenever there is a new one.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.last.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_changes_keeps_the_last_and_wakes_readers() {
        let history = History::new(3);
        let mut woken = history.watch();
        for _ in 0..5 {
            history.push(|seq| seq * 10);
        }
        assert!(woken.has_changed().unwrap_or(false));
        assert_eq!(*woken.borrow_and_update(), 5);
        assert_eq!(history.since(0), [30, 40, 50]);
        assert_eq!(history.since(4), [50]);
        assert!(history.since(5).is_empty());
    }
}
