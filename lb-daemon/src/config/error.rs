//! Errors and diagnostics of the configuration reader.
//!
//! Two kinds of problem exist. A [`ConfigError`] stops the load altogether (the main file cannot
//! be read, a TOML model does not deserialize). Everything else is a [`Diagnostic`]: the parser
//! keeps going after it, so one run reports every problem with its file and line, as keepalived's
//! `--config-test` does.

use std::{fmt, path::PathBuf};

use serde::{Deserialize, Serialize};

/// A problem that stops the configuration from being loaded at all.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file (or a file it names) could not be read.
    #[error("cannot read configuration file {path}")]
    Read {
        /// The file that could not be read.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No file matched the configuration file name (keepalived's `Config files missing`).
    #[error("configuration file {path} not found")]
    NotFound {
        /// The name given.
        path: PathBuf,
    },
    /// A `.toml` model did not deserialize.
    #[error("{path} is not a valid lbd TOML model")]
    Toml {
        /// The model file.
        path: PathBuf,
        /// What the TOML reader said.
        #[source]
        source: toml::de::Error,
    },
    /// The model could not be written as TOML.
    #[error("cannot write the model as TOML")]
    TomlWrite(#[source] toml::ser::Error),
    /// The model could not be written as JSON.
    #[error("cannot write the model as JSON")]
    Json(#[source] serde_json::Error),
}

/// How bad a [`Diagnostic`] is.
///
/// keepalived 2.2.7's `--config-test` exits 5 for any error or warning; lbd keeps the same rule
/// for [`Severity::Error`] and [`Severity::Warning`]. [`Severity::Notice`] is information that
/// does not change the exit status: valid keepalived configuration that lbd reads but does not
/// act on yet ("not supported yet"), or a script missing on this host (keepalived silently
/// drops those). So every file keepalived accepts is accepted by lbd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Printed, but does not change the exit status (e.g. "not supported yet").
    Notice,
    /// Something keepalived would warn about (and then ignore or default).
    Warning,
    /// Something wrong: the value was not used.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Notice => "notice",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// The class of a diagnostic for `--config-test`'s exit status (keepalived's `config_err_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitClass {
    /// Counted as a configuration error: exit 5.
    Config,
    /// A script is configured but `enable_script_security` is not: exit 6.
    ScriptSecurity,
    /// A fatal problem (missing file with `-e`): exit 4.
    Fatal,
}

/// One problem found in the configuration, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// How bad it is.
    pub severity: Severity,
    /// The file it is in (empty for problems found after reading, e.g. cross references that
    /// have no single place).
    pub file: String,
    /// 1-based line number, 0 when there is none.
    pub line: u32,
    /// 1-based column, 0 when unknown.
    pub column: u32,
    /// What is wrong and what was expected.
    pub message: String,
    /// Which `--config-test` exit status it implies.
    pub class: ExitClass,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.file.is_empty() {
            write!(f, "{}: {}", self.severity, self.message)
        } else if self.line == 0 {
            write!(f, "{}: {}: {}", self.file, self.severity, self.message)
        } else if self.column == 0 {
            write!(f, "{}:{}: {}: {}", self.file, self.line, self.severity, self.message)
        } else {
            write!(f, "{}:{}:{}: {}: {}", self.file, self.line, self.column, self.severity, self.message)
        }
    }
}

/// A place in the configuration: file, line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Loc {
    /// Index into the list of files read (see [`super::Files`]).
    pub file: u32,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, 0 when unknown.
    pub column: u32,
}

/// Where diagnostics are collected while reading.
#[derive(Debug, Default)]
pub struct Diagnostics {
    /// The files read so far; [`Loc::file`] indexes this.
    pub files: Vec<String>,
    /// Every diagnostic, in the order found.
    pub list: Vec<Diagnostic>,
}

impl Diagnostics {
    /// Records a diagnostic at `loc`.
    pub fn push(&mut self, severity: Severity, loc: Loc, message: impl Into<String>) {
        self.push_class(severity, ExitClass::Config, loc, message);
    }

    /// Records a diagnostic with an explicit exit class.
    pub fn push_class(&mut self, severity: Severity, class: ExitClass, loc: Loc, message: impl Into<String>) {
        let file = if loc.line == 0 && loc.file == u32::MAX {
            String::new()
        } else {
            self.files.get(loc.file as usize).cloned().unwrap_or_default()
        };
        self.list.push(Diagnostic {
            severity,
            file,
            line: loc.line,
            column: loc.column,
            message: message.into(),
            class,
        });
    }

    /// An error at `loc`.
    pub fn error(&mut self, loc: Loc, message: impl Into<String>) {
        self.push(Severity::Error, loc, message);
    }

    /// A warning at `loc`.
    pub fn warn(&mut self, loc: Loc, message: impl Into<String>) {
        self.push(Severity::Warning, loc, message);
    }

    /// A notice at `loc` for a keyword that is parsed but not acted on yet.
    pub fn parsed_unsupported(&mut self, loc: Loc, keyword: &str) {
        self.push(
            Severity::Notice,
            loc,
            format!("keyword '{keyword}' is parsed, not supported yet: ignored"),
        );
    }

    /// A "not supported yet" notice at `loc`.
    pub fn unsupported(&mut self, loc: Loc, keyword: &str) {
        self.push(Severity::Notice, loc, format!("keyword '{keyword}' is not supported yet"));
    }
}

/// A location with no file, for problems found after reading (cross references).
pub const NOWHERE: Loc = Loc { file: u32::MAX, line: 0, column: 0 };
