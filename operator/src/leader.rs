//! Leader election through a `coordination.k8s.io/v1` Lease, so two replicas never both act.
//!
//! The decision ([`decide`]) is pure. The I/O takes or renews the Lease with an update that
//! carries the observed `resourceVersion`: of two replicas racing for an expired Lease, the API
//! server accepts exactly one write (the same optimistic concurrency client-go's leader
//! election uses; server-side apply would let both "win").

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use tracing::info;

use crate::{Error, Result};

/// What to do with the Lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseDecision {
    /// Nobody holds it, or the holder's time ran out: take it.
    Take,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds it until then.
    Wait { until: Timestamp },
}

/// Decides whether `identity` may take or renew the Lease at `now`.
pub fn decide(spec: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> LeaseDecision {
    let Some(spec) = spec else {
        return LeaseDecision::Take;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder == identity {
        return LeaseDecision::Renew;
    }
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    let duration = SignedDuration::from_secs(spec.lease_duration_seconds.unwrap_or(0).into());
    match renewed {
        Some(at) if !holder.is_empty() && at + duration > now => LeaseDecision::Wait {
            until: at + duration,
        },
        _ => LeaseDecision::Take,
    }
}

/// One replica's side of the election.
#[derive(Debug, Clone)]
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_duration: Duration,
    retry: Duration,
}

impl Elector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        Elector {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            retry: Duration::from_secs(2),
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Waits until this replica holds the Lease. `reached` is set once the Lease could be
    /// read, i.e. the replica reached the API server and may stand by: a follower is ready
    /// too, so a Deployment of two replicas becomes available and can roll.
    pub async fn acquire(&self, reached: &AtomicBool) -> Result<()> {
        loop {
            let held = self.try_hold().await?;
            reached.store(true, Ordering::Relaxed);
            if held {
                info!(identity = %self.identity, lease = %self.name, "became the leader");
                return Ok(());
            }
            tokio::time::sleep(self.retry).await;
        }
    }

    /// Renews the Lease until it is lost; returns the reason.
    pub async fn keep(&self) -> Error {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.retry).await;
            match self.try_hold().await {
                Ok(true) => last_renewal = tokio::time::Instant::now(),
                Ok(false) => {
                    return Error::LostLease(format!("another replica holds {}", self.name));
                }
                // A transient API error is survivable while the Lease has not run out.
                Err(e) if last_renewal.elapsed() < self.lease_duration - self.retry * 2 => {
                    tracing::warn!(error = %e, "could not renew the leader lease; retrying");
                }
                Err(e) => return Error::LostLease(e.to_string()),
            }
        }
    }

    /// Takes or renews the Lease if the decision allows; `false` when someone else holds it.
    async fn try_hold(&self) -> Result<bool> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.name).await?;
        let decision = decide(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.identity,
            now,
        );
        let previous = current
            .as_ref()
            .and_then(|l| l.spec.clone())
            .unwrap_or_default();
        let spec = match decision {
            LeaseDecision::Wait { .. } => return Ok(false),
            LeaseDecision::Renew => LeaseSpec {
                renew_time: Some(MicroTime(now)),
                ..previous
            },
            LeaseDecision::Take => LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(self.lease_duration.as_secs() as i32),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(
                    previous.lease_transitions.unwrap_or(0) + i32::from(current.is_some()),
                ),
                ..Default::default()
            },
        };
        let result = match current {
            Some(mut lease) => {
                lease.spec = Some(spec);
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(spec),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
        };
        match result {
            Ok(_) => Ok(true),
            // Someone else wrote first.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn held_by(holder: &str, renewed: &str) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(t(renewed))),
            ..Default::default()
        }
    }

    #[test]
    fn a_missing_lease_is_taken() {
        assert_eq!(
            decide(None, "a", t("2026-12-10T18:00:00Z")),
            LeaseDecision::Take
        );
    }

    #[test]
    fn the_holder_renews() {
        let spec = held_by("a", "2026-12-10T18:00:00Z");
        assert_eq!(
            decide(Some(&spec), "a", t("2026-12-10T18:00:05Z")),
            LeaseDecision::Renew
        );
    }

    #[test]
    fn others_wait_while_the_lease_is_fresh_and_take_it_once_expired() {
        let spec = held_by("a", "2026-12-10T18:00:00Z");
        assert_eq!(
            decide(Some(&spec), "b", t("2026-12-10T18:00:14Z")),
            LeaseDecision::Wait {
                until: t("2026-12-10T18:00:15Z")
            }
        );
        assert_eq!(
            decide(Some(&spec), "b", t("2026-12-10T18:00:15Z")),
            LeaseDecision::Take
        );
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let mut spec = held_by("a", "2026-12-10T18:00:00Z");
        spec.holder_identity = Some(String::new());
        assert_eq!(
            decide(Some(&spec), "b", t("2026-12-10T18:00:01Z")),
            LeaseDecision::Take
        );
    }
}
