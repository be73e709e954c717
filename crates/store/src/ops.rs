//! The FHIR interactions on one connection: read, vread, create, update, patch, delete and
//! history. They run inside whatever transaction the caller holds, so a transaction Bundle
//! and a single request share the same code.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value};

use crate::error::{Result, StoreError};
use crate::fhir::ResourceType;
use crate::fhirtime;
use crate::index::{self, IndexRows};

/// One stored version of a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub rtype: String,
    pub id: String,
    pub version: i64,
    pub updated_ms: i64,
    /// The resource JSON text (with `meta.versionId`/`lastUpdated`); `None` for a deletion.
    pub body: Option<String>,
}

impl Stored {
    /// Weak ETag as FHIR uses it: `W/"3"`.
    pub fn etag(&self) -> String {
        format!("W/\"{}\"", self.version)
    }

    pub fn last_modified(&self) -> String {
        fhirtime::format_http_date(self.updated_ms)
    }

    pub fn last_updated(&self) -> String {
        fhirtime::format_instant(self.updated_ms)
    }

    /// `Type/id/_history/v`, relative to the base.
    pub fn versioned_path(&self) -> String {
        format!("{}/{}/_history/{}", self.rtype, self.id, self.version)
    }

    pub fn is_deleted(&self) -> bool {
        self.body.is_none()
    }
}

/// HTTP verbs recorded in history entries (`Bundle.entry.request.method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// Parse a resource type from a URL segment (404-worthy when unknown).
pub fn resource_type(name: &str) -> Result<ResourceType> {
    ResourceType::from_name(name).ok_or_else(|| StoreError::UnknownType(name.to_owned()))
}

/// Check a resource body against the URL it was sent to. `url_id` is `Some` for update.
pub fn validate(url_type: &str, url_id: Option<&str>, resource: &Value) -> Result<()> {
    let Some(obj) = resource.as_object() else {
        return Err(StoreError::structure(
            "the body must be a JSON object (a FHIR resource)",
        ));
    };
    let Some(rt) = obj.get("resourceType").and_then(Value::as_str) else {
        return Err(StoreError::invalid(
            "resourceType is missing",
            Some("resourceType"),
        ));
    };
    if ResourceType::from_name(rt).is_none() {
        return Err(StoreError::invalid(
            format!("unknown resourceType '{rt}'"),
            Some("resourceType"),
        ));
    }
    if rt != url_type {
        return Err(StoreError::invalid(
            format!("resourceType '{rt}' does not match the URL type '{url_type}'"),
            Some("resourceType"),
        ));
    }
    match (obj.get("id"), url_id) {
        (Some(Value::String(id)), Some(url_id)) if id != url_id => {
            return Err(StoreError::invalid(
                format!("id '{id}' in the body does not match the id '{url_id}' in the URL"),
                Some(&format!("{rt}.id")),
            ));
        }
        (None, Some(_)) => {
            return Err(StoreError::invalid(
                "an update must carry the resource id in the body",
                Some(&format!("{rt}.id")),
            ));
        }
        (Some(Value::String(id)), _) if !crate::fhir::resource_type::is_valid_id(id) => {
            return Err(StoreError::invalid(
                format!("'{id}' is not a valid FHIR id"),
                Some(&format!("{rt}.id")),
            ));
        }
        (Some(v), _) if !v.is_string() => {
            return Err(StoreError::invalid(
                "id must be a string",
                Some(&format!("{rt}.id")),
            ));
        }
        _ => {}
    }
    check_elements(&mut rt.to_owned(), resource)
}

