//! Reading an event back: the values `fhirgate audit search` shows.

use super::elements::{Agent, Entity};
use super::{AuditEvent, ROLE_DOMAIN_RESOURCE, ROLE_PATIENT, ROLE_QUERY, base64_decode, codes};

impl AuditEvent {
    /// Ids of the patients listed as entities (without `Patient/`).
    pub fn patients(&self) -> impl Iterator<Item = &str> {
        self.entity
            .iter()
            .filter(|e| e.has_role(ROLE_PATIENT))
            .filter_map(|e| e.what.as_ref()?.reference.as_deref())
            .filter_map(|r| r.strip_prefix("Patient/"))
    }

    /// The user: `fhirUser` when known, else `sub`.
    pub fn user(&self) -> Option<&str> {
        let who = self
            .agent
            .iter()
            .find(|a| a.has_type(codes::PARTICIPATION_TYPE, codes::INFORMATION_RECIPIENT))?
            .who
            .as_ref()?;
        who.reference
            .as_deref()
            .or(who.identifier.as_ref().map(|i| i.value.as_str()))
    }

    /// `sub` of the user, when recorded.
    pub fn subject(&self) -> Option<&str> {
        let who = self
            .agent
            .iter()
            .find(|a| a.has_type(codes::PARTICIPATION_TYPE, codes::INFORMATION_RECIPIENT))?
            .who
            .as_ref()?;
        who.identifier.as_ref().map(|i| i.value.as_str())
    }

    fn client_agent(&self) -> Option<&Agent> {
        self.agent
            .iter()
            .find(|a| a.has_type(codes::DICOM, codes::SOURCE_ROLE_ID))
    }

    /// The OAuth client id.
    pub fn client_id(&self) -> Option<&str> {
        let who = self.client_agent()?.who.as_ref()?;
        who.identifier.as_ref().map(|i| i.value.as_str())
    }

    /// The client's network address.
    pub fn network_address(&self) -> Option<&str> {
        self.client_agent()?
            .network
            .as_ref()
            .map(|n| n.address.as_str())
    }

    /// The token id (`jti`), from whichever agent carries it.
    pub fn token_id(&self) -> Option<&str> {
        self.agent
            .iter()
            .find_map(|a| a.policy.first())
            .map(String::as_str)
    }

    /// The restful-interaction code, or the event type code for trail notices.
    pub fn interaction_code(&self) -> &str {
        self.subtype
            .iter()
            .find(|c| c.system.as_deref() == Some(codes::RESTFUL_INTERACTION))
            .map_or(self.type_.code.as_str(), |c| c.code.as_str())
    }

    /// `Type/id`, or the type alone, of the resource the request addressed.
    pub fn resource(&self) -> Option<&str> {
        let what = self
            .entity
            .iter()
            .find(|e| e.has_role(ROLE_DOMAIN_RESOURCE))?
            .what
            .as_ref()?;
        what.reference.as_deref().or(what.type_.as_deref())
    }

    fn request_entity(&self) -> Option<&Entity> {
        self.entity.iter().find(|e| {
            e.type_
                .as_ref()
                .is_some_and(|t| t.is(codes::BALP_ENTITY_TYPE, "XrequestId"))
        })
    }

    /// The `X-Request-ID`.
    pub fn request_id(&self) -> Option<&str> {
        let what = self.request_entity()?.what.as_ref()?;
        what.identifier.as_ref().map(|i| i.value.as_str())
    }

    /// The response body was cut off after the status was sent.
    pub fn aborted(&self) -> bool {
        self.request_entity()
            .is_some_and(|e| e.detail.iter().any(|d| d.type_ == "aborted"))
    }

    /// The query string as received, decoded from `entity.query`.
    pub fn query(&self) -> Option<String> {
        let q = self
            .entity
            .iter()
            .find(|e| e.has_role(ROLE_QUERY))?
            .query
            .as_deref()?;
        let bytes = base64_decode(q)?;
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }
}
