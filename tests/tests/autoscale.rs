//! End to end with the node agent: an autoscaled session's audience of str0m watchers grows
//! past one relay's capacity, relays start and new watchers land on them and receive media;
//! the watchers leave, the relays drain (their remaining watchers move) and go away. Nobody
//! is refused while capacity exists and nobody loses media except during a move.

use std::time::Duration;

use roundtable_e2e::autoscale::{self, Plan};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_spread_over_relays_as_the_audience_grows_and_shrinks() {
    roundtable_e2e::init_test_logs();
    let plan = Plan {
        watchers: 7,
        watchers_per_relay: 3,
        headroom: 1,
        max_relays: 3,
        scale_down_delay_seconds: 3,
        join_every: Duration::from_millis(700),
        pace: true,
        leave_every: Duration::from_millis(1500),
        hold: Duration::from_secs(4),
        stay_last: Duration::from_secs(20),
        host_ports: 33300..=33399,
    };
    let report = autoscale::run(plan.clone()).await.unwrap();
    for w in &report.watchers {
        eprintln!("e2e: {}", serde_json::to_string(w).unwrap());
    }
    eprintln!("e2e: {}", serde_json::to_string(&report).unwrap());

    assert_eq!(
        report.watchers_refused, 0,
        "nobody refused while capacity exists"
    );
    assert_eq!(report.watchers_dropped, 0, "everyone kept media");
    assert_eq!(
        report.relays_peak, 3,
        "7 watchers and 1 of headroom at 3 per relay need 3 relays"
    );
    let relays: Vec<_> = report
        .watchers_per_pod_at_peak
        .iter()
        .filter(|(pod, _)| **pod != report.origin)
        .collect();
    assert!(
        relays.len() == 3 && !report.watchers_per_pod_at_peak.contains_key(&report.origin),
        "new watchers landed on relays: {:?}",
        report.watchers_per_pod_at_peak
    );
    for (pod, n) in relays {
        assert!(
            *n <= plan.watchers_per_relay,
            "{pod} got {n} watchers, more than a relay's capacity"
        );
    }
    assert!(
        report.longest_gap_ms < 2_000,
        "no watcher went without video for 2 s outside a move: {} ms",
        report.longest_gap_ms
    );
    assert!(report.watchers.iter().all(|w| w.first_frame_ms.is_some()));
    assert!(
        report.moves >= 1,
        "a relay went away under a watcher, who moved: {report:?}"
    );
    assert!(
        report.longest_move_gap_ms < 5_000,
        "a moved watcher saw video again within 5 s: {} ms",
        report.longest_move_gap_ms
    );
}
