//! keepalived's dump files, written on signals by the process each concerns, in `$TMPDIR` when
//! it is an absolute path, else `/tmp`, with mode 0600:
//!
//! | signal | VRRP child | checker child | BFD child | parent |
//! | --- | --- | --- | --- | --- |
//! | SIGUSR1 | `keepalived.data` | `keepalived_check.data` | `keepalived_bfd.data` | `keepalived_parent.data` |
//! | SIGUSR2, SIGRTMAX-1 | `keepalived.stats` | `keepalived_check.stats` | | |
//! | SIGRTMIN+2 | `keepalived.json` | | | |
//!
//! The data dumps start, as keepalived's do, with the `-d` dump of the configuration; the VRRP
//! child's goes on with its instances' state, the checker child's with the data plane as it runs
//! (virtual services, real servers, weights, connections). `keepalived.stats` holds keepalived's
//! per-instance VRRP counters (lbd counts dropped adverts as one "Discarded" figure rather than
//! keepalived's categories); `keepalived_check.stats`, lbd's own, the counters of every virtual
//! and real server. `keepalived.json` is keepalived's array of `{"data": ..., "stats": ...}`
//! objects, one per VRRP instance.
//!
//! `keepalived_bfd.data` is laid out as keepalived 2.2.7's: the global definitions, then under
//! `BFD Topology` each session's configuration and variables (states, discriminators,
//! diagnostics, intervals and detection times in µs, `last seen`), with the lines that show
//! keepalived's internals (descriptors, thread pointers) left out and one line of lbd's added:
//! `last state change`.

use std::{fmt::Write as _, io::Write as _, os::unix::fs::OpenOptionsExt as _, path::PathBuf};

