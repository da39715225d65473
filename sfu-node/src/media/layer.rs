//! Simulcast layer choice: which of a publisher's layers one viewer receives.
//!
//! The choice is made by pure functions of the viewer's bandwidth estimate (TWCC), how many
//! videos it shows, how big it shows this one, and each layer's measured bitrate.
//! [`Media::update_layers`] gathers those inputs for one viewer, applies the choice (a switch
//! waits for the new layer's keyframe) and tells the viewer's estimator what it would use;
//! [`Media::set_view`] is the client saying how big it shows a video.

use std::time::{Duration, Instant};

use str0m::bwe::Bitrate;
use str0m::media::{MediaKind, Mid, Rid};

use super::{Bwe, Media, Peer, PeerId, PeerRole};
use crate::vocab::ParticipantId;

/// Rank a simulcast rid from lowest (0) to highest (2) quality by its common spellings
/// (`q/h/f` as in Pion and many WHIP clients, `l/m/h`, `0/1/2`).
pub fn rank_rids(rids: &[Rid]) -> Vec<Rid> {
    let has_f = rids.iter().any(|r| &**r == "f");
    let rank = |r: &Rid| -> u8 {
        match &**r {
            "q" | "l" | "lo" | "low" | "0" => 0,
            "m" | "mid" | "1" => 1,
            "h" if has_f => 1,
            _ => 2,
        }
    };
    let mut sorted = rids.to_vec();
    sorted.sort_by_key(rank);
    sorted
}

/// The highest layer index a tile of this size needs, for layers at ¼, ½ and full size of a
/// 1280×720 source.
pub fn max_layer_for_tile(width: u32, height: u32, layers: usize) -> usize {
    if layers == 0 {
        return 0;
    }
    let need = if width <= 320 && height <= 180 {
        0
    } else if width <= 640 && height <= 360 {
        1
    } else {
        2
    };
    need.min(layers - 1)
}

/// Headroom kept out of the estimate: sending close to it builds a queue (delay) that the
/// estimator reads as congestion (and str0m's GCC paces at 1.1× its estimate).
const ESTIMATE_USE: u64 = 80;
/// RTP/SRTP/UDP/IP overhead on top of measured payload bitrate.
const OVERHEAD_PCT: u64 = 115;
/// An audio track's bitrate until it is measured.
const AUDIO_BPS: u64 = 40_000;

/// What one viewer can afford per video: its estimate, less headroom and audio, shared
/// equally between the videos it shows.
pub fn video_share(estimate_bps: u64, videos: usize, audio_bps: u64) -> u64 {
    (estimate_bps * ESTIMATE_USE / 100).saturating_sub(audio_bps) / videos.max(1) as u64
}

/// Pick a layer index: the highest that fits both the tile and `share` (see
/// [`video_share`]); the lowest when none fits, so video keeps flowing.
///
/// `layer_bps[i]` is layer i's measured payload bitrate, `None` when not measured yet (then
/// assumed to fit only if it is the lowest).
pub fn choose_layer(share_bps: Option<u64>, tile_max: usize, layer_bps: &[Option<u64>]) -> usize {
    if layer_bps.is_empty() {
        return 0;
    }
    let top = tile_max.min(layer_bps.len() - 1);
    let Some(share) = share_bps else {
        return top;
    };
    let mut best = 0;
    for (i, bps) in layer_bps.iter().enumerate().take(top + 1) {
        match bps {
            Some(b) if b * OVERHEAD_PCT / 100 <= share => best = i,
            Some(_) => break,
            None if i == 0 => {}
            None => break,
        }
    }
    best
}

/// The bitrate a viewer would like: every video at the layer its tile needs, plus audio.
/// The feedback estimator grows at most to it; str0m's GCC gets it as the desired rate, so
/// it probes up towards it.
pub fn desired_bps(wanted_layers_bps: impl Iterator<Item = u64>, audio_bps: u64) -> u64 {
    let video: u64 = wanted_layers_bps.map(|b| b * OVERHEAD_PCT / 100).sum();
    // A quarter more, so an estimate settling at the desired rate still fits every layer.
    (video + audio_bps) * 100 / ESTIMATE_USE * 5 / 4
}

/// A bitrate meter over one-second windows.
#[derive(Debug, Clone, Default)]
pub struct RateMeter {
    window_start: Option<Instant>,
    bytes: u64,
    bps: Option<u64>,
}

impl RateMeter {
    const WINDOW: Duration = Duration::from_secs(1);

