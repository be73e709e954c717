//! The classification table: what every FHIR REST request shape becomes, and every
//! malformed request the gateway refuses before authorization (security.md F14–F17).

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::panic)]

use fhirgate_fhir::ResourceType as RT;
use fhirgate_fhir::{ClassifyError, Interaction as I, OperationLevel, classify};
use http::{HeaderMap, HeaderValue, Method};
use pretty_assertions::assert_eq;

/// What a row expects.
enum Want {
    Ok(I),
    Path,
    Type,
    Id,
    Query,
    Override,
    PathOverride,
    NotAllowed,
}

struct Case {
    method: &'static str,
    path: &'static str,
    query: Option<&'static str>,
    headers: &'static [(&'static str, &'static str)],
    body: Option<&'static str>,
    want: Want,
}

const fn c(method: &'static str, path: &'static str, want: Want) -> Case {
    Case {
        method,
        path,
        query: None,
        headers: &[],
        body: None,
        want,
    }
}

const fn q(method: &'static str, path: &'static str, query: &'static str, want: Want) -> Case {
    Case {
        method,
        path,
        query: Some(query),
        headers: &[],
        body: None,
        want,
    }
}

fn read(t: RT, id: &str) -> Want {
    Want::Ok(I::Read {
        resource_type: t,
        id: id.into(),
    })
}

fn op(name: &str, level: OperationLevel) -> Want {
    Want::Ok(I::Operation {
        name: name.into(),
        level,
    })
}

fn compartment(c: RT, id: &str, target: Option<RT>) -> Want {
    Want::Ok(I::SearchCompartment {
        compartment: c,
        id: id.into(),
        target,
    })
}

