//! From the configuration model ([`crate::config::model`]) to what the VRRP runtime runs: one
//! [`InstancePlan`] per `vrrp_instance` (its [`InstanceParams`], transport, VIPs, routes,
//! tracking and notify scripts), the sync groups, and the tracked scripts and files.
//!
//! Planning is pure: the interfaces and their addresses come in as a [`HostView`], so the
//! mapping is unit tested without a kernel. An instance that cannot run (no VRID, unknown
//! interface, no source address, ...) is left out with a [`PlanError`] naming it; keepalived
//! likewise carries on with the instances it can run.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use super::{
    packet::{AddressList, VRRP_MCAST_GROUP_V4, VRRP_MCAST_GROUP_V6, VRRP_TTL, Version, Vrid},
    script::ScriptPolicy,
    state::{Authentication, InitialState, InstanceParams, Preempt},
    track::{TrackEntry, TrackedObject},
};
use crate::{
    config::model::{
        self, Config, Family, IpAddressEntry, RouteEntry, Script, TrackRef, VrrpInstance, VrrpState,
        VrrpSyncGroup, VrrpVersion,
    },
    netlink::{
        Link,
        addr::{InterfaceAddress, Scope},
        route::{RTPROT_KEEPALIVED, Route, RouteKind},
        rule::Rule,
        vmac::{IpvlanFlag, virtual_mac},
    },
};

/// keepalived's `vrrp_garp_master_delay` default.
const GARP_MASTER_DELAY: Duration = Duration::from_secs(5);
/// keepalived's `vrrp_garp_master_repeat` default.
const GARP_MASTER_REPEAT: u32 = 5;

/// The interfaces of the host and their addresses, as read before planning.
#[derive(Debug, Clone, Default)]
pub struct HostView {
    /// Every interface.
    pub links: Vec<Link>,
    /// The addresses of each interface (by index), primary first as the kernel lists them.
    pub addresses: HashMap<u32, Vec<IpAddr>>,
    /// Those of them (interface index, address) in duplicate address detection or failed it:
    /// no source yet.
    pub tentative: std::collections::HashSet<(u32, IpAddr)>,
}

impl HostView {
    fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }

    fn addresses(&self, index: u32) -> &[IpAddr] {
        self.addresses.get(&index).map(Vec::as_slice).unwrap_or_default()
    }
}

/// Why an instance (or part of it) was left out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("({instance}) {message}")]
pub struct PlanError {
    /// The `vrrp_instance` or `vrrp_sync_group` name.
    pub instance: String,
    /// What is wrong.
    pub message: String,
}

/// How an instance sends and receives adverts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// To and from a multicast group (224.0.0.18 / ff02::12 unless configured).
    Multicast {
        /// The group.
        group: IpAddr,
    },
    /// To each `unicast_peer`.
    Unicast {
        /// The peers.
        peers: Vec<model::UnicastPeer>,
        /// `check_unicast_src` / `vrrp_check_unicast_src`: accept adverts only from the peers.
        check_source: bool,
        /// `old_unicast_checksum`: the VRRPv3 IPv4 checksum of keepalived before 1.3.6.
        old_checksum: OldChecksum,
    },
}

/// Which VRRPv3 checksum a unicast IPv4 instance uses: RFC 5798's (the pseudo-header has the
/// peer's address) or that of keepalived before 1.3.6 (the multicast group instead), which
/// keepalived 2.2.7 detects by itself unless told `old_unicast_checksum never`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OldChecksum {
    /// The RFC's, switching to the old one (for good) on the first advert that has it.
    #[default]
    Detect,
    /// `old_unicast_checksum`: the old one from the start (received adverts may have either).
    Always,
    /// `old_unicast_checksum never`: the RFC's only.
    Never,
}

/// A `use_vmac` interface (or `use_ipvlan` one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmacPlan {
    /// Its name (`vrrp.VRID` unless configured).
    pub name: String,
    /// Its MAC (the RFC 5798 virtual router MAC unless configured; an ipvlan's parent's).
    pub mac: [u8; 6],
    /// `use_ipvlan`: an ipvlan, not a macvlan.
    pub ipvlan: bool,
    /// The interface it sits on.
    pub parent: u32,
    /// `vmac_xmit_base`: adverts leave through the parent, not the macvlan.
    pub xmit_base: bool,
}

/// A virtual address and where its gratuitous ARPs / NAs go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vip {
    /// The address as installed.
    pub address: InterfaceAddress,
    /// The MAC the gratuitous ARP / NA announces (the device's MAC).
    pub mac: [u8; 6],
    /// The device's name, for log lines.
    pub interface: String,
}

/// The notify scripts of an instance or a sync group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyPlan {
    /// `notify_master`.
    pub master: Option<Script>,
    /// `notify_backup`.
    pub backup: Option<Script>,
    /// `notify_fault`.
    pub fault: Option<Script>,
    /// `notify_stop`.
    pub stop: Option<Script>,
    /// `notify`, called with `GROUP|INSTANCE NAME STATE PRIORITY`.
    pub generic: Option<Script>,
    /// `notify_master_rx_lower_pri` (instances only): a master heard a lower priority.
    pub master_rx_lower_pri: Option<Script>,
    /// `notify_deleted SCRIPT` (instances only): run when a reload deletes the instance.
    pub deleted: Option<Script>,
}

