//! IVF, the simplest container for VP8: a 32-byte file header, then per frame a 12-byte
//! header (size, timestamp) and the frame. It is append-only, so a file cut short by a crash
//! still holds every frame written before the cut.

use std::io::{self, Write};

/// Timestamps are milliseconds.
const TIMEBASE_DEN: u32 = 1000;
pub const FILE_HEADER_LEN: usize = 32;
const FRAME_HEADER_LEN: usize = 12;

/// Whether a VP8 frame is a keyframe (RFC 6386 §9.1: the low bit of the frame tag is 0).
pub fn vp8_is_keyframe(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 1 == 0)
}

/// Width and height of a VP8 keyframe.
pub fn vp8_dimensions(frame: &[u8]) -> Option<(u16, u16)> {
    if !vp8_is_keyframe(frame) || frame.len() < 10 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let h = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((w, h))
}

/// The IVF file header for VP8 frames of this size, timestamps in milliseconds.
pub fn file_header(width: u16, height: u16) -> [u8; FILE_HEADER_LEN] {
    let mut h = [0u8; FILE_HEADER_LEN];
    h[0..4].copy_from_slice(b"DKIF");
    h[4..6].copy_from_slice(&0u16.to_le_bytes());
    h[6..8].copy_from_slice(&(FILE_HEADER_LEN as u16).to_le_bytes());
    h[8..12].copy_from_slice(b"VP80");
    h[12..14].copy_from_slice(&width.to_le_bytes());
    h[14..16].copy_from_slice(&height.to_le_bytes());
    h[16..20].copy_from_slice(&TIMEBASE_DEN.to_le_bytes());
    h[20..24].copy_from_slice(&1u32.to_le_bytes());
    // Frame count (24..28) stays 0: readers do not need it and the file is never rewritten.
    h
}

/// Append one frame at `pts_ms`.
pub fn write_frame(out: &mut impl Write, pts_ms: u64, frame: &[u8]) -> io::Result<()> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    header[0..4].copy_from_slice(&(frame.len() as u32).to_le_bytes());
    header[4..12].copy_from_slice(&pts_ms.to_le_bytes());
    out.write_all(&header)?;
    out.write_all(frame)
}

/// The frames of an IVF file as `(timestamp in the file's time base, frame)`; a truncated
/// last frame is left out. Used to publish test media and to check what was captured.
pub fn read_frames(file: &[u8]) -> Vec<(u64, &[u8])> {
    let mut frames = Vec::new();
    if file.len() < FILE_HEADER_LEN || &file[0..4] != b"DKIF" {
        return frames;
    }
    let header_len = u16::from_le_bytes([file[6], file[7]]) as usize;
    let mut at = header_len.max(FILE_HEADER_LEN);
    while at + FRAME_HEADER_LEN <= file.len() {
        let size = u32::from_le_bytes(file[at..at + 4].try_into().expect("4 bytes")) as usize;
        let pts = u64::from_le_bytes(file[at + 4..at + 12].try_into().expect("8 bytes"));
        let start = at + FRAME_HEADER_LEN;
        if start + size > file.len() {
            break;
        }
        frames.push((pts, &file[start..start + size]));
        at = start + size;
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_a_torn_tail_is_dropped() {
        let key = [
            0x50, 0x01, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00, 7, 7,
        ];
        assert!(vp8_is_keyframe(&key));
        assert_eq!(vp8_dimensions(&key), Some((320, 240)));
        assert!(!vp8_is_keyframe(&[0x51, 0, 0]));
        let mut file = file_header(320, 240).to_vec();
        write_frame(&mut file, 0, &key).unwrap();
        write_frame(&mut file, 33, &[0x51, 1, 2, 3]).unwrap();
        let whole = file.len();
        write_frame(&mut file, 66, &[0x51; 40]).unwrap();
        file.truncate(whole + 20);
        let frames = read_frames(&file);
        assert_eq!(frames, vec![(0, &key[..]), (33, &[0x51, 1, 2, 3][..])]);
    }
}
