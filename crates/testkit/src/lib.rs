//! Test-only helpers: gateways on ephemeral ports, a local OIDC issuer, token minting, fixtures.
//!
//! Every server here binds `127.0.0.1:0`; nothing uses a fixed port or leaves loopback.

pub mod gateway;
pub mod issuer;
pub mod mint;
pub mod process;
pub mod upstream;
