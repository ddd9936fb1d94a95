//! What the VRRP engine shows of itself: each instance's state, priority and counters, shared
//! with the daemon's status endpoint and dump files.
//!
//! The engine updates an instance's entry in place when it changes state, sends or receives an
//! advert; readers take a snapshot. The counters are keepalived's `keepalived.stats` ones.
//! A reader that must see every change of state as it happens (the D-Bus interface,
//! [`super::dbus`]) subscribes with [`VrrpStatus::with_events`] and gets [`StatusEvent`]s.

use std::{
    sync::{Arc, Mutex},
    time::SystemTime,
};

use serde::{Deserialize, Serialize};

/// One instance as the engine last reported it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// Its name (`VI_1`).
    pub name: String,
    /// Its interface.
    pub interface: String,
    /// Its VRID.
    pub vrid: u8,
    /// 2 or 3.
    pub version: u8,
    /// 4 (IPv4) or 6 (IPv6): the family of its addresses.
    #[serde(default)]
    pub family: u8,
    /// `INIT`, `BACKUP`, `MASTER` or `FAULT`, as keepalived names them.
    #[serde(deserialize_with = "state_name")]
    pub state: StateName,
    /// The configured priority.
    pub base_priority: u8,
    /// The priority after tracking weights.
    pub effective_priority: u8,
    /// State changes since start.
    pub transitions: u64,
    /// Seconds since the Unix epoch of the last state change.
    pub last_transition: f64,
    /// Counters.
    pub stats: InstanceStats,
}

/// A state's name. (An alias, so that serde does not take the field for one it could borrow
/// from the input.)
pub type StateName = &'static str;

/// Reads a state name back (a child process reports its instances to the parent) as the
/// static name the engine uses; an unknown one reads as `UNKNOWN`.
fn state_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    let name = String::deserialize(d)?;
    Ok(["INIT", "BACKUP", "MASTER", "FAULT", "STOP"].into_iter().find(|s| *s == name).unwrap_or("UNKNOWN"))
}

/// keepalived's per-instance counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStats {
    /// Adverts received and accepted for this instance.
    pub advert_rcvd: u64,
    /// Adverts sent.
    pub advert_sent: u64,
    /// Times it became MASTER.
    pub become_master: u64,
    /// Times it left MASTER.
    pub release_master: u64,
    /// Adverts dropped for a configuration mismatch (TTL, addresses, authentication, ...).
    pub discarded: u64,
    /// Priority-0 adverts received.
    pub pri_zero_rcvd: u64,
    /// Priority-0 adverts sent.
    pub pri_zero_sent: u64,
}

/// What the engine tells a subscriber ([`VrrpStatus::with_events`]), in the order it happens.
#[derive(Clone, Debug, PartialEq)]
pub enum StatusEvent {
    /// The engine's instances, as it built them (at its start, and at a reload's new engine).
    Instances(Vec<InstanceStatus>),
    /// Instance `name` entered `state`.
    State {
        /// The instance.
        name: String,
        /// Its new state, as keepalived names it.
        state: StateName,
    },
}

/// The sending end a subscriber hands the engine.
pub type StatusEvents = tokio::sync::mpsc::UnboundedSender<StatusEvent>;

/// The instances' status, shared between the engine (writer) and the daemon (readers).
#[derive(Clone, Debug, Default)]
pub struct VrrpStatus(Arc<Mutex<Vec<InstanceStatus>>>, Option<StatusEvents>);

impl VrrpStatus {
    /// A status whose changes of instances and of state are also sent to `events`.
    pub fn with_events(events: Option<StatusEvents>) -> Self {
        VrrpStatus(Arc::default(), events)
    }

    /// Tells the subscriber, if any (one that has gone is not an error: the engine runs on).
    fn send(&self, event: StatusEvent) {
        if let Some(events) = &self.1 {
            let _ = events.send(event);
        }
    }

    /// Tells the subscriber that instance `i` entered the state its entry now holds.
    pub(crate) fn announce(&self, i: usize) {
        let entry = self.0.lock().ok().and_then(|v| v.get(i).map(|e| (e.name.clone(), e.state)));
        if let Some((name, state)) = entry {
            self.send(StatusEvent::State { name, state });
        }
    }

    /// A snapshot of every instance.
    pub fn snapshot(&self) -> Vec<InstanceStatus> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Replaces the list (the engine, once its instances are built).
    pub(crate) fn set(&self, instances: Vec<InstanceStatus>) {
        if let Ok(mut v) = self.0.lock() {
            v.clone_from(&instances);
        }
        self.send(StatusEvent::Instances(instances));
    }

    /// Zeroes every instance's counters (keepalived's STATS_CLEAR signal).
    pub fn clear_stats(&self) {
        if let Ok(mut v) = self.0.lock() {
            for i in v.iter_mut() {
                i.stats = InstanceStats::default();
            }
        }
    }

    /// Changes instance `i`.
    pub(crate) fn update(&self, i: usize, change: impl FnOnce(&mut InstanceStatus)) {
        if let Ok(mut v) = self.0.lock()
            && let Some(entry) = v.get_mut(i)
        {
            change(entry);
        }
    }
}

/// Now, as keepalived's JSON `last_transition` gives it.
pub(crate) fn epoch_now() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}
