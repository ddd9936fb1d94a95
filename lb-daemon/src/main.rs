//! `lbd`: parse the command line and configuration before any runtime starts, take on the
//! process settings keepalived's flags ask for (namespace, umask, core dumps, fork), then run
//! the parent ([`Supervisor`]), which starts this program again for each child process, where
//! a [`Daemon`] runs one subsystem until a signal stops it.

use std::process::ExitCode;

use clap::Parser as _;
use lb_daemon::{
    cli::Args,
    daemon::{
        Daemon, Role,
        control::{Channel, ROLE_VAR},
        logging,
        supervisor::Supervisor,
    },
    dataplane::xdp::error_chain,
};
use tracing::{error, info};

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(value) = std::env::var_os(ROLE_VAR) {
        // SAFETY: the process is still single-threaded; scripts the child runs must not
        // believe they are lbd children.
        unsafe { std::env::remove_var(ROLE_VAR) };
        let Some(role) = value.to_str().and_then(Role::from_env_value) else {
            eprintln!("lbd: unknown {ROLE_VAR}={value:?}");
            return ExitCode::from(1);
        };
        logging::init(&args, Some(role));
        return match run_child(args, role) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!("{}", error_chain(e.as_ref()));
                // keepalived's KEEPALIVED_EXIT_FATAL: the parent does not respawn.
                ExitCode::from(1)
            }
        };
    }
    if args.version {
        println!("lbd {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if let Some(name) = &args.signum {
        return match lb_daemon::cli::signum(name) {
            Ok(number) => {
                println!("{number}");
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("{message}");
                ExitCode::from(1)
            }
        };
    }
    // Configuration before runtime: -t, -d and --dump-conf are answered here.
    if let Some(status) = lb_daemon::config::action::run(&args) {
        return ExitCode::from(status);
    }
    if let Err(e) = process_settings(&args) {
        eprintln!("lbd: {}", error_chain(e.as_ref()));
        return ExitCode::from(1);
    }
    logging::init(&args, None);
    match run(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            error!("{}", error_chain(e.as_ref()));
            // keepalived's KEEPALIVED_EXIT_FATAL.
            ExitCode::from(1)
        }
    }
}

/// What must happen while the process is still one thread: the network namespace (`-s`), the
/// umask (`-u`), core dumps (`-m`, `-M`) and, without `-n`, going to the background.
fn process_settings(args: &Args) -> anyhow::Result<()> {
    use anyhow::Context as _;
    if let Some(name) = &args.namespace {
        let path = format!("/var/run/netns/{name}");
        let file =
            std::fs::File::open(&path).with_context(|| format!("network namespace {name} ({path})"))?;
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("entering network namespace {name}"))?;
    }
    if let Some(mask) = args.umask {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    if args.core_dump || args.core_dump_pattern.is_some() {
        use nix::sys::resource::{Resource, setrlimit};
        setrlimit(Resource::RLIMIT_CORE, nix::libc::RLIM_INFINITY, nix::libc::RLIM_INFINITY)
            .context("allowing core dumps")?;
    }
    if let Some(pattern) = &args.core_dump_pattern {
        std::fs::write("/proc/sys/kernel/core_pattern", pattern).context("setting kernel.core_pattern")?;
    }
    if !args.dont_fork {
        // keepalived daemonizes unless -n: the parent exits, the child carries on detached.
        nix::unistd::daemon(false, args.log_console).context("going to the background")?;
    }
    Ok(())
}

/// The parent: supervises the children until stopped; the exit code.
fn run(args: Args) -> anyhow::Result<u8> {
    info!("Starting lbd {}", env!("CARGO_PKG_VERSION"));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let supervisor = Supervisor::start(args).await?;
        Ok(supervisor.run().await)
    })
}

/// A child: its subsystem until stopped, or until the parent is gone.
fn run_child(args: Args, role: Role) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let channel = Channel::inherited()?;
        let daemon = Daemon::start(args, role, Some(channel)).await?;
        daemon.run().await
    })
}
