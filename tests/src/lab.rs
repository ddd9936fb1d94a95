//! Network namespaces, links and mounts for one test, removed when the [`Lab`] is dropped.
//!
//! Names are unique per process and per lab (`lbt<pid>x<n>-<role>`), so tests run in parallel
//! and twice in a row. A lab also sweeps what a killed earlier run left behind: namespaces and
//! mounts whose owning pid no longer exists.

use std::{
    fs,
    os::fd::AsFd as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use nix::sched::{CloneFlags, setns};

use crate::process::Proc;

/// Prefix of every namespace and directory a lab creates.
const PREFIX: &str = "lbt";
/// Where labs keep their files (configs, logs, bpffs mounts).
const BASE_DIR: &str = "/tmp/lbd-tests";
const NETNS_DIR: &str = "/run/netns";

static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// One test's private world: namespaces, bpffs mounts and a scratch directory.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    dir: PathBuf,
    namespaces: Vec<String>,
    mounts: Vec<PathBuf>,
}

impl Lab {
    /// A new, empty lab. Removes leftovers of dead earlier runs first.
    pub fn new() -> Self {
        crate::require_root();
        sweep_stale();
        let prefix = format!("{PREFIX}{}x{}", std::process::id(), NEXT_LAB.fetch_add(1, Ordering::Relaxed));
        let dir = Path::new(BASE_DIR).join(&prefix);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        Self { prefix, dir, namespaces: Vec::new(), mounts: Vec::new() }
    }

