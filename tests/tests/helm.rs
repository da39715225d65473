//! The Helm chart `charts/roundtable`, with helm built from its Go module:
//! - `helm lint` passes and bad values fail early with a message naming the value;
//! - everything `helm template` renders is accepted by the real API server
//!   (`kubectl apply --dry-run=server --validate=strict`, which checks every object against the
//!   exact Kubernetes schemas, the chart's own CRDs and the Gateway API's, for the HTTPRoute)
//!   without Pod Security warnings (but coturn's one for the host's network);
//! - `helm install` into the test cluster runs the chart's operator Deployment (two replicas,
//!   one leader) as pods of the test node agent, with a token of the chart's operator
//!   ServiceAccount, so the API server enforces the chart's RBAC; an example session goes
//!   Live and its SFU accepts a join token signed with the chart's generated key;
//! - negative RBAC checks: SFU pods have no API credentials and their ServiceAccount cannot
//!   read Secrets; the operator cannot read Secrets, delete Deployments or change specs (only
//!   sessions' and stages' relays, through the scale subresource); a
//!   namespaced install grants nothing outside its namespace;
//! - `api.tls` and `turn.enabled`: the control plane serves HTTPS with the Secret's
//!   certificate, and a join answer's TURN credential is accepted by the chart's coturn (run
//!   from Debian's `turnserver` by the node agent), over TCP and over TLS on 443 with
//!   `turn.tls`'s certificate, and refused once expired.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use roundtable_crds::{LivePhase, Session};
use roundtable_e2e::helm::{
    chart_dir, gateway_api_crds, helm_offline, post_until_ok, registration_token,
    roundtable_entrypoint,
};
use roundtable_e2e::node_agent::{self, ImageMap, NodeAgent, NodeSpec};
use roundtable_e2e::turn::{self, Allocation};
use roundtable_e2e::{Cluster, KubectlOutput};
use roundtable_e2e::{poll, unix_now, wait_until};
use sfu_node::auth::{Claims, mint};
use sfu_node::client::{ClientPeer, ClientRole};

const PUBLIC_URL: &str = "https://events.example.com";
const SESSION: &str = "gala-future-of-work";

fn chart() -> String {
    chart_dir().to_string_lossy().into_owned()
}

fn ok(out: KubectlOutput) -> String {
    assert!(out.success(), "{} failed: {}", out.command, out.stderr);
    out.stdout
}

/// A scratch directory for helm runs that need no cluster.
fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[tokio::test]
async fn the_chart_lints_and_bad_values_fail_early_with_a_message_naming_the_value() {
    let dir = scratch();
    let url = format!("api.publicUrl={PUBLIC_URL}");
    // With the chart's own defaults, with the one value a user sets, and with each values file
    // chart-testing (`ct lint`, `ct install`) reads from ci/.
    let ci_values: Vec<String> = std::fs::read_dir(chart_dir().join("ci"))
        .unwrap()
        .map(|f| f.unwrap().path().to_string_lossy().into_owned())
        .filter(|f| f.ends_with("-values.yaml"))
        .collect();
    assert!(
        !ci_values.is_empty(),
        "ci/ has values files for chart-testing"
    );
    let mut lints = vec![vec![], vec!["--set".to_string(), url.clone()]];
    lints.extend(
        ci_values
            .iter()
            .map(|f| vec!["--values".to_string(), f.clone()]),
    );
    for values in lints {
        let mut args = vec!["lint".to_string(), "--strict".into(), chart()];
        args.extend(values);
        let lint = helm_offline(dir.path(), &args).await.unwrap();
        assert!(
            lint.success(),
            "{}: {}{}",
            lint.command,
            lint.stdout,
            lint.stderr
        );
        assert!(lint.stdout.contains("1 chart(s) linted, 0 chart(s) failed"));
    }
    for file in &ci_values {
        let out = helm_offline(dir.path(), &["template", "rt", &chart(), "--values", file])
            .await
            .unwrap();
        assert!(out.success(), "{}: {}", out.command, out.stderr);
    }

    // Each bad value, and what the person who typed it reads.
    let cases: &[(&[&str], &str)] = &[
        (
            &[],
            "api.publicUrl is required: the URL attendees open, which every emailed sign-in and \
             access link points to. Set it with --set api.publicUrl=https://events.example.com",
        ),
        (
            &["--set", "api.publicUrl=events.example.com"],
            "at '/api/publicUrl'",
        ),
        (
            &["--set", "operator.replicas=0"],
            "at '/operator/replicas': minimum: got 0, want 1",
        ),
        (
            &["--set", "operator.replicas=two"],
            "at '/operator/replicas': got string, want integer",
        ),
        (
            &["--set", "operator.replica=3"],
            "at '/operator': additional properties 'replica' not allowed",
        ),
        (
            &["--set", "media.hostPorts.first=80"],
            "at '/media/hostPorts/first': minimum: got 80, want 1,024",
        ),
        (
            &["--set", "media.hostPorts.first=32000"],
            "media.hostPorts: last (31999) must not be below first (32000)",
        ),
        (
            &["--set", "watchNamespace=Events_2026"],
            "at '/watchNamespace'",
        ),
        (&["--set", "joinToken.key=short"], "at '/joinToken/key'"),
        (
            &["--set", "image.pullPolicy=Sometimes"],
            "at '/image/pullPolicy'",
        ),
        (
            &["--set", "api.httpRoute.enabled=true"],
            "api.httpRoute.parentRefs is required with api.httpRoute.enabled",
        ),
        (
            &[
                "--set",
                "api.httpRoute.parentRefs[0].name=public",
                "--set",
                "api.httpRoute.hostnames[0]=Events.Example.com",
            ],
            "at '/api/httpRoute/hostnames/0'",
        ),
    ];
    let chart = chart();
    for (values, message) in cases {
        let mut args = vec!["template", "rt", chart.as_str()];
        let needs_url = !values.iter().any(|v| v.starts_with("api.publicUrl"));
        let first_case = values.is_empty();
        if needs_url && !first_case {
            args.extend(["--set", &url]);
        }
        args.extend(values.iter().copied());
        let out = helm_offline(dir.path(), &args).await.unwrap();
        assert!(
            !out.success(),
            "{} should fail, rendered:\n{}",
            out.command,
            out.stdout
        );
        assert!(
            out.stderr.contains(message),
            "{} should say {message:?}, said:\n{}",
            out.command,
            out.stderr
        );
    }
}

/// The control plane's Deployment as rendered with `args`.
async fn api_deployment(dir: &Path, args: &[&str]) -> String {
    let chart = chart();
    let mut all = vec!["template", "rt", chart.as_str(), "--set"];
    let url = format!("api.publicUrl={PUBLIC_URL}");
    all.push(&url);
    all.extend(["--show-only", "templates/api-deployment.yaml"]);
    all.extend(args);
    let out = helm_offline(dir, &all).await.unwrap();
    assert!(out.success(), "{}: {}", out.command, out.stderr);
    out.stdout
}

