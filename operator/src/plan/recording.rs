//! The recording Job of a session with recording on, and the recordings its recorder
//! reports, as pure functions.
//!
//! The Job (`rec-<session>`, owned by the Session) runs `roundtable-recorder`: it joins the
//! session's SFU as a hidden participant, writes to the LiveEvent's recording volume under
//! `<session>/`, and serves what it has recorded on its admin port, which the operator reads
//! into the Session's status; the recorder needs no Kubernetes API access. The Job is
//! created once the session is Live; it ends by itself once the recording has stopped for
//! good and its MP4 is composed (or when the session's room closes). Its pod restarts on
//! failure (a recorder SIGTERMed before the recording is over exits 143 for that) and the
//! new recorder continues the same recording from what is on the volume. While none runs,
//! the recording reads Interrupted ([`recorder_stopped`], [`summaries`]); each stop and
//! return is one Event ([`recording_note`]).

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, PersistentVolumeClaimVolumeSource, PodSpec,
    PodTemplateSpec, ResourceRequirements, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use roundtable_crds::{LivePhase, RecordingState, RecordingSummary};
use serde::Deserialize;

use super::pod::{
    LABEL_APP, LABEL_EVENT, LABEL_KIND, LABEL_MANAGED_BY, LABEL_ROOM, MANAGER, field_env,
    label_value, locked_down_container, non_root_pod, plain_env as env, token_key_env,
};
use crate::config::OperatorConfig;
use roundtable_crds::live_room::LiveRoom;

/// `app.kubernetes.io/name` of recorder Jobs and pods.
pub const RECORDER_APP: &str = "roundtable-recorder";
/// The annotation that records which SFU address a Job's recorder was given.
pub const ANNOTATION_SFU: &str = "roundtable.dev/sfu";
/// Where the recording volume is mounted in the recorder's container.
pub const MOUNT_PATH: &str = "/recordings";
const CONTAINER: &str = "recorder";
/// Pod restarts before the Job gives up.
const BACKOFF_LIMIT: i32 = 10;
/// A SIGTERMed recorder composes what it captured before exiting.
const TERMINATION_GRACE_SECONDS: i64 = 600;

/// Name of a session's recording Job: `rec-<session>`, shortened like pod names.
pub fn job_name(room: &LiveRoom) -> String {
    label_value(&format!("rec-{}", room.name))
}

/// The folder of a session's recordings on the volume, and the prefix of its files.
pub fn folder(room: &LiveRoom) -> String {
    room.name.clone()
}

/// Labels of the Job and its pod.
pub fn labels(room: &LiveRoom) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (LABEL_APP.to_string(), RECORDER_APP.to_string()),
        (LABEL_MANAGED_BY.to_string(), MANAGER.to_string()),
        (LABEL_KIND.to_string(), room.kind.as_str().to_string()),
        (LABEL_ROOM.to_string(), label_value(&room.name)),
    ]);
    if let Some(event) = &room.event {
        labels.insert(LABEL_EVENT.to_string(), label_value(event));
    }
    labels
}

/// What the operator knows of an existing recording Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingJob {
    /// The SFU address its recorder was given.
    pub sfu: Option<String>,
    /// Still running (not Complete or Failed).
    pub active: bool,
    /// Its recorder pod has started (it may hold media to compose).
    pub started: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RecorderAction {
    Nothing,
    /// Create the Job for the recorder to join the SFU at this address.
    Create {
        sfu: String,
    },
    /// Delete the running Job (its pods first): the room's SFU moved to another address. The
    /// next reconcile creates a new Job, whose recorder continues the same recording.
    Replace,
    /// Delete the Job whose recorder never started, now that the room is over: it would wait
    /// for ever (no node, no volume) and holds nothing to compose.
    Cancel,
}

