//! Where the control plane reads events, sessions, stages and rooms from, and writes back the
//! few things people change in the UI.
//!
//! Two implementations: [`KubeCatalog`] (watch caches of the Kubernetes API, writes as small
//! merge patches) and the local mode's in-process catalog (`crate::local`). Reads are cheap
//! snapshots of cached objects, including the status the operator (or the local runner)
//! reports: phase, endpoint, counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use roundtable_crds::{LiveEvent, Room, Session, Stage};
use serde::de::DeserializeOwned;

/// The annotation that asks the operator to start a room's SFU pod.
pub const JOIN_REQUESTED: &str = "roundtable.dev/join-requested-at";

/// The field manager of the control plane's writes.
pub const FIELD_MANAGER: &str = "roundtable-control-plane";

/// A change someone made in the UI.
#[derive(Debug, Clone)]
pub enum Change {
    CreateSession(Box<Session>),
    StartSession {
        namespace: String,
        name: String,
    },
    DeleteSession {
        namespace: String,
        name: String,
    },
    Broadcast {
        namespace: String,
        name: String,
        on: bool,
    },
    /// An organiser's Start or End of a stage (and its backstage).
    StageLifecycle {
        namespace: String,
        name: String,
        lifecycle: roundtable_crds::Lifecycle,
    },
    LockRoom {
        namespace: String,
        name: String,
        locked: bool,
    },
    /// Someone wants to join a room with no SFU yet (asked `at`).
    WakeRoom {
        namespace: String,
        name: String,
        at: jiff::Timestamp,
    },
    /// A host's dashboard creates (`create`) or edits one of their rooms; `passcode` is the
    /// room's passcode when its spec names the passcode Secret.
    PutRoom {
        room: Box<Room>,
        passcode: Option<String>,
        create: bool,
    },
    /// A host's dashboard deletes one of their rooms.
    DeleteRoom {
        namespace: String,
        name: String,
    },
}

/// The label naming the host (their slug) whose dashboard made a room.
pub const OWNER_LABEL: &str = "roundtable.dev/owner";

/// The key of a dashboard room's passcode in its Secret (`<room>-passcode`).
pub const PASSCODE_KEY: &str = "passcode";

/// The Secret holding a dashboard room's passcode.
pub fn passcode_secret(room_name: &str) -> String {
    format!("{room_name}-passcode")
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("already exists")]
    Conflict,
    #[error("not found")]
    NotFound,
    #[error("refused by the API server: {0}")]
    Invalid(String),
    #[error("{0}")]
    Other(String),
}

impl From<kube::Error> for CatalogError {
    fn from(e: kube::Error) -> Self {
        match &e {
            kube::Error::Api(s) if s.code == 409 => CatalogError::Conflict,
            kube::Error::Api(s) if s.code == 404 => CatalogError::NotFound,
            kube::Error::Api(s) if s.code == 422 => CatalogError::Invalid(s.message.clone()),
            _ => CatalogError::Other(e.to_string()),
        }
    }
}

/// The resources the control plane serves.
pub trait Catalog: Send + Sync + 'static {
    fn events(&self) -> Vec<Arc<LiveEvent>>;
    fn sessions(&self) -> Vec<Arc<Session>>;
    fn stages(&self) -> Vec<Arc<Stage>>;
    fn rooms(&self) -> Vec<Arc<Room>>;
    /// One key of a Secret (room passcodes).
    fn secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, CatalogError>>;
    fn change(&self, change: Change) -> BoxFuture<'_, Result<(), CatalogError>>;
    /// Whether the caches are filled (readiness).
    fn ready(&self) -> bool;
    /// Whether rooms made on dashboards outlive this process here (Kubernetes keeps them);
    /// if not, the control plane keeps them in its store and hands them back at start-up.
    fn keeps_rooms(&self) -> bool {
        true
    }
}

fn is<K: Resource>(object: &K, namespace: &str, name: &str) -> bool {
    let meta = object.meta();
    meta.namespace.as_deref() == Some(namespace) && meta.name.as_deref() == Some(name)
}

pub fn find_event(c: &dyn Catalog, namespace: &str, name: &str) -> Option<Arc<LiveEvent>> {
    c.events().into_iter().find(|o| is(&**o, namespace, name))
}

