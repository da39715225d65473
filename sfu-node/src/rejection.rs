//! Requests refused before a handler runs: a body over the limit, a body that is not UTF-8,
//! not JSON or not the JSON a handler reads, a bad path segment or query string, a method or
//! path that does not exist. axum answers these with a bare status or a line of plain text
//! written for developers; [`explain`] turns each into the JSON error the sfu-node and the
//! control plane answer with (`{"error": code, "message": sentence}`), with a sentence a
//! person can act on.

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The largest request body the sfu-node and the control plane read. JSON requests are a few
/// hundred bytes; the largest body is a WHEP offer from a browser with a slot for each of 20
/// people on camera: two m-lines each, up to about 3 KiB per video m-line with every codec
/// Chrome offers — about 100 KiB.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The limit [`explain`] names in its sentence for 413 (the router's `DefaultBodyLimit`).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// An error as clients read it: status, stable code, sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl Rejection {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Rejection {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.code, "message": self.message });
        (self.status, Json(body)).into_response()
    }
}

/// The longest plain-text rejection read back to be explained (axum's are one line).
const MAX_REJECTION_BYTES: usize = 4 * 1024;

/// The layers every public router takes: the body limit, and [`explain`] around everything.
pub fn layered<S: Clone + Send + Sync + 'static>(router: axum::Router<S>) -> axum::Router<S> {
    router
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            BodyLimit(MAX_BODY_BYTES),
            explain,
        ))
}

/// WHIP and WHEP bodies are SDP: a request that declares another Content-Type is refused
/// (415); one without a Content-Type is read as SDP, as hand-made requests often are.
pub fn refuse_non_sdp(headers: &axum::http::HeaderMap) -> Option<Response> {
    let declared = headers.get(header::CONTENT_TYPE)?;
    let media_type = declared
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    if media_type.eq_ignore_ascii_case("application/sdp") {
        return None;
    }
    let message = format!(
        "The offer was sent as {:?}: send the SDP offer with Content-Type: application/sdp.",
        String::from_utf8_lossy(declared.as_bytes())
    );
    Some(Rejection::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "not_sdp", message).into_response())
}

/// Rewrites a plain-text or empty client error (4xx) into a JSON [`Rejection`]; responses a
/// handler wrote as JSON, WebSocket upgrades and every other response pass as they are.
pub async fn explain(State(limit): State<BodyLimit>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !status.is_client_error() || json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, MAX_REJECTION_BYTES).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        // Not a rejection of ours (a large non-JSON body): pass the status on without it.
        Err(_) => return Response::from_parts(parts, Body::empty()),
    };
    let mut explained = rejection(status, &method, &path, &text, limit.0).into_response();
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&name) {
            explained.headers_mut().insert(name, v.clone());
        }
    }
    explained
}

/// The error to tell a client for a client error `status` that axum answered with `text`
/// (often empty) to `method path`, under a body limit of `limit` bytes.
pub fn rejection(
    status: StatusCode,
    method: &Method,
    path: &str,
    text: &str,
    limit: usize,
) -> Rejection {
    // axum's rejections say what failed, then a colon, then the parser's own words, which
    // name the field or position ("missing field `email` at line 1 column 2").
    let detail = text.split_once(": ").map_or("", |(_, d)| d.trim());
    let because = if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    };
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => Rejection::new(
            status,
            "body_too_large",
            format!(
                "The request body is too large: at most {} KiB is accepted.",
                limit / 1024
            ),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Rejection::new(
            status,
            "unsupported_media_type",
            format!(
                "{path} does not take this Content-Type: send {}.",
                if path.ends_with("/whip") || path.ends_with("/whep") {
                    "an SDP offer as application/sdp"
                } else {
                    "JSON, with the header Content-Type: application/json"
                }
            ),
        ),
        StatusCode::UNPROCESSABLE_ENTITY => Rejection::new(
            status,
            "bad_request_body",
            format!("The request body is JSON but not what {path} expects{because}."),
        ),
        StatusCode::METHOD_NOT_ALLOWED => Rejection::new(
            status,
            "method_not_allowed",
            format!("{path} does not accept {method} requests."),
        ),
        StatusCode::NOT_FOUND => {
            Rejection::new(status, "not_found", format!("There is nothing at {path}."))
        }
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => Rejection::new(
            status,
            "headers_too_large",
            "The request's headers are too large.",
        ),
        StatusCode::BAD_REQUEST if text.starts_with("Failed to parse the request body as JSON") => {
            Rejection::new(
                status,
                "bad_json",
                format!("The request body is not valid JSON{because}."),
            )
        }
        StatusCode::BAD_REQUEST if text.starts_with("Failed to deserialize query string") => {
            Rejection::new(
                status,
                "bad_query",
                format!("The query string of this address is not valid{because}."),
            )
        }
        StatusCode::BAD_REQUEST
            if text.starts_with("Invalid URL") || text.starts_with("Wrong number of path") =>
        {
            Rejection::new(
                status,
                "bad_path",
                format!("{path} is not a valid address{because}."),
            )
        }
        StatusCode::BAD_REQUEST if text.starts_with("Request body didn't contain valid UTF-8") => {
            Rejection::new(status, "bad_body", "The request body is not UTF-8 text.")
        }
        StatusCode::BAD_REQUEST if text.starts_with("Failed to buffer the request body") => {
            Rejection::new(
                status,
                "bad_body",
                format!("The request body could not be read{because}."),
            )
        }
        _ if text.contains("upgrade")
            || text.contains("WebSocket")
            || text.contains("websocket") =>
        {
            Rejection::new(
                status,
                "websocket_expected",
                format!("{path} is a WebSocket: open it with a WebSocket client."),
            )
        }
        _ if text.trim().is_empty() => Rejection::new(
            status,
            "bad_request",
            format!(
                "This request was refused ({}).",
                status.canonical_reason().unwrap_or("client error")
            ),
        ),
        // A WebSocket upgrade refused and the like: axum's one line is the clearest there is.
        _ => Rejection::new(status, "bad_request", text.trim().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axum_rejections_become_sentences_that_name_what_to_fix() {
        let post = Method::POST;
        let rejection =
            |status, method, path, text| rejection(status, method, path, text, 64 * 1024);
        let e = rejection(
            StatusCode::UNPROCESSABLE_ENTITY,
            &post,
            "/api/signin",
            "Failed to deserialize the JSON body into the target type: missing field `email` at line 1 column 2",
        );
        assert_eq!(e.code, "bad_request_body");
        assert_eq!(
            e.message,
            "The request body is JSON but not what /api/signin expects (missing field `email` at line 1 column 2)."
        );
        let e = rejection(
            StatusCode::BAD_REQUEST,
            &post,
            "/api/signin",
            "Failed to parse the request body as JSON: expected value at line 1 column 1",
        );
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                "bad_json",
                "The request body is not valid JSON (expected value at line 1 column 1)."
            )
        );
        let e = rejection(StatusCode::PAYLOAD_TOO_LARGE, &post, "/api/signin", "");
        assert!(e.message.contains("at most 64 KiB"), "{}", e.message);
        let e = rejection(StatusCode::METHOD_NOT_ALLOWED, &Method::PUT, "/api/me", "");
        assert_eq!(e.message, "/api/me does not accept PUT requests.");
        let e = rejection(StatusCode::IM_A_TEAPOT, &post, "/x", "");
        assert_eq!(e.message, "This request was refused (I'm a teapot).");
    }
}
