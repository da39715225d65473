//! Load generator for `bench/soak`: one session held for a long time the way an event holds
//! it: P publishers (simulcast VP8 + Opus) on the origin sfu-node, R relay sfu-nodes fed by
//! it, and W watchers spread over the relays, all str0m clients on loopback.
//!
//! Prints one JSON line last: frames delivered (% of what the publishers sent in the window),
//! the longest gap any watcher saw between two video frames, watchers lost, and for each
//! process (origin, relays, this load generator) its resident memory and open file
//! descriptors at the start and end of the window and its memory growth per hour (the slope
//! of a least-squares line through samples taken every `--sample-every` seconds, so a
//! one-off allocation does not read as a leak).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::json;
use sfu_node::auth::{Claims, mint};
use sfu_node::client::{ClientPeer, ClientRole, Watcher, http_request};
use str0m::Event;
use tokio::sync::OnceCell;

#[path = "loadgen/sfu_process.rs"]
mod sfu_process;
use sfu_process::SfuProcess;

#[derive(Debug, Parser)]
struct Args {
    /// The sfu-node binary (origin and relays).
    #[arg(long)]
    sfu: std::path::PathBuf,
    #[arg(long, default_value_t = 3)]
    publishers: usize,
    #[arg(long, default_value_t = 2)]
    relays: usize,
    /// Watchers in all, spread evenly over the relays.
    #[arg(long, default_value_t = 120)]
    watchers: usize,
    /// Seconds held after the warm-up.
    #[arg(long, default_value_t = 600)]
    duration: u64,
    /// Seconds for joins and bandwidth estimates to settle before the window opens.
    #[arg(long, default_value_t = 10)]
    warmup: u64,
    /// Seconds between two samples of each process's memory and file descriptors.
    #[arg(long, default_value_t = 10)]
    sample_every: u64,
    /// Pin the sfu-nodes to these CPUs (`taskset -c` list), away from the load generator.
    #[arg(long)]
    sfu_cpus: Option<String>,
}

const KEY: &str = "soak-key";
const ROOM: &str = "soak";
/// Joins (publishers, relays' upstreams, watchers) must be done within this.
const JOIN_BUDGET: Duration = Duration::from_secs(120);

fn start_sfu(args: &Args, name: &str, extra: &[String]) -> anyhow::Result<SfuProcess> {
    let mut all = vec![
        "--max-on-camera".to_string(),
        args.publishers.clamp(1, 20).to_string(),
    ];
    all.extend_from_slice(extra);
    sfu_process::start(name, &args.sfu, args.sfu_cpus.as_deref(), ROOM, KEY, &all)
}

async fn ready(sfu: &SfuProcess) -> anyhow::Result<()> {
    let by = Instant::now() + JOIN_BUDGET;
    while http_request(sfu.admin, "GET", "/readyz", &[], b"")
        .await
        .map(|r| r.status)
        .unwrap_or(0)
        != 200
    {
        if Instant::now() > by {
            bail!("{} is not ready after {JOIN_BUDGET:?}", sfu.name);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn token(sub: &str, share: bool) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 24 * 3600;
    let mut c = Claims::new(sub, sub, ROOM, exp);
    c.grants.share = share;
    mint(KEY.as_bytes(), &c)
}

/// One process's resident memory (kB) and open file descriptors, from /proc.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    rss_kb: u64,
    fds: usize,
}

fn sample(pid: u32) -> anyhow::Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("VmRSS")?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count();
    Ok(Sample {
        at: Instant::now(),
        rss_kb,
        fds,
    })
}

/// Least-squares slope of resident memory over time, in MB per hour.
fn growth_mb_per_hour(samples: &[Sample]) -> f64 {
    let Some(first) = samples.first() else {
        return f64::NAN;
    };
    let points: Vec<(f64, f64)> = samples
        .iter()
        .map(|s| {
            (
                (s.at - first.at).as_secs_f64() / 3600.0,
                s.rss_kb as f64 / 1024.0,
            )
        })
        .collect();
    let n = points.len() as f64;
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        return f64::NAN;
    }
    points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>() / sxx
}

/// The window in which frames and gaps count: set once every watcher is in and warmed up.
type Window = Arc<OnceCell<(Instant, Instant)>>;

#[derive(Debug, Default)]
struct WatcherReport {
    frames: u64,
    longest_gap: Duration,
    got_video: bool,
    /// The connection closed or broke before the window ended.
    lost_at: Option<Instant>,
}

