//! The autoscaling scenario shared by `tests/tests/autoscale.rs` (small, asserted) and the
//! `bench/autoscale` benchmark (bigger, printed): one publisher on camera in a session with
//! viewer-count autoscaling; str0m watchers join through the control plane one after
//! another, past one relay's capacity; they stay, then leave one after another, and the
//! relays come back down. Every watcher records what a person would notice: whether it got in,
//! where, how soon video showed, the longest stretch without video outside a move, and how
//! often it was moved.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kube::Api;
use roundtable_crds::Session;
use roundtable_operator::OperatorConfig;
use serde::Serialize;
use serde_json::Value;
use sfu_node::client::{ClientPeer, ClientRole, Watcher};
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::stack::{ControlPlane, Stack};
use crate::wait::wait_until;

/// The shape of one run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub watchers: u32,
    pub watchers_per_relay: u32,
    pub headroom: u32,
    pub max_relays: u32,
    pub scale_down_delay_seconds: u32,
    /// Time between two watchers joining.
    pub join_every: Duration,
    /// Before each join, wait (up to 6 s per relay) until the relays the formula asks for
    /// with the watchers already in are ready: an audience arriving no faster than relays start, so
    /// where each watcher lands is known (the test). Off, watchers arrive at `join_every`
    /// whatever the relays do (the benchmark's surge).
    pub pace: bool,
    /// Time between two watchers leaving (slower than joining, so relays are removed while
    /// people still watch from them and have to move).
    pub leave_every: Duration,
    /// How long everyone stays once the last watcher is in.
    pub hold: Duration,
    /// How much longer the last joiner (on the newest relay) stays after everyone else has
    /// left: relays are removed under it one by one and it has to move.
    pub stay_last: Duration,
    /// Host ports handed to SFU pods (distinct per test binary running at once).
    pub host_ports: std::ops::RangeInclusive<u16>,
}

/// What one watcher lived through.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WatcherLog {
    pub email: String,
    /// Pods (signalling URLs) it watched from, in order.
    pub pods: Vec<String>,
    /// What each stay on a pod brought: video frames, first frame (ms after joining), its
    /// length (ms), and how it ended (`left`, `moved`, `broken`).
    pub stays: Vec<(u64, Option<u64>, u64, &'static str)>,
    /// Joins the control plane refused (status and error code).
    pub refused: Vec<String>,
    pub frames: u64,
    pub first_frame_ms: Option<u64>,
    /// Longest time without a video frame, moves excluded (ms).
    pub longest_gap_ms: u64,
    /// Longest time without video across a move (ms).
    pub longest_move_gap_ms: u64,
    pub moves: u32,
    /// Whether it ended without watching (refused or broken) while it should have been in.
    pub dropped: bool,
}

/// The run's outcome: the benchmark prints it, the test asserts on it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The origin pod's signalling URL (the speaker publishes there).
    pub origin: String,
    pub watchers_peak: u32,
    pub relays_peak: u32,
    /// From the join that needed one more relay to that relay being ready, per scale-out.
    pub seconds_surge_to_relay_ready: Vec<f64>,
    /// From the last watcher leaving to the relays being down to the minimum.
    pub seconds_to_scale_in: f64,
    pub watchers_dropped: u32,
    pub watchers_refused: u32,
    pub moves: u32,
    pub longest_gap_ms: u64,
    pub longest_move_gap_ms: u64,
    pub median_first_frame_ms: u64,
    /// Ready relays over time: (seconds since the first watcher joined, relays, people on
    /// camera) at each change.
    pub relays_timeline: Vec<(f64, u32, i32)>,
    /// Watchers served by each pod at the peak (signalling URL → watchers).
    pub watchers_per_pod_at_peak: BTreeMap<String, u32>,
    #[serde(skip)]
    pub watchers: Vec<WatcherLog>,
}

/// The event and session of a run, starting now and ending in three hours.
fn manifests(plan: &Plan) -> String {
    let now = jiff::Timestamp::now();
    let start = now - jiff::SignedDuration::from_mins(5);
    let end = now + jiff::SignedDuration::from_hours(3);
    format!(
        r#"apiVersion: roundtable.dev/v1alpha1
kind: LiveEvent
metadata:
  name: expo
spec:
  title: Autoscaling expo
  start: "{start}"
  end: "{end}"
  ticketTypes:
    - name: general
      title: General admission
  organizers:
    - speaker@example.org
  chat: true
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
  name: keynote
spec:
  event: expo
  title: Keynote
  start: "{start}"
  end: "{end}"
  share:
    policy: InviteOnly
    invitees:
      - speaker@example.org
  maxWatchers: {max_watchers}
  autoscaling:
    enabled: true
    minRelays: 0
    maxRelays: {max_relays}
    watchersPerRelay: {per}
    headroom: {headroom}
    scaleDownDelaySeconds: {delay}
"#,
        max_watchers = plan.watchers_per_relay * plan.max_relays,
        max_relays = plan.max_relays,
        per = plan.watchers_per_relay,
        headroom = plan.headroom,
        delay = plan.scale_down_delay_seconds,
    )
}

