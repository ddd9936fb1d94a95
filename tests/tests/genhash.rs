//! lbd's genhash prints what keepalived 2.2.7's genhash prints for the same pages.
#![expect(clippy::unwrap_used, reason = "tests: a failed step is a failed test")]

use std::time::Duration;

use lb_tests::{
    bins,
    lab::{Lab, Netns, wait_until},
};

fn genhash(ns: &Netns, program: &std::path::Path, args: &[&str]) -> (String, Option<i32>) {
    let out = ns.exec(program, args);
    (String::from_utf8_lossy(&out.stdout).into_owned(), out.status.code())
}

#[test]
fn same_output_as_keepalived_genhash() {
    let mut lab = Lab::new();
    let web = lab.netns("web");
    let mut server = web.spawn("web", bins::web(), &["hello-genhash", "127.0.0.1:18080"]);
    wait_until(Duration::from_secs(5), "the web server", || {
        server.assert_running();
        server.log().contains("listening")
    });
    let ours = bins::workspace_bin("genhash");
    let theirs = std::path::Path::new("/usr/bin/genhash");
    assert!(theirs.exists(), "keepalived's genhash is missing (apt-get install keepalived)");
    let cases: [&[&str]; 4] = [
        &["-s", "127.0.0.1", "-p", "18080", "-u", "/index.html"],
        &["--server", "127.0.0.1", "--port", "18080", "--url", "/", "-P", "1.1"],
        &["-s", "127.0.0.1", "-p", "18080", "-u", "/x", "-V", "vhost.example", "-P", "1.0c"],
        // Nothing listens there: both say so on stdout and exit 0.
        &["-s", "127.0.0.1", "-p", "18081", "-u", "/"],
    ];
    for args in cases {
        let expected = genhash(&web, theirs, args);
        let got = genhash(&web, &ours, args);
        assert_eq!(got, expected, "genhash {}", args.join(" "));
    }
    // The digest is the MD5 of the body alone: "hello-genhash\n".
    let (line, _) = genhash(&web, &ours, cases[0]);
    assert_eq!(line, format!("{}\n", md5_hex(b"hello-genhash\n")));
    // Missing arguments: the usage, exit 1, as keepalived's.
    assert_eq!(genhash(&web, &ours, &[]).1, Some(1));
}

#[test]
fn same_output_as_keepalived_genhash_over_tls() {
    let mut lab = Lab::new();
    let web = lab.netns("tls");
    let dir = lab.dir().to_owned();
    lab.self_signed_cert("localhost");
    lab.write_file("page.http", "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello-tls\n");
    // A self-signed server: neither genhash verifies certificates.
    let script = format!(
        "cd {} && exec openssl s_server -accept 127.0.0.1:18443 -cert cert.pem -key key.pem -HTTP -quiet",
        dir.display()
    );
    let mut server = web.spawn("tls", "sh", &["-c", &script]);
    wait_until(Duration::from_secs(5), "the TLS server", || {
        server.assert_running();
        web.exec("bash", &["-c", "exec 3<>/dev/tcp/127.0.0.1/18443"]).status.success()
    });
    let ours = bins::workspace_bin("genhash");
    let theirs = std::path::Path::new("/usr/bin/genhash");
    let cases: [&[&str]; 2] = [
        &["-S", "-s", "127.0.0.1", "-p", "18443", "-u", "/page.http"],
        &["-S", "-I", "-V", "localhost", "-s", "127.0.0.1", "-p", "18443", "-u", "/page.http"],
    ];
    for args in cases {
        let expected = genhash(&web, theirs, args);
        let got = genhash(&web, &ours, args);
        assert_eq!(got, expected, "genhash {}", args.join(" "));
    }
    assert_eq!(genhash(&web, &ours, cases[0]).0, format!("{}\n", md5_hex(b"hello-tls\n")));
}

/// MD5 of `data`, lowercase hex, computed by coreutils for an independent check.
fn md5_hex(data: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_owned()
}