fn table() -> Vec<Case> {
    use Want::*;
    let search = |t| Ok(I::SearchType { resource_type: t });
    vec![
        // --- every interaction ---
        c("GET", "/metadata", Ok(I::Capabilities)),
        c("HEAD", "/metadata", Ok(I::Capabilities)),
        c("GET", "/Patient/123", read(RT::Patient, "123")),
        c("HEAD", "/Patient/P2", read(RT::Patient, "P2")),
        c("GET", "/Observation/a-b.c", read(RT::Observation, "a-b.c")),
        c(
            "GET",
            "/Patient/123/_history/2",
            Ok(I::Vread {
                resource_type: RT::Patient,
                id: "123".into(),
                version: "2".into(),
            }),
        ),
        c(
            "PUT",
            "/Patient/123",
            Ok(I::Update {
                resource_type: RT::Patient,
                id: "123".into(),
            }),
        ),
        q(
            "PUT",
            "/Patient",
            "identifier=x",
            Ok(I::ConditionalUpdate {
                resource_type: RT::Patient,
            }),
        ),
        c(
            "PATCH",
            "/Observation/o1",
            Ok(I::Patch {
                resource_type: RT::Observation,
                id: "o1".into(),
            }),
        ),
        q(
            "PATCH",
            "/Observation",
            "code=x",
            Ok(I::ConditionalPatch {
                resource_type: RT::Observation,
            }),
        ),
        c(
            "DELETE",
            "/Observation/o1",
            Ok(I::Delete {
                resource_type: RT::Observation,
                id: "o1".into(),
            }),
        ),
        q(
            "DELETE",
            "/Observation",
            "code=x",
            Ok(I::ConditionalDelete {
                resource_type: RT::Observation,
            }),
        ),
        c(
            "POST",
            "/Observation",
            Ok(I::Create {
                resource_type: RT::Observation,
                conditional: None,
            }),
        ),
        Case {
            headers: &[("If-None-Exist", "identifier=http://x|1")],
            ..c(
                "POST",
                "/Patient",
                Ok(I::Create {
                    resource_type: RT::Patient,
                    conditional: Some("identifier=http://x|1".into()),
                }),
            )
        },
        Case {
            headers: &[("If-None-Exist", "a=%zz")],
            ..c("POST", "/Patient", Query)
        },
        Case {
            headers: &[("If-None-Exist", "")],
            ..c("POST", "/Patient", Query)
        },
        c("GET", "/Observation", search(RT::Observation)),
        q("GET", "/Observation", "patient=P1", search(RT::Observation)),
        q(
            "HEAD",
            "/Observation",
            "patient=P1",
            search(RT::Observation),
        ),
        c("POST", "/Observation/_search", search(RT::Observation)),
        Case {
            body: Some("patient=P2"),
            ..c("POST", "/Observation/_search", search(RT::Observation))
        },
        q("GET", "/", "_type=Patient", Ok(I::SearchSystem)),
        c("GET", "/", Ok(I::SearchSystem)),
        c("POST", "/_search", Ok(I::SearchSystem)),
        c(
            "GET",
            "/Patient/P1/Observation",
            compartment(RT::Patient, "P1", Some(RT::Observation)),
        ),
        c("GET", "/Patient/P1/*", compartment(RT::Patient, "P1", None)),
        c(
            "POST",
            "/Patient/P1/_search",
            compartment(RT::Patient, "P1", None),
        ),
        c(
            "POST",
            "/Patient/P1/Condition/_search",
            compartment(RT::Patient, "P1", Some(RT::Condition)),
        ),
        c(
            "GET",
            "/Encounter/e1/Observation",
            compartment(RT::Encounter, "e1", Some(RT::Observation)),
        ),
        c(
            "GET",
            "/Practitioner/d1/Patient",
            compartment(RT::Practitioner, "d1", Some(RT::Patient)),
        ),
        c(
            "GET",
            "/RelatedPerson/r1/*",
            compartment(RT::RelatedPerson, "r1", None),
        ),
        c(
            "GET",
            "/Device/dev1/Observation",
            compartment(RT::Device, "dev1", Some(RT::Observation)),
        ),
        c(
            "GET",
            "/Patient/123/_history",
            Ok(I::HistoryInstance {
                resource_type: RT::Patient,
                id: "123".into(),
            }),
        ),
        c(
            "GET",
            "/Observation/_history",
            Ok(I::HistoryType {
                resource_type: RT::Observation,
            }),
        ),
        c("GET", "/_history", Ok(I::HistorySystem)),
        q(
            "GET",
            "/_history",
            "_since=2020-01-01",
            Ok(I::HistorySystem),
        ),
        c("POST", "/", Ok(I::BatchOrTransaction)),
        c("GET", "/$export", op("export", OperationLevel::System)),
        c("POST", "/$graphql", op("graphql", OperationLevel::System)),
        c(
            "GET",
            "/Patient/$everything",
            op("everything", OperationLevel::Type(RT::Patient)),
        ),
        c(
            "POST",
            "/ValueSet/$validate-code",
            op("validate-code", OperationLevel::Type(RT::ValueSet)),
        ),
        c(
            "GET",
            "/Patient/P1/$everything",
            op(
                "everything",
                OperationLevel::Instance(RT::Patient, "P1".into()),
            ),
        ),
        c(
            "POST",
            "/Patient/P1/$meta-add",
            op(
                "meta-add",
                OperationLevel::Instance(RT::Patient, "P1".into()),
            ),
        ),
        // --- path tricks (F14) ---
        c("GET", "/Patient/P2%2F", Path),
        c("GET", "/Patient/P2%2f", Path),
        c("GET", "/Observation/x%2F..%2F..%2FPatient%2FP2", Path),
        c("GET", "/Patient/%252F", Path),
        c("GET", "/Patient/%2E%2E", Path),
        c("GET", "/Patient/%2e", Path),
        c("GET", "/Patient/%41", Path),
        c("GET", "/./Patient/P2", Path),
        c("GET", "/Patient/./P2", Path),
        c("GET", "/Patient/../Patient/P2", Path),
        c("GET", "/Patient/P1/..", Path),
        c("GET", "//Patient/P2", Path),
        c("GET", "/Patient//P2", Path),
        c("GET", "/Patient/P2/", Path),
        c("GET", "/Patient\\P2", Path),
        c("GET", "/Patient/P2%5C", Path),
        c("GET", "/patient/P2", Type),
        c("GET", "/PATIENT/P2", Type),
        c("GET", "/Foo/1", Type),
        c("GET", "/SubscriptionStatus/1", Type),
        c("GET", "/Patient/P2.", Id),
        c("GET", "/Patient/.P2", Id),
        c("GET", "/Patient/a..b", Id),
        c("GET", "/Patient/P2;x=y", Path),
        c("GET", "/Patient;x=y/P2", Path),
        c("GET", "/Patient/P2%3Bx=y", Path),
        c("GET", "/Patient/P2%00", Path),
        c("GET", "/Patient/P2\0", Path),
        c("GET", "/Patient/P2\t", Path),
        c("GET", "/Patient/P2#frag", Path),
        c("GET", "/Patient/P2?x=1", Path),
        c("GET", "Patient/P2", Path),
        c("GET", "", Path),
        c("GET", "/Patient/P2 x", Path),
        c("GET", "/Patient/é", Path),
        // --- bad ids ---
        c("GET", "/Patient/a_b", Id),
        c("GET", "/Patient/*", Id),
        c(
            "GET",
            "/Patient/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            Id,
        ),
        c("GET", "/Patient/1/_history/v_1", Id),
        // --- unknown shapes ---
        c("GET", "/Observation/1/Patient", Path),
        c("GET", "/Patient/1/Foo", Type),
        c("GET", "/Patient/1/_history/2/x", Path),
        c("GET", "/Patient/1/_history/2/x/y", Path),
        c("GET", "/Patient/1/_search/x", Path),
        c("GET", "/Patient/$", Path),
        c("GET", "/Patient/$every%20thing", Path),
        c("GET", "/Patient/1/$a.b", Path),
        c("GET", "/_foo", Type),
        c("GET", "/Patient/_foo", Id),
        c("GET", "/_history/x", Type),
        c("GET", "/_search/x", Type),
        c("GET", "/Patient/_history/1", Id),
        c("GET", "/Patient/1/_history/", Path),
        c("GET", "/metadata/x", Type),
        c("GET", "/Patient/P1/*/x", Path),
        // --- methods (F15, F16) ---
        c("TRACE", "/Patient/P2", NotAllowed),
        c("CONNECT", "/Patient/P2", NotAllowed),
        c("OPTIONS", "/Patient/P2", NotAllowed),
        c("PROPFIND", "/Patient/P2", NotAllowed),
        c("POST", "/Patient/P1", NotAllowed),
        c("GET", "/_search", NotAllowed),
        c("GET", "/Patient/_search", NotAllowed),
        c("PUT", "/metadata", NotAllowed),
        c("DELETE", "/", NotAllowed),
        c("DELETE", "/Patient", NotAllowed),
        c("PUT", "/Patient", NotAllowed),
        c("PATCH", "/Patient", NotAllowed),
        c("POST", "/_history", NotAllowed),
        c("DELETE", "/Patient/1/_history/2", NotAllowed),
        c("DELETE", "/Patient/$everything", NotAllowed),
        c("POST", "/Patient/P1/Observation", NotAllowed),
        Case {
            headers: &[("X-HTTP-Method-Override", "DELETE")],
            ..c("POST", "/Patient/P1", Override)
        },
        Case {
            headers: &[("X-HTTP-Method", "DELETE")],
            ..c("GET", "/Patient/P1", Override)
        },
        Case {
            headers: &[("x-method-override", "PUT")],
            ..c("POST", "/Patient", Override)
        },
        q("POST", "/Patient/P1", "_method=DELETE", Override),
        Case {
            headers: &[("X-Original-URL", "/Patient/P2")],
            ..c("GET", "/Patient/P1", PathOverride)
        },
        Case {
            headers: &[("X-Rewrite-URL", "/Patient/P2")],
            ..c("GET", "/Patient/P1", PathOverride)
        },
        q("GET", "/Patient", "name=x&_method=DELETE", Override),
        Case {
            body: Some("_method=DELETE"),
            ..c("POST", "/Patient/_search", Override)
        },
        // --- queries (F17) ---
        q("GET", "/Patient", "name=%zz", Query),
        q("GET", "/Patient", "name=%00", Query),
        q("GET", "/Patient", "name=a#b", Query),
        q("GET", "/Patient", "=x", Query),
        q("GET", "/Observation", "code=x;patient=P2", Query),
        q(
            "GET",
            "/Observation",
            "code=x%3Bpatient=P2",
            search(RT::Observation),
        ),
        Case {
            body: Some("code=x;patient=P2"),
            ..c("POST", "/Observation/_search", Query)
        },
        Case {
            body: Some("name=%FF"),
            ..c("POST", "/Patient/_search", Query)
        },
    ]
}

