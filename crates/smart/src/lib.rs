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
//! Batch and transaction bodies go through [`authorize_bundle`], which decides every entry
//! on its own (a transaction is all-or-nothing).

mod authorize;
mod body;
mod bundle;
mod decision;
mod operations;
pub mod restriction;
pub mod scope;
mod search_rules;
mod verify;

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
