//! The single pass of [`crate::verify_response_bytes`]: the common verdicts, a searchset
//! whose every entry stays or loses only `include` entries, from one scan of the bytes.
//!
//! The multi-pass check skips the entry array as raw text and then parses it again, entry
//! by entry and resource by resource, through serde's visitors. Here [`Scanner`] walks the
//! top object, the entry array, each entry and the top level of each resource once, and
//! builds only the members [`is_checked`] names, with the multi-pass check's own
//! [`strict_value`]. Whether the entry rules apply at all is only known from the top-level
//! `resourceType` and `type`, which may come after `entry`, so the entries are checked on
//! the assumption that the body is a list and the verdict is settled at the end.
//!
//! The single pass only ever settles a body when the multi-pass check would give the same
//! answer; everything else (a `match` entry to remove, a shape it does not read the way
//! the multi-pass check does, an entry array that turned out to belong to a non-list
//! Bundle, anything the scanner does not take) returns `None` and the caller runs the
//! multi-pass check. That keeps one reference for every verdict that needs judgement. For
//! that to hold, whatever this pass accepts the multi-pass check accepts too, read the
//! same way: the same member rules as `RawEntry` and `RawSearch` (a repeated `resource`,
//! `search` or `mode` defers, and so does an entry, resource or search that is not an
//! object), the same sparse members, and a scanner that is never looser than serde_json
//! (see `json_scan`).

use std::collections::BTreeSet;
use std::ops::Range;

use serde_json::{Map, Value};

use crate::decision::DenyReason;
use crate::json_scan::{Defer, Scanned, Scanner};
use crate::verify::{FilterOutcome, ResponseCheck, verify_resource};
use crate::verify_raw::{
    ListKind, RawVerdict, is_checked, list_kind, splice, strict_value, verify_whole,
};

/// The verdict of [`crate::verify_response_bytes`] on `text` when one pass can settle it;
/// `None` when the multi-pass check must decide.
pub(crate) fn single_pass(
    check: &ResponseCheck,
    text: &str,
) -> Option<Result<RawVerdict, DenyReason>> {
    let top = read_top(check, text).ok()?;
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
            let kept: Vec<&str> = list
                .spans
                .iter()
                .enumerate()
                .filter(|(i, _)| list.removed.binary_search(i).is_err())
                .filter_map(|(_, span)| text.get(span.clone()))
                .collect();
            if kept.len() + list.removed.len() != list.spans.len() {
                return None;
            }
            let suppressed = (kind == ListKind::Searchset).then(|| outcome.removed());
            let body = splice(text, list.array, &kept, suppressed)?;
            Some(Ok(RawVerdict::Filtered { body, outcome }))
        }
        (None, Entries::Absent) => Some(verify_whole(check, top.sparse, None)),
        (None, Entries::Raw(raw)) => Some(verify_whole(check, top.sparse, Some(raw))),
        // Entries read by the list rules in a body that is not a list (or the reverse):
        // the multi-pass check reads them as the resource they belong to.
        (None, Entries::Checked(_)) | (Some(_), Entries::Raw(_)) => None,
    }
}

struct Top<'a> {
    sparse: Map<String, Value>,
    entries: Entries<'a>,
}

enum Entries<'a> {
    Absent,
    /// Entries of a body already known not to be a list, kept as text exactly as the
    /// multi-pass check keeps them.
    Raw(&'a str),
    /// Every entry passed the list rules or is an `include` they remove.
    Checked(ListEntries),
}

#[derive(Default)]
struct ListEntries {
    /// Where the entry array lies in the body, brackets included.
    array: Range<usize>,
    /// Where each entry lies in the body, in order.
    spans: Vec<Range<usize>>,
    /// Positions of the `include` entries to cut out, ascending.
    removed: Vec<usize>,
    /// Patients of the entries that stay.
    patients: BTreeSet<String>,
    without_resource: bool,
}

fn read_top<'a>(check: &ResponseCheck, text: &'a str) -> Scanned<Top<'a>> {
    let mut s = Scanner::new(text);
    s.eat(b'{')?;
    let mut sparse = Map::new();
    let mut entries = Entries::Absent;
    let mut first = true;
    while let Some(key) = s.next_key(&mut first)? {
        if key != "entry" {
            keep_checked(&mut s, &mut sparse, key, 1, check.reads_restrictions())?;
            continue;
        }
        if !matches!(entries, Entries::Absent) {
            return Err(Defer);
        }
        // A repeated `resourceType` or `type` defers, so what is known now is final: a
        // body that is already not a list need not pay for the list rules.
        entries = if known_not_a_list(&sparse) {
            Entries::Raw(s.value_text(1)?)
        } else {
            Entries::Checked(read_entries(&mut s, check)?)
        };
    }
    s.end()?;
    Ok(Top { sparse, entries })
}

