use super::*;

fn resource(s: &str) -> ResourceScope {
    match parse_scope(s) {
        Ok(SmartScope::Resource(r)) => r,
        other => panic!("{s}: {other:?}"),
    }
}

#[test]
fn v1_maps_to_v2() {
    let cases = [
        ("patient/Observation.read", "patient/Observation.rs"),
        ("user/*.write", "user/*.cud"),
        ("system/Patient.*", "system/Patient.cruds"),
        ("patient/*.read", "patient/*.rs"),
    ];
    for (v1, v2) in cases {
        let a = resource(v1);
        let b = resource(v2);
        assert!(a.v1 && !b.v1, "{v1}");
        assert_eq!(a.permissions, b.permissions, "{v1}");
        assert_eq!(a.to_string(), v2);
    }
}

#[test]
fn v2_letters_must_be_an_ordered_subset() {
    for ok in ["c", "r", "rs", "cruds", "cud", "ds", "us", "crs"] {
        let s = format!("patient/Observation.{ok}");
        assert_eq!(resource(&s).permissions.to_string(), ok);
    }
    for bad in [
        "",
        "sr",
        "dus",
        "rr",
        "crudsx",
        "x",
        "R",
        "READ",
        "read,write",
        "c r",
    ] {
        let s = format!("patient/Observation.{bad}");
        assert!(parse_scope(&s).is_err(), "{s} must not parse");
    }
}

#[test]
fn contexts_types_and_wildcards() {
    assert_eq!(resource("user/*.rs").resource, TypeSelector::All);
    assert_eq!(resource("system/Encounter.r").context, ScopeContext::System);
    for bad in [
        "admin/*.rs",
        "patient/observation.rs",
        "patient/NotAType.rs",
        "patient/Observation",
        "Patient/*.rs",
        "patient/*.rs/extra",
        "/*.rs",
    ] {
        assert!(parse_scope(bad).is_err(), "{bad}");
    }
}

#[test]
fn restrictions_parse_only_on_v2_and_only_enforceable_ones() {
    let r = resource(
        "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
    );
    assert_eq!(r.restriction.map(|r| r.params.len()), Some(1));
    assert_eq!(
        parse_scope("patient/Observation.read?category=laboratory"),
        Err(ScopeError::V1Restriction)
    );
    assert!(matches!(
        parse_scope("patient/Observation.rs?code:in=http://vs"),
        Err(ScopeError::Restriction(_))
    ));
    assert!(matches!(
        parse_scope("patient/Observation.rs?patient.name=x"),
        Err(ScopeError::Restriction(_))
    ));
}

#[test]
fn launch_and_identity_scopes() {
    let set = ScopeSet::parse(
        "launch launch/patient launch/encounter openid fhirUser profile offline_access online_access launch/location",
    );
    assert!(set.launch && set.launch_patient && set.launch_encounter);
    assert!(set.openid && set.fhir_user && set.profile);
    assert!(set.offline_access && set.online_access);
    assert_eq!(set.launch_other, vec!["location".to_owned()]);
    assert!(set.ignored.is_empty());
    assert!(set.resources.is_empty());
}

#[test]
fn unknown_and_malformed_scopes_are_ignored_and_reported() {
    let set = ScopeSet::parse("patient/*.rs admin superuser patient/Observation.sr launch/Patient");
    assert_eq!(set.resources.len(), 1);
    assert_eq!(set.ignored.len(), 4);
    assert!(
        set.ignored
            .iter()
            .any(|i| i.scope == "admin" && i.reason == ScopeError::Unknown)
    );
}

#[test]
fn limits_bound_the_work() {
    let long = format!(
        "patient/Observation.rs?category={}",
        "a".repeat(MAX_SCOPE_LEN)
    );
    assert_eq!(parse_scope(&long), Err(ScopeError::TooLong));
    let many: Vec<String> = (0..MAX_SCOPES + 10).map(|_| "openid".to_owned()).collect();
    let set = ScopeSet::parse(&many.join(" "));
    assert_eq!(set.ignored.len(), 1);
    assert_eq!(
        set.ignored.first().map(|i| &i.reason),
        Some(&ScopeError::TooMany)
    );
}

#[test]
fn duplicates_collapse_and_whitespace_is_any_ascii_space() {
    let set = ScopeSet::parse("  patient/*.rs\tpatient/*.rs\npatient/*.read ");
    // v1 and v2 spellings stay distinct entries (for echoing); their grants are equal.
    assert_eq!(set.resources.len(), 2);
}
