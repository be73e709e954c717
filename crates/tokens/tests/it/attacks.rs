//! reference/security.md §1, rows J1–J22, at the verifier level. Each row asserts the exact
//! error class (A1 = 401 `unknown`, A2 = 401 `expired`, U = 503) and, where it matters, how
//! often the issuer's JWKS endpoint was hit. Every "deny" sits next to an "allow".

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fhirgate_tokens::{Algorithm, Reason, Secret, TokenError};
use serde_json::json;

use crate::issuer::{Canary, DEFAULT_AUDIENCE};
use crate::mint::{JwtBuilder, TestKey, b64url, flip_signature_bit, swap_signature};
use crate::support::Fixture;

type R = anyhow::Result<()>;

#[tokio::test]
async fn baseline_rs256_and_es256_tokens_are_accepted() -> R {
    let f = Fixture::new().await?;
    let p = f.verify(&f.idp.token_at(f.now).build()?).await?;
    assert_eq!(p.patient.as_deref(), Some("P1"));
    assert_eq!(p.subject.as_deref(), Some("user-1"));
    assert_eq!(p.client_id.as_deref(), Some("app-1"));
    assert_eq!(p.scopes, vec!["launch/patient", "patient/*.rs"]);
    assert_eq!(p.issuer, f.idp.issuer());
    assert!(p.token_id.is_some());
    let es = f.idp.token_with(&f.idp.k2, "ES256", f.now).build()?;
    assert!(f.verify(&es).await.is_ok());
    assert_eq!(f.idp.jwks_fetches(), 1, "one JWKS fetch serves both keys");
    Ok(())
}

#[tokio::test]
async fn other_algorithms_ps_es384_eddsa() -> R {
    let f = Fixture::new().await?;
    let ps = TestKey::rsa("ps")?;
    let mut ps = ps.renamed("ps");
    ps.jwk_alg = None;
    let p384 = TestKey::ec_p384("p384")?;
    let ed = TestKey::ed25519("ed")?;
    for k in [&ps, &p384, &ed] {
        f.idp.add_key(k.clone());
    }
    for (k, alg) in [
        (&ps, "PS256"),
        (&ps, "PS512"),
        (&ps, "RS384"),
        (&p384, "ES384"),
        (&ed, "EdDSA"),
    ] {
        let t = f.idp.token_with(k, alg, f.now).build()?;
        assert!(f.verify(&t).await.is_ok(), "{alg} with {k:?}");
    }
    Ok(())
}

#[tokio::test]
async fn j1_alg_none_in_any_spelling() -> R {
    let f = Fixture::new().await?;
    for alg in ["none", "None", "NONE", "nOnE"] {
        let t = f
            .idp
            .token_at(f.now)
            .header("alg", alg)
            .unsigned()
            .build()?;
        assert_eq!(f.rejects(&t).await, TokenError::Invalid(Reason::Algorithm));
        let signed = f.idp.token_at(f.now).header("alg", alg).build()?;
        f.rejects(&signed).await;
    }
    Ok(())
}

#[tokio::test]
async fn j2_hs256_keyed_with_the_rsa_public_key() -> R {
    let f = Fixture::new().await?;
    for (i, form) in f.idp.k1.rsa_public_key_forms()?.iter().enumerate() {
        for alg in ["HS256", "HS384", "HS512"] {
            let t = f
                .idp
                .token_at(f.now)
                .header("alg", alg)
                .hmac_secret(form)
                .build()?;
            assert_eq!(
                f.rejects(&t).await,
                TokenError::Invalid(Reason::Algorithm),
                "form {i} {alg}"
            );
            let no_kid = f
                .idp
                .token_at(f.now)
                .header("alg", alg)
                .without_header("kid")
                .hmac_secret(form)
                .build()?;
            f.rejects(&no_kid).await;
        }
    }
    Ok(())
}

