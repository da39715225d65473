//! What the recorder has captured and composed, kept as `manifest.json` in its output folder
//! and rewritten (atomically, by rename) on every change and every few seconds while
//! capturing, so a restarted recorder continues where the last one stopped.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::rules::Phase;
use crate::{Error, Result};

pub const FILE: &str = "manifest.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub room: String,
    /// The rule engine's phase.
    pub rules: Phase,
    /// The session's recording, once someone has gone on camera (the rules allow one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<Recording>,
}

/// The state of a recording as the operator reports it on the Session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordingState {
    Recording,
    Paused,
    Processing,
    Complete,
    Failed,
    /// A new recorder after one that stopped while people were on camera, before it knows
    /// who is on camera now.
    Interrupted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recording {
    /// Also the name of its folder: `rec-<start, unix ms>`.
    pub id: String,
    pub started_at_ms: u64,
    pub state: RecordingState,
    /// Stretches of capture; what lies between them is cut out.
    pub parts: Vec<Part>,
    /// The MP4, relative to the output folder, once composed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// Media time in the MP4 (as ffprobe reads it).
    #[serde(default)]
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How often a recorder stopped while people were on camera (a crash, a SIGTERM) and a
    /// new one continued: the recording lacks what happened in between.
    #[serde(default)]
    pub interruptions: u32,
}

/// One unbroken stretch of capture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Part {
    pub index: u32,
    pub started_at_ms: u64,
    /// Set when the stretch ends; until then `captured_until_ms` says how far the files are
    /// known to be on disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    pub captured_until_ms: u64,
    pub tracks: Vec<TrackFile>,
    /// The part's composed MP4, relative to the recording folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composed: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackKind {
    Audio,
    Video,
}

/// One person's audio or video over one run of being on camera within a part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackFile {
    /// The SFU's participant id.
    pub participant: u64,
    pub name: String,
    pub kind: TrackKind,
    /// Relative to the recording folder.
    pub file: String,
    /// From the part's start to the first media in the file.
    pub offset_ms: u64,
}

impl Part {
    /// The part's length: final once it has ended, else what is known to be on disk.
    pub fn length_ms(&self) -> u64 {
        self.duration_ms
            .unwrap_or(self.captured_until_ms.saturating_sub(self.started_at_ms))
    }
}

impl Manifest {
    pub fn new(room: &str) -> Self {
        Manifest {
            room: room.to_string(),
            rules: Phase::Waiting,
            recording: None,
        }
    }

    pub fn load(dir: &Path) -> Result<Option<Manifest>> {
        let path = dir.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Recorder(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        let tmp = dir.join(format!("{FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(self).expect("the manifest serializes");
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, dir.join(FILE))?;
        Ok(())
    }
}
