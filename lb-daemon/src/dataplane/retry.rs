//! A failed apply is tried again: the desired state it could not write is kept and applied on a
//! timer (1 s, doubling to 30 s) until an apply succeeds or a newer state replaces it. Without
//! this, a transient map error (a full map, a failed netlink call) would leave the data plane
//! on the old state until the next health change, which may never come.

use std::time::{Duration, Instant};

use super::{ApplyReport, Dataplane, DataplaneError, DesiredState};

/// The first retry's delay.
pub const FIRST_DELAY: Duration = Duration::from_secs(1);
/// The longest delay between retries.
pub const MAX_DELAY: Duration = Duration::from_secs(30);

/// The state of an apply that has to be retried.
#[derive(Debug, Default)]
pub struct ApplyRetry {
    /// The state to apply, and when, if an apply failed.
    pending: Option<(DesiredState, Instant)>,
    /// The delay after the next failure.
    delay: Duration,
}

impl ApplyRetry {
    /// Applies `desired` at `now`; on failure it is kept for [`ApplyRetry::retry`].
    pub fn apply(
        &mut self,
        dataplane: &mut impl Dataplane,
        desired: DesiredState,
        now: Instant,
    ) -> Result<ApplyReport, DataplaneError> {
        let result = dataplane.apply(&desired);
        match &result {
            Ok(_) => self.settled(),
            Err(_) => self.failed(desired, now),
        }
        result
    }

    /// An apply made elsewhere (a reload's) succeeded: nothing older is retried.
    pub fn settled(&mut self) {
        self.pending = None;
        self.delay = FIRST_DELAY;
    }

    /// An apply of `desired` made elsewhere failed at `now`: it is retried.
    pub fn failed(&mut self, desired: DesiredState, now: Instant) {
        let delay = self.delay.max(FIRST_DELAY);
        self.pending = Some((desired, now + delay));
        self.delay = (delay * 2).min(MAX_DELAY);
    }

    /// When the pending state is due, if there is one.
    pub fn due(&self) -> Option<Instant> {
        self.pending.as_ref().map(|(_, at)| *at)
    }

    /// Applies the pending state again if it is due at `now`.
    pub fn retry(
        &mut self,
        dataplane: &mut impl Dataplane,
        now: Instant,
    ) -> Option<Result<ApplyReport, DataplaneError>> {
        match self.pending.take() {
            Some((desired, at)) if at <= now => Some(self.apply(dataplane, desired, now)),
            other => {
                self.pending = other;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::dataplane::{
        RealTarget, ServiceAddr, VirtualService,
        fake::{self, FakeTables},
        tables::StaticRoutes,
    };

    fn desired(reals: &[&str]) -> DesiredState {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap_or_else(|_| unreachable!());
        let mut service = VirtualService::new(ServiceAddr {
            vip: ip("10.0.0.1"),
            port: 80,
            protocol: crate::dataplane::Protocol::Tcp,
        });
        service.reals = reals.iter().map(|r| RealTarget::new(ip(r), 8080, 1)).collect();
        DesiredState { services: vec![service], ..DesiredState::default() }
    }

    #[test]
    fn a_failed_apply_is_retried_on_a_timer_until_it_succeeds() {
        let tables = FakeTables { fail_at: Some(0), ..FakeTables::default() };
        let mut dataplane = fake::dataplane(tables, StaticRoutes::default());
        let mut retry = ApplyRetry::default();
        let start = Instant::now();
        assert!(retry.apply(&mut dataplane, desired(&["10.1.0.1"]), start).is_err());
        assert!(dataplane.io().services.is_empty(), "the failed write left nothing");
        assert_eq!(retry.due(), Some(start + FIRST_DELAY));
        // Not yet due: nothing is tried.
        assert!(retry.retry(&mut dataplane, start + FIRST_DELAY / 2).is_none());
        let writes = dataplane.io().writes.len();
        assert_eq!(writes, 0);
        // Due: applied, and nothing is left to retry.
        assert!(matches!(retry.retry(&mut dataplane, start + FIRST_DELAY), Some(Ok(_))));
        assert_eq!(dataplane.io().services.len(), 1);
        assert_eq!(dataplane.io().reals.len(), 1);
        assert_eq!(retry.due(), None);
    }

    #[test]
    fn failures_back_off_and_a_newer_state_replaces_the_pending_one() {
        let mut dataplane = fake::dataplane(FakeTables::default(), StaticRoutes::default());
        let mut retry = ApplyRetry::default();
        let mut now = Instant::now();
        let mut delays = Vec::new();
        for _ in 0..7 {
            dataplane.io_mut().fail_at = Some(dataplane.io().writes.len());
            let result = match retry.due() {
                None => retry.apply(&mut dataplane, desired(&["10.1.0.1"]), now),
                Some(_) => retry.retry(&mut dataplane, now).unwrap_or_else(|| unreachable!()),
            };
            assert!(result.is_err());
            let due = retry.due().unwrap_or_else(|| unreachable!());
            delays.push((due - now).as_secs());
            now = due;
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        // A newer state while one is pending: the newer one is applied, and the delay resets.
        assert!(retry.apply(&mut dataplane, desired(&["10.1.0.1", "10.1.0.2"]), now).is_ok());
        assert_eq!(dataplane.io().reals.len(), 2);
        assert_eq!(retry.due(), None);
        dataplane.io_mut().fail_at = Some(dataplane.io().writes.len());
        assert!(retry.apply(&mut dataplane, desired(&["10.1.0.3"]), now).is_err());
        assert_eq!(retry.due(), Some(now + FIRST_DELAY));
    }
}
