//! The control plane's rules, through the router without a socket: the local catalog reads the
//! repository's examples, the store is the backend of the including module (`test_store`:
//! SQLite in memory, or a fresh PostgreSQL database; see `lib.rs`), and mail goes to a small
//! SMTP server on loopback.

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
use crate::manifest_catalog::{LocalCatalog, Observed};
use crate::manifests;

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
        let message = self.message_to(to).await;
        let start = message.find("http://").expect("a link");
        message[start..]
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    }

    /// How many messages went to `to`.
    fn count_to(&self, to: &str) -> usize {
        let to = format!("To: {to}");
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.contains(&to))
            .count()
    }

    /// The latest message to `to`, soft line breaks undone (waits for it, bounded).
    async fn message_to(&self, to: &str) -> String {
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
                return message.replace("=\n", "").replace("=3D", "=");
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
    harness_with(None).await
}

/// The harness with another mailer than the SMTP sink.
async fn harness_with(mailer: Option<Mailer>) -> Harness {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let loaded = manifests::load(&manifests::files(&[examples]).unwrap()).unwrap();
    let catalog = Arc::new(LocalCatalog::new(loaded, at(NOW)));
    let (smtp, url) = SmtpSink::start().await;
    let recordings = tempfile::tempdir().unwrap();
    let state = ApiState::protected(
        catalog.clone(),
        ApiSettings {
            store: test_store().await,
            join_key: b"join-key-for-tests".to_vec(),
            registration: RegistrationVerifier::new(Some(b"registration".to_vec()), None),
            mailer: mailer.unwrap_or_else(|| {
                Mailer::smtp(&url, "Roundtable <no-reply@example.net>").unwrap()
            }),
            public_url: "http://events.test".into(),
            clock: Clock::fixed(NOW),
            recordings_dir: Some(recordings.path().to_path_buf()),
        },
        Protection {
            trusted_proxies: parse_cidrs("10.0.0.0/8").unwrap(),
            session_limits: SessionLimits {
                per_creator: 2,
                per_event: 3,
            },
            turn: None,
            accounts: accounts::AccountSettings::default(),
        },
    )
    .await
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
    /// The body as text (pages, assets).
    text: String,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"].as_str().unwrap_or_default()
    }
}

