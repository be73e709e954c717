//! Integration tests for token verification against a real local issuer.
//!
//! One binary (link time on 2 cores). The testkit's issuer and minting modules are compiled
//! in directly by path, so these tests do not pull in the gateway crate that the rest of
//! the testkit depends on.

#[path = "../../../testkit/src/issuer.rs"]
#[allow(dead_code)]
mod issuer;
#[path = "../../../testkit/src/mint.rs"]
#[allow(dead_code)]
mod mint;

mod attacks;
mod bearer;
mod corpus;
mod introspection;
mod keyset;
mod props;
mod support;