/// Ready relays and the relays wanted, from the Session's status and spec.
async fn relays(sessions: &Api<Session>) -> Result<(u32, u32, i32)> {
    let session = sessions.get("keynote").await?;
    let ready = session
        .status
        .as_ref()
        .and_then(|s| s.relays)
        .unwrap_or(0)
        .max(0) as u32;
    let wanted = session.spec.relays.unwrap_or(0).max(0) as u32;
    let on_camera = session
        .status
        .as_ref()
        .and_then(|s| s.on_camera)
        .unwrap_or(-1);
    Ok((ready, wanted, on_camera))
}

/// The control plane's answer to a join: where to watch, where to publish, the token.
#[derive(Debug, Clone)]
struct Joined {
    sfu: String,
    origin: String,
    room: String,
    token: String,
}

impl Joined {
    fn from(body: &Value) -> Option<Joined> {
        let sfu = body["sfu"].as_str()?.to_string();
        Some(Joined {
            origin: body["origin"].as_str().unwrap_or(&sfu).to_string(),
            sfu,
            room: body["room"].as_str()?.to_string(),
            token: body["token"].as_str()?.to_string(),
        })
    }
}

fn socket_of(url: &str) -> Result<std::net::SocketAddr> {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .map_err(|e| Error::Stack(format!("signalling URL {url:?}: {e}")))
}

/// Joins the session through the control plane as `cookie`.
async fn join(api: &ControlPlane, cookie: &str) -> Result<std::result::Result<Joined, String>> {
    let path = format!("/api/sessions/{}/keynote/join", api.namespace);
    let (status, body) = api.post(cookie, &path, serde_json::json!({})).await?;
    Ok(match (status, Joined::from(&body)) {
        (200, Some(joined)) => Ok(joined),
        _ => Err(format!(
            "{status} {}",
            body["error"].as_str().unwrap_or("?")
        )),
    })
}

/// Relays the operator's formula asks for with `watching` people (the same pure function).
fn needed(plan: &Plan, watching: u32) -> u32 {
    roundtable_operator::plan::autoscale::needed(
        &roundtable_operator::plan::autoscale::Policy {
            min_relays: 0,
            max_relays: plan.max_relays,
            watchers_per_relay: plan.watchers_per_relay,
            headroom: plan.headroom,
            scale_down_delay: jiff::SignedDuration::from_secs(plan.scale_down_delay_seconds.into()),
        },
        watching,
    )
}

/// One sample of the session's scaling, taken every 200 ms.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    ready: u32,
    on_camera: i32,
}

/// Runs the scenario on the shared test cluster.
pub async fn run(plan: Plan) -> Result<Report> {
    let stack = Stack::start(
        "autoscale",
        OperatorConfig {
            host_ports: plan.host_ports.clone(),
            drain_grace_seconds: 5,
            stats_interval: Duration::from_secs(1),
            ..OperatorConfig::default()
        },
    )
    .await?;
    let outcome = scenario(&stack, &plan).await;
    let stopped = stack.stop().await;
    let report = outcome?;
    stopped?;
    Ok(report)
}