use super::Role;
use crate::{
    bfd::SessionStatus,
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
            (Self::Data, Role::Bfd) => Some("keepalived_bfd.data"),
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
    /// The BFD sessions, in the BFD child.
    pub bfd: Option<Vec<SessionStatus>>,
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
        Kind::Data if source.bfd.is_some() => {
            bfd_data(source.config, source.bfd.as_deref().unwrap_or_default())
        }
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

/// `keepalived_bfd.data`: the global definitions and every session, as keepalived 2.2.7.
fn bfd_data(config: &Config, sessions: &[SessionStatus]) -> String {
    let mut out = crate::config::dump::global_definitions(config);
    if sessions.is_empty() {
        return out;
    }
    out.push_str("------< BFD Topology >------\n");
    let yes = |b: bool| if b { "Yes" } else { "No" };
    for s in sessions {
        let _ = writeln!(out, " BFD Instance = {}", s.name);
        let _ = writeln!(out, "   Neighbor IP = {}", s.neighbor);
        if let Some(source) = &s.source {
            let _ = writeln!(out, "   Source IP = {source}");
        }
        let v6 = s.neighbor.contains(':');
        let _ = write!(
            out,
            "   Required min RX interval = {} us\n   Desired min TX interval = {} us\n   \
             Desired idle TX interval = {} us\n   Detection multiplier = {}\n   {} = {}\n   \
             max_hops = {}\n   passive = {}\n   send event to VRRP process = {}\n   \
             send event to checker process = {}\n",
            s.min_rx_us,
            s.min_tx_us,
            s.idle_tx_us,
            s.multiplier,
            if v6 { "hoplimit" } else { "TTL" },
            s.ttl,
            s.max_hops,
            s.passive,
            yes(s.vrrp),
            yes(s.checker),
        );
        let _ = write!(
            out,
            "   local state = {}\n   remote state = {}\n   local discriminator = {:#x}\n   \
             remote discriminator = {:#x}\n   local diag = {}\n   remote diag = {}\n   \
             remote min tx intv = {} us\n   remote min rx intv = {} us\n   local demand = 0\n   \
             remote demand = 0\n   remote detect multiplier = {}\n   {}poll, {}final\n   \
             local tx intv = {} us\n   remote tx intv = {} us\n   local detection time = {} us\n   \
             remote detection time = {} us\n",
            s.state,
            s.remote_state,
            s.local_discriminator,
            s.remote_discriminator,
            s.local_diag,
            s.remote_diag,
            s.remote_min_tx_us,
            s.remote_min_rx_us,
            s.remote_multiplier,
            if s.poll { "" } else { "!" },
            if s.fin { "" } else { "!" },
            s.tx_interval_us,
            s.remote_tx_interval_us,
            s.detection_time_us,
            s.remote_detection_time_us,
        );
        match s.last_seen {
            Some(t) => {
                let _ = writeln!(out, "   last seen = {}", timestamp(t));
            }
            None => out.push_str("   last seen = [never]\n"),
        }
        let _ = writeln!(out, "   last state change = {}", timestamp(s.last_state_change));
    }
    out
}

/// keepalived's time stamp: `1796071481.116114 (Mon Nov 30 20:44:41 2026.116114)` (local
/// time, as ctime).
fn timestamp(seconds: f64) -> String {
    let whole = seconds.trunc() as i64;
    let micros = ((seconds - seconds.trunc()) * 1e6).round().min(999_999.0) as u32;
    let tm = nix::libc::time_t::try_from(whole).ok().and_then(|t| {
        let mut tm = std::mem::MaybeUninit::<nix::libc::tm>::uninit();
        // SAFETY: localtime_r only writes `tm` and returns it, or NULL on failure.
        let ok = unsafe { !nix::libc::localtime_r(&t, tm.as_mut_ptr()).is_null() };
        // SAFETY: filled by localtime_r when it succeeded.
        ok.then(|| unsafe { tm.assume_init() })
    });
    let Some(tm) = tm else { return format!("{whole}.{micros:06}") };
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{whole}.{micros:06} ({} {} {:2} {:02}:{:02}:{:02} {}.{micros:06})",
        DAYS[tm.tm_wday.rem_euclid(7) as usize],
        MONTHS[tm.tm_mon.rem_euclid(12) as usize],
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        tm.tm_year + 1900
    )
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

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn the_bfd_dump_is_laid_out_as_keepalived_s() {
        let session = SessionStatus {
            name: "to_b".into(),
            neighbor: "10.99.0.2".into(),
            source: Some("10.99.0.1".into()),
            min_rx_us: 50_000,
            min_tx_us: 50_000,
            idle_tx_us: 1_000_000,
            multiplier: 5,
            ttl: 255,
            max_hops: 0,
            passive: false,
            vrrp: true,
            checker: true,
            state: "Up".into(),
            remote_state: "Up".into(),
            local_discriminator: 0x5985fc85,
            remote_discriminator: 0xc9d3506a,
            local_diag: "No Diagnostic".into(),
            remote_diag: "No Diagnostic".into(),
            remote_min_tx_us: 200_000,
            remote_min_rx_us: 100_000,
            remote_multiplier: 3,
            poll: false,
            fin: false,
            tx_interval_us: 100_000,
            remote_tx_interval_us: 200_000,
            detection_time_us: 600_000,
            remote_detection_time_us: 500_000,
            last_seen: Some(1796071481.116114),
            last_state_change: 1796071478.0,
        };
        let config = Config::default();
        let source = Source { config: &config, dataplane: None, vrrp: Vec::new(), bfd: Some(vec![session]) };
        let text = render(Kind::Data, &source);
        assert!(text.starts_with("------< Global definitions >------\n"), "{text}");
        let topology = &text[text.find("------< BFD Topology >------").unwrap()..];
        // keepalived 2.2.7's lines, less its descriptors and thread pointers.
        let expected = "------< BFD Topology >------
 BFD Instance = to_b
   Neighbor IP = 10.99.0.2
   Source IP = 10.99.0.1
   Required min RX interval = 50000 us
   Desired min TX interval = 50000 us
   Desired idle TX interval = 1000000 us
   Detection multiplier = 5
   TTL = 255
   max_hops = 0
   passive = false
   send event to VRRP process = Yes
   send event to checker process = Yes
   local state = Up
   remote state = Up
   local discriminator = 0x5985fc85
   remote discriminator = 0xc9d3506a
   local diag = No Diagnostic
   remote diag = No Diagnostic
   remote min tx intv = 200000 us
   remote min rx intv = 100000 us
   local demand = 0
   remote demand = 0
   remote detect multiplier = 3
   !poll, !final
   local tx intv = 100000 us
   remote tx intv = 200000 us
   local detection time = 600000 us
   remote detection time = 500000 us
";
        assert!(topology.starts_with(expected), "{topology}");
        let rest: Vec<&str> = topology[expected.len()..].lines().collect();
        assert_eq!(rest.len(), 2, "{topology}");
        assert!(rest[0].starts_with("   last seen = 1796071481.116114 ("), "{}", rest[0]);
        assert!(rest[0].ends_with(" 2026.116114)"), "{}", rest[0]);
        assert!(rest[1].starts_with("   last state change = 1796071478.000000 ("), "{}", rest[1]);
        assert_eq!(Kind::Data.file_name(Role::Bfd), Some("keepalived_bfd.data"));
        assert_eq!(Kind::Stats.file_name(Role::Bfd), None);
    }
}
