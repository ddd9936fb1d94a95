//! What the checkers publish of their virtual servers for readers outside the runner (the
//! checker child's SNMP agent): each virtual server's real servers (alive, weight, failing
//! checkers) and quorum, and a numbered history of the changes, so that a reader that was away
//! (the SNMP master agent restarting) can catch up on what it missed.
//!
//! The runner's collecting task writes it ([`CheckStatus::publish`]); readers take
//! [`CheckStatus::snapshot`] and [`CheckStatus::changes_since`], woken by
//! [`CheckStatus::changed`].

use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::history::History;

/// How many changes are kept for readers that were away.
const HISTORY: usize = 1024;

/// One real server as the checkers see it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RealStatus {
    /// No checker of it fails.
    pub alive: bool,
    /// Its weight (the configured one, or the last `misc_dynamic` one).
    pub weight: u32,
    /// How many of its checkers fail.
    pub failed_checks: u32,
}

/// One virtual server as the checkers see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceStatus {
    /// Its real servers, in configuration order.
    pub reals: Vec<RealStatus>,
    /// Whether its quorum is met.
    pub quorum_up: bool,
}

impl ServiceStatus {
    /// How many of its real servers are alive.
    pub fn reals_up(&self) -> u32 {
        u32::try_from(self.reals.iter().filter(|r| r.alive).count()).unwrap_or(u32::MAX)
    }
}

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Real server `.0` became alive (`true`) or died.
    Real(usize, bool),
    /// The quorum was met (`true`) or lost; also published once per virtual server at start,
    /// as keepalived notifies each virtual server's quorum state when its checker starts.
    Quorum(bool),
}

/// One change of virtual server `service`, with its count of real servers alive just after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    /// Its number, from 1, increasing.
    pub seq: u64,
    /// The virtual server (index in the configuration).
    pub service: usize,
    /// What changed.
    pub kind: ChangeKind,
    /// How many of its real servers were alive just after the change.
    pub reals_up: u32,
}

/// The checkers' published state, shared between the runner and its readers.
#[derive(Debug, Clone)]
pub struct CheckStatus {
    services: Arc<Mutex<Vec<ServiceStatus>>>,
    history: History<StatusChange>,
}

impl Default for CheckStatus {
    fn default() -> Self {
        Self { services: Arc::default(), history: History::new(HISTORY) }
    }
}

impl CheckStatus {
    /// Every virtual server, in configuration order.
    pub fn snapshot(&self) -> Vec<ServiceStatus> {
        self.services.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// A receiver that sees the last change's `seq` whenever something changes.
    pub fn changed(&self) -> watch::Receiver<u64> {
        self.history.watch()
    }

    /// Whether `other` is this very status (the same runner's), not a copy of its values.
    pub fn same(&self, other: &CheckStatus) -> bool {
        Arc::ptr_eq(&self.services, &other.services)
    }

    /// The changes after `seq` that are still kept, oldest first.
    pub fn changes_since(&self, seq: u64) -> Vec<StatusChange> {
        self.history.since(seq)
    }

    /// Replaces every virtual server's state (no change recorded).
    pub(crate) fn set(&self, services: Vec<ServiceStatus>) {
        if let Ok(mut kept) = self.services.lock() {
            *kept = services;
        }
    }

    /// Sets virtual server `service` to `after` (its changes, if any, are recorded with
    /// [`CheckStatus::publish`], after this).
    pub(crate) fn set_service(&self, service: usize, after: ServiceStatus) {
        if let Ok(mut kept) = self.services.lock()
            && let Some(slot) = kept.get_mut(service)
        {
            *slot = after;
        }
    }

    /// Records change `kind` of virtual server `service`, after which `reals_up` of its real
    /// servers are alive, and wakes the readers. (A change is a few bytes: a burst of them, a
    /// whole virtual server of 10,000 real servers failing, does not copy the virtual server.)
    pub(crate) fn publish(&self, service: usize, kind: ChangeKind, reals_up: u32) {
        self.history.push(|seq| StatusChange { seq, service, kind, reals_up });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(alive: &[bool]) -> ServiceStatus {
        ServiceStatus {
            reals: alive
                .iter()
                .map(|&a| RealStatus { alive: a, weight: 1, failed_checks: u32::from(!a) })
                .collect(),
            quorum_up: alive.iter().any(|&a| a),
        }
    }

    #[test]
    fn readers_catch_up_on_what_they_missed() {
        let status = CheckStatus::default();
        status.set(vec![service(&[true, true])]);
        let mut woken = status.changed();
        status.set_service(0, service(&[false, false]));
        status.publish(0, ChangeKind::Real(1, false), 1);
        status.publish(0, ChangeKind::Real(0, false), 0);
        status.publish(0, ChangeKind::Quorum(false), 0);
        assert!(woken.has_changed().unwrap_or(false));
        assert_eq!(*woken.borrow_and_update(), 3);
        let all = status.changes_since(0);
        assert_eq!(all.iter().map(|c| c.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(all[0].reals_up, 1);
        assert_eq!(status.changes_since(2).len(), 1);
        assert_eq!(status.snapshot(), [service(&[false, false])]);
        assert!(status.same(&status.clone()));
        assert!(!status.same(&CheckStatus::default()));
    }

    #[test]
    fn the_history_is_bounded() {
        let status = CheckStatus::default();
        status.set(vec![service(&[true])]);
        for i in 0..HISTORY + 10 {
            status.publish(0, ChangeKind::Real(0, i % 2 == 0), u32::from(i % 2 == 0));
        }
        let kept = status.changes_since(0);
        assert_eq!(kept.len(), HISTORY);
        assert_eq!(kept[0].seq, 11);
    }
}
