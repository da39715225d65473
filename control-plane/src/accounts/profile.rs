//! Onboarding, the profile and the avatar: `/api/account…` and `/avatars/<slug>.png`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::slug::{self, SlugProblem};
use super::{USE_CASES, avatar, avatar_url, color, one_line, signed_in};
use crate::store::{Account, NotOnboarded, Profile};
use crate::{ApiError, ApiResult, ApiState};

/// An account as its settings page reads it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    email: String,
    slug: Option<String>,
    onboarded: bool,
    use_case: String,
    display_name: String,
    headline: String,
    color: String,
    notifications: bool,
    avatar: Option<String>,
    /// How to reach the platform's operator (to change the email address).
    operator_contact: Option<String>,
    use_cases: Vec<UseCase>,
}

#[derive(Debug, Serialize)]
struct UseCase {
    value: &'static str,
    label: &'static str,
}

fn view(state: &ApiState, account: Account) -> AccountView {
    AccountView {
        avatar: avatar_url(&account),
        onboarded: account.slug.is_some(),
        email: account.email,
        slug: account.slug,
        use_case: account.use_case,
        display_name: account.display_name,
        headline: account.headline,
        color: account.color,
        notifications: account.notifications,
        operator_contact: state.accounts.operator_contact.clone(),
        use_cases: USE_CASES
            .iter()
            .map(|&(value, label)| UseCase { value, label })
            .collect(),
    }
}

fn slug_refused(problem: SlugProblem) -> ApiError {
    let status = match problem {
        SlugProblem::Taken => StatusCode::CONFLICT,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, problem.code(), problem.message())
}

pub async fn account(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> ApiResult<Json<AccountView>> {
    let (_, account) = signed_in(&state, &headers).await?;
    Ok(Json(view(&state, account)))
}

#[derive(Debug, Deserialize)]
pub struct SlugQuery {
    slug: String,
}

/// Whether a slug may be chosen, before the form is sent.
pub async fn check_slug(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(query): Query<SlugQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    signed_in(&state, &headers).await?;
    let slug = available(&state, &query.slug).await?;
    Ok(Json(serde_json::json!({ "slug": slug, "available": true })))
}

async fn available(state: &ApiState, wanted: &str) -> ApiResult<String> {
    let slug = slug::check(wanted).map_err(slug_refused)?;
    let free = state
        .store
        .slug_free(&slug)
        .await
        .map_err(|e| ApiError::internal("checking a slug", e))?;
    if free {
        Ok(slug)
    } else {
        Err(slug_refused(SlugProblem::Taken))
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Onboarding {
    use_case: String,
    display_name: String,
    slug: String,
}

fn display_name(value: &str) -> ApiResult<String> {
    let name = one_line(value, 60, "your display name")?;
    if name.is_empty() {
        return Err(ApiError::bad_request(
            "Give a display name: it is shown on your tile.",
        ));
    }
    Ok(name)
}

/// Onboarding, once, right after the first sign-in.
pub async fn onboard(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Json(form): Json<Onboarding>,
) -> ApiResult<Json<AccountView>> {
    let (person, account) = signed_in(&state, &headers).await?;
    if account.slug.is_some() {
        return Err(already_onboarded());
    }
    if !USE_CASES.iter().any(|(v, _)| *v == form.use_case) {
        return Err(ApiError::bad_request(
            "Choose what you will use Roundtable for.",
        ));
    }
    let name = display_name(&form.display_name)?;
    let slug = available(&state, &form.slug).await?;
    let done = state
        .store
        .onboard(
            &person.email,
            &form.use_case,
            &name,
            &slug,
            state.clock.now(),
        )
        .await
        .map_err(|e| ApiError::internal("onboarding", e))?;
    match done {
        Ok(()) => {}
        Err(NotOnboarded::SlugTaken) => return Err(slug_refused(SlugProblem::Taken)),
        Err(NotOnboarded::AlreadyDone) => return Err(already_onboarded()),
    }
    let account = read(&state, &person.email).await?;
    Ok(Json(view(&state, account)))
}

fn already_onboarded() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "slug_fixed",
        "Your URL was chosen when you signed up and cannot change.",
    )
}

async fn read(state: &ApiState, email: &str) -> ApiResult<Account> {
    state
        .store
        .account(email)
        .await
        .map_err(|e| ApiError::internal("reading an account", e))?
        .ok_or_else(|| ApiError::not_found("account"))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileForm {
    display_name: String,
    #[serde(default)]
    headline: String,
    #[serde(default)]
    color: String,
    #[serde(default)]
    notifications: bool,
    /// Sent only to be refused when it differs: the slug and the email cannot change.
    #[serde(default)]
    slug: Option<String>,
    #[serde(default)]
    email: Option<String>,
}

/// Saves the profile settings.
pub async fn save_profile(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Json(form): Json<ProfileForm>,
) -> ApiResult<Json<AccountView>> {
    let (person, account) = signed_in(&state, &headers).await?;
    if account.slug.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "onboarding_needed",
            "Choose your URL first: finish signing up.",
        ));
    }
    if let Some(wanted) = &form.slug
        && Some(wanted.trim().to_ascii_lowercase()) != account.slug
    {
        return Err(already_onboarded());
    }
    if let Some(wanted) = &form.email
        && wanted.trim().to_ascii_lowercase() != account.email
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "email_fixed",
            email_fixed_message(&state),
        ));
    }
    let profile = Profile {
        display_name: display_name(&form.display_name)?,
        headline: one_line(&form.headline, 100, "your headline")?,
        color: color(&form.color)?,
        notifications: form.notifications,
    };
    state
        .store
        .save_profile(&person.email, &profile)
        .await
        .map_err(|e| ApiError::internal("saving a profile", e))?;
    let account = read(&state, &person.email).await?;
    Ok(Json(view(&state, account)))
}

