//! Sans-IO JWT parsing and claim checks (reference/security.md §1).
//!
//! We parse the compact JWS ourselves, with size and segment caps first, strict base64url,
//! and duplicate-refusing JSON, then check every claim with its JSON type. jsonwebtoken is
//! used only for the signature, so none of its lenient defaults (missing `aud` skipped,
//! `iat` unchecked, last-wins duplicates) can reach a decision.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::Principal;
use crate::config::{ClaimMapping, IssuerSettings, parse_alg};
use crate::error::Reason;
use crate::json::{StrictJsonError, parse_object};

/// Longest token accepted at all; real access tokens are a few KiB.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Longest `kid` accepted; it is only ever a map key, never a path or query.
pub const MAX_KID_BYTES: usize = 256;

/// What a presented token looks like before any cryptography.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Three dot-separated segments: a compact JWS.
    Jws,
    /// No dots: an opaque token for introspection.
    Opaque,
}

/// Classify a token by form only; refuses oversized, JWE (5 parts), JSON serialisation and
/// anything else with dots.
pub fn shape(token: &str) -> Result<Shape, Reason> {
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(Reason::Malformed);
    }
    if token.starts_with('{') {
        return Err(Reason::UnsupportedFormat);
    }
    match token.bytes().filter(|b| *b == b'.').count() {
        0 if is_b64token(token) => Ok(Shape::Opaque),
        2 => Ok(Shape::Jws),
        4 => Err(Reason::UnsupportedFormat),
        _ => Err(Reason::Malformed),
    }
}

/// RFC 6750 `b64token` characters.
fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// The JOSE header members we act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub typ: Option<String>,
}

/// A parsed, not yet verified, compact JWS.
#[derive(Debug, Clone)]
pub struct UnverifiedJwt<'a> {
    pub header: Header,
    pub claims: Map<String, Value>,
    /// `base64url(header) "." base64url(payload)`: the bytes the signature covers.
    pub signing_input: &'a str,
    /// The third segment, still base64url (already checked to decode canonically).
    pub signature_b64: &'a str,
}

fn b64(segment: &str) -> Result<Vec<u8>, Reason> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| Reason::Malformed)
}

fn json(bytes: &[u8]) -> Result<Map<String, Value>, Reason> {
    parse_object(bytes).map_err(|e| match e {
        StrictJsonError::Duplicate => Reason::DuplicateMember,
        StrictJsonError::Invalid => Reason::Malformed,
    })
}

/// Parse a compact JWS; every structural check happens here.
pub fn parse(token: &str) -> Result<UnverifiedJwt<'_>, Reason> {
    if shape(token)? != Shape::Jws {
        return Err(Reason::Malformed);
    }
    let mut parts = token.splitn(3, '.');
    let (Some(h), Some(p), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Reason::Malformed);
    };
    let header = parse_header(&json(&b64(h)?)?)?;
    if sig.is_empty() {
        return Err(Reason::Signature);
    }
    // Decoding canonically up front means two spellings of one signature cannot exist.
    b64(sig).map_err(|_| Reason::Signature)?;
    let claims = json(&b64(p)?)?;
    let signing_input = token
        .get(..h.len() + 1 + p.len())
        .ok_or(Reason::Malformed)?;
    Ok(UnverifiedJwt {
        header,
        claims,
        signing_input,
        signature_b64: sig,
    })
}

fn parse_header(h: &Map<String, Value>) -> Result<Header, Reason> {
    if h.contains_key("enc") {
        return Err(Reason::UnsupportedFormat);
    }
    // `crit` names extensions we would have to understand; we understand none (RFC 7515
    // §4.1.11). Key-locating headers are never trusted: keys come only from the issuer's JWKS.
    for refused in ["crit", "jku", "x5u", "jwk", "zip", "b64"] {
        if h.contains_key(refused) {
            return Err(Reason::Header);
        }
    }
    let alg = match h.get("alg") {
        Some(Value::String(a)) => parse_alg(a).ok_or(Reason::Algorithm)?,
        _ => return Err(Reason::Algorithm),
    };
    let kid = match h.get("kid") {
        None => None,
        Some(Value::String(k)) if !k.is_empty() && k.len() <= MAX_KID_BYTES => Some(k.clone()),
        Some(_) => return Err(Reason::Header),
    };
    let typ = opt_string(h, "typ").map_err(|_| Reason::Header)?;
    match h.get("cty") {
        None => {}
        Some(Value::String(c)) if !c.eq_ignore_ascii_case("JWT") => {}
        Some(_) => return Err(Reason::Header),
    }
    Ok(Header { alg, kid, typ })
}

