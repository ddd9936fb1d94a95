//! The typed configuration model: what a keepalived.conf means, not how it was written.
//!
//! The parser builds it from keepalived.conf; `lbd -f FILE.toml` reads it directly; `lbd
//! --dump-conf=toml|json` writes it. Model → TOML → model is exact (see the round-trip test).
//! Field names are keepalived's keywords (synonyms are folded: `lb_algo` → [`VirtualServer::lvs_sched`],
//! `lb_kind` → [`VirtualServer::lvs_method`], `nb_get_retry` → [`CheckCommon::retry`]).
//!
//! Values keepalived fills in when a keyword is missing are filled in here too where the default
//! is fixed (`priority` 100, `advert_int` 1 s, `quorum` 1, ...). Where the default depends on
//! other settings (`version`, checker timers inherited from the real and virtual server) the
//! field stays `None` and a method gives the effective value.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
    time::Duration,
};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// `global_defs` and the top-level process options (`net_namespace`, `instance`, ...).
    pub global_defs: GlobalDefs,
    /// `SSL { }`: the TLS context of SSL_GET checkers.
    pub ssl: Option<Ssl>,
    /// `linkbeat_interfaces { }`.
    pub linkbeat_interfaces: Vec<LinkbeatInterface>,
    /// `interface_up_down_delays { }`.
    pub interface_up_down_delays: Vec<InterfaceDelays>,
    /// `track_group NAME { group { ... } }`.
    pub track_groups: Vec<TrackGroup>,
    /// `static_ipaddress { }`: addresses always configured.
    pub static_ipaddress: Vec<IpAddressEntry>,
    /// `static_routes { }`.
    pub static_routes: Vec<RouteEntry>,
    /// `static_rules { }`.
    pub static_rules: Vec<RuleEntry>,
    /// `bfd_instance NAME { }`.
    pub bfd_instances: Vec<BfdInstance>,
    /// `vrrp_script NAME { }`.
    pub vrrp_scripts: Vec<VrrpScript>,
    /// `track_file NAME { }` (and the old `vrrp_track_file`).
    pub track_files: Vec<TrackFile>,
    /// `vrrp_track_process NAME { }`.
    pub track_processes: Vec<TrackProcess>,
    /// `garp_group { }`.
    pub garp_groups: Vec<GarpGroup>,
    /// `vrrp_sync_group NAME { }`.
    pub vrrp_sync_groups: Vec<VrrpSyncGroup>,
    /// `vrrp_instance NAME { }`.
    pub vrrp_instances: Vec<VrrpInstance>,
    /// `virtual_server_group NAME { }`.
    pub virtual_server_groups: Vec<VirtualServerGroup>,
    /// `local_address_group NAME { }` (Alibaba LVS FULLNAT source addresses).
    pub local_address_groups: Vec<LocalAddressGroup>,
    /// `virtual_server ... { }`.
    pub virtual_servers: Vec<VirtualServer>,
    /// Keywords keepalived 2.2.7 knows that lbd does not act on yet, kept verbatim.
    pub unsupported: Vec<Unsupported>,
}

/// A keyword lbd accepted but does not implement, with its arguments and where it was.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Unsupported {
    /// Path of keywords, e.g. `global_defs > enable_dbus`.
    pub path: String,
    /// The arguments as written.
    pub args: Vec<String>,
    /// `file:line`.
    pub at: String,
}

// ---------------------------------------------------------------------------------------------
// Value types

/// An address with a prefix length: `10.0.0.1/24`, `fe80::1/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpPrefix {
    /// The address (host bits kept).
    pub addr: IpAddr,
    /// Prefix length (32 or 128 when none was written).
    pub len: u8,
}

impl IpPrefix {
    /// A host prefix (/32 or /128).
    pub fn host(addr: IpAddr) -> Self {
        IpPrefix { addr, len: if addr.is_ipv4() { 32 } else { 128 } }
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for IpPrefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| format!("invalid IP address '{a}'"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("invalid prefix length '{l}', expected 0-{max}")),
            },
        };
        Ok(IpPrefix { addr, len })
    }
}

impl Serialize for IpPrefix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpPrefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An inclusive range of addresses: `192.168.100.5-254`, `10.0.0.1-10.0.1.9`, `10.0.0.8/29`,
/// or a single address (start = end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressRange {
    /// First address.
    pub start: IpAddr,
    /// Last address (same family, not below `start`).
    pub end: IpAddr,
}

impl AddressRange {
    /// Number of addresses in the range (saturating).
    pub fn count(&self) -> u128 {
        match (self.start, self.end) {
            (IpAddr::V4(a), IpAddr::V4(b)) => u128::from(u32::from(b).saturating_sub(u32::from(a))) + 1,
            (IpAddr::V6(a), IpAddr::V6(b)) => u128::from(b).saturating_sub(u128::from(a)).saturating_add(1),
            _ => 0,
        }
    }

    /// Every address of the range, in order.
    pub fn iter(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let (a, n) = match self.start {
            IpAddr::V4(a) => (u128::from(u32::from(a)), self.count()),
            IpAddr::V6(a) => (u128::from(a), self.count()),
        };
        let v4 = self.start.is_ipv4();
        (0..n).map(move |i| {
            let x = a + i;
            if v4 { IpAddr::V4(Ipv4Addr::from(x as u32)) } else { IpAddr::V6(Ipv6Addr::from(x)) }
        })
    }
}

impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

impl FromStr for AddressRange {
    type Err = String;
    /// Parses keepalived's forms: `a.b.c.d`, `a.b.c.d-e`, `a.b.c.d-e.f.g.h`, `a.b.c.d/nn`, and
    /// the IPv6 equivalents (`2001::1-ff` changes the last group).
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some((a, l)) = s.split_once('/') {
            let p: IpPrefix = s.parse()?;
            let _ = (a, l);
            return Ok(match p.addr {
                IpAddr::V4(a) => {
                    let mask = if p.len == 0 { 0 } else { u32::MAX << (32 - u32::from(p.len)) };
                    let base = u32::from(a) & mask;
                    AddressRange { start: IpAddr::V4(base.into()), end: IpAddr::V4((base | !mask).into()) }
                }
                IpAddr::V6(a) => {
                    let mask = if p.len == 0 { 0 } else { u128::MAX << (128 - u32::from(p.len)) };
                    let base = u128::from(a) & mask;
                    AddressRange { start: IpAddr::V6(base.into()), end: IpAddr::V6((base | !mask).into()) }
                }
            });
        }
        let Some((a, b)) = s.split_once('-') else {
            let ip: IpAddr = s.parse().map_err(|_| format!("invalid IP address '{s}'"))?;
            return Ok(AddressRange { start: ip, end: ip });
        };
        let start: IpAddr = a.parse().map_err(|_| format!("invalid IP address '{a}'"))?;
        let end = if let Ok(full) = b.parse::<IpAddr>() {
            full
        } else {
            match start {
                IpAddr::V4(s4) => {
                    let last: u8 = b.parse().map_err(|_| format!("invalid address range end '{b}'"))?;
                    let mut o = s4.octets();
                    o[3] = last;
                    IpAddr::V4(o.into())
                }
                IpAddr::V6(s6) => {
                    let last =
                        u16::from_str_radix(b, 16).map_err(|_| format!("invalid address range end '{b}'"))?;
                    let mut seg = s6.segments();
                    seg[7] = last;
                    IpAddr::V6(seg.into())
                }
            }
        };
        if start.is_ipv4() != end.is_ipv4() {
            return Err(format!("address range '{s}' mixes IPv4 and IPv6"));
        }
        let r = AddressRange { start, end };
        let ordered = match (start, end) {
            (IpAddr::V4(x), IpAddr::V4(y)) => x <= y,
            (IpAddr::V6(x), IpAddr::V6(y)) => x <= y,
            _ => false,
        };
        if !ordered {
            return Err(format!("address range '{s}' ends before it starts"));
        }
        Ok(r)
    }
}

