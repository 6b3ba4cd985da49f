//! Thin gRPC handlers: validate the request, call the engine, convert the reply.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use tokio::sync::Semaphore;
use tonic::{Request, Response, Status, Streaming};

use crate::{
    config::valid_id,
    context::{Context, FeatureValue},
    decision::now_ms,
    decision_id::IdError,
    engine::{CampaignStats, Engine, Redemption, SelectRequest},
    error::Error,
    proto::{
        self, campaign_admin_server::CampaignAdmin, feature_value::Kind,
        offer_service_server::OfferService,
    },
};

/// Size limits on requests. Exceeding one is INVALID_ARGUMENT (or
/// RESOURCE_EXHAUSTED for a stream that is too long), never a crash.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Features per context.
    pub max_features: usize,
    /// Bytes per feature name.
    pub max_feature_name: usize,
    /// Bytes per category value.
    pub max_category: usize,
    /// Candidate offers per request.
    pub max_candidates: usize,
    /// Bytes per customer id and request id.
    pub max_key: usize,
    /// Redemptions per RecordRedemptions stream.
    pub max_stream: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_features: 64,
            max_feature_name: 64,
            max_category: 256,
            max_candidates: 256,
            max_key: 128,
            max_stream: 50_000,
        }
    }
}

/// Implements `OfferService` and `CampaignAdmin`.
#[derive(Debug, Clone)]
pub struct Api {
    engine: Arc<Engine>,
    limits: Limits,
    /// The in-flight permits of [`crate::guard`]: a RecordRedemptions
    /// stream takes one only once its messages are in (a stream that sends
    /// nothing holds none).
    permits: Option<Arc<Semaphore>>,
    not_found: Arc<NotFoundWatch>,
    /// Where a backup is written before it is streamed (the data
    /// directory's `backup-scratch/`; None: the system's temp directory).
    scratch: Option<std::path::PathBuf>,
    /// One backup at a time: each is a full copy of the store on disk.
    backups: Arc<Semaphore>,
}

/// A streamed reply whose reader takes longer than this to accept the next
/// message is ended (a stalled reader would hold a backup file or an
/// export's buffers forever).
const STALLED_READER: std::time::Duration = std::time::Duration::from_secs(60);

/// Sends `item` on `tx` from a blocking thread, waiting at most
/// [`STALLED_READER`] for room. False when the reader is gone or stalled.
fn send_or_give_up<T>(tx: &tokio::sync::mpsc::Sender<T>, item: T, what: &str) -> bool {
    let handle = tokio::runtime::Handle::current();
    match handle.block_on(tx.send_timeout(item, STALLED_READER)) {
        Ok(()) => true,
        Err(tokio::sync::mpsc::error::SendTimeoutError::Timeout(_)) => {
            tracing::warn!(
                stalled_for = ?STALLED_READER,
                "{what}: the reader stopped reading; ending the stream"
            );
            false
        }
        Err(tokio::sync::mpsc::error::SendTimeoutError::Closed(_)) => false,
    }
}

/// Counts RecordRedemption answers of NOT_FOUND and logs a burst of them
/// (someone guessing decision ids, or a pipeline sending another server's).
#[derive(Debug, Default)]
struct NotFoundWatch {
    /// The current 10-second window (Unix ms / 10,000) and its count, packed
    /// as window << 24 | count.
    window: AtomicU64,
}

/// NOT_FOUND redemptions in one 10-second window that make a burst.
const NOT_FOUND_BURST: u64 = 100;

impl NotFoundWatch {
    fn record(&self, n: u64, peer: Option<std::net::SocketAddr>) {
        if n == 0 {
            return;
        }
        metrics::counter!("offer_bandit_redemptions_not_found_total").increment(n);
        let window = (now_ms() / 10_000) as u64;
        let mut seen = 0;
        let _ = self
            .window
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |packed| {
                let count = if packed >> 24 == window {
                    packed & 0xff_ffff
                } else {
                    0
                };
                seen = count;
                Some(window << 24 | (count + n).min(0xff_ffff))
            });
        // Once per window, when the count crosses the threshold.
        if seen < NOT_FOUND_BURST && seen + n >= NOT_FOUND_BURST {
            tracing::warn!(
                not_found = seen + n,
                window = "10s",
                peer = %peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string()),
                "a burst of RecordRedemption answers of NOT_FOUND: a client may be guessing decision ids, or sending another server's"
            );
        }
    }
}

