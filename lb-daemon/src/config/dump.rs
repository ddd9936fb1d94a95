//! `lbd -d`: the configuration printed the way `keepalived -d` prints it, one `Name = value`
//! per line under `------< Section >------` headings, every section and every value.
//!
//! Values come from the model through serde, so a field added to the model is dumped without
//! touching this file; the labels keepalived uses for the common fields are kept in [`label`].

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use super::model::{Config, VsAddress};

/// keepalived's label for a model field, or the field name itself.
fn label(field: &str) -> &str {
    match field {
        "router_id" => "Router ID",
        "notification_email_from" => "Email notification from",
        "notification_email" => "Email notification",
        "smtp_server" => "Smtp server",
        "smtp_helo_name" => "Smtp HELO name",
        "smtp_connect_timeout" => "Smtp server connection timeout",
        "net_namespace" => "Network namespace",
        "net_namespace_ipvs" => "Network namespace ipvs",
        "default_interface" => "Default interface",
        "lvs_flush" => "LVS flush",
        "vrrp_mcast_group4" => "VRRP IPv4 mcast group",
        "vrrp_mcast_group6" => "VRRP IPv6 mcast group",
        "vrrp_garp_master_delay" | "garp_master_delay" => "Gratuitous ARP delay",
        "vrrp_garp_master_repeat" | "garp_master_repeat" => "Gratuitous ARP repeat",
        "vrrp_garp_master_refresh" | "garp_master_refresh" => "Gratuitous ARP refresh timer",
        "vrrp_garp_master_refresh_repeat" | "garp_master_refresh_repeat" => "Gratuitous ARP refresh repeat",
        "vrrp_garp_lower_prio_delay" | "garp_lower_prio_delay" => "Gratuitous ARP lower priority delay",
        "vrrp_garp_lower_prio_repeat" | "garp_lower_prio_repeat" => "Gratuitous ARP lower priority repeat",
        "vrrp_down_timer_adverts" | "down_timer_adverts" => "Num adverts before down",
        "vrrp_garp_interval" => "Gratuitous ARP interval",
        "vrrp_gna_interval" => "Gratuitous NA interval",
        "vrrp_version" => "VRRP default protocol version",
        "vrrp_check_unicast_src" => "VRRP check unicast_src",
        "vrrp_skip_check_adv_addr" => "VRRP skip check advert addresses",
        "vrrp_strict" => "VRRP strict mode",
        "max_auto_priority" => "Max auto priority",
        "enable_script_security" => "Script security",
        "script_user" => "Default script user",
        "version" => "VRRP Version",
        "state" => "Wantstate",
        "interface" => "Interface",
        "virtual_router_id" => "Virtual Router ID",
        "priority" => "Priority",
        "advert_int" => "Advert interval",
        "accept" => "Accept",
        "preempt" => "Preempt",
        "preempt_delay" => "Preempt delay",
        "promote_secondaries" => "Promote_secondaries",
        "authentication" => "Authentication",
        "auth_type" => "Authentication type",
        "auth_pass" => "Password",
        "virtual_ipaddress" => "Virtual IP",
        "virtual_ipaddress_excluded" => "Virtual IP Excluded",
        "virtual_routes" => "Virtual Routes",
        "virtual_rules" => "Virtual Rules",
        "unicast_peer" => "Unicast Peer",
        "track_interface" => "Tracked interfaces",
        "track_script" => "Tracked scripts",
        "notify_master" => "Master state transition script",
        "notify_backup" => "Backup state transition script",
        "notify_fault" => "Fault state transition script",
        "notify_stop" => "Stop state transition script",
        "notify" => "Generic state transition script",
        "smtp_alert" => "Using smtp notification",
        "lvs_sched" => "lb_algo",
        "lvs_method" => "lb_kind",
        "protocol" => "protocol",
        "delay_loop" => "delay_loop",
        "persistence_timeout" => "persistence timeout",
        "persistence_granularity" => "persistence granularity",
        "virtualhost" => "VirtualHost",
        "sorry_server" => "sorry server",
        "quorum" => "Quorum",
        "hysteresis" => "Hysteresis",
        "quorum_up" => "Quorum up script",
        "quorum_down" => "Quorum down script",
        "weight" => "Weight",
        "connect_timeout" => "Connection timeout",
        "retry" => "Retry count",
        "delay_before_retry" => "Retry delay",
        "misc_path" => "Check script",
        "misc_timeout" => "Script timeout",
        "laddr_group_name" => "Local address group",
        "syn_proxy" => "SYN proxy",
        _ => field,
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => {
            Some(a.iter().filter_map(scalar).collect::<Vec<_>>().join(" "))
        }
        _ => None,
    }
}