fn opt_string(m: &Map<String, Value>, name: &str) -> Result<Option<String>, Reason> {
    match m.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Reason::Claims),
    }
}

fn first_string(m: &Map<String, Value>, names: &[String]) -> Result<Option<String>, Reason> {
    for n in names {
        if let Some(v) = opt_string(m, n)? {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// A NumericDate (RFC 7519 §2): a non-negative JSON number; fractions are floored.
fn numeric_date(m: &Map<String, Value>, name: &str) -> Result<Option<u64>, Reason> {
    match m.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(u) = n.as_u64() {
                Ok(Some(u))
            } else {
                match n.as_f64() {
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    Some(f) if f.is_finite() && f >= 0.0 => Ok(Some(f as u64)),
                    _ => Err(Reason::Claims),
                }
            }
        }
        Some(_) => Err(Reason::Claims),
    }
}

/// SMART context read through the issuer's claim mapping; shared with introspection.
pub(crate) fn principal_from(
    m: &Map<String, Value>,
    map: &ClaimMapping,
    issuer: &str,
    expires_at: u64,
) -> Result<Principal, Reason> {
    let mut scopes = Vec::new();
    for name in &map.scope {
        match m.get(name) {
            None => continue,
            Some(Value::String(s)) => scopes.extend(s.split_whitespace().map(str::to_owned)),
            Some(Value::Array(items)) => {
                for i in items {
                    let Value::String(s) = i else {
                        return Err(Reason::Claims);
                    };
                    scopes.extend(s.split_whitespace().map(str::to_owned));
                }
            }
            Some(_) => return Err(Reason::Claims),
        }
        break;
    }
    Ok(Principal {
        issuer: issuer.to_owned(),
        subject: opt_string(m, "sub")?,
        client_id: first_string(m, &map.client_id)?,
        scopes,
        patient: opt_string(m, &map.patient)?,
        encounter: opt_string(m, &map.encounter)?,
        fhir_user: opt_string(m, &map.fhir_user)?,
        expires_at,
        token_id: opt_string(m, "jti")?,
    })
}

/// Check the claims of a (signature-verified) JWT at `now` and build the principal.
pub fn check_claims(
    jwt: &UnverifiedJwt<'_>,
    s: &IssuerSettings,
    now: u64,
) -> Result<Principal, Reason> {
    let c = &jwt.claims;
    if let Some(required) = &s.required_typ {
        let ok = jwt
            .header
            .typ
            .as_deref()
            .is_some_and(|t| typ_matches(t, required));
        if !ok {
            return Err(Reason::Type);
        }
    }
    match c.get("iss") {
        Some(Value::String(i)) if *i == s.issuer => {}
        _ => return Err(Reason::Issuer),
    }
    check_audience(c.get("aud"), &s.audiences)?;
    let exp = numeric_date(c, "exp")?.ok_or(Reason::Claims)?;
    let nbf = numeric_date(c, "nbf")?;
    let iat = numeric_date(c, "iat")?;
    let skew = s.clock_skew.as_secs();
    let max = s.max_lifetime.as_secs();
    if now > exp.saturating_add(skew) {
        return Err(Reason::Expired);
    }
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(skew)) {
        return Err(Reason::NotYetValid);
    }
    if iat.is_some_and(|iat| iat > now.saturating_add(skew)) {
        return Err(Reason::IssuedInFuture);
    }
    // Checked against both iat and now, so a token cannot stretch its life by lying about iat.
    let from_iat = iat.is_some_and(|iat| exp.saturating_sub(iat) > max);
    if from_iat || exp > now.saturating_add(max).saturating_add(skew) {
        return Err(Reason::LifetimeTooLong);
    }
    principal_from(c, &s.claims, &s.issuer, exp)
}

fn typ_matches(typ: &str, required: &str) -> bool {
    let strip = |t: &str| {
        let lower = t.to_ascii_lowercase();
        lower
            .strip_prefix("application/")
            .map(str::to_owned)
            .unwrap_or(lower)
    };
    strip(typ) == strip(required)
}

