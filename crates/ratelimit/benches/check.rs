//! Cost of one `RateLimiter::check`: local backend, Redis backend, and the bare Redis
//! round trip it rides on. Redis benches start their own `redis-server` on loopback and are
//! skipped when it is not installed.

// A benchmark harness is test code: failing loudly on setup errors is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use fhirgate_ratelimit::{RateLimiter, RawRateLimitConfig, RequestKeyInput};

const RULES: &str = r#"
rules:
  - name: per-client
    key: client_id
    per_second: 1000000
    per_hour: 1000000000
    weights: { search-type: 5 }
  - name: per-ip
    key: ip
    per_second: 1000000
  - name: per-patient
    key: [client_id, patient]
    match: { resource_types: [Observation] }
    per_minute: 60000000
"#;

fn limiter(backend: &str) -> RateLimiter {
    let raw: RawRateLimitConfig = serde_yaml_ng::from_str(&format!("{RULES}\n{backend}")).unwrap();
    RateLimiter::new(raw.validate().unwrap())
}

fn request(i: u32) -> RequestKeyInput<'static> {
    RequestKeyInput {
        client_id: Some("bench-app"),
        patient: Some("p1"),
        ip: Some(IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + (i % 1000)))),
        interaction: "read",
        resource_type: Some("Observation"),
        path: "/Observation/1",
        ..RequestKeyInput::default()
    }
}

fn bench_local(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let raw: RawRateLimitConfig =
        serde_yaml_ng::from_str("rules: [{name: c, key: client_id, per_second: 1000000}]").unwrap();
    let one_rule = RateLimiter::new(raw.validate().unwrap());
    c.bench_function("local/check (1 rule)", |b| {
        b.to_async(&rt).iter(|| {
            let req = request(0);
            let limiter = &one_rule;
            async move { black_box(limiter.check(&req).await) }
        });
    });
    let limiter = limiter("backend: local");
    let mut i = 0_u32;
    c.bench_function("local/check (3 rules)", |b| {
        b.to_async(&rt).iter(|| {
            i = i.wrapping_add(1);
            let req = request(i);
            let limiter = &limiter;
            async move { black_box(limiter.check(&req).await) }
        });
    });
}

fn bench_redis(c: &mut Criterion) {
    let Some(server) = Server::start() else {
        eprintln!("redis-server not installed; skipping Redis benchmarks");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let url = format!("redis://127.0.0.1:{}/", server.port);
    let limiter = Arc::new(limiter(&format!(
        "backend: {{redis: {{url: '{url}', timeout: 500ms}}}}"
    )));
    let mut conn = rt
        .block_on(redis::aio::ConnectionManager::new(
            redis::Client::open(url.as_str()).unwrap(),
        ))
        .unwrap();

    c.bench_function("redis/PING round trip", |b| {
        b.to_async(&rt).iter(|| {
            let mut conn = conn.clone();
            async move {
                black_box(
                    redis::cmd("PING")
                        .query_async::<String>(&mut conn)
                        .await
                        .unwrap(),
                )
            }
        });
    });
    let one_rule = {
        let raw: RawRateLimitConfig = serde_yaml_ng::from_str(&format!(
            "rules: [{{name: c, key: client_id, per_second: 1000000}}]\n\
             backend: {{redis: {{url: '{url}', timeout: 500ms}}}}"
        ))
        .unwrap();
        Arc::new(RateLimiter::new(raw.validate().unwrap()))
    };
    c.bench_function("redis/check (1 rule, sequential)", |b| {
        b.to_async(&rt).iter(|| {
            let limiter = Arc::clone(&one_rule);
            async move { black_box(limiter.check(&request(0)).await) }
        });
    });
    let mut i = 0_u32;
    c.bench_function("redis/check (3 rules, sequential)", |b| {
        b.to_async(&rt).iter(|| {
            i = i.wrapping_add(1);
            let req = request(i);
            let limiter = Arc::clone(&limiter);
            async move {
                let v = limiter.check(&req).await;
                assert!(!v.from_fallback());
                black_box(v)
            }
        });
    });
    // Many requests in flight share the multiplexed connections: cost per check under load.
    c.bench_function("redis/check x64 concurrent", |b| {
        b.to_async(&rt).iter(|| {
            let limiter = Arc::clone(&limiter);
            async move {
                let mut set = tokio::task::JoinSet::new();
                for n in 0..64 {
                    let limiter = Arc::clone(&limiter);
                    set.spawn(async move { limiter.check(&request(n)).await.is_allowed() });
                }
                while let Some(r) = set.join_next().await {
                    black_box(r.unwrap());
                }
            }
        });
    });
    let _ = rt.block_on(redis::cmd("FLUSHALL").query_async::<String>(&mut conn));
    drop(server);
}

struct Server {
    port: u16,
    child: Child,
}

impl Server {
    fn start() -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while client
            .get_connection_with_timeout(Duration::from_millis(200))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_err()
        {
            assert!(Instant::now() < deadline, "redis-server never answered");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Self { port, child })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2)).sample_size(30);
    targets = bench_local, bench_redis
}
criterion_main!(benches);
