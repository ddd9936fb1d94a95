//! Parsing of the VRRP sections: `vrrp_sync_group` and `vrrp_instance` (keepalived's
//! vrrp_parser.c), into [`VrrpSyncGroup`] and [`VrrpInstance`].

use std::time::Duration;

use super::{lexer::Line, model::*, parser::Parser, schema};

impl Parser {
    /// `track_script { NAME [weight W [reverse|noreverse]] }` and its siblings.
    fn track_list(&mut self, owner: &str, k: &Line, min: i32, max: i32) -> Vec<TrackRef> {
        let mut out = Vec::new();
        for e in self.value_block(k) {
            let mut t = TrackRef { name: e.w(0).to_string(), weight: None, reverse: None };
            self.mark(format!("{owner} {} {}", k.w(0), t.name), e.loc);
            let mut i = 1;
            while i < e.len() {
                match e.w(i) {
                    "weight" => {
                        t.weight = self.i32v(&e, i + 1, min, max);
                        i += 2;
                    }
                    "reverse" => {
                        t.reverse = Some(true);
                        i += 1;
                    }
                    "noreverse" | "no_reverse" => {
                        t.reverse = Some(false);
                        i += 1;
                    }
                    w => {
                        self.d.error(
                            e.loc_of(i),
                            format!(
                                "{}: unknown option '{w}' for {}, expected weight or reverse",
                                k.w(0),
                                t.name
                            ),
                        );
                        i += 1;
                    }
                }
            }
            out.push(t);
        }
        out
    }

    pub(super) fn vrrp_sync_group(&mut self, l: &Line) {
        let mut g = VrrpSyncGroup { name: self.block_name(l), ..VrrpSyncGroup::default() };
        let owner = format!("vrrp_sync_group {}", g.name);
        self.mark(owner.clone(), l.loc);
        self.block(l, |p, k| match k.w(0) {
            "group" => {
                for e in p.value_block(&k) {
                    for (i, w) in e.words().enumerate() {
                        p.mark(format!("{owner} group {w}"), e.loc_of(i));
                        g.group.push(w.to_string());
                    }
                }
            }
            "track_interface" => g.track_interface = p.track_list(&owner, &k, -253, 253),
            "track_script" => g.track_script = p.track_list(&owner, &k, -253, 253),
            "track_file" => g.track_file = p.track_list(&owner, &k, -254, 254),
            "track_process" => g.track_process = p.track_list(&owner, &k, -254, 254),
            "track_bfd" => g.track_bfd = p.track_list(&owner, &k, -253, 253),
            "notify_master" => g.notify_master = p.script(&k),
            "notify_backup" => g.notify_backup = p.script(&k),
            "notify_fault" => g.notify_fault = p.script(&k),
            "notify_stop" => g.notify_stop = p.script(&k),
            "notify" => g.notify = p.script(&k),
            "smtp_alert" => g.smtp_alert = p.opt_bool(&k, 1),
            "global_tracking" => {
                p.d.warn(
                    k.loc,
                    "global_tracking is deprecated - use track_interface/script/file on the sync group",
                );
                g.global_tracking = true;
            }
            "sync_group_tracking_weight" => g.sync_group_tracking_weight = true,
            "notify_priority_changes" => g.notify_priority_changes = p.opt_bool(&k, 1),
            // keepalived 1.x allowed the instance names directly in the block; 2.2.7 reports
            // them as unknown keywords (see keepalived.conf.vrrp.lvs_syncd).
            _ => p.other("vrrp_sync_group", &k),
        });
        self.cfg.vrrp_sync_groups.push(g);
    }

    pub(super) fn vrrp_instance(&mut self, l: &Line) {
        let mut v = VrrpInstance { name: self.block_name(l), ..VrrpInstance::default() };
        let name = v.name.clone();
        let owner = format!("vrrp_instance {name}");
        self.mark(owner.clone(), l.loc);
        let mut priority_set = false;
        self.block(l, |p, k| {
            p.mark(format!("{owner} {}", k.w(0)), k.loc);
            priority_set |= k.w(0) == "priority";
            p.vrrp_keyword(&mut v, &name, &k);
        });
        // keepalived: an instance with `state MASTER` and no priority is the address owner.
        if !priority_set && v.state == Some(VrrpState::Master) {
            v.priority = 255;
        }
        self.cfg.vrrp_instances.push(v);
    }