/// Writes every field of `value` at `indent`.
fn fields(out: &mut String, value: &Value, indent: usize, skip: &[&str]) {
    let Value::Object(map) = value else {
        if let Some(s) = scalar(value) {
            let _ = writeln!(out, "{:indent$}{s}", "");
        }
        return;
    };
    for (k, v) in map {
        if skip.contains(&k.as_str()) {
            continue;
        }
        match v {
            Value::Null => {}
            Value::Array(a) if a.is_empty() => {}
            Value::Array(a) if a.iter().any(|x| x.is_object() || x.is_array()) => {
                let _ = writeln!(out, "{:indent$}{} ({}):", "", label(k), a.len());
                for item in a {
                    match item {
                        Value::Object(_) => {
                            let _ = writeln!(out, "{:w$}-", "", w = indent + 2);
                            fields(out, item, indent + 4, &[]);
                        }
                        _ => {
                            if let Some(s) = scalar(item) {
                                let _ = writeln!(out, "{:w$}{s}", "", w = indent + 2);
                            }
                        }
                    }
                }
            }
            Value::Object(_) => {
                let _ = writeln!(out, "{:indent$}{}:", "", label(k));
                fields(out, v, indent + 2, &[]);
            }
            _ => {
                if let Some(s) = scalar(v) {
                    let _ = writeln!(out, "{:indent$}{} = {s}", "", label(k));
                }
            }
        }
    }
}

fn json<T: Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

fn section(out: &mut String, name: &str) {
    let _ = writeln!(out, "------< {name} >------");
}

/// The `Global definitions` section of the dump of `cfg` (which keepalived's BFD process
/// writes before its sessions).
pub fn global_definitions(cfg: &Config) -> String {
    let mut out = String::new();
    section(&mut out, "Global definitions");
    fields(&mut out, &json(&cfg.global_defs), 1, &[]);
    out
}

