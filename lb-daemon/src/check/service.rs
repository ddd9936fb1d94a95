//! One virtual server's logic: which of its real servers are forwarded to, with what weight,
//! and when its quorum is gained or lost.
//!
//! As keepalived 2.2.7 (`ipwrapper.c`): a real server is alive while none of its checkers
//! fails (a server without checkers is always alive); a dead server is left out, or kept with
//! weight 0 under `inhibit_on_failure`. The quorum is the sum of the alive servers' weights: it
//! is lost when that sum drops below `quorum - hysteresis` (or to 0), gained when it reaches
//! `quorum + hysteresis`. While it is lost and a `sorry_server` is configured, the sorry server
//! takes the traffic and the servers still alive are taken out; with `sorry_server_inhibit` the
//! sorry server then stays in the service with weight 0 (its flows go on, it gets no new ones).
//!
//! `uthreshold` / `lthreshold` (IPVS's overload flag, kept here because the XDP data plane has
//! none): an alive real server with `uthreshold` or more active connections gets weight 0 until
//! they drop below `lthreshold` (without `lthreshold`: below three quarters of `uthreshold`).

use super::state::Change;

/// How the data plane treats one real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RealVerdict {
    /// Forwarded to with this weight (0: no new flows).
    In {
        /// Weight.
        weight: u32,
    },
    /// Left out of the service.
    #[default]
    Out,
}

/// A real server as the service logic needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealSpec {
    /// Configured weight.
    pub weight: u32,
    /// `inhibit_on_failure`.
    pub inhibit: bool,
    /// Whether each of its checkers starts up (`alpha` starts it down).
    pub checkers_up: Vec<bool>,
    /// `uthreshold` / `lthreshold`.
    pub thresholds: Option<Thresholds>,
}

/// A real server's connection thresholds (`uthreshold`, `lthreshold`; 0: unset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Thresholds {
    /// At this many active connections the server is overloaded.
    pub upper: u32,
    /// Below this many it is not any more (0: below three quarters of `upper`).
    pub lower: u32,
}

impl Thresholds {
    /// Whether a server with `active` connections is overloaded, given whether it was (IPVS's
    /// rule, `ip_vs_bind_dest` / `ip_vs_unbind_dest`).
    pub fn overloaded(&self, was: bool, active: u64) -> bool {
        let (upper, lower) = (u64::from(self.upper), u64::from(self.lower));
        if upper != 0 && active >= upper {
            return true;
        }
        was && match (lower, upper) {
            (0, 0) => false,
            (0, _) => active * 4 >= upper * 3,
            _ => active >= lower,
        }
    }
}

/// The virtual server's `sorry_server`, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sorry {
    /// None configured.
    #[default]
    None,
    /// In the service while the quorum is lost, out otherwise.
    Plain,
    /// `sorry_server_inhibit`: in the service with weight 0 while the quorum holds.
    Inhibit,
}

/// Something the runner logs or runs a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The real server (by index) became alive and is forwarded to again.
    RealUp(usize),
    /// The real server (by index) died.
    RealDown(usize),
    /// An alive real server's weight changed (`misc_dynamic`).
    Weight(usize, u32),
    /// The quorum was gained with this live weight.
    QuorumGained(u32),
    /// The quorum was lost with this live weight.
    QuorumLost(u32),
    /// The real server (by index) reached its `uthreshold`: no new connections.
    Overloaded(usize),
    /// The real server (by index) fell below its `lthreshold`: new connections again.
    Unloaded(usize),
}

#[derive(Debug, Clone)]
struct Real {
    spec: RealSpec,
    up: Vec<bool>,
    weight: u32,
    overloaded: bool,
}

impl Real {
    fn alive(&self) -> bool {
        self.up.iter().all(|&u| u)
    }
}

/// One virtual server's state.
#[derive(Debug, Clone)]
pub struct ServiceState {
    reals: Vec<Real>,
    quorum: u32,
    hysteresis: u32,
    sorry: Sorry,
    quorum_up: bool,
}

impl ServiceState {
    /// A service with these real servers, `quorum`, `hysteresis` and whether it has a sorry
    /// server; returns it with the quorum event its start produces (keepalived runs `quorum_down`
    /// at start when, as with `alpha`, the starting weight is short of the quorum).
    pub fn new(reals: Vec<RealSpec>, quorum: u32, hysteresis: u32, sorry: Sorry) -> (Self, Option<Event>) {
        let reals = reals
            .into_iter()
            .map(|spec| Real { up: spec.checkers_up.clone(), weight: spec.weight, overloaded: false, spec })
            .collect();
        let mut state = ServiceState { reals, quorum, hysteresis, sorry, quorum_up: true };
        let event = state.update_quorum();
        (state, event)
    }