/// One `vrrp_instance`, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstancePlan {
    /// Its name (`VI_1`).
    pub name: String,
    /// The interface adverts go through (the macvlan with `use_vmac`).
    pub interface: Link,
    /// The configured `interface`.
    pub base_interface: Link,
    /// `use_vmac`.
    pub vmac: Option<VmacPlan>,
    /// What the state machine needs.
    pub params: InstanceParams,
    /// Multicast or unicast.
    pub transport: Transport,
    /// `virtual_ipaddress` of the instance's family (the advertised ones) and those of the other
    /// family, which are installed with them.
    pub vips: Vec<Vip>,
    /// `virtual_ipaddress_excluded`: installed, never advertised.
    pub excluded: Vec<Vip>,
    /// `virtual_routes`.
    pub routes: Vec<Route>,
    /// `virtual_rules`: installed with the VIPs, removed with them.
    pub rules: Vec<Rule>,
    /// `unicast_ttl`: the TTL (hop limit) of its unicast adverts (255 unless configured).
    pub unicast_ttl: u8,
    /// The interface its VIPs go on unless they say `dev` (the macvlan with `use_vmac`,
    /// keepalived's `vrrp->ifp`).
    pub vip_interface: u32,
    /// `garp_extra_if` (else `vrrp_garp_extra_if`): while MASTER, a gratuitous ARP / NA this
    /// often on the interfaces of its VIPs other than its own (VMACs only unless `all`).
    pub garp_extra_if: Option<model::GarpExtraIf>,
    /// What it tracks (its own interface unless `dont_track_primary`).
    pub tracking: Vec<TrackEntry>,
    /// Its notify scripts.
    pub notify: NotifyPlan,
    /// `smtp_alert` (instance, else `smtp_alert_vrrp`, else `smtp_alert`).
    pub smtp_alert: bool,
    /// `notify_priority_changes` (instance, else its sync group, else
    /// `vrrp_notify_priority_changes`): write priority changes to the notify FIFOs.
    pub notify_priority_changes: bool,
    /// `notify_deleted`: a reload that deletes the instance tells its notify scripts DELETED
    /// rather than FAULT.
    pub notify_deleted: bool,
    /// `promote_secondaries`: the kernel's `promote_secondaries` on its interface (the macvlan
    /// with `use_vmac`), so that removing an interface's primary address keeps the VIPs of its
    /// subnet.
    pub promote_secondaries: bool,
    /// Index of its sync group in [`Plan::groups`].
    pub group: Option<usize>,
    /// Neither the address owner (priority 255) nor in accept mode (`no_accept`, or strict mode
    /// without `accept`): while MASTER, traffic to and from its VIPs is dropped
    /// ([`super::firewall`]).
    pub no_accept: bool,
    /// `kernel_rx_buf_size`, else what `vrrp_rx_bufs_policy` gives it (0: neither): its share
    /// of its socket's receive buffer, which is the sum of its instances' shares.
    pub rx_buf_size: u32,
    /// Without `mcast_src_ip` / `unicast_src_ip`: the source is the interface's address (IPv4)
    /// or link-local address (IPv6), and follows it when it goes (keepalived 2.2.7: another
    /// address of the interface, or FAULT until one comes).
    pub source_follows_interface: bool,
    /// Its source, an IPv6 link-local address, is still in duplicate address detection (and
    /// none of the interface is out of it): the instance starts in FAULT, without a socket
    /// bound to it, until the kernel says the address is usable.
    pub source_pending: bool,
    /// `dont_track_primary` without `nftables_ifindex`: its link-local VIPs are blocked by
    /// interface name rather than index, as keepalived does.
    pub link_local_by_name: bool,
}

/// A `vrrp_sync_group` with at least two instances that exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPlan {
    /// Its name.
    pub name: String,
    /// Indices of its members in [`Plan::instances`].
    pub members: Vec<usize>,
    /// Its notify scripts.
    pub notify: NotifyPlan,
    /// `smtp_alert`.
    pub smtp_alert: bool,
}

/// A `vrrp_script` some instance tracks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptPlan {
    /// Its name.
    pub name: String,
    /// The command.
    pub script: Script,
    /// `interval`.
    pub interval: Duration,
    /// `timeout` (default: the interval).
    pub timeout: Duration,
    /// `rise`.
    pub rise: u32,
    /// `fall`.
    pub fall: u32,
    /// `init_fail`.
    pub init_fail: bool,
}

/// A `track_file` some instance tracks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePlan {
    /// Its name.
    pub name: String,
    /// The file.
    pub path: String,
    /// `init_file [VALUE] [overwrite]`.
    pub init: Option<model::InitFile>,
}

/// Everything the VRRP runtime runs.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The instances.
    pub instances: Vec<InstancePlan>,
    /// The sync groups.
    pub groups: Vec<GroupPlan>,
    /// The tracked scripts ([`TrackedObject::Script`] indexes this).
    pub scripts: Vec<ScriptPlan>,
    /// The tracked files ([`TrackedObject::File`] indexes this).
    pub files: Vec<FilePlan>,
    /// `script_user`, `enable_script_security`.
    pub script_policy: ScriptPolicy,
    /// `vrrp_garp_interval` / `vrrp_gna_interval` and `garp_group`: the pauses between
    /// gratuitous ARPs / NAs.
    pub garp_pacing: super::addr::GarpPacing,
    /// `smtp_server` and the mail settings, when `smtp_alert` mails can be sent.
    pub smtp: Option<SmtpPlan>,
    /// The nftables table of the `no_accept` instances, if there is one.
    pub firewall: Option<super::firewall::FirewallPlan>,
    /// The interfaces whose link state is polled rather than followed through netlink
    /// (`linkbeat_use_polling`, `linkbeat_interfaces`).
    pub linkbeat: Vec<String>,
}

/// Where `smtp_alert` mails go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpPlan {
    /// `smtp_server` host.
    pub host: String,
    /// Its port (25 by default).
    pub port: u16,
    /// `smtp_helo_name` (default: the host name).
    pub helo: String,
    /// `notification_email_from`.
    pub from: String,
    /// `notification_email`.
    pub to: Vec<String>,
    /// `smtp_connect_timeout` (default 30 s).
    pub connect_timeout: Duration,
    /// `router_id` (default: the host name), in the subject.
    pub router_id: String,
}

/// A `use_vmac` (or `use_ipvlan`) interface the configuration asks for. A reload keeps one
/// the next configuration wants the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VmacWanted {
    /// Its name (`vrrp.VRID` unless configured).
    pub name: String,
    /// The name of the interface it sits on.
    pub parent: String,
    /// Its MAC (an ipvlan has its parent's: all zeros here).
    pub mac: [u8; 6],
    /// For an IPv6 instance: it needs a link-local address of its own (a macvlan).
    pub ipv6: bool,
    /// `use_ipvlan`: an ipvlan rather than a macvlan.
    pub ipvlan: Option<IpvlanWanted>,
}

/// What `use_ipvlan` asks of its ipvlan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpvlanWanted {
    /// `bridge`, `private` or `vepa`.
    pub flag: IpvlanFlag,
    /// The address put on it (keepalived also sends the instance's adverts from it, unless
    /// another source is configured).
    pub address: Option<model::IpPrefix>,
}

/// The `use_ipvlan` interface of `instance`, if it has one and can: keepalived names it as a
/// VMAC (`vrrp.VRID` unless named) and ignores `use_ipvlan` next to `use_vmac`.
fn ipvlan_wanted(config: &Config, instance: &VrrpInstance) -> Option<VmacWanted> {
    let (Some(ipvlan), Some(vrid)) = (instance.use_ipvlan.as_ref(), instance.virtual_router_id) else {
        return None;
    };
    if instance.use_vmac.is_some() {
        return None;
    }
    let parent = instance.interface.clone().or_else(|| config.global_defs.default_interface.clone())?;
    Some(VmacWanted {
        name: ipvlan.name.clone().unwrap_or_else(|| vmac_name(config, vrid)),
        parent,
        mac: [0; 6],
        ipv6: instance.family() == Family::Inet6,
        ipvlan: Some(IpvlanWanted {
            flag: ipvlan.mode.as_deref().and_then(IpvlanFlag::parse).unwrap_or_default(),
            address: ipvlan.address,
        }),
    })
}

