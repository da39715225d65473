//! A real node for the shared test cluster: the kubelet built from the same Kubernetes module
//! as the API server (`tests/k8s/build.sh`), Debian's containerd and runc, and Debian's CNI
//! plugins (bridge, host-local, portmap, loopback). Pods run in real containers from OCI
//! images imported into containerd; the kubelet probes them, mounts their volumes and
//! ServiceAccount tokens, and forwards their hostPorts through portmap. kube-proxy (built
//! from the same module) programs iptables for Services: NodePorts on the node's address and
//! load balancer addresses, as on a cloud's node.
//!
//! Model and invariants:
//! - One node per test process, named `roundtable-e2e-<pid>`, with everything of its own: a
//!   directory in the cluster's, a containerd socket, a cgroup root in every hierarchy, a
//!   bridge and a /24 pod subnet, kubelet ports. Two test runs on one machine do not meet,
//!   except for kube-proxy, whose iptables chains (`KUBE-SERVICES`, ...) are the machine's:
//!   the teardown holds a machine-wide lock from before kube-proxy starts until its rules are
//!   gone, so a second real node on the machine waits for the first.
//! - The bridge's address is the node's `InternalIP`, so hostPorts are reached at
//!   `status.hostIP` from the test process and from pods, without depending on the machine's
//!   own network.
//! - Pods reach the API server as in a cluster, at the `kubernetes` Service's address
//!   (10.0.0.1:443, which the serving certificate names): one NAT rule on the bridge stands in
//!   for kube-proxy's rule for that Service (the API server listens on loopback only, which
//!   is no address an EndpointSlice may name).
//! - containerd and the kubelet stop with the test process (the control plane's watchdogs);
//!   a teardown script, held by the same kind of lifeline, then kills what they left running
//!   (shims, containers), unmounts, and deletes the bridge, the NAT rules and the cgroups.
//! - The machine's capabilities are checked first ([`missing_capability`]); a test skips
//!   (loudly) only for those.
//!
//! Configuration that this kind of machine needs is in `config` and the README's "A real node
//! in the test bed".

pub mod config;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::Api;

use crate::cluster::{Cluster, say};
use crate::error::{Error, IoContext, Result};
use crate::process::{Supervised, free_loopback_port};
use config::Layout;

/// A file listing the images to import, one `<reference> <oci-archive>` per line, as
/// `images/build.sh` prints them. `scripts/test-all` sets it after building the images.
pub const IMAGES_ENV: &str = "ROUNDTABLE_REAL_NODE_IMAGES";
/// Debian's CNI plugins.
const CNI_BIN_DIR: &str = "/usr/lib/cni";
const PAUSE_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/k8s/pause.sh");
const TEARDOWN: &str = include_str!("teardown.sh");
/// The `kubernetes` Service's ClusterIP in the test API server's service range.
const KUBERNETES_SERVICE_IP: &str = "10.0.0.1";
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(120);
/// One kube-proxy per machine at a time (see the module docs).
const KUBE_PROXY_LOCK: &str = "roundtable-e2e-kube-proxy.lock";

/// A running kubelet and containerd registered as a Node of the shared cluster.
#[derive(Debug)]
pub struct RealNode {
    layout: Layout,
    kubelet: Supervised,
    containerd: Supervised,
    kube_proxy: Supervised,
    images: Vec<String>,
    /// Held for its lifeline; see the module docs.
    _teardown: Child,
    start_time: Duration,
    import_time: Duration,
}

/// What this machine lacks to run a real node, or `None`. Checked before anything is started.
pub fn missing_capability() -> Option<String> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
        })
        .unwrap_or_default();
    if uid != "0" {
        return Some(format!(
            "not root (effective uid {uid}): the kubelet, containerd and CNI need root"
        ));
    }
    for program in [
        "containerd",
        "ctr",
        "runc",
        "iptables",
        "iptables-save",
        "ip",
        "buildah",
        "gcc",
        "flock",
    ] {
        if !on_path(program) {
            return Some(format!(
                "no `{program}` on PATH (scripts/install-deps installs the Debian packages)"
            ));
        }
    }
    for plugin in ["bridge", "host-local", "portmap", "loopback"] {
        if !Path::new(CNI_BIN_DIR).join(plugin).exists() {
            return Some(format!(
                "no CNI plugin {CNI_BIN_DIR}/{plugin} (Debian's containernetworking-plugins)"
            ));
        }
    }
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !filesystems.contains("overlay") {
        return Some("the kernel has no overlay filesystem (containerd's snapshotter)".into());
    }
    if cgroup_hierarchies().is_empty() && !Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        return Some("no cgroup hierarchies mounted under /sys/fs/cgroup".into());
    }
    for controller in ["cpu", "cpuacct", "cpuset", "memory", "pids"] {
        let v1 = Path::new("/sys/fs/cgroup").join(controller);
        let v2 = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
        if !v1.exists()
            && !v2
                .split_whitespace()
                .any(|c| c == controller || controller == "cpuacct")
        {
            return Some(format!("the cgroup controller {controller} is not mounted"));
        }
    }
    None
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// Mounted cgroup v1 hierarchies (`/sys/fs/cgroup/<name>`), without the unified one.
fn cgroup_hierarchies() -> Vec<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(2) == Some(&"cgroup")).then(|| PathBuf::from(fields[1]))
        })
        .collect()
}

