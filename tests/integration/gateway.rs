//! The JSON/HTTP gateway (`--http-listen`): SelectOffer, RecordRedemption
//! and RecordFallback as JSON, with the gRPC methods' semantics and the
//! error contract's reasons, behind the same tokens; its OpenAPI
//! description is served.

use serde_json::{Value, json};

use crate::support::TestServer;

const TOKEN: &str = "gateway-test-token-0123456789abcdef";

/// One HTTP/1.1 request with a JSON body: the status code and the JSON
/// answer.
fn call(addr: &str, method: &str, path: &str, body: &str, token: Option<&str>) -> (u16, Value) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let auth = token.map_or_else(String::new, |t| format!("authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n{auth}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let (head, body) = out.split_once("\r\n\r\n").expect("http response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, json)
}

fn post(addr: &str, path: &str, body: Value) -> (u16, Value) {
    call(addr, "POST", path, &body.to_string(), None)
}

const CONFIG: &str = "[[campaigns]]\nid = \"g\"\npolicy = \"segment-ts\"\nreward_window = \"1h\"\n\
    segment_by = [\"tier\"]\n\
    [[campaigns.offers]]\nid = \"muffin\"\nname = \"Free muffin\"\nmax_decisions = 2\n\
    display = { headline = \"A muffin on us\" }\n";

