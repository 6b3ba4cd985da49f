//! Backup files: their format, checks, and restore into a new directory.

use super::*;

impl Store {
    /// Writes every key and value to `out` as a backup file (see
    /// [`restore_snapshot`]); returns how many entries. Consistent only if
    /// nothing writes meanwhile: the engine calls it from its writer thread.
    pub fn write_snapshot(&self, out: &mut dyn std::io::Write) -> Result<u64, StoreError> {
        let entries = self.tree.iter().map(|item| item.map_err(StoreError::from));
        write_entries(out, entries)
    }
}

/// Writes a backup file of `entries` (keys in order) to `out`; returns how
/// many.
pub(super) fn write_entries<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    out: &mut dyn std::io::Write,
    entries: impl Iterator<Item = Result<(K, V), StoreError>>,
) -> Result<u64, StoreError> {
    let io = |e: std::io::Error| StoreError::backend(e);
    let mut hasher = blake3::Hasher::new();
    let mut put = |bytes: &[u8], out: &mut dyn std::io::Write| -> Result<(), StoreError> {
        hasher.update(bytes);
        out.write_all(bytes).map_err(io)
    };
    put(SNAPSHOT_MAGIC, out)?;
    put(&SCHEMA_VERSION.to_be_bytes(), out)?;
    let mut n = 0u64;
    for item in entries {
        let (k, v) = item?;
        let (k, v) = (k.as_ref(), v.as_ref());
        put(&(k.len() as u32).to_be_bytes(), out)?;
        put(k, out)?;
        put(&(v.len() as u32).to_be_bytes(), out)?;
        put(v, out)?;
        n += 1;
    }
    put(&SNAPSHOT_END.to_be_bytes(), out)?;
    put(&n.to_be_bytes(), out)?;
    out.write_all(hasher.finalize().as_bytes()).map_err(io)?;
    out.flush().map_err(io)?;
    Ok(n)
}

/// First bytes of a backup file.
pub(super) const SNAPSHOT_MAGIC: &[u8] = b"offer-bandit backup 1\n";
/// Stands where a key length would, after the last entry.
pub(super) const SNAPSHOT_END: u32 = u32::MAX;

/// Turns a backup file written by [`Store::write_snapshot`] into a new store
/// in `dir`, which must not hold one yet. The whole file is checked (format,
/// schema, checksum) before anything is written. Returns the entries restored.
pub fn restore_snapshot(file: &Path, dir: &Path) -> Result<u64, StoreError> {
    let bad = |reason: String| StoreError::Corrupt {
        key: file.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(file).map_err(|e| bad(format!("cannot read: {e}")))?;
    let entries = parse_snapshot(&bytes).map_err(bad)?;
    for (k, v) in &entries {
        check_entry(k, v)?;
    }
    let count = entries.len() as u64;
    if dir.join("db").exists() || dir.join("conf").exists() {
        return Err(bad(format!(
            "{} already holds a store; restore into a new directory",
            dir.display()
        )));
    }
    let db = sled::Config::new().path(dir).open()?;
    let tree = db.open_tree("offer-bandit")?;
    for chunk in entries.chunks(10_000) {
        let mut batch = sled::Batch::default();
        for (k, v) in chunk {
            batch.insert(*k, *v);
        }
        tree.apply_batch(batch)?;
    }
    db.flush()?;
    Ok(count)
}

/// A key and its value, borrowed from a backup file.
pub type SnapshotEntry<'a> = (&'a [u8], &'a [u8]);

/// The entries of a backup file, after checking its format, schema and
/// checksum; the reason when it is not a usable backup. Never panics on
/// any input (a fuzz target checks).
pub fn parse_snapshot(bytes: &[u8]) -> Result<Vec<SnapshotEntry<'_>>, String> {
    if bytes.len() < SNAPSHOT_MAGIC.len() + 4 + 4 + 8 + 32 || !bytes.starts_with(SNAPSHOT_MAGIC) {
        return Err("not an offer-bandit backup file".into());
    }
    let (body, digest) = bytes.split_at(bytes.len() - 32);
    if blake3::hash(body).as_bytes() != digest {
        return Err("checksum mismatch: the file is truncated or damaged".into());
    }
    let mut at = SNAPSHOT_MAGIC.len();
    let mut take = |n: usize| -> Result<&[u8], String> {
        let end = at.checked_add(n).ok_or("an entry length overflows")?;
        let s = body.get(at..end).ok_or("the file ends inside an entry")?;
        at = end;
        Ok(s)
    };
    let u32_of = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let schema = u32_of(take(4)?);
    // A backup of schema 4 to 8 restores as it is and is migrated when
    // opened.
    if schema != SCHEMA_VERSION && !(4..=8).contains(&schema) {
        return Err(format!(
            "backup of schema {schema}; this build restores schemas 4 to {SCHEMA_VERSION}"
        ));
    }
    let mut entries = Vec::new();
    loop {
        let klen = u32_of(take(4)?);
        if klen == SNAPSHOT_END {
            break;
        }
        let k = take(klen as usize)?;
        let vlen = u32_of(take(4)?) as usize;
        let v = take(vlen)?;
        entries.push((k, v));
    }
    let count = take(8)?;
    let count = u64::from_be_bytes(count.try_into().map_err(|_| "short count")?);
    if count != entries.len() as u64 {
        return Err(format!(
            "{} entries but the file says {count}",
            entries.len()
        ));
    }
    Ok(entries)
}

/// Decodes one stored entry by its key, as startup and the engine do;
/// `Ok` when this build can use it. Never panics on any input (a fuzz
/// target checks).
pub fn check_entry(key: &[u8], value: &[u8]) -> Result<(), StoreError> {
    if key.starts_with(DECISION) || key.starts_with(OVERLAY) {
        decode::<DecisionRecord>(key, value).map(drop)
    } else if key.starts_with(BLOCK) {
        super::blocks::block_records(key, value).map(drop)
    } else if key.starts_with(CELL) {
        parse_cell_key(key).ok_or_else(|| StoreError::Corrupt {
            key: escape(key),
            reason: "malformed cell key".into(),
        })?;
        decode::<CellCounts>(key, value).map(drop)
    } else if key.starts_with(CONFIG) {
        let stored: crate::revisions::StoredCampaign = decode(key, value)?;
        stored
            .config(&escape(key))
            .map(drop)
            .map_err(|e| StoreError::Corrupt {
                key: escape(key),
                reason: e.to_string(),
            })
    } else if key.starts_with(CLUSTERS) {
        decode::<crate::uplift::ClusterSums>(key, value).map(drop)
    } else if key.starts_with(TOTALS) {
        parse_campaign_arm(key.get(TOTALS.len() + 32..).unwrap_or_default()).ok_or_else(|| {
            StoreError::Corrupt {
                key: escape(key),
                reason: "malformed customer totals key".into(),
            }
        })?;
        decode::<crate::uplift::CustomerTotals>(key, value).map(drop)
    } else if key.starts_with(PRIOR) {
        let p = decode_prior(key, value)?;
        if p.holds_usable_numbers() {
            Ok(())
        } else {
            Err(StoreError::Corrupt {
                key: escape(key),
                reason: "a prior holds a non-finite number or a variance that is not positive"
                    .into(),
            })
        }
    } else if key.starts_with(MODEL) {
        let p = decode_model(key, value)?;
        if p.is_well_formed() {
            Ok(())
        } else {
            Err(StoreError::Corrupt {
                key: escape(key),
                reason: "the posterior's mean and covariance do not agree".into(),
            })
        }
    } else {
        Ok(())
    }
}
