//! Standalone meeting rooms at `/<host>/<slug>`: no account needed to join. A name label, the
//! passcode unless the link carries it, ask-to-join for locked rooms (handled by the SFU's
//! lobby), webinar rooms where attendees only watch, and email-domain rooms joined through a
//! single-use emailed link.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use roundtable_crds::{Room, RoomPhase};
use serde::Deserialize;
use serde_json::json;

use super::access::{self, PasscodeCheck, Refusal, RoomAttempt};
use super::catalog::{self, Change, JOIN_REQUESTED};
use super::events::write_error;
use super::identity::{code_hash, new_code, normalize_email, same_secret};
use super::limiter::{Limited, Scope};
use super::store::Label;
use super::{ApiError, ApiResult, ApiState, Client};
use roundtable_crds::live_room::LiveRoom;

/// How long an emailed access link works.
pub const ACCESS_LINK_SECONDS: i64 = 24 * 3600;

/// A room is asked to start at most this often while joiners wait.
const WAKE_EVERY_SECONDS: i64 = 20;

fn room_of(state: &ApiState, host: &str, slug: &str) -> ApiResult<std::sync::Arc<Room>> {
    catalog::find_room(&*state.catalog, host, slug).ok_or_else(|| ApiError::not_found("room"))
}

/// `room:<namespace>:<name>`: what access links are issued for.
fn room_key(room: &Room) -> String {
    LiveRoom::from(room).room_id()
}

pub async fn room(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((host, slug)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    let room = room_of(&state, &host, &slug)?;
    let person = state.viewer(&headers).await?;
    let email = person.as_ref().map(|p| p.email.as_str());
    let label = match email {
        Some(e) => super::people::prefill(&state, e).await?,
        None => None,
    };
    let status = room.status.clone().unwrap_or_default();
    Ok(Json(json!({
        "host": host,
        "slug": slug,
        "title": room.spec.title,
        "theme": room.spec.theme,
        "locked": room.spec.locked,
        "passcode": room.spec.passcode.is_some(),
        "emailDomains": room.spec.allowed_email_domains,
        "maxParticipants": room.spec.max_participants,
        "isHost": access::is_host(&room, email),
        "phase": status.phase,
        "watching": status.watching.unwrap_or(0),
        "onCamera": status.on_camera.unwrap_or(0),
        "label": label,
        "signedIn": person.is_some(),
    })))
}

#[derive(Debug, Deserialize)]
pub struct AccessLinkRequest {
    email: String,
}

/// Emails a unique, single-use, expiring access link to an address of an allowed domain.
pub async fn access_link(
    State(state): State<ApiState>,
    client: Client,
    Path((host, slug)): Path<(String, String)>,
    Json(request): Json<AccessLinkRequest>,
) -> ApiResult<Response> {
    let room = room_of(&state, &host, &slug)?;
    let email = normalize_email(&request.email).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_email",
            "That does not look like an email address.",
        )
    })?;
    if room.spec.allowed_email_domains.is_empty() {
        return Err(ApiError::bad_request(
            "This room does not use access links: open its link to join.",
        ));
    }
    if !access::domain_allowed(&room, &email) {
        return Err(Refusal::DomainNotAllowed.into());
    }
    super::people::email_on(&state)?;
    super::people::count_email(&state, &client, &email).await?;
    let now = state.clock.now();
    let code = new_code();
    state
        .store
        .add_access_link(
            &code_hash(&code),
            &room_key(&room),
            &email,
            now + ACCESS_LINK_SECONDS,
        )
        .await
        .map_err(|e| ApiError::internal("saving an access link", e))?;
    let title = room
        .spec
        .title
        .clone()
        .unwrap_or_else(|| format!("{host}/{slug}"));
    let link = format!("{}/{host}/{slug}?access={code}", state.public_url);
    let body = format!(
        "Hello,\n\nHere is your personal link to join {title}:\n\n{link}\n\n\
         It works once, within 24 hours. Do not forward it.\n"
    );
    super::people::send(&state, &email, &format!("Your link to {title}"), body).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"sent": true}))).into_response())
}

