//! Decision blocks: the decisions of one write group, written as one value
//! (`b/{first locator}`) instead of one per decision, so that a decision
//! costs a share of one write. A block is immutable once written except
//! that erasure and pruning rewrite it without what they remove (exactly);
//! a decision that changes later (redeemed, expired) is written whole to
//! `o/{locator}`, which overrides its copy in the block.
//!
//! Locating: the engine numbers decisions and hands them to the writer in
//! one order (time, then sequence, within a stream), and the writer writes
//! blocks in that order, so the blocks of a stream hold disjoint ranges of
//! locators. A decision is in the stream's last block whose first locator
//! is at most its own: one range read, one binary search, one record
//! decoded.
//!
//! Layout of a value: the format byte [`BLOCK_SHARED`], a big-endian
//! `u32` count, then per decision its 16-byte locator and the big-endian
//! `u32` end offset of its record (from the start of the records), then the
//! candidate table: its length as a big-endian `u32`, then the distinct
//! candidate lists of the block's decisions (as [`encode`] writes a
//! `Vec<Vec<String>>`). Then the records in locator order, each the byte
//! [`SHARED_CANDIDATES`], the index of its list in the table and the
//! record as [`encode`] writes it without its candidates; or the record
//! as [`encode`] writes it whole (a block's 257th distinct list, which a
//! block of [`BLOCK_MAX`] cannot have). Or, when that is smaller, the byte
//! [`BLOCK_SHARED_LZ4`] and the same layout after the format byte,
//! LZ4-compressed (block format, its length first as a little-endian
//! `u32`): a block's records repeat the campaign, offer and feature names,
//! so it shrinks to about a third, and so do the bytes sled writes for it.
//! A decision's candidates, often every offer of its campaign, are
//! written once per block, not once per decision.
//!
//! Blocks written earlier in this release, without the table, stay
//! readable: the format byte [`FORMAT_VERSION`] or [`BLOCK_LZ4`], no
//! table, and each record whole.

use std::sync::Arc;

use super::*;

/// Most decisions in one block: a lookup reads the whole value, so blocks
/// stay small (about 20 KB at 300 bytes a decision).
pub const BLOCK_MAX: usize = 64;

/// The format byte of a compressed block without a candidate table
/// (written earlier in this release; read, no longer written).
pub(super) const BLOCK_LZ4: u8 = 0xB4;

/// The format byte of a block with a candidate table.
pub(super) const BLOCK_SHARED: u8 = 0xB2;

/// The format byte of a compressed block with a candidate table.
pub(super) const BLOCK_SHARED_LZ4: u8 = 0xB5;

/// A record's first byte when its candidates are in the block's table
/// (a record written whole starts with [`FORMAT_VERSION`]).
pub(super) const SHARED_CANDIDATES: u8 = 0xC5;

/// Most lists one table holds: an index is one byte.
const TABLE_MAX: usize = 256;

/// Largest layout a compressed block may declare: 64 records of the
/// largest a decision can be is far below (a damaged length is refused
/// before anything is allocated for it).
const MAX_BLOCK_BYTES: usize = 64 << 20;

const ENTRY: usize = LOCATOR_BYTES + 4;
const LOCATOR_BYTES: usize = crate::decision_id::LOCATOR_BYTES;

pub(super) fn block_key(first: &DecisionId) -> Vec<u8> {
    [BLOCK, &first.0].concat()
}

pub(super) fn overlay_key(id: &DecisionId) -> Vec<u8> {
    [OVERLAY, &id.0].concat()
}

