//! Bad HTTP input at an sfu-node's public port (the server in-process on loopback, requests
//! written as raw HTTP/1.1): WHIP and WHEP with garbage SDP, the wrong Content-Type, bodies
//! over the limit or not UTF-8, bad tokens, path segments and query strings, methods the
//! routes do not take, huge headers. Each answer must be a client error (4xx) with a JSON
//! body whose message is a sentence; afterwards the room still takes a real publisher.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sfu_node::auth::{Claims, mint};
use sfu_node::client::{ClientPeer, ClientRole};
use sfu_node::rejection::MAX_BODY_BYTES;
use sfu_node::server::{Listeners, ServerConfig, serve};
use sfu_node::{RoomConfig, RoomKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

const KEY: &[u8] = b"bad-http-key";
const ROOM: &str = "bad-http";

async fn start() -> SocketAddr {
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = http.local_addr().unwrap();
    let listeners = Listeners {
        udp: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        tcp: None,
        http: http.into(),
        admin: TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    let config = ServerConfig {
        room: RoomConfig::new(ROOM, RoomKind::Room),
        advertise: None,
        token_key: KEY.to_vec(),
        drain_grace: Duration::from_secs(1),
        initial_estimate_bps: 1_000_000,
        bwe: Default::default(),
        threads: 1,
    };
    tokio::spawn(serve(config, listeners, std::future::pending()));
    addr
}

fn token() -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let mut claims = Claims::new("ada", "Ada", ROOM, exp);
    claims.grants.share = true;
    mint(KEY, &claims)
}

/// Sends one raw HTTP/1.1 request; returns status, head and body.
async fn send(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = head.as_bytes().to_vec();
    request.extend_from_slice(body);
    // The server may answer and close before reading all of a large body.
    let _ = stream.write_all(&request).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "no answer within 10 s to {head:?}");
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(answer.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&answer[..split]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head:?}"));
    (status, head, answer[split..].to_vec())
}

struct Case {
    what: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
}

fn table() -> Vec<Case> {
    let bearer = format!("Bearer {}", token());
    let sdp = ("Content-Type", "application/sdp".to_string());
    let auth = ("Authorization", bearer);
    let offer = b"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n".to_vec();
    let mut cases = Vec::new();
    for kind in ["whip", "whep"] {
        let path = format!("/rooms/{ROOM}/{kind}");
        let c = |what, headers: Vec<(&'static str, String)>, body: &[u8], status| Case {
            what,
            method: "POST",
            path: path.clone(),
            headers,
            body: body.to_vec(),
            status,
        };
        cases.extend([
            c(
                "garbage SDP",
                vec![sdp.clone(), auth.clone()],
                b"hello, this is not SDP",
                400,
            ),
            c(
                "an SDP offer with no media",
                vec![sdp.clone(), auth.clone()],
                &offer,
                400,
            ),
            c("an empty body", vec![sdp.clone(), auth.clone()], b"", 400),
            c(
                "binary garbage",
                vec![sdp.clone(), auth.clone()],
                b"\x16\xfe\xfd\x00\x00garbage",
                400,
            ),
            c(
                "a body that is not UTF-8",
                vec![sdp.clone(), auth.clone()],
                b"v=0\r\n\xff\xfe",
                400,
            ),
            c(
                "JSON Content-Type",
                vec![("Content-Type", "application/json".into()), auth.clone()],
                b"{}",
                415,
            ),
            c(
                "form Content-Type",
                vec![
                    ("Content-Type", "application/x-www-form-urlencoded".into()),
                    auth.clone(),
                ],
                b"a=b",
                415,
            ),
            c(
                "over the body limit",
                vec![sdp.clone(), auth.clone()],
                &vec![b'a'; MAX_BODY_BYTES + 1],
                413,
            ),
            c("no token", vec![sdp.clone()], b"v=0", 401),
            c(
                "a token that is not a JWT",
                vec![sdp.clone(), ("Authorization", "Bearer nonsense".into())],
                b"v=0",
                401,
            ),
            c(
                "a Basic authorization",
                vec![sdp.clone(), ("Authorization", "Basic YTpi".into())],
                b"v=0",
                401,
            ),
        ]);
        cases.push(Case {
            what: "a participant that is not a number",
            path: format!("{path}?participant=abc"),
            ..c("", vec![sdp.clone(), auth.clone()], b"v=0", 400)
        });
        cases.push(Case {
            what: "a token query that does not decode",
            path: format!("{path}?token=%ZZ&token=1"),
            ..c("", vec![sdp.clone()], b"v=0", 400)
        });
        cases.push(Case {
            what: "a method the route does not take",
            method: "PUT",
            ..c("", vec![sdp.clone(), auth.clone()], b"v=0", 405)
        });
    }
    cases.push(Case {
        what: "an unknown source",
        method: "POST",
        path: format!("/rooms/{ROOM}/whip?source=window"),
        headers: vec![sdp.clone(), auth.clone()],
        body: offer.clone(),
        status: 400,
    });
    let other = |what, method, path: String, status| Case {
        what,
        method,
        path,
        headers: vec![auth.clone()],
        body: Vec::new(),
        status,
    };
    cases.extend([
        other(
            "a peer id that is not a number",
            "DELETE",
            format!("/rooms/{ROOM}/peers/abc"),
            400,
        ),
        other(
            "a peer id over u64",
            "DELETE",
            format!("/rooms/{ROOM}/peers/123456789012345678901234"),
            400,
        ),
        other(
            "a peer that does not exist",
            "DELETE",
            format!("/rooms/{ROOM}/peers/77"),
            404,
        ),
        other("another room", "POST", "/rooms/other/whip".into(), 404),
        other(
            "a room segment that is not UTF-8",
            "POST",
            "/rooms/%FF%FE/whip".into(),
            400,
        ),
        other(
            "events without a WebSocket upgrade",
            "GET",
            format!("/rooms/{ROOM}/events"),
            400,
        ),
        other("an unknown path", "GET", "/nothing".into(), 404),
    ]);
    cases
}

