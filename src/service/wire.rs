//! SelectOffer's request as the server decodes it: the protobuf message
//! `offerbandit.v1.SelectOfferRequest`, byte for byte the one in
//! [`crate::proto`], decoded by hand so that the context goes from the wire
//! into a plain list of entries, which validation sorts once into a
//! [`Context`] ([`split_context`]). The generated decoder builds a hash map
//! of the context first (a SipHash and an allocation per feature), which
//! validation then copied into a second map; this one does neither, and no
//! order of keys makes it worse than O(n log n).
//!
//! Clients keep the generated message: `build.rs` generates the servers
//! apart, with this type for SelectOffer's request. Tests (below, and a fuzz
//! target) check that both decoders accept and refuse the same bytes and
//! agree on what they read.

use prost::{
    DecodeError, Message,
    bytes::{Buf, BufMut},
    encoding::{self, DecodeContext, WireType},
};

use crate::{
    context::{Context, FeatureValue},
    proto::{self, feature_value::Kind},
};

const MESSAGE: &str = "SelectOfferRequest";

/// What a context entry takes on the wire, at least in practice: its tag
/// and length, the key's tag, length and a few letters, the value's.
const ENTRY_BYTES_AT_LEAST: usize = 8;

/// `offerbandit.v1.SelectOfferRequest`, with its context's entries in the
/// order sent ([`split_context`] makes them a [`Context`]). Protobuf's rules
/// hold: a field sent twice keeps its last value, a context key sent twice
/// its last entry, unknown fields are skipped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SelectOfferRequest {
    /// Field 1.
    pub campaign: String,
    /// Field 2's entries, in the order sent: a value, or `None` for one that
    /// sets none of number, category or flag (validation refuses it). A
    /// plain list while decoding, so that no order of keys makes decoding
    /// slower than linear; [`split_context`] sorts it once.
    pub context: Vec<(String, Option<FeatureValue>)>,
    /// Field 3.
    pub candidate_offer_ids: Vec<String>,
    /// Field 4.
    pub customer_id: String,
    /// Field 5.
    pub request_id: String,
    /// Field 6.
    pub explain: bool,
    /// Field 7.
    pub personalization_consent: Option<bool>,
}

impl SelectOfferRequest {
    /// Decodes one context entry onto `context`.
    fn merge_entry(
        &mut self,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        if self.context.capacity() == 0 {
            // Room for the entries the rest of the message can hold at a
            // typical 8 bytes or more each, up to 32: one allocation for a
            // usual context instead of a doubling per power of two.
            self.context
                .reserve((buf.remaining() / ENTRY_BYTES_AT_LEAST + 1).min(32));
        }
        if wire_type == WireType::LengthDelimited
            && let Some((used, name, value)) = entry_in_place(buf.chunk())
        {
            buf.advance(used);
            self.context.push((name, value));
            return Ok(());
        }
        let mut entry = Entry::default();
        encoding::message::merge(wire_type, &mut entry, buf, ctx)?;
        let Entry { name, value } = entry;
        self.context.push((name, value.0));
        Ok(())
    }
}

/// A context entry in the shape nearly every client writes, read in place:
/// the entry's length, then the key (tag 1) and the value (tag 2), each
/// length under 128 bytes and so one varint byte, the value one field
/// (a double, a category of valid UTF-8, or a one-byte flag) or none, all
/// inside `chunk`. Returns the bytes it used, the name and the value; `None`
/// for anything else (fields in another order or sent twice, a longer
/// length, unknown fields, bad UTF-8, bytes that end early), which prost's
/// nested-message step then decodes from the same position. Both read the
/// same bytes alike (tests below): this only skips the generic step's
/// per-field dispatch for two nested messages, and its recursion count,
/// which cannot run out at a request's top level (entries are depth 1 and
/// their values 2, of prost's 100). The caller has checked that the entry
/// comes length-delimited.
fn entry_in_place(chunk: &[u8]) -> Option<(usize, String, Option<FeatureValue>)> {
    let one_byte = |n: u8| (n < 0x80).then_some(usize::from(n));
    let (&len, rest) = chunk.split_first()?;
    let entry = rest.get(..one_byte(len)?)?;
    let [0x0a, name_len, rest @ ..] = entry else {
        return None;
    };
    let (name, rest) = rest.split_at_checked(one_byte(*name_len)?)?;
    let [0x12, value_len, value @ ..] = rest else {
        return None;
    };
    if one_byte(*value_len)? != value.len() {
        return None;
    }
    let value = match value {
        [] => None,
        [0x09, x @ ..] => Some(FeatureValue::Number(f64::from_le_bytes(x.try_into().ok()?))),
        [0x12, c_len, c @ ..] if one_byte(*c_len)? == c.len() => Some(FeatureValue::Category(
            std::str::from_utf8(c).ok()?.to_owned(),
        )),
        [0x18, b] if *b < 0x80 => Some(FeatureValue::Flag(*b != 0)),
        _ => return None,
    };
    let name = std::str::from_utf8(name).ok()?.to_owned();
    Some((1 + entry.len(), name, value))
}

