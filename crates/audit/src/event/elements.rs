//! The R4 data types and elements of `AuditEvent` that the trail uses.

use serde::{Deserialize, Serialize};

use super::codes;

/// `AuditEvent.outcome` (<http://hl7.org/fhir/audit-event-outcome>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OutcomeCode {
    #[serde(rename = "0")]
    Success,
    #[serde(rename = "4")]
    MinorFailure,
    #[serde(rename = "8")]
    SeriousFailure,
    #[serde(rename = "12")]
    MajorFailure,
}

impl OutcomeCode {
    /// Client errors are minor failures, server errors and bodies cut off mid-way serious ones.
    pub fn from_status(status: u16, aborted: bool) -> OutcomeCode {
        match status {
            _ if aborted => OutcomeCode::SeriousFailure,
            100..=399 => OutcomeCode::Success,
            400..=499 => OutcomeCode::MinorFailure,
            _ => OutcomeCode::SeriousFailure,
        }
    }

    pub const fn code(self) -> &'static str {
        match self {
            OutcomeCode::Success => "0",
            OutcomeCode::MinorFailure => "4",
            OutcomeCode::SeriousFailure => "8",
            OutcomeCode::MajorFailure => "12",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coding {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

impl Coding {
    pub(super) fn new(system: &str, code: &str, display: &str) -> Coding {
        Coding {
            system: Some(system.to_owned()),
            code: code.to_owned(),
            display: Some(display.to_owned()),
        }
    }

    pub(super) fn is(&self, system: &str, code: &str) -> bool {
        self.system.as_deref() == Some(system) && self.code == code
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeableConcept {
    #[serde(default)]
    pub coding: Vec<Coding>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identifier {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The referenced resource type when there is no id to point at (a search).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub address: String,
    #[serde(rename = "type")]
    pub type_: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<CodeableConcept>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub who: Option<Reference>,
    pub requestor: bool,
    /// BALP puts the OAuth token id (`jti`) here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
}

impl Agent {
    pub(super) fn has_type(&self, system: &str, code: &str) -> bool {
        self.type_
            .as_ref()
            .is_some_and(|t| t.coding.iter().any(|c| c.is(system, code)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub observer: Reference,
    #[serde(default, rename = "type", skip_serializing_if = "Vec::is_empty")]
    pub type_: Vec<Coding>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityDetail {
    #[serde(rename = "type")]
    pub type_: String,
    pub value_string: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub what: Option<Reference>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<Coding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Coding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// base64 of the query string as received (R4 `base64Binary`), so even malformed or
    /// hostile queries are kept byte for byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detail: Vec<EntityDetail>,
}

impl Entity {
    pub(super) fn has_role(&self, code: &str) -> bool {
        self.role
            .as_ref()
            .is_some_and(|r| r.is(codes::OBJECT_ROLE, code))
    }
}
