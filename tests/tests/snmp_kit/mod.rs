//! What the SNMP system tests share: an snmpd master agent and an snmptrapd in a namespace
//! (AgentX on a Unix socket in the lab's directory, SNMP on the namespace's loopback),
//! snmpwalk as operators run it, and the notifications received.
//!
//! snmpd, snmpwalk and snmptrapd come from Debian's `snmpd`, `snmp` and `snmptrapd` packages
//! (`cargo xtask setup`): without them the tests fail, saying so.
#![allow(dead_code, reason = "each test file uses part of the kit")]
#![expect(clippy::unwrap_used, reason = "tests: a failed step is a failed test")]

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use lb_tests::{
    lab::{Lab, Netns, wait_until},
    process::Proc,
};

/// KEEPALIVED-MIB's global scalars.
pub const KEEPALIVED_GLOBAL: &str = ".1.3.6.1.4.1.9586.100.5.1";

/// Panics, saying what to install, unless net-snmp's programs are there.
fn require_net_snmp() {
    for (program, package) in
        [("/usr/sbin/snmpd", "snmpd"), ("/usr/bin/snmpwalk", "snmp"), ("/usr/sbin/snmptrapd", "snmptrapd")]
    {
        assert!(
            Path::new(program).exists(),
            "{program} is missing: install Debian's {package} package (`cargo xtask setup` does)"
        );
    }
}

/// An snmpd master agent (AgentX on a Unix socket in the lab's directory, SNMP on the
/// namespace's loopback) and an snmptrapd it sends its notifications to.
pub struct Snmp {
    ns: Netns,
    dir: PathBuf,
    snmpd_conf: PathBuf,
    socket: PathBuf,
    traps: PathBuf,
    snmpd: Proc,
    _trapd: Proc,
}

/// snmpd in the foreground, its persistent files in `dir`, no MIB files read.
fn spawn_snmpd(ns: &Netns, dir: &Path, conf: &Path) -> Proc {
    let persistent = format!("SNMP_PERSISTENT_DIR={}", dir.display());
    let conf = conf.display().to_string();
    ns.spawn("snmpd", "env", &[&persistent, "snmpd", "-f", "-m", "", "-Lo", "-C", "-c", &conf])
}

impl Snmp {
    pub fn start(lab: &Lab, ns: &Netns, label: &str) -> Self {
        require_net_snmp();
        let dir = lab.dir().join(format!("{label}-snmp"));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("agentx");
        let traps = dir.join("traps.log");
        let snmpd_conf = lab.write_file(
            &format!("{label}-snmpd.conf"),
            &format!(
                "master agentx\nagentXSocket unix:{}\nagentaddress udp:127.0.0.1:1161\n\
                 rocommunity public 127.0.0.1\ntrap2sink 127.0.0.1:1162 public\n",
                socket.display()
            ),
        );
        let trapd_conf = lab.write_file(&format!("{label}-snmptrapd.conf"), "disableAuthorization yes\n");
        let persistent = format!("SNMP_PERSISTENT_DIR={}", dir.display());
        let (traps_s, trapd_conf_s) = (traps.display().to_string(), trapd_conf.display().to_string());
        // -On: numeric OIDs in the trap log; -m "": no MIB files read.
        let trapd = ns.spawn(
            "snmptrapd",
            "env",
            &[
                &persistent,
                "snmptrapd",
                "-f",
                "-m",
                "",
                "-On",
                "-Lf",
                &traps_s,
                "-C",
                "-c",
                &trapd_conf_s,
                "udp:127.0.0.1:1162",
            ],
        );
        let snmpd = spawn_snmpd(ns, &dir, &snmpd_conf);
        wait_until(Duration::from_secs(10), "snmpd's AgentX socket", || socket.exists());
        wait_until(Duration::from_secs(10), "snmptrapd to start", || {
            std::fs::read_to_string(&traps).is_ok_and(|t| t.contains("NET-SNMP version"))
        });
        Self { ns: ns.clone(), dir, snmpd_conf, socket, traps, snmpd, _trapd: trapd }
    }

    /// Kills snmpd and starts it again (its AgentX sessions are gone).
    pub fn restart_snmpd(&mut self) {
        self.snmpd.kill();
        self.snmpd = spawn_snmpd(&self.ns, &self.dir, &self.snmpd_conf);
    }

    /// `snmp_socket` for it.
    pub fn global(&self) -> String {
        format!("  snmp_socket unix:{}\n", self.socket.display())
    }

    /// `snmpwalk -On` of `subtree`: its lines.
    pub fn walk(&self, subtree: &str) -> Vec<String> {
        self.try_walk(subtree).unwrap_or_else(|e| panic!("snmpwalk {subtree}: {e}"))
    }

    /// As [`Snmp::walk`], or snmpwalk's error (snmpd not answering).
    pub fn try_walk(&self, subtree: &str) -> Result<Vec<String>, String> {
        let out = self.ns.exec(
            "snmpwalk",
            &["-m", "", "-On", "-v2c", "-c", "public", "-t", "1", "-r", "0", "127.0.0.1:1161", subtree],
        );
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim_end().to_string()).collect())
    }

    /// The value of `oid` in a walk of `subtree`, if it is there.
    pub fn value(&self, subtree: &str, oid: &str) -> Option<String> {
        let prefix = format!("{oid} = ");
        self.walk(subtree).into_iter().find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
    }

    /// Waits until `oid` reads `value`.
    pub fn wait_value(&self, subtree: &str, oid: &str, value: &str, timeout: Duration) {
        // snmpd may be restarting: a walk that fails is tried again.
        let line = format!("{oid} = {value}");
        wait_until(timeout, &line, || self.try_walk(subtree).is_ok_and(|lines| lines.contains(&line)));
    }

    /// The notifications received, one line each.
    pub fn traps(&self) -> Vec<String> {
        std::fs::read_to_string(&self.traps).unwrap_or_default().lines().map(str::to_string).collect()
    }
}

/// The notifications in snmptrapd's log, each as its varbinds after `sysUpTime.0`.
pub fn notifications(log: &[String]) -> Vec<String> {
    log.iter()
        .filter_map(|l| l.strip_prefix(".1.3.6.1.2.1.1.3.0 = "))
        .filter_map(|l| l.split_once('\t').map(|(_, rest)| rest.trim_end().to_string()))
        // snmpd's own coldStart.
        .filter(|l| !l.contains(".1.3.6.1.6.3.1.1.5.1"))
        .collect()
}

/// The lines of a walk with what differs between two daemons' runs blanked: up times and
/// counters, and keepalived's version string.
pub fn comparable(lines: Vec<String>) -> Vec<String> {
    lines
        .into_iter()
        .map(|l| match l.split_once(" = ") {
            Some((oid, v)) if v.starts_with("Timeticks") || v.starts_with("Counter") => {
                format!("{oid} = (varies)")
            }
            Some((oid, _)) if oid == format!("{KEEPALIVED_GLOBAL}.1.0") => format!("{oid} = (version)"),
            _ => l,
        })
        .collect()
}
