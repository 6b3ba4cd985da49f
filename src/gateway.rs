//! The JSON/HTTP gateway (`--http-listen`), for callers without gRPC:
//! `POST /v1/select-offer`, `POST /v1/record-redemption` and
//! `POST /v1/record-fallback` take and answer JSON, and
//! `GET /v1/openapi.json` describes them (`docs/openapi.json`). Each calls
//! the same handler as its gRPC method, behind the same admission: the
//! bearer tokens under `--auth-scope all`, the in-flight limit and
//! `--request-timeout`. An error is an HTTP status with
//! `{"error": {"code", "reason", "message"}}`, the reason as in
//! docs/errors.md.

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::sync::Semaphore;
use tonic_types::StatusExt;

use crate::{
    error::Reason,
    guard::{AuthScope, Role, Tokens},
    proto::{self, feature_value::Kind, offer_service_server::OfferService},
    service::{Api, refusal},
};

/// The OpenAPI description served at `/v1/openapi.json`.
pub(crate) const OPENAPI: &str = include_str!("../docs/openapi.json");

/// What the gateway shares with the gRPC server.
#[derive(Clone)]
pub(crate) struct Gateway {
    /// The handlers.
    pub api: Api,
    /// The server's tokens.
    pub tokens: Arc<Tokens>,
    /// Whether OfferService needs a token.
    pub scope: AuthScope,
    /// The guard's in-flight permits.
    pub permits: Arc<Semaphore>,
    /// `--request-timeout`.
    pub timeout: Duration,
    /// Largest request body, in bytes (`--max-message-bytes`).
    pub max_body: usize,
}