fn check_audience(aud: Option<&Value>, accepted: &[String]) -> Result<(), Reason> {
    let ok = match aud {
        Some(Value::String(a)) => accepted.iter().any(|x| x == a),
        Some(Value::Array(items)) => {
            let mut any = false;
            for i in items {
                let Value::String(a) = i else {
                    return Err(Reason::Audience);
                };
                any |= accepted.iter().any(|x| x == a);
            }
            any
        }
        _ => false,
    };
    if ok { Ok(()) } else { Err(Reason::Audience) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn enc(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }
    fn tok(h: &Value, p: &Value) -> String {
        format!("{}.{}.c2ln", enc(h), enc(p))
    }
    fn settings() -> IssuerSettings {
        IssuerSettings::new("https://idp", "https://gw/fhir")
    }
    const NOW: u64 = 1_700_000_000;
    fn claims() -> Value {
        json!({"iss":"https://idp","aud":"https://gw/fhir","exp":NOW+300,"iat":NOW,"sub":"u1",
               "scope":"patient/*.rs openid","patient":"P1","client_id":"app"})
    }
    fn check(h: Value, p: Value) -> Result<Principal, Reason> {
        let t = tok(&h, &p);
        let j = parse(&t)?;
        check_claims(&j, &settings(), NOW)
    }
    fn rs() -> Value {
        json!({"alg":"RS256","kid":"k1"})
    }

    #[test]
    fn good_claims_give_a_principal() {
        let p = check(rs(), claims()).unwrap();
        assert_eq!(p.scopes, vec!["patient/*.rs", "openid"]);
        assert_eq!(p.patient.as_deref(), Some("P1"));
        assert_eq!(p.client_id.as_deref(), Some("app"));
        assert_eq!(p.expires_at, NOW + 300);
    }

    #[test]
    fn shapes() {
        assert_eq!(shape("abc"), Ok(Shape::Opaque));
        assert_eq!(shape("a.b.c"), Ok(Shape::Jws));
        assert_eq!(shape("a.b.c.d.e"), Err(Reason::UnsupportedFormat));
        assert_eq!(shape("{\"payload\":1}"), Err(Reason::UnsupportedFormat));
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            "a!b",
            &".".repeat(100_000),
            &"a".repeat(MAX_TOKEN_BYTES + 1),
        ] {
            assert_eq!(shape(bad), Err(Reason::Malformed));
        }
    }

    #[test]
    fn header_rules() {
        for (h, r) in [
            (json!({"alg":"none"}), Reason::Algorithm),
            (json!({"alg":"NONE"}), Reason::Algorithm),
            (json!({"kid":"k1"}), Reason::Algorithm),
            (json!({"alg":7}), Reason::Algorithm),
            (json!({"alg":"rs256"}), Reason::Algorithm),
            (json!({"alg":"RS256","crit":[]}), Reason::Header),
            (json!({"alg":"RS256","jku":"http://x"}), Reason::Header),
            (json!({"alg":"RS256","jwk":{}}), Reason::Header),
            (json!({"alg":"RS256","x5u":"http://x"}), Reason::Header),
            (json!({"alg":"RS256","kid":5}), Reason::Header),
            (json!({"alg":"RS256","kid":"x".repeat(300)}), Reason::Header),
            (json!({"alg":"RS256","cty":"JWT"}), Reason::Header),
            (
                json!({"alg":"RS256","enc":"A128GCM"}),
                Reason::UnsupportedFormat,
            ),
        ] {
            assert_eq!(check(h.clone(), claims()).err(), Some(r), "{h}");
        }
    }

    #[test]
    fn time_claims_with_skew() {
        let with = |k: &str, v: Value| {
            let mut c = claims();
            c[k] = v;
            check(rs(), c)
        };
        assert!(with("exp", json!(NOW - 55)).is_ok());
        assert_eq!(with("exp", json!(NOW - 65)).err(), Some(Reason::Expired));
        assert!(with("nbf", json!(NOW + 55)).is_ok());
        assert_eq!(
            with("nbf", json!(NOW + 65)).err(),
            Some(Reason::NotYetValid)
        );
        assert_eq!(with("nbf", json!("9999999999")).err(), Some(Reason::Claims));
        assert_eq!(with("exp", json!("9999999999")).err(), Some(Reason::Claims));
        assert_eq!(with("exp", json!(-1)).err(), Some(Reason::Claims));
        assert_eq!(
            with("iat", json!(NOW + 86_400)).err(),
            Some(Reason::IssuedInFuture)
        );
        assert_eq!(with("iat", json!("x")).err(), Some(Reason::Claims));
        assert_eq!(
            with("exp", json!(NOW + 2 * 86_400)).err(),
            Some(Reason::LifetimeTooLong)
        );
        assert!(with("exp", json!((NOW + 300) as f64 + 0.5)).is_ok());
        let mut c = claims();
        c.as_object_mut().unwrap().remove("exp");
        assert_eq!(check(rs(), c).err(), Some(Reason::Claims));
    }

    #[test]
    fn audience_and_issuer_exact() {
        let with = |k: &str, v: Value| {
            let mut c = claims();
            c[k] = v;
            check(rs(), c)
        };
        assert!(with("aud", json!(["other", "https://gw/fhir"])).is_ok());
        for bad in [
            json!([]),
            json!(["other"]),
            json!(123),
            json!([1, "https://gw/fhir"]),
            json!("https://gw/fhir/"),
        ] {
            assert_eq!(with("aud", bad).err(), Some(Reason::Audience));
        }
        let mut c = claims();
        c.as_object_mut().unwrap().remove("aud");
        assert_eq!(check(rs(), c).err(), Some(Reason::Audience));
        for bad in [
            json!("https://idp/"),
            json!("HTTPS://IDP"),
            json!(["https://idp"]),
            json!("https://idp.evil"),
        ] {
            assert_eq!(with("iss", bad).err(), Some(Reason::Issuer));
        }
    }

    #[test]
    fn wrong_typed_smart_claims_reject() {
        for (k, v) in [
            ("patient", json!(1)),
            ("scope", json!(5)),
            ("scope", json!(["a", 1])),
            ("sub", json!({})),
            ("client_id", json!([])),
        ] {
            let mut c = claims();
            c[k] = v;
            assert_eq!(check(rs(), c).err(), Some(Reason::Claims), "{k}");
        }
        let mut c = claims();
        c.as_object_mut().unwrap().remove("scope");
        c["scp"] = json!(["patient/Observation.rs", "launch"]);
        c.as_object_mut().unwrap().remove("client_id");
        c["cid"] = json!("okta-app");
        let p = check(rs(), c).unwrap();
        assert_eq!(p.scopes, vec!["patient/Observation.rs", "launch"]);
        assert_eq!(p.client_id.as_deref(), Some("okta-app"));
    }

    #[test]
    fn required_typ() {
        let mut s = settings();
        s.required_typ = Some("at+jwt".into());
        let ok = tok(
            &json!({"alg":"RS256","typ":"application/AT+JWT"}),
            &claims(),
        );
        assert!(check_claims(&parse(&ok).unwrap(), &s, NOW).is_ok());
        let id_token = tok(&json!({"alg":"RS256","typ":"JWT"}), &claims());
        assert_eq!(
            check_claims(&parse(&id_token).unwrap(), &s, NOW).err(),
            Some(Reason::Type)
        );
    }

    #[test]
    fn encoding_rules() {
        let good = tok(&rs(), &claims());
        let (hp, _) = good.rsplit_once('.').unwrap();
        assert_eq!(parse(&format!("{hp}.")).err(), Some(Reason::Signature));
        assert_eq!(
            parse(&format!("{hp}.c2ln!!!!")).err(),
            Some(Reason::Signature)
        );
        assert_eq!(
            parse(&format!("{hp}.c2ln+/==")).err(),
            Some(Reason::Signature)
        );
        // "c2k" is canonical for "si"; "c2l" sets unused trailing bits, a second spelling.
        assert!(parse(&format!("{hp}.c2k")).is_ok());
        assert_eq!(parse(&format!("{hp}.c2l")).err(), Some(Reason::Signature));
        let dup_h = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","alg":"none"}"#);
        assert_eq!(
            parse(&format!("{dup_h}.{}.c2ln", enc(&claims()))).err(),
            Some(Reason::DuplicateMember)
        );
        let dup_p = URL_SAFE_NO_PAD.encode(br#"{"sub":"a","sub":"b"}"#);
        assert_eq!(
            parse(&format!("{}.{dup_p}.c2ln", enc(&rs()))).err(),
            Some(Reason::DuplicateMember)
        );
        let arr_h = URL_SAFE_NO_PAD.encode(b"[1]");
        assert_eq!(
            parse(&format!("{arr_h}.{}.c2ln", enc(&claims()))).err(),
            Some(Reason::Malformed)
        );
        let bad_utf8 = URL_SAFE_NO_PAD.encode(b"\xff\xfe");
        assert_eq!(
            parse(&format!("{}.{bad_utf8}.c2ln", enc(&rs()))).err(),
            Some(Reason::Malformed)
        );
    }
}
