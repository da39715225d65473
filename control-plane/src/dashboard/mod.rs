//! A host's dashboard at `/<slug>`: their rooms with live counts, and creating, editing and
//! deleting them. Each is a `Room` like any other: a Room resource in a cluster (labelled with
//! its owner), a room in the local catalog otherwise, kept in the store next to the
//! manifests' rooms and handed back at start-up ([`restore`]). Rooms of the host declared
//! elsewhere (kubectl, manifests) are listed read-only.

pub mod form;

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use roundtable_crds::Room;
use serde::Serialize;

use crate::accounts::{avatar_url, signed_in};
use crate::catalog::{self, Catalog, CatalogError, Change};
use crate::store::{Account, KeptRoom, Store};
use crate::{ApiError, ApiResult, ApiState};
use form::{FormProblem, Owner, RoomForm, made_on_dashboard, room_from, room_slug};

/// A room as the dashboard lists it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomRow {
    slug: String,
    url: String,
    title: Option<String>,
    theme: roundtable_crds::RoomTheme,
    locked: bool,
    passcode: bool,
    email_domains: Vec<String>,
    co_hosts: Vec<String>,
    phase: Option<roundtable_crds::RoomPhase>,
    watching: i32,
    on_camera: i32,
    /// False for rooms declared outside the dashboard (kubectl, manifests).
    editable: bool,
}

fn row(room: &Room, slug: &str) -> RoomRow {
    let status = room.status.clone().unwrap_or_default();
    RoomRow {
        url: format!("/{}/{}", room.spec.host, room.spec.slug),
        slug: room.spec.slug.clone(),
        title: room.spec.title.clone(),
        theme: room.spec.theme,
        locked: room.spec.locked,
        passcode: room.spec.passcode.is_some(),
        email_domains: room.spec.allowed_email_domains.clone(),
        co_hosts: room.spec.hosts.iter().skip(1).cloned().collect(),
        phase: status.phase,
        watching: status.watching.unwrap_or(0),
        on_camera: status.on_camera.unwrap_or(0),
        editable: made_on_dashboard(room, slug),
    }
}

fn problem(p: FormProblem) -> ApiError {
    ApiError::bad_request(p.0)
}

/// The dashboard: the host's public profile for anyone, and their rooms for them.
pub async fn dashboard(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(slug): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let slug = slug.to_ascii_lowercase();
    let host = state
        .store
        .account_by_slug(&slug)
        .await
        .map_err(|e| ApiError::internal("reading an account", e))?
        .ok_or_else(|| ApiError::not_found("host"))?;
    let viewer = state.viewer(&headers).await?;
    let mine = viewer.is_some_and(|p| p.email == host.email);
    let mut rooms: Vec<RoomRow> = Vec::new();
    if mine {
        let mut all: Vec<Arc<Room>> = state
            .catalog
            .rooms()
            .into_iter()
            .filter(|r| r.spec.host == slug)
            .collect();
        all.sort_by(|a, b| a.spec.slug.cmp(&b.spec.slug));
        rooms = all.iter().map(|r| row(r, &slug)).collect();
    }
    Ok(Json(serde_json::json!({
        "slug": slug,
        "displayName": host.display_name,
        "headline": host.headline,
        "avatar": avatar_url(&host),
        "color": host.color,
        "mine": mine,
        "rooms": rooms,
    })))
}

/// The signed-in host whose dashboard `slug` is.
async fn owner(state: &ApiState, headers: &HeaderMap, slug: &str) -> ApiResult<Account> {
    let (_, account) = signed_in(state, headers).await?;
    if account.slug.as_deref() != Some(&slug.to_ascii_lowercase()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_your_dashboard",
            "Only the host whose dashboard this is may change its rooms.",
        ));
    }
    Ok(account)
}

fn catalog_refused(e: CatalogError) -> ApiError {
    match e {
        CatalogError::Conflict => ApiError::new(
            StatusCode::CONFLICT,
            "room_exists",
            "You already have a room at that URL; choose another.",
        ),
        CatalogError::NotFound => ApiError::not_found("room"),
        CatalogError::Invalid(message) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "room_invalid",
            format!("The cluster refused the room: {message}"),
        ),
        CatalogError::Other(e) => ApiError::internal("writing a room", e),
    }
}

pub async fn create_room(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    Json(form): Json<RoomForm>,
) -> ApiResult<(StatusCode, Json<RoomRow>)> {
    let account = owner(&state, &headers, &slug).await?;
    let host = account.slug.clone().unwrap_or_default();
    let room_slug = room_slug(&form.slug).map_err(problem)?;
    if catalog::find_room(&*state.catalog, &host, &room_slug).is_some() {
        return Err(catalog_refused(CatalogError::Conflict));
    }
    let owner = Owner {
        slug: &host,
        email: &account.email,
    };
    let namespace = state.accounts.rooms_namespace.clone();
    let (room, passcode) =
        room_from(&form, &room_slug, owner, &namespace, false).map_err(problem)?;
    put(&state, &account, room.clone(), passcode, true).await?;
    Ok((StatusCode::CREATED, Json(row(&room, &host))))
}

