//! Results and errors → HTTP responses, and the Bundle bodies (searchset, history).
//!
//! Stored resources are kept as JSON text; bundles splice that text in directly instead of
//! parsing and re-serialising every resource, which keeps search pages cheap.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::Value;

use super::op::OpResult;
use crate::error::StoreError;
use crate::fhir::{FHIR_JSON, IssueSeverity, IssueType, OperationOutcome};
use crate::fhirtime;
use crate::ops::{HistoryEntry, Stored};
use crate::search::SearchResult;

/// `Prefer: return=...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Return {
    Minimal,
    #[default]
    Representation,
    OperationOutcome,
}

impl Return {
    pub fn from_prefer(prefer: Option<&str>) -> Self {
        let Some(p) = prefer else {
            return Return::default();
        };
        if p.contains("return=minimal") {
            Return::Minimal
        } else if p.contains("return=OperationOutcome") {
            Return::OperationOutcome
        } else {
            Return::Representation
        }
    }
}

fn fhir_response(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    r
}

/// The one place a store error becomes a response.
pub fn error_response(err: &StoreError) -> Response {
    if matches!(
        err,
        StoreError::Db(_) | StoreError::Io(_) | StoreError::Worker
    ) {
        tracing::error!(error = %err, "store request failed");
    }
    fhir_response(err.status(), err.to_outcome().to_bytes())
}

impl IntoResponse for StoreError {
    fn into_response(self) -> Response {
        error_response(&self)
    }
}

fn set(r: &mut Response, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}

/// A single-resource response with ETag, Last-Modified and (for writes) Location.
pub fn resource(status: u16, stored: &Stored, base: &str, ret: Return, write: bool) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut r = match (ret, write) {
        (Return::Minimal, true) => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = status;
            r
        }
        (Return::OperationOutcome, true) => fhir_response(
            status,
            OperationOutcome::single(
                IssueSeverity::Information,
                IssueType::Informational,
                format!("{} stored", stored.versioned_path()),
            )
            .to_bytes(),
        ),
        _ => fhir_response(status, stored.body.clone().unwrap_or_default()),
    };
    set(&mut r, header::ETAG, &stored.etag());
    set(&mut r, header::LAST_MODIFIED, &stored.last_modified());
    if write {
        let loc = format!("{base}/{}", stored.versioned_path());
        set(&mut r, header::LOCATION, &loc);
        set(&mut r, header::CONTENT_LOCATION, &loc);
    }
    r
}

/// Render an [`OpResult`] as the response to a plain (non-bundle) request.
pub fn result(res: OpResult, base: &str, ret: Return, write: bool) -> Response {
    match res {
        OpResult::Resource { status, stored } => resource(status, &stored, base, ret, write),
        OpResult::Existing { stored } => resource(200, &stored, base, ret, false),
        OpResult::Searchset { result, link_path } => {
            fhir_response(StatusCode::OK, searchset(&result, base, &link_path))
        }
        OpResult::History {
            entries,
            total,
            count,
            offset,
            link_path,
        } => fhir_response(
            StatusCode::OK,
            history(&entries, total, count, offset, base, &link_path),
        ),
        OpResult::Deleted(stored) => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            if let Some(s) = stored {
                set(&mut r, header::ETAG, &s.etag());
            }
            r
        }
    }
}

fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

fn bundle_head(kind: &str, total: Option<i64>, links: &[(&str, String)]) -> String {
    let mut out = format!(
        "{{\"resourceType\":\"Bundle\",\"id\":{},\"meta\":{{\"lastUpdated\":{}}},\"type\":{}",
        js(&uuid::Uuid::new_v4().to_string()),
        js(&fhirtime::format_instant(fhirtime::now_ms())),
        js(kind)
    );
    if let Some(t) = total {
        out.push_str(&format!(",\"total\":{t}"));
    }
    out.push_str(",\"link\":[");
    for (i, (rel, url)) in links.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!("{{\"relation\":{},\"url\":{}}}", js(rel), js(url)));
    }
    out.push(']');
    out
}

fn page_url(base: &str, link_path: &str, params: &[(String, String)], offset: usize) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        q.append_pair(k, v);
    }
    if offset > 0 {
        q.append_pair("_offset", &offset.to_string());
    }
    let q = q.finish();
    if q.is_empty() {
        format!("{base}/{link_path}")
    } else {
        format!("{base}/{link_path}?{q}")
    }
}

