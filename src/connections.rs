//! Accepted connections: at most so many open, each closed when it stays
//! silent (nothing sent in time after connecting, or no traffic either way
//! for the idle timeout), and accept errors (EMFILE) met with a pause instead of a
//! busy loop. With TLS, the handshake is done here too (each connection in
//! a task of its own, within the preface timeout), so that the stream h2
//! writes to is ours over TLS as well ([`Accepted`]). The gRPC port takes
//! them as a stream ([`accept`]); the JSON/HTTP gateway and the metrics port
//! one at a time ([`Listener`]).

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
use tokio_rustls::server::TlsStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::tls::SharedAcceptor;

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
            "nothing received in time after connecting"
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

    /// False, as [`Accepted`] says to h2; a TLS stream over this one writes
    /// its records through `poll_write_vectored` all the same.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// A connection as the gRPC server gets it: plaintext, or TLS over the
/// same [`Conn`] (whose limits then apply to the encrypted bytes).
#[derive(Debug)]
pub(crate) enum Accepted {
    Plain(Conn),
    Tls(Box<TlsStream<Conn>>),
}

impl AsyncRead for Accepted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Accepted::Plain(c) => Pin::new(c).poll_read(cx, buf),
            Accepted::Tls(t) => Pin::new(t.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Accepted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Accepted::Plain(c) => Pin::new(c).poll_write(cx, data),
            Accepted::Tls(t) => Pin::new(t.as_mut()).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Accepted::Plain(c) => Pin::new(c).poll_flush(cx),
            Accepted::Tls(t) => Pin::new(t.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Accepted::Plain(c) => Pin::new(c).poll_shutdown(cx),
            Accepted::Tls(t) => Pin::new(t.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Accepted::Plain(c) => Pin::new(c).poll_write_vectored(cx, bufs),
            Accepted::Tls(t) => Pin::new(t.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    /// False, although the socket could, and over TLS as well (whose stream
    /// would say true): h2 then copies DATA payloads under 1 KiB into its
    /// write buffer (under 256 bytes when the transport is vectored), and
    /// each larger payload makes the connection flush before it takes the
    /// next frame. A SelectOffer reply is a few hundred bytes, so with
    /// vectored writes each one went out in a write of its own (over TLS, a
    /// record of its own) and its trailers in another (BENCHMARKS.md,
    /// "Replies in one write"). The price: a payload of 1 KiB or more (an
    /// explained reply, a backup chunk's 16 KiB frames) leaves in two
    /// writes instead of one writev.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

impl Connected for Accepted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        let conn = match self {
            Accepted::Plain(c) => c,
            Accepted::Tls(t) => t.get_ref().0,
        };
        conn.inner.connect_info()
    }
}

/// [`accept`]'s connections one at a time (the JSON/HTTP gateway, the
/// metrics port).
pub(crate) struct Listener {
    incoming: tokio_stream::wrappers::ReceiverStream<io::Result<Accepted>>,
    local: std::net::SocketAddr,
}

impl Listener {
    /// Accepts on `listener` under `limits`, with TLS when `tls` is given
    /// (`port` as for [`accept`]).
    pub(crate) fn new(
        listener: TcpListener,
        limits: ConnectionLimits,
        tls: Option<SharedAcceptor>,
        port: &'static str,
    ) -> io::Result<Listener> {
        let local = listener.local_addr()?;
        Ok(Listener {
            incoming: accept(listener, limits, tls, port),
            local,
        })
    }

    /// The next connection (waits for one).
    pub(crate) async fn next(&mut self) -> Accepted {
        use tokio_stream::StreamExt as _;
        loop {
            match self.incoming.next().await {
                Some(Ok(conn)) => return conn,
                // [`accept`] logs and retries its failures itself.
                Some(Err(_)) => {}
                // The accept task is gone (it stops only if it panicked):
                // no new connections; those open are served on.
                None => {
                    tracing::error!(listen = %self.local, "the accept loop ended: no new connections");
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

/// Accepts connections on `listener` under `limits` until the returned
/// stream is dropped (then the listener closes too).
/// `port` names the port in logs and metrics (`grpc`, `gateway`, `metrics`).
pub(crate) fn accept(
    listener: TcpListener,
    limits: ConnectionLimits,
    tls: Option<SharedAcceptor>,
    port: &'static str,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<Accepted>> {
    let (tx, rx) = mpsc::channel(64);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let local = listener
        .local_addr()
        .map_or_else(|_| "unknown".to_owned(), |a| a.to_string());
    tokio::spawn(async move {
        let mut refused_logged = Instant::now() - Duration::from_secs(60);
        // Failed accepts in a row: the first is a warning, the rest debug
        // lines, and the recovery is said.
        let mut failing = 0u64;
        loop {
            let accepted = tokio::select! {
                () = tx.closed() => break,
                a = listener.accept() => a,
            };
            let stream = match accepted {
                Ok((stream, _)) => {
                    if failing > 0 {
                        tracing::info!(failed = failing, port, "accepting connections again");
                        failing = 0;
                    }
                    stream
                }
                Err(e) => {
                    // EMFILE/ENFILE and friends: retrying at once spins a core.
                    if failing == 0 {
                        tracing::warn!(error = %e, port, "cannot accept a connection; retrying every {ACCEPT_BACKOFF:?}");
                    } else {
                        tracing::debug!(error = %e, port, "cannot accept a connection, again");
                    }
                    failing += 1;
                    metrics::counter!("offer_bandit_accept_errors_total", "port" => port)
                        .increment(1);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                metrics::counter!("offer_bandit_connections_refused_total", "port" => port)
                    .increment(1);
                if refused_logged.elapsed() >= Duration::from_secs(10) {
                    refused_logged = Instant::now();
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        port,
                        listen = %local,
                        peer = %stream.peer_addr().map_or_else(|_| "unknown".to_owned(), |a| a.to_string()),
                        "at the connection limit; closing new connections"
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
            let Some(tls) = &tls else {
                if tx.send(Ok(Accepted::Plain(conn))).await.is_err() {
                    break;
                }
                continue;
            };
            // The handshake in a task of its own, so that a slow client
            // holds up no other; one that has not finished it within the
            // preface timeout is closed, and its slot freed, as is one
            // still going when the server stops taking connections.
            // The acceptor current now: a renewed certificate serves the
            // connections that come after it.
            let (tls, tx) = (tls.current(), tx.clone());
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(limits.preface_timeout, tls.accept(conn));
                let failed = tokio::select! {
                    () = tx.closed() => return,
                    done = handshake => match done {
                        Ok(Ok(stream)) => {
                            let _ = tx.send(Ok(Accepted::Tls(Box::new(stream)))).await;
                            return;
                        }
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => "not finished within the preface timeout".to_owned(),
                    },
                };
                // TCP-only health probes of a load balancer land here too.
                tracing::debug!(error = %failed, port, "TLS handshake failed");
                metrics::counter!("offer_bandit_tls_handshake_failures_total", "port" => port)
                    .increment(1);
            });
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

    /// A self-signed certificate for localhost: the server's acceptor, and
    /// a client that trusts it and offers HTTP/2.
    fn tls_pair() -> (SharedAcceptor, tokio_rustls::TlsConnector) {
        use tokio_rustls::rustls;
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
        let acceptor = crate::tls::acceptor(
            cert.pem().as_bytes(),
            signing_key.serialize_pem().as_bytes(),
            b"h2",
        )
        .expect("acceptor");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).expect("root");
        let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        client.alpn_protocols = vec![b"h2".to_vec()];
        (
            SharedAcceptor::new(acceptor),
            tokio_rustls::TlsConnector::from(Arc::new(client)),
        )
    }

    async fn tls_listener(
        limits: ConnectionLimits,
        acceptor: SharedAcceptor,
    ) -> (
        std::net::SocketAddr,
        tokio_stream::wrappers::ReceiverStream<io::Result<Accepted>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        (addr, accept(listener, limits, Some(acceptor), "grpc"))
    }

    /// Over TLS too the stream h2 writes to says unvectored (tokio-rustls's
    /// own would say vectored), HTTP/2 is agreed by ALPN, and bytes cross
    /// both ways.
    #[tokio::test]
    async fn tls_connections_are_handshaken_here_and_report_unvectored_writes() {
        use tokio_stream::StreamExt as _;
        let (acceptor, connector) = tls_pair();
        let limits = ConnectionLimits {
            max_connections: 4,
            idle_timeout: Duration::from_secs(60),
            preface_timeout: Duration::from_secs(10),
        };
        let (addr, mut incoming) = tls_listener(limits, acceptor).await;
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name =
            tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let (client, server) = tokio::join!(connector.connect(name, tcp), incoming.next());
        let mut client = client.expect("client handshake");
        let mut server = server.expect("a connection").expect("accepted");
        let Accepted::Tls(tls) = &server else {
            panic!("a TLS connection, not plaintext");
        };
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        assert_eq!(client.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        assert!(
            tls.is_write_vectored(),
            "tokio-rustls's own stream says vectored"
        );
        assert!(!server.is_write_vectored());
        assert!(server.connect_info().remote_addr().is_some());
        let reply = vec![7u8; 600];
        server.write_all(&reply).await.expect("write");
        server.flush().await.expect("flush");
        let mut got = vec![0u8; 600];
        client.read_exact(&mut got).await.expect("read");
        assert_eq!(got, reply);
        client.write_all(b"request").await.expect("write");
        client.flush().await.expect("flush");
        let mut got = [0u8; 7];
        server.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"request");
    }

    /// A client that never finishes its handshake is closed after the
    /// preface timeout, and its place under the cap goes to the next.
    #[tokio::test]
    async fn a_stalled_tls_handshake_is_dropped_and_frees_its_slot() {
        use tokio_stream::StreamExt as _;
        let (acceptor, connector) = tls_pair();
        let limits = ConnectionLimits {
            max_connections: 1,
            idle_timeout: Duration::from_secs(60),
            preface_timeout: Duration::from_millis(200),
        };
        let (addr, mut incoming) = tls_listener(limits, acceptor).await;
        // Sends half a record header, then nothing: the handshake waits.
        let mut stalled = TcpStream::connect(addr).await.expect("connect");
        stalled.write_all(&[0x16, 0x03]).await.expect("write");
        let none = tokio::time::timeout(Duration::from_millis(500), incoming.next()).await;
        assert!(none.is_err(), "a stalled handshake yields no connection");
        // Its slot is free again: the next client gets through.
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name =
            tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let (client, server) = tokio::join!(connector.connect(name, tcp), incoming.next());
        client.expect("client handshake");
        assert!(matches!(server, Some(Ok(Accepted::Tls(_)))));
        // The stalled one was closed.
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(2), stalled.read(&mut buf))
            .await
            .expect("closed, not left open");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    }
}
