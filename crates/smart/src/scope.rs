//! SMART App Launch scopes, v1 and v2, parsed into one model.
//!
//! Grammar (SMART 2.x §"Scopes for requesting clinical data"):
//! `(patient|user|system) "/" (Type|"*") "." perms ["?" name=value *("&" name=value)]`
//! where v2 `perms` is an ordered, non-empty subset of `cruds` and v1 `perms` is `read`,
//! `write` or `*` (mapped to `rs`, `cud` and `cruds`). Anything that does not parse is
//! kept in [`ScopeSet::ignored`] with the reason and grants nothing: a malformed scope can
//! never widen access.

use std::fmt;

use fhirgate_fhir::ResourceType;
use percent_encoding::percent_decode_str;

use crate::restriction::{Restriction, RestrictionError};

/// Longest single scope we look at; longer ones are ignored (bounded work per token).
pub const MAX_SCOPE_LEN: usize = 1024;
/// Most scopes taken from one token; the rest are ignored.
pub const MAX_SCOPES: usize = 256;

/// Who the scope speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScopeContext {
    /// `patient/`: only the data of the token's patient context.
    Patient,
    /// `user/`: whatever the user may see (the upstream's business); no compartment.
    User,
    /// `system/`: a backend service; no compartment.
    System,
}

impl ScopeContext {
    pub const fn as_str(self) -> &'static str {
        match self {
            ScopeContext::Patient => "patient",
            ScopeContext::User => "user",
            ScopeContext::System => "system",
        }
    }
}

/// One SMART v2 permission letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

impl Permission {
    const fn bit(self) -> u8 {
        match self {
            Permission::Create => 1,
            Permission::Read => 2,
            Permission::Update => 4,
            Permission::Delete => 8,
            Permission::Search => 16,
        }
    }

    pub const fn letter(self) -> char {
        match self {
            Permission::Create => 'c',
            Permission::Read => 'r',
            Permission::Update => 'u',
            Permission::Delete => 'd',
            Permission::Search => 's',
        }
    }

    /// The verb used in diagnostics ("scope does not allow search on Condition").
    pub const fn verb(self) -> &'static str {
        match self {
            Permission::Create => "create",
            Permission::Read => "read",
            Permission::Update => "update",
            Permission::Delete => "delete",
            Permission::Search => "search",
        }
    }
}

/// A set of permission letters (`cruds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Permissions(u8);

impl Permissions {
    pub const NONE: Permissions = Permissions(0);
    pub const ALL: Permissions = Permissions(31);
    /// v1 `.read`.
    pub const READ_SEARCH: Permissions = Permissions(2 | 16);
    /// v1 `.write`.
    pub const WRITE: Permissions = Permissions(1 | 4 | 8);

    pub const fn with(self, p: Permission) -> Permissions {
        Permissions(self.0 | p.bit())
    }

    pub const fn contains(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    pub const fn intersects(self, other: Permissions) -> bool {
        self.0 & other.0 != 0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Parse a v2 letter string: non-empty, letters from `cruds`, in that order, no repeats.
    fn parse_v2(letters: &str) -> Option<Permissions> {
        const ORDER: [Permission; 5] = [
            Permission::Create,
            Permission::Read,
            Permission::Update,
            Permission::Delete,
            Permission::Search,
        ];
        let mut next = 0usize;
        let mut out = Permissions::NONE;
        for ch in letters.chars() {
            let pos = ORDER
                .iter()
                .skip(next)
                .position(|p| p.letter() == ch)
                .map(|i| i + next)?;
            out = out.with(*ORDER.get(pos)?);
            next = pos + 1;
        }
        (!out.is_empty()).then_some(out)
    }
}

impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in [
            Permission::Create,
            Permission::Read,
            Permission::Update,
            Permission::Delete,
            Permission::Search,
        ] {
            if self.contains(p) {
                write!(f, "{}", p.letter())?;
            }
        }
        Ok(())
    }
}

/// `*` or one resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TypeSelector {
    All,
    Type(ResourceType),
}

impl TypeSelector {
    pub fn matches(self, rt: ResourceType) -> bool {
        match self {
            TypeSelector::All => true,
            TypeSelector::Type(t) => t == rt,
        }
    }
}

/// A clinical-data scope such as `patient/Observation.rs?category=…|laboratory`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceScope {
    pub context: ScopeContext,
    pub resource: TypeSelector,
    /// Always in v2 terms; v1 scopes are mapped on parsing.
    pub permissions: Permissions,
    /// v2 granular restriction; it only ever narrows what `permissions` allow.
    pub restriction: Option<Restriction>,
    /// Whether the scope was written in v1 syntax (for echoing back, not for decisions).
    pub v1: bool,
}

impl fmt::Display for ResourceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ty = match self.resource {
            TypeSelector::All => "*",
            TypeSelector::Type(t) => t.as_str(),
        };
        write!(f, "{}/{}.{}", self.context.as_str(), ty, self.permissions)?;
        if let Some(r) = &self.restriction {
            write!(f, "?{r}")?;
        }
        Ok(())
    }
}

/// Any scope SMART defines.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SmartScope {
    Resource(ResourceScope),
    /// `launch` (EHR launch).
    Launch,
    /// `launch/patient`.
    LaunchPatient,
    /// `launch/encounter`.
    LaunchEncounter,
    /// Other `launch/<type>` context requests (go to `fhirContext`).
    LaunchOther(String),
    OpenId,
    FhirUser,
    /// SMART 1.0 `profile` (deprecated in 2.x).
    Profile,
    OfflineAccess,
    OnlineAccess,
}

