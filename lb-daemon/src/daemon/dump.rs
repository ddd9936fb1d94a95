//! keepalived's dump files, written on signals by the process each concerns, in `$TMPDIR` when
//! it is an absolute path, else `/tmp`, with mode 0600:
//!
//! | signal | VRRP child | checker child | parent |
//! | --- | --- | --- | --- |
//! | SIGUSR1 | `keepalived.data` | `keepalived_check.data` | `keepalived_parent.data` |
//! | SIGUSR2, SIGRTMAX-1 | `keepalived.stats` | `keepalived_check.stats` | |
//! | SIGRTMIN+2 | `keepalived.json` | | |
//!
//! The data dumps start, as keepalived's do, with the `-d` dump of the configuration; the VRRP
//! child's goes on with its instances' state, the checker child's with the data plane as it runs
//! (virtual services, real servers, weights, connections). `keepalived.stats` holds keepalived's
//! per-instance VRRP counters (lbd counts dropped adverts as one "Discarded" figure rather than
//! keepalived's categories); `keepalived_check.stats`, lbd's own, the counters of every virtual
//! and real server. `keepalived.json` is keepalived's array of `{"data": ..., "stats": ...}`
//! objects, one per VRRP instance.

use std::{fmt::Write as _, io::Write as _, os::unix::fs::OpenOptionsExt as _, path::PathBuf};

use super::Role;
use crate::{
    config::Config,
    dataplane::{AnyDataplane, Dataplane as _, ServiceCounters},
    vrrp::status::InstanceStatus,
};

/// Which dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// SIGUSR1: `keepalived.data`.
    Data,
    /// SIGUSR2: `keepalived.stats`.
    Stats,
    /// SIGRTMAX-1: `keepalived.stats`, then the VRRP counters cleared (the virtual servers'
    /// counters are the data plane's and are not cleared).
    StatsClear,
    /// SIGRTMIN+2: `keepalived.json`.
    Json,
}

impl Kind {
    /// The file's name when written by a child in `role`; `None` if that child writes none.
    pub fn file_name(self, role: Role) -> Option<&'static str> {
        match (self, role) {
            (Self::Data, Role::Vrrp) => Some("keepalived.data"),
            (Self::Data, Role::Checker) => Some("keepalived_check.data"),
            (Self::Stats | Self::StatsClear, Role::Vrrp) => Some("keepalived.stats"),
            (Self::Stats | Self::StatsClear, Role::Checker) => Some("keepalived_check.stats"),
            (Self::Json, Role::Vrrp) => Some("keepalived.json"),
            (Self::Json, Role::Checker) => None,
            // The BFD child writes no dump yet (keepalived writes keepalived_bfd.data).
            (_, Role::Bfd) => None,
        }
    }

    /// What it is, for the log.
    pub fn what(self) -> &'static str {
        match self {
            Self::Data => "data dump",
            Self::Stats | Self::StatsClear => "statistics",
            Self::Json => "JSON dump",
        }
    }
}

/// What the dumps are made of: a VRRP child has no data plane, a checker child no VRRP.
#[derive(Debug)]
pub struct Source<'a> {
    /// The running configuration.
    pub config: &'a Config,
    /// The data plane, in the checker child.
    pub dataplane: Option<&'a AnyDataplane>,
    /// The VRRP instances, in the VRRP child.
    pub vrrp: Vec<InstanceStatus>,
}

/// The directory of the dump files: `$TMPDIR` if absolute, else `/tmp`.
pub fn directory() -> PathBuf {
    std::env::var_os("TMPDIR").map(PathBuf::from).filter(|p| p.is_absolute()).unwrap_or_else(|| "/tmp".into())
}

/// Writes the dump `kind` as the child in `role` does and returns its path; `None` if that
/// child writes none of that kind.
pub fn write(kind: Kind, role: Role, source: &Source<'_>) -> Option<std::io::Result<PathBuf>> {
    let name = kind.file_name(role)?;
    Some(write_file(name, &render(kind, source)))
}

