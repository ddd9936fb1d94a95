//! The VRRP engine (RFC 5798 VRRPv3, RFC 3768 VRRPv2), compatible with keepalived 2.2.7.
//!
//! It is layered like rustls: the wire format and the protocol logic know nothing of sockets or
//! clocks, so that they are tested byte for byte and transition by transition, and the layers
//! that do I/O stay thin.
//!
//! - [`packet`]: the advert codec. Decodes VRRPv2/v3 adverts over IPv4/IPv6 into types that
//!   cannot hold an invalid message and returns a typed [`packet::VrrpPacketError`] for anything
//!   malformed; encodes them (and keepalived's IPv4 header) to the bytes keepalived sends.
//!   Checksums, including the v3 pseudo-header, live here.
//! - [`state`]: the sans-IO state machine of RFC 5798 §6 with keepalived's extensions
//!   (preempt_delay, nopreempt, lower_prio_no_advert, tracking weights, FAULT, sync groups). An
//!   [`state::Instance`] takes [`state::Event`]s stamped with the time and returns
//!   [`state::Action`]s; it never reads a clock or touches the network.
//! - [`config`]: keepalived's `vrrp_instance` / `vrrp_sync_group` / `vrrp_script` /
//!   `track_file` model mapped onto what the runtime runs (pure, given the host's interfaces).
//! - [`socket`] (raw VRRP sockets; [`ah`] signs and checks `auth_type AH`), [`garp`] (gratuitous ARP / unsolicited NA frames),
//!   [`addr`] (VIPs on a kernel lease, virtual routes), [`firewall`] (`no_accept` through nftables), [`track`] (interfaces, scripts, files →
//!   FAULT and priority), [`script`] and [`notify`] (notify scripts as keepalived runs them),
//!   [`smtp`] (`smtp_alert`), [`statics`] (`static_ipaddress`, `static_routes`).
//! - [`dbus`]: keepalived's D-Bus interface (`enable_dbus`), fed by the engine's
//!   [`status::StatusEvent`]s; what it is asked to do comes back as [`Command`]s.
//! - [`standby`]: a second sender of a MASTER's adverts, off the engine thread's CPU, for when
//!   that CPU is stopped.
//! - [`engine`]: the task that ties them together; [`run`] is the daemon's entry point; its
//!   deadlines wait on a [`timer::Timer`] (a timerfd, to the nanosecond).
//!
//! Data flow for a received advert: socket → [`packet::Ipv4VrrpPacket::decode`] (or
//! [`packet::VrrpAdvert::decode`] for IPv6) → TTL / unicast peer checks → dispatch by VRID →
//! [`state::Instance::handle`] → actions → socket / addr / notify. The instance builds the adverts
//! it asks to send ([`state::Instance::advert`]); the socket encodes them per destination, since
//! the v3 checksum covers the destination address.

pub mod addr;
pub mod ah;
pub mod config;
pub mod dbus;
pub mod engine;
pub mod firewall;
pub mod garp;
pub mod notify;
pub mod packet;
pub mod sched;
pub mod script;
pub mod smtp;
pub mod socket;
pub mod standby;
pub mod state;
pub mod statics;
pub mod status;
pub mod timer;
pub mod track;

pub use engine::run;

use crate::netlink::NetlinkError;

/// How the daemon stops VRRP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StopKind {
    /// SIGTERM / SIGINT: every MASTER sends a priority-0 advert (RFC 5798 §6.4.3 Shutdown) and
    /// removes its VIPs and routes at once; notify_stop scripts run.
    Orderly,
    /// `-V` / `--dont-release-vrrp`: nothing is sent and the VIPs and routes stay, made
    /// permanent (they were on a lease).
    #[doc(alias = "dont-release-vrrp")]
    KeepVips,
    /// A reload: the instances named in the task's hand-off stop silently, their VIPs left in
    /// place on their lease, and record their state there for the next engine; the others
    /// stop as [`StopKind::Orderly`], except those the new configuration no longer has, which
    /// are deleted as keepalived does (priority-0 advert, VIPs removed, notify FAULT or, with
    /// `notify_deleted`, DELETED; no notify_stop).
    Handoff,
}

/// What an operator asks of the running engine ([`VrrpTask::command`]).
#[derive(Debug)]
pub enum Command {
    /// One round of gratuitous ARPs / unsolicited NAs for the VIPs of `instance`, if it holds
    /// them (keepalived's D-Bus `SendGarp`). `done` gets whether the instance exists.
    #[doc(alias = "SendGarp")]
    SendGratuitous {
        /// The instance's name.
        instance: String,
        /// Answered once the frames are queued.
        done: tokio::sync::oneshot::Sender<bool>,
    },
}

/// The part of the configuration VRRP runs from: everything but the virtual servers.
fn vrrp_part(config: &crate::config::Config) -> crate::config::Config {
    let mut part = config.clone();
    part.virtual_servers.clear();
    part.virtual_server_groups.clear();
    part.local_address_groups.clear();
    part.ssl = None;
    part.global_defs.lvs_timeouts = None;
    part
}

