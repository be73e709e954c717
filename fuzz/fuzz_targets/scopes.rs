//! SMART scope parsing on arbitrary bytes. Must never panic; every accepted clinical scope
//! must print back to a string that parses to the same grant (so echoing scopes in a token
//! response cannot widen them); and deciding a few fixed requests must not panic.
#![no_main]

use fhirgate_fhir::{FhirRequest, Interaction, ResourceType, SearchParams};
use fhirgate_smart::scope::MAX_SCOPE_LEN;
use fhirgate_smart::{Grant, Policy, ScopeSet, authorize};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let set = ScopeSet::parse(&text);
    for scope in &set.resources {
        let printed = scope.to_string();
        let again = ScopeSet::parse(&printed);
        if printed.len() > MAX_SCOPE_LEN {
            // Percent-encoding can push a scope over the length cap: read back, it is
            // refused, which narrows the grant and never widens it.
            assert!(again.resources.is_empty(), "{printed} over the cap was accepted");
            continue;
        }
        let Some(back) = again.resources.first() else {
            panic!("{printed} does not parse back");
        };
        assert_eq!(back.context, scope.context);
        assert_eq!(back.resource, scope.resource);
        assert_eq!(back.permissions, scope.permissions);
        assert_eq!(back.restriction, scope.restriction);
    }
    let grant = Grant::new(&text, Some("p1"), None);
    let req = FhirRequest {
        method: http::Method::GET,
        interaction: Interaction::SearchType {
            resource_type: ResourceType::Observation,
        },
        path: "/Observation".into(),
        params: SearchParams::parse("code=x&patient=p1").unwrap_or_default(),
    };
    let _ = authorize(&grant, &req, &Policy::default());
});
