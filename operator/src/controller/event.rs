//! The LiveEvent controller: phase from the event's times, totals over its sessions and stage.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use roundtable_crds::{LiveEvent, Session, Stage};
use serde_json::json;

use super::Context;
use crate::plan::rollup::{RoomTotals, rollup};
use crate::{Error, FIELD_MANAGER, Result};

const CONTROLLER: &str = "liveevent";

/// Runs the LiveEvent controller; a change in any session or stage status updates its event.
pub fn controller(
    ctx: Arc<Context>,
    shutdown: crate::Shutdown,
    concurrency: u16,
) -> BoxFuture<'static, ()> {
    let to_event = |event: Option<String>, namespace: Option<String>| {
        event.map(|name| {
            ObjectRef::<LiveEvent>::new(&name).within(namespace.as_deref().unwrap_or_default())
        })
    };
    Controller::new(ctx.api::<LiveEvent>(), watcher::Config::default())
        .watches(
            ctx.api::<Session>(),
            watcher::Config::default(),
            move |s: Session| to_event(Some(s.spec.event.clone()), s.namespace()),
        )
        .watches(
            ctx.api::<Stage>(),
            watcher::Config::default(),
            move |s: Stage| to_event(Some(s.spec.event.clone()), s.namespace()),
        )
        // A burst of session status changes becomes one rollup.
        .with_config(
            ControllerConfig::default()
                .concurrency(concurrency)
                .debounce(Duration::from_secs(1)),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .boxed()
}

fn error_policy(event: Arc<LiveEvent>, error: &Error, ctx: Arc<Context>) -> Action {
    let retry = ctx.failed(super::failure_key(event.as_ref()));
    super::report_failure(event.as_ref(), CONTROLLER, error, retry, &ctx);
    Action::requeue(retry)
}

async fn reconcile(event: Arc<LiveEvent>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let result = apply(&event, &ctx).await;
    ctx.metrics.reconciled(CONTROLLER, result.is_ok());
    match &result {
        Ok(_) => ctx.succeeded(&super::failure_key(event.as_ref())),
        Err(error) => ctx.metrics.failed(CONTROLLER, error),
    }
    result
}

async fn apply(event: &LiveEvent, ctx: &Context) -> Result<Action> {
    let namespace = event.namespace().unwrap_or_default();
    let name = event.name_any();
    let totals =
        |phase, on_camera: Option<i32>, watching: Option<i32>, recordings: usize| RoomTotals {
            phase,
            on_camera: on_camera.unwrap_or(0),
            watching: watching.unwrap_or(0),
            recordings: recordings as i32,
        };
    let mine = |ns: Option<String>, event: &str| {
        ns.as_deref() == Some(namespace.as_str()) && event == name
    };
    let sessions: Vec<RoomTotals> = ctx
        .sessions
        .state()
        .into_iter()
        .filter(|s| mine(s.namespace(), &s.spec.event))
        .map(|s| {
            let st = s.status.clone().unwrap_or_default();
            totals(st.phase, st.on_camera, st.watching, st.recordings.len())
        })
        .collect();
    let stages: Vec<RoomTotals> = ctx
        .stages
        .state()
        .into_iter()
        .filter(|s| mine(s.namespace(), &s.spec.event))
        .map(|s| {
            let st = s.status.clone().unwrap_or_default();
            totals(st.phase, st.on_camera, st.watching, st.recordings.len())
        })
        .collect();
    let now = Timestamp::now();
    let r = rollup(
        event.spec.start.0,
        event.spec.end.0,
        now,
        &sessions,
        &stages,
    );
    let status = json!({
        "apiVersion": "roundtable.dev/v1alpha1",
        "kind": "LiveEvent",
        "status": {
            "phase": r.phase,
            "observedGeneration": event.metadata.generation,
            "sessions": r.sessions,
            "sessionsLive": r.sessions_live,
            "watching": r.watching,
            "onCamera": r.on_camera,
            "recordings": r.recordings,
        }
    });
    Api::<LiveEvent>::namespaced(ctx.client.clone(), &namespace)
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&status),
        )
        .await?;
    Ok(match r.next_change {
        Some(at) => Action::requeue(Duration::from_secs(
            at.duration_since(now).as_secs().clamp(1, 3600) as u64,
        )),
        None => Action::await_change(),
    })
}