    /// Applies a change of checker `checker` of real server `real`; returns what happened.
    pub fn on_change(&mut self, real: usize, checker: usize, change: Change) -> Vec<Event> {
        let mut events = Vec::new();
        let Some(r) = self.reals.get_mut(real) else { return events };
        let was_alive = r.alive();
        let Some(slot) = r.up.get_mut(checker) else { return events };
        let old_weight = r.weight;
        match change {
            Change::Up { weight } => {
                *slot = true;
                if let Some(w) = weight {
                    r.weight = w;
                }
            }
            Change::Down => *slot = false,
        }
        match (was_alive, r.alive()) {
            (false, true) => events.push(Event::RealUp(real)),
            (true, false) => events.push(Event::RealDown(real)),
            (true, true) if r.weight != old_weight => events.push(Event::Weight(real, r.weight)),
            _ => {}
        }
        events.extend(self.update_quorum());
        events
    }

    /// Records that real server `real` has `active` connections; returns the change of its
    /// overload, if any (always `None` without thresholds).
    pub fn on_connections(&mut self, real: usize, active: u64) -> Option<Event> {
        let r = self.reals.get_mut(real)?;
        let thresholds = r.spec.thresholds?;
        let overloaded = thresholds.overloaded(r.overloaded, active);
        if overloaded == r.overloaded {
            return None;
        }
        r.overloaded = overloaded;
        Some(if overloaded { Event::Overloaded(real) } else { Event::Unloaded(real) })
    }

    /// Whether real server `real` is overloaded (`uthreshold`).
    pub fn overloaded(&self, real: usize) -> bool {
        self.reals.get(real).is_some_and(|r| r.overloaded)
    }

    /// The sum of the alive servers' weights.
    pub fn live_weight(&self) -> u32 {
        self.reals.iter().filter(|r| r.alive()).map(|r| r.weight).fold(0, u32::saturating_add)
    }

    /// Whether the quorum is held.
    pub fn quorum_up(&self) -> bool {
        self.quorum_up
    }

    /// Whether the sorry server takes the traffic.
    pub fn sorry_active(&self) -> bool {
        self.sorry != Sorry::None && !self.quorum_up
    }

    /// How the data plane treats the sorry server: in while it takes the traffic, in with
    /// weight 0 under `sorry_server_inhibit` while the quorum holds, out otherwise.
    pub fn sorry_verdict(&self) -> RealVerdict {
        match (self.sorry, self.quorum_up) {
            (Sorry::None, _) => RealVerdict::Out,
            (_, false) => RealVerdict::In { weight: 1 },
            (Sorry::Inhibit, true) => RealVerdict::In { weight: 0 },
            (Sorry::Plain, true) => RealVerdict::Out,
        }
    }

    /// Whether real server `real` is alive.
    pub fn alive(&self, real: usize) -> bool {
        self.reals.get(real).is_some_and(Real::alive)
    }

    /// What the SNMP agent shows of it ([`super::status`]).
    pub fn status(&self) -> super::status::ServiceStatus {
        super::status::ServiceStatus {
            reals: self
                .reals
                .iter()
                .map(|r| super::status::RealStatus {
                    alive: r.alive(),
                    weight: r.weight,
                    failed_checks: u32::try_from(r.up.iter().filter(|u| !**u).count()).unwrap_or(u32::MAX),
                })
                .collect(),
            quorum_up: self.quorum_up,
        }
    }

    /// How the data plane treats each real server, in order.
    pub fn verdicts(&self) -> Vec<RealVerdict> {
        let sorry = self.sorry_active();
        self.reals
            .iter()
            .map(|r| match (r.alive() && !sorry, r.spec.inhibit) {
                (true, _) if r.overloaded => RealVerdict::In { weight: 0 },
                (true, _) => RealVerdict::In { weight: r.weight },
                (false, true) => RealVerdict::In { weight: 0 },
                (false, false) => RealVerdict::Out,
            })
            .collect()
    }

