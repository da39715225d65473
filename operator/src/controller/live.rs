//! The reconcile of every kind that gets an SFU pod: observe, plan, apply.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use roundtable_crds::{LivePhase, MoveState, NetworkMode};
use serde_json::json;
use tracing::{info, warn};

use super::Context;
use super::kinds::{LiveKind, StatusFacts};
use super::observe;
use crate::plan::conditions::conditions;
use crate::plan::decide::{
    Child, ChildFailure, ConditionPlan, EventPlan, Observed, POD_LOST, PodAction, Problem,
    Severity, decide,
};
use crate::plan::moving::{
    MOVE_REQUESTED, MoveFacts, MoveStep, PodSeen, current_origin, plan_move,
};
use crate::plan::pod::{disruption_budget, endpoint, host_port_of, moved_pod, pod_name, sfu_pod};
use crate::plan::ports::pick_host_port;
use crate::plan::references::{self, Found};
use crate::plan::service;
use crate::{Error, Result};

/// Reconciles one session, stage or room.
pub async fn reconcile<K: LiveKind>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(K::CONTROLLER);
    let result = apply(obj.as_ref(), &ctx).await;
    ctx.metrics.reconciled(K::CONTROLLER, result.is_ok());
    match &result {
        // A child the API server refused keeps its backoff growing until a retry succeeds.
        Ok(outcome) if outcome.child_failed => {}
        Ok(_) => ctx.succeeded(&super::failure_key(obj.as_ref())),
        Err(error) => ctx.metrics.failed(K::CONTROLLER, error),
    }
    result.map(|outcome| outcome.action)
}

/// What one reconcile did.
struct Outcome {
    action: Action,
    /// A child (pod, Service, budget) was refused: the status says why and the retry backs off.
    child_failed: bool,
}

/// Turns a refused write of a child into what status says; other errors (the API server
/// unreachable, a conflict) stay errors and are retried.
fn refused(child: Child, error: kube::Error) -> Result<ChildFailure> {
    match error {
        kube::Error::Api(e) if (400..500).contains(&e.code) && e.code != 409 => {
            Ok(ChildFailure::from_api(child, e.code, &e.reason, &e.message))
        }
        e => Err(e.into()),
    }
}

/// What a metadata read of a Secret (and its key) found.
async fn find_secret(client: &kube::Client, namespace: &str, name: &str, key: &str) -> Found {
    match Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
    {
        Ok(None) => Found::Missing,
        Ok(Some(secret)) => {
            let has = secret.data.as_ref().is_some_and(|d| d.contains_key(key))
                || secret
                    .string_data
                    .as_ref()
                    .is_some_and(|d| d.contains_key(key));
            if has { Found::Yes } else { Found::MissingKey }
        }
        Err(_) => Found::Unknown,
    }
}

async fn find_claim(client: &kube::Client, namespace: &str, name: &str) -> Found {
    match Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace)
        .get_metadata_opt(name)
        .await
    {
        Ok(None) => Found::Missing,
        Ok(Some(_)) => Found::Yes,
        Err(_) => Found::Unknown,
    }
}