/// The cookie `name` an answer sets (`name=value`), unless it clears it.
fn set_cookie(answer: &Answer, name: &str) -> Option<String> {
    answer
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_string())
        .find(|c| {
            c.strip_prefix(name)
                .and_then(|v| v.strip_prefix('='))
                .is_some_and(|v| !v.is_empty())
        })
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
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// Sends a request built by the test (its own headers, a client address).
    async fn send(&self, request: Request<Body>) -> Answer {
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
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Answer {
        self.call(Method::GET, path, cookie, None).await
    }

    async fn post(&self, path: &str, cookie: Option<&str>, body: Value) -> Answer {
        self.call(Method::POST, path, cookie, Some(body)).await
    }

    /// Opens an emailed sign-in link as a fresh browser does: the first answer hands out a
    /// claim cookie and sends the browser back to the link with it. The claim cookie
    /// (`name=value`) and the last answer.
    async fn open_link(&self, link: &str) -> (String, Answer) {
        let path = link.strip_prefix("http://events.test").unwrap();
        let first = self.get(path, None).await;
        assert_eq!(first.status, StatusCode::SEE_OTHER, "{path}");
        let claim = set_cookie(&first, people::CLAIM_COOKIE).expect("a claim cookie");
        let again = first.headers[header::LOCATION]
            .to_str()
            .unwrap()
            .to_string();
        (claim.clone(), self.get(&again, Some(&claim)).await)
    }

    /// Follows an emailed link; the sign-in cookie it sets.
    async fn follow(&self, link: &str) -> Option<String> {
        let (_, answer) = self.open_link(link).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{link}");
        set_cookie(&answer, identity::SESSION_COOKIE)
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

    let (_, again) = h.open_link(&link).await;
    assert_eq!(
        again.headers[header::LOCATION].to_str().unwrap(),
        "/?error=link_invalid",
        "a sign-in link works once"
    );

    h.post("/api/signin", None, json!({"email": "bo@example.com"}))
        .await;
    let link = h.smtp.link_for("bo@example.com").await;
    h.state.clock.set(NOW + people::SIGN_IN_LINK_SECONDS);
    let (_, late) = h.open_link(&link).await;
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
        crate::catalog::find_session(&*h.catalog, "default", "gala-climate-tech").unwrap();
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
    let stage = crate::catalog::find_stage(&*h.catalog, "default", "gala-main-stage").unwrap();
    assert!(stage.spec.broadcasting);
}

#[tokio::test]
async fn organisers_start_and_end_the_stage_attendees_wait_for_it() {
    let h = harness().await;
    let gen_ = h.attendee("gen@example.org", "general").await;
    let stage = "/api/stages/default/gala-main-stage";
    // Scheduled for December: an attendee is told it has not started and her page waits.
    let early = h
        .post(&format!("{stage}/join"), Some(&gen_), json!({}))
        .await;
    assert_eq!(
        (early.status, early.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "not_live"),
        "{:?}",
        early.body
    );
    assert_eq!(
        early.body["message"],
        "This has not started yet. The page will join when it does."
    );
    let info = h.get(stage, Some(&gen_)).await;
    assert_eq!(info.body["lifecycle"], "Scheduled");
    assert!(info.body["start"].as_str().unwrap().starts_with("2026-12-"));

    for action in ["start", "end"] {
        let refused = h
            .post(&format!("{stage}/{action}"), Some(&gen_), json!({}))
            .await;
        assert_eq!(
            (refused.status, refused.code()),
            (StatusCode::FORBIDDEN, "not_organizer"),
            "an attendee may not {action} the stage"
        );
    }
    let ada = h.signed_in("ada@example.com").await;
    let lifecycle = || {
        crate::catalog::find_stage(&*h.catalog, "default", "gala-main-stage")
            .unwrap()
            .spec
            .lifecycle
    };
    let started = h
        .post(&format!("{stage}/start"), Some(&ada), json!({}))
        .await;
    assert_eq!(started.status, StatusCode::OK, "{:?}", started.body);
    assert_eq!(lifecycle(), roundtable_crds::Lifecycle::Started);
    assert_eq!(h.get(stage, Some(&gen_)).await.body["lifecycle"], "Started");
    let ended = h.post(&format!("{stage}/end"), Some(&ada), json!({})).await;
    assert_eq!(ended.status, StatusCode::OK, "{:?}", ended.body);
    assert_eq!(lifecycle(), roundtable_crds::Lifecycle::Ended);
}

#[tokio::test]
async fn every_page_names_an_icon_that_is_served() {
    let h = harness().await;
    for path in ["/", "/e/default/gala", "/ada/coffee"] {
        let page = h.get(path, None).await;
        let html = &page.text;
        let icon = html
            .split("<link rel=\"icon\" href=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("{path} names no icon: {html}"));
        for asked in [icon, "/favicon.ico"] {
            let answer = h.get(asked, None).await;
            assert_eq!(answer.status, StatusCode::OK, "{asked}");
            assert_eq!(
                answer.headers[header::CONTENT_TYPE],
                "image/svg+xml",
                "{asked}"
            );
        }
    }
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

    // One wrong passcode so far; the three right ones did not count. The passcode step
    // answers before any name label: four more wrong ones are refused as wrong...
    let step = "/api/rooms/ada/board/passcode";
    let right = h.post(step, None, json!({"passcode": " 482915 "})).await;
    assert_eq!(right.status, StatusCode::OK, "{:?}", right.body);
    for i in 0..4 {
        let wrong = h.post(step, None, json!({"passcode": "111111"})).await;
        assert_eq!(
            (wrong.status, wrong.code()),
            (StatusCode::FORBIDDEN, "wrong_passcode"),
            "wrong try {}",
            i + 2
        );
        assert_eq!(wrong.body["message"], "That passcode is not right.");
    }
    // ...and after five wrong ones, even the right one waits.
    let last = h
        .post(step, None, json!({"passcode": "482915"}))
        .await
        .status;
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
        interruptions: None,
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

// Security: what a stranger with a browser and curl must not get (SECURITY.md).

/// A request from client address `peer` (as the TCP peer), with extra headers.
fn from_peer(
    method: Method,
    path: &str,
    peer: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> Request<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let mut request = request.body(Body::from(body.to_string())).unwrap();
    let peer: std::net::SocketAddr = format!("{peer}:40000").parse().unwrap();
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    request
}

#[tokio::test]
async fn a_registration_waits_for_its_emailed_code_and_never_changes_a_persons_tickets_or_name() {
    let h = harness().await;
    let gen_ = h.attendee("gen@example.org", "general").await;

    // A stranger registers Gen's address for a VIP ticket under another name.
    let forged = h
        .post(
            "/api/events/default/gala/register",
            None,
            json!({"email": "gen@example.org", "name": "Mallory: open http://evil.example", "ticketType": "vip"}),
        )
        .await;
    assert_eq!(forged.status, StatusCode::ACCEPTED);
    let me = h.get("/api/me", Some(&gen_)).await;
    assert_eq!(
        me.body["tickets"],
        json!([{"event": "default/gala", "type": "general"}])
    );
    let seen = h.get("/api/events/default/gala", Some(&gen_)).await;
    assert!(
        !seen.body["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "gala-vip-lounge"),
        "no VIP session for Gen"
    );
    // Nothing typed in the form reaches Gen's email.
    let mail = h.smtp.message_to("gen@example.org").await;
    assert!(mail.contains("Confirm your registration"), "{mail}");
    assert!(
        !mail.contains("Mallory") && !mail.contains("evil.example"),
        "{mail}"
    );
    // Even if Gen opens that link, the registration Gen has and Gen's name stay.
    let link = h.smtp.link_for("gen@example.org").await;
    let cookie = h.follow(&link).await.unwrap();
    let me = h.get("/api/me", Some(&cookie)).await;
    assert_eq!(
        me.body["tickets"],
        json!([{"event": "default/gala", "type": "general"}])
    );
    assert_eq!(me.body["name"], "gen");

    // A new address: nothing until its own registration link is used; a sign-in link does not
    // confirm it.
    let asked = h
        .post(
            "/api/events/default/gala/register",
            None,
            json!({"email": "new@example.org", "name": "Nova", "ticketType": "vip"}),
        )
        .await;
    assert_eq!(asked.status, StatusCode::ACCEPTED);
    let registration_link = h.smtp.link_for("new@example.org").await;
    let signed_in = h.signed_in("new@example.org").await;
    let me = h.get("/api/me", Some(&signed_in)).await;
    assert_eq!(
        me.body["tickets"],
        json!([]),
        "pending until its code is used"
    );
    let confirmed = h.follow(&registration_link).await.unwrap();
    let me = h.get("/api/me", Some(&confirmed)).await;
    assert_eq!(
        me.body["tickets"],
        json!([{"event": "default/gala", "type": "vip"}])
    );
    assert_eq!(me.body["name"], "Nova");

    let two_lines = h
        .post(
            "/api/events/default/gala/register",
            None,
            json!({"email": "x@example.org", "name": "X\nClick http://evil.example", "ticketType": "general"}),
        )
        .await;
    assert_eq!(two_lines.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_next_a_browser_would_read_as_another_site_leads_to_the_start_page() {
    let h = harness().await;
    let cases = [
        ("/\t/evil.com", "/"),
        ("/\\evil.com", "/"),
        ("//evil.com", "/"),
        ("https://evil.com", "/"),
        ("/\n/evil.com", "/"),
        ("/\r\nSet-Cookie: x=1", "/"),
        ("/caf\u{e9}", "/"),
        (" /e/default/gala", "/"),
        ("/e/default/gala?tab=chat", "/e/default/gala?tab=chat"),
    ];
    for (i, (next, expected)) in cases.iter().enumerate() {
        let email = format!("next{i}@example.com");
        let asked = h
            .post("/api/signin", None, json!({"email": email, "next": next}))
            .await;
        assert_eq!(asked.status, StatusCode::ACCEPTED, "{next:?}");
        let link = h.smtp.link_for(&email).await;
        let (_, answer) = h.open_link(&link).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{next:?}");
        assert_eq!(
            answer.headers[header::LOCATION].to_str().unwrap(),
            *expected,
            "{next:?}"
        );
        assert!(
            answer.headers.contains_key(header::SET_COOKIE),
            "{next:?} signs in"
        );
    }
    // The same through a registration system's link.
    #[derive(serde::Serialize)]
    struct C {
        sub: &'static str,
        exp: i64,
    }
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &C {
            sub: "reg@example.org",
            exp: jiff::Timestamp::now().as_second() + 600,
        },
        &jsonwebtoken::EncodingKey::from_secret(b"registration"),
    )
    .unwrap();
    let answer = h
        .get(
            &format!("/signin?registration={token}&next=/%09/evil.com"),
            None,
        )
        .await;
    assert_eq!(answer.headers[header::LOCATION].to_str().unwrap(), "/");
}

#[tokio::test]
async fn state_changes_from_another_site_are_refused_and_pages_carry_security_headers() {
    let h = harness().await;
    let ada = h.signed_in("ada@example.com").await;
    let start = |origin: &'static str| {
        Request::post("/api/sessions/default/gala-climate-tech/start")
            .header(header::COOKIE, &ada)
            .header(header::ORIGIN, origin)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("x=1"))
            .unwrap()
    };
    let refused = h.send(start("https://evil.example")).await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::FORBIDDEN, "cross_site")
    );
    let session =
        crate::catalog::find_session(&*h.catalog, "default", "gala-climate-tech").unwrap();
    assert_ne!(session.spec.lifecycle, roundtable_crds::Lifecycle::Started);
    let no_origin = Request::post("/api/signout")
        .header("sec-fetch-site", "cross-site")
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(no_origin).await.status, StatusCode::FORBIDDEN);
    let socket = Request::get("/api/events/default/gala/chat")
        .header(header::COOKIE, &ada)
        .header(header::ORIGIN, "https://evil.example")
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_VERSION, "13")
        .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
        .body(Body::empty())
        .unwrap();
    let socket = h.send(socket).await;
    assert_eq!(
        (socket.status, socket.code()),
        (StatusCode::FORBIDDEN, "cross_site")
    );

    let ours = h.send(start("http://events.test")).await;
    assert_eq!(ours.status, StatusCode::OK, "{:?}", ours.body);

    for path in ["/", "/e/default/gala", "/api/me", "/assets/signin.js"] {
        let answer = h.get(path, None).await;
        let header = |name: &str| {
            answer
                .headers
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        };
        let csp = header("content-security-policy");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.contains("script-src 'self';"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
    }
}

