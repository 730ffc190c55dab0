//! A failure that began with the latest rollout while an earlier revision still runs: roll back to that revision.

use crate::engine::{Engine, Plan};
use reflexion_core::owner::WorkloadRef;
use reflexion_core::strategy::PlanSource;
use reflexion_core::{Action, Failure};
use serde_json::Value;

impl Engine {
    /// A failure that began with the latest rollout while the previous revision still runs is undone by rolling
    /// back to that revision: the change that broke it is known, the fix is proven.
    pub(in crate::engine) async fn plan_rollback(
        &self,
        failure: &Failure,
        target: &WorkloadRef,
        evidence: &Value,
    ) -> Option<Plan> {
        let chain = evidence["owner_chain"].as_array()?;
        let failing_rs = chain.iter().find(|l| l["kind"] == "ReplicaSet")?["name"].as_str()?;
        let revisions = self.scope.cluster.revisions(target).await.ok()?;
        let newest = revisions.first()?;
        if newest.replicaset != failing_rs {
            return None;
        }
        let previous = revisions.iter().skip(1).find(|r| r.available > 0)?;
        Some(Plan {
            action: Action::RolloutUndo {
                target: target.clone(),
                to_revision: Some(previous.number),
            },
            rationale: format!(
                "container {} started failing ({}) with revision {} (ReplicaSet {}), while revision {} (ReplicaSet {}) still runs {} available pod(s)",
                failure.container, failure.reason, newest.number, newest.replicaset, previous.number, previous.replicaset, previous.available
            ),
            source: PlanSource::Rules,
            template: "rollout_undo:previous_running_revision".into(),
            description: "Roll back to the newest earlier revision that still runs when a failure began with the latest rollout".into(),
            llm: Value::Null,
            payload: None,
            proposal: None,
        })
    }
}
