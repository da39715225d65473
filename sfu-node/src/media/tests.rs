//! The media core against real str0m client peers, in memory, on a fake clock.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{
    Direction, Frequency, KeyframeRequestKind, MediaData, MediaKind, MediaTime, Mid, Rid,
    Simulcast, SimulcastLayer,
};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

use super::*;
use crate::vocab::ParticipantId;

const TICK: Duration = Duration::from_millis(1);
/// Frame sizes per layer at 30 fps: about 0.07, 0.36 and 1.2 Mbit/s.
const LAYERS: [(&str, usize); 3] = [("q", 300), ("h", 1_500), ("f", 5_000)];

struct Downlink {
    /// Link capacity; `None` is unlimited.
    rate_bps: Option<u64>,
    free_at: Instant,
    /// Drop every n-th packet.
    drop_every: Option<u64>,
    sent: u64,
    queue: VecDeque<(Instant, SocketAddr, Vec<u8>)>,
}

struct Client {
    participant: ParticipantId,
    rtc: Rtc,
    addr: SocketAddr,
    timeout: Instant,
    events: Vec<(Instant, Event)>,
    down: Downlink,
    /// Everything this client sends is lost until then.
    up_lost_until: Instant,
    // Publisher state.
    audio: Option<Mid>,
    video: Option<Mid>,
    simulcast: bool,
    codec: Codec,
    frame: u64,
    keyframe_every: u64,
    want_keyframe: Vec<Option<Rid>>,
    seen: usize,
}

impl Client {
    fn media(&self) -> impl Iterator<Item = &MediaData> {
        self.events.iter().filter_map(|(_, e)| match e {
            Event::MediaData(d) => Some(d),
            _ => None,
        })
    }

    fn video_frames(&self) -> Vec<(Instant, &MediaData)> {
        self.events
            .iter()
            .filter_map(|(t, e)| match e {
                Event::MediaData(d) if d.params.spec().codec.is_video() => Some((*t, d)),
                _ => None,
            })
            .collect()
    }

    fn keyframe_requests(&self) -> usize {
        self.events
            .iter()
            .filter(|(_, e)| matches!(e, Event::KeyframeRequest(_)))
            .count()
    }
}

struct World {
    now: Instant,
    start: Instant,
    sfu: Media,
    clients: Vec<Client>,
    to_sfu: Vec<(SocketAddr, Vec<u8>)>,
    sfu_events: Vec<MediaEvent>,
    /// Datagrams from the SFU to addresses that are not clients (a relay): destination, bytes.
    elsewhere: Vec<(SocketAddr, Vec<u8>)>,
}

impl World {
    fn new() -> Self {
        World::with_bwe(Bwe::default())
    }

    fn with_bwe(bwe: Bwe) -> Self {
        World::with_estimate(bwe, 3_000_000)
    }

    /// A room whose viewers' bandwidth estimates start at `initial_bps`.
    fn with_estimate(bwe: Bwe, initial_bps: u64) -> Self {
        let now = Instant::now();
        let sfu_addr: SocketAddr = (Ipv4Addr::new(10, 0, 0, 1), 5000).into();
        World {
            now,
            start: now,
            sfu: Media::new(MediaConfig {
                initial_estimate_bps: initial_bps,
                bwe,
                ..MediaConfig::new(sfu_addr)
            }),
            clients: Vec::new(),
            to_sfu: Vec::new(),
            sfu_events: Vec::new(),
            elsewhere: Vec::new(),
        }
    }

    /// A room whose peers are driven on `threads` threads.
    fn with_threads(threads: usize) -> Self {
        let mut w = World::new();
        w.sfu = Media::new(MediaConfig {
            threads,
            ..w.sfu.config().clone()
        });
        w
    }

    fn client_rtc(&self, codec: Codec) -> Rtc {
        Rtc::builder()
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(codec == Codec::Vp8)
            .enable_h264(codec == Codec::H264)
            .build(self.now)
    }

    fn add_client(
        &mut self,
        participant: u64,
        mut rtc: Rtc,
        role: PeerRole,
        simulcast: bool,
    ) -> (usize, Vec<Mid>) {
        let idx = self.clients.len();
        let addr: SocketAddr = (Ipv4Addr::new(10, 1, 0, idx as u8 + 1), 40000).into();
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let (offer, pending, mids) = build_offer(&mut rtc, role, simulcast);
        let (_, answer) = self
            .sfu
            .add_peer(
                self.now,
                ParticipantId(participant),
                role,
                &offer.to_sdp_string(),
            )
            .unwrap();
        rtc.sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
            .unwrap();
        self.clients.push(Client {
            participant: ParticipantId(participant),
            rtc,
            addr,
            timeout: self.now,
            events: Vec::new(),
            down: Downlink {
                rate_bps: None,
                free_at: self.now,
                drop_every: None,
                sent: 0,
                queue: VecDeque::new(),
            },
            up_lost_until: self.now,
            audio: None,
            video: None,
            simulcast: false,
            codec: Codec::Vp8,
            frame: 0,
            keyframe_every: 300,
            want_keyframe: Vec::new(),
            seen: 0,
        });
        (idx, mids)
    }

    fn publisher(&mut self, participant: u64, simulcast: bool, codec: Codec) -> usize {
        let rtc = self.client_rtc(codec);
        self.publisher_with(participant, simulcast, codec, rtc)
    }

