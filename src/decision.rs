//! Decisions: their time-ordered ids and the record kept for each until it is
//! redeemed or expires.

use std::{
    fmt,
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

/// A decision id: 8 bytes of Unix milliseconds (big-endian, so ids sort by
/// time) and 8 bytes unique to this process. Shown as 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DecisionId(pub [u8; 16]);

/// Why a string is not a decision id.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("decision_id must be the 32 hex digits SelectOffer returned")]
pub struct MalformedDecisionId;

impl DecisionId {
    /// Parses the 32-hex-digit form.
    pub fn parse(s: &str) -> Result<Self, MalformedDecisionId> {
        let b = s.as_bytes();
        if b.len() != 32 {
            return Err(MalformedDecisionId);
        }
        let mut out = [0u8; 16];
        for (i, pair) in b.chunks_exact(2).enumerate() {
            let hi = hex_val(pair[0]).ok_or(MalformedDecisionId)?;
            let lo = hex_val(pair[1]).ok_or(MalformedDecisionId)?;
            out[i] = hi << 4 | lo;
        }
        Ok(DecisionId(out))
    }

    /// Unix milliseconds when the decision was made.
    pub fn created_ms(&self) -> i64 {
        let mut ms = [0u8; 8];
        ms.copy_from_slice(&self.0[..8]);
        i64::from_be_bytes(ms)
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for DecisionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Makes unique, time-ordered decision ids without coordination.
#[derive(Debug)]
pub struct IdGenerator {
    boot: u32,
    counter: AtomicU64,
}

impl IdGenerator {
    /// A generator whose ids cannot collide with another process's (random boot tag).
    pub fn new() -> Self {
        IdGenerator {
            boot: rand::random(),
            counter: AtomicU64::new(0),
        }
    }

    /// The next id, stamped with `now_ms`.
    pub fn next(&self, now_ms: i64) -> DecisionId {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&now_ms.to_be_bytes());
        id[8..12].copy_from_slice(&self.boot.to_be_bytes());
        id[12..].copy_from_slice(&(n as u32).to_be_bytes());
        DecisionId(id)
    }
}

impl Default for IdGenerator {
    fn default() -> Self {
        Self::new()
    }
}

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
    /// The offers it chose among.
    pub candidates: Vec<String>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_sort_by_time() {
        let g = IdGenerator::new();
        let a = g.next(1_700_000_000_000);
        let b = g.next(1_700_000_000_001);
        assert!(a < b);
        assert_ne!(g.next(5), g.next(5));
        let s = a.to_string();
        assert_eq!(s.len(), 32);
        assert_eq!(DecisionId::parse(&s), Ok(a));
        assert_eq!(a.created_ms(), 1_700_000_000_000);
        assert!(DecisionId::parse("xyz").is_err());
        assert!(DecisionId::parse(&"g".repeat(32)).is_err());
    }
}
