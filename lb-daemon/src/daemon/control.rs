//! The channel between the parent and each child process: a Unix stream socket pair made by
//! the parent, whose child end the child finds as file descriptor 3 ([`CHILD_FD`]).
//!
//! The protocol is line-based: the parent writes `status N`, the child answers one line of
//! JSON, a [`ChildReport`] carrying `N` back, so that a late answer to an earlier request is
//! recognised and skipped. The socket is also how a child learns that its parent is gone: end
//! of file, with no signal to rely on.
//!
//! BFD session states travel on the same sockets as `bfd NAME up` / `bfd NAME down` lines: the
//! BFD child writes them to the parent (which never queries it), and the parent writes them to
//! the VRRP and checker children, which take them among its requests. The BFD child is asked
//! for its report as the others are; on its channel the parent tells reports (JSON objects)
//! from state lines by their first character ([`BfdChild`]).
//!
//! The state of the VRRP instance `lvs_sync_daemon` follows reaches the checker child as
//! `sync master` / `sync backup` lines: the parent reads it from the VRRP child's reports and
//! writes it to the checker child when it changes (and to a new checker child).

use std::{
    os::fd::{FromRawFd as _, OwnedFd},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines},
    net::{
        UnixStream,
        unix::{OwnedReadHalf, OwnedWriteHalf},
    },
};

use crate::{
    bfd::{BfdEvent, SessionStatus},
    dataplane::ServiceCounters,
    vrrp::status::InstanceStatus,
};

/// The descriptor number of the child's end in the child.
pub const CHILD_FD: i32 = 3;

/// The environment variable that tells a process it is a child, and which.
pub const ROLE_VAR: &str = "LBD_CHILD";

/// How long the parent waits for a child's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// What went wrong on the channel.
#[derive(Debug, Error)]
pub enum ControlError {
    /// Reading or writing the socket.
    #[error("control channel: {0}")]
    Io(#[from] std::io::Error),
    /// The child sent something that is not a report.
    #[error("control channel: unreadable answer: {0}")]
    Json(#[from] serde_json::Error),
    /// The child did not answer in time.
    #[error("control channel: no answer within {ANSWER_TIMEOUT:?}")]
    Timeout,
    /// The other end closed the socket.
    #[error("control channel closed")]
    Closed,
    /// Descriptor 3 is not a socket: the process was not started by an lbd parent.
    #[error("{ROLE_VAR} is set but descriptor {CHILD_FD} is not a socket from an lbd parent")]
    NotASocket,
}

/// What a child tells the parent for `/status` and `/metrics`.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildReport {
    /// The request this answers.
    pub seq: u64,
    /// Reloads the child refused because the configuration had errors.
    pub reload_failures: u64,
    /// The VRRP child's instances.
    pub vrrp: Vec<InstanceStatus>,
    /// The checker child's virtual servers, with counters.
    pub virtual_servers: Vec<ServiceCounters>,
    /// The checker child's health checkers.
    pub checks: Vec<super::status::CheckStatus>,
    /// The BFD child's sessions.
    #[serde(default)]
    pub bfd: Vec<SessionStatus>,
}

/// What the parent tells a child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParentMessage {
    /// `status N`: answer with a [`ChildReport`] for request `N`.
    Status(u64),
    /// `bfd NAME up|down`: a bfd_instance's state.
    Bfd(BfdEvent),
    /// `sync master|backup`: the state of the VRRP instance `lvs_sync_daemon` follows (to the
    /// checker child; `true` for MASTER).
    SyncMaster(bool),
}

/// A `sync master|backup` line's state.
fn parse_sync(line: &str) -> Option<bool> {
    match line.strip_prefix("sync ")?.trim() {
        "master" => Some(true),
        "backup" => Some(false),
        _ => None,
    }
}

/// A `bfd NAME up|down` line's event.
fn parse_bfd(line: &str) -> Option<BfdEvent> {
    let mut words = line.strip_prefix("bfd ")?.split_whitespace();
    let name = words.next()?.to_string();
    let up = match words.next()? {
        "up" => true,
        "down" => false,
        _ => return None,
    };
    words.next().is_none().then_some(BfdEvent { name, up })
}

/// A line-oriented end of the socket pair.
#[derive(Debug)]
pub struct Channel {
    lines: Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
}

impl Channel {
    fn new(stream: UnixStream) -> Self {
        let (reader, writer) = stream.into_split();
        Self { lines: BufReader::new(reader).lines(), writer }
    }

    /// A socket pair: the parent's end, and the child's, to be passed as [`CHILD_FD`].
    pub fn pair() -> std::io::Result<(Self, std::os::unix::net::UnixStream)> {
        let (parent, child) = std::os::unix::net::UnixStream::pair()?;
        parent.set_nonblocking(true)?;
        Ok((Self::new(UnixStream::from_std(parent)?), child))
    }

