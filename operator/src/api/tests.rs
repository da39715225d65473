//! The control plane's rules, through the router without a socket: the local catalog reads the
//! repository's examples, SQLite is in memory, and mail goes to a small SMTP server on loopback.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http::Response;
use roundtable_crds::{LivePhase, RoomPhase};
use serde_json::{Value, json};
use sfu_node::auth::TokenVerifier;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower::ServiceExt;

use super::*;
use crate::local::catalog::{LocalCatalog, Observed};
use crate::local::manifests;

/// 2026-12-10T18:30:00Z: the gala's first sessions are on.
const NOW: i64 = 1_796_927_400;

fn at(unix: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(unix).unwrap()
}

/// A minimal SMTP server that keeps every message it receives.
#[derive(Clone, Default)]
struct SmtpSink {
    messages: Arc<Mutex<Vec<String>>>,
    arrived: Arc<Notify>,
}

impl SmtpSink {
    async fn start() -> (Self, String) {
        let sink = SmtpSink::default();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("smtp://{}", listener.local_addr().unwrap());
        let s = sink.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(s.clone().session(stream));
            }
        });
        (sink, url)
    }

    async fn session(self, stream: tokio::net::TcpStream) {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let _ = write.write_all(b"220 sink ESMTP\r\n").await;
        let mut data: Option<String> = None;
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(body) = &mut data {
                if line == "." {
                    self.messages.lock().unwrap().push(std::mem::take(body));
                    self.arrived.notify_waiters();
                    data = None;
                    let _ = write.write_all(b"250 kept\r\n").await;
                } else {
                    body.push_str(&line);
                    body.push('\n');
                }
                continue;
            }
            let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
            let reply: &[u8] = match verb.as_str() {
                "EHLO" => b"250 sink\r\n",
                "DATA" => {
                    data = Some(String::new());
                    b"354 go on\r\n"
                }
                "QUIT" => {
                    let _ = write.write_all(b"221 bye\r\n").await;
                    return;
                }
                _ => b"250 ok\r\n",
            };
            let _ = write.write_all(reply).await;
        }
    }

    /// The first link in the latest message to `to` (waits for it, bounded).
    async fn link_for(&self, to: &str) -> String {
        for _ in 0..50 {
            let found = self
                .messages
                .lock()
                .unwrap()
                .iter()
                .rev()
                .find(|m| m.contains(&format!("To: {to}")))
                .cloned();
            if let Some(message) = found {
                let unfolded = message.replace("=\n", "").replace("=3D", "=");
                let start = unfolded.find("http://").expect("a link");
                return unfolded[start..]
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .to_string();
            }
            let _ = tokio::time::timeout(
                std::time::Duration::from_millis(100),
                self.arrived.notified(),
            )
            .await;
        }
        panic!("no mail to {to}");
    }
}

struct Harness {
    recordings: tempfile::TempDir,
    app: Router,
    state: ApiState,
    catalog: Arc<LocalCatalog>,
    smtp: SmtpSink,
    live: Mutex<HashMap<String, Observed>>,
}

async fn harness() -> Harness {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let loaded = manifests::load(&manifests::files(&[examples]).unwrap()).unwrap();
    let catalog = Arc::new(LocalCatalog::new(loaded, at(NOW)));
    let (smtp, url) = SmtpSink::start().await;
    let recordings = tempfile::tempdir().unwrap();
    let state = ApiState::new(
        catalog.clone(),
        ApiSettings {
            store: Store::in_memory().unwrap(),
            join_key: b"join-key-for-tests".to_vec(),
            registration: RegistrationVerifier::new(Some(b"registration".to_vec()), None),
            mailer: Mailer::smtp(&url, "Roundtable <no-reply@example.net>").unwrap(),
            public_url: "http://events.test".into(),
            clock: Clock::fixed(NOW),
            recordings_dir: Some(recordings.path().to_path_buf()),
        },
    )
    .unwrap();
    Harness {
        recordings,
        app: router(state.clone()),
        state,
        catalog,
        smtp,
        live: Mutex::new(HashMap::new()),
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"].as_str().unwrap_or_default()
    }
}

