//! Who is asking: people are known by signed tokens, never by anything the client merely says.
//!
//! - A sign-in (built-in passwordless email link, or a token from an external registration
//!   system) becomes the `rt_session` cookie: an HS256 token the control plane signs.
//! - Registration tokens from an external system carry the person's tickets; they are verified
//!   with a shared HS256 key or the system's JWKS.
//! - Tickets from the built-in registration live in the database and are added per request.
//!
//! Host accounts (PRODUCT.md §6) are a later piece of work: a host here is a signed-in person
//! whose email a Room lists in `hosts`.

use std::sync::RwLock;

use hmac::{Hmac, Mac};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// A ticket to an event: `event` is `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub event: String,
    #[serde(rename = "type")]
    pub ticket_type: String,
}

/// A signed-in person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Lower-case email address: the identity organisers, moderators and hosts are listed by.
    pub email: String,
    pub name: String,
    pub tickets: Vec<Ticket>,
}

/// The cookie that holds a sign-in.
pub const SESSION_COOKIE: &str = "rt_session";

/// How long a sign-in lasts.
pub const SESSION_SECONDS: u64 = 30 * 24 * 3600;

#[derive(Debug, Serialize, Deserialize)]
struct SessionClaims {
    sub: String,
    #[serde(default)]
    name: String,
    /// Tickets from an external registration token, kept for the length of the sign-in.
    #[serde(default)]
    tickets: Vec<Ticket>,
    exp: u64,
    typ: String,
}

/// Claims of a registration token from an external system.
#[derive(Debug, Deserialize)]
struct RegistrationClaims {
    #[serde(default)]
    sub: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    tickets: Vec<Ticket>,
}

/// Normalises an email address for comparison and storage.
pub fn normalize_email(email: &str) -> Option<String> {
    let email = email.trim().to_ascii_lowercase();
    let (local, domain) = email.split_once('@')?;
    let ok = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.contains(char::is_whitespace)
        && email.len() <= 254
        && !domain.contains('@');
    ok.then_some(email)
}

/// The control plane's signing keys.
pub struct Keys {
    /// Signs sign-in cookies and backstage links; persisted so sign-ins survive restarts.
    session: Vec<u8>,
    /// Signs sfu-node join tokens (the `roundtable-join-token` Secret).
    join: Vec<u8>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

impl Keys {
    pub fn new(session: Vec<u8>, join: Vec<u8>) -> Self {
        Keys { session, join }
    }

    pub fn join_key(&self) -> &[u8] {
        &self.join
    }

    /// A sign-in cookie value for `person`, valid until `exp` (Unix seconds).
    pub fn session_token(&self, person: &Person, exp: u64) -> String {
        let claims = SessionClaims {
            sub: person.email.clone(),
            name: person.name.clone(),
            tickets: person.tickets.clone(),
            exp,
            typ: "session".into(),
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&self.session),
        )
        .expect("HS256 signing cannot fail")
    }

    /// The person a sign-in cookie names, if it is ours and unexpired at `now`.
    pub fn verify_session(&self, token: &str, now: u64) -> Option<Person> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<SessionClaims>(
            token,
            &DecodingKey::from_secret(&self.session),
            &validation,
        )
        .ok()?;
        let claims = data.claims;
        (claims.typ == "session" && claims.exp > now).then_some(Person {
            email: claims.sub,
            name: claims.name,
            tickets: claims.tickets,
        })
    }

    /// The private key in a stage's backstage link.
    pub fn backstage_key(&self, namespace: &str, stage: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.session).expect("any key length");
        mac.update(format!("backstage/{namespace}/{stage}").as_bytes());
        hex(&mac.finalize().into_bytes()[..16])
    }

    pub fn backstage_key_valid(&self, namespace: &str, stage: &str, key: &str) -> bool {
        !key.is_empty() && same_secret(&self.backstage_key(namespace, stage), key)
    }
}

