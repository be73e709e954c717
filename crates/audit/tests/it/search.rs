//! "Who accessed this patient's data?"

use std::time::Duration;

use fhirgate_audit::{AuditSink, Interaction, SearchFilter, parse_time_bound, search};
use time::OffsetDateTime;

use crate::support::{config, input, t0};

#[tokio::test]
async fn search_filters_by_patient_time_and_client() {
    let dir = tempfile::tempdir().unwrap();
    let sink = AuditSink::open(&config(dir.path())).unwrap();
    sink.record(input(0, Interaction::Read, &["p1"]))
        .await
        .unwrap();
    sink.record(input(60, Interaction::SearchType, &["p1", "p2"]))
        .await
        .unwrap();
    sink.record(input(120, Interaction::Read, &["p2"]))
        .await
        .unwrap();
    let mut other = input(180, Interaction::Read, &["p1"]);
    other.principal.as_mut().unwrap().client_id = Some("app-2".into());
    sink.record(other).await.unwrap();

    let paths = [dir.path().to_path_buf()];
    let run = |filter: SearchFilter| -> Vec<u64> {
        search(&paths, filter)
            .unwrap()
            .map(|r| r.unwrap().seq)
            .collect()
    };
    let mut f = SearchFilter::default();
    f.patient = Some("p1".into());
    assert_eq!(run(f.clone()), [1, 2, 4]);
    f.patient = Some("Patient/p2".into());
    assert_eq!(run(f.clone()), [2, 3]);

    let mut f = SearchFilter::default();
    f.patient = Some("p1".into());
    f.since = Some(OffsetDateTime::from(t0() + Duration::from_secs(30)));
    assert_eq!(run(f.clone()), [2, 4]);
    f.until = Some(OffsetDateTime::from(t0() + Duration::from_secs(180)));
    assert_eq!(run(f.clone()), [2]);
    f.until = None;
    f.client = Some("app-2".into());
    assert_eq!(run(f.clone()), [4]);

    let hit = search(&paths, SearchFilter::default())
        .unwrap()
        .nth(1)
        .unwrap()
        .unwrap();
    assert_eq!(hit.user.as_deref(), Some("Practitioner/pr-1"));
    assert_eq!(hit.client_id.as_deref(), Some("app-1"));
    assert_eq!(hit.interaction, "search-type");
    assert_eq!(hit.patients, ["p1", "p2"]);
    assert_eq!(hit.line, 2);
}

#[test]
fn time_bounds_accept_rfc3339_dates_and_ages() {
    let now = OffsetDateTime::from(t0());
    let t = |s: &str| parse_time_bound(s, t0());
    assert_eq!(t("2d").unwrap(), now - time::Duration::days(2));
    assert_eq!(
        t("2026-11-28T10:00:00Z").unwrap(),
        now - time::Duration::days(1)
    );
    assert_eq!(t("2026-11-29").unwrap(), now - time::Duration::hours(10));
    assert!(t("yesterday").is_err());
}
