//! Who someone is: sign-in by emailed link, sign-in with an external registration token, the
//! built-in registration, and `/api/me`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use super::identity::{self, Person, Ticket, code_hash, new_code, normalize_email};
use super::limiter::Scope;
use super::store::{Claimant, Label};
use super::{ApiError, ApiResult, ApiState, Client, catalog};

/// How long an emailed sign-in link works.
pub const SIGN_IN_LINK_SECONDS: i64 = 15 * 60;

/// The cookie naming the browser that opens a sign-in link ([`sign_in_link`]).
pub const CLAIM_COOKIE: &str = "rt_claim";

/// How long after using a sign-in link the same browser is signed in by it again: a reload or
/// a load balancer's retry after the replica that used it died before answering.
pub const RECLAIM_SECONDS: i64 = 120;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    signed_in: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    tickets: Vec<Ticket>,
    /// The name label to prefill: a host's profile, else this person's last room join.
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<Label>,
    /// A host's URL slug once onboarded (their dashboard is `/<slug>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    slug: Option<String>,
    /// Whether the host wants browser notifications (ask-to-join, requests to share).
    notifications: bool,
    /// The identity provider's name when sign-in with one is offered.
    #[serde(skip_serializing_if = "Option::is_none")]
    oidc: Option<String>,
}

async fn me_of(state: &ApiState, person: Option<Person>) -> ApiResult<Me> {
    let oidc = state.oidc.as_ref().map(|o| o.provider.name.clone());
    Ok(match person {
        None => Me {
            signed_in: false,
            email: None,
            name: None,
            tickets: vec![],
            label: None,
            slug: None,
            notifications: false,
            oidc,
        },
        Some(p) => {
            let account = state
                .store
                .account(&p.email)
                .await
                .map_err(|e| ApiError::internal("reading an account", e))?;
            Me {
                signed_in: true,
                label: prefill(state, &p.email).await?,
                slug: account.as_ref().and_then(|a| a.slug.clone()),
                notifications: account.is_some_and(|a| a.notifications),
                email: Some(p.email),
                name: Some(p.name),
                tickets: p.tickets,
                oidc,
            }
        }
    })
}

/// The name label a signed-in person shows in sessions and on stage: an onboarded host's
/// profile, else their name.
pub(crate) async fn person_label(state: &ApiState, person: &Person) -> ApiResult<Label> {
    let account = state
        .store
        .account(&person.email)
        .await
        .map_err(|e| ApiError::internal("reading an account", e))?;
    Ok(account
        .as_ref()
        .and_then(crate::accounts::profile_label)
        .unwrap_or_else(|| Label {
            name: person.name.clone(),
            ..Label::default()
        }))
}

/// The name label that prefills `email`'s next join: an onboarded host's profile, else the
/// label of their last join.
pub(crate) async fn prefill(state: &ApiState, email: &str) -> ApiResult<Option<Label>> {
    let account = state
        .store
        .account(email)
        .await
        .map_err(|e| ApiError::internal("reading an account", e))?;
    if let Some(label) = account.as_ref().and_then(crate::accounts::profile_label) {
        return Ok(Some(label));
    }
    state
        .store
        .label_of(email)
        .await
        .map_err(|e| ApiError::internal("reading a label", e))
}

pub async fn me(State(state): State<ApiState>, headers: HeaderMap) -> ApiResult<Json<Me>> {
    let person = state.viewer(&headers).await?;
    Ok(Json(me_of(&state, person).await?))
}

#[derive(Debug, Deserialize)]
pub struct SignInRequest {
    email: String,
    #[serde(default)]
    next: Option<String>,
}

/// Only paths of this site are followed after sign-in: one leading `/` (`//host` is another
/// site), no backslash (browsers read it as `/`), and nothing but visible ASCII: browsers drop
/// tabs and newlines from URLs, so `/\t/evil.com` is `//evil.com` to them, and a header value
/// cannot hold a newline. Anything else is `/`.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if is_local_path(n) => n.into(),
        _ => "/".into(),
    }
}

fn is_local_path(n: &str) -> bool {
    n.starts_with('/')
        && !n.starts_with("//")
        && n.len() <= 2048
        && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
}

/// A `303 See Other` to a path of this site (`/` if `next` is not one).
fn go_to(next: &str) -> Response {
    Redirect::to(&safe_next(Some(next))).into_response()
}

fn email_or_refuse(email: &str) -> ApiResult<String> {
    normalize_email(email).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_email",
            "That does not look like an email address.",
        )
    })
}

fn sent() -> Response {
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"sent": true})),
    )
        .into_response()
}

