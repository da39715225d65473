//! Writing one part's media to disk as it arrives: per person and run on camera, VP8 into an
//! IVF file and Opus into an Ogg file, both append-only and flushed to disk every few
//! seconds, so a crash loses at most the last unflushed seconds and nothing before.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::ivf;
use super::manifest::{Part, TrackFile, TrackKind};
use super::ogg::{self, OggOpusWriter};
use crate::Result;

/// RTP clock rates of the two codecs.
const VIDEO_CLOCK: u64 = 90_000;

#[derive(Debug)]
struct Open {
    file: BufWriter<File>,
    /// RTP time of the first media written.
    first_rtp: Option<u64>,
    ogg: Option<OggOpusWriter>,
}

/// The files of the part being captured.
#[derive(Debug)]
pub struct PartCapture {
    dir: PathBuf,
    pub part: Part,
    open: HashMap<(u64, TrackKind), Open>,
    runs: HashMap<(u64, TrackKind), u32>,
}

impl PartCapture {
    /// Begin part `index` at `now_ms` in the recording folder `dir`.
    pub fn begin(dir: &Path, index: u32, now_ms: u64) -> Result<Self> {
        std::fs::create_dir_all(dir.join(format!("part-{index:03}")))?;
        Ok(PartCapture {
            dir: dir.to_path_buf(),
            part: Part {
                index,
                started_at_ms: now_ms,
                duration_ms: None,
                captured_until_ms: now_ms,
                tracks: Vec::new(),
                composed: None,
            },
            open: HashMap::new(),
            runs: HashMap::new(),
        })
    }

    /// A frame (VP8) or packet (Opus) of `participant` with its RTP time, arriving `now_ms`.
    pub fn media(
        &mut self,
        now_ms: u64,
        participant: u64,
        name: &str,
        kind: TrackKind,
        rtp_time: u64,
        data: &[u8],
    ) -> Result<()> {
        let key = (participant, kind);
        if !self.open.contains_key(&key) {
            // Video starts on a keyframe: frames before it cannot be decoded.
            if kind == TrackKind::Video && ivf::vp8_dimensions(data).is_none() {
                return Ok(());
            }
            let run = self.runs.entry(key).or_insert(0);
            *run += 1;
            let (label, ext) = match kind {
                TrackKind::Video => ("video", "ivf"),
                TrackKind::Audio => ("audio", "ogg"),
            };
            let rel = format!(
                "part-{:03}/p{participant}-{run}-{label}.{ext}",
                self.part.index
            );
            let mut file = BufWriter::new(File::create(self.dir.join(&rel))?);
            let ogg = match kind {
                TrackKind::Video => {
                    let (w, h) = ivf::vp8_dimensions(data).expect("checked above");
                    file.write_all(&ivf::file_header(w, h))?;
                    None
                }
                TrackKind::Audio => Some(OggOpusWriter::start(
                    &mut file,
                    (participant as u32) << 8 | *run,
                    2,
                )?),
            };
            self.part.tracks.push(TrackFile {
                participant,
                name: name.to_string(),
                kind,
                file: rel,
                offset_ms: now_ms.saturating_sub(self.part.started_at_ms),
            });
            self.open.insert(
                key,
                Open {
                    file,
                    first_rtp: None,
                    ogg,
                },
            );
        }
        let open = self.open.get_mut(&key).expect("opened above");
        let first = *open.first_rtp.get_or_insert(rtp_time);
        let since = rtp_time.saturating_sub(first);
        match kind {
            TrackKind::Video => ivf::write_frame(&mut open.file, since * 1000 / VIDEO_CLOCK, data)?,
            TrackKind::Audio => {
                let samples = ogg::opus_packet_samples(data).unwrap_or(960);
                let writer = open.ogg.as_mut().expect("audio has an Ogg writer");
                writer.packet(&mut open.file, since + samples, data)?;
            }
        }
        Ok(())
    }

    /// `participant`'s track of `kind` ended (they left the screen): a later return starts a
    /// new run.
    pub fn end_track(&mut self, participant: u64, kind: TrackKind) -> Result<()> {
        if let Some(mut open) = self.open.remove(&(participant, kind)) {
            open.file.flush()?;
            open.file.get_ref().sync_data()?;
        }
        Ok(())
    }

    /// Put everything written so far on disk; the part is known captured up to `now_ms`.
    pub fn flush(&mut self, now_ms: u64) -> Result<()> {
        for open in self.open.values_mut() {
            open.file.flush()?;
            open.file.get_ref().sync_data()?;
        }
        self.part.captured_until_ms = now_ms;
        Ok(())
    }

    /// End the part at `now_ms`.
    pub fn finish(mut self, now_ms: u64) -> Result<Part> {
        self.flush(now_ms)?;
        self.open.clear();
        self.part.duration_ms = Some(now_ms.saturating_sub(self.part.started_at_ms));
        Ok(self.part)
    }
}
