//! The VRRP runtime: drives every [`Instance`] from its sockets, its timers and its tracked
//! objects, and carries out the [`Action`]s it returns, in order (advert, VIPs, gratuitous ARPs,
//! notify).
//!
//! One task owns all the state (the `Engine`); everything that waits (socket reads, vrrp_script
//! runs, tracked files, link events) runs in tasks of its own and reports over a channel, so
//! the instances never need a lock. Sync groups are coordinated here, around the state
//! machine's [`Event::SyncHold`] / [`Event::SyncMaster`] / [`Event::SyncBackup`].
//!
//! Log lines follow keepalived's (`(VI_1) Entering MASTER STATE`, `(VI_1) removing VIPs.`), so
//! that log-watching tools keep working.

use std::{
    net::IpAddr,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::{debug, error, info, warn};

use super::{
    ConfSetting, Handoff, Ipv4Setting, StopKind, VmacKey, VrrpError,
    addr::{self, Gratuitous, Renewer, chain},
    ah,
    config::{
        GroupPlan, HostView, InstancePlan, OldChecksum, Plan, SmtpPlan, Transport, VmacWanted, plan,
        vmacs_wanted,
    },
    firewall::{self, Blocked, Firewall},
    notify::{Notifier, NotifyScripts, Subject},
    packet::{PRIORITY_STOP, VRRP_TTL, VrrpAdvert},
    smtp,
    socket::{AhSigning, Received, VrrpSocket},
    standby::{self, Standby},
    state::{self, Action, Authentication, DiscardReason, Event, Instance, State},
    status::{InstanceStatus, VrrpStatus, epoch_now},
    timer::Timer,
    track::{self, Evaluation, ScriptState, TrackStatus, TrackUpdate, TrackedObject, evaluate},
};
use crate::{
    config::Config,
    netlink::{
        Netlink, NetlinkError, RcvBuf,
        addr::{InterfaceAddress, Lifetime, Scope},
        sysctl,
        vmac::link_local_from_mac,
    },
};

/// How long an orderly stop waits for the notify scripts it queued.
const STOP_NOTIFY_WAIT: Duration = Duration::from_secs(5);

/// Runs the VRRP instances of `config` until `stop` says how to stop, then stops that way.
///
/// Instances that cannot run (see [`super::config::plan`]) are logged and left out; the others
/// run. `stop` starts as `None`; setting it to `Some(kind)` (or dropping the sender, which
/// counts as [`StopKind::Orderly`]) ends the run.
pub async fn run(
    config: &Config,
    netlink: Netlink,
    status: VrrpStatus,
    handoff: Handoff,
    mut stop: watch::Receiver<Option<StopKind>>,
    bfd: watch::Receiver<crate::bfd::BfdStates>,
    mut commands: mpsc::UnboundedReceiver<super::Command>,
) -> Result<(), VrrpError> {
    // Tables a reload's previous engine left, unless this one takes them over.
    let left = handoff.lock().ok().and_then(|mut h| h.firewall_table.take());
    // Settings it left as they were: this one puts them back.
    let inherited = handoff
        .lock()
        .map(|mut h| Inherited {
            conf: std::mem::take(&mut h.vmac_parent_conf),
            ipv4: std::mem::take(&mut h.ipv4_settings),
            masters: h.kept.iter().filter(|(_, s)| **s == State::Master).map(|(n, _)| n.clone()).collect(),
        })
        .unwrap_or_default();
    // The MASTERs it kept, to stop in order if this engine cannot take them over.
    let held = handoff.lock().map(|mut h| std::mem::take(&mut h.held)).unwrap_or_default();
    if config.vrrp_instances.is_empty() {
        for (index, name) in release_held(&netlink, held).await {
            remove_vmac(&netlink, index, &name).await;
        }
        if let Some(table) = &left {
            firewall::delete_tables(table).await;
        }
        restore_conf(&inherited.conf);
        restore_ipv4(&inherited.ipv4);
        let _ = stop.wait_for(Option::is_some).await;
        return Ok(());
    }
    let (updates_tx, mut updates) = mpsc::unbounded_channel();
    let bfd = track::spawn_bfd(bfd, updates_tx.clone());
    let built = Engine::build(config, netlink, updates_tx, inherited, held, left).await;
    let mut engine = match built {
        Ok(engine) => engine,
        Err(e) => {
            bfd.abort();
            return Err(e);
        }
    };
    engine.status = status;
    engine.handoff = handoff;
    engine.publish_instances();
    let real_time = super::sched::apply(&config.global_defs);
    let current = if real_time { super::sched::rt_priority(&config.global_defs) } else { 0 };
    let mut auto_priority = super::sched::AutoPriority::from_globals(&config.global_defs, current);
    engine.standby =
        Standby::spawn(engine.runners.len(), real_time.then_some(current), config.global_defs.vrrp_priority)
            .inspect_err(|e| warn!("VRRP adverts without a standby sender: {e}"))
            .ok();
    engine.start().await;
    let mut timer = match Timer::new() {
        Ok(timer) => Some(timer),
        Err(e) => {
            warn!("VRRP timers to the millisecond only (no timerfd: {e})");
            None
        }
    };
    let kind = loop {
        if let Some(kind) = *stop.borrow_and_update() {
            break kind;
        }
        let deadline = engine.next_deadline();
        if let Some(precise) = &mut timer
            && let Err(e) = precise.set(deadline)
        {
            warn!("VRRP timers to the millisecond only (timerfd: {e})");
            timer = None;
        }
        tokio::select! {
            biased;
            changed = stop.changed() => {
                if changed.is_err() {
                    break StopKind::Orderly;
                }
            }
            // Adverts before timers: one that arrived in time must not lose to a timer that
            // expired while the daemon was waiting for a CPU.
            (socket, result) = std::future::poll_fn(|cx| poll_sockets(&engine.sockets, cx)) => match result {
                Ok(received) => engine.receive(socket, received).await,
                Err(e) => {
                    warn!("VRRP socket read failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = sleep_until(deadline, timer.as_mut()) => {
                // max_auto_priority: how late this wake-up is.
                if let (Some(auto), Some(due)) = (&mut auto_priority, deadline) {
                    auto.check(Instant::now().saturating_duration_since(due));
                }
                // Adverts that arrived before the timer is handled count: what the sockets
                // still hold (without a system call unless their last readiness event said
                // there is something to read).
                for socket in 0..engine.sockets.len() {
                    while let Some(result) = engine.sockets[socket].1.try_recv() {
                        match result {
                            Ok(received) => engine.receive(socket, received).await,
                            Err(e) => {
                                warn!("VRRP socket read failed: {e}");
                                break;
                            }
                        }
                    }
                }
                engine.timers().await;
            }
            Some(update) = updates.recv() => engine.track(update).await,
            Some(command) = commands.recv() => engine.command(command),
        }
    };
    bfd.abort();
    engine.stop(kind).await;
    Ok(())
}

/// Waits for `deadline` on `timer` (armed for it), or on tokio's timer without one.
async fn sleep_until(deadline: Option<Instant>, timer: Option<&mut Timer>) {
    match (deadline, timer) {
        (Some(_), Some(timer)) => timer.expired().await,
        (Some(at), None) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        (None, _) => std::future::pending().await,
    }
}

/// One running instance.
#[derive(Debug)]
struct Runner {
    plan: InstancePlan,
    machine: Instance,
    socket: usize,
    notify: NotifyScripts,
    /// Its own tracking, without its sync group.
    evaluation: Evaluation,
    /// The fault the state machine was last told (own or the group's).
    fault: bool,
    vips_installed: bool,
    lease_renewed: Option<Instant>,
    /// The instance's name and its VIPs (excluded ones too), as the lease renewals take them.
    lease_name: Arc<str>,
    lease_vips: Arc<[super::config::Vip]>,
    /// The next Notify is the first: log it with " (init)" as keepalived does.
    init: bool,
    /// Its source followed the interface's address, which went with no other to replace it:
    /// FAULT until one comes.
    no_source: bool,
    /// The last reason an advert was dropped for a configuration mismatch, logged once.
    last_discard: Option<String>,
    /// `auth_type AH`: the sequence number of the adverts sent and accepted.
    ah_sequence: ah::Sequence,
    /// Sending keepalived's old unicast checksum (configured, or detected in a peer's advert).
    old_checksum: bool,
    /// `garp_extra_if`: when the next gratuitous ARPs / NAs on its VIPs' other interfaces are
    /// due (while MASTER).
    extra_garp_at: Option<Instant>,
    /// The state last mailed (`smtp_alert`).
    last_mail: Option<State>,
    /// Its VIPs are in the firewall's drop sets (`no_accept`: from MASTER's VIPs being set,
    /// or from the start for a MASTER a reload keeps, until they are removed).
    firewall_blocked: bool,
}

impl Runner {
    /// keepalived's `vrrp_in_chk_ipsecah` for an `auth_type AH` instance: the ICV, the SPI (the
    /// sender's address) and the sequence number (above the last one accepted). Why the advert
    /// is dropped, if it is.
    fn check_ah(&mut self, received: &Received) -> Option<String> {
        let Authentication::Ah(key) = &self.machine.params().authentication else { return None };
        let Some((header, packet)) = &received.ah else {
            return Some(format!("advert from {} without IPSEC-AH", received.source));
        };
        let unicast = matches!(self.plan.transport, Transport::Unicast { .. });
        if !ah::verify(key, packet, unicast, &header.icv) {
            return Some(format!(
                "IPSEC-AH : invalid IPSEC HMAC-MD5 value from {} (fields mutation or bad password)",
                received.source
            ));
        }
        if received.source != IpAddr::V4(header.spi.into()) {
            return Some(format!("IPSEC-AH : invalid SPI {:#010x} from {}", header.spi, received.source));
        }
        if !self.ah_sequence.accept(header.sequence) {
            return Some(format!(
                "IPSEC-AH : sequence number {} already processed (local {})",
                header.sequence,
                self.ah_sequence.last()
            ));
        }
        None
    }
}

#[derive(Debug)]
struct GroupRunner {
    plan: GroupPlan,
    notify: NotifyScripts,
    state: Option<State>,
    /// The state last mailed (`smtp_alert`).
    last_mail: Option<State>,
}

/// Everything the VRRP task owns.
#[derive(Debug)]
struct Engine {
    netlink: Netlink,
    runners: Vec<Runner>,
    groups: Vec<GroupRunner>,
    sockets: Vec<(SocketKey, Arc<VrrpSocket>)>,
    track: TrackStatus,
    plan_scripts: Vec<String>,
    notifier: Notifier,
    garp: Gratuitous,
    renewer: Renewer,
    smtp: Option<SmtpPlan>,
    /// `no_email_faults`: no `smtp_alert` mail for FAULT.
    no_email_faults: bool,
    /// `fifo_write_vrrp_states_on_reload`: the instances kept in MASTER by a reload write their
    /// state to the notify FIFOs.
    fifo_write_states: bool,
    tasks: Vec<JoinHandle<()>>,
    /// The use_vmac interfaces (index, name).
    vmacs: Vec<(u32, String)>,
    /// What they were made as (a reload's next engine keeps those it wants the same).
    vmac_keys: Vec<VmacKey>,
    log_unknown_vrids: bool,
    /// `vrrp_startup_delay`: no instance becomes MASTER before then.
    startup_hold: Option<Instant>,
    status: VrrpStatus,
    /// States handed over by the previous engine (a reload) and, at a hand-off stop, to the
    /// next.
    handoff: Handoff,
    /// `net.ipv4.conf` settings changed for `promote_secondaries` and on the VMACs' parents
    /// (`arp_ignore`, `arp_filter`), with their previous values, put back at the stop as
    /// keepalived does.
    restore_conf: Vec<ConfSetting>,
    /// `net.ipv4` settings changed (`disable_local_igmp`), with their previous values.
    restore_ipv4: Vec<Ipv4Setting>,
    /// The nftables table of the `no_accept` instances.
    firewall: Option<Firewall>,
    /// The second sender of the MASTERs' adverts (none if its thread could not start).
    standby: Option<Standby>,
}

/// The address adverts move to when `source` goes, among the interface's addresses
/// `present`: of its family, no instance's VIP and usable as a source (RFC 5798 §5.1.2.1: an
/// IPv6 link-local address, out of duplicate address detection); a primary IPv4 address first.
fn replacement_source(
    source: IpAddr,
    present: &[crate::netlink::addr::InstalledAddress],
    vips: &[IpAddr],
) -> Option<IpAddr> {
    let usable = || present.iter().filter(|a| usable_source(source, a) && !vips.contains(&a.addr));
    usable().find(|a| !a.secondary).or_else(|| usable().next()).map(|a| a.addr)
}

/// Whether adverts sent from `source` could be sent from `address` instead.
fn usable_source(source: IpAddr, address: &crate::netlink::addr::InstalledAddress) -> bool {
    match (source, address.addr) {
        (IpAddr::V4(_), IpAddr::V4(_)) => true,
        (IpAddr::V6(_), IpAddr::V6(a6)) => a6.is_unicast_link_local() && !address.tentative,
        _ => false,
    }
}

/// The settings a reload's previous engine left as they were, with their values before lbd
/// ([`super::Reload`]).
#[derive(Debug, Default)]
struct Inherited {
    /// On the interfaces of the VMACs it left.
    conf: Vec<ConfSetting>,
    /// `net.ipv4` ones.
    ipv4: Vec<Ipv4Setting>,
    /// The instances it kept in MASTER: those that do not accept have their VIPs blocked from
    /// the first transaction on (their drop rule never lapses).
    masters: std::collections::HashSet<String>,
}

/// Puts back `net.ipv4.conf` settings.
fn restore_conf(settings: &[ConfSetting]) {
    for (interface, key, previous) in settings {
        if let Err(e) = sysctl::set_ipv4_conf(interface, key, previous) {
            warn!("cannot restore {key} on {interface}: {e}");
        }
    }
}

/// Puts back `net.ipv4` settings.
fn restore_ipv4(settings: &[Ipv4Setting]) {
    for (key, previous) in settings {
        if let Err(e) = sysctl::set_ipv4(key, previous) {
            warn!("cannot restore {key}: {e}");
        }
    }
}

/// What an engine being built has made so far, all undone if the build fails: keepalived's
/// VRRP child that cannot start leaves nothing behind (and the next start would otherwise read
/// the changed settings as the ones to restore).
///
/// [`Unwind::undo`] undoes it all. Dropped without it (a panic, or the build's future dropped),
/// the tasks still stop, the settings are still put back and the [`Firewall`]'s own task deletes
/// its tables; only the VMACs stay, as removing them needs to wait for netlink. A build that
/// succeeds moves everything into the [`Engine`], which undoes it as it stops.
#[derive(Default)]
struct Unwind {
    /// `net.ipv4` settings changed, with their previous values.
    restore_ipv4: Vec<Ipv4Setting>,
    /// `net.ipv4.conf` settings changed (the VMACs' parents'), with their previous values.
    restore_conf: Vec<ConfSetting>,
    /// The use_vmac interfaces created (index, name).
    vmacs: Vec<(u32, String)>,
    /// What they were made as: (name, parent, MAC).
    vmac_keys: Vec<VmacKey>,
    /// The monitoring tasks started (links, addresses, scripts, files).
    tasks: Vec<JoinHandle<()>>,
    /// The nftables tables (the VMACs' IGMP / MLD rules).
    firewall: Option<Firewall>,
    /// The tables a reload's previous engine left.
    left_table: Option<String>,
}

impl Unwind {
    /// Stops the tasks, removes the VMACs, deletes the tables and puts the settings back, in
    /// an orderly stop's order (the VIPs, gone before, were never unprotected, nor the
    /// parents answering ARP for them).
    async fn undo(mut self, netlink: &Netlink) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        for (index, name) in std::mem::take(&mut self.vmacs) {
            remove_vmac(netlink, index, &name).await;
        }
        if let Some(firewall) = self.firewall.take() {
            firewall.close().await;
        }
        if let Some(table) = self.left_table.take() {
            firewall::delete_tables(&table).await;
        }
        restore_ipv4(&std::mem::take(&mut self.restore_ipv4));
        restore_conf(&std::mem::take(&mut self.restore_conf));
    }
}

impl Drop for Unwind {
    fn drop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        restore_ipv4(&std::mem::take(&mut self.restore_ipv4));
        restore_conf(&std::mem::take(&mut self.restore_conf));
    }
}

/// How long a new MASTER waits for its firewall drop rule before adding its VIPs.
const FIREWALL_WAIT: Duration = Duration::from_secs(1);

/// One socket per interface, source and group: every instance there shares it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SocketKey {
    ifindex: u32,
    source: IpAddr,
    group: Option<IpAddr>,
    /// `unicast_ttl` (255 for multicast instances).
    ttl: u8,
    /// IP protocol AH (`auth_type AH`) rather than VRRP.
    ah: bool,
}

