//! Store errors. Each variant knows its HTTP status and its OperationOutcome issue code;
//! the conversion to a response happens once, in `rest::response`.

use crate::fhir::{self, IssueType};
use http::StatusCode;

/// Everything a store operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The request or resource is not acceptable; `expression` points at the element.
    #[error("{diagnostics}")]
    Invalid {
        code: IssueType,
        diagnostics: String,
        expression: Option<String>,
    },
    #[error("{0} is not a FHIR endpoint of this store")]
    UnknownPath(String),
    #[error("resource type '{0}' is not supported")]
    UnknownType(String),
    #[error("{rtype}/{id} is not known")]
    NotFound { rtype: String, id: String },
    #[error("{rtype}/{id} has been deleted")]
    Gone { rtype: String, id: String },
    #[error("version {version} of {rtype}/{id} is not known")]
    VersionNotFound {
        rtype: String,
        id: String,
        version: String,
    },
    /// `If-Match` named another version than the current one.
    #[error("{0}")]
    PreconditionFailed(String),
    /// A conditional operation matched more than one resource.
    #[error("{0}")]
    MultipleMatches(String),
    #[error("{0}")]
    NotSupported(String),
    #[error("{0}")]
    TooCostly(String),
    #[error("storage error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the store's worker task failed")]
    Worker,
}

impl StoreError {
    /// A validation failure at `expression`.
    pub fn invalid(diagnostics: impl Into<String>, expression: Option<&str>) -> Self {
        StoreError::Invalid {
            code: IssueType::Invalid,
            diagnostics: diagnostics.into(),
            expression: expression.map(str::to_owned),
        }
    }

    /// The body is not a well-formed resource.
    pub fn structure(diagnostics: impl Into<String>) -> Self {
        StoreError::Invalid {
            code: IssueType::Structure,
            diagnostics: diagnostics.into(),
            expression: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            StoreError::Invalid { .. } => StatusCode::BAD_REQUEST,
            StoreError::NotFound { .. }
            | StoreError::VersionNotFound { .. }
            | StoreError::UnknownType(_)
            | StoreError::UnknownPath(_) => StatusCode::NOT_FOUND,
            StoreError::Gone { .. } => StatusCode::GONE,
            StoreError::PreconditionFailed(_) | StoreError::MultipleMatches(_) => {
                StatusCode::PRECONDITION_FAILED
            }
            StoreError::NotSupported(_) => StatusCode::BAD_REQUEST,
            StoreError::TooCostly(_) => StatusCode::FORBIDDEN,
            StoreError::Db(_) | StoreError::Io(_) | StoreError::Worker => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    pub fn issue_type(&self) -> IssueType {
        match self {
            StoreError::Invalid { code, .. } => *code,
            StoreError::NotFound { .. }
            | StoreError::VersionNotFound { .. }
            | StoreError::UnknownPath(_) => IssueType::NotFound,
            StoreError::Gone { .. } => IssueType::Deleted,
            StoreError::PreconditionFailed(_) => IssueType::Conflict,
            StoreError::MultipleMatches(_) => IssueType::MultipleMatches,
            StoreError::NotSupported(_) | StoreError::UnknownType(_) => IssueType::NotSupported,
            StoreError::TooCostly(_) => IssueType::TooCostly,
            StoreError::Db(_) | StoreError::Io(_) | StoreError::Worker => IssueType::Exception,
        }
    }

    /// The OperationOutcome a client sees. Storage internals stay in the log.
    pub fn to_outcome(&self) -> fhir::OperationOutcome {
        let diagnostics = match self {
            StoreError::Db(_) | StoreError::Io(_) | StoreError::Worker => {
                "internal storage error".to_owned()
            }
            other => other.to_string(),
        };
        let mut outcome = fhir::OperationOutcome::error(self.issue_type(), diagnostics);
        if let (
            StoreError::Invalid {
                expression: Some(e),
                ..
            },
            Some(issue),
        ) = (self, outcome.issues.first_mut())
        {
            issue.expression.push(e.clone());
        }
        outcome
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
