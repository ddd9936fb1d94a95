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
#[derive(Debug, Clone, Parser)]
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

    /// Only run the VRRP child (no virtual servers, no checkers, no XDP).
    #[arg(short = 'P', long = "vrrp", conflicts_with = "check_only")]
    pub vrrp_only: bool,

    /// Only run the checker child (virtual servers, checkers and XDP; no VRRP).
    #[arg(short = 'C', long = "check")]
    pub check_only: bool,

    /// Don't run the BFD subsystem (no BFD child; track_bfd and BFD_CHECK then see no session).
    #[arg(short = 'B', long = "no_bfd")]
    pub no_bfd: bool,

    /// Start every child process even if the configuration has nothing for it.
    #[arg(long = "all")]
    pub all: bool,

    /// Syslog facility: 0-7 (local0-7), local0-7, user or daemon (default).
    #[arg(short = 'S', long = "log-facility", value_name = "FACILITY", value_parser = parse_facility)]
    pub log_facility: Option<Facility>,

    /// Don't log via syslog.
    #[arg(short = 'G', long = "no-syslog")]
    pub no_syslog: bool,

    /// umask for file creation (numeric, octal with a leading 0).
    #[arg(short = 'u', long = "umask", value_name = "MASK", value_parser = parse_umask)]
    pub umask: Option<u32>,

    /// Drop VIPs on transition from signal (keepalived's -X; lbd always removes them on an
    /// orderly stop unless -V).
    #[arg(short = 'X', long = "release-vips")]
    pub release_vips: bool,

    /// Don't remove the data-plane topology on daemon stop: the XDP program stays attached and
    /// keeps forwarding established and new flows until the next lbd adopts it.
    #[arg(short = 'I', long = "dont-release-ipvs")]
    pub dont_release_ipvs: bool,

    /// Don't respawn a dead child process: lbd stops instead.
    #[arg(short = 'R', long = "dont-respawn")]
    pub dont_respawn: bool,

    /// Pid file of the parent process.
    #[arg(short = 'p', long = "pid", value_name = "FILE")]
    pub pid_file: Option<PathBuf>,

    /// Pid file of the VRRP child process.
    #[arg(short = 'r', long = "vrrp_pid", value_name = "FILE")]
    pub vrrp_pid_file: Option<PathBuf>,

    /// Pid file of the checker child process.
    #[arg(short = 'c', long = "checkers_pid", value_name = "FILE")]
    pub checkers_pid_file: Option<PathBuf>,

    /// Use the specified pid file for the BFD child process.
    #[arg(short = 'b', long = "bfd_pid", value_name = "FILE")]
    pub bfd_pid_file: Option<PathBuf>,

    /// Report all address additions/deletions notified via netlink.
    #[arg(short = 'a', long = "address-monitoring")]
    pub address_monitoring: bool,

    /// Enable the SNMP subsystem: every MIB (KEEPALIVED-MIB's VRRP and checker parts, RFC 2787,
    /// RFC 6527), served by AgentX subagents in the VRRP and checker children.
    #[arg(short = 'x', long = "snmp")]
    pub snmp: bool,

    /// Socket of the SNMP master agent (as `snmp_socket`: `unix:PATH`, `tcp:HOST:PORT`).
    #[arg(short = 'A', long = "snmp-agent-socket", value_name = "FILE")]
    pub snmp_agent_socket: Option<PathBuf>,

    /// Run in network namespace NAME (overrides the configuration's net_namespace).
    #[arg(short = 's', long = "namespace", value_name = "NAME")]
    pub namespace: Option<String>,

    /// Produce a core dump if lbd terminates abnormally.
    #[arg(short = 'm', long = "core-dump")]
    pub core_dump: bool,

    /// Also set /proc/sys/kernel/core_pattern to PATTERN.
    #[arg(short = 'M', long = "core-dump-pattern", value_name = "PATTERN", num_args = 0..=1,
          require_equals = true, default_missing_value = "core")]
    pub core_dump_pattern: Option<String>,

    /// Log to FILE as well (keepalived's -g, --log-file).
    #[arg(short = 'g', long = "log-file", value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    /// Print the number of the signal for STOP, RELOAD, DATA, STATS, STATS_CLEAR or JSON, and
    /// exit.
    #[arg(long = "signum", value_name = "SIGFUNC")]
    pub signum: Option<String>,

    /// Serve /metrics (Prometheus text) and /status (JSON) over HTTP on ADDR:PORT (off by
    /// default), e.g. 127.0.0.1:9110.
    #[arg(long = "status-listen", value_name = "ADDR:PORT")]
    pub status_listen: Option<std::net::SocketAddr>,

    /// Directory on a bpffs where the XDP maps are pinned (mounted there if needed).
    #[arg(long = "bpf-pin-path", value_name = "DIR", default_value = lb_common::DEFAULT_PIN_PATH)]
    pub bpf_pin_path: PathBuf,

    /// The forwarding backend: lbd's XDP program, or the kernel's IPVS as keepalived drives it.
    /// Default: the `global_defs` keyword `lbd_dataplane`, else xdp.
    #[arg(long = "dataplane", value_enum, value_name = "xdp|ipvs")]
    pub dataplane: Option<crate::dataplane::Backend>,

    /// Attach the XDP program to these interfaces only (repeat or comma-separate). Default: every
    /// interface that is up, except loopback.
    #[arg(long = "xdp-interface", value_name = "IF", value_delimiter = ',')]
    pub xdp_interfaces: Vec<String>,

    /// How to attach the XDP program.
    #[arg(long = "xdp-mode", value_enum, default_value_t = AttachMode::Auto)]
    pub xdp_mode: AttachMode,
}

