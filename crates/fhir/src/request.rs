//! Request classification: method + path + query (+ form body) → [`FhirRequest`].
//!
//! CONTRACT (shared by the gateway, smart and store crates): the types and the signature of
//! [`classify`] are fixed; the body is being implemented by the fhir crate owner.

use crate::resource_type::ResourceType;
use crate::search::SearchParams;

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
    /// `POST /Type` (conditional when an `If-None-Exist` header is present).
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
    /// `GET /Patient/{id}/{Type}` (`target: None` for `/Patient/{id}/*`).
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
    /// `$name` at system, type or instance level.
    Operation {
        name: String,
        level: OperationLevel,
    },
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
    /// The path is fine but the method is not defined for it (405).
    #[error("{method} is not supported on {path}")]
    MethodNotAllowed { method: String, path: String },
}

/// Classify a request. `path` is relative to the FHIR base and still percent-encoded;
/// `form_body` is the `application/x-www-form-urlencoded` body of a `POST _search`.
pub fn classify(
    method: &http::Method,
    path: &str,
    query: Option<&str>,
    headers: &http::HeaderMap,
    form_body: Option<&[u8]>,
) -> Result<FhirRequest, ClassifyError> {
    let _ = (method, query, headers, form_body);
    Err(ClassifyError::InvalidPath(format!(
        "classification not implemented yet for {path}"
    )))
}
