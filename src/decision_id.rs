//! Decision ids: what SelectOffer hands out and RecordRedemption takes back.
//!
//! # The spec (version 1)
//!
//! A decision id is 56 lowercase hex digits: 28 bytes, a 16-byte *locator*
//! followed by a 12-byte MAC.
//!
//! | bytes  | field      | meaning                                                    |
//! |--------|------------|------------------------------------------------------------|
//! | 0      | version    | `0x01`                                                     |
//! | 1..7   | created    | Unix milliseconds, 48 bits big-endian (ids sort by time)   |
//! | 7      | key id     | which server key the MAC is under (0-255)                  |
//! | 8..12  | stream     | who made it: a random id per writer process (a replica)    |
//! | 12..16 | sequence   | the decision's number within its stream                    |
//! | 16..28 | MAC        | the first 12 bytes of keyed BLAKE3 of bytes 0..16          |
//!
//! The locator is what storage keys a decision by; the creation time tells a
//! late redemption without a read; (stream, sequence) lets a log written in
//! blocks find it. The MAC makes ids unguessable: 96 bits under a server key,
//! checked before any lookup, so a forged or altered id is answered exactly
//! as an unknown one and costs no read.
//!
//! Keys rotate: key 0 is derived from the server's customer key (so a store
//! needs no second secret); keys 1-255 come from `--decision-id-keys-file`
//! (or `OFFER_BANDIT_DECISION_ID_KEYS`), the first listed signs new ids and
//! all listed verify. Keep a retired key listed until the longest reward
//! window after its last use has closed.
//!
//! # Version 0 (before this spec)
//!
//! 32 hex digits: 8 bytes of Unix ms, a 4-byte boot tag, a 4-byte counter; no
//! MAC. They stay redeemable until their windows close (their records are
//! found by the same 16-byte key); a version-0 id always starts with `0000`,
//! a version-1 locator with `01`, so the two never collide.

use std::{
    fmt,
    sync::atomic::{AtomicU64, Ordering},
};

use serde::{Deserialize, Serialize};

/// The current id version.
pub(crate) const VERSION: u8 = 1;
/// Bytes of a locator (the stored key of a decision).
pub(crate) const LOCATOR_BYTES: usize = 16;
/// Bytes of the MAC that follows the locator in a version-1 id.
pub(crate) const MAC_BYTES: usize = 12;
/// Largest creation time a version-1 id holds (48 bits of milliseconds).
const MAX_MS: i64 = (1 << 48) - 1;

/// A decision's locator: the 16 bytes storage keys it by. Version 1 ids
/// carry it followed by their MAC; version 0 ids are just the locator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DecisionId(pub [u8; LOCATOR_BYTES]);

impl DecisionId {
    /// The id's version (0 for ids made before the spec).
    pub fn version(&self) -> u8 {
        if self.0[0] == VERSION { VERSION } else { 0 }
    }

    /// Unix milliseconds when the decision was made.
    pub fn created_ms(&self) -> i64 {
        if self.version() == VERSION {
            let mut ms = [0u8; 8];
            ms[2..].copy_from_slice(&self.0[1..7]);
            i64::from_be_bytes(ms)
        } else {
            let mut ms = [0u8; 8];
            ms.copy_from_slice(&self.0[..8]);
            i64::from_be_bytes(ms)
        }
    }

    /// The key the id's MAC is under (version 1).
    pub fn key_id(&self) -> Option<u8> {
        (self.version() == VERSION).then_some(self.0[7])
    }

    /// The stream (writer process) that made it and its sequence number there
    /// (version 1).
    pub fn stream_seq(&self) -> Option<(u32, u32)> {
        (self.version() == VERSION).then(|| {
            let (mut s, mut n) = ([0u8; 4], [0u8; 4]);
            s.copy_from_slice(&self.0[8..12]);
            n.copy_from_slice(&self.0[12..16]);
            (u32::from_be_bytes(s), u32::from_be_bytes(n))
        })
    }

    /// The first locator of a version-1 id made at `ms` (for time-ordered
    /// scans of stored decisions).
    pub fn v1_time_prefix(ms: i64) -> [u8; 7] {
        let be = ms.clamp(0, MAX_MS).to_be_bytes();
        let mut out = [0u8; 7];
        out[0] = VERSION;
        out[1..].copy_from_slice(&be[2..]);
        out
    }
}

