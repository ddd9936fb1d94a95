//! The probe loop: one task probes the real servers of every plain TCP_CHECK and HTTP_GET (no
//! `bindto`, `bind_port`, `bind_if`, `fwmark` or `ha_suspend`: the loop's reused sockets carry
//! no per-checker option; the others run as tasks of their own: [`super::tcp::probe`],
//! [`super::http::HttpProbe::probe`]).
//!
//! A TCP_CHECK is a connect and a reset; an HTTP_GET a connect, a request and the answer read
//! until the server closes. Run as one task and one socket per probe, most of their cost
//! besides the kernel's TCP work is bookkeeping: a socket created and freed, registered with
//! epoll and removed, its options set, a timer, a task woken per step. Here:
//! - sockets are reused: `connect(AF_UNSPEC)` ends a connection with a reset (no TIME_WAIT
//!   behind, as SO_LINGER 0 and close would; an HTTP server has closed its end by then) and
//!   leaves the socket ready for the next connect; each socket is registered once,
//!   edge-triggered, with the loop's own epoll instance, which tokio watches as one file
//!   descriptor;
//! - a second `connect` right after the first tells whether the handshake is already over (it
//!   is on loopback and fast links): `0` up, `ECONNREFUSED` down, `EALREADY` still going, and
//!   only then does the probe wait for epoll;
//! - an HTTP_GET sends its request as soon as it is connected and reads the answer into a
//!   buffer the socket keeps from probe to probe, judged as [`super::http::judge`] judges it;
//! - `connect_timeout` bounds the connect, and then each wait for the answer, as keepalived's
//!   does (a server that keeps sending slowly is not cut off);
//! - the loop wakes at most once a [`TICK`]: a wakeup starts the probes due before the next
//!   one (at most [`PER_TURN`] at a time, then the other tasks run) and reads the events of
//!   the probes under way, which gather meanwhile. An idle process's wakeup costs more than a
//!   probe's own system calls (27 µs of CPU on a quiet 2-CPU VM, against 3 to 8 for a
//!   connect), so one wakeup serves as many probes as it can; the price is a probe that starts
//!   up to a tick early and a result seen up to a tick late.
//!
//! Per TCP_CHECK that completes at once: three system calls (connect, connect, disconnect);
//! per HTTP_GET, three more (send, and two reads: the page, then the close).

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    io,
    net::SocketAddr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    time::{Duration, Instant},
};

use socket2::{Domain, SockAddr, Socket, Type};
use tracing::error;

use super::{
    CheckError, Probe,
    http::{MAX_PAGE, READ_ROOM, UrlCheck, judge, too_large},
    timed::stalled,
};

/// The loop's wakeups are at least this far apart: it starts the probes due within a tick
/// and reads the answers that came in the last one. An answer is seen up to a tick late but
/// dated from the previous look ([`Ended`]), and deadlines wake the loop when they fall, so
/// neither the next probe nor detection waits for the tick.
pub const TICK: Duration = Duration::from_millis(10);
/// Probes started in one turn at most: a loop behind its schedule (a starved process) lets the
/// runtime's other tasks (the other checkers) run between turns.
const PER_TURN: usize = 256;
/// Idle sockets kept for reuse, per address family (more are closed).
const IDLE_SOCKETS: usize = 256;
/// Events read from the epoll instance at a time.
const EVENTS: usize = 256;
/// A page buffer larger than this after a probe is freed (a big page does not stay).
const KEPT_BUFFER: usize = 64 * 1024;

/// A checker the loop probes for: its schedule and what it makes of a probe's result.
pub trait Scheduled {
    /// When its next probe is due.
    fn due(&self) -> Instant;
    /// The url its next probe fetches, for an HTTP_GET (keepalived fetches one per probe,
    /// [`CheckerState::url`](super::state::CheckerState::url)).
    fn url(&self) -> usize {
        0
    }
    /// Records the result of a probe that ran from `started` until `ended`; `false` stops the
    /// loop (nobody listens any more).
    fn record(&mut self, result: Result<Probe, CheckError>, started: Instant, ended: Ended) -> bool;
}

