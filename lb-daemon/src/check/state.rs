//! One checker's schedule and verdict: a sans-IO state machine driven by probe results and an
//! injected clock.
//!
//! As keepalived 2.2.7 (`check_*.c` epilogues): a checker starts up, or down with `alpha`; its
//! first probe runs after a random delay of at most `warmup`; a success brings it up and waits
//! `delay_loop`; a failure is retried `retry` times, `delay_before_retry` apart, before the
//! checker goes down, and the next probe then waits `delay_loop`. At start the retries are
//! already spent: one failure is enough until the first success.
//!
//! HTTP_GET and SSL_GET follow keepalived's own cycle over their urls (`check_http.c`'s
//! epilog, [`CheckerState::with_urls`]): one url per probe, the next one `delay_loop` later;
//! the checker comes up when every url has passed in a row. A url that fails past its retries
//! takes the checker down and alone is probed again, `max(delay_before_retry, delay_loop)`
//! apart; once it passes, every url is checked again from the first before the checker comes
//! up (so even a single url needs two passes, `delay_loop` apart). With `fast_recovery` those
//! passes follow one another at once, at start and after a recovery, whenever the checker is
//! down with no failed url known; a failed probe there waits `delay_before_retry` (keepalived
//! retries at once, a tight loop against a server that refuses at once). A checker already down counts no retries, and an alpha
//! checker's first failure is no change (keepalived logs nothing and runs no notify_down).

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
    /// HTTP_GET / SSL_GET: where the cycle over the urls stands.
    urls: Option<Urls>,
}

