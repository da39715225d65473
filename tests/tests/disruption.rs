//! The disruption suite (issue 20): a live event loses a part under it, and what people in it
//! notice is measured against a limit. Run it alone with
//! `cargo test -p roundtable-e2e --test disruption`; `scripts/test-all` runs it with the
//! other end-to-end tests. Each case prints `limit X s, measured Y s`.
//!
//! The clients are str0m peers that behave as the web client's pages do
//! ([`roundtable_e2e::rejoin`]): nobody tells them what happened; they notice their room
//! socket close and re-join through the control plane by themselves. The browser pages'
//! side of the same story is `tests/browser/disruption.test.mjs`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use roundtable_crds::{LivePhase, Session};
use roundtable_e2e::node_agent::is_ready;
use roundtable_e2e::rejoin::{self, Log, SharedLog};
use roundtable_e2e::stack::Stack;
use roundtable_e2e::wait_until;
use roundtable_operator::OperatorConfig;

/// An event running now with one open session on the media node (host ports, as in
/// production), `relays` relays in front of the origin.
fn manifests(relays: u32) -> String {
    let now = jiff::Timestamp::now();
    let start = now - jiff::SignedDuration::from_mins(5);
    let end = now + jiff::SignedDuration::from_hours(3);
    let scaling = if relays > 0 {
        format!(
            "  autoscaling:\n    enabled: true\n    minRelays: {relays}\n    maxRelays: {relays}\n    watchersPerRelay: 20\n    headroom: 0\n    scaleDownDelaySeconds: 60\n"
        )
    } else {
        String::new()
    };
    format!(
        r#"apiVersion: roundtable.dev/v1alpha1
kind: LiveEvent
metadata:
  name: expo
spec:
  title: Disruption expo
  start: "{start}"
  end: "{end}"
  ticketTypes:
    - name: general
      title: General admission
  organizers:
    - org@example.org
  sfu:
    placement:
      nodeSelector:
        roundtable.dev/media: "true"
      tolerations:
        - key: roundtable.dev/media
          operator: Exists
          effect: NoSchedule
    network:
      mode: HostPort
---
apiVersion: roundtable.dev/v1alpha1
kind: Session
metadata:
  name: roundtable
spec:
  event: expo
  title: The roundtable
  start: "{start}"
  end: "{end}"
  share:
    policy: Open
  maxWatchers: 20
{scaling}"#
    )
}

fn new_log() -> SharedLog {
    Arc::new(Mutex::new(Log::default()))
}

fn read(log: &SharedLog) -> Log {
    log.lock().unwrap().clone()
}

/// The first moment after `since` at which this watcher had video from everyone again.
fn video_back(log: &SharedLog, since: Instant) -> Option<Instant> {
    read(log).all_video.into_iter().find(|at| *at > since)
}

/// A client's log in seconds relative to `at` (negative: before), for the test's output.
fn timeline(log: &Log, at: Instant) -> String {
    let rel = |t: Instant| {
        if t >= at {
            format!("+{:.2}", (t - at).as_secs_f64())
        } else {
            format!("-{:.2}", (at - t).as_secs_f64())
        }
    };
    let stays: Vec<String> = log
        .stays
        .iter()
        .map(|(t, pod)| format!("{} {pod}", rel(*t)))
        .collect();
    let lost: Vec<String> = log.lost.iter().map(|t| rel(*t)).collect();
    let video: Vec<String> = log.all_video.iter().map(|t| rel(*t)).collect();
    format!(
        "stays {stays:?}, lost {lost:?}, all video {video:?}, {} failed joins (last: {:?})",
        log.failures.len(),
        log.failures.last()
    )
}

