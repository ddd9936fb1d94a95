//! Checks made once the whole file is read, as keepalived does when it completes each instance
//! and virtual server (vrrp_complete_instance, validate_check_config): cross references,
//! combinations of options, and the defaults keepalived applies with a warning.
//!
//! Only checks that depend on the file are here; those that depend on the machine (interfaces
//! exist, scripts exist and are safe) are in [`super::host`].

use std::collections::{HashMap, HashSet};

use super::{
    error::{Diagnostics, Loc, NOWHERE},
    model::*,
    parser::SourceMap,
};

/// Runs every check, fixing up the model as keepalived would (dropping what it drops, filling in
/// the defaults it fills in).
pub fn validate(cfg: &mut Config, src: &SourceMap, d: &mut Diagnostics) {
    vrrp(cfg, src, d);
    lvs(cfg, src, d);
}

fn at(src: &SourceMap, key: &str) -> Loc {
    src.get(key).unwrap_or(NOWHERE)
}

fn vrrp(cfg: &mut Config, src: &SourceMap, d: &mut Diagnostics) {
    let scripts: HashSet<String> = cfg.vrrp_scripts.iter().map(|s| s.name.clone()).collect();
    let files: HashSet<String> = cfg.track_files.iter().map(|s| s.name.clone()).collect();
    let processes: HashSet<String> = cfg.track_processes.iter().map(|s| s.name.clone()).collect();
    let bfds: HashSet<String> = cfg.bfd_instances.iter().map(|s| s.name.clone()).collect();
    let global = cfg.global_defs.clone();

    let mut seen_names = HashSet::new();
    for v in &mut cfg.vrrp_instances {
        let me = format!("vrrp_instance {}", v.name);
        let here = at(src, &me);
        if !seen_names.insert(v.name.clone()) {
            d.error(here, format!("vrrp_instance {} is defined more than once", v.name));
        }
        let kw = |k: &str| src.get(&format!("{me} {k}")).unwrap_or(here);

        // Tracked objects must exist.
        let checks: [(&mut Vec<TrackRef>, &HashSet<String>, &str); 4] = [
            (&mut v.track_script, &scripts, "track_script"),
            (&mut v.track_file, &files, "track_file"),
            (&mut v.track_process, &processes, "track_process"),
            (&mut v.track_bfd, &bfds, "track_bfd"),
        ];
        for (list, known, what) in checks {
            list.retain(|t| {
                if known.contains(&t.name) {
                    return true;
                }
                let loc = src.get(&format!("{me} {what} {}", t.name)).unwrap_or(here);
                let thing = what.trim_start_matches("track_").replace('_', " ");
                d.warn(loc, format!("({}) track {thing} {} not found, ignoring...", v.name, t.name));
                false
            });
        }

        if v.virtual_router_id.is_none() {
            d.error(here, format!("({}) the virtual router id must be set", v.name));
        }
        // keepalived's vrf handler: a VRF only for an instance without an interface.
        if v.vrf.is_some() && v.interface.is_some() {
            d.warn(kw("vrf"), format!("({}) Cannot specify VRF interface and interface - ignoring", v.name));
            v.vrf = None;
        }
        // keepalived sets up a VMAC when both are given.
        if v.use_ipvlan.is_some() && v.use_vmac.is_some() {
            d.warn(
                kw("use_ipvlan"),
                format!("({}) use_vmac already specified - ignoring use_ipvlan", v.name),
            );
            v.use_ipvlan = None;
        }
        let family = v.family();
        if let Some(ipvlan) = v.use_ipvlan.as_mut()
            && let Some(address) = ipvlan.address
            && address.addr.is_ipv4() != (family == Family::Inet)
        {
            d.error(
                kw("use_ipvlan"),
                format!(
                    "({}) ipvlan address[{}] MUST match vrrp instance family !!! Skipping...",
                    v.name, address.addr
                ),
            );
            ipvlan.address = None;
        }
        if v.interface.is_none() && v.unicast_peer.is_empty() && v.vrf.is_none() {
            d.warn(here, format!("({}) no interface specified - using default_interface", v.name));
        }

        // VIP families must match the instance's (that of the first VIP).
        if let Some(first) = v.virtual_ipaddress.first().map(|a| a.address.addr.is_ipv4()) {
            let name = v.name.clone();
            v.virtual_ipaddress.retain(|a| {
                if a.address.addr.is_ipv4() == first {
                    return true;
                }
                d.error(
                    kw("virtual_ipaddress"),
                    format!(
                        "({name}): address family must match VRRP instance [{}] - ignoring",
                        a.address.addr
                    ),
                );
                false
            });
        } else if v.strict(&global) {
            d.error(here, format!("({}) No VIP specified; at least one is required", v.name));
        } else {
            d.warn(here, format!("({}) No VIP specified; at least one is sensible", v.name));
        }

        let version = v.effective_version(&global);
        if version == VrrpVersion::V2 && v.family() == Family::Inet6 {
            d.error(kw("version"), format!("({}) VRRPv2 does not support IPv6", v.name));
        }
        if version == VrrpVersion::V2 && v.advert_int.subsec_micros() != 0 {
            let secs = v.advert_int.as_secs_f64();
            d.warn(
                kw("advert_int"),
                format!("({}) VRRPv2 advertisement interval {secs:.6}s must be an integer. rounding", v.name),
            );
            v.advert_int = std::time::Duration::from_secs(secs.round().max(1.0) as u64);
        }
        if version == VrrpVersion::V3 && v.authentication.is_some() {
            d.warn(
                kw("authentication"),
                format!("({}) VRRPv3 does not support authentication - ignoring", v.name),
            );
            v.authentication = None;
        }
        if v.state == Some(VrrpState::Master)
            && v.authentication.as_ref().is_some_and(|a| a.auth_type == AuthType::Ah)
        {
            d.warn(
                kw("authentication"),
                format!(
                    "({}) Initial state master is incompatible with AH authentication - clearing",
                    v.name
                ),
            );
            v.state = Some(VrrpState::Backup);
        }
        if !v.preempt && v.priority == 255 {
            d.warn(
                kw("nopreempt"),
                format!("({}) nopreempt is incompatible with priority 255. resetting nopreempt", v.name),
            );
            v.preempt = true;
        }
        if !v.preempt && v.state == Some(VrrpState::Master) {
            d.warn(
                kw("nopreempt"),
                format!(
                    "({}) Warning - nopreempt will not work with initial state MASTER - clearing",
                    v.name
                ),
            );
            v.state = Some(VrrpState::Backup);
        }
        if v.strict(&global) {
            if v.state == Some(VrrpState::Master) && v.priority != 255 {
                d.warn(kw("state"), format!("({}) State MASTER must match being address owner", v.name));
                v.state = Some(VrrpState::Backup);
            }
            if v.authentication.is_some() {
                d.warn(
                    kw("authentication"),
                    format!("({}) Strict mode does not support authentication. Ignoring.", v.name),
                );
                v.authentication = None;
            }
            if !v.unicast_peer.is_empty() {
                d.error(
                    kw("unicast_peer"),
                    format!("({}) Strict mode does not support unicast peers", v.name),
                );
            }
            if v.preempt_delay.is_some() {
                d.warn(
                    kw("preempt_delay"),
                    format!("({}) Strict mode does not support preempt_delay. Ignoring.", v.name),
                );
                v.preempt_delay = None;
            }
            // The rest of keepalived's list (keepalived.conf(5), vrrp_strict).
            if v.lower_prio_no_advert == Some(false) {
                d.warn(
                    kw("lower_prio_no_advert"),
                    format!("({}) Strict mode requires no lower priority advert - resetting", v.name),
                );
            }
            v.lower_prio_no_advert = Some(true);
            if v.higher_prio_send_advert == Some(true) {
                d.warn(
                    kw("higher_prio_send_advert"),
                    format!(
                        "({}) strict mode requires higher_prio_send_advert to be clear - resetting",
                        v.name
                    ),
                );
            }
            v.higher_prio_send_advert = Some(false);
            if v.garp_lower_prio_repeat.is_some_and(|n| n > 0) {
                d.warn(
                    kw("garp_lower_prio_repeat"),
                    format!("({}) Strict mode requires no repeat garps - resetting", v.name),
                );
            }
            v.garp_lower_prio_repeat = Some(0);
            if v.garp_lower_prio_delay.is_some_and(|t| !t.is_zero()) {
                d.warn(
                    kw("garp_lower_prio_delay"),
                    format!("({}) Strict mode requires no repeat garp delay - resetting", v.name),
                );
            }
            v.garp_lower_prio_delay = Some(std::time::Duration::ZERO);
            if v.vmac_xmit_base {
                d.warn(
                    kw("vmac_xmit_base"),
                    format!("({}) xmit_base is incompatible with strict mode - resetting", v.name),
                );
                v.vmac_xmit_base = false;
            }
            if version == VrrpVersion::V2 && v.accept == Some(true) {
                d.warn(kw("accept"), format!("({}) warning - accept mode for VRRP version 2 does not comply with RFC3768 - resetting", v.name));
                v.accept = Some(false);
            }
        }
        if let Some(a) = &v.authentication
            && a.auth_pass.len() > 8
        {
            let mut p = a.auth_pass.clone();
            p.truncate(8);
            if let Some(a) = v.authentication.as_mut() {
                a.auth_pass = p;
            }
        }
    }

    // Same VRID, family and interface (and multicast group) twice.
    let mut vrids: HashMap<(String, u8, bool, Option<std::net::IpAddr>), String> = HashMap::new();
    for v in &cfg.vrrp_instances {
        let (Some(vrid), Some(ifname)) = (v.virtual_router_id, v.interface.clone()) else { continue };
        if !v.unicast_peer.is_empty() {
            continue;
        }
        let key = (ifname.clone(), vrid, v.family() == Family::Inet, v.mcast_dst_ip);
        if let Some(other) = vrids.insert(key, v.name.clone()) {
            let fam = if v.family() == Family::Inet { "IPv4" } else { "IPv6" };
            d.error(
                at(src, &format!("vrrp_instance {}", v.name)),
                format!("{other} and {} both use VRID {vrid} with {fam} on interface {ifname}", v.name),
            );
        }
    }

    // Sync groups.
    let instances: HashSet<String> = cfg.vrrp_instances.iter().map(|v| v.name.clone()).collect();
    let mut member_of: HashMap<String, String> = HashMap::new();
    for g in &mut cfg.vrrp_sync_groups {
        let me = format!("vrrp_sync_group {}", g.name);
        let name = g.name.clone();
        g.group.retain(|m| {
            let loc = src.get(&format!("{me} group {m}")).unwrap_or_else(|| at(src, &me));
            if !instances.contains(m) {
                d.warn(
                    loc,
                    format!("Virtual router {m} specified in sync group {name} doesn't exist - ignoring"),
                );
                return false;
            }
            if let Some(other) = member_of.insert(m.clone(), name.clone()) {
                d.error(
                    loc,
                    format!(
                        "VRRP instance {m} cannot be in sync group {name} - already in sync group {other}"
                    ),
                );
                return false;
            }
            true
        });
        if g.group.len() == 1 {
            d.warn(
                at(src, &me),
                format!(
                    "Sync group {} has only 1 virtual router(s) - this probably isn't what you want",
                    g.name
                ),
            );
        }
        let checks: [(&mut Vec<TrackRef>, &HashSet<String>, &str); 4] = [
            (&mut g.track_script, &scripts, "track_script"),
            (&mut g.track_file, &files, "track_file"),
            (&mut g.track_process, &processes, "track_process"),
            (&mut g.track_bfd, &bfds, "track_bfd"),
        ];
        for (list, known, what) in checks {
            list.retain(|t| {
                if known.contains(&t.name) {
                    return true;
                }
                let loc = src.get(&format!("{me} {what} {}", t.name)).unwrap_or_else(|| at(src, &me));
                let thing = what.trim_start_matches("track_").replace('_', " ");
                d.warn(loc, format!("({name}) track {thing} {} not found, ignoring...", t.name));
                false
            });
        }
    }

    // The deprecated `lvs_sync_daemon_interface IF` of an instance is keepalived 2.2.7's
    // `lvs_sync_daemon IF INSTANCE`, unless that is set already (the first instance wins).
    for v in &cfg.vrrp_instances {
        let Some(interface) = &v.lvs_sync_daemon_interface else { continue };
        match &cfg.global_defs.lvs_sync_daemon {
            Some(sd) => d.warn(
                at(src, &format!("vrrp_instance {}", v.name)),
                format!(
                    "({}) lvs_sync_daemon_interface has already been specified as {} - ignoring",
                    v.name, sd.interface
                ),
            ),
            None => {
                cfg.global_defs.lvs_sync_daemon = Some(LvsSyncDaemon {
                    interface: interface.clone(),
                    instance: Some(v.name.clone()),
                    ..LvsSyncDaemon::default()
                });
            }
        }
    }
    if let Some(sd) = &cfg.global_defs.lvs_sync_daemon
        && let Some(inst) = &sd.instance
        && !instances.contains(inst)
    {
        d.error(NOWHERE, format!("lvs_sync_daemon vrrp instance {inst} not found"));
    }

    let track_groups: HashSet<&str> = cfg.track_groups.iter().map(|g| g.name.as_str()).collect();
    for tg in cfg
        .static_ipaddress
        .iter()
        .filter_map(|a| a.track_group.as_deref())
        .chain(cfg.static_routes.iter().filter_map(|r| r.track_group.as_deref()))
        .chain(cfg.static_rules.iter().filter_map(|r| r.track_group.as_deref()))
    {
        if !track_groups.contains(tg) {
            d.warn(NOWHERE, format!("track_group {tg} not found"));
        }
    }
    for g in &cfg.track_groups {
        for m in &g.group {
            if !instances.contains(m) {
                d.warn(NOWHERE, format!("track_group {}: vrrp instance {m} not found", g.name));
            }
        }
    }
}