/// Why a scope was ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    #[error("not a SMART scope")]
    Unknown,
    #[error("scope longer than {MAX_SCOPE_LEN} bytes")]
    TooLong,
    #[error("more than {MAX_SCOPES} scopes")]
    TooMany,
    #[error("context must be patient/, user/ or system/")]
    BadContext,
    #[error("'{0}' is not an R4 resource type")]
    UnknownResourceType(String),
    #[error("permissions must be read, write, * or an ordered subset of cruds")]
    BadPermissions,
    #[error("v1 permissions cannot carry a restriction")]
    V1Restriction,
    #[error("restriction: {0}")]
    Restriction(#[from] RestrictionError),
}

/// A scope the parser did not accept, kept for logs and the token response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredScope {
    pub scope: String,
    pub reason: ScopeError,
}

/// Parse one scope.
pub fn parse_scope(scope: &str) -> Result<SmartScope, ScopeError> {
    if scope.len() > MAX_SCOPE_LEN {
        return Err(ScopeError::TooLong);
    }
    Ok(match scope {
        "launch" => SmartScope::Launch,
        "launch/patient" => SmartScope::LaunchPatient,
        "launch/encounter" => SmartScope::LaunchEncounter,
        "openid" => SmartScope::OpenId,
        "fhirUser" => SmartScope::FhirUser,
        "profile" => SmartScope::Profile,
        "offline_access" => SmartScope::OfflineAccess,
        "online_access" => SmartScope::OnlineAccess,
        _ => {
            if let Some(rest) = scope.strip_prefix("launch/") {
                if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_lowercase()) {
                    return Ok(SmartScope::LaunchOther(rest.to_owned()));
                }
                return Err(ScopeError::Unknown);
            }
            SmartScope::Resource(parse_resource_scope(scope)?)
        }
    })
}

fn parse_resource_scope(scope: &str) -> Result<ResourceScope, ScopeError> {
    let (context, rest) = scope.split_once('/').ok_or(ScopeError::Unknown)?;
    let context = match context {
        "patient" => ScopeContext::Patient,
        "user" => ScopeContext::User,
        "system" => ScopeContext::System,
        _ => return Err(ScopeError::BadContext),
    };
    let (body, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let (ty, perms) = body.split_once('.').ok_or(ScopeError::BadPermissions)?;
    let resource = match ty {
        "*" => TypeSelector::All,
        name => TypeSelector::Type(
            ResourceType::from_name(name)
                .ok_or_else(|| ScopeError::UnknownResourceType(truncate(name)))?,
        ),
    };
    let (permissions, v1) = match perms {
        "read" => (Permissions::READ_SEARCH, true),
        "write" => (Permissions::WRITE, true),
        "*" => (Permissions::ALL, true),
        letters => (
            Permissions::parse_v2(letters).ok_or(ScopeError::BadPermissions)?,
            false,
        ),
    };
    let restriction = match query {
        None => None,
        Some(_) if v1 => return Err(ScopeError::V1Restriction),
        Some(q) => Some(Restriction::parse(q)?),
    };
    Ok(ResourceScope {
        context,
        resource,
        permissions,
        restriction,
        v1,
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Decode a `%XX`-escaped scope component (restriction names and values).
pub(crate) fn decode(s: &str) -> Option<String> {
    percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// All scopes of one token, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet {
    /// Clinical-data scopes, in token order.
    pub resources: Vec<ResourceScope>,
    pub launch: bool,
    pub launch_patient: bool,
    pub launch_encounter: bool,
    pub launch_other: Vec<String>,
    pub openid: bool,
    pub fhir_user: bool,
    pub profile: bool,
    pub offline_access: bool,
    pub online_access: bool,
    /// Scopes that grant nothing, with the reason.
    pub ignored: Vec<IgnoredScope>,
}

impl ScopeSet {
    /// Parse a space-separated scope string (the `scope` claim or token response field).
    pub fn parse(raw: &str) -> ScopeSet {
        let mut set = ScopeSet::default();
        for (i, scope) in raw.split_ascii_whitespace().enumerate() {
            if i >= MAX_SCOPES {
                set.ignored.push(IgnoredScope {
                    scope: truncate(scope),
                    reason: ScopeError::TooMany,
                });
                break;
            }
            match parse_scope(scope) {
                Ok(SmartScope::Resource(r)) => {
                    if !set.resources.contains(&r) {
                        set.resources.push(r);
                    }
                }
                Ok(SmartScope::Launch) => set.launch = true,
                Ok(SmartScope::LaunchPatient) => set.launch_patient = true,
                Ok(SmartScope::LaunchEncounter) => set.launch_encounter = true,
                Ok(SmartScope::LaunchOther(t)) => set.launch_other.push(t),
                Ok(SmartScope::OpenId) => set.openid = true,
                Ok(SmartScope::FhirUser) => set.fhir_user = true,
                Ok(SmartScope::Profile) => set.profile = true,
                Ok(SmartScope::OfflineAccess) => set.offline_access = true,
                Ok(SmartScope::OnlineAccess) => set.online_access = true,
                Err(reason) => set.ignored.push(IgnoredScope {
                    scope: truncate(scope),
                    reason,
                }),
            }
        }
        set
    }

    /// Whether any `patient/` clinical scope was granted.
    pub fn has_patient_scopes(&self) -> bool {
        self.resources
            .iter()
            .any(|s| s.context == ScopeContext::Patient)
    }
}

#[cfg(test)]
#[path = "scope_tests.rs"]
mod tests;