/// The `use_vmac` interfaces the configuration asks for: each instance's own, then those of
/// `use_vmac_addr` ([`address_vmacs`]).
pub fn vmacs_wanted(config: &Config) -> Vec<VmacWanted> {
    address_vmacs(config).into_iter().map(|(_, _, wanted)| wanted).collect()
}

/// Every VMAC the configuration asks for, with the instance and the VIP interface it is for
/// when it comes from `use_vmac_addr` (`None` for an instance's own `use_vmac`).
///
/// keepalived 2.2.7 (measured): `use_vmac_addr` gives each interface other than the instance's
/// that a VIP or excluded VIP names with `dev` a macvlan of its own, with the instance's virtual
/// MAC, named `PREFIX.VRID` (the prefix is `vmac_addr_prefix`, else `vmac_prefix`, else
/// `vrrp`), or `PREFIX1.VRID`, `PREFIX2.VRID`... when that name is taken; the VIPs go on it.
/// It does so with or without `use_vmac`.
pub fn address_vmacs(config: &Config) -> Vec<(Option<String>, Option<String>, VmacWanted)> {
    let mut wanted: Vec<(Option<String>, Option<String>, VmacWanted)> = Vec::new();
    for instance in &config.vrrp_instances {
        let (Some(vmac), Some(vrid)) = (instance.use_vmac.as_ref(), instance.virtual_router_id) else {
            continue;
        };
        let Some(parent) =
            instance.interface.clone().or_else(|| config.global_defs.default_interface.clone())
        else {
            continue;
        };
        let name = vmac.name.clone().unwrap_or_else(|| vmac_name(config, vrid));
        let ipv6 = instance.family() == Family::Inet6;
        let mac = vmac.mac.as_deref().and_then(parse_mac).unwrap_or_else(|| virtual_mac(vrid, ipv6));
        wanted.push((None, None, VmacWanted { name, parent, mac, ipv6, ipvlan: None }));
    }
    for instance in &config.vrrp_instances {
        wanted.extend(ipvlan_wanted(config, instance).map(|ipvlan| (None, None, ipvlan)));
    }
    let global = &config.global_defs;
    let prefix = global.vmac_addr_prefix.as_deref().or(global.vmac_prefix.as_deref()).unwrap_or("vrrp");
    for instance in config.vrrp_instances.iter().filter(|i| i.use_vmac_addr) {
        let Some(vrid) = instance.virtual_router_id else { continue };
        let own = instance.interface.clone().or_else(|| global.default_interface.clone());
        let ipv6 = instance.family() == Family::Inet6;
        let mac = instance
            .use_vmac
            .as_ref()
            .and_then(|v| v.mac.as_deref())
            .and_then(parse_mac)
            .unwrap_or_else(|| virtual_mac(vrid, ipv6));
        for dev in instance
            .virtual_ipaddress
            .iter()
            .chain(&instance.virtual_ipaddress_excluded)
            .filter_map(|e| e.dev.clone())
        {
            if own.as_deref() == Some(dev.as_str())
                || wanted
                    .iter()
                    .any(|(i, d, _)| i.as_deref() == Some(&instance.name) && d.as_deref() == Some(&dev))
            {
                continue;
            }
            let name = (0..)
                .map(|n| if n == 0 { format!("{prefix}.{vrid}") } else { format!("{prefix}{n}.{vrid}") })
                .find(|name| !wanted.iter().any(|(_, _, w)| &w.name == name))
                .unwrap_or_default();
            wanted.push((
                Some(instance.name.clone()),
                Some(dev.clone()),
                VmacWanted { name, parent: dev, mac, ipv6, ipvlan: None },
            ));
        }
    }
    wanted
}

/// The name of a `use_vmac` interface without one of its own: `PREFIX.VRID`, the prefix being
/// `vmac_prefix` (`vrrp` by default), as keepalived names them.
fn vmac_name(config: &Config, vrid: u8) -> String {
    format!("{}.{vrid}", config.global_defs.vmac_prefix.as_deref().unwrap_or("vrrp"))
}

/// A MAC of 6 octets (keepalived also takes 5 as a prefix for the VRID; lbd then uses the RFC
/// MAC).
fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    for (byte, part) in mac.iter_mut().zip(parts) {
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    Some(mac)
}

/// Plans every instance of `config` on `host`. Instances that cannot run are left out and their
/// problems returned with the plan.
pub fn plan(config: &Config, host: &HostView) -> (Plan, Vec<PlanError>) {
    let mut planner = Planner { config, host, plan: Plan::default(), errors: Vec::new() };
    planner.plan.script_policy = ScriptPolicy::from_globals(&config.global_defs);
    planner.plan.garp_pacing = garp_pacing(config, host, &mut planner.errors);
    planner.plan.smtp = smtp_plan(config);
    let groups: HashMap<&str, &VrrpSyncGroup> = config
        .vrrp_sync_groups
        .iter()
        .flat_map(|g| g.group.iter().map(move |member| (member.as_str(), g)))
        .collect();
    for instance in &config.vrrp_instances {
        let group = groups.get(instance.name.as_str()).copied();
        match planner.instance(instance, group) {
            Ok(plan) => planner.plan.instances.push(plan),
            Err(message) => planner.errors.push(PlanError { instance: instance.name.clone(), message }),
        }
    }
    planner.groups();
    planner.plan.firewall = firewall_plan(config, &planner.plan.instances);
    planner.plan.linkbeat = linkbeat(config, &planner.plan.instances);
    (planner.plan, planner.errors)
}

/// The nftables table when some instance is `no_accept` or has VMACs: keepalived 2.2.7 then
/// uses nftables whether or not `nftables` (or `vrrp_iptables`) was given.
fn firewall_plan(config: &Config, instances: &[InstancePlan]) -> Option<super::firewall::FirewallPlan> {
    let blocking: Vec<&InstancePlan> = instances.iter().filter(|i| i.no_accept).collect();
    // keepalived's VMAC rules (IGMP / MLD) are for macvlans only, not ipvlans.
    if blocking.is_empty() && vmacs_wanted(config).iter().all(|w| w.ipvlan.is_some()) {
        return None;
    }
    let mut plan = super::firewall::FirewallPlan::from_globals(&config.global_defs);
    plan.link_local_by_name = blocking.iter().any(|i| i.link_local_by_name);
    plan.link_local_by_index = blocking.iter().any(|i| !i.link_local_by_name);
    Some(plan)
}

/// The interfaces linkbeat polls: those of `linkbeat_interfaces`, the interface of each instance
/// with `linkbeat_use_polling` (keepalived's deprecated instance keyword), and with the global
/// `linkbeat_use_polling` every interface an instance tracks.
fn linkbeat(config: &Config, instances: &[InstancePlan]) -> Vec<String> {
    let mut names: Vec<String> = config.linkbeat_interfaces.iter().map(|l| l.name.clone()).collect();
    for plan in instances {
        let configured = config.vrrp_instances.iter().find(|v| v.name == plan.name);
        if configured.is_some_and(|v| v.linkbeat_use_polling) {
            names.push(plan.base_interface.name.clone());
        }
        if config.global_defs.linkbeat_use_polling {
            names.extend(plan.tracking.iter().filter_map(|t| match &t.object {
                TrackedObject::Interface(name) => Some(name.clone()),
                _ => None,
            }));
        }
    }
    names.sort();
    names.dedup();
    names
}

