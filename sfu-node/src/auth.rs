//! Join tokens: HS256 JWTs the control plane signs with the room's shared key.
//!
//! Claims (all but `sub`, `room` and `exp` optional):
//! ```json
//! { "sub": "user-42", "room": "ev1-sess-a", "exp": 1767225600, "iat": 1767222000,
//!   "name": "Ada Lovelace", "headline": "Analyst", "image": "https://…/ada.png",
//!   "color": "#1e88e5",
//!   "grants": { "watch": true, "share": false, "moderate": false, "host": false,
//!               "recorder": false, "relay": false },
//!   "backstage": false }
//! ```
//! `exp` is checked against the `now` the caller passes (Unix seconds), never a hidden clock.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::rules::{Grants, Identity, Profile};
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub room: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub headline: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub color: String,
    #[serde(default)]
    pub grants: Grants,
    #[serde(default)]
    pub backstage: bool,
}

impl Claims {
    /// Claims for a watcher of `room` valid until `exp`.
    pub fn new(sub: &str, name: &str, room: &str, exp: u64) -> Self {
        Claims {
            sub: sub.to_string(),
            room: room.to_string(),
            exp,
            iat: None,
            name: name.to_string(),
            headline: String::new(),
            image: String::new(),
            color: String::new(),
            grants: Grants {
                watch: true,
                ..Grants::default()
            },
            backstage: false,
        }
    }

    pub fn identity(&self) -> Identity {
        Identity {
            user: self.sub.clone(),
            profile: Profile {
                name: self.name.clone(),
                headline: self.headline.clone(),
                image: self.image.clone(),
                color: self.color.clone(),
            },
            grants: self.grants,
            backstage: self.backstage,
        }
    }
}

/// The join-token key given inline or in a file (a mounted Secret; surrounding whitespace is
/// not part of it); `None` when neither is given.
pub fn key_from(
    inline: Option<&str>,
    file: Option<&std::path::Path>,
) -> std::io::Result<Option<Vec<u8>>> {
    match (inline, file) {
        (Some(key), _) => Ok(Some(key.as_bytes().to_vec())),
        (None, Some(path)) => Ok(Some(std::fs::read(path)?.trim_ascii().to_vec())),
        (None, None) => Ok(None),
    }
}

/// Sign claims with the shared key (the control plane's side; tests and the bench use it).
pub fn mint(key: &[u8], claims: &Claims) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(key),
    )
    .expect("HS256 signing with a byte key cannot fail")
}

#[derive(Clone)]
pub struct TokenVerifier {
    room: String,
    key: DecodingKey,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("room", &self.room)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    pub fn new(room: &str, key: &[u8]) -> Self {
        TokenVerifier {
            room: room.to_string(),
            key: DecodingKey::from_secret(key),
        }
    }

    /// Verify signature, expiry (against `now_unix`) and room.
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<Claims> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &validation).map_err(|e| {
            match e.kind() {
                ErrorKind::InvalidSignature => Error::Token("signature does not verify".into()),
                ErrorKind::MissingRequiredClaim(c) => Error::Token(format!("missing claim {c}")),
                // Anything else (not a JWT, `alg: none` or another algorithm, claims of the
                // wrong shape) is the same fact for the client; the library's own words
                // (serde variants, base64 offsets) are not for them.
                _ => {
                    tracing::debug!(error = %e, "unreadable join token");
                    Error::Token(
                        "this is not a Roundtable join token (a JWT signed with HS256 by the \
                         control plane); join through the control plane's page for a new one"
                            .into(),
                    )
                }
            }
        })?;
        let claims = data.claims;
        if claims.exp <= now_unix {
            return Err(Error::Token(format!(
                "expired {} s ago",
                now_unix - claims.exp
            )));
        }
        if claims.room != self.room {
            return Err(Error::WrongRoom {
                token_room: claims.room,
                room: self.room.clone(),
            });
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"test-key";

    #[test]
    fn a_good_token_yields_the_identity() {
        let mut c = Claims::new("u1", "Ada", "r1", 2_000);
        c.grants.moderate = true;
        c.color = "#123456".into();
        let t = mint(KEY, &c);
        let got = TokenVerifier::new("r1", KEY).verify(&t, 1_000).unwrap();
        assert_eq!(got, c);
        let id = got.identity();
        assert_eq!(id.profile.name, "Ada");
        assert!(id.grants.moderates());
    }

    #[test]
    fn bad_expired_and_wrong_room_tokens_are_refused() {
        let v = TokenVerifier::new("r1", KEY);
        let t = mint(b"other-key", &Claims::new("u1", "Ada", "r1", 2_000));
        assert!(matches!(v.verify(&t, 1_000), Err(Error::Token(m)) if m.contains("signature")));
        let t = mint(KEY, &Claims::new("u1", "Ada", "r1", 2_000));
        assert!(matches!(v.verify(&t, 2_000), Err(Error::Token(m)) if m.contains("expired")));
        let t = mint(KEY, &Claims::new("u1", "Ada", "r2", 2_000));
        assert!(matches!(v.verify(&t, 1_000), Err(Error::WrongRoom { .. })));
        assert!(matches!(v.verify("not.a.jwt", 1_000), Err(Error::Token(_))));
    }
}