#[tokio::test]
async fn j2_hs256_only_with_the_configured_secret() -> R {
    let secret = b"a-shared-secret-of-at-least-32-bytes!!".to_vec();
    let s2 = secret.clone();
    let f = Fixture::with(move |s| {
        s.algorithms.push(Algorithm::HS256);
        s.hs_secret = Some(Secret::new(s2));
    })
    .await?;
    let good = f
        .idp
        .token_at(f.now)
        .header("alg", "HS256")
        .hmac_secret(&secret)
        .build()?;
    assert!(f.verify(&good).await.is_ok());
    for form in f.idp.k1.rsa_public_key_forms()? {
        let t = f
            .idp
            .token_at(f.now)
            .header("alg", "HS256")
            .hmac_secret(&form)
            .build()?;
        assert_eq!(f.rejects(&t).await, TokenError::Invalid(Reason::Signature));
    }
    let hs384 = f
        .idp
        .token_at(f.now)
        .header("alg", "HS384")
        .hmac_secret(&secret)
        .build()?;
    assert_eq!(
        f.rejects(&hs384).await,
        TokenError::Invalid(Reason::Algorithm),
        "HS384 not allowed"
    );
    assert_eq!(f.idp.jwks_fetches(), 0, "HMAC tokens never touch the JWKS");
    Ok(())
}

#[tokio::test]
async fn j3_unknown_kid_wrong_kty_and_enc_keys() -> R {
    let f = Fixture::new().await?;
    f.verify(&f.idp.token_at(f.now).build()?).await?;
    assert_eq!(f.idp.jwks_fetches(), 1);

    let unknown = f.idp.token_at(f.now).header("kid", "nope").build()?;
    assert_eq!(
        f.rejects(&unknown).await,
        TokenError::Invalid(Reason::UnknownKey)
    );
    assert_eq!(f.idp.jwks_fetches(), 2, "one refetch for an unknown kid");
    let again = f.idp.token_at(f.now).header("kid", "nope-2").build()?;
    f.rejects(&again).await;
    assert_eq!(f.idp.jwks_fetches(), 2, "refetch is rate-limited");

    let k2_as_rs = f.idp.token_at(f.now).header("kid", "k2").build()?;
    assert_eq!(
        f.rejects(&k2_as_rs).await,
        TokenError::Invalid(Reason::KeyMismatch)
    );
    let k1_as_es = f.idp.token_with(&f.idp.k1, "ES256", f.now).build()?;
    f.rejects(&k1_as_es).await;
    assert_eq!(
        f.idp.jwks_fetches(),
        2,
        "a known kid never triggers a refetch"
    );

    // A key published for encryption is never a verification key.
    let enc = TestKey::rsa("enc1")?;
    let mut jwk = enc.jwk();
    jwk["use"] = json!("enc");
    f.idp.publish_raw_jwk(jwk);
    f.clock.advance(Duration::from_secs(11));
    let t = f.idp.token_with(&enc, "RS256", f.now()).build()?;
    assert_eq!(f.rejects(&t).await, TokenError::Invalid(Reason::UnknownKey));
    assert_eq!(f.idp.jwks_fetches(), 3);
    Ok(())
}

#[tokio::test]
async fn j4_hostile_kid_values() -> R {
    let f = Fixture::new().await?;
    for kid in [
        json!("../../dev/null"),
        json!("' OR 1=1--"),
        json!("k".repeat(10_000)),
        json!(7),
        json!({"a":1}),
        json!(["k1"]),
        json!(""),
        json!(null),
    ] {
        let t = f.idp.token_at(f.now).header("kid", kid.clone()).build()?;
        f.rejects(&t).await;
    }
    Ok(())
}

