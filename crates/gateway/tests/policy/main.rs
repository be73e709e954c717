//! Traffic policy and accounting through the whole gateway: rate limits (phase 4), the audit
//! trail (phase 8) and the Prometheus endpoint, with a testkit OIDC issuer and the two-patient
//! FHIR upstream of the authorization tests. A separate binary so the other suites stay as
//! they are.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod audit;
mod dashboard;
mod metrics;
mod redis;
mod throttle;
#[path = "../authz/upstream.rs"]
#[allow(dead_code)]
mod upstream;

use fhirgate_gateway::{AuthConfig, GatewayConfig};
use fhirgate_testkit::gateway::{self, PUBLIC_BASE, TestGateway};
use fhirgate_testkit::issuer::TestIssuer;
use fhirgate_tokens::IssuerConfig;
use reqwest::header::HeaderMap;
use serde_json::Value;
use upstream::FhirUpstream;

pub struct Env {
    pub issuer: TestIssuer,
    #[allow(dead_code)]
    pub upstream: FhirUpstream,
    pub gw: TestGateway,
    pub http: reqwest::Client,
    config: GatewayConfig,
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
}

impl Env {
    pub async fn start_with(adjust: impl FnOnce(&mut GatewayConfig)) -> Env {
        let issuer = TestIssuer::start().await.unwrap();
        let upstream = FhirUpstream::start().await.unwrap();
        let mut config = gateway::config(&upstream.base_url()).unwrap();
        let settings = IssuerConfig {
            issuer: issuer.issuer().to_owned(),
            ..IssuerConfig::default()
        }
        .validate(PUBLIC_BASE)
        .unwrap();
        config.auth = AuthConfig::required(vec![settings]);
        adjust(&mut config);
        let gw = TestGateway::start(config.clone()).await.unwrap();
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        Env {
            issuer,
            upstream,
            gw,
            http,
            config,
        }
    }

    /// The configuration this gateway was started with (to start a replica).
    pub fn gw_config(&self) -> GatewayConfig {
        self.config.clone()
    }

    /// `patient/*.rs` for patient P1, client `app-1`.
    pub fn t1(&self) -> String {
        self.issuer
            .token()
            .claim("aud", PUBLIC_BASE)
            .build()
            .unwrap()
    }

    /// A token of another client.
    pub fn token_of(&self, client_id: &str) -> String {
        self.issuer
            .token()
            .claim("aud", PUBLIC_BASE)
            .claim("client_id", client_id)
            .build()
            .unwrap()
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.unwrap();
        Answer {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            text: response
                .text()
                .await
                .unwrap_or_else(|e| format!("<cut: {e}>")),
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.send(self.http.get(self.gw.url(path)).bearer_auth(token))
            .await
    }

    pub async fn get_anonymous(&self, path: &str) -> Answer {
        self.send(self.http.get(self.gw.url(path))).await
    }

    pub async fn scrape(&self) -> String {
        let a = self.send(self.http.get(self.gw.root_url("/metrics"))).await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert!(
            a.header("content-type").unwrap().starts_with("text/plain"),
            "{:?}",
            a.headers
        );
        a.text
    }
}

/// A rate-limit section as the YAML would give it.
pub fn rate_limit(value: Value) -> fhirgate_ratelimit::RateLimitConfig {
    serde_json::from_value::<fhirgate_ratelimit::RawRateLimitConfig>(value)
        .unwrap()
        .validate()
        .unwrap()
}