/// What a reload hands from one engine to the next ([`StopKind::Handoff`]).
#[derive(Debug, Clone, Default)]
pub struct Reload {
    /// Instance name → its state when the previous engine stopped, for the instances the reload
    /// leaves unchanged.
    pub kept: std::collections::HashMap<String, state::State>,
    /// The instances of the configuration being loaded: the others are deleted (their notify
    /// scripts get keepalived's FAULT, or DELETED with `notify_deleted`).
    pub next: std::collections::HashSet<String>,
    /// The nftables tables the previous engine left for its kept non-accepting MASTERs and its
    /// kept VMACs: the next engine replaces them in its first transaction, or deletes them if
    /// it has none of that name.
    pub firewall_table: Option<String>,
    /// The use_vmac interfaces the configuration being loaded has: the previous engine removes
    /// its others, and leaves these to the next engine, which finds them as they are (same
    /// interface, its VIPs still on it).
    /// Matched on their name, parent, MAC, family and ipvlan settings: one of the same name on
    /// another interface, of the other family, or another kind, is made anew.
    pub next_vmacs: std::collections::HashSet<VmacKey>,
    /// The interfaces those VMACs are on.
    pub next_vmac_parents: std::collections::HashSet<String>,
    /// `net.ipv4.conf` settings the previous engine changed on those interfaces (`arp_ignore`,
    /// `arp_filter`), left as they are through the reload, with their values before lbd: the
    /// next engine puts them back as it stops.
    pub vmac_parent_conf: Vec<ConfSetting>,
    /// `net.ipv4` settings the previous engine changed (`disable_local_igmp`), left as they are
    /// through the reload (its sockets leave their groups unreported), with their values before
    /// lbd: the next engine puts them back as it stops, or at once if its configuration no
    /// longer asks for them.
    pub ipv4_settings: Vec<Ipv4Setting>,
    /// The instances the previous engine kept in MASTER, with their VIPs and advert sockets:
    /// if the next engine cannot start, it sends their priority-0 adverts and removes their
    /// VIPs (as an orderly stop does) rather than leaving the VIPs with nobody advertising.
    pub held: Vec<engine::Held>,
}

/// A use_vmac (or use_ipvlan) interface as the configuration wants it: its name, parent, MAC,
/// family and ipvlan settings.
pub type VmacKey = config::VmacWanted;

