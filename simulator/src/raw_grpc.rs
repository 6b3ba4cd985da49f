//! A lean unary gRPC client for `offer-sim load`'s timed calls: requests
//! encoded before the clock starts and sent straight over an HTTP/2
//! connection (the `h2` crate), without tonic's channel, whose buffer hands
//! every call to a background task. On one core tonic's client tops out
//! below what the server answers for Health/Check, and then the ratio
//! measures the client (BENCHMARKS.md, "Replies in one write").

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{
    HeaderMap, HeaderValue, Request, Uri,
    uri::{Authority, PathAndQuery},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tonic::{Code, Status};

/// What an `https://` target is checked against: the CA that signed the
/// server's certificate, and the name to check it for.
#[derive(Clone)]
pub(crate) struct ClientTls {
    /// PEM certificates to trust.
    pub(crate) ca_pem: Vec<u8>,
    /// The name the certificate must hold (None: the target's host).
    pub(crate) domain: Option<String>,
}

impl ClientTls {
    /// The name to check `uri`'s certificate for.
    fn domain_for(&self, uri: &Uri) -> String {
        self.domain.clone().unwrap_or_else(|| {
            uri.host()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned()
        })
    }

    /// tonic's TLS settings for `target` (the redemptions' channel).
    pub(crate) fn tonic(&self, target: &str) -> anyhow::Result<tonic::transport::ClientTlsConfig> {
        let uri: Uri = target.parse()?;
        Ok(tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.ca_pem))
            .domain_name(self.domain_for(&uri)))
    }

    /// A rustls client trusting only `ca_pem`, offering HTTP/2.
    fn connector(&self) -> anyhow::Result<tokio_rustls::TlsConnector> {
        use tokio_rustls::rustls::{
            self, pki_types::CertificateDer, pki_types::pem::PemObject as _,
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&self.ca_pem) {
            roots.add(cert.map_err(|e| anyhow::anyhow!("the CA file is not PEM: {e}"))?)?;
        }
        if roots.is_empty() {
            anyhow::bail!("the CA file holds no certificate");
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
    }
}

/// One HTTP/2 connection; clones share it.
#[derive(Clone)]
pub(crate) struct RawChannel {
    send: h2::client::SendRequest<Bytes>,
    scheme: http::uri::Scheme,
    authority: Authority,
    /// Set once the connection has ended: its calls fail at once.
    lost: Arc<AtomicBool>,
}

impl RawChannel {
    /// Connects to `target`: `http://host:port`, or `https://host:port`
    /// checked against `tls`.
    pub(crate) async fn connect(
        target: &str,
        tls: Option<&ClientTls>,
    ) -> anyhow::Result<RawChannel> {
        let uri: Uri = target.parse()?;
        let tls = match (uri.scheme_str(), tls) {
            (Some("http"), _) => None,
            (Some("https"), Some(tls)) => Some(tls),
            (Some("https"), None) => {
                anyhow::bail!("{target}: an https:// target needs the CA to check it against")
            }
            _ => anyhow::bail!("{target}: the target must start with http:// or https://"),
        };
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("{target}: no host:port"))?;
        // `host:port` as written (brackets kept for IPv6), port 80 if none.
        let address = match authority.port_u16() {
            Some(_) => authority.as_str().to_owned(),
            None => format!("{}:80", authority.host()),
        };
        let tcp = TcpStream::connect(&address)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to {target}: {e}"))?;
        tcp.set_nodelay(true)?;
        let lost = Arc::new(AtomicBool::new(false));
        let send = match tls {
            None => handshake(Unvectored(tcp), target, lost.clone()).await?,
            Some(tls) => {
                let name =
                    tokio_rustls::rustls::pki_types::ServerName::try_from(tls.domain_for(&uri))
                        .map_err(|e| anyhow::anyhow!("{target}: {e}"))?;
                let stream = tls
                    .connector()?
                    .connect(name, tcp)
                    .await
                    .map_err(|e| anyhow::anyhow!("{target}: TLS handshake: {e}"))?;
                handshake(Unvectored(stream), target, lost.clone()).await?
            }
        };
        Ok(RawChannel {
            send,
            scheme: if tls.is_some() {
                http::uri::Scheme::HTTPS
            } else {
                http::uri::Scheme::HTTP
            },
            authority,
            lost,
        })
    }

    /// Whether the connection has ended.
    pub(crate) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// Calls `path` with `message` (a gRPC frame, [`frame`]) and returns the
    /// reply's message, or the call's status.
    pub(crate) async fn unary(&self, path: &'static str, message: Bytes) -> Result<Bytes, Status> {
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(self.scheme.clone());
        uri.authority = Some(self.authority.clone());
        uri.path_and_query = Some(PathAndQuery::from_static(path));
        let uri = Uri::from_parts(uri).map_err(|e| Status::internal(e.to_string()))?;
        let mut request = Request::post(uri)
            .body(())
            .map_err(|e| Status::internal(e.to_string()))?;
        let headers = request.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
        let mut send = match self.send.clone().ready().await {
            Ok(send) => send,
            Err(e) => {
                self.lost.store(true, Ordering::Relaxed);
                return Err(h2_status(e));
            }
        };
        let (response, mut body_tx) = send.send_request(request, false).map_err(h2_status)?;
        body_tx.send_data(message, true).map_err(h2_status)?;
        let response = response.await.map_err(h2_status)?;
        // A trailers-only reply (an error) carries grpc-status in its headers.
        if let Some(status) = grpc_status(response.headers()) {
            status?;
            return Err(Status::internal("a trailers-only reply with status OK"));
        }
        if response.status() != http::StatusCode::OK {
            return Err(Status::unknown(format!(
                "HTTP status {}",
                response.status()
            )));
        }
        let mut body = response.into_body();
        let mut reply = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(h2_status)?;
            let _ = body.flow_control().release_capacity(chunk.len());
            if reply.len() + chunk.len() > MAX_REPLY {
                return Err(Status::resource_exhausted(format!(
                    "a reply over {MAX_REPLY} bytes"
                )));
            }
            reply.put(chunk);
        }
        let trailers = body.trailers().await.map_err(h2_status)?;
        match trailers.as_ref().and_then(grpc_status) {
            Some(status) => status?,
            None => return Err(Status::unknown("a reply without grpc-status")),
        }
        unframe(reply.freeze())
    }
}

