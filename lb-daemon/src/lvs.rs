//! Translation of the configuration's virtual servers into the data plane's desired state.
//!
//! keepalived hands its virtual servers to IPVS; lbd hands them to a [`Dataplane`] backend as a
//! [`DesiredState`]. This module is that step and nothing else: it expands
//! `virtual_server_group` ranges and `local_address_group`s, applies keepalived's defaults
//! (NAT, wlc, TCP, weight 1), and reports, with the virtual server they belong to, whatever the
//! XDP data plane cannot do (fwmark services, SCTP) instead of dropping it silently.
//!
//! [`Dataplane`]: crate::dataplane::Dataplane

use std::{net::IpAddr, time::Duration};

use crate::{
    check::{Health, RealVerdict, ServiceHealth},
    config::model::{Config, LbAlgo, LbKind, Protocol as ConfigProtocol, VirtualServer, VsAddress, VsgEntry},
    dataplane::{
        Algorithm, DataplaneSettings, DesiredState, ForwardingMethod, Persistence, Protocol, RealTarget,
        Scheduling, ServiceAddr, VirtualService,
    },
};

/// At most this many VIPs come from one `virtual_server_group` range.
const MAX_GROUP_ADDRESSES: u128 = 4096;

/// The desired data-plane state for `config` with every real server up, with a note for
/// everything left out or changed.
pub fn desired_state(config: &Config) -> (DesiredState, Vec<String>) {
    desired_state_with(config, &Health::default())
}

/// The desired data-plane state for `config` given its real servers' `health` (a virtual
/// server `health` knows nothing of has all its real servers up and its sorry server ready).
pub fn desired_state_with(config: &Config, health: &Health) -> (DesiredState, Vec<String>) {
    let mut notes = Vec::new();
    let mut desired = DesiredState { settings: settings(config), ..DesiredState::default() };
    for (index, vs) in config.virtual_servers.iter().enumerate() {
        let Some(mut template) = service_template(config, vs, &mut notes) else { continue };
        if let Some(h) = health.service(index) {
            apply_health(&mut template, h);
        }
        for addr in service_addrs(config, vs, &mut notes) {
            let mut service = template.clone();
            service.addr = addr;
            for real in &mut service.reals {
                if real.port == 0 {
                    real.port = addr.port;
                }
            }
            if let Some(sorry) = &mut service.sorry_server
                && sorry.port == 0
            {
                sorry.port = addr.port;
            }
            desired.services.push(service);
        }
    }
    (desired, notes)
}

/// Leaves out, or reweighs, the real servers of `service` (in configuration order) as their
/// health says; the sorry server is kept only while it takes the traffic or, with
/// `sorry_server_inhibit`, idles at weight 0 (the data plane sends new flows to it only when no
/// real server is left).
fn apply_health(service: &mut VirtualService, health: &ServiceHealth) {
    let mut verdicts = health.reals.iter();
    service.reals.retain_mut(|real| match verdicts.next() {
        Some(RealVerdict::Out) => false,
        Some(RealVerdict::In { weight }) => {
            real.weight = *weight;
            true
        }
        None => true,
    });
    // (The data plane ignores a sorry server's weight: present, it is used when no real is.)
    if health.sorry == RealVerdict::Out {
        service.sorry_server = None;
    }
}

fn settings(config: &Config) -> DataplaneSettings {
    let mut settings = DataplaneSettings {
        fnat_toa: config.global_defs.lbd_fnat_toa.unwrap_or(true),
        ..DataplaneSettings::default()
    };
    if let Some(timeouts) = &config.global_defs.lvs_timeouts {
        let nonzero = |d: Option<Duration>| d.filter(|d| !d.is_zero());
        if let Some(tcp) = nonzero(timeouts.tcp) {
            settings.tcp_timeout = tcp;
        }
        if let Some(fin) = nonzero(timeouts.tcpfin) {
            settings.tcp_fin_timeout = fin;
        }
        if let Some(udp) = nonzero(timeouts.udp) {
            settings.udp_timeout = udp;
        }
    }
    settings
}

