//! lbd's VRRP between namespaces on a bridge (VRRPv3, advert_int 0.2 s): election by priority,
//! failover on kill -9 (and the VIP lease that clears the dead master), SIGTERM (priority 0 →
//! Skew_Time) and link down, preemption, nopreempt and preempt_delay, a master whose VRRP thread
//! alone stalls (its standby sender keeps the backup quiet, for a while). Measured times are
//! printed (`--nocapture`) and checked against RFC 5798's formulas with some slack for a loaded
//! machine.

mod vrrp_kit;

use std::time::{Duration, Instant};

use lb_tests::lab::Lab;
use vrrp_kit::{
    ADVERT, ADVERT_TEXT, SLACK, VipWatch, config, instance, ip4, lan, longest_double_holding, master_down,
    ms, skew, start_lbd, start_lbd_with, terminate, vrrp_pid,
};

fn conf(priority: u8, subnet: u8, extra: &str) -> String {
    config(
        "lbt",
        "",
        &[instance(
            "VI_1",
            subnet,
            priority,
            ADVERT_TEXT,
            &[&format!("10.{subnet}.0.100/24")],
            &format!("  version 3\n{extra}"),
        )],
    )
}

#[test]
fn election_by_priority_then_kill9_failover_and_lease_expiry() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 81, 2);
    let vip = ip4(81, 100);
    let (w1, w2) = (VipWatch::start(&r[0], "r1", vip), VipWatch::start(&r[1], "r2", vip));
    let mut a = start_lbd(&mut lab, &r[0], "lbd1", &conf(150, 81, ""));
    let _b = start_lbd(&mut lab, &r[1], "lbd2", &conf(100, 81, ""));
    w1.wait_for(true, Duration::from_secs(5));
    w2.assert_steady(false, Duration::from_secs(1));
    assert!(w1.holds(), "r1 (priority 150) lost the VIP");
    assert!(a.log().contains("(VI_1) Entering BACKUP STATE (init)"), "{}", a.log());
    assert!(a.log().contains("(VI_1) Entering MASTER STATE"), "{}", a.log());

    let killed = Instant::now();
    a.kill();
    let taken = w2.wait_for(true, Duration::from_secs(3)).saturating_duration_since(killed);
    let expired = w1.wait_for(false, Duration::from_secs(6)).saturating_duration_since(killed);
    eprintln!("kill -9: r2 holds the VIP after {}; r1's VIP lease expired after {}", ms(taken), ms(expired));
    assert!(
        taken <= master_down(100) + SLACK,
        "failover took {} (Master_Down_Interval {})",
        ms(taken),
        ms(master_down(100))
    );
    // The lease is Master_Down_Interval rounded up, at least 2 s; the kernel checks lifetimes
    // on whole-second boundaries.
    assert!(expired <= Duration::from_millis(3_500), "the dead master kept its VIP for {}", ms(expired));
}

#[test]
fn sigterm_sends_priority_zero_and_the_backup_takes_over_after_skew_time() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 82, 2);
    let vip = ip4(82, 100);
    let (w1, w2) = (VipWatch::start(&r[0], "r1", vip), VipWatch::start(&r[1], "r2", vip));
    let mut a = start_lbd(&mut lab, &r[0], "lbd1", &conf(150, 82, ""));
    let _b = start_lbd(&mut lab, &r[1], "lbd2", &conf(100, 82, ""));
    w1.wait_for(true, Duration::from_secs(5));
    w2.assert_steady(false, Duration::from_millis(500));

    let stopped = Instant::now();
    terminate(&mut a, "lbd1");
    let released = w1.wait_for(false, Duration::from_secs(1)).saturating_duration_since(stopped);
    let taken = w2.wait_for(true, Duration::from_secs(2)).saturating_duration_since(stopped);
    eprintln!("SIGTERM: r1 released the VIP after {}, r2 holds it after {}", ms(released), ms(taken));
    assert!(taken <= skew(100) + SLACK, "takeover took {} (Skew_Time {})", ms(taken), ms(skew(100)));
    let log = a.log();
    assert!(log.contains("(VI_1) sent 0 priority") && log.contains("(VI_1) removing VIPs."), "{log}");
}

