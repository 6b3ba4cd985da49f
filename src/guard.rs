//! Request admission, one tower layer in front of every route: who may call
//! what (bearer tokens, each with a [`Role`]), and how much may run at once
//! (a global in-flight limit that answers RESOURCE_EXHAUSTED at once instead
//! of queueing, and a per-request deadline that answers DEADLINE_EXCEEDED).
//!
//! Health checks are always open and never limited, so that a load balancer
//! can see a busy server as busy rather than dead.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tokio::sync::Semaphore;

use crate::{error::Reason, service::refusal};

/// Which RPCs need a token at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AuthScope {
    /// Only `CampaignAdmin` (campaign stats, export, erasure, backup).
    #[default]
    Admin,
    /// Every RPC but health checks: `OfferService`, `CampaignAdmin` and reflection.
    All,
}

/// What a token may do. An admin token may do everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The dashboard and the read-only `CampaignAdmin` RPCs
    /// (see [`ADMIN_METHODS`]).
    Read,
    /// `OfferService`: decisions and redemptions.
    Decide,
    /// Everything.
    Admin,
}

impl Role {
    /// The role's name, as the flags and messages spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Decide => "decide",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may call `route` (when the route needs a token).
    fn allows(self, route: Route) -> bool {
        match self {
            Role::Admin => true,
            Role::Read => matches!(route, Route::AdminRead | Route::Reflection | Route::Other),
            Role::Decide => matches!(route, Route::Offers | Route::Reflection | Route::Other),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Each `CampaignAdmin` RPC, and whether it only reads. A read token may
/// call the read-only ones. The decision log (`ExportDecisions`) holds every
/// customer's context, so it is admin only, like every change and the
/// backup. An RPC missing here is admin only; a unit test checks that the
/// table names every RPC of the proto.
pub(crate) const ADMIN_METHODS: [(&str, bool); 12] = [
    ("ListCampaigns", true),
    ("GetCampaignStats", true),
    ("GetCampaignReport", true),
    ("GetCampaignConfig", true),
    ("ExportDecisions", false),
    ("ForgetCustomer", false),
    ("AccessCustomer", false),
    ("SetOfferStatus", false),
    ("SetCampaignStatus", false),
    ("PutCampaign", false),
    ("AddOffer", false),
    ("Backup", false),
];

/// The configured tokens, kept as BLAKE3 digests: comparing digests takes
/// the same time whatever the candidate, and leaks not even a token's
/// length.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    digests: Vec<(blake3::Hash, Role)>,
}

impl Tokens {
    /// The tokens of `config`.
    pub(crate) fn new(config: &GuardConfig) -> Self {
        let digests = [
            (&config.token, Role::Admin),
            (&config.read_token, Role::Read),
            (&config.decide_token, Role::Decide),
        ]
        .into_iter()
        .filter_map(|(t, role)| Some((blake3::hash(t.as_deref()?.trim().as_bytes()), role)))
        .collect();
        Tokens { digests }
    }

    /// Whether no token is configured (then nothing needs one).
    pub(crate) fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// The role of a presented token, None if it is none of ours. Every
    /// digest is compared, so the time taken does not say which matched.
    pub(crate) fn role_of(&self, presented: &str) -> Option<Role> {
        let digest = blake3::hash(presented.trim().as_bytes());
        let mut role = None;
        for (want, r) in &self.digests {
            if digest == *want {
                role = Some(*r);
            }
        }
        role
    }
}

/// A refused token configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenConfigError {
    /// A read or decide token without an admin token.
    #[error(
        "a {0} token needs the admin token too (--auth-token-file or OFFER_BANDIT_AUTH_TOKEN): \
         with any token configured, the admin RPCs take only the admin token"
    )]
    RoleWithoutAdmin(Role),
    /// Two roles share one token.
    #[error("the {0} and {1} tokens are the same; give each role its own token")]
    Same(Role, Role),
}

/// Admission settings.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// The admin token (None: no authentication, unless another token is
    /// set, which [`GuardConfig::validate`] refuses).
    pub token: Option<String>,
    /// The read token: dashboard and read-only admin RPCs.
    pub read_token: Option<String>,
    /// The decide token: `OfferService`.
    pub decide_token: Option<String>,
    /// What needs a token at all.
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
            read_token: None,
            decide_token: None,
            scope: AuthScope::Admin,
            max_in_flight: 1024,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// The client-streaming method, whose handler takes its in-flight permit
/// once the stream's messages are in.
pub(crate) const CLIENT_STREAMING: &str = "/offerbandit.v1.OfferService/RecordRedemptions";
impl GuardConfig {
    /// Refuses role tokens without an admin token, and a token shared by two roles.
    pub fn validate(&self) -> Result<(), TokenConfigError> {
        let roles = [
            (&self.token, Role::Admin),
            (&self.read_token, Role::Read),
            (&self.decide_token, Role::Decide),
        ];
        for (i, (a, ra)) in roles.iter().enumerate() {
            let Some(a) = a else { continue };
            if self.token.is_none() {
                return Err(TokenConfigError::RoleWithoutAdmin(*ra));
            }
            for (b, rb) in &roles[i + 1..] {
                if b.as_deref().is_some_and(|b| b.trim() == a.trim()) {
                    return Err(TokenConfigError::Same(*ra, *rb));
                }
            }
        }
        Ok(())
    }
}