/// keepalived's cycle over an HTTP_GET's urls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Urls {
    /// How many urls there are (at least 1).
    count: usize,
    /// The url the next probe fetches.
    current: usize,
    /// The url that took the checker down, while it has not passed again.
    failed: Option<usize>,
    /// `fast_recovery`.
    fast_recovery: bool,
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
            urls: None,
        }
    }

    /// The checker probes `count` urls one at a time, as keepalived's HTTP_GET and SSL_GET
    /// do (see the module's documentation), with `fast_recovery` or not.
    pub fn with_urls(mut self, count: usize, fast_recovery: bool) -> Self {
        self.urls = Some(Urls { count: count.max(1), current: 0, failed: None, fast_recovery });
        self
    }

    /// The url the next probe fetches (0 for a checker without urls).
    pub fn url(&self) -> usize {
        self.urls.map_or(0, |u| u.current)
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
        if let Some(urls) = self.urls {
            return self.on_url_probe(urls, probe != Probe::Down, now);
        }
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

impl CheckerState {
    /// [`CheckerState::on_probe`] for a checker with urls: keepalived 2.2.7's `check_http.c`
    /// epilog, step for step.
    fn on_url_probe(&mut self, mut urls: Urls, passed: bool, now: Instant) -> Option<Change> {
        let t = self.timing;
        let mut change = None;
        let delay = if passed {
            self.retries = 0;
            urls.current += 1;
            if urls.current == urls.count && urls.failed.is_none() {
                // Every url passed in a row.
                if !self.up {
                    change = Some(Change::Up { weight: None });
                }
                self.up = true;
                self.has_run = true;
                urls.current = 0;
            } else if urls.failed.is_some() {
                // The failed url passes: check them all again, from the first.
                urls.failed = None;
                urls.current = 0;
            }
            if !self.has_run {
                // Until the first complete pass, one failure takes the checker down.
                self.retries = t.retry;
            }
            t.delay_loop
        } else {
            // A checker already down counts no retries (keepalived's REGISTER_CHECKER_FAILED).
            if self.up || !self.has_run {
                self.has_run = true;
                self.retries = self.retries.saturating_add(1);
                if self.retries > t.retry {
                    if self.up {
                        change = Some(Change::Down);
                    }
                    self.up = false;
                    urls.failed = Some(urls.current);
                }
            }
            if urls.failed.is_some() { t.delay_before_retry.max(t.delay_loop) } else { t.delay_before_retry }
        };
        // Only a pass moves on at once: a url that keeps failing while the checker is down (and
        // no url is marked failed) waits delay_before_retry, not a spin of refused connects.
        let fast = urls.fast_recovery && (!self.has_run || (passed && !self.up && urls.failed.is_none()));
        self.next = if fast { now } else { now + delay };
        self.urls = Some(urls);
        change
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

    /// Runs `probes` (true: the url passed) through a checker with `urls` urls, one second
    /// apart at most: (url fetched, change, delay before the next probe in seconds) per probe.
    fn url_run(urls: usize, fast: bool, t: Timing, probes: &[bool]) -> Vec<(usize, Option<Change>, u64)> {
        let mut now = Instant::now();
        let mut s = CheckerState::new(t, now, 0.0).with_urls(urls, fast);
        probes
            .iter()
            .map(|&ok| {
                now = s.next_probe();
                let url = s.url();
                let change = s.on_probe(if ok { Probe::Up } else { Probe::Down }, now);
                (url, change, (s.next_probe() - now).as_secs())
            })
            .collect()
    }

    const UP: Option<Change> = Some(Change::Up { weight: None });

    #[test]
    fn urls_are_checked_one_per_delay_loop_and_a_failed_one_alone_until_it_passes() {
        // delay_loop 6, delay_before_retry 1, retry 1 (HTTP_GET's default retry).
        let t = timing(1, false);
        assert_eq!(
            url_run(3, false, t, &[true, true, true, true, false, false, false, true, true, true, true]),
            [
                (0, None, 6),
                (1, None, 6),
                (2, None, 6), // up from the start: no change
                (0, None, 6),
                (1, None, 1),               // a failure: retried after delay_before_retry
                (1, Some(Change::Down), 6), // retries spent: down, max(1, 6) later
                (1, None, 6),               // down: the failed url alone
                (1, None, 6),               // it passes: all of them again, from the first
                (0, None, 6),
                (1, None, 6),
                (2, UP, 6),
            ]
        );
        // delay_before_retry longer than delay_loop: a down checker waits the longer.
        let slow = Timing { delay_before_retry: Duration::from_secs(9), ..timing(0, false) };
        assert_eq!(
            url_run(1, false, slow, &[true, false, false]),
            [(0, None, 6), (0, Some(Change::Down), 9), (0, None, 9)]
        );
    }

    /// keepalived 2.2.7, observed (HTTP_GET, one url, delay_loop 2, retry 0): after a failure
    /// the url's first pass clears it, the second, delay_loop later, brings the checker up; with
    /// fast_recovery the second pass follows at once.
    #[test]
    fn a_single_url_needs_two_passes_after_a_failure_unless_fast_recovery() {
        let t = timing(0, false);
        assert_eq!(
            url_run(1, false, t, &[false, true, true]),
            [(0, Some(Change::Down), 6), (0, None, 6), (0, UP, 6)]
        );
        assert_eq!(
            url_run(1, true, t, &[false, true, true]),
            [(0, Some(Change::Down), 6), (0, None, 0), (0, UP, 6)]
        );
    }

    /// keepalived 2.2.7, observed (alpha, retry 0, nothing listening): a TCP_CHECK reports its
    /// first failure (log line, notify_down), an HTTP_GET does not: it is down already.
    #[test]
    fn an_alpha_url_checker_reports_no_first_failure() {
        assert_eq!(url_run(1, false, timing(0, true), &[false, false]), [(0, None, 6), (0, None, 6)]);
        let now = Instant::now();
        let mut tcp = CheckerState::new(timing(0, true), now, 0.0);
        assert_eq!(tcp.on_probe(Probe::Down, now), Some(Change::Down));
    }

    #[test]
    fn fast_recovery_checks_every_url_at_once_at_start_and_after_a_recovery() {
        // alpha: down at start, every url checked at once until the first complete pass.
        let t = timing(1, true);
        assert_eq!(
            url_run(3, true, t, &[true, true, true, true]),
            [(0, None, 0), (1, None, 0), (2, UP, 6), (0, None, 6)]
        );
        // Without it, one url per delay_loop.
        assert_eq!(url_run(3, false, t, &[true, true, true]), [(0, None, 6), (1, None, 6), (2, UP, 6)]);
        // At start one failure takes it down (retries spent until the first complete pass);
        // while down with a failed url known, no hurry.
        let t = timing(1, false);
        assert_eq!(
            url_run(2, true, t, &[true, false, false, true, true, true]),
            [(0, None, 0), (1, Some(Change::Down), 6), (1, None, 6), (1, None, 0), (0, None, 0), (1, UP, 6)]
        );
        // A failure during the recovery pass (already down, no failed url known): no retry
        // counted, the url retried after delay_before_retry, with fast_recovery too (keepalived
        // 2.2.7 retries it at once there: against a server that refuses at once, a tight
        // loop; lbd does not follow it in that).
        let t = timing(0, false);
        let probes = [true, true, false, true, false, true, true];
        assert_eq!(
            url_run(2, true, t, &probes),
            [
                (0, None, 0),
                (1, None, 6),
                (0, Some(Change::Down), 6),
                (0, None, 0),
                (0, None, 1),
                (0, None, 0),
                (1, UP, 6)
            ]
        );
        assert_eq!(
            url_run(2, false, t, &probes),
            [
                (0, None, 6),
                (1, None, 6),
                (0, Some(Change::Down), 6),
                (0, None, 6),
                (0, None, 1),
                (0, None, 6),
                (1, UP, 6)
            ]
        );
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
