//! Checks of the configuration against this machine, made by `--config-test` and at start-up:
//! interfaces that do not exist, and scripts that would run as root without
//! `enable_script_security` (keepalived's `SECURITY VIOLATION`, exit status 6).
//!
//! These depend on the host, not the file, so they are kept apart from [`super::validate`]: the
//! same file gets the same parse everywhere, and tests of the parser do not depend on the
//! machine they run on.

use std::path::Path;

use super::{
    error::{Diagnostic, ExitClass, Severity},
    model::{Config, Script},
};

/// Answers the questions the host checks ask; tests pass a fake.
pub trait Host {
    /// Does network interface `name` exist?
    fn interface_exists(&self, name: &str) -> bool;
    /// Does an executable file exist at `path`?
    fn file_exists(&self, path: &str) -> bool;
    /// Does the user `name` exist?
    fn user_exists(&self, name: &str) -> bool;
}

/// The real machine.
#[derive(Debug, Default, Clone, Copy)]
pub struct ThisHost;

impl Host for ThisHost {
    fn interface_exists(&self, name: &str) -> bool {
        nix::net::if_::if_nametoindex(name).is_ok()
    }

    fn file_exists(&self, path: &str) -> bool {
        Path::new(path).is_file()
    }

    fn user_exists(&self, name: &str) -> bool {
        std::fs::read_to_string("/etc/passwd")
            .map(|p| p.lines().any(|l| l.split(':').next() == Some(name)))
            .unwrap_or(false)
    }
}

fn diag(severity: Severity, class: ExitClass, message: String) -> Diagnostic {
    Diagnostic { severity, file: String::new(), line: 0, column: 0, message, class }
}

/// Checks `cfg` against `host`.
pub fn check(cfg: &Config, host: &dyn Host) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let g = &cfg.global_defs;
    if !g.dynamic_interfaces {
        let mut missing = false;
        let mut need = |name: &str, what: String, out: &mut Vec<Diagnostic>| {
            if !host.interface_exists(name) {
                missing = true;
                out.push(diag(
                    Severity::Warning,
                    ExitClass::Config,
                    format!("WARNING - interface {name} for {what} doesn't exist"),
                ));
            }
        };
        for v in &cfg.vrrp_instances {
            if let Some(i) = &v.interface {
                need(i, format!("vrrp_instance {}", v.name), &mut out);
            }
            for t in &v.track_interface {
                need(&t.name, format!("track_interface of vrrp_instance {}", v.name), &mut out);
            }
            for a in v.virtual_ipaddress.iter().chain(&v.virtual_ipaddress_excluded) {
                if let Some(dev) = &a.dev {
                    need(dev, format!("ip address {}", a.address.addr), &mut out);
                }
            }
            for r in &v.virtual_routes {
                if let Some(dev) = &r.dev {
                    need(dev, "VROUTE nexthop".to_string(), &mut out);
                }
            }
        }
        for a in &cfg.static_ipaddress {
            if let Some(dev) = &a.dev {
                need(dev, format!("ip address {}", a.address.addr), &mut out);
            }
        }
        for r in &cfg.static_routes {
            if let Some(dev) = &r.dev {
                need(dev, "VROUTE nexthop".to_string(), &mut out);
            }
        }
        if missing {
            out.push(diag(
                Severity::Warning,
                ExitClass::Config,
                "Non-existent interface specified in configuration".into(),
            ));
        }
    }

    // Scripts that exist here and would run as root with no script security.
    let runs_as_root = |s: &Script| -> bool {
        match s.user.as_deref().or(g.script_user.as_ref().map(|u| u.user.as_str())) {
            Some(u) => u == "root",
            None => !host.user_exists("keepalived_script"),
        }
    };
    if !g.enable_script_security && nix::unistd::geteuid().is_root() {
        let insecure =
            scripts(cfg).any(|s| s.argv.first().is_some_and(|p| host.file_exists(p)) && runs_as_root(s));
        if insecure {
            out.push(diag(
                Severity::Warning,
                ExitClass::ScriptSecurity,
                "SECURITY VIOLATION - scripts are being executed but script_security not enabled.".into(),
            ));
        }
    }
    for s in scripts(cfg) {
        if let Some(p) = s.argv.first()
            && !host.file_exists(p)
        {
            out.push(diag(
                Severity::Notice,
                ExitClass::Config,
                format!("script {p} does not exist on this host"),
            ));
        }
    }
    out
}

/// Every script of the configuration.
pub fn scripts(cfg: &Config) -> impl Iterator<Item = &Script> {
    let g = &cfg.global_defs;
    let globals = [
        &g.startup_script,
        &g.shutdown_script,
        &g.notify_fifo_script,
        &g.vrrp_notify_fifo_script,
        &g.lvs_notify_fifo_script,
    ]
    .into_iter()
    .flatten();
    let vrrp_scripts = cfg.vrrp_scripts.iter().filter_map(|s| s.script.as_ref());
    let instances = cfg.vrrp_instances.iter().flat_map(|v| {
        [
            &v.notify_master,
            &v.notify_backup,
            &v.notify_fault,
            &v.notify_stop,
            &v.notify,
            &v.notify_master_rx_lower_pri,
            &v.notify_deleted_script,
        ]
        .into_iter()
        .flatten()
    });
    let groups = cfg.vrrp_sync_groups.iter().flat_map(|v| {
        [&v.notify_master, &v.notify_backup, &v.notify_fault, &v.notify_stop, &v.notify].into_iter().flatten()
    });
    let lvs = cfg.virtual_servers.iter().flat_map(|vs| {
        [&vs.quorum_up, &vs.quorum_down].into_iter().flatten().chain(vs.real_servers.iter().flat_map(|rs| {
            [rs.notify_up.as_deref(), rs.notify_down.as_deref()].into_iter().flatten().chain(
                rs.checkers.iter().filter_map(|c| match c {
                    super::model::Checker::MiscCheck(m) => m.misc_path.as_ref(),
                    _ => None,
                }),
            )
        }))
    });
    globals.chain(vrrp_scripts).chain(instances).chain(groups).chain(lvs)
}