impl Engine {
    /// Builds the engine of `config`; if that fails part way, what was made is undone first
    /// ([`Unwind`]). `inherited`: the settings a reload's previous engine left as they were,
    /// which this one puts back; `held`: the MASTERs it kept, which this one stops in order
    /// if it cannot take them over; `left`: the tables it left, which this one replaces or
    /// deletes.
    async fn build(
        config: &Config,
        netlink: Netlink,
        updates: mpsc::UnboundedSender<TrackUpdate>,
        inherited: Inherited,
        held: Vec<Held>,
        left: Option<String>,
    ) -> Result<Self, VrrpError> {
        let mut made = Unwind::default();
        made.restore_conf = inherited.conf;
        if config.global_defs.disable_local_igmp {
            made.restore_ipv4 = inherited.ipv4;
        } else {
            restore_ipv4(&inherited.ipv4);
        }
        match Self::build_with(config, &netlink, updates, &inherited.masters, &mut made).await {
            Ok(engine) => {
                if let Some(table) = &left {
                    match engine.firewall.as_ref().filter(|f| f.table() == table) {
                        Some(firewall) => firewall.adopt(),
                        None => firewall::delete_tables(table).await,
                    }
                }
                // A kept MASTER this engine does not run after all (the host changed): stopped
                // in order, as it would have been without the reload.
                let (_taken, orphans): (Vec<Held>, Vec<Held>) =
                    held.into_iter().partition(|h| engine.runners.iter().any(|r| r.plan.name == h.plan.name));
                for (index, name) in release_held(&netlink, orphans).await {
                    if !engine.vmacs.iter().any(|(i, _)| *i == index) {
                        remove_vmac(&netlink, index, &name).await;
                    }
                }
                Ok(engine)
            }
            Err(e) => {
                // keepalived's stop: the kept MASTERs' priority-0 adverts and VIPs first, then
                // the VMACs (theirs too), the tables and the settings.
                for vmac in release_held(&netlink, held).await {
                    if !made.vmacs.iter().any(|(i, _)| *i == vmac.0) {
                        made.vmacs.push(vmac);
                    }
                }
                made.left_table = left;
                made.undo(&netlink).await;
                Err(e)
            }
        }
    }