fn message_of(head: &str, body: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(body);
    if !head
        .to_ascii_lowercase()
        .contains("content-type: application/json")
    {
        return Err(format!("not JSON: {head:?} {text:?}"));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("{e}: {text:?}"))?;
    let message = v["message"].as_str().unwrap_or_default();
    if v["error"].as_str().is_none_or(str::is_empty) || message.len() < 10 {
        return Err(format!("no code or sentence: {text:?}"));
    }
    if message.starts_with("Failed to") || message.starts_with("Invalid URL") {
        return Err(format!("axum's wording: {message:?}"));
    }
    Ok(message.to_string())
}

#[tokio::test]
async fn bad_signalling_requests_get_a_client_error_with_a_sentence() {
    let addr = start().await;
    let cases = table();
    let mut failures = Vec::new();
    for c in &cases {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
            c.method,
            c.path,
            c.body.len()
        );
        for (k, v) in &c.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let (status, answer_head, body) = send(addr, &head, &c.body).await;
        let label = format!("{} {} ({})", c.method, c.path, c.what);
        if status != c.status {
            failures.push(format!(
                "{label}: {status}, expected {}: {}",
                c.status,
                String::from_utf8_lossy(&body)
            ));
        } else if let Err(why) = message_of(&answer_head, &body) {
            failures.push(format!("{label}: {why}"));
        }
    }
    // Huge headers: hyper refuses them itself, with a bare 431.
    let huge = format!(
        "POST /rooms/{ROOM}/whip HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Big: {}\r\nContent-Length: 0\r\n\r\n",
        "a".repeat(512 * 1024)
    );
    let (status, _, _) = send(addr, &huge, b"").await;
    if status != 431 {
        failures.push(format!("a 512 KiB header: {status}, expected 431"));
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad requests were not answered well:\n{}",
        failures.len(),
        cases.len() + 1,
        failures.join("\n")
    );
    // None of it hurt the room: a real publisher still gets in.
    let (publisher, _) = ClientPeer::connect(
        addr,
        &format!("/rooms/{ROOM}/whip"),
        &token(),
        ClientRole::Publish { simulcast: false },
    )
    .await
    .expect("a real offer is still answered");
    assert!(!publisher.location.is_empty());
}