    pub fn add(&mut self, now: Instant, bytes: usize) {
        let start = *self.window_start.get_or_insert(now);
        self.bytes += bytes as u64;
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= Self::WINDOW {
            self.bps = Some(self.bytes * 8 * 1000 / elapsed.as_millis().max(1) as u64);
            self.bytes = 0;
            self.window_start = Some(now);
        }
    }

    pub fn bps(&self) -> Option<u64> {
        self.bps
    }
}

impl Media {
    /// The viewer shows `mid` at this size.
    pub fn set_view(
        &mut self,
        now: Instant,
        participant: ParticipantId,
        mid: &str,
        width: u32,
        height: u32,
    ) {
        let ids: Vec<PeerId> = self
            .peers
            .values()
            .filter(|p| p.participant == participant && p.role == PeerRole::View)
            .map(|p| p.id)
            .collect();
        for id in ids {
            let peer = self.peers.get_mut(&id).expect("listed");
            if let Some(slot) = peer.slots.iter_mut().find(|s| &*s.mid == mid) {
                slot.tile_max = max_layer_for_tile(width, height, 3);
                self.update_layers(now, id);
            }
        }
        self.flush(now);
    }

    /// The estimate a viewer's layers follow: its estimator's, or the starting estimate until
    /// the first one; none when estimation is off (layers follow tile sizes only).
    fn layer_estimate(&self, peer: &Peer) -> Option<u64> {
        match self.config.bwe {
            Bwe::Off => None,
            Bwe::Feedback | Bwe::Gcc => peer
                .estimate_bps()
                .or(Some(self.config.initial_estimate_bps)),
        }
    }

    /// The bitrate of the audio `peer` receives (measured, or a typical Opus rate).
    fn audio_bps(&self, peer: &Peer) -> u64 {
        peer.slots
            .iter()
            .filter_map(|s| s.feed.as_ref())
            .filter_map(|f| {
                self.peers
                    .get(&f.publisher)
                    .and_then(|p| p.tracks_in.iter().find(|t| t.mid == f.track))
            })
            .filter(|t| t.kind == MediaKind::Audio)
            .map(|t| t.meters[0].bps().unwrap_or(AUDIO_BPS))
            .sum()
    }

    /// The layer a viewer's new feed of `publisher`'s video `track`, shown in slot `slot`,
    /// starts on: the highest that the tile and the viewer's estimate allow, as a layer
    /// check would choose it, so a large tile does not begin on the smallest layer.
    pub(super) fn start_layer(
        &self,
        viewer: PeerId,
        slot: usize,
        publisher: PeerId,
        track: Mid,
    ) -> Option<Rid> {
        let peer = self.peers.get(&viewer)?;
        let track = self
            .peers
            .get(&publisher)?
            .tracks_in
            .iter()
            .find(|t| t.mid == track)?;
        let rates: Vec<Option<u64>> = track.meters.iter().map(RateMeter::bps).collect();
        // This feed is not placed yet: it is one more video sharing the estimate.
        let share = self
            .layer_estimate(peer)
            .map(|e| video_share(e, peer.video_feeds() + 1, self.audio_bps(peer)));
        let tile_max = peer.slots.get(slot).map_or(2, |s| s.tile_max);
        track.layer_rid(choose_layer(share, tile_max, &rates))
    }