#[tokio::test]
async fn j5_key_locating_headers_are_never_followed() -> R {
    let f = Fixture::new().await?;
    let canary = Canary::start().await?;
    let attacker = TestKey::rsa("k1")?;
    let attacker_jwk = attacker.jwk();
    for (name, value) in [
        ("jku", json!(canary.url("/jwks"))),
        ("x5u", json!(canary.url("/cert.pem"))),
        ("jwk", attacker_jwk.clone()),
    ] {
        let t = f
            .idp
            .token_at(f.now)
            .header(name, value)
            .signed_by(&attacker)
            .build()?;
        assert_eq!(
            f.rejects(&t).await,
            TokenError::Invalid(Reason::Header),
            "{name}"
        );
        // Even the genuine key's signature does not make these headers acceptable.
        let genuine = f
            .idp
            .token_at(f.now)
            .header(name, canary.url("/x"))
            .build()?;
        f.rejects(&genuine).await;
    }
    // An embedded certificate chain is ignored; the attacker's signature does not verify.
    let t = f
        .idp
        .token_at(f.now)
        .header("x5c", json!(["MIIBfake"]))
        .signed_by(&attacker)
        .build()?;
    assert_eq!(f.rejects(&t).await, TokenError::Invalid(Reason::Signature));
    let t = f
        .idp
        .token_at(f.now)
        .header("kid", "attacker")
        .header("x5c", json!(["MIIBfake"]))
        .signed_by(&attacker)
        .build()?;
    f.rejects(&t).await;
    assert_eq!(
        canary.hits(),
        0,
        "no request may reach a URL named by a token"
    );
    Ok(())
}

#[tokio::test]
async fn j6_expired() -> R {
    let f = Fixture::new().await?;
    let t = f
        .idp
        .token_at(f.now)
        .claim("exp", f.now - 120)
        .claim("iat", f.now - 400)
        .build()?;
    f.rejects_expired(&t).await;
    Ok(())
}

#[tokio::test]
async fn j7_nbf_and_wrong_typed_time_claims() -> R {
    let f = Fixture::new().await?;
    f.rejects_expired(&f.idp.token_at(f.now).claim("nbf", f.now + 300).build()?)
        .await;
    assert!(
        f.verify(&f.idp.token_at(f.now).claim("nbf", f.now - 10).build()?)
            .await
            .is_ok()
    );
    let e = f
        .rejects(&f.idp.token_at(f.now).claim("nbf", "9999999999").build()?)
        .await;
    assert_eq!(e, TokenError::Invalid(Reason::Claims));
    f.rejects(
        &f.idp
            .token_at(f.now)
            .claim("exp", (f.now + 300).to_string())
            .build()?,
    )
    .await;
    f.rejects(&f.idp.token_at(f.now).claim("exp", json!(null)).build()?)
        .await;
    f.rejects(&f.idp.token_at(f.now).claim("exp", json!(true)).build()?)
        .await;
    Ok(())
}

#[tokio::test]
async fn j8_iat_in_the_future_or_wrong_type() -> R {
    let f = Fixture::new().await?;
    let e = f
        .rejects(&f.idp.token_at(f.now).claim("iat", f.now + 86_400).build()?)
        .await;
    assert_eq!(e, TokenError::Invalid(Reason::IssuedInFuture));
    f.rejects(&f.idp.token_at(f.now).claim("iat", "x").build()?)
        .await;
    assert!(
        f.verify(&f.idp.token_at(f.now).claim("iat", f.now + 30).build()?)
            .await
            .is_ok(),
        "within skew"
    );
    Ok(())
}

#[tokio::test]
async fn j9_missing_exp_and_lifetime_cap() -> R {
    let f = Fixture::new().await?;
    let e = f
        .rejects(&f.idp.token_at(f.now).without_claim("exp").build()?)
        .await;
    assert_eq!(e, TokenError::Invalid(Reason::Claims));
    let long = f
        .idp
        .token_at(f.now)
        .claim("exp", f.now + 25 * 3600)
        .build()?;
    assert_eq!(
        f.rejects(&long).await,
        TokenError::Invalid(Reason::LifetimeTooLong)
    );
    let no_iat = f
        .idp
        .token_at(f.now)
        .without_claim("iat")
        .claim("exp", f.now + 25 * 3600)
        .build()?;
    f.rejects(&no_iat).await;
    let ok = f
        .idp
        .token_at(f.now)
        .claim("exp", f.now + 23 * 3600)
        .build()?;
    assert!(f.verify(&ok).await.is_ok());
    Ok(())
}

