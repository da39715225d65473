//! Composing MP4s with ffmpeg: each part (one unbroken stretch of capture) becomes a grid of
//! the people on camera in it with their audio mixed, H.264 + AAC; the recording's MP4 is
//! the parts joined without re-encoding, so the cut stretches are simply absent and a part
//! is encoded once however often the recording pauses.
//!
//! The argument lists are built by pure functions; [`compose_part`], [`join_parts`] and
//! [`probe`] run the programs.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::Deserialize;

use super::manifest::{Part, TrackKind};
use crate::{Error, Result};

pub const WIDTH: u32 = 1280;
pub const HEIGHT: u32 = 720;
pub const FPS: u32 = 30;

/// Where tile `i` of `n` goes: `(x, y, width, height)`, in a grid of `ceil(sqrt(n))` columns,
/// even sizes (H.264 4:2:0 needs them).
pub fn grid(n: usize) -> Vec<(u32, u32, u32, u32)> {
    if n == 0 {
        return Vec::new();
    }
    let cols = (n as f64).sqrt().ceil() as u32;
    let rows = (n as u32).div_ceil(cols);
    let w = (WIDTH / cols) & !1;
    let h = (HEIGHT / rows) & !1;
    (0..n as u32)
        .map(|i| ((i % cols) * w, (i / cols) * h, w, h))
        .collect()
}

fn secs(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// ffmpeg arguments that compose `part` (files relative to `dir`) into `out`.
pub fn part_args(part: &Part, dir: &Path, out: &Path) -> Vec<String> {
    let duration = secs(part.length_ms());
    let mut args: Vec<String> = ["-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
        .map(String::from)
        .to_vec();
    args.extend([
        "-f".into(),
        "lavfi".into(),
        "-i".into(),
        format!("color=c=black:s={WIDTH}x{HEIGHT}:r={FPS}:d={duration}"),
        "-f".into(),
        "lavfi".into(),
        "-i".into(),
        "anullsrc=r=48000:cl=stereo".into(),
    ]);
    // Tiles in order of first appearance in the part.
    let mut people: Vec<u64> = Vec::new();
    let mut ordered: Vec<_> = part.tracks.iter().collect();
    ordered.sort_by_key(|t| (t.offset_ms, t.participant));
    for t in &ordered {
        if !people.contains(&t.participant) {
            people.push(t.participant);
        }
    }
    let tiles = grid(people.len());
    let mut graph = Vec::new();
    let mut video = "0:v".to_string();
    let mut audio = vec!["[base_a]".to_string()];
    graph.push(format!("[1:a]atrim=0:{duration}[base_a]"));
    for (i, track) in ordered.iter().enumerate() {
        let input = i + 2;
        args.extend(["-i".into(), dir.join(&track.file).display().to_string()]);
        let offset = secs(track.offset_ms);
        match track.kind {
            TrackKind::Video => {
                let tile = people
                    .iter()
                    .position(|p| *p == track.participant)
                    .expect("listed");
                let (x, y, w, h) = tiles[tile];
                graph.push(format!(
                    "[{input}:v]setpts=PTS-STARTPTS+{offset}/TB,scale={w}:{h}:force_original_aspect_ratio=decrease,pad={w}:{h}:(ow-iw)/2:(oh-ih)/2[t{i}]"
                ));
                graph.push(format!(
                    "[{video}][t{i}]overlay=x={x}:y={y}:eof_action=pass:repeatlast=0[v{i}]"
                ));
                video = format!("v{i}");
            }
            TrackKind::Audio => {
                graph.push(format!(
                    "[{input}:a]aresample=48000:async=1:first_pts=0,aformat=channel_layouts=stereo,adelay={}:all=1[a{i}]",
                    track.offset_ms
                ));
                audio.push(format!("[a{i}]"));
            }
        }
    }
    graph.push(format!("[{video}]fps={FPS},format=yuv420p[v]"));
    graph.push(format!(
        "{}amix=inputs={}:duration=first:dropout_transition=0:normalize=0[a]",
        audio.concat(),
        audio.len()
    ));
    args.extend([
        "-filter_complex".into(),
        graph.join(";"),
        "-map".into(),
        "[v]".into(),
        "-map".into(),
        "[a]".into(),
        "-c:v".into(),
        "libx264".into(),
        "-preset".into(),
        "veryfast".into(),
        "-crf".into(),
        "26".into(),
        "-g".into(),
        format!("{}", FPS * 2),
        "-c:a".into(),
        "aac".into(),
        "-b:a".into(),
        "128k".into(),
        "-t".into(),
        duration,
        "-movflags".into(),
        "+faststart".into(),
        out.display().to_string(),
    ]);
    args
}

/// The concat demuxer's list of `parts` (paths relative to the list's folder).
pub fn concat_list(parts: &[String]) -> String {
    parts
        .iter()
        .map(|p| format!("file '{}'\n", p.replace('\'', "'\\''")))
        .collect()
}

/// ffmpeg arguments that join the parts listed in `list` into `out` without re-encoding.
pub fn join_args(list: &Path, out: &Path) -> Vec<String> {
    [
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "concat",
        "-safe",
        "0",
        "-i",
    ]
    .map(String::from)
    .into_iter()
    .chain([list.display().to_string()])
    .chain(["-c", "copy", "-movflags", "+faststart"].map(String::from))
    .chain([out.display().to_string()])
    .collect()
}

async fn ffmpeg(program: &Path, args: &[String]) -> Result<()> {
    let output = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| Error::Recorder(format!("running {}: {e}", program.display())))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: String = stderr.lines().rev().take(8).collect::<Vec<_>>().join(" | ");
        return Err(Error::Recorder(format!(
            "{} failed ({}): {tail}",
            program.display(),
            output.status
        )));
    }
    Ok(())
}

