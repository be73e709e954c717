//! HTTP method + path + query + headers + body → [`Op`].

use http::{HeaderMap, Method};
use serde_json::Value;

use super::op::{Op, paging, parse_etag};
use crate::error::{Result, StoreError};
use crate::fhir::resource_type::is_valid_id;
use crate::fhirtime;
use crate::ops::{self, HistoryScope};
use crate::search::{SearchRequest, parse_query};

/// A request body, already decoded by content type.
#[derive(Debug)]
pub enum Body {
    None,
    Json(Value),
    /// `application/x-www-form-urlencoded` (POST `_search`).
    Form(String),
}

/// Conditional headers of a write (from HTTP headers or `Bundle.entry.request`).
#[derive(Debug, Default, Clone)]
pub struct Conditions {
    pub if_match: Option<String>,
    pub if_none_exist: Option<String>,
}

impl Conditions {
    pub fn from_headers(h: &HeaderMap) -> Self {
        let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Conditions {
            if_match: get("if-match"),
            if_none_exist: get("if-none-exist"),
        }
    }
}

fn check_type(t: &str) -> Result<String> {
    ops::resource_type(t).map(|rt| rt.as_str().to_owned())
}

fn check_id(rtype: &str, id: &str) -> Result<String> {
    if is_valid_id(id) {
        Ok(id.to_owned())
    } else {
        Err(StoreError::NotFound {
            rtype: rtype.to_owned(),
            id: id.to_owned(),
        })
    }
}

fn json(body: Body) -> Result<Value> {
    match body {
        Body::Json(v) => Ok(v),
        _ => Err(StoreError::structure("a JSON resource body is required")),
    }
}

fn if_match(c: &Conditions) -> Result<Option<i64>> {
    c.if_match
        .as_deref()
        .map(|v| {
            parse_etag(v).ok_or_else(|| {
                StoreError::PreconditionFailed(format!("If-Match '{v}' is not a version ETag"))
            })
        })
        .transpose()
}

fn history(scope: HistoryScope, query: &str, link_path: String) -> Result<Op> {
    let params = parse_query(query);
    let (count, offset) = paging(&params)?;
    let since = params
        .iter()
        .find(|(k, _)| k == "_since")
        .map(|(_, v)| {
            fhirtime::parse_range(v)
                .map(|r| r.0)
                .ok_or_else(|| StoreError::invalid("_since must be a FHIR instant", Some("_since")))
        })
        .transpose()?;
    Ok(Op::History {
        scope,
        since,
        count,
        offset,
        link_path,
    })
}

/// Turn one request into an [`Op`]. `path` is relative to the base, without leading `/`.
pub fn parse(
    method: &Method,
    path: &str,
    query: &str,
    cond: &Conditions,
    body: Body,
    strict: bool,
    base_url: &str,
) -> Result<Op> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let search = |rtype: Option<String>,
                  compartment: Option<String>,
                  query: String,
                  link_path: String| Op::Search {
        req: SearchRequest {
            rtype,
            params: parse_query(&query),
            compartment,
            strict,
            base_url: base_url.to_owned(),
        },
        link_path,
    };
    let not_allowed = || StoreError::NotSupported(format!("{method} {path} is not supported"));
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["metadata"]) => Ok(Op::Capabilities),
        ("POST", []) => Ok(Op::Bundle(json(body)?)),
        ("GET", ["_history"]) => history(HistoryScope::System, query, "_history".into()),
        ("GET", [t]) => Ok(search(
            Some(check_type(t)?),
            None,
            query.to_owned(),
            (*t).to_owned(),
        )),
        ("POST", [t, "_search"]) => {
            let mut q = query.to_owned();
            if let Body::Form(form) = body
                && !form.is_empty()
            {
                if !q.is_empty() {
                    q.push('&');
                }
                q.push_str(&form);
            }
            Ok(search(Some(check_type(t)?), None, q, (*t).to_owned()))
        }
        ("POST", [t]) => Ok(Op::Create {
            rtype: check_type(t)?,
            resource: json(body)?,
            if_none_exist: cond.if_none_exist.clone(),
            id: None,
        }),
        ("PUT", [t]) if !query.is_empty() => Ok(Op::ConditionalUpdate {
            rtype: check_type(t)?,
            query: query.to_owned(),
            resource: json(body)?,
        }),
        ("DELETE", [t]) if !query.is_empty() => Ok(Op::ConditionalDelete {
            rtype: check_type(t)?,
            query: query.to_owned(),
        }),
        ("GET", [t, "_history"]) => {
            let t = check_type(t)?;
            history(
                HistoryScope::Type(t.clone()),
                query,
                format!("{t}/_history"),
            )
        }
        ("GET", [t, id]) => {
            let rtype = check_type(t)?;
            Ok(Op::Read {
                id: check_id(&rtype, id)?,
                rtype,
            })
        }
        ("PUT", [t, id]) => {
            let rtype = check_type(t)?;
            Ok(Op::Update {
                id: check_id(&rtype, id)?,
                rtype,
                resource: json(body)?,
                if_match: if_match(cond)?,
            })
        }
        ("PATCH", [t, id]) => {
            let rtype = check_type(t)?;
            let patch: json_patch::Patch = serde_json::from_value(json(body)?)
                .map_err(|e| StoreError::structure(format!("not a JSON Patch document: {e}")))?;
            Ok(Op::Patch {
                id: check_id(&rtype, id)?,
                rtype,
                patch,
                if_match: if_match(cond)?,
            })
        }
        ("DELETE", [t, id]) => {
            let rtype = check_type(t)?;
            Ok(Op::Delete {
                id: check_id(&rtype, id)?,
                rtype,
                if_match: if_match(cond)?,
            })
        }
        ("GET", [t, id, "_history"]) => {
            let rtype = check_type(t)?;
            let id = check_id(&rtype, id)?;
            let link = format!("{rtype}/{id}/_history");
            history(HistoryScope::Instance(rtype, id), query, link)
        }
        ("GET", [t, id, "_history", vid]) => {
            let rtype = check_type(t)?;
            Ok(Op::Vread {
                id: check_id(&rtype, id)?,
                rtype,
                vid: (*vid).to_owned(),
            })
        }
        ("GET" | "POST", ["Patient", id, "$everything"]) => {
            let id = check_id("Patient", id)?;
            let link = format!("Patient/{id}/$everything");
            Ok(search(None, Some(id), query.to_owned(), link))
        }
        ("GET", ["Patient", id, t]) if !t.starts_with('$') => {
            let id = check_id("Patient", id)?;
            let rtype = check_type(t)?;
            let link = format!("Patient/{id}/{rtype}");
            Ok(search(Some(rtype), Some(id), query.to_owned(), link))
        }
        _ => Err(not_allowed()),
    }
}
