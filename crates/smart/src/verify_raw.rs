//! Response verification on the bytes, without building the whole JSON tree: the fast path
//! of the backstop for the common case where the upstream returned only what the grant
//! covers.
//!
//! Building a `serde_json::Value` for a 30-entry searchset and writing it back out cost more
//! than everything else the gateway does for the request. The check itself reads only a
//! handful of members of each resource (`resourceType`, `id`, the compartment reference
//! elements, the elements behind enforceable restrictions, `contained`, ...), so each
//! resource is read into a *sparse* tree holding just those top-level members and the rest
//! is skipped. [`ResponseCheck`]'s verdict on the sparse tree is its verdict on the whole
//! resource. When every entry is visible the body leaves byte for byte as it came; when
//! only `include` entries must go, they are cut out of the text and the rest is kept as is.
//! The common verdicts come from one scan of the bytes (`verify_single`); the multi-pass
//! check here settles the rest and is the reference the single pass is tested against.
//!
//! Anything else is [`RawVerdict::NeedsTree`]: the caller parses the tree and runs
//! [`crate::verify_response`], which removes entries and re-serialises. That includes bodies
//! whose meaning depends on the parser: a member the check reads that appears twice at any
//! depth (`"subject"` twice, or `"reference"` twice inside it). serde_json keeps the last
//! one, a client may keep the first; forwarding such bytes unchanged could show another
//! patient's data, while the re-serialised tree has one member only.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::LazyLock;

use fhirgate_fhir::compartment::MEMBERS;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

use crate::decision::DenyReason;
use crate::restriction::TOKEN_ELEMENTS;
use crate::verify::{FilterOutcome, ResponseCheck, suppressed_outcome, verify_resource};
use crate::verify_single::single_pass;

/// What the byte-level check concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawVerdict {
    /// Everything in the body is visible under the check: it may leave unchanged.
    Unchanged(FilterOutcome),
    /// Only `include` entries had to go: the body with those entries cut out (and, in a
    /// searchset, the `suppressed` OperationOutcome entry appended); every other byte is
    /// the upstream's.
    Filtered {
        body: Vec<u8>,
        outcome: FilterOutcome,
    },
    /// Something must be removed, or the body has a shape only the tree check decides:
    /// parse it and call [`crate::verify_response`].
    NeedsTree,
}

/// Top-level members [`ResponseCheck`] reads on a resource, sorted for binary search. Kept
/// in step with the check by construction: the compartment element paths come from the
/// same generated tables `patient_links` walks, the restriction elements from
/// [`TOKEN_ELEMENTS`].
static CHECKED_MEMBERS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let mut keys = members_without_restrictions();
    keys.extend(TOKEN_ELEMENTS.iter().map(|(_, element)| *element));
    keys.sort_unstable();
    keys.dedup();
    keys
});

/// The members read whether or not a scope carries a restriction.
fn members_without_restrictions() -> Vec<&'static str> {
    let mut keys = vec![
        "resourceType",
        "id",
        // Contained targets of `#id` references.
        "contained",
        // Binary under patient/ scopes.
        "securityContext",
        // Bundles inside a response are verified entry by entry.
        "entry",
        "type",
    ];
    for member in MEMBERS {
        let paths = member
            .anchor_paths
            .iter()
            .chain(member.other_paths)
            .chain(member.params.iter().flat_map(|p| p.paths));
        keys.extend(paths.map(|p| p.split('.').next().unwrap_or(p)));
    }
    keys
}

/// [`CHECKED_MEMBERS`] in buckets by [`bucket`]: every member name of every resource in a
/// response is looked up here and most are not checked, so a lookup should mostly end at
/// an empty bucket or one name, without comparing bytes (grouping by length alone left
/// several names to compare for `text`, `code` or `type`).
static CHECKED_INDEX: LazyLock<Vec<Vec<&'static str>>> = LazyLock::new(|| {
    let mut buckets = vec![Vec::new(); BUCKETS];
    for key in CHECKED_MEMBERS.iter() {
        if let Some(names) = buckets.get_mut(bucket(key.as_bytes())) {
            names.push(*key);
        }
    }
    buckets
});

const BUCKETS: usize = 256;