/// When a probe ended, as the loop knows it: it reads answers once a [`TICK`], so an answer it
/// reads now came between its previous look and now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// The earliest it can have ended (the next probe is due a delay_loop after this, so that
    /// reading answers once a tick does not put off the next probe, nor detection).
    pub earliest: Instant,
    /// When the loop saw it end (its duration is measured to this, at most a tick long).
    pub seen: Instant,
}

impl Ended {
    /// A probe seen to end as it ended, now.
    pub fn now() -> Self {
        let now = Instant::now();
        Ended { earliest: now, seen: now }
    }
}

/// One url an HTTP_GET fetches: the request's bytes and how the answer is judged.
#[derive(Debug, Clone)]
pub struct Get {
    /// The request, sent as it is.
    pub request: Vec<u8>,
    /// The url.
    pub url: UrlCheck,
}

/// One checker of the loop: where it connects, its time limit, what it fetches, the checker.
#[derive(Debug)]
pub struct Entry<C> {
    /// The real server's address.
    pub addr: SocketAddr,
    /// `connect_timeout`.
    pub limit: Duration,
    /// An HTTP_GET's urls (a probe fetches the one its checker names); none for a TCP_CHECK.
    pub gets: Vec<Get>,
    /// The checker.
    pub checker: C,
}

/// The loop's epoll instance.
#[derive(Debug)]
struct Epoll(OwnedFd);

