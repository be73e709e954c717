//! The hot path of authorization: one decision for a typical patient-scoped search, and
//! the response check on 30- and 100-entry searchsets: the tree check
//! (`filter_searchset`, which the gateway also re-serialises) against the byte-level one
//! (`verify_response_bytes`, which passes the body through or splices entries out).

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use fhirgate_fhir::{FhirRequest, Interaction, ResourceType, SearchParams};
use fhirgate_smart::{
    Decision, Grant, Policy, RawVerdict, authorize, filter_searchset, verify_response_bytes,
};
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

fn searchset(n: usize, foreign_includes: bool) -> Value {
    let entries: Vec<Value> = (0..n)
        .map(|i| {
            // Every tenth entry is another patient's include the check must remove.
            let (patient, mode) = if foreign_includes && i % 10 == 9 {
                ("p2", "include")
            } else {
                ("p1", "match")
            };
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

/// A vital-signs searchset the way servers return one (narrative, effective time, full
/// quantity, Bundle meta and links): 20.7 KB for 30 entries, all the own patient's, the
/// size the byte-level check was profiled on.
fn realistic_searchset(n: usize) -> Value {
    let entries: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "fullUrl": format!("https://gw.example/fhir/Observation/hr-{i:04}"),
                "resource": {
                    "resourceType": "Observation",
                    "id": format!("hr-{i:04}"),
                    "text": {"status": "generated",
                        "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">Heart rate {} /min</div>", 60 + i % 40)},
                    "status": "final",
                    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs"}]}],
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                    "subject": {"reference": "Patient/p1"},
                    "effectiveDateTime": format!("2024-05-{:02}T08:{:02}:00+00:00", 1 + i % 28, i % 60),
                    "performer": [{"reference": "Practitioner/d1"}],
                    "valueQuantity": {"value": 60 + i % 40, "unit": "/min",
                        "system": "http://unitsofmeasure.org", "code": "/min"}
                },
                "search": {"mode": "match"}
            })
        })
        .collect();
    json!({"resourceType": "Bundle", "id": "b6c1f0f2-3a61-4e8e-9d53-2f0c1a7d9e11", "type": "searchset",
        "meta": {"lastUpdated": "2024-05-14T09:31:08.002+00:00"}, "total": n,
        "link": [{"relation": "self", "url": "https://gw.example/fhir/Observation?patient=p1&code=http://loinc.org|8867-4&_count=50"}],
        "entry": entries})
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
    for (n, foreign) in [(30, false), (30, true), (100, false), (100, true)] {
        let bundle = searchset(n, foreign);
        let bytes = serde_json::to_vec(&bundle).unwrap_or_default();
        let label = if foreign {
            "_with_foreign_includes"
        } else {
            "_own"
        };
        // What the gateway did before: parse, filter, serialise again.
        c.bench_function(&format!("verify/tree_{n}{label}"), |b| {
            b.iter(|| {
                let mut body: Value = serde_json::from_slice(black_box(&bytes)).unwrap_or_default();
                let outcome = filter_searchset(&within.check, &mut body);
                (outcome, serde_json::to_vec(&body).unwrap_or_default())
            })
        });
        c.bench_function(&format!("verify/bytes_{n}{label}"), |b| {
            b.iter(|| {
                let verdict = verify_response_bytes(&within.check, black_box(&bytes));
                assert!(!matches!(verdict, Ok(RawVerdict::NeedsTree)));
                verdict
            })
        });
    }
    let realistic = serde_json::to_vec(&realistic_searchset(30)).unwrap_or_default();
    c.bench_function("verify_bytes/searchset_30_unchanged", |b| {
        b.iter(|| {
            let verdict = verify_response_bytes(&within.check, black_box(&realistic));
            assert!(matches!(verdict, Ok(RawVerdict::Unchanged(_))));
            verdict
        })
    });
    let bundle = searchset(100, true);
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
