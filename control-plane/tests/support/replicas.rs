//! Control-plane replicas on one PostgreSQL database, each on a runtime of its own so that
//! killing one ([`Replica::kill`]) drops everything it was doing at once, as a crashed pod
//! would: its connections, in-flight requests and transactions (rolled back by PostgreSQL).
//! Shared by the replica tests and the benchmark.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use roundtable_control_plane::{
    self as api, ApiSettings, ApiState, Clock, LocalCatalog, Mailer, Protection,
    RegistrationVerifier, Store, manifests, parse_cidrs,
};

/// 2026-12-10T18:30:00Z: the gala's sessions are on (as in the router tests).
pub const NOW: i64 = 1_796_927_400;
/// Where every replica says it is served (Origin of state-changing requests).
pub const PUBLIC_URL: &str = "http://events.test";

#[allow(missing_debug_implementations)]
pub struct Replica {
    pub addr: SocketAddr,
    pub store: Store,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Replica {
    /// Starts a replica on `database` (a `postgres://` URL, or an SQLite file path).
    pub fn start(database: &str) -> Replica {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let database = database.to_string();
        let (addr, store) = runtime.block_on(async move {
            let store = if database.starts_with("postgres://") {
                Store::connect(&database, 16).await.unwrap()
            } else {
                Store::open(Path::new(&database)).await.unwrap()
            };
            let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
            let loaded = manifests::load(&manifests::files(&[examples]).unwrap()).unwrap();
            let now = jiff::Timestamp::from_second(NOW).unwrap();
            let catalog = Arc::new(LocalCatalog::new(loaded, now));
            // Loopback is the trusted proxy: a benchmark names many clients with
            // X-Forwarded-For, as an Ingress would.
            let protection = Protection {
                trusted_proxies: parse_cidrs("127.0.0.1/32").unwrap(),
                ..Protection::default()
            };
            let state = ApiState::protected(
                catalog,
                ApiSettings {
                    store: store.clone(),
                    join_key: b"join-key-for-tests".to_vec(),
                    registration: RegistrationVerifier::new(None, None),
                    mailer: Mailer::Log,
                    public_url: PUBLIC_URL.into(),
                    clock: Clock::fixed(NOW),
                    recordings_dir: None,
                },
                protection,
            )
            .await
            .unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let app = api::router(state).into_make_service_with_connect_info::<SocketAddr>();
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            (addr, store)
        });
        Replica {
            addr,
            store,
            runtime: Some(runtime),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops everything this replica was doing, mid-request.
    pub fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An HTTP client like a browser's: sends the site's Origin, does not follow redirects.
pub fn browser() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("origin", PUBLIC_URL.parse().unwrap());
    reqwest::Client::builder()
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A sign-in link's code for `email`, stored as `POST /api/signin` stores it (the email
/// itself goes to the log here).
pub async fn sign_in_code(store: &Store, email: &str) -> String {
    let code = api::identity::new_code();
    store
        .add_sign_in(
            &api::identity::code_hash(&code),
            email,
            "Someone",
            "/",
            NOW + 900,
        )
        .await
        .unwrap();
    code
}

/// Opens the sign-in link at `replica` as a fresh browser: the session cookie, or None when
/// refused.
pub async fn open_link(
    http: &reqwest::Client,
    base: &str,
    code: &str,
) -> reqwest::Result<Option<String>> {
    open_link_from(http, base, code, None).await
}

/// [`open_link`] from `client` (an address the trusted proxy forwards for), else loopback.
pub async fn open_link_from(
    http: &reqwest::Client,
    base: &str,
    code: &str,
    client: Option<&str>,
) -> reqwest::Result<Option<String>> {
    open_link_with(http, base, code, client, &mut None).await
}

/// Opens the sign-in link at `base` as a browser does, keeping the claim cookie the first
/// step hands out in `claim`: a retry with the same `claim` (at any replica) is that
/// browser's retry. The session cookie, or None when refused.
pub async fn open_link_with(
    http: &reqwest::Client,
    base: &str,
    code: &str,
    client: Option<&str>,
    claim: &mut Option<String>,
) -> reqwest::Result<Option<String>> {
    let get = |path: &str| {
        let mut request = http.get(format!("{base}{path}"));
        if let Some(client) = client {
            request = request.header("x-forwarded-for", client);
        }
        request
    };
    let link = format!("/signin?code={code}");
    if claim.is_none() {
        let first = get(&link).send().await?;
        *claim = Some(set_cookie(&first, "rt_claim").expect("the link hands out a claim cookie"));
    }
    let claim = claim.as_deref().unwrap();
    let answer = get(&link).header("cookie", claim).send().await?;
    Ok(set_cookie(&answer, "rt_session"))
}

/// The cookie `name` an answer sets (`name=value`), unless it clears it.
fn set_cookie(answer: &reqwest::Response, name: &str) -> Option<String> {
    answer
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap().to_string())
        .find(|c| {
            c.strip_prefix(name)
                .and_then(|v| v.strip_prefix('='))
                .is_some_and(|v| !v.is_empty())
        })
}
