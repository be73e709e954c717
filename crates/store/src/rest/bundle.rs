//! Batch and transaction Bundles.
//!
//! A transaction runs every entry in one SQLite transaction: any failing entry rolls all of
//! them back and the response is that entry's OperationOutcome. A batch runs each entry in
//! its own transaction and reports failures per entry. In a transaction, `urn:uuid:` full
//! URLs of created resources and conditional references (`Patient?identifier=...`) are
//! resolved to the ids they get before anything is written.

use std::collections::HashMap;

use http::{Method, StatusCode};
use rusqlite::Connection;
use serde_json::{Value, json};

use super::op::{Op, OpResult, execute};
use super::parse::{Body, Conditions, parse};
use super::response::Return;
use crate::Store;
use crate::error::{Result, StoreError};
use crate::ops;
use crate::search;

/// Upper bound on entries in one Bundle.
pub const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Batch,
    Transaction,
}

struct Entry {
    method: Method,
    url: String,
    full_url: Option<String>,
    resource: Option<Value>,
    cond: Conditions,
}

fn invalid_entry(i: usize, what: &str, field: &str) -> StoreError {
    StoreError::invalid(
        format!("Bundle.entry[{i}]: {what}"),
        Some(&format!("Bundle.entry[{i}].{field}")),
    )
}

fn entries(bundle: &Value) -> Result<(Kind, Vec<Entry>)> {
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(StoreError::invalid(
            "POST to the base needs a Bundle",
            Some("resourceType"),
        ));
    }
    let kind = match bundle.get("type").and_then(Value::as_str) {
        Some("batch") => Kind::Batch,
        Some("transaction") => Kind::Transaction,
        other => {
            return Err(StoreError::invalid(
                format!(
                    "Bundle.type must be batch or transaction, not {}",
                    other.unwrap_or("missing")
                ),
                Some("Bundle.type"),
            ));
        }
    };
    let raw = bundle
        .get("entry")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if raw.len() > MAX_ENTRIES {
        return Err(StoreError::TooCostly(format!(
            "a Bundle may carry at most {MAX_ENTRIES} entries"
        )));
    }
    let mut out = Vec::with_capacity(raw.len());
    for (i, e) in raw.iter().enumerate() {
        let req = e
            .get("request")
            .ok_or_else(|| invalid_entry(i, "request is missing", "request"))?;
        let method = req
            .get("method")
            .and_then(Value::as_str)
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
            .ok_or_else(|| {
                invalid_entry(i, "request.method is missing or invalid", "request.method")
            })?;
        let url = req
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid_entry(i, "request.url is missing", "request.url"))?
            .to_owned();
        let s = |k: &str| req.get(k).and_then(Value::as_str).map(str::to_owned);
        out.push(Entry {
            method,
            url,
            full_url: e.get("fullUrl").and_then(Value::as_str).map(str::to_owned),
            resource: e.get("resource").cloned(),
            cond: Conditions {
                if_match: s("ifMatch"),
                if_none_exist: s("ifNoneExist"),
            },
        });
    }
    Ok((kind, out))
}

fn to_op(e: Entry, base: &str) -> Result<Op> {
    let url = e
        .url
        .strip_prefix(base)
        .map(|u| u.trim_start_matches('/'))
        .unwrap_or(&e.url);
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let body = match e.resource {
        Some(v) => Body::Json(v),
        None => Body::None,
    };
    // Binary JSON Patch travels as a Binary resource in bundles; plain JSON arrays too.
    parse(&e.method, path, query, &e.cond, body, false, base)
}

