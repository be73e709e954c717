//! The decision: scopes × classified request × patient context → [`Decision`].
//!
//! Order of evaluation for every interaction: find the permission letter; look for a
//! `user/` or `system/` scope that grants it (no compartment, only type and granular
//! checks); otherwise for a `patient/` scope (confined to the token's patient); otherwise
//! deny with `insufficient_scope`. Scopes union; a restriction only narrows.

use fhirgate_fhir::compartment::is_patient_compartment_type;
use fhirgate_fhir::{FhirRequest, Interaction, ResourceType, SearchParams};

use crate::body::RequestBodyCheck;
use crate::decision::{AllowWithin, Decision, DenyKind, DenyReason, Grant, Mutation, Policy};
use crate::restriction::Restriction;
use crate::scope::{Permission, Permissions, ScopeContext};
use crate::search_rules::{
    confined_to_patient, granular_search, keep_anchor_elements, patient_mutation, refuse_unprovable,
};
use crate::verify::ResponseCheck;

/// Which scopes grant a permission: unrestricted (`None`) or only under restrictions.
pub(crate) type Restrictions<'a> = Option<Vec<&'a Restriction>>;

/// Which kind of scope carries the request.
pub(crate) enum Route<'a> {
    /// `user/` or `system/`: no compartment.
    Broad(Restrictions<'a>),
    /// `patient/`, with the token's patient.
    Patient(Restrictions<'a>, &'a str),
}

pub(crate) struct Ctx<'a> {
    pub grant: &'a Grant,
    pub policy: &'a Policy,
    pub req: &'a FhirRequest,
}

impl<'a> Ctx<'a> {
    /// Scopes of these contexts granting `p` on `rt` (`None`: only `*` scopes count).
    pub fn find(
        &self,
        patient: bool,
        rt: Option<ResourceType>,
        p: Permission,
    ) -> Option<Restrictions<'a>> {
        let mut restricted = Vec::new();
        let mut any = false;
        for s in &self.grant.scopes.resources {
            let context_ok = (s.context == ScopeContext::Patient) == patient;
            let type_ok = match rt {
                Some(rt) => s.resource.matches(rt),
                None => s.resource == crate::scope::TypeSelector::All,
            };
            if !context_ok || !type_ok || !s.permissions.contains(p) {
                continue;
            }
            any = true;
            match &s.restriction {
                None => return Some(None),
                Some(r) => restricted.push(r),
            }
        }
        any.then_some(Some(restricted))
    }

    /// Pick the scopes that carry the request. An unrestricted `user/`/`system/` grant wins;
    /// an unrestricted `patient/` grant (with context) beats a restricted broad one, since
    /// taking the narrower route would refuse what the token allows.
    pub fn route(&self, rt: Option<ResourceType>, p: Permission) -> Result<Route<'a>, DenyReason> {
        let broad = self.find(false, rt, p);
        if let Some(None) = broad {
            return Ok(Route::Broad(None));
        }
        let patient_scoped = self.find(true, rt, p);
        match (broad, patient_scoped, self.grant.patient.as_deref()) {
            (_, Some(None), Some(patient)) => Ok(Route::Patient(None, patient)),
            (None, Some(r), Some(patient)) => Ok(Route::Patient(r, patient)),
            (Some(r), _, _) => Ok(Route::Broad(r)),
            (None, Some(_), None) => Err(DenyReason::new(
                DenyKind::Forbidden,
                "patient/ scopes need a patient context, and the token has none",
            )),
            (None, None, _) => Err(DenyReason::scope(p, rt)),
        }
    }

    pub fn check(&self, letters: Permissions) -> ResponseCheck {
        ResponseCheck {
            scopes: self.grant.scopes.clone(),
            patient: self.grant.patient.clone(),
            bases: self.policy.fhir_bases.clone(),
            hide_existence: self.policy.hide_existence,
            letters,
        }
    }

    pub fn within(
        &self,
        patient: Option<&str>,
        mutations: Vec<Mutation>,
        letters: Permissions,
    ) -> AllowWithin {
        AllowWithin {
            patient: patient.map(str::to_owned),
            mutations,
            fetch_current: false,
            body: None,
            check: self.check(letters),
        }
    }
}

pub(crate) fn allow_within(a: AllowWithin) -> Decision {
    Decision::AllowWithin(Box::new(a))
}

pub(crate) const READ_LETTERS: Permissions = Permissions::READ_SEARCH;

/// Decide whether `grant` may perform `req`. Pure and synchronous.
pub fn authorize(grant: &Grant, req: &FhirRequest, policy: &Policy) -> Decision {
    let ctx = Ctx { grant, policy, req };
    match decide(&ctx) {
        Ok(d) => d,
        Err(reason) => Decision::Deny(reason),
    }
}

