//! The relay pods of a session or stage: autoscale `spec.relays` through the scale
//! subresource, create and delete relay pods, and read each relay's `/stats` for the status.
//!
//! The decisions are [`crate::plan::relay`]'s; this only observes and applies them.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, ResourceExt};
use roundtable_crds::{LivePhase, NetworkMode, RelayPod, SfuPodSettings};
use serde_json::json;
use tracing::{info, warn};

use super::Context;
use super::kinds::LiveKind;
use super::observe;
use crate::Result;
use crate::plan::decide::{Counts, PodState};
use crate::plan::pod::{endpoint, host_port_of};
use crate::plan::ports::pick_host_port;
use crate::plan::relay::{
    self, ExistingRelay, ObservedRelay, RelayPodInput, actions, autoscale, index_of, origin_of,
    origin_url, relay_pod,
};
use crate::plan::service;
use roundtable_crds::live_room::LiveRoom;

/// What the status says of a room's relays.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayFacts {
    /// Ready relays (`status.relays`).
    pub ready: i32,
    pub selector: String,
    pub pods: Vec<RelayPod>,
    pub watchers_per_pod: i32,
    pub lower_since: Option<Timestamp>,
    /// When a pending scale-in is due: look again then.
    pub recheck_at: Option<Timestamp>,
}

/// The origin as the relays see it.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub pod: Option<&'a Pod>,
    pub phase: LivePhase,
    pub counts: Option<Counts>,
}