#[tokio::test]
async fn j10_issuer_is_compared_exactly() -> R {
    let f = Fixture::new().await?;
    let iss = f.idp.issuer().to_owned();
    let variants = [
        json!(format!("{iss}/")),
        json!(iss.to_uppercase()),
        json!(format!("{iss}.evil")),
        json!(&iss[..iss.len() - 1]),
        json!(format!("x{iss}")),
        json!([iss.clone()]),
        json!(null),
        json!("https://idp"),
    ];
    for v in variants {
        let t = f.idp.token_at(f.now).claim("iss", v.clone()).build()?;
        assert_eq!(
            f.rejects(&t).await,
            TokenError::Invalid(Reason::Issuer),
            "{v}"
        );
    }
    assert_eq!(f.idp.jwks_fetches(), 0, "unknown issuers cost no fetch");
    Ok(())
}

#[tokio::test]
async fn j11_audience_required_and_matched() -> R {
    let f = Fixture::new().await?;
    for aud in [
        json!([]),
        json!(["other"]),
        json!(123),
        json!(null),
        json!([DEFAULT_AUDIENCE, 1]),
    ] {
        let t = f.idp.token_at(f.now).claim("aud", aud.clone()).build()?;
        assert_eq!(
            f.rejects(&t).await,
            TokenError::Invalid(Reason::Audience),
            "{aud}"
        );
    }
    f.rejects(&f.idp.token_at(f.now).without_claim("aud").build()?)
        .await;
    let both = f
        .idp
        .token_at(f.now)
        .claim("aud", json!(["other", DEFAULT_AUDIENCE]))
        .build()?;
    assert!(f.verify(&both).await.is_ok());
    Ok(())
}

#[tokio::test]
async fn j12_tokens_for_other_servers_and_id_tokens() -> R {
    let f = Fixture::with(|s| s.required_typ = Some("at+jwt".into())).await?;
    let other = f
        .idp
        .token_at(f.now)
        .header("typ", "at+jwt")
        .claim("aud", "https://other/fhir")
        .build()?;
    assert_eq!(
        f.rejects(&other).await,
        TokenError::Invalid(Reason::Audience)
    );
    let id_token = f
        .idp
        .token_at(f.now)
        .header("typ", "JWT")
        .claim("aud", "app-1")
        .build()?;
    f.rejects(&id_token).await;
    let id_token_right_aud = f.idp.token_at(f.now).header("typ", "JWT").build()?;
    assert_eq!(
        f.rejects(&id_token_right_aud).await,
        TokenError::Invalid(Reason::Type)
    );
    let untyped = f.idp.token_at(f.now).build()?;
    f.rejects(&untyped).await;
    let access = f.idp.token_at(f.now).header("typ", "at+jwt").build()?;
    assert!(f.verify(&access).await.is_ok());
    Ok(())
}

#[tokio::test]
async fn j13_signature_tampering() -> R {
    let f = Fixture::new().await?;
    let good = f.idp.token_at(f.now).build()?;
    let other = f.idp.token_at(f.now).claim("patient", "P2").build()?;
    let (input, _) = good.rsplit_once('.').unwrap_or_default();
    let cases = [
        format!("{input}."),
        swap_signature(&other, &good)?,
        flip_signature_bit(&good)?,
        f.idp
            .token_with(&f.idp.k2, "ES256", f.now)
            .raw_signature(vec![0; 64])
            .build()?,
        f.idp
            .token_with(&f.idp.k2, "ES256", f.now)
            .raw_signature(vec![])
            .build()?,
        f.idp.token_at(f.now).raw_signature(vec![0; 256]).build()?,
        f.idp.token_at(f.now).extra_segments(2).build()?,
        json!({"payload": "e30", "signatures": [{"protected": "e30", "signature": "AA"}]})
            .to_string(),
        json!({"payload": "e30", "protected": "e30", "signature": "AA"}).to_string(),
    ];
    for (i, t) in cases.iter().enumerate() {
        let e = f.rejects(t).await;
        assert!(
            matches!(
                e,
                TokenError::Invalid(
                    Reason::Signature | Reason::UnsupportedFormat | Reason::Malformed
                )
            ),
            "case {i}: {e:?}"
        );
    }
    assert!(f.verify(&good).await.is_ok());
    Ok(())
}

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