fn decide(ctx: &Ctx<'_>) -> Result<Decision, DenyReason> {
    use Interaction as I;
    let params = &ctx.req.params;
    Ok(match &ctx.req.interaction {
        I::Capabilities => Decision::Allow,
        I::Read { resource_type, id }
        | I::Vread {
            resource_type, id, ..
        }
        | I::HistoryInstance { resource_type, id } => read(ctx, *resource_type, id)?,
        I::SearchType { resource_type } => search(ctx, Some(*resource_type), params, true)?,
        I::SearchSystem => search_system(ctx)?,
        I::SearchCompartment {
            compartment,
            id,
            target,
        } => compartment_search(ctx, *compartment, id, *target)?,
        I::HistoryType { resource_type } => broad_only(
            ctx,
            Some(*resource_type),
            Permission::Search,
            "type history",
        )?,
        I::HistorySystem => broad_only(ctx, None, Permission::Search, "system history")?,
        I::Create {
            resource_type,
            conditional,
        } => create(ctx, *resource_type, conditional.as_deref())?,
        I::Update { resource_type, id } => write_by_id(ctx, *resource_type, id, Write::Update)?,
        I::Patch { resource_type, id } => write_by_id(ctx, *resource_type, id, Write::Patch)?,
        I::Delete { resource_type, id } => write_by_id(ctx, *resource_type, id, Write::Delete)?,
        I::ConditionalUpdate { resource_type } => conditional(ctx, *resource_type, Write::Update)?,
        I::ConditionalPatch { resource_type } => conditional(ctx, *resource_type, Write::Patch)?,
        I::ConditionalDelete { resource_type } => conditional(ctx, *resource_type, Write::Delete)?,
        I::BatchOrTransaction => {
            // The entries decide; the body must go through `authorize_bundle`.
            let mut a = ctx.within(ctx.grant.patient(), Vec::new(), READ_LETTERS);
            a.body = Some(RequestBodyCheck::Bundle);
            allow_within(a)
        }
        I::Operation { name, level } => crate::operations::operation(ctx, name, level)?,
        _ => {
            return Err(DenyReason::new(
                DenyKind::NotSupported,
                "this interaction is not supported by the gateway",
            ));
        }
    })
}

fn other_patient(ctx: &Ctx<'_>, rt: ResourceType) -> DenyReason {
    DenyReason::other_patient(
        ctx.policy.hide_existence,
        format!("the token's patient context does not allow access to this {rt}"),
    )
}

/// read, vread, instance history: `r`.
pub(crate) fn read(ctx: &Ctx<'_>, rt: ResourceType, id: &str) -> Result<Decision, DenyReason> {
    let params = &ctx.req.params;
    match ctx.route(Some(rt), Permission::Read)? {
        Route::Broad(None) => Ok(Decision::Allow),
        Route::Broad(Some(rs)) => {
            let keep = keep_anchor_elements(None, params, Some(&rs))?;
            Ok(allow_within(ctx.within(
                None,
                keep.into_iter().collect(),
                READ_LETTERS,
            )))
        }
        Route::Patient(rs, patient) => {
            if rt == ResourceType::Patient && id != patient {
                return Err(other_patient(ctx, rt));
            }
            let keep = keep_anchor_elements(Some(rt), params, rs.as_deref())?;
            Ok(allow_within(ctx.within(
                Some(patient),
                keep.into_iter().collect(),
                READ_LETTERS,
            )))
        }
    }
}

/// Type-level search (`inject`: add the patient when absent) or a search inside an
/// already confining path (compartment search, `$everything`).
pub(crate) fn search(
    ctx: &Ctx<'_>,
    rt: Option<ResourceType>,
    params: &SearchParams,
    inject: bool,
) -> Result<Decision, DenyReason> {
    match ctx.route(rt, Permission::Search)? {
        Route::Broad(restrictions) => {
            let mut mutations = granular_search(rt, restrictions.as_deref(), params)?;
            if restrictions.is_some() {
                mutations.extend(keep_anchor_elements(None, params, restrictions.as_deref())?);
            }
            let includes = params.contains("_include") || params.contains("_revinclude");
            if restrictions.is_none() && !includes {
                Ok(Decision::Allow)
            } else {
                Ok(allow_within(ctx.within(None, mutations, READ_LETTERS)))
            }
        }
        Route::Patient(restrictions, patient) => {
            refuse_unprovable(params)?;
            let confined = confined_to_patient(rt, params, patient, ctx.policy)?;
            let mut mutations = Vec::new();
            if let Some(rt) = rt
                && inject
                && !confined
                && is_patient_compartment_type(rt)
            {
                if !ctx.policy.inject_patient {
                    return Err(DenyReason::new(
                        DenyKind::Forbidden,
                        format!("search on {rt} must name the token's patient"),
                    ));
                }
                mutations.extend(patient_mutation(rt, patient));
            }
            mutations.extend(granular_search(rt, restrictions.as_deref(), params)?);
            mutations.extend(keep_anchor_elements(rt, params, restrictions.as_deref())?);
            Ok(allow_within(ctx.within(
                Some(patient),
                mutations,
                READ_LETTERS,
            )))
        }
    }
}

