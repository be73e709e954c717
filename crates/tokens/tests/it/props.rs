//! Property tests on the token parser: it never panics, and no mutation of a genuine,
//! signed token is ever accepted.

use std::sync::{Arc, OnceLock};

use fhirgate_tokens::fuzzing::check_token_bytes;
use fhirgate_tokens::{ManualClock, Verifier};
use proptest::prelude::*;

use crate::issuer::TestIssuer;
use crate::mint::now_secs;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parser_never_panics_on_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        prop_assert!(check_token_bytes(&data).is_ok());
    }

    #[test]
    fn parser_never_panics_on_token_like_text(s in "[A-Za-z0-9_\\-\\.=+/ !{}\":,]{0,600}") {
        prop_assert!(check_token_bytes(s.as_bytes()).is_ok());
    }
}

struct Shared {
    rt: tokio::runtime::Runtime,
    _idp: TestIssuer,
    verifier: Verifier,
    token: String,
    _clock: Arc<ManualClock>,
}

/// One issuer and one genuine token for all cases (key generation is the slow part).
fn shared() -> Option<&'static Shared> {
    static S: OnceLock<Option<Shared>> = OnceLock::new();
    S.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .ok()?;
        let (idp, verifier, token, clock) = rt.block_on(async {
            let idp = TestIssuer::start().await.ok()?;
            let now = now_secs();
            let clock = ManualClock::new(now);
            let verifier = Verifier::new(vec![crate::support::settings(&idp)], clock.clock());
            let token = idp.token_at(now).build().ok()?;
            verifier.verify(&token).await.ok()?;
            Some((idp, verifier, token, clock))
        })?;
        Some(Shared {
            rt,
            _idp: idp,
            verifier,
            token,
            _clock: clock,
        })
    })
    .as_ref()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn mutated_tokens_are_never_accepted(pos in any::<prop::sample::Index>(), byte in any::<u8>(), kind in 0u8..3) {
        let s = shared().ok_or_else(|| TestCaseError::fail("fixture"))?;
        let mut bytes = s.token.clone().into_bytes();
        let i = pos.index(bytes.len());
        match kind {
            0 => { if bytes[i] == byte { return Ok(()); } bytes[i] = byte; }
            1 => { bytes.insert(i, byte); }
            _ => { bytes.remove(i); }
        }
        let Ok(mutated) = String::from_utf8(bytes) else { return Ok(()) };
        let verdict = s.rt.block_on(s.verifier.verify(&mutated));
        prop_assert!(verdict.is_err(), "accepted mutation: {mutated}");
    }
}
