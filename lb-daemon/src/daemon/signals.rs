//! The signals lbd answers, with keepalived's meanings and numbers (`--signum`).

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
        Ok(Self { handlers })
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