pub fn find_session(c: &dyn Catalog, namespace: &str, name: &str) -> Option<Arc<Session>> {
    c.sessions().into_iter().find(|o| is(&**o, namespace, name))
}

pub fn find_stage(c: &dyn Catalog, namespace: &str, name: &str) -> Option<Arc<Stage>> {
    c.stages().into_iter().find(|o| is(&**o, namespace, name))
}

/// A room by its URL: `/<host>/<slug>`.
pub fn find_room(c: &dyn Catalog, host: &str, slug: &str) -> Option<Arc<Room>> {
    c.rooms()
        .into_iter()
        .find(|r| r.spec.host == host && r.spec.slug == slug)
}

/// The Kubernetes API as the catalog: watch caches for reads, small patches for writes.
#[derive(Clone)]
pub struct KubeCatalog {
    client: Client,
    namespace: Option<String>,
    events: Store<LiveEvent>,
    sessions: Store<Session>,
    stages: Store<Stage>,
    rooms: Store<Room>,
    filled: Arc<AtomicBool>,
}

impl std::fmt::Debug for KubeCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeCatalog")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

fn cache<K>(api: Api<K>) -> (Store<K>, BoxFuture<'static, ()>)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let run = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .for_each(|_| futures::future::ready(()));
    (reader, Box::pin(run))
}

impl KubeCatalog {
    /// Starts the watch caches (in `namespace`, or every namespace) on the current runtime.
    pub fn start(client: Client, namespace: Option<String>) -> Self {
        let (events, a) = cache(Self::api_in(&client, namespace.as_deref()));
        let (sessions, b) = cache(Self::api_in(&client, namespace.as_deref()));
        let (stages, c) = cache(Self::api_in(&client, namespace.as_deref()));
        let (rooms, d) = cache(Self::api_in(&client, namespace.as_deref()));
        for run in [a, b, c, d] {
            tokio::spawn(run);
        }
        let catalog = KubeCatalog {
            client,
            namespace,
            events,
            sessions,
            stages,
            rooms,
            filled: Arc::new(AtomicBool::new(false)),
        };
        let waiting = catalog.clone();
        tokio::spawn(async move {
            waiting.wait_ready().await;
            waiting.filled.store(true, Ordering::Relaxed);
        });
        catalog
    }

    fn api_in<K>(client: &Client, namespace: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }

    /// Waits until every cache has its first full list.
    pub async fn wait_ready(&self) {
        let _ = futures::future::join4(
            self.events.wait_until_ready(),
            self.sessions.wait_until_ready(),
            self.stages.wait_until_ready(),
            self.rooms.wait_until_ready(),
        )
        .await;
    }

    /// [`Self::wait_ready`], saying every 10 s which caches are still waiting for their first
    /// list (the control plane does not serve until then, and its `/readyz` fails).
    pub async fn wait_ready_reporting(&self) {
        let started = std::time::Instant::now();
        while tokio::time::timeout(Duration::from_secs(10), self.wait_ready())
            .await
            .is_err()
        {
            let waiting: Vec<&str> = [
                ("LiveEvents", self.events.wait_until_ready().now_or_never()),
                ("Sessions", self.sessions.wait_until_ready().now_or_never()),
                ("Stages", self.stages.wait_until_ready().now_or_never()),
                ("Rooms", self.rooms.wait_until_ready().now_or_never()),
            ]
            .into_iter()
            .filter(|(_, ready)| ready.is_none())
            .map(|(kind, _)| kind)
            .collect();
            tracing::warn!(
                waiting = ?waiting,
                seconds = started.elapsed().as_secs(),
                "not serving yet: these caches have not had their first list from the Kubernetes API"
            );
        }
    }