async fn watcher(w: Watcher, window: Window, hard_end: Instant) -> WatcherReport {
    let Watcher {
        mut peer,
        mut events,
        ..
    } = w;
    let mut r = WatcherReport::default();
    // Per video mid: when its last frame arrived (within the window).
    let mut last: HashMap<String, Instant> = HashMap::new();
    let mut events_open = true;
    loop {
        let now = Instant::now();
        let end = window.get().map_or(hard_end, |w| w.1);
        if now >= end {
            break;
        }
        if !peer.rtc.is_alive() {
            r.lost_at = Some(now);
            break;
        }
        // The room's events (counts, chat) are read as a page reads them, or the server
        // would find a stalled socket.
        tokio::select! {
            stepped = peer.step(end.min(now + Duration::from_millis(100))) => {
                let Ok(media) = stepped else {
                    r.lost_at = Some(Instant::now());
                    break;
                };
                let now = Instant::now();
                let Some(&(from, _)) = window.get() else {
                    continue;
                };
                for e in media {
                    let Event::MediaData(m) = e else { continue };
                    let video = m.params.spec().codec.is_video();
                    r.got_video |= video;
                    if now < from {
                        continue;
                    }
                    r.frames += 1;
                    if video {
                        let previous = last.insert(m.mid.to_string(), now).unwrap_or(from);
                        r.longest_gap = r.longest_gap.max(now - previous);
                    }
                }
            }
            event = events.next_event(), if events_open => {
                if event.is_none() {
                    events_open = false;
                    r.lost_at = Some(Instant::now());
                }
            }
        }
    }
    // A stream that stopped before the end is a gap up to the end.
    if let Some(&(_, end)) = window.get() {
        let until = r.lost_at.unwrap_or(end).min(end);
        for at in last.values() {
            r.longest_gap = r.longest_gap.max(until.saturating_duration_since(*at));
        }
    }
    r
}