    /// From now on publisher `i` keeps nothing to retransmit: NACKs find nothing.
    fn stop_retransmissions(&mut self, i: usize) {
        let c = &mut self.clients[i];
        let mid = c.video.unwrap();
        let rids: Vec<Option<Rid>> = match c.simulcast {
            true => LAYERS.iter().map(|(r, _)| Some((*r).into())).collect(),
            false => vec![None],
        };
        for rid in rids {
            if let Some(tx) = c.rtc.direct_api().stream_tx_by_mid(mid, rid) {
                tx.set_rtx_cache(0, Duration::ZERO, None);
            }
        }
    }

    fn publisher_with(
        &mut self,
        participant: u64,
        simulcast: bool,
        codec: Codec,
        rtc: Rtc,
    ) -> usize {
        let (idx, mids) = self.add_client(
            participant,
            rtc,
            PeerRole::Publish(Source::Camera),
            simulcast,
        );
        let c = &mut self.clients[idx];
        c.audio = Some(mids[0]);
        c.video = Some(mids[1]);
        c.simulcast = simulcast;
        c.codec = codec;
        idx
    }

    fn viewer(&mut self, participant: u64, slots: usize) -> usize {
        self.receiver(participant, slots, PeerRole::View)
    }

    fn receiver(&mut self, participant: u64, slots: usize, role: PeerRole) -> usize {
        let rtc = self.client_rtc(Codec::Vp8);
        let before = SLOTS.with(|s| s.replace(slots));
        let (idx, _) = self.add_client(participant, rtc, role, false);
        SLOTS.with(|s| s.set(before));
        idx
    }

    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }

    /// The (first) viewer's connection in the SFU.
    fn viewer_peer(&self) -> &Peer {
        self.sfu
            .peers()
            .find(|p| p.role == PeerRole::View)
            .expect("a viewer is connected")
    }

    /// The mid of the viewer's video slot (slot 0 carries audio), as the page reports a tile
    /// size for.
    fn viewer_video_mid(&self) -> Mid {
        self.viewer_peer().slots[1].mid
    }

    fn step(&mut self) {
        self.now += TICK;
        let now = self.now;
        for i in 0..self.clients.len() {
            self.send_media(i);
            let c = &mut self.clients[i];
            if c.timeout <= now {
                c.rtc.handle_input(Input::Timeout(now)).unwrap();
            }
            poll_client(c, now, &mut self.to_sfu);
        }
        for (src, bytes) in std::mem::take(&mut self.to_sfu) {
            if self
                .clients
                .iter()
                .any(|c| c.addr == src && c.up_lost_until > now)
            {
                continue;
            }
            self.sfu.handle_receive(now, Protocol::Udp, src, &bytes);
        }
        if self.sfu.poll_timeout().is_some_and(|t| t <= now) {
            self.sfu.handle_timeout(now);
        }
        while let Some(t) = self.sfu.poll_transmit() {
            let Some(c) = self.clients.iter_mut().find(|c| c.addr == t.destination) else {
                self.elsewhere.push((t.destination, t.contents.to_vec()));
                continue;
            };
            let d = &mut c.down;
            d.sent += 1;
            if d.drop_every.is_some_and(|n| d.sent % n == 0) {
                continue;
            }
            let at = match d.rate_bps {
                None => now,
                Some(rate) => {
                    let start = d.free_at.max(now);
                    let tx = Duration::from_micros(t.contents.len() as u64 * 8 * 1_000_000 / rate);
                    if start - now > Duration::from_millis(300) {
                        continue; // tail drop: the bottleneck queue is full
                    }
                    d.free_at = start + tx;
                    d.free_at
                }
            };
            d.queue.push_back((at, t.source, t.contents.to_vec()));
        }
        while let Some(e) = self.sfu.poll_event() {
            self.sfu_events.push(e);
        }
        for c in &mut self.clients {
            while c.down.queue.front().is_some_and(|(at, _, _)| *at <= now) {
                let (_, src, bytes) = c.down.queue.pop_front().unwrap();
                let input = Input::Receive(
                    now,
                    Receive {
                        proto: Protocol::Udp,
                        source: src,
                        destination: c.addr,
                        contents: bytes.as_slice().try_into().unwrap(),
                    },
                );
                c.rtc.handle_input(input).unwrap();
                poll_client(c, now, &mut self.to_sfu);
            }
        }
    }

    /// Publishers send 30 fps video (per layer) and 50 fps audio.
    fn send_media(&mut self, i: usize) {
        let elapsed = (self.now - self.start).as_millis() as u64;
        let c = &mut self.clients[i];
        if !c.rtc.is_connected() {
            return;
        }
        for (_, e) in &c.events[c.seen..] {
            if let Event::KeyframeRequest(r) = e {
                c.want_keyframe.push(r.rid);
            }
        }
        c.seen = c.events.len();
        if let Some(mid) = c.audio
            && elapsed.is_multiple_of(20)
        {
            let pt = c
                .rtc
                .writer(mid)
                .unwrap()
                .payload_params()
                .find(|p| p.spec().codec == Codec::Opus)
                .unwrap()
                .pt();
            let t = MediaTime::new(elapsed * 48, Frequency::FORTY_EIGHT_KHZ);
            c.rtc
                .writer(mid)
                .unwrap()
                .write(pt, self.now, t, vec![0xAA; 80])
                .unwrap();
        }
        let Some(mid) = c.video else { return };
        if !elapsed.is_multiple_of(33) {
            return;
        }
        c.frame += 1;
        let codec = c.codec;
        let pt = c
            .rtc
            .writer(mid)
            .unwrap()
            .payload_params()
            .find(|p| p.spec().codec == codec)
            .unwrap()
            .pt();
        let t = MediaTime::new(elapsed * 90, Frequency::NINETY_KHZ);
        let layers: Vec<(Option<Rid>, usize)> = if c.simulcast {
            LAYERS
                .iter()
                .map(|(r, s)| (Some((*r).into()), *s))
                .collect()
        } else {
            vec![(None, 1_500)]
        };
        let periodic = c.frame % c.keyframe_every == 1;
        let requested: Vec<Option<Rid>> = std::mem::take(&mut c.want_keyframe);
        for (rid, size) in layers {
            let key = periodic || requested.iter().any(|r| r.is_none() || *r == rid);
            let data = frame_bytes(codec, key, c.frame, size);
            let mut w = c.rtc.writer(mid).unwrap();
            if let Some(rid) = rid {
                w = w.rid(rid);
            }
            w.write(pt, self.now, t, data).unwrap();
        }
    }

    fn client(&self, i: usize) -> &Client {
        &self.clients[i]
    }
}

