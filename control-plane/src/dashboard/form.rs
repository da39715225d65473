//! Pure: a host's room form as a `Room` resource, and why a form cannot be one.
//!
//! A dashboard room is named `<host>-<slug>` in the dashboard namespace, labelled with its
//! owner's slug ([`OWNER_LABEL`]), and lists its owner's email first in `hosts` and then the
//! co-hosts. Its passcode lives in a Secret it owns ([`passcode_secret`]).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::SecretKeySelector;
use roundtable_crds::{Room, RoomSpec, RoomTheme};
use serde::Deserialize;

use crate::accounts::slug;
use crate::catalog::{OWNER_LABEL, PASSCODE_KEY, passcode_secret};
use crate::identity::normalize_email;

/// What the dashboard's room form sends.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomForm {
    /// Only read when creating: the room's URL cannot change.
    #[serde(default)]
    pub slug: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub theme: Option<RoomTheme>,
    #[serde(default)]
    pub locked: bool,
    /// None: keep the passcode as it is (edit) or none (create); "": remove it.
    #[serde(default)]
    pub passcode: Option<String>,
    #[serde(default)]
    pub email_domains: Vec<String>,
    #[serde(default)]
    pub co_hosts: Vec<String>,
}

/// The owner of a dashboard room.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub slug: &'a str,
    pub email: &'a str,
}

/// A form that cannot become a room, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormProblem(pub String);

fn problem(message: impl Into<String>) -> FormProblem {
    FormProblem(message.into())
}

/// The room's own slug: a DNS label like the host's (reserved words do not apply: rooms live
/// under the host's path).
pub fn room_slug(wanted: &str) -> Result<String, FormProblem> {
    match slug::check(wanted) {
        Ok(s) => Ok(s),
        Err(slug::SlugProblem::Reserved) => Ok(wanted.trim().to_ascii_lowercase()),
        Err(p) => Err(problem(format!("The room's URL: {}", p.message()))),
    }
}

/// The name of the `Room` resource behind `/<host>/<slug>`.
pub fn resource_name(host: &str, slug: &str) -> String {
    format!("{host}-{slug}")
}

/// The room the form describes, and its new passcode (None: no Secret to write). `had_passcode`
/// says whether the room being edited has one, which a form without `passcode` keeps.
pub fn room_from(
    form: &RoomForm,
    room_slug: &str,
    owner: Owner<'_>,
    namespace: &str,
    had_passcode: bool,
) -> Result<(Room, Option<String>), FormProblem> {
    let title = form.title.trim();
    if title.chars().count() > 200 || title.chars().any(char::is_control) {
        return Err(problem(
            "Give the room a title on one line, at most 200 characters.",
        ));
    }
    let mut domains = Vec::new();
    for d in &form.email_domains {
        let d = d.trim().trim_start_matches('@').to_ascii_lowercase();
        if d.is_empty() {
            continue;
        }
        if !domain_ok(&d) {
            return Err(problem(format!(
                "{d:?} is not an email domain such as example.com."
            )));
        }
        if !domains.contains(&d) {
            domains.push(d);
        }
    }
    let mut hosts = vec![owner.email.to_string()];
    for h in &form.co_hosts {
        if h.trim().is_empty() {
            continue;
        }
        let email = normalize_email(h)
            .ok_or_else(|| problem(format!("{:?} is not an email address.", h.trim())))?;
        if !hosts.contains(&email) {
            hosts.push(email);
        }
    }
    if hosts.len() > 50 {
        return Err(problem("A room has at most 50 hosts."));
    }
    let passcode = match form.passcode.as_deref().map(str::trim) {
        Some("") => None,
        Some(p) if p.chars().count() < 4 || p.chars().count() > 64 => {
            return Err(problem("A passcode has 4 to 64 characters."));
        }
        Some(p) => Some(p.to_string()),
        None => None,
    };
    let keeps_passcode = passcode.is_some() || (form.passcode.is_none() && had_passcode);
    let name = resource_name(owner.slug, room_slug);
    let mut room = Room::new(
        &name,
        RoomSpec {
            host: owner.slug.to_string(),
            slug: room_slug.to_string(),
            title: (!title.is_empty()).then(|| title.to_string()),
            hosts,
            theme: form.theme.unwrap_or_default(),
            locked: form.locked,
            passcode: keeps_passcode.then(|| SecretKeySelector {
                name: passcode_secret(&name),
                key: PASSCODE_KEY.into(),
                optional: None,
            }),
            allowed_email_domains: domains,
            max_participants: roundtable_crds::limits::DEFAULT_ON_CAMERA,
            max_watchers: None,
            idle_timeout_seconds: None,
            sfu: None,
        },
    );
    room.metadata.namespace = Some(namespace.to_string());
    room.metadata.labels = Some(BTreeMap::from([(
        OWNER_LABEL.to_string(),
        owner.slug.to_string(),
    )]));
    Ok((room, passcode))
}

