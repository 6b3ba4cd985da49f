//! The customer context of a visit: named feature values, independent of any
//! wire format.

use serde::{Deserialize, Serialize};

/// One feature value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FeatureValue {
    /// A finite number.
    Number(f64),
    /// A category label.
    Category(String),
    /// A yes/no value.
    Flag(bool),
}

/// Feature name -> value: a visit's context, kept sorted by name.
///
/// A small sorted vector rather than a hash map: contexts hold a handful of
/// features, are built once per request by one sort of the entries decoded
/// from the wire (`crate::service::wire::split_context`) and read by name a
/// few times, so a binary search
/// beats hashing every key, and what a decision record keeps of it comes out
/// already sorted. A name appears once; inserting it again replaces its
/// value (protobuf's rule for a map key sent twice: the last one wins).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    entries: Vec<(String, FeatureValue)>,
}

impl Context {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// A context of `entries` already sorted by name, each name once (what
    /// [`sort_keeping_last`] leaves): no second sort.
    pub(crate) fn from_sorted(entries: Vec<(String, FeatureValue)>) -> Self {
        debug_assert!(entries.windows(2).all(|w| w[0].0 < w[1].0));
        Context { entries }
    }

    /// Removes the entries whose names are not in `kept` (sorted, as a
    /// context's names are) and returns those names, sorted (moved, not
    /// copied).
    pub(crate) fn remove_names_not_in(&mut self, kept: &[String]) -> Vec<String> {
        let mut removed = Vec::with_capacity(self.len().saturating_sub(kept.len()));
        self.move_out(kept, false, |name, _| removed.push(name));
        removed
    }

    /// Removes the entries whose names are in `names` (sorted, as a
    /// context's are) and returns them, sorted (moved, not copied).
    /// [`Context::extend`] puts them back.
    pub(crate) fn take_names_in(&mut self, names: &[String]) -> Vec<(String, FeatureValue)> {
        let mut taken = Vec::with_capacity(names.len().min(self.len()));
        self.move_out(names, true, |name, value| taken.push((name, value)));
        taken
    }

    /// Hands each entry whose name is (`listed`) or is not (`!listed`) in
    /// `names` (sorted) to `out`, in order, and drops it from the context:
    /// one walk over both lists.
    fn move_out(
        &mut self,
        names: &[String],
        listed: bool,
        mut out: impl FnMut(String, FeatureValue),
    ) {
        let mut names = SortedNames::new(names);
        self.entries.retain_mut(|(name, value)| {
            let go = names.contains(name) == listed;
            if go {
                let value = std::mem::replace(value, FeatureValue::Flag(false));
                out(std::mem::take(name), value);
            }
            !go
        });
    }

    /// An empty context with room for `n` features.
    pub fn with_capacity(n: usize) -> Self {
        Context {
            entries: Vec::with_capacity(n),
        }
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| name_order(k, name))
    }

    /// Sets `name` to `value`; returns the value it replaces.
    pub fn insert(&mut self, name: String, value: FeatureValue) -> Option<FeatureValue> {
        // Appending in order (as a sorted source does) is the common case.
        if self.entries.last().is_none_or(|(k, _)| *k < name) {
            self.entries.push((name, value));
            return None;
        }
        match self.position(&name) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (name, value));
                None
            }
        }
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&FeatureValue> {
        self.position(name).ok().map(|i| &self.entries[i].1)
    }

    /// Whether `name` has a value.
    pub fn contains_key(&self, name: &str) -> bool {
        self.position(name).is_ok()
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// (name, value) pairs, sorted by name.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&String, &FeatureValue)> + Clone {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// Names, sorted.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &String> + Clone {
        self.entries.iter().map(|(k, _)| k)
    }

    /// Removes every entry and returns the names, sorted (moved, not
    /// copied).
    pub(crate) fn take_all_names(&mut self) -> Vec<String> {
        std::mem::take(&mut self.entries)
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }

    /// Removes every feature, keeping the allocation.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Values looked up by names asked in ascending order: one merge walk
    /// over the context, not a search per name.
    pub(crate) fn by_name(&self) -> ValuesByName<'_> {
        ValuesByName {
            entries: &self.entries,
            at: 0,
        }
    }
}

/// [`Context::by_name`].
pub(crate) struct ValuesByName<'a> {
    entries: &'a [(String, FeatureValue)],
    at: usize,
}

impl<'a> ValuesByName<'a> {
    /// The value of `name`; `name` must not sort before the previous
    /// question's.
    pub(crate) fn get(&mut self, name: &str) -> Option<&'a FeatureValue> {
        seek(self.entries, &mut self.at, name, |(n, _)| n).map(|(_, v)| v)
    }
}

