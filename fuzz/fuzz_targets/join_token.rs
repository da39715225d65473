//! A join token as an sfu-node (and the control plane's signalling proxy) verifies it:
//! `TokenVerifier::verify`. Inputs either are the token, or are a header and claims the target
//! signs with the room's key, so the fuzzer reaches the claims checks behind the signature.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roundtable_fuzz::{KEY, NOW, token_of};
use sfu_node::auth::TokenVerifier;

const ROOM: &str = "session:default:fuzz";

fuzz_target!(|data: &[u8]| {
    let Some(token) = token_of(data) else {
        return;
    };
    let verifier = TokenVerifier::new(ROOM, KEY);
    if let Ok(claims) = verifier.verify(&token, NOW) {
        assert_eq!(claims.room, ROOM);
        assert!(claims.exp > NOW);
        let identity = claims.identity();
        let _ = identity.grants.enters();
    }
});
