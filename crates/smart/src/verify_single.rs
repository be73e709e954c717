//! The single pass of [`crate::verify_response_bytes`]: the common verdict, a searchset
//! whose every entry stays, from one scan of the bytes.
//!
//! The multi-pass check skips the entry array as raw text and then parses it again, entry
//! by entry and resource by resource; on a 20 KB searchset those re-scans were about a
//! third of its cost. Here each resource is read into its sparse tree and checked while the entry array
//! is being parsed. Whether the entry rules apply at all is only known from the top-level
//! `resourceType` and `type`, which may come after `entry`, so the entries are checked on
//! the assumption that the body is a list and the verdict is settled at the end.
//!
//! When only `include` entries must go, their positions are noted and the body is cut by
//! the multi-pass check's own splice, which needs the entries' text: two more scans that
//! only skip, instead of the four the multi-pass check makes.
//!
//! The single pass only ever settles a body when the multi-pass check would give the same
//! answer; everything else (a `match` entry to remove, a shape it does not read the way
//! the multi-pass check does, an entry array that turned out to belong to a non-list
//! Bundle, any parse error) returns `None` and the caller runs the multi-pass check. That
//! keeps one reference for every verdict that needs judgement. For that to hold, whatever
//! this parser accepts the multi-pass parser accepts too: it reads entries with the same
//! member rules as `RawEntry` (a repeated `resource` or `search` fails) and resources with
//! the same sparse visitor, only ever more strictly (entries must be objects; nesting
//! counts from the top of the body, not from the resource).

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::decision::DenyReason;
use crate::verify::{FilterOutcome, ResponseCheck, verify_resource};
use crate::verify_raw::{
    Key, ListKind, RawSearch, RawVerdict, SparseVisitor, cut_entries, keep_if_checked, list_kind,
    verify_whole,
};

/// The verdict of [`crate::verify_response_bytes`] on `text` when one pass can settle it;
/// `None` when the multi-pass check must decide.
pub(crate) fn single_pass(
    check: &ResponseCheck,
    text: &str,
) -> Option<Result<RawVerdict, DenyReason>> {
    let mut de = serde_json::Deserializer::from_str(text);
    let top = de.deserialize_map(TopVisitor { check }).ok()?;
    de.end().ok()?;
    match (list_kind(&top.sparse), top.entries) {
        (Some(_), Entries::Absent) => Some(Ok(RawVerdict::Unchanged(FilterOutcome::default()))),
        (Some(kind), Entries::Checked(list)) => {
            // Only a history keeps entries without a resource (deletions); a searchset
            // loses them, which the multi-pass check hands to the tree.
            if list.without_resource && kind != ListKind::History {
                return None;
            }
            let outcome = FilterOutcome {
                removed_included: list.removed.len(),
                patients: list.patients,
                ..FilterOutcome::default()
            };
            if list.removed.is_empty() {
                return Some(Ok(RawVerdict::Unchanged(outcome)));
            }
            cut_entries(text, list.len, &list.removed, kind, outcome).map(Ok)
        }
        (None, Entries::Absent) => Some(verify_whole(check, top.sparse, None)),
        (None, Entries::Raw(raw)) => Some(verify_whole(check, top.sparse, Some(raw))),
        // Entries read by the list rules in a body that is not a list (or the reverse):
        // the multi-pass check reads them as the resource they belong to.
        (None, Entries::Checked(_)) | (Some(_), Entries::Raw(_)) => None,
    }
}

struct Top<'de> {
    sparse: Map<String, Value>,
    entries: Entries<'de>,
}

enum Entries<'de> {
    Absent,
    /// Entries of a body already known not to be a list, kept as text exactly as the
    /// multi-pass check keeps them.
    Raw(&'de RawValue),
    /// Every entry passed the list rules or is an `include` they remove.
    Checked(ListEntries),
}