/// Reconciles the relays of `obj`; None for kinds without relays (rooms).
pub async fn reconcile<K: LiveKind>(
    ctx: &Context,
    obj: &K,
    room: &LiveRoom,
    settings: &SfuPodSettings,
    origin: Origin<'_>,
    owner: &OwnerReference,
    now: Timestamp,
) -> Result<Option<RelayFacts>> {
    let Some(mut spec) = obj.relay_spec() else {
        return Ok(None);
    };
    let live = origin.phase == LivePhase::Live;

    // The autoscaler, like an HPA, writes spec.relays through the scale subresource.
    let mut lower_since = if live { spec.lower_since } else { None };
    let mut recheck_at = None;
    if let (true, Some(counts)) = (live, origin.counts)
        && let Some(scaling) = autoscale(&spec, counts.watching, now)
    {
        if let Some(replicas) = scaling.replicas {
            Api::<K>::namespaced(ctx.client.clone(), &room.namespace)
                .patch_scale(
                    &obj.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"replicas": replicas}})),
                )
                .await?;
            info!(room = %room.room_id(), from = spec.replicas, to = replicas, "scaled relays");
            spec.replicas = replicas;
        }
        if let Some(planned) = scaling.event {
            let event = Event {
                type_: EventType::Normal,
                reason: planned.reason.into(),
                note: Some(planned.note),
                action: "Scale".into(),
                secondary: None,
            };
            if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
                warn!(error = %e, "could not record an Event");
            }
        }
        lower_since = scaling.lower_since;
        recheck_at = scaling.recheck_at;
    }

    // Relay pods: only while the origin is live.
    let origin_url = origin.pod.filter(|_| live).and_then(|pod| {
        let ip = pod.status.as_ref()?.pod_ip.clone()?;
        Some(origin_url(&ip, host_port_of(pod)?))
    });
    let uid = obj.meta().uid.clone();
    let existing: Vec<Pod> = ctx
        .sfu_pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(room.namespace.as_str()))
        .filter(|p| index_of(room, &p.name_any()).is_some())
        .filter(|p| {
            p.owner_references()
                .iter()
                .any(|o| Some(&o.uid) == uid.as_ref())
        })
        .map(|p| p.as_ref().clone())
        .collect();
    let described: Vec<ExistingRelay> = existing
        .iter()
        .filter_map(|p| {
            Some(ExistingRelay {
                index: index_of(room, &p.name_any())?,
                name: p.name_any(),
                state: observe::pod_state(p),
                origin: origin_of(p),
            })
        })
        .collect();
    let want = u32::try_from(spec.replicas).unwrap_or(0);
    let todo = actions(want, origin_url.as_deref(), &described);

    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &room.namespace);
    for name in &todo.delete {
        match pods.delete(name, &DeleteParams::default()).await {
            Ok(_) => info!(pod = %name, "removed relay pod"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }

    // In the Service modes each relay has its own Service; those of relays that are no
    // longer wanted go (a load balancer costs money while it exists).
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &room.namespace);
    let mut relay_services = Vec::new();
    if service::mode(settings) != NetworkMode::HostPort {
        let running = if origin_url.is_some() { want } else { 0 };
        let listed = services
            .list(&ListParams::default().labels(&relay::selector(room)))
            .await?
            .items;
        for svc in listed {
            let name = svc.name_any();
            if index_of(room, &name).is_some_and(|i| i < running) {
                relay_services.push(svc);
                continue;
            }
            match services.delete(&name, &DeleteParams::default()).await {
                Ok(_) => info!(service = %name, "removed relay Service"),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    if let Some(url) = &origin_url {
        let mut in_use: Vec<u16> = ctx
            .sfu_pods
            .state()
            .into_iter()
            .filter_map(|p| host_port_of(&p))
            .collect();
        let apply = PatchParams::apply(crate::FIELD_MANAGER).force();
        for index in &todo.create {
            let mut port = pick_host_port(ctx.config.host_ports.clone(), in_use.clone())
                .ok_or_else(|| crate::Error::NoHostPort(format!("{:?}", ctx.config.host_ports)))?;
            in_use.push(port);
            // The Service comes first: the relay announces its address.
            let mut advertise = None;
            if let Some(desired) =
                service::relay_service(room, settings, port, owner.clone(), *index)
            {
                let name = desired.name_any();
                let current = match relay_services.iter().find(|s| s.name_any() == name) {
                    Some(existing) => existing.clone(),
                    None => {
                        let created = services
                            .patch(&name, &apply, &Patch::Apply(&desired))
                            .await?;
                        relay_services.push(created.clone());
                        created
                    }
                };
                port = service::port_of(&current).unwrap_or(port);
                advertise = service::advertise(settings, &current);
                if advertise.is_none() {
                    // A load balancer without an address yet: its Service change wakes us.
                    continue;
                }
            }
            let input = RelayPodInput {
                index: *index,
                host_port: port,
                origin_url: url,
                watchers_per_relay: spec.watchers_per_relay,
                advertise,
            };
            let pod = relay_pod(
                room,
                settings,
                &ctx.pod_config(settings),
                &input,
                owner.clone(),
            );
            let params = PostParams {
                field_manager: Some(crate::FIELD_MANAGER.into()),
                ..Default::default()
            };
            match pods.create(&params, &pod).await {
                Ok(_) => info!(pod = %pod.name_any(), port, "created relay pod"),
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    // Status: every relay that stays, with its endpoint and the watchers it reports.
    let mut observed = Vec::new();
    for pod in existing
        .iter()
        .filter(|p| !todo.delete.contains(&p.name_any()))
    {
        let Some(index) = index_of(room, &pod.name_any()) else {
            continue;
        };
        let state = observe::pod_state(pod);
        let host_ip = pod.status.as_ref().and_then(|s| s.host_ip.clone());
        let endpoint = match relay_services
            .iter()
            .find(|s| s.name_any() == pod.name_any())
        {
            Some(svc) => service::endpoint(settings, svc, host_ip.as_deref()),
            None => host_port_of(pod).and_then(|port| endpoint(settings, host_ip.as_deref(), port)),
        };
        let watching = match state {
            PodState::Running { ready: true } => {
                observe::counts(&ctx.http, pod, ctx.config.sfu_admin_port)
                    .await
                    .map(|c| c.watching)
            }
            _ => None,
        };
        observed.push(ObservedRelay {
            index,
            name: pod.name_any(),
            state,
            endpoint,
            watching,
        });
    }
    let (ready, relay_pods) = relay::status(&observed);
    Ok(Some(RelayFacts {
        ready,
        selector: relay::selector(room),
        pods: relay_pods,
        watchers_per_pod: spec.watchers_per_relay,
        lower_since,
        recheck_at,
    }))
}

/// How long until `at`, at least a second.
pub fn until(at: Timestamp, now: Timestamp) -> Duration {
    Duration::from_secs(at.duration_since(now).as_secs().max(1) as u64)
}
