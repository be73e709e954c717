//! The search parameter table: what the store indexes and how each parameter is read.
//!
//! The data lives in `search_params_generated.rs`, produced from the official R4
//! SearchParameter definitions by `tools/gen-search-params.py`; this module holds the types
//! it is written in and the lookups the indexer and the query planner use.

#[path = "search_params_generated.rs"]
#[rustfmt::skip]
mod generated;

pub use generated::{PATIENT_COMPARTMENT, SEARCH_PARAMS};

/// R4 `search-param-type` codes the store indexes (composite and special are not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamKind {
    String,
    Token,
    Date,
    Reference,
    Number,
    Quantity,
    Uri,
}

impl ParamKind {
    /// The code as written in a CapabilityStatement.
    pub const fn as_str(self) -> &'static str {
        match self {
            ParamKind::String => "string",
            ParamKind::Token => "token",
            ParamKind::Date => "date",
            ParamKind::Reference => "reference",
            ParamKind::Number => "number",
            ParamKind::Quantity => "quantity",
            ParamKind::Uri => "uri",
        }
    }
}

/// The FHIR data type found at the end of an index path, reduced to what changes how values
/// are read from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementKind {
    /// `string`, `code`, `uri`, `id`, `markdown`, ...
    Primitive,
    Boolean,
    Number,
    /// `date`, `dateTime`, `instant`
    Date,
    Canonical,
    Period,
    Timing,
    HumanName,
    Address,
    CodeableConcept,
    Coding,
    Identifier,
    ContactPoint,
    Reference,
    Quantity,
    Range,
    /// A type the indexer has no reading for (e.g. `SampledData`); ignored.
    Other,
}

/// One simplified FHIRPath: JSON keys from the resource root (arrays are walked through).
#[derive(Debug)]
pub struct IndexPath {
    pub keys: &'static [&'static str],
    pub element: ElementKind,
    /// From `.where(resolve() is T)`: only references to this type count.
    pub ref_type: Option<&'static str>,
    /// From `.where(system='x')`: only elements whose `system` is `x` count.
    pub where_system: Option<&'static str>,
}

/// One search parameter of one resource type.
#[derive(Debug)]
pub struct SearchParamDef {
    pub resource: &'static str,
    pub code: &'static str,
    pub kind: ParamKind,
    pub paths: &'static [IndexPath],
    /// Allowed target types of a reference parameter (empty: any).
    pub targets: &'static [&'static str],
}

/// All indexed parameters of a resource type (the table is sorted by type, then code).
pub fn params_for(resource: &str) -> &'static [SearchParamDef] {
    let start = SEARCH_PARAMS.partition_point(|p| p.resource < resource);
    let end = SEARCH_PARAMS.partition_point(|p| p.resource <= resource);
    SEARCH_PARAMS.get(start..end).unwrap_or(&[])
}

/// The definition of `code` on `resource`, if indexed.
pub fn lookup(resource: &str, code: &str) -> Option<&'static SearchParamDef> {
    params_for(resource).iter().find(|p| p.code == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_covers_required_types() {
        assert!(
            SEARCH_PARAMS
                .windows(2)
                .all(|w| (w[0].resource, w[0].code) < (w[1].resource, w[1].code))
        );
        for t in [
            "Patient",
            "Observation",
            "Condition",
            "Encounter",
            "MedicationRequest",
            "AllergyIntolerance",
            "Immunization",
            "Procedure",
            "DiagnosticReport",
            "DocumentReference",
            "CarePlan",
            "Practitioner",
            "PractitionerRole",
            "Organization",
            "Location",
            "Medication",
        ] {
            assert!(!params_for(t).is_empty(), "{t}");
        }
    }

    #[test]
    fn where_resolve_becomes_a_reference_type_restriction() {
        let p = lookup("Observation", "patient").unwrap();
        assert_eq!(p.kind, ParamKind::Reference);
        assert_eq!(p.paths[0].keys, &["subject"]);
        assert_eq!(p.paths[0].ref_type, Some("Patient"));
    }

    #[test]
    fn choice_types_expand_to_concrete_keys() {
        let p = lookup("Observation", "date").unwrap();
        let keys: Vec<_> = p.paths.iter().map(|p| p.keys[0]).collect();
        assert!(keys.contains(&"effectiveDateTime"));
        assert!(keys.contains(&"effectivePeriod"));
    }
}
