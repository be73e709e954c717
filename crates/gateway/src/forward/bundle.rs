//! Rewriting upstream URLs in JSON Bundles (`link[].url`, `entry[].fullUrl`).
//!
//! Only the Bundle's top level, its `link` items and its `entry` items are parsed, and with
//! borrowed [`RawValue`]s: the resources inside entries (nearly all of the bytes) are copied
//! through verbatim, never turned into a JSON tree. Anything unexpected leaves the body as it was.

use std::borrow::Cow;

use indexmap::IndexMap;
use serde_json::value::RawValue;

use super::headers::rewrite_url;

type RawObject<'a> = IndexMap<&'a str, &'a RawValue>;

/// The Bundle with upstream URLs replaced, or `None` when the body is not a JSON Bundle or
/// holds nothing to rewrite.
pub(crate) fn rewrite_bundle(body: &[u8], from: &str, to: &str) -> Option<Vec<u8>> {
    // Most bodies need no change: skip parsing when the upstream base does not occur at all.
    memchr::memmem::find(body, from.as_bytes())?;
    // Keys are borrowed, so an object with escaped keys fails to parse and is left alone.
    let top: RawObject<'_> = serde_json::from_slice(body).ok()?;
    if top.get("resourceType").map(|v| v.get()) != Some("\"Bundle\"") {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() + 64);
    let mut changed = false;
    out.push(b'{');
    for (i, (key, value)) in top.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_key(&mut out, key);
        match *key {
            "link" => changed |= write_items(&mut out, value, "url", from, to)?,
            "entry" => changed |= write_items(&mut out, value, "fullUrl", from, to)?,
            _ => out.extend_from_slice(value.get().as_bytes()),
        }
    }
    out.push(b'}');
    changed.then_some(out)
}

/// Write an array of objects, rewriting `field` in each; returns whether anything changed.
fn write_items(
    out: &mut Vec<u8>,
    value: &RawValue,
    field: &str,
    from: &str,
    to: &str,
) -> Option<bool> {
    let items: Vec<RawObject<'_>> = serde_json::from_str(value.get()).ok()?;
    let mut changed = false;
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'{');
        for (j, (key, value)) in item.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            write_key(out, key);
            let rewritten = if *key == field {
                serde_json::from_str::<Cow<'_, str>>(value.get())
                    .ok()
                    .and_then(|url| rewrite_url(&url, from, to))
            } else {
                None
            };
            match rewritten {
                Some(url) => {
                    serde_json::to_writer(&mut *out, &url).ok()?;
                    changed = true;
                }
                None => out.extend_from_slice(value.get().as_bytes()),
            }
        }
        out.push(b'}');
    }
    out.push(b']');
    Some(changed)
}

/// Keys were borrowed from the input, so they contain no escapes and are written as they were.
fn write_key(out: &mut Vec<u8>, key: &str) {
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

#[cfg(test)]
mod tests {
    use super::*;

    const FROM: &str = "http://up:9/fhir";
    const TO: &str = "https://gw.example/r4";

    #[test]
    fn links_and_full_urls_are_rewritten_and_resources_kept() {
        let body = br#"{"resourceType":"Bundle","type":"searchset","total":1,
            "link":[{"relation":"self","url":"http://up:9/fhir/Observation?patient=1"}],
            "entry":[{"fullUrl":"http://up:9/fhir/Observation/o1",
                      "resource":{"resourceType":"Observation","id":"o1","note":[{"text":"see http://up:9/fhir/x"}]},
                      "search":{"mode":"match"}}]}"#;
        let out = rewrite_bundle(body, FROM, TO).expect("rewritten");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["link"][0]["url"],
            "https://gw.example/r4/Observation?patient=1"
        );
        assert_eq!(
            v["entry"][0]["fullUrl"],
            "https://gw.example/r4/Observation/o1"
        );
        // Resource content is not touched.
        assert_eq!(
            v["entry"][0]["resource"]["note"][0]["text"],
            "see http://up:9/fhir/x"
        );
        assert_eq!(v["total"], 1);
    }

    #[test]
    fn non_bundles_and_foreign_urls_are_left_alone() {
        assert!(
            rewrite_bundle(
                br#"{"resourceType":"Patient","id":"http://up:9/fhir"}"#,
                FROM,
                TO
            )
            .is_none()
        );
        assert!(
            rewrite_bundle(
                br#"{"resourceType":"Bundle","link":[{"url":"http://other/fhir"}],"id":"http://up:9/fhir"}"#,
                FROM,
                TO
            )
            .is_none()
        );
        assert!(rewrite_bundle(b"not json http://up:9/fhir", FROM, TO).is_none());
    }
}
