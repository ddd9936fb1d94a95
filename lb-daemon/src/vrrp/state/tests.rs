//! State machine tests with an injected clock: every transition, the exact timers, and a small
//! simulated LAN on which several instances elect, fail over and preempt.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use super::*;
use crate::test_rng::Rng;
use crate::vrrp::packet::{PseudoHeader, VRRP_MCAST_GROUP_V4};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);

/// The fake clock's epoch: every test time is an offset from it.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn at_ms(ms: u64) -> Instant {
    epoch() + Duration::from_millis(ms)
}

fn at_us(us: u64) -> Instant {
    epoch() + Duration::from_micros(us)
}

fn vrid77() -> Vrid {
    Vrid::new(77).unwrap_or_else(|| unreachable!("77 is not 0"))
}

fn router(host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 77, 0, host))
}

/// v3, IPv4, VRID 77, 1 s, VIP 10.77.0.100, from 10.77.0.`host`.
fn params(priority: u8, host: u8) -> InstanceParams {
    InstanceParams::new(
        vrid77(),
        Version::V3,
        priority,
        Duration::from_secs(1),
        router(host),
        AddressList::V4(vec![VIP]),
    )
}

fn instance(params: InstanceParams) -> Instance {
    Instance::new(params).unwrap_or_else(|e| panic!("valid params refused: {e}"))
}

/// An instance started at `at_ms(0)` (so in BACKUP unless owner).
fn started(params: InstanceParams) -> Instance {
    let mut instance = instance(params);
    let _startup_actions = instance.handle(Event::Startup, at_ms(0));
    instance
}

fn advert(priority: u8) -> VrrpAdvert {
    instance(params(100, 9)).advert(priority)
}

fn receive(instance: &mut Instance, from: u8, advert: &VrrpAdvert, now: Instant) -> Vec<Action> {
    instance.handle(Event::AdvertReceived { from: router(from), advert }, now)
}

fn deadline(instance: &Instance) -> Instant {
    instance.next_deadline().unwrap_or_else(|| panic!("no deadline in {}", instance.state()))
}

fn takeover_actions(priority: u8) -> Vec<Action> {
    vec![
        Action::AddVips,
        Action::SendAdvert { priority },
        Action::SendGratuitous { repeat: 5 },
        Action::Notify(State::Master),
    ]
}

#[test]
fn timer_formulas_match_keepalived() {
    let second = Duration::from_secs(1);
    let tenth = Duration::from_millis(100);
    // README: 3.609 s for priority 100 at 1 s; 0.361 s at 0.1 s; skew 0.609 s / 0.061 s.
    assert_eq!(skew_time(Version::V3, 100, second), Duration::from_micros(609_375));
    // Master_Down_Interval in µs, with the default 3 adverts: README: 3.609 s for priority 100
    // at 1 s, 0.361 s at 0.1 s; priority 150 (startup → MASTER): 3.414 s / 0.341 s; v2: the
    // skew is in seconds whatever the interval (RFC 3768 §6.1).
    let mdi = |version, priority, interval| {
        master_down_interval(version, priority, interval, DOWN_TIMER_ADVERTS).as_micros()
    };
    assert_eq!(
        [
            mdi(Version::V3, 100, second),
            mdi(Version::V3, 100, tenth),
            mdi(Version::V3, 150, second),
            mdi(Version::V3, 150, tenth),
            mdi(Version::V2, 100, second),
            mdi(Version::V2, 100, second * 2),
        ],
        [3_609_375, 360_937, 3_414_062, 341_406, 3_609_375, 6_609_375]
    );
    assert_eq!(skew_time(Version::V3, 100, tenth), Duration::from_micros(60_937));
    // down_timer_adverts 5: five intervals before the skew.
    assert_eq!(master_down_interval(Version::V3, 100, second, 5), Duration::from_micros(5_609_375));
    assert_eq!(skew_time(Version::V3, 100, second * 2), Duration::from_micros(1_218_750));
    // The owner's skew is 1/256 of an interval; priority 1's is 255/256.
    assert_eq!(skew_time(Version::V3, 255, second), Duration::from_micros(3_906));
    assert_eq!(skew_time(Version::V2, 1, second * 10), Duration::from_micros(996_093));
}

#[test]
fn params_are_validated() {
    let refused = |p: InstanceParams| Instance::new(p).err();
    assert_eq!(refused(params(0, 1)), Some(VrrpStateError::ZeroPriority));
    let v3_odd = InstanceParams { advert_interval: Duration::from_millis(15), ..params(100, 1) };
    assert!(matches!(
        refused(v3_odd),
        Some(VrrpStateError::InvalidAdvertInterval { version: Version::V3, .. })
    ));
    let v3_slow = InstanceParams { advert_interval: Duration::from_secs(41), ..params(100, 1) };
    assert!(matches!(refused(v3_slow), Some(VrrpStateError::InvalidAdvertInterval { .. })));
    let v2_fraction = InstanceParams {
        version: Version::V2,
        advert_interval: Duration::from_millis(1500),
        ..params(100, 1)
    };
    assert!(matches!(
        refused(v2_fraction),
        Some(VrrpStateError::InvalidAdvertInterval { version: Version::V2, .. })
    ));
    let v3_auth = InstanceParams { authentication: Authentication::Password(*b"secret77"), ..params(100, 1) };
    assert_eq!(refused(v3_auth), Some(VrrpStateError::AuthenticationWithV3));
    let mixed = InstanceParams { source_address: IpAddr::V6(Ipv6Addr::LOCALHOST), ..params(100, 1) };
    assert!(matches!(refused(mixed), Some(VrrpStateError::FamilyMismatch { .. })));
    let v2_v6 = InstanceParams {
        version: Version::V2,
        source_address: IpAddr::V6(Ipv6Addr::LOCALHOST),
        addresses: AddressList::V6(vec![Ipv6Addr::LOCALHOST]),
        ..params(100, 1)
    };
    assert_eq!(refused(v2_v6), Some(VrrpStateError::V2OverIpv6));
    let many = InstanceParams { addresses: AddressList::V4(vec![VIP; 256]), ..params(100, 1) };
    assert_eq!(refused(many), Some(VrrpStateError::TooManyAddresses { count: 256 }));
    assert_eq!(Authentication::auth_data(b"secret"), *b"secret\0\0");
    assert_eq!(Authentication::auth_data(b"longer than 8"), *b"longer t");
    assert_eq!(format!("{:?}", Authentication::Password(*b"secret77")), "Password(..)");
}