/// A request's context entries as a [`Context`] and the names sent without
/// a value (sorted): each name's last entry counts, as in a protobuf map.
/// One sort, O(n log n) in the number of entries whatever their order.
pub fn split_context(mut entries: Vec<(String, Option<FeatureValue>)>) -> (Context, Vec<String>) {
    crate::context::sort_keeping_last(&mut entries);
    let mut unset = Vec::new();
    let mut context = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        match value {
            Some(v) => context.push((name, v)),
            None => unset.push(name),
        }
    }
    (Context::from_sorted(context), unset)
}

/// A context map entry: key 1, value 2. Decoded through prost's own
/// nested-message step (so that its recursion limit counts as for the
/// generated decoder) when [`entry_in_place`] does not read it.
#[derive(Debug, Default)]
struct Entry {
    name: String,
    value: Value,
}

impl Message for Entry {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        encoding::string::encode(1, &self.name, buf);
        encoding::message::encode(2, &self.value, buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => merge_string(wire_type, &mut self.name, buf, ctx),
            2 => encoding::message::merge(wire_type, &mut self.value, buf, ctx),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        encoding::string::encoded_len(1, &self.name)
            + encoding::message::encoded_len(2, &self.value)
    }

    fn clear(&mut self) {
        *self = Entry::default();
    }
}

/// A `FeatureValue` message: its oneof's last field wins; one that sets
/// none leaves the value as it was (none, unless merged twice).
#[derive(Debug, Default)]
struct Value(Option<FeatureValue>);

impl Message for Value {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        match &self.0 {
            Some(FeatureValue::Number(x)) => encoding::double::encode(1, x, buf),
            Some(FeatureValue::Category(c)) => encoding::string::encode(2, c, buf),
            Some(FeatureValue::Flag(b)) => encoding::bool::encode(3, b, buf),
            None => {}
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => {
                let mut x = 0.0;
                encoding::double::merge(wire_type, &mut x, buf, ctx)?;
                self.0 = Some(FeatureValue::Number(x));
            }
            2 => {
                let mut c = String::new();
                merge_string(wire_type, &mut c, buf, ctx)?;
                self.0 = Some(FeatureValue::Category(c));
            }
            3 => {
                let mut b = false;
                encoding::bool::merge(wire_type, &mut b, buf, ctx)?;
                self.0 = Some(FeatureValue::Flag(b));
            }
            _ => encoding::skip_field(wire_type, tag, buf, ctx)?,
        }
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        match &self.0 {
            Some(FeatureValue::Number(x)) => encoding::double::encoded_len(1, x),
            Some(FeatureValue::Category(c)) => encoding::string::encoded_len(2, c),
            Some(FeatureValue::Flag(b)) => encoding::bool::encoded_len(3, b),
            None => 0,
        }
    }

    fn clear(&mut self) {
        self.0 = None;
    }
}

