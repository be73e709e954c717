//! Two gateway replicas sharing one real `redis-server` enforce one combined limit. Skipped
//! when `redis-server` is not installed, except in CI (`CI=true`), where that is a failure.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fhirgate_testkit::gateway::TestGateway;
use serde_json::json;

use crate::{Env, rate_limit};

struct Redis {
    child: Child,
    port: u16,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn redis() -> Option<Redis> {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let spawned = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = match spawned {
        Ok(child) => child,
        Err(err) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "redis-server is required in CI: {err}"
            );
            eprintln!("skipping: redis-server not available ({err})");
            return None;
        }
    };
    let redis = Redis { child, port };
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Some(redis);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("redis-server did not start listening on {port}");
}

#[tokio::test]
async fn two_replicas_share_one_limit_through_redis() {
    let Some(redis) = redis().await else { return };
    let config = rate_limit(json!({
        "rules": [{"name": "per-client", "key": "client_id", "per_minute": 4}],
        "backend": {"redis": {"url": format!("redis://127.0.0.1:{}/0", redis.port),
                               "timeout": "1s", "connect_timeout": "1s",
                               "key_prefix": format!("fhirgate-test-{}:", std::process::id())}},
        "fault_tolerant": false
    }));
    let first = Env::start_with(|c| c.rate_limit = Some(config.clone())).await;
    // The second replica: same issuer, same upstream, same Redis.
    let mut second_config = first.gw_config();
    second_config.rate_limit = Some(config);
    let second = TestGateway::start(second_config).await.unwrap();
    let t1 = first.t1();
    let url = |gw: &TestGateway| gw.url("/Patient/P1");
    let mut statuses = Vec::new();
    for gw in [&first.gw, &second, &first.gw, &second, &first.gw, &second] {
        let response = first
            .http
            .get(url(gw))
            .bearer_auth(&t1)
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429]);
}
