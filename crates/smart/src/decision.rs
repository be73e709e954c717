//! The inputs and outputs of the authorization decision: [`Grant`], [`Policy`],
//! [`Decision`], and why a request is refused ([`DenyReason`]).

use std::sync::Arc;

use fhirgate_fhir::resource_type::is_valid_id;
use fhirgate_fhir::{IssueType, OperationOutcome, ResourceType, SearchParams};

use crate::body::RequestBodyCheck;
use crate::scope::{Permission, ScopeSet};
use crate::verify::ResponseCheck;

/// What the caller's access token grants: its scopes and launch context. Built once per
/// verified token (the gateway can cache it next to the token).
#[derive(Debug, Clone)]
pub struct Grant {
    pub(crate) scopes: Arc<ScopeSet>,
    pub(crate) patient: Option<Arc<str>>,
    pub(crate) fhir_user: Option<String>,
}

impl Grant {
    /// `raw_scopes` is the space-separated `scope` claim; `patient` the SMART `patient`
    /// launch context; `fhir_user` the `fhirUser` claim (kept for audit).
    pub fn new(raw_scopes: &str, patient: Option<&str>, fhir_user: Option<&str>) -> Grant {
        Grant {
            scopes: Arc::new(ScopeSet::parse(raw_scopes)),
            // A context that is not a FHIR id (`p1,p2`, `p1&x=y`) would change the meaning
            // of the search it is injected into: treat it as no context at all.
            patient: patient.filter(|p| is_valid_id(p)).map(Arc::from),
            fhir_user: fhir_user.map(str::to_owned),
        }
    }

    pub fn scopes(&self) -> &ScopeSet {
        &self.scopes
    }

    pub fn patient(&self) -> Option<&str> {
        self.patient.as_deref()
    }

    pub fn fhir_user(&self) -> Option<&str> {
        self.fhir_user.as_deref()
    }
}

/// Site switches that shape decisions (from the gateway config).
#[derive(Debug, Clone)]
pub struct Policy {
    /// Answer another patient's data with 404 `not-found` instead of 403 `forbidden`.
    pub hide_existence: bool,
    /// Add the token's patient to searches that name none (otherwise such searches are
    /// refused with 403).
    pub inject_patient: bool,
    /// Absolute FHIR base URLs that mean "this server" in references and search values
    /// (the public base, and the upstream base if bodies reach the check unrewritten).
    pub fhir_bases: Arc<[String]>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            hide_existence: false,
            inject_patient: true,
            fhir_bases: Arc::from(Vec::new()),
        }
    }
}

impl Policy {
    pub fn with_bases<I: IntoIterator<Item = S>, S: Into<String>>(mut self, bases: I) -> Self {
        self.fhir_bases = bases.into_iter().map(Into::into).collect::<Vec<_>>().into();
        self
    }
}

/// The outcome of [`crate::authorize`].
#[derive(Debug, Clone)]
pub enum Decision {
    /// Forward as is; the response needs no check.
    Allow,
    /// Forward after applying the mutations, run the checks, and verify the response.
    AllowWithin(Box<AllowWithin>),
    /// Refuse; nothing is forwarded.
    Deny(DenyReason),
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        !matches!(self, Decision::Deny(_))
    }

    pub fn deny_reason(&self) -> Option<&DenyReason> {
        match self {
            Decision::Deny(r) => Some(r),
            _ => None,
        }
    }

    pub fn allow_within(&self) -> Option<&AllowWithin> {
        match self {
            Decision::AllowWithin(a) => Some(a),
            _ => None,
        }
    }
}

/// A constrained allow: what the gateway must do around forwarding.
#[derive(Debug, Clone)]
pub struct AllowWithin {
    /// The patient whose compartment the request is confined to (`None` for `user/` and
    /// `system/` grants that only need type or granular checks).
    pub patient: Option<String>,
    /// Changes to make to the request before forwarding, in order.
    pub mutations: Vec<Mutation>,
    /// Before forwarding, GET the same path upstream and pass the resource (if any) to
    /// [`AllowWithin::check_current`]: an update, patch or delete by id must not touch a
    /// resource outside the grant. Send `If-Match` with the fetched version to close the
    /// race between the check and the write.
    pub fetch_current: bool,
    /// The request body must pass [`AllowWithin::check_body`] before forwarding.
    pub body: Option<RequestBodyCheck>,
    /// How to verify the upstream's response ([`crate::verify_response`]).
    pub check: ResponseCheck,
}

/// One change to the request before it is forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// Append `name=value` to the query. The value is decoded; a `,` in it is the FHIR OR
    /// separator and must stay a raw comma ([`SearchParams::push`] does that).
    AddParam { name: String, value: String },
    /// Replace every parameter called `name` by one `name=value` ([`SearchParams::set`]);
    /// used to keep the elements the response check needs in an `_elements` list.
    SetParam { name: String, value: String },
    /// Replace the `If-None-Exist` header (conditional create) with this query string.
    SetIfNoneExist(String),
}

impl Mutation {
    /// Apply a query mutation to a parameter list (no-op for header mutations).
    pub fn apply_to(&self, params: &mut SearchParams) {
        match self {
            Mutation::AddParam { name, value } => params.push(name, value),
            Mutation::SetParam { name, value } => params.set(name, value),
            Mutation::SetIfNoneExist(_) => {}
        }
    }
}

