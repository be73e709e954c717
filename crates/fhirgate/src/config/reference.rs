//! The configuration reference (`docs/configuration.md`) checked against the structs the YAML
//! is read into, so the two cannot drift: every key the structs accept must have a table row
//! in the reference, and every key the reference's tables name must exist.
//!
//! The keys are found by deserialising [`RawConfig`] from a tracing deserializer: serde's
//! derive hands every struct's field names to `deserialize_struct`, which records them and
//! then descends into each field. That covers the nested sections other crates own
//! (`fhirgate_tokens::IssuerConfig`, `fhirgate_audit::AuditConfig`, ...) without any derive or
//! list to keep in step. Hand-written `Deserialize` impls hide their keys from the tracer;
//! they are listed in [`OPAQUE_SECTIONS`] and traced through their inner struct instead.
//!
//! Run: `cargo test -p fhirgate config::reference`.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

use super::raw::RawConfig;

const REFERENCE: &str = "docs/configuration.md";

/// Lists the dotted keys a section's struct accepts, under the given prefix.
type KeyTracer = fn(&str) -> BTreeSet<String>;

/// Sections whose `Deserialize` is written by hand (so the tracer cannot see inside them):
/// the path of the section and a function tracing the struct it contains.
const OPAQUE_SECTIONS: &[(&str, KeyTracer)] = &[(
    // `backend: local` or `backend: { redis: {...} }`.
    "rate_limit.backend.redis",
    trace_keys::<fhirgate_ratelimit::RawRedis>,
)];

/// Every key path `RawConfig` accepts: `upstream.url`, `auth.issuers[].claims.scope`, ...
/// (`[]` marks the items of a list; sections are listed as well as their keys, and a section
/// counts as documented when one of its keys is).
pub(crate) fn config_keys() -> BTreeSet<String> {
    let mut keys = trace_keys::<RawConfig>("");
    for (path, trace) in OPAQUE_SECTIONS {
        keys.insert((*path).to_owned());
        keys.extend(trace(path));
    }
    keys
}

/// The keys a reference documents: the first cell of every table row, when it is one
/// backquoted dotted key (a trailing `[]` is dropped: `rate_limit.rules[]` is `rules`).
pub(crate) fn documented_keys(markdown: &str) -> BTreeSet<String> {
    markdown
        .lines()
        .filter_map(|line| {
            let cell = line.trim().strip_prefix('|')?.split('|').next()?.trim();
            let key = cell.strip_prefix('`')?.strip_suffix('`')?;
            let key = key.strip_suffix("[]").unwrap_or(key);
            let well_formed = !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.[]".contains(c));
            well_formed.then(|| key.to_owned())
        })
        .collect()
}

/// What is wrong between the structs and the reference, one line per key; empty when they
/// agree.
pub(crate) fn drift(config: &BTreeSet<String>, documented: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    // A section is documented by the rows of its keys; it needs no row of its own.
    let has_documented_child = |key: &str| {
        documented.iter().any(|d| {
            d.strip_prefix(key)
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with("[]."))
        })
    };
    for key in config.difference(documented) {
        if has_documented_child(key) {
            continue;
        }
        let section = key.split(['.', '[']).next().unwrap_or(key);
        let under = if section == key {
            "the \"Top level\" table".to_owned()
        } else {
            format!("the `{section}` section")
        };
        problems.push(format!(
            "{REFERENCE}: option `{key}` is accepted by the config structs but not documented: \
             add a row `| \\`{key}\\` | type | default | meaning |` to {under}"
        ));
    }
    for key in documented.difference(config) {
        problems.push(format!(
            "{REFERENCE}: documents `{key}`, which the config structs do not accept \
             (renamed or removed?): fix or delete its row"
        ));
    }
    problems
}

