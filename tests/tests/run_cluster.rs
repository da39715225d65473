//! `./scripts/run-cluster` as a new user runs it (README, "Try it on a local cluster"): the
//! script installs what it needs (`install-deps --cluster`), starts a real Kubernetes control
//! plane with media nodes and the operator, applies `examples/` and prints how to explore it.
//! Then, with only what it printed, the user's first steps work:
//! - the example Rooms, Idle until someone wants to join, go Live when woken as the banner
//!   shows (they need no media node: a general node runs them);
//! - the printed `kubectl patch` starts a session of the gala and it goes Live on a media node;
//! - a Room applied in another namespace goes Live too (the operator watches every namespace);
//! - Ctrl-C stops everything: the script exits and its API server no longer answers.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use roundtable_e2e::wait_until;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The first start compiles nothing in CI (the binaries are prebuilt); the control plane, the
/// nodes and the examples take seconds.
const START_LIMIT: Duration = Duration::from_secs(120);
const LIVE_LIMIT: Duration = Duration::from_secs(60);
const STOP_LIMIT: Duration = Duration::from_secs(30);

/// What the script printed for the user to explore the cluster with.
struct Printed {
    kubeconfig: PathBuf,
    kubectl: PathBuf,
    namespace: String,
    api_server: String,
}

fn parse_printed(text: &str) -> Option<Printed> {
    let after = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(str::to_owned))
    };
    let api_server = text
        .split("local Kubernetes control plane (")
        .nth(1)?
        .split(')')
        .next()?
        .to_owned();
    Some(Printed {
        kubeconfig: after("export KUBECONFIG=")?.into(),
        kubectl: after("alias kubectl=")?.into(),
        namespace: after("kubectl config set-context --current --namespace=")?,
        api_server,
    })
}

impl Printed {
    async fn kubectl(&self, args: &[&str]) -> (bool, String) {
        let output = Command::new(&self.kubectl)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .await
            .expect("running the printed kubectl");
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        (output.status.success(), text)
    }

    async fn kubectl_ok(&self, args: &[&str]) -> String {
        let (ok, text) = self.kubectl(args).await;
        assert!(ok, "kubectl {args:?} failed:\n{text}");
        text
    }

    /// The phase of `kind/name`, if it has one yet.
    async fn phase(&self, namespace: &str, kind: &str, name: &str) -> Option<String> {
        let (ok, text) = self
            .kubectl(&["get", "-n", namespace, kind, name, "-o", "json"])
            .await;
        if !ok {
            return None;
        }
        let object: Value = serde_json::from_str(&text).ok()?;
        object["status"]["phase"].as_str().map(str::to_owned)
    }

    async fn wait_live(&self, namespace: &str, kind: &str, name: &str) -> Duration {
        let begun = Instant::now();
        wait_until(
            &format!("{kind} {namespace}/{name} to be Live"),
            LIVE_LIMIT,
            async || {
                (self.phase(namespace, kind, name).await.as_deref() == Some("Live")).then_some(())
            },
        )
        .await;
        begun.elapsed()
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_path_buf()
}

/// Runs the script in its own process group, as a terminal does, so Ctrl-C can reach the
/// whole group.
fn start_script() -> Child {
    // Under scripts/test-all the binaries of its one release build are used; run alone, the
    // ones cargo built for this test binary.
    let prebuilt = std::env::var_os("ROUNDTABLE_PREBUILT_BINARIES").unwrap_or_else(|| {
        Path::new(env!("CARGO_BIN_EXE_local-cluster"))
            .parent()
            .expect("the binary is in a directory")
            .into()
    });
    Command::new(repo_root().join("scripts/run-cluster"))
        .env("ROUNDTABLE_PREBUILT_BINARIES", prebuilt)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .expect("starting scripts/run-cluster")
}

async fn interrupt(child: &Child) {
    let pid = child.id().expect("the script is running");
    let status = Command::new("kill")
        .args(["-INT", "--", &format!("-{pid}")])
        .status()
        .await
        .expect("running kill");
    assert!(status.success(), "kill -INT of the script's process group");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_cluster_starts_the_examples_and_stops_on_ctrl_c() {
    let begun = Instant::now();
    let mut child = start_script();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let stderr = child.stderr.take().unwrap();
    // The script's last lines on stderr, for a failure's message.
    let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
    tokio::spawn({
        let kept = stderr_tail.clone();
        async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut kept = kept.lock().unwrap();
                if kept.len() == 40 {
                    kept.pop_front();
                }
                kept.push_back(line);
            }
        }
    });
    let tail = move || Vec::from(stderr_tail.lock().unwrap().clone()).join("\n");

