//! Where log messages go, as keepalived's flags say: syslog (facility `-S`, default daemon)
//! unless `-G`, the console with `-l`, a file with `-g`; `-D` adds detail.

use std::sync::Mutex;

use tracing_subscriber::{EnvFilter, Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt as _};

use crate::{
    cli::{Args, Facility},
    daemon::Role,
};

/// The syslog identity of the parent and of each child, as keepalived's processes call
/// themselves.
fn ident(role: Option<Role>) -> &'static std::ffi::CStr {
    match role {
        None => c"lbd",
        Some(Role::Vrrp) => c"lbd_vrrp",
        Some(Role::Checker) => c"lbd_healthcheckers",
        Some(Role::Bfd) => c"lbd_bfd",
    }
}

/// Installs the global subscriber. Logging is never a reason not to run: a log file that cannot
/// be opened or a syslog that cannot be reached is reported on stderr and skipped.
pub fn init(args: &Args, role: Option<Role>) {
    let level = if args.log_detail { "debug" } else { "info" };
    let filter = || EnvFilter::try_from_env("LBD_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let console = args.log_console.then(|| {
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .with_filter(filter())
    });
    let syslog = (!args.no_syslog)
        .then(|| syslog_tracing::Syslog::new(ident(role), syslog_tracing::Options::LOG_PID, facility(args)))
        .flatten()
        .map(|writer| {
            tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_ansi(false)
                .without_time()
                .with_level(false)
                .with_writer(writer)
                .with_filter(filter())
        });
    let file = args.log_file.as_ref().and_then(|path| {
        match std::fs::OpenOptions::new().create(true).append(true).open(path) {
            Ok(file) => Some(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_ansi(false)
                    .with_writer(Mutex::new(file))
                    .with_filter(filter()),
            ),
            Err(e) => {
                eprintln!("lbd: cannot open log file {}: {e}", path.display());
                None
            }
        }
    });
    let _ = tracing_subscriber::registry().with(console).with(syslog).with(file).try_init();
}

fn facility(args: &Args) -> syslog_tracing::Facility {
    use syslog_tracing::Facility as F;
    match args.log_facility.unwrap_or(Facility::Daemon) {
        Facility::Daemon => F::Daemon,
        Facility::User => F::User,
        Facility::Local(0) => F::Local0,
        Facility::Local(1) => F::Local1,
        Facility::Local(2) => F::Local2,
        Facility::Local(3) => F::Local3,
        Facility::Local(4) => F::Local4,
        Facility::Local(5) => F::Local5,
        Facility::Local(6) => F::Local6,
        Facility::Local(_) => F::Local7,
    }
}
