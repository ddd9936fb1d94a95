//! The table engine against the fake: minimal writes, stable ids, adoption, write order.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use lb_common::lb::{Method, Scheduler};

use super::*;
use crate::dataplane::{
    Persistence,
    fake::{self, FakeDataplane, FakeTables},
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn addr(vip: &str, port: u16) -> ServiceAddr {
    ServiceAddr { vip: ip(vip), port, protocol: Protocol::Tcp }
}

fn real(a: &str, weight: u32) -> RealTarget {
    RealTarget::new(ip(a), 8080, weight)
}

fn service(vip: &str, algorithm: Algorithm, reals: &[RealTarget]) -> VirtualService {
    let mut vs = VirtualService::new(addr(vip, 80));
    vs.scheduling.algorithm = algorithm;
    vs.reals = reals.to_vec();
    vs
}

fn state(services: Vec<VirtualService>) -> DesiredState {
    DesiredState { services, settings: DataplaneSettings::default() }
}

fn routes() -> StaticRoutes {
    StaticRoutes {
        default_v4: Some(Ipv4Addr::new(192, 0, 2, 1)),
        default_v6: Some("2001:db8::1".parse().unwrap()),
        ..StaticRoutes::default()
    }
}

fn fresh() -> FakeDataplane {
    fake::dataplane(FakeTables::default(), routes())
}

/// Applies, checking that no intermediate state broke an invariant; returns the report and the
/// writes of this apply. Each apply happens an hour after the one before: a real server removed
/// by one apply drains until the next (longer than the default TCP timeout).
fn apply(dp: &mut FakeDataplane, desired: &DesiredState) -> (ApplyReport, Vec<TableWrite>) {
    thread_local! {
        static CLOCK: std::cell::Cell<std::time::Instant> = std::cell::Cell::new(std::time::Instant::now());
    }
    let now = CLOCK.with(|c| {
        let now = c.get() + std::time::Duration::from_secs(3600);
        c.set(now);
        now
    });
    let before = dp.io().writes.len();
    let report = dp.apply_at(desired, now).unwrap();
    let tables = dp.io();
    assert!(tables.violations.is_empty(), "{:#?}", tables.violations);
    let writes = tables.writes[before..].to_vec();
    assert_eq!(report.writes, writes.len());
    (report, writes)
}

/// The service entry of `vip:80` in the fake.
fn entry(dp: &FakeDataplane, vip: &str) -> Service {
    *dp.io().services.get(&service_key(&addr(vip, 80))).unwrap()
}

/// Real ids of a service by address.
fn real_ids(dp: &FakeDataplane, vip: &str) -> BTreeMap<IpAddr, u32> {
    let service = entry(dp, vip);
    dp.image
        .owners
        .iter()
        .filter(|(_, o)| o.service == service.id && !o.sorry)
        .map(|(&id, o)| (o.addr, id))
        .collect()
}

fn row_range(service: &Service) -> std::ops::Range<u32> {
    service.id * SLOTS_PER_SERVICE..(service.id + 1) * SLOTS_PER_SERVICE
}

/// A mix of everything: rr, wrr, mh, lc, sh with sorry server, FNAT sharing a pool, TUN, IPv6,
/// weight 0, one real in two services.
fn everything() -> DesiredState {
    let mut fnat_a = service("10.0.0.5", Algorithm::RoundRobin, &[real("10.1.0.1", 1), real("10.1.0.2", 1)]);
    fnat_a.method = ForwardingMethod::Fnat;
    fnat_a.local_addresses = vec![ip("10.9.0.2"), ip("10.9.0.1"), ip("2001:db8::9")];
    let mut fnat_b = fnat_a.clone();
    fnat_b.addr = addr("10.0.0.6", 80);
    let mut sh = service("10.0.0.4", Algorithm::SourceHashing, &[real("10.1.0.1", 0), real("10.1.0.3", 2)]);
    sh.sorry_server = Some(real("10.1.0.99", 0));
    sh.persistence = Some(Persistence { timeout: Duration::from_secs(300), prefix: Some(24) });
    let mut tun =
        service("10.0.0.7", Algorithm::WeightedLeastConnection, &[real("10.2.0.1", 3), real("10.2.0.2", 0)]);
    tun.method = ForwardingMethod::Tun;
    let mut v6 =
        service("2001:db8::80", Algorithm::MaglevHashing, &[real("2001:db8::a", 1), real("2001:db8::b", 2)]);
    v6.scheduling.hash_port = true;
    let mut udp = service("10.0.0.1", Algorithm::RoundRobin, &[real("10.1.0.1", 1)]);
    udp.addr.protocol = Protocol::Udp;
    udp.scheduling.one_packet = true;
    state(vec![
        service("10.0.0.1", Algorithm::RoundRobin, &[real("10.1.0.1", 1), real("10.1.0.2", 1)]),
        service("10.0.0.2", Algorithm::WeightedRoundRobin, &[real("10.1.0.1", 3), real("10.1.0.2", 1)]),
        service(
            "10.0.0.3",
            Algorithm::MaglevHashing,
            &[real("10.1.0.1", 1), real("10.1.0.2", 0), real("10.1.0.3", 1)],
        ),
        sh,
        fnat_a,
        fnat_b,
        tun,
        v6,
        udp,
    ])
}

#[test]
fn first_apply_writes_everything_and_sets_ready_last() {
    let mut dp = fresh();
    let (report, writes) = apply(&mut dp, &everything());
    assert_eq!(report.services_added, 9);
    assert_eq!(report.services_removed + report.services_recreated + report.services_updated, 0);
    assert_eq!(writes.last().map(TableWrite::map), Some(lb_common::maps::SETTINGS));
    assert_eq!(dp.io().settings.ready, 1);
    assert_eq!(dp.io().settings.tcp_timeout, 900);
    // Service ids and real ids start at 1.
    let mut ids: Vec<u32> = dp.io().services.values().map(|s| s.id).collect();
    ids.sort();
    assert_eq!(ids, (1..=9).collect::<Vec<_>>());
    assert_eq!(dp.io().reals.keys().next(), Some(&1));
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn reapplying_the_same_state_writes_nothing() {
    let mut dp = fresh();
    apply(&mut dp, &everything());
    let (report, writes) = apply(&mut dp, &everything());
    assert!(writes.is_empty(), "{writes:#?}");
    assert!(report.is_noop());
    assert_eq!(report, ApplyReport::default());
    // Nor does a reordered copy.
    let mut shuffled = everything();
    shuffled.services.reverse();
    for s in &mut shuffled.services {
        s.reals.reverse();
        s.local_addresses.reverse();
    }
    assert!(apply(&mut dp, &shuffled).1.is_empty());
}

#[test]
fn adding_a_real_touches_one_real_and_that_row_only() {
    let mut dp = fresh();
    let mut desired = everything();
    apply(&mut dp, &desired);
    let others: Vec<(ServiceKey, Service)> = dp.io().services.iter().map(|(k, v)| (*k, *v)).collect();

    desired.services[0].reals.push(real("10.1.0.7", 1));
    let (report, writes) = apply(&mut dp, &desired);
    let rr = entry(&dp, "10.0.0.1");
    let new_id = real_ids(&dp, "10.0.0.1")[&ip("10.1.0.7")];
    assert_eq!((report.reals_added, report.reals_updated, report.reals_removed), (1, 0, 0));
    assert_eq!((report.services_updated, report.rows_rewritten), (1, 1));
    for write in &writes {
        match write {
            TableWrite::ResetRealStats { id } | TableWrite::Real { id, .. } => assert_eq!(*id, new_id),
            TableWrite::Slot { index, real } => {
                assert!(row_range(&rr).contains(index), "slot {index} outside the row");
                assert_eq!(*real, new_id);
            }
            TableWrite::Service { key, service } => {
                assert_eq!(*key, service_key(&addr("10.0.0.1", 80)));
                assert_eq!(service.slots_len, 3);
            }
            // The flow cache's next generation.
            TableWrite::Settings(settings) => assert_eq!(settings.generation, 2),
            other => panic!("unexpected {other:?}"),
        }
    }
    // rr: one slot appended, the service's length updated, the generation: five writes in all.
    assert_eq!(writes.len(), 5, "{writes:#?}");
    for (key, service) in others {
        if key != service_key(&addr("10.0.0.1", 80)) {
            assert_eq!(dp.io().services.get(&key), Some(&service));
        }
    }
}

#[test]
fn adding_a_real_to_maglev_moves_about_its_share() {
    let mut dp = fresh();
    let reals: Vec<RealTarget> = (1..=9).map(|i| real(&format!("10.3.0.{i}"), 1)).collect();
    let mut desired = state(vec![service("10.0.0.3", Algorithm::MaglevHashing, &reals)]);
    apply(&mut dp, &desired);
    desired.services[0].reals.push(real("10.3.0.10", 1));
    let (_, writes) = apply(&mut dp, &desired);
    let slots = writes.iter().filter(|w| matches!(w, TableWrite::Slot { .. })).count();
    // About a tenth of the 4093 slots change, and the service entry (same length) does not.
    assert!(slots > 300 && slots < 600, "{slots} slots rewritten");
    assert!(!writes.iter().any(|w| matches!(w, TableWrite::Service { .. })));
    assert_eq!(writes.iter().filter(|w| matches!(w, TableWrite::Real { .. })).count(), 1);
}

#[test]
fn a_weight_change_rewrites_the_row_and_the_real_in_place() {
    let mut dp = fresh();
    let mut desired = everything();
    apply(&mut dp, &desired);
    let ids = real_ids(&dp, "10.0.0.2");
    let wrr = entry(&dp, "10.0.0.2");

    desired.services[1].reals[1].weight = 3;
    let (report, writes) = apply(&mut dp, &desired);
    assert_eq!(real_ids(&dp, "10.0.0.2"), ids, "ids stay");
    assert_eq!(entry(&dp, "10.0.0.2").id, wrr.id);
    assert_eq!((report.reals_added, report.reals_updated, report.reals_removed), (0, 1, 0));
    assert_eq!(report.rows_rewritten, 1);
    let changed = ids[&ip("10.1.0.2")];
    assert_eq!(dp.io().reals[&changed].weight, 3);
    for write in &writes {
        match write {
            TableWrite::Real { id, .. } => assert_eq!(*id, changed),
            TableWrite::Slot { index, .. } => assert!(row_range(&wrr).contains(index)),
            TableWrite::Service { key, .. } => assert_eq!(*key, service_key(&addr("10.0.0.2", 80))),
            TableWrite::Settings(settings) => assert_eq!(settings.generation, 2),
            other => panic!("unexpected {other:?}"),
        }
    }
    // 3:1 became 3:3, i.e. 1:1: a row of two.
    let wrr = entry(&dp, "10.0.0.2");
    assert_eq!(dp.io().row(&wrr).len(), 2);
}

#[test]
fn weight_zero_keeps_the_real_out_of_the_row() {
    let mut dp = fresh();
    let mut desired = everything();
    apply(&mut dp, &desired);
    let ids = real_ids(&dp, "10.0.0.1");
    desired.services[0].reals[0].weight = 0;
    let (report, _) = apply(&mut dp, &desired);
    assert_eq!(real_ids(&dp, "10.0.0.1"), ids);
    assert_eq!(report.reals_updated, 1);
    let rr = entry(&dp, "10.0.0.1");
    let kept = ids[&ip("10.1.0.1")];
    assert_eq!(dp.io().reals[&kept].weight, 0, "still in REALS for its flows");
    assert_eq!(dp.io().row(&rr), vec![ids[&ip("10.1.0.2")]]);

    // All out: an empty row; with a sorry server, the sorry real.
    desired.services[0].reals[1].weight = 0;
    desired.services[0].sorry_server = Some(real("10.1.0.99", 5));
    apply(&mut dp, &desired);
    let rr = entry(&dp, "10.0.0.1");
    assert_eq!(rr.slots_len, 0);
    assert_ne!(rr.sorry_real, 0);
    assert_eq!(dp.io().reals[&rr.sorry_real].weight, 1);
}

#[test]
fn changing_the_scheduler_recreates_that_service_only() {
    let mut dp = fresh();
    let mut desired = everything();
    apply(&mut dp, &desired);
    let before: BTreeMap<u32, Real> = dp.io().reals.clone();
    let old = entry(&dp, "10.0.0.2");
    let old_ids = real_ids(&dp, "10.0.0.2");
    let others: Vec<(ServiceKey, Service)> =
        dp.io().services.iter().filter(|(_, s)| s.id != old.id).map(|(k, v)| (*k, *v)).collect();

    desired.services[1].scheduling.algorithm = Algorithm::LeastConnection;
    let (report, writes) = apply(&mut dp, &desired);
    assert_eq!(report.services_recreated, 1);
    assert_eq!((report.services_added, report.services_removed, report.services_updated), (0, 0, 0));
    assert_eq!((report.reals_added, report.reals_removed), (2, 2));
    let new = entry(&dp, "10.0.0.2");
    assert_ne!(new.id, old.id);
    assert_eq!(Scheduler::from_u8(new.scheduler), Some(Scheduler::LeastConn));
    let new_ids = real_ids(&dp, "10.0.0.2");
    for id in old_ids.values() {
        assert!(!dp.io().reals.contains_key(id), "old real {id} cleared");
        assert!(!new_ids.values().any(|n| n == id), "old id {id} not reused at once");
    }
    for (key, service) in others {
        assert_eq!(dp.io().services.get(&key), Some(&service));
    }
    // The other services' reals were not written.
    for write in &writes {
        if let TableWrite::Real { id, .. } = write {
            assert!(old_ids.values().any(|o| o == id) || new_ids.values().any(|n| n == id));
        }
    }
    for (id, r) in before {
        if !old_ids.values().any(|o| *o == id) {
            assert_eq!(dp.io().reals.get(&id), Some(&r));
        }
    }
}

#[test]
fn key_fields_recreate_and_others_update_in_place() {
    type Change = fn(&mut VirtualService);
    let mut base = service("10.0.0.1", Algorithm::RoundRobin, &[real("10.1.0.1", 1)]);
    base.method = ForwardingMethod::Fnat;
    base.local_addresses = vec![ip("10.9.0.1")];
    let recreating: [(&str, Change); 4] = [
        ("method", |vs| vs.method = ForwardingMethod::Nat),
        ("scheduler", |vs| vs.scheduling.algorithm = Algorithm::SourceHashing),
        ("persistence", |vs| {
            vs.persistence = Some(Persistence { timeout: Duration::from_secs(60), prefix: None })
        }),
        ("hash port", |vs| {
            vs.scheduling.algorithm = Algorithm::MaglevHashing;
            vs.scheduling.hash_port = true;
        }),
    ];
    for (what, change) in recreating {
        let mut dp = fresh();
        let mut desired = state(vec![base.clone()]);
        apply(&mut dp, &desired);
        let old = entry(&dp, "10.0.0.1");
        change(&mut desired.services[0]);
        let (report, _) = apply(&mut dp, &desired);
        assert_eq!((report.services_recreated, report.services_updated), (1, 0), "{what}");
        assert_ne!(entry(&dp, "10.0.0.1").id, old.id, "{what}");
    }
    // The sorry server and the weights change in place.
    let mut dp = fresh();
    let mut desired = state(vec![base]);
    apply(&mut dp, &desired);
    let id = entry(&dp, "10.0.0.1").id;
    desired.services[0].sorry_server = Some(real("10.1.0.9", 1));
    desired.services[0].reals[0].weight = 7;
    let (report, _) = apply(&mut dp, &desired);
    assert_eq!((report.services_updated, report.services_recreated), (1, 0));
    assert_eq!((report.reals_added, report.reals_updated), (1, 1));
    assert_eq!(entry(&dp, "10.0.0.1").id, id);
    // The hash-port flag means nothing to rr: no change.
    desired.services[0].scheduling.hash_port = true;
    assert!(apply(&mut dp, &desired).1.is_empty());
}

#[test]
fn removed_ids_are_not_reused_at_once() {
    let mut dp = fresh();
    let mut desired =
        state(vec![service("10.0.0.1", Algorithm::RoundRobin, &[real("10.1.0.1", 1), real("10.1.0.2", 1)])]);
    apply(&mut dp, &desired);
    let removed = real_ids(&dp, "10.0.0.1")[&ip("10.1.0.2")];
    desired.services[0].reals.pop();
    let (report, _) = apply(&mut dp, &desired);
    assert_eq!(report.reals_removed, 1);
    // It drains: its entry stays for its flows, out of the row and of the statistics.
    assert!(dp.io().reals.contains_key(&removed));
    assert!(!dp.io().row(&entry(&dp, "10.0.0.1")).contains(&removed));
    assert_eq!(dp.service_stats().unwrap()[0].reals.len(), 1);
    let (report, _) = apply(&mut dp, &desired);
    assert_eq!(report.reals_removed, 0, "counted once");
    assert!(!dp.io().reals.contains_key(&removed), "released after the drain period");
    desired.services[0].reals.push(real("10.1.0.3", 1));
    apply(&mut dp, &desired);
    let added = real_ids(&dp, "10.0.0.1")[&ip("10.1.0.3")];
    assert!(added > removed, "{added} after {removed}");
    // The same goes for services.
    let sid = entry(&dp, "10.0.0.1").id;
    apply(&mut dp, &state(vec![]));
    apply(&mut dp, &desired);
    assert!(entry(&dp, "10.0.0.1").id > sid);
}

#[test]
fn ids_wrap_round_skipping_those_in_use() {
    let limits = Limits { service_ids: 4, services: 3, real_ids: 5, laddr_groups: 2 };
    let mut dp = fake::dataplane(FakeTables::new(limits), routes());
    let one =
        |a: &str| state(vec![service("10.0.0.1", Algorithm::RoundRobin, &[real("10.1.0.1", 1), real(a, 1)])]);
    apply(&mut dp, &one("10.1.0.2")); // ids 1, 2
    apply(&mut dp, &one("10.1.0.3")); // 2 drains, 3 added
    apply(&mut dp, &one("10.1.0.4")); // 2 released, 3 drains, 4 added
    apply(&mut dp, &one("10.1.0.5")); // 3 released, 4 drains: wraps, skips 1, takes 2
    assert_eq!(real_ids(&dp, "10.0.0.1")[&ip("10.1.0.5")], 2);
    // Five reals in a table of four ids: full.
    let five = state(vec![service(
        "10.0.0.1",
        Algorithm::RoundRobin,
        &[
            real("10.1.0.1", 1),
            real("10.1.0.5", 1),
            real("10.1.0.6", 1),
            real("10.1.0.7", 1),
            real("10.1.0.8", 1),
        ],
    )]);
    let e = dp.apply(&five).unwrap_err();
    assert!(matches!(e, DataplaneError::TableFull { table: "LBD_REALS", capacity: 4 }), "{e}");
    let too_many =
        state((1..=4).map(|i| service(&format!("10.0.0.{i}"), Algorithm::RoundRobin, &[])).collect());
    assert!(matches!(dp.apply(&too_many), Err(DataplaneError::TableFull { table: "LBD_SERVICES", .. })));
}

#[test]
fn adoption_after_a_restart_writes_nothing() {
    let mut dp = fresh();
    apply(&mut dp, &everything());
    let before = dp.io().clone();
    let ids: Vec<BTreeMap<IpAddr, u32>> =
        ["10.0.0.1", "10.0.0.3", "10.0.0.4", "10.0.0.7"].iter().map(|v| real_ids(&dp, v)).collect();

    // The daemon exits; a new one adopts the pinned maps.
    let mut tables = dp.into_io();
    tables.writes.clear();
    let mut dp = fake::dataplane(tables, routes());
    assert_eq!(dp.held(), (9, before.reals.len()));
    let (report, writes) = apply(&mut dp, &everything());
    assert!(writes.is_empty(), "{writes:#?}");
    assert!(report.is_noop());
    assert_eq!(dp.io().services, before.services);
    assert_eq!(dp.io().reals, before.reals);
    // Weight-0 reals, in no row, were matched too.
    let again: Vec<BTreeMap<IpAddr, u32>> =
        ["10.0.0.1", "10.0.0.3", "10.0.0.4", "10.0.0.7"].iter().map(|v| real_ids(&dp, v)).collect();
    assert_eq!(again, ids);
}

#[test]
fn adoption_then_a_change_writes_only_the_change() {
    let mut dp = fresh();
    let mut desired = everything();
    apply(&mut dp, &desired);
    let mut tables = dp.into_io();
    tables.writes.clear();
    let mut dp = fake::dataplane(tables, routes());
    // The weight-0 real of the mh service comes back.
    desired.services[2].reals[1].weight = 1;
    let (report, writes) = apply(&mut dp, &desired);
    assert_eq!((report.reals_added, report.reals_updated, report.reals_removed), (0, 1, 0));
    let mh = entry(&dp, "10.0.0.3");
    for write in &writes {
        match write {
            TableWrite::Real { .. } | TableWrite::Settings(_) => {}
            TableWrite::Slot { index, .. } => assert!(row_range(&mh).contains(index)),
            other => panic!("unexpected {other:?}"),
        }
    }
    // A new real after adoption gets an id above every id in use.
    let max = dp.io().reals.keys().copied().max().unwrap();
    desired.services[0].reals.push(real("10.1.0.50", 1));
    apply(&mut dp, &desired);
    assert_eq!(real_ids(&dp, "10.0.0.1")[&ip("10.1.0.50")], max + 1);
}

#[test]
fn adoption_removes_what_the_configuration_dropped() {
    let mut dp = fresh();
    apply(&mut dp, &everything());
    let mut tables = dp.into_io();
    // Something lbd cannot have written: an SCTP service.
    let foreign = ServiceKey { proto: 132, ..service_key(&addr("10.0.0.77", 80)) };
    tables.services.insert(foreign, Service { id: 20, ..Service::default() });
    let mut dp = fake::dataplane(tables, routes());
    let mut smaller = everything();
    smaller.services.truncate(1);
    let (report, _) = apply(&mut dp, &smaller);
    assert_eq!(report.services_removed, 8);
    assert_eq!(dp.io().services.len(), 1);
    assert_eq!(dp.io().reals.len(), 2);
    assert!(dp.io().laddrs.is_empty(), "the FNAT pool is cleared");
}

/// What the tables forward, in addresses rather than ids: ids may differ between two
/// histories that reach the same state.
fn forwarding(tables: &FakeTables) -> BTreeMap<String, String> {
    let name = |id: u32| {
        let r = &tables.reals[&id];
        format!("{:?}:{}/{}", addr_from(r.addr, r.family), u16::from_be(r.port), r.weight)
    };
    tables
        .services
        .iter()
        .map(|(key, s)| {
            let row: Vec<String> = tables.row(s).into_iter().map(name).collect();
            let sorry = (s.sorry_real != 0).then(|| name(s.sorry_real));
            let start = s.laddr_group * MAX_LADDRS_PER_GROUP;
            // Pool 0 is never written: empty for services without one.
            let pool: Vec<String> = tables
                .laddrs
                .range(start..start + MAX_LADDRS_PER_GROUP)
                .map(|(_, l)| format!("{:?}", l.addr))
                .collect();
            let fields = Service { id: 0, sorry_real: 0, laddr_group: 0, ..*s };
            (format!("{:?}", service_addr(key)), format!("{fields:?} {row:?} {sorry:?} {pool:?}"))
        })
        .collect()
}

#[test]
fn a_failed_write_leaves_the_next_apply_to_converge() {
    let mut reference = fresh();
    apply(&mut reference, &everything());
    let total = reference.io().writes.len();
    for fail_at in [0, 3, 10, 25, 40, total / 2, total - 1] {
        let tables = FakeTables { fail_at: Some(fail_at), ..FakeTables::default() };
        let mut dp = fake::dataplane(tables, routes());
        assert!(matches!(dp.apply(&everything()), Err(DataplaneError::Map { .. })));
        assert!(dp.io().violations.is_empty(), "{:#?}", dp.io().violations);
        apply(&mut dp, &everything());
        assert_eq!(forwarding(dp.io()), forwarding(reference.io()), "fail at {fail_at}");
        assert_eq!(dp.io().reals.len(), reference.io().reals.len(), "no real left behind");
        assert_eq!(dp.io().laddrs.len(), reference.io().laddrs.len());
        assert_eq!(dp.io().settings, reference.io().settings);
        assert!(apply(&mut dp, &everything()).1.is_empty());
    }
}

#[test]
fn every_transition_keeps_the_tables_consistent() {
    // Walk through a series of states, each apply checked write by write by the fake.
    let mut dp = fresh();
    let mut desired = everything();
    apply(&mut dp, &desired);
    desired.services[4].local_addresses = vec![ip("10.9.0.3")];
    apply(&mut dp, &desired);
    desired.services.swap_remove(0);
    apply(&mut dp, &desired);
    for s in &mut desired.services {
        s.scheduling.algorithm = Algorithm::MaglevHashing;
        for r in &mut s.reals {
            r.weight += 1;
        }
    }
    apply(&mut dp, &desired);
    apply(&mut dp, &state(vec![]));
    assert!(dp.io().services.is_empty());
    assert!(dp.io().reals.is_empty());
    assert!(dp.io().laddrs.is_empty());
}

#[test]
fn fnat_pools_are_shared_filtered_and_sorted() {
    let mut dp = fresh();
    apply(&mut dp, &everything());
    let a = entry(&dp, "10.0.0.5");
    let b = entry(&dp, "10.0.0.6");
    assert_eq!(Method::from_u8(a.method), Some(Method::Fnat));
    assert_ne!(a.laddr_group, 0);
    assert_eq!(a.laddr_group, b.laddr_group, "one pool for the same addresses");
    let start = a.laddr_group * MAX_LADDRS_PER_GROUP;
    let pool: Vec<LocalAddr> =
        dp.io().laddrs.range(start..start + MAX_LADDRS_PER_GROUP).map(|(_, v)| *v).collect();
    // The IPv6 address is left out; the rest sorted.
    assert_eq!(pool.len(), 2);
    assert_eq!(addr_from(pool[0].addr, pool[0].family), Some(ip("10.9.0.1")));
    assert_eq!(addr_from(pool[1].addr, pool[1].family), Some(ip("10.9.0.2")));
}

#[test]
fn local_addresses_added_or_removed_change_the_service_in_place() {
    let mut dp = fresh();
    let mut desired = everything();
    apply(&mut dp, &desired);
    let (a, b) = (entry(&dp, "10.0.0.5"), entry(&dp, "10.0.0.6"));
    let pool_of = |dp: &FakeDataplane, s: &Service| -> Vec<Option<IpAddr>> {
        let start = s.laddr_group * MAX_LADDRS_PER_GROUP;
        dp.io()
            .laddrs
            .range(start..start + MAX_LADDRS_PER_GROUP)
            .map(|(_, v)| addr_from(v.addr, v.family))
            .collect()
    };
    fn fnat<'a>(d: &'a mut DesiredState, vip: &str) -> &'a mut Vec<IpAddr> {
        d.services.iter_mut().find(|s| s.addr.vip == ip(vip)).map(|s| &mut s.local_addresses).unwrap()
    }
    // An address added to the pool of both.
    fnat(&mut desired, "10.0.0.5").push(ip("10.9.0.3"));
    fnat(&mut desired, "10.0.0.6").push(ip("10.9.0.3"));
    let (report, _) = apply(&mut dp, &desired);
    assert_eq!((report.services_recreated, report.services_added, report.reals_added), (0, 0, 0));
    let (a2, b2) = (entry(&dp, "10.0.0.5"), entry(&dp, "10.0.0.6"));
    assert_eq!((a2.id, b2.id), (a.id, b.id), "same services");
    assert_eq!(a2.laddr_group, b2.laddr_group, "still one pool for the same addresses");
    assert_eq!(pool_of(&dp, &a2), ["10.9.0.1", "10.9.0.2", "10.9.0.3"].map(|s| Some(ip(s))));
    // One removed from one of them only: it alone moves to a pool of its own, in place.
    fnat(&mut desired, "10.0.0.5").retain(|a| *a != ip("10.9.0.1"));
    let (report, _) = apply(&mut dp, &desired);
    assert_eq!((report.services_recreated, report.services_updated), (0, 1));
    let (a3, b3) = (entry(&dp, "10.0.0.5"), entry(&dp, "10.0.0.6"));
    assert_eq!((a3.id, b3), (a.id, b2), "the other service is not touched");
    assert_eq!(pool_of(&dp, &a3), ["10.9.0.2", "10.9.0.3"].map(|s| Some(ip(s))));
    assert_eq!(pool_of(&dp, &b3).len(), 3);
}

