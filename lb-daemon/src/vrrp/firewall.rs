//! `no_accept` through nftables, as keepalived 2.2.7 does it (`nftables`, `nftables_priority`,
//! `nftables_counters`, `nftables_ifindex`; `vrrp_iptables` is served the same way, lbd having
//! no iptables backend).
//!
//! A MASTER that is not the address owner (priority 255) and not in accept mode (`no_accept`,
//! or `vrrp_strict` without `accept`) must not take packets addressed to its VIPs (RFC 5798
//! §6.4.3), nor send from them. keepalived does it with a table of its own, measured with
//! `nft list ruleset` in a namespace running keepalived 2.2.7:
//!
//! - `table ip keepalived`: a set `vips` (`ipv4_addr`), base chains `out` (hook output) and `in`
//!   (hook input) at priority `filter - 1` (`nftables_priority`), each with one rule dropping
//!   `ip saddr @vips` / `ip daddr @vips`;
//! - `table ip6 keepalived`: sets `vips` (`ipv6_addr`), `neighbor-discovery` (the constant
//!   `nd-neighbor-solicit`, `nd-neighbor-advert`, always accepted so that the VIP still
//!   resolves) and `vips_link_local` (`ipv6_addr . iface_index`; with `dont_track_primary` and
//!   without `nftables_ifindex`, `vips_link_local_name`, `ipv6_addr . ifname`, matched on
//!   `iifname` / `oifname`); link-local traffic (`fe80::/10`) goes to the chains
//!   `in_link_local` / `out_link_local`, which drop what matches the address and interface;
//! - `nftables_counters` puts a counter in every rule;
//! - nothing exists until an instance first becomes MASTER ("setting firewall drop rule"): the
//!   tables are then made and its VIPs (`virtual_ipaddress` and `virtual_ipaddress_excluded`)
//!   added to the sets; leaving MASTER removes them ("removing firewall drop rule") and leaves
//!   the empty tables; stopping deletes the tables (a reload that keeps a non-accepting
//!   MASTER or a VMAC leaves them to the next engine, which replaces them in its first
//!   transaction).
//!
//! lbd writes the same tables through the `nft` binary's JSON input (`nft -j -f -`), one
//! transaction per change: [`Tables`] turns changes into commands (pure, unit-tested), and a
//! [`Firewall`] task runs them in order without holding up the VRRP engine. A table left by an
//! lbd that was killed is replaced in the transaction that first makes it.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use serde_json::{Value, json};
use tracing::warn;

use super::config::Vip;

/// The table's name without `nftables TABLENAME`.
pub const DEFAULT_TABLE: &str = "keepalived";
/// The base chains' priority without `nftables_priority` (`filter - 1`).
pub const DEFAULT_PRIORITY: i32 = -1;

/// Why nft could not be run.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// The `nft` binary could not be started or fed.
    #[error("cannot run nft")]
    Spawn(#[source] std::io::Error),
    /// nft refused the commands.
    #[error("nft failed: {0}")]
    Refused(String),
}

/// The table's settings, from `global_defs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallPlan {
    /// `nftables [TABLENAME]`.
    pub table: String,
    /// `nftables_priority`.
    pub priority: i32,
    /// `nftables_counters`.
    pub counters: bool,
    /// Some instance keys its link-local VIPs by interface name (`dont_track_primary` without
    /// `nftables_ifindex`): the ip6 table has `vips_link_local_name`.
    pub link_local_by_name: bool,
    /// Some instance keys them by interface index (the default): the ip6 table has
    /// `vips_link_local`.
    pub link_local_by_index: bool,
}

impl FirewallPlan {
    /// The plan of `global_defs` (the table name is keepalived's default when `nftables` has
    /// none, or when only `vrrp_iptables` was given).
    pub fn from_globals(global: &crate::config::model::GlobalDefs) -> Self {
        FirewallPlan {
            table: global.nftables.clone().filter(|t| !t.is_empty()).unwrap_or_else(|| DEFAULT_TABLE.into()),
            priority: global.nftables_priority.unwrap_or(DEFAULT_PRIORITY),
            counters: global.nftables_counters,
            link_local_by_name: false,
            link_local_by_index: false,
        }
    }
}

