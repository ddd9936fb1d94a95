//! Tracking: interfaces (`track_interface`, and an instance's own interface unless
//! `dont_track_primary`), scripts (`vrrp_script` + `track_script`), files (`track_file`) and
//! BFD sessions (`track_bfd`, states from the BFD child, see [`crate::bfd`]), turned into the [`Event::Fault`](super::state::Event::Fault) and
//! [`Event::PriorityAdjustment`](super::state::Event::PriorityAdjustment) of each instance.
//!
//! The arithmetic follows keepalived 2.2.7's `vrrp_track.c`:
//! - weight 0: the object being down (a failed script, a non-zero file) puts the instance in
//!   FAULT; with `reverse`, being up does;
//! - weight > 0: added (× −1 with `reverse`) while the object is up; weight < 0: added
//!   (× −1 with `reverse`) while it is down. A script that has not reported yet counts as neither;
//! - `unicast_fault_no_peer` without peers is an object down for good, always FAULT;
//! - `track_src_ip`: the configured source address is an object up while it is on its
//!   interface (FAULT when it is not);
//! - a BFD session counts as an object up or down like an interface (its weight from
//!   `track_bfd`, else from the `bfd_instance`); one not reported yet counts as neither;
//! - a file's value is multiplied by the weight (negated with `reverse`); −254 or less is FAULT;
//! - a script changes state after `rise` successes or `fall` failures in a row (its first result
//!   settles it; `init_fail` starts it failed).
//!
//! The sans-IO part ([`evaluate`], [`ScriptState`]) is unit tested; the tasks
//! ([`spawn_script`], [`spawn_file`], [`spawn_links`]) only report observations.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    net::IpAddr,
    path::Path,
    time::Duration,
};

use tokio::{sync::mpsc::UnboundedSender, task::JoinHandle, time::Instant};
use tracing::{info, warn};

use super::{
    config::{FilePlan, ScriptPlan},
    script::{Outcome, PreparedScript},
};
use crate::netlink::{
    NetlinkError, RcvBuf,
    monitor::{AddressChange, AddressMonitor, LinkChange, LinkMonitor},
};

/// How often a tracked file is read (keepalived uses inotify; a poll this short is as good for
/// VRRP timescales).
pub const FILE_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// The priority a file must bring an instance to for FAULT.
const FILE_FAULT: i64 = -254;

/// A tracked object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TrackedObject {
    /// An interface, by name.
    Interface(String),
    /// A `vrrp_script`, by index in [`super::config::Plan::scripts`].
    Script(usize),
    /// A `track_file`, by index in [`super::config::Plan::files`].
    File(usize),
    /// A `bfd_instance`, by name.
    Bfd(String),
    /// `unicast_fault_no_peer` with no `unicast_peer`: down for good (FAULT until a reload
    /// brings peers).
    NoUnicastPeer,
    /// `track_src_ip`: the configured source address, up while it is on the interface.
    Address {
        /// The interface's index.
        ifindex: u32,
        /// The address.
        address: IpAddr,
    },
}

impl fmt::Display for TrackedObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrackedObject::Interface(name) => write!(f, "interface {name}"),
            TrackedObject::Script(index) => write!(f, "script #{index}"),
            TrackedObject::File(index) => write!(f, "file #{index}"),
            TrackedObject::Bfd(name) => write!(f, "BFD {name}"),
            TrackedObject::NoUnicastPeer => f.write_str("unicast without peers"),
            TrackedObject::Address { address, .. } => write!(f, "source address {address}"),
        }
    }
}

/// One tracked object of an instance, with its weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackEntry {
    /// What is tracked.
    pub object: TrackedObject,
    /// `weight` (0: FAULT when down).
    pub weight: i32,
    /// `reverse`.
    pub reverse: bool,
}

/// The state of a tracked script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptStatus {
    /// No result yet.
    Init,
    /// Succeeding.
    Ok,
    /// Failing.
    Ko,
}

/// A script's status with its rise/fall counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptState {
    status: ScriptStatus,
    rise: u32,
    fall: u32,
    successes: u32,
    failures: u32,
}