#[test]
fn entries_hold_the_wire_encoding() {
    let mut dp = fresh();
    apply(&mut dp, &everything());
    let sh = entry(&dp, "10.0.0.4");
    assert_eq!(Scheduler::from_u8(sh.scheduler), Some(Scheduler::SourceHash));
    assert_eq!(sh.flags, service_flags::PERSISTENT);
    assert_eq!(sh.persistence_timeout, 300);
    assert_eq!(words_octets(sh.persistence_mask)[..4], [255, 255, 255, 0]);
    assert_eq!(sh.slots_len, SLOTS_PER_SERVICE);
    let key = service_key(&addr("10.0.0.4", 80));
    assert_eq!(key.port.to_ne_bytes(), [0, 80]);
    assert_eq!(key.proto, 6);
    assert_eq!(words_octets(key.addr)[..4], [10, 0, 0, 4]);
    let real = dp.io().reals[&real_ids(&dp, "10.0.0.4")[&ip("10.1.0.3")]];
    assert_eq!(real.port.to_ne_bytes(), 8080u16.to_be_bytes());
    assert_eq!(real.tunnel_source, [0; 4]);

    let v6 = *dp.io().services.get(&service_key(&addr("2001:db8::80", 80))).unwrap();
    assert_eq!(v6.flags, service_flags::HASH_PORT);
    let udp = ServiceAddr { protocol: Protocol::Udp, ..addr("10.0.0.1", 80) };
    assert_eq!(dp.io().services[&service_key(&udp)].flags, service_flags::ONE_PACKET);

    let tun = entry(&dp, "10.0.0.7");
    assert_eq!(Method::from_u8(tun.method), Some(Method::Tun));
    let real = dp.io().reals[&real_ids(&dp, "10.0.0.7")[&ip("10.2.0.1")]];
    assert_eq!(addr_from(real.tunnel_source, family::IPV4), Some(ip("192.0.2.1")));
}

