//! The HTTP/1 listener of the metrics port: `GET /metrics` for Prometheus
//! and the probes `GET /healthz` (live: the process answers) and
//! `GET /readyz` (ready to serve SelectOffer, see [`crate::readiness`]),
//! open to anyone who reaches the port under any `Host` (scrapers and
//! probes send no credentials), and the [`crate::dashboard`]'s pages, which answer only
//! under an allowed `Host` (against DNS rebinding), need a read or admin
//! token whenever the server has tokens (`Authorization: Bearer`, or HTTP
//! Basic with the token as the password so that a browser can log in), and
//! carry security headers. Its connections come through
//! [`crate::connections`] under [`LIMITS`] (TLS with `--metrics-tls`); each
//! request head must then arrive within [`HEAD_TIMEOUT`].

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use base64::Engine as _;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{
    connections::{ConnectionLimits, Listener},
    dashboard::{Dashboard, Refresh},
    engine::Engine,
    guard::{Role, Tokens},
    readiness::Readiness,
};

/// Most connections served at once; beyond it, a new one is closed at once.
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// Longest a client may take to send its request head.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a client may take to read the response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request head read.
const MAX_HEAD: usize = 8192;

/// Sent with every response: no scripts, frames, referrers or caching.
/// The pages use inline styles and inline SVG, nothing else.
const SECURITY_HEADERS: &str = "content-security-policy: default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'\r\n\
    x-frame-options: DENY\r\n\
    x-content-type-options: nosniff\r\n\
    referrer-policy: no-referrer\r\n\
    cache-control: no-store\r\n";

/// Who may see the dashboard, and under which names.
#[derive(Debug, Clone)]
pub(crate) struct WebOptions {
    /// The server's tokens: with any, the pages need a read or admin token.
    pub tokens: Arc<Tokens>,
    /// `Host` names (or IPs) the pages answer to besides localhost,
    /// loopback IPs and `listen`'s IP.
    pub allowed_hosts: Vec<String>,
    /// The address the listener was bound to.
    pub listen: SocketAddr,
    /// What `/readyz` answers.
    pub readiness: Arc<Readiness>,
}

struct Site {
    metrics: PrometheusHandle,
    engine: Arc<Engine>,
    dashboard: Dashboard,
    opts: WebOptions,
}

/// The metrics port's connections ([`crate::connections`]): at most
/// [`MAX_CONNECTIONS`], the first bytes (or the TLS handshake) within
/// [`HEAD_TIMEOUT`], closed after [`WRITE_TIMEOUT`] without traffic.
pub(crate) const LIMITS: ConnectionLimits = ConnectionLimits {
    max_connections: MAX_CONNECTIONS,
    idle_timeout: WRITE_TIMEOUT,
    preface_timeout: HEAD_TIMEOUT,
};

/// Serves `/metrics` and the dashboard on `listener` (accepted under
/// [`LIMITS`], over TLS with `--metrics-tls`) until the task is dropped.
pub(crate) async fn serve(
    mut listener: Listener,
    metrics: PrometheusHandle,
    engine: Arc<Engine>,
    opts: WebOptions,
) {
    let site = Arc::new(Site {
        metrics,
        dashboard: Dashboard::new(engine.clone()),
        engine,
        opts,
    });
    loop {
        let conn = listener.next().await;
        tokio::spawn(site.clone().handle(conn));
    }
}

/// What the listener reads of a request.
#[derive(Debug, Default, PartialEq, Eq)]
struct Head {
    method: String,
    target: String,
    /// None when absent or given twice.
    host: Option<String>,
    authorization: Option<String>,
}

/// A response.
struct Reply {
    status: &'static str,
    content_type: &'static str,
    /// Further header lines, each ending in CRLF.
    extra: &'static str,
    body: String,
}

impl Reply {
    fn text(status: &'static str, body: &str) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            extra: "",
            body: body.to_owned(),
        }
    }

    fn html(body: String) -> Reply {
        Reply {
            status: "200 OK",
            content_type: "text/html; charset=utf-8",
            extra: "",
            body,
        }
    }
}

