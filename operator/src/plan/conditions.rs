//! Turning planned conditions into Kubernetes conditions, keeping `lastTransitionTime` when a
//! condition's status has not changed.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::decide::ConditionPlan;

/// Conditions to write, stamped with `generation`; a condition whose status is unchanged keeps
/// its previous transition time.
pub fn conditions(
    planned: &[ConditionPlan],
    previous: &[Condition],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    planned
        .iter()
        .map(|plan| {
            let status = if plan.status { "True" } else { "False" };
            let since = previous
                .iter()
                .find(|c| c.type_ == plan.type_ && c.status == status)
                .map_or(Time(now), |c| c.last_transition_time.clone());
            Condition {
                type_: plan.type_.to_string(),
                status: status.to_string(),
                reason: plan.reason.to_string(),
                message: plan.message.clone(),
                observed_generation: generation,
                last_transition_time: since,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(status: bool, reason: &'static str) -> ConditionPlan {
        ConditionPlan {
            type_: "Ready",
            status,
            reason,
            message: String::new(),
        }
    }

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let t0: Timestamp = "2026-12-10T18:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-12-10T18:05:00Z".parse().unwrap();
        let first = conditions(&[plan(false, "PodCreated")], &[], Some(1), t0);
        let same = conditions(&[plan(false, "PodNotReady")], &first, Some(2), t1);
        assert_eq!(same[0].last_transition_time.0, t0);
        assert_eq!(same[0].reason, "PodNotReady");
        assert_eq!(same[0].observed_generation, Some(2));
        let flipped = conditions(&[plan(true, "Live")], &same, Some(2), t1);
        assert_eq!(flipped[0].last_transition_time.0, t1);
        assert_eq!(flipped[0].status, "True");
    }
}
