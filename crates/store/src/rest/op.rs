//! A FHIR interaction as data: parsed once from an HTTP request or a Bundle entry, executed by
//! one function on a connection. HTTP handlers and batch/transaction entries share it.

use rusqlite::Connection;
use serde_json::Value;

use crate::error::{Result, StoreError};
use crate::ops::{self, HistoryEntry, HistoryScope, Stored};
use crate::search::{self, DEFAULT_COUNT, MAX_COUNT, SearchRequest, SearchResult};

/// One interaction.
#[derive(Debug, Clone)]
pub enum Op {
    Capabilities,
    Read {
        rtype: String,
        id: String,
    },
    Vread {
        rtype: String,
        id: String,
        vid: String,
    },
    /// `link_path` is the request path relative to the base (for paging links).
    Search {
        req: SearchRequest,
        link_path: String,
    },
    History {
        scope: HistoryScope,
        since: Option<i64>,
        count: usize,
        offset: usize,
        link_path: String,
    },
    Create {
        rtype: String,
        resource: Value,
        if_none_exist: Option<String>,
        id: Option<String>,
    },
    Update {
        rtype: String,
        id: String,
        resource: Value,
        if_match: Option<i64>,
    },
    ConditionalUpdate {
        rtype: String,
        query: String,
        resource: Value,
    },
    Patch {
        rtype: String,
        id: String,
        patch: json_patch::Patch,
        if_match: Option<i64>,
    },
    Delete {
        rtype: String,
        id: String,
        if_match: Option<i64>,
    },
    ConditionalDelete {
        rtype: String,
        query: String,
    },
    Bundle(Value),
}

impl Op {
    /// Whether the interaction writes (and so needs the write transaction).
    pub fn writes(&self) -> bool {
        !matches!(
            self,
            Op::Capabilities
                | Op::Read { .. }
                | Op::Vread { .. }
                | Op::Search { .. }
                | Op::History { .. }
        )
    }
}

/// What an interaction produced.
#[derive(Debug)]
pub enum OpResult {
    /// A resource version: read, vread, create, update, patch. `status` 200 or 201.
    Resource { status: u16, stored: Stored },
    /// Conditional create that matched an existing resource (200, no write).
    Existing { stored: Stored },
    Searchset {
        result: SearchResult,
        link_path: String,
    },
    History {
        entries: Vec<HistoryEntry>,
        total: i64,
        count: usize,
        offset: usize,
        link_path: String,
    },
    /// Delete: the deletion version, if something was deleted.
    Deleted(Option<Stored>),
}

/// `W/"3"`, `"3"` or `3` → 3.
pub fn parse_etag(v: &str) -> Option<i64> {
    v.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .ok()
}

/// Parse `_count`/`_offset` for history.
pub fn paging(params: &[(String, String)]) -> Result<(usize, usize)> {
    let mut count = DEFAULT_COUNT;
    let mut offset = 0;
    for (k, v) in params {
        match k.as_str() {
            "_count" => {
                count = v
                    .parse::<usize>()
                    .map_err(|_| StoreError::invalid("_count must be a number", Some("_count")))?
                    .min(MAX_COUNT)
            }
            "_offset" => {
                offset = v
                    .parse()
                    .map_err(|_| StoreError::invalid("_offset must be a number", Some("_offset")))?
            }
            _ => {}
        }
    }
    Ok((count, offset))
}

