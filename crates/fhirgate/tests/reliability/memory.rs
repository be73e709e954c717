//! Item 5, memory: what 10 000 idle keep-alive connections cost, and whether resident memory
//! stays flat under sustained load. Both take minutes and most of the machine, so they are
//! `#[ignore]`d and run by `scripts/bench-memory.sh` (docs/reliability.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fhirgate_testkit::process::FhirgateProcess;
use futures_util::StreamExt;

use crate::{BIN, Raw, Upstream, config, raise_nofile, socket};

const MIB: u64 = 1024 * 1024;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: scripts/bench-memory.sh"]
async fn ten_thousand_idle_keep_alive_connections_cost_under_100_mib() {
    let connections = env_number("FHIRGATE_IDLE_CONNECTIONS", 10_000) as usize;
    let limit = raise_nofile(connections as u64 + 1024);
    assert!(
        limit > connections as u64 + 256,
        "open-file limit {limit} is too low"
    );
    let upstream = Upstream::start().await;
    // Timeouts long enough that nothing is closed while measuring.
    let gateway = FhirgateProcess::serve(
        BIN,
        &config(
            &upstream,
            "limits:\n  header_read_timeout: 10m\n  idle_timeout: 10m\n  max_connections: 50000\n",
        ),
    )
    .await
    .unwrap();
    let addr = socket(&gateway.address);
    // Warm the process up (allocator arenas, upstream pool) before the baseline.
    let mut warm = Raw::connect(addr).await.unwrap();
    for _ in 0..200 {
        assert_eq!(warm.get("/fhir/Patient/1").await.unwrap().status, 200);
    }
    let before = gateway.resident_bytes().unwrap();
    let started = Instant::now();
    // Each connection is served one request, then kept open and idle.
    let held: Vec<Raw> = futures_util::stream::iter(0..connections)
        .map(|_| async move {
            let mut c = Raw::connect(addr).await.unwrap();
            assert_eq!(c.get("/fhir/Patient/1").await.unwrap().status, 200);
            c
        })
        .buffer_unordered(200)
        .collect()
        .await;
    let opened = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = gateway.resident_bytes().unwrap();
    // Still open and served, all of them.
    let mut first = held.into_iter().next().unwrap();
    assert_eq!(first.get("/fhir/Patient/1").await.unwrap().status, 200);
    let cost = after.saturating_sub(before);
    println!(
        "idle connections: {connections} opened in {opened:?}; RSS {} MiB before, {} MiB after: {} MiB for the connections ({} bytes each)",
        before / MIB,
        after / MIB,
        cost / MIB,
        cost / connections as u64
    );
    assert!(
        cost < 100 * MIB,
        "{connections} idle connections cost {} MiB",
        cost / MIB
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: scripts/bench-memory.sh"]
async fn resident_memory_stays_flat_under_sustained_load() {
    let seconds = env_number("FHIRGATE_SOAK_SECS", 600);
    let clients = env_number("FHIRGATE_SOAK_CLIENTS", 16) as usize;
    let upstream = Upstream::start().await;
    let audit = tempfile::tempdir().unwrap();
    let gateway = FhirgateProcess::serve(
        BIN,
        &config(
            &upstream,
            &format!(
                "rate_limit:\n  rules:\n    - name: per-ip\n      key: ip\n      per_second: 1000000\naudit:\n  path: {}\n",
                audit.path().display()
            ),
        ),
    )
    .await
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let base = gateway.address.clone();
    // A mix: reads, searches (with query strings the audit records), creates, and fresh
    // connections now and then so connection setup and teardown are exercised too.
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let (stop, done, failed, base) = (
                Arc::clone(&stop),
                Arc::clone(&done),
                Arc::clone(&failed),
                base.clone(),
            );
            tokio::spawn(async move {
                let mut client = reqwest::Client::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    if n.is_multiple_of(500) {
                        client = reqwest::Client::new();
                    }
                    let request = match n % 4 {
                        0 => client.get(format!("{base}/fhir/Patient?name=doe{i}-{n}")),
                        1 => client
                            .post(format!("{base}/fhir/Patient"))
                            .header("content-type", "application/fhir+json")
                            .body(r#"{"resourceType":"Patient","active":true}"#),
                        _ => client.get(format!("{base}/fhir/Patient/{n}")),
                    };
                    let served = match request.send().await {
                        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    let counter = if served { &done } else { &failed };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // The first tenth (at least 20 s) warms up: pools, arenas and caches reach their size.
    let warmup = Duration::from_secs((seconds / 10).max(20));
    let total = Duration::from_secs(seconds).max(warmup + Duration::from_secs(20));
    let start = Instant::now();
    tokio::time::sleep(warmup).await;
    let baseline = gateway.resident_bytes().unwrap();
    let mut peak = baseline;
    let mut last = baseline;
    while start.elapsed() < total {
        tokio::time::sleep(Duration::from_secs(5)).await;
        last = gateway.resident_bytes().unwrap();
        peak = peak.max(last);
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let requests = done.load(Ordering::Relaxed);
    let drift = (peak as f64 - baseline as f64) / baseline as f64 * 100.0;
    println!(
        "soak: {requests} requests in {:?} ({:.0}/s), {} failed; RSS after warm-up {} MiB, peak {} MiB, end {} MiB: drift {drift:.1} %",
        start.elapsed(),
        requests as f64 / start.elapsed().as_secs_f64(),
        failed.load(Ordering::Relaxed),
        baseline / MIB,
        peak / MIB,
        last / MIB,
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(
        drift <= 10.0,
        "resident memory grew {drift:.1} % under load"
    );
}