thread_local! {
    static SLOTS: std::cell::Cell<usize> = const { std::cell::Cell::new(1) };
}

fn frame_bytes(codec: Codec, key: bool, frame: u64, size: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(size + 5);
    match codec {
        // VP8 payload header: bit 0 clear marks a keyframe.
        Codec::Vp8 => v.push(if key { 0x10 } else { 0x11 }),
        // H.264 Annex B: an IDR slice (type 5) or a non-IDR slice (type 1).
        _ => v.extend_from_slice(&[0, 0, 0, 1, if key { 0x65 } else { 0x41 }]),
    }
    // No zero bytes, so an H.264 payload never contains a start code.
    v.extend(frame.to_be_bytes().iter().map(|b| b | 0x80));
    v.resize(size, 0x5A);
    v
}

fn build_offer(
    rtc: &mut Rtc,
    role: PeerRole,
    simulcast: bool,
) -> (SdpOffer, SdpPendingOffer, Vec<Mid>) {
    let mut api = rtc.sdp_api();
    let mut mids = Vec::new();
    match role {
        PeerRole::Publish(_) => {
            mids.push(api.add_media(
                MediaKind::Audio,
                Direction::SendOnly,
                Some("s".into()),
                Some("a".into()),
                None,
            ));
            let sim = simulcast.then(|| {
                let mut sim = Simulcast::new();
                for (rid, _) in LAYERS {
                    sim.add_send_layer(SimulcastLayer::new(rid));
                }
                sim
            });
            mids.push(api.add_media(
                MediaKind::Video,
                Direction::SendOnly,
                Some("s".into()),
                Some("v".into()),
                sim,
            ));
        }
        PeerRole::View | PeerRole::Relay | PeerRole::Upstream => {
            let slots = SLOTS.with(|s| s.get());
            for _ in 0..slots {
                mids.push(api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None));
                mids.push(api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None));
            }
        }
    }
    let (offer, pending) = api.apply().unwrap();
    (offer, pending, mids)
}

fn poll_client(c: &mut Client, now: Instant, to_sfu: &mut Vec<(SocketAddr, Vec<u8>)>) {
    loop {
        match c.rtc.poll_output().unwrap() {
            Output::Timeout(t) => {
                c.timeout = t.max(now + TICK);
                return;
            }
            Output::Transmit(t) => to_sfu.push((c.addr, t.contents.to_vec())),
            Output::Event(e) => c.events.push((now, e)),
        }
    }
}

fn frame_layer(d: &MediaData) -> usize {
    // Layer by size: q 300, h 1500, f 5000 bytes.
    match d.data.len() {
        0..=1_000 => 0,
        1_001..=3_000 => 1,
        _ => 2,
    }
}

#[test]
fn a_viewer_receives_audio_and_video_from_a_publisher() {
    let mut w = World::new();
    let p = w.publisher(1, false, Codec::Vp8);
    let v = w.viewer(2, 1);
    w.run(Duration::from_secs(2));
    let viewer = w.client(v);
    let audio = viewer
        .media()
        .filter(|d| d.params.spec().codec == Codec::Opus)
        .count();
    let video = viewer.video_frames();
    assert!(audio > 50, "audio frames: {audio}");
    assert!(video.len() > 30, "video frames: {}", video.len());
    assert!(video[0].1.is_keyframe(), "video starts on a keyframe");
    assert!(video.iter().all(|(_, d)| d.contiguous));
    let tracks = w
        .sfu_events
        .iter()
        .filter(|e| {
            matches!(e, MediaEvent::Track { viewer, publisher, .. }
            if *viewer == ParticipantId(2) && *publisher == ParticipantId(1))
        })
        .count();
    assert_eq!(tracks, 2, "audio and video placed in the viewer's m-lines");
    assert!(w.client(p).rtc.is_connected());
    let stats = w.sfu.stats();
    assert_eq!((stats.publishers, stats.viewers, stats.feeds), (1, 1, 2));
    assert!(stats.frames_forwarded > 80);
}

#[test]
fn h264_is_forwarded_too() {
    let mut w = World::new();
    w.publisher(1, false, Codec::H264);
    // This viewer offers VP8 and H.264.
    let mut rtc = Rtc::builder()
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .enable_h264(true)
        .build(w.now);
    let (v, _) = {
        let _ = &mut rtc;
        w.add_client(2, rtc, PeerRole::View, false)
    };
    w.run(Duration::from_secs(2));
    let video = w.client(v).video_frames();
    assert!(video.len() > 30, "{}", video.len());
    assert!(
        video
            .iter()
            .all(|(_, d)| d.params.spec().codec == Codec::H264)
    );
    assert!(video[0].1.is_keyframe());
}

