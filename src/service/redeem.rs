//! RecordRedemption and RecordRedemptions: parse, redeem, answer each.

use std::sync::atomic::{AtomicU64, Ordering};

use tonic::{Request, Response, Status, Streaming};

use super::{Api, MAX_VALUE, truncate};
use crate::{
    config::valid_id,
    decision::now_ms,
    decision_id::IdError,
    engine::Redemption,
    error::{Error, Reason},
    proto,
};

impl Api {
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

    /// RecordRedemption.
    pub(super) async fn redeem_one(
        &self,
        request: Request<proto::RecordRedemptionRequest>,
    ) -> Result<Response<proto::RecordRedemptionResponse>, Status> {
        let peer = request.remote_addr();
        let out = match self.redemption(request.into_inner()) {
            Ok(r) => self.engine.redeem(r).await,
            Err(e) => Err(e),
        };
        if matches!(&out, Err(e) if e.reason() == Reason::DecisionNotFound) {
            self.not_found.record(1, peer);
        }
        let out = out?;
        Ok(Response::new(proto::RecordRedemptionResponse {
            already_recorded: out.already_recorded,
            offer_id: out.offer_id,
            campaign: out.campaign,
        }))
    }

    /// RecordRedemptions: every message of the stream, then one batch.
    pub(super) async fn redeem_stream(
        &self,
        request: Request<Streaming<proto::RecordRedemptionRequest>>,
    ) -> Result<Response<proto::RecordRedemptionsResponse>, Status> {
        let peer = request.remote_addr();
        let mut stream = request.into_inner();
        let mut parsed = Vec::new();
        while let Some(item) = stream.message().await? {
            if parsed.len() == self.limits.max_stream {
                return Err(Error::refused(
                    Reason::StreamTooLong,
                    format!(
                        "at most {} redemptions per stream; nothing was applied, split the stream (retries are safe)",
                        self.limits.max_stream
                    ),
                )
                .into());
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
                Status::from(Error::refused(
                    Reason::Overloaded,
                    "the server is at its limit of requests in flight (--max-in-flight); nothing was applied, retry with backoff",
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
                    let reason = e.reason();
                    not_found += u64::from(reason == Reason::DecisionNotFound);
                    let status = Status::from(e);
                    result.code = status.code() as i32;
                    result.message = status.message().to_owned();
                    result.reason = reason.as_str().to_owned();
                    resp.rejected += 1;
                }
            }
            resp.results.push(result);
        }
        self.not_found.record(not_found, peer);
        Ok(Response::new(resp))
    }
}

/// Counts RecordRedemption answers of DECISION_NOT_FOUND and logs a burst of them
/// (someone guessing decision ids, or a pipeline sending another server's).
#[derive(Debug, Default)]
pub(super) struct NotFoundWatch {
    /// The current 10-second window (Unix ms / 10,000) and its count, packed
    /// as window << 24 | count.
    window: AtomicU64,
}

/// NOT_FOUND redemptions in one 10-second window that make a burst.
const NOT_FOUND_BURST: u64 = 100;

impl NotFoundWatch {
    pub(super) fn record(&self, n: u64, peer: Option<std::net::SocketAddr>) {
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