/// Open client streams allowed, per in-flight permit.
pub(crate) const STREAM_POOL: usize = 4;

/// Shortest token accepted: guessing 16 random bytes is hopeless.
pub const MIN_TOKEN_BYTES: usize = 16;

/// The layer (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct GuardLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    tokens: Arc<Tokens>,
    scope: AuthScope,
    permits: Arc<Semaphore>,
    /// Open client streams, a pool of their own, [`STREAM_POOL`] times the
    /// in-flight limit: a stream holds no in-flight permit until its messages
    /// are in (so streams that send nothing cannot lock decisions out), but
    /// how many may be open is bounded all the same (each buffers its
    /// messages), and a graceful shutdown waits for them.
    streams: Arc<Semaphore>,
    max_in_flight: usize,
    timeout: Duration,
}

impl GuardLayer {
    /// A layer enforcing `config`.
    pub(crate) fn new(config: &GuardConfig) -> Self {
        GuardLayer {
            shared: Arc::new(Shared {
                tokens: Arc::new(Tokens::new(config)),
                scope: config.scope,
                permits: Arc::new(Semaphore::new(config.max_in_flight)),
                streams: Arc::new(Semaphore::new(
                    config.max_in_flight.saturating_mul(STREAM_POOL),
                )),
                max_in_flight: config.max_in_flight,
                timeout: config.request_timeout,
            }),
        }
    }

    /// The tokens this layer checks (the dashboard checks them too).
    pub(crate) fn tokens(&self) -> Arc<Tokens> {
        self.shared.tokens.clone()
    }
}

impl GuardLayer {
    /// The in-flight permits, for handlers that take theirs late (see
    /// [`CLIENT_STREAMING`]).
    pub(crate) fn permits(&self) -> Arc<Semaphore> {
        self.shared.permits.clone()
    }

