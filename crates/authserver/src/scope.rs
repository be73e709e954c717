//! A deliberately small reading of the SMART scope grammar (App Launch 2.2 §scopes):
//! enough to decide whether one scope is covered by another (client policy, refresh
//! narrowing) and to explain a scope in plain language on the consent page. The gateway's
//! `smart` crate owns the authoritative parser used for authorization decisions.

/// `patient/`, `user/` or `system/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Patient,
    User,
    System,
}

/// A resource scope, permissions normalised to the v2 `cruds` bit set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceScope {
    pub context: Context,
    pub resource_type: String,
    /// Bits: c=1, r=2, u=4, d=8, s=16.
    pub perms: u8,
    pub query: Option<String>,
}

const C: u8 = 1;
const R: u8 = 2;
const U: u8 = 4;
const D: u8 = 8;
const S: u8 = 16;

impl ResourceScope {
    pub fn parse(raw: &str) -> Option<Self> {
        let (ctx, rest) = raw.split_once('/')?;
        let context = match ctx {
            "patient" => Context::Patient,
            "user" => Context::User,
            "system" => Context::System,
            _ => return None,
        };
        let (body, query) = match rest.split_once('?') {
            Some((b, q)) if !q.is_empty() => (b, Some(q.to_string())),
            Some(_) => return None,
            None => (rest, None),
        };
        let (rtype, perms) = body.split_once('.')?;
        let valid_type = rtype == "*"
            || (rtype.starts_with(|c: char| c.is_ascii_uppercase())
                && rtype.chars().all(|c| c.is_ascii_alphanumeric()));
        if !valid_type {
            return None;
        }
        let perms = parse_perms(perms)?;
        Some(Self {
            context,
            resource_type: rtype.to_string(),
            perms,
            query,
        })
    }

    /// True when everything `other` allows is also allowed by `self`.
    pub fn covers(&self, other: &Self) -> bool {
        self.context == other.context
            && (self.resource_type == "*" || self.resource_type == other.resource_type)
            && other.perms & !self.perms == 0
            && (self.query.is_none() || self.query == other.query)
    }
}

fn parse_perms(p: &str) -> Option<u8> {
    match p {
        "read" => return Some(R | S),
        "write" => return Some(C | U | D),
        "*" => return Some(C | R | U | D | S),
        _ => {}
    }
    // v2: a non-empty subset of `cruds`, in that order, no repeats.
    let order = [('c', C), ('r', R), ('u', U), ('d', D), ('s', S)];
    let mut bits = 0u8;
    let mut pos = 0usize;
    for ch in p.chars() {
        let idx = order.iter().skip(pos).position(|(c, _)| *c == ch)? + pos;
        bits |= order.get(idx)?.1;
        pos = idx + 1;
    }
    (bits != 0).then_some(bits)
}

/// Whether `granting` (one scope) covers `requested` (one scope). Non-resource scopes
/// (openid, launch, offline_access, ...) are only covered by themselves.
pub fn covers(granting: &str, requested: &str) -> bool {
    if granting == requested {
        return true;
    }
    match (
        ResourceScope::parse(granting),
        ResourceScope::parse(requested),
    ) {
        (Some(g), Some(r)) => g.covers(&r),
        _ => false,
    }
}

/// Whether every scope in `requested` is covered by some scope in `granted`.
pub fn all_covered(granted: &[String], requested: &[String]) -> bool {
    requested
        .iter()
        .all(|r| granted.iter().any(|g| covers(g, r)))
}

/// Splits a space-separated scope string, dropping empties and duplicates, keeping order.
pub fn split(scope: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    out
}

pub fn join(scopes: &[String]) -> String {
    scopes.join(" ")
}

/// A scope that is a `patient/` resource scope: granting it needs a patient context.
pub fn is_patient_scope(s: &str) -> bool {
    s.starts_with("patient/")
}

/// "AllergyIntolerance" → "allergy intolerance records".
fn humanize_type(t: &str) -> String {
    if t == "*" {
        return "all kinds of data".to_string();
    }
    let mut words = String::new();
    for (i, ch) in t.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            words.push(' ');
        }
        words.push(ch.to_ascii_lowercase());
    }
    format!("{words} records")
}

