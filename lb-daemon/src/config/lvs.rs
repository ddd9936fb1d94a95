//! Parsing of the LVS sections (keepalived's check_parser.c and the Alibaba LVS extensions):
//! `virtual_server_group`, `local_address_group`, `virtual_server`, `real_server` and every
//! health checker, into [`VirtualServer`] and friends.

use std::{net::IpAddr, time::Duration};

use super::{error::Severity, lexer::Line, model::*, parser::Parser};

/// Longest checker timer keepalived accepts (`read_timer` with TIMER_MAXIMUM, in seconds).
const TIMER_MAX: f64 = 4_294.967_295;
/// Shortest non-zero checker timer.
const TIMER_MIN: f64 = 0.000_001;

impl Parser {
    pub(super) fn virtual_server_group(&mut self, l: &Line) {
        let mut g = VirtualServerGroup { name: self.block_name(l), entries: Vec::new() };
        for e in self.list_block(l, 2) {
            if e.w(0) == "fwmark" {
                let Some(mark) = self.u32v(&e, 1, 1, u32::MAX) else { continue };
                let family = match e.word(2) {
                    None => None,
                    Some("inet") => Some(Family::Inet),
                    Some("inet6") => Some(Family::Inet6),
                    Some(w) => {
                        self.d.error(
                            e.loc_of(2),
                            format!(
                                "virtual_server_group {}: unknown family '{w}', expected inet or inet6",
                                g.name
                            ),
                        );
                        None
                    }
                };
                g.entries.push(VsgEntry::Fwmark { mark, family });
                continue;
            }
            let range = match e.w(0).parse::<AddressRange>() {
                Ok(r) => r,
                Err(msg) => {
                    self.d.error(e.loc, format!("virtual_server_group {}: {msg}", g.name));
                    continue;
                }
            };
            let port = if e.len() > 1 { self.port(&e, 1) } else { None };
            self.no_extra(&e, 3);
            g.entries.push(VsgEntry::Address { range, port });
        }
        self.cfg.virtual_server_groups.push(g);
    }

    pub(super) fn local_address_group(&mut self, l: &Line) {
        let mut g = LocalAddressGroup { name: self.block_name(l), addresses: Vec::new() };
        for e in self.list_block(l, 2) {
            match e.w(0).parse::<AddressRange>() {
                Ok(r) => g.addresses.push(r),
                Err(msg) => self.d.error(e.loc, format!("local_address_group {}: {msg}", g.name)),
            }
            self.no_extra(&e, 1);
        }
        self.cfg.local_address_groups.push(g);
    }

    pub(super) fn virtual_server(&mut self, l: &Line) {
        let address = match l.word(1) {
            Some("fwmark") => self.u32v(l, 2, 1, u32::MAX).map(|mark| VsAddress::Fwmark { mark }),
            Some("group") => self.string(l, 2).map(|name| VsAddress::Group { name }),
            Some(_) => {
                let addr = self.ip(l, 1);
                let port = if l.len() > 2 { self.port(l, 2) } else { None };
                addr.map(|address| VsAddress::Ip { address, port })
            }
            None => {
                self.d.error(
                    l.loc,
                    "virtual_server: missing address, expected IP [PORT], fwmark N or group NAME",
                );
                None
            }
        };
        let Some(address) = address else {
            self.skip_whole_block(l);
            return;
        };
        let mut vs = VirtualServer::new(address);
        let mut rs_locs = Vec::new();
        self.block(l, |p, k| {
            if k.w(0) == "real_server" {
                let before = vs.real_servers.len();
                p.vs_keyword(&mut vs, &k);
                if vs.real_servers.len() > before {
                    rs_locs.push(k.loc);
                }
            } else {
                p.vs_keyword(&mut vs, &k);
            }
        });
        vs.real_servers.shrink_to_fit();
        self.src.virtual_servers.push(l.loc);
        self.src.real_servers.push(rs_locs);
        self.cfg.virtual_servers.push(vs);
    }

    /// Skips the block of a keyword whose header was unusable.
    fn skip_whole_block(&mut self, opener: &Line) {
        self.block(opener, |p, k| {
            let _ = k;
            let _ = p;
        });
    }

