//! Attendance of a room over its life, for the event report (PRODUCT.md §2: after an event,
//! each session's peak watching, peak on camera and unique joiners).
//!
//! Recorders are not attendees: they never count. Someone who joins, leaves and comes back
//! (a reload, a second tab) is one joiner. A joiner waiting in a locked room's lobby counts
//! once a host lets them in.

use std::collections::HashSet;

use serde::Serialize;

use super::Counts;

/// What `/stats` reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Attendance {
    /// Distinct identities (token subjects) that were ever admitted.
    pub unique_joiners: u32,
    /// Most people watching at once.
    pub peak_watching: u32,
    /// Most people on camera at once.
    pub peak_on_camera: u32,
}

/// Who has been in the room, and the peaks so far.
#[derive(Debug, Clone, Default)]
pub struct AttendanceLog {
    users: HashSet<String>,
    totals: Attendance,
}

impl AttendanceLog {
    /// `user` was admitted into the room.
    pub fn admitted(&mut self, user: &str) {
        if !self.users.contains(user) {
            self.users.insert(user.to_string());
            self.totals.unique_joiners += 1;
        }
    }

    /// The live counts changed.
    pub fn observe(&mut self, counts: &Counts) {
        let t = &mut self.totals;
        t.peak_watching = t.peak_watching.max(counts.watching);
        t.peak_on_camera = t.peak_on_camera.max(counts.on_camera);
    }

    pub fn summary(&self) -> Attendance {
        self.totals
    }
}
