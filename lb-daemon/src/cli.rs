//! keepalived's command line, as `lbd` accepts it, plus lbd's own data-plane options.
//!
//! Short and long names follow keepalived 2.2.7 (`keepalived --help`), so an existing unit file's
//! `ExecStart` line works unchanged.

use std::path::PathBuf;

use clap::Parser;

use crate::dataplane::xdp::AttachMode;

/// keepalived's default configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/keepalived/keepalived.conf";

/// `lbd`'s command line.
#[derive(Debug, Parser)]
#[command(
    name = "lbd",
    version,
    about = "A keepalived-compatible load balancer whose forwarding runs in XDP",
    disable_version_flag = true
)]
pub struct Args {
    /// Use the specified configuration file.
    #[arg(short = 'f', long = "use-file", value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub use_file: PathBuf,

    /// Log messages to the local console.
    #[arg(short = 'l', long = "log-console")]
    pub log_console: bool,

    /// Detailed log messages.
    #[arg(short = 'D', long = "log-detail")]
    pub log_detail: bool,

    /// Don't fork the daemon process (lbd always stays in the foreground today).
    #[arg(short = 'n', long = "dont-fork")]
    pub dont_fork: bool,

    /// Skip configuration lines beginning '@' that don't match ID, and lines beginning '@^' that
    /// do. Defaults to the host name up to the first '.'.
    #[arg(short = 'i', long = "config-id", value_name = "ID")]
    pub config_id: Option<String>,

    /// Display the version number.
    #[arg(short = 'v', long = "version")]
    pub version: bool,

    /// Directory on a bpffs where the XDP maps are pinned (mounted there if needed).
    #[arg(long = "bpf-pin-path", value_name = "DIR", default_value = lb_common::DEFAULT_PIN_PATH)]
    pub bpf_pin_path: PathBuf,

    /// Attach the XDP program to these interfaces only (repeat or comma-separate). Default: every
    /// interface that is up, except loopback.
    #[arg(long = "xdp-interface", value_name = "IF", value_delimiter = ',')]
    pub xdp_interfaces: Vec<String>,

    /// How to attach the XDP program.
    #[arg(long = "xdp-mode", value_enum, default_value_t = AttachMode::Auto)]
    pub xdp_mode: AttachMode,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalived_flags_parse() {
        let args = Args::try_parse_from(["lbd", "-f", "/tmp/k.conf", "-l", "-D", "-n"]).expect("valid flags");
        assert_eq!(args.use_file, PathBuf::from("/tmp/k.conf"));
        assert!(args.log_console && args.log_detail && args.dont_fork);
    }

    #[test]
    fn defaults_match_keepalived() {
        let args = Args::try_parse_from(["lbd"]).expect("no flags is valid");
        assert_eq!(args.use_file, PathBuf::from(DEFAULT_CONFIG));
        assert_eq!(args.xdp_mode, AttachMode::Auto);
        assert!(args.xdp_interfaces.is_empty());
    }

    #[test]
    fn interfaces_comma_separated_or_repeated() {
        let args =
            Args::try_parse_from(["lbd", "--xdp-interface", "a,b", "--xdp-interface", "c"]).expect("valid");
        assert_eq!(args.xdp_interfaces, ["a", "b", "c"]);
    }
}