#[test]
fn adverts_built_from_params_match_keepalived_bytes() {
    let pseudo = PseudoHeader::V4 { source: Ipv4Addr::new(10, 77, 0, 1), destination: VRRP_MCAST_GROUP_V4 };
    let v3 = instance(params(150, 1));
    assert_eq!(
        v3.advert(150).encode(&pseudo),
        Ok(vec![0x31, 0x4d, 0x96, 0x01, 0x00, 0x64, 0x42, 0xbf, 0x0a, 0x4d, 0x00, 0x64])
    );
    let v2 = instance(InstanceParams {
        version: Version::V2,
        authentication: Authentication::Password(*b"secret77"),
        ..params(150, 1)
    });
    let mut expected = vec![0x21, 0x4d, 0x96, 0x01, 0x01, 0x01, 0xc9, 0x7b, 0x0a, 0x4d, 0x00, 0x64];
    expected.extend_from_slice(b"secret77");
    assert_eq!(v2.advert(150).encode(&pseudo), Ok(expected));
}

#[test]
fn startup_enters_backup_then_master_after_exactly_master_down_interval() {
    let mut vr = instance(params(100, 2));
    assert_eq!(vr.state(), State::Init);
    assert_eq!(vr.next_deadline(), None);
    let actions = vr.handle(Event::Startup, at_ms(0));
    assert_eq!(actions, [Action::RemoveVips, Action::Notify(State::Backup)]);
    assert_eq!(vr.state(), State::Backup);
    assert_eq!(vr.next_deadline(), Some(at_us(3_609_375)));
    // A timer call before the deadline does nothing.
    assert_eq!(vr.handle(Event::Timer, at_us(3_609_374)), []);
    assert_eq!(vr.state(), State::Backup);
    assert_eq!(vr.handle(Event::Timer, at_us(3_609_375)), takeover_actions(100));
    assert_eq!(vr.state(), State::Master);
    // Then an advert every interval.
    assert_eq!(vr.next_deadline(), Some(at_us(4_609_375)));
    assert_eq!(vr.handle(Event::Timer, at_us(4_609_375)), [Action::SendAdvert { priority: 100 }]);
    assert_eq!(vr.next_deadline(), Some(at_us(5_609_375)));
    // A second Startup is ignored.
    assert_eq!(vr.handle(Event::Startup, at_ms(6000)), []);
}

#[test]
fn state_master_non_owner_still_starts_in_backup() {
    let p = InstanceParams { initial_state: InitialState::Master, preempt: Preempt::Off, ..params(150, 1) };
    let mut vr = instance(p);
    // keepalived clears nopreempt (and preempt_delay) with `state MASTER`.
    assert_eq!(vr.params().preempt, Preempt::On);
    assert_eq!(vr.handle(Event::Startup, at_ms(0)), [Action::RemoveVips, Action::Notify(State::Backup)]);
    assert_eq!(vr.next_deadline(), Some(at_us(3_414_062)), "measured 3.46 s incl. daemon start");
    assert_eq!(vr.handle(Event::Timer, at_us(3_414_062)), takeover_actions(150));
}

#[test]
fn owner_goes_master_at_once_and_never_yields() {
    let p = InstanceParams { preempt: Preempt::Delayed(Duration::from_secs(9)), ..params(255, 1) };
    let mut owner = instance(p);
    assert_eq!(owner.params().preempt, Preempt::On);
    assert_eq!(owner.handle(Event::Startup, at_ms(0)), takeover_actions(255));
    assert_eq!(owner.state(), State::Master);
    assert_eq!(owner.next_deadline(), Some(at_ms(1000)));
    // Tracking weights do not change the owner's priority.
    assert_eq!(owner.handle(Event::PriorityAdjustment(-100), at_ms(10)), []);
    assert_eq!(owner.effective_priority(), 255);
    // A lower priority, even from a higher address, is answered with an advert.
    let actions = receive(&mut owner, 200, &advert(254), at_ms(500));
    assert_eq!(
        actions,
        [
            Action::Discarded(DiscardReason::LowerPriority { priority: 254 }),
            Action::SendAdvert { priority: 255 }
        ]
    );
    assert_eq!(owner.next_deadline(), Some(at_ms(1500)), "advert timer restarted");
    assert_eq!(owner.state(), State::Master);
}

#[test]
fn two_owners_resolve_like_keepalived() {
    let mut owner = started(params(255, 1));
    // Another owner: a configuration error; keepalived drops to 254 and yields.
    let actions = receive(&mut owner, 2, &advert(255), at_ms(100));
    assert_eq!(actions, [Action::RemoveVips, Action::Notify(State::Backup)]);
    assert_eq!(owner.effective_priority(), 254);
    assert_eq!(owner.state(), State::Backup);
}

#[test]
fn backup_failover_is_exactly_master_down_interval_after_the_last_advert() {
    let mut backup = started(params(100, 2));
    for second in 1..=5 {
        assert_eq!(receive(&mut backup, 1, &advert(150), at_ms(second * 1000)), []);
        assert_eq!(backup.next_deadline(), Some(at_us(second * 1_000_000 + 3_609_375)));
    }
    assert_eq!(backup.master(), Some(MasterInfo { address: router(1), priority: 150 }));
    // The master dies silently after its advert at 5 s.
    assert_eq!(backup.handle(Event::Timer, at_us(8_609_374)), []);
    assert_eq!(backup.handle(Event::Timer, at_us(8_609_375)), takeover_actions(100));
    assert_eq!(backup.master(), None);
}

#[test]
fn down_timer_adverts_sets_the_intervals_counted_before_the_skew() {
    // keepalived: ms_down_timer = down_timer_adverts × master_adver_int + skew.
    let p = InstanceParams { down_timer_adverts: 5, ..params(100, 2) };
    let mut backup = started(p);
    assert_eq!(backup.master_down_interval(), Duration::from_micros(5_609_375));
    assert_eq!(backup.next_deadline(), Some(at_us(5_609_375)), "startup waits 5 intervals + skew");
    assert_eq!(receive(&mut backup, 1, &advert(150), at_ms(1000)), []);
    assert_eq!(backup.next_deadline(), Some(at_us(6_609_375)));
    // The master dies after its advert at 1 s: 3 intervals + skew is not enough any more.
    assert_eq!(backup.handle(Event::Timer, at_us(4_609_375)), []);
    assert_eq!(backup.handle(Event::Timer, at_us(6_609_374)), []);
    assert_eq!(backup.handle(Event::Timer, at_us(6_609_375)), takeover_actions(100));
    // With a single advert interval, the timer is one interval + skew, from a v3 master's own
    // (learnt) interval.
    let mut quick = started(InstanceParams { down_timer_adverts: 1, ..params(100, 2) });
    let half = instance(InstanceParams { advert_interval: Duration::from_millis(500), ..params(100, 9) });
    assert_eq!(receive(&mut quick, 1, &half.advert(150), at_ms(100)), []);
    assert_eq!(quick.master_down_interval(), Duration::from_micros(500_000 + 304_687));
    assert_eq!(quick.next_deadline(), Some(at_us(100_000 + 804_687)));
}

