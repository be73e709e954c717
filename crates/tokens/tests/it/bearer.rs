//! J23: exactly one credential, case-insensitive scheme, then verification.

use fhirgate_tokens::{CredentialError, ErrorClass, TokenError, extract_bearer};
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};

use crate::support::Fixture;

fn headers(values: &[&str]) -> anyhow::Result<HeaderMap> {
    let mut h = HeaderMap::new();
    for v in values {
        h.append(AUTHORIZATION, HeaderValue::from_str(v)?);
    }
    Ok(h)
}

#[tokio::test]
async fn j23_one_credential_and_lowercase_scheme() -> anyhow::Result<()> {
    let f = Fixture::new().await?;
    let t = f.idp.token_at(f.now).build()?;

    let lower = headers(&[&format!("bearer {t}")])?;
    let tok = extract_bearer(&lower, None)?.ok_or_else(|| anyhow::anyhow!("no token"))?;
    assert!(f.verify(&tok).await.is_ok(), "lowercase scheme → 200");

    let two = headers(&[&format!("Bearer {t}"), &format!("Bearer {t}")])?;
    let e = TokenError::from(
        extract_bearer(&two, None)
            .err()
            .ok_or_else(|| anyhow::anyhow!("accepted"))?,
    );
    assert!(matches!(e.class(), ErrorClass::BadRequest { .. }));

    let one = headers(&[&format!("Bearer {t}")])?;
    let q = format!("_count=1&access_token={t}");
    assert_eq!(
        extract_bearer(&one, Some(&q)).err(),
        Some(CredentialError::MultipleCredentials)
    );
    let empty = HeaderMap::new();
    let from_query = extract_bearer(&empty, Some(&q))?.ok_or_else(|| anyhow::anyhow!("none"))?;
    assert!(
        f.verify(&from_query).await.is_ok(),
        "query parameter alone is one credential"
    );

    assert_eq!(extract_bearer(&HeaderMap::new(), None)?, None);
    assert_eq!(TokenError::Missing.class(), ErrorClass::Login);
    Ok(())
}
