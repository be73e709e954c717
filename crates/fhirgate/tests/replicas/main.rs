//! Three gateway replicas behind a (test-side) round-robin balancer, sharing one Redis for the
//! rate limit and for revocation notices from one `fhirgate auth serve` (issue #11).
//!
//! One test drives the phases in order, because each process start costs seconds on a small
//! CI machine: load spread, combined rate limit, revocation on every replica, a replica
//! killed mid-load (retrying clients see no failure, no audit record is lost), Redis stopped
//! (fallbacks logged and in the metrics), Redis restarted (the replicas reconnect by themselves).
//! The figures are printed (`--nocapture`) for docs/scaling.md.

// Test helpers outside `#[test]` functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cluster;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cluster::{AuthServer, BUDGET_HEADER, BUDGET_PER_HOUR, Redis, Replica};

const X_REQUEST_ID: &str = "x-request-id";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_limits_revocations_and_survive_a_kill() {
    let mut redis = Redis::start().await;
    let auth = AuthServer::start(&redis.url()).await;
    let upstream = cluster::upstream().await;
    let audit_root = tempfile::tempdir().unwrap();
    let prefix = format!("replicas-{}:", std::process::id());
    let mut replicas = Vec::new();
    for i in 0..3 {
        let dir = audit_root.path().join(format!("replica-{i}"));
        replicas.push(
            Replica::start(
                &upstream.base_url(),
                &auth.issuer,
                &redis.url(),
                &dir,
                &prefix,
            )
            .await,
        );
    }
    for r in &replicas {
        r.process
            .wait_for_log("revocation notices: subscribed", Duration::from_secs(10))
            .await
            .unwrap();
    }
    // The authorization server announces revocations (its start line says so).
    let started = auth
        .process
        .wait_for_log("listening on", Duration::from_secs(5))
        .await
        .unwrap();
    assert!(started.contains("\"revocation_notices\":true"), "{started}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let token = auth.token().await;

    // 1. Load spread: a round-robin client; every replica answers its share.
    let rounds = 30;
    for n in 0..rounds * 3 {
        let r = &replicas[n % 3];
        let id = format!("spread-{n}");
        let response = http
            .get(r.url("/Patient/p1"))
            .bearer_auth(&token)
            .header(X_REQUEST_ID, &id)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "request {n} on replica {}", n % 3);
    }
    for (i, r) in replicas.iter().enumerate() {
        let seen = poll(Duration::from_secs(5), || {
            let text = r.audit_text();
            let count = (0..rounds * 3)
                .filter(|n| n % 3 == i && text.contains(&format!("\"spread-{n}\"")))
                .count();
            std::future::ready((count == rounds).then_some(count))
        })
        .await;
        assert_eq!(seen, Some(rounds), "replica {i} audited its share");
        assert!(
            !r.audit_text()
                .contains(&format!("\"spread-{}\"", (i + 1) % 3)),
            "replica {i} saw a request sent to another"
        );
    }

    // 2. One combined rate limit (GCRA, burst = the hourly budget): requests spread over the
    // three replicas are admitted budget + refill times, not three times that.
    let started = Instant::now();
    let sent = BUDGET_PER_HOUR * 2;
    let mut admitted = 0u64;
    let mut throttled = 0u64;
    for n in 0..sent {
        let r = &replicas[(n % 3) as usize];
        let response = http
            .get(r.url("/Patient/p1"))
            .bearer_auth(&token)
            .header(BUDGET_HEADER, "shared")
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            200 => admitted += 1,
            429 => throttled += 1,
            other => panic!("unexpected status {other} under the rate limit"),
        }
    }
    let refill = BUDGET_PER_HOUR as f64 * started.elapsed().as_secs_f64() / 3600.0;
    let budget = BUDGET_PER_HOUR as f64 + refill;
    let error = (admitted as f64 - budget).abs() / budget;
    eprintln!(
        "rate limit: sent {sent}, admitted {admitted}, throttled {throttled}, budget {budget:.1} ({:.1} % off) in {:?}",
        error * 100.0,
        started.elapsed()
    );
    assert!(
        error <= 0.05,
        "admitted {admitted} of {sent}, budget {budget:.1}"
    );
    assert_eq!(admitted + throttled, sent);

    // 3. Revocation at the authorization server reaches every replica within a second, even
    // though each has the token in its verified-token cache.
    let doomed = auth.token().await;
    for r in &replicas {
        let response = http
            .get(r.url("/Patient/p1"))
            .bearer_auth(&doomed)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            200,
            "fresh token accepted before revocation"
        );
    }
    let revoked_at = Instant::now();
    auth.revoke(&doomed).await;
    let mut propagation = Vec::new();
    for (i, r) in replicas.iter().enumerate() {
        // One deadline for all three: a second after the revocation request was sent.
        let left = Duration::from_secs(1).saturating_sub(revoked_at.elapsed());
        let refused = poll(left, || async {
            let response = http
                .get(r.url("/Patient/p1"))
                .bearer_auth(&doomed)
                .send()
                .await
                .ok()?;
            (response.status() == 401).then(|| {
                response
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            })
        })
        .await;
        let challenge = refused
            .unwrap_or_else(|| panic!("replica {i} still accepts the revoked token after 1 s"));
        assert!(challenge.contains("invalid_token"), "{challenge}");
        propagation.push(revoked_at.elapsed());
    }
    eprintln!(
        "revocation: refused by replicas 0, 1, 2 after {propagation:?} (from sending the revocation request)"
    );
    // The neighbouring allow: the other token still works everywhere.
    for r in &replicas {
        let response = http
            .get(r.url("/Patient/p1"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "an unrevoked token keeps working");
    }

    // 4. kill -9 one replica mid-load. Clients retry a failed request on the next replica;
    // every request ends in a 200 and every 200 is in some replica's audit trail.
    let replicas = Arc::new(tokio::sync::RwLock::new(replicas));
    let dead = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4 {
        let dead = Arc::clone(&dead);
        let http = http.clone();
        let token = token.clone();
        let urls: Vec<String> = replicas
            .read()
            .await
            .iter()
            .map(|r| r.url("/Patient/p1"))
            .collect();
        clients.push(tokio::spawn(async move {
            let mut ok_ids = Vec::new();
            let mut retries = 0u32;
            for n in 0..60usize {
                let mut attempt = 0usize;
                loop {
                    let which = (n + c + attempt) % 3;
                    let id = format!("kill-{c}-{n}-{attempt}");
                    let result = http
                        .get(&urls[which])
                        .bearer_auth(&token)
                        .header(X_REQUEST_ID, &id)
                        .send()
                        .await;
                    match result {
                        Ok(r) if r.status() == 200 => {
                            // The body must arrive whole too.
                            if r.bytes().await.is_ok() {
                                ok_ids.push(id);
                                break;
                            }
                        }
                        Ok(r) => panic!("status {} from replica {which}", r.status()),
                        Err(_) => {}
                    }
                    retries += 1;
                    attempt += 1;
                    assert!(
                        attempt < 6,
                        "request {n} of client {c} failed on every replica"
                    );
                }
                if n == 20 && c == 0 {
                    dead.store(true, Ordering::SeqCst);
                }
            }
            (ok_ids, retries)
        }));
    }
    // The kill lands while the clients are busy.
    poll(Duration::from_secs(30), || async {
        dead.load(Ordering::SeqCst).then_some(())
    })
    .await
    .unwrap();
    replicas.write().await[1].process.kill_hard().await.unwrap();
    let mut ok_ids = Vec::new();
    let mut retries = 0;
    for client in clients {
        let (ids, r) = client.await.unwrap();
        ok_ids.extend(ids);
        retries += r;
    }
    assert_eq!(
        ok_ids.len(),
        4 * 60,
        "every request succeeded, some after a retry"
    );
    eprintln!(
        "kill -9 mid-load: {} requests ok, {retries} retried",
        ok_ids.len()
    );
    assert!(
        retries > 0,
        "the kill happened while requests were in flight"
    );
    let replicas = Arc::try_unwrap(replicas).ok().unwrap().into_inner();
    let audited: String = replicas.iter().map(Replica::audit_text).collect();
    let missing: HashSet<&String> = ok_ids
        .iter()
        .filter(|id| !audited.contains(&format!("\"{id}\"")))
        .collect();
    assert!(
        missing.is_empty(),
        "200s without an audit record: {missing:?}"
    );
    for (i, r) in replicas.iter().enumerate() {
        let (ok, report) = cluster::audit_verify(&r.audit_dir);
        assert!(ok, "audit verify failed on replica {i}: {report}");
    }

    // 5. Redis gone: the live replicas keep serving (rate limit falls back to local, the
    // revocation set known so far stays) and say so in their logs.
    redis.stop();
    for i in [0, 2] {
        let r = &replicas[i];
        let response = http
            .get(r.url("/Patient/p1"))
            .bearer_auth(&token)
            .header(BUDGET_HEADER, "after-redis")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "replica {i} serves without Redis");
        let revoked = http
            .get(r.url("/Patient/p1"))
            .bearer_auth(&doomed)
            .send()
            .await
            .unwrap();
        assert_eq!(
            revoked.status(),
            401,
            "replica {i} still refuses the revoked token"
        );
        r.process
            .wait_for_log(
                "revocation notices: Redis unavailable",
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        r.process
            .wait_for_log("rate limiting falls back", Duration::from_secs(5))
            .await
            .unwrap();
        let up = poll(Duration::from_secs(5), || async {
            (r.metric(&http, "fhirgate_revocation_redis_up").await == Some(0.0)).then_some(())
        })
        .await;
        assert!(
            up.is_some(),
            "replica {i}: fhirgate_revocation_redis_up is not 0"
        );
        assert_eq!(
            r.metric(&http, "fhirgate_ratelimit_redis_down").await,
            Some(1.0),
            "replica {i}: fhirgate_ratelimit_redis_down"
        );
    }

    // 6. Redis back (empty: no persistence here). The subscribers reconnect by themselves,
    // keep what they knew, and a token revoked now is refused within a second again; the
    // rate limiter returns to Redis.
    redis.restart().await;
    let back = Instant::now();
    for i in [0, 2] {
        let r = &replicas[i];
        let up = poll(Duration::from_secs(15), || async {
            (r.metric(&http, "fhirgate_revocation_redis_up").await == Some(1.0)).then_some(())
        })
        .await;
        assert!(up.is_some(), "replica {i} did not resubscribe within 15 s");
        let shared = poll(Duration::from_secs(10), || async {
            http.get(r.url("/Patient/p1"))
                .bearer_auth(&token)
                .header(BUDGET_HEADER, "after-restart")
                .send()
                .await
                .ok()?;
            (r.metric(&http, "fhirgate_ratelimit_redis_down").await == Some(0.0)).then_some(())
        })
        .await;
        assert!(
            shared.is_some(),
            "replica {i}: rate limiting did not return to Redis"
        );
    }
    eprintln!(
        "redis restart: both live replicas resubscribed and shared limits resumed after {:?}",
        back.elapsed()
    );
    let later = auth.token().await;
    for i in [0, 2] {
        let response = http
            .get(replicas[i].url("/Patient/p1"))
            .bearer_auth(&later)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            200,
            "replica {i}: fresh token before revocation"
        );
    }
    let revoked_at = Instant::now();
    auth.revoke(&later).await;
    for i in [0, 2] {
        let r = &replicas[i];
        let left = Duration::from_secs(1).saturating_sub(revoked_at.elapsed());
        let refused = poll(left, || async {
            let response = http
                .get(r.url("/Patient/p1"))
                .bearer_auth(&later)
                .send()
                .await
                .ok()?;
            (response.status() == 401).then_some(())
        })
        .await;
        assert!(
            refused.is_some(),
            "replica {i} accepts a token revoked after the Redis restart"
        );
        let old = http
            .get(r.url("/Patient/p1"))
            .bearer_auth(&doomed)
            .send()
            .await
            .unwrap();
        assert_eq!(
            old.status(),
            401,
            "replica {i} forgot a revocation across the Redis restart"
        );
    }
    eprintln!(
        "revocation after the Redis restart: refused by both live replicas after {:?}",
        revoked_at.elapsed()
    );
}

/// Calls `check` until it yields a value or `limit` passes.
async fn poll<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
