//! Pure checks of an OpenID Connect sign-in's answer: which signature algorithms an ID token
//! may use, and what its claims must say once its signature, issuer, audience and expiry have
//! been verified. Every refusal is a sentence the sign-in page shows.

use jsonwebtoken::Algorithm;
use serde::Deserialize;

/// The claims of an ID token that Roundtable reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct IdClaims {
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    /// Some issuers send it as a string.
    #[serde(default)]
    pub email_verified: Option<serde_json::Value>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub preferred_username: Option<String>,
}

/// Who signed in: a verified email address and a name to start the profile with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub email: String,
    pub name: String,
}

/// Why an OpenID Connect sign-in was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OidcRefusal {
    /// The provider said no (or the person cancelled).
    Denied,
    /// `state` unknown, used already, or expired.
    State,
    /// The sign-in was started in another browser.
    Browser,
    /// The provider did not answer as expected (token exchange, discovery, keys).
    Provider,
    /// The ID token's signature, algorithm, issuer, audience or expiry is wrong.
    Token,
    /// The ID token is not for the sign-in this browser started.
    Nonce,
    /// No email address, or one the provider has not verified.
    Email,
    /// This server has no identity provider configured.
    Off,
}

impl OidcRefusal {
    pub fn code(self) -> &'static str {
        match self {
            OidcRefusal::Denied => "oidc_denied",
            OidcRefusal::State => "oidc_state",
            OidcRefusal::Browser => "oidc_browser",
            OidcRefusal::Provider => "oidc_provider",
            OidcRefusal::Token => "oidc_token",
            OidcRefusal::Nonce => "oidc_nonce",
            OidcRefusal::Email => "oidc_email",
            OidcRefusal::Off => "oidc_off",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            OidcRefusal::Denied => "The sign-in was cancelled at the identity provider.",
            OidcRefusal::State => {
                "That sign-in has expired or was already used. Start again with the button below."
            }
            OidcRefusal::Browser => {
                "That sign-in was started in another browser. Start again in this one."
            }
            OidcRefusal::Provider => {
                "The identity provider did not answer as expected. Try again in a minute."
            }
            OidcRefusal::Token => {
                "The identity provider's answer could not be verified, so you were not signed in."
            }
            OidcRefusal::Nonce => {
                "The identity provider's answer was not for this sign-in. Start again."
            }
            OidcRefusal::Email => {
                "Your identity provider did not give a verified email address, which an account needs."
            }
            OidcRefusal::Off => "This server has no identity provider set up.",
        }
    }

    /// Every refusal, for pages and tests.
    pub const ALL: [OidcRefusal; 8] = [
        OidcRefusal::Denied,
        OidcRefusal::State,
        OidcRefusal::Browser,
        OidcRefusal::Provider,
        OidcRefusal::Token,
        OidcRefusal::Nonce,
        OidcRefusal::Email,
        OidcRefusal::Off,
    ];
}

/// Asymmetric algorithms only: an HMAC "signature" would be made with the client secret
/// (which this server shares with the provider, so it proves nothing about the provider), and
/// `none` is not a signature. jsonwebtoken cannot even name `none`: such a header is refused
/// as unreadable before it gets here.
pub fn algorithm_allowed(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// The identity in an ID token whose signature, issuer, audience and expiry were verified:
/// the nonce must be the one this browser's sign-in sent, the email present and verified.
pub fn identity(claims: &IdClaims, nonce: &str) -> Result<Identity, OidcRefusal> {
    if claims.nonce.as_deref() != Some(nonce) {
        return Err(OidcRefusal::Nonce);
    }
    let verified = match &claims.email_verified {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) => s == "true",
        _ => false,
    };
    let email = claims
        .email
        .as_deref()
        .and_then(crate::identity::normalize_email)
        .filter(|_| verified)
        .ok_or(OidcRefusal::Email)?;
    let name = claims
        .name
        .clone()
        .or_else(|| claims.preferred_username.clone())
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| email.split('@').next().unwrap_or_default().to_string());
    Ok(Identity { email, name })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(nonce: &str, email: Option<&str>, verified: serde_json::Value) -> IdClaims {
        IdClaims {
            nonce: Some(nonce.into()),
            email: email.map(Into::into),
            email_verified: Some(verified),
            name: Some("Ada Lovelace".into()),
            preferred_username: None,
        }
    }

    #[test]
    fn a_verified_email_with_the_nonce_signs_in() {
        let c = claims("n1", Some("Ada@Example.com"), true.into());
        assert_eq!(
            identity(&c, "n1"),
            Ok(Identity {
                email: "ada@example.com".into(),
                name: "Ada Lovelace".into()
            })
        );
    }

    #[test]
    fn refusals() {
        let c = claims("n1", Some("ada@example.com"), true.into());
        assert_eq!(identity(&c, "n2"), Err(OidcRefusal::Nonce));
        let c = claims("n1", Some("ada@example.com"), false.into());
        assert_eq!(identity(&c, "n1"), Err(OidcRefusal::Email));
        let c = claims("n1", None, true.into());
        assert_eq!(identity(&c, "n1"), Err(OidcRefusal::Email));
        let c = IdClaims {
            nonce: None,
            ..claims("n1", Some("ada@example.com"), true.into())
        };
        assert_eq!(identity(&c, "n1"), Err(OidcRefusal::Nonce));
        assert!(!algorithm_allowed(Algorithm::HS256));
        assert!(algorithm_allowed(Algorithm::RS256));
        assert!(algorithm_allowed(Algorithm::ES256));
    }
}
