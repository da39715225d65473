//! Smoke test of the shared control plane against a real kube-apiserver.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use roundtable_e2e::{Cluster, TEST_LABEL};
use serde_json::json;

/// (API server URL, namespace) of every test that has run so far in this binary.
static SEEN: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// Records this test's namespace and checks it against those of the tests before it: same
/// server, different namespace, and the earlier namespaces really exist on this server.
async fn record_and_check_sharing(
    cluster: &Cluster,
    ns: &str,
    client: Client,
) -> anyhow::Result<()> {
    let earlier: Vec<(String, String)> = {
        let mut seen = SEEN.lock().unwrap();
        let earlier = seen.clone();
        seen.push((cluster.url().to_owned(), ns.to_owned()));
        earlier
    };
    let on_server: BTreeSet<String> = Api::<Namespace>::all(client)
        .list(&ListParams::default().labels(TEST_LABEL))
        .await?
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(on_server.contains(ns));
    for (url, other) in earlier {
        assert_eq!(
            url,
            cluster.url(),
            "every test in a binary shares one API server"
        );
        assert_ne!(other, ns, "every test gets its own namespace");
        assert!(
            on_server.contains(&other),
            "namespace {other} of an earlier test is on this server"
        );
    }
    Ok(())
}

#[tokio::test]
async fn admin_creates_a_config_map_in_its_own_namespace() -> anyhow::Result<()> {
    let cluster = Cluster::shared().await?;
    let ns = cluster.namespace("smoke-configmap").await?;
    record_and_check_sharing(cluster, &ns.name, ns.client.clone()).await?;

    let maps = Api::<ConfigMap>::default_namespaced(ns.client.clone());
    let map = ConfigMap {
        metadata: ObjectMeta {
            name: Some("greeting".into()),
            ..Default::default()
        },
        data: Some([("hello".to_owned(), "world".to_owned())].into()),
        ..Default::default()
    };
    maps.create(&PostParams::default(), &map).await?;
    let read = maps.get("greeting").await?;
    assert_eq!(read.metadata.namespace.as_deref(), Some(ns.name.as_str()));
    assert_eq!(read.data.unwrap()["hello"], "world");
    Ok(())
}

#[tokio::test]
async fn service_account_is_refused_until_rbac_allows_it() -> anyhow::Result<()> {
    let cluster = Cluster::shared().await?;
    let ns = cluster.namespace("smoke-rbac").await?;
    record_and_check_sharing(cluster, &ns.name, ns.client.clone()).await?;

    let stranger = cluster.impersonating_client("jane", &["developers"])?;
    match Api::<Secret>::namespaced(stranger, &ns.name)
        .list(&ListParams::default())
        .await
    {
        Err(kube::Error::Api(status)) if status.code == 403 => {
            assert!(status.message.contains("\"jane\""), "{}", status.message)
        }
        other => bail!("expected 403 for an impersonated user without RBAC, got {other:?}"),
    }

    let reader = cluster.service_account_client(&ns.name, "reader").await?;
    let secrets = Api::<Secret>::default_namespaced(reader);
    match secrets.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => bail!("expected 403 listing secrets without RBAC, got {other:?}"),
    }

    let role: Role = serde_json::from_value(json!({
        "metadata": { "name": "secret-reader" },
        "rules": [{ "apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"] }],
    }))?;
    Api::<Role>::default_namespaced(ns.client.clone())
        .create(&PostParams::default(), &role)
        .await?;
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": { "name": "reader-reads-secrets" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "secret-reader" },
        "subjects": [{ "kind": "ServiceAccount", "name": "reader", "namespace": ns.name }],
    }))?;
    Api::<RoleBinding>::default_namespaced(ns.client.clone())
        .create(&PostParams::default(), &binding)
        .await?;

    // The RBAC authorizer reads through an informer, so the grant lands a moment later.
    let listed = poll(Duration::from_secs(20), || async {
        secrets.list(&ListParams::default()).await.ok()
    })
    .await
    .context("the service account could not list secrets after the RoleBinding")?;
    assert!(listed.items.is_empty(), "a fresh namespace has no secrets");
    Ok(())
}