    fn vs_keyword(&mut self, vs: &mut VirtualServer, k: &Line) {
        match k.w(0) {
            "ip_family" => {
                vs.ip_family = match self.arg(k, 1, "inet or inet6") {
                    Some("inet") => Some(Family::Inet),
                    Some("inet6") => Some(Family::Inet6),
                    Some(w) => {
                        self.d.error(
                            k.loc_of(1),
                            format!("ip_family: unknown family '{w}', expected inet or inet6"),
                        );
                        None
                    }
                    None => None,
                }
            }
            "retry" => vs.retry = self.u32v(k, 1, 0, u32::MAX),
            "delay_before_retry" => vs.delay_before_retry = self.timer(k, 1, 0.0, TIMER_MAX),
            "warmup" => vs.warmup = self.timer(k, 1, 0.0, TIMER_MAX),
            "connect_timeout" => vs.connect_timeout = self.timer(k, 1, TIMER_MIN, TIMER_MAX),
            "delay_loop" => vs.delay_loop = self.timer(k, 1, TIMER_MIN, TIMER_MAX),
            "inhibit_on_failure" => vs.inhibit_on_failure = self.opt_bool(k, 1).unwrap_or(true),
            "lb_algo" | "lvs_sched" => {
                let w = self.arg(k, 1, "scheduler");
                if let Some(w) = w {
                    match LbAlgo::ALL.iter().find(|(n, _)| *n == w) {
                        Some((_, a)) => vs.lvs_sched = Some(*a),
                        None => self.d.error(
                            k.loc_of(1),
                            format!("Invalid lvs_scheduler '{w}' - ignoring, expected rr|wrr|lc|wlc|lblc|lblcr|sh|dh|sed|nq|fo|ovf|mh|twos"),
                        ),
                    }
                }
            }
            "hashed" => vs.hashed = true,
            "ops" => vs.ops = true,
            "flag-1" => vs.flag_1 = true,
            "flag-2" => vs.flag_2 = true,
            "flag-3" => vs.flag_3 = true,
            "sh-port" => vs.sh_port = true,
            "sh-fallback" => vs.sh_fallback = true,
            "mh-port" => vs.mh_port = true,
            "mh-fallback" => vs.mh_fallback = true,
            "lb_kind" | "lvs_method" => vs.lvs_method = self.lvs_method(k),
            "persistence_engine" => vs.persistence_engine = self.string(k, 1),
            "persistence_timeout" => {
                vs.persistence_timeout = if k.len() > 1 { self.u32v(k, 1, 1, 4_294_967) } else { Some(360) };
            }
            "persistence_granularity" => {
                let w = self.arg(k, 1, "netmask or prefix length");
                if let Some(w) = w {
                    let ok = w.parse::<std::net::Ipv4Addr>().is_ok_and(|m| {
                        let m = u32::from(m);
                        m.leading_ones() + m.trailing_zeros() == 32
                    }) || w.parse::<u8>().is_ok_and(|n| (1..=128).contains(&n));
                    if ok {
                        vs.persistence_granularity = Some(w.to_string());
                    } else {
                        self.d.error(
                            k.loc_of(1),
                            format!(
                                "Invalid persistence_granularity '{w}', expected a netmask or prefix length"
                            ),
                        );
                    }
                }
            }
            "protocol" => {
                vs.protocol = match self.arg(k, 1, "TCP, UDP or SCTP") {
                    Some("TCP" | "tcp") => Some(Protocol::Tcp),
                    Some("UDP" | "udp") => Some(Protocol::Udp),
                    Some("SCTP" | "sctp") => Some(Protocol::Sctp),
                    Some(w) => {
                        self.d.error(
                            k.loc_of(1),
                            format!("Unknown protocol {w} - ignoring, expected TCP, UDP or SCTP"),
                        );
                        None
                    }
                    None => None,
                }
            }
            "ha_suspend" => vs.ha_suspend = true,
            "smtp_alert" => vs.smtp_alert = self.opt_bool(k, 1),
            "virtualhost" => vs.virtualhost = self.string(k, 1),
            "snmp_name" => vs.snmp_name = self.string(k, 1),
            "alpha" => vs.alpha = self.opt_bool(k, 1).unwrap_or(true),
            "omega" => vs.omega = self.opt_bool(k, 1).unwrap_or(true),
            "quorum_up" => vs.quorum_up = self.script(k),
            "quorum_down" => vs.quorum_down = self.script(k),
            "quorum" => vs.quorum = self.u32v(k, 1, 1, u32::MAX).unwrap_or(vs.quorum),
            "hysteresis" => vs.hysteresis = self.u32v(k, 1, 0, u32::MAX).unwrap_or(vs.hysteresis),
            "weight" => vs.weight = self.i32v(k, 1, 1, 65535),
            "sorry_server" => {
                if let Some(address) = self.ip(k, 1) {
                    let port = if k.len() > 2 { self.port(k, 2) } else { None };
                    vs.sorry_server = Some(SorryServer { address, port });
                }
            }
            "sorry_server_inhibit" => vs.sorry_server_inhibit = self.opt_bool(k, 1).unwrap_or(true),
            "sorry_server_lvs_method" => vs.sorry_server_lvs_method = self.lvs_method(k),
            "real_server" => {
                if let Some(rs) = self.real_server(k) {
                    vs.real_servers.push(rs);
                }
            }
            "laddr_group_name" => vs.laddr_group_name = self.string(k, 1),
            "syn_proxy" => vs.syn_proxy = true,
            "vip_bind_dev" => vs.vip_bind_dev = self.string(k, 1),
            "est_timeout" => vs.est_timeout = self.u32v(k, 1, 1, u32::MAX),
            _ => self.other("virtual_server", k),
        }
    }

