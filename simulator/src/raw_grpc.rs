//! A lean unary gRPC client for `offer-sim load`'s timed calls: requests
//! encoded before the clock starts and sent straight over an HTTP/2
//! connection (the `h2` crate), without tonic's channel, whose buffer hands
//! every call to a background task. On one core tonic's client tops out
//! below what the server answers for Health/Check, and then the ratio
//! measures the client (BENCHMARKS.md, "Replies in one write").

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, Request, Uri};
use tonic::{Code, Status};

/// One HTTP/2 connection; clones share it.
#[derive(Clone)]
pub(crate) struct RawChannel {
    send: h2::client::SendRequest<Bytes>,
    authority: http::uri::Authority,
}

impl RawChannel {
    /// Connects to `target` (`http://host:port`; plaintext only).
    pub(crate) async fn connect(target: &str) -> anyhow::Result<RawChannel> {
        let uri: Uri = target.parse()?;
        if uri.scheme_str() != Some("http") {
            anyhow::bail!("{target}: the load generator speaks plaintext gRPC only (http://)");
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("{target}: no host:port"))?;
        let port = authority.port_u16().unwrap_or(80);
        let tcp = tokio::net::TcpStream::connect((authority.host(), port)).await?;
        tcp.set_nodelay(true)?;
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(1 << 24)
            .handshake(tcp)
            .await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                log_connection_end(&e);
            }
        });
        Ok(RawChannel { send, authority })
    }

    /// Calls `path` with `message` (a gRPC frame, [`frame`]) and returns the
    /// reply's message, or the call's status.
    pub(crate) async fn unary(&self, path: &str, message: Bytes) -> Result<Bytes, Status> {
        let uri = Uri::builder()
            .scheme("http")
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|e| Status::internal(e.to_string()))?;
        let request = Request::post(uri)
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .map_err(|e| Status::internal(e.to_string()))?;
        let mut send = self.send.clone().ready().await.map_err(h2_status)?;
        let (response, mut body_tx) = send.send_request(request, false).map_err(h2_status)?;
        body_tx.send_data(message, true).map_err(h2_status)?;
        let response = response.await.map_err(h2_status)?;
        if response.status() != http::StatusCode::OK {
            return Err(Status::unknown(format!(
                "HTTP status {}",
                response.status()
            )));
        }
        // A trailers-only reply (an error) carries grpc-status in its headers.
        if response.headers().contains_key("grpc-status") {
            grpc_status(response.headers())?;
            return Err(Status::internal("a trailers-only reply with status OK"));
        }
        let mut body = response.into_body();
        let mut reply = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(h2_status)?;
            let _ = body.flow_control().release_capacity(chunk.len());
            reply.put(chunk);
        }
        match body.trailers().await.map_err(h2_status)? {
            Some(trailers) if trailers.contains_key("grpc-status") => grpc_status(&trailers)?,
            _ => return Err(Status::unknown("a reply without grpc-status")),
        }
        unframe(reply.freeze())
    }
}

/// The error of an h2 failure, as a gRPC status.
fn h2_status(e: h2::Error) -> Status {
    Status::unavailable(format!("HTTP/2: {e}"))
}

/// The connection task's error goes nowhere but stderr: the calls on it
/// fail and are counted as errors.
fn log_connection_end(e: &h2::Error) {
    if !e.is_go_away() && !e.is_io() {
        eprintln!("load: connection ended: {e}");
    }
}

/// The status `headers` name in `grpc-status` (and `grpc-message`): Ok for
/// 0, and when they name none.
fn grpc_status(headers: &HeaderMap) -> Result<(), Status> {
    let Some(code) = headers.get("grpc-status") else {
        return Ok(());
    };
    let code = code
        .to_str()
        .ok()
        .and_then(|c| c.parse::<i32>().ok())
        .unwrap_or(Code::Unknown as i32);
    if code == 0 {
        return Ok(());
    }
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .unwrap_or_default();
    Err(Status::new(Code::from(code), message.to_owned()))
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

    #[test]
    fn bad_frames_and_statuses_are_errors() {
        assert!(unframe(Bytes::from_static(b"\0\0\0")).is_err());
        assert!(unframe(Bytes::from_static(b"\x01\0\0\0\0")).is_err());
        assert!(unframe(Bytes::from_static(b"\0\0\0\0\x02a")).is_err());
        assert!(unframe(Bytes::from_static(b"\0\0\0\0\0")).is_ok());
        let mut h = HeaderMap::new();
        assert!(grpc_status(&h).is_ok());
        h.insert("grpc-status", http::HeaderValue::from_static("0"));
        assert!(grpc_status(&h).is_ok());
        h.insert("grpc-status", http::HeaderValue::from_static("8"));
        h.insert("grpc-message", http::HeaderValue::from_static("busy"));
        let e = grpc_status(&h).expect_err("RESOURCE_EXHAUSTED");
        assert_eq!(e.code(), Code::ResourceExhausted);
        assert_eq!(e.message(), "busy");
    }
}
