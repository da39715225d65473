//! The recorder against a real sfu-node in-process on loopback, with str0m publishers
//! sending real VP8 and Opus: the rules decide what is in the MP4, ffprobe checks it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sfu_node::auth::{Claims, mint};
use sfu_node::publisher::{TestMedia, publish};
use sfu_node::recorder::compose::probe;
use sfu_node::recorder::{RecorderConfig, RecordingInfo, RecordingState, run_with_status};
use sfu_node::server::{Listeners, ServerConfig, bind_media, serve};
use sfu_node::{RoomConfig, RoomKind};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

const KEY: &[u8] = b"recorder-test-key";
const ROOM: &str = "session:ns:rec";

struct Server {
    http: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<sfu_node::Result<()>>,
}

async fn start_sfu() -> Server {
    // The room offers ICE-TCP too; the recorder, like any UDP peer, still uses UDP.
    let (udp, tcp) = bind_media([127, 0, 0, 1].into(), 0).await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = http.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let config = ServerConfig {
        room: RoomConfig::new(ROOM, RoomKind::Session),
        advertise: None,
        token_key: KEY.to_vec(),
        drain_grace: Duration::from_secs(3),
        initial_estimate_bps: 2_000_000,
        bwe: Default::default(),
        threads: 1,
    };
    let task = tokio::spawn(serve(
        config,
        Listeners {
            udp,
            tcp: Some(tcp.into()),
            http: http.into(),
            admin,
        },
        async move {
            let _ = stopped.await;
        },
    ));
    Server {
        http: http_addr,
        stop: Some(stop),
        task,
    }
}

fn token(sub: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    mint(
        KEY,
        &Claims::new(sub, &format!("Name {sub}"), ROOM, now + 3600),
    )
}

/// On camera for `d`; returns how long the publisher really was on camera (WHIP answer to
/// DELETE).
async fn on_camera(http: SocketAddr, who: &str, media: &TestMedia, d: Duration) -> Duration {
    let begun = Instant::now();
    publish(http, ROOM, &token(who), media, tokio::time::sleep(d))
        .await
        .unwrap();
    begun.elapsed()
}

async fn wait_for(
    status: &mut watch::Receiver<Vec<RecordingInfo>>,
    what: &str,
    f: impl Fn(&RecordingInfo) -> bool,
) -> RecordingInfo {
    let got = tokio::time::timeout(
        Duration::from_secs(60),
        status.wait_for(|r| r.first().is_some_and(&f)),
    )
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    .unwrap();
    got[0].clone()
}

