//! The FHIR-aware reverse proxy (DESIGN.md §3).
