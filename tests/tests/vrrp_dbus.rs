//! lbd's D-Bus interface (`enable_dbus`, `dbus_service_name`) against keepalived 2.2.7's: each
//! test starts a private system bus (`dbus-daemon` with a configuration of its own in the lab's
//! directory, `DBUS_SYSTEM_BUS_ADDRESS` pointing lbd at it) and routers on a bridge, and talks
//! to lbd with a zbus client: the objects and their introspection (compared with what real
//! keepalived answered, `vrrp_kit/keepalived-dbus/`), the `State` property and the
//! `VrrpStatusChange` signal through a failover, `SendGarp` seen on the wire, `PrintData` /
//! `PrintStats` / `PrintStatsClear` files, `ReloadConfig`, the stop's signals, and VRRP running
//! on without a bus or without its name.

mod vrrp_kit;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use lb_tests::{
    bins,
    lab::{Lab, Netns, wait_until},
    process::Proc,
};
use nix::sys::signal::Signal;
use vrrp_kit::{VipWatch, config, instance, ip4, lan, spawn_keepalived_env};
use zbus::zvariant::Value;

const SERVICE: &str = "org.keepalived.Vrrp1";
const OTHER_SERVICE: &str = "org.example.Vrrp2";
const VRRP_PATH: &str = "/org/keepalived/Vrrp1/Vrrp";
const VRRP_IFACE: &str = "org.keepalived.Vrrp1.Vrrp";
const INSTANCE_IFACE: &str = "org.keepalived.Vrrp1.Instance";

/// A private system bus: root may own keepalived's name and [`OTHER_SERVICE`], anyone may call
/// them (Debian's `org.keepalived.Vrrp1.conf`, plus the second name).
struct Bus {
    address: String,
    _daemon: Proc,
}

impl Bus {
    fn start(lab: &Lab) -> Self {
        let dir = lab.dir().join("dbus");
        std::fs::create_dir_all(&dir).expect("bus directory");
        let socket = dir.join("system_bus_socket");
        let owners: String = [SERVICE, OTHER_SERVICE]
            .iter()
            .map(|name| format!("    <allow own=\"{name}\"/>\n    <allow send_destination=\"{name}\"/>\n"))
            .collect();
        let conf = format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path={socket}</listen>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <policy user="root">
{owners}  </policy>
</busconfig>
"#,
            socket = socket.display()
        );
        let conf_path = dir.join("bus.conf");
        std::fs::write(&conf_path, conf).expect("bus configuration");
        let mut command = Command::new("dbus-daemon");
        command.arg(format!("--config-file={}", conf_path.display())).args(["--nofork", "--nopidfile"]);
        let mut daemon = Proc::spawn("dbus-daemon", command, &dir.join("dbus-daemon.log"));
        wait_until(Duration::from_secs(10), "dbus-daemon to listen", || {
            daemon.assert_running();
            socket.exists()
        });
        Bus { address: format!("unix:path={}", socket.display()), _daemon: daemon }
    }

    fn env(&self) -> String {
        format!("DBUS_SYSTEM_BUS_ADDRESS={}", self.address)
    }
}

/// A signal seen on the bus under `/org/keepalived`.
#[derive(Debug, Clone)]
struct Seen {
    sender: String,
    path: String,
    member: String,
    /// `VrrpStatusChange`'s argument.
    status: Option<u32>,
}

