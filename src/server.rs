//! Wiring: storage, engine, gRPC services (with health and reflection), the
//! expiry sweep, and graceful shutdown.

use std::{future::Future, io::Write, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;

use crate::{
    config::FileCampaign,
    connections::ConnectionLimits,
    customer::CustomerKey,
    decision_id::IdKeys,
    engine::{Engine, EngineOptions},
    guard::{GuardConfig, GuardLayer},
    proto::{
        self, campaign_admin_server::CampaignAdminServer, offer_service_server::OfferServiceServer,
    },
    service::{Api, Limits},
    store::{Storage, Store},
};

/// Most decisions finalized per sweep step.
const SWEEP_BATCH: usize = 10_000;

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Listen address.
    pub listen: SocketAddr,
    /// Database directory.
    pub data_dir: PathBuf,
    /// Campaigns to serve.
    pub campaigns: Vec<FileCampaign>,
    /// Engine options.
    pub engine: EngineOptions,
    /// Expiry sweep period.
    pub sweep_interval: Duration,
    /// Request limits.
    pub limits: Limits,
    /// How long shutdown waits for in-flight requests and open connections.
    pub shutdown_grace: Duration,
    /// Where to serve Prometheus `/metrics` (None: not served).
    pub metrics_listen: Option<SocketAddr>,
    /// Where to serve the JSON/HTTP gateway ([`crate::gateway`]; None: not served).
    pub http_listen: Option<SocketAddr>,
    /// sled page cache, bytes.
    pub cache_bytes: u64,
    /// The key customer ids are hashed under (None: the store's own).
    pub customer_key: Option<CustomerKey>,
    /// Resolved decision records are deleted this long after their window
    /// (None: kept).
    pub retention: Option<Duration>,
    /// Authentication, in-flight limit and deadlines.
    pub guard: GuardConfig,
    /// `Host` names the dashboard answers to besides loopback and the
    /// metrics address.
    pub dashboard_allowed_hosts: Vec<String>,
    /// PEM certificate chain and key (None: plaintext).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// How often the certificate and key are reread, to take up a renewed
    /// pair (zero: never).
    pub tls_reload_interval: Duration,
    /// Whether the metrics port (metrics, probes, dashboard) speaks TLS too.
    pub metrics_tls: bool,
    /// Largest request message, bytes.
    pub max_message_bytes: usize,
    /// Configured decision-id keys (the first signs; key 0, derived from
    /// the customer key, always verifies).
    pub decision_id_keys: Vec<(u8, [u8; 32])>,
    /// Most concurrent HTTP/2 streams on one connection.
    pub max_streams_per_connection: u32,
    /// Most open gRPC connections.
    pub max_connections: usize,
    /// A connection without traffic this long is closed.
    pub idle_timeout: Duration,
    /// Writes are refused while the data directory's disk has less free.
    pub min_free_bytes: u64,
    /// Leave transparent huge pages to the system's setting (false: the
    /// server turns them off for its process, Linux; see
    /// [`crate::process::disable_transparent_huge_pages`]).
    pub transparent_huge_pages: bool,
}

impl ServeOptions {
    /// Defaults for `campaigns` served from `data_dir` on `listen`.
    pub fn new(listen: SocketAddr, data_dir: PathBuf, campaigns: Vec<FileCampaign>) -> Self {
        ServeOptions {
            listen,
            data_dir,
            campaigns,
            engine: EngineOptions::default(),
            sweep_interval: Duration::from_secs(1),
            limits: Limits::default(),
            shutdown_grace: Duration::from_secs(10),
            metrics_listen: None,
            http_listen: None,
            cache_bytes: crate::store::DEFAULT_CACHE_BYTES,
            customer_key: None,
            retention: Some(Duration::from_secs(90 * 86_400)),
            guard: GuardConfig::default(),
            dashboard_allowed_hosts: Vec::new(),
            tls: None,
            tls_reload_interval: Duration::from_secs(60),
            metrics_tls: false,
            max_message_bytes: 4 << 20,
            decision_id_keys: Vec::new(),
            max_streams_per_connection: 128,
            max_connections: 4096,
            idle_timeout: Duration::from_secs(300),
            min_free_bytes: 64 << 20,
            transparent_huge_pages: false,
        }
    }
}