/// An instance's share of its socket's receive buffer, as keepalived 2.2.7 computes it (measured:
/// `kernel_rx_buf_size`, else per `vrrp_rx_bufs_policy`: the interface's MTU or the advert's
/// size, IP header included, times `vrrp_rx_bufs_multiplier` (3), or the size given; else 0).
fn rx_buf_size(v: &VrrpInstance, global: &model::GlobalDefs, mtu: u32, params: &InstanceParams) -> u32 {
    let saturate = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    if let Some(size) = v.kernel_rx_buf_size.filter(|s| *s > 0) {
        return saturate(size);
    }
    let multiplier = u64::from(global.vrrp_rx_bufs_multiplier.unwrap_or(3));
    match global.vrrp_rx_bufs_policy {
        None => 0,
        Some(model::RxBufsPolicy::Size(size)) => saturate(size),
        Some(model::RxBufsPolicy::Mtu) => saturate(u64::from(mtu) * multiplier),
        Some(model::RxBufsPolicy::Advert) => saturate(advert_size(params) * multiplier),
    }
}

/// The size of an instance's advert with its IP header (and AH header).
fn advert_size(params: &InstanceParams) -> u64 {
    let (ip_header, addresses) = match &params.addresses {
        AddressList::V4(a) => (20, 4 * a.len()),
        AddressList::V6(a) => (40, 16 * a.len()),
    };
    let ah = if matches!(params.authentication, Authentication::Ah(_)) { 24 } else { 0 };
    // VRRPv2 always carries 8 bytes of authentication data.
    let auth_data = if params.version == Version::V2 { 8 } else { 0 };
    u64::try_from(ip_header + ah + 8 + addresses + auth_data).unwrap_or(u64::MAX)
}

/// The gratuitous ARP / NA pauses: the global ones, and those of each `garp_group` for its
/// interfaces (an interface that does not exist is reported and left out).
fn garp_pacing(config: &Config, host: &HostView, errors: &mut Vec<PlanError>) -> super::addr::GarpPacing {
    let global = &config.global_defs;
    let mut pacing = super::addr::GarpPacing {
        garp_interval: global.vrrp_garp_interval.unwrap_or_default(),
        gna_interval: global.vrrp_gna_interval.unwrap_or_default(),
        groups: HashMap::new(),
    };
    for (number, group) in config.garp_groups.iter().enumerate() {
        let pauses =
            (number, group.garp_interval.unwrap_or_default(), group.gna_interval.unwrap_or_default());
        for name in group.interface.iter().chain(&group.interfaces) {
            match host.link(name) {
                Some(link) => {
                    pacing.groups.insert(link.index, pauses);
                }
                None => errors.push(PlanError {
                    instance: "garp_group".into(),
                    message: format!("interface {name} not found"),
                }),
            }
        }
    }
    pacing
}

/// `static_ipaddress` and `static_routes`: installed by the VRRP child whatever the instances'
/// states, as keepalived does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticPlan {
    /// The addresses.
    pub addresses: Vec<Vip>,
    /// The routes.
    pub routes: Vec<Route>,
    /// The policy rules.
    pub rules: Vec<Rule>,
}

/// Plans the static addresses and routes of `config` on `host`; an entry that cannot be
/// installed (unknown interface, unsupported option) is left out with a [`PlanError`].
/// Addresses without `dev` go on `default_interface` (`eth0` by default, as keepalived).
pub fn static_plan(config: &Config, host: &HostView) -> (StaticPlan, Vec<PlanError>) {
    let mut planner = Planner { config, host, plan: Plan::default(), errors: Vec::new() };
    let mut statics = StaticPlan::default();
    let default_name = config.global_defs.default_interface.as_deref().unwrap_or("eth0");
    let default_link = host.link(default_name).cloned();
    // Where an entry names its own device or gateway, the default interface is not used.
    let fallback = default_link.clone().unwrap_or(Link {
        index: 0,
        name: String::new(),
        up: false,
        running: false,
        loopback: false,
        mac: Vec::new(),
        mtu: 0,
        parent: None,
        controller: None,
        kind: None,
    });
    for entry in &config.static_ipaddress {
        let planned = match (&entry.dev, &default_link) {
            (None, None) => {
                Err(format!("static address {}: no dev and no interface {default_name}", entry.address))
            }
            (Some(_), _) | (None, Some(_)) => planner.vip(entry, &fallback),
        };
        match planned {
            Ok(vip) => statics.addresses.push(vip),
            Err(message) => planner.warn("static_ipaddress", message),
        }
    }
    for entry in &config.static_routes {
        if entry.dev.is_none() && entry.via.is_empty() && default_link.is_none() {
            planner.warn("static_routes", format!("route {:?}: no dev, no via", entry.destination));
            continue;
        }
        match planner.route(entry, &fallback) {
            Ok(route) => statics.routes.push(route),
            Err(message) => planner.warn("static_routes", message),
        }
    }
    for entry in &config.static_rules {
        match rule(entry) {
            Ok(rule) => statics.rules.push(rule),
            Err(message) => planner.warn("static_rules", message),
        }
    }
    (statics, planner.errors)
}

/// A `static_rules` / `virtual_rules` entry as a rule to install.
fn rule(entry: &model::RuleEntry) -> Result<Rule, String> {
    if !entry.options.is_empty() {
        return Err(format!("rule options {} are not supported yet", entry.options.join(" ")));
    }
    let table = entry.table.as_deref().ok_or("a rule without table (lookup) is not supported yet")?;
    let ipv6 = entry.inet6 || entry.from.or(entry.to).is_some_and(|p| p.addr.is_ipv6());
    let fwmark = match entry.fwmark.as_deref() {
        None => None,
        Some(text) => {
            let number = |t: &str| {
                let parsed = match t.strip_prefix("0x") {
                    Some(hex) => u32::from_str_radix(hex, 16),
                    None => t.parse(),
                };
                parsed.map_err(|_| format!("invalid fwmark {text}"))
            };
            let (mark, mask) = match text.split_once('/') {
                Some((mark, mask)) => (number(mark)?, Some(number(mask)?)),
                None => (number(text)?, None),
            };
            Some((mark, mask))
        }
    };
    Ok(Rule {
        ipv6,
        from: entry.from.map(|p| (p.addr, p.len)),
        to: entry.to.map(|p| (p.addr, p.len)),
        table: table_id(table)?,
        preference: entry.preference,
        iif: entry.iif.clone(),
        oif: entry.oif.clone(),
        fwmark,
    })
}

