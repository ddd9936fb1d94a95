//! `lbd`: parse the command line and configuration before any runtime starts, set up the data
//! plane, then wait for a signal and shut down in order.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use lb_daemon::{
    cli::Args,
    dataplane::Dataplane as _,
    dataplane::xdp::{XdpDataplane, error_chain},
    netlink::{Netlink, sysctl},
};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

fn main() -> ExitCode {
    let args = Args::parse();
    if args.version {
        println!("lbd {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    // Configuration before runtime: -t, -d and --dump-conf are answered here.
    if let Some(status) = lb_daemon::config::action::run(&args) {
        return ExitCode::from(status);
    }
    init_logging(&args);
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{}", error_chain(e.as_ref()));
            // keepalived's KEEPALIVED_EXIT_FATAL.
            ExitCode::from(1)
        }
    }
}

fn init_logging(args: &Args) {
    let level = if args.log_detail { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LBD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}

fn run(args: &Args) -> anyhow::Result<()> {
    info!("Starting lbd {}", env!("CARGO_PKG_VERSION"));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: &Args) -> anyhow::Result<()> {
    let options = lb_daemon::config::LoadOptions {
        config_id: args.config_id.clone(),
        all_config: args.all_config,
        deny_includes: false,
    };
    let config = lb_daemon::config::load(&args.use_file, &options).context("reading the configuration")?;
    let netlink = Netlink::connect()?;
    let mut dataplane = XdpDataplane::load(&args.bpf_pin_path).context("setting up the XDP data plane")?;
    let interfaces = if args.xdp_interfaces.is_empty() {
        netlink.links().await?.into_iter().filter(|l| l.up && !l.loopback).map(|l| l.name).collect()
    } else {
        args.xdp_interfaces.clone()
    };
    for interface in &interfaces {
        let mode = dataplane.attach(interface, args.xdp_mode)?;
        info!("XDP program attached to {interface} ({mode:?} mode)");
    }
    info!("maps pinned under {}", dataplane.pin_dir().display());
    // The checkers start with the data plane: alpha real servers are left out from the start.
    let checks = lb_daemon::check::Runner::spawn(&config.config);
    apply_virtual_servers(&config.config, &checks.desired(), &interfaces, &mut dataplane)?;
    // VRRP runs the configuration's instances until the signal, and stops before the data plane.
    let vrrp = lb_daemon::vrrp::VrrpTask::spawn(config.config, netlink.clone());

    apply_checks_until_stop(checks, &mut dataplane).await?;

    info!("Stopping");
    if let Err(e) = vrrp
        .stop(if args.dont_release_vrrp {
            lb_daemon::vrrp::StopKind::KeepVips
        } else {
            lb_daemon::vrrp::StopKind::Orderly
        })
        .await
    {
        error!("{}", error_chain(&e));
    }
    let stats = dataplane.stats()?;
    info!(
        "packets seen: {}, passed: {}, dropped malformed: {}",
        stats.rx_packets, stats.pass, stats.drop_malformed
    );
    dataplane.remove()?;
    info!("Stopped");
    Ok(())
}

/// Re-programs the data plane whenever the checkers change what it should forward, until
/// SIGTERM or SIGINT.
async fn apply_checks_until_stop(
    mut checks: lb_daemon::check::Runner,
    dataplane: &mut XdpDataplane,
) -> anyhow::Result<()> {
    let stop = wait_for_stop();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            result = &mut stop => {
                // omega: the virtual servers' down scripts before the data plane goes.
                checks.stop().await;
                return result;
            }
            desired = checks.changed() => match dataplane.apply(&desired) {
                Ok(report) => info!("data plane: {report:?}"),
                Err(e) => error!("applying the checkers' changes: {}", error_chain(&e)),
            },
        }
    }
}

/// Programs the configuration's virtual servers, as the checkers first see them, into the
/// data plane.
fn apply_virtual_servers(
    config: &lb_daemon::config::model::Config,
    desired: &lb_daemon::dataplane::DesiredState,
    interfaces: &[String],
    dataplane: &mut XdpDataplane,
) -> anyhow::Result<()> {
    let (_, notes) = lb_daemon::lvs::desired_state(config);
    for note in notes {
        warn!("{note}");
    }
    if !desired.services.is_empty() {
        for interface in interfaces {
            if sysctl::enable_ipv4_forwarding(interface)? {
                info!(
                    "{interface}: IPv4 forwarding turned on (the data plane routes through the kernel's FIB)"
                );
            }
            if sysctl::enable_accept_local(interface)? {
                info!(
                    "{interface}: accept_local turned on (replies the kernel forwards carry the VIP as source)"
                );
            }
        }
        if desired.services.iter().any(|s| s.addr.vip.is_ipv6()) && sysctl::enable_ipv6_forwarding()? {
            info!("IPv6 forwarding turned on (the data plane routes through the kernel's FIB)");
        }
    }
    let report = dataplane.apply(desired).context("programming the virtual servers")?;
    info!("data plane: {} virtual services, {report:?}", desired.services.len());
    Ok(())
}

/// Waits for SIGTERM or SIGINT.
async fn wait_for_stop() -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => info!("received SIGTERM"),
        _ = int.recv() => info!("received SIGINT"),
    }
    Ok(())
}
