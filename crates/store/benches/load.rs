//! Load figures for the embedded store (run: `cargo bench -p fhirgate-store --bench load`).
//!
//! 1. Import rate: generate ~100 000 resources as NDJSON, import them into a fresh store.
//! 2. Read by id: concurrent `GET Patient/{id}` against the served store.
//! 3. Search: concurrent `GET Observation?patient=X&category=laboratory`.
//!
//! Client and server share the machine, so the request rates are a floor. Tune with
//! `LOAD_PATIENTS` (default 1600, about 100 000 resources), `LOAD_SECS` (default 5) and
//! `LOAD_CONCURRENCY` (default 32).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fhirgate_store::Store;
use fhirgate_store::generate::{GenerateOptions, generate_ndjson};
use fhirgate_store::import::import_paths;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// CPU seconds this process has used (user + system), from /proc; 0 where unavailable.
/// The machine is shared, so per-CPU-second rates are reported next to wall-clock ones.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let patients = env("LOAD_PATIENTS", 1600);
    let secs = env("LOAD_SECS", 5) as u64;
    let concurrency = env("LOAD_CONCURRENCY", 32);
    let dir = tempfile::tempdir().unwrap();

    let t = Instant::now();
    let summary = generate_ndjson(
        &dir.path().join("ndjson"),
        GenerateOptions { patients, seed: 1 },
    )
    .unwrap();
    println!(
        "generated {} resources for {patients} patients in {:.1}s",
        summary.total(),
        t.elapsed().as_secs_f64()
    );

    let store = Store::open(dir.path().join("bench.db")).unwrap();
    let t = Instant::now();
    let cpu = cpu_secs();
    let report = import_paths(&store, &[dir.path().join("ndjson")], &mut |_| {});
    let el = t.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    println!(
        "import: {} resources in {el:.1}s = {:.0} resources/s (target >= 5000); {cpu:.1} CPU-s = {:.0} resources per CPU-second",
        report.resources,
        report.resources as f64 / el,
        report.resources as f64 / cpu.max(1e-9)
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base = format!("http://{addr}/fhir");
        let b = base.clone();
        tokio::spawn(async move {
            fhirgate_store::serve(listener, store, &b, std::future::pending()).await.unwrap();
        });
        let read = run(&base, secs, concurrency, patients, |i, n| format!("Patient/pat-{}", i % n)).await;
        println!("read by id: {read:.0} requests/s (target >= 10000)");
        let search = run(&base, secs, concurrency, patients, |i, n| {
            format!("Observation?patient=pat-{}&category=laboratory", i % n)
        })
        .await;
        println!("search Observation?patient=X&category=laboratory: {search:.0} requests/s (target >= 1000)");
    });
}

async fn run(
    base: &str,
    secs: u64,
    concurrency: usize,
    patients: usize,
    path: fn(usize, usize) -> String,
) -> f64 {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    // Warm up connections and caches.
    for i in 0..concurrency {
        let uri = format!("{base}/{}", path(i * 7919, patients))
            .parse()
            .unwrap();
        let res = client.get(uri).await.unwrap();
        assert!(res.status().is_success());
        res.into_body().collect().await.unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let cpu = cpu_secs();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let client = client.clone();
        let stop = stop.clone();
        let done = done.clone();
        let base = base.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut i = w * 104_729;
            while !stop.load(Ordering::Relaxed) {
                let uri = format!("{base}/{}", path(i, patients)).parse().unwrap();
                let res = client.get(uri).await.unwrap();
                assert!(res.status().is_success(), "{}", res.status());
                res.into_body().collect().await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let n = done.load(Ordering::Relaxed) as f64;
    let cpu = cpu_secs() - cpu;
    println!(
        "  {n:.0} requests, {cpu:.1} CPU-s for client and server together = {:.0} requests per CPU-second",
        n / cpu.max(1e-9)
    );
    n / start.elapsed().as_secs_f64()
}