/// Writes `text` to the dump file `name` (mode 0600) and returns its path.
pub fn write_file(name: &str, text: &str) -> std::io::Result<PathBuf> {
    let dir = directory();
    let path = dir.join(name);
    // Written whole under a temporary name and renamed over the old dump, so a reader
    // polling for the file never sees it half written (keepalived writes in place).
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .and_then(|()| std::fs::rename(&temporary, &path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(e);
    }
    Ok(path)
}

/// The dump's text.
pub fn render(kind: Kind, source: &Source<'_>) -> String {
    let services = source.dataplane.map(|d| d.service_stats());
    match kind {
        Kind::Data => {
            let mut out = crate::config::dump::dump(source.config);
            if source.dataplane.is_none() {
                out.push_str("------< VRRP state >------\n");
            }
            for i in &source.vrrp {
                let _ = writeln!(
                    out,
                    " VRRP Instance = {}, state = {}, priority = {} (effective {}), transitions = {}",
                    i.name, i.state, i.base_priority, i.effective_priority, i.transitions
                );
            }
            match &services {
                None => {}
                Some(Err(e)) => {
                    out.push_str("------< Data plane >------\n");
                    let _ = writeln!(out, " unreadable: {e}");
                }
                Some(Ok(services)) => {
                    out.push_str("------< Data plane >------\n");
                    for s in services {
                        let _ = writeln!(out, " Virtual service = {}", s.service);
                        for r in &s.reals {
                            let _ = writeln!(
                                out,
                                "   {} = {}, weight = {}, active connections = {}",
                                if r.sorry { "Sorry server" } else { "Real server" },
                                std::net::SocketAddr::new(r.addr, r.port),
                                r.weight,
                                r.counters.active_conns
                            );
                        }
                    }
                }
            }
            out
        }
        Kind::Stats | Kind::StatsClear => {
            let mut out = String::new();
            for i in &source.vrrp {
                vrrp_stats_block(&mut out, i);
            }
            if let Some(Ok(services)) = &services {
                for s in services {
                    stats_block(&mut out, s);
                }
            }
            out
        }
        Kind::Json => {
            let instances: Vec<_> = source.vrrp.iter().map(vrrp_json).collect();
            let mut text = serde_json::Value::Array(instances).to_string();
            text.push('\n');
            text
        }
    }
}

/// keepalived's `keepalived.stats` block of one instance.
fn vrrp_stats_block(out: &mut String, i: &InstanceStatus) {
    let s = &i.stats;
    let _ = write!(
        out,
        "VRRP Instance: {}\n  Advertisements:\n    Received: {}\n    Sent: {}\n  Became master: {}\n  \
         Released master: {}\n  Packet Errors:\n    Discarded: {}\n  Priority Zero:\n    Received: {}\n    \
         Sent: {}\n",
        i.name,
        s.advert_rcvd,
        s.advert_sent,
        s.become_master,
        s.release_master,
        s.discarded,
        s.pri_zero_rcvd,
        s.pri_zero_sent
    );
}

/// One instance of keepalived's JSON dump (its field names; `state` numbered as keepalived's).
fn vrrp_json(i: &InstanceStatus) -> serde_json::Value {
    let state = match i.state {
        "BACKUP" => 1,
        "MASTER" => 2,
        "FAULT" => 3,
        _ => 0,
    };
    serde_json::json!({
        "data": {
            "iname": i.name,
            "ifp_ifname": i.interface,
            "vrid": i.vrid,
            "version": i.version,
            "base_priority": i.base_priority,
            "effective_priority": i.effective_priority,
            "state": state,
            "last_transition": i.last_transition,
        },
        "stats": {
            "advert_rcvd": i.stats.advert_rcvd,
            "advert_sent": i.stats.advert_sent,
            "become_master": i.stats.become_master,
            "release_master": i.stats.release_master,
            "pri_zero_rcvd": i.stats.pri_zero_rcvd,
            "pri_zero_sent": i.stats.pri_zero_sent,
        },
    })
}

fn stats_block(out: &mut String, s: &ServiceCounters) {
    let _ = writeln!(out, "Virtual Server: {}", s.service);
    let _ = writeln!(out, "  Packets: {}", s.counters.packets);
    let _ = writeln!(out, "  Bytes: {}", s.counters.bytes);
    let _ = writeln!(out, "  Connections: {}", s.counters.new_conns);
    let _ = writeln!(out, "  Active connections: {}", s.counters.active_conns);
    let _ = writeln!(out, "  Dropped, no real server: {}", s.no_real);
    for r in &s.reals {
        let _ = writeln!(
            out,
            "  Real Server: {}{}",
            std::net::SocketAddr::new(r.addr, r.port),
            if r.sorry { " (sorry)" } else { "" }
        );
        let _ = writeln!(out, "    Weight: {}", r.weight);
        let _ = writeln!(out, "    Packets: {}", r.counters.packets);
        let _ = writeln!(out, "    Bytes: {}", r.counters.bytes);
        let _ = writeln!(out, "    Connections: {}", r.counters.new_conns);
        let _ = writeln!(out, "    Active connections: {}", r.counters.active_conns);
    }
}