/// Trace `T` as if it were found at `prefix` (`""` for the top level).
fn trace_keys<T: DeserializeOwned>(prefix: &str) -> BTreeSet<String> {
    let state = RefCell::new(TraceState::default());
    // Each pass starts every struct at the next field in turn, so a field whose fake value
    // fails to parse (a size, a duration) cannot hide the fields after it. Cheap: a few µs
    // per pass.
    for _ in 0..ROUNDS {
        let _ = T::deserialize(Tracer {
            path: prefix.to_owned(),
            state: &state,
        });
    }
    state.into_inner().keys
}

const ROUNDS: usize = 2_000;

#[derive(Default)]
struct TraceState {
    keys: BTreeSet<String>,
    /// How often each struct path has been entered (picks the field presented first).
    visits: HashMap<String, usize>,
}

struct Tracer<'a> {
    path: String,
    state: &'a RefCell<TraceState>,
}

impl<'a> Tracer<'a> {
    fn child(&self, segment: &str) -> Tracer<'a> {
        let path = if self.path.is_empty() {
            segment.to_owned()
        } else if segment.starts_with('[') {
            format!("{}{segment}", self.path)
        } else {
            format!("{}.{segment}", self.path)
        };
        Tracer {
            path,
            state: self.state,
        }
    }

    fn next_visit(&self) -> usize {
        let mut state = self.state.borrow_mut();
        let n = state.visits.entry(self.path.clone()).or_insert(0);
        *n += 1;
        *n - 1
    }
}

#[derive(Debug)]
struct TraceError(String);

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TraceError {}

impl de::Error for TraceError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        TraceError(msg.to_string())
    }
}

impl<'de> de::Deserializer<'de> for Tracer<'_> {
    type Error = TraceError;

    // A leaf: text fits `Scalar`, `String`, paths, untagged size/number enums and JSON values.
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_str("1")
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_bool(false)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_u64(1)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_u64(1)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_u64(1)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_i64(1)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_f64(1.0)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_some(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_seq(OneItem(Some(self.child("[]"))))
    }

    // Free-form mappings (`weights`, `smart.configuration`) have no fixed keys.
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_map(Fields {
            fields: Vec::new(),
            tracer: self,
            value_for: None,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        {
            let mut state = self.state.borrow_mut();
            for field in fields {
                let key = self.child(field).path;
                state.keys.insert(key);
            }
        }
        let mut order: Vec<&'static str> = fields.to_vec();
        if !order.is_empty() {
            let start = self.next_visit() % order.len();
            order.rotate_left(start);
        }
        order.reverse(); // popped from the end
        visitor.visit_map(Fields {
            fields: order,
            tracer: self,
            value_for: None,
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        let Some(first) = variants.first() else {
            return Err(de::Error::custom("an enum without variants"));
        };
        let pick = variants
            .get(self.next_visit() % variants.len())
            .unwrap_or(first);
        visitor.visit_enum(Variant {
            name: pick,
            tracer: self,
        })
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i128 u8 u128 f32 char str string bytes byte_buf unit unit_struct
        newtype_struct tuple tuple_struct identifier
    }
}

/// A struct's fields, each with a traced value; or an empty free-form mapping.
struct Fields<'a> {
    fields: Vec<&'static str>,
    tracer: Tracer<'a>,
    value_for: Option<&'static str>,
}

impl<'de> de::MapAccess<'de> for Fields<'_> {
    type Error = TraceError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, TraceError> {
        let Some(field) = self.fields.pop() else {
            return Ok(None);
        };
        self.value_for = Some(field);
        let key: de::value::StrDeserializer<'_, TraceError> = field.into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, TraceError> {
        let field = self.value_for.take().unwrap_or_default();
        seed.deserialize(self.tracer.child(field))
    }
}

/// A list with one traced item.
struct OneItem<'a>(Option<Tracer<'a>>);

impl<'de> de::SeqAccess<'de> for OneItem<'_> {
    type Error = TraceError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, TraceError> {
        match self.0.take() {
            Some(tracer) => seed.deserialize(tracer).map(Some),
            None => Ok(None),
        }
    }
}