    async fn merge<K>(
        &self,
        namespace: &str,
        name: &str,
        patch: serde_json::Value,
    ) -> Result<(), CatalogError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        api.patch(
            name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Merge(&patch),
        )
        .await?;
        Ok(())
    }

    async fn apply(&self, change: Change) -> Result<(), CatalogError> {
        use serde_json::json;
        match change {
            Change::CreateSession(session) => {
                let namespace = session.metadata.namespace.clone().unwrap_or_default();
                let api: Api<Session> = Api::namespaced(self.client.clone(), &namespace);
                let params = PostParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                };
                api.create(&params, &session).await?;
            }
            Change::StartSession { namespace, name } => {
                self.merge::<Session>(&namespace, &name, json!({"spec": {"lifecycle": "Started"}}))
                    .await?
            }
            Change::DeleteSession { namespace, name } => {
                let api: Api<Session> = Api::namespaced(self.client.clone(), &namespace);
                api.delete(&name, &DeleteParams::default()).await?;
            }
            Change::Broadcast {
                namespace,
                name,
                on,
            } => {
                self.merge::<Stage>(&namespace, &name, json!({"spec": {"broadcasting": on}}))
                    .await?
            }
            Change::StageLifecycle {
                namespace,
                name,
                lifecycle,
            } => {
                self.merge::<Stage>(&namespace, &name, json!({"spec": {"lifecycle": lifecycle}}))
                    .await?
            }
            Change::LockRoom {
                namespace,
                name,
                locked,
            } => {
                self.merge::<Room>(&namespace, &name, json!({"spec": {"locked": locked}}))
                    .await?
            }
            Change::WakeRoom {
                namespace,
                name,
                at,
            } => {
                self.merge::<Room>(
                    &namespace,
                    &name,
                    json!({"metadata": {"annotations": {JOIN_REQUESTED: at.to_string()}}}),
                )
                .await?
            }
            Change::PutRoom {
                room,
                passcode,
                create,
            } => self.put_room(*room, passcode, create).await?,
            Change::DeleteRoom { namespace, name } => {
                let api: Api<Room> = Api::namespaced(self.client.clone(), &namespace);
                api.delete(&name, &DeleteParams::default()).await?;
            }
        }
        Ok(())
    }

    /// Creates or edits a dashboard room; its passcode goes into a Secret the Room owns (so it
    /// is deleted with it). Edits are a merge patch of the spec fields a dashboard sets.
    async fn put_room(
        &self,
        room: Room,
        passcode: Option<String>,
        create: bool,
    ) -> Result<(), CatalogError> {
        use serde_json::json;
        let namespace = room.metadata.namespace.clone().unwrap_or_default();
        let name = room.metadata.name.clone().unwrap_or_default();
        let api: Api<Room> = Api::namespaced(self.client.clone(), &namespace);
        let kept = if create {
            let params = PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            };
            api.create(&params, &room).await?
        } else {
            let spec = &room.spec;
            let patch = json!({"spec": {
                "title": spec.title,
                "theme": spec.theme,
                "locked": spec.locked,
                "passcode": spec.passcode,
                "allowedEmailDomains": spec.allowed_email_domains,
                "hosts": spec.hosts,
            }});
            api.patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Merge(&patch),
            )
            .await?
        };
        if let Some(passcode) = passcode {
            let owner = kept.controller_owner_ref(&()).ok_or_else(|| {
                CatalogError::Other("the API server returned a Room without a uid".into())
            })?;
            let secret = json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": passcode_secret(&name),
                    "namespace": namespace,
                    "labels": room.metadata.labels,
                    "ownerReferences": [owner],
                },
                "stringData": {PASSCODE_KEY: passcode},
            });
            let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
            secrets
                .patch(
                    &passcode_secret(&name),
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&secret),
                )
                .await?;
        }
        Ok(())
    }
}

impl Catalog for KubeCatalog {
    fn events(&self) -> Vec<Arc<LiveEvent>> {
        self.events.state()
    }
    fn sessions(&self) -> Vec<Arc<Session>> {
        self.sessions.state()
    }
    fn stages(&self) -> Vec<Arc<Stage>> {
        self.stages.state()
    }
    fn rooms(&self) -> Vec<Arc<Room>> {
        self.rooms.state()
    }

    fn secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, CatalogError>> {
        Box::pin(async move {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
            let secret = api.get_opt(name).await?;
            Ok(secret
                .and_then(|s| s.data)
                .and_then(|d| d.get(key).cloned())
                .map(|v| String::from_utf8_lossy(&v.0).trim_end().to_string()))
        })
    }

    fn change(&self, change: Change) -> BoxFuture<'_, Result<(), CatalogError>> {
        Box::pin(self.apply(change))
    }

    fn ready(&self) -> bool {
        self.filled.load(Ordering::Relaxed)
    }
}