/// Serves until `shutdown` resolves, then drains in-flight requests and flushes.
pub async fn serve(
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    opts.guard.validate()?;
    if !opts.transparent_huge_pages {
        // Before the store and its buffers are allocated.
        crate::process::disable_transparent_huge_pages();
    }
    let data_dir = opts.data_dir.clone();
    let cache_bytes = opts.cache_bytes;
    // The one place that picks the backend; the rest sees `dyn Storage`.
    let store: Arc<dyn Storage> = Arc::new(
        tokio::task::spawn_blocking(move || Store::open_with_cache(&data_dir, cache_bytes))
            .await?
            .with_context(|| format!("opening the store in {}", opts.data_dir.display()))?,
    );
    let campaigns = opts.campaigns.clone();
    let engine_opts = opts.engine;
    let configured_key = opts.customer_key.clone();
    let configured_id_keys = opts.decision_id_keys.clone();
    let engine = tokio::task::spawn_blocking(move || {
        let key = store.customer_key(configured_key)?;
        tracing::info!(fingerprint = %key.fingerprint(), "customer ids are hashed under this key");
        let verifying = std::iter::once(0)
            .chain(configured_id_keys.iter().map(|(id, _)| *id))
            .map(|id| id.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let id_keys = IdKeys::derived(key.bytes())
            .with_configured(configured_id_keys)
            .map_err(|e| anyhow::anyhow!(e))?;
        tracing::info!(signing_key = id_keys.signing_id(), verifying_keys = %verifying, "decision ids are signed with key {}", id_keys.signing_id());
        Ok::<_, anyhow::Error>(Engine::open(store, campaigns, engine_opts, key, id_keys)?)
    })
    .await?
    .context("loading the store (nothing was changed; fix or move the data directory)")?;
    let engine = Arc::new(engine);
    let scratch = opts.data_dir.join(BACKUP_SCRATCH);
    clear_scratch(&scratch);

    let readiness = Arc::new(crate::readiness::Readiness::new());
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<OfferServiceServer<Api>>().await;
    health.set_serving::<CampaignAdminServer<Api>>().await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("binding {}", opts.listen))?;
    let addr = listener.local_addr()?;
    // Every field a JSON value in --log-format json: numbers, booleans and
    // plain strings, never a Rust debug string.
    let duration = |d: Duration| humantime::format_duration(d).to_string();
    tracing::info!(
        %addr,
        data_dir = %opts.data_dir.display(),
        campaigns = %opts.campaigns.iter().map(|c| c.config.id.as_str()).collect::<Vec<_>>().join(","),
        durable_decisions = opts.engine.durable_decisions,
        checkpoint_interval = %duration(opts.engine.checkpoint_interval),
        learn_interval = %duration(opts.engine.learn_interval),
        writer_nice = opts.engine.writer_niceness,
        transparent_huge_pages = opts.transparent_huge_pages,
        sweep_interval = %duration(opts.sweep_interval),
        retention = %opts.retention.map_or_else(|| "never".to_owned(), duration),
        tls = opts.tls.is_some(),
        auth = opts.guard.token.is_some(),
        read_token = opts.guard.read_token.is_some(),
        decide_token = opts.guard.decide_token.is_some(),
        dashboard_allowed_hosts = %opts.dashboard_allowed_hosts.join(","),
        auth_scope = match opts.guard.scope {
            crate::guard::AuthScope::Admin => "admin",
            crate::guard::AuthScope::All => "all",
        },
        max_in_flight = opts.guard.max_in_flight,
        request_timeout = %duration(opts.guard.request_timeout),
        limits.max_features = opts.limits.max_features,
        limits.max_feature_name = opts.limits.max_feature_name,
        limits.max_category = opts.limits.max_category,
        limits.max_candidates = opts.limits.max_candidates,
        limits.max_key = opts.limits.max_key,
        limits.max_stream = opts.limits.max_stream,
        max_offers = opts.engine.max_offers,
        cache_bytes = opts.cache_bytes,
        "serving"
    );
    let guard = GuardLayer::new(&opts.guard);
    let mut out = std::io::stdout();
    // TLS is ours to do ([`crate::connections::accept`]), not tonic's: the
    // stream h2 writes to then says it takes no vectored writes, which
    // keeps each reply under 1 KiB in one TLS record with its trailers.
    // The gateway gets the same certificate, offering HTTP/1.1; a renewed
    // certificate is taken up without a restart.
    let identity = match &opts.tls {
        Some((cert, key)) => Some(crate::tls::Identity::load(cert, key)?),
        None => None,
    };
    let (tls, gateway_tls) = match &identity {
        Some(i) => (Some(i.grpc.clone()), Some(i.http.clone())),
        None => (None, None),
    };
    let metrics_tls = gateway_tls.clone().filter(|_| opts.metrics_tls);
    // Both ports' connections: capped, closed when silent, TLS when set.
    let limits = ConnectionLimits {
        max_connections: opts.max_connections,
        idle_timeout: opts.idle_timeout,
        preface_timeout: crate::connections::PREFACE_TIMEOUT.min(opts.idle_timeout),
    };
    let metrics_task = match opts.metrics_listen {
        Some(m) => {
            let handle = crate::metrics::install()?;
            let listener = tokio::net::TcpListener::bind(m)
                .await
                .with_context(|| format!("binding the metrics endpoint {m}"))?;
            let maddr = listener.local_addr()?;
            tracing::info!(%maddr, "serving /metrics");
            writeln!(out, "offer-bandit metrics on {maddr}")?;
            let listener = crate::connections::Listener::new(
                listener,
                crate::web::LIMITS,
                metrics_tls,
                "metrics",
            )?;
            Some(tokio::spawn(crate::web::serve(
                listener,
                handle,
                engine.clone(),
                crate::web::WebOptions {
                    tokens: guard.tokens(),
                    allowed_hosts: opts.dashboard_allowed_hosts.clone(),
                    listen: maddr,
                    readiness: readiness.clone(),
                },
            )))
        }
        None => None,
    };
    if let Some(identity) = &identity {
        identity.publish_expiry();
    }
    let gateway_listener = match opts.http_listen {
        Some(h) => {
            let listener = tokio::net::TcpListener::bind(h)
                .await
                .with_context(|| format!("binding the JSON/HTTP gateway {h}"))?;
            let gaddr = listener.local_addr()?;
            // HTTP/1.1 has no pings: a request still running must not be cut
            // as idle, so the gateway waits at least the request timeout.
            let limits = ConnectionLimits {
                idle_timeout: limits
                    .idle_timeout
                    .max(opts.guard.request_timeout + Duration::from_secs(1)),
                ..limits
            };
            let listener = crate::connections::Listener::new(
                listener,
                limits,
                gateway_tls.clone(),
                "gateway",
            )?;
            tracing::info!(%gaddr, "serving the JSON/HTTP gateway");
            writeln!(out, "offer-bandit gateway on {gaddr}")?;
            Some(listener)
        }
        None => None,
    };
    // Machine-readable line for scripts and tests that bind port 0.
    writeln!(out, "offer-bandit listening on {addr}")?;
    out.flush()?;

    let watcher = tokio::spawn(storage_watch(
        engine.clone(),
        health.clone(),
        readiness.clone(),
        opts.data_dir.clone(),
        opts.min_free_bytes,
    ));
    let sweeper = tokio::spawn(sweep_loop(
        engine.clone(),
        opts.sweep_interval,
        opts.retention,
    ));
    let tls_reloader = identity
        .filter(|_| !opts.tls_reload_interval.is_zero())
        .map(|i| tokio::spawn(i.keep_current(opts.tls_reload_interval)));
    let max_msg = opts.max_message_bytes;
    let api = Api::new(engine.clone(), opts.limits)
        .with_permits(guard.permits())
        .with_scratch(scratch);
    let (gateway_stop, gateway_stopped) = tokio::sync::oneshot::channel::<()>();
    let gateway_task = gateway_listener.map(|listener| {
        tokio::spawn(crate::gateway::serve(
            listener,
            crate::gateway::Gateway {
                api: api.clone(),
                tokens: guard.tokens(),
                scope: opts.guard.scope,
                permits: guard.permits(),
                timeout: opts.guard.request_timeout,
                max_body: max_msg,
            },
            async {
                let _ = gateway_stopped.await;
            },
        ))
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let builder = tonic::transport::Server::builder()
        // Streams per connection: one connection cannot open more requests
        // than this, whatever it sends.
        .max_concurrent_streams(opts.max_streams_per_connection)
        // Pings: a peer that answers them is never idle (a long Backup, a
        // checkout service's kept-alive connection); one that does not is
        // closed after --idle-timeout.
        .http2_keepalive_interval(Some(
            (opts.idle_timeout / 2).clamp(Duration::from_millis(500), Duration::from_secs(60)),
        ));
    let server = builder
        .trace_fn(|req| tracing::debug_span!("rpc", method = %req.uri().path()))
        .layer(crate::metrics::RpcMetricsLayer)
        .layer(guard.clone())
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            OfferServiceServer::new(api.clone())
                .max_decoding_message_size(max_msg)
                .max_encoding_message_size(max_msg),
        )
        .add_service(
            CampaignAdminServer::new(api)
                .max_decoding_message_size(max_msg)
                .max_encoding_message_size(64 << 20),
        )
        .serve_with_incoming_shutdown(
            crate::connections::accept(listener, limits, tls, "grpc"),
            async {
                let _ = stop_rx.await;
            },
        );
    tokio::pin!(server);
    let result = tokio::select! {
        r = &mut server => r,
        () = shutdown => {
            // The storage watch must not set SERVING again while draining.
            watcher.abort();
            readiness.set_stopping();
            health.set_not_serving::<OfferServiceServer<Api>>().await;
            let _ = stop_tx.send(());
            let _ = gateway_stop.send(());
            // Idle keep-alive connections (every checkout service holds
            // one) would keep a graceful shutdown waiting for the whole
            // grace period: stop once no request is in flight.
            // Two quiet checks 20 ms apart, so that a request whose headers
            // were still being read is not cut.
            let drained = async {
                let mut quiet = 0;
                while quiet < 2 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    quiet = if guard.in_flight() == 0 { quiet + 1 } else { 0 };
                }
            };
            tokio::select! {
                r = &mut server => r,
                () = drained => {
                    tracing::info!("no requests in flight; closing idle connections");
                    Ok(())
                }
                () = tokio::time::sleep(opts.shutdown_grace) => {
                    tracing::warn!(grace = %humantime::format_duration(opts.shutdown_grace), in_flight = guard.in_flight(), "requests still running after the grace period; closing them");
                    Ok(())
                }
            }
        }
    };
    sweeper.abort();
    watcher.abort();
    if let Some(t) = &tls_reloader {
        t.abort();
    }
    if let Some(t) = metrics_task {
        t.abort();
    }
    if let Some(t) = gateway_task {
        t.abort();
    }
    // A writer stuck inside the store (a full disk) must not keep the
    // process alive: what was acknowledged was flushed before its OK.
    match tokio::time::timeout(FINAL_FLUSH_LIMIT, engine.flush()).await {
        Ok(r) => r.context("final flush")?,
        Err(_) => anyhow::bail!(
            "the final flush did not finish within {FINAL_FLUSH_LIMIT:?} (is the disk full or failing?); exiting without it. Every acknowledged redemption was flushed before its OK; decisions of the last 500 ms may be lost"
        ),
    }
    tracing::info!("stopped; all acknowledged state is on disk");
    result.context("gRPC server")
}

