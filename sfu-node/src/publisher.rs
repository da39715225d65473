//! A publisher of real encoded media for tests and measurements: VP8 video and Opus audio
//! made once with ffmpeg, looped and sent in real time over WHIP by a [`ClientPeer`], so
//! what a viewer or the recorder receives can be decoded.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use str0m::media::MediaKind;

use crate::client::{ClientPeer, ClientRole};
use crate::recorder::{ivf, ogg};
use crate::{Error, Result};

/// Encoded media to loop: 30 fps VP8 frames and 20 ms Opus packets.
#[derive(Debug, Clone)]
pub struct TestMedia {
    pub video: Vec<Vec<u8>>,
    pub audio: Vec<Vec<u8>>,
}

impl TestMedia {
    /// Encode `seconds` of a test picture and a `tone_hz` tone with ffmpeg into `dir`.
    pub async fn generate(dir: &Path, seconds: u32, tone_hz: u32) -> Result<TestMedia> {
        std::fs::create_dir_all(dir)?;
        let video = dir.join(format!("test-{tone_hz}.ivf"));
        let audio = dir.join(format!("test-{tone_hz}.ogg"));
        let t = seconds.to_string();
        let runs: [Vec<String>; 2] = [
            [
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=320x240:rate=30",
                "-t",
                &t,
                "-c:v",
                "libvpx",
                "-deadline",
                "realtime",
                "-cpu-used",
                "8",
                "-b:v",
                "300k",
                "-g",
                "30",
                "-auto-alt-ref",
                "0",
                "-lag-in-frames",
                "0",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain([video.display().to_string()])
            .collect(),
            [
                "-f",
                "lavfi",
                "-i",
                &format!("sine=frequency={tone_hz}:sample_rate=48000"),
                "-t",
                &t,
                "-ac",
                "2",
                "-c:a",
                "libopus",
                "-b:a",
                "48k",
                "-frame_duration",
                "20",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain([audio.display().to_string()])
            .collect(),
        ];
        for args in runs {
            let out = tokio::process::Command::new("ffmpeg")
                .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
                .args(&args)
                .stdin(Stdio::null())
                .output()
                .await
                .map_err(|e| Error::Recorder(format!("running ffmpeg: {e}")))?;
            if !out.status.success() {
                return Err(Error::Recorder(format!(
                    "ffmpeg test media: {}",
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
        }
        let video_bytes = std::fs::read(&video)?;
        let audio_bytes = std::fs::read(&audio)?;
        let media = TestMedia {
            video: ivf::read_frames(&video_bytes)
                .into_iter()
                .map(|(_, f)| f.to_vec())
                .collect(),
            // The first two packets are the OpusHead and OpusTags headers.
            audio: ogg::read_packets(&audio_bytes)
                .into_iter()
                .skip(2)
                .map(|(_, p)| p)
                .collect(),
        };
        if media.video.is_empty() || media.audio.is_empty() {
            return Err(Error::Recorder("ffmpeg made no test media".into()));
        }
        Ok(media)
    }
}

/// Go on camera in `room` over WHIP and send `media` in real time until `stop` resolves;
/// then leave the screen (the WHIP `DELETE`).
pub async fn publish(
    http: SocketAddr,
    room: &str,
    token: &str,
    media: &TestMedia,
    stop: impl Future<Output = ()>,
) -> Result<()> {
    let path = format!("/rooms/{room}/whip");
    let (mut peer, _) =
        ClientPeer::connect(http, &path, token, ClientRole::Publish { simulcast: false }).await?;
    tokio::pin!(stop);
    let connected_by = Instant::now() + Duration::from_secs(10);
    'connect: loop {
        if Instant::now() >= connected_by {
            return Err(Error::Recorder("the publisher did not connect".into()));
        }
        for event in peer.step(connected_by).await? {
            if matches!(event, str0m::Event::Connected) {
                break 'connect;
            }
        }
    }
    let start = Instant::now();
    let (mut video, mut audio) = (0u64, 0u64);
    let frame = Duration::from_nanos(1_000_000_000 / 30);
    let packet = Duration::from_millis(20);
    loop {
        let now = Instant::now();
        while start + frame * video as u32 <= now {
            let data = media.video[video as usize % media.video.len()].clone();
            peer.send_encoded(now, MediaKind::Video, video * 3000, data)?;
            video += 1;
        }
        while start + packet * audio as u32 <= now {
            let data = media.audio[audio as usize % media.audio.len()].clone();
            peer.send_encoded(now, MediaKind::Audio, audio * 960, data)?;
            audio += 1;
        }
        let next = (start + frame * video as u32).min(start + packet * audio as u32);
        tokio::select! {
            r = peer.step(next) => { r?; }
            _ = &mut stop => break,
        }
    }
    peer.hang_up(http, token).await?;
    Ok(())
}