#[test]
fn a_late_viewer_sees_video_without_waiting_for_the_next_periodic_keyframe() {
    let mut w = World::new();
    let p = w.publisher(1, true, Codec::Vp8);
    w.clients[p].keyframe_every = 100_000; // effectively never on its own
    w.run(Duration::from_secs(3));
    let joined = w.now;
    let v = w.viewer(2, 1);
    w.run(Duration::from_secs(2));
    let video = w.client(v).video_frames();
    assert!(!video.is_empty(), "the viewer got no video");
    let first = video[0].0 - joined;
    assert!(
        first < Duration::from_millis(500),
        "first frame after {first:?}"
    );
    assert!(video[0].1.is_keyframe());
}

#[test]
fn a_viewer_never_receives_its_own_media_and_fills_slots_from_others() {
    let mut w = World::new();
    w.publisher(1, false, Codec::Vp8);
    w.publisher(2, false, Codec::Vp8);
    // Participant 1 also watches, with room for two.
    let v = w.viewer(1, 2);
    w.run(Duration::from_secs(2));
    let mids: std::collections::BTreeSet<Mid> = w
        .client(v)
        .video_frames()
        .iter()
        .map(|(_, d)| d.mid)
        .collect();
    assert_eq!(mids.len(), 1, "only participant 2's video");
    let placed: Vec<_> = w
        .sfu_events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Track {
                viewer, publisher, ..
            } if *viewer == ParticipantId(1) => Some(*publisher),
            _ => None,
        })
        .collect();
    assert!(placed.iter().all(|p| *p == ParticipantId(2)), "{placed:?}");
}

#[test]
fn simulcast_layer_follows_the_viewers_bandwidth_down_and_up() {
    layer_follows_bandwidth(Bwe::Feedback);
}

#[test]
fn simulcast_layer_follows_the_viewers_bandwidth_with_str0ms_gcc_too() {
    layer_follows_bandwidth(Bwe::Gcc);
}

fn layer_follows_bandwidth(bwe: Bwe) {
    let mut w = World::with_bwe(bwe);
    w.publisher(1, true, Codec::Vp8);
    let v = w.viewer(2, 1);
    w.run(Duration::from_secs(4));
    let last_layer = |w: &World| frame_layer(w.client(v).video_frames().last().unwrap().1);
    let est = |w: &World| w.viewer_peer().estimate_bps();
    assert_eq!(
        last_layer(&w),
        2,
        "plenty of bandwidth: the full layer ({:?})",
        est(&w)
    );

    // The viewer's link drops to 400 kbit/s.
    w.clients[v].down.rate_bps = Some(400_000);
    w.run(Duration::from_secs(8));
    assert_eq!(
        last_layer(&w),
        0,
        "after a drop to 400 kbit/s: the lowest layer"
    );
    let est = est(&w).unwrap();
    assert!(est < 600_000, "estimate {est}");
    let after_drop = w.client(v).video_frames().len();

    // Frames keep flowing at the low layer: no broken stream.
    w.run(Duration::from_secs(2));
    let frames = w.client(v).video_frames();
    assert!(
        frames.len() - after_drop > 40,
        "{}",
        frames.len() - after_drop
    );
    assert!(frames[after_drop..].iter().all(|(_, d)| d.contiguous));
}

#[test]
fn a_viewer_starting_low_climbs_to_the_full_layer_on_its_own_feedback() {
    // 500 kbit/s fits only the lowest layer; the full one needs ~1.8 Mbit/s. Only the
    // viewer's real TWCC reports (str0m's peer stats) can raise the estimate.
    let mut w = World::with_estimate(Bwe::Feedback, 500_000);
    w.publisher(1, true, Codec::Vp8);
    let v = w.viewer(2, 1);
    w.run(Duration::from_millis(1500));
    let layer = |w: &World| frame_layer(w.client(v).video_frames().last().unwrap().1);
    assert!(layer(&w) < 2, "starts below the full layer");
    w.run(Duration::from_secs(8));
    let est = w.viewer_peer().estimate_bps().unwrap();
    assert_eq!(layer(&w), 2, "climbed to the full layer (estimate {est})");
    assert!(
        w.client(v).video_frames().iter().all(|(_, d)| d.contiguous),
        "no broken frames on the way up"
    );
}