/// The images listed in the file named by [`IMAGES_ENV`]: `(reference, archive)`.
pub fn images_from_env() -> Option<Result<Vec<(String, PathBuf)>>> {
    let path = std::env::var_os(IMAGES_ENV)?;
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            return Some(Err(Error::Io {
                context: format!("reading {} ({IMAGES_ENV})", Path::new(&path).display()),
                source: e,
            }));
        }
    };
    Some(Ok(parse_image_list(&text)))
}

fn parse_image_list(text: &str) -> Vec<(String, PathBuf)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            Some((fields.next()?.to_owned(), PathBuf::from(fields.next()?)))
        })
        .collect()
}

impl RealNode {
    /// Starts containerd, imports the sandbox image and `images` (OCI archives), and starts a
    /// kubelet that registers with the cluster as `roundtable-e2e-<pid>` with `labels`.
    /// Returns once the Node is Ready. The cluster's scheduler must run for pods to land here.
    pub async fn start(
        cluster: &'static Cluster,
        images: &[(String, PathBuf)],
        labels: &[(&str, &str)],
    ) -> Result<RealNode> {
        if let Some(missing) = missing_capability() {
            return Err(Error::StartFailed(format!(
                "this machine cannot run a real node: {missing}"
            )));
        }
        let begun = Instant::now();
        let binaries = cluster.binaries();
        let beside_apiserver = |what: &'static str| {
            binaries
                .kube_apiserver
                .parent()
                .map(|dir| dir.join(what))
                .filter(|p| p.is_file())
                .ok_or_else(|| Error::MissingBinary {
                    what,
                    detail: "not beside kube-apiserver; tests/k8s/build.sh builds it".into(),
                })
        };
        let kubelet_bin = beside_apiserver("kubelet")?;
        let kube_proxy_bin = beside_apiserver("kube-proxy")?;
        let (sandbox_image, sandbox_archive) = run_pause_script()?;

        let dir = cluster.dir().join("real-node");
        let ports = (free_loopback_port()?, free_loopback_port()?);
        let layout = Layout::new(&dir, std::process::id(), ports, &sandbox_image);
        for sub in [
            layout.containerd_dir(),
            layout.cni_conf_dir(),
            layout.kubelet_dir(),
            layout.kube_proxy_dir(),
            layout.pod_logs_dir(),
        ] {
            std::fs::create_dir_all(&sub).context(|| format!("creating {}", sub.display()))?;
        }
        let write = |path: PathBuf, text: String| {
            std::fs::write(&path, text).context(|| format!("writing {}", path.display()))?;
            Ok::<_, Error>(path)
        };
        let containerd_config = write(
            layout.containerd_dir().join("config.toml"),
            config::containerd_toml(&layout, Path::new(CNI_BIN_DIR)),
        )?;
        write(
            layout.cni_conf_dir().join("10-roundtable-e2e.conflist"),
            config::cni_conflist(&layout),
        )?;
        let kubelet_config = write(
            layout.kubelet_dir().join("config.yaml"),
            config::kubelet_yaml(&layout),
        )?;

        // The teardown's lifeline goes first, so that whatever fails below is cleaned up.
        let teardown = spawn_teardown(&layout, &kube_proxy_bin).await?;
        make_cgroup_root(&layout)?;
        make_bridge(&layout, cluster.url())?;

        let containerd = Supervised::spawn(
            "containerd",
            Path::new("containerd"),
            [format!("--config={}", containerd_config.display())],
            &dir.join("containerd.log"),
            None,
        )?;
        containerd
            .wait_ready(
                Duration::from_secs(30),
                "containerd successfully booted",
                || async {
                    ctr(&layout, &["version"])
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                },
            )
            .await
            .map_err(not_started)?;