#[test]
fn a_master_down_timer_handled_late_waits_one_more_interval_once() {
    let mut backup = started(params(100, 2));
    receive(&mut backup, 1, &advert(150), at_ms(1000));
    assert_eq!(deadline(&backup), at_us(4_609_375));
    // Handled 0.9 ms late (timer jitter): an ordinary takeover.
    let mut on_time = backup.clone();
    assert_eq!(on_time.handle(Event::Timer, at_us(4_610_275)), takeover_actions(100));
    // Handled 1 ms late (STALL): the daemon did not run; STALL_WAIT more for the master's
    // advert, from when it was handled.
    let mut stalled = backup.clone();
    assert_eq!(stalled.handle(Event::Timer, at_us(4_610_375)), []);
    assert_eq!(stalled.state(), State::Backup);
    assert_eq!(deadline(&stalled), at_us(4_615_375));
    // Nothing came: it takes over then.
    assert_eq!(stalled.handle(Event::Timer, at_us(4_615_375)), takeover_actions(100));
    // Handled 0.5 s late: the same.
    assert_eq!(backup.handle(Event::Timer, at_us(5_109_375)), []);
    assert_eq!(backup.state(), State::Backup);
    assert_eq!(deadline(&backup), at_us(5_114_375));
    // The advert arrives: the timer starts afresh, and so does the grace.
    receive(&mut backup, 1, &advert(150), at_ms(5200));
    assert_eq!(deadline(&backup), at_us(8_809_375));
    assert_eq!(backup.handle(Event::Timer, at_ms(9500)), []);
    // Without an advert the grace is not given twice, however late the timer is handled.
    assert_eq!(backup.handle(Event::Timer, at_ms(12_000)), takeover_actions(100));
}

#[test]
fn priority_zero_advert_means_takeover_after_skew_time() {
    let mut backup = started(params(100, 2));
    receive(&mut backup, 1, &advert(150), at_ms(1000));
    assert_eq!(receive(&mut backup, 1, &advert(0), at_ms(1500)), []);
    // README: 0.611–0.613 s measured; the formula gives 0.609375 s.
    assert_eq!(backup.next_deadline(), Some(at_us(1_500_000 + 609_375)));
    assert_eq!(backup.handle(Event::Timer, at_us(2_109_375)), takeover_actions(100));
}

#[test]
fn skew_time_after_priority_zero_handled_late_takes_over_at_once() {
    // The stall grace waits for a master that may still be alive; one that sent priority 0
    // said it is leaving, so a late Skew_Time timer (a loaded machine) takes over when handled.
    let mut backup = started(params(100, 2));
    receive(&mut backup, 1, &advert(150), at_ms(1000));
    receive(&mut backup, 1, &advert(0), at_ms(1500));
    assert_eq!(deadline(&backup), at_us(2_109_375));
    let mut late = backup.clone();
    assert_eq!(late.handle(Event::Timer, at_us(2_109_375 + 2_000)), takeover_actions(100));
    assert_eq!(backup.handle(Event::Timer, at_us(2_109_375 + 500_000)), takeover_actions(100));
    // An ordinary advert after it restores the grace for the next Master_Down_Timer.
    let mut resumed = started(params(100, 2));
    receive(&mut resumed, 1, &advert(0), at_ms(1500));
    receive(&mut resumed, 1, &advert(150), at_ms(1600));
    assert_eq!(resumed.handle(Event::Timer, at_us(1_600_000 + 3_609_375 + 2_000)), []);
}

#[test]
fn master_answers_priority_zero_at_once() {
    let mut master = started(params(255, 1));
    assert_eq!(receive(&mut master, 2, &advert(0), at_ms(300)), [Action::SendAdvert { priority: 255 }]);
    assert_eq!(master.next_deadline(), Some(at_ms(1300)));
}

#[test]
fn backup_with_preempt_ignores_a_lower_master_and_takes_over() {
    let mut backup = started(params(150, 2));
    let mdi = backup.master_down_interval();
    for ms in [500, 1500, 2500, 3000] {
        assert_eq!(
            receive(&mut backup, 1, &advert(100), at_ms(ms)),
            [Action::Discarded(DiscardReason::LowerPriority { priority: 100 })]
        );
    }
    // The timer started at startup was never reset.
    assert_eq!(backup.next_deadline(), Some(epoch() + mdi));
    assert_eq!(backup.handle(Event::Timer, epoch() + mdi), takeover_actions(150));
}

#[test]
fn nopreempt_backup_follows_a_lower_master() {
    let mut backup = started(InstanceParams { preempt: Preempt::Off, ..params(150, 2) });
    for second in 1..=30 {
        assert_eq!(receive(&mut backup, 1, &advert(100), at_ms(second * 1000)), []);
        assert_eq!(backup.handle(Event::Timer, at_ms(second * 1000 + 999)), []);
    }
    assert_eq!(backup.state(), State::Backup);
}

#[test]
fn preempt_delay_accepts_a_lower_master_until_the_delay_is_over() {
    let delay = Duration::from_secs(5);
    let mut backup = started(InstanceParams { preempt: Preempt::Delayed(delay), ..params(150, 2) });
    let mdi = backup.master_down_interval();
    // The delay starts with the first lower-priority advert, at 1 s: until 6 s.
    let mut last_accepted = 0;
    for second in 1..=10 {
        let actions = receive(&mut backup, 1, &advert(100), at_ms(second * 1000));
        if second < 6 {
            assert_eq!(actions, [], "accepted at {second} s");
            last_accepted = second;
        } else {
            assert_eq!(
                actions,
                [Action::Discarded(DiscardReason::LowerPriority { priority: 100 })],
                "{second} s"
            );
        }
        if backup.next_deadline().is_some_and(|d| d <= at_ms(second * 1000 + 999)) {
            break;
        }
    }
    assert_eq!(last_accepted, 5);
    assert_eq!(backup.next_deadline(), Some(at_ms(5000) + mdi));
    assert_eq!(backup.handle(Event::Timer, at_ms(5000) + mdi), takeover_actions(150));

    // A higher-priority advert cancels a running delay.
    let mut other = started(InstanceParams { preempt: Preempt::Delayed(delay), ..params(150, 2) });
    receive(&mut other, 1, &advert(100), at_ms(1000));
    receive(&mut other, 3, &advert(200), at_ms(1500));
    assert_eq!(receive(&mut other, 1, &advert(100), at_ms(7000)), [], "delay restarted by this advert");
    assert_eq!(
        receive(&mut other, 1, &advert(100), at_ms(12_000)),
        [Action::Discarded(DiscardReason::LowerPriority { priority: 100 })]
    );
}

