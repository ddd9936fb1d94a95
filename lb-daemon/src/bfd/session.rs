//! One BFD session in asynchronous mode (RFC 5880 §6), sans IO: it is handed received packets
//! and the time, says which packet to send when, and reports its state changes. It never reads
//! a clock.
//!
//! - States Down → Init → Up by the three-way handshake of §6.2, Up → Down when the remote says
//!   Down (diag 3, Neighbor Signaled Session Down) or sends nothing for the detection time
//!   (diag 1); AdminDown from the remote takes the session Down.
//! - Detection time (§6.8.4): the remote's Detect Mult × max(our Required Min RX, the remote's
//!   Desired Min TX).
//! - While not Up the session sends every `idle_tx` (keepalived's name for the ≥ 1 s that
//!   §6.8.3 asks for outside Up), once Up every `min_tx`; the change is announced with a Poll
//!   Sequence (§6.5). A received Poll is answered at once with Final.
//! - Intervals are max(our Desired Min TX, the remote's Required Min RX) with 0–25 % jitter
//!   taken off (10–25 % with Detect Mult 1, §6.8.7).
//! - `passive` (§6.1): nothing is sent until the remote is heard.

use std::time::{Duration, Instant};

use super::packet::{ControlPacket, Diag, State};

/// A session's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Required Min RX Interval.
    pub min_rx: Duration,
    /// Desired Min TX Interval while Up.
    pub min_tx: Duration,
    /// Desired Min TX Interval while not Up.
    pub idle_tx: Duration,
    /// Detect Mult.
    pub multiplier: u8,
    /// Passive role.
    pub passive: bool,
}

/// A state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The state before.
    pub from: State,
    /// The state now.
    pub to: State,
    /// Why (the local diagnostic).
    pub diag: Diag,
}

/// A session's variables at one moment (RFC 5880 §6.8.1 and what follows from them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionInfo {
    /// bfd.SessionState.
    pub state: State,
    /// bfd.RemoteSessionState.
    pub remote_state: State,
    /// bfd.LocalDiag.
    pub diag: Diag,
    /// The remote's last diagnostic.
    pub remote_diag: Diag,
    /// bfd.LocalDiscr.
    pub local_discr: u32,
    /// bfd.RemoteDiscr (0 while the remote is not heard).
    pub remote_discr: u32,
    /// The remote's Desired Min TX Interval.
    pub remote_min_tx: Duration,
    /// bfd.RemoteMinRxInterval.
    pub remote_min_rx: Duration,
    /// The remote's Detect Mult (0 while not heard).
    pub remote_mult: u8,
    /// A Poll Sequence is under way.
    pub poll: bool,
    /// A Final is owed.
    pub fin: bool,
    /// The interval between our packets (before jitter).
    pub tx_interval: Duration,
    /// The interval between the remote's packets.
    pub remote_tx_interval: Duration,
    /// Our detection time of the remote.
    pub detection_time: Duration,
    /// The remote's detection time of us.
    pub remote_detection_time: Duration,
}

/// Why a received packet was dropped by the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// Your Discriminator is not ours.
    #[error("your discriminator {0:#x} is not this session's")]
    Discriminator(u32),
    /// A session in AdminDown takes no packet.
    #[error("session administratively down")]
    AdminDown,
}

/// The session.
#[derive(Debug, Clone)]
pub struct Session {
    config: SessionConfig,
    state: State,
    diag: Diag,
    local_discr: u32,
    remote_discr: u32,
    remote_state: State,
    remote_diag: Diag,
    remote_min_rx: Duration,
    remote_desired_tx: Duration,
    remote_mult: u8,
    /// Desired Min TX as advertised now.
    desired_tx: Duration,
    /// A Poll Sequence is under way.
    polling: bool,
    /// A Final is owed to the remote.
    final_due: bool,
    next_tx: Option<Instant>,
    detect_at: Option<Instant>,
    rng: u64,
}

