//! The hot path of authorization: one decision for a typical patient-scoped search, and
//! the response check on a 100-entry searchset.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use fhirgate_fhir::{FhirRequest, Interaction, ResourceType, SearchParams};
use fhirgate_smart::{Decision, Grant, Policy, authorize, filter_searchset};
use serde_json::{Value, json};

fn search(query: &str) -> FhirRequest {
    FhirRequest {
        method: http::Method::GET,
        interaction: Interaction::SearchType {
            resource_type: ResourceType::Observation,
        },
        path: "/Observation".into(),
        params: SearchParams::parse(query).unwrap_or_default(),
    }
}

fn searchset(n: usize) -> Value {
    let entries: Vec<Value> = (0..n)
        .map(|i| {
            // Every tenth entry is another patient's include the check must remove.
            let (patient, mode) = if i % 10 == 9 { ("p2", "include") } else { ("p1", "match") };
            json!({
                "fullUrl": format!("https://gw.example/fhir/Observation/o{i}"),
                "resource": {
                    "resourceType": "Observation", "id": format!("o{i}"), "status": "final",
                    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                    "subject": {"reference": format!("Patient/{patient}")},
                    "performer": [{"reference": "Practitioner/d1"}],
                    "valueQuantity": {"value": 72, "unit": "/min"}
                },
                "search": {"mode": mode}
            })
        })
        .collect();
    json!({"resourceType": "Bundle", "type": "searchset", "total": n, "entry": entries})
}

fn benches(c: &mut Criterion) {
    let grant = Grant::new(
        "launch/patient openid fhirUser patient/*.rs",
        Some("p1"),
        None,
    );
    let policy = Policy::default().with_bases(["https://gw.example/fhir"]);
    let injected = search("code=http://loinc.org|8867-4&_count=50");
    let explicit = search("patient=p1&code=http://loinc.org|8867-4&_count=50");

    c.bench_function("decision/search_injects_patient", |b| {
        b.iter(|| authorize(black_box(&grant), black_box(&injected), &policy))
    });
    c.bench_function("decision/search_with_patient", |b| {
        b.iter(|| authorize(black_box(&grant), black_box(&explicit), &policy))
    });
    c.bench_function("decision/grant_new", |b| {
        b.iter(|| {
            Grant::new(
                black_box("launch/patient openid fhirUser patient/*.rs"),
                Some("p1"),
                None,
            )
        })
    });

    let Decision::AllowWithin(within) = authorize(&grant, &explicit, &policy) else {
        return;
    };
    let bundle = searchset(100);
    c.bench_function("verify/filter_searchset_100", |b| {
        b.iter_batched(
            || bundle.clone(),
            |mut body| filter_searchset(&within.check, &mut body),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(decision, benches);
criterion_main!(decision);