/// Serves the gateway on `listener` until `stop` completes (then lets the
/// requests in flight finish) or the task is aborted. HTTP/1.1 only (a
/// client opening with HTTP/2's preface is refused, not served under
/// hyper's own stream limit), and a request's head must arrive within
/// `--request-timeout`: a client dripping its headers a byte at a time
/// cannot hold a connection for longer (idle keep-alive connections close
/// then too).
pub(crate) async fn serve(
    mut listener: crate::connections::Listener,
    gateway: Gateway,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let max_body = gateway.max_body;
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(gateway.timeout);
    let app = Router::new()
        .route("/v1/select-offer", post(select_offer))
        .route("/v1/record-redemption", post(record_redemption))
        .route("/v1/record-fallback", post(record_fallback))
        .route("/v1/openapi.json", get(openapi))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::map_response(too_large_as_json))
        .with_state(Arc::new(gateway));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let io = tokio::select! {
            () = &mut stop => break,
            accepted = listener.next() => accepted,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let connection =
            graceful.watch(http.serve_connection(hyper_util::rt::TokioIo::new(io), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "a gateway connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// A context value: a number, a category (string) or a flag (boolean).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
enum JsonFeature {
    Flag(bool),
    Number(f64),
    Category(String),
}

fn context(json: HashMap<String, JsonFeature>) -> HashMap<String, proto::FeatureValue> {
    json.into_iter()
        .map(|(k, v)| {
            let kind = match v {
                JsonFeature::Flag(b) => Kind::Flag(b),
                JsonFeature::Number(n) => Kind::Number(n),
                JsonFeature::Category(c) => Kind::Category(c),
            };
            (k, proto::FeatureValue { kind: Some(kind) })
        })
        .collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SelectOffer {
    campaign: String,
    #[serde(default)]
    context: HashMap<String, JsonFeature>,
    #[serde(default)]
    candidate_offer_ids: Vec<String>,
    #[serde(default)]
    customer_id: String,
    #[serde(default)]
    request_id: String,
    #[serde(default)]
    explain: bool,
    #[serde(default)]
    personalization_consent: Option<bool>,
}

#[derive(Debug, Serialize)]
struct Selected {
    decision_id: String,
    offer_id: String,
    offer_name: String,
    display: HashMap<String, String>,
    propensity: f64,
    expires_at_unix_ms: i64,
    model_version: u64,
    segment: String,
    replayed: bool,
    arm: String,
    ignored_features: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordRedemption {
    decision_id: String,
    #[serde(default)]
    offer_id: String,
    #[serde(default)]
    value: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Recorded {
    already_recorded: bool,
    offer_id: String,
    campaign: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordFallback {
    campaign: String,
    offer_id: String,
    #[serde(default)]
    context: HashMap<String, JsonFeature>,
    #[serde(default)]
    customer_id: String,
    #[serde(default)]
    request_id: String,
    #[serde(default)]
    personalization_consent: Option<bool>,
}

#[derive(Debug, Serialize)]
struct FallbackRecorded {
    decision_id: String,
    expires_at_unix_ms: i64,
    replayed: bool,
}

async fn select_offer(State(g): State<Arc<Gateway>>, headers: HeaderMap, body: Bytes) -> Response {
    run(&g, &headers, &body, |api, r: SelectOffer| async move {
        let reply = api
            .select_offer(tonic::Request::new(
                proto::SelectOfferRequest {
                    campaign: r.campaign,
                    context: context(r.context),
                    candidate_offer_ids: r.candidate_offer_ids,
                    customer_id: r.customer_id,
                    request_id: r.request_id,
                    explain: r.explain,
                    personalization_consent: r.personalization_consent,
                }
                .into(),
            ))
            .await?
            .into_inner();
        Ok(Selected {
            decision_id: reply.decision_id,
            offer_id: reply.offer_id,
            offer_name: reply.offer_name,
            display: reply.display,
            propensity: reply.propensity,
            expires_at_unix_ms: reply.expires_at_unix_ms,
            model_version: reply.model_version,
            segment: reply.segment,
            replayed: reply.replayed,
            arm: reply.arm,
            ignored_features: reply.ignored_features,
        })
    })
    .await
}

async fn record_redemption(
    State(g): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    run(&g, &headers, &body, |api, r: RecordRedemption| async move {
        let reply = api
            .record_redemption(tonic::Request::new(proto::RecordRedemptionRequest {
                decision_id: r.decision_id,
                offer_id: r.offer_id,
                value: r.value,
            }))
            .await?
            .into_inner();
        Ok(Recorded {
            already_recorded: reply.already_recorded,
            offer_id: reply.offer_id,
            campaign: reply.campaign,
        })
    })
    .await
}

async fn record_fallback(
    State(g): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    run(&g, &headers, &body, |api, r: RecordFallback| async move {
        let reply = api
            .record_fallback(tonic::Request::new(proto::RecordFallbackRequest {
                campaign: r.campaign,
                offer_id: r.offer_id,
                context: context(r.context),
                customer_id: r.customer_id,
                request_id: r.request_id,
                personalization_consent: r.personalization_consent,
            }))
            .await?
            .into_inner();
        Ok(FallbackRecorded {
            decision_id: reply.decision_id,
            expires_at_unix_ms: reply.expires_at_unix_ms,
            replayed: reply.replayed,
        })
    })
    .await
}

/// Admits the request as the guard admits a gRPC one, parses its JSON body
/// and runs `call` within the deadline.
async fn run<T, R, F, Fut>(g: &Gateway, headers: &HeaderMap, body: &[u8], call: F) -> Response
where
    T: DeserializeOwned,
    R: Serialize,
    F: FnOnce(Api, T) -> Fut,
    Fut: std::future::Future<Output = Result<R, tonic::Status>>,
{
    if let Some(refused) = refuse_unauthenticated(g, headers) {
        return error(&refused);
    }
    let Ok(_permit) = g.permits.clone().try_acquire_owned() else {
        return error(&refusal(
            Reason::Overloaded,
            "the server is at its limit of requests in flight (--max-in-flight); retry with backoff",
        ));
    };
    let request: T = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return error(&refusal(
                Reason::InvalidBody,
                format!("the request body is not this method's JSON: {e}"),
            ));
        }
    };
    match tokio::time::timeout(g.timeout, call(g.api.clone(), request)).await {
        Ok(Ok(reply)) => (StatusCode::OK, axum::Json(reply)).into_response(),
        Ok(Err(status)) => error(&status),
        Err(_) => error(&refusal(
            Reason::Timeout,
            format!(
                "the request did not finish within the server's limit of {} (--request-timeout)",
                humantime::format_duration(g.timeout)
            ),
        )),
    }
}

/// The guard's rule for OfferService: a decide or admin token under
/// `--auth-scope all` when the server has tokens.
fn refuse_unauthenticated(g: &Gateway, headers: &HeaderMap) -> Option<tonic::Status> {
    if g.tokens.is_empty() || g.scope != AuthScope::All {
        return None;
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(presented) = presented else {
        return Some(refusal(
            Reason::Unauthenticated,
            "this endpoint needs the header 'authorization: Bearer <token>' (a token the server was started with)",
        ));
    };
    match g.tokens.role_of(presented) {
        None => Some(refusal(
            Reason::Unauthenticated,
            "the bearer token is not valid",
        )),
        Some(Role::Decide | Role::Admin) => None,
        Some(role) => Some(refusal(
            Reason::PermissionDenied,
            format!(
                "the {role} token may not decide or redeem: it needs the decide or admin token"
            ),
        )),
    }
}

/// The HTTP status of a gRPC code (as Google's HTTP APIs map them).
fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code as C;
    match code {
        C::Ok => StatusCode::OK,
        C::InvalidArgument | C::FailedPrecondition | C::OutOfRange => StatusCode::BAD_REQUEST,
        C::Unauthenticated => StatusCode::UNAUTHORIZED,
        C::PermissionDenied => StatusCode::FORBIDDEN,
        C::NotFound => StatusCode::NOT_FOUND,
        C::AlreadyExists | C::Aborted => StatusCode::CONFLICT,
        C::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        C::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        C::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        C::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        C::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        C::Unknown | C::Internal | C::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A body over the limit (refused by axum in plain text) as the gateway's
/// JSON error, like every other refusal.
async fn too_large_as_json(response: Response) -> Response {
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|t| !t.as_bytes().starts_with(b"application/json"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && plain {
        let status = refusal(
            Reason::InvalidBody,
            "the request body is over the size limit",
        );
        let mut json = error(&status);
        *json.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
        return json;
    }
    response
}

/// The name gRPC gives a status code.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "OK",
        C::Cancelled => "CANCELLED",
        C::Unknown => "UNKNOWN",
        C::InvalidArgument => "INVALID_ARGUMENT",
        C::DeadlineExceeded => "DEADLINE_EXCEEDED",
        C::NotFound => "NOT_FOUND",
        C::AlreadyExists => "ALREADY_EXISTS",
        C::PermissionDenied => "PERMISSION_DENIED",
        C::ResourceExhausted => "RESOURCE_EXHAUSTED",
        C::FailedPrecondition => "FAILED_PRECONDITION",
        C::Aborted => "ABORTED",
        C::OutOfRange => "OUT_OF_RANGE",
        C::Unimplemented => "UNIMPLEMENTED",
        C::Internal => "INTERNAL",
        C::Unavailable => "UNAVAILABLE",
        C::DataLoss => "DATA_LOSS",
        C::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// `status` as the gateway's JSON error.
fn error(status: &tonic::Status) -> Response {
    let reason = status
        .get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default();
    let code = match crate::error::Reason::ALL
        .iter()
        .find(|r| r.as_str() == reason)
    {
        Some(r) => r.code().as_str(),
        None => code_name(status.code()),
    };
    let body = serde_json::json!({
        "error": {
            "code": code,
            "reason": reason,
            "message": status.message(),
        }
    });
    (http_status(status.code()), axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_description_names_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("JSON");
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
        for path in [
            "/v1/select-offer",
            "/v1/record-redemption",
            "/v1/record-fallback",
        ] {
            assert!(doc["paths"][path]["post"].is_object(), "{path}");
        }
        // Every reason the gateway can answer is in its error schema.
        let reasons = doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
            ["reason"]["enum"]
            .as_array()
            .expect("reason enum");
        assert_eq!(reasons.len(), Reason::ALL.len());
        for r in Reason::ALL {
            assert!(reasons.iter().any(|x| x == r.as_str()), "{}", r.as_str());
        }
    }

    #[test]
    fn codes_map_to_http_statuses() {
        assert_eq!(
            http_status(tonic::Code::FailedPrecondition),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            http_status(tonic::Code::ResourceExhausted),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(http_status(tonic::Code::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(
            http_status(tonic::Code::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