async fn scenario(stack: &Stack, plan: &Plan) -> Result<Report> {
    stack
        .cluster
        .kubectl_with_stdin(
            &["apply", "-n", &stack.ns.name, "-f", "-"],
            Some(&manifests(plan)),
        )
        .await?
        .ok()?;
    let sessions: Api<Session> = Api::namespaced(stack.ns.client.clone(), &stack.ns.name);
    wait_until(
        "the session to be Live",
        Duration::from_secs(120),
        async || {
            let s = sessions.get("keynote").await.ok()?;
            (s.status?.phase? == roundtable_crds::LivePhase::Live).then_some(())
        },
    )
    .await;

    // The speaker publishes simulcast video and audio to the origin for the whole run.
    // When everyone should be in (paced joins wait for relays: up to 6 s for each).
    let ramp = plan.join_every * plan.watchers
        + if plan.pace {
            Duration::from_secs(6) * plan.max_relays
        } else {
            Duration::ZERO
        };
    let everyone_gone = Instant::now()
        + ramp
        + plan.leave_every * plan.watchers
        + plan.hold
        + plan.stay_last
        + Duration::from_secs(5);
    let speaker = stack
        .api
        .sign_in("speaker@example.org", "expo", "general")
        .await?;
    let on_stage = join(&stack.api, &speaker)
        .await?
        .map_err(|e| Error::Stack(format!("the speaker's join: {e}")))?;
    let (mut publisher, _) = ClientPeer::connect(
        socket_of(&on_stage.origin)?,
        &format!("/rooms/{}/whip", on_stage.room),
        &on_stage.token,
        ClientRole::Publish { simulcast: true },
    )
    .await
    .map_err(|e| Error::Stack(format!("the speaker's publisher: {e}")))?;
    let publishing = tokio::spawn(async move {
        let sent = publisher.publish_until(everyone_gone, true).await;
        (sent, Instant::now())
    });

    // The scaling as the Session's status shows it.
    let sampling = Arc::new(AtomicBool::new(true));
    let samples = {
        let sessions = sessions.clone();
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while sampling.load(Ordering::Relaxed) {
                if let Ok((ready, _, on_camera)) = relays(&sessions).await {
                    samples.push(Sample {
                        on_camera,
                        at: Instant::now(),
                        ready,
                    });
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            samples
        })
    };

    // Watchers join one after another, stay, and leave first in, first out.
    let mut cookies = Vec::new();
    for i in 0..plan.watchers {
        let email = format!("watcher{i}@example.org");
        cookies.push((
            email.clone(),
            stack.api.sign_in(&email, "expo", "general").await?,
        ));
    }
    let first_join = Instant::now();
    let mut joined_at = Vec::new();
    let mut set = JoinSet::new();
    for (i, (email, cookie)) in cookies.into_iter().enumerate() {
        let mut leave_at = first_join + ramp + plan.hold + plan.leave_every * i as u32;
        if i as u32 + 1 == plan.watchers {
            leave_at += plan.stay_last;
        }
        if plan.pace {
            let want = needed(plan, i as u32);
            let paced = crate::wait::poll(Duration::from_secs(6) * want, async || {
                let (ready, _, _) = relays(&sessions).await.ok()?;
                (ready >= want).then_some(())
            })
            .await;
            if paced.is_none() {
                return Err(Error::Stack(format!(
                    "relay {want} was not ready after 6 s per relay"
                )));
            }
        }
        joined_at.push(Instant::now());
        set.spawn(watch_stay(stack.api.clone(), email, cookie, leave_at));
        tokio::time::sleep(plan.join_every).await;
    }
    let mut watchers = Vec::new();
    while let Some(log) = set.join_next().await {
        watchers.push(log.map_err(|e| Error::Stack(format!("a watcher panicked: {e}")))?);
    }
    let last_left = Instant::now();
    let floor = needed(plan, 0);
    wait_until(
        "the relays to come back down",
        Duration::from_secs(60) + Duration::from_secs(plan.scale_down_delay_seconds.into()) * 2,
        async || {
            let (ready, wanted, _) = relays(&sessions).await.ok()?;
            (ready <= floor && wanted <= floor).then_some(())
        },
    )
    .await;
    let seconds_to_scale_in = last_left.elapsed().as_secs_f64();
    let (sent, stopped) = publishing
        .await
        .map_err(|e| Error::Stack(format!("the publisher panicked: {e}")))?;
    if stopped + Duration::from_secs(1) < everyone_gone {
        return Err(Error::Stack(format!(
            "the speaker's connection broke {:.1?} before the end ({sent:?})",
            everyone_gone - stopped
        )));
    }
    sampling.store(false, Ordering::Relaxed);
    let samples = samples.await.unwrap_or_default();
    Ok(summarize(
        plan,
        on_stage.origin,
        &joined_at,
        &samples,
        watchers,
        seconds_to_scale_in,
    ))
}