#[test]
fn persistence_masks() {
    let v4 = |p| words_octets(mask_words(true, p));
    assert_eq!(v4(32)[..4], [255; 4]);
    assert_eq!(v4(0)[..4], [0; 4]);
    assert_eq!(v4(20)[..4], [255, 255, 240, 0]);
    let v6 = words_octets(mask_words(false, 64));
    assert_eq!(v6, [[255u8; 8], [0u8; 8]].concat()[..]);
    assert_eq!(words_octets(mask_words(false, 128)), [255; 16]);
}

#[test]
fn tun_without_a_route_takes_no_new_flows() {
    let mut dp = fake::dataplane(FakeTables::default(), StaticRoutes::default());
    let mut tun = service("10.0.0.7", Algorithm::RoundRobin, &[real("10.2.0.1", 1)]);
    tun.method = ForwardingMethod::Tun;
    let (report, _) = apply(&mut dp, &state(vec![tun]));
    assert_eq!(
        report.warnings,
        vec![ApplyWarning::NoTunnelSource { service: addr("10.0.0.7", 80), real: ip("10.2.0.1") }]
    );
    assert_eq!(entry(&dp, "10.0.0.7").slots_len, 0);
    assert_eq!(dp.io().reals.len(), 1, "kept for when a route appears");
}

