//! Reference extraction on arbitrary JSON. Must never panic or recurse without bound; a
//! resource reported as belonging to one patient names a valid id that parses back.
#![no_main]

use fhirgate_fhir::ResourceType;
use fhirgate_fhir::references::{
    ReferenceTarget, collect_references, parse_reference, patient_links,
};
use libfuzzer_sys::fuzz_target;

const BASES: &[&str] = &["https://gw.example/fhir"];

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_reference(text, BASES);
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let links = patient_links(&value, BASES);
    if links.primary.len() == 1 && links.unresolved_primary == 0 {
        for id in &links.primary {
            let back = parse_reference(&format!("Patient/{id}"), BASES);
            assert_eq!(back.local_id(ResourceType::Patient), Some(id.as_str()));
            assert!(matches!(back, ReferenceTarget::Local { .. }));
        }
    }
    for r in collect_references(&value) {
        let _ = parse_reference(&r, BASES);
    }
});