impl ScriptState {
    /// A script needing `rise` successes to become OK and `fall` failures to become KO.
    pub fn new(rise: u32, fall: u32, init_fail: bool) -> Self {
        ScriptState {
            status: if init_fail { ScriptStatus::Ko } else { ScriptStatus::Init },
            rise: rise.max(1),
            fall: fall.max(1),
            successes: 0,
            failures: 0,
        }
    }

    /// The current status.
    pub fn status(&self) -> ScriptStatus {
        self.status
    }

    /// Records a run; returns whether the status changed.
    pub fn record(&mut self, ok: bool) -> bool {
        let before = self.status;
        if ok {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            if self.status == ScriptStatus::Init || self.successes >= self.rise {
                self.status = ScriptStatus::Ok;
            }
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
            if self.status == ScriptStatus::Init || self.failures >= self.fall {
                self.status = ScriptStatus::Ko;
            }
        }
        self.status != before
    }
}

/// What the tracked objects are observed to be.
#[derive(Debug, Clone, Default)]
pub struct TrackStatus {
    /// Interface name → up (IFF_UP and IFF_RUNNING). A missing interface is down.
    pub interfaces: HashMap<String, bool>,
    /// By script index.
    pub scripts: Vec<ScriptState>,
    /// By file index: the number read from the file (0 when missing or not a number).
    pub files: Vec<i64>,
    /// bfd_instance name → up, as the BFD child last reported.
    pub bfd: HashMap<String, bool>,
    /// The addresses on the host's interfaces: (ifindex, address).
    pub addresses: HashSet<(u32, IpAddr)>,
}

/// The outcome of an instance's tracking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Evaluation {
    /// Some object with weight 0 is down (or up, reversed).
    pub fault: bool,
    /// The sum of the weights, added to the base priority.
    pub adjustment: i32,
}

/// The contribution of an up/down object: `Err(())` for FAULT.
fn contribution(up: bool, weight: i32, reverse: bool) -> Result<i32, ()> {
    let multiplier = if reverse { -1 } else { 1 };
    match weight {
        0 if up == reverse => Err(()),
        0 => Ok(0),
        w if up && w > 0 => Ok(w * multiplier),
        w if !up && w < 0 => Ok(w * multiplier),
        _ => Ok(0),
    }
}

/// Evaluates `entries` against `status`.
pub fn evaluate(entries: &[TrackEntry], status: &TrackStatus) -> Evaluation {
    let mut result = Evaluation::default();
    for entry in entries {
        let outcome = match &entry.object {
            TrackedObject::Interface(name) => contribution(
                status.interfaces.get(name).copied().unwrap_or(false),
                entry.weight,
                entry.reverse,
            ),
            TrackedObject::Bfd(name) => match status.bfd.get(name) {
                Some(&up) => contribution(up, entry.weight, entry.reverse),
                None => Ok(0),
            },
            TrackedObject::NoUnicastPeer => Err(()),
            TrackedObject::Address { ifindex, address } => {
                contribution(status.addresses.contains(&(*ifindex, *address)), entry.weight, entry.reverse)
            }
            TrackedObject::Script(index) => match status.scripts.get(*index).map(ScriptState::status) {
                Some(ScriptStatus::Ok) => contribution(true, entry.weight, entry.reverse),
                Some(ScriptStatus::Ko) => contribution(false, entry.weight, entry.reverse),
                Some(ScriptStatus::Init) | None => Ok(0),
            },
            TrackedObject::File(index) => {
                let value = status.files.get(*index).copied().unwrap_or(0);
                if entry.weight == 0 {
                    if (value != 0) != entry.reverse { Err(()) } else { Ok(0) }
                } else {
                    let sign = if entry.reverse { -1 } else { 1 };
                    let total = value.saturating_mul(i64::from(entry.weight)).saturating_mul(sign);
                    if total <= FILE_FAULT {
                        Err(())
                    } else {
                        // Within -253..=253 after the clamp, so it fits.
                        Ok(i32::try_from(total.min(253)).unwrap_or(253))
                    }
                }
            }
        };
        match outcome {
            Ok(weight) => result.adjustment = result.adjustment.saturating_add(weight),
            Err(()) => result.fault = true,
        }
    }
    result
}