impl Epoll {
    fn new() -> io::Result<Self> {
        // SAFETY: epoll_create1 has no preconditions.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a new descriptor that nothing else owns.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Watches `fd` for the end of its connects and for its answers (writable, readable, error
    /// or hangup), edge-triggered.
    fn add(&self, fd: RawFd, token: usize) -> io::Result<()> {
        let events = libc::EPOLLOUT | libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET;
        let mut event = libc::epoll_event { events: events as u32, u64: token as u64 };
        // SAFETY: both descriptors are open; the kernel copies the event.
        if unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The tokens of the sockets that had an event, without waiting (at most [`EVENTS`]).
    fn ready(&self, tokens: &mut Vec<usize>) -> io::Result<()> {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        // SAFETY: the kernel writes at most EVENTS events into the array.
        let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), events.as_mut_ptr(), EVENTS as i32, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        tokens.clear();
        tokens.extend(events.iter().take(n as usize).map(|e| e.u64 as usize));
        Ok(())
    }
}

impl AsRawFd for Epoll {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Ends `socket`'s connection, with a reset if it was established, and makes it ready for a new
/// connect (`connect` to an `AF_UNSPEC` address).
fn disconnect(socket: &Socket) -> io::Result<()> {
    let unspec = libc::sockaddr { sa_family: libc::AF_UNSPEC as libc::sa_family_t, sa_data: [0; 14] };
    let len = std::mem::size_of::<libc::sockaddr>() as libc::socklen_t;
    // SAFETY: connect reads `len` bytes of the address, which we own.
    if unsafe { libc::connect(socket.as_raw_fd(), &unspec, len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Where a connect stands.
enum Connect {
    Up,
    Pending,
    Failed(io::Error),
}

/// Starts a connect, or asks how the one under way is going (connect again).
fn connect(socket: &Socket, addr: &SockAddr) -> Connect {
    match socket.connect(addr) {
        Ok(()) => Connect::Up,
        Err(e) => match e.raw_os_error() {
            Some(libc::EISCONN) => Connect::Up,
            Some(libc::EINPROGRESS | libc::EALREADY) => Connect::Pending,
            _ => Connect::Failed(e),
        },
    }
}

/// Reads what `socket` has into `page`'s spare room: the bytes read, 0 at the end.
fn read_into(socket: &Socket, page: &mut Vec<u8>) -> io::Result<usize> {
    page.reserve(READ_ROOM);
    let n = socket.recv(page.spare_capacity_mut())?;
    // SAFETY: recv initialised the first n bytes of the spare capacity.
    unsafe { page.set_len(page.len() + n) };
    Ok(n)
}

/// What a probe in flight waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Its connect to end.
    Connecting,
    /// Room to send the rest of its request (the bytes sent so far).
    Sending(usize),
    /// The answer, until the server closes.
    Reading,
}

/// A probe waiting for its socket's events.
#[derive(Debug, Clone, Copy)]
struct Flight {
    checker: usize,
    started: Instant,
    /// The url being fetched (an HTTP_GET's).
    url: usize,
    stage: Stage,
    /// When the wait of this stage ends.
    deadline: Instant,
    /// Whether `deadlines` has this stage's deadline (pushed only once the probe waits).
    armed: bool,
    /// Tells this stage's deadline from a former one's on the same socket.
    seq: u64,
}

impl Flight {
    /// Moves on to `stage`, with its own deadline.
    fn enter(&mut self, stage: Stage, deadline: Instant) {
        self.stage = stage;
        self.deadline = deadline;
        self.armed = false;
    }
}

/// A socket and the probe it runs.
#[derive(Debug)]
struct Slot {
    socket: Option<Socket>,
    v6: bool,
    flight: Option<Flight>,
    /// The answer read so far (kept from probe to probe for its room).
    page: Vec<u8>,
}

/// The loop's sockets, by token.
#[derive(Debug)]
struct Sockets {
    epoll: Epoll,
    slots: Vec<Slot>,
    /// Tokens of connected-then-reset sockets ready for reuse, IPv4 and IPv6.
    idle: [Vec<usize>; 2],
    /// Tokens without a socket.
    vacant: Vec<usize>,
}

impl Sockets {
    /// A socket of `addr`'s family, reused if one is idle; its token.
    fn take(&mut self, addr: &SocketAddr) -> io::Result<usize> {
        let v6 = addr.is_ipv6();
        if let Some(token) = self.idle[usize::from(v6)].pop() {
            return Ok(token);
        }
        let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
        let socket = Socket::new(domain, Type::STREAM.nonblocking(), None)?;
        let token = self.vacant.last().copied().unwrap_or(self.slots.len());
        self.epoll.add(socket.as_raw_fd(), token)?;
        match self.slots.get_mut(token) {
            Some(slot) => {
                self.vacant.pop();
                // The page buffer stays with the token.
                (slot.socket, slot.v6, slot.flight) = (Some(socket), v6, None);
            }
            None => self.slots.push(Slot { socket: Some(socket), v6, flight: None, page: Vec::new() }),
        }
        Ok(token)
    }

    /// Ends the probe of socket `token`: reset and kept for reuse when `reuse`, else closed.
    fn give_back(&mut self, token: usize, reuse: bool) {
        let Some(slot) = self.slots.get_mut(token) else { return };
        slot.flight = None;
        slot.page.clear();
        if slot.page.capacity() > KEPT_BUFFER {
            slot.page = Vec::new();
        }
        let idle = &mut self.idle[usize::from(slot.v6)];
        let kept =
            reuse && idle.len() < IDLE_SOCKETS && slot.socket.as_ref().is_some_and(|s| disconnect(s).is_ok());
        if kept {
            idle.push(token);
        } else if slot.socket.take().is_some() {
            // Closing it also takes it out of the epoll instance.
            self.vacant.push(token);
        }
    }
}

/// The loop's state.
#[derive(Debug)]
struct Loop<C> {
    entries: Vec<Entry<C>>,
    /// Each entry's address, ready for connect.
    addrs: Vec<SockAddr>,
    sockets: Sockets,
    /// (due, entry): every entry once, unless its probe is in flight.
    due: BinaryHeap<Reverse<(Instant, usize)>>,
    /// (deadline, token, seq) of the probes in flight; stale ones are skipped.
    deadlines: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    seq: u64,
    tokens: Vec<usize>,
    /// When the loop last read its events: the answers read in a turn came after it.
    looked: Instant,
    /// Whether the turn is starting probes: the next probes of those that end meanwhile wait
    /// in `again` until it is over.
    starting: bool,
    again: Vec<Reverse<(Instant, usize)>>,
}

/// Runs `entries`' probes until the checkers stop listening (or the task is aborted).
pub async fn run<C: Scheduled>(entries: Vec<Entry<C>>) {
    let epoll = match Epoll::new() {
        Ok(epoll) => epoll,
        Err(e) => {
            error!("probe loop: epoll: {e}; {} checkers do not run", entries.len());
            return;
        }
    };
    let mut this = Loop {
        addrs: entries.iter().map(|e| SockAddr::from(e.addr)).collect(),
        due: entries.iter().enumerate().map(|(i, e)| Reverse((e.checker.due(), i))).collect(),
        entries,
        sockets: Sockets { epoll, slots: Vec::new(), idle: [Vec::new(), Vec::new()], vacant: Vec::new() },
        deadlines: BinaryHeap::new(),
        seq: 0,
        tokens: Vec::with_capacity(EVENTS),
        looked: Instant::now(),
        starting: false,
        again: Vec::new(),
    };
    loop {
        let woke = Instant::now();
        if !this.turn(woke) {
            return;
        }
        if this.behind(Instant::now()) {
            tokio::task::yield_now().await;
            continue;
        }
        // Probes under way are looked at again in a tick (their events gather meanwhile), or
        // at their deadline if it comes first (a timeout is seen when it falls); otherwise the
        // loop sleeps until the next probe is due, a tick at least.
        let waiting = this.next_deadline().map(|at| at.min(woke + TICK));
        let due = this.due.peek().map(|Reverse((at, _))| (*at).max(woke + TICK));
        let next = waiting.into_iter().chain(due).min();
        let next = next.unwrap_or_else(|| woke + Duration::from_secs(3600));
        tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
    }
}

/// What the steps of a probe came to.
enum Step {
    /// It waits for its socket.
    Wait,
    /// It ended.
    Done(Result<Probe, CheckError>),
}

impl<C: Scheduled> Loop<C> {
    /// Finishes the probes that ended or timed out and starts those due; `false` when the
    /// checkers stopped listening.
    fn turn(&mut self, now: Instant) -> bool {
        let since = std::mem::replace(&mut self.looked, now);
        loop {
            if let Err(e) = self.sockets.epoll.ready(&mut self.tokens) {
                error!("probe loop: epoll_wait: {e}");
                break;
            }
            let tokens = std::mem::take(&mut self.tokens);
            for &token in &tokens {
                if !self.advance(token, since) {
                    return false;
                }
            }
            let full = tokens.len() == EVENTS;
            self.tokens = tokens;
            if !full {
                break;
            }
        }
        while let Some(&Reverse((deadline, token, seq))) = self.deadlines.peek() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            let Some(flight) = self.sockets.slots.get(token).and_then(|s| s.flight) else { continue };
            if !flight.armed || flight.seq != seq {
                continue;
            }
            let limit = self.entries[flight.checker].limit;
            // A connect that did not end in time, or an answer that stalled (as a checker task
            // reports them); the socket is closed, not reused.
            let error = match flight.stage {
                Stage::Connecting => CheckError::Timeout(limit),
                Stage::Sending(_) | Stage::Reading => CheckError::Io(stalled(limit)),
            };
            let ended = Ended { earliest: deadline, seen: Instant::now() };
            if !self.finish(flight.checker, (token, false), Err(error), flight.started, ended) {
                return false;
            }
        }
        // A probe that ends at once and is due again at once (a refused connect while
        // fast_recovery retries) waits for the next turn: no checker probes twice in one.
        self.starting = true;
        let mut going = true;
        for _ in 0..PER_TURN {
            match self.due.peek() {
                Some(&Reverse((due, i))) if due <= now + TICK => {
                    self.due.pop();
                    if !self.start(i) {
                        going = false;
                        break;
                    }
                }
                _ => break,
            }
        }
        self.starting = false;
        self.due.extend(self.again.drain(..));
        going
    }

    /// The first deadline of a probe still waiting (the stale ones before it are dropped: they
    /// would wake the loop for nothing).
    fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&Reverse((at, token, seq))) = self.deadlines.peek() {
            let flight = self.sockets.slots.get(token).and_then(|s| s.flight);
            if flight.is_some_and(|f| f.armed && f.seq == seq) {
                return Some(at);
            }
            self.deadlines.pop();
        }
        None
    }