    let mut printed = String::new();
    let found = tokio::time::timeout(START_LIMIT, async {
        while let Ok(Some(line)) = stdout.next_line().await {
            printed.push_str(&line);
            printed.push('\n');
            if line.contains("Ctrl-C stops everything") {
                return true;
            }
        }
        false
    })
    .await;
    if found != Ok(true) {
        let _ = interrupt(&child).await;
        let _ = child.wait().await;
        panic!(
            "scripts/run-cluster did not print how to explore the cluster within {START_LIMIT:?}.\n\
             stdout:\n{printed}\nstderr (last lines):\n{}",
            tail()
        );
    }
    let ready = begun.elapsed();
    let user = parse_printed(&printed).unwrap_or_else(|| {
        panic!("the script's banner lacks the kubeconfig, kubectl or namespace:\n{printed}")
    });
    let ns = user.namespace.clone();
    println!(
        "run-cluster: ready to explore in {:.1}s",
        ready.as_secs_f64()
    );

    // A room has a pod only while someone wants to join it: the examples are Idle until the
    // banner's `kubectl annotate` wakes them, then run on the general node.
    let room = "ada-coffee";
    wait_until(
        "the example Room to be reconciled (Idle)",
        LIVE_LIMIT,
        async || (user.phase(&ns, "room", room).await.as_deref() == Some("Idle")).then_some(()),
    )
    .await;
    assert!(
        printed.contains(
            "kubectl annotate room ada-coffee --overwrite roundtable.dev/join-requested-at="
        ),
        "the banner shows how to wake a room:\n{printed}"
    );
    let wake = |room: &'static str, ns: String| {
        let user = &user;
        async move {
            let now = jiff::Timestamp::now().to_string();
            user.kubectl_ok(&[
                "annotate",
                "-n",
                &ns,
                "room",
                room,
                "--overwrite",
                &format!("roundtable.dev/join-requested-at={now}"),
            ])
            .await;
        }
    };
    wake(room, ns.clone()).await;
    let live = user.wait_live(&ns, "room", room).await;
    println!(
        "run-cluster: example Room {room} Live {:.1}s after it was woken",
        live.as_secs_f64()
    );
    for other in ["ada-board", "grace-product-webinar", "linus-team-sync"] {
        wake(other, ns.clone()).await;
        user.wait_live(&ns, "room", other).await;
    }

    // The banner's own command starts a session of the gala, which runs on a media node.
    assert!(
        printed.contains("kubectl patch session gala-future-of-work --type merge -p '{\"spec\":{\"lifecycle\":\"Started\"}}'"),
        "the banner shows how to start a session:\n{printed}"
    );
    user.kubectl_ok(&[
        "patch",
        "-n",
        &ns,
        "session",
        "gala-future-of-work",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"lifecycle":"Started"}}"#,
    ])
    .await;
    let session = user.wait_live(&ns, "session", "gala-future-of-work").await;
    println!(
        "run-cluster: started session Live in {:.1}s",
        session.as_secs_f64()
    );
    let pods = user
        .kubectl_ok(&[
            "get",
            "pods",
            "-n",
            &ns,
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName}{\"\\n\"}{end}",
        ])
        .await;
    let session_pod = pods
        .lines()
        .find(|l| l.contains("gala-future-of-work"))
        .unwrap_or_else(|| panic!("no pod for the started session:\n{pods}"));
    assert!(
        session_pod.contains(" media-"),
        "the session runs on a media node: {session_pod}"
    );

    // Another namespace: the operator watches every one (each needs the join-token Secret,
    // as the chart's README says).
    let other = "second-team";
    user.kubectl_ok(&["create", "namespace", other]).await;
    let secret = user
        .kubectl_ok(&[
            "get",
            "secret",
            "-n",
            &ns,
            "roundtable-join-token",
            "-o",
            "json",
        ])
        .await;
    let mut secret: Value = serde_json::from_str(&secret).unwrap();
    let metadata = secret["metadata"].as_object_mut().unwrap();
    metadata.retain(|k, _| k == "name");
    metadata.insert("namespace".into(), other.into());
    let copy = std::env::temp_dir().join(format!("run-cluster-secret-{}.json", std::process::id()));
    std::fs::write(&copy, secret.to_string()).unwrap();
    user.kubectl_ok(&["apply", "-f", copy.to_str().unwrap()])
        .await;
    let _ = std::fs::remove_file(&copy);
    let open_room = repo_root().join("examples/open-room.yaml");
    user.kubectl_ok(&["apply", "-n", other, "-f", open_room.to_str().unwrap()])
        .await;
    wake(room, other.to_owned()).await;
    let elsewhere = user.wait_live(other, "room", room).await;
    println!(
        "run-cluster: a Room in namespace {other} Live in {:.1}s",
        elsewhere.as_secs_f64()
    );

    // Ctrl-C stops everything.
    interrupt(&child).await;
    let stopping = Instant::now();
    let status = tokio::time::timeout(STOP_LIMIT, child.wait())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "scripts/run-cluster still runs {STOP_LIMIT:?} after Ctrl-C; stderr (last lines):\n{}",
                tail()
            )
        })
        .expect("waiting for the script");
    println!(
        "run-cluster: stopped {:.1}s after Ctrl-C ({status})",
        stopping.elapsed().as_secs_f64()
    );
    // The API server's port no longer takes connections.
    let address = user
        .api_server
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_owned();
    wait_until(
        "the API server to stop answering after Ctrl-C",
        STOP_LIMIT,
        async || {
            tokio::net::TcpStream::connect(&address)
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
}
