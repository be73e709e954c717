//! SMART discovery, reachable without a token: `{base}/.well-known/smart-configuration` is
//! answered from config, and the upstream's `/metadata` gets the SMART `oauth-uris` security
//! extension naming the same endpoints (SMART App Launch, "Conformance").

use axum::body::Body;
use fhirgate_fhir::FHIR_JSON;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use serde_json::{Map, Value, json};

use crate::authorize::body::{CollectError, collect};
use crate::error::GatewayError;
use crate::security::Security;

pub(crate) const WELL_KNOWN: &str = "/.well-known/smart-configuration";
const OAUTH_URIS: &str = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris";
const SECURITY_SERVICE: &str = "http://terminology.hl7.org/CodeSystem/restful-security-service";

/// SMART document keys and the `oauth-uris` extension names they become.
const ENDPOINTS: [(&str, &str); 6] = [
    ("authorization_endpoint", "authorize"),
    ("token_endpoint", "token"),
    ("registration_endpoint", "register"),
    ("management_endpoint", "manage"),
    ("introspection_endpoint", "introspect"),
    ("revocation_endpoint", "revoke"),
];

/// The answer for `GET|HEAD {base}/.well-known/smart-configuration`, if this is that request.
pub(crate) fn serve(
    security: &Security,
    method: &Method,
    path_below_base: &str,
) -> Option<Result<Response<Body>, GatewayError>> {
    if path_below_base != WELL_KNOWN || !(method == Method::GET || method == Method::HEAD) {
        return None;
    }
    let Some(document) = &security.smart_document else {
        return Some(Err(GatewayError::RouteNotFound));
    };
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(document.clone())
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(document.len()));
    // Browser apps read it before they have any token or session.
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    Some(Ok(response))
}

/// Before forwarding `/metadata`: ask for an uncompressed body so it can be amended.
pub(crate) fn prepare_request(security: &Security, headers: &mut HeaderMap) {
    if security.smart_value.is_some() {
        headers.remove(header::ACCEPT_ENCODING);
    }
}

/// Add the SMART security extension to a successful JSON CapabilityStatement. Statements
/// larger than `verify_buffer_max` are refused (502) rather than passed on without it.
pub(crate) async fn amend_metadata(
    security: &Security,
    response: Response<Body>,
) -> Result<Response<Body>, GatewayError> {
    let Some(smart) = &security.smart_value else {
        return Ok(response);
    };
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    let encoded = response.headers().contains_key(header::CONTENT_ENCODING);
    if !response.status().is_success() || !json || encoded {
        return Ok(response);
    }
    let (mut parts, body) = response.into_parts();
    let max = security.settings.verify_buffer_max;
    let bytes = collect(body, max as u64).await.map_err(|e| match e {
        CollectError::TooLarge => GatewayError::VerifyTooLarge { limit: max },
        CollectError::Read(err) => GatewayError::UpstreamUnavailable(err),
    })?;
    let Ok(mut statement) = serde_json::from_slice::<Value>(&bytes) else {
        return Ok(Response::from_parts(parts, Body::from(bytes)));
    };
    add_security(&mut statement, smart);
    rewrite_implementation_url(&mut statement, &security.upstream_base, &security.realm);
    let out = serde_json::to_vec(&statement).map_err(|_| GatewayError::Internal)?;
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(out.len()));
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    parts.headers.remove(header::ETAG);
    if parts.status != StatusCode::OK {
        parts.status = StatusCode::OK;
    }
    Ok(Response::from_parts(parts, Body::from(out)))
}

/// `implementation.url` names the upstream's internal base, which clients cannot reach and
/// should not learn; the statement describes the public base, so it is rewritten to it.
pub(crate) fn rewrite_implementation_url(statement: &mut Value, upstream: &str, public: &str) {
    let Some(url) = statement.pointer_mut("/implementation/url") else {
        return;
    };
    let Some(rest) = url.as_str().and_then(|u| u.strip_prefix(upstream)) else {
        return;
    };
    // Whole path segments only: `http://up/fhir2` is not below `http://up/fhir`.
    if rest.is_empty() || rest.starts_with(['/', '?', '#']) {
        *url = Value::String(format!("{public}{rest}"));
    }
}

