//! Who may see and join what: pure decisions from the resources' specs and the person asking.
//!
//! Nothing here does I/O or reads a clock; the handlers gather the facts (who is signed in,
//! their tickets, whether a passcode matched, whether an access link is valid) and ask.

use roundtable_crds::{LiveEvent, Room, RoomTheme, Session, SharePolicy, WatchPolicy};
use sfu_node::rules::Grants;

use super::identity::Person;

/// Why someone may not see or join something. Each has a code for clients and a sentence for
/// people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    SignInRequired,
    NoTicket,
    /// Ticket-only sessions are invisible to everyone else: reported as "not found".
    Hidden,
    NotOrganizer,
    NotHost,
    NotLive,
    Ended,
    CreationClosed,
    PasscodeRequired,
    WrongPasscode,
    DomainNotAllowed,
    AccessLinkRequired,
    LinkInvalid,
    BackstageKey,
    /// An attendee already has [`SessionLimits::per_creator`] sessions at this event.
    YourSessionLimit,
    /// Attendees already made [`SessionLimits::per_event`] sessions at this event.
    EventSessionLimit,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::SignInRequired => "sign_in_required",
            Refusal::NoTicket => "no_ticket",
            Refusal::Hidden => "not_found",
            Refusal::NotOrganizer => "not_organizer",
            Refusal::NotHost => "not_host",
            Refusal::NotLive => "not_live",
            Refusal::Ended => "ended",
            Refusal::CreationClosed => "not_allowed",
            Refusal::PasscodeRequired => "passcode_required",
            Refusal::WrongPasscode => "wrong_passcode",
            Refusal::DomainNotAllowed => "domain_not_allowed",
            Refusal::AccessLinkRequired => "access_link_required",
            Refusal::LinkInvalid => "link_invalid",
            Refusal::BackstageKey => "not_allowed",
            Refusal::YourSessionLimit | Refusal::EventSessionLimit => "session_limit",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::SignInRequired => "Sign in with the email address you registered with.",
            Refusal::NoTicket => "You need a ticket to this event to see it.",
            Refusal::Hidden => "There is no such session.",
            Refusal::NotOrganizer => "Only the event's organisers can do that.",
            Refusal::NotHost => "Only the room's hosts can do that.",
            Refusal::NotLive => "This has not started yet. The page will join when it does.",
            Refusal::Ended => "This has ended.",
            Refusal::CreationClosed => "This event does not let attendees create sessions.",
            Refusal::PasscodeRequired => "This room needs a passcode.",
            Refusal::WrongPasscode => "That passcode is not right.",
            Refusal::DomainNotAllowed => {
                "This room is only for some email domains, and yours is not one of them."
            }
            Refusal::AccessLinkRequired => {
                "This room is joined through a personal link: enter your email to get one."
            }
            Refusal::LinkInvalid => {
                "This access link has expired or was already used. Ask for a new one."
            }
            Refusal::BackstageKey => "This backstage link is not valid.",
            Refusal::YourSessionLimit => {
                "You have made as many sessions as this event allows. Delete one to make another."
            }
            Refusal::EventSessionLimit => {
                "Attendees have made as many sessions as this event allows. Ask an organiser."
            }
        }
    }
}

/// `namespace/name`: how tickets name the event they are for.
pub fn event_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

fn same_identity(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

fn listed(list: &[String], email: &str) -> bool {
    list.iter().any(|x| same_identity(x, email))
}

/// A person's standing at an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attendance {
    pub organizer: bool,
    /// Ticket types the person holds for this event.
    pub ticket_types: Vec<String>,
}

/// Whether `person` may see the event at all: organisers and ticket holders may.
pub fn attend(event: &LiveEvent, person: Option<&Person>) -> Result<Attendance, Refusal> {
    let person = person.ok_or(Refusal::SignInRequired)?;
    let key = event_key(
        event.metadata.namespace.as_deref().unwrap_or_default(),
        event.metadata.name.as_deref().unwrap_or_default(),
    );
    let organizer = listed(&event.spec.organizers, &person.email);
    let ticket_types: Vec<String> = person
        .tickets
        .iter()
        .filter(|t| t.event == key)
        .map(|t| t.ticket_type.clone())
        .collect();
    if !organizer && ticket_types.is_empty() {
        return Err(Refusal::NoTicket);
    }
    Ok(Attendance {
        organizer,
        ticket_types,
    })
}

/// Whether a session is listed for and joinable by someone with `attendance`.
pub fn session_visible(session: &Session, attendance: &Attendance) -> bool {
    match session.spec.watch.policy {
        WatchPolicy::AnyTicket => true,
        WatchPolicy::TicketTypes => {
            attendance.organizer
                || attendance
                    .ticket_types
                    .iter()
                    .any(|t| session.spec.watch.ticket_types.contains(t))
        }
    }
}

/// The grants a join token to a session carries for `email`.
pub fn session_grants(session: &Session, attendance: &Attendance, email: &str) -> Grants {
    let share = &session.spec.share;
    let moderator = attendance.organizer || listed(&share.moderators, email);
    let may_share = match share.policy {
        SharePolicy::Open => true,
        SharePolicy::Moderated => moderator,
        SharePolicy::InviteOnly => listed(&share.invitees, email),
    };
    Grants {
        watch: true,
        share: may_share,
        moderate: moderator,
        host: attendance.organizer,
        recorder: false,
        relay: false,
    }
}