#[test]
fn equal_priority_masters_break_the_tie_by_address() {
    let mut low = started(params(100, 1));
    let mut high = started(params(100, 2));
    let mdi = low.master_down_interval();
    assert_eq!(low.handle(Event::Timer, epoch() + mdi), takeover_actions(100));
    assert_eq!(high.handle(Event::Timer, epoch() + mdi), takeover_actions(100));
    let t = epoch() + mdi + Duration::from_millis(1);
    // The higher address stays master and answers (RFC 5798 §6.4.3).
    assert_eq!(
        receive(&mut high, 1, &low.advert(100), t),
        [
            Action::Discarded(DiscardReason::LowerPriority { priority: 100 }),
            Action::SendAdvert { priority: 100 }
        ]
    );
    assert_eq!(high.state(), State::Master);
    // The lower address yields.
    assert_eq!(
        receive(&mut low, 2, &high.advert(100), t),
        [Action::RemoveVips, Action::Notify(State::Backup)]
    );
    assert_eq!(low.state(), State::Backup);
    assert_eq!(low.master(), Some(MasterInfo { address: router(2), priority: 100 }));
    // A backup accepts an equal priority from any address (no tie-break in BACKUP).
    assert_eq!(receive(&mut low, 0, &advert(100), t), []);
    // An advert with our own address and priority is ignored.
    assert_eq!(receive(&mut high, 2, &advert(100), t), [Action::Discarded(DiscardReason::OwnAddress)]);
}

#[test]
fn master_yields_to_a_higher_priority_and_learns_its_interval() {
    let mut vr = started(params(150, 2));
    assert_eq!(vr.handle(Event::Timer, deadline(&vr)), takeover_actions(150));
    assert_eq!(vr.state(), State::Master);
    let now = deadline(&vr);
    let fast = instance(InstanceParams { advert_interval: Duration::from_millis(100), ..params(200, 3) });
    assert_eq!(
        receive(&mut vr, 3, &fast.advert(200), now),
        [Action::RemoveVips, Action::Notify(State::Backup)]
    );
    assert_eq!(vr.master(), Some(MasterInfo { address: router(3), priority: 200 }));
    assert_eq!(vr.master_adver_interval(), Duration::from_millis(100));
    assert_eq!(
        vr.next_deadline(),
        Some(now + master_down_interval(Version::V3, 150, Duration::from_millis(100), DOWN_TIMER_ADVERTS))
    );
}

#[test]
fn v3_backup_learns_the_master_interval_and_forgets_it_as_master() {
    let mut backup = started(params(100, 2));
    let fast = instance(InstanceParams { advert_interval: Duration::from_millis(100), ..params(150, 1) });
    assert_eq!(receive(&mut backup, 1, &fast.advert(150), at_ms(1000)), []);
    assert_eq!(backup.master_adver_interval(), Duration::from_millis(100));
    assert_eq!(backup.next_deadline(), Some(at_us(1_000_000 + 360_937)));
    // Takeover after the learnt interval's Master_Down_Interval, then our own 1 s interval.
    assert_eq!(backup.handle(Event::Timer, at_us(1_360_937)), takeover_actions(100));
    assert_eq!(backup.master_adver_interval(), Duration::from_secs(1));
    assert_eq!(backup.next_deadline(), Some(at_us(2_360_937)));
    assert_eq!(backup.advert(100).adver_interval(), Duration::from_secs(1));
}

#[test]
fn v2_checks_interval_and_authentication() {
    let v2 = |auth: Authentication, interval: u64, host: u8| InstanceParams {
        version: Version::V2,
        authentication: auth,
        advert_interval: Duration::from_secs(interval),
        ..params(100, host)
    };
    let password = Authentication::Password(*b"secret77");
    let mut backup = started(v2(password.clone(), 1, 2));
    let good = instance(v2(password.clone(), 1, 1)).advert(150);
    assert_eq!(receive(&mut backup, 1, &good, at_ms(1000)), []);
    let deadline_after_good = deadline(&backup);
    let wrong_password = instance(v2(Authentication::Password(*b"secret78"), 1, 1)).advert(150);
    assert_eq!(
        receive(&mut backup, 1, &wrong_password, at_ms(1500)),
        [Action::Discarded(DiscardReason::AuthFailure)]
    );
    let no_auth = instance(v2(Authentication::None, 1, 1)).advert(150);
    assert_eq!(
        receive(&mut backup, 1, &no_auth, at_ms(1500)),
        [Action::Discarded(DiscardReason::AuthTypeMismatch { received: AuthType::None })]
    );
    let slow = instance(v2(password, 2, 1)).advert(150);
    assert_eq!(
        receive(&mut backup, 1, &slow, at_ms(1500)),
        [Action::Discarded(DiscardReason::IntervalMismatch { received: Duration::from_secs(2) })]
    );
    assert_eq!(deadline(&backup), deadline_after_good, "discarded adverts do not reset the timer");
    assert_eq!(backup.master_adver_interval(), Duration::from_secs(1));
    // A v3 advert at a v2 instance.
    assert_eq!(
        receive(&mut backup, 1, &advert(150), at_ms(1500)),
        [Action::Discarded(DiscardReason::VersionMismatch { received: Version::V3 })]
    );
}

#[test]
fn other_vrid_family_or_addresses_are_discarded() {
    let mut backup = started(params(100, 2));
    let other_vrid = VrrpAdvert { vrid: Vrid::new(78).unwrap_or_else(|| unreachable!()), ..advert(150) };
    assert_eq!(
        receive(&mut backup, 1, &other_vrid, at_ms(10)),
        [Action::Discarded(DiscardReason::VridMismatch { received: other_vrid.vrid })]
    );
    let other_vip =
        VrrpAdvert { addresses: AddressList::V4(vec![Ipv4Addr::new(10, 77, 0, 101)]), ..advert(150) };
    assert_eq!(
        receive(&mut backup, 1, &other_vip, at_ms(10)),
        [Action::Discarded(DiscardReason::AddressListMismatch)]
    );
    let extra_vip = VrrpAdvert { addresses: AddressList::V4(vec![VIP, VIP]), ..advert(150) };
    assert_eq!(
        receive(&mut backup, 1, &extra_vip, at_ms(10)),
        [Action::Discarded(DiscardReason::AddressListMismatch)]
    );
    let v6 = VrrpAdvert { addresses: AddressList::V6(vec![Ipv6Addr::LOCALHOST]), ..advert(150) };
    assert_eq!(
        backup
            .handle(Event::AdvertReceived { from: IpAddr::V6(Ipv6Addr::LOCALHOST), advert: &v6 }, at_ms(10)),
        [Action::Discarded(DiscardReason::FamilyMismatch)]
    );
    assert_eq!(backup.next_deadline(), Some(at_us(3_609_375)), "nothing reset the timer");

    // vrrp_skip_check_adv_addr: only a new master's address list is checked.
    let mut skipping = started(InstanceParams { skip_check_adv_addr: true, ..params(100, 2) });
    assert_eq!(
        receive(&mut skipping, 1, &other_vip, at_ms(10)),
        [Action::Discarded(DiscardReason::AddressListMismatch)]
    );
    assert_eq!(receive(&mut skipping, 1, &advert(150), at_ms(20)), []);
    assert_eq!(receive(&mut skipping, 1, &other_vip, at_ms(30)), [], "same master: not checked");
    assert_eq!(
        receive(&mut skipping, 1, &extra_vip, at_ms(35)),
        [Action::Discarded(DiscardReason::AddressListMismatch)],
        "the count is always checked"
    );
    assert_eq!(
        receive(&mut skipping, 3, &other_vip, at_ms(40)),
        [Action::Discarded(DiscardReason::AddressListMismatch)]
    );
}

