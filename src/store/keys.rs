//! The key layout: one prefix per kind of record, and how keys are built
//! and read back.

use super::*;

pub(super) const META_SCHEMA: &[u8] = b"meta/schema";
pub(super) const CELL: &[u8] = b"m/";
pub(super) const DECISION: &[u8] = b"d/";
pub(super) const BLOCK: &[u8] = b"b/";
pub(super) const OVERLAY: &[u8] = b"o/";
pub(super) const EXPIRY: &[u8] = b"x/";
pub(super) const REQUEST: &[u8] = b"r/";
pub(super) const MODEL: &[u8] = b"p/";
pub(super) const CUSTOMER: &[u8] = b"c/";
pub(super) const ARM: &[u8] = b"a/";
pub(super) const DAILY: &[u8] = b"u/";
pub(super) const CLUSTERS: &[u8] = b"g/";
pub(super) const TOTALS: &[u8] = b"t/";
pub(super) const TRAFFIC: &[u8] = b"h/";
pub(super) const STATUS: &[u8] = b"s/";
pub(super) const CONFIG: &[u8] = b"k/";
pub(super) const PRIOR: &[u8] = b"q/";
pub(super) const META_CUSTOMER_KEY: &[u8] = b"meta/customer-key";
pub(super) const META_CUSTOMER_FINGERPRINT: &[u8] = b"meta/customer-key-fingerprint";
pub(super) const META_MODEL_SEQ: &[u8] = b"meta/model-seq";

pub(super) fn escape(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}

pub(super) fn cell_key(k: &CellKey) -> Vec<u8> {
    let mut key =
        Vec::with_capacity(CELL.len() + k.campaign.len() + k.segment.len() + k.offer.len() + 2);
    key.extend_from_slice(CELL);
    key.extend_from_slice(k.campaign.as_bytes());
    key.push(0);
    key.extend_from_slice(k.segment.as_bytes());
    key.push(0);
    key.extend_from_slice(k.offer.as_bytes());
    key
}

pub(super) fn parse_cell_key(key: &[u8]) -> Option<CellKey> {
    let rest = key.strip_prefix(CELL)?;
    let first = rest.iter().position(|&b| b == 0)?;
    let last = rest.iter().rposition(|&b| b == 0)?;
    if last <= first {
        return None;
    }
    Some(CellKey {
        campaign: String::from_utf8(rest[..first].to_vec()).ok()?,
        segment: String::from_utf8(rest[first + 1..last].to_vec()).ok()?,
        offer: String::from_utf8(rest[last + 1..].to_vec()).ok()?,
    })
}

pub(super) fn model_key(campaign: &str, offer: &str) -> Vec<u8> {
    [MODEL, campaign.as_bytes(), &[0], offer.as_bytes()].concat()
}

pub(super) fn decision_key(id: &DecisionId) -> Vec<u8> {
    [DECISION, &id.0].concat()
}

pub(super) fn expiry_key(expires_ms: i64, id: &DecisionId) -> Vec<u8> {
    [EXPIRY, &expires_ms.to_be_bytes(), &id.0].concat()
}

pub(super) fn customer_key(customer: &CustomerHash, id: &DecisionId) -> Vec<u8> {
    [CUSTOMER, &customer.0, &id.0].concat()
}

pub(super) fn clusters_key(campaign: &str, arm: crate::uplift::Arm) -> Vec<u8> {
    [CLUSTERS, campaign.as_bytes(), &[0], arm.as_str().as_bytes()].concat()
}

pub(super) fn totals_key(
    customer: &CustomerHash,
    campaign: &str,
    arm: crate::uplift::Arm,
) -> Vec<u8> {
    [
        TOTALS,
        &customer.0,
        campaign.as_bytes(),
        &[0],
        arm.as_str().as_bytes(),
    ]
    .concat()
}

/// (campaign, arm) of a `t/{customer}{campaign}\0{arm}` key after its
/// prefix and customer.
pub(super) fn parse_campaign_arm(rest: &[u8]) -> Option<(String, crate::uplift::Arm)> {
    let i = rest.iter().position(|&b| b == 0)?;
    let campaign = String::from_utf8(rest[..i].to_vec()).ok()?;
    let arm = crate::uplift::Arm::from_name(std::str::from_utf8(&rest[i + 1..]).ok()?)?;
    Some((campaign, arm))
}

pub(super) fn request_key(campaign: &str, request_id: &str) -> Vec<u8> {
    [REQUEST, campaign.as_bytes(), &[0], request_id.as_bytes()].concat()
}

pub(super) fn decision_id(bytes: &[u8]) -> Option<DecisionId> {
    Some(DecisionId(bytes.try_into().ok()?))
}

/// The locators of decisions made in `[since_ms, until_ms)`: version-0 ids
/// (8 bytes of ms first) sort before version-1 ids (a version byte, then 6
/// bytes of ms), so one range of each, padded with zeros to full locators.
pub(super) fn time_ranges(since_ms: i64, until_ms: i64) -> [std::ops::Range<DecisionId>; 2] {
    fn padded(prefix: &[u8]) -> DecisionId {
        let mut id = [0u8; 16];
        id[..prefix.len()].copy_from_slice(prefix);
        DecisionId(id)
    }
    let legacy_ms = |ms: i64| ms.clamp(0, 1 << 48).to_be_bytes();
    [
        padded(&legacy_ms(since_ms))..padded(&legacy_ms(until_ms)),
        padded(&DecisionId::v1_time_prefix(since_ms))
            ..padded(&DecisionId::v1_time_prefix(until_ms)),
    ]
}
