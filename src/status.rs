//! What operators set: an offer's status and a campaign's pause, stored as
//! one record per campaign.

/// What an operator set for an offer (`SetOfferStatus`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OfferStatus {
    /// Chosen as usual.
    #[default]
    Active,
    /// Not chosen until resumed; its decisions still accept redemptions.
    Paused,
    /// Never chosen again; its decisions still accept redemptions.
    Retired,
}

impl OfferStatus {
    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            OfferStatus::Active => "active",
            OfferStatus::Paused => "paused",
            OfferStatus::Retired => "retired",
        }
    }

    /// Parses the API name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            OfferStatus::Active,
            OfferStatus::Paused,
            OfferStatus::Retired,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// The operator-set state of a campaign, stored as one record.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CampaignStatus {
    /// Paused: no decisions until resumed; redemptions still accepted.
    pub paused: bool,
    /// Offers whose status is not `Active`.
    pub offers: Vec<(String, OfferStatus)>,
}

impl CampaignStatus {
    /// Offer `id`'s status (`Active` unless an operator set another).
    pub fn offer(&self, id: &str) -> OfferStatus {
        self.offers
            .iter()
            .find(|(o, _)| o == id)
            .map_or(OfferStatus::Active, |(_, s)| *s)
    }
}
