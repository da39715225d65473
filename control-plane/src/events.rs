//! The event page's API: an event with the sessions and stages a person may see, creating,
//! starting and deleting sessions, joining one, and the event report.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use roundtable_crds::{
    LiveEvent, LivePhase, RecordingState, RecordingSummary, Session, SharePolicy, Stage,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::access::{self, Attendance, Refusal};
use super::catalog::{self, CatalogError, Change};
use super::identity::Person;
use super::{ApiError, ApiResult, ApiState, Joined};
use roundtable_crds::live_room::LiveRoom;

fn ts(t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> Option<String> {
    t.as_ref().map(|t| t.0.to_string())
}

fn name_of<K: kube::Resource>(k: &K) -> String {
    k.meta().name.clone().unwrap_or_default()
}

/// A session as listed on the event page.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    name: String,
    title: String,
    description: Option<String>,
    start: Option<String>,
    end: Option<String>,
    phase: Option<LivePhase>,
    share_policy: SharePolicy,
    watching: i32,
    on_camera: i32,
    max_participants: i32,
    recording: bool,
    /// Whether the asker moderates it.
    moderator: bool,
    created_by: Option<String>,
}

fn session_view(session: &Session, attendance: &Attendance, email: &str) -> SessionView {
    let status = session.status.clone().unwrap_or_default();
    let grants = access::session_grants(session, attendance, email);
    SessionView {
        name: name_of(session),
        title: session.spec.title.clone(),
        description: session.spec.description.clone(),
        start: ts(&session.spec.start),
        end: ts(&session.spec.end),
        phase: status.phase,
        share_policy: session.spec.share.policy,
        watching: status.watching.unwrap_or(0),
        on_camera: status.on_camera.unwrap_or(0),
        max_participants: session.spec.max_participants,
        recording: session.spec.recording,
        moderator: grants.moderate,
        created_by: session.spec.created_by.clone(),
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageView {
    name: String,
    title: String,
    phase: Option<LivePhase>,
    live: bool,
    watching: i32,
    /// Only for organisers: the private backstage link.
    #[serde(skip_serializing_if = "Option::is_none")]
    backstage_link: Option<String>,
}

pub fn stage_view(state: &ApiState, stage: &Stage, organizer: bool) -> StageView {
    let status = stage.status.clone().unwrap_or_default();
    let ns = stage.metadata.namespace.clone().unwrap_or_default();
    let name = name_of(stage);
    StageView {
        backstage_link: organizer.then(|| {
            format!(
                "/backstage/{ns}/{name}?key={}",
                state.keys.backstage_key(&ns, &name)
            )
        }),
        title: stage.spec.title.clone(),
        phase: status.phase,
        live: status.live.unwrap_or(false),
        watching: status.watching.unwrap_or(0),
        name,
    }
}

/// The event and the person's standing at it; refusals for strangers.
pub async fn attended(
    state: &ApiState,
    headers: &HeaderMap,
    ns: &str,
    event: &str,
) -> ApiResult<(std::sync::Arc<LiveEvent>, Person, Attendance)> {
    let event = catalog::find_event(&*state.catalog, ns, event)
        .ok_or_else(|| ApiError::not_found("event"))?;
    let person = state.viewer(headers).await?;
    let attendance = access::attend(&event, person.as_ref())?;
    Ok((event, person.expect("attend refuses nobody"), attendance))
}

fn of_event<'a, K: kube::Resource + 'a>(
    items: impl IntoIterator<Item = std::sync::Arc<K>> + 'a,
    ns: &'a str,
    event_of: impl Fn(&K) -> &str + 'a,
    event: &'a str,
) -> impl Iterator<Item = std::sync::Arc<K>> + 'a {
    items
        .into_iter()
        .filter(move |k| k.meta().namespace.as_deref() == Some(ns) && event_of(k) == event)
}

pub async fn event(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    let (event, person, attendance) = attended(&state, &headers, &ns, &name).await?;
    let mut sessions: Vec<_> = of_event(state.catalog.sessions(), &ns, |s| &s.spec.event, &name)
        .filter(|s| access::session_visible(s, &attendance))
        .map(|s| session_view(&s, &attendance, &person.email))
        .collect();
    sessions.sort_by(|a, b| (&a.start, &a.title).cmp(&(&b.start, &b.title)));
    let stages: Vec<_> = of_event(state.catalog.stages(), &ns, |s| &s.spec.event, &name)
        .map(|s| stage_view(&state, &s, attendance.organizer))
        .collect();
    let status = event.status.clone().unwrap_or_default();
    Ok(Json(json!({
        "namespace": ns,
        "name": name,
        "title": event.spec.title,
        "description": event.spec.description,
        "coverImage": event.spec.cover_image,
        "start": event.spec.start.0.to_string(),
        "end": event.spec.end.0.to_string(),
        "phase": status.phase,
        "chat": event.spec.chat,
        "attendeesMayCreateSessions": event.spec.attendees_may_create_sessions,
        "isOrganizer": attendance.organizer,
        "ticketTypes": attendance.ticket_types,
        "sessions": sessions,
        "stages": stages,
    })))
}

/// What the registration form shows: an event's title and ticket types (public).
pub async fn tickets(
    State(state): State<ApiState>,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    let event = catalog::find_event(&*state.catalog, &ns, &name)
        .ok_or_else(|| ApiError::not_found("event"))?;
    Ok(Json(json!({
        "title": event.spec.title,
        "start": event.spec.start.0.to_string(),
        "end": event.spec.end.0.to_string(),
        "ticketTypes": event.spec.ticket_types,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewSession {
    title: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    share_policy: Option<SharePolicy>,
    #[serde(default)]
    moderate_myself: bool,
    #[serde(default)]
    max_participants: Option<i32>,
}

/// A DNS-label name for a new session: the title's words and a random suffix.
fn session_name(title: &str) -> String {
    let mut slug = String::new();
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
        if slug.len() >= 40 {
            break;
        }
    }
    let slug = slug.trim_end_matches('-');
    let suffix = &super::identity::new_code()[..6];
    if slug.is_empty() {
        format!("session-{suffix}")
    } else {
        format!("{slug}-{suffix}")
    }
}

/// Creates a session (organisers; attendees when the event allows it). It starts at once; its
/// creator moderates it if they choose (and always when they choose Moderated).
pub async fn create_session(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
    Json(request): Json<NewSession>,
) -> ApiResult<Response> {
    let (event, person, attendance) = attended(&state, &headers, &ns, &name).await?;
    access::may_create_session(&event, &attendance)?;
    let existing: Vec<_> =
        of_event(state.catalog.sessions(), &ns, |s| &s.spec.event, &name).collect();
    access::session_quota(
        &event,
        &attendance,
        &person.email,
        existing.iter().map(|s| &**s),
        state.session_limits,
    )?;
    let title = request.title.trim();
    if title.is_empty() || title.chars().count() > 200 {
        return Err(ApiError::bad_request(
            "Give the session a title (at most 200 characters).",
        ));
    }
    let policy = request.share_policy.unwrap_or_default();
    let moderators = if request.moderate_myself || policy == SharePolicy::Moderated {
        vec![person.email.clone()]
    } else {
        vec![]
    };
    let invitees = if policy == SharePolicy::InviteOnly {
        vec![person.email.clone()]
    } else {
        vec![]
    };
    let session_name = session_name(title);
    let session: Session = serde_json::from_value(json!({
        "apiVersion": "roundtable.dev/v1alpha1",
        "kind": "Session",
        "metadata": {"name": session_name, "namespace": ns},
        "spec": {
            "event": name,
            "title": title,
            "description": request.description,
            "lifecycle": "Started",
            "share": {"policy": policy, "moderators": moderators, "invitees": invitees},
            "maxParticipants": request.max_participants.unwrap_or(10),
            "createdBy": person.email,
        }
    }))
    .map_err(|e| ApiError::internal("building a session", e))?;
    let limit = session.spec.max_participants;
    if !(1..=20).contains(&limit) {
        return Err(ApiError::bad_request(
            "A session has 1 to 20 people on camera.",
        ));
    }
    state
        .catalog
        .change(Change::CreateSession(Box::new(session)))
        .await
        .map_err(write_error)?;
    Ok((StatusCode::CREATED, Json(json!({"name": session_name}))).into_response())
}

pub fn write_error(e: CatalogError) -> ApiError {
    match e {
        CatalogError::Conflict => ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "That already exists. Try again.",
        ),
        CatalogError::NotFound => ApiError::not_found("resource"),
        CatalogError::Invalid(message) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
        }
        CatalogError::Other(e) => ApiError::internal("writing to the catalog", e),
    }
}

/// A session the asker may see, with their standing at its event.
async fn visible_session(
    state: &ApiState,
    headers: &HeaderMap,
    ns: &str,
    name: &str,
) -> ApiResult<(std::sync::Arc<Session>, Person, Attendance)> {
    let session = catalog::find_session(&*state.catalog, ns, name)
        .ok_or_else(|| ApiError::from(Refusal::Hidden))?;
    let (_, person, attendance) = attended(state, headers, ns, &session.spec.event).await?;
    if !access::session_visible(&session, &attendance) {
        return Err(Refusal::Hidden.into());
    }
    Ok((session, person, attendance))
}

pub async fn session(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    let (session, person, attendance) = visible_session(&state, &headers, &ns, &name).await?;
    let view = session_view(&session, &attendance, &person.email);
    let mut value = serde_json::to_value(view).map_err(|e| ApiError::internal("json", e))?;
    value["event"] = json!(session.spec.event);
    value["isOrganizer"] = json!(attendance.organizer);
    Ok(Json(value))
}

pub async fn join_session(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult<Json<Joined>> {
    let (session, person, attendance) = visible_session(&state, &headers, &ns, &name).await?;
    let status = session.status.clone().unwrap_or_default();
    access::joinable(status.phase)?;
    let grants = access::session_grants(&session, &attendance, &person.email);
    let label = super::people::person_label(&state, &person).await?;
    let room = LiveRoom::from(&*session);
    let servers = super::Servers {
        origin: status.endpoint.as_deref(),
        relays: &status.relay_pods,
        per_relay: status.watchers_per_pod.unwrap_or(0),
    };
    Ok(Json(
        state
            .join(&room, servers, &person.email, &label, grants, false)
            .await?,
    ))
}

pub async fn start_session(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (_, _, attendance) = visible_session(&state, &headers, &ns, &name).await?;
    if !attendance.organizer {
        return Err(Refusal::NotOrganizer.into());
    }
    state
        .catalog
        .change(Change::StartSession {
            namespace: ns,
            name,
        })
        .await
        .map_err(write_error)?;
    Ok(StatusCode::OK)
}

/// Organisers delete sessions; so may the attendee who created one.
pub async fn delete_session(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (session, person, attendance) = visible_session(&state, &headers, &ns, &name).await?;
    let creator = session
        .spec
        .created_by
        .as_deref()
        .is_some_and(|c| c.eq_ignore_ascii_case(&person.email));
    if !attendance.organizer && !creator {
        return Err(Refusal::NotOrganizer.into());
    }
    state
        .catalog
        .change(Change::DeleteSession {
            namespace: ns,
            name,
        })
        .await
        .map_err(write_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// One session in the event report.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportRow {
    session: String,
    title: String,
    peak_watching: i32,
    peak_on_camera: i32,
    unique_joiners: i32,
    recordings: Vec<ReportRecording>,
}

/// A recording in the report, with its download link once its MP4 is complete.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportRecording {
    #[serde(flatten)]
    summary: RecordingSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

/// The event report: attendance per session and recordings; organisers only, once the event
/// has ended.
pub async fn report(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    let (event, _, attendance) = attended(&state, &headers, &ns, &name).await?;
    if !attendance.organizer {
        return Err(Refusal::NotOrganizer.into());
    }
    let ended = event.spec.end.0.as_second() <= state.clock.now();
    let rows: Vec<ReportRow> = of_event(state.catalog.sessions(), &ns, |s| &s.spec.event, &name)
        .map(|s| {
            let status = s.status.clone().unwrap_or_default();
            ReportRow {
                session: name_of(&*s),
                title: s.spec.title.clone(),
                peak_watching: status.peak_watching.unwrap_or(0),
                peak_on_camera: status.peak_on_camera.unwrap_or(0),
                unique_joiners: status.unique_joiners.unwrap_or(0),
                recordings: if ended {
                    status
                        .recordings
                        .into_iter()
                        .enumerate()
                        .map(|(i, summary)| ReportRecording {
                            url: (summary.state == RecordingState::Complete
                                && summary.file.is_some())
                            .then(|| format!("/api/recordings/{ns}/{}/{i}", name_of(&*s))),
                            summary,
                        })
                        .collect()
                } else {
                    vec![]
                },
            }
        })
        .collect();
    Ok(Json(json!({
        "title": event.spec.title,
        "ended": ended,
        "sessions": rows,
    })))
}

/// A recording's MP4, for the event's organisers once the event has ended.
pub async fn download(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((ns, session, index)): Path<(String, String, usize)>,
) -> ApiResult<Response> {
    let session = catalog::find_session(&*state.catalog, &ns, &session)
        .ok_or_else(|| ApiError::not_found("recording"))?;
    let (event, _, attendance) = attended(&state, &headers, &ns, &session.spec.event).await?;
    if !attendance.organizer {
        return Err(Refusal::NotOrganizer.into());
    }
    if event.spec.end.0.as_second() > state.clock.now() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "event_not_ended",
            "Recordings can be downloaded once the event has ended.",
        ));
    }
    let recording = session
        .status
        .as_ref()
        .and_then(|s| s.recordings.get(index))
        .filter(|r| r.state == RecordingState::Complete)
        .ok_or_else(|| ApiError::not_found("recording"))?;
    let file = recording.file.as_deref().unwrap_or_default();
    let claim = event
        .spec
        .recording_storage
        .as_ref()
        .map(|r| r.persistent_volume_claim.as_str())
        .unwrap_or_default();
    let safe = |p: &str| {
        !p.is_empty()
            && std::path::Path::new(p)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
    };
    let (Some(dir), true, true) = (&state.recordings_dir, safe(file), safe(claim)) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_stored_here",
            "This recording is not available from this server.",
        ));
    };
    let path = dir.join(claim).join(file);
    let opened = tokio::fs::File::open(&path).await.map_err(|e| {
        tracing::warn!(path = %path.display(), error = %e, "opening a recording");
        ApiError::not_found("recording")
    })?;
    let length = opened
        .metadata()
        .await
        .map_err(|e| ApiError::internal("reading a recording", e))?
        .len();
    let name = std::path::Path::new(file)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("recording.mp4")
        .replace('"', "");
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(opened));
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "video/mp4".to_string()),
            (axum::http::header::CONTENT_LENGTH, length.to_string()),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response())
}
