//! Embedded SMART authorization server, mounted under `/auth`.