    /// [`Engine::build`], recording in `made` what it makes until the engine takes it.
    /// `kept_masters`: the instances a reload keeps in MASTER.
    async fn build_with(
        config: &Config,
        netlink: &Netlink,
        updates: mpsc::UnboundedSender<TrackUpdate>,
        kept_masters: &std::collections::HashSet<String>,
        made: &mut Unwind,
    ) -> Result<Self, VrrpError> {
        // disable_local_igmp: no IGMP reports for 224.0.0.0/24 while VRRP runs (keepalived 2.2.7
        // sets it with or without use_vmac, and puts it back as it stops), before
        // any socket joins a group.
        if config.global_defs.disable_local_igmp {
            match sysctl::set_ipv4("igmp_link_local_mcast_reports", "0") {
                Ok(Some(previous)) => made.restore_ipv4.push(("igmp_link_local_mcast_reports", previous)),
                Ok(None) => {}
                Err(e) => warn!("disable_local_igmp: {e}"),
            }
        }
        let mut created_vmacs = Vec::new();
        for wanted in vmacs_wanted(config) {
            let VmacWanted { name, parent, ipv6, ref ipvlan, .. } = wanted.clone();
            let created = make_vmac(netlink, &wanted).await;
            let (what, tag) = if ipvlan.is_some() { ("use_ipvlan", "ipvlan") } else { ("use_vmac", "vmac") };
            let (link, created) = match created {
                Ok(made) => made,
                Err(e) => {
                    error!("cannot create {what} interface {name}: {}", chain(&e));
                    continue;
                }
            };
            if created {
                info!("({tag}) {name} created on {parent}");
            } else {
                info!("({tag}) {name} on {parent} already there");
            }
            made.vmacs.push((link.index, name.clone()));
            made.vmac_keys.push(wanted);
            // keepalived changes no setting for an ipvlan: it shares its parent's MAC, and the
            // kernel gives it the frames of its own addresses.
            if ipvlan.is_some() {
                continue;
            }
            // keepalived's settings (vrrp_if_config.c): the parent must not answer ARP for the
            // VIPs, the macvlan answers only for its own addresses and hears the other routers
            // although it has no address of its own.
            for (key, value) in
                [("arp_ignore", "1"), ("accept_local", "1"), ("rp_filter", "0"), ("promote_secondaries", "1")]
            {
                set_ipv4_conf(&name, key, value);
            }
            // The parent's are put back as lbd stops, as keepalived does (the first value seen
            // is the one before lbd).
            for key in ["arp_ignore", "arp_filter"] {
                match sysctl::set_ipv4_conf(&parent, key, "1") {
                    Ok(Some(previous)) => made.restore_conf.push((parent.clone(), key, previous)),
                    Ok(None) => {}
                    Err(e) => warn!("cannot set {key} of {parent} to 1: {e}"),
                }
            }
            created_vmacs.push(firewall::Vmac { name: name.clone(), parent: parent.clone(), ipv6 });
        }
        let host = read_host(netlink).await.map_err(VrrpError::Netlink)?;
        let (plan, problems) = plan(config, &host);
        for problem in &problems {
            warn!("{problem}");
        }
        let Plan { instances, groups, scripts, files, script_policy, garp_pacing, smtp, firewall, linkbeat } =
            plan;
        if let Some(firewall) = &firewall
            && config.global_defs.nftables.is_none()
        {
            // keepalived's words when it picks nftables by itself; lbd has no iptables backend,
            // so vrrp_iptables gets nftables too.
            let why = if config.global_defs.vrrp_iptables.is_some() {
                "vrrp_iptables specified, lbd has no iptables backend"
            } else {
                "use_vmac or no_accept/strict specified, but no firewall configured"
            };
            info!("{why} - using nftables (table {})", firewall.table);
        }
        made.firewall = firewall.map(Firewall::spawn);
        // The non-accepting MASTERs a reload keeps: blocked in the transaction that replaces the
        // previous engine's tables, as they were there.
        let pre_blocked =
            |instance: &InstancePlan| instance.no_accept && kept_masters.contains(&instance.name);
        if let Some(firewall) = &made.firewall {
            let entries: Vec<Blocked> =
                instances.iter().filter(|i| pre_blocked(i)).flat_map(blocked).collect();
            if !created_vmacs.is_empty() || !entries.is_empty() {
                firewall.start(created_vmacs, !config.global_defs.disable_local_igmp, entries).await;
            }
        }

        let mut track = TrackStatus::default();
        for link in &host.links {
            track.interfaces.insert(link.name.clone(), link.up && link.running);
        }
        let global = &config.global_defs;
        let monitor_rcvbuf = RcvBuf::from_keywords(
            global.vrrp_netlink_monitor_rcv_bufs,
            global.vrrp_netlink_monitor_rcv_bufs_force,
        );
        let cmd_rcvbuf =
            RcvBuf::from_keywords(global.vrrp_netlink_cmd_rcv_bufs, global.vrrp_netlink_cmd_rcv_bufs_force);
        let tasks = &mut made.tasks;
        tasks.push(
            track::spawn_links(updates.clone(), monitor_rcvbuf, linkbeat.clone())
                .map_err(VrrpError::Netlink)?,
        );
        if !linkbeat.is_empty() {
            info!("Using MII-BMSR/ETHTOOL NIC polling thread(s)... ({})", linkbeat.join(", "));
            tasks.push(track::spawn_linkbeat(linkbeat, updates.clone()));
        }
        // Address events: track_src_ip, and a MASTER's VIP deleted by hand.
        tasks.push(track::spawn_addresses(updates.clone(), monitor_rcvbuf).map_err(VrrpError::Netlink)?);
        track.addresses = host
            .addresses
            .iter()
            .flat_map(|(&ifindex, addresses)| addresses.iter().map(move |&a| (ifindex, a)))
            .collect();
        for (index, script) in scripts.iter().enumerate() {
            track.scripts.push(ScriptState::new(script.rise, script.fall, script.init_fail));
            match script_policy.prepare(&script.script) {
                Ok(prepared) => {
                    tasks.push(track::spawn_script(index, script.clone(), prepared, updates.clone()))
                }
                Err(e) => {
                    // keepalived disables the script; its instances see it as failed.
                    error!("VRRP_Script({}) disabled: {e}", script.name);
                    track.scripts[index].record(false);
                }
            }
        }
        for (index, file) in files.iter().enumerate() {
            track::init_file(file);
            let value = track::read_file_value(Path::new(&file.path));
            track.files.push(value);
            tasks.push(track::spawn_file(index, file.clone(), value, updates.clone()));
        }

        let mut sockets: Vec<(SocketKey, Arc<VrrpSocket>)> = Vec::new();
        let mut runners = Vec::new();
        // Sync groups refer to instances by index: an instance that cannot run leaves a hole
        // that the groups must skip.
        let mut index_map = Vec::new();
        // Blocked from the start, but not running after all: unblocked.
        let mut left_out = Vec::new();
        for instance in instances {
            // A source still in duplicate address detection cannot be bound: a socket on the
            // interface without one, until the address is usable (source_changed).
            let source = if instance.source_pending {
                IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
            } else {
                instance.params.source_address
            };
            let group = match instance.transport {
                Transport::Multicast { group } => Some(group),
                Transport::Unicast { .. } => None,
            };
            let ah = matches!(instance.params.authentication, Authentication::Ah(_));
            let key =
                SocketKey { ifindex: instance.interface.index, source, group, ttl: instance.unicast_ttl, ah };
            let socket = match sockets.iter().position(|(k, _)| *k == key) {
                Some(index) => index,
                None => match open_socket(&instance, &key) {
                    Ok(socket) => {
                        sockets.push((key, Arc::new(socket)));
                        sockets.len() - 1
                    }
                    Err(e) => {
                        error!(
                            "({}) cannot open a VRRP socket on {} from {source}: {e}",
                            instance.name, instance.interface.name
                        );
                        index_map.push(None);
                        left_out.push(instance);
                        continue;
                    }
                },
            };
            let machine = match Instance::new(instance.params.clone()) {
                Ok(machine) => machine,
                Err(e) => {
                    error!("({}) {e}", instance.name);
                    index_map.push(None);
                    left_out.push(instance);
                    continue;
                }
            };
            index_map.push(Some(runners.len()));
            let old_checksum =
                matches!(instance.transport, Transport::Unicast { old_checksum: OldChecksum::Always, .. });
            let lease_vips = instance.vips.iter().chain(&instance.excluded).cloned().collect();
            let firewall_blocked = made.firewall.is_some() && pre_blocked(&instance);
            let no_source = instance.source_pending;
            if no_source {
                info!(
                    "({}) {} is in duplicate address detection: FAULT until it is usable",
                    instance.name, instance.params.source_address
                );
            }
            runners.push(Runner {
                lease_name: Arc::from(instance.name.as_str()),
                lease_vips,
                notify: NotifyScripts::prepare(&instance.notify, &script_policy, &instance.name),
                plan: instance,
                machine,
                socket,
                evaluation: Evaluation::default(),
                fault: false,
                vips_installed: false,
                lease_renewed: None,
                init: true,
                no_source,
                last_discard: None,
                ah_sequence: ah::Sequence::default(),
                old_checksum,
                extra_garp_at: None,
                last_mail: None,
                firewall_blocked,
            });
        }
        if let Some(firewall) = &made.firewall {
            let entries: Vec<Blocked> =
                left_out.iter().filter(|i| pre_blocked(i)).flat_map(blocked).collect();
            if !entries.is_empty() {
                firewall.unblock(entries);
            }
        }
        // kernel_rx_buf_size / vrrp_rx_bufs_policy: a socket's buffer is the sum of its
        // instances' shares, as keepalived sets it.
        for (socket, (_, vrrp_socket)) in sockets.iter().enumerate() {
            set_rx_buf(vrrp_socket, &runners, socket);
        }
        let mut group_runners = Vec::new();
        for mut group in groups {
            group.members =
                group.members.iter().filter_map(|&m| index_map.get(m).copied().flatten()).collect();
            if group.members.len() < 2 {
                warn!("VRRP_Group({}) has fewer than 2 instances that run - removing", group.name);
                for runner in &mut runners {
                    if runner.plan.group.is_some_and(|g| g == group_runners.len()) {
                        runner.plan.group = None;
                    }
                }
                continue;
            }
            let index = group_runners.len();
            for &member in &group.members {
                runners[member].plan.group = Some(index);
            }
            group_runners.push(GroupRunner {
                notify: NotifyScripts::prepare(&group.notify, &script_policy, &group.name),
                plan: group,
                state: None,
                last_mail: None,
            });
        }
        if runners.is_empty() {
            return Err(VrrpError::NoInstance);
        }
        let mut restore_conf = std::mem::take(&mut made.restore_conf);
        for runner in runners.iter().filter(|r| r.plan.promote_secondaries) {
            // keepalived sets it on the instance's interface (`vrrp->ifp`: the macvlan with
            // use_vmac, where lbd has set it already).
            let interface = runner.plan.vmac.as_ref().map_or(&runner.plan.base_interface.name, |v| &v.name);
            if restore_conf.iter().any(|(name, key, _)| name == interface && *key == "promote_secondaries") {
                continue;
            }
            match sysctl::set_ipv4_conf(interface, "promote_secondaries", "1") {
                Ok(Some(previous)) => {
                    info!("({}) promote_secondaries set on {interface}", runner.plan.name);
                    restore_conf.push((interface.clone(), "promote_secondaries", previous));
                }
                Ok(None) => {}
                Err(e) => warn!("({}) cannot set promote_secondaries: {e}", runner.plan.name),
            }
        }
        Ok(Engine {
            netlink: netlink.clone(),
            runners,
            groups: group_runners,
            sockets,
            track,
            plan_scripts: scripts.into_iter().map(|s| s.name).collect(),
            notifier: Notifier::spawn(&fifos(config, &script_policy)),
            garp: Gratuitous::spawn(garp_pacing),
            renewer: Renewer::spawn(netlink.clone(), cmd_rcvbuf),
            smtp,
            no_email_faults: config.global_defs.no_email_faults,
            fifo_write_states: config.global_defs.fifo_write_vrrp_states_on_reload,
            tasks: std::mem::take(&mut made.tasks),
            vmacs: std::mem::take(&mut made.vmacs),
            vmac_keys: std::mem::take(&mut made.vmac_keys),
            log_unknown_vrids: config.global_defs.log_unknown_vrids,
            startup_hold: startup_hold(config.global_defs.vrrp_startup_delay),
            status: VrrpStatus::default(),
            handoff: Handoff::default(),
            restore_conf,
            restore_ipv4: std::mem::take(&mut made.restore_ipv4),
            firewall: made.firewall.take(),
            standby: None,
        })
    }

