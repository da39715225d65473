//! How long to wait before retrying a reconcile that failed `failures` times in a row.

use std::time::Duration;

/// 1 s after the first failure, doubling up to 5 minutes.
pub fn retry_after(failures: u32) -> Duration {
    let seconds = 1u64 << failures.saturating_sub(1).min(16);
    Duration::from_secs(seconds.min(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_one_second_up_to_five_minutes() {
        let waits: Vec<u64> = (1..=10).map(|n| retry_after(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]);
        assert_eq!(retry_after(1000), Duration::from_secs(300));
    }
}
