//! The recorder's driver: joins the room, feeds the rule engine the on-camera count and the
//! clock, captures parts while the rules say so, composes in the background, and keeps the
//! manifest and the published status up to date. The clock is read here and nowhere below.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::RecorderConfig;
use super::capture::PartCapture;
use super::compose;
use super::manifest::{Manifest, Part, Recording, RecordingState, TrackKind};
use super::rules::{self, Decision, Phase, RecordingRules};
use super::session::{Connection, RoomEvent};
use crate::{Error, Result};

/// One recording as the recorder reports it (its admin port's `/recordings`, and what
/// [`run`] returns).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordingInfo {
    pub id: String,
    pub state: RecordingState,
    /// When the recording started, Unix milliseconds.
    pub start_unix_ms: u64,
    /// Seconds of media in the MP4 (the cut stretches excluded).
    pub duration_seconds: f64,
    /// Seconds captured so far, including parts not yet composed.
    pub captured_seconds: f64,
    /// The MP4, relative to the output folder, once there is one.
    pub file: Option<String>,
    pub size_bytes: Option<u64>,
    pub parts: u32,
    pub error: Option<String>,
    /// How often a recorder stopped while people were on camera and a new one continued.
    #[serde(default)]
    pub interruptions: u32,
    /// While capturing: when the unbroken stretch being recorded reaches its 2 hours (Unix
    /// milliseconds), if capture goes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap_at_unix_ms: Option<u64>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `YYYYMMDD-HHMMSS` (UTC) for file names.
