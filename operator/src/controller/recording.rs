//! The recording Job of a session: apply what [`crate::plan::recording`] decides, and read
//! what the recorder reports into the Session's status.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PropagationPolicy};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use roundtable_crds::{LiveEvent, LivePhase, RecordingSummary};
use tracing::{info, warn};

use super::Context;
use crate::Result;
use crate::plan::decide::{Child, ChildFailure};
use crate::plan::pod::{LABEL_APP, LABEL_KIND, LABEL_ROOM, host_port_of, label_value};
use crate::plan::recording::{
    ANNOTATION_SFU, ExistingJob, RECORDER_APP, RecorderAction, RecorderPod, Reported, folder,
    job_name, recorder_action, recorder_job, recorder_stopped, recording_note, summaries,
};
use roundtable_crds::live_room::LiveRoom;

/// What the reconcile learned about a session's recordings.
#[derive(Debug)]
pub struct Recordings {
    pub summaries: Vec<RecordingSummary>,
    /// The recorder is still running: read it again soon.
    pub active: bool,
    /// The recorder Job could not be created, as the API server explained.
    pub failed: Option<ChildFailure>,
}

fn job_finished(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// Ensure the session's recorder runs while it should, and list its recordings.
#[allow(clippy::too_many_arguments)]
pub async fn reconcile<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    room: &LiveRoom,
    recording: bool,
    event: Option<&LiveEvent>,
    phase: LivePhase,
    sfu_pod: Option<&Pod>,
    previous: &[RecordingSummary],
    claim_exists: bool,
) -> Result<Recordings> {
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &room.namespace);
    let name = job_name(room);
    let job = jobs.get_opt(&name).await?;
    let pods = match &job {
        Some(_) => recorder_pods(ctx, room).await,
        None => Vec::new(),
    };
    let existing = job.as_ref().map(|j| ExistingJob {
        sfu: j.annotations().get(ANNOTATION_SFU).cloned(),
        active: !job_finished(j, "Complete") && !job_finished(j, "Failed"),
        started: pods.iter().any(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                None | Some("Pending")
            )
        }),
    });
    let sfu = sfu_pod.and_then(|pod| {
        let ip = pod.status.as_ref()?.pod_ip.clone()?;
        Some(format!("{ip}:{}", host_port_of(pod)?))
    });
    let claim = event
        .and_then(|e| e.spec.recording_storage.as_ref())
        .map(|s| s.persistent_volume_claim.as_str())
        .filter(|_| claim_exists);
    let action = recorder_action(recording, claim, phase, sfu.as_deref(), existing.as_ref());
    let mut failed = None;
    let note = match &action {
        RecorderAction::Create { sfu } => {
            let owner = obj
                .controller_owner_ref(&())
                .expect("a stored object has a name and uid");
            let desired = recorder_job(room, claim.expect("checked"), sfu, &ctx.config, owner);
            let params = PatchParams::apply(crate::FIELD_MANAGER).force();
            match jobs.patch(&name, &params, &Patch::Apply(&desired)).await {
                Ok(_) => {
                    info!(job = %name, %sfu, "created recording Job");
                    Some((
                        false,
                        "Recorder",
                        format!("started the recorder (Job {name})"),
                    ))
                }
                // The room runs on; the recording cannot. Say so where people look.
                Err(kube::Error::Api(e)) if (400..500).contains(&e.code) => {
                    let failure =
                        ChildFailure::from_api(Child::RecorderJob, e.code, &e.reason, &e.message);
                    failed = Some(failure.clone());
                    Some((true, failure.reason, failure.message))
                }
                Err(e) => return Err(e.into()),
            }
        }
        RecorderAction::Cancel => {
            delete_job(&jobs, &name, &DeleteParams::background()).await?;
            Some((
                false,
                "Recorder",
                format!("the room is over and its recorder never started; deleted Job {name}"),
            ))
        }
        RecorderAction::Replace => {
            // Foreground: the Job goes only after its pod has composed and exited, so two
            // recorders never write the same folder.
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Foreground),
                ..Default::default()
            };
            delete_job(&jobs, &name, &params).await?;
            Some((
                false,
                "Recorder",
                format!("the SFU moved; restarting the recorder (Job {name}) to follow it"),
            ))
        }
        RecorderAction::Nothing => None,
    };
    if let Some((warning, reason, note)) = note {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
            warn!(error = %e, "could not record an Event");
        }
    }
    let active = existing.as_ref().is_some_and(|j| j.active)
        || matches!(action, RecorderAction::Create { .. });
    let reported = if active {
        read_recorder(ctx, room).await
    } else {
        None
    };
    let job_failed = job.as_ref().is_some_and(|j| job_finished(j, "Failed"));
    let views: Vec<RecorderPod> = pods.iter().map(recorder_pod).collect();
    let stopped = recorder_stopped(existing.as_ref().is_some_and(|j| j.active), &views);
    let summaries = summaries(
        reported.as_deref(),
        previous,
        &folder(room),
        job_failed,
        stopped.is_some(),
    );
    if let Some(note) = recording_note(previous, &summaries, stopped.as_ref()) {
        info!(reason = note.reason, note = %note.note, "recording");
        let event = Event {
            type_: if note.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: note.reason.into(),
            note: Some(note.note),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
            warn!(error = %e, "could not record an Event");
        }
    }
    Ok(Recordings {
        summaries,
        active,
        failed,
    })
}

/// What the operator needs of a recorder pod: whether its recorder runs, and how its last
/// run ended.
fn recorder_pod(pod: &Pod) -> RecorderPod {
    let containers = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    RecorderPod {
        running: containers
            .iter()
            .any(|c| c.state.as_ref().is_some_and(|s| s.running.is_some())),
        last_exit: containers.iter().find_map(|c| {
            let ended = c.state.as_ref().and_then(|s| s.terminated.as_ref());
            let before = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
            ended.or(before).map(|t| t.exit_code)
        }),
    }
}

/// Deletes the recorder Job; one already gone is fine.
async fn delete_job(jobs: &Api<Job>, name: &str, params: &DeleteParams) -> Result<()> {
    match jobs.delete(name, params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The pods of the session's recorder Job (none when they cannot be listed).
async fn recorder_pods(ctx: &Context, room: &LiveRoom) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &room.namespace);
    let selector = format!(
        "{LABEL_APP}={RECORDER_APP},{LABEL_KIND}={},{LABEL_ROOM}={}",
        room.kind.as_str(),
        label_value(&room.name)
    );
    pods.list(&ListParams::default().labels(&selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// What the session's running recorder reports on its admin port.
async fn read_recorder(ctx: &Context, room: &LiveRoom) -> Option<Vec<Reported>> {
    for pod in recorder_pods(ctx, room).await {
        let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) else {
            continue;
        };
        if !running || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let url = format!("http://{ip}:{}/recordings", ctx.config.recorder_admin_port);
        let response = ctx
            .http
            .get(&url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        return response.error_for_status().ok()?.json().await.ok();
    }
    None
}