/// Longest the final flush at shutdown may take before the process exits
/// without it.
const FINAL_FLUSH_LIMIT: Duration = Duration::from_secs(20);

/// Free bytes for unprivileged writers on the filesystem holding `dir`.
pub fn free_bytes(dir: &std::path::Path) -> std::io::Result<u64> {
    let s = rustix::fs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Every half second: the disk's free space against the watermark, and the
/// storage's health into the gRPC health service (NOT_SERVING while writes
/// would fail, so that a load balancer sends traffic elsewhere), and the
/// same verdict into `readiness` (what `/readyz` answers).
async fn storage_watch(
    engine: Arc<Engine>,
    health: tonic_health::server::HealthReporter,
    readiness: Arc<crate::readiness::Readiness>,
    data_dir: PathBuf,
    min_free: u64,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut serving = true;
    loop {
        tick.tick().await;
        if min_free > 0 {
            let dir = data_dir.clone();
            match tokio::task::spawn_blocking(move || free_bytes(&dir)).await {
                Ok(Ok(free)) => {
                    engine.set_free_space(free, min_free);
                    metrics::gauge!("offer_bandit_data_dir_free_bytes").set(free as f64);
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "cannot measure free disk space"),
                Err(_) => {}
            }
        }
        let problem = engine.storage_problem();
        if problem.is_some() != serving {
            continue;
        }
        match &problem {
            Some(why) => tracing::error!(reason = %why, "health: NOT_SERVING"),
            None => tracing::warn!("health: SERVING again"),
        }
        serving = problem.is_none();
        readiness.set_storage_problem(problem);
        let status = if serving {
            tonic_health::ServingStatus::Serving
        } else {
            tonic_health::ServingStatus::NotServing
        };
        for service in [
            <OfferServiceServer<Api> as tonic::server::NamedService>::NAME,
            <CampaignAdminServer<Api> as tonic::server::NamedService>::NAME,
            "",
        ] {
            health.set_service_status(service, status).await;
        }
    }
}

/// Under the data directory: backups being streamed.
const BACKUP_SCRATCH: &str = "backup-scratch";

/// Removes backups left by a process that was killed while streaming them.
fn clear_scratch(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        match std::fs::remove_file(e.path()) {
            Ok(()) => {
                tracing::info!(file = %e.path().display(), "removed a backup left by an earlier run")
            }
            Err(err) => {
                tracing::warn!(file = %e.path().display(), error = %err, "cannot remove a stale backup file")
            }
        }
    }
}

