//! Decisions: the record kept for each until it is redeemed or expires (ids
//! are [`crate::decision_id`]'s).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub(crate) use crate::decision_id::{DecisionId, IdGenerator};

/// Where a decision is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum DecisionState {
    /// Inside the reward window, not redeemed.
    Pending,
    /// Redeemed, with its value, at the given Unix milliseconds.
    Redeemed {
        /// Realized value.
        value: f64,
        /// When it was recorded.
        at_ms: i64,
    },
    /// The window passed without a redemption.
    Expired,
}

/// What is kept of a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// Campaign id.
    pub campaign: String,
    /// Chosen offer id.
    pub offer: String,
    /// Segment key the decision was counted in.
    pub segment: String,
    /// Probability of this choice under the policy at the time.
    pub propensity: f64,
    /// Unix ms when made.
    pub created_ms: i64,
    /// Unix ms after which a redemption is late.
    pub expires_ms: i64,
    /// The caller's idempotency key, if any.
    pub request_id: Option<String>,
    /// Model version when chosen.
    pub model_version: u64,
    /// Life-cycle state.
    pub state: DecisionState,
    /// Encoded context (contextual campaigns; empty for segment-ts), so that
    /// a redemption days later updates the model with the features it chose on.
    pub features: Vec<(u32, f64)>,
    /// The context the policy saw, sorted by name (for the decision log and
    /// off-policy evaluation).
    pub context: Vec<(String, crate::context::FeatureValue)>,
    /// The offers it chose among. Shared: the decisions of one candidate
    /// set hold one list (stored as a plain list; see
    /// [`crate::store`]'s blocks for how a block stores it once).
    pub candidates: std::sync::Arc<[String]>,
    /// The customer, as a keyed hash (see [`crate::customer`]), when the
    /// request named one: the handle of erasure.
    pub customer: Option<crate::customer::CustomerHash>,
    /// Contextual campaigns: the learning sequence number at which the
    /// decision was learned (0: not learned by a regression model). Events
    /// after the last model checkpoint are replayed from these at startup.
    pub learned_seq: u64,
    /// The same for its redemption (0: none learned).
    pub redeemed_seq: u64,
    /// Who chose the offer: the bandit or the control group.
    pub arm: crate::uplift::Arm,
}

/// Current Unix time in milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
