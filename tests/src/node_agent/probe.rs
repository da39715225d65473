//! Readiness probes: `httpGet` and `tcpSocket` against the pod's IP, on a test-friendly
//! clock (periods, timeouts and initial delays are capped at one second).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest period, timeout or initial delay a probe gets here.
const CAP: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Http {
        host: String,
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
    },
    Tcp {
        host: String,
        port: u16,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProbePlan {
    pub(crate) target: Target,
    pub(crate) initial_delay: Duration,
    pub(crate) period: Duration,
    pub(crate) timeout: Duration,
    pub(crate) success_threshold: u32,
    pub(crate) failure_threshold: u32,
}

fn seconds(value: Option<i32>, default: u64) -> Duration {
    let secs = value.map_or(default, |v| u64::try_from(v).unwrap_or(0));
    Duration::from_secs(secs).min(CAP)
}

/// The container's readiness probe aimed at `pod_ip`; `None` without a probe, an error for
/// a probe this agent cannot run (exec, gRPC, HTTPS, an unknown port name).
pub(crate) fn readiness(container: &Container, pod_ip: &str) -> Option<Result<ProbePlan, String>> {
    let probe: &Probe = container.readiness_probe.as_ref()?;
    Some(plan(container, probe, pod_ip))
}

fn plan(container: &Container, probe: &Probe, pod_ip: &str) -> Result<ProbePlan, String> {
    let port = |port: &IntOrString| -> Result<u16, String> {
        match port {
            IntOrString::Int(n) => {
                u16::try_from(*n).map_err(|_| format!("port {n} is out of range"))
            }
            IntOrString::String(name) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("the container has no port named {name:?}")),
        }
    };
    let target = if let Some(http) = &probe.http_get {
        if http.scheme.as_deref().is_some_and(|s| s != "HTTP") {
            return Err("only HTTP readiness probes are supported by the test node agent".into());
        }
        let mut path = http.path.clone().unwrap_or_default();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        Target::Http {
            host: http.host.clone().unwrap_or_else(|| pod_ip.to_owned()),
            port: port(&http.port)?,
            path,
            headers: http
                .http_headers
                .iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
        }
    } else if let Some(tcp) = &probe.tcp_socket {
        Target::Tcp {
            host: tcp.host.clone().unwrap_or_else(|| pod_ip.to_owned()),
            port: port(&tcp.port)?,
        }
    } else {
        return Err(
            "only httpGet and tcpSocket readiness probes are supported by the test node agent"
                .into(),
        );
    };
    let threshold = |v: Option<i32>, default: u32| {
        v.and_then(|v| u32::try_from(v).ok())
            .unwrap_or(default)
            .max(1)
    };
    Ok(ProbePlan {
        target,
        initial_delay: seconds(probe.initial_delay_seconds, 0),
        period: seconds(probe.period_seconds, 10),
        timeout: seconds(probe.timeout_seconds, 1),
        success_threshold: threshold(probe.success_threshold, 1),
        failure_threshold: threshold(probe.failure_threshold, 3),
    })
}

/// Consecutive results turned into readiness, as the kubelet's prober does.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Readiness {
    pub(crate) ready: bool,
    successes: u32,
    failures: u32,
}

impl Readiness {
    pub(crate) fn record(&mut self, ok: bool, plan: &ProbePlan) {
        if ok {
            self.failures = 0;
            self.successes += 1;
            if self.successes >= plan.success_threshold {
                self.ready = true;
            }
        } else {
            self.successes = 0;
            self.failures += 1;
            if self.failures >= plan.failure_threshold {
                self.ready = false;
            }
        }
    }
}

/// Runs the probe once.
pub(crate) async fn check(plan: &ProbePlan) -> Result<(), String> {
    match tokio::time::timeout(plan.timeout, run(&plan.target)).await {
        Ok(result) => result,
        Err(_) => Err(format!("timed out after {:?}", plan.timeout)),
    }
}

async fn run(target: &Target) -> Result<(), String> {
    match target {
        Target::Tcp { host, port } => TcpStream::connect((host.as_str(), *port))
            .await
            .map(drop)
            .map_err(|e| format!("dial tcp {host}:{port}: {e}")),
        Target::Http {
            host,
            port,
            path,
            headers,
        } => {
            let mut stream = TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(|e| format!("Get http://{host}:{port}{path}: {e}"))?;
            let mut request = format!(
                "GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.36\r\n"
            );
            for (name, value) in headers {
                request.push_str(&format!("{name}: {value}\r\n"));
            }
            request.push_str("\r\n");
            stream
                .write_all(request.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let mut head = Vec::new();
            let mut buf = [0u8; 256];
            while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
                let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            let line = String::from_utf8_lossy(&head);
            let code: u16 = line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| format!("not an HTTP response: {line:?}"))?;
            if (200..400).contains(&code) {
                Ok(())
            } else {
                Err(format!("HTTP probe failed with statuscode: {code}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(probe: serde_json::Value) -> Container {
        serde_json::from_value(json!({
            "name": "main",
            "ports": [{ "name": "http", "containerPort": 8080 }],
            "readinessProbe": probe,
        }))
        .unwrap()
    }

    #[test]
    fn named_ports_resolve_and_periods_are_capped() {
        let c = container(
            json!({ "httpGet": { "path": "healthz", "port": "http" }, "periodSeconds": 10 }),
        );
        let plan = readiness(&c, "127.0.1.2").unwrap().unwrap();
        assert_eq!(
            plan.target,
            Target::Http {
                host: "127.0.1.2".into(),
                port: 8080,
                path: "/healthz".into(),
                headers: vec![],
            }
        );
        assert_eq!(plan.period, Duration::from_secs(1));
        assert_eq!(plan.failure_threshold, 3);

        let unknown = container(json!({ "tcpSocket": { "port": "rtc" } }));
        assert!(readiness(&unknown, "127.0.1.2").unwrap().is_err());
        let exec = container(json!({ "exec": { "command": ["true"] } }));
        assert!(readiness(&exec, "127.0.1.2").unwrap().is_err());
        let none: Container = serde_json::from_value(json!({ "name": "main" })).unwrap();
        assert!(readiness(&none, "127.0.1.2").is_none());
    }

    #[test]
    fn readiness_needs_consecutive_results() {
        let c = container(json!({
            "tcpSocket": { "port": 8080 }, "successThreshold": 2, "failureThreshold": 2,
        }));
        let plan = readiness(&c, "127.0.1.2").unwrap().unwrap();
        let mut r = Readiness::default();
        r.record(true, &plan);
        assert!(!r.ready);
        r.record(true, &plan);
        assert!(r.ready);
        r.record(false, &plan);
        assert!(r.ready, "one failure is tolerated");
        r.record(false, &plan);
        assert!(!r.ready);
    }
}