impl Serialize for AddressRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AddressRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Durations are written as seconds with up to microsecond resolution: `"1s"`, `"0.25s"`.
pub mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Formats a duration as keepalived writes timers (`1`, `0.001`), with an `s` suffix.
    pub fn format(d: &Duration) -> String {
        let micros = d.as_micros();
        let (s, us) = (micros / 1_000_000, micros % 1_000_000);
        if us == 0 {
            format!("{s}s")
        } else {
            let frac = format!("{us:06}");
            format!("{s}.{}s", frac.trim_end_matches('0'))
        }
    }

    /// Parses `1.5s`, `1.5` or `250ms`, exactly (no floating point).
    pub fn parse(s: &str) -> Result<Duration, String> {
        let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
            (n, 1_000u128)
        } else if let Some(n) = s.strip_suffix("us") {
            (n, 1)
        } else {
            (s.strip_suffix('s').unwrap_or(s), 1_000_000)
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if int.is_empty() && frac.is_empty()
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(format!("invalid duration '{s}'"));
        }
        let int: u128 =
            if int.is_empty() { 0 } else { int.parse().map_err(|_| format!("invalid duration '{s}'"))? };
        let mut frac_micros: u128 = 0;
        let mut div = 1u128;
        for (i, b) in frac.bytes().enumerate() {
            if i >= 12 {
                break;
            }
            frac_micros = frac_micros * 10 + u128::from(b - b'0');
            div *= 10;
        }
        let micros = int * scale + frac_micros * scale / div;
        let micros = u64::try_from(micros).map_err(|_| format!("duration '{s}' too large"))?;
        Ok(Duration::from_micros(micros))
    }

    /// serde `serialize_with` for [`Duration`].
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(d))
    }

    /// serde `deserialize_with` for [`Duration`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }

    /// The same for `Option<Duration>`.
    pub mod opt {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        /// serde `serialize_with` for `Option<Duration>`.
        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_some(&super::format(d)),
                None => s.serialize_none(),
            }
        }

        /// serde `deserialize_with` for `Option<Duration>`.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            match Option::<String>::deserialize(d)? {
                Some(s) => super::parse(&s).map(Some).map_err(serde::de::Error::custom),
                None => Ok(None),
            }
        }
    }
}

/// A script to run: the command line as written, its argv, and the user/group to run it as.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Script {
    /// The command line as written (quotes of the config line removed).
    pub command: String,
    /// The command split into arguments (single/double quotes and escapes handled).
    pub argv: Vec<String>,
    /// User to run as (default: global `script_user`).
    pub user: Option<String>,
    /// Group to run as (default: the user's group).
    pub group: Option<String>,
}

/// A reference to a tracked object (`track_script`, `track_file`, ...) with its weight.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrackRef {
    /// Name of the vrrp_script / track_file / vrrp_track_process / bfd_instance, or interface.
    pub name: String,
    /// `weight N` (default: the tracked object's own weight, 0 for interfaces).
    pub weight: Option<i32>,
    /// `reverse` (true), `noreverse` (false) or unset.
    pub reverse: Option<bool>,
}

/// Address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// IPv4.
    Inet,
    /// IPv6.
    Inet6,
}

// ---------------------------------------------------------------------------------------------
// Global definitions

/// `global_defs { }` plus the top-level process options.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[doc(alias = "global_defs")]
#[expect(
    missing_docs,
    reason = "fields are keepalived's global_defs keywords, documented in keepalived.conf(5)"
)]
pub struct GlobalDefs {
    // top level
    pub net_namespace: Option<String>,
    pub net_namespace_ipvs: Option<String>,
    pub namespace_with_ipsets: bool,
    pub use_pid_dir: bool,
    pub instance: Option<String>,
    #[serde(with = "secs::opt")]
    pub child_wait_time: Option<Duration>,
    pub linkbeat_use_polling: bool,
    // processes
    pub process_names: bool,
    pub process_name: Option<String>,
    pub vrrp_process_name: Option<String>,
    pub checker_process_name: Option<String>,
    pub bfd_process_name: Option<String>,
    /// lbd's own: the interfaces the XDP program is attached to (`lbd_xdp_interfaces eth0
    /// eth1`); empty: every interface that is up but loopback. `--xdp-interface` overrides it.
    pub lbd_xdp_interfaces: Vec<String>,
    /// lbd's own: the forwarding backend (`lbd_dataplane xdp|ipvs`); `--dataplane` overrides it.
    pub lbd_dataplane: Option<crate::dataplane::Backend>,
    /// lbd's own: whether FNAT adds the client's address to the ACK that completes a TCP
    /// handshake (the TOA option, on by default as in Alibaba's FNAT; `lbd_fnat_toa off`).
    pub lbd_fnat_toa: Option<bool>,
    // identity and alerts
    pub router_id: Option<String>,
    pub notification_email_from: Option<String>,
    pub smtp_server: Option<SmtpServer>,
    pub smtp_helo_name: Option<String>,
    #[serde(with = "secs::opt")]
    pub smtp_connect_timeout: Option<Duration>,
    pub notification_email: Vec<String>,
    pub smtp_alert: Option<bool>,
    pub smtp_alert_vrrp: Option<bool>,
    pub smtp_alert_checker: Option<bool>,
    pub checker_log_all_failures: Option<bool>,
    pub no_email_faults: bool,
    pub startup_script: Option<Script>,
    #[serde(with = "secs::opt")]
    pub startup_script_timeout: Option<Duration>,
    pub shutdown_script: Option<Script>,
    #[serde(with = "secs::opt")]
    pub shutdown_script_timeout: Option<Duration>,
    pub max_auto_priority: Option<i32>,
    #[serde(with = "secs::opt")]
    pub min_auto_priority_delay: Option<Duration>,
    pub dynamic_interfaces: bool,
    pub dynamic_interfaces_allow_if_changes: bool,
    pub default_interface: Option<String>,
    pub disable_local_igmp: bool,
    // LVS
    pub lvs_timeouts: Option<LvsTimeouts>,
    pub lvs_flush: bool,
    pub lvs_flush_on_stop: Option<LvsFlushOnStop>,
    pub lvs_sync_daemon: Option<LvsSyncDaemon>,
    // VRRP
    pub vrrp_mcast_group4: Option<Ipv4Addr>,
    pub vrrp_mcast_group6: Option<Ipv6Addr>,
    #[serde(with = "secs::opt")]
    pub vrrp_garp_master_delay: Option<Duration>,
    pub vrrp_garp_master_repeat: Option<u32>,
    #[serde(with = "secs::opt")]
    pub vrrp_garp_master_refresh: Option<Duration>,
    pub vrrp_garp_master_refresh_repeat: Option<u32>,
    #[serde(with = "secs::opt")]
    pub vrrp_garp_lower_prio_delay: Option<Duration>,
    pub vrrp_garp_lower_prio_repeat: Option<u32>,
    pub vrrp_down_timer_adverts: Option<u32>,
    #[serde(with = "secs::opt")]
    pub vrrp_garp_interval: Option<Duration>,
    #[serde(with = "secs::opt")]
    pub vrrp_gna_interval: Option<Duration>,
    pub vrrp_min_garp: Option<bool>,
    pub vrrp_garp_extra_if: Option<GarpExtraIf>,
    pub vrrp_lower_prio_no_advert: Option<bool>,
    pub vrrp_higher_prio_send_advert: Option<bool>,
    pub vrrp_version: Option<VrrpVersion>,
    pub vrrp_iptables: Option<Vec<String>>,
    pub vrrp_ipsets: Option<Vec<String>>,
    pub nftables: Option<String>,
    pub nftables_priority: Option<i32>,
    pub nftables_ifindex: bool,
    pub nftables_counters: bool,
    pub nftables_ipvs: Option<String>,
    pub nftables_ipvs_priority: Option<i32>,
    pub nftables_ipvs_start_fwmark: Option<u32>,
    pub vrrp_check_unicast_src: bool,
    pub vrrp_skip_check_adv_addr: bool,
    pub vrrp_strict: bool,
    pub vrrp_notify_priority_changes: Option<bool>,
    // process scheduling
    pub vrrp_priority: Option<i32>,
    pub checker_priority: Option<i32>,
    pub bfd_priority: Option<i32>,
    pub vrrp_no_swap: bool,
    pub checker_no_swap: bool,
    pub bfd_no_swap: bool,
    pub vrrp_rt_priority: Option<u32>,
    pub checker_rt_priority: Option<u32>,
    pub bfd_rt_priority: Option<u32>,
    pub vrrp_cpu_affinity: Vec<u32>,
    pub checker_cpu_affinity: Vec<u32>,
    pub bfd_cpu_affinity: Vec<u32>,
    pub vrrp_rlimit_rttime: Option<u64>,
    pub checker_rlimit_rttime: Option<u64>,
    pub bfd_rlimit_rttime: Option<u64>,
    // SNMP / DBus
    pub snmp_socket: Option<String>,
    pub enable_traps: bool,
    pub enable_snmp_vrrp: bool,
    pub enable_snmp_checker: bool,
    pub enable_snmp_rfcv2: bool,
    pub enable_snmp_rfcv3: bool,
    pub enable_dbus: bool,
    pub dbus_service_name: Option<String>,
    // scripts
    pub script_user: Option<ScriptUser>,
    pub enable_script_security: bool,
    // notify FIFOs
    pub notify_fifo: Option<NotifyFifo>,
    pub notify_fifo_script: Option<Script>,
    pub vrrp_notify_fifo: Option<NotifyFifo>,
    pub vrrp_notify_fifo_script: Option<Script>,
    pub lvs_notify_fifo: Option<NotifyFifo>,
    pub lvs_notify_fifo_script: Option<Script>,
    pub fifo_write_vrrp_states_on_reload: bool,
    // netlink buffers
    pub vrrp_netlink_cmd_rcv_bufs: Option<u32>,
    pub vrrp_netlink_cmd_rcv_bufs_force: Option<bool>,
    pub vrrp_netlink_monitor_rcv_bufs: Option<u32>,
    pub vrrp_netlink_monitor_rcv_bufs_force: Option<bool>,
    pub process_monitor_rcv_bufs: Option<u32>,
    pub process_monitor_rcv_bufs_force: Option<bool>,
    pub lvs_netlink_cmd_rcv_bufs: Option<u32>,
    pub lvs_netlink_cmd_rcv_bufs_force: Option<bool>,
    pub lvs_netlink_monitor_rcv_bufs: Option<u32>,
    pub lvs_netlink_monitor_rcv_bufs_force: Option<bool>,
    pub rs_init_notifies: bool,
    pub no_checker_emails: bool,
    pub vrrp_rx_bufs_policy: Option<RxBufsPolicy>,
    pub vrrp_rx_bufs_multiplier: Option<u32>,
    #[serde(with = "secs::opt")]
    pub vrrp_startup_delay: Option<Duration>,
    pub log_unknown_vrids: bool,
    pub vmac_prefix: Option<String>,
    pub vmac_addr_prefix: Option<String>,
    pub umask: Option<u32>,
    pub random_seed: Option<u32>,
    pub reload_check_config: Option<String>,
    pub reload_time_file: Option<String>,
    pub reload_repeat: bool,
    pub reload_file: Option<String>,
    pub include_check: Option<Vec<String>>,
    pub config_save_dir: Option<String>,
    pub tmp_config_directory: Option<String>,
    pub data_use_instance: Option<bool>,
}