#[tokio::test]
async fn the_control_plane_runs_several_replicas_only_with_postgresql() {
    let dir = scratch();
    let sqlite = api_deployment(dir.path(), &["--set", "api.replicas=3"]).await;
    assert!(
        sqlite.contains("replicas: 1\n"),
        "SQLite: one writer\n{sqlite}"
    );
    assert!(sqlite.contains("type: Recreate"));
    assert!(sqlite.contains("ROUNDTABLE_DATABASE\n"));
    assert!(!sqlite.contains("ROUNDTABLE_DATABASE_URL"));
    assert!(!sqlite.contains("podAntiAffinity"));

    let postgres = api_deployment(
        dir.path(),
        &[
            "--set",
            "api.database.existingSecret=pg-app",
            "--set",
            "api.database.existingSecretKey=uri",
        ],
    )
    .await;
    assert!(postgres.contains("replicas: 2\n"), "{postgres}");
    assert!(postgres.contains("type: RollingUpdate"));
    assert!(postgres.contains("name: ROUNDTABLE_DATABASE_URL"));
    assert!(postgres.contains("name: pg-app\n") && postgres.contains("key: uri\n"));
    assert!(postgres.contains("podAntiAffinity"));
    assert!(!postgres.contains("claimName"), "no SQLite volume");

    let chart = chart();
    let pdb = helm_offline(
        dir.path(),
        &[
            "template",
            "rt",
            &chart,
            "--set",
            &format!("api.publicUrl={PUBLIC_URL}"),
            "--set",
            "api.database.url=postgres://rt@db/rt",
            "--set",
            "api.replicas=1",
            "--show-only",
            "templates/api-pdb.yaml",
        ],
    )
    .await
    .unwrap();
    assert!(
        !pdb.success(),
        "one replica gets no budget that would block every drain"
    );
    let bad = helm_offline(
        dir.path(),
        &[
            "template",
            "rt",
            &chart,
            "--set",
            &format!("api.publicUrl={PUBLIC_URL}"),
            "--set",
            "api.database.url=mysql://db",
        ],
    )
    .await
    .unwrap();
    assert!(
        bad.stderr.contains("at '/api/database/url'"),
        "{}",
        bad.stderr
    );
}

/// Renders the chart with `values` (YAML) for namespace `namespace`.
async fn render(cluster: &Cluster, namespace: &str, values: &str) -> String {
    ok(cluster
        .helm_with_stdin(
            &["template", "rt", &chart(), "-n", namespace, "--values", "-"],
            values,
        )
        .await
        .unwrap())
}

/// `kubectl apply --dry-run=server --validate=strict`: the API server decodes, defaults,
/// validates and admits every object, persisting nothing.
async fn server_validate(cluster: &Cluster, manifests: &str) -> KubectlOutput {
    cluster
        .kubectl_with_stdin(
            &["apply", "--dry-run=server", "--validate=strict", "-f", "-"],
            Some(manifests),
        )
        .await
        .unwrap()
}

/// The warnings (Pod Security's, say) among kubectl's stderr lines.
fn warnings_of(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("Warning"))
        .collect()
}

/// The kinds of the objects in a rendered chart, sorted. Parsing every document also refuses
/// a mapping that repeats a key (which kubectl would silently collapse).
fn kinds(rendered: &str) -> Vec<String> {
    use serde::Deserialize as _;
    let mut kinds: Vec<String> = serde_yaml::Deserializer::from_str(rendered)
        .map(|doc| serde_yaml::Value::deserialize(doc).expect("each rendered document is YAML"))
        .filter(|doc| !doc.is_null())
        .map(|doc| {
            doc["kind"]
                .as_str()
                .expect("every object has a kind")
                .to_owned()
        })
        .collect();
    kinds.sort();
    kinds
}

/// The SFU pods' NetworkPolicy ingress rules, rendered with `values`.
async fn sfu_policy_rules(
    cluster: &Cluster,
    values: &str,
) -> Vec<k8s_openapi::api::networking::v1::NetworkPolicyIngressRule> {
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    use serde::Deserialize as _;
    let rendered = render(cluster, "rt-system", values).await;
    let sfu: NetworkPolicy = serde_yaml::Deserializer::from_str(&rendered)
        .map(|doc| serde_yaml::Value::deserialize(doc).unwrap())
        .filter(|doc| doc["kind"] == "NetworkPolicy")
        .map(|doc| serde_yaml::from_value::<NetworkPolicy>(doc).unwrap())
        .find(|p| {
            let selector = p.spec.as_ref().and_then(|s| s.pod_selector.as_ref());
            selector
                .and_then(|s| s.match_labels.as_ref())
                .and_then(|l| l.get("app.kubernetes.io/name"))
                .is_some_and(|name| name == "sfu-node")
        })
        .expect("the chart renders a NetworkPolicy for SFU pods");
    sfu.spec.unwrap().ingress.unwrap()
}

/// With `media.iceTcp: false` browsers reach SFU pods only through the control plane's `/sfu/`
/// proxy, so the chart's policy keeps the pods' TCP ports closed to everyone else: only the
/// control plane, relays and recorders (and peers the values add) may connect; media (UDP)
/// stays open. By default (ICE over TCP on the same ports) TCP is open to anyone too, and the
/// operator tells SFU pods to offer it.
#[tokio::test]
async fn sfu_signalling_ports_admit_only_the_control_plane_relays_and_recorders() {
    let cluster = Cluster::shared().await.unwrap();
    let rules = sfu_policy_rules(
        cluster,
        &format!(
            "api: {{publicUrl: {PUBLIC_URL}}}\n\
             media: {{iceTcp: false}}\n\
             networkPolicy: {{signallingFrom: [{{namespaceSelector: {{matchLabels: {{team: tools}}}}}}]}}\n"
        ),
    )
    .await;
    let opens = |rule: &k8s_openapi::api::networking::v1::NetworkPolicyIngressRule, proto: &str| {
        rule.ports.iter().flatten().any(|p| {
            p.protocol.as_deref() == Some(proto)
                && p.port
                    == Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(31000))
                && p.end_port == Some(31999)
        })
    };
    let udp: Vec<_> = rules.iter().filter(|r| opens(r, "UDP")).collect();
    assert!(
        udp.len() == 1 && udp[0].from.is_none(),
        "media (UDP) on the host port range is open to anyone: {udp:?}"
    );
    let tcp: Vec<_> = rules.iter().filter(|r| opens(r, "TCP")).collect();
    assert_eq!(tcp.len(), 1, "one rule opens signalling: {rules:?}");
    let peers = serde_json::to_value(
        tcp[0]
            .from
            .as_ref()
            .expect("signalling is not open to anyone"),
    )
    .unwrap();
    assert_eq!(
        peers,
        serde_json::json!([
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "rt-system"}},
                "podSelector": {"matchLabels": {
                    "app.kubernetes.io/name": "roundtable",
                    "app.kubernetes.io/instance": "rt",
                    "app.kubernetes.io/component": "api",
                }},
            },
            {"podSelector": {"matchExpressions": [{
                "key": "app.kubernetes.io/name",
                "operator": "In",
                "values": ["sfu-node", "roundtable-recorder"],
            }]}},
            {"namespaceSelector": {"matchLabels": {"team": "tools"}}},
        ]),
        "signalling admits the control plane, the namespace's relays and recorders, and the added peer"
    );

    let defaults = sfu_policy_rules(cluster, &format!("api: {{publicUrl: {PUBLIC_URL}}}\n")).await;
    let tcp: Vec<_> = defaults.iter().filter(|r| opens(r, "TCP")).collect();
    assert!(
        tcp.len() == 1 && tcp[0].from.is_none(),
        "with ICE over TCP (the default) the TCP range is open to anyone: {tcp:?}"
    );
    let rendered = render(
        cluster,
        "rt-system",
        &format!("api: {{publicUrl: {PUBLIC_URL}}}\n"),
    )
    .await;
    assert!(
        rendered.contains("name: ROUNDTABLE_SFU_ICE_TCP\n              value: \"true\""),
        "the operator is told to offer ICE-TCP"
    );
}

/// Creates a namespace whose Pod Security admission warns about anything short of the
/// `restricted` profile.
async fn restricted_namespace(cluster: &Cluster, prefix: &str) -> String {
    let ns = cluster.namespace(prefix).await.unwrap();
    ok(cluster
        .kubectl(&[
            "label",
            "namespace",
            &ns.name,
            "pod-security.kubernetes.io/warn=restricted",
            "pod-security.kubernetes.io/audit=restricted",
        ])
        .await
        .unwrap());
    ns.name
}