#[test]
fn a_new_viewer_starts_at_the_layer_its_tile_and_first_estimate_allow() {
    // Layers measured first: the publisher has been sending for a while.
    let first_layer = |initial_bps: u64, tile: Option<(u32, u32)>| {
        let mut w = World::with_estimate(Bwe::Feedback, initial_bps);
        let p = w.publisher(1, true, Codec::Vp8);
        w.clients[p].keyframe_every = 100_000; // only keyframes asked for
        w.run(Duration::from_secs(3));
        let v = w.viewer(2, 1);
        if let Some((width, height)) = tile {
            // The page reports the tile's size as soon as the slot exists, before video.
            while w.sfu.peers().all(|p| p.slots.len() < 2) {
                w.step();
            }
            let mid = w.viewer_video_mid();
            w.sfu.set_view(w.now, ParticipantId(2), &mid, width, height);
        }
        w.run(Duration::from_millis(700));
        let frames = w.client(v).video_frames();
        assert!(
            !frames.is_empty(),
            "no video within 700 ms ({initial_bps}, {tile:?})"
        );
        assert!(frames[0].1.is_keyframe());
        frame_layer(frames[0].1)
    };
    // 3 Mbit/s: the full layer (~1.2 Mbit/s) fits a large tile from the first frame.
    assert_eq!(first_layer(3_000_000, None), 2);
    // 1.5 Mbit/s (the default): 80 % of it does not carry the full layer, the middle one fits.
    assert_eq!(first_layer(1_500_000, None), 1);
    // 300 kbit/s: only the lowest.
    assert_eq!(first_layer(300_000, None), 0);
    // A small tile starts small whatever the estimate.
    assert_eq!(first_layer(3_000_000, Some((320, 180))), 0);
    assert_eq!(first_layer(3_000_000, Some((640, 360))), 1);
}

#[test]
fn a_small_tile_gets_the_small_layer() {
    let mut w = World::new();
    w.publisher(1, true, Codec::Vp8);
    let v = w.viewer(2, 1);
    w.run(Duration::from_secs(3));
    let mid = w.viewer_video_mid();
    w.sfu.set_view(w.now, ParticipantId(2), &mid, 320, 180);
    w.run(Duration::from_secs(1));
    let frames = w.client(v).video_frames();
    assert_eq!(frame_layer(frames.last().unwrap().1), 0);
    assert!(frames.iter().all(|(_, d)| d.contiguous));
    // RTP time keeps running forward across the switch.
    let times: Vec<u64> = frames.iter().map(|(_, d)| d.time.numer()).collect();
    assert!(times.windows(2).all(|w| w[1] > w[0]), "time went backwards");
}

#[test]
fn keyframe_requests_from_a_crowd_are_throttled() {
    let mut w = World::new();
    let p = w.publisher(1, false, Codec::Vp8);
    w.clients[p].keyframe_every = 100_000;
    w.run(Duration::from_secs(1));
    let before = w.client(p).keyframe_requests();
    for i in 0..20 {
        w.viewer(10 + i, 1);
    }
    w.run(Duration::from_millis(400));
    let requests = w.client(p).keyframe_requests() - before;
    assert!(
        (1..=2).contains(&requests),
        "{requests} requests for 20 joining viewers"
    );
    // Everyone still got video.
    for i in 1..=20 {
        assert!(!w.client(i).video_frames().is_empty(), "viewer {i}");
    }
}

/// What each viewer of a room got: (video frames, audio frames, video frames not contiguous).
fn what_viewers_got(threads: usize) -> (Vec<(usize, usize, usize)>, MediaStats) {
    let mut w = World::with_threads(threads);
    w.publisher(1, true, Codec::Vp8);
    w.publisher(2, false, Codec::Vp8);
    let viewers: Vec<usize> = (0..16).map(|i| w.viewer(10 + i, 2)).collect();
    w.run(Duration::from_secs(1));
    // One viewer loses every 20th packet: NACK and RTX repair it on whichever thread drives it.
    w.clients[viewers[5]].down.drop_every = Some(20);
    w.run(Duration::from_secs(3));
    let got = viewers
        .iter()
        .map(|&v| {
            let c = w.client(v);
            let video = c.video_frames();
            let audio = c
                .media()
                .filter(|d| d.params.spec().codec == Codec::Opus)
                .count();
            let broken = video.iter().filter(|(_, d)| !d.contiguous).count();
            (video.len(), audio, broken)
        })
        .collect();
    (got, w.sfu.stats())
}

#[test]
fn a_room_driven_on_three_threads_serves_every_viewer_as_one_thread_does() {
    let (one, one_stats) = what_viewers_got(1);
    let (three, three_stats) = what_viewers_got(3);
    assert_eq!((one_stats.threads, one_stats.spread_drives), (1, 0));
    assert_eq!(three_stats.threads, 3);
    // Most wake-ups forward to all 16 viewers: spread over the threads.
    assert!(three_stats.spread_drives > 300, "{three_stats:?}");
    for (i, (a, b)) in one.iter().zip(&three).enumerate() {
        // Two publishers' video (30 fps each) for 4 s, less the first keyframe's wait.
        assert!(b.0 > 200, "viewer {i}: {b:?} video frames on three threads");
        assert!(b.1 > 150, "viewer {i}: {b:?} audio frames on three threads");
        assert!(
            a.0.abs_diff(b.0) <= 4,
            "viewer {i}: one thread {a:?}, three {b:?}"
        );
        assert!(
            a.1.abs_diff(b.1) <= 4,
            "viewer {i}: one thread {a:?}, three {b:?}"
        );
        assert!(
            b.2 * 20 < b.0,
            "viewer {i}: {} broken frames of {}",
            b.2,
            b.0
        );
    }
    assert!(three_stats.nacks_received > 0, "the lossy viewer NACKed");
    let forwarded = (one_stats.packets_forwarded, three_stats.packets_forwarded);
    assert!(
        forwarded.0.abs_diff(forwarded.1) * 100 < forwarded.0,
        "{forwarded:?}"
    );
}

