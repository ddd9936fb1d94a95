//! keepalived's D-Bus interface to the VRRP child (`enable_dbus`, `dbus_service_name`), as
//! keepalived 2.2.7 exposes it on the system bus (`vrrp_dbus.c`; the interface files Debian
//! installs in `/usr/share/dbus-1/interfaces/org.keepalived.Vrrp1.*.xml`).
//!
//! - `/org/keepalived/Vrrp1/Vrrp`, interface `org.keepalived.Vrrp1.Vrrp`: methods `PrintData`,
//!   `PrintStats`, `PrintStatsClear` (what SIGUSR1, SIGUSR2 and SIGRTMAX-1 do, answered once the
//!   file is written), `ReloadConfig` (a SIGHUP to the parent, answered at once); signals
//!   `VrrpStarted` (once connected, before the name is requested), `VrrpReloaded` (after a
//!   reload), `VrrpStopped` (as the child stops, after every instance's last state).
//! - `/org/keepalived/Vrrp1/Instance/<interface>/<vrid>/<IPv4|IPv6>` for each instance (the
//!   interface's name with every character but `A-Za-z0-9` made `_`), interface
//!   `org.keepalived.Vrrp1.Instance`: method `SendGarp` (one round of gratuitous ARPs / NAs, if
//!   it holds its VIPs), signal `VrrpStatusChange(u status)` at each change of state, read-only
//!   properties `Name` (`s`) and `State` (`(us)`: 0 `Init`, 1 `Backup`, 2 `Master`, 3 `Fault`;
//!   98, stopped, reads `Unknown`).
//! - `net_namespace` (or `-s`) and `instance` add a path element each after
//!   `/org/keepalived/Vrrp1`, as keepalived's do.
//!
//! The module owns the bus connection and nothing else: the engine's changes of state reach it
//! as [`StatusEvent`]s over a channel, and what it is asked to do leaves as [`Request`]s that
//! the daemon carries out (dumps, reload) or passes to the engine ([`super::Command`]). A bus
//! that cannot be reached, or a name another process owns, is logged as an error and VRRP
//! runs on, as keepalived's does (it too waits in the bus's queue for the name).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};
use zbus::{Connection, fdo::RequestNameReply, interface, object_server::SignalEmitter};

use super::status::{InstanceStatus, StatusEvent, StatusEvents};

/// The bus name keepalived owns unless `dbus_service_name` says otherwise.
pub const DEFAULT_SERVICE_NAME: &str = "org.keepalived.Vrrp1";

/// The root of every object path.
const ROOT: &str = "/org/keepalived/Vrrp1";

/// keepalived's `VRRP_STATE_STOP`: the state the instances are announced in as VRRP stops.
const STATE_STOP: u32 = 98;

/// keepalived's `VRRP_STATE_FAULT`: the state an instance a reload deletes is announced in.
const STATE_FAULT: u32 = 3;

/// How long the service waits for the engine's instances before `VrrpStarted`.
const FIRST_INSTANCES_WAIT: Duration = Duration::from_secs(2);

/// How long it then lets their first change of state come.
const FIRST_STATES_WAIT: Duration = Duration::from_millis(50);

/// How long [`Dbus::stop`] waits for the last signals to leave.
const STOP_WAIT: Duration = Duration::from_secs(1);

/// Where the interface is served: the bus name and the objects' path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The bus name (`dbus_service_name`, default [`DEFAULT_SERVICE_NAME`]).
    pub service_name: String,
    /// `/org/keepalived/Vrrp1`, then `/<net_namespace>` and `/<instance>` if set.
    pub prefix: String,
}

impl Settings {
    /// The settings of `config`, `None` without `enable_dbus`. `namespace` is `-s`, which
    /// overrides `net_namespace`.
    pub fn of(config: &crate::config::Config, namespace: Option<&str>) -> Option<Self> {
        let globals = &config.global_defs;
        if !globals.enable_dbus {
            return None;
        }
        let mut prefix = ROOT.to_owned();
        for element in [namespace.or(globals.net_namespace.as_deref()), globals.instance.as_deref()]
            .into_iter()
            .flatten()
        {
            prefix.push('/');
            prefix.push_str(&path_element(element));
        }
        let service_name =
            globals.dbus_service_name.clone().unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
        Some(Settings { service_name, prefix })
    }

    /// The path of the `org.keepalived.Vrrp1.Vrrp` object.
    pub fn vrrp_path(&self) -> String {
        format!("{}/Vrrp", self.prefix)
    }

