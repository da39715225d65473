//! Running the real operator in-process against the shared cluster, as tests and the local
//! cluster do.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use roundtable_operator::{Metrics, OperatorConfig, OperatorOptions, shutdown_on};
use tokio::sync::oneshot;

use crate::error::Result;

/// One operator replica running on the caller's runtime, scoped to one namespace (its leader
/// Lease lives there too), until [`RunningOperator::stop`] or drop.
pub struct RunningOperator {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<roundtable_operator::Result<()>>,
    pub metrics: Arc<Metrics>,
    client: Client,
    namespace: String,
}

impl RunningOperator {
    /// Starts a replica named `identity` watching `namespace`.
    pub fn start(client: Client, namespace: &str, identity: &str, config: OperatorConfig) -> Self {
        Self::start_watching(client, namespace, Some(namespace), identity, config)
    }

    /// An operator with its Lease in `lease_namespace` that watches `watch` (every namespace
    /// when `None`, as the chart installs it by default).
    pub fn start_watching(
        client: Client,
        lease_namespace: &str,
        watch: Option<&str>,
        identity: &str,
        config: OperatorConfig,
    ) -> Self {
        let namespace = lease_namespace;
        let (stop, stopped) = oneshot::channel::<()>();
        let metrics = Arc::new(Metrics::default());
        let options = OperatorOptions {
            config,
            identity: identity.into(),
            lease_namespace: namespace.into(),
            lease_name: "roundtable-operator".into(),
            concurrency: 4,
            namespace: watch.map(Into::into),
        };
        let task = tokio::spawn(roundtable_operator::run(
            client.clone(),
            options,
            metrics.clone(),
            Arc::new(AtomicBool::new(false)),
            shutdown_on(async {
                let _ = stopped.await;
            }),
        ));
        RunningOperator {
            stop: Some(stop),
            task,
            metrics,
            client,
            namespace: namespace.into(),
        }
    }

    /// Whether this replica holds the leader Lease.
    pub fn leading(&self) -> bool {
        self.metrics
            .render()
            .lines()
            .any(|l| l.starts_with("roundtable_operator_leader{") && l.ends_with(" 1"))
    }

    /// Stops the replica and waits (up to 10 s) for its controllers to finish, after checking
    /// that every reconcile failure it logged in its namespace is also a Warning Event on the
    /// object (what `kubectl describe` shows): nothing reaches only the log.
    pub async fn stop(self) {
        let missing = self.silent_failures().await;
        assert!(
            missing.is_empty(),
            "reconcile failures that reached only the operator's log: {missing:#?}"
        );
        self.shutdown().await;
    }

    /// Stops the replica and waits (up to 10 s) for its controllers to finish, checking
    /// nothing: for `./scripts/run-cluster`'s Ctrl-C, which must be quick.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
    }
}

impl std::fmt::Debug for RunningOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningOperator")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl RunningOperator {
    /// The failures logged for this namespace that no Warning Event shows (waits up to 10 s
    /// for Events being recorded).
    pub async fn silent_failures(&self) -> Vec<crate::logs::LoggedFailure> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let failures = crate::logs::failures_in(&self.namespace);
            let recorded = events
                .list(&ListParams::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default();
            let missing: Vec<_> = failures
                .into_iter()
                .filter(|f| {
                    !recorded.iter().any(|e| {
                        e.type_.as_deref() == Some("Warning")
                            && e.reason.as_deref() == Some(f.reason.as_str())
                            && e.involved_object.name.as_deref() == Some(f.name.as_str())
                    })
                })
                .collect();
            if missing.is_empty() || std::time::Instant::now() > deadline {
                return missing;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Creates the Secret `roundtable-join-token` (key `key`) that SFU pods verify join tokens with.
pub async fn create_join_token_secret(client: Client, namespace: &str, key: &str) -> Result<()> {
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "roundtable-join-token"},
        "stringData": {"key": key},
    }))
    .expect("a valid Secret");
    Api::<Secret>::namespaced(client, namespace)
        .create(&PostParams::default(), &secret)
        .await?;
    Ok(())
}