#[test]
fn lost_packets_are_repaired_by_nack_and_rtx() {
    let mut w = World::new();
    w.publisher(1, false, Codec::Vp8);
    let v = w.viewer(2, 1);
    w.run(Duration::from_secs(1));
    w.clients[v].down.drop_every = Some(25); // 4% loss towards the viewer
    w.run(Duration::from_secs(4));
    let frames = w.client(v).video_frames();
    let broken = frames.iter().filter(|(_, d)| !d.contiguous).count();
    assert!(frames.len() > 100);
    assert!(
        broken * 20 < frames.len(),
        "{broken} of {} frames broken",
        frames.len()
    );
    assert!(w.sfu.stats().nacks_received > 0, "the viewer NACKed");
}

#[test]
fn loss_nack_cannot_repair_gets_the_viewers_layer_a_keyframe() {
    let mut w = World::new();
    let p = w.publisher(1, true, Codec::Vp8);
    w.clients[p].keyframe_every = 100_000; // only keyframes asked for
    let v = w.viewer(2, 1);
    w.run(Duration::from_secs(2));
    let mid = w.viewer_video_mid();
    // A small tile: the viewer is on the lowest layer only.
    w.sfu.set_view(w.now, ParticipantId(2), &mid, 320, 180);
    w.run(Duration::from_secs(2));
    assert_eq!(frame_layer(w.client(v).video_frames().last().unwrap().1), 0);
    let asked = |w: &World, layer: usize| {
        let rid: Rid = LAYERS[layer].0.into();
        w.client(p)
            .events
            .iter()
            .filter(|(_, e)| matches!(e, Event::KeyframeRequest(k) if k.rid == Some(rid)))
            .count()
    };
    let before: Vec<usize> = (0..3).map(|l| asked(&w, l)).collect();
    let seen = w.client(v).video_frames().len();

    // 100 ms of the publisher's packets are lost on the way in, on every layer, and NACK
    // finds nothing to resend.
    w.stop_retransmissions(p);
    let lost_at = w.now;
    w.clients[p].up_lost_until = w.now + Duration::from_millis(100);
    w.run(Duration::from_secs(2));

    let frames = w.client(v).video_frames();
    let key = frames[seen..]
        .iter()
        .find(|(_, d)| d.is_keyframe())
        .map(|(t, _)| *t - lost_at);
    assert!(
        key.is_some_and(|k| k < Duration::from_millis(1_000)),
        "a keyframe repairs the viewer's video after the loss: {key:?}"
    );
    assert_eq!(
        asked(&w, 0) - before[0],
        1,
        "one request for the lowest layer"
    );
    assert_eq!(
        (asked(&w, 1), asked(&w, 2)),
        (before[1], before[2]),
        "nobody is on the other layers: no keyframes asked there"
    );
    assert!(
        frames.last().unwrap().0 > w.now - Duration::from_millis(100),
        "video flows again"
    );
}

#[test]
fn stopping_a_publisher_ends_its_tracks_for_everyone_at_once() {
    let mut w = World::new();
    w.publisher(1, true, Codec::Vp8);
    let a = w.viewer(2, 1);
    let b = w.viewer(3, 1);
    w.run(Duration::from_secs(2));
    w.sfu_events.clear();
    w.sfu.stop_publishing(w.now, ParticipantId(1));
    while let Some(e) = w.sfu.poll_event() {
        w.sfu_events.push(e);
    }
    let ended: Vec<_> = w
        .sfu_events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::TrackEnded { viewer, .. } => Some(*viewer),
            _ => None,
        })
        .collect();
    assert_eq!(
        ended.len(),
        4,
        "audio and video for both viewers: {ended:?}"
    );
    let counts = (w.client(a).media().count(), w.client(b).media().count());
    w.run(Duration::from_secs(1));
    assert_eq!(
        (w.client(a).media().count(), w.client(b).media().count()),
        counts
    );
    assert_eq!(w.sfu.stats().publishers, 0);
}

#[test]
fn a_closed_gate_sends_nothing_and_opening_it_starts_on_a_keyframe() {
    let mut w = World::new();
    let p = w.publisher(1, false, Codec::Vp8);
    w.clients[p].keyframe_every = 100_000;
    let v = w.viewer(2, 1);
    w.sfu.set_receives(w.now, ParticipantId(2), false);
    w.run(Duration::from_secs(2));
    assert_eq!(w.client(v).media().count(), 0);
    let opened = w.now;
    w.sfu.set_receives(w.now, ParticipantId(2), true);
    w.run(Duration::from_secs(1));
    let video = w.client(v).video_frames();
    assert!(!video.is_empty());
    assert!(video[0].1.is_keyframe());
    assert!(
        video[0].0 - opened < Duration::from_millis(300),
        "{:?}",
        video[0].0 - opened
    );
}

#[test]
fn a_peer_that_goes_silent_is_closed_and_its_tracks_end() {
    let mut w = World::new();
    let p = w.publisher(1, false, Codec::Vp8);
    w.viewer(2, 1);
    w.run(Duration::from_secs(2));
    // The publisher's network vanishes: nothing reaches the SFU any more.
    let gone = w.clients.remove(p);
    let silent_from = w.now;
    w.run(Duration::from_secs(16));
    let closed_at = w.sfu_events.iter().position(
        |e| matches!(e, MediaEvent::Closed { participant, .. } if *participant == gone.participant),
    );
    assert!(closed_at.is_some(), "the silent publisher was closed");
    assert!(w.sfu_events.iter().any(
        |e| matches!(e, MediaEvent::TrackEnded { viewer, .. } if *viewer == ParticipantId(2))
    ));
    assert!(w.now - silent_from >= Duration::from_secs(15));
    assert_eq!(w.sfu.stats().publishers, 0);
}

