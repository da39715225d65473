//! The recorder: joins a session's room as a hidden participant (the `recorder` grant),
//! receives every on-camera person's audio and video, and produces one MP4 per recording
//! following the rules of PRODUCT.md §3.
//!
//! Layers, from pure to I/O:
//! - [`rules`]: the recording rules as a state machine (on-camera count and time in,
//!   start/pause/resume/cap/stop out);
//! - [`ivf`], [`ogg`]: the capture formats (VP8 in IVF, Opus in Ogg), append-only;
//! - [`capture`]: one part (an unbroken stretch of capture) being written to disk;
//! - [`compose`]: ffmpeg arguments for a part's grid and for joining parts, and running them;
//! - [`manifest`]: what was captured and composed, on disk, for restarts;
//! - [`session`]: the connection to the room (events WebSocket + one WHEP peer);
//! - [`run`]: the driver that ties them together.
//!
//! On disk, in the output folder: `manifest.json`; `rec-<stamp>/part-NNN/` with one
//! `p<participant>-<run>-video.ivf` and `-audio.ogg` per person and run on camera;
//! `rec-<stamp>/part-NNN.mp4` per composed part; and `<prefix><stamp>.mp4`, the recording.
//!
//! Local mode calls [`run()`](run::run) with a [`RecorderConfig`] and a shutdown future.

pub mod admin;
pub mod capture;
pub mod compose;
pub mod ivf;
pub mod manifest;
pub mod ogg;
pub mod rules;
pub mod run;
pub mod session;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use manifest::RecordingState;
pub use run::{RecordingInfo, run, run_with_status};

/// What a recorder needs to know.
#[derive(Clone)]
pub struct RecorderConfig {
    /// The SFU's signalling address (WHEP and the events WebSocket).
    pub sfu: SocketAddr,
    /// The room id join tokens name (`session:<namespace>:<name>`).
    pub room: String,
    /// The room's join-token key: the recorder mints its own recorder token.
    pub token_key: Vec<u8>,
    /// Folder for this session's recordings (created if missing).
    pub output: PathBuf,
    /// Prefix of the MP4's file name, e.g. `<session>-`.
    pub file_prefix: String,
    /// How often captured media is forced to disk.
    pub flush_every: Duration,
    /// How long to wait before joining the room again after it went away.
    pub reconnect_every: Duration,
    pub ffmpeg: PathBuf,
    pub ffprobe: PathBuf,
}

impl RecorderConfig {
    pub fn new(sfu: SocketAddr, room: &str, token_key: &[u8], output: PathBuf) -> Self {
        RecorderConfig {
            sfu,
            room: room.to_string(),
            token_key: token_key.to_vec(),
            output,
            file_prefix: String::new(),
            flush_every: Duration::from_secs(2),
            reconnect_every: Duration::from_secs(2),
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
        }
    }
}

impl std::fmt::Debug for RecorderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecorderConfig")
            .field("sfu", &self.sfu)
            .field("room", &self.room)
            .field("output", &self.output)
            .finish_non_exhaustive()
    }
}
