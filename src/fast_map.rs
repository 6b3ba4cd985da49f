//! Hash maps for the engine's per-decision work: the writer's group
//! staging, the segment model's cells, the snapshot cache. std's SipHash
//! took about 7,000 of SelectOffer's ~108,000 instructions (callgrind,
//! BENCHMARKS.md); foldhash is several times cheaper on short keys. Each map
//! gets its own random seed; the keys hashed here are campaign, segment and
//! offer names a campaign's config bounds (`max_segments`), and decision ids.
//! Maps elsewhere keep std's default.

/// A `HashMap` with foldhash, randomly seeded per map.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A `HashSet` with foldhash, randomly seeded per set.
pub(crate) type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