/// A zbus client on the test's bus, recording every signal under `/org/keepalived`.
struct Client {
    runtime: tokio::runtime::Runtime,
    connection: zbus::Connection,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Client {
    fn connect(bus: &Bus) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let connection = runtime
            .block_on(async { zbus::connection::Builder::address(bus.address.as_str())?.build().await })
            .expect("connecting to the test's bus");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stream = runtime
            .block_on(async {
                let rule = zbus::MatchRule::builder()
                    .msg_type(zbus::message::Type::Signal)
                    .path_namespace("/org/keepalived")?
                    .build();
                zbus::MessageStream::for_match_rule(rule, &connection, None).await
            })
            .expect("subscribing to the signals");
        let record = seen.clone();
        runtime.spawn(async move {
            let mut stream = stream;
            while let Some(Ok(message)) = stream.next().await {
                let header = message.header();
                let status = message.body().deserialize::<u32>().ok();
                record.lock().unwrap_or_else(|e| e.into_inner()).push(Seen {
                    sender: header.sender().map(ToString::to_string).unwrap_or_default(),
                    path: header.path().map(ToString::to_string).unwrap_or_default(),
                    member: header.member().map(ToString::to_string).unwrap_or_default(),
                    status,
                });
            }
        });
        Client { runtime, connection, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The `VrrpStatusChange` arguments `sender` sent on `path`, in order.
    fn statuses(&self, sender: &str, path: &str) -> Vec<u32> {
        self.seen().iter().filter(|s| s.sender == sender && s.path == path).filter_map(|s| s.status).collect()
    }

    /// Calls `method` with no argument; the error's text if it fails.
    fn call(
        &self,
        service: &str,
        path: &str,
        interface: &str,
        method: &str,
    ) -> Result<zbus::Message, String> {
        self.runtime
            .block_on(self.connection.call_method(Some(service), path, Some(interface), method, &()))
            .map_err(|e| e.to_string())
    }

    fn introspect(&self, service: &str, path: &str) -> String {
        let reply = self
            .call(service, path, "org.freedesktop.DBus.Introspectable", "Introspect")
            .unwrap_or_else(|e| panic!("Introspect {path}: {e}"));
        reply.body().deserialize::<String>().expect("Introspect answers a string")
    }

    fn property(&self, service: &str, path: &str, name: &str) -> Result<Value<'static>, String> {
        let reply = self
            .runtime
            .block_on(self.connection.call_method(
                Some(service),
                path,
                Some("org.freedesktop.DBus.Properties"),
                "Get",
                &(INSTANCE_IFACE, name),
            ))
            .map_err(|e| e.to_string())?;
        let body = reply.body();
        let value: Value<'_> = body.deserialize().map_err(|e| e.to_string())?;
        value.try_to_owned().map(Into::into).map_err(|e| e.to_string())
    }

    /// The `State` property: (number, text).
    fn state(&self, service: &str, path: &str) -> (u32, String) {
        let value = self.property(service, path, "State").unwrap_or_else(|e| panic!("State of {path}: {e}"));
        let Value::Structure(fields) = value else { panic!("State of {path} is {value:?}, not (us)") };
        match fields.fields() {
            [Value::U32(n), Value::Str(text)] => (*n, text.to_string()),
            other => panic!("State of {path} is {other:?}, not (us)"),
        }
    }

    fn name_property(&self, service: &str, path: &str) -> String {
        match self.property(service, path, "Name") {
            Ok(Value::Str(name)) => name.to_string(),
            other => panic!("Name of {path}: {other:?}"),
        }
    }

    fn owner(&self, name: &str) -> Option<String> {
        let reply = self.call_bus("GetNameOwner", name).ok()?;
        reply.body().deserialize::<String>().ok()
    }

    fn call_bus(&self, method: &str, name: &str) -> Result<zbus::Message, String> {
        self.runtime
            .block_on(self.connection.call_method(
                Some("org.freedesktop.DBus"),
                "/org/freedesktop/DBus",
                Some("org.freedesktop.DBus"),
                method,
                &(name,),
            ))
            .map_err(|e| e.to_string())
    }

    /// Every object path under `/` that the service has, with its non-standard interfaces,
    /// found by walking Introspect's child nodes.
    fn tree(&self, service: &str) -> BTreeMap<String, Vec<String>> {
        let mut found = BTreeMap::new();
        let mut todo = vec!["/".to_owned()];
        while let Some(path) = todo.pop() {
            let xml = self.introspect(service, &path);
            let items = parse_xml(&xml);
            let interfaces: Vec<String> = items
                .iter()
                .filter(|i| i.tag == "interface" && i.depth == 1)
                .filter_map(|i| i.attr("name"))
                .filter(|n| !n.starts_with("org.freedesktop.DBus."))
                .collect();
            for child in
                items.iter().filter(|i| i.tag == "node" && i.depth == 1).filter_map(|i| i.attr("name"))
            {
                todo.push(if path == "/" { format!("/{child}") } else { format!("{path}/{child}") });
            }
            found.insert(path, interfaces);
        }
        found
    }
}

/// One element of an introspection document: its tag, attributes and nesting depth (the root
/// `<node>` is 0).
#[derive(Debug)]
struct Element {
    tag: String,
    attrs: Vec<(String, String)>,
    depth: usize,
}

impl Element {
    fn attr(&self, name: &str) -> Option<String> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }
}