/// Everything of a service but its address.
fn service_template(config: &Config, vs: &VirtualServer, notes: &mut Vec<String>) -> Option<VirtualService> {
    let name = vs.address.to_string();
    // keepalived 2.2.7 defaults to UDP ("no protocol set - defaulting to UDP").
    let protocol = match vs.protocol.unwrap_or(ConfigProtocol::Udp) {
        ConfigProtocol::Tcp => Protocol::Tcp,
        ConfigProtocol::Udp => Protocol::Udp,
        ConfigProtocol::Sctp => {
            notes
                .push(format!("virtual_server {name}: SCTP is not forwarded by the XDP data plane; skipped"));
            return None;
        }
    };
    let placeholder = ServiceAddr { vip: IpAddr::from([0, 0, 0, 0]), port: 0, protocol };
    let mut service = VirtualService::new(placeholder);
    service.method = match vs.lvs_method.as_ref().map_or(LbKind::Nat, |m| m.kind) {
        LbKind::Nat => ForwardingMethod::Nat,
        LbKind::Dr => ForwardingMethod::Dr,
        LbKind::Tun => ForwardingMethod::Tun,
        LbKind::Fnat => ForwardingMethod::Fnat,
    };
    if let Some(tunnel) = vs.lvs_method.as_ref().and_then(|m| m.tunnel.as_ref())
        && tunnel.kind.as_deref().is_some_and(|k| k != "ipip")
    {
        notes.push(format!("virtual_server {name}: only ipip tunnels are supported; using ipip"));
    }
    service.scheduling = Scheduling {
        algorithm: algorithm(vs, &name, notes),
        hash_port: vs.sh_port || vs.mh_port,
        one_packet: vs.ops,
    };
    if let Some(timeout) = vs.persistence_timeout {
        let prefix = vs.persistence_granularity.as_deref().and_then(|g| granularity(g, &name, notes));
        service.persistence = Some(Persistence { timeout: Duration::from_secs(u64::from(timeout)), prefix });
    }
    if let Some(group) = &vs.laddr_group_name {
        match config.local_address_groups.iter().find(|g| &g.name == group) {
            Some(g) => service.local_addresses = g.addresses.iter().flat_map(|r| r.iter()).collect(),
            None => notes.push(format!("virtual_server {name}: local_address_group {group} is not defined")),
        }
    }
    if service.method == ForwardingMethod::Fnat && service.local_addresses.is_empty() {
        notes.push(format!("virtual_server {name}: FNAT needs laddr_group_name with addresses; skipped"));
        return None;
    }
    if vs.syn_proxy {
        if protocol != Protocol::Tcp {
            notes.push(format!("virtual_server {name}: syn_proxy applies to TCP only; ignored"));
        } else if matches!(service.method, ForwardingMethod::Dr | ForwardingMethod::Tun) {
            notes.push(format!(
                "virtual_server {name}: syn_proxy needs the replies through the load balancer (NAT or FNAT); forwarding without it"
            ));
        } else {
            service.syn_proxy = true;
        }
    }
    let default_weight = vs.weight.unwrap_or(1);
    service.reals = vs
        .real_servers
        .iter()
        .map(|rs| RealTarget {
            upper_threshold: rs.uthreshold.unwrap_or(0),
            lower_threshold: rs.lthreshold.unwrap_or(0),
            ..RealTarget::new(
                rs.address,
                rs.port.unwrap_or(0),
                u32::try_from(rs.weight.unwrap_or(default_weight)).unwrap_or(0),
            )
        })
        .collect();
    service.sorry_server =
        vs.sorry_server.as_ref().map(|s| RealTarget::new(s.address, s.port.unwrap_or(0), 1));
    Some(service)
}