#[tokio::test]
async fn kubectl_sees_the_test_namespaces() -> anyhow::Result<()> {
    let cluster = Cluster::shared().await?;
    let ns = cluster.namespace("smoke-kubectl").await?;
    record_and_check_sharing(cluster, &ns.name, ns.client.clone()).await?;

    let out = cluster.kubectl(&["get", "ns"]).await?.ok()?;
    let first = out.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("NAME") && first.contains("STATUS"),
        "header: {first}"
    );
    assert!(
        out.lines().any(|l| l.starts_with(&format!("{} ", ns.name))),
        "{out}"
    );
    assert!(out.lines().any(|l| l.starts_with("kube-system ")), "{out}");

    let manifest =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  via: kubectl\n";
    let applied = cluster
        .kubectl_with_stdin(&["apply", "-n", &ns.name, "-f", "-"], Some(manifest))
        .await?
        .ok()?;
    assert!(applied.contains("configmap/applied created"), "{applied}");
    let map = Api::<ConfigMap>::default_namespaced(ns.client.clone())
        .get("applied")
        .await?;
    assert_eq!(map.data.unwrap()["via"], "kubectl");

    let missing = cluster.kubectl(&["get", "nosuchkinds"]).await?;
    assert!(!missing.success());
    assert!(missing.stderr.contains("nosuchkinds"), "{}", missing.stderr);
    Ok(())
}

#[tokio::test]
async fn controller_manager_runs_jobs_and_collects_their_garbage() -> anyhow::Result<()> {
    let cluster = Cluster::shared().await?;
    cluster.start_controller_manager().await?;
    let ns = cluster.namespace("smoke-gc").await?;
    record_and_check_sharing(cluster, &ns.name, ns.client.clone()).await?;

    let job: Job = serde_json::from_value(json!({
        "metadata": { "name": "once" },
        "spec": {
            "backoffLimit": 0,
            "template": { "spec": {
                "restartPolicy": "Never",
                "containers": [{ "name": "main", "image": "busybox", "command": ["true"] }],
            }},
        },
    }))?;
    let jobs = Api::<Job>::default_namespaced(ns.client.clone());
    jobs.create(&PostParams::default(), &job).await?;

    // The job controller makes a Pod owned by the Job (no kubelet runs it) ...
    let pods = Api::<Pod>::default_namespaced(ns.client.clone());
    let by_job = ListParams::default().labels("job-name=once");
    let pod = poll(Duration::from_secs(60), || async {
        pods.list(&by_job).await.ok()?.items.into_iter().next()
    })
    .await
    .context("the job controller created no pod")?;
    let owner = pod.metadata.owner_references.unwrap_or_default();
    assert!(
        owner.iter().any(|o| o.kind == "Job" && o.name == "once"),
        "{owner:?}"
    );

    // ... and the garbage collector deletes it once the Job is gone.
    jobs.delete("once", &DeleteParams::background()).await?;
    poll(Duration::from_secs(60), || async {
        pods.list(&by_job).await.ok().filter(|l| l.items.is_empty())
    })
    .await
    .context("the garbage collector did not delete the orphaned pod")?;
    Ok(())
}