#[test]
fn invalid_services_are_rejected_before_any_write() {
    let reject = |vs: VirtualService| {
        let mut dp = fresh();
        let e = dp.apply(&state(vec![vs])).unwrap_err();
        assert!(dp.io().writes.is_empty());
        match e {
            DataplaneError::Invalid { problem, .. } => problem,
            other => panic!("{other}"),
        }
    };
    let base = service("10.0.0.1", Algorithm::RoundRobin, &[real("10.1.0.1", 1)]);
    let mut vs = base.clone();
    vs.reals.push(real("10.1.0.1", 5));
    assert_eq!(reject(vs), Problem::DuplicateReal { addr: ip("10.1.0.1"), port: 8080 });
    let mut vs = base.clone();
    vs.reals.push(real("2001:db8::1", 1));
    assert_eq!(reject(vs), Problem::FamilyMismatch { addr: ip("2001:db8::1") });
    let mut vs = base.clone();
    vs.method = ForwardingMethod::Fnat;
    vs.local_addresses = vec![ip("2001:db8::1")];
    assert_eq!(reject(vs), Problem::NoLocalAddress);
    let mut vs = base.clone();
    vs.persistence = Some(Persistence { timeout: Duration::from_secs(60), prefix: Some(33) });
    assert_eq!(reject(vs), Problem::PersistencePrefix { prefix: 33 });
    let mut vs = base.clone();
    vs.persistence = Some(Persistence { timeout: Duration::from_millis(10), prefix: None });
    assert_eq!(reject(vs), Problem::ZeroPersistenceTimeout);
    let mut vs = base.clone();
    vs.addr.vip = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    assert_eq!(reject(vs), Problem::UnspecifiedVip);

    let mut dp = fresh();
    let twice = state(vec![base.clone(), base.clone()]);
    let e = dp.apply(&twice).unwrap_err();
    assert!(matches!(e, DataplaneError::Invalid { problem: Problem::DuplicateService, .. }), "{e}");
    let mut bad = state(vec![base]);
    bad.settings.fnat_port_min = 2000;
    bad.settings.fnat_port_max = 1000;
    assert!(matches!(dp.apply(&bad), Err(DataplaneError::Settings { .. })));
    assert!(dp.io().writes.is_empty());
}

