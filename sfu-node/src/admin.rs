//! The admin port: `/metrics`, `/healthz`, `/readyz` and `/stats` (the operator reads it).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use crate::metrics::Metrics;
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

async fn readyz(State(state): State<AdminState>) -> (StatusCode, &'static str) {
    if state.accepting.load(Ordering::Relaxed) && !state.status.get().draining {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    }
}

async fn stats(State(state): State<AdminState>) -> impl IntoResponse {
    Json(state.status.get())
}
