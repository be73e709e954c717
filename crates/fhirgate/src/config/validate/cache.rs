//! Stage two for `cache`: sizes, TTLs, statuses and rules into
//! [`fhirgate_gateway::CacheConfig`].

use fhirgate_fhir::ResourceType;
use fhirgate_gateway::{CacheConfig, CacheInteraction, CacheRule, GatewayConfig};

use super::{Problems, Scalar};
use crate::config::raw::{RawCache, RawConfig};

/// Moka weighs entries in `u32`; an entry this large would never be stored anyway.
const LARGEST_ENTRY: u64 = 1 << 30;

pub(super) fn validate(p: &mut Problems, raw: &RawConfig, config: &mut GatewayConfig) {
    let Some(c) = &raw.cache else { return };
    let mut cache = CacheConfig::new();
    if let Some(size) = p.size("cache.max_memory", c.max_memory.as_ref()) {
        cache.max_memory = size;
    }
    if let Some(size) = p.size("cache.max_entry_size", c.max_entry_size.as_ref()) {
        cache.max_entry_size = size;
    }
    if cache.max_entry_size > LARGEST_ENTRY {
        p.push("cache.max_entry_size", "must be at most 1GiB");
    } else if cache.max_entry_size > cache.max_memory {
        p.push("cache.max_entry_size", "must not exceed cache.max_memory");
    }
    p.duration(
        "cache.default_ttl",
        c.default_ttl.as_ref(),
        &mut cache.default_ttl,
    );
    if let Some(statuses) = &c.statuses {
        cache.statuses = statuses_of(p, statuses);
    }
    rules(p, c, &mut cache);
    config.cache = Some(cache);
}

fn statuses_of(p: &mut Problems, statuses: &[Scalar]) -> Vec<u16> {
    let mut out = Vec::new();
    for Scalar(text) in statuses {
        match text.trim().parse::<u16>() {
            // Partial content, redirects and server errors are not answers to keep.
            Ok(s @ (200..=299 | 404 | 410)) if s != 206 => out.push(s),
            _ => p.push(
                "cache.statuses",
                format!("expected 2xx (not 206), 404 or 410, got {text:?}"),
            ),
        }
    }
    out
}

