//! SMART on FHIR authorization: scopes (v1 and v2), launch context and the pure
//! authorization decision (DESIGN.md §3 steps 3 and 7). No I/O.