/// Whether the session needs its recorder started (or moved): recording on, storage
/// named, the room Live with a known SFU address.
pub fn recorder_action(
    recording: bool,
    claim: Option<&str>,
    phase: LivePhase,
    sfu: Option<&str>,
    existing: Option<&ExistingJob>,
) -> RecorderAction {
    if let Some(job) = existing
        && job.active
        && !job.started
        && !matches!(phase, LivePhase::Starting | LivePhase::Live)
    {
        return RecorderAction::Cancel;
    }
    let (true, Some(_), LivePhase::Live, Some(sfu)) = (recording, claim, phase, sfu) else {
        return RecorderAction::Nothing;
    };
    match existing {
        None => RecorderAction::Create {
            sfu: sfu.to_string(),
        },
        Some(job) if job.active && job.sfu.as_deref() != Some(sfu) => RecorderAction::Replace,
        Some(_) => RecorderAction::Nothing,
    }
}

/// The recording Job of `room`, owned by `owner`: its recorder joins the SFU at `sfu`
/// (`IP:PORT`) and writes to the PersistentVolumeClaim `claim`.
pub fn recorder_job(
    room: &LiveRoom,
    claim: &str,
    sfu: &str,
    config: &OperatorConfig,
    owner: OwnerReference,
) -> Job {
    let labels = labels(room);
    let folder = folder(room);
    let env = vec![
        field_env("POD_IP", "status.podIP"),
        env("REC_SFU", sfu),
        env("REC_ROOM", &room.room_id()),
        env("REC_OUTPUT", &format!("{MOUNT_PATH}/{folder}")),
        env("REC_FILE_PREFIX", &format!("{folder}-")),
        env(
            "REC_ADMIN_ADDR",
            &format!("$(POD_IP):{}", config.recorder_admin_port),
        ),
        token_key_env("REC_TOKEN_KEY", config),
    ];
    let resources = ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("250m".into())),
            ("memory".to_string(), Quantity("256Mi".into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity("1Gi".into()),
        )])),
        ..Default::default()
    };
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(room)),
            namespace: Some(room.namespace.clone()),
            labels: Some(labels.clone()),
            annotations: Some(BTreeMap::from([(
                ANNOTATION_SFU.to_string(),
                sfu.to_string(),
            )])),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(BACKOFF_LIMIT),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: CONTAINER.into(),
                        image: Some(config.recorder_image.clone()),
                        env: Some(env),
                        ports: Some(vec![ContainerPort {
                            name: Some("admin".into()),
                            container_port: i32::from(config.recorder_admin_port),
                            protocol: Some("TCP".into()),
                            ..Default::default()
                        }]),
                        volume_mounts: Some(vec![
                            VolumeMount {
                                name: "recordings".into(),
                                mount_path: MOUNT_PATH.into(),
                                ..Default::default()
                            },
                            // The root is read-only; ffmpeg may want scratch space.
                            VolumeMount {
                                name: "tmp".into(),
                                mount_path: "/tmp".into(),
                                ..Default::default()
                            },
                        ]),
                        resources: Some(resources),
                        security_context: Some(locked_down_container()),
                        ..Default::default()
                    }],
                    volumes: Some(vec![
                        Volume {
                            name: "recordings".into(),
                            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                                claim_name: claim.into(),
                                read_only: Some(false),
                            }),
                            ..Default::default()
                        },
                        Volume {
                            name: "tmp".into(),
                            empty_dir: Some(EmptyDirVolumeSource::default()),
                            ..Default::default()
                        },
                    ]),
                    security_context: Some(non_root_pod()),
                    restart_policy: Some("OnFailure".into()),
                    termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// One recording as the recorder's `/recordings` reports it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reported {
    pub state: RecordingState,
    pub start_unix_ms: i64,
    pub duration_seconds: f64,
    pub captured_seconds: f64,
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub size_bytes: Option<i64>,
    /// How often a recorder stopped while people were on camera and a new one continued.
    #[serde(default)]
    pub interruptions: u32,
}

/// What the operator sees of one pod of the recording Job.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecorderPod {
    /// Its recorder container is running now.
    pub running: bool,
    /// The exit code of its recorder's last run, if one ended.
    pub last_exit: Option<i32>,
}

