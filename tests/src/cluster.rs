//! The shared test control plane: one etcd + kube-apiserver per test binary, started on first
//! use and torn down when the binary exits, with a fresh namespace per test.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Event, Namespace, ServiceAccount};
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::{Api, Client};

use crate::binaries::Binaries;
use crate::components::{self, ApiServer, ApiServerFiles, Component, Etcd};
use crate::error::{Error, IoContext, Result};
use crate::kubeconfig::{self, TokenUser};
use crate::pki::Pki;
use crate::process::Janitor;

/// Keep the cluster's directory (logs, etcd data, kubeconfigs) after the test binary exits.
pub const KEEP_DIR_ENV: &str = "ROUNDTABLE_E2E_KEEP";
/// Label put on every namespace made by [`Cluster::namespace`], valued with its prefix.
pub const TEST_LABEL: &str = "e2e.roundtable.dev/test";

const ADMIN: &str = "roundtable-e2e-admin";
const CONTROLLER_MANAGER: &str = "system:kube-controller-manager";
const SCHEDULER: &str = "system:kube-scheduler";

static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// A running control plane, shared by every test in one test binary.
///
/// Holds processes and connection details, never a `kube::Client`: each `#[tokio::test]` has
/// its own runtime, and a client is tied to the runtime that made it. Ask for a fresh client
/// per test instead.
#[derive(Debug)]
pub struct Cluster {
    binaries: Binaries,
    dir: PathBuf,
    pki: Pki,
    admin: TokenUser,
    admin_kubeconfig: PathBuf,
    controller_manager_kubeconfig: PathBuf,
    scheduler_kubeconfig: PathBuf,
    etcd: Etcd,
    apiserver: ApiServer,
    start_time: Duration,
    controller_manager: OnceLock<Result<Component, String>>,
    scheduler: OnceLock<Result<Component, String>>,
    namespaces: AtomicU64,
    _janitor: Option<Janitor>,
}

/// A namespace created for one test, with an admin client defaulting to it.
#[derive(Clone)]
pub struct TestNamespace {
    pub name: String,
    pub client: Client,
}

impl std::fmt::Debug for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNamespace")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TestNamespace {
    /// The Events about the object `name` in this namespace (any kind), oldest first as listed.
    pub async fn events_about(&self, name: &str) -> Result<Vec<Event>> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.name);
        let list = events.list(&ListParams::default()).await?;
        Ok(list
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .collect())
    }
}

