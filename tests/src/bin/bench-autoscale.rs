//! Benchmark (not a test): a session's audience surging past one relay and going away again,
//! on the test kube-apiserver with real sfu-node pods run by the node agent, str0m watchers
//! joining through the control plane. Prints as its last line one JSON object with
//! `watchers_peak`, `relays_peak`, `seconds_surge_to_relay_ready` (per scale-out),
//! `watchers_dropped` and what each watcher lived through in summary.
//! Usage: `bench/autoscale [WATCHERS] [WATCHERS_PER_RELAY]` (defaults 40 and 10).

use std::time::Duration;

use roundtable_e2e::autoscale::{self, Plan};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let watchers: u32 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(40);
    let per_relay: u32 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10);
    let plan = Plan {
        watchers,
        watchers_per_relay: per_relay,
        headroom: 0,
        max_relays: watchers.div_ceil(per_relay) + 1,
        scale_down_delay_seconds: 5,
        join_every: Duration::from_millis(250),
        pace: false,
        leave_every: Duration::from_millis(500),
        hold: Duration::from_secs(10),
        stay_last: Duration::from_secs(12) * (watchers.div_ceil(per_relay) + 1),
        host_ports: 34000..=34199,
    };
    eprintln!("bench: {plan:?}");
    let report = autoscale::run(plan).await?;
    for w in &report.watchers {
        eprintln!("bench: {}", serde_json::to_string(w)?);
    }
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