impl Harness {
    async fn call(
        &self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        let request = match body {
            Some(b) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response: Response<Body> = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Answer {
        self.call(Method::GET, path, cookie, None).await
    }

    async fn post(&self, path: &str, cookie: Option<&str>, body: Value) -> Answer {
        self.call(Method::POST, path, cookie, Some(body)).await
    }

    /// Follows an emailed link; the cookie it sets.
    async fn follow(&self, link: &str) -> Option<String> {
        let path = link.strip_prefix("http://events.test").unwrap();
        let answer = self.get(path, None).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{path}");
        answer
            .headers
            .get(header::SET_COOKIE)
            .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_string())
    }

    /// Registers for the gala with a ticket type and signs in through the emailed link.
    async fn attendee(&self, email: &str, ticket: &str) -> String {
        let answer = self
            .post(
                "/api/events/default/gala/register",
                None,
                json!({"email": email, "name": email.split('@').next(), "ticketType": ticket}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
        let link = self.smtp.link_for(email).await;
        self.follow(&link).await.expect("signed in")
    }

    /// Signs in without registering (organisers, hosts).
    async fn signed_in(&self, email: &str) -> String {
        let answer = self
            .post("/api/signin", None, json!({"email": email}))
            .await;
        assert_eq!(answer.status, StatusCode::ACCEPTED);
        let link = self.smtp.link_for(email).await;
        self.follow(&link).await.expect("signed in")
    }

    /// What the local runner reports for a room with a running SFU.
    fn go_live(&self, room_id: &str) {
        let mut live = self.live.lock().unwrap();
        let room = room_id.starts_with("room:");
        live.insert(
            room_id.to_string(),
            Observed {
                phase: (!room).then_some(LivePhase::Live),
                room_phase: room.then_some(RoomPhase::Live),
                endpoint: Some("127.0.0.1:47000".into()),
                watching: 3,
                on_camera: 1,
                ..Observed::default()
            },
        );
        self.catalog
            .set_observed(live.clone(), at(self.state.clock.now()));
    }

    fn claims(&self, joined: &Value) -> sfu_node::auth::Claims {
        TokenVerifier::new(joined["room"].as_str().unwrap(), b"join-key-for-tests")
            .verify(joined["token"].as_str().unwrap(), NOW as u64)
            .expect("a join token the SFU accepts")
    }
}

#[tokio::test]
async fn signing_in_takes_an_emailed_link_that_works_once_and_expires() {
    let h = harness().await;
    let me = h.get("/api/me", None).await;
    assert_eq!(me.body["signedIn"], false);

    let answer = h
        .post("/api/signin", None, json!({"email": "Ada@Example.com"}))
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    let link = h.smtp.link_for("ada@example.com").await;
    let cookie = h.follow(&link).await.expect("a sign-in cookie");
    let me = h.get("/api/me", Some(&cookie)).await;
    assert_eq!(me.body["signedIn"], true);
    assert_eq!(me.body["email"], "ada@example.com");

    let again = h
        .get(link.strip_prefix("http://events.test").unwrap(), None)
        .await;
    assert_eq!(
        again.headers[header::LOCATION].to_str().unwrap(),
        "/?error=link_invalid",
        "a sign-in link works once"
    );

    h.post("/api/signin", None, json!({"email": "bo@example.com"}))
        .await;
    let link = h.smtp.link_for("bo@example.com").await;
    h.state.clock.set(NOW + people::SIGN_IN_LINK_SECONDS);
    let late = h
        .get(link.strip_prefix("http://events.test").unwrap(), None)
        .await;
    assert_eq!(
        late.headers[header::LOCATION].to_str().unwrap(),
        "/?error=link_invalid"
    );

    let bad = h
        .post("/api/signin", None, json!({"email": "not an email"}))
        .await;
    assert_eq!(
        (bad.status, bad.code()),
        (StatusCode::BAD_REQUEST, "bad_email")
    );
}

#[tokio::test]
async fn an_external_registration_token_signs_in_with_its_tickets() {
    let h = harness().await;
    #[derive(serde::Serialize)]
    struct C {
        sub: String,
        name: String,
        tickets: Vec<identity::Ticket>,
        exp: i64,
    }
    let claims = C {
        sub: "vip@example.org".into(),
        name: "Vee".into(),
        tickets: vec![identity::Ticket {
            event: "default/gala".into(),
            ticket_type: "vip".into(),
        }],
        exp: jiff::Timestamp::now().as_second() + 600,
    };
    let sign = |key: &[u8]| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(key),
        )
        .unwrap()
    };
    let forged = h
        .post(
            "/api/signin/registration",
            None,
            json!({"token": sign(b"guess")}),
        )
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    let answer = h
        .post(
            "/api/signin/registration",
            None,
            json!({"token": sign(b"registration")}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let cookie = answer.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let event = h.get("/api/events/default/gala", Some(&cookie)).await;
    assert_eq!(event.status, StatusCode::OK);
    let names: Vec<&str> = event.body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"gala-vip-lounge"), "{names:?}");
}

#[tokio::test]
async fn the_event_page_needs_a_ticket_and_hides_ticket_only_sessions() {
    let h = harness().await;
    let stranger = h.get("/api/events/default/gala", None).await;
    assert_eq!(
        (stranger.status, stranger.code()),
        (StatusCode::UNAUTHORIZED, "sign_in_required")
    );
    let nobody = h.signed_in("nobody@example.net").await;
    let refused = h.get("/api/events/default/gala", Some(&nobody)).await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::FORBIDDEN, "no_ticket")
    );

    let public = h.get("/api/events/default/gala/tickets", None).await;
    assert_eq!(
        public.body["ticketTypes"][1]["name"], "vip",
        "the registration form lists ticket types"
    );
    let unknown = h
        .post(
            "/api/events/default/gala/register",
            None,
            json!({"email": "x@example.org", "name": "X", "ticketType": "backstage-pass"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);

    let general = h.attendee("gen@example.org", "general").await;
    let vip = h.attendee("vip@example.org", "vip").await;
    let names = |v: &Value| -> Vec<String> {
        v["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect()
    };
    let seen_by_general = names(&h.get("/api/events/default/gala", Some(&general)).await.body);
    assert!(seen_by_general.contains(&"gala-climate-tech".to_string()));
    assert!(
        !seen_by_general.contains(&"gala-vip-lounge".to_string()),
        "VIP session invisible"
    );
    let seen_by_vip = names(&h.get("/api/events/default/gala", Some(&vip)).await.body);
    assert!(seen_by_vip.contains(&"gala-vip-lounge".to_string()));

    h.go_live("session:default:gala-vip-lounge");
    let join = h
        .post(
            "/api/sessions/default/gala-vip-lounge/join",
            Some(&general),
            json!({}),
        )
        .await;
    assert_eq!(
        (join.status, join.code()),
        (StatusCode::NOT_FOUND, "not_found"),
        "not joinable either"
    );
    let join = h
        .post(
            "/api/sessions/default/gala-vip-lounge/join",
            Some(&vip),
            json!({}),
        )
        .await;
    assert_eq!(join.status, StatusCode::OK);
}

#[tokio::test]
async fn joining_a_session_gives_the_grants_its_policy_allows() {
    let h = harness().await;
    let ada = h.signed_in("ada@example.com").await; // organiser, moderator of ask-the-founders
    let gen_ = h.attendee("gen@example.org", "general").await;
    let speaker = h.attendee("speaker03@example.com", "general").await;

    let early = h
        .post(
            "/api/sessions/default/gala-ask-the-founders/join",
            Some(&gen_),
            json!({}),
        )
        .await;
    assert_eq!(
        (early.status, early.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "not_live")
    );

    for id in [
        "gala-ask-the-founders",
        "gala-climate-tech",
        "gala-speakers-panel",
    ] {
        h.go_live(&format!("session:default:{id}"));
    }
    let join = |cookie: String, session: &'static str| {
        let h = &h;
        async move {
            let answer = h
                .post(
                    &format!("/api/sessions/default/{session}/join"),
                    Some(&cookie),
                    json!({}),
                )
                .await;
            assert_eq!(
                answer.status,
                StatusCode::OK,
                "{session}: {:?}",
                answer.body
            );
            assert_eq!(answer.body["sfu"], "http://127.0.0.1:47000");
            assert_eq!(
                answer.body["origin"], "http://127.0.0.1:47000",
                "without relays people watch and publish at the origin"
            );
            assert_eq!(answer.body["room"], format!("session:default:{session}"));
            h.claims(&answer.body)
        }
    };
    let asker = join(gen_.clone(), "gala-ask-the-founders").await;
    assert!(
        asker.grants.watch && !asker.grants.share && !asker.grants.moderate,
        "must request to share"
    );
    let moderator = join(ada.clone(), "gala-ask-the-founders").await;
    assert!(moderator.grants.moderate);
    assert_eq!(moderator.sub, "ada@example.com");
    let open = join(gen_.clone(), "gala-climate-tech").await;
    assert!(open.grants.share, "anyone may share in an Open session");
    let invited = join(speaker.clone(), "gala-speakers-panel").await;
    assert!(invited.grants.share);
    let audience = join(gen_.clone(), "gala-speakers-panel").await;
    assert!(!audience.grants.share, "only invitees share");
}

#[tokio::test]
async fn attendees_create_sessions_and_may_moderate_them_but_only_organisers_start() {
    let h = harness().await;
    let gen_ = h.attendee("gen@example.org", "general").await;
    let created = h
        .post(
            "/api/events/default/gala/sessions",
            Some(&gen_),
            json!({"title": "Rust in production!", "sharePolicy": "Moderated", "moderateMyself": true}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let name = created.body["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("rust-in-production-"), "{name}");
    let event = h.get("/api/events/default/gala", Some(&gen_)).await;
    let listed = event.body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name.as_str())
        .cloned()
        .expect("listed");
    assert_eq!(listed["moderator"], true);
    assert_eq!(listed["sharePolicy"], "Moderated");

    let start = h
        .post(
            "/api/sessions/default/gala-climate-tech/start",
            Some(&gen_),
            json!({}),
        )
        .await;
    assert_eq!(
        (start.status, start.code()),
        (StatusCode::FORBIDDEN, "not_organizer")
    );
    let ada = h.signed_in("ada@example.com").await;
    let start = h
        .post(
            "/api/sessions/default/gala-climate-tech/start",
            Some(&ada),
            json!({}),
        )
        .await;
    assert_eq!(start.status, StatusCode::OK);
    let session =
        crate::api::catalog::find_session(&*h.catalog, "default", "gala-climate-tech").unwrap();
    assert_eq!(session.spec.lifecycle, roundtable_crds::Lifecycle::Started);

    let gone = h
        .call(
            Method::DELETE,
            &format!("/api/sessions/default/{name}"),
            Some(&gen_),
            None,
        )
        .await;
    assert_eq!(
        gone.status,
        StatusCode::NO_CONTENT,
        "its creator may delete it"
    );
}

#[tokio::test]
async fn the_backstage_takes_its_private_link_and_only_organisers_broadcast() {
    let h = harness().await;
    let ada = h.signed_in("ada@example.com").await;
    let gen_ = h.attendee("gen@example.org", "general").await;
    h.go_live("stage:default:gala-main-stage");

    let stage = h
        .get("/api/stages/default/gala-main-stage", Some(&gen_))
        .await;
    assert!(
        stage.body.get("backstageLink").is_none(),
        "attendees do not get the link"
    );
    let link = h
        .get("/api/stages/default/gala-main-stage", Some(&ada))
        .await
        .body["backstageLink"]
        .as_str()
        .unwrap()
        .to_string();
    let key = link.split("key=").nth(1).unwrap();

    let no_key = h
        .post(
            "/api/stages/default/gala-main-stage/join",
            Some(&gen_),
            json!({"backstage": true}),
        )
        .await;
    assert_eq!(no_key.status, StatusCode::FORBIDDEN);
    let with_key = h
        .post(
            "/api/stages/default/gala-main-stage/join",
            Some(&gen_),
            json!({"backstage": true, "key": key}),
        )
        .await;
    assert_eq!(with_key.status, StatusCode::OK);
    let claims = h.claims(&with_key.body);
    assert!(
        claims.backstage && !claims.grants.share,
        "asks to share in the backstage"
    );
    let audience = h
        .post(
            "/api/stages/default/gala-main-stage/join",
            Some(&gen_),
            json!({}),
        )
        .await;
    assert!(!h.claims(&audience.body).backstage);

    let refused = h
        .post(
            "/api/stages/default/gala-main-stage/broadcast",
            Some(&gen_),
            json!({"on": true}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let on = h
        .post(
            "/api/stages/default/gala-main-stage/broadcast",
            Some(&ada),
            json!({"on": true}),
        )
        .await;
    assert_eq!(on.status, StatusCode::OK);
    let stage = crate::api::catalog::find_stage(&*h.catalog, "default", "gala-main-stage").unwrap();
    assert!(stage.spec.broadcasting);
}

fn label(name: &str) -> Value {
    json!({"name": name, "headline": "Analyst", "image": "", "color": "#1e88e5"})
}

#[tokio::test]
async fn a_passcode_room_asks_for_it_limits_guesses_and_starts_on_demand() {
    let h = harness().await;
    let path = "/api/rooms/ada/board/join";
    let info = h.get("/api/rooms/ada/board", None).await;
    assert_eq!(info.body["passcode"], true);
    assert_eq!(info.body["locked"], true);

    let missing = h.post(path, None, json!({"label": label("Guest")})).await;
    assert_eq!(
        (missing.status, missing.code()),
        (StatusCode::FORBIDDEN, "passcode_required")
    );
    let wrong = h
        .post(
            path,
            None,
            json!({"label": label("Guest"), "passcode": "000000"}),
        )
        .await;
    assert_eq!(
        (wrong.status, wrong.code()),
        (StatusCode::FORBIDDEN, "wrong_passcode")
    );
    let nameless = h
        .post(
            path,
            None,
            json!({"label": label(" "), "passcode": "482915"}),
        )
        .await;
    assert_eq!(nameless.status, StatusCode::BAD_REQUEST);

    let starting = h
        .post(
            path,
            None,
            json!({"label": label("Guest"), "passcode": "482915"}),
        )
        .await;
    assert_eq!(starting.status, StatusCode::ACCEPTED, "{:?}", starting.body);
    assert_eq!(starting.body["starting"], true);
    assert!(
        h.catalog
            .wake_requests()
            .contains_key(&("default".into(), "ada-board".into())),
        "the room was asked to start"
    );

    h.go_live("room:default:ada-board");
    let joined = h
        .post(
            path,
            None,
            json!({"label": label("Guest"), "passcode": "482915"}),
        )
        .await;
    assert_eq!(joined.status, StatusCode::OK);
    let claims = h.claims(&joined.body);
    assert!(claims.sub.starts_with("guest-"));
    assert_eq!(
        (claims.name.as_str(), claims.color.as_str()),
        ("Guest", "#1e88e5")
    );
    assert!(
        !claims.grants.host,
        "a locked room's guest waits for a host in the SFU lobby"
    );

    // Five tries were used above (four with a passcode): the next wrong ones hit the limit.
    let mut last = StatusCode::OK;
    for _ in 0..3 {
        last = h
            .post(
                path,
                None,
                json!({"label": label("Guest"), "passcode": "111111"}),
            )
            .await
            .status;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    let limited = h
        .post(
            path,
            None,
            json!({"label": label("Guest"), "passcode": "482915"}),
        )
        .await;
    assert!(limited.headers.contains_key(header::RETRY_AFTER));

    let host = h.signed_in("grace@example.com").await;
    let as_host = h
        .post(path, Some(&host), json!({"label": label("Grace")}))
        .await;
    assert_eq!(as_host.status, StatusCode::OK, "hosts need no passcode");
    assert!(h.claims(&as_host.body).grants.host);
    let me = h.get("/api/me", Some(&host)).await;
    assert_eq!(
        me.body["label"]["name"], "Grace",
        "the label is prefilled next time"
    );
    let lock = h
        .post("/api/rooms/ada/board/lock", None, json!({"locked": false}))
        .await;
    assert_eq!(lock.status, StatusCode::FORBIDDEN);
    let lock = h
        .post(
            "/api/rooms/ada/board/lock",
            Some(&host),
            json!({"locked": false}),
        )
        .await;
    assert_eq!(lock.status, StatusCode::OK);
    assert_eq!(
        h.get("/api/rooms/ada/board", None).await.body["locked"],
        false
    );
}

#[tokio::test]
async fn an_email_domain_room_is_joined_through_a_single_use_emailed_link() {
    let h = harness().await;
    h.go_live("room:default:linus-team-sync");
    let plain = h
        .post(
            "/api/rooms/linus/team-sync/join",
            None,
            json!({"label": label("Eve")}),
        )
        .await;
    assert_eq!(
        (plain.status, plain.code()),
        (StatusCode::FORBIDDEN, "access_link_required")
    );
    let other = h
        .post(
            "/api/rooms/linus/team-sync/access-link",
            None,
            json!({"email": "eve@evil.test"}),
        )
        .await;
    assert_eq!(
        (other.status, other.code()),
        (StatusCode::FORBIDDEN, "domain_not_allowed")
    );
    let sent = h
        .post(
            "/api/rooms/linus/team-sync/access-link",
            None,
            json!({"email": "Bo@Example.org"}),
        )
        .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED);
    let link = h.smtp.link_for("bo@example.org").await;
    assert!(
        link.starts_with("http://events.test/linus/team-sync?access="),
        "{link}"
    );
    let code = link.split("access=").nth(1).unwrap();
    let joined = h
        .post(
            "/api/rooms/linus/team-sync/join",
            None,
            json!({"label": label("Bo"), "access": code}),
        )
        .await;
    assert_eq!(joined.status, StatusCode::OK, "{:?}", joined.body);
    assert_eq!(h.claims(&joined.body).sub, "bo@example.org");
    let again = h
        .post(
            "/api/rooms/linus/team-sync/join",
            None,
            json!({"label": label("Bo"), "access": code}),
        )
        .await;
    assert_eq!(
        (again.status, again.code()),
        (StatusCode::FORBIDDEN, "link_invalid")
    );
}

#[tokio::test]
async fn webinar_attendees_watch_and_its_host_presents() {
    let h = harness().await;
    h.go_live("room:default:grace-product-webinar");
    let info = h.get("/api/rooms/grace/product-webinar", None).await;
    assert_eq!(info.body["theme"], "Webinar");
    let guest = h
        .post(
            "/api/rooms/grace/product-webinar/join",
            None,
            json!({"label": {"name": "Viewer"}}),
        )
        .await;
    assert_eq!(guest.status, StatusCode::OK);
    let claims = h.claims(&guest.body);
    assert!(claims.grants.watch && !claims.grants.share);
    let grace = h.signed_in("grace@example.com").await;
    let host = h
        .post(
            "/api/rooms/grace/product-webinar/join",
            Some(&grace),
            json!({"label": {"name": "Grace"}}),
        )
        .await;
    let claims = h.claims(&host.body);
    assert!(claims.grants.share && claims.grants.host);
    let missing = h.get("/api/rooms/grace/nothing-here", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn organisers_download_recordings_from_the_report_once_the_event_has_ended() {
    let h = harness().await;
    let ada = h.signed_in("ada@example.com").await;
    let gen_ = h.attendee("gen@example.org", "general").await;
    // The recorder of gala-future-of-work wrote one MP4 on the event's recording claim.
    let folder = h
        .recordings
        .path()
        .join("gala-recordings/gala-future-of-work");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("gala-future-of-work-1.mp4"),
        b"not really an mp4",
    )
    .unwrap();
    let complete = roundtable_crds::RecordingSummary {
        state: roundtable_crds::RecordingState::Complete,
        start: None,
        duration_seconds: Some(61),
        size_bytes: Some(17),
        file: Some("gala-future-of-work/gala-future-of-work-1.mp4".into()),
    };
    let mut live = h.live.lock().unwrap().clone();
    live.insert(
        "session:default:gala-future-of-work".into(),
        Observed {
            phase: Some(LivePhase::Ended),
            recordings: vec![complete],
            ..Observed::default()
        },
    );
    h.catalog.set_observed(live, at(h.state.clock.now()));
    let path = "/api/recordings/default/gala-future-of-work/0";

    let during = h.get(path, Some(&ada)).await;
    assert_eq!(
        (during.status, during.code()),
        (StatusCode::FORBIDDEN, "event_not_ended")
    );
    let report = h.get("/api/events/default/gala/report", Some(&ada)).await;
    assert_eq!(report.body["ended"], false);

    h.state.clock.set(NOW + 86_400); // the gala ended at 22:00
    let report = h.get("/api/events/default/gala/report", Some(&gen_)).await;
    assert_eq!(
        report.status,
        StatusCode::FORBIDDEN,
        "the report is for organisers"
    );
    let report = h.get("/api/events/default/gala/report", Some(&ada)).await;
    let row = report.body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["session"] == "gala-future-of-work")
        .unwrap()
        .clone();
    assert_eq!(row["recordings"][0]["url"], path);
    assert_eq!(row["recordings"][0]["durationSeconds"], 61);

    let refused = h.get(path, Some(&gen_)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let mut request = Request::get(path).header(header::COOKIE, &ada);
    request = request.header(header::ACCEPT, "video/mp4");
    let response = h
        .app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_DISPOSITION],
        "attachment; filename=\"gala-future-of-work-1.mp4\""
    );
    let bytes = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap();
    assert_eq!(&bytes[..], b"not really an mp4");
    let missing = h
        .get("/api/recordings/default/gala-future-of-work/1", Some(&ada))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_page_is_served_with_its_title_and_a_script_that_exists() {
    let h = harness().await;
    let text = |path: String| {
        let app = h.app.clone();
        async move {
            let request = Request::get(&path).body(Body::empty()).unwrap();
            let response = app.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            (status, String::from_utf8_lossy(&bytes).into_owned())
        }
    };
    for (route, page) in super::pages::PAGES {
        let path = route
            .replace("{ns}", "default")
            .replace(['{', '}'], "")
            .replace("//", "/");
        let (status, html) = text(path.clone()).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(
            html.contains(&format!("<title>{} · Roundtable</title>", page.title)),
            "{path}: {html}"
        );
        assert!(
            html.contains(&format!("class=\"page-{}\"", page.kind)),
            "{path}"
        );
        assert!(!html.contains('{'), "{path} left a placeholder: {html}");
        let script = format!("/assets/{}.js", page.script);
        assert!(html.contains(&script), "{path}");
        let (status, js) = text(script.clone()).await;
        assert_eq!(status, StatusCode::OK, "{script}");
        assert!(js.contains("import") || js.contains("export"), "{script}");
    }
}