#[test]
fn settings_change_writes_only_the_settings() {
    let mut dp = fresh();
    let mut desired = everything();
    apply(&mut dp, &desired);
    desired.settings.udp_timeout = Duration::from_secs(30);
    let (_, writes) = apply(&mut dp, &desired);
    assert_eq!(writes.len(), 1);
    assert!(matches!(writes[0], TableWrite::Settings(Settings { udp_timeout: 30, ready: 1, .. })));
}

/// The flow cache's generation: bumped by an apply that writes services or reals (so the XDP
/// program's cached flows are looked up again), kept by one that does not, and carried on from
/// the tables by a daemon that adopts them.
#[test]
fn generation_moves_with_services_and_reals_only() {
    let mut dp = fresh();
    let mut desired = everything();
    let generation = |writes: &[TableWrite]| {
        writes.iter().find_map(|w| match w {
            TableWrite::Settings(s) => Some(s.generation),
            _ => None,
        })
    };
    let (_, writes) = apply(&mut dp, &desired);
    assert_eq!(generation(&writes), Some(1));
    desired.settings.udp_timeout = Duration::from_secs(30);
    let (_, writes) = apply(&mut dp, &desired);
    assert_eq!(generation(&writes), Some(1));
    let (_, writes) = apply(&mut dp, &desired);
    assert!(writes.is_empty(), "{writes:?}");
    desired.services[0].reals[0].weight += 1;
    let (_, writes) = apply(&mut dp, &desired);
    assert_eq!(generation(&writes), Some(2));
    desired.services.pop();
    let (_, writes) = apply(&mut dp, &desired);
    assert_eq!(generation(&writes), Some(3));

    let mut adopted = fake::dataplane(dp.io().clone(), routes());
    desired.services.pop();
    let (_, writes) = apply(&mut adopted, &desired);
    assert_eq!(generation(&writes), Some(4));
}