#[tokio::test]
async fn every_rendered_object_passes_the_api_servers_validation() {
    let cluster = Cluster::shared().await.unwrap();
    let release = restricted_namespace(cluster, "helm-valid").await;
    let events = restricted_namespace(cluster, "helm-valid-events").await;

    // The CRDs in the chart are valid CustomResourceDefinitions (schemas, CEL rules compile).
    let crds = chart_dir().join("crds");
    let dry_run = async || {
        cluster
            .kubectl(&[
                "apply",
                "--dry-run=server",
                "--validate=strict",
                "-f",
                crds.to_str().unwrap(),
            ])
            .await
            .unwrap()
    };
    let mut checked = dry_run().await;
    // Where the CRDs do not exist yet the dry run is a create, and another test of this binary
    // (helm install) may create them at the same moment: then the check is an update.
    if !checked.success() && checked.stderr.contains("AlreadyExists") {
        checked = dry_run().await;
    }
    ok(checked);

    // The Gateway API's CRDs (standard channel), so the API server checks the HTTPRoute too.
    let gateway_api = gateway_api_crds().unwrap();
    ok(cluster
        .kubectl(&[
            "apply",
            "--server-side",
            "-f",
            gateway_api.to_str().unwrap(),
        ])
        .await
        .unwrap());
    ok(cluster
        .kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/httproutes.gateway.networking.k8s.io",
        ])
        .await
        .unwrap());

    let value_sets = [
        // The defaults: cluster-wide, control plane with a database volume.
        (
            format!("api: {{publicUrl: {PUBLIC_URL}}}\n"),
            &[
                "ClusterRole",
                "ClusterRole",
                "ClusterRoleBinding",
                "ClusterRoleBinding",
                "Deployment",
                "Deployment",
                "NetworkPolicy",
                "NetworkPolicy",
                "NetworkPolicy",
                "NetworkPolicy",
                "PersistentVolumeClaim",
                "PodDisruptionBudget",
                "Role",
                "Role",
                "RoleBinding",
                "RoleBinding",
                "Secret",
                "Service",
                "ServiceAccount",
                "ServiceAccount",
            ][..],
        ),
        // Everything optional turned on, confined to namespaces.
        (
            format!(
                r#"
watchNamespace: {release}
eventNamespaces: [{events}]
joinToken: {{key: "0123456789abcdef0123456789abcdef"}}
operator:
  replicas: 3
  nodeSelector: {{pool: system}}
  tolerations: [{{key: dedicated, operator: Equal, value: system, effect: NoSchedule}}]
  priorityClassName: system-cluster-critical
  extraEnv: [{{name: EXTRA, value: "1"}}]
api:
  publicUrl: {PUBLIC_URL}
  passcodeSecretNamespaces: [{events}]
  smtp: {{existingSecret: smtp, from: "Events <events@example.com>"}}
  registration: {{keySecret: registration, jwksUrl: "https://id.example.com/jwks.json"}}
  database: {{persistence: {{existingClaim: roundtable-db}}}}
  service: {{type: LoadBalancer}}
  ingress: {{enabled: true, className: nginx, host: events.example.com, tlsSecretName: events-tls}}
  httpRoute:
    enabled: true
    parentRefs: [{{name: public, namespace: gateway-system, sectionName: https}}]
    hostnames: [events.example.com]
    annotations: {{team: events}}
recording:
  persistentVolumeClaim: {{create: true, storageClassName: nfs}}
networkPolicy:
  metricsFrom: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: monitoring}}}}}}]
  apiFrom: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: ingress-nginx}}}}}}]
"#
            ),
            // Namespaced: Roles only; a Secret and an SFU policy per namespace; passcode Roles
            // (the control plane's and the operator's).
            &[
                "Deployment",
                "Deployment",
                "HTTPRoute",
                "Ingress",
                "NetworkPolicy",
                "NetworkPolicy",
                "NetworkPolicy",
                "NetworkPolicy",
                "NetworkPolicy",
                "NetworkPolicy",
                "PersistentVolumeClaim",
                "PodDisruptionBudget",
                "Role",
                "Role",
                "Role",
                "Role",
                "Role",
                "Role",
                "RoleBinding",
                "RoleBinding",
                "RoleBinding",
                "RoleBinding",
                "RoleBinding",
                "RoleBinding",
                "Secret",
                "Secret",
                "Service",
                "ServiceAccount",
                "ServiceAccount",
            ][..],
        ),
        // The control plane on PostgreSQL: replicas, their budget, the URL in a Secret, no volume.
        (
            format!(
                "api: {{publicUrl: {PUBLIC_URL}, database: {{url: \"postgres://rt:pw@db:5432/rt\"}}}}\n"
            ),
            &[
                "ClusterRole",
                "ClusterRole",
                "ClusterRoleBinding",
                "ClusterRoleBinding",
                "Deployment",
                "Deployment",
                "NetworkPolicy",
                "NetworkPolicy",
                "NetworkPolicy",
                "NetworkPolicy",
                "PodDisruptionBudget",
                "PodDisruptionBudget",
                "Role",
                "Role",
                "RoleBinding",
                "RoleBinding",
                "Secret",
                "Secret",
                "Service",
                "ServiceAccount",
                "ServiceAccount",
            ][..],
        ),
        // The least: no control plane, no policies, Secrets made by the user.
        (
            format!(
                r#"
api: {{enabled: false, publicUrl: {PUBLIC_URL}}}
joinToken: {{create: false}}
networkPolicy: {{enabled: false}}
operator: {{podDisruptionBudget: {{enabled: false}}}}
"#
            ),
            &[
                "ClusterRole",
                "ClusterRoleBinding",
                "Deployment",
                "Role",
                "RoleBinding",
                "ServiceAccount",
            ][..],
        ),
    ];
    for (values, expected_kinds) in &value_sets {
        let rendered = render(cluster, &release, values).await;
        assert_eq!(
            &kinds(&rendered),
            expected_kinds,
            "the objects rendered with\n{values}"
        );
        let objects = expected_kinds.len();
        let out = server_validate(cluster, &rendered).await;
        assert!(
            out.success(),
            "the API server refused the chart rendered with\n{values}\n{}",
            out.stderr
        );
        assert!(
            !out.stderr.contains("Warning"),
            "the API server warned about the chart rendered with\n{values}\n{}",
            out.stderr
        );
        assert_eq!(
            out.stdout.lines().count(),
            objects,
            "every object was checked: {}",
            out.stdout
        );
    }

    // The HTTPRoute sends every path of the public origin (pages, API, the /sfu/ signalling
    // proxy) to the control plane's Service.
    let route = render(cluster, &release, &value_sets[1].0).await;
    let route = serde_yaml::Deserializer::from_str(&route)
        .map(|doc| {
            use serde::Deserialize as _;
            serde_yaml::Value::deserialize(doc).unwrap()
        })
        .find(|doc| doc["kind"] == "HTTPRoute")
        .unwrap();
    let route = serde_json::to_value(&route).unwrap();
    assert_eq!(
        route["spec"]["rules"],
        serde_json::json!([{
            "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
            "backendRefs": [{"name": "rt-roundtable-api", "port": 80}],
        }]),
        "{route}"
    );
    assert_eq!(
        route["spec"]["hostnames"],
        serde_json::json!(["events.example.com"])
    );

    // TURN (coturn) and HTTPS served by the control plane. coturn runs on the node's network
    // (hostNetwork), which Pod Security's baseline and restricted profiles flag: that is the
    // one warning, everything else about the pod (seccomp, non-root, no capabilities, no
    // privilege escalation) meets `restricted`.
    let turn_values = format!(
        r#"
api: {{publicUrl: {PUBLIC_URL}, tls: {{secretName: events-tls}}}}
turn:
  enabled: true
  urls: ["turn:turn.example.com:3478?transport=udp", "turn:turn.example.com:3478?transport=tcp"]
"#
    );
    let rendered = render(cluster, &release, &turn_values).await;
    let turn_kinds = kinds(&rendered);
    assert_eq!(
        turn_kinds.iter().filter(|k| *k == "Deployment").count(),
        3,
        "operator, control plane and coturn: {turn_kinds:?}"
    );
    let out = server_validate(cluster, &rendered).await;
    assert!(
        out.success(),
        "the API server refused the chart rendered with\n{turn_values}\n{}",
        out.stderr
    );
    assert_eq!(
        out.stdout.lines().count(),
        turn_kinds.len(),
        "{}",
        out.stdout
    );
    let warnings = warnings_of(&out.stderr);
    assert_eq!(
        warnings,
        [
            "Warning: would violate PodSecurity \"restricted:latest\": host namespaces (hostNetwork=true)"
        ],
        "coturn's pod meets Pod Security `restricted` but for the host's network:\n{}",
        out.stderr
    );

    // TURN over TLS on 443: coturn mounts the Secret and serves TLS there; binding below 1024
    // as uid 65534 takes its image's file capability, so Pod Security also flags
    // allowPrivilegeEscalation, and nothing else (the only capability added is
    // NET_BIND_SERVICE, which `restricted` allows).
    let tls_values = format!(
        r#"
api: {{publicUrl: {PUBLIC_URL}}}
turn:
  enabled: true
  urls: ["turn:turn.example.com:3478?transport=tcp", "turns:turn.example.com:443?transport=tcp"]
  tls: {{secretName: turn-tls}}
"#
    );
    let rendered = render(cluster, &release, &tls_values).await;
    for arg in [
        "--tls-listening-port=443",
        "/etc/coturn/tls/tls.crt",
        "secretName: turn-tls",
    ] {
        assert!(rendered.contains(arg), "{arg} in\n{rendered}");
    }
    assert!(
        !rendered.lines().any(|l| l.trim() == "- --no-tls"),
        "TLS is on"
    );
    let out = server_validate(cluster, &rendered).await;
    assert!(out.success(), "{}", out.stderr);
    let warnings = warnings_of(&out.stderr);
    assert_eq!(
        warnings,
        [
            "Warning: would violate PodSecurity \"restricted:latest\": host namespaces (hostNetwork=true), allowPrivilegeEscalation != false (container \"coturn\" must set securityContext.allowPrivilegeEscalation=false)"
        ],
        "{}",
        out.stderr
    );
    // On a port from 1024 up, no privilege at all.
    let high = render(
        cluster,
        &release,
        &tls_values
            .replace("turns:turn.example.com:443", "turns:turn.example.com:5349")
            .replace(
                "{secretName: turn-tls}",
                "{secretName: turn-tls, port: 5349}",
            ),
    )
    .await;
    assert!(high.contains("--tls-listening-port=5349"), "{high}");
    assert!(!high.contains("NET_BIND_SERVICE"), "{high}");
    // TLS with no turns: URL for browsers is refused before anything is installed.
    let out = cluster
        .helm_with_stdin(
            &["template", "rt", &chart(), "-n", &release, "--values", "-"],
            &format!(
                "api: {{publicUrl: {PUBLIC_URL}}}\nturn: {{enabled: true, urls: [\"turn:turn.example.com:3478\"], tls: {{secretName: turn-tls}}}}\n"
            ),
        )
        .await
        .unwrap();
    assert!(!out.success(), "TLS without a turns: URL renders");
    assert!(
        out.stderr
            .contains("turn.urls lists no turns: URL for browsers to use"),
        "{}",
        out.stderr
    );

    // The validator bites: a misspelt field and a wrong type in the same output are refused.
    let rendered = render(cluster, &release, &value_sets[0].0).await;
    let misspelt = rendered.replacen("serviceAccountName:", "serviceAccount_Name:", 1);
    let out = server_validate(cluster, &misspelt).await;
    assert!(!out.success(), "a misspelt field is refused");
    assert!(
        out.stderr.contains("serviceAccount_Name"),
        "names the field: {}",
        out.stderr
    );
    let wrong_type = rendered.replacen("replicas: 2", "replicas: two", 1);
    let out = server_validate(cluster, &wrong_type).await;
    assert!(!out.success(), "a wrong type is refused: {}", out.stdout);
}