impl Session {
    /// A session in Down, with discriminator `local_discr` (non-zero) and `seed` for the jitter.
    pub fn new(config: SessionConfig, local_discr: u32, seed: u64, now: Instant) -> Self {
        Session {
            config,
            state: State::Down,
            diag: Diag::None,
            local_discr: local_discr.max(1),
            remote_discr: 0,
            remote_state: State::Down,
            remote_diag: Diag::None,
            remote_min_rx: Duration::from_micros(1),
            remote_desired_tx: Duration::ZERO,
            remote_mult: 0,
            desired_tx: config.idle_tx,
            polling: false,
            final_due: false,
            next_tx: (!config.passive).then_some(now),
            detect_at: None,
            rng: seed | 1,
        }
    }

    /// The local state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The local diagnostic.
    pub fn diag(&self) -> Diag {
        self.diag
    }

    /// Our discriminator.
    pub fn local_discr(&self) -> u32 {
        self.local_discr
    }

    /// The remote's discriminator (0 until heard).
    pub fn remote_discr(&self) -> u32 {
        self.remote_discr
    }

    /// The detection time (§6.8.4); zero until the remote is heard.
    pub fn detection_time(&self) -> Duration {
        self.config.min_rx.max(self.remote_desired_tx) * u32::from(self.remote_mult)
    }

    /// The session's variables as they are now (what keepalived's data dump shows).
    pub fn info(&self) -> SessionInfo {
        let tx_interval = self.desired_tx.max(self.remote_min_rx);
        SessionInfo {
            state: self.state,
            remote_state: self.remote_state,
            diag: self.diag,
            remote_diag: self.remote_diag,
            local_discr: self.local_discr,
            remote_discr: self.remote_discr,
            remote_min_tx: self.remote_desired_tx,
            remote_min_rx: self.remote_min_rx,
            remote_mult: self.remote_mult,
            poll: self.polling,
            fin: self.final_due,
            tx_interval,
            remote_tx_interval: self.remote_desired_tx.max(self.config.min_rx),
            detection_time: self.detection_time(),
            remote_detection_time: tx_interval * u32::from(self.config.multiplier),
        }
    }