    /// The child's end, from descriptor [`CHILD_FD`]. Call once, in a runtime.
    pub fn inherited() -> Result<Self, ControlError> {
        let mut stat = std::mem::MaybeUninit::<nix::libc::stat>::uninit();
        // SAFETY: fstat(2) on a raw number only writes `stat`; a closed descriptor is EBADF.
        if unsafe { nix::libc::fstat(CHILD_FD, stat.as_mut_ptr()) } != 0 {
            return Err(ControlError::NotASocket);
        }
        // SAFETY: fstat succeeded, so it filled `stat`.
        let stat = unsafe { stat.assume_init() };
        if stat.st_mode & nix::libc::S_IFMT != nix::libc::S_IFSOCK {
            return Err(ControlError::NotASocket);
        }
        // SAFETY: descriptor 3 was checked to be open and a socket; it was put there by the
        // parent for this process alone, and nothing else in the process owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(CHILD_FD) };
        let stream = std::os::unix::net::UnixStream::from(fd);
        stream.set_nonblocking(true)?;
        Ok(Self::new(UnixStream::from_std(stream)?))
    }

    /// The child's side: the parent's next message; `None` when the parent is gone.
    /// Cancel-safe.
    pub async fn next_request(&mut self) -> Option<ParentMessage> {
        loop {
            match self.lines.next_line().await {
                Ok(Some(line)) => {
                    if let Some(seq) = line.strip_prefix("status ").and_then(|n| n.trim().parse().ok()) {
                        return Some(ParentMessage::Status(seq));
                    }
                    if let Some(master) = parse_sync(&line) {
                        return Some(ParentMessage::SyncMaster(master));
                    }
                    match parse_bfd(&line) {
                        Some(event) => return Some(ParentMessage::Bfd(event)),
                        None => tracing::warn!("control channel: unknown request {line:?}"),
                    }
                }
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// A bfd_instance's state, either way: BFD child → parent → VRRP and checker children.
    pub async fn send_bfd(&mut self, event: &BfdEvent) -> Result<(), ControlError> {
        let line = format!("bfd {} {}\n", event.name, if event.up { "up" } else { "down" });
        tokio::time::timeout(ANSWER_TIMEOUT, self.writer.write_all(line.as_bytes()))
            .await
            .map_err(|_| ControlError::Timeout)??;
        Ok(())
    }

    /// The parent's side: tells the checker child the sync instance's state.
    pub async fn send_sync(&mut self, master: bool) -> Result<(), ControlError> {
        let line = if master { "sync master\n" } else { "sync backup\n" };
        tokio::time::timeout(ANSWER_TIMEOUT, self.writer.write_all(line.as_bytes()))
            .await
            .map_err(|_| ControlError::Timeout)??;
        Ok(())
    }

    /// The parent's side of the BFD child's channel: its next state line or report; `None`
    /// when the child is gone. Cancel-safe.
    async fn next_bfd_message(&mut self) -> Option<BfdMessage> {
        loop {
            match self.lines.next_line().await {
                Ok(Some(line)) if line.starts_with('{') => match serde_json::from_str(&line) {
                    Ok(report) => return Some(BfdMessage::Report(report)),
                    Err(e) => tracing::warn!("control channel: unreadable BFD report: {e}"),
                },
                Ok(Some(line)) => match parse_bfd(&line) {
                    Some(event) => return Some(BfdMessage::State(event)),
                    None => tracing::warn!("control channel: unknown BFD report {line:?}"),
                },
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The child's side: answers a request.
    pub async fn answer(&mut self, report: &ChildReport) -> Result<(), ControlError> {
        let mut line = serde_json::to_vec(report)?;
        line.push(b'\n');
        self.writer.write_all(&line).await?;
        Ok(())
    }

    /// The parent's side: asks for report `seq`.
    async fn ask(&mut self, seq: u64) -> Result<(), ControlError> {
        self.writer.write_all(format!("status {seq}\n").as_bytes()).await?;
        Ok(())
    }

    /// The parent's side: asks for a report and waits for the answer to this request.
    pub async fn query(&mut self, seq: u64) -> Result<ChildReport, ControlError> {
        self.ask(seq).await?;
        let answer = async {
            loop {
                let Some(line) = self.lines.next_line().await? else {
                    return Err(ControlError::Closed);
                };
                let report: ChildReport = serde_json::from_str(&line)?;
                if report.seq == seq {
                    return Ok(report);
                }
            }
        };
        tokio::time::timeout(ANSWER_TIMEOUT, answer).await.map_err(|_| ControlError::Timeout)?
    }
}

/// What the BFD child writes to the parent.
#[derive(Debug)]
enum BfdMessage {
    /// A session's state changed.
    State(BfdEvent),
    /// The answer to a request.
    Report(ChildReport),
}

/// A report request to the BFD child: its number and where the answer goes.
type BfdQuery = (u64, tokio::sync::oneshot::Sender<ChildReport>);

/// The parent's end of the BFD child's channel, served by a task of its own: the child's state
/// reports go to an event queue as they come, and [`BfdChild::query`] asks for its report.
#[derive(Debug, Clone)]
pub struct BfdChild {
    queries: tokio::sync::mpsc::UnboundedSender<BfdQuery>,
}

impl BfdChild {
    /// Serves `channel` until the child is gone, passing its state reports to `events`.
    pub fn serve(mut channel: Channel, events: tokio::sync::mpsc::UnboundedSender<BfdEvent>) -> Self {
        let (queries, mut requests) = tokio::sync::mpsc::unbounded_channel::<BfdQuery>();
        tokio::spawn(async move {
            let mut pending: Option<BfdQuery> = None;
            loop {
                tokio::select! {
                    message = channel.next_bfd_message() => match message {
                        None => return,
                        Some(BfdMessage::State(event)) => {
                            if events.send(event).is_err() {
                                return;
                            }
                        }
                        Some(BfdMessage::Report(report)) => match pending.take() {
                            Some((seq, reply)) if seq == report.seq => {
                                let _ = reply.send(report);
                            }
                            // A late answer to a request given up on.
                            other => pending = other,
                        },
                    },
                    Some((seq, reply)) = requests.recv() => {
                        if channel.ask(seq).await.is_ok() {
                            pending = Some((seq, reply));
                        }
                    }
                }
            }
        });
        Self { queries }
    }

    /// Asks the child for report `seq` and waits for it.
    pub async fn query(&self, seq: u64) -> Result<ChildReport, ControlError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.queries.send((seq, reply)).map_err(|_| ControlError::Closed)?;
        match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
            Ok(Ok(report)) => Ok(report),
            Ok(Err(_)) => Err(ControlError::Closed),
            Err(_) => Err(ControlError::Timeout),
        }
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_report_crosses_the_pair_and_late_answers_are_skipped() {
        let (mut parent, child) = Channel::pair().unwrap();
        child.set_nonblocking(true).unwrap();
        let mut child = Channel::new(UnixStream::from_std(child).unwrap());
        let responder = tokio::spawn(async move {
            // An answer to a request the parent gave up on comes first.
            child.answer(&ChildReport { seq: 6, ..Default::default() }).await.unwrap();
            let Some(ParentMessage::Status(seq)) = child.next_request().await else { panic!("no request") };
            let report = ChildReport { seq, reload_failures: 2, ..Default::default() };
            child.answer(&report).await.unwrap();
            // Dropping the child's end: the parent sees the channel closed.
        });
        let report = parent.query(7).await.unwrap();
        assert_eq!((report.seq, report.reload_failures), (7, 2));
        responder.await.unwrap();
        assert!(matches!(parent.query(8).await, Err(ControlError::Closed | ControlError::Io(_))));
    }

    #[tokio::test]
    async fn bfd_states_cross_both_ways() {
        let (mut parent, child) = Channel::pair().unwrap();
        child.set_nonblocking(true).unwrap();
        let mut child = Channel::new(UnixStream::from_std(child).unwrap());
        let event = BfdEvent { name: "to_peer".into(), up: true };
        parent.send_bfd(&event).await.unwrap();
        parent.writer.write_all(b"bfd broken maybe\nstatus 4\n").await.unwrap();
        assert_eq!(child.next_request().await, Some(ParentMessage::Bfd(event.clone())));
        assert_eq!(child.next_request().await, Some(ParentMessage::Status(4)));
        let down = BfdEvent { up: false, ..event };
        child.send_bfd(&down).await.unwrap();
        // The parent serves the BFD child's channel: states and reports interleave on it.
        let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let bfd_child = BfdChild::serve(parent, events_tx);
        assert_eq!(events.recv().await, Some(down));
        let responder = tokio::spawn(async move {
            let Some(ParentMessage::Status(seq)) = child.next_request().await else { panic!("no request") };
            child.send_bfd(&BfdEvent { name: "other".into(), up: true }).await.unwrap();
            let bfd =
                vec![SessionStatus { name: "to_peer".into(), state: "Up".into(), ..Default::default() }];
            child.answer(&ChildReport { seq, bfd, ..Default::default() }).await.unwrap();
            child
        });
        let report = bfd_child.query(11).await.unwrap();
        assert_eq!((report.seq, report.bfd.len(), report.bfd[0].up()), (11, 1, true));
        assert_eq!(events.recv().await, Some(BfdEvent { name: "other".into(), up: true }));
        drop(responder.await.unwrap());
        assert_eq!(events.recv().await, None, "the child gone, the task ends");
        assert!(bfd_child.query(12).await.is_err());
    }

    #[tokio::test]
    async fn the_sync_state_reaches_the_child() {
        let (mut parent, child) = Channel::pair().unwrap();
        child.set_nonblocking(true).unwrap();
        let mut child = Channel::new(UnixStream::from_std(child).unwrap());
        parent.send_sync(true).await.unwrap();
        parent.writer.write_all(b"sync maybe\n").await.unwrap();
        parent.send_sync(false).await.unwrap();
        assert_eq!(child.next_request().await, Some(ParentMessage::SyncMaster(true)));
        assert_eq!(child.next_request().await, Some(ParentMessage::SyncMaster(false)));
    }

    #[tokio::test]
    async fn the_child_sees_the_parent_go() {
        let (parent, child) = Channel::pair().unwrap();
        child.set_nonblocking(true).unwrap();
        let mut child = Channel::new(UnixStream::from_std(child).unwrap());
        drop(parent);
        assert_eq!(child.next_request().await, None);
    }
}