#[test]
fn counters_are_reported_per_service_and_real() {
    let mut dp = fresh();
    apply(&mut dp, &everything());
    let sh = entry(&dp, "10.0.0.4");
    let ids = real_ids(&dp, "10.0.0.4");
    let tables = dp.io_mut();
    tables.service_stats.insert(sh.id, ServiceStats { packets: 10, bytes: 1000, new_conns: 4, no_real: 2 });
    tables
        .real_stats
        .insert(ids[&ip("10.1.0.3")], RealStats { packets: 7, bytes: 700, new_conns: 3, closed_conns: 1 });
    tables
        .real_stats
        .insert(ids[&ip("10.1.0.1")], RealStats { packets: 3, bytes: 300, new_conns: 1, closed_conns: 2 });

    // Without LBD_REAL_ACTIVE: new minus closed.
    tables.real_active = None;
    let stats = dp.service_stats().unwrap();
    assert_eq!(stats.len(), 9);
    let s = stats.iter().find(|s| s.service == addr("10.0.0.4", 80)).unwrap();
    assert_eq!(s.counters, Counters { packets: 10, bytes: 1000, new_conns: 4, active_conns: 2 });
    assert_eq!(s.no_real, 2);
    assert_eq!(s.reals.len(), 3, "two reals and the sorry server");
    assert!(s.reals.last().unwrap().sorry);
    let r = dp.real_stats(&addr("10.0.0.4", 80), ip("10.1.0.3"), 8080).unwrap().unwrap();
    assert_eq!(r.counters, Counters { packets: 7, bytes: 700, new_conns: 3, active_conns: 2 });
    assert_eq!(r.weight, 2);
    // More closes than opens (a flow of an earlier owner of the id): no underflow.
    let r = dp.real_stats(&addr("10.0.0.4", 80), ip("10.1.0.1"), 8080).unwrap().unwrap();
    assert_eq!(r.counters.active_conns, 0);

    // With it: the program's count, an underflow reading as none.
    let active = dp.io_mut().real_active.insert(BTreeMap::new());
    active.insert(ids[&ip("10.1.0.3")], 5);
    active.insert(ids[&ip("10.1.0.1")], u64::MAX);
    let r = dp.real_stats(&addr("10.0.0.4", 80), ip("10.1.0.3"), 8080).unwrap().unwrap();
    assert_eq!(r.counters.active_conns, 5);
    let r = dp.real_stats(&addr("10.0.0.4", 80), ip("10.1.0.1"), 8080).unwrap().unwrap();
    assert_eq!(r.counters.active_conns, 0);

    // A new real's counters start at zero even if its id had some.
    let mut desired = everything();
    desired.services[0].reals.push(real("10.1.0.60", 1));
    let next = dp.io().reals.keys().max().unwrap() + 1;
    dp.io_mut().real_stats.insert(next, RealStats { packets: 99, ..RealStats::default() });
    dp.io_mut().real_active.as_mut().unwrap().insert(next, 3);
    apply(&mut dp, &desired);
    assert_eq!(real_ids(&dp, "10.0.0.1")[&ip("10.1.0.60")], next);
    assert!(!dp.io().real_stats.contains_key(&next));
    assert!(!dp.io().real_active.as_ref().unwrap().contains_key(&next));
}

