//! Records per second through `AuditSink::record` with concurrent writers, in `os` and
//! `fsync` durability. Each iteration is one record; criterion's throughput line reads as
//! records/s.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant, SystemTime};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fhirgate_audit::{AuditConfig, AuditInput, AuditPrincipal, AuditSink, Durability, Interaction};

const WRITERS: u64 = 32;

fn input(n: u64) -> AuditInput {
    let mut i = AuditInput::new(
        SystemTime::now(),
        format!("req-{n}"),
        "GET",
        Interaction::SearchType,
        200,
    );
    i.client_address = Some("192.0.2.7".parse().unwrap());
    i.resource_type = Some("Observation".into());
    i.query = Some("patient=p1&category=laboratory&_count=50".into());
    let mut p = AuditPrincipal::new(Some("user-1".into()), Some("app-1".into()));
    p.fhir_user = Some("Practitioner/pr-1".into());
    p.token_id = Some(format!("jti-{n}"));
    i.principal = Some(p);
    i.patients = vec!["p1".into()];
    i
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("audit_record");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));
    for durability in [Durability::Os, Durability::Fsync] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = AuditConfig::file(dir.path());
        cfg.durability = durability;
        let sink = AuditSink::open(&cfg).unwrap();
        let name = format!("{durability:?}").to_lowercase();
        group.bench_function(BenchmarkId::new(name, format!("{WRITERS}_writers")), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let sink = sink.clone();
                async move {
                    let per = iters.div_ceil(WRITERS);
                    let start = Instant::now();
                    let tasks: Vec<_> = (0..WRITERS)
                        .map(|w| {
                            let sink = sink.clone();
                            tokio::spawn(async move {
                                for k in 0..per {
                                    sink.record(input(w * per + k)).await.unwrap();
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                    start
                        .elapsed()
                        .mul_f64(iters as f64 / (per * WRITERS) as f64)
                }
            });
        });
    }
    group.finish();
}

/// The event of one request, built and serialised as the gateway does on every request.
fn serialize(c: &mut Criterion) {
    let mut group = c.benchmark_group("audit_event");
    group.throughput(Throughput::Elements(1));
    let read = {
        let mut i = input(7);
        i.interaction = Interaction::Read;
        i.resource_type = Some("Patient".into());
        i.resource_id = Some("123".into());
        i.query = None;
        i.patients = vec!["123".into()];
        i
    };
    let search = input(8);
    for (name, input) in [("read", read), ("search", search)] {
        group.bench_function(BenchmarkId::new("serialize", name), |b| {
            b.iter(|| fhirgate_audit::serialize_event(&input, "fhirgate"));
        });
    }
    group.finish();
}

criterion_group!(benches, bench, serialize);
criterion_main!(benches);