#[tokio::test]
async fn an_office_behind_one_address_signs_in_but_one_inbox_gets_few_emails() {
    let h = harness().await;
    // Everyone comes through the Ingress (10.0.0.5, trusted): 12 colleagues behind one NAT.
    let office = [("x-forwarded-for", "198.51.100.7")];
    for i in 0..12 {
        let request = from_peer(
            Method::POST,
            "/api/signin",
            "10.0.0.5",
            &office,
            json!({"email": format!("colleague{i}@example.com")}),
        );
        assert_eq!(
            h.send(request).await.status,
            StatusCode::ACCEPTED,
            "colleague {i}"
        );
    }
    // One inbox gets five in a quarter of an hour, whoever asks, from wherever.
    for i in 0..6 {
        let someone = format!("203.0.113.{i}");
        let request = from_peer(
            Method::POST,
            "/api/signin",
            "10.0.0.5",
            &[("x-forwarded-for", someone.as_str())],
            json!({"email": "ada@example.com"}),
        );
        let status = h.send(request).await.status;
        let expected = if i < 5 {
            StatusCode::ACCEPTED
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(status, expected, "email {i} to Ada");
    }
    assert_eq!(h.smtp.count_to("ada@example.com"), 5);

    // Passcode tries count per client: the forwarded address when a trusted proxy says it...
    let wrong = json!({"label": label("Guest"), "passcode": "000000"});
    let try_as = |peer: &'static str, xff: &'static str| {
        from_peer(
            Method::POST,
            "/api/rooms/ada/board/join",
            peer,
            &[("x-forwarded-for", xff)],
            wrong.clone(),
        )
    };
    for _ in 0..5 {
        h.send(try_as("10.0.0.5", "198.51.100.1")).await;
    }
    assert_eq!(
        h.send(try_as("10.0.0.5", "198.51.100.1")).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        h.send(try_as("10.0.0.5", "198.51.100.2")).await.code(),
        "wrong_passcode",
        "another client behind the same proxy has its own tries"
    );
    // ...and never when anyone else says it.
    for _ in 0..5 {
        h.send(try_as("203.0.113.9", "198.51.100.3")).await;
    }
    assert_eq!(
        h.send(try_as("203.0.113.9", "198.51.100.4")).await.status,
        StatusCode::TOO_MANY_REQUESTS,
        "a client cannot pick a fresh address for itself"
    );
}

#[tokio::test]
async fn attendees_make_a_limited_number_of_sessions_organisers_any() {
    let h = harness().await; // 2 per attendee, 3 by attendees per event
    let gen_ = h.attendee("gen@example.org", "general").await;
    let bo = h.attendee("bo@example.org", "general").await;
    let ada = h.signed_in("ada@example.com").await;
    let create = |cookie: String, title: &'static str| {
        let h = &h;
        async move {
            h.post(
                "/api/events/default/gala/sessions",
                Some(&cookie),
                json!({"title": title}),
            )
            .await
        }
    };
    for title in ["One", "Two"] {
        assert_eq!(
            create(gen_.clone(), title).await.status,
            StatusCode::CREATED
        );
    }
    let third = create(gen_.clone(), "Three").await;
    assert_eq!(
        (third.status, third.code()),
        (StatusCode::FORBIDDEN, "session_limit")
    );
    assert!(
        third.body["message"]
            .as_str()
            .unwrap()
            .contains("Delete one")
    );
    assert_eq!(create(bo.clone(), "Bo's").await.status, StatusCode::CREATED);
    let fourth = create(bo.clone(), "Bo's second").await;
    assert_eq!(
        (fourth.status, fourth.code()),
        (StatusCode::FORBIDDEN, "session_limit")
    );
    for title in ["Keynote Q&A", "Panel", "Closing"] {
        assert_eq!(
            create(ada.clone(), title).await.status,
            StatusCode::CREATED,
            "organisers are not limited"
        );
    }
}

