//! OperationOutcome: the body of every error fhirgate originates.

use serde::Serialize;

/// R4 `issue-type` codes (<http://hl7.org/fhir/R4/valueset-issue-type.html>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IssueType {
    Invalid,
    Structure,
    Required,
    Value,
    Invariant,
    Security,
    Login,
    Unknown,
    Expired,
    Forbidden,
    Suppressed,
    Processing,
    NotSupported,
    Duplicate,
    MultipleMatches,
    NotFound,
    Deleted,
    TooLong,
    CodeInvalid,
    Extension,
    TooCostly,
    BusinessRule,
    Conflict,
    Transient,
    LockError,
    NoStore,
    Exception,
    Timeout,
    Incomplete,
    Throttled,
    Informational,
}

impl IssueType {
    /// The code as written in `OperationOutcome.issue.code`.
    pub const fn as_str(self) -> &'static str {
        match self {
            IssueType::Invalid => "invalid",
            IssueType::Structure => "structure",
            IssueType::Required => "required",
            IssueType::Value => "value",
            IssueType::Invariant => "invariant",
            IssueType::Security => "security",
            IssueType::Login => "login",
            IssueType::Unknown => "unknown",
            IssueType::Expired => "expired",
            IssueType::Forbidden => "forbidden",
            IssueType::Suppressed => "suppressed",
            IssueType::Processing => "processing",
            IssueType::NotSupported => "not-supported",
            IssueType::Duplicate => "duplicate",
            IssueType::MultipleMatches => "multiple-matches",
            IssueType::NotFound => "not-found",
            IssueType::Deleted => "deleted",
            IssueType::TooLong => "too-long",
            IssueType::CodeInvalid => "code-invalid",
            IssueType::Extension => "extension",
            IssueType::TooCostly => "too-costly",
            IssueType::BusinessRule => "business-rule",
            IssueType::Conflict => "conflict",
            IssueType::Transient => "transient",
            IssueType::LockError => "lock-error",
            IssueType::NoStore => "no-store",
            IssueType::Exception => "exception",
            IssueType::Timeout => "timeout",
            IssueType::Incomplete => "incomplete",
            IssueType::Throttled => "throttled",
            IssueType::Informational => "informational",
        }
    }
}

/// R4 `issue-severity` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueSeverity {
    Fatal,
    Error,
    Warning,
    Information,
}

impl IssueSeverity {
    pub const fn as_str(self) -> &'static str {
        match self {
            IssueSeverity::Fatal => "fatal",
            IssueSeverity::Error => "error",
            IssueSeverity::Warning => "warning",
            IssueSeverity::Information => "information",
        }
    }
}

/// One `OperationOutcome.issue`.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub severity: IssueSeverity,
    pub code: IssueType,
    pub diagnostics: Option<String>,
    /// FHIRPath expressions pointing at the offending element (e.g. `Observation.subject`).
    pub expression: Vec<String>,
}

/// An OperationOutcome resource.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OperationOutcome {
    pub issues: Vec<Issue>,
}

impl OperationOutcome {
    /// An outcome with a single error issue.
    pub fn error(code: IssueType, diagnostics: impl Into<String>) -> Self {
        Self::single(IssueSeverity::Error, code, diagnostics)
    }

    pub fn single(
        severity: IssueSeverity,
        code: IssueType,
        diagnostics: impl Into<String>,
    ) -> Self {
        OperationOutcome {
            issues: vec![Issue {
                severity,
                code,
                diagnostics: Some(diagnostics.into()),
                expression: Vec::new(),
            }],
        }
    }

    /// The resource as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        #[derive(Serialize)]
        struct IssueJson<'a> {
            severity: &'static str,
            code: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            diagnostics: Option<&'a str>,
            #[serde(skip_serializing_if = "<[String]>::is_empty")]
            expression: &'a [String],
        }
        let issues: Vec<IssueJson<'_>> = self
            .issues
            .iter()
            .map(|i| IssueJson {
                severity: i.severity.as_str(),
                code: i.code.as_str(),
                diagnostics: i.diagnostics.as_deref(),
                expression: &i.expression,
            })
            .collect();
        serde_json::json!({ "resourceType": "OperationOutcome", "issue": issues })
    }

    /// Serialised body bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising a `Value` built from strings cannot fail.
        serde_json::to_vec(&self.to_json()).unwrap_or_default()
    }
}
