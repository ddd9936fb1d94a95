//! Tests of the whole reader: keepalived's samples, TOML round trips, broken files with the
//! file:line they must report, includes, conditionals, definitions, sequences, and the
//! coverage of every keyword keepalived 2.2.7 knows.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use super::{
    host::{self, Host},
    model::*,
    *,
};

fn opts(id: &str) -> LoadOptions {
    LoadOptions { config_id: Some(id.into()), ..LoadOptions::default() }
}

fn parse(text: &str) -> Loaded {
    parse_str("t.conf", text, &opts("main"))
}

fn shared(dir: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared").join(dir);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipping: {} not found (shared/ must sit beside the repository)", p.display());
        None
    }
}

/// Why keepalived 2.2.7 gave the exit status it gave on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// Exit 0: accepted.
    Accepted,
    /// Exit 5 only because interfaces named in the file do not exist on the test machine (which
    /// has only lo and eth0): the file itself is fine, and lbd's parse must be clean.
    HostOnly,
    /// Exit 5 for problems in the file itself: lbd must report problems too.
    FileProblems,
}

/// `keepalived -t -f FILE` (Debian keepalived 2.2.7, default config id), run on every file of
/// shared/keepalived-samples.
const VERDICTS: &[(&str, u8, Why)] = &[
    ("docker__keepalived.conf", 0, Why::Accepted),
    // vrrp_garp_interval 0 / vrrp_gna_interval 0 out of range; vrrp_strict with MASTER and auth.
    ("etc_keepalived__keepalived.conf", 5, Why::FileProblems),
    ("keepalived.conf.HTTP_GET.port", 0, Why::Accepted),
    ("keepalived.conf.IPv6", 0, Why::Accepted),
    ("keepalived.conf.PING_CHECK", 0, Why::Accepted),
    ("keepalived.conf.SMTP_CHECK", 0, Why::Accepted),
    // Initial state master is incompatible with AH authentication.
    ("keepalived.conf.SSL_GET", 5, Why::FileProblems),
    // Not a configuration: Unknown keyword 'This' ...
    ("keepalived.conf.SYNOPSIS", 5, Why::FileProblems),
    ("keepalived.conf.UDP_CHECK", 0, Why::Accepted),
    // With the default config id no `script` line survives: No script set for vrrp_script.
    ("keepalived.conf.conditional_conf", 5, Why::FileProblems),
    // protocol specified for fwmark - protocol will be ignored.
    ("keepalived.conf.fwmark", 5, Why::FileProblems),
    ("keepalived.conf.inhibit", 0, Why::Accepted),
    ("keepalived.conf.misc_check", 0, Why::Accepted),
    ("keepalived.conf.misc_check_arg", 0, Why::Accepted),
    ("keepalived.conf.quorum", 0, Why::Accepted),
    ("keepalived.conf.sample", 0, Why::Accepted),
    // As etc_keepalived, plus accept mode with VRRPv2 in strict mode.
    ("keepalived.conf.sample.in", 5, Why::FileProblems),
    ("keepalived.conf.status_code", 0, Why::Accepted),
    // Interfaces, and routes without an interface cannot be tracked.
    ("keepalived.conf.track_interface", 5, Why::FileProblems),
    ("keepalived.conf.virtual_server_group", 0, Why::Accepted),
    ("keepalived.conf.virtualhost", 0, Why::Accepted),
    ("keepalived.conf.vrrp", 5, Why::HostOnly),
    ("keepalived.conf.vrrp.localcheck", 5, Why::HostOnly),
    // 1.x sync group syntax: Unknown keyword 'VI_2'; deprecated lvs_sync_daemon_interface.
    ("keepalived.conf.vrrp.lvs_syncd", 5, Why::FileProblems),
    // "or" and "gw" deprecated; routes without interface cannot be tracked.
    ("keepalived.conf.vrrp.routes", 5, Why::FileProblems),
    // Invalid rule address 192.168.100./24; rules without preference.
    ("keepalived.conf.vrrp.rules", 5, Why::FileProblems),
    ("keepalived.conf.vrrp.scripts", 0, Why::Accepted),
    // Route without an interface cannot be tracked (and interfaces).
    ("keepalived.conf.vrrp.static_ipaddress", 5, Why::FileProblems),
    ("keepalived.conf.vrrp.sync", 5, Why::HostOnly),
    // A systemd drop-in, not a configuration (auth_hmac is newer than 2.2.7 anyway).
    ("keepalived.service.d.auth_hmac.conf", 5, Why::FileProblems),
    ("sample.misccheck.smbcheck.sh", 5, Why::FileProblems),
    ("sample_notify_fifo.sh", 5, Why::FileProblems),
];