#[test]
fn lower_prio_no_advert_keeps_the_master_quiet() {
    let mut quiet = started(InstanceParams { lower_prio_no_advert: true, ..params(255, 1) });
    assert_eq!(
        receive(&mut quiet, 2, &advert(100), at_ms(400)),
        [Action::Discarded(DiscardReason::LowerPriority { priority: 100 })]
    );
    assert_eq!(quiet.next_deadline(), Some(at_ms(1000)), "advert timer not restarted");
    let mut talkative = started(params(255, 1));
    assert_eq!(
        receive(&mut talkative, 2, &advert(100), at_ms(400)),
        [
            Action::Discarded(DiscardReason::LowerPriority { priority: 100 }),
            Action::SendAdvert { priority: 255 }
        ]
    );
    let mut garp = started(InstanceParams { garp_lower_prio_repeat: 2, ..params(255, 1) });
    assert_eq!(
        receive(&mut garp, 2, &advert(100), at_ms(400)).last(),
        Some(&Action::SendGratuitous { repeat: 2 })
    );
}

#[test]
fn garp_lower_prio_delay_sends_a_second_burst_while_master() {
    let p = InstanceParams {
        garp_lower_prio_repeat: 3,
        garp_lower_prio_delay: Some(Duration::from_secs(2)),
        garp_master_delay: None,
        ..params(255, 1)
    };
    let mut vr = started(p.clone());
    let heard = at_ms(400);
    assert_eq!(receive(&mut vr, 2, &advert(100), heard).last(), Some(&Action::SendGratuitous { repeat: 3 }));
    // A second lower-priority advert before the delay runs out does not push the burst back.
    assert_eq!(
        receive(&mut vr, 2, &advert(100), at_ms(900)).last(),
        Some(&Action::SendGratuitous { repeat: 3 })
    );
    let second = heard + Duration::from_secs(2);
    let mut sent = Vec::new();
    let mut now = deadline(&vr);
    while now <= second + Duration::from_secs(1) {
        let actions = vr.handle(Event::Timer, now);
        if actions.contains(&Action::SendGratuitous { repeat: 3 }) {
            sent.push(now);
        }
        now = vr.next_deadline().unwrap_or(now + Duration::from_secs(10));
    }
    assert_eq!(sent, [second], "one second burst, garp_lower_prio_delay after the first");

    // Yielding to a higher priority cancels a pending burst.
    let mut yielding = started(InstanceParams { priority: 150, ..p });
    let _ = yielding.handle(Event::Timer, deadline(&yielding));
    assert_eq!(yielding.state(), State::Master);
    let heard = deadline(&yielding);
    let _ = receive(&mut yielding, 2, &advert(100), heard);
    let _ = receive(&mut yielding, 3, &advert(200), heard + Duration::from_millis(100));
    assert_eq!(yielding.state(), State::Backup);
    let due = heard + Duration::from_secs(2);
    assert!(!yielding.handle(Event::Timer, due).contains(&Action::SendGratuitous { repeat: 3 }));
}

#[test]
fn higher_prio_send_advert_answers_before_yielding() {
    let mut master = started(InstanceParams { higher_prio_send_advert: true, ..params(150, 1) });
    assert_eq!(master.handle(Event::Timer, deadline(&master)), takeover_actions(150));
    let now = deadline(&master);
    assert_eq!(
        receive(&mut master, 2, &advert(200), now),
        [Action::SendAdvert { priority: 150 }, Action::RemoveVips, Action::Notify(State::Backup)]
    );
}

#[test]
fn fault_enter_and_leave() {
    // MASTER → FAULT: priority 0, VIPs removed, notify; no timers; adverts ignored.
    let mut vr = started(params(255, 1));
    assert_eq!(
        vr.handle(Event::Fault(true), at_ms(100)),
        [Action::SendAdvert { priority: 0 }, Action::RemoveVips, Action::Notify(State::Fault)]
    );
    assert_eq!(vr.state(), State::Fault);
    assert_eq!(vr.next_deadline(), None);
    assert_eq!(vr.handle(Event::Fault(true), at_ms(150)), [], "already down");
    assert_eq!(
        receive(&mut vr, 2, &advert(100), at_ms(200)),
        [Action::Discarded(DiscardReason::NotListening { state: State::Fault })]
    );
    assert_eq!(vr.handle(Event::Timer, at_ms(5000)), []);
    // The owner comes back as master at once.
    assert_eq!(vr.handle(Event::Fault(false), at_ms(6000)), takeover_actions(255));

    // BACKUP → FAULT → BACKUP with the configured interval and a fresh Master_Down_Interval
    // (README: link up → MASTER 3.418 s later).
    let mut backup = started(params(150, 2));
    let fast = instance(InstanceParams { advert_interval: Duration::from_millis(100), ..params(200, 1) });
    receive(&mut backup, 1, &fast.advert(200), at_ms(100));
    assert_eq!(backup.handle(Event::Fault(true), at_ms(200)), [Action::Notify(State::Fault)]);
    assert_eq!(backup.handle(Event::Fault(false), at_ms(1000)), [Action::Notify(State::Backup)]);
    assert_eq!(backup.master_adver_interval(), Duration::from_secs(1));
    assert_eq!(backup.next_deadline(), Some(at_us(1_000_000 + 3_414_062)));
}

#[test]
fn fault_before_startup_starts_in_fault() {
    let mut vr = instance(params(100, 2));
    assert_eq!(vr.handle(Event::Fault(true), at_ms(0)), []);
    assert_eq!(vr.state(), State::Init);
    assert_eq!(vr.handle(Event::Startup, at_ms(0)), [Action::RemoveVips, Action::Notify(State::Fault)]);
    assert_eq!(vr.state(), State::Fault);
    assert_eq!(vr.handle(Event::Fault(false), at_ms(10)), [Action::Notify(State::Backup)]);
}

