//! reference/security.md §1, rows J14–J22, plus JWKS caching, discovery and issuer routing,
//! at the verifier level. Each row asserts the exact error class (A1 = 401 `unknown`, A2 = 401 `expired`, U = 503) and, where it matters, how
//! often the issuer's JWKS endpoint was hit. Every "deny" sits next to an "allow".

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fhirgate_tokens::{Algorithm, Reason, TokenError};
use serde_json::json;

use crate::issuer::DEFAULT_AUDIENCE;
use crate::mint::{JwtBuilder, TestKey, b64url};
use crate::support::Fixture;

type R = anyhow::Result<()>;

#[tokio::test]
async fn j14_segment_counts_and_dot_floods() -> R {
    let f = Fixture::new().await?;
    let good = f.idp.token_at(f.now).build()?;
    let parts: Vec<&str> = good.split('.').collect();
    let cases = [
        parts[0].to_owned(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{good}.x"),
        ".".repeat(100_000),
        format!("{}{}", good, ".".repeat(100_000)),
        "..".into(),
        format!("{}..{}", parts[0], parts[2]),
    ];
    for t in &cases {
        f.rejects(t).await;
    }
    assert_eq!(
        f.idp.jwks_fetches(),
        0,
        "structural rejects happen before any fetch"
    );
    Ok(())
}

#[tokio::test]
async fn j15_jwe_and_oversized_tokens() -> R {
    let f = Fixture::new().await?;
    let h = b64url(br#"{"alg":"RSA-OAEP","enc":"A256GCM","zip":"DEF"}"#);
    let jwe = format!("{h}.AAAA.AAAA.{}.AAAA", b64url(vec![0u8; 1000]));
    assert_eq!(
        f.rejects(&jwe).await,
        TokenError::Invalid(Reason::UnsupportedFormat)
    );
    let enc_in_jws = f.idp.token_at(f.now).header("enc", "A256GCM").build()?;
    f.rejects(&enc_in_jws).await;
    let huge = f
        .idp
        .token_at(f.now)
        .claim("pad", "x".repeat(64 * 1024))
        .build()?;
    assert_eq!(
        f.rejects(&huge).await,
        TokenError::Invalid(Reason::Malformed)
    );
    Ok(())
}

#[tokio::test]
async fn j16_non_canonical_encodings() -> R {
    let f = Fixture::new().await?;
    let good = f.idp.token_at(f.now).build()?;
    let (input, sig) = good.rsplit_once('.').unwrap_or_default();
    let std_sig = base64::engine::general_purpose::STANDARD.encode(URL_SAFE_NO_PAD.decode(sig)?);
    let not_object = format!(
        "{}.{}.{}",
        b64url("[1,2]"),
        input.split('.').nth(1).unwrap_or(""),
        sig
    );
    let bad_utf8 = format!(
        "{}.{}.{}",
        input.split('.').next().unwrap_or(""),
        b64url([0xff, 0xfe, 0x7b]),
        sig
    );
    let cases = [
        format!("{good}!!!!"),
        format!("{good}="),
        format!("{input}.{std_sig}"),
        format!("{input}. {sig}"),
        good.replacen('.', "+.", 1),
        not_object,
        bad_utf8,
    ];
    for t in &cases {
        f.rejects(t).await;
    }
    assert!(f.verify(&good).await.is_ok());
    Ok(())
}

#[tokio::test]
async fn j17_duplicate_members_reject() -> R {
    let f = Fixture::new().await?;
    let now = f.now;
    let iss = f.idp.issuer().to_owned();
    let claims = format!(
        r#"{{"iss":"{iss}","aud":"{DEFAULT_AUDIENCE}","exp":{},"sub":"a","patient":"P1","patient":"P2"}}"#,
        now + 300
    );
    let t = f.idp.token_at(now).raw_claims(&claims).build()?;
    assert_eq!(
        f.rejects(&t).await,
        TokenError::Invalid(Reason::DuplicateMember)
    );
    let claims = format!(
        r#"{{"iss":"{iss}","aud":"{DEFAULT_AUDIENCE}","exp":{},"sub":"a","sub":"b"}}"#,
        now + 300
    );
    f.rejects(&f.idp.token_at(now).raw_claims(&claims).build()?)
        .await;
    let t = f
        .idp
        .token_at(now)
        .raw_header(r#"{"alg":"RS256","kid":"k1","alg":"none"}"#)
        .build()?;
    assert_eq!(
        f.rejects(&t).await,
        TokenError::Invalid(Reason::DuplicateMember)
    );
    let t = f
        .idp
        .token_at(now)
        .raw_header(r#"{"alg":"RS256","kid":"k2","kid":"k1"}"#)
        .build()?;
    f.rejects(&t).await;
    let single = format!(
        r#"{{"iss":"{iss}","aud":"{DEFAULT_AUDIENCE}","exp":{},"sub":"a","patient":"P1"}}"#,
        now + 300
    );
    assert!(
        f.verify(&f.idp.token_at(now).raw_claims(&single).build()?)
            .await
            .is_ok()
    );
    Ok(())
}

#[tokio::test]
async fn j18_crit_headers_reject() -> R {
    let f = Fixture::new().await?;
    for crit in [
        json!(["x-unknown"]),
        json!([]),
        json!("exp"),
        json!(["b64"]),
        json!(null),
    ] {
        let t = f
            .idp
            .token_at(f.now)
            .header("crit", crit.clone())
            .header("x-unknown", 1)
            .build()?;
        assert_eq!(
            f.rejects(&t).await,
            TokenError::Invalid(Reason::Header),
            "{crit}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn j19_algorithm_must_match_the_key() -> R {
    let f = Fixture::with(|s| {
        s.algorithms = vec![Algorithm::RS256, Algorithm::PS256, Algorithm::ES256]
    })
    .await?;
    for alg in ["PS256", "RS512"] {
        let t = f.idp.token_with(&f.idp.k1, alg, f.now).build()?;
        f.rejects(&t).await;
    }
    let es_on_rsa_kid = f
        .idp
        .token_with(&f.idp.k2, "ES256", f.now)
        .header("kid", "k1")
        .build()?;
    f.rejects(&es_on_rsa_kid).await;
    let no_alg = f.idp.token_at(f.now).without_header("alg").build()?;
    assert_eq!(
        f.rejects(&no_alg).await,
        TokenError::Invalid(Reason::Algorithm)
    );
    // A key without a pinned alg accepts any allowlisted algorithm of its type...
    let mut free = TestKey::rsa("free")?;
    free.jwk_alg = None;
    f.idp.add_key(free.clone());
    assert!(
        f.verify(&f.idp.token_with(&free, "PS256", f.now).build()?)
            .await
            .is_ok()
    );
    // ...but never one the issuer does not allow.
    let rs512 = f.idp.token_with(&free, "RS512", f.now).build()?;
    assert_eq!(
        f.rejects(&rs512).await,
        TokenError::Invalid(Reason::Algorithm)
    );
    Ok(())
}

#[tokio::test]
async fn j20_rotation_and_kid_floods() -> R {
    let f = Fixture::new().await?;
    f.verify(&f.idp.token_at(f.now).build()?).await?;
    let k3 = TestKey::rsa("k3")?;
    f.idp.add_key(k3.clone());
    let t = f.idp.token_with(&k3, "RS256", f.now).build()?;
    assert!(f.verify(&t).await.is_ok(), "new key after rotation");
    assert_eq!(
        f.idp.jwks_fetches(),
        2,
        "exactly one refetch for the new kid"
    );

    f.clock.advance(Duration::from_secs(11));
    let before = f.idp.jwks_fetches();
    let mut tokens = Vec::new();
    for i in 0..1000 {
        tokens.push(
            f.idp
                .token_at(f.now)
                .header("kid", format!("random-{i}"))
                .build()?,
        );
    }
    let results = futures_join(&f, &tokens).await;
    for r in &results {
        assert_eq!(
            r.as_ref().err(),
            Some(&TokenError::Invalid(Reason::UnknownKey))
        );
    }
    let spent = f.idp.jwks_fetches() - before;
    assert!(spent <= 2, "1000 random kids cost {spent} fetches");
    assert!(
        f.verify(&t).await.is_ok(),
        "known keys still work during the flood"
    );
    Ok(())
}

async fn futures_join(
    f: &Fixture,
    tokens: &[String],
) -> Vec<Result<std::sync::Arc<fhirgate_tokens::Principal>, TokenError>> {
    let mut set = tokio::task::JoinSet::new();
    for t in tokens {
        let v = f.verifier.clone();
        let t = t.clone();
        set.spawn(async move { v.verify(&t).await });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(r) = r {
            out.push(r);
        }
    }
    assert_eq!(out.len(), tokens.len(), "no task panicked");
    out
}

#[tokio::test]
async fn j21_jwks_outage_keeps_cached_keys_and_fails_closed() -> R {
    let f = Fixture::new().await?;
    let good = f.idp.token_at(f.now).build()?;
    f.verify(&good).await?;
    for (label, setup) in [("500", 0u8), ("oversized", 1), ("slow", 2)] {
        f.idp.set_outage(setup == 0);
        f.idp.set_oversized_jwks(setup == 1);
        f.idp.set_delay(if setup == 2 {
            Duration::from_secs(30)
        } else {
            Duration::ZERO
        });
        f.clock.advance(Duration::from_secs(11));
        let fresh = f.idp.token_at(f.now()).claim("jti", label).build()?;
        assert!(
            f.verify(&fresh).await.is_ok(),
            "{label}: cached kid still verifies"
        );
        let unknown = f
            .idp
            .token_at(f.now())
            .header("kid", format!("new-{label}"))
            .build()?;
        let retry = f.unavailable(&unknown).await;
        assert!(
            retry >= Duration::from_secs(1),
            "{label}: Retry-After {retry:?}"
        );
    }
    // Past the JWKS freshness window with the IdP still down: stale keys keep working.
    f.idp.set_delay(Duration::ZERO);
    f.idp.set_oversized_jwks(false);
    f.idp.set_outage(true);
    f.clock.advance(Duration::from_secs(7200));
    let later = f.idp.token_at(f.now()).build()?;
    assert!(f.verify(&later).await.is_ok());
    // Recovery: the next allowed refetch finds the new key.
    f.idp.set_outage(false);
    let k9 = TestKey::rsa("k9")?;
    f.idp.add_key(k9.clone());
    f.clock.advance(Duration::from_secs(11));
    assert!(
        f.verify(&f.idp.token_with(&k9, "RS256", f.now()).build()?)
            .await
            .is_ok()
    );
    Ok(())
}

#[tokio::test]
async fn j21_issuer_down_from_the_start() -> R {
    let f = Fixture::new().await?;
    f.idp.set_outage(true);
    let t = f.idp.token_at(f.now).build()?;
    f.unavailable(&t).await;
    let hits = f.idp.jwks_fetches() + f.idp.discovery_fetches();
    f.unavailable(&t).await;
    assert_eq!(
        f.idp.jwks_fetches() + f.idp.discovery_fetches(),
        hits,
        "no hammering a down IdP"
    );
    f.idp.set_outage(false);
    f.clock.advance(Duration::from_secs(11));
    assert!(f.verify(&t).await.is_ok());
    Ok(())
}

#[tokio::test]
async fn j22_clock_skew_boundaries() -> R {
    let f = Fixture::new().await?;
    let n = f.now;
    assert!(
        f.verify(
            &f.idp
                .token_at(n)
                .claim("exp", n - 55)
                .claim("iat", n - 300)
                .build()?
        )
        .await
        .is_ok()
    );
    f.rejects_expired(
        &f.idp
            .token_at(n)
            .claim("exp", n - 65)
            .claim("iat", n - 300)
            .build()?,
    )
    .await;
    assert!(
        f.verify(&f.idp.token_at(n).claim("nbf", n + 55).build()?)
            .await
            .is_ok()
    );
    f.rejects_expired(&f.idp.token_at(n).claim("nbf", n + 65).build()?)
        .await;
    Ok(())
}

#[tokio::test]
async fn verified_tokens_are_cached_until_they_expire() -> R {
    let f = Fixture::new().await?;
    let t = f.idp.token_at(f.now).build()?;
    let a = f.verify(&t).await?;
    // The key disappears; the cached verification still stands within its lifetime...
    f.idp.remove_key("k1");
    let b = f.verify(&t).await?;
    assert!(
        std::sync::Arc::ptr_eq(&a, &b),
        "second verification is a cache hit"
    );
    // ...but not past the token's exp plus skew.
    f.clock.advance(Duration::from_secs(300 + 61));
    f.rejects_expired(&t).await;
    Ok(())
}

#[tokio::test]
async fn cache_control_sets_jwks_freshness_within_bounds() -> R {
    let f = Fixture::new().await?;
    f.idp.set_jwks_cache_control(Some("public, max-age=120"));
    f.verify(&f.idp.token_at(f.now).build()?).await?;
    assert_eq!(f.idp.jwks_fetches(), 1);
    f.clock.advance(Duration::from_secs(100));
    f.verify(&f.idp.token_at(f.now()).build()?).await?;
    assert_eq!(f.idp.jwks_fetches(), 1, "still fresh at 100 s");
    f.clock.advance(Duration::from_secs(30));
    f.verify(&f.idp.token_at(f.now()).build()?).await?;
    assert_eq!(f.idp.jwks_fetches(), 2, "refreshed after max-age");
    // max-age below the configured minimum (60 s) is raised to it.
    f.idp.set_jwks_cache_control(Some("max-age=1"));
    f.clock.advance(Duration::from_secs(200));
    f.verify(&f.idp.token_at(f.now()).build()?).await?;
    assert_eq!(f.idp.jwks_fetches(), 3);
    f.clock.advance(Duration::from_secs(30));
    f.verify(&f.idp.token_at(f.now()).build()?).await?;
    assert_eq!(f.idp.jwks_fetches(), 3, "clamped to the 60 s minimum");
    Ok(())
}

#[tokio::test]
async fn discovery_falls_back_and_requires_the_exact_issuer() -> R {
    let f = Fixture::new().await?;
    f.idp.set_openid_discovery(false);
    assert!(
        f.verify(&f.idp.token_at(f.now).build()?).await.is_ok(),
        "RFC 8414 fallback"
    );

    let g = Fixture::new().await?;
    let wrong = format!("{}/", g.idp.issuer());
    g.idp.set_discovery_issuer(Some(&wrong));
    g.unavailable(&g.idp.token_at(g.now).build()?).await;
    assert_eq!(
        g.idp.jwks_fetches(),
        0,
        "keys are never fetched for a mismatched issuer"
    );
    Ok(())
}

#[tokio::test]
async fn configured_jwks_uri_skips_discovery() -> R {
    let idp = crate::issuer::TestIssuer::start().await?;
    let mut s = crate::support::settings(&idp);
    s.jwks_uri = Some(url::Url::parse(&idp.jwks_uri())?);
    let clock = fhirgate_tokens::ManualClock::new(crate::mint::now_secs());
    let v = fhirgate_tokens::Verifier::new(vec![s], clock.clock());
    assert!(v.verify(&idp.token().build()?).await.is_ok());
    assert_eq!(idp.discovery_fetches(), 0);
    assert_eq!(v.jwks_fetches(idp.issuer()), Some(1));
    Ok(())
}

#[tokio::test]
async fn multiple_issuers_route_by_iss() -> R {
    let a = crate::issuer::TestIssuer::start().await?;
    let b = crate::issuer::TestIssuer::start().await?;
    let clock = fhirgate_tokens::ManualClock::new(crate::mint::now_secs());
    let v = fhirgate_tokens::Verifier::new(
        vec![crate::support::settings(&a), crate::support::settings(&b)],
        clock.clock(),
    );
    assert_eq!(v.verify(&a.token().build()?).await?.issuer, a.issuer());
    assert_eq!(v.verify(&b.token().build()?).await?.issuer, b.issuer());
    // b's key under a's issuer name: a's JWKS has no such key material.
    let forged = JwtBuilder::new(&b.k1, "RS256")
        .claim("iss", a.issuer())
        .claim("aud", DEFAULT_AUDIENCE)
        .claim("exp", crate::mint::now_secs() + 60)
        .build()?;
    assert_eq!(
        v.verify(&forged).await.err(),
        Some(TokenError::Invalid(Reason::Signature))
    );
    Ok(())
}

#[tokio::test]
async fn prefetch_loads_keys_before_the_first_request() -> R {
    let f = Fixture::new().await?;
    assert_eq!(
        f.verifier.prefetch_keys().await,
        vec![(f.idp.issuer().to_owned(), true)]
    );
    assert_eq!(f.idp.jwks_fetches(), 1);
    assert!(f.verify(&f.idp.token_at(f.now).build()?).await.is_ok());
    assert_eq!(
        f.idp.jwks_fetches(),
        1,
        "first request found keys already loaded"
    );

    let down = Fixture::new().await?;
    down.idp.set_outage(true);
    assert_eq!(
        down.verifier.prefetch_keys().await,
        vec![(down.idp.issuer().to_owned(), false)]
    );
    Ok(())
}
