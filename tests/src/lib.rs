//! End-to-end test support for Roundtable: a real Kubernetes control plane per test binary.
//!
//! Model: the first test that calls [`Cluster::shared`] starts etcd and kube-apiserver (and,
//! on request, kube-controller-manager and kube-scheduler) on free 127.0.0.1 ports; every
//! other test in the same binary reuses them. Invariants:
//! - Every server listens on loopback only and is torn down when the test process exits,
//!   however it exits (see `process`), together with its scratch directory.
//! - Tests never share a namespace: [`Cluster::namespace`] hands out a fresh one each time.
//! - The cluster holds no `kube::Client`; each test makes its own on its own runtime.
//! - Authentication is by bearer token (admin in `system:masters`, ServiceAccount tokens from
//!   the TokenRequest API); authorization is `Node,RBAC`; TLS is verified against a CA made
//!   for this cluster.
//!
//! ```no_run
//! # async fn example() -> roundtable_e2e::Result<()> {
//! use roundtable_e2e::Cluster;
//! let cluster = Cluster::shared().await?;
//! let ns = cluster.namespace("crd-valid").await?;
//! let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::default_namespaced(ns.client);
//! let out = cluster.kubectl(&["get", "sessions", "-n", &ns.name]).await?.ok()?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod autoscale;
pub mod binaries;
mod cluster;
mod components;
pub mod control_plane_process;
mod crds;
mod error;
pub mod helm;
mod kubeconfig;
mod kubectl;
pub mod local;
pub mod logs;
pub mod node_agent;
pub mod operator;
pub mod operator_process;
mod pki;
mod process;
pub mod real_node;
pub mod rejoin;
pub mod stack;
pub mod turn;
pub mod wait;

pub use binaries::Binaries;
pub use cluster::{Cluster, KEEP_DIR_ENV, TEST_LABEL, TestNamespace};
pub use error::{Error, Result};
pub use kubectl::KubectlOutput;
pub use node_agent::{ImageMap, NodeAgent, NodeSpec};
pub use real_node::RealNode;
pub use wait::{init_test_logs, poll, unix_now, wait_until};