#[test]
fn a_viewer_that_closes_is_reported_and_forgotten() {
    let mut w = World::new();
    w.publisher(1, false, Codec::Vp8);
    let v = w.viewer(2, 1);
    w.run(Duration::from_secs(1));
    w.clients[v].rtc.disconnect();
    w.run(Duration::from_secs(1));
    w.sfu.close_participant(w.now, ParticipantId(2));
    while let Some(e) = w.sfu.poll_event() {
        w.sfu_events.push(e);
    }
    assert!(w.sfu_events.iter().any(|e| matches!(e, MediaEvent::Closed { participant, role: PeerRole::View, .. } if *participant == ParticipantId(2))));
    assert_eq!(w.sfu.stats().viewers, 0);
    let _ = w.client(v).participant;
}

#[test]
fn a_relay_gets_every_layer_pinned_in_its_own_slot_and_keyframes_per_layer() {
    let mut w = World::new();
    let p = w.publisher(1, true, Codec::Vp8);
    w.clients[p].keyframe_every = 100_000;
    let r = w.receiver(2, 4, PeerRole::Relay);
    w.run(Duration::from_secs(3));
    let placed: Vec<(Mid, MediaKind, Option<Option<Rid>>)> = w
        .sfu_events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Track {
                viewer,
                mid,
                kind,
                rid,
                ..
            } if *viewer == ParticipantId(2) => Some((*mid, *kind, *rid)),
            _ => None,
        })
        .collect();
    let video: Vec<_> = placed
        .iter()
        .filter(|(_, k, _)| *k == MediaKind::Video)
        .collect();
    let rids: Vec<_> = video.iter().map(|(_, _, r)| *r).collect();
    let want: Vec<Option<Option<Rid>>> = LAYERS
        .iter()
        .map(|(r, _)| Some(Some((*r).into())))
        .collect();
    assert_eq!(rids, want, "one slot per layer, lowest first");
    let audio: Vec<_> = placed
        .iter()
        .filter(|(_, k, _)| *k == MediaKind::Audio)
        .collect();
    assert_eq!(audio.len(), 1, "audio once: {placed:?}");
    assert_eq!(audio[0].2, Some(None));

    // Each slot carries its own layer only, from a keyframe on: no switching towards a relay.
    let relay = w.client(r);
    for (layer, (mid, _, _)) in video.iter().enumerate() {
        let frames: Vec<_> = relay
            .video_frames()
            .into_iter()
            .filter(|(_, d)| d.mid == *mid)
            .collect();
        assert!(frames.len() > 60, "layer {layer}: {} frames", frames.len());
        assert!(
            frames[0].1.is_keyframe(),
            "layer {layer} starts on a keyframe"
        );
        assert!(
            frames.iter().all(|(_, d)| frame_layer(d) == layer),
            "slot {layer} stays on its layer"
        );
    }

    // A PLI on the relay's top slot is a (throttled) keyframe request for that layer only.
    let top: Rid = LAYERS[2].0.into();
    let asked = |w: &World, rid: Rid| {
        w.client(p)
            .events
            .iter()
            .filter(|(_, e)| matches!(e, Event::KeyframeRequest(k) if k.rid == Some(rid)))
            .count()
    };
    let (top_before, low_before) = (asked(&w, top), asked(&w, LAYERS[0].0.into()));
    for _ in 0..5 {
        w.clients[r]
            .rtc
            .writer(video[2].0)
            .unwrap()
            .request_keyframe(None, KeyframeRequestKind::Pli)
            .unwrap();
        w.run(Duration::from_millis(20));
    }
    w.run(Duration::from_millis(100));
    assert_eq!(asked(&w, top) - top_before, 1, "five PLIs, one request");
    assert_eq!(asked(&w, LAYERS[0].0.into()), low_before);
}

/// A relay: its own [`Media`] with an upstream peer to the World's SFU (the origin) and one
/// local viewer, all in memory on the World's clock.
struct RelayHop {
    addr: SocketAddr,
    media: Media,
    upstream: PeerId,
    viewer: Rtc,
    viewer_addr: SocketAddr,
    viewer_timeout: Instant,
    viewer_events: Vec<Event>,
    seen_origin_events: usize,
    local_events: Vec<MediaEvent>,
}

impl RelayHop {
    fn new(w: &mut World, relay_participant: u64) -> RelayHop {
        let addr: SocketAddr = (Ipv4Addr::new(10, 0, 0, 2), 5000).into();
        let mut media = Media::new(MediaConfig {
            initial_estimate_bps: 3_000_000,
            ..MediaConfig::new(addr)
        });
        let relay_id = ParticipantId(relay_participant);
        let (upstream, offer) = media.add_upstream(w.now, relay_id, 2, 6).unwrap();
        let (_, answer) = w
            .sfu
            .add_peer(w.now, relay_id, PeerRole::Relay, &offer)
            .unwrap();
        media
            .accept_upstream_answer(w.now, upstream, &answer)
            .unwrap();
        let viewer_addr: SocketAddr = (Ipv4Addr::new(10, 2, 0, 1), 40000).into();
        let mut viewer = w.client_rtc(Codec::Vp8);
        viewer.add_local_candidate(Candidate::host(viewer_addr, "udp").unwrap());
        SLOTS.with(|s| s.set(1));
        let (offer, pending, _) = build_offer(&mut viewer, PeerRole::View, false);
        let (_, answer) = media
            .add_peer(
                w.now,
                ParticipantId(99),
                PeerRole::View,
                &offer.to_sdp_string(),
            )
            .unwrap();
        viewer
            .sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
            .unwrap();
        RelayHop {
            addr,
            media,
            upstream,
            viewer,
            viewer_addr,
            viewer_timeout: w.now,
            viewer_events: Vec::new(),
            seen_origin_events: 0,
            local_events: Vec::new(),
        }
    }