/// An address a non-accepting MASTER blocks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Blocked {
    /// An IPv4 VIP.
    V4(Ipv4Addr),
    /// A global (or site) IPv6 VIP.
    V6(Ipv6Addr),
    /// A link-local IPv6 VIP, with its interface.
    LinkLocal {
        /// The address.
        address: Ipv6Addr,
        /// Its interface's name (nft resolves it to the index for `iface_index`).
        interface: String,
        /// Keyed by name (`vips_link_local_name`) rather than index.
        by_name: bool,
    },
}

impl Blocked {
    /// What blocks `vip`; `by_name` for an instance whose link-local sets use names.
    pub fn of(vip: &Vip, by_name: bool) -> Self {
        match vip.address.addr {
            IpAddr::V4(a) => Blocked::V4(a),
            IpAddr::V6(a) if a.is_unicast_link_local() => {
                Blocked::LinkLocal { address: a, interface: vip.interface.clone(), by_name }
            }
            IpAddr::V6(a) => Blocked::V6(a),
        }
    }

    fn family(&self) -> Family {
        match self {
            Blocked::V4(_) => Family::Ip,
            _ => Family::Ip6,
        }
    }

    fn set(&self) -> &'static str {
        match self {
            Blocked::V4(_) | Blocked::V6(_) => "vips",
            Blocked::LinkLocal { by_name: false, .. } => "vips_link_local",
            Blocked::LinkLocal { by_name: true, .. } => "vips_link_local_name",
        }
    }

    fn element(&self) -> Value {
        match self {
            Blocked::V4(a) => json!(a.to_string()),
            Blocked::V6(a) => json!(a.to_string()),
            Blocked::LinkLocal { address, interface, .. } => {
                json!({ "concat": [address.to_string(), interface] })
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Family {
    Ip,
    Ip6,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
        }
    }
}

/// A `use_vmac` interface, whose IGMP / MLD reports go out through its parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vmac {
    /// Its name.
    pub name: String,
    /// Its parent's name.
    pub parent: String,
    /// Made for an IPv6 instance.
    pub ipv6: bool,
}

/// What the tables hold, and the nft commands that change them.
///
/// It records what was asked, not what nft did: after a failed transaction (which nft rolls
/// back as a whole) [`Tables::failed`] marks the tables unknown, and the next change rebuilds
/// them, with the VMAC rules and every address still blocked, in its transaction.
#[derive(Debug, Clone)]
pub struct Tables {
    plan: FirewallPlan,
    /// The tables made (replacing any left behind).
    created: Vec<Family>,
    /// The tables whose VIP sets and chains are made.
    with_vips: Vec<Family>,
    /// Each blocked address, with how many instances block it.
    blocked: HashMap<Blocked, usize>,
    /// The VMACs whose reports are moved, and `igmp`.
    vmacs: Option<(Vec<Vmac>, bool)>,
    /// A transaction failed: what nft holds is unknown.
    stale: bool,
}

impl Tables {
    /// No table yet.
    pub fn new(plan: FirewallPlan) -> Self {
        Tables {
            plan,
            created: Vec::new(),
            with_vips: Vec::new(),
            blocked: HashMap::new(),
            vmacs: None,
            stale: false,
        }
    }

    /// The last commands were refused (or nft did not run): the next change rebuilds the tables.
    pub fn failed(&mut self) {
        self.stale = true;
    }

    /// Takes over the tables a reload's previous engine left: the next change replaces them,
    /// and the stop deletes them.
    pub fn adopt(&mut self) {
        for family in [Family::Ip, Family::Ip6] {
            if !self.created.contains(&family) {
                self.created.push(family);
            }
        }
        self.stale = true;
    }

