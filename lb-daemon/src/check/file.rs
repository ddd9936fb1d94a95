//! `FILE_CHECK`: the integer in a `track_file`'s file decides. With weight 0 any non-zero
//! value is down; otherwise the real server's weight plus `value * weight` (negated by
//! `reverse`) must stay above 0, and with `dynamic` it becomes the server's weight. A missing
//! or empty file reads as 0, as keepalived reads it.

use std::path::PathBuf;

use super::{CheckError, Probe};
use crate::config::model::{Config, FileCheck};

/// A resolved FILE_CHECK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProbe {
    /// The file.
    pub path: PathBuf,
    /// Multiplier.
    pub weight: i64,
    /// `reverse`.
    pub reverse: bool,
    /// `dynamic`.
    pub dynamic: bool,
    /// The real server's configured weight.
    pub base: i64,
}

impl FileProbe {
    /// Resolves `check` against the configuration's `track_file`s.
    pub fn new(check: &FileCheck, config: &Config, base: u32) -> Result<Self, CheckError> {
        let name = check.track_file.as_deref().unwrap_or_default();
        let track = config
            .track_files
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| CheckError::Unusable(format!("FILE_CHECK: no track_file {name}")))?;
        let path = track
            .file
            .clone()
            .ok_or_else(|| CheckError::Unusable(format!("track_file {name} has no file")))?;
        Ok(FileProbe {
            path: path.into(),
            weight: i64::from(check.weight.unwrap_or(track.weight)),
            reverse: check.reverse ^ track.reverse,
            dynamic: check.dynamic,
            base: i64::from(base),
        })
    }

    /// Reads the file (a small file: read in place).
    pub async fn probe(&self) -> Result<Probe, CheckError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(CheckError::File(format!("{}: {e}", self.path.display()))),
        };
        self.judge(&text)
    }

    /// The verdict for the file's contents.
    pub fn judge(&self, text: &str) -> Result<Probe, CheckError> {
        let word = text.split_whitespace().next().unwrap_or("0");
        let value: i64 = word
            .parse()
            .map_err(|_| CheckError::File(format!("{}: {word:?} is not a number", self.path.display())))?;
        let value = if self.reverse { -value } else { value };
        if self.weight == 0 {
            return if value == 0 { Ok(Probe::Up) } else { Err(self.down(value)) };
        }
        let weight = self.base.saturating_add(value.saturating_mul(self.weight));
        match (weight > 0, self.dynamic) {
            (false, _) => Err(self.down(value)),
            (true, true) => Ok(Probe::UpWithWeight(u32::try_from(weight).unwrap_or(u32::MAX))),
            (true, false) => Ok(Probe::Up),
        }
    }

    fn down(&self, value: i64) -> CheckError {
        CheckError::File(format!("{} reads {value}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(weight: i64, reverse: bool, dynamic: bool) -> FileProbe {
        FileProbe { path: "/nonexistent/lbd-file-check".into(), weight, reverse, dynamic, base: 3 }
    }

    #[test]
    fn values_weights_and_reverse() {
        assert!(matches!(probe(0, false, false).judge("0\n"), Ok(Probe::Up)));
        assert!(probe(0, false, false).judge("1").is_err());
        assert!(matches!(probe(1, false, false).judge("-2"), Ok(Probe::Up)), "3 - 2 > 0");
        assert!(probe(1, false, false).judge("-3").is_err());
        assert!(probe(1, true, false).judge("3").is_err());
        assert!(matches!(probe(2, false, true).judge("1"), Ok(Probe::UpWithWeight(5))));
        assert!(probe(1, false, false).judge("x").is_err());
    }

    #[tokio::test]
    async fn a_missing_file_reads_as_zero() {
        assert!(matches!(probe(0, false, false).probe().await, Ok(Probe::Up)));
    }
}