impl Api {
    /// Handlers over an engine.
    pub fn new(engine: Arc<Engine>, limits: Limits) -> Self {
        Api {
            engine,
            limits,
            permits: None,
            not_found: Arc::default(),
            scratch: None,
            backups: Arc::new(Semaphore::new(1)),
        }
    }

    /// Writes backups under `dir` (created if missing) before streaming
    /// them.
    pub fn with_scratch(mut self, dir: std::path::PathBuf) -> Self {
        self.scratch = Some(dir);
        self
    }

    /// Shares the guard's in-flight permits (see [`Api::permits`]).
    pub fn with_permits(mut self, permits: Arc<Semaphore>) -> Self {
        self.permits = Some(permits);
        self
    }

    fn select_request(&self, r: proto::SelectOfferRequest) -> Result<SelectRequest, Error> {
        validate_select(&self.limits, r)
    }

    fn redemption(&self, r: proto::RecordRedemptionRequest) -> Result<Redemption, Error> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if r.decision_id.is_empty() {
            return bad("decision_id is required: pass the id SelectOffer returned".into());
        }
        let decision_id = match self.engine.id_keys().decode(&r.decision_id) {
            Ok(id) => id,
            Err(e @ IdError::Malformed) => return bad(e.to_string()),
            Err(IdError::Unknown) => return Err(Error::unknown_decision()),
        };
        if !r.offer_id.is_empty() && !valid_id(&r.offer_id) {
            return bad(format!(
                "offer_id '{}' is not an offer id",
                truncate(&r.offer_id)
            ));
        }
        if let Some(v) = r.value
            && (!v.is_finite() || !(0.0..=MAX_VALUE).contains(&v))
        {
            return bad(format!(
                "value is {v}; it must be a number from 0 to {}",
                MAX_VALUE as u64
            ));
        }
        Ok(Redemption {
            decision_id,
            offer_id: (!r.offer_id.is_empty()).then_some(r.offer_id),
            value: r.value,
        })
    }
}