/// Put the `oauth-uris` extension (replacing any the upstream announced) and the
/// `SMART-on-FHIR` service into `rest[0].security`.
pub(crate) fn add_security(statement: &mut Value, smart: &Value) {
    if statement.get("resourceType").and_then(Value::as_str) != Some("CapabilityStatement") {
        return;
    }
    let uris: Vec<Value> = ENDPOINTS
        .iter()
        .filter_map(|(key, name)| {
            smart
                .get(key)
                .and_then(Value::as_str)
                .map(|uri| json!({"url": name, "valueUri": uri}))
        })
        .collect();
    let Some(object) = statement.as_object_mut() else {
        return;
    };
    let rest = object.entry("rest").or_insert_with(|| json!([]));
    let Some(rest) = rest.as_array_mut() else {
        return;
    };
    if rest.is_empty() {
        rest.push(json!({"mode": "server"}));
    }
    let Some(server) = rest.first_mut().and_then(Value::as_object_mut) else {
        return;
    };
    let security = server
        .entry("security")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(security) = security.as_object_mut() else {
        return;
    };
    let extensions = security.entry("extension").or_insert_with(|| json!([]));
    if let Some(list) = extensions.as_array_mut() {
        list.retain(|e| e.get("url").and_then(Value::as_str) != Some(OAUTH_URIS));
        list.push(json!({"url": OAUTH_URIS, "extension": uris}));
    }
    let services = security.entry("service").or_insert_with(|| json!([]));
    if let Some(list) = services.as_array_mut() {
        let present = list
            .iter()
            .any(|s| s.pointer("/coding/0/code").and_then(Value::as_str) == Some("SMART-on-FHIR"));
        if !present {
            list.push(json!({"coding": [{"system": SECURITY_SERVICE, "code": "SMART-on-FHIR"}]}));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_uris_replace_the_upstream_ones() {
        let mut cs = json!({"resourceType": "CapabilityStatement", "rest": [{"mode": "server",
            "security": {"extension": [{"url": OAUTH_URIS, "extension": [{"url": "token", "valueUri": "http://old"}]}]}}]});
        let smart = json!({"token_endpoint": "https://as/token", "authorization_endpoint": "https://as/authorize"});
        add_security(&mut cs, &smart);
        let ext = &cs["rest"][0]["security"]["extension"];
        assert_eq!(ext.as_array().unwrap().len(), 1);
        assert_eq!(ext[0]["extension"][0]["url"], "authorize");
        assert_eq!(ext[0]["extension"][1]["valueUri"], "https://as/token");
        assert_eq!(
            cs["rest"][0]["security"]["service"][0]["coding"][0]["code"],
            "SMART-on-FHIR"
        );
    }

    #[test]
    fn implementation_url_is_rewritten_to_the_public_base() {
        let mut cs = json!({"resourceType": "CapabilityStatement",
            "implementation": {"description": "x", "url": "http://10.0.0.5:8080/fhir"}});
        rewrite_implementation_url(
            &mut cs,
            "http://10.0.0.5:8080/fhir",
            "https://fhir.example.org/fhir",
        );
        assert_eq!(cs["implementation"]["url"], "https://fhir.example.org/fhir");
        let mut other = json!({"implementation": {"url": "http://10.0.0.5:8080/fhir2"}});
        rewrite_implementation_url(
            &mut other,
            "http://10.0.0.5:8080/fhir",
            "https://fhir.example.org/fhir",
        );
        assert_eq!(other["implementation"]["url"], "http://10.0.0.5:8080/fhir2");
    }

    #[test]
    fn other_resources_are_left_alone() {
        let mut patient = json!({"resourceType": "Patient", "id": "p"});
        add_security(&mut patient, &json!({"token_endpoint": "x"}));
        assert_eq!(patient, json!({"resourceType": "Patient", "id": "p"}));
    }
}
