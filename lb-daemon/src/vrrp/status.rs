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
    /// The index of the interface adverts go out of (the VMAC's with use_vmac).
    #[serde(default)]
    pub ifindex: u32,
    /// That interface's MAC address.
    #[serde(default)]
    pub mac: Vec<u8>,
    /// The address adverts go from (RFC 2787's `vrrpOperPrimaryIpAddr`).
    #[serde(default)]
    pub source_address: Option<std::net::IpAddr>,
    /// The current master's address: ours while MASTER, else the sender of the last advert
    /// accepted (RFC 2787's `vrrpOperMasterIpAddr`); none before one is known.
    #[serde(default)]
    pub master_address: Option<std::net::IpAddr>,
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

/// One state change, as the engine made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateChange {
    /// Its number, from 1, in this engine's life.
    pub seq: u64,
    /// The instance's position in the list.
    pub index: usize,
    /// The state it entered.
    pub state: StateName,
}

/// How many state changes are kept for readers that have not caught up.
const HISTORY: usize = 256;

/// The instances' status, shared between the engine (writer) and the daemon (readers).
#[derive(Clone, Debug)]
pub struct VrrpStatus {
    instances: Arc<Mutex<Vec<InstanceStatus>>>,
    /// The last [`HISTORY`] state changes, so that a reader (the SNMP agent's notifications)
    /// sees each, even several between two looks.
    history: crate::history::History<StateChange>,
    /// A subscriber (the D-Bus interface), told of the instances and their state changes in
    /// order.
    events: Option<StatusEvents>,
}

impl Default for VrrpStatus {
    fn default() -> Self {
        Self { instances: Arc::default(), history: crate::history::History::new(HISTORY), events: None }
    }
}

impl VrrpStatus {
    /// A status whose changes of instances and of state are also sent to `events`.
    pub fn with_events(events: Option<StatusEvents>) -> Self {
        VrrpStatus { events, ..Self::default() }
    }

    /// Tells the subscriber, if any (one that has gone is not an error: the engine runs on).
    fn send(&self, event: StatusEvent) {
        if let Some(events) = &self.events {
            let _ = events.send(event);
        }
    }

    /// Tells the subscriber that instance `i` entered the state its entry now holds.
    pub(crate) fn announce(&self, i: usize) {
        let entry = self.instances.lock().ok().and_then(|v| v.get(i).map(|e| (e.name.clone(), e.state)));
        if let Some((name, state)) = entry {
            self.send(StatusEvent::State { name, state });
        }
    }

    /// A snapshot of every instance.
    pub fn snapshot(&self) -> Vec<InstanceStatus> {
        self.instances.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// A receiver that sees the last change's `seq` whenever an instance changes state.
    pub fn state_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.history.watch()
    }

    /// Whether `other` is this very status (the same engine's), not a copy of its values.
    pub fn same(&self, other: &VrrpStatus) -> bool {
        Arc::ptr_eq(&self.instances, &other.instances)
    }

    /// The state changes after `seq` that are still kept, oldest first.
    pub fn changes_since(&self, seq: u64) -> Vec<StateChange> {
        self.history.since(seq)
    }

    /// Replaces the list (the engine, once its instances are built).
    pub(crate) fn set(&self, instances: Vec<InstanceStatus>) {
        if let Ok(mut v) = self.instances.lock() {
            v.clone_from(&instances);
        }
        self.send(StatusEvent::Instances(instances));
    }

    /// Records that instance `index` entered `state` (its entry already says so), and tells
    /// the readers of [`VrrpStatus::state_changes`].
    pub(crate) fn state_changed(&self, index: usize, state: StateName) {
        self.history.push(|seq| StateChange { seq, index, state });
    }

    /// Zeroes every instance's counters (keepalived's STATS_CLEAR signal).
    pub fn clear_stats(&self) {
        if let Ok(mut v) = self.instances.lock() {
            for i in v.iter_mut() {
                i.stats = InstanceStats::default();
            }
        }
    }

    /// Changes instance `i`.
    pub(crate) fn update(&self, i: usize, change: impl FnOnce(&mut InstanceStatus)) {
        if let Ok(mut v) = self.instances.lock()
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
