//! A viewer's bandwidth estimate from its TWCC feedback, without str0m's pacer.
//!
//! str0m's own estimator (GCC, with probing) needs its leaky-bucket pacer, and that pacer
//! asks for a full `Rtc` timeout after every packet it releases. This estimator reads what
//! str0m's TWCC send register reports anyway (loss over the last second, the round trip of
//! the latest acknowledged packet: queueing shows in it) and the bytes actually sent, in the
//! spirit of GCC's loss-based controller with a delay guard:
//!
//! - congestion (loss above [`LOSS_HIGH`], or the round trip [`QUEUE_DELAY`] above the
//!   lowest seen): the estimate drops below what was really sent, and holds for [`HOLD`];
//! - clean (loss below [`LOSS_LOW`], no queueing) and past the hold: it grows by
//!   [`STARTUP_GROWTH_PER_S`] per second until the first congestion, [`GROWTH_PER_S`] after,
//!   [`CAREFUL_GROWTH_PER_S`] near a rate that was congested lately; at most to `ceiling`
//!   (what the viewer would use);
//! - in between: it stays.
//!
//! Growing without probing means a higher layer is found by trying it: when it does not fit,
//! the next report sees the queue or the loss and the estimate falls back.

use std::time::{Duration, Instant};

/// Loss above this is congestion.
pub const LOSS_HIGH: f32 = 0.10;
/// Loss below this allows growth.
pub const LOSS_LOW: f32 = 0.02;
/// A round trip this much above the lowest one seen means a queue is building.
pub const QUEUE_DELAY: Duration = Duration::from_millis(80);
/// No growth for this long after a decrease.
pub const HOLD: Duration = Duration::from_secs(2);
/// Growth per second while the path is clean.
pub const GROWTH_PER_S: f64 = 0.08;
/// Growth per second until the first congestion: a new viewer reaches the layers its tiles
/// want within seconds (1.5 → 5 Mbit/s in ~6 s).
pub const STARTUP_GROWTH_PER_S: f64 = 0.25;
/// The estimate never goes below this.
pub const FLOOR_BPS: u64 = 150_000;
/// Near a rate that was congested in the last [`REMEMBER`] (at least [`NEAR`] of it), the
/// estimate creeps up at [`CAREFUL_GROWTH_PER_S`] instead, so a link that cannot carry the
/// next layer is not retried every few seconds.
pub const REMEMBER: Duration = Duration::from_secs(30);
pub const NEAR: f64 = 0.85;
pub const CAREFUL_GROWTH_PER_S: f64 = 0.01;

/// One report of the viewer's TWCC feedback, as str0m's peer stats give it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Report {
    pub at: Instant,
    /// Lost fraction of what was sent over the last second.
    pub loss: Option<f32>,
    /// Send → feedback time of the latest acknowledged packet.
    pub rtt: Option<Duration>,
    /// All bytes sent to the viewer so far.
    pub bytes_sent: u64,
}

#[derive(Debug, Clone)]
pub struct Estimator {
    estimate: u64,
    min_rtt: Option<Duration>,
    held_until: Option<Instant>,
    last: Option<(Instant, u64)>,
    /// The rate sent when congestion was last seen, and when.
    congested: Option<(u64, Instant)>,
}

impl Estimator {
    pub fn new(initial_bps: u64) -> Self {
        Estimator {
            estimate: initial_bps.max(FLOOR_BPS),
            min_rtt: None,
            held_until: None,
            last: None,
            congested: None,
        }
    }

    pub fn estimate_bps(&self) -> u64 {
        self.estimate
    }

