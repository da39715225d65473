//! Installing the roundtable.dev CRDs into the shared cluster, once per test binary.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use tokio::sync::OnceCell;

use crate::cluster::Cluster;
use crate::error::{Error, Result};

static INSTALLED: OnceCell<()> = OnceCell::const_new();

impl Cluster {
    /// Applies every Roundtable CRD (generated from the Rust types) and waits until each is
    /// Established. Later calls in the same test binary return at once.
    pub async fn install_crds(&self) -> Result<()> {
        INSTALLED
            .get_or_try_init(|| async {
                let crds: Api<CustomResourceDefinition> = Api::all(self.admin_client()?);
                let params = PatchParams::apply("roundtable-e2e").force();
                for crd in roundtable_crds::generate::crds() {
                    let name = crd.metadata.name.clone().unwrap_or_default();
                    crds.patch(&name, &params, &Patch::Apply(&crd)).await?;
                }
                for crd in roundtable_crds::generate::crds() {
                    let name = crd.metadata.name.clone().unwrap_or_default();
                    let established =
                        await_condition(crds.clone(), &name, conditions::is_crd_established());
                    tokio::time::timeout(Duration::from_secs(30), established)
                        .await
                        .map_err(|_| Error::Command {
                            command: format!("wait for CRD {name}"),
                            detail: "not Established within 30s".into(),
                        })?
                        .map_err(|e| Error::Command {
                            command: format!("wait for CRD {name}"),
                            detail: e.to_string(),
                        })?;
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }
}
