//! The recorder's admin port: `/recordings` (what the operator polls into the Session's
//! status) and `/healthz`. The recorder pod needs no Kubernetes API access.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use tokio::sync::watch;

use super::RecordingInfo;

pub fn router(status: watch::Receiver<Vec<RecordingInfo>>) -> Router {
    Router::new()
        .route("/recordings", get(recordings))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(status)
}

async fn recordings(
    State(status): State<watch::Receiver<Vec<RecordingInfo>>>,
) -> Json<Vec<RecordingInfo>> {
    Json(status.borrow().clone())
}
