//! Running the real operator in-process against the shared cluster, as tests and the local
//! cluster do.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::{Api, Client};
use roundtable_operator::{Metrics, OperatorConfig, OperatorOptions, shutdown_on};
use tokio::sync::oneshot;

use crate::error::Result;

/// One operator replica running on the caller's runtime, scoped to one namespace (its leader
/// Lease lives there too), until [`RunningOperator::stop`] or drop.
#[derive(Debug)]
pub struct RunningOperator {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<roundtable_operator::Result<()>>,
    pub metrics: Arc<Metrics>,
}

impl RunningOperator {
    /// Starts a replica named `identity` watching `namespace`.
    pub fn start(client: Client, namespace: &str, identity: &str, config: OperatorConfig) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let metrics = Arc::new(Metrics::default());
        let options = OperatorOptions {
            config,
            identity: identity.into(),
            lease_namespace: namespace.into(),
            lease_name: "roundtable-operator".into(),
            concurrency: 4,
            namespace: Some(namespace.into()),
        };
        let task = tokio::spawn(roundtable_operator::run(
            client,
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
        }
    }

    /// Whether this replica holds the leader Lease.
    pub fn leading(&self) -> bool {
        self.metrics
            .render()
            .lines()
            .any(|l| l.starts_with("roundtable_operator_leader{") && l.ends_with(" 1"))
    }

    /// Stops the replica and waits (up to 10 s) for its controllers to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
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
