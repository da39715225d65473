//! Waiting in tests: poll a condition with a bounded time, and the small helpers every
//! end-to-end test file needs (the Unix time, operator logs in a failing test's output).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often [`poll`] looks again.
const EVERY: Duration = Duration::from_millis(250);

/// Polls until `check` passes (`Some`) or `limit` runs out (`None`).
pub async fn poll<T>(limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// Polls until `check` passes; fails the test naming `what` when `limit` runs out.
pub async fn wait_until<T>(
    what: &str,
    limit: Duration,
    check: impl AsyncFnMut() -> Option<T>,
) -> T {
    match poll(limit, check).await {
        Some(v) => v,
        None => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// Seconds since the Unix epoch (token expiry).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

/// Shows operator and media logs with a failing test's output (`RUST_LOG=debug` for more).
/// Reconcile failures the operator logs are also kept for [`crate::logs::failures_in`].
pub fn init_test_logs() {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,kube=warn".into());
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_test_writer()
                .with_filter(filter),
        )
        .with(crate::logs::FailureLog)
        .try_init();
}