/// An observation a tracking task reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackUpdate {
    /// An interface went up or down (or appeared / disappeared).
    Interface {
        /// Its name.
        name: String,
        /// IFF_UP and IFF_RUNNING.
        up: bool,
        /// Read by linkbeat polling rather than told by a netlink event.
        polled: bool,
    },
    /// A script run finished.
    Script {
        /// Its index.
        index: usize,
        /// Exit status 0 within the timeout.
        ok: bool,
    },
    /// A tracked file's value changed.
    File {
        /// Its index.
        index: usize,
        /// The new value.
        value: i64,
    },
    /// The BFD sessions' states (all of them, as the daemon last heard).
    Bfd(crate::bfd::BfdStates),
    /// An address was added to or removed from an interface.
    Address(AddressChange),
}

/// Passes on the BFD states the daemon receives, the current ones first.
pub fn spawn_bfd(
    mut states: tokio::sync::watch::Receiver<crate::bfd::BfdStates>,
    updates: UnboundedSender<TrackUpdate>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let current = states.borrow_and_update().clone();
            if updates.send(TrackUpdate::Bfd(current)).is_err() || states.changed().await.is_err() {
                return;
            }
        }
    })
}

/// Runs `script` every `plan.interval`, reporting each result.
pub fn spawn_script(
    index: usize,
    plan: ScriptPlan,
    script: PreparedScript,
    updates: UnboundedSender<TrackUpdate>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut next = Instant::now();
        loop {
            let outcome = script.run(&[], plan.timeout).await;
            if outcome == Outcome::TimedOut {
                warn!("VRRP_Script({}) timed out", plan.name);
            }
            if updates.send(TrackUpdate::Script { index, ok: outcome.success() }).is_err() {
                return;
            }
            next += plan.interval;
            let now = Instant::now();
            if next < now {
                next = now;
            }
            tokio::time::sleep_until(next).await;
        }
    })
}

/// The number in a tracked file: its first word as a signed integer, 0 if missing or not one.
pub fn read_file_value(path: &Path) -> i64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.split_whitespace().next().and_then(|word| word.parse().ok()))
        .unwrap_or(0)
}

/// Writes a `track_file`'s `init_file` value if the file is missing (or always with
/// `overwrite`).
pub fn init_file(plan: &FilePlan) {
    let Some(init) = &plan.init else { return };
    let path = Path::new(&plan.path);
    if (init.overwrite || !path.exists())
        && let Err(e) = std::fs::write(path, format!("{}\n", init.value))
    {
        warn!("track_file {}: cannot write {}: {e}", plan.name, plan.path);
    }
}

/// Polls a tracked file, reporting its value when it changes from `initial`.
pub fn spawn_file(
    index: usize,
    plan: FilePlan,
    initial: i64,
    updates: UnboundedSender<TrackUpdate>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = initial;
        let mut ticker = tokio::time::interval(FILE_POLL_INTERVAL);
        loop {
            ticker.tick().await;
            let value = read_file_value(Path::new(&plan.path));
            if value != last {
                info!("Tracked file {} changed to {value}", plan.name);
                last = value;
                if updates.send(TrackUpdate::File { index, value }).is_err() {
                    return;
                }
            }
        }
    })
}

/// Reports link changes (up = IFF_UP and IFF_RUNNING) as keepalived's netlink reflector does.
/// The subscription's receive buffer is `rcvbuf` if given (`vrrp_netlink_monitor_rcv_bufs`).
/// Events of the interfaces in `polled` are left out: [`spawn_linkbeat`] reads those.
pub fn spawn_links(
    updates: UnboundedSender<TrackUpdate>,
    rcvbuf: Option<RcvBuf>,
    polled: Vec<String>,
) -> Result<JoinHandle<()>, NetlinkError> {
    let mut monitor = LinkMonitor::open(rcvbuf)?;
    Ok(tokio::spawn(async move {
        while let Some(change) = monitor.next().await {
            let (name, up) = match change {
                LinkChange::Updated(link) => (link.name, link.up && link.running),
                LinkChange::Removed(link) => (link.name, false),
            };
            if polled.contains(&name) {
                continue;
            }
            let update = TrackUpdate::Interface { name, up, polled: false };
            if updates.send(update).is_err() {
                return;
            }
        }
    }))
}