/// Why a request or response was refused; decides status, issue code and OAuth error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DenyKind {
    /// The scopes do not grant the permission: 403 `forbidden`,
    /// `WWW-Authenticate: Bearer error="insufficient_scope"`.
    InsufficientScope,
    /// Another patient's data, or data that cannot be shown to be the token patient's:
    /// 403 `forbidden`.
    OtherPatient,
    /// As [`DenyKind::OtherPatient`] under the hide-existence switch: 404 `not-found`.
    Hidden,
    /// Refused by policy although scopes name the type (e.g. system search under a
    /// `patient/` scope, patient scope without patient context): 403 `forbidden`.
    Forbidden,
    /// A construct the gateway cannot prove safe (chains, `_has`, `_filter`, `$graphql`,
    /// FHIRPath Patch): 400 `not-supported`.
    NotSupported,
    /// Malformed input the decision needs (a Bundle that is not a batch): 400 `invalid`.
    Invalid,
}

/// A refusal with a diagnostic safe to send to the client: it names the missing
/// permission or the rule, never another patient's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyReason {
    pub kind: DenyKind,
    pub diagnostic: String,
}

impl DenyReason {
    pub fn new(kind: DenyKind, diagnostic: impl Into<String>) -> Self {
        DenyReason {
            kind,
            diagnostic: diagnostic.into(),
        }
    }

    pub(crate) fn scope(p: Permission, rt: Option<ResourceType>) -> Self {
        let what = rt.map_or("all resource types", ResourceType::as_str);
        DenyReason::new(
            DenyKind::InsufficientScope,
            format!("scope does not allow {} on {what}", p.verb()),
        )
    }

    /// Another patient's data: 403, or 404 under `hide_existence`.
    pub(crate) fn other_patient(hide: bool, diagnostic: impl Into<String>) -> Self {
        if hide {
            DenyReason::new(DenyKind::Hidden, "resource not found")
        } else {
            DenyReason::new(DenyKind::OtherPatient, diagnostic)
        }
    }

    pub fn http_status(&self) -> u16 {
        match self.kind {
            DenyKind::InsufficientScope | DenyKind::OtherPatient | DenyKind::Forbidden => 403,
            DenyKind::Hidden => 404,
            DenyKind::NotSupported | DenyKind::Invalid => 400,
        }
    }

    pub fn issue_type(&self) -> IssueType {
        match self.kind {
            DenyKind::InsufficientScope | DenyKind::OtherPatient | DenyKind::Forbidden => {
                IssueType::Forbidden
            }
            DenyKind::Hidden => IssueType::NotFound,
            DenyKind::NotSupported => IssueType::NotSupported,
            DenyKind::Invalid => IssueType::Invalid,
        }
    }

    /// RFC 6750 `error` for `WWW-Authenticate`, when the scopes are the cause.
    pub fn oauth_error(&self) -> Option<&'static str> {
        (self.kind == DenyKind::InsufficientScope).then_some("insufficient_scope")
    }

    pub fn to_outcome(&self) -> OperationOutcome {
        OperationOutcome::error(self.issue_type(), self.diagnostic.clone())
    }
}

impl std::fmt::Display for DenyReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.diagnostic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_kinds_map_to_status_issue_and_oauth_error() {
        let cases = [
            (
                DenyKind::InsufficientScope,
                403,
                IssueType::Forbidden,
                Some("insufficient_scope"),
            ),
            (DenyKind::OtherPatient, 403, IssueType::Forbidden, None),
            (DenyKind::Forbidden, 403, IssueType::Forbidden, None),
            (DenyKind::Hidden, 404, IssueType::NotFound, None),
            (DenyKind::NotSupported, 400, IssueType::NotSupported, None),
            (DenyKind::Invalid, 400, IssueType::Invalid, None),
        ];
        for (kind, status, issue, oauth) in cases {
            let r = DenyReason::new(kind, "why");
            assert_eq!(r.http_status(), status, "{kind:?}");
            assert_eq!(r.issue_type(), issue, "{kind:?}");
            assert_eq!(r.oauth_error(), oauth, "{kind:?}");
            let oo = r.to_outcome().to_json();
            assert_eq!(oo["issue"][0]["code"], issue.as_str());
            assert_eq!(oo["issue"][0]["diagnostics"], "why");
        }
    }

    #[test]
    fn scope_diagnostic_names_the_missing_permission() {
        let r = DenyReason::scope(Permission::Search, Some(ResourceType::Condition));
        assert_eq!(r.diagnostic, "scope does not allow search on Condition");
        let hidden = DenyReason::other_patient(true, "the Observation belongs to someone else");
        assert_eq!(hidden.kind, DenyKind::Hidden);
        assert_eq!(hidden.diagnostic, "resource not found");
    }

    #[test]
    fn query_mutations_apply_and_header_mutations_do_not() {
        let mut params = SearchParams::parse("code=x&_elements=code").unwrap();
        Mutation::AddParam {
            name: "category".into(),
            value: "a|b,c|d".into(),
        }
        .apply_to(&mut params);
        Mutation::SetParam {
            name: "_elements".into(),
            value: "code,subject".into(),
        }
        .apply_to(&mut params);
        Mutation::SetIfNoneExist("identifier=1".into()).apply_to(&mut params);
        assert_eq!(
            params.to_query_string(),
            "code=x&_elements=code,subject&category=a|b,c|d"
        );
    }
}
