//! The event of one gateway request, written as JSON straight from its [`AuditInput`].
//!
//! Every request writes one, so this is on the gateway's hot path. Building an owned
//! [`AuditEvent`] first cost about forty allocations and an escaping pass over the ~1.2 KB of
//! fixed codings in every record, more than the rest of the audit together except the
//! `write(2)`. Here the fixed parts are rendered once (by the same serde derives the reader
//! uses) and copied; only the request's own strings are escaped. [`AuditEvent`] remains the
//! reading side: the tests read every shape written here back through it.

use std::io::Write as _;
use std::sync::LazyLock;

use serde::Serialize as _;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::elements::{CodeableConcept, Coding, OutcomeCode};
use super::{ROLE_DOMAIN_RESOURCE, ROLE_PATIENT, ROLE_QUERY, codes};
use crate::error::AuditError;
use crate::input::AuditInput;

/// The fixed codings, each as its JSON value.
struct Fixed {
    rest: String,
    client_role: String,
    user_role: String,
    gateway_role: String,
    source_type: String,
    patient_type: String,
    patient_role: String,
    object_type: String,
    resource_role: String,
    query_role: String,
    request_id_type: String,
}

static FIXED: LazyLock<Fixed> = LazyLock::new(|| {
    let coding = |system, code, display| to_json(&Coding::new(system, code, display));
    let concept = |system, code, display| {
        to_json(&CodeableConcept {
            coding: vec![Coding::new(system, code, display)],
        })
    };
    Fixed {
        rest: coding(codes::AUDIT_EVENT_TYPE, "rest", "Restful Operation"),
        client_role: concept(codes::DICOM, codes::SOURCE_ROLE_ID, "Source Role ID"),
        user_role: concept(
            codes::PARTICIPATION_TYPE,
            codes::INFORMATION_RECIPIENT,
            "information recipient",
        ),
        gateway_role: concept(
            codes::DICOM,
            codes::DESTINATION_ROLE_ID,
            "Destination Role ID",
        ),
        source_type: to_json(&[Coding::new(
            codes::SECURITY_SOURCE_TYPE,
            "4",
            "Application Server",
        )]),
        patient_type: coding(codes::ENTITY_TYPE, "1", "Person"),
        patient_role: coding(codes::OBJECT_ROLE, ROLE_PATIENT, "Patient"),
        object_type: coding(codes::ENTITY_TYPE, "2", "System Object"),
        resource_role: coding(codes::OBJECT_ROLE, ROLE_DOMAIN_RESOURCE, "Domain Resource"),
        query_role: coding(codes::OBJECT_ROLE, ROLE_QUERY, "Query"),
        request_id_type: coding(
            codes::BALP_ENTITY_TYPE,
            "XrequestId",
            "transport specific unique identifier where http X-Request-Id is used",
        ),
    }
});

fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    // Plain structs of strings: serialising them cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

/// The BALP-shaped `AuditEvent` of one gateway request, as JSON. `observer` names this
/// gateway.
pub fn serialize_event(input: &AuditInput, observer: &str) -> Result<Vec<u8>, AuditError> {
    write_event(input, observer).map_err(|e| AuditError::Serialize(e.to_string()))
}

