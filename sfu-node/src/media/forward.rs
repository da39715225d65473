//! Forwarding a publisher's RTP packets to the viewers its track feeds.
//!
//! The fast path: a packet is looked at once (its layer, whether it starts a keyframe, its
//! VP8 picture id), then each viewer gets the same payload (shared, not copied) with only its
//! header rewritten (see [`rewrite`](super::rewrite)) and its own SRTP, done by str0m when
//! the viewer is driven; nothing is depacketized or packetized again.
//!
//! Each viewer's slot starts, and switches layer, only on a keyframe of the layer it wants
//! (audio at once); sequence numbers, RTP time and picture ids are shifted so they keep
//! running forward across switches. Nothing is written to a viewer whose gate is closed;
//! when it opens again, the viewer restarts from fresh keyframes.

use std::time::Instant;

use str0m::format::Codec;
use str0m::media::{MediaKind, Mid, Rid};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo};

use super::rewrite::{Payload, starts_keyframe, vp8_patch, vp8_picture_id};
use super::{Media, PeerId};
use crate::vocab::ParticipantId;

impl Media {
    /// Open or close the media gate for `participant`'s viewing connections.
    pub fn set_receives(&mut self, now: Instant, participant: ParticipantId, on: bool) {
        let ids: Vec<PeerId> = self
            .peers
            .values()
            .filter(|p| p.participant == participant && p.role.receives())
            .map(|p| p.id)
            .collect();
        for id in ids {
            let peer = self.peers.get_mut(&id).expect("listed");
            let opened = on && !peer.receives;
            peer.receives = on;
            if !on {
                // Restart from a keyframe when the gate opens again.
                for slot in &mut peer.slots {
                    if let Some(feed) = &mut slot.feed {
                        feed.current = None;
                    }
                }
            }
            if opened {
                self.request_viewer_keyframes(now, id);
            }
        }
        self.flush(now);
    }

    /// Whether some viewer is being forwarded layer `rid` of `publisher`'s track `mid`.
    fn layer_watched(&self, publisher: PeerId, mid: Mid, rid: Option<Rid>) -> bool {
        let Some(track) = self
            .peers
            .get(&publisher)
            .and_then(|p| p.tracks_in.iter().find(|t| t.mid == mid))
        else {
            return false;
        };
        track.subscribers.iter().any(|&(viewer, slot)| {
            self.peers
                .get(&viewer)
                .and_then(|v| v.slots.get(slot))
                .and_then(|s| s.feed.as_ref())
                .is_some_and(|f| f.publisher == publisher && f.current == Some(rid))
        })
    }

