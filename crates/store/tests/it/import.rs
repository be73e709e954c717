use std::collections::{BTreeMap, HashMap};

use fhirgate_store::generate::{GenerateOptions, generate, generate_ndjson};
use fhirgate_store::import::import_paths;
use serde_json::{Value, json};

use crate::TestStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_generated_patients_match_what_was_generated() {
    let t = TestStore::start().await;
    let opts = GenerateOptions {
        patients: 300,
        seed: 42,
    };
    // What the generator says it produced, computed independently of the store.
    let mut by_type: BTreeMap<String, i64> = BTreeMap::new();
    let mut labs: HashMap<String, usize> = HashMap::new();
    let mut female = 0;
    generate(opts, |v: Value| {
        *by_type
            .entry(v["resourceType"].as_str().unwrap().to_owned())
            .or_default() += 1;
        if v["resourceType"] == "Observation"
            && v["category"][0]["coding"][0]["code"] == "laboratory"
        {
            let subject = v["subject"]["reference"]
                .as_str()
                .unwrap()
                .trim_start_matches("Patient/")
                .to_owned();
            *labs.entry(subject).or_default() += 1;
        }
        if v["resourceType"] == "Patient" && v["gender"] == "female" {
            female += 1;
        }
        Ok(())
    })
    .unwrap();

    let data = tempfile::tempdir().unwrap();
    generate_ndjson(data.path(), opts).unwrap();
    let store = t.store.clone();
    let paths = vec![data.path().to_owned()];
    let report = tokio::task::spawn_blocking(move || import_paths(&store, &paths, &mut |_| {}))
        .await
        .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.resources as i64, by_type.values().sum::<i64>());

    let counts: BTreeMap<String, i64> = t.store.counts().unwrap().into_iter().collect();
    assert_eq!(counts, by_type);

    for (t_name, n) in &by_type {
        let (_, b) = t.get(&format!("{t_name}?_summary=count")).await;
        assert_eq!(b["total"], json!(n), "{t_name}");
    }
    let (_, b) = t.get("Patient?gender=female&_summary=count").await;
    assert_eq!(b["total"], female);
    for p in ["pat-0", "pat-17", "pat-299"] {
        let (_, b) = t
            .get(&format!(
                "Observation?patient={p}&category=laboratory&_summary=count"
            ))
            .await;
        assert_eq!(b["total"], json!(labs.get(p).copied().unwrap_or(0)), "{p}");
    }
    let (_, b) = t
        .get("Patient?identifier=urn:fhirgate:demo:mrn|MRN0000018")
        .await;
    assert_eq!(b["entry"][0]["resource"]["id"], "pat-17");
}

#[tokio::test]
async fn bad_files_are_reported_and_the_rest_loads() {
    let t = TestStore::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.ndjson"),
        "{\"resourceType\":\"Patient\",\"id\":\"n1\"}\nnot json\n{\"resourceType\":\"Nope\",\"id\":\"n2\"}\n{\"resourceType\":\"Patient\",\"id\":\"n3\"}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("b.json"), "{ broken").unwrap();
    let synthea_like = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:aaa", "resource": {"resourceType": "Patient", "name": [{"family": "Synth"}]}, "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:bbb", "resource": {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}, "subject": {"reference": "urn:uuid:aaa"}}, "request": {"method": "POST", "url": "Encounter"}}
    ]});
    std::fs::write(dir.path().join("c.json"), synthea_like.to_string()).unwrap();

    let store = t.store.clone();
    let paths = vec![dir.path().to_owned()];
    let report = tokio::task::spawn_blocking(move || import_paths(&store, &paths, &mut |_| {}))
        .await
        .unwrap();
    assert_eq!(report.files, 3);
    assert_eq!(report.resources, 4);
    let where_: Vec<String> = report
        .errors
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e.file.file_name().unwrap().to_string_lossy(),
                e.position
            )
        })
        .collect();
    assert_eq!(
        where_,
        ["a.ndjson line 2", "a.ndjson line 3", "b.json file"]
    );
    let pid = t.search_ids("Patient?family=synth").await;
    assert_eq!(
        t.search_ids(&format!("Encounter?patient={}", pid[0]))
            .await
            .len(),
        1
    );
}