    /// After a failure, the commands that make the tables anew (replacing what is left) with
    /// everything recorded so far.
    fn rebuild(&mut self) -> Vec<Value> {
        if !self.stale {
            return Vec::new();
        }
        let old = std::mem::replace(self, Tables::new(self.plan.clone()));
        let mut commands = Vec::new();
        if let Some((vmacs, igmp)) = &old.vmacs {
            commands.extend(self.vmacs(vmacs, *igmp));
        }
        // Even an empty table: it may hold what a rolled-back unblock left.
        for &family in &old.with_vips {
            commands.extend(self.table(family));
        }
        for &family in old.created.iter().filter(|f| !self.created.contains(f)) {
            // Nothing recorded needs it (an adopted table): no table, as before it was made.
            commands.extend(delete_table(family, &self.plan.table));
        }
        for &family in &old.with_vips {
            if !self.with_vips.contains(&family) {
                self.with_vips.push(family);
                commands.extend(self.vips_part(family));
            }
        }
        let entries: Vec<Blocked> = old.blocked.keys().cloned().collect();
        commands.extend(self.block(&entries));
        self.blocked = old.blocked;
        commands
    }

    /// The commands that block `entries` (making the tables they need first).
    pub fn block(&mut self, entries: &[Blocked]) -> Vec<Value> {
        let mut commands = self.rebuild();
        for entry in entries {
            let family = entry.family();
            if !self.with_vips.contains(&family) {
                self.with_vips.push(family);
                commands.extend(self.table(family));
                commands.extend(self.vips_part(family));
            }
            let count = self.blocked.entry(entry.clone()).or_insert(0);
            *count += 1;
            if *count == 1 {
                commands.push(json!({ "add": { "element": self.element(entry) } }));
            }
        }
        commands
    }

    /// The commands that unblock `entries` (an address another instance still blocks stays).
    pub fn unblock(&mut self, entries: &[Blocked]) -> Vec<Value> {
        let mut commands = self.rebuild();
        for entry in entries {
            let Some(count) = self.blocked.get_mut(entry) else { continue };
            *count -= 1;
            if *count == 0 {
                self.blocked.remove(entry);
                commands.push(json!({ "delete": { "element": self.element(entry) } }));
            }
        }
        commands
    }

    /// The commands that delete the tables made so far (whether a failed transaction made them
    /// or not).
    pub fn remove(&mut self) -> Vec<Value> {
        self.blocked.clear();
        self.with_vips.clear();
        self.vmacs = None;
        self.stale = false;
        let created = std::mem::take(&mut self.created);
        created.into_iter().flat_map(|family| delete_table(family, &self.plan.table)).collect()
    }

    fn element(&self, entry: &Blocked) -> Value {
        json!({
            "family": entry.family().name(),
            "table": self.plan.table,
            "name": entry.set(),
            "elem": [entry.element()],
        })
    }

    /// The commands that move what the VMACs send off them, as keepalived does at startup
    /// (before any VIP): IGMP reports (IPv4 instances' VMACs, unless `igmp` is false:
    /// `disable_local_igmp`) and MLD reports (IPv6 instances') are sent on the parent instead
    /// (`dup to ... device oif map @vmac_map`), and router solicitations from IPv6 VMACs dropped.
    pub fn vmacs(&mut self, vmacs: &[Vmac], igmp: bool) -> Vec<Value> {
        let mut commands = self.rebuild();
        self.vmacs = Some((vmacs.to_vec(), igmp));
        for family in [Family::Ip, Family::Ip6] {
            let ours: Vec<&Vmac> =
                vmacs.iter().filter(|v| v.ipv6 == (family == Family::Ip6) && (v.ipv6 || igmp)).collect();
            if ours.is_empty() {
                continue;
            }
            commands.extend(self.table(family));
            let f = family.name();
            let add = |kind: &str, body: Value| self.add(family, kind, body);
            let pairs: Vec<Value> = ours.iter().map(|v| json!([v.name, v.parent])).collect();
            commands.push(add(
                "map",
                json!({ "name": "vmac_map", "type": "iface_index", "map": "iface_index", "elem": pairs }),
            ));
            let macvlan = json!({ "match": { "op": "==", "left": { "meta": { "key": "oifkind" } },
                                             "right": "macvlan" } });
            let moved = if family == Family::Ip {
                json!({ "match": { "op": "==", "left": self.payload("ip", "protocol"), "right": "igmp" } })
            } else {
                commands.push(add(
                    "set",
                    json!({ "name": "vmac_set", "type": "iface_index",
                            "elem": ours.iter().map(|v| v.name.clone()).collect::<Vec<_>>() }),
                ));
                json!({ "match": { "op": "==", "left": self.payload("icmpv6", "type"),
                                   "right": "mld2-listener-report" } })
            };
            commands.push(self.base_chain(family, "out", "output"));
            let dup = json!({ "dup": { "addr": self.payload(f, "daddr"),
                                       "dev": { "map": { "key": { "meta": { "key": "oif" } },
                                                         "data": "@vmac_map" } } } });
            commands.push(self.rule(
                family,
                "out",
                vec![moved, macvlan.clone()],
                vec![dup, json!({ "drop": null })],
            ));
            if family == Family::Ip6 {
                let solicit = json!({ "match": { "op": "==", "left": self.payload("icmpv6", "type"),
                                                 "right": "nd-router-solicit" } });
                let on_vmac = json!({ "match": { "op": "==", "left": { "meta": { "key": "oif" } },
                                                 "right": "@vmac_set" } });
                commands.push(self.rule(
                    family,
                    "out",
                    vec![solicit, macvlan, on_vmac],
                    vec![json!({ "drop": null })],
                ));
            }
        }
        commands
    }