/// Builds `bin` of `package` (in folder `crate_dir`) from this checkout and returns a hard link
/// to it in `dir`. Several checkouts may share one cargo target directory (`CARGO_TARGET_DIR`):
/// their builds of a crate land in the same files, and cargo, which compares source times,
/// takes another checkout's newer build as up to date. Marking the crate's `lib.rs` and
/// `main.rs` as changed makes cargo compile this checkout's sources, and the link keeps the
/// result while other builds replace the path.
async fn this_checkouts_binary(package: &str, bin: &str, crate_dir: &str, dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(crate_dir)
        .join("src");
    // With the binaries prebuilt (ROUNDTABLE_PREBUILT_BINARIES) nothing is built here, and
    // marking the sources changed would only make the next cargo command rebuild them.
    let prebuilt = std::env::var_os(node_agent::PREBUILT_ENV)
        .is_some_and(|dir| Path::new(&dir).join(bin).is_file());
    for file in ["lib.rs", "main.rs"].map(|f| src.join(f)) {
        if file.exists() && !prebuilt {
            std::fs::File::options()
                .append(true)
                .open(&file)
                .and_then(|f| f.set_modified(SystemTime::now()))
                .unwrap_or_else(|e| panic!("marking {} changed: {e}", file.display()));
        }
    }
    let binary = node_agent::workspace_binary(package, bin).await.unwrap();
    let link = dir.join(bin);
    if std::fs::hard_link(&binary, &link).is_err() {
        std::fs::copy(&binary, &link).unwrap();
    }
    link
}

