//! System test of the configuration command line: runs the built `lbd` with `-t`, `-d` and
//! `--dump-conf` on files it writes, and checks keepalived 2.2.7's exit codes and the
//! `file:line:column: severity: message` format on stderr.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn lbd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lbd"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run lbd: {e}"))
}

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("lbd-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("{e}"));
        Dir(p)
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("{e}"));
        p.to_string_lossy().into_owned()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const GOOD: &str = "global_defs {\n router_id lbd_test\n}\n\
virtual_server 10.0.0.1 80 {\n lb_algo rr\n lb_kind DR\n protocol TCP\n\
 real_server 10.0.0.2 80 {\n  weight 1\n  TCP_CHECK {\n   connect_timeout 3\n  }\n }\n}\n";

#[test]
fn config_test_exit_codes_and_messages() {
    let d = Dir::new("t");
    let good = d.file("good.conf", GOOD);
    let out = lbd(&["-t", "-f", &good]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));

    let bad = d.file("bad.conf", "vrrp_instance VI_1 {\n interface lo0x\n virtual_router_id 300\n}\n");
    let out = lbd(&["--config-test", "-f", &bad]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "stderr: {stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l == format!("{bad}:3:20: error: virtual_router_id 300 out of range, expected 1-255")),
        "stderr: {stderr}"
    );

    // --config-test=LOG_FILE writes the messages there instead.
    let log = d.0.join("test.log");
    let out = lbd(&[&format!("--config-test={}", log.display()), "-f", &bad]);
    assert_eq!(out.status.code(), Some(5));
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(logged.contains("virtual_router_id 300 out of range"), "log: {logged}");

    // A missing main file: exit 0 as keepalived, 4 with -e.
    let missing = d.0.join("nope.conf");
    let missing = missing.to_string_lossy();
    let out = lbd(&["-t", "-f", &missing]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Config files missing"));
    assert_eq!(lbd(&["-t", "-e", "-f", &missing]).status.code(), Some(4));
}

#[test]
fn dump_formats_and_toml_input() {
    let d = Dir::new("d");
    let good = d.file("good.conf", GOOD);
    let out = lbd(&["--dump-conf=toml", "-f", &good]);
    assert_eq!(out.status.code(), Some(0));
    let toml = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(toml.contains("router_id = \"lbd_test\""), "{toml}");

    // The TOML model is accepted by -f FILE.toml and dumps to the same model.
    let model = d.file("model.toml", &toml);
    let out = lbd(&["-t", "-f", &model]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let again = lbd(&["--dump-conf=toml", "-f", &model]);
    assert_eq!(String::from_utf8_lossy(&again.stdout), toml);

    let json = lbd(&["--dump-conf=json", "-f", &good]);
    assert_eq!(json.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&json.stdout).contains("\"router_id\": \"lbd_test\""));

    let text = lbd(&["-t", "-d", "-f", &good]);
    assert_eq!(text.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&text.stderr);
    for expected in [
        "------< Global definitions >------",
        " Router ID = lbd_test",
        "------< LVS Topology >------",
        " VIP = 10.0.0.1, VPORT = 80",
        "   RIP = 10.0.0.2, RPORT = 80, WEIGHT = 1",
        "     Keepalive method = TCP_CHECK",
    ] {
        assert!(stderr.lines().any(|l| l == expected), "missing {expected:?} in:\n{stderr}");
    }
    assert!(Path::new(&good).exists());
}