/// Run one interaction on `conn` (inside the caller's transaction for writes).
pub fn execute(conn: &Connection, op: Op) -> Result<OpResult> {
    match op {
        Op::Capabilities | Op::Bundle(_) => Err(StoreError::NotSupported(
            "this interaction cannot run here".to_owned(),
        )),
        Op::Read { rtype, id } => Ok(OpResult::Resource {
            status: 200,
            stored: ops::read(conn, &rtype, &id)?,
        }),
        Op::Vread { rtype, id, vid } => Ok(OpResult::Resource {
            status: 200,
            stored: ops::vread(conn, &rtype, &id, &vid)?,
        }),
        Op::Search { req, link_path } => {
            if let Some(patient) = &req.compartment {
                // The compartment owner must exist, as for a read.
                ops::read(conn, "Patient", patient)?;
            }
            Ok(OpResult::Searchset {
                result: search::search(conn, &req)?,
                link_path,
            })
        }
        Op::History {
            scope,
            since,
            count,
            offset,
            link_path,
        } => {
            if let HistoryScope::Instance(t, id) = &scope
                && ops::current(conn, t, id)?.is_none()
            {
                return Err(StoreError::NotFound {
                    rtype: t.clone(),
                    id: id.clone(),
                });
            }
            let (entries, total) = ops::history(conn, &scope, since, count, offset)?;
            Ok(OpResult::History {
                entries,
                total,
                count,
                offset,
                link_path,
            })
        }
        Op::Create {
            rtype,
            resource,
            if_none_exist,
            id,
        } => {
            if let Some(query) = if_none_exist {
                let found = search::matching_ids(conn, &rtype, &query, 2)?;
                match found.as_slice() {
                    [] => {}
                    [one] => {
                        return Ok(OpResult::Existing {
                            stored: ops::read(conn, &rtype, one)?,
                        });
                    }
                    _ => {
                        return Err(StoreError::MultipleMatches(format!(
                            "If-None-Exist '{query}' matches more than one {rtype}"
                        )));
                    }
                }
            }
            Ok(OpResult::Resource {
                status: 201,
                stored: ops::create(conn, &rtype, resource, id)?,
            })
        }
        Op::Update {
            rtype,
            id,
            resource,
            if_match,
        } => {
            let (stored, created) = ops::update(conn, &rtype, &id, resource, if_match)?;
            Ok(OpResult::Resource {
                status: if created { 201 } else { 200 },
                stored,
            })
        }
        Op::ConditionalUpdate {
            rtype,
            query,
            mut resource,
        } => {
            let found = search::matching_ids(conn, &rtype, &query, 2)?;
            match found.as_slice() {
                [] => {
                    let id = resource
                        .get("id")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    match id {
                        Some(id) => {
                            let (stored, _) = ops::update(conn, &rtype, &id, resource, None)?;
                            Ok(OpResult::Resource {
                                status: 201,
                                stored,
                            })
                        }
                        None => Ok(OpResult::Resource {
                            status: 201,
                            stored: ops::create(conn, &rtype, resource, None)?,
                        }),
                    }
                }
                [one] => {
                    if let Some(body_id) = resource.get("id").and_then(Value::as_str)
                        && body_id != one
                    {
                        return Err(StoreError::invalid(
                            format!(
                                "the body id '{body_id}' differs from the matched {rtype}/{one}"
                            ),
                            Some(&format!("{rtype}.id")),
                        ));
                    }
                    if let Some(obj) = resource.as_object_mut() {
                        obj.insert("id".into(), Value::String(one.clone()));
                    }
                    let (stored, _) = ops::update(conn, &rtype, one, resource, None)?;
                    Ok(OpResult::Resource {
                        status: 200,
                        stored,
                    })
                }
                _ => Err(StoreError::MultipleMatches(format!(
                    "conditional update '{query}' matches more than one {rtype}"
                ))),
            }
        }
        Op::Patch {
            rtype,
            id,
            patch,
            if_match,
        } => Ok(OpResult::Resource {
            status: 200,
            stored: ops::patch(conn, &rtype, &id, &patch, if_match)?,
        }),
        Op::Delete {
            rtype,
            id,
            if_match,
        } => Ok(OpResult::Deleted(ops::delete(conn, &rtype, &id, if_match)?)),
        Op::ConditionalDelete { rtype, query } => {
            let found = search::matching_ids(conn, &rtype, &query, 2)?;
            match found.as_slice() {
                [] => Ok(OpResult::Deleted(None)),
                [one] => Ok(OpResult::Deleted(ops::delete(conn, &rtype, one, None)?)),
                _ => Err(StoreError::MultipleMatches(format!(
                    "conditional delete '{query}' matches more than one {rtype}"
                ))),
            }
        }
    }
}
