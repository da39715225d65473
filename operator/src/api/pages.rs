//! The web client: static files from `operator/web/`, embedded in release builds (read from
//! disk in debug builds, so editing a page needs no rebuild). Each page route returns the HTML
//! shell of its kind; the page's script reads its parameters from the URL and calls `/api`.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::RustEmbed;

use super::ApiState;

#[derive(RustEmbed)]
#[folder = "web/"]
struct Web;

fn file(path: &str) -> Response {
    match Web::get(path) {
        Some(content) => {
            let mime = content.metadata.mimetype().to_string();
            (
                [
                    (header::CONTENT_TYPE, mime),
                    (header::CACHE_CONTROL, "no-cache".to_string()),
                ],
                content.data.into_owned(),
            )
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

fn page(name: &'static str) -> impl Fn() -> std::future::Ready<Response> + Clone {
    move || std::future::ready(file(name))
}

async fn asset(Path(path): Path<String>) -> Response {
    file(&path)
}

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(page("index.html")))
        .route("/e/{ns}/{event}", get(page("event.html")))
        .route("/s/{ns}/{session}", get(page("session.html")))
        .route("/stage/{ns}/{name}", get(page("stage.html")))
        .route("/backstage/{ns}/{name}", get(page("backstage.html")))
        .route("/report/{ns}/{event}", get(page("report.html")))
        .route("/assets/{*path}", get(asset))
        .route("/{host}/{slug}", get(page("room.html")))
}