/// Compose one part of the recording in `dir` into `dir/<name>`.
pub async fn compose_part(ffmpeg_bin: &Path, dir: &Path, part: &Part) -> Result<String> {
    let name = format!("part-{:03}.mp4", part.index);
    let tmp = dir.join(format!(".{name}"));
    ffmpeg(ffmpeg_bin, &part_args(part, dir, &tmp)).await?;
    std::fs::rename(&tmp, dir.join(&name))?;
    Ok(name)
}

/// Join composed parts (relative to `dir`) into `out`, replaced atomically.
pub async fn join_parts(ffmpeg_bin: &Path, dir: &Path, parts: &[String], out: &Path) -> Result<()> {
    let list = dir.join("parts.txt");
    std::fs::write(&list, concat_list(parts))?;
    let tmp: PathBuf = out.with_file_name(format!(
        ".{}",
        out.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("recording.mp4")
    ));
    ffmpeg(ffmpeg_bin, &join_args(&list, &tmp)).await?;
    std::fs::rename(&tmp, out)?;
    Ok(())
}

/// What ffprobe says about a media file.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub duration_ms: u64,
    pub video: Option<String>,
    pub audio: Option<String>,
    pub width: u32,
    pub height: u32,
}

#[derive(Deserialize)]
struct ProbeJson {
    #[serde(default)]
    streams: Vec<ProbeStream>,
    format: ProbeFormat,
}

#[derive(Deserialize)]
struct ProbeStream {
    codec_type: String,
    codec_name: String,
    #[serde(default)]
    width: Option<u32>,
    #[serde(default)]
    height: Option<u32>,
}

#[derive(Deserialize)]
struct ProbeFormat {
    duration: String,
}

/// Run ffprobe on `file`.
pub async fn probe(ffprobe_bin: &Path, file: &Path) -> Result<Probe> {
    let output = tokio::process::Command::new(ffprobe_bin)
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
        ])
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| Error::Recorder(format!("running {}: {e}", ffprobe_bin.display())))?;
    if !output.status.success() {
        return Err(Error::Recorder(format!(
            "ffprobe {}: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let json: ProbeJson = serde_json::from_slice(&output.stdout)
        .map_err(|e| Error::Recorder(format!("ffprobe output: {e}")))?;
    let seconds: f64 = json.format.duration.parse().unwrap_or(0.0);
    let find = |kind: &str| json.streams.iter().find(|s| s.codec_type == kind);
    let video = find("video");
    Ok(Probe {
        duration_ms: (seconds * 1000.0).round() as u64,
        video: video.map(|s| s.codec_name.clone()),
        audio: find("audio").map(|s| s.codec_name.clone()),
        width: video.and_then(|s| s.width).unwrap_or(0),
        height: video.and_then(|s| s.height).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::super::manifest::TrackFile;
    use super::*;

    #[test]
    fn grids_fill_the_frame_with_even_tiles() {
        assert_eq!(grid(1), vec![(0, 0, 1280, 720)]);
        assert_eq!(grid(2), vec![(0, 0, 640, 720), (640, 0, 640, 720)]);
        assert_eq!(grid(4)[3], (640, 360, 640, 360));
        let nine = grid(9);
        assert_eq!(nine[8], (852, 480, 426, 240));
        assert!(grid(20).iter().all(|t| t.2 % 2 == 0 && t.3 % 2 == 0));
        assert_eq!(grid(5).len(), 5);
    }

    #[test]
    fn a_part_places_each_person_in_one_tile_and_mixes_every_voice() {
        let track = |participant, kind, file: &str, offset_ms| TrackFile {
            participant,
            name: format!("p{participant}"),
            kind,
            file: file.into(),
            offset_ms,
        };
        let part = Part {
            index: 2,
            started_at_ms: 1_000,
            duration_ms: Some(12_345),
            captured_until_ms: 13_345,
            tracks: vec![
                track(7, TrackKind::Video, "a.ivf", 40),
                track(7, TrackKind::Audio, "a.ogg", 20),
                track(9, TrackKind::Audio, "b.ogg", 5_000),
                track(9, TrackKind::Video, "b.ivf", 5_100),
                // Person 7 again, after leaving the screen and coming back within the part.
                track(7, TrackKind::Video, "c.ivf", 9_000),
            ],
            composed: None,
        };
        let args = part_args(&part, Path::new("/r"), Path::new("/r/out.mp4"));
        let graph = &args[args.iter().position(|a| a == "-filter_complex").unwrap() + 1];
        assert!(args.contains(&"color=c=black:s=1280x720:r=30:d=12.345".to_string()));
        assert_eq!(args.iter().filter(|a| a.starts_with("/r/")).count(), 6);
        // Person 7 keeps the left tile in both runs; person 9 is on the right.
        assert!(graph.contains("setpts=PTS-STARTPTS+0.040/TB,scale=640:720"));
        assert!(graph.contains("overlay=x=0:y=0"));
        assert!(graph.contains("setpts=PTS-STARTPTS+5.100/TB"));
        assert!(graph.contains("overlay=x=640:y=0"));
        assert_eq!(graph.matches("overlay=x=0:y=0").count(), 2);
        assert!(graph.contains("adelay=5000:all=1"));
        assert!(graph.contains("amix=inputs=3:duration=first"));
        assert_eq!(
            args[args.len() - 3..args.len() - 1],
            ["-movflags", "+faststart"]
        );
        assert!(args.contains(&"12.345".to_string()));
    }

    #[test]
    fn concat_lists_quote_names() {
        assert_eq!(
            concat_list(&["part-001.mp4".into(), "it's.mp4".into()]),
            "file 'part-001.mp4'\nfile 'it'\\''s.mp4'\n"
        );
    }
}
