//! The admin port: `/metrics`, `/healthz`, `/readyz` and `/stats` (the operator reads it).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use crate::metrics::Metrics;
use crate::room::UpstreamState;
use crate::shell::StatusCell;

#[derive(Clone, Debug)]
pub struct AdminState {
    pub status: Arc<StatusCell>,
    pub metrics: Arc<Metrics>,
    /// False once draining: the pod should get no new joiners.
    pub accepting: Arc<AtomicBool>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
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

async fn stats(State(state): State<AdminState>) -> impl IntoResponse {
    Json(state.status.get())
}