fn rules(p: &mut Problems, c: &RawCache, cache: &mut CacheConfig) {
    for raw in &c.rules {
        let mut interactions = Vec::new();
        for Scalar(text) in &raw.interactions {
            match CacheInteraction::from_name(text.trim()) {
                Some(i) => interactions.push(i),
                None => p.push(
                    "cache.rules",
                    format!(
                        "interactions: expected read, vread, search or capabilities, got {text:?}"
                    ),
                ),
            }
        }
        if interactions.is_empty() {
            p.push("cache.rules", "each rule needs at least one interaction");
        }
        let mut types = Vec::new();
        let mut all_types = false;
        for Scalar(text) in &raw.resource_types {
            match text.trim() {
                "*" => all_types = true,
                name => match ResourceType::from_name(name) {
                    Some(t) => types.push(t),
                    None => p.push(
                        "cache.rules",
                        format!(
                            "resource_types: {name:?} is not an R4 resource type (case matters)"
                        ),
                    ),
                },
            }
        }
        let typed = interactions
            .iter()
            .any(|i| *i != CacheInteraction::Capabilities);
        if typed && types.is_empty() && !all_types {
            p.push(
                "cache.rules",
                "a rule for read, vread or search needs resource_types (or \"*\")",
            );
        }
        let mut ttl = None;
        if let Some(text) = &raw.ttl {
            let mut value = cache.default_ttl;
            p.duration("cache.rules", Some(text), &mut value);
            ttl = Some(value);
        }
        cache.rules.push(if all_types {
            CacheRule::any_type(interactions, ttl)
        } else {
            CacheRule::new(types, interactions, ttl)
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use fhirgate_fhir::ResourceType;
    use fhirgate_gateway::CacheInteraction;

    use crate::config::parse;

    const BASE: &str = "public_base_url: https://fhir.example.org/fhir\nupstream: { url: http://10.0.0.5:8080/fhir }\nauth: { mode: disabled }\n";

    #[test]
    fn cache_section_is_read_with_defaults() {
        let config = parse(&format!(
            "{BASE}cache:\n  max_memory: 32MiB\n  max_entry_size: 256KiB\n  default_ttl: 2m\n  rules:\n    - resource_types: [Practitioner, Location]\n      interactions: [read, search]\n      ttl: 10m\n    - interactions: [capabilities]\n    - resource_types: [\"*\"]\n      interactions: [vread]\n"
        ))
        .unwrap();
        let cache = config.gateway.cache.unwrap();
        assert_eq!(cache.max_memory, 32 * 1024 * 1024);
        assert_eq!(cache.max_entry_size, 256 * 1024);
        assert_eq!(cache.default_ttl, Duration::from_secs(120));
        assert_eq!(cache.statuses, [200, 404]);
        assert_eq!(cache.rules.len(), 3);
        let first = &cache.rules[0];
        assert_eq!(
            first.resource_types,
            [ResourceType::Practitioner, ResourceType::Location]
        );
        assert_eq!(
            first.interactions,
            [CacheInteraction::Read, CacheInteraction::Search]
        );
        assert_eq!(first.ttl, Some(Duration::from_secs(600)));
        assert_eq!(cache.rules[1].ttl, None);
        assert!(cache.rules[2].all_types);
        // Absent: nothing cached.
        assert!(parse(BASE).unwrap().gateway.cache.is_none());
    }

    #[test]
    fn the_example_caches_slow_changing_types_and_metadata_only() {
        let example = include_str!("../../../../../examples/fhirgate.yaml");
        let cache = parse(example).unwrap().gateway.cache.unwrap();
        let mut cached: Vec<ResourceType> = cache
            .rules
            .iter()
            .filter(|r| {
                r.interactions.contains(&CacheInteraction::Read)
                    && r.interactions.contains(&CacheInteraction::Search)
            })
            .flat_map(|r| r.resource_types.iter().copied())
            .collect();
        cached.sort();
        use ResourceType::*;
        let mut expected = vec![
            Practitioner,
            PractitionerRole,
            Organization,
            Location,
            Medication,
            ValueSet,
            CodeSystem,
        ];
        expected.sort();
        assert_eq!(cached, expected);
        assert!(cache.rules.iter().all(|r| !r.all_types));
        assert!(
            cache
                .rules
                .iter()
                .any(|r| r.interactions == [CacheInteraction::Capabilities])
        );
        assert!(cache.max_memory > 0 && cache.max_entry_size <= cache.max_memory);
    }

    #[test]
    fn cache_mistakes_name_their_key() {
        for (bad, key) in [
            ("cache: { max_memory: lots }", "cache.max_memory"),
            (
                "cache: { max_memory: 1MiB, max_entry_size: 2MiB }",
                "cache.max_entry_size",
            ),
            ("cache: { statuses: [200, 500] }", "cache.statuses"),
            ("cache: { statuses: [206] }", "cache.statuses"),
            ("cache: { default_ttl: 10 }", "cache.default_ttl"),
            (
                "cache: { rules: [ { resource_types: [practitioner], interactions: [read] } ] }",
                "cache.rules",
            ),
            (
                "cache: { rules: [ { resource_types: [Practitioner], interactions: [write] } ] }",
                "cache.rules",
            ),
            (
                "cache: { rules: [ { interactions: [read] } ] }",
                "cache.rules",
            ),
            (
                "cache: { rules: [ { resource_types: [Practitioner] } ] }",
                "cache.rules",
            ),
        ] {
            let errors = parse(&format!("{BASE}{bad}\n")).unwrap_err();
            assert_eq!(errors[0].key, key, "{bad}: {errors:?}");
        }
        assert!(parse(&format!("{BASE}cache: {{ max_memroy: 1MiB }}\n")).is_err());
    }
}
