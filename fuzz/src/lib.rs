//! What the fuzz targets share: the fixed keys and clock they verify against, and a way to
//! sign arbitrary JSON as a JWT so the fuzzer reaches the claims checks behind the signature.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The key every token target verifies with (and signs with for the signed half).
pub const KEY: &[u8] = b"fuzz-key-0123456789abcdef";

/// The clock the targets pass in: 2026-01-01T00:00:00Z.
pub const NOW: u64 = 1_767_225_600;

/// A compact JWS of `header` and `claims` (any bytes, base64url-encoded as they are) signed
/// with HS256 under `key`: valid in signature whatever the JSON says.
pub fn sign_hs256(header: &[u8], claims: &[u8], key: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// Splits a fuzz input into a token to verify as it is (first byte even) or a header and
/// claims (first byte odd; split at the first newline) to sign first.
pub fn token_of(data: &[u8]) -> Option<String> {
    let (&mode, rest) = data.split_first()?;
    if mode % 2 == 0 {
        return std::str::from_utf8(rest).ok().map(str::to_string);
    }
    let split = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let (header, claims) = rest.split_at(split);
    let claims = claims.get(1..).unwrap_or_default();
    Some(sign_hs256(header, claims, KEY))
}
