//! Revocation notices through a real `redis-server`: every access token the server ends is
//! published on the channel and kept in the sorted set, and nothing else is.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fhirgate_authserver::RevocationNotices;
use fhirgate_authserver::notices::set_key;
use futures_util::StreamExt;
use serde_json::Value;

use crate::harness::*;

struct Redis(Child, u16);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn redis() -> Redis {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("redis-server is required for this test: {e}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "redis-server did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Redis(child, port)
}

fn jti(token: &str) -> String {
    jwt_parts(token).1["jti"].as_str().unwrap().to_owned()
}

async fn refresh(h: &Harness, rt: &str) -> reqwest::Response {
    h.http
        .post(&h.token_url)
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", PUBLIC),
        ])
        .send()
        .await
        .unwrap()
}

const SCOPE: &str = "launch/patient openid fhirUser offline_access patient/*.rs";

#[tokio::test]
async fn ended_access_tokens_are_published_and_kept_in_the_set() {
    let redis = redis().await;
    let url = format!("redis://127.0.0.1:{}/0", redis.1);
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub
        .subscribe(RevocationNotices::DEFAULT_CHANNEL)
        .await
        .unwrap();
    let mut messages = pubsub.into_on_message();
    let h = start_with(|c| c.revocation_notices = Some(RevocationNotices::new(&url))).await;
    assert!(h.server.publishes_revocations());

    // A grant that stays alive, and one whose rotated refresh token is reused.
    let survivor = alice_tokens(&h, SCOPE).await;
    let first = alice_tokens(&h, SCOPE).await;
    let rt1 = first["refresh_token"].as_str().unwrap();
    let second: Value = refresh(&h, rt1).await.json().await.unwrap();
    assert_eq!(refresh(&h, rt1).await.status(), 400, "reuse refused");

    let family = [
        jti(first["access_token"].as_str().unwrap()),
        jti(second["access_token"].as_str().unwrap()),
    ];
    let mut published = Vec::new();
    while published.len() < 2 {
        let msg = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .expect("a notice within 5 s")
            .unwrap();
        let notice: Value = serde_json::from_slice(msg.get_payload_bytes()).unwrap();
        assert!(notice["exp"].as_u64().unwrap() > 0);
        published.push(notice["jti"].as_str().unwrap().to_owned());
    }
    published.sort();
    let mut expected = family.to_vec();
    expected.sort();
    assert_eq!(published, expected, "exactly the family's access tokens");

    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = set_key(RevocationNotices::DEFAULT_CHANNEL);
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(&key)
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let survivor_jti = jti(survivor["access_token"].as_str().unwrap());
    assert!(family.iter().all(|j| members.contains(j)), "{members:?}");
    assert!(
        !members.contains(&survivor_jti),
        "a live grant is not announced"
    );

    // Removing the client ends its remaining grant: announced too.
    assert!(h.server.remove_client(PUBLIC).unwrap());
    let msg = tokio::time::timeout(Duration::from_secs(5), messages.next())
        .await
        .expect("a notice for the removed client's token")
        .unwrap();
    let notice: Value = serde_json::from_slice(msg.get_payload_bytes()).unwrap();
    assert_eq!(notice["jti"].as_str(), Some(survivor_jti.as_str()));
}
