//! Accepted gRPC connections: at most so many open, each closed when it
//! stays silent (no HTTP/2 preface in time, or no traffic either way for the
//! idle timeout), and accept errors (EMFILE) met with a pause instead of a
//! busy loop.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, mpsc},
    time::{Instant, Sleep},
};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// How long a new connection has to send its first bytes (the HTTP/2
/// preface, or a TLS hello).
pub(crate) const PREFACE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to pause after accept() fails (out of file descriptors, most
/// often) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Limits on accepted connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    /// Most open at once; beyond it a new connection is closed at once.
    pub max_connections: usize,
    /// A connection without traffic this long is closed.
    pub idle_timeout: Duration,
    /// A new connection must send its first bytes within this.
    pub preface_timeout: Duration,
}

/// An accepted connection that closes itself when silent (see the module
/// docs) and frees its place under the cap when dropped.
#[derive(Debug)]
pub(crate) struct Conn {
    inner: TcpStream,
    /// When the timer fires next: at most this late after the last traffic.
    /// It is moved only when it fires (not at every read and write, which
    /// would cost a timer-wheel update each).
    deadline: Pin<Box<Sleep>>,
    /// The last read or write that moved bytes.
    last: Instant,
    idle: Duration,
    started: bool,
    _slot: OwnedSemaphorePermit,
}

impl Conn {
    fn touched(&mut self) {
        self.started = true;
        self.last = Instant::now();
    }

    /// Whether the connection has been silent too long; otherwise the timer
    /// is armed (with `cx`'s waker) for when it could be.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        while self.deadline.as_mut().poll(cx).is_ready() {
            if !self.started {
                return true; // the preface deadline: `last` is the accept
            }
            let due = self.last + self.idle;
            if due <= Instant::now() {
                return true;
            }
            self.deadline.as_mut().reset(due);
        }
        false
    }

    fn timed_out(&self) -> io::Error {
        let what = if self.started {
            "idle connection closed (--idle-timeout)"
        } else {
            "no HTTP/2 preface in time"
        };
        io::Error::new(io::ErrorKind::TimedOut, what)
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.touched();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if self.expired(cx) {
                    Poll::Ready(Err(self.timed_out()))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) && self.started {
            self.touched();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) && self.started {
            self.touched();
        }
        r
    }

    /// False, although the socket could: h2 then copies DATA payloads under
    /// 1 KiB into its write buffer (under 256 bytes when the transport is
    /// vectored), and each larger payload makes the connection flush before
    /// it takes the next frame. A SelectOffer reply is a few hundred bytes,
    /// so with vectored writes each one went out in a write of its own and
    /// its trailers in another (BENCHMARKS.md, "Replies in one write").
    /// The price: a payload of 1 KiB or more (an explained reply, a backup
    /// chunk's 16 KiB frames) leaves in two writes instead of one writev.
    /// Plaintext gRPC only: over TLS, tokio-rustls's stream says vectored
    /// whatever this says, and h2 keeps 256 bytes.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Accepts connections on `listener` under `limits` until the returned
/// stream is dropped (then the listener closes too).
pub(crate) fn accept(
    listener: TcpListener,
    limits: ConnectionLimits,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(64);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::spawn(async move {
        let mut refused_logged = Instant::now() - Duration::from_secs(60);
        loop {
            let accepted = tokio::select! {
                () = tx.closed() => break,
                a = listener.accept() => a,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE/ENFILE and friends: retrying at once spins a core.
                    tracing::warn!(error = %e, "cannot accept a connection; pausing {ACCEPT_BACKOFF:?}");
                    metrics::counter!("offer_bandit_accept_errors_total").increment(1);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                metrics::counter!("offer_bandit_connections_refused_total").increment(1);
                if refused_logged.elapsed() >= Duration::from_secs(10) {
                    refused_logged = Instant::now();
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        peer = %stream.peer_addr().map_or_else(|_| "unknown".to_owned(), |a| a.to_string()),
                        "at the connection limit (--max-connections); closing new connections"
                    );
                }
                drop(stream);
                continue;
            };
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
            // Small gRPC frames go out at once instead of waiting for the
            // peer's delayed ACK (tens of ms): Nagle is off above.
            let conn = Conn {
                inner: stream,
                deadline: Box::pin(tokio::time::sleep(limits.preface_timeout)),
                last: Instant::now(),
                idle: limits.idle_timeout,
                started: false,
                _slot: slot,
            };
            if tx.send(Ok(conn)).await.is_err() {
                break;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A connection over loopback, and its peer.
    async fn pair() -> (Conn, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let conn = Conn {
            inner: accepted.expect("accept").0,
            deadline: Box::pin(tokio::time::sleep(Duration::from_secs(60))),
            last: Instant::now(),
            idle: Duration::from_secs(60),
            started: true,
            _slot: Arc::new(Semaphore::new(1))
                .try_acquire_owned()
                .expect("a free slot"),
        };
        (conn, client.expect("connect"))
    }

    /// h2 sizes its copy-or-chain threshold from this: false keeps replies
    /// under 1 KiB in one write with their trailers.
    #[tokio::test]
    async fn reports_unvectored_writes_and_still_writes_slices() {
        let (mut conn, mut peer) = pair().await;
        assert!(!conn.is_write_vectored());
        // TLS writes its records through poll_write_vectored: every slice
        // still arrives, in order.
        let slices = [io::IoSlice::new(b"head"), io::IoSlice::new(b"-body")];
        let n = std::future::poll_fn(|cx| Pin::new(&mut conn).poll_write_vectored(cx, &slices))
            .await
            .expect("write");
        assert_eq!(n, 9, "loopback takes both slices at once");
        conn.write_all(b"+tail").await.expect("write");
        conn.flush().await.expect("flush");
        let mut got = [0u8; 14];
        peer.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"head-body+tail");
    }
}
