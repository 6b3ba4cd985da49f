//! Request admission, one tower layer in front of every route: who may call
//! what (bearer tokens), and how much may run at once (a global in-flight
//! limit that answers RESOURCE_EXHAUSTED at once instead of queueing, and a
//! per-request deadline that answers DEADLINE_EXCEEDED).
//!
//! Health checks are always open and never limited, so that a load balancer
//! can see a busy server as busy rather than dead.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tokio::sync::Semaphore;

/// Which RPCs need the bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AuthScope {
    /// Only `CampaignAdmin` (campaign stats, export, erasure, backup).
    #[default]
    Admin,
    /// Every RPC but health checks: `OfferService`, `CampaignAdmin` and reflection.
    All,
}

/// Admission settings.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// The bearer token callers must present (None: no authentication).
    pub token: Option<String>,
    /// What the token protects.
    pub scope: AuthScope,
    /// Most `OfferService` and `CampaignAdmin` requests running at once.
    pub max_in_flight: usize,
    /// Longest a request may run before DEADLINE_EXCEEDED.
    pub request_timeout: Duration,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            token: None,
            scope: AuthScope::Admin,
            max_in_flight: 1024,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// The client-streaming method, whose handler takes its in-flight permit
/// once the stream's messages are in.
pub const CLIENT_STREAMING: &str = "/offerbandit.v1.OfferService/RecordRedemptions";

/// Shortest token accepted: guessing 16 random bytes is hopeless.
pub const MIN_TOKEN_BYTES: usize = 16;

/// The layer (see the module docs).
#[derive(Debug, Clone)]
pub struct GuardLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// BLAKE3 of the token: comparing digests takes the same time whatever
    /// the candidate, and leaks not even the token's length.
    token: Option<blake3::Hash>,
    scope: AuthScope,
    permits: Arc<Semaphore>,
    /// Client streams open now: they hold no permit until their messages
    /// are in, but a graceful shutdown waits for them.
    streams: Arc<std::sync::atomic::AtomicUsize>,
    max_in_flight: usize,
    timeout: Duration,
}

impl GuardLayer {
    /// A layer enforcing `config`.
    pub fn new(config: &GuardConfig) -> Self {
        GuardLayer {
            shared: Arc::new(Shared {
                token: config.token.as_deref().map(|t| blake3::hash(t.as_bytes())),
                scope: config.scope,
                permits: Arc::new(Semaphore::new(config.max_in_flight)),
                streams: Arc::default(),
                max_in_flight: config.max_in_flight,
                timeout: config.request_timeout,
            }),
        }
    }
}

impl GuardLayer {
    /// The in-flight permits, for handlers that take theirs late (see
    /// [`CLIENT_STREAMING`]).
    pub fn permits(&self) -> Arc<Semaphore> {
        self.shared.permits.clone()
    }