/// Parameters of a server paging link (HAPI `?_getpages=…`). The page belongs to a search
/// authorized earlier; the token in it is opaque, so the page is answered through the
/// response check alone.
const PAGING: &[&str] = &[
    "_getpages",
    "_getpagesoffset",
    "_count",
    "_format",
    "_pretty",
    "_bundletype",
];

fn search_system(ctx: &Ctx<'_>) -> Result<Decision, DenyReason> {
    let params = &ctx.req.params;
    if params.contains("_getpages") && params.iter().all(|p| PAGING.contains(&p.name.as_str())) {
        let searchable = ctx
            .grant
            .scopes
            .resources
            .iter()
            .any(|s| s.permissions.contains(Permission::Search));
        if !searchable {
            return Err(DenyReason::scope(Permission::Search, None));
        }
        let patient = ctx.grant.patient();
        return Ok(allow_within(ctx.within(patient, Vec::new(), READ_LETTERS)));
    }
    let types: Vec<ResourceType> = ctx
        .req
        .params
        .values_of("_type")
        .filter_map(ResourceType::from_name)
        .collect();
    if types.is_empty() || ctx.req.params.values_of("_type").count() != types.len() {
        return broad_only(ctx, None, Permission::Search, "system-level search");
    }
    for rt in &types {
        broad_only(ctx, Some(*rt), Permission::Search, "system-level search")?;
    }
    Ok(allow_within(ctx.within(None, Vec::new(), READ_LETTERS)))
}

/// Interactions that cannot be confined to one patient: only `user/` and `system/`.
pub(crate) fn broad_only(
    ctx: &Ctx<'_>,
    rt: Option<ResourceType>,
    p: Permission,
    what: &str,
) -> Result<Decision, DenyReason> {
    match ctx.route(rt, p)? {
        Route::Broad(None) => Ok(Decision::Allow),
        Route::Broad(Some(_)) => Ok(allow_within(ctx.within(None, Vec::new(), READ_LETTERS))),
        Route::Patient(..) => Err(DenyReason::new(
            DenyKind::Forbidden,
            format!("{what} is not available under patient/ scopes"),
        )),
    }
}

