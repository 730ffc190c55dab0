//! OOM kills: raise the container's memory limit at the owner, from the highest limit tried, up to the ceiling;
//! a limit that held for this workload before is where the next occurrence starts.

use crate::engine::{Engine, MEMORY_LIMIT_KEY, Plan, Planned};
use reflexion_core::owner::WorkloadRef;
use reflexion_core::quantity::{format_bytes, next_memory_limit, parse_bytes};
use reflexion_core::strategy::PlanSource;
use reflexion_core::{Action, Failure, Signature};
use serde_json::Value;

impl Engine {
    /// OOM-killed: raise the memory limit on the owner by the rule (2× or +256Mi, capped), from the highest limit
    /// already tried in this incident.
    pub(in crate::engine) async fn plan_memory(
        &self,
        failure: &Failure,
        target: &WorkloadRef,
        tried: &[Action],
    ) -> Planned {
        let (limit, request) = match self.scope.cluster.memory(target, &failure.container).await {
            Ok(m) => m,
            Err(e) => {
                return Planned::Escalate {
                    diagnosis: format!("cannot read the memory settings of {target}: {e}"),
                    suggestion: "raise the memory limit by hand".into(),
                };
            }
        };
        let Some(current) = limit.as_deref().and_then(parse_bytes) else {
            return Planned::Escalate {
                diagnosis: format!("container {} of {target} was OOM-killed without a memory limit of its own: the node ran out of memory", failure.container),
                suggestion: "set a memory request and limit that match what the container uses, or move it to a larger node".into(),
            };
        };
        let tried_max = tried
            .iter()
            .filter_map(|a| match a {
                Action::SetResources { memory_limit, .. } => parse_bytes(memory_limit),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        // Memory: a limit that held for this workload before is where the next occurrence starts.
        if tried.is_empty() {
            let signature = Signature::of(failure).class();
            let kind = target.kind.to_string();
            let learned = self
                .inner
                .db
                .learned_value(
                    &signature,
                    &target.namespace,
                    &kind,
                    &target.name,
                    MEMORY_LIMIT_KEY,
                )
                .await
                .ok()
                .flatten();
            if let Some((value, episode)) = learned.filter(|(v, _)| {
                parse_bytes(v).is_some_and(|b| b > current && b <= self.inner.config.memory_ceiling)
            }) {
                return Planned::Plan(Box::new(Plan {
                    action: Action::SetResources {
                        target: target.clone(),
                        container: failure.container.clone(),
                        memory_limit: value.clone(),
                        memory_request: None,
                    },
                    source: PlanSource::Learned,
                    rationale: format!(
                        "a {value} memory limit held for {target} before ({episode}); the limit is {} again",
                        format_bytes(current)
                    ),
                    template: "set_resources:raise_memory_limit".into(),
                    description: "Raise the container's memory limit on the owner: the larger of 2x and +256Mi per trial, capped by the ceiling".into(),
                    llm: Value::Null,
                    payload: None,
                    proposal: None,
                }));
            }
        }
        let base = current.max(tried_max);
        let ceiling = self.inner.config.memory_ceiling;
        let Some(next) = next_memory_limit(base, ceiling) else {
            return Planned::Escalate {
                diagnosis: format!("container {} of {target} is OOM-killed at a memory limit of {} and the ceiling is {}", failure.container, format_bytes(base), format_bytes(ceiling)),
                suggestion: "find out why it needs that much memory (a leak, a larger data set) before raising the limit further".into(),
            };
        };
        let new_limit = format_bytes(next);
        // Keep request <= limit: only touch the request if it would end up above the new limit.
        let memory_request = request
            .filter(|r| parse_bytes(r).is_some_and(|b| b > next))
            .map(|_| new_limit.clone());
        Planned::Plan(Box::new(Plan {
            action: Action::SetResources {
                target: target.clone(),
                container: failure.container.clone(),
                memory_limit: new_limit.clone(),
                memory_request,
            },
            rationale: format!(
                "container {} was OOM-killed at a {} limit; {new_limit} is the larger of twice the limit and the limit plus 256Mi (ceiling {})",
                failure.container,
                format_bytes(base),
                format_bytes(ceiling)
            ),
            source: PlanSource::Rules,
            template: "set_resources:raise_memory_limit".into(),
            description: "Raise the container's memory limit on the owner: the larger of 2x and +256Mi per trial, capped by the ceiling".into(),
            llm: Value::Null,
            payload: None,
            proposal: None,
        }))
    }
}