fn known_not_a_list(sparse: &Map<String, Value>) -> bool {
    match sparse.get("resourceType") {
        None => false,
        Some(rt) if rt.as_str() != Some("Bundle") => true,
        Some(_) => sparse.contains_key("type") && list_kind(sparse).is_none(),
    }
}

/// Skip a member the check does not read, or build it as the multi-pass check does; a
/// member read twice defers (serde_json keeps the last, a client may keep the first).
fn keep_checked(
    s: &mut Scanner<'_>,
    sparse: &mut Map<String, Value>,
    key: &str,
    depth: usize,
    restrictions: bool,
) -> Scanned<()> {
    if !is_checked(key, restrictions) {
        return s.skip_value(depth);
    }
    let value = build(s.value_text(depth)?)?;
    if sparse.insert(key.to_owned(), value).is_some() {
        return Err(Defer);
    }
    Ok(())
}

/// The entry array, a member of the top object: its elements sit at depth 2.
fn read_entries(s: &mut Scanner<'_>, check: &ResponseCheck) -> Scanned<ListEntries> {
    let mut list = ListEntries::default();
    let mut resource = SparseResource::default();
    let start = {
        s.peek()?;
        s.pos()
    };
    s.eat(b'[')?;
    let mut first = true;
    while s.next_element(&mut first)? {
        let from = {
            s.peek()?;
            s.pos()
        };
        read_entry(s, check, &mut list, &mut resource)?;
        list.spans.push(from..s.pos());
    }
    list.array = start..s.pos();
    Ok(list)
}

/// One entry, judged once read whole (`search` may follow `resource`).
fn read_entry<'a>(
    s: &mut Scanner<'a>,
    check: &ResponseCheck,
    list: &mut ListEntries,
    resource: &mut SparseResource<'a>,
) -> Scanned<()> {
    s.eat(b'{')?;
    let mut has_resource = false;
    let mut search = None;
    let mut first = true;
    while let Some(key) = s.next_key(&mut first)? {
        match key {
            "resource" if !has_resource => {
                resource.read(s, check.reads_restrictions())?;
                has_resource = true;
            }
            "search" if search.is_none() => search = Some(read_search(s)?),
            "resource" | "search" => return Err(Defer),
            _ => s.skip_value(3)?,
        }
    }
    let position = list.spans.len();
    let mode = search.flatten();
    if !has_resource {
        list.without_resource = true;
        return Ok(());
    }
    if mode == Some("outcome") {
        // Kept when it is an OperationOutcome; anything else is for the tree.
        let resource_type = resource.tree.get("resourceType").and_then(Value::as_str);
        return if resource_type == Some("OperationOutcome") {
            Ok(())
        } else {
            Err(Defer)
        };
    }
    let visible = match resource.verdict {
        Some(visible) => visible,
        None => {
            let visible = match verify_resource(check, &resource.tree) {
                Ok(patients) => {
                    list.patients.extend(patients);
                    true
                }
                Err(_) => false,
            };
            resource.verdict = Some(visible);
            visible
        }
    };
    if !visible {
        if mode != Some("include") {
            // A match entry to remove: the tree check also drops `total`.
            return Err(Defer);
        }
        list.removed.push(position);
    }
    Ok(())
}

/// The sparse tree of the last `entry.resource` read, kept from one entry to the next:
/// building members was most of the pass, and a patient's resources in one response
/// mostly repeat them (category, code, subject, performer), so a member whose text is the
/// same as in the previous resource keeps the value built from that text.
struct SparseResource<'a> {
    /// Always an object: its keys are those of `members`.
    tree: Value,
    members: Vec<Member<'a>>,
    /// Members the check does not read, with their text in the last resource that had them.
    skipped: Vec<Skipped<'a>>,
    /// The member names of the last resource in order, each with what it was: resources of
    /// one response list the same members in the same order, so the name at the same
    /// place is usually the same, and one comparison then says what finding it out by
    /// [`is_checked`] and a search of `members` and `skipped` would.
    layout: Vec<Slot<'a>>,
    /// The layout being recorded for the resource being read.
    next_layout: Vec<Slot<'a>>,
    /// Whether `tree` passes the check, once known: [`verify_resource`] is a function of
    /// the checked members, so it holds for the next resource too when none of them
    /// changed but `id` ([`reads_id`]). The patients of a visible tree are in the list
    /// already.
    verdict: Option<bool>,
    /// [`reads_id`] of `tree`, once asked: it holds until a member other than `id` changes.
    id_read: Option<bool>,
}

