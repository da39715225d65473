//! The per-pod Service of the LoadBalancer and NodePort media network modes.
//!
//! In HostPort mode (the default) media reaches the pod on its node's address and no Service
//! exists. In LoadBalancer mode the SFU must announce the load balancer's address in its ICE
//! candidates, so the pod is created only once the Service has one. In NodePort mode the SFU
//! announces its node's address with the UDP node port.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use roundtable_crds::{NetworkMode, SfuPodSettings};

use super::pod::{LABEL_KIND, LABEL_ROLE, LABEL_ROOM, label_value, labels, pod_name};
use super::relay;
use roundtable_crds::live_room::LiveRoom;

/// The media network mode in force.
pub fn mode(settings: &SfuPodSettings) -> NetworkMode {
    settings
        .network
        .as_ref()
        .map(|n| n.mode)
        .unwrap_or_default()
}

/// The Service for a room's origin pod, or None in HostPort mode.
pub fn media_service(
    room: &LiveRoom,
    settings: &SfuPodSettings,
    port: u16,
    owner: OwnerReference,
) -> Option<Service> {
    let selector = BTreeMap::from([
        (LABEL_KIND.to_string(), room.kind.as_str().to_string()),
        (LABEL_ROOM.to_string(), label_value(&room.name)),
        (LABEL_ROLE.to_string(), "origin".to_string()),
    ]);
    service_for(
        room,
        settings,
        port,
        owner,
        (pod_name(room), labels(room), selector),
    )
}

/// The Service for relay `index` of a room, or None in HostPort mode.
pub fn relay_service(
    room: &LiveRoom,
    settings: &SfuPodSettings,
    port: u16,
    owner: OwnerReference,
    index: u32,
) -> Option<Service> {
    let pod_labels = relay::relay_labels(room, index);
    let selector = pod_labels
        .iter()
        .filter(|(k, _)| {
            [LABEL_KIND, LABEL_ROOM, LABEL_ROLE, relay::LABEL_INDEX].contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    service_for(
        room,
        settings,
        port,
        owner,
        (relay::relay_name(room, index), pod_labels, selector),
    )
}

/// A media Service named `name` with `labels`, selecting the pods with `selector`.
fn service_for(
    room: &LiveRoom,
    settings: &SfuPodSettings,
    port: u16,
    owner: OwnerReference,
    (name, labels, selector): (String, BTreeMap<String, String>, BTreeMap<String, String>),
) -> Option<Service> {
    let type_ = match mode(settings) {
        NetworkMode::HostPort => return None,
        NetworkMode::LoadBalancer => "LoadBalancer",
        NetworkMode::NodePort => "NodePort",
    };
    let port = i32::from(port);
    let service_port = |name: &str, protocol: &str| ServicePort {
        name: Some(name.into()),
        protocol: Some(protocol.into()),
        port,
        target_port: Some(IntOrString::Int(port)),
        ..Default::default()
    };
    Some(Service {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(room.namespace.clone()),
            labels: Some(labels),
            annotations: settings
                .network
                .as_ref()
                .and_then(|n| n.service_annotations.clone()),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(type_.into()),
            selector: Some(selector),
            // Keep the client's address (no SNAT) and send traffic only to the pod's node.
            external_traffic_policy: Some("Local".into()),
            ports: Some(vec![
                service_port("media", "UDP"),
                service_port("signal", "TCP"),
            ]),
            ..Default::default()
        }),
        status: None,
    })
}

/// The port a media Service serves on (the pod's port), read back from it.
pub fn port_of(service: &Service) -> Option<u16> {
    let port = service.spec.as_ref()?.ports.as_ref()?.first()?.port;
    u16::try_from(port).ok()
}

/// What sfu-node announces in its ICE candidates (`IP` or `IP:PORT`), from the Service; None
/// while a load balancer has no address yet.
pub fn advertise(settings: &SfuPodSettings, service: &Service) -> Option<String> {
    if let Some(fixed) = settings
        .network
        .as_ref()
        .and_then(|n| n.advertise_address.clone())
    {
        return Some(fixed);
    }
    match mode(settings) {
        NetworkMode::HostPort => None,
        NetworkMode::LoadBalancer => load_balancer_ip(service),
        NetworkMode::NodePort => node_port(service, "media").map(|p| format!("$(HOST_IP):{p}")),
    }
}