impl Cluster {
    /// The control plane of this test binary, started on first call (building the
    /// Kubernetes binaries first if needed). Concurrent callers wait for the same start; a
    /// failed start is reported to every caller without being retried.
    pub async fn shared() -> Result<&'static Cluster> {
        // The start runs on its own thread and runtime: the calling test's runtime ends with
        // that test, and the cluster must outlive it.
        let joined = tokio::task::spawn_blocking(|| {
            SHARED.get_or_init(|| {
                std::thread::spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?;
                    runtime
                        .block_on(Cluster::start())
                        .map_err(|e| e.to_string())
                })
                .join()
                .unwrap_or_else(|_| Err("the cluster start-up thread panicked".into()))
            })
        })
        .await;
        match joined {
            Ok(Ok(cluster)) => Ok(cluster),
            Ok(Err(e)) => Err(Error::StartFailed(e.clone())),
            Err(e) => Err(Error::StartFailed(e.to_string())),
        }
    }

    async fn start() -> Result<Cluster> {
        let begun = Instant::now();
        let binaries = Binaries::locate()?;
        let located = begun.elapsed();

        let dir = make_dir()?;
        let janitor = if std::env::var_os(KEEP_DIR_ENV).is_some() {
            None
        } else {
            Some(Janitor::spawn(&dir)?)
        };
        let pki = Pki::generate(&dir.join("pki"))?;
        let admin = TokenUser::new(ADMIN, &["system:masters"]);
        let controller_manager = TokenUser::new(CONTROLLER_MANAGER, &[]);
        let scheduler = TokenUser::new(SCHEDULER, &[]);
        let token_file = dir.join("tokens.csv");
        let tokens = [&admin, &controller_manager, &scheduler]
            .map(TokenUser::token_file_line)
            .concat();
        std::fs::write(&token_file, tokens)
            .context(|| format!("writing {}", token_file.display()))?;

        let servers_begun = Instant::now();
        let etcd = components::start_etcd(&binaries.etcd, &dir).await?;
        let etcd_time = servers_begun.elapsed();
        let files = ApiServerFiles {
            pki: &pki,
            token_file: &token_file,
            etcd: &etcd.process,
            etcd_url: &etcd.url,
            etcd_prefix: &format!("/registry-{}", std::process::id()),
        };
        let apiserver =
            components::start_apiserver(&binaries.kube_apiserver, &dir, &files, |url| {
                Ok(Client::try_from(client_config(url, &pki, &admin.token)?)?)
            })
            .await?;
        let start_time = servers_begun.elapsed();
        say(format_args!(
            "roundtable-e2e: API server ready at {} in {:.2}s (etcd {:.2}s, kube-apiserver {:.2}s; \
             locating binaries took {:.2}s); files in {}",
            apiserver.url,
            start_time.as_secs_f64(),
            etcd_time.as_secs_f64(),
            (start_time - etcd_time).as_secs_f64(),
            located.as_secs_f64(),
            dir.display(),
        ));

        let write = |name: &str, user: &TokenUser| -> Result<PathBuf> {
            let path = dir.join(name);
            kubeconfig::write(&path, &apiserver.url, &pki.ca_cert, user.name, &user.token)?;
            Ok(path)
        };
        Ok(Cluster {
            admin_kubeconfig: write("admin.kubeconfig", &admin)?,
            controller_manager_kubeconfig: write(
                "controller-manager.kubeconfig",
                &controller_manager,
            )?,
            scheduler_kubeconfig: write("scheduler.kubeconfig", &scheduler)?,
            binaries,
            dir,
            pki,
            admin,
            etcd,
            apiserver,
            start_time,
            controller_manager: OnceLock::new(),
            scheduler: OnceLock::new(),
            namespaces: AtomicU64::new(0),
            _janitor: janitor,
        })
    }

    /// `https://127.0.0.1:<port>` of the API server.
    pub fn url(&self) -> &str {
        &self.apiserver.url
    }

    /// How long etcd plus kube-apiserver took to become ready (excluding locating binaries).
    pub fn start_time(&self) -> Duration {
        self.start_time
    }

    pub fn binaries(&self) -> &Binaries {
        &self.binaries
    }

    /// The cluster's scratch directory: logs, etcd data, kubeconfigs. Deleted at exit unless
    /// `ROUNDTABLE_E2E_KEEP` is set.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A kubeconfig for the admin user (group `system:masters`), e.g. for `KUBECONFIG=`.
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// The CA certificate (PEM) that signed the API server's serving certificate.
    pub fn ca_cert(&self) -> &Path {
        &self.pki.ca_cert
    }

    pub(crate) fn pki(&self) -> &Pki {
        &self.pki
    }

    /// Client configuration for the admin user (group `system:masters`).
    pub fn admin_config(&self) -> Result<kube::Config> {
        client_config(self.url(), &self.pki, &self.admin.token)
    }

    /// A fresh admin client. Call it from within the test's runtime.
    pub fn admin_client(&self) -> Result<Client> {
        Ok(Client::try_from(self.admin_config()?)?)
    }

    /// A client authenticated as the admin but impersonating `user` in `groups`, for
    /// authorization tests about users that are not service accounts.
    pub fn impersonating_client(&self, user: &str, groups: &[&str]) -> Result<Client> {
        let mut config = self.admin_config()?;
        config.auth_info.impersonate = Some(user.to_owned());
        config.auth_info.impersonate_groups = Some(groups.iter().map(|g| g.to_string()).collect());
        Ok(Client::try_from(config)?)
    }

    /// Fails with the log tail of any server of this cluster that has exited.
    pub fn check_running(&self) -> Result<()> {
        let started = [&self.controller_manager, &self.scheduler]
            .into_iter()
            .filter_map(|slot| slot.get().and_then(|c| c.as_ref().ok()))
            .map(|c| &c.process);
        for process in [&self.etcd.process, &self.apiserver.process]
            .into_iter()
            .chain(started)
        {
            if let Some(status) = process.exit_status() {
                return Err(Error::Exited {
                    what: process.name,
                    status: status.to_string(),
                    log: process.log.clone(),
                    log_tail: process.log_tail(40),
                });
            }
        }
        Ok(())
    }

    /// Creates a namespace named `<prefix>-<n>`, unique within this cluster, labelled
    /// `e2e.roundtable.dev/test=<prefix>`, and returns it with an admin client defaulting to it.
    /// `prefix` should be a short DNS label such as `"crd-valid"`.
    pub async fn namespace(&self, prefix: &str) -> Result<TestNamespace> {
        self.check_running()?;
        let n = self.namespaces.fetch_add(1, Ordering::Relaxed) + 1;
        let prefix = dns_label_prefix(prefix);
        let name = format!("{prefix}-{n}");
        let admin = self.admin_client()?;
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(TEST_LABEL.to_owned(), prefix)].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(admin.clone())
            .create(&PostParams::default(), &namespace)
            .await?;
        // A real cluster's service-account controller makes the `default` ServiceAccount in
        // every namespace, and pod admission requires it; make it here so tests need not run
        // the controller-manager just for that.
        let default_account = ServiceAccount {
            metadata: ObjectMeta {
                name: Some("default".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        match Api::<ServiceAccount>::namespaced(admin, &name)
            .create(&PostParams::default(), &default_account)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        let mut config = self.admin_config()?;
        config.default_namespace = name.clone();
        Ok(TestNamespace {
            name,
            client: Client::try_from(config)?,
        })
    }

    /// A client authenticated as ServiceAccount `namespace/name` (created if missing) with a
    /// one-hour token from the TokenRequest API, defaulting to `namespace`. It has only the
    /// permissions RBAC grants that ServiceAccount.
    pub async fn service_account_client(&self, namespace: &str, name: &str) -> Result<Client> {
        let token = self.service_account_token(namespace, name).await?;
        let mut config = client_config(self.url(), &self.pki, &token)?;
        config.default_namespace = namespace.to_owned();
        Ok(Client::try_from(config)?)
    }

    /// A one-hour token of ServiceAccount `namespace/name` (created if missing) from the
    /// TokenRequest API.
    pub async fn service_account_token(&self, namespace: &str, name: &str) -> Result<String> {
        let accounts = Api::<ServiceAccount>::namespaced(self.admin_client()?, namespace);
        let account = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..Default::default()
            },
            ..Default::default()
        };
        match accounts.create(&PostParams::default(), &account).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: Some(vec![components::SERVICE_ACCOUNT_ISSUER.to_owned()]),
                expiration_seconds: Some(3600),
                ..Default::default()
            }),
            ..Default::default()
        };
        let issued = accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await?;
        let token = issued.status.and_then(|s| s.token).unwrap_or_default();
        if token.is_empty() {
            return Err(Error::Serialize(format!(
                "TokenRequest for {namespace}/{name} returned no token"
            )));
        }
        Ok(token)
    }

    /// Starts kube-controller-manager (garbage collector, job, namespace, service-account and
    /// token controllers, ...) once for this binary, and waits until it is healthy. Its
    /// controllers use their own service-account credentials, as in a real cluster.
    pub async fn start_controller_manager(&'static self) -> Result<()> {
        let extra = [
            format!("--root-ca-file={}", self.pki.ca_cert.display()),
            format!(
                "--service-account-private-key-file={}",
                self.pki.service_account_key.display()
            ),
            format!("--cluster-signing-cert-file={}", self.pki.ca_cert.display()),
            format!("--cluster-signing-key-file={}", self.pki.ca_key.display()),
            "--use-service-account-credentials=true".into(),
            "--controllers=*".into(),
        ];
        self.start_once(
            &self.controller_manager,
            "kube-controller-manager",
            &self.binaries.kube_controller_manager,
            &self.controller_manager_kubeconfig,
            &extra,
        )
        .await
    }

    /// Starts kube-scheduler once for this binary, and waits until it is healthy.
    pub async fn start_scheduler(&'static self) -> Result<()> {
        self.start_once(
            &self.scheduler,
            "kube-scheduler",
            &self.binaries.kube_scheduler,
            &self.scheduler_kubeconfig,
            &[],
        )
        .await
    }

    async fn start_once(
        &'static self,
        slot: &'static OnceLock<Result<Component, String>>,
        what: &'static str,
        bin: &'static Path,
        kubeconfig: &'static Path,
        extra: &[String],
    ) -> Result<()> {
        let extra = extra.to_vec();
        let dir = self.dir.clone();
        let apiserver = &self.apiserver.process;
        let joined = tokio::task::spawn_blocking(move || {
            slot.get_or_init(|| {
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?;
                    let begun = Instant::now();
                    let component = runtime
                        .block_on(components::start_component(
                            what, bin, &dir, kubeconfig, &extra, apiserver,
                        ))
                        .map_err(|e| e.to_string())?;
                    say(format_args!(
                        "roundtable-e2e: {what} healthy in {:.2}s",
                        begun.elapsed().as_secs_f64()
                    ));
                    Ok(component)
                })
                .join()
                .unwrap_or_else(|_| Err(format!("starting {what} panicked")))
            })
            .as_ref()
            .map(|_| ())
            .map_err(Clone::clone)
        })
        .await;
        match joined {
            Ok(result) => result.map_err(Error::StartFailed),
            Err(e) => Err(Error::StartFailed(e.to_string())),
        }
    }
}

