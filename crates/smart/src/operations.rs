//! FHIR operations (`$name`): which permission each needs and how it is confined.
//!
//! | operation | level | needs | under `patient/` |
//! |---|---|---|---|
//! | `$everything` | Patient instance | `r` on Patient | own id only; response filtered to granted types |
//! | `$everything` | Encounter instance | `r` on Encounter | response filtered |
//! | `$everything` | Patient type | `s` on Patient | 403 |
//! | `$export` | system, Patient, Group instance | `r` on each `_type` (or `*`) | 403 (bulk data is for `system/`/`user/`) |
//! | `$lastn` | Observation type | `s` on Observation | as an Observation search (patient added) |
//! | `$stats` | Observation type | `s` on Observation | `subject` confined to the patient; refused with granular scopes |
//! | `$validate` | system/type | `c` or `u` on the type | allowed (no stored data is returned) |
//! | `$validate`, `$meta` | instance | `r` | own Patient only |
//! | `$meta` | system/type | `r` on type or `*` | 403 |
//! | `$meta-add`, `$meta-delete` | instance | `u` | 403 |
//! | `$document` | Composition instance | `r` on Composition | response Bundle verified entry by entry |
//! | `$expand`, `$lookup`, `$validate-code`, `$subsumes`, `$translate` | terminology types | `r` on ValueSet / CodeSystem / ConceptMap | allowed (not patient data) |
//! | `$match` | Patient type | `s` on Patient | 403 |
//! | `$graphql` | system/instance | `rs` on `*` | 400 not-supported |
//! | `$versions` | system | nothing | allowed |
//! | anything else | | `cruds` on the type (`*` at system level) | 403 |

use fhirgate_fhir::{OperationLevel, ResourceType};

use crate::authorize::{Ctx, READ_LETTERS, Route, allow_within, broad_only, read, search};
use crate::decision::{Decision, DenyKind, DenyReason};
use crate::scope::Permission;
use crate::search_rules::{confined_to_patient, refuse_unprovable};

pub(crate) fn operation(
    ctx: &Ctx<'_>,
    name: &str,
    level: &OperationLevel,
) -> Result<Decision, DenyReason> {
    use OperationLevel as L;
    use ResourceType as T;
    let name = name.trim_start_matches('$');
    match (name, level) {
        ("versions", L::System) => Ok(Decision::Allow),
        ("everything", L::Instance(T::Patient, id)) => everything(ctx, T::Patient, id),
        ("everything", L::Instance(T::Encounter, id)) => everything(ctx, T::Encounter, id),
        ("everything", L::Type(T::Patient)) => broad_only(
            ctx,
            Some(T::Patient),
            Permission::Search,
            "Patient/$everything",
        ),
        ("export", L::System | L::Type(T::Patient) | L::Instance(T::Group, _)) => export(ctx),
        ("lastn", L::Type(T::Observation)) => {
            search(ctx, Some(T::Observation), &ctx.req.params, true)
        }
        ("stats", L::Type(T::Observation)) => stats(ctx),
        ("validate", L::System) => any_write(ctx, None),
        ("validate", L::Type(rt)) => any_write(ctx, Some(*rt)),
        ("validate" | "meta", L::Instance(rt, id)) => instance_read_only_own(ctx, *rt, id, name),
        ("meta", L::System) => broad_only(ctx, None, Permission::Read, "$meta"),
        ("meta", L::Type(rt)) => broad_only(ctx, Some(*rt), Permission::Read, "$meta"),
        ("meta-add" | "meta-delete", L::Instance(rt, _)) => {
            broad_only(ctx, Some(*rt), Permission::Update, "changing meta")
        }
        ("document", L::Instance(T::Composition, id)) => read(ctx, T::Composition, id),
        ("expand", L::Type(T::ValueSet) | L::Instance(T::ValueSet, _))
        | ("lookup" | "subsumes", L::Type(T::CodeSystem) | L::Instance(T::CodeSystem, _))
        | (
            "validate-code",
            L::Type(T::ValueSet | T::CodeSystem) | L::Instance(T::ValueSet | T::CodeSystem, _),
        )
        | ("translate", L::Type(T::ConceptMap) | L::Instance(T::ConceptMap, _)) => {
            terminology(ctx, level)
        }
        ("match", L::Type(T::Patient)) => {
            broad_only(ctx, Some(T::Patient), Permission::Search, "$match")
        }
        ("graphql", _) => graphql(ctx),
        _ => unknown(ctx, name, level),
    }
}

fn everything(ctx: &Ctx<'_>, rt: ResourceType, id: &str) -> Result<Decision, DenyReason> {
    match ctx.route(Some(rt), Permission::Read)? {
        Route::Broad(_) => Ok(allow_within(ctx.within(None, Vec::new(), READ_LETTERS))),
        Route::Patient(_, patient) => {
            if rt == ResourceType::Patient && id != patient {
                return Err(DenyReason::other_patient(
                    ctx.policy.hide_existence,
                    "the token's patient context does not allow $everything on this Patient",
                ));
            }
            refuse_unprovable(&ctx.req.params)?;
            confined_to_patient(None, &ctx.req.params, patient, ctx.policy)?;
            Ok(allow_within(ctx.within(
                Some(patient),
                Vec::new(),
                READ_LETTERS,
            )))
        }
    }
}