/// Waits up to a minute for every watcher to see both speakers again after `killed`, and
/// returns when each did. On a timeout the test fails with every client's timeline and the
/// tail of each SFU pod's log, so a CI failure says what the media servers did.
async fn everyone_watching_again(
    stack: &Stack,
    clients: &[SharedLog],
    watchers: &[SharedLog],
    killed: Instant,
    what: &str,
) -> Vec<Instant> {
    let back = roundtable_e2e::poll(Duration::from_secs(60), async || {
        watchers
            .iter()
            .map(|w| video_back(w, killed))
            .collect::<Option<Vec<_>>>()
    })
    .await;
    if let Some(back) = back {
        return back;
    }
    let timelines: Vec<String> = clients.iter().map(|l| timeline(&read(l), killed)).collect();
    let tail = |pod: &str| {
        let log = stack.agent.log(&stack.ns.name, pod, "sfu-node");
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    };
    panic!(
        "timed out after 60s waiting for every watcher to see both speakers again after {what}\n\
         clients (seconds from the kill):\n{}\n--- session-roundtable sfu-node log (tail) ---\n{}\n\
         --- session-roundtable-relay-0 sfu-node log (tail) ---\n{}",
        timelines.join("\n"),
        tail("session-roundtable"),
        tail("session-roundtable-relay-0"),
    );
}

async fn live_session(stack: &Stack, relays: u32) -> Api<Session> {
    stack
        .cluster
        .kubectl_with_stdin(
            &["apply", "-n", &stack.ns.name, "-f", "-"],
            Some(&manifests(relays)),
        )
        .await
        .unwrap()
        .ok()
        .unwrap();
    let sessions: Api<Session> = Api::namespaced(stack.ns.client.clone(), &stack.ns.name);
    wait_until(
        "the session to be Live",
        Duration::from_secs(120),
        async || {
            let s = sessions.get("roundtable").await.ok()?;
            let status = s.status?;
            (status.phase? == LivePhase::Live && status.relays.unwrap_or(0) >= relays as i32)
                .then_some(())
        },
    )
    .await;
    sessions
}

