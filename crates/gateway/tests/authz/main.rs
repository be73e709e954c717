//! Authentication, authorization and response verification through the whole gateway: a
//! testkit OIDC issuer (found only through discovery + JWKS), the gateway on `127.0.0.1:0`,
//! and an in-process FHIR upstream holding two patients' data. Rows refer to
//! `reference/security.md` (§1 J-rows, §2 F-rows, §5 checks). A second test binary so the
//! transport tests in `it/` stay untouched.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cors;
mod discovery;
mod patient;
mod tokens;
mod upstream;
mod verified_bytes;

use fhirgate_gateway::{AuthConfig, GatewayConfig};
use fhirgate_testkit::gateway::{self, PUBLIC_BASE, TestGateway};
use fhirgate_testkit::issuer::{INTROSPECTION_CLIENT_SECRET, TestIssuer};
use fhirgate_testkit::mint::JwtBuilder;
use fhirgate_tokens::IssuerConfig;
use reqwest::header::HeaderMap;
use serde_json::Value;
use upstream::{FhirUpstream, P2_MARKERS};

pub struct Env {
    pub issuer: TestIssuer,
    pub upstream: FhirUpstream,
    pub gw: TestGateway,
    pub http: reqwest::Client,
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

    /// The OperationOutcome issue code (panics if the body is not one).
    pub fn code(&self) -> String {
        let v = self.json();
        assert_eq!(v["resourceType"], "OperationOutcome", "{}", self.text);
        v["issue"][0]["code"].as_str().unwrap().to_owned()
    }

    pub fn challenge(&self) -> String {
        self.headers
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    /// Nothing of P2's data is in the body.
    pub fn assert_no_p2(&self) {
        for marker in P2_MARKERS {
            assert!(!self.text.contains(marker), "P2 data leaked: {}", self.text);
        }
    }

    #[track_caller]
    pub fn expect(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.code(), code, "{}", self.text);
        self.assert_no_p2();
    }
}

impl Env {
    pub async fn start() -> Env {
        Env::start_with(|_| {}).await
    }

    /// The issuer is configured as an operator would: only its URL; the audience defaults to
    /// the public base, and keys come through discovery and JWKS.
    pub async fn start_with(adjust: impl FnOnce(&mut GatewayConfig)) -> Env {
        Env::start_full(|_, _| {}, adjust).await
    }

    /// As [`Env::start_with`], also adjusting the issuer's config entry; secrets named by
    /// `*_env` keys resolve to the testkit introspection secret.
    pub async fn start_full(
        adjust_issuer: impl FnOnce(&TestIssuer, &mut IssuerConfig),
        adjust: impl FnOnce(&mut GatewayConfig),
    ) -> Env {
        let issuer = TestIssuer::start().await.unwrap();
        let upstream = FhirUpstream::start().await.unwrap();
        let mut config = gateway::config(&upstream.base_url()).unwrap();
        let mut entry = IssuerConfig {
            issuer: issuer.issuer().to_owned(),
            ..IssuerConfig::default()
        };
        adjust_issuer(&issuer, &mut entry);
        let secret = |_: &str| Some(INTROSPECTION_CLIENT_SECRET.to_owned());
        let settings = entry.validate_with_env(PUBLIC_BASE, &secret).unwrap();
        config.auth = AuthConfig::required(vec![settings]);
        adjust(&mut config);
        let gw = TestGateway::start(config).await.unwrap();
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        Env {
            issuer,
            upstream,
            gw,
            http,
        }
    }

    /// A token for the public base with T1's grant: `patient/*.rs`, patient P1.
    pub fn token(&self) -> JwtBuilder {
        self.issuer.token().claim("aud", PUBLIC_BASE)
    }

    pub fn t1(&self) -> String {
        self.token().build().unwrap()
    }

    pub fn with_scope(&self, scope: &str) -> String {
        self.token().claim("scope", scope).build().unwrap()
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

    pub async fn get_anonymous(&self, path: &str) -> Answer {
        self.send(self.http.get(self.gw.url(path))).await
    }
}