/// Encodes decisions sorted by locator (the caller sorts). Takes each
/// record's candidates out while it is encoded and puts them back, so the
/// records come back as they were.
pub(super) fn encode_block<R: std::borrow::BorrowMut<DecisionRecord>>(
    records: &mut [(DecisionId, R)],
) -> Vec<u8> {
    // The table: each distinct list once, in the order first met; the
    // decisions of a group share one list (one allocation), so a pointer
    // comparison finds it.
    let mut table: Vec<Arc<[String]>> = Vec::new();
    let mut index: Vec<Option<u8>> = Vec::with_capacity(records.len());
    for (_, rec) in records.iter() {
        let c = &rec.borrow().candidates;
        let at = match table.iter().position(|t| Arc::ptr_eq(t, c) || t == c) {
            Some(i) => Some(i),
            None if table.len() < TABLE_MAX => {
                table.push(c.clone());
                Some(table.len() - 1)
            }
            None => None,
        };
        index.push(at.and_then(|i| u8::try_from(i).ok()));
    }
    // The format byte, then the directory, its ends filled in as each
    // record is encoded after it: one buffer, no record copied, and
    // returned as it is when it does not compress.
    let dir = 1 + 4 + records.len() * ENTRY;
    let mut layout = Vec::with_capacity(dir + 4 + records.len() * 256);
    layout.push(BLOCK_SHARED);
    layout.extend_from_slice(&(records.len() as u32).to_be_bytes());
    for (id, _) in records.iter() {
        layout.extend_from_slice(&id.0);
        layout.extend_from_slice(&[0; 4]);
    }
    layout.extend_from_slice(&[0; 4]);
    layout = encode_onto(layout, &table);
    let table_len = ((layout.len() - dir - 4) as u32).to_be_bytes();
    layout[dir..dir + 4].copy_from_slice(&table_len);
    let start = layout.len();
    for (i, (_, rec)) in records.iter_mut().enumerate() {
        let rec = rec.borrow_mut();
        match index[i] {
            Some(t) => {
                layout.extend_from_slice(&[SHARED_CANDIDATES, t]);
                let candidates = std::mem::take(&mut rec.candidates);
                layout = encode_onto(layout, &*rec);
                rec.candidates = candidates;
            }
            None => layout = encode_onto(layout, &*rec),
        }
        let end = ((layout.len() - start) as u32).to_be_bytes();
        let at = 1 + 4 + i * ENTRY + LOCATOR_BYTES;
        layout[at..at + 4].copy_from_slice(&end);
    }
    // Compressed: the format byte, the layout's length (little-endian, as
    // lz4_flex's `compress_prepend_size` writes it), then lz4's block,
    // written in place.
    let body = &layout[1..];
    let mut out = Vec::with_capacity(1 + 4 + lz4_flex::block::get_maximum_output_size(body.len()));
    out.push(BLOCK_SHARED_LZ4);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.resize(out.capacity(), 0);
    match lz4_flex::block::compress_into(body, &mut out[5..]) {
        Ok(n) if 4 + n < body.len() => {
            out.truncate(5 + n);
            out
        }
        _ => layout,
    }
}

/// A block's directory: (locator, start, end) of each record in `data`,
/// and where its candidate table is (None in a block written without one),
/// decoded when a record first needs it.
struct Directory<'a> {
    entries: Vec<(DecisionId, usize, usize)>,
    data: std::borrow::Cow<'a, [u8]>,
    table_at: Option<std::ops::Range<usize>>,
    table: std::cell::OnceCell<Vec<Arc<[String]>>>,
}

impl Directory<'_> {
    /// The candidate table, decoded on first use.
    fn table(&self, key: &[u8]) -> Result<&[Arc<[String]>], StoreError> {
        if let (None, Some(at)) = (self.table.get(), &self.table_at) {
            let decoded = decode(key, self.data.get(at.clone()).unwrap_or_default())?;
            let _ = self.table.set(decoded);
        }
        Ok(self.table.get().map_or(&[], Vec::as_slice))
    }

    /// The record of entry `i`, with its candidates from the table when
    /// it was written without them.
    fn record(&self, key: &[u8], i: usize) -> Result<(DecisionId, DecisionRecord), StoreError> {
        let (id, s, e) = self.entries[i];
        let bytes = &self.data[s..e];
        let rec = match bytes {
            [SHARED_CANDIDATES, t, rest @ ..] => {
                let mut rec: DecisionRecord = decode(key, rest)?;
                rec.candidates =
                    self.table(key)?
                        .get(usize::from(*t))
                        .cloned()
                        .ok_or_else(|| StoreError::Corrupt {
                            key: escape(key),
                            reason: format!(
                                "block record names candidate list {t}, not in the block"
                            ),
                        })?;
                rec
            }
            _ => decode(key, bytes)?,
        };
        Ok((id, rec))
    }
}