/// `encoding::string::merge`, with a shortcut for what nearly every string
/// is: a length under 16 KiB (a varint of one or two bytes) and the valid
/// UTF-8 after it in the buffer's current chunk. The string is then copied
/// once into an allocation of its length, where prost reserves and grows
/// generically (measured on the demo's request, 17 strings: decoding went
/// from 6,860 to 5,520 instructions, `benches/instructions.sh`). Anything else (a longer length, a string split
/// across chunks, bytes that end early, bad UTF-8, another wire type) goes
/// to prost's own merge from the same position, so both accept and refuse
/// the same bytes with the same errors (tests below).
fn merge_string(
    wire_type: WireType,
    value: &mut String,
    buf: &mut impl Buf,
    ctx: DecodeContext,
) -> Result<(), DecodeError> {
    if wire_type == WireType::LengthDelimited {
        let chunk = buf.chunk();
        let (len, header) = match chunk {
            [b0, ..] if *b0 < 0x80 => (usize::from(*b0), 1),
            [b0, b1, ..] if *b1 < 0x80 => (usize::from(b0 & 0x7f) | usize::from(*b1) << 7, 2),
            _ => (0, 0),
        };
        if header > 0
            && let Some(bytes) = chunk.get(header..header + len)
            && let Ok(text) = std::str::from_utf8(bytes)
        {
            *value = text.to_owned();
            buf.advance(header + len);
            return Ok(());
        }
    }
    encoding::string::merge(wire_type, value, buf, ctx)
}

/// Names the field an error came from, as the generated decoders do.
fn within(field: &'static str) -> impl FnOnce(DecodeError) -> DecodeError {
    move |mut e| {
        e.push(MESSAGE, field);
        e
    }
}