/// `smtp_server HOST [PORT]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtpServer {
    /// IP address or host name.
    pub host: String,
    /// Port (default 25).
    pub port: u16,
}

/// `lvs_timeouts [tcp S] [tcpfin S] [udp S]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LvsTimeouts {
    /// TCP established timeout.
    #[serde(with = "secs::opt")]
    pub tcp: Option<Duration>,
    /// TCP FIN-WAIT timeout.
    #[serde(with = "secs::opt")]
    pub tcpfin: Option<Duration>,
    /// UDP timeout.
    #[serde(with = "secs::opt")]
    pub udp: Option<Duration>,
}

/// `lvs_flush_on_stop [VS]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LvsFlushOnStop {
    /// Flush everything.
    All,
    /// Remove keepalived's virtual servers only (`VS`).
    Vs,
}

/// `lvs_sync_daemon IF [inst] VI [id N] [maxlen N] [port N] [ttl N] [group IP]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LvsSyncDaemon {
    /// Interface the sync daemon binds to.
    pub interface: String,
    /// VRRP instance whose state it follows.
    pub instance: Option<String>,
    /// Sync id 0-255 (default: the instance's VRID).
    pub id: Option<u8>,
    /// Maximum packet length 1-65507.
    pub maxlen: Option<u16>,
    /// UDP port (default 8848).
    pub port: Option<u16>,
    /// TTL 1-255.
    pub ttl: Option<u8>,
    /// Multicast group (default 224.0.0.81).
    pub group: Option<IpAddr>,
}

/// `vrrp_garp_extra_if [all] SECS` / `garp_extra_if`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GarpExtraIf {
    /// Send on every interface, not only VMACs.
    pub all: bool,
    /// Period (0 disables).
    #[serde(with = "secs")]
    pub interval: Duration,
}

/// VRRP protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VrrpVersion {
    /// RFC 3768.
    #[serde(rename = "2")]
    V2,
    /// RFC 5798.
    #[serde(rename = "3")]
    V3,
}

/// `script_user USER [GROUP]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptUser {
    /// User name.
    pub user: String,
    /// Group name (default: the user's group).
    pub group: Option<String>,
}

/// `notify_fifo PATH [USER [GROUP]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyFifo {
    /// FIFO path.
    pub path: String,
    /// Owner.
    pub user: Option<String>,
    /// Group.
    pub group: Option<String>,
}

/// `vrrp_rx_bufs_policy MTU|ADVERT|NUMBER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RxBufsPolicy {
    /// Interface MTU × multiplier.
    Mtu,
    /// Advert size × multiplier.
    Advert,
    /// A fixed size in bytes.
    Size(u64),
}

/// `SSL { }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ssl {
    /// Private key password.
    pub password: Option<String>,
    /// CA file.
    pub ca: Option<String>,
    /// Certificate file.
    pub certificate: Option<String>,
    /// Key file.
    pub key: Option<String>,
}

/// One entry of `linkbeat_interfaces { }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkbeatInterface {
    /// Interface name.
    pub name: String,
    /// Preferred polling type: MII, ETHTOOL or IOCTL.
    pub kind: Option<String>,
}

/// One entry of `interface_up_down_delays { }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceDelays {
    /// Interface name.
    pub name: String,
    /// Delay before acting on down.
    #[serde(with = "secs")]
    pub down_delay: Duration,
    /// Delay before acting on up (default: down_delay).
    #[serde(with = "secs")]
    pub up_delay: Duration,
}

/// `track_group NAME { group { VI ... } }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrackGroup {
    /// Name.
    pub name: String,
    /// Member vrrp_instance names.
    pub group: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Addresses, routes, rules