/// Replace `reference` strings found in `map`, and conditional references, everywhere.
fn rewrite_refs(v: &mut Value, map: &HashMap<String, String>, conn: &Connection) -> Result<()> {
    match v {
        Value::Object(obj) => {
            for (k, child) in obj.iter_mut() {
                if k == "reference"
                    && let Value::String(r) = child
                {
                    if let Some(new) = map.get(r.as_str()) {
                        *r = new.clone();
                    } else if let Some((t, q)) = r.split_once('?')
                        && ops::resource_type(t).is_ok()
                    {
                        let ids = search::matching_ids(conn, t, q, 2)?;
                        match ids.as_slice() {
                            [one] => *r = format!("{t}/{one}"),
                            [] => {}
                            _ => {
                                return Err(StoreError::MultipleMatches(format!(
                                    "conditional reference {r} matches more than one resource"
                                )));
                            }
                        }
                    }
                } else {
                    rewrite_refs(child, map, conn)?;
                }
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter_mut()
            .try_for_each(|i| rewrite_refs(i, map, conn)),
        _ => Ok(()),
    }
}

fn status_line(code: u16) -> String {
    let s = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    format!("{} {}", s.as_u16(), s.canonical_reason().unwrap_or(""))
}

/// One `Bundle.entry` of the response.
fn response_entry(res: &OpResult, base: &str, ret: Return) -> Value {
    match res {
        OpResult::Resource { stored, .. } | OpResult::Existing { stored } => {
            let status = if let OpResult::Resource { status, .. } = res {
                *status
            } else {
                200
            };
            let mut e = json!({
                "response": {
                    "status": status_line(status),
                    "location": format!("{}/{}", base, stored.versioned_path()),
                    "etag": stored.etag(),
                    "lastModified": stored.last_updated(),
                }
            });
            e["fullUrl"] = json!(format!("{base}/{}/{}", stored.rtype, stored.id));
            if ret == Return::Representation
                && let Some(body) = &stored.body
                && let Ok(v) = serde_json::from_str::<Value>(body)
            {
                e["resource"] = v;
            }
            e
        }
        OpResult::Deleted(_) => json!({ "response": { "status": status_line(204) } }),
        OpResult::Searchset { result, link_path } => {
            let body = super::response::searchset(result, base, link_path);
            json!({
                "resource": serde_json::from_str::<Value>(&body).unwrap_or(Value::Null),
                "response": { "status": status_line(200) }
            })
        }
        OpResult::History {
            entries,
            total,
            count,
            offset,
            link_path,
        } => {
            let body = super::response::history(entries, *total, *count, *offset, base, link_path);
            json!({
                "resource": serde_json::from_str::<Value>(&body).unwrap_or(Value::Null),
                "response": { "status": status_line(200) }
            })
        }
    }
}

fn error_entry(err: &StoreError) -> Value {
    json!({ "response": { "status": status_line(err.status().as_u16()), "outcome": err.to_outcome().to_json() } })
}

fn order_key(m: &Method) -> u8 {
    match m.as_str() {
        "DELETE" => 0,
        "POST" => 1,
        "PUT" | "PATCH" => 2,
        _ => 3,
    }
}

/// Process a batch or transaction Bundle (blocking); returns the response Bundle JSON.
pub fn process(store: &Store, bundle: &Value, base: &str, ret: Return) -> Result<Value> {
    let (kind, list) = entries(bundle)?;
    let responses: Vec<Value> = match kind {
        Kind::Batch => list
            .into_iter()
            .map(|e| {
                let res = to_op(e, base).and_then(|op| {
                    if matches!(op, Op::Bundle(_)) {
                        return Err(StoreError::NotSupported(
                            "nested Bundles are not supported".into(),
                        ));
                    }
                    if op.writes() {
                        store.write(|c| execute(c, op))
                    } else {
                        store.read(|c| execute(c, op))
                    }
                });
                match res {
                    Ok(r) => response_entry(&r, base, ret),
                    Err(e) => error_entry(&e),
                }
            })
            .collect(),
        Kind::Transaction => store.write(|conn| transaction(conn, list, base, ret))?,
    };
    let kind = match kind {
        Kind::Batch => "batch-response",
        Kind::Transaction => "transaction-response",
    };
    Ok(json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "type": kind,
        "entry": responses,
    }))
}

fn transaction(
    conn: &Connection,
    mut list: Vec<Entry>,
    base: &str,
    ret: Return,
) -> Result<Vec<Value>> {
    // Pass 1: decide the id of every created resource, so references can point at it.
    let mut map = HashMap::new();
    let mut preassigned: Vec<Option<String>> = vec![None; list.len()];
    for (i, e) in list.iter().enumerate() {
        let path = e.url.split('?').next().unwrap_or("").trim_matches('/');
        let Some(full_url) = &e.full_url else {
            continue;
        };
        if e.method == Method::POST {
            let t = path.to_owned();
            let existing = match &e.cond.if_none_exist {
                Some(q) => search::matching_ids(conn, &t, q, 2)?.into_iter().next(),
                None => None,
            };
            let id = existing.unwrap_or_else(ops::new_id);
            map.insert(full_url.clone(), format!("{t}/{id}"));
            preassigned[i] = Some(id);
        } else if e.method == Method::PUT && !e.url.contains('?') {
            map.insert(full_url.clone(), path.to_owned());
        }
    }
    for e in &mut list {
        if let Some(r) = &mut e.resource {
            rewrite_refs(r, &map, conn)?;
        }
    }
    // Pass 2: run entries in FHIR's processing order; answer in request order.
    let mut order: Vec<usize> = (0..list.len()).collect();
    order.sort_by_key(|&i| order_key(&list[i].method));
    let mut slots: Vec<Option<Entry>> = list.into_iter().map(Some).collect();
    let mut out = vec![Value::Null; slots.len()];
    for i in order {
        let Some(e) = slots.get_mut(i).and_then(Option::take) else {
            continue;
        };
        let mut op = to_op(e, base).map_err(|err| at_entry(i, err))?;
        if let Op::Create { id, .. } = &mut op {
            *id = preassigned.get(i).cloned().flatten();
        }
        if matches!(op, Op::Bundle(_) | Op::Capabilities) {
            return Err(at_entry(
                i,
                StoreError::NotSupported("not allowed in a transaction".into()),
            ));
        }
        let res = execute(conn, op).map_err(|err| at_entry(i, err))?;
        if let Some(slot) = out.get_mut(i) {
            *slot = response_entry(&res, base, ret);
        }
    }
    Ok(out)
}

/// Say which entry failed, keeping the error's status and code.
fn at_entry(i: usize, err: StoreError) -> StoreError {
    match err {
        StoreError::Invalid {
            code,
            diagnostics,
            expression,
        } => StoreError::Invalid {
            code,
            diagnostics: format!("Bundle.entry[{i}]: {diagnostics}"),
            expression: Some(match expression {
                Some(e) => format!(
                    "Bundle.entry[{i}].resource.{}",
                    e.split_once('.').map_or(e.as_str(), |(_, rest)| rest)
                ),
                None => format!("Bundle.entry[{i}]"),
            }),
        },
        StoreError::PreconditionFailed(m) => {
            StoreError::PreconditionFailed(format!("Bundle.entry[{i}]: {m}"))
        }
        StoreError::MultipleMatches(m) => {
            StoreError::MultipleMatches(format!("Bundle.entry[{i}]: {m}"))
        }
        StoreError::NotSupported(m) => StoreError::NotSupported(format!("Bundle.entry[{i}]: {m}")),
        other => other,
    }
}
