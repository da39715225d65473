//! The stage and its private backstage: watching the stage, entering the backstage with its
//! link, and an organiser's Broadcast / Stop broadcasting.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use roundtable_crds::{Lifecycle, Stage};
use serde::Deserialize;
use serde_json::json;

use super::access::{self, Attendance, Refusal};
use super::catalog::{self, Change};
use super::events::{attended, stage_view, write_error};
use super::identity::Person;
use super::limiter::Scope;
use super::{ApiError, ApiResult, ApiState, Client, Joined};
use roundtable_crds::live_room::LiveRoom;

async fn stage_of(
    state: &ApiState,
    headers: &HeaderMap,
    ns: &str,
    name: &str,
) -> ApiResult<(std::sync::Arc<Stage>, Person, Attendance)> {
    let stage = catalog::find_stage(&*state.catalog, ns, name)
        .ok_or_else(|| ApiError::not_found("stage"))?;
    let (_, person, attendance) = attended(state, headers, ns, &stage.spec.event).await?;
    Ok((stage, person, attendance))
}

pub async fn stage(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    let (stage, _, attendance) = stage_of(&state, &headers, &ns, &name).await?;
    let mut value = serde_json::to_value(stage_view(&state, &stage, attendance.organizer))
        .map_err(|e| ApiError::internal("json", e))?;
    value["event"] = json!(stage.spec.event);
    value["isOrganizer"] = json!(attendance.organizer);
    value["maxSpeakers"] = json!(stage.spec.backstage.max_speakers);
    value["broadcasting"] = json!(stage.spec.broadcasting);
    value["start"] = json!(stage.spec.start);
    value["lifecycle"] = json!(stage.spec.lifecycle);
    Ok(Json(value))
}

#[derive(Debug, Deserialize)]
pub struct JoinStage {
    #[serde(default)]
    backstage: bool,
    #[serde(default)]
    key: Option<String>,
}

pub async fn join(
    State(state): State<ApiState>,
    headers: HeaderMap,
    client: Client,
    Path((ns, name)): Path<(String, String)>,
    Json(request): Json<JoinStage>,
) -> ApiResult<Json<Joined>> {
    let (stage, person, attendance) = stage_of(&state, &headers, &ns, &name).await?;
    if request.backstage && !attendance.organizer {
        // Wrong keys are counted per client and per person; once either has used up its
        // tries, even the right key waits, so keys cannot be guessed.
        let now = state.clock.now();
        let keys = [client.0.clone(), format!("person:{}", person.email)];
        for key in &keys {
            state.limiter.blocked(Scope::Backstage, key, now).await?;
        }
        let key_valid = request
            .key
            .as_deref()
            .is_some_and(|k| state.keys.backstage_key_valid(&ns, &name, k));
        if !key_valid && request.key.as_deref().is_some_and(|k| !k.is_empty()) {
            for key in &keys {
                let _ = state.limiter.attempt(Scope::Backstage, key, now).await;
            }
        }
        access::backstage_allowed(&attendance, key_valid)?;
    }
    let status = stage.status.clone().unwrap_or_default();
    access::joinable(status.phase)?;
    let grants = access::stage_grants(&attendance, request.backstage);
    let label = super::people::person_label(&state, &person).await?;
    // Relays carry what stage watchers see; the backstage stays on the origin.
    let servers = if request.backstage {
        super::Servers::origin_only(status.endpoint.as_deref())
    } else {
        super::Servers {
            origin: status.endpoint.as_deref(),
            relays: &status.relay_pods,
            per_relay: status.watchers_per_pod.unwrap_or(0),
        }
    };
    Ok(Json(
        state
            .join(
                &LiveRoom::from(&*stage),
                servers,
                &person.email,
                &label,
                grants,
                request.backstage,
            )
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
pub struct Broadcast {
    on: bool,
}

/// Persists Broadcast / Stop broadcasting on the Stage (the backstage page also tells the
/// SFU at once over its events channel, which is what opens the gate within a second).
pub async fn broadcast(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
    Json(request): Json<Broadcast>,
) -> ApiResult<Json<serde_json::Value>> {
    let (_, _, attendance) = stage_of(&state, &headers, &ns, &name).await?;
    if !attendance.organizer {
        return Err(Refusal::NotOrganizer.into());
    }
    state
        .catalog
        .change(Change::Broadcast {
            namespace: ns,
            name,
            on: request.on,
        })
        .await
        .map_err(write_error)?;
    Ok(Json(json!({"broadcasting": request.on})))
}

/// An organiser's "Start the stage": live now, whatever its schedule says.
pub async fn start(
    state: State<ApiState>,
    headers: HeaderMap,
    path: Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    set_lifecycle(state, headers, path, Lifecycle::Started).await
}

/// An organiser's "End the stage": drained and stopped for good.
pub async fn end(
    state: State<ApiState>,
    headers: HeaderMap,
    path: Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    set_lifecycle(state, headers, path, Lifecycle::Ended).await
}

async fn set_lifecycle(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
    lifecycle: Lifecycle,
) -> ApiResult<Json<serde_json::Value>> {
    let (_, _, attendance) = stage_of(&state, &headers, &ns, &name).await?;
    if !attendance.organizer {
        return Err(Refusal::NotOrganizer.into());
    }
    state
        .catalog
        .change(Change::StageLifecycle {
            namespace: ns,
            name,
            lifecycle,
        })
        .await
        .map_err(write_error)?;
    Ok(Json(json!({"lifecycle": lifecycle})))
}