    /// When [`Session::poll`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.next_tx, self.detect_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn set_state(&mut self, to: State, diag: Diag) -> Option<Change> {
        if to == self.state {
            return None;
        }
        let change = Change { from: self.state, to, diag };
        self.state = to;
        self.diag = diag;
        let wanted = if to == State::Up { self.config.min_tx } else { self.config.idle_tx };
        if wanted != self.desired_tx {
            self.desired_tx = wanted;
            // Up: the faster rate is announced with a Poll Sequence (§6.8.3); out of Up the
            // session falls back to idle_tx at once.
            self.polling = to == State::Up;
        }
        Some(change)
    }

    /// A packet from the remote (RFC 5880 §6.8.6, after [`ControlPacket::decode`]).
    pub fn receive(&mut self, p: &ControlPacket, now: Instant) -> Result<Option<Change>, Rejected> {
        if p.your_discr != 0 && p.your_discr != self.local_discr {
            return Err(Rejected::Discriminator(p.your_discr));
        }
        if self.state == State::AdminDown {
            return Err(Rejected::AdminDown);
        }
        self.remote_discr = p.my_discr;
        self.remote_state = p.state;
        self.remote_diag = p.diag;
        self.remote_min_rx = p.required_min_rx;
        self.remote_desired_tx = p.desired_min_tx;
        self.remote_mult = p.detect_mult;
        if p.fin && self.polling {
            self.polling = false;
        }
        if p.poll {
            self.final_due = true;
            self.next_tx = Some(now);
        }
        if self.next_tx.is_none() {
            // Passive: the remote is heard, sending starts.
            self.next_tx = Some(now);
        }
        let change = match (self.state, p.state) {
            (State::Down | State::AdminDown, State::AdminDown) => None,
            (_, State::AdminDown) => self.set_state(State::Down, Diag::NeighborDown),
            (State::Down, State::Down) => self.set_state(State::Init, Diag::None),
            (State::Down, State::Init) => self.set_state(State::Up, Diag::None),
            (State::Init, State::Init | State::Up) => self.set_state(State::Up, Diag::None),
            (State::Up, State::Down) => self.set_state(State::Down, Diag::NeighborDown),
            _ => None,
        };
        if change.is_some() {
            // A change is told at once rather than at the next interval.
            self.next_tx = Some(now);
        }
        self.detect_at = Some(now + self.detection_time());
        Ok(change)
    }

    /// The timers: the detection time running out, and the packet to send if one is due.
    pub fn poll(&mut self, now: Instant) -> (Option<Change>, Option<ControlPacket>) {
        let mut change = None;
        if self.detect_at.is_some_and(|at| at <= now) {
            self.detect_at = None;
            if matches!(self.state, State::Init | State::Up) {
                change = self.set_state(State::Down, Diag::TimeExpired);
            }
            // §6.8.1: a remote unheard for a detection time is forgotten.
            self.remote_discr = 0;
            self.remote_state = State::Down;
            self.remote_min_rx = Duration::from_micros(1);
            self.remote_mult = 0;
            if self.config.passive && self.state == State::Down {
                self.next_tx = None;
            }
        }
        let packet = match self.next_tx {
            Some(at) if at <= now => {
                let packet = self.packet();
                self.final_due = false;
                self.next_tx = Some(now + self.interval());
                Some(packet)
            }
            _ => None,
        };
        (change, packet)
    }

    /// Takes the session to AdminDown (diag Administratively Down), as at an orderly stop: the
    /// packet that tells the remote, whose session then goes Down at once (§6.8.6) rather than
    /// after a detection time. The session then takes no packet and sends nothing more.
    pub fn admin_down(&mut self) -> (Option<Change>, ControlPacket) {
        let change = self.set_state(State::AdminDown, Diag::AdminDown);
        self.polling = false;
        self.final_due = false;
        self.next_tx = None;
        self.detect_at = None;
        (change, self.packet())
    }

    /// The interval until the next periodic packet, with jitter.
    fn interval(&mut self) -> Duration {
        let base = self.desired_tx.max(self.remote_min_rx);
        // xorshift64: enough for jitter.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let (low, span) = if self.config.multiplier == 1 { (75, 15) } else { (75, 25) };
        let percent = low + (self.rng % (span + 1));
        base * percent as u32 / 100
    }

    fn packet(&self) -> ControlPacket {
        ControlPacket {
            diag: self.diag,
            state: self.state,
            poll: self.polling && !self.final_due,
            fin: self.final_due,
            cpi: false,
            demand: false,
            detect_mult: self.config.multiplier,
            my_discr: self.local_discr,
            your_discr: self.remote_discr,
            desired_min_tx: self.desired_tx,
            required_min_rx: self.config.min_rx,
            required_min_echo_rx: Duration::ZERO,
        }
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn config(passive: bool) -> SessionConfig {
        SessionConfig { min_rx: 10 * MS, min_tx: 10 * MS, idle_tx: 1000 * MS, multiplier: 5, passive }
    }

    /// A fake clock and two sessions wired back to back, delivering each packet at once.
    struct Pair {
        now: Instant,
        a: Session,
        b: Session,
        changes: Vec<(char, State)>,
        sent: Vec<(char, ControlPacket)>,
        /// Packets from `a` are lost.
        a_mute: bool,
    }

    impl Pair {
        fn new(a: SessionConfig, b: SessionConfig) -> Self {
            let now = Instant::now();
            Pair {
                now,
                a: Session::new(a, 0x11, 1, now),
                b: Session::new(b, 0x22, 2, now),
                changes: Vec::new(),
                sent: Vec::new(),
                a_mute: false,
            }
        }

        /// Runs the clock for `d` in 1 ms steps.
        fn run(&mut self, d: Duration) {
            let end = self.now + d;
            while self.now <= end {
                for who in ['a', 'b'] {
                    let (me, other) =
                        if who == 'a' { (&mut self.a, &mut self.b) } else { (&mut self.b, &mut self.a) };
                    let (change, packet) = me.poll(self.now);
                    if let Some(c) = change {
                        self.changes.push((who, c.to));
                    }
                    if let Some(p) = packet {
                        self.sent.push((who, p));
                        if who == 'b' || !self.a_mute {
                            let p = ControlPacket::decode(&p.encode()).unwrap();
                            if let Some(c) = other.receive(&p, self.now).unwrap() {
                                self.changes.push((if who == 'a' { 'b' } else { 'a' }, c.to));
                            }
                        }
                    }
                }
                self.now += MS;
            }
        }
    }

    #[test]
    fn two_sessions_come_up_by_the_three_way_handshake_and_speed_up_by_poll() {
        let mut pair = Pair::new(config(false), config(false));
        pair.run(5 * MS);
        assert_eq!(pair.a.state(), State::Up);
        assert_eq!(pair.b.state(), State::Up);
        // a's first Down → b Init → a Up → b Up.
        assert_eq!(pair.changes, [('b', State::Init), ('a', State::Up), ('b', State::Up)]);
        // Each side polled its new 10 ms rate and got the Final.
        assert!(pair.sent.iter().any(|(w, p)| *w == 'a' && p.poll && p.desired_min_tx == 10 * MS));
        assert!(pair.sent.iter().any(|(w, p)| *w == 'b' && p.fin));
        pair.run(20 * MS);
        assert!(pair.sent.iter().any(|(w, p)| *w == 'a' && p.fin));
        assert!(!pair.a.polling && !pair.b.polling);
        // Now at 10 ms less jitter: 7.5 to 10 ms apart.
        pair.sent.clear();
        pair.run(1000 * MS);
        let count = pair.sent.iter().filter(|(w, _)| *w == 'a').count();
        assert!((100..=134).contains(&count), "{count} packets in a second");
        assert_eq!(pair.a.detection_time(), 50 * MS);
    }

    #[test]
    fn silence_for_the_detection_time_takes_the_session_down() {
        let mut pair = Pair::new(config(false), config(false));
        pair.run(20 * MS);
        assert_eq!(pair.b.state(), State::Up);
        pair.changes.clear();
        pair.a_mute = true;
        let muted = pair.now;
        pair.run(60 * MS);
        assert_eq!(pair.b.state(), State::Down);
        assert_eq!(pair.b.diag(), Diag::TimeExpired);
        // b went down within 50 ms of a's last packet, and told a (NeighborDown).
        let down_at = pair.changes.iter().position(|c| *c == ('b', State::Down)).unwrap();
        assert!(pair.changes[down_at..].contains(&('a', State::Down)));
        assert_eq!(pair.a.diag(), Diag::NeighborDown);
        assert!(pair.now - muted >= 50 * MS);
        // b is back to idle_tx.
        assert_eq!(pair.b.packet().desired_min_tx, 1000 * MS);
        // a heard again: up again.
        pair.a_mute = false;
        pair.run(2100 * MS);
        assert_eq!((pair.a.state(), pair.b.state()), (State::Up, State::Up));
    }

    #[test]
    fn detection_time_counts_from_the_last_packet_and_follows_the_remote_rate() {
        let now = Instant::now();
        let mut s = Session::new(config(false), 7, 3, now);
        let remote = init_from_9();
        assert_eq!(s.receive(&remote, now).unwrap().unwrap().to, State::Up);
        assert_eq!(s.detection_time(), 300 * MS);
        let info = s.info();
        assert_eq!(
            (info.state, info.remote_state, info.local_discr, info.remote_discr),
            (State::Up, State::Init, 7, 9)
        );
        assert_eq!((info.remote_min_tx, info.remote_min_rx, info.remote_mult), (100 * MS, 10 * MS, 3));
        assert_eq!((info.tx_interval, info.remote_tx_interval), (10 * MS, 100 * MS));
        assert_eq!((info.detection_time, info.remote_detection_time), (300 * MS, 50 * MS));
        assert!(info.poll, "the faster rate is announced by a poll");
        assert_eq!(s.poll(now + 299 * MS).0, None);
        s.receive(&ControlPacket { state: State::Up, ..remote }, now + 299 * MS).unwrap();
        assert_eq!(s.poll(now + 598 * MS).0, None);
        let (change, _) = s.poll(now + 599 * MS);
        assert_eq!(change, Some(Change { from: State::Up, to: State::Down, diag: Diag::TimeExpired }));
        assert_eq!(s.remote_discr(), 0);
        // A packet for another session is refused.
        assert_eq!(
            s.receive(&ControlPacket { your_discr: 8, ..remote }, now),
            Err(Rejected::Discriminator(8))
        );
    }

    /// An Init packet from the remote (discriminator 9) to session 7, at 100 ms × 3.
    fn init_from_9() -> ControlPacket {
        ControlPacket {
            diag: Diag::None,
            state: State::Init,
            poll: false,
            fin: false,
            cpi: false,
            demand: false,
            detect_mult: 3,
            my_discr: 9,
            your_discr: 7,
            desired_min_tx: 100 * MS,
            required_min_rx: 10 * MS,
            required_min_echo_rx: Duration::ZERO,
        }
    }

    #[test]
    fn admin_down_tells_the_remote_and_ends_the_session() {
        let t0 = Instant::now();
        let mut s = Session::new(config(false), 7, 1, t0);
        let remote = ControlPacket { desired_min_tx: 10 * MS, ..init_from_9() };
        assert_eq!(s.receive(&remote, t0).unwrap().map(|c| c.to), Some(State::Up));
        let (change, packet) = s.admin_down();
        assert_eq!(change.map(|c| (c.from, c.to)), Some((State::Up, State::AdminDown)));
        assert_eq!((packet.state, packet.diag, packet.your_discr), (State::AdminDown, Diag::AdminDown, 9));
        assert_eq!(s.next_deadline(), None, "nothing more to send or detect");
        assert!(s.receive(&remote, t0).is_err(), "an AdminDown session takes no packet");
    }

    #[test]
    fn a_poll_is_answered_with_final_at_once_and_admin_down_takes_the_session_down() {
        let now = Instant::now();
        let mut s = Session::new(config(false), 7, 3, now);
        let _ = s.poll(now);
        let remote = ControlPacket {
            diag: Diag::None,
            state: State::Down,
            poll: true,
            fin: false,
            cpi: false,
            demand: false,
            detect_mult: 3,
            my_discr: 9,
            your_discr: 0,
            desired_min_tx: 1000 * MS,
            required_min_rx: 10 * MS,
            required_min_echo_rx: Duration::ZERO,
        };
        let t = now + 100 * MS;
        assert_eq!(s.receive(&remote, t).unwrap().unwrap().to, State::Init);
        let (_, packet) = s.poll(t);
        let packet = packet.unwrap();
        assert!(packet.fin && !packet.poll);
        assert_eq!((packet.state, packet.your_discr), (State::Init, 9));
        let down = ControlPacket { state: State::AdminDown, poll: false, your_discr: 7, ..remote };
        let change = s.receive(&down, t).unwrap().unwrap();
        assert_eq!((change.to, change.diag), (State::Down, Diag::NeighborDown));
    }

    #[test]
    fn a_passive_session_waits_for_the_remote() {
        let mut pair = Pair::new(config(true), config(true));
        pair.run(3000 * MS);
        assert!(pair.sent.is_empty());
        let mut pair = Pair::new(config(true), config(false));
        pair.run(5 * MS);
        assert_eq!((pair.a.state(), pair.b.state()), (State::Up, State::Up));
        assert_eq!(pair.sent[0].0, 'b');
    }

    #[test]
    fn while_down_packets_go_every_idle_tx() {
        let now = Instant::now();
        let mut s = Session::new(config(false), 7, 5, now);
        let mut sent = Vec::new();
        let mut t = now;
        while t < now + 5000 * MS {
            if s.poll(t).1.is_some() {
                sent.push(t - now);
            }
            t += MS;
        }
        assert!((5..=7).contains(&sent.len()), "{sent:?}");
        for pair in sent.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(gap >= 750 * MS && gap <= 1001 * MS, "{gap:?}");
        }
    }
}
