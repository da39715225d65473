//! The signalling proxy: the browser's WHIP/WHEP offers and answers, peer deletions and the
//! room-events WebSocket reach the room's SFU pods through the control plane, so a page only
//! ever talks to the origin it was served from (HTTPS in a real deployment; a page on https
//! may not call `http://<node>:<port>`). Media does not come here: it goes straight to the
//! SFU's advertised UDP address, or through TURN.
//!
//! - `/sfu/origin/rooms/{room}/…` — the room's origin pod (its status `endpoint`);
//! - `/sfu/{relay}/rooms/{room}/…` — one of its relay pods (status `relayPods[].endpoint`).
//!
//! The upstream is looked up from the room's status on every request ([`upstream`], pure), never
//! taken from the request, so the proxy reaches only SFUs the operator published. Every request
//! must carry a join token for `{room}` signed with the join key (the SFU checks it again,
//! with its grants); anything else is refused here, before any upstream is contacted.

use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use futures::{SinkExt, StreamExt};
use roundtable_crds::{RelayPod, live_room::Kind};
use tokio_tungstenite::tungstenite;

use crate::catalog::{Catalog, find_session, find_stage};
use crate::{ApiError, ApiResult, ApiState, sfu_url};

/// The path segment naming a room's origin pod (relay pods are named `<origin>-relay-<i>`).
pub const ORIGIN: &str = "origin";

/// How long an SFU may take to answer an offer before the page is told it is unreachable.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a refused connection to an SFU is retried. A pod that just turned Ready behind a
/// NodePort or LoadBalancer Service is routable only once every node's kube-proxy has its rule,
/// 0.3–0.8 s later on the real-node test: a join in that gap is retried, not refused.
const CONNECT_GRACE: Duration = Duration::from_secs(3);

/// The wait before retry `attempt` (1, 2, …) of a refused connection, `elapsed` after the
/// first try; `None` when the grace is spent. Pure: 100 ms, doubling, at most 800 ms.
fn connect_retry(attempt: u32, elapsed: Duration) -> Option<Duration> {
    let wait = Duration::from_millis(100 << attempt.saturating_sub(1).min(3));
    (elapsed + wait <= CONNECT_GRACE).then_some(wait)
}

/// Run `attempt` again while it fails with an error `refused` says never reached the SFU
/// (so trying again is safe), within [`CONNECT_GRACE`]; then its last result.
async fn retry_refused<T, E, F: Future<Output = Result<T, E>>>(
    mut attempt: impl FnMut() -> F,
    refused: impl Fn(&E) -> bool,
) -> Result<T, E> {
    let started = std::time::Instant::now();
    let mut attempts = 0;
    loop {
        match attempt().await {
            Err(e) if refused(&e) => {
                attempts += 1;
                let Some(wait) = connect_retry(attempts, started.elapsed()) else {
                    return Err(e);
                };
                tokio::time::sleep(wait).await;
            }
            result => return result,
        }
    }
}

/// Send a request made by `request`, again while the SFU's address takes no connection.
async fn send_retrying(
    request: impl Fn() -> reqwest::RequestBuilder,
) -> reqwest::Result<reqwest::Response> {
    retry_refused(|| request().send(), reqwest::Error::is_connect).await
}

/// The proxy's routes, merged into the control plane's router.
pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/sfu/{server}/rooms/{room}/whip", post(offer))
        .route("/sfu/{server}/rooms/{room}/whep", post(offer))
        .route("/sfu/{server}/rooms/{room}/peers/{peer}", delete(end_peer))
        .route("/sfu/{server}/rooms/{room}/events", get(events))
}

/// The signalling base URL (on this origin) of `server` (`origin` or a relay pod's name).
pub fn proxied(server: &str) -> String {
    format!("/sfu/{server}")
}

/// Where `server` of the room with id `room` (`<kind>:<namespace>:<name>`) listens, from the
/// room's status: `http://host:port`, or None when the room or that server is not published.
pub fn upstream(catalog: &dyn Catalog, room: &str, server: &str) -> Option<String> {
    let mut parts = room.splitn(3, ':');
    let (kind, ns, name) = (parts.next()?, parts.next()?, parts.next()?);
    let (endpoint, relays): (Option<String>, Vec<RelayPod>) = match kind {
        k if k == Kind::Session.as_str() => {
            let status = find_session(catalog, ns, name)?.status.clone()?;
            (status.endpoint, status.relay_pods)
        }
        k if k == Kind::Stage.as_str() => {
            let status = find_stage(catalog, ns, name)?.status.clone()?;
            (status.endpoint, status.relay_pods)
        }
        k if k == Kind::Room.as_str() => {
            let room = catalog.rooms().into_iter().find(|r| {
                r.metadata.namespace.as_deref() == Some(ns)
                    && r.metadata.name.as_deref() == Some(name)
            })?;
            (room.status.clone()?.endpoint, Vec::new())
        }
        _ => return None,
    };
    let endpoint = if server == ORIGIN {
        endpoint
    } else {
        relays
            .into_iter()
            .find(|r| r.name == server)
            .and_then(|r| r.endpoint)
    };
    endpoint.filter(|e| !e.is_empty()).map(|e| sfu_url(&e))
}