/// The HTTP/2 handshake over `io`; the connection is driven by a task of
/// its own, which sets `lost` when it ends.
async fn handshake<S>(
    io: Unvectored<S>,
    target: &str,
    lost: Arc<AtomicBool>,
) -> anyhow::Result<h2::client::SendRequest<Bytes>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, connection) = h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 24)
        .handshake(io)
        .await?;
    let target = target.to_owned();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("load: the connection to {target} ended: {e}");
        }
        lost.store(true, Ordering::Relaxed);
    });
    Ok(send)
}

/// The largest reply read (tonic's default limit for a decoded message).
const MAX_REPLY: usize = 4 << 20;

/// The socket (or its TLS stream), reporting unvectored writes so that h2
/// copies frames under 1 KiB into one buffer, as the server does
/// (`src/connections.rs`): a SelectOffer request of about 270 bytes would
/// otherwise be chained and flushed on its own, which a Health/Check
/// request never is.
struct Unvectored<S>(S);

impl<S: AsyncRead + Unpin> AsyncRead for Unvectored<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Unvectored<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// The error of an h2 failure, as a gRPC status (tonic's mapping of the
/// HTTP/2 reason: REFUSED_STREAM is Unavailable, CANCEL Cancelled, ...).
fn h2_status(e: h2::Error) -> Status {
    Status::from_error(Box::new(e))
}

/// The status `headers` name in `grpc-status` (and `grpc-message`), Ok for
/// 0; None when they name none.
fn grpc_status(headers: &HeaderMap) -> Option<Result<(), Status>> {
    let code = headers.get("grpc-status")?;
    let code = code
        .to_str()
        .ok()
        .and_then(|c| c.parse::<i32>().ok())
        .unwrap_or(Code::Unknown as i32);
    if code == 0 {
        return Some(Ok(()));
    }
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .unwrap_or_default();
    Some(Err(Status::new(Code::from(code), message.to_owned())))
}

/// `message` as a gRPC frame: no compression, its length, its bytes.
pub(crate) fn frame(message: &impl prost::Message) -> Bytes {
    let len = message.encoded_len();
    let mut out = BytesMut::with_capacity(5 + len);
    out.put_u8(0);
    out.put_u32(len as u32);
    // Into a buffer reserved for it: encoding cannot run out of room.
    let _ = message.encode(&mut out);
    out.freeze()
}

