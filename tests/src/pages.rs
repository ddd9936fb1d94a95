//! A web server of canned answers inside a namespace: each path gets fixed bytes, then the
//! connection is closed, reset or held open, or the answer comes in pieces with pauses between
//! them, for the tests of odd pages (chunked bodies, bytes past Content-Length, resets, slow
//! and stalling servers) against lbd's and keepalived's genhash and HTTP_GET.

use std::{
    collections::HashMap,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::lab::Netns;

/// What the server does with a request for one path.
#[derive(Debug, Clone)]
pub enum Answer {
    /// Sends the bytes, then closes the connection.
    Close(Vec<u8>),
    /// Sends the bytes, then resets the connection (SO_LINGER 0).
    Reset(Vec<u8>),
    /// Sends the bytes, then holds the connection open until the server stops.
    Hold(Vec<u8>),
    /// Sends each piece after the pause before it, then closes the connection.
    Pieces(Vec<(Duration, Vec<u8>)>),
}

/// A running server; it stops when dropped.
#[derive(Debug)]
pub struct Pages {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Pages {
    /// Serves `pages` (path to answer; other paths get a 200 with `default\n`) on `addr` in `ns`.
    pub fn serve(ns: &Netns, addr: SocketAddr, pages: Vec<(&str, Answer)>) -> Self {
        let listener = ns.enter(|| TcpListener::bind(addr)).unwrap_or_else(|e| panic!("binding {addr}: {e}"));
        listener.set_nonblocking(true).unwrap_or_else(|e| panic!("{addr}: {e}"));
        let pages: Arc<HashMap<String, Answer>> =
            Arc::new(pages.into_iter().map(|(p, a)| (p.to_owned(), a)).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (pages, stopped) = (pages.clone(), stopped.clone());
                        std::thread::spawn(move || answer(stream, &pages, &stopped));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Pages { addr, stop }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads one request's head and answers it.
fn answer(mut stream: TcpStream, pages: &HashMap<String, Answer>, stop: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&request);
    let path = text.split(' ').nth(1).unwrap_or("/");
    let default = Answer::Close(b"HTTP/1.0 200 OK\r\nContent-Length: 8\r\n\r\ndefault\n".to_vec());
    match pages.get(path).unwrap_or(&default) {
        Answer::Close(bytes) => {
            let _ = stream.write_all(bytes);
        }
        Answer::Reset(bytes) => {
            let _ = stream.write_all(bytes);
            let linger = libc::linger { l_onoff: 1, l_linger: 0 };
            let _ = nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::Linger, &linger);
        }
        Answer::Hold(bytes) => {
            let _ = stream.write_all(bytes);
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Answer::Pieces(pieces) => {
            for (pause, bytes) in pieces {
                std::thread::sleep(*pause);
                if stream.write_all(bytes).is_err() {
                    return;
                }
            }
        }
    }
}
