//! Test-only helpers: gateways on ephemeral ports, a local OIDC issuer, token minting, fixtures.