    /// The path of an instance's object.
    pub fn instance_path(&self, instance: &InstanceStatus) -> String {
        format!(
            "{}/Instance/{}/{}/{}",
            self.prefix,
            path_element(&instance.interface),
            instance.vrid,
            family_name(instance.family)
        )
    }
}

/// `name` as an object path element: D-Bus allows only `A-Za-z0-9_`; keepalived makes every
/// other byte `_` (`set_valid_path`). An empty name would make an invalid path: `_`.
pub fn path_element(name: &str) -> String {
    if name.is_empty() {
        return "_".to_owned();
    }
    name.bytes().map(|b| if b.is_ascii_alphanumeric() { char::from(b) } else { '_' }).collect()
}

/// keepalived's `family_str`.
fn family_name(family: u8) -> &'static str {
    match family {
        4 => "IPv4",
        6 => "IPv6",
        _ => "None",
    }
}

/// A state's number, as keepalived's `VRRP_STATE_*` (what `VrrpStatusChange` carries).
pub fn state_number(state: &str) -> u32 {
    match state {
        "INIT" => 0,
        "BACKUP" => 1,
        "MASTER" => 2,
        "FAULT" => STATE_FAULT,
        "STOP" => STATE_STOP,
        // Not a state the engine names; keepalived has no number for it either.
        _ => u32::MAX,
    }
}

/// keepalived's `state_str`: the text of the `State` property.
pub fn state_text(state: u32) -> &'static str {
    match state {
        0 => "Init",
        1 => "Backup",
        2 => "Master",
        STATE_FAULT => "Fault",
        _ => "Unknown",
    }
}

/// What a D-Bus caller asked the daemon for.
#[derive(Debug)]
pub enum Request {
    /// `PrintData`: write `keepalived.data` (SIGUSR1), then answer `done`.
    PrintData {
        /// Answered once written.
        done: oneshot::Sender<()>,
    },
    /// `PrintStats` (SIGUSR2) or, with `clear`, `PrintStatsClear` (SIGRTMAX-1).
    PrintStats {
        /// Zero the counters once written.
        clear: bool,
        /// Answered once written.
        done: oneshot::Sender<()>,
    },
    /// `ReloadConfig`: reload as on SIGHUP (already answered).
    ReloadConfig,
    /// `SendGarp` on `instance`'s object: the engine's [`super::Command::SendGratuitous`].
    SendGarp {
        /// The instance's name.
        instance: String,
        /// Whether the instance exists.
        done: oneshot::Sender<bool>,
    },
}

/// What the daemon tells the service besides the engine's events.
#[derive(Debug)]
enum Control {
    /// A reload went through to a configuration with these instances: those it no longer has
    /// are announced in FAULT and removed, then `VrrpReloaded` (keepalived's order).
    Reloaded(std::collections::HashSet<String>),
    /// VRRP has stopped: the instances' last state, `VrrpStopped`, the name released.
    Stop,
}

/// The running D-Bus service ([`Dbus::start`]).
#[derive(Debug)]
pub struct Dbus {
    events: StatusEvents,
    control: mpsc::UnboundedSender<Control>,
    requests: mpsc::UnboundedReceiver<Request>,
    task: tokio::task::JoinHandle<()>,
    settings: Settings,
}

impl Dbus {
    /// Connects to the system bus (`DBUS_SYSTEM_BUS_ADDRESS`, else the standard socket) in a
    /// task of its own and serves the objects; a failure is logged there and leaves the
    /// service idle.
    pub fn start(settings: Settings) -> Self {
        let (events, events_rx) = mpsc::unbounded_channel();
        let (control, control_rx) = mpsc::unbounded_channel();
        let (requests_tx, requests) = mpsc::unbounded_channel();
        let task = tokio::spawn(serve(settings.clone(), events_rx, control_rx, requests_tx));
        Dbus { events, control, requests, task, settings }
    }

    /// Where the engine sends its events ([`super::VrrpTask::spawn`]).
    pub fn events(&self) -> StatusEvents {
        self.events.clone()
    }

    /// Where it is served.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The next request of a caller; pending forever once the service has ended.
    pub async fn request(&mut self) -> Request {
        match self.requests.recv().await {
            Some(request) => request,
            None => std::future::pending().await,
        }
    }

    /// A reload went through to `config`: removes the objects of the instances it no longer
    /// has, then emits `VrrpReloaded` (the new instances' objects come as their engine starts).
    pub fn reloaded(&self, config: &crate::config::Config) {
        let names = config.vrrp_instances.iter().map(|i| i.name.clone()).collect();
        let _ = self.control.send(Control::Reloaded(names));
    }