    /// `OfferService` and `CampaignAdmin` requests running now (a streamed
    /// response counts until its handler has returned the stream).
    pub(crate) fn in_flight(&self) -> usize {
        self.shared
            .max_in_flight
            .saturating_sub(self.shared.permits.available_permits())
            + self
                .shared
                .max_in_flight
                .saturating_mul(STREAM_POOL)
                .saturating_sub(self.shared.streams.available_permits())
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
pub(crate) struct Guard<S> {
    inner: S,
    shared: Arc<Shared>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Health,
    Reflection,
    Offers,
    /// A read-only `CampaignAdmin` RPC.
    AdminRead,
    /// Any other `CampaignAdmin` RPC.
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
    } else if let Some(method) = path.strip_prefix("/offerbandit.v1.CampaignAdmin/") {
        if ADMIN_METHODS.contains(&(method, true)) {
            Route::AdminRead
        } else {
            Route::Admin
        }
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
        if self.tokens.is_empty() {
            return None;
        }
        let protected = match self.scope {
            AuthScope::Admin => matches!(route, Route::Admin | Route::AdminRead),
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
        let Some(presented) = presented else {
            return Some(refusal(
                Reason::Unauthenticated,
                "this RPC needs the header 'authorization: Bearer <token>' (a token the server was started with)",
            ));
        };
        match self.tokens.role_of(presented) {
            None => Some(refusal(
                Reason::Unauthenticated,
                "the bearer token is not valid",
            )),
            Some(role) if role.allows(route) => None,
            Some(role) => Some(refusal(
                Reason::PermissionDenied,
                format!(
                    "the {role} token may not call {}: it needs the {} token",
                    req.uri().path(),
                    match route {
                        Route::Offers => "decide or admin",
                        Route::AdminRead => "read or admin",
                        _ => "admin",
                    }
                ),
            )),
        }
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
        if !matches!(route, Route::Offers | Route::Admin | Route::AdminRead) {
            return Box::pin(self.inner.call(req));
        }
        // A client stream takes its permit in the handler once its messages
        // are in: here it would be held by a stream that sends only headers
        // (1,100 such streams locked every SelectOffer out). The deadline
        // still bounds it.
        let pool = if req.uri().path() == CLIENT_STREAMING {
            &self.shared.streams
        } else {
            &self.shared.permits
        };
        let Ok(permit) = pool.clone().try_acquire_owned() else {
            let status = refusal(
                Reason::Overloaded,
                if Arc::ptr_eq(pool, &self.shared.streams) {
                    format!(
                        "the server is at its limit of {} open RecordRedemptions streams (4 x --max-in-flight); retry with backoff",
                        self.shared.max_in_flight.saturating_mul(STREAM_POOL)
                    )
                } else {
                    format!(
                        "the server is at its limit of {} requests in flight (--max-in-flight); retry with backoff",
                        self.shared.max_in_flight
                    )
                },
            );
            return Box::pin(std::future::ready(Ok(status.into_http())));
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
                Ok(result) => result,
                Err(_) => Ok(refusal(Reason::Timeout, format!(
                    "the request did not finish within the server's limit of {} (--request-timeout)",
                    humantime::format_duration(timeout)
                ))
                .into_http()),
            }
        })
    }
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
            Route::AdminRead
        );
        assert_eq!(
            route("/offerbandit.v1.CampaignAdmin/ExportDecisions"),
            Route::Admin
        );
        assert_eq!(route("/offerbandit.v1.CampaignAdmin/New"), Route::Admin);
        assert_eq!(route("/offerbandit.v1.CampaignAdminX/Y"), Route::Other);
    }

    /// A new CampaignAdmin RPC must be classified here before it ships.
    #[test]
    fn every_admin_rpc_of_the_proto_is_classified() {
        let mut served: Vec<String> =
            crate::metrics::method_paths(crate::proto::FILE_DESCRIPTOR_SET)
                .into_iter()
                .filter_map(|p| Some(p.strip_prefix("/offerbandit.v1.CampaignAdmin/")?.to_owned()))
                .collect();
        let mut table: Vec<String> = ADMIN_METHODS.iter().map(|(m, _)| (*m).to_owned()).collect();
        served.sort();
        table.sort();
        assert_eq!(served, table);
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

    const ADMIN: &str = "0123456789abcdef-admin";
    const READ: &str = "0123456789abcdef-read";
    const DECIDE: &str = "0123456789abcdef-decide";

    fn layer(scope: AuthScope, roles: bool) -> GuardLayer {
        GuardLayer::new(&GuardConfig {
            token: Some(ADMIN.into()),
            read_token: roles.then(|| READ.into()),
            decide_token: roles.then(|| DECIDE.into()),
            scope,
            ..GuardConfig::default()
        })
    }

    #[test]
    fn tokens_are_checked_where_the_scope_says() {
        for (scope, route_, needs) in [
            (AuthScope::Admin, Route::Admin, true),
            (AuthScope::Admin, Route::AdminRead, true),
            (AuthScope::Admin, Route::Offers, false),
            (AuthScope::Admin, Route::Reflection, false),
            (AuthScope::All, Route::Offers, true),
            (AuthScope::All, Route::Reflection, true),
            (AuthScope::All, Route::Health, false),
        ] {
            for roles in [false, true] {
                let layer = layer(scope, roles);
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
                    refused(Some(ADMIN)),
                    expect,
                    "the Bearer prefix is required"
                );
                assert_eq!(refused(Some(&format!("Bearer {ADMIN}"))), None);
            }
        }
        // No token configured: nothing is refused.
        let open = GuardLayer::new(&GuardConfig::default());
        assert!(
            open.shared
                .refuse_unauthenticated(&request(None), Route::Admin)
                .is_none()
        );
    }

    #[test]
    fn each_role_passes_its_routes_only() {
        use tonic::Code::PermissionDenied as Denied;
        let layer = layer(AuthScope::All, true);
        let s = &layer.shared;
        for (token, route_, expect) in [
            (READ, Route::AdminRead, None),
            (READ, Route::Reflection, None),
            (READ, Route::Admin, Some(Denied)),
            (READ, Route::Offers, Some(Denied)),
            (DECIDE, Route::Offers, None),
            (DECIDE, Route::Reflection, None),
            (DECIDE, Route::AdminRead, Some(Denied)),
            (DECIDE, Route::Admin, Some(Denied)),
            (ADMIN, Route::Admin, None),
            (ADMIN, Route::AdminRead, None),
            (ADMIN, Route::Offers, None),
        ] {
            let got = s
                .refuse_unauthenticated(&request(Some(&format!("Bearer {token}"))), route_)
                .map(|st| st.code());
            assert_eq!(got, expect, "{token} on {route_:?}");
        }
    }

    #[test]
    fn role_tokens_need_an_admin_token_and_differ() {
        let base = GuardConfig::default();
        let read_only = GuardConfig {
            read_token: Some(READ.into()),
            ..base.clone()
        };
        assert_eq!(
            read_only.validate(),
            Err(TokenConfigError::RoleWithoutAdmin(Role::Read))
        );
        let same = GuardConfig {
            token: Some(ADMIN.into()),
            decide_token: Some(format!("{ADMIN}\n")),
            ..base.clone()
        };
        assert_eq!(
            same.validate(),
            Err(TokenConfigError::Same(Role::Admin, Role::Decide))
        );
        let good = GuardConfig {
            token: Some(ADMIN.into()),
            read_token: Some(READ.into()),
            decide_token: Some(DECIDE.into()),
            ..base
        };
        assert_eq!(good.validate(), Ok(()));
        let tokens = Tokens::new(&good);
        assert_eq!(tokens.role_of(READ), Some(Role::Read));
        assert_eq!(tokens.role_of(&format!(" {DECIDE}\n")), Some(Role::Decide));
        assert_eq!(tokens.role_of("nope"), None);
    }
}
