//! Frequency caps, read the same way by the select path (to leave capped
//! offers out) and by the writer (to refuse a decision that raced past one).

use super::*;

/// When the frequency-cap window ending at `now_ms` starts.
pub(super) fn cap_start(cap: &crate::config::FrequencyCap, now_ms: i64) -> i64 {
    now_ms.saturating_sub(i64::try_from(cap.period.as_millis()).unwrap_or(i64::MAX))
}

/// How often each offer of `campaign` went to a customer since `since_ms`,
/// among the customer's decisions `ids`, read with `read`.
pub(super) fn offers_seen(
    ids: Vec<DecisionId>,
    campaign: &str,
    since_ms: i64,
    mut read: impl FnMut(&DecisionId) -> Result<Option<DecisionRecord>, Error>,
) -> Result<HashMap<String, u32>, Error> {
    let mut seen: HashMap<String, u32> = HashMap::new();
    for id in ids {
        if id.created_ms() < since_ms {
            continue;
        }
        if let Some(rec) = read(&id)?
            && rec.campaign == campaign
            && rec.created_ms >= since_ms
        {
            *seen.entry(rec.offer).or_default() += 1;
        }
    }
    Ok(seen)
}

/// Why a customer who got an offer `n` times in the cap's period may not
/// get it again, or None.
pub(super) fn cap_reached(cap: &crate::config::FrequencyCap, n: u32) -> Option<String> {
    (n >= cap.max).then(|| {
        format!(
            "frequency cap: this customer got it {n} times in the last {}",
            humantime::format_duration(cap.period)
        )
    })
}