    /// VRRP has stopped: announces each instance stopped, emits `VrrpStopped` and releases the
    /// name, waiting at most a second for it.
    pub async fn stop(self) {
        let _ = self.control.send(Control::Stop);
        if tokio::time::timeout(STOP_WAIT, self.task).await.is_err() {
            warn!("DBus thread termination timed out");
        }
    }
}

/// The `org.keepalived.Vrrp1.Vrrp` object.
#[derive(Debug)]
struct VrrpObject {
    requests: mpsc::UnboundedSender<Request>,
}

/// A request that needs an answer from the daemon; a daemon that is gone answers with a
/// D-Bus error.
async fn ask<T>(
    requests: &mpsc::UnboundedSender<Request>,
    make: impl FnOnce(oneshot::Sender<T>) -> Request,
) -> zbus::fdo::Result<T> {
    let (done, answer) = oneshot::channel();
    requests.send(make(done)).map_err(|_| zbus::fdo::Error::Failed("VRRP is stopping".to_owned()))?;
    answer.await.map_err(|_| zbus::fdo::Error::Failed("VRRP is stopping".to_owned()))
}

#[interface(name = "org.keepalived.Vrrp1.Vrrp")]
impl VrrpObject {
    /// Writes `keepalived.data`.
    async fn print_data(&self) -> zbus::fdo::Result<()> {
        ask(&self.requests, |done| Request::PrintData { done }).await
    }

    /// Writes `keepalived.stats`.
    async fn print_stats(&self) -> zbus::fdo::Result<()> {
        ask(&self.requests, |done| Request::PrintStats { clear: false, done }).await
    }

    /// Writes `keepalived.stats`, then zeroes the counters.
    async fn print_stats_clear(&self) -> zbus::fdo::Result<()> {
        ask(&self.requests, |done| Request::PrintStats { clear: true, done }).await
    }

    /// Reloads the configuration (answered before the reload, as keepalived does).
    async fn reload_config(&self) {
        let _ = self.requests.send(Request::ReloadConfig);
    }

    #[zbus(signal)]
    async fn vrrp_started(emitter: &SignalEmitter<'_>) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn vrrp_reloaded(emitter: &SignalEmitter<'_>) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn vrrp_stopped(emitter: &SignalEmitter<'_>) -> zbus::Result<()>;
}

/// An `org.keepalived.Vrrp1.Instance` object.
#[derive(Debug)]
struct InstanceObject {
    name: String,
    state: u32,
    /// `<interface>/<vrid>/<family>`, for the error keepalived answers.
    label: String,
    requests: mpsc::UnboundedSender<Request>,
}

#[interface(name = "org.keepalived.Vrrp1.Instance")]
impl InstanceObject {
    /// One round of gratuitous ARPs / NAs for the instance's VIPs.
    async fn send_garp(&self) -> zbus::fdo::Result<()> {
        let instance = self.name.clone();
        if ask(&self.requests, |done| Request::SendGarp { instance, done }).await? {
            Ok(())
        } else {
            Err(zbus::fdo::Error::InvalidArgs(format!("Instance '{}' not found", self.label)))
        }
    }

