//! Ogg Opus (RFC 7845) written one packet per page, so every packet carries its own exact
//! granule position (gaps in the audio stay gaps) and a file cut short by a crash still
//! holds every page written before the cut.

use std::io::{self, Write};

/// Opus always runs its granule clock at 48 kHz.
pub const SAMPLE_RATE: u64 = 48_000;

const HEADER_TYPE_BOS: u8 = 0x02;

/// Samples (at 48 kHz) in one Opus packet, from its TOC byte (RFC 6716 §3.1).
pub fn opus_packet_samples(packet: &[u8]) -> Option<u64> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    let frame: u64 = match config {
        0..=11 => [480, 960, 1920, 2880][(config % 4) as usize],
        12..=15 => [480, 960][(config % 2) as usize],
        _ => [120, 240, 480, 960][(config % 4) as usize],
    };
    let frames: u64 = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => u64::from(*packet.get(1)? & 0x3f),
    };
    Some(frame * frames)
}

/// A writer of one logical Opus stream.
#[derive(Debug)]
pub struct OggOpusWriter {
    serial: u32,
    sequence: u32,
}

impl OggOpusWriter {
    /// Write the two header pages (`OpusHead`, `OpusTags`).
    pub fn start(out: &mut impl Write, serial: u32, channels: u8) -> io::Result<Self> {
        let mut w = OggOpusWriter {
            serial,
            sequence: 0,
        };
        let mut head = b"OpusHead".to_vec();
        head.push(1); // version
        head.push(channels);
        head.extend_from_slice(&0u16.to_le_bytes()); // pre-skip: packets come from a live stream
        head.extend_from_slice(&48_000u32.to_le_bytes());
        head.extend_from_slice(&0i16.to_le_bytes()); // output gain
        head.push(0); // channel mapping family
        w.page(out, HEADER_TYPE_BOS, 0, &head)?;
        let vendor = b"roundtable-recorder";
        let mut tags = b"OpusTags".to_vec();
        tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        tags.extend_from_slice(vendor);
        tags.extend_from_slice(&0u32.to_le_bytes());
        w.page(out, 0, 0, &tags)?;
        Ok(w)
    }

    /// Append one packet that ends at `granule` samples.
    pub fn packet(&mut self, out: &mut impl Write, granule: u64, packet: &[u8]) -> io::Result<()> {
        self.page(out, 0, granule, packet)
    }

    fn page(
        &mut self,
        out: &mut impl Write,
        kind: u8,
        granule: u64,
        data: &[u8],
    ) -> io::Result<()> {
        let mut lacing = vec![255u8; data.len() / 255];
        lacing.push((data.len() % 255) as u8);
        if lacing.len() > 255 {
            return Err(io::Error::other("an Opus packet larger than one Ogg page"));
        }
        let mut page = Vec::with_capacity(27 + lacing.len() + data.len());
        page.extend_from_slice(b"OggS");
        page.push(0);
        page.push(kind);
        page.extend_from_slice(&granule.to_le_bytes());
        page.extend_from_slice(&self.serial.to_le_bytes());
        page.extend_from_slice(&self.sequence.to_le_bytes());
        page.extend_from_slice(&[0; 4]);
        page.push(lacing.len() as u8);
        page.extend_from_slice(&lacing);
        page.extend_from_slice(data);
        let crc = crc32(&page);
        page[22..26].copy_from_slice(&crc.to_le_bytes());
        self.sequence += 1;
        out.write_all(&page)
    }
}

/// The Ogg CRC: polynomial 0x04c11db7, no reflection, initial value and final xor 0.
fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, entry) in t.iter_mut().enumerate() {
            let mut r = (i as u32) << 24;
            for _ in 0..8 {
                r = if r & 0x8000_0000 != 0 {
                    (r << 1) ^ 0x04c1_1db7
                } else {
                    r << 1
                };
            }
            *entry = r;
        }
        t
    });
    data.iter().fold(0u32, |crc, b| {
        (crc << 8) ^ table[((crc >> 24) as u8 ^ b) as usize]
    })
}

/// The packets of an Ogg stream with the granule position of the page each ends on (the
/// two Opus header packets included); a truncated last page is left out.
pub fn read_packets(file: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let mut packets = Vec::new();
    let mut partial = Vec::new();
    let mut at = 0;
    while at + 27 <= file.len() && &file[at..at + 4] == b"OggS" {
        let granule = u64::from_le_bytes(file[at + 6..at + 14].try_into().expect("8 bytes"));
        let segments = file[at + 26] as usize;
        let table_end = at + 27 + segments;
        if table_end > file.len() {
            break;
        }
        let lacing = &file[at + 27..table_end];
        let body: usize = lacing.iter().map(|l| *l as usize).sum();
        if table_end + body > file.len() {
            break;
        }
        let mut pos = table_end;
        for &l in lacing {
            partial.extend_from_slice(&file[pos..pos + l as usize]);
            pos += l as usize;
            if l < 255 {
                packets.push((granule, std::mem::take(&mut partial)));
            }
        }
        at = table_end + body;
    }
    packets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crc_matches_the_ogg_reference() {
        // CRC-32/POSIX without its final inversion: !0x765e7680.
        assert_eq!(crc32(b"123456789"), 0x89a1_897f);
    }

    #[test]
    fn packet_durations_come_from_the_toc() {
        assert_eq!(opus_packet_samples(&[0xfc, 0, 0]), Some(960)); // CELT FB 20 ms, 1 frame
        assert_eq!(opus_packet_samples(&[0x78, 0]), Some(960)); // hybrid FB 20 ms
        assert_eq!(opus_packet_samples(&[0x1b, 0x03]), Some(3 * 2880)); // SILK 60 ms × 3
        assert_eq!(opus_packet_samples(&[]), None);
    }

    #[test]
    fn packets_round_trip_with_their_granules() {
        let mut file = Vec::new();
        let mut w = OggOpusWriter::start(&mut file, 7, 2).unwrap();
        w.packet(&mut file, 960, &[0xfc; 80]).unwrap();
        w.packet(&mut file, 2880, &[0xfc; 300]).unwrap();
        let packets = read_packets(&file);
        assert_eq!(packets.len(), 4);
        assert!(packets[0].1.starts_with(b"OpusHead"));
        assert_eq!(packets[2], (960, vec![0xfc; 80]));
        assert_eq!(packets[3], (2880, vec![0xfc; 300]));
        file.pop();
        assert_eq!(read_packets(&file).len(), 3, "a torn page is left out");
    }
}