/// Whether the check reads a resource's own `id`: only to place a Patient in its own
/// compartment (`fhirgate_fhir::patient_links`). Contained resources' ids are inside
/// `contained`, and no restriction reads `id`.
fn reads_id(tree: &Map<String, Value>) -> bool {
    tree.get("resourceType")
        .and_then(Value::as_str)
        .is_none_or(|resource_type| resource_type == "Patient")
}

struct Skipped<'a> {
    key: &'a str,
    text: &'a str,
}

/// Most unchecked members remembered per response, and the shortest text worth comparing:
/// below it, validating the value costs about what comparing it does.
const MAX_SKIPPED: usize = 32;
const MIN_REPEAT: usize = 32;

/// A checked member of the resource in `tree`, the text its value was built from, and
/// whether the resource being read has it (so far).
struct Member<'a> {
    key: &'a str,
    text: &'a str,
    seen: bool,
}

/// A member name of a resource and what it was.
#[derive(Clone, Copy)]
struct Slot<'a> {
    key: &'a str,
    kind: SlotKind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SlotKind {
    /// A member the check reads, in `members`.
    Checked,
    /// A member the check does not read, remembered at this index of `skipped`.
    Skipped(usize),
    /// A member the check does not read, not remembered (`skipped` was full).
    Unchecked,
}

impl Default for SparseResource<'_> {
    fn default() -> Self {
        SparseResource {
            tree: Value::Object(Map::new()),
            members: Vec::new(),
            skipped: Vec::new(),
            layout: Vec::new(),
            next_layout: Vec::new(),
            verdict: None,
            id_read: None,
        }
    }
}

impl<'a> SparseResource<'a> {
    /// Read `entry.resource`: an object (anything else, `null` included, is for the tree)
    /// whose checked members `tree` then holds exactly as [`keep_checked`] would build them.
    fn read(&mut self, s: &mut Scanner<'a>, restrictions: bool) -> Scanned<()> {
        let Value::Object(tree) = &mut self.tree else {
            return Err(Defer);
        };
        for member in &mut self.members {
            member.seen = false;
        }
        s.eat(b'{')?;
        let mut first = true;
        // Resources of one response list their members in the same order: the member
        // after the last one found is usually the next one.
        let mut next = 0;
        // Which checked members differ from the previous resource's.
        let (mut id_changed, mut other_changed) = (false, false);
        self.next_layout.clear();
        while let Some(key) = s.next_key(&mut first)? {
            let place = self.next_layout.len();
            let known = self
                .layout
                .get(place)
                .filter(|slot| slot.key == key)
                .map(|slot| slot.kind);
            let kind = match known {
                Some(SlotKind::Skipped(at)) => {
                    skip_remembered(&mut self.skipped, at, s)?;
                    SlotKind::Skipped(at)
                }
                Some(SlotKind::Unchecked) => {
                    s.skip_value(4)?;
                    SlotKind::Unchecked
                }
                Some(SlotKind::Checked) | None => SlotKind::Checked,
            };
            self.next_layout.push(Slot { key, kind });
            if kind != SlotKind::Checked {
                continue;
            }
            let found = match self.members.get(next) {
                Some(member) if member.key == key => Some(next),
                _ => self.members.iter().position(|m| m.key == key),
            };
            if let Some(at) = found {
                next = at + 1;
            }
            match found.and_then(|at| self.members.get_mut(at)) {
                Some(member) if member.seen => return Err(Defer),
                Some(member) => {
                    member.seen = true;
                    if s.skip_repeat(member.text)? {
                        continue;
                    }
                    let text = s.value_text(4)?;
                    rebuild(tree.get_mut(key).ok_or(Defer)?, text)?;
                    member.text = text;
                    if key == "id" {
                        id_changed = true;
                    } else {
                        other_changed = true;
                    }
                }
                None if !is_checked(key, restrictions) => {
                    let kind = skip_unchecked(&mut self.skipped, s, key)?;
                    if let Some(slot) = self.next_layout.last_mut() {
                        slot.kind = kind;
                    }
                }
                None => {
                    let text = s.value_text(4)?;
                    tree.insert(key.to_owned(), build(text)?);
                    other_changed = true;
                    self.members.push(Member {
                        key,
                        text,
                        seen: true,
                    });
                }
            }
        }
        std::mem::swap(&mut self.layout, &mut self.next_layout);
        self.members.retain(|member| {
            if !member.seen {
                tree.remove(member.key);
                other_changed = true;
            }
            member.seen
        });
        if other_changed {
            self.verdict = None;
            self.id_read = None;
        } else if id_changed && *self.id_read.get_or_insert_with(|| reads_id(tree)) {
            self.verdict = None;
        }
        Ok(())
    }
}

