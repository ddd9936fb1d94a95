//! The keepalived.conf parser: logical lines from the [lexer](super::lexer) in, the typed
//! [model](super::model) out, with every problem recorded as a diagnostic.
//!
//! Block structure follows keepalived's `process_stream()`: a keyword that opens a block wants
//! `{` as the next logical line (else `Missing '{' at beginning of configuration block`), a lone
//! `{` elsewhere is `Unexpected '{' - ignoring`, and `}` closes the innermost block. List blocks
//! (`virtual_ipaddress`, `notification_email`, ...) read each line as one entry, as
//! `alloc_value_block()` does. One deliberate difference: after `Unknown keyword 'X'`, a block
//! that follows X is skipped as a whole instead of being read as keywords of the outer block,
//! so one typo gives one message instead of a cascade.
//!
//! This file holds the machinery, the value readers, the top level and `global_defs`; the VRRP
//! sections are in [`super::vrrp`] and the LVS sections in [`super::lvs`].

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use super::{
    error::{Diagnostics, Loc},
    lexer::{Lexer, Line, split_command},
    model::*,
    schema,
};

/// The parser state: the lexer, the diagnostics and the model being built.
#[derive(Debug)]
pub struct Parser {
    lx: Lexer,
    /// Every problem found so far.
    pub d: Diagnostics,
    peeked: Option<Line>,
    /// The model built so far.
    pub cfg: Config,
    /// Where things were defined, for the checks made after parsing.
    pub src: SourceMap,
}

/// Where the parts of the model were written, so that checks made after parsing (cross
/// references, defaults) can still name a file and line.
#[derive(Debug, Default)]
pub struct SourceMap {
    /// Keyed by a description such as `vrrp_instance VI_1`, `vrrp_instance VI_1 priority` or
    /// `vrrp_instance VI_1 track_script chk`.
    pub named: HashMap<String, Loc>,
    /// Header line of each virtual server, by index.
    pub virtual_servers: Vec<Loc>,
    /// Header line of each real server, by virtual server then real server index.
    pub real_servers: Vec<Vec<Loc>>,
}

impl SourceMap {
    /// The location recorded under `key`, if any.
    pub fn get(&self, key: &str) -> Option<Loc> {
        self.named.get(key).copied()
    }
}

impl Parser {
    /// A parser reading from `lx`, reporting into `d`.
    pub fn new(lx: Lexer, d: Diagnostics) -> Self {
        Parser { lx, d, peeked: None, cfg: Config::default(), src: SourceMap::default() }
    }

    /// Parses everything; returns the model and the diagnostics.
    pub fn run(mut self) -> (Config, Diagnostics, SourceMap) {
        while let Some(l) = self.next() {
            self.top_level(l);
        }
        (self.cfg, self.d, self.src)
    }

    /// Records where `key` was written.
    pub(super) fn mark(&mut self, key: String, loc: Loc) {
        self.src.named.entry(key).or_insert(loc);
    }

    // -----------------------------------------------------------------------------------------
    // Machinery

    fn next(&mut self) -> Option<Line> {
        match self.peeked.take() {
            Some(l) => Some(l),
            None => self.lx.next_line(&mut self.d),
        }
    }

    fn peek_is(&mut self, word: &str) -> bool {
        if self.peeked.is_none() {
            self.peeked = self.lx.next_line(&mut self.d);
        }
        self.peeked.as_ref().is_some_and(|l| l.len() == 1 && l.w(0) == word)
    }

    /// Consumes the `{` that must follow a block keyword; false at end of input.
    fn open_block(&mut self, opener: &Line) -> bool {
        match self.next() {
            Some(l) if l.len() == 1 && l.w(0) == "{" => true,
            Some(l) => {
                self.d.error(
                    l.loc,
                    format!(
                        "Missing '{{' at beginning of configuration block '{}' (line {})",
                        opener.w(0),
                        opener.loc.line
                    ),
                );
                self.peeked = Some(l);
                true
            }
            None => {
                self.d.error(
                    opener.loc,
                    format!("Missing '{{' at beginning of configuration block '{}'", opener.w(0)),
                );
                false
            }
        }
    }

    /// Calls `f` for each keyword line of the block opened by `opener`, until its `}`.
    pub(super) fn block(&mut self, opener: &Line, mut f: impl FnMut(&mut Self, Line)) {
        if !self.open_block(opener) {
            return;
        }
        while let Some(l) = self.next() {
            if l.len() == 1 && l.w(0) == "}" {
                return;
            }
            if l.len() == 1 && l.w(0) == "{" {
                self.d.error(l.loc, "Unexpected '{' - ignoring");
                continue;
            }
            f(self, l);
        }
    }

    /// Reads a list block (`keyword { entry ... }`): every line up to `}` is one entry.
    pub(super) fn value_block(&mut self, opener: &Line) -> Vec<Line> {
        self.list_block(opener, 1)
    }

    /// A list block whose header has `words` words (`virtual_server_group NAME {`).
    pub(super) fn list_block(&mut self, opener: &Line, words: usize) -> Vec<Line> {
        let mut out = Vec::new();
        if opener.len() > words {
            self.d.error(
                opener.loc_of(1),
                format!("Block {} has extra parameters {} ...", opener.w(0), opener.w(words)),
            );
        }
        match self.next() {
            Some(l) if l.len() == 1 && l.w(0) == "{" => {}
            Some(l) => {
                self.d.error(l.loc, format!("'{{' missing from beginning of block {}", opener.w(0)));
                if l.len() == 1 && l.w(0) == "}" {
                    return out;
                }
                out.push(l);
            }
            None => return out,
        }
        while let Some(l) = self.next() {
            if l.len() == 1 && l.w(0) == "}" {
                break;
            }
            if l.len() == 1 && l.w(0) == "{" {
                self.d.error(l.loc, format!("Unexpected '{{' in block {} - ignoring", opener.w(0)));
                continue;
            }
            out.push(l);
        }
        out
    }

