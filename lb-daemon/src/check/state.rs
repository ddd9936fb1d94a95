//! One checker's schedule and verdict: a sans-IO state machine driven by probe results and an
//! injected clock.
//!
//! As keepalived 2.2.7 (`check_*.c` epilogues): a checker starts up, or down with `alpha`; its
//! first probe runs after a random delay of at most `warmup`; a success brings it up and waits
//! `delay_loop`; a failure is retried `retry` times, `delay_before_retry` apart, before the
//! checker goes down, and the next probe then waits `delay_loop`. At start the retries are
//! already spent: one failure is enough until the first success.

use std::time::{Duration, Instant};

/// The timing of one checker, with keepalived's inheritance already applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Period between checks.
    pub delay_loop: Duration,
    /// Failed probes retried before the checker goes down.
    pub retry: u32,
    /// Wait before a retry.
    pub delay_before_retry: Duration,
    /// Upper bound of the random delay before the first probe (0: none).
    pub warmup: Duration,
    /// The checker starts down.
    pub alpha: bool,
    /// A probe taking longer fails.
    pub connect_timeout: Duration,
}

/// What a probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The server answered as expected.
    Up,
    /// The server answered as expected and asks for this weight (MISC_CHECK `misc_dynamic`).
    UpWithWeight(u32),
    /// It did not.
    Down,
}

/// A change of the checker's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// It went up (or its dynamic weight changed while up).
    Up {
        /// The weight a `misc_dynamic` checker asked for.
        weight: Option<u32>,
    },
    /// It went down.
    Down,
}

/// One checker's state.
#[derive(Debug, Clone)]
pub struct CheckerState {
    timing: Timing,
    up: bool,
    weight: Option<u32>,
    retries: u32,
    has_run: bool,
    next: Instant,
    suspended: bool,
}

impl CheckerState {
    /// A checker whose first probe runs at `now + jitter`, `jitter` being a random fraction
    /// (0 to 1) of `warmup`.
    pub fn new(timing: Timing, now: Instant, jitter: f64) -> Self {
        let first = timing.warmup.mul_f64(jitter.clamp(0.0, 1.0));
        CheckerState {
            timing,
            up: !timing.alpha,
            weight: None,
            retries: timing.retry,
            has_run: false,
            next: now + first,
            suspended: false,
        }
    }

    /// A checker taking over from its previous run, unchanged by a reload: up or down as it
    /// was, its start-up rule (retries spent until the first success) already behind it.
    pub fn resume(timing: Timing, now: Instant, jitter: f64, up: bool) -> Self {
        CheckerState { up, has_run: true, retries: 0, ..Self::new(timing, now, jitter) }
    }

    /// Whether the checker counts the server up.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// The weight last asked for by a dynamic checker.
    pub fn weight(&self) -> Option<u32> {
        self.weight
    }

    /// When the next probe is due.
    pub fn next_probe(&self) -> Instant {
        self.next
    }

    /// Whether probes are suspended (`ha_suspend`: the virtual server's address is not on this
    /// host).
    pub fn is_suspended(&self) -> bool {
        self.suspended
    }

    /// Suspends the probes (`ha_suspend`): the verdict stays as it is and no probe is due
    /// until [`CheckerState::resume_probes`].
    pub fn suspend(&mut self) {
        self.suspended = true;
    }

    /// Resumes suspended probes at `now`: a probe whose time came while suspended runs at once,
    /// with the retries the checker had.
    pub fn resume_probes(&mut self, now: Instant) {
        if self.suspended {
            self.suspended = false;
            self.next = self.next.max(now);
        }
    }

    /// The timing in effect.
    pub fn timing(&self) -> &Timing {
        &self.timing
    }