/// An address of `virtual_ipaddress`, `virtual_ipaddress_excluded` or `static_ipaddress`:
/// `IP[/MASK] [brd IP] [dev IF] [scope S] [label L] [peer IP] [home] [-nodad] [mngtmpaddr]
/// [noprefixroute] [autojoin] [no_track] [preferred_lft N|forever] [use_vmac [NAME]]
/// [track_group G]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IpAddressEntry {
    /// Address and prefix length.
    pub address: IpPrefix,
    /// Broadcast address, or `-`/`+` to clear/set the host bits.
    pub broadcast: Option<String>,
    /// Interface (default: the instance's interface, or `default_interface`).
    pub dev: Option<String>,
    /// Scope: global, site, link, host, nowhere or a number.
    pub scope: Option<String>,
    /// Address label.
    pub label: Option<String>,
    /// Peer address.
    pub peer: Option<IpPrefix>,
    /// IPv6 `home`.
    pub home: bool,
    /// IPv6 `-nodad`.
    pub nodad: bool,
    /// IPv6 `mngtmpaddr`.
    pub mngtmpaddr: bool,
    /// `noprefixroute`.
    pub noprefixroute: bool,
    /// `autojoin`.
    pub autojoin: bool,
    /// `no_track`: deletion does not take the instance out of MASTER.
    pub no_track: bool,
    /// `preferred_lft`: seconds, or `None` with [`Self::preferred_lft_forever`].
    pub preferred_lft: Option<u32>,
    /// `preferred_lft forever`.
    pub preferred_lft_forever: bool,
    /// `use_vmac [NAME]` on this address.
    pub use_vmac: Option<String>,
    /// `track_group NAME` (static addresses only).
    pub track_group: Option<String>,
}

impl Default for IpAddressEntry {
    fn default() -> Self {
        IpAddressEntry {
            address: IpPrefix::host(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            broadcast: None,
            dev: None,
            scope: None,
            label: None,
            peer: None,
            home: false,
            nodad: false,
            mngtmpaddr: false,
            noprefixroute: false,
            autojoin: false,
            no_track: false,
            preferred_lft: None,
            preferred_lft_forever: false,
            use_vmac: None,
            track_group: None,
        }
    }
}

/// A route (`ip route` syntax) of `virtual_routes` or `static_routes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RouteEntry {
    /// Route type when not unicast: blackhole, unreachable, prohibit, throw, local, ...
    pub route_type: Option<String>,
    /// Destination (`default` is 0.0.0.0/0).
    pub destination: Option<IpPrefix>,
    /// Force IPv6 (`inet6`).
    pub inet6: bool,
    /// Preferred source (`src`).
    pub src: Option<IpAddr>,
    /// Gateways (`via`/`gw`, and the deprecated `or` alternative); `nexthop` entries.
    pub via: Vec<IpAddr>,
    /// Output interface.
    pub dev: Option<String>,
    /// Routing table (name or number).
    pub table: Option<String>,
    /// `metric`/`priority`/`preference`.
    pub metric: Option<u32>,
    /// Scope.
    pub scope: Option<String>,
    /// `protocol`.
    pub protocol: Option<String>,
    /// `no_track`.
    pub no_track: bool,
    /// `track_group` (static routes only).
    pub track_group: Option<String>,
    /// Every other option, as `name value` words, in order.
    pub options: Vec<String>,
}

/// A policy rule (`ip rule` syntax) of `virtual_rules` or `static_rules`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuleEntry {
    /// `from PREFIX` (`all` is none).
    pub from: Option<IpPrefix>,
    /// `to PREFIX`.
    pub to: Option<IpPrefix>,
    /// Force IPv6 (`inet6`).
    pub inet6: bool,
    /// `table`/`lookup`.
    pub table: Option<String>,
    /// `preference`/`priority`/`pref`.
    pub preference: Option<u32>,
    /// `iif`.
    pub iif: Option<String>,
    /// `oif`.
    pub oif: Option<String>,
    /// `fwmark N[/MASK]`.
    pub fwmark: Option<String>,
    /// `no_track`.
    pub no_track: bool,
    /// `track_group` (static rules only).
    pub track_group: Option<String>,
    /// Every other option, as written.
    pub options: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Tracking objects

/// `vrrp_script NAME { }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[doc(alias = "vrrp_script")]
pub struct VrrpScript {
    /// Name used by `track_script`.
    pub name: String,
    /// The command (required).
    pub script: Option<Script>,
    /// Period (default 1 s).
    #[serde(with = "secs")]
    pub interval: Duration,
    /// Run time after which the run counts as failed (default: interval).
    #[serde(with = "secs::opt")]
    pub timeout: Option<Duration>,
    /// Priority change, -253..253 (default 0 = FAULT on failure).
    pub weight: i32,
    /// `weight N reverse`.
    pub weight_reverse: bool,
    /// Successes needed for OK (default 1).
    pub rise: u32,
    /// Failures needed for KO (default 1).
    pub fall: u32,
    /// `init_fail`.
    pub init_fail: bool,
}

impl Default for VrrpScript {
    fn default() -> Self {
        VrrpScript {
            name: String::new(),
            script: None,
            interval: Duration::from_secs(1),
            timeout: None,
            weight: 0,
            weight_reverse: false,
            rise: 1,
            fall: 1,
            init_fail: false,
        }
    }
}

/// `track_file NAME { }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrackFile {
    /// Name.
    pub name: String,
    /// File to watch.
    pub file: Option<String>,
    /// Multiplier (default 1).
    pub weight: i32,
    /// `reverse`.
    pub reverse: bool,
    /// `init_file [VALUE] [overwrite]`.
    pub init_file: Option<InitFile>,
}

impl Default for TrackFile {
    fn default() -> Self {
        TrackFile { name: String::new(), file: None, weight: 1, reverse: false, init_file: None }
    }
}

/// `init_file [VALUE] [overwrite]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitFile {
    /// Value written (default 0).
    pub value: i64,
    /// Overwrite an existing file.
    pub overwrite: bool,
}

/// `vrrp_track_process NAME { }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrackProcess {
    /// Name.
    pub name: String,
    /// Process name and parameters to match.
    pub process: Vec<String>,
    /// `param_match initial|partial`.
    pub param_match: Option<String>,
    /// Priority change (default 1 per the man page; 0 = FAULT).
    pub weight: i32,
    /// `reverse`.
    pub reverse: bool,
    /// Minimum matching processes (default 1).
    pub quorum: u32,
    /// Maximum matching processes.
    pub quorum_max: Option<u32>,
    /// `fork_delay`.
    #[serde(with = "secs::opt")]
    pub fork_delay: Option<Duration>,
    /// `terminate_delay`.
    #[serde(with = "secs::opt")]
    pub terminate_delay: Option<Duration>,
    /// `full_command`.
    pub full_command: bool,
}

impl Default for TrackProcess {
    fn default() -> Self {
        TrackProcess {
            name: String::new(),
            process: Vec::new(),
            param_match: None,
            weight: 0,
            reverse: false,
            quorum: 1,
            quorum_max: None,
            fork_delay: None,
            terminate_delay: None,
            full_command: false,
        }
    }
}

/// `bfd_instance NAME { }` (RFC 5880).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BfdInstance {
    /// Name.
    pub name: String,
    /// Neighbour (required).
    pub neighbor_ip: Option<IpAddr>,
    /// Local source.
    pub source_ip: Option<IpAddr>,
    /// Required minimum RX interval (default 10 ms).
    #[serde(with = "secs")]
    pub min_rx: Duration,
    /// Desired minimum TX interval (default 10 ms).
    #[serde(with = "secs")]
    pub min_tx: Duration,
    /// Desired idle TX interval (default 1000 ms).
    #[serde(with = "secs")]
    pub idle_tx: Duration,
    /// Detect multiplier (default 5).
    pub multiplier: u8,
    /// Passive mode.
    pub passive: bool,
    /// Outgoing IPv4 TTL (default 255).
    pub ttl: u8,
    /// Outgoing IPv6 hop limit (default 64).
    pub hoplimit: u8,
    /// Maximum TTL reduction accepted (255: no check).
    pub max_hops: u8,
    /// Default track weight.
    pub weight: i32,
    /// `reverse`.
    pub reverse: bool,
    /// Events only to VRRP.
    pub vrrp: bool,
    /// Events only to the checker.
    pub checker: bool,
}

impl Default for BfdInstance {
    fn default() -> Self {
        BfdInstance {
            name: String::new(),
            neighbor_ip: None,
            source_ip: None,
            min_rx: Duration::from_millis(10),
            min_tx: Duration::from_millis(10),
            idle_tx: Duration::from_millis(1000),
            multiplier: 5,
            passive: false,
            ttl: 255,
            hoplimit: 64,
            max_hops: 0,
            weight: 0,
            reverse: false,
            vrrp: false,
            checker: false,
        }
    }
}

