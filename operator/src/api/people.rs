//! Who someone is: sign-in by emailed link, sign-in with an external registration token, the
//! built-in registration, and `/api/me`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use super::identity::{self, Person, Ticket, code_hash, new_code, normalize_email};
use super::limiter::Scope;
use super::store::Label;
use super::{ApiError, ApiResult, ApiState, Client, catalog};

/// How long an emailed sign-in link works.
pub const SIGN_IN_LINK_SECONDS: i64 = 15 * 60;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    signed_in: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    tickets: Vec<Ticket>,
    /// The name label of this person's last room join, to prefill the next.
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<Label>,
}

fn me_of(state: &ApiState, person: Option<Person>) -> ApiResult<Me> {
    Ok(match person {
        None => Me {
            signed_in: false,
            email: None,
            name: None,
            tickets: vec![],
            label: None,
        },
        Some(p) => Me {
            signed_in: true,
            label: state
                .store
                .label_of(&p.email)
                .map_err(|e| ApiError::internal("reading a label", e))?,
            email: Some(p.email),
            name: Some(p.name),
            tickets: p.tickets,
        },
    })
}

pub async fn me(State(state): State<ApiState>, headers: HeaderMap) -> ApiResult<Json<Me>> {
    let person = state.viewer(&headers)?;
    Ok(Json(me_of(&state, person)?))
}

#[derive(Debug, Deserialize)]
pub struct SignInRequest {
    email: String,
    #[serde(default)]
    next: Option<String>,
}

/// Only paths of this site are followed after sign-in.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.into(),
        _ => "/".into(),
    }
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
    send_sign_in_link(&state, &client, &email, &next).await?;
    Ok(sent())
}

async fn send_sign_in_link(
    state: &ApiState,
    client: &Client,
    email: &str,
    next: &str,
) -> ApiResult<()> {
    let now = state.clock.now();
    for key in [&client.0, email] {
        state
            .limiter
            .attempt(Scope::Email, key, now)
            .map_err(ApiError::too_many)?;
    }
    let name = state
        .store
        .registered_name(email)
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
            now + SIGN_IN_LINK_SECONDS,
        )
        .map_err(|e| ApiError::internal("saving a sign-in code", e))?;
    let link = format!("{}/signin?code={code}", state.public_url);
    let body = format!(
        "Hello {name},\n\nOpen this link to sign in to Roundtable:\n\n{link}\n\n\
         It works once, for 15 minutes. If you did not ask for it, ignore this email.\n"
    );
    state
        .mailer
        .send(email, "Your Roundtable sign-in link", body)
        .await
        .map_err(|e| ApiError::internal("sending a sign-in email", e))
}

/// The `Set-Cookie` value of a sign-in.
fn session_cookie(state: &ApiState, person: &Person) -> HeaderValue {
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

/// Uses a sign-in code: the person it was sent to, and where they were going.
fn use_code(state: &ApiState, client: &Client, code: &str) -> ApiResult<(Person, String)> {
    let now = state.clock.now();
    state
        .limiter
        .attempt(Scope::Link, &client.0, now)
        .map_err(ApiError::too_many)?;
    let used = state
        .store
        .use_sign_in(&code_hash(code), now)
        .map_err(|e| ApiError::internal("using a sign-in code", e))?
        .ok_or_else(link_invalid)?;
    let person = Person {
        email: used.email,
        name: used.name,
        tickets: vec![],
    };
    Ok((person, used.next))
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
    let (person, _) = use_code(&state, &client, &request.code)?;
    signed_in(&state, person)
}

fn signed_in(state: &ApiState, person: Person) -> ApiResult<Response> {
    let cookie = session_cookie(state, &person);
    let me = me_of(state, Some(person))?;
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
    signed_in(&state, person)
}

#[derive(Debug, Deserialize)]
pub struct LinkQuery {
    code: Option<String>,
    registration: Option<String>,
    next: Option<String>,
}

/// The link in a sign-in email (or from the registration system): sets the cookie and goes on.
pub async fn sign_in_link(
    State(state): State<ApiState>,
    client: Client,
    Query(query): Query<LinkQuery>,
) -> Response {
    let result = match (&query.code, &query.registration) {
        (Some(code), _) => use_code(&state, &client, code),
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
            let mut response = Redirect::to(&next).into_response();
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            response
        }
        Err(e) => Redirect::to(&format!("/?error={}", e.code)).into_response(),
    }
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

/// The built-in registration: a ticket of one of the event's types, confirmed by the emailed
/// sign-in link. (A real box office stays outside: see the registration tokens.)
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
    if name.is_empty() || name.chars().count() > 80 {
        return Err(ApiError::bad_request(
            "Give your name (at most 80 characters).",
        ));
    }
    if !event
        .spec
        .ticket_types
        .iter()
        .any(|t| t.name == request.ticket_type)
    {
        return Err(ApiError::bad_request(format!(
            "This event has no ticket type {:?}.",
            request.ticket_type
        )));
    }
    let key = super::access::event_key(&ns, event.metadata.name.as_deref().unwrap_or_default());
    state
        .store
        .register(&key, &email, name, &request.ticket_type, state.clock.now())
        .map_err(|e| ApiError::internal("saving a registration", e))?;
    let next = format!("/e/{key}");
    send_sign_in_link(&state, &client, &email, &next).await?;
    Ok(sent())
}