    /// `add KIND` in the table of `family`.
    fn add(&self, family: Family, kind: &str, mut body: Value) -> Value {
        body["family"] = json!(family.name());
        if kind != "table" {
            body["table"] = json!(self.plan.table);
        }
        json!({ "add": { kind: body } })
    }

    fn payload(&self, protocol: &str, field: &str) -> Value {
        json!({ "payload": { "protocol": protocol, "field": field } })
    }

    fn base_chain(&self, family: Family, name: &str, hook: &str) -> Value {
        self.add(
            family,
            "chain",
            json!({ "name": name, "type": "filter", "hook": hook, "prio": self.plan.priority, "policy": "accept" }),
        )
    }

    /// A rule of `matches`, then a counter with `nftables_counters`, then `statements`.
    fn rule(&self, family: Family, chain: &str, matches: Vec<Value>, statements: Vec<Value>) -> Value {
        let mut expr = matches;
        if self.plan.counters {
            expr.push(json!({ "counter": { "packets": 0, "bytes": 0 } }));
        }
        expr.extend(statements);
        self.add(family, "rule", json!({ "chain": chain, "expr": expr }))
    }

    /// The table of `family`, made the first time (replacing one left behind).
    fn table(&mut self, family: Family) -> Vec<Value> {
        if self.created.contains(&family) {
            return Vec::new();
        }
        self.created.push(family);
        let (f, table) = (family.name(), self.plan.table.as_str());
        vec![
            self.add(family, "table", json!({ "name": table })),
            json!({ "delete": { "table": { "family": f, "name": table } } }),
            self.add(family, "table", json!({ "name": table })),
        ]
    }