    /// `lvs_method NAT|DR|TUN [type ipip|gue port N|gre] [nocsum|csum|remcsum]` or `FNAT`.
    fn lvs_method(&mut self, k: &Line) -> Option<LvsMethod> {
        let kind = match self.arg(k, 1, "NAT, DR, TUN or FNAT")? {
            "NAT" => LbKind::Nat,
            "DR" => LbKind::Dr,
            "TUN" => LbKind::Tun,
            "FNAT" => LbKind::Fnat,
            w => {
                self.d.error(
                    k.loc_of(1),
                    format!("PARSER : unknown [{w}] routing method, expected NAT, DR, TUN or FNAT"),
                );
                return None;
            }
        };
        if kind != LbKind::Tun {
            self.no_extra(k, 2);
            return Some(LvsMethod { kind, tunnel: None });
        }
        let mut t = Tunnel::default();
        let mut i = 2;
        while i < k.len() {
            match k.w(i) {
                "type" => {
                    match k.word(i + 1) {
                        Some(ty @ ("ipip" | "gue" | "gre")) => t.kind = Some(ty.to_string()),
                        other => self.d.error(
                            k.loc_of(i + 1),
                            format!(
                                "lvs_method: unknown tunnel type '{}', expected ipip, gue or gre",
                                other.unwrap_or("")
                            ),
                        ),
                    }
                    i += 2;
                }
                "port" => {
                    t.port = self.u16v(k, i + 1, 1, 65535);
                    i += 2;
                }
                c @ ("nocsum" | "csum" | "remcsum") => {
                    t.checksum = Some(c.to_string());
                    i += 1;
                }
                w => {
                    self.d.error(k.loc_of(i), format!("lvs_method: unknown tunnel option '{w}'"));
                    i += 1;
                }
            }
        }
        if t.kind.as_deref() == Some("gue") && t.port.is_none() {
            self.d.error(k.loc, "lvs_method TUN type gue requires a port");
        }
        if t.kind.as_deref() == Some("gre") && t.checksum.as_deref() == Some("remcsum") {
            self.d.error(k.loc, "lvs_method TUN type gre does not support remcsum");
        }
        Some(LvsMethod { kind, tunnel: (t != Tunnel::default()).then(|| Box::new(t)) })
    }

    fn real_server(&mut self, l: &Line) -> Option<RealServer> {
        let addr = self.ip(l, 1);
        let port = if l.len() > 2 { self.port(l, 2) } else { None };
        self.no_extra(l, 3);
        let Some(addr) = addr else {
            self.skip_whole_block(l);
            return None;
        };
        let mut rs = RealServer::new(addr, port);
        self.block(l, |p, k| p.rs_keyword(&mut rs, &k));
        // A Vec's first push reserves four elements; most real servers have one checker.
        rs.checkers.shrink_to_fit();
        Some(rs)
    }

