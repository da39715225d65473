//! What browsers are told and what they must show: security headers on every response, and
//! state-changing requests (every method but GET, HEAD and OPTIONS, and WebSocket upgrades)
//! only from pages of this site. The sign-in cookie is `SameSite=Lax`; this check does not rest
//! on it (a form post or a socket from another site is refused by its `Origin`).
//!
//! A request with no `Origin` and no `Sec-Fetch-Site` is not from a browser page (curl, an
//! external registration system, the e2e tests) and carries no ambient cookie a third party
//! could ride on, so it is let through.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiState};

/// The web client is served from this origin only: scripts and styles are files of it (no
/// inline code), media and images may be `blob:`/`data:` or avatars on the web, and it talks
/// to the control plane and to SFUs on other hosts and ports (signalling, WebSockets).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data: blob: https: http:; media-src 'self' blob:; \
     connect-src 'self' http: https: ws: wss:; font-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// `scheme://host[:port]` of a URL such as `https://events.example.com/`.
pub fn origin_of(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.trim_end_matches('/').to_ascii_lowercase();
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    format!("{scheme}://{host}").to_ascii_lowercase()
}

/// Whether a request may change something: from a page of this site, or not from a browser.
pub fn same_site_or_not_a_browser(
    method: &Method,
    headers: &HeaderMap,
    public_origin: &str,
) -> bool {
    let upgrade = headers.contains_key(header::UPGRADE);
    if !upgrade && matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return true;
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let origin = origin.to_ascii_lowercase();
        // The page's own host, as the browser addressed this server (a local mode opened as
        // localhost rather than 127.0.0.1, a cluster behind an Ingress that keeps Host).
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_ascii_lowercase);
        let own_host = host.is_some_and(|host| {
            origin == format!("http://{host}") || origin == format!("https://{host}")
        });
        return origin == public_origin || own_host;
    }
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some(site) => site == "same-origin" || site == "none",
        None => true,
    }
}

/// Refuses cross-site state changes; adds the security headers to every answer.
pub async fn guard(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let allowed =
        same_site_or_not_a_browser(request.method(), request.headers(), &state.public_origin);
    let mut response = if allowed {
        next.run(request).await
    } else {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_site",
            "This request came from another site and was refused.",
        )
        .into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn origins_are_scheme_host_and_port() {
        assert_eq!(
            origin_of("https://Events.example.com/"),
            "https://events.example.com"
        );
        assert_eq!(
            origin_of("http://127.0.0.1:8080/x?y"),
            "http://127.0.0.1:8080"
        );
    }

    #[test]
    fn state_changes_come_from_this_site_or_not_from_a_browser() {
        let site = "https://events.example.com";
        let post = Method::POST;
        let ok = |h: &[(&str, &str)]| same_site_or_not_a_browser(&post, &headers(h), site);
        assert!(ok(&[("origin", site)]));
        assert!(ok(&[
            ("origin", "http://localhost:8080"),
            ("host", "localhost:8080")
        ]));
        assert!(!ok(&[("origin", "https://evil.example")]));
        assert!(!ok(&[
            ("origin", "https://evil.example"),
            ("host", "events.example.com")
        ]));
        assert!(!ok(&[("origin", "null")]));
        assert!(!ok(&[("sec-fetch-site", "cross-site")]));
        assert!(!ok(&[("sec-fetch-site", "same-site")]));
        assert!(ok(&[("sec-fetch-site", "same-origin")]));
        assert!(ok(&[]), "curl and servers send neither");
        let get = |h: &[(&str, &str)]| same_site_or_not_a_browser(&Method::GET, &headers(h), site);
        assert!(
            get(&[("origin", "https://evil.example")]),
            "reads are not refused"
        );
        assert!(
            !get(&[("origin", "https://evil.example"), ("upgrade", "websocket")]),
            "a WebSocket from another site is"
        );
    }
}