    /// Publishes the instances, in their initial state, to the status readers.
    fn publish_instances(&self) {
        let instances = self
            .runners
            .iter()
            .map(|r| {
                let params = r.machine.params();
                InstanceStatus {
                    name: r.plan.name.clone(),
                    interface: r.plan.base_interface.name.clone(),
                    vrid: params.vrid.get(),
                    version: match params.version {
                        super::packet::Version::V2 => 2,
                        super::packet::Version::V3 => 3,
                    },
                    family: match params.addresses.family() {
                        super::packet::AddressFamily::Ipv4 => 4,
                        super::packet::AddressFamily::Ipv6 => 6,
                    },
                    state: r.machine.state().keepalived_name(),
                    base_priority: params.priority,
                    effective_priority: r.machine.effective_priority(),
                    last_transition: epoch_now(),
                    ifindex: r.plan.interface.index,
                    mac: r
                        .plan
                        .vmac
                        .as_ref()
                        .map_or_else(|| r.plan.interface.mac.clone(), |v| v.mac.to_vec()),
                    source_address: Some(params.source_address),
                    master_address: (r.machine.state() == State::Master).then_some(params.source_address),
                    ..InstanceStatus::default()
                }
            })
            .collect();
        self.status.set(instances);
    }

    /// Starts every instance with its initial tracking state, as keepalived does: in BACKUP
    /// (init), in FAULT, or for the owner in MASTER.
    async fn start(&mut self) {
        let now = Instant::now();
        let evaluations: Vec<Evaluation> =
            self.runners.iter().map(|r| evaluate(&r.plan.tracking, &self.track)).collect();
        for (i, evaluation) in evaluations.into_iter().enumerate() {
            self.runners[i].evaluation = evaluation;
        }
        for i in 0..self.runners.len() {
            let fault = self.runners[i].evaluation.fault || self.group_fault(i) || self.runners[i].no_source;
            let runner = &mut self.runners[i];
            runner.fault = fault;
            let mut actions = Vec::new();
            if fault {
                actions.extend(runner.machine.handle(Event::Fault(true), now));
            }
            if runner.evaluation.adjustment != 0 {
                actions.extend(
                    runner.machine.handle(Event::PriorityAdjustment(runner.evaluation.adjustment), now),
                );
            }
            if let Some(until) = self.startup_hold {
                runner.machine.hold_startup_until(until);
            }
            let previous = self.handoff.lock().ok().and_then(|mut h| h.kept.remove(&runner.plan.name));
            if previous == Some(State::Master) {
                info!("({}) kept in MASTER STATE across the reload", runner.plan.name);
                actions.extend(runner.machine.resume_master(now));
                self.status.update(i, |s| s.state = State::Master.keepalived_name());
                self.status.announce(i);
                // fifo_write_vrrp_states_on_reload: the others say their state as they start.
                if self.fifo_write_states {
                    let runner = &self.runners[i];
                    let priority = runner.machine.effective_priority();
                    self.notifier.state_to_fifos(
                        Subject::Instance,
                        &runner.plan.name,
                        State::Master,
                        priority,
                    );
                }
            } else {
                actions.extend(runner.machine.handle(Event::Startup, now));
            }
            self.execute(i, actions).await;
        }
        for g in 0..self.groups.len() {
            self.update_group(g);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.runners.iter().filter_map(|r| r.machine.next_deadline()).min()
    }

    async fn timers(&mut self) {
        let now = Instant::now();
        for i in 0..self.runners.len() {
            if self.runners[i].machine.next_deadline().is_some_and(|at| at <= now) {
                self.timer(i, now).await;
            }
        }
    }

    async fn timer(&mut self, i: usize, now: Instant) {
        let due = self.runners[i].machine.master_down_due(now);
        if due && let Some(g) = self.runners[i].plan.group {
            let ready = self.groups[g].plan.members.iter().filter(|&&j| j != i).all(|&j| {
                let other = &self.runners[j].machine;
                other.state() == State::Master || other.wants_master() || other.master_down_due(now)
            });
            if !ready {
                let runner = &mut self.runners[i];
                if !runner.machine.wants_master() {
                    info!(
                        "({}) Receive advertisement timeout, waiting for sync group {} to agree",
                        runner.plan.name, self.groups[g].plan.name
                    );
                }
                let actions = runner.machine.handle(Event::SyncHold, now);
                self.execute(i, actions).await;
                return;
            }
        }
        let late = self.runners[i].machine.next_deadline().map(|at| now.saturating_duration_since(at));
        let old = self.runners[i].machine.state();
        let actions = self.runners[i].machine.handle(Event::Timer, now);
        if due && self.runners[i].machine.state() == State::Backup {
            warn!(
                "({}) Master_Down_Timer handled {:.1} ms late (this daemon did not run): waiting {:.1} ms \
                 more for the master's advert before taking over",
                self.runners[i].plan.name,
                late.unwrap_or_default().as_secs_f64() * 1e3,
                self.runners[i]
                    .machine
                    .next_deadline()
                    .map_or(0.0, |at| at.saturating_duration_since(now).as_secs_f64() * 1e3)
            );
        } else if due {
            // Logged once the VIPs are on their way (as keepalived, before the new state).
            let line = format!(
                "({}) Receive advertisement timeout (handled {:.1} ms after it ran out)",
                self.runners[i].plan.name,
                late.unwrap_or_default().as_secs_f64() * 1e3
            );
            self.execute_then(i, actions, Some(line)).await;
            self.sync(i, old, now).await;
            return;
        } else if old == State::Master
            && let Some(late) = late
            && late >= self.runners[i].machine.params().advert_interval / state::LATE_GRACE
        {
            warn!("({}) advert sent {:.1} ms late (this daemon did not run)", self.runners[i].plan.name, {
                late.as_secs_f64() * 1e3
            });
        }
        self.execute(i, actions).await;
        self.sync(i, old, now).await;
    }

    async fn receive(&mut self, socket: usize, received: Received) {
        let advert = match &received.advert {
            Ok(advert) => advert,
            Err(e) => {
                debug!("invalid VRRP packet from {}: {e}", received.source);
                return;
            }
        };
        let mut matched = false;
        for i in 0..self.runners.len() {
            let runner = &self.runners[i];
            if runner.socket != socket || runner.machine.params().vrid != advert.vrid {
                continue;
            }
            matched = true;
            let dropped = match &runner.plan.transport {
                Transport::Multicast { group } => {
                    if received.destination != *group {
                        Some(format!("unicast advert from {} on a multicast instance", received.source))
                    } else if received.hop_limit != VRRP_TTL {
                        // RFC 5798 §7.1.
                        Some(format!("invalid TTL/HL {} from {}", received.hop_limit, received.source))
                    } else {
                        None
                    }
                }
                Transport::Unicast { peers, check_source, old_checksum } => {
                    let peer = peers.iter().find(|p| p.address == received.source);
                    if received.old_checksum && *old_checksum == OldChecksum::Never {
                        Some(format!("Invalid VRRPv3 checksum from {}", received.source))
                    } else if received.destination.is_multicast() {
                        Some(format!("multicast advert from {} on a unicast instance", received.source))
                    } else if *check_source && peer.is_none() {
                        Some(format!("advert from {}, not a unicast peer", received.source))
                    } else if let Some(peer) = peer
                        && (peer.min_ttl.is_some_and(|min| received.hop_limit < min)
                            || peer.max_ttl.is_some_and(|max| received.hop_limit > max))
                    {
                        Some(format!(
                            "TTL {} from {} out of the peer's range",
                            received.hop_limit, received.source
                        ))
                    } else {
                        None
                    }
                }
            };
            let dropped = dropped.or_else(|| self.runners[i].check_ah(&received));
            if let Some(why) = dropped {
                self.discarded(i, why);
                continue;
            }
            if received.old_checksum && !self.runners[i].old_checksum {
                info!("({}) Setting unicast VRRPv3 checksum to old version", self.runners[i].plan.name);
                self.runners[i].old_checksum = true;
            }
            let runner = &self.runners[i];
            // The advert happened when it reached the host: the backup's timers run from then,
            // not from when this thread got round to reading it.
            let read = Instant::now();
            let now = received.arrived.map_or(read, |at| at.min(read));
            let old = runner.machine.state();
            let ours = runner.machine.effective_priority();
            let actions =
                self.runners[i].machine.handle(Event::AdvertReceived { from: received.source, advert }, now);
            let new = self.runners[i].machine.state();
            self.status.update(i, |s| {
                s.stats.advert_rcvd += 1;
                s.stats.pri_zero_rcvd += u64::from(advert.priority == 0);
                // Outside MASTER, an advert accepted comes from the master.
                if new != State::Master && advert.priority != 0 {
                    s.master_address = Some(received.source);
                }
            });
            let runner = &self.runners[i];
            if old == State::Master && new == State::Backup {
                info!(
                    "({}) Master received advert from {} with higher priority {}, ours {ours}",
                    runner.plan.name, received.source, advert.priority
                );
            } else if old == State::Backup && advert.priority == 0 {
                info!("({}) Backup received priority 0 advertisement", runner.plan.name);
            }
            self.execute(i, actions).await;
            self.sync(i, old, now).await;
        }
        if !matched {
            if self.log_unknown_vrids {
                info!("advert for unknown VRID {} from {}", advert.vrid, received.source);
            } else {
                debug!("advert for unknown VRID {} from {}", advert.vrid, received.source);
            }
        }
    }

    async fn track(&mut self, update: TrackUpdate) {
        match update {
            TrackUpdate::Interface { name, up, polled } => {
                let before = self.track.interfaces.insert(name.clone(), up);
                if before == Some(up) {
                    return;
                }
                let by = if polled { "Linkbeat" } else { "Netlink" };
                info!("{by} reports {name} {}", if up { "up" } else { "down" });
            }
            TrackUpdate::Script { index, ok } => {
                let Some(script) = self.track.scripts.get_mut(index) else { return };
                if !script.record(ok) {
                    return;
                }
                let name = self.plan_scripts.get(index).map_or("?", String::as_str);
                info!("VRRP_Script({name}) {}", if ok { "succeeded" } else { "failed" });
            }
            TrackUpdate::File { index, value } => {
                let Some(slot) = self.track.files.get_mut(index) else { return };
                *slot = value;
            }
            TrackUpdate::Address(change) => {
                if !change.added {
                    self.vip_removed(change.ifindex, change.addr).await;
                }
                self.source_changed(change.ifindex, change.addr, change.added).await;
                let key = (change.ifindex, change.addr);
                let changed = if change.added {
                    self.track.addresses.insert(key)
                } else {
                    self.track.addresses.remove(&key)
                };
                let tracked = TrackedObject::Address { ifindex: change.ifindex, address: change.addr };
                // Our own VIPs come and go (and are renewed) here too: only a tracked source counts.
                if !changed
                    || !self.runners.iter().any(|r| r.plan.tracking.iter().any(|t| t.object == tracked))
                {
                    return;
                }
                let link = self.track_link_name(change.ifindex);
                if change.added {
                    info!("Netlink reports source address {} added to {link}", change.addr);
                } else {
                    info!("Netlink reports source address {} removed from {link}", change.addr);
                }
            }
            TrackUpdate::Bfd(states) => {
                if states == self.track.bfd {
                    return;
                }
                for (name, up) in &states {
                    if self.track.bfd.get(name) != Some(up) {
                        info!("VRRP_Track_BFD({name}) {}", if *up { "up" } else { "down" });
                    }
                }
                self.track.bfd = states;
            }
        }
        self.reevaluate().await;
    }

    /// The name of interface `ifindex` among those of the instances, for log lines.
    fn track_link_name(&self, ifindex: u32) -> String {
        self.runners
            .iter()
            .flat_map(|r| [&r.plan.base_interface, &r.plan.interface])
            .find(|l| l.index == ifindex)
            .map_or_else(|| format!("ifindex {ifindex}"), |l| l.name.clone())
    }

    /// Whether another member of `i`'s sync group is faulted by its own tracking.
    fn group_fault(&self, i: usize) -> bool {
        self.runners[i].plan.group.is_some_and(|g| {
            self.groups[g].plan.members.iter().any(|&j| j != i && self.runners[j].evaluation.fault)
        })
    }

    async fn reevaluate(&mut self) {
        let now = Instant::now();
        for i in 0..self.runners.len() {
            let evaluation = evaluate(&self.runners[i].plan.tracking, &self.track);
            let runner = &mut self.runners[i];
            if evaluation.adjustment != runner.evaluation.adjustment {
                let before = runner.machine.effective_priority();
                let actions = runner.machine.handle(Event::PriorityAdjustment(evaluation.adjustment), now);
                let after = runner.machine.effective_priority();
                if before != after {
                    info!("({}) Changing effective priority from {before} to {after}", runner.plan.name);
                    if runner.plan.notify_priority_changes {
                        let state = runner.machine.state();
                        self.notifier.priority_changed(Subject::Instance, &runner.plan.name, state, after);
                    }
                }
                runner.evaluation.adjustment = evaluation.adjustment;
                self.execute(i, actions).await;
            }
            self.runners[i].evaluation.fault = evaluation.fault;
        }
        for i in 0..self.runners.len() {
            let fault = self.runners[i].evaluation.fault || self.group_fault(i) || self.runners[i].no_source;
            if fault == self.runners[i].fault {
                continue;
            }
            self.runners[i].fault = fault;
            let actions = self.runners[i].machine.handle(Event::Fault(fault), now);
            self.execute(i, actions).await;
            if let Some(g) = self.runners[i].plan.group {
                self.update_group(g);
            }
        }
    }

    /// Moves the rest of `i`'s sync group after `i` went from `old` to its current state.
    async fn sync(&mut self, i: usize, old: State, now: Instant) {
        let Some(g) = self.runners[i].plan.group else { return };
        let new = self.runners[i].machine.state();
        let event = match (old, new) {
            (State::Backup, State::Master) => Some((Event::SyncMaster, State::Backup)),
            (State::Master, State::Backup) => Some((Event::SyncBackup, State::Master)),
            _ => None,
        };
        if let Some((event, from)) = event {
            let members: Vec<usize> = self.groups[g].plan.members.clone();
            for j in members.into_iter().filter(|&j| j != i) {
                if self.runners[j].machine.state() == from {
                    let actions = self.runners[j].machine.handle(event, now);
                    self.execute(j, actions).await;
                }
            }
        }
        self.update_group(g);
    }

    /// Notes a sync group's new state once all its members agree (any FAULT makes it FAULT).
    fn update_group(&mut self, g: usize) {
        let states: Vec<State> =
            self.groups[g].plan.members.iter().map(|&m| self.runners[m].machine.state()).collect();
        let new = if states.contains(&State::Fault) {
            State::Fault
        } else if let Some(&first) = states.first()
            && states.iter().all(|&s| s == first)
            && first != State::Init
        {
            first
        } else {
            return;
        };
        let group = &mut self.groups[g];
        if group.state == Some(new) {
            return;
        }
        group.state = Some(new);
        info!("VRRP_Group({}) Syncing instances to {new} state", group.plan.name);
        self.notifier.notify(&group.notify, Subject::Group, &group.plan.name, new, 0);
        if group.plan.smtp_alert
            && let Some(smtp) = &self.smtp
            && smtp::mail_due(new, group.last_mail, self.no_email_faults)
        {
            smtp::alert_group(smtp, &group.plan.name, new);
            group.last_mail = Some(new);
        }
    }

    /// Carries out `actions` of instance `i`, in order.
    async fn execute(&mut self, i: usize, actions: Vec<Action>) {
        self.execute_then(i, actions, None).await;
    }

    /// [`Engine::execute`], logging `line` (what led to the change of state) before the new
    /// state but after the takeover's VIPs or the stop's priority-0 advert.
    async fn execute_then(&mut self, i: usize, actions: Vec<Action>, line: Option<String>) {
        // Before anything of a step-down goes out: no standby advert may follow it.
        if self.runners[i].machine.state() != State::Master
            && let Some(standby) = &mut self.standby
        {
            standby.clear(i);
        }
        let state = actions.iter().find_map(|a| if let Action::Notify(s) = a { Some(*s) } else { None });
        let mut actions = actions.into_iter().peekable();
        // keepalived logs the new state before what it does about it, but the failover waits
        // for neither log line: the VIPs of a takeover and the priority-0 advert of a stop come
        // first (`cargo xtask bench vrrp`: the log writes were a tenth of a millisecond on the
        // orderly failover's path, on both hosts).
        if state.is_some()
            && let Some(first) = actions
                .next_if(|a| matches!(a, Action::AddVips | Action::SendAdvert { priority: PRIORITY_STOP }))
        {
            self.act(i, first).await;
        }
        if let Some(line) = line {
            info!("{line}");
        }
        if let Some(state) = state {
            let runner = &mut self.runners[i];
            let init = std::mem::take(&mut runner.init);
            let suffix = if init && state == State::Backup { " (init)" } else { "" };
            info!("({}) Entering {state} STATE{suffix}", runner.plan.name);
            let priority = runner.machine.effective_priority();
            let source = runner.machine.params().source_address;
            self.status.update(i, |s| {
                s.transitions += 1;
                s.source_address = Some(source);
                if state == State::Master {
                    s.master_address = Some(source);
                } else if s.master_address == Some(source) {
                    s.master_address = None;
                }
                if state == State::Master {
                    s.stats.become_master += 1;
                } else if s.state == State::Master.keepalived_name() {
                    s.stats.release_master += 1;
                }
                s.state = state.keepalived_name();
                s.effective_priority = priority;
                s.last_transition = epoch_now();
            });
            self.status.announce(i);
            self.status.state_changed(i, state.keepalived_name());
        }
        for action in actions {
            self.act(i, action).await;
        }
    }

    /// Carries out one action of instance `i`.
    async fn act(&mut self, i: usize, action: Action) {
        match action {
            Action::SendAdvert { priority } => {
                if priority == PRIORITY_STOP
                    && let Some(standby) = &mut self.standby
                {
                    standby.clear(i);
                }
                let sent = self.send_advert(i, priority).await;
                self.publish_standby(i, priority, sent);
                self.status.update(i, |s| {
                    s.stats.advert_sent += 1;
                    s.stats.pri_zero_sent += u64::from(priority == 0);
                    if priority != 0 {
                        s.effective_priority = priority;
                    }
                });
                let runner = &self.runners[i];
                if priority == 0 {
                    info!("({}) sent 0 priority", runner.plan.name);
                } else if runner.machine.state() == State::Master && runner.vips_installed {
                    self.renew_lease(i);
                    self.extra_gratuitous(i);
                }
            }
            Action::AddVips => {
                let runner = &mut self.runners[i];
                // keepalived 2.2.7 sets the drop rule before the addresses (vrrp_handle_accept_mode
                // IPADDRESS_ADD): a non-accepting MASTER must not answer on its VIPs, not even
                // for a moment.
                if runner.plan.no_accept
                    && !runner.firewall_blocked
                    && let Some(firewall) = &self.firewall
                {
                    info!("({}) setting firewall drop rule", runner.plan.name);
                    firewall.block(blocked(&runner.plan), FIREWALL_WAIT).await;
                    runner.firewall_blocked = true;
                }
                let lease = addr::lease(runner.machine.master_down_interval());
                addr::add(&self.netlink, &runner.plan.name, &runner.plan.vips, Lifetime::Lease(lease)).await;
                addr::add(&self.netlink, &runner.plan.name, &runner.plan.excluded, Lifetime::Lease(lease))
                    .await;
                addr::add_routes(&self.netlink, &runner.plan.name, &runner.plan.routes).await;
                addr::add_rules(&self.netlink, &runner.plan.name, &runner.plan.rules).await;
                info!("({}) setting VIPs.", runner.plan.name);
                runner.vips_installed = true;
                runner.lease_renewed = Some(Instant::now());
                runner.extra_garp_at =
                    runner.plan.garp_extra_if.as_ref().map(|g| Instant::now() + g.interval);
            }
            Action::RemoveVips => {
                // A renewal still queued must not put them back.
                self.renewer.flush().await;
                let runner = &mut self.runners[i];
                info!("({}) removing VIPs.", runner.plan.name);
                addr::remove_rules(&self.netlink, &runner.plan.name, &runner.plan.rules).await;
                addr::remove_routes(&self.netlink, &runner.plan.name, &runner.plan.routes).await;
                addr::remove(&self.netlink, &runner.plan.name, &runner.plan.vips).await;
                addr::remove(&self.netlink, &runner.plan.name, &runner.plan.excluded).await;
                if runner.firewall_blocked
                    && let Some(firewall) = &self.firewall
                {
                    info!("({}) removing firewall drop rule", runner.plan.name);
                    firewall.unblock(blocked(&runner.plan));
                    runner.firewall_blocked = false;
                }
                runner.vips_installed = false;
                runner.lease_renewed = None;
                runner.extra_garp_at = None;
            }
            Action::SendGratuitous { repeat } => {
                let runner = &self.runners[i];
                let vips: Vec<_> = runner.plan.vips.iter().chain(&runner.plan.excluded).cloned().collect();
                self.garp.send(&runner.plan.name, &vips, repeat);
            }
            Action::Notify(state) => {
                let runner = &mut self.runners[i];
                let priority = runner.machine.effective_priority();
                self.notifier.notify(&runner.notify, Subject::Instance, &runner.plan.name, state, priority);
                if runner.plan.smtp_alert
                    && let Some(smtp) = &self.smtp
                    && smtp::mail_due(state, runner.last_mail, self.no_email_faults)
                {
                    smtp::alert_instance(smtp, &runner.plan.name, state);
                    runner.last_mail = Some(state);
                }
            }
            Action::Discarded(reason) => match reason {
                DiscardReason::LowerPriority { .. } if self.runners[i].machine.state() == State::Master => {
                    let runner = &self.runners[i];
                    debug!("({}) advert discarded: {reason}", runner.plan.name);
                    let priority = runner.machine.effective_priority();
                    self.notifier.master_rx_lower_pri(&runner.notify, &runner.plan.name, priority);
                }
                // The protocol at work, not a problem.
                DiscardReason::LowerPriority { .. }
                | DiscardReason::NotListening { .. }
                | DiscardReason::OwnAddress => {
                    debug!("({}) advert discarded: {reason}", self.runners[i].plan.name);
                }
                reason => self.discarded(i, reason.to_string()),
            },
        }
    }

    /// A VIP of a MASTER instance went from `ifindex` without lbd removing it (`ip addr del`):
    /// [`Event::VipRemoved`], once the kernel confirms it is gone (the event may be that of an
    /// earlier removal of lbd's own, since put back).
    async fn vip_removed(&mut self, ifindex: u32, address: IpAddr) {
        let owners: Vec<usize> = (0..self.runners.len())
            .filter(|&i| {
                let runner = &self.runners[i];
                runner.vips_installed
                    && runner.machine.state() == State::Master
                    && runner
                        .plan
                        .vips
                        .iter()
                        .chain(&runner.plan.excluded)
                        .any(|v| v.address.ifindex == ifindex && v.address.addr == address)
            })
            .collect();
        if owners.is_empty() {
            return;
        }
        match self.netlink.addresses(ifindex).await {
            Ok(present) if present.iter().any(|a| a.addr == address) => return,
            Ok(_) => {}
            Err(e) => {
                warn!("cannot check whether VIP {address} is still there: {}", chain(&e));
                return;
            }
        }
        let link = self.track_link_name(ifindex);
        info!("Netlink reflector reports IP {address} removed from {link}");
        let now = Instant::now();
        for i in owners {
            let actions = self.runners[i].machine.handle(Event::VipRemoved, now);
            self.execute(i, actions).await;
        }
    }

    /// An address went from or came to `ifindex`: the instances whose source follows their
    /// interface's address (no `mcast_src_ip` / `unicast_src_ip`) follow it as keepalived 2.2.7
    /// does (measured with IPv4): their source gone, they send from another address of the
    /// interface, or without one go to FAULT ("Deassigned address"), until an address comes
    /// ("Assigned address"; BACKUP, then MASTER from the new source). IPv6 instances do the same
    /// with the link-local addresses of their interface (the VMAC's with use_vmac); one in
    /// duplicate address detection counts once the kernel says it is out of it (a second
    /// RTM_NEWADDR).
    async fn source_changed(&mut self, ifindex: u32, address: IpAddr, added: bool) {
        let following: Vec<usize> = (0..self.runners.len())
            .filter(|&i| {
                let runner = &self.runners[i];
                let plan = &runner.plan;
                let source = runner.machine.params().source_address;
                // Only what can change something: no netlink dump for every VIP renewal.
                let relevant = if added { runner.no_source } else { source == address };
                // IPv4 sources are the base interface's addresses (with use_vmac too), IPv6 ones
                // the link-local addresses of the interface the adverts go out of.
                let interface = match source {
                    IpAddr::V4(_) => plan.base_interface.index,
                    IpAddr::V6(_) => plan.interface.index,
                };
                relevant
                    && plan.source_follows_interface
                    && interface == ifindex
                    && address.is_ipv4() == source.is_ipv4()
            })
            .collect();
        if following.is_empty() {
            return;
        }
        let present = match self.netlink.addresses(ifindex).await {
            Ok(present) => present,
            Err(e) => {
                warn!("cannot read the addresses of interface {ifindex}: {}", chain(&e));
                return;
            }
        };
        let link = self.track_link_name(ifindex);
        // Any instance's VIP (another's may be blocked by our own drop rules) is no source.
        let vips: Vec<IpAddr> = self
            .runners
            .iter()
            .flat_map(|r| r.plan.vips.iter().chain(&r.plan.excluded).map(|v| v.address.addr))
            .collect();
        let is_present = |a: IpAddr| present.iter().any(|p| p.addr == a);
        let mut reevaluate = false;
        for i in following {
            let runner = &self.runners[i];
            let source = runner.machine.params().source_address;
            let replacement = if added {
                let usable = present.iter().any(|p| p.addr == address && usable_source(source, p));
                if !runner.no_source || vips.contains(&address) || !usable {
                    continue;
                }
                info!("Assigned address {address} for interface {link}");
                Some(address)
            } else {
                if address != source || runner.no_source || is_present(address) {
                    continue;
                }
                info!("Deassigned address {address} from interface {link}");
                replacement_source(source, &present, &vips)
            };
            let switched = replacement.is_some_and(|new| self.switch_source(i, new));
            // No address to send from (or no socket on it): FAULT, rather than adverts from an
            // address that has gone.
            if self.runners[i].no_source == switched {
                self.runners[i].no_source = !switched;
                reevaluate = true;
            }
        }
        if reevaluate {
            self.reevaluate().await;
        }
    }

    /// Instance `i` (and those sharing its socket) sends from `source` now: a socket bound to
    /// it replaces theirs. False if it cannot be opened.
    fn switch_source(&mut self, i: usize, source: IpAddr) -> bool {
        let index = self.runners[i].socket;
        let mut key = self.sockets[index].0.clone();
        key.source = source;
        match open_socket(&self.runners[i].plan, &key) {
            Ok(socket) => {
                info!("({}) adverts now from {source}", self.runners[i].plan.name);
                self.sockets[index] = (key, Arc::new(socket));
                set_rx_buf(&self.sockets[index].1, &self.runners, index);
                for runner in self.runners.iter_mut().filter(|r| r.socket == index) {
                    runner.machine.set_source_address(source);
                }
                true
            }
            Err(e) => {
                warn!("({}) cannot send from {source}: {e}", self.runners[i].plan.name);
                false
            }
        }
    }

    /// keepalived's notifies for instance `i`, deleted by a reload: its notify script and the
    /// FIFOs with FAULT (and a FAULT mail), or with `notify_deleted` DELETED and the
    /// `notify_deleted` script.
    fn deleted(&mut self, i: usize) {
        let runner = &mut self.runners[i];
        info!("({}) deleted by the reload", runner.plan.name);
        let priority = runner.machine.effective_priority();
        let notify_deleted = runner.plan.notify_deleted;
        self.notifier.deleted(&runner.notify, &runner.plan.name, priority, notify_deleted);
        if !notify_deleted
            && runner.plan.smtp_alert
            && let Some(smtp) = &self.smtp
            && smtp::mail_due(State::Fault, runner.last_mail, self.no_email_faults)
        {
            smtp::alert_instance(smtp, &runner.plan.name, State::Fault);
            runner.last_mail = Some(State::Fault);
        }
    }

    /// Logs an advert dropped for a mismatch: once at info level per new reason, as a
    /// misconfigured peer would otherwise fill the log at the advert rate.
    fn discarded(&mut self, i: usize, why: String) {
        self.status.update(i, |s| s.stats.discarded += 1);
        let runner = &mut self.runners[i];
        if runner.last_discard.as_deref() == Some(why.as_str()) {
            debug!("({}) advert dropped: {why}", runner.plan.name);
        } else {
            info!("({}) advert dropped: {why}", runner.plan.name);
            runner.last_discard = Some(why);
        }
    }

    async fn send_advert(&mut self, i: usize, priority: u8) -> Sent {
        let runner = &mut self.runners[i];
        advertise(
            &runner.plan,
            &runner.machine,
            &self.sockets[runner.socket].1,
            &mut runner.ah_sequence,
            runner.old_checksum,
            priority,
        )
        .await
    }

    /// Carries out an operator's command (the D-Bus interface's).
    fn command(&mut self, command: super::Command) {
        match command {
            super::Command::SendGratuitous { instance, done } => {
                let Some(runner) = self.runners.iter().find(|r| r.plan.name == instance) else {
                    let _ = done.send(false);
                    return;
                };
                info!("Sending garps on {instance} on DBus request");
                // keepalived's vrrp_send_link_update(vrrp, 1): one round, only while the VIPs
                // are set (MASTER); otherwise nothing, and still a success.
                if runner.vips_installed {
                    let vips: Vec<_> =
                        runner.plan.vips.iter().chain(&runner.plan.excluded).cloned().collect();
                    self.garp.send(&runner.plan.name, &vips, 1);
                }
                let _ = done.send(true);
            }
        }
    }

    /// Gives the standby sender the advert a MASTER just `sent` and when its next one is due
    /// (not for `auth_type AH`: each advert has its own sequence number).
    fn publish_standby(&mut self, i: usize, priority: u8, sent: Sent) {
        let runner = &self.runners[i];
        let (Some(standby), Some(due)) = (&mut self.standby, runner.machine.next_advert()) else { return };
        if priority == PRIORITY_STOP
            || matches!(runner.machine.params().authentication, Authentication::Ah(_))
        {
            return;
        }
        let advert = standby::Advert {
            name: runner.lease_name.clone(),
            advert: sent.advert,
            socket: self.sockets[runner.socket].1.clone(),
            destinations: sent.destinations,
            old_checksum: runner.old_checksum,
        };
        standby.publish(i, advert, due, runner.machine.params().advert_interval);
    }

    /// `garp_extra_if`, checked as a MASTER sends an advert (as keepalived does): once its
    /// interval has gone by, one gratuitous ARP / NA on each interface of its VIPs, for the first
    /// VIP there, skipping interfaces lbd did not create (use_vmac) unless `all`, and its own
    /// interface unless `vmac_xmit_base`.
    fn extra_gratuitous(&mut self, i: usize) {
        let now = Instant::now();
        let runner = &mut self.runners[i];
        let (Some(extra), Some(at)) = (&runner.plan.garp_extra_if, runner.extra_garp_at) else { return };
        if at > now {
            return;
        }
        runner.extra_garp_at = Some(now + extra.interval);
        let xmit_base = runner.plan.vmac.as_ref().is_some_and(|v| v.xmit_base);
        let mut interfaces = Vec::new();
        let mut vips = Vec::new();
        for vip in runner.plan.vips.iter().chain(&runner.plan.excluded) {
            let ifindex = vip.address.ifindex;
            if (!self.vmacs.iter().any(|(index, _)| *index == ifindex) && !extra.all)
                || (ifindex == runner.plan.vip_interface && !xmit_base)
                || interfaces.contains(&ifindex)
            {
                continue;
            }
            interfaces.push(ifindex);
            vips.push(vip.clone());
        }
        self.garp.send(&runner.plan.name, &vips, 1);
    }

    /// Renews the VIP lease if a quarter of it has gone by, without waiting for the kernel
    /// ([`Renewer`]).
    fn renew_lease(&mut self, i: usize) {
        let now = Instant::now();
        let runner = &mut self.runners[i];
        let lease = addr::lease(runner.machine.master_down_interval());
        if runner.lease_renewed.is_some_and(|at| !addr::renewal_due(lease, now.saturating_duration_since(at)))
        {
            return;
        }
        self.renewer.renew(&runner.lease_name, &runner.lease_vips, lease);
        runner.lease_renewed = Some(now);
    }

    async fn stop(mut self, kind: StopKind) {
        // Before any priority-0 advert, and for -V and a reload's silent stop too: nothing of
        // this engine is sent from now on.
        if let Some(mut standby) = self.standby.take() {
            standby.stop();
        }
        let now = Instant::now();
        let mut handoff = self.handoff.lock().map(|h| h.clone()).unwrap_or_default();
        handoff.held.clear();
        let next_vmacs = std::mem::take(&mut handoff.next_vmacs);
        let next_vmac_parents = std::mem::take(&mut handoff.next_vmac_parents);
        // A VMAC the next engine wants as it is (same parent and MAC, not only the same name).
        let vmac_keys = std::mem::take(&mut self.vmac_keys);
        let kept_vmac = |name: &str| vmac_keys.iter().any(|key| key.name == name && next_vmacs.contains(key));
        let mut rest = Vec::new();
        let mut deleted = Vec::new();
        for i in 0..self.runners.len() {
            let name = &self.runners[i].plan.name;
            let kind = match handoff.kept.get_mut(name) {
                Some(state) if kind == StopKind::Handoff => {
                    // Silent: the next engine takes the instance over as it is (or stops it
                    // in order if it cannot start).
                    let runner = &self.runners[i];
                    *state = runner.machine.state();
                    if *state == State::Master && runner.vips_installed {
                        let vmac = runner
                            .plan
                            .vmac
                            .as_ref()
                            .and_then(|v| self.vmacs.iter().find(|(_, name)| *name == v.name).cloned());
                        handoff.held.push(Held {
                            plan: runner.plan.clone(),
                            machine: runner.machine.clone(),
                            socket: self.sockets[runner.socket].1.clone(),
                            ah_sequence: runner.ah_sequence,
                            old_checksum: runner.old_checksum,
                            vmac,
                        });
                    }
                    continue;
                }
                _ if kind == StopKind::Handoff => {
                    if !handoff.next.contains(name) {
                        deleted.push(i);
                    }
                    StopKind::Orderly
                }
                _ => kind,
            };
            match kind {
                StopKind::Orderly | StopKind::Handoff => {
                    let mut actions = self.runners[i].machine.handle(Event::Shutdown, now);
                    if deleted.contains(&i) {
                        // Its notifies are keepalived's for a deleted instance, not STOP's
                        // (nor an "Entering" line).
                        actions.retain(|a| !matches!(a, Action::Notify(_)));
                    }
                    // Every master's priority-0 advert before anything else (another
                    // instance's VIP removal, log lines): the backups' Skew_Time starts with it.
                    if actions.first() == Some(&Action::SendAdvert { priority: PRIORITY_STOP }) {
                        let advert = actions.remove(0);
                        self.act(i, advert).await;
                    }
                    rest.push((i, actions));
                }
                StopKind::KeepVips => {
                    // -V: nothing is sent and the VIPs stay, for good (not on a lease).
                    self.renewer.flush().await;
                    let runner = &self.runners[i];
                    if runner.vips_installed {
                        info!("({}) keeping VIPs (-V).", runner.plan.name);
                        addr::add(&self.netlink, &runner.plan.name, &runner.plan.vips, Lifetime::Forever)
                            .await;
                        addr::add(&self.netlink, &runner.plan.name, &runner.plan.excluded, Lifetime::Forever)
                            .await;
                    }
                    let priority = runner.machine.effective_priority();
                    self.notifier.notify(
                        &runner.notify,
                        Subject::Instance,
                        &runner.plan.name,
                        State::Stop,
                        priority,
                    );
                }
            }
        }
        info!("Stopping VRRP");
        for (i, actions) in rest {
            self.execute(i, actions).await;
        }
        for i in deleted {
            self.deleted(i);
        }
        // After the adverts: the backups should not wait for us.
        for task in self.tasks.drain(..) {
            task.abort();
        }
        // A reload keeping a non-accepting MASTER keeps the tables: its VIPs stay protected
        // until the next engine replaces them.
        // So does one keeping VMACs: the rules that send their IGMP / MLD reports through their
        // parents stay while this engine's sockets leave their groups, and until the next
        // engine's first transaction replaces the tables.
        let keep_tables = kind == StopKind::Handoff
            && (self.runners.iter().any(|r| {
                r.plan.no_accept && r.vips_installed && handoff.kept.get(&r.plan.name) == Some(&State::Master)
            }) || self.vmacs.iter().any(|(_, name)| kept_vmac(name)));
        handoff.firewall_table = self.firewall.as_ref().filter(|_| keep_tables).map(|f| f.table().to_owned());
        if let Ok(mut shared) = self.handoff.lock() {
            *shared = handoff;
        }
        if kind != StopKind::Handoff {
            for group in &self.groups {
                self.notifier.notify(&group.notify, Subject::Group, &group.plan.name, State::Stop, 0);
            }
        }
        self.notifier.close(STOP_NOTIFY_WAIT).await;
        // keepalived deletes its tables as it stops; a reload's next engine makes them anew
        // for the instances it keeps in MASTER.
        if let Some(firewall) = self.firewall.take() {
            if keep_tables { firewall.leave().await } else { firewall.close().await }
        }
        // A reload's next engine has them (the sockets that close with this engine leave their
        // groups unreported, and its own join unreported).
        let ipv4 = std::mem::take(&mut self.restore_ipv4);
        if kind == StopKind::Handoff {
            if let Ok(mut shared) = self.handoff.lock() {
                shared.ipv4_settings = ipv4;
            }
        } else {
            restore_ipv4(&ipv4);
        }
        // A reload's next engine sets them again if its configuration still asks, except the
        // settings on the interfaces of the VMACs it keeps: those stay (their parents must not
        // answer ARP for the VIPs on them) and it puts them back. -V leaves the VMACs, so those
        // settings too.
        let (kept, restored): (Vec<ConfSetting>, Vec<ConfSetting>) =
            std::mem::take(&mut self.restore_conf).into_iter().partition(|(interface, key, _)| {
                let vmac_parent = ["arp_ignore", "arp_filter"].contains(key);
                match kind {
                    StopKind::Handoff => vmac_parent && next_vmac_parents.contains(interface),
                    StopKind::KeepVips => vmac_parent,
                    StopKind::Orderly => false,
                }
            });
        restore_conf(&restored);
        if kind == StopKind::Handoff
            && let Ok(mut shared) = self.handoff.lock()
        {
            shared.vmac_parent_conf = kept;
        }
        // A reload leaves the next engine the VMACs it has too (their VIPs on them), and
        // removes the others (their instances deleted, or without use_vmac now).
        for (index, name) in self.vmacs {
            match kind {
                StopKind::Orderly => remove_vmac(&self.netlink, index, &name).await,
                StopKind::Handoff if !kept_vmac(&name) => {
                    remove_vmac(&self.netlink, index, &name).await;
                }
                StopKind::Handoff | StopKind::KeepVips => {}
            }
        }
        info!("VRRP stopped");
    }
}

/// Makes (or finds) the use_vmac macvlan or use_ipvlan ipvlan `wanted`, in its parent's VRF if
/// the parent is in one (keepalived's IFLA_MASTER), with the ipvlan's address on it.
async fn make_vmac(
    netlink: &Netlink,
    wanted: &VmacWanted,
) -> Result<(crate::netlink::Link, bool), NetlinkError> {
    let parent = netlink.link_by_name(&wanted.parent).await?;
    let vrf = match parent.controller {
        Some(controller) => netlink
            .links()
            .await?
            .into_iter()
            .find(|l| l.index == controller && l.kind.as_deref() == Some("vrf"))
            .map(|l| l.index),
        None => None,
    };
    if let Some(ipvlan) = &wanted.ipvlan {
        let (link, created) = netlink.create_ipvlan(&wanted.name, parent.index, ipvlan.flag, vrf).await?;
        if let Some(address) = ipvlan.address {
            let address = InterfaceAddress {
                ifindex: link.index,
                addr: address.addr,
                prefix_len: address.len,
                broadcast: None,
                scope: Scope::Global,
                label: None,
            };
            netlink.add_address(&address, Lifetime::Forever).await?;
        }
        return Ok((link, created));
    }
    // keepalived (vrrp_vmac.c) gives an IPv6 macvlan the parent's link-local address, or makes
    // one from the parent's MAC.
    let link_local = if wanted.ipv6 {
        let existing = netlink.addresses(parent.index).await?.into_iter().find_map(|a| match a.addr {
            IpAddr::V6(a6) if a6.is_unicast_link_local() => Some(a6),
            _ => None,
        });
        let mac = <[u8; 6]>::try_from(parent.mac.as_slice()).unwrap_or_default();
        Some(existing.unwrap_or_else(|| link_local_from_mac(mac)))
    } else {
        None
    };
    netlink.create_vmac(&wanted.name, parent.index, wanted.mac, vrf, link_local).await
}

/// Removes use_vmac interface `name` (index `index`), logged.
async fn remove_vmac(netlink: &Netlink, index: u32, name: &str) {
    match netlink.delete_link(index).await {
        Ok(_) => info!("(vmac) {name} removed"),
        Err(e) => warn!("cannot remove vmac interface {name}: {}", chain(&e)),
    }
}

/// An advert as [`advertise`] sent it, and where.
struct Sent {
    advert: VrrpAdvert,
    destinations: Vec<IpAddr>,
}

/// Sends instance `plan`'s advert at `priority` from `socket` to its group or peers; what it
/// sent (the standby sender keeps it).
async fn advertise(
    plan: &InstancePlan,
    machine: &Instance,
    socket: &VrrpSocket,
    ah_sequence: &mut ah::Sequence,
    old_checksum: bool,
    priority: u8,
) -> Sent {
    let sequence = ah_sequence.next();
    let advert = machine.advert(priority);
    let signing = match &machine.params().authentication {
        Authentication::Ah(key) => {
            Some(AhSigning { key, sequence, unicast: matches!(plan.transport, Transport::Unicast { .. }) })
        }
        _ => None,
    };
    let destinations = destinations(plan);
    for &destination in &destinations {
        if let Err(e) = socket.send(&advert, destination, signing, old_checksum).await {
            warn!("({}) advert to {destination} not sent: {e}", plan.name);
        }
    }
    Sent { advert, destinations }
}

/// Where instance `plan`'s adverts go: its group, or its unicast peers.
fn destinations(plan: &InstancePlan) -> Vec<IpAddr> {
    match &plan.transport {
        Transport::Multicast { group } => vec![*group],
        Transport::Unicast { peers, .. } => peers.iter().map(|p| p.address).collect(),
    }
}

/// A MASTER a reload keeps, as the engine that stopped left it (advertising no more, its VIPs
/// still on their lease): what the next engine needs to stop it in order if it cannot start
/// ([`release_held`]), as keepalived's stop would have.
#[derive(Debug, Clone)]
pub struct Held {
    plan: InstancePlan,
    machine: Instance,
    socket: Arc<VrrpSocket>,
    ah_sequence: ah::Sequence,
    old_checksum: bool,
    /// Its use_vmac interface (index, name), if it has one.
    vmac: Option<(u32, String)>,
}

/// The MASTERs a reload kept, stopped as an orderly stop stops them, for a next engine that
/// cannot start: every priority-0 advert first (the backups take over at once), then their
/// VIPs, routes and rules go. Returns their VMACs, for the caller to remove next.
async fn release_held(netlink: &Netlink, held: Vec<Held>) -> Vec<(u32, String)> {
    let mut held = held;
    for h in &mut held {
        advertise(&h.plan, &h.machine, &h.socket, &mut h.ah_sequence, h.old_checksum, PRIORITY_STOP).await;
        info!("({}) sent 0 priority", h.plan.name);
    }
    let mut vmacs = Vec::new();
    for h in held {
        info!("({}) removing VIPs.", h.plan.name);
        addr::remove_rules(netlink, &h.plan.name, &h.plan.rules).await;
        addr::remove_routes(netlink, &h.plan.name, &h.plan.routes).await;
        addr::remove(netlink, &h.plan.name, &h.plan.vips).await;
        addr::remove(netlink, &h.plan.name, &h.plan.excluded).await;
        vmacs.extend(h.vmac);
    }
    vmacs
}

/// What instance `plan` blocks while MASTER: its VIPs, excluded ones included.
fn blocked(plan: &InstancePlan) -> Vec<Blocked> {
    plan.vips.iter().chain(&plan.excluded).map(|vip| Blocked::of(vip, plan.link_local_by_name)).collect()
}

/// `vrrp_startup_delay`: when the delay that began with the first VRRP engine of this process
/// ends, if it has not yet. As keepalived's `vrrp_delayed_start_time`, it is set at startup and
/// not again by a reload (a reload during the delay keeps its end).
fn startup_hold(delay: Option<Duration>) -> Option<Instant> {
    static FIRST_START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let first = *FIRST_START.get_or_init(Instant::now);
    let delay = delay?;
    let until = first + delay;
    if until <= Instant::now() {
        return None;
    }
    info!("Delaying startup for {} seconds", delay.as_secs_f64());
    Some(until)
}

/// `notify_fifo` and `vrrp_notify_fifo` with their reader scripts (one that cannot run is
/// logged and left out).
fn fifos<'a>(
    config: &'a Config,
    policy: &super::script::ScriptPolicy,
) -> Vec<(&'a str, Option<super::script::PreparedScript>)> {
    let global = &config.global_defs;
    [
        (&global.notify_fifo, &global.notify_fifo_script, "notify_fifo_script"),
        (&global.vrrp_notify_fifo, &global.vrrp_notify_fifo_script, "vrrp_notify_fifo_script"),
    ]
    .into_iter()
    .filter_map(|(fifo, script, keyword)| {
        let fifo = fifo.as_ref()?;
        let script = script.as_ref().and_then(|script| match policy.prepare(script) {
            Ok(prepared) => Some(prepared),
            Err(e) => {
                warn!("{keyword} disabled: {e}");
                None
            }
        });
        Some((fifo.path.as_str(), script))
    })
    .collect()
}

