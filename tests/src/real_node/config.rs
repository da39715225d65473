//! The configuration files of a real node, as plain functions of its [`Layout`]: containerd's
//! `config.toml`, the kubelet's `KubeletConfiguration`, kube-proxy's
//! `KubeProxyConfiguration` and the CNI network list. What each
//! setting is for on this kind of machine (cgroup v1, no `CAP_SYS_RESOURCE`, no registry) is
//! said next to it, and in the README's "A real node in the test bed".

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Where one real node keeps everything and how it is named; unique per test process, so two
/// test runs on one machine do not share a bridge, a cgroup, a socket or a port.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
    /// Node name, CNI network name and cgroup root: `roundtable-e2e-<pid>`.
    pub name: String,
    /// The CNI bridge, at most 15 characters.
    pub bridge: String,
    /// The pod subnet is `<subnet>.0/24`; the bridge (and the node's `InternalIP`) is `.1`.
    pub subnet: [u8; 3],
    pub kubelet_port: u16,
    pub kubelet_healthz_port: u16,
    pub sandbox_image: String,
}

impl Layout {
    pub fn new(dir: &Path, pid: u32, ports: (u16, u16), sandbox_image: &str) -> Self {
        // 10.200.0.0/13 leaves room for 2 048 concurrent test processes before two share a
        // subnet.
        let n = pid % 2048;
        Self {
            dir: dir.to_owned(),
            name: format!("roundtable-e2e-{pid}"),
            bridge: format!("rte{}", pid % 100_000_000),
            subnet: [10, 200 + (n / 256) as u8, (n % 256) as u8],
            kubelet_port: ports.0,
            kubelet_healthz_port: ports.1,
            sandbox_image: sandbox_image.to_owned(),
        }
    }

    /// The bridge's address, which is also the node's `InternalIP` (a local address of this
    /// machine that pods and the test process both reach).
    pub fn node_ip(&self) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 1)
    }

    pub fn subnet_cidr(&self) -> String {
        let [a, b, c] = self.subnet;
        format!("{a}.{b}.{c}.0/24")
    }

    pub fn containerd_dir(&self) -> PathBuf {
        self.dir.join("containerd")
    }

    pub fn containerd_socket(&self) -> PathBuf {
        self.containerd_dir().join("containerd.sock")
    }

    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir.join("cni")
    }

    pub fn kubelet_dir(&self) -> PathBuf {
        self.dir.join("kubelet")
    }

    pub fn kube_proxy_dir(&self) -> PathBuf {
        self.dir.join("kube-proxy")
    }

    /// An address of this node outside its pod subnet (`10.208.0.0/13`, numbered like the
    /// subnets), for what a cloud's load balancer would announce.
    pub fn load_balancer_ip(&self) -> Ipv4Addr {
        let [_, b, c] = self.subnet;
        Ipv4Addr::new(10, b + 8, c, 1)
    }

    pub fn pod_logs_dir(&self) -> PathBuf {
        self.dir.join("pod-logs")
    }

    /// The kubelet's `cgroupRoot`, made in every cgroup v1 hierarchy before it starts.
    pub fn cgroup_root(&self) -> String {
        format!("/{}", self.name)
    }
}

/// containerd 1.6's configuration (version 2 schema), CRI plugin included.
pub fn containerd_toml(layout: &Layout, cni_bin_dir: &Path) -> String {
    let d = layout.containerd_dir();
    let d = d.display();
    let socket = layout.containerd_socket();
    let socket = socket.display();
    let cni_conf = layout.cni_conf_dir();
    let cni_conf = cni_conf.display();
    let cni_bin = cni_bin_dir.display();
    let sandbox = &layout.sandbox_image;
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  # No registry is reachable: the sandbox image is built from the Kubernetes module's
  # pause.c (tests/k8s/pause.sh) and imported before the kubelet starts.
  sandbox_image = "{sandbox}"
  # The VM gives root no CAP_SYS_RESOURCE, so runc cannot lower oom_score_adj to the -998
  # the kubelet asks for a sandbox ("failed to update /proc/self/oom_score_adj: Permission
  # denied"); clamp it at containerd's own score, as for rootless setups.
  restrict_oom_score_adj = true
  enable_unprivileged_ports = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # cgroup v1 through cgroupfs: no systemd runs on this machine.
        SystemdCgroup = false
        Root = "{d}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
"#
    )
}

/// The kubelet's configuration file.
pub fn kubelet_yaml(layout: &Layout) -> String {
    let socket = layout.containerd_socket();
    let socket = socket.display();
    let cgroup_root = layout.cgroup_root();
    let logs = layout.pod_logs_dir();
    let logs = logs.display();
    let node_ip = layout.node_ip();
    let port = layout.kubelet_port;
    let healthz = layout.kubelet_healthz_port;
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine mounts cgroup v1 controllers (cgroup2 only at /sys/fs/cgroup/unified); since
# 1.35 the kubelet refuses v1 unless told otherwise.
failCgroupV1: false
cgroupDriver: cgroupfs
# Its own cgroup tree, so several test processes' kubelets do not share /kubepods.
cgroupRoot: {cgroup_root}
containerRuntimeEndpoint: unix://{socket}
imageServiceEndpoint: unix://{socket}
podLogsDir: {logs}
address: {node_ip}
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz}
failSwapOn: false
# The API server does not call the kubelet (no logs/exec in these tests): the test reads
# container logs from podLogsDir.
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: false}}
authorization: {{mode: AlwaysAllow}}
# A shared test machine's disk and memory are not this node's to guard.
evictionHard: {{memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
resolvConf: /etc/resolv.conf
# Pods come and go within a test: report status changes quickly.
nodeStatusUpdateFrequency: 5s
syncFrequency: 10s
fileCheckFrequency: 5s
serializeImagePulls: false
"#
    )
}