/// The keepalived-style dump of `cfg`.
pub fn dump(cfg: &Config) -> String {
    let mut out = global_definitions(cfg);
    if let Some(ssl) = &cfg.ssl {
        section(&mut out, "SSL definitions");
        if ssl == &Default::default() {
            out.push_str(" Using autogen SSL context\n");
        } else {
            fields(&mut out, &json(ssl), 1, &[]);
        }
    }
    let lists: [(&str, Value); 5] = [
        ("Linkbeat interfaces", json(&cfg.linkbeat_interfaces)),
        ("Interface up/down delays", json(&cfg.interface_up_down_delays)),
        ("Track groups", json(&cfg.track_groups)),
        ("Static addresses", json(&cfg.static_ipaddress)),
        ("Static routes", json(&cfg.static_routes)),
    ];
    for (name, v) in lists.iter().chain([("Static rules", json(&cfg.static_rules))].iter()) {
        if v.as_array().is_some_and(|a| !a.is_empty()) {
            section(&mut out, name);
            if let Value::Array(items) = v {
                for item in items {
                    fields(&mut out, item, 1, &[]);
                }
            }
        }
    }
    if !cfg.bfd_instances.is_empty() {
        section(&mut out, "BFD Topology");
        for b in &cfg.bfd_instances {
            let _ = writeln!(out, " BFD Instance = {}", b.name);
            fields(&mut out, &json(b), 3, &["name"]);
        }
    }
    if !cfg.vrrp_scripts.is_empty() || !cfg.track_files.is_empty() || !cfg.track_processes.is_empty() {
        section(&mut out, "VRRP Scripts");
        for s in &cfg.vrrp_scripts {
            let _ = writeln!(out, " VRRP Script = {}", s.name);
            fields(&mut out, &json(s), 3, &["name"]);
        }
        for t in &cfg.track_files {
            let _ = writeln!(out, " Track file = {}", t.name);
            fields(&mut out, &json(t), 3, &["name"]);
        }
        for t in &cfg.track_processes {
            let _ = writeln!(out, " Track process = {}", t.name);
            fields(&mut out, &json(t), 3, &["name"]);
        }
    }
    if !cfg.garp_groups.is_empty() {
        section(&mut out, "Gratuitous ARP groups");
        for g in &cfg.garp_groups {
            fields(&mut out, &json(g), 1, &[]);
        }
    }
    if !cfg.vrrp_instances.is_empty() {
        section(&mut out, "VRRP Topology");
        for v in &cfg.vrrp_instances {
            let _ = writeln!(out, " VRRP Instance = {}", v.name);
            fields(&mut out, &json(v), 3, &["name"]);
        }
    }
    if !cfg.vrrp_sync_groups.is_empty() {
        section(&mut out, "VRRP Sync groups");
        for g in &cfg.vrrp_sync_groups {
            let _ = writeln!(out, " VRRP Sync Group = {}", g.name);
            fields(&mut out, &json(g), 3, &["name"]);
        }
    }
    if !cfg.virtual_server_groups.is_empty()
        || !cfg.local_address_groups.is_empty()
        || !cfg.virtual_servers.is_empty()
    {
        section(&mut out, "LVS Topology");
        for g in &cfg.virtual_server_groups {
            let _ = writeln!(out, " Virtual Server Group = {}", g.name);
            for e in &g.entries {
                match e {
                    super::model::VsgEntry::Address { range, port } => {
                        let _ = writeln!(out, "   VIP range = {range}, VPORT = {}", port.unwrap_or(0));
                    }
                    super::model::VsgEntry::Fwmark { mark, family } => {
                        let fam =
                            family.map_or(String::new(), |f| format!(" {}", json(&f).as_str().unwrap_or("")));
                        let _ = writeln!(out, "   FWMARK = {mark}{fam}");
                    }
                }
            }
        }
        for g in &cfg.local_address_groups {
            let _ = writeln!(out, " Local Address Group = {}", g.name);
            for a in &g.addresses {
                let _ = writeln!(out, "   LIP range = {a}");
            }
        }
        for vs in &cfg.virtual_servers {
            match &vs.address {
                VsAddress::Ip { address, port } => {
                    let _ = writeln!(out, " VIP = {address}, VPORT = {}", port.unwrap_or(0));
                }
                VsAddress::Fwmark { mark } => {
                    let _ = writeln!(out, " FWMARK = {mark}");
                }
                VsAddress::Group { name } => {
                    let _ = writeln!(out, " VS GROUP = {name}");
                }
            }
            fields(&mut out, &json(vs), 3, &["address", "real_servers"]);
            for rs in &vs.real_servers {
                let _ = writeln!(
                    out,
                    "   RIP = {}, RPORT = {}, WEIGHT = {}",
                    rs.address,
                    rs.port.unwrap_or(0),
                    rs.effective_weight(vs)
                );
                fields(&mut out, &json(rs), 5, &["address", "port", "weight", "checkers"]);
                for c in &rs.checkers {
                    let _ = writeln!(out, "     Keepalive method = {}", c.keyword());
                    fields(&mut out, &json(c), 7, &["type"]);
                }
            }
        }
    }
    if !cfg.unsupported.is_empty() {
        section(&mut out, "Not supported yet");
        for u in &cfg.unsupported {
            let _ = writeln!(out, " {} {} ({})", u.path, u.args.join(" "), u.at);
        }
    }
    out
}