#[test]
fn service_keys_round_trip() {
    for a in [
        addr("10.0.0.1", 80),
        addr("2001:db8::1", 0),
        ServiceAddr { protocol: Protocol::Udp, ..addr("10.0.0.1", 53) },
    ] {
        assert_eq!(service_addr(&service_key(&a)), Some(a));
    }
    let mut key = service_key(&addr("10.0.0.1", 80));
    key.addr[1] = 1;
    assert_eq!(service_addr(&key), None, "stray bytes after an IPv4 address");
}

#[test]
fn kernel_routes_find_a_source_for_loopback() {
    // No packet is sent; loopback is routable in any namespace that has lo up.
    match KernelRoutes.source_towards(IpAddr::V4(Ipv4Addr::LOCALHOST)) {
        Some(source) => assert!(source.is_loopback(), "{source}"),
        None => eprintln!("skipped: no route to 127.0.0.1 here (lo down?)"),
    }
}

#[test]
fn a_draining_real_added_again_keeps_its_id() {
    let mut dp = fresh();
    let reals = |n: &[&str]| {
        state(vec![service(
            "10.0.0.1",
            Algorithm::RoundRobin,
            &n.iter().map(|a| real(a, 1)).collect::<Vec<_>>(),
        )])
    };
    apply(&mut dp, &reals(&["10.1.0.1", "10.1.0.2"]));
    let id = real_ids(&dp, "10.0.0.1")[&ip("10.1.0.2")];
    let now = std::time::Instant::now();
    let report = dp.apply_at(&reals(&["10.1.0.1"]), now).unwrap();
    assert_eq!(report.reals_removed, 1);
    let report = dp.apply_at(&reals(&["10.1.0.1", "10.1.0.2"]), now).unwrap();
    assert_eq!((report.reals_added, report.reals_removed), (0, 0), "{report:?}");
    assert_eq!(real_ids(&dp, "10.0.0.1")[&ip("10.1.0.2")], id);
    // The sequence of the daemon's reload test.
    for set in
        [&["10.1.0.1", "10.1.0.2", "10.1.0.3"][..], &["10.1.0.1", "10.1.0.3"], &["10.1.0.1", "10.1.0.2"]]
    {
        let report = dp.apply_at(&reals(set), std::time::Instant::now()).unwrap();
        assert_eq!(real_ids(&dp, "10.0.0.1")[&ip("10.1.0.1")], 1, "{report:?}");
        if set.len() == 2 {
            assert_eq!((report.reals_added, report.reals_removed), (0, 1), "{set:?} {report:?}");
        }
    }
    assert_eq!(real_ids(&dp, "10.0.0.1")[&ip("10.1.0.2")], id);
}

/// The XDP program's fast path takes a flow for live while its real server's entry exists:
/// removing a service must clear its reals (sorry server too) in the same apply, after the
/// service itself.
#[test]
fn removing_a_service_clears_its_reals_after_it() {
    let mut dp = fresh();
    let mut desired = everything();
    apply(&mut dp, &desired);
    let gone = entry(&dp, "10.0.0.4");
    let ids: Vec<u32> =
        dp.image.owners.iter().filter(|(_, o)| o.service == gone.id).map(|(&id, _)| id).collect();
    assert_eq!(ids.len(), 3, "two reals and a sorry server");
    desired.services.retain(|s| s.addr != addr("10.0.0.4", 80));
    let (_, writes) = apply(&mut dp, &desired);
    let removed = writes.iter().position(|w| matches!(w, TableWrite::RemoveService { .. })).unwrap();
    for id in ids {
        assert!(!dp.io().reals.contains_key(&id), "real {id} cleared");
        let cleared = writes.iter().position(|w| matches!(w, TableWrite::Real { id: i, .. } if *i == id));
        assert!(cleared.unwrap() > removed, "real {id} cleared after its service");
    }
}
