//! lbd's genhash prints what keepalived 2.2.7's genhash prints for the same pages.
#![expect(clippy::unwrap_used, reason = "tests: a failed step is a failed test")]

use std::time::Duration;

use lb_tests::{
    bins,
    lab::{Lab, Netns, wait_until},
    pages::{Answer, Pages},
};

fn genhash(ns: &Netns, program: &std::path::Path, args: &[&str]) -> (String, Option<i32>) {
    let out = ns.exec(program, args);
    (String::from_utf8_lossy(&out.stdout).into_owned(), out.status.code())
}

/// stdout, stderr and exit code.
fn genhash_all(ns: &Netns, program: &std::path::Path, args: &[&str]) -> (String, String, Option<i32>) {
    let out = ns.exec(program, args);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (text(&out.stdout), text(&out.stderr), out.status.code())
}

/// Odd pages: both genhash print the same thing on stdout and stderr. keepalived 2.2.7 hashes
/// the bytes after the headers as they come (a chunked body with its chunk sizes), stops
/// hashing at Content-Length, reads until the close, and says why when there is no page.
#[test]
fn same_output_as_keepalived_genhash_on_odd_pages() {
    let mut lab = Lab::new();
    let web = lab.netns("pages");
    let bytes = |s: &str| s.as_bytes().to_vec();
    let chunked =
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7\r\n-world\n\r\n0\r\n\r\n";
    let pages = Pages::serve(
        &web,
        "127.0.0.1:18080".parse().unwrap(),
        vec![
            ("/chunked", Answer::Close(bytes(chunked))),
            (
                "/extra",
                Answer::Close(bytes("HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA-BYTES\n")),
            ),
            ("/close", Answer::Close(bytes("HTTP/1.0 200 OK\r\nConnection: close\r\n\r\nno length here\n"))),
            ("/404", Answer::Close(bytes("HTTP/1.0 404 Not Found\r\nContent-Length: 10\r\n\r\nnot found\n"))),
            ("/short", Answer::Close(bytes("HTTP/1.0 200 OK\r\nContent-Length: 50\r\n\r\nshortbody\n"))),
            ("/spaced", Answer::Close(bytes("HTTP/1.0 200 OK\r\nContent-Length: 5 \r\n\r\nhelloEXTRA"))),
            ("/lower", Answer::Close(bytes("HTTP/1.0 200 OK\r\ncontent-length: 5\r\n\r\nhelloEXTRA"))),
            ("/empty", Answer::Close(Vec::new())),
            ("/lf", Answer::Close(bytes("HTTP/1.0 200 OK\nContent-Length: 6\n\nlfbody"))),
            ("/reset", Answer::Reset(bytes("HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\npartial"))),
            ("/held", Answer::Hold(bytes("HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello"))),
            ("/silent", Answer::Hold(Vec::new())),
        ],
    );
    let port = pages.addr().port().to_string();
    let ours = bins::workspace_bin("genhash");
    let theirs = std::path::Path::new("/usr/bin/genhash");
    assert!(theirs.exists(), "keepalived's genhash is missing (apt-get install keepalived)");
    let paths = [
        "/chunked", "/extra", "/close", "/404", "/short", "/spaced", "/lower", "/empty", "/lf", "/reset",
        "/held", "/silent",
    ];
    for path in paths {
        let args = ["-t", "1", "-s", "127.0.0.1", "-p", &port, "-u", path];
        let expected = genhash_all(&web, theirs, &args);
        let got = genhash_all(&web, &ours, &args);
        assert_eq!(got, expected, "genhash {}", args.join(" "));
    }
    // The digests are those of the bytes keepalived hashes.
    let line = |path: &str| genhash(&web, &ours, &["-s", "127.0.0.1", "-p", &port, "-u", path]).0;
    assert_eq!(line("/chunked"), format!("{}\n", md5_hex(b"5\r\nhello\r\n7\r\n-world\n\r\n0\r\n\r\n")));
    assert_eq!(line("/extra"), format!("{}\n", md5_hex(b"hello")));
    assert_eq!(line("/404"), format!("{}\n", md5_hex(b"not found\n")));
    assert_eq!(genhash_all(&web, &ours, &["-s", "127.0.0.1", "-p", &port, "-u", "/empty"]).0, "");
    assert_eq!(line("/reset"), "Read error with\n");

    // A host that drops the SYNs: both time out connecting.
    let out = web.exec("nft", &["add table inet silent { chain input { type filter hook input priority 0; tcp dport 18089 drop; }; }"]);
    assert!(out.status.success(), "nft: {}", String::from_utf8_lossy(&out.stderr));
    let args = ["-t", "1", "-s", "127.0.0.1", "-p", "18089", "-u", "/"];
    assert_eq!(genhash_all(&web, &ours, &args), genhash_all(&web, theirs, &args));
    assert_eq!(genhash(&web, &ours, &args).0, "Timeout connecting\n");

    // -m marks the connection (SO_MARK): the namespace counts the packets of each mark, and
    // both keep the low 32 bits of a larger number.
    let rules = format!(
        "add table inet marks {{ chain out {{ type filter hook output priority 0; \
         tcp dport {port} meta mark 17 counter; tcp dport {port} meta mark 0x4876e7ff counter; }}; }}"
    );
    let out = web.exec("nft", &[&rules]);
    assert!(out.status.success(), "nft: {}", String::from_utf8_lossy(&out.stderr));
    let counts = || {
        let out = web.exec("nft", &["list", "table", "inet", "marks"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .filter_map(|l| l.split("packets ").nth(1)?.split_whitespace().next()?.parse::<u64>().ok())
            .collect::<Vec<_>>()
    };
    for program in [theirs, ours.as_path()] {
        for (mark, index) in [("17", 0), ("99999999999", 1)] {
            let before = counts();
            let args = ["-m", mark, "-s", "127.0.0.1", "-p", &port, "-u", "/extra"];
            assert_eq!(genhash(&web, program, &args).0, format!("{}\n", md5_hex(b"hello")));
            let after = counts();
            assert!(
                after[index] > before[index],
                "{} -m {mark}: no packet with that mark ({before:?} -> {after:?})",
                program.display()
            );
            assert_eq!(
                after[1 - index],
                before[1 - index],
                "{} -m {mark}: the other mark",
                program.display()
            );
        }
        // A mark that is not a decimal number: the usage, exit 1.
        let bad = genhash_all(&web, program, &["-m", "0x10", "-s", "127.0.0.1", "-p", &port, "-u", "/"]);
        assert_eq!((bad.0.as_str(), bad.2), ("", Some(1)), "{} -m 0x10", program.display());
        assert!(bad.1.starts_with("invalid fwmark '0x10'\n"), "{}: {}", program.display(), bad.1);
    }
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
