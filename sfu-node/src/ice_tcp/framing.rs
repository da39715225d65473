//! RFC 4571 framing of ICE-TCP: every packet (STUN, DTLS, RTP, RTCP) travels behind a 2-byte
//! big-endian length. [`Decoder`] turns a connection's byte stream into those packets and
//! decides when a stranger is sending garbage: a length over [`MAX_FRAME`] (more than any
//! datagram the UDP side reads), an empty frame, or a first frame that is not STUN (RFC 6544:
//! the first thing over a passive candidate's connection is a connectivity check).

/// The largest packet a connection may frame: the same as the UDP side's receive buffer, so
/// ICE-TCP takes exactly what a datagram could carry.
pub const MAX_FRAME: usize = crate::shell::MAX_DATAGRAM;

/// STUN's magic cookie (RFC 5389), at bytes 4..8 of every STUN message.
const STUN_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
/// A STUN header is 20 bytes.
const STUN_HEADER: usize = 20;

/// Why a connection is closed as garbage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Garbage {
    #[error("frame of {0} bytes, over the {MAX_FRAME}-byte limit")]
    TooLong(usize),
    #[error("empty frame")]
    Empty,
    #[error("first frame is not STUN")]
    NotStun,
}

/// `packet` with its RFC 4571 length prefix. Packets come from str0m, which never makes one
/// over [`MAX_FRAME`].
pub fn encode(packet: &[u8], out: &mut Vec<u8>) {
    let len = u16::try_from(packet.len()).expect("a packet fits a 16-bit length");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(packet);
}

/// Whether `packet` looks like a STUN message (RFC 5389 §6: two zero bits, the cookie).
pub fn is_stun(packet: &[u8]) -> bool {
    packet.len() >= STUN_HEADER && packet[0] & 0xC0 == 0 && packet[4..8] == STUN_COOKIE
}

/// One connection's incoming byte stream, cut into packets.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Where the next frame starts in `buf`.
    at: usize,
    /// Frames taken so far.
    frames: u64,
}