    /// `OfferService` and `CampaignAdmin` requests running now (a streamed
    /// response counts until its handler has returned the stream).
    pub fn in_flight(&self) -> usize {
        self.shared
            .max_in_flight
            .saturating_sub(self.shared.permits.available_permits())
            + self
                .shared
                .streams
                .load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl<S> tower::Layer<S> for GuardLayer {
    type Service = Guard<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Guard {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`GuardLayer`] wraps around the routes.
#[derive(Debug, Clone)]
pub struct Guard<S> {
    inner: S,
    shared: Arc<Shared>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Health,
    Reflection,
    Offers,
    Admin,
    Other,
}

fn route(path: &str) -> Route {
    if path.starts_with("/grpc.health.") {
        Route::Health
    } else if path.starts_with("/grpc.reflection.") {
        Route::Reflection
    } else if path.starts_with("/offerbandit.v1.OfferService/") {
        Route::Offers
    } else if path.starts_with("/offerbandit.v1.CampaignAdmin/") {
        Route::Admin
    } else {
        Route::Other
    }
}

impl Shared {
    /// None when the request may pass; the refusal otherwise.
    fn refuse_unauthenticated<B>(
        &self,
        req: &http::Request<B>,
        route: Route,
    ) -> Option<tonic::Status> {
        let want = self.token.as_ref()?;
        let protected = match self.scope {
            AuthScope::Admin => route == Route::Admin,
            AuthScope::All => route != Route::Health,
        };
        if !protected {
            return None;
        }
        let presented = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match presented {
            None => Some(tonic::Status::unauthenticated(
                "this RPC needs the header 'authorization: Bearer <token>' (the server's --auth-token-file)",
            )),
            Some(t) if blake3::hash(t.trim().as_bytes()) == *want => None,
            Some(_) => Some(tonic::Status::unauthenticated(
                "the bearer token is not valid",
            )),
        }
    }
}

/// One open client stream, counted while it lives.
#[derive(Debug)]
struct StreamCount(Arc<std::sync::atomic::AtomicUsize>);

impl StreamCount {
    fn open(count: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        StreamCount(count.clone())
    }
}

impl Drop for StreamCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for Guard<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let route = route(req.uri().path());
        if let Some(status) = self.shared.refuse_unauthenticated(&req, route) {
            return Box::pin(std::future::ready(Ok(status.into_http())));
        }
        if !matches!(route, Route::Offers | Route::Admin) {
            return Box::pin(self.inner.call(req));
        }
        // A client stream takes its permit in the handler once its messages
        // are in: here it would be held by a stream that sends only headers
        // (1,100 such streams locked every SelectOffer out). The deadline
        // still bounds it.
        let permit = if req.uri().path() == CLIENT_STREAMING {
            Err(StreamCount::open(&self.shared.streams))
        } else {
            match self.shared.permits.clone().try_acquire_owned() {
                Ok(p) => Ok(p),
                Err(_) => {
                    let status = tonic::Status::resource_exhausted(format!(
                        "the server is at its limit of {} requests in flight (--max-in-flight); retry with backoff",
                        self.shared.max_in_flight
                    ));
                    return Box::pin(std::future::ready(Ok(status.into_http())));
                }
            }
        };
        // A backup takes as long as the store is large; it is not limited.
        let timeout = if req.uri().path() == "/offerbandit.v1.CampaignAdmin/Backup" {
            Duration::MAX
        } else {
            self.shared.timeout
        };
        let future = self.inner.call(req);
        Box::pin(async move {
            let _permit = permit;
            match tokio::time::timeout(timeout, future).await {
                Ok(result) => result.map(undecodable_is_invalid_argument),
                Err(_) => Ok(tonic::Status::deadline_exceeded(format!(
                    "the request did not finish within the server's limit of {} (--request-timeout)",
                    humantime::format_duration(timeout)
                ))
                .into_http()),
            }
        })
    }
}

/// tonic answers a request body that is not the method's protobuf message
/// with INTERNAL; it is the caller's error, and the README promises
/// INVALID_ARGUMENT.
fn undecodable_is_invalid_argument<R>(mut resp: http::Response<R>) -> http::Response<R> {
    let h = resp.headers();
    let internal = h.get("grpc-status").is_some_and(|v| v.as_bytes() == b"13");
    let decode = h.get("grpc-message").is_some_and(|v| {
        let m = v.as_bytes();
        m.starts_with(b"failed to decode") || m.starts_with(b"failed%20to%20decode")
    });
    if internal && decode {
        resp.headers_mut()
            .insert("grpc-status", http::HeaderValue::from_static("3"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_classified_by_service() {
        assert_eq!(route("/grpc.health.v1.Health/Check"), Route::Health);
        assert_eq!(
            route("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            Route::Reflection
        );
        assert_eq!(
            route("/offerbandit.v1.OfferService/SelectOffer"),
            Route::Offers
        );
        assert_eq!(
            route("/offerbandit.v1.CampaignAdmin/ListCampaigns"),
            Route::Admin
        );
        assert_eq!(route("/offerbandit.v1.CampaignAdminX/Y"), Route::Other);
    }

    fn request(auth: Option<&str>) -> http::Request<()> {
        let mut r = http::Request::new(());
        if let Some(a) = auth
            && let Ok(v) = http::HeaderValue::from_str(a)
        {
            r.headers_mut().insert(http::header::AUTHORIZATION, v);
        }
        r
    }

    #[test]
    fn tokens_are_checked_where_the_scope_says() {
        let token = "0123456789abcdef-secret";
        for (scope, route_, needs) in [
            (AuthScope::Admin, Route::Admin, true),
            (AuthScope::Admin, Route::Offers, false),
            (AuthScope::Admin, Route::Reflection, false),
            (AuthScope::All, Route::Offers, true),
            (AuthScope::All, Route::Reflection, true),
            (AuthScope::All, Route::Health, false),
        ] {
            let layer = GuardLayer::new(&GuardConfig {
                token: Some(token.into()),
                scope,
                ..GuardConfig::default()
            });
            let s = &layer.shared;
            let refused = |auth| {
                s.refuse_unauthenticated(&request(auth), route_)
                    .map(|st| st.code())
            };
            let expect = needs.then_some(tonic::Code::Unauthenticated);
            assert_eq!(
                refused(None),
                expect,
                "{scope:?} {route_:?} without a token"
            );
            assert_eq!(refused(Some("Bearer wrong-token-of-some-length")), expect);
            assert_eq!(
                refused(Some(token)),
                expect,
                "the Bearer prefix is required"
            );
            assert_eq!(refused(Some(&format!("Bearer {token}"))), None);
        }
        // No token configured: nothing is refused.
        let open = GuardLayer::new(&GuardConfig::default());
        assert!(
            open.shared
                .refuse_unauthenticated(&request(None), Route::Admin)
                .is_none()
        );
    }
}