#[derive(Default)]
struct ListEntries {
    /// How many entries the array holds.
    len: usize,
    /// Positions of the `include` entries to cut out, ascending.
    removed: Vec<usize>,
    /// Patients of the entries that stay.
    patients: BTreeSet<String>,
    without_resource: bool,
}

/// Aborts the parse: the tree has to judge the entry (a `match` entry to remove, an
/// outcome entry that is not an OperationOutcome), so the multi-pass check decides.
fn for_the_tree<E: de::Error>() -> E {
    E::custom("entry needs the tree check")
}

struct TopVisitor<'c> {
    check: &'c ResponseCheck,
}

impl<'de> Visitor<'de> for TopVisitor<'_> {
    type Value = Top<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top<'de>, A::Error> {
        let mut sparse = Map::new();
        let mut entries = Entries::Absent;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if key != "entry" {
                keep_if_checked(&mut map, &mut sparse, key)?;
                continue;
            }
            if !matches!(entries, Entries::Absent) {
                return Err(de::Error::custom("duplicate member"));
            }
            // A repeated `resourceType` or `type` fails the parse, so what is known now
            // is final: a body that is already not a list need not pay for the list rules.
            entries = if known_not_a_list(&sparse) {
                Entries::Raw(map.next_value::<&'de RawValue>()?)
            } else {
                Entries::Checked(map.next_value_seed(EntriesSeed { check: self.check })?)
            };
        }
        Ok(Top { sparse, entries })
    }
}

fn known_not_a_list(sparse: &Map<String, Value>) -> bool {
    match sparse.get("resourceType") {
        None => false,
        Some(rt) if rt.as_str() != Some("Bundle") => true,
        Some(_) => sparse.contains_key("type") && list_kind(sparse).is_none(),
    }
}

struct EntriesSeed<'c> {
    check: &'c ResponseCheck,
}

impl<'de> DeserializeSeed<'de> for EntriesSeed<'_> {
    type Value = ListEntries;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ListEntries, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed<'_> {
    type Value = ListEntries;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ListEntries, A::Error> {
        let mut list = ListEntries::default();
        while seq
            .next_element_seed(EntrySeed {
                check: self.check,
                list: &mut list,
            })?
            .is_some()
        {
            list.len += 1;
        }
        Ok(list)
    }
}

struct EntrySeed<'c, 'l> {
    check: &'c ResponseCheck,
    list: &'l mut ListEntries,
}

impl<'de> DeserializeSeed<'de> for EntrySeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        // Only objects: `RawEntry` would also take an array as its fields in order, a
        // shape left to the multi-pass check.
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EntrySeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an entry object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // The member rules of `RawEntry`: `search` may follow `resource`, so the entry is
        // judged once it has been read whole.
        let mut resource = None;
        let mut search = None;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match key.as_ref() {
                "resource" => {
                    if resource.is_some() {
                        return Err(de::Error::custom("duplicate member"));
                    }
                    // `null` or any non-object fails here, as `sparse_resource` fails it.
                    resource = Some(map.next_value_seed(SparseSeed)?);
                }
                "search" => {
                    if search.is_some() {
                        return Err(de::Error::custom("duplicate member"));
                    }
                    search = Some(map.next_value::<Option<RawSearch<'de>>>()?);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let mode: Option<Cow<'de, str>> = search.flatten().and_then(|s| s.mode);
        let Some(resource) = resource else {
            self.list.without_resource = true;
            return Ok(());
        };
        if mode.as_deref() == Some("outcome") {
            return if resource.get("resourceType").and_then(Value::as_str)
                == Some("OperationOutcome")
            {
                Ok(())
            } else {
                Err(for_the_tree())
            };
        }
        match verify_resource(self.check, &resource) {
            Ok(patients) => self.list.patients.extend(patients),
            Err(_) if mode.as_deref() == Some("include") => self.list.removed.push(self.list.len),
            Err(_) => return Err(for_the_tree()),
        }
        Ok(())
    }
}

struct SparseSeed;

impl<'de> DeserializeSeed<'de> for SparseSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_map(SparseVisitor)
    }
}
