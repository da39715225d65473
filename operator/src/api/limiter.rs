//! Attempts per client, in a sliding window: passcodes and access links cannot be guessed or
//! sprayed. Pure: the caller passes `now`.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// What is being limited, and how much.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Passcode tries at one room.
    Passcode,
    /// Access-link and sign-in emails sent.
    Email,
    /// Uses of one-time links (sign-in and access codes).
    Link,
}

impl Scope {
    /// (attempts, window in seconds)
    fn budget(self) -> (usize, i64) {
        match self {
            Scope::Passcode => (5, 300),
            Scope::Email => (5, 900),
            Scope::Link => (10, 300),
        }
    }
}

/// Sliding-window counters keyed by scope, client and target.
#[derive(Debug, Default)]
pub struct Limiter {
    seen: Mutex<HashMap<(Scope, String), VecDeque<i64>>>,
}

impl Limiter {
    /// Counts an attempt by `client` at `now` (Unix seconds); Err(seconds to wait) when the
    /// budget of the window is used up (the refused attempt is not counted).
    pub fn attempt(&self, scope: Scope, client: &str, now: i64) -> Result<(), u64> {
        let (max, window) = scope.budget();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() > 100_000 {
            // Bounded memory: forget clients whose windows are over.
            seen.retain(|_, times| times.back().is_some_and(|t| now - t < window));
        }
        let times = seen.entry((scope, client.to_string())).or_default();
        while times.front().is_some_and(|t| now - t >= window) {
            times.pop_front();
        }
        if times.len() >= max {
            let oldest = *times.front().expect("full window is not empty");
            return Err((oldest + window - now).max(1) as u64);
        }
        times.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sixth_passcode_try_in_five_minutes_waits() {
        let limiter = Limiter::default();
        for t in 0..5 {
            assert_eq!(limiter.attempt(Scope::Passcode, "1.2.3.4", t), Ok(()));
        }
        assert_eq!(limiter.attempt(Scope::Passcode, "1.2.3.4", 10), Err(290));
        assert_eq!(limiter.attempt(Scope::Passcode, "5.6.7.8", 10), Ok(()));
        assert_eq!(limiter.attempt(Scope::Email, "1.2.3.4", 10), Ok(()));
        assert_eq!(limiter.attempt(Scope::Passcode, "1.2.3.4", 300), Ok(()));
    }
}
