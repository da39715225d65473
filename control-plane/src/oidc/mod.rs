//! Sign-in with any OpenID Connect issuer: the authorisation code flow with PKCE, `state` and
//! `nonce`, and the ID token verified against the issuer's published keys.
//!
//! The issuer is configured by its URL, a client id and a client secret; everything else comes
//! from its discovery document, read on first use (the issuer may start after this server)
//! and kept. Keys are re-read when a token names one not seen yet (the issuer rotated them).
//! [`verify`] holds the pure rules; [`flow`] the two HTTP steps.

pub mod flow;
pub mod verify;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::Mutex;

use verify::{IdClaims, OidcRefusal};

/// An identity provider as configured.
#[derive(Debug, Clone)]
pub struct Provider {
    /// `https://id.example.com/realms/main`: its discovery document is under
    /// `/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// What the sign-in button says: "Sign in with {name}".
    pub name: String,
}

/// What the discovery document says.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovered {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
}

/// A configured provider with what was learnt from it.
#[derive(Debug)]
pub struct Oidc {
    pub provider: Provider,
    http: reqwest::Client,
    discovered: Mutex<Option<(Discovered, JwkSet)>>,
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    id_token: String,
}

impl Oidc {
    pub fn new(provider: Provider) -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .no_proxy()
            .build()
            .expect("a plain HTTP client builds");
        Oidc {
            provider,
            http,
            discovered: Mutex::new(None),
        }
    }

    async fn fetch<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, OidcRefusal> {
        let answer = self.http.get(url).send().await.map_err(|e| {
            tracing::warn!(%url, error = %e, "reading from the identity provider");
            OidcRefusal::Provider
        })?;
        let answer = answer.error_for_status().map_err(|e| {
            tracing::warn!(%url, error = %e, "the identity provider refused");
            OidcRefusal::Provider
        })?;
        answer.json().await.map_err(|e| {
            tracing::warn!(%url, error = %e, "the identity provider's answer is unreadable");
            OidcRefusal::Provider
        })
    }

    /// The discovery document (and keys), read once; `refresh_keys` re-reads the keys.
    pub async fn discovered(
        &self,
        refresh_keys: bool,
    ) -> Result<(Discovered, JwkSet), OidcRefusal> {
        let mut kept = self.discovered.lock().await;
        if let Some((d, keys)) = kept.as_ref()
            && !refresh_keys
        {
            return Ok((d.clone(), keys.clone()));
        }
        let d = match kept.as_ref() {
            Some((d, _)) => d.clone(),
            None => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.provider.issuer.trim_end_matches('/')
                );
                let d: Discovered = self.fetch(&url).await?;
                if d.issuer.trim_end_matches('/') != self.provider.issuer.trim_end_matches('/') {
                    tracing::warn!(configured = %self.provider.issuer, discovered = %d.issuer,
                        "the identity provider names another issuer");
                    return Err(OidcRefusal::Provider);
                }
                d
            }
        };
        let keys = usable_keys(self.fetch(&d.jwks_uri).await?);
        *kept = Some((d.clone(), keys.clone()));
        Ok((d, keys))
    }

    /// Trades an authorisation code (with its PKCE verifier) for an ID token.
    pub async fn exchange(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<String, OidcRefusal> {
        let (d, _) = self.discovered(false).await?;
        let answer = self
            .http
            .post(&d.token_endpoint)
            .basic_auth(&self.provider.client_id, Some(&self.provider.client_secret))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", verifier),
            ])
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "exchanging a code at the identity provider");
                OidcRefusal::Provider
            })?;
        if !answer.status().is_success() {
            let status = answer.status();
            let body = answer.text().await.unwrap_or_default();
            tracing::warn!(%status, %body, "the identity provider refused a code");
            return Err(OidcRefusal::Provider);
        }
        let token: TokenAnswer = answer.json().await.map_err(|e| {
            tracing::warn!(error = %e, "the identity provider's token answer is unreadable");
            OidcRefusal::Provider
        })?;
        Ok(token.id_token)
    }

    /// The claims of an ID token whose signature (by the issuer's published key, with an
    /// asymmetric algorithm), issuer, audience (this client) and expiry hold.
    pub async fn verify(&self, id_token: &str) -> Result<IdClaims, OidcRefusal> {
        let header = jsonwebtoken::decode_header(id_token).map_err(|_| OidcRefusal::Token)?;
        if !verify::algorithm_allowed(header.alg) {
            return Err(OidcRefusal::Token);
        }
        let (d, mut keys) = self.discovered(false).await?;
        let kid = header.kid.as_deref();
        let known = |keys: &JwkSet| match kid {
            Some(kid) => keys.find(kid).is_some(),
            None => !keys.keys.is_empty(),
        };
        if !known(&keys) {
            keys = self.discovered(true).await?.1;
        }
        let jwk = match kid {
            Some(kid) => keys.find(kid),
            None => keys.keys.first(),
        }
        .ok_or(OidcRefusal::Token)?;
        let key = DecodingKey::from_jwk(jwk).map_err(|_| OidcRefusal::Token)?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&d.issuer]);
        validation.set_audience(&[&self.provider.client_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        jsonwebtoken::decode::<IdClaims>(id_token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| {
                tracing::warn!(error = %e, "an ID token failed verification");
                OidcRefusal::Token
            })
    }
}

/// The keys of a JWKS document this server can read: an issuer may also publish keys of kinds
/// it does not know (encryption keys, new algorithms), which must not hide the others.
fn usable_keys(document: serde_json::Value) -> JwkSet {
    let keys = document
        .get("keys")
        .and_then(|k| k.as_array())
        .map(|keys| {
            keys.iter()
                .filter(|k| k.get("use").and_then(|u| u.as_str()) != Some("enc"))
                .filter_map(|k| serde_json::from_value(k.clone()).ok())
                .collect()
        })
        .unwrap_or_default();
    JwkSet { keys }
}