    /// Whether probes are due already (a turn started [`PER_TURN`] and left some).
    fn behind(&self, now: Instant) -> bool {
        self.due.peek().is_some_and(|Reverse((due, _))| *due <= now)
    }

    /// Starts entry `i`'s probe and takes it as far as it goes at once.
    fn start(&mut self, i: usize) -> bool {
        let started = Instant::now();
        let url = self.entries[i].checker.url();
        if url >= self.entries[i].gets.len().max(1) {
            return self.record(i, Err(CheckError::Unusable(format!("no url {url}"))), started, Ended::now());
        }
        let token = match self.sockets.take(&self.entries[i].addr) {
            Ok(token) => token,
            Err(e) => return self.record(i, Err(CheckError::Connect(e)), started, Ended::now()),
        };
        let Some(socket) = self.sockets.slots[token].socket.as_ref() else { return true };
        // The first connect starts the handshake; `advance` asks again at once.
        if let Connect::Failed(e) = connect(socket, &self.addrs[i]) {
            return self.finish(i, (token, true), Err(CheckError::Connect(e)), started, Ended::now());
        }
        let deadline = started + self.entries[i].limit;
        self.sockets.slots[token].flight = Some(Flight {
            checker: i,
            started,
            url,
            stage: Stage::Connecting,
            deadline,
            armed: false,
            seq: 0,
        });
        self.advance(token, started)
    }

