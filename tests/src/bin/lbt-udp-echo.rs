//! A tiny UDP server for tests: answers every datagram with `NAME\n`, from the address it
//! arrived on.
//!
//! `lbt-udp-echo NAME ADDR:PORT [ADDR:PORT...]`. One thread per socket. A DR or TUN real
//! server binds the VIP itself (held on `lo`): a socket bound to the wildcard address would
//! answer from the interface's address, which the client's connected socket would not accept.

use std::net::UdpSocket;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let name = args.next().ok_or_else(|| anyhow::anyhow!("usage: lbt-udp-echo NAME ADDR:PORT..."))?;
    let sockets = args.map(UdpSocket::bind).collect::<Result<Vec<_>, _>>()?;
    anyhow::ensure!(!sockets.is_empty(), "usage: lbt-udp-echo NAME ADDR:PORT...");
    let answer = format!("{name}\n");
    let threads: Vec<_> = sockets
        .into_iter()
        .map(|socket| {
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while let Ok((_, peer)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(answer.as_bytes(), peer);
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