impl Message for SelectOfferRequest {
    /// Encodes through the generated message: only tests and clients of the
    /// in-process API encode this type, never the server's hot path.
    fn encode_raw(&self, buf: &mut impl BufMut) {
        proto::SelectOfferRequest::from(self.clone()).encode_raw(buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => merge_string(wire_type, &mut self.campaign, buf, ctx).map_err(within("campaign")),
            2 => self
                .merge_entry(wire_type, buf, ctx)
                .map_err(within("context")),
            3 => {
                encoding::string::merge_repeated(wire_type, &mut self.candidate_offer_ids, buf, ctx)
                    .map_err(within("candidate_offer_ids"))
            }
            4 => merge_string(wire_type, &mut self.customer_id, buf, ctx)
                .map_err(within("customer_id")),
            5 => merge_string(wire_type, &mut self.request_id, buf, ctx)
                .map_err(within("request_id")),
            6 => encoding::bool::merge(wire_type, &mut self.explain, buf, ctx)
                .map_err(within("explain")),
            7 => encoding::bool::merge(
                wire_type,
                self.personalization_consent.get_or_insert(false),
                buf,
                ctx,
            )
            .map_err(within("personalization_consent")),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        proto::SelectOfferRequest::from(self.clone()).encoded_len()
    }

    fn clear(&mut self) {
        *self = SelectOfferRequest::default();
    }
}

impl From<proto::SelectOfferRequest> for SelectOfferRequest {
    fn from(r: proto::SelectOfferRequest) -> Self {
        let context = r
            .context
            .into_iter()
            .map(|(name, value)| {
                let value = value.kind.map(|kind| match kind {
                    Kind::Number(x) => FeatureValue::Number(x),
                    Kind::Category(c) => FeatureValue::Category(c),
                    Kind::Flag(b) => FeatureValue::Flag(b),
                });
                (name, value)
            })
            .collect();
        SelectOfferRequest {
            campaign: r.campaign,
            context,
            candidate_offer_ids: r.candidate_offer_ids,
            customer_id: r.customer_id,
            request_id: r.request_id,
            explain: r.explain,
            personalization_consent: r.personalization_consent,
        }
    }
}

impl From<SelectOfferRequest> for proto::SelectOfferRequest {
    fn from(r: SelectOfferRequest) -> Self {
        // In the order sent: a map keeps each key's last entry.
        let context = r.context.into_iter().map(|(name, value)| {
            let kind = value.map(|v| match v {
                FeatureValue::Number(x) => Kind::Number(x),
                FeatureValue::Category(c) => Kind::Category(c),
                FeatureValue::Flag(b) => Kind::Flag(b),
            });
            (name, proto::FeatureValue { kind })
        });
        proto::SelectOfferRequest {
            campaign: r.campaign,
            context: context.collect(),
            candidate_offer_ids: r.candidate_offer_ids,
            customer_id: r.customer_id,
            request_id: r.request_id,
            explain: r.explain,
            personalization_consent: r.personalization_consent,
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use rand::{Rng, RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn random_value(rng: &mut impl Rng) -> proto::FeatureValue {
        let kind = match rng.random_range(0..5) {
            0 => None,
            1 => Some(Kind::Number(rng.random_range(-1e3..1e3))),
            2 => Some(Kind::Number(
                [f64::NAN, f64::INFINITY, -0.0][rng.random_range(0..3)],
            )),
            3 => Some(Kind::Category(
                ["", "lapsing", "ÿ€", "x"][rng.random_range(0..4)].into(),
            )),
            _ => Some(Kind::Flag(rng.random())),
        };
        proto::FeatureValue { kind }
    }

    fn random_request(rng: &mut impl Rng) -> proto::SelectOfferRequest {
        let names = ["", "tier", "visits", "lifecycle", "hour", "é"];
        proto::SelectOfferRequest {
            campaign: ["", "coffee", "x.y"][rng.random_range(0..3)].into(),
            context: (0..rng.random_range(0..7))
                .map(|_| {
                    (
                        names[rng.random_range(0..names.len())].to_owned(),
                        random_value(rng),
                    )
                })
                .collect(),
            candidate_offer_ids: (0..rng.random_range(0..3))
                .map(|i| format!("o{i}"))
                .collect(),
            customer_id: ["", "c1"][rng.random_range(0..2)].into(),
            request_id: ["", "r"][rng.random_range(0..2)].into(),
            explain: rng.random(),
            personalization_consent: [None, Some(false), Some(true)][rng.random_range(0..3)],
        }
    }

    /// Both decoders on `bytes`: both refuse, or both accept and agree.
    fn agree(bytes: &[u8]) -> bool {
        let generated = proto::SelectOfferRequest::decode(bytes);
        let ours = SelectOfferRequest::decode(bytes);
        match (generated, ours) {
            (Ok(g), Ok(o)) => read(SelectOfferRequest::from(g)) == read(o),
            (Err(_), Err(_)) => true,
            (g, o) => panic!("decoders disagree on {bytes:?}: generated {g:?}, ours {o:?}"),
        }
    }

    /// What validation reads of a request: its context as each name's last
    /// entry, sorted (numbers by their bits: NaN is not equal to itself),
    /// then every other field.
    #[allow(clippy::type_complexity)]
    fn read(
        r: SelectOfferRequest,
    ) -> (
        Vec<(String, Option<Result<u64, FeatureValue>>)>,
        Vec<String>,
        SelectOfferRequest,
    ) {
        let mut entries = r.context.clone();
        crate::context::sort_keeping_last(&mut entries);
        let entries = entries
            .into_iter()
            .map(|(name, v)| {
                let v = v.map(|v| match v {
                    FeatureValue::Number(x) => Ok(x.to_bits()),
                    other => Err(other),
                });
                (name, v)
            })
            .collect();
        let (_, unset) = split_context(r.context.clone());
        let rest = SelectOfferRequest {
            context: Vec::new(),
            ..r
        };
        (entries, unset, rest)
    }

    #[test]
    fn decodes_what_the_generated_encoder_writes_as_the_generated_decoder_does() {
        let mut rng = ChaCha8Rng::seed_from_u64(19);
        for _ in 0..5_000 {
            let bytes = random_request(&mut rng).encode_to_vec();
            assert!(agree(&bytes));
        }
    }

    #[test]
    fn agrees_with_the_generated_decoder_on_damaged_and_repeated_bytes() {
        let mut rng = ChaCha8Rng::seed_from_u64(20);
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..20_000 {
            let mut bytes = random_request(&mut rng).encode_to_vec();
            // Fields and entries sent twice: the last one wins in both.
            if rng.random_bool(0.3) {
                let more = random_request(&mut rng).encode_to_vec();
                bytes.extend_from_slice(&more);
            }
            if !bytes.is_empty() {
                for _ in 0..rng.random_range(0..3) {
                    let i = rng.random_range(0..bytes.len());
                    bytes[i] = rng.random();
                }
                if rng.random_bool(0.2) {
                    bytes.truncate(rng.random_range(0..bytes.len()));
                }
            }
            assert!(agree(&bytes));
            if proto::SelectOfferRequest::decode(bytes.as_slice()).is_ok() {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
        // Both kinds of input were exercised.
        assert!(
            accepted > 1_000 && refused > 1_000,
            "{accepted} / {refused}"
        );
    }

    #[test]
    fn a_key_sent_again_keeps_its_last_value_and_a_valueless_entry_is_kept_apart() {
        let entry = |name: &str, kind: Option<Kind>| proto::SelectOfferRequest {
            context: [(name.to_owned(), proto::FeatureValue { kind })].into(),
            ..Default::default()
        };
        let mut bytes = entry("tier", None).encode_to_vec();
        bytes.extend(entry("tier", Some(Kind::Category("gold".into()))).encode_to_vec());
        bytes.extend(entry("visits", Some(Kind::Number(3.0))).encode_to_vec());
        bytes.extend(entry("visits", None).encode_to_vec());
        let r = SelectOfferRequest::decode(bytes.as_slice()).expect("decodes");
        let (context, unset) = split_context(r.context);
        assert_eq!(
            context.get("tier"),
            Some(&FeatureValue::Category("gold".into()))
        );
        assert_eq!(context.get("visits"), None);
        assert_eq!(unset, vec!["visits".to_owned()]);
        assert!(agree(&bytes));
    }

    #[test]
    fn many_entries_in_any_order_decode_in_linear_time_and_split_in_one_sort() {
        // 4 MiB of entries (the server's message limit) in reverse order,
        // half without a value: inserting them one by one into a sorted
        // context was quadratic, minutes of CPU a request.
        let mut bytes = Vec::new();
        let mut n = 0;
        while bytes.len() < 4 << 20 {
            let kind = (n % 2 == 0).then_some(Kind::Flag(true));
            let entry = proto::SelectOfferRequest {
                context: [(
                    format!("k{:07}", 1_000_000 - n),
                    proto::FeatureValue { kind },
                )]
                .into(),
                ..Default::default()
            };
            bytes.extend(entry.encode_to_vec());
            n += 1;
        }
        let started = std::time::Instant::now();
        let r = SelectOfferRequest::decode(bytes.as_slice()).expect("decodes");
        let (context, unset) = split_context(r.context);
        // Generous for a debug build on a shared machine; the quadratic
        // version took minutes.
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        assert_eq!(context.len() + unset.len(), n);
        assert!(unset.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn strings_of_every_length_class_and_split_buffers_decode_as_prost_decodes_them() {
        // Lengths around the shortcut's one- and two-byte varints (and past
        // them: prost's own merge), valid and invalid UTF-8, in every string
        // field the shortcut reads; each message also cut short, and read
        // from a buffer split in two chunks (the shortcut does not apply
        // across the split).
        let mut rng = ChaCha8Rng::seed_from_u64(22);
        for len in [0, 1, 2, 127, 128, 129, 300, 16_383, 16_384, 16_385, 40_000] {
            for bad_utf8 in [false, true] {
                let text = "é".repeat(len / 2) + &"x".repeat(len % 2);
                let request = proto::SelectOfferRequest {
                    campaign: text.clone(),
                    context: [(
                        text.clone(),
                        proto::FeatureValue {
                            kind: Some(Kind::Category(text.clone())),
                        },
                    )]
                    .into(),
                    customer_id: text.clone(),
                    request_id: text.clone(),
                    ..Default::default()
                };
                let mut bytes = request.encode_to_vec();
                if bad_utf8 && len > 1 {
                    // Every "é" (c3 a9) starts with a lone continuation
                    // byte instead: UTF-8 the generated decoder refuses.
                    for b in bytes.iter_mut().filter(|b| **b == 0xc3) {
                        *b = 0xbf;
                    }
                }
                assert!(agree(&bytes));
                let cut = rng.random_range(0..bytes.len().max(1));
                assert!(agree(&bytes[..cut]));
                let whole = SelectOfferRequest::decode(bytes.as_slice());
                assert_eq!(whole.is_err(), bad_utf8 && len > 1, "len {len}");
                for at in [1, cut, bytes.len().saturating_sub(1)] {
                    let at = at.min(bytes.len());
                    let split = SelectOfferRequest::decode(Buf::chain(&bytes[..at], &bytes[at..]));
                    match (&whole, &split) {
                        (Ok(w), Ok(s)) => assert_eq!(read(w.clone()), read(s.clone())),
                        (Err(w), Err(s)) => assert_eq!(w.to_string(), s.to_string()),
                        _ => panic!("len {len}: split at {at} decodes otherwise: {split:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn entries_in_the_usual_shape_are_read_in_place_and_every_other_shape_as_prost_reads_it() {
        // A context entry as field 2 of the request: its length, then `body`.
        let entry = |body: &[u8]| {
            let mut bytes = vec![0x12, u8::try_from(body.len()).expect("a short entry")];
            bytes.extend_from_slice(body);
            bytes
        };
        let keyed = |name: &[u8], value: &[u8]| {
            let mut body = vec![0x0a, u8::try_from(name.len()).expect("a short name")];
            body.extend_from_slice(name);
            body.extend_from_slice(&[0x12, u8::try_from(value.len()).expect("a short value")]);
            body.extend_from_slice(value);
            body
        };
        let mut number = vec![0x09];
        number.extend_from_slice(&2.5f64.to_le_bytes());
        let category = [0x12, 4, b'g', b'o', b'l', b'd'];
        let in_place: [(&[u8], &[u8]); 7] = [
            (b"hour", &number),
            (b"tier", &category),
            (b"app", &[0x18, 1]),
            (b"app", &[0x18, 0]),
            (b"app", &[0x18, 7]),
            (b"unset", &[]),
            (b"", &category),
        ];
        for (name, value) in in_place {
            let bytes = entry(&keyed(name, value));
            assert!(entry_in_place(&bytes[1..]).is_some(), "{bytes:?}");
            assert!(agree(&bytes), "{bytes:?}");
        }
        let mut reversed = vec![0x12, 6];
        reversed.extend_from_slice(&category);
        reversed.extend_from_slice(&[0x0a, 1, b't']);
        let mut two_values = keyed(b"t", &category);
        two_values.extend_from_slice(&[0x12, 2, 0x18, 1]);
        let mut unknown = keyed(b"t", &category);
        unknown.extend_from_slice(&[0x20, 1]);
        let generic: [Vec<u8>; 17] = [
            reversed,
            two_values,
            unknown,
            vec![],                                              // an entry of length 0
            [vec![0x8a, 0x00, 1, b't'], vec![0x12, 0]].concat(), // a tag written in two bytes
            keyed(b"t", &[0x08, 1]),                             // a number as a varint
            keyed(b"t", &[0x0d, 0, 0, 0, 0]),                    // a number as fixed32
            keyed(b"t", &[&number[..], &[0x18, 1]].concat()),    // two of the oneof's fields
            keyed(b"t", &[0x12, 0, 0x12, 0]),                    // a category sent twice
            keyed(b"t", &[0x18, 0x80, 0x01]),                    // a two-byte flag
            keyed(b"t", &[0x18, 0x80]),                          // a flag cut short
            keyed(b"t", &[0x09, 0, 0, 0]),                       // a double cut short
            keyed(b"t", &[0x12, 2, 0xbf, 0xbf]),                 // bad UTF-8
            keyed(&[0xbf], &category),                           // a bad name
            keyed(b"t", &[0x12, 9, b'g']),                       // a category cut short
            keyed(b"t", &[0x1a, 1, b'x']),                       // an unknown value field
            [vec![0x0a, 1, b't'], vec![0x12, 2, 0x18]].concat(), // a value cut short
        ];
        // A field after the entry (the campaign) checks where each read
        // leaves the buffer.
        let campaign = [0x0a, 1, b'c'];
        for body in generic {
            let bytes = entry(&body);
            assert!(entry_in_place(&bytes[1..]).is_none(), "{bytes:?}");
            assert!(agree(&bytes), "{bytes:?}");
            assert!(agree(&[&bytes[..], &campaign[..]].concat()), "{bytes:?}");
        }
        for (name, value) in in_place {
            let bytes = [&entry(&keyed(name, value))[..], &campaign[..]].concat();
            assert!(agree(&bytes), "{bytes:?}");
            let read =
                SelectOfferRequest::decode(bytes.as_slice()).expect("an entry and a campaign");
            assert_eq!((read.context.len(), read.campaign.as_str()), (1, "c"));
        }
        // An empty category is read in place too.
        let empty = entry(&keyed(b"t", &[0x12, 0]));
        assert!(entry_in_place(&empty[1..]).is_some() && agree(&empty));
        // The entry's bytes under every other wire type of field 2 are not
        // an entry: prost refuses them (or reads a varint), and so must this.
        let body = keyed(b"t", &category);
        for tag in [0x10, 0x11, 0x13, 0x15] {
            let mut bytes = vec![tag, u8::try_from(body.len()).expect("a short entry")];
            bytes.extend_from_slice(&body);
            assert!(agree(&bytes), "{bytes:?}");
        }
        // A length of two varint bytes, and an entry split across chunks.
        let body = keyed(&[b'n'; 120], &category);
        assert!(
            (128..256).contains(&body.len()),
            "a length of two varint bytes, the second 1"
        );
        let long = [vec![0x12, 0x80 | (body.len() & 0x7f) as u8, 0x01], body].concat();
        assert!(entry_in_place(&long[1..]).is_none());
        assert_eq!(
            SelectOfferRequest::decode(long.as_slice())
                .expect("a long entry decodes")
                .context[0]
                .0
                .len(),
            120
        );
        assert!(agree(&long));
        let short = entry(&keyed(b"tier", &category));
        let whole = SelectOfferRequest::decode(short.as_slice()).expect("a short entry decodes");
        for at in 1..short.len() {
            let split = SelectOfferRequest::decode(Buf::chain(&short[..at], &short[at..]));
            assert_eq!(
                split.expect("a split entry decodes"),
                whole,
                "split at {at}"
            );
        }
        assert_eq!(
            whole.context,
            [(
                "tier".to_owned(),
                Some(FeatureValue::Category("gold".into()))
            )]
        );
    }

    #[test]
    fn lengths_written_oddly_wrong_wire_types_and_splits_inside_a_length_decode_as_prost_does() {
        // Field 1 (campaign) as: a two-byte length that is really 0 or 5
        // (a varint may carry zero high bits), a varint instead of bytes, a
        // length longer than what follows, and a context entry whose name
        // has a two-byte zero length.
        let cases: [&[u8]; 6] = [
            &[0x0a, 0x80, 0x00],
            &[0x0a, 0x85, 0x00, b'c', b'o', b'f', b'f', b'e'],
            &[0x08, 0x05],
            &[0x0a, 0x85, 0x00, b'c', b'o'],
            &[0x0a, 0x05, b'c', b'o', b'f', b'f', 0xff],
            &[0x12, 0x04, 0x0a, 0x80, 0x00, 0x12],
        ];
        for bytes in cases {
            assert!(agree(bytes), "{bytes:?}");
            let whole = SelectOfferRequest::decode(bytes);
            // Split at every byte: inside a two-byte length too.
            for at in 0..=bytes.len() {
                let split = SelectOfferRequest::decode(Buf::chain(&bytes[..at], &bytes[at..]));
                match (&whole, &split) {
                    (Ok(w), Ok(s)) => assert_eq!(read(w.clone()), read(s.clone())),
                    (Err(w), Err(s)) => assert_eq!(w.to_string(), s.to_string()),
                    _ => panic!("{bytes:?} split at {at}: {whole:?} against {split:?}"),
                }
            }
        }
        let read_campaign = |bytes: &[u8]| SelectOfferRequest::decode(bytes).map(|r| r.campaign);
        assert_eq!(read_campaign(cases[0]).ok().as_deref(), Some(""));
        assert_eq!(read_campaign(cases[1]).ok().as_deref(), Some("coffe"));
        for refused in &cases[2..5] {
            assert!(SelectOfferRequest::decode(*refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn encodes_to_bytes_the_generated_decoder_reads_back() {
        let mut rng = ChaCha8Rng::seed_from_u64(21);
        for _ in 0..1_000 {
            let original = random_request(&mut rng);
            let ours = SelectOfferRequest::from(original.clone());
            let back = proto::SelectOfferRequest::decode(ours.encode_to_vec().as_slice())
                .expect("decodes");
            assert_eq!(back.encoded_len(), ours.encoded_len());
            assert!(agree(&back.encode_to_vec()));
            assert_eq!(back.context.len(), original.context.len());
        }
    }
}