    #[zbus(signal)]
    async fn vrrp_status_change(emitter: &SignalEmitter<'_>, status: u32) -> zbus::Result<()>;

    /// The instance's name.
    #[zbus(property)]
    fn name(&self) -> String {
        self.name.clone()
    }

    /// Its state: number and text.
    #[zbus(property)]
    fn state(&self) -> (u32, String) {
        (self.state, state_text(self.state).to_owned())
    }
}

/// What the service knows of an instance.
#[derive(Debug, Clone)]
struct Known {
    path: String,
    state: u32,
}

/// The service's task.
async fn serve(
    settings: Settings,
    mut events: mpsc::UnboundedReceiver<StatusEvent>,
    mut control: mpsc::UnboundedReceiver<Control>,
    requests: mpsc::UnboundedSender<Request>,
) {
    let connection = match connect().await {
        Ok(connection) => connection,
        Err(e) => {
            error!("DBus: cannot connect to the system bus: {e}; VRRP runs without DBus");
            return;
        }
    };
    info!("Acquired DBus bus {}", settings.service_name);
    let mut service =
        Service { connection, settings, requests, instances: BTreeMap::new(), started: false, queued: None };
    service.register_vrrp().await;
    // keepalived registers its instances' objects before VrrpStarted, then signals their
    // states, then asks for the name: wait (a little) for the engine's instances and their
    // first state.
    if let Ok(Some(event)) = tokio::time::timeout(FIRST_INSTANCES_WAIT, events.recv()).await {
        service.apply(event).await;
        tokio::time::sleep(FIRST_STATES_WAIT).await;
    }
    while let Ok(event) = events.try_recv() {
        service.apply(event).await;
    }
    service.started = true;
    service.emit_vrrp(Signal::Started).await;
    let states: Vec<Known> = service.instances.values().filter(|k| k.state != 0).cloned().collect();
    for known in states {
        service.emit_state(&known.path, known.state).await;
    }
    service.request_name().await;
    loop {
        tokio::select! {
            biased;
            Some(event) = events.recv() => service.apply(event).await,
            command = control.recv() => match command {
                Some(Control::Reloaded(names)) => {
                    // What the stopping engine said comes first.
                    while let Ok(event) = events.try_recv() {
                        service.apply(event).await;
                    }
                    let deleted: Vec<String> =
                        service.instances.keys().filter(|n| !names.contains(*n)).cloned().collect();
                    for name in deleted {
                        service.delete(&name).await;
                    }
                    service.emit_vrrp(Signal::Reloaded).await;
                }
                Some(Control::Stop) | None => {
                    while let Ok(event) = events.try_recv() {
                        service.apply(event).await;
                    }
                    service.stop().await;
                    return;
                }
            },
        }
    }
}

/// The system bus, as `DBUS_SYSTEM_BUS_ADDRESS` or the standard socket gives it.
async fn connect() -> zbus::Result<Connection> {
    zbus::connection::Builder::system()?.build().await
}

/// A signal of the `Vrrp` object.
#[derive(Debug, Clone, Copy)]
enum Signal {
    Started,
    Reloaded,
    Stopped,
}

/// The connected service's state.
struct Service {
    connection: Connection,
    settings: Settings,
    requests: mpsc::UnboundedSender<Request>,
    /// Instance name → its object.
    instances: BTreeMap<String, Known>,
    /// `VrrpStarted` has gone: changes are signalled.
    started: bool,
    /// Waiting for the name, queued behind another owner: logs when it comes.
    queued: Option<tokio::task::JoinHandle<()>>,
}

/// Logs when the name lbd is queued for comes to it (the objects are there already).
async fn announce_acquired(connection: Connection, name: String) {
    use futures::StreamExt as _;
    let Ok(bus) = zbus::fdo::DBusProxy::new(&connection).await else { return };
    let Ok(mut acquired) = bus.receive_name_acquired_with_args(&[(0, name.as_str())]).await else { return };
    if acquired.next().await.is_some() {
        info!("Acquired the name {name} on the system bus");
    }
}

impl Service {
    async fn register_vrrp(&self) {
        let path = self.settings.vrrp_path();
        let object = VrrpObject { requests: self.requests.clone() };
        if let Err(e) = self.connection.object_server().at(path.as_str(), object).await {
            error!("Registering VRRP object on {path} failed: {e}");
        }
    }

    async fn request_name(&mut self) {
        let name = self.settings.service_name.as_str();
        // No flags, as keepalived's G_BUS_NAME_OWNER_FLAGS_NONE: a name another process owns
        // is waited for in the bus's queue, and not given up to another asking for it (zbus's
        // default flags would do both).
        match self.connection.request_name_with_flags(name, enumflags2::BitFlags::empty()).await {
            Ok(RequestNameReply::PrimaryOwner | RequestNameReply::AlreadyOwner) => {
                info!("Acquired the name {name} on the system bus");
            }
            Ok(RequestNameReply::InQueue | RequestNameReply::Exists) => {
                error!(
                    "DBus: the name {name} is owned by another process: queued for it; VRRP runs on, its objects reachable at {} only",
                    self.connection.unique_name().map_or_else(|| "?".to_owned(), ToString::to_string)
                );
                self.queued = Some(tokio::spawn(announce_acquired(self.connection.clone(), name.to_owned())));
            }
            Err(e) => error!("DBus: cannot own the name {name}: {e}; VRRP runs on without it"),
        }
    }

    async fn emit_vrrp(&self, signal: Signal) {
        let path = self.settings.vrrp_path();
        let result = match SignalEmitter::new(&self.connection, path.as_str()) {
            Ok(emitter) => match signal {
                Signal::Started => VrrpObject::vrrp_started(&emitter).await,
                Signal::Reloaded => VrrpObject::vrrp_reloaded(&emitter).await,
                Signal::Stopped => VrrpObject::vrrp_stopped(&emitter).await,
            },
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            warn!("Emitting DBus signal {signal:?} on {path} failed: {e}");
        }
    }

