//! A tiny HTTP/1.x server for tests and the demo: answers every request with `NAME\n`.
//!
//! `lbt-web NAME ADDR:PORT [ADDR:PORT...]`. One thread per connection; it reads the request
//! head, answers, and closes (HTTP/1.0 style), which is what load-balancer tests need.
//! `GET /slow/N` streams instead: N lines `NAME i`, one every 100 ms, then closes (a long
//! transfer, for tests that change things under an established connection). `GET /bytes/N`
//! answers N bytes as fast as the connection takes them (a bulk transfer).

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{TcpListener, TcpStream},
};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let name = args.next().ok_or_else(|| anyhow::anyhow!("usage: lbt-web NAME ADDR:PORT..."))?;
    let listeners = args.map(TcpListener::bind).collect::<Result<Vec<_>, _>>()?;
    anyhow::ensure!(!listeners.is_empty(), "usage: lbt-web NAME ADDR:PORT...");
    let body = format!("{name}\n");
    let threads: Vec<_> = listeners
        .into_iter()
        .map(|listener| {
            let body = body.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    let body = body.clone();
                    std::thread::spawn(move || {
                        let _ = answer(stream, &body);
                    });
                }
            })
        })
        .collect();
    println!("{name} listening");
    for thread in threads {
        let _ = thread.join();
    }
    Ok(())
}

fn answer(stream: TcpStream, body: &str) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or_default().to_owned();
    let slow = path.strip_prefix("/slow/").and_then(|n| n.parse::<u32>().ok());
    let bytes = path.strip_prefix("/bytes/").and_then(|n| n.parse::<usize>().ok());
    // Read the rest of the request head up to the empty line.
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut stream = stream;
    if let Some(len) = bytes {
        write!(stream, "HTTP/1.0 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")?;
        let chunk: Vec<u8> = (0..65536u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            stream.write_all(&chunk[..n])?;
            left -= n;
        }
        return stream.flush();
    }
    if let Some(lines) = slow {
        write!(stream, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")?;
        let name = body.trim_end();
        for i in 0..lines {
            writeln!(stream, "{name} {i}")?;
            stream.flush()?;
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        return Ok(());
    }
    write!(
        stream,
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