    /// The VIP sets and the chains that drop their traffic, as keepalived makes them.
    fn vips_part(&self, family: Family) -> Vec<Value> {
        let mut commands = Vec::new();
        let add = |kind: &str, body: Value| self.add(family, kind, body);
        let base_chain = |name: &str, hook: &str| self.base_chain(family, name, hook);
        let rule = |chain: &str, matched: Value, verdict: Value| {
            let matched = json!({ "match": { "op": "==", "left": matched[0], "right": matched[1] } });
            self.rule(family, chain, vec![matched], vec![verdict])
        };
        let payload = |protocol: &str, field: &str| self.payload(protocol, field);
        let drop = json!({ "drop": null });
        match family {
            Family::Ip => {
                commands.push(add("set", json!({ "name": "vips", "type": "ipv4_addr" })));
                commands.push(base_chain("out", "output"));
                commands.push(base_chain("in", "input"));
                for (chain, field) in [("out", "saddr"), ("in", "daddr")] {
                    commands.push(rule(chain, json!([payload("ip", field), "@vips"]), drop.clone()));
                }
            }
            Family::Ip6 => {
                let by_index = self.plan.link_local_by_index || !self.plan.link_local_by_name;
                commands.push(add("set", json!({ "name": "vips", "type": "ipv6_addr" })));
                commands.push(add(
                    "set",
                    json!({ "name": "neighbor-discovery", "type": "icmpv6_type", "flags": ["constant"],
                            "elem": ["nd-neighbor-solicit", "nd-neighbor-advert"] }),
                ));
                let mut link_local_sets = Vec::new();
                if by_index {
                    link_local_sets.push(("vips_link_local", "iface_index", ["iif", "oif"]));
                }
                if self.plan.link_local_by_name {
                    link_local_sets.push(("vips_link_local_name", "ifname", ["iifname", "oifname"]));
                }
                for (name, key, _) in &link_local_sets {
                    commands.push(add("set", json!({ "name": name, "type": ["ipv6_addr", key] })));
                }
                commands.push(base_chain("out", "output"));
                commands.push(base_chain("in", "input"));
                commands.push(add("chain", json!({ "name": "in_link_local" })));
                commands.push(add("chain", json!({ "name": "out_link_local" })));
                let link_local = json!({ "prefix": { "addr": "fe80::", "len": 10 } });
                for (chain, field) in [("out", "saddr"), ("in", "daddr")] {
                    commands.push(rule(
                        chain,
                        json!([payload("icmpv6", "type"), "@neighbor-discovery"]),
                        json!({ "accept": null }),
                    ));
                    commands.push(rule(
                        chain,
                        json!([payload("ip6", field), link_local]),
                        json!({ "goto": { "target": format!("{chain}_link_local") } }),
                    ));
                    commands.push(rule(chain, json!([payload("ip6", field), "@vips"]), drop.clone()));
                }
                for (set, _, [iif, oif]) in &link_local_sets {
                    for (chain, field, meta) in
                        [("in_link_local", "daddr", iif), ("out_link_local", "saddr", oif)]
                    {
                        let key = json!({ "concat": [payload("ip6", field), { "meta": { "key": meta } }] });
                        commands.push(rule(chain, json!([key, format!("@{set}")]), drop.clone()));
                    }
                }
            }
        }
        commands
    }
}

/// The commands that delete the table `name` of `family`, if it exists.
fn delete_table(family: Family, name: &str) -> [Value; 2] {
    let table = json!({ "family": family.name(), "name": name });
    [json!({ "add": { "table": table } }), json!({ "delete": { "table": table } })]
}

/// Deletes the tables `name` (both families) that a previous engine left.
pub async fn delete_tables(name: &str) {
    let commands = [Family::Ip, Family::Ip6].into_iter().flat_map(|f| delete_table(f, name)).collect();
    if let Err(e) = apply(commands).await {
        warn!("nftables: {}", super::addr::chain(&e));
    }
}

/// The batch nft reads for `commands`.
pub fn batch(commands: Vec<Value>) -> Value {
    json!({ "nftables": commands })
}

/// Runs `commands` as one nft transaction.
pub async fn apply(commands: Vec<Value>) -> Result<(), FirewallError> {
    use tokio::io::AsyncWriteExt as _;
    if commands.is_empty() {
        return Ok(());
    }
    let mut child = tokio::process::Command::new("nft")
        .args(["-j", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(FirewallError::Spawn)?;
    let input = batch(commands).to_string();
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).await.map_err(FirewallError::Spawn)?;
    }
    let out = child.wait_with_output().await.map_err(FirewallError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(FirewallError::Refused(String::from_utf8_lossy(&out.stderr).trim().to_owned()))
    }
}

type Done = tokio::sync::oneshot::Sender<()>;

#[derive(Debug)]
enum Request {
    /// The VMACs' rules and what is blocked from the start, in one transaction.
    Start(Vec<Vmac>, bool, Vec<Blocked>, Done),
    Block(Vec<Blocked>, Done),
    Unblock(Vec<Blocked>),
    /// Take over the tables a previous engine left.
    Adopt,
    /// Delete the tables and end.
    Close(Done),
    /// End, leaving the tables to the next engine (a reload).
    Leave(Done),
}

/// The tables of a running engine: changes are carried out in order by a task of their own.
/// Dropped without [`Firewall::close`] or [`Firewall::leave`] (an engine that could not start),
/// it deletes the tables it made.
#[derive(Debug)]
pub struct Firewall {
    requests: tokio::sync::mpsc::UnboundedSender<Request>,
    table: String,
}

