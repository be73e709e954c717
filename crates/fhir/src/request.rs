//! Request classification: method + path + query (+ form body) → [`FhirRequest`].
//!
//! This is the first phase of every request. It is deliberately strict: a path is either
//! already canonical (no percent-escapes, dot segments, `;` parameters, doubled slashes,
//! backslashes, control characters) or it is rejected, so the path the upstream receives is
//! byte for byte the path that was authorized (DESIGN.md §5, security.md F14–F17). Nothing
//! is normalised silently.

use crate::outcome::{IssueType, OperationOutcome};
use crate::resource_type::ResourceType;
use crate::search::SearchParams;

/// Longest path accepted. Real FHIR paths are a few dozen bytes; the gateway's URI limit
/// applies first, this only keeps the work per request bounded on its own.
pub const MAX_PATH_LEN: usize = 4096;

/// Headers that ask a server to treat a request as another method. Honouring them would let
/// `POST` be authorized and a `DELETE` be executed upstream, so their presence is an error.
pub const METHOD_OVERRIDE_HEADERS: [http::HeaderName; 3] = [
    http::HeaderName::from_static("x-http-method-override"),
    http::HeaderName::from_static("x-http-method"),
    http::HeaderName::from_static("x-method-override"),
];

/// Headers some frameworks (IIS URL Rewrite, Symfony, Zend) take as the real request path.
/// An upstream honouring them would serve a path other than the one authorized.
pub const PATH_OVERRIDE_HEADERS: [http::HeaderName; 2] = [
    http::HeaderName::from_static("x-original-url"),
    http::HeaderName::from_static("x-rewrite-url"),
];

const IF_NONE_EXIST: http::HeaderName = http::HeaderName::from_static("if-none-exist");

/// Resource types that define a compartment usable in `/[Compartment]/[id]/[Type]`.
pub const COMPARTMENT_TYPES: [ResourceType; 5] = [
    ResourceType::Patient,
    ResourceType::Encounter,
    ResourceType::Practitioner,
    ResourceType::RelatedPerson,
    ResourceType::Device,
];

/// One classified FHIR REST request. Everything downstream works from this value, and the
/// gateway forwards exactly `path` + `params.to_query_string()` to the upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct FhirRequest {
    pub method: http::Method,
    pub interaction: Interaction,
    /// Normalised path relative to the FHIR base, starting with `/` (e.g. `/Patient/123`).
    /// Still percent-encoded exactly as it will be sent upstream.
    pub path: String,
    /// Query parameters (URL query, plus the form body for `POST _search`), in order.
    pub params: SearchParams,
}

impl FhirRequest {
    /// `path` plus `?query` when there are parameters: the exact target to send upstream.
    pub fn path_and_query(&self) -> String {
        if self.params.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.params.to_query_string())
        }
    }

    /// True for interactions that only read (GET/HEAD semantics, including `POST _search`).
    pub fn is_read_only(&self) -> bool {
        self.interaction.is_read_only()
    }
}

/// Where an operation (`$name`) was invoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperationLevel {
    System,
    Type(ResourceType),
    Instance(ResourceType, String),
}

/// The FHIR RESTful interaction a request performs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Interaction {
    /// `GET /metadata`
    Capabilities,
    Read {
        resource_type: ResourceType,
        id: String,
    },
    Vread {
        resource_type: ResourceType,
        id: String,
        version: String,
    },
    Update {
        resource_type: ResourceType,
        id: String,
    },
    /// `PUT /Type?criteria`
    ConditionalUpdate {
        resource_type: ResourceType,
    },
    Patch {
        resource_type: ResourceType,
        id: String,
    },
    /// `PATCH /Type?criteria`
    ConditionalPatch {
        resource_type: ResourceType,
    },
    Delete {
        resource_type: ResourceType,
        id: String,
    },
    /// `DELETE /Type?criteria`
    ConditionalDelete {
        resource_type: ResourceType,
    },
    /// `POST /Type` (conditional when an `If-None-Exist` header is present; the header's
    /// value, a query string without `?`, is kept here).
    Create {
        resource_type: ResourceType,
        conditional: Option<String>,
    },
    /// `GET /Type?…` or `POST /Type/_search`.
    SearchType {
        resource_type: ResourceType,
    },
    /// `GET /?…` or `POST /_search`.
    SearchSystem,
    /// `GET /Patient/{id}/{Type}` (`target: None` for `/Patient/{id}/*`), also
    /// `POST /Patient/{id}/_search` and `POST /Patient/{id}/{Type}/_search`. The compartment
    /// is one of [`COMPARTMENT_TYPES`].
    SearchCompartment {
        compartment: ResourceType,
        id: String,
        target: Option<ResourceType>,
    },
    HistoryInstance {
        resource_type: ResourceType,
        id: String,
    },
    HistoryType {
        resource_type: ResourceType,
    },
    HistorySystem,
    /// `POST /` with a Bundle; batch or transaction is decided from the body by later phases.
    BatchOrTransaction,
    /// `$name` at system, type or instance level. `name` is the operation code WITHOUT the
    /// `$` (`everything` for `$everything`), as in `OperationDefinition.code`.
    Operation {
        name: String,
        level: OperationLevel,
    },
}