impl Site {
    async fn handle<S: AsyncRead + AsyncWrite + Unpin>(self: Arc<Self>, mut socket: S) {
        let Ok(head) = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut socket)).await else {
            return; // too slow: no answer
        };
        let reply = match head {
            Some(head) => self.clone().respond(head).await,
            None => Reply::text("400 Bad Request", "bad request\n"),
        };
        let head = format!(
            "HTTP/1.1 {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n{SECURITY_HEADERS}{}\r\n",
            reply.status,
            reply.content_type,
            reply.body.len(),
            reply.extra
        );
        let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
            socket.write_all(head.as_bytes()).await?;
            socket.write_all(reply.body.as_bytes()).await?;
            socket.shutdown().await
        })
        .await;
    }

    async fn respond(self: Arc<Self>, head: Head) -> Reply {
        if head.method != "GET" {
            let mut r = Reply::text("405 Method Not Allowed", "only GET is served here\n");
            r.extra = "allow: GET\r\n";
            return r;
        }
        let (path, query) = head
            .target
            .split_once('?')
            .map_or((head.target.as_str(), None), |(p, q)| (p, Some(q)));
        let refresh = Refresh::from_query(query);
        if path == "/healthz" {
            return Reply::text("200 OK", "ok\n");
        }
        if path == "/readyz" {
            return match self.opts.readiness.check() {
                Ok(()) => Reply::text("200 OK", "ready\n"),
                Err(why) => Reply::text(
                    "503 Service Unavailable",
                    &format!("not ready: {}\n", why.join("; ")),
                ),
            };
        }
        if path == "/metrics" {
            return Reply {
                status: "200 OK",
                content_type: "text/plain; version=0.0.4",
                extra: "",
                body: crate::metrics::render(&self.metrics, &self.engine),
            };
        }
        let campaign = path.strip_prefix("/campaigns/");
        if path != "/" && campaign.is_none() {
            return Reply::text(
                "404 Not Found",
                "served here: GET /metrics, GET /healthz, GET /readyz, GET / (dashboard), GET /campaigns/ID\n",
            );
        }
        let opts = &self.opts;
        if !head
            .host
            .as_deref()
            .is_some_and(|h| host_allowed(h, opts.listen.ip(), &opts.allowed_hosts))
        {
            return Reply::text(
                "421 Misdirected Request",
                "the dashboard does not answer to this Host (see --dashboard-allowed-hosts)\n",
            );
        }
        match access(&opts.tokens, head.authorization.as_deref()) {
            Access::Granted => {}
            Access::Unauthenticated => {
                let mut r = Reply::text(
                    "401 Unauthorized",
                    "the dashboard needs a read or admin token: as the password of HTTP Basic (any user name), or 'authorization: Bearer <token>'\n",
                );
                r.extra = "www-authenticate: Basic realm=\"offer-bandit\", charset=\"UTF-8\"\r\n";
                return r;
            }
            Access::Forbidden => {
                return Reply::text(
                    "403 Forbidden",
                    "this token may not read the dashboard: it needs a read or admin token\n",
                );
            }
        }
        let Some(id) = campaign else {
            return Reply::html(self.dashboard.index(refresh));
        };
        // The offer-share chart reads the decision log: off the async threads.
        let id = id.to_owned();
        let site = self.clone();
        match tokio::task::spawn_blocking(move || site.dashboard.campaign(&id, refresh)).await {
            Ok(Some(page)) => Reply::html(page),
            Ok(None) => Reply::text("404 Not Found", "no such campaign\n"),
            Err(e) => {
                tracing::error!(error = %e, "drawing a dashboard page failed");
                Reply::text("500 Internal Server Error", "the page failed\n")
            }
        }
    }
}

/// Reads up to the end of the request head; None if it is not one.
async fn read_head<S: AsyncRead + Unpin>(socket: &mut S) -> Option<Head> {
    let mut buf = vec![0u8; MAX_HEAD];
    let mut read = 0;
    loop {
        if read == buf.len() {
            return None;
        }
        let n = socket.read(&mut buf[read..]).await.ok()?;
        if n == 0 {
            return None;
        }
        read += n;
        if let Some(end) = buf[..read].windows(4).position(|w| w == b"\r\n\r\n") {
            return parse_head(std::str::from_utf8(&buf[..end]).ok()?);
        }
    }
}

/// The request line and the two headers that matter here.
fn parse_head(raw: &str) -> Option<Head> {
    let mut lines = raw.split("\r\n");
    let mut request = lines.next()?.split_whitespace();
    let mut head = Head {
        method: request.next()?.to_owned(),
        target: request.next()?.to_owned(),
        ..Head::default()
    };
    let mut hosts = 0;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            head.host = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("authorization") {
            head.authorization = Some(value.to_owned());
        }
    }
    if hosts > 1 {
        head.host = None;
    }
    Some(head)
}

/// The name in a `Host` header (or an allowed-hosts entry): lower case,
/// without the port, the brackets of an IPv6 literal or a trailing dot.
fn host_name(host: &str) -> String {
    let host = host.trim();
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or("", |(ip, _)| ip),
        None => match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        },
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether the pages answer to `host`: localhost, a loopback IP, the IP
/// the listener is bound to (unless it is 0.0.0.0 or ::), or an allowed name.
fn host_allowed(host: &str, listen: IpAddr, allowed: &[String]) -> bool {
    let name = host_name(host);
    if name.is_empty() {
        return false;
    }
    if name == "localhost" {
        return true;
    }
    if let Ok(ip) = name.parse::<IpAddr>()
        && (ip.is_loopback() || (ip == listen && !listen.is_unspecified()))
    {
        return true;
    }
    allowed.iter().any(|a| host_name(a) == name)
}

