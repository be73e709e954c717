//! FHIR R4 vocabulary for the gateway, with no I/O.
//!
//! Sits at the very start of a request's path through fhirgate: the gateway hands the
//! method, path, query and (for `POST _search`) form body to [`classify`], which turns
//! them into a [`FhirRequest`] — the one normalised description every later phase
//! (authorization, rate limiting, caching, audit) works from. It also holds the
//! OperationOutcome and Bundle helpers used for every error the gateway originates
//! ([`bundle::classify_entries`] classifies each entry of a batch/transaction the same
//! way), and the Patient compartment tables used to decide whose data a resource is.
//!
//! Nothing here does I/O, and every function is bounded in the work it does for hostile
//! input (path length, parameter count, Bundle entry count), so the security-relevant
//! parsing is unit-, property- and fuzz-tested without a socket (`fuzz/`).

pub mod bundle;
pub mod compartment;
#[doc(hidden)]
pub mod fuzzing;
pub mod outcome;
pub mod references;
pub mod request;
pub mod resource_type;
pub mod search;

pub use bundle::{BundleError, BundleType, EntryRequest, classify_entries};
pub use outcome::{Issue, IssueSeverity, IssueType, OperationOutcome};
pub use request::{ClassifyError, FhirRequest, Interaction, OperationLevel, classify};
pub use resource_type::ResourceType;
pub use search::{SearchParam, SearchParams};

/// Media type of every FHIR JSON body fhirgate produces.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";