impl Interaction {
    /// The resource type the interaction addresses (the compartment's type for compartment
    /// searches), if any.
    pub fn resource_type(&self) -> Option<ResourceType> {
        match self {
            Interaction::Read { resource_type, .. }
            | Interaction::Vread { resource_type, .. }
            | Interaction::Update { resource_type, .. }
            | Interaction::ConditionalUpdate { resource_type }
            | Interaction::Patch { resource_type, .. }
            | Interaction::ConditionalPatch { resource_type }
            | Interaction::Delete { resource_type, .. }
            | Interaction::ConditionalDelete { resource_type }
            | Interaction::Create { resource_type, .. }
            | Interaction::SearchType { resource_type }
            | Interaction::HistoryInstance { resource_type, .. }
            | Interaction::HistoryType { resource_type } => Some(*resource_type),
            Interaction::SearchCompartment { compartment, .. } => Some(*compartment),
            Interaction::Operation { level, .. } => match level {
                OperationLevel::System => None,
                OperationLevel::Type(t) | OperationLevel::Instance(t, _) => Some(*t),
            },
            Interaction::Capabilities
            | Interaction::SearchSystem
            | Interaction::HistorySystem
            | Interaction::BatchOrTransaction => None,
        }
    }

    /// The resource id in the path, if any (the compartment owner for compartment searches).
    pub fn id(&self) -> Option<&str> {
        match self {
            Interaction::Read { id, .. }
            | Interaction::Vread { id, .. }
            | Interaction::Update { id, .. }
            | Interaction::Patch { id, .. }
            | Interaction::Delete { id, .. }
            | Interaction::HistoryInstance { id, .. }
            | Interaction::SearchCompartment { id, .. }
            | Interaction::Operation {
                level: OperationLevel::Instance(_, id),
                ..
            } => Some(id),
            _ => None,
        }
    }

    /// True for interactions that cannot change server state. Operations are not
    /// considered read-only here: whether `$everything` or `$process-message` writes is a
    /// per-operation decision left to authorization.
    pub fn is_read_only(&self) -> bool {
        matches!(
            self,
            Interaction::Capabilities
                | Interaction::Read { .. }
                | Interaction::Vread { .. }
                | Interaction::SearchType { .. }
                | Interaction::SearchSystem
                | Interaction::SearchCompartment { .. }
                | Interaction::HistoryInstance { .. }
                | Interaction::HistoryType { .. }
                | Interaction::HistorySystem
        )
    }

    /// A stable lower-case label for metrics and audit (`read`, `search-type`, ...): the
    /// R4 `restful-interaction` code where one exists, otherwise a name in the same style
    /// (`conditional-update`, `search-compartment`, `batch-or-transaction`).
    pub const fn label(&self) -> &'static str {
        match self {
            Interaction::Capabilities => "capabilities",
            Interaction::Read { .. } => "read",
            Interaction::Vread { .. } => "vread",
            Interaction::Update { .. } => "update",
            Interaction::ConditionalUpdate { .. } => "conditional-update",
            Interaction::Patch { .. } => "patch",
            Interaction::ConditionalPatch { .. } => "conditional-patch",
            Interaction::Delete { .. } => "delete",
            Interaction::ConditionalDelete { .. } => "conditional-delete",
            Interaction::Create { .. } => "create",
            Interaction::SearchType { .. } => "search-type",
            Interaction::SearchSystem => "search-system",
            Interaction::SearchCompartment { .. } => "search-compartment",
            Interaction::HistoryInstance { .. } => "history-instance",
            Interaction::HistoryType { .. } => "history-type",
            Interaction::HistorySystem => "history-system",
            Interaction::BatchOrTransaction => "batch-or-transaction",
            Interaction::Operation { .. } => "operation",
        }
    }
}

/// Why a request is not a well-formed FHIR REST request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ClassifyError {
    /// Path tricks and malformed paths (encoded slash, dot segment, `;`, NUL, `//`, ...).
    #[error("{0}")]
    InvalidPath(String),
    /// Unknown or wrongly-cased resource type.
    #[error("'{0}' is not a FHIR R4 resource type")]
    UnknownResourceType(String),
    /// An id that does not match `[A-Za-z0-9\-\.]{{1,64}}`.
    #[error("'{0}' is not a valid FHIR id")]
    InvalidId(String),
    /// Malformed query string or form body.
    #[error("{0}")]
    InvalidQuery(String),
    /// `X-HTTP-Method-Override` and friends.
    #[error("method-override header '{0}' is not accepted")]
    MethodOverride(String),
    /// `X-Original-URL` / `X-Rewrite-URL`: a second request path in a header.
    #[error("path-override header '{0}' is not accepted")]
    PathOverride(String),
    /// The path is fine but the method is not defined for it (405).
    #[error("{method} is not supported on {path}")]
    MethodNotAllowed { method: String, path: String },
    /// A batch/transaction entry without a usable `request` (see [`crate::bundle`]).
    #[error("{0}")]
    InvalidEntry(String),
}

