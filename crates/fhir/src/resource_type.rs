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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_146_r4_types_round_trip_by_name() {
        assert_eq!(ALL.len(), 146);
        for (i, t) in ALL.iter().enumerate() {
            assert_eq!(ResourceType::from_name(t.as_str()), Some(*t));
            assert_eq!(t.to_string(), t.as_str());
            assert!(ALL.get(i + 1).is_none_or(|next| t < next), "ALL is sorted");
        }
        assert_eq!(ResourceType::from_name("observation"), None);
        assert_eq!(ResourceType::from_name("SubscriptionStatus"), None);
        assert_eq!(ResourceType::from_name("Resource"), None);
        assert_eq!(ResourceType::from_name("DomainResource"), None);
    }

    #[test]
    fn id_grammar() {
        assert!(is_valid_id("a-B.1"));
        assert!(is_valid_id(&"a".repeat(64)));
        assert!(!is_valid_id(&"a".repeat(65)));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("a_b"));
        assert!(!is_valid_id("a/b"));
        assert!(!is_valid_id("é"));
    }
}
