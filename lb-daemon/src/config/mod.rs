//! keepalived.conf: reading, checking and writing lbd's configuration.
//!
//! - [`lexer`] turns files into logical lines (comments, `@id`, `$NAME`, `~SEQ`, `include`);
//! - [`parser`], [`vrrp`] and [`lvs`] build the typed [`model`] and record every problem as a
//!   [`Diagnostic`] with file, line and column;
//! - [`validate`] makes keepalived's checks that need the whole file; [`host`] those that need
//!   this machine;
//! - [`dump`] prints the model the way `keepalived -d` does; [`to_toml`]/[`to_json`] write the
//!   model, and [`load`] reads a `.toml` model back.
//!
//! The daemon calls [`load`] before it starts any runtime; `--config-test` prints the
//! diagnostics and exits with [`config_test_exit_code`].

pub mod action;
pub mod dump;
pub mod error;
pub mod host;
pub mod lexer;
pub mod lvs;
pub mod model;
pub mod parser;
pub mod schema;
pub mod validate;
pub mod vrrp;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use error::{ConfigError, Diagnostic, ExitClass, Severity};
pub use model::Config;

use error::Diagnostics;
use lexer::{LexOptions, Lexer};

/// How to read the configuration.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `-i/--config-id`: the id matched by `@ID` lines. `None` means the host name up to the
    /// first '.'.
    pub config_id: Option<String>,
    /// `-e/--all-config`: a missing include file is an error.
    pub all_config: bool,
    /// Refuse `include` lines (fuzzing: input must not read the file system).
    pub deny_includes: bool,
}

impl LoadOptions {
    fn lex(&self) -> LexOptions {
        LexOptions {
            config_id: self.config_id.clone().unwrap_or_else(default_config_id),
            all_config: self.all_config,
            deny_includes: self.deny_includes,
        }
    }
}

/// A configuration read from disk, with everything found wrong in it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The model.
    pub config: Config,
    /// Every problem, in the order found (file problems first, then cross-checks).
    pub diagnostics: Vec<Diagnostic>,
    /// Every file read (the main file first).
    pub files: Vec<String>,
}

impl Loaded {
    /// True when nothing but notices was reported.
    pub fn is_clean(&self) -> bool {
        self.diagnostics.iter().all(|d| d.severity == Severity::Notice)
    }

    /// The errors and warnings (not the notices).
    pub fn problems(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.severity != Severity::Notice)
    }
}

/// keepalived's config id default: the host name up to the first '.'.
pub fn default_config_id() -> String {
    let host = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    host.split('.').next().unwrap_or("").to_string()
}

/// Reads the configuration at `path`: a keepalived.conf, or lbd's TOML model when the name
/// ends in `.toml`.
pub fn load(path: &Path, options: &LoadOptions) -> Result<Loaded, ConfigError> {
    if path.extension().is_some_and(|e| e == "toml") {
        let text = std::fs::read_to_string(path).map_err(|source| read_error(path, source))?;
        let config =
            from_toml(&text).map_err(|source| ConfigError::Toml { path: path.to_path_buf(), source })?;
        return Ok(Loaded {
            config,
            diagnostics: Vec::new(),
            files: vec![path.to_string_lossy().into_owned()],
        });
    }
    let mut d = Diagnostics::default();
    let mut lx = Lexer::new(options.lex());
    lx.open_main(&mut d, path).map_err(|source| read_error(path, source))?;
    Ok(finish(lx, d))
}

fn read_error(path: &Path, source: std::io::Error) -> ConfigError {
    if source.kind() == std::io::ErrorKind::NotFound {
        ConfigError::NotFound { path: path.to_path_buf() }
    } else {
        ConfigError::Read { path: path.to_path_buf(), source }
    }
}

/// Parses `text` as the keepalived.conf named `name` (includes are read relative to `name`).
pub fn parse_str(name: &str, text: &str, options: &LoadOptions) -> Loaded {
    let mut d = Diagnostics::default();
    let mut lx = Lexer::new(options.lex());
    lx.push_text(&mut d, name, text.to_string());
    finish(lx, d)
}

fn finish(lx: Lexer, d: Diagnostics) -> Loaded {
    let (mut config, mut d, src) = parser::Parser::new(lx, d).run();
    validate::validate(&mut config, &src, &mut d);
    Loaded { config, diagnostics: d.list, files: d.files }
}

/// Reads lbd's TOML model.
pub fn from_toml(text: &str) -> Result<Config, toml::de::Error> {
    toml::from_str(text)
}

/// Writes the model as TOML (`lbd --dump-conf=toml`).
pub fn to_toml(config: &Config) -> Result<String, ConfigError> {
    toml::to_string(config).map_err(ConfigError::TomlWrite)
}

/// Writes the model as JSON (`lbd --dump-conf=json`).
pub fn to_json(config: &Config) -> Result<String, ConfigError> {
    serde_json::to_string_pretty(config).map_err(ConfigError::Json)
}

/// keepalived 2.2.7's `--config-test` exit status for these diagnostics: 0 when clean, 4 for a
/// fatal problem, 6 for scripts without `enable_script_security`, 5 for any other error or
/// warning; the highest class seen wins.
pub fn config_test_exit_code(diagnostics: &[Diagnostic]) -> u8 {
    diagnostics
        .iter()
        .filter(|d| d.severity != Severity::Notice)
        .map(|d| match d.class {
            ExitClass::Config => 5,
            ExitClass::ScriptSecurity => 6,
            ExitClass::Fatal => 4,
        })
        .fold(0, |acc, c| match (acc, c) {
            (4, _) | (_, 4) => 4,
            (a, b) => a.max(b),
        })
}

/// The fuzzing entry point: parses arbitrary bytes, and checks that whatever model comes out
/// survives TOML and JSON round trips unchanged. Never panics on any input unless the model
/// does not round-trip (which is a bug worth a crash report).
pub fn fuzz_parse(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let loaded = parse_str(
        "fuzz.conf",
        &text,
        &LoadOptions { config_id: Some("fuzz".into()), all_config: false, deny_includes: true },
    );
    let _ = dump::dump(&loaded.config);
    if let Ok(t) = to_toml(&loaded.config) {
        match from_toml(&t) {
            Ok(back) => assert_eq!(back, loaded.config, "TOML round trip changed the model"),
            Err(e) => panic!("TOML written by lbd does not read back: {e}\n{t}"),
        }
    }
}