fn bucket(key: &[u8]) -> usize {
    let first = key.first().map_or(0, |&b| usize::from(b));
    let last = key.last().map_or(0, |&b| usize::from(b));
    (key.len().wrapping_mul(37) ^ (first << 2) ^ last.wrapping_mul(11)) % BUCKETS
}

/// Whether the check reads member `key`. The restriction elements are read only when a
/// scope carries a restriction ([`ResponseCheck::reads_restrictions`]); without one, building
/// `code` and `category` (nested codings that differ from resource to resource) was most of
/// the cost of checking a searchset.
pub(crate) fn is_checked(key: &str, restrictions: bool) -> bool {
    CHECKED_INDEX
        .get(bucket(key.as_bytes()))
        .is_some_and(|names| names.contains(&key))
        && (restrictions || !RESTRICTION_ONLY.contains(&key))
}

/// The restriction elements that are in [`CHECKED_MEMBERS`] only for restrictions (`type`,
/// for one, is also read to tell a searchset from other Bundles).
static RESTRICTION_ONLY: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let needed = members_without_restrictions();
    TOKEN_ELEMENTS
        .iter()
        .map(|(_, element)| *element)
        .filter(|element| !needed.contains(element))
        .collect()
});

/// Verify a successful JSON response body as [`crate::verify_response`] would, on the
/// bytes. `Err` is the refusal `verify_response` gives for a single resource the grant
/// does not cover.
pub fn verify_response_bytes(check: &ResponseCheck, body: &[u8]) -> Result<RawVerdict, DenyReason> {
    // Valid UTF-8 throughout, so skipped members cannot hide malformed text either.
    // `simdutf8` checks a vector of bytes per step: on the bench's 20 KB searchset it takes
    // a third of the instructions of `std::str::from_utf8`, which the reference below keeps.
    let Ok(text) = simdutf8::basic::from_utf8(body) else {
        return Ok(RawVerdict::NeedsTree);
    };
    // The single pass answers the common cases; whatever it cannot settle is decided by
    // the multi-pass check, which therefore stays the reference for every verdict.
    single_pass(check, text).unwrap_or_else(|| multi_pass(check, text))
}

/// [`verify_response_bytes`] without the single pass: the reference the differential
/// tests and the `verify_bytes` fuzz target hold the single pass to.
pub(crate) fn verify_response_bytes_multi_pass(
    check: &ResponseCheck,
    body: &[u8],
) -> Result<RawVerdict, DenyReason> {
    let Ok(text) = std::str::from_utf8(body) else {
        return Ok(RawVerdict::NeedsTree);
    };
    multi_pass(check, text)
}

/// Scans the bytes up to four times (the entry array, each entry, each resource); kept
/// because it settles every shape, including the ones that need splicing.
fn multi_pass(check: &ResponseCheck, text: &str) -> Result<RawVerdict, DenyReason> {
    let Ok(top) = top_level(text, check.reads_restrictions()) else {
        return Ok(RawVerdict::NeedsTree);
    };
    let TopLevel { sparse, entries } = top;
    match list_kind(&sparse) {
        Some(kind) => Ok(verify_entries(
            check,
            text,
            entries,
            kind == ListKind::History,
        )),
        None => verify_whole(check, sparse, entries.map(RawValue::get)),
    }
}

/// Which entry rules apply: `filter_searchset` only filters searchsets and histories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListKind {
    Searchset,
    History,
}

pub(crate) fn list_kind(sparse: &Map<String, Value>) -> Option<ListKind> {
    if sparse.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return None;
    }
    match sparse.get("type").and_then(Value::as_str) {
        Some("searchset") => Some(ListKind::Searchset),
        Some("history") => Some(ListKind::History),
        _ => None,
    }
}

/// A body that is not a list is one resource: visible as a whole or refused.
pub(crate) fn verify_whole(
    check: &ResponseCheck,
    mut sparse: Map<String, Value>,
    entries: Option<&str>,
) -> Result<RawVerdict, DenyReason> {
    if let Some(raw) = entries {
        // Not a list (a document Bundle, a List): its entries are part of the resource.
        let Ok(value) = strict_value(raw) else {
            return Ok(RawVerdict::NeedsTree);
        };
        sparse.insert("entry".to_owned(), value);
    }
    let patients = verify_resource(check, &Value::Object(sparse))?;
    Ok(RawVerdict::Unchanged(FilterOutcome {
        patients,
        ..FilterOutcome::default()
    }))
}