/// Whether two secrets are equal, in time that depends on their lengths only, not on where
/// they first differ (so answers' timing does not reveal a key or passcode byte by byte).
pub fn same_secret(expected: &str, given: &str) -> bool {
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    let differ = a
        .iter()
        .zip(b)
        .fold(a.len() ^ b.len(), |acc, (x, y)| acc | usize::from(x ^ y));
    differ == 0
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a one-time code, as stored: the database never holds a usable code.
pub fn code_hash(code: &str) -> String {
    use sha2::Digest;
    hex(&Sha256::digest(code.as_bytes()))
}

/// A fresh random code for links (128 bits, URL-safe hex).
pub fn new_code() -> String {
    let bytes: [u8; 16] = rand::random();
    hex(&bytes)
}

/// Verifies registration tokens from an external registration system.
pub struct RegistrationVerifier {
    shared: Option<Vec<u8>>,
    jwks: RwLock<Option<JwkSet>>,
}

impl std::fmt::Debug for RegistrationVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrationVerifier")
            .field("shared", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

impl RegistrationVerifier {
    pub fn new(shared: Option<Vec<u8>>, jwks: Option<JwkSet>) -> Self {
        RegistrationVerifier {
            shared,
            jwks: RwLock::new(jwks),
        }
    }

    pub fn set_jwks(&self, jwks: JwkSet) {
        *self.jwks.write().expect("jwks lock") = Some(jwks);
    }

    pub fn enabled(&self) -> bool {
        self.shared.is_some() || self.jwks.read().expect("jwks lock").is_some()
    }

    /// The person a registration token describes, if it verifies (`exp` checked against the
    /// system clock by the JWT library: these tokens come from outside).
    pub fn verify(&self, token: &str) -> Option<Person> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        let claims = if header.alg == Algorithm::HS256 {
            let key = self.shared.as_ref()?;
            decode(token, &DecodingKey::from_secret(key), Algorithm::HS256)?
        } else {
            let jwks = self.jwks.read().expect("jwks lock");
            let jwks = jwks.as_ref()?;
            let jwk = match &header.kid {
                Some(kid) => jwks.find(kid)?,
                None => jwks.keys.first()?,
            };
            decode(token, &DecodingKey::from_jwk(jwk).ok()?, header.alg)?
        };
        let email = normalize_email(claims.email.as_deref().unwrap_or(&claims.sub))?;
        Some(Person {
            email,
            name: claims.name,
            tickets: claims.tickets,
        })
    }
}

fn decode(token: &str, key: &DecodingKey, alg: Algorithm) -> Option<RegistrationClaims> {
    let validation = Validation::new(alg);
    jsonwebtoken::decode::<RegistrationClaims>(token, key, &validation)
        .ok()
        .map(|d| d.claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person() -> Person {
        Person {
            email: "ada@example.org".into(),
            name: "Ada".into(),
            tickets: vec![Ticket {
                event: "default/gala".into(),
                ticket_type: "vip".into(),
            }],
        }
    }

    #[test]
    fn a_sign_in_cookie_round_trips_until_it_expires() {
        let keys = Keys::new(b"s".repeat(32), b"j".repeat(32));
        let token = keys.session_token(&person(), 1_000);
        assert_eq!(keys.verify_session(&token, 999), Some(person()));
        assert_eq!(keys.verify_session(&token, 1_000), None);
        let other = Keys::new(b"x".repeat(32), b"j".repeat(32));
        assert_eq!(other.verify_session(&token, 10), None);
    }

    #[test]
    fn emails_are_normalised_and_nonsense_refused() {
        assert_eq!(
            normalize_email(" Ada@Example.ORG ").as_deref(),
            Some("ada@example.org")
        );
        for bad in [
            "",
            "ada",
            "@example.org",
            "ada@",
            "ada@org",
            "a b@example.org",
        ] {
            assert_eq!(normalize_email(bad), None, "{bad}");
        }
    }

    #[test]
    fn registration_tokens_verify_with_the_shared_key_only() {
        #[derive(Serialize)]
        struct C<'a> {
            sub: &'a str,
            name: &'a str,
            tickets: Vec<Ticket>,
            exp: u64,
        }
        let exp = jiff::Timestamp::now().as_second() as u64 + 600;
        let claims = C {
            sub: "Ada@Example.org",
            name: "Ada",
            tickets: person().tickets,
            exp,
        };
        let sign = |key: &[u8]| {
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(key),
            )
            .unwrap()
        };
        let verifier = RegistrationVerifier::new(Some(b"shared".to_vec()), None);
        assert_eq!(verifier.verify(&sign(b"shared")), Some(person()));
        assert_eq!(verifier.verify(&sign(b"forged")), None);
        let without = RegistrationVerifier::new(None, None);
        assert_eq!(without.verify(&sign(b"shared")), None);
    }

    #[test]
    fn secrets_compare_equal_only_when_equal() {
        assert!(same_secret("482915", "482915"));
        for other in ["482916", "48291", "4829150", "", "582915"] {
            assert!(!same_secret("482915", other), "{other}");
        }
        assert!(same_secret("", ""));
    }

    #[test]
    fn backstage_keys_are_per_stage() {
        let keys = Keys::new(b"s".repeat(32), b"j".repeat(32));
        let key = keys.backstage_key("default", "main");
        assert!(keys.backstage_key_valid("default", "main", &key));
        assert!(!keys.backstage_key_valid("default", "other", &key));
        assert!(!keys.backstage_key_valid("default", "main", ""));
    }
}
