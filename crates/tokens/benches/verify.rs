//! Token verification cost: a cached token, uncached RS256 and ES256, and the 401 path.
//!
//! Run briefly: `cargo bench -p fhirgate-tokens --bench verify -- --warm-up-time 1 --measurement-time 3`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "../../testkit/src/issuer.rs"]
#[allow(dead_code)]
mod issuer;
#[path = "../../testkit/src/mint.rs"]
#[allow(dead_code)]
mod mint;

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use fhirgate_tokens::{IssuerSettings, ManualClock, Verifier};

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let idp = rt.block_on(issuer::TestIssuer::start()).unwrap();
    let now = mint::now_secs();
    let clock = ManualClock::new(now);
    let settings = IssuerSettings::new(idp.issuer(), issuer::DEFAULT_AUDIENCE);
    let mut uncached_settings = settings.clone();
    uncached_settings.token_cache_ttl = Duration::ZERO;
    let cached = Verifier::new(vec![settings], clock.clock());
    let uncached = Verifier::new(vec![uncached_settings], clock.clock());

    let rs = idp.token_at(now).build().unwrap();
    let es = idp.token_with(&idp.k2, "ES256", now).build().unwrap();
    let bad_sig = mint::flip_signature_bit(&rs).unwrap();
    let none = idp
        .token_at(now)
        .header("alg", "none")
        .unsigned()
        .build()
        .unwrap();
    let dots = ".".repeat(100_000);
    for v in [&cached, &uncached] {
        rt.block_on(v.verify(&rs)).unwrap();
        rt.block_on(v.verify(&es)).unwrap();
    }

    let mut g = c.benchmark_group("verify");
    g.bench_function("cached", |b| {
        b.to_async(&rt)
            .iter(|| async { cached.verify(&rs).await.unwrap() })
    });
    g.bench_function("uncached_rs256", |b| {
        b.to_async(&rt)
            .iter(|| async { uncached.verify(&rs).await.unwrap() })
    });
    g.bench_function("uncached_es256", |b| {
        b.to_async(&rt)
            .iter(|| async { uncached.verify(&es).await.unwrap() })
    });
    g.bench_function("reject_bad_signature", |b| {
        b.to_async(&rt)
            .iter(|| async { cached.verify(&bad_sig).await.unwrap_err() })
    });
    g.bench_function("reject_alg_none", |b| {
        b.to_async(&rt)
            .iter(|| async { cached.verify(&none).await.unwrap_err() })
    });
    g.bench_function("reject_100k_dots", |b| {
        b.to_async(&rt)
            .iter(|| async { cached.verify(&dots).await.unwrap_err() })
    });
    g.finish();
    drop(idp);
}

criterion_group!(verify, benches);
criterion_main!(verify);
