//! Deleting an account, asked for from the settings page with the slug typed to confirm: the
//! host's dashboard rooms are deleted (Room resources in a cluster), their personal data
//! removed or anonymised, and an audit record kept of who was deleted, when, and what went.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::signed_in;
use crate::catalog::{CatalogError, Change};
use crate::dashboard::form::made_on_dashboard;
use crate::{ApiError, ApiResult, ApiState};

#[derive(Debug, Deserialize)]
pub struct DeleteRequest {
    /// The account's slug (its email before onboarding), typed to confirm.
    confirm: String,
}

pub async fn delete_account(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Json(request): Json<DeleteRequest>,
) -> ApiResult<Response> {
    let (person, account) = signed_in(&state, &headers).await?;
    let expected = account
        .slug
        .clone()
        .unwrap_or_else(|| account.email.clone());
    if !request.confirm.trim().eq_ignore_ascii_case(&expected) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "confirm_mismatch",
            format!("Type {expected} to confirm that this account is to be deleted."),
        ));
    }
    let mut elsewhere = Vec::new();
    if let Some(slug) = &account.slug {
        let rooms: Vec<_> = state
            .catalog
            .rooms()
            .into_iter()
            .filter(|r| made_on_dashboard(r, slug))
            .collect();
        let mut deleted = 0;
        for room in &rooms {
            let change = Change::DeleteRoom {
                namespace: room.metadata.namespace.clone().unwrap_or_default(),
                name: room.metadata.name.clone().unwrap_or_default(),
            };
            match state.catalog.change(change).await {
                Ok(()) | Err(CatalogError::NotFound) => deleted += 1,
                Err(e) => return Err(ApiError::internal("deleting a room", e)),
            }
        }
        let what = if state.catalog.keeps_rooms() {
            "Room resources"
        } else {
            "rooms"
        };
        elsewhere.push((what.to_string(), deleted));
    }
    let deletion = state
        .store
        .delete_account(&person.email, elsewhere, state.clock.now())
        .await
        .map_err(|e| ApiError::internal("deleting an account", e))?
        .ok_or_else(|| ApiError::not_found("account"))?;
    tracing::info!(slug = %deletion.slug, removed = %deletion.summary(), "an account was deleted");
    let mut response = Json(serde_json::json!({
        "deleted": true,
        "removed": deletion.removed.iter().map(|(what, n)| serde_json::json!({"what": what, "count": n})).collect::<Vec<_>>(),
    }))
    .into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("rt_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
    Ok(response)
}
