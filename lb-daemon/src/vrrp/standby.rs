//! A second sender of a MASTER's adverts, kept off the CPU the engine's thread runs on.
//!
//! The engine's thread sends every advert at its deadline. On a VM whose host stops one virtual
//! CPU at a time, that thread and its timer stop with their CPU, real-time or not, while the
//! backup keeps running on the other one. Measured in the soak of `cargo xtask bench vrrp`
//! (advert_int 0.01, a loaded 2-CPU VM): the master's adverts left up to 30 ms late, with steal
//! time growing on the master's CPU alone, and the backup took over from a healthy master
//! (BENCHMARKS.md, VRRP soak).
//!
//! So after each advert the engine publishes, per MASTER, what it sent and when its next advert
//! is due ([`Standby::publish`]). A standby thread, at the engine's real-time priority, sends that
//! advert itself when the engine is [`GRACE`] of an interval late, then once per interval while
//! the engine stays silent, at most [`STAND_IN_ADVERTS`] times in a row. An engine stuck for
//! longer still loses its backup: the standby bridges a stalled CPU, not a hung daemon. After
//! each wake-up the thread moves off the CPU the engine last published from, so that its timer
//! does not stop with the engine's.
//!
//! The protocol does not change: the standby's adverts are the engine's (a new IPv4
//! identification each, as for any advert), and no advert of the standby's follows a step-down
//! or a priority-0 advert: the engine empties the slot ([`Standby::clear`]), under the lock the
//! standby sends under, before an instance's actions run in any state but MASTER and before a
//! priority-0 advert. `auth_type AH` instances are not published: each of their adverts carries a
//! new sequence number.
//!
//! The bookkeeping is [`Table`], pure (no clock, no socket) and unit-tested; [`Standby`] adds the
//! thread, the lock and the sockets.