#[derive(Debug, Deserialize)]
pub struct JoinRoom {
    label: Label,
    #[serde(default)]
    passcode: Option<String>,
    #[serde(default)]
    access: Option<String>,
}

fn check_label(label: &Label) -> ApiResult<Label> {
    let name = label.name.trim();
    if name.is_empty() || name.chars().count() > 60 {
        return Err(ApiError::bad_request(
            "Enter a display name (at most 60 characters).",
        ));
    }
    if label.headline.chars().count() > 100 {
        return Err(ApiError::bad_request(
            "The headline is at most 100 characters.",
        ));
    }
    let image = label.image.trim();
    if !(image.is_empty()
        || ((image.starts_with("https://") || image.starts_with("http://")) && image.len() <= 2048)
        || (image.starts_with("/avatars/") && image.len() <= 200)
        || (image.starts_with("data:image/") && image.len() <= 200_000))
    {
        return Err(ApiError::bad_request(
            "The image must be a web address or a small picture.",
        ));
    }
    let color = label.color.trim();
    let hex = color.len() == 7
        && color.starts_with('#')
        && color[1..].chars().all(|c| c.is_ascii_hexdigit());
    if !color.is_empty() && !hex {
        return Err(ApiError::bad_request(
            "The background colour is a #rrggbb value.",
        ));
    }
    Ok(Label {
        name: name.to_string(),
        headline: label.headline.trim().to_string(),
        image: image.to_string(),
        color: color.to_string(),
    })
}

#[derive(Debug, Deserialize)]
pub struct PasscodeRequest {
    passcode: String,
}

/// The page's passcode step: says at once whether the passcode is right, before the joiner
/// fills in a name label. Counts toward the lockout like a join with a wrong passcode.
pub async fn passcode(
    State(state): State<ApiState>,
    client: Client,
    Path((host, slug)): Path<(String, String)>,
    Json(request): Json<PasscodeRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    let room = room_of(&state, &host, &slug)?;
    match check_passcode(&state, &room, &client, Some(&request.passcode)).await? {
        PasscodeCheck::Missing => Err(Refusal::PasscodeRequired.into()),
        PasscodeCheck::Wrong => Err(Refusal::WrongPasscode.into()),
        PasscodeCheck::Right | PasscodeCheck::NotNeeded => Ok(Json(json!({"right": true}))),
    }
}

/// Compares a given passcode with the room's Secret. Only wrong passcodes count toward the
/// client's lockout at this room: people who typed it right and join again never meet it.
async fn check_passcode(
    state: &ApiState,
    room: &Room,
    client: &Client,
    given: Option<&str>,
) -> ApiResult<PasscodeCheck> {
    let (selector, given) = match (&room.spec.passcode, given.map(str::trim)) {
        (None, _) => return Ok(PasscodeCheck::NotNeeded),
        (Some(_), None | Some("")) => return Ok(PasscodeCheck::Missing),
        (Some(selector), Some(given)) => (selector, given),
    };
    let now = state.clock.now();
    let tries = format!("{}|{}", client.0, room_key(room));
    state.limiter.blocked(Scope::Passcode, &tries, now).await?;
    let namespace = room.metadata.namespace.clone().unwrap_or_default();
    let expected = state
        .catalog
        .secret(&namespace, &selector.name, &selector.key)
        .await
        .map_err(|e| ApiError::internal("reading a room passcode", e))?
        .ok_or_else(|| {
            ApiError::internal(
                "a room's passcode Secret is missing",
                format!("{namespace}/{}", selector.name),
            )
        })?;
    if same_secret(&expected, given) {
        return Ok(PasscodeCheck::Right);
    }
    // The budget was not used up a moment ago; this wrong try may be its last.
    match state.limiter.attempt(Scope::Passcode, &tries, now).await {
        Ok(()) | Err(Limited::Wait(_)) => {}
        Err(Limited::Store(e)) => return Err(ApiError::internal("counting a wrong passcode", e)),
    }
    Ok(PasscodeCheck::Wrong)
}