#[test]
fn link_down_faults_the_master_and_link_up_preempts_back() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 83, 2);
    let vip = ip4(83, 100);
    let (w1, w2) = (VipWatch::start(&r[0], "r1", vip), VipWatch::start(&r[1], "r2", vip));
    let a = start_lbd(&mut lab, &r[0], "lbd1", &conf(150, 83, ""));
    let _b = start_lbd(&mut lab, &r[1], "lbd2", &conf(100, 83, ""));
    w1.wait_for(true, Duration::from_secs(5));
    w2.assert_steady(false, Duration::from_millis(500));

    let down = Instant::now();
    r[0].ip(&["link", "set", "eth0", "down"]);
    let released = w1.wait_for(false, Duration::from_secs(1)).saturating_duration_since(down);
    let taken = w2.wait_for(true, Duration::from_secs(3)).saturating_duration_since(down);
    eprintln!("link down: r1 released the VIP after {}, r2 holds it after {}", ms(released), ms(taken));
    // The priority-0 advert cannot leave a downed link: the backup waits Master_Down_Interval.
    assert!(taken <= master_down(100) + SLACK, "takeover took {}", ms(taken));
    assert!(a.log().contains("(VI_1) Entering FAULT STATE"), "{}", a.log());

    let up = Instant::now();
    r[0].ip(&["link", "set", "eth0", "up"]);
    let back = w1.wait_for(true, Duration::from_secs(3)).saturating_duration_since(up);
    w2.wait_for(false, Duration::from_secs(1));
    eprintln!("link up: r1 holds the VIP again after {}", ms(back));
    // Up again, r1 waits its own Master_Down_Interval and preempts.
    assert!(back <= master_down(150) + SLACK * 2, "preemption after link up took {}", ms(back));
}

#[test]
fn a_higher_priority_router_preempts_without_double_holding() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 84, 2);
    let vip = ip4(84, 100);
    let (w1, w2) = (VipWatch::start(&r[0], "r1", vip), VipWatch::start(&r[1], "r2", vip));
    let _b = start_lbd(&mut lab, &r[1], "lbd2", &conf(100, 84, ""));
    w2.wait_for(true, Duration::from_secs(5));
    // From the moment lbd starts VRRP (it first loads the XDP program).
    let _a = start_lbd(&mut lab, &r[0], "lbd1", &conf(150, 84, ""));
    let started = Instant::now();
    let taken = w1.wait_for(true, Duration::from_secs(3)).saturating_duration_since(started);
    w2.wait_for(false, Duration::from_secs(1));
    let double = longest_double_holding(&w1, &w2, Instant::now());
    eprintln!(
        "preemption: r1 holds the VIP {} after starting VRRP; both held it for {}",
        ms(taken),
        ms(double)
    );
    // Its own Master_Down_Interval, discarding r2's lower adverts.
    assert!(taken <= master_down(150) + SLACK, "preemption took {}", ms(taken));
    assert!(double <= ADVERT, "both routers held the VIP for {}", ms(double));
    w2.assert_steady(false, Duration::from_millis(500));
}

#[test]
fn nopreempt_leaves_a_lower_priority_master_alone() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 85, 2);
    let vip = ip4(85, 100);
    let (w1, w2) = (VipWatch::start(&r[0], "r1", vip), VipWatch::start(&r[1], "r2", vip));
    let mut b = start_lbd(&mut lab, &r[1], "lbd2", &conf(100, 85, ""));
    w2.wait_for(true, Duration::from_secs(5));
    let _a = start_lbd(&mut lab, &r[0], "lbd1", &conf(150, 85, "  nopreempt\n"));
    w1.assert_steady(false, Duration::from_millis(1_500));
    // The lower-priority master going away still hands over.
    terminate(&mut b, "lbd2");
    w1.wait_for(true, Duration::from_secs(2));
}

