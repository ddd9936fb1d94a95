//! The signals lbd answers, with keepalived's meanings and numbers (`--signum`).
//!
//! One exception to "a signal wakes the runtime, which acts": in the parent, SIGTERM and
//! SIGINT reach the VRRP child from the signal handler itself ([`forward_stop_at_once`]), since
//! a backup's orderly takeover waits for that child's priority-0 advert.

use std::sync::atomic::{AtomicI32, Ordering};

use tokio::signal::unix::{Signal, SignalKind, signal};

/// What a signal asks the daemon to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// SIGTERM or SIGINT: stop.
    Stop(&'static str),
    /// SIGHUP: reload the configuration.
    Reload,
    /// SIGUSR1: write the data dump.
    Data,
    /// SIGUSR2: write the statistics.
    Stats,
    /// SIGRTMAX-1: write the statistics, then clear them.
    StatsClear,
    /// SIGRTMIN+2: write the JSON dump.
    Json,
}

/// SIGRTMIN+2 as glibc numbers it (keepalived's JSON signal, `--signum=JSON`).
pub const SIGJSON: i32 = 36;
/// SIGRTMAX-1 (keepalived's STATS_CLEAR signal).
pub const SIGSTATS_CLEAR: i32 = 63;

/// The signals a parent forwards to its children, as a set: a child starts with them blocked
/// (so that one forwarded while it is still starting waits instead of killing it) and unblocks
/// them once its handlers are installed ([`Signals::install`]).
pub fn handled_set() -> nix::libc::sigset_t {
    let mut set = std::mem::MaybeUninit::<nix::libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set; sigaddset only writes into it.
    unsafe {
        nix::libc::sigemptyset(set.as_mut_ptr());
        for signal in [
            nix::libc::SIGTERM,
            nix::libc::SIGINT,
            nix::libc::SIGHUP,
            nix::libc::SIGUSR1,
            nix::libc::SIGUSR2,
            SIGSTATS_CLEAR,
            SIGJSON,
        ] {
            nix::libc::sigaddset(set.as_mut_ptr(), signal);
        }
        set.assume_init()
    }
}

/// Blocks `set` for the calling thread; async-signal-safe, for a child between fork and exec.
pub fn block(set: &nix::libc::sigset_t) -> std::io::Result<()> {
    // SAFETY: pthread_sigmask with a valid set and no old-set pointer.
    match unsafe { nix::libc::pthread_sigmask(nix::libc::SIG_BLOCK, set, std::ptr::null_mut()) } {
        0 => Ok(()),
        e => Err(std::io::Error::from_raw_os_error(e)),
    }
}

/// The daemon's signal handlers, installed at once so that no signal kills it by default.
#[derive(Debug)]
pub struct Signals {
    handlers: Vec<(Signal, Request)>,
}

impl Signals {
    /// Installs the handlers.
    pub fn install() -> std::io::Result<Self> {
        let table = [
            (SignalKind::terminate(), Request::Stop("SIGTERM")),
            (SignalKind::interrupt(), Request::Stop("SIGINT")),
            (SignalKind::hangup(), Request::Reload),
            (SignalKind::user_defined1(), Request::Data),
            (SignalKind::user_defined2(), Request::Stats),
            (SignalKind::from_raw(SIGSTATS_CLEAR), Request::StatsClear),
            (SignalKind::from_raw(SIGJSON), Request::Json),
        ];
        let handlers = table
            .into_iter()
            .map(|(kind, request)| Ok((signal(kind)?, request)))
            .collect::<std::io::Result<_>>()?;
        // A child starts with these blocked (see [`handled_set`]): the handlers are there now.
        // SAFETY: pthread_sigmask with a valid set and no old-set pointer.
        match unsafe {
            nix::libc::pthread_sigmask(nix::libc::SIG_UNBLOCK, &handled_set(), std::ptr::null_mut())
        } {
            0 => Ok(Self { handlers }),
            e => Err(std::io::Error::from_raw_os_error(e)),
        }
    }

    /// The next signal's request.
    pub async fn next(&mut self) -> Request {
        let waits = self.handlers.iter_mut().map(|(signal, request)| {
            let request = *request;
            Box::pin(async move {
                signal.recv().await;
                request
            })
        });
        futures::future::select_all(waits).await.0
    }
}

/// The running VRRP child the stop forwarder signals (0: none).
static STOP_TARGET: AtomicI32 = AtomicI32::new(0);
/// The child the stop forwarder has signalled (0: none).
static STOP_SENT: AtomicI32 = AtomicI32::new(0);

/// In the parent: SIGTERM and SIGINT are passed to the child named by [`set_stop_target`] from
/// the signal handler, before the runtime wakes, to cut the time from the signal to the VRRP
/// child's priority-0 adverts. The supervisor still handles the stop as usual and skips that
/// child ([`stop_forwarded_to`]).
pub fn forward_stop_at_once() -> std::io::Result<()> {
    for signal in [nix::libc::SIGTERM, nix::libc::SIGINT] {
        // SAFETY: the action only uses atomics and kill(2), which are async-signal-safe.
        unsafe {
            signal_hook_registry::register(signal, || {
                let pid = STOP_TARGET.swap(0, Ordering::SeqCst);
                if pid > 0 {
                    nix::libc::kill(pid, nix::libc::SIGTERM);
                    STOP_SENT.store(pid, Ordering::SeqCst);
                }
            })
        }?;
    }
    Ok(())
}

/// The child [`forward_stop_at_once`] signals from now on (`None`: none is running).
pub fn set_stop_target(pid: Option<u32>) {
    let pid = pid.and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
    STOP_TARGET.store(pid, Ordering::SeqCst);
}

/// Whether the signal handler has already told child `pid` to stop.
pub fn stop_forwarded_to(pid: u32) -> bool {
    pid != 0 && i32::try_from(pid).is_ok_and(|p| STOP_SENT.load(Ordering::SeqCst) == p)
}