fn write_event(input: &AuditInput, observer: &str) -> Result<Vec<u8>, serde_json::Error> {
    let fixed = &*FIXED;
    let mut w = Json(Vec::with_capacity(2048));
    w.raw(r#"{"resourceType":"AuditEvent","type":"#);
    w.raw(&fixed.rest);
    if let Some(code) = input.interaction.code() {
        w.raw(r#","subtype":[{"system":"#);
        w.string(codes::RESTFUL_INTERACTION)?;
        w.raw(r#","code":"#);
        w.string(code)?;
        w.raw(r#","display":"#);
        w.string(code)?;
        w.raw("}]");
    }
    w.raw(r#","action":"#);
    w.string(input.interaction.action().code())?;
    w.raw(r#","recorded":""#);
    let recorded = OffsetDateTime::from(input.recorded);
    let recorded = recorded
        .replace_millisecond(recorded.millisecond())
        .unwrap_or(recorded);
    recorded
        .format_into(&mut w.0, &Rfc3339)
        .map_err(serde::ser::Error::custom)?;
    w.raw(r#"","outcome":"#);
    w.string(OutcomeCode::from_status(input.outcome.status, input.aborted).code())?;
    w.raw(r#","outcomeDesc":"#);
    w.string(&outcome_desc(input))?;
    w.raw(r#","agent":["#);
    write_agents(&mut w, input, observer)?;
    w.raw(r#"],"source":{"observer":{"display":"#);
    w.string(observer)?;
    w.raw(r#"},"type":"#);
    w.raw(&fixed.source_type);
    w.raw(r#"},"entity":["#);
    write_entities(&mut w, input)?;
    w.raw("]}");
    Ok(w.0)
}

/// The client application (the network peer, named by `client_id` when known), the user
/// when the token names one, and the gateway itself.
fn write_agents(w: &mut Json, input: &AuditInput, observer: &str) -> Result<(), serde_json::Error> {
    let fixed = &*FIXED;
    let principal = input.principal.as_ref();
    let issuer = principal.and_then(|p| p.issuer.as_deref());
    let token_id = principal.and_then(|p| p.token_id.as_deref());
    let user = principal.filter(|p| p.sub.is_some() || p.fhir_user.is_some());

    w.raw(r#"{"type":"#);
    w.raw(&fixed.client_role);
    if let Some(client_id) = principal.and_then(|p| p.client_id.as_deref()) {
        w.raw(r#","who":{"identifier":{"#);
        w.identifier(issuer, client_id)?;
        w.raw(r#"},"display":"#);
        w.string(client_id)?;
        w.raw("}");
    }
    w.raw(r#","requestor":"#);
    w.raw(if user.is_some() { "false" } else { "true" });
    if user.is_none() {
        w.policy(token_id)?;
    }
    if let Some(ip) = input.client_address {
        w.raw(r#","network":{"address":""#);
        write!(w.0, "{ip}").map_err(serde_json::Error::io)?;
        w.raw(r#"","type":"#);
        w.string(codes::NETWORK_IP)?;
        w.raw("}");
    }
    w.raw("}");

    if let Some(user) = user {
        w.raw(r#",{"type":"#);
        w.raw(&fixed.user_role);
        w.raw(r#","who":{"#);
        let mut first = true;
        if let Some(fhir_user) = &user.fhir_user {
            w.raw(r#""reference":"#);
            w.string(fhir_user)?;
            first = false;
        }
        if let Some(sub) = &user.sub {
            w.raw(if first { "" } else { "," });
            w.raw(r#""identifier":{"#);
            w.identifier(issuer, sub)?;
            w.raw("}");
        }
        w.raw(r#"},"requestor":true"#);
        w.policy(token_id)?;
        w.raw("}");
    }

    w.raw(r#",{"type":"#);
    w.raw(&fixed.gateway_role);
    w.raw(r#","who":{"display":"#);
    w.string(observer)?;
    w.raw(r#"},"requestor":false}"#);
    Ok(())
}

/// Each patient once, the resource asked for, the query, and the request id.
fn write_entities(w: &mut Json, input: &AuditInput) -> Result<(), serde_json::Error> {
    let fixed = &*FIXED;
    let mut seen = std::collections::HashSet::new();
    for id in input.patients.iter().filter(|id| seen.insert(id.as_str())) {
        w.raw(r#"{"what":{"reference":"#);
        w.string(&format!("Patient/{id}"))?;
        w.raw(r#"},"type":"#);
        w.raw(&fixed.patient_type);
        w.raw(r#","role":"#);
        w.raw(&fixed.patient_role);
        w.raw("},");
    }
    if let Some(resource_type) = &input.resource_type {
        match &input.resource_id {
            Some(id) => {
                w.raw(r#"{"what":{"reference":"#);
                w.string(&format!("{resource_type}/{id}"))?;
            }
            None => {
                w.raw(r#"{"what":{"type":"#);
                w.string(resource_type)?;
            }
        }
        w.raw(r#"},"type":"#);
        w.raw(&fixed.object_type);
        w.raw(r#","role":"#);
        w.raw(&fixed.resource_role);
        w.raw("},");
    }
    if let Some(query) = input.query.as_deref().filter(|q| !q.is_empty()) {
        w.raw(r#"{"type":"#);
        w.raw(&fixed.object_type);
        w.raw(r#","role":"#);
        w.raw(&fixed.query_role);
        w.raw(r#","description":"#);
        w.string(&request_line(input, Some(query)))?;
        w.raw(r#","query":"#);
        w.string(&super::base64_encode(query.as_bytes()))?;
        w.raw("},");
    }
    w.raw(r#"{"what":{"identifier":{"value":"#);
    w.string(&input.request_id)?;
    w.raw(r#"}},"type":"#);
    w.raw(&fixed.request_id_type);
    w.raw(r#","detail":[{"type":"request","valueString":"#);
    w.string(&request_line(input, None))?;
    w.raw("}");
    if input.aborted {
        w.raw(r#",{"type":"aborted","valueString":"true"}"#);
    }
    w.raw("]}");
    Ok(())
}

/// `GET Observation/123` or `GET Observation?code=x`: the relative request, for humans.
fn request_line(input: &AuditInput, query: Option<&str>) -> String {
    let mut line = String::with_capacity(64);
    line.push_str(&input.method);
    line.push(' ');
    let path_start = line.len();
    if let Some(rt) = &input.resource_type {
        line.push_str(rt);
        if let Some(id) = &input.resource_id {
            line.push('/');
            line.push_str(id);
        }
    }
    if let Some(op) = &input.operation {
        if line.len() > path_start {
            line.push('/');
        }
        line.push('$');
        line.push_str(op);
    }
    if let Some(q) = query {
        line.push('?');
        line.push_str(q);
    }
    line
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

/// JSON text under construction; whoever calls [`Json::raw`] is responsible for the
/// punctuation around the values.
struct Json(Vec<u8>);

impl Json {
    fn raw(&mut self, text: &str) {
        self.0.extend_from_slice(text.as_bytes());
    }

    /// A string value, quoted and escaped.
    fn string(&mut self, value: &str) -> Result<(), serde_json::Error> {
        value.serialize(&mut serde_json::Serializer::new(&mut self.0))
    }

    /// The members of an `Identifier` (`system` only when known).
    fn identifier(&mut self, system: Option<&str>, value: &str) -> Result<(), serde_json::Error> {
        if let Some(system) = system {
            self.raw(r#""system":"#);
            self.string(system)?;
            self.raw(",");
        }
        self.raw(r#""value":"#);
        self.string(value)
    }

    /// BALP puts the OAuth token id (`jti`) in `agent.policy`.
    fn policy(&mut self, token_id: Option<&str>) -> Result<(), serde_json::Error> {
        if let Some(token_id) = token_id {
            self.raw(r#","policy":["#);
            self.string(token_id)?;
            self.raw("]");
        }
        Ok(())
    }
}
