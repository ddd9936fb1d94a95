//! lbd and a real keepalived 2.2.7 in one VRRP group, in both roles, VRRPv3 (advert_int 0.2 s)
//! and VRRPv2 (1 s, auth_type PASS, and auth_type AH: IPsec AH with HMAC-MD5-96): they elect
//! the higher priority, fail over on SIGTERM, fail back by preemption, and never both hold the
//! VIP for longer than one advert interval. With AH, that also shows both accept each other's
//! ICVs and sequence numbers (a rejected advert would leave two masters).

mod vrrp_kit;

use std::time::{Duration, Instant};

use lb_tests::{
    lab::{Lab, Netns},
    process::Proc,
};
use vrrp_kit::{
    VipWatch, config, instance, ip4, lan, longest_double_holding, ms, start_keepalived, start_lbd, terminate,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Daemon {
    Lbd,
    Keepalived,
}

/// What a version's test uses.
struct Setup {
    version: u8,
    advert: Duration,
    advert_text: &'static str,
    extra: &'static str,
}

const V3: Setup =
    Setup { version: 3, advert: Duration::from_millis(200), advert_text: "0.2", extra: "  version 3\n" };
const V2: Setup = Setup {
    version: 2,
    advert: Duration::from_secs(1),
    advert_text: "1",
    extra: "  version 2\n  authentication {\n    auth_type PASS\n    auth_pass interop\n  }\n",
};

const V2_AH: Setup = Setup {
    version: 2,
    advert: Duration::from_secs(1),
    advert_text: "1",
    extra: "  version 2\n  authentication {\n    auth_type AH\n    auth_pass interop\n  }\n",
};

fn start(daemon: Daemon, lab: &mut Lab, ns: &Netns, label: &str, config: &str) -> Proc {
    match daemon {
        Daemon::Lbd => start_lbd(lab, ns, label, config),
        Daemon::Keepalived => start_keepalived(lab, ns, label, config),
    }
}

/// Master_Down_Interval of `priority` (RFC 5798 §6.1; v2: skew in whole seconds' fraction).
fn master_down(setup: &Setup, priority: u32) -> Duration {
    setup.advert * 3 + skew(setup, priority)
}

fn skew(setup: &Setup, priority: u32) -> Duration {
    if setup.version == 2 {
        Duration::from_secs(1) * (256 - priority) / 256
    } else {
        setup.advert * (256 - priority) / 256
    }
}

fn interop(subnet: u8, setup: &Setup, high: Daemon, low: Daemon) {
    let mut lab = Lab::new();
    let r = lan(&mut lab, subnet, 2);
    let vip = ip4(subnet, 100);
    let conf = |priority| {
        config(
            &format!("p{priority}"),
            "",
            &[instance(
                "VI_1",
                subnet,
                priority,
                setup.advert_text,
                &[&format!("10.{subnet}.0.100/24")],
                setup.extra,
            )],
        )
    };
    let slack = Duration::from_millis(300);
    let (w1, w2) =
        (VipWatch::start(&r[0], "r1 (priority 150)", vip), VipWatch::start(&r[1], "r2 (priority 100)", vip));

    // Election: the higher priority wins, whoever implements it.
    let mut first = start(high, &mut lab, &r[0], "high", &conf(150));
    let _second = start(low, &mut lab, &r[1], "low", &conf(100));
    w1.wait_for(true, master_down(setup, 150) * 2 + slack);
    w2.assert_steady(false, setup.advert * 4);

    // SIGTERM: priority 0, the other takes over after its Skew_Time.
    let stopped = Instant::now();
    terminate(&mut first, &format!("{high:?}"));
    let taken = w2.wait_for(true, skew(setup, 100) + slack * 2).saturating_duration_since(stopped);
    w1.wait_for(false, Duration::from_secs(1));
    eprintln!("v{} {high:?} → {low:?}: SIGTERM failover in {}", setup.version, ms(taken));

    // The higher priority comes back and preempts.
    let _again = start(high, &mut lab, &r[0], "high-again", &conf(150));
    let restarted = Instant::now();
    let back = w1.wait_for(true, master_down(setup, 150) + slack * 2).saturating_duration_since(restarted);
    w2.wait_for(false, Duration::from_secs(1));
    w2.assert_steady(false, setup.advert * 3);
    let double = longest_double_holding(&w1, &w2, Instant::now());
    eprintln!(
        "v{} {low:?} → {high:?}: preempted {} after VRRP started; longest double holding {}",
        setup.version,
        ms(back),
        ms(double)
    );
    assert!(
        double <= setup.advert,
        "both held the VIP for {} (advert interval {})",
        ms(double),
        ms(setup.advert)
    );
}

#[test]
fn v3_keepalived_master_lbd_backup() {
    interop(101, &V3, Daemon::Keepalived, Daemon::Lbd);
}

#[test]
fn v3_lbd_master_keepalived_backup() {
    interop(102, &V3, Daemon::Lbd, Daemon::Keepalived);
}

#[test]
fn v2_pass_keepalived_master_lbd_backup() {
    interop(103, &V2, Daemon::Keepalived, Daemon::Lbd);
}

#[test]
fn v2_pass_lbd_master_keepalived_backup() {
    interop(104, &V2, Daemon::Lbd, Daemon::Keepalived);
}

#[test]
fn v2_ah_keepalived_master_lbd_backup() {
    interop(105, &V2_AH, Daemon::Keepalived, Daemon::Lbd);
}

#[test]
fn v2_ah_lbd_master_keepalived_backup() {
    interop(106, &V2_AH, Daemon::Lbd, Daemon::Keepalived);
}

/// keepalived with `old_unicast_checksum` (VRRPv3 unicast checksums summed with 224.0.0.18, as
/// before keepalived 1.3.6) as master: lbd accepts its adverts, detects the old checksum, and,
/// once master itself, sends adverts that such a keepalived accepts as backup.
#[test]
fn v3_unicast_old_checksum_is_detected_and_spoken() {
    let subnet = 107;
    let mut lab = Lab::new();
    let r = lan(&mut lab, subnet, 2);
    let vip = ip4(subnet, 100);
    let conf = |me: u8, peer: u8, priority: u8, extra: &str| {
        config(
            &format!("r{me}"),
            "",
            &[instance(
                "VI_1",
                subnet,
                priority,
                V3.advert_text,
                &[&format!("10.{subnet}.0.100/24")],
                &format!(
                    "  version 3\n  unicast_src_ip 10.{subnet}.0.{me}\n  unicast_peer {{\n    10.{subnet}.0.{peer}\n  }}\n{extra}"
                ),
            )],
        )
    };
    let (w1, w2) = (VipWatch::start(&r[0], "r1 (keepalived)", vip), VipWatch::start(&r[1], "r2 (lbd)", vip));
    let mut old = start_keepalived(&lab, &r[0], "ka-old", &conf(1, 2, 150, "  old_unicast_checksum\n"));
    let lbd = start_lbd(&mut lab, &r[1], "lbd", &conf(2, 1, 100, ""));
    w1.wait_for(true, master_down(&V3, 150) * 2 + Duration::from_millis(300));
    w2.assert_steady(false, V3.advert * 5);
    assert!(lbd.log().contains("(VI_1) Setting unicast VRRPv3 checksum to old version"), "{}", lbd.log());

    terminate(&mut old, "keepalived");
    w2.wait_for(true, Duration::from_secs(2));
    // A lower-priority keepalived that only accepts old checksums stays backup.
    let _low = start_keepalived(&lab, &r[0], "ka-old-low", &conf(1, 2, 50, "  old_unicast_checksum\n"));
    w2.assert_steady(true, master_down(&V3, 50) * 2);
    w1.assert_steady(false, V3.advert);
}