    fn rs_keyword(&mut self, rs: &mut RealServer, k: &Line) {
        match k.w(0) {
            "weight" => rs.weight = self.i32v(k, 1, 0, 65535),
            "lvs_method" => rs.lvs_method = self.lvs_method(k),
            "uthreshold" => rs.uthreshold = self.u32v(k, 1, 0, u32::MAX),
            "lthreshold" => rs.lthreshold = self.u32v(k, 1, 0, u32::MAX),
            "inhibit_on_failure" => rs.inhibit_on_failure = self.opt_bool(k, 1),
            "notify_up" => rs.notify_up = self.script(k).map(Box::new),
            "notify_down" => rs.notify_down = self.script(k).map(Box::new),
            "alpha" => rs.alpha = self.opt_bool(k, 1),
            "retry" => rs.retry = self.u32v(k, 1, 0, u32::MAX),
            "delay_before_retry" => rs.delay_before_retry = self.timer(k, 1, 0.0, TIMER_MAX),
            "warmup" => rs.warmup = self.timer(k, 1, 0.0, TIMER_MAX),
            "connect_timeout" => rs.connect_timeout = self.timer(k, 1, TIMER_MIN, TIMER_MAX),
            "delay_loop" => rs.delay_loop = self.timer(k, 1, TIMER_MIN, TIMER_MAX),
            "smtp_alert" => rs.smtp_alert = self.opt_bool(k, 1),
            "virtualhost" => rs.virtualhost = self.string(k, 1),
            "snmp_name" => rs.snmp_name = self.string(k, 1),
            "HTTP_GET" | "SSL_GET" => {
                let mut h = HttpCheck::default();
                let ssl = k.w(0) == "SSL_GET";
                let ctx = if ssl { "SSL_GET" } else { "HTTP_GET" };
                self.no_extra(k, 1);
                self.block(k, |p, c| p.http_keyword(&mut h, ctx, &c));
                if h.urls.is_empty() {
                    self.d.warn(k.loc, format!("{ctx} has no url specified - ignoring checker"));
                } else if self.conn_usable(&h.conn, rs.address, k) {
                    rs.checkers.push(if ssl {
                        Checker::SslGet(Box::new(h))
                    } else {
                        Checker::HttpGet(Box::new(h))
                    });
                }
            }
            "TCP_CHECK" | "PING_CHECK" => {
                let mut c = CheckCommon::default();
                let ctx = if k.w(0) == "TCP_CHECK" { "TCP_CHECK" } else { "PING_CHECK" };
                self.no_extra(k, 1);
                self.block(k, |p, x| {
                    if !p.common_keyword(&mut c, &x, true) {
                        p.other(ctx, &x);
                    }
                });
                if !self.conn_usable(&c, rs.address, k) {
                    return;
                }
                rs.checkers.push(if ctx == "TCP_CHECK" {
                    Checker::TcpCheck(c)
                } else {
                    Checker::PingCheck(c)
                });
            }
            "SMTP_CHECK" => {
                let mut s = SmtpCheck::default();
                self.no_extra(k, 1);
                self.block(k, |p, x| match x.w(0) {
                    "helo_name" => s.helo_name = p.string(&x, 1),
                    "host" => {
                        // keepalived 2.2.7: a host starts from no connection options at all
                        // (not the SMTP_CHECK's), and its other options (retry, delay_loop,
                        // alpha, ...) are the SMTP_CHECK's own, as if written there.
                        let mut h = CheckCommon::default();
                        p.block(&x, |q, y| {
                            let own = CONNECTION_KEYWORDS.contains(&y.w(0));
                            if !q.common_keyword(if own { &mut h } else { &mut s.conn }, &y, true) {
                                q.other("SMTP_CHECK > host", &y);
                            }
                        });
                        if h.connect_timeout.is_none() {
                            p.d.push(
                                Severity::Notice,
                                x.loc,
                                "SMTP_CHECK host without connect_timeout: as in keepalived 2.2.7 its \
                                 timeout is 0 (not the SMTP_CHECK's), so its check always fails",
                            );
                        }
                        if p.conn_usable(&h, rs.address, &x) {
                            s.hosts.push(h);
                        }
                    }
                    _ => {
                        if !p.common_keyword(&mut s.conn, &x, true) {
                            p.other("SMTP_CHECK", &x);
                        }
                    }
                });
                // The SMTP_CHECK's own connection is a checker unless hosts replace it.
                if (s.hosts.is_empty() || smtp_has_own_connection(&s.conn))
                    && !self.conn_usable(&s.conn, rs.address, k)
                {
                    return;
                }
                rs.checkers.push(Checker::SmtpCheck(Box::new(s)));
            }
            "DNS_CHECK" => {
                let mut d = DnsCheck::default();
                self.no_extra(k, 1);
                self.block(k, |p, x| match x.w(0) {
                    "type" => match p.arg(&x, 1, "query type") {
                        Some(t @ ("A" | "NS" | "CNAME" | "SOA" | "MX" | "TXT" | "AAAA")) => {
                            d.query_type = Some(t.to_string())
                        }
                        Some(t) => p.d.error(
                            x.loc_of(1),
                            format!("DNS_CHECK: unknown type '{t}', expected A|NS|CNAME|SOA|MX|TXT|AAAA"),
                        ),
                        None => {}
                    },
                    "name" => d.name = p.string(&x, 1),
                    _ => {
                        if !p.common_keyword(&mut d.conn, &x, true) {
                            p.other("DNS_CHECK", &x);
                        }
                    }
                });
                if !self.conn_usable(&d.conn, rs.address, k) {
                    return;
                }
                rs.checkers.push(Checker::DnsCheck(Box::new(d)));
            }
            "MISC_CHECK" => {
                let mut m = MiscCheck::default();
                let mut user: Option<(String, Option<String>)> = None;
                self.no_extra(k, 1);
                self.block(k, |p, x| match x.w(0) {
                    "misc_path" => m.misc_path = p.script(&x),
                    "misc_timeout" => {
                        m.misc_timeout = p.uint(&x, 1, 1, u64::from(u32::MAX)).map(Duration::from_secs)
                    }
                    "misc_dynamic" => m.misc_dynamic = true,
                    "user" => {
                        if let Some(u) = p.string(&x, 1) {
                            user = Some((u, x.word(2).map(str::to_string)));
                        }
                    }
                    _ => {
                        if !p.common_keyword(&mut m.conn, &x, false) {
                            p.other("MISC_CHECK", &x);
                        }
                    }
                });
                if let (Some((u, g)), Some(s)) = (user, m.misc_path.as_mut()) {
                    s.user = Some(u);
                    s.group = g;
                }
                if m.misc_path.is_none() {
                    self.d.error(k.loc, "MISC_CHECK has no misc_path - ignoring checker");
                } else {
                    rs.checkers.push(Checker::MiscCheck(Box::new(m)));
                }
            }
            "UDP_CHECK" => {
                let mut u = UdpCheck::default();
                self.no_extra(k, 1);
                self.block(k, |p, x| match x.w(0) {
                    "payload" => {
                        let hex: String = x.words().skip(1).collect::<Vec<_>>().join(" ");
                        match parse_hex(&hex, false) {
                            Ok(b) if !b.is_empty() => u.payload = Some(b),
                            _ => p.d.error(
                                x.loc,
                                format!("UDP_CHECK: invalid payload '{hex}', expected hex digits"),
                            ),
                        }
                    }
                    "require_reply" => {
                        let hex: String = x.words().skip(1).collect::<Vec<_>>().join(" ");
                        match parse_hex(&hex, true) {
                            Ok(_) => u.require_reply = Some(hex),
                            Err(()) => p.d.error(
                                x.loc,
                                format!("UDP_CHECK: invalid require_reply '{hex}', expected hex digits or x"),
                            ),
                        }
                    }
                    "min_reply_length" => u.min_reply_length = p.u32v(&x, 1, 0, 65515),
                    "max_reply_length" => u.max_reply_length = p.u32v(&x, 1, 0, 65515),
                    _ => {
                        if !p.common_keyword(&mut u.conn, &x, true) {
                            p.other("UDP_CHECK", &x);
                        }
                    }
                });
                if !self.conn_usable(&u.conn, rs.address, k) {
                    return;
                }
                rs.checkers.push(Checker::UdpCheck(Box::new(u)));
            }
            "FILE_CHECK" => {
                let mut f = FileCheck::default();
                self.no_extra(k, 1);
                self.block(k, |p, x| match x.w(0) {
                    "track_file" => f.track_file = p.string(&x, 1),
                    "weight" => {
                        f.weight = p.i32v(&x, 1, -2_147_483_647, 2_147_483_647);
                        f.reverse = x.word(2) == Some("reverse");
                    }
                    "dynamic" => f.dynamic = true,
                    _ => p.other("FILE_CHECK", &x),
                });
                if f.track_file.is_none() {
                    self.d.error(k.loc, "FILE_CHECK has no track_file - ignoring checker");
                } else {
                    rs.checkers.push(Checker::FileCheck(f));
                }
            }
            "BFD_CHECK" => {
                let mut b = BfdCheck::default();
                self.no_extra(k, 1);
                self.block(k, |p, x| match x.w(0) {
                    "name" => b.name = p.string(&x, 1),
                    "alpha" => b.alpha = p.opt_bool(&x, 1),
                    _ => p.other("BFD_CHECK", &x),
                });
                if b.name.is_none() {
                    self.d.error(k.loc, "BFD_CHECK has no name - ignoring checker");
                } else {
                    rs.checkers.push(Checker::BfdCheck(b));
                }
            }
            _ => self.other("real_server", k),
        }
    }

