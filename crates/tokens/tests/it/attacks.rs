//! reference/security.md §1, rows J1–J13 (J14–J22 and key handling are in `keyset.rs`), at the verifier level. Each row asserts the exact
//! error class (A1 = 401 `unknown`, A2 = 401 `expired`, U = 503) and, where it matters, how
//! often the issuer's JWKS endpoint was hit. Every "deny" sits next to an "allow".

use std::time::Duration;

use fhirgate_tokens::{Algorithm, Reason, Secret, TokenError};
use serde_json::json;

use crate::issuer::{Canary, DEFAULT_AUDIENCE};
use crate::mint::{TestKey, flip_signature_bit, swap_signature};
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
