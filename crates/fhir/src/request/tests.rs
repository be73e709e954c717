use super::*;

#[test]
fn errors_map_to_status_and_issue_code() {
    let e = ClassifyError::InvalidPath("x".into());
    assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
    assert_eq!(e.issue_type(), IssueType::Invalid);
    let e = ClassifyError::MethodNotAllowed {
        method: "TRACE".into(),
        path: "/".into(),
    };
    assert_eq!(e.status(), http::StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(e.issue_type(), IssueType::NotSupported);
    let json = e.to_outcome().to_json();
    assert_eq!(json["issue"][0]["code"], "not-supported");
    assert_eq!(
        json["issue"][0]["diagnostics"],
        "TRACE is not supported on /"
    );
}

#[test]
fn long_paths_are_truncated_in_messages() {
    let long = format!("/{}", "A".repeat(1000));
    let e = classify(
        &http::Method::GET,
        &long,
        None,
        &http::HeaderMap::new(),
        None,
    );
    let Err(err) = e else {
        panic!("accepted {long}");
    };
    assert!(err.to_string().len() < 300, "{err}");
}

#[test]
fn path_and_query_is_what_goes_upstream() {
    let r = classify(
        &http::Method::GET,
        "/Observation",
        Some("patient=P1&code=a%2Cb"),
        &http::HeaderMap::new(),
        None,
    );
    let Ok(r) = r else { panic!("{r:?}") };
    assert_eq!(r.path_and_query(), "/Observation?patient=P1&code=a%2Cb");
    assert!(r.is_read_only());
    assert_eq!(r.interaction.label(), "search-type");
    assert_eq!(
        r.interaction.resource_type(),
        Some(ResourceType::Observation)
    );
    assert_eq!(r.interaction.id(), None);
}

#[test]
fn issue_codes_per_error_kind() {
    let cases = [
        (ClassifyError::InvalidPath("x".into()), IssueType::Invalid),
        (
            ClassifyError::UnknownResourceType("x".into()),
            IssueType::Invalid,
        ),
        (ClassifyError::InvalidId("x".into()), IssueType::Value),
        (
            ClassifyError::InvalidQuery("x".into()),
            IssueType::Structure,
        ),
        (
            ClassifyError::MethodOverride("x".into()),
            IssueType::Invalid,
        ),
        (
            ClassifyError::InvalidEntry("x".into()),
            IssueType::Structure,
        ),
    ];
    for (err, code) in cases {
        assert_eq!(err.issue_type(), code, "{err:?}");
        assert_eq!(err.status(), http::StatusCode::BAD_REQUEST, "{err:?}");
    }
}