/// The ServiceAccount credentials stand in for the token the kubelet would mount (see
/// [`roundtable_entrypoint`]); the node agent projects the chart's Secret and emptyDir
/// volumes; everything else is the chart's pods as rendered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_runs_the_operator_and_control_plane_with_the_charts_rbac_and_a_session_goes_live()
 {
    let cluster = Cluster::shared().await.unwrap();
    cluster.start_controller_manager().await.unwrap();
    cluster.start_scheduler().await.unwrap();
    let ns = cluster.namespace("helm-live").await.unwrap();
    let admin = ns.client.clone();

    // An external registration system's key, which the chart mounts from a Secret.
    let registration_key = cluster
        .create_registration_secret(admin.clone(), &ns.name)
        .await
        .unwrap();

    // The default install (cluster-wide) on this test's nodes; the control plane keeps its
    // database on an emptyDir (no storage provisioner here).
    let values = format!(
        r#"
api:
  publicUrl: {PUBLIC_URL}
  registration: {{keySecret: registration}}
  database: {{persistence: {{enabled: false}}}}
  nodeSelector: {{e2e.roundtable.dev/pool: {pool}}}
  tolerations: [{{key: e2e.roundtable.dev/pool, operator: Equal, value: {pool}, effect: NoSchedule}}]
bindAddress: "$(POD_IP)"
media: {{hostPorts: {{first: 34000, last: 34099}}}}
operator:
  drainGraceSeconds: 3
  statsIntervalSeconds: 1
  nodeSelector: {{e2e.roundtable.dev/pool: {pool}}}
  tolerations: [{{key: e2e.roundtable.dev/pool, operator: Equal, value: {pool}, effect: NoSchedule}}]
"#,
        pool = ns.name
    );
    let begun = Instant::now();
    ok(cluster.helm_install("rt", &ns.name, &values).await.unwrap());
    eprintln!("e2e: helm install in {:.2?}", begun.elapsed());
    let operator_account = "rt-roundtable-operator";
    let api_account = "rt-roundtable-api";

    // The CRDs came from the chart and are established.
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for crd in roundtable_crds::generate::crds() {
        let name = crd.metadata.name.unwrap();
        wait_until(
            &format!("CRD {name} established"),
            Duration::from_secs(30),
            async || {
                let crd = crds.get(&name).await.ok()?;
                crd.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            },
        )
        .await;
    }

    let scratch = cluster.dir().join(&ns.name);
    std::fs::create_dir_all(&scratch).unwrap();
    let operator_kubeconfig = scratch.join("operator.kubeconfig");
    cluster
        .service_account_kubeconfig(&ns.name, operator_account, &operator_kubeconfig)
        .await
        .unwrap();
    let api_kubeconfig = scratch.join("api.kubeconfig");
    cluster
        .service_account_kubeconfig(&ns.name, api_account, &api_kubeconfig)
        .await
        .unwrap();
    let roundtable =
        this_checkouts_binary("roundtable", "roundtable", "roundtable", &scratch).await;
    let sfu = this_checkouts_binary("sfu-node", "sfu-node", "sfu-node", &scratch).await;
    let entrypoint = roundtable_entrypoint(
        &scratch.join("roundtable-image.sh"),
        &roundtable,
        &operator_kubeconfig,
        &api_kubeconfig,
    )
    .unwrap();
    let images = ImageMap::new()
        .map("roundtable", entrypoint)
        .map("sfu-node", sfu);
    let system = NodeSpec::new(format!("{}-system", ns.name))
        .label("e2e.roundtable.dev/pool", &ns.name)
        .taint("e2e.roundtable.dev/pool", &ns.name, "NoSchedule")
        .cpu("4")
        .memory("8Gi");
    let media = |suffix: &str| {
        NodeSpec::new(format!("{}-{suffix}", ns.name))
            .label("roundtable.dev/media", "true")
            .taint("roundtable.dev/media", "", "NoSchedule")
            .cpu("8")
            .memory("16Gi")
    };
    let agent = NodeAgent::start(cluster, vec![system, media("a"), media("b")], images)
        .await
        .unwrap();

    // Both replicas run and are ready (the follower too), one holds the Lease.
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &ns.name);
    let started = Instant::now();
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns.name);
    let operator_pods = || async {
        pods.list(&ListParams::default().labels("app.kubernetes.io/component=operator"))
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|p| p.metadata.name.unwrap())
            .collect::<Vec<String>>()
    };
    let both_ready = poll(Duration::from_secs(120), async || {
        let d = deployments.get("rt-roundtable-operator").await.ok()?;
        (d.status?.ready_replicas? == 2).then_some(())
    })
    .await;
    if both_ready.is_none() {
        let logs: Vec<String> = operator_pods()
            .await
            .iter()
            .map(|p| format!("{p}:\n{}", agent.log(&ns.name, p, "operator")))
            .collect();
        panic!(
            "timed out after 120s waiting for both operator replicas to be ready; their logs:\n{}",
            logs.join("\n")
        );
    }
    eprintln!(
        "e2e: operator Deployment 2/2 ready {:.2?} after the nodes came up",
        started.elapsed()
    );
    let operator_pods = operator_pods().await;
    assert_eq!(operator_pods.len(), 2, "{operator_pods:?}");
    // Cluster-wide, the operator watches nodes (for the most CPU one node gives an SFU pod)
    // and never changes them.
    let account = (ns.name.as_str(), "rt-roundtable-operator");
    assert!(can_i(cluster, account, &["watch", "nodes"]).await);
    assert!(!can_i(cluster, account, &["patch", "nodes"]).await);
    let leases: Api<Lease> = Api::namespaced(admin.clone(), &ns.name);
    let holder = wait_until("a leader", Duration::from_secs(30), async || {
        leases
            .get("roundtable-operator")
            .await
            .ok()?
            .spec?
            .holder_identity
    })
    .await;
    assert!(
        operator_pods.contains(&holder),
        "the Lease is held by a replica ({holder}), not by {operator_pods:?}"
    );

    // The control plane runs with the chart's ServiceAccount and is ready once it has read
    // every kind (list and watch in every namespace).
    wait_until(
        "the control plane to be ready",
        Duration::from_secs(120),
        async || {
            let d = deployments.get("rt-roundtable-api").await.ok()?;
            (d.status?.ready_replicas? == 1).then_some(())
        },
    )
    .await;
    let api_pod = pods
        .list(&ListParams::default().labels("app.kubernetes.io/component=api"))
        .await
        .unwrap()
        .items
        .remove(0);
    let api_pod_name = api_pod.metadata.name.clone().unwrap();
    let api_ip = api_pod.status.unwrap().pod_ip.unwrap();
    let base = format!("http://{api_ip}:8080");

    // The user applies the example; an organiser (an email in the event's organizers, signed
    // in through the registration system) presses Start in the control plane, which patches
    // the session with its own RBAC; the operator brings it Live.
    let gala = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/gala.yaml");
    ok(cluster
        .kubectl(&["apply", "-n", &ns.name, "-f", gala.to_str().unwrap()])
        .await
        .unwrap());
    let http_client = reqwest::Client::new();
    let ada = registration_token(registration_key.as_bytes(), "ada@example.com", "Ada");
    let session_url = format!("{base}/api/sessions/{}/{SESSION}", ns.name);
    // The control plane's watch may not have seen the new session yet: 404 until it has.
    let started = post_until_ok(&http_client, &format!("{session_url}/start"), &ada).await;
    if let Err(last) = started {
        panic!(
            "Start through the control plane: {last}\nits log:\n{}",
            agent.log(&ns.name, &api_pod_name, "api")
        );
    }
    let sessions: Api<Session> = Api::namespaced(admin.clone(), &ns.name);
    let started = Instant::now();
    let endpoint = poll(Duration::from_secs(120), async || {
        let status = sessions.get(SESSION).await.ok()?.status?;
        (status.phase == Some(LivePhase::Live)).then_some(status.endpoint?)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "the session did not go Live in 120s; the leader's log:\n{}",
            agent.log(&ns.name, &holder, "operator")
        )
    });
    eprintln!("e2e: Start to Live in {:.2?}", started.elapsed());

    // The organiser joins through the control plane, which signs a join token with the key
    // the chart generated; the SFU verifies it with the same key and lets her on camera.
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns.name);
    let secret = secrets.get("roundtable-join-token").await.unwrap();
    let key = secret.data.unwrap().remove("key").unwrap().0;
    assert_eq!(key.len(), 64, "a generated 64-character key");
    let joined: serde_json::Value =
        post_until_ok(&http_client, &format!("{session_url}/join"), &ada)
            .await
            .map(|body| serde_json::from_str(&body).expect("a join answer is JSON"))
            .unwrap_or_else(|last| panic!("join through the control plane: {last}"));
    let sfu_url = joined["sfu"].as_str().unwrap();
    let room = joined["room"].as_str().unwrap();
    let token = joined["token"].as_str().unwrap();
    assert_eq!(
        sfu_url.trim_start_matches("http://"),
        endpoint,
        "the control plane sends people to the session's SFU"
    );
    let http = endpoint.parse().expect("endpoint is host:port");
    let whip = format!("/rooms/{room}/whip");
    let claims = Claims::new("ada@example.com", "Ada", room, unix_now() + 600);
    let wrong = mint(b"not-the-charts-key-not-the-charts-key", &claims);
    let refused = ClientPeer::connect(
        http,
        &whip,
        &wrong,
        ClientRole::Publish { simulcast: false },
    )
    .await;
    assert!(
        refused.is_err(),
        "a token signed with another key is refused"
    );
    ClientPeer::connect(http, &whip, token, ClientRole::Publish { simulcast: false })
        .await
        .expect("the SFU accepts the control plane's token, signed with the chart's key");

    // SFU pods have no API credentials, and their ServiceAccount cannot read Secrets.
    let sfu_pod = pods.get(&format!("session-{SESSION}")).await.unwrap();
    let spec = sfu_pod.spec.unwrap();
    assert_eq!(spec.automount_service_account_token, Some(false));
    assert!(
        spec.containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .all(|m| !m.mount_path.contains("serviceaccount")),
        "no token is mounted"
    );
    let sfu_account = spec.service_account_name.unwrap_or("default".into());
    let sfu_client = cluster
        .service_account_client(&ns.name, &sfu_account)
        .await
        .unwrap();
    assert_forbidden(
        Api::<Secret>::namespaced(sfu_client.clone(), &ns.name)
            .get("roundtable-join-token")
            .await,
        "the SFU's ServiceAccount reads the join-token Secret",
    );
    assert_forbidden(
        Api::<Pod>::namespaced(sfu_client, &ns.name)
            .list(&ListParams::default())
            .await,
        "the SFU's ServiceAccount lists pods",
    );

    // The operator, with the chart's RBAC, cannot touch what it does not manage.
    let operator = cluster
        .service_account_client(&ns.name, operator_account)
        .await
        .unwrap();
    assert_forbidden(
        Api::<Secret>::namespaced(operator.clone(), &ns.name)
            .list(&Default::default())
            .await,
        "the operator lists Secrets",
    );
    assert_forbidden(
        Api::<Deployment>::namespaced(operator.clone(), &ns.name)
            .delete("rt-roundtable-operator", &DeleteParams::default())
            .await,
        "the operator deletes Deployments",
    );
    assert_forbidden(
        Api::<ConfigMap>::namespaced(operator.clone(), &ns.name)
            .list(&ListParams::default())
            .await,
        "the operator lists ConfigMaps",
    );
    assert_forbidden(
        Api::<Session>::namespaced(operator.clone(), &ns.name)
            .patch(
                SESSION,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"lifecycle": "Ended"}})),
            )
            .await,
        "the operator changes a session's spec",
    );
    assert_forbidden(
        Api::<Lease>::namespaced(operator.clone(), "kube-node-lease")
            .get(&format!("{}-a", ns.name))
            .await,
        "the operator reads another Lease",
    );

    // Uninstall removes the chart's objects and keeps the CRDs (and so everyone's events).
    ok(cluster
        .helm(&[
            "uninstall",
            "rt",
            "-n",
            &ns.name,
            "--wait",
            "--timeout",
            "60s",
        ])
        .await
        .unwrap());
    assert!(
        deployments
            .get_opt("rt-roundtable-operator")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        crds.get_opt("sessions.roundtable.dev")
            .await
            .unwrap()
            .is_some()
    );
    assert!(sessions.get_opt(SESSION).await.unwrap().is_some());
    agent.stop().await.unwrap();
}