    /// Skips a `{ ... }` block if one follows.
    fn skip_block(&mut self) {
        if !self.peek_is("{") {
            return;
        }
        let mut depth = 0usize;
        while let Some(l) = self.next() {
            match (l.len(), l.w(0)) {
                (1, "{") => depth += 1,
                (1, "}") => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return;
                    }
                }
                _ => {}
            }
        }
    }

    /// A keyword not known in `ctx`: keepalived's `Unknown keyword`, or a "not supported yet"
    /// notice for a keepalived 2.2.7 keyword lbd does not model.
    pub(super) fn other(&mut self, ctx: &str, l: &Line) {
        let kw = l.w(0);
        if schema::known(ctx, kw) {
            self.d.unsupported(l.loc, kw);
            let at = format!(
                "{}:{}",
                self.d.files.get(l.loc.file as usize).map_or("", String::as_str),
                l.loc.line
            );
            let path = if ctx.is_empty() { kw.to_string() } else { format!("{ctx} > {kw}") };
            self.cfg.unsupported.push(Unsupported {
                path,
                args: l.words().skip(1).map(str::to_string).collect(),
                at,
            });
        } else {
            self.d.warn(l.loc, format!("Unknown keyword '{kw}'"));
        }
        self.skip_block();
    }

    // -----------------------------------------------------------------------------------------
    // Value readers. Each reports what was expected and returns None on error.

    /// The `i`th word, or an error saying a value is missing.
    pub(super) fn arg<'l>(&mut self, l: &'l Line, i: usize, expected: &str) -> Option<&'l str> {
        self.arg_fmt(l, i, format_args!("{expected}"))
    }

    /// [`Parser::arg`] with a formatted description, built only if the value is missing.
    pub(super) fn arg_fmt<'l>(
        &mut self,
        l: &'l Line,
        i: usize,
        expected: std::fmt::Arguments<'_>,
    ) -> Option<&'l str> {
        match l.word(i) {
            Some(w) => Some(w),
            None => {
                self.d.error(l.loc, format!("{}: missing {expected}", l.w(0)));
                None
            }
        }
    }

    /// An owned string argument.
    pub(super) fn string(&mut self, l: &Line, i: usize) -> Option<String> {
        self.arg(l, i, "value").map(str::to_string)
    }

    /// Warns about words after the last expected one.
    pub(super) fn no_extra(&mut self, l: &Line, n: usize) {
        if l.len() > n {
            self.d.warn(l.loc_of(n), format!("{}: extra parameter '{}' ignored", l.w(0), l.w(n)));
        }
    }

    /// An unsigned integer in `[min, max]`.
    pub(super) fn uint(&mut self, l: &Line, i: usize, min: u64, max: u64) -> Option<u64> {
        let w = self.arg_fmt(l, i, format_args!("number, expected {min}-{max}"))?;
        let kw = l.w(0);
        let loc = l.loc_of(i);
        let t = w.trim_start();
        if t.starts_with('-') {
            self.d.error(loc, format!("{kw}: negative number '{w}', expected {min}-{max}"));
            return None;
        }
        match t.parse::<u64>() {
            Ok(v) if v >= min && v <= max => Some(v),
            Ok(_) => {
                self.d.error(loc, format!("{kw} {w} out of range, expected {min}-{max}"));
                None
            }
            Err(_) => {
                self.d.error(loc, format!("{kw}: invalid number '{w}', expected {min}-{max}"));
                None
            }
        }
    }

    /// A signed integer in `[min, max]`.
    pub(super) fn int(&mut self, l: &Line, i: usize, min: i64, max: i64) -> Option<i64> {
        let w = self.arg_fmt(l, i, format_args!("number, expected {min}-{max}"))?;
        let kw = l.w(0);
        let loc = l.loc_of(i);
        match w.trim_start().parse::<i64>() {
            Ok(v) if v >= min && v <= max => Some(v),
            Ok(_) => {
                self.d.error(loc, format!("{kw} {w} out of range, expected {min}-{max}"));
                None
            }
            Err(_) => {
                self.d.error(loc, format!("{kw}: invalid number '{w}', expected {min}-{max}"));
                None
            }
        }
    }

    pub(super) fn u8v(&mut self, l: &Line, i: usize, min: u8, max: u8) -> Option<u8> {
        self.uint(l, i, min.into(), max.into()).and_then(|v| u8::try_from(v).ok())
    }

    pub(super) fn u16v(&mut self, l: &Line, i: usize, min: u16, max: u16) -> Option<u16> {
        self.uint(l, i, min.into(), max.into()).and_then(|v| u16::try_from(v).ok())
    }

    pub(super) fn u32v(&mut self, l: &Line, i: usize, min: u32, max: u32) -> Option<u32> {
        self.uint(l, i, min.into(), max.into()).and_then(|v| u32::try_from(v).ok())
    }

    pub(super) fn i32v(&mut self, l: &Line, i: usize, min: i32, max: i32) -> Option<i32> {
        self.int(l, i, min.into(), max.into()).and_then(|v| i32::try_from(v).ok())
    }

    /// A port 1-65535... keepalived accepts 0-65535 for ports.
    pub(super) fn port(&mut self, l: &Line, i: usize) -> Option<u16> {
        self.u16v(l, i, 0, 65535)
    }

    /// A timer in seconds with microsecond resolution, in `[min, max]` seconds.
    pub(super) fn timer(&mut self, l: &Line, i: usize, min: f64, max: f64) -> Option<Duration> {
        let w = self.arg_fmt(l, i, format_args!("time in seconds, expected {min}-{max}"))?;
        let kw = l.w(0);
        let loc = l.loc_of(i);
        let d = match secs::parse(w) {
            Ok(d) if !w.ends_with('s') => d,
            _ => {
                self.d.error(loc, format!("{kw}: invalid time '{w}', expected seconds {min}-{max}"));
                return None;
            }
        };
        let v = d.as_secs_f64();
        if v < min || v > max {
            self.d.error(loc, format!("{kw} {w} out of range, expected {min}-{max}"));
            return None;
        }
        Some(d)
    }

    /// An optional `<BOOL>` (no value means true).
    pub(super) fn opt_bool(&mut self, l: &Line, i: usize) -> Option<bool> {
        match l.word(i) {
            None => Some(true),
            Some("true" | "on" | "yes") => Some(true),
            Some("false" | "off" | "no") => Some(false),
            Some(w) => {
                self.d.error(
                    l.loc_of(i),
                    format!("{}: invalid boolean '{w}', expected on|off|true|false|yes|no", l.w(0)),
                );
                None
            }
        }
    }

    /// An IP address.
    pub(super) fn ip(&mut self, l: &Line, i: usize) -> Option<IpAddr> {
        let w = self.arg(l, i, "IP address")?;
        match w.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.d.error(l.loc_of(i), format!("{}: invalid IP address '{w}'", l.w(0)));
                None
            }
        }
    }

    /// A script: `keyword COMMAND [USER [GROUP]]`.
    pub(super) fn script(&mut self, l: &Line) -> Option<Script> {
        let command = self.arg(l, 1, "script")?.to_string();
        let argv = match split_command(&command) {
            Ok(a) if !a.is_empty() => a,
            Ok(_) => {
                self.d.error(l.loc_of(1), format!("{}: empty script", l.w(0)));
                return None;
            }
            Err(e) => {
                self.d.error(l.loc_of(1), format!("{}: {e}", l.w(0)));
                return None;
            }
        };
        self.no_extra(l, 4);
        Some(Script {
            command,
            argv,
            user: l.word(2).map(str::to_string),
            group: l.word(3).map(str::to_string),
        })
    }

    // -----------------------------------------------------------------------------------------
    // Top level

    fn top_level(&mut self, l: Line) {
        match l.w(0) {
            "global_defs" => self.global_defs(&l),
            "net_namespace" => {
                self.cfg.global_defs.net_namespace = self.string(&l, 1);
            }
            "net_namespace_ipvs" => {
                self.cfg.global_defs.net_namespace_ipvs = Some(l.word(1).unwrap_or("").to_string());
            }
            "namespace_with_ipsets" => self.cfg.global_defs.namespace_with_ipsets = true,
            "use_pid_dir" => self.cfg.global_defs.use_pid_dir = true,
            "instance" => self.cfg.global_defs.instance = self.string(&l, 1),
            "child_wait_time" => self.cfg.global_defs.child_wait_time = self.timer(&l, 1, 0.0, 1e6),
            "linkbeat_use_polling" => self.cfg.global_defs.linkbeat_use_polling = true,
            "linkbeat_interfaces" => {
                for e in self.value_block(&l) {
                    self.cfg.linkbeat_interfaces.push(LinkbeatInterface {
                        name: e.w(0).to_string(),
                        kind: e.word(1).map(str::to_string),
                    });
                }
            }
            "interface_up_down_delays" => {
                for e in self.value_block(&l) {
                    let Some(down) = self.timer(&e, 1, 0.0, 255.0) else { continue };
                    let up = if e.len() > 2 { self.timer(&e, 2, 0.0, 255.0).unwrap_or(down) } else { down };
                    self.cfg.interface_up_down_delays.push(InterfaceDelays {
                        name: e.w(0).to_string(),
                        down_delay: down,
                        up_delay: up,
                    });
                }
            }
            "track_group" => {
                let mut g = TrackGroup { name: l.w(1).to_string(), group: Vec::new() };
                if g.name.is_empty() {
                    self.d.error(l.loc, "track_group: missing name");
                }
                self.block(&l, |p, k| match k.w(0) {
                    "group" => {
                        for e in p.value_block(&k) {
                            g.group.extend(e.words().map(str::to_string));
                        }
                    }
                    _ => p.other("track_group", &k),
                });
                self.cfg.track_groups.push(g);
            }
            "static_ipaddress" => {
                for e in self.value_block(&l) {
                    if let Some(a) = self.ip_address_entry(&e, true) {
                        self.cfg.static_ipaddress.push(a);
                    }
                }
            }
            "static_routes" => {
                for e in self.value_block(&l) {
                    if let Some(r) = self.route_entry(&e, true) {
                        self.cfg.static_routes.push(r);
                    }
                }
            }
            "static_rules" => {
                for e in self.value_block(&l) {
                    if let Some(r) = self.rule_entry(&e, true) {
                        self.cfg.static_rules.push(r);
                    }
                }
            }
            "SSL" => {
                let mut ssl = Ssl::default();
                self.block(&l, |p, k| match k.w(0) {
                    "password" => ssl.password = p.string(&k, 1),
                    "ca" => ssl.ca = p.string(&k, 1),
                    "certificate" => ssl.certificate = p.string(&k, 1),
                    "key" => ssl.key = p.string(&k, 1),
                    _ => p.other("SSL", &k),
                });
                self.cfg.ssl = Some(ssl);
            }
            "bfd_instance" => self.bfd_instance(&l),
            "vrrp_script" => self.vrrp_script(&l),
            "track_file" | "vrrp_track_file" => self.track_file(&l),
            "vrrp_track_process" => self.track_process(&l),
            "garp_group" => self.garp_group(&l),
            "vrrp_sync_group" => self.vrrp_sync_group(&l),
            "vrrp_instance" => self.vrrp_instance(&l),
            "virtual_server_group" => self.virtual_server_group(&l),
            "local_address_group" => self.local_address_group(&l),
            "virtual_server" => self.virtual_server(&l),
            _ => self.other("", &l),
        }
    }

    // -----------------------------------------------------------------------------------------
    // global_defs

    fn global_defs(&mut self, l: &Line) {
        let mut g = std::mem::take(&mut self.cfg.global_defs);
        self.block(l, |p, k| p.global_keyword(&mut g, &k));
        self.cfg.global_defs = g;
    }

    fn global_keyword(&mut self, g: &mut GlobalDefs, k: &Line) {
        let kw = k.w(0);
        if schema::parsed_not_run("global_defs", kw) {
            self.d.parsed_unsupported(k.loc, kw);
        }
        match kw {
            "net_namespace" => g.net_namespace = self.string(k, 1),
            "net_namespace_ipvs" => g.net_namespace_ipvs = Some(k.word(1).unwrap_or("").to_string()),
            "namespace_with_ipsets" => g.namespace_with_ipsets = true,
            "use_pid_dir" => g.use_pid_dir = true,
            "instance" => g.instance = self.string(k, 1),
            "child_wait_time" => g.child_wait_time = self.timer(k, 1, 0.0, 1e6),
            "linkbeat_use_polling" => g.linkbeat_use_polling = true,
            "process_names" => g.process_names = true,
            "process_name" => g.process_name = self.string(k, 1),
            "vrrp_process_name" => g.vrrp_process_name = self.string(k, 1),
            "checker_process_name" | "lvs_process_name" => g.checker_process_name = self.string(k, 1),
            "bfd_process_name" => g.bfd_process_name = self.string(k, 1),
            "router_id" => g.router_id = self.string(k, 1),
            "lbd_xdp_interfaces" => g.lbd_xdp_interfaces = k.words().skip(1).map(str::to_string).collect(),
            "lbd_dataplane" => {
                if let Some(word) = self.arg(k, 1, "xdp or ipvs") {
                    match crate::dataplane::Backend::from_keyword(word) {
                        Some(backend) => g.lbd_dataplane = Some(backend),
                        None => self
                            .d
                            .error(k.loc_of(1), format!("unknown data plane [{word}], expected xdp or ipvs")),
                    }
                }
            }
            "lbd_fnat_toa" => g.lbd_fnat_toa = self.opt_bool(k, 1),
            "notification_email_from" => g.notification_email_from = self.string(k, 1),
            "smtp_server" => {
                if let Some(host) = self.string(k, 1) {
                    let port = if k.len() > 2 { self.u16v(k, 2, 1, 65535).unwrap_or(25) } else { 25 };
                    g.smtp_server = Some(SmtpServer { host, port });
                }
            }
            "smtp_helo_name" => g.smtp_helo_name = self.string(k, 1),
            "smtp_connect_timeout" => {
                g.smtp_connect_timeout = self.uint(k, 1, 1, 65535).map(Duration::from_secs)
            }
            "notification_email" => {
                for e in self.value_block(k) {
                    g.notification_email.extend(e.words().map(str::to_string));
                }
            }
            "smtp_alert" => g.smtp_alert = self.opt_bool(k, 1),
            "smtp_alert_vrrp" => g.smtp_alert_vrrp = self.opt_bool(k, 1),
            "smtp_alert_checker" => g.smtp_alert_checker = self.opt_bool(k, 1),
            "checker_log_all_failures" => g.checker_log_all_failures = self.opt_bool(k, 1),
            "no_email_faults" => g.no_email_faults = true,
            "startup_script" => g.startup_script = self.script(k),
            "startup_script_timeout" => {
                g.startup_script_timeout = self.uint(k, 1, 1, 1000).map(Duration::from_secs)
            }
            "shutdown_script" => g.shutdown_script = self.script(k),
            "shutdown_script_timeout" => {
                g.shutdown_script_timeout = self.uint(k, 1, 1, 1000).map(Duration::from_secs)
            }
            "max_auto_priority" => {
                g.max_auto_priority = if k.len() > 1 { self.i32v(k, 1, -1, 99) } else { Some(99) };
            }
            "min_auto_priority_delay" => {
                g.min_auto_priority_delay = self.uint(k, 1, 1, 10_000_000).map(Duration::from_micros);
            }
            "dynamic_interfaces" => {
                g.dynamic_interfaces = true;
                match k.word(1) {
                    None => {}
                    Some("allow_if_changes") => g.dynamic_interfaces_allow_if_changes = true,
                    Some(w) => self.d.error(
                        k.loc_of(1),
                        format!("dynamic_interfaces: unknown option '{w}', expected allow_if_changes"),
                    ),
                }
            }
            "default_interface" => g.default_interface = self.string(k, 1),
            "disable_local_igmp" => g.disable_local_igmp = true,
            "lvs_timeouts" => {
                let mut t = LvsTimeouts::default();
                let mut i = 1;
                while i < k.len() {
                    let slot = match k.w(i) {
                        "tcp" => &mut t.tcp,
                        "tcpfin" => &mut t.tcpfin,
                        "udp" => &mut t.udp,
                        w => {
                            self.d.error(
                                k.loc_of(i),
                                format!("lvs_timeouts: unknown protocol '{w}', expected tcp, tcpfin or udp"),
                            );
                            i += 1;
                            continue;
                        }
                    };
                    *slot = self.uint(k, i + 1, 1, 86400 * 31).map(Duration::from_secs);
                    i += 2;
                }
                if t == LvsTimeouts::default() {
                    self.d.error(k.loc, "lvs_timeouts: at least one of tcp, tcpfin, udp must be given");
                } else {
                    g.lvs_timeouts = Some(t);
                }
            }
            "lvs_flush" => g.lvs_flush = true,
            "lvs_flush_on_stop" | "lvs_flush_onstop" => {
                g.lvs_flush_on_stop = match k.word(1) {
                    None => Some(LvsFlushOnStop::All),
                    Some("VS") => Some(LvsFlushOnStop::Vs),
                    Some(w) => {
                        self.d.error(k.loc_of(1), format!("{kw}: unknown option '{w}', expected VS"));
                        None
                    }
                }
            }
            "lvs_sync_daemon" => g.lvs_sync_daemon = self.lvs_sync_daemon(k),
            "vrrp_mcast_group4" => {
                g.vrrp_mcast_group4 = match self.ip(k, 1) {
                    Some(IpAddr::V4(a)) if a.is_multicast() => Some(a),
                    Some(a) => {
                        self.d.error(
                            k.loc_of(1),
                            format!("vrrp_mcast_group4: {a} is not an IPv4 multicast address"),
                        );
                        None
                    }
                    None => None,
                }
            }
            "vrrp_mcast_group6" => {
                g.vrrp_mcast_group6 = match self.ip(k, 1) {
                    Some(IpAddr::V6(a)) if a.is_multicast() => Some(a),
                    Some(a) => {
                        self.d.error(
                            k.loc_of(1),
                            format!("vrrp_mcast_group6: {a} is not an IPv6 multicast address"),
                        );
                        None
                    }
                    None => None,
                }
            }
            "vrrp_garp_master_delay" => {
                g.vrrp_garp_master_delay = self.uint(k, 1, 0, 86400).map(Duration::from_secs)
            }
            "vrrp_garp_master_repeat" => g.vrrp_garp_master_repeat = self.u32v(k, 1, 0, 65535),
            "vrrp_garp_master_refresh" => {
                g.vrrp_garp_master_refresh = self.uint(k, 1, 0, 86400 * 365).map(Duration::from_secs)
            }
            "vrrp_garp_master_refresh_repeat" => {
                g.vrrp_garp_master_refresh_repeat = self.u32v(k, 1, 0, 65535)
            }
            "vrrp_garp_lower_prio_delay" => {
                g.vrrp_garp_lower_prio_delay = self.uint(k, 1, 0, 86400).map(Duration::from_secs)
            }
            "vrrp_garp_lower_prio_repeat" => g.vrrp_garp_lower_prio_repeat = self.u32v(k, 1, 0, 65535),
            "vrrp_down_timer_adverts" => g.vrrp_down_timer_adverts = self.u32v(k, 1, 1, 100),
            // keepalived 2.2.7 rejects 0 here: "number '0' outside range [0.000001, 4294.967295]".
            "vrrp_garp_interval" => g.vrrp_garp_interval = self.timer(k, 1, 0.000_001, 4_294.967_295),
            "vrrp_gna_interval" => g.vrrp_gna_interval = self.timer(k, 1, 0.000_001, 4_294.967_295),
            "vrrp_min_garp" => g.vrrp_min_garp = self.opt_bool(k, 1),
            "vrrp_garp_extra_if" | "vrrp_vmac_garp_intvl" => g.vrrp_garp_extra_if = self.garp_extra_if(k),
            "vrrp_lower_prio_no_advert" => g.vrrp_lower_prio_no_advert = self.opt_bool(k, 1),
            "vrrp_higher_prio_send_advert" => g.vrrp_higher_prio_send_advert = self.opt_bool(k, 1),
            "vrrp_version" => g.vrrp_version = self.vrrp_version(k),
            "vrrp_iptables" => g.vrrp_iptables = Some(k.words().skip(1).map(str::to_string).collect()),
            "vrrp_ipsets" => g.vrrp_ipsets = Some(k.words().skip(1).map(str::to_string).collect()),
            "nftables" => g.nftables = Some(k.word(1).unwrap_or("keepalived").to_string()),
            "nftables_priority" => g.nftables_priority = self.i32v(k, 1, i32::MIN, i32::MAX),
            "nftables_ifindex" => g.nftables_ifindex = true,
            "nftables_counters" => g.nftables_counters = true,
            "nftables_ipvs" => g.nftables_ipvs = Some(k.word(1).unwrap_or("keepalived_ipvs").to_string()),
            "nftables_ipvs_priority" => g.nftables_ipvs_priority = self.i32v(k, 1, i32::MIN, i32::MAX),
            "nftables_ipvs_start_fwmark" => g.nftables_ipvs_start_fwmark = self.u32v(k, 1, 1, u32::MAX),
            "vrrp_check_unicast_src" => g.vrrp_check_unicast_src = true,
            "vrrp_skip_check_adv_addr" => g.vrrp_skip_check_adv_addr = true,
            "vrrp_strict" => g.vrrp_strict = true,
            "vrrp_notify_priority_changes" => g.vrrp_notify_priority_changes = self.opt_bool(k, 1),
            "vrrp_priority" => g.vrrp_priority = self.i32v(k, 1, -20, 19),
            "checker_priority" => g.checker_priority = self.i32v(k, 1, -20, 19),
            "bfd_priority" => g.bfd_priority = self.i32v(k, 1, -20, 19),
            "vrrp_no_swap" => g.vrrp_no_swap = true,
            "checker_no_swap" => g.checker_no_swap = true,
            "bfd_no_swap" => g.bfd_no_swap = true,
            "vrrp_rt_priority" => g.vrrp_rt_priority = self.u32v(k, 1, 1, 99),
            "checker_rt_priority" => g.checker_rt_priority = self.u32v(k, 1, 1, 99),
            "bfd_rt_priority" => g.bfd_rt_priority = self.u32v(k, 1, 1, 99),
            "vrrp_cpu_affinity" => g.vrrp_cpu_affinity = self.cpu_list(k),
            "checker_cpu_affinity" => g.checker_cpu_affinity = self.cpu_list(k),
            "bfd_cpu_affinity" => g.bfd_cpu_affinity = self.cpu_list(k),
            "vrrp_rlimit_rttime" | "vrrp_rlimit_rtime" => {
                g.vrrp_rlimit_rttime = self.uint(k, 1, 1, u64::from(u32::MAX))
            }
            "checker_rlimit_rttime" | "checker_rlimit_rtime" => {
                g.checker_rlimit_rttime = self.uint(k, 1, 1, u64::from(u32::MAX));
            }
            "bfd_rlimit_rttime" | "bfd_rlimit_rtime" => {
                g.bfd_rlimit_rttime = self.uint(k, 1, 1, u64::from(u32::MAX))
            }
            "snmp_socket" => g.snmp_socket = self.string(k, 1),
            "enable_traps" => g.enable_traps = true,
            "enable_snmp_vrrp" | "enable_snmp_keepalived" => g.enable_snmp_vrrp = true,
            "enable_snmp_checker" => g.enable_snmp_checker = true,
            "enable_snmp_rfc" => {
                g.enable_snmp_rfcv2 = true;
                g.enable_snmp_rfcv3 = true;
            }
            "enable_snmp_rfcv2" => g.enable_snmp_rfcv2 = true,
            "enable_snmp_rfcv3" => g.enable_snmp_rfcv3 = true,
            "enable_dbus" => g.enable_dbus = true,
            "dbus_service_name" => g.dbus_service_name = self.string(k, 1),
            "script_user" => {
                if let Some(user) = self.string(k, 1) {
                    g.script_user = Some(ScriptUser { user, group: k.word(2).map(str::to_string) });
                }
            }
            "enable_script_security" => g.enable_script_security = true,
            "notify_fifo" => g.notify_fifo = self.fifo(k),
            "notify_fifo_script" => g.notify_fifo_script = self.script(k),
            "vrrp_notify_fifo" => g.vrrp_notify_fifo = self.fifo(k),
            "vrrp_notify_fifo_script" => g.vrrp_notify_fifo_script = self.script(k),
            "lvs_notify_fifo" => g.lvs_notify_fifo = self.fifo(k),
            "lvs_notify_fifo_script" => g.lvs_notify_fifo_script = self.script(k),
            "fifo_write_vrrp_states_on_reload" => g.fifo_write_vrrp_states_on_reload = true,
            "vrrp_netlink_cmd_rcv_bufs" => g.vrrp_netlink_cmd_rcv_bufs = self.u32v(k, 1, 0, u32::MAX),
            "vrrp_netlink_cmd_rcv_bufs_force" => g.vrrp_netlink_cmd_rcv_bufs_force = self.opt_bool(k, 1),
            "vrrp_netlink_monitor_rcv_bufs" => g.vrrp_netlink_monitor_rcv_bufs = self.u32v(k, 1, 0, u32::MAX),
            "vrrp_netlink_monitor_rcv_bufs_force" => {
                g.vrrp_netlink_monitor_rcv_bufs_force = self.opt_bool(k, 1)
            }
            "process_monitor_rcv_bufs" => g.process_monitor_rcv_bufs = self.u32v(k, 1, 0, u32::MAX),
            "process_monitor_rcv_bufs_force" => g.process_monitor_rcv_bufs_force = self.opt_bool(k, 1),
            "lvs_netlink_cmd_rcv_bufs" => g.lvs_netlink_cmd_rcv_bufs = self.u32v(k, 1, 0, u32::MAX),
            "lvs_netlink_cmd_rcv_bufs_force" => g.lvs_netlink_cmd_rcv_bufs_force = self.opt_bool(k, 1),
            "lvs_netlink_monitor_rcv_bufs" => g.lvs_netlink_monitor_rcv_bufs = self.u32v(k, 1, 0, u32::MAX),
            "lvs_netlink_monitor_rcv_bufs_force" => {
                g.lvs_netlink_monitor_rcv_bufs_force = self.opt_bool(k, 1)
            }
            "rs_init_notifies" => g.rs_init_notifies = true,
            "no_checker_emails" => g.no_checker_emails = true,
            "vrrp_rx_bufs_policy" => {
                g.vrrp_rx_bufs_policy = match self.arg(k, 1, "MTU, ADVERT or a size") {
                    Some("MTU") => Some(RxBufsPolicy::Mtu),
                    Some("ADVERT") => Some(RxBufsPolicy::Advert),
                    Some(_) => self.uint(k, 1, 1, u64::from(u32::MAX)).map(RxBufsPolicy::Size),
                    None => None,
                }
            }
            "vrrp_rx_bufs_multiplier" => g.vrrp_rx_bufs_multiplier = self.u32v(k, 1, 1, u32::MAX),
            "vrrp_startup_delay" => g.vrrp_startup_delay = self.timer(k, 1, 0.0, 3600.0),
            "log_unknown_vrids" => g.log_unknown_vrids = true,
            "vmac_prefix" => g.vmac_prefix = self.string(k, 1),
            "vmac_addr_prefix" => g.vmac_addr_prefix = self.string(k, 1),
            "umask" => g.umask = self.umask(k),
            "random_seed" => {
                g.random_seed = self.u32v(k, 1, 0, u32::MAX);
                if let Some(s) = g.random_seed {
                    self.lx.set_random_seed(u64::from(s));
                }
            }
            "reload_check_config" => g.reload_check_config = Some(k.word(1).unwrap_or("").to_string()),
            "reload_time_file" => g.reload_time_file = self.string(k, 1),
            "reload_repeat" => g.reload_repeat = true,
            "reload_file" => g.reload_file = Some(k.word(1).unwrap_or("").to_string()),
            "include_check" => g.include_check = Some(k.words().skip(1).map(str::to_string).collect()),
            "config_save_dir" => g.config_save_dir = self.string(k, 1),
            "tmp_config_directory" => g.tmp_config_directory = self.string(k, 1),
            "data_use_instance" => g.data_use_instance = self.opt_bool(k, 1),
            _ => self.other("global_defs", k),
        }
    }

    fn lvs_sync_daemon(&mut self, k: &Line) -> Option<LvsSyncDaemon> {
        let mut s = LvsSyncDaemon { interface: self.string(k, 1)?, ..LvsSyncDaemon::default() };
        let mut i = 2;
        while i < k.len() {
            match k.w(i) {
                "inst" => {
                    s.instance = k.word(i + 1).map(str::to_string);
                    i += 2;
                }
                "id" => {
                    s.id = self.u8v(k, i + 1, 0, 255);
                    i += 2;
                }
                "maxlen" => {
                    s.maxlen = self.u16v(k, i + 1, 1, 65507);
                    i += 2;
                }
                "port" => {
                    s.port = self.u16v(k, i + 1, 1, 65535);
                    i += 2;
                }
                "ttl" => {
                    s.ttl = self.u8v(k, i + 1, 1, 255);
                    i += 2;
                }
                "group" => {
                    s.group = self.ip(k, i + 1);
                    i += 2;
                }
                w if i == 2 && s.instance.is_none() => {
                    s.instance = Some(w.to_string());
                    i += 1;
                }
                w => {
                    self.d.error(k.loc_of(i), format!("lvs_sync_daemon: unknown option '{w}', expected inst, id, maxlen, port, ttl or group"));
                    i += 1;
                }
            }
        }
        Some(s)
    }

    pub(super) fn garp_extra_if(&mut self, k: &Line) -> Option<GarpExtraIf> {
        let (all, i) = if k.word(1) == Some("all") { (true, 2) } else { (false, 1) };
        self.uint(k, i, 0, 86400).map(|s| GarpExtraIf { all, interval: Duration::from_secs(s) })
    }

    pub(super) fn vrrp_version(&mut self, k: &Line) -> Option<VrrpVersion> {
        match self.u8v(k, 1, 2, 3)? {
            2 => Some(VrrpVersion::V2),
            _ => Some(VrrpVersion::V3),
        }
    }

    fn fifo(&mut self, k: &Line) -> Option<NotifyFifo> {
        let path = self.string(k, 1)?;
        Some(NotifyFifo { path, user: k.word(2).map(str::to_string), group: k.word(3).map(str::to_string) })
    }

    fn cpu_list(&mut self, k: &Line) -> Vec<u32> {
        (1..k.len()).filter_map(|i| self.u32v(k, i, 0, 4095)).collect()
    }

    fn umask(&mut self, k: &Line) -> Option<u32> {
        let w = self.arg(k, 1, "umask")?;
        let parsed = if w.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            let (digits, radix) = if let Some(h) = w.strip_prefix("0x") {
                (h, 16)
            } else if w.len() > 1 && w.starts_with('0') {
                (&w[1..], 8)
            } else {
                (w, 10)
            };
            u32::from_str_radix(digits, radix).ok()
        } else {
            let mut v = 0u32;
            let mut ok = true;
            for bit in w.split('|').map(str::trim) {
                v |= match bit {
                    "IRUSR" => 0o400,
                    "IWUSR" => 0o200,
                    "IXUSR" => 0o100,
                    "IRGRP" => 0o040,
                    "IWGRP" => 0o020,
                    "IXGRP" => 0o010,
                    "IROTH" => 0o004,
                    "IWOTH" => 0o002,
                    "IXOTH" => 0o001,
                    _ => {
                        ok = false;
                        0
                    }
                };
            }
            ok.then_some(v)
        };
        match parsed {
            Some(v) if v <= 0o777 => Some(v),
            _ => {
                self.d.error(
                    k.loc_of(1),
                    format!(
                        "umask: invalid value '{w}', expected a number or I{{R|W|X}}{{USR|GRP|OTH}} bits"
                    ),
                );
                None
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // ip address / route / rule entries (ip(8) syntax)

    /// One address line of `virtual_ipaddress`, `virtual_ipaddress_excluded` or
    /// `static_ipaddress`.
    pub(super) fn ip_address_entry(&mut self, e: &Line, is_static: bool) -> Option<IpAddressEntry> {
        let w = e.w(0);
        let address = match w.parse::<IpPrefix>() {
            Ok(a) => a,
            Err(_) => {
                self.d.error(e.loc, format!("VRRP parsed invalid IP {w}. skipping IP..."));
                return None;
            }
        };
        let mut a = IpAddressEntry { address, ..IpAddressEntry::default() };
        let mut i = 1;
        while i < e.len() {
            let opt = e.w(i);
            let val = e.word(i + 1);
            let take = |p: &mut Self, what: &str| -> Option<String> {
                match val {
                    Some(v) => Some(v.to_string()),
                    None => {
                        p.d.error(e.loc_of(i), format!("{w}: option '{opt}' is missing its {what}"));
                        None
                    }
                }
            };
            let used = match opt {
                "brd" | "broadcast" => {
                    a.broadcast = take(self, "address");
                    2
                }
                "dev" => {
                    a.dev = take(self, "interface");
                    2
                }
                "scope" => {
                    a.scope = take(self, "scope");
                    if let Some(s) = &a.scope
                        && !matches!(s.as_str(), "global" | "site" | "link" | "host" | "nowhere" | "universe")
                        && s.parse::<u8>().is_err()
                    {
                        self.d.error(
                            e.loc_of(i + 1),
                            format!("Invalid scope '{s}' specified for {w} - setting to global"),
                        );
                        a.scope = None;
                    }
                    2
                }
                "label" => {
                    a.label = take(self, "label");
                    2
                }
                "peer" => {
                    a.peer = match val.map(str::parse::<IpPrefix>) {
                        Some(Ok(p)) => Some(p),
                        _ => {
                            self.d.error(
                                e.loc_of(i),
                                format!("{w}: invalid peer address '{}'", val.unwrap_or("")),
                            );
                            None
                        }
                    };
                    2
                }
                "home" => {
                    a.home = true;
                    1
                }
                "-nodad" | "nodad" => {
                    a.nodad = true;
                    1
                }
                "mngtmpaddr" => {
                    a.mngtmpaddr = true;
                    1
                }
                "noprefixroute" => {
                    a.noprefixroute = true;
                    1
                }
                "autojoin" => {
                    a.autojoin = true;
                    1
                }
                "no_track" if !is_static => {
                    a.no_track = true;
                    1
                }
                "preferred_lft" => {
                    match val {
                        Some("forever") => a.preferred_lft_forever = true,
                        Some(v) => match v.parse::<u32>() {
                            Ok(n) => a.preferred_lft = Some(n),
                            Err(_) => self.d.error(
                                e.loc_of(i + 1),
                                format!("{w}: invalid preferred_lft '{v}', expected a number or forever"),
                            ),
                        },
                        None => self.d.error(e.loc_of(i), format!("{w}: preferred_lft is missing its value")),
                    }
                    2
                }
                "use_vmac" if !is_static => {
                    // The optional name is any following word that is not an option.
                    match val {
                        Some(v) if !is_address_option(v) => {
                            a.use_vmac = Some(v.to_string());
                            2
                        }
                        _ => {
                            a.use_vmac = Some(String::new());
                            1
                        }
                    }
                }
                "track_group" if is_static => {
                    a.track_group = take(self, "group name");
                    2
                }
                _ => {
                    self.d.error(
                        e.loc_of(i),
                        format!("Unknown configuration entry '{opt}' for ip address - ignoring"),
                    );
                    1
                }
            };
            i += used;
        }
        Some(a)
    }

    /// One route line (`ip route` syntax).
    pub(super) fn route_entry(&mut self, e: &Line, is_static: bool) -> Option<RouteEntry> {
        let mut r = RouteEntry::default();
        let mut i = 0;
        let mut ok = true;
        while i < e.len() {
            let w = e.w(i);
            let val = e.word(i + 1);
            let need = |p: &mut Self| -> Option<&str> {
                if val.is_none() {
                    p.d.error(e.loc_of(i), format!("route option '{w}' is missing its value"));
                }
                val
            };
            match w {
                "src" => {
                    match need(self).map(str::parse::<IpAddr>) {
                        Some(Ok(a)) => r.src = Some(a),
                        Some(Err(_)) => {
                            self.d.error(
                                e.loc_of(i + 1),
                                format!("Invalid route source address {}", val.unwrap_or("")),
                            );
                            ok = false;
                        }
                        None => ok = false,
                    }
                    i += 2;
                }
                "via" | "gw" | "or" => {
                    if w == "gw" {
                        self.d.warn(e.loc_of(i), "\"gw\" for routes is deprecated. Please use \"via\"");
                    } else if w == "or" {
                        self.d.warn(e.loc_of(i), "\"or\" for routes is deprecated. Please use \"nexthop\"");
                    }
                    let mut j = i + 1;
                    if matches!(e.word(j), Some("inet" | "inet6")) {
                        j += 1;
                    }
                    match e.word(j).map(str::parse::<IpAddr>) {
                        Some(Ok(a)) => r.via.push(a),
                        _ => {
                            self.d.error(e.loc_of(j), format!("Invalid route gateway address {}", e.w(j)));
                            ok = false;
                        }
                    }
                    i = j + 1;
                }
                "nexthop" => {
                    r.options.push(w.to_string());
                    i += 1;
                }
                "dev" | "oif" => {
                    r.dev = need(self).map(str::to_string);
                    i += 2;
                }
                "table" => {
                    r.table = need(self).map(str::to_string);
                    i += 2;
                }
                "metric" | "priority" | "preference" => {
                    match need(self).map(str::parse::<u32>) {
                        Some(Ok(m)) => r.metric = Some(m),
                        Some(Err(_)) => {
                            self.d.error(
                                e.loc_of(i + 1),
                                format!("Invalid route metric '{}'", val.unwrap_or("")),
                            );
                        }
                        None => {}
                    }
                    i += 2;
                }
                "scope" => {
                    r.scope = need(self).map(str::to_string);
                    i += 2;
                }
                "protocol" | "proto" => {
                    r.protocol = need(self).map(str::to_string);
                    i += 2;
                }
                "no_track" if !is_static => {
                    r.no_track = true;
                    i += 1;
                }
                "track_group" if is_static => {
                    r.track_group = need(self).map(str::to_string);
                    i += 2;
                }
                "inet6" => {
                    r.inet6 = true;
                    i += 1;
                }
                "inet" => i += 1,
                "to" => i += 1,
                "blackhole" | "unreachable" | "prohibit" | "throw" | "local" | "broadcast" | "multicast"
                | "nat" | "anycast" | "unicast"
                    if r.destination.is_none() =>
                {
                    r.route_type = Some(w.to_string());
                    i += 1;
                }
                // Options with one value that lbd keeps verbatim.
                "tos" | "dsfield" | "mtu" | "hoplimit" | "advmss" | "rtt" | "rttvar" | "reordering"
                | "window" | "cwnd" | "ssthresh" | "realms" | "rto_min" | "initcwnd" | "initrwnd"
                | "features" | "quickack" | "congctl" | "pref" | "fastopen_no_cookie" | "vrf" | "weight"
                | "encap" | "expires" => {
                    r.options.push(w.to_string());
                    let mut j = i + 1;
                    if matches!(e.word(j), Some("lock")) {
                        r.options.push("lock".into());
                        j += 1;
                    }
                    if let Some(v) = e.word(j) {
                        r.options.push(v.to_string());
                    }
                    i = j + 1;
                }
                "onlink" | "pervasive" | "append" | "lock" | "ecn" => {
                    r.options.push(w.to_string());
                    i += 1;
                }
                _ if r.destination.is_none() => {
                    let dest = if w == "default" {
                        Ok(IpPrefix::host(IpAddr::V4(Ipv4Addr::UNSPECIFIED)))
                    } else {
                        w.parse::<IpPrefix>()
                    };
                    match dest {
                        Ok(mut d) => {
                            if w == "default" {
                                d.len = 0;
                                if r.inet6 {
                                    d.addr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
                                }
                            }
                            r.destination = Some(d);
                        }
                        Err(_) => {
                            self.d.error(e.loc_of(i), format!("Invalid route destination {w}"));
                            ok = false;
                        }
                    }
                    i += 1;
                }
                _ => {
                    self.d.error(e.loc_of(i), format!("Unknown route option '{w}'"));
                    i += 1;
                }
            }
        }
        if r.destination.is_none() && ok {
            self.d.error(e.loc, "Route has no destination");
            return None;
        }
        ok.then_some(r)
    }

    /// One rule line (`ip rule` syntax).
    pub(super) fn rule_entry(&mut self, e: &Line, is_static: bool) -> Option<RuleEntry> {
        let mut r = RuleEntry::default();
        let mut i = 0;
        let mut ok = true;
        while i < e.len() {
            let w = e.w(i);
            let val = e.word(i + 1);
            match w {
                "from" | "to" => {
                    let v = val.unwrap_or("");
                    let p = if v == "all" { Ok(None) } else { v.parse::<IpPrefix>().map(Some) };
                    match p {
                        Ok(p) => {
                            if w == "from" {
                                r.from = p;
                            } else {
                                r.to = p;
                            }
                        }
                        Err(_) => {
                            self.d.error(
                                e.loc_of(i + 1),
                                format!("VRRP parsed invalid IP {v}. skipping IP..."),
                            );
                            self.d.error(e.loc_of(i + 1), format!("Invalid rule {w} address {v}"));
                            ok = false;
                        }
                    }
                    i += 2;
                }
                "table" | "lookup" => {
                    r.table = val.map(str::to_string);
                    i += 2;
                }
                "preference" | "priority" | "pref" => {
                    match val.map(str::parse::<u32>) {
                        Some(Ok(p)) => r.preference = Some(p),
                        _ => self.d.error(
                            e.loc_of(i + 1),
                            format!("Invalid rule preference '{}'", val.unwrap_or("")),
                        ),
                    }
                    i += 2;
                }
                "iif" | "dev" => {
                    r.iif = val.map(str::to_string);
                    i += 2;
                }
                "oif" => {
                    r.oif = val.map(str::to_string);
                    i += 2;
                }
                "fwmark" => {
                    r.fwmark = val.map(str::to_string);
                    i += 2;
                }
                "no_track" if !is_static => {
                    r.no_track = true;
                    i += 1;
                }
                "track_group" if is_static => {
                    r.track_group = val.map(str::to_string);
                    i += 2;
                }
                "inet6" => {
                    r.inet6 = true;
                    i += 1;
                }
                "inet" => i += 1,
                "not" | "l3mdev" | "blackhole" | "prohibit" | "unreachable" => {
                    r.options.push(w.to_string());
                    i += 1;
                }
                "tos"
                | "dsfield"
                | "realms"
                | "goto"
                | "suppress_prefixlength"
                | "suppress_ifgroup"
                | "uidrange"
                | "protocol"
                | "ip_proto"
                | "sport"
                | "dport"
                | "nat"
                | "map-to"
                | "type" => {
                    r.options.push(w.to_string());
                    if let Some(v) = val {
                        r.options.push(v.to_string());
                    }
                    i += 2;
                }
                _ => {
                    self.d.error(e.loc_of(i), format!("Unknown rule option '{w}'"));
                    i += 1;
                }
            }
        }
        if !ok {
            return None;
        }
        if r.preference.is_none() {
            self.d.warn(e.loc, "Rule has no preference specified - keepalived will assign one. This is probably not what you want.");
        }
        Some(r)
    }

    // -----------------------------------------------------------------------------------------
    // Tracking objects

    fn bfd_instance(&mut self, l: &Line) {
        let mut b = BfdInstance { name: self.block_name(l), ..BfdInstance::default() };
        self.block(l, |p, k| match k.w(0) {
            "source_ip" => b.source_ip = p.ip(&k, 1),
            "neighbor_ip" | "neighbour_ip" => b.neighbor_ip = p.ip(&k, 1),
            "min_rx" => b.min_rx = p.millis(&k).unwrap_or(b.min_rx),
            "min_tx" => b.min_tx = p.millis(&k).unwrap_or(b.min_tx),
            "idle_tx" => b.idle_tx = p.millis(&k).unwrap_or(b.idle_tx),
            "multiplier" => b.multiplier = p.u8v(&k, 1, 1, 255).unwrap_or(b.multiplier),
            "passive" => b.passive = true,
            "ttl" => b.ttl = p.u8v(&k, 1, 1, 255).unwrap_or(b.ttl),
            "hoplimit" => b.hoplimit = p.u8v(&k, 1, 1, 255).unwrap_or(b.hoplimit),
            "max_hops" => b.max_hops = p.u8v(&k, 1, 0, 255).unwrap_or(b.max_hops),
            "weight" => {
                b.weight = p.i32v(&k, 1, -253, 253).unwrap_or(0);
                b.reverse = k.word(2) == Some("reverse");
            }
            "vrrp" => b.vrrp = true,
            "checker" => b.checker = true,
            _ => p.other("bfd_instance", &k),
        });
        let name = &b.name;
        let problem = match (b.neighbor_ip, b.source_ip) {
            _ if name.is_empty() => return,
            (None, _) => Some(format!("bfd_instance {name} has no neighbor_ip - ignoring")),
            (Some(n), Some(s)) if n.is_ipv6() != s.is_ipv6() => Some(format!(
                "bfd_instance {name}: source_ip {s} and neighbor_ip {n} are of different families - ignoring"
            )),
            (Some(n), _) => {
                if self.cfg.bfd_instances.iter().any(|o| &o.name == name) {
                    Some(format!("bfd_instance {name} defined twice - ignoring the second"))
                } else {
                    self.cfg.bfd_instances.iter().find(|o| o.neighbor_ip == Some(n)).map(|o| {
                        format!(
                            "bfd_instance {name}: neighbor_ip {n} is already bfd_instance {}'s - ignoring",
                            o.name
                        )
                    })
                }
            }
        };
        match problem {
            Some(message) => self.d.error(l.loc, message),
            None => self.cfg.bfd_instances.push(b),
        }
    }

    /// A BFD interval in milliseconds (microsecond resolution).
    fn millis(&mut self, k: &Line) -> Option<Duration> {
        let w = self.arg(k, 1, "interval in ms")?;
        match secs::parse(w) {
            Ok(d) if !w.ends_with('s') && d.as_micros() > 0 && d.as_secs() <= 1_000_000 => {
                Some(Duration::from_micros((d.as_micros() / 1000) as u64))
            }
            _ => {
                self.d.error(
                    k.loc_of(1),
                    format!("{}: invalid interval '{w}', expected milliseconds 0.001-1000000", k.w(0)),
                );
                None
            }
        }
    }

    /// The NAME of `keyword NAME {`, reporting when it is missing.
    pub(super) fn block_name(&mut self, l: &Line) -> String {
        match l.word(1) {
            Some(n) => {
                self.no_extra(l, 2);
                n.to_string()
            }
            None => {
                self.d.error(l.loc, format!("{}: missing name", l.w(0)));
                String::new()
            }
        }
    }

    fn vrrp_script(&mut self, l: &Line) {
        let mut s = VrrpScript { name: self.block_name(l), ..VrrpScript::default() };
        let mut user: Option<(String, Option<String>)> = None;
        self.block(l, |p, k| match k.w(0) {
            "script" => s.script = p.script(&k),
            "interval" => s.interval = p.timer(&k, 1, 0.000_001, 4294.0).unwrap_or(s.interval),
            "timeout" => s.timeout = p.timer(&k, 1, 0.000_001, 4294.0),
            "weight" => {
                s.weight = p.i32v(&k, 1, -253, 253).unwrap_or(0);
                match k.word(2) {
                    None => {}
                    Some("reverse") => s.weight_reverse = true,
                    Some("noreverse") => s.weight_reverse = false,
                    Some(w) => {
                        p.d.error(k.loc_of(2), format!("weight: unknown option '{w}', expected reverse"))
                    }
                }
            }
            "rise" => s.rise = p.u32v(&k, 1, 1, u32::MAX).unwrap_or(s.rise),
            "fall" => s.fall = p.u32v(&k, 1, 1, u32::MAX).unwrap_or(s.fall),
            "user" => {
                if let Some(u) = p.string(&k, 1) {
                    user = Some((u, k.word(2).map(str::to_string)));
                }
            }
            "init_fail" => s.init_fail = true,
            _ => p.other("vrrp_script", &k),
        });
        if let (Some((u, g)), Some(script)) = (user, s.script.as_mut()) {
            script.user = Some(u);
            script.group = g;
        }
        if s.script.is_none() {
            self.d.warn(l.loc, format!("No script set for vrrp_script {} - removing", s.name));
            return;
        }
        self.cfg.vrrp_scripts.push(s);
    }

    fn track_file(&mut self, l: &Line) {
        let mut t = TrackFile { name: self.block_name(l), ..TrackFile::default() };
        self.block(l, |p, k| match k.w(0) {
            "file" => t.file = p.string(&k, 1),
            "weight" => {
                t.weight = p.i32v(&k, 1, -2_147_483_647, 2_147_483_647).unwrap_or(1);
                t.reverse = k.word(2) == Some("reverse");
            }
            "init_file" => {
                let mut f = InitFile::default();
                for i in 1..k.len() {
                    if k.w(i) == "overwrite" {
                        f.overwrite = true;
                    } else if let Some(v) = p.int(&k, i, i64::from(i32::MIN), i64::from(i32::MAX)) {
                        f.value = v;
                    }
                }
                t.init_file = Some(f);
            }
            _ => p.other("track_file", &k),
        });
        if t.file.is_none() {
            self.d.warn(l.loc, format!("No file set for track_file {} - removing", t.name));
            return;
        }
        self.cfg.track_files.push(t);
    }

    fn track_process(&mut self, l: &Line) {
        let mut t = TrackProcess { name: self.block_name(l), ..TrackProcess::default() };
        self.block(l, |p, k| match k.w(0) {
            "process" => {
                t.process = k.words().skip(1).map(str::to_string).collect();
                if t.process.is_empty() {
                    p.d.error(k.loc, "process: missing process name");
                }
            }
            "param_match" => match k.word(1) {
                Some(m @ ("initial" | "partial")) => t.param_match = Some(m.to_string()),
                _ => p.d.error(k.loc, "param_match: expected initial or partial"),
            },
            "weight" => {
                t.weight = p.i32v(&k, 1, -254, 254).unwrap_or(0);
                t.reverse = k.word(2) == Some("reverse");
            }
            "quorum" => t.quorum = p.u32v(&k, 1, 1, 65535).unwrap_or(1),
            "quorum_max" => t.quorum_max = p.u32v(&k, 1, 0, 65535),
            "delay" => {
                let d = p.timer(&k, 1, 0.000_001, 3600.0);
                t.fork_delay = d;
                t.terminate_delay = d;
            }
            "terminate_delay" => t.terminate_delay = p.timer(&k, 1, 0.000_001, 3600.0),
            "fork_delay" => t.fork_delay = p.timer(&k, 1, 0.000_001, 3600.0),
            "full_command" => t.full_command = true,
            _ => p.other("vrrp_track_process", &k),
        });
        if t.process.is_empty() {
            self.d.warn(l.loc, format!("No process specified for track_process {} - removing", t.name));
            return;
        }
        self.cfg.track_processes.push(t);
    }

    fn garp_group(&mut self, l: &Line) {
        let mut g = GarpGroup::default();
        self.block(l, |p, k| match k.w(0) {
            "garp_interval" => g.garp_interval = p.timer(&k, 1, 0.0, 4_294.967_295),
            "gna_interval" => g.gna_interval = p.timer(&k, 1, 0.0, 4_294.967_295),
            "interface" => g.interface = p.string(&k, 1),
            "interfaces" => {
                for e in p.value_block(&k) {
                    g.interfaces.extend(e.words().map(str::to_string));
                }
            }
            _ => p.other("garp_group", &k),
        });
        if g.interface.is_some() && !g.interfaces.is_empty() {
            self.d.error(l.loc, "garp_group: only one of interface or interfaces may be given");
        }
        self.cfg.garp_groups.push(g);
    }
}

/// True for the option words of an address line, so `use_vmac` can tell a name from an option.
fn is_address_option(w: &str) -> bool {
    matches!(
        w,
        "brd"
            | "broadcast"
            | "dev"
            | "scope"
            | "label"
            | "peer"
            | "home"
            | "-nodad"
            | "nodad"
            | "mngtmpaddr"
            | "noprefixroute"
            | "autojoin"
            | "no_track"
            | "preferred_lft"
            | "use_vmac"
            | "track_group"
    )
}