impl Firewall {
    /// Starts the task on the current runtime.
    pub fn spawn(plan: FirewallPlan) -> Self {
        let (requests, mut queue) = tokio::sync::mpsc::unbounded_channel();
        let table = plan.table.clone();
        tokio::spawn(async move {
            let mut tables = Tables::new(plan);
            loop {
                let (commands, done, last) = match queue.recv().await {
                    Some(Request::Start(vmacs, igmp, entries, done)) => {
                        let mut commands =
                            if vmacs.is_empty() { Vec::new() } else { tables.vmacs(&vmacs, igmp) };
                        commands.extend(tables.block(&entries));
                        (commands, Some(done), false)
                    }
                    Some(Request::Block(entries, done)) => (tables.block(&entries), Some(done), false),
                    Some(Request::Unblock(entries)) => (tables.unblock(&entries), None, false),
                    Some(Request::Adopt) => {
                        tables.adopt();
                        continue;
                    }
                    Some(Request::Close(done)) => (tables.remove(), Some(done), true),
                    Some(Request::Leave(done)) => (Vec::new(), Some(done), true),
                    // Dropped: the engine is gone without a stop.
                    None => (tables.remove(), None, true),
                };
                if let Err(e) = apply(commands).await {
                    warn!("nftables: {}", super::addr::chain(&e));
                    tables.failed();
                }
                if let Some(done) = done {
                    let _ = done.send(());
                }
                if last {
                    return;
                }
            }
        });
        Firewall { requests, table }
    }

