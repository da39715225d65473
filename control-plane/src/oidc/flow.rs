//! The two HTTP steps of an OpenID Connect sign-in.
//!
//! `/signin/oidc` makes a random `state`, `nonce` and PKCE verifier, keeps them in the store
//! under the hash of `state` together with the hash of a random cookie it gives this browser
//! (for this path only, ten minutes), and sends the browser to the issuer. The issuer sends it
//! back to `/signin/oidc/callback` with a code: the `state` is used once (at any replica), must
//! come back to the browser that started it, the code is traded for an ID token with the
//! verifier, and the token's signature, issuer, audience, expiry, nonce and verified email are
//! checked. A refusal lands on the sign-in page with the reason in words (`/?error=oidc_…`).

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::verify::{self, OidcRefusal};
use crate::identity::{Person, code_hash, new_code};
use crate::people::{safe_next, session_cookie};
use crate::store::OidcPending;
use crate::{ApiState, cookie};

/// How long a started sign-in may take at the issuer.
pub const STATE_SECONDS: i64 = 600;

/// The cookie naming the browser that started a sign-in.
pub const BROWSER_COOKIE: &str = "rt_oidc";

/// Where the issuer sends people back (registered as the client's redirect URI).
pub const CALLBACK: &str = "/signin/oidc/callback";

/// Where a new account goes after its first sign-in.
pub const ONBOARDING: &str = "/welcome";

#[derive(Debug, Deserialize)]
pub struct StartQuery {
    next: Option<String>,
}

/// The PKCE S256 challenge of `verifier`.
pub fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn refused(refusal: OidcRefusal) -> Response {
    Redirect::to(&format!("/?error={}", refusal.code())).into_response()
}

fn secure(state: &ApiState) -> &'static str {
    if state.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    }
}

/// Starts a sign-in at the issuer.
pub async fn start(State(state): State<ApiState>, Query(query): Query<StartQuery>) -> Response {
    let Some(oidc) = &state.oidc else {
        return refused(OidcRefusal::Off);
    };
    let discovered = match oidc.discovered(false).await {
        Ok((d, _)) => d,
        Err(r) => return refused(r),
    };
    let browser = new_code();
    let state_value = new_code();
    let pending = OidcPending {
        browser: code_hash(&browser),
        nonce: new_code(),
        verifier: format!("{}{}", new_code(), new_code()),
        next: safe_next(query.next.as_deref()),
    };
    let now = state.clock.now();
    if let Err(e) = state
        .store
        .add_oidc_state(&code_hash(&state_value), &pending, now + STATE_SECONDS)
        .await
    {
        tracing::error!(error = %e, "keeping an OpenID Connect sign-in");
        return refused(OidcRefusal::Provider);
    }
    let redirect_uri = format!("{}{CALLBACK}", state.public_url);
    let query = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", oidc.provider.client_id.as_str()),
        ("redirect_uri", redirect_uri.as_str()),
        ("scope", "openid email profile"),
        ("state", state_value.as_str()),
        ("nonce", pending.nonce.as_str()),
        ("code_challenge", challenge(&pending.verifier).as_str()),
        ("code_challenge_method", "S256"),
    ])
    .expect("a query string encodes");
    let separator = if discovered.authorization_endpoint.contains('?') {
        '&'
    } else {
        '?'
    };
    let mut response = Redirect::to(&format!(
        "{}{separator}{query}",
        discovered.authorization_endpoint
    ))
    .into_response();
    let cookie = format!(
        "{BROWSER_COOKIE}={browser}; Path=/signin/oidc; HttpOnly; SameSite=Lax; Max-Age={STATE_SECONDS}{}",
        secure(&state)
    );
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("a code is a valid header value"),
    );
    response
}

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// The issuer's answer: signs in, or says why not.
pub async fn callback(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let mut response = match finish(&state, &headers, &query).await {
        Ok((person, next)) => {
            let mut response = Redirect::to(&next).into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, session_cookie(&state, &person));
            response
        }
        Err(refusal) => {
            tracing::info!(
                refusal = refusal.code(),
                "an OpenID Connect sign-in was refused"
            );
            refused(refusal)
        }
    };
    response.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static("rt_oidc=; Path=/signin/oidc; HttpOnly; Max-Age=0"),
    );
    response
}

async fn finish(
    state: &ApiState,
    headers: &HeaderMap,
    query: &CallbackQuery,
) -> Result<(Person, String), OidcRefusal> {
    let oidc = state.oidc.as_ref().ok_or(OidcRefusal::Off)?;
    let now = state.clock.now();
    let state_value = query.state.as_deref().ok_or(OidcRefusal::State)?;
    let pending = state
        .store
        .use_oidc_state(&code_hash(state_value), now)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "using an OpenID Connect state");
            OidcRefusal::Provider
        })?
        .ok_or(OidcRefusal::State)?;
    let browser = cookie(headers, BROWSER_COOKIE).map(|c| code_hash(&c));
    if browser.as_deref() != Some(pending.browser.as_str()) {
        return Err(OidcRefusal::Browser);
    }
    if query.error.is_some() {
        return Err(OidcRefusal::Denied);
    }
    let code = query.code.as_deref().ok_or(OidcRefusal::Denied)?;
    let redirect_uri = format!("{}{CALLBACK}", state.public_url);
    let id_token = oidc
        .exchange(code, &pending.verifier, &redirect_uri)
        .await?;
    let claims = oidc.verify(&id_token).await?;
    let who = verify::identity(&claims, &pending.nonce)?;
    let account = state
        .store
        .ensure_account(&who.email, &who.name, now)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "making an account");
            OidcRefusal::Provider
        })?;
    let next = if account.slug.is_none() {
        format!(
            "{ONBOARDING}?{}",
            serde_urlencoded::to_string([("next", pending.next.as_str())])
                .expect("a query string encodes")
        )
    } else if pending.next == "/" {
        format!("/{}", account.slug.as_deref().unwrap_or_default())
    } else {
        pending.next
    };
    let person = Person {
        email: who.email,
        name: account.display_name,
        tickets: vec![],
    };
    Ok((person, next))
}