/// How the recorder stopped, when no recorder runs although its Job is still active and one
/// ran before: between a crash (or a SIGTERM) and the next start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecorderStopped {
    pub exit_code: Option<i32>,
}

impl RecorderStopped {
    /// The way it stopped, in words.
    pub fn how(&self) -> String {
        match self.exit_code {
            Some(137) => "was killed (SIGKILL, exit code 137)".into(),
            Some(143) => "was stopped (SIGTERM, exit code 143)".into(),
            Some(code) => format!("exited with code {code}"),
            None => "stopped".into(),
        }
    }
}

/// Whether the recorder is down: the Job is active, a recorder ran, and none runs now.
pub fn recorder_stopped(job_active: bool, pods: &[RecorderPod]) -> Option<RecorderStopped> {
    if !job_active || pods.iter().any(|p| p.running) {
        return None;
    }
    let exit_code = pods.iter().find_map(|p| p.last_exit)?;
    Some(RecorderStopped {
        exit_code: Some(exit_code),
    })
}

/// An Event to record about the session's recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingNote {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

/// What changed about the recording between the status before (`previous`) and now
/// (`current`), worth an Event: the recorder went down, or a new one continued it. A session
/// has at most one recording.
pub fn recording_note(
    previous: &[RecordingSummary],
    current: &[RecordingSummary],
    stopped: Option<&RecorderStopped>,
) -> Option<RecordingNote> {
    let now = current.first()?;
    let before_state = previous.first().map(|r| r.state);
    let before = previous.first().and_then(|r| r.interruptions).unwrap_or(0);
    let after = now.interruptions.unwrap_or(0);
    let was_down = before_state == Some(RecordingState::Interrupted);
    let kept = "the MP4 keeps what was captured until then, and a new recorder continues the same recording";
    if now.state == RecordingState::Interrupted && !was_down {
        let how = stopped.map_or_else(|| "stopped".to_string(), RecorderStopped::how);
        return Some(RecordingNote {
            warning: true,
            reason: "RecordingInterrupted",
            note: format!("the recorder {how}; {kept}"),
        });
    }
    if was_down && now.state != RecordingState::Interrupted {
        return Some(RecordingNote {
            warning: false,
            reason: "RecordingResumed",
            note: format!(
                "a new recorder continues the recording (interrupted {after} time(s) while people were on camera; what happened while no recorder ran is not in the MP4)"
            ),
        });
    }
    if after > before {
        return Some(RecordingNote {
            warning: true,
            reason: "RecordingInterrupted",
            note: format!(
                "the recorder was restarted while people were on camera; {kept} (interrupted {after} time(s); what happened while no recorder ran is not in the MP4)"
            ),
        });
    }
    None
}