/// The grants for a stage: the audience watches; in the backstage registered people must ask to
/// share and organisers run it.
pub fn stage_grants(attendance: &Attendance, backstage: bool) -> Grants {
    let organizer = attendance.organizer;
    Grants {
        watch: true,
        share: backstage && organizer,
        moderate: backstage && organizer,
        host: organizer,
        recorder: false,
        relay: false,
    }
}

/// Whether `person` may create a session at this event.
pub fn may_create_session(event: &LiveEvent, attendance: &Attendance) -> Result<(), Refusal> {
    if attendance.organizer || event.spec.attendees_may_create_sessions {
        Ok(())
    } else {
        Err(Refusal::CreationClosed)
    }
}

/// How many sessions attendees may make (organisers are not limited): each session is an SFU
/// pod in a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Sessions one attendee may have at one event.
    pub per_creator: usize,
    /// Sessions all attendees together may have at one event.
    pub per_event: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            per_creator: 3,
            per_event: 50,
        }
    }
}

/// Whether `email` may make one more session at `event`, whose sessions are `existing`.
pub fn session_quota<'a>(
    event: &LiveEvent,
    attendance: &Attendance,
    email: &str,
    existing: impl IntoIterator<Item = &'a Session>,
    limits: SessionLimits,
) -> Result<(), Refusal> {
    if attendance.organizer {
        return Ok(());
    }
    let by_attendees: Vec<&str> = existing
        .into_iter()
        .filter_map(|s| s.spec.created_by.as_deref())
        .filter(|creator| !listed(&event.spec.organizers, creator))
        .collect();
    if by_attendees
        .iter()
        .filter(|c| same_identity(c, email))
        .count()
        >= limits.per_creator
    {
        return Err(Refusal::YourSessionLimit);
    }
    if by_attendees.len() >= limits.per_event {
        return Err(Refusal::EventSessionLimit);
    }
    Ok(())
}

/// What a joiner brought to a room.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomAttempt {
    /// Signed-in email, if any.
    pub email: Option<String>,
    /// Whether a passcode was given and whether it matched the room's Secret.
    pub passcode: PasscodeCheck,
    /// The email a valid, unused access link was issued to.
    pub access_link_email: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PasscodeCheck {
    /// The room has no passcode.
    #[default]
    NotNeeded,
    Missing,
    Wrong,
    Right,
}

/// Whether someone may join a room, and with which grants. Hosts (signed in) pass every check.
pub fn room_grants(room: &Room, attempt: &RoomAttempt) -> Result<Grants, Refusal> {
    let host = attempt
        .email
        .as_deref()
        .is_some_and(|email| listed(&room.spec.hosts, email));
    if !host {
        match attempt.passcode {
            PasscodeCheck::Missing => return Err(Refusal::PasscodeRequired),
            PasscodeCheck::Wrong => return Err(Refusal::WrongPasscode),
            PasscodeCheck::NotNeeded | PasscodeCheck::Right => {}
        }
        if !room.spec.allowed_email_domains.is_empty() {
            match &attempt.access_link_email {
                Some(email) if domain_allowed(room, email) => {}
                Some(_) => return Err(Refusal::DomainNotAllowed),
                None => return Err(Refusal::AccessLinkRequired),
            }
        }
    }
    Ok(Grants {
        watch: true,
        share: host || room.spec.theme == RoomTheme::Meeting,
        moderate: host,
        host,
        recorder: false,
        relay: false,
    })
}

/// Whether an email address's domain is one a room allows (exact match, case-insensitive).
pub fn domain_allowed(room: &Room, email: &str) -> bool {
    let Some((_, domain)) = email.trim().rsplit_once('@') else {
        return false;
    };
    room.spec
        .allowed_email_domains
        .iter()
        .any(|d| d.trim_start_matches('@').eq_ignore_ascii_case(domain))
}

/// Whether `email` is one of a room's hosts.
pub fn is_host(room: &Room, email: Option<&str>) -> bool {
    email.is_some_and(|e| listed(&room.spec.hosts, e))
}

/// Whether `email` organises the stage's event.
pub fn organizes(event: &LiveEvent, email: &str) -> bool {
    listed(&event.spec.organizers, email)
}

/// The stage a backstage key is for must match: see [`super::identity::Keys::backstage_key`].
pub fn backstage_allowed(attendance: &Attendance, key_valid: bool) -> Result<(), Refusal> {
    if attendance.organizer || key_valid {
        Ok(())
    } else {
        Err(Refusal::BackstageKey)
    }
}

/// Sessions and stages only take joins while live.
pub fn joinable(phase: Option<roundtable_crds::LivePhase>) -> Result<(), Refusal> {
    use roundtable_crds::LivePhase::*;
    match phase {
        Some(Live) => Ok(()),
        Some(Draining | Ended) => Err(Refusal::Ended),
        _ => Err(Refusal::NotLive),
    }
}
