//! Prometheus metrics: the recorder, and a tower layer that counts and times
//! every RPC by method and status. [`crate::web`] serves `/metrics`.
//!
//! Series:
//! - `offer_bandit_rpc_requests_total{method, code}` and
//!   `offer_bandit_rpc_duration_seconds{method}` (histogram); `method` is
//!   one of the served methods or "other", so that no request can add series;
//! - `offer_bandit_decisions_total{campaign, offer}` (offer shares);
//! - `offer_bandit_fallbacks_total{campaign}` (RecordFallback);
//! - `offer_bandit_decisions_pending{campaign}` (gauge, at scrape time);
//! - `offer_bandit_redemptions_applied_total{campaign}`,
//!   `offer_bandit_late_redemptions_total`, `offer_bandit_expiries_total`;
//! - `offer_bandit_flush_duration_seconds` (histogram);
//! - `offer_bandit_build_info{version, schema}` (always 1) and the
//!   standard `process_*` series ([`crate::process`]).
//!
//! Every series has a `# HELP` line: [`SERIES`] describes each one at
//! install (a unit test checks that every series named in `src/` is there).

use std::{
    collections::HashSet,
    future::Future,
    pin::Pin,
    sync::LazyLock,
    task::{Context, Poll},
    time::Instant,
};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use prost::Message as _;

use crate::engine::Engine;

/// Latency buckets in seconds: 50 µs to 2.5 s.
const BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    2.5,
];

/// Size buckets (write groups): 1 to 4096.
const SIZE_BUCKETS: [f64; 13] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];

/// The kind of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution.
    Histogram,
}

/// Every series this crate records, with its kind and `# HELP` text.
pub(crate) const SERIES: &[(&str, Kind, &str)] = &[
    (
        "offer_bandit_build_info",
        Kind::Gauge,
        "Always 1; the labels name the running build and the store schema it reads and writes.",
    ),
    (
        "offer_bandit_rpc_requests_total",
        Kind::Counter,
        "gRPC requests by method and status code (\"other\": a method this server does not serve).",
    ),
    (
        "offer_bandit_rpc_duration_seconds",
        Kind::Histogram,
        "Time to answer a gRPC request, by method, in seconds.",
    ),
    (
        "offer_bandit_decisions_total",
        Kind::Counter,
        "Decisions made, by campaign and chosen offer.",
    ),
    (
        "offer_bandit_write_group_commands",
        Kind::Histogram,
        "Commands (decisions, redemptions, ...) the writer committed together in one group: larger groups, fewer writes per decision.",
    ),
    (
        "offer_bandit_write_group_writes",
        Kind::Histogram,
        "Store writes (records, blocks, counters) in one committed group.",
    ),
    (
        "offer_bandit_decisions_unrecorded_total",
        Kind::Counter,
        "Decisions answered (SelectOffer does not wait for the write) whose write then failed; any is an incident: the server also stops taking work.",
    ),
    (
        "offer_bandit_fallbacks_total",
        Kind::Counter,
        "Fallback impressions logged with RecordFallback (what callers showed while offer-bandit was down or slow), by campaign.",
    ),
    (
        "offer_bandit_decisions_pending",
        Kind::Gauge,
        "Decisions still inside their reward window, by campaign (at scrape time).",
    ),
    (
        "offer_bandit_redemptions_applied_total",
        Kind::Counter,
        "Redemptions applied to the model, by campaign.",
    ),
    (
        "offer_bandit_late_redemptions_total",
        Kind::Counter,
        "Redemptions refused because their decision's reward window had closed.",
    ),
    (
        "offer_bandit_ignored_features_total",
        Kind::Counter,
        "SelectOffer context keys the campaign does not declare (typos show here), as replies named them in ignored_features or --strict-context refused them, by campaign.",
    ),
    (
        "offer_bandit_redemptions_not_found_total",
        Kind::Counter,
        "Redemptions of unknown, expired-and-pruned or forged decision ids.",
    ),
    (
        "offer_bandit_expiries_total",
        Kind::Counter,
        "Decisions finalized unredeemed at the end of their reward window.",
    ),
    (
        "offer_bandit_flush_duration_seconds",
        Kind::Histogram,
        "Time to flush the store to disk, in seconds.",
    ),
    (
        "offer_bandit_config_revisions_total",
        Kind::Counter,
        "Campaign config revisions applied (file or live changes).",
    ),
    (
        "offer_bandit_data_dir_free_bytes",
        Kind::Gauge,
        "Free bytes for the server on the data directory's filesystem.",
    ),
    (
        "offer_bandit_accept_errors_total",
        Kind::Counter,
        "Failed accepts of connections (out of file descriptors, say), by port (grpc, gateway, metrics).",
    ),
    (
        "offer_bandit_connections_refused_total",
        Kind::Counter,
        "Connections closed at once because the port's cap was reached (--max-connections; 64 on the metrics port), by port (grpc, gateway, metrics).",
    ),
    (
        "offer_bandit_tls_handshake_failures_total",
        Kind::Counter,
        "TLS handshakes that failed or did not finish in time, by port (grpc, gateway, metrics).",
    ),
    (
        "offer_bandit_tls_certificate_expiry_timestamp_seconds",
        Kind::Gauge,
        "When the TLS certificate served expires (Unix seconds); alert well before.",
    ),
    (
        "offer_bandit_tls_reloads_total",
        Kind::Counter,
        "Changed TLS certificate files taken up (result=ok), refused as unusable (result=refused), or unreadable (result=unreadable).",
    ),
];