    /// The tables' name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Moves the IGMP (unless not `igmp`) and MLD reports of `vmacs` to their parents and
    /// drops traffic to and from `entries` (the VIPs of the non-accepting MASTERs a reload
    /// keeps), in one transaction that replaces any tables left (a reload's previous engine's,
    /// whose drop rules so stay in force); returns once it is done (before the VRRP sockets join
    /// their groups).
    pub async fn start(&self, vmacs: Vec<Vmac>, igmp: bool, entries: Vec<Blocked>) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.requests.send(Request::Start(vmacs, igmp, entries, done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Drops traffic to and from `entries`; returns once nft is done, or after `wait` (a hung
    /// nft must not hold VRRP up).
    pub async fn block(&self, entries: Vec<Blocked>, wait: std::time::Duration) {
        let (done, finished) = tokio::sync::oneshot::channel();
        if self.requests.send(Request::Block(entries, done)).is_ok()
            && tokio::time::timeout(wait, finished).await.is_err()
        {
            warn!("nftables: the drop rule is not set after {wait:?}, going on");
        }
    }

    /// Takes over the tables a reload's previous engine left (see [`Tables::adopt`]).
    pub fn adopt(&self) {
        let _ = self.requests.send(Request::Adopt);
    }

    /// Lets traffic to and from `entries` through again.
    pub fn unblock(&self, entries: Vec<Blocked>) {
        let _ = self.requests.send(Request::Unblock(entries));
    }

    /// Deletes the tables, once what was asked before is done.
    pub async fn close(self) {
        self.end(Request::Close).await;
    }

    /// Ends once what was asked before is done, leaving the tables as they are: a reload's next
    /// engine replaces them in its first transaction, its kept MASTERs staying protected until
    /// then.
    pub async fn leave(self) {
        self.end(Request::Leave).await;
    }

    async fn end(self, request: fn(Done) -> Request) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.requests.send(request(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> FirewallPlan {
        FirewallPlan {
            table: "kvtab".into(),
            priority: -5,
            counters: true,
            link_local_by_name: false,
            link_local_by_index: true,
        }
    }

    fn v4(last: u8) -> Blocked {
        Blocked::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[test]
    fn the_first_block_makes_the_table_as_keepalived_and_replaces_a_stale_one() {
        let mut tables = Tables::new(plan());
        let commands = tables.block(&[v4(100), v4(101)]);
        let text: Vec<String> = commands.iter().map(Value::to_string).collect();
        assert_eq!(text[0], r#"{"add":{"table":{"family":"ip","name":"kvtab"}}}"#);
        assert_eq!(text[1], r#"{"delete":{"table":{"family":"ip","name":"kvtab"}}}"#);
        assert!(text[3].contains(r#""name":"vips""#) && text[3].contains(r#""type":"ipv4_addr""#));
        assert!(text[4].contains(r#""hook":"output""#) && text[4].contains(r#""prio":-5"#), "{}", text[4]);
        assert!(text[6].contains(r#""chain":"out""#) && text[6].contains(r#""field":"saddr""#));
        assert!(text[6].contains(r#"{"counter":{"bytes":0,"packets":0}},{"drop":null}"#), "{}", text[6]);
        assert!(text[7].contains(r#""chain":"in""#) && text[7].contains(r#""field":"daddr""#));
        assert_eq!(
            &text[8..],
            [
                r#"{"add":{"element":{"elem":["10.0.0.100"],"family":"ip","name":"vips","table":"kvtab"}}}"#,
                r#"{"add":{"element":{"elem":["10.0.0.101"],"family":"ip","name":"vips","table":"kvtab"}}}"#,
            ]
        );
        // The table exists now: only the element.
        assert_eq!(tables.block(&[v4(102)]).len(), 1);
    }

    #[test]
    fn an_address_two_instances_block_stays_until_both_unblock_it() {
        let mut tables = Tables::new(plan());
        tables.block(&[v4(1)]);
        assert!(tables.block(&[v4(1)]).is_empty());
        assert!(tables.unblock(&[v4(1)]).is_empty());
        assert_eq!(tables.unblock(&[v4(1)]).len(), 1);
        assert!(tables.unblock(&[v4(1)]).is_empty(), "not blocked any more");
        assert_eq!(
            tables.remove().iter().map(Value::to_string).collect::<Vec<_>>(),
            [
                r#"{"add":{"table":{"family":"ip","name":"kvtab"}}}"#,
                r#"{"delete":{"table":{"family":"ip","name":"kvtab"}}}"#
            ]
        );
        assert!(tables.remove().is_empty());
    }

    #[test]
    fn link_local_vips_are_keyed_with_their_interface() {
        let mut tables = Tables::new(FirewallPlan { link_local_by_name: true, ..plan() });
        let entry = Blocked::LinkLocal {
            address: Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x77),
            interface: "eth0".into(),
            by_name: true,
        };
        let text = batch(tables.block(&[entry, Blocked::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1))]))
            .to_string();
        assert!(text.contains(r#""name":"neighbor-discovery""#), "{text}");
        assert!(
            text.contains(r#""name":"vips_link_local","table":"kvtab","type":["ipv6_addr","iface_index"]"#),
            "{text}"
        );
        assert!(
            text.contains(r#""name":"vips_link_local_name","table":"kvtab","type":["ipv6_addr","ifname"]"#),
            "{text}"
        );
        assert!(text.contains(r#"{"meta":{"key":"iifname"}}"#) && text.contains(r#"{"meta":{"key":"oif"}}"#));
        assert!(text.contains(r#""goto":{"target":"in_link_local"}"#), "{text}");
        assert!(text.contains(
            r#""elem":[{"concat":["fe80::77","eth0"]}],"family":"ip6","name":"vips_link_local_name""#
        ));
        assert!(text.contains(r#""elem":["fd00::1"],"family":"ip6","name":"vips""#), "{text}");
        assert!(!text.contains(r#""family":"ip","#), "no IPv4 table without IPv4 VIPs: {text}");
    }

    #[test]
    fn vmacs_send_their_reports_through_their_parents_and_the_vips_come_after() {
        let mut tables = Tables::new(FirewallPlan { counters: false, ..plan() });
        let vmac = |name: &str, ipv6| Vmac { name: name.into(), parent: "eth0".into(), ipv6 };
        assert!(tables.vmacs(&[vmac("vrrp.1", false)], false).is_empty(), "disable_local_igmp");
        let text = batch(tables.vmacs(&[vmac("vrrp.1", false), vmac("vrrp.2", true)], true)).to_string();
        assert!(
            text.contains(
                r#""elem":[["vrrp.1","eth0"]],"family":"ip","map":"iface_index","name":"vmac_map""#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#""right":"igmp""#) && text.contains(r#""right":"mld2-listener-report""#),
            "{text}"
        );
        assert!(text.contains(r#""data":"@vmac_map""#) && text.contains(r#""right":"@vmac_set""#), "{text}");
        // The tables exist now: blocking adds the VIP part without replacing them.
        let text = batch(tables.block(&[v4(100)])).to_string();
        assert!(!text.contains(r#"{"delete":{"table""#), "{text}");
        assert!(text.contains(r#""name":"vips""#), "{text}");
        assert_eq!(tables.remove().len(), 4);
    }

    #[test]
    fn after_a_failed_transaction_the_next_change_rebuilds_everything() {
        let mut tables = Tables::new(plan());
        let vmac = Vmac { name: "vrrp.1".into(), parent: "eth0".into(), ipv6: false };
        tables.vmacs(std::slice::from_ref(&vmac), true);
        let first = tables.block(&[v4(1)]);
        assert!(!first.iter().any(|c| c.to_string().contains(r#""delete""#)), "the table was made");
        // nft refused the next one: rolled back, 10.0.0.2 is not in the set.
        tables.block(&[v4(2)]);
        tables.failed();
        let text: Vec<String> = tables.block(&[v4(3)]).iter().map(Value::to_string).collect();
        assert_eq!(text[1], r#"{"delete":{"table":{"family":"ip","name":"kvtab"}}}"#, "{text:?}");
        let all = text.join("\n");
        assert!(all.contains(r#""name":"vmac_map""#), "the VMAC rules again: {all}");
        assert!(all.contains(r#"{"add":{"set":{"family":"ip","name":"vips""#), "{all}");
        for last in 1..=3 {
            assert!(all.contains(&format!(r#""elem":["10.0.0.{last}"]"#)), "10.0.0.{last}: {all}");
        }
        // Rebuilt: incremental again, with the counts kept.
        assert_eq!(tables.block(&[v4(4)]).len(), 1);
        assert!(tables.block(&[v4(1)]).is_empty());
        assert!(tables.unblock(&[v4(1)]).is_empty());
        // A failed unblock: the rebuilt table has neither it nor the one asked next.
        assert_eq!(tables.unblock(&[v4(2)]).len(), 1);
        tables.failed();
        let all = batch(tables.unblock(&[v4(3)])).to_string();
        assert!(all.contains(r#"{"delete":{"table""#), "{all}");
        assert!(all.contains(r#""elem":["10.0.0.1"]"#) && all.contains(r#""elem":["10.0.0.4"]"#), "{all}");
        assert!(!all.contains(r#""elem":["10.0.0.2"]"#), "{all}");
        let three = all.rfind(r#""elem":["10.0.0.3"]"#).expect("10.0.0.3 rebuilt, then unblocked");
        assert!(all[..three].ends_with(r#"{"delete":{"element":{"#), "{all}");
    }

    #[test]
    fn adopted_tables_are_replaced_by_the_first_change_and_deleted_at_the_stop() {
        let mut tables = Tables::new(plan());
        tables.adopt();
        let all = batch(tables.block(&[v4(1)])).to_string();
        assert!(
            all.starts_with(r#"{"nftables":[{"add":{"table":{"family":"ip","name":"kvtab"}}},{"delete""#)
        );
        assert!(all.contains(r#""elem":["10.0.0.1"]"#), "{all}");
        // The ip6 table it may have left goes: nothing here needs it.
        assert!(all.contains(r#"{"delete":{"table":{"family":"ip6","name":"kvtab"}}}"#), "{all}");
        assert_eq!(tables.block(&[v4(2)]).len(), 1);
        // Adopted but never changed: the stop still deletes both.
        let mut tables = Tables::new(plan());
        tables.adopt();
        assert_eq!(batch(tables.remove()).to_string().matches(r#"{"delete":{"table""#).count(), 2);
    }

    #[test]
    fn a_failed_unblock_of_the_last_address_still_replaces_the_table() {
        let mut tables = Tables::new(plan());
        tables.block(&[v4(1)]);
        tables.unblock(&[v4(1)]);
        tables.failed();
        // Nothing left to block, but 10.0.0.1 may still be in the set nft kept.
        let all = batch(tables.unblock(&[v4(9)])).to_string();
        assert!(all.contains(r#"{"delete":{"table""#) && all.contains(r#""name":"vips""#), "{all}");
        assert!(!all.contains(r#""elem""#), "{all}");
    }
}