/// Emails a sign-in link. The answer is the same whether or not the address is registered.
pub async fn sign_in(
    State(state): State<ApiState>,
    client: Client,
    Json(request): Json<SignInRequest>,
) -> ApiResult<Response> {
    let email = email_or_refuse(&request.email)?;
    let next = safe_next(request.next.as_deref());
    let code = new_sign_in_code(&state, &client, &email, &next).await?;
    let link = format!("{}/signin?code={code}", state.public_url);
    let body = format!(
        "Hello,\n\nOpen this link to sign in to Roundtable:\n\n{link}\n\n\
         It works once, for 15 minutes. If you did not ask for it, ignore this email.\n"
    );
    send(&state, &email, "Your Roundtable sign-in link", body).await?;
    Ok(sent())
}

/// Counts an email to `email` from `client` against both limits: a few per address (nobody's
/// inbox is flooded, nobody is locked out by others sharing their network), many per client
/// address (a whole office behind one NAT signs in; a script spraying addresses does not).
pub(crate) async fn count_email(state: &ApiState, client: &Client, email: &str) -> ApiResult<()> {
    let now = state.clock.now();
    state.limiter.attempt(Scope::EmailTo, email, now).await?;
    state
        .limiter
        .attempt(Scope::EmailFrom, &client.0, now)
        .await?;
    Ok(())
}

/// Refuses at once when this server sends no email (see [`super::Mailer::Off`]).
pub(crate) fn email_on(state: &ApiState) -> ApiResult<()> {
    if state.mailer.sends() {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "email_off",
            "This server does not send email: sign in through your event's registration link.",
        ))
    }
}

pub(crate) async fn send(state: &ApiState, to: &str, subject: &str, body: String) -> ApiResult<()> {
    state
        .mailer
        .send(to, subject, body)
        .await
        .map_err(|e| ApiError::internal("sending an email", e))
}

/// A fresh sign-in code for `email`, stored (hashed) with where it leads.
async fn new_sign_in_code(
    state: &ApiState,
    client: &Client,
    email: &str,
    next: &str,
) -> ApiResult<String> {
    email_on(state)?;
    count_email(state, client, email).await?;
    let name = state
        .store
        .registered_name(email)
        .await
        .map_err(|e| ApiError::internal("reading a registration", e))?
        .unwrap_or_else(|| email.split('@').next().unwrap_or_default().to_string());
    let code = new_code();
    state
        .store
        .add_sign_in(
            &code_hash(&code),
            email,
            &name,
            next,
            state.clock.now() + SIGN_IN_LINK_SECONDS,
        )
        .await
        .map_err(|e| ApiError::internal("saving a sign-in code", e))?;
    Ok(code)
}

/// The `Set-Cookie` value of a sign-in.
pub(crate) fn session_cookie(state: &ApiState, person: &Person) -> HeaderValue {
    let now = state.clock.now() as u64;
    let token = state
        .keys
        .session_token(person, now + identity::SESSION_SECONDS);
    let secure = if state.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        identity::SESSION_COOKIE,
        identity::SESSION_SECONDS
    ))
    .expect("a token is a valid header value")
}

fn link_invalid() -> ApiError {
    ApiError::from(super::access::Refusal::LinkInvalid)
}

/// Uses a sign-in code: the person it was sent to, and where they were going. `browser` is
/// the claim cookie of the browser presenting it, if it has one.
async fn use_code(
    state: &ApiState,
    client: &Client,
    code: &str,
    browser: Option<&str>,
) -> ApiResult<(Person, String)> {
    let now = state.clock.now();
    state.limiter.attempt(Scope::Link, &client.0, now).await?;
    let browser = browser.map(code_hash);
    let claimant = browser.as_deref().map(|browser| Claimant {
        browser,
        again_since: now - RECLAIM_SECONDS,
    });
    let used = state
        .store
        .use_sign_in(&code_hash(code), claimant, now)
        .await
        .map_err(|e| ApiError::internal("using a sign-in code", e))?
        .ok_or_else(link_invalid)?;
    let person = Person {
        email: used.email,
        name: used.name,
        tickets: vec![],
    };
    Ok((person, safe_next(Some(&used.next))))
}

#[derive(Debug, Deserialize)]
pub struct CodeRequest {
    code: String,
}

/// Signs in with the code from an emailed link (JSON), setting the cookie.
pub async fn verify(
    State(state): State<ApiState>,
    client: Client,
    Json(request): Json<CodeRequest>,
) -> ApiResult<Response> {
    let (person, _) = use_code(&state, &client, &request.code, None).await?;
    signed_in(&state, person).await
}

async fn signed_in(state: &ApiState, person: Person) -> ApiResult<Response> {
    let cookie = session_cookie(state, &person);
    let me = me_of(state, Some(person)).await?;
    let mut response = Json(me).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub struct TokenRequest {
    token: String,
}

/// Signs in with a registration token from the external registration system.
pub async fn registration(
    State(state): State<ApiState>,
    Json(request): Json<TokenRequest>,
) -> ApiResult<Response> {
    let person = state.registration.verify(&request.token).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_registration",
            "This registration link is not valid or has expired.",
        )
    })?;
    signed_in(&state, person).await
}

