//! v2 granular scope restrictions (`?category=system|code&…`) and how they are enforced.
//!
//! A restriction is only honoured when the gateway can prove it both ways: on the request
//! (the search carries it, or it is added) and on the response (every returned resource
//! matches it). That is possible for token parameters whose element we know
//! ([`TOKEN_ELEMENTS`]); any other restriction (modifiers, chains, unknown parameters) is
//! refused at parse time, so the scope grants nothing rather than something unproven.

use std::fmt;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde_json::Value;

use crate::scope::decode;

/// Token search parameters we can enforce, with the JSON element behind each. The same
/// element name holds for every resource type that defines the parameter this way.
pub const TOKEN_ELEMENTS: &[(&str, &str)] = &[
    ("category", "category"),
    ("code", "code"),
    ("status", "status"),
    ("clinical-status", "clinicalStatus"),
    ("verification-status", "verificationStatus"),
    ("type", "type"),
    ("class", "class"),
    ("intent", "intent"),
    ("priority", "priority"),
];

/// Characters escaped when a restriction is written back into a scope string.
const COMPONENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'%')
    .add(b'&')
    .add(b'=')
    .add(b'?')
    .add(b'#');

/// Most `name=value` pairs in one restriction.
const MAX_PAIRS: usize = 16;

/// Why a restriction was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RestrictionError {
    #[error("empty or malformed name=value pair")]
    Malformed,
    #[error("'{0}' is not a restriction the gateway can enforce")]
    Unsupported(String),
    #[error("too many restriction parameters")]
    TooMany,
}

/// One granular restriction: every pair must hold (AND).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restriction {
    /// Decoded `(parameter, token value)` pairs, in scope order.
    pub params: Vec<(String, String)>,
}

impl Restriction {
    /// Parse the part after `?`.
    pub fn parse(query: &str) -> Result<Restriction, RestrictionError> {
        let mut params = Vec::new();
        for pair in query.split('&') {
            if params.len() >= MAX_PAIRS {
                return Err(RestrictionError::TooMany);
            }
            let (name, value) = pair.split_once('=').ok_or(RestrictionError::Malformed)?;
            let name = decode(name).ok_or(RestrictionError::Malformed)?;
            let value = decode(value).ok_or(RestrictionError::Malformed)?;
            if name.is_empty() || value.is_empty() || value.contains(',') {
                return Err(RestrictionError::Malformed);
            }
            if element_for(&name).is_none() {
                return Err(RestrictionError::Unsupported(
                    name.chars().take(64).collect(),
                ));
            }
            params.push((name, value));
        }
        Ok(Restriction { params })
    }

    /// Whether a resource matches every pair.
    pub fn matches_resource(&self, resource: &Value) -> bool {
        self.params.iter().all(|(name, value)| {
            element_for(name)
                .and_then(|el| resource.get(el))
                .is_some_and(|v| token_matches(v, value))
        })
    }
}

impl fmt::Display for Restriction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (n, v)) in self.params.iter().enumerate() {
            if i > 0 {
                f.write_str("&")?;
            }
            // Encode what would change the parse (`&`, `=`, `%`, spaces) so the scope
            // string round-trips.
            let n = utf8_percent_encode(n, COMPONENT);
            let v = utf8_percent_encode(v, COMPONENT);
            write!(f, "{n}={v}")?;
        }
        Ok(())
    }
}

/// The JSON element behind an enforceable token parameter.
pub fn element_for(param: &str) -> Option<&'static str> {
    TOKEN_ELEMENTS
        .iter()
        .find(|(p, _)| *p == param)
        .map(|(_, e)| *e)
}

/// `system|code`, `code`, `|code` (no system), `system|` (any code) → (system, code).
/// `None` system means "any system"; `Some("")` means "no system".
fn split_token(token: &str) -> (Option<&str>, &str) {
    match token.split_once('|') {
        Some((system, code)) => (Some(system), code),
        None => (None, token),
    }
}

/// Whether a search value is at least as narrow as a restriction value, so a search
/// carrying it cannot return anything the restriction excludes.
pub fn search_value_within(search: &str, restriction: &str) -> bool {
    let (ss, sc) = split_token(search);
    let (rs, rc) = split_token(restriction);
    let code_ok = rc.is_empty() || sc == rc;
    let system_ok = match rs {
        None => true,
        Some(rs) => ss == Some(rs),
    };
    code_ok && system_ok && !(rc.is_empty() && sc.is_empty() && rs.is_none())
}

/// Whether a JSON element (code, Coding, CodeableConcept, or an array of them) matches a
/// token value.
pub fn token_matches(element: &Value, token: &str) -> bool {
    let (system, code) = split_token(token);
    match element {
        Value::Array(items) => items.iter().any(|i| token_matches(i, token)),
        // A primitive `code` has an implied system; only the code can be compared.
        Value::String(s) => !code.is_empty() && s == code,
        Value::Object(obj) => {
            if let Some(codings) = obj.get("coding") {
                return token_matches(codings, token);
            }
            let c = obj.get("code").and_then(Value::as_str);
            let s = obj.get("system").and_then(Value::as_str);
            let code_ok = code.is_empty() || c == Some(code);
            let system_ok = match system {
                None => true,
                Some("") => s.is_none(),
                Some(sys) => s == Some(sys),
            };
            code_ok && system_ok && (c.is_some() || s.is_some())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const LAB: &str = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory";

    #[test]
    fn parse_accepts_token_params_and_refuses_the_rest() {
        let r = Restriction::parse(&format!("category={LAB}"));
        assert_eq!(
            r.map(|r| r.params),
            Ok(vec![("category".to_owned(), LAB.to_owned())])
        );
        let encoded = Restriction::parse("category=http%3A%2F%2Fx%7Claboratory&status=final");
        assert_eq!(encoded.map(|r| r.params.len()), Ok(2));
        for bad in [
            "",
            "category",
            "=x",
            "category=",
            "code:in=x",
            "patient.name=x",
            "foo=1",
            "category=a,b",
        ] {
            assert!(Restriction::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resource_matching() {
        let r = Restriction::parse(&format!("category={LAB}"))
            .unwrap_or(Restriction { params: vec![] });
        let lab = json!({"resourceType": "Observation", "category": [{"coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]});
        let vitals = json!({"resourceType": "Observation", "category": [{"coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}]});
        let other_system = json!({"resourceType": "Observation", "category": [{"coding": [
            {"system": "http://example.org", "code": "laboratory"}]}]});
        let none = json!({"resourceType": "Observation"});
        assert!(r.matches_resource(&lab));
        assert!(!r.matches_resource(&vitals));
        assert!(!r.matches_resource(&other_system));
        assert!(!r.matches_resource(&none));
        let status = Restriction::parse("status=final").unwrap_or(Restriction { params: vec![] });
        assert!(status.matches_resource(&json!({"status": "final"})));
        assert!(!status.matches_resource(&json!({"status": "preliminary"})));
    }

    #[test]
    fn search_values_narrow_or_not() {
        assert!(search_value_within(LAB, LAB));
        assert!(!search_value_within("laboratory", LAB));
        assert!(search_value_within(LAB, "laboratory"));
        assert!(search_value_within("laboratory", "laboratory"));
        assert!(!search_value_within("vital-signs", "laboratory"));
        assert!(!search_value_within("http://x|", "http://x|laboratory"));
    }
}
