//! The operator's settings, from flags or environment (see `main.rs`).

use std::ops::RangeInclusive;
use std::time::Duration;

use jiff::SignedDuration;

/// How the operator runs SFU pods.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorConfig {
    /// Container image of sfu-node.
    pub sfu_image: String,
    /// UDP hostPorts handed to SFU pods in HostPort mode.
    pub host_ports: RangeInclusive<u16>,
    /// How long before a session's start its SFU pod is started (warm).
    pub warm_up: SignedDuration,
    /// Grace period for a draining SFU pod: peers may stay this long after the end.
    pub drain_grace_seconds: i64,
    /// How often a live pod's `/stats` is read into the resource's status.
    pub stats_interval: Duration,
    /// Default idle time after which an empty room's pod is stopped.
    pub room_idle: SignedDuration,
    /// Name of the Secret (in each namespace) holding the join-token key, and its key.
    pub token_secret: String,
    pub token_secret_key: String,
    /// Port of sfu-node's admin server (`/metrics`, `/healthz`, `/readyz`, `/stats`).
    pub sfu_admin_port: u16,
    /// Container image of `roundtable-recorder`, run by sessions' recording Jobs.
    pub recorder_image: String,
    /// Port of the recorder's admin server (`/recordings`).
    pub recorder_admin_port: u16,
    /// SFU pods offer ICE over TCP (`SFU_ICE_TCP`) on their TCP port, which signalling shares:
    /// attendees whose networks drop UDP reach them without TURN.
    pub sfu_ice_tcp: bool,
    /// Most cores one SFU pod may be given (its room's peers are driven on as many threads):
    /// at most what one of the cluster's nodes can give a pod. Rooms needing more reach their
    /// full audience through relays.
    pub sfu_max_cores: u32,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        OperatorConfig {
            sfu_image: format!(
                "ghcr.io/roundtable-dev/sfu-node:{}",
                env!("CARGO_PKG_VERSION")
            ),
            host_ports: 31000..=31999,
            warm_up: SignedDuration::from_mins(5),
            drain_grace_seconds: 600,
            stats_interval: Duration::from_secs(5),
            room_idle: SignedDuration::from_mins(5),
            token_secret: "roundtable-join-token".into(),
            token_secret_key: "key".into(),
            sfu_admin_port: 9090,
            recorder_image: format!(
                "ghcr.io/roundtable-dev/roundtable-recorder:{}",
                env!("CARGO_PKG_VERSION")
            ),
            recorder_admin_port: 9091,
            sfu_ice_tcp: true,
            sfu_max_cores: 2,
        }
    }
}
