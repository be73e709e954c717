use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{TestStore, issue_code, match_ids};

const CAT: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

fn obs(id: &str, patient: &str, category: &str, code: &str, when: &str, value: f64) -> Value {
    json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "category": [{"coding": [{"system": CAT, "code": category}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}
    })
}

async fn fixture() -> TestStore {
    let t = TestStore::start().await;
    let patients = [
        json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Müller", "given": ["Anna"]}], "gender": "female", "birthDate": "1970-03-15",
               "identifier": [{"system": "urn:mrn", "value": "A1"}], "generalPractitioner": [{"reference": "Practitioner/dr1"}]}),
        json!({"resourceType": "Patient", "id": "p2", "name": [{"family": "Mueller", "given": ["Bob"]}], "gender": "male", "birthDate": "1985",
               "identifier": [{"system": "urn:other", "value": "A1"}]}),
        json!({"resourceType": "Patient", "id": "p3", "name": [{"family": "Smith", "given": ["Carl"]}], "gender": "male", "birthDate": "2001-12-31",
               "identifier": [{"value": "NOSYS"}]}),
        json!({"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "House"}]}),
    ];
    for p in patients {
        let path = format!(
            "{}/{}",
            p["resourceType"].as_str().unwrap(),
            p["id"].as_str().unwrap()
        );
        let (s, b) = t.put(&path, p).await;
        assert!(s.is_success(), "{b}");
    }
    let observations = [
        obs(
            "o1",
            "p1",
            "laboratory",
            "2339-0",
            "2020-01-10T10:00:00Z",
            90.0,
        ),
        obs(
            "o2",
            "p1",
            "laboratory",
            "2339-0",
            "2021-06-01T10:00:00Z",
            150.0,
        ),
        obs(
            "o3",
            "p1",
            "vital-signs",
            "8867-4",
            "2022-02-02T08:30:00+01:00",
            72.0,
        ),
        obs(
            "o4",
            "p2",
            "laboratory",
            "2093-3",
            "2020-01-10T12:00:00Z",
            200.0,
        ),
        obs(
            "o5",
            "p2",
            "vital-signs",
            "8867-4",
            "2019-12-31T23:59:59Z",
            100.0,
        ),
    ];
    for o in observations {
        let path = format!("Observation/{}", o["id"].as_str().unwrap());
        let (s, b) = t.put(&path, o).await;
        assert!(s.is_success(), "{b}");
    }
    let (s, _) = t
        .put("RiskAssessment/r1", json!({"resourceType": "RiskAssessment", "id": "r1", "status": "final", "subject": {"reference": "Patient/p1"},
              "prediction": [{"probabilityDecimal": 0.25}]}))
        .await;
    assert!(s.is_success());
    t
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn string_parameters_default_exact_contains() {
    let t = fixture().await;
    assert_eq!(
        sorted(t.search_ids("Patient?family=mu").await),
        ["p1", "p2"]
    );
    assert_eq!(t.search_ids("Patient?family=MUELL").await, ["p2"]);
    assert_eq!(t.search_ids("Patient?family:exact=Müller").await, ["p1"]);
    assert!(t.search_ids("Patient?family:exact=müller").await.is_empty());
    assert_eq!(t.search_ids("Patient?name:contains=ell").await, ["p2"]);
    assert_eq!(t.search_ids("Patient?name=carl").await, ["p3"]);
    assert_eq!(
        sorted(t.search_ids("Patient?given=anna,bob").await),
        ["p1", "p2"]
    );
}

#[tokio::test]
async fn token_parameters_system_code_and_not() {
    let t = fixture().await;
    assert_eq!(
        sorted(t.search_ids("Patient?identifier=A1").await),
        ["p1", "p2"]
    );
    assert_eq!(t.search_ids("Patient?identifier=urn:mrn|A1").await, ["p1"]);
    assert_eq!(t.search_ids("Patient?identifier=|NOSYS").await, ["p3"]);
    assert_eq!(t.search_ids("Patient?identifier=urn:other|").await, ["p2"]);
    assert_eq!(
        sorted(t.search_ids("Patient?gender=male").await),
        ["p2", "p3"]
    );
    assert_eq!(t.search_ids("Patient?gender:not=male").await, ["p1"]);
    assert_eq!(
        sorted(
            t.search_ids(&format!("Observation?category={CAT}|laboratory"))
                .await
        ),
        ["o1", "o2", "o4"]
    );
    assert_eq!(
        sorted(
            t.search_ids("Observation?code=http://loinc.org|8867-4")
                .await
        ),
        ["o3", "o5"]
    );
}

#[tokio::test]
async fn date_parameters_with_every_prefix_and_partial_dates() {
    let t = fixture().await;
    let q = |s: &str| format!("Observation?date={s}");
    assert_eq!(sorted(t.search_ids(&q("2020")).await), ["o1", "o4"]);
    assert_eq!(sorted(t.search_ids(&q("eq2020-01-10")).await), ["o1", "o4"]);
    assert_eq!(t.search_ids(&q("2020-01-10T10:00:00Z")).await, ["o1"]);
    assert_eq!(sorted(t.search_ids(&q("ne2020")).await), ["o2", "o3", "o5"]);
    assert_eq!(t.search_ids(&q("lt2020")).await, ["o5"]);
    assert_eq!(t.search_ids(&q("gt2021")).await, ["o3"]);
    assert_eq!(sorted(t.search_ids(&q("ge2021")).await), ["o2", "o3"]);
    assert_eq!(
        sorted(t.search_ids(&q("le2020-01")).await),
        ["o1", "o4", "o5"]
    );
    assert_eq!(sorted(t.search_ids(&q("sa2020-12")).await), ["o2", "o3"]);
    assert_eq!(t.search_ids(&q("eb2020")).await, ["o5"]);
    // 08:30+01:00 is 07:30Z.
    assert_eq!(t.search_ids(&q("2022-02-02T07:30:00Z")).await, ["o3"]);
    assert_eq!(t.search_ids(&q("ap2022-02-03")).await, ["o3"]);
    // Two occurrences are AND-ed: a range.
    assert_eq!(
        t.search_ids("Observation?date=ge2020-01-01&date=lt2021-01-01&patient=p1")
            .await,
        ["o1"]
    );
    assert_eq!(t.search_ids("Patient?birthdate=1985").await, ["p2"]);
    assert_eq!(
        t.search_ids("Patient?birthdate=1985-06").await,
        Vec::<String>::new()
    );
    let (s, b) = t.get("Observation?date=yesterday").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["issue"][0]["expression"][0], "date");
}

