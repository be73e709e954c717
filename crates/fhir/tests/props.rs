//! Properties over arbitrary input: classification never panics, whatever it accepts is
//! safe to forward, and search parameters survive re-serialisation.

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::panic)]

use fhirgate_fhir::fuzzing::check_accepted;
use fhirgate_fhir::{SearchParams, classify, classify_entries};
use http::{HeaderMap, Method};
use proptest::prelude::*;

const TOKENS: &[&str] = &[
    "Patient",
    "patient",
    "Observation",
    "Encounter",
    "123",
    "P2.",
    ".",
    "..",
    "%2F",
    "%2f",
    "%2E",
    "%252F",
    "%00",
    "%3B",
    ";x=y",
    "_history",
    "_search",
    "$everything",
    "$",
    "*",
    "",
    "\\",
    "#frag",
    "a b",
    "é",
    "1",
    "metadata",
    "a..b",
    "?",
    "\u{0}",
    "%",
];

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::GET),
        Just(Method::HEAD),
        Just(Method::POST),
        Just(Method::PUT),
        Just(Method::PATCH),
        Just(Method::DELETE),
        Just(Method::OPTIONS),
        Just(Method::TRACE),
    ]
}

/// Paths assembled from the pieces attacks use, plus fully arbitrary strings.
fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            any::<bool>(),
            prop::collection::vec(prop::sample::select(TOKENS), 0..6)
        )
            .prop_map(|(lead, segs)| {
                let joined = segs.join("/");
                if lead { format!("/{joined}") } else { joined }
            }),
        ".*",
        "/[A-Za-z0-9%./;_$*-]{0,40}",
    ]
}

fn query() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        ".*",
        "[a-z_:.]{0,8}(=[a-zA-Z0-9%,\\\\+|:/.]{0,12})?(&[a-z_:.]{0,8}=[a-zA-Z0-9%,\\\\+]{0,12}){0,4}",
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn classify_never_panics_and_accepts_only_safe_paths(
        m in method(),
        p in path(),
        q in query(),
        body in prop::option::of(".*"),
    ) {
        let result = classify(&m, &p, q.as_deref(), &HeaderMap::new(), body.as_deref().map(str::as_bytes));
        if let Ok(req) = result {
            prop_assert_eq!(&req.path, &p);
            if let Err(e) = check_accepted(&req) {
                return Err(TestCaseError::fail(e));
            }
        }
    }

    #[test]
    fn parse_serialise_parse_is_stable(q in ".*") {
        if let Ok(first) = SearchParams::parse(&q) {
            let again = SearchParams::parse(&first.to_query_string());
            prop_assert_eq!(again, Ok(first));
        }
    }

    #[test]
    fn pushed_params_parse_back_to_themselves(
        pairs in prop::collection::vec(("[a-z_][a-z0-9:._-]{0,10}", "[^\\p{Cc}]{0,16}"), 0..8)
    ) {
        let mut params = SearchParams::default();
        for (name, value) in &pairs {
            params.push(name, value);
        }
        let parsed = SearchParams::parse(&params.to_query_string());
        prop_assert_eq!(parsed, Ok(params));
    }

    #[test]
    fn bundle_entries_classify_like_requests(
        kind in prop::sample::select(&["batch", "transaction", "searchset", "Batch"][..]),
        entries in prop::collection::vec(
            (
                prop::sample::select(&["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "get", "TRACE", ""][..]),
                path(),
                prop::option::of("[a-z=&%;#|]{0,12}"),
            ),
            0..6,
        ),
    ) {
        let entries: Vec<_> = entries
            .into_iter()
            .map(|(method, url, if_none_exist)| {
                let url = url.strip_prefix('/').map(str::to_owned).unwrap_or(url);
                serde_json::json!({
                    "request": { "method": method, "url": url, "ifNoneExist": if_none_exist }
                })
            })
            .collect();
        let bundle = serde_json::json!({ "resourceType": "Bundle", "type": kind, "entry": entries });
        if let Ok(classified) = classify_entries(&bundle, Some("https://gw/fhir")) {
            prop_assert_eq!(classified.len(), entries.len());
            for entry in classified {
                if let Ok(req) = entry.request
                    && let Err(e) = check_accepted(&req)
                {
                    return Err(TestCaseError::fail(e));
                }
            }
        }
    }
}