#[test]
fn shutdown_from_each_state() {
    let mut master = started(params(255, 1));
    assert_eq!(
        master.handle(Event::Shutdown, at_ms(500)),
        [Action::SendAdvert { priority: 0 }, Action::RemoveVips, Action::Notify(State::Stop)]
    );
    assert_eq!((master.state(), master.next_deadline()), (State::Stop, None));
    assert_eq!(master.handle(Event::Shutdown, at_ms(600)), [], "already stopped");
    // It can be started again.
    assert_eq!(master.handle(Event::Startup, at_ms(700)), takeover_actions(255));

    let mut backup = started(params(100, 2));
    assert_eq!(backup.handle(Event::Shutdown, at_ms(500)), [Action::Notify(State::Stop)]);
    let mut fault = started(params(100, 2));
    assert_eq!(fault.handle(Event::Fault(true), at_ms(100)), [Action::Notify(State::Fault)]);
    assert_eq!(fault.handle(Event::Shutdown, at_ms(500)), [Action::Notify(State::Stop)]);
    let mut init = instance(params(100, 2));
    assert_eq!(init.handle(Event::Shutdown, at_ms(500)), []);
    assert_eq!(
        receive(&mut init, 1, &advert(150), at_ms(600)),
        [Action::Discarded(DiscardReason::NotListening { state: State::Init })]
    );
}

#[test]
fn tracking_weights_change_priority_and_move_the_down_timer() {
    let mut backup = started(params(100, 2));
    receive(&mut backup, 1, &advert(150), at_ms(1000));
    assert_eq!(backup.next_deadline(), Some(at_us(1_000_000 + 3_609_375)));
    assert_eq!(backup.handle(Event::PriorityAdjustment(-60), at_ms(1200)), []);
    assert_eq!(backup.effective_priority(), 40);
    // Skew grows from 156/256 to 216/256 s; the running timer moves by the difference.
    assert_eq!(backup.next_deadline(), Some(at_us(1_000_000 + 3_843_750)));
    assert_eq!(backup.handle(Event::PriorityAdjustment(-500), at_ms(1300)), []);
    assert_eq!(backup.effective_priority(), 1);
    assert_eq!(backup.handle(Event::PriorityAdjustment(500), at_ms(1400)), []);
    assert_eq!(backup.effective_priority(), 254);
    assert_eq!(backup.handle(Event::PriorityAdjustment(0), at_ms(1500)), []);
    assert_eq!(backup.next_deadline(), Some(at_us(1_000_000 + 3_609_375)));

    // A master advertises its new priority from the next advert on.
    let mut master = started(params(150, 1));
    assert_eq!(master.handle(Event::Timer, deadline(&master)), takeover_actions(150));
    assert_eq!(master.handle(Event::PriorityAdjustment(-60), at_ms(4000)), []);
    assert_eq!(master.handle(Event::Timer, deadline(&master)), [Action::SendAdvert { priority: 90 }]);
}

#[test]
fn sync_hold_keeps_a_member_in_backup_until_its_group_agrees() {
    let mut vr = started(params(150, 1));
    let due = deadline(&vr);
    assert!(!vr.master_down_due(at_ms(0)));
    assert!(vr.master_down_due(due));
    assert_eq!(vr.handle(Event::SyncHold, due), []);
    assert_eq!(vr.state(), State::Backup);
    assert!(vr.wants_master());
    assert_eq!(deadline(&vr), due + vr.master_down_interval());
    // Hearing a master again: it no longer wants to take over.
    let _ = receive(&mut vr, 9, &advert(200), due + Duration::from_millis(10));
    assert!(!vr.wants_master());
    // SyncHold means nothing outside BACKUP.
    let mut master = started(params(150, 1));
    let _ = master.handle(Event::Timer, deadline(&master));
    assert_eq!(master.handle(Event::SyncHold, at_ms(5_000)), []);
    assert_eq!(master.state(), State::Master);
}

#[test]
fn sync_master_and_sync_backup_move_a_member_with_its_group() {
    let mut vr = started(params(100, 1));
    assert_eq!(vr.handle(Event::SyncMaster, at_ms(100)), takeover_actions(100));
    assert_eq!(vr.state(), State::Master);
    assert_eq!(vr.handle(Event::SyncMaster, at_ms(200)), [], "already MASTER");
    assert_eq!(vr.handle(Event::SyncBackup, at_ms(300)), [Action::RemoveVips, Action::Notify(State::Backup)]);
    assert_eq!(vr.state(), State::Backup);
    assert_eq!(deadline(&vr), at_ms(300) + vr.master_down_interval());
    assert_eq!(vr.handle(Event::SyncBackup, at_ms(400)), [], "already BACKUP");
    let mut faulted = started(params(100, 1));
    let _ = faulted.handle(Event::Fault(true), at_ms(10));
    assert_eq!(faulted.handle(Event::SyncMaster, at_ms(20)), [], "a FAULT member stays in FAULT");
}

#[test]
fn gratuitous_bursts_follow_keepalived_timing() {
    let refresh = Duration::from_secs(3);
    let mut master = started(InstanceParams { garp_master_refresh: Some(refresh), ..params(255, 1) });
    let mut sent = Vec::new();
    while let Some(at) = master.next_deadline().filter(|&at| at <= at_ms(7000)) {
        for action in master.handle(Event::Timer, at) {
            if let Action::SendGratuitous { repeat } = action {
                sent.push((at.duration_since(epoch()).as_millis(), repeat));
            }
        }
    }
    // 5 at takeover (in the startup actions), 5 more after 5 s, one refresh every 3 s.
    assert_eq!(sent, [(3000, 1), (5000, 5), (6000, 1)]);
    // Leaving MASTER cancels the pending second burst.
    let mut vr = started(params(150, 2));
    let became_master = deadline(&vr);
    assert_eq!(vr.handle(Event::Timer, became_master), takeover_actions(150));
    receive(&mut vr, 1, &advert(200), became_master);
    for second in 4..20 {
        receive(&mut vr, 1, &advert(200), at_ms(second * 1000));
        if vr.next_deadline().is_some_and(|at| at <= at_ms(second * 1000 + 999)) {
            let actions = vr.handle(Event::Timer, at_ms(second * 1000 + 999));
            panic!("backup fired a timer at {second} s: {actions:?}");
        }
    }
    assert_eq!(vr.state(), State::Backup);
}

/// A LAN on which adverts arrive at once: the socket layer reduced to a loop.
struct Lan {
    routers: Vec<Router>,
}

struct Router {
    instance: Instance,
    address: IpAddr,
    running: bool,
    holds_vips: bool,
    /// When it last became master.
    became_master: Option<Instant>,
}

impl Lan {
    fn new(params: Vec<InstanceParams>) -> Self {
        let routers = params
            .into_iter()
            .map(|p| Router {
                address: p.source_address,
                instance: instance(p),
                running: false,
                holds_vips: false,
                became_master: None,
            })
            .collect();
        Lan { routers }
    }

    fn event(&mut self, index: usize, event: Event<'_>, now: Instant) {
        let Some(router) = self.routers.get_mut(index) else { return };
        let actions = router.instance.handle(event, now);
        self.apply(index, actions, now);
    }

