//! The Linux IPVS data plane: the desired state programmed into the kernel's IPVS, as keepalived
//! does, for operators who want the kernel's load balancer rather than the XDP program.
//!
//! [`IpvsDataplane::apply`] lists what IPVS holds and changes only what differs: a service's
//! scheduler, flags, persistence timeout and netmask are changed in place (`SET_SERVICE`, as
//! `ipvsadm -E`), a real server's weight, forwarding method and thresholds too (`SET_DEST`), and
//! only missing or unwanted services and real servers are added or deleted, so established
//! connections of unchanged servers carry on. Like keepalived it leaves alone the services it did
//! not create (another tool's `ipvsadm -A`), unless the desired state names them.
//!
//! keepalived's behaviour on a stock kernel is kept: the sorry server is a destination of the
//! service only while no real server has a weight; `syn_proxy` (Alibaba's kernel) is ignored
//! with a warning; FNAT (`lvs_method FNAT`, `local_address_group`) cannot be forwarded and is
//! refused, naming the keyword.
//!
//! `lvs_flush` empties IPVS before the first apply, and `lvs_flush_onstop` at an orderly stop
//! ([`IpvsDataplane::flush`]): then the services of other tools go too.

use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use super::{
    ApplyReport, ApplyWarning, Counters, Dataplane, DataplaneError, DesiredState, ForwardingMethod, Problem,
    Protocol, RealCounters, RealTarget, ServiceAddr, ServiceCounters, VirtualService,
};
use crate::netlink::ipvs::{
    ForwardMethod, IpvsDest, IpvsError, IpvsMessage, IpvsService, IpvsSocket, SVC_F_HASHED, SVC_F_ONEPACKET,
    SVC_F_PERSISTENT, SVC_F_SCHED2, ServiceId, Stats, Timeouts, Transport,
};

/// The Linux IPVS backend over transport `T` (the kernel's [`IpvsSocket`], a fake in tests).
#[derive(Debug)]
pub struct IpvsDataplane<T = IpvsSocket> {
    ipvs: T,
    /// The services this data plane programmed, with what it programmed: the ones it may delete,
    /// and which destination is the sorry server.
    owned: BTreeMap<ServiceId, VirtualService>,
    /// The timeouts last set (`None`: not yet, set them on the first apply).
    timeouts: RefCell<Option<Timeouts>>,
}

impl IpvsDataplane<IpvsSocket> {
    /// Opens the kernel's IPVS, loading `ip_vs` first when its netlink family is missing (as
    /// keepalived does).
    pub fn open() -> Result<Self, DataplaneError> {
        let socket = match IpvsSocket::open() {
            Err(IpvsError::NoIpvs) => {
                let loaded =
                    std::process::Command::new("modprobe").arg("ip_vs").status().is_ok_and(|s| s.success());
                if loaded { IpvsSocket::open() } else { Err(IpvsError::NoIpvs) }
            }
            other => other,
        };
        Ok(Self::new(socket.map_err(DataplaneError::Ipvs)?))
    }
}

impl<T: Transport> IpvsDataplane<T> {
    /// A data plane over `ipvs` that owns nothing yet.
    pub fn new(ipvs: T) -> Self {
        Self { ipvs, owned: BTreeMap::new(), timeouts: RefCell::new(None) }
    }

    /// The transport (tests inspect their fake).
    pub fn transport(&self) -> &T {
        &self.ipvs
    }

    fn request(&self, message: &IpvsMessage, dump: bool) -> Result<Vec<IpvsMessage>, DataplaneError> {
        self.ipvs.request(message, dump).map_err(DataplaneError::Ipvs)
    }

    fn decode(message: &str, e: &netlink_packet_core::DecodeError) -> DataplaneError {
        DataplaneError::Ipvs(IpvsError::Decode { request: message.to_owned(), reason: e.to_string() })
    }

    /// Every service IPVS holds.
    fn services(&self) -> Result<Vec<IpvsService>, DataplaneError> {
        self.request(&IpvsMessage::get_services(), true)?
            .iter()
            .map(|m| m.service().map_err(|e| Self::decode("listing IPVS services", &e)))
            .collect()
    }