    fn update_quorum(&mut self) -> Option<Event> {
        let sum = self.live_weight();
        if !self.quorum_up && sum >= self.quorum.saturating_add(self.hysteresis) {
            self.quorum_up = true;
            Some(Event::QuorumGained(sum))
        } else if self.quorum_up && (sum == 0 || sum < self.quorum.saturating_sub(self.hysteresis)) {
            self.quorum_up = false;
            Some(Event::QuorumLost(sum))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real(weight: u32, inhibit: bool, checkers: usize) -> RealSpec {
        RealSpec { weight, inhibit, checkers_up: vec![true; checkers], thresholds: None }
    }

    #[test]
    fn a_real_is_alive_while_all_its_checkers_are_up() {
        let (mut s, ev) = ServiceState::new(vec![real(1, false, 2), real(1, false, 0)], 1, 0, Sorry::None);
        assert_eq!(ev, None);
        assert_eq!(s.verdicts(), vec![RealVerdict::In { weight: 1 }; 2]);
        assert_eq!(s.on_change(0, 1, Change::Down), vec![Event::RealDown(0)]);
        assert_eq!(s.verdicts()[0], RealVerdict::Out);
        assert_eq!(s.on_change(0, 0, Change::Down), vec![], "already dead");
        assert_eq!(s.on_change(0, 1, Change::Up { weight: None }), vec![], "one checker still down");
        assert_eq!(s.on_change(0, 0, Change::Up { weight: None }), vec![Event::RealUp(0)]);
        assert_eq!(s.verdicts()[0], RealVerdict::In { weight: 1 });
        assert!(s.alive(1), "a real without checkers stays alive");
    }

    #[test]
    fn the_status_counts_failing_checkers_and_keeps_the_weight() {
        use crate::check::status::RealStatus;
        let (mut s, _) = ServiceState::new(vec![real(3, true, 2), real(1, false, 1)], 2, 0, Sorry::None);
        s.on_change(0, 0, Change::Down);
        s.on_change(0, 1, Change::Down);
        s.on_change(1, 0, Change::Up { weight: Some(5) });
        let status = s.status();
        assert_eq!(
            status.reals,
            [
                RealStatus { alive: false, weight: 3, failed_checks: 2 },
                RealStatus { alive: true, weight: 5, failed_checks: 0 }
            ]
        );
        assert!(status.quorum_up, "5 >= 2");
        assert_eq!(status.reals_up(), 1);
    }

    #[test]
    fn inhibit_on_failure_keeps_a_dead_real_with_weight_zero() {
        let (mut s, _) = ServiceState::new(vec![real(3, true, 1), real(1, false, 1)], 1, 0, Sorry::None);
        s.on_change(0, 0, Change::Down);
        assert_eq!(s.verdicts(), vec![RealVerdict::In { weight: 0 }, RealVerdict::In { weight: 1 }]);
    }

    #[test]
    fn quorum_with_hysteresis() {
        // Weights 2+2+2, quorum 4, hysteresis 1: lost below 3, gained at 5.
        let (mut s, ev) = ServiceState::new(vec![real(2, false, 1); 3], 4, 1, Sorry::None);
        assert_eq!(ev, None);
        assert_eq!(s.on_change(0, 0, Change::Down), vec![Event::RealDown(0)], "4 >= 3");
        assert_eq!(s.on_change(1, 0, Change::Down), vec![Event::RealDown(1), Event::QuorumLost(2)]);
        assert!(!s.quorum_up());
        assert_eq!(s.on_change(1, 0, Change::Up { weight: None }), vec![Event::RealUp(1)], "4 < 5");
        assert_eq!(
            s.on_change(0, 0, Change::Up { weight: None }),
            vec![Event::RealUp(0), Event::QuorumGained(6)]
        );
    }

    #[test]
    fn losing_all_weight_loses_the_quorum_even_at_quorum_zero() {
        let (mut s, _) = ServiceState::new(vec![real(1, false, 1)], 0, 0, Sorry::None);
        assert_eq!(s.on_change(0, 0, Change::Down), vec![Event::RealDown(0), Event::QuorumLost(0)]);
    }

    #[test]
    fn alpha_start_short_of_quorum_reports_the_loss() {
        let spec = RealSpec { weight: 1, inhibit: false, checkers_up: vec![false], thresholds: None };
        let (s, ev) = ServiceState::new(vec![spec], 1, 0, Sorry::Plain);
        assert_eq!(ev, Some(Event::QuorumLost(0)));
        assert!(s.sorry_active());
    }

    #[test]
    fn sorry_server_takes_over_and_alive_reals_are_taken_out() {
        let (mut s, _) = ServiceState::new(vec![real(1, false, 1), real(1, true, 1)], 2, 0, Sorry::Plain);
        assert_eq!(s.on_change(0, 0, Change::Down), vec![Event::RealDown(0), Event::QuorumLost(1)]);
        assert!(s.sorry_active());
        // The alive inhibited real stays at weight 0; nothing else is forwarded to.
        assert_eq!(s.verdicts(), vec![RealVerdict::Out, RealVerdict::In { weight: 0 }]);
        s.on_change(0, 0, Change::Up { weight: None });
        assert!(!s.sorry_active());
        assert_eq!(s.verdicts(), vec![RealVerdict::In { weight: 1 }; 2]);
    }

    #[test]
    fn sorry_server_inhibit_keeps_the_sorry_server_at_weight_zero() {
        let (mut s, _) = ServiceState::new(vec![real(1, false, 1)], 1, 0, Sorry::Inhibit);
        assert_eq!(s.sorry_verdict(), RealVerdict::In { weight: 0 }, "quorum held: idle, not removed");
        s.on_change(0, 0, Change::Down);
        assert_eq!(s.sorry_verdict(), RealVerdict::In { weight: 1 });
        s.on_change(0, 0, Change::Up { weight: None });
        assert_eq!(s.sorry_verdict(), RealVerdict::In { weight: 0 }, "quorum back: kept at weight 0");
        let (mut s, _) = ServiceState::new(vec![real(1, false, 1)], 1, 0, Sorry::Plain);
        assert_eq!(s.sorry_verdict(), RealVerdict::Out);
        s.on_change(0, 0, Change::Down);
        assert_eq!(s.sorry_verdict(), RealVerdict::In { weight: 1 });
        s.on_change(0, 0, Change::Up { weight: None });
        assert_eq!(s.sorry_verdict(), RealVerdict::Out, "without inhibit: removed");
    }

    #[test]
    fn thresholds_follow_ipvs() {
        let t = Thresholds { upper: 10, lower: 4 };
        assert!(!t.overloaded(false, 9));
        assert!(t.overloaded(false, 10));
        assert!(t.overloaded(true, 5), "stays overloaded down to lthreshold");
        assert!(t.overloaded(true, 4));
        assert!(!t.overloaded(true, 3), "below lthreshold");
        let t = Thresholds { upper: 8, lower: 0 };
        assert!(t.overloaded(true, 6), "without lthreshold: three quarters of uthreshold");
        assert!(!t.overloaded(true, 5));
        assert!(!Thresholds::default().overloaded(true, 1_000_000), "no thresholds: never");
    }

    #[test]
    fn an_overloaded_real_gets_weight_zero_until_it_falls_below_lthreshold() {
        let mut spec = real(3, false, 1);
        spec.thresholds = Some(Thresholds { upper: 2, lower: 1 });
        let (mut s, _) = ServiceState::new(vec![spec, real(1, false, 1)], 1, 0, Sorry::None);
        assert_eq!(s.on_connections(0, 1), None);
        assert_eq!(s.on_connections(0, 2), Some(Event::Overloaded(0)));
        assert_eq!(s.verdicts(), vec![RealVerdict::In { weight: 0 }, RealVerdict::In { weight: 1 }]);
        assert_eq!(s.live_weight(), 4, "an overloaded real is alive: the quorum is not touched");
        assert_eq!(s.on_connections(0, 1), None, "not below lthreshold yet");
        assert_eq!(s.on_connections(0, 0), Some(Event::Unloaded(0)));
        assert_eq!(s.verdicts()[0], RealVerdict::In { weight: 3 });
        assert_eq!(s.on_connections(1, 1_000), None, "no thresholds");
        // A dead real is out whatever its connections.
        s.on_connections(0, 5);
        s.on_change(0, 0, Change::Down);
        assert_eq!(s.verdicts()[0], RealVerdict::Out);
    }

    #[test]
    fn dynamic_weight_counts_in_the_quorum() {
        let (mut s, _) = ServiceState::new(vec![real(5, false, 1)], 3, 0, Sorry::None);
        assert_eq!(
            s.on_change(0, 0, Change::Up { weight: Some(2) }),
            vec![Event::Weight(0, 2), Event::QuorumLost(2)]
        );
        assert_eq!(s.verdicts(), vec![RealVerdict::In { weight: 2 }]);
    }
}
