//! Load generator for `bench/sfu`: P publishers (simulcast VP8 + Opus) and V viewers, all
//! str0m clients on loopback, against one `sfu-node` process. Prints one JSON line last.
//!
//! CPU is read from the sfu-node process alone (`/proc/<pid>/stat`), so the per-packet
//! figure holds whatever the generator costs. "Forwarded packets" are the RTP media packets
//! viewers received (from the SFU's rewritten sequence numbers); latency is publisher
//! write → viewer frame, from a timestamp inside each frame.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::json;
use sfu_node::auth::{Claims, mint};
use sfu_node::client::{ClientPeer, ClientRole, frame_sent_at, http_request};
use str0m::Event;

#[path = "loadgen/sfu_process.rs"]
mod sfu_process;
use sfu_process::SfuProcess;

#[derive(Debug, Parser)]
struct Args {
    /// The sfu-node binary to run.
    #[arg(long)]
    sfu: std::path::PathBuf,
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    #[arg(long, default_value_t = 100)]
    viewers: usize,
    /// Seconds of measurement (after the warm-up).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds for joins and bandwidth estimates to settle before measuring.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Simulcast from publishers (three layers).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    simulcast: bool,
    /// The SFU's bandwidth estimation: feedback, gcc (str0m's, with its pacer) or off.
    #[arg(long, default_value = "feedback")]
    bwe: String,
    /// Pin the SFU to these CPUs (`taskset -c` list), away from the load generator.
    #[arg(long)]
    sfu_cpus: Option<String>,
    /// Extra arguments for sfu-node, split on whitespace (e.g. "--threads 2").
    #[arg(long, default_value = "")]
    sfu_args: String,
}

const KEY: &str = "bench-key";
/// Nothing runs longer than this, whatever happens.
const HARD_LIMIT: Duration = Duration::from_secs(180);

/// The measurement window, fixed once every viewer has joined and the warm-up has passed.
#[derive(Clone)]
struct Window {
    set: Arc<OnceLock<(Instant, Instant)>>,
    limit: Instant,
}

impl Window {
    fn start(&self) -> Option<Instant> {
        self.set.get().map(|w| w.0)
    }
    fn end(&self) -> Instant {
        self.set.get().map(|w| w.1).unwrap_or(self.limit)
    }
}
const ROOM: &str = "bench";

