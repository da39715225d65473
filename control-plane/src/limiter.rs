//! Attempts per client, in a sliding window: passcodes, backstage keys and access links cannot
//! be guessed or sprayed, and nobody's inbox is flooded. The decision is pure ([`decide`]: the
//! caller passes `now`); the attempts are counted in the [`Store`], so every replica of the
//! control plane counts against the same budget.
//!
//! A client is its address as [`super::Client`] finds it (the forwarded address from a trusted
//! proxy). Limits that a whole office behind one NAT shares are set high enough that people
//! signing in together never meet them; the tight limits key on what one person owns (their
//! email address) or on a room.

use super::ApiError;
use super::store::{Store, StoreError};

/// What is being limited, and how much.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Passcode tries at one room.
    Passcode,
    /// Sign-in, registration and access-link emails to one address.
    EmailTo,
    /// Such emails asked for by one client address (spraying many addresses).
    EmailFrom,
    /// Uses of one-time links (sign-in and access codes) by one client address.
    Link,
    /// Wrong backstage keys from one client address.
    Backstage,
}

impl Scope {
    /// (attempts, window in seconds)
    fn budget(self) -> (usize, i64) {
        match self {
            Scope::Passcode => (5, 300),
            Scope::EmailTo => (5, 900),
            Scope::EmailFrom => (300, 900),
            Scope::Link => (300, 300),
            Scope::Backstage => (10, 300),
        }
    }
}

impl Scope {
    /// How the scope is named where attempts are counted.
    fn name(self) -> &'static str {
        match self {
            Scope::Passcode => "passcode",
            Scope::EmailTo => "email_to",
            Scope::EmailFrom => "email_from",
            Scope::Link => "link",
            Scope::Backstage => "backstage",
        }
    }
}

/// Whether one more attempt fits `budget` at `now`, given the times of the attempts inside its
/// window (oldest first): Err(seconds to wait) when the window's budget is used up.
pub fn decide(budget: (usize, i64), times: &[i64], now: i64) -> Result<(), u64> {
    let (max, window) = budget;
    let recent: Vec<i64> = times.iter().copied().filter(|t| now - t < window).collect();
    match recent.first() {
        Some(oldest) if recent.len() >= max => Err((oldest + window - now).max(1) as u64),
        _ => Ok(()),
    }
}

/// Why an attempt was not let through.
#[derive(Debug)]
pub enum Limited {
    /// The budget is used up: wait this many seconds.
    Wait(u64),
    /// The attempts could not be counted.
    Store(StoreError),
}

impl From<Limited> for ApiError {
    fn from(limited: Limited) -> Self {
        match limited {
            Limited::Wait(seconds) => ApiError::too_many(seconds),
            Limited::Store(e) => ApiError::internal("counting attempts", e),
        }
    }
}

/// Sliding-window counters keyed by scope, client and target, kept in the store.
#[derive(Debug, Clone)]
pub struct Limiter {
    store: Store,
}

impl Limiter {
    pub fn new(store: Store) -> Self {
        Limiter { store }
    }

    /// Counts an attempt by `client` at `now` (Unix seconds); [`Limited::Wait`] when the
    /// budget of the window is used up (the refused attempt is not counted).
    pub async fn attempt(&self, scope: Scope, client: &str, now: i64) -> Result<(), Limited> {
        let budget = scope.budget();
        self.store
            .count_attempt(scope.name(), client, now, budget.1, |times| {
                decide(budget, times, now)
            })
            .await
            .map_err(Limited::Store)?
            .map_err(Limited::Wait)
    }

    /// [`Limited::Wait`] when `client`'s budget is used up, counting nothing: for limits on
    /// failures only (count those with [`Limiter::attempt`]).
    pub async fn blocked(&self, scope: Scope, client: &str, now: i64) -> Result<(), Limited> {
        let budget = scope.budget();
        let times = self
            .store
            .attempts(scope.name(), client, now, budget.1)
            .await
            .map_err(Limited::Store)?;
        decide(budget, &times, now).map_err(Limited::Wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn limiter() -> Limiter {
        Limiter::new(Store::in_memory().await.unwrap())
    }

    fn waits(answer: Result<(), Limited>) -> Option<u64> {
        match answer {
            Ok(()) => None,
            Err(Limited::Wait(s)) => Some(s),
            Err(Limited::Store(e)) => panic!("{e}"),
        }
    }

    #[test]
    fn the_decision_counts_only_the_window() {
        assert_eq!(decide((2, 10), &[0, 5], 9), Err(1));
        assert_eq!(
            decide((2, 10), &[0, 5], 10),
            Ok(()),
            "0 has left the window"
        );
        assert_eq!(decide((2, 10), &[], 0), Ok(()));
    }

    #[tokio::test]
    async fn the_sixth_passcode_try_in_five_minutes_waits() {
        let limiter = limiter().await;
        for t in 0..5 {
            assert_eq!(
                waits(limiter.attempt(Scope::Passcode, "1.2.3.4", t).await),
                None
            );
        }
        assert_eq!(
            waits(limiter.attempt(Scope::Passcode, "1.2.3.4", 10).await),
            Some(290)
        );
        assert_eq!(
            waits(limiter.attempt(Scope::Passcode, "5.6.7.8", 10).await),
            None
        );
        assert_eq!(
            waits(limiter.attempt(Scope::EmailTo, "1.2.3.4", 10).await),
            None
        );
        assert_eq!(
            waits(limiter.attempt(Scope::Passcode, "1.2.3.4", 300).await),
            None
        );
    }

    #[tokio::test]
    async fn a_client_address_shared_by_an_office_sends_many_emails_one_inbox_few() {
        let limiter = limiter().await;
        for i in 0..200 {
            let ok = waits(limiter.attempt(Scope::EmailFrom, "203.0.113.7", i).await);
            assert_eq!(ok, None, "email {i} from one office address");
        }
        for t in 0..5 {
            assert_eq!(
                waits(limiter.attempt(Scope::EmailTo, "ada@example.org", t).await),
                None
            );
        }
        assert!(waits(limiter.attempt(Scope::EmailTo, "ada@example.org", 6).await).is_some());
    }

    #[tokio::test]
    async fn blocked_counts_nothing() {
        let limiter = limiter().await;
        for t in 0..10 {
            assert_eq!(waits(limiter.blocked(Scope::Backstage, "a", t).await), None);
            limiter.attempt(Scope::Backstage, "a", t).await.unwrap();
        }
        assert_eq!(
            waits(limiter.blocked(Scope::Backstage, "a", 10).await),
            Some(290)
        );
        assert_eq!(
            waits(limiter.blocked(Scope::Backstage, "b", 10).await),
            None
        );
        assert_eq!(
            waits(limiter.blocked(Scope::Backstage, "a", 300).await),
            None
        );
    }
}
