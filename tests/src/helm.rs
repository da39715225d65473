//! The Helm chart against the shared cluster: the helm CLI (built once from its Go module by
//! `tests/helm/build.sh`, cached outside the repository) run as the admin user, and
//! kubeconfigs that authenticate as a ServiceAccount, for running the chart's workloads with
//! exactly the credentials the chart gives them.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::kubectl::{KubectlOutput, command_line, run_captured};

/// Set to a helm executable to skip `tests/helm/build.sh`.
pub const HELM_ENV: &str = "ROUNDTABLE_HELM";

const BUILD_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/helm/build.sh");
const GATEWAY_API_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/gateway-api/fetch.sh");

static HELM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
static GATEWAY_API: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The chart in this repository, `charts/roundtable`.
pub fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/roundtable")
}

/// The helm executable, built on first use (a couple of minutes once; afterwards the build
/// script returns at once).
pub fn helm_binary() -> Result<PathBuf> {
    HELM.get_or_init(|| {
        if let Some(path) = std::env::var_os(HELM_ENV) {
            return Ok(PathBuf::from(path));
        }
        last_line_of(BUILD_SCRIPT)
    })
    .clone()
    .map_err(|detail| Error::MissingBinary {
        what: "helm",
        detail,
    })
}

/// The folder of the Gateway API's standard-channel CRDs (`sigs.k8s.io/gateway-api`, fetched
/// once through the Go module proxy and checked against its pinned checksum by
/// `tests/gateway-api/fetch.sh`), for validating the chart's HTTPRoute.
pub fn gateway_api_crds() -> Result<PathBuf> {
    GATEWAY_API
        .get_or_init(|| last_line_of(GATEWAY_API_SCRIPT))
        .clone()
        .map_err(|detail| Error::MissingBinary {
            what: "Gateway API CRDs",
            detail,
        })
}

/// Runs `script` and returns the path it prints on its last line.
fn last_line_of(script: &str) -> Result<PathBuf, String> {
    let output = std::process::Command::new("bash")
        .arg(script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running {script}: {e}"))?;
    if !output.status.success() {
        return Err(format!("{script} failed with {}", output.status));
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| PathBuf::from(l.trim()))
        .ok_or_else(|| format!("{script} printed no path"))
}

/// The image `roundtable` on the test nodes: sets the ServiceAccount credentials the kubelet
/// would mount as a token (a kubeconfig per component: `operator` or `api`, the container's
/// first argument), then runs `roundtable`. Written as a script so one image serves both
/// containers, as the real image does. A pod may start before the test has written the
/// kubeconfigs (they need the ServiceAccounts the install makes): the script waits for its
/// file, as a kubelet waits for the token it mounts.
pub fn roundtable_entrypoint(
    path: &Path,
    roundtable: &Path,
    operator: &Path,
    api: &Path,
) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let text = format!(
        r#"#!/bin/sh
case "$1" in
  operator) export KUBECONFIG='{operator}' ;;
  api) export KUBECONFIG='{api}' ;;
esac
if [ -n "$KUBECONFIG" ]; then
  waited=0
  while [ ! -s "$KUBECONFIG" ] && [ "$waited" -lt 600 ]; do sleep 0.1; waited=$((waited + 1)); done
fi
exec '{roundtable}' "$@"
"#,
        operator = operator.display(),
        api = api.display(),
        roundtable = roundtable.display(),
    );
    let io = |e: std::io::Error| Error::Io {
        context: format!("writing {}", path.display()),
        source: e,
    };
    std::fs::write(path, text).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
    Ok(path.to_path_buf())
}

/// An HS256 registration token, as an external registration system would sign it.
pub fn registration_token(key: &[u8], email: &str, name: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({
            "sub": email,
            "name": name,
            "tickets": [],
            "exp": crate::unix_now() + 600,
        }),
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .expect("an HS256 token signs")
}

/// Runs `helm <args>` without a cluster (lint, template), with Helm's own directories kept
/// under `scratch`. A non-zero exit is not an error here; see [`KubectlOutput::ok`].
pub async fn helm_offline<S: AsRef<OsStr>>(scratch: &Path, args: &[S]) -> Result<KubectlOutput> {
    run_helm(scratch, None, args, None).await
}

impl Cluster {
    /// Runs `helm <args>` as the admin user of this cluster, with Helm's own directories kept
    /// in the cluster's scratch directory. A non-zero exit is not an error here.
    pub async fn helm<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<KubectlOutput> {
        run_helm(self.dir(), Some(self.admin_kubeconfig()), args, None).await
    }

