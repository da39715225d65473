//! The size limits of a live room, shared by the schema, the operator and the SFU.
//!
//! A session holds 1 to [`MAX_ON_CAMERA`] people on camera. Up to
//! [`SMALL_ROOM_ON_CAMERA`] on camera it may have [`SMALL_ROOM_WATCHERS`] watching; above that
//! every extra stream costs every watcher, so the cap drops to [`LARGE_ROOM_WATCHERS`].
//! A stage's backstage holds at most [`BACKSTAGE_SPEAKERS`] speakers, and screen sharing is
//! available only while fewer than that are on screen.

/// Most people on camera in one session or room.
pub const MAX_ON_CAMERA: i32 = 20;
/// The default number of people on camera.
pub const DEFAULT_ON_CAMERA: i32 = 10;
/// On-camera limits up to this keep the large watcher cap.
pub const SMALL_ROOM_ON_CAMERA: i32 = 10;
/// Watcher cap while at most [`SMALL_ROOM_ON_CAMERA`] may be on camera.
pub const SMALL_ROOM_WATCHERS: i32 = 500;
/// Watcher cap when more than [`SMALL_ROOM_ON_CAMERA`] may be on camera.
pub const LARGE_ROOM_WATCHERS: i32 = 150;
/// Most speakers on screen in a backstage.
pub const BACKSTAGE_SPEAKERS: i32 = 5;
/// Watchers of a backstage's preparation.
pub const BACKSTAGE_WATCHERS: i32 = 500;

/// The most watchers a room with `max_on_camera` people on camera may have.
pub fn watcher_cap(max_on_camera: i32) -> i32 {
    if max_on_camera <= SMALL_ROOM_ON_CAMERA {
        SMALL_ROOM_WATCHERS
    } else {
        LARGE_ROOM_WATCHERS
    }
}

/// The watcher limit in force: the one asked for, never above the cap.
pub fn effective_watchers(max_on_camera: i32, requested: Option<i32>) -> i32 {
    let cap = watcher_cap(max_on_camera);
    requested.map_or(cap, |w| w.clamp(0, cap))
}

/// Watchers one relay takes: as many as asked, never more than one pod may serve with
/// `max_on_camera` people on camera.
pub fn relay_watchers(max_on_camera: i32, watchers_per_relay: i32) -> i32 {
    watchers_per_relay.clamp(0, watcher_cap(max_on_camera))
}

/// The watcher cap of a room whose watchers relays serve: the sum of the relays' capacity.
pub fn relay_cap(max_on_camera: i32, max_relays: i32, watchers_per_relay: i32) -> i32 {
    max_relays
        .max(0)
        .saturating_mul(relay_watchers(max_on_camera, watchers_per_relay))
}

/// The watcher limit in force when relays may raise the cap (`relay_cap`, with autoscaling
/// on): the one asked for, never above the larger of the two caps. Unset, it stays the
/// single-pod cap.
pub fn effective_watchers_with_relays(
    max_on_camera: i32,
    requested: Option<i32>,
    relay_cap: Option<i32>,
) -> i32 {
    let cap = watcher_cap(max_on_camera);
    let most = relay_cap.map_or(cap, |relays| relays.max(cap));
    requested.map_or(cap, |w| w.clamp(0, most))
}

/// Whether a backstage with `speakers` on screen may start a screen share.
pub fn screen_share_allowed(speakers: i32) -> bool {
    speakers < BACKSTAGE_SPEAKERS
}

/// CEL: whether a spec has autoscaling on (then relays raise the watcher cap).
macro_rules! autoscaled {
    () => {
        "(has(self.autoscaling) && self.autoscaling.enabled)"
    };
}

/// The CEL expression for [`watcher_cap`], so the schema states the same rule.
macro_rules! watcher_cap_cel {
    () => {
        "self.maxWatchers <= (self.maxParticipants <= 10 ? 500 : 150)"
    };
}

/// [`watcher_cap`] as CEL on a spec with `maxParticipants` and `maxWatchers` (rooms).
pub(crate) const WATCHER_CAP_CEL: &str = concat!("!has(self.maxWatchers) || ", watcher_cap_cel!());

