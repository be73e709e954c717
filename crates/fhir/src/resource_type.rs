//! The closed set of R4 resource types and the FHIR id grammar.

#[path = "resource_type_generated.rs"]
mod generated;

pub use generated::{ALL, ResourceType};

impl std::fmt::Display for ResourceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// FHIR R4 id grammar: `[A-Za-z0-9\-\.]{1,64}`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}
