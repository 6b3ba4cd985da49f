//! Thin gRPC handlers: validate the request, call the engine, convert the
//! reply; one file per job (deciding, redeeming, administering), the proto
//! conversions in `convert` and the one mapping of errors in `errors`.

mod admin;
mod convert;
mod decide;
mod errors;
mod redeem;
pub mod wire;

pub use decide::validate_select;
pub(crate) use errors::refusal;

use std::sync::Arc;

use tokio::sync::Semaphore;
use tonic::{Request, Response, Status, Streaming};

use crate::{
    engine::Engine,
    proto::{self, offer_service_server::OfferService},
};
use redeem::NotFoundWatch;

/// Size limits on requests. Exceeding one is INVALID_ARGUMENT (reason
/// STREAM_TOO_LONG for a stream that is too long), never a crash.
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
pub(crate) struct Api {
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

impl Api {
    /// Handlers over an engine.
    pub(crate) fn new(engine: Arc<Engine>, limits: Limits) -> Self {
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
    pub(crate) fn with_scratch(mut self, dir: std::path::PathBuf) -> Self {
        self.scratch = Some(dir);
        self
    }

    /// Shares the guard's in-flight permits (see [`Api::permits`]).
    pub(crate) fn with_permits(mut self, permits: Arc<Semaphore>) -> Self {
        self.permits = Some(permits);
        self
    }
}

#[tonic::async_trait]
impl OfferService for Api {
    async fn select_offer(
        &self,
        request: Request<wire::SelectOfferRequest>,
    ) -> Result<Response<proto::SelectOfferResponse>, Status> {
        self.decide(request).await
    }

    async fn record_redemption(
        &self,
        request: Request<proto::RecordRedemptionRequest>,
    ) -> Result<Response<proto::RecordRedemptionResponse>, Status> {
        self.redeem_one(request).await
    }

    async fn record_redemptions(
        &self,
        request: Request<Streaming<proto::RecordRedemptionRequest>>,
    ) -> Result<Response<proto::RecordRedemptionsResponse>, Status> {
        self.redeem_stream(request).await
    }

    async fn record_fallback(
        &self,
        request: Request<proto::RecordFallbackRequest>,
    ) -> Result<Response<proto::RecordFallbackResponse>, Status> {
        self.fallback(request).await
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

pub(crate) use crate::config::MAX_VALUE;

/// Largest campaign config PutCampaign accepts.
pub(crate) const MAX_CONFIG_BYTES: usize = 1 << 20;