        let imported = Instant::now();
        let mut names = vec![sandbox_image.clone()];
        ctr(
            &layout,
            &["images", "import", &sandbox_archive.to_string_lossy()],
        )?;
        for (reference, archive) in images {
            ctr(&layout, &["images", "import", &archive.to_string_lossy()])?;
            names.push(reference.clone());
        }
        let listed = ctr(&layout, &["images", "list", "--quiet"])?;
        for name in &names {
            if !listed.lines().any(|l| l == name) {
                return Err(Error::Command {
                    command: "ctr images import".into(),
                    detail: format!("{name} is not among the imported images:\n{listed}"),
                });
            }
        }
        let import_time = imported.elapsed();

        let (cert, key) = cluster.pki().client_cert(
            &layout.kubelet_dir(),
            "kubelet-client",
            &format!("system:node:{}", layout.name),
            "system:nodes",
        )?;
        let kubeconfig = layout.kubelet_dir().join("kubelet.kubeconfig");
        crate::kubeconfig::write_client_cert(
            &kubeconfig,
            cluster.url(),
            cluster.ca_cert(),
            &layout.name,
            (&cert, &key),
        )?;
        let node_labels = labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut args = vec![
            format!("--config={}", kubelet_config.display()),
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--root-dir={}", layout.kubelet_dir().join("root").display()),
            format!("--cert-dir={}", layout.kubelet_dir().join("pki").display()),
            format!("--hostname-override={}", layout.name),
            format!("--node-ip={}", layout.node_ip()),
        ];
        if !node_labels.is_empty() {
            args.push(format!("--node-labels={node_labels}"));
        }
        let kubelet = Supervised::spawn(
            "kubelet",
            &kubelet_bin,
            &args,
            &dir.join("kubelet.log"),
            Some(&containerd),
        )?;
        let nodes: Api<Node> = Api::all(cluster.admin_client()?);
        let name = layout.name.clone();
        kubelet
            .wait_ready(NODE_READY_TIMEOUT, "Starting kubelet", || async {
                let node = nodes.get_opt(&name).await.map_err(|e| e.to_string())?;
                let ready = node
                    .as_ref()
                    .and_then(|n| n.status.as_ref())
                    .and_then(|s| s.conditions.as_ref())
                    .into_iter()
                    .flatten()
                    .find(|c| c.type_ == "Ready");
                match ready {
                    Some(c) if c.status == "True" => Ok(()),
                    Some(c) => Err(format!(
                        "Node {name} Ready={}: {}",
                        c.status,
                        c.message.clone().unwrap_or_default()
                    )),
                    None => Err(format!("Node {name} not registered yet")),
                }
            })
            .await
            .map_err(not_started)?;
        let kube_proxy = start_kube_proxy(cluster, &layout, &kube_proxy_bin, &kubelet).await?;
        let start_time = begun.elapsed();
        say(format_args!(
            "roundtable-e2e: real node {} Ready in {:.2}s (image import {:.2}s); files in {}",
            layout.name,
            start_time.as_secs_f64(),
            import_time.as_secs_f64(),
            dir.display()
        ));
        Ok(RealNode {
            layout,
            kubelet,
            containerd,
            kube_proxy,
            images: names,
            _teardown: teardown,
            start_time,
            import_time,
        })
    }

    /// The Node's name.
    pub fn name(&self) -> &str {
        &self.layout.name
    }

    /// The Node's `InternalIP`, where hostPorts are served.
    pub fn ip(&self) -> Ipv4Addr {
        self.layout.node_ip()
    }

    /// From the start of [`RealNode::start`] to the Node being Ready.
    pub fn start_time(&self) -> Duration {
        self.start_time
    }

    /// How long importing the images into containerd took.
    pub fn import_time(&self) -> Duration {
        self.import_time
    }

    /// References of the images in containerd (the sandbox image first).
    pub fn images(&self) -> &[String] {
        &self.images
    }

    /// An address of this node outside its pod subnet, where nothing listens: what a cloud
    /// load balancer would announce. [`RealNode::add_load_balancer_address`] puts it on the
    /// node.
    pub fn load_balancer_ip(&self) -> Ipv4Addr {
        self.layout.load_balancer_ip()
    }

    /// Puts [`RealNode::load_balancer_ip`] on the node's bridge (it goes with the bridge), as a
    /// cloud's network delivers a load balancer's traffic to the node.
    pub fn add_load_balancer_address(&self) -> Result<Ipv4Addr> {
        let ip = self.load_balancer_ip();
        let address = format!("{ip}/32");
        let step = ["ip", "addr", "add", &address, "dev", &self.layout.bridge];
        let mut cmd = Command::new(step[0]);
        cmd.args(&step[1..]);
        run(cmd, &step.join(" "))?;
        Ok(ip)
    }

    /// The node's directory (logs of containerd and the kubelet, configuration, pod logs).
    pub fn dir(&self) -> &Path {
        &self.layout.dir
    }

    /// Every log the kubelet wrote for `container` of pod `namespace/pod`, oldest restart
    /// first; empty if it never started.
    pub fn log(&self, namespace: &str, pod: &str, container: &str) -> String {
        let prefix = format!("{namespace}_{pod}_");
        let Ok(entries) = std::fs::read_dir(self.layout.pod_logs_dir()) else {
            return String::new();
        };
        let mut out = String::new();
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().starts_with(&prefix) {
                continue;
            }
            let mut files: Vec<(u32, PathBuf)> = std::fs::read_dir(entry.path().join(container))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|f| {
                    let name = f.file_name().to_string_lossy().into_owned();
                    Some((name.strip_suffix(".log")?.parse().ok()?, f.path()))
                })
                .collect();
            files.sort();
            for (_, file) in files {
                out.push_str(&std::fs::read_to_string(file).unwrap_or_default());
            }
        }
        out
    }

    /// The last lines of the kubelet's, containerd's and kube-proxy's logs, for failure
    /// messages.
    pub fn log_tails(&self, lines: usize) -> String {
        [&self.kubelet, &self.containerd, &self.kube_proxy]
            .iter()
            .map(|p| {
                format!(
                    "--- {} ({}) ---\n{}",
                    p.name,
                    p.log.display(),
                    p.log_tail(lines)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Fails with the log tail of the kubelet, containerd or kube-proxy if one has exited.
    pub fn check_running(&self) -> Result<()> {
        for process in [&self.kubelet, &self.containerd, &self.kube_proxy] {
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

    /// Runs `ctr --namespace k8s.io <args>` against this node's containerd.
    pub fn ctr(&self, args: &[&str]) -> Result<String> {
        ctr(&self.layout, args)
    }
}

fn not_started(e: crate::process::NotStarted) -> Error {
    match e {
        crate::process::NotStarted::Failed(e) => e,
        crate::process::NotStarted::PortInUse => Error::StartFailed("a port was taken".into()),
    }
}

fn ctr(layout: &Layout, args: &[&str]) -> Result<String> {
    let socket = layout.containerd_socket();
    let mut cmd = Command::new("ctr");
    cmd.arg("--address")
        .arg(&socket)
        .args(["--namespace", "k8s.io"])
        .args(args);
    run(cmd, &format!("ctr {}", args.join(" ")))
}

fn run(mut cmd: Command, what: &str) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .context(|| format!("running {what}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Command {
            command: what.to_owned(),
            detail: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }
}

/// `tests/k8s/pause.sh`: builds (once) the sandbox image, returns its reference and archive.
fn run_pause_script() -> Result<(String, PathBuf)> {
    let mut cmd = Command::new("bash");
    cmd.arg(PAUSE_SCRIPT).stderr(Stdio::inherit());
    let out = run(cmd, PAUSE_SCRIPT)?;
    parse_image_list(&out).pop().ok_or_else(|| Error::Command {
        command: PAUSE_SCRIPT.into(),
        detail: format!("printed no image: {out}"),
    })
}

/// Starts the teardown and returns once it holds the machine's kube-proxy lock (it says
/// `locked` on its stdout).
async fn spawn_teardown(layout: &Layout, kube_proxy: &Path) -> Result<Child> {
    let lock = std::env::temp_dir().join(KUBE_PROXY_LOCK);
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(TEARDOWN)
        .arg("roundtable-e2e-node-teardown")
        .arg(&layout.dir)
        .arg(&layout.name)
        .arg(&layout.bridge)
        .arg(&layout.name)
        .arg(layout.containerd_socket())
        .arg(kube_proxy)
        .arg(&lock)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context(|| "starting the real node's teardown".to_string())?;
    let stdout = child.stdout.take().expect("piped");
    let waiting = Instant::now();
    let said = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).map(|_| line)
    })
    .await
    .expect("not cancelled")
    .context(|| "reading the teardown's lock line".to_string())?;
    if said.trim() != "locked" {
        return Err(Error::StartFailed(format!(
            "the real node's teardown did not take {} (flock from util-linux): {said:?}",
            lock.display()
        )));
    }
    if waiting.elapsed() > Duration::from_secs(1) {
        say(format_args!(
            "roundtable-e2e: waited {:.1?} for another real node's kube-proxy to go ({})",
            waiting.elapsed(),
            lock.display()
        ));
    }
    Ok(child)
}

/// Starts kube-proxy as `system:kube-proxy` (the API server's bootstrap RBAC binds it to
/// `system:node-proxier`) and waits until it has programmed its first rules.
async fn start_kube_proxy(
    cluster: &Cluster,
    layout: &Layout,
    bin: &Path,
    kubelet: &Supervised,
) -> Result<Supervised> {
    let dir = layout.kube_proxy_dir();
    let (cert, key) = cluster.pki().client_cert(
        &dir,
        "kube-proxy-client",
        "system:kube-proxy",
        "system:proxiers",
    )?;
    let kubeconfig = dir.join("kube-proxy.kubeconfig");
    crate::kubeconfig::write_client_cert(
        &kubeconfig,
        cluster.url(),
        cluster.ca_cert(),
        "system:kube-proxy",
        (&cert, &key),
    )?;
    let ports = (free_loopback_port()?, free_loopback_port()?);
    let config = dir.join("config.yaml");
    std::fs::write(&config, config::kube_proxy_yaml(layout, &kubeconfig, ports))
        .context(|| format!("writing {}", config.display()))?;
    let proxy = Supervised::spawn(
        "kube-proxy",
        bin,
        [format!("--config={}", config.display()), "--v=2".into()],
        &layout.dir.join("kube-proxy.log"),
        Some(kubelet),
    )?;
    let healthz = format!("http://127.0.0.1:{}/healthz", ports.0);
    proxy
        .wait_ready(
            Duration::from_secs(60),
            "Waiting for caches to sync",
            || async {
                let response = reqwest::get(&healthz).await.map_err(|e| e.to_string())?;
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                if !status.is_success() {
                    return Err(format!("{healthz}: {status} {body}"));
                }
                let mut cmd = Command::new("iptables");
                cmd.args(["-t", "nat", "-S", "KUBE-NODEPORTS"]);
                run(cmd, "iptables -t nat -S KUBE-NODEPORTS")
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            },
        )
        .await
        .map_err(not_started)?;
    Ok(proxy)
}

/// The kubelet wants its `cgroupRoot` to exist in every hierarchy it uses.
fn make_cgroup_root(layout: &Layout) -> Result<()> {
    let v1 = cgroup_hierarchies();
    let roots: Vec<PathBuf> = if v1.is_empty() {
        vec![PathBuf::from("/sys/fs/cgroup").join(&layout.name)]
    } else {
        v1.iter().map(|h| h.join(&layout.name)).collect()
    };
    for root in roots {
        std::fs::create_dir_all(&root).context(|| format!("creating cgroup {}", root.display()))?;
    }
    Ok(())
}

/// Creates the CNI bridge up front (the bridge plugin adopts it) so that it can carry the
/// node's address before the kubelet starts, lets it route to loopback, and sends pods'
/// connections to the `kubernetes` Service to the API server.
fn make_bridge(layout: &Layout, apiserver_url: &str) -> Result<()> {
    let apiserver = apiserver_url
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_owned();
    let bridge = layout.bridge.as_str();
    let address = format!("{}/24", layout.node_ip());
    let steps: Vec<Vec<&str>> = vec![
        vec!["ip", "link", "add", "name", bridge, "type", "bridge"],
        vec!["ip", "addr", "add", &address, "dev", bridge],
        vec!["ip", "link", "set", bridge, "up"],
    ];
    for step in &steps {
        let mut cmd = Command::new(step[0]);
        cmd.args(&step[1..]);
        run(cmd, &step.join(" "))?;
    }
    let sysctl = format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet");
    std::fs::write(&sysctl, "1").context(|| format!("writing {sysctl}"))?;
    let mut cmd = Command::new("iptables");
    let rule = [
        "-t",
        "nat",
        "-A",
        "PREROUTING",
        "-i",
        bridge,
        "-d",
        KUBERNETES_SERVICE_IP,
        "-p",
        "tcp",
        "--dport",
        "443",
        "-j",
        "DNAT",
        "--to-destination",
        &apiserver,
    ];
    cmd.args(rule);
    run(cmd, &format!("iptables {}", rule.join(" ")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_image_list;
    use std::path::PathBuf;

    #[test]
    fn image_lists_are_reference_then_archive() {
        let list = parse_image_list(
            "ghcr.io/roundtable-dev/roundtable:0.1.0 /c/roundtable-1.tar\n\nsfu /c/sfu.tar\n",
        );
        assert_eq!(
            list,
            [
                (
                    "ghcr.io/roundtable-dev/roundtable:0.1.0".to_string(),
                    PathBuf::from("/c/roundtable-1.tar")
                ),
                ("sfu".to_string(), PathBuf::from("/c/sfu.tar")),
            ]
        );
    }
}
