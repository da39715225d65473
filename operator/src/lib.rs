//! The Roundtable operator: sessions, stages and rooms become scheduled, right-sized SFU pods
//! with live status.
//!
//! - [`plan`] is pure: from a room's spec, what was observed and `now`, it decides the pod,
//!   the phase, the conditions and when to look again. It is unit-tested with a pinned clock.
//! - [`controller`] is the thin I/O around it: kube-runtime controllers that observe, call the
//!   plan and apply it (server-side apply under one field manager, [`FIELD_MANAGER`]).
//! - The control plane (HTTP API, web client) is the `roundtable-control-plane` crate and the
//!   `roundtable` command with its local all-in-one mode the `roundtable` crate; this crate
//!   knows neither (ARCHITECTURE.md).
//! - [`leader`] elects one active replica through a Lease; [`metrics`] and [`admin`] serve
//!   Prometheus metrics and health on the admin port.
//!
//! Invariants: a room has at most one origin pod, named after it, so neither a restart nor a
//! second replica can duplicate it; the operator never reacts to its own status writes.

#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod controller;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod plan;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use kube::Client;
use tracing::info;

pub use config::OperatorConfig;
pub use error::{Error, Result};
pub use metrics::Metrics;

/// The field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "roundtable-operator";

/// A future that resolves when the process should stop; cloned into every task.
pub type Shutdown = Shared<BoxFuture<'static, ()>>;

/// Makes a [`Shutdown`] from any future.
pub fn shutdown_on(signal: impl std::future::Future<Output = ()> + Send + 'static) -> Shutdown {
    signal.boxed().shared()
}

/// How one operator replica runs.
#[derive(Debug, Clone)]
pub struct OperatorOptions {
    pub config: OperatorConfig,
    /// This replica's name in the leader Lease (the pod name in a cluster).
    pub identity: String,
    /// Namespace and name of the leader Lease.
    pub lease_namespace: String,
    pub lease_name: String,
    /// Reconciles running at once per controller.
    pub concurrency: u16,
    /// Watch only this namespace (None: every namespace).
    pub namespace: Option<String>,
}

/// Runs one operator replica: waits to lead, then runs the controllers while it holds the
/// Lease. Returns when `shutdown` resolves, or with an error if leadership is lost (the
/// process should exit so that it restarts as a follower).
pub async fn run(
    client: Client,
    options: OperatorOptions,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    shutdown: Shutdown,
) -> Result<()> {
    let elector = leader::Elector::new(
        client.clone(),
        &options.lease_namespace,
        &options.lease_name,
        &options.identity,
    );
    tokio::select! {
        acquired = elector.acquire(&ready) => acquired?,
        _ = shutdown.clone() => return Ok(()),
    }
    metrics.leader(elector.identity(), true);
    let result = tokio::select! {
        _ = controller::run(client, options.config, metrics.clone(), options.namespace, shutdown, options.concurrency) => {
            info!("controllers stopped");
            Ok(())
        }
        lost = elector.keep() => Err(lost),
    };
    metrics.leader(elector.identity(), false);
    result
}
