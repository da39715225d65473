//! Prometheus metrics of one room, refreshed from its [`RoomStatus`] at scrape time.

use prometheus::{
    Encoder, Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::room::RoomStatus;

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    participants: IntGauge,
    watching: IntGauge,
    on_camera: IntGauge,
    peers: IntGaugeVec,
    tracks: IntGauge,
    feeds: IntGauge,
    draining: IntGauge,
    relay: IntGauge,
    relays_connected: IntGauge,
    packets_in: IntCounter,
    packets_out: IntCounter,
    bytes_in: IntCounter,
    bytes_out: IntCounter,
    frames_forwarded: IntCounter,
    nacks_received: IntCounter,
    nacks_sent: IntCounter,
    plis_sent: IntCounter,
    plis_received: IntCounter,
    loss: Gauge,
    tcp_open: IntGauge,
    tcp_accepted: IntCounter,
    tcp_refused: IntCounter,
    tcp_closed: IntCounterVec,
    tcp_bytes_in: IntCounter,
    tcp_bytes_out: IntCounter,
    tcp_dropped: IntCounter,
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

/// Move a counter up to a cumulative value read from the room.
fn catch_up(c: &IntCounter, total: u64) {
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
    }
}

impl Metrics {
    pub fn new(room: &str, kind: &str) -> Self {
        let registry = Registry::new_custom(
            None,
            Some(
                [
                    ("room".to_string(), room.to_string()),
                    ("kind".to_string(), kind.to_string()),
                ]
                .into(),
            ),
        )
        .expect("valid registry");
        let peers = IntGaugeVec::new(
            Opts::new("sfu_peers", "WebRTC peer connections by role"),
            &["role"],
        )
        .expect("valid metric");
        registry.register(Box::new(peers.clone())).expect("unique");
        let loss = Gauge::new(
            "sfu_ingress_loss_ratio",
            "Worst recent packet loss fraction on publishers' incoming media",
        )
        .expect("valid metric");
        registry.register(Box::new(loss.clone())).expect("unique");
        let tcp_closed = IntCounterVec::new(
            Opts::new(
                "sfu_tcp_connections_closed_total",
                "ICE-TCP connections the server closed, by reason (garbage, timeout, stalled)",
            ),
            &["reason"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(tcp_closed.clone()))
            .expect("unique");
        Metrics {
            tcp_open: gauge(
                &registry,
                "sfu_tcp_connections",
                "ICE-TCP connections open on the media port",
            ),
            tcp_accepted: counter(
                &registry,
                "sfu_tcp_connections_accepted_total",
                "ICE-TCP connections accepted",
            ),
            tcp_refused: counter(
                &registry,
                "sfu_tcp_connections_refused_total",
                "ICE-TCP connections closed at once: too many open",
            ),
            tcp_bytes_in: counter(
                &registry,
                "sfu_tcp_bytes_received_total",
                "Packet bytes received over ICE-TCP (also in sfu_bytes_received_total)",
            ),
            tcp_bytes_out: counter(
                &registry,
                "sfu_tcp_bytes_sent_total",
                "Framed bytes queued to ICE-TCP connections",
            ),
            tcp_dropped: counter(
                &registry,
                "sfu_tcp_packets_dropped_total",
                "Packets dropped for ICE-TCP readers too far behind",
            ),
            tcp_closed,
            participants: gauge(&registry, "sfu_participants", "Participants in the room"),
            watching: gauge(&registry, "sfu_watchers", "Participants watching"),
            on_camera: gauge(&registry, "sfu_on_camera", "Participants on camera"),
            tracks: gauge(&registry, "sfu_tracks", "Published tracks"),
            feeds: gauge(&registry, "sfu_feeds", "Tracks being forwarded to viewers"),
            draining: gauge(&registry, "sfu_draining", "1 while draining"),
            relay: gauge(
                &registry,
                "sfu_relay",
                "1 on a relay (serving the room's watchers from its origin)",
            ),
            relays_connected: gauge(
                &registry,
                "sfu_relays_connected",
                "Relays connected to this origin",
            ),
            packets_in: counter(
                &registry,
                "sfu_packets_received_total",
                "Media packets received (UDP datagrams and ICE-TCP packets)",
            ),
            packets_out: counter(
                &registry,
                "sfu_packets_sent_total",
                "Media packets sent (UDP and ICE-TCP)",
            ),
            bytes_in: counter(
                &registry,
                "sfu_bytes_received_total",
                "Media bytes received (UDP and ICE-TCP)",
            ),
            bytes_out: counter(
                &registry,
                "sfu_bytes_sent_total",
                "Media bytes sent (UDP and ICE-TCP)",
            ),
            frames_forwarded: counter(
                &registry,
                "sfu_frames_forwarded_total",
                "Media frames written to viewers",
            ),
            nacks_received: counter(&registry, "sfu_nacks_received_total", "NACKs from viewers"),
            nacks_sent: counter(
                &registry,
                "sfu_nacks_sent_total",
                "NACKs sent to publishers",
            ),
            plis_sent: counter(
                &registry,
                "sfu_plis_sent_total",
                "Keyframe requests sent to publishers",
            ),
            plis_received: counter(
                &registry,
                "sfu_plis_received_total",
                "Keyframe requests from viewers",
            ),
            peers,
            loss,
            registry,
        }
    }

    /// Refresh from the room and render the text exposition format.
    pub fn render(&self, status: &RoomStatus) -> String {
        let m = &status.media;
        self.participants.set(i64::from(status.participants));
        self.watching.set(i64::from(status.counts.watching));
        self.on_camera.set(i64::from(status.counts.on_camera));
        self.peers
            .with_label_values(&["publish"])
            .set(m.publishers as i64);
        self.peers
            .with_label_values(&["view"])
            .set(m.viewers as i64);
        self.tracks.set(m.tracks_in as i64);
        self.feeds.set(m.feeds as i64);
        self.draining.set(i64::from(status.draining));
        self.relay.set(i64::from(status.relay));
        self.relays_connected
            .set(i64::from(status.relays_connected));
        catch_up(&self.packets_in, m.packets_in);
        catch_up(&self.packets_out, m.packets_out);
        catch_up(&self.bytes_in, m.bytes_in);
        catch_up(&self.bytes_out, m.bytes_out);
        catch_up(&self.frames_forwarded, m.frames_forwarded);
        catch_up(&self.nacks_received, m.nacks_received);
        catch_up(&self.nacks_sent, m.nacks_sent);
        catch_up(&self.plis_sent, m.plis_sent);
        catch_up(&self.plis_received, m.plis_received);
        self.loss.set(f64::from(m.ingress_loss));
        let t = &status.tcp;
        self.tcp_open.set(t.open as i64);
        catch_up(&self.tcp_accepted, t.accepted);
        catch_up(&self.tcp_refused, t.refused);
        catch_up(&self.tcp_bytes_in, t.bytes_in);
        catch_up(&self.tcp_bytes_out, t.bytes_out);
        catch_up(&self.tcp_dropped, t.packets_dropped);
        for (reason, total) in [
            ("garbage", t.closed_garbage),
            ("timeout", t.closed_timed_out),
            ("stalled", t.closed_stalled),
        ] {
            catch_up(&self.tcp_closed.with_label_values(&[reason]), total);
        }
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding");
        String::from_utf8(out).expect("utf-8 exposition")
    }
}