    /// The destinations of a service.
    fn dests(&self, id: &ServiceId) -> Result<Vec<IpvsDest>, DataplaneError> {
        let ipv6 = matches!(id, ServiceId::Addr { addr: IpAddr::V6(_), .. });
        self.request(&IpvsMessage::get_dests(id), true)?
            .iter()
            .map(|m| m.dest(ipv6).map_err(|e| Self::decode("listing IPVS real servers", &e)))
            .collect()
    }

    /// Deletes every service this data plane programmed (keepalived's orderly stop).
    pub fn remove(&mut self) -> Result<(), DataplaneError> {
        let held: BTreeSet<ServiceId> = self.services()?.into_iter().map(|s| s.id).collect();
        for id in self.owned.keys().filter(|id| held.contains(id)) {
            self.request(&IpvsMessage::del_service(id), false)?;
        }
        self.owned.clear();
        Ok(())
    }

    /// Deletes every service IPVS holds, whoever made it (`lvs_flush` at start,
    /// `lvs_flush_onstop` at stop, as `ipvsadm -C`).
    pub fn flush(&mut self) -> Result<(), DataplaneError> {
        self.request(&IpvsMessage::flush(), false)?;
        self.owned.clear();
        Ok(())
    }

    fn apply_timeouts(&self, desired: &DesiredState, report: &mut ApplyReport) -> Result<(), DataplaneError> {
        let secs = |d: std::time::Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
        let s = &desired.settings;
        let wanted =
            Timeouts { tcp: secs(s.tcp_timeout), tcp_fin: secs(s.tcp_fin_timeout), udp: secs(s.udp_timeout) };
        if *self.timeouts.borrow() != Some(wanted) {
            let current = self.request(&IpvsMessage::get_timeouts(), false)?;
            let current = current.first().map(IpvsMessage::timeouts).transpose().ok().flatten();
            if current != Some(wanted) {
                self.request(&IpvsMessage::set_timeouts(&wanted), false)?;
                report.writes += 1;
            }
            *self.timeouts.borrow_mut() = Some(wanted);
        }
        Ok(())
    }