    /// Options shared by the checkers; returns false when `k` is not one of them.
    /// `connection` is false for MISC_CHECK, which has only the timing options.
    fn common_keyword(&mut self, c: &mut CheckCommon, k: &Line, connection: bool) -> bool {
        match (k.w(0), connection) {
            ("connect_ip", true) => c.connect_ip = self.ip(k, 1),
            ("connect_port", true) => c.connect_port = self.port(k, 1),
            ("bindto", true) => c.bindto = self.ip(k, 1),
            ("bind_port", true) => c.bind_port = self.port(k, 1),
            ("bind_if", true) => {
                if let Some(name) = self.string(k, 1) {
                    // IFNAMSIZ less the NUL, as keepalived.
                    if name.len() > 15 {
                        self.d.error(k.loc_of(1), format!("Interface name {name} is too long - ignoring"));
                    } else {
                        c.bind_if = Some(name);
                    }
                }
            }
            ("connect_timeout", true) => {
                c.connect_timeout = self.timer(k, 1, TIMER_MIN, TIMER_MAX);
            }
            ("fwmark", true) => c.fwmark = self.u32v(k, 1, 0, u32::MAX),
            ("retry", _) => c.retry = self.u32v(k, 1, 0, u32::MAX),
            ("delay_before_retry", _) => c.delay_before_retry = self.timer(k, 1, 0.0, TIMER_MAX),
            ("warmup", _) => c.warmup = self.timer(k, 1, 0.0, TIMER_MAX),
            ("delay_loop", _) => c.delay_loop = self.timer(k, 1, TIMER_MIN, TIMER_MAX),
            ("alpha", _) => c.alpha = self.opt_bool(k, 1),
            ("log_all_failures", _) => c.log_all_failures = self.opt_bool(k, 1),
            _ => return false,
        }
        true
    }