/// Where browsers reach the pod's signalling in a Service mode.
pub fn endpoint(
    settings: &SfuPodSettings,
    service: &Service,
    host_ip: Option<&str>,
) -> Option<String> {
    let port = service
        .spec
        .as_ref()?
        .ports
        .as_ref()?
        .iter()
        .find(|p| p.name.as_deref() == Some("signal"))?
        .port;
    match mode(settings) {
        NetworkMode::HostPort => None,
        NetworkMode::LoadBalancer => {
            let address = settings
                .network
                .as_ref()
                .and_then(|n| n.advertise_address.clone())
                .or_else(|| load_balancer_ip(service))?;
            Some(format!("{address}:{port}"))
        }
        NetworkMode::NodePort => Some(format!("{}:{}", host_ip?, node_port(service, "signal")?)),
    }
}

fn load_balancer_ip(service: &Service) -> Option<String> {
    service
        .status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .as_ref()?
        .iter()
        .find_map(|i| i.ip.clone())
}

fn node_port(service: &Service, name: &str) -> Option<i32> {
    service
        .spec
        .as_ref()?
        .ports
        .as_ref()?
        .iter()
        .find(|p| p.name.as_deref() == Some(name))?
        .node_port
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, ServiceStatus};
    use roundtable_crds::{MediaNetwork, Session};

    use super::*;

    fn room() -> LiveRoom {
        let spec = serde_yaml::from_str("{event: gala, title: S}").unwrap();
        let mut session = Session::new("s", spec);
        session.metadata.namespace = Some("events".into());
        LiveRoom::from(&session)
    }

    fn settings(mode: NetworkMode) -> SfuPodSettings {
        SfuPodSettings {
            network: Some(MediaNetwork {
                mode,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "Session".into(),
            name: "s".into(),
            uid: "u".into(),
            ..Default::default()
        }
    }

    #[test]
    fn host_port_mode_has_no_service() {
        assert!(media_service(&room(), &SfuPodSettings::default(), 31000, owner()).is_none());
    }

    #[test]
    fn a_load_balancer_is_waited_for_then_announced() {
        let s = settings(NetworkMode::LoadBalancer);
        let mut service = media_service(&room(), &s, 31000, owner()).unwrap();
        let spec = service.spec.clone().unwrap();
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
        assert_eq!(advertise(&s, &service), None, "no address yet");
        service.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![LoadBalancerIngress {
                    ip: Some("203.0.113.9".into()),
                    ..Default::default()
                }]),
            }),
            ..Default::default()
        });
        assert_eq!(advertise(&s, &service).as_deref(), Some("203.0.113.9"));
        assert_eq!(
            endpoint(&s, &service, None).as_deref(),
            Some("203.0.113.9:31000")
        );
    }

    #[test]
    fn each_relay_gets_its_own_service_selecting_only_it() {
        let s = settings(NetworkMode::NodePort);
        let service = relay_service(&room(), &s, 31002, owner(), 2).unwrap();
        assert_eq!(service.metadata.name.as_deref(), Some("session-s-relay-2"));
        let selector = service.spec.as_ref().unwrap().selector.clone().unwrap();
        assert_eq!(selector[relay::LABEL_INDEX], "2");
        assert_eq!(selector[LABEL_ROLE], "relay");
        let pod_labels = relay::relay_labels(&room(), 2);
        assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
        assert_eq!(port_of(&service), Some(31002));
        assert!(relay_service(&room(), &SfuPodSettings::default(), 31002, owner(), 0).is_none());
    }

    #[test]
    fn node_port_mode_announces_the_node_with_the_node_port() {
        let s = settings(NetworkMode::NodePort);
        let mut service = media_service(&room(), &s, 31000, owner()).unwrap();
        for port in service.spec.as_mut().unwrap().ports.as_mut().unwrap() {
            port.node_port = Some(if port.name.as_deref() == Some("media") {
                30500
            } else {
                30501
            });
        }
        assert_eq!(advertise(&s, &service).as_deref(), Some("$(HOST_IP):30500"));
        assert_eq!(
            endpoint(&s, &service, Some("10.0.0.4")).as_deref(),
            Some("10.0.0.4:30501")
        );
    }
}
