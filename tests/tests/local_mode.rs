//! The local all-in-one mode end to end, as `roundtable up` assembles it: manifests in a
//! folder, the runner starts an embedded sfu-node for a started session, a person signed in
//! through the control plane joins on camera with real VP8/Opus, the session is ended in its
//! manifest, and the recording (the local mode records too) shows in the session's status as
//! a complete MP4 that ffprobe reads, with the on-camera time as its duration. A session with
//! `relays: 1` gets a relay server as a cluster gets a relay pod: joins are sent to it, through
//! the signalling proxy, and a watcher there sees the origin's publisher.

use std::time::{Duration, Instant};

use roundtable_control_plane::Catalog;
use roundtable_crds::RecordingState;
use roundtable_e2e::local::LocalStack;
use roundtable_e2e::wait_until;
use serde_json::Value;
use sfu_node::client::{ClientPeer, ClientRole, Watcher};
use sfu_node::publisher::{TestMedia, publish};

const REGISTRATION_KEY: &[u8] = b"local-registration-key";

fn manifests_for(lifecycle: &str) -> String {
    let now = jiff::Timestamp::now();
    let start = now - jiff::SignedDuration::from_hours(1);
    let end = now + jiff::SignedDuration::from_hours(1);
    format!(
        "apiVersion: roundtable.dev/v1alpha1\nkind: LiveEvent\nmetadata: {{name: meetup}}\nspec:\n  title: Meetup\n  start: \"{start}\"\n  end: \"{end}\"\n  ticketTypes: [{{name: general}}]\n  organizers: [ada@example.com]\n  recordingStorage: {{persistentVolumeClaim: meetup-recordings}}\n---\napiVersion: roundtable.dev/v1alpha1\nkind: Session\nmetadata: {{name: talk}}\nspec:\n  event: meetup\n  title: The talk\n  lifecycle: {lifecycle}\n  recording: true\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_mode_runs_a_started_session_and_records_it() {
    roundtable_e2e::init_test_logs();
    let dir = tempfile::tempdir().unwrap();
    let manifests_dir = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests_dir).unwrap();
    let manifest = manifests_dir.join("meetup.yaml");
    std::fs::write(&manifest, manifests_for("Started")).unwrap();
    let recordings = LocalStack::recordings(dir.path());

    let stack = LocalStack::start(
        &manifests_dir,
        dir.path(),
        b"local-join-key",
        REGISTRATION_KEY,
    )
    .await;
    let (catalog, http, base) = (&stack.catalog, &stack.http, &stack.base);
    let cookie = stack.sign_in("ada@example.com", "Ada").await;
    let joined: Value = wait_until(
        "the started session to take joins",
        Duration::from_secs(30),
        async || {
            let r = http
                .post(format!("{base}/api/sessions/default/talk/join"))
                .header("cookie", &cookie)
                .send()
                .await
                .ok()?;
            if r.status() != 200 {
                return None;
            }
            r.json().await.ok()
        },
    )
    .await;
    assert_eq!(joined["role"]["share"], true);

    let media = TestMedia::generate(&dir.path().join("media"), 4, 440)
        .await
        .unwrap();
    let sfu = joined["sfu"]
        .as_str()
        .unwrap()
        .strip_prefix("http://")
        .unwrap()
        .parse()
        .unwrap();
    let on_camera = Instant::now();
    publish(
        sfu,
        joined["room"].as_str().unwrap(),
        joined["token"].as_str().unwrap(),
        &media,
        tokio::time::sleep(Duration::from_secs(8)),
    )
    .await
    .unwrap();
    let on_camera = on_camera.elapsed();

    // The organiser ends it in the manifest; the local mode notices and the recording finishes.
    std::fs::write(&manifest, manifests_for("Ended")).unwrap();
    let ended = Instant::now();
    let recording = wait_until(
        "the recording to be complete",
        Duration::from_secs(120),
        async || {
            let session = catalog
                .sessions()
                .into_iter()
                .find(|s| s.metadata.name.as_deref() == Some("talk"))?;
            let status = session.status.as_ref()?;
            let r = status.recordings.first()?.clone();
            (r.state == RecordingState::Complete).then_some(r)
        },
    )
    .await;
    eprintln!(
        "local mode: session ended to MP4 listed in {:.2?}",
        ended.elapsed()
    );
    let file = recordings
        .join("meetup-recordings")
        .join(recording.file.as_deref().unwrap());
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration:stream=codec_type",
            "-of",
            "json",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        probe.status.success(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let probe: Value = serde_json::from_slice(&probe.stdout).unwrap();
    let kinds: Vec<&str> = probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["codec_type"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"video") && kinds.contains(&"audio"),
        "{kinds:?}"
    );
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (duration - on_camera.as_secs_f64()).abs() < 1.5,
        "the MP4 lasts {duration:.2}s for {:.2}s on camera",
        on_camera.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_with_a_relay_sends_its_watchers_there() {
    roundtable_e2e::init_test_logs();
    let dir = tempfile::tempdir().unwrap();
    let manifests_dir = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests_dir).unwrap();
    let relayed = manifests_for("Started").replace("  recording: true\n", "  relays: 1\n");
    std::fs::write(manifests_dir.join("meetup.yaml"), relayed).unwrap();
    let stack = LocalStack::start(
        &manifests_dir,
        dir.path(),
        b"local-join-key",
        REGISTRATION_KEY,
    )
    .await;
    let (catalog, http, base) = (&stack.catalog, &stack.http, &stack.base);
    let relay_ready = || {
        let session = catalog
            .sessions()
            .into_iter()
            .find(|s| s.metadata.name.as_deref() == Some("talk"))?;
        let status = session.status.clone()?;
        (status.relays == Some(1)).then_some(status)
    };
    let status = wait_until(
        "the session's relay to be ready",
        Duration::from_secs(30),
        async || relay_ready(),
    )
    .await;
    assert_eq!(status.relay_pods[0].name, "session-talk-relay-0");
    assert!(status.watchers_per_pod.is_some_and(|w| w > 0), "{status:?}");

    let cookie = stack.sign_in("ada@example.com", "Ada").await;
    let join = async || -> Value {
        let r = http
            .post(format!("{base}/api/sessions/default/talk/join"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    };
    let publisher = join().await;
    let watcher = join().await;
    // The relay is who serves watching; going on camera stays with the origin.
    assert_eq!(
        watcher["signalling"]["sfu"], "/sfu/session-talk-relay-0",
        "{watcher}"
    );
    assert_eq!(watcher["signalling"]["origin"], "/sfu/origin", "{watcher}");
    assert_ne!(watcher["sfu"], watcher["origin"], "{watcher}");
    let direct = |v: &Value, key: &str| -> std::net::SocketAddr {
        v[key]
            .as_str()
            .unwrap()
            .strip_prefix("http://")
            .unwrap()
            .parse()
            .unwrap()
    };
    let room = publisher["room"].as_str().unwrap().to_owned();
    let (mut peer, _) = ClientPeer::connect(
        direct(&publisher, "origin"),
        &format!("/rooms/{room}/whip"),
        publisher["token"].as_str().unwrap(),
        ClientRole::Publish { simulcast: false },
    )
    .await
    .expect("on camera at the origin");
    let end = Instant::now() + Duration::from_secs(6);
    let publishing = tokio::spawn(async move {
        let _ = peer.publish_until(end, false).await;
    });
    // The watcher signals through the control plane's proxy to the relay, as a page does.
    let watching = Watcher::join(
        &format!("{base}/sfu/session-talk-relay-0"),
        &room,
        watcher["token"].as_str().unwrap(),
        1,
    )
    .await
    .expect("the watcher joins at the relay through the proxy")
    .watch_until(end)
    .await;
    publishing.await.unwrap();
    eprintln!(
        "local mode: {} video frames in 6 s through the relay",
        watching.video_frames
    );
    assert!(
        watching.video_frames > 60,
        "video through the relay: {} frames",
        watching.video_frames
    );
    let counted = wait_until(
        "the relay to report its watcher",
        Duration::from_secs(10),
        async || relay_ready().filter(|s| s.relay_pods[0].watching >= 1),
    )
    .await;
    assert!(counted.relay_pods[0].ready, "{counted:?}");
}