/// `garp_group { }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GarpGroup {
    /// Delay between gratuitous ARPs.
    #[serde(with = "secs::opt")]
    pub garp_interval: Option<Duration>,
    /// Delay between unsolicited NAs.
    #[serde(with = "secs::opt")]
    pub gna_interval: Option<Duration>,
    /// Single interface.
    pub interface: Option<String>,
    /// Interfaces sharing the limit.
    pub interfaces: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// VRRP

/// `vrrp_sync_group NAME { }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[doc(alias = "vrrp_sync_group")]
#[expect(missing_docs, reason = "fields are keepalived's vrrp_sync_group keywords")]
pub struct VrrpSyncGroup {
    pub name: String,
    /// Member vrrp_instance names.
    pub group: Vec<String>,
    pub track_interface: Vec<TrackRef>,
    pub track_script: Vec<TrackRef>,
    pub track_file: Vec<TrackRef>,
    pub track_process: Vec<TrackRef>,
    pub track_bfd: Vec<TrackRef>,
    pub notify_master: Option<Script>,
    pub notify_backup: Option<Script>,
    pub notify_fault: Option<Script>,
    pub notify_stop: Option<Script>,
    pub notify: Option<Script>,
    pub smtp_alert: Option<bool>,
    pub global_tracking: bool,
    pub sync_group_tracking_weight: bool,
    pub notify_priority_changes: Option<bool>,
}

/// Initial VRRP state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum VrrpState {
    /// Start as MASTER (immediately only with priority 255).
    Master,
    /// Start as BACKUP.
    Backup,
}

/// VRRPv2 authentication type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AuthType {
    /// Simple password (RFC 2338).
    Pass,
    /// IPsec AH.
    Ah,
}

/// `authentication { auth_type ..; auth_pass .. }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authentication {
    /// PASS or AH.
    pub auth_type: AuthType,
    /// Password (only the first 8 bytes are used).
    pub auth_pass: String,
}

/// `unicast_peer { IP [min_ttl N] [max_ttl N] }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnicastPeer {
    /// Peer address.
    pub address: IpAddr,
    /// Minimum TTL accepted.
    pub min_ttl: Option<u8>,
    /// Maximum TTL accepted.
    pub max_ttl: Option<u8>,
}

/// `use_vmac [NAME] [MAC]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UseVmac {
    /// Interface name (default vrrp.VRID).
    pub name: Option<String>,
    /// MAC address (5 or 6 octets).
    pub mac: Option<String>,
}

/// `use_ipvlan [NAME] [IP] [bridge|private|vepa]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UseIpvlan {
    /// Interface name.
    pub name: Option<String>,
    /// Address.
    pub address: Option<IpPrefix>,
    /// Mode.
    pub mode: Option<String>,
}

/// `vrrp_instance NAME { }`: one VRRP virtual router (RFC 5798).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[doc(alias = "vrrp_instance")]
#[expect(
    missing_docs,
    reason = "fields are keepalived's vrrp_instance keywords, documented in keepalived.conf(5)"
)]
pub struct VrrpInstance {
    pub name: String,
    pub state: Option<VrrpState>,
    pub interface: Option<String>,
    pub vrf: Option<String>,
    pub use_vmac: Option<UseVmac>,
    pub use_vmac_addr: bool,
    pub vmac_xmit_base: bool,
    pub use_ipvlan: Option<UseIpvlan>,
    pub native_ipv6: bool,
    pub dont_track_primary: bool,
    pub track_interface: Vec<TrackRef>,
    pub track_script: Vec<TrackRef>,
    pub track_file: Vec<TrackRef>,
    pub track_process: Vec<TrackRef>,
    pub track_bfd: Vec<TrackRef>,
    pub mcast_src_ip: Option<IpAddr>,
    pub unicast_src_ip: Option<IpAddr>,
    pub mcast_dst_ip: Option<IpAddr>,
    pub track_src_ip: bool,
    pub unicast_peer: Vec<UnicastPeer>,
    pub unicast_fault_no_peer: bool,
    pub check_unicast_src: bool,
    pub unicast_ttl: Option<u8>,
    /// `old_unicast_checksum`: Some(false) = enabled, Some(true) = `never`.
    pub old_unicast_checksum: Option<bool>,
    /// VRID 1-255 (required).
    pub virtual_router_id: Option<u8>,
    /// Priority 1-255 (default 100; 255 = address owner).
    pub priority: u8,
    /// Advert interval (default 1 s).
    #[serde(with = "secs")]
    pub advert_int: Duration,
    /// Protocol version (default: global vrrp_version, 3 for IPv6).
    pub version: Option<VrrpVersion>,
    pub authentication: Option<Authentication>,
    pub virtual_ipaddress: Vec<IpAddressEntry>,
    pub virtual_ipaddress_excluded: Vec<IpAddressEntry>,
    pub virtual_routes: Vec<RouteEntry>,
    pub virtual_rules: Vec<RuleEntry>,
    pub promote_secondaries: bool,
    pub linkbeat_use_polling: bool,
    /// `accept` (true) / `no_accept` (false) / unset (accept unless strict).
    pub accept: Option<bool>,
    /// `nopreempt` makes it false (default true).
    pub preempt: bool,
    #[serde(with = "secs::opt")]
    pub preempt_delay: Option<Duration>,
    pub skip_check_adv_addr: Option<bool>,
    pub strict_mode: Option<bool>,
    /// `debug LEVEL` (0-4): checked, and like keepalived 2.2.7 ("not implemented yet") acted on
    /// by nothing.
    pub debug: Option<u8>,
    pub notify_master: Option<Script>,
    pub notify_backup: Option<Script>,
    pub notify_fault: Option<Script>,
    pub notify_stop: Option<Script>,
    pub notify: Option<Script>,
    pub notify_master_rx_lower_pri: Option<Script>,
    pub notify_deleted: bool,
    pub notify_deleted_script: Option<Script>,
    pub smtp_alert: Option<bool>,
    pub notify_priority_changes: Option<bool>,
    pub lvs_sync_daemon_interface: Option<String>,
    #[serde(with = "secs::opt")]
    pub garp_master_delay: Option<Duration>,
    pub garp_master_repeat: Option<u32>,
    #[serde(with = "secs::opt")]
    pub garp_master_refresh: Option<Duration>,
    pub garp_master_refresh_repeat: Option<u32>,
    #[serde(with = "secs::opt")]
    pub garp_lower_prio_delay: Option<Duration>,
    pub garp_lower_prio_repeat: Option<u32>,
    pub down_timer_adverts: Option<u32>,
    pub garp_extra_if: Option<GarpExtraIf>,
    pub lower_prio_no_advert: Option<bool>,
    pub higher_prio_send_advert: Option<bool>,
    pub kernel_rx_buf_size: Option<u64>,
}