/// Locators print as their 32 hex digits (logs and stored-data errors; what
/// a caller redeems is [`IdKeys::encode`]'s form).
impl fmt::Display for DecisionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

/// Why a string is not a decision id this server will look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Not of the id's shape: wrong length or not hex.
    #[error(
        "decision_id must be the hex id SelectOffer returned (56 hex digits; 32 for ids made before version 1)"
    )]
    Malformed,
    /// Of the right shape, but no decision of this server: its MAC does not
    /// verify, its key is not known, or its version is not. Answered exactly
    /// as an unknown decision, so that it tells a prober nothing.
    #[error("no such decision")]
    Unknown,
}

/// The keys decision ids are signed and verified with (see the module docs).
#[derive(Clone)]
pub struct IdKeys {
    /// The key new ids are signed with.
    signing: u8,
    /// Every key that verifies, by id.
    keys: Vec<(u8, [u8; 32])>,
}

impl fmt::Debug for IdKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<u8> = self.keys.iter().map(|(i, _)| *i).collect();
        write!(
            f,
            "IdKeys {{ signing: {}, verifying: {ids:?} }}",
            self.signing
        )
    }
}

impl IdKeys {
    /// Key 0 alone, derived from a server secret (the customer key).
    pub fn derived(secret: &[u8; 32]) -> Self {
        IdKeys {
            signing: 0,
            keys: vec![(
                0,
                blake3::derive_key("offer-bandit decision-id key 0", secret),
            )],
        }
    }

    /// Adds configured keys: the first signs new ids, all verify; key 0 keeps
    /// verifying. Key ids must be 1-255 and distinct.
    pub fn with_configured(mut self, configured: Vec<(u8, [u8; 32])>) -> Result<Self, String> {
        let Some(first) = configured.first() else {
            return Ok(self);
        };
        self.signing = first.0;
        for (id, key) in configured {
            if id == 0 {
                return Err(
                    "decision-id key 0 is derived from the customer key; number configured keys 1-255"
                        .into(),
                );
            }
            if self.keys.iter().any(|(k, _)| *k == id) {
                return Err(format!("decision-id key {id} is listed twice"));
            }
            self.keys.push((id, key));
        }
        Ok(self)
    }

    /// Parses a keys file: one key a line, `<id 1-255> <64 hex digits>`;
    /// blank lines and lines starting with `#` are ignored.
    pub fn parse_file(text: &str) -> Result<Vec<(u8, [u8; 32])>, String> {
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| format!("decision-id keys, line {}: {why}", n + 1);
            let mut parts = line.split_whitespace();
            let (Some(id), Some(key), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad("expected '<key id> <64 hex digits>'"));
            };
            let id: u8 = id
                .parse()
                .map_err(|_| bad("the key id must be a number from 1 to 255"))?;
            let key = parse_hex::<32>(key).ok_or_else(|| bad("the key must be 64 hex digits"))?;
            out.push((id, key));
        }
        if out.is_empty() {
            return Err("decision-id keys: no key listed".into());
        }
        Ok(out)
    }

    /// The id of the key new ids are signed with.
    pub fn signing_id(&self) -> u8 {
        self.signing
    }

    fn key(&self, id: u8) -> Option<&[u8; 32]> {
        self.keys.iter().find(|(k, _)| *k == id).map(|(_, k)| k)
    }

    fn mac(key: &[u8; 32], locator: &[u8; LOCATOR_BYTES]) -> [u8; MAC_BYTES] {
        let full = blake3::keyed_hash(key, locator);
        let mut out = [0u8; MAC_BYTES];
        out.copy_from_slice(&full.as_bytes()[..MAC_BYTES]);
        out
    }

    /// The id a caller gets: a version-1 locator with its MAC, a version-0
    /// locator as it was. A version-1 locator whose key is no longer listed
    /// prints as its locator alone (it can no longer be redeemed).
    pub fn encode(&self, id: &DecisionId) -> String {
        match id.key_id().and_then(|k| self.key(k)) {
            Some(key) => {
                let mut bytes = [0u8; LOCATOR_BYTES + MAC_BYTES];
                bytes[..LOCATOR_BYTES].copy_from_slice(&id.0);
                bytes[LOCATOR_BYTES..].copy_from_slice(&Self::mac(key, &id.0));
                hex(&bytes)
            }
            None => hex(&id.0),
        }
    }

    /// The locator of an id a caller sent, if it is one of this server's.
    pub fn decode(&self, s: &str) -> Result<DecisionId, IdError> {
        const V1_HEX: usize = 2 * (LOCATOR_BYTES + MAC_BYTES);
        match s.len() {
            V1_HEX => {
                let bytes =
                    parse_hex::<{ LOCATOR_BYTES + MAC_BYTES }>(s).ok_or(IdError::Malformed)?;
                let mut locator = [0u8; LOCATOR_BYTES];
                locator.copy_from_slice(&bytes[..LOCATOR_BYTES]);
                let id = DecisionId(locator);
                let key = id
                    .key_id()
                    .and_then(|k| self.key(k))
                    .ok_or(IdError::Unknown)?;
                let want = Self::mac(key, &locator);
                // Constant time: no early exit on the first differing byte.
                let diff = want
                    .iter()
                    .zip(&bytes[LOCATOR_BYTES..])
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b));
                if diff == 0 {
                    Ok(id)
                } else {
                    Err(IdError::Unknown)
                }
            }
            32 => {
                let id = DecisionId(parse_hex::<LOCATOR_BYTES>(s).ok_or(IdError::Malformed)?);
                // A version-1 locator without its MAC is not an id.
                if id.version() == 0 {
                    Ok(id)
                } else {
                    Err(IdError::Unknown)
                }
            }
            _ => Err(IdError::Malformed),
        }
    }
}