struct Variant<'a> {
    name: &'static str,
    tracer: Tracer<'a>,
}

impl<'de, 'a> de::EnumAccess<'de> for Variant<'a> {
    type Error = TraceError;
    type Variant = Tracer<'a>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Tracer<'a>), TraceError> {
        let name: de::value::StrDeserializer<'_, TraceError> = self.name.into_deserializer();
        Ok((seed.deserialize(name)?, self.tracer))
    }
}

impl<'de> de::VariantAccess<'de> for Tracer<'_> {
    type Error = TraceError;

    fn unit_variant(self) -> Result<(), TraceError> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, TraceError> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        visitor.visit_seq(OneItem(None))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        de::Deserializer::deserialize_struct(self, "", fields, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> String {
        let path = format!(
            "{}/../../docs/configuration.md",
            std::env::var("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned())
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
    }

    #[test]
    fn the_reference_documents_exactly_the_options_the_config_accepts() {
        let problems = drift(&config_keys(), &documented_keys(&reference()));
        assert!(
            problems.is_empty(),
            "docs/configuration.md and the config structs disagree ({} problem(s)):\n{}",
            problems.len(),
            problems.join("\n")
        );
    }

    /// `limits` as it would be with one more option that nobody documented.
    #[derive(serde::Deserialize)]
    struct LimitsWithANewOption {
        #[serde(rename = "max_body_size")]
        _max_body_size: Option<super::super::raw::Scalar>,
        #[serde(rename = "brand_new_timeout")]
        _brand_new_timeout: Option<super::super::raw::Scalar>,
    }

    #[test]
    fn an_undocumented_new_option_fails_the_check() {
        let mut keys = config_keys();
        keys.extend(trace_keys::<LimitsWithANewOption>("limits"));
        let problems = drift(&keys, &documented_keys(&reference()));
        assert!(
            problems
                .iter()
                .any(|p| p.contains("option `limits.brand_new_timeout` is accepted")),
            "{problems:#?}"
        );
        assert!(
            !problems.iter().any(|p| p.contains("limits.max_body_size")),
            "{problems:#?}"
        );
    }

    #[test]
    fn a_documented_option_the_structs_lack_fails_the_check() {
        let doc = format!(
            "{}\n| `limits.no_such_option` | duration | `1s` | x |\n",
            reference()
        );
        let problems = drift(&config_keys(), &documented_keys(&doc));
        assert!(
            problems
                .iter()
                .any(|p| p.contains("documents `limits.no_such_option`")),
            "{problems:#?}"
        );
    }

    #[test]
    fn the_tracer_finds_nested_keys_of_every_section() {
        let keys = config_keys();
        for key in [
            "listen",
            "upstream.url",
            "auth.issuers",
            "auth.issuers[].claims.client_id",
            "auth.issuers[].introspection.cache_ttl",
            "rate_limit.rules[].match.path_prefix",
            "rate_limit.backend.redis.url",
            "audit.forward.batch_size",
            "audit.write_timeout",
            "cors.max_age",
        ] {
            assert!(keys.contains(key), "{key} not traced; traced: {keys:#?}");
        }
        assert!(!keys.contains("auth.issuers[].claims.client"));
    }

    #[test]
    fn a_missing_and_a_stale_row_are_both_named() {
        let config: BTreeSet<String> = ["listen", "upstream", "upstream.url", "upstream.pool"]
            .map(String::from)
            .into();
        // `upstream` needs no row of its own: `upstream.pool` documents the section.
        let doc = "| key | type |\n|---|---|\n| `listen` | x |\n| `upstream.pool` | x |\n\
                   | `upstream.uri` | x |\n| `FHIRGATE_LOG` | env |\n";
        let problems = drift(&config, &documented_keys(doc));
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(problems[0].contains("option `upstream.url` is accepted"));
        assert!(problems[0].contains("the `upstream` section"));
        assert!(problems[1].contains("documents `upstream.uri`"));
    }
}
