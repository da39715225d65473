//! What the room's media is configured with, and what every peer connection speaks.

use std::net::SocketAddr;
use std::sync::Once;
use std::time::Duration;

use str0m::Rtc;

#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// The address put in ICE host candidates: what peers send UDP to (a node's hostPort,
    /// a load balancer, or the socket's own address).
    pub advertise: SocketAddr,
    /// Whether answers also offer a passive ICE-TCP candidate at `advertise` (the shell then
    /// listens on TCP at the same port, see [`crate::ice_tcp`]).
    pub tcp: bool,
    /// Starting bandwidth estimate towards each viewer.
    pub initial_estimate_bps: u64,
    /// A peer that sends nothing for this long is gone (closed tab, lost network).
    pub peer_timeout: Duration,
    /// How each viewer's bandwidth is estimated.
    pub bwe: Bwe,
    /// Threads that drive the room's peers (encrypt and send what is forwarded to them, fire
    /// their timers); 1 drives them all on the room's own thread. See `drive`.
    pub threads: usize,
}

/// How a viewer's bandwidth estimate (which its video layers follow) is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Bwe {
    /// From the viewer's TWCC feedback: loss and queueing delay (see [`estimate`]); packets
    /// leave unpaced.
    #[default]
    Feedback,
    /// str0m's GCC estimator with probing and its leaky-bucket pacer: finer, but the pacer
    /// costs a full str0m timeout per packet.
    Gcc,
    /// None: layers follow only tile sizes (to measure what estimation costs).
    Off,
}

impl MediaConfig {
    pub fn new(advertise: SocketAddr) -> Self {
        MediaConfig {
            advertise,
            tcp: false,
            initial_estimate_bps: 1_500_000,
            peer_timeout: Duration::from_secs(15),
            bwe: Bwe::default(),
            threads: 1,
        }
    }
}

/// How often str0m reports a peer's stats (and a viewer's estimate follows its feedback).
const STATS_EVERY: Duration = Duration::from_millis(250);

/// What every peer of the room speaks: Opus, VP8 and H.264, stats every [`STATS_EVERY`].
/// RTP mode: media is forwarded packet by packet (see `forward`), never depacketized.
pub(super) fn peer_config() -> str0m::RtcConfig {
    Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .enable_h264(true)
        .set_stats_interval(Some(STATS_EVERY))
}

pub(super) fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| str0m::crypto::from_feature_flags().install_process_default());
}
