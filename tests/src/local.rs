//! The local all-in-one mode assembled in-process as `roundtable up` assembles it: the
//! manifests of a folder in a [`LocalCatalog`], the runner starting embedded sfu-nodes (media on
//! loopback: the tests' str0m peers are on this machine, unlike browsers), and the control
//! plane's router served on a loopback port. Stopped when dropped.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use roundtable::local::{MediaAddrs, Runner};
use roundtable_control_plane::{
    self as api, ApiSettings, ApiState, Clock, LocalCatalog, Mailer, RegistrationVerifier, Store,
    manifests,
};
use serde_json::json;
use tokio::task::JoinHandle;

/// A running local mode.
#[derive(Debug)]
pub struct LocalStack {
    pub catalog: Arc<LocalCatalog>,
    /// The control plane's address and `http://` base URL.
    pub addr: SocketAddr,
    pub base: String,
    pub http: reqwest::Client,
    registration_key: Vec<u8>,
    server: JoinHandle<std::io::Result<()>>,
    runner: JoinHandle<()>,
}

impl LocalStack {
    /// Serves the manifests in `manifests_dir`, with the database and recordings under `work`.
    /// Join tokens are signed with `join_key`; external registration tokens with
    /// `registration_key` sign people in ([`LocalStack::sign_in`]).
    pub async fn start(
        manifests_dir: &Path,
        work: &Path,
        join_key: &[u8],
        registration_key: &[u8],
    ) -> Self {
        let loaded = manifests::load(&manifests::files(&[manifests_dir.to_path_buf()]).unwrap())
            .expect("the manifests load");
        let catalog = Arc::new(LocalCatalog::new(loaded, jiff::Timestamp::now()));
        let mut runner = Runner::new(
            catalog.clone(),
            vec![manifests_dir.to_path_buf()],
            MediaAddrs::choose(Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), None),
            join_key.to_vec(),
            Self::recordings(work),
        );
        runner.tick().await;
        let runner = tokio::spawn(runner.run());

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base = format!("http://{addr}");
        let state = ApiState::new(
            catalog.clone(),
            ApiSettings {
                store: Store::open(&work.join("local.db")).await.unwrap(),
                join_key: join_key.to_vec(),
                registration: RegistrationVerifier::new(Some(registration_key.to_vec()), None),
                mailer: Mailer::Log,
                public_url: base.clone(),
                clock: Clock::default(),
                recordings_dir: Some(Self::recordings(work)),
            },
        )
        .await
        .unwrap();
        let server = tokio::spawn(api::serve::serve(
            listener,
            api::router(state),
            None,
            std::future::pending(),
        ));
        LocalStack {
            catalog,
            addr,
            base,
            http: reqwest::Client::new(),
            registration_key: registration_key.to_vec(),
            server,
            runner,
        }
    }

    /// Where sessions with recording on are recorded: `<work>/recordings`.
    pub fn recordings(work: &Path) -> PathBuf {
        work.join("recordings")
    }

    /// Signs `email` in with an external registration token (no tickets) and returns the
    /// sign-in cookie (`name=value`).
    pub async fn sign_in(&self, email: &str, name: &str) -> String {
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &json!({"sub": email, "name": name, "exp": jiff::Timestamp::now().as_second() + 3600, "tickets": []}),
            &jsonwebtoken::EncodingKey::from_secret(&self.registration_key),
        )
        .unwrap();
        let signed = self
            .http
            .post(format!("{}/api/signin/registration", self.base))
            .json(&json!({"token": token}))
            .send()
            .await
            .unwrap();
        assert!(signed.status().is_success(), "sign-in: {}", signed.status());
        signed.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string()
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        self.server.abort();
        self.runner.abort();
    }
}
