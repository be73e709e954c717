//! The typed `cache:` section. Absent means nothing is cached.

use std::time::Duration;

use fhirgate_fhir::ResourceType;

/// The response cache (phase 5). Sizes are bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheConfig {
    /// Upper bound on the summed weight (body + headers + key) of every entry.
    pub max_memory: u64,
    /// Larger answers are passed on without being stored.
    pub max_entry_size: u64,
    /// Lifetime of an entry whose rule names no `ttl`; upstream `max-age` can only shorten it.
    pub default_ttl: Duration,
    /// Upstream statuses that may be stored.
    pub statuses: Vec<u16>,
    /// Which interactions on which types are cached; the first matching rule applies.
    pub rules: Vec<CacheRule>,
}

/// One `cache.rules` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheRule {
    /// The types the rule covers; ignored for `capabilities`.
    pub resource_types: Vec<ResourceType>,
    /// `"*"` in the list: every type.
    pub all_types: bool,
    pub interactions: Vec<CacheInteraction>,
    /// Overrides `default_ttl`.
    pub ttl: Option<Duration>,
}

/// What a rule may cache. `search` covers type-level searches and compartment searches
/// naming their target type (`Patient/1/Observation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheInteraction {
    Read,
    Vread,
    Search,
    Capabilities,
}

impl CacheInteraction {
    /// The config spelling.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "read" => CacheInteraction::Read,
            "vread" => CacheInteraction::Vread,
            "search" => CacheInteraction::Search,
            "capabilities" => CacheInteraction::Capabilities,
            _ => return None,
        })
    }
}

impl CacheConfig {
    /// The documented defaults with no rules (so nothing is cached until rules are added).
    pub fn new() -> Self {
        CacheConfig {
            max_memory: 64 * 1024 * 1024,
            max_entry_size: 1024 * 1024,
            default_ttl: Duration::from_secs(60),
            statuses: vec![200, 404],
            rules: Vec::new(),
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig::new()
    }
}

impl CacheRule {
    pub fn new(
        resource_types: Vec<ResourceType>,
        interactions: Vec<CacheInteraction>,
        ttl: Option<Duration>,
    ) -> Self {
        CacheRule {
            resource_types,
            all_types: false,
            interactions,
            ttl,
        }
    }

    /// A rule for every resource type.
    pub fn any_type(interactions: Vec<CacheInteraction>, ttl: Option<Duration>) -> Self {
        CacheRule {
            resource_types: Vec::new(),
            all_types: true,
            interactions,
            ttl,
        }
    }

    fn covers(&self, interaction: CacheInteraction, resource_type: Option<ResourceType>) -> bool {
        if !self.interactions.contains(&interaction) {
            return false;
        }
        match resource_type {
            None => interaction == CacheInteraction::Capabilities,
            Some(t) => self.all_types || self.resource_types.contains(&t),
        }
    }
}

/// The TTL for this interaction from the first rule covering it, or `None` when no rule does.
pub(crate) fn rule_ttl(
    config: &CacheConfig,
    interaction: CacheInteraction,
    resource_type: Option<ResourceType>,
) -> Option<Duration> {
    config
        .rules
        .iter()
        .find(|r| r.covers(interaction, resource_type))
        .map(|r| r.ttl.unwrap_or(config.default_ttl))
}