#[tokio::test]
async fn scheduler_binds_a_pod_to_a_ready_node() -> anyhow::Result<()> {
    let cluster = Cluster::shared().await?;
    cluster.start_scheduler().await?;
    let ns = cluster.namespace("smoke-scheduler").await?;
    record_and_check_sharing(cluster, &ns.name, ns.client.clone()).await?;

    // No kubelet runs here: a Node object that reports Ready stands in for one. It is tainted
    // so that only this test's pod lands on it (a bound pod cannot be deleted without a kubelet).
    let node_name = format!("node-{}", ns.name);
    let node: Node = serde_json::from_value(json!({
        "metadata": { "name": node_name, "labels": { "kubernetes.io/hostname": node_name } },
        "spec": { "taints": [{ "key": "e2e.roundtable.dev/fake-node", "effect": "NoSchedule" }] },
        "status": {
            "capacity": { "cpu": "4", "memory": "8Gi", "pods": "10" },
            "allocatable": { "cpu": "4", "memory": "8Gi", "pods": "10" },
            "conditions": [{ "type": "Ready", "status": "True", "reason": "FakeKubelet" }],
        },
    }))?;
    Api::<Node>::all(ns.client.clone())
        .create(&PostParams::default(), &node)
        .await?;

    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": "placed" },
        "spec": {
            "automountServiceAccountToken": false,
            "nodeSelector": { "kubernetes.io/hostname": node_name },
            "tolerations": [{ "key": "e2e.roundtable.dev/fake-node", "operator": "Exists" }],
            "containers": [{ "name": "main", "image": "busybox" }],
        },
    }))?;
    ensure_default_service_account(&ns.client).await?;
    let pods = Api::<Pod>::default_namespaced(ns.client.clone());
    pods.create(&PostParams::default(), &pod).await?;

    let bound = poll(Duration::from_secs(60), || async {
        pods.get("placed").await.ok()?.spec?.node_name
    })
    .await
    .context("the scheduler did not bind the pod")?;
    assert_eq!(bound, node_name);
    Ok(())
}

/// The ServiceAccount admission plugin wants the `default` account, which only the
/// controller-manager would create.
async fn ensure_default_service_account(client: &Client) -> anyhow::Result<()> {
    let account: ServiceAccount =
        serde_json::from_value(json!({ "metadata": { "name": "default" } }))?;
    match Api::<ServiceAccount>::default_namespaced(client.clone())
        .create(&PostParams::default(), &account)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Polls `f` every 200 ms until it returns `Some` or `timeout` passes.
async fn poll<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(t) = f().await {
            return Some(t);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The SFU pod's PodDisruptionBudget as the real disruption controller reads it: with
/// `minAvailable: 1` it counts the selected pod itself, so it never asks the pod's owner (a
/// Session, whose scale subresource counts relays) for a scale and never reports SyncFailed,
/// and it allows no eviction of a live origin.
#[tokio::test]
async fn the_disruption_controller_keeps_a_live_origin_without_asking_the_session_for_a_scale()
-> anyhow::Result<()> {
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    use kube::Resource;
    use roundtable_crds::Session;
    use roundtable_crds::live_room::LiveRoom;
    use roundtable_operator::plan::pod::{disruption_budget, labels, pod_name};

    let cluster = Cluster::shared().await?;
    cluster.install_crds().await?;
    cluster.start_controller_manager().await?;
    let ns = cluster.namespace("pdb").await?;
    let sessions = Api::<Session>::namespaced(ns.client.clone(), &ns.name);
    let session: Session = serde_json::from_value(json!({
        "apiVersion": "roundtable.dev/v1alpha1",
        "kind": "Session",
        "metadata": {"name": "panel"},
        "spec": {"event": "gala", "title": "Panel"},
    }))?;
    let session = sessions.create(&PostParams::default(), &session).await?;
    let owner = session
        .controller_owner_ref(&())
        .context("a created session has a uid")?;
    let room = LiveRoom::from(&session);
    let name = pod_name(&room);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels(&room), "ownerReferences": [owner]},
        "spec": {"containers": [{"name": "sfu-node", "image": "sfu-node"}]},
    }))?;
    let pods = Api::<Pod>::namespaced(ns.client.clone(), &ns.name);
    pods.create(&PostParams::default(), &pod).await?;
    Api::<PodDisruptionBudget>::namespaced(ns.client.clone(), &ns.name)
        .create(&PostParams::default(), &disruption_budget(&room, owner))
        .await?;
    let pdbs = Api::<PodDisruptionBudget>::namespaced(ns.client.clone(), &ns.name);
    let status = poll(Duration::from_secs(60), || async {
        let status = pdbs.get(&name).await.ok()?.status?;
        (status.expected_pods == Some(1)).then_some(status)
    })
    .await
    .context("the disruption controller never counted the SFU pod")?;
    let allowed = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionAllowed")
        .context("no DisruptionAllowed condition")?;
    assert_ne!(allowed.reason, "SyncFailed", "{allowed:?}");
    assert_eq!(status.disruptions_allowed, Some(0), "{status:?}");
    Ok(())
}