    /// Take in a report; `ceiling_bps` is what the viewer would use if nothing limited it.
    /// Returns the new estimate.
    pub fn update(&mut self, report: Report, ceiling_bps: u64) -> u64 {
        let Some((last_at, last_bytes)) = self.last.replace((report.at, report.bytes_sent)) else {
            return self.estimate;
        };
        let elapsed = report.at.saturating_duration_since(last_at);
        if elapsed < Duration::from_millis(50) {
            return self.estimate;
        }
        let sent_bps = (report.bytes_sent.saturating_sub(last_bytes) as f64 * 8.0
            / elapsed.as_secs_f64()) as u64;
        if let Some(rtt) = report.rtt {
            self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
        }
        let loss = report.loss.unwrap_or(0.0);
        let queueing = match (report.rtt, self.min_rtt) {
            (Some(rtt), Some(min)) => rtt > min + QUEUE_DELAY,
            _ => false,
        };
        if loss > LOSS_HIGH || queueing {
            let factor = if loss > LOSS_HIGH {
                1.0 - 0.5 * f64::from(loss)
            } else {
                0.85
            };
            let basis = self.estimate.min(sent_bps.max(FLOOR_BPS));
            self.estimate = ((basis as f64 * factor).round() as u64).max(FLOOR_BPS);
            self.held_until = Some(report.at + HOLD);
            self.congested = Some((sent_bps, report.at));
        } else if loss < LOSS_LOW && self.held_until.is_none_or(|t| report.at >= t) {
            let near_congestion = self.congested.is_some_and(|(bps, at)| {
                report.at < at + REMEMBER && self.estimate as f64 >= bps as f64 * NEAR
            });
            let rate = match self.congested {
                None => STARTUP_GROWTH_PER_S,
                Some(_) if near_congestion => CAREFUL_GROWTH_PER_S,
                Some(_) => GROWTH_PER_S,
            };
            let grown = self.estimate as f64 * (1.0 + rate * elapsed.as_secs_f64());
            self.estimate = (grown as u64).min(ceiling_bps.max(self.estimate));
        }
        self.estimate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Link {
        est: Estimator,
        t: Instant,
        bytes: u64,
    }

    impl Link {
        fn new(initial: u64) -> Self {
            let mut link = Link {
                est: Estimator::new(initial),
                t: Instant::now(),
                bytes: 0,
            };
            link.report(0, 0.0, 20, u64::MAX);
            link
        }
        /// One 250 ms report after sending at `sent_bps`.
        fn report(&mut self, sent_bps: u64, loss: f32, rtt_ms: u64, ceiling: u64) -> u64 {
            self.t += Duration::from_millis(250);
            self.bytes += sent_bps / 8 / 4;
            self.est.update(
                Report {
                    at: self.t,
                    loss: Some(loss),
                    rtt: Some(Duration::from_millis(rtt_ms)),
                    bytes_sent: self.bytes,
                },
                ceiling,
            )
        }
    }

    #[test]
    fn a_new_viewer_on_a_clean_path_reaches_what_it_would_use_within_seconds() {
        let mut link = Link::new(1_500_000);
        let mut seconds = 0.0;
        while link.report(1_400_000, 0.0, 20, 5_000_000) < 5_000_000 {
            seconds += 0.25;
        }
        assert!(seconds <= 6.0, "{seconds} s");
    }

    #[test]
    fn a_clean_path_grows_to_what_the_viewer_would_use_and_no_further() {
        let mut link = Link::new(1_000_000);
        let mut est = 0;
        for _ in 0..40 {
            est = link.report(900_000, 0.0, 20, 2_000_000);
        }
        assert_eq!(est, 2_000_000, "10 s of growth reaches the ceiling");
        for _ in 0..8 {
            est = link.report(900_000, 0.0, 20, 1_200_000);
        }
        assert_eq!(
            est, 2_000_000,
            "a lower ceiling does not pull the estimate down"
        );
    }

    #[test]
    fn heavy_loss_cuts_below_what_was_sent_and_holds() {
        let mut link = Link::new(2_000_000);
        let est = link.report(1_600_000, 0.40, 20, 3_000_000);
        assert_eq!(est, 1_280_000, "1.6 Mbit/s sent × (1 − 0.5 × 40 %)");
        let held = link.report(600_000, 0.0, 20, 3_000_000);
        assert_eq!(held, est, "no growth within the hold");
        let mut later = held;
        for _ in 0..8 {
            later = link.report(600_000, 0.0, 20, 3_000_000);
        }
        assert!(later > held, "grows again after the hold: {later}");
    }

    #[test]
    fn near_a_recently_congested_rate_growth_is_careful_then_normal_again() {
        let mut link = Link::new(2_000_000);
        // 500 kbit/s sent into a smaller link: queueing, then loss.
        link.report(500_000, 0.0, 20, 3_000_000);
        let cut = link.report(500_000, 0.0, 200, 3_000_000);
        assert_eq!(cut, 425_000);
        let mut est = cut;
        for _ in 0..40 {
            est = link.report(300_000, 0.0, 20, 3_000_000);
        }
        assert!(
            est < 500_000,
            "10 s later still below the congested rate: {est}"
        );
        for _ in 0..100 {
            est = link.report(300_000, 0.0, 20, 3_000_000);
        }
        assert!(est > 600_000, "after 30 s it grows normally again: {est}");
    }

    #[test]
    fn a_growing_queue_is_congestion_before_any_loss() {
        let mut link = Link::new(2_000_000);
        link.report(1_000_000, 0.0, 20, 3_000_000);
        let est = link.report(1_000_000, 0.0, 150, 3_000_000);
        assert_eq!(est, 850_000, "85 % of what was sent");
    }

    #[test]
    fn moderate_loss_holds_the_estimate() {
        let mut link = Link::new(1_000_000);
        assert_eq!(link.report(900_000, 0.05, 20, 3_000_000), 1_000_000);
    }

    #[test]
    fn never_below_the_floor() {
        let mut link = Link::new(200_000);
        for _ in 0..20 {
            link.report(0, 0.9, 500, 3_000_000);
        }
        assert_eq!(link.est.estimate_bps(), FLOOR_BPS);
    }
}