fn humanize_perms(bits: u8) -> String {
    let mut verbs: Vec<&str> = Vec::new();
    if bits & R != 0 {
        verbs.push("read");
    }
    if bits & S != 0 {
        verbs.push("search");
    }
    if bits & C != 0 {
        verbs.push("create");
    }
    if bits & U != 0 {
        verbs.push("update");
    }
    if bits & D != 0 {
        verbs.push("delete");
    }
    match verbs.as_slice() {
        [] => String::new(),
        [one] => capitalize(one),
        [init @ .., last] => capitalize(&format!("{} and {last}", init.join(", "))),
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// Plain-language text for the consent page.
pub fn describe(scope: &str) -> String {
    match scope {
        "openid" => return "Confirm your identity to the app".to_string(),
        "fhirUser" => return "Know who you are (your user record)".to_string(),
        "profile" => return "See your basic profile".to_string(),
        "launch" => return "Know which patient and encounter are open in the EHR".to_string(),
        "launch/patient" => return "Know which patient record you choose".to_string(),
        "launch/encounter" => return "Know which encounter you choose".to_string(),
        "offline_access" => {
            return "Keep access after you close the app, until you revoke it".to_string();
        }
        "online_access" => return "Keep access while you are signed in".to_string(),
        _ => {}
    }
    let Some(rs) = ResourceScope::parse(scope) else {
        return format!("Other permission: {scope}");
    };
    let whose = match rs.context {
        Context::Patient => "for the selected patient",
        Context::User => "that you are allowed to see",
        Context::System => "on the whole server, without a user",
    };
    let mut text = format!(
        "{} {} {whose}",
        humanize_perms(rs.perms),
        humanize_type(&rs.resource_type)
    );
    if let Some(q) = rs.query {
        let limits: Vec<String> = q
            .split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                let v = v.rsplit('|').next().unwrap_or(v);
                format!("{k} {v}")
            })
            .collect();
        text.push_str(&format!(" (only {})", limits.join(", ")));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_table() {
        let cases = [
            ("patient/*.rs", "patient/Observation.rs", true),
            ("patient/*.rs", "patient/Observation.r", true),
            ("patient/*.read", "patient/Observation.rs", true),
            ("patient/*.rs", "patient/Observation.cruds", false),
            ("patient/*.rs", "user/Observation.rs", false),
            ("patient/Observation.rs", "patient/Condition.rs", false),
            (
                "patient/Observation.rs",
                "patient/Observation.rs?category=laboratory",
                true,
            ),
            (
                "patient/Observation.rs?category=laboratory",
                "patient/Observation.rs",
                false,
            ),
            ("openid", "openid", true),
            ("openid", "fhirUser", false),
            ("system/*.*", "system/Patient.cruds", true),
            ("system/*.write", "system/Patient.r", false),
        ];
        for (g, r, want) in cases {
            assert_eq!(covers(g, r), want, "{g} covers {r}");
        }
    }

    #[test]
    fn perms_must_be_ordered_cruds() {
        assert!(ResourceScope::parse("patient/Observation.rs").is_some());
        assert!(ResourceScope::parse("patient/Observation.sr").is_none());
        assert!(ResourceScope::parse("patient/Observation.rr").is_none());
        assert!(ResourceScope::parse("patient/Observation.").is_none());
        assert!(ResourceScope::parse("patient/observation.rs").is_none());
        assert!(ResourceScope::parse("nurse/Observation.rs").is_none());
    }

    #[test]
    fn descriptions_are_plain_language() {
        assert_eq!(
            describe("patient/Observation.rs"),
            "Read and search observation records for the selected patient"
        );
        assert_eq!(
            describe("user/AllergyIntolerance.cud"),
            "Create, update and delete allergy intolerance records that you are allowed to see"
        );
        assert!(
            describe("patient/Observation.rs?category=http://x|laboratory")
                .ends_with("(only category laboratory)")
        );
    }

    #[test]
    fn split_dedups_and_narrowing_is_checked() {
        let granted = split("openid  patient/*.rs openid offline_access");
        assert_eq!(granted, vec!["openid", "patient/*.rs", "offline_access"]);
        assert!(all_covered(
            &granted,
            &split("patient/Observation.rs openid")
        ));
        assert!(!all_covered(
            &granted,
            &split("patient/Observation.rs user/*.rs")
        ));
    }
}
