//! Who a participant is: the name label and grants carried by their join token.

use serde::{Deserialize, Serialize};

/// The name label a joiner chose (PRODUCT.md §5).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub headline: String,
    /// Image URL for the name label.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    /// Background colour of the name label, e.g. `#1e88e5`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub color: String,
}

/// What the token holder may do in this room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    /// May enter and watch.
    #[serde(default)]
    pub watch: bool,
    /// Listed to share: goes on camera without asking (invite-only, webinar panelists).
    #[serde(default)]
    pub share: bool,
    /// Sees share requests; lets people on camera and removes them.
    #[serde(default)]
    pub moderate: bool,
    /// Owns the room: admits joiners of a locked room, presents in a webinar,
    /// broadcasts a stage; implies `moderate`.
    #[serde(default)]
    pub host: bool,
    /// A recorder: receives all media, is not counted and never shown.
    #[serde(default)]
    pub recorder: bool,
    /// A relay sfu-node serving watchers of this room: receives every layer of every track,
    /// is not counted, not capped and never shown.
    #[serde(default)]
    pub relay: bool,
}

impl Grants {
    pub fn moderates(&self) -> bool {
        self.moderate || self.host
    }

    /// Any grant that lets the holder in at all.
    pub fn enters(&self) -> bool {
        self.watch || self.share || self.moderate || self.host || self.hidden()
    }

    /// A machine participant (recorder or relay): not counted, not capped, not an attendee,
    /// never in a lobby, never on camera unless also listed to share.
    pub fn hidden(&self) -> bool {
        self.recorder || self.relay
    }
}

/// A verified joiner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Stable user or guest id from the token's `sub`.
    pub user: String,
    pub profile: Profile,
    pub grants: Grants,
    /// In a stage room: this joiner is in the private backstage rather than the audience.
    #[serde(default)]
    pub backstage: bool,
}

impl Identity {
    /// A guest watcher, handy for tests and the local mode.
    pub fn watcher(user: &str, name: &str) -> Self {
        Identity {
            user: user.to_string(),
            profile: Profile {
                name: name.to_string(),
                ..Profile::default()
            },
            grants: Grants {
                watch: true,
                ..Grants::default()
            },
            backstage: false,
        }
    }

    pub fn with_grants(mut self, f: impl FnOnce(&mut Grants)) -> Self {
        f(&mut self.grants);
        self
    }

    pub fn in_backstage(mut self) -> Self {
        self.backstage = true;
        self
    }
}
