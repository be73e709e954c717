//! Just enough of `Bundle` for the gateway, on `serde_json::Value` (no FHIR model).
//!
//! A `POST /` carries a batch or transaction whose entries are requests of their own;
//! authorization must see each one exactly as [`classify`] would see it on its own, so
//! [`classify_entries`] splits every `entry.request.url` into path and query and runs it
//! through the same function. On the way back, [`append_outcome_entry`] adds the
//! `search.mode = outcome` entry that tells a client entries were removed from a searchset.

use serde_json::{Map, Value, json};

use crate::outcome::OperationOutcome;
use crate::request::{ClassifyError, FhirRequest, Interaction, classify};

/// Most entries accepted in one batch/transaction. Bounds authorization work per request;
/// larger imports belong to bulk data, not to one REST call.
pub const MAX_ENTRIES: usize = 10_000;

/// `Bundle.type` (R4 `bundle-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BundleType {
    Document,
    Message,
    Transaction,
    TransactionResponse,
    Batch,
    BatchResponse,
    History,
    Searchset,
    Collection,
}

impl BundleType {
    pub const fn as_str(self) -> &'static str {
        match self {
            BundleType::Document => "document",
            BundleType::Message => "message",
            BundleType::Transaction => "transaction",
            BundleType::TransactionResponse => "transaction-response",
            BundleType::Batch => "batch",
            BundleType::BatchResponse => "batch-response",
            BundleType::History => "history",
            BundleType::Searchset => "searchset",
            BundleType::Collection => "collection",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Some(match code {
            "document" => BundleType::Document,
            "message" => BundleType::Message,
            "transaction" => BundleType::Transaction,
            "transaction-response" => BundleType::TransactionResponse,
            "batch" => BundleType::Batch,
            "batch-response" => BundleType::BatchResponse,
            "history" => BundleType::History,
            "searchset" => BundleType::Searchset,
            "collection" => BundleType::Collection,
            _ => return None,
        })
    }
}

/// Why a JSON document cannot be handled as the Bundle the caller needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    #[error("body is not a FHIR Bundle")]
    NotABundle,
    #[error("Bundle.type is missing or not an R4 bundle type")]
    MissingType,
    #[error("Bundle.type '{0}' is not what this request needs")]
    WrongType(&'static str),
    #[error("Bundle.entry must be an array")]
    EntryNotArray,
    #[error("Bundle has more than {MAX_ENTRIES} entries")]
    TooManyEntries,
}

/// The `type` of a Bundle, or why it has none.
pub fn bundle_type(bundle: &Value) -> Result<BundleType, BundleError> {
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(BundleError::NotABundle);
    }
    bundle
        .get("type")
        .and_then(Value::as_str)
        .and_then(BundleType::from_code)
        .ok_or(BundleError::MissingType)
}

/// One batch/transaction entry's request, classified on its own.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryRequest {
    /// Position in `Bundle.entry`, so a per-entry error can be reported at the right place.
    pub index: usize,
    /// `entry.request.method` as written (empty when missing).
    pub method: String,
    /// `entry.request.url` as written (empty when missing).
    pub url: String,
    /// What [`classify`] makes of it. Malformed entries are errors here rather than a
    /// failure of the whole Bundle, so a batch can answer them one by one; a transaction
    /// must refuse the whole Bundle if any entry is an error.
    pub request: Result<FhirRequest, ClassifyError>,
}

/// Classify every entry of a `batch` or `transaction` Bundle.
///
/// `base` is this gateway's public FHIR base (e.g. `https://gw.example/fhir`); entry URLs
/// written as absolute URLs under it are accepted, any other absolute URL is an entry
/// error. Entry headers that change meaning are taken into account: `ifNoneExist` makes a
/// create conditional exactly as the `If-None-Exist` header does. Nested batches
/// (`POST` to the base inside a batch) are entry errors: they would hide their entries from
/// authorization.
pub fn classify_entries(
    bundle: &Value,
    base: Option<&str>,
) -> Result<Vec<EntryRequest>, BundleError> {
    match bundle_type(bundle)? {
        BundleType::Batch | BundleType::Transaction => {}
        other => return Err(BundleError::WrongType(other.as_str())),
    }
    let entries = match bundle.get("entry") {
        None => return Ok(Vec::new()),
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err(BundleError::EntryNotArray),
    };
    if entries.len() > MAX_ENTRIES {
        return Err(BundleError::TooManyEntries);
    }
    Ok(entries
        .iter()
        .enumerate()
        .map(|(index, entry)| classify_entry(index, entry, base))
        .collect())
}

