//! The header fields a viewer's slot rewrites on each forwarded RTP packet: sequence number,
//! RTP time and (VP8) picture id, each shifted by an offset chosen when the slot starts or
//! switches layer so that what the viewer sees runs on without gaps or jumps backwards.
//! Pure: the forwarding loop asks [`Rewrite::map`] and writes what it answers.

use str0m::media::MediaKind;
use str0m::rtp::{Vp8Descriptor, Vp8Patch};

/// A picture id as carried in a VP8 payload descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PictureId {
    pub value: u16,
    /// 15-bit (M bit set) rather than 7-bit.
    pub wide: bool,
}

impl PictureId {
    fn modulus(self) -> i64 {
        if self.wide { 1 << 15 } else { 1 << 7 }
    }
}

/// The picture id of a VP8 payload (RFC 7741 §4.2), if its descriptor carries one.
pub fn vp8_picture_id(payload: &[u8]) -> Option<PictureId> {
    let b0 = *payload.first()?;
    if b0 & 0x80 == 0 {
        return None;
    }
    let x = *payload.get(1)?;
    if x & 0x80 == 0 {
        return None;
    }
    let p0 = *payload.get(2)?;
    if p0 & 0x80 != 0 {
        let p1 = *payload.get(3)?;
        Some(PictureId {
            value: (u16::from(p0 & 0x7f) << 8) | u16::from(p1),
            wide: true,
        })
    } else {
        Some(PictureId {
            value: u16::from(p0),
            wide: false,
        })
    }
}

/// The codecs whose packets the forwarding loop looks into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    Vp8,
    H264,
    Other,
}

/// Whether a viewer may start on this packet: the first packet of a keyframe (for H.264 also
/// the parameter sets sent just before one). Audio starts anywhere.
pub fn starts_keyframe(kind: MediaKind, payload_kind: Payload, payload: &[u8]) -> bool {
    match (kind, payload_kind) {
        (MediaKind::Audio, _) => true,
        (MediaKind::Video, Payload::Vp8) => {
            Vp8Descriptor::parse(payload).is_ok_and(|d| d.starts_keyframe(payload))
        }
        (MediaKind::Video, Payload::H264) => h264_starts_keyframe(payload),
        (MediaKind::Video, Payload::Other) => false,
    }
}

/// An H.264 payload (RFC 6184) carrying an IDR slice start or a sequence parameter set:
/// a single NAL unit, a STAP-A holding one, or the first FU-A fragment of one.
fn h264_starts_keyframe(payload: &[u8]) -> bool {
    let key = |nal: u8| matches!(nal & 0x1f, 5 | 7);
    let Some(&b0) = payload.first() else {
        return false;
    };
    match b0 & 0x1f {
        1..=23 => key(b0),
        24 => {
            let mut at = 1;
            while at + 2 < payload.len() {
                let len = usize::from(payload[at]) << 8 | usize::from(payload[at + 1]);
                if key(payload[at + 2]) {
                    return true;
                }
                at += 2 + len;
            }
            false
        }
        28 => payload.get(1).is_some_and(|&fu| fu & 0x80 != 0 && key(fu)),
        _ => false,
    }
}

/// What one packet becomes for one viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapped {
    /// Extended sequence number (starts below 65 536, so the SRTP rollover counter is 0).
    pub seq: u64,
    pub time: u32,
    pub picture_id: Option<u16>,
}

/// One slot's offsets, set on (re)start, applied to every packet after.
#[derive(Debug, Clone, Default)]
pub struct Rewrite {
    seq_offset: i64,
    time_offset: i64,
    pid_offset: i64,
    /// The first incoming sequence number of the current layer: older packets (late
    /// retransmissions from before the switch) would land on numbers already used.
    first_in: u64,
    last_seq: Option<u64>,
    last_time: Option<i64>,
    last_pid: Option<i64>,
}

impl Rewrite {
    /// Start (or switch layer) on this packet, `step` RTP ticks after the last one sent.
    pub fn start(&mut self, in_seq: u64, in_time: u64, pid: Option<PictureId>, step: i64) {
        let (in_seq_i, in_time_i) = (in_seq as i64, in_time as i64);
        self.first_in = in_seq;
        self.seq_offset = match self.last_seq {
            Some(last) => last as i64 + 1 - in_seq_i,
            // The low 16 bits as they are: the viewer's SRTP rollover counter starts at 0.
            None => i64::from(in_seq as u16) - in_seq_i,
        };
        self.time_offset = match self.last_time {
            Some(last) => last + step - in_time_i,
            None => 0,
        };
        self.pid_offset = match (self.last_pid, pid) {
            (Some(last), Some(p)) => last + 1 - i64::from(p.value),
            _ => 0,
        };
    }