fn directory<'a>(key: &[u8], value: &'a [u8]) -> Result<Directory<'a>, StoreError> {
    let corrupt = |reason: &str| StoreError::Corrupt {
        key: escape(key),
        reason: reason.into(),
    };
    let (shared, layout): (bool, std::borrow::Cow<'a, [u8]>) = match value.split_first() {
        Some((&FORMAT_VERSION, rest)) => (false, rest.into()),
        Some((&BLOCK_SHARED, rest)) => (true, rest.into()),
        Some((&(BLOCK_LZ4 | BLOCK_SHARED_LZ4), rest)) => {
            let declared = rest
                .first_chunk::<4>()
                .map(|n| u32::from_le_bytes(*n) as usize)
                .ok_or_else(|| corrupt("truncated compressed block"))?;
            if declared > MAX_BLOCK_BYTES {
                return Err(corrupt("compressed block declares an impossible size"));
            }
            let layout = lz4_flex::block::decompress_size_prepended(rest)
                .map_err(|e| corrupt(&format!("compressed block does not decompress: {e}")))?;
            (value[0] == BLOCK_SHARED_LZ4, layout.into())
        }
        Some((v, _)) => {
            return Err(corrupt(&format!(
                "block format version {v}, this build reads {BLOCK_SHARED}, {BLOCK_SHARED_LZ4}, {FORMAT_VERSION} and {BLOCK_LZ4}"
            )));
        }
        None => return Err(corrupt("empty block")),
    };
    let (count, dir_and_data) =
        split_count(&layout).ok_or_else(|| corrupt("truncated block header"))?;
    let dir_len = count
        .checked_mul(ENTRY)
        .filter(|&n| n <= dir_and_data.len())
        .ok_or_else(|| corrupt("truncated block directory"))?;
    let dir_end = 4 + dir_len;
    let (table_at, data_start) = if shared {
        let len = layout[dir_end..]
            .first_chunk::<4>()
            .map(|n| u32::from_be_bytes(*n) as usize)
            .ok_or_else(|| corrupt("truncated candidate table"))?;
        let at = dir_end + 4..dir_end + 4 + len;
        if at.end > layout.len() {
            return Err(corrupt("truncated candidate table"));
        }
        (Some(at.clone()), at.end)
    } else {
        (None, dir_end)
    };
    let data_len = layout.len() - data_start;
    let mut entries = Vec::with_capacity(count);
    let mut start = 0usize;
    for e in layout[4..dir_end].chunks_exact(ENTRY) {
        let mut id = [0u8; LOCATOR_BYTES];
        id.copy_from_slice(&e[..LOCATOR_BYTES]);
        let mut end = [0u8; 4];
        end.copy_from_slice(&e[LOCATOR_BYTES..]);
        let end = u32::from_be_bytes(end) as usize;
        if end < start || end > data_len {
            return Err(corrupt("block record out of bounds"));
        }
        if entries
            .last()
            .is_some_and(|(prev, _, _): &(DecisionId, usize, usize)| prev.0 >= id)
        {
            return Err(corrupt("block records out of order"));
        }
        entries.push((DecisionId(id), data_start + start, data_start + end));
        start = end;
    }
    Ok(Directory {
        entries,
        data: layout,
        table_at,
        table: std::cell::OnceCell::new(),
    })
}

/// A layout's record count and what follows it.
fn split_count(layout: &[u8]) -> Option<(usize, &[u8])> {
    let (count, rest) = layout.split_first_chunk::<4>()?;
    Some((u32::from_be_bytes(*count) as usize, rest))
}

/// The record of `id` in a block, if it holds one.
pub(super) fn find_in_block(
    key: &[u8],
    value: &[u8],
    id: &DecisionId,
) -> Result<Option<DecisionRecord>, StoreError> {
    let dir = directory(key, value)?;
    match dir.entries.binary_search_by(|(x, _, _)| x.cmp(id)) {
        Ok(i) => Ok(Some(dir.record(key, i)?.1)),
        Err(_) => Ok(None),
    }
}

/// Every record of a block, in locator order.
pub(super) fn block_records(
    key: &[u8],
    value: &[u8],
) -> Result<Vec<(DecisionId, DecisionRecord)>, StoreError> {
    let dir = directory(key, value)?;
    (0..dir.entries.len()).map(|i| dir.record(key, i)).collect()
}