/// The item named `name` in `items` (sorted by `key`), moving the cursor
/// `at` forward to it: asked in ascending order, a whole walk is linear.
/// One comparison per step (a `<` then an `==` would compare the same two
/// names twice).
fn seek<'a, T>(
    items: &'a [T],
    at: &mut usize,
    name: &str,
    key: impl Fn(&T) -> &str,
) -> Option<&'a T> {
    while let Some(item) = items.get(*at) {
        match name_order(key(item), name) {
            std::cmp::Ordering::Less => *at += 1,
            std::cmp::Ordering::Equal => return Some(item),
            std::cmp::Ordering::Greater => return None,
        }
    }
    None
}

/// Membership in a sorted list of names, for names asked in ascending
/// order (a context's): each question moves a cursor forward, so a whole
/// context costs one merge walk, not a search per name.
pub(crate) struct SortedNames<'a> {
    names: &'a [String],
    at: usize,
}

impl<'a> SortedNames<'a> {
    /// Over `names`, sorted ascending.
    pub(crate) fn new(names: &'a [String]) -> Self {
        SortedNames { names, at: 0 }
    }

    /// Whether `name` is in the list; `name` must not sort before the
    /// previous question's.
    pub(crate) fn contains(&mut self, name: &str) -> bool {
        seek(self.names, &mut self.at, name, String::as_str).is_some()
    }
}

/// `a.cmp(b)`, names' order. Names that differ in their first byte (most
/// pairs of a usual context) are ordered by it in place; only the others go
/// to the library's comparison and its `memcmp` call (the sort of the demo
/// request's 9 features made 20 such calls).
#[inline]
pub(crate) fn name_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.as_bytes().first(), b.as_bytes().first()) {
        (Some(x), Some(y)) if x != y => x.cmp(y),
        _ => a.cmp(b),
    }
}

/// Sorts `entries` by name, keeping the last value of a name sent more
/// than once: O(n log n) whatever their order (inserting one by one would
/// be O(n²) for names sent in reverse order).
pub(crate) fn sort_keeping_last<V>(entries: &mut Vec<(String, V)>) {
    // Stable: a name's values stay in the order they came.
    entries.sort_by(|a, b| name_order(&a.0, &b.0));
    // `dedup_by` drops the later of two equal names: hand its value to the
    // one kept first.
    entries.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            std::mem::swap(&mut later.1, &mut kept.1);
        }
        same
    });
}

impl FromIterator<(String, FeatureValue)> for Context {
    fn from_iter<I: IntoIterator<Item = (String, FeatureValue)>>(iter: I) -> Self {
        let mut c = Context::new();
        c.extend(iter);
        c
    }
}

impl Extend<(String, FeatureValue)> for Context {
    /// Later values win over earlier ones and over the context's own.
    fn extend<I: IntoIterator<Item = (String, FeatureValue)>>(&mut self, iter: I) {
        self.entries.extend(iter);
        sort_keeping_last(&mut self.entries);
    }
}