/// The Session's `status.recordings`: what the recorder reports when it could be read,
/// else what the status said before. A Job that failed for good leaves no recording in
/// progress; while the recorder is down (`recorder_down`), a recording not over is
/// Interrupted.
pub fn summaries(
    reported: Option<&[Reported]>,
    previous: &[RecordingSummary],
    folder: &str,
    job_failed: bool,
    recorder_down: bool,
) -> Vec<RecordingSummary> {
    let mut list: Vec<RecordingSummary> = match reported {
        Some(reported) => reported
            .iter()
            .map(|r| RecordingSummary {
                state: r.state,
                start: Timestamp::from_second(r.start_unix_ms.div_euclid(1000))
                    .ok()
                    .map(Time),
                // While capturing, what is captured; otherwise the length of the MP4 listed
                // (which catches up once the last stretch is composed).
                duration_seconds: Some(
                    match (r.state, &r.file) {
                        (RecordingState::Recording, _) | (_, None) => r.captured_seconds,
                        _ => r.duration_seconds,
                    }
                    .round() as i64,
                ),
                size_bytes: r.size_bytes,
                file: r.file.as_ref().map(|f| format!("{folder}/{f}")),
                interruptions: (r.interruptions > 0)
                    .then(|| i32::try_from(r.interruptions).unwrap_or(i32::MAX)),
            })
            .collect(),
        None => previous.to_vec(),
    };
    if recorder_down && reported.is_none() {
        for r in &mut list {
            if matches!(
                r.state,
                RecordingState::Recording | RecordingState::Paused | RecordingState::Processing
            ) {
                r.state = RecordingState::Interrupted;
            }
        }
    }
    if job_failed {
        for r in &mut list {
            if r.state != RecordingState::Complete {
                r.state = RecordingState::Failed;
            }
        }
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use roundtable_crds::live_room::Kind;
    use roundtable_crds::{Lifecycle, RoomTheme, SharePolicy};

    fn room(name: &str) -> LiveRoom {
        LiveRoom {
            kind: Kind::Session,
            namespace: "gala".into(),
            name: name.into(),
            event: Some("summit".into()),
            lifecycle: Lifecycle::Started,
            start: None,
            end: None,
            max_on_camera: 10,
            max_watchers: 500,
            share_policy: SharePolicy::Open,
            theme: RoomTheme::Meeting,
            locked: false,
            own_settings: None,
        }
    }

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "roundtable.dev/v1alpha1".into(),
            kind: "Session".into(),
            name: "panel".into(),
            uid: "u-1".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    #[test]
    fn a_live_recorded_session_gets_one_recorder_for_its_sfu() {
        let act = |recording, claim, phase, sfu, existing| {
            recorder_action(recording, claim, phase, sfu, existing)
        };
        let sfu = Some("10.0.0.7:31000");
        assert_eq!(
            act(true, Some("media"), LivePhase::Live, sfu, None),
            RecorderAction::Create {
                sfu: "10.0.0.7:31000".into()
            }
        );
        // Not recorded, no storage, not live yet, no address yet: nothing.
        assert_eq!(
            act(false, Some("media"), LivePhase::Live, sfu, None),
            RecorderAction::Nothing
        );
        assert_eq!(
            act(true, None, LivePhase::Live, sfu, None),
            RecorderAction::Nothing
        );
        assert_eq!(
            act(true, Some("media"), LivePhase::Starting, sfu, None),
            RecorderAction::Nothing
        );
        assert_eq!(
            act(true, Some("media"), LivePhase::Live, None, None),
            RecorderAction::Nothing
        );
        // Never a second Job while one exists, running or finished.
        let running = ExistingJob {
            sfu: sfu.map(String::from),
            active: true,
            started: true,
        };
        assert_eq!(
            act(true, Some("media"), LivePhase::Live, sfu, Some(&running)),
            RecorderAction::Nothing
        );
        let finished = ExistingJob {
            sfu: Some("10.0.0.9:31001".into()),
            active: false,
            started: true,
        };
        assert_eq!(
            act(true, Some("media"), LivePhase::Live, sfu, Some(&finished)),
            RecorderAction::Nothing
        );
        // The SFU pod was replaced elsewhere: the running recorder must follow it.
        let moved = ExistingJob {
            sfu: Some("10.0.0.9:31001".into()),
            active: true,
            started: true,
        };
        assert_eq!(
            act(true, Some("media"), LivePhase::Live, sfu, Some(&moved)),
            RecorderAction::Replace
        );
        // A draining session keeps its recorder wherever it is.
        assert_eq!(
            act(true, Some("media"), LivePhase::Draining, sfu, Some(&moved)),
            RecorderAction::Nothing
        );
        // A recorder that never started (its pod Pending) is cancelled once the room is over,
        // and only then.
        let pending = ExistingJob {
            sfu: sfu.map(String::from),
            active: true,
            started: false,
        };
        for over in [LivePhase::Draining, LivePhase::Ended, LivePhase::Failed] {
            assert_eq!(
                act(true, Some("media"), over, sfu, Some(&pending)),
                RecorderAction::Cancel,
                "{over:?}"
            );
        }
        assert_eq!(
            act(true, Some("media"), LivePhase::Live, sfu, Some(&pending)),
            RecorderAction::Nothing
        );
        assert_eq!(
            act(true, Some("media"), LivePhase::Ended, sfu, Some(&moved)),
            RecorderAction::Nothing,
            "a recorder that ran composes what it has"
        );
    }

    #[test]
    fn the_job_runs_the_recorder_on_the_events_volume_without_api_access() {
        let config = OperatorConfig::default();
        let job = recorder_job(
            &room("panel"),
            "gala-media",
            "10.0.0.7:31000",
            &config,
            owner(),
        );
        assert_eq!(job.metadata.name.as_deref(), Some("rec-panel"));
        assert_eq!(
            job.metadata.owner_references.as_ref().unwrap()[0].uid,
            "u-1"
        );
        let spec = job.spec.unwrap();
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("OnFailure"));
        assert_eq!(pod.automount_service_account_token, Some(false));
        let volume = &pod.volumes.as_ref().unwrap()[0];
        assert_eq!(
            volume.persistent_volume_claim.as_ref().unwrap().claim_name,
            "gala-media"
        );
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some(config.recorder_image.as_str()));
        assert_eq!(
            c.volume_mounts.as_ref().unwrap()[0].mount_path,
            "/recordings"
        );
        // Non-root, and the claim made writable to the recorder's group.
        let security = pod.security_context.as_ref().unwrap();
        assert_eq!(security.run_as_non_root, Some(true));
        assert_eq!(security.fs_group, Some(65532));
        let container = c.security_context.as_ref().unwrap();
        assert_eq!(container.read_only_root_filesystem, Some(true));
        assert_eq!(container.allow_privilege_escalation, Some(false));
        let env = |name: &str| {
            c.env
                .iter()
                .flatten()
                .find(|e| e.name == name)
                .cloned()
                .unwrap_or_else(|| panic!("{name} is set"))
        };
        assert_eq!(env("REC_SFU").value.as_deref(), Some("10.0.0.7:31000"));
        assert_eq!(env("REC_ROOM").value.as_deref(), Some("session:gala:panel"));
        assert_eq!(
            env("REC_OUTPUT").value.as_deref(),
            Some("/recordings/panel")
        );
        assert_eq!(
            env("REC_TOKEN_KEY")
                .value_from
                .unwrap()
                .secret_key_ref
                .unwrap()
                .name,
            "roundtable-join-token"
        );
        assert_eq!(
            job.metadata.annotations.unwrap()[ANNOTATION_SFU],
            "10.0.0.7:31000"
        );
        assert!(job_name(&room(&"x".repeat(70))).len() <= 63);
    }

    #[test]
    fn status_lists_what_the_recorder_reports_or_keeps_what_it_had() {
        let reported: Vec<Reported> = serde_json::from_str(
            r#"[{"id":"rec-1","state":"Paused","startUnixMs":1795354115646,
                 "durationSeconds":6.9,"capturedSeconds":12.5,
                 "file":"panel-20261122-132835.mp4","sizeBytes":247900,"parts":2,"error":null}]"#,
        )
        .unwrap();
        let list = summaries(Some(&reported), &[], "panel", false, false);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].state, RecordingState::Paused);
        assert_eq!(list[0].duration_seconds, Some(7), "the MP4's length");
        assert_eq!(list[0].size_bytes, Some(247_900));
        assert_eq!(
            list[0].file.as_deref(),
            Some("panel/panel-20261122-132835.mp4")
        );
        assert_eq!(
            list[0].start.as_ref().unwrap().0.to_string(),
            "2026-11-22T13:28:35Z"
        );
        let mut capturing = reported[0].clone();
        capturing.state = RecordingState::Recording;
        let list2 = summaries(Some(&[capturing]), &[], "panel", false, false);
        assert_eq!(
            list2[0].duration_seconds,
            Some(13),
            "what is captured so far"
        );
        // The recorder could not be read: the last known list stays.
        assert_eq!(summaries(None, &list, "panel", false, false), list);
        // The Job gave up: what was not complete has failed.
        assert_eq!(
            summaries(None, &list, "panel", true, false)[0].state,
            RecordingState::Failed
        );
        // No recorder runs: the recording is interrupted, its MP4 still listed.
        let down = summaries(None, &list, "panel", false, true);
        assert_eq!(down[0].state, RecordingState::Interrupted);
        assert_eq!(down[0].file, list[0].file);
        // A complete recording stays complete whatever happens to the recorder.
        let mut complete = list.clone();
        complete[0].state = RecordingState::Complete;
        assert_eq!(
            summaries(None, &complete, "panel", false, true)[0].state,
            RecordingState::Complete
        );
        // What the restarted recorder counts is shown.
        let mut restarted = reported[0].clone();
        restarted.interruptions = 2;
        assert_eq!(
            summaries(Some(&[restarted]), &list, "panel", false, false)[0].interruptions,
            Some(2)
        );
    }

    #[test]
    fn the_recorder_is_down_when_its_job_is_active_and_none_of_its_pods_runs() {
        let running = RecorderPod {
            running: true,
            last_exit: Some(143),
        };
        let killed = RecorderPod {
            running: false,
            last_exit: Some(137),
        };
        let pending = RecorderPod::default();
        assert_eq!(
            recorder_stopped(true, std::slice::from_ref(&killed)),
            Some(RecorderStopped {
                exit_code: Some(137)
            })
        );
        // Restarted (in place, or as a new pod beside the failed one): not down.
        assert_eq!(recorder_stopped(true, std::slice::from_ref(&running)), None);
        assert_eq!(recorder_stopped(true, &[killed.clone(), running]), None);
        // The failed pod and its replacement still Pending: down.
        assert!(recorder_stopped(true, &[killed.clone(), pending.clone()]).is_some());
        // Never started, or the Job is over: not an interruption.
        assert_eq!(recorder_stopped(true, &[pending]), None);
        assert_eq!(recorder_stopped(false, &[killed]), None);
        assert_eq!(
            RecorderStopped {
                exit_code: Some(143)
            }
            .how(),
            "was stopped (SIGTERM, exit code 143)"
        );
    }

    #[test]
    fn an_interruption_and_the_recorders_return_are_each_one_event() {
        let summary = |state, interruptions| RecordingSummary {
            state,
            start: None,
            duration_seconds: Some(12),
            size_bytes: None,
            file: None,
            interruptions,
        };
        let recording = [summary(RecordingState::Recording, None)];
        let down = [summary(RecordingState::Interrupted, None)];
        let back = [summary(RecordingState::Recording, Some(1))];
        let killed = RecorderStopped {
            exit_code: Some(137),
        };
        // The operator sees the recorder down: a Warning saying how it stopped.
        let note = recording_note(&recording, &down, Some(&killed)).unwrap();
        assert_eq!((note.warning, note.reason), (true, "RecordingInterrupted"));
        assert!(note.note.contains("SIGKILL"), "{}", note.note);
        assert!(
            note.note.contains("MP4 keeps what was captured"),
            "{}",
            note.note
        );
        // Still down on the next reconcile: nothing new.
        assert_eq!(recording_note(&down, &down, Some(&killed)), None);
        // A new recorder continues: one Normal Event, and no second Warning.
        let note = recording_note(&down, &back, None).unwrap();
        assert_eq!((note.warning, note.reason), (false, "RecordingResumed"));
        assert_eq!(recording_note(&back, &back, None), None);
        // The restart was too quick to see it down: the recorder's count says it happened.
        let note = recording_note(&recording, &back, None).unwrap();
        assert_eq!((note.warning, note.reason), (true, "RecordingInterrupted"));
        // Nothing recorded yet, nothing to say.
        assert_eq!(recording_note(&[], &[], None), None);
    }
}