#[test]
fn preempt_delay_waits_before_taking_over() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 86, 2);
    let vip = ip4(86, 100);
    let (w1, w2) = (VipWatch::start(&r[0], "r1", vip), VipWatch::start(&r[1], "r2", vip));
    let _b = start_lbd(&mut lab, &r[1], "lbd2", &conf(100, 86, ""));
    w2.wait_for(true, Duration::from_secs(5));
    let _a = start_lbd(&mut lab, &r[0], "lbd1", &conf(150, 86, "  preempt_delay 1\n"));
    let started = Instant::now();
    let taken = w1.wait_for(true, Duration::from_secs(5)).saturating_duration_since(started);
    w2.wait_for(false, Duration::from_secs(1));
    eprintln!("preempt_delay 1: r1 took over {} after starting", ms(taken));
    // The delay runs from the first lower-priority advert heard, then Master_Down_Interval.
    assert!(taken >= Duration::from_millis(950), "took over after {}, before preempt_delay", ms(taken));
    assert!(
        taken <= Duration::from_secs(1) + master_down(150) + SLACK * 2,
        "took over only after {}",
        ms(taken)
    );
}

#[test]
fn dont_release_vrrp_leaves_the_vip_in_place_for_good() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 79, 1);
    let vip = ip4(79, 100);
    let w = VipWatch::start(&r[0], "r1", vip);
    let mut a = start_lbd_with(&mut lab, &r[0], "lbd1", &conf(150, 79, ""), &["-V"]);
    w.wait_for(true, Duration::from_secs(5));
    terminate(&mut a, "lbd1");
    assert!(!a.log().contains("sent 0 priority"), "-V sends no priority-0 advert:\n{}", a.log());
    // Past any lease the VIP would have had: it is permanent now, as keepalived's -V leaves it.
    w.assert_steady(true, Duration::from_secs(3));
    let shown = r[0].ip(&["-4", "addr", "show", "to", &vip.to_string()]);
    assert!(shown.contains("valid_lft forever"), "the VIP kept a lifetime after -V: {shown}");
}

#[test]
fn a_machine_wide_pause_is_no_reason_to_fail_over() {
    use nix::sys::signal::Signal::{SIGCONT, SIGSTOP};
    let mut lab = Lab::new();
    let r = lan(&mut lab, 87, 2);
    let vip = ip4(87, 100);
    let (w1, w2) = (VipWatch::start(&r[0], "r1", vip), VipWatch::start(&r[1], "r2", vip));
    let a = start_lbd(&mut lab, &r[0], "lbd1", &conf(150, 87, ""));
    let b = start_lbd(&mut lab, &r[1], "lbd2", &conf(100, 87, ""));
    w1.wait_for(true, Duration::from_secs(5));
    w2.assert_steady(false, Duration::from_millis(500));
    // Both stop for longer than Master_Down_Interval (as in a paused VM), under the VIP lease;
    // the backup resumes first, with its Master_Down_Timer long run out and nothing received.
    // (Their whole process groups: VRRP runs in a child process.)
    b.signal_group(SIGSTOP);
    a.signal_group(SIGSTOP);
    std::thread::sleep(master_down(100) + Duration::from_millis(300));
    b.signal_group(SIGCONT);
    a.signal_group(SIGCONT);
    w2.assert_steady(false, Duration::from_secs(1));
    assert!(w1.holds(), "r1 lost the VIP");
    let log = b.log();
    assert_eq!(log.matches("Entering MASTER STATE").count(), 0, "{log}");
    assert!(log.contains("(VI_1) Master_Down_Timer handled"), "{log}");
}