fn export(ctx: &Ctx<'_>) -> Result<Decision, DenyReason> {
    let named: Vec<&str> = ctx
        .req
        .params
        .values_of("_type")
        .flat_map(|v| v.split(','))
        .collect();
    let mut types = Vec::new();
    for n in &named {
        match ResourceType::from_name(n) {
            Some(rt) => types.push(Some(rt)),
            None => {
                return Err(DenyReason::new(
                    DenyKind::Invalid,
                    "$export _type names an unknown resource type",
                ));
            }
        }
    }
    if types.is_empty() {
        types.push(None);
    }
    for rt in types {
        match ctx.route(rt, Permission::Read)? {
            Route::Broad(None) => {}
            Route::Broad(Some(_)) => {
                return Err(DenyReason::new(
                    DenyKind::InsufficientScope,
                    "$export cannot honour granular scope restrictions",
                ));
            }
            Route::Patient(..) => {
                return Err(DenyReason::new(
                    DenyKind::Forbidden,
                    "$export needs system/ or user/ scopes",
                ));
            }
        }
    }
    Ok(Decision::Allow)
}

fn stats(ctx: &Ctx<'_>) -> Result<Decision, DenyReason> {
    match ctx.route(Some(ResourceType::Observation), Permission::Search)? {
        Route::Broad(None) => Ok(Decision::Allow),
        Route::Broad(Some(_)) | Route::Patient(Some(_), _) => Err(DenyReason::new(
            DenyKind::InsufficientScope,
            "$stats cannot honour granular scope restrictions",
        )),
        Route::Patient(None, patient) => {
            refuse_unprovable(&ctx.req.params)?;
            let confined = confined_to_patient(
                Some(ResourceType::Observation),
                &ctx.req.params,
                patient,
                ctx.policy,
            )?;
            let mut a = ctx.within(Some(patient), Vec::new(), READ_LETTERS);
            if !confined {
                a.mutations.push(crate::decision::Mutation::AddParam {
                    name: "subject".to_owned(),
                    value: format!("Patient/{patient}"),
                });
            }
            Ok(allow_within(a))
        }
    }
}

/// `$validate` without an id: validating a proposed write needs `c` or `u`.
fn any_write(ctx: &Ctx<'_>, rt: Option<ResourceType>) -> Result<Decision, DenyReason> {
    let create = ctx.route(rt, Permission::Create);
    match create {
        Ok(_) => Ok(Decision::Allow),
        Err(_) => ctx.route(rt, Permission::Update).map(|_| Decision::Allow),
    }
}

/// `$validate`/`$meta` on an instance return an OperationOutcome/Parameters, which the
/// response check cannot attribute to a patient: only the own Patient under `patient/`.
fn instance_read_only_own(
    ctx: &Ctx<'_>,
    rt: ResourceType,
    id: &str,
    name: &str,
) -> Result<Decision, DenyReason> {
    match ctx.route(Some(rt), Permission::Read)? {
        Route::Broad(None) => Ok(Decision::Allow),
        Route::Broad(Some(_)) => Err(DenyReason::new(
            DenyKind::InsufficientScope,
            format!("${name} cannot honour granular scope restrictions"),
        )),
        Route::Patient(_, patient) => {
            if rt == ResourceType::Patient && id == patient {
                Ok(Decision::Allow)
            } else if rt == ResourceType::Patient {
                Err(DenyReason::other_patient(
                    ctx.policy.hide_existence,
                    format!("the token's patient context does not allow ${name} on this Patient"),
                ))
            } else {
                Err(DenyReason::new(
                    DenyKind::Forbidden,
                    format!("${name} on a {rt} instance is not available under patient/ scopes"),
                ))
            }
        }
    }
}

/// Terminology is not patient data: any scope that can read the terminology type.
fn terminology(ctx: &Ctx<'_>, level: &OperationLevel) -> Result<Decision, DenyReason> {
    let rt = match level {
        OperationLevel::Type(rt) | OperationLevel::Instance(rt, _) => Some(*rt),
        OperationLevel::System => None,
    };
    ctx.route(rt, Permission::Read).map(|_| Decision::Allow)
}

fn graphql(ctx: &Ctx<'_>) -> Result<Decision, DenyReason> {
    if ctx.grant.scopes.has_patient_scopes() && ctx.find(false, None, Permission::Read).is_none() {
        return Err(DenyReason::new(
            DenyKind::NotSupported,
            "$graphql is not supported under patient/ scopes",
        ));
    }
    for p in [Permission::Read, Permission::Search] {
        match ctx.route(None, p)? {
            Route::Broad(None) => {}
            _ => {
                return Err(DenyReason::new(
                    DenyKind::InsufficientScope,
                    "$graphql needs unrestricted user/*.rs or system/*.rs",
                ));
            }
        }
    }
    Ok(Decision::Allow)
}

fn unknown(ctx: &Ctx<'_>, name: &str, level: &OperationLevel) -> Result<Decision, DenyReason> {
    let rt = match level {
        OperationLevel::Type(rt) | OperationLevel::Instance(rt, _) => Some(*rt),
        OperationLevel::System => None,
    };
    for p in [
        Permission::Create,
        Permission::Read,
        Permission::Update,
        Permission::Delete,
        Permission::Search,
    ] {
        match ctx.route(rt, p) {
            Ok(Route::Broad(None)) => {}
            Ok(Route::Patient(..)) => {
                return Err(DenyReason::new(
                    DenyKind::Forbidden,
                    format!("operation ${name} is not available under patient/ scopes"),
                ));
            }
            _ => {
                return Err(DenyReason::new(
                    DenyKind::InsufficientScope,
                    format!(
                        "operation ${name} needs unrestricted cruds on {}",
                        rt.map_or("*", ResourceType::as_str)
                    ),
                ));
            }
        }
    }
    Ok(Decision::Allow)
}