    /// Like [`Cluster::helm`], feeding `stdin` (for `--values -`).
    pub async fn helm_with_stdin<S: AsRef<OsStr>>(
        &self,
        args: &[S],
        stdin: &str,
    ) -> Result<KubectlOutput> {
        run_helm(self.dir(), Some(self.admin_kubeconfig()), args, Some(stdin)).await
    }

    /// `helm install <release> charts/roundtable -n <namespace> --values -` with `values`.
    pub async fn helm_install(
        &self,
        release: &str,
        namespace: &str,
        values: &str,
    ) -> Result<KubectlOutput> {
        let chart = chart_dir().to_string_lossy().into_owned();
        self.helm_with_stdin(
            &["install", release, &chart, "-n", namespace, "--values", "-"],
            values,
        )
        .await
    }

    /// Creates the Secret `registration` holding an external registration system's HS256 key
    /// (what `api.registration.keySecret: registration` mounts) and returns the key.
    pub async fn create_registration_secret(
        &self,
        client: kube::Client,
        namespace: &str,
    ) -> Result<String> {
        use k8s_openapi::api::core::v1::Secret;
        let key = format!("registration-key-{namespace}");
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("registration".into()),
                ..Default::default()
            },
            string_data: Some([("key".to_string(), key.clone())].into()),
            ..Default::default()
        };
        kube::Api::<Secret>::namespaced(client, namespace)
            .create(&Default::default(), &secret)
            .await?;
        Ok(key)
    }

    /// A TLS serving certificate for `dns_name`, signed by this cluster's CA (whose
    /// certificate is [`Cluster::ca_cert`]), as PEM files `(cert, key)` in `dir`: what a
    /// user's certificate authority would issue for the public origin.
    pub fn serving_cert(&self, dir: &Path, dns_name: &str) -> Result<(PathBuf, PathBuf)> {
        self.pki().serving_cert(dir, dns_name)
    }

    /// A `kubernetes.io/tls` Secret `name` in `namespace` holding a [`Cluster::serving_cert`]
    /// for `dns_name` (files in `dir`), as a user stores the certificate a chart value names.
    pub async fn tls_secret(
        &self,
        namespace: &str,
        name: &str,
        dns_name: &str,
        dir: &Path,
    ) -> Result<()> {
        let (cert, key) = self.serving_cert(dir, dns_name)?;
        let (cert, key) = (cert.to_string_lossy(), key.to_string_lossy());
        self.kubectl(&[
            "create", "secret", "tls", name, "-n", namespace, "--cert", &cert, "--key", &key,
        ])
        .await?
        .ok()
        .map(|_| ())
    }

    /// Writes a kubeconfig to `path` that authenticates as ServiceAccount `namespace/name`
    /// (which must exist) with a one-hour token from the TokenRequest API: what a pod of that
    /// ServiceAccount gets mounted, for a process that stands in for the pod.
    pub async fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
        path: &Path,
    ) -> Result<()> {
        let token = self.service_account_token(namespace, name).await?;
        crate::kubeconfig::write(path, self.url(), self.ca_cert(), name, &token)
    }
}

async fn run_helm<S: AsRef<OsStr>>(
    scratch: &Path,
    kubeconfig: Option<&Path>,
    args: &[S],
    stdin: Option<&str>,
) -> Result<KubectlOutput> {
    let home = scratch.join("helm");
    let mut cmd = tokio::process::Command::new(helm_binary()?);
    cmd.args(args)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("KUBECONFIG");
    if let Some(kubeconfig) = kubeconfig {
        cmd.env("KUBECONFIG", kubeconfig);
    }
    run_captured(cmd, command_line("helm", args), stdin).await
}

/// POSTs `url` as `token` until it succeeds, for up to 30 s (the control plane's watch may not
/// have seen a new session yet: 404 until it has): the answer's body, or the last answer.
pub async fn post_until_ok(
    client: &reqwest::Client,
    url: &str,
    token: &str,
) -> Result<String, String> {
    let mut last = String::new();
    crate::poll(Duration::from_secs(30), async || {
        let response = client.post(url).bearer_auth(token).send().await.ok()?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        last = format!("{status} {body}");
        status.is_success().then_some(body)
    })
    .await
    .ok_or(last)
}
