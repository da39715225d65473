//! ID tokens a real provider would never send, refused: the issuer here is an attacker's
//! stand-in on loopback that publishes an ES256 key and answers the token request with
//! whatever token the test hands it. (The sign-in itself, with a real provider, is
//! `oidc.rs` against Keycloak.) Each refusal lands on the sign-in page with its reason, and
//! nobody is signed in; a well-formed token through the same issuer does sign in, so the
//! refusals come from the checks and not from the set-up.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::routing::{get, post};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use roundtable_control_plane::accounts::AccountSettings;
use roundtable_control_plane::oidc::Provider;
use roundtable_control_plane::{
    self as api, ApiSettings, ApiState, Clock, LocalCatalog, Mailer, Protection,
    RegistrationVerifier, Store, manifests,
};
use serde_json::{Value, json};

#[path = "support/keycloak.rs"]
mod keycloak;
use keycloak::Browser;

const CLIENT_ID: &str = "roundtable";
const SECRET: &str = "client-secret";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

struct Issuer {
    url: String,
    key: rcgen::KeyPair,
    /// The next answer of the token endpoint.
    next: Arc<Mutex<String>>,
}

impl Issuer {
    async fn start() -> Issuer {
        let key = rcgen::KeyPair::generate().unwrap();
        let point = key.public_key_raw().to_vec();
        let jwks = json!({"keys": [
            {"kty": "RSA", "use": "enc", "alg": "RSA-OAEP", "kid": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": "k1",
             "x": b64(&point[1..33]), "y": b64(&point[33..65])}
        ]});
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let discovery = json!({
            "issuer": url,
            "authorization_endpoint": format!("{url}/auth"),
            "token_endpoint": format!("{url}/token"),
            "jwks_uri": format!("{url}/jwks"),
        });
        let next = Arc::new(Mutex::new(String::new()));
        let answer = next.clone();
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { Json(discovery) }),
            )
            .route("/jwks", get(move || async move { Json(jwks) }))
            .route(
                "/token",
                post(move || async move {
                    Json(
                        json!({"id_token": answer.lock().unwrap().clone(), "token_type": "Bearer"}),
                    )
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Issuer { url, key, next }
    }

    fn claims(&self, nonce: &str) -> Value {
        let now = jiff::Timestamp::now().as_second();
        json!({"iss": self.url, "aud": CLIENT_ID, "sub": "u1", "exp": now + 300, "iat": now,
            "nonce": nonce, "email": "ada@example.com", "email_verified": true, "name": "Ada"})
    }

    fn es256(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("k1".into());
        let key = EncodingKey::from_ec_pem(self.key.serialize_pem().as_bytes()).unwrap();
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }
}

async fn serve(issuer: &str) -> String {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let loaded = manifests::load(&manifests::files(&[examples]).unwrap()).unwrap();
    let catalog = Arc::new(LocalCatalog::new(loaded, jiff::Timestamp::now()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let state = ApiState::protected(
        catalog,
        ApiSettings {
            store: Store::in_memory().await.unwrap(),
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
                    issuer: issuer.into(),
                    client_id: CLIENT_ID.into(),
                    client_secret: SECRET.into(),
                    name: "Hostile".into(),
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
    format!("http://{addr}")
}

/// Makes the token answer of one sign-in from its nonce.
type Minter<'a> = Box<dyn Fn(&str) -> String + 'a>;

fn param<'a>(url: &'a str, name: &str) -> &'a str {
    url.split(&format!("{name}="))
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
}

/// A sign-in whose token answer is `token(nonce)`: where the browser lands, and whether it
/// was signed in.
async fn sign_in(
    base: &str,
    issuer: &Issuer,
    token: impl FnOnce(&str) -> String,
) -> (String, bool) {
    let mut browser = Browser::new();
    let started = browser.get(&format!("{base}/signin/oidc")).await;
    let login = started.location.unwrap();
    *issuer.next.lock().unwrap() = token(param(&login, "nonce"));
    let state = param(&login, "state");
    let back = browser
        .get(&format!("{base}/signin/oidc/callback?state={state}&code=c"))
        .await;
    let landed = back.location.unwrap().trim_start_matches(base).to_string();
    (landed, browser.cookie(base, "rt_session").is_some())
}

#[tokio::test]
async fn tokens_a_real_provider_would_not_send_sign_nobody_in() {
    let issuer = Issuer::start().await;
    let base = serve(&issuer.url).await;

    let (landed, signed_in) = sign_in(&base, &issuer, |n| issuer.es256(&issuer.claims(n))).await;
    assert_eq!(
        (landed.as_str(), signed_in),
        ("/welcome?next=%2F", true),
        "a good token signs in"
    );

    let cases: Vec<(&str, Minter<'_>, &str)> = vec![
        (
            "another sign-in's nonce",
            Box::new(|_| issuer.es256(&issuer.claims("someone-elses"))),
            "oidc_nonce",
        ),
        (
            "no nonce",
            Box::new(|n| {
                let mut c = issuer.claims(n);
                c.as_object_mut().unwrap().remove("nonce");
                issuer.es256(&c)
            }),
            "oidc_nonce",
        ),
        (
            "signed with the client secret (HS256)",
            Box::new(|n| {
                jsonwebtoken::encode(
                    &Header::new(Algorithm::HS256),
                    &issuer.claims(n),
                    &EncodingKey::from_secret(SECRET.as_bytes()),
                )
                .unwrap()
            }),
            "oidc_token",
        ),
        (
            "alg none",
            Box::new(|n| {
                format!(
                    "{}.{}.",
                    b64(br#"{"alg":"none","typ":"JWT"}"#),
                    b64(issuer.claims(n).to_string().as_bytes())
                )
            }),
            "oidc_token",
        ),
        (
            "for another client",
            Box::new(|n| {
                let mut c = issuer.claims(n);
                c["aud"] = json!("other-client");
                issuer.es256(&c)
            }),
            "oidc_token",
        ),
        (
            "from another issuer",
            Box::new(|n| {
                let mut c = issuer.claims(n);
                c["iss"] = json!("https://evil.example");
                issuer.es256(&c)
            }),
            "oidc_token",
        ),
        (
            "expired",
            Box::new(|n| {
                let mut c = issuer.claims(n);
                c["exp"] = json!(1_000_000_000);
                issuer.es256(&c)
            }),
            "oidc_token",
        ),
        (
            "without exp",
            Box::new(|n| {
                let mut c = issuer.claims(n);
                c.as_object_mut().unwrap().remove("exp");
                issuer.es256(&c)
            }),
            "oidc_token",
        ),
        (
            "signed by another key",
            Box::new(|n| {
                let other = rcgen::KeyPair::generate().unwrap();
                let mut header = Header::new(Algorithm::ES256);
                header.kid = Some("k1".into());
                jsonwebtoken::encode(
                    &header,
                    &issuer.claims(n),
                    &EncodingKey::from_ec_pem(other.serialize_pem().as_bytes()).unwrap(),
                )
                .unwrap()
            }),
            "oidc_token",
        ),
        (
            "an unverified email",
            Box::new(|n| {
                let mut c = issuer.claims(n);
                c["email_verified"] = json!(false);
                issuer.es256(&c)
            }),
            "oidc_email",
        ),
        (
            "no email",
            Box::new(|n| {
                let mut c = issuer.claims(n);
                c.as_object_mut().unwrap().remove("email");
                issuer.es256(&c)
            }),
            "oidc_email",
        ),
    ];
    for (what, token, code) in cases {
        let (landed, signed_in) = sign_in(&base, &issuer, token).await;
        assert_eq!(landed, format!("/?error={code}"), "{what}");
        assert!(!signed_in, "{what}: nobody is signed in");
    }
}