fn algorithm(vs: &VirtualServer, name: &str, notes: &mut Vec<String>) -> Algorithm {
    let (algorithm, note) = match vs.lvs_sched.unwrap_or(LbAlgo::Wlc) {
        LbAlgo::Rr => (Algorithm::RoundRobin, None),
        LbAlgo::Wrr => (Algorithm::WeightedRoundRobin, None),
        LbAlgo::Lc => (Algorithm::LeastConnection, None),
        LbAlgo::Wlc => (Algorithm::WeightedLeastConnection, None),
        LbAlgo::Lblc => (Algorithm::LocalityBasedLeastConnection, None),
        LbAlgo::Sh => (Algorithm::SourceHashing, None),
        LbAlgo::Dh => (Algorithm::DestinationHashing, None),
        LbAlgo::Mh => (Algorithm::MaglevHashing, None),
        LbAlgo::Lblcr => (Algorithm::LocalityBasedLeastConnection, Some("lblcr")),
        other => (Algorithm::WeightedLeastConnection, Some(other.name())),
    };
    if let Some(original) = note {
        notes.push(format!(
            "virtual_server {name}: scheduler {original} is not in the XDP data plane; using {}",
            algorithm.keyword()
        ));
    }
    algorithm
}

/// `persistence_granularity`: an IPv4 netmask (`255.255.255.0`) or an IPv6 prefix length.
fn granularity(text: &str, name: &str, notes: &mut Vec<String>) -> Option<u8> {
    if let Ok(prefix) = text.parse::<u8>() {
        return Some(prefix);
    }
    if let Ok(IpAddr::V4(mask)) = text.parse::<IpAddr>() {
        let bits = u32::from(mask);
        if bits.leading_ones() + bits.trailing_zeros() == 32 {
            return u8::try_from(bits.leading_ones()).ok();
        }
    }
    notes.push(format!("virtual_server {name}: persistence_granularity {text} is not a netmask; ignored"));
    None
}

/// The service addresses of virtual server `vs` in the data plane (none for what it cannot
/// forward), for matching its counters to the configuration.
pub fn service_addresses(config: &Config, vs: &VirtualServer) -> Vec<ServiceAddr> {
    service_addrs(config, vs, &mut Vec::new())
}