/// The entry rules of `filter_searchset`. Removing `include` entries is done by splicing;
/// anything else it would remove (a `match` entry, an entry without a resource) means
/// `NeedsTree`: the tree check then also drops `Bundle.total` and the caller logs it.
fn verify_entries(
    check: &ResponseCheck,
    text: &str,
    entries: Option<&RawValue>,
    history: bool,
) -> RawVerdict {
    let mut outcome = FilterOutcome::default();
    let Some(entries) = entries else {
        return RawVerdict::Unchanged(outcome);
    };
    let Ok(list) = serde_json::from_str::<Vec<&RawValue>>(entries.get()) else {
        return RawVerdict::NeedsTree;
    };
    let mut kept = Vec::with_capacity(list.len());
    for raw in list {
        let Ok(entry) = serde_json::from_str::<RawEntry<'_>>(raw.get()) else {
            return RawVerdict::NeedsTree;
        };
        let Some(resource) = entry.resource.0 else {
            if history {
                kept.push(raw);
                continue;
            }
            return RawVerdict::NeedsTree;
        };
        let Ok(resource) = sparse_resource(resource.get(), check.reads_restrictions()) else {
            return RawVerdict::NeedsTree;
        };
        let mode = entry.search.and_then(|s| s.mode);
        if mode.as_deref() == Some("outcome") {
            if resource.get("resourceType").and_then(Value::as_str) == Some("OperationOutcome") {
                kept.push(raw);
                continue;
            }
            return RawVerdict::NeedsTree;
        }
        match verify_resource(check, &resource) {
            Ok(patients) => {
                outcome.patients.extend(patients);
                kept.push(raw);
            }
            Err(_) if mode.as_deref() == Some("include") => outcome.removed_included += 1,
            Err(_) => return RawVerdict::NeedsTree,
        }
    }
    if outcome.removed() == 0 {
        return RawVerdict::Unchanged(outcome);
    }
    let kept: Vec<&str> = kept.into_iter().map(RawValue::get).collect();
    let Some(array) = span_in(text, entries.get()) else {
        return RawVerdict::NeedsTree;
    };
    match splice(text, array, &kept, (!history).then(|| outcome.removed())) {
        Some(body) => RawVerdict::Filtered { body, outcome },
        None => RawVerdict::NeedsTree,
    }
}

/// Where `part`, a slice of `text`, lies in it.
fn span_in(text: &str, part: &str) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    text.get(start..end)?;
    Some(start..end)
}

/// `text` with its entry array (at `array`) replaced by the kept entries, plus the
/// `suppressed` outcome entry when `suppressed` counts removed entries.
pub(crate) fn splice(
    text: &str,
    array: Range<usize>,
    kept: &[&str],
    suppressed: Option<usize>,
) -> Option<Vec<u8>> {
    let before = text.get(..array.start)?;
    let after = text.get(array.end..)?;
    let mut out = Vec::with_capacity(text.len());
    out.extend_from_slice(before.as_bytes());
    out.push(b'[');
    for (i, entry) in kept.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(entry.as_bytes());
    }
    if let Some(removed) = suppressed {
        if !kept.is_empty() {
            out.push(b',');
        }
        let entry = serde_json::json!({
            "resource": suppressed_outcome(removed).to_json(),
            "search": { "mode": "outcome" },
        });
        serde_json::to_writer(&mut out, &entry).ok()?;
    }
    out.push(b']');
    out.extend_from_slice(after.as_bytes());
    Some(out)
}

/// One searchset entry: only what the entry rules read. Duplicate `resource` or `search`
/// members fail the parse, and so do unexpected types, an entry that is not an object
/// among them: serde's derive would fill a struct from an array of its fields in order, so
/// `[[own, other]]` would read the other patient's resource as `search` and skip it.
struct RawEntry<'a> {
    resource: Present<'a>,
    search: Option<RawSearch<'a>>,
}

impl<'de> Deserialize<'de> for RawEntry<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(RawEntryVisitor)
    }
}

struct RawEntryVisitor;

