//! The pod status a kubelet would report, computed from what the agent knows about each
//! container. Pure: the pod worker feeds it and writes the result.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Terminated {
    pub(crate) exit_code: i32,
    pub(crate) reason: String,
    pub(crate) message: Option<String>,
    pub(crate) started_at: Timestamp,
    pub(crate) finished_at: Timestamp,
    pub(crate) container_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum State {
    Waiting {
        reason: String,
        message: String,
    },
    Running {
        started_at: Timestamp,
        container_id: String,
    },
    Terminated(Terminated),
}

/// What a container status says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerView {
    pub(crate) name: String,
    pub(crate) image: String,
    pub(crate) image_id: String,
    pub(crate) state: State,
    pub(crate) last: Option<Terminated>,
    pub(crate) restart_count: i32,
    pub(crate) ready: bool,
}

impl ContainerView {
    pub(crate) fn new(name: &str, image: &str) -> Self {
        Self {
            name: name.to_owned(),
            image: image.to_owned(),
            image_id: String::new(),
            state: State::Waiting {
                reason: "ContainerCreating".into(),
                message: String::new(),
            },
            last: None,
            restart_count: 0,
            ready: false,
        }
    }

    fn has_run(&self) -> bool {
        !matches!(self.state, State::Waiting { .. }) || self.last.is_some()
    }
}

/// The kubelet's phase: Pending until every container has run, Running while any runs or
/// will restart, then Succeeded if every container exited 0, else Failed.
pub(crate) fn phase(containers: &[ContainerView]) -> &'static str {
    if containers.iter().any(|c| !c.has_run()) {
        return "Pending";
    }
    if containers
        .iter()
        .any(|c| !matches!(c.state, State::Terminated(_)))
    {
        return "Running";
    }
    let all_zero = containers
        .iter()
        .all(|c| matches!(&c.state, State::Terminated(t) if t.exit_code == 0));
    if all_zero { "Succeeded" } else { "Failed" }
}

/// Pod conditions with the time each last changed.
#[derive(Debug, Default)]
pub(crate) struct Conditions {
    since: BTreeMap<&'static str, (bool, Option<String>, Timestamp)>,
}

impl Conditions {
    /// Records the condition's value at `now`; its transition time moves only on change.
    pub(crate) fn observe(
        &mut self,
        kind: &'static str,
        value: bool,
        reason: Option<&str>,
        now: Timestamp,
    ) {
        let reason = reason.map(str::to_owned);
        match self.since.get_mut(kind) {
            Some(entry) if entry.0 == value => entry.1 = reason,
            _ => {
                self.since.insert(kind, (value, reason, now));
            }
        }
    }

    fn list(&self) -> Vec<PodCondition> {
        self.since
            .iter()
            .map(|(kind, (value, reason, since))| PodCondition {
                type_: (*kind).to_owned(),
                status: if *value { "True" } else { "False" }.to_owned(),
                reason: reason.clone(),
                last_transition_time: Some(Time(*since)),
                ..Default::default()
            })
            .collect()
    }
}

/// Updates the conditions for `containers` at `now`. `gates_ready` says whether every
/// readiness gate of the pod is True.
pub(crate) fn observe_conditions(
    conditions: &mut Conditions,
    containers: &[ContainerView],
    init_error: Option<&str>,
    gates_ready: bool,
    now: Timestamp,
) {
    let terminal = matches!(phase(containers), "Succeeded" | "Failed");
    let all_ready = !terminal && containers.iter().all(|c| c.ready);
    let not_ready = (!all_ready).then_some("ContainersNotReady");
    conditions.observe("PodReadyToStartContainers", !terminal, None, now);
    conditions.observe(
        "Initialized",
        init_error.is_none(),
        init_error.map(|_| "InitContainersNotSupported"),
        now,
    );
    conditions.observe("ContainersReady", all_ready, not_ready, now);
    let ready = all_ready && gates_ready;
    let reason = if !all_ready {
        not_ready
    } else {
        (!gates_ready).then_some("ReadinessGatesNotReady")
    };
    conditions.observe("Ready", ready, reason, now);
}

fn terminated(t: &Terminated) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: t.exit_code,
        reason: Some(t.reason.clone()),
        message: t.message.clone(),
        started_at: Some(Time(t.started_at)),
        finished_at: Some(Time(t.finished_at)),
        container_id: Some(t.container_id.clone()),
        ..Default::default()
    }
}

