//! The reconcile of every kind that gets an SFU pod: observe, plan, apply.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use roundtable_crds::{LivePhase, NetworkMode};
use serde_json::json;
use tracing::{info, warn};

use super::Context;
use super::kinds::{LiveKind, StatusFacts};
use super::observe;
use crate::plan::conditions::conditions;
use crate::plan::decide::{ConditionPlan, EventPlan, Observed, PodAction, Problem, decide};
use crate::plan::pod::{disruption_budget, endpoint, host_port_of, pod_name, sfu_pod};
use crate::plan::ports::pick_host_port;
use crate::plan::service;
use crate::{Error, Result};

/// Reconciles one session, stage or room.
pub async fn reconcile<K: LiveKind>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(K::CONTROLLER);
    let result = apply(obj.as_ref(), &ctx).await;
    ctx.metrics.reconciled(K::CONTROLLER, result.is_ok());
    match &result {
        Ok(_) => ctx.succeeded(&super::failure_key(obj.as_ref())),
        Err(error) => ctx.metrics.failed(K::CONTROLLER, error),
    }
    result
}

async fn apply<K: LiveKind>(obj: &K, ctx: &Context) -> Result<Action> {
    let now = Timestamp::now();
    let room = obj.room();
    let namespace = room.namespace.clone();
    let client = ctx.client.clone();

    // Observe, from the watch caches: the event and the pod.
    let event = room.event.as_ref().and_then(|name| {
        ctx.events
            .get(&ObjectRef::new(name).within(&namespace))
            .map(|e| e.as_ref().clone())
    });
    let mut problems = Vec::new();
    if let (Some(name), None) = (&room.event, &event) {
        problems.push(Problem {
            reason: "EventNotFound",
            message: format!("LiveEvent {name} does not exist in namespace {namespace}"),
            blocking: true,
        });
    }
    problems.extend(obj.reference_problems(event.as_ref()));
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let name = pod_name(&room);
    let pod = ctx
        .sfu_pods
        .get(&ObjectRef::new(&name).within(&namespace))
        .map(|p| p.as_ref().clone())
        .filter(|p| {
            p.owner_references()
                .iter()
                .any(|o| Some(&o.uid) == obj.meta().uid.as_ref())
        });
    let pod_state = pod.as_ref().map(observe::pod_state);
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let counts = match (&pod, &pod_state) {
        (Some(pod), Some(crate::plan::decide::PodState::Running { ready: true })) => {
            observe::counts(&ctx.http, pod, ctx.config.sfu_admin_port).await
        }
        _ => None,
    };

    // Plan.
    let previous = obj.previous();
    let desired = obj.desired(event.as_ref(), now, &ctx.config);
    let had_pod = {
        let mut seen = ctx.pods_seen.lock().expect("not poisoned");
        let key = room.room_id();
        let had = seen.contains(&key);
        if pod.is_some() {
            seen.insert(key);
        } else if matches!(desired, crate::plan::schedule::Desired::Over) {
            seen.remove(&key);
        }
        had
    };
    let observed = Observed {
        pod: pod_state,
        counts,
        problems,
        had_pod,
    };
    let mut plan = decide(
        desired,
        &observed,
        previous.phase,
        now,
        ctx.config.stats_interval,
    );
    let settings = room.settings(event.as_ref());
    let media_svc = match service::mode(&settings) {
        NetworkMode::HostPort => None,
        _ => services.get_opt(&name).await?,
    };
    let owner = obj
        .controller_owner_ref(&())
        .expect("a stored object has a name and uid");

    // Apply: pod and disruption budget.
    let params = PatchParams::apply(crate::FIELD_MANAGER).force();
    match plan.pod {
        PodAction::Ensure if pod.is_none() => {
            // In LoadBalancer and NodePort modes the Service comes first: the SFU announces
            // its address.
            let mut port = free_host_port(ctx)?;
            let mut advertise = None;
            if let Some(desired) = service::media_service(&room, &settings, port, owner.clone()) {
                let current = match &media_svc {
                    Some(existing) => existing.clone(),
                    None => {
                        services
                            .patch(&name, &params, &Patch::Apply(&desired))
                            .await?
                    }
                };
                port = current
                    .spec
                    .as_ref()
                    .and_then(|s| s.ports.as_ref()?.first().map(|p| p.port))
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(port);
                advertise = service::advertise(&settings, &current);
                if advertise.is_none() {
                    plan.conditions.retain(|c| c.type_ != "Ready");
                    plan.conditions.push(ConditionPlan {
                        type_: "Ready",
                        status: false,
                        reason: "WaitingForLoadBalancer",
                        message: format!("the Service {name} has no load balancer address yet"),
                    });
                    plan.event = (previous.phase != Some(LivePhase::Starting)).then(|| EventPlan {
                        warning: false,
                        reason: "Starting",
                        note: format!(
                            "created the Service {name}; waiting for its load balancer address"
                        ),
                    });
                }
            }
            if advertise.is_some() || service::mode(&settings) == NetworkMode::HostPort {
                let desired_pod = sfu_pod(
                    &room,
                    &settings,
                    &ctx.config,
                    port,
                    advertise,
                    owner.clone(),
                );
                match pods
                    .create(
                        &PostParams {
                            field_manager: Some(crate::FIELD_MANAGER.into()),
                            ..Default::default()
                        },
                        &desired_pod,
                    )
                    .await
                {
                    Ok(_) => {
                        info!(pod = %name, port, "created SFU pod");
                        ctx.pods_seen
                            .lock()
                            .expect("not poisoned")
                            .insert(room.room_id());
                    }
                    // Another reconcile (or the previous leader) created it first: never a
                    // duplicate, and nothing new to report.
                    Err(kube::Error::Api(e)) if e.code == 409 => plan.event = None,
                    Err(e) => return Err(e.into()),
                }
            }
            let pdb = disruption_budget(&room, owner.clone());
            Api::<PodDisruptionBudget>::namespaced(client.clone(), &namespace)
                .patch(&name, &params, &Patch::Apply(&pdb))
                .await?;
        }
        PodAction::Drain | PodAction::Replace => {
            if let Some(pod) = &pod {
                let grace = match plan.pod {
                    PodAction::Drain => Some(ctx.config.drain_grace_seconds as u32),
                    _ => Some(0),
                };
                let params = DeleteParams {
                    grace_period_seconds: grace,
                    preconditions: Some(Preconditions {
                        uid: pod.uid(),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match pods.delete(&name, &params).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                    Err(e) => return Err(e.into()),
                }
                // A load balancer costs money while it exists: it goes with the room.
                if plan.pod == PodAction::Drain && media_svc.is_some() {
                    match services.delete(&name, &DeleteParams::default()).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(e)) if e.code == 404 => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                // The budget would block the drain's eviction-free delete only for evictions;
                // removing it lets node drains proceed once the room is over.
                let pdbs = Api::<PodDisruptionBudget>::namespaced(client.clone(), &namespace);
                match pdbs.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        PodAction::Ensure | PodAction::Keep => {}
    }

    // Events.
    if let Some(planned) = &plan.event {
        let event = Event {
            type_: if planned.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: planned.reason.into(),
            note: Some(planned.note.clone()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
            warn!(error = %e, "could not record an Event");
        }
    }

    // Recording: the session's recorder Job and what it reports.
    let previous_recordings = obj.previous_recordings();
    let recordings = if obj.recording() || !previous_recordings.is_empty() {
        Some(
            super::recording::reconcile(
                ctx,
                obj,
                &room,
                obj.recording(),
                event.as_ref(),
                plan.phase,
                pod.as_ref(),
                &previous_recordings,
            )
            .await?,
        )
    } else {
        None
    };
    let recorder_active = recordings.as_ref().is_some_and(|r| r.active);

    // Relays: the autoscaler, the relay pods and what they report.
    let relays = super::relays::reconcile(
        ctx,
        obj,
        &room,
        &settings,
        super::relays::Origin {
            pod: pod.as_ref(),
            phase: plan.phase,
            counts: plan.counts.filter(|_| observed.counts.is_some()),
        },
        &owner,
        now,
    )
    .await?;

    // Status.
    let counts = plan.counts.unwrap_or_default();
    let live = plan.phase == LivePhase::Live;
    let host_ip = pod
        .as_ref()
        .and_then(|p| p.status.as_ref()?.host_ip.clone());
    let endpoint = match &media_svc {
        Some(svc) => service::endpoint(&settings, svc, host_ip.as_deref()),
        None => pod
            .as_ref()
            .and_then(host_port_of)
            .and_then(|port| endpoint(&settings, host_ip.as_deref(), port)),
    }
    .filter(|_| {
        matches!(
            plan.phase,
            LivePhase::Live | LivePhase::Starting | LivePhase::Draining
        )
    });
    let facts = StatusFacts {
        plan: &plan,
        generation: obj.meta().generation,
        conditions: serde_json::to_value(conditions(
            &plan.conditions,
            &previous.conditions,
            obj.meta().generation,
            now,
        ))?,
        endpoint,
        // The SFU's own peaks are exact; the status keeps the highest across SFU restarts.
        peak_on_camera: previous
            .peak_on_camera
            .max(counts.peak_on_camera.unwrap_or(counts.on_camera)),
        peak_watching: previous
            .peak_watching
            .max(counts.peak_watching.unwrap_or(counts.watching)),
        started_at: previous.started_at.or(live.then_some(now)),
        ended_at: previous
            .ended_at
            .or((plan.phase == LivePhase::Ended).then_some(now)),
        // Someone in the room, or someone waiting for it to start, keeps a room alive.
        last_active: if counts.on_camera + counts.watching > 0 || plan.phase == LivePhase::Starting
        {
            Some(now)
        } else {
            previous.last_active
        },
        recordings: recordings.map(|r| r.summaries),
        relays: relays.clone(),
    };
    let status = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": obj.status(&facts),
    });
    Api::<K>::namespaced(client, &namespace)
        .patch_status(&obj.name_any(), &params, &Patch::Apply(&status))
        .await?;
    ctx.record_room(&room, live.then_some((counts.on_camera, counts.watching)));
    ctx.metrics.relays(
        &room,
        &pod_name(&room),
        relays.as_ref().filter(|_| live),
        counts.watching,
    );

    // A running recorder is read as often as a live pod's counts; a pending scale-in is
    // looked at when it is due.
    let requeue = match (plan.requeue_after, recorder_active) {
        (Some(after), true) => Some(after.min(ctx.config.stats_interval)),
        (None, true) => Some(ctx.config.stats_interval),
        (after, false) => after,
    };
    let due = relays
        .as_ref()
        .and_then(|r| r.recheck_at)
        .map(|at| super::relays::until(at, now));
    let requeue = match (requeue, due) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// The least used hostPort among the SFU pods the operator knows of.
fn free_host_port(ctx: &Context) -> Result<u16> {
    let in_use = ctx
        .sfu_pods
        .state()
        .into_iter()
        .filter_map(|p| host_port_of(&p))
        .collect::<Vec<_>>();
    pick_host_port(ctx.config.host_ports.clone(), in_use)
        .ok_or_else(|| Error::NoHostPort(format!("{:?}", ctx.config.host_ports)))
}