/// Lowercase hex, by table, in one allocation (every SelectOffer reply
/// encodes an id).
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = vec![0u8; bytes.len() * 2];
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
    // Only ASCII digits were written.
    String::from_utf8(out).unwrap_or_default()
}

fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        *o = hex_val(pair[0])? << 4 | hex_val(pair[1])?;
    }
    Some(out)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Makes unique, time-ordered version-1 locators without coordination: a
/// random stream id per generator (a process), a sequence within it; after
/// 2^32 decisions the stream moves on to the next id.
#[derive(Debug)]
pub(crate) struct IdGenerator {
    stream: u32,
    key_id: u8,
    counter: AtomicU64,
}

impl IdGenerator {
    /// A generator signing under `key_id`, on a random stream.
    pub(crate) fn new(key_id: u8) -> Self {
        IdGenerator {
            stream: rand::random(),
            key_id,
            counter: AtomicU64::new(0),
        }
    }

    /// The next locator, stamped with `now_ms`.
    pub(crate) fn next(&self, now_ms: i64) -> DecisionId {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let stream = self.stream.wrapping_add((n >> 32) as u32);
        let mut id = [0u8; LOCATOR_BYTES];
        id[..7].copy_from_slice(&DecisionId::v1_time_prefix(now_ms));
        id[7] = self.key_id;
        id[8..12].copy_from_slice(&stream.to_be_bytes());
        id[12..].copy_from_slice(&(n as u32).to_be_bytes());
        DecisionId(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> IdKeys {
        IdKeys::derived(&[7; 32])
    }

    #[test]
    fn v1_ids_round_trip_and_carry_their_fields() {
        let k = keys();
        let g = IdGenerator::new(k.signing_id());
        let a = g.next(1_700_000_000_000);
        let b = g.next(1_700_000_000_001);
        assert!(a < b, "ids sort by time");
        assert_ne!(g.next(5), g.next(5));
        assert_eq!(a.version(), 1);
        assert_eq!(a.created_ms(), 1_700_000_000_000);
        assert_eq!(a.key_id(), Some(0));
        let (sa, na) = a.stream_seq().unwrap_or_default();
        let (sb, nb) = b.stream_seq().unwrap_or_default();
        assert_eq!((sa, na + 1), (sb, nb));
        let s = k.encode(&a);
        assert_eq!(s.len(), 56);
        assert_eq!(k.decode(&s), Ok(a));
        assert_eq!(k.decode(&s.to_uppercase()), Ok(a));
    }

    #[test]
    fn altered_or_foreign_ids_are_unknown() {
        let k = keys();
        let id = IdGenerator::new(0).next(1_700_000_000_000);
        let s = k.encode(&id);
        // Every single-digit change anywhere (locator or MAC) is refused.
        for i in 0..s.len() {
            let mut t = s.clone().into_bytes();
            t[i] = if t[i] == b'0' { b'1' } else { b'0' };
            let t = String::from_utf8(t).unwrap_or_default();
            assert_eq!(k.decode(&t), Err(IdError::Unknown), "digit {i}");
        }
        // Another server's key: unknown.
        let other = IdKeys::derived(&[8; 32]);
        assert_eq!(other.decode(&s), Err(IdError::Unknown));
        // The locator alone is not an id.
        assert_eq!(k.decode(&s[..32]), Err(IdError::Unknown));
        assert_eq!(k.decode("xyz"), Err(IdError::Malformed));
        assert_eq!(k.decode(&"g".repeat(56)), Err(IdError::Malformed));
        assert_eq!(k.decode(&"g".repeat(32)), Err(IdError::Malformed));
    }

    #[test]
    fn version_0_ids_still_decode() {
        // 8 bytes of ms, a boot tag, a counter: the format before version 1.
        let mut old = [0u8; 16];
        old[..8].copy_from_slice(&1_700_000_000_000i64.to_be_bytes());
        old[8..].copy_from_slice(&[9, 9, 9, 9, 0, 0, 0, 3]);
        let id = DecisionId(old);
        assert_eq!(id.version(), 0);
        assert_eq!(id.created_ms(), 1_700_000_000_000);
        let k = keys();
        assert_eq!(k.encode(&id).len(), 32);
        assert_eq!(k.decode(&k.encode(&id)), Ok(id));
        // Version-0 ids sort before every version-1 id.
        assert!(id < IdGenerator::new(0).next(0));
    }

    #[test]
    fn keys_rotate_old_ones_verify_until_removed() -> Result<(), String> {
        let secret = [3; 32];
        let file = "# rotation\n2 ".to_owned() + &"ab".repeat(32) + "\n1 " + &"cd".repeat(32);
        let old = IdKeys::derived(&secret)
            .with_configured(IdKeys::parse_file(&("1 ".to_owned() + &"cd".repeat(32)))?)?;
        let new = IdKeys::derived(&secret).with_configured(IdKeys::parse_file(&file)?)?;
        assert_eq!(old.signing_id(), 1);
        assert_eq!(new.signing_id(), 2);
        let under_old = IdGenerator::new(1).next(1_000);
        let under_new = IdGenerator::new(2).next(1_000);
        let derived = IdGenerator::new(0).next(1_000);
        let s_old = old.encode(&under_old);
        assert_eq!(new.decode(&s_old), Ok(under_old), "key 1 still verifies");
        assert_eq!(new.decode(&new.encode(&under_new)), Ok(under_new));
        assert_eq!(
            new.decode(&new.encode(&derived)),
            Ok(derived),
            "key 0 always verifies"
        );
        // Key 1 removed: its ids are no longer ids.
        let retired = IdKeys::derived(&secret)
            .with_configured(IdKeys::parse_file(&("2 ".to_owned() + &"ab".repeat(32)))?)?;
        assert_eq!(retired.decode(&s_old), Err(IdError::Unknown));
        // Bad files.
        assert!(IdKeys::parse_file("").is_err());
        assert!(IdKeys::parse_file("1 abc").is_err());
        assert!(IdKeys::parse_file(&("300 ".to_owned() + &"ab".repeat(32))).is_err());
        let zero = IdKeys::parse_file(&("0 ".to_owned() + &"ab".repeat(32)))?;
        assert!(IdKeys::derived(&secret).with_configured(zero).is_err());
        let twice = IdKeys::parse_file(&format!("1 {}\n1 {}", "ab".repeat(32), "cd".repeat(32)))?;
        assert!(IdKeys::derived(&secret).with_configured(twice).is_err());
        Ok(())
    }

    #[test]
    fn a_wrong_guess_is_hopeless() {
        // Neighbouring sequence numbers with a guessed MAC: none verify.
        let k = keys();
        let g = IdGenerator::new(0);
        let mine = g.next(1_700_000_000_000);
        let mut hits = 0;
        for n in 0..10_000u32 {
            let mut loc = mine.0;
            loc[12..].copy_from_slice(&n.to_be_bytes());
            let guess = hex(&loc) + &k.encode(&mine)[32..];
            hits += usize::from(k.decode(&guess).is_ok() && DecisionId(loc) != mine);
        }
        assert_eq!(hits, 0);
    }
}
