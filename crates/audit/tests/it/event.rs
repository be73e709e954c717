use fhirgate_audit::event::codes;
use fhirgate_audit::{
    Action, AuditEvent, AuditInput, Interaction, Outcome, OutcomeCode, serialize_event,
};
use serde_json::Value;

use crate::support::{input, t0};

/// The event as written to the trail, read back.
fn event(input: &AuditInput, observer: &str) -> AuditEvent {
    serde_json::from_slice(&serialize_event(input, observer).unwrap()).unwrap()
}

fn json(e: &AuditEvent) -> Value {
    serde_json::to_value(e).unwrap()
}

#[test]
fn every_interaction_kind_has_the_balp_action_and_lists_its_patients() {
    let expected = [
        (Interaction::Read, "R"),
        (Interaction::Vread, "R"),
        (Interaction::HistoryInstance, "R"),
        (Interaction::Capabilities, "R"),
        (Interaction::Create, "C"),
        (Interaction::Update, "U"),
        (Interaction::Patch, "U"),
        (Interaction::Delete, "D"),
        (Interaction::SearchType, "E"),
        (Interaction::SearchSystem, "E"),
        (Interaction::HistoryType, "E"),
        (Interaction::HistorySystem, "E"),
        (Interaction::Batch, "E"),
        (Interaction::Transaction, "E"),
        (Interaction::Operation, "E"),
        (Interaction::Unclassified, "E"),
    ];
    assert_eq!(expected.len(), Interaction::ALL.len());
    for (interaction, action) in expected {
        let e = event(&input(1, interaction, &["p1", "p2", "p1"]), "gw");
        let v = json(&e);
        assert_eq!(v["resourceType"], "AuditEvent");
        assert_eq!(v["type"]["system"], codes::AUDIT_EVENT_TYPE);
        assert_eq!(v["type"]["code"], "rest");
        assert_eq!(v["action"], action, "{interaction:?}");
        match interaction.code() {
            Some(code) => {
                assert_eq!(v["subtype"][0]["system"], codes::RESTFUL_INTERACTION);
                assert_eq!(v["subtype"][0]["code"], code);
                assert_eq!(Interaction::from_code(code), Some(interaction));
            }
            None => assert!(v.get("subtype").is_none()),
        }
        // Patients listed once each, in order, as Patient entities.
        assert_eq!(
            e.patients().collect::<Vec<_>>(),
            ["p1", "p2"],
            "{interaction:?}"
        );
        let patient_entities: Vec<&Value> = v["entity"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|en| en["role"]["code"] == "1")
            .collect();
        assert_eq!(patient_entities.len(), 2);
        assert_eq!(patient_entities[0]["what"]["reference"], "Patient/p1");
        assert_eq!(patient_entities[0]["role"]["system"], codes::OBJECT_ROLE);
        assert_eq!(patient_entities[0]["type"]["code"], "1");
    }
}

#[test]
fn agents_source_and_identifiers_follow_balp() {
    let mut i = input(5, Interaction::SearchType, &["p9"]);
    i.query = Some("patient=p9&code=http://loinc.org|1234-5".into());
    let e = event(&i, "fhirgate-eu-1");
    let v = json(&e);
    assert_eq!(v["recorded"], "2026-11-29T10:00:05Z");
    assert_eq!(v["outcome"], "0");
    assert_eq!(v["outcomeDesc"], "200");
    // Client application: network address, client_id, not the requestor when a user is known.
    let client = &v["agent"][0];
    assert_eq!(client["type"]["coding"][0]["code"], codes::SOURCE_ROLE_ID);
    assert_eq!(client["who"]["identifier"]["value"], "app-1");
    assert_eq!(client["who"]["identifier"]["system"], "https://idp.example");
    assert_eq!(client["network"]["address"], "192.0.2.7");
    assert_eq!(client["network"]["type"], "2");
    assert_eq!(client["requestor"], false);
    // User: fhirUser reference, sub identifier, token id as policy, requestor.
    let user = &v["agent"][1];
    assert_eq!(user["type"]["coding"][0]["code"], "IRCP");
    assert_eq!(user["who"]["reference"], "Practitioner/pr-1");
    assert_eq!(user["who"]["identifier"]["value"], "user-1");
    assert_eq!(user["requestor"], true);
    assert_eq!(user["policy"][0], "jti-5");
    assert_eq!(v["source"]["observer"]["display"], "fhirgate-eu-1");
    assert_eq!(v["source"]["type"][0]["code"], "4");
    // The query, base64 per R4 and readable in the description.
    let q = v["entity"]
        .as_array()
        .unwrap()
        .iter()
        .find(|en| en["role"]["code"] == "24")
        .unwrap();
    assert_eq!(
        q["query"],
        "cGF0aWVudD1wOSZjb2RlPWh0dHA6Ly9sb2luYy5vcmd8MTIzNC01"
    );
    assert_eq!(
        q["description"],
        "GET Observation?patient=p9&code=http://loinc.org|1234-5"
    );
    assert_eq!(
        e.query().as_deref(),
        Some("patient=p9&code=http://loinc.org|1234-5")
    );
    // Summaries read the same values back.
    assert_eq!(e.user(), Some("Practitioner/pr-1"));
    assert_eq!(e.subject(), Some("user-1"));
    assert_eq!(e.client_id(), Some("app-1"));
    assert_eq!(e.request_id(), Some("req-5"));
    assert_eq!(e.token_id(), Some("jti-5"));
    assert_eq!(e.resource(), Some("Observation"));
    assert_eq!(e.interaction_code(), "search-type");
    // Round trip through JSON.
    let back: AuditEvent = serde_json::from_value(v).unwrap();
    assert_eq!(back, e);
}