/// A parser for the introspection XML both GDBus and zbus write (elements with quoted
/// attributes, comments and a DOCTYPE; no text content matters).
fn parse_xml(xml: &str) -> Vec<Element> {
    let mut elements = Vec::new();
    let mut depth = 0usize;
    let mut rest = xml;
    while let Some(start) = rest.find('<') {
        rest = &rest[start + 1..];
        if let Some(comment) = rest.strip_prefix("!--") {
            rest = comment.find("-->").map_or("", |end| &comment[end + 3..]);
            continue;
        }
        let end = rest.find('>').expect("a closed tag");
        let tag = &rest[..end];
        rest = &rest[end + 1..];
        if tag.starts_with('!') || tag.starts_with('?') {
            continue;
        }
        if let Some(_closing) = tag.strip_prefix('/') {
            depth = depth.saturating_sub(1);
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let name = tag.split_whitespace().next().unwrap_or_default().to_owned();
        let mut attrs = Vec::new();
        let mut text = tag[name.len()..].trim();
        while let Some(eq) = text.find('=') {
            let key = text[..eq].trim().to_owned();
            let quoted = text[eq + 1..].trim_start();
            let quote = quoted.chars().next().expect("a quoted value");
            let close = quoted[1..].find(quote).expect("a closing quote") + 1;
            attrs.push((key, quoted[1..close].to_owned()));
            text = quoted[close + 1..].trim_start();
        }
        elements.push(Element { tag: name, attrs, depth });
        if !self_closing {
            depth += 1;
        }
    }
    elements
}

/// An object's introspection as comparable lines: each interface, and each of its members with
/// its arguments' types and directions (and names, for keepalived's own interfaces, whose names
/// are part of their contract), properties with type and access; annotations left out.
fn members(xml: &str) -> BTreeSet<String> {
    let elements = parse_xml(xml);
    let mut lines = BTreeSet::new();
    let (mut interface, mut member) = (String::new(), String::new());
    for element in &elements {
        let name = element.attr("name").unwrap_or_default();
        match (element.tag.as_str(), element.depth) {
            ("interface", 1) => {
                interface = name;
                lines.insert(format!("interface {interface}"));
            }
            ("method" | "signal", 2) => {
                member = format!("{interface} {} {name}", element.tag);
                lines.insert(member.clone());
            }
            ("property", 2) => {
                lines.insert(format!(
                    "{interface} property {name} {} {}",
                    element.attr("type").unwrap_or_default(),
                    element.attr("access").unwrap_or_default()
                ));
            }
            ("arg", 3) => {
                let own = interface.starts_with("org.keepalived.");
                let direction = element.attr("direction").unwrap_or_else(|| {
                    if member.contains(" signal ") { "out".to_owned() } else { "in".to_owned() }
                });
                let mut line =
                    format!("{member} arg {} {direction}", element.attr("type").unwrap_or_default());
                if own {
                    line.push_str(&format!(" {}", element.attr("name").unwrap_or_default()));
                }
                lines.insert(line);
            }
            _ => {}
        }
    }
    lines
}

fn recorded(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vrrp_kit/keepalived-dbus").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Starts lbd in `ns` on `bus` (or with `env` instead), waiting for its VRRP to start.
fn start_lbd(lab: &mut Lab, ns: &Netns, label: &str, text: &str, env: &[&str]) -> Proc {
    let conf = lab.write_file(&format!("{label}.conf"), text);
    let pin = lab.bpffs().join("lbd");
    let mut lbd = bins::spawn_lbd_env(lab, ns, label, &conf, &pin, env, &["-P"]);
    wait_until(Duration::from_secs(15), &format!("{label} to start VRRP"), || {
        lbd.assert_running();
        lbd.log().contains("Entering")
    });
    lbd
}

/// Waits until `line` is in `process`'s log, panicking with the log if it does not come.
fn wait_logged(process: &Proc, line: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !process.log().contains(line) {
        assert!(Instant::now() < deadline, "no {line:?} within {timeout:?} in:\n{}", process.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn instance_path(interface: &str, vrid: u8, family: &str) -> String {
    format!("/org/keepalived/Vrrp1/Instance/{interface}/{vrid}/{family}")
}

fn wait_state(client: &Client, service: &str, path: &str, want: (u32, &str), timeout: Duration) {
    wait_until(timeout, &format!("{path} to be {want:?}"), || {
        client.property(service, path, "State").is_ok()
            && client.state(service, path) == (want.0, want.1.to_owned())
    });
}

/// Two instances, as the keepalived recording had: v2 IPv4 VRID 51 and v3 IPv6 VRID 52.
fn two_instances(subnet: u8, priority: u8, global_extra: &str) -> String {
    config(
        "r",
        &format!("  enable_dbus\n{global_extra}"),
        &[
            instance("VI_4", 51, priority, "1", &[&format!("10.{subnet}.0.100/24")], ""),
            instance("VI_6", 52, priority, "1", &[&format!("fd00:{subnet}::100/64")], "  version 3\n"),
        ],
    )
}

/// A lab with a private bus, `n` routers on subnet `subnet`, and a client on the bus.
fn on_a_bus(subnet: u8, n: u8) -> (Lab, Bus, Vec<Netns>, Client) {
    let mut lab = Lab::new();
    let bus = Bus::start(&lab);
    let routers = lan(&mut lab, subnet, n);
    let client = Client::connect(&bus);
    (lab, bus, routers, client)
}

#[test]
fn the_objects_and_their_introspection_are_keepalived_s() {
    let (mut lab, bus, r, client) = on_a_bus(71, 1);
    let env = bus.env();
    let mut lbd = start_lbd(&mut lab, &r[0], "lbd", &two_instances(71, 150, ""), &[&env]);
    let v4 = instance_path("eth0", 51, "IPv4");
    let v6 = instance_path("eth0", 52, "IPv6");
    wait_state(&client, SERVICE, &v4, (2, "Master"), Duration::from_secs(10));
    wait_state(&client, SERVICE, &v6, (2, "Master"), Duration::from_secs(10));

    // The objects: keepalived's paths, its interfaces on them, nothing else.
    let tree = client.tree(SERVICE);
    let with_interfaces: BTreeMap<&str, &[String]> =
        tree.iter().filter(|(_, i)| !i.is_empty()).map(|(p, i)| (p.as_str(), i.as_slice())).collect();
    assert_eq!(
        with_interfaces,
        BTreeMap::from([
            (VRRP_PATH, &[VRRP_IFACE.to_owned()][..]),
            (v4.as_str(), &[INSTANCE_IFACE.to_owned()][..]),
            (v6.as_str(), &[INSTANCE_IFACE.to_owned()][..]),
        ]),
        "lbd's objects: {tree:#?}"
    );
    let nodes = |xml: &str| -> BTreeSet<String> {
        parse_xml(xml)
            .iter()
            .filter(|e| e.tag == "node" && e.depth == 1)
            .filter_map(|e| e.attr("name"))
            .collect()
    };
    assert_eq!(
        nodes(&client.introspect(SERVICE, "/org/keepalived/Vrrp1")),
        nodes(&recorded("node-Vrrp1.xml"))
    );

    // Their introspection, member by member, against keepalived 2.2.7's.
    for (path, file) in
        [(VRRP_PATH, "vrrp.xml"), (v4.as_str(), "instance.xml"), (v6.as_str(), "instance.xml")]
    {
        let (ours, theirs) = (members(&client.introspect(SERVICE, path)), members(&recorded(file)));
        assert!(theirs.len() > 10, "the recording {file} parsed to {theirs:?}");
        assert_eq!(
            ours,
            theirs,
            "{path}: only lbd's: {:?}; only keepalived's: {:?}",
            ours.difference(&theirs).collect::<Vec<_>>(),
            theirs.difference(&ours).collect::<Vec<_>>()
        );
    }

    // The properties' values, and read-only they are.
    assert_eq!(client.name_property(SERVICE, &v4), "VI_4");
    assert_eq!(client.name_property(SERVICE, &v6), "VI_6");
    let set = client.runtime.block_on(client.connection.call_method(
        Some(SERVICE),
        v4.as_str(),
        Some("org.freedesktop.DBus.Properties"),
        "Set",
        &(INSTANCE_IFACE, "Name", Value::from("x")),
    ));
    assert!(set.is_err(), "setting Name succeeded");
    assert_eq!(client.name_property(SERVICE, &v4), "VI_4");

    // Startup's signals: VrrpStarted, then the instances' states as they change.
    let seen = client.seen();
    let members: Vec<(String, Option<u32>)> = seen.iter().map(|s| (s.path.clone(), s.status)).collect();
    assert_eq!(seen.first().map(|s| s.member.as_str()), Some("VrrpStarted"), "signals: {seen:#?}");
    for path in [&v4, &v6] {
        let states: Vec<u32> = seen.iter().filter(|s| s.path == *path).filter_map(|s| s.status).collect();
        assert_eq!(states.last(), Some(&2), "{path}'s VrrpStatusChange signals: {members:?}");
    }
    lbd.assert_running();
}

#[test]
fn failover_changes_state_with_a_signal_and_send_garp_sends_one_round() {
    let (mut lab, bus, r, client) = on_a_bus(72, 3);
    let env = bus.env();
    let one = |priority: u8, extra: &str| {
        config(
            "r",
            &format!("  enable_dbus\n{extra}"),
            &[instance("VI_4", 51, priority, "1", &["10.72.0.100/24"], "")],
        )
    };
    let mut r1 = start_lbd(&mut lab, &r[0], "r1", &one(150, ""), &[&env]);
    let vip = ip4(72, 100);
    let watch1 = VipWatch::start(&r[0], "r1", vip);
    watch1.wait_for(true, Duration::from_secs(10));
    // The backup serves under dbus_service_name.
    let mut r2 = start_lbd(
        &mut lab,
        &r[1],
        "r2",
        &one(100, &format!("  dbus_service_name {OTHER_SERVICE}\n")),
        &[&env],
    );
    let path = instance_path("eth0", 51, "IPv4");
    wait_state(&client, OTHER_SERVICE, &path, (1, "Backup"), Duration::from_secs(10));
    assert_eq!(client.state(SERVICE, &path), (2, "Master".to_owned()));
    let r2_owner = client.owner(OTHER_SERVICE).expect("r2 owns its dbus_service_name");
    assert_ne!(client.owner(SERVICE), Some(r2_owner.clone()));

    // kill -9 of the master: the backup takes over, says so, and its State reads MASTER.
    let killed = Instant::now();
    r1.kill();
    wait_state(&client, OTHER_SERVICE, &path, (2, "Master"), Duration::from_secs(10));
    let changes = client.statuses(&r2_owner, &path);
    assert_eq!(changes.last(), Some(&2), "r2's VrrpStatusChange signals: {changes:?}");
    assert!(changes.contains(&1), "r2 never said BACKUP: {changes:?}");
    println!("r2 MASTER over D-Bus {:?} after the kill", killed.elapsed());

    // SendGarp: one gratuitous ARP for the VIP, after the takeover's two bursts are over.
    let watch2 = VipWatch::start(&r[1], "r2", vip);
    watch2.wait_for(true, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(7));
    let mut tcpdump = r[2].spawn("tcpdump", "tcpdump", &["-i", "eth0", "-e", "-nn", "-l", "arp"]);
    wait_until(Duration::from_secs(5), "tcpdump to listen", || {
        tcpdump.assert_running();
        tcpdump.log().contains("listening on")
    });
    let garps = |log: &str| {
        log.lines()
            .filter(|l| {
                l.contains("ff:ff:ff:ff:ff:ff")
                    && l.contains("who-has 10.72.0.100 (ff:ff:ff:ff:ff:ff) tell 10.72.0.100")
            })
            .count()
    };
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(garps(&tcpdump.log()), 0, "gratuitous ARPs before SendGarp:\n{}", tcpdump.log());
    client.call(OTHER_SERVICE, &path, INSTANCE_IFACE, "SendGarp").expect("SendGarp");
    let deadline = Instant::now() + Duration::from_secs(3);
    while garps(&tcpdump.log()) == 0 {
        assert!(
            Instant::now() < deadline,
            "no gratuitous ARP after SendGarp:\n{}\nr2:\n{}",
            tcpdump.log(),
            r2.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(garps(&tcpdump.log()), 1, "SendGarp sent:\n{}", tcpdump.log());
    assert!(r2.log().contains("Sending garps on VI_4 on DBus request"), "{}", r2.log());

    // Its interface down: FAULT, signalled, and read as (3, "Fault").
    r[1].ip(&["link", "set", "eth0", "down"]);
    wait_state(&client, OTHER_SERVICE, &path, (3, "Fault"), Duration::from_secs(10));
    let changes = client.statuses(&r2_owner, &path);
    assert_eq!(changes.last(), Some(&3), "r2's VrrpStatusChange signals: {changes:?}");
    r2.assert_running();
}

#[test]
fn print_methods_write_the_dumps_and_reload_config_reloads() {
    let (mut lab, bus, r, client) = on_a_bus(73, 1);
    let env = bus.env();
    let text = two_instances(73, 150, "");
    let mut lbd = start_lbd(&mut lab, &r[0], "lbd", &text, &[&env]);
    let (v4, v6) = (instance_path("eth0", 51, "IPv4"), instance_path("eth0", 52, "IPv6"));
    wait_state(&client, SERVICE, &v4, (2, "Master"), Duration::from_secs(10));
    wait_state(&client, SERVICE, &v6, (2, "Master"), Duration::from_secs(10));

    // PrintData / PrintStats / PrintStatsClear answer once the file is written.
    let data = lab.dir().join("keepalived.data");
    let stats = lab.dir().join("keepalived.stats");
    client.call(SERVICE, VRRP_PATH, VRRP_IFACE, "PrintData").expect("PrintData");
    let text_of = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert!(text_of(&data).contains("VI_4"), "keepalived.data:\n{}", text_of(&data));
    client.call(SERVICE, VRRP_PATH, VRRP_IFACE, "PrintStats").expect("PrintStats");
    assert!(text_of(&stats).contains("VRRP Instance: VI_4"), "keepalived.stats:\n{}", text_of(&stats));
    assert!(text_of(&stats).contains("Became master: 1"), "keepalived.stats:\n{}", text_of(&stats));
    client.call(SERVICE, VRRP_PATH, VRRP_IFACE, "PrintStatsClear").expect("PrintStatsClear");
    assert!(text_of(&stats).contains("Became master: 1"), "keepalived.stats:\n{}", text_of(&stats));
    client.call(SERVICE, VRRP_PATH, VRRP_IFACE, "PrintStats").expect("PrintStats");
    assert!(text_of(&stats).contains("Became master: 0"), "cleared keepalived.stats:\n{}", text_of(&stats));
    for line in ["Printing VRRP data on DBus request", "Printing and clearing VRRP stats on DBus request"] {
        assert!(lbd.log().contains(line), "no {line:?} in:\n{}", lbd.log());
    }

    // ReloadConfig: VI_6 goes (FAULT, object removed), VI_7 comes, VI_4 keeps its MASTER
    // without a signal; keepalived's order.
    let reloaded = config(
        "r",
        "  enable_dbus\n",
        &[
            instance("VI_4", 51, 150, "1", &["10.73.0.100/24"], ""),
            instance("VI_7", 53, 150, "1", &["10.73.0.103/24"], ""),
        ],
    );
    lab.write_file("lbd.conf", &reloaded);
    let before = client.seen().len();
    client.call(SERVICE, VRRP_PATH, VRRP_IFACE, "ReloadConfig").expect("ReloadConfig");
    let v7 = instance_path("eth0", 53, "IPv4");
    wait_state(&client, SERVICE, &v7, (2, "Master"), Duration::from_secs(10));
    // The property can be read before the client's signal reader has taken the last signal:
    // give it a moment (the comparison below says what is missing, if anything).
    let waiting = std::time::Instant::now();
    while client.seen().len() < before + 4 && waiting.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let after: Vec<(String, String, Option<u32>)> =
        client.seen()[before..].iter().map(|s| (s.path.clone(), s.member.clone(), s.status)).collect();
    let expected = [
        (v6.clone(), "VrrpStatusChange".to_owned(), Some(3)),
        (VRRP_PATH.to_owned(), "VrrpReloaded".to_owned(), None),
        (v7.clone(), "VrrpStatusChange".to_owned(), Some(1)),
        (v7.clone(), "VrrpStatusChange".to_owned(), Some(2)),
    ];
    assert_eq!(after, expected, "signals of the reload");
    let tree = client.tree(SERVICE);
    assert!(!tree.keys().any(|p| p.contains("/52")), "VI_6's nodes left: {tree:#?}");
    assert_eq!(client.state(SERVICE, &v4), (2, "Master".to_owned()));

    // The stop: each instance announced stopped (98), then VrrpStopped, then the name goes.
    let before = client.seen().len();
    lbd.signal(Signal::SIGTERM);
    lbd.wait(Duration::from_secs(15));
    wait_until(Duration::from_secs(5), "the name to be released", || client.owner(SERVICE).is_none());
    let stop: Vec<(String, String, Option<u32>)> =
        client.seen()[before..].iter().map(|s| (s.path.clone(), s.member.clone(), s.status)).collect();
    assert_eq!(
        stop,
        [
            (v4.clone(), "VrrpStatusChange".to_owned(), Some(98)),
            (v7.clone(), "VrrpStatusChange".to_owned(), Some(98)),
            (VRRP_PATH.to_owned(), "VrrpStopped".to_owned(), None),
        ],
        "signals of the stop"
    );
}

#[test]
fn vrrp_runs_on_without_a_bus_or_without_its_name() {
    let mut lab = Lab::new();
    let bus = Bus::start(&lab);
    let r = lan(&mut lab, 74, 2);
    // Two VRIDs: the routers do not meet in one group.
    let one =
        |vrid: u8, vip: &str| config("r", "  enable_dbus\n", &[instance("VI_4", vrid, 150, "1", &[vip], "")]);

    // No bus at that address: an error, and VRRP runs.
    let nowhere = format!("DBUS_SYSTEM_BUS_ADDRESS=unix:path={}", lab.dir().join("no-bus").display());
    let mut r1 = start_lbd(&mut lab, &r[0], "r1", &one(51, "10.74.0.100/24"), &[&nowhere]);
    VipWatch::start(&r[0], "r1", ip4(74, 100)).wait_for(true, Duration::from_secs(10));
    assert!(r1.log().contains("cannot connect to the system bus"), "{}", r1.log());
    r1.assert_running();

    // The name owned by another process: an error, VRRP runs, and lbd waits in the queue.
    let client = Client::connect(&bus);
    let reply = client.runtime.block_on(client.connection.request_name(SERVICE));
    assert!(reply.is_ok(), "the test could not own {SERVICE}: {reply:?}");
    let env = bus.env();
    let mut r2 = start_lbd(&mut lab, &r[1], "r2", &one(52, "10.74.0.102/24"), &[&env]);
    VipWatch::start(&r[1], "r2", ip4(74, 102)).wait_for(true, Duration::from_secs(10));
    wait_logged(&r2, "is owned by another process", Duration::from_secs(5));
    r2.assert_running();
    // Once the name is free, lbd has it, and serves its objects under it.
    client.runtime.block_on(client.connection.release_name(SERVICE)).expect("releasing the name");
    let path = instance_path("eth0", 52, "IPv4");
    wait_state(&client, SERVICE, &path, (2, "Master"), Duration::from_secs(5));
    wait_logged(&r2, "Acquired the name org.keepalived.Vrrp1", Duration::from_secs(5));
    r2.assert_running();
}

#[test]
fn keepalived_and_lbd_send_the_same_signals_at_the_same_moments() {
    let (mut lab, bus, r, client) = on_a_bus(75, 2);
    let env = bus.env();
    // keepalived on r1 with VRIDs 51, 52 (then 53); lbd on r2 with 61, 62 (then 63), under
    // another name: the same story, told by each on its own objects.
    let text = |base: u8, last: u8, names: &[(&str, u8)], extra: &str| {
        let blocks: Vec<String> = names
            .iter()
            .map(|(name, offset)| {
                let vip = format!("10.75.0.{}/24", last + offset);
                instance(name, base + offset, 150, "1", &[&vip], "")
            })
            .collect();
        config("r", &format!("  enable_dbus\n{extra}"), &blocks)
    };
    let first = [("VI_A", 1), ("VI_B", 2)];
    let second = [("VI_A", 1), ("VI_C", 3)];
    let other = format!("  dbus_service_name {OTHER_SERVICE}\n");
    let mut keepalived =
        spawn_keepalived_env(&lab, &r[0], "keepalived", &text(50, 100, &first, ""), &[&env], &["-P"]);
    let mut lbd = start_lbd(&mut lab, &r[1], "lbd", &text(60, 110, &first, &other), &[&env]);
    let path = |vrid: u8| instance_path("eth0", vrid, "IPv4");
    for (service, base) in [(SERVICE, 50), (OTHER_SERVICE, 60)] {
        for offset in [1, 2] {
            wait_state(&client, service, &path(base + offset), (2, "Master"), Duration::from_secs(15));
        }
    }
    let senders =
        [client.owner(SERVICE).expect("keepalived's name"), client.owner(OTHER_SERVICE).expect("lbd's name")];
    // The live objects too: the same tree, the same members.
    let relative = |tree: BTreeMap<String, Vec<String>>, base: u8| -> BTreeMap<String, Vec<String>> {
        tree.into_iter()
            .map(|(p, i)| {
                ((1..=2).fold(p, |p, o| p.replace(&format!("/{}", base + o), &format!("/VRID+{o}"))), i)
            })
            .collect()
    };
    assert_eq!(relative(client.tree(OTHER_SERVICE), 60), relative(client.tree(SERVICE), 50));
    for (ours, theirs) in [(VRRP_PATH.to_owned(), VRRP_PATH.to_owned()), (path(61), path(51))] {
        assert_eq!(
            members(&client.introspect(OTHER_SERVICE, &ours)),
            members(&client.introspect(SERVICE, &theirs)),
            "{ours}"
        );
    }

    lab.write_file("keepalived.conf", &text(50, 100, &second, ""));
    lab.write_file("lbd.conf", &text(60, 110, &second, &other));
    for (service, base) in [(SERVICE, 50), (OTHER_SERVICE, 60)] {
        client.call(service, VRRP_PATH, VRRP_IFACE, "ReloadConfig").expect("ReloadConfig");
        wait_state(&client, service, &path(base + 3), (2, "Master"), Duration::from_secs(15));
    }
    for (process, label) in [(&mut keepalived, "keepalived"), (&mut lbd, "lbd")] {
        process.signal(Signal::SIGTERM);
        let status = process.wait(Duration::from_secs(15));
        assert!(status.success(), "{label} exited with {status:?}:\n{}", process.log());
    }
    std::thread::sleep(Duration::from_millis(500));

    // Each one's signals, object by object (VRIDs made relative), in order.
    let seen = client.seen();
    let story = |sender: &str, base: u8| -> BTreeMap<String, Vec<(String, Option<u32>)>> {
        let mut story: BTreeMap<String, Vec<(String, Option<u32>)>> = BTreeMap::new();
        for s in seen.iter().filter(|s| s.sender == sender) {
            let object = (1..=3).fold(s.path.clone(), |p, offset| {
                p.replace(&format!("/{}/", base + offset), &format!("/VRID+{offset}/"))
            });
            story.entry(object).or_default().push((s.member.clone(), s.status));
        }
        story
    };
    let (theirs, ours) = (story(&senders[0], 50), story(&senders[1], 60));
    assert!(theirs.len() == 4, "keepalived's signals: {theirs:#?}");
    assert_eq!(ours, theirs, "lbd's signals (left) and keepalived's (right)");
}