fn start_sfu(args: &Args) -> anyhow::Result<SfuProcess> {
    let mut all = vec![
        "--max-on-camera".to_string(),
        args.publishers.clamp(1, 20).to_string(),
        "--bwe".into(),
        args.bwe.clone(),
    ];
    all.extend(args.sfu_args.split_whitespace().map(str::to_owned));
    sfu_process::start(
        "sfu-node",
        &args.sfu,
        args.sfu_cpus.as_deref(),
        ROOM,
        KEY,
        &all,
    )
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').context("stat format")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

fn token(sub: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let mut c = Claims::new(sub, sub, ROOM, exp);
    c.grants.share = true;
    mint(KEY.as_bytes(), &c)
}

async fn publisher(mut p: ClientPeer, window: Window, simulcast: bool) -> u64 {
    let (mut frame, mut audio) = (0u64, 0u64);
    let (mut next_v, mut next_a) = (Instant::now(), Instant::now());
    let mut want_key = true;
    let mut keyframes = 0;
    let mut iterations = 0u64;
    loop {
        iterations += 1;
        let now = Instant::now();
        let end = window.end();
        if now >= end || !p.rtc.is_alive() {
            if std::env::var_os("BENCH_DEBUG").is_some() {
                eprintln!(
                    "publisher ends: alive {} iterations {iterations} state {:?}",
                    p.rtc.is_alive(),
                    p.rtc.is_connected()
                );
            }
            return keyframes;
        }
        if p.rtc.is_connected() {
            if now >= next_v {
                let key = want_key || frame % 300 == 0;
                keyframes += u64::from(key);
                if p.send_video(now, frame, key, simulcast).is_err() {
                    return keyframes;
                }
                want_key = false;
                frame += 1;
                next_v += Duration::from_micros(33_333);
            }
            if now >= next_a {
                if p.send_audio(now, audio).is_err() {
                    return keyframes;
                }
                audio += 1;
                next_a += Duration::from_millis(20);
            }
        } else {
            next_v = now;
            next_a = now;
        }
        let until = next_v
            .min(next_a)
            .min(end)
            .max(now + Duration::from_millis(1));
        let Ok(events) = p.step(until).await else {
            return keyframes;
        };
        if events
            .iter()
            .any(|e| matches!(e, Event::KeyframeRequest(_)))
        {
            want_key = true;
        }
    }
}

#[derive(Default)]
struct ViewerReport {
    first_frame_ms: Option<f64>,
    latencies_ms: Vec<f32>,
    packets: u64,
    lost: u64,
    frames: u64,
    payload_bytes: u64,
}

async fn viewer(mut v: ClientPeer, joined: Instant, window: Window) -> ViewerReport {
    let mut r = ViewerReport::default();
    // Per mid: (lowest, highest) sequence number seen in the window, and packets counted.
    let mut seqs: HashMap<String, (u64, u64, u64)> = HashMap::new();
    while Instant::now() < window.end() && v.rtc.is_alive() {
        let until = window
            .end()
            .min(Instant::now() + Duration::from_millis(100));
        let Ok(events) = v.step(until).await else {
            break;
        };
        let now = Instant::now();
        let from = window.start();
        for e in events {
            let Event::MediaData(m) = e else { continue };
            let video = m.params.spec().codec.is_video();
            if video && r.first_frame_ms.is_none() {
                r.first_frame_ms = Some((now - joined).as_secs_f64() * 1000.0);
            }
            if from.is_none_or(|f| now < f) {
                continue;
            }
            r.frames += 1;
            r.payload_bytes += m.data.len() as u64;
            let (lo, hi) = (**m.seq_range.start(), **m.seq_range.end());
            let n = hi.saturating_sub(lo) + 1;
            r.packets += n;
            let e = seqs.entry(m.mid.to_string()).or_insert((lo, hi, 0));
            e.0 = e.0.min(lo);
            e.1 = e.1.max(hi);
            e.2 += n;
            if video && let Some(sent) = frame_sent_at(&m.data) {
                let ms = now.saturating_duration_since(sent).as_secs_f32() * 1000.0;
                r.latencies_ms.push(ms);
            }
        }
    }
    r.lost = seqs
        .values()
        .map(|(lo, hi, n)| (hi - lo + 1).saturating_sub(*n))
        .sum();
    r
}

fn percentile(sorted: &[f32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i])
}