    /// Takes the probe on socket `token` as far as its socket lets it (after an event, or at
    /// its start); `false` when the checkers stopped listening. What ends now can have ended
    /// as early as `since` (the loop's previous look at its events).
    fn advance(&mut self, token: usize, since: Instant) -> bool {
        let step = loop {
            let Some(slot) = self.sockets.slots.get_mut(token) else { return true };
            // Events of a socket between probes (its reset) or of a probe already timed out.
            let (Some(flight), Some(socket)) = (slot.flight.as_mut(), slot.socket.as_ref()) else {
                return true;
            };
            let entry = &self.entries[flight.checker];
            let addr = &self.addrs[flight.checker];
            match flight.stage {
                Stage::Connecting => match connect(socket, addr) {
                    Connect::Pending => break Step::Wait,
                    Connect::Failed(e) => break Step::Done(Err(CheckError::Connect(e))),
                    Connect::Up if entry.gets.is_empty() => break Step::Done(Ok(Probe::Up)),
                    Connect::Up => flight.enter(Stage::Sending(0), Instant::now() + entry.limit),
                },
                Stage::Sending(sent) => {
                    let request = &entry.gets[flight.url].request;
                    match socket.send_with_flags(&request[sent..], libc::MSG_NOSIGNAL) {
                        Ok(n) if sent + n >= request.len() => {
                            // The answer comes with an event of its own.
                            flight.enter(Stage::Reading, Instant::now() + entry.limit);
                            break Step::Wait;
                        }
                        // Each wait for room to send has its own connect_timeout.
                        Ok(n) => flight.enter(Stage::Sending(sent + n), Instant::now() + entry.limit),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Step::Wait,
                        Err(e) => break Step::Done(Err(CheckError::Io(e))),
                    }
                }
                Stage::Reading => match read_into(socket, &mut slot.page) {
                    Ok(0) => {
                        let url = &entry.gets[flight.url].url;
                        break Step::Done(judge(&slot.page, url).map(|()| Probe::Up));
                    }
                    Ok(_) if slot.page.len() > MAX_PAGE => {
                        break Step::Done(Err(too_large()));
                    }
                    // Each wait for more of the answer has its own connect_timeout.
                    Ok(_) => flight.enter(Stage::Reading, Instant::now() + entry.limit),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Step::Wait,
                    Err(e) => break Step::Done(Err(CheckError::Io(e))),
                },
            }
        };
        let Some(flight) = self.sockets.slots[token].flight.as_mut() else { return true };
        match step {
            Step::Wait => {
                if !flight.armed {
                    self.seq += 1;
                    (flight.armed, flight.seq) = (true, self.seq);
                    self.deadlines.push(Reverse((flight.deadline, token, self.seq)));
                }
                true
            }
            Step::Done(result) => {
                let (i, started) = (flight.checker, flight.started);
                let ended = Ended { earliest: since.max(started), seen: Instant::now() };
                self.finish(i, (token, true), result, started, ended)
            }
        }
    }