fn run(case: &Case) -> Result<fhirgate_fhir::FhirRequest, ClassifyError> {
    let method = Method::from_bytes(case.method.as_bytes()).unwrap();
    let mut headers = HeaderMap::new();
    for (k, v) in case.headers {
        headers.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_static(v),
        );
    }
    classify(
        &method,
        case.path,
        case.query,
        &headers,
        case.body.map(str::as_bytes),
    )
}

#[test]
fn classification_table() {
    let cases = table();
    assert!(cases.len() >= 60, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let got = run(case);
        let ok = match (&case.want, &got) {
            (Want::Ok(want), Ok(r)) => {
                // The forwarded path is the classified one, byte for byte.
                want == &r.interaction && r.path == case.path && r.method.as_str() == case.method
            }
            (Want::Path, Err(ClassifyError::InvalidPath(_)))
            | (Want::Type, Err(ClassifyError::UnknownResourceType(_)))
            | (Want::Id, Err(ClassifyError::InvalidId(_)))
            | (Want::Query, Err(ClassifyError::InvalidQuery(_)))
            | (Want::Override, Err(ClassifyError::MethodOverride(_)))
            | (Want::PathOverride, Err(ClassifyError::PathOverride(_)))
            | (Want::NotAllowed, Err(ClassifyError::MethodNotAllowed { .. })) => true,
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{} {} ?{:?} → {:?}",
                case.method, case.path, case.query, got
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn post_search_combines_url_and_body_params_in_order() {
    let r = classify(
        &Method::POST,
        "/Observation/_search",
        Some("code=x&patient=P1"),
        &HeaderMap::new(),
        Some(b"patient=P2&date=ge2020"),
    )
    .unwrap();
    let names: Vec<_> = r.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["code", "patient", "patient", "date"]);
    assert_eq!(
        r.params.values_of("patient").collect::<Vec<_>>(),
        ["P1", "P2"]
    );
}

#[test]
fn form_body_is_ignored_outside_post_search() {
    let r = classify(
        &Method::POST,
        "/Observation",
        None,
        &HeaderMap::new(),
        Some(b"patient=P2"),
    )
    .unwrap();
    assert!(r.params.is_empty());
}

#[test]
fn thousand_params_are_accepted_and_one_more_refused() {
    let ok = vec!["a=1"; 1000].join("&");
    assert!(classify(&Method::GET, "/Patient", Some(&ok), &HeaderMap::new(), None).is_ok());
    let too_many = vec!["a=1"; 1001].join("&");
    assert!(matches!(
        classify(
            &Method::GET,
            "/Patient",
            Some(&too_many),
            &HeaderMap::new(),
            None
        ),
        Err(ClassifyError::InvalidQuery(_))
    ));
    // Split between URL and body, the cap still holds.
    let half = vec!["a=1"; 600].join("&");
    assert!(matches!(
        classify(
            &Method::POST,
            "/Patient/_search",
            Some(&half),
            &HeaderMap::new(),
            Some(half.as_bytes())
        ),
        Err(ClassifyError::InvalidQuery(_))
    ));
}

#[test]
fn every_resource_type_reads_and_lower_case_never_does() {
    for t in fhirgate_fhir::resource_type::ALL {
        let path = format!("/{t}/x1");
        let r = classify(&Method::GET, &path, None, &HeaderMap::new(), None).unwrap();
        assert_eq!(
            r.interaction,
            I::Read {
                resource_type: *t,
                id: "x1".into()
            }
        );
        let lower = format!("/{}/x1", t.as_str().to_ascii_lowercase());
        assert!(classify(&Method::GET, &lower, None, &HeaderMap::new(), None).is_err());
    }
}

#[test]
fn errors_become_operation_outcomes() {
    let err = classify(&Method::GET, "/patient/P2", None, &HeaderMap::new(), None).unwrap_err();
    assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
    let oo = err.to_outcome().to_json();
    assert_eq!(oo["resourceType"], "OperationOutcome");
    assert_eq!(oo["issue"][0]["code"], "invalid");
    let err = classify(&Method::TRACE, "/Patient/P2", None, &HeaderMap::new(), None).unwrap_err();
    assert_eq!(err.status(), http::StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        err.to_outcome().to_json()["issue"][0]["code"],
        "not-supported"
    );
}
