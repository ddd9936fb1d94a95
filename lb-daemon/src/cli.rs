//! keepalived's command line, as `lbd` accepts it, plus lbd's own data-plane options.
//!
//! Short and long names follow keepalived 2.2.7 (`keepalived --help`), so an existing unit file's
//! `ExecStart` line works unchanged.

use std::path::PathBuf;

use clap::Parser;

use crate::dataplane::xdp::AttachMode;

/// How `-d/--dump-conf` prints the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DumpFormat {
    /// keepalived's `-d` text.
    Keepalived,
    /// lbd's model as TOML (readable again with `-f FILE.toml`).
    Toml,
    /// lbd's model as JSON.
    Json,
}

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

    /// Don't remove VRRP VIPs and virtual routes on daemon stop (and send no priority-0 advert).
    #[arg(short = 'V', long = "dont-release-vrrp")]
    pub dont_release_vrrp: bool,

    /// Display the version number.
    #[arg(short = 'v', long = "version")]
    pub version: bool,

    /// Check the configuration for obvious errors and exit (keepalived's exit codes: 0 ok,
    /// 4 cannot run, 5 errors or warnings, 6 scripts without enable_script_security).
    /// Messages go to stderr, or to LOG_FILE with `--config-test=LOG_FILE`.
    #[arg(
        short = 't',
        long = "config-test",
        value_name = "LOG_FILE",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = ""
    )]
    pub config_test: Option<String>,

    /// Dump the configuration data: `-d`/`--dump-conf` in keepalived's style (on stderr, then
    /// carry on as keepalived does); `--dump-conf=toml` or `--dump-conf=json` prints lbd's
    /// model on stdout and exits.
    #[arg(
        short = 'd',
        long = "dump-conf",
        value_name = "FORMAT",
        value_enum,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "keepalived"
    )]
    pub dump_conf: Option<DumpFormat>,

    /// Error if any configuration file is missing (same as `includea` for every include).
    #[arg(short = 'e', long = "all-config")]
    pub all_config: bool,

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
    fn config_test_and_dump_flags() {
        let a = Args::try_parse_from(["lbd", "-t"]).expect("valid");
        assert_eq!(a.config_test.as_deref(), Some(""));
        let a = Args::try_parse_from(["lbd", "--config-test=/tmp/log"]).expect("valid");
        assert_eq!(a.config_test.as_deref(), Some("/tmp/log"));
        let a = Args::try_parse_from(["lbd", "-d", "-f", "x"]).expect("valid");
        assert_eq!(a.dump_conf, Some(DumpFormat::Keepalived));
        let a = Args::try_parse_from(["lbd", "--dump-conf"]).expect("valid");
        assert_eq!(a.dump_conf, Some(DumpFormat::Keepalived));
        let a = Args::try_parse_from(["lbd", "--dump-conf=toml"]).expect("valid");
        assert_eq!(a.dump_conf, Some(DumpFormat::Toml));
        let a = Args::try_parse_from(["lbd", "-e", "-t", "-d"]).expect("valid");
        assert!(a.all_config && a.config_test.is_some() && a.dump_conf.is_some());
        assert!(Args::try_parse_from(["lbd", "--dump-conf=yaml"]).is_err());
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