fn process_figures(name: &str, samples: &[Sample]) -> serde_json::Value {
    let (first, last) = (samples.first(), samples.last());
    json!({
        "process": name,
        "rss_start_mb": first.map(|s| (s.rss_kb as f64 / 1024.0 * 10.0).round() / 10.0),
        "rss_end_mb": last.map(|s| (s.rss_kb as f64 / 1024.0 * 10.0).round() / 10.0),
        "rss_growth_mb_per_h": (growth_mb_per_hour(samples) * 10.0).round() / 10.0,
        "fds_start": first.map(|s| s.fds),
        "fds_end": last.map(|s| s.fds),
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.publishers == 0 || args.relays == 0 || args.watchers == 0 {
        bail!("need at least one publisher, one relay and one watcher");
    }
    let _ = sfu_node::client::epoch();
    let start = Instant::now();
    let hard_end = start
        + JOIN_BUDGET
        + Duration::from_secs(args.warmup + args.duration)
        + Duration::from_secs(30);

    // The origin serves the publishers; every watcher is the relays'.
    let per_relay = args.watchers.div_ceil(args.relays);
    let origin = start_sfu(
        &args,
        "origin",
        &[
            "--relayed-watchers".into(),
            "--max-watchers".into(),
            (per_relay * args.relays).to_string(),
        ],
    )?;
    let origin_url = format!("http://{}", origin.http);
    let mut relays = Vec::new();
    for i in 0..args.relays {
        relays.push(start_sfu(
            &args,
            &format!("relay-{i}"),
            &[
                "--origin".into(),
                origin_url.clone(),
                "--max-watchers".into(),
                per_relay.to_string(),
            ],
        )?);
    }
    for relay in &relays {
        ready(relay).await?;
    }

    let whip = format!("/rooms/{ROOM}/whip");
    let mut publishers = Vec::new();
    for i in 0..args.publishers {
        let (mut p, _) = ClientPeer::connect(
            origin.http,
            &whip,
            &token(&format!("pub{i}"), true),
            ClientRole::Publish { simulcast: true },
        )
        .await
        .with_context(|| format!("publisher {i} joining the origin"))?;
        publishers.push(tokio::spawn(async move {
            p.publish_until(hard_end, true).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let window: Window = Arc::new(OnceCell::new());
    let mut watchers = Vec::new();
    for i in 0..args.watchers {
        let relay = &relays[i % relays.len()];
        // As a page does: the events socket first, then WHEP as that participant.
        let v = Watcher::join(
            &format!("http://{}", relay.http),
            ROOM,
            &token(&format!("watcher{i}"), false),
            args.publishers.min(20),
        )
        .await
        .with_context(|| format!("watcher {i} joining {}", relay.name))?;
        watchers.push(tokio::spawn(watcher(v, window.clone(), hard_end)));
    }
    let joined = start.elapsed();
    if joined > JOIN_BUDGET {
        bail!("joins took {joined:?}, over the {JOIN_BUDGET:?} budget");
    }
    eprintln!(
        "soak: {} publishers on the origin, {} watchers on {} relays, joined in {:.1}s; \
         warm-up {} s, then {} s",
        args.publishers,
        args.watchers,
        args.relays,
        joined.as_secs_f64(),
        args.warmup,
        args.duration
    );
    let from = Instant::now() + Duration::from_secs(args.warmup);
    let end = from + Duration::from_secs(args.duration);
    window
        .set((from, end))
        .expect("the window is set only here");

    // Samples of every process, from the window's start to its end.
    let mut processes: Vec<(String, u32)> = vec![(origin.name.clone(), origin.child.id())];
    processes.extend(relays.iter().map(|r| (r.name.clone(), r.child.id())));
    processes.push(("load-generator".into(), std::process::id()));
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); processes.len()];
    tokio::time::sleep_until(from.into()).await;
    // The last sample is taken just before the window closes, while everyone is still in.
    let last_sample = end - Duration::from_millis(500);
    let mut next = from;
    let mut minutes_reported = 0;
    while next <= last_sample {
        tokio::time::sleep_until(next.into()).await;
        for ((name, pid), kept) in processes.iter().zip(&mut samples) {
            kept.push(sample(*pid).with_context(|| format!("sampling {name}"))?);
        }
        let minutes = (next - from).as_secs() / 60;
        if minutes > minutes_reported {
            minutes_reported = minutes;
            eprintln!(
                "soak: {} s of {} s; origin {:.1} MB",
                (next - from).as_secs(),
                args.duration,
                samples[0].last().map_or(0.0, |s| s.rss_kb as f64 / 1024.0)
            );
        }
        next = if next == last_sample {
            last_sample + Duration::from_secs(1)
        } else {
            (next + Duration::from_secs(args.sample_every.max(1))).min(last_sample)
        };
    }

    let mut reports = Vec::new();
    for w in watchers {
        reports.push(w.await?);
    }
    // The publishers were started before the window was known; they stop with it.
    for p in publishers {
        p.abort();
    }
    let window_s = (end - from).as_secs_f64();
    let frames: u64 = reports.iter().map(|r| r.frames).sum();
    // Publishers send a video frame every 33 ms and an audio frame every 20 ms.
    let expected =
        window_s * (1000.0 / 33.0 + 50.0) * args.publishers.min(20) as f64 * args.watchers as f64;
    let longest_gap = reports
        .iter()
        .map(|r| r.longest_gap)
        .max()
        .unwrap_or_default();
    let lost = reports.iter().filter(|r| r.lost_at.is_some()).count();
    let without_video = reports.iter().filter(|r| !r.got_video).count();
    let out = json!({
        "publishers": args.publishers,
        "relays": args.relays,
        "watchers": args.watchers,
        "window_s": window_s,
        "frames_delivered_pct": ((frames as f64 * 100.0 / expected) * 100.0).round() / 100.0,
        "longest_gap_ms": (longest_gap.as_secs_f64() * 1000.0).round(),
        "watchers_lost": lost,
        "watchers_without_video": without_video,
        "processes": processes
            .iter()
            .zip(&samples)
            .map(|((name, _), s)| process_figures(name, s))
            .collect::<Vec<_>>(),
        "load_average": std::fs::read_to_string("/proc/loadavg")
            .ok()
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")),
    });
    drop(relays);
    drop(origin);
    println!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, secs: u64, mb: u64) -> Sample {
        Sample {
            at: start + Duration::from_secs(secs),
            rss_kb: mb * 1024,
            fds: 10,
        }
    }

    #[test]
    fn growth_is_the_slope_through_the_samples_per_hour() {
        let t = Instant::now();
        // 1 MB per 10 minutes is 6 MB an hour, whatever the noise around the line.
        let samples: Vec<Sample> = (0..=6)
            .map(|i| at(t, i * 600, 100 + i + if i % 2 == 0 { 1 } else { 0 }))
            .collect();
        let slope = growth_mb_per_hour(&samples);
        assert!((slope - 6.0).abs() < 0.5, "{slope}");
        let flat: Vec<Sample> = (0..6).map(|i| at(t, i * 60, 50)).collect();
        assert_eq!(growth_mb_per_hour(&flat), 0.0);
        assert!(growth_mb_per_hour(&[at(t, 0, 5)]).is_nan());
    }
}
