use super::*;
use crate::outcome::IssueType;
use crate::request::OperationLevel;
use crate::resource_type::ResourceType;

fn tx(entries: Value) -> Value {
    json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries })
}

#[test]
fn reads_bundle_type() {
    assert_eq!(
        bundle_type(&json!({"resourceType": "Bundle", "type": "batch"})),
        Ok(BundleType::Batch)
    );
    assert_eq!(
        bundle_type(&json!({"resourceType": "Bundle", "type": "Batch"})),
        Err(BundleError::MissingType)
    );
    assert_eq!(
        bundle_type(&json!({"resourceType": "Patient", "type": "batch"})),
        Err(BundleError::NotABundle)
    );
    assert_eq!(bundle_type(&json!([1])), Err(BundleError::NotABundle));
}

#[test]
fn classifies_each_entry_like_a_request_of_its_own() {
    let bundle = tx(json!([
        {"request": {"method": "GET", "url": "Patient/P1"}},
        {"request": {"method": "GET", "url": "Observation?patient=P2&code=a,b"}},
        {"request": {"method": "DELETE", "url": "Observation?code=x"}},
        {"request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=x"}},
        {"request": {"method": "PUT", "url": "https://gw/fhir/Patient/P3"}},
        {"request": {"method": "GET", "url": "Patient/P1/$everything"}},
    ]));
    let got = classify_entries(&bundle, Some("https://gw/fhir/")).unwrap();
    let interactions: Vec<_> = got
        .iter()
        .map(|e| e.request.as_ref().map(|r| r.interaction.clone()))
        .collect();
    assert_eq!(
        interactions,
        vec![
            Ok(Interaction::Read {
                resource_type: ResourceType::Patient,
                id: "P1".into()
            }),
            Ok(Interaction::SearchType {
                resource_type: ResourceType::Observation
            }),
            Ok(Interaction::ConditionalDelete {
                resource_type: ResourceType::Observation
            }),
            Ok(Interaction::Create {
                resource_type: ResourceType::Patient,
                conditional: Some("identifier=x".into())
            }),
            Ok(Interaction::Update {
                resource_type: ResourceType::Patient,
                id: "P3".into()
            }),
            Ok(Interaction::Operation {
                name: "everything".into(),
                level: OperationLevel::Instance(ResourceType::Patient, "P1".into())
            }),
        ]
    );
    let search = got[1].request.as_ref().unwrap();
    assert_eq!(
        search.params.values_of("patient").collect::<Vec<_>>(),
        ["P2"]
    );
    assert_eq!(
        search.params.values_of("code").collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(search.path, "/Observation");
}

#[test]
fn malformed_entries_are_entry_errors() {
    let bundle = tx(json!([
        {"request": {"method": "GET", "url": "Patient/P1"}},
        {"request": {"method": "GET", "url": "https://evil/fhir/Patient/P1"}},
        {"request": {"method": "GET", "url": "Patient/P1%2F..%2FP2"}},
        {"request": {"method": "TRACE", "url": "Patient/P1"}},
        {"request": {"url": "Patient/P1"}},
        {"request": {"method": "GET"}},
        {"resource": {"resourceType": "Patient"}},
        {"request": {"method": "POST", "url": ""}},
        {"request": {"method": "GET", "url": "patient/P1"}},
        {"request": {"method": "POST", "url": "/"}},
        {"request": {"method": "get", "url": "Patient/P1"}},
        {"request": {"method": "GET", "url": "urn:uuid:1234"}},
    ]));
    let got = classify_entries(&bundle, Some("https://gw/fhir")).unwrap();
    assert!(got[0].request.is_ok());
    for e in &got[1..] {
        assert!(
            e.request.is_err(),
            "entry {} {} {} accepted",
            e.index,
            e.method,
            e.url
        );
    }
    assert!(matches!(got[2].request, Err(ClassifyError::InvalidPath(_))));
    assert!(matches!(
        got[9].request,
        Err(ClassifyError::InvalidEntry(_))
    ));
}

#[test]
fn only_batch_and_transaction_have_entry_requests() {
    let searchset = json!({"resourceType": "Bundle", "type": "searchset", "entry": []});
    assert_eq!(
        classify_entries(&searchset, None),
        Err(BundleError::WrongType("searchset"))
    );
    let batch = json!({"resourceType": "Bundle", "type": "batch"});
    assert_eq!(classify_entries(&batch, None), Ok(Vec::new()));
    let bad = json!({"resourceType": "Bundle", "type": "batch", "entry": {}});
    assert_eq!(
        classify_entries(&bad, None),
        Err(BundleError::EntryNotArray)
    );
    let huge = tx(Value::Array(vec![json!({}); MAX_ENTRIES + 1]));
    assert_eq!(
        classify_entries(&huge, None),
        Err(BundleError::TooManyEntries)
    );
}

#[test]
fn appends_outcome_entry_to_searchset() {
    let mut bundle = json!({
        "resourceType": "Bundle", "type": "searchset", "total": 1,
        "entry": [{"resource": {"resourceType": "Observation", "id": "o1"}, "search": {"mode": "match"}}]
    });
    let oo = OperationOutcome::single(
        crate::outcome::IssueSeverity::Warning,
        IssueType::Suppressed,
        "1 entry removed",
    );
    append_outcome_entry(&mut bundle, &oo).unwrap();
    assert_eq!(bundle["entry"].as_array().map(Vec::len), Some(2));
    assert_eq!(bundle["entry"][1]["search"]["mode"], "outcome");
    assert_eq!(
        bundle["entry"][1]["resource"]["issue"][0]["code"],
        "suppressed"
    );
    assert_eq!(bundle["total"], 1);
    assert_eq!(entry_resources(&bundle).count(), 2);

    let mut empty = empty_searchset();
    append_outcome_entry(&mut empty, &oo).unwrap();
    assert_eq!(empty["entry"][0]["search"]["mode"], "outcome");

    let mut no_entries = json!({"resourceType": "Bundle", "type": "searchset"});
    append_outcome_entry(&mut no_entries, &oo).unwrap();
    assert_eq!(no_entries["entry"].as_array().map(Vec::len), Some(1));

    let mut history = json!({"resourceType": "Bundle", "type": "history"});
    assert_eq!(
        append_outcome_entry(&mut history, &oo),
        Err(BundleError::WrongType("history"))
    );
}
