//! Phase 5, the response cache, through the whole gateway: a testkit OIDC issuer, the
//! gateway on `127.0.0.1:0`, and either the canned [`MockUpstream`] (for header semantics)
//! or the two-patient FHIR upstream of the authorization tests (for the partition tests).
//! Upstream request counts prove hit versus miss; every "served from the cache" has a
//! neighbouring "not served from the cache".

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod headers;
mod lifecycle;
mod partitions;
#[path = "../authz/upstream.rs"]
#[allow(dead_code)]
mod upstream;

use std::net::SocketAddr;
use std::time::Duration;

use fhirgate_fhir::ResourceType;
use fhirgate_gateway::{AuthConfig, CacheConfig, CacheInteraction, CacheRule, GatewayConfig};
use fhirgate_testkit::gateway::{self, PUBLIC_BASE, TestGateway};
use fhirgate_testkit::issuer::TestIssuer;
use fhirgate_tokens::IssuerConfig;
use reqwest::header::HeaderMap;
use serde_json::Value;

pub struct Env {
    pub issuer: TestIssuer,
    pub gw: TestGateway,
    pub http: reqwest::Client,
    /// The admin listener, when the test asked for one.
    pub admin: Option<SocketAddr>,
}

pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    pub fn code(&self) -> String {
        let v = self.json();
        assert_eq!(v["resourceType"], "OperationOutcome", "{}", self.text);
        v["issue"][0]["code"].as_str().unwrap().to_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    /// `X-Cache-Status`, or `-` when absent.
    pub fn cache(&self) -> String {
        self.header("x-cache-status").unwrap_or_else(|| "-".into())
    }

    #[track_caller]
    pub fn expect(&self, status: u16, cache: &str) -> &Self {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.cache(), cache, "{:?}", self.headers);
        self
    }
}

/// Cache rules as the YAML would list them.
pub fn rule(types: &[ResourceType], interactions: &[CacheInteraction]) -> CacheRule {
    CacheRule::new(types.to_vec(), interactions.to_vec(), None)
}

pub fn cache(rules: Vec<CacheRule>) -> CacheConfig {
    let mut config = CacheConfig::new();
    config.rules = rules;
    config
}

pub const READ_SEARCH: &[CacheInteraction] = &[CacheInteraction::Read, CacheInteraction::Search];

impl Env {
    /// A gateway in front of `upstream_base` verifying the testkit issuer's tokens.
    pub async fn start(upstream_base: &str, adjust: impl FnOnce(&mut GatewayConfig)) -> Env {
        Env::start_admin(upstream_base, false, adjust).await
    }

    pub async fn start_admin(
        upstream_base: &str,
        admin: bool,
        adjust: impl FnOnce(&mut GatewayConfig),
    ) -> Env {
        let issuer = TestIssuer::start().await.unwrap();
        let mut config = gateway::config(upstream_base).unwrap();
        let settings = IssuerConfig {
            issuer: issuer.issuer().to_owned(),
            ..IssuerConfig::default()
        }
        .validate(PUBLIC_BASE)
        .unwrap();
        config.auth = AuthConfig::required(vec![settings]);
        let admin = admin.then(|| {
            let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            free.local_addr().unwrap()
        });
        config.metrics.admin_listen = admin;
        adjust(&mut config);
        let gw = TestGateway::start(config).await.unwrap();
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        Env {
            issuer,
            gw,
            http,
            admin,
        }
    }

    /// A token for patient `patient` with `scope`.
    pub fn token(&self, patient: &str, scope: &str) -> String {
        self.issuer
            .token()
            .claim("aud", PUBLIC_BASE)
            .claim("patient", patient)
            .claim("scope", scope)
            .build()
            .unwrap()
    }

    /// `patient/*.rs` for P1.
    pub fn t1(&self) -> String {
        self.token("P1", "launch/patient patient/*.rs")
    }

    /// A user-level token bound to no patient.
    pub fn user(&self, scope: &str) -> String {
        self.issuer
            .token()
            .claim("aud", PUBLIC_BASE)
            .claim("scope", scope)
            .without_claim("patient")
            .build()
            .unwrap()
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.unwrap();
        Answer {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            text: response.text().await.unwrap(),
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.send(self.http.get(self.gw.url(path)).bearer_auth(token))
            .await
    }

    pub async fn admin_post(&self, path: &str) -> Answer {
        let admin = self.admin.expect("started with an admin listener");
        self.send(self.http.post(format!("http://{admin}{path}")))
            .await
    }

    /// `(name, value)` of every sample line on the admin listener or the main one.
    pub async fn metrics(&self) -> Vec<(String, f64)> {
        let url = match self.admin {
            Some(admin) => format!("http://{admin}/metrics"),
            None => self.gw.root_url("/metrics"),
        };
        let a = self.send(self.http.get(url)).await;
        assert_eq!(a.status, 200, "{}", a.text);
        a.text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_owned(), value.parse().ok()?))
            })
            .collect()
    }

    pub async fn metric(&self, series: &str) -> f64 {
        self.metrics()
            .await
            .into_iter()
            .find(|(n, _)| n == series)
            .map_or(0.0, |(_, v)| v)
    }
}

/// Poll `check` until it holds, failing after `within`.
pub async fn eventually<F, Fut>(within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
