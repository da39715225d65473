//! TURN credentials for attendees whose networks block UDP: the TURN REST shared-secret scheme
//! that coturn's `use-auth-secret` (and most TURN servers) accept. Each join gets its own
//! short-lived username `<expiry unix seconds>:<id>`; the password is
//! base64(HMAC-SHA1(secret, username)). The TURN server checks the HMAC and the expiry, so
//! nothing is stored and a leaked credential dies with its expiry. Pure: `now` is an input.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha1::Sha1;

/// How long a TURN credential lasts when the deployment does not say.
pub const DEFAULT_TTL_SECONDS: i64 = 3600;

/// The TURN server(s) a deployment offers and the secret it shares with them.
#[derive(Clone)]
pub struct Turn {
    /// `turn:host:3478?transport=udp`, `turn:host:3478?transport=tcp`, `turns:host:443?transport=tcp`.
    pub urls: Vec<String>,
    pub secret: Vec<u8>,
    pub ttl_seconds: i64,
}

impl std::fmt::Debug for Turn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turn")
            .field("urls", &self.urls)
            .field("ttl_seconds", &self.ttl_seconds)
            .finish_non_exhaustive()
    }
}

/// One entry of `RTCConfiguration.iceServers`, as the page passes it to `RTCPeerConnection`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl Turn {
    /// The ICE server entry for one join: credentials valid until `now + ttl`, for `id` (an
    /// opaque per-join name; never the person's email, which the TURN server would log).
    pub fn ice_server(&self, id: &str, now: i64) -> IceServer {
        let username = format!("{}:{id}", now + self.ttl_seconds);
        IceServer {
            urls: self.urls.clone(),
            credential: Some(password(&self.secret, &username)),
            username: Some(username),
        }
    }
}

/// base64(HMAC-SHA1(secret, username)), what coturn computes for `use-auth-secret`.
pub fn password(secret: &[u8], username: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_the_turn_rest_hmac() {
        // Computed independently: printf '1700003600:abc' | openssl dgst -sha1 -hmac s3cret -binary | base64
        assert_eq!(
            password(b"s3cret", "1700003600:abc"),
            "Fe5EJwoqvfV1NLt6WgDwx7yTyxg="
        );
    }

    #[test]
    fn credentials_expire_after_the_ttl() {
        let turn = Turn {
            urls: vec!["turn:turn.example.com:3478?transport=tcp".into()],
            secret: b"s3cret".to_vec(),
            ttl_seconds: 3600,
        };
        let ice = turn.ice_server("abc", 1_700_000_000);
        assert_eq!(ice.username.as_deref(), Some("1700003600:abc"));
        assert_eq!(
            ice.credential.as_deref(),
            Some("Fe5EJwoqvfV1NLt6WgDwx7yTyxg=")
        );
    }
}