/// keepalived's `POLLING_DELAY`: how often linkbeat polling reads an interface (measured with
/// keepalived 2.2.7: FAULT came 6 to 948 ms after the link went down).
pub const LINKBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// Linkbeat polling (`linkbeat_use_polling`, `linkbeat_interfaces`): reads the link state of
/// `interfaces` every [`LINKBEAT_INTERVAL`] and reports changes, instead of netlink events.
/// The state is the interface's IFF_UP and IFF_RUNNING (keepalived's IOCTL method; on a veth
/// its MII probe is not supported and ETHTOOL_GLINK reads the same carrier).
pub fn spawn_linkbeat(interfaces: Vec<String>, updates: UnboundedSender<TrackUpdate>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut last: HashMap<String, bool> = HashMap::new();
        let mut ticker = tokio::time::interval(LINKBEAT_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            for name in &interfaces {
                let up = link_up(name);
                if last.insert(name.clone(), up) == Some(up) {
                    continue;
                }
                if updates.send(TrackUpdate::Interface { name: name.clone(), up, polled: true }).is_err() {
                    return;
                }
            }
        }
    })
}

/// Whether the interface `name` is up and running (SIOCGIFFLAGS); false if it does not exist.
fn link_up(name: &str) -> bool {
    let Ok(socket) = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None) else {
        return false;
    };
    // SAFETY: an all-zero ifreq is valid (a name of NULs, a zero union).
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= request.ifr_name.len() {
        return false;
    }
    for (to, from) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *to = from.cast_signed();
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes the flags of the ifreq it is given.
    let rc = unsafe {
        libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&socket), libc::SIOCGIFFLAGS, &raw mut request)
    };
    if rc != 0 {
        return false;
    }
    // SAFETY: SIOCGIFFLAGS filled the union's flags.
    let flags = i32::from(unsafe { request.ifr_ifru.ifru_flags });
    flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0
}

