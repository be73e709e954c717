//! The FHIR R4 `AuditEvent` the trail stores, shaped after IHE BALP (Basic Audit Log
//! Patterns, <https://profiles.ihe.net/ITI/BALP/>): written straight from an
//! [`AuditInput`](crate::AuditInput) by [`serialize_event`], read back as [`AuditEvent`].
//!
//! Only the elements the gateway fills are modelled; reading ignores anything else, so
//! records stay readable if later versions add elements. Where we part with BALP: one event
//! lists every patient of a multi-patient response as its own entity (BALP suggests one event
//! per patient), so a request is always exactly one line and the chain stays one-to-one with
//! requests.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::input::Action;

/// Code systems and codes used in the events (spec values, kept in one place).
pub mod codes {
    pub const AUDIT_EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
    pub const RESTFUL_INTERACTION: &str = "http://hl7.org/fhir/restful-interaction";
    pub const DICOM: &str = "http://dicom.nema.org/resources/ontology/DCM";
    pub const PARTICIPATION_TYPE: &str =
        "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
    pub const SECURITY_SOURCE_TYPE: &str =
        "http://terminology.hl7.org/CodeSystem/security-source-type";
    pub const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
    pub const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
    pub const BALP_ENTITY_TYPE: &str =
        "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType";

    /// `agent.type` of the client application (DICOM "Source Role ID").
    pub const SOURCE_ROLE_ID: &str = "110153";
    /// `agent.type` of the gateway itself (DICOM "Destination Role ID").
    pub const DESTINATION_ROLE_ID: &str = "110152";
    /// `agent.type` of the user (v3 ParticipationType "information recipient").
    pub const INFORMATION_RECIPIENT: &str = "IRCP";
    /// `type` of events the trail writes about itself (DICOM "Application Activity").
    pub const APPLICATION_ACTIVITY: &str = "110100";
    /// `agent.network.type` for an IP address (audit-event-network-type).
    pub const NETWORK_IP: &str = "2";
}

mod elements;
mod read;
mod write;

pub use write::serialize_event;

pub use elements::{
    Agent, CodeableConcept, Coding, Entity, EntityDetail, Identifier, Network, OutcomeCode,
    Reference, Source,
};

/// A FHIR R4 `AuditEvent` as written to and read from the trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub resource_type: String,
    #[serde(rename = "type")]
    pub type_: Coding,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subtype: Vec<Coding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    #[serde(with = "time::serde::rfc3339")]
    pub recorded: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<OutcomeCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome_desc: Option<String>,
    #[serde(default)]
    pub agent: Vec<Agent>,
    pub source: Source,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entity: Vec<Entity>,
}

// Object-role codes (http://terminology.hl7.org/CodeSystem/object-role).
const ROLE_PATIENT: &str = "1";
const ROLE_DOMAIN_RESOURCE: &str = "4";
const ROLE_QUERY: &str = "24";

impl AuditEvent {
    /// An event the trail writes about itself (a truncated file found at start-up, recovery
    /// after a write failure), so gaps are explained inside the chain rather than in a log.
    pub fn trail_notice(
        recorded: OffsetDateTime,
        observer: &str,
        outcome: OutcomeCode,
        description: String,
    ) -> AuditEvent {
        AuditEvent {
            resource_type: "AuditEvent".to_owned(),
            type_: Coding::new(
                codes::DICOM,
                codes::APPLICATION_ACTIVITY,
                "Application Activity",
            ),
            subtype: Vec::new(),
            action: Some(Action::Execute),
            recorded: truncate_to_millis(recorded),
            outcome: Some(outcome),
            outcome_desc: Some(description),
            agent: vec![Agent {
                type_: Some(concept(codes::DICOM, "110150", "Application")),
                who: Some(Reference {
                    display: Some(observer.to_owned()),
                    ..Reference::default()
                }),
                requestor: false,
                policy: Vec::new(),
                network: None,
            }],
            source: source(observer),
            entity: Vec::new(),
        }
    }
}

fn concept(system: &str, code: &str, display: &str) -> CodeableConcept {
    CodeableConcept {
        coding: vec![Coding::new(system, code, display)],
    }
}

fn source(observer: &str) -> Source {
    Source {
        observer: Reference {
            display: Some(observer.to_owned()),
            ..Reference::default()
        },
        type_: vec![Coding::new(
            codes::SECURITY_SOURCE_TYPE,
            "4",
            "Application Server",
        )],
    }
}

fn truncate_to_millis(t: OffsetDateTime) -> OffsetDateTime {
    let ms = t.millisecond();
    t.replace_millisecond(ms).unwrap_or(t)
}

/// Standard base64 with padding (FHIR `base64Binary`).
fn base64_encode(input: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(input)
}

fn base64_decode(input: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(input).ok()
}
