//! Prometheus metrics under the names operators already graph (controller-runtime's), plus
//! Roundtable's own gauges.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::controller::relays::RelayFacts;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use roundtable_crds::live_room::LiveRoom;

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
    session_watching: IntGaugeVec,
    session_relays: IntGaugeVec,
    pod_watching: IntGaugeVec,
    /// The pods last recorded per room, so that a removed relay's series goes with it.
    pods_of: Arc<Mutex<HashMap<[String; 3], Vec<String>>>>,
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
        let room_labels = ["namespace", "name", "kind"];
        let session_watching = IntGaugeVec::new(
            Opts::new(
                "roundtable_session_watching",
                "People watching a live session or stage now, over its origin and relays",
            ),
            &room_labels,
        )
        .expect("valid metric");
        let session_relays = IntGaugeVec::new(
            Opts::new(
                "roundtable_session_relays",
                "Ready relay SFU pods of a live session or stage",
            ),
            &room_labels,
        )
        .expect("valid metric");
        let pod_watching = IntGaugeVec::new(
            Opts::new(
                "roundtable_pod_watching",
                "People watching through one SFU pod (origin: those connected to it directly)",
            ),
            &["namespace", "name", "kind", "pod"],
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
            Box::new(session_watching.clone()),
            Box::new(session_relays.clone()),
            Box::new(pod_watching.clone()),
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
            session_watching,
            session_relays,
            pod_watching,
            pods_of: Arc::default(),
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

    /// Records a live session's or stage's watchers per pod and ready relays (`relays` None:
    /// not live, its series go away). `watching` is everyone the origin counts.
    pub fn relays(
        &self,
        room: &LiveRoom,
        origin_pod: &str,
        relays: Option<&RelayFacts>,
        watching: i32,
    ) {
        let key = [
            room.namespace.clone(),
            room.name.clone(),
            room.kind.as_str().to_string(),
        ];
        let mut pods_of = self.pods_of.lock().expect("not poisoned");
        let before = pods_of.remove(&key).unwrap_or_default();
        let mut now: Vec<(String, i32)> = Vec::new();
        match relays {
            Some(relays) => {
                self.session_watching
                    .with_label_values(&key)
                    .set(watching.into());
                self.session_relays
                    .with_label_values(&key)
                    .set(relays.ready.into());
                now.push((
                    origin_pod.to_string(),
                    crate::plan::relay::origin_watching(watching, &relays.pods),
                ));
                now.extend(relays.pods.iter().map(|p| (p.name.clone(), p.watching)));
            }
            None => {
                let _ = self.session_watching.remove_label_values(&key);
                let _ = self.session_relays.remove_label_values(&key);
            }
        }
        for pod in before.iter().filter(|p| !now.iter().any(|(n, _)| n == *p)) {
            let _ = self
                .pod_watching
                .remove_label_values(&[&key[0], &key[1], &key[2], pod]);
        }
        for (pod, count) in &now {
            self.pod_watching
                .with_label_values(&[&key[0], &key[1], &key[2], pod])
                .set((*count).into());
        }
        if !now.is_empty() {
            pods_of.insert(key, now.into_iter().map(|(p, _)| p).collect());
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

#[cfg(test)]
mod tests {
    use roundtable_crds::{RelayPod, Session};

    use super::*;

    fn relay(name: &str, watching: i32) -> RelayPod {
        RelayPod {
            name: name.into(),
            endpoint: Some("10.0.0.1:31001".into()),
            ready: true,
            watching,
        }
    }

    #[test]
    fn watching_per_pod_follows_the_relays_and_goes_with_them() {
        let metrics = Metrics::default();
        let spec = serde_yaml::from_str("{event: gala, title: S}").unwrap();
        let mut session = Session::new("big", spec);
        session.metadata.namespace = Some("events".into());
        let room = LiveRoom::from(&session);
        let mut facts = RelayFacts {
            ready: 2,
            selector: String::new(),
            pods: vec![
                relay("session-big-relay-0", 400),
                relay("session-big-relay-1", 300),
            ],
            watchers_per_pod: 500,
            lower_since: None,
            recheck_at: None,
        };
        metrics.relays(&room, "session-big", Some(&facts), 750);
        let text = metrics.render();
        assert!(
            text.contains(
                r#"roundtable_session_watching{kind="session",name="big",namespace="events"} 750"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"roundtable_session_relays{kind="session",name="big",namespace="events"} 2"#
        ));
        assert!(text.contains(r#"roundtable_pod_watching{kind="session",name="big",namespace="events",pod="session-big"} 50"#));
        assert!(text.contains(r#"pod="session-big-relay-1"} 300"#));
        facts.pods.pop();
        metrics.relays(&room, "session-big", Some(&facts), 400);
        assert!(
            !metrics.render().contains("session-big-relay-1"),
            "a removed relay's series goes"
        );
        metrics.relays(&room, "session-big", None, 0);
        assert!(!metrics.render().contains("roundtable_pod_watching{"));
        assert!(!metrics.render().contains("roundtable_session_watching{"));
    }
}
