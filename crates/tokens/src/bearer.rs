//! Finding the one bearer token in a request (RFC 6750 §2).

use std::borrow::Cow;

use http::HeaderMap;
use http::header::AUTHORIZATION;

use crate::error::CredentialError;

/// The bearer token of a request, from the `Authorization` header or the `access_token`
/// query parameter.
///
/// Exactly one credential may be presented: two `Authorization` headers, or a header plus
/// the query parameter (or the parameter twice) is [`CredentialError::MultipleCredentials`]
/// (→ 400). The scheme is matched case-insensitively. The token's characters are not
/// checked here, so that a garbled token is reported as an invalid token (401), not as a
/// bad request. `Ok(None)` means no credential at all (→ 401 `login`).
pub fn extract_bearer<'a>(
    headers: &'a HeaderMap,
    query: Option<&'a str>,
) -> Result<Option<Cow<'a, str>>, CredentialError> {
    let mut auth = headers.get_all(AUTHORIZATION).iter();
    let header = auth.next();
    if auth.next().is_some() {
        return Err(CredentialError::MultipleCredentials);
    }
    let from_query = query_tokens(query)?;
    let from_header = match header {
        None => None,
        Some(v) => {
            if from_query.is_some() {
                return Err(CredentialError::MultipleCredentials);
            }
            Some(parse_authorization(
                v.to_str().map_err(|_| CredentialError::Malformed)?,
            )?)
        }
    };
    Ok(from_header.map(Cow::Borrowed).or(from_query))
}

fn parse_authorization(value: &str) -> Result<&str, CredentialError> {
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    let (scheme, rest) = match value.find([' ', '\t']) {
        Some(i) => (&value[..i], &value[i..]),
        None => (value, ""),
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(CredentialError::UnsupportedScheme);
    }
    let token = rest.trim_start_matches([' ', '\t']);
    if token.is_empty() {
        return Err(CredentialError::Malformed);
    }
    Ok(token)
}

fn query_tokens(query: Option<&str>) -> Result<Option<Cow<'_, str>>, CredentialError> {
    let Some(q) = query else { return Ok(None) };
    let mut found = None;
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        if k == "access_token" {
            if found.is_some() {
                return Err(CredentialError::MultipleCredentials);
            }
            found = Some(v);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(values: &[&str]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for v in values {
            m.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn scheme_is_case_insensitive() {
        for s in ["Bearer abc", "bearer abc", "BEARER   abc", "bEaReR\tabc"] {
            let hm = h(&[s]);
            assert_eq!(
                extract_bearer(&hm, None).unwrap().as_deref(),
                Some("abc"),
                "{s}"
            );
        }
    }

    #[test]
    fn exactly_one_credential() {
        assert_eq!(
            extract_bearer(&h(&["Bearer a", "Bearer b"]), None),
            Err(CredentialError::MultipleCredentials)
        );
        assert_eq!(
            extract_bearer(&h(&["Bearer a"]), Some("access_token=b")),
            Err(CredentialError::MultipleCredentials)
        );
        assert_eq!(
            extract_bearer(&h(&[]), Some("access_token=a&access_token=b")),
            Err(CredentialError::MultipleCredentials)
        );
        assert_eq!(
            extract_bearer(&h(&[]), Some("x=1&access_token=a%2Bb"))
                .unwrap()
                .as_deref(),
            Some("a+b")
        );
        assert_eq!(
            extract_bearer(&h(&["Bearer a"]), Some("x=1"))
                .unwrap()
                .as_deref(),
            Some("a")
        );
    }

    #[test]
    fn absent_empty_and_other_schemes() {
        assert_eq!(extract_bearer(&h(&[]), None), Ok(None));
        assert_eq!(extract_bearer(&h(&[]), Some("_count=1")), Ok(None));
        assert_eq!(
            extract_bearer(&h(&["Bearer"]), None),
            Err(CredentialError::Malformed)
        );
        assert_eq!(
            extract_bearer(&h(&["Bearer   "]), None),
            Err(CredentialError::Malformed)
        );
        assert_eq!(
            extract_bearer(&h(&["Basic dXNlcjpwdw=="]), None),
            Err(CredentialError::UnsupportedScheme)
        );
        assert_eq!(
            extract_bearer(&h(&["Bearerabc"]), None),
            Err(CredentialError::UnsupportedScheme)
        );
    }
}