/// Keep only `_elements` (plus the mandatory ones) and mark the resource SUBSETTED.
fn subset(body: &str, elements: &[String]) -> String {
    let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(body) else {
        return body.to_owned();
    };
    obj.retain(|k, _| {
        matches!(k.as_str(), "resourceType" | "id" | "meta") || elements.iter().any(|e| e == k)
    });
    let meta = obj
        .entry("meta")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(meta) = meta.as_object_mut() {
        let tag = serde_json::json!({
            "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
            "code": "SUBSETTED"
        });
        match meta.get_mut("tag").and_then(Value::as_array_mut) {
            Some(tags) => tags.push(tag),
            None => {
                meta.insert("tag".into(), Value::Array(vec![tag]));
            }
        }
    }
    Value::Object(obj).to_string()
}

/// A `searchset` Bundle with self/next/previous links.
pub fn searchset(res: &SearchResult, base: &str, link_path: &str) -> String {
    let mut links = vec![(
        "self",
        page_url(base, link_path, &res.link_params, res.offset),
    )];
    if !res.summary_count {
        if res.has_next {
            links.push((
                "next",
                page_url(base, link_path, &res.link_params, res.offset + res.count),
            ));
        }
        if res.offset > 0 {
            links.push((
                "previous",
                page_url(
                    base,
                    link_path,
                    &res.link_params,
                    res.offset.saturating_sub(res.count),
                ),
            ));
        }
    }
    let mut out = bundle_head("searchset", res.total, &links);
    out.push_str(",\"entry\":[");
    let mut first = true;
    let mut push = |s: &Stored, mode: &str| {
        let Some(body) = &s.body else { return };
        if !first {
            out.push(',');
        }
        first = false;
        let body = if res.elements.is_empty() || mode != "match" {
            body.clone()
        } else {
            subset(body, &res.elements)
        };
        out.push_str(&format!(
            "{{\"fullUrl\":{},\"resource\":{},\"search\":{{\"mode\":\"{mode}\"}}}}",
            js(&format!("{base}/{}/{}", s.rtype, s.id)),
            body
        ));
    };
    for m in &res.matches {
        push(m, "match");
    }
    for m in &res.included {
        push(m, "include");
    }
    if !res.warnings.is_empty() {
        let mut oo = OperationOutcome::default();
        for w in &res.warnings {
            oo.issues.push(crate::fhir::Issue {
                severity: IssueSeverity::Warning,
                code: IssueType::NotSupported,
                diagnostics: Some(w.clone()),
                expression: Vec::new(),
            });
        }
        if !first {
            out.push(',');
        }
        out.push_str(&format!(
            "{{\"resource\":{},\"search\":{{\"mode\":\"outcome\"}}}}",
            oo.to_json()
        ));
    }
    out.push_str("]}");
    out
}

/// A `history` Bundle, newest first.
pub fn history(
    entries: &[HistoryEntry],
    total: i64,
    count: usize,
    offset: usize,
    base: &str,
    link_path: &str,
) -> String {
    let params = vec![("_count".to_owned(), count.to_string())];
    let mut links = vec![("self", page_url(base, link_path, &params, offset))];
    if i64::try_from(offset + count).unwrap_or(i64::MAX) < total {
        links.push(("next", page_url(base, link_path, &params, offset + count)));
    }
    if offset > 0 {
        links.push((
            "previous",
            page_url(base, link_path, &params, offset.saturating_sub(count)),
        ));
    }
    let mut out = bundle_head("history", Some(total), &links);
    out.push_str(",\"entry\":[");
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let s = &e.stored;
        let url = if e.method == "POST" {
            s.rtype.clone()
        } else {
            format!("{}/{}", s.rtype, s.id)
        };
        let status = match e.method.as_str() {
            "POST" => "201 Created",
            "DELETE" => "204 No Content",
            _ => "200 OK",
        };
        out.push_str(&format!(
            "{{\"fullUrl\":{}",
            js(&format!("{base}/{}/{}", s.rtype, s.id))
        ));
        if let Some(body) = &s.body {
            out.push_str(&format!(",\"resource\":{body}"));
        }
        out.push_str(&format!(
            ",\"request\":{{\"method\":{},\"url\":{}}},\"response\":{{\"status\":{},\"etag\":{},\"lastModified\":{}}}}}",
            js(&e.method),
            js(&url),
            js(status),
            js(&s.etag()),
            js(&s.last_updated())
        ));
    }
    out.push_str("]}");
    out
}

/// Plain JSON response (CapabilityStatement, Bundle responses).
pub fn json_body(status: StatusCode, body: String) -> Response {
    fhir_response(status, body)
}