    /// Re-choose the simulcast layer of each video `viewer` receives, and tell its BWE what
    /// rate would carry everything it wants.
    pub(super) fn update_layers(&mut self, now: Instant, viewer: PeerId) {
        let Some(peer) = self.peers.get(&viewer) else {
            return;
        };
        let videos = peer.video_feeds();
        let audio_bps = self.audio_bps(peer);
        let mut wanted = Vec::new();
        let mut layers = Vec::new();
        for (idx, slot) in peer.slots.iter().enumerate() {
            let Some(feed) = &slot.feed else { continue };
            let Some(track) = self
                .peers
                .get(&feed.publisher)
                .and_then(|p| p.tracks_in.iter().find(|t| t.mid == feed.track))
            else {
                continue;
            };
            if track.kind == MediaKind::Audio {
                continue;
            }
            let rates: Vec<Option<u64>> = track.meters.iter().map(RateMeter::bps).collect();
            let top = slot.tile_max.min(rates.len() - 1);
            wanted.push(
                rates[..=top]
                    .iter()
                    .rev()
                    .find_map(|r| *r)
                    .unwrap_or(500_000),
            );
            // Also a feed that has not shown its first frame: a tile size that arrives
            // before it retargets the start.
            if !track.layers.is_empty() {
                layers.push((
                    idx,
                    rates,
                    slot.tile_max,
                    feed.target,
                    feed.publisher,
                    feed.track,
                ));
            }
        }
        let connected = peer.connected;
        let share = self
            .layer_estimate(peer)
            .map(|e| video_share(e, videos, audio_bps));
        let mut changes = Vec::new();
        for (idx, rates, tile_max, target, publisher, track_mid) in layers {
            let want = choose_layer(share, tile_max, &rates);
            let Some(track) = self
                .peers
                .get(&publisher)
                .and_then(|p| p.tracks_in.iter().find(|t| t.mid == track_mid))
            else {
                continue;
            };
            let rid = track.layer_rid(want);
            if rid != target {
                changes.push((idx, rid, publisher, track_mid));
            }
        }
        // Never below the starting estimate: a low desired rate drags the estimate down.
        let desired =
            desired_bps(wanted.into_iter(), audio_bps).max(self.config.initial_estimate_bps);
        if let Some(peer) = self.peers.get_mut(&viewer) {
            peer.desired_bps = desired;
            if self.config.bwe == Bwe::Gcc {
                peer.rtc
                    .bwe()
                    .set_bitrate(Bitrate::kbps(150), Bitrate::bps(desired));
                self.dirty.push(viewer);
            }
        }
        for (idx, rid, publisher, track) in changes {
            if let Some(feed) = self
                .peers
                .get_mut(&viewer)
                .and_then(|p| p.slots[idx].feed.as_mut())
            {
                feed.target = rid;
            }
            // Before it connects, the viewer's first keyframes are asked for when it does.
            if connected {
                self.request_keyframe(now, publisher, track, rid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rids(s: &[&str]) -> Vec<Rid> {
        s.iter().map(|r| (*r).into()).collect()
    }

    #[test]
    fn rids_are_ordered_low_to_high_whatever_the_spelling() {
        assert_eq!(rank_rids(&rids(&["f", "h", "q"])), rids(&["q", "h", "f"]));
        assert_eq!(rank_rids(&rids(&["h", "m", "l"])), rids(&["l", "m", "h"]));
    }

    #[test]
    fn the_highest_affordable_layer_wins() {
        let layers = [Some(150_000), Some(500_000), Some(1_500_000)];
        let share = |est, videos| Some(video_share(est, videos, 0));
        assert_eq!(choose_layer(share(3_000_000, 1), 2, &layers), 2);
        assert_eq!(choose_layer(share(1_000_000, 1), 2, &layers), 1);
        // Bandwidth drop: falls to the lowest layer, never to nothing.
        assert_eq!(choose_layer(share(100_000, 1), 2, &layers), 0);
        // Four videos share the estimate.
        assert_eq!(choose_layer(share(3_000_000, 4), 2, &layers), 1);
        // Audio comes off the top.
        assert_eq!(video_share(1_000_000, 2, 200_000), 300_000);
    }

    #[test]
    fn small_tiles_get_small_layers_even_with_bandwidth() {
        let layers = [Some(150_000), Some(500_000), Some(1_500_000)];
        let tile = max_layer_for_tile(320, 180, 3);
        assert_eq!(choose_layer(Some(10_000_000), tile, &layers), 0);
        let tile = max_layer_for_tile(640, 360, 3);
        assert_eq!(choose_layer(Some(10_000_000), tile, &layers), 1);
        assert_eq!(max_layer_for_tile(1920, 1080, 2), 1);
    }

    #[test]
    fn unmeasured_layers_are_not_assumed_affordable() {
        let layers = [Some(150_000), None, None];
        assert_eq!(choose_layer(Some(10_000_000), 2, &layers), 0);
        assert_eq!(choose_layer(None, 2, &layers), 2);
    }

    #[test]
    fn desired_rate_covers_wanted_layers_audio_and_headroom() {
        let d = desired_bps([1_000_000, 500_000].into_iter(), 100_000);
        assert_eq!(d, (1_150_000 + 575_000 + 100_000) * 100 / 80 * 5 / 4);
    }

    #[test]
    fn rate_meter_measures_per_second() {
        let t0 = Instant::now();
        let mut m = RateMeter::default();
        for i in 0..=100 {
            m.add(t0 + Duration::from_millis(i * 10), 1250);
        }
        // 100 packets of 1250 bytes over 1 s (first counted) ≈ 1 Mbit/s.
        let bps = m.bps().unwrap();
        assert!((990_000..=1_020_000).contains(&bps), "{bps}");
    }
}
