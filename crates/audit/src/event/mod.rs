//! The FHIR R4 `AuditEvent` the trail stores, shaped after IHE BALP (Basic Audit Log
//! Patterns, <https://profiles.ihe.net/ITI/BALP/>), and its construction from an
//! [`AuditInput`].
//!
//! Only the elements the gateway fills are modelled; reading ignores anything else, so
//! records stay readable if later versions add elements. Where we part with BALP: one event
//! lists every patient of a multi-patient response as its own entity (BALP suggests one event
//! per patient), so a request is always exactly one line and the chain stays one-to-one with
//! requests.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::input::{Action, AuditInput};

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
    /// The BALP-shaped event for one gateway request. `observer` names this gateway.
    pub fn from_input(input: &AuditInput, observer: &str) -> AuditEvent {
        let recorded = truncate_to_millis(OffsetDateTime::from(input.recorded));
        let interaction = input.interaction;
        let status = input.outcome.status;
        let mut agent = Vec::with_capacity(3);
        let principal = input.principal.as_ref();
        let issuer = principal.and_then(|p| p.issuer.clone());
        let token_policy: Vec<String> = principal
            .and_then(|p| p.token_id.clone())
            .into_iter()
            .collect();
        let has_user = principal.is_some_and(|p| p.sub.is_some() || p.fhir_user.is_some());

        // The client application: the network peer, identified by client_id when known.
        agent.push(Agent {
            type_: Some(concept(
                codes::DICOM,
                codes::SOURCE_ROLE_ID,
                "Source Role ID",
            )),
            who: principal
                .and_then(|p| p.client_id.as_ref())
                .map(|id| Reference {
                    identifier: Some(Identifier {
                        system: issuer.clone(),
                        value: id.clone(),
                    }),
                    display: Some(id.clone()),
                    ..Reference::default()
                }),
            requestor: !has_user,
            policy: if has_user {
                Vec::new()
            } else {
                token_policy.clone()
            },
            network: input.client_address.map(|ip| Network {
                address: ip.to_string(),
                type_: codes::NETWORK_IP.to_owned(),
            }),
        });
        if let Some(p) = principal.filter(|_| has_user) {
            agent.push(Agent {
                type_: Some(concept(
                    codes::PARTICIPATION_TYPE,
                    codes::INFORMATION_RECIPIENT,
                    "information recipient",
                )),
                who: Some(Reference {
                    reference: p.fhir_user.clone(),
                    identifier: p.sub.as_ref().map(|sub| Identifier {
                        system: issuer.clone(),
                        value: sub.clone(),
                    }),
                    ..Reference::default()
                }),
                requestor: true,
                policy: token_policy,
                network: None,
            });
        }
        agent.push(Agent {
            type_: Some(concept(
                codes::DICOM,
                codes::DESTINATION_ROLE_ID,
                "Destination Role ID",
            )),
            who: Some(Reference {
                display: Some(observer.to_owned()),
                ..Reference::default()
            }),
            requestor: false,
            policy: Vec::new(),
            network: None,
        });

        let mut entity = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for id in input.patients.iter().filter(|id| seen.insert(id.as_str())) {
            entity.push(Entity {
                what: Some(Reference {
                    reference: Some(format!("Patient/{id}")),
                    ..Reference::default()
                }),
                type_: Some(Coding::new(codes::ENTITY_TYPE, "1", "Person")),
                role: Some(Coding::new(codes::OBJECT_ROLE, ROLE_PATIENT, "Patient")),
                ..Entity::default()
            });
        }
        if let Some(rt) = &input.resource_type {
            let what = match &input.resource_id {
                Some(id) => Reference {
                    reference: Some(format!("{rt}/{id}")),
                    ..Reference::default()
                },
                None => Reference {
                    type_: Some(rt.clone()),
                    ..Reference::default()
                },
            };
            entity.push(Entity {
                what: Some(what),
                type_: Some(Coding::new(codes::ENTITY_TYPE, "2", "System Object")),
                role: Some(Coding::new(
                    codes::OBJECT_ROLE,
                    ROLE_DOMAIN_RESOURCE,
                    "Domain Resource",
                )),
                ..Entity::default()
            });
        }
        if let Some(q) = input.query.as_deref().filter(|q| !q.is_empty()) {
            entity.push(Entity {
                type_: Some(Coding::new(codes::ENTITY_TYPE, "2", "System Object")),
                role: Some(Coding::new(codes::OBJECT_ROLE, ROLE_QUERY, "Query")),
                description: Some(request_line(input, Some(q))),
                query: Some(base64_encode(q.as_bytes())),
                ..Entity::default()
            });
        }
        let mut detail = vec![EntityDetail {
            type_: "request".to_owned(),
            value_string: request_line(input, None),
        }];
        if input.aborted {
            detail.push(EntityDetail {
                type_: "aborted".to_owned(),
                value_string: "true".to_owned(),
            });
        }
        entity.push(Entity {
            what: Some(Reference {
                identifier: Some(Identifier {
                    system: None,
                    value: input.request_id.clone(),
                }),
                ..Reference::default()
            }),
            type_: Some(Coding::new(
                codes::BALP_ENTITY_TYPE,
                "XrequestId",
                "transport specific unique identifier where http X-Request-Id is used",
            )),
            detail,
            ..Entity::default()
        });

        AuditEvent {
            resource_type: "AuditEvent".to_owned(),
            type_: Coding::new(codes::AUDIT_EVENT_TYPE, "rest", "Restful Operation"),
            subtype: interaction
                .code()
                .map(|c| Coding::new(codes::RESTFUL_INTERACTION, c, c))
                .into_iter()
                .collect(),
            action: Some(interaction.action()),
            recorded,
            outcome: Some(OutcomeCode::from_status(status, input.aborted)),
            outcome_desc: Some(outcome_desc(input)),
            agent,
            source: source(observer),
            entity,
        }
    }

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

/// `GET Observation/123` or `GET Observation?code=x`: the relative request, for humans.
fn request_line(input: &AuditInput, query: Option<&str>) -> String {
    let mut path = String::new();
    if let Some(rt) = &input.resource_type {
        path.push_str(rt);
        if let Some(id) = &input.resource_id {
            path.push('/');
            path.push_str(id);
        }
    }
    if let Some(op) = &input.operation {
        if !path.is_empty() {
            path.push('/');
        }
        path.push('$');
        path.push_str(op);
    }
    match query {
        Some(q) => format!("{} {path}?{q}", input.method),
        None => format!("{} {path}", input.method),
    }
}

fn outcome_desc(input: &AuditInput) -> String {
    let o = &input.outcome;
    let mut s = o.status.to_string();
    if let Some(code) = &o.issue_code {
        s.push(' ');
        s.push_str(code);
    }
    if let Some(d) = &o.description {
        s.push_str(": ");
        s.push_str(d);
    }
    if input.aborted {
        s.push_str(" (response aborted mid-body)");
    }
    s
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