/// The message in a unary reply's frame.
fn unframe(mut reply: Bytes) -> Result<Bytes, Status> {
    if reply.len() < 5 {
        return Err(Status::internal(format!(
            "reply of {} bytes: no gRPC frame",
            reply.len()
        )));
    }
    if reply[0] != 0 {
        return Err(Status::internal("compressed reply: not asked for"));
    }
    reply.advance(1);
    let len = reply.get_u32() as usize;
    if reply.len() != len {
        return Err(Status::internal(format!(
            "reply frame says {len} bytes, holds {}",
            reply.len()
        )));
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let m = offer_bandit::proto::RecordRedemptionRequest {
            decision_id: "d-1".into(),
            ..Default::default()
        };
        let framed = frame(&m);
        assert_eq!(framed[0], 0);
        assert_eq!(
            u32::from_be_bytes([framed[1], framed[2], framed[3], framed[4]]) as usize,
            framed.len() - 5
        );
        let message = unframe(framed).expect("a frame");
        let back =
            <offer_bandit::proto::RecordRedemptionRequest as prost::Message>::decode(message)
                .expect("decodes");
        assert_eq!(back, m);
    }

    /// The name checked is the target's host, brackets off an IPv6 one,
    /// unless --tls-domain names another.
    #[test]
    fn the_name_checked_is_the_hosts_unless_named() {
        let tls = |domain: Option<&str>| ClientTls {
            ca_pem: Vec::new(),
            domain: domain.map(str::to_owned),
        };
        let uri = |s: &str| s.parse::<Uri>().expect("uri");
        assert_eq!(tls(None).domain_for(&uri("https://[::1]:50051")), "::1");
        assert_eq!(
            tls(None).domain_for(&uri("https://shop.example:443")),
            "shop.example"
        );
        assert_eq!(
            tls(Some("offers.internal")).domain_for(&uri("https://10.0.0.5:50051")),
            "offers.internal"
        );
        assert!(tls(None).connector().is_err(), "no CA: refused");
    }

    /// A server of `h2` on loopback answering each call with `reply`:
    /// the reply's frame one byte per DATA frame, then its trailers.
    async fn split_reply_server(
        reply: Bytes,
        status: &'static str,
    ) -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let target = format!("http://{}", listener.local_addr().expect("address"));
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let mut conn = h2::server::handshake(tcp).await.expect("handshake");
            // Two calls, then the connection closes.
            for _ in 0..2 {
                let Some(Ok((request, mut respond))) = conn.accept().await else {
                    return;
                };
                let reply = reply.clone();
                tokio::spawn(async move {
                    let mut body = request.into_body();
                    while let Some(chunk) = body.data().await {
                        let n = chunk.expect("request data").len();
                        let _ = body.flow_control().release_capacity(n);
                    }
                    let response = http::Response::builder()
                        .header("content-type", "application/grpc")
                        .body(())
                        .expect("response");
                    let mut tx = respond.send_response(response, false).expect("headers");
                    for b in reply.iter() {
                        tx.send_data(Bytes::copy_from_slice(&[*b]), false)
                            .expect("data");
                    }
                    let mut trailers = HeaderMap::new();
                    trailers.insert("grpc-status", HeaderValue::from_static(status));
                    tx.send_trailers(trailers).expect("trailers");
                });
            }
            // Serve the two streams to their end, then drop the connection.
            let _ = tokio::time::timeout(std::time::Duration::from_millis(300), async {
                while conn.accept().await.is_some() {}
            })
            .await;
        });
        (target, server)
    }

    #[tokio::test]
    async fn a_reply_in_many_frames_then_a_closed_connection() {
        let message = offer_bandit::proto::RecordRedemptionRequest {
            decision_id: "a decision id long enough to span many frames".into(),
            ..Default::default()
        };
        let (target, server) = split_reply_server(frame(&message), "0").await;
        let channel = RawChannel::connect(&target, None).await.expect("connects");
        let reply = channel
            .unary("/test.Svc/Call", frame(&message))
            .await
            .expect("a reply");
        let back = <offer_bandit::proto::RecordRedemptionRequest as prost::Message>::decode(reply)
            .expect("decodes");
        assert_eq!(back, message);
        assert!(
            channel
                .unary("/test.Svc/Call", frame(&message))
                .await
                .is_ok()
        );
        server.await.expect("server");
        // The server is gone: the channel says so, and calls fail at once.
        let started = std::time::Instant::now();
        while !channel.is_lost() && started.elapsed() < std::time::Duration::from_secs(5) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(channel.is_lost());
        assert!(
            channel
                .unary("/test.Svc/Call", frame(&message))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_status_in_the_trailers_is_the_calls() {
        let (target, _server) = split_reply_server(Bytes::new(), "5").await;
        let channel = RawChannel::connect(&target, None).await.expect("connects");
        let e = channel
            .unary("/test.Svc/Call", Bytes::from_static(b"\0\0\0\0\0"))
            .await
            .expect_err("NOT_FOUND");
        assert_eq!(e.code(), Code::NotFound);
    }

    #[test]
    fn bad_frames_and_statuses_are_errors() {
        assert!(unframe(Bytes::from_static(b"\0\0\0")).is_err());
        assert!(unframe(Bytes::from_static(b"\x01\0\0\0\0")).is_err());
        assert!(unframe(Bytes::from_static(b"\0\0\0\0\x02a")).is_err());
        assert!(unframe(Bytes::from_static(b"\0\0\0\0\0")).is_ok());
        let mut h = HeaderMap::new();
        assert!(grpc_status(&h).is_none());
        h.insert("grpc-status", http::HeaderValue::from_static("0"));
        assert!(matches!(grpc_status(&h), Some(Ok(()))));
        h.insert("grpc-status", http::HeaderValue::from_static("8"));
        h.insert("grpc-message", http::HeaderValue::from_static("busy"));
        let e = grpc_status(&h)
            .expect("a status")
            .expect_err("RESOURCE_EXHAUSTED");
        assert_eq!(e.code(), Code::ResourceExhausted);
        assert_eq!(e.message(), "busy");
    }
}