impl Default for VrrpInstance {
    fn default() -> Self {
        VrrpInstance {
            name: String::new(),
            state: None,
            interface: None,
            vrf: None,
            use_vmac: None,
            use_vmac_addr: false,
            vmac_xmit_base: false,
            use_ipvlan: None,
            native_ipv6: false,
            dont_track_primary: false,
            track_interface: Vec::new(),
            track_script: Vec::new(),
            track_file: Vec::new(),
            track_process: Vec::new(),
            track_bfd: Vec::new(),
            mcast_src_ip: None,
            unicast_src_ip: None,
            mcast_dst_ip: None,
            track_src_ip: false,
            unicast_peer: Vec::new(),
            unicast_fault_no_peer: false,
            check_unicast_src: false,
            unicast_ttl: None,
            old_unicast_checksum: None,
            virtual_router_id: None,
            priority: 100,
            advert_int: Duration::from_secs(1),
            version: None,
            authentication: None,
            virtual_ipaddress: Vec::new(),
            virtual_ipaddress_excluded: Vec::new(),
            virtual_routes: Vec::new(),
            virtual_rules: Vec::new(),
            promote_secondaries: false,
            linkbeat_use_polling: false,
            accept: None,
            preempt: true,
            preempt_delay: None,
            skip_check_adv_addr: None,
            strict_mode: None,
            debug: None,
            notify_master: None,
            notify_backup: None,
            notify_fault: None,
            notify_stop: None,
            notify: None,
            notify_master_rx_lower_pri: None,
            notify_deleted: false,
            notify_deleted_script: None,
            smtp_alert: None,
            notify_priority_changes: None,
            lvs_sync_daemon_interface: None,
            garp_master_delay: None,
            garp_master_repeat: None,
            garp_master_refresh: None,
            garp_master_refresh_repeat: None,
            garp_lower_prio_delay: None,
            garp_lower_prio_repeat: None,
            down_timer_adverts: None,
            garp_extra_if: None,
            lower_prio_no_advert: None,
            higher_prio_send_advert: None,
            kernel_rx_buf_size: None,
        }
    }
}

impl VrrpInstance {
    /// The address family of the instance: that of its first VIP (IPv6 with `native_ipv6`).
    pub fn family(&self) -> Family {
        match self.virtual_ipaddress.first() {
            Some(v) if v.address.addr.is_ipv6() => Family::Inet6,
            Some(_) => Family::Inet,
            None if self.native_ipv6 => Family::Inet6,
            None => Family::Inet,
        }
    }

    /// The protocol version in effect: the instance's, else the global default, else 2; always 3
    /// for IPv6.
    pub fn effective_version(&self, global: &GlobalDefs) -> VrrpVersion {
        if self.family() == Family::Inet6 {
            return VrrpVersion::V3;
        }
        self.version.or(global.vrrp_version).unwrap_or(VrrpVersion::V2)
    }

    /// True when `vrrp_strict` or `strict_mode` applies.
    pub fn strict(&self, global: &GlobalDefs) -> bool {
        self.strict_mode.unwrap_or(global.vrrp_strict)
    }
}

// ---------------------------------------------------------------------------------------------
// LVS

/// IPVS scheduler (`lvs_sched` / `lb_algo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[expect(missing_docs, reason = "the IPVS scheduler names, see ipvsadm(8)")]
pub enum LbAlgo {
    Rr,
    Wrr,
    Lc,
    Wlc,
    Lblc,
    Lblcr,
    Sh,
    Dh,
    Sed,
    Nq,
    Fo,
    Ovf,
    Mh,
    Twos,
}

impl LbAlgo {
    /// Every scheduler with its keepalived name.
    pub const ALL: [(&'static str, LbAlgo); 14] = [
        ("rr", LbAlgo::Rr),
        ("wrr", LbAlgo::Wrr),
        ("lc", LbAlgo::Lc),
        ("wlc", LbAlgo::Wlc),
        ("lblc", LbAlgo::Lblc),
        ("lblcr", LbAlgo::Lblcr),
        ("sh", LbAlgo::Sh),
        ("dh", LbAlgo::Dh),
        ("sed", LbAlgo::Sed),
        ("nq", LbAlgo::Nq),
        ("fo", LbAlgo::Fo),
        ("ovf", LbAlgo::Ovf),
        ("mh", LbAlgo::Mh),
        ("twos", LbAlgo::Twos),
    ];

    /// The keepalived/ipvsadm name.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, a)| *a == self).map_or("?", |(n, _)| n)
    }
}

/// IPVS forwarding method (`lvs_method` / `lb_kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LbKind {
    /// Masquerading.
    Nat,
    /// Direct routing.
    Dr,
    /// IP tunnelling.
    Tun,
    /// Alibaba LVS full NAT (source and destination translated).
    Fnat,
}

impl LbKind {
    /// The keepalived name.
    pub fn name(self) -> &'static str {
        match self {
            LbKind::Nat => "NAT",
            LbKind::Dr => "DR",
            LbKind::Tun => "TUN",
            LbKind::Fnat => "FNAT",
        }
    }
}

/// `lvs_method TUN type ipip|gue port N|gre [nocsum|csum|remcsum]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tunnel {
    /// ipip (default), gue or gre.
    pub kind: Option<String>,
    /// GUE port.
    pub port: Option<u16>,
    /// nocsum, csum or remcsum.
    pub checksum: Option<String>,
}

/// Forwarding method with its tunnel options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LvsMethod {
    /// NAT, DR, TUN or FNAT.
    pub kind: LbKind,
    /// Tunnel options (TUN only; boxed to keep real servers small).
    pub tunnel: Option<Box<Tunnel>>,
}

/// L4 protocol of a virtual server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// Lower-case name as keepalived logs it (`[10.0.0.1]:tcp:80`).
    pub fn lower(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One member of a `virtual_server_group`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum VsgEntry {
    /// `IP[-RANGE] [PORT]`.
    Address {
        /// The address or range.
        range: AddressRange,
        /// Port (none for persistent services).
        port: Option<u16>,
    },
    /// `fwmark N [inet|inet6]`.
    Fwmark {
        /// The mark.
        mark: u32,
        /// Family, needed only when every real server is tunnelled.
        family: Option<Family>,
    },
}

/// `virtual_server_group NAME { }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[doc(alias = "virtual_server_group")]
pub struct VirtualServerGroup {
    /// Name used by `virtual_server group NAME`.
    pub name: String,
    /// Members.
    pub entries: Vec<VsgEntry>,
}

/// `local_address_group NAME { IP | IP-RANGE ... }` (Alibaba LVS FULLNAT local addresses).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[doc(alias = "local_address_group")]
pub struct LocalAddressGroup {
    /// Name used by `laddr_group_name`.
    pub name: String,
    /// Addresses.
    pub addresses: Vec<AddressRange>,
}

/// What a virtual server listens on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum VsAddress {
    /// `virtual_server IP [PORT]`.
    Ip {
        /// Virtual IP.
        address: IpAddr,
        /// Port (may be omitted for persistent services).
        port: Option<u16>,
    },
    /// `virtual_server fwmark N`.
    Fwmark {
        /// Firewall mark.
        mark: u32,
    },
    /// `virtual_server group NAME`.
    Group {
        /// virtual_server_group name.
        name: String,
    },
}

impl fmt::Display for VsAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VsAddress::Ip { address, port } => write!(f, "[{address}]:{}", port.unwrap_or(0)),
            VsAddress::Fwmark { mark } => write!(f, "FWM {mark}"),
            VsAddress::Group { name } => write!(f, "group {name}"),
        }
    }
}

/// `sorry_server IP [PORT]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SorryServer {
    /// Address.
    pub address: IpAddr,
    /// Port.
    pub port: Option<u16>,
}