/// Structural checks that name the element: references must be strings, `meta` an object.
fn check_elements(path: &mut String, v: &Value) -> Result<()> {
    // One growing path buffer: this runs on every element of every write, so it must not
    // allocate per element; the expression text is only built on error.
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if k == "reference" && !child.is_string() {
                    return Err(StoreError::invalid(
                        "Reference.reference must be a string",
                        Some(&format!("{path}.reference")),
                    ));
                }
                if k == "meta" && !child.is_object() {
                    return Err(StoreError::invalid(
                        "meta must be an object",
                        Some(&format!("{path}.meta")),
                    ));
                }
                if matches!(child, Value::Object(_) | Value::Array(_)) && k != "contained" {
                    let len = path.len();
                    path.push('.');
                    path.push_str(k);
                    check_elements(path, child)?;
                    path.truncate(len);
                }
            }
            Ok(())
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if matches!(item, Value::Object(_) | Value::Array(_)) {
                    let len = path.len();
                    path.push('[');
                    path.push_str(&i.to_string());
                    path.push(']');
                    check_elements(path, item)?;
                    path.truncate(len);
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Each body is stored once: the current version's lives in `resources` and its history
/// row has `body = NULL` until a newer version supersedes it. Deletions never have one.
const HISTORY_BODY: &str = "CASE WHEN h.method = 'DELETE' THEN NULL ELSE COALESCE(h.body, \
     (SELECT r.body FROM resources r WHERE r.rtype = h.rtype AND r.id = h.id \
     AND r.version = h.version)) END";

fn row_to_stored(r: &rusqlite::Row<'_>) -> rusqlite::Result<Stored> {
    Ok(Stored {
        rtype: r.get(0)?,
        id: r.get(1)?,
        version: r.get(2)?,
        updated_ms: r.get(3)?,
        body: r.get(4)?,
    })
}

/// The current version, including a deletion marker (`body == None`).
pub fn current(conn: &Connection, rtype: &str, id: &str) -> Result<Option<Stored>> {
    Ok(conn
        .prepare_cached(
            "SELECT rtype, id, version, updated_ms, CASE deleted WHEN 0 THEN body END \
             FROM resources WHERE rtype = ?1 AND id = ?2",
        )?
        .query_row(params![rtype, id], row_to_stored)
        .optional()?)
}

/// `GET [type]/[id]`: the current version, 404 when unknown, 410 when deleted.
pub fn read(conn: &Connection, rtype: &str, id: &str) -> Result<Stored> {
    match current(conn, rtype, id)? {
        Some(s) if !s.is_deleted() => Ok(s),
        Some(_) => Err(StoreError::Gone {
            rtype: rtype.to_owned(),
            id: id.to_owned(),
        }),
        None => Err(StoreError::NotFound {
            rtype: rtype.to_owned(),
            id: id.to_owned(),
        }),
    }
}

/// `GET [type]/[id]/_history/[vid]`.
pub fn vread(conn: &Connection, rtype: &str, id: &str, vid: &str) -> Result<Stored> {
    let not_found = || StoreError::VersionNotFound {
        rtype: rtype.to_owned(),
        id: id.to_owned(),
        version: vid.to_owned(),
    };
    let version: i64 = vid.parse().map_err(|_| not_found())?;
    let found = conn
        .prepare_cached(&format!(
            "SELECT rtype, id, version, updated_ms, {HISTORY_BODY} FROM history h \
                 WHERE rtype = ?1 AND id = ?2 AND version = ?3"
        ))?
        .query_row(params![rtype, id, version], row_to_stored)
        .optional()?;
    match found {
        Some(s) if s.is_deleted() => Err(StoreError::Gone {
            rtype: rtype.to_owned(),
            id: id.to_owned(),
        }),
        Some(s) => Ok(s),
        None => Err(not_found()),
    }
}

/// Write one new version (or deletion) and its history row and index rows.
/// Set `id`, `meta.versionId` and `meta.lastUpdated`, then serialise and index.
fn stamp(
    rtype: &str,
    id: &str,
    version: i64,
    now: i64,
    mut v: Value,
) -> (Value, String, IndexRows) {
    if let Some(obj) = v.as_object_mut() {
        obj.insert("id".into(), Value::String(id.to_owned()));
        let meta = obj
            .entry("meta")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert("versionId".into(), Value::String(version.to_string()));
            meta.insert(
                "lastUpdated".into(),
                Value::String(fhirtime::format_instant(now)),
            );
        }
    }
    let rows = index::extract(rtype, &v);
    let body = v.to_string();
    (v, body, rows)
}

/// Write one new version (or deletion) and its history row and index rows.
fn write_version(
    conn: &Connection,
    rtype: &str,
    id: &str,
    version: i64,
    resource: Option<Value>,
    method: Method,
) -> Result<Stored> {
    let now = fhirtime::now_ms();
    let stamped = resource.map(|v| {
        let (_, body, rows) = stamp(rtype, id, version, now, v);
        (body, rows)
    });
    store_rows(conn, rtype, id, version, now, stamped, method)
}