pub async fn join(
    State(state): State<ApiState>,
    headers: HeaderMap,
    client: Client,
    Path((host, slug)): Path<(String, String)>,
    Json(request): Json<JoinRoom>,
) -> ApiResult<Response> {
    let room = room_of(&state, &host, &slug)?;
    let label = check_label(&request.label)?;
    let person = state.viewer(&headers).await?;
    let email = person.as_ref().map(|p| p.email.clone());
    let now = state.clock.now();
    let key = room_key(&room);

    let passcode = check_passcode(&state, &room, &client, request.passcode.as_deref()).await?;
    let access_code = request.access.as_deref().filter(|c| !c.is_empty());
    let access_link_email = match access_code {
        None => None,
        Some(code) => {
            state.limiter.attempt(Scope::Link, &client.0, now).await?;
            let found = state
                .store
                .access_link(&code_hash(code), &key, now)
                .await
                .map_err(|e| ApiError::internal("reading an access link", e))?;
            Some(found.ok_or(Refusal::LinkInvalid)?)
        }
    };
    let attempt = RoomAttempt {
        email: email.clone(),
        passcode,
        access_link_email: access_link_email.clone(),
    };
    let grants = access::room_grants(&room, &attempt)?;

    let status = room.status.clone().unwrap_or_default();
    let endpoint = match (status.phase, status.endpoint.as_deref()) {
        (Some(RoomPhase::Live), Some(endpoint)) => endpoint.to_string(),
        _ => {
            wake(&state, &room).await?;
            return Ok((
                StatusCode::ACCEPTED,
                Json(json!({
                    "starting": true,
                    "retryAfterMs": 1000,
                    "message": "The room is starting. You will join in a moment."
                })),
            )
                .into_response());
        }
    };
    if let Some(code) = access_code
        && !state
            .store
            .use_access_link(&code_hash(code), &key, now)
            .await
            .map_err(|e| ApiError::internal("using an access link", e))?
    {
        return Err(Refusal::LinkInvalid.into());
    }
    if let Some(email) = &email {
        state
            .store
            .save_label(email, &label, now)
            .await
            .map_err(|e| ApiError::internal("saving a label", e))?;
    }
    let subject = email
        .or(access_link_email)
        .unwrap_or_else(|| format!("guest-{}", &new_code()[..12]));
    let joined = state
        .join(
            &LiveRoom::from(&*room),
            super::Servers::origin_only(Some(&endpoint)),
            &subject,
            &label,
            grants,
            false,
        )
        .await?;
    Ok(Json(joined).into_response())
}

/// Asks for the room's SFU unless that was done moments ago.
async fn wake(state: &ApiState, room: &Room) -> ApiResult<()> {
    let now = state.clock.now();
    let recent = room
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(JOIN_REQUESTED))
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .is_some_and(|t| now - t.as_second() < WAKE_EVERY_SECONDS);
    if recent {
        return Ok(());
    }
    state
        .catalog
        .change(Change::WakeRoom {
            namespace: room.metadata.namespace.clone().unwrap_or_default(),
            name: room.metadata.name.clone().unwrap_or_default(),
            at: jiff::Timestamp::from_second(now)
                .map_err(|e| ApiError::internal("the clock", e))?,
        })
        .await
        .map_err(write_error)
}

#[derive(Debug, Deserialize)]
pub struct Lock {
    locked: bool,
}

/// A host locks or unlocks the room (the page also tells the SFU at once).
pub async fn lock(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((host, slug)): Path<(String, String)>,
    Json(request): Json<Lock>,
) -> ApiResult<Json<serde_json::Value>> {
    let room = room_of(&state, &host, &slug)?;
    let person = state.viewer(&headers).await?;
    if !access::is_host(&room, person.as_ref().map(|p| p.email.as_str())) {
        return Err(Refusal::NotHost.into());
    }
    state
        .catalog
        .change(Change::LockRoom {
            namespace: room.metadata.namespace.clone().unwrap_or_default(),
            name: room.metadata.name.clone().unwrap_or_default(),
            locked: request.locked,
        })
        .await
        .map_err(write_error)?;
    Ok(Json(json!({"locked": request.locked})))
}
