//! The configuration actions of the command line, run before any runtime exists:
//! `-t/--config-test[=LOG_FILE]`, `-d/--dump-conf[=toml|json]` and `-e/--all-config`.

use std::io::Write as _;

use super::{
    ConfigError, Diagnostic, LoadOptions, Loaded, Severity, config_test_exit_code, dump, host, load, to_json,
    to_toml,
};
use crate::cli::{Args, DumpFormat};

/// keepalived's `--config-test` status when the configuration cannot be used at all.
const EXIT_CANNOT_RUN: u8 = 4;

/// Runs the configuration actions `args` ask for. `Some(status)` means the process should
/// exit with that status now; `None` means carry on starting the daemon.
pub fn run(args: &Args) -> Option<u8> {
    if args.config_test.is_none() && args.dump_conf.is_none() {
        return None;
    }
    let options =
        LoadOptions { config_id: args.config_id.clone(), all_config: args.all_config, deny_includes: false };
    let mut out: Box<dyn std::io::Write> = match args.config_test.as_deref() {
        Some(path) if !path.is_empty() => match std::fs::File::create(path) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("cannot open config test log file {path}: {e}");
                return Some(EXIT_CANNOT_RUN);
            }
        },
        _ => Box::new(std::io::stderr()),
    };
    let loaded = match load(&args.use_file, &options) {
        Ok(l) => l,
        Err(ConfigError::NotFound { path }) => {
            // keepalived: a missing main file is only fatal with -e.
            let _ = writeln!(out, "Config files missing '{}'.", path.display());
            return Some(if args.all_config { EXIT_CANNOT_RUN } else { 0 });
        }
        Err(e) => {
            let _ = writeln!(out, "{}", error_chain(&e));
            return Some(EXIT_CANNOT_RUN);
        }
    };
    let diagnostics = diagnostics_with_host(&loaded);
    for d in &diagnostics {
        let _ = writeln!(out, "{d}");
    }
    match args.dump_conf {
        Some(DumpFormat::Keepalived) => {
            let _ = write!(std::io::stderr(), "{}", dump::dump(&loaded.config));
        }
        Some(format @ (DumpFormat::Toml | DumpFormat::Json)) => {
            let text =
                if format == DumpFormat::Toml { to_toml(&loaded.config) } else { to_json(&loaded.config) };
            match text {
                Ok(t) => {
                    let mut stdout = std::io::stdout().lock();
                    let _ = stdout.write_all(t.as_bytes());
                    if !t.ends_with('\n') {
                        let _ = writeln!(stdout);
                    }
                }
                Err(e) => {
                    let _ = writeln!(out, "{}", error_chain(&e));
                    return Some(EXIT_CANNOT_RUN);
                }
            }
            return Some(config_test_exit_code(&diagnostics));
        }
        None => {}
    }
    if args.config_test.is_some() {
        let status = config_test_exit_code(&diagnostics);
        // The process exits now: freeing a large model would only cost time.
        std::mem::forget(loaded);
        return Some(status);
    }
    None
}

/// The diagnostics of the file followed by those of the checks against this host.
pub fn diagnostics_with_host(loaded: &Loaded) -> Vec<Diagnostic> {
    let mut all = loaded.diagnostics.clone();
    all.extend(host::check(&loaded.config, &host::ThisHost));
    all
}

/// `error: cause: cause`, for one-line messages.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// True when `d` counts against `--config-test`.
pub fn counts(d: &Diagnostic) -> bool {
    d.severity != Severity::Notice
}