    fn start(&mut self, index: usize, now: Instant) {
        if let Some(router) = self.routers.get_mut(index) {
            router.running = true;
        }
        self.event(index, Event::Startup, now);
    }

    /// kill -9: nothing sent, VIPs left behind (but no longer counted: the host is gone). A
    /// restart is a new process, hence a new instance.
    fn kill(&mut self, index: usize) {
        if let Some(router) = self.routers.get_mut(index) {
            router.running = false;
            router.holds_vips = false;
            router.instance = instance(router.instance.params().clone());
        }
    }

    fn apply(&mut self, index: usize, actions: Vec<Action>, now: Instant) {
        let mut queue: std::collections::VecDeque<(usize, Vec<Action>)> = [(index, actions)].into();
        while let Some((index, actions)) = queue.pop_front() {
            for action in actions {
                let Some(router) = self.routers.get_mut(index) else { continue };
                match action {
                    Action::AddVips => {
                        assert!(!router.holds_vips, "AddVips twice");
                        router.holds_vips = true;
                        router.became_master = Some(now);
                    }
                    Action::RemoveVips => router.holds_vips = false,
                    Action::SendAdvert { priority } => {
                        if !router.running {
                            continue;
                        }
                        let advert = router.instance.advert(priority);
                        let from = router.address;
                        for (other, peer) in self.routers.iter_mut().enumerate() {
                            if other != index && peer.running {
                                let event = Event::AdvertReceived { from, advert: &advert };
                                queue.push_back((other, peer.instance.handle(event, now)));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        let holders = self.routers.iter().filter(|r| r.running && r.holds_vips).count();
        assert!(holders <= 1, "{holders} routers hold the VIP at {:?}", now.duration_since(epoch()));
    }

    /// Runs every timer up to `end`.
    fn run_until(&mut self, end: Instant) {
        loop {
            let next = self
                .routers
                .iter()
                .enumerate()
                .filter(|(_, r)| r.running)
                .filter_map(|(i, r)| r.instance.next_deadline().map(|at| (at, i)))
                .min();
            match next {
                Some((at, index)) if at <= end => self.event(index, Event::Timer, at),
                _ => return,
            }
        }
    }

    fn masters(&self) -> Vec<usize> {
        (0..self.routers.len())
            .filter(|&i| {
                self.routers.get(i).is_some_and(|r| r.running && r.instance.state() == State::Master)
            })
            .collect()
    }

    fn became_master(&self, index: usize) -> Option<Instant> {
        self.routers.get(index).and_then(|r| r.became_master)
    }
}

#[test]
fn lan_election_by_priority() {
    let mut lan = Lan::new(vec![params(100, 1), params(150, 2), params(50, 3)]);
    for index in 0..3 {
        lan.start(index, at_ms(0));
    }
    lan.run_until(at_ms(30_000));
    assert_eq!(lan.masters(), [1]);
    // The highest priority has the shortest Master_Down_Interval: 3.414 s.
    assert_eq!(lan.became_master(1), Some(at_us(3_414_062)));
    assert_eq!(lan.became_master(0), None);
}

#[test]
fn lan_failover_on_kill_and_on_shutdown() {
    let mut lan = Lan::new(vec![params(150, 1), params(100, 2)]);
    lan.start(0, at_ms(0));
    lan.start(1, at_ms(0));
    lan.run_until(at_ms(10_000));
    assert_eq!(lan.masters(), [0]);
    // Adverts at 3.414062 + k s; the last before 10 s is at 9.414062 s.
    lan.kill(0);
    lan.run_until(at_ms(20_000));
    assert_eq!(lan.masters(), [1]);
    assert_eq!(lan.became_master(1), Some(at_us(9_414_062 + 3_609_375)));

    // vr1 restarts and preempts after its own Master_Down_Interval, then shuts down cleanly.
    lan.start(0, at_ms(20_000));
    lan.run_until(at_ms(30_000));
    assert_eq!(lan.masters(), [0]);
    assert_eq!(lan.became_master(0), Some(at_us(20_000_000 + 3_414_062)));
    lan.event(0, Event::Shutdown, at_ms(30_000));
    lan.run_until(at_ms(40_000));
    assert_eq!(lan.masters(), [1]);
    assert_eq!(lan.became_master(1), Some(at_us(30_000_000 + 609_375)));
}

#[test]
fn lan_tracking_weight_moves_mastership() {
    let mut lan = Lan::new(vec![params(150, 1), params(100, 2)]);
    lan.start(0, at_ms(0));
    lan.start(1, at_ms(0));
    lan.run_until(at_ms(10_000));
    assert_eq!(lan.masters(), [0]);
    // A track_script with weight -60 fails on the master: 90 < 100, the backup preempts once its
    // down timer, last reset by the 150 advert at 9.414 s, runs out.
    lan.event(0, Event::PriorityAdjustment(-60), at_ms(10_000));
    lan.run_until(at_ms(20_000));
    assert_eq!(lan.masters(), [1]);
    assert_eq!(lan.became_master(1), Some(at_us(9_414_062 + 3_609_375)));
    // Fault on the new master: it sends priority 0 and the old one returns after Skew_Time.
    lan.event(1, Event::Fault(true), at_ms(20_000));
    lan.run_until(at_ms(25_000));
    assert_eq!(lan.masters(), [0]);
    let skew_90 = skew_time(Version::V3, 90, Duration::from_secs(1));
    assert_eq!(lan.became_master(0), Some(at_ms(20_000) + skew_90));
}

#[test]
fn lan_v3_fast_adverts() {
    let fast = |priority, host| InstanceParams {
        advert_interval: Duration::from_millis(100),
        ..params(priority, host)
    };
    let mut lan = Lan::new(vec![fast(150, 1), fast(100, 2)]);
    lan.start(0, at_ms(0));
    lan.start(1, at_ms(0));
    lan.run_until(at_ms(2_000));
    assert_eq!(lan.became_master(0), Some(at_us(341_406)));
    lan.kill(0);
    lan.run_until(at_ms(5_000));
    // The last advert was at 0.341406 + 16 × 0.1 = 1.941406 s; README measured 0.361 s after it.
    assert_eq!(lan.became_master(1), Some(at_us(1_941_406 + 360_937)));
}

#[test]
fn random_lans_elect_the_highest_priority() {
    let mut rng = Rng(0x1bd_7a11);
    for _ in 0..200 {
        let count = 2 + rng.below(3) as usize;
        let mut priorities: Vec<u8> = Vec::new();
        while priorities.len() < count {
            let priority = 1 + rng.below(254) as u8;
            if !priorities.contains(&priority) {
                priorities.push(priority);
            }
        }
        let interval = Duration::from_millis(10 * (1 + rng.below(100)));
        let params: Vec<_> = priorities
            .iter()
            .enumerate()
            .map(|(i, &p)| InstanceParams { advert_interval: interval, ..params(p, i as u8 + 1) })
            .collect();
        let mut lan = Lan::new(params);
        let mut starts: Vec<usize> = (0..count).collect();
        starts.sort_by_key(|_| rng.next());
        for (n, index) in starts.into_iter().enumerate() {
            lan.start(index, epoch() + interval * (n as u32) * rng.below(5) as u32);
        }
        lan.run_until(epoch() + interval * 200);
        let best = priorities.iter().enumerate().max_by_key(|(_, p)| **p).map(|(i, _)| i);
        assert_eq!(lan.masters(), best.into_iter().collect::<Vec<_>>(), "priorities {priorities:?}");
    }
}

#[test]
fn random_events_keep_the_invariants() {
    let mut rng = Rng(0xfeed_beef);
    for round in 0..300 {
        let p = InstanceParams {
            preempt: match rng.below(3) {
                0 => Preempt::Off,
                1 => Preempt::On,
                _ => Preempt::Delayed(Duration::from_millis(rng.below(5000))),
            },
            lower_prio_no_advert: rng.below(2) == 0,
            higher_prio_send_advert: rng.below(2) == 0,
            skip_check_adv_addr: rng.below(2) == 0,
            garp_master_refresh: (rng.below(2) == 0).then(|| Duration::from_millis(1 + rng.below(3000))),
            ..params(1 + rng.below(255) as u8, 2)
        };
        let mut vr = instance(p);
        let mut now = epoch();
        let mut holds = false;
        for _ in 0..200 {
            now += Duration::from_millis(rng.below(1500));
            let other = advert(rng.below(256) as u8);
            let event = match rng.below(8) {
                0 => Event::Startup,
                1 => Event::Shutdown,
                2 => Event::Fault(rng.below(2) == 0),
                3 => Event::PriorityAdjustment(rng.below(600) as i32 - 300),
                4 | 5 => Event::AdvertReceived { from: router(rng.below(4) as u8), advert: &other },
                _ => {
                    if let Some(at) = vr.next_deadline() {
                        now = now.max(at);
                    }
                    Event::Timer
                }
            };
            let before = vr.state();
            let priority_before = vr.effective_priority();
            for action in vr.handle(event, now) {
                match action {
                    Action::AddVips => {
                        assert!(!holds, "round {round}: AddVips while holding");
                        holds = true;
                    }
                    Action::RemoveVips => holds = false,
                    Action::SendAdvert { priority: 0 } => assert_eq!(before, State::Master, "round {round}"),
                    Action::SendAdvert { priority } => assert!(
                        [priority_before, vr.effective_priority()].contains(&priority),
                        "round {round}: advertised {priority}"
                    ),
                    _ => {}
                }
            }
            let state = vr.state();
            assert_eq!(holds, state == State::Master, "round {round}: VIPs held iff MASTER ({state})");
            assert_eq!(
                vr.next_deadline().is_some(),
                matches!(state, State::Backup | State::Master),
                "round {round}: timers only in BACKUP and MASTER"
            );
            assert!((1..=255).contains(&vr.effective_priority()));
            if let Some(at) = vr.next_deadline()
                && state == State::Backup
            {
                assert!(at <= now + vr.master_down_interval(), "round {round}: down timer beyond MDI");
            }
        }
    }
}

#[test]
fn a_startup_hold_runs_the_master_down_timer_from_its_end_owner_included() {
    // vrrp_startup_delay 5: priority 100 (Master_Down_Interval 3.609 s) takes over at 8.609 s.
    let mut backup = instance(params(100, 1));
    backup.hold_startup_until(at_ms(5_000));
    let actions = backup.handle(Event::Startup, at_ms(0));
    assert_eq!(actions, vec![Action::RemoveVips, Action::Notify(State::Backup)]);
    assert_eq!(deadline(&backup), at_us(8_609_375));
    // An advert heard during the hold restarts the timer from the hold's end, not from now.
    let _ = receive(&mut backup, 2, &advert(200), at_ms(4_000));
    assert_eq!(deadline(&backup), at_us(8_609_375));
    // After the hold, from now as usual.
    let _ = receive(&mut backup, 2, &advert(200), at_ms(6_000));
    assert_eq!(deadline(&backup), at_us(9_609_375));
    let actions = backup.handle(Event::Timer, at_us(9_609_375));
    assert_eq!(actions, takeover_actions(100));

    // The owner waits as a BACKUP (without a notify, as keepalived) until the hold ends.
    let mut owner = instance(params(255, 1));
    owner.hold_startup_until(at_ms(5_000));
    assert_eq!(owner.handle(Event::Startup, at_ms(0)), vec![Action::RemoveVips]);
    assert_eq!(owner.state(), State::Backup);
    assert_eq!(deadline(&owner), at_ms(5_000));
    assert_eq!(owner.handle(Event::Timer, at_ms(5_000)), takeover_actions(255));
    // A hold already over changes nothing.
    let mut late = instance(params(255, 1));
    late.hold_startup_until(at_ms(0));
    assert_eq!(late.handle(Event::Startup, at_ms(1)), takeover_actions(255));
}

#[test]
fn a_master_whose_vip_was_deleted_sends_priority_zero_and_is_back_a_skew_time_later() {
    let mut a = started(params(150, 1));
    let down = deadline(&a);
    assert_eq!(a.handle(Event::Timer, down), takeover_actions(150));
    let t = down + Duration::from_millis(300);
    assert_eq!(
        a.handle(Event::VipRemoved, t),
        [Action::SendAdvert { priority: 0 }, Action::RemoveVips, Action::Notify(State::Backup)]
    );
    assert_eq!(a.state(), State::Backup);
    // keepalived 2.2.7: "Receive advertisement timeout" a Skew_Time later (alone on the LAN).
    assert_eq!(deadline(&a), t + a.skew_time());
    assert_eq!(a.handle(Event::Timer, t + a.skew_time()), takeover_actions(150));
    // Nothing to do outside MASTER.
    let mut b = started(params(100, 2));
    assert!(b.handle(Event::VipRemoved, at_ms(10)).is_empty());
}

#[test]
fn next_advert_is_a_masters_adver_timer_only() {
    let mut vr = started(params(150, 1));
    assert_eq!(vr.state(), State::Backup);
    assert!(vr.next_deadline().is_some());
    assert_eq!(vr.next_advert(), None, "a backup's timer is its Master_Down_Timer");
    let down = deadline(&vr);
    assert_eq!(vr.handle(Event::Timer, down), takeover_actions(150));
    assert_eq!(vr.next_advert(), Some(down + Duration::from_secs(1)));
    let actions = vr.handle(Event::Shutdown, down + Duration::from_millis(10));
    assert_eq!(actions.first(), Some(&Action::SendAdvert { priority: PRIORITY_STOP }));
    assert_eq!(vr.next_advert(), None, "stopped");
}