fn compartment_search(
    ctx: &Ctx<'_>,
    compartment: ResourceType,
    id: &str,
    target: Option<ResourceType>,
) -> Result<Decision, DenyReason> {
    // `/Patient/{id}/*` needs a `*` scope: the route for `None` only finds those.
    if let Route::Patient(_, patient) = ctx.route(target, Permission::Search)? {
        if compartment != ResourceType::Patient {
            return Err(DenyReason::new(
                DenyKind::Forbidden,
                format!(
                    "{compartment} compartment searches are not available under patient/ scopes"
                ),
            ));
        }
        if id != patient {
            return Err(other_patient(ctx, compartment));
        }
    }
    search(ctx, target, &ctx.req.params, false)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Write {
    Update,
    Patch,
    Delete,
}

impl Write {
    fn permission(self) -> Permission {
        match self {
            Write::Update | Write::Patch => Permission::Update,
            Write::Delete => Permission::Delete,
        }
    }

    fn letters(self) -> Permissions {
        READ_LETTERS.with(self.permission())
    }
}

/// Writes under `patient/` scopes are only possible for compartment types (a resource of
/// another type cannot be "in the patient's compartment").
fn patient_write_target(rt: ResourceType, p: Permission) -> Result<(), DenyReason> {
    if is_patient_compartment_type(rt) {
        Ok(())
    } else {
        Err(DenyReason::new(
            DenyKind::Forbidden,
            format!(
                "patient/ scopes cannot {} {rt}: it is outside the Patient compartment",
                p.verb()
            ),
        ))
    }
}

fn create(ctx: &Ctx<'_>, rt: ResourceType, criteria: Option<&str>) -> Result<Decision, DenyReason> {
    let letters = READ_LETTERS.with(Permission::Create);
    let body = Some(RequestBodyCheck::Resource {
        resource_type: rt,
        id: None,
    });
    match ctx.route(Some(rt), Permission::Create)? {
        Route::Broad(None) => Ok(Decision::Allow),
        Route::Broad(Some(rs)) => {
            let mut a = ctx.within(None, Vec::new(), letters);
            if let Some(q) = criteria {
                let params = parse_criteria(q)?;
                let added = granular_search(Some(rt), Some(rs.as_slice()), &params)?;
                a.mutations = if_none_exist(params, added);
            }
            a.body = body;
            Ok(allow_within(a))
        }
        Route::Patient(rs, patient) => {
            if rt == ResourceType::Patient {
                return Err(DenyReason::new(
                    DenyKind::Forbidden,
                    "patient/ scopes cannot create Patient resources",
                ));
            }
            patient_write_target(rt, Permission::Create)?;
            let mut a = ctx.within(Some(patient), Vec::new(), letters);
            if let Some(q) = criteria {
                let params = parse_criteria(q)?;
                let mut added = confine(ctx, rt, &params, patient)?;
                added.extend(granular_search(Some(rt), rs.as_deref(), &params)?);
                a.mutations = if_none_exist(params, added);
            }
            a.body = body;
            Ok(allow_within(a))
        }
    }
}

fn parse_criteria(q: &str) -> Result<SearchParams, DenyReason> {
    SearchParams::parse(q)
        .map_err(|e| DenyReason::new(DenyKind::Invalid, format!("If-None-Exist criteria: {e}")))
}

fn if_none_exist(mut params: SearchParams, added: Vec<Mutation>) -> Vec<Mutation> {
    if added.is_empty() {
        return Vec::new();
    }
    for m in &added {
        m.apply_to(&mut params);
    }
    vec![Mutation::SetIfNoneExist(params.to_query_string())]
}

/// The patient checks of a search, for the criteria of a conditional interaction.
fn confine(
    ctx: &Ctx<'_>,
    rt: ResourceType,
    params: &SearchParams,
    patient: &str,
) -> Result<Vec<Mutation>, DenyReason> {
    refuse_unprovable(params)?;
    if confined_to_patient(Some(rt), params, patient, ctx.policy)? {
        return Ok(Vec::new());
    }
    // Conditional writes always carry the patient, whatever `inject_patient` says:
    // unconfined criteria could select any patient's resources.
    Ok(patient_mutation(rt, patient).into_iter().collect())
}

fn write_by_id(
    ctx: &Ctx<'_>,
    rt: ResourceType,
    id: &str,
    kind: Write,
) -> Result<Decision, DenyReason> {
    let body = match kind {
        Write::Update => Some(RequestBodyCheck::Resource {
            resource_type: rt,
            id: Some(id.to_owned()),
        }),
        Write::Patch => Some(RequestBodyCheck::JsonPatch {
            resource_type: rt,
            id: id.to_owned(),
        }),
        Write::Delete => None,
    };
    let (patient, restricted) = match ctx.route(Some(rt), kind.permission())? {
        Route::Broad(None) => return Ok(Decision::Allow),
        Route::Broad(Some(_)) => (None, true),
        Route::Patient(rs, patient) => {
            if rt == ResourceType::Patient {
                if kind == Write::Delete {
                    return Err(DenyReason::new(
                        DenyKind::Forbidden,
                        "patient/ scopes cannot delete Patient resources",
                    ));
                }
                if id != patient {
                    return Err(other_patient(ctx, rt));
                }
            } else {
                patient_write_target(rt, kind.permission())?;
            }
            (Some(patient), rs.is_some())
        }
    };
    let mut a = ctx.within(patient, Vec::new(), kind.letters());
    // The Patient resource itself is identified by the URL id; anything else must be
    // checked where it is stored now.
    a.fetch_current = restricted || rt != ResourceType::Patient || kind == Write::Patch;
    a.body = body;
    Ok(allow_within(a))
}

fn conditional(ctx: &Ctx<'_>, rt: ResourceType, kind: Write) -> Result<Decision, DenyReason> {
    let params = &ctx.req.params;
    let body = match kind {
        Write::Update => Some(RequestBodyCheck::Resource {
            resource_type: rt,
            id: None,
        }),
        Write::Patch => Some(RequestBodyCheck::ConditionalJsonPatch { resource_type: rt }),
        Write::Delete => None,
    };
    let (patient, mutations) = match ctx.route(Some(rt), kind.permission())? {
        Route::Broad(None) => return Ok(Decision::Allow),
        Route::Broad(Some(rs)) => (
            None,
            granular_search(Some(rt), Some(rs.as_slice()), params)?,
        ),
        Route::Patient(rs, patient) => {
            if rt == ResourceType::Patient && kind == Write::Delete {
                return Err(DenyReason::new(
                    DenyKind::Forbidden,
                    "patient/ scopes cannot delete Patient resources",
                ));
            }
            if rt != ResourceType::Patient {
                patient_write_target(rt, kind.permission())?;
            }
            let mut m = confine(ctx, rt, params, patient)?;
            m.extend(granular_search(Some(rt), rs.as_deref(), params)?);
            (Some(patient), m)
        }
    };
    let mut a = ctx.within(patient, mutations, kind.letters());
    a.body = body;
    Ok(allow_within(a))
}

#[cfg(test)]
#[path = "authorize_tests.rs"]
pub(crate) mod tests;