/// Skip a resource member the check does not read. Validating it is most of the pass, and a
/// patient's resources mostly repeat their codings (`category`, `code`), so a long value is
/// first compared with the same member's text in the previous resource: the same bytes at
/// the same depth are the same valid value ([`Scanner::skip_repeat`]).
fn skip_unchecked<'a>(
    skipped: &mut Vec<Skipped<'a>>,
    s: &mut Scanner<'a>,
    key: &'a str,
) -> Scanned<SlotKind> {
    if let Some(at) = skipped.iter().position(|m| m.key == key) {
        skip_remembered(skipped, at, s)?;
        return Ok(SlotKind::Skipped(at));
    }
    let text = s.value_text(4)?;
    if skipped.len() >= MAX_SKIPPED {
        return Ok(SlotKind::Unchecked);
    }
    skipped.push(Skipped { key, text });
    Ok(SlotKind::Skipped(skipped.len() - 1))
}

/// Skip the value of the member remembered at `at` in `skipped`, and remember its text.
fn skip_remembered<'a>(skipped: &mut [Skipped<'a>], at: usize, s: &mut Scanner<'a>) -> Scanned<()> {
    let member = skipped.get_mut(at).ok_or(Defer)?;
    if member.text.len() >= MIN_REPEAT && s.skip_repeat(member.text)? {
        return Ok(());
    }
    member.text = s.value_text(4)?;
    Ok(())
}

/// `entry.search`: `null`, or an object whose `mode` (at most once) is `null` or a string
/// without escapes; its mode.
fn read_search<'a>(s: &mut Scanner<'a>) -> Scanned<Option<&'a str>> {
    match s.peek()? {
        b'n' => {
            s.skip_value(3)?;
            return Ok(None);
        }
        b'{' => s.eat(b'{')?,
        _ => return Err(Defer),
    }
    let mut mode = None;
    let mut first = true;
    while let Some(key) = s.next_key(&mut first)? {
        if key != "mode" {
            s.skip_value(4)?;
            continue;
        }
        if mode.is_some() {
            return Err(Defer);
        }
        mode = Some(match s.peek()? {
            b'n' => {
                s.skip_value(4)?;
                None
            }
            b'"' => Some(plain_string(s.value_text(4)?).ok_or(Defer)?),
            _ => return Err(Defer),
        });
    }
    Ok(mode.flatten())
}

/// A checked member's value as the multi-pass check builds it ([`strict_value`]), from
/// text the scanner has validated.
pub(crate) fn build(text: &str) -> Scanned<Value> {
    match plain_string(text) {
        Some(plain) => Ok(Value::String(plain.to_owned())),
        None => strict_value(text).map_err(|_| Defer),
    }
}

/// `*value = build(text)`, keeping the old string's buffer when both are strings: the
/// `id` changes from one resource to the next.
fn rebuild(value: &mut Value, text: &str) -> Scanned<()> {
    match (value, plain_string(text)) {
        (Value::String(old), Some(plain)) => {
            old.clear();
            old.push_str(plain);
        }
        (value, _) => *value = build(text)?,
    }
    Ok(())
}

/// The content of `text`, a value the scanner has validated, when it is a string without
/// escapes: then it has no raw control characters either, and its bytes between the
/// quotes are exactly what serde_json builds.
pub(crate) fn plain_string(text: &str) -> Option<&str> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.bytes().any(|b| b == b'\\')).then_some(inner)
}