/// Why the email address cannot be changed here, and whom to ask.
pub fn email_fixed_message(state: &ApiState) -> String {
    match &state.accounts.operator_contact {
        Some(contact) => format!(
            "Your email address cannot be changed here: ask the people who run this platform ({contact})."
        ),
        None => "Your email address cannot be changed here: ask the people who run this platform."
            .to_string(),
    }
}

/// A new avatar: the request body is the picture.
pub async fn upload_avatar(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<AccountView>> {
    let (person, account) = signed_in(&state, &headers).await?;
    if account.slug.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "onboarding_needed",
            "Choose your URL first: finish signing up.",
        ));
    }
    let png = tokio::task::spawn_blocking(move || avatar::process(&body))
        .await
        .map_err(|e| ApiError::internal("processing an avatar", e))?
        .map_err(|p| {
            let status = match p {
                avatar::AvatarProblem::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                avatar::AvatarProblem::Format => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                _ => StatusCode::BAD_REQUEST,
            };
            ApiError::new(status, p.code(), p.message())
        })?;
    state
        .store
        .save_avatar(&person.email, &png)
        .await
        .map_err(|e| ApiError::internal("saving an avatar", e))?;
    let account = read(&state, &person.email).await?;
    Ok(Json(view(&state, account)))
}

/// `/avatars/<slug>.png`: the processed avatar, never the upload.
pub async fn avatar_image(State(state): State<ApiState>, Path(file): Path<String>) -> Response {
    let Some(slug) = file.strip_suffix(".png") else {
        return ApiError::not_found("picture").into_response();
    };
    match state.store.avatar(&slug.to_ascii_lowercase()).await {
        Ok(Some(png)) => (
            [
                (header::CONTENT_TYPE, "image/png"),
                (header::CACHE_CONTROL, "public, max-age=86400"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            png,
        )
            .into_response(),
        Ok(None) => ApiError::not_found("picture").into_response(),
        Err(e) => ApiError::internal("reading an avatar", e).into_response(),
    }
}
