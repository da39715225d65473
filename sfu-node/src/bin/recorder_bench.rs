//! `recorder-bench`: how much CPU the recorder costs per recorded minute.
//!
//! Starts an sfu-node room in this process on loopback, runs the `roundtable-recorder`
//! binary as a child against it, has `--publishers` str0m peers send real VP8 (320×240,
//! 30 fps, ~300 kbit/s) and Opus for `--seconds`, then ends the room. CPU is read from
//! `/proc/<recorder>/stat` (its own time, and its waited-for children: the ffmpeg runs),
//! once when the publishers leave (capture) and once when the MP4 is complete (capture and
//! composition). Prints one JSON object as its last line. A measurement, not a test.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Parser;
use sfu_node::auth::{Claims, mint};
use sfu_node::client::http_request;
use sfu_node::publisher::{TestMedia, publish};
use sfu_node::server::{Listeners, ServerConfig, serve};
use sfu_node::{RoomConfig, RoomKind};
use tokio::net::{TcpListener, UdpSocket};

const KEY: &[u8] = b"recorder-bench-key";
const ROOM: &str = "session:bench:recorded";

#[derive(Debug, Parser)]
struct Args {
    /// People on camera at once.
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// How long they stay on camera.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// The roundtable-recorder binary (default: next to this one).
    #[arg(long)]
    recorder: Option<PathBuf>,
}

/// utime + stime + cutime + cstime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14..17 of stat(5), counted from the state field (3) after the ')'.
    let ticks: u64 = fields[11..15]
        .iter()
        .map(|f| f.parse::<u64>().unwrap_or(0))
        .sum();
    Ok(ticks as f64 / 100.0)
}

async fn recordings(admin: SocketAddr) -> Option<serde_json::Value> {
    let r = http_request(admin, "GET", "/recordings", &[], b"")
        .await
        .ok()?;
    let v = r.json();
    v.get(0).cloned()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let recorder = args.recorder.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .expect("own path")
            .with_file_name("roundtable-recorder")
    });
    let dir = std::env::temp_dir().join(format!("recorder-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let tones = [440, 550, 660, 770];
    let mut media = Vec::new();
    for i in 0..args.publishers {
        media.push(TestMedia::generate(&dir, 2, tones[i % tones.len()] + i as u32).await?);
    }

    let udp = UdpSocket::bind("127.0.0.1:0").await?;
    let http = TcpListener::bind("127.0.0.1:0").await?;
    let admin = TcpListener::bind("127.0.0.1:0").await?;
    let sfu = http.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = ServerConfig {
        room: RoomConfig::new(ROOM, RoomKind::Session),
        advertise: None,
        token_key: KEY.to_vec(),
        drain_grace: Duration::from_secs(2),
        initial_estimate_bps: 2_000_000,
        bwe: Default::default(),
        threads: 1,
    };
    let room = tokio::spawn(serve(
        config,
        Listeners {
            udp,
            // The recorder speaks UDP.
            tcp: None,
            http: http.into(),
            admin,
        },
        async move {
            let _ = stopped.await;
        },
    ));

    let rec_admin: SocketAddr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?
    };
    let mut child = tokio::process::Command::new(&recorder)
        .env("REC_SFU", sfu.to_string())
        .env("REC_ROOM", ROOM)
        .env("REC_TOKEN_KEY", String::from_utf8_lossy(KEY).to_string())
        .env("REC_OUTPUT", dir.join("out"))
        .env("REC_ADMIN_ADDR", rec_admin.to_string())
        .env("REC_LINGER_SECONDS", "5")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", recorder.display()))?;
    let pid = child.id().context("recorder pid")?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let begun = Instant::now();
    let mut tasks = Vec::new();
    for (i, m) in media.into_iter().enumerate() {
        let token = mint(
            KEY,
            &Claims::new(&format!("p{i}"), "Bench", ROOM, now + 3600),
        );
        let seconds = args.seconds;
        tasks.push(tokio::spawn(async move {
            publish(
                sfu,
                ROOM,
                &token,
                &m,
                tokio::time::sleep(Duration::from_secs(seconds)),
            )
            .await
        }));
    }
    for t in tasks {
        t.await??;
    }
    let on_camera = begun.elapsed().as_secs_f64();
    let capture_cpu = cpu_seconds(pid)?;
    let left = Instant::now();
    let _ = stop.send(());
    let done = loop {
        if let Some(r) = recordings(rec_admin).await
            && r["state"] == "Complete"
        {
            break r;
        }
        if left.elapsed() > Duration::from_secs(600) {
            bail!("the recording did not complete");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let complete_after = left.elapsed().as_secs_f64();
    let total_cpu = cpu_seconds(pid)?;
    let _ = child.wait().await;
    room.await??;
    let recorded = done["durationSeconds"].as_f64().unwrap_or(0.0);
    let minutes = recorded / 60.0;
    let result = serde_json::json!({
        "publishers": args.publishers,
        "on_camera_s": (on_camera * 100.0).round() / 100.0,
        "recorded_s": recorded,
        "mp4_bytes": done["sizeBytes"],
        "capture_cpu_s": capture_cpu,
        "compose_cpu_s": ((total_cpu - capture_cpu) * 100.0).round() / 100.0,
        "cpu_s_per_recorded_minute": ((total_cpu / minutes) * 100.0).round() / 100.0,
        "capture_cpu_s_per_minute": ((capture_cpu / minutes) * 100.0).round() / 100.0,
        "left_to_complete_s": (complete_after * 100.0).round() / 100.0,
    });
    let _ = std::fs::remove_dir_all(&dir);
    println!("{result}");
    Ok(())
}
