//! Embedded FHIR R4 server on SQLite.