fn store_rows(
    conn: &Connection,
    rtype: &str,
    id: &str,
    version: i64,
    now: i64,
    stamped: Option<(String, IndexRows)>,
    method: Method,
) -> Result<Stored> {
    let (body, rows) = match stamped {
        Some((b, r)) => (Some(b), Some(r)),
        None => (None, None),
    };
    if version > 1 {
        // The body of the version being superseded moves from `resources` into its
        // history row (see HISTORY_BODY).
        conn.prepare_cached(
            "UPDATE history SET body = (SELECT body FROM resources \
             WHERE rtype = ?1 AND id = ?2 AND deleted = 0) \
             WHERE rtype = ?1 AND id = ?2 AND version = ?3 AND method != 'DELETE'",
        )?
        .execute(params![rtype, id, version - 1])?;
    }
    let rid: i64 = conn
        .prepare_cached(
            "INSERT INTO resources (rtype, id, version, updated_ms, deleted, body) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (rtype, id) DO UPDATE SET version = excluded.version, \
             updated_ms = excluded.updated_ms, deleted = excluded.deleted, body = excluded.body \
             RETURNING rid",
        )?
        .query_row(
            params![
                rtype,
                id,
                version,
                now,
                body.is_none(),
                body.as_deref().unwrap_or("")
            ],
            |r| r.get(0),
        )?;
    conn.prepare_cached(
        "INSERT INTO history (rtype, id, version, updated_ms, method, body) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        rtype,
        id,
        version,
        now,
        method.as_str(),
        None::<String>
    ])?;
    match rows {
        // Version 1 has never been indexed: skip the deletes (a large share of import time).
        Some(rows) => index::write(conn, rid, rtype, &rows, version > 1)?,
        None => index::delete(conn, rid)?,
    }
    Ok(Stored {
        rtype: rtype.to_owned(),
        id: id.to_owned(),
        version,
        updated_ms: now,
        body,
    })
}

/// A resource made ready for storage away from the writer connection: validated,
/// stamped as version 1, serialised and indexed. Bulk import prepares on one thread while
/// another writes, since only the writing needs the (single) writer connection.
#[derive(Debug)]
pub struct Prepared {
    rtype: String,
    id: String,
    now: i64,
    value: Value,
    body: String,
    rows: IndexRows,
}

impl Prepared {
    pub fn rtype(&self) -> &str {
        &self.rtype
    }
}

/// Prepare a resource for [`put_prepared`] (update-as-create under its own id, or a new id).
pub fn prepare_put(resource: Value) -> Result<Prepared> {
    let rtype = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .ok_or_else(|| StoreError::invalid("resourceType is missing", Some("resourceType")))?
        .to_owned();
    let id = resource
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    validate(&rtype, id.as_deref(), &resource)?;
    let id = id.unwrap_or_else(new_id);
    let now = fhirtime::now_ms();
    let (value, body, rows) = stamp(&rtype, &id, 1, now, resource);
    Ok(Prepared {
        rtype,
        id,
        now,
        value,
        body,
        rows,
    })
}

/// Store a prepared resource: the fast path when its id is new, a normal update otherwise.
pub fn put_prepared(conn: &Connection, p: Prepared) -> Result<Stored> {
    match current(conn, &p.rtype, &p.id)? {
        None => store_rows(
            conn,
            &p.rtype,
            &p.id,
            1,
            p.now,
            Some((p.body, p.rows)),
            Method::Put,
        ),
        Some(_) => Ok(update(conn, &p.rtype, &p.id, p.value, None)?.0),
    }
}

/// A fresh server-assigned id.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `POST [type]`: the body's id is ignored (FHIR) unless `id` is given by the caller (bundle
/// entries whose `urn:uuid` was already mapped, and the importer).
pub fn create(
    conn: &Connection,
    rtype: &str,
    resource: Value,
    id: Option<String>,
) -> Result<Stored> {
    validate(rtype, None, &resource)?;
    let id = id.unwrap_or_else(new_id);
    let version = match current(conn, rtype, &id)? {
        Some(existing) if !existing.is_deleted() => {
            return Err(StoreError::invalid(
                format!("{rtype}/{id} already exists"),
                Some(&format!("{rtype}.id")),
            ));
        }
        Some(existing) => existing.version + 1,
        None => 1,
    };
    write_version(conn, rtype, &id, version, Some(resource), Method::Post)
}

/// `PUT [type]/[id]`: returns the stored version and whether it was created.
pub fn update(
    conn: &Connection,
    rtype: &str,
    id: &str,
    resource: Value,
    if_match: Option<i64>,
) -> Result<(Stored, bool)> {
    validate(rtype, Some(id), &resource)?;
    let existing = current(conn, rtype, id)?;
    check_if_match(rtype, id, existing.as_ref(), if_match)?;
    let (version, created) = match &existing {
        Some(e) => (e.version + 1, e.is_deleted()),
        None => (1, true),
    };
    let stored = write_version(conn, rtype, id, version, Some(resource), Method::Put)?;
    Ok((stored, created))
}