    /// One tick of the World, then of the relay and its viewer; the origin's `track`
    /// events for the relay are what the relay's events socket would carry.
    fn step(&mut self, w: &mut World, relay_participant: ParticipantId) {
        w.step();
        let now = w.now;
        for e in &w.sfu_events[self.seen_origin_events..] {
            if let MediaEvent::Track {
                viewer,
                mid,
                publisher,
                kind,
                source,
                rid: Some(rid),
            } = e
                && *viewer == relay_participant
            {
                let placed = OriginTrack {
                    slot: *mid,
                    publisher: *publisher,
                    source: *source,
                    kind: *kind,
                    rid: *rid,
                };
                self.media.upstream_track(now, self.upstream, placed);
            }
        }
        self.seen_origin_events = w.sfu_events.len();
        for (dst, bytes) in std::mem::take(&mut w.elsewhere) {
            if dst == self.addr {
                self.media
                    .handle_receive(now, Protocol::Udp, w.sfu.config().advertise, &bytes);
            }
        }
        if self.media.poll_timeout().is_some_and(|t| t <= now) {
            self.media.handle_timeout(now);
        }
        if self.viewer_timeout <= now {
            self.viewer.handle_input(Input::Timeout(now)).unwrap();
        }
        loop {
            let mut moved = false;
            while let Some(t) = self.media.poll_transmit() {
                moved = true;
                if t.destination == self.viewer_addr {
                    let bytes = t.contents.to_vec();
                    let input = Input::Receive(
                        now,
                        Receive {
                            proto: Protocol::Udp,
                            source: self.addr,
                            destination: self.viewer_addr,
                            contents: bytes.as_slice().try_into().unwrap(),
                        },
                    );
                    self.viewer.handle_input(input).unwrap();
                } else {
                    w.to_sfu.push((self.addr, t.contents.to_vec()));
                }
            }
            loop {
                match self.viewer.poll_output().unwrap() {
                    Output::Timeout(t) => {
                        self.viewer_timeout = t.max(now + TICK);
                        break;
                    }
                    Output::Transmit(t) => {
                        moved = true;
                        self.media.handle_receive(
                            now,
                            Protocol::Udp,
                            self.viewer_addr,
                            &t.contents,
                        );
                    }
                    Output::Event(e) => self.viewer_events.push(e),
                }
            }
            if !moved {
                break;
            }
        }
        while let Some(e) = self.media.poll_event() {
            self.local_events.push(e);
        }
    }
}

#[test]
fn a_relays_viewer_is_served_from_virtual_tracks_fed_by_the_origin() {
    let mut w = World::new();
    let p = w.publisher(1, true, Codec::Vp8);
    w.clients[p].keyframe_every = 100_000;
    let mut hop = RelayHop::new(&mut w, 2);
    let end = w.now + Duration::from_secs(4);
    while w.now < end {
        hop.step(&mut w, ParticipantId(2));
    }
    // The viewer was told the origin's publisher, as at the origin.
    let placed: Vec<_> = hop
        .local_events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Track {
                publisher,
                kind,
                rid,
                ..
            } => Some((*publisher, *kind, *rid)),
            _ => None,
        })
        .collect();
    assert!(
        placed.contains(&(ParticipantId(1), MediaKind::Video, None)),
        "{placed:?}"
    );
    assert!(
        placed.contains(&(ParticipantId(1), MediaKind::Audio, None)),
        "{placed:?}"
    );
    let video: Vec<&MediaData> = hop
        .viewer_events
        .iter()
        .filter_map(|e| match e {
            Event::MediaData(d) if d.params.spec().codec.is_video() => Some(d),
            _ => None,
        })
        .collect();
    assert!(
        video.len() > 60,
        "{} video frames through the relay",
        video.len()
    );
    assert!(video[0].is_keyframe(), "starts on a keyframe");
    assert_eq!(frame_layer(video[0]), 0, "starts on the lowest layer");
    assert_eq!(
        frame_layer(video.last().unwrap()),
        2,
        "switched up once bitrates were measured"
    );
    // The origin feeds the relay one copy of each layer and the relay's viewer from that.
    let stats = hop.media.stats();
    assert_eq!((stats.tracks_in, stats.viewers), (2, 1));
}

#[test]
fn a_panic_in_str0ms_negotiation_refuses_the_offer_and_the_room_goes_on() {
    let mut w = World::new();
    w.publisher(1, false, Codec::Vp8);
    let v = w.viewer(2, 1);
    w.run(Duration::from_secs(1));
    // Straight to str0m, past `offer::check`: str0m 0.25 asserts on this offer.
    let offer =
        SdpOffer::from_sdp_string(&offer::tests::two_formats_on_one_payload_type()).unwrap();
    let mut rtc = peer_config().set_ice_lite(true).build(w.now);
    let refused = lifecycle::accept_offer(&mut rtc, offer).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "SDP: the SDP offer could not be negotiated"
    );
    let before = w.client(v).video_frames().len();
    w.run(Duration::from_secs(1));
    assert!(
        w.client(v).video_frames().len() > before + 20,
        "the viewer still gets video"
    );
}
