//! The whole cluster-side product on the shared test cluster, for end-to-end tests and
//! benchmarks: the scheduler, a node agent with a tainted media node and a general node
//! running real `sfu-node` processes, the operator, and the control plane (`roundtable api`'s
//! router over watch caches) on a loopback port. Attendees sign in with registration tokens
//! as an external registration system would issue them.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{Patch, PatchParams};
use roundtable_control_plane::{
    self as api, ApiSettings, ApiState, Clock, KubeCatalog, Mailer, RegistrationVerifier, Store,
};
use roundtable_operator::OperatorConfig;
use serde_json::{Value, json};

use crate::error::{Error, IoContext, Result};
use crate::node_agent::{self, ImageMap, NodeAgent, NodeSpec};
use crate::operator::{RunningOperator, create_join_token_secret};
use crate::{Cluster, TestNamespace};

/// The join-token key the SFU pods and the control plane share.
pub const JOIN_KEY: &str = "e2e-join-token-key";
/// The key registration tokens are signed with.
pub const REGISTRATION_KEY: &[u8] = b"e2e-registration-key";
/// The label of a stack's nodes; its namespace's pods are scheduled only there.
pub const STACK_LABEL: &str = "e2e.roundtable.dev/stack";
/// The image the operator is told to run for sfu-node; the node agent runs this checkout's.
pub const SFU_IMAGE: &str = "registry.example/roundtable/sfu-node:e2e";
/// The image of recorder Jobs; the node agent runs this checkout's `roundtable-recorder`.
pub const RECORDER_IMAGE: &str = "registry.example/roundtable/roundtable-recorder:e2e";

/// What a [`Stack`] runs beyond the media node and the control plane.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// The operator to run inside the test process (its images are replaced by
    /// [`SFU_IMAGE`] and [`RECORDER_IMAGE`]); `None` for none, when the test runs
    /// `roundtable operator` processes itself ([`crate::operator_process`]).
    pub operator: Option<OperatorConfig>,
    /// Untainted nodes for pods without placement (16 CPUs, 32 GiB each).
    pub room_nodes: usize,
    /// Pods each node takes.
    pub pods_per_node: u32,
    /// Recorder Jobs run: the kube-controller-manager (its Job controller) is started and the
    /// node agent runs `roundtable-recorder`.
    pub recorder: bool,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            operator: Some(OperatorConfig::default()),
            room_nodes: 1,
            pods_per_node: 110,
            recorder: false,
        }
    }
}

/// `config` with the images the stack's node agent runs.
pub fn with_images(config: OperatorConfig) -> OperatorConfig {
    OperatorConfig {
        sfu_image: SFU_IMAGE.into(),
        recorder_image: RECORDER_IMAGE.into(),
        ..config
    }
}

/// Everything running for one test namespace; [`Stack::stop`] ends it.
#[derive(Debug)]
pub struct Stack {
    pub cluster: &'static Cluster,
    pub ns: TestNamespace,
    pub agent: NodeAgent,
    /// The operator running inside the test process, unless the test runs its own.
    pub operator: Option<RunningOperator>,
    pub api: ControlPlane,
    server: tokio::task::JoinHandle<()>,
}

/// A client of the control plane's HTTP API, for one namespace's events.
#[derive(Debug, Clone)]
pub struct ControlPlane {
    /// The control plane's base URL, `http://127.0.0.1:PORT`.
    pub base: String,
    pub namespace: String,
    pub http: reqwest::Client,
}

impl Stack {
    /// Starts the stack in a fresh namespace named after `prefix`; `config` is the operator's
    /// (its `sfu_image` is replaced by [`SFU_IMAGE`]).
    pub async fn start(prefix: &str, config: OperatorConfig) -> Result<Stack> {
        Self::start_with(
            prefix,
            StackOptions {
                operator: Some(config),
                ..StackOptions::default()
            },
        )
        .await
    }