#[test]
fn refused_and_anonymous_requests_are_recorded_as_failures() {
    let mut i = AuditInput::new(t0(), "r-401", "GET", Interaction::Read, 401);
    i.resource_type = Some("Patient".into());
    i.resource_id = Some("p1".into());
    i.outcome = Outcome::new(401).with_issue("login", "no bearer token");
    let e = event(&i, "gw");
    assert_eq!(e.outcome, Some(OutcomeCode::MinorFailure));
    assert_eq!(
        e.outcome_desc.as_deref(),
        Some("401 login: no bearer token")
    );
    assert_eq!(e.user(), None);
    assert_eq!(e.client_id(), None);
    assert_eq!(e.resource(), Some("Patient/p1"));
    assert_eq!(e.action, Some(Action::Read));
    // The client agent is still there (it made the request), as the requestor.
    assert!(e.agent[0].requestor);

    let mut forbidden = input(2, Interaction::Read, &[]);
    forbidden.outcome =
        Outcome::new(403).with_issue("forbidden", "patient p2 is outside the launch context");
    let e = event(&forbidden, "gw");
    assert_eq!(e.outcome, Some(OutcomeCode::MinorFailure));
    assert_eq!(e.patients().count(), 0);

    let mut aborted = input(3, Interaction::SearchType, &["p1"]);
    aborted.aborted = true;
    let e = event(&aborted, "gw");
    assert_eq!(e.outcome, Some(OutcomeCode::SeriousFailure));
    assert!(e.aborted());
    assert!(e.outcome_desc.unwrap().contains("aborted"));

    let upstream = AuditInput::new(t0(), "r-502", "GET", Interaction::Read, 502);
    let e = event(&upstream, "gw");
    assert_eq!(e.outcome, Some(OutcomeCode::SeriousFailure));
}

#[test]
fn operations_and_instance_requests_name_what_was_asked() {
    let mut i = input(1, Interaction::Operation, &["p1"]);
    i.resource_type = Some("Patient".into());
    i.resource_id = Some("p1".into());
    i.operation = Some("everything".into());
    let v = json(&event(&i, "gw"));
    let req = v["entity"]
        .as_array()
        .unwrap()
        .iter()
        .find(|en| en["type"]["code"] == "XrequestId")
        .unwrap();
    assert_eq!(req["what"]["identifier"]["value"], "req-1");
    assert_eq!(
        req["detail"][0]["valueString"],
        "GET Patient/p1/$everything"
    );
}

#[test]
fn every_written_string_reads_back_exactly_whatever_it_holds() {
    let hostile = "a\"b\\c\nd\u{1}e\u{2028}é/</script>";
    let mut i = AuditInput::new(t0(), hostile, hostile, Interaction::Operation, 403);
    i.resource_type = Some(hostile.into());
    i.resource_id = Some(hostile.into());
    i.operation = Some(hostile.into());
    i.query = Some(hostile.into());
    i.outcome = Outcome::new(403).with_issue(hostile, hostile);
    let mut p = fhirgate_audit::AuditPrincipal::new(Some(hostile.into()), Some(hostile.into()));
    p.fhir_user = Some(hostile.into());
    p.issuer = Some(hostile.into());
    p.token_id = Some(hostile.into());
    i.principal = Some(p);
    i.patients = vec![hostile.into()];
    let written = serialize_event(&i, hostile).unwrap();
    assert!(!written.contains(&b'\n'), "one record, one line");
    let e = event(&i, hostile);
    assert_eq!(e.patients().collect::<Vec<_>>(), [hostile]);
    assert_eq!(e.user(), Some(hostile));
    assert_eq!(e.subject(), Some(hostile));
    assert_eq!(e.client_id(), Some(hostile));
    assert_eq!(e.token_id(), Some(hostile));
    assert_eq!(e.request_id(), Some(hostile));
    assert_eq!(e.query().as_deref(), Some(hostile));
    assert_eq!(
        e.source.observer.display.as_deref(),
        Some(hostile),
        "observer"
    );
    assert_eq!(
        e.outcome_desc.as_deref(),
        Some(format!("403 {hostile}: {hostile}").as_str())
    );
}
