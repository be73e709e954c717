//! Phase 2, authenticate: the one bearer token of the request is verified and its
//! [`fhirgate_tokens::Principal`] stored in the [`RequestCtx`].
//!
//! `GET /metadata` needs no token (SMART discovery is answered before classification). A
//! token sent as `?access_token=` is taken out of the parameters so it never reaches the
//! upstream's query string or logs; it travels on as an `Authorization` header instead.

use fhirgate_fhir::Interaction;
use fhirgate_tokens::{TokenError, extract_bearer};
use http::request::Parts;
use http::{HeaderValue, header};

use crate::ctx::RequestCtx;
use crate::error::GatewayError;
use crate::security::Security;

const ACCESS_TOKEN_PARAM: &str = "access_token";

pub(crate) async fn authenticate(
    security: &Security,
    ctx: &mut RequestCtx,
    parts: &mut Parts,
) -> Result<(), GatewayError> {
    let Some(verifier) = &security.verifier else {
        return Ok(());
    };
    let Some(fhir) = ctx.fhir.as_mut() else {
        return Err(GatewayError::Internal);
    };
    let token_in_query = fhir.params.remove_named(ACCESS_TOKEN_PARAM) > 0;
    if matches!(fhir.interaction, Interaction::Capabilities) {
        return Ok(());
    }
    let fail = |error: TokenError| GatewayError::Authentication {
        error,
        realm: security.realm.clone(),
    };
    let token = extract_bearer(&parts.headers, parts.uri.query())
        .map_err(|e| fail(e.into()))?
        .ok_or_else(|| fail(TokenError::Missing))?;
    let principal = verifier.verify(&token).await.map_err(fail)?;
    // H6a: revocation notices (revocation.rs); checked after the token cache, one lookup.
    if let Some(revoked) = &security.revocations
        && revoked.is_revoked(principal.token_id.as_deref())
    {
        return Err(fail(TokenError::Invalid(fhirgate_tokens::Reason::Inactive)));
    }
    if token_in_query && let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
        parts.headers.insert(header::AUTHORIZATION, value);
    }
    ctx.principal = Some(principal);
    Ok(())
}
