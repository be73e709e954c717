//! Cost of phase 1 per request: classification of typical requests and of a hostile one.

use criterion::{Criterion, criterion_group, criterion_main};
use fhirgate_fhir::classify;
use http::{HeaderMap, Method};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let headers = HeaderMap::new();
    let cases: [(&str, Method, &str, Option<&str>); 4] = [
        ("read", Method::GET, "/Patient/123", None),
        (
            "search",
            Method::GET,
            "/Observation",
            Some("patient=P1&code=http://loinc.org|1234-5,4548-4&date=ge2020-01-01&_count=50"),
        ),
        (
            "traversal",
            Method::GET,
            "/Observation/x%2F..%2F..%2FPatient%2FP2",
            None,
        ),
        ("1000-params", Method::GET, "/Observation", None),
    ];
    c.bench_function("from_name/Patient", |b| {
        b.iter(|| fhirgate_fhir::ResourceType::from_name(black_box("Patient")))
    });
    c.bench_function("from_name/VisionPrescription", |b| {
        b.iter(|| fhirgate_fhir::ResourceType::from_name(black_box("VisionPrescription")))
    });
    let many = vec!["code=abc"; 1000].join("&");
    for (name, method, path, query) in cases {
        let query = if name == "1000-params" {
            Some(many.as_str())
        } else {
            query
        };
        c.bench_function(&format!("classify/{name}"), |b| {
            b.iter(|| classify(black_box(&method), black_box(path), query, &headers, None))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