/// Reports addresses added to and removed from interfaces (for `track_src_ip`).
pub fn spawn_addresses(
    updates: UnboundedSender<TrackUpdate>,
    rcvbuf: Option<RcvBuf>,
) -> Result<JoinHandle<()>, NetlinkError> {
    let mut monitor = AddressMonitor::open(rcvbuf)?;
    Ok(tokio::spawn(async move {
        while let Some(change) = monitor.next().await {
            if updates.send(TrackUpdate::Address(change)).is_err() {
                return;
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(object: TrackedObject, weight: i32, reverse: bool) -> TrackEntry {
        TrackEntry { object, weight, reverse }
    }

    fn interface(name: &str) -> TrackedObject {
        TrackedObject::Interface(name.into())
    }

    fn status(interfaces: &[(&str, bool)]) -> TrackStatus {
        TrackStatus {
            interfaces: interfaces.iter().map(|(n, u)| ((*n).to_string(), *u)).collect(),
            ..TrackStatus::default()
        }
    }

    #[test]
    fn a_bfd_session_weighs_like_an_interface_and_faults_without_weight() {
        let mut status = TrackStatus::default();
        let weighted = [entry(TrackedObject::Bfd("peer".into()), -30, false)];
        let faulting = [entry(TrackedObject::Bfd("peer".into()), 0, false)];
        // Not reported yet: neither.
        assert_eq!(evaluate(&weighted, &status), Evaluation::default());
        assert_eq!(evaluate(&faulting, &status), Evaluation::default());
        status.bfd.insert("peer".into(), false);
        assert_eq!(evaluate(&weighted, &status).adjustment, -30);
        assert!(evaluate(&faulting, &status).fault);
        status.bfd.insert("peer".into(), true);
        assert_eq!(evaluate(&weighted, &status), Evaluation::default());
        assert!(!evaluate(&faulting, &status).fault);
    }

    #[test]
    fn a_tracked_source_address_faults_while_it_is_missing_from_its_interface() {
        let address = IpAddr::from([10, 0, 0, 11]);
        let entries = [entry(TrackedObject::Address { ifindex: 2, address }, 0, false)];
        let mut status = TrackStatus::default();
        assert!(evaluate(&entries, &status).fault);
        // On another interface it does not count.
        status.addresses.insert((3, address));
        assert!(evaluate(&entries, &status).fault);
        status.addresses.insert((2, address));
        assert_eq!(evaluate(&entries, &status), Evaluation::default());
    }

    #[test]
    fn weight_zero_faults_on_down_and_reverse_on_up() {
        let entries = [entry(interface("eth0"), 0, false)];
        assert_eq!(evaluate(&entries, &status(&[("eth0", true)])), Evaluation::default());
        assert!(evaluate(&entries, &status(&[("eth0", false)])).fault);
        assert!(evaluate(&entries, &status(&[])).fault, "a missing interface is down");
        let reversed = [entry(interface("eth0"), 0, true)];
        assert!(evaluate(&reversed, &status(&[("eth0", true)])).fault);
        assert!(!evaluate(&reversed, &status(&[("eth0", false)])).fault);
    }

    #[test]
    fn weights_apply_like_keepalived() {
        let up = status(&[("a", true)]);
        let down = status(&[("a", false)]);
        let eval = |w, r, s: &TrackStatus| evaluate(&[entry(interface("a"), w, r)], s).adjustment;
        assert_eq!((eval(10, false, &up), eval(10, false, &down)), (10, 0));
        assert_eq!((eval(-10, false, &up), eval(-10, false, &down)), (0, -10));
        assert_eq!((eval(10, true, &up), eval(10, true, &down)), (-10, 0));
        assert_eq!((eval(-10, true, &up), eval(-10, true, &down)), (0, 10));
    }

    #[test]
    fn scripts_follow_rise_and_fall() {
        let mut script = ScriptState::new(2, 3, false);
        assert_eq!(script.status(), ScriptStatus::Init);
        assert!(script.record(true), "the first result settles an INIT script");
        assert_eq!(script.status(), ScriptStatus::Ok);
        assert!(!script.record(false) && !script.record(false));
        assert!(script.record(false), "third failure in a row");
        assert_eq!(script.status(), ScriptStatus::Ko);
        assert!(!script.record(true));
        assert!(script.record(true), "second success in a row");
        assert_eq!(ScriptState::new(1, 1, true).status(), ScriptStatus::Ko);

        let mut status =
            TrackStatus { scripts: vec![ScriptState::new(1, 1, false)], ..TrackStatus::default() };
        let entries = [entry(TrackedObject::Script(0), -20, false)];
        assert_eq!(evaluate(&entries, &status), Evaluation::default(), "INIT counts as neither");
        status.scripts[0].record(false);
        assert_eq!(evaluate(&entries, &status).adjustment, -20);
        status.scripts[0].record(true);
        assert_eq!(evaluate(&entries, &status).adjustment, 0);
        let faulting = [entry(TrackedObject::Script(0), 0, false)];
        status.scripts[0].record(false);
        assert!(evaluate(&faulting, &status).fault);
    }

    #[test]
    fn files_multiply_and_fault_at_minus_254() {
        let mut status = TrackStatus { files: vec![0], ..TrackStatus::default() };
        let weighted = [entry(TrackedObject::File(0), 5, false)];
        let zero = [entry(TrackedObject::File(0), 0, false)];
        assert_eq!(evaluate(&weighted, &status), Evaluation::default());
        assert!(!evaluate(&zero, &status).fault);
        status.files[0] = -3;
        assert_eq!(evaluate(&weighted, &status).adjustment, -15);
        assert!(evaluate(&zero, &status).fault);
        status.files[0] = 100;
        assert_eq!(evaluate(&weighted, &status).adjustment, 253);
        status.files[0] = -60;
        assert!(evaluate(&weighted, &status).fault);
        let reversed = [entry(TrackedObject::File(0), 5, true)];
        assert_eq!(evaluate(&reversed, &status).adjustment, 253);
    }

    #[test]
    fn file_values_parse_the_first_word() {
        let dir = std::env::temp_dir().join(format!("lbd-track-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let file = dir.join("f");
        std::fs::write(&file, " -12 trailing\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read_file_value(&file), -12);
        std::fs::write(&file, "junk").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read_file_value(&file), 0);
        assert_eq!(read_file_value(&dir.join("missing")), 0);
        let plan = FilePlan {
            name: "f".into(),
            path: dir.join("init").display().to_string(),
            init: Some(crate::config::model::InitFile { value: 7, overwrite: false }),
        };
        init_file(&plan);
        assert_eq!(read_file_value(Path::new(&plan.path)), 7);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
