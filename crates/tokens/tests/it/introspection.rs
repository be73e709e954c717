//! J24 and RFC 7662: opaque tokens through the issuer's introspection endpoint.

use std::sync::Arc;
use std::time::Duration;

use fhirgate_tokens::{
    ClientAuth, ErrorClass, IntrospectionSettings, IssuerSettings, ManualClock, Reason, Secret,
    TokenError, Verifier,
};
use serde_json::json;

use crate::issuer::{INTROSPECTION_CLIENT_ID, INTROSPECTION_CLIENT_SECRET, TestIssuer};
use crate::mint::{TestKey, now_secs};

type R = anyhow::Result<()>;

struct Fx {
    idp: TestIssuer,
    v: Verifier,
    clock: Arc<ManualClock>,
}

fn introspection(idp: &TestIssuer, auth: ClientAuth) -> anyhow::Result<IntrospectionSettings> {
    Ok(IntrospectionSettings {
        endpoint: url::Url::parse(&idp.introspection_endpoint())?,
        client_id: INTROSPECTION_CLIENT_ID.into(),
        auth,
        cache_ttl: Duration::from_secs(60),
        negative_cache_ttl: Duration::from_secs(10),
    })
}

async fn fx_with(auth: Option<ClientAuth>) -> anyhow::Result<Fx> {
    let idp = TestIssuer::start().await?;
    let mut s: IssuerSettings = crate::support::settings(&idp);
    let auth = auth
        .unwrap_or_else(|| ClientAuth::ClientSecretBasic(Secret::new(INTROSPECTION_CLIENT_SECRET)));
    s.introspection = Some(introspection(&idp, auth)?);
    let clock = ManualClock::new(now_secs());
    let v = Verifier::new(vec![s], clock.clock());
    Ok(Fx { idp, v, clock })
}

async fn fx() -> anyhow::Result<Fx> {
    fx_with(None).await
}

fn smart_claims(exp: u64) -> serde_json::Value {
    json!({"scope": "patient/*.rs launch/patient", "client_id": "app-1", "sub": "u1",
           "patient": "P1", "fhirUser": "Practitioner/9", "encounter": "E1", "exp": exp})
}

#[tokio::test]
async fn active_token_gives_smart_context() -> R {
    let f = fx().await?;
    f.idp
        .activate_opaque("opaque-1", smart_claims(now_secs() + 600));
    let p = f.v.verify("opaque-1").await?;
    assert_eq!(p.patient.as_deref(), Some("P1"));
    assert_eq!(p.fhir_user.as_deref(), Some("Practitioner/9"));
    assert_eq!(p.encounter.as_deref(), Some("E1"));
    assert_eq!(p.client_id.as_deref(), Some("app-1"));
    assert_eq!(p.scopes, vec!["patient/*.rs", "launch/patient"]);
    assert_eq!(p.issuer, f.idp.issuer());
    Ok(())
}

#[tokio::test]
async fn inactive_and_unknown_tokens_are_a1() -> R {
    let f = fx().await?;
    f.idp
        .set_introspection_response("off", json!({"active": false}));
    f.idp
        .set_introspection_response("stringly", json!({"active": "true", "scope": "x"}));
    for t in ["off", "never-issued", "stringly"] {
        let e = f.v.verify(t).await.err();
        assert_eq!(e, Some(TokenError::Invalid(Reason::Inactive)), "{t}");
    }
    Ok(())
}

#[tokio::test]
async fn revocation_takes_effect_within_the_cache_ttl() -> R {
    let f = fx().await?;
    f.idp
        .activate_opaque("tok", smart_claims(now_secs() + 3600));
    assert!(f.v.verify("tok").await.is_ok());
    assert!(f.v.verify("tok").await.is_ok());
    assert_eq!(f.idp.introspection_calls(), 1, "positive answer cached");
    f.idp.revoke_opaque("tok");
    f.clock.advance(Duration::from_secs(30));
    assert!(f.v.verify("tok").await.is_ok(), "still inside the 60 s TTL");
    f.clock.advance(Duration::from_secs(31));
    assert_eq!(
        f.v.verify("tok").await.err(),
        Some(TokenError::Invalid(Reason::Inactive))
    );
    assert_eq!(f.idp.introspection_calls(), 2);
    // Negative answers are cached briefly, then asked again.
    assert!(f.v.verify("tok").await.is_err());
    assert_eq!(f.idp.introspection_calls(), 2);
    f.clock.advance(Duration::from_secs(11));
    assert!(f.v.verify("tok").await.is_err());
    assert_eq!(f.idp.introspection_calls(), 3);
    Ok(())
}

