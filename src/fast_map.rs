//! Hash maps for the engine's per-decision work: the writer's group
//! staging, the segment model's cells, the snapshot cache, a campaign's
//! offer index. std's SipHash took about 7,000 of SelectOffer's ~108,000
//! instructions (callgrind, BENCHMARKS.md); foldhash is several times
//! cheaper on short keys.
//!
//! Some keys come from callers: segments are built from the request's
//! context (at most `max_segments` a campaign), the snapshot cache's keys
//! hold candidate sets, and a write group's idempotency keys are callers'
//! request ids (one group's worth, a few milliseconds). Each map gets its
//! own random seed, and foldhash has no known collisions that hold across
//! seeds, so a caller cannot aim keys at one bucket without seeing the
//! seed; it is not a cryptographic hash, which std's SipHash is not either
//! in this sense (both are keyed). Maps elsewhere keep std's default.

/// A `HashMap` with foldhash, randomly seeded per map.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A [`FastMap`] whose composite keys can be looked up by borrowed parts
/// (hashbrown's [`hashbrown::Equivalent`]): the writer's per-decision
/// counts are keyed by (campaign, segment, offer) and the like, and a
/// std map would need both strings copied into a key to look one up,
/// four allocations a decision.
pub(crate) type LookupMap<K, V> = hashbrown::HashMap<K, V, foldhash::fast::RandomState>;

/// A `HashSet` with foldhash, randomly seeded per set.
pub(crate) type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