impl ClassifyError {
    /// The HTTP status the gateway answers with: 405 for a method the path does not
    /// support, 400 for everything else.
    pub fn status(&self) -> http::StatusCode {
        match self {
            ClassifyError::MethodNotAllowed { .. } => http::StatusCode::METHOD_NOT_ALLOWED,
            _ => http::StatusCode::BAD_REQUEST,
        }
    }

    /// The OperationOutcome `issue.code`: `not-supported` for 405, `value` for a bad id,
    /// `structure` for a malformed query or Bundle entry, `invalid` for the rest.
    pub fn issue_type(&self) -> IssueType {
        match self {
            ClassifyError::MethodNotAllowed { .. } => IssueType::NotSupported,
            ClassifyError::InvalidId(_) => IssueType::Value,
            ClassifyError::InvalidQuery(_) | ClassifyError::InvalidEntry(_) => IssueType::Structure,
            _ => IssueType::Invalid,
        }
    }

    /// The OperationOutcome body for this error. The message only echoes parts of the
    /// request the caller sent, never internals.
    pub fn to_outcome(&self) -> OperationOutcome {
        OperationOutcome::error(self.issue_type(), self.to_string())
    }
}

/// Classify a request. `path` is relative to the FHIR base and still percent-encoded;
/// `form_body` is the `application/x-www-form-urlencoded` body of a `POST _search` (it is
/// ignored for every other interaction, so the gateway may pass any form body it has).
///
/// `HEAD` is classified as `GET` (the method stays `HEAD` in the result).
pub fn classify(
    method: &http::Method,
    path: &str,
    query: Option<&str>,
    headers: &http::HeaderMap,
    form_body: Option<&[u8]>,
) -> Result<FhirRequest, ClassifyError> {
    // One pass over the few names a request carries rather than a hashed probe for each of
    // the five override names, which are custom names and hashed byte by byte: this runs for
    // every request. A method override is reported before a path override.
    let mut path_override = None;
    for name in headers.keys() {
        if METHOD_OVERRIDE_HEADERS.contains(name) {
            return Err(ClassifyError::MethodOverride(name.as_str().to_owned()));
        }
        if path_override.is_none() && PATH_OVERRIDE_HEADERS.contains(name) {
            path_override = Some(name);
        }
    }
    if let Some(name) = path_override {
        return Err(ClassifyError::PathOverride(name.as_str().to_owned()));
    }
    let verb = Verb::from_method(method, path)?;
    route::check_path(path)?;
    let mut params = match query {
        Some(q) => {
            route::check_raw_query(q)?;
            SearchParams::parse(q)?
        }
        None => SearchParams::default(),
    };
    if params.contains("_method") {
        return Err(ClassifyError::MethodOverride("_method".to_owned()));
    }
    let segments = route::split_segments(path)?;
    let has_query = !params.is_empty();
    let interaction = route::route(verb, &segments, has_query, headers, method, path)?;
    if let (Verb::Post, Some(body)) = (verb, form_body)
        && is_post_search(&interaction)
    {
        let body = std::str::from_utf8(body)
            .map_err(|_| ClassifyError::InvalidQuery("form body is not UTF-8".to_owned()))?;
        route::check_raw_query(body)?;
        params.extend_from_query(body)?;
        if params.contains("_method") {
            return Err(ClassifyError::MethodOverride("_method".to_owned()));
        }
    }
    Ok(FhirRequest {
        method: method.clone(),
        interaction,
        path: path.to_owned(),
        params,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Verb {
    fn from_method(method: &http::Method, path: &str) -> Result<Self, ClassifyError> {
        Ok(match *method {
            http::Method::GET | http::Method::HEAD => Verb::Get,
            http::Method::POST => Verb::Post,
            http::Method::PUT => Verb::Put,
            http::Method::PATCH => Verb::Patch,
            http::Method::DELETE => Verb::Delete,
            _ => return Err(not_allowed(method, path)),
        })
    }
}

pub(crate) fn not_allowed(method: &http::Method, path: &str) -> ClassifyError {
    ClassifyError::MethodNotAllowed {
        method: method.as_str().to_owned(),
        path: truncate(path),
    }
}

/// Error messages echo the path; keep them short whatever the caller sent.
pub(crate) fn truncate(s: &str) -> String {
    const MAX: usize = 200;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", s.get(..end).unwrap_or_default())
}

fn is_post_search(i: &Interaction) -> bool {
    matches!(
        i,
        Interaction::SearchType { .. }
            | Interaction::SearchSystem
            | Interaction::SearchCompartment { .. }
    )
}

mod route;

#[cfg(test)]
mod tests;