#[derive(Debug, PartialEq, Eq)]
enum Access {
    Granted,
    /// No credentials, or not a token of this server.
    Unauthenticated,
    /// A token whose role may not read the dashboard.
    Forbidden,
}

/// Whether an `Authorization` header lets its sender read the dashboard.
fn access(tokens: &Tokens, authorization: Option<&str>) -> Access {
    if tokens.is_empty() {
        return Access::Granted;
    }
    match authorization
        .and_then(presented_token)
        .and_then(|t| tokens.role_of(&t))
    {
        None => Access::Unauthenticated,
        Some(Role::Read | Role::Admin) => Access::Granted,
        Some(Role::Decide) => Access::Forbidden,
    }
}

/// The token of `Bearer <token>`, or the password of `Basic <base64 of user:password>`.
fn presented_token(authorization: &str) -> Option<String> {
    let (scheme, credentials) = authorization.trim().split_once(' ')?;
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(credentials.to_owned());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials)
        .ok()?;
    let (_user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some(password.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::GuardConfig;

    #[test]
    fn hosts_are_allowed_by_name_loopback_or_the_listen_ip() {
        let listen: IpAddr = [10, 0, 0, 5].into();
        let allowed = ["Dash.Internal".to_owned(), "[fd00::1]".to_owned()];
        for host in [
            "localhost",
            "LOCALHOST:9464",
            "localhost.",
            "127.0.0.1",
            "127.8.9.10:80",
            "[::1]:9464",
            "10.0.0.5:9464",
            "dash.internal",
            "dash.internal:9464",
            "[fd00::1]:9464",
        ] {
            assert!(host_allowed(host, listen, &allowed), "{host}");
        }
        for host in [
            "",
            "evil.example",
            "localhost.evil.example",
            "dash.internal.evil.example",
            "10.0.0.6",
            "[::1",
            "::1",
        ] {
            assert!(!host_allowed(host, listen, &allowed), "{host}");
        }
        // Listening on every address does not allow every address.
        assert!(!host_allowed("0.0.0.0", [0, 0, 0, 0].into(), &[]));
        assert!(!host_allowed("10.0.0.5", [0, 0, 0, 0].into(), &[]));
    }

    #[test]
    fn heads_are_parsed_and_a_repeated_host_is_dropped() {
        let head =
            parse_head("GET /x?y HTTP/1.1\r\nHost: a:1\r\nAUTHORIZATION:  Bearer t \r\nx: y")
                .expect("a head");
        assert_eq!(head.method, "GET");
        assert_eq!(head.target, "/x?y");
        assert_eq!(head.host.as_deref(), Some("a:1"));
        assert_eq!(head.authorization.as_deref(), Some("Bearer t"));
        let twice = parse_head("GET / HTTP/1.1\r\nhost: a\r\nhost: b").expect("a head");
        assert_eq!(twice.host, None);
        assert_eq!(parse_head("GET"), None);
        assert_eq!(parse_head("GET / HTTP/1.1\r\nno colon"), None);
    }

    #[test]
    fn the_dashboard_takes_bearer_or_basic_read_and_admin_tokens() {
        let (admin, read, decide) = (
            "admin-0123456789abcdef",
            "read-0123456789abcdef",
            "decide-0123456789abcdef",
        );
        let tokens = Tokens::new(&GuardConfig {
            token: Some(admin.into()),
            read_token: Some(read.into()),
            decide_token: Some(decide.into()),
            ..GuardConfig::default()
        });
        let basic = |user: &str, password: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )
        };
        for (auth, want) in [
            (None, Access::Unauthenticated),
            (Some(format!("Bearer {read}")), Access::Granted),
            (Some(format!("bearer {admin}")), Access::Granted),
            (Some(basic("", read)), Access::Granted),
            (Some(basic("ops", admin)), Access::Granted),
            (Some(format!("Bearer {decide}")), Access::Forbidden),
            (Some(basic("ops", decide)), Access::Forbidden),
            (Some(basic(read, "")), Access::Unauthenticated),
            (Some(format!("Basic {read}")), Access::Unauthenticated),
            (Some(read.to_owned()), Access::Unauthenticated),
            (Some("Digest x".to_owned()), Access::Unauthenticated),
        ] {
            assert_eq!(access(&tokens, auth.as_deref()), want, "{auth:?}");
        }
        assert_eq!(access(&Tokens::default(), None), Access::Granted);
    }
}
