//! Problems with the objects a room refers to, from what the controller found of them.
//!
//! The controller looks the objects up (the LiveEvent in its cache, Secrets and claims with a
//! metadata read) and these functions say what a person must fix, and how much it stops the
//! room ([`Severity`]).

use jiff::Timestamp;

use super::decide::{Problem, Severity};

/// What a lookup of another object found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// It exists (and has the key asked for).
    Yes,
    /// It does not exist.
    Missing,
    /// It exists without the key asked for.
    MissingKey,
    /// It could not be read (no permission, API error): nothing is reported.
    Unknown,
}

/// The Secret whose key SFU pods verify join tokens with (set up by the chart or the platform
/// team): without it the kubelet cannot start the pod.
pub fn join_token(namespace: &str, secret: &str, key: &str, found: Found) -> Option<Problem> {
    let what = match found {
        Found::Yes | Found::Unknown => return None,
        Found::Missing => format!(
            "the Secret {secret} does not exist in namespace {}",
            namespace
        ),
        Found::MissingKey => format!(
            "the Secret {secret} in namespace {} has no key {key}",
            namespace
        ),
    };
    Some(Problem {
        reason: "JoinTokenSecretMissing",
        message: format!(
            "{what}; SFU pods verify join tokens with it. Install the chart in this namespace or create it: kubectl create secret generic {secret} -n {namespace} --from-literal={key}=<the control plane's join-token key>"
        ),
        severity: Severity::BlocksStart,
    })
}

/// A Room's passcode Secret: without it nobody can be let in, so the room does not start.
pub fn passcode(namespace: &str, secret: &str, key: &str, found: Found) -> Option<Problem> {
    let what = match found {
        Found::Yes | Found::Unknown => return None,
        Found::Missing => format!(
            "the passcode Secret {secret} does not exist in namespace {}",
            namespace
        ),
        Found::MissingKey => format!("the passcode Secret {secret} has no key {key}"),
    };
    Some(Problem {
        reason: "PasscodeSecretMissing",
        message: format!(
            "{what}; nobody can enter the passcode, so the room does not start until it exists"
        ),
        severity: Severity::BlocksStart,
    })
}

/// The PersistentVolumeClaim an event's recordings go to: without it the session runs but is
/// not recorded (no recorder Job is started that could only wait).
pub fn recording_claim(namespace: &str, claim: &str, found: Found) -> Option<Problem> {
    (found == Found::Missing).then(|| Problem {
        reason: "RecordingClaimNotFound",
        message: format!(
            "recording is on but the PersistentVolumeClaim {claim} (the event's recordingStorage) does not exist in namespace {}; the session runs unrecorded until it does",
            namespace
        ),
        severity: Severity::Warning,
    })
}

/// A session or stage scheduled outside its event's window runs on its own times, but that is
/// rarely meant: say so.
pub fn outside_event_window(
    start: Option<Timestamp>,
    end: Option<Timestamp>,
    event_name: &str,
    event_start: Timestamp,
    event_end: Timestamp,
) -> Option<Problem> {
    let message = if let Some(start) = start.filter(|s| *s < event_start) {
        format!("it starts at {start}, before LiveEvent {event_name} starts ({event_start})")
    } else if let Some(start) = start.filter(|s| *s >= event_end) {
        format!("it starts at {start}, after LiveEvent {event_name} ends ({event_end})")
    } else if let Some(end) = end.filter(|e| *e > event_end) {
        format!(
            "it ends at {end}, after LiveEvent {event_name} ends ({event_end}); it is ended with the event"
        )
    } else {
        return None;
    };
    Some(Problem {
        reason: "OutsideEventWindow",
        message,
        severity: Severity::Warning,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> &'static str {
        "team"
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_missing_join_token_secret_blocks_the_start_and_says_how_to_create_it() {
        let p = join_token(room(), "roundtable-join-token", "key", Found::Missing).unwrap();
        assert_eq!(p.severity, Severity::BlocksStart);
        assert!(
            p.message
                .contains("kubectl create secret generic roundtable-join-token -n team")
        );
        assert!(join_token(room(), "s", "key", Found::Unknown).is_none());
        assert!(join_token(room(), "s", "key", Found::Yes).is_none());
        let key = join_token(room(), "s", "key", Found::MissingKey).unwrap();
        assert!(key.message.contains("has no key key"), "{}", key.message);
    }

    #[test]
    fn a_missing_passcode_secret_keeps_the_room_closed() {
        let p = passcode(room(), "standup-pass", "code", Found::Missing).unwrap();
        assert_eq!(
            (p.reason, p.severity),
            ("PasscodeSecretMissing", Severity::BlocksStart)
        );
    }

    #[test]
    fn a_missing_recording_claim_is_a_warning_only() {
        let p = recording_claim(room(), "recordings", Found::Missing).unwrap();
        assert_eq!(p.severity, Severity::Warning);
        assert!(recording_claim(room(), "recordings", Found::Unknown).is_none());
    }

    #[test]
    fn sessions_outside_their_events_window_are_reported() {
        let (es, ee) = (t("2026-12-10T17:00:00Z"), t("2026-12-10T21:00:00Z"));
        let early = outside_event_window(Some(t("2026-12-10T16:00:00Z")), None, "gala", es, ee);
        assert!(
            early
                .unwrap()
                .message
                .contains("before LiveEvent gala starts")
        );
        let late = outside_event_window(Some(t("2026-12-11T16:00:00Z")), None, "gala", es, ee);
        assert!(late.unwrap().message.contains("after LiveEvent gala ends"));
        let long = outside_event_window(
            Some(t("2026-12-10T18:00:00Z")),
            Some(t("2026-12-10T22:00:00Z")),
            "gala",
            es,
            ee,
        );
        assert!(long.unwrap().message.contains("ends at"));
        let inside = outside_event_window(
            Some(t("2026-12-10T18:00:00Z")),
            Some(t("2026-12-10T19:00:00Z")),
            "gala",
            es,
            ee,
        );
        assert!(inside.is_none());
    }
}
