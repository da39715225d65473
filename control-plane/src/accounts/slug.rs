//! A host's URL slug: the first part of every room's URL (`/<slug>/<room>`), chosen once at
//! onboarding and never changed. Pure: what makes a slug acceptable, and why one is not.

/// Shortest and longest slug.
pub const MIN_LEN: usize = 3;
pub const MAX_LEN: usize = 30;

/// Paths of this site and words that would read as the platform's own: never a host's slug.
/// Page prefixes (`e`, `s`, `stage`, `backstage`, `report`), the API and assets, sign-in and
/// onboarding pages, and names people would mistake for the operator's.
pub const RESERVED: &[&str] = &[
    "about",
    "account",
    "accounts",
    "admin",
    "api",
    "app",
    "assets",
    "auth",
    "avatars",
    "backstage",
    "dashboard",
    "e",
    "events",
    "favicon-ico",
    "healthz",
    "help",
    "host",
    "hosts",
    "login",
    "logout",
    "metrics",
    "new",
    "oidc",
    "readyz",
    "report",
    "roomboard",
    "rooms",
    "root",
    "roundtable",
    "s",
    "settings",
    "sfu",
    "signin",
    "signout",
    "signup",
    "stage",
    "static",
    "support",
    "system",
    "welcome",
    "www",
];

/// Why a slug cannot be used; each reads as a sentence on the form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlugProblem {
    Length,
    Characters,
    Edges,
    Reserved,
    Taken,
}

impl SlugProblem {
    pub fn code(&self) -> &'static str {
        match self {
            SlugProblem::Length => "slug_length",
            SlugProblem::Characters => "slug_characters",
            SlugProblem::Edges => "slug_edges",
            SlugProblem::Reserved => "slug_reserved",
            SlugProblem::Taken => "slug_taken",
        }
    }

    pub fn message(&self) -> String {
        match self {
            SlugProblem::Length => {
                format!("Your URL must be {MIN_LEN} to {MAX_LEN} characters long.")
            }
            SlugProblem::Characters => {
                "Use only letters a–z, digits and '-' in your URL.".to_string()
            }
            SlugProblem::Edges => "Your URL must start and end with a letter or digit.".to_string(),
            SlugProblem::Reserved => {
                "That URL is reserved for Roundtable itself; choose another.".to_string()
            }
            SlugProblem::Taken => "That URL is already taken; choose another.".to_string(),
        }
    }
}

/// The slug as kept (trimmed, lower-case), or why it cannot be one. Whether it is taken is
/// the store's to say.
pub fn check(wanted: &str) -> Result<String, SlugProblem> {
    let slug = wanted.trim().to_ascii_lowercase();
    let length = slug.chars().count();
    if !(MIN_LEN..=MAX_LEN).contains(&length) {
        return Err(SlugProblem::Length);
    }
    if !slug
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(SlugProblem::Characters);
    }
    if slug.starts_with('-') || slug.ends_with('-') {
        return Err(SlugProblem::Edges);
    }
    if RESERVED.contains(&slug.as_str()) {
        return Err(SlugProblem::Reserved);
    }
    Ok(slug)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dns_label_is_kept_lower_cased() {
        assert_eq!(check(" Ada-Lovelace ").unwrap(), "ada-lovelace");
        assert_eq!(check("abc").unwrap(), "abc");
        assert_eq!(check(&"a".repeat(30)).unwrap(), "a".repeat(30));
    }

    #[test]
    fn everything_else_says_why() {
        assert_eq!(check("ab"), Err(SlugProblem::Length));
        assert_eq!(check(&"a".repeat(31)), Err(SlugProblem::Length));
        assert_eq!(check("ada_l"), Err(SlugProblem::Characters));
        assert_eq!(check("adé-l"), Err(SlugProblem::Characters));
        assert_eq!(check("ada.l"), Err(SlugProblem::Characters));
        assert_eq!(check("-ada"), Err(SlugProblem::Edges));
        assert_eq!(check("ada-"), Err(SlugProblem::Edges));
        assert_eq!(check("API"), Err(SlugProblem::Reserved));
        assert_eq!(check("signin"), Err(SlugProblem::Reserved));
        assert_eq!(check("assets"), Err(SlugProblem::Reserved));
    }
}
