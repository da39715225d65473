//! Sign-up with OpenID Connect against a real provider: Keycloak, started by this test binary
//! with a test realm, its own login page filled in as a person would. The control plane is
//! served on a loopback socket, as in production.
//!
//! What a person notices: signing in through the provider lands a new host on onboarding,
//! signed in with the provider's verified email and name; a callback replayed, finished in
//! another browser, cancelled, or for an unverified email signs nobody in and says why on the
//! sign-in page; a code obtained for one sign-in cannot finish another (PKCE).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use roundtable_control_plane::accounts::AccountSettings;
use roundtable_control_plane::oidc::Provider;
use roundtable_control_plane::{
    self as api, ApiSettings, ApiState, Clock, LocalCatalog, Mailer, Protection,
    RegistrationVerifier, Store, manifests,
};
use serde_json::Value;

#[path = "support/keycloak.rs"]
mod keycloak;
use keycloak::{Browser, Keycloak};

/// One Keycloak for every test here: browsers may return to any loopback port.
fn provider() -> &'static Keycloak {
    static KEYCLOAK: OnceLock<Keycloak> = OnceLock::new();
    KEYCLOAK.get_or_init(|| keycloak::start("http://127.0.0.1:*"))
}

/// The control plane with Keycloak as its identity provider, on a loopback port.
async fn serve() -> (String, Store) {
    let issuer = tokio::task::spawn_blocking(|| provider().issuer.clone())
        .await
        .unwrap();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let loaded = manifests::load(&manifests::files(&[examples]).unwrap()).unwrap();
    let catalog = Arc::new(LocalCatalog::new(loaded, jiff::Timestamp::now()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let store = Store::in_memory().await.unwrap();
    let state = ApiState::protected(
        catalog,
        ApiSettings {
            store: store.clone(),
            join_key: b"join-key".to_vec(),
            registration: RegistrationVerifier::new(None, None),
            mailer: Mailer::Log,
            public_url: format!("http://{addr}"),
            clock: Clock::default(),
            recordings_dir: None,
        },
        Protection {
            accounts: AccountSettings {
                oidc: Some(Provider {
                    issuer,
                    client_id: "roundtable".into(),
                    client_secret: keycloak::CLIENT_SECRET.into(),
                    name: "Keycloak".into(),
                }),
                ..AccountSettings::default()
            },
            ..Protection::default()
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
    (format!("http://{addr}"), store)
}

/// Starts a sign-in at the control plane: Keycloak's login URL.
async fn start(browser: &mut Browser, base: &str) -> String {
    let started = browser.get(&format!("{base}/signin/oidc?next=/")).await;
    assert_eq!(started.status, 303, "{}", started.body);
    let login = started.location.unwrap();
    assert!(login.starts_with(&provider().issuer), "{login}");
    for part in [
        "code_challenge_method=S256",
        "state=",
        "nonce=",
        "code_challenge=",
    ] {
        assert!(login.contains(part), "{part} in {login}");
    }
    login
}

fn refusal(location: &Option<String>) -> &str {
    location
        .as_deref()
        .and_then(|l| l.split("/?error=").nth(1))
        .unwrap_or("(signed in)")
}

#[tokio::test]
async fn a_host_signs_up_through_the_provider_and_lands_on_onboarding() {
    let (base, store) = serve().await;
    let mut browser = Browser::new();
    let me: Value =
        serde_json::from_str(&browser.get(&format!("{base}/api/me")).await.body).unwrap();
    assert_eq!(
        me["oidc"], "Keycloak",
        "the sign-in page offers the provider"
    );

    let login = start(&mut browser, &base).await;
    let back = browser.log_in(&login, "ada", "ada-password").await;
    assert!(
        back.starts_with(&format!("{base}/signin/oidc/callback?")),
        "{back}"
    );
    let landed = browser.get(&back).await;
    assert_eq!(landed.status, 303);
    assert_eq!(
        landed.location.as_deref(),
        Some(format!("{base}/welcome?next=%2F").as_str())
    );
    assert!(browser.cookie(&base, "rt_session").is_some(), "signed in");

    let me: Value =
        serde_json::from_str(&browser.get(&format!("{base}/api/me")).await.body).unwrap();
    assert_eq!(me["email"], "ada@example.com");
    let account: Value =
        serde_json::from_str(&browser.get(&format!("{base}/api/account")).await.body).unwrap();
    assert_eq!(account["onboarded"], false);
    assert_eq!(
        account["displayName"], "Ada Lovelace",
        "the provider's name starts the profile"
    );
    assert!(store.account("ada@example.com").await.unwrap().is_some());

    // The same answer again (a replay, or the back button) signs nobody in.
    let mut thief = Browser::new();
    let replayed = thief.get(&back).await;
    assert_eq!(refusal(&replayed.location), "oidc_state");
    assert!(thief.cookie(&base, "rt_session").is_none());
    let replayed = browser.get(&back).await;
    assert_eq!(refusal(&replayed.location), "oidc_state");
}

#[tokio::test]
async fn a_sign_in_finished_in_another_browser_is_refused_and_used_up() {
    let (base, _) = serve().await;
    let mut victim = Browser::new();
    let login = start(&mut victim, &base).await;
    let back = victim.log_in(&login, "ada", "ada-password").await;
    // Someone else's browser opens the answer meant for the victim's.
    let mut other = Browser::new();
    let stolen = other.get(&back).await;
    assert_eq!(refusal(&stolen.location), "oidc_browser");
    assert!(other.cookie(&base, "rt_session").is_none());
    // The state was used by that attempt: the answer is spent for everyone.
    let late = victim.get(&back).await;
    assert_eq!(refusal(&late.location), "oidc_state");
}

#[tokio::test]
async fn a_code_from_one_sign_in_cannot_finish_another() {
    let (base, _) = serve().await;
    let mut browser = Browser::new();
    let first = start(&mut browser, &base).await;
    let rt_oidc_first = browser.cookie(&base, "rt_oidc").unwrap();
    let second = start(&mut browser, &base).await;
    let back = browser.log_in(&first, "ada", "ada-password").await;
    let code = back
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let state_of_second = second
        .split("state=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    // This browser holds the second sign-in's cookie now; the first's code, sent with the
    // second's state, fails at the provider: its PKCE verifier is the second's.
    assert_ne!(browser.cookie(&base, "rt_oidc").unwrap(), rt_oidc_first);
    let mixed = browser
        .get(&format!(
            "{base}/signin/oidc/callback?state={state_of_second}&code={code}"
        ))
        .await;
    assert_eq!(refusal(&mixed.location), "oidc_provider");
    assert!(browser.cookie(&base, "rt_session").is_none());
}

#[tokio::test]
async fn a_cancelled_sign_in_and_an_unverified_email_say_why() {
    let (base, _) = serve().await;
    let mut browser = Browser::new();
    let login = start(&mut browser, &base).await;
    let state = login
        .split("state=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let cancelled = browser
        .get(&format!(
            "{base}/signin/oidc/callback?error=access_denied&state={state}"
        ))
        .await;
    assert_eq!(refusal(&cancelled.location), "oidc_denied");

    let login = start(&mut browser, &base).await;
    let back = browser.log_in(&login, "mallory", "mallory-password").await;
    let refused = browser.get(&back).await;
    assert_eq!(refusal(&refused.location), "oidc_email");
    assert!(browser.cookie(&base, "rt_session").is_none());
    // The sign-in page words each refusal.
    let page = browser.get(&format!("{base}/assets/signin.js")).await;
    assert!(page.body.contains("did not give a verified email address"));
}