impl Decoder {
    /// Bytes read from the connection, in order.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.at > 0 && self.at == self.buf.len() {
            self.buf.clear();
            self.at = 0;
        } else if self.at >= 4096 {
            self.buf.drain(..self.at);
            self.at = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole packet, `None` until more bytes arrive, or why the connection is garbage
    /// (it should then be closed; the decoder says the same again if asked).
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, Garbage> {
        let rest = &self.buf[self.at..];
        let Some(head) = rest.get(..2) else {
            return Ok(None);
        };
        let len = usize::from(u16::from_be_bytes([head[0], head[1]]));
        if len > MAX_FRAME {
            return Err(Garbage::TooLong(len));
        }
        if len == 0 {
            return Err(Garbage::Empty);
        }
        let Some(packet) = rest.get(2..2 + len) else {
            return Ok(None);
        };
        if self.frames == 0 && !is_stun(packet) {
            return Err(Garbage::NotStun);
        }
        let packet = packet.to_vec();
        self.at += 2 + len;
        self.frames += 1;
        Ok(Some(packet))
    }

    /// Bytes held waiting for the rest of a frame (at most one frame's worth plus what one
    /// read brought).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A STUN binding request's header with `n` bytes of attributes after it.
    fn stun(n: usize) -> Vec<u8> {
        let mut p = vec![0x00, 0x01, 0, n as u8];
        p.extend_from_slice(&STUN_COOKIE);
        p.extend_from_slice(&[7; 12]);
        p.extend(std::iter::repeat_n(0xEE, n));
        p
    }

    fn framed(packets: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in packets {
            encode(p, &mut out);
        }
        out
    }

    fn drain(d: &mut Decoder) -> Result<Vec<Vec<u8>>, Garbage> {
        let mut out = Vec::new();
        while let Some(p) = d.next_frame()? {
            out.push(p);
        }
        Ok(out)
    }

    #[test]
    fn frames_split_at_every_byte_come_out_whole_and_in_order() {
        let rtp = vec![0x80; 1200];
        let dtls = vec![0x16; 90];
        let stream = framed(&[&stun(8), &dtls, &rtp, &[0x81; 1]]);
        for cut in 1..stream.len() {
            let mut d = Decoder::default();
            d.push(&stream[..cut]);
            let mut got = drain(&mut d).unwrap();
            d.push(&stream[cut..]);
            got.extend(drain(&mut d).unwrap());
            assert_eq!(got, vec![stun(8), dtls.clone(), rtp.clone(), vec![0x81]]);
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn one_byte_at_a_time_and_many_merged_in_one_read() {
        let packets: Vec<Vec<u8>> = std::iter::once(stun(4))
            .chain((1..200).map(|i| vec![0x80; i * 7 % MAX_FRAME + 1]))
            .collect();
        let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
        let stream = framed(&refs);

        let mut merged = Decoder::default();
        merged.push(&stream);
        assert_eq!(drain(&mut merged).unwrap(), packets);

        let mut trickled = Decoder::default();
        let mut got = Vec::new();
        for b in &stream {
            trickled.push(std::slice::from_ref(b));
            got.extend(drain(&mut trickled).unwrap());
        }
        assert_eq!(got, packets);
        // What was consumed is not kept: a long-lived connection holds one frame at most.
        assert!(
            trickled.buf.len() <= 4096 + MAX_FRAME + 2,
            "{}",
            trickled.buf.len()
        );
    }

    #[test]
    fn a_length_over_the_largest_datagram_is_garbage_before_its_bytes_arrive() {
        let mut d = Decoder::default();
        d.push(&framed(&[&stun(0)]));
        d.push(&((MAX_FRAME + 1) as u16).to_be_bytes());
        assert_eq!(d.next_frame().unwrap(), Some(stun(0)));
        assert_eq!(d.next_frame(), Err(Garbage::TooLong(MAX_FRAME + 1)));
        // Still garbage when asked again: the connection is to be closed.
        assert_eq!(d.next_frame(), Err(Garbage::TooLong(MAX_FRAME + 1)));

        let mut d = Decoder::default();
        d.push(&framed(&[&stun(0)]));
        d.push(&[0xFF, 0xFF]);
        d.next_frame().unwrap();
        assert_eq!(d.next_frame(), Err(Garbage::TooLong(65_535)));
    }

    #[test]
    fn a_frame_of_exactly_the_limit_is_taken() {
        let mut d = Decoder::default();
        let big = vec![0x80; MAX_FRAME];
        d.push(&framed(&[&stun(0), &big]));
        assert_eq!(drain(&mut d).unwrap(), vec![stun(0), big]);
    }

    #[test]
    fn a_first_frame_that_is_not_stun_is_garbage() {
        // An HTTP request sent to the media port, as a port scanner would.
        let mut d = Decoder::default();
        d.push(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        // "GE" read as a length of 0x4745 = 18245 bytes.
        assert_eq!(d.next_frame(), Err(Garbage::TooLong(0x4745)));

        // Well-framed, but DTLS before any connectivity check.
        let mut d = Decoder::default();
        d.push(&framed(&[&[0x16; 40]]));
        assert_eq!(d.next_frame(), Err(Garbage::NotStun));

        // The cookie is wrong.
        let mut bad = stun(4);
        bad[5] ^= 1;
        let mut d = Decoder::default();
        d.push(&framed(&[&bad]));
        assert_eq!(d.next_frame(), Err(Garbage::NotStun));

        let mut d = Decoder::default();
        d.push(&[0, 0]);
        assert_eq!(d.next_frame(), Err(Garbage::Empty));
    }

    #[test]
    fn after_a_check_any_packet_may_follow() {
        let mut d = Decoder::default();
        d.push(&framed(&[&stun(0), &[0x16; 40], &[0x80; 12]]));
        assert_eq!(drain(&mut d).unwrap().len(), 3);
    }

    #[test]
    fn encode_prefixes_the_big_endian_length() {
        let mut out = vec![9];
        encode(&[1, 2, 3], &mut out);
        encode(&vec![0; 300], &mut out);
        assert_eq!(&out[..6], &[9, 0, 3, 1, 2, 3]);
        assert_eq!(&out[6..8], &[0x01, 0x2C]);
        assert_eq!(out.len(), 6 + 2 + 300);
    }
}