#[test]
fn samples_verdicts() {
    let Some(dir) = shared("keepalived-samples") else { return };
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in &names {
        let Some((_, rc, why)) = VERDICTS.iter().find(|(n, _, _)| n == name) else {
            panic!("sample {name} has no verdict in VERDICTS: run keepalived -t -f on it and add one");
        };
        let loaded = load(
            &dir.join(name),
            &LoadOptions { config_id: Some("nohost".into()), ..LoadOptions::default() },
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let problems: Vec<String> = loaded.problems().map(ToString::to_string).collect();
        match why {
            Why::Accepted | Why::HostOnly => {
                assert!(
                    problems.is_empty(),
                    "{name}: keepalived exits {rc}, lbd must accept it, but reported:\n{}",
                    problems.join("\n")
                );
            }
            Why::FileProblems => {
                assert!(
                    !problems.is_empty(),
                    "{name}: keepalived rejects it (exit {rc}) but lbd reported nothing"
                );
                assert_eq!(config_test_exit_code(&loaded.diagnostics), 5, "{name}");
            }
        }
    }
    for (n, _, _) in VERDICTS {
        assert!(names.iter().any(|x| x == n), "verdict for missing sample {n}");
    }
}

#[test]
fn conditional_sample_with_matching_id_is_clean() {
    let Some(dir) = shared("keepalived-samples") else { return };
    for id in ["high", "low"] {
        let l =
            load(&dir.join("keepalived.conf.conditional_conf"), &opts(id)).unwrap_or_else(|e| panic!("{e}"));
        assert!(l.is_clean(), "{id}: {:?}", l.diagnostics);
        let v = &l.config.vrrp_instances[0];
        assert_eq!(v.priority, if id == "high" { 170 } else { 85 });
        assert_eq!(l.config.global_defs.net_namespace.as_deref(), Some(id));
        assert_eq!(v.track_script[0].name, "check_VI_0");
    }
}

fn round_trip(name: &str, cfg: &Config) {
    let t = to_toml(cfg).unwrap_or_else(|e| panic!("{name}: {e}"));
    let back = from_toml(&t).unwrap_or_else(|e| panic!("{name}: {e}\n{t}"));
    assert_eq!(&back, cfg, "{name}: TOML round trip changed the model");
    let j = to_json(cfg).unwrap_or_else(|e| panic!("{name}: {e}"));
    let back: Config = serde_json::from_str(&j).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(&back, cfg, "{name}: JSON round trip changed the model");
}

#[test]
fn samples_round_trip_through_toml() {
    let Some(dir) = shared("keepalived-samples") else { return };
    for (name, _, _) in VERDICTS {
        let l = load(&dir.join(name), &opts("high")).unwrap_or_else(|e| panic!("{name}: {e}"));
        round_trip(name, &l.config);
        let _ = dump::dump(&l.config);
    }
}

const ALIBABA: &str = r#"
global_defs {
    router_id LVS_1
}
virtual_server_group taobao {
    1.1.1.1 80 #vip1
    1.1.2.1-2 80 #vip2,vip3
}
local_address_group laddr_g1 {
    192.168.100.1
    192.168.100.5-254 # ip range
}
virtual_server group taobao {
    delay_loop 7
    lb_algo rr
    lb_kind FNAT
    protocol TCP
    persistence_timeout 50
    syn_proxy
    laddr_group_name laddr_g1
    alpha
    omega
    quorum 1
    hysteresis 0
    quorum_up "ip addr add 1.1.1.1/32 dev lo; ip addr add 1.1.2.1/32 dev lo;"
    quorum_down "ip addr del 1.1.1.1/32 dev lo;"
    real_server 192.168.100.1 80 {
        weight 1
        inhibit_on_failure
        TCP_CHECK {
            connect_timeout 4
            nb_get_retry 3
        }
    }
    real_server 192.168.3.2 80 {
        weight 1
        HTTP_GET {
            url {
              path /
              digest 1bcb6baacc4338d8fe8d7587e3a27a7c
            }
            connect_timeout 3
            nb_get_retry 3
            delay_before_retry 3
        }
    }
}
"#;

#[test]
fn alibaba_fullnat_extensions() {
    let l = parse(ALIBABA);
    // nb_get_retry is not a TCP_CHECK keyword in keepalived 2.2.7.
    let problems: Vec<String> = l.problems().map(ToString::to_string).collect();
    assert_eq!(problems, ["t.conf:32:13: warning: Unknown keyword 'nb_get_retry'"]);
    let c = &l.config;
    assert_eq!(c.local_address_groups[0].addresses.iter().map(AddressRange::count).sum::<u128>(), 251);
    let vsg = &c.virtual_server_groups[0];
    assert_eq!(
        vsg.entries[1],
        VsgEntry::Address {
            range: "1.1.2.1-1.1.2.2".parse().unwrap_or_else(|e: String| panic!("{e}")),
            port: Some(80)
        }
    );
    let vs = &c.virtual_servers[0];
    assert_eq!(vs.address, VsAddress::Group { name: "taobao".into() });
    assert_eq!(vs.effective_kind(), LbKind::Fnat);
    assert!(vs.syn_proxy && vs.alpha && vs.omega);
    assert_eq!(vs.laddr_group_name.as_deref(), Some("laddr_g1"));
    assert_eq!(vs.lvs_sched, Some(LbAlgo::Rr));
    assert_eq!(vs.persistence_timeout, Some(50));
    assert_eq!(vs.quorum_up.as_ref().map(|s| s.argv[0].as_str()), Some("ip"));
    let Checker::HttpGet(h) = &vs.real_servers[1].checkers[0] else { panic!("expected HTTP_GET") };
    assert_eq!(h.conn.retry, Some(3));
    assert_eq!(h.urls[0].digest.as_deref(), Some("1bcb6baacc4338d8fe8d7587e3a27a7c"));
    round_trip("alibaba", c);
}

#[test]
fn synonyms_fold_to_one_field() {
    let a = parse(
        "virtual_server 10.0.0.1 80 {\n lb_algo wrr\n lb_kind DR\n protocol TCP\n real_server 10.0.0.2 80 {\n HTTP_GET {\n url {\n path /\n }\n nb_get_retry 4\n }\n }\n}\n",
    );
    let b = parse(
        "virtual_server 10.0.0.1 80 {\n lvs_sched wrr\n lvs_method DR\n protocol TCP\n real_server 10.0.0.2 80 {\n HTTP_GET {\n url {\n path /\n }\n retry 4\n }\n }\n}\n",
    );
    assert!(a.is_clean() && b.is_clean(), "{:?} {:?}", a.diagnostics, b.diagnostics);
    assert_eq!(a.config, b.config);
}

#[test]
fn vrrp_instance_values_and_defaults() {
    let l = parse(
        "vrrp_instance VI_1 {\n state BACKUP\n interface eth0\n virtual_router_id 51\n advert_int 3\n \
         unicast_peer {\n 10.0.0.2 min_ttl 2\n }\n track_script {\n chk weight -20 reverse\n }\n \
         virtual_ipaddress {\n 10.0.0.10/24 dev eth0 label eth0:1 no_track\n }\n}\n\
         vrrp_script chk {\n script \"/bin/check 'a b'\"\n interval 2\n weight 10\n}\n",
    );
    assert!(l.is_clean(), "{:?}", l.diagnostics);
    let v = &l.config.vrrp_instances[0];
    assert_eq!(
        (v.virtual_router_id, v.priority, v.advert_int),
        (Some(51), 100, std::time::Duration::from_secs(3))
    );
    assert_eq!(v.unicast_peer[0].min_ttl, Some(2));
    assert_eq!(v.track_script[0], TrackRef { name: "chk".into(), weight: Some(-20), reverse: Some(true) });
    let vip = &v.virtual_ipaddress[0];
    assert_eq!(
        (vip.address.to_string(), vip.label.as_deref(), vip.no_track),
        ("10.0.0.10/24".into(), Some("eth0:1"), true)
    );
    assert_eq!(
        l.config.vrrp_scripts[0].script.as_ref().map(|s| s.argv.clone()),
        Some(vec!["/bin/check".to_string(), "a b".to_string()])
    );
    assert_eq!(v.effective_version(&l.config.global_defs), VrrpVersion::V2);
    let l = parse(
        "vrrp_instance A {\n state MASTER\n interface eth0\n virtual_router_id 1\n virtual_ipaddress {\n 1.1.1.1\n }\n}\n",
    );
    assert_eq!(
        l.config.vrrp_instances[0].priority, 255,
        "state MASTER without priority is the address owner"
    );
}

/// Broken files: each must be reported at the right line with the right message.
const BROKEN: &[(&str, &str)] = &[
    ("bfd_instance B {\n min_rx 10\n}\n", "t.conf:1:1: error: bfd_instance B has no neighbor_ip - ignoring"),
    (
        "bfd_instance B {\n neighbor_ip 10.0.0.1\n}\nbfd_instance C {\n neighbor_ip 10.0.0.1\n}\n",
        "t.conf:4:1: error: bfd_instance C: neighbor_ip 10.0.0.1 is already bfd_instance B's - ignoring",
    ),
    (
        "bfd_instance B {\n neighbor_ip 10.0.0.1\n}\nbfd_instance B {\n neighbor_ip 10.0.0.2\n}\n",
        "t.conf:4:1: error: bfd_instance B defined twice - ignoring the second",
    ),
    (
        "bfd_instance B {\n neighbor_ip fd00::1\n source_ip 10.0.0.1\n}\n",
        "t.conf:1:1: error: bfd_instance B: source_ip 10.0.0.1 and neighbor_ip fd00::1 are of different families - ignoring",
    ),
    (
        "bfd_instance B {\n neighbor_ip 10.0.0.1\n min_tx 5s\n}\n",
        "t.conf:3:9: error: min_tx: invalid interval '5s', expected milliseconds 0.001-1000000",
    ),
    (
        "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 300\n virtual_ipaddress {\n 1.1.1.1\n }\n}\n",
        "t.conf:3:20: error: virtual_router_id 300 out of range, expected 1-255",
    ),
    (
        "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 1\n priority 0\n virtual_ipaddress {\n 1.1.1.1\n }\n}\n",
        "t.conf:4:11: error: priority 0 out of range, expected 1-255",
    ),
    (
        "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 1\n priority high\n virtual_ipaddress {\n 1.1.1.1\n }\n}\n",
        "t.conf:4:11: error: priority: invalid number 'high', expected 1-255",
    ),
    (
        "vrrp_instance VI_1 {\n interface eth0\n virtual_ipaddress {\n 1.1.1.1\n }\n}\n",
        "t.conf:1:1: error: (VI_1) the virtual router id must be set",
    ),
    ("global_defs {\n  router_idd x\n}\n", "t.conf:2:3: warning: Unknown keyword 'router_idd'"),
    ("global_defs {\n  router_id\n}\n", "t.conf:2:3: error: router_id: missing value"),
    ("global_defs {\n  vrrp_version 4\n}\n", "t.conf:2:16: error: vrrp_version 4 out of range, expected 2-3"),
    ("global_defs {\n}\n}\n", "t.conf:3:1: error: Extra '}' found"),
    ("global_defs {\n router_id a\n", "t.conf:2:1: error: There are 1 missing '}'s or extra '{'s"),
    (
        "global_defs\n router_id a\n}\n",
        "t.conf:2:2: error: Missing '{' at beginning of configuration block 'global_defs' (line 1)",
    ),
    ("global_defs {\n {\n}\n", "t.conf:2:2: error: Unexpected '{' - ignoring"),
    (
        "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 1\n advert_int 0\n virtual_ipaddress {\n 1.1.1.1\n }\n}\n",
        "t.conf:4:13: error: advert_int 0 out of range, expected 0.01-255",
    ),
    (
        "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 1\n virtual_ipaddress {\n 10.1.1.300\n }\n}\n",
        "t.conf:5:2: error: VRRP parsed invalid IP 10.1.1.300. skipping IP...",
    ),
    (
        "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 1\n track_script {\n nope\n }\n virtual_ipaddress {\n 1.1.1.1\n }\n}\n",
        "t.conf:5:2: warning: (VI_1) track script nope not found, ignoring...",
    ),
    (
        "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 1\n state MAYBE\n virtual_ipaddress {\n 1.1.1.1\n }\n}\n",
        "t.conf:4:8: error: (VI_1) unknown state 'MAYBE', expected MASTER or BACKUP",
    ),
    (
        "virtual_server 10.0.0.1 80 {\n lb_algo fastest\n lb_kind NAT\n protocol TCP\n}\n",
        "t.conf:2:10: error: Invalid lvs_scheduler 'fastest' - ignoring, expected rr|wrr|lc|wlc|lblc|lblcr|sh|dh|sed|nq|fo|ovf|mh|twos",
    ),
    (
        "virtual_server 10.0.0.1 80 {\n lb_algo rr\n lb_kind NAT\n protocol TCP\n real_server 10.0.0.2 80 {\n weight 1\n }\n real_server 10.0.0.2 80 {\n weight 1\n }\n}\n",
        "t.conf:8:2: warning: VS [10.0.0.1]:tcp:80: real server [10.0.0.2]:tcp:80 is duplicated - removing second rs",
    ),
    (
        "virtual_server 10.0.0.1 80 {\n lb_algo rr\n lb_kind NAT\n real_server 10.0.0.2 80 {\n weight 1\n }\n}\n",
        "t.conf:1:1: warning: Virtual server [10.0.0.1]:none:80: no protocol set - defaulting to UDP",
    ),
    (
        "virtual_server group nope {\n lb_algo rr\n lb_kind NAT\n real_server 10.0.0.2 80 {\n }\n}\n",
        "t.conf:1:1: warning: Virtual server group nope not found - virtual server ignored",
    ),
    (
        "virtual_server 10.0.0.1 80 {\n lb_algo rr\n lb_kind FNAT\n protocol TCP\n laddr_group_name nope\n real_server 10.0.0.2 80 {\n }\n}\n",
        "t.conf:1:1: error: Virtual server [10.0.0.1]:tcp:80: local_address_group nope not found",
    ),
    (
        "local_address_group g {\n 10.0.0.9-1\n}\n",
        "t.conf:2:2: error: local_address_group g: address range '10.0.0.9-1' ends before it starts",
    ),
    (
        "virtual_server 10.0.0.1 80 {\n lb_algo rr\n lb_kind NAT\n protocol TCP\n real_server 10.0.0.2 80 {\n HTTP_GET {\n url {\n path /\n digest xyz\n }\n }\n }\n}\n",
        "t.conf:9:9: error: digest 'xyz' is not an MD5 digest, expected 32 hex digits (see genhash)",
    ),
    (
        "virtual_server 10.0.0.1 80 {\n lb_algo rr\n lb_kind NAT\n protocol TCP\n real_server 10.0.0.2 80 {\n MISC_CHECK {\n misc_timeout 3\n }\n }\n}\n",
        "t.conf:6:2: error: MISC_CHECK has no misc_path - ignoring checker",
    ),
    ("~SEQ(S, 1, -1, 5) x\n", "t.conf:1:1: error: Invalid ~SEQ values '~SEQ(S, 1, -1, 5) x'"),
    (
        "global_defs {\n smtp_helo_name \"abc\n}\n",
        "t.conf:2:1: error: Unterminated quote 'smtp_helo_name \"abc'",
    ),
];

#[test]
fn broken_configs_are_reported_where_they_are() {
    for (text, expected) in BROKEN {
        let l = parse(text);
        let got: Vec<String> = l.problems().map(ToString::to_string).collect();
        assert!(
            got.iter().any(|g| g == expected),
            "expected\n  {expected}\namong\n  {}\nfor\n{text}",
            got.join("\n  ")
        );
        assert_eq!(config_test_exit_code(&l.diagnostics), 5, "{text}");
    }
}

#[test]
fn every_problem_is_reported_not_only_the_first() {
    let l =
        parse("global_defs {\n bogus1\n vrrp_version 9\n bogus2\n}\nvrrp_instance A {\n priority 999\n}\n");
    let lines: Vec<u32> = l.problems().map(|d| d.line).collect();
    for line in [2, 3, 4, 7] {
        assert!(lines.contains(&line), "line {line} not reported: {:?}", l.diagnostics);
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("lbd-config-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("{e}"));
        TempDir(p)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("{e}"));
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn includes_with_globs_nesting_and_blocks() {
    let t = TempDir::new("inc");
    let main = t.write(
        "keepalived.conf",
        "include conf.d/*.conf\nvirtual_server 10.0.0.1 80 {\n lb_algo rr\n lb_kind NAT\n protocol TCP\n include rs/{a,b}.conf\n}\ninclude missing/*.conf\n",
    );
    t.write("conf.d/10-global.conf", "global_defs {\n router_id from_include\n}\n");
    t.write("conf.d/20-laddr.conf", "include ../nested/laddr.conf\n");
    t.write("nested/laddr.conf", "local_address_group g1 {\n 10.1.0.1-3\n}\n");
    t.write("rs/a.conf", "real_server 10.0.0.2 80 {\n weight 2\n}\n");
    t.write("rs/b.conf", "real_server 10.0.0.3 80 {\n weight 3\n bogus\n}\n");
    let l = load(&main, &opts("x")).unwrap_or_else(|e| panic!("{e}"));
    let c = &l.config;
    assert_eq!(c.global_defs.router_id.as_deref(), Some("from_include"));
    assert_eq!(c.local_address_groups[0].addresses[0].count(), 3);
    assert_eq!(
        c.virtual_servers[0].real_servers.iter().map(|r| r.weight).collect::<Vec<_>>(),
        [Some(2), Some(3)]
    );
    let problems: Vec<String> = l.problems().map(ToString::to_string).collect();
    let b = t.0.join("rs/b.conf");
    assert!(
        problems.contains(&format!("{}:3:2: warning: Unknown keyword 'bogus'", b.display())),
        "{problems:?}"
    );
    // A missing include is a warning without -e, and fatal (exit 4) with it.
    assert!(problems.iter().any(|p| p.contains("No config files matched 'missing/*.conf'.")), "{problems:?}");
    let strict =
        load(&main, &LoadOptions { all_config: true, ..opts("x") }).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config_test_exit_code(&strict.diagnostics), 4);
    assert_eq!(l.files.len(), 6, "{:?}", l.files);
}

#[test]
fn include_loop_stops() {
    let t = TempDir::new("loop");
    let main = t.write("a.conf", "include a.conf\n");
    let l = load(&main, &opts("x")).unwrap_or_else(|e| panic!("{e}"));
    assert!(l.problems().any(|d| d.message.contains("nested too deeply")));
}

#[test]
fn definitions_conditionals_and_sequences_build_the_model() {
    let text = "@main $PRIO=240\n@^main $PRIO=200\n$VIP=10.0.${N}.1\n\
                $RS=real_server 10.1.0.${I} 80 { \\\n weight ${I} \\\n}\n\
                vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 1\n priority $PRIO\n virtual_ipaddress {\n ~SEQ(N, 1, 3) ${VIP}/24\n }\n}\n\
                virtual_server 10.0.0.1 80 {\n lb_algo rr\n lb_kind DR\n protocol TCP\n ~SEQ(I, 1, 2) $RS\n}\n";
    let l = parse_str("t.conf", text, &opts("main"));
    assert!(l.is_clean(), "{:?}", l.diagnostics);
    let v = &l.config.vrrp_instances[0];
    assert_eq!(v.priority, 240);
    assert_eq!(
        v.virtual_ipaddress.iter().map(|a| a.address.to_string()).collect::<Vec<_>>(),
        ["10.0.1.1/24", "10.0.2.1/24", "10.0.3.1/24"]
    );
    let rs = &l.config.virtual_servers[0].real_servers;
    assert_eq!(
        rs.iter().map(|r| (r.address.to_string(), r.weight)).collect::<Vec<_>>(),
        [("10.1.0.1".into(), Some(1)), ("10.1.0.2".into(), Some(2))]
    );
    let other = parse_str("t.conf", text, &opts("backup"));
    assert_eq!(other.config.vrrp_instances[0].priority, 200);
}

#[test]
fn every_keepalived_keyword_is_known() {
    let Some(dir) = shared("reference") else { return };
    let tsv = std::fs::read_to_string(dir.join("keepalived-keywords.tsv")).unwrap_or_else(|e| panic!("{e}"));
    let mut checked = 0;
    for row in tsv.lines().skip(1) {
        let cols: Vec<&str> = row.split('\t').collect();
        let [_, kw, _, path, ver, ..] = cols[..] else { continue };
        if ver != "yes" || path.starts_with('(') || kw.starts_with('(') || kw.starts_with('<') {
            continue;
        }
        let parts: Vec<&str> = path.split(" > ").collect();
        // Wrap the keyword in the blocks of its path, giving each block a plausible header.
        let alternatives: Vec<Vec<&str>> = if parts.iter().any(|p| p.contains('|')) {
            ["HTTP_GET", "SSL_GET"]
                .iter()
                .map(|c| parts.iter().map(|p| if p.contains('|') { *c } else { *p }).collect())
                .collect()
        } else {
            vec![parts.clone()]
        };
        for parts in alternatives {
            let mut text = String::new();
            let depth = parts.len() - 1;
            for b in &parts[..depth] {
                let header = match *b {
                    "virtual_server" => "virtual_server 10.0.0.1 80".to_string(),
                    "real_server" => "real_server 10.0.0.2 80".to_string(),
                    "vrrp_instance" | "vrrp_script" | "vrrp_sync_group" | "vrrp_track_process"
                    | "track_file" | "vrrp_track_file" | "bfd_instance" | "track_group" => format!("{b} X"),
                    other => other.to_string(),
                };
                text.push_str(&header);
                text.push_str(" {\n");
            }
            text.push_str(parts[depth]);
            text.push_str(" 1\n");
            for _ in 0..depth {
                text.push_str("}\n");
            }
            let l = parse(&text);
            let unknown: Vec<String> = l
                .diagnostics
                .iter()
                .filter(|d| d.message.starts_with("Unknown keyword"))
                .map(ToString::to_string)
                .collect();
            assert!(unknown.is_empty(), "{path}: {unknown:?}\n{text}");
            checked += 1;
        }
    }
    assert!(checked > 450, "only {checked} keywords checked");
}

#[test]
fn keywords_newer_than_2_2_7_are_unknown() {
    let l = parse("vrrp_instance VI_1 {\n auth_hmac {\n key 1 x\n }\n no_virtual_ipaddress\n}\n");
    let unknown: Vec<u32> =
        l.diagnostics.iter().filter(|d| d.message.starts_with("Unknown keyword")).map(|d| d.line).collect();
    assert_eq!(unknown, [2, 5], "{:?}", l.diagnostics);
}

struct FakeHost;

impl Host for FakeHost {
    fn interface_exists(&self, name: &str) -> bool {
        name == "eth0"
    }
    fn file_exists(&self, path: &str) -> bool {
        path == "/bin/true"
    }
    fn user_exists(&self, _: &str) -> bool {
        false
    }
}

#[test]
fn host_checks_interfaces_and_script_security() {
    let l = parse(
        "vrrp_instance VI_1 {\n interface eth9\n virtual_router_id 1\n virtual_ipaddress {\n 1.1.1.1\n }\n notify_master /bin/true\n}\n",
    );
    assert!(l.is_clean(), "{:?}", l.diagnostics);
    let d = host::check(&l.config, &FakeHost);
    assert!(
        d.iter().any(|d| d.message == "WARNING - interface eth9 for vrrp_instance VI_1 doesn't exist"),
        "{d:?}"
    );
    if nix::unistd::geteuid().is_root() {
        assert!(d.iter().any(|d| d.class == ExitClass::ScriptSecurity));
        assert_eq!(config_test_exit_code(&d), 6);
    }
    let l = parse(
        "global_defs {\n enable_script_security\n dynamic_interfaces\n}\nvrrp_instance VI_1 {\n interface eth9\n virtual_router_id 1\n virtual_ipaddress {\n 1.1.1.1\n }\n notify_master /bin/true\n}\n",
    );
    assert_eq!(config_test_exit_code(&host::check(&l.config, &FakeHost)), 0);
}

#[test]
fn exit_code_classes() {
    let d = |severity, class| Diagnostic {
        severity,
        file: String::new(),
        line: 0,
        column: 0,
        message: String::new(),
        class,
    };
    assert_eq!(config_test_exit_code(&[]), 0);
    assert_eq!(config_test_exit_code(&[d(Severity::Notice, ExitClass::Config)]), 0);
    assert_eq!(config_test_exit_code(&[d(Severity::Warning, ExitClass::Config)]), 5);
    assert_eq!(
        config_test_exit_code(&[
            d(Severity::Warning, ExitClass::Config),
            d(Severity::Warning, ExitClass::ScriptSecurity)
        ]),
        6
    );
    assert_eq!(
        config_test_exit_code(&[
            d(Severity::Error, ExitClass::Fatal),
            d(Severity::Warning, ExitClass::ScriptSecurity)
        ]),
        4
    );
}

#[test]
fn toml_model_loads_by_extension() {
    let t = TempDir::new("toml");
    let l = parse(ALIBABA);
    let p = t.write("model.toml", &to_toml(&l.config).unwrap_or_else(|e| panic!("{e}")));
    let back = load(&p, &opts("x")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back.config, l.config);
    let bad = t.write("bad.toml", "[global_defs]\nrouter_id = 3\n");
    assert!(matches!(load(&bad, &opts("x")), Err(ConfigError::Toml { .. })));
}

#[test]
fn fuzz_entry_point_survives_garbage() {
    for input in [
        &b"vrrp_instance {{{{ }}}} \"\n$A=$A\n$A\n~SEQ(A,0,1,100000000)\n"[..],
        b"\xff\xfe{}\n@\n@^\n$\n${\n${_RANDOM 5 1}\n~LST({a},{1,2})\n",
        b"virtual_server 1.1.1.1 80 { real_server 1.1.1.2 { HTTP_GET { url { status_code 1-2-3 } } } }",
        b"include /etc/*\n",
    ] {
        fuzz_parse(input);
    }
}

#[test]
fn lbd_dataplane_picks_the_backend() {
    use crate::dataplane::Backend;
    let l = parse("global_defs {\n  lbd_dataplane ipvs\n}\n");
    assert!(l.is_clean(), "{:?}", l.diagnostics);
    assert_eq!(l.config.global_defs.lbd_dataplane, Some(Backend::Ipvs));
    assert_eq!(parse("global_defs {\n}\n").config.global_defs.lbd_dataplane, None);
    let l = parse("global_defs {\n  lbd_dataplane lvs\n}\n");
    let problems: Vec<String> = l.problems().map(ToString::to_string).collect();
    assert!(
        problems.iter().any(|p| p.contains("t.conf:2") && p.contains("unknown data plane [lvs]")),
        "{problems:?}"
    );
}

#[test]
fn keywords_parsed_but_not_run_get_a_notice_with_their_line() {
    for &(block, keyword) in crate::config::schema::PARSED_NOT_RUN {
        assert!(
            crate::config::schema::known(block, keyword),
            "{block} > {keyword} is not a keepalived keyword"
        );
    }
    let l = parse(
        "global_defs {\n  vrrp_ipsets keepalived\n  enable_snmp_checker\n  vrrp_startup_delay 2\n}\nvrrp_instance VI_1 {\n  interface eth0\n  \
         virtual_router_id 1\n  debug 2\n  unicast_ttl 64\n  virtual_ipaddress {\n    10.0.0.1\n  }\n}\n",
    );
    assert!(l.is_clean(), "{:?}", l.diagnostics);
    // `debug` is not among them: keepalived 2.2.7 does nothing with it either.
    let notices: Vec<String> = l.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(notices, ["t.conf:2:3: notice: keyword 'vrrp_ipsets' is parsed, not supported yet: ignored",],);
}

/// Every diagnostic of `l`, as printed.
fn problems(l: &Loaded) -> Vec<String> {
    l.diagnostics.iter().map(ToString::to_string).collect()
}

/// A virtual server (of `real`'s family) with one real server `real` whose body is `body`.
fn one_real(real: &str, body: &str) -> String {
    let vip = if real.contains(':') { "2001:db8::1" } else { "10.0.0.1" };
    format!(
        "virtual_server {vip} 80 {{\n  protocol TCP\n  lb_algo rr\n  lb_kind NAT\n  real_server {real} 80 {{\n{body}  }}\n}}\n"
    )
}

#[test]
fn checker_bind_if_and_fast_recovery_are_kept_without_a_notice() {
    let l = parse(&one_real(
        "10.1.0.1",
        "    HTTP_GET {\n      bind_if eth0\n      fast_recovery\n      url {\n        path /\n      }\n    }\n    \
         SMTP_CHECK {\n      host {\n        connect_ip 10.1.0.2\n        bind_if eth1\n        connect_timeout 2\n      }\n    }\n",
    ));
    assert!(l.is_clean() && l.diagnostics.is_empty(), "{:?}", l.diagnostics);
    let checkers = &l.config.virtual_servers[0].real_servers[0].checkers;
    let Checker::HttpGet(h) = &checkers[0] else { panic!("{checkers:?}") };
    assert_eq!((h.conn.bind_if.as_deref(), h.fast_recovery), (Some("eth0"), Some(true)));
    let Checker::SmtpCheck(s) = &checkers[1] else { panic!("{checkers:?}") };
    assert_eq!(s.hosts[0].bind_if.as_deref(), Some("eth1"));
}

#[test]
fn a_bind_if_longer_than_an_interface_name_is_an_error_at_its_line() {
    let l = parse(&one_real("10.1.0.1", "    TCP_CHECK {\n      bind_if abcdefghijklmnop\n    }\n"));
    assert_eq!(problems(&l), ["t.conf:7:15: error: Interface name abcdefghijklmnop is too long - ignoring"],);
    let checkers = &l.config.virtual_servers[0].real_servers[0].checkers;
    assert!(matches!(&checkers[0], Checker::TcpCheck(c) if c.bind_if.is_none()));
    // Fifteen bytes fit.
    let l = parse(&one_real("10.1.0.1", "    TCP_CHECK {\n      bind_if abcdefghijklmno\n    }\n"));
    assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
}

#[test]
fn a_link_local_destination_without_bind_if_drops_the_checker() {
    // The real server's address, or connect_ip: keepalived's check_conn_opts.
    let l = parse(&one_real(
        "fe80::2",
        "    TCP_CHECK {\n    }\n    UDP_CHECK {\n      bind_if eth0\n    }\n    \
         HTTP_GET {\n      url {\n        path /\n      }\n    }\n",
    ));
    assert_eq!(
        problems(&l),
        [
            "t.conf:6:5: error: Checker link local address fe80::2 requires a bind_if - ignoring TCP_CHECK",
            "t.conf:11:5: error: Checker link local address fe80::2 requires a bind_if - ignoring HTTP_GET",
        ],
    );
    let checkers = &l.config.virtual_servers[0].real_servers[0].checkers;
    assert!(matches!(checkers.as_slice(), [Checker::UdpCheck(_)]), "{checkers:?}");
    let l = parse(&one_real("10.1.0.1", "    DNS_CHECK {\n      connect_ip fe80::9\n    }\n"));
    assert!(l.config.virtual_servers[0].real_servers[0].checkers.is_empty());
    // A link-local bindto alone is the kernel's business (it refuses the bind without bind_if).
    let l = parse(&one_real("2001:db8::5", "    TCP_CHECK {\n      bindto fe80::1\n    }\n"));
    assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
}

/// keepalived 2.2.7 (`keepalived -C -d` on the configuration below, with the IPVS shim): a
/// host block starts from no connection options (its own connect_ip/port, else the real
/// server's; no bindto, fwmark or connect_timeout of the SMTP_CHECK, before or after it), and
/// the timing options written inside a host are the SMTP_CHECK's, the last one written wins.
#[test]
fn smtp_host_blocks_take_connection_options_of_their_own_and_give_timing_options_to_the_check() {
    let l = parse(&one_real(
        "10.1.0.1",
        "    SMTP_CHECK {\n      connect_timeout 3\n      fwmark 5\n      retry 4\n      host {\n        \
         connect_ip 10.1.0.2\n      }\n      host {\n        connect_ip 10.1.0.3\n        retry 7\n        \
         delay_loop 11\n        alpha\n        connect_timeout 2\n      }\n    }\n",
    ));
    assert_eq!(
        problems(&l),
        [
            "t.conf:10:7: notice: SMTP_CHECK host without connect_timeout: as in keepalived 2.2.7 its timeout is 0 \
          (not the SMTP_CHECK's), so its check always fails"
        ],
    );
    let checkers = &l.config.virtual_servers[0].real_servers[0].checkers;
    let Checker::SmtpCheck(s) = &checkers[0] else { panic!("{checkers:?}") };
    assert_eq!(
        (s.conn.retry, s.conn.delay_loop, s.conn.alpha),
        (Some(7), Some(Duration::from_secs(11)), Some(true))
    );
    assert_eq!(s.conn.fwmark, Some(5));
    assert_eq!(s.hosts.len(), 2);
    assert_eq!(s.hosts[0], CheckCommon { connect_ip: "10.1.0.2".parse().ok(), ..CheckCommon::default() });
    assert_eq!(
        s.hosts[1],
        CheckCommon {
            connect_ip: "10.1.0.3".parse().ok(),
            connect_timeout: Some(Duration::from_secs(2)),
            ..CheckCommon::default()
        }
    );
}

#[test]
fn lvs_sync_daemon_interface_of_an_instance_becomes_lvs_sync_daemon() {
    let instance = "vrrp_instance VI_1 {\n  interface eth0\n  virtual_router_id 42\n  \
                    lvs_sync_daemon_interface eth1\n  virtual_ipaddress {\n    10.0.0.1\n  }\n}\n";
    let l = parse(instance);
    let sd = l.config.global_defs.lvs_sync_daemon.clone().unwrap_or_default();
    assert_eq!((sd.interface.as_str(), sd.instance.as_deref(), sd.id), ("eth1", Some("VI_1"), None));
    // A global lvs_sync_daemon wins, and the instance's is reported.
    let l = parse(&format!("global_defs {{\n  lvs_sync_daemon eth0 VI_1 id 7\n}}\n{instance}"));
    let sd = l.config.global_defs.lvs_sync_daemon.clone().unwrap_or_default();
    assert_eq!((sd.interface.as_str(), sd.id), ("eth0", Some(7)));
    let problems: Vec<String> = l.diagnostics.iter().map(ToString::to_string).collect();
    assert!(
        problems.iter().any(|p| p.contains("lvs_sync_daemon_interface has already been specified as eth0")),
        "{problems:?}"
    );
}
