//! Shared fixture: a test issuer, a verifier on a manual clock, and assertion helpers.

// Assertion helpers fail the calling test the way `assert!` does.
#![allow(clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use fhirgate_tokens::{ErrorClass, IssuerSettings, ManualClock, Principal, TokenError, Verifier};

use crate::issuer::{DEFAULT_AUDIENCE, TestIssuer};
use crate::mint::now_secs;

pub struct Fixture {
    pub idp: TestIssuer,
    pub verifier: Verifier,
    pub clock: Arc<ManualClock>,
    pub now: u64,
}

pub fn settings(idp: &TestIssuer) -> IssuerSettings {
    let mut s = IssuerSettings::new(idp.issuer(), DEFAULT_AUDIENCE);
    s.fetch_timeout = Duration::from_secs(2);
    s
}

impl Fixture {
    pub async fn new() -> anyhow::Result<Self> {
        Self::with(|_| {}).await
    }

    pub async fn with(edit: impl FnOnce(&mut IssuerSettings)) -> anyhow::Result<Self> {
        let idp = TestIssuer::start().await?;
        let mut s = settings(&idp);
        edit(&mut s);
        let now = now_secs();
        let clock = ManualClock::new(now);
        let verifier = Verifier::new(vec![s], clock.clock());
        Ok(Self {
            idp,
            verifier,
            clock,
            now,
        })
    }

    pub fn now(&self) -> u64 {
        self.clock.clock().unix_secs()
    }

    pub async fn verify(&self, token: &str) -> Result<Arc<Principal>, TokenError> {
        self.verifier.verify(token).await
    }

    /// Verify and require class A1 (401 invalid_token, `unknown`).
    pub async fn rejects(&self, token: &str) -> TokenError {
        let e = match self.verify(token).await {
            Ok(p) => panic!("accepted a token that must be rejected: {p:?}"),
            Err(e) => e,
        };
        assert!(
            matches!(e.class(), ErrorClass::InvalidToken { expired: false, .. }),
            "expected A1, got {e:?}"
        );
        e
    }

    /// Verify and require class A2 (401 invalid_token, `expired`).
    pub async fn rejects_expired(&self, token: &str) {
        let e = self.verify(token).await.err();
        assert!(
            matches!(
                e.as_ref().map(TokenError::class),
                Some(ErrorClass::InvalidToken { expired: true, .. })
            ),
            "expected A2, got {e:?}"
        );
    }

    /// Verify and require class U (503 with Retry-After).
    pub async fn unavailable(&self, token: &str) -> Duration {
        match self.verify(token).await.map_err(|e| e.class()) {
            Err(ErrorClass::Unavailable { retry_after }) => retry_after,
            other => panic!("expected 503, got {other:?}"),
        }
    }
}