fn classify_entry(index: usize, entry: &Value, base: Option<&str>) -> EntryRequest {
    let request = entry.get("request");
    let field = |name: &str| {
        request
            .and_then(|r| r.get(name))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let method = field("method");
    let url = field("url");
    let if_none_exist = request
        .and_then(|r| r.get("ifNoneExist"))
        .and_then(Value::as_str);
    let result = classify_entry_request(index, &method, &url, if_none_exist, base);
    EntryRequest {
        index,
        method,
        url,
        request: result,
    }
}

fn classify_entry_request(
    index: usize,
    method: &str,
    url: &str,
    if_none_exist: Option<&str>,
    base: Option<&str>,
) -> Result<FhirRequest, ClassifyError> {
    let bad = |why: &str| ClassifyError::InvalidEntry(format!("Bundle.entry[{index}]: {why}"));
    // Bundle.request.method is a code (GET | HEAD | POST | PUT | DELETE | PATCH).
    let method = match method {
        "GET" => http::Method::GET,
        "HEAD" => http::Method::HEAD,
        "POST" => http::Method::POST,
        "PUT" => http::Method::PUT,
        "PATCH" => http::Method::PATCH,
        "DELETE" => http::Method::DELETE,
        "" => return Err(bad("request.method is missing")),
        _ => return Err(bad("request.method is not a FHIR http-verb")),
    };
    if url.is_empty() {
        return Err(bad("request.url is missing"));
    }
    let relative = relative_url(url, base)
        .ok_or_else(|| bad("request.url is an absolute URL outside this server's FHIR base"))?;
    let (path, query) = match relative.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (relative, None),
    };
    let path = format!("/{path}");
    let mut headers = http::HeaderMap::new();
    if let Some(criteria) = if_none_exist {
        let value = http::HeaderValue::from_str(criteria)
            .map_err(|_| bad("request.ifNoneExist is not a valid header value"))?;
        headers.insert("if-none-exist", value);
    }
    let classified = classify(&method, &path, query, &headers, None)?;
    if classified.interaction == Interaction::BatchOrTransaction {
        return Err(bad("nested batch/transaction is not accepted"));
    }
    Ok(classified)
}

/// `Patient/1` stays; `https://base/Patient/1` under our base loses the base; a leading
/// `/` is tolerated (some clients write one). Any other absolute URL is `None`.
fn relative_url<'a>(url: &'a str, base: Option<&str>) -> Option<&'a str> {
    if let Some(base) = base {
        let base = base.trim_end_matches('/');
        if let Some(rest) = url.strip_prefix(base).and_then(|r| r.strip_prefix('/')) {
            return Some(rest);
        }
    }
    if url.contains("://") || url.starts_with("urn:") || url.starts_with("//") {
        return None;
    }
    Some(url.strip_prefix('/').unwrap_or(url))
}

/// Append an OperationOutcome as a `search.mode = outcome` entry to a searchset Bundle
/// (e.g. `suppressed` after removing entries the caller may not see). `total` is left
/// alone: it counts matches, which the outcome entry is not.
pub fn append_outcome_entry(
    searchset: &mut Value,
    outcome: &OperationOutcome,
) -> Result<(), BundleError> {
    match bundle_type(searchset)? {
        BundleType::Searchset => {}
        other => return Err(BundleError::WrongType(other.as_str())),
    }
    let entry = json!({
        "resource": outcome.to_json(),
        "search": { "mode": "outcome" },
    });
    let Some(obj) = searchset.as_object_mut() else {
        return Err(BundleError::NotABundle);
    };
    match obj
        .entry("entry")
        .or_insert_with(|| Value::Array(Vec::new()))
    {
        Value::Array(entries) => {
            entries.push(entry);
            Ok(())
        }
        _ => Err(BundleError::EntryNotArray),
    }
}

/// An empty searchset Bundle (`total` 0), for answers the gateway makes itself, e.g. a
/// search that authorization proves can match nothing.
pub fn empty_searchset() -> Value {
    let mut obj = Map::new();
    obj.insert("resourceType".into(), Value::from("Bundle"));
    obj.insert("type".into(), Value::from(BundleType::Searchset.as_str()));
    obj.insert("total".into(), Value::from(0));
    obj.insert("entry".into(), Value::Array(Vec::new()));
    Value::Object(obj)
}

/// The `entry[].resource` objects of any Bundle, in order (entries without a resource are
/// skipped).
pub fn entry_resources(bundle: &Value) -> impl Iterator<Item = &Value> {
    bundle
        .get("entry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("resource"))
}

#[cfg(test)]
mod tests;