async fn sweep_loop(engine: Arc<Engine>, every: Duration, retention: Option<Duration>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let swept = loop {
            match engine.sweep(engine.now_ms(), SWEEP_BATCH).await {
                Ok(n) if n >= SWEEP_BATCH => continue,
                Ok(_) => break true,
                Err(e) => {
                    tracing::warn!(error = %e, "expiry sweep failed; retrying next tick");
                    break false;
                }
            }
        };
        // Pruning after a complete sweep: a record past retention has had
        // its window counted into the report's sums before it goes.
        if let Some(keep) = retention.filter(|_| swept) {
            let before = engine
                .now_ms()
                .saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
            match engine.prune(before, SWEEP_BATCH).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(decisions = n, "pruned decision records past retention"),
                Err(e) => tracing::warn!(error = %e, "pruning failed; retrying next tick"),
            }
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled, so a signal that arrives
/// while the server is still starting is not lost (nor kills the process).
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            let wait = |s: std::io::Result<tokio::signal::unix::Signal>, name: &'static str| async move {
                match s {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for {name}");
                        std::future::pending::<()>().await;
                    }
                }
            };
            tokio::select! {
                () = wait(term, "SIGTERM") => {},
                () = wait(int, "SIGINT") => {},
            }
            tracing::info!("shutdown requested: finishing in-flight requests");
        }
    }
    #[cfg(not(unix))]
    async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        tracing::info!("shutdown requested: finishing in-flight requests");
    }
}