/// The service addresses of a virtual server: one, or one per member of its group.
fn service_addrs(config: &Config, vs: &VirtualServer, notes: &mut Vec<String>) -> Vec<ServiceAddr> {
    let protocol = match vs.protocol {
        Some(ConfigProtocol::Tcp) => Protocol::Tcp,
        _ => Protocol::Udp,
    };
    match &vs.address {
        VsAddress::Ip { address, port } => {
            vec![ServiceAddr { vip: *address, port: port.unwrap_or(0), protocol }]
        }
        VsAddress::Fwmark { mark } => {
            notes.push(format!(
                "virtual_server fwmark {mark}: firewall marks are set after XDP runs; skipped"
            ));
            Vec::new()
        }
        VsAddress::Group { name } => {
            let Some(group) = config.virtual_server_groups.iter().find(|g| &g.name == name) else {
                notes.push(format!("virtual_server group {name}: no such virtual_server_group"));
                return Vec::new();
            };
            let mut addrs = Vec::new();
            for entry in &group.entries {
                match entry {
                    VsgEntry::Address { range, port } => {
                        if range.count() > MAX_GROUP_ADDRESSES {
                            notes.push(format!(
                                "virtual_server_group {name}: range {}-{} has more than {MAX_GROUP_ADDRESSES} addresses; skipped",
                                range.start, range.end
                            ));
                            continue;
                        }
                        addrs.extend(range.iter().map(|vip| ServiceAddr {
                            vip,
                            port: port.unwrap_or(0),
                            protocol,
                        }));
                    }
                    VsgEntry::Fwmark { mark, .. } => notes.push(format!(
                        "virtual_server_group {name}: fwmark {mark} is set after XDP runs; skipped"
                    )),
                }
            }
            addrs
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LoadOptions, parse_str};

    fn desired(text: &str) -> (DesiredState, Vec<String>) {
        let loaded = parse_str("test.conf", text, &LoadOptions::default());
        desired_state(&loaded.config)
    }

    #[test]
    fn keepalived_defaults_and_real_ports() {
        let (d, notes) = desired(
            "virtual_server 10.0.0.1 80 {\n protocol TCP\n real_server 10.0.1.1 8080 {\n weight 3\n }\n real_server 10.0.1.2 {\n }\n}\n",
        );
        assert!(notes.is_empty(), "{notes:?}");
        let s = &d.services[0];
        assert_eq!(
            s.addr,
            ServiceAddr {
                vip: "10.0.0.1".parse().unwrap_or(IpAddr::from([0; 4])),
                port: 80,
                protocol: Protocol::Tcp
            }
        );
        assert_eq!(s.method, ForwardingMethod::Nat);
        assert_eq!(s.scheduling.algorithm, Algorithm::WeightedLeastConnection);
        assert_eq!(s.reals.len(), 2);
        assert_eq!((s.reals[0].port, s.reals[0].weight), (8080, 3));
        // A real server without a port takes the service's.
        assert_eq!((s.reals[1].port, s.reals[1].weight), (80, 1));
    }

    #[test]
    fn groups_expand_and_fnat_takes_its_pool() {
        let (d, notes) = desired(
            "local_address_group L {\n 10.9.0.1-3\n}\nvirtual_server_group G {\n 10.0.0.1-2 80\n}\n\
             virtual_server group G {\n lb_algo rr\n lb_kind FNAT\n laddr_group_name L\n real_server 10.0.1.1 80 {\n }\n}\n",
        );
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(d.services.len(), 2);
        assert!(
            d.services.iter().all(|s| s.method == ForwardingMethod::Fnat && s.local_addresses.len() == 3)
        );
        assert_eq!(d.services[1].addr.vip, IpAddr::from([10, 0, 0, 2]));
    }

    #[test]
    fn fnat_toa_is_on_unless_turned_off() {
        let vs = "virtual_server 10.0.0.1 80 {\n real_server 10.0.1.1 80 {\n }\n}\n";
        assert!(desired(vs).0.settings.fnat_toa);
        assert!(!desired(&format!("global_defs {{\n lbd_fnat_toa off\n}}\n{vs}")).0.settings.fnat_toa);
        assert!(desired(&format!("global_defs {{\n lbd_fnat_toa\n}}\n{vs}")).0.settings.fnat_toa);
    }

    #[test]
    fn unsupported_features_are_reported_not_dropped_silently() {
        let (d, notes) = desired(
            "virtual_server fwmark 1 {\n real_server 10.0.1.1 80 {\n }\n}\n\
             virtual_server 10.0.0.1 80 {\n lb_algo sed\n persistence_timeout 60\n persistence_granularity 255.255.255.0\n}\n",
        );
        assert_eq!(d.services.len(), 1);
        assert_eq!(d.services[0].scheduling.algorithm, Algorithm::WeightedLeastConnection);
        assert_eq!(d.services[0].persistence.map(|p| p.prefix), Some(Some(24)));
        assert_eq!(notes.len(), 2, "{notes:?}");
    }

    #[test]
    fn health_removes_reweighs_and_brings_in_the_sorry_server() {
        let text = "virtual_server 10.0.0.1 80 {\n protocol TCP\n sorry_server 10.0.9.9 80\n\
             real_server 10.0.1.1 80 {\n }\n real_server 10.0.1.2 80 {\n }\n real_server 10.0.1.3 80 {\n }\n}\n";
        let loaded = parse_str("test.conf", text, &LoadOptions::default());
        let mut health = Health::default();
        health.set(
            0,
            ServiceHealth {
                reals: vec![RealVerdict::Out, RealVerdict::In { weight: 0 }, RealVerdict::In { weight: 4 }],
                sorry: RealVerdict::Out,
            },
        );
        let (d, _) = desired_state_with(&loaded.config, &health);
        let reals: Vec<_> = d.services[0].reals.iter().map(|r| (r.addr.to_string(), r.weight)).collect();
        assert_eq!(reals, vec![("10.0.1.2".to_owned(), 0), ("10.0.1.3".to_owned(), 4)]);
        assert_eq!(d.services[0].sorry_server, None);
        health
            .set(0, ServiceHealth { reals: vec![RealVerdict::Out; 3], sorry: RealVerdict::In { weight: 1 } });
        let (d, _) = desired_state_with(&loaded.config, &health);
        assert!(d.services[0].reals.is_empty());
        assert_eq!(d.services[0].sorry_server.map(|s| s.addr.to_string()), Some("10.0.9.9".to_owned()));
        // Without health, today's behaviour: all reals up, the sorry server ready.
        let (d, _) = desired_state(&loaded.config);
        assert_eq!(d.services[0].reals.len(), 3);
        assert!(d.services[0].sorry_server.is_some());
    }
}