/// Writes a line to the real stderr. `eprintln!` would be captured by the test harness and
/// shown only for failing tests, but start-up times should always be visible.
pub(crate) fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Client configuration for a bearer-token user of the API server at `url`.
fn client_config(url: &str, pki: &Pki, token: &str) -> Result<kube::Config> {
    let uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| Error::Serialize(format!("{url}: {e}")))?;
    let mut config = kube::Config::new(uri);
    config.root_cert = Some(vec![pki.ca_der.clone()]);
    config.auth_info = kubeconfig::bearer(token)?;
    Ok(config)
}

/// Lowercase alphanumerics and dashes, at most 40 characters, so `<prefix>-<n>` is a valid
/// namespace name.
fn dns_label_prefix(prefix: &str) -> String {
    let cleaned: String = prefix
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    let trimmed = cleaned.trim_matches('-');
    if trimmed.is_empty() {
        "test".into()
    } else {
        trimmed.into()
    }
}

/// `$TMPDIR/roundtable-e2e-<pid>-<nanos>`, created fresh.
fn make_dir() -> Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("roundtable-e2e-{}-{nanos}", std::process::id()));
    std::fs::create_dir(&dir).context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::dns_label_prefix;

    #[test]
    fn namespace_prefixes_become_dns_labels() {
        assert_eq!(dns_label_prefix("crd-valid"), "crd-valid");
        assert_eq!(dns_label_prefix("CRD_Valid!"), "crd-valid");
        assert_eq!(dns_label_prefix("--"), "test");
        assert_eq!(dns_label_prefix(&"x".repeat(80)).len(), 40);
    }
}