use std::{
    io,
    net::IpAddr,
    sync::{
        Arc, Condvar, Mutex, MutexGuard, PoisonError, TryLockError,
        atomic::{AtomicI32, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tracing::warn;

use super::{packet::VrrpAdvert, socket::VrrpSocket};

/// The standby sends when the engine is this fraction of an advert interval (1/N) late: half an
/// interval, so that the backup hears a MASTER at most 1.5 intervals apart while its engine's CPU
/// is stopped, against a Master_Down_Interval of more than 3.
pub const GRACE: u32 = 2;

/// The most adverts the standby sends in a row for an engine that published nothing since. With
/// [`GRACE`], it covers an engine stopped for 3.5 intervals, and a backup still takes over from an
/// engine stuck for good, about 3.5 intervals later than it would have otherwise.
pub const STAND_IN_ADVERTS: u32 = 3;

/// The adverts the standby may send, one slot per instance. Generic over what is sent, so that
/// tests use plain values.
#[derive(Debug)]
pub struct Table<T> {
    slots: Vec<Option<Slot<T>>>,
    stopped: bool,
}

#[derive(Debug)]
struct Slot<T> {
    payload: T,
    interval: Duration,
    /// When the engine's next advert is due.
    due: Instant,
    /// When the standby sends, if the engine has not published again by then.
    send_at: Instant,
    /// Adverts the standby sent since the engine last published.
    stood_in: u32,
}

impl<T> Table<T> {
    /// A table for `instances` instances, all empty.
    pub fn new(instances: usize) -> Self {
        Table { slots: (0..instances).map(|_| None).collect(), stopped: false }
    }

    /// Instance `i` (a MASTER) sent `payload` and sends its next advert at `due`, every
    /// `interval`. Whether the slot was not watched (empty, or its stand-ins used up): the
    /// standby may be waiting with no deadline, and must be woken.
    pub fn publish(&mut self, i: usize, payload: T, due: Instant, interval: Duration) -> bool {
        let Some(slot) = self.slots.get_mut(i) else { return false };
        let unwatched = slot.as_ref().is_none_or(|slot| slot.stood_in >= STAND_IN_ADVERTS);
        let send_at = due.checked_add(interval / GRACE).unwrap_or(due);
        *slot = Some(Slot { payload, interval, due, send_at, stood_in: 0 });
        unwatched
    }

    /// Empties instance `i`'s slot: nothing of it is sent any more.
    pub fn clear(&mut self, i: usize) -> Option<T> {
        self.slots.get_mut(i).and_then(Option::take).map(|slot| slot.payload)
    }

    /// Empties every slot and tells the standby to end.
    pub fn stop(&mut self) {
        self.slots.iter_mut().for_each(|slot| *slot = None);
        self.stopped = true;
    }

    /// Whether [`Table::stop`] was called.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// When the standby should look next: the earliest time a slot is to be sent, among those it
    /// may still stand in for. `None`: nothing to watch.
    pub fn next_check(&self) -> Option<Instant> {
        self.slots
            .iter()
            .flatten()
            .filter(|slot| slot.stood_in < STAND_IN_ADVERTS)
            .map(|slot| slot.send_at)
            .min()
    }

    /// Calls `send` with each payload due at `now` and how late its engine is, and counts it as
    /// sent: the next goes one interval later, if the engine publishes nothing before.
    pub fn overdue(&mut self, now: Instant, mut send: impl FnMut(usize, &T, Duration)) {
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            if slot.stood_in >= STAND_IN_ADVERTS || slot.send_at > now {
                continue;
            }
            send(i, &slot.payload, now.saturating_duration_since(slot.due));
            slot.stood_in += 1;
            slot.send_at = now.checked_add(slot.interval).unwrap_or(now);
        }
    }
}

/// What the standby sends for one MASTER: its advert, from its socket, to each destination.
#[derive(Debug)]
pub struct Advert {
    /// The instance's name, for the log.
    pub name: Arc<str>,
    pub advert: VrrpAdvert,
    pub socket: Arc<VrrpSocket>,
    /// The group, or the unicast peers.
    pub destinations: Vec<IpAddr>,
    /// keepalived's old unicast checksum.
    pub old_checksum: bool,
}

#[derive(Debug)]
struct Shared {
    table: Mutex<Table<Advert>>,
    wake: Condvar,
    /// The CPU the engine last published from (-1: not known).
    engine_cpu: AtomicI32,
}

/// The engine's handle on the standby thread. Dropping it stops the thread.
#[derive(Debug)]
pub struct Standby {
    shared: Arc<Shared>,
    /// The slots the engine filled and has not emptied since (so that emptying an empty one
    /// takes no lock).
    published: Vec<bool>,
    thread: Option<JoinHandle<()>>,
}

impl Standby {
    /// Starts the thread for `instances` instances, at `SCHED_RR` priority `rt_priority` if given
    /// and nice `nice` (`vrrp_priority`) if given: the engine's.
    pub fn spawn(instances: usize, rt_priority: Option<u32>, nice: Option<i32>) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            table: Mutex::new(Table::new(instances)),
            wake: Condvar::new(),
            engine_cpu: AtomicI32::new(-1),
        });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new().name("vrrp-standby".into()).spawn(move || {
            super::sched::set_nice(nice);
            run(&thread_shared, rt_priority);
        })?;
        Ok(Standby { shared, published: vec![false; instances], thread: Some(thread) })
    }

    /// Instance `i`, a MASTER, sent `advert` and sends the next at `due`, every `interval`.
    ///
    /// Never waits for the standby: if it holds the lock (looking or sending), this advert is not
    /// published, the next one is; meanwhile the standby may send one advert too many, which a
    /// backup takes as any other.
    pub fn publish(&mut self, i: usize, advert: Advert, due: Instant, interval: Duration) {
        // SAFETY: sched_getcpu takes no arguments.
        let cpu = unsafe { libc::sched_getcpu() };
        self.shared.engine_cpu.store(cpu, Ordering::Relaxed);
        let mut table = match self.shared.table.try_lock() {
            Ok(table) => table,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        let unwatched = table.publish(i, advert, due, interval);
        drop(table);
        if let Some(published) = self.published.get_mut(i) {
            *published = true;
        }
        if unwatched {
            self.shared.wake.notify_one();
        }
    }

    /// Instance `i` leaves MASTER or sends its priority-0 advert: once this returns, the standby
    /// sends nothing of it (it waits for a send in progress to end).
    pub fn clear(&mut self, i: usize) {
        if !self.published.get(i).copied().unwrap_or(false) {
            return;
        }
        let payload = lock(&self.shared.table).clear(i);
        self.published[i] = false;
        drop(payload);
    }

    /// Empties every slot and ends the thread.
    pub fn stop(&mut self) {
        lock(&self.shared.table).stop();
        self.published.iter_mut().for_each(|p| *p = false);
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            warn!("the VRRP standby sender panicked");
        }
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The standby thread: sleeps until a slot is due, sends it, and keeps off the engine's CPU.
fn run(shared: &Shared, rt_priority: Option<u32>) {
    if let Some(priority) = rt_priority
        && let Err(e) = super::sched::set_round_robin(priority)
    {
        warn!("the VRRP standby sender runs without real-time scheduling: {e}");
    }
    let cpus = Cpus::allowed();
    loop {
        cpus.keep_off(shared.engine_cpu.load(Ordering::Relaxed));
        let mut table = lock(&shared.table);
        if table.stopped() {
            return;
        }
        let mut sent = Vec::new();
        table.overdue(Instant::now(), |_, advert, late| {
            let errors: Vec<String> = advert
                .destinations
                .iter()
                .filter_map(|&to| {
                    advert
                        .socket
                        .send_now(&advert.advert, to, None, advert.old_checksum)
                        .err()
                        .map(|e| format!("{to}: {e}"))
                })
                .collect();
            sent.push((advert.name.clone(), late, errors));
        });
        let table = match table.next_check() {
            _ if !sent.is_empty() => table,
            Some(at) => {
                let wait = at.saturating_duration_since(Instant::now());
                shared.wake.wait_timeout(table, wait).map_or_else(|e| e.into_inner().0, |(table, _)| table)
            }
            None => shared.wake.wait(table).unwrap_or_else(PoisonError::into_inner),
        };
        drop(table);
        // Logged without the lock: the engine may want it meanwhile.
        for (name, late, errors) in sent {
            warn!(
                "({name}) advert sent by the standby sender: the VRRP thread is {:.1} ms late (it did not run)",
                late.as_secs_f64() * 1e3
            );
            for error in errors {
                warn!("({name}) standby advert to {error}: not sent");
            }
        }
    }
}

/// The CPUs the process may run on.
#[derive(Debug)]
struct Cpus(Vec<usize>);

impl Cpus {
    fn allowed() -> Self {
        // SAFETY: a zeroed cpu_set_t is an empty set; sched_getaffinity fills it for the calling
        // thread and is given its size.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: as above.
        if unsafe { libc::sched_getaffinity(0, size, &raw mut set) } != 0 {
            return Cpus(Vec::new());
        }
        // SAFETY: CPU_ISSET reads the set within CPU_SETSIZE.
        Cpus((0..libc::CPU_SETSIZE as usize).filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) }).collect())
    }

    /// Moves the calling thread off `engine` (a CPU number, -1 if unknown) if it is on it, onto
    /// the other allowed CPUs. Nothing to do with fewer than two.
    fn keep_off(&self, engine: i32) {
        let Ok(engine) = usize::try_from(engine) else { return };
        // SAFETY: sched_getcpu takes no arguments.
        let here = unsafe { libc::sched_getcpu() };
        if self.0.len() < 2 || usize::try_from(here).ok() != Some(engine) {
            return;
        }
        // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes within CPU_SETSIZE (the
        // CPUs come from CPU_ISSET's range); sched_setaffinity reads the set of the given size.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for &cpu in self.0.iter().filter(|&&cpu| cpu != engine) {
                libc::CPU_SET(cpu, &mut set);
            }
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw const set) != 0 {
                warn!("the VRRP standby sender cannot leave CPU {engine}: {}", io::Error::last_os_error());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// What `overdue` sends at `now`: (instance, payload, engine late in ms).
    fn sent(table: &mut Table<&'static str>, now: Instant) -> Vec<(usize, &'static str, u128)> {
        let mut sent = Vec::new();
        table.overdue(now, |i, payload, late| sent.push((i, *payload, late.as_millis())));
        sent
    }

    #[test]
    fn an_engine_on_time_is_never_stood_in_for() {
        let t0 = Instant::now();
        let mut table = Table::new(1);
        assert_eq!(table.next_check(), None, "empty: nothing to watch");
        assert!(table.publish(0, "a", t0 + ms(10), ms(10)), "first publish wakes the standby");
        assert_eq!(table.next_check(), Some(t0 + ms(15)), "half an interval after the due time");
        for n in 1..100 {
            // The engine sends each advert on time (or less than half an interval late).
            assert_eq!(sent(&mut table, t0 + ms(10 * n + 4)), []);
            assert!(!table.publish(0, "a", t0 + ms(10 * (n + 1)), ms(10)));
        }
    }

    #[test]
    fn a_stalled_engine_is_stood_in_for_once_per_interval_at_most_three_times() {
        let t0 = Instant::now();
        let mut table = Table::new(2);
        table.publish(0, "a", t0 + ms(10), ms(10));
        table.publish(1, "b", t0 + ms(100), ms(100));
        assert_eq!(sent(&mut table, t0 + ms(14)), []);
        assert_eq!(sent(&mut table, t0 + ms(15)), [(0, "a", 5)]);
        assert_eq!(sent(&mut table, t0 + ms(20)), [], "not again within the interval");
        assert_eq!(table.next_check(), Some(t0 + ms(25)));
        // The standby itself woke late: the next one interval after what it sent.
        assert_eq!(sent(&mut table, t0 + ms(28)), [(0, "a", 18)]);
        assert_eq!(sent(&mut table, t0 + ms(38)), [(0, "a", 28)]);
        assert_eq!(sent(&mut table, t0 + ms(60)), [], "three in a row at most");
        assert_eq!(table.next_check(), Some(t0 + ms(150)), "only the other instance is watched");
        assert_eq!(sent(&mut table, t0 + ms(150)), [(1, "b", 50)]);
        // The engine runs again: it publishes, the count starts over, and the standby, which
        // watched nothing of it any more, is woken.
        assert!(table.publish(0, "a2", t0 + ms(70), ms(10)));
        assert_eq!(sent(&mut table, t0 + ms(75)), [(0, "a2", 5)]);
    }

    #[test]
    fn an_emptied_slot_is_never_sent_and_stop_empties_all() {
        let t0 = Instant::now();
        let mut table = Table::new(3);
        table.publish(0, "a", t0, ms(10));
        table.publish(2, "c", t0, ms(10));
        assert!(!table.publish(7, "out of range", t0, ms(10)));
        assert_eq!(table.clear(0), Some("a"));
        assert_eq!(table.clear(0), None);
        assert_eq!(table.clear(9), None);
        assert_eq!(sent(&mut table, t0 + ms(1000)), [(2, "c", 1000)]);
        // Filled again after a clear (MASTER again): it wakes the standby again.
        assert!(table.publish(0, "a", t0 + ms(1000), ms(10)));
        table.stop();
        assert!(table.stopped());
        assert_eq!(table.next_check(), None);
        assert_eq!(sent(&mut table, t0 + ms(5000)), []);
    }
}
