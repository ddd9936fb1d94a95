//! Small protocol servers for the checker tests: `lbt-services NAME` answers
//! - SMTP on 0.0.0.0:25 (banner `220 NAME`, 250 to every line, 221 to QUIT; a mail after DATA
//!   is printed on stdout, one `MAIL: header` line per header, and acknowledged with 250);
//! - DNS on UDP 0.0.0.0:53: every query comes back as a NOERROR answer with no records (the
//!   header's QR and RA bits set; questions echoed);
//! - HTTP on 0.0.0.0:8080 with `NAME\n`, to see where requests land.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{TcpListener, TcpStream, UdpSocket},
};

fn main() -> anyhow::Result<()> {
    let name = std::env::args().nth(1).ok_or_else(|| anyhow::anyhow!("usage: lbt-services NAME"))?;
    let smtp = TcpListener::bind("0.0.0.0:25")?;
    let dns = UdpSocket::bind("0.0.0.0:53")?;
    let http = TcpListener::bind("0.0.0.0:8080")?;
    let banner = name.clone();
    std::thread::spawn(move || {
        for stream in smtp.incoming().flatten() {
            let banner = banner.clone();
            std::thread::spawn(move || smtp_session(stream, &banner));
        }
    });
    std::thread::spawn(move || {
        let mut buf = [0; 512];
        while let Ok((n, peer)) = dns.recv_from(&mut buf) {
            if n < 12 {
                continue;
            }
            let mut reply = buf[..n].to_vec();
            reply[2] |= 0x80; // QR
            reply[3] = 0x80; // RA, RCODE 0
            let _ = dns.send_to(&reply, peer);
        }
    });
    let body = format!("{name}\n");
    std::thread::spawn(move || {
        for mut stream in http.incoming().flatten() {
            let body = body.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(match stream.try_clone() {
                    Ok(s) => s,
                    Err(_) => return,
                });
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" && line != "\n" {
                    line.clear();
                }
                let _ = write!(stream, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            });
        }
    });
    println!("{name} listening");
    loop {
        std::thread::park();
    }
}

fn smtp_session(stream: TcpStream, name: &str) {
    let Ok(mut out) = stream.try_clone() else { return };
    let _ = write!(out, "220 {name} ESMTP\r\n");
    let mut line = String::new();
    let mut reader = BufReader::new(stream);
    let mut in_data = false;
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
        let command = line.to_ascii_uppercase();
        let reply = if in_data {
            let text = line.trim_end();
            if text == "." {
                in_data = false;
                Some("250 queued\r\n")
            } else {
                if text.contains(": ") {
                    println!("MAIL: {text}");
                }
                None
            }
        } else if command.starts_with("QUIT") {
            Some("221 bye\r\n")
        } else if command.starts_with("DATA") {
            in_data = true;
            Some("354 go on\r\n")
        } else {
            Some("250 ok\r\n")
        };
        line.clear();
        let Some(reply) = reply else { continue };
        if out.write_all(reply.as_bytes()).is_err() || reply.starts_with("221") {
            return;
        }
    }
}