#[tokio::test]
async fn reference_parameters_in_every_form() {
    let t = fixture().await;
    assert_eq!(
        sorted(t.search_ids("Observation?subject=Patient/p2").await),
        ["o4", "o5"]
    );
    assert_eq!(
        sorted(t.search_ids("Observation?patient=p2").await),
        ["o4", "o5"]
    );
    assert_eq!(
        sorted(t.search_ids("Observation?subject:Patient=p2").await),
        ["o4", "o5"]
    );
    assert!(
        t.search_ids("Observation?subject:Group=p2")
            .await
            .is_empty()
    );
    let abs = format!("Observation?subject={}/Patient/p2", t.base);
    assert_eq!(sorted(t.search_ids(&abs).await), ["o4", "o5"]);
    assert_eq!(
        t.search_ids("Patient?general-practitioner=Practitioner/dr1")
            .await,
        ["p1"]
    );
    assert_eq!(
        sorted(
            t.search_ids("Observation?patient=p1&category=laboratory")
                .await
        ),
        ["o1", "o2"]
    );
}

#[tokio::test]
async fn number_and_quantity_parameters_with_prefixes() {
    let t = fixture().await;
    assert_eq!(t.search_ids("Observation?value-quantity=150").await, ["o2"]);
    assert_eq!(
        sorted(t.search_ids("Observation?value-quantity=gt100").await),
        ["o2", "o4"]
    );
    assert_eq!(
        sorted(t.search_ids("Observation?value-quantity=ge100").await),
        ["o2", "o4", "o5"]
    );
    assert_eq!(
        sorted(t.search_ids("Observation?value-quantity=lt90").await),
        ["o3"]
    );
    assert_eq!(
        sorted(t.search_ids("Observation?value-quantity=le90").await),
        ["o1", "o3"]
    );
    assert_eq!(
        t.search_ids("Observation?value-quantity=ap195").await,
        ["o4"]
    );
    assert_eq!(
        sorted(
            t.search_ids("Observation?value-quantity=ge150|http://unitsofmeasure.org|mg/dL")
                .await
        ),
        ["o2", "o4"]
    );
    assert!(
        t.search_ids("Observation?value-quantity=ge150||mmol/L")
            .await
            .is_empty()
    );
    assert_eq!(
        t.search_ids("RiskAssessment?probability=0.25").await,
        ["r1"]
    );
    assert_eq!(
        t.search_ids("RiskAssessment?probability=gt0.2").await,
        ["r1"]
    );
    assert!(
        t.search_ids("RiskAssessment?probability=lt0.2")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn id_last_updated_missing_and_sort() {
    let t = fixture().await;
    assert_eq!(
        sorted(t.search_ids("Patient?_id=p1,p3").await),
        ["p1", "p3"]
    );
    assert_eq!(
        sorted(t.search_ids("Patient?_lastUpdated=gt2000-01-01").await),
        ["p1", "p2", "p3"]
    );
    assert!(
        t.search_ids("Patient?_lastUpdated=lt2000-01-01")
            .await
            .is_empty()
    );
    assert_eq!(
        t.search_ids("Patient?general-practitioner:missing=false")
            .await,
        ["p1"]
    );
    assert_eq!(
        t.search_ids("Observation?patient=p1&_sort=date").await,
        ["o1", "o2", "o3"]
    );
    assert_eq!(
        t.search_ids("Observation?patient=p1&_sort=-date").await,
        ["o3", "o2", "o1"]
    );
    assert_eq!(t.search_ids("Patient?_sort=-_id").await, ["p3", "p2", "p1"]);
    assert_eq!(
        t.search_ids("Patient?_sort=birthdate").await,
        ["p1", "p2", "p3"]
    );
}

#[tokio::test]
async fn paging_links_are_absolute_and_walk_every_result_once() {
    let t = fixture().await;
    let (_, first) = t.get("Observation?_count=2&_sort=_id").await;
    assert_eq!(first["total"], 5);
    let mut seen = match_ids(&first);
    let self_link = first["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "self")
        .unwrap();
    assert!(self_link["url"].as_str().unwrap().starts_with(&t.base));
    let mut next = first["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .map(|l| l["url"].as_str().unwrap().to_owned());
    let mut pages = 1;
    let mut last = first.clone();
    while let Some(url) = next {
        assert!(url.starts_with(&t.base), "{url}");
        let page: Value = t
            .client
            .get(&url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        seen.extend(match_ids(&page));
        next = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_owned());
        last = page;
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["o1", "o2", "o3", "o4", "o5"]);
    let prev = last["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "previous")
        .unwrap();
    let page: Value = t
        .client
        .get(prev["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(match_ids(&page), ["o3", "o4"]);
}

#[tokio::test]
async fn summary_count_total_and_elements() {
    let t = fixture().await;
    let (_, b) = t.get("Observation?patient=p1&_summary=count").await;
    assert_eq!(b["total"], 3);
    assert!(
        b.get("entry")
            .is_none_or(|e| e.as_array().unwrap().is_empty())
    );
    let (_, b) = t.get("Observation?_count=1&_total=none").await;
    assert!(b.get("total").is_none());
    let (_, b) = t.get("Observation?_count=1&_total=accurate").await;
    assert_eq!(b["total"], 5);
    let (_, b) = t.get("Patient?_id=p1&_elements=gender").await;
    let r = &b["entry"][0]["resource"];
    assert_eq!(r["gender"], "female");
    assert!(r.get("name").is_none());
    assert_eq!(r["meta"]["tag"][0]["code"], "SUBSETTED");
}

#[tokio::test]
async fn include_and_revinclude() {
    let t = fixture().await;
    let (_, b) = t
        .get("Observation?_id=o4&_include=Observation:subject")
        .await;
    let entries = b["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1]["search"]["mode"], "include");
    assert_eq!(entries[1]["resource"]["id"], "p2");
    let (_, b) = t
        .get("Patient?_id=p2&_revinclude=Observation:subject")
        .await;
    let included: Vec<&str> = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "include")
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(included.len(), 2);
    assert_eq!(b["total"], 1, "included resources do not count");
}

#[tokio::test]
async fn compartment_search_and_everything() {
    let t = fixture().await;
    assert_eq!(
        sorted(t.search_ids("Patient/p2/Observation").await),
        ["o4", "o5"]
    );
    assert_eq!(
        t.search_ids("Patient/p1/Observation?category=vital-signs")
            .await,
        ["o3"]
    );
    let (s, _) = t.get("Patient/nobody/Observation").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let ids = sorted(t.search_ids("Patient/p1/$everything").await);
    assert_eq!(ids, ["o1", "o2", "o3", "p1", "r1"]);
    // The practitioner p1 points at comes along, marked as included.
    let (_, b) = t.get("Patient/p1/$everything").await;
    let included: Vec<&str> = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "include")
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(included, ["dr1"]);
}

#[tokio::test]
async fn post_search_matches_get_search() {
    let t = fixture().await;
    let r = t
        .client
        .post(t.url("Observation/_search"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("patient=p1&category=laboratory")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let b: Value = r.json().await.unwrap();
    assert_eq!(sorted(match_ids(&b)), ["o1", "o2"]);
}

#[tokio::test]
async fn unsupported_parameters_warn_or_fail_strictly() {
    let t = fixture().await;
    let (s, b) = t.get("Observation?patient=p1&subject.name=x&bogus=1").await;
    assert_eq!(s, StatusCode::OK);
    let outcome = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["search"]["mode"] == "outcome")
        .unwrap();
    let diag = outcome["resource"]["issue"][0]["diagnostics"]
        .as_str()
        .unwrap();
    assert!(
        diag.contains("bogus") && diag.contains("subject.name"),
        "{diag}"
    );

    let r = t
        .client
        .get(t.url("Observation?bogus=1"))
        .header("prefer", "handling=strict")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let b: Value = r.json().await.unwrap();
    assert_eq!(issue_code(&b), "not-supported");
}