fn recorder(http: SocketAddr, out: &Path) -> RecorderConfig {
    let mut config = RecorderConfig::new(http, ROOM, KEY, out.to_path_buf());
    config.file_prefix = "rec-test-".into();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gap_is_cut_and_everyone_on_camera_is_in_one_mp4() {
    let dir = tempfile::tempdir().unwrap();
    let a = Arc::new(TestMedia::generate(dir.path(), 2, 440).await.unwrap());
    let b = Arc::new(TestMedia::generate(dir.path(), 2, 660).await.unwrap());
    let mut sfu = start_sfu().await;
    let out = dir.path().join("out");
    let (status_tx, mut status) = watch::channel(Vec::new());
    let (stop_rec, rec_stopped) = oneshot::channel::<()>();
    let rec = tokio::spawn(run_with_status(
        recorder(sfu.http, &out),
        status_tx,
        async move {
            let _ = rec_stopped.await;
        },
    ));
    // Let the recorder join before anyone goes on camera.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Stretch 1: A for 4 s, B joins for 2 s in the middle.
    let http = sfu.http;
    let (first, _) = tokio::join!(on_camera(http, "a", &a, Duration::from_secs(4)), async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        on_camera(http, "b", &b, Duration::from_secs(2)).await
    });
    let paused = wait_for(&mut status, "the pause", |r| {
        r.state == RecordingState::Paused
    })
    .await;
    assert_eq!(paused.parts, 1);
    // The gap: nobody on camera for 3 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Stretch 2: A again for 3 s.
    let second = on_camera(http, "a", &a, Duration::from_secs(3)).await;
    let left = Instant::now();
    // Listed: an MP4 that holds everything captured, both parts.
    let listed = wait_for(&mut status, "the MP4 of both parts", |r| {
        r.parts == 2
            && r.state == RecordingState::Paused
            && r.file.is_some()
            && (r.duration_seconds - r.captured_seconds).abs() < 0.5
    })
    .await;
    eprintln!(
        "last person left -> MP4 listed: {:.2} s",
        left.elapsed().as_secs_f64()
    );

    // The session ends: the room drains, the recording stops for good.
    sfu.stop.take().unwrap().send(()).unwrap();
    let done = wait_for(&mut status, "completion", |r| {
        r.state == RecordingState::Complete
    })
    .await;
    sfu.task.await.unwrap().unwrap();
    let _ = stop_rec.send(());
    let infos = rec.await.unwrap().unwrap();
    assert_eq!(infos, vec![done.clone()]);

    let file = out.join(done.file.as_ref().unwrap());
    assert_eq!(done.file, listed.file);
    assert!(done.file.as_ref().unwrap().starts_with("rec-test-"));
    let p = probe(Path::new("ffprobe"), &file).await.unwrap();
    assert_eq!(p.video.as_deref(), Some("h264"));
    assert_eq!(p.audio.as_deref(), Some("aac"));
    assert_eq!((p.width, p.height), (1280, 720));
    let expected = (first + second).as_secs_f64();
    let got = p.duration_ms as f64 / 1000.0;
    eprintln!("on camera {expected:.2} s (gap of 3 s cut), MP4 {got:.2} s");
    assert!(
        (got - expected).abs() <= 1.0,
        "MP4 {got} s, on camera {expected} s"
    );
    assert_eq!(
        done.size_bytes,
        Some(std::fs::metadata(&file).unwrap().len())
    );
    assert!(out.join("manifest.json").exists());
    if std::env::var_os("RECORDER_TEST_KEEP").is_some() {
        eprintln!("kept {}", dir.keep().display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_recorder_keeps_what_it_captured_and_continues_the_recording() {
    let dir = tempfile::tempdir().unwrap();
    let a = Arc::new(TestMedia::generate(dir.path(), 2, 440).await.unwrap());
    let mut sfu = start_sfu().await;
    let out = dir.path().join("out");
    let http = sfu.http;
    let (stop_pub, pub_stopped) = oneshot::channel::<()>();
    let media = a.clone();
    let publisher = tokio::spawn(async move {
        publish(http, ROOM, &token("a"), &media, async move {
            let _ = pub_stopped.await;
        })
        .await
    });

    // First recorder: 3 s on camera, then it is told to stop (SIGTERM) mid-stretch.
    let (status_tx, mut status) = watch::channel(Vec::new());
    let first = tokio::spawn(run_with_status(
        recorder(http, &out),
        status_tx,
        tokio::time::sleep(Duration::from_secs(4)),
    ));
    wait_for(&mut status, "recording", |r| {
        r.state == RecordingState::Recording
    })
    .await;
    let infos = first.await.unwrap().unwrap();
    let kept = infos[0].duration_seconds;
    assert!(infos[0].file.is_some(), "what was captured is composed");
    assert!(kept > 1.5, "{kept} s kept");

    // Second recorder on the same folder: the same recording goes on.
    let (status_tx, mut status) = watch::channel(Vec::new());
    let (stop_rec, rec_stopped) = oneshot::channel::<()>();
    let second = tokio::spawn(run_with_status(
        recorder(http, &out),
        status_tx,
        async move {
            let _ = rec_stopped.await;
        },
    ));
    wait_for(&mut status, "resumed", |r| {
        r.state == RecordingState::Recording && r.parts == 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_pub.send(()).unwrap();
    publisher.await.unwrap().unwrap();
    sfu.stop.take().unwrap().send(()).unwrap();
    let done = wait_for(&mut status, "completion", |r| {
        r.state == RecordingState::Complete
    })
    .await;
    let _ = stop_rec.send(());
    second.await.unwrap().unwrap();
    assert_eq!(done.id, infos[0].id, "one recording across the restart");
    assert_eq!(done.interruptions, 1, "the stop while on camera is counted");
    let p = probe(Path::new("ffprobe"), &out.join(done.file.unwrap()))
        .await
        .unwrap();
    let got = p.duration_ms as f64 / 1000.0;
    assert!(
        (got - done.captured_seconds).abs() <= 1.0,
        "MP4 {got} s, captured {} s",
        done.captured_seconds
    );
    assert!(
        got >= kept + 1.5,
        "MP4 {got} s holds the first run's {kept} s and more"
    );
}