#[tokio::test]
async fn cache_never_outlives_the_token_exp() -> R {
    let f = fx().await?;
    let now = now_secs();
    f.idp.activate_opaque("short", smart_claims(now + 5));
    assert!(f.v.verify("short").await.is_ok());
    f.clock.advance(Duration::from_secs(10));
    let _ = f.v.verify("short").await;
    assert_eq!(
        f.idp.introspection_calls(),
        2,
        "re-asked after exp although TTL is 60 s"
    );
    f.idp.activate_opaque("old", smart_claims(now - 3600));
    assert_eq!(
        f.v.verify("old").await.err(),
        Some(TokenError::Invalid(Reason::Expired))
    );
    Ok(())
}

#[tokio::test]
async fn endpoint_down_fails_closed_with_retry_after() -> R {
    let f = fx().await?;
    f.idp.activate_opaque("tok", smart_claims(now_secs() + 600));
    f.idp.set_outage(true);
    let e = f.v.verify("tok").await.err().map(|e| e.class());
    assert!(
        matches!(e, Some(ErrorClass::Unavailable { retry_after }) if retry_after >= Duration::from_secs(1))
    );
    f.idp.set_outage(false);
    f.idp.set_delay(Duration::from_secs(30));
    let e = f.v.verify("tok").await.err().map(|e| e.class());
    assert!(
        matches!(e, Some(ErrorClass::Unavailable { .. })),
        "timeout → 503: {e:?}"
    );
    f.idp.set_delay(Duration::ZERO);
    assert!(f.v.verify("tok").await.is_ok(), "failures are not cached");
    Ok(())
}

#[tokio::test]
async fn wrong_credentials_or_malformed_answers_fail_closed() -> R {
    let f = fx_with(Some(ClientAuth::ClientSecretBasic(Secret::new("wrong")))).await?;
    f.idp.activate_opaque("tok", smart_claims(now_secs() + 600));
    assert!(matches!(
        f.v.verify("tok").await.err().map(|e| e.class()),
        Some(ErrorClass::Unavailable { .. })
    ));

    let g = fx().await?;
    g.idp
        .set_introspection_response("bad-patient", json!({"active": true, "patient": 7}));
    g.idp
        .set_introspection_response("other-iss", json!({"active": true, "iss": "https://evil"}));
    assert!(matches!(
        g.v.verify("bad-patient").await.err().map(|e| e.class()),
        Some(ErrorClass::Unavailable { .. })
    ));
    assert_eq!(
        g.v.verify("other-iss").await.err(),
        Some(TokenError::Invalid(Reason::Issuer))
    );
    Ok(())
}

#[tokio::test]
async fn private_key_jwt_client_authentication() -> R {
    let key = TestKey::rsa("gw")?;
    let pem = key.private_pkcs8_pem()?;
    let enc = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes())?;
    let auth = ClientAuth::PrivateKeyJwt {
        key: enc,
        alg: fhirgate_tokens::Algorithm::RS384,
        kid: Some("gw".into()),
    };
    let f = fx_with(Some(auth)).await?;
    f.idp.activate_opaque("tok", smart_claims(now_secs() + 600));
    assert!(f.v.verify("tok").await.is_ok());
    Ok(())
}

#[tokio::test]
async fn opaque_tokens_without_introspection_are_a1() -> R {
    let idp = TestIssuer::start().await?;
    let clock = ManualClock::new(now_secs());
    let v = Verifier::new(vec![crate::support::settings(&idp)], clock.clock());
    assert_eq!(
        v.verify("opaque").await.err(),
        Some(TokenError::Invalid(Reason::NoIntrospection))
    );
    assert_eq!(idp.introspection_calls(), 0);
    Ok(())
}
