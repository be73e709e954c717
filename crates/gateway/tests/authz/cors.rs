//! CORS for browser apps on their own origin: preflights answered by the gateway without a
//! token or an upstream call, configured origins only on the FHIR API, discovery open to all.

use reqwest::Method;
use serde_json::json;

use crate::{Answer, Env};

const APP: &str = "https://app.example.org";
const OTHER: &str = "https://evil.example.net";

async fn env() -> Env {
    Env::start_with(|c| {
        c.cors.allowed_origins = vec![APP.to_owned()];
        c.smart_configuration = Some(json!({
            "issuer": "https://as.example/auth",
            "authorization_endpoint": "https://as.example/auth/authorize",
            "token_endpoint": "https://as.example/auth/token"
        }));
    })
    .await
}

async fn preflight(env: &Env, path: &str, origin: &str) -> Answer {
    env.send(
        env.http
            .request(Method::OPTIONS, env.gw.url(path))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header(
                "access-control-request-headers",
                "authorization, x-custom-trace, cookie",
            ),
    )
    .await
}

fn header<'a>(a: &'a Answer, name: &str) -> Option<&'a str> {
    a.headers.get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn preflight_from_an_allowed_origin_is_answered_without_token_or_upstream() {
    let env = env().await;
    let a = preflight(&env, "/Patient/P1", APP).await;
    assert_eq!(a.status, 204, "{}", a.text);
    assert_eq!(header(&a, "access-control-allow-origin"), Some(APP));
    assert_eq!(header(&a, "vary"), Some("Origin"));
    let methods = header(&a, "access-control-allow-methods").unwrap();
    for m in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] {
        assert!(methods.contains(m), "{methods}");
    }
    let allowed = header(&a, "access-control-allow-headers").unwrap();
    for h in [
        "authorization",
        "content-type",
        "if-none-exist",
        "prefer",
        "x-custom-trace",
    ] {
        assert!(allowed.contains(h), "{allowed}");
    }
    assert!(!allowed.contains("cookie"), "{allowed}");
    assert_eq!(header(&a, "access-control-max-age"), Some("600"));
    assert_eq!(env.upstream.hits(), 0);
}

#[tokio::test]
async fn preflight_from_another_origin_is_forbidden_without_cors_headers() {
    let env = env().await;
    let a = preflight(&env, "/Patient/P1", OTHER).await;
    a.expect(403, "forbidden");
    assert_eq!(header(&a, "access-control-allow-origin"), None);
    assert_eq!(env.upstream.hits(), 0);
}

#[tokio::test]
async fn actual_requests_carry_cors_headers_only_for_allowed_origins() {
    let env = env().await;
    let token = env.t1();
    let allowed = env
        .send(
            env.http
                .get(env.gw.url("/Patient/P1"))
                .bearer_auth(&token)
                .header("origin", APP),
        )
        .await;
    assert_eq!(allowed.status, 200, "{}", allowed.text);
    assert_eq!(header(&allowed, "access-control-allow-origin"), Some(APP));
    assert_eq!(header(&allowed, "vary"), Some("Origin"));
    let exposed = header(&allowed, "access-control-expose-headers").unwrap();
    for h in [
        "Location",
        "ETag",
        "Content-Location",
        "RateLimit-Remaining",
        "Retry-After",
    ] {
        assert!(exposed.contains(h), "{exposed}");
    }

    let other = env
        .send(
            env.http
                .get(env.gw.url("/Patient/P1"))
                .bearer_auth(&token)
                .header("origin", OTHER),
        )
        .await;
    assert_eq!(other.status, 200, "{}", other.text);
    assert_eq!(header(&other, "access-control-allow-origin"), None);
    assert_eq!(header(&other, "access-control-expose-headers"), None);
}

#[tokio::test]
async fn a_401_for_an_allowed_origin_is_readable_by_the_app() {
    let env = env().await;
    let a = env
        .send(
            env.http
                .get(env.gw.url("/Patient/P1"))
                .header("origin", APP),
        )
        .await;
    a.expect(401, "login");
    assert_eq!(header(&a, "access-control-allow-origin"), Some(APP));
    let exposed = header(&a, "access-control-expose-headers").unwrap();
    assert!(exposed.contains("WWW-Authenticate"), "{exposed}");
    assert!(!a.challenge().is_empty());
}

#[tokio::test]
async fn discovery_is_open_to_any_origin() {
    let env = env().await;
    for path in ["/metadata", "/.well-known/smart-configuration"] {
        let a = env
            .send(env.http.get(env.gw.url(path)).header("origin", OTHER))
            .await;
        assert_eq!(a.status, 200, "{path}: {}", a.text);
        assert_eq!(
            header(&a, "access-control-allow-origin"),
            Some("*"),
            "{path}"
        );
        let p = preflight(&env, path, OTHER).await;
        assert_eq!(p.status, 204, "{path}: {}", p.text);
        assert_eq!(
            header(&p, "access-control-allow-origin"),
            Some("*"),
            "{path}"
        );
    }
}