fn check_if_match(
    rtype: &str,
    id: &str,
    existing: Option<&Stored>,
    if_match: Option<i64>,
) -> Result<()> {
    let Some(want) = if_match else { return Ok(()) };
    match existing {
        Some(e) if !e.is_deleted() && e.version == want => Ok(()),
        Some(e) if !e.is_deleted() => Err(StoreError::PreconditionFailed(format!(
            "If-Match names version {want} but {rtype}/{id} is at version {}",
            e.version
        ))),
        _ => Err(StoreError::PreconditionFailed(format!(
            "If-Match names version {want} but {rtype}/{id} does not exist"
        ))),
    }
}

/// `PATCH [type]/[id]` with a JSON Patch document.
pub fn patch(
    conn: &Connection,
    rtype: &str,
    id: &str,
    patch: &json_patch::Patch,
    if_match: Option<i64>,
) -> Result<Stored> {
    let existing = read(conn, rtype, id)?;
    check_if_match(rtype, id, Some(&existing), if_match)?;
    let mut doc: Value = serde_json::from_str(existing.body.as_deref().unwrap_or("{}"))
        .map_err(|e| StoreError::structure(format!("stored resource is not JSON: {e}")))?;
    // `patch_unsafe`: `patch` panics when it cannot undo a failed patch (a move into what it
    // just moved); on error `doc` is dropped and nothing is written.
    json_patch::patch_unsafe(&mut doc, patch).map_err(|e| StoreError::Invalid {
        code: crate::fhir::IssueType::Processing,
        diagnostics: format!("JSON Patch failed: {e}"),
        expression: None,
    })?;
    validate(rtype, Some(id), &doc)?;
    write_version(
        conn,
        rtype,
        id,
        existing.version + 1,
        Some(doc),
        Method::Patch,
    )
}

/// `DELETE [type]/[id]`: idempotent; returns the deletion version when something was deleted.
pub fn delete(
    conn: &Connection,
    rtype: &str,
    id: &str,
    if_match: Option<i64>,
) -> Result<Option<Stored>> {
    let existing = current(conn, rtype, id)?;
    check_if_match(rtype, id, existing.as_ref(), if_match)?;
    match existing {
        Some(e) if !e.is_deleted() => Ok(Some(write_version(
            conn,
            rtype,
            id,
            e.version + 1,
            None,
            Method::Delete,
        )?)),
        _ => Ok(None),
    }
}

/// Which history a request asks for.
#[derive(Debug, Clone)]
pub enum HistoryScope {
    System,
    Type(String),
    Instance(String, String),
}

/// One history entry with its method.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub stored: Stored,
    pub method: String,
}

/// History newest first, `_since` applied, one page plus the total.
pub fn history(
    conn: &Connection,
    scope: &HistoryScope,
    since_ms: Option<i64>,
    count: usize,
    offset: usize,
) -> Result<(Vec<HistoryEntry>, i64)> {
    let since = since_ms.unwrap_or(i64::MIN);
    let (filter, args): (&str, Vec<String>) = match scope {
        HistoryScope::System => ("1 = 1", vec![]),
        HistoryScope::Type(t) => ("rtype = ?2", vec![t.clone()]),
        HistoryScope::Instance(t, id) => ("rtype = ?2 AND id = ?3", vec![t.clone(), id.clone()]),
    };
    let mut values: Vec<rusqlite::types::Value> = vec![since.into()];
    values.extend(args.into_iter().map(Into::into));
    let total: i64 = conn
        .prepare_cached(&format!(
            "SELECT COUNT(*) FROM history WHERE updated_ms >= ?1 AND {filter}"
        ))?
        .query_row(rusqlite::params_from_iter(values.iter()), |r| r.get(0))?;
    let sql = format!(
        "SELECT rtype, id, version, updated_ms, {HISTORY_BODY}, method FROM history h \
         WHERE updated_ms >= ?1 AND {filter} ORDER BY hid DESC LIMIT {} OFFSET {}",
        count, offset
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(values.iter()), |r| {
            Ok(HistoryEntry {
                stored: row_to_stored(r)?,
                method: r.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((rows, total))
}