    fn vrrp_keyword(&mut self, v: &mut VrrpInstance, name: &str, k: &Line) {
        let kw = k.w(0);
        if schema::parsed_not_run("vrrp_instance", kw) {
            self.d.parsed_unsupported(k.loc, kw);
        }
        match kw {
            "state" => {
                v.state = match self.arg(k, 1, "MASTER or BACKUP") {
                    Some("MASTER") => Some(VrrpState::Master),
                    Some("BACKUP") => Some(VrrpState::Backup),
                    Some(w) => {
                        self.d.error(
                            k.loc_of(1),
                            format!("({name}) unknown state '{w}', expected MASTER or BACKUP"),
                        );
                        None
                    }
                    None => None,
                }
            }
            "interface" => {
                v.interface = self.string(k, 1);
                if v.interface.as_deref() == Some("lo") {
                    self.d.error(
                        k.loc_of(1),
                        format!("({name}) cannot use a loopback interface (lo) for vrrp - ignoring"),
                    );
                    v.interface = None;
                }
            }
            "vrf" => v.vrf = self.string(k, 1),
            "use_vmac" => {
                let mut u = UseVmac::default();
                for w in k.words().skip(1) {
                    if is_mac(w) {
                        u.mac = Some(w.to_string());
                    } else if u.name.is_none() {
                        u.name = Some(w.to_string());
                    }
                }
                v.use_vmac = Some(u);
            }
            "use_vmac_addr" => v.use_vmac_addr = true,
            "vmac_xmit_base" => v.vmac_xmit_base = true,
            "use_ipvlan" => {
                let mut u = UseIpvlan::default();
                for (i, w) in k.words().enumerate().skip(1) {
                    if matches!(w, "bridge" | "private" | "vepa") {
                        u.mode = Some(w.to_string());
                    } else if let Ok(a) = w.parse::<IpPrefix>() {
                        u.address = Some(a);
                    } else if u.name.is_none() && i == 1 {
                        u.name = Some(w.to_string());
                    } else {
                        self.d.error(k.loc_of(i), format!("use_ipvlan: unexpected '{w}'"));
                    }
                }
                v.use_ipvlan = Some(u);
            }
            "native_ipv6" => v.native_ipv6 = true,
            "dont_track_primary" => v.dont_track_primary = true,
            "track_interface" => {
                v.track_interface = self.track_list(&format!("vrrp_instance {name}"), k, -253, 253)
            }
            "track_script" => {
                v.track_script = self.track_list(&format!("vrrp_instance {name}"), k, -253, 253)
            }
            "track_file" => v.track_file = self.track_list(&format!("vrrp_instance {name}"), k, -254, 254),
            "track_process" => {
                v.track_process = self.track_list(&format!("vrrp_instance {name}"), k, -254, 254)
            }
            "track_bfd" => v.track_bfd = self.track_list(&format!("vrrp_instance {name}"), k, -253, 253),
            "mcast_src_ip" => v.mcast_src_ip = self.ip(k, 1),
            "unicast_src_ip" => v.unicast_src_ip = self.ip(k, 1),
            "mcast_dst_ip" => {
                v.mcast_dst_ip = self.ip(k, 1);
                if let Some(a) = v.mcast_dst_ip
                    && !a.is_multicast()
                {
                    self.d
                        .error(k.loc_of(1), format!("({name}) mcast_dst_ip {a} is not a multicast address"));
                    v.mcast_dst_ip = None;
                }
            }
            "track_src_ip" => v.track_src_ip = true,
            "unicast_peer" => {
                for e in self.value_block(k) {
                    let Some(address) = self.ip(&e, 0) else { continue };
                    let mut peer = UnicastPeer { address, min_ttl: None, max_ttl: None };
                    let mut i = 1;
                    while i < e.len() {
                        match e.w(i) {
                            "min_ttl" => peer.min_ttl = self.u8v(&e, i + 1, 0, 255),
                            "max_ttl" => peer.max_ttl = self.u8v(&e, i + 1, 0, 255),
                            w => self.d.error(
                                e.loc_of(i),
                                format!(
                                    "({name}) unicast_peer: unknown option '{w}', expected min_ttl or max_ttl"
                                ),
                            ),
                        }
                        i += 2;
                    }
                    v.unicast_peer.push(peer);
                }
            }
            "unicast_fault_no_peer" => v.unicast_fault_no_peer = true,
            "check_unicast_src" => v.check_unicast_src = true,
            "unicast_ttl" => v.unicast_ttl = self.u8v(k, 1, 0, 255),
            "old_unicast_checksum" => {
                v.old_unicast_checksum = match k.word(1) {
                    None => Some(false),
                    Some("never") => Some(true),
                    Some(w) => {
                        self.d.error(
                            k.loc_of(1),
                            format!("old_unicast_checksum: unknown option '{w}', expected never"),
                        );
                        None
                    }
                }
            }
            "virtual_router_id" => {
                v.virtual_router_id = self.u8v(k, 1, 1, 255);
            }
            "priority" => {
                if let Some(p) = self.u8v(k, 1, 1, 255) {
                    v.priority = p;
                }
            }
            "advert_int" => {
                // keepalived: 0.01 to 255 seconds (VRRPv3 centiseconds, VRRPv2 whole seconds).
                if let Some(d) = self.timer(k, 1, 0.01, 255.0) {
                    v.advert_int = d;
                }
            }
            "version" => v.version = self.vrrp_version(k),
            "authentication" => {
                let mut auth_type = None;
                let mut auth_pass = None;
                self.block(k, |p, a| match a.w(0) {
                    "auth_type" => {
                        auth_type = match p.arg(&a, 1, "PASS or AH") {
                            Some("PASS") => Some(AuthType::Pass),
                            Some("AH") => Some(AuthType::Ah),
                            Some(w) => {
                                p.d.error(
                                    a.loc_of(1),
                                    format!(
                                        "({name}) unknown authentication type '{w}', expected PASS or AH"
                                    ),
                                );
                                None
                            }
                            None => None,
                        }
                    }
                    "auth_pass" => {
                        auth_pass = p.string(&a, 1);
                        if auth_pass.as_ref().is_some_and(|s| s.len() > 8) {
                            p.d.warn(a.loc_of(1), format!("({name}) Truncating auth_pass to 8 characters"));
                        }
                    }
                    _ => p.other("vrrp_instance > authentication", &a),
                });
                match auth_type {
                    Some(t) => {
                        v.authentication =
                            Some(Authentication { auth_type: t, auth_pass: auth_pass.unwrap_or_default() })
                    }
                    None if auth_pass.is_some() => {
                        self.d.warn(k.loc, format!("({name}) auth_pass without auth_type - assuming PASS"));
                        v.authentication = Some(Authentication {
                            auth_type: AuthType::Pass,
                            auth_pass: auth_pass.unwrap_or_default(),
                        });
                    }
                    None => {}
                }
            }
            "virtual_ipaddress" => {
                for e in self.value_block(k) {
                    if let Some(a) = self.ip_address_entry(&e, false) {
                        v.virtual_ipaddress.push(a);
                    }
                }
            }
            "virtual_ipaddress_excluded" => {
                for e in self.value_block(k) {
                    if let Some(a) = self.ip_address_entry(&e, false) {
                        v.virtual_ipaddress_excluded.push(a);
                    }
                }
            }
            "virtual_routes" => {
                for e in self.value_block(k) {
                    if let Some(r) = self.route_entry(&e, false) {
                        if r.dev.is_none() && !r.no_track {
                            let dest = r.destination.map_or_else(String::new, |d| d.to_string());
                            self.d.warn(e.loc, format!("Warning - cannot track route {dest} with no interface specified, not tracking"));
                        }
                        v.virtual_routes.push(r);
                    }
                }
            }
            "virtual_rules" => {
                for e in self.value_block(k) {
                    if let Some(r) = self.rule_entry(&e, false) {
                        v.virtual_rules.push(r);
                    }
                }
            }
            "promote_secondaries" => v.promote_secondaries = true,
            "linkbeat_use_polling" => {
                v.linkbeat_use_polling = true;
                // keepalived 2.2.7's words.
                self.d.warn(
                    k.loc,
                    format!("({name}) 'linkbeat_use_polling' in vrrp instance deprecated - use linkbeat_interfaces block"),
                );
            }
            "accept" => v.accept = Some(true),
            "no_accept" => v.accept = Some(false),
            "preempt" => v.preempt = true,
            "nopreempt" => v.preempt = false,
            "preempt_delay" => v.preempt_delay = self.timer(k, 1, 0.0, 1000.0),
            "skip_check_adv_addr" => v.skip_check_adv_addr = self.opt_bool(k, 1),
            "strict_mode" => v.strict_mode = self.opt_bool(k, 1),
            "debug" => v.debug = self.u8v(k, 1, 0, 4),
            "notify_master" => v.notify_master = self.script(k),
            "notify_backup" => v.notify_backup = self.script(k),
            "notify_fault" => v.notify_fault = self.script(k),
            "notify_stop" => v.notify_stop = self.script(k),
            "notify" => v.notify = self.script(k),
            "notify_master_rx_lower_pri" => v.notify_master_rx_lower_pri = self.script(k),
            "notify_deleted" => {
                v.notify_deleted = true;
                if k.len() > 1 {
                    v.notify_deleted_script = self.script(k);
                }
            }
            "smtp_alert" => v.smtp_alert = self.opt_bool(k, 1),
            "notify_priority_changes" => v.notify_priority_changes = self.opt_bool(k, 1),
            "lvs_sync_daemon_interface" => {
                self.d.warn(k.loc, format!("({name}) Specifying lvs_sync_daemon_interface against a vrrp is deprecated. Please use global lvs_sync_daemon"));
                v.lvs_sync_daemon_interface = self.string(k, 1);
            }
            "garp_master_delay" => v.garp_master_delay = self.uint(k, 1, 0, 86400).map(Duration::from_secs),
            "garp_master_repeat" => v.garp_master_repeat = self.u32v(k, 1, 0, 65535),
            "garp_master_refresh" => {
                v.garp_master_refresh = self.uint(k, 1, 0, 86400 * 365).map(Duration::from_secs)
            }
            "garp_master_refresh_repeat" => v.garp_master_refresh_repeat = self.u32v(k, 1, 0, 65535),
            "garp_lower_prio_delay" => {
                v.garp_lower_prio_delay = self.uint(k, 1, 0, 86400).map(Duration::from_secs)
            }
            "garp_lower_prio_repeat" => v.garp_lower_prio_repeat = self.u32v(k, 1, 0, 65535),
            "down_timer_adverts" => v.down_timer_adverts = self.u32v(k, 1, 1, 100),
            "garp_extra_if" | "vmac_garp_intvl" => v.garp_extra_if = self.garp_extra_if(k),
            "lower_prio_no_advert" => v.lower_prio_no_advert = self.opt_bool(k, 1),
            "higher_prio_send_advert" => v.higher_prio_send_advert = self.opt_bool(k, 1),
            "kernel_rx_buf_size" => v.kernel_rx_buf_size = self.uint(k, 1, 0, u64::from(u32::MAX)),
            _ => self.other("vrrp_instance", k),
        }
    }
}

/// A MAC address of 5 or 6 octets (`use_vmac`).
fn is_mac(w: &str) -> bool {
    let parts: Vec<&str> = w.split(':').collect();
    (parts.len() == 5 || parts.len() == 6)
        && parts.iter().all(|p| p.len() <= 2 && !p.is_empty() && u8::from_str_radix(p, 16).is_ok())
}