    pub(super) fn forward(&mut self, now: Instant, from: PeerId, packet: RtpPacket) {
        let Some(publisher) = self.peers.get_mut(&from) else {
            return;
        };
        let pt_in = packet.header.payload_type;
        let Some(params) = publisher
            .rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| p.pt() == pt_in)
            .copied()
        else {
            return;
        };
        let Some((mut mid, mut rid)) = publisher
            .rtc
            .direct_api()
            .stream_rx(&packet.header.ssrc)
            .map(|s| (s.mid(), s.rid()))
        else {
            return;
        };
        if let Some(up) = &publisher.upstream {
            let Some(route) = up.route(mid) else {
                return;
            };
            (mid, rid) = (route.track, route.rid);
        }
        let Some(track) = publisher.tracks_in.iter_mut().find(|t| t.mid == mid) else {
            return;
        };
        let Some(layer) = track.layer_index(rid) else {
            return;
        };
        let payload = &packet.payload;
        track.meters[layer].add(now, payload.len());
        let kind = track.kind;
        let unrepaired = kind == MediaKind::Video
            && track
                .gaps
                .get_mut(layer)
                .is_some_and(|g| g.on_packet(now, *packet.seq_no));
        if kind == MediaKind::Video && track.keyframes.take_deferred(now, rid) {
            self.send_keyframe_request(from, mid, rid);
        }
        if unrepaired && self.layer_watched(from, mid, rid) {
            // Loss NACK could not repair: the decoders on this layer need a fresh keyframe.
            self.request_keyframe(now, from, mid, rid);
        }
        let payload_kind = match params.spec().codec {
            Codec::Vp8 => Payload::Vp8,
            Codec::H264 => Payload::H264,
            _ => Payload::Other,
        };
        let is_key = starts_keyframe(kind, payload_kind, payload);
        let picture_id = match payload_kind {
            Payload::Vp8 => vp8_picture_id(payload),
            _ => None,
        };
        let step: i64 = match kind {
            MediaKind::Video => i64::from(packet.time.frequency().get()) / 30,
            MediaKind::Audio => i64::from(packet.time.frequency().get()) / 50,
        };
        let (in_seq, in_time) = (*packet.seq_no, packet.time.numer());
        let marker = packet.header.marker;
        let ends_frame = kind == MediaKind::Audio || marker;
        let publisher = self.peers.get_mut(&from).expect("checked");
        let track = publisher
            .tracks_in
            .iter_mut()
            .find(|t| t.mid == mid)
            .expect("checked");
        let subscribers = std::mem::take(&mut track.subscribers);
        let spread = self.workers.spreads();
        for &(vid, slot) in &subscribers {
            let Some(viewer) = self.peers.get_mut(&vid) else {
                continue;
            };
            if !viewer.receives || !viewer.connected {
                continue;
            }
            let slot_mid = viewer.slots[slot].mid;
            let Some(feed) = viewer.slots.get_mut(slot).and_then(|s| s.feed.as_mut()) else {
                continue;
            };
            if feed.current != Some(rid) {
                let start = match kind {
                    MediaKind::Audio => true,
                    MediaKind::Video => rid == feed.target && is_key,
                };
                if !start {
                    continue;
                }
                feed.current = Some(rid);
                feed.rewrite.start(in_seq, in_time, picture_id, step);
            }
            let Some(out) = feed.rewrite.map(in_seq, in_time, picture_id) else {
                continue;
            };
            let cached = feed.pt.as_ref().filter(|(p, _)| *p == params).map(|c| c.1);
            let pt = match cached {
                Some(pt) => pt,
                None => {
                    let Some(p) = viewer.rtc.codec_config().match_params(params) else {
                        // The viewer did not offer this codec (e.g. H.264 only on one side).
                        continue;
                    };
                    let pt = p.pt();
                    if let Some(f) = viewer.slots[slot].feed.as_mut() {
                        f.pt = Some((params, pt));
                    }
                    pt
                }
            };
            let mut write = RtpWrite::new(
                pt,
                SeqNo::from(out.seq),
                out.time,
                packet.timestamp,
                packet.payload.clone(),
            )
            .marker(marker)
            .ext_vals(forwarded_exts(&packet.header.ext_vals))
            .nackable(kind == MediaKind::Video);
            if let Some(p) = out.picture_id.and_then(|p| vp8_patch(&packet.payload, p)) {
                write = write.vp8_patch(p);
            }
            if spread {
                // Written on whichever thread drives the viewer (see `drive`).
                viewer.writes.push((slot_mid, write));
            } else {
                viewer.write_rtp(slot_mid, write);
            }
            if ends_frame {
                self.stats.frames_forwarded += 1;
            }
            self.dirty.push(vid);
        }
        if let Some(track) = self
            .peers
            .get_mut(&from)
            .and_then(|p| p.tracks_in.iter_mut().find(|t| t.mid == mid))
        {
            // Subscribers added while forwarding are kept.
            let added = std::mem::replace(&mut track.subscribers, subscribers);
            track.subscribers.extend(added);
        }
    }
}

/// The header extensions a viewer gets from the publisher's packet; str0m adds its own
/// (transport-wide sequence number, send time, mid) when it sends.
fn forwarded_exts(from: &ExtensionValues) -> ExtensionValues {
    ExtensionValues {
        audio_level: from.audio_level,
        voice_activity: from.voice_activity,
        video_orientation: from.video_orientation,
        ..Default::default()
    }
}