    /// keepalived's `check_conn_opts`: a checker connecting to a link-local IPv6 address (its
    /// `connect_ip`, else the real server's) needs `bind_if` to say on which link; without
    /// one it is an error at the checker's line and the checker is ignored.
    fn conn_usable(&mut self, c: &CheckCommon, real: IpAddr, k: &Line) -> bool {
        let dst = c.connect_ip.unwrap_or(real);
        let link_local = matches!(dst, IpAddr::V6(a) if a.is_unicast_link_local());
        if link_local && c.bind_if.is_none() {
            self.d.error(
                k.loc,
                format!("Checker link local address {dst} requires a bind_if - ignoring {}", k.w(0)),
            );
            return false;
        }
        true
    }

    fn http_keyword(&mut self, h: &mut HttpCheck, ctx: &str, k: &Line) {
        match k.w(0) {
            "nb_get_retry" => h.conn.retry = self.u32v(k, 1, 0, u32::MAX),
            "virtualhost" => h.virtualhost = self.string(k, 1),
            "http_protocol" => {
                h.http_protocol = match self.arg(k, 1, "1.0, 1.0C or 1.1") {
                    Some("1.0") => Some(HttpProtocol::V1_0),
                    Some("1.0C" | "1.0c") => Some(HttpProtocol::V1_0C),
                    Some("1.1") => Some(HttpProtocol::V1_1),
                    Some(w) => {
                        self.d.error(
                            k.loc_of(1),
                            format!("Invalid http_protocol '{w}', expected 1.0, 1.0C or 1.1"),
                        );
                        None
                    }
                    None => None,
                }
            }
            "enable_sni" => h.enable_sni = true,
            "fast_recovery" => h.fast_recovery = self.opt_bool(k, 1),
            "url" => {
                let mut u = Url::default();
                self.block(k, |p, x| p.url_keyword(&mut u, ctx, &x));
                if u.path.is_none() {
                    self.d.error(k.loc, format!("{ctx}: url has no path - ignoring"));
                } else {
                    h.urls.push(u);
                }
            }
            _ => {
                if !self.common_keyword(&mut h.conn, k, true) {
                    self.other(ctx, k);
                }
            }
        }
    }