    async fn emit_state(&self, path: &str, state: u32) {
        let result = match SignalEmitter::new(&self.connection, path) {
            Ok(emitter) => InstanceObject::vrrp_status_change(&emitter, state).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            warn!("Emitting DBus signal VrrpStatusChange on {path} failed: {e}");
        }
    }

    async fn apply(&mut self, event: StatusEvent) {
        match event {
            StatusEvent::Instances(instances) => self.instances(instances).await,
            StatusEvent::State { name, state } => {
                let number = state_number(state);
                let Some(known) = self.instances.get_mut(&name) else { return };
                if known.state == number {
                    // A reload's engine starting an instance it kept in that state.
                    return;
                }
                known.state = number;
                let path = known.path.clone();
                self.set_state(&path, number).await;
                if self.started {
                    self.emit_state(&path, number).await;
                }
            }
        }
    }

    async fn set_state(&self, path: &str, state: u32) {
        match self.connection.object_server().interface::<_, InstanceObject>(path).await {
            Ok(object) => object.get_mut().await.state = state,
            Err(e) => warn!("DBus object {path}: {e}"),
        }
    }

    /// An engine's instances: new objects for the new ones, and those gone announced in FAULT
    /// (as keepalived's deleted instances are) and removed.
    async fn instances(&mut self, instances: Vec<InstanceStatus>) {
        let wanted: BTreeMap<String, (String, InstanceStatus)> =
            instances.into_iter().map(|i| (i.name.clone(), (self.settings.instance_path(&i), i))).collect();
        let gone: Vec<(String, Known)> = self
            .instances
            .iter()
            .filter(|(name, known)| wanted.get(*name).is_none_or(|(path, _)| *path != known.path))
            .map(|(n, k)| (n.clone(), k.clone()))
            .collect();
        for (name, _) in gone {
            self.delete(&name).await;
        }
        for (name, (path, instance)) in wanted {
            if self.instances.contains_key(&name) {
                continue;
            }
            let state = state_number(instance.state);
            let object = InstanceObject {
                name: name.clone(),
                state,
                label: format!(
                    "{}/{}/{}",
                    path_element(&instance.interface),
                    instance.vrid,
                    family_name(instance.family)
                ),
                requests: self.requests.clone(),
            };
            match self.connection.object_server().at(path.as_str(), object).await {
                Ok(true) => {}
                Ok(false) => {
                    error!("Registering DBus object on {path} failed: another instance has that path");
                    continue;
                }
                Err(e) => {
                    error!("Registering DBus object on {path} failed: {e}");
                    continue;
                }
            }
            if self.started && state != 0 {
                self.emit_state(&path, state).await;
            }
            self.instances.insert(name, Known { path, state });
        }
    }

    /// Instance `name` is gone: announced in FAULT (as keepalived's deleted instances are),
    /// its object removed, and the path's elements that lead to no other object with it.
    async fn delete(&mut self, name: &str) {
        let Some(known) = self.instances.remove(name) else { return };
        if self.started && known.state != STATE_FAULT {
            self.emit_state(&known.path, STATE_FAULT).await;
        }
        let server = self.connection.object_server();
        if let Err(e) = server.remove::<InstanceObject, _>(known.path.as_str()).await {
            warn!("Removing DBus object {} failed: {e}", known.path);
        }
        // zbus leaves the emptied intermediate nodes, GDBus does not: remove the highest one
        // that leads to no other object (removing a node's last interface removes the node
        // and what is under it).
        let others: Vec<&str> = self
            .instances
            .values()
            .map(|k| k.path.as_str())
            .chain(std::iter::once(self.settings.prefix.as_str()))
            .collect();
        if let Some(empty) = highest_empty_ancestor(&known.path, &self.settings.prefix, &others) {
            let peer = zbus::names::InterfaceName::from_static_str_unchecked("org.freedesktop.DBus.Peer");
            if let Err(e) = server.remove_named(empty.as_str(), peer).await {
                warn!("Removing DBus node {empty} failed: {e}");
            }
        }
        info!("Deleted DBus object for instance {name}");
    }