pub async fn edit_room(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((slug, room)): Path<(String, String)>,
    Json(form): Json<RoomForm>,
) -> ApiResult<Json<RoomRow>> {
    let account = owner(&state, &headers, &slug).await?;
    let host = account.slug.clone().unwrap_or_default();
    let existing = editable(&state, &host, &room)?;
    let namespace = existing.metadata.namespace.clone().unwrap_or_default();
    let owner = Owner {
        slug: &host,
        email: &account.email,
    };
    let (mut edited, passcode) = room_from(
        &form,
        &existing.spec.slug,
        owner,
        &namespace,
        existing.spec.passcode.is_some(),
    )
    .map_err(problem)?;
    edited.metadata.name = existing.metadata.name.clone();
    let passcode = match passcode {
        Some(p) => Some(p),
        None if edited.spec.passcode.is_some() => current_passcode(&state, &existing).await?,
        None => None,
    };
    put(&state, &account, edited.clone(), passcode, false).await?;
    Ok(Json(row(&edited, &host)))
}

/// The passcode a room has now (kept when an edit leaves it alone).
async fn current_passcode(state: &ApiState, room: &Room) -> ApiResult<Option<String>> {
    let Some(selector) = &room.spec.passcode else {
        return Ok(None);
    };
    let namespace = room.metadata.namespace.clone().unwrap_or_default();
    state
        .catalog
        .secret(&namespace, &selector.name, &selector.key)
        .await
        .map_err(|e| ApiError::internal("reading a passcode", e))
}

pub async fn delete_room(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((slug, room)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let account = owner(&state, &headers, &slug).await?;
    let host = account.slug.clone().unwrap_or_default();
    let existing = editable(&state, &host, &room)?;
    state
        .catalog
        .change(Change::DeleteRoom {
            namespace: existing.metadata.namespace.clone().unwrap_or_default(),
            name: existing.metadata.name.clone().unwrap_or_default(),
        })
        .await
        .map_err(catalog_refused)?;
    if !state.catalog.keeps_rooms() {
        state
            .store
            .forget_room(&host, &existing.spec.slug)
            .await
            .map_err(|e| ApiError::internal("forgetting a room", e))?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A room of `host` the dashboard may change: one it made.
fn editable(state: &ApiState, host: &str, slug: &str) -> ApiResult<Arc<Room>> {
    let room = catalog::find_room(&*state.catalog, host, &slug.to_ascii_lowercase())
        .ok_or_else(|| ApiError::not_found("room"))?;
    if !made_on_dashboard(&room, host) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "room_declared",
            "This room was declared by the platform's operators (kubectl or a manifest): ask them to change it.",
        ));
    }
    Ok(room)
}

/// Writes a dashboard room to the catalog, and to the store when the catalog does not keep it.
async fn put(
    state: &ApiState,
    account: &Account,
    room: Room,
    passcode: Option<String>,
    create: bool,
) -> ApiResult<()> {
    if !state.catalog.keeps_rooms() {
        let kept = KeptRoom {
            host: room.spec.host.clone(),
            slug: room.spec.slug.clone(),
            owner: account.email.clone(),
            spec: serde_json::to_string(&room).expect("a room serialises"),
            passcode: passcode.clone(),
        };
        let done = state
            .store
            .keep_room(&kept, create, state.clock.now())
            .await
            .map_err(|e| ApiError::internal("keeping a room", e))?;
        if !done {
            return Err(catalog_refused(if create {
                CatalogError::Conflict
            } else {
                CatalogError::NotFound
            }));
        }
    }
    let change = Change::PutRoom {
        room: Box::new(room.clone()),
        passcode,
        create,
    };
    if let Err(e) = state.catalog.change(change).await {
        if create && !state.catalog.keeps_rooms() {
            let _ = state
                .store
                .forget_room(&room.spec.host, &room.spec.slug)
                .await;
        }
        return Err(catalog_refused(e));
    }
    Ok(())
}

/// Hands the rooms kept in `store` to a catalog that does not keep them (local mode start-up).
/// Returns how many were restored; a kept room that no longer reads is skipped with a warning.
pub async fn restore(
    store: &Store,
    catalog: &dyn Catalog,
) -> Result<usize, crate::store::StoreError> {
    let mut restored = 0;
    for kept in store.kept_rooms().await? {
        let Ok(room) = serde_json::from_str::<Room>(&kept.spec) else {
            tracing::warn!(host = %kept.host, slug = %kept.slug, "a kept dashboard room does not read as a Room");
            continue;
        };
        // A manifest declared a room at the same URL since: the manifest's is served (and
        // listed read-only on the dashboard), never two rooms at one URL.
        if catalog::find_room(catalog, &kept.host, &kept.slug).is_some() {
            tracing::warn!(host = %kept.host, slug = %kept.slug,
                "a kept dashboard room was not restored: the manifests declare a room at its URL");
            continue;
        }
        let change = Change::PutRoom {
            room: Box::new(room),
            passcode: kept.passcode,
            create: true,
        };
        match catalog.change(change).await {
            Ok(()) => restored += 1,
            Err(e) => tracing::warn!(host = %kept.host, slug = %kept.slug, error = %e,
                "a kept dashboard room was not restored"),
        }
    }
    Ok(restored)
}