/// Stops thread `tid` alone for `period`, the rest of its process running on (as a virtual CPU
/// its host stops while the other runs): ptrace seizes and interrupts it, then lets it go.
fn stall_thread(tid: i32, period: Duration) {
    let null = std::ptr::null_mut::<libc::c_void>();
    let check = |rc: libc::c_long, what: &str| {
        assert_eq!(rc, 0, "{what} of thread {tid}: {}", std::io::Error::last_os_error());
    };
    // SAFETY: ptrace requests on a thread id, with null addr and data as these requests take.
    check(unsafe { libc::ptrace(libc::PTRACE_SEIZE, tid, null, null) }, "PTRACE_SEIZE");
    // SAFETY: as above.
    check(unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, tid, null, null) }, "PTRACE_INTERRUPT");
    let mut status = 0;
    // SAFETY: waits for the tracee's stop into a local status.
    let waited = unsafe { libc::waitpid(tid, &raw mut status, libc::__WALL) };
    assert_eq!(waited, tid, "waiting for thread {tid} to stop: {}", std::io::Error::last_os_error());
    std::thread::sleep(period);
    // SAFETY: as above; detaching resumes the thread.
    check(unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, null, null) }, "PTRACE_DETACH");
}

#[test]
fn a_master_whose_vrrp_thread_stalls_keeps_its_backup_quiet_for_three_adverts() {
    let mut lab = Lab::new();
    let r = lan(&mut lab, 88, 2);
    let vip = ip4(88, 100);
    let (w1, w2) = (VipWatch::start(&r[0], "r1", vip), VipWatch::start(&r[1], "r2", vip));
    let a = start_lbd(&mut lab, &r[0], "lbd1", &conf(150, 88, ""));
    let b = start_lbd(&mut lab, &r[1], "lbd2", &conf(100, 88, ""));
    w1.wait_for(true, Duration::from_secs(5));
    w2.assert_steady(false, Duration::from_millis(500));
    // The VRRP child's main thread runs the engine; its standby sender is another thread.
    let engine = vrrp_pid(&lab, "lbd1");

    // 1 s: longer than the backup's Master_Down_Interval (721.9 ms), shorter than what the
    // standby bridges (three adverts, half an interval late then one interval apart, before it).
    stall_thread(engine, Duration::from_secs(1));
    w2.assert_steady(false, Duration::from_secs(1));
    assert!(w1.holds(), "r1 lost the VIP");
    let (a_log, b_log) = (a.log(), b.log());
    assert_eq!(b_log.matches("Entering MASTER STATE").count(), 0, "{b_log}");
    assert!(a_log.contains("(VI_1) advert sent by the standby sender"), "{a_log}");
    assert!(
        a_log.contains("(VI_1) advert sent") && a_log.contains("ms late (this daemon did not run)"),
        "{a_log}"
    );

    // 3 s: a thread stuck for good is not hidden: the backup takes over once the standby has
    // sent its three, and r1 preempts back when it runs again.
    let stalled = Instant::now();
    let stall = std::thread::spawn(move || stall_thread(engine, Duration::from_secs(3)));
    let taken = w2.wait_for(true, Duration::from_secs(3)).saturating_duration_since(stalled);
    eprintln!("VRRP thread stuck: r2 holds the VIP after {}", ms(taken));
    // The last of the engine's adverts went out at most an interval before the stall; the
    // standby's three follow the next due time by half an interval, then one interval apart.
    let bridged = ADVERT / 2 + ADVERT * 2;
    assert!(
        taken >= bridged + master_down(100),
        "the standby did not bridge the stall: {}; r1's log:\n{}",
        ms(taken),
        a.log()
    );
    assert!(taken <= ADVERT + bridged + master_down(100) + SLACK, "takeover took {}", ms(taken));
    stall.join().unwrap_or_else(|_| panic!("stalling the VRRP thread failed"));
    w1.wait_for(true, Duration::from_secs(5));
    w2.wait_for(false, Duration::from_secs(1));
}