pub fn file_stamp(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// What a finished composition produced.
#[derive(Debug)]
struct Composed {
    parts: Vec<(u32, String)>,
    file: String,
    size_bytes: u64,
    duration_ms: u64,
}

#[derive(Debug)]
struct Recorder {
    config: RecorderConfig,
    manifest: Manifest,
    rules: RecordingRules,
    capture: Option<PartCapture>,
    names: HashMap<u64, String>,
    mids: HashMap<String, (u64, TrackKind)>,
    on_camera: u32,
    draining: bool,
    compose_needed: bool,
    composing: Option<JoinHandle<Result<Composed>>>,
    next_flush: u64,
    status: watch::Sender<Vec<RecordingInfo>>,
}

impl Recorder {
    fn open(config: RecorderConfig, status: watch::Sender<Vec<RecordingInfo>>) -> Result<Self> {
        std::fs::create_dir_all(&config.output)?;
        let mut manifest =
            Manifest::load(&config.output)?.unwrap_or_else(|| Manifest::new(&config.room));
        let mut compose_needed = false;
        let mut last_end = None;
        if let Some(rec) = &mut manifest.recording {
            // A part the last run did not end: it holds what reached the disk.
            for part in &mut rec.parts {
                if part.duration_ms.is_none() {
                    part.duration_ms = Some(part.length_ms());
                }
                last_end = Some(part.started_at_ms + part.length_ms());
            }
            compose_needed = !rec.parts.is_empty()
                && (rec.file.is_none() || rec.parts.iter().any(|p| p.composed.is_none()));
        }
        // Interrupted while people were on camera: continue their stretch once they are
        // seen again (see `rules::restart`).
        let (phase, interrupted) = rules::restart(manifest.rules, last_end, now_ms());
        if interrupted && let Some(rec) = &mut manifest.recording {
            rec.interruptions += 1;
            tracing::warn!(
                interruptions = rec.interruptions,
                "the last recorder stopped while people were on camera; continuing its recording"
            );
        }
        manifest.rules = phase;
        let mut recorder = Recorder {
            config,
            manifest,
            rules: RecordingRules::restore(phase),
            capture: None,
            names: HashMap::new(),
            mids: HashMap::new(),
            on_camera: 0,
            draining: false,
            compose_needed,
            composing: None,
            next_flush: 0,
            status,
        };
        recorder.save()?;
        Ok(recorder)
    }

    fn rec_dir(&self, rec: &Recording) -> PathBuf {
        self.config.output.join(&rec.id)
    }

    fn stopped(&self) -> bool {
        self.rules.phase() == Phase::Stopped
    }

    /// Stopped and nothing left to compose.
    fn finished(&self) -> bool {
        self.stopped() && !self.compose_needed && self.composing.is_none()
    }

    fn state(&self) -> RecordingState {
        let failed = self
            .manifest
            .recording
            .as_ref()
            .is_some_and(|r| r.error.is_some());
        match self.rules.phase() {
            Phase::Recording { .. } => RecordingState::Recording,
            Phase::Interrupted { .. } => RecordingState::Interrupted,
            Phase::Paused { .. } | Phase::Capped | Phase::Waiting => RecordingState::Paused,
            Phase::Stopped if self.compose_needed || self.composing.is_some() => {
                RecordingState::Processing
            }
            Phase::Stopped if failed => RecordingState::Failed,
            Phase::Stopped => RecordingState::Complete,
        }
    }

    fn infos(&self) -> Vec<RecordingInfo> {
        let captured_now = self.capture.as_ref().map_or(0, |c| c.part.length_ms());
        self.manifest
            .recording
            .iter()
            .map(|r| RecordingInfo {
                id: r.id.clone(),
                state: r.state,
                start_unix_ms: r.started_at_ms,
                duration_seconds: r.duration_ms as f64 / 1000.0,
                captured_seconds: (r.parts.iter().map(Part::length_ms).sum::<u64>() + captured_now)
                    as f64
                    / 1000.0,
                file: r.file.clone(),
                size_bytes: r.size_bytes,
                parts: r.parts.len() as u32 + u32::from(self.capture.is_some()),
                error: r.error.clone(),
                interruptions: r.interruptions,
                cap_at_unix_ms: self.rules.cap_at(),
            })
            .collect()
    }

    fn save(&mut self) -> Result<()> {
        self.manifest.rules = self.rules.phase();
        let state = self.state();
        if let Some(rec) = &mut self.manifest.recording {
            rec.state = state;
        }
        // The part being captured is saved too, so a restart knows its files.
        let mut on_disk = self.manifest.clone();
        if let (Some(rec), Some(capture)) = (&mut on_disk.recording, &self.capture) {
            rec.parts.push(capture.part.clone());
        }
        on_disk.save(&self.config.output)?;
        self.status.send_replace(self.infos());
        Ok(())
    }

    fn apply(&mut self, now: u64, decisions: Vec<Decision>) -> Result<()> {
        if decisions.is_empty() {
            return Ok(());
        }
        for decision in decisions {
            tracing::info!(?decision, on_camera = self.on_camera, "recording rules");
            match decision {
                Decision::Start => {
                    let id = format!("rec-{}", file_stamp(now));
                    let rec = Recording {
                        id,
                        started_at_ms: now,
                        state: RecordingState::Recording,
                        parts: Vec::new(),
                        file: None,
                        size_bytes: None,
                        duration_ms: 0,
                        error: None,
                        interruptions: 0,
                    };
                    let dir = self.rec_dir(&rec);
                    self.manifest.recording = Some(rec);
                    self.capture = Some(PartCapture::begin(&dir, 1, now)?);
                }
                Decision::Resume => {
                    let rec = self
                        .manifest
                        .recording
                        .as_ref()
                        .ok_or_else(|| Error::Recorder("resume without a recording".into()))?;
                    let index = rec.parts.iter().map(|p| p.index).max().unwrap_or(0) + 1;
                    self.capture = Some(PartCapture::begin(&self.rec_dir(rec), index, now)?);
                }
                Decision::Pause | Decision::Cap | Decision::Stop => self.end_part(now)?,
            }
            if decision == Decision::Stop {
                self.compose_needed = self.manifest.recording.as_ref().is_some_and(|r| {
                    r.file.is_none() || r.parts.iter().any(|p| p.composed.is_none())
                });
            }
        }
        self.save()
    }

    fn end_part(&mut self, now: u64) -> Result<()> {
        if let Some(capture) = self.capture.take() {
            let part = capture.finish(now)?;
            if let Some(rec) = &mut self.manifest.recording {
                rec.parts.push(part);
            }
            self.compose_needed = true;
        }
        Ok(())
    }

    fn on_camera(&mut self, now: u64, count: u32) -> Result<()> {
        self.on_camera = count;
        if self.draining && count == 0 {
            let decisions = self.rules.end(now);
            return self.apply(now, decisions);
        }
        let decisions = self.rules.on_camera(now, count);
        self.apply(now, decisions)
    }

    fn room_event(&mut self, now: u64, event: RoomEvent) -> Result<()> {
        match event {
            RoomEvent::OnCamera(n) => self.on_camera(now, n)?,
            RoomEvent::Name { participant, name } => {
                self.names.insert(participant, name);
            }
            RoomEvent::Track {
                mid,
                participant,
                kind,
            } => {
                self.mids.insert(mid, (participant, kind));
            }
            RoomEvent::TrackEnded { mid } => {
                if let Some((participant, kind)) = self.mids.remove(&mid)
                    && let Some(capture) = &mut self.capture
                {
                    capture.end_track(participant, kind)?;
                }
            }
            RoomEvent::Draining => {
                self.draining = true;
                if self.on_camera == 0 {
                    let decisions = self.rules.end(now);
                    self.apply(now, decisions)?;
                }
            }
        }
        Ok(())
    }

    fn media(&mut self, now: u64, mid: &str, rtp_time: u64, data: &[u8]) -> Result<()> {
        let (Some(capture), Some(&(participant, kind))) = (&mut self.capture, self.mids.get(mid))
        else {
            return Ok(());
        };
        let name = self.names.get(&participant).map_or("", String::as_str);
        capture.media(now, participant, name, kind, rtp_time, data)
    }

    /// The room is gone without saying it was ending (a crash, a lost network): nobody is
    /// on camera as far as the recording can tell.
    fn lost_room(&mut self, now: u64) -> Result<()> {
        self.mids.clear();
        if self.draining {
            let decisions = self.rules.end(now);
            return self.apply(now, decisions);
        }
        self.on_camera(now, 0)
    }

    /// Due limits and the periodic flush.
    fn tick(&mut self, now: u64) -> Result<()> {
        if let Some(decision) = self.rules.handle_timeout(now) {
            self.apply(now, vec![decision])?;
        }
        if now >= self.next_flush {
            self.next_flush = now + self.config.flush_every.as_millis() as u64;
            if let Some(capture) = &mut self.capture {
                capture.flush(now)?;
                self.save()?;
            }
        }
        Ok(())
    }

    fn next_wake(&self) -> u64 {
        let flush = if self.capture.is_some() {
            self.next_flush
        } else {
            u64::MAX
        };
        self.rules.poll_timeout().unwrap_or(u64::MAX).min(flush)
    }

    /// The recorder is told to stop (SIGTERM): end the part being captured so it gets
    /// composed; the rules' phase stays on disk so a new recorder continues the recording.
    fn interrupt(&mut self, now: u64) -> Result<()> {
        self.end_part(now)?;
        self.save()
    }

    /// Start composing if something waits and nothing runs.
    fn maybe_compose(&mut self) {
        if !self.compose_needed || self.composing.is_some() {
            return;
        }
        let Some(rec) = self.manifest.recording.clone() else {
            self.compose_needed = false;
            return;
        };
        self.compose_needed = false;
        let dir = self.rec_dir(&rec);
        let output = self.config.output.clone();
        let prefix = self.config.file_prefix.clone();
        let (ffmpeg, ffprobe) = (self.config.ffmpeg.clone(), self.config.ffprobe.clone());
        self.composing = Some(tokio::spawn(async move {
            compose_recording(&ffmpeg, &ffprobe, &dir, &output, &prefix, &rec).await
        }));
        let _ = self.save();
    }

    fn composed(&mut self, result: Result<Composed>) -> Result<()> {
        self.composing = None;
        let rec = self
            .manifest
            .recording
            .as_mut()
            .ok_or_else(|| Error::Recorder("composed without a recording".into()))?;
        match result {
            Ok(done) => {
                for (index, name) in done.parts {
                    if let Some(p) = rec.parts.iter_mut().find(|p| p.index == index) {
                        p.composed = Some(name);
                    }
                }
                tracing::info!(file = %done.file, seconds = done.duration_ms as f64 / 1000.0, "recording composed");
                rec.file = Some(done.file);
                rec.size_bytes = Some(done.size_bytes);
                rec.duration_ms = done.duration_ms;
                rec.error = None;
            }
            Err(e) => {
                tracing::error!("composing the recording failed: {e}");
                rec.error = Some(e.to_string());
            }
        }
        self.save()
    }
}

async fn compose_recording(
    ffmpeg: &Path,
    ffprobe: &Path,
    dir: &Path,
    output: &Path,
    prefix: &str,
    rec: &Recording,
) -> Result<Composed> {
    let mut parts = Vec::new();
    let mut names = Vec::new();
    for part in &rec.parts {
        let name = match &part.composed {
            Some(name) => name.clone(),
            None => {
                let name = compose::compose_part(ffmpeg, dir, part).await?;
                parts.push((part.index, name.clone()));
                name
            }
        };
        names.push(name);
    }
    let file = format!("{prefix}{}.mp4", rec.id.trim_start_matches("rec-"));
    let out = output.join(&file);
    compose::join_parts(ffmpeg, dir, &names, &out).await?;
    let probe = compose::probe(ffprobe, &out).await?;
    let size_bytes = std::fs::metadata(&out)?.len();
    Ok(Composed {
        parts,
        file,
        size_bytes,
        duration_ms: probe.duration_ms,
    })
}

async fn until_ms(at: u64) {
    if at == u64::MAX {
        return std::future::pending().await;
    }
    let wait = at.saturating_sub(now_ms());
    tokio::time::sleep(Duration::from_millis(wait)).await;
}

async fn composition(task: &mut Option<JoinHandle<Result<Composed>>>) -> Result<Composed> {
    match task {
        Some(handle) => handle
            .await
            .unwrap_or_else(|e| Err(Error::Recorder(format!("composer task: {e}")))),
        None => std::future::pending().await,
    }
}

/// Record the room until its recording has stopped for good and is composed, or until
/// `shutdown` resolves (then what was captured is composed and the recording can be
/// continued by a later run on the same output folder). `status` receives every change.
pub async fn run_with_status(
    config: RecorderConfig,
    status: watch::Sender<Vec<RecordingInfo>>,
    shutdown: impl Future<Output = ()>,
) -> Result<Vec<RecordingInfo>> {
    let mut rec = Recorder::open(config, status)?;
    tokio::pin!(shutdown);
    let mut interrupted = false;
    while !rec.finished() && !interrupted {
        rec.maybe_compose();
        if rec.stopped() {
            // Nothing more to capture: only the composition is left.
            tokio::select! {
                done = composition(&mut rec.composing) => rec.composed(done)?,
                _ = &mut shutdown => interrupted = true,
            }
            continue;
        }
        let connection = tokio::select! {
            c = Connection::open(rec.config.sfu, &rec.config.room, &rec.config.token_key) => c,
            _ = &mut shutdown => { interrupted = true; continue; }
        };
        let mut conn = match connection {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!("cannot join the room: {e}");
                rec.lost_room(now_ms())?;
                let retry = now_ms() + rec.config.reconnect_every.as_millis() as u64;
                while now_ms() < retry && !interrupted {
                    rec.maybe_compose();
                    tokio::select! {
                        _ = until_ms(retry.min(rec.next_wake())) => rec.tick(now_ms())?,
                        done = composition(&mut rec.composing) => rec.composed(done)?,
                        _ = &mut shutdown => interrupted = true,
                    }
                }
                continue;
            }
        };
        tracing::info!(room = %rec.config.room, "joined the room as recorder");
        for event in std::mem::take(&mut conn.early) {
            rec.room_event(now_ms(), event)?;
        }
        while !rec.stopped() {
            rec.maybe_compose();
            tokio::select! {
                events = conn.events.next() => match events {
                    Some(events) => {
                        for event in events {
                            rec.room_event(now_ms(), event)?;
                        }
                    }
                    None => {
                        tracing::warn!("the room closed the events channel");
                        rec.lost_room(now_ms())?;
                        break;
                    }
                },
                media = conn.media.recv() => match media {
                    Some(m) => rec.media(now_ms(), &m.mid, m.rtp_time, &m.data)?,
                    None => {
                        tracing::warn!("the recorder's peer connection ended");
                        rec.lost_room(now_ms())?;
                        break;
                    }
                },
                _ = until_ms(rec.next_wake()) => rec.tick(now_ms())?,
                done = composition(&mut rec.composing) => rec.composed(done)?,
                _ = &mut shutdown => {
                    // The part ends now, not after leaving the room: nothing captured
                    // after this moment would be kept anyway.
                    rec.interrupt(now_ms())?;
                    interrupted = true;
                    break;
                }
            }
        }
        conn.leave().await;
    }
    if interrupted {
        rec.interrupt(now_ms())?;
    }
    // Whatever was captured is composed before returning.
    loop {
        rec.maybe_compose();
        if rec.composing.is_none() {
            break;
        }
        let done = composition(&mut rec.composing).await;
        rec.composed(done)?;
    }
    Ok(rec.infos())
}

/// [`run_with_status`] without watching the status.
pub async fn run(
    config: RecorderConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<Vec<RecordingInfo>> {
    let (status, _) = watch::channel(Vec::new());
    run_with_status(config, status, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_stamps_are_utc_civil_times() {
        assert_eq!(file_stamp(0), "19700101-000000");
        assert_eq!(file_stamp(1_795_352_400_000), "20261122-130000");
        assert_eq!(file_stamp(951_782_400_000 + 3_661_000), "20000229-010101");
    }
}
