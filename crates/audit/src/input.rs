//! What the gateway knows about one request when it is done: plain data, no FHIR shapes.

use std::net::IpAddr;
use std::time::SystemTime;

/// One request as the gateway saw it, allowed or refused. Built once per request and handed to
/// [`crate::AuditSink::record`], which turns it into an `AuditEvent`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AuditInput {
    /// When the gateway finished handling the request (becomes `AuditEvent.recorded`).
    pub recorded: SystemTime,
    /// The `X-Request-ID` the gateway generated or propagated.
    pub request_id: String,
    /// The client's network address (after trusted-proxy processing, if any).
    pub client_address: Option<IpAddr>,
    /// HTTP method as sent (`GET`, `POST`, ...).
    pub method: String,
    pub interaction: Interaction,
    /// Resource type the request addressed, if any (`Observation`).
    pub resource_type: Option<String>,
    /// Resource id the request addressed, if any.
    pub resource_id: Option<String>,
    /// Operation name without `$` for [`Interaction::Operation`].
    pub operation: Option<String>,
    /// The query string as received, without the leading `?`.
    pub query: Option<String>,
    pub outcome: Outcome,
    /// Who made the request; `None` when authentication failed or was absent.
    pub principal: Option<AuditPrincipal>,
    /// Ids (without `Patient/`) of every patient whose data was returned or touched, from the
    /// compartment check: for a searchset every patient of the entries actually sent.
    pub patients: Vec<String>,
    /// The response body was cut off after the status was sent (upstream reset, client gone,
    /// verification failure mid-stream). The status then does not tell the whole story.
    pub aborted: bool,
}

impl AuditInput {
    /// A record with only the transport facts filled in; the rest defaults to "unknown/none".
    pub fn new(
        recorded: SystemTime,
        request_id: impl Into<String>,
        method: impl Into<String>,
        interaction: Interaction,
        status: u16,
    ) -> Self {
        AuditInput {
            recorded,
            request_id: request_id.into(),
            client_address: None,
            method: method.into(),
            interaction,
            resource_type: None,
            resource_id: None,
            operation: None,
            query: None,
            outcome: Outcome::new(status),
            principal: None,
            patients: Vec::new(),
            aborted: false,
        }
    }
}

/// The response's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outcome {
    /// HTTP status sent to the client.
    pub status: u16,
    /// OperationOutcome `issue.code` when the gateway or upstream answered with an error
    /// (`forbidden`, `login`, `throttled`, ...).
    pub issue_code: Option<String>,
    /// Short human description (the deny reason, the diagnostics of the error); never token
    /// contents or another patient's data.
    pub description: Option<String>,
}

impl Outcome {
    pub fn new(status: u16) -> Self {
        Outcome {
            status,
            issue_code: None,
            description: None,
        }
    }

    pub fn with_issue(mut self, code: impl Into<String>, description: impl Into<String>) -> Self {
        self.issue_code = Some(code.into());
        self.description = Some(description.into());
        self
    }
}

/// The authenticated caller, as far as the audit needs it. Never the token itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditPrincipal {
    /// Token `sub`.
    pub sub: Option<String>,
    /// SMART `fhirUser` (`Practitioner/123` or an absolute URL).
    pub fhir_user: Option<String>,
    /// OAuth `client_id` (or `azp`).
    pub client_id: Option<String>,
    /// Token issuer (`iss`), which scopes `sub` and `client_id`.
    pub issuer: Option<String>,
    /// Token id (`jti`), so a record can be tied to one token without storing it.
    pub token_id: Option<String>,
}

impl AuditPrincipal {
    pub fn new(sub: Option<String>, client_id: Option<String>) -> Self {
        AuditPrincipal {
            sub,
            client_id,
            ..AuditPrincipal::default()
        }
    }
}

/// FHIR RESTful interaction, coded from <http://hl7.org/fhir/restful-interaction> (R4).
///
/// The gateway maps its own classification onto these: a compartment search becomes
/// `SearchType` of the target type, conditional update/patch/delete become `Update`/`Patch`/
/// `Delete`, and a request that could not be classified (400) is `Unclassified`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Interaction {
    Read,
    Vread,
    Update,
    Patch,
    Delete,
    HistoryInstance,
    HistoryType,
    HistorySystem,
    Create,
    SearchType,
    SearchSystem,
    Capabilities,
    Transaction,
    Batch,
    Operation,
    /// Not a recognisable FHIR REST request; no `subtype` is recorded.
    Unclassified,
}

impl Interaction {
    pub const ALL: [Interaction; 16] = [
        Interaction::Read,
        Interaction::Vread,
        Interaction::Update,
        Interaction::Patch,
        Interaction::Delete,
        Interaction::HistoryInstance,
        Interaction::HistoryType,
        Interaction::HistorySystem,
        Interaction::Create,
        Interaction::SearchType,
        Interaction::SearchSystem,
        Interaction::Capabilities,
        Interaction::Transaction,
        Interaction::Batch,
        Interaction::Operation,
        Interaction::Unclassified,
    ];

    /// The restful-interaction code, or `None` for [`Interaction::Unclassified`].
    pub const fn code(self) -> Option<&'static str> {
        Some(match self {
            Interaction::Read => "read",
            Interaction::Vread => "vread",
            Interaction::Update => "update",
            Interaction::Patch => "patch",
            Interaction::Delete => "delete",
            Interaction::HistoryInstance => "history-instance",
            Interaction::HistoryType => "history-type",
            Interaction::HistorySystem => "history-system",
            Interaction::Create => "create",
            Interaction::SearchType => "search-type",
            Interaction::SearchSystem => "search-system",
            Interaction::Capabilities => "capabilities",
            Interaction::Transaction => "transaction",
            Interaction::Batch => "batch",
            Interaction::Operation => "operation",
            Interaction::Unclassified => return None,
        })
    }

    /// Parse a restful-interaction code (the inverse of [`Interaction::code`]).
    pub fn from_code(code: &str) -> Option<Interaction> {
        Interaction::ALL
            .into_iter()
            .find(|i| i.code() == Some(code))
    }

    /// `AuditEvent.action` as IHE BALP assigns it: reads are R, searches, history queries,
    /// batches and operations are E (execute), writes are C/U/D.
    pub const fn action(self) -> Action {
        match self {
            Interaction::Create => Action::Create,
            Interaction::Read
            | Interaction::Vread
            | Interaction::HistoryInstance
            | Interaction::Capabilities => Action::Read,
            Interaction::Update | Interaction::Patch => Action::Update,
            Interaction::Delete => Action::Delete,
            Interaction::HistoryType
            | Interaction::HistorySystem
            | Interaction::SearchType
            | Interaction::SearchSystem
            | Interaction::Transaction
            | Interaction::Batch
            | Interaction::Operation
            | Interaction::Unclassified => Action::Execute,
        }
    }
}

/// `AuditEvent.action` (<http://hl7.org/fhir/audit-event-action>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Action {
    #[serde(rename = "C")]
    Create,
    #[serde(rename = "R")]
    Read,
    #[serde(rename = "U")]
    Update,
    #[serde(rename = "D")]
    Delete,
    #[serde(rename = "E")]
    Execute,
}

impl Action {
    pub const fn code(self) -> &'static str {
        match self {
            Action::Create => "C",
            Action::Read => "R",
            Action::Update => "U",
            Action::Delete => "D",
            Action::Execute => "E",
        }
    }
}
