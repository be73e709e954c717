use super::*;
use pretty_assertions::assert_eq;

fn p(q: &str) -> SearchParams {
    match SearchParams::parse(q) {
        Ok(p) => p,
        Err(e) => panic!("{q}: {e}"),
    }
}

#[test]
fn keeps_order_and_repeats() {
    let ps = p("patient=P1&code=x&patient=P2");
    let names: Vec<_> = ps.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["patient", "code", "patient"]);
    assert_eq!(ps.values_of("patient").collect::<Vec<_>>(), ["P1", "P2"]);
}

#[test]
fn splits_comma_lists_honouring_escapes() {
    let ps = p("patient=P1,P2&name=a%5C,b&x=a\\,b,c&y=a\\\\,b");
    assert_eq!(ps.params[0].values, ["P1", "P2"]);
    assert_eq!(ps.params[1].values, ["a,b"]);
    assert_eq!(ps.params[2].values, ["a,b", "c"]);
    // `\\` is an escaped backslash, so the comma after it separates.
    assert_eq!(ps.params[3].values, ["a\\\\", "b"]);
    // Encoded commas are commas too: the upstream decodes before splitting.
    assert_eq!(p("patient=P1%2CP2").params[0].values, ["P1", "P2"]);
}

#[test]
fn splits_modifiers_and_chains() {
    let ps = p(
        "subject:Patient.name=Smith&subject.name=x&code:text=y&_has:Observation:patient:code=1&patient.organization.name=z&name:exact=A",
    );
    let got: Vec<_> = ps
        .iter()
        .map(|p| (p.name.as_str(), p.modifier.as_deref(), p.chain.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            ("subject", Some("Patient"), Some("name")),
            ("subject", None, Some("name")),
            ("code", Some("text"), None),
            ("_has", Some("Observation:patient:code"), None),
            ("patient", None, Some("organization.name")),
            ("name", Some("exact"), None),
        ]
    );
    assert!(ps.has_chain_or_has());
    assert!(!p("code:text=y&patient=1").has_chain_or_has());
    assert_eq!(ps.params[0].full_name(), "subject:Patient.name");
    assert_eq!(
        ps.params[0].type_modifier(),
        Some(crate::ResourceType::Patient)
    );
    assert_eq!(ps.params[2].type_modifier(), None);
    assert_eq!(p("subject:patient=1").params[0].type_modifier(), None);
}

#[test]
fn decodes_plus_and_percent() {
    let ps = p("name=John+Smith&subject=Patient%2FP1&given=%C3%A9");
    assert_eq!(ps.params[0].values, ["John Smith"]);
    assert_eq!(ps.params[1].values, ["Patient/P1"]);
    assert_eq!(ps.params[2].values, ["é"]);
    // Encoded names are decoded before splitting: `subject%3APatient` is `subject:Patient`.
    let ps = p("subject%3APatient=P1");
    assert_eq!(ps.params[0].name, "subject");
    assert_eq!(ps.params[0].modifier.as_deref(), Some("Patient"));
}

#[test]
fn empty_pieces_and_missing_values() {
    let ps = p("&a=1&&b&c=");
    assert_eq!(ps.len(), 3);
    assert_eq!(ps.params[1].values, [""]);
    assert_eq!(ps.to_query_string(), "a=1&b=&c=");
    assert!(p("").is_empty());
}

#[test]
fn rejects_malformed() {
    for bad in [
        "a=%zz", "a=%4", "=x", "a=%00", "a=%0A", "a=%FF", ":x=1", ".x=1", "a=b#c",
    ] {
        assert!(
            matches!(
                SearchParams::parse(bad),
                Err(ClassifyError::InvalidQuery(_))
            ),
            "{bad} should be rejected"
        );
    }
}

#[test]
fn caps_parameter_count() {
    let ok = vec!["a=1"; MAX_PARAMS].join("&");
    assert_eq!(p(&ok).len(), MAX_PARAMS);
    let too_many = vec!["a=1"; MAX_PARAMS + 1].join("&");
    assert!(SearchParams::parse(&too_many).is_err());
}

#[test]
fn round_trips_raw_encoding() {
    let q = "subject=Patient%2fP1&name=John+Smith&code=http://loinc.org|1234-5&x=%41";
    assert_eq!(p(q).to_query_string(), q);
}

#[test]
fn push_encodes_and_parses_back() {
    let mut ps = p("code=x");
    ps.push("patient", "P1");
    ps.push("name", "a&b=c+d %");
    ps.push("subject:Patient", "a,b");
    let q = ps.to_query_string();
    assert_eq!(
        q,
        "code=x&patient=P1&name=a%26b%3Dc%2Bd%20%25&subject:Patient=a,b"
    );
    assert_eq!(p(&q), ps);
    assert_eq!(ps.params[2].values, ["a&b=c+d %"]);
    assert_eq!(ps.params[3].values, ["a", "b"]);
}

#[test]
fn remove_and_set() {
    let mut ps = p("a=1&patient=P2&b=2&patient:Patient=P3");
    assert_eq!(ps.remove_named("zzz"), 0);
    ps.set("patient", "P1");
    assert_eq!(ps.to_query_string(), "a=1&patient=P1&b=2");
    assert_eq!(ps.remove_named("patient"), 1);
    assert_eq!(ps.to_query_string(), "a=1&b=2");
    ps.set("patient", "P1");
    assert_eq!(ps.to_query_string(), "a=1&b=2&patient=P1");
    assert_eq!(ps.first_value("patient"), Some("P1"));
    assert!(ps.contains("a"));
    assert!(!ps.contains("c"));
}

#[test]
fn form_body_must_be_utf8() {
    assert!(SearchParams::parse_form(b"patient=P1").is_ok());
    assert!(SearchParams::parse_form(&[b'a', b'=', 0xff]).is_err());
}

#[test]
fn extend_keeps_the_cap_over_both_sources() {
    let mut ps = p(&vec!["a=1"; MAX_PARAMS].join("&"));
    assert!(ps.extend_from_query("b=2").is_err());
}
