//! The stage and its private backstage: watching the stage, entering the backstage with its
//! link, and an organiser's Broadcast / Stop broadcasting.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use roundtable_crds::Stage;
use serde::Deserialize;
use serde_json::json;

use super::access::{self, Attendance, Refusal};
use super::catalog::{self, Change};
use super::events::{attended, stage_view, write_error};
use super::identity::Person;
use super::store::Label;
use super::{ApiError, ApiResult, ApiState, Joined};
use crate::plan::room::LiveRoom;

fn stage_of(
    state: &ApiState,
    headers: &HeaderMap,
    ns: &str,
    name: &str,
) -> ApiResult<(std::sync::Arc<Stage>, Person, Attendance)> {
    let stage = catalog::find_stage(&*state.catalog, ns, name)
        .ok_or_else(|| ApiError::not_found("stage"))?;
    let (_, person, attendance) = attended(state, headers, ns, &stage.spec.event)?;
    Ok((stage, person, attendance))
}

pub async fn stage(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    let (stage, _, attendance) = stage_of(&state, &headers, &ns, &name)?;
    let mut value = serde_json::to_value(stage_view(&state, &stage, attendance.organizer))
        .map_err(|e| ApiError::internal("json", e))?;
    value["event"] = json!(stage.spec.event);
    value["isOrganizer"] = json!(attendance.organizer);
    value["maxSpeakers"] = json!(stage.spec.backstage.max_speakers);
    value["broadcasting"] = json!(stage.spec.broadcasting);
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
    Path((ns, name)): Path<(String, String)>,
    Json(request): Json<JoinStage>,
) -> ApiResult<Json<Joined>> {
    let (stage, person, attendance) = stage_of(&state, &headers, &ns, &name)?;
    if request.backstage {
        let key_valid = request
            .key
            .as_deref()
            .is_some_and(|k| state.keys.backstage_key_valid(&ns, &name, k));
        access::backstage_allowed(&attendance, key_valid)?;
    }
    let status = stage.status.clone().unwrap_or_default();
    access::joinable(status.phase)?;
    let grants = access::stage_grants(&attendance, request.backstage);
    let label = Label {
        name: person.name.clone(),
        ..Label::default()
    };
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
    Ok(Json(state.join(
        &LiveRoom::from(&*stage),
        servers,
        &person.email,
        &label,
        grants,
        request.backstage,
    )?))
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
    let (_, _, attendance) = stage_of(&state, &headers, &ns, &name)?;
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