/// `virtual_server ... { }`: one IPVS service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[doc(alias = "virtual_server")]
#[expect(
    missing_docs,
    reason = "fields are keepalived's virtual_server keywords, documented in keepalived.conf(5)"
)]
pub struct VirtualServer {
    pub address: VsAddress,
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// Scheduler (`lvs_sched`/`lb_algo`); keepalived defaults to wlc.
    #[serde(default)]
    pub lvs_sched: Option<LbAlgo>,
    /// Forwarding method (`lvs_method`/`lb_kind`); keepalived defaults to NAT.
    #[serde(default)]
    pub lvs_method: Option<LvsMethod>,
    #[serde(default)]
    pub hashed: bool,
    #[serde(default)]
    pub flag_1: bool,
    #[serde(default)]
    pub flag_2: bool,
    #[serde(default)]
    pub flag_3: bool,
    #[serde(default)]
    pub sh_port: bool,
    #[serde(default)]
    pub sh_fallback: bool,
    #[serde(default)]
    pub mh_port: bool,
    #[serde(default)]
    pub mh_fallback: bool,
    #[serde(default)]
    pub ops: bool,
    #[serde(default)]
    pub persistence_engine: Option<String>,
    /// Persistence timeout in seconds (360 when written without a value).
    #[serde(default)]
    pub persistence_timeout: Option<u32>,
    /// Persistence netmask (IPv4) or prefix length (IPv6), as written.
    #[serde(default)]
    pub persistence_granularity: Option<String>,
    #[serde(default)]
    pub ip_family: Option<Family>,
    #[serde(default)]
    pub ha_suspend: bool,
    #[serde(default)]
    pub smtp_alert: Option<bool>,
    #[serde(default)]
    pub virtualhost: Option<String>,
    #[serde(default)]
    pub snmp_name: Option<String>,
    #[serde(default)]
    pub alpha: bool,
    #[serde(default)]
    pub omega: bool,
    /// Minimum live weight (default 1).
    #[serde(default = "one")]
    pub quorum: u32,
    #[serde(default)]
    pub hysteresis: u32,
    #[serde(default)]
    pub quorum_up: Option<Script>,
    #[serde(default)]
    pub quorum_down: Option<Script>,
    #[serde(default)]
    pub sorry_server: Option<SorryServer>,
    #[serde(default)]
    pub sorry_server_inhibit: bool,
    #[serde(default)]
    pub sorry_server_lvs_method: Option<LvsMethod>,
    /// Default real-server weight.
    #[serde(default)]
    pub weight: Option<i32>,
    #[serde(default)]
    pub inhibit_on_failure: bool,
    #[serde(default, with = "secs::opt")]
    pub connect_timeout: Option<Duration>,
    #[serde(default)]
    pub retry: Option<u32>,
    #[serde(default, with = "secs::opt")]
    pub delay_before_retry: Option<Duration>,
    #[serde(default, with = "secs::opt")]
    pub warmup: Option<Duration>,
    /// Check period (keepalived default 60 s).
    #[serde(default, with = "secs::opt")]
    pub delay_loop: Option<Duration>,
    /// Alibaba LVS: FULLNAT local address group.
    #[serde(default)]
    pub laddr_group_name: Option<String>,
    /// Alibaba LVS: SYN proxy.
    #[serde(default)]
    pub syn_proxy: bool,
    /// Alibaba LVS: device the VIP is bound to.
    #[serde(default)]
    pub vip_bind_dev: Option<String>,
    /// Alibaba LVS: established-state timeout (seconds).
    #[serde(default)]
    pub est_timeout: Option<u32>,
    #[serde(default)]
    pub real_servers: Vec<RealServer>,
}

fn one() -> u32 {
    1
}

impl VirtualServer {
    /// A virtual server with keepalived's defaults.
    pub fn new(address: VsAddress) -> Self {
        VirtualServer {
            address,
            protocol: None,
            lvs_sched: None,
            lvs_method: None,
            hashed: false,
            flag_1: false,
            flag_2: false,
            flag_3: false,
            sh_port: false,
            sh_fallback: false,
            mh_port: false,
            mh_fallback: false,
            ops: false,
            persistence_engine: None,
            persistence_timeout: None,
            persistence_granularity: None,
            ip_family: None,
            ha_suspend: false,
            smtp_alert: None,
            virtualhost: None,
            snmp_name: None,
            alpha: false,
            omega: false,
            quorum: 1,
            hysteresis: 0,
            quorum_up: None,
            quorum_down: None,
            sorry_server: None,
            sorry_server_inhibit: false,
            sorry_server_lvs_method: None,
            weight: None,
            inhibit_on_failure: false,
            connect_timeout: None,
            retry: None,
            delay_before_retry: None,
            warmup: None,
            delay_loop: None,
            laddr_group_name: None,
            syn_proxy: false,
            vip_bind_dev: None,
            est_timeout: None,
            real_servers: Vec::new(),
        }
    }

    /// Scheduler in effect (keepalived: wlc).
    pub fn effective_sched(&self) -> LbAlgo {
        self.lvs_sched.unwrap_or(LbAlgo::Wlc)
    }

    /// Forwarding method in effect (keepalived: NAT).
    pub fn effective_kind(&self) -> LbKind {
        self.lvs_method.as_ref().map_or(LbKind::Nat, |m| m.kind)
    }

    /// Check period in effect (keepalived: 60 s).
    pub fn effective_delay_loop(&self) -> Duration {
        self.delay_loop.unwrap_or(Duration::from_secs(60))
    }
}

/// `real_server IP [PORT] { }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[doc(alias = "real_server")]
#[expect(
    missing_docs,
    reason = "fields are keepalived's real_server keywords, documented in keepalived.conf(5)"
)]
pub struct RealServer {
    pub address: IpAddr,
    #[serde(default)]
    pub port: Option<u16>,
    /// IPVS weight (default: the virtual server's weight, else 1).
    #[serde(default)]
    pub weight: Option<i32>,
    #[serde(default)]
    pub lvs_method: Option<LvsMethod>,
    #[serde(default)]
    pub uthreshold: Option<u32>,
    #[serde(default)]
    pub lthreshold: Option<u32>,
    #[serde(default)]
    pub inhibit_on_failure: Option<bool>,
    #[serde(default)]
    pub notify_up: Option<Box<Script>>,
    #[serde(default)]
    pub notify_down: Option<Box<Script>>,
    #[serde(default)]
    pub alpha: Option<bool>,
    #[serde(default)]
    pub retry: Option<u32>,
    #[serde(default, with = "secs::opt")]
    pub delay_before_retry: Option<Duration>,
    #[serde(default, with = "secs::opt")]
    pub warmup: Option<Duration>,
    #[serde(default, with = "secs::opt")]
    pub connect_timeout: Option<Duration>,
    #[serde(default, with = "secs::opt")]
    pub delay_loop: Option<Duration>,
    #[serde(default)]
    pub smtp_alert: Option<bool>,
    #[serde(default)]
    pub virtualhost: Option<String>,
    #[serde(default)]
    pub snmp_name: Option<String>,
    #[serde(default)]
    pub checkers: Vec<Checker>,
}

impl RealServer {
    /// A real server with keepalived's defaults.
    pub fn new(address: IpAddr, port: Option<u16>) -> Self {
        RealServer {
            address,
            port,
            weight: None,
            lvs_method: None,
            uthreshold: None,
            lthreshold: None,
            inhibit_on_failure: None,
            notify_up: None,
            notify_down: None,
            alpha: None,
            retry: None,
            delay_before_retry: None,
            warmup: None,
            connect_timeout: None,
            delay_loop: None,
            smtp_alert: None,
            virtualhost: None,
            snmp_name: None,
            checkers: Vec::new(),
        }
    }

    /// Weight in effect: the real server's, else the virtual server's, else 1.
    pub fn effective_weight(&self, vs: &VirtualServer) -> i32 {
        self.weight.or(vs.weight).unwrap_or(1)
    }
}

/// Options every connecting checker has.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[expect(missing_docs, reason = "fields are keepalived's checker keywords, documented in keepalived.conf(5)")]
pub struct CheckCommon {
    pub connect_ip: Option<IpAddr>,
    pub connect_port: Option<u16>,
    pub bindto: Option<IpAddr>,
    pub bind_port: Option<u16>,
    pub bind_if: Option<String>,
    #[serde(with = "secs::opt")]
    pub connect_timeout: Option<Duration>,
    pub fwmark: Option<u32>,
    /// `retry` / `nb_get_retry`.
    pub retry: Option<u32>,
    #[serde(with = "secs::opt")]
    pub delay_before_retry: Option<Duration>,
    #[serde(with = "secs::opt")]
    pub warmup: Option<Duration>,
    #[serde(with = "secs::opt")]
    pub delay_loop: Option<Duration>,
    pub alpha: Option<bool>,
    pub log_all_failures: Option<bool>,
}

/// A range of HTTP status codes (`200-299`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRange {
    /// First code.
    pub from: u16,
    /// Last code.
    pub to: u16,
}