#[tokio::test]
async fn select_and_redeem_over_json_with_the_same_semantics() {
    let server = TestServer::start(Some(CONFIG), &["--http-listen", "127.0.0.1:0"]);
    let gw = server.gateway_addr.clone();
    assert!(!gw.is_empty(), "the gateway address is printed");

    let (status, doc) = call(&gw, "GET", "/v1/openapi.json", "", None);
    assert_eq!(status, 200);
    assert!(doc["paths"]["/v1/select-offer"]["post"].is_object());

    let visit = json!({
        "campaign": "g",
        "context": { "tier": "gold", "spend": 12.5, "member": true },
        "customer_id": "kim",
        "request_id": "visit-1",
    });
    let (status, chosen) = post(&gw, "/v1/select-offer", visit.clone());
    assert_eq!(status, 200, "{chosen}");
    assert_eq!(chosen["offer_id"], "muffin");
    assert_eq!(chosen["offer_name"], "Free muffin");
    assert_eq!(chosen["display"]["headline"], "A muffin on us");
    assert_eq!(chosen["segment"], "gold");
    assert_eq!(chosen["ignored_features"], json!(["member", "spend"]));
    // A retry with the request_id replays the decision, as over gRPC.
    let (_, again) = post(&gw, "/v1/select-offer", visit);
    assert_eq!(again["decision_id"], chosen["decision_id"]);
    assert_eq!(again["replayed"], true);

    let id = chosen["decision_id"].as_str().expect("id");
    let (status, redeemed) = post(&gw, "/v1/record-redemption", json!({ "decision_id": id }));
    assert_eq!(status, 200, "{redeemed}");
    assert_eq!(redeemed["already_recorded"], false);
    assert_eq!(redeemed["campaign"], "g");
    let (_, twice) = post(&gw, "/v1/record-redemption", json!({ "decision_id": id }));
    assert_eq!(twice["already_recorded"], true);
    // The gRPC side sees the same state.
    let stats = server.stats("g").await;
    assert_eq!(stats.offers[0].redeemed, 1);

    // Errors: the HTTP status of the code, and the stable reason.
    let cases = [
        (
            json!({ "campaign": "tea" }),
            "/v1/select-offer",
            404,
            "UNKNOWN_CAMPAIGN",
        ),
        (
            json!({ "campaign": "g", "context": { "tier": 3.0, "x": [1] } }),
            "/v1/select-offer",
            400,
            "INVALID_BODY",
        ),
        (
            json!({ "campaign": "g", "colour": "red" }),
            "/v1/select-offer",
            400,
            "INVALID_BODY",
        ),
        (
            json!({ "decision_id": "00" }),
            "/v1/record-redemption",
            400,
            "INVALID_ARGUMENT",
        ),
        (
            json!({ "campaign": "g", "offer_id": "free_car" }),
            "/v1/record-fallback",
            404,
            "UNKNOWN_OFFER",
        ),
    ];
    for (body, path, want_status, want_reason) in cases {
        let (status, err) = post(&gw, path, body.clone());
        assert_eq!(status, want_status, "{body}: {err}");
        assert_eq!(err["error"]["reason"], want_reason, "{body}: {err}");
        assert!(
            err["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    // The muffin's budget of two decisions: one more, then BUDGET_EXHAUSTED
    // (FAILED_PRECONDITION: 400, not a retryable 429).
    let fresh = json!({ "campaign": "g", "context": { "tier": "gold" } });
    assert_eq!(post(&gw, "/v1/select-offer", fresh.clone()).0, 200);
    let (status, err) = post(&gw, "/v1/select-offer", fresh);
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["reason"], "BUDGET_EXHAUSTED");
    assert_eq!(err["error"]["code"], "FAILED_PRECONDITION");
    // A fallback is still recorded.
    let (status, logged) = post(
        &gw,
        "/v1/record-fallback",
        json!({ "campaign": "g", "offer_id": "muffin", "request_id": "visit-2" }),
    );
    assert_eq!(status, 200, "{logged}");
    assert!(
        logged["decision_id"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
}

#[tokio::test]
async fn the_gateway_takes_the_servers_tokens_under_auth_scope_all() {
    let tmp = tempfile::tempdir().expect("tmp");
    let token = tmp.path().join("token");
    std::fs::write(&token, TOKEN).expect("token");
    let server = TestServer::start(
        Some(CONFIG),
        &[
            "--http-listen",
            "127.0.0.1:0",
            "--auth-scope",
            "all",
            "--auth-token-file",
            token.to_str().expect("utf-8"),
        ],
    );
    let gw = &server.gateway_addr;
    let body = json!({ "campaign": "g" }).to_string();
    let (status, err) = call(gw, "POST", "/v1/select-offer", &body, None);
    assert_eq!(status, 401, "{err}");
    assert_eq!(err["error"]["reason"], "UNAUTHENTICATED");
    let (status, err) = call(
        gw,
        "POST",
        "/v1/select-offer",
        &body,
        Some("wrong-token-0123456789"),
    );
    assert_eq!(status, 401, "{err}");
    let (status, ok) = call(gw, "POST", "/v1/select-offer", &body, Some(TOKEN));
    assert_eq!(status, 200, "{ok}");
}

/// A body over the size limit is refused in the gateway's JSON error form,
/// like every other refusal, with the code spelled as gRPC spells it.
#[tokio::test]
async fn an_oversized_body_is_a_json_error() {
    let server = TestServer::start(
        Some(CONFIG),
        &[
            "--http-listen",
            "127.0.0.1:0",
            "--max-message-bytes",
            "4096",
        ],
    );
    let body = json!({ "campaign": "g", "request_id": "x".repeat(8192) }).to_string();
    let (status, err) = call(
        &server.gateway_addr,
        "POST",
        "/v1/select-offer",
        &body,
        None,
    );
    assert_eq!(status, 413, "{err}");
    assert_eq!(err["error"]["reason"], "INVALID_BODY", "{err}");
    assert_eq!(err["error"]["code"], "INVALID_ARGUMENT", "{err}");
}

/// With TLS set, the gateway speaks HTTPS with the gRPC port's certificate
/// (and not plain HTTP): tokens and customer ids no longer cross in clear.
#[tokio::test]
async fn with_tls_the_gateway_serves_https() {
    use crate::support::{https_request, plain_http_answered};
    let tmp = tempfile::tempdir().expect("tmp");
    let tls = crate::support::TlsFiles::write(tmp.path());
    let server = TestServer::start(Some(CONFIG), &tls.args(&["--http-listen", "127.0.0.1:0"]));
    let gw = server.gateway_addr.clone();
    let body = json!({"campaign": "g", "context": {"tier": "gold"}}).to_string();
    let request = format!(
        "POST /v1/select-offer HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let (answer, alpn) = https_request(&gw, &tls.cert_pem, &request)
        .await
        .expect("TLS handshake with the gateway");
    // Offered both, as curl does: the gateway chose HTTP/1.1, which it speaks.
    assert_eq!(alpn, b"http/1.1");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"offer_id\":\"muffin\""), "{answer}");
    // Plain HTTP to the same port gets no answer.
    assert!(
        !plain_http_answered(&gw, "GET /v1/openapi.json HTTP/1.1\r\nhost: x\r\n\r\n").await,
        "plain HTTP must not be answered"
    );
}

/// The gateway's connections are capped and closed when silent, as the
/// gRPC port's are (`--max-connections`, `--idle-timeout`).
#[test]
fn gateway_connections_are_capped_and_silent_ones_closed() {
    use crate::support::closed_within;
    use std::time::Duration;
    let server = TestServer::start(
        Some(CONFIG),
        &[
            "--http-listen",
            "127.0.0.1:0",
            "--max-connections",
            "2",
            // Silent connections are closed after 3 s (the preface
            // timeout): a refusal inside 1.5 s is the cap's.
            "--idle-timeout",
            "3s",
        ],
    );
    let gw = server.gateway_addr.clone();
    let mut silent: Vec<std::net::TcpStream> = (0..2)
        .map(|_| std::net::TcpStream::connect(&gw).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut third = std::net::TcpStream::connect(&gw).expect("connect");
    assert!(
        closed_within(&mut third, Duration::from_millis(1500)),
        "a gateway connection over --max-connections stayed open"
    );
    for (i, s) in silent.iter_mut().enumerate() {
        assert!(
            closed_within(s, Duration::from_secs(6)),
            "silent gateway connection {i} was never closed"
        );
    }
    // Their places are free again.
    let (status, _) = call(&gw, "GET", "/v1/openapi.json", "", None);
    assert_eq!(status, 200);
}

/// The gateway speaks HTTP/1.1 only: a client opening with HTTP/2's
/// preface is not served HTTP/2 (under hyper's own stream limit rather
/// than --max-streams-per-connection).
#[test]
fn the_gateway_does_not_speak_http2() {
    use std::io::{Read, Write};
    let server = TestServer::start(Some(CONFIG), &["--http-listen", "127.0.0.1:0"]);
    let mut s = std::net::TcpStream::connect(&server.gateway_addr).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("timeout");
    // The preface, then an empty SETTINGS frame.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .expect("write");
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    // An HTTP/2 server answers with its SETTINGS frame (type 4 in byte 3).
    assert!(
        !(answer.len() >= 9 && answer[3] == 0x04),
        "answered as HTTP/2: {answer:?}"
    );
}

/// A request's head must arrive within --request-timeout: a client
/// dripping its headers a byte at a time is closed.
#[test]
fn a_request_head_dripped_slowly_is_cut_off() {
    use std::io::Write;
    use std::time::{Duration, Instant};
    let server = TestServer::start(
        Some(CONFIG),
        &["--http-listen", "127.0.0.1:0", "--request-timeout", "1s"],
    );
    let mut s = std::net::TcpStream::connect(&server.gateway_addr).expect("connect");
    s.write_all(b"POST /v1/select-offer HTTP/1.1\r\nhost: x\r\n")
        .expect("write");
    let started = Instant::now();
    // Keeps sending, so that no idle timeout could be what closes it.
    let closed = loop {
        std::thread::sleep(Duration::from_millis(200));
        if s.write_all(b"x").is_err() || started.elapsed() > Duration::from_secs(8) {
            break crate::support::closed_within(&mut s, Duration::from_secs(1));
        }
        if crate::support::closed_within(&mut s, Duration::from_millis(50)) {
            break true;
        }
    };
    assert!(closed, "a dripping client kept its connection");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "closed only after {:?}",
        started.elapsed()
    );
}