#[tokio::test]
async fn wrong_backstage_keys_are_limited_and_then_even_the_right_one_waits() {
    let h = harness().await;
    let ada = h.signed_in("ada@example.com").await;
    let gen_ = h.attendee("gen@example.org", "general").await;
    h.go_live("stage:default:gala-main-stage");
    let link = h
        .get("/api/stages/default/gala-main-stage", Some(&ada))
        .await
        .body["backstageLink"]
        .as_str()
        .unwrap()
        .to_string();
    let key = link.split("key=").nth(1).unwrap().to_string();
    let join = |key: String| {
        let h = &h;
        let gen_ = gen_.clone();
        async move {
            h.post(
                "/api/stages/default/gala-main-stage/join",
                Some(&gen_),
                json!({"backstage": true, "key": key}),
            )
            .await
        }
    };
    assert_eq!(
        join(key.clone()).await.status,
        StatusCode::OK,
        "the right key, first"
    );
    for i in 0..10 {
        let guess = format!("{i:032x}");
        assert_eq!(join(guess).await.status, StatusCode::FORBIDDEN);
    }
    let waits = join(key.clone()).await;
    assert_eq!(waits.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(waits.headers.contains_key(header::RETRY_AFTER));
    h.state.clock.set(NOW + 301);
    assert_eq!(join(key).await.status, StatusCode::OK, "after the window");
}

#[tokio::test]
async fn without_email_the_email_features_say_so_and_nothing_is_logged() {
    let h = harness_with(Some(Mailer::Off)).await;
    let asked = h
        .post("/api/signin", None, json!({"email": "ada@example.com"}))
        .await;
    assert_eq!(
        (asked.status, asked.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "email_off")
    );
    let registered = h
        .post(
            "/api/events/default/gala/register",
            None,
            json!({"email": "x@example.org", "name": "X", "ticketType": "general"}),
        )
        .await;
    assert_eq!(registered.code(), "email_off");
    let access = h
        .post(
            "/api/rooms/linus/team-sync/access-link",
            None,
            json!({"email": "bo@example.org"}),
        )
        .await;
    assert_eq!(access.code(), "email_off");
}

// Already sound; kept so.

#[tokio::test]
async fn bodies_too_big_malformed_or_of_another_type_are_refused() {
    let h = harness().await;
    let big = json!({"email": "a@example.com", "next": "/".repeat(3 << 20)});
    let answer = h.post("/api/signin", None, big).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    let malformed = Request::post("/api/signin")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"email\": "))
        .unwrap();
    assert_eq!(h.send(malformed).await.status, StatusCode::BAD_REQUEST);
    let form = Request::post("/api/signin")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("email=a%40example.com"))
        .unwrap();
    assert_eq!(
        h.send(form).await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
}