/// A syslog facility as `-S` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Facility {
    /// LOG_DAEMON (the default).
    Daemon,
    /// LOG_USER.
    User,
    /// LOG_LOCAL0 to LOG_LOCAL7.
    Local(u8),
}

fn parse_facility(text: &str) -> Result<Facility, String> {
    let local = |n: &str| n.parse::<u8>().ok().filter(|n| *n <= 7).map(Facility::Local);
    match text {
        "daemon" => Some(Facility::Daemon),
        "user" => Some(Facility::User),
        _ => text.strip_prefix("local").map_or_else(|| local(text), local),
    }
    .ok_or_else(|| format!("'{text}': expected 0-7, local0-7, user or daemon"))
}

fn parse_umask(text: &str) -> Result<u32, String> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16),
        None if text.starts_with('0') && text.len() > 1 => u32::from_str_radix(&text[1..], 8),
        None => text.parse(),
    };
    parsed.ok().filter(|m| *m <= 0o777).ok_or_else(|| format!("'{text}': expected a numeric umask"))
}

/// keepalived's `--signum` names and their signals.
pub const SIGNUMS: [(&str, i32); 6] = [
    ("STOP", libc::SIGTERM),
    ("RELOAD", libc::SIGHUP),
    ("DATA", libc::SIGUSR1),
    ("STATS", libc::SIGUSR2),
    ("STATS_CLEAR", 63),
    ("JSON", 36),
];

