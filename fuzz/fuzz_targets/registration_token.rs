//! Tokens the control plane reads from outside: registration tokens from a registration
//! system (`RegistrationVerifier::verify`, with a shared key and with a JWKS) and its own
//! sign-in cookie (`Keys::verify_session`). Inputs either are the token, or are a header and
//! claims the target signs with the shared key.
#![no_main]

use jsonwebtoken::jwk::JwkSet;
use libfuzzer_sys::fuzz_target;
use roundtable_control_plane::identity::{Keys, RegistrationVerifier};
use roundtable_fuzz::{KEY, NOW, token_of};

/// An RSA public key (RS256), so tokens naming another algorithm or a `kid` take the JWKS path.
const JWKS: &str = include_str!("../jwks.json");

fuzz_target!(|data: &[u8]| {
    let Some(token) = token_of(data) else {
        return;
    };
    let jwks: JwkSet = serde_json::from_str(JWKS).expect("the fuzz JWKS parses");
    for verifier in [
        RegistrationVerifier::new(Some(KEY.to_vec()), None),
        RegistrationVerifier::new(None, Some(jwks)),
    ] {
        if let Some(person) = verifier.verify(&token) {
            assert!(person.email.contains('@'), "{:?}", person.email);
        }
    }
    let keys = Keys::new(KEY.to_vec(), KEY.to_vec());
    let _ = keys.verify_session(&token, NOW);
});
