//! The admin port: `/metrics`, `/healthz`, `/readyz` and `/stats` (the operator reads it).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::room::UpstreamState;
use crate::shell::{RoomRequest, StatusCell};

#[derive(Clone, Debug)]
pub struct AdminState {
    pub status: Arc<StatusCell>,
    pub metrics: Arc<Metrics>,
    /// False once draining: the pod should get no new joiners.
    pub accepting: Arc<AtomicBool>,
    /// An origin's room, for `POST /leave` (the operator moves the room to another pod);
    /// None on a relay, which leaves on SIGTERM.
    pub leave: Option<mpsc::Sender<RoomRequest>>,
}

pub fn router(state: AdminState) -> Router {
    let router = Router::new();
    let router = if state.leave.is_some() {
        router.route("/leave", post(leave))
    } else {
        router
    };
    router
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/stats", get(stats))
        .with_state(state)
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let body = state.metrics.render(&state.status.get());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// Ready while taking joins; a relay also needs its upstream to the origin.
async fn readyz(State(state): State<AdminState>) -> (StatusCode, &'static str) {
    let status = state.status.get();
    if !state.accepting.load(Ordering::Relaxed) || status.draining {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else if status.upstream == Some(UpstreamState::Connecting) {
        (StatusCode::SERVICE_UNAVAILABLE, "connecting to the origin")
    } else {
        (StatusCode::OK, "ready")
    }
}

/// The operator moves the room to another pod: take no more joins (not ready), ask everyone
/// to re-join through the control plane, which names the other pod by now.
async fn leave(State(state): State<AdminState>) -> (StatusCode, &'static str) {
    state.accepting.store(false, Ordering::Relaxed);
    match &state.leave {
        Some(requests) if requests.send(RoomRequest::Leave).await.is_ok() => {
            tracing::info!("leaving: the room moves to another pod; everyone asked to re-join");
            (StatusCode::ACCEPTED, "leaving")
        }
        _ => (StatusCode::SERVICE_UNAVAILABLE, "the room has stopped"),
    }
}

async fn stats(State(state): State<AdminState>) -> impl IntoResponse {
    Json(state.status.get())
}