/// The report from the joins' times, the status samples and the watchers' logs.
fn summarize(
    plan: &Plan,
    origin: String,
    joined_at: &[Instant],
    samples: &[Sample],
    watchers: Vec<WatcherLog>,
    seconds_to_scale_in: f64,
) -> Report {
    let relays_peak = samples.iter().map(|s| s.ready).max().unwrap_or(0);
    let seconds_surge_to_relay_ready = (1..=relays_peak)
        .filter_map(|k| {
            let surge = joined_at
                .iter()
                .enumerate()
                .find(|(i, _)| needed(plan, *i as u32 + 1) >= k)
                .map(|(_, at)| *at)?;
            let ready = samples.iter().find(|s| s.at >= surge && s.ready >= k)?;
            Some((ready.at - surge).as_secs_f64())
        })
        .collect();
    let mut first_frames: Vec<u64> = watchers.iter().filter_map(|w| w.first_frame_ms).collect();
    first_frames.sort_unstable();
    let mut per_pod = BTreeMap::new();
    for w in &watchers {
        if let Some(pod) = w.pods.first() {
            *per_pod.entry(pod.clone()).or_insert(0) += 1;
        }
    }
    let start = joined_at.first().copied().unwrap_or_else(Instant::now);
    let mut relays_timeline: Vec<(f64, u32, i32)> = Vec::new();
    for sample in samples {
        if relays_timeline
            .last()
            .is_none_or(|(_, r, c)| (*r, *c) != (sample.ready, sample.on_camera))
        {
            let at = sample.at.saturating_duration_since(start).as_secs_f64();
            relays_timeline.push(((at * 10.0).round() / 10.0, sample.ready, sample.on_camera));
        }
    }
    Report {
        origin,
        relays_timeline,
        watchers_peak: joined_at.len() as u32,
        relays_peak,
        seconds_surge_to_relay_ready,
        seconds_to_scale_in,
        watchers_dropped: watchers.iter().filter(|w| w.dropped).count() as u32,
        watchers_refused: watchers.iter().filter(|w| !w.refused.is_empty()).count() as u32,
        moves: watchers.iter().map(|w| w.moves).sum(),
        longest_gap_ms: watchers.iter().map(|w| w.longest_gap_ms).max().unwrap_or(0),
        longest_move_gap_ms: watchers
            .iter()
            .map(|w| w.longest_move_gap_ms)
            .max()
            .unwrap_or(0),
        median_first_frame_ms: first_frames
            .get(first_frames.len() / 2)
            .copied()
            .unwrap_or(0),
        watchers_per_pod_at_peak: per_pod,
        watchers,
    }
}

/// One watcher: joins through the control plane, watches until `leave_at`, and re-joins
/// through the control plane whenever its pod asks it to move (a relay going away).
async fn watch_stay(
    api: ControlPlane,
    email: String,
    cookie: String,
    leave_at: Instant,
) -> WatcherLog {
    let mut log = WatcherLog {
        email,
        ..WatcherLog::default()
    };
    // When the previous pod let go of this watcher (for the gap across a move).
    let mut moved_at: Option<Instant> = None;
    while Instant::now() < leave_at {
        let started = Instant::now();
        let joined = match join(&api, &cookie).await {
            Ok(Ok(joined)) => joined,
            Ok(Err(refusal)) => {
                log.refused.push(refusal);
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(e) => {
                log.refused.push(e.to_string());
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let watcher = match Watcher::join(&joined.sfu, &joined.room, &joined.token, 2).await {
            Ok(w) => w,
            Err(e) => {
                log.refused.push(format!("{}: {e}", joined.sfu));
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        log.pods.push(joined.sfu.clone());
        let seen = watcher.watch_until(leave_at).await;
        log.frames += seen.video_frames;
        match (moved_at.take(), seen.first_frame) {
            (Some(moved), Some(first)) => {
                let gap = (started + first).saturating_duration_since(moved);
                log.longest_move_gap_ms = log.longest_move_gap_ms.max(gap.as_millis() as u64);
            }
            (None, Some(first)) => {
                log.first_frame_ms.get_or_insert(first.as_millis() as u64);
            }
            _ => {}
        }
        log.longest_gap_ms = log.longest_gap_ms.max(seen.max_gap.as_millis() as u64);
        let first_ms = seen.first_frame.map(|f| f.as_millis() as u64);
        let stayed_ms = started.elapsed().as_millis() as u64;
        if seen.reconnect.is_some() && Instant::now() < leave_at {
            log.stays
                .push((seen.video_frames, first_ms, stayed_ms, "moved"));
            log.moves += 1;
            moved_at = Some(Instant::now());
            continue;
        }
        // Ended early without being asked to move, or no video for 2 s: media broke. (A move
        // right before leaving may end before the first frame: too short to tell.)
        let ended_early = Instant::now() + Duration::from_secs(1) < leave_at;
        if ended_early || (seen.video_frames == 0 && stayed_ms >= 2_000) {
            eprintln!(
                "autoscale: {} lost media on {} after {:.1?}: {seen:?}",
                log.email,
                joined.sfu,
                started.elapsed()
            );
            log.stays
                .push((seen.video_frames, first_ms, stayed_ms, "broken"));
            log.dropped = true;
            return log;
        }
        log.stays
            .push((seen.video_frames, first_ms, stayed_ms, "left"));
        break;
    }
    log.dropped |= log.frames == 0;
    log
}