/// Two people on camera and `watchers` watching, each a re-joining client; returns their
/// logs once every watcher has video from both speakers.
async fn people_in_the_room(
    stack: &Stack,
    watchers: usize,
    end: Instant,
) -> (Vec<SharedLog>, Vec<SharedLog>) {
    let path = format!("/api/sessions/{}/roundtable/join", stack.ns.name);
    let mut speakers = Vec::new();
    for who in ["ada", "bob"] {
        let cookie = stack
            .api
            .sign_in(&format!("{who}@example.org"), "expo", "general")
            .await
            .unwrap();
        let log = new_log();
        tokio::spawn(rejoin::on_camera(
            stack.api.clone(),
            cookie,
            path.clone(),
            end,
            log.clone(),
        ));
        speakers.push(log);
    }
    let mut watching = Vec::new();
    for i in 0..watchers {
        let cookie = stack
            .api
            .sign_in(&format!("watcher{i}@example.org"), "expo", "general")
            .await
            .unwrap();
        let log = new_log();
        tokio::spawn(rejoin::watching(
            stack.api.clone(),
            cookie,
            path.clone(),
            2,
            end,
            log.clone(),
        ));
        watching.push(log);
    }
    let started = Instant::now();
    wait_until(
        "every watcher to see both speakers",
        Duration::from_secs(30),
        async || {
            watching
                .iter()
                .all(|w| video_back(w, started).is_some())
                .then_some(())
        },
    )
    .await;
    (speakers, watching)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_sessions_sfu_node_is_sigkilled_and_everyone_is_back_on_camera_and_watching() {
    const LIMIT: Duration = Duration::from_secs(10);
    roundtable_e2e::init_test_logs();
    let stack = Stack::start(
        "disrupt-sfu",
        OperatorConfig {
            host_ports: 33700..=33749,
            drain_grace_seconds: 2,
            stats_interval: Duration::from_secs(1),
            ..OperatorConfig::default()
        },
    )
    .await
    .unwrap();
    let sessions = live_session(&stack, 0).await;
    let end = Instant::now() + Duration::from_secs(90);
    let (speakers, watchers) = people_in_the_room(&stack, 2, end).await;

    let pods: Api<Pod> = Api::namespaced(stack.ns.client.clone(), &stack.ns.name);
    let pod = pods.get("session-roundtable").await.unwrap();
    let uid = pod.metadata.uid.clone().unwrap();
    // Before the signal: a client may notice the loss before `kill` returns.
    let killed = Instant::now();
    stack
        .agent
        .signal(
            &stack.ns.name,
            "session-roundtable",
            &uid,
            "sfu-node",
            "KILL",
        )
        .await
        .unwrap();

    // Nobody is told anything: every watcher sees both speakers again.
    let clients: Vec<SharedLog> = speakers.iter().chain(&watchers).cloned().collect();
    let back = everyone_watching_again(&stack, &clients, &watchers, killed, "the kill").await;
    let measured = back.iter().map(|at| *at - killed).max().unwrap();
    for log in speakers.iter().chain(&watchers) {
        eprintln!("disruption: {}", timeline(&read(log), killed));
    }
    eprintln!(
        "disruption: sfu-node SIGKILL, kill to video back for every watcher: limit {} s, measured {:.2} s",
        LIMIT.as_secs(),
        measured.as_secs_f64()
    );

    // A new pod is Ready in place of the killed one; the session is Live with both on camera.
    let replacement = pods.get("session-roundtable").await.unwrap();
    assert_ne!(replacement.metadata.uid.as_deref(), Some(uid.as_str()));
    assert!(is_ready(&replacement), "the replacement pod is Ready");
    for (who, log) in ["ada", "bob"].iter().zip(&speakers) {
        let log = read(log);
        assert!(
            log.lost.iter().any(|at| *at >= killed) && log.stays.iter().any(|(at, _)| *at > killed),
            "{who} noticed the loss and went back on camera: {log:?}"
        );
    }
    wait_until(
        "the session to show 2 on camera, 2 watching",
        Duration::from_secs(15),
        async || {
            let s = sessions.get("roundtable").await.ok()?.status?;
            (s.phase == Some(LivePhase::Live) && s.on_camera == Some(2) && s.watching == Some(2))
                .then_some(())
        },
    )
    .await;
    assert!(
        measured <= LIMIT,
        "video back for every watcher within {LIMIT:?} of the SIGKILL, took {measured:.2?}"
    );
    stack.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_is_sigkilled_and_its_watchers_watch_elsewhere() {
    const LIMIT: Duration = Duration::from_secs(5);
    roundtable_e2e::init_test_logs();
    let stack = Stack::start(
        "disrupt-relay",
        OperatorConfig {
            host_ports: 33750..=33799,
            drain_grace_seconds: 2,
            stats_interval: Duration::from_secs(1),
            ..OperatorConfig::default()
        },
    )
    .await
    .unwrap();
    live_session(&stack, 1).await;
    let end = Instant::now() + Duration::from_secs(90);
    let (speakers, watchers) = people_in_the_room(&stack, 2, end).await;

    // The watchers were sent to the relay; it dies under them.
    let pods: Api<Pod> = Api::namespaced(stack.ns.client.clone(), &stack.ns.name);
    let relay = pods.get("session-roundtable-relay-0").await.unwrap();
    let relay_ip = relay
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap();
    let relay_url = |url: &str| url.contains(&format!("//{relay_ip}:"));
    for w in &watchers {
        let log = read(w);
        assert!(
            log.stays.last().is_some_and(|(_, sfu)| relay_url(sfu)),
            "watchers watch through the relay: {log:?}"
        );
    }
    // Before the signal: a client may notice the loss before `kill` returns.
    let killed = Instant::now();
    stack
        .agent
        .signal(
            &stack.ns.name,
            "session-roundtable-relay-0",
            relay.metadata.uid.as_deref().unwrap(),
            "sfu-node",
            "KILL",
        )
        .await
        .unwrap();
    let clients: Vec<SharedLog> = speakers.iter().chain(&watchers).cloned().collect();
    let back = everyone_watching_again(&stack, &clients, &watchers, killed, "the relay died").await;
    let measured = back.iter().map(|at| *at - killed).max().unwrap();
    for log in &watchers {
        eprintln!("disruption: {}", timeline(&read(log), killed));
    }
    let now_on: Vec<String> = watchers
        .iter()
        .map(|w| {
            read(w)
                .stays
                .last()
                .map(|(_, s)| s.clone())
                .unwrap_or_default()
        })
        .collect();
    eprintln!(
        "disruption: relay SIGKILL, kill to video back for its watchers (now on {now_on:?}): limit {} s, measured {:.2} s",
        LIMIT.as_secs(),
        measured.as_secs_f64()
    );
    assert!(
        measured <= LIMIT,
        "the relay's watchers watch elsewhere within {LIMIT:?}, took {measured:.2?}"
    );
    stack.stop().await.unwrap();
}