#[tokio::test]
async fn assets_and_recordings_stay_inside_their_folders() {
    let h = harness().await;
    for path in [
        "/assets/../Cargo.toml",
        "/assets/%2e%2e/Cargo.toml",
        "/assets/..%2fCargo.toml",
        "/assets/%2e%2e%2f%2e%2e%2fCargo.toml",
        "/assets//etc/passwd",
    ] {
        let request = Request::get(path).body(Body::empty()).unwrap();
        let response = h.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("[package]") && !text.contains("root:"),
            "{path}: {status}"
        );
        assert_ne!(status, StatusCode::OK, "{path}");
    }
    // A recording whose file points outside the claim is not served.
    let ada = h.signed_in("ada@example.com").await;
    let mut live = h.live.lock().unwrap().clone();
    live.insert(
        "session:default:gala-future-of-work".into(),
        Observed {
            phase: Some(LivePhase::Ended),
            recordings: vec![roundtable_crds::RecordingSummary {
                state: roundtable_crds::RecordingState::Complete,
                start: None,
                duration_seconds: Some(1),
                size_bytes: Some(1),
                file: Some("../../../../etc/passwd".into()),
                interruptions: None,
            }],
            ..Observed::default()
        },
    );
    h.catalog.set_observed(live, at(h.state.clock.now()));
    h.state.clock.set(NOW + 86_400);
    let answer = h
        .get("/api/recordings/default/gala-future-of-work/0", Some(&ada))
        .await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::NOT_FOUND, "not_stored_here")
    );
}

