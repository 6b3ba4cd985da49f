//! Decision policies, shared by the server and the simulator. Pure: no gRPC or
//! storage types; randomness is injected.

pub mod segment;
pub mod special;
pub mod thompson;

use serde::{Deserialize, Serialize};

/// What a campaign maximizes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Probability of redemption.
    #[default]
    Redemptions,
    /// Probability of redemption times the offer's value.
    Value,
}

impl Objective {
    /// The name used in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Objective::Redemptions => "redemptions",
            Objective::Value => "value",
        }
    }

    /// Weight of an offer's sampled rate under this objective.
    pub fn weight(self, offer_value: f64) -> f64 {
        match self {
            Objective::Redemptions => 1.0,
            Objective::Value => offer_value,
        }
    }
}
