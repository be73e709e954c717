//! SMART on FHIR authorization for fhirgate: scopes (v1 and v2), the pure authorization
//! decision, and verification of what the upstream returns. No I/O.
//!
//! Sits in the middle of a request's path (DESIGN.md §3): after the gateway has classified
//! the request ([`fhirgate_fhir::classify`], step 1) and verified the token (step 2), it
//! builds a [`Grant`] from the token's scopes and launch context and calls [`authorize`]
//! (step 3). The [`Decision`] says whether to forward, what to change first (add the
//! patient to a search, check a write body), and how to verify the response (step 7:
//! [`verify_response`], the backstop that keeps every other patient's data out).
//!
//! ```
//! use fhirgate_smart::{authorize, verify_response, Decision, Grant, Policy};
//! # fn classified() -> fhirgate_fhir::FhirRequest {
//! #     fhirgate_fhir::FhirRequest {
//! #         method: http::Method::GET,
//! #         interaction: fhirgate_fhir::Interaction::SearchType {
//! #             resource_type: fhirgate_fhir::ResourceType::Observation,
//! #         },
//! #         path: "/Observation".into(),
//! #         params: fhirgate_fhir::SearchParams::parse("code=1234-5").unwrap(),
//! #     }
//! # }
//! let grant = Grant::new("launch/patient patient/*.rs", Some("p1"), None);
//! let policy = Policy::default().with_bases(["https://gw.example/fhir"]);
//! let mut req = classified(); // GET /Observation?code=1234-5
//!
//! match authorize(&grant, &req, &policy) {
//!     Decision::Allow => { /* forward unchanged */ }
//!     Decision::AllowWithin(within) => {
//!         // 1. apply mutations (here: patient=p1 is added to the search)
//!         for m in &within.mutations {
//!             m.apply_to(&mut req.params);
//!         }
//!         assert_eq!(req.params.to_query_string(), "code=1234-5&patient=p1");
//!         // 2. if within.fetch_current: GET the path upstream, within.check_current(..)
//!         // 3. if within.body.is_some(): within.check_body(&body, current)
//!         // 4. forward, then verify the 2xx JSON response:
//!         let mut body = serde_json::json!({"resourceType": "Bundle", "type": "searchset",
//!             "entry": [{"resource": {"resourceType": "Observation", "id": "o2",
//!                 "subject": {"reference": "Patient/p2"}}, "search": {"mode": "match"}}]});
//!         let outcome = verify_response(&within.check, &mut body).unwrap();
//!         assert_eq!(outcome.removed_match, 1); // p2's Observation never leaves
//!     }
//!     Decision::Deny(reason) => {
//!         // reason.http_status(), reason.issue_type(), reason.oauth_error(), reason.to_outcome()
//!         # let _ = reason;
//!     }
//! }
//! ```
//!
//! [`verify_response_bytes`] is the same check on the response bytes, for the hot path: it
//! reads only the members the check looks at, and answers "pass the body unchanged",
//! "these `include` entries were cut out", or "parse the tree and call
//! [`verify_response`]" (anything else to remove, or members the check reads that appear
//! twice).
//!
//! Batch and transaction bodies go through [`authorize_bundle`], which decides every entry
//! on its own (a transaction is all-or-nothing); [`BundlePlan::rewrite`] prepares the body
//! to forward and [`BundlePlan::finish_response`] verifies the batch-response and puts the
//! refused entries back in place.
//!
//! # Rules (DESIGN.md §5 and "Decided behaviours")
//!
//! * Letters: read, vread, instance history → `r`; every search and type/system history
//!   → `s`; create → `c`; update, patch → `u`; delete → `d`; operations per the table in
//!   the `operations` module (unknown operations are refused under `patient/` scopes and
//!   need unrestricted `cruds` otherwise). `Capabilities` needs nothing.
//! * `user/` and `system/` scopes are tried first and carry no compartment; `patient/`
//!   scopes confine the request to the token's patient and need a patient context.
//! * Under `patient/` scopes: Patient read/update only for the own id; other compartment
//!   types are read and then verified; searches get the patient added (`patient=`,
//!   `subject=Patient/…`, `_id=` for Patient) unless already confined, and any other
//!   patient named anywhere (repeats, comma lists, `Patient/x`, absolute URLs,
//!   `:Patient`, POST `_search` bodies, `If-None-Exist`) is 403 `forbidden` — searches
//!   always answer 403, reads and response checks 404 under [`Policy::hide_existence`];
//!   chains, `_has`, `_filter`, `_query`, `_contained`, `_list`, unprovable modifiers
//!   (`:missing`, `:identifier`, …), `_summary=text` and `$graphql` are 400 `not-supported`;
//!   system search and history, type history, `$export` are 403; writes only for
//!   compartment types, creates of Patient and deletes of Patient never; conditional
//!   writes always get the patient criteria; update, patch and delete by id check the
//!   stored resource first (`fetch_current`); bodies and JSON Patch results must stay in
//!   the compartment. `_elements` lists are widened to keep the anchoring elements.
//! * A resource belongs to a patient when its *primary* compartment references
//!   (`subject`, `patient`, `beneficiary`, …; the id for Patient) all point at that patient
//!   on this server ([`Policy::fhir_bases`]); secondary ones (performer, author) do not make
//!   another patient's resource visible, and references that cannot be resolved (foreign
//!   base, contained, logical, `urn:`) fail closed.
//! * Granular v2 restrictions are honoured for token parameters (`category`, `code`,
//!   `status`, …, see [`restriction::TOKEN_ELEMENTS`]); a search carries the restriction or
//!   gets it added (same-parameter restrictions become one OR list), contradicting
//!   searches are 403, every returned resource must match; scopes with restrictions the
//!   gateway cannot prove are ignored (reported in [`ScopeSet::ignored`]).
//! * Known limits: non-compartment types (e.g. Device, which has a `patient` element) are
//!   visible to `patient/` scopes that name them; a Binary only hides when its
//!   `securityContext` names another Patient directly; Task is treated as a member
//!   although R4 leaves it out; Provenance is only visible when its `target` names the
//!   patient; inside a Bundle, writes by id that need `fetch_current` are refused.

mod authorize;
mod body;
mod bundle;
mod decision;
pub mod fuzzing;
mod json_scan;
mod operations;
pub mod restriction;
pub mod scope;
mod search_rules;
mod verify;
mod verify_raw;
mod verify_single;

pub use authorize::authorize;
pub use body::RequestBodyCheck;
pub use bundle::{BundlePlan, EntryPlan, authorize_bundle};
pub use decision::{AllowWithin, Decision, DenyKind, DenyReason, Grant, Mutation, Policy};
pub use scope::{
    IgnoredScope, Permission, Permissions, ResourceScope, ScopeContext, ScopeError, ScopeSet,
    SmartScope, TypeSelector, parse_scope,
};
pub use verify::{
    FilterOutcome, ResponseCheck, filter_searchset, verify_resource, verify_response,
};
pub use verify_raw::{RawVerdict, verify_response_bytes};