impl<const N: usize> From<[(String, FeatureValue); N]> for Context {
    fn from(pairs: [(String, FeatureValue); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl IntoIterator for Context {
    type Item = (String, FeatureValue);
    type IntoIter = std::vec::IntoIter<(String, FeatureValue)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<'a> IntoIterator for &'a Context {
    type Item = (&'a String, &'a FeatureValue);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, FeatureValue)>,
        fn(&'a (String, FeatureValue)) -> (&'a String, &'a FeatureValue),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

impl std::ops::Index<&str> for Context {
    type Output = FeatureValue;
    /// Panics when `name` has no value, as a map's index does: for tests
    /// and callers that checked first.
    fn index(&self, name: &str) -> &FeatureValue {
        match self.get(name) {
            Some(v) => v,
            None => panic!("no feature '{name}' in the context"),
        }
    }
}

impl Serialize for Context {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Context {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = std::collections::BTreeMap::<String, FeatureValue>::deserialize(d)?;
        Ok(map.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(x: f64) -> FeatureValue {
        FeatureValue::Number(x)
    }

    #[test]
    fn names_compare_as_strings_do() {
        let names = [
            "", "a", "ab", "abc", "b", "ba", "tier", "tiers", "é", "è", "éa", "aé", "az", "Z",
            "\u{0}", "\u{7f}", "\u{80}", "\u{ffff}",
        ];
        for a in names {
            for b in names {
                assert_eq!(name_order(a, b), a.cmp(b), "{a:?} against {b:?}");
            }
        }
    }

    #[test]
    fn names_not_kept_move_out_in_order_and_the_rest_stay() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for (keys, kept, removed) in [
            (
                &["a", "b", "c", "d"][..],
                &["b", "d", "z"][..],
                &["a", "c"][..],
            ),
            (&["a", "b"], &[], &["a", "b"]),
            (&["m"], &["a", "m", "n"], &[]),
            (&["a", "b", "c"], &["0", "c"], &["a", "b"]),
        ] {
            let mut c: Context = keys.iter().map(|k| (k.to_string(), n(1.0))).collect();
            let kept = names(kept);
            assert_eq!(c.remove_names_not_in(&kept), names(removed), "{keys:?}");
            let left: Vec<&str> = c.keys().map(String::as_str).collect();
            let want: Vec<&str> = keys
                .iter()
                .copied()
                .filter(|k| !removed.contains(k))
                .collect();
            assert_eq!(left, want);
            let mut members = SortedNames::new(&kept);
            assert!(
                keys.iter()
                    .all(|k| members.contains(k) != removed.contains(k))
            );
        }
    }

    #[test]
    fn names_taken_out_come_back_whole() {
        let full: Context = [
            ("a".to_string(), n(1.0)),
            ("b".to_string(), FeatureValue::Category("x".into())),
            ("c".to_string(), FeatureValue::Flag(true)),
            ("d".to_string(), n(4.0)),
        ]
        .into();
        let mut c = full.clone();
        let taken = c.take_names_in(&["b".to_string(), "d".to_string(), "e".to_string()]);
        assert_eq!(
            taken,
            vec![
                ("b".to_string(), FeatureValue::Category("x".into())),
                ("d".to_string(), n(4.0))
            ]
        );
        assert_eq!(c.keys().map(String::as_str).collect::<Vec<_>>(), ["a", "c"]);
        c.extend(taken);
        assert_eq!(c, full);
    }

    #[test]
    fn keeps_one_value_per_name_sorted_whatever_the_insertion_order() {
        let mut c = Context::new();
        for (k, x) in [("visits", 1.0), ("age", 2.0), ("tier", 3.0), ("age", 4.0)] {
            c.insert(k.into(), n(x));
        }
        assert_eq!(c.len(), 3);
        assert_eq!(
            c.keys().map(String::as_str).collect::<Vec<_>>(),
            ["age", "tier", "visits"]
        );
        assert_eq!(c.get("age"), Some(&n(4.0)));
        assert_eq!(c.insert("tier".into(), n(5.0)), Some(n(3.0)));
        assert!(c.contains_key("visits") && c.get("zzz").is_none());
    }

    #[test]
    fn a_bulk_build_keeps_the_last_value_of_a_name_in_any_order() {
        let pairs = |names: &[&str]| -> Vec<(String, FeatureValue)> {
            names
                .iter()
                .enumerate()
                .map(|(i, k)| ((*k).to_owned(), n(i as f64)))
                .collect()
        };
        let c: Context = pairs(&["z", "a", "m", "a", "z", "b"]).into_iter().collect();
        assert_eq!(
            c.iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect::<Vec<_>>(),
            [("a", n(3.0)), ("b", n(5.0)), ("m", n(2.0)), ("z", n(4.0))]
        );
        let mut c = c;
        c.extend(pairs(&["m", "q"]));
        assert_eq!(c.get("m"), Some(&n(0.0)));
        assert_eq!(c.len(), 5);
        // 200,000 names in reverse order: one sort, not 10^10 moves (the
        // test would take minutes if inserting were quadratic).
        let many: Context = (0..200_000)
            .rev()
            .map(|i| (format!("k{i:07}"), n(f64::from(i))))
            .collect();
        assert_eq!(many.len(), 200_000);
        assert_eq!(many.keys().next().map(String::as_str), Some("k0000000"));
    }

    #[test]
    fn serializes_as_the_map_it_replaces() {
        let c: Context = [
            ("tier".to_owned(), FeatureValue::Category("gold".into())),
            ("member".to_owned(), FeatureValue::Flag(true)),
        ]
        .into();
        let map: std::collections::HashMap<String, FeatureValue> =
            c.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let json = serde_json::to_string(&c).expect("serializes");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&json).expect("json"),
            serde_json::to_value(&map).expect("json")
        );
        assert_eq!(serde_json::from_str::<Context>(&json).expect("reads"), c);
        // Sorted maps write the same bytes, in any format.
        let sorted: std::collections::BTreeMap<_, _> = map.into_iter().collect();
        let bytes = postcard::to_allocvec(&c).expect("postcard");
        assert_eq!(bytes, postcard::to_allocvec(&sorted).expect("postcard"));
        assert_eq!(postcard::from_bytes::<Context>(&bytes).expect("reads"), c);
    }
}
