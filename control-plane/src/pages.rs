//! The web client: static files from `control-plane/web/`, embedded in release builds (read from
//! disk in debug builds, so editing a page needs no rebuild). Every page is the one HTML shell
//! `page.html` filled with its kind, title and script; the script reads its parameters from the
//! URL and calls `/api`.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
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

/// One kind of page: `kind` names its body class, `script` its module in `assets/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Page {
    pub kind: &'static str,
    pub title: &'static str,
    pub script: &'static str,
}

pub(crate) const PAGES: [(&str, Page); 10] = [
    (
        "/",
        Page {
            kind: "index",
            title: "Sign in",
            script: "signin",
        },
    ),
    (
        "/e/{ns}/{event}",
        Page {
            kind: "event",
            title: "Event",
            script: "event",
        },
    ),
    (
        "/s/{ns}/{session}",
        Page {
            kind: "session",
            title: "Session",
            script: "session",
        },
    ),
    (
        "/stage/{ns}/{name}",
        Page {
            kind: "stage",
            title: "Stage",
            script: "stage",
        },
    ),
    (
        "/backstage/{ns}/{name}",
        Page {
            kind: "backstage",
            title: "Backstage",
            script: "backstage",
        },
    ),
    (
        "/report/{ns}/{event}",
        Page {
            kind: "report",
            title: "Event report",
            script: "report",
        },
    ),
    (
        "/welcome",
        Page {
            kind: "welcome",
            title: "Welcome",
            script: "welcome",
        },
    ),
    (
        "/settings",
        Page {
            kind: "settings",
            title: "Profile settings",
            script: "settings",
        },
    ),
    (
        "/{host}",
        Page {
            kind: "dashboard",
            title: "Dashboard",
            script: "dashboard",
        },
    ),
    (
        "/{host}/{slug}",
        Page {
            kind: "room",
            title: "Room",
            script: "room",
        },
    ),
];

/// The shell filled in for `page`.
pub(crate) fn render(shell: &str, page: Page) -> String {
    shell
        .replace("{kind}", page.kind)
        .replace("{title}", page.title)
        .replace("{script}", page.script)
}

fn page(page: Page) -> impl Fn() -> std::future::Ready<Response> + Clone {
    move || {
        std::future::ready(match Web::get("page.html") {
            Some(shell) => (
                [(header::CACHE_CONTROL, "no-cache")],
                Html(render(&String::from_utf8_lossy(&shell.data), page)),
            )
                .into_response(),
            None => (StatusCode::INTERNAL_SERVER_ERROR, "page.html missing").into_response(),
        })
    }
}

/// The web client's file names (tests read them all).
#[cfg(test)]
pub(crate) fn web_files() -> Vec<String> {
    Web::iter().map(|n| n.into_owned()).collect()
}

#[cfg(test)]
pub(crate) fn web_file(name: &str) -> Option<String> {
    Web::get(name).map(|f| String::from_utf8_lossy(&f.data).into_owned())
}

async fn asset(Path(path): Path<String>) -> Response {
    file(&path)
}

pub fn routes() -> Router<ApiState> {
    PAGES.iter().fold(
        Router::new()
            .route("/assets/{*path}", get(asset))
            // Asked for by browsers on their own (a JSON response, a PDF): the same icon.
            .route("/favicon.ico", get(|| async { file("favicon.svg") })),
        |router, (path, kind)| router.route(path, get(page(*kind))),
    )
}