/// The stream of a version-1 locator.
pub(super) fn stream_of(id: &DecisionId) -> [u8; 4] {
    let mut s = [0u8; 4];
    s.copy_from_slice(&id.0[8..12]);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u8) -> DecisionRecord {
        DecisionRecord {
            campaign: "c".into(),
            offer: format!("o{n}"),
            segment: String::new(),
            propensity: 0.5,
            created_ms: i64::from(n),
            expires_ms: 1000,
            request_id: None,
            model_version: 0,
            state: DecisionState::Pending,
            features: Vec::new(),
            context: Default::default(),
            candidates: Default::default(),
            customer: None,
            learned_seq: 0,
            redeemed_seq: 0,
            arm: crate::uplift::Arm::Bandit,
        }
    }

    fn id(n: u8) -> DecisionId {
        let mut b = [0u8; LOCATOR_BYTES];
        b[0] = 1;
        b[15] = n;
        DecisionId(b)
    }

    #[test]
    fn a_block_finds_each_record_and_no_other() -> Result<(), StoreError> {
        let mut records: Vec<_> = [2u8, 5, 9].iter().map(|&n| (id(n), rec(n))).collect();
        let value = encode_block(&mut records);
        let key = block_key(&id(2));
        for (i, r) in &records {
            assert_eq!(find_in_block(&key, &value, i)?.as_ref(), Some(r));
        }
        for n in [0u8, 3, 10] {
            assert_eq!(find_in_block(&key, &value, &id(n))?, None);
        }
        assert_eq!(block_records(&key, &value)?, records);
        Ok(())
    }

    /// A decision as a campaign writes them: names repeat across records.
    fn realistic(n: u8) -> DecisionRecord {
        DecisionRecord {
            campaign: "coffee-loyalty".into(),
            offer: ["bogo_afternoon", "free_pastry", "double_points"][usize::from(n % 3)].into(),
            segment: "active|afternoon".into(),
            context: vec![
                (
                    "lifecycle".into(),
                    crate::context::FeatureValue::Category("active".into()),
                ),
                (
                    "daypart".into(),
                    crate::context::FeatureValue::Category("afternoon".into()),
                ),
            ],
            candidates: [
                "bogo_afternoon",
                "free_pastry",
                "double_points",
                "winback_20pct",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
            ..rec(n)
        }
    }

    #[test]
    fn a_block_of_repeating_names_is_stored_compressed_and_read_back() -> Result<(), StoreError> {
        let mut records: Vec<_> = (1..=64u8).map(|n| (id(n), realistic(n))).collect();
        let value = encode_block(&mut records);
        let plain: usize = records.iter().map(|(_, r)| encode(r).len() + ENTRY).sum();
        assert_eq!(value[0], BLOCK_SHARED_LZ4);
        assert!(
            value.len() * 2 < plain,
            "compressed {} of {plain} bytes",
            value.len()
        );
        let key = block_key(&id(1));
        assert_eq!(block_records(&key, &value)?, records);
        assert_eq!(
            find_in_block(&key, &value, &id(40))?.as_ref(),
            Some(&records[39].1)
        );
        // The bytes lz4_flex's own `compress_prepend_size` writes for the
        // layout, after the format byte: the stored format.
        let layout = lz4_flex::block::decompress_size_prepended(&value[1..])
            .map_err(|e| StoreError::backend(e.to_string()))?;
        assert_eq!(
            value[1..],
            lz4_flex::block::compress_prepend_size(&layout)[..]
        );
        // Damaged: cut short, or declaring an impossible size.
        for cut in [1, 3, 5, value.len() / 2, value.len() - 1] {
            assert!(block_records(&key, &value[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge = value.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(block_records(&key, &huge).is_err());
        Ok(())
    }

    #[test]
    fn damaged_blocks_are_refused_not_misread() {
        let mut records: Vec<_> = [1u8, 2].iter().map(|&n| (id(n), rec(n))).collect();
        let value = encode_block(&mut records);
        let key = block_key(&id(1));
        for cut in [0, 1, 3, 5 + ENTRY, 5 + 2 * ENTRY + 2, value.len() - 1] {
            let r = block_records(&key, &value[..cut]);
            assert!(r.is_err(), "cut at {cut} read as {r:?}");
        }
        // Out of order directory.
        let swapped = encode_block(&mut [(id(2), rec(2)), (id(1), rec(1))]);
        assert!(block_records(&key, &swapped).is_err());
        // A record naming a list the table does not have (in the layout
        // uncompressed).
        let mut bad = match value[0] {
            BLOCK_SHARED_LZ4 => {
                let mut raw = vec![BLOCK_SHARED];
                raw.extend(
                    lz4_flex::block::decompress_size_prepended(&value[1..]).unwrap_or_default(),
                );
                raw
            }
            _ => value.clone(),
        };
        assert_eq!(block_records(&key, &bad).ok(), Some(records.clone()));
        let table_len = u32::from_be_bytes([
            bad[5 + 2 * ENTRY],
            bad[6 + 2 * ENTRY],
            bad[7 + 2 * ENTRY],
            bad[8 + 2 * ENTRY],
        ]) as usize;
        let first_record = 5 + 2 * ENTRY + 4 + table_len;
        assert_eq!(bad[first_record], SHARED_CANDIDATES);
        // A table that does not decode (its format byte changed).
        let mut bad_table = bad.clone();
        bad_table[5 + 2 * ENTRY + 4] = 0x7F;
        let r = block_records(&key, &bad_table);
        assert!(matches!(&r, Err(StoreError::Corrupt { .. })), "{r:?}");
        bad[first_record + 1] = 7;
        let r = block_records(&key, &bad);
        assert!(
            matches!(&r, Err(StoreError::Corrupt { reason, .. }) if reason.contains("candidate list 7")),
            "{r:?}"
        );
    }

    fn names(ids: &[&str]) -> Arc<[String]> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn candidate_lists_are_stored_once_per_block_and_read_back_shared() -> Result<(), StoreError> {
        // Two lists, as a group's decisions hold them (one allocation
        // each), plus a copy of the first that shares no allocation.
        let all = names(&["a", "b", "c", "d"]);
        let some = names(&["b", "d"]);
        let copy = names(&["a", "b", "c", "d"]);
        let lists = [&all, &some, &all, &copy, &some, &all];
        let mut records: Vec<_> = lists
            .iter()
            .enumerate()
            .map(|(n, c)| {
                let n = n as u8 + 1;
                let r = DecisionRecord {
                    candidates: Arc::clone(c),
                    ..realistic(n)
                };
                (id(n), r)
            })
            .collect();
        let before = records.clone();
        let value = encode_block(&mut records);
        // Encoding leaves the records as they were.
        assert_eq!(records, before);
        let key = block_key(&id(1));
        let read = block_records(&key, &value)?;
        assert_eq!(read, records);
        // Read back, records of one list share one allocation.
        assert!(Arc::ptr_eq(&read[0].1.candidates, &read[2].1.candidates));
        assert!(Arc::ptr_eq(&read[0].1.candidates, &read[3].1.candidates));
        assert!(Arc::ptr_eq(&read[1].1.candidates, &read[4].1.candidates));
        assert!(!Arc::ptr_eq(&read[0].1.candidates, &read[1].1.candidates));
        for (i, r) in &records {
            assert_eq!(find_in_block(&key, &value, i)?.as_ref(), Some(r));
        }
        // Each list's names are in the layout once: "winback" is not a
        // candidate, "c" is in one list, and a list's names are
        // written together.
        let layout = lz4_flex::block::decompress_size_prepended(&value[1..])
            .map_err(|e| StoreError::backend(e.to_string()))?;
        let count = |needle: &[u8]| {
            layout
                .windows(needle.len())
                .filter(|w| *w == needle)
                .count()
        };
        assert_eq!(count(b"\x01a\x01b\x01c\x01d"), 1);
        assert_eq!(count(b"\x01b\x01d"), 1);
        Ok(())
    }

    /// A block as this release wrote it before the candidate table:
    /// `FORMAT_VERSION` or [`BLOCK_LZ4`], no table, each record whole.
    fn encode_block_without_table(records: &[(DecisionId, DecisionRecord)], lz4: bool) -> Vec<u8> {
        let mut layout = vec![FORMAT_VERSION];
        layout.extend_from_slice(&(records.len() as u32).to_be_bytes());
        let mut data = Vec::new();
        for (id, rec) in records {
            data = encode_onto(data, rec);
            layout.extend_from_slice(&id.0);
            layout.extend_from_slice(&(data.len() as u32).to_be_bytes());
        }
        layout.extend_from_slice(&data);
        if lz4 {
            let mut out = vec![BLOCK_LZ4];
            out.extend_from_slice(&lz4_flex::block::compress_prepend_size(&layout[1..]));
            out
        } else {
            layout
        }
    }

    #[test]
    fn blocks_written_without_a_candidate_table_stay_readable() -> Result<(), StoreError> {
        let records: Vec<_> = (1..=20u8).map(|n| (id(n), realistic(n))).collect();
        let key = block_key(&id(1));
        for lz4 in [false, true] {
            let value = encode_block_without_table(&records, lz4);
            assert_eq!(value[0], if lz4 { BLOCK_LZ4 } else { FORMAT_VERSION });
            assert_eq!(block_records(&key, &value)?, records);
            assert_eq!(
                find_in_block(&key, &value, &id(7))?.as_ref(),
                Some(&records[6].1)
            );
            assert_eq!(find_in_block(&key, &value, &id(30))?, None);
        }
        Ok(())
    }
}
