//! Prometheus metrics under the names operators already graph (controller-runtime's), plus
//! Roundtable's own gauges.

use std::time::Instant;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The operator's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    reconcile_total: IntCounterVec,
    reconcile_errors: IntCounterVec,
    reconcile_time: HistogramVec,
    active_workers: IntGaugeVec,
    live_rooms: IntGaugeVec,
    watching: IntGaugeVec,
    on_camera: IntGaugeVec,
    leader: IntGaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new();
        let reconcile_total = IntCounterVec::new(
            Opts::new(
                "controller_runtime_reconcile_total",
                "Total number of reconciliations per controller",
            ),
            &["controller", "result"],
        )
        .expect("valid metric");
        let reconcile_errors = IntCounterVec::new(
            Opts::new(
                "controller_runtime_reconcile_errors_total",
                "Total number of reconciliation errors per controller",
            ),
            &["controller", "error"],
        )
        .expect("valid metric");
        let reconcile_time = HistogramVec::new(
            HistogramOpts::new(
                "controller_runtime_reconcile_time_seconds",
                "Length of time per reconciliation per controller",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["controller"],
        )
        .expect("valid metric");
        let active_workers = IntGaugeVec::new(
            Opts::new(
                "controller_runtime_active_workers",
                "Number of currently used workers per controller",
            ),
            &["controller"],
        )
        .expect("valid metric");
        let live_rooms = IntGaugeVec::new(
            Opts::new(
                "roundtable_live_rooms",
                "Sessions, stages and rooms that are live now",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let watching = IntGaugeVec::new(
            Opts::new("roundtable_watching", "People watching a live room now"),
            &["namespace", "kind", "name"],
        )
        .expect("valid metric");
        let on_camera = IntGaugeVec::new(
            Opts::new(
                "roundtable_on_camera",
                "People on camera in a live room now",
            ),
            &["namespace", "kind", "name"],
        )
        .expect("valid metric");
        let leader = IntGaugeVec::new(
            Opts::new(
                "roundtable_operator_leader",
                "1 while this replica holds the leader lease",
            ),
            &["identity"],
        )
        .expect("valid metric");
        for metric in [
            Box::new(reconcile_total.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(reconcile_errors.clone()),
            Box::new(reconcile_time.clone()),
            Box::new(active_workers.clone()),
            Box::new(live_rooms.clone()),
            Box::new(watching.clone()),
            Box::new(on_camera.clone()),
            Box::new(leader.clone()),
        ] {
            registry.register(metric).expect("metric registered once");
        }
        Metrics {
            registry,
            reconcile_total,
            reconcile_errors,
            reconcile_time,
            active_workers,
            live_rooms,
            watching,
            on_camera,
            leader,
        }
    }
}

/// Measures one reconcile from creation to drop.
#[derive(Debug)]
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    controller: &'static str,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .reconcile_time
            .with_label_values(&[self.controller])
            .observe(self.start.elapsed().as_secs_f64());
        self.metrics
            .active_workers
            .with_label_values(&[self.controller])
            .dec();
    }
}

impl Metrics {
    /// Starts timing a reconcile of `controller`.
    pub fn reconcile(&self, controller: &'static str) -> ReconcileTimer<'_> {
        self.active_workers.with_label_values(&[controller]).inc();
        ReconcileTimer {
            metrics: self,
            controller,
            start: Instant::now(),
        }
    }

    pub fn reconciled(&self, controller: &'static str, ok: bool) {
        let result = if ok { "success" } else { "error" };
        self.reconcile_total
            .with_label_values(&[controller, result])
            .inc();
    }

    pub fn failed(&self, controller: &'static str, error: &crate::Error) {
        self.reconcile_errors
            .with_label_values(&[controller, error.label()])
            .inc();
    }

    /// Records a room's live counts, or forgets them when it is not live.
    pub fn room(&self, namespace: &str, kind: &str, name: &str, counts: Option<(i32, i32)>) {
        let labels = [namespace, kind, name];
        match counts {
            Some((on_camera, watching)) => {
                self.on_camera
                    .with_label_values(&labels)
                    .set(on_camera.into());
                self.watching
                    .with_label_values(&labels)
                    .set(watching.into());
            }
            None => {
                let _ = self.on_camera.remove_label_values(&labels);
                let _ = self.watching.remove_label_values(&labels);
            }
        }
    }

    pub fn live_rooms(&self, kind: &str, count: i64) {
        self.live_rooms.with_label_values(&[kind]).set(count);
    }

    pub fn leader(&self, identity: &str, leading: bool) {
        self.leader
            .with_label_values(&[identity])
            .set(i64::from(leading));
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}