    /// Ends entry `i`'s probe on socket `token` (reused or not) with `result`.
    fn finish(
        &mut self,
        i: usize,
        (token, reuse): (usize, bool),
        result: Result<Probe, CheckError>,
        started: Instant,
        ended: Ended,
    ) -> bool {
        self.sockets.give_back(token, reuse);
        self.record(i, result, started, ended)
    }

    /// Hands entry `i` its probe's result and schedules its next probe.
    fn record(
        &mut self,
        i: usize,
        result: Result<Probe, CheckError>,
        started: Instant,
        ended: Ended,
    ) -> bool {
        let checker = &mut self.entries[i].checker;
        if !checker.record(result, started, ended) {
            return false;
        }
        let next = Reverse((checker.due(), i));
        if self.starting {
            self.again.push(next)
        } else {
            self.due.push(next)
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Probes every 50 ms and keeps the results.
    #[derive(Debug, Default)]
    struct Probes {
        next: Option<Instant>,
        results: Vec<bool>,
        want: usize,
        /// Its urls, fetched in turn.
        urls: usize,
        done: Option<tokio::sync::mpsc::UnboundedSender<Vec<bool>>>,
        /// Where each probe's start and end go, if anywhere.
        spans: Option<std::sync::mpsc::Sender<(Instant, Ended)>>,
    }

    impl Scheduled for Probes {
        fn due(&self) -> Instant {
            self.next.unwrap_or_else(Instant::now)
        }

        fn url(&self) -> usize {
            self.results.len() % self.urls.max(1)
        }

        fn record(&mut self, result: Result<Probe, CheckError>, started: Instant, ended: Ended) -> bool {
            self.results.push(matches!(result, Ok(Probe::Up)));
            if let Some(spans) = &self.spans {
                let _ = spans.send((started, ended));
            }
            self.next = Some(ended.earliest + Duration::from_millis(50));
            if self.results.len() == self.want
                && let Some(done) = self.done.take()
            {
                let _ = done.send(self.results.clone());
            }
            true
        }
    }

    fn entry(
        addr: SocketAddr,
        want: usize,
    ) -> (Entry<Probes>, tokio::sync::mpsc::UnboundedReceiver<Vec<bool>>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let checker = Probes { want, done: Some(tx), ..Probes::default() };
        (Entry { addr, limit: Duration::from_millis(300), gets: Vec::new(), checker }, rx)
    }

    #[tokio::test]
    async fn probes_reuse_sockets_and_tell_up_from_refused() -> Result<(), Box<dyn std::error::Error>> {
        let up = std::net::TcpListener::bind("127.0.0.1:0")?;
        let refused = std::net::TcpListener::bind("127.0.0.1:0")?;
        let refused_addr = refused.local_addr()?;
        drop(refused);
        let (a, mut a_done) = entry(up.local_addr()?, 4);
        let (b, mut b_done) = entry(refused_addr, 4);
        let task = tokio::spawn(run(vec![a, b]));
        let wait = Duration::from_secs(5);
        assert_eq!(tokio::time::timeout(wait, a_done.recv()).await?, Some(vec![true; 4]));
        assert_eq!(tokio::time::timeout(wait, b_done.recv()).await?, Some(vec![false; 4]));
        task.abort();
        drop(up);
        Ok(())
    }

    #[tokio::test]
    async fn a_connect_without_answer_times_out() -> Result<(), Box<dyn std::error::Error>> {
        // A listener whose backlog is full does not answer SYNs: connects hang.
        let full = socket2::Socket::new(Domain::IPV4, Type::STREAM, None)?;
        full.bind(&SockAddr::from(SocketAddr::from(([127, 0, 0, 1], 0))))?;
        full.listen(0)?;
        let addr = full.local_addr()?.as_socket().ok_or("no address")?;
        // One connection fills a backlog of 0; further SYNs are dropped.
        let _held = std::net::TcpStream::connect(addr)?;
        let (mut e, mut done) = entry(addr, 2);
        let (spans, ends) = std::sync::mpsc::channel();
        e.checker.spans = Some(spans);
        let task = tokio::spawn(run(vec![e]));
        let results = tokio::time::timeout(Duration::from_secs(5), done.recv()).await?;
        task.abort();
        assert_eq!(results, Some(vec![false, false]));
        // A timeout ends a probe at its deadline, however late the loop sees it.
        for (started, ended) in ends.try_iter() {
            assert_eq!(ended.earliest, started + Duration::from_millis(300));
            assert!(ended.seen >= ended.earliest);
        }
        Ok(())
    }

    #[tokio::test]
    async fn an_answer_read_once_a_tick_ends_its_probe_no_earlier_than_it_came()
    -> Result<(), Box<dyn std::error::Error>> {
        use std::io::Write as _;
        // Each connection: the request read, the page written 30 ms later and the connection
        // closed, between the two instants sent.
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let (answered, answers) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(3) {
                let Ok(mut stream) = stream else { return };
                if read_request(&mut stream).is_none() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(30));
                let before = Instant::now();
                let _ = stream.write_all(PAGE);
                drop(stream);
                let _ = answered.send((before, Instant::now()));
            }
        });
        let (mut e, mut done) = entry(addr, 3);
        e.gets = vec![get("/", Some(b"ok\n"))];
        let (spans, ends) = std::sync::mpsc::channel();
        e.checker.spans = Some(spans);
        let task = tokio::spawn(run(vec![e]));
        let results = tokio::time::timeout(Duration::from_secs(5), done.recv()).await?;
        task.abort();
        assert_eq!(results, Some(vec![true; 3]));
        let answers: Vec<_> = answers.try_iter().collect();
        let ends: Vec<_> = ends.try_iter().collect();
        assert_eq!((answers.len(), ends.len()), (3, 3));
        // The loop saw each answer after it was sent, and dates the probe's end no later than
        // the answer came: the next probe is not put off by the loop's tick.
        for ((before, after), (started, ended)) in answers.into_iter().zip(ends) {
            assert!(started < before && ended.seen >= before, "seen before it came: {ended:?}");
            assert!(ended.earliest <= after, "dated after it came: {ended:?}, answered by {after:?}");
            assert!(ended.earliest <= ended.seen);
        }
        Ok(())
    }