#[derive(Debug, Deserialize)]
pub struct LinkQuery {
    code: Option<String>,
    registration: Option<String>,
    next: Option<String>,
    /// Set on the second step of an emailed link, after the claim cookie was handed out.
    claim: Option<String>,
}

/// The link in a sign-in email (or from the registration system): sets the cookie and goes on.
///
/// An emailed link takes two steps. The first hands the browser a claim cookie (random, for
/// this path only) and sends it back to the link; the second uses the code for that browser.
/// Should the replica that used it die before answering, the browser's retry, at any replica,
/// carries the same cookie and is signed in by the same code ([`RECLAIM_SECONDS`]); nobody
/// else is. A client that keeps no cookies comes back without one and uses the code once.
pub async fn sign_in_link(
    State(state): State<ApiState>,
    client: Client,
    headers: HeaderMap,
    Query(query): Query<LinkQuery>,
) -> Response {
    let browser = super::cookie(&headers, CLAIM_COOKIE).filter(|c| !c.is_empty());
    if let Some(code) = &query.code
        && browser.is_none()
        && query.claim.is_none()
    {
        return claim_first(&state, code);
    }
    let result = match (&query.code, &query.registration) {
        (Some(code), _) => use_code(&state, &client, code, browser.as_deref()).await,
        (None, Some(token)) => state
            .registration
            .verify(token)
            .map(|p| (p, safe_next(query.next.as_deref())))
            .ok_or_else(link_invalid),
        (None, None) => Err(link_invalid()),
    };
    match result {
        Ok((person, next)) => {
            let cookie = session_cookie(&state, &person);
            let mut response = go_to(&next);
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            if browser.is_some() {
                response.headers_mut().append(
                    header::SET_COOKIE,
                    HeaderValue::from_static("rt_claim=; Path=/signin; HttpOnly; Max-Age=0"),
                );
            }
            response
        }
        Err(e) => Redirect::to(&format!("/?error={}", e.code)).into_response(),
    }
}

/// The first step of an emailed link: a claim cookie, and the link again.
fn claim_first(state: &ApiState, code: &str) -> Response {
    let again = serde_urlencoded::to_string([("code", code), ("claim", "1")])
        .expect("a query string encodes");
    let secure = if state.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie = HeaderValue::from_str(&format!(
        "{CLAIM_COOKIE}={}; Path=/signin; HttpOnly; SameSite=Lax; Max-Age={SIGN_IN_LINK_SECONDS}{secure}",
        new_code()
    ))
    .expect("a code is a valid header value");
    let mut response = Redirect::to(&format!("/signin?{again}")).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}

pub async fn sign_out() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("rt_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
    response
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterRequest {
    email: String,
    name: String,
    ticket_type: String,
}

/// The built-in registration: a ticket of one of the event's types, pending until the link
/// emailed to the address is used (which proves it is theirs). It never changes a registration
/// the address already has, and nothing typed in the form reaches the email (the event's and
/// ticket's titles are the organisers').
/// (A real box office stays outside: see the registration tokens.)
pub async fn register(
    State(state): State<ApiState>,
    client: Client,
    Path((ns, event)): Path<(String, String)>,
    Json(request): Json<RegisterRequest>,
) -> ApiResult<Response> {
    let event = catalog::find_event(&*state.catalog, &ns, &event)
        .ok_or_else(|| ApiError::not_found("event"))?;
    let email = email_or_refuse(&request.email)?;
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 80 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "Give your name on one line (at most 80 characters).",
        ));
    }
    let Some(ticket) = event
        .spec
        .ticket_types
        .iter()
        .find(|t| t.name == request.ticket_type)
    else {
        return Err(ApiError::bad_request(format!(
            "This event has no ticket type {:?}.",
            request.ticket_type
        )));
    };
    let key = super::access::event_key(&ns, event.metadata.name.as_deref().unwrap_or_default());
    let next = format!("/e/{key}");
    let code = new_sign_in_code(&state, &client, &email, &next).await?;
    state
        .store
        .add_pending_registration(
            &code_hash(&code),
            &key,
            &email,
            name,
            &ticket.name,
            state.clock.now() + SIGN_IN_LINK_SECONDS,
        )
        .await
        .map_err(|e| ApiError::internal("saving a registration", e))?;
    let link = format!("{}/signin?code={code}", state.public_url);
    let ticket_title = ticket.title.as_deref().unwrap_or(&ticket.name);
    let body = format!(
        "Hello,\n\nSomeone asked to register this email address for {event} with a \"{ticket_title}\" \
         ticket.\n\nOpen this link to confirm the registration and sign in:\n\n{link}\n\n\
         It works once, for 15 minutes. Nothing is registered until it is used; if you did not ask \
         for this, ignore this email. An address that is already registered for this event keeps \
         its registration and its name.\n",
        event = event.spec.title,
    );
    send(
        &state,
        &email,
        &format!("Confirm your registration for {}", event.spec.title),
        body,
    )
    .await?;
    Ok(sent())
}