    async fn stop(&mut self) {
        let known: Vec<Known> = self.instances.values().cloned().collect();
        for k in known {
            if k.state != STATE_STOP {
                self.emit_state(&k.path, STATE_STOP).await;
            }
        }
        self.emit_vrrp(Signal::Stopped).await;
        if let Some(queued) = self.queued.take() {
            queued.abort();
        }
        if let Err(e) = self.connection.release_name(self.settings.service_name.as_str()).await {
            // Not owned (queued, or never granted): nothing to release.
            tracing::debug!("releasing {}: {e}", self.settings.service_name);
        }
        info!("Released DBus");
    }
}

/// The highest ancestor of `path` below `prefix` under which none of `others` lies (an
/// ancestor of `path` only: `path` itself is already gone).
fn highest_empty_ancestor(path: &str, prefix: &str, others: &[&str]) -> Option<String> {
    let under = |node: &str, other: &str| other == node || other.starts_with(&format!("{node}/"));
    let mut highest = None;
    let mut node = path;
    while let Some((parent, _)) = node.rsplit_once('/') {
        if parent.len() <= prefix.len() || others.iter().any(|o| under(parent, o)) {
            break;
        }
        highest = Some(parent.to_owned());
        node = parent;
    }
    highest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> crate::config::Config {
        crate::config::parse_str("test.conf", text, &crate::config::LoadOptions::default()).config
    }

    fn settings(text: &str) -> Option<Settings> {
        Settings::of(&parse(text), None)
    }

    #[test]
    fn paths_are_keepalived_s() {
        let s = settings("global_defs {\n enable_dbus\n}\n").expect("enabled");
        assert_eq!(s.service_name, "org.keepalived.Vrrp1");
        assert_eq!(s.vrrp_path(), "/org/keepalived/Vrrp1/Vrrp");
        let instance =
            InstanceStatus { interface: "eth0.100".into(), vrid: 51, family: 4, ..InstanceStatus::default() };
        assert_eq!(s.instance_path(&instance), "/org/keepalived/Vrrp1/Instance/eth0_100/51/IPv4");
        let v6 =
            InstanceStatus { interface: "veth-a".into(), vrid: 7, family: 6, ..InstanceStatus::default() };
        assert_eq!(s.instance_path(&v6), "/org/keepalived/Vrrp1/Instance/veth_a/7/IPv6");
    }

    #[test]
    fn namespace_instance_and_service_name() {
        let s = settings(
            "net_namespace blue\ninstance i-2\nglobal_defs {\n enable_dbus\n dbus_service_name org.example.Vrrp\n}\n",
        )
        .expect("enabled");
        assert_eq!(s.service_name, "org.example.Vrrp");
        assert_eq!(s.vrrp_path(), "/org/keepalived/Vrrp1/blue/i_2/Vrrp");
        let config = parse("net_namespace blue\nglobal_defs {\n enable_dbus\n}\n");
        assert_eq!(
            Settings::of(&config, Some("red")).map(|s| s.vrrp_path()).as_deref(),
            Some("/org/keepalived/Vrrp1/red/Vrrp")
        );
    }

    #[test]
    fn empty_ancestors() {
        let prefix = "/org/keepalived/Vrrp1";
        let gone = "/org/keepalived/Vrrp1/Instance/eth0/52/IPv6";
        let sibling = "/org/keepalived/Vrrp1/Instance/eth0/51/IPv4";
        assert_eq!(
            highest_empty_ancestor(gone, prefix, &[sibling, prefix]).as_deref(),
            Some("/org/keepalived/Vrrp1/Instance/eth0/52")
        );
        assert_eq!(
            highest_empty_ancestor(gone, prefix, &[prefix]).as_deref(),
            Some("/org/keepalived/Vrrp1/Instance")
        );
        let v4 = "/org/keepalived/Vrrp1/Instance/eth0/52/IPv4";
        assert_eq!(highest_empty_ancestor(gone, prefix, &[v4, prefix]), None);
    }

    #[test]
    fn disabled_without_enable_dbus() {
        assert_eq!(settings("global_defs {\n dbus_service_name org.example.Vrrp\n}\n"), None);
    }

    #[test]
    fn states_are_keepalived_s() {
        let numbers: Vec<u32> = ["INIT", "BACKUP", "MASTER", "FAULT", "STOP"].map(state_number).into();
        assert_eq!(numbers, [0, 1, 2, 3, 98]);
        let texts: Vec<&str> = [0, 1, 2, 3, 98].map(state_text).into();
        assert_eq!(texts, ["Init", "Backup", "Master", "Fault", "Unknown"]);
        assert_eq!(path_element(""), "_");
    }
}