/// `url { }` of HTTP_GET / SSL_GET.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[expect(missing_docs, reason = "fields are keepalived's url keywords, documented in keepalived.conf(5)")]
pub struct Url {
    pub path: Option<String>,
    /// Expected MD5 of the body, lower-case hex.
    pub digest: Option<String>,
    /// Accepted status codes (default 200-299).
    pub status_code: Vec<StatusRange>,
    pub virtualhost: Option<String>,
    pub regex: Option<String>,
    pub regex_no_match: bool,
    pub regex_options: Vec<String>,
    pub regex_min_offset: Option<u64>,
    pub regex_max_offset: Option<u64>,
    pub regex_stack: Option<(u64, u64)>,
}

/// HTTP version of HTTP_GET / SSL_GET.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HttpProtocol {
    /// HTTP/1.0.
    #[serde(rename = "1.0")]
    V1_0,
    /// HTTP/1.0 with `Connection: close`.
    #[serde(rename = "1.0C")]
    V1_0C,
    /// HTTP/1.1.
    #[serde(rename = "1.1")]
    V1_1,
}

/// HTTP_GET / SSL_GET options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpCheck {
    /// Connection options.
    pub conn: CheckCommon,
    /// HTTP version.
    pub http_protocol: Option<HttpProtocol>,
    /// `fast_recovery`.
    pub fast_recovery: Option<bool>,
    /// `enable_sni` (SSL_GET).
    pub enable_sni: bool,
    /// Host header for all urls.
    pub virtualhost: Option<String>,
    /// URLs checked.
    pub urls: Vec<Url>,
}

/// SMTP_CHECK options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SmtpCheck {
    /// Connection options.
    pub conn: CheckCommon,
    /// HELO name (default smtpchecker.keepalived.org).
    pub helo_name: Option<String>,
    /// Deprecated `host { }` sub-blocks: further hosts checked.
    pub hosts: Vec<CheckCommon>,
}

/// DNS_CHECK options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsCheck {
    /// Connection options.
    pub conn: CheckCommon,
    /// Query type (default SOA).
    #[serde(rename = "type")]
    pub query_type: Option<String>,
    /// Query name (default ".").
    pub name: Option<String>,
}

/// MISC_CHECK options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MiscCheck {
    /// Timing options (connection options do not apply).
    pub conn: CheckCommon,
    /// The program (required).
    pub misc_path: Option<Script>,
    /// Kill the program after this long.
    #[serde(with = "secs::opt")]
    pub misc_timeout: Option<Duration>,
    /// Exit status sets the weight.
    pub misc_dynamic: bool,
}

/// UDP_CHECK options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UdpCheck {
    /// Connection options.
    pub conn: CheckCommon,
    /// Payload bytes (default random).
    pub payload: Option<Vec<u8>>,
    /// `require_reply [HEX]`: present when a reply is required; the pattern (x = any nibble).
    pub require_reply: Option<String>,
    /// Minimum reply length.
    pub min_reply_length: Option<u32>,
    /// Maximum reply length.
    pub max_reply_length: Option<u32>,
}

/// FILE_CHECK options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FileCheck {
    /// track_file name.
    pub track_file: Option<String>,
    /// Multiplier.
    pub weight: Option<i32>,
    /// `reverse`.
    pub reverse: bool,
    /// `dynamic`.
    pub dynamic: bool,
}

/// BFD_CHECK options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BfdCheck {
    /// bfd_instance name.
    pub name: Option<String>,
    /// `alpha`.
    pub alpha: Option<bool>,
}

/// A health checker of a real server. The larger checkers are boxed so that the common
/// TCP_CHECK stays inline and 100k real servers stay small.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Checker {
    /// HTTP GET of one or more urls.
    #[serde(rename = "HTTP_GET")]
    HttpGet(Box<HttpCheck>),
    /// HTTPS GET.
    #[serde(rename = "SSL_GET")]
    SslGet(Box<HttpCheck>),
    /// TCP connect.
    #[serde(rename = "TCP_CHECK")]
    TcpCheck(CheckCommon),
    /// SMTP banner and HELO.
    #[serde(rename = "SMTP_CHECK")]
    SmtpCheck(Box<SmtpCheck>),
    /// DNS query.
    #[serde(rename = "DNS_CHECK")]
    DnsCheck(Box<DnsCheck>),
    /// External program.
    #[serde(rename = "MISC_CHECK")]
    MiscCheck(Box<MiscCheck>),
    /// UDP probe.
    #[serde(rename = "UDP_CHECK")]
    UdpCheck(Box<UdpCheck>),
    /// ICMP echo.
    #[serde(rename = "PING_CHECK")]
    PingCheck(CheckCommon),
    /// Value of a track_file.
    #[serde(rename = "FILE_CHECK")]
    FileCheck(FileCheck),
    /// State of a bfd_instance.
    #[serde(rename = "BFD_CHECK")]
    BfdCheck(BfdCheck),
}

impl Checker {
    /// The keepalived keyword of this checker.
    pub fn keyword(&self) -> &'static str {
        match self {
            Checker::HttpGet(_) => "HTTP_GET",
            Checker::SslGet(_) => "SSL_GET",
            Checker::TcpCheck(_) => "TCP_CHECK",
            Checker::SmtpCheck(_) => "SMTP_CHECK",
            Checker::DnsCheck(_) => "DNS_CHECK",
            Checker::MiscCheck(_) => "MISC_CHECK",
            Checker::UdpCheck(_) => "UDP_CHECK",
            Checker::PingCheck(_) => "PING_CHECK",
            Checker::FileCheck(_) => "FILE_CHECK",
            Checker::BfdCheck(_) => "BFD_CHECK",
        }
    }

    /// The connection/timing options, for checkers that have them.
    pub fn common(&self) -> Option<&CheckCommon> {
        match self {
            Checker::HttpGet(h) | Checker::SslGet(h) => Some(&h.conn),
            Checker::TcpCheck(c) | Checker::PingCheck(c) => Some(c),
            Checker::SmtpCheck(s) => Some(&s.conn),
            Checker::DnsCheck(d) => Some(&d.conn),
            Checker::MiscCheck(m) => Some(&m.conn),
            Checker::UdpCheck(u) => Some(&u.conn),
            Checker::FileCheck(_) | Checker::BfdCheck(_) => None,
        }
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r: AddressRange = "192.168.100.5-254".parse().unwrap();
        assert_eq!(r.count(), 250);
        assert_eq!(r.to_string(), "192.168.100.5-192.168.100.254");
        let r: AddressRange = "1.1.2.1-2".parse().unwrap();
        assert_eq!(r.iter().map(|a| a.to_string()).collect::<Vec<_>>(), ["1.1.2.1", "1.1.2.2"]);
        let r: AddressRange = "192.168.202.8/29".parse().unwrap();
        assert_eq!((r.start.to_string(), r.count()), ("192.168.202.8".into(), 8));
        assert!("10.0.0.9-1".parse::<AddressRange>().is_err());
        assert!("10.0.0.9-300".parse::<AddressRange>().is_err());
        let r: AddressRange = "2001::1-ff".parse().unwrap();
        assert_eq!(r.count(), 255);
    }

    #[test]
    fn durations() {
        for (s, d) in [("1s", 1_000_000), ("0.001s", 1000), ("2.5s", 2_500_000), ("0.000001s", 1)] {
            assert_eq!(secs::parse(s).unwrap(), Duration::from_micros(d));
            assert_eq!(secs::format(&Duration::from_micros(d)), s);
        }
        assert_eq!(secs::parse("10ms").unwrap(), Duration::from_millis(10));
        assert!(secs::parse("x").is_err());
    }

    #[test]
    fn prefixes() {
        let p: IpPrefix = "10.0.0.1/24".parse().unwrap();
        assert_eq!(p.to_string(), "10.0.0.1/24");
        assert!("10.0.0.1/33".parse::<IpPrefix>().is_err());
        assert_eq!("fe80::1".parse::<IpPrefix>().unwrap().len, 128);
    }
}