fn assert_forbidden<T: std::fmt::Debug>(result: kube::Result<T>, what: &str) {
    match result {
        Err(kube::Error::Api(e)) if e.code == 403 => {}
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

/// `kubectl auth can-i` as a ServiceAccount (the API server's RBAC authorizer answers).
async fn can_i(cluster: &Cluster, account: (&str, &str), args: &[&str]) -> bool {
    let (namespace, name) = account;
    let user = format!("--as=system:serviceaccount:{namespace}:{name}");
    let group = format!("--as-group=system:serviceaccounts:{namespace}");
    let mut all = vec![
        "auth",
        "can-i",
        &user,
        "--as-group=system:serviceaccounts",
        "--as-group=system:authenticated",
        &group,
    ];
    all.extend(args);
    let out = cluster.kubectl(&all).await.unwrap();
    match out.stdout.trim() {
        "yes" => true,
        "no" => false,
        _ => panic!("{}: {}{}", out.command, out.stdout, out.stderr),
    }
}

#[tokio::test]
async fn a_namespaced_install_grants_each_account_only_its_own_work() {
    let cluster = Cluster::shared().await.unwrap();
    let ns = cluster.namespace("helm-scoped").await.unwrap();
    let rooms = cluster.namespace("helm-scoped-rooms").await.unwrap();
    let other = cluster.namespace("helm-scoped-other").await.unwrap();
    // No node runs these pods: this test is about what the API server allows.
    let values = format!(
        r#"
watchNamespace: {ns}
eventNamespaces: [{rooms}]
api:
  publicUrl: {PUBLIC_URL}
  passcodeSecretNamespaces: [{rooms}]
  nodeSelector: {{e2e.roundtable.dev/pool: none}}
operator:
  nodeSelector: {{e2e.roundtable.dev/pool: none}}
"#,
        ns = ns.name,
        rooms = rooms.name
    );
    ok(cluster
        .helm_with_stdin(
            &[
                "install",
                "scoped",
                &chart(),
                "-n",
                &ns.name,
                "--values",
                "-",
            ],
            &values,
        )
        .await
        .unwrap());
    let operator = (ns.name.as_str(), "scoped-roundtable-operator");
    let api = (ns.name.as_str(), "scoped-roundtable-api");
    let (home, elsewhere) = (ns.name.as_str(), other.name.as_str());

    let cases: &[((&str, &str), &[&str], bool)] = &[
        // The operator: its own namespace only.
        (
            operator,
            &["watch", "sessions.roundtable.dev", "-n", home],
            true,
        ),
        (
            operator,
            &[
                "patch",
                "sessions.roundtable.dev",
                "--subresource=status",
                "-n",
                home,
            ],
            true,
        ),
        (operator, &["create", "pods", "-n", home], true),
        (
            operator,
            &["create", "poddisruptionbudgets.policy", "-n", home],
            true,
        ),
        (operator, &["create", "jobs.batch", "-n", home], true),
        (
            operator,
            &["create", "events.events.k8s.io", "-n", home],
            true,
        ),
        (
            operator,
            &[
                "update",
                "leases.coordination.k8s.io/roundtable-operator",
                "-n",
                home,
            ],
            true,
        ),
        (
            operator,
            &["watch", "sessions.roundtable.dev", "-n", elsewhere],
            false,
        ),
        (
            operator,
            &["watch", "sessions.roundtable.dev", "--all-namespaces"],
            false,
        ),
        (operator, &["create", "pods", "-n", elsewhere], false),
        (
            operator,
            &["patch", "sessions.roundtable.dev", "-n", home],
            false,
        ),
        // The autoscaler sets relays through the scale subresource, like an HPA.
        (
            operator,
            &[
                "patch",
                "sessions.roundtable.dev",
                "--subresource=scale",
                "-n",
                home,
            ],
            true,
        ),
        (
            operator,
            &[
                "patch",
                "stages.roundtable.dev",
                "--subresource=scale",
                "-n",
                home,
            ],
            true,
        ),
        (
            operator,
            &[
                "patch",
                "rooms.roundtable.dev",
                "--subresource=scale",
                "-n",
                home,
            ],
            false,
        ),
        (operator, &["get", "secrets", "-n", home], false),
        // It reads a Secret by name only where the control plane reads passcodes, to report a
        // missing one (a claim where it watches); it never lists them.
        (
            operator,
            &["get", "secrets", "-n", rooms.name.as_str()],
            true,
        ),
        (
            operator,
            &["list", "secrets", "-n", rooms.name.as_str()],
            false,
        ),
        (
            operator,
            &["get", "persistentvolumeclaims", "-n", home],
            true,
        ),
        (operator, &["delete", "deployments.apps", "-n", home], false),
        (
            operator,
            &[
                "update",
                "leases.coordination.k8s.io/some-other-lease",
                "-n",
                home,
            ],
            false,
        ),
        // A namespaced install does not read nodes (a cluster-wide one watches them for the
        // most CPU one node gives an SFU pod, see `helm_install_runs_the_operator…`); it sizes
        // SFU pods by media.maxCoresPerPod alone.
        (operator, &["list", "nodes"], false),
        (operator, &["watch", "nodes"], false),
        // The control plane: reads the API, changes sessions, stages and rooms, reads
        // passcodes only where told.
        (
            api,
            &["list", "liveevents.roundtable.dev", "-n", home],
            true,
        ),
        (
            api,
            &["create", "sessions.roundtable.dev", "-n", home],
            true,
        ),
        (
            api,
            &["delete", "sessions.roundtable.dev", "-n", home],
            true,
        ),
        (api, &["patch", "stages.roundtable.dev", "-n", home], true),
        (api, &["patch", "rooms.roundtable.dev", "-n", home], true),
        (api, &["get", "secrets", "-n", rooms.name.as_str()], true),
        (api, &["get", "secrets", "-n", home], false),
        (api, &["list", "secrets", "-n", rooms.name.as_str()], false),
        (
            api,
            &[
                "patch",
                "sessions.roundtable.dev",
                "--subresource=status",
                "-n",
                home,
            ],
            false,
        ),
        // Hosts' dashboard rooms: Rooms and their passcode Secrets are created, changed and
        // deleted in the rooms namespace (here the watched one), nowhere else; Secrets are
        // still never read there.
        (api, &["create", "rooms.roundtable.dev", "-n", home], true),
        (api, &["delete", "rooms.roundtable.dev", "-n", home], true),
        (api, &["create", "secrets", "-n", home], true),
        (
            api,
            &["delete", "rooms.roundtable.dev", "-n", rooms.name.as_str()],
            false,
        ),
        (
            api,
            &["create", "rooms.roundtable.dev", "-n", elsewhere],
            false,
        ),
        (api, &["delete", "secrets", "-n", home], false),
        (api, &["create", "pods", "-n", home], false),
        (
            api,
            &["list", "sessions.roundtable.dev", "-n", elsewhere],
            false,
        ),
    ];
    let mut wrong = Vec::new();
    for (account, args, expected) in cases {
        if can_i(cluster, *account, args).await != *expected {
            wrong.push(format!("{} {args:?}: expected {expected}", account.1));
        }
    }
    assert!(wrong.is_empty(), "RBAC differs:\n{}", wrong.join("\n"));

    // The join-token Secret is in the release namespace (for the control plane) and in the
    // rooms' namespace (for SFU pods), with the same key.
    let key = |client: Client, namespace: String| async move {
        Api::<Secret>::namespaced(client, &namespace)
            .get("roundtable-join-token")
            .await
            .unwrap()
            .data
            .unwrap()
            .remove("key")
            .unwrap()
            .0
    };
    let home_key = key(ns.client.clone(), ns.name.clone()).await;
    assert_eq!(home_key, key(ns.client.clone(), rooms.name.clone()).await);

    // An upgrade keeps the generated key.
    ok(cluster
        .helm_with_stdin(
            &[
                "upgrade",
                "scoped",
                &chart(),
                "-n",
                &ns.name,
                "--values",
                "-",
                "--set",
                "operator.logLevel=debug",
            ],
            &values,
        )
        .await
        .unwrap());
    assert_eq!(home_key, key(ns.client.clone(), ns.name.clone()).await);
}

/// `PATH`'s `name`, if installed.
fn installed(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// base64(HMAC-SHA1(secret, username)), computed by openssl: what coturn's
/// `use-auth-secret` expects as the password of `username`.
fn turn_rest_password(secret: &[u8], username: &str) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new("sh")
        .args(["-c", "openssl dgst -sha1 -hmac \"$KEY\" -binary | base64"])
        .env("KEY", String::from_utf8(secret.to_vec()).unwrap())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(username.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The chart with `api.tls` (HTTPS served by the control plane itself, with a certificate of
/// the cluster's CA standing in for the user's) and `turn.enabled` (coturn on the node's
/// network, run by the node agent from Debian's `turnserver`): the control plane answers
/// HTTPS for the public name with that certificate and nothing in plain HTTP, an organiser
/// starts a session over HTTPS, and her join answer lists the chart's TURN URLs with
/// credentials that expire after `turn.credentialTtlSeconds`, whose password is the TURN REST
/// HMAC of the shared secret coturn was started with; coturn takes it over TCP and, with
/// `turn.tls`, over TLS on 443 (`turns:`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_with_tls_and_turn_serves_https_and_gives_each_join_turn_credentials() {
    let turnserver = installed("turnserver").expect(
        "coturn's turnserver is not installed: scripts/install-deps installs Debian's coturn",
    );
    let cluster = Cluster::shared().await.unwrap();
    cluster.start_controller_manager().await.unwrap();
    cluster.start_scheduler().await.unwrap();
    let ns = cluster.namespace("helm-tls").await.unwrap();
    let admin = ns.client.clone();
    let registration_key = cluster
        .create_registration_secret(admin.clone(), &ns.name)
        .await
        .unwrap();
    let scratch = cluster.dir().join(&ns.name);
    std::fs::create_dir_all(&scratch).unwrap();

    // The public origin's certificate, in the kubernetes.io/tls Secret `api.tls` names, and
    // coturn's for TURN over TLS, for the name the `turns:` URL gives.
    let host = "events.example.com";
    let turn_host = "turn.example.com";
    for (secret, name) in [("events-tls", host), ("turn-tls", turn_host)] {
        cluster
            .tls_secret(&ns.name, secret, name, &scratch)
            .await
            .unwrap();
    }

    // The nodes come first: coturn listens at its node's address, which the TURN URLs name.
    let operator_kubeconfig = scratch.join("operator.kubeconfig");
    let api_kubeconfig = scratch.join("api.kubeconfig");
    let roundtable =
        this_checkouts_binary("roundtable", "roundtable", "roundtable", &scratch).await;
    let sfu = this_checkouts_binary("sfu-node", "sfu-node", "sfu-node", &scratch).await;
    let entrypoint = roundtable_entrypoint(
        &scratch.join("roundtable-image.sh"),
        &roundtable,
        &operator_kubeconfig,
        &api_kubeconfig,
    )
    .unwrap();
    let images = ImageMap::new()
        .map("roundtable", entrypoint)
        .map("sfu-node", sfu)
        .map("coturn", turnserver);
    let pool = ns.name.clone();
    let system = NodeSpec::new(format!("{pool}-system"))
        .label("e2e.roundtable.dev/pool", &pool)
        .taint("e2e.roundtable.dev/pool", &pool, "NoSchedule")
        .cpu("4")
        .memory("8Gi");
    let edge = NodeSpec::new(format!("{pool}-edge"))
        .label("e2e.roundtable.dev/turn", &pool)
        .taint("e2e.roundtable.dev/pool", &pool, "NoSchedule")
        .cpu("2")
        .memory("4Gi");
    let media = NodeSpec::new(format!("{pool}-media"))
        .label("roundtable.dev/media", "true")
        .taint("roundtable.dev/media", "", "NoSchedule")
        .cpu("8")
        .memory("16Gi");
    let agent = NodeAgent::start(cluster, vec![system, edge, media], images)
        .await
        .unwrap();
    let edge_ip = agent
        .nodes()
        .iter()
        .find(|(name, _)| name.ends_with("-edge"))
        .unwrap()
        .1;
    let turn_urls = [
        format!("turn:{edge_ip}:3478?transport=udp"),
        format!("turn:{edge_ip}:3478?transport=tcp"),
        format!("turns:{turn_host}:443?transport=tcp"),
    ];

    let placement = format!(
        "nodeSelector: {{e2e.roundtable.dev/pool: {pool}}}\n  tolerations: [{{key: e2e.roundtable.dev/pool, operator: Equal, value: {pool}, effect: NoSchedule}}]"
    );
    let values = format!(
        r#"
api:
  publicUrl: https://{host}
  tls: {{secretName: events-tls}}
  registration: {{keySecret: registration}}
  database: {{persistence: {{enabled: false}}}}
  {placement}
bindAddress: "$(POD_IP)"
media: {{hostPorts: {{first: 34100, last: 34199}}}}
operator:
  drainGraceSeconds: 3
  statsIntervalSeconds: 1
  {placement}
turn:
  enabled: true
  urls: ["{udp}", "{tcp}", "{tls}"]
  tls: {{secretName: turn-tls}}
  credentialTtlSeconds: 600
  relayPorts: {{min: 49160, max: 49199}}
  nodeSelector: {{e2e.roundtable.dev/turn: {pool}}}
  tolerations: [{{key: e2e.roundtable.dev/pool, operator: Equal, value: {pool}, effect: NoSchedule}}]
"#,
        udp = turn_urls[0],
        tcp = turn_urls[1],
        tls = turn_urls[2],
    );
    ok(cluster.helm_install("rt", &ns.name, &values).await.unwrap());
    cluster
        .service_account_kubeconfig(&ns.name, "rt-roundtable-operator", &operator_kubeconfig)
        .await
        .unwrap();
    cluster
        .service_account_kubeconfig(&ns.name, "rt-roundtable-api", &api_kubeconfig)
        .await
        .unwrap();

    // coturn runs on its node's network with the chart's shared secret.
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns.name);
    let turn_pod = wait_until("coturn to be ready", Duration::from_secs(60), async || {
        let pods = pods
            .list(&ListParams::default().labels("app.kubernetes.io/component=turn"))
            .await
            .ok()?;
        let pod = pods.items.into_iter().next()?;
        node_agent::is_ready(&pod).then_some(pod)
    })
    .await;
    let turn_pod_name = turn_pod.metadata.name.clone().unwrap();
    assert_eq!(
        turn_pod.status.unwrap().pod_ip.as_deref(),
        Some(edge_ip.to_string().as_str()),
        "coturn has its node's address (hostNetwork)"
    );
    for port in [3478, 443] {
        let listening = poll(Duration::from_secs(30), async || {
            tokio::net::TcpStream::connect((edge_ip, port)).await.ok()
        })
        .await;
        assert!(
            listening.is_some(),
            "coturn listens on {edge_ip}:{port}; its log:\n{}",
            agent.log(&ns.name, &turn_pod_name, "coturn")
        );
    }

    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &ns.name);
    let api_ready = poll(Duration::from_secs(120), async || {
        let d = deployments.get("rt-roundtable-api").await.ok()?;
        (d.status?.ready_replicas? == 1).then_some(())
    })
    .await;
    let api_pod = pods
        .list(&ListParams::default().labels("app.kubernetes.io/component=api"))
        .await
        .unwrap()
        .items
        .remove(0);
    let api_pod_name = api_pod.metadata.name.clone().unwrap();
    assert!(
        api_ready.is_some(),
        "the control plane was not ready in 120s; its log:\n{}",
        agent.log(&ns.name, &api_pod_name, "api")
    );
    let api_ip: std::net::IpAddr = api_pod.status.unwrap().pod_ip.unwrap().parse().unwrap();

    // A browser that trusts the user's CA and resolves the public name to the control plane.
    let ca = std::fs::read(cluster.ca_cert()).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .resolve(host, std::net::SocketAddr::new(api_ip, 8080))
        .build()
        .unwrap();
    // reqwest sends to the URL's port, not the resolved address's: name 8080 in the URL.
    let base = format!("https://{host}:8080");
    let page = https
        .get(format!("{base}/"))
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "GET {base}/ over HTTPS: {e:?}; the control plane's log:\n{}",
                agent.log(&ns.name, &api_pod_name, "api")
            )
        });
    assert!(page.status().is_success(), "GET {base}/: {}", page.status());
    let plain = reqwest::Client::new()
        .get(format!("http://{api_ip}:8080/"))
        .send()
        .await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "no page in plain HTTP on the HTTPS port"
    );
    // A client that does not trust the CA is refused: the certificate is the one the Secret holds.
    let untrusting = reqwest::Client::builder()
        .resolve(host, std::net::SocketAddr::new(api_ip, 8080))
        .build()
        .unwrap()
        .get(format!("{base}/"))
        .send()
        .await;
    assert!(
        untrusting.is_err(),
        "a client without the CA refuses the certificate"
    );

    // An organiser starts the example session over HTTPS; the operator brings it Live.
    let gala = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/gala.yaml");
    ok(cluster
        .kubectl(&["apply", "-n", &ns.name, "-f", gala.to_str().unwrap()])
        .await
        .unwrap());
    let ada = registration_token(registration_key.as_bytes(), "ada@example.com", "Ada");
    let session_url = format!("{base}/api/sessions/{}/{SESSION}", ns.name);
    let started = post_until_ok(&https, &format!("{session_url}/start"), &ada).await;
    if let Err(last) = started {
        panic!("Start over HTTPS: {last}");
    }
    let sessions: Api<Session> = Api::namespaced(admin.clone(), &ns.name);
    poll(Duration::from_secs(120), async || {
        let status = sessions.get(SESSION).await.ok()?.status?;
        (status.phase == Some(LivePhase::Live)).then_some(())
    })
    .await
    .expect("the session goes Live");

    // Her join answer carries TURN with credentials of its own, valid for the chart's TTL.
    let joined: serde_json::Value = post_until_ok(&https, &format!("{session_url}/join"), &ada)
        .await
        .map(|body| serde_json::from_str(&body).expect("a join answer is JSON"))
        .unwrap_or_else(|last| panic!("join over HTTPS: {last}"));
    let joined_at = unix_now();
    let ice = joined["iceServers"]
        .as_array()
        .unwrap_or_else(|| panic!("iceServers in {joined}"));
    assert_eq!(ice.len(), 1, "{joined}");
    assert_eq!(ice[0]["urls"], serde_json::json!(turn_urls), "{joined}");
    let username = ice[0]["username"].as_str().unwrap();
    let expires: u64 = username.split(':').next().unwrap().parse().unwrap();
    assert!(
        (joined_at + 590..=joined_at + 600).contains(&expires),
        "the credential expires turn.credentialTtlSeconds (600) after the join: {username} at {joined_at}"
    );
    let secret = Api::<Secret>::namespaced(admin.clone(), &ns.name)
        .get("rt-turn")
        .await
        .unwrap()
        .data
        .unwrap()
        .remove("secret")
        .unwrap()
        .0;
    assert_eq!(secret.len(), 48, "a generated 48-character shared secret");
    assert_eq!(
        ice[0]["credential"].as_str().unwrap(),
        turn_rest_password(&secret, username),
        "the password is base64(HMAC-SHA1(shared secret, username)), as coturn checks it"
    );
    let again: serde_json::Value = https
        .post(format!("{session_url}/join"))
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(
        again["iceServers"][0]["username"], ice[0]["username"],
        "each join gets its own credential"
    );

    // coturn, started by the chart with that secret, accepts the join's credential and relays
    // at its node's address; a wrong password, and a credential past its expiry, are refused.
    let server = std::net::SocketAddr::new(edge_ip.into(), 3478);
    let password = ice[0]["credential"].as_str().unwrap();
    let turn_log = || agent.log(&ns.name, &turn_pod_name, "coturn");
    match turn::allocate(server, username, password).await.unwrap() {
        Allocation::Relayed(relay) => {
            assert_eq!(
                relay.ip(),
                std::net::IpAddr::V4(edge_ip),
                "relayed at the node"
            );
            assert!(
                (49160..=49199).contains(&relay.port()),
                "in turn.relayPorts: {relay}"
            );
            eprintln!("e2e: coturn relays for the join's credential at {relay}");
        }
        refused => panic!(
            "coturn refused the join's credential: {refused:?}; its log:\n{}",
            turn_log()
        ),
    }
    // The same credential over TLS on 443, the Secret's certificate checked as a browser does
    // for the `turns:` URL's name; a client expecting another name refuses the handshake.
    let tls_server = std::net::SocketAddr::new(edge_ip.into(), 443);
    match turn::allocate_tls(tls_server, turn_host, &ca, username, password)
        .await
        .unwrap_or_else(|e| panic!("TURN over TLS: {e}; coturn's log:\n{}", turn_log()))
    {
        Allocation::Relayed(relay) => {
            assert_eq!(relay.ip(), std::net::IpAddr::V4(edge_ip));
            eprintln!("e2e: coturn relays over TLS on 443 for the join's credential at {relay}");
        }
        refused => panic!(
            "coturn refused the join's credential over TLS: {refused:?}; its log:\n{}",
            turn_log()
        ),
    }
    let other_name =
        turn::allocate_tls(tls_server, "other.example.com", &ca, username, password).await;
    assert!(
        other_name.is_err(),
        "a certificate for {turn_host} is not taken for another name: {other_name:?}"
    );
    let wrong = turn::allocate(server, username, "not-the-password")
        .await
        .unwrap();
    assert!(
        matches!(wrong, Allocation::Refused(401, _)),
        "a wrong password: {wrong:?}"
    );
    let expired_name = format!("{}:someone", unix_now() - 60);
    let expired = turn::allocate(
        server,
        &expired_name,
        &turn_rest_password(&secret, &expired_name),
    )
    .await
    .unwrap();
    assert!(
        matches!(expired, Allocation::Refused(401, _)),
        "an expired credential, rightly signed: {expired:?}"
    );
    eprintln!(
        "e2e: HTTPS with the Secret's certificate; TURN {} with a credential valid {}s",
        turn_urls.join(", "),
        expires - joined_at
    );
    agent.stop().await.unwrap();
}