#[tokio::test]
async fn a_browser_whose_sign_in_answer_was_lost_is_signed_in_again_by_its_link_and_nobody_else() {
    let h = harness().await;
    h.post("/api/signin", None, json!({"email": "ada@example.com"}))
        .await;
    let link = h.smtp.link_for("ada@example.com").await;
    // The link is used, and its answer (the cookie) never reaches the browser: the replica
    // died after its transaction committed. The browser reloads, or the load balancer retries.
    let (claim, lost) = h.open_link(&link).await;
    assert!(set_cookie(&lost, identity::SESSION_COOKIE).is_some());
    let path = link.strip_prefix("http://events.test").unwrap();
    let retried = h.get(path, Some(&claim)).await;
    let cookie = set_cookie(&retried, identity::SESSION_COOKIE).expect("signed in again");
    let me = h.get("/api/me", Some(&cookie)).await;
    assert_eq!(me.body["email"], "ada@example.com");
    assert_eq!(
        set_cookie(&retried, people::CLAIM_COOKIE),
        None,
        "the claim cookie is cleared once signed in"
    );

    // Another browser with the same link: used.
    let (_, stranger) = h.open_link(&link).await;
    assert_eq!(
        stranger.headers[header::LOCATION].to_str().unwrap(),
        "/?error=link_invalid"
    );
    // The same browser, later: used.
    h.state.clock.set(NOW + people::RECLAIM_SECONDS);
    let late = h.get(path, Some(&claim)).await;
    assert_eq!(
        late.headers[header::LOCATION].to_str().unwrap(),
        "/?error=link_invalid"
    );

    // A client that keeps no cookies comes back without one: it uses the link once.
    h.post("/api/signin", None, json!({"email": "bo@example.com"}))
        .await;
    let link = h.smtp.link_for("bo@example.com").await;
    let path = link.strip_prefix("http://events.test").unwrap();
    let first = h.get(path, None).await;
    let again = first.headers[header::LOCATION]
        .to_str()
        .unwrap()
        .to_string();
    assert!(again.ends_with("&claim=1"), "{again}");
    let once = h.get(&again, None).await;
    assert!(set_cookie(&once, identity::SESSION_COOKIE).is_some());
    let twice = h.get(&again, None).await;
    assert_eq!(
        twice.headers[header::LOCATION].to_str().unwrap(),
        "/?error=link_invalid"
    );
}