    /// The lab's scratch directory (configs, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `contents` to `name` in the scratch directory and returns its path.
    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.join(name);
        fs::write(&path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    /// A self-signed certificate for `cn`, written as `key.pem` and `cert.pem` in the scratch
    /// directory (openssl).
    pub fn self_signed_cert(&self, cn: &str) {
        let out = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                &format!("/CN={cn}"),
            ])
            .arg("-keyout")
            .arg(self.dir.join("key.pem"))
            .arg("-out")
            .arg(self.dir.join("cert.pem"))
            .output()
            .unwrap_or_else(|e| panic!("running openssl: {e}"));
        assert!(out.status.success(), "openssl req: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A new network namespace for the host `role`, with loopback up.
    pub fn netns(&mut self, role: &str) -> Netns {
        let name = format!("{}-{role}", self.prefix);
        run(Command::new("ip").args(["netns", "add", &name]));
        self.namespaces.push(name.clone());
        let ns = Netns { name, log_dir: self.dir.clone() };
        ns.ip(&["link", "set", "lo", "up"]);
        // No duplicate address detection: IPv6 addresses (link-local included) are usable at
        // once, so tests need not wait out DAD's tentative state.
        for conf in ["all", "default"] {
            ns.sysctl(&format!("net.ipv6.conf.{conf}.accept_dad"), "0");
        }
        ns
    }

    /// A veth pair, `a_if` in `a` and `b_if` in `b`, both up, with GRO on and checksum offload
    /// off.
    ///
    /// GRO gives each end a NAPI context, without which a veth drops the frames an XDP program
    /// sends into it (XDP_TX from its peer, or XDP_REDIRECT): see shared/notes/xdp-on-veth.md.
    /// GRO is not enough for XDP_TX to be delivered promptly, though: the peer is woken only if
    /// it has an XDP program itself, else the frames wait for the next one the kernel sends
    /// through the pair; attach [`crate::xdp::attach_pass`] to the far end.
    /// Without TX checksum offload the stack writes complete checksums, as frames from a real
    /// NIC carry: with it a veth frame holds only the pseudo-header sum, which an XDP rewrite
    /// then sends on as a wrong checksum.
    pub fn veth(&self, a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
        a.ip(&["link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name]);
        a.ip(&["link", "set", a_if, "up"]);
        b.ip(&["link", "set", b_if, "up"]);
        for (ns, interface) in [(a, a_if), (b, b_if)] {
            let out = ns.exec("ethtool", &["-K", interface, "gro", "on", "tx", "off"]);
            assert!(out.status.success(), "ethtool -K {interface}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }

    /// A bridge `bridge` in `switch` (created if missing) with a port to `host`'s `host_if`.
    ///
    /// The switch-side port is named after the host's namespace role and interface.
    pub fn plug(&self, switch: &Netns, bridge: &str, host: &Netns, host_if: &str, port: &str) {
        if switch.try_ip(&["link", "show", bridge]).is_err() {
            switch.ip(&["link", "add", bridge, "type", "bridge"]);
            // No STP delay and no multicast snooping: VRRP multicast must flood at once.
            switch.ip(&[
                "link",
                "set",
                bridge,
                "type",
                "bridge",
                "forward_delay",
                "0",
                "mcast_snooping",
                "0",
            ]);
            switch.ip(&["link", "set", bridge, "up"]);
        }
        self.veth(switch, port, host, host_if);
        switch.ip(&["link", "set", port, "master", bridge]);
    }

    /// A fresh bpffs mounted in the host's mount namespace, outside /sys: pins made by a daemon
    /// inside `ip netns exec` are visible there to bpftool and to the test (see
    /// shared/notes/xdp-on-veth.md).
    pub fn bpffs(&mut self) -> PathBuf {
        let path = self.dir.join(format!("bpffs{}", self.mounts.len()));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        run(Command::new("mount").args(["-t", "bpf", "bpffs"]).arg(&path));
        self.mounts.push(path.clone());
        path
    }

    /// The load-balancer topology of the system tests, without addresses: `client` and `lb`
    /// on a `front` bridge, `lb` and `reals` real servers (`r1`, `r2`, ...) on a `back`
    /// bridge, in a switch namespace. Every host's interface is eth0; the LB's are eth0 (front)
    /// and eth1 (back).
    pub fn lb_hosts(&mut self, reals: usize) -> LbHosts {
        let switch = self.netns("sw");
        let client = self.netns("client");
        let lb = self.netns("lb");
        self.plug(&switch, "front", &client, "eth0", "client");
        self.plug(&switch, "front", &lb, "eth0", "lb-f");
        self.plug(&switch, "back", &lb, "eth1", "lb-b");
        let reals = (1..=reals)
            .map(|i| {
                let name = format!("r{i}");
                let ns = self.netns(&name);
                self.plug(&switch, "back", &ns, "eth0", &name);
                ns
            })
            .collect();
        LbHosts { switch, client, lb, reals }
    }
}

/// The hosts of [`Lab::lb_hosts`].
#[derive(Debug)]
pub struct LbHosts {
    /// Holds the bridges.
    pub switch: Netns,
    /// The client.
    pub client: Netns,
    /// The load balancer.
    pub lb: Netns,
    /// The real servers, `r1` first.
    pub reals: Vec<Netns>,
}

impl LbHosts {
    /// The system tests' usual addresses: the client 10.30.0.2/24, routing the VIPs
    /// (10.40.0.0/24) via the LB's 10.30.0.1; the LB 10.31.0.1/24 on eth1; real server `i`
    /// 10.31.0.1`i`/24 with the LB as its default gateway.
    pub fn with_addresses(self) -> Self {
        self.client.addr("eth0", "10.30.0.2/24");
        self.client.ip(&["route", "add", "10.40.0.0/24", "via", "10.30.0.1"]);
        self.lb.addr("eth0", "10.30.0.1/24");
        self.lb.addr("eth1", "10.31.0.1/24");
        for (i, ns) in (1..).zip(&self.reals) {
            ns.addr("eth0", &format!("10.31.0.1{i}/24"));
            ns.ip(&["route", "add", "default", "via", "10.31.0.1"]);
        }
        self
    }
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            remove_netns(ns);
        }
        for mount in self.mounts.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(mount).status();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A network namespace of a lab.
#[derive(Clone, Debug)]
pub struct Netns {
    name: String,
    log_dir: PathBuf,
}

impl Netns {
    /// Its name, for `ip netns exec`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS...`; panics with ip's message on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        self.try_ip(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `ip -n NAME ARGS...`, returning stdout or the failure.
    pub fn try_ip(&self, args: &[&str]) -> Result<String, String> {
        let out =
            Command::new("ip").arg("-n").arg(&self.name).args(args).output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "ip -n {} {}: {}",
                self.name,
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Adds `cidr` to `interface` and brings it up.
    pub fn addr(&self, interface: &str, cidr: &str) {
        let family = if cidr.contains(':') { "-6" } else { "-4" };
        self.ip(&[family, "addr", "add", cidr, "dev", interface, "nodad"]);
        self.ip(&["link", "set", interface, "up"]);
    }

    /// Sets a sysctl inside the namespace (`net.ipv4.ip_forward`, ...).
    pub fn sysctl(&self, key: &str, value: &str) {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.enter(|| fs::write(&path, value))
            .unwrap_or_else(|e| panic!("{}: sysctl {key}={value}: {e}", self.name));
    }

    /// A counter of the namespace's TCP MIB (the `Tcp:` lines of /proc/net/snmp, both
    /// families): `InSegs`, `InCsumErrors`, ...
    pub fn tcp_counter(&self, name: &str) -> u64 {
        let out = self.exec("cat", &["/proc/net/snmp"]);
        let text = String::from_utf8_lossy(&out.stdout);
        let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
        let (names, values) = (tcp.next().unwrap_or_default(), tcp.next().unwrap_or_default());
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or_else(|| panic!("{}: no TCP counter {name} in /proc/net/snmp:\n{text}", self.name))
    }

    /// Runs a command inside the namespace to completion.
    pub fn exec(&self, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
        let program = program.as_ref();
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {program:?} in {}: {e}", self.name))
    }

    /// The body of GET `url` from inside the namespace (curl, 5 s at most); panics with curl's
    /// error if the request fails.
    pub fn http_get(&self, url: &str) -> String {
        let out = self.exec("curl", &["-sS", "--max-time", "5", url]);
        assert!(out.status.success(), "GET {url} in {}: {}", self.name, String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a command inside the namespace; its stdout and stderr go to a log file in the lab's
    /// directory. The process (and its process group) is killed when the [`Proc`] is dropped.
    pub fn spawn(&self, label: &str, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Proc {
        // A label used twice gets a log of its own each time: two processes writing one file
        // overwrite each other's lines.
        let log = (1..)
            .map(|n| match n {
                1 => self.log_dir.join(format!("{}-{label}.log", self.name)),
                n => self.log_dir.join(format!("{}-{label}-{n}.log", self.name)),
            })
            .find(|path| !path.exists())
            .expect("some log name is free");
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program.as_ref()).args(args);
        Proc::spawn(label, command, &log)
    }

    /// Runs `f` on a thread that has entered this namespace: sockets it creates belong here.
    pub fn enter<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let path = Path::new(NETNS_DIR).join(&self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let file = fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    setns(file.as_fd(), CloneFlags::CLONE_NEWNET)
                        .unwrap_or_else(|e| panic!("entering {}: {e}", self.name));
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// The interface's IPv6 link-local address.
    pub fn link_local(&self, interface: &str) -> std::net::Ipv6Addr {
        let out = self.ip(&["-6", "-br", "addr", "show", "dev", interface, "scope", "link"]);
        out.split_whitespace()
            .find_map(|word| word.split('/').next()?.parse().ok())
            .unwrap_or_else(|| panic!("{}: no link-local address on {interface}: {out:?}", self.name))
    }

    /// The interface's MAC address.
    pub fn mac(&self, interface: &str) -> [u8; 6] {
        // Not /sys/class/net: that shows the caller's namespace, not this one.
        let out = self.ip(&["-br", "link", "show", interface]);
        let mac = out.split_whitespace().nth(2).unwrap_or_else(|| panic!("no MAC in {out:?}"));
        let mut bytes = [0u8; 6];
        for (byte, part) in bytes.iter_mut().zip(mac.split(':')) {
            *byte = u8::from_str_radix(part, 16).unwrap_or_else(|e| panic!("MAC {mac}: {e}"));
        }
        bytes
    }
}

/// Polls `condition` every 20 ms until it holds; panics saying `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run(command: &mut Command) {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(out.status.success(), "{command:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
}

/// Kills whatever still runs in the namespace, then deletes it.
fn remove_netns(name: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    let _ = Command::new("ip").args(["netns", "del", name]).status();
}

/// The pid encoded in a lab name (`lbt<pid>x<n>...`), if it is one.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    rest[..rest.find('x')?].parse().ok()
}

fn owner_alive(name: &str) -> bool {
    owner_pid(name).is_none_or(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

/// Removes namespaces, mounts and directories of labs whose process is gone.
fn sweep_stale() {
    if let Ok(entries) = fs::read_dir(NETNS_DIR) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if owner_pid(&name).is_some() && !owner_alive(&name) {
                remove_netns(&name);
            }
        }
    }
    if let Ok(mounts) = fs::read_to_string("/proc/self/mounts") {
        for mountpoint in mounts.lines().filter_map(|l| l.split_whitespace().nth(1)) {
            if let Some(rest) = mountpoint.strip_prefix(BASE_DIR).and_then(|r| r.strip_prefix('/'))
                && !owner_alive(rest.split('/').next().unwrap_or_default())
            {
                let _ = Command::new("umount").arg("-l").arg(mountpoint).status();
            }
        }
    }
    if let Ok(entries) = fs::read_dir(BASE_DIR) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if owner_pid(&name).is_some() && !owner_alive(&name) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// The answers (trimmed bodies) of `n` requests from `client` to `vip` (`host:port`, or a URL
/// if it has a scheme; certificates are not checked); every request must succeed, or the test
/// fails with `lbd`'s log.
pub fn answers(client: &Netns, vip: &str, n: usize, lbd: &Proc) -> std::collections::BTreeSet<String> {
    let url = if vip.contains("://") { vip.to_owned() } else { format!("http://{vip}/") };
    (0..n)
        .map(|_| {
            let out = client.exec("curl", &["-sSk", "--max-time", "3", &url]);
            assert!(
                out.status.success(),
                "request to {url} failed: {}\nlbd log:\n{}",
                String::from_utf8_lossy(&out.stderr),
                lbd.log()
            );
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::owner_pid;

    #[test]
    fn owner_pid_parses_lab_names() {
        assert_eq!(owner_pid("lbt1234x0-client"), Some(1234));
        assert_eq!(owner_pid("lbt99x12"), Some(99));
        assert_eq!(owner_pid("other"), None);
        assert_eq!(owner_pid("lbtx1"), None);
    }
}