async fn stats(admin: SocketAddr) -> anyhow::Result<serde_json::Value> {
    Ok(http_request(admin, "GET", "/stats", &[], b"").await?.json())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.publishers == 0 || args.viewers == 0 {
        bail!("need at least one publisher and one viewer");
    }
    let _ = sfu_node::client::epoch();
    let sfu = start_sfu(&args)?;
    eprintln!("{}: signalling {}, admin {}", sfu.name, sfu.http, sfu.admin);
    let pid = sfu.child.id();
    let start = Instant::now();
    let window = Window {
        set: Arc::new(OnceLock::new()),
        limit: start + HARD_LIMIT,
    };

    let whip = format!("/rooms/{ROOM}/whip");
    let whep = format!("/rooms/{ROOM}/whep");
    let mut pubs = Vec::new();
    for i in 0..args.publishers {
        let role = ClientRole::Publish {
            simulcast: args.simulcast,
        };
        let (p, _) = ClientPeer::connect(sfu.http, &whip, &token(&format!("pub{i}")), role).await?;
        pubs.push(tokio::spawn(publisher(p, window.clone(), args.simulcast)));
    }
    // Let the publishers connect, so join-to-first-frame measures a viewer joining a live room.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut views = Vec::new();
    let slots = args.publishers.min(20);
    for i in 0..args.viewers {
        let joined = Instant::now();
        let role = ClientRole::View { slots };
        let (v, _) =
            ClientPeer::connect(sfu.http, &whep, &token(&format!("view{i}")), role).await?;
        views.push(tokio::spawn(viewer(v, joined, window.clone())));
    }
    let joins_done = Instant::now();
    eprintln!("joins took {:?}", joins_done - start);
    let measure_from = joins_done + Duration::from_secs(args.warmup);
    let end = measure_from + Duration::from_secs(args.duration);
    let _ = window.set.set((measure_from, end));

    tokio::time::sleep_until(measure_from.into()).await;
    let cpu0 = cpu_seconds(pid)?;
    let gen0 = cpu_seconds(std::process::id())?;
    let stats0 = stats(sfu.admin).await?;
    tokio::time::sleep_until(end.into()).await;
    let cpu1 = cpu_seconds(pid)?;
    let gen1 = cpu_seconds(std::process::id())?;
    let stats1 = stats(sfu.admin).await?;
    let window = (end - measure_from).as_secs_f64();

    let mut reports = Vec::new();
    for v in views {
        reports.push(v.await?);
    }
    let mut keyframes = 0;
    for p in pubs {
        keyframes += p.await?;
    }
    let mut latencies: Vec<f32> = reports
        .iter()
        .flat_map(|r| r.latencies_ms.iter().copied())
        .collect();
    latencies.sort_by(f32::total_cmp);
    let mut first: Vec<f32> = reports
        .iter()
        .filter_map(|r| r.first_frame_ms.map(|f| f as f32))
        .collect();
    first.sort_by(f32::total_cmp);
    let packets: u64 = reports.iter().map(|r| r.packets).sum();
    let lost: u64 = reports.iter().map(|r| r.lost).sum();
    let frames: u64 = reports.iter().map(|r| r.frames).sum();
    let payload_bytes: u64 = reports.iter().map(|r| r.payload_bytes).sum();
    let cpu = cpu1 - cpu0;
    let delta = |k: &str| {
        stats1["media"][k].as_f64().unwrap_or(0.0) - stats0["media"][k].as_f64().unwrap_or(0.0)
    };
    let forwarded_pps = packets as f64 / window;
    let expected_frames =
        window * (30.0 + 50.0) * slots.min(args.publishers) as f64 * args.viewers as f64;
    let out = json!({
        "publishers": args.publishers,
        "viewers": args.viewers,
        "simulcast": args.simulcast,
        "bwe": args.bwe,
        "window_s": window,
        "forwarded_pps": forwarded_pps.round(),
        "sfu_cpu_s": (cpu * 100.0).round() / 100.0,
        "loadgen_cpu_s": ((gen1 - gen0) * 100.0).round() / 100.0,
        "sfu_cpu_s_per_million_packets": if packets > 0 { ((cpu / (packets as f64 / 1e6)) * 1000.0).round() / 1000.0 } else { f64::NAN },
        "forwarded_packets_per_cpu_s": if cpu > 0.0 { (packets as f64 / cpu).round() } else { f64::NAN },
        "sfu_us_per_packet": if packets > 0 { (cpu * 1e6 / packets as f64 * 100.0).round() / 100.0 } else { f64::NAN },
        "payload_bytes_ps": (payload_bytes as f64 / window).round(),
        "sfu_cpus": args.sfu_cpus,
        "sfu_args": args.sfu_args,
        "sfu_datagrams_out_ps": (delta("packets_out") / window).round(),
        "sfu_datagrams_in_ps": (delta("packets_in") / window).round(),
        "p50_forward_ms": (percentile(&latencies, 0.50) * 100.0).round() / 100.0,
        "p99_forward_ms": (percentile(&latencies, 0.99) * 100.0).round() / 100.0,
        "loss_pct": if packets + lost > 0 { (lost as f64 * 100.0 / (packets + lost) as f64 * 1000.0).round() / 1000.0 } else { f64::NAN },
        "frame_delivery_pct": ((frames as f64 * 100.0 / expected_frames) * 10.0).round() / 10.0,
        "nacks_received": delta("nacks_received"),
        "sfu_rtc_timeouts_ps": (delta("rtc_timeouts") / window).round(),
        "sfu_wakeups_ps": (delta("wakeups") / window).round(),
        "plis_sent": delta("plis_sent"),
        "publisher_keyframes": keyframes,
        "viewer_join_to_first_frame_ms": percentile(&first, 0.5).round(),
        "viewer_join_to_first_frame_max_ms": first.last().map(|f| f.round()).unwrap_or(f32::NAN),
        "viewers_without_video": args.viewers - first.len(),
    });
    drop(sfu);
    println!("{out}");
    Ok(())
}