/// A routing table by name (`main`, `local`, `default`) or number.
fn table_id(name: &str) -> Result<u32, String> {
    match name {
        "main" => Ok(254),
        "local" => Ok(255),
        "default" => Ok(253),
        number => number.parse().map_err(|_| format!("unknown routing table {number}")),
    }
}

struct Planner<'a> {
    config: &'a Config,
    host: &'a HostView,
    plan: Plan,
    errors: Vec<PlanError>,
}

impl Planner<'_> {
    fn warn(&mut self, instance: &str, message: String) {
        self.errors.push(PlanError { instance: instance.to_owned(), message });
    }

    fn instance(&mut self, v: &VrrpInstance, group: Option<&VrrpSyncGroup>) -> Result<InstancePlan, String> {
        let global = &self.config.global_defs;
        let vrid = v.virtual_router_id.and_then(Vrid::new).ok_or("no virtual_router_id")?;
        // keepalived's `vrf` (an instance without an interface): its advert sockets are bound
        // to the VRF device, so that they send and hear through the VRF's table and interfaces.
        let in_vrf = v.interface.is_none() && v.vrf.is_some();
        if in_vrf && v.unicast_peer.is_empty() {
            return Err("vrf without an interface needs unicast_peer (multicast needs an interface)".into());
        }
        let interface_name = v
            .interface
            .clone()
            .or_else(|| v.vrf.clone())
            .or_else(|| global.default_interface.clone())
            .ok_or("no interface")?;
        let base =
            self.host.link(&interface_name).ok_or(format!("interface {interface_name} not found"))?.clone();
        let family = v.family();
        let version = match v.effective_version(global) {
            VrrpVersion::V2 => Version::V2,
            VrrpVersion::V3 => Version::V3,
        };
        // keepalived's vrrp_complete_instance leaves these instances out (the configuration
        // check reports them with their line; the rest of strict mode is applied there).
        let strict = v.strict(global);
        if v.virtual_ipaddress.is_empty() && (version == Version::V3 || family == Family::Inet6 || strict) {
            return Err("No VIP specified; at least one is required".into());
        }
        if strict && !v.unicast_peer.is_empty() {
            return Err("Unicast peers are not supported in strict mode".into());
        }

        let vmac = v.use_vmac.as_ref().map(|_| {
            let (name, mac) = address_vmacs(&Config {
                vrrp_instances: vec![v.clone()],
                global_defs: global.clone(),
                ..Config::default()
            })
            .into_iter()
            .find(|(for_instance, _, _)| for_instance.is_none())
            .map(|(_, _, wanted)| (wanted.name, wanted.mac))
            .unwrap_or_else(|| {
                (vmac_name(self.config, vrid.get()), virtual_mac(vrid.get(), family == Family::Inet6))
            });
            VmacPlan { name, mac, ipvlan: false, parent: base.index, xmit_base: v.vmac_xmit_base }
        });
        // use_ipvlan: adverts and VIPs on the ipvlan, which has the parent's MAC.
        let ipvlan = ipvlan_wanted(self.config, v);
        let vmac = vmac.or_else(|| {
            ipvlan.as_ref().map(|wanted| VmacPlan {
                name: wanted.name.clone(),
                mac: <[u8; 6]>::try_from(base.mac.as_slice()).unwrap_or_default(),
                ipvlan: true,
                parent: base.index,
                // keepalived 2.2.7 sends through the parent with vmac_xmit_base, VMAC or ipvlan.
                xmit_base: v.vmac_xmit_base,
            })
        });
        let ipvlan_address = ipvlan.and_then(|w| w.ipvlan).and_then(|w| w.address).map(|a| a.addr);
        let vmac_link = match &vmac {
            Some(plan) => Some(
                self.host
                    .link(&plan.name)
                    .ok_or(format!(
                        "{} interface {} not found",
                        if plan.ipvlan { "use_ipvlan" } else { "use_vmac" },
                        plan.name
                    ))?
                    .clone(),
            ),
            None => None,
        };
        let interface = match (&vmac, &vmac_link) {
            (Some(plan), Some(link)) if !plan.xmit_base => link.clone(),
            _ => base.clone(),
        };

        let unicast = !v.unicast_peer.is_empty();
        let mut source_pending = false;
        let base_addresses = self.host.addresses(base.index);
        // keepalived: the use_ipvlan address is the source unless another one is configured.
        let configured = match family {
            Family::Inet if !unicast => v.mcast_src_ip.or(v.unicast_src_ip),
            Family::Inet6 if !unicast => v.mcast_src_ip,
            _ => v.unicast_src_ip,
        }
        .or(ipvlan_address);
        let source = match family {
            Family::Inet => match configured {
                Some(IpAddr::V4(a)) => IpAddr::V4(a),
                Some(other) => return Err(format!("source address {other} is not IPv4")),
                None => base_addresses
                    .iter()
                    .copied()
                    .find(|a| a.is_ipv4() && !self.is_vip(v, *a))
                    .ok_or(format!("no IPv4 address on {interface_name}"))?,
            },
            Family::Inet6 => {
                match configured {
                    Some(IpAddr::V6(a)) => IpAddr::V6(a),
                    Some(other) => return Err(format!("source address {other} is not IPv6")),
                    // With use_vmac, the macvlan's own link-local address; one out of duplicate
                    // address detection first, else one still in it (the instance then waits).
                    None => {
                        let candidates = || {
                            self.host.addresses(interface.index).iter().copied().filter(|a| {
                                matches!(a, IpAddr::V6(a6) if is_link_local(a6)) && !self.is_vip(v, *a)
                            })
                        };
                        let tentative = |a: &IpAddr| self.host.tentative.contains(&(interface.index, *a));
                        match candidates().find(|a| !tentative(a)) {
                            Some(a) => a,
                            None => {
                                let a = candidates()
                                    .next()
                                    .ok_or(format!("no IPv6 link-local address on {}", interface.name))?;
                                source_pending = true;
                                a
                            }
                        }
                    }
                }
            }
        };

        let transport = if unicast {
            for peer in &v.unicast_peer {
                if peer.address.is_ipv4() != source.is_ipv4() {
                    return Err(format!("unicast_peer {} is not of the instance's family", peer.address));
                }
            }
            Transport::Unicast {
                peers: v.unicast_peer.clone(),
                check_source: v.check_unicast_src || global.vrrp_check_unicast_src,
                old_checksum: match v.old_unicast_checksum {
                    None => OldChecksum::Detect,
                    Some(false) => OldChecksum::Always,
                    Some(true) => OldChecksum::Never,
                },
            }
        } else {
            let group = match family {
                Family::Inet => v
                    .mcast_dst_ip
                    .filter(IpAddr::is_ipv4)
                    .unwrap_or(IpAddr::V4(global.vrrp_mcast_group4.unwrap_or(VRRP_MCAST_GROUP_V4))),
                Family::Inet6 => v
                    .mcast_dst_ip
                    .filter(IpAddr::is_ipv6)
                    .unwrap_or(IpAddr::V6(global.vrrp_mcast_group6.unwrap_or(VRRP_MCAST_GROUP_V6))),
            };
            Transport::Multicast { group }
        };

        // keepalived: without an interface, VIPs without `dev` go on the default interface (lbd:
        // on the VRF device when there is no default interface).
        let default_link = in_vrf
            .then(|| self.host.link(global.default_interface.as_deref().unwrap_or("eth0")))
            .flatten()
            .cloned();
        let vip_link = vmac_link.as_ref().or(default_link.as_ref()).unwrap_or(&base);
        let vip_interface = vip_link.index;
        let mut vips = Vec::new();
        let mut advertised = Vec::new();
        // use_vmac_addr: a VIP on another interface goes on that interface's VMAC.
        let address_vmacs: Vec<(String, String)> = if v.use_vmac_addr {
            address_vmacs(self.config)
                .into_iter()
                .filter_map(|(instance, dev, wanted)| match (instance, dev) {
                    (Some(instance), Some(dev)) if instance == v.name => Some((dev, wanted.name)),
                    _ => None,
                })
                .collect()
        } else {
            Vec::new()
        };
        let on_vmac = |entry: &IpAddressEntry| -> IpAddressEntry {
            let mut entry = entry.clone();
            if let Some((_, vmac)) = address_vmacs.iter().find(|(dev, _)| entry.dev.as_ref() == Some(dev)) {
                entry.dev = Some(vmac.clone());
            }
            entry
        };
        for entry in &v.virtual_ipaddress {
            let vip = self.vip(&on_vmac(entry), vip_link)?;
            if entry.address.addr.is_ipv4() == (family == Family::Inet) {
                advertised.push(entry.address.addr);
            }
            vips.push(vip);
        }
        let excluded = v
            .virtual_ipaddress_excluded
            .iter()
            .map(|entry| self.vip(&on_vmac(entry), vip_link))
            .collect::<Result<Vec<_>, _>>()?;
        let addresses = match family {
            Family::Inet => AddressList::V4(
                advertised
                    .iter()
                    .filter_map(|a| if let IpAddr::V4(a) = a { Some(*a) } else { None })
                    .collect(),
            ),
            Family::Inet6 => AddressList::V6(
                advertised
                    .iter()
                    .filter_map(|a| if let IpAddr::V6(a) = a { Some(*a) } else { None })
                    .collect(),
            ),
        };
        let mut routes = Vec::new();
        for entry in &v.virtual_routes {
            match self.route(entry, &base) {
                Ok(route) => routes.push(route),
                Err(message) => self.warn(&v.name, message),
            }
        }

        let mut rules = Vec::new();
        for entry in &v.virtual_rules {
            match rule(entry) {
                Ok(rule) => rules.push(rule),
                Err(message) => self.warn(&v.name, format!("virtual_rules: {message}")),
            }
        }

        let mut params = InstanceParams::new(vrid, version, v.priority, v.advert_int, source, addresses);
        params.authentication = match &v.authentication {
            None => Authentication::None,
            Some(auth) if version == Version::V3 => {
                self.warn(&v.name, format!("authentication {:?} ignored with VRRPv3", auth.auth_type));
                Authentication::None
            }
            Some(auth) => match auth.auth_type {
                model::AuthType::Pass => {
                    Authentication::Password(Authentication::auth_data(auth.auth_pass.as_bytes()))
                }
                model::AuthType::Ah if family == Family::Inet6 => {
                    self.warn(&v.name, "Cannot use AH authentication with IPv6 - ignoring".into());
                    Authentication::None
                }
                model::AuthType::Ah => {
                    Authentication::Ah(Authentication::auth_data(auth.auth_pass.as_bytes()))
                }
            },
        };
        params.initial_state =
            if v.state == Some(VrrpState::Master) { InitialState::Master } else { InitialState::Backup };
        params.preempt = match (v.preempt, v.preempt_delay) {
            (false, _) => Preempt::Off,
            (true, Some(delay)) if !delay.is_zero() => Preempt::Delayed(delay),
            (true, _) => Preempt::On,
        };
        params.lower_prio_no_advert =
            v.lower_prio_no_advert.or(global.vrrp_lower_prio_no_advert).unwrap_or(false);
        params.higher_prio_send_advert =
            v.higher_prio_send_advert.or(global.vrrp_higher_prio_send_advert).unwrap_or(false);
        params.skip_check_adv_addr = v.skip_check_adv_addr.unwrap_or(global.vrrp_skip_check_adv_addr);
        // vrrp_min_garp: one gratuitous ARP / NA at takeover and no second burst, unless set.
        let min_garp = global.vrrp_min_garp.unwrap_or(false);
        params.garp_master_repeat = v
            .garp_master_repeat
            .or(global.vrrp_garp_master_repeat)
            .unwrap_or(if min_garp { 1 } else { GARP_MASTER_REPEAT });
        params.garp_master_delay =
            Some(v.garp_master_delay.or(global.vrrp_garp_master_delay).unwrap_or(if min_garp {
                Duration::ZERO
            } else {
                GARP_MASTER_DELAY
            }))
            .filter(|d| !d.is_zero());
        params.garp_master_refresh =
            v.garp_master_refresh.or(global.vrrp_garp_master_refresh).filter(|d| !d.is_zero());
        params.garp_master_refresh_repeat =
            v.garp_master_refresh_repeat.or(global.vrrp_garp_master_refresh_repeat).unwrap_or(1);
        params.garp_lower_prio_repeat =
            v.garp_lower_prio_repeat.or(global.vrrp_garp_lower_prio_repeat).unwrap_or(0);
        // keepalived's default is vrrp_garp_master_delay; 0 means no second burst.
        params.garp_lower_prio_delay = v
            .garp_lower_prio_delay
            .or(global.vrrp_garp_lower_prio_delay)
            .or(params.garp_master_delay)
            .filter(|d| !d.is_zero());
        params.down_timer_adverts = v
            .down_timer_adverts
            .or(global.vrrp_down_timer_adverts)
            .unwrap_or(super::state::DOWN_TIMER_ADVERTS);
        let rx_buf_size = rx_buf_size(v, global, interface.mtu, &params);
        // Catch what the state machine refuses now, with the instance's name.
        super::state::Instance::new(params.clone()).map_err(|e| e.to_string())?;

        let mut tracking = Vec::new();
        if !v.dont_track_primary {
            tracking.push(TrackEntry {
                object: TrackedObject::Interface(base.name.clone()),
                weight: 0,
                reverse: false,
            });
        }
        // track_src_ip: FAULT while the configured source is not on the interface (keepalived
        // ignores the keyword without a configured source). keepalived 2.2.7 looks for an IPv4
        // source on the configured interface, an IPv6 one on the macvlan with use_vmac.
        if v.track_src_ip && configured.is_some() {
            let ifindex = if family == Family::Inet { base.index } else { interface.index };
            tracking.push(TrackEntry {
                object: TrackedObject::Address { ifindex, address: source },
                weight: 0,
                reverse: false,
            });
        }
        // keepalived 2.2.7: a unicast keyword without peers falls back to multicast, unless
        // unicast_fault_no_peer says to stay in FAULT.
        if !unicast && (v.unicast_fault_no_peer || v.unicast_src_ip.is_some()) {
            if v.unicast_fault_no_peer {
                self.warn(&v.name, "Cannot use unicast without any peers - going to fault state".into());
                tracking.push(TrackEntry { object: TrackedObject::NoUnicastPeer, weight: 0, reverse: false });
            } else {
                self.warn(
                    &v.name,
                    "A unicast keyword has been specified without any unicast peers. Defaulting to \
                     multicast. This usage is deprecated - please update your configuration."
                        .into(),
                );
            }
        }
        self.tracking(&v.name, &v.track_interface, &v.track_script, &v.track_file, &mut tracking);
        self.track_bfd(&v.name, &v.track_bfd, &mut tracking);
        if !v.track_process.is_empty() {
            self.warn(&v.name, "track_process is not supported yet; ignored".to_string());
        }
        if let Some(group) = group {
            self.tracking(
                &group.name,
                &group.track_interface,
                &group.track_script,
                &group.track_file,
                &mut tracking,
            );
            self.track_bfd(&group.name, &group.track_bfd, &mut tracking);
            if !group.sync_group_tracking_weight {
                // keepalived: in a sync group, tracked objects put the whole group in FAULT; a
                // weight would let members' priorities diverge.
                for entry in tracking.iter_mut().filter(|e| e.weight != 0) {
                    self.errors.push(PlanError {
                        instance: v.name.clone(),
                        message: format!(
                            "ignoring weight {} of {} in sync group {} (no sync_group_tracking_weight)",
                            entry.weight, entry.object, group.name
                        ),
                    });
                    entry.weight = 0;
                }
            }
        }

        Ok(InstancePlan {
            name: v.name.clone(),
            interface,
            base_interface: base,
            vmac,
            params,
            transport,
            vips,
            excluded,
            routes,
            rules,
            vip_interface,
            unicast_ttl: if unicast { v.unicast_ttl.unwrap_or(VRRP_TTL) } else { VRRP_TTL },
            garp_extra_if: v
                .garp_extra_if
                .clone()
                .or_else(|| global.vrrp_garp_extra_if.clone())
                .filter(|g| !g.interval.is_zero()),
            tracking,
            notify: NotifyPlan {
                master: v.notify_master.clone(),
                backup: v.notify_backup.clone(),
                fault: v.notify_fault.clone(),
                stop: v.notify_stop.clone(),
                generic: v.notify.clone(),
                master_rx_lower_pri: v.notify_master_rx_lower_pri.clone(),
                deleted: v.notify_deleted_script.clone(),
            },
            notify_deleted: v.notify_deleted,
            smtp_alert: v.smtp_alert.or(global.smtp_alert_vrrp).or(global.smtp_alert).unwrap_or(false),
            notify_priority_changes: v
                .notify_priority_changes
                .or(group.and_then(|g| g.notify_priority_changes))
                .or(global.vrrp_notify_priority_changes)
                .unwrap_or(false),
            promote_secondaries: v.promote_secondaries,
            group: None,
            // keepalived: accept unless strict mode, and the owner always accepts.
            no_accept: !v.accept.unwrap_or(!strict) && v.priority != super::packet::PRIORITY_OWNER,
            link_local_by_name: v.dont_track_primary && !global.nftables_ifindex,
            rx_buf_size,
            source_follows_interface: configured.is_none(),
            source_pending,
        })
    }

    /// Whether `address` is one of the instance's VIPs (left by a killed daemon: never a source).
    fn is_vip(&self, v: &VrrpInstance, address: IpAddr) -> bool {
        v.virtual_ipaddress.iter().chain(&v.virtual_ipaddress_excluded).any(|e| e.address.addr == address)
    }

    fn vip(&self, entry: &IpAddressEntry, default_link: &Link) -> Result<Vip, String> {
        let link = match &entry.dev {
            Some(dev) => {
                self.host.link(dev).ok_or(format!("interface {dev} of VIP {} not found", entry.address))?
            }
            None => default_link,
        };
        let broadcast = match (entry.address.addr, entry.broadcast.as_deref()) {
            (IpAddr::V4(a), Some("+")) => {
                let host_bits = u32::MAX.checked_shr(u32::from(entry.address.len)).unwrap_or(0);
                Some(Ipv4Addr::from(u32::from(a) | host_bits))
            }
            (IpAddr::V4(_), Some("-") | None) => None,
            (IpAddr::V4(_), Some(text)) => Some(
                text.parse().map_err(|_| format!("invalid broadcast {text} for VIP {}", entry.address))?,
            ),
            (IpAddr::V6(_), _) => None,
        };
        let scope = match entry.scope.as_deref() {
            None | Some("global") => Scope::Global,
            Some("site") => Scope::Site,
            Some("link") => Scope::Link,
            Some("host") => Scope::Host,
            Some("nowhere") => Scope::Nowhere,
            Some(other) => return Err(format!("unsupported scope {other} for VIP {}", entry.address)),
        };
        let mac = link.mac.as_slice().try_into().unwrap_or([0; 6]);
        Ok(Vip {
            address: InterfaceAddress {
                ifindex: link.index,
                addr: entry.address.addr,
                prefix_len: entry.address.len,
                broadcast,
                scope,
                label: entry.label.clone(),
            },
            mac,
            interface: link.name.clone(),
        })
    }

    fn route(&self, entry: &RouteEntry, base: &Link) -> Result<Route, String> {
        let destination = entry.destination.ok_or("virtual route without a destination")?;
        let mut route = Route::new(destination.addr, destination.len);
        route.gateway = entry.via.first().copied();
        if entry.via.len() > 1 || !entry.options.is_empty() {
            return Err(format!(
                "virtual route {destination}: multipath and options ({}) are not supported yet",
                entry.options.join(" ")
            ));
        }
        route.oif = match &entry.dev {
            Some(dev) => Some(
                self.host.link(dev).ok_or(format!("interface {dev} of route {destination} not found"))?.index,
            ),
            None if route.gateway.is_none() => Some(base.index),
            None => None,
        };
        route.source = entry.src;
        route.metric = entry.metric;
        route.table = table_id(entry.table.as_deref().unwrap_or("main"))?;
        route.scope = match entry.scope.as_deref() {
            None => None,
            Some("global" | "universe") => Some(Scope::Global),
            Some("site") => Some(Scope::Site),
            Some("link") => Some(Scope::Link),
            Some("host") => Some(Scope::Host),
            Some("nowhere") => Some(Scope::Nowhere),
            Some(other) => return Err(format!("unsupported route scope {other}")),
        };
        route.kind = match entry.route_type.as_deref() {
            None | Some("unicast") => RouteKind::Unicast,
            Some("blackhole") => RouteKind::Blackhole,
            Some("unreachable") => RouteKind::Unreachable,
            Some("prohibit") => RouteKind::Prohibit,
            Some("throw") => RouteKind::Throw,
            Some("local") => RouteKind::Local,
            Some(other) => return Err(format!("route type {other} is not supported yet")),
        };
        route.protocol = match entry.protocol.as_deref() {
            None | Some("keepalived") => RTPROT_KEEPALIVED,
            Some("boot") => 3,
            Some("static") => 4,
            Some(number) => number.parse().map_err(|_| format!("unknown route protocol {number}"))?,
        };
        Ok(route)
    }

    /// `track_bfd`: the weight of the reference, else the bfd_instance's.
    fn track_bfd(&mut self, owner: &str, list: &[TrackRef], out: &mut Vec<TrackEntry>) {
        for t in list {
            let Some(bfd) = self.config.bfd_instances.iter().find(|b| b.name == t.name) else {
                self.warn(owner, format!("track bfd {} not found, ignoring...", t.name));
                continue;
            };
            out.push(TrackEntry {
                object: TrackedObject::Bfd(t.name.clone()),
                weight: t.weight.unwrap_or(bfd.weight),
                reverse: t.reverse.unwrap_or(bfd.reverse),
            });
        }
    }

    fn tracking(
        &mut self,
        owner: &str,
        interfaces: &[TrackRef],
        scripts: &[TrackRef],
        files: &[TrackRef],
        out: &mut Vec<TrackEntry>,
    ) {
        for t in interfaces {
            out.push(TrackEntry {
                object: TrackedObject::Interface(t.name.clone()),
                weight: t.weight.unwrap_or(0),
                reverse: t.reverse.unwrap_or(false),
            });
        }
        for t in scripts {
            let Some(script) = self.config.vrrp_scripts.iter().find(|s| s.name == t.name) else {
                self.warn(owner, format!("track script {} not found, ignoring...", t.name));
                continue;
            };
            let Some(command) = script.script.clone() else {
                self.warn(owner, format!("vrrp_script {} has no script, ignoring...", t.name));
                continue;
            };
            let index = match self.plan.scripts.iter().position(|s| s.name == t.name) {
                Some(index) => index,
                None => {
                    self.plan.scripts.push(ScriptPlan {
                        name: script.name.clone(),
                        script: command,
                        interval: script.interval,
                        timeout: script.timeout.unwrap_or(script.interval),
                        rise: script.rise.max(1),
                        fall: script.fall.max(1),
                        init_fail: script.init_fail,
                    });
                    self.plan.scripts.len() - 1
                }
            };
            out.push(TrackEntry {
                object: TrackedObject::Script(index),
                weight: t.weight.unwrap_or(script.weight),
                reverse: t.reverse.unwrap_or(script.weight_reverse),
            });
        }
        for t in files {
            let Some(file) = self.config.track_files.iter().find(|f| f.name == t.name) else {
                self.warn(owner, format!("track file {} not found, ignoring...", t.name));
                continue;
            };
            let Some(path) = file.file.clone() else {
                self.warn(owner, format!("track_file {} has no file, ignoring...", t.name));
                continue;
            };
            let index = match self.plan.files.iter().position(|f| f.name == t.name) {
                Some(index) => index,
                None => {
                    self.plan.files.push(FilePlan {
                        name: file.name.clone(),
                        path,
                        init: file.init_file.clone(),
                    });
                    self.plan.files.len() - 1
                }
            };
            out.push(TrackEntry {
                object: TrackedObject::File(index),
                weight: t.weight.unwrap_or(file.weight),
                reverse: t.reverse.unwrap_or(file.reverse),
            });
        }
    }

    fn groups(&mut self) {
        for group in &self.config.vrrp_sync_groups {
            let mut members = Vec::new();
            for name in &group.group {
                match self.plan.instances.iter().position(|i| &i.name == name) {
                    Some(index) if self.plan.instances[index].group.is_some() => {
                        self.errors.push(PlanError {
                            instance: name.clone(),
                            message: format!(
                                "cannot be in more than one sync group; ignoring {}",
                                group.name
                            ),
                        })
                    }
                    Some(index) => members.push(index),
                    None => self.errors.push(PlanError {
                        instance: group.name.clone(),
                        message: format!(
                            "virtual router {name} specified in sync group doesn't exist - ignoring"
                        ),
                    }),
                }
            }
            if members.len() < 2 {
                self.errors.push(PlanError {
                    instance: group.name.clone(),
                    message: format!("sync group has only {} virtual router(s) - removing", members.len()),
                });
                continue;
            }
            let index = self.plan.groups.len();
            for &member in &members {
                self.plan.instances[member].group = Some(index);
            }
            self.plan.groups.push(GroupPlan {
                name: group.name.clone(),
                members,
                notify: NotifyPlan {
                    master: group.notify_master.clone(),
                    backup: group.notify_backup.clone(),
                    fault: group.notify_fault.clone(),
                    stop: group.notify_stop.clone(),
                    generic: group.notify.clone(),
                    master_rx_lower_pri: None,
                    deleted: None,
                },
                smtp_alert: group
                    .smtp_alert
                    .or(self.config.global_defs.smtp_alert_vrrp)
                    .or(self.config.global_defs.smtp_alert)
                    .unwrap_or(false),
            });
        }
    }
}

/// Where `smtp_alert` mails go, if `smtp_server` is configured (also the checkers'
/// [`crate::check::alert`]).
pub fn smtp_plan(config: &Config) -> Option<SmtpPlan> {
    let global = &config.global_defs;
    let server = global.smtp_server.as_ref()?;
    let host_name = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    Some(SmtpPlan {
        host: server.host.clone(),
        port: if server.port == 0 { 25 } else { server.port },
        helo: global.smtp_helo_name.clone().unwrap_or_else(|| host_name.clone()),
        from: global.notification_email_from.clone().unwrap_or_else(|| format!("keepalived@{host_name}")),
        to: global.notification_email.clone(),
        connect_timeout: global.smtp_connect_timeout.unwrap_or(Duration::from_secs(30)),
        router_id: global.router_id.clone().unwrap_or(host_name),
    })
}

fn is_link_local(address: &Ipv6Addr) -> bool {
    address.segments()[0] & 0xffc0 == 0xfe80
}

#[cfg(test)]
mod tests;