/// Installs the process-wide recorder, describes every series and sets
/// `offer_bandit_build_info`.
pub(crate) fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&BUCKETS)?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Prefix("offer_bandit_write_group_".into()),
            &SIZE_BUCKETS,
        )?
        .install_recorder()?;
    for &(name, kind, help) in SERIES {
        match kind {
            Kind::Counter => metrics::describe_counter!(name, help),
            Kind::Gauge => metrics::describe_gauge!(name, help),
            Kind::Histogram => metrics::describe_histogram!(name, help),
        }
    }
    metrics::gauge!(
        "offer_bandit_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "schema" => crate::store::SCHEMA_VERSION.to_string()
    )
    .set(1.0);
    Ok(handle)
}

/// The text of `/metrics` (served by [`crate::web`]), the pending gauges
/// set first and the process's series last.
pub(crate) fn render(handle: &PrometheusHandle, engine: &Engine) -> String {
    record_pending(engine);
    let mut text = handle.render();
    crate::process::render(&mut text);
    text
}

fn record_pending(engine: &Engine) {
    for c in engine.campaigns() {
        if let Ok(stats) = engine.stats(&c.config.id) {
            let pending: u64 = stats.offers.iter().map(|o| o.counts.pending()).sum();
            metrics::gauge!("offer_bandit_decisions_pending", "campaign" => c.config.id.clone())
                .set(pending as f64);
        }
    }
}

/// Counts and times every RPC (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RpcMetricsLayer;

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics { inner }
    }
}

/// The service [`RpcMetricsLayer`] wraps around the gRPC routes.
#[derive(Debug, Clone)]
pub(crate) struct RpcMetrics<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for RpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // Only the methods this server serves become labels: any other path
        // is "other", so that random paths cannot grow the registry.
        let method = method_label(req.uri().path());
        let started = Instant::now();
        let future = self.inner.call(req);
        Box::pin(async move {
            let result = future.await;
            // Errors of unary calls arrive as a "trailers-only" response whose
            // headers carry grpc-status; a successful unary call has none yet.
            let code = match &result {
                Ok(resp) => code_label(resp.headers().get("grpc-status")),
                Err(_) => "transport",
            };
            metrics::counter!("offer_bandit_rpc_requests_total", "method" => method, "code" => code)
                .increment(1);
            metrics::histogram!("offer_bandit_rpc_duration_seconds", "method" => method)
                .record(started.elapsed().as_secs_f64());
            result
        })
    }
}

/// Request paths ("/package.Service/Method") of every method this server
/// serves, read from the descriptor sets of its services: ours, health and
/// both versions of reflection.
static SERVED_METHODS: LazyLock<HashSet<String>> = LazyLock::new(|| {
    [
        crate::proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ]
    .into_iter()
    .flat_map(method_paths)
    .collect()
});

