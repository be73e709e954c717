use serde_json::json;

use super::*;

const BASES: &[&str] = &["https://gw.example/fhir/", "http://upstream:8080/fhir"];

fn local(rt: ResourceType, id: &str, version: Option<&str>) -> ReferenceTarget {
    ReferenceTarget::Local {
        resource_type: rt,
        id: id.to_owned(),
        version: version.map(str::to_owned),
    }
}

#[test]
fn reference_forms() {
    let cases: Vec<(&str, ReferenceTarget)> = vec![
        ("Patient/p1", local(ResourceType::Patient, "p1", None)),
        (
            "Patient/p1/_history/2",
            local(ResourceType::Patient, "p1", Some("2")),
        ),
        (
            "https://gw.example/fhir/Patient/p1",
            local(ResourceType::Patient, "p1", None),
        ),
        (
            "http://upstream:8080/fhir/Observation/o1/_history/3",
            local(ResourceType::Observation, "o1", Some("3")),
        ),
        ("#c1", ReferenceTarget::Contained("c1".into())),
        (
            "urn:uuid:0a1b",
            ReferenceTarget::Urn("urn:uuid:0a1b".into()),
        ),
        (
            "https://other.example/fhir/Patient/p1",
            ReferenceTarget::Foreign {
                url: "https://other.example/fhir/Patient/p1".into(),
                resource_type: Some(ResourceType::Patient),
            },
        ),
        // A base that is only a string prefix of the URL is not our base.
        (
            "https://gw.example/fhir2/Patient/p1",
            ReferenceTarget::Foreign {
                url: "https://gw.example/fhir2/Patient/p1".into(),
                resource_type: Some(ResourceType::Patient),
            },
        ),
        ("patient/p1", ReferenceTarget::Invalid),
        ("Patient/p1/extra", ReferenceTarget::Invalid),
        ("Patient/p 1", ReferenceTarget::Invalid),
        ("Patient/", ReferenceTarget::Invalid),
        ("Patient", ReferenceTarget::Invalid),
        ("", ReferenceTarget::Invalid),
        ("Patient/p1?x=1", ReferenceTarget::Invalid),
    ];
    for (input, expected) in cases {
        assert_eq!(parse_reference(input, BASES), expected, "{input}");
    }
}

#[test]
fn search_values_take_a_bare_type() {
    assert_eq!(
        parse_search_reference("p1", Some(ResourceType::Patient), BASES),
        local(ResourceType::Patient, "p1", None)
    );
    assert_eq!(
        parse_search_reference("p1", None, BASES),
        ReferenceTarget::Invalid
    );
    assert_eq!(
        parse_search_reference("Group/g1", Some(ResourceType::Patient), BASES),
        local(ResourceType::Group, "g1", None)
    );
    assert_eq!(
        parse_search_reference("https://gw.example/fhir/Patient/p2", None, BASES),
        local(ResourceType::Patient, "p2", None)
    );
}

#[test]
fn observation_belongs_to_its_subject_not_its_performer() {
    let obs = json!({
        "resourceType": "Observation", "id": "o1",
        "subject": {"reference": "Patient/p1"},
        "performer": [{"reference": "Patient/p2"}, {"reference": "Practitioner/d1"}]
    });
    let links = patient_links(&obs, BASES);
    assert!(links.belongs_only_to("p1"));
    assert!(!links.belongs_only_to("p2"));
    assert_eq!(links.secondary.iter().collect::<Vec<_>>(), vec!["p2"]);
}

#[test]
fn absolute_urls_under_our_base_count_and_foreign_ones_do_not() {
    let ours = json!({"resourceType": "Condition",
        "subject": {"reference": "https://gw.example/fhir/Patient/p1"}});
    assert!(patient_links(&ours, BASES).belongs_only_to("p1"));
    let foreign = json!({"resourceType": "Condition",
        "subject": {"reference": "https://evil.example/fhir/Patient/p1"}});
    let links = patient_links(&foreign, BASES);
    assert!(!links.belongs_only_to("p1"));
    assert_eq!(links.unresolved_primary, 1);
}

#[test]
fn contained_and_logical_patients_are_unresolved() {
    let contained = json!({"resourceType": "Observation",
        "contained": [{"resourceType": "Patient", "id": "c"}],
        "subject": {"reference": "#c"}});
    let links = patient_links(&contained, BASES);
    assert!(!links.belongs_only_to("c"));
    assert_eq!(links.unresolved_primary, 1);
    let logical = json!({"resourceType": "Observation",
        "subject": {"type": "Patient", "identifier": {"value": "123"}}});
    assert_eq!(patient_links(&logical, BASES).unresolved_primary, 1);
}

#[test]
fn group_subject_is_not_a_patient() {
    let obs = json!({"resourceType": "Observation", "subject": {"reference": "Group/p1"}});
    let links = patient_links(&obs, BASES);
    assert!(links.primary.is_empty());
    assert!(!links.belongs_only_to("p1"));
}