impl<'de> Visitor<'de> for RawEntryVisitor {
    type Value = RawEntry<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an entry object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut resource = None;
        let mut search = None;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match key.as_ref() {
                "resource" if resource.is_none() => resource = Some(map.next_value()?),
                "search" if search.is_none() => search = Some(map.next_value()?),
                "resource" | "search" => return Err(de::Error::custom("duplicate member")),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(RawEntry {
            resource: resource.unwrap_or_default(),
            search: search.flatten(),
        })
    }
}

/// `entry.search`: an object (not an array standing for its fields), `mode` at most once.
struct RawSearch<'a> {
    mode: Option<Cow<'a, str>>,
}

impl<'de> Deserialize<'de> for RawSearch<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(RawSearchVisitor)
    }
}

struct RawSearchVisitor;

impl<'de> Visitor<'de> for RawSearchVisitor {
    type Value = RawSearch<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a search object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut mode: Option<Option<Key<'de>>> = None;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if key == "mode" {
                if mode.is_some() {
                    return Err(de::Error::custom("duplicate member"));
                }
                mode = Some(map.next_value()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(RawSearch {
            mode: mode.flatten().map(|Key(mode)| mode),
        })
    }
}

/// A member that is present, even when its value is `null` (which `Option` would fold into
/// "absent": `filter_searchset` treats `"resource": null` as a resource that fails).
#[derive(Default)]
struct Present<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for Present<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a RawValue>::deserialize(d).map(|raw| Present(Some(raw)))
    }
}

/// The top level of a body: checked members as a sparse tree, `entry` kept as raw text
/// (a searchset's entries are read one at a time).
struct TopLevel<'a> {
    sparse: Map<String, Value>,
    entries: Option<&'a RawValue>,
}

fn top_level(text: &str, restrictions: bool) -> Result<TopLevel<'_>, serde_json::Error> {
    read_object(text, TopLevelVisitor { restrictions })
}

/// `text` as one JSON object read by `visitor`, with nothing but whitespace after it.
fn read_object<'de, V: Visitor<'de>>(
    text: &'de str,
    visitor: V,
) -> Result<V::Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = de.deserialize_map(visitor)?;
    de.end()?;
    Ok(value)
}

struct TopLevelVisitor {
    restrictions: bool,
}

impl<'de> Visitor<'de> for TopLevelVisitor {
    type Value = TopLevel<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut sparse = Map::new();
        let mut entries = None;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if key == "entry" {
                if entries.is_some() {
                    return Err(de::Error::custom("duplicate member"));
                }
                entries = Some(map.next_value::<&'de RawValue>()?);
            } else {
                keep_if_checked(&mut map, &mut sparse, key, self.restrictions)?;
            }
        }
        Ok(TopLevel { sparse, entries })
    }
}

fn keep_if_checked<'de, A: MapAccess<'de>>(
    map: &mut A,
    sparse: &mut Map<String, Value>,
    key: Cow<'de, str>,
    restrictions: bool,
) -> Result<(), A::Error> {
    if !is_checked(&key, restrictions) {
        map.next_value::<IgnoredAny>()?;
        return Ok(());
    }
    let value = map.next_value_seed(Strict)?;
    if sparse.insert(key.into_owned(), value).is_some() {
        return Err(de::Error::custom("duplicate member"));
    }
    Ok(())
}

/// A resource as a tree of only its checked top-level members.
fn sparse_resource(text: &str, restrictions: bool) -> Result<Value, serde_json::Error> {
    read_object(text, SparseVisitor { restrictions })
}

struct SparseVisitor {
    restrictions: bool,
}

impl<'de> Visitor<'de> for SparseVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut sparse = Map::new();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            keep_if_checked(&mut map, &mut sparse, key, self.restrictions)?;
        }
        Ok(Value::Object(sparse))
    }
}

pub(crate) fn strict_value(text: &str) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Strict.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// An object key, borrowed from the input unless it holds escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(v)))
    }
}

/// A full `Value`, except that a member name repeated in any object is an error.
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Strict.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(Strict)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let value = map.next_value_seed(Strict)?;
            if object.insert(key.into_owned(), value).is_some() {
                return Err(de::Error::custom("duplicate member"));
            }
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
#[path = "verify_raw_tests.rs"]
mod tests;