fn lvs(cfg: &mut Config, src: &SourceMap, d: &mut Diagnostics) {
    let groups: HashSet<String> = cfg.virtual_server_groups.iter().map(|g| g.name.clone()).collect();
    let laddrs: HashSet<String> = cfg.local_address_groups.iter().map(|g| g.name.clone()).collect();
    let track_files: HashSet<String> = cfg.track_files.iter().map(|t| t.name.clone()).collect();
    let bfds: HashSet<String> = cfg.bfd_instances.iter().map(|t| t.name.clone()).collect();
    let mut seen_vs = HashSet::new();
    for (i, vs) in cfg.virtual_servers.iter_mut().enumerate() {
        let here = src.virtual_servers.get(i).copied().unwrap_or(NOWHERE);
        let proto_name = vs.protocol.map_or("none", Protocol::lower);
        let label = match &vs.address {
            VsAddress::Ip { address, port } => format!("[{address}]:{proto_name}:{}", port.unwrap_or(0)),
            VsAddress::Fwmark { mark } => format!("FWM {mark}"),
            VsAddress::Group { name } => name.clone(),
        };
        match &vs.address {
            VsAddress::Fwmark { .. } => {
                if vs.protocol.is_some() {
                    d.warn(here, format!("Warning: Virtual server {label}: protocol specified for fwmark - protocol will be ignored"));
                    vs.protocol = None;
                }
            }
            VsAddress::Group { name } => {
                if !groups.contains(name) {
                    d.warn(here, format!("Virtual server group {name} not found - virtual server ignored"));
                }
            }
            VsAddress::Ip { port, .. } => {
                if vs.protocol.is_none() {
                    d.warn(here, format!("Virtual server {label}: no protocol set - defaulting to UDP"));
                    vs.protocol = Some(Protocol::Udp);
                }
                if port.is_none() && vs.persistence_timeout.is_none() {
                    d.error(
                        here,
                        format!(
                            "Virtual server {label}: a port is required unless the service is persistent"
                        ),
                    );
                }
            }
        }
        let label = match &vs.address {
            VsAddress::Ip { address, port } => {
                format!("[{address}]:{}:{}", vs.protocol.map_or("none", Protocol::lower), port.unwrap_or(0))
            }
            _ => label,
        };
        if vs.lvs_sched.is_none() {
            d.warn(here, format!("Virtual server {label}: no scheduler set, setting default 'wlc'"));
            vs.lvs_sched = Some(LbAlgo::Wlc);
        }
        if vs.lvs_method.is_none() {
            d.warn(here, format!("Virtual server {label}: no forwarding method set, setting default NAT"));
            vs.lvs_method = Some(LvsMethod { kind: LbKind::Nat, tunnel: None });
        }
        let key = (vs.address.clone(), vs.protocol);
        if !seen_vs.insert(key) {
            d.warn(here, format!("Virtual server {label} is defined more than once"));
        }
        // Alibaba LVS FULLNAT local addresses.
        if let Some(g) = &vs.laddr_group_name {
            if !laddrs.contains(g) {
                d.error(here, format!("Virtual server {label}: local_address_group {g} not found"));
            } else if vs.effective_kind() != LbKind::Fnat {
                d.warn(
                    here,
                    format!(
                        "Virtual server {label}: laddr_group_name is only used with lb_kind FNAT - ignored"
                    ),
                );
            }
        }
        if vs.effective_kind() == LbKind::Fnat && matches!(vs.address, VsAddress::Fwmark { .. }) {
            d.error(here, format!("Virtual server {label}: FNAT does not support fwmark services"));
        }
        if let (VsAddress::Ip { address, .. }, Some(s)) = (&vs.address, &vs.sorry_server)
            && vs.effective_kind() != LbKind::Tun
            && !super::lvs::same_family(*address, s.address)
        {
            d.error(
                here,
                format!("Virtual server {label}: sorry server {} is not the same address family", s.address),
            );
        }

        // Real servers: duplicates removed, families checked, references resolved.
        let rs_locs = src.real_servers.get(i);
        let mut seen = HashSet::with_capacity(vs.real_servers.len());
        let mut keep = Vec::with_capacity(vs.real_servers.len());
        let proto = vs.protocol.map_or("none", Protocol::lower);
        for (j, rs) in vs.real_servers.iter().enumerate() {
            let loc = rs_locs.and_then(|l| l.get(j)).copied().unwrap_or(here);
            let rs_label = || format!("[{}]:{proto}:{}", rs.address, rs.port.unwrap_or(0));
            if !seen.insert((rs.address, rs.port)) {
                d.warn(
                    loc,
                    format!("VS {label}: real server {} is duplicated - removing second rs", rs_label()),
                );
                keep.push(false);
                continue;
            }
            let tunnelled = rs.lvs_method.as_ref().map_or(vs.effective_kind(), |m| m.kind) == LbKind::Tun;
            if let VsAddress::Ip { address, .. } = &vs.address
                && !tunnelled
                && !super::lvs::same_family(*address, rs.address)
            {
                let msg = format!(
                    "VS {label}: real server {} address family does not match the virtual server's",
                    rs_label()
                );
                d.error(loc, msg);
                keep.push(false);
                continue;
            }
            keep.push(true);
            if let VsAddress::Ip { port: None, .. } = &vs.address
                && rs.port.is_some()
            {
                d.warn(
                    loc,
                    format!(
                        "VS {label}: real server {} port ignored for a service without a port",
                        rs_label()
                    ),
                );
            }
            for c in &rs.checkers {
                let missing = match c {
                    Checker::FileCheck(f) => f
                        .track_file
                        .as_ref()
                        .filter(|t| !track_files.contains(*t))
                        .map(|t| format!("track_file {t}")),
                    Checker::BfdCheck(b) => {
                        b.name.as_ref().filter(|n| !bfds.contains(*n)).map(|n| format!("BFD instance {n}"))
                    }
                    _ => None,
                };
                if let Some(what) = missing {
                    d.warn(loc, format!("VS {label}: real server {}: {what} not found", rs_label()));
                }
            }
        }
        let mut flags = keep.into_iter();
        vs.real_servers.retain(|_| flags.next().unwrap_or(true));

        if vs.real_servers.is_empty() {
            if vs.sorry_server.is_none() {
                d.warn(here, format!("Virtual server {label} has no real servers - ignoring"));
            }
        } else {
            let total: i64 = vs.real_servers.iter().map(|rs| i64::from(rs.effective_weight(vs))).sum();
            if i64::from(vs.quorum) > total {
                d.warn(here, format!("Warning - quorum {} for {label} exceeds total weight of real servers {total}, reducing quorum to {total}", vs.quorum));
                vs.quorum = u32::try_from(total.max(0)).unwrap_or(0);
            }
        }
        if vs.hysteresis >= vs.quorum && vs.hysteresis != 0 {
            d.warn(
                here,
                format!(
                    "Virtual server {label}: hysteresis {} >= quorum {}; setting hysteresis to {}",
                    vs.hysteresis,
                    vs.quorum,
                    vs.quorum.saturating_sub(1)
                ),
            );
            vs.hysteresis = vs.quorum.saturating_sub(1);
        }
    }
}