#[test]
fn two_patients_on_the_anchor_belong_to_neither_alone() {
    let appt = json!({"resourceType": "Appointment", "participant": [
        {"actor": {"reference": "Patient/p1"}},
        {"actor": {"reference": "Patient/p2"}},
        {"actor": {"reference": "Practitioner/d"}}]});
    let links = patient_links(&appt, BASES);
    assert_eq!(links.primary.len(), 2);
    assert!(!links.belongs_only_to("p1"));
    let own = json!({"resourceType": "Appointment", "participant": [
        {"actor": {"reference": "Patient/p1"}},
        {"actor": {"reference": "Practitioner/d"}}]});
    assert!(patient_links(&own, BASES).belongs_only_to("p1"));
}

#[test]
fn patient_is_its_own_id_and_link_is_secondary() {
    let p = json!({"resourceType": "Patient", "id": "p1",
        "link": [{"other": {"reference": "Patient/p2"}, "type": "seealso"}]});
    let links = patient_links(&p, BASES);
    assert!(links.belongs_only_to("p1"));
    assert!(links.secondary.contains("p2"));
    let no_id = json!({"resourceType": "Patient"});
    assert!(!patient_links(&no_id, BASES).belongs_only_to("p1"));
}

#[test]
fn nested_paths_and_non_members() {
    let audit = json!({"resourceType": "AuditEvent",
        "agent": [{"who": {"reference": "Practitioner/x"}}],
        "entity": [{"what": {"reference": "Patient/p1"}}]});
    assert!(patient_links(&audit, BASES).belongs_only_to("p1"));
    let med = json!({"resourceType": "Medication", "id": "m"});
    let links = patient_links(&med, BASES);
    assert!(!links.member);
    assert_eq!(links.resource_type, Some(ResourceType::Medication));
    let junk = json!({"resourceType": "NotAType"});
    assert_eq!(patient_links(&junk, BASES), PatientLinks::default());
}

#[test]
fn collect_references_walks_contained_and_is_bounded() {
    let doc = json!({"resourceType": "Observation",
        "contained": [{"resourceType": "Patient", "id": "c",
            "generalPractitioner": [{"reference": "Practitioner/1"}]}],
        "subject": {"reference": "#c"}});
    let mut refs = collect_references(&doc);
    refs.sort();
    assert_eq!(refs, vec!["#c", "Practitioner/1"]);

    let mut deep = json!({"reference": "deepest"});
    for _ in 0..200 {
        deep = json!({ "x": deep });
    }
    assert!(collect_references(&deep).is_empty());
}

#[test]
fn elements_at_descends_through_arrays_in_document_order() {
    let encounter = json!({"participant": [
        {"individual": [{"reference": "a"}, {"reference": "b"}]},
        {"individual": {"reference": "c"}},
        {"other": 1},
        [{"individual": {"reference": "not an element: arrays are not descended twice"}}],
    ], "subject": {"reference": "d"}});
    let found: Vec<&str> = elements_at(&encounter, "participant.individual")
        .into_iter()
        .filter_map(|v| v.get("reference").and_then(Value::as_str))
        .collect();
    assert_eq!(found, ["a", "b", "c"]);
    assert_eq!(elements_at(&encounter, "subject").len(), 1);
    assert!(elements_at(&encounter, "subject.reference.x").is_empty());
    assert!(elements_at(&json!([{"subject": 1}]), "subject").is_empty());
}

#[test]
fn scheme_separator_is_found_anywhere() {
    for reference in [
        "",
        ":",
        "://",
        "a://b",
        "Patient/p1",
        "urn:uuid:1",
        ":/",
        "a:/b//",
        "x://",
        "é://",
    ] {
        assert_eq!(
            has_scheme_separator(reference),
            reference.contains("://"),
            "{reference}"
        );
    }
}

/// The split of `Type/id[/_history/version]` as it was written with `str::split`.
fn parse_relative_by_split(reference: &str) -> ReferenceTarget {
    let mut parts = reference.split('/');
    let (Some(rt), Some(id)) = (parts.next(), parts.next()) else {
        return ReferenceTarget::Invalid;
    };
    let version = match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => None,
        (Some("_history"), Some(v), None) if is_valid_id(v) => Some(v.to_owned()),
        _ => return ReferenceTarget::Invalid,
    };
    match ResourceType::from_name(rt) {
        Some(resource_type) if is_valid_id(id) => ReferenceTarget::Local {
            resource_type,
            id: id.to_owned(),
            version,
        },
        _ => ReferenceTarget::Invalid,
    }
}

#[test]
fn relative_references_split_as_before() {
    let parts = ["Patient", "p1", "_history", "2", "/", "", "a b", "-", "é"];
    let mut inputs = vec![String::new()];
    for _ in 0..5 {
        let longer: Vec<String> = inputs
            .iter()
            .flat_map(|base| parts.iter().map(move |p| format!("{base}{p}")))
            .collect();
        for reference in &longer {
            assert_eq!(
                parse_relative(reference),
                parse_relative_by_split(reference),
                "{reference}"
            );
        }
        inputs = longer;
    }
}