/// A `net.ipv4.KEY` setting lbd changed: (key, the value before).
pub type Ipv4Setting = (&'static str, String);

/// A `net.ipv4.conf.INTERFACE.KEY` setting lbd changed: (interface, key, the value before).
pub type ConfSetting = (String, &'static str, String);

/// The [`Reload`] shared by the engine that stops and the one that starts.
pub type Handoff = std::sync::Arc<std::sync::Mutex<Reload>>;

/// Why the VRRP engine could not run.
#[derive(Debug, thiserror::Error)]
pub enum VrrpError {
    /// Reading the interfaces or subscribing to link events failed.
    #[error("VRRP needs rtnetlink")]
    Netlink(#[source] NetlinkError),
    /// The configuration has VRRP instances but none of them can run.
    #[error("no VRRP instance can run (see the errors above)")]
    NoInstance,
    /// The engine's task panicked (a bug).
    #[error("the VRRP task failed: {0}")]
    Panicked(String),
}

/// The VRRP engine running as a task of the daemon: [`VrrpTask::spawn`] at startup,
/// [`VrrpTask::stop`] on SIGTERM / SIGINT, before the data plane goes.
#[derive(Debug)]
pub struct VrrpTask {
    stop: tokio::sync::watch::Sender<Option<StopKind>>,
    task: tokio::task::JoinHandle<Result<(), VrrpError>>,
    status: status::VrrpStatus,
    config: crate::config::Config,
    netlink: crate::netlink::Netlink,
    handoff: Handoff,
    bfd: tokio::sync::watch::Receiver<crate::bfd::BfdStates>,
    commands: tokio::sync::mpsc::UnboundedSender<Command>,
    /// Where the engine's changes of state go (the D-Bus interface), kept across reloads.
    events: Option<status::StatusEvents>,
}

impl VrrpTask {
    /// Runs the VRRP instances of `config` on the current tokio runtime; `bfd` gives the BFD
    /// sessions' states for `track_bfd`.
    /// `events`, if given, gets every engine's instances and changes of state, this one's and
    /// those of the engines reloads start.
    pub fn spawn(
        config: crate::config::Config,
        netlink: crate::netlink::Netlink,
        bfd: tokio::sync::watch::Receiver<crate::bfd::BfdStates>,
        events: Option<status::StatusEvents>,
    ) -> Self {
        Self::spawn_after(config, netlink, Handoff::default(), bfd, events)
    }

    fn spawn_after(
        config: crate::config::Config,
        netlink: crate::netlink::Netlink,
        handoff: Handoff,
        bfd: tokio::sync::watch::Receiver<crate::bfd::BfdStates>,
        events: Option<status::StatusEvents>,
    ) -> Self {
        let (stop, stopped) = tokio::sync::watch::channel(None);
        let (commands, engine_commands) = tokio::sync::mpsc::unbounded_channel();
        let status = status::VrrpStatus::with_events(events.clone());
        let engine_status = status.clone();
        let (engine_config, engine_netlink, engine_handoff, engine_bfd) =
            (config.clone(), netlink.clone(), handoff.clone(), bfd.clone());
        let task = tokio::spawn(async move {
            let result = run(
                &engine_config,
                engine_netlink,
                engine_status,
                engine_handoff,
                stopped,
                engine_bfd,
                engine_commands,
            )
            .await;
            if let Err(e) = &result {
                // Said now, not only when the daemon stops.
                tracing::error!("VRRP: {}", addr::chain(e));
            }
            result
        });
        VrrpTask { stop, task, status, config, netlink, handoff, bfd, commands, events }
    }

    /// Passes `command` to the engine. An engine that has ended drops it (its `done` then
    /// reads as closed).
    pub fn command(&self, command: Command) {
        let _ = self.commands.send(command);
    }

    /// Reloads with `config`: nothing happens when VRRP's part of the configuration is the same
    /// (unless `fifo_write_vrrp_states_on_reload`);
    /// otherwise the engine restarts, and every instance whose own configuration did not change
    /// (while the global settings, scripts, tracked files and sync groups stayed the same) keeps
    /// its state: a MASTER stays MASTER without a priority-0 advert, a gap in its VIPs or a
    /// notify. The others stop in order and start afresh (keepalived#2159, #1425).
    pub async fn reload(self, config: crate::config::Config) -> Result<Self, VrrpError> {
        // fifo_write_vrrp_states_on_reload: every reload tells the FIFOs the states, which the
        // engine does as it starts (the instances being kept, nothing else changes).
        if vrrp_part(&config) == vrrp_part(&self.config)
            && !config.global_defs.fifo_write_vrrp_states_on_reload
        {
            tracing::info!("VRRP configuration unchanged: every instance keeps its state");
            return Ok(self);
        }
        let old = &self.config;
        let shared_same = old.global_defs == config.global_defs
            && old.vrrp_scripts == config.vrrp_scripts
            && old.track_files == config.track_files
            && old.vrrp_sync_groups == config.vrrp_sync_groups
            && old.track_processes == config.track_processes;
        let mut kept = Vec::new();
        if let Ok(mut reload) = self.handoff.lock() {
            reload.kept.clear();
            for instance in config.vrrp_instances.iter().filter(|_| shared_same) {
                if old.vrrp_instances.iter().any(|o| o == instance) {
                    reload.kept.insert(instance.name.clone(), state::State::Init);
                    kept.push(instance.name.clone());
                }
            }
            reload.next = config.vrrp_instances.iter().map(|i| i.name.clone()).collect();
            let wanted = config::vmacs_wanted(&config);
            reload.next_vmac_parents = wanted.iter().map(|v| v.parent.clone()).collect();
            reload.next_vmacs = wanted.into_iter().collect();
        }
        tracing::info!(
            "VRRP configuration changed: restarting VRRP; instances keeping their state: {kept:?}"
        );
        let (netlink, handoff, bfd) = (self.netlink.clone(), self.handoff.clone(), self.bfd.clone());
        let events = self.events.clone();
        self.stop(StopKind::Handoff).await?;
        Ok(Self::spawn_after(config, netlink, handoff, bfd, events))
    }

    /// Waits until the engine ends by itself, which it does only when it cannot start (having
    /// undone what it had made) or panics; its result. The task is then over: drop it, do not
    /// [`VrrpTask::stop`] it.
    pub async fn ended(&mut self) -> Result<(), VrrpError> {
        match (&mut self.task).await {
            Ok(result) => result,
            Err(e) => Err(VrrpError::Panicked(e.to_string())),
        }
    }

    /// Whether the engine has ended (by itself: it could not start, or panicked, unless it was
    /// told to stop); then [`VrrpTask::ended`] returns at once.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// The instances' state and counters, as the engine last published them.
    pub fn status(&self) -> &status::VrrpStatus {
        &self.status
    }

    /// Tells the engine to stop `kind`, without waiting: it does so when the runtime next runs
    /// it (then [`VrrpTask::stop`] waits for it).
    pub fn request_stop(&self, kind: StopKind) {
        let _ = self.stop.send(Some(kind));
    }

    /// Stops the instances `kind`'s way and waits until they have (adverts sent, VIPs removed,
    /// notify scripts run). Returns the error the engine failed with, if it did (it was logged
    /// when it happened).
    pub async fn stop(self, kind: StopKind) -> Result<(), VrrpError> {
        // The engine may have ended already (with an error); then there is nobody to tell.
        let _ = self.stop.send(Some(kind));
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(VrrpError::Panicked(e.to_string())),
        }
    }
}