    /// Where this packet goes in the viewer's stream; `None` for a packet from before the
    /// current layer started.
    pub fn map(&mut self, in_seq: u64, in_time: u64, pid: Option<PictureId>) -> Option<Mapped> {
        if in_seq < self.first_in {
            return None;
        }
        let seq = (in_seq as i64 + self.seq_offset).max(0) as u64;
        let time = in_time as i64 + self.time_offset;
        self.last_seq = Some(self.last_seq.map_or(seq, |l| l.max(seq)));
        self.last_time = Some(self.last_time.map_or(time, |l| l.max(time)));
        let picture_id = pid.map(|p| {
            let m = p.modulus();
            let out = (i64::from(p.value) + self.pid_offset).rem_euclid(m);
            // Kept unwrapped so the next switch continues from it.
            let unwrapped = self.last_pid.map_or(out, |l| {
                let d = (out - l.rem_euclid(m)).rem_euclid(m);
                if d < m / 2 { l + d } else { l }
            });
            self.last_pid = Some(unwrapped);
            out as u16
        });
        Some(Mapped {
            seq,
            time: time as u32,
            picture_id,
        })
    }
}

/// The VP8 patch that writes `picture_id` into this payload's descriptor, if it has one.
pub fn vp8_patch(payload: &[u8], picture_id: u16) -> Option<Vp8Patch> {
    Vp8Descriptor::parse(payload)
        .ok()?
        .patch()
        .picture_id(picture_id)
        .build()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(value: u16) -> Option<PictureId> {
        Some(PictureId { value, wide: true })
    }

    #[test]
    fn a_first_start_keeps_the_low_sequence_bits_and_time() {
        let mut r = Rewrite::default();
        r.start(70_000, 1_000, pid(5), 3000);
        let m = r.map(70_000, 1_000, pid(5)).unwrap();
        assert_eq!(m.seq, u64::from(70_000u64 as u16));
        assert_eq!(m.time, 1_000);
        assert_eq!(m.picture_id, Some(5));
    }

    #[test]
    fn a_layer_switch_continues_sequence_time_and_picture_id() {
        let mut r = Rewrite::default();
        r.start(100, 9_000, pid(40), 3000);
        for i in 0..3 {
            r.map(100 + i, 9_000 + i * 3000, pid(40 + i as u16))
                .unwrap();
        }
        // The new layer's numbers are unrelated to the old one's.
        r.start(5_000, 500_000, pid(7_000), 3000);
        let m = r.map(5_000, 500_000, pid(7_000)).unwrap();
        assert_eq!(m.seq, 103);
        assert_eq!(m.time, 9_000 + 2 * 3000 + 3000);
        assert_eq!(m.picture_id, Some(43));
        let next = r.map(5_001, 503_000, pid(7_001)).unwrap();
        assert_eq!((next.seq, next.picture_id), (104, Some(44)));
        // A late packet from before the switch is not forwarded.
        assert_eq!(r.map(4_999, 497_000, pid(6_999)), None);
    }

    #[test]
    fn picture_ids_wrap_at_their_width() {
        let mut r = Rewrite::default();
        r.start(1, 0, pid(0x7ffe), 3000);
        assert_eq!(r.map(1, 0, pid(0x7ffe)).unwrap().picture_id, Some(0x7ffe));
        assert_eq!(
            r.map(2, 3000, pid(0x7fff)).unwrap().picture_id,
            Some(0x7fff)
        );
        assert_eq!(r.map(3, 6000, pid(0)).unwrap().picture_id, Some(0));
        r.start(900, 0, pid(10), 3000);
        assert_eq!(r.map(900, 0, pid(10)).unwrap().picture_id, Some(1));
    }

    #[test]
    fn vp8_picture_ids_are_read_in_both_widths() {
        // X=1 S=1; I=1; M=1 picture id 0x1234.
        assert_eq!(
            vp8_picture_id(&[0x90, 0x80, 0x80 | 0x12, 0x34, 0]),
            Some(PictureId {
                value: 0x1234,
                wide: true
            })
        );
        assert_eq!(
            vp8_picture_id(&[0x90, 0x80, 0x55, 0]),
            Some(PictureId {
                value: 0x55,
                wide: false
            })
        );
        assert_eq!(vp8_picture_id(&[0x10, 0]), None);
        let patch = vp8_patch(&[0x90, 0x80, 0x80 | 0x12, 0x34, 0], 0x0101);
        assert!(patch.is_some());
    }

    #[test]
    fn keyframes_are_found_in_vp8_and_h264_packets() {
        // S=1 PID=0, no extensions, VP8 header P=0 (key) or 1 (delta).
        assert!(starts_keyframe(
            MediaKind::Video,
            Payload::Vp8,
            &[0x10, 0x00, 0, 0]
        ));
        assert!(!starts_keyframe(
            MediaKind::Video,
            Payload::Vp8,
            &[0x10, 0x01, 0, 0]
        ));
        assert!(!starts_keyframe(
            MediaKind::Video,
            Payload::Vp8,
            &[0x00, 0x00, 0, 0]
        ));
        // STAP-A with SPS; FU-A start of an IDR; FU-A middle; a P slice.
        assert!(starts_keyframe(
            MediaKind::Video,
            Payload::H264,
            &[24, 0, 2, 0x67, 0x42]
        ));
        assert!(starts_keyframe(
            MediaKind::Video,
            Payload::H264,
            &[28, 0x85, 0]
        ));
        assert!(!starts_keyframe(
            MediaKind::Video,
            Payload::H264,
            &[28, 0x05, 0]
        ));
        assert!(!starts_keyframe(
            MediaKind::Video,
            Payload::H264,
            &[0x41, 0]
        ));
        assert!(starts_keyframe(MediaKind::Audio, Payload::Other, &[]));
    }
}
