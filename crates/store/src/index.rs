//! Turning a resource into search-index rows, following the generated parameter table.

use rusqlite::{Connection, params};
use serde_json::Value;

use crate::error::Result;
use crate::fhirtime::{self, MAX_MS, MIN_MS};
use crate::search_params::{ElementKind, IndexPath, ParamKind, params_for};

/// Index rows of one resource, before they are written.
#[derive(Debug, Default, PartialEq)]
pub struct IndexRows {
    pub strings: Vec<(&'static str, String, String)>,
    pub tokens: Vec<(&'static str, String, String)>,
    pub dates: Vec<(&'static str, i64, i64)>,
    pub refs: Vec<(&'static str, String, String, String)>,
    pub numbers: Vec<(&'static str, f64, String, String)>,
}

/// Form used for default string matching: FHIR asks for case- and accent-insensitive
/// comparison. Case is folded fully; accents are folded for the Latin-1 letters, which
/// covers the names in the data sets we meet without pulling in a Unicode table.
pub fn normalize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.trim().chars().flat_map(char::to_lowercase) {
        match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' => out.push('a'),
            'æ' => out.push_str("ae"),
            'ç' | 'č' => out.push('c'),
            'è' | 'é' | 'ê' | 'ë' | 'ē' => out.push('e'),
            'ì' | 'í' | 'î' | 'ï' => out.push('i'),
            'ñ' => out.push('n'),
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' => out.push('o'),
            'ß' => out.push_str("ss"),
            'š' => out.push('s'),
            'ù' | 'ú' | 'û' | 'ü' => out.push('u'),
            'ý' | 'ÿ' => out.push('y'),
            'ž' => out.push('z'),
            c => out.push(c),
        }
    }
    out
}

/// `Patient/123`, `Patient/123/_history/2` or an absolute URL ending in `Type/id` →
/// (type, id). Other forms (`urn:uuid:`, `#contained`) give `None`.
pub fn split_reference(reference: &str) -> Option<(&str, &str)> {
    let trimmed = match reference.find("/_history/") {
        Some(pos) => reference.get(..pos)?,
        None => reference,
    };
    let mut it = trimmed.rsplit('/');
    let id = it.next()?;
    let rtype = it.next()?;
    let type_ok = rtype.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && rtype.chars().all(|c| c.is_ascii_alphanumeric());
    (type_ok && fhir_id_ok(id)).then_some((rtype, id))
}

fn fhir_id_ok(id: &str) -> bool {
    crate::fhir::resource_type::is_valid_id(id)
}

/// Walk `keys` from `root`, flattening arrays on the way and at the end.
fn walk<'a>(root: &'a Value, keys: &[&str], out: &mut Vec<&'a Value>) {
    match root {
        Value::Array(items) => items.iter().for_each(|v| walk(v, keys, out)),
        _ => match keys.split_first() {
            None => out.push(root),
            Some((k, rest)) => {
                if let Some(v) = root.get(*k) {
                    walk(v, rest, out);
                }
            }
        },
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Compute the index rows of `resource` (of type `rtype`).
pub fn extract(rtype: &str, resource: &Value) -> IndexRows {
    let mut rows = IndexRows::default();
    for def in params_for(rtype) {
        for path in def.paths {
            let mut found = Vec::new();
            walk(resource, path.keys, &mut found);
            for v in found {
                if let Some(sys) = path.where_system
                    && str_of(v, "system") != Some(sys)
                {
                    continue;
                }
                add_value(&mut rows, def.code, def.kind, path, v);
            }
        }
    }
    rows
}

fn add_value(
    rows: &mut IndexRows,
    code: &'static str,
    kind: ParamKind,
    path: &IndexPath,
    v: &Value,
) {
    match kind {
        ParamKind::String => {
            let mut push = |s: &str| {
                if !s.trim().is_empty() {
                    rows.strings.push((code, normalize(s), s.to_owned()));
                }
            };
            match path.element {
                ElementKind::HumanName | ElementKind::Address => {
                    for key in [
                        "text",
                        "family",
                        "given",
                        "prefix",
                        "suffix",
                        "line",
                        "city",
                        "district",
                        "state",
                        "postalCode",
                        "country",
                    ] {
                        match v.get(key) {
                            Some(Value::String(s)) => push(s),
                            Some(Value::Array(a)) => {
                                a.iter().filter_map(Value::as_str).for_each(&mut push)
                            }
                            _ => {}
                        }
                    }
                }
                ElementKind::CodeableConcept => {
                    if let Some(t) = str_of(v, "text") {
                        push(t);
                    }
                }
                ElementKind::ContactPoint => {
                    if let Some(t) = str_of(v, "value") {
                        push(t);
                    }
                }
                _ => {
                    if let Some(s) = v.as_str() {
                        push(s);
                    }
                }
            }
        }
        ParamKind::Token | ParamKind::Uri => {
            let mut push = |system: Option<&str>, value: Option<&str>| {
                if let Some(value) = value.filter(|s| !s.is_empty()) {
                    rows.tokens
                        .push((code, system.unwrap_or("").to_owned(), value.to_owned()));
                }
            };
            match path.element {
                ElementKind::CodeableConcept => {
                    if let Some(Value::Array(codings)) = v.get("coding") {
                        for c in codings {
                            push(str_of(c, "system"), str_of(c, "code"));
                        }
                    }
                }
                ElementKind::Coding => push(str_of(v, "system"), str_of(v, "code")),
                ElementKind::Identifier => push(str_of(v, "system"), str_of(v, "value")),
                ElementKind::ContactPoint => push(None, str_of(v, "value")),
                ElementKind::Reference => push(None, str_of(v, "reference")),
                _ => match v {
                    Value::String(s) => push(None, Some(s)),
                    Value::Bool(b) => push(None, Some(if *b { "true" } else { "false" })),
                    _ => {}
                },
            }
        }
        ParamKind::Date => {
            let mut push = |lo: i64, hi: i64| rows.dates.push((code, lo, hi));
            match path.element {
                ElementKind::Period => {
                    let lo = str_of(v, "start")
                        .and_then(fhirtime::parse_range)
                        .map(|r| r.0);
                    let hi = str_of(v, "end")
                        .and_then(fhirtime::parse_range)
                        .map(|r| r.1);
                    if lo.is_some() || hi.is_some() {
                        push(lo.unwrap_or(MIN_MS), hi.unwrap_or(MAX_MS));
                    }
                }
                ElementKind::Timing => {
                    if let Some(Value::Array(events)) = v.get("event") {
                        for e in events.iter().filter_map(Value::as_str) {
                            if let Some((lo, hi)) = fhirtime::parse_range(e) {
                                push(lo, hi);
                            }
                        }
                    }
                }
                _ => {
                    if let Some((lo, hi)) = v.as_str().and_then(fhirtime::parse_range) {
                        push(lo, hi);
                    }
                }
            }
        }
        ParamKind::Reference => {
            let reference = match path.element {
                ElementKind::Canonical => v.as_str(),
                _ => str_of(v, "reference"),
            };
            let Some(reference) = reference else { return };
            match split_reference(reference) {
                Some((t, id)) => {
                    if path.ref_type.is_some_and(|want| want != t) {
                        return;
                    }
                    rows.refs
                        .push((code, t.to_owned(), id.to_owned(), reference.to_owned()));
                }
                None if path.ref_type.is_none() => {
                    rows.refs
                        .push((code, String::new(), String::new(), reference.to_owned()));
                }
                None => {}
            }
        }
        ParamKind::Number => {
            if let Some(n) = v.as_f64() {
                rows.numbers.push((code, n, String::new(), String::new()));
            }
        }
        ParamKind::Quantity => {
            if let Some(n) = v.get("value").and_then(Value::as_f64) {
                let system = str_of(v, "system").unwrap_or("").to_owned();
                let unit = str_of(v, "code")
                    .or_else(|| str_of(v, "unit"))
                    .unwrap_or("");
                rows.numbers.push((code, n, system, unit.to_owned()));
            }
        }
    }
}

/// Write the index rows of resource `rid`, first removing old ones when `replace`.
pub fn write(
    conn: &Connection,
    rid: i64,
    rtype: &str,
    rows: &IndexRows,
    replace: bool,
) -> Result<()> {
    if replace {
        delete(conn, rid)?;
    }
    let mut s = conn.prepare_cached(
        "INSERT INTO idx_string (rid, rtype, param, norm, exact) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (p, norm, exact) in &rows.strings {
        s.execute(params![rid, rtype, p, norm, exact])?;
    }
    let mut s = conn.prepare_cached(
        "INSERT INTO idx_token (rid, rtype, param, system, code) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (p, system, code) in &rows.tokens {
        s.execute(params![rid, rtype, p, system, code])?;
    }
    let mut s = conn.prepare_cached(
        "INSERT INTO idx_date (rid, rtype, param, lo, hi) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (p, lo, hi) in &rows.dates {
        s.execute(params![rid, rtype, p, lo, hi])?;
    }
    let mut s = conn.prepare_cached(
        "INSERT INTO idx_ref (rid, rtype, param, target_type, target_id, url) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (p, t, id, url) in &rows.refs {
        s.execute(params![rid, rtype, p, t, id, url])?;
    }
    let mut s = conn.prepare_cached(
        "INSERT INTO idx_number (rid, rtype, param, value, system, code) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (p, value, system, code) in &rows.numbers {
        s.execute(params![rid, rtype, p, value, system, code])?;
    }
    Ok(())
}

/// Remove every index row of resource `rid` (on delete, and before re-indexing).
pub fn delete(conn: &Connection, rid: i64) -> Result<()> {
    for table in [
        "idx_string",
        "idx_token",
        "idx_date",
        "idx_ref",
        "idx_number",
    ] {
        conn.prepare_cached(&format!("DELETE FROM {table} WHERE rid = ?1"))?
            .execute([rid])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn observation_rows_follow_the_official_expressions() {
        let obs = json!({
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2020-05-01T10:00:00Z",
            "valueQuantity": {"value": 5.4, "system": "http://unitsofmeasure.org", "code": "mmol/L"}
        });
        let rows = extract("Observation", &obs);
        assert!(rows.tokens.contains(&(
            "category",
            "http://terminology.hl7.org/CodeSystem/observation-category".into(),
            "laboratory".into()
        )));
        assert!(rows.refs.contains(&(
            "patient",
            "Patient".into(),
            "p1".into(),
            "Patient/p1".into()
        )));
        assert!(rows.refs.contains(&(
            "subject",
            "Patient".into(),
            "p1".into(),
            "Patient/p1".into()
        )));
        assert!(rows.dates.iter().any(|d| d.0 == "date"));
        assert!(
            rows.numbers
                .iter()
                .any(|n| n.0 == "value-quantity" && n.1 == 5.4 && n.3 == "mmol/L")
        );
    }

    #[test]
    fn patient_telecom_where_system_splits_phone_and_email() {
        let p = json!({"resourceType": "Patient", "telecom": [
            {"system": "phone", "value": "555-1234"}, {"system": "email", "value": "a@b.c"}]});
        let rows = extract("Patient", &p);
        assert!(
            rows.tokens
                .contains(&("phone", String::new(), "555-1234".into()))
        );
        assert!(
            rows.tokens
                .contains(&("email", String::new(), "a@b.c".into()))
        );
        assert!(
            !rows
                .tokens
                .contains(&("email", String::new(), "555-1234".into()))
        );
    }

    #[test]
    fn references_split_into_type_and_id() {
        assert_eq!(split_reference("Patient/1"), Some(("Patient", "1")));
        assert_eq!(
            split_reference("http://x/fhir/Patient/1/_history/3"),
            Some(("Patient", "1"))
        );
        assert_eq!(split_reference("urn:uuid:abc"), None);
    }
}