async fn apply<K: LiveKind>(obj: &K, ctx: &Context) -> Result<Outcome> {
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
            message: format!(
                "LiveEvent {name} does not exist in namespace {namespace}; the room cannot run without it (a live SFU pod is drained)"
            ),
            severity: Severity::StopsRoom,
        });
    }
    problems.extend(obj.reference_problems(event.as_ref()));
    if let Some(e) = &event {
        problems.extend(references::outside_event_window(
            room.start,
            room.end,
            &e.name_any(),
            e.spec.start.0,
            e.spec.end.0,
        ));
    }
    if let Some((secret, key)) = obj.passcode_secret() {
        let found = find_secret(&client, &namespace, &secret, &key).await;
        problems.extend(references::passcode(&namespace, &secret, &key, found));
    }
    let claim = event
        .as_ref()
        .and_then(|e| e.spec.recording_storage.as_ref())
        .map(|s| s.persistent_volume_claim.clone())
        .filter(|_| obj.recording());
    let claim_found = match &claim {
        Some(claim) => find_claim(&client, &namespace, claim).await,
        None => Found::Unknown,
    };
    if let Some(claim) = &claim {
        problems.extend(references::recording_claim(&namespace, claim, claim_found));
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    // The room's own pod name (also its budget's and relays' prefix); the origin pod may be
    // one a move made.
    let base = pod_name(&room);
    let owned = |name: &str| {
        ctx.sfu_pods
            .get(&ObjectRef::new(name).within(&namespace))
            .map(|p| p.as_ref().clone())
            .filter(|p| {
                p.owner_references()
                    .iter()
                    .any(|o| Some(&o.uid) == obj.meta().uid.as_ref())
            })
    };
    let written = ctx.last_written(obj);
    let previous_move = match &written {
        Some(w) => w.pod_move.clone(),
        None => obj.previous().pod_move,
    };

    // An organiser's move (`roundtable.dev/move-requested-at`): decided before the room's
    // own plan, which follows the pod the endpoint names.
    let seen = |p: &Pod| PodSeen {
        state: observe::pod_state(p),
        node: p.spec.as_ref().and_then(|s| s.node_name.clone()),
    };
    let origin_before = owned(&current_origin(&base, previous_move.as_ref()));
    let other = previous_move.as_ref().and_then(|m| match m.state {
        MoveState::Moving => owned(&m.to_pod),
        MoveState::Switching => owned(&m.from_pod),
        MoveState::Moved | MoveState::Failed => None,
    });
    let requested = obj
        .meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(MOVE_REQUESTED).cloned());
    let settings = room.settings(event.as_ref());
    let unmovable = (service::mode(&settings) != NetworkMode::HostPort).then_some(
        "it has a media Service (LoadBalancer or NodePort), which would send media to both pods; moves need the HostPort network mode",
    );
    let move_plan = plan_move(
        &MoveFacts {
            base: &base,
            requested: requested.as_deref(),
            previous: previous_move.as_ref(),
            origin: origin_before.as_ref().map(seen).as_ref(),
            other: other.as_ref().map(seen).as_ref(),
            unmovable,
            now,
        },
        ctx.config.stats_interval,
    );
    let name = current_origin(&base, move_plan.status.as_ref());
    let pod = if origin_before.as_ref().is_some_and(|p| p.name_any() == name) {
        origin_before.clone()
    } else {
        owned(&name)
    };
    let pod_state = pod.as_ref().map(observe::pod_state);
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let counts = match (&pod, &pod_state) {
        (Some(pod), Some(crate::plan::decide::PodState::Running { ready: true })) => {
            observe::counts(&ctx.http, pod, ctx.config.sfu_admin_port).await
        }
        _ => None,
    };

    // The join-token Secret is read when a pod is to be made: without it the kubelet cannot
    // start one (a running pod read its key when it started).
    if pod.is_none() && !ctx.config.token_secret.is_empty() {
        let (secret, key) = (&ctx.config.token_secret, &ctx.config.token_secret_key);
        let found = find_secret(&client, &namespace, secret, key).await;
        problems.extend(references::join_token(&namespace, secret, key, found));
    }

    // Plan.
    let mut previous = obj.previous();
    // The watch cache may not hold this process's last status write yet: the phase it wrote
    // is newer (so an Event such as Live is recorded once).
    if let Some(w) = &written {
        previous.phase = Some(w.phase);
        previous.restarts = w.restarts.clone();
    }
    let previous_ready = previous
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.reason.clone());
    let degraded = previous
        .conditions
        .iter()
        .find(|c| {
            c.type_ == "Degraded" && c.status == "True" && POD_LOST.contains(&c.reason.as_str())
        })
        .map(|c| c.message.clone());
    let degraded = match written {
        Some(w) => w.degraded,
        None => degraded,
    };
    let desired = obj.desired(event.as_ref(), now, &ctx.config);
    let had_pod = {
        let mut seen = ctx.pods_seen.lock().expect("not poisoned");
        let key = room.room_id();
        let had = seen.contains(&key);
        if pod.is_some() {
            seen.insert(key);
        } else if matches!(desired, crate::plan::schedule::Desired::Over(_)) {
            seen.remove(&key);
        }
        had
    };
    let observed = Observed {
        pod: pod_state,
        counts,
        problems,
        had_pod,
        degraded,
        restarts: previous.restarts.clone(),
    };
    let mut plan = decide(
        desired,
        &observed,
        previous.phase,
        now,
        ctx.config.stats_interval,
    );
    let media_svc = match service::mode(&settings) {
        NetworkMode::HostPort => None,
        _ => services.get_opt(&base).await?,
    };
    let owner = obj
        .controller_owner_ref(&())
        .expect("a stored object has a name and uid");

    // Apply: pod and disruption budget. A write the API server refuses (an invalid
    // quantity, a PriorityClass that does not exist, a quota) is what status reports.
    let params = PatchParams::apply(crate::FIELD_MANAGER).force();
    let mut failure: Option<ChildFailure> = None;
    match plan.pod {
        PodAction::Ensure if pod.is_none() => 'create: {
            // In LoadBalancer and NodePort modes the Service comes first: the SFU announces
            // its address.
            let mut port = free_host_port(ctx)?;
            let mut advertise = None;
            if let Some(desired) = service::media_service(&room, &settings, port, owner.clone()) {
                let current = match &media_svc {
                    Some(existing) => existing.clone(),
                    None => match services
                        .patch(&base, &params, &Patch::Apply(&desired))
                        .await
                    {
                        Ok(created) => created,
                        Err(e) => {
                            failure = Some(refused(Child::Service, e)?);
                            break 'create;
                        }
                    },
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
                        message: format!("the Service {base} has no load balancer address yet"),
                    });
                    plan.event = (previous.phase != Some(LivePhase::Starting)).then(|| EventPlan {
                        warning: false,
                        reason: "Starting",
                        note: format!(
                            "created the Service {base}; waiting for its load balancer address"
                        ),
                    });
                }
            }
            if advertise.is_some() || service::mode(&settings) == NetworkMode::HostPort {
                let mut desired_pod = sfu_pod(
                    &room,
                    &settings,
                    &ctx.pod_config(&settings),
                    port,
                    advertise,
                    owner.clone(),
                );
                // After a move the room's origin pod has the name the move gave it.
                desired_pod.metadata.name = Some(name.clone());
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
                    Err(kube::Error::Api(e)) if e.code == 409 => {
                        plan.event = None;
                        plan.restarts = previous.restarts.clone();
                    }
                    Err(e) => {
                        failure = Some(refused(Child::Pod, e)?);
                        break 'create;
                    }
                }
            }
            let pdb = disruption_budget(&room, owner.clone());
            if let Err(e) = Api::<PodDisruptionBudget>::namespaced(client.clone(), &namespace)
                .patch(&base, &params, &Patch::Apply(&pdb))
                .await
            {
                failure = Some(refused(Child::DisruptionBudget, e)?);
            }
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
                // A room that ends mid-move ends on both of its pods.
                if plan.pod == PodAction::Drain
                    && let Some(other) = &other
                {
                    let params = DeleteParams {
                        grace_period_seconds: params.grace_period_seconds,
                        ..Default::default()
                    };
                    match pods.delete(&other.name_any(), &params).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                // A load balancer costs money while it exists: it goes with the room.
                if plan.pod == PodAction::Drain && media_svc.is_some() {
                    match services.delete(&base, &DeleteParams::default()).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(e)) if e.code == 404 => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                // The budget would block the drain's eviction-free delete only for evictions;
                // removing it lets node drains proceed once the room is over.
                let pdbs = Api::<PodDisruptionBudget>::namespaced(client.clone(), &namespace);
                match pdbs.delete(&base, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        PodAction::Ensure | PodAction::Keep => {}
    }
    // Apply: the move's step.
    // A step of the move that failed where people notice it, beside the move's own Event.
    let mut move_trouble: Option<crate::plan::decide::EventPlan> = None;
    match &move_plan.step {
        MoveStep::Create { pod: new, avoid } => {
            let port = free_host_port(ctx)?;
            let desired_pod = moved_pod(
                sfu_pod(
                    &room,
                    &settings,
                    &ctx.pod_config(&settings),
                    port,
                    None,
                    owner.clone(),
                ),
                new,
                avoid,
            );
            let create = PostParams {
                field_manager: Some(crate::FIELD_MANAGER.into()),
                ..Default::default()
            };
            match pods.create(&create, &desired_pod).await {
                Ok(_) => info!(pod = %new, avoid = %avoid, port, "created the SFU pod of a move"),
                // Created by an earlier reconcile (or the previous leader): never a duplicate.
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        MoveStep::Leave { pod: old } => {
            if let Some(old_pod) = owned(old)
                && let Err(e) =
                    observe::ask_to_leave(&ctx.http, &old_pod, ctx.config.sfu_admin_port).await
            {
                // The old pod's people then re-join when it is deleted, a few seconds later:
                // a cut instead of a notice, which the organiser should hear of.
                warn!(pod = %old, error = %e, "could not ask the old SFU pod of a move to send its people away");
                move_trouble = Some(crate::plan::decide::EventPlan {
                    warning: true,
                    reason: "RoomMoveNoticeFailed",
                    note: format!(
                        "could not ask {old} to send its people to the new pod ({e}); they are cut when it is deleted and their pages re-join"
                    ),
                });
            }
        }
        MoveStep::RemoveOld { pod: old } | MoveStep::GiveUp { pod: old } => {
            let params = DeleteParams {
                grace_period_seconds: Some(if matches!(move_plan.step, MoveStep::GiveUp { .. }) {
                    0
                } else {
                    MOVED_POD_GRACE
                }),
                ..Default::default()
            };
            match pods.delete(old, &params).await {
                Ok(_) => info!(pod = %old, "deleted the SFU pod a move left behind"),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        MoveStep::None | MoveStep::Wait => {}
    }

    let child_failed = failure.is_some();
    if let Some(failure) = failure {
        warn!(kind = K::CONTROLLER, %namespace, name = %obj.name_any(), reason = failure.reason, detail = %failure.message, "a child was refused; reported in status");
        let backoff = ctx.failed(super::failure_key(obj));
        plan = plan.child_failed(
            failure,
            previous_ready.as_deref(),
            &previous.restarts,
            backoff,
        );
    }

    // Events.
    for planned in plan
        .event
        .iter()
        .chain(&move_plan.event)
        .chain(&move_trouble)
    {
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
                claim_found != Found::Missing,
            )
            .await?,
        )
    } else {
        None
    };
    let recorder_active = recordings.as_ref().is_some_and(|r| r.active);
    if let Some(failed) = recordings.as_ref().and_then(|r| r.failed.clone()) {
        plan.conditions.push(ConditionPlan {
            type_: "Recording",
            status: false,
            reason: failed.reason,
            message: failed.message,
        });
    }

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
        pod_move: move_plan.status.clone(),
    };
    let status = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": obj.status(&facts),
    });
    Api::<K>::namespaced(client, &namespace)
        .patch_status(&obj.name_any(), &params, &Patch::Apply(&status))
        .await?;
    ctx.remember_written(
        obj,
        super::Written {
            phase: plan.phase,
            restarts: plan.restarts.clone(),
            degraded: plan
                .conditions
                .iter()
                .find(|c| c.type_ == "Degraded" && c.status && POD_LOST.contains(&c.reason))
                .map(|c| c.message.clone()),
            pod_move: move_plan.status.clone(),
        },
    );
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
    let due = match (due, move_plan.requeue_after) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let requeue = match (requeue, due) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(Outcome {
        action: requeue.map_or_else(Action::await_change, Action::requeue),
        child_failed,
    })
}

