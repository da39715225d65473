//! Keycloak as the real OpenID Connect provider of the sign-in tests: `tests/keycloak/start.sh`
//! fetches its server distribution once (cached by version), starts a private copy on a
//! loopback port with the test realm, and stops it when this process exits (its standard
//! input, a pipe from here, closes). One server per test binary.
//!
//! [`Browser`] is the little of a browser the tests need to sign in on Keycloak's own login
//! page: cookies per host and port, no redirects followed, the login form read from the page.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The test client's secret, as start.sh writes it into the realm.
pub const CLIENT_SECRET: &str = "roundtable-test-secret";

/// A running Keycloak.
#[derive(Debug)]
pub struct Keycloak {
    pub issuer: String,
    _guard: Child,
}

/// Starts Keycloak; browsers may return to any URL matching `redirect` (a trailing `*` is a
/// wildcard).
pub fn start(redirect: &str) -> Keycloak {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/keycloak/start.sh");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(script)
        .args([&port.to_string(), redirect, CLIENT_SECRET])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("tests/keycloak/start.sh runs (Java 17 or newer and curl are needed)");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let issuer = line
        .trim()
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("Keycloak did not start: {line:?} (see the messages above)"))
        .to_string();
    Keycloak {
        issuer,
        _guard: child,
    }
}

/// Cookies by `host:port`, and requests that do not follow redirects.
#[derive(Debug, Default)]
pub struct Browser {
    cookies: BTreeMap<String, BTreeMap<String, String>>,
    http: reqwest::Client,
}

/// An answer: status, where it redirects, and the body.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

fn origin(url: &reqwest::Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or(0)
    )
}

impl Browser {
    pub fn new() -> Self {
        Browser {
            cookies: BTreeMap::new(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()
                .unwrap(),
        }
    }

    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        let url = reqwest::Url::parse(url).unwrap();
        self.cookies.get(&origin(&url))?.get(name).cloned()
    }

    pub fn forget(&mut self, url: &str, name: &str) {
        let url = reqwest::Url::parse(url).unwrap();
        if let Some(jar) = self.cookies.get_mut(&origin(&url)) {
            jar.remove(name);
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder, url: &reqwest::Url) -> Page {
        let jar = self.cookies.entry(origin(url)).or_default();
        let header = jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let request = if header.is_empty() {
            request
        } else {
            request.header("cookie", header)
        };
        let answer = request.send().await.unwrap();
        for set in answer.headers().get_all("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap();
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() || set.to_str().unwrap().contains("Max-Age=0") {
                    jar.remove(k);
                } else {
                    jar.insert(k.to_string(), v.to_string());
                }
            }
        }
        let status = answer.status().as_u16();
        let location = answer
            .headers()
            .get("location")
            .map(|l| url.join(l.to_str().unwrap()).unwrap().to_string());
        Page {
            status,
            location,
            body: answer.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, url: &str) -> Page {
        let parsed = reqwest::Url::parse(url).unwrap();
        let request = self.http.get(parsed.clone());
        self.send(request, &parsed).await
    }

    pub async fn post_form(&mut self, url: &str, form: &[(&str, &str)]) -> Page {
        let parsed = reqwest::Url::parse(url).unwrap();
        let request = self.http.post(parsed.clone()).form(form);
        self.send(request, &parsed).await
    }

    /// Signs in on Keycloak's login page at `login_url` (the authorisation request); the
    /// redirect back to the client.
    pub async fn log_in(&mut self, login_url: &str, username: &str, password: &str) -> String {
        let page = self.get(login_url).await;
        assert_eq!(page.status, 200, "Keycloak's login page: {}", page.body);
        let action = login_action(&page.body);
        let answer = self
            .post_form(
                &action,
                &[
                    ("username", username),
                    ("password", password),
                    ("credentialId", ""),
                ],
            )
            .await;
        answer
            .location
            .unwrap_or_else(|| panic!("Keycloak did not send the browser back: {}", answer.status))
    }
}

/// The action of the login form on Keycloak's page.
pub fn login_action(page: &str) -> String {
    let start = page.find("id=\"kc-form-login\"").expect("a login form");
    let form = &page[start..];
    let action = form.find("action=\"").expect("a form action") + 8;
    let end = form[action..].find('"').unwrap();
    form[action..action + end].replace("&amp;", "&")
}