#[tokio::test]
async fn sign_in_codes_are_128_bit_stored_only_as_hashes_and_used_once() {
    let h = harness().await;
    h.post("/api/signin", None, json!({"email": "ada@example.com"}))
        .await;
    let link = h.smtp.link_for("ada@example.com").await;
    let code = link.split("code=").nth(1).unwrap().to_string();
    assert_eq!(code.len(), 32, "128 bits in hex");
    assert!(code.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        h.state.store.use_sign_in(&code, None, NOW).await.unwrap(),
        None,
        "the database does not hold the code itself"
    );
    // Two uses at once: one signs in.
    let (a, b) = tokio::join!(h.follow(&link), h.follow(&link));
    assert_eq!(a.is_some() as u8 + b.is_some() as u8, 1);
}

#[test]
fn the_web_client_builds_its_pages_without_html_strings_or_inline_code() {
    let mut files = 0;
    for name in super::pages::web_files() {
        let text = super::pages::web_file(&name).unwrap();
        files += 1;
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!text.contains(banned), "{name} uses {banned}");
        }
        if name.ends_with(".html") {
            assert!(
                !text.contains("<script>") && !text.contains(" style="),
                "{name} has inline code"
            );
            assert!(!text.contains(" on"), "{name} has an inline handler");
        }
    }
    assert!(files > 10, "read the web client ({files} files)");
}

/// Host accounts: onboarding, profile, avatar, dashboard rooms, deletion, OpenID Connect
/// refusals that need no provider.
#[path = "tests_accounts.rs"]
mod accounts_tests;