/// kube-proxy's configuration file: iptables mode (Debian's iptables, which the CNI plugins
/// use too), NodePorts only on the node's own address, and the machine's conntrack settings
/// left alone (a shared machine's kernel is not this node's to tune).
pub fn kube_proxy_yaml(layout: &Layout, kubeconfig: &Path, ports: (u16, u16)) -> String {
    let kubeconfig = kubeconfig.display();
    let name = &layout.name;
    let node_ip = layout.node_ip();
    let cluster_cidr = layout.subnet_cidr();
    let (healthz, metrics) = ports;
    format!(
        r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: {kubeconfig}
hostnameOverride: {name}
bindAddress: {node_ip}
healthzBindAddress: 127.0.0.1:{healthz}
metricsBindAddress: 127.0.0.1:{metrics}
# Traffic from this node's pods is "local"; anything else sent to a Service is masqueraded.
detectLocalMode: ClusterCIDR
clusterCIDR: {cluster_cidr}
# NodePorts answer on the node's address only, not on every address of the machine.
nodePortAddresses: ["{node_ip}/32"]
iptables:
  localhostNodePorts: false
  syncPeriod: 30s
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
  udpTimeout: 0s
  udpStreamTimeout: 0s
"#
    )
}

/// The CNI network: a bridge with host-local addresses, hostPorts through portmap, and a
/// loopback in every pod.
pub fn cni_conflist(layout: &Layout) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": layout.name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": layout.bridge,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": layout.subnet_cidr(), "gateway": layout.node_ip().to_string()}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": layout.dir.join("cni-ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "loopback"},
        ],
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout::new(
            Path::new("/tmp/e2e/real-node"),
            123_456,
            (40_001, 40_002),
            "localhost/roundtable-e2e/pause:3.10.2",
        )
    }

    #[test]
    fn names_fit_their_limits_and_differ_per_process() {
        let a = layout();
        assert!(a.bridge.len() <= 15, "{}", a.bridge);
        let b = Layout::new(Path::new("/tmp/x"), 99_999_999, (1, 2), "p");
        assert!(b.bridge.len() <= 15, "{}", b.bridge);
        assert_ne!(
            a.subnet,
            Layout::new(Path::new("/tmp/x"), 123_457, (1, 2), "p").subnet
        );
        assert_eq!(
            a.node_ip().to_string(),
            format!("10.{}.{}.1", a.subnet[1], a.subnet[2])
        );
        assert!(a.subnet[1] >= 200 && a.subnet[1] <= 207);
    }

    #[test]
    fn the_kubelet_accepts_cgroup_v1_with_cgroupfs_under_its_own_root() {
        let yaml = kubelet_yaml(&layout());
        let doc: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(doc["failCgroupV1"], serde_yaml::Value::Bool(false));
        assert_eq!(doc["cgroupDriver"], "cgroupfs");
        assert_eq!(doc["cgroupRoot"], "/roundtable-e2e-123456");
        assert_eq!(doc["port"], 40_001);
        assert_eq!(
            doc["containerRuntimeEndpoint"],
            "unix:///tmp/e2e/real-node/containerd/containerd.sock"
        );
    }

    #[test]
    fn containerd_uses_the_local_sandbox_image_and_cgroupfs() {
        let toml = containerd_toml(&layout(), Path::new("/usr/lib/cni"));
        assert!(toml.contains(r#"sandbox_image = "localhost/roundtable-e2e/pause:3.10.2""#));
        assert!(toml.contains("SystemdCgroup = false"));
        assert!(toml.contains("restrict_oom_score_adj = true"));
        assert!(toml.contains(r#"address = "/tmp/e2e/real-node/containerd/containerd.sock""#));
    }

    #[test]
    fn kube_proxy_serves_node_ports_on_the_node_address_only() {
        let l = layout();
        let yaml = kube_proxy_yaml(&l, Path::new("/k/kube-proxy.kubeconfig"), (40_003, 40_004));
        let doc: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(doc["kind"], "KubeProxyConfiguration");
        assert_eq!(doc["mode"], "iptables");
        assert_eq!(doc["hostnameOverride"], l.name.as_str());
        assert_eq!(
            doc["nodePortAddresses"][0],
            format!("{}/32", l.node_ip()).as_str()
        );
        assert_eq!(doc["clusterCIDR"], l.subnet_cidr().as_str());
        assert_eq!(doc["conntrack"]["maxPerCore"], 0);
        assert_eq!(doc["healthzBindAddress"], "127.0.0.1:40003");
    }

    #[test]
    fn the_load_balancer_address_is_outside_every_pod_subnet() {
        let l = layout();
        let lb = l.load_balancer_ip();
        assert_eq!(lb.octets()[1], l.subnet[1] + 8);
        assert!((208..=215).contains(&lb.octets()[1]), "{lb}");
        assert_ne!(
            lb,
            Layout::new(Path::new("/tmp/x"), 123_457, (1, 2), "p").load_balancer_ip()
        );
    }

    #[test]
    fn the_cni_network_is_a_bridge_with_host_ports() {
        let list: serde_json::Value = serde_json::from_str(&cni_conflist(&layout())).unwrap();
        let types: Vec<&str> = list["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["bridge", "portmap", "loopback"]);
        assert_eq!(list["plugins"][0]["bridge"], layout().bridge);
    }
}