    /// Brings one service's destinations from `held` to `wanted`.
    fn converge_dests(
        &self,
        id: &ServiceId,
        held: &[IpvsDest],
        wanted: &[IpvsDest],
        report: &mut ApplyReport,
    ) -> Result<(), DataplaneError> {
        let key = |d: &IpvsDest| (d.addr, d.port);
        let held_by: BTreeMap<_, _> = held.iter().map(|d| (key(d), d)).collect();
        let wanted_keys: BTreeSet<_> = wanted.iter().map(key).collect();
        // Deletions first: a destination that changes address family or identity frees its place.
        for d in held.iter().filter(|d| !wanted_keys.contains(&key(d))) {
            self.request(&IpvsMessage::del_dest(id, d), false)?;
            report.reals_removed += 1;
            report.writes += 1;
        }
        for d in wanted {
            match held_by.get(&key(d)) {
                None => {
                    self.request(&IpvsMessage::new_dest(id, d), false)?;
                    report.reals_added += 1;
                    report.writes += 1;
                }
                Some(h) if !same_dest(h, d) => {
                    self.request(&IpvsMessage::set_dest(id, d), false)?;
                    report.reals_updated += 1;
                    report.writes += 1;
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// Whether a held destination already forwards as wanted (counters aside).
fn same_dest(held: &IpvsDest, wanted: &IpvsDest) -> bool {
    (held.method, held.weight, held.upper_threshold, held.lower_threshold)
        == (wanted.method, wanted.weight, wanted.upper_threshold, wanted.lower_threshold)
}

/// Whether a held service already schedules as wanted (counters and the kernel's HASHED aside).
fn same_service(held: &IpvsService, wanted: &IpvsService) -> bool {
    (held.scheduler.as_str(), held.flags & !SVC_F_HASHED, held.timeout, held.prefix)
        == (wanted.scheduler.as_str(), wanted.flags & !SVC_F_HASHED, wanted.timeout, wanted.prefix)
}

fn service_id(addr: &ServiceAddr) -> ServiceId {
    ServiceId::Addr { addr: addr.vip, port: addr.port, protocol: u16::from(addr.protocol.number()) }
}

const fn method(method: ForwardingMethod) -> Option<ForwardMethod> {
    match method {
        ForwardingMethod::Nat => Some(ForwardMethod::Masq),
        ForwardingMethod::Dr => Some(ForwardMethod::DirectRoute),
        ForwardingMethod::Tun => Some(ForwardMethod::Tunnel),
        ForwardingMethod::Fnat => None,
    }
}

/// A service of the desired state as IPVS holds it: the service and its destinations, or why
/// IPVS cannot forward it.
fn target(
    vs: &VirtualService,
    warnings: &mut Vec<ApplyWarning>,
) -> Result<(IpvsService, Vec<IpvsDest>), DataplaneError> {
    let invalid = |problem| DataplaneError::Invalid { service: vs.addr, problem };
    let vip = vs.addr.vip;
    if vip.is_unspecified() {
        return Err(invalid(Problem::UnspecifiedVip));
    }
    let Some(forward) = method(vs.method) else {
        return Err(invalid(Problem::NotInLinuxIpvs { keyword: "lvs_method FNAT" }));
    };
    if vs.syn_proxy {
        warnings.push(ApplyWarning::Ignored {
            service: vs.addr,
            keyword: "syn_proxy".into(),
            reason: "Linux IPVS has no SYN proxy (Alibaba's kernel has); forwarding without it".into(),
        });
    }
    let bits: u8 = if vip.is_ipv4() { 32 } else { 128 };
    let (mut flags, mut timeout, mut prefix) = (0, 0, bits);
    if let Some(p) = vs.persistence {
        timeout = u32::try_from(p.timeout.as_secs()).unwrap_or(u32::MAX);
        if timeout == 0 {
            return Err(invalid(Problem::ZeroPersistenceTimeout));
        }
        prefix = p.prefix.unwrap_or(bits);
        if prefix > bits {
            return Err(invalid(Problem::PersistencePrefix { prefix }));
        }
        flags |= SVC_F_PERSISTENT;
    }
    let s = &vs.scheduling;
    if s.one_packet && vs.addr.protocol == Protocol::Udp {
        flags |= SVC_F_ONEPACKET;
    }
    if s.hash_port && matches!(s.algorithm.keyword(), "sh" | "mh") {
        flags |= SVC_F_SCHED2;
    }
    let service = IpvsService {
        id: service_id(&vs.addr),
        scheduler: s.algorithm.keyword().to_owned(),
        flags,
        timeout,
        prefix,
        stats: Stats::default(),
    };
    let dest = |r: &RealTarget| IpvsDest {
        upper_threshold: r.upper_threshold,
        lower_threshold: r.lower_threshold,
        ..IpvsDest::new(r.addr, r.port, forward, r.weight)
    };
    let mut dests: Vec<IpvsDest> = Vec::with_capacity(vs.reals.len() + 1);
    for r in &vs.reals {
        if r.addr.is_ipv4() != vip.is_ipv4() {
            return Err(invalid(Problem::FamilyMismatch { addr: r.addr }));
        }
        if dests.iter().any(|d| (d.addr, d.port) == (r.addr, r.port)) {
            return Err(invalid(Problem::DuplicateReal { addr: r.addr, port: r.port }));
        }
        dests.push(dest(r));
    }
    // keepalived adds the sorry server when no real server is left to take connections, and
    // removes it when one comes back.
    if let Some(sorry) = vs.sorry_server
        && vs.reals.iter().all(|r| r.weight == 0)
        && !dests.iter().any(|d| (d.addr, d.port) == (sorry.addr, sorry.port))
    {
        if sorry.addr.is_ipv4() != vip.is_ipv4() {
            return Err(invalid(Problem::FamilyMismatch { addr: sorry.addr }));
        }
        dests.push(dest(&RealTarget { weight: sorry.weight.max(1), ..sorry }));
    }
    Ok((service, dests))
}

impl<T: Transport> Dataplane for IpvsDataplane<T> {
    fn apply(&mut self, desired: &DesiredState) -> Result<ApplyReport, DataplaneError> {
        let mut report = ApplyReport::default();
        // Everything is checked before anything is written.
        let mut wanted: BTreeMap<ServiceId, (&VirtualService, IpvsService, Vec<IpvsDest>)> = BTreeMap::new();
        for vs in &desired.services {
            let (service, dests) = target(vs, &mut report.warnings)?;
            if wanted.insert(service.id, (vs, service, dests)).is_some() {
                return Err(DataplaneError::Invalid { service: vs.addr, problem: Problem::DuplicateService });
            }
        }
        self.apply_timeouts(desired, &mut report)?;
        let held: BTreeMap<ServiceId, IpvsService> =
            self.services()?.into_iter().map(|s| (s.id, s)).collect();
        // Services this data plane programmed and no longer wants.
        let gone: Vec<ServiceId> = self.owned.keys().filter(|id| !wanted.contains_key(id)).copied().collect();
        for id in gone {
            if held.contains_key(&id) {
                self.request(&IpvsMessage::del_service(&id), false)?;
                report.services_removed += 1;
                report.writes += 1;
            }
            self.owned.remove(&id);
        }
        for (id, (vs, service, dests)) in &wanted {
            let held_dests = match held.get(id) {
                None => {
                    self.request(&IpvsMessage::new_service(service), false)?;
                    report.services_added += 1;
                    report.writes += 1;
                    Vec::new()
                }
                Some(h) => {
                    if !same_service(h, service) {
                        self.request(&IpvsMessage::set_service(service), false)?;
                        report.services_updated += 1;
                        report.writes += 1;
                    }
                    self.dests(id)?
                }
            };
            // Owned from here on: a failure below leaves it for the next apply to converge.
            self.owned.insert(*id, (*vs).clone());
            self.converge_dests(id, &held_dests, dests, &mut report)?;
        }
        Ok(report)
    }

    fn service_stats(&self) -> Result<Vec<ServiceCounters>, DataplaneError> {
        let counters = |stats: &Stats, active: u64| Counters {
            packets: stats.in_packets,
            bytes: stats.in_bytes,
            new_conns: stats.conns,
            active_conns: active,
        };
        let mut all = Vec::new();
        for service in self.services()? {
            let Some(vs) = self.owned.get(&service.id) else { continue };
            let mut reals = Vec::new();
            for d in self.dests(&service.id)? {
                let configured = vs.reals.iter().any(|r| (r.addr, r.port) == (d.addr, d.port));
                let sorry =
                    !configured && vs.sorry_server.is_some_and(|s| (s.addr, s.port) == (d.addr, d.port));
                reals.push(RealCounters {
                    addr: d.addr,
                    port: d.port,
                    sorry,
                    weight: d.weight,
                    counters: counters(&d.stats, u64::from(d.active_conns)),
                });
            }
            let active = reals.iter().map(|r| r.counters.active_conns).sum();
            all.push(ServiceCounters {
                service: vs.addr,
                counters: counters(&service.stats, active),
                no_real: 0,
                reals,
            });
        }
        Ok(all)
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use std::{cell::RefCell, io, time::Duration};

    use super::*;
    use crate::{
        dataplane::{Algorithm, Persistence},
        netlink::ipvs::{Command, describe},
    };

    /// What the fake kernel holds for one service.
    #[derive(Clone, Debug)]
    struct Held {
        service: IpvsService,
        dests: BTreeMap<(IpAddr, u16), IpvsDest>,
    }

    /// A fake kernel IPVS behind the netlink transport: it answers each request from the
    /// messages' attributes as the kernel would (including its errors), and logs the commands.
    #[derive(Debug, Default)]
    struct FakeIpvs {
        held: RefCell<BTreeMap<ServiceId, Held>>,
        timeouts: RefCell<Timeouts>,
        log: RefCell<Vec<Command>>,
    }

    impl FakeIpvs {
        fn new() -> Self {
            let fake = Self::default();
            *fake.timeouts.borrow_mut() = Timeouts { tcp: 900, tcp_fin: 120, udp: 300 };
            fake
        }

        fn changes(&self) -> Vec<Command> {
            let log = self.log.borrow();
            let reads = [Command::GetService, Command::GetDest, Command::GetConfig];
            log.iter().copied().filter(|c| !reads.contains(c)).collect()
        }

        fn dests(&self, vip: &str, port: u16) -> Vec<IpvsDest> {
            let id = ServiceId::Addr { addr: vip.parse().unwrap(), port, protocol: 6 };
            self.held.borrow().get(&id).map(|h| h.dests.values().cloned().collect()).unwrap_or_default()
        }
    }

    fn kernel_error(message: &IpvsMessage, errno: i32) -> IpvsError {
        IpvsError::Kernel { request: describe(message), source: io::Error::from_raw_os_error(errno) }
    }

    impl Transport for FakeIpvs {
        fn request(&self, message: &IpvsMessage, dump: bool) -> Result<Vec<IpvsMessage>, IpvsError> {
            // Every request crosses the wire format both ways, as with the kernel.
            let message = IpvsMessage::from_bytes(&message.to_bytes(0x25, 1, dump)).unwrap();
            self.log.borrow_mut().push(message.command);
            let mut held = self.held.borrow_mut();
            let err = |errno| Err(kernel_error(&message, errno));
            let id = message.service_id();
            let ipv6 = matches!(id, Ok(ServiceId::Addr { addr: IpAddr::V6(_), .. }));
            match message.command {
                Command::GetService => {
                    return Ok(held.values().map(|h| IpvsMessage::service_entry(&h.service)).collect());
                }
                Command::GetDest => {
                    let Some(h) = held.get(&id.unwrap()) else { return err(libc::ESRCH) };
                    return Ok(h.dests.values().map(IpvsMessage::dest_entry).collect());
                }
                Command::GetConfig => return Ok(vec![IpvsMessage::set_timeouts(&self.timeouts.borrow())]),
                Command::SetConfig => {
                    let t = message.timeouts().unwrap();
                    let mut current = self.timeouts.borrow_mut();
                    let Timeouts { tcp, tcp_fin, udp } = &mut *current;
                    for (slot, value) in [(tcp, t.tcp), (tcp_fin, t.tcp_fin), (udp, t.udp)] {
                        // 0 leaves a timeout as it is.
                        if value != 0 {
                            *slot = value;
                        }
                    }
                }
                Command::NewService => {
                    let mut service = message.service().unwrap();
                    service.flags |= SVC_F_HASHED;
                    if held.contains_key(&service.id) {
                        return err(libc::EEXIST);
                    }
                    held.insert(service.id, Held { service, dests: BTreeMap::new() });
                }
                Command::SetService => {
                    let service = message.service().unwrap();
                    let Some(h) = held.get_mut(&service.id) else { return err(libc::ESRCH) };
                    h.service = IpvsService { flags: service.flags | SVC_F_HASHED, ..service };
                }
                Command::DelService => {
                    if held.remove(&id.unwrap()).is_none() {
                        return err(libc::ESRCH);
                    }
                }
                Command::Flush => held.clear(),
                Command::NewDest | Command::SetDest | Command::DelDest => {
                    let dest = message.dest(ipv6).unwrap();
                    let Some(h) = held.get_mut(&id.unwrap()) else { return err(libc::ESRCH) };
                    let key = (dest.addr, dest.port);
                    match (message.command, h.dests.contains_key(&key)) {
                        (Command::NewDest, true) => return err(libc::EEXIST),
                        (Command::SetDest | Command::DelDest, false) => return err(libc::ENOENT),
                        (Command::DelDest, true) => {
                            h.dests.remove(&key);
                        }
                        _ => {
                            h.dests.insert(key, dest);
                        }
                    }
                }
            }
            Ok(Vec::new())
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn service(vip: &str, reals: &[(&str, u32)]) -> VirtualService {
        let mut vs = VirtualService::new(ServiceAddr { vip: ip(vip), port: 80, protocol: Protocol::Tcp });
        vs.reals = reals.iter().map(|(a, w)| RealTarget::new(ip(a), 8080, *w)).collect();
        vs
    }

    fn state(services: Vec<VirtualService>) -> DesiredState {
        DesiredState { services, ..DesiredState::default() }
    }

    fn weights(fake: &FakeIpvs, vip: &str) -> Vec<(String, u32)> {
        fake.dests(vip, 80).iter().map(|d| (d.addr.to_string(), d.weight)).collect()
    }

    #[test]
    fn creates_then_changes_nothing_when_nothing_changed() {
        let mut dp = IpvsDataplane::new(FakeIpvs::new());
        let desired = state(vec![service("10.0.0.1", &[("10.1.0.1", 1), ("10.1.0.2", 2)])]);
        let report = dp.apply(&desired).unwrap();
        assert_eq!((report.services_added, report.reals_added, report.writes), (1, 2, 3));
        let held = dp.transport().held.borrow().values().next().unwrap().service.clone();
        assert_eq!((held.scheduler.as_str(), held.flags, held.prefix), ("wlc", SVC_F_HASHED, 32));
        assert_eq!(weights(dp.transport(), "10.0.0.1"), [("10.1.0.1".into(), 1), ("10.1.0.2".into(), 2)]);
        assert_eq!(dp.transport().dests("10.0.0.1", 80)[0].method, ForwardMethod::Masq);
        dp.transport().log.borrow_mut().clear();
        assert!(dp.apply(&desired).unwrap().is_noop());
        assert!(dp.transport().changes().is_empty(), "{:?}", dp.transport().log.borrow());
    }

    #[test]
    fn changes_only_what_differs() {
        let mut dp = IpvsDataplane::new(FakeIpvs::new());
        let mut vs = service("10.0.0.1", &[("10.1.0.1", 1), ("10.1.0.2", 1), ("10.1.0.3", 1)]);
        dp.apply(&state(vec![vs.clone()])).unwrap();
        dp.transport().log.borrow_mut().clear();
        // A checker takes .2 out (weight 0), .3 leaves, .4 arrives.
        vs.reals[1].weight = 0;
        vs.reals[2] = RealTarget::new(ip("10.1.0.4"), 8080, 5);
        let report = dp.apply(&state(vec![vs.clone()])).unwrap();
        assert_eq!((report.reals_updated, report.reals_removed, report.reals_added), (1, 1, 1));
        assert_eq!(dp.transport().changes(), [Command::DelDest, Command::SetDest, Command::NewDest]);
        let want: Vec<(String, u32)> =
            vec![("10.1.0.1".into(), 1), ("10.1.0.2".into(), 0), ("10.1.0.4".into(), 5)];
        assert_eq!(weights(dp.transport(), "10.0.0.1"), want);
        // The scheduler and persistence change in place: the real servers stay.
        dp.transport().log.borrow_mut().clear();
        vs.scheduling.algorithm = Algorithm::SourceHashing;
        vs.scheduling.hash_port = true;
        vs.persistence = Some(Persistence { timeout: Duration::from_secs(360), prefix: Some(24) });
        let report = dp.apply(&state(vec![vs.clone()])).unwrap();
        assert_eq!((report.services_updated, report.writes), (1, 1));
        assert_eq!(dp.transport().changes(), [Command::SetService]);
        let held = dp.transport().held.borrow().values().next().unwrap().service.clone();
        assert_eq!(held.scheduler, "sh");
        assert_eq!(held.flags & !SVC_F_HASHED, SVC_F_PERSISTENT | SVC_F_SCHED2);
        assert_eq!((held.timeout, held.prefix), (360, 24));
        // The forwarding method and thresholds change each destination in place.
        dp.transport().log.borrow_mut().clear();
        vs.method = ForwardingMethod::Dr;
        vs.reals[0].upper_threshold = 100;
        vs.reals[0].lower_threshold = 50;
        let report = dp.apply(&state(vec![vs])).unwrap();
        assert_eq!((report.reals_updated, report.writes), (3, 3));
        let dests = dp.transport().dests("10.0.0.1", 80);
        assert!(dests.iter().all(|d| d.method == ForwardMethod::DirectRoute));
        assert_eq!((dests[0].upper_threshold, dests[0].lower_threshold), (100, 50));
    }

    /// Another tool's service (ipvsadm -A), there before lbd: UDP 192.0.2.9:53.
    fn add_foreign_service(fake: &FakeIpvs) {
        let foreign = IpvsMessage::new_service(&IpvsService {
            id: ServiceId::Addr { addr: ip("192.0.2.9"), port: 53, protocol: 17 },
            scheduler: "rr".into(),
            flags: 0,
            timeout: 0,
            prefix: 32,
            stats: Stats::default(),
        });
        fake.request(&foreign, false).unwrap();
    }

    #[test]
    fn removes_its_own_services_and_leaves_the_others() {
        let fake = FakeIpvs::new();
        add_foreign_service(&fake);
        let mut dp = IpvsDataplane::new(fake);
        let a = service("10.0.0.1", &[("10.1.0.1", 1)]);
        let b = service("10.0.0.2", &[("10.1.0.1", 1)]);
        dp.apply(&state(vec![a.clone(), b])).unwrap();
        assert_eq!(dp.transport().held.borrow().len(), 3);
        let report = dp.apply(&state(vec![a])).unwrap();
        assert_eq!((report.services_removed, report.writes), (1, 1));
        let held: Vec<String> = dp.transport().held.borrow().keys().map(ToString::to_string).collect();
        assert_eq!(held, ["6/10.0.0.1:80", "17/192.0.2.9:53"]);
        dp.remove().unwrap();
        let held: Vec<String> = dp.transport().held.borrow().keys().map(ToString::to_string).collect();
        assert_eq!(held, ["17/192.0.2.9:53"]);
    }

    #[test]
    fn flush_empties_ipvs_and_the_next_apply_programs_everything_again() {
        let fake = FakeIpvs::new();
        add_foreign_service(&fake);
        let mut dp = IpvsDataplane::new(fake);
        let a = service("10.0.0.1", &[("10.1.0.1", 1)]);
        dp.apply(&state(vec![a.clone()])).unwrap();
        assert_eq!(dp.transport().held.borrow().len(), 2);
        dp.flush().unwrap();
        assert!(dp.transport().held.borrow().is_empty(), "another tool's service goes too");
        assert_eq!(dp.transport().changes().last(), Some(&Command::Flush));
        let report = dp.apply(&state(vec![a])).unwrap();
        assert_eq!(report.services_added, 1);
        assert_eq!(dp.transport().dests("10.0.0.1", 80).len(), 1);
    }

    #[test]
    fn a_restarted_daemon_adopts_what_ipvs_holds() {
        let mut vs = service("10.0.0.1", &[("10.1.0.1", 1)]);
        vs.persistence = Some(Persistence { timeout: Duration::from_secs(60), prefix: None });
        let mut first = IpvsDataplane::new(FakeIpvs::new());
        first.apply(&state(vec![vs.clone()])).unwrap();
        let mut second = IpvsDataplane::new(first.ipvs);
        second.transport().log.borrow_mut().clear();
        assert!(second.apply(&state(vec![vs])).unwrap().is_noop());
        assert!(second.transport().changes().is_empty());
        // Adopted: dropping it from the configuration deletes it.
        assert_eq!(second.apply(&state(Vec::new())).unwrap().services_removed, 1);
    }

    #[test]
    fn the_sorry_server_stands_in_while_no_real_server_has_weight() {
        let mut dp = IpvsDataplane::new(FakeIpvs::new());
        let mut vs = service("10.0.0.1", &[("10.1.0.1", 1)]);
        vs.sorry_server = Some(RealTarget::new(ip("10.9.0.1"), 8080, 1));
        dp.apply(&state(vec![vs.clone()])).unwrap();
        assert_eq!(weights(dp.transport(), "10.0.0.1"), [("10.1.0.1".into(), 1)]);
        vs.reals[0].weight = 0;
        dp.apply(&state(vec![vs.clone()])).unwrap();
        assert_eq!(weights(dp.transport(), "10.0.0.1"), [("10.1.0.1".into(), 0), ("10.9.0.1".into(), 1)]);
        let stats = dp.service_stats().unwrap();
        let sorry: Vec<bool> = stats[0].reals.iter().map(|r| r.sorry).collect();
        assert_eq!(sorry, [false, true]);
        vs.reals.clear();
        dp.apply(&state(vec![vs.clone()])).unwrap();
        assert_eq!(weights(dp.transport(), "10.0.0.1"), [("10.9.0.1".into(), 1)]);
        vs.reals.push(RealTarget::new(ip("10.1.0.2"), 8080, 3));
        dp.apply(&state(vec![vs])).unwrap();
        assert_eq!(weights(dp.transport(), "10.0.0.1"), [("10.1.0.2".into(), 3)]);
    }

    #[test]
    fn fnat_is_refused_naming_the_keyword_and_syn_proxy_is_ignored() {
        let mut dp = IpvsDataplane::new(FakeIpvs::new());
        let mut fnat = service("10.0.0.1", &[("10.1.0.1", 1)]);
        fnat.method = ForwardingMethod::Fnat;
        fnat.local_addresses = vec![ip("10.2.0.1")];
        let error = dp.apply(&state(vec![service("10.0.0.2", &[]), fnat])).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("TCP 10.0.0.1:80") && text.contains("lvs_method FNAT"), "{text}");
        assert!(text.contains("Alibaba"), "{text}");
        assert!(dp.transport().changes().is_empty(), "nothing written before the check");
        let mut proxied = service("10.0.0.1", &[("10.1.0.1", 1)]);
        proxied.syn_proxy = true;
        let report = dp.apply(&state(vec![proxied])).unwrap();
        assert_eq!(report.services_added, 1);
        assert!(report.warnings[0].to_string().contains("syn_proxy ignored"), "{:?}", report.warnings);
    }

    #[test]
    fn bad_services_are_refused_before_any_write() {
        let mut dp = IpvsDataplane::new(FakeIpvs::new());
        let twice = state(vec![service("10.0.0.1", &[]), service("10.0.0.1", &[])]);
        assert!(dp.apply(&twice).unwrap_err().to_string().contains("defined twice"));
        let mixed = state(vec![service("10.0.0.1", &[("2001:db8::1", 1)])]);
        assert!(dp.apply(&mixed).unwrap_err().to_string().contains("address family"));
        let mut zero = service("10.0.0.1", &[]);
        zero.persistence = Some(Persistence { timeout: Duration::ZERO, prefix: None });
        assert!(dp.apply(&state(vec![zero])).is_err());
        assert!(dp.transport().changes().is_empty());
    }

    #[test]
    fn timeouts_are_set_once_when_they_differ() {
        let mut dp = IpvsDataplane::new(FakeIpvs::new());
        let mut desired = state(Vec::new());
        desired.settings.tcp_timeout = Duration::from_secs(900);
        desired.settings.tcp_fin_timeout = Duration::from_secs(120);
        desired.settings.udp_timeout = Duration::from_secs(300);
        assert!(dp.apply(&desired).unwrap().is_noop(), "the kernel's defaults already");
        desired.settings.tcp_timeout = Duration::from_secs(7200);
        assert_eq!(dp.apply(&desired).unwrap().writes, 1);
        assert_eq!(dp.transport().timeouts.borrow().tcp, 7200);
        assert!(dp.apply(&desired).unwrap().is_noop());
        assert_eq!(dp.transport().changes(), [Command::SetConfig]);
    }

    #[test]
    fn stats_come_from_ipvs_counters() {
        let mut dp = IpvsDataplane::new(FakeIpvs::new());
        dp.apply(&state(vec![service("10.0.0.1", &[("10.1.0.1", 1), ("10.1.0.2", 1)])])).unwrap();
        {
            let mut held = dp.transport().held.borrow_mut();
            let h = held.values_mut().next().unwrap();
            h.service.stats =
                Stats { conns: 7, in_packets: 70, out_packets: 60, in_bytes: 7000, out_bytes: 1 };
            for (i, d) in h.dests.values_mut().enumerate() {
                d.active_conns = 2 + i as u32;
                d.stats.conns = 3 + i as u64;
            }
        }
        let stats = dp.service_stats().unwrap();
        assert_eq!(stats.len(), 1);
        let want = Counters { packets: 70, bytes: 7000, new_conns: 7, active_conns: 5 };
        assert_eq!(stats[0].counters, want);
        let real = dp.real_stats(&stats[0].service, ip("10.1.0.2"), 8080).unwrap().unwrap();
        assert_eq!((real.counters.active_conns, real.counters.new_conns, real.weight), (3, 4, 1));
    }
}