/// A lower-case domain name of at least two labels, as the Room schema requires.
fn domain_ok(d: &str) -> bool {
    let labels: Vec<&str> = d.split('.').collect();
    d.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
        && labels
            .last()
            .is_some_and(|t| t.bytes().next().is_some_and(|b| b.is_ascii_lowercase()))
}

/// Whether `room` was made on `slug`'s dashboard (else it was declared elsewhere, e.g. with
/// kubectl, and the dashboard shows it read-only).
pub fn made_on_dashboard(room: &Room, slug: &str) -> bool {
    room.spec.host == slug
        && room
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(OWNER_LABEL))
            .is_some_and(|o| o == slug)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADA: Owner<'static> = Owner {
        slug: "ada",
        email: "ada@example.com",
    };

    #[test]
    fn a_form_becomes_a_labelled_room_with_its_owner_first() {
        let form = RoomForm {
            title: " Office hours ".into(),
            theme: Some(RoomTheme::Webinar),
            locked: true,
            passcode: Some("open sesame".into()),
            email_domains: vec!["@Example.com".into(), "".into()],
            co_hosts: vec!["Grace@Example.com".into(), "ada@example.com".into()],
            ..RoomForm::default()
        };
        let (room, passcode) = room_from(&form, "office", ADA, "rooms", false).unwrap();
        assert_eq!(room.metadata.name.as_deref(), Some("ada-office"));
        assert_eq!(room.metadata.namespace.as_deref(), Some("rooms"));
        assert!(made_on_dashboard(&room, "ada"));
        assert!(!made_on_dashboard(&room, "grace"));
        assert_eq!(room.spec.hosts, ["ada@example.com", "grace@example.com"]);
        assert_eq!(room.spec.allowed_email_domains, ["example.com"]);
        assert_eq!(room.spec.title.as_deref(), Some("Office hours"));
        assert_eq!(passcode.as_deref(), Some("open sesame"));
        assert_eq!(
            room.spec.passcode.as_ref().map(|p| p.name.as_str()),
            Some("ada-office-passcode")
        );
    }

    #[test]
    fn an_edit_without_a_passcode_keeps_it_and_an_empty_one_removes_it() {
        let keep = RoomForm::default();
        let (room, new) = room_from(&keep, "office", ADA, "rooms", true).unwrap();
        assert!(room.spec.passcode.is_some() && new.is_none());
        let remove = RoomForm {
            passcode: Some(String::new()),
            ..RoomForm::default()
        };
        let (room, _) = room_from(&remove, "office", ADA, "rooms", true).unwrap();
        assert!(room.spec.passcode.is_none());
    }

    #[test]
    fn refusals_say_what_to_fix() {
        let bad = |form: RoomForm| {
            room_from(&form, "office", ADA, "rooms", false)
                .unwrap_err()
                .0
        };
        assert!(
            bad(RoomForm {
                passcode: Some("abc".into()),
                ..Default::default()
            })
            .contains("4 to 64")
        );
        assert!(
            bad(RoomForm {
                email_domains: vec!["localhost".into()],
                ..Default::default()
            })
            .contains("email domain")
        );
        assert!(
            bad(RoomForm {
                co_hosts: vec!["nobody".into()],
                ..Default::default()
            })
            .contains("email address")
        );
        assert!(
            room_slug("Office_Hours")
                .unwrap_err()
                .0
                .contains("room's URL")
        );
        assert_eq!(room_slug("api").unwrap(), "api");
    }
}
