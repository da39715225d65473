//! Benchmark (not a test): how fast the operator turns 1,000 Sessions across 10 LiveEvents
//! into SFU pods and status on a real kube-apiserver, and what it costs.
//!
//! Runs the `roundtable` binary as its own process (so its RSS and CPU are its own), creates
//! the objects, and prints as its last line one JSON object:
//! `sessions`, `seconds_to_all_pods`, `seconds_to_all_status`, `operator_peak_rss_mib`,
//! `operator_cpu_s`. Usage: `bench/operator [SESSIONS] [EVENTS]` (defaults 1000 and 10).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, PostParams};
use roundtable_crds::{LiveEvent, Session};
use roundtable_e2e::Cluster;

/// Upper bound on the whole run; the benchmark stops and reports what it reached.
const LIMIT: Duration = Duration::from_secs(120);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let sessions: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let events: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10);
    let operator_bin = std::env::var("ROUNDTABLE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            std::env::current_exe()
                .expect("own path")
                .with_file_name("roundtable")
        });

    let cluster = Cluster::shared().await?;
    cluster.install_crds().await?;
    let ns = cluster.namespace("bench").await?;
    eprintln!(
        "bench: API server at {} (started in {:.2?})",
        cluster.url(),
        cluster.start_time()
    );

    let mut operator = tokio::process::Command::new(&operator_bin)
        .args([
            "operator",
            "--admin-addr",
            "127.0.0.1:0",
            "--lease-namespace",
            &ns.name,
        ])
        .args(["--watch-namespace", &ns.name, "--host-ports", "31000-31999"])
        .env("KUBECONFIG", cluster.admin_kubeconfig())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting {}: {e}", operator_bin.display()))?;
    let pid = operator.id().expect("running");

    let event_api: Api<LiveEvent> = Api::namespaced(ns.client.clone(), &ns.name);
    for e in 0..events {
        let event: LiveEvent = serde_json::from_value(serde_json::json!({
            "apiVersion": "roundtable.dev/v1alpha1", "kind": "LiveEvent",
            "metadata": {"name": format!("event-{e}")},
            "spec": {"title": format!("Event {e}"), "start": "2020-01-01T00:00:00Z", "end": "2099-01-01T00:00:00Z"}
        }))?;
        event_api.create(&PostParams::default(), &event).await?;
    }
    let session_api: Api<Session> = Api::namespaced(ns.client.clone(), &ns.name);
    let start = Instant::now();
    stream::iter(0..sessions)
        .map(|i| {
            let api = session_api.clone();
            async move {
                let session: Session = serde_json::from_value(serde_json::json!({
                    "apiVersion": "roundtable.dev/v1alpha1", "kind": "Session",
                    "metadata": {"name": format!("session-{i}")},
                    "spec": {"event": format!("event-{}", i % events), "title": format!("Roundtable {i}"), "lifecycle": "Started"}
                }))
                .expect("valid session");
                api.create(&PostParams::default(), &session).await.map(|_| ())
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let created = start.elapsed();
    eprintln!("bench: created {sessions} sessions in {created:.2?}");

    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    let (mut all_pods, mut all_status) = (None, None);
    let mut peak_rss_kib = 0;
    let mut last_report = Instant::now();
    while start.elapsed() < LIMIT && (all_pods.is_none() || all_status.is_none()) {
        peak_rss_kib = peak_rss_kib.max(rss_hwm_kib(pid));
        if all_pods.is_none() {
            let n = pods
                .list_metadata(&ListParams::default())
                .await?
                .items
                .len();
            if n >= sessions {
                all_pods = Some(start.elapsed());
                eprintln!("bench: {n} pods after {:.2?}", start.elapsed());
            }
        }
        if all_status.is_none() {
            let list = session_api.list(&ListParams::default()).await?;
            let with_status = list
                .items
                .iter()
                .filter(|s| s.status.as_ref().and_then(|s| s.phase).is_some())
                .count();
            if with_status >= sessions {
                all_status = Some(start.elapsed());
                eprintln!(
                    "bench: {with_status} sessions with status after {:.2?}",
                    start.elapsed()
                );
            }
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            last_report = Instant::now();
            let n = pods
                .list_metadata(&ListParams::default())
                .await?
                .items
                .len();
            eprintln!(
                "bench: {:.0?}: {n} pods, operator {:.1} CPU-s",
                start.elapsed(),
                cpu_seconds(pid)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    peak_rss_kib = peak_rss_kib.max(rss_hwm_kib(pid));
    let cpu_s = cpu_seconds(pid);
    operator.kill().await.ok();

    let seconds = |d: Option<Duration>| {
        d.map_or(serde_json::Value::Null, |d| {
            serde_json::json!((d.as_secs_f64() * 100.0).round() / 100.0)
        })
    };
    println!(
        "{}",
        serde_json::json!({
            "sessions": sessions,
            "events": events,
            "seconds_to_create": (created.as_secs_f64() * 100.0).round() / 100.0,
            "seconds_to_all_pods": seconds(all_pods),
            "seconds_to_all_status": seconds(all_status),
            "operator_peak_rss_mib": (peak_rss_kib as f64 / 1024.0 * 10.0).round() / 10.0,
            "operator_cpu_s": (cpu_s * 100.0).round() / 100.0,
        })
    );
    Ok(())
}

/// Peak resident set (VmHWM) of a process, in KiB.
fn rss_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// User plus system CPU seconds of a process so far.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses and may contain spaces.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of /proc/pid/stat; index 11 and 12 after ')'.
    (ticks(11) + ticks(12)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}
