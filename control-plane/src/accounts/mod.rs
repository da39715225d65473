//! Host accounts: sign-up (an emailed link or OpenID Connect, see [`crate::oidc`]), onboarding
//! once (use case, display name, the URL slug that never changes), profile settings with an
//! avatar, and account deletion with its audit record.
//!
//! [`slug`] and [`avatar`] are the rules, pure; [`profile`] and [`deletion`] the handlers. The
//! profile is what prefills a signed-in host's name label everywhere.

pub mod avatar;
pub(crate) mod deletion;
pub(crate) mod profile;
pub mod slug;

use axum::http::HeaderMap;

use crate::identity::Person;
use crate::store::{Account, Label};
use crate::{ApiError, ApiResult, ApiState};

/// How a deployment runs accounts.
#[derive(Debug, Clone)]
pub struct AccountSettings {
    /// The identity provider people may sign up with, besides an emailed link.
    pub oidc: Option<crate::oidc::Provider>,
    /// Where dashboard rooms are created (Kubernetes namespace; the local mode's manifests'
    /// namespace).
    pub rooms_namespace: String,
    /// How to reach whoever runs this platform (changing an email address goes through them).
    pub operator_contact: Option<String>,
}

impl Default for AccountSettings {
    fn default() -> Self {
        AccountSettings {
            oidc: None,
            rooms_namespace: "default".into(),
            operator_contact: None,
        }
    }
}

/// The use cases onboarding offers, `(value, label)`.
pub const USE_CASES: &[(&str, &str)] = &[
    ("meetings", "Team meetings"),
    ("webinars", "Webinars"),
    ("events", "Virtual events"),
    ("teaching", "Teaching and training"),
    ("other", "Something else"),
];

/// The signed-in person and their account (made on first use).
pub(crate) async fn signed_in(
    state: &ApiState,
    headers: &HeaderMap,
) -> ApiResult<(Person, Account)> {
    let person = state
        .viewer(headers)
        .await?
        .ok_or_else(ApiError::sign_in_required)?;
    let account = state
        .store
        .ensure_account(&person.email, &person.name, state.clock.now())
        .await
        .map_err(|e| ApiError::internal("reading an account", e))?;
    Ok((person, account))
}

/// Where an account's avatar is served (None without one). The version makes each upload a
/// new URL, so browsers never show an old picture.
pub fn avatar_url(account: &Account) -> Option<String> {
    let slug = account.slug.as_deref()?;
    (account.avatar_version > 0)
        .then(|| format!("/avatars/{slug}.png?v={}", account.avatar_version))
}

/// The name label an onboarded host's profile gives them.
pub fn profile_label(account: &Account) -> Option<Label> {
    account.slug.as_ref()?;
    Some(Label {
        name: account.display_name.clone(),
        headline: account.headline.clone(),
        image: avatar_url(account).unwrap_or_default(),
        color: account.color.clone(),
    })
}

/// A one-line text of at most `max` characters, trimmed.
pub(crate) fn one_line(value: &str, max: usize, what: &str) -> ApiResult<String> {
    let value = value.trim();
    if value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "Give {what} on one line, at most {max} characters."
        )));
    }
    Ok(value.to_string())
}

/// A name-label colour: `#rrggbb`, or empty for the default.
pub(crate) fn color(value: &str) -> ApiResult<String> {
    let value = value.trim().to_ascii_lowercase();
    let ok = value.is_empty()
        || (value.len() == 7
            && value.starts_with('#')
            && value[1..].bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(value)
    } else {
        Err(ApiError::bad_request(
            "Choose the label colour as #rrggbb (for example #1f6feb).",
        ))
    }
}