    /// A request's head, read to its blank line; `None` if the connection ends first.
    fn read_request(stream: &mut std::net::TcpStream) -> Option<Vec<u8>> {
        use std::io::Read as _;
        let mut request = Vec::new();
        let mut buf = [0; 1024];
        while !request.ends_with(b"\r\n\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(k) => request.extend_from_slice(&buf[..k]),
            }
        }
        Some(request)
    }

    /// How a test server answers its n-th connection: parts of the response, each with the
    /// pause after it.
    type Answer = fn(usize) -> Vec<(&'static [u8], Duration)>;

    /// An HTTP server on loopback: each connection reads the request, then `answer` writes
    /// the response in parts (bytes, pause after them) and closes. Returns the address and the
    /// requests it got.
    fn http_server(answer: Answer) -> io::Result<(SocketAddr, std::sync::mpsc::Receiver<String>)> {
        use std::io::Write as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { return };
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let Some(request) = read_request(&mut stream) else { return };
                    let _ = tx.send(String::from_utf8_lossy(&request).into_owned());
                    for (bytes, pause) in answer(n) {
                        if stream.write_all(bytes).is_err() {
                            return;
                        }
                        std::thread::sleep(pause);
                    }
                });
            }
        });
        Ok((addr, rx))
    }

    fn get(path: &str, body: Option<&[u8]>) -> Get {
        let url = UrlCheck {
            path: path.into(),
            host: "h".into(),
            digest: body.map(|b| crate::genhash::hex(&crate::genhash::body_digest(b))),
            status: vec![crate::config::model::StatusRange { from: 200, to: 299 }],
            regex: None,
        };
        Get { request: format!("GET {path} HTTP/1.0\r\nHost: h\r\n\r\n").into_bytes(), url }
    }

    const PAGE: &[u8] = b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n";

    #[tokio::test]
    async fn an_http_get_fetches_the_url_its_checker_names_and_judges_the_page()
    -> Result<(), Box<dyn std::error::Error>> {
        let (addr, requests) = http_server(|_| vec![(PAGE, Duration::ZERO)])?;
        // A probe fetches the url its checker names (here each in turn): both urls pass; then
        // the second one's digest is wrong.
        let (mut good, mut good_done) = entry(addr, 3);
        (good.gets, good.checker.urls) = (vec![get("/a", Some(b"ok\n")), get("/b", None)], 2);
        let (mut bad, mut bad_done) = entry(addr, 3);
        (bad.gets, bad.checker.urls) = (vec![get("/a", Some(b"ok\n")), get("/c", Some(b"other"))], 2);
        let task = tokio::spawn(run(vec![good, bad]));
        let wait = Duration::from_secs(5);
        assert_eq!(tokio::time::timeout(wait, good_done.recv()).await?, Some(vec![true; 3]));
        assert_eq!(tokio::time::timeout(wait, bad_done.recv()).await?, Some(vec![true, false, true]));
        task.abort();
        let got: Vec<String> = requests.try_iter().collect();
        for path in ["/a", "/b", "/c"] {
            let line = format!("GET {path} HTTP/1.0\r\n");
            assert!(got.iter().any(|r| r.starts_with(&line)), "{path} requested: {got:?}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn connect_timeout_bounds_each_wait_for_the_answer_not_the_whole_answer()
    -> Result<(), Box<dyn std::error::Error>> {
        // Connection 0 sends its page in three parts 200 ms apart (600 ms in all, each wait
        // under the 300 ms limit); connection 1 stalls 500 ms mid-answer.
        let (addr, _requests) = http_server(|n| {
            let pause = Duration::from_millis(if n == 0 { 200 } else { 500 });
            vec![(&PAGE[..10], pause), (&PAGE[10..20], pause), (&PAGE[20..], Duration::ZERO)]
        })?;
        let (mut e, mut done) = entry(addr, 2);
        e.gets = vec![get("/", Some(b"ok\n"))];
        let task = tokio::spawn(run(vec![e]));
        let results = tokio::time::timeout(Duration::from_secs(5), done.recv()).await?;
        task.abort();
        assert_eq!(results, Some(vec![true, false]));
        Ok(())
    }
}