/// Every interface and its addresses.
pub(crate) async fn read_host(netlink: &Netlink) -> Result<HostView, crate::netlink::NetlinkError> {
    let links = netlink.links().await?;
    let mut host = HostView { links, ..HostView::default() };
    for link in &host.links {
        let addresses = netlink.addresses(link.index).await?;
        host.tentative.extend(addresses.iter().filter(|a| a.tentative).map(|a| (link.index, a.addr)));
        host.addresses.insert(link.index, addresses.into_iter().map(|a| a.addr).collect());
    }
    Ok(host)
}

/// Sets the receive buffer of socket `index` to the sum of its instances' shares, if any.
fn set_rx_buf(socket: &VrrpSocket, runners: &[Runner], index: usize) {
    let bytes = runners
        .iter()
        .filter(|r| r.socket == index)
        .fold(0u32, |sum, r| sum.saturating_add(r.plan.rx_buf_size));
    if bytes > 0
        && let Err(e) = socket.set_receive_buffer(bytes)
    {
        warn!("cannot set the receive buffer of a VRRP socket to {bytes} bytes: {e}");
    }
}

fn open_socket(instance: &InstancePlan, key: &SocketKey) -> std::io::Result<VrrpSocket> {
    let interface = &instance.interface;
    match key.source {
        IpAddr::V4(source) => {
            let group = match key.group {
                Some(IpAddr::V4(g)) => Some(g),
                _ => None,
            };
            VrrpSocket::open_v4(&interface.name, interface.index, source, group, key.ah)?
                .with_unicast_ttl(key.ttl)
        }
        IpAddr::V6(source) => {
            let group = match key.group {
                Some(IpAddr::V6(g)) => Some(g),
                _ => None,
            };
            VrrpSocket::open_v6(&interface.name, interface.index, source, group)?.with_unicast_ttl(key.ttl)
        }
    }
}