    /// Records the result of a probe that ended at `now`; schedules the next one and returns the
    /// change of verdict, if any.
    pub fn on_probe(&mut self, probe: Probe, now: Instant) -> Option<Change> {
        let first = !self.has_run;
        self.has_run = true;
        match probe {
            Probe::Up | Probe::UpWithWeight(_) => {
                self.retries = 0;
                self.next = now + self.timing.delay_loop;
                let weight = match probe {
                    Probe::UpWithWeight(w) => Some(w),
                    _ => self.weight,
                };
                let changed = !self.up || weight != self.weight;
                self.up = true;
                self.weight = weight;
                changed.then_some(Change::Up { weight })
            }
            Probe::Down if self.retries < self.timing.retry => {
                self.retries += 1;
                self.next = now + self.timing.delay_before_retry;
                None
            }
            Probe::Down => {
                self.retries = 0;
                self.next = now + self.timing.delay_loop;
                // An alpha checker that never succeeded is already down, but keepalived
                // reports its first failure.
                let changed = self.up || first;
                self.up = false;
                changed.then_some(Change::Down)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(retry: u32, alpha: bool) -> Timing {
        Timing {
            delay_loop: Duration::from_secs(6),
            retry,
            delay_before_retry: Duration::from_secs(1),
            warmup: Duration::from_secs(4),
            alpha,
            connect_timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn warmup_delays_the_first_probe_by_a_fraction() {
        let t0 = Instant::now();
        let s = CheckerState::new(timing(1, false), t0, 0.5);
        assert_eq!(s.next_probe() - t0, Duration::from_secs(2));
        assert!(s.is_up());
        let s = CheckerState::new(timing(1, false), t0, 7.0);
        assert_eq!(s.next_probe() - t0, Duration::from_secs(4));
    }

    #[test]
    fn failures_are_retried_before_going_down_then_wait_delay_loop() {
        let mut now = Instant::now();
        let mut s = CheckerState::new(timing(2, false), now, 0.0);
        assert_eq!(s.on_probe(Probe::Up, now), None, "already up: no change");
        assert_eq!(s.next_probe() - now, Duration::from_secs(6));
        now += Duration::from_secs(6);
        assert_eq!(s.on_probe(Probe::Down, now), None);
        assert_eq!(s.next_probe() - now, Duration::from_secs(1), "retry after delay_before_retry");
        now += Duration::from_secs(1);
        assert_eq!(s.on_probe(Probe::Down, now), None);
        assert!(s.is_up());
        now += Duration::from_secs(1);
        assert_eq!(s.on_probe(Probe::Down, now), Some(Change::Down), "third failure with retry 2");
        assert!(!s.is_up());
        assert_eq!(s.next_probe() - now, Duration::from_secs(6));
        now += Duration::from_secs(6);
        assert_eq!(s.on_probe(Probe::Down, now), None, "no retries needed to stay down");
        assert_eq!(s.on_probe(Probe::Down, now), None);
        assert_eq!(s.on_probe(Probe::Down, now), None);
        assert_eq!(s.on_probe(Probe::Up, now), Some(Change::Up { weight: None }));
        assert!(s.is_up());
    }

    #[test]
    fn at_start_one_failure_is_enough() {
        let now = Instant::now();
        let mut s = CheckerState::new(timing(3, false), now, 0.0);
        assert_eq!(s.on_probe(Probe::Down, now), Some(Change::Down));
        assert_eq!(s.next_probe() - now, Duration::from_secs(6));
    }

    #[test]
    fn a_success_resets_the_retry_count() {
        let now = Instant::now();
        let mut s = CheckerState::new(timing(1, false), now, 0.0);
        assert_eq!(s.on_probe(Probe::Up, now), None);
        assert_eq!(s.on_probe(Probe::Down, now), None);
        assert_eq!(s.on_probe(Probe::Up, now), None);
        assert_eq!(s.on_probe(Probe::Down, now), None, "the retry is available again");
        assert_eq!(s.on_probe(Probe::Down, now), Some(Change::Down));
    }

    #[test]
    fn retry_zero_goes_down_on_the_first_failure() {
        let now = Instant::now();
        let mut s = CheckerState::new(timing(0, false), now, 0.0);
        assert_eq!(s.on_probe(Probe::Down, now), Some(Change::Down));
    }

    #[test]
    fn alpha_starts_down_and_comes_up_on_the_first_success() {
        let now = Instant::now();
        let mut s = CheckerState::new(timing(1, true), now, 0.0);
        assert!(!s.is_up());
        assert_eq!(s.on_probe(Probe::Up, now), Some(Change::Up { weight: None }));
        let mut s = CheckerState::new(timing(0, true), now, 0.0);
        assert_eq!(s.on_probe(Probe::Down, now), Some(Change::Down), "first failure is reported");
        assert_eq!(s.on_probe(Probe::Down, now), None);
    }

    #[test]
    fn a_suspended_checker_keeps_its_verdict_and_probes_at_once_on_resume() {
        let t0 = Instant::now();
        let mut s = CheckerState::new(timing(0, false), t0, 0.0);
        assert_eq!(s.on_probe(Probe::Down, t0), Some(Change::Down));
        s.suspend();
        assert!(s.is_suspended() && !s.is_up(), "suspension keeps the verdict");
        // Resumed long after the probe was due: it runs at once.
        let later = t0 + Duration::from_secs(60);
        s.resume_probes(later);
        assert!(!s.is_suspended());
        assert_eq!(s.next_probe(), later);
        assert_eq!(s.on_probe(Probe::Up, later), Some(Change::Up { weight: None }));
        // Resumed before the next probe is due: the schedule stands.
        s.suspend();
        s.resume_probes(later + Duration::from_secs(1));
        assert_eq!(s.next_probe(), later + Duration::from_secs(6));
    }

    #[test]
    fn dynamic_weight_changes_are_reported_while_up() {
        let now = Instant::now();
        let mut s = CheckerState::new(timing(0, false), now, 0.0);
        assert_eq!(s.on_probe(Probe::UpWithWeight(5), now), Some(Change::Up { weight: Some(5) }));
        assert_eq!(s.on_probe(Probe::UpWithWeight(5), now), None);
        assert_eq!(s.on_probe(Probe::Up, now), None, "exit 0 keeps the weight");
        assert_eq!(s.weight(), Some(5));
        assert_eq!(s.on_probe(Probe::UpWithWeight(0), now), Some(Change::Up { weight: Some(0) }));
    }
}
