//! keepalived's time limits on a checker's conversation (HTTP_GET, SSL_GET, SMTP_CHECK): the
//! connect, and then every read and every write, may each take `connect_timeout`; the whole
//! exchange has no limit. keepalived registers each read of the answer with the connection's
//! timeout (`check_http.c`, `check_smtp.c`), so a server that sends a large page slowly but
//! steadily passes, and one that stalls mid-answer for longer than `connect_timeout` fails.

use std::{
    future::Future as _,
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};

/// A stream whose reads and writes fail with [`io::ErrorKind::TimedOut`] when one of them
/// waits longer than its limit.
#[derive(Debug)]
pub struct Timed<S> {
    io: S,
    limit: Duration,
    /// The deadline of the operation waiting, armed when it first waits.
    timer: Pin<Box<Sleep>>,
    armed: bool,
}

impl<S> Timed<S> {
    /// `io`, each of whose operations may wait `limit`.
    pub fn new(io: S, limit: Duration) -> Self {
        Timed { io, limit, timer: Box::pin(tokio::time::sleep(limit)), armed: false }
    }

    /// The stream inside.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Runs one poll of an operation: done, it disarms the deadline; waiting, it arms it (the
    /// first time) and fails once it has passed. With a limit of 0 every operation fails, even
    /// one whose data is there: keepalived's scheduler times out a read registered with a 0 s
    /// timeout before it reads (observed with keepalived 2.2.7: an SMTP_CHECK host block
    /// without connect_timeout, whose limit is 0, never passes).
    fn step<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if self.limit.is_zero() {
            return Poll::Ready(Err(self.timed_out()));
        }
        if poll.is_ready() {
            self.armed = false;
            return poll;
        }
        if !self.armed {
            self.armed = true;
            self.timer.as_mut().reset(Instant::now() + self.limit);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.armed = false;
                Poll::Ready(Err(self.timed_out()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn timed_out(&self) -> io::Error {
        stalled(self.limit)
    }
}

/// The error of a read or write that waited `limit` in vain.
pub(super) fn stalled(limit: Duration) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("nothing received or sent for {limit:?}"))
}

impl<S: AsyncRead + Unpin> AsyncRead for Timed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_read(cx, buf);
        self.step(cx, poll)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Timed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        self.step(cx, poll)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_flush(cx);
        self.step(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_shutdown(cx);
        self.step(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test]
    async fn each_read_may_take_the_limit_and_no_longer() -> io::Result<()> {
        let (client, mut server) = tokio::io::duplex(64);
        let mut timed = Timed::new(client, Duration::from_millis(300));
        tokio::spawn(async move {
            // Five bytes 0.15 s apart (0.75 s in all, over the limit), then a stall of 0.9 s,
            // then one more.
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(150)).await;
                let _ = server.write_all(b"x").await;
            }
            tokio::time::sleep(Duration::from_millis(900)).await;
            let _ = server.write_all(b"y").await;
        });
        let mut buf = [0; 1];
        for _ in 0..5 {
            timed.read_exact(&mut buf).await?;
        }
        let stalled = timed.read_exact(&mut buf).await;
        assert_eq!(stalled.map_err(|e| e.kind()).err(), Some(io::ErrorKind::TimedOut));
        Ok(())
    }

    #[tokio::test]
    async fn a_zero_limit_fails_even_data_that_is_there() -> io::Result<()> {
        let (client, mut server) = tokio::io::duplex(64);
        server.write_all(b"220 ready\r\n").await?;
        let mut timed = Timed::new(client, Duration::ZERO);
        let mut buf = [0; 4];
        let read = timed.read_exact(&mut buf).await;
        assert_eq!(read.map_err(|e| e.kind()).err(), Some(io::ErrorKind::TimedOut));
        Ok(())
    }
}