/// The next advert any of `sockets` holds (read in the engine's task: no hop through a reader
/// task and a channel per advert), with the index of its socket.
fn poll_sockets(
    sockets: &[(SocketKey, Arc<VrrpSocket>)],
    cx: &mut std::task::Context<'_>,
) -> std::task::Poll<(usize, std::io::Result<Received>)> {
    for (index, (_, socket)) in sockets.iter().enumerate() {
        if let std::task::Poll::Ready(result) = socket.poll_recv(cx) {
            return std::task::Poll::Ready((index, result));
        }
    }
    std::task::Poll::Pending
}

/// Writes `net.ipv4.conf.INTERFACE.KEY` (logged on failure).
fn set_ipv4_conf(interface: &str, key: &str, value: &str) {
    if let Err(e) = sysctl::set_ipv4_conf(interface, key, value) {
        warn!("cannot set {key} of {interface} to {value}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::addr::InstalledAddress;

    fn address(last: u8, secondary: bool) -> InstalledAddress {
        InstalledAddress {
            ifindex: 2,
            addr: IpAddr::from([10, 0, 0, last]),
            prefix_len: 24,
            valid_left: None,
            secondary,
            tentative: false,
        }
    }

    #[test]
    fn the_replacement_source_is_no_instance_s_vip_and_a_primary_address_first() {
        let v6 =
            InstalledAddress { addr: IpAddr::from([0xfd00_u16, 0, 0, 0, 0, 0, 0, 1]), ..address(0, false) };
        // Another instance's VIP (10.0.0.100) came first; 10.0.0.7 is a secondary.
        let present = [v6, address(100, false), address(7, true), address(8, false)];
        let vips = [IpAddr::from([10, 0, 0, 100])];
        let source = IpAddr::from([10, 0, 0, 1]);
        assert_eq!(replacement_source(source, &present, &vips), Some(IpAddr::from([10, 0, 0, 8])));
        assert_eq!(replacement_source(source, &present[..3], &vips), Some(IpAddr::from([10, 0, 0, 7])));
        assert_eq!(replacement_source(source, &present[..2], &vips), None);
    }

    #[test]
    fn an_ipv6_source_is_replaced_by_a_link_local_address_out_of_duplicate_address_detection() {
        let v6 = |segments: [u16; 8], tentative: bool| InstalledAddress {
            addr: IpAddr::from(segments),
            prefix_len: 64,
            tentative,
            ..address(0, false)
        };
        let source = IpAddr::from([0xfe80_u16, 0, 0, 0, 0, 0, 0, 1]);
        let global = v6([0xfd00, 0, 0, 0, 0, 0, 0, 9], false);
        let vip = v6([0xfe80, 0, 0, 0, 0, 0, 0, 0x77], false);
        let tentative = v6([0xfe80, 0, 0, 0, 0, 0, 0, 8], true);
        let ready = v6([0xfe80, 0, 0, 0, 0, 0, 0, 9], false);
        let vips = [vip.addr];
        // Neither an IPv4 address, a global one, a VIP nor one in DAD.
        let mut present = vec![address(8, false), global, vip, tentative];
        assert_eq!(replacement_source(source, &present, &vips), None);
        present.push(ready);
        assert_eq!(
            replacement_source(source, &present, &vips),
            Some(IpAddr::from([0xfe80_u16, 0, 0, 0, 0, 0, 0, 9]))
        );
    }
}
