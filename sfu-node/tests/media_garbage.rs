//! Garbage at the media port: a real `sfu-node` process serves a room with one publisher and
//! one viewer (str0m clients on loopback) while random datagrams and truncated STUN, DTLS, RTP
//! and RTCP packets arrive at its UDP port at a bounded rate, from strangers' ports and from
//! the viewer's own address. The viewer must keep getting video during and after — what a
//! person watching would notice. The CPU the SFU spends on the garbage is measured from
//! `/proc/<pid>/stat` against an equal window without garbage and printed as one JSON line
//! (`bench/media-garbage` runs this test in release and keeps that line); it is not asserted.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use sfu_node::client::{ClientPeer, ClientRole, http_request};
use str0m::Event;
use tokio::net::UdpSocket;

mod support;
use support::Sfu;

const KEY: &str = "garbage-test-key";
const ROOM: &str = "garbage";
/// Garbage datagrams per second, and for how long.
const RATE: u32 = 2_000;
const WINDOW: Duration = Duration::from_secs(5);
/// One in this many garbage datagrams comes from the viewer's own address and port.
const FROM_VIEWER_EVERY: u64 = 10;

fn start_sfu() -> Sfu {
    support::start(&[
        "--room",
        ROOM,
        "--token-key",
        KEY,
        "--kind",
        "room",
        "--http-addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
        "--udp-bind",
        "127.0.0.1",
        "--udp-port",
        "0",
        "--drain-grace-seconds",
        "1",
    ])
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn token(sub: &str, share: bool) -> String {
    support::token(KEY, ROOM, sub, share)
}

/// One garbage datagram: random bytes, or a STUN, DTLS, RTP or RTCP packet cut short or with
/// its fields filled at random.
fn garbage(rng: &mut StdRng) -> Vec<u8> {
    let mut random = |n: usize| {
        let mut b = vec![0u8; n];
        rng.fill_bytes(&mut b);
        b
    };
    let kind = random(1)[0] % 6;
    let mut packet = match kind {
        // Random bytes of any length a datagram on this path has.
        0 => {
            let n = 1 + usize::from(u16::from_be_bytes([random(1)[0], random(1)[0]])) % 1400;
            return random(n);
        }
        // STUN: a Binding request header (magic cookie), then random attributes.
        1 => {
            let mut p = vec![0x00, 0x01, 0x00, 0x50, 0x21, 0x12, 0xa4, 0x42];
            p.extend(random(12 + 80));
            p
        }
        // DTLS: a handshake record (DTLS 1.2), epoch 0, a ClientHello's start.
        2 => {
            let mut p = vec![0x16, 0xfe, 0xfd, 0x00, 0x00];
            p.extend(random(6));
            p.extend([0x01, 0x00]);
            p.extend(random(200));
            p
        }
        // DTLS application data in epoch 1 (as if encrypted for a live session).
        3 => {
            let mut p = vec![0x17, 0xfe, 0xfd, 0x00, 0x01];
            p.extend(random(150));
            p
        }
        // RTP: version 2, a dynamic payload type, random sequence, timestamp and SSRC.
        4 => {
            let mut p = vec![0x80, 96 + random(1)[0] % 32];
            p.extend(random(10 + 160));
            p
        }
        // RTCP: a sender report, receiver report, feedback or BYE header.
        _ => {
            let pt = [200u8, 201, 203, 205, 206][usize::from(random(1)[0] % 5)];
            let mut p = vec![0x81, pt, 0x00, 0x07];
            p.extend(random(28));
            p
        }
    };
    // Most are cut short somewhere, a few are left whole.
    let cut = usize::from(random(1)[0]) % (packet.len() + 8);
    packet.truncate(cut.max(1));
    packet
}

/// Video frames the viewer received, by arrival time.
type Frames = Arc<Mutex<Vec<Instant>>>;

/// The viewer: counts video frames until `end`; while `garbage_until` has not passed it also
/// sends every tenth garbage datagram from its own socket (its 5-tuple, as a spoofer would).
async fn watch(
    mut viewer: ClientPeer,
    sfu: SocketAddr,
    frames: Frames,
    spoof: Spoof,
    end: Instant,
) {
    let mut rng = StdRng::seed_from_u64(7);
    while Instant::now() < end && viewer.rtc.is_alive() {
        let until = (Instant::now() + Duration::from_millis(10)).min(end);
        let Ok(events) = viewer.step(until).await else {
            break;
        };
        for e in events {
            if let Event::MediaData(m) = e
                && m.params.spec().codec.is_video()
            {
                frames.lock().unwrap().push(Instant::now());
            }
        }
        let due = spoof.due();
        for _ in 0..due {
            let _ = viewer.socket.send_to(&garbage(&mut rng), sfu).await;
        }
    }
}

/// How many garbage datagrams the viewer owes from its own socket: one per
/// [`FROM_VIEWER_EVERY`] sent by the strangers.
#[derive(Clone, Default)]
struct Spoof {
    owed: Arc<Mutex<u64>>,
}

impl Spoof {
    fn owe(&self, n: u64) {
        *self.owed.lock().unwrap() += n;
    }
    fn due(&self) -> u64 {
        std::mem::take(&mut *self.owed.lock().unwrap())
    }
}

/// Sends [`RATE`] datagrams a second for [`WINDOW`] from eight loopback sockets (and asks the
/// viewer for its share); returns how many were sent.
async fn spray(sfu: SocketAddr, spoof: Spoof) -> u64 {
    let mut sockets = Vec::new();
    for _ in 0..8 {
        sockets.push(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap());
    }
    let mut rng = StdRng::seed_from_u64(1);
    let tick = Duration::from_millis(10);
    let per_tick = u64::from(RATE) / 100;
    let start = Instant::now();
    let mut sent = 0u64;
    let mut next = start;
    while next < start + WINDOW {
        tokio::time::sleep_until(next.into()).await;
        let from_strangers = per_tick - per_tick / FROM_VIEWER_EVERY;
        for _ in 0..from_strangers {
            let socket = &sockets[rng.random_range(0..sockets.len())];
            let _ = socket.send_to(&garbage(&mut rng), sfu).await;
        }
        spoof.owe(per_tick / FROM_VIEWER_EVERY);
        sent += per_tick;
        next += tick;
    }
    sent
}

fn frames_between(frames: &Frames, from: Instant, to: Instant) -> Vec<Instant> {
    let f = frames.lock().unwrap();
    f.iter()
        .copied()
        .filter(|t| *t >= from && *t < to)
        .collect()
}

/// The longest time without a frame in `[from, to)`.
fn longest_gap(frames: &[Instant], from: Instant, to: Instant) -> Duration {
    let mut last = from;
    let mut gap = Duration::ZERO;
    for &t in frames.iter().chain([&to]) {
        gap = gap.max(t.saturating_duration_since(last));
        last = t;
    }
    gap
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewer_keeps_watching_while_garbage_hits_the_media_port() {
    let sfu = start_sfu();
    let pid = sfu.child.id();
    let whip = format!("/rooms/{ROOM}/whip");
    let whep = format!("/rooms/{ROOM}/whep");
    let (mut publisher, _) = ClientPeer::connect(
        sfu.http,
        &whip,
        &token("presenter", true),
        ClientRole::Publish { simulcast: false },
    )
    .await
    .expect("publishing");
    let test_end = Instant::now() + Duration::from_secs(25);
    let publishing = tokio::spawn(async move { publisher.publish_until(test_end, false).await });
    let (viewer, _) = ClientPeer::connect(
        sfu.http,
        &whep,
        &token("viewer", false),
        ClientRole::View { slots: 1 },
    )
    .await
    .expect("viewing");
    let frames = Frames::default();
    let spoof = Spoof::default();
    let watching = tokio::spawn(watch(
        viewer,
        sfu.udp,
        frames.clone(),
        spoof.clone(),
        test_end,
    ));

    let first_by = Instant::now() + Duration::from_secs(10);
    while frames.lock().unwrap().is_empty() {
        assert!(Instant::now() < first_by, "the viewer never got video");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Settle, then the same window without and with garbage.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let quiet_from = Instant::now();
    let cpu_quiet_0 = cpu_seconds(pid);
    tokio::time::sleep(WINDOW).await;
    let cpu_quiet_1 = cpu_seconds(pid);
    let noisy_from = Instant::now();
    let stats_0 = http_request(sfu.admin, "GET", "/stats", &[], b"")
        .await
        .unwrap()
        .json();
    let cpu_noisy_0 = cpu_seconds(pid);
    let sent = spray(sfu.udp, spoof).await;
    let cpu_noisy_1 = cpu_seconds(pid);
    let noisy_to = Instant::now();
    let stats_1 = http_request(sfu.admin, "GET", "/stats", &[], b"")
        .await
        .unwrap()
        .json();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_to = Instant::now();

    let quiet = frames_between(&frames, quiet_from, noisy_from);
    let noisy = frames_between(&frames, noisy_from, noisy_to);
    let after = frames_between(&frames, noisy_to, after_to);
    let fps = |n: usize, from: Instant, to: Instant| n as f64 / (to - from).as_secs_f64();
    let (quiet_fps, noisy_fps, after_fps) = (
        fps(quiet.len(), quiet_from, noisy_from),
        fps(noisy.len(), noisy_from, noisy_to),
        fps(after.len(), noisy_to, after_to),
    );
    let gap =
        longest_gap(&noisy, noisy_from, noisy_to).max(longest_gap(&after, noisy_to, after_to));
    let quiet_cpu = cpu_quiet_1 - cpu_quiet_0;
    let noisy_cpu = cpu_noisy_1 - cpu_noisy_0;
    let packets_in = |s: &serde_json::Value| s["media"]["packets_in"].as_f64().unwrap_or(0.0);
    let round = |x: f64, places: i32| (x * 10f64.powi(places)).round() / 10f64.powi(places);
    println!(
        "{}",
        serde_json::json!({
            "garbage_pps": RATE,
            "garbage_packets": sent,
            "garbage_from_viewer_address": sent / FROM_VIEWER_EVERY,
            "window_s": round((noisy_to - noisy_from).as_secs_f64(), 2),
            "sfu_datagrams_in_during_garbage": packets_in(&stats_1) - packets_in(&stats_0),
            "sfu_cpu_s_quiet": round(quiet_cpu, 2),
            "sfu_cpu_s_garbage": round(noisy_cpu, 2),
            "garbage_cpu_s": round(noisy_cpu - quiet_cpu, 2),
            "garbage_cpu_us_per_packet": round((noisy_cpu - quiet_cpu) / sent as f64 * 1e6, 1),
            "viewer_fps_quiet": round(quiet_fps, 1),
            "viewer_fps_garbage": round(noisy_fps, 1),
            "viewer_fps_after": round(after_fps, 1),
            "viewer_longest_gap_ms": gap.as_millis() as u64,
        })
    );

    // What the person watching notices: the picture keeps moving during and after.
    assert!(
        noisy_fps >= quiet_fps / 2.0 && after_fps >= quiet_fps / 2.0,
        "video slowed under garbage: {quiet_fps:.1} fps quiet, {noisy_fps:.1} with garbage, \
         {after_fps:.1} after"
    );
    assert!(gap < Duration::from_secs(1), "video froze for {gap:?}");
    let health = http_request(sfu.admin, "GET", "/healthz", &[], b"")
        .await
        .unwrap();
    assert_eq!(health.status, 200, "the SFU is healthy after the garbage");
    watching.abort();
    publishing.abort();
}