/// The grace period of the old pod a move deletes: its people were sent away already, so
/// sfu-node has nothing left to drain.
const MOVED_POD_GRACE: u32 = 5;

/// How long a port handed out counts as used even if no pod in the cache shows it: longer
/// than a created pod takes to reach the watch cache.
const PICKED_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// The least used hostPort among the SFU pods the operator knows of and the ports it handed
/// out lately. Without the latter, reconciles running at once (many sessions applied
/// together) all read the same cache and give their pods the same port, and the scheduler
/// can place only one of them per node.
fn free_host_port(ctx: &Context) -> Result<u16> {
    let mut picked = ctx.ports_picked.lock().unwrap_or_else(|e| e.into_inner());
    let now = std::time::Instant::now();
    picked.retain(|(_, at)| now.duration_since(*at) < PICKED_FOR);
    let in_use = ctx
        .sfu_pods
        .state()
        .into_iter()
        .filter_map(|p| host_port_of(&p))
        .chain(picked.iter().map(|(port, _)| *port))
        .collect::<Vec<_>>();
    let port = pick_host_port(ctx.config.host_ports.clone(), in_use)
        .ok_or_else(|| Error::NoHostPort(format!("{:?}", ctx.config.host_ports)))?;
    picked.push((port, now));
    Ok(port)
}
