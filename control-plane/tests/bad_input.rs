//! Bad HTTP input against the control plane served on a loopback socket (hyper in front of the
//! real router, as in production): every POST, PUT and DELETE route is sent bodies over the
//! limit, the wrong Content-Type, JSON that does not parse or has the wrong types, bad path
//! segments and query strings, methods it does not take and huge headers. Each answer must be
//! a client error (4xx) with a JSON body whose message is a sentence — never a 5xx, never
//! axum's developer wording, never a dropped connection.

use std::net::SocketAddr;
use std::sync::Arc;

use roundtable_control_plane::{
    self as api, ApiSettings, ApiState, Clock, LocalCatalog, Mailer, RegistrationVerifier, Store,
    manifests,
};
use serde_json::Value;
use sfu_node::rejection::MAX_BODY_BYTES;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The control plane of the repository's examples on a loopback port.
async fn serve() -> SocketAddr {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let loaded = manifests::load(&manifests::files(&[examples]).unwrap()).unwrap();
    let catalog = Arc::new(LocalCatalog::new(loaded, jiff::Timestamp::now()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = ApiState::new(
        catalog,
        ApiSettings {
            store: Store::in_memory().await.unwrap(),
            join_key: b"join-key".to_vec(),
            registration: RegistrationVerifier::new(Some(b"registration".to_vec()), None),
            mailer: Mailer::Log,
            public_url: format!("http://{addr}"),
            clock: Clock::default(),
            recordings_dir: None,
        },
    )
    .await
    .unwrap();
    tokio::spawn(api::serve::serve(
        listener,
        api::router(state),
        None,
        std::future::pending(),
    ));
    addr
}

/// The routes that read a JSON body, each with a body of the right shape.
const JSON_ROUTES: &[(&str, &str)] = &[
    ("/api/signin", r#"{"email":"ada@example.com"}"#),
    ("/api/signin/verify", r#"{"code":"0123"}"#),
    ("/api/signin/registration", r#"{"token":"a.b.c"}"#),
    (
        "/api/events/default/gala/register",
        r#"{"email":"ada@example.com","name":"Ada","ticket_type":"general"}"#,
    ),
    ("/api/events/default/gala/sessions", r#"{"title":"Hello"}"#),
    ("/api/rooms/ada/coffee/join", r#"{"label":{"name":"Ada"}}"#),
    ("/api/rooms/ada/board/passcode", r#"{"passcode":"1234"}"#),
    (
        "/api/rooms/linus/team-sync/access-link",
        r#"{"email":"ada@example.com"}"#,
    ),
    ("/api/rooms/ada/coffee/lock", r#"{"locked":true}"#),
    (
        "/api/account/onboarding",
        r#"{"useCase":"meetings","displayName":"Ada","slug":"ada"}"#,
    ),
    ("/api/account/delete", r#"{"confirm":"ada"}"#),
    ("/api/hosts/ada/rooms", r#"{"slug":"office"}"#),
    ("/api/stages/default/gala-main-stage/join", r#"{}"#),
    (
        "/api/stages/default/gala-main-stage/broadcast",
        r#"{"on":true}"#,
    ),
];

/// Every other route that changes something, with its method.
const OTHER_ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/signout"),
    ("POST", "/api/account/avatar"),
    ("POST", "/api/sessions/default/gala-open-source/join"),
    ("POST", "/api/sessions/default/gala-open-source/start"),
    ("DELETE", "/api/sessions/default/gala-open-source"),
    ("POST", "/api/stages/default/gala-main-stage/start"),
    ("POST", "/api/stages/default/gala-main-stage/end"),
    (
        "POST",
        "/sfu/origin/rooms/session:default:gala-open-source/whip",
    ),
    (
        "POST",
        "/sfu/origin/rooms/session:default:gala-open-source/whep",
    ),
    (
        "DELETE",
        "/sfu/origin/rooms/session:default:gala-open-source/peers/1",
    ),
];

struct Case {
    what: String,
    method: String,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    /// The status expected, when one particular status is right.
    status: Option<u16>,
    /// The route reads neither body nor query: success is a fine answer too (never a 5xx).
    ignored: bool,
}

fn case(what: &str, method: &str, path: &str, ct: Option<&'static str>, body: &[u8]) -> Case {
    Case {
        what: what.to_string(),
        method: method.to_string(),
        path: path.to_string(),
        content_type: ct,
        body: body.to_vec(),
        status: None,
        ignored: false,
    }
}

impl Case {
    fn expect(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    fn ignored(mut self) -> Self {
        self.ignored = true;
        self
    }
}

const JSON: Option<&str> = Some("application/json");

fn table() -> Vec<Case> {
    let oversized = format!(r#"{{"email":"{}"}}"#, "a".repeat(MAX_BODY_BYTES + 1));
    let mut cases = Vec::new();
    for (path, good) in JSON_ROUTES {
        let c = |what: &str, ct, body: &[u8]| case(what, "POST", path, ct, body);
        cases.extend([
            c("no Content-Type", None, good.as_bytes()).expect(415),
            c("text/plain", Some("text/plain"), good.as_bytes()).expect(415),
            c("form", Some("application/x-www-form-urlencoded"), b"a=1").expect(415),
            c("truncated JSON", JSON, &good.as_bytes()[..good.len() / 2]).expect(400),
            c("not JSON", JSON, b"hello").expect(400),
            c("empty body", JSON, b"").expect(400),
            c("not UTF-8", JSON, b"{\"email\":\"\xff\xfe\"}"),
            c("a JSON array", JSON, b"[1,2,3]").expect(422),
            c("a JSON string", JSON, b"\"ada@example.com\"").expect(422),
            c("JSON null", JSON, b"null").expect(422),
            c("wrong types", JSON, br#"{"email":5,"code":[],"token":{},"locked":"yes","on":1,"title":false,"passcode":7,"label":"x","backstage":"no","name":1,"ticket_type":2}"#)
                .expect(422),
            c("deeply nested", JSON, "[".repeat(10_000).as_bytes()),
            c("over the body limit", JSON, oversized.as_bytes()).expect(413),
        ]);
        for method in ["PUT", "PATCH"] {
            cases.push(
                case(
                    "a method it does not take",
                    method,
                    path,
                    JSON,
                    good.as_bytes(),
                )
                .expect(405),
            );
        }
    }
    for (method, path) in OTHER_ROUTES {
        let signout = *path == "/api/signout";
        let c = |c: Case| if signout { c.ignored() } else { c };
        cases.push(c(case(
            "garbage body",
            method,
            path,
            Some("application/sdp"),
            b"\x00\x01garbage",
        )));
        cases.push(c(case(
            "over the body limit",
            method,
            path,
            Some("application/sdp"),
            oversized.as_bytes(),
        )));
        cases.push(c(case(
            "no token, a query string that does not decode",
            method,
            &format!("{path}?token=%ZZ&token"),
            None,
            b"",
        )));
        cases.push(case("a method it does not take", "PUT", path, None, b"").expect(405));
    }
    cases.extend([
        case(
            "a peer id that is not a number",
            "DELETE",
            "/sfu/origin/rooms/r/peers/abc",
            None,
            b"",
        )
        .expect(400),
        case(
            "a peer id too big for u64",
            "DELETE",
            "/sfu/origin/rooms/r/peers/99999999999999999999999",
            None,
            b"",
        )
        .expect(400),
        case(
            "a path segment that is not UTF-8",
            "POST",
            "/api/sessions/default/%FF%FE/join",
            None,
            b"",
        )
        .expect(400),
        case(
            "a recording index that is not a number",
            "GET",
            "/api/recordings/default/gala-open-source/x",
            None,
            b"",
        )
        .expect(400),
        case(
            "a recording index that is negative",
            "GET",
            "/api/recordings/default/gala-open-source/-1",
            None,
            b"",
        )
        .expect(400),
        case(
            "a repeated query field",
            "GET",
            "/signin?code=a&code=b",
            None,
            b"",
        )
        .expect(400),
        case("an unknown path", "POST", "/api/nothing-here", JSON, b"{}"),
        case(
            "a method with no route at all",
            "BREW",
            "/api/me",
            None,
            b"",
        )
        .expect(405),
    ]);
    cases
}

/// Sends one request as raw HTTP/1.1 (so nothing on the client side tidies it) and returns
/// the status, headers and body.
async fn send_raw(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = head.as_bytes().to_vec();
    request.extend_from_slice(body);
    // The server may answer and close before reading a large body: that is fine.
    let _ = stream.write_all(&request).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await;
    assert!(read.is_ok(), "no answer within 10 s to {head:?}");
    let text = String::from_utf8_lossy(&answer);
    let (headers, _) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = headers
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?} for {head:?}"));
    let body_at = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(answer.len(), |i| i + 4);
    (status, headers.to_string(), answer[body_at..].to_vec())
}

fn head(c: &Case) -> String {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        c.method,
        c.path,
        c.body.len()
    );
    if let Some(ct) = c.content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// The JSON error body's message, or why the body is not one.
fn message_of(headers: &str, body: &[u8]) -> Result<String, String> {
    let json = headers.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("content-type: application/json")
    });
    let text = String::from_utf8_lossy(body);
    if !json {
        return Err(format!("not JSON: {headers:?} {text:?}"));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("{e}: {text:?}"))?;
    let message = value["message"].as_str().unwrap_or_default();
    if value["error"].as_str().is_none_or(str::is_empty) || message.len() < 10 {
        return Err(format!("no error code or message: {text:?}"));
    }
    // axum's own words are for developers; ours start with what is wrong for the reader.
    if message.starts_with("Failed to") || message.starts_with("Invalid URL") {
        return Err(format!("axum's wording: {message:?}"));
    }
    Ok(message.to_string())
}

#[tokio::test]
async fn bad_requests_get_a_client_error_with_a_sentence() {
    let addr = serve().await;
    let mut failures = Vec::new();
    let cases = table();
    for c in &cases {
        let (status, headers, body) = send_raw(addr, &head(c), &c.body).await;
        let label = format!(
            "{} {} ({})",
            c.method,
            c.path.chars().take(80).collect::<String>(),
            c.what
        );
        if c.ignored && (200..300).contains(&status) {
            continue;
        }
        if !(400..500).contains(&status) {
            failures.push(format!(
                "{label}: {status}, not a 4xx: {}",
                String::from_utf8_lossy(&body)
            ));
            continue;
        }
        if let Some(expected) = c.status
            && expected != status
        {
            failures.push(format!(
                "{label}: {status}, expected {expected}: {}",
                String::from_utf8_lossy(&body)
            ));
            continue;
        }
        if let Err(why) = message_of(&headers, &body) {
            failures.push(format!("{label}: {status}: {why}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad requests were not answered well:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn huge_headers_are_refused_by_status_and_the_server_keeps_serving() {
    let addr = serve().await;
    // One header over hyper's buffer (about 400 KiB) and more headers than it takes (100).
    let huge = format!(
        "GET /api/me HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "a".repeat(512 * 1024)
    );
    let many = format!(
        "GET /api/me HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{}\r\n",
        (0..200)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    for (what, head) in [("one huge header", huge), ("200 headers", many)] {
        let (status, _, _) = send_raw(addr, &head, b"").await;
        // hyper answers these itself, before any router: a bare 431, no body to explain.
        assert_eq!(status, 431, "{what}");
    }
    // A large cookie that hyper does take reaches the router and is simply not a sign-in.
    let cookie = format!(
        "GET /api/me HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nCookie: rt_session={}\r\nAuthorization: Bearer {}\r\n\r\n",
        "a".repeat(100 * 1024),
        "b.".repeat(50 * 1024)
    );
    let (status, headers, body) = send_raw(addr, &cookie, b"").await;
    assert!((200..500).contains(&status), "{status}");
    if status >= 400 {
        message_of(&headers, &body).unwrap();
    }
    let (status, _, _) = send_raw(
        addr,
        "GET /api/me HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        b"",
    )
    .await;
    assert!(status < 500, "still serving: {status}");
}