    /// Starts the stack in a fresh namespace named after `prefix`, as `options` say.
    pub async fn start_with(prefix: &str, options: StackOptions) -> Result<Stack> {
        let cluster = Cluster::shared().await?;
        cluster.install_crds().await?;
        cluster.start_scheduler().await?;
        if options.recorder {
            cluster.start_controller_manager().await?;
        }
        let ns = cluster.namespace(prefix).await?;
        // One scheduler serves every test of the binary, and tests run in parallel: without
        // this, a pod of this namespace could land on another test's node (same labels and
        // taints) and die with that test's node agent. The PodNodeSelector admission plugin
        // adds this selector to every pod of the namespace.
        let stack_label = format!("{STACK_LABEL}={}", ns.name);
        Api::<Namespace>::all(cluster.admin_client()?)
            .patch(
                &ns.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {
                    "scheduler.alpha.kubernetes.io/node-selector": stack_label,
                }}})),
            )
            .await?;
        let sfu = node_agent::workspace_binary("sfu-node", "sfu-node").await?;
        let mut images = ImageMap::new().map("sfu-node", sfu);
        if options.recorder {
            let recorder = node_agent::workspace_binary("sfu-node", "roundtable-recorder").await?;
            images = images.map("roundtable-recorder", recorder);
        }
        let mut nodes = vec![
            NodeSpec::new(format!("{}-media", ns.name))
                .label(STACK_LABEL, &ns.name)
                .label("roundtable.dev/media", "true")
                .taint("roundtable.dev/media", "", "NoSchedule")
                .cpu("16")
                .memory("32Gi")
                .pods(options.pods_per_node),
        ];
        for i in 0..options.room_nodes {
            let name = match i {
                0 => format!("{}-rooms", ns.name),
                i => format!("{}-rooms-{i}", ns.name),
            };
            nodes.push(
                NodeSpec::new(name)
                    .label(STACK_LABEL, &ns.name)
                    .cpu("16")
                    .memory("32Gi")
                    .pods(options.pods_per_node),
            );
        }
        let agent = NodeAgent::start(cluster, nodes, images).await?;
        create_join_token_secret(ns.client.clone(), &ns.name, JOIN_KEY).await?;
        let operator = options.operator.map(|config| {
            RunningOperator::start(ns.client.clone(), &ns.name, "e2e", with_images(config))
        });

        let catalog = KubeCatalog::start(ns.client.clone(), Some(ns.name.clone()));
        tokio::time::timeout(Duration::from_secs(30), catalog.wait_ready())
            .await
            .map_err(|_| {
                Error::Stack("the control plane's watch caches did not fill in 30 s".into())
            })?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context(|| "binding the control plane's port".to_string())?;
        let base = format!(
            "http://{}",
            listener
                .local_addr()
                .context(|| "reading the control plane's port".to_string())?
        );
        // Hosts' dashboard rooms go into this test's namespace.
        let protection = api::Protection {
            accounts: api::accounts::AccountSettings {
                rooms_namespace: ns.name.clone(),
                ..Default::default()
            },
            ..Default::default()
        };
        let state = ApiState::protected(
            Arc::new(catalog),
            ApiSettings {
                store: Store::in_memory()
                    .await
                    .map_err(|e| Error::Stack(e.to_string()))?,
                join_key: JOIN_KEY.as_bytes().to_vec(),
                registration: RegistrationVerifier::new(Some(REGISTRATION_KEY.to_vec()), None),
                mailer: Mailer::Log,
                public_url: base.clone(),
                clock: Clock::default(),
                recordings_dir: None,
            },
            protection,
        )
        .await
        .map_err(|e| Error::Stack(format!("{e:?}")))?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, api::router(state)).await;
        });
        let api = ControlPlane {
            base,
            namespace: ns.name.clone(),
            http: reqwest::Client::new(),
        };
        Ok(Stack {
            cluster,
            ns,
            agent,
            operator,
            api,
            server,
        })
    }

    /// `kubectl apply -n <ns> -f <path>`.
    pub async fn apply(&self, path: &std::path::Path) -> Result<()> {
        self.cluster
            .kubectl(&["apply", "-n", &self.ns.name, "-f", &path.to_string_lossy()])
            .await?
            .ok()
            .map(|_| ())
    }

    /// Stops the control plane, the operator and the node agent (its pods' processes).
    pub async fn stop(self) -> Result<()> {
        self.server.abort();
        if let Some(operator) = self.operator {
            operator.stop().await;
        }
        self.agent.stop().await
    }
}

impl ControlPlane {
    /// Signs `email` in with a registration token holding a `ticket` to `event` (in this
    /// namespace); the control plane's cookie as `name=value`.
    pub async fn sign_in(&self, email: &str, event: &str, ticket: &str) -> Result<String> {
        let token = registration_token(email, &format!("{}/{event}", self.namespace), ticket);
        let response = self
            .http
            .post(format!("{}/api/signin/registration", self.base))
            .json(&json!({ "token": token }))
            .send()
            .await
            .map_err(|e| Error::Stack(format!("signing in {email}: {e}")))?;
        if !response.status().is_success() {
            return Err(Error::Stack(format!(
                "signing in {email}: {}",
                response.status()
            )));
        }
        response
            .headers()
            .get("set-cookie")
            .and_then(|c| c.to_str().ok())
            .and_then(|c| c.split(';').next())
            .map(str::to_string)
            .ok_or_else(|| Error::Stack(format!("signing in {email}: no cookie")))
    }

    /// GET `path` on the control plane as `cookie`: the status and the JSON body.
    pub async fn get(&self, cookie: &str, path: &str) -> Result<(u16, Value)> {
        self.send(self.http.get(format!("{}{path}", self.base)), cookie)
            .await
    }

    /// `method` `body` to `path` on the control plane as `cookie`: the status and the JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        cookie: &str,
        path: &str,
        body: Value,
    ) -> Result<(u16, Value)> {
        self.send(
            self.http
                .request(method, format!("{}{path}", self.base))
                .json(&body),
            cookie,
        )
        .await
    }

    /// POST `body` to `path` on the control plane as `cookie`: the status and the JSON body.
    pub async fn post(&self, cookie: &str, path: &str, body: Value) -> Result<(u16, Value)> {
        self.send(
            self.http.post(format!("{}{path}", self.base)).json(&body),
            cookie,
        )
        .await
    }

    async fn send(&self, request: reqwest::RequestBuilder, cookie: &str) -> Result<(u16, Value)> {
        let response = request
            .header("cookie", cookie)
            .send()
            .await
            .map_err(|e| Error::Stack(format!("calling the control plane: {e}")))?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }
}

/// A registration token as an external registration system would issue it, for `event`
/// (`namespace/name`) with one ticket of type `ticket`.
pub fn registration_token(email: &str, event: &str, ticket: &str) -> String {
    let exp = jiff::Timestamp::now().as_second() + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": email, "name": email.split('@').next().unwrap_or(email), "exp": exp,
                "tickets": [{"event": event, "type": ticket}]}),
        &jsonwebtoken::EncodingKey::from_secret(REGISTRATION_KEY),
    )
    .expect("HS256 encoding cannot fail")
}