fn container_status(c: &ContainerView) -> ContainerStatus {
    let (state, started, container_id) = match &c.state {
        State::Waiting { reason, message } => (
            ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: Some(message.clone()).filter(|m| !m.is_empty()),
                }),
                ..Default::default()
            },
            false,
            None,
        ),
        State::Running {
            started_at,
            container_id,
        } => (
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time(*started_at)),
                }),
                ..Default::default()
            },
            true,
            Some(container_id.clone()),
        ),
        State::Terminated(t) => (
            ContainerState {
                terminated: Some(terminated(t)),
                ..Default::default()
            },
            false,
            Some(t.container_id.clone()),
        ),
    };
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: c.image_id.clone(),
        container_id,
        state: Some(state),
        last_state: c.last.as_ref().map(|t| ContainerState {
            terminated: Some(terminated(t)),
            ..Default::default()
        }),
        ready: c.ready,
        started: Some(started),
        restart_count: c.restart_count,
        ..Default::default()
    }
}

/// The whole status. The pod's IP is also its host IP: there is no NAT, so its hostPorts
/// are reached on the pod IP.
pub(crate) fn pod_status(
    ip: Ipv4Addr,
    start_time: Timestamp,
    containers: &[ContainerView],
    conditions: &Conditions,
    message: Option<&str>,
) -> PodStatus {
    let ip = ip.to_string();
    PodStatus {
        phase: Some(phase(containers).to_owned()),
        conditions: Some(conditions.list()),
        host_ip: Some(ip.clone()),
        host_ips: Some(vec![HostIP { ip: ip.clone() }]),
        pod_ip: Some(ip.clone()),
        pod_ips: Some(vec![PodIP { ip }]),
        start_time: Some(Time(start_time)),
        container_statuses: Some(containers.iter().map(container_status).collect()),
        message: message.map(str::to_owned),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn exited(code: i32) -> State {
        State::Terminated(Terminated {
            exit_code: code,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at: at(0),
            finished_at: at(1),
            container_id: "c".into(),
        })
    }

    fn view(state: State) -> ContainerView {
        ContainerView {
            state,
            ..ContainerView::new("main", "img")
        }
    }

    #[test]
    fn phase_follows_the_containers() {
        let running = State::Running {
            started_at: at(0),
            container_id: "c".into(),
        };
        assert_eq!(phase(&[view(running.clone())]), "Running");
        assert_eq!(phase(&[ContainerView::new("a", "i")]), "Pending");
        assert_eq!(
            phase(&[view(running), ContainerView::new("b", "i")]),
            "Pending"
        );
        assert_eq!(phase(&[view(exited(0))]), "Succeeded");
        assert_eq!(phase(&[view(exited(0)), view(exited(2))]), "Failed");
        let restarting = ContainerView {
            last: Some(match exited(1) {
                State::Terminated(t) => t,
                _ => unreachable!(),
            }),
            ..ContainerView::new("main", "img")
        };
        assert_eq!(phase(&[restarting]), "Running", "a crash-looping pod runs");
    }

    #[test]
    fn conditions_move_their_transition_time_only_on_change() {
        let mut conditions = Conditions::default();
        let mut c = view(State::Running {
            started_at: at(0),
            container_id: "c".into(),
        });
        observe_conditions(&mut conditions, std::slice::from_ref(&c), None, true, at(1));
        observe_conditions(&mut conditions, std::slice::from_ref(&c), None, true, at(2));
        let status = pod_status(
            Ipv4Addr::new(127, 0, 1, 2),
            at(0),
            &[c.clone()],
            &conditions,
            None,
        );
        let ready = |s: &PodStatus| {
            s.conditions
                .as_ref()
                .unwrap()
                .iter()
                .find(|c| c.type_ == "Ready")
                .cloned()
                .unwrap()
        };
        assert_eq!(ready(&status).status, "False");
        assert_eq!(ready(&status).last_transition_time, Some(Time(at(1))));
        c.ready = true;
        observe_conditions(&mut conditions, std::slice::from_ref(&c), None, true, at(3));
        let status = pod_status(
            Ipv4Addr::new(127, 0, 1, 2),
            at(0),
            &[c.clone()],
            &conditions,
            None,
        );
        assert_eq!(ready(&status).status, "True");
        assert_eq!(ready(&status).last_transition_time, Some(Time(at(3))));
        assert_eq!(status.pod_ip.as_deref(), Some("127.0.1.2"));
        assert_eq!(status.host_ip, status.pod_ip);
        observe_conditions(
            &mut conditions,
            std::slice::from_ref(&c),
            None,
            false,
            at(4),
        );
        let status = pod_status(Ipv4Addr::new(127, 0, 1, 2), at(0), &[c], &conditions, None);
        assert_eq!(
            ready(&status).reason.as_deref(),
            Some("ReadinessGatesNotReady")
        );
    }
}