    fn url_keyword(&mut self, u: &mut Url, ctx: &str, k: &Line) {
        match k.w(0) {
            "path" => u.path = self.string(k, 1),
            "digest" => {
                if let Some(d) = self.arg(k, 1, "MD5 digest") {
                    if d.len() == 32 && d.bytes().all(|b| b.is_ascii_hexdigit()) {
                        u.digest = Some(d.to_ascii_lowercase());
                    } else {
                        self.d.error(
                            k.loc_of(1),
                            format!(
                                "digest '{d}' is not an MD5 digest, expected 32 hex digits (see genhash)"
                            ),
                        );
                    }
                }
            }
            "status_code" => {
                for i in 1..k.len() {
                    let w = k.w(i);
                    let (a, b) = w.split_once('-').unwrap_or((w, w));
                    match (a.parse::<u16>(), b.parse::<u16>()) {
                        (Ok(from), Ok(to)) if (100..=999).contains(&from) && (from..=999).contains(&to) => {
                            u.status_code.push(StatusRange { from, to });
                        }
                        _ => self.d.error(
                            k.loc_of(i),
                            format!(
                                "Invalid HTTP_GET status code range '{w}', expected 100-999 or CODE-CODE"
                            ),
                        ),
                    }
                }
                if k.len() < 2 {
                    self.d.error(k.loc, "status_code: missing status code");
                }
            }
            "virtualhost" => u.virtualhost = self.string(k, 1),
            "regex" => u.regex = self.string(k, 1),
            "regex_no_match" => u.regex_no_match = true,
            "regex_options" => u.regex_options = k.words().skip(1).map(str::to_string).collect(),
            "regex_min_offset" => u.regex_min_offset = self.uint(k, 1, 0, u64::from(u32::MAX)),
            "regex_max_offset" => u.regex_max_offset = self.uint(k, 1, 0, u64::from(u32::MAX)),
            "regex_stack" => {
                let a = self.uint(k, 1, 1, u64::from(u32::MAX));
                let b = self.uint(k, 2, 1, u64::from(u32::MAX));
                if let (Some(a), Some(b)) = (a, b) {
                    u.regex_stack = Some((a, b));
                }
            }
            _ => self.other(&format!("{ctx} > url"), k),
        }
    }
}

/// Parses keepalived's free-format hex strings (`Ab12f 3 456`): each blank-separated group is
/// read two digits at a time from the left, an odd last digit is a byte of its own. With
/// `wildcard`, `x`/`X` stand for any nibble (kept as 0 here).
fn parse_hex(s: &str, wildcard: bool) -> Result<Vec<u8>, ()> {
    let mut out = Vec::new();
    for group in s.split_whitespace() {
        let digits: Vec<u8> = group
            .chars()
            .map(|c| match c {
                'x' | 'X' if wildcard => Ok(0),
                c => c.to_digit(16).map(|d| d as u8).ok_or(()),
            })
            .collect::<Result<_, _>>()?;
        for pair in digits.chunks(2) {
            out.push(match pair {
                [h, l] => h << 4 | l,
                [l] => *l,
                _ => 0,
            });
        }
    }
    Ok(out)
}

/// The checker keywords that are connection options (the others are timing options).
const CONNECTION_KEYWORDS: &[&str] =
    &["connect_ip", "connect_port", "bindto", "bind_port", "bind_if", "connect_timeout", "fwmark"];

/// Whether an SMTP_CHECK with `host` blocks also checks its own connection: keepalived 2.2.7
/// keeps it when any connection option is set outside the hosts.
pub fn smtp_has_own_connection(c: &CheckCommon) -> bool {
    c.connect_ip.is_some()
        || c.connect_port.is_some()
        || c.bindto.is_some()
        || c.bind_port.is_some()
        || c.bind_if.is_some()
        || c.fwmark.is_some()
        || c.connect_timeout.is_some()
}

/// True when `a` and `b` are the same address family.
pub(super) fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn hex_strings() {
        assert_eq!(
            parse_hex("Ab12f 3 456 546443123", false).unwrap(),
            [0xab, 0x12, 0x0f, 0x03, 0x45, 0x06, 0x54, 0x64, 0x43, 0x12, 0x03]
        );
        assert!(parse_hex("zz", false).is_err());
        assert_eq!(parse_hex("x1", true).unwrap(), [0x01]);
    }
}