/// The request paths of the methods a descriptor set declares.
pub(crate) fn method_paths(encoded: &[u8]) -> Vec<String> {
    let Ok(set) = prost_types::FileDescriptorSet::decode(encoded) else {
        tracing::error!(
            "a built-in descriptor set does not decode; its methods count as \"other\""
        );
        return Vec::new();
    };
    let mut paths = Vec::new();
    for file in &set.file {
        let package = file.package();
        for service in &file.service {
            for method in &service.method {
                paths.push(format!("/{package}.{}/{}", service.name(), method.name()));
            }
        }
    }
    paths
}

/// The `method` label of a request path: the path itself for a served
/// method, "other" for anything else.
pub(crate) fn method_label(path: &str) -> &'static str {
    let served: &'static HashSet<String> = &SERVED_METHODS;
    served.get(path).map_or("other", String::as_str)
}

/// The `code` label: a gRPC status code (0 to 16) from the response's
/// headers, "0" when they have none (the code then comes in the trailers).
fn code_label(status: Option<&http::HeaderValue>) -> &'static str {
    const CODES: [&str; 17] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    ];
    match status {
        None => "0",
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .and_then(|c| CODES.get(c).copied())
            .unwrap_or("other"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_served_methods_are_labels() {
        for path in [
            "/offerbandit.v1.OfferService/SelectOffer",
            "/offerbandit.v1.OfferService/RecordRedemptions",
            "/offerbandit.v1.CampaignAdmin/ListCampaigns",
            "/offerbandit.v1.CampaignAdmin/Backup",
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            assert_eq!(method_label(path), path);
        }
        for path in [
            "/offerbandit.v1.X",
            "/offerbandit.v1.OfferService/Nope",
            "/offerbandit.v1.OfferService/SelectOffer/",
            "/offerbandit.v1.CampaignAdminX/ListCampaigns",
            "/grpc.health.v1.Health/Nope",
            "/",
        ] {
            assert_eq!(method_label(path), "other", "{path}");
        }
        // 4 OfferService, 12 CampaignAdmin, 2 health, 1 per reflection version.
        assert_eq!(
            SERVED_METHODS.len(),
            4 + 12 + 2 + 2,
            "{:?}",
            *SERVED_METHODS
        );
    }

    /// Every `counter!`/`gauge!`/`histogram!` in `src/` names a series
    /// described in [`SERIES`], with the matching kind.
    #[test]
    fn every_series_in_the_source_is_described() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![src];
        let mut found = 0;
        while let Some(path) = files.pop() {
            if path.is_dir() {
                for e in std::fs::read_dir(&path).expect("read src") {
                    files.push(e.expect("entry").path());
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read");
            // Production code only (this test names the macros too).
            let text = text.split("#[cfg(test)]").next().unwrap_or_default();
            for (macro_name, kind) in [
                ("counter!(", Kind::Counter),
                ("gauge!(", Kind::Gauge),
                ("histogram!(", Kind::Histogram),
            ] {
                for (at, _) in text.match_indices(macro_name) {
                    if text[..at].ends_with("describe_") {
                        continue;
                    }
                    let rest = text[at + macro_name.len()..].trim_start();
                    let Some(rest) = rest.strip_prefix('"') else {
                        continue; // `name` in the describe loop above
                    };
                    let name = rest.split('"').next().expect("a literal");
                    found += 1;
                    assert!(
                        SERIES.iter().any(|&(n, k, _)| n == name && k == kind),
                        "{name} ({kind:?}, in {}) is not described in metrics::SERIES",
                        path.display()
                    );
                }
            }
        }
        assert!(found >= SERIES.len(), "found only {found} series in src/");
    }

    #[test]
    fn status_codes_are_bounded() {
        let v = |s: &str| http::HeaderValue::from_str(s).ok();
        assert_eq!(code_label(None), "0");
        assert_eq!(code_label(v("5").as_ref()), "5");
        assert_eq!(code_label(v("16").as_ref()), "16");
        assert_eq!(code_label(v("17").as_ref()), "other");
        assert_eq!(code_label(v("x").as_ref()), "other");
    }
}
