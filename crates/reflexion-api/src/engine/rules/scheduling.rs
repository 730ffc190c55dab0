//! A pod that requests more than any node can allocate never schedules: propose lowering its request to what the
//! roomiest node has free. Lowering requests can starve a workload, so the action is high risk and, by default,
//! waits for an operator's approval.

use super::{Engine, Plan};
use crate::cluster::{pod_request, quantity};
use reflexion_core::owner::WorkloadRef;
use reflexion_core::quantity::{format_bytes, format_millicores};
use reflexion_core::{Action, Failure};
use serde_json::Value;

/// The request a container must come down to for its pod to fit, or `None` when lowering cannot help or is not the
/// problem: the pod fits some node's allocatable (the nodes are only full), or even the roomiest node's free
/// capacity leaves nothing for this container.
pub(super) fn lowered_request(
    container_request: u64,
    pod_request: u64,
    nodes: &[(String, u64, u64)],
) -> Option<(u64, String)> {
    let largest = nodes.iter().map(|(_, a, _)| *a).max()?;
    if pod_request <= largest {
        return None;
    }
    let (node, free) = nodes
        .iter()
        .map(|(n, a, r)| (n, a.saturating_sub(*r)))
        .max_by_key(|(_, f)| *f)?;
    let others = pod_request.saturating_sub(container_request);
    let fit = free.checked_sub(others).filter(|f| *f > 0)?;
    (fit < container_request).then(|| (fit, node.clone()))
}

impl Engine {
    /// `None` when the rule does not apply; the caller escalates with the scheduler's message.
    pub(super) async fn plan_requests(
        &self,
        failure: &Failure,
        target: &WorkloadRef,
        pod_name: &str,
        cause: &str,
    ) -> Option<Plan> {
        let resource = match cause {
            "insufficient_memory" => "memory",
            "insufficient_cpu" => "cpu",
            _ => return None,
        };
        let cluster = &self.inner.cluster;
        let pod = cluster.pod(&target.namespace, pod_name).await.ok()??;
        let container = cluster.container(target, &failure.container).await.ok()?;
        let current = container["resources"]["requests"][resource]
            .as_str()
            .and_then(|q| quantity(resource, q))?;
        let nodes = cluster.node_capacity(resource).await.ok()?;
        let (fit, node) = lowered_request(current, pod_request(&pod, resource), &nodes)?;
        let (memory, cpu, shown, was) = if resource == "memory" {
            // Whole MiB, rounded down, so the rounded value still fits.
            let mib = fit / (1024 * 1024);
            if mib == 0 {
                return None;
            }
            let q = format_bytes(mib * 1024 * 1024);
            (Some(q.clone()), None, q, format_bytes(current))
        } else {
            let q = format_millicores(fit);
            (None, Some(q.clone()), q, format_millicores(current))
        };
        Some(Plan {
            action: Action::SetRequests {
                target: target.clone(),
                container: failure.container.clone(),
                memory,
                cpu,
            },
            source: "rules".into(),
            rationale: format!(
                "container {} requests {was} of {resource}, more than any node can allocate; {shown} fits node {node}'s free capacity",
                failure.container
            ),
            template: format!("set_requests:fit_largest_node_{resource}"),
            description: "Lower a request larger than any node's allocatable to what the roomiest node has free (needs approval by default)".into(),
            llm: Value::Null,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GI: u64 = 1024 * 1024 * 1024;

    #[test]
    fn lowering_applies_only_when_no_node_could_ever_fit_the_pod() {
        let nodes = vec![
            ("a".to_string(), 4 * GI, GI),
            ("b".to_string(), 8 * GI, 2 * GI),
        ];
        let cases = [
            // 64Gi on 4Gi/8Gi nodes: down to node b's 6Gi free.
            (64 * GI, 64 * GI, Some((6 * GI, "b".to_string()))),
            // A sidecar's 1Gi stays; the container gets the rest.
            (63 * GI, 64 * GI, Some((5 * GI, "b".to_string()))),
            // 7Gi fits node b's allocatable: the nodes are only busy, lowering is not the fix.
            (7 * GI, 7 * GI, None),
            // Other containers alone fill the free space.
            (GI, 10 * GI, None),
        ];
        for (container, pod, want) in cases {
            assert_eq!(
                lowered_request(container, pod, &nodes),
                want,
                "{container} {pod}"
            );
        }
        assert_eq!(lowered_request(GI, GI, &[]), None);
    }
}