/// The join token of a request (`Authorization: Bearer` or `?token=`), checked for `room`.
fn authorise(
    state: &ApiState,
    room: &str,
    headers: &HeaderMap,
    query: Option<&str>,
) -> ApiResult<()> {
    let Some(token) = presented_token(headers, query) else {
        return Err(refused(
            "This request has no join token: join the room again.",
        ));
    };
    let now = state.clock.now().max(0) as u64;
    sfu_node::auth::TokenVerifier::new(room, state.keys.join_key())
        .verify(&token, now)
        .map(|_| ())
        .map_err(|_| refused("This join token is not valid for this room: join the room again."))
}

/// The join token a request carries: `Authorization: Bearer …`, else `?token=` (the events
/// WebSocket, which browsers open without headers).
fn presented_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    bearer.or_else(|| {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query?).ok()?;
        pairs
            .into_iter()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v)
    })
}

fn refused(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "join_token", message)
}

fn unreachable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "sfu_unreachable",
        "The live room's media server is not reachable right now. Try again in a moment.",
    )
}

fn resolve(state: &ApiState, room: &str, server: &str) -> ApiResult<String> {
    upstream(&*state.catalog, room, server).ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_live",
            "This live room is not running on that server (any more): join again.",
        )
    })
}

/// WHIP or WHEP: the offer goes to the SFU, its answer comes back with `Location` rewritten
/// to this proxy.
async fn offer(
    State(state): State<ApiState>,
    Path((server, room)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    authorise(&state, &room, &headers, query.as_deref())?;
    let base = resolve(&state, &room, &server)?;
    let kind = uri
        .path()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let path = format!("/rooms/{}/{kind}", encode_segment(&room));
    forward(&state, method, &server, &base, &path, query, &headers, body).await
}

async fn end_peer(
    State(state): State<ApiState>,
    Path((server, room, peer)): Path<(String, String, u64)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authorise(&state, &room, &headers, query.as_deref())?;
    let base = resolve(&state, &room, &server)?;
    let path = format!("/rooms/{}/peers/{peer}", encode_segment(&room));
    forward(
        &state,
        Method::DELETE,
        &server,
        &base,
        &path,
        query,
        &headers,
        Bytes::new(),
    )
    .await
}

/// Room ids are `<kind>:<ns>:<name>`: DNS labels and colons, safe in a path as they are.
fn encode_segment(room: &str) -> String {
    room.replace('%', "%25")
        .replace('/', "%2F")
        .replace('?', "%3F")
        .replace('#', "%23")
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    state: &ApiState,
    method: Method,
    server: &str,
    base: &str,
    path: &str,
    query: Option<String>,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let url = match &query {
        Some(q) => format!("{base}{path}?{q}"),
        None => format!("{base}{path}"),
    };
    let request = || {
        let mut request = state
            .http
            .request(method.clone(), &url)
            .timeout(UPSTREAM_TIMEOUT)
            .body(body.clone());
        for name in [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT] {
            if let Some(v) = headers.get(&name) {
                request = request.header(name, v.clone());
            }
        }
        request
    };
    let answer = send_retrying(request).await.map_err(|e| {
        tracing::warn!(%url, error = %e, "signalling proxy: SFU unreachable");
        unreachable()
    })?;
    let status = answer.status();
    let mut response = Response::builder().status(status.as_u16());
    for (name, value) in answer.headers() {
        let keep = [header::CONTENT_TYPE, header::LOCATION]
            .iter()
            .any(|h| h == name)
            || name.as_str() == "x-participant";
        if !keep {
            continue;
        }
        if name == header::LOCATION {
            // `/rooms/{room}/peers/{id}` on the SFU is `/sfu/{server}/rooms/…` here.
            let location = value.to_str().unwrap_or_default();
            let rewritten = if location.starts_with('/') {
                format!("{}{location}", proxied(server))
            } else {
                location.to_string()
            };
            if let Ok(v) = HeaderValue::from_str(&rewritten) {
                response = response.header(header::LOCATION, v);
            }
            continue;
        }
        response = response.header(name.as_str(), value.clone());
    }
    let bytes = answer.bytes().await.map_err(|_| unreachable())?;
    response
        .body(Body::from(bytes))
        .map_err(|e| ApiError::internal("building a proxied answer", e))
}

/// The room-events WebSocket: connect to the SFU first (so its refusal is the answer), then
/// accept the browser's upgrade and copy frames both ways until either side closes.
async fn events(
    State(state): State<ApiState>,
    Path((server, room)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> ApiResult<Response> {
    authorise(&state, &room, &headers, query.as_deref())?;
    let base = resolve(&state, &room, &server)?;
    let ws_base = base.replacen("http", "ws", 1);
    let url = match &query {
        Some(q) => format!("{ws_base}/rooms/{}/events?{q}", encode_segment(&room)),
        None => format!("{ws_base}/rooms/{}/events", encode_segment(&room)),
    };
    let mut request = tungstenite::client::IntoClientRequest::into_client_request(url.as_str())
        .map_err(|e| ApiError::internal("proxy websocket request", e))?;
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        request
            .headers_mut()
            .insert(header::AUTHORIZATION, v.clone());
    }
    let connect = retry_refused(
        || tokio_tungstenite::connect_async(request.clone()),
        |e| matches!(e, tungstenite::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
    );
    let upstream = match tokio::time::timeout(UPSTREAM_TIMEOUT, connect).await {
        Ok(Ok((socket, _))) => socket,
        Ok(Err(tungstenite::Error::Http(refusal))) => {
            let status =
                StatusCode::from_u16(refusal.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let body = refusal.into_body().unwrap_or_default();
            return Ok((status, [(header::CONTENT_TYPE, "application/json")], body).into_response());
        }
        Ok(Err(e)) => {
            tracing::warn!(%url, error = %e, "signalling proxy: SFU events unreachable");
            return Err(unreachable());
        }
        Err(_) => return Err(unreachable()),
    };
    Ok(ws
        .max_message_size(1 << 20)
        .on_upgrade(move |browser| pump(browser, upstream)))
}

type Upstream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn pump(browser: WebSocket, upstream: Upstream) {
    let (mut to_browser, mut from_browser) = browser.split();
    let (mut to_sfu, mut from_sfu) = upstream.split();
    let up = async {
        while let Some(Ok(message)) = from_browser.next().await {
            let message = match message {
                Message::Text(t) => tungstenite::Message::text(t.as_str()),
                Message::Binary(b) => tungstenite::Message::binary(b),
                Message::Ping(b) => tungstenite::Message::Ping(b),
                Message::Pong(b) => tungstenite::Message::Pong(b),
                Message::Close(_) => break,
            };
            if to_sfu.send(message).await.is_err() {
                break;
            }
        }
        let _ = to_sfu.close().await;
    };
    let down = async {
        while let Some(Ok(message)) = from_sfu.next().await {
            let message = match message {
                tungstenite::Message::Text(t) => Message::text(t.as_str()),
                tungstenite::Message::Binary(b) => Message::binary(b),
                tungstenite::Message::Ping(b) => Message::Ping(b),
                tungstenite::Message::Pong(b) => Message::Pong(b),
                tungstenite::Message::Close(frame) => {
                    let frame = frame.map(|f| axum::extract::ws::CloseFrame {
                        code: f.code.into(),
                        reason: f.reason.as_str().into(),
                    });
                    let _ = to_browser.send(Message::Close(frame)).await;
                    break;
                }
                tungstenite::Message::Frame(_) => continue,
            };
            if to_browser.send(message).await.is_err() {
                break;
            }
        }
        let _ = to_browser.close().await;
    };
    // Either side ending ends both.
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_the_bearer_header_else_the_decoded_query() {
        let none = HeaderMap::new();
        assert_eq!(
            presented_token(&none, Some("token=a.b-c_d")).as_deref(),
            Some("a.b-c_d")
        );
        assert_eq!(
            presented_token(&none, Some("x=1&token=a%2Eb")).as_deref(),
            Some("a.b")
        );
        assert_eq!(presented_token(&none, Some("x=1")), None);
        assert_eq!(presented_token(&none, None), None);
        let mut bearer = HeaderMap::new();
        bearer.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer h.e.ader"),
        );
        assert_eq!(
            presented_token(&bearer, Some("token=q")).as_deref(),
            Some("h.e.ader")
        );
    }

    #[test]
    fn a_refused_connection_is_retried_for_three_seconds_at_most() {
        let waits: Vec<Duration> = (1..=4)
            .map(|a| connect_retry(a, Duration::ZERO).unwrap())
            .collect();
        assert_eq!(
            waits,
            [100, 200, 400, 800].map(Duration::from_millis).to_vec()
        );
        assert_eq!(
            connect_retry(9, Duration::ZERO),
            Some(Duration::from_millis(800))
        );
        assert_eq!(connect_retry(5, Duration::from_millis(2_300)), None);
        assert!(connect_retry(5, Duration::from_millis(2_200)).is_some());
    }

    /// An SFU that starts listening a moment after the first try (a Service kube-proxy has not
    /// routed yet) gets the request; one that never listens is given up on after the grace.
    #[tokio::test]
    async fn an_offer_reaches_an_sfu_that_listens_a_moment_late() {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let late = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .unwrap();
            let app = Router::new().route("/offer", post(|body: Bytes| async move { body }));
            axum::serve(listener, app).await.unwrap();
        });
        let http = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{port}/offer");
        let started = std::time::Instant::now();
        let answer = send_retrying(|| http.post(&url).body("v=0"))
            .await
            .expect("answered once it listened");
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.text().await.unwrap(), "v=0");
        assert!(started.elapsed() >= Duration::from_millis(400));
        late.abort();

        let never = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/offer", never.local_addr().unwrap());
        drop(never);
        let started = std::time::Instant::now();
        let refused = send_retrying(|| http.post(&url)).await.unwrap_err();
        assert!(refused.is_connect());
        let spent = started.elapsed();
        assert!(
            spent >= Duration::from_secs(2) && spent < CONNECT_GRACE + Duration::from_secs(1),
            "{spent:?}"
        );
    }
}