/// Checks a SelectOffer request against `limits` and converts it for the
/// engine; the error names the field. Never panics on any input (a fuzz
/// target checks).
pub fn validate_select(l: &Limits, r: proto::SelectOfferRequest) -> Result<SelectRequest, Error> {
    let bad = |m: String| Err(Error::InvalidArgument(m));
    if r.campaign.is_empty() {
        return bad("campaign is required (ListCampaigns shows the campaigns)".into());
    }
    if !valid_id(&r.campaign) {
        return bad("campaign must be 1-64 letters, digits, '_', '-' or '.'".into());
    }
    if r.context.len() > l.max_features {
        return bad(format!(
            "context has {} features; at most {} are allowed",
            r.context.len(),
            l.max_features
        ));
    }
    let mut context = Context::with_capacity(r.context.len());
    for (name, value) in r.context {
        if name.is_empty() || name.len() > l.max_feature_name {
            return bad(format!(
                "feature names must be 1-{} bytes; got {} bytes",
                l.max_feature_name,
                name.len()
            ));
        }
        let v = match value.kind {
            None => {
                return bad(format!(
                    "feature '{name}' has no value: set number, category or flag"
                ));
            }
            Some(Kind::Number(x)) if !x.is_finite() => {
                return bad(format!("feature '{name}' is {x}; numbers must be finite"));
            }
            Some(Kind::Number(x)) => FeatureValue::Number(x),
            Some(Kind::Category(c)) if c.len() > l.max_category => {
                return bad(format!(
                    "feature '{name}': categories are at most {} bytes",
                    l.max_category
                ));
            }
            Some(Kind::Category(c)) => FeatureValue::Category(c),
            Some(Kind::Flag(b)) => FeatureValue::Flag(b),
        };
        context.insert(name, v);
    }
    if r.candidate_offer_ids.len() > l.max_candidates {
        return bad(format!(
            "at most {} candidate_offer_ids are allowed",
            l.max_candidates
        ));
    }
    if let Some(c) = r.candidate_offer_ids.iter().find(|c| !valid_id(c)) {
        return bad(format!(
            "candidate_offer_ids: '{}' is not an offer id",
            truncate(c)
        ));
    }
    if r.customer_id.len() > l.max_key {
        return bad(format!("customer_id is at most {} bytes", l.max_key));
    }
    if r.request_id.len() > l.max_key {
        return bad(format!("request_id is at most {} bytes", l.max_key));
    }
    Ok(SelectRequest {
        campaign: r.campaign,
        context,
        candidates: r.candidate_offer_ids,
        request_id: (!r.request_id.is_empty()).then_some(r.request_id),
        customer_id: (!r.customer_id.is_empty()).then_some(r.customer_id),
        explain: r.explain,
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[tonic::async_trait]
impl OfferService for Api {
    async fn select_offer(
        &self,
        request: Request<proto::SelectOfferRequest>,
    ) -> Result<Response<proto::SelectOfferResponse>, Status> {
        let req = self.select_request(request.into_inner())?;
        let s = self.engine.select(req).await?;
        Ok(Response::new(proto::SelectOfferResponse {
            decision_id: self.engine.id_keys().encode(&s.decision_id),
            offer_id: s.offer_id,
            propensity: s.propensity,
            expires_at_unix_ms: s.expires_ms,
            model_version: s.model_version,
            segment: s.segment,
            replayed: s.replayed,
            arm: s.arm.as_str().to_owned(),
            explanation: s
                .explanation
                .into_iter()
                .map(|e| proto::OfferExplanation {
                    offer_id: e.offer_id,
                    excluded_reason: e.excluded.unwrap_or_default(),
                    redemption_rate: e.rate.and_then(estimate),
                    value: e.value.and_then(estimate),
                    probability: e.probability,
                })
                .collect(),
            ignored_features: s.ignored_features,
        }))
    }

    async fn record_redemption(
        &self,
        request: Request<proto::RecordRedemptionRequest>,
    ) -> Result<Response<proto::RecordRedemptionResponse>, Status> {
        let peer = request.remote_addr();
        let out = match self.redemption(request.into_inner()) {
            Ok(r) => self.engine.redeem(r).await,
            Err(e) => Err(e),
        };
        if matches!(out, Err(Error::NotFound(_))) {
            self.not_found.record(1, peer);
        }
        let out = out?;
        Ok(Response::new(proto::RecordRedemptionResponse {
            already_recorded: out.already_recorded,
            offer_id: out.offer_id,
            campaign: out.campaign,
        }))
    }

    async fn record_redemptions(
        &self,
        request: Request<Streaming<proto::RecordRedemptionRequest>>,
    ) -> Result<Response<proto::RecordRedemptionsResponse>, Status> {
        let peer = request.remote_addr();
        let mut stream = request.into_inner();
        let mut parsed = Vec::new();
        while let Some(item) = stream.message().await? {
            if parsed.len() == self.limits.max_stream {
                return Err(Status::resource_exhausted(format!(
                    "at most {} redemptions per stream; nothing was applied, split the stream (retries are safe)",
                    self.limits.max_stream
                )));
            }
            // Echoed back in the result: a malformed id at most as long as
            // a real one (a hostile stream would otherwise have every one of
            // up to 50,000 ids of up to 4 MiB kept and sent back).
            let id = truncate(&item.decision_id);
            parsed.push((id, self.redemption(item)));
        }
        let valid: Vec<Redemption> = parsed
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok().cloned())
            .collect();
        // The in-flight permit is taken now that the stream's messages are
        // in: streams that send nothing hold none (the guard takes none for
        // this method).
        let _permit = match &self.permits {
            Some(p) => Some(p.clone().try_acquire_owned().map_err(|_| {
                Status::from(Error::ResourceExhausted(
                    "the server is at its limit of requests in flight (--max-in-flight); nothing was applied, retry with backoff".into(),
                ))
            })?),
            None => None,
        };
        let mut applied = self.engine.redeem_many(valid).await?.into_iter();
        let mut resp = proto::RecordRedemptionsResponse::default();
        let mut not_found = 0;
        for (index, (decision_id, parsed)) in parsed.into_iter().enumerate() {
            let outcome = match parsed {
                Err(e) => Err(e),
                Ok(_) => applied
                    .next()
                    .unwrap_or_else(|| Err(Error::Unavailable("result missing".into()))),
            };
            let mut result = proto::RedemptionResult {
                index: index as u64,
                decision_id,
                ..Default::default()
            };
            match outcome {
                Ok(r) => {
                    result.already_recorded = r.already_recorded;
                    if r.already_recorded {
                        resp.duplicates += 1;
                    } else {
                        resp.applied += 1;
                    }
                }
                Err(e) => {
                    let status = Status::from(e);
                    not_found += u64::from(status.code() == tonic::Code::NotFound);
                    result.code = status.code() as i32;
                    result.message = status.message().to_owned();
                    resp.rejected += 1;
                }
            }
            resp.results.push(result);
        }
        self.not_found.record(not_found, peer);
        Ok(Response::new(resp))
    }
}

pub use crate::config::MAX_VALUE;

/// Largest campaign config PutCampaign accepts.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

fn config_response(c: &crate::engine::Campaign) -> Result<proto::CampaignConfigResponse, Status> {
    if c.revision.number == 0 {
        return Err(Error::FailedPrecondition(format!(
            "campaign '{}' is in storage from before stored configs, with no config of its own; declare it in the campaign file",
            c.config.id
        ))
        .into());
    }
    let config_toml = c
        .config
        .to_toml()
        .map_err(|e| Status::internal(format!("the config has no TOML form: {e}")))?;
    Ok(proto::CampaignConfigResponse {
        campaign: c.config.id.clone(),
        config_toml,
        revision: c.revision.number,
        source: c.revision.source.as_str().to_owned(),
        updated_at_unix_ms: c.revision.updated_ms,
        served: c.active,
    })
}

/// Bytes per BackupChunk.
const BACKUP_CHUNK: usize = 1 << 20;

#[tonic::async_trait]
impl CampaignAdmin for Api {
    type ExportDecisionsStream =
        tokio_stream::wrappers::ReceiverStream<Result<proto::DecisionLogEntry, Status>>;
    type BackupStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<proto::BackupChunk, Status>> + Send>,
    >;

    async fn set_offer_status(
        &self,
        request: Request<proto::SetOfferStatusRequest>,
    ) -> Result<Response<proto::SetStatusResponse>, Status> {
        let r = request.into_inner();
        if r.campaign.is_empty() || r.offer_id.is_empty() {
            return Err(Error::InvalidArgument("campaign and offer_id are required".into()).into());
        }
        let status = crate::engine::OfferStatus::parse(&r.status).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "status '{}' is not one of active, paused, retired",
                truncate(&r.status)
            ))
        })?;
        self.engine
            .set_offer_status(&r.campaign, &r.offer_id, status)
            .await?;
        tracing::info!(campaign = %r.campaign, offer = %r.offer_id, status = status.as_str(), "offer status set");
        Ok(Response::new(proto::SetStatusResponse {}))
    }

    async fn set_campaign_status(
        &self,
        request: Request<proto::SetCampaignStatusRequest>,
    ) -> Result<Response<proto::SetStatusResponse>, Status> {
        let r = request.into_inner();
        if r.campaign.is_empty() {
            return Err(Error::InvalidArgument("campaign is required".into()).into());
        }
        match r.status.as_str() {
            "active" => self.engine.set_campaign_paused(&r.campaign, false).await?,
            "paused" => self.engine.set_campaign_paused(&r.campaign, true).await?,
            "retired" => {
                self.engine
                    .revise(&r.campaign, crate::engine::ConfigChange::Retire, None)
                    .await?;
            }
            other => {
                return Err(Error::InvalidArgument(format!(
                    "status '{}' is not one of active, paused, retired",
                    truncate(other)
                ))
                .into());
            }
        }
        tracing::info!(campaign = %r.campaign, status = %r.status, "campaign status set");
        Ok(Response::new(proto::SetStatusResponse {}))
    }

    async fn get_campaign_config(
        &self,
        request: Request<proto::GetCampaignConfigRequest>,
    ) -> Result<Response<proto::CampaignConfigResponse>, Status> {
        let campaign = request.into_inner().campaign;
        if campaign.is_empty() {
            return Err(Error::InvalidArgument("campaign is required".into()).into());
        }
        let c = self.engine.campaign(&campaign)?;
        Ok(Response::new(config_response(&c)?))
    }

    async fn put_campaign(
        &self,
        request: Request<proto::PutCampaignRequest>,
    ) -> Result<Response<proto::CampaignConfigResponse>, Status> {
        let r = request.into_inner();
        if r.config_toml.len() > MAX_CONFIG_BYTES {
            return Err(Error::InvalidArgument(format!(
                "config_toml is {} bytes; at most {MAX_CONFIG_BYTES} are accepted",
                r.config_toml.len()
            ))
            .into());
        }
        let config = crate::config::parse_campaign(&r.config_toml, "config_toml")
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let id = config.id.clone();
        let c = self
            .engine
            .revise(
                &id,
                crate::engine::ConfigChange::Put(Box::new(config)),
                r.expected_revision,
            )
            .await?;
        tracing::info!(campaign = %id, revision = c.revision.number, "campaign config put");
        Ok(Response::new(config_response(&c)?))
    }

    async fn add_offer(
        &self,
        request: Request<proto::AddOfferRequest>,
    ) -> Result<Response<proto::CampaignConfigResponse>, Status> {
        let r = request.into_inner();
        if r.campaign.is_empty() || r.offer_id.is_empty() {
            return Err(Error::InvalidArgument("campaign and offer_id are required".into()).into());
        }
        let mut features = std::collections::BTreeMap::new();
        for (name, value) in r.features {
            let v = match value.kind {
                None => {
                    return Err(Error::InvalidArgument(format!(
                        "offer feature '{}' has no value: set number, category or flag",
                        truncate(&name)
                    ))
                    .into());
                }
                // Validated with the config, non-finite numbers included.
                Some(Kind::Number(x)) => crate::config::OfferFeatureValue::Number(x),
                Some(Kind::Category(c)) => crate::config::OfferFeatureValue::Category(c),
                Some(Kind::Flag(b)) => crate::config::OfferFeatureValue::Flag(b),
            };
            features.insert(name, v);
        }
        let offer = crate::config::OfferConfig {
            features,
            id: r.offer_id.clone(),
            name: r.name,
            value: r.value.unwrap_or(1.0),
            category: r.category,
            max_decisions: r.max_decisions,
            max_redemptions: r.max_redemptions,
            max_decisions_per_day: r.max_decisions_per_day,
            max_redemptions_per_day: r.max_redemptions_per_day,
            max_value: r.max_value,
        };
        let c = self
            .engine
            .revise(
                &r.campaign,
                crate::engine::ConfigChange::AddOffer(Box::new(offer)),
                r.expected_revision,
            )
            .await?;
        tracing::info!(campaign = %r.campaign, offer = %truncate(&r.offer_id), revision = c.revision.number, "offer added");
        Ok(Response::new(config_response(&c)?))
    }

    async fn get_campaign_report(
        &self,
        request: Request<proto::GetCampaignReportRequest>,
    ) -> Result<Response<proto::CampaignReport>, Status> {
        let campaign = request.into_inner().campaign;
        if campaign.is_empty() {
            return Err(Error::InvalidArgument("campaign is required".into()).into());
        }
        Ok(Response::new(report_to_proto(
            self.engine.report(&campaign)?,
        )))
    }

    async fn forget_customer(
        &self,
        request: Request<proto::ForgetCustomerRequest>,
    ) -> Result<Response<proto::ForgetCustomerResponse>, Status> {
        let id = request.into_inner().customer_id;
        if id.is_empty() {
            return Err(Error::InvalidArgument(
                "customer_id is required: the id passed to SelectOffer".into(),
            )
            .into());
        }
        if id.len() > self.limits.max_key {
            return Err(Error::InvalidArgument(format!(
                "customer_id is at most {} bytes",
                self.limits.max_key
            ))
            .into());
        }
        let f = self.engine.forget(&id).await?;
        tracing::info!(decisions = f.decisions, exact = f.exact, "customer erased");
        Ok(Response::new(proto::ForgetCustomerResponse {
            decisions_erased: f.decisions,
            model_updates: f.model_updates,
            posteriors_exact: f.exact,
        }))
    }

    async fn backup(
        &self,
        _request: Request<proto::BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        let Ok(running) = self.backups.clone().try_acquire_owned() else {
            return Err(Error::ResourceExhausted(
                "a backup is already being taken or streamed; retry when it is done".into(),
            )
            .into());
        };
        let mut builder = tempfile::Builder::new();
        builder.prefix("offer-bandit-backup-");
        let file = match &self.scratch {
            Some(dir) => std::fs::create_dir_all(dir).and_then(|()| builder.tempfile_in(dir)),
            None => builder.tempfile(),
        }
        .map_err(|e| Error::Unavailable(format!("cannot create the backup's scratch file: {e}")))?;
        let entries = self.engine.backup(file.path().to_path_buf()).await?;
        tracing::info!(entries, "backup taken");
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let reopened = file.reopen();
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut reader = match reopened {
                Ok(r) => r,
                Err(e) => {
                    let _ = send_or_give_up(
                        &tx,
                        Err(Status::unavailable(format!("reading the backup: {e}"))),
                        "backup",
                    );
                    return;
                }
            };
            loop {
                let mut buf = vec![0u8; BACKUP_CHUNK];
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        buf.truncate(n);
                        if !send_or_give_up(&tx, Ok(proto::BackupChunk { data: buf }), "backup") {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = send_or_give_up(
                            &tx,
                            Err(Status::unavailable(format!("reading the backup: {e}"))),
                            "backup",
                        );
                        break;
                    }
                }
            }
        });
        // The scratch file and the one-backup permit live as long as the
        // reply stream: until the reader has it all, goes away or stalls.
        let held = (file, running);
        let stream = tokio_stream::StreamExt::map(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            move |chunk| {
                let _ = &held;
                chunk
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn export_decisions(
        &self,
        request: Request<proto::ExportDecisionsRequest>,
    ) -> Result<Response<Self::ExportDecisionsStream>, Status> {
        let r = request.into_inner();
        if r.campaign.is_empty() {
            return Err(Error::InvalidArgument("campaign is required".into()).into());
        }
        if r.since_unix_ms < 0 || r.until_unix_ms < 0 {
            return Err(Error::InvalidArgument(
                "since_unix_ms and until_unix_ms must be >= 0".into(),
            )
            .into());
        }
        let until = if r.until_unix_ms == 0 {
            i64::MAX
        } else {
            r.until_unix_ms
        };
        if until <= r.since_unix_ms {
            return Err(
                Error::InvalidArgument("until_unix_ms must be after since_unix_ms".into()).into(),
            );
        }
        // Unknown campaigns fail before the stream starts.
        self.engine.stats(&r.campaign)?;
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || {
            let failed = tx.clone();
            let result = engine.export(&r.campaign, r.since_unix_ms, until, |id, rec| {
                send_or_give_up(
                    &tx,
                    Ok(log_entry(engine.id_keys().encode(&id), rec)),
                    "export",
                )
            });
            if let Err(e) = result {
                let _ = send_or_give_up(&failed, Err(e.into()), "export");
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }

    async fn list_campaigns(
        &self,
        _request: Request<proto::ListCampaignsRequest>,
    ) -> Result<Response<proto::ListCampaignsResponse>, Status> {
        let campaigns = self
            .engine
            .campaigns()
            .into_iter()
            .filter(|c| c.active)
            .map(|c| proto::Campaign {
                id: c.config.id.clone(),
                policy: c.config.policy.as_str().to_owned(),
                segment_by: c.config.segment_by.clone(),
                reward_window_seconds: c.config.reward_window.as_secs(),
                objective: c.config.objective.as_str().to_owned(),
                offers: c
                    .offers
                    .iter()
                    .filter(|o| o.active)
                    .map(|o| proto::Offer {
                        id: o.id.clone(),
                        name: o.name.clone(),
                        value: o.value,
                        category: o.category.clone(),
                        status: c.offer_status(&o.id).as_str().to_owned(),
                    })
                    .collect(),
                status: if c.paused() { "paused" } else { "active" }.to_owned(),
                revision: c.revision.number,
            })
            .collect();
        Ok(Response::new(proto::ListCampaignsResponse { campaigns }))
    }

    async fn get_campaign_stats(
        &self,
        request: Request<proto::GetCampaignStatsRequest>,
    ) -> Result<Response<proto::GetCampaignStatsResponse>, Status> {
        let campaign = request.into_inner().campaign;
        if campaign.is_empty() {
            return Err(Error::InvalidArgument("campaign is required".into()).into());
        }
        Ok(Response::new(stats_to_proto(self.engine.stats(&campaign)?)))
    }
}

fn log_entry(id: String, rec: crate::decision::DecisionRecord) -> proto::DecisionLogEntry {
    use crate::decision::DecisionState;
    let (outcome, value, redeemed_unix_ms) = match rec.state {
        DecisionState::Pending => ("pending", None, None),
        DecisionState::Redeemed { value, at_ms } => ("redeemed", Some(value), Some(at_ms)),
        DecisionState::Expired => ("expired", None, None),
    };
    proto::DecisionLogEntry {
        arm: rec.arm.as_str().to_owned(),
        decision_id: id,
        campaign: rec.campaign,
        created_unix_ms: rec.created_ms,
        expires_unix_ms: rec.expires_ms,
        context: rec
            .context
            .into_iter()
            .map(|(k, v)| {
                let kind = match v {
                    FeatureValue::Number(n) => Kind::Number(n),
                    FeatureValue::Category(c) => Kind::Category(c),
                    FeatureValue::Flag(b) => Kind::Flag(b),
                };
                (k, proto::FeatureValue { kind: Some(kind) })
            })
            .collect(),
        candidate_offer_ids: rec.candidates,
        offer_id: rec.offer,
        propensity: rec.propensity,
        model_version: rec.model_version,
        segment: rec.segment,
        outcome: outcome.to_owned(),
        value,
        redeemed_unix_ms,
    }
}

fn estimate(e: crate::uplift::Estimate) -> Option<proto::Estimate> {
    Some(proto::Estimate {
        value: e.value,
        low: e.low,
        high: e.high,
    })
}

fn arm_to_proto(a: crate::uplift::ArmSummary) -> proto::ArmReport {
    proto::ArmReport {
        arm: a.arm.as_str().to_owned(),
        decisions: a.counts.decisions,
        redemptions: a.counts.redemptions,
        pending: a.counts.pending(),
        redemption_rate: estimate(a.rate),
        value_per_1000: estimate(a.value_per_1000),
    }
}

fn report_to_proto(r: crate::engine::CampaignReport) -> proto::CampaignReport {
    let cells = stats_to_proto(CampaignStats {
        campaign: r.campaign.clone(),
        offers: Vec::new(),
        cells: r.cells,
        model_version: 0,
        learned_prior: Default::default(),
    })
    .cells;
    proto::CampaignReport {
        campaign: r.campaign,
        control_share: r.control_share,
        bandit: Some(arm_to_proto(r.bandit)),
        control: Some(arm_to_proto(r.control)),
        uplift: r.uplift.map(|u| proto::UpliftReport {
            rate_difference: estimate(u.rate_difference),
            rate_relative: u.rate_relative.and_then(estimate),
            value_per_1000_difference: estimate(u.value_per_1000_difference),
        }),
        offers: r
            .offers
            .into_iter()
            .map(|o| proto::OfferReport {
                offer_id: o.offer_id,
                decisions: o.counts.trials,
                redemptions: o.counts.successes,
                traffic_share: o.share,
                decisions_left: o.decisions_left,
                redemptions_left: o.redemptions_left,
                decisions_left_today: o.decisions_left_today,
                redemptions_left_today: o.redemptions_left_today,
                posterior: Some(proto::Estimate {
                    value: o.posterior_mean,
                    low: o.posterior_low,
                    high: o.posterior_high,
                }),
            })
            .collect(),
        cells,
    }
}

fn stats_to_proto(s: CampaignStats) -> proto::GetCampaignStatsResponse {
    proto::GetCampaignStatsResponse {
        campaign: s.campaign,
        offers: s
            .offers
            .into_iter()
            .map(|o| proto::OfferStats {
                offer_id: o.offer_id,
                decisions: o.counts.trials,
                pending: o.counts.pending(),
                redeemed: o.counts.successes,
                expired: o.counts.expired,
                value_sum: o.counts.value_sum,
                model_observations: o.model_observations,
                mean_predicted_rate: o.mean_predicted_rate,
            })
            .collect(),
        cells: s
            .cells
            .into_iter()
            .map(|c| proto::CellStats {
                segment: c.segment,
                offer_id: c.offer_id,
                alpha: c.alpha,
                beta: c.beta,
                trials: c.counts.trials,
                successes: c.counts.successes,
                mean: c.alpha / (c.alpha + c.beta),
            })
            .collect(),
        model_version: s.model_version,
        feature_priors: s
            .learned_prior
            .groups
            .into_iter()
            .map(|f| proto::FeaturePrior {
                feature: f.feature,
                part: f.part,
                prior_variance: f.prior_variance,
            })
            .collect(),
        prior_events: s.learned_prior.events,
        prior_rate: s.learned_prior.rate,
        offer_effects: s
            .learned_prior
            .offer_effects
            .into_iter()
            .map(|e| proto::OfferFeatureEffect {
                offer_feature: e.offer_feature,
                context: e.context,
                effect: e.effect,
            })
            .collect(),
    }
}

/// Longest status message sent: a longer one (a config error quoting a
/// 200 KB line) would not fit the HTTP/2 headers, and the client would see
/// only "stream removed".
const MAX_MESSAGE_CHARS: usize = 1024;

/// `msg`, cut to [`MAX_MESSAGE_CHARS`] characters with a note when cut.
fn bounded(mut msg: String) -> String {
    if let Some((i, _)) = msg.char_indices().nth(MAX_MESSAGE_CHARS) {
        msg.truncate(i);
        msg.push_str(" [message cut]");
    }
    msg
}

/// The one mapping of the engine's errors to gRPC status codes.
impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        let msg = bounded(e.to_string());
        match e {
            Error::InvalidArgument(_) => tonic::Status::invalid_argument(msg),
            Error::NotFound(_) => tonic::Status::not_found(msg),
            Error::FailedPrecondition(_) => tonic::Status::failed_precondition(msg),
            Error::Unavailable(_) => tonic::Status::unavailable(msg),
            Error::ResourceExhausted(_) => tonic::Status::resource_exhausted(msg),
            Error::Store(
                crate::store::StoreError::Sled(_) | crate::store::StoreError::Unavailable(_),
            ) => tonic::Status::unavailable(msg),
            Error::Store(crate::store::StoreError::Corrupt { .. }) => tonic::Status::data_loss(msg),
            Error::Aborted(_) => tonic::Status::aborted(msg),
            Error::AlreadyExists(_) => tonic::Status::already_exists(msg),
            Error::Store(crate::store::StoreError::Config(_)) => {
                tonic::Status::failed_precondition(msg)
            }
            Error::Store(crate::store::StoreError::CustomerKeyMismatch { .. }) => {
                tonic::Status::failed_precondition(msg)
            }
        }
    }
}