/// The `--signum` answer: the signal number, or keepalived's message for an unknown name.
pub fn signum(name: &str) -> Result<i32, String> {
    SIGNUMS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s).ok_or_else(|| format!("Unknown sigfunc {name}"))
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
    fn every_keepalived_flag_is_accepted() {
        let args = Args::try_parse_from([
            "lbd",
            "-P",
            "-B",
            "--all",
            "-S",
            "local3",
            "-G",
            "-u",
            "0177",
            "-X",
            "-V",
            "-I",
            "-R",
            "-n",
            "-p",
            "/run/a.pid",
            "-r",
            "/run/v.pid",
            "-c",
            "/run/c.pid",
            "-b",
            "/run/b.pid",
            "-a",
            "-x",
            "-A",
            "/s",
            "-s",
            "ns1",
            "-m",
            "--core-dump-pattern=core",
            "-e",
            "-i",
            "lb1",
            "--signum",
            "JSON",
        ])
        .expect("valid");
        assert!(args.vrrp_only && args.dont_release_ipvs && args.no_syslog);
        assert_eq!(args.log_facility, Some(Facility::Local(3)));
        assert_eq!(args.umask, Some(0o177));
        assert_eq!(args.pid_file, Some(PathBuf::from("/run/a.pid")));
        assert!(Args::try_parse_from(["lbd", "-P", "-C"]).is_err(), "-P and -C exclude each other");
        assert!(Args::try_parse_from(["lbd", "-S", "local8"]).is_err());
        assert_eq!(parse_facility("5"), Ok(Facility::Local(5)));
        assert_eq!(parse_facility("daemon"), Ok(Facility::Daemon));
    }

    #[test]
    fn signum_answers_like_keepalived() {
        assert_eq!(signum("STOP"), Ok(15));
        assert_eq!(signum("RELOAD"), Ok(1));
        assert_eq!(signum("DATA"), Ok(10));
        assert_eq!(signum("STATS"), Ok(12));
        assert_eq!(signum("STATS_CLEAR"), Ok(63));
        assert_eq!(signum("JSON"), Ok(36));
        assert_eq!(signum("TDATA"), Err("Unknown sigfunc TDATA".to_owned()));
    }

    #[test]
    fn defaults_match_keepalived() {
        let args = Args::try_parse_from(["lbd"]).expect("no flags is valid");
        assert_eq!(args.use_file, PathBuf::from(DEFAULT_CONFIG));
        assert_eq!(args.xdp_mode, AttachMode::Auto);
        assert!(args.xdp_interfaces.is_empty());
        assert_eq!(args.dataplane, None);
    }

    #[test]
    fn dataplane_flag() {
        let args = Args::try_parse_from(["lbd", "--dataplane=ipvs"]).expect("valid");
        assert_eq!(args.dataplane, Some(crate::dataplane::Backend::Ipvs));
        let args = Args::try_parse_from(["lbd", "--dataplane", "xdp"]).expect("valid");
        assert_eq!(args.dataplane, Some(crate::dataplane::Backend::Xdp));
        assert!(Args::try_parse_from(["lbd", "--dataplane=lvs"]).is_err());
    }

    #[test]
    fn interfaces_comma_separated_or_repeated() {
        let args =
            Args::try_parse_from(["lbd", "--xdp-interface", "a,b", "--xdp-interface", "c"]).expect("valid");
        assert_eq!(args.xdp_interfaces, ["a", "b", "c"]);
    }
}

#[cfg(test)]
mod unit_file {
    //! The shipped systemd unit and the README stay in step with the command line.

    use clap::{CommandFactory as _, Parser as _};

    use super::Args;

    fn repo_file(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn the_unit_starts_lbd_with_valid_flags() {
        let unit = repo_file("dist/lbd.service");
        let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("an ExecStart line");
        let argv: Vec<&str> = exec.split_whitespace().filter(|w| !w.starts_with('$')).collect();
        assert!(argv[0].ends_with("/lbd"), "{exec}");
        let args = Args::try_parse_from(&argv).unwrap_or_else(|e| panic!("{exec}: {e}"));
        assert!(args.dont_fork, "systemd's Type=notify wants the daemon in the foreground");
        assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    }

    #[test]
    fn the_readme_lists_every_flag() {
        let readme = repo_file("README.md");
        let command = Args::command();
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            assert!(readme.contains(&format!("--{long}")), "README.md does not document --{long}");
            if let Some(short) = arg.get_short() {
                assert!(
                    readme.contains(&format!("-{short}, --{long}")),
                    "README.md: write `-{short}, --{long}`"
                );
            }
        }
    }
}