/// [`watcher_cap`] as CEL on a session's spec: it applies without autoscaling.
pub(crate) const SESSION_WATCHER_CAP_CEL: &str = concat!(
    "!has(self.maxWatchers) || ",
    autoscaled!(),
    " || ",
    watcher_cap_cel!()
);

/// The CEL expression for [`relay_cap`]: with autoscaling on, `maxWatchers` may reach the
/// relays' capacity.
pub(crate) const RELAY_CAP_CEL: &str = concat!(
    "!has(self.maxWatchers) || !",
    autoscaled!(),
    " || self.maxWatchers <= self.autoscaling.maxRelays * ",
    "(self.autoscaling.watchersPerRelay <= (self.maxParticipants <= 10 ? 500 : 150) ",
    "? self.autoscaling.watchersPerRelay : (self.maxParticipants <= 10 ? 500 : 150))"
);

/// The backstage's watcher cap as CEL on a Stage spec; it applies without autoscaling.
pub(crate) const BACKSTAGE_CAP_CEL: &str = concat!(
    "!has(self.backstage) || ",
    autoscaled!(),
    " || self.backstage.maxWatchers <= 500"
);

/// [`RELAY_CAP_CEL`] for a stage's backstage watchers.
pub(crate) const BACKSTAGE_RELAY_CAP_CEL: &str = concat!(
    "!has(self.backstage) || !",
    autoscaled!(),
    " || self.backstage.maxWatchers <= self.autoscaling.maxRelays * self.autoscaling.watchersPerRelay"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watcher_cap_drops_above_ten_on_camera() {
        assert_eq!(watcher_cap(1), 500);
        assert_eq!(watcher_cap(10), 500);
        assert_eq!(watcher_cap(11), 150);
        assert_eq!(watcher_cap(20), 150);
    }

    #[test]
    fn effective_watchers_never_exceeds_cap() {
        assert_eq!(effective_watchers(10, None), 500);
        assert_eq!(effective_watchers(15, None), 150);
        assert_eq!(effective_watchers(15, Some(100)), 100);
        assert_eq!(effective_watchers(15, Some(400)), 150);
    }

    #[test]
    fn relays_raise_the_cap_only_when_asked() {
        assert_eq!(relay_cap(10, 10, 500), 5_000);
        assert_eq!(
            relay_cap(20, 10, 500),
            1_500,
            "a relay serves 150 with 20 on camera"
        );
        assert_eq!(relay_watchers(20, 100), 100);
        assert_eq!(
            effective_watchers_with_relays(10, Some(4_000), Some(5_000)),
            4_000
        );
        assert_eq!(
            effective_watchers_with_relays(10, Some(9_000), Some(5_000)),
            5_000
        );
        assert_eq!(
            effective_watchers_with_relays(10, None, Some(5_000)),
            500,
            "unset: one pod"
        );
        assert_eq!(
            effective_watchers_with_relays(10, Some(4_000), None),
            500,
            "no autoscaling"
        );
        assert_eq!(
            effective_watchers_with_relays(10, Some(400), Some(100)),
            400,
            "the larger cap"
        );
    }

    #[test]
    fn screen_share_greyed_out_at_five_speakers() {
        assert!(screen_share_allowed(4));
        assert!(!screen_share_allowed(5));
    }

    #[test]
    fn cel_rule_states_the_same_numbers() {
        assert!(WATCHER_CAP_CEL.contains(&SMALL_ROOM_ON_CAMERA.to_string()));
        assert!(WATCHER_CAP_CEL.contains(&SMALL_ROOM_WATCHERS.to_string()));
        assert!(WATCHER_CAP_CEL.contains(&LARGE_ROOM_WATCHERS.to_string()));
        assert!(BACKSTAGE_CAP_CEL.contains(&BACKSTAGE_WATCHERS.to_string()));
        assert!(RELAY_CAP_CEL.contains(&LARGE_ROOM_WATCHERS.to_string()));
    }
}
