//! Pods no node takes. A pod that requests more than any node can allocate: propose lowering its request to what
//! the roomiest node has free. A nodeSelector no node satisfies: remove the keys no node has, or set a key to the
//! one value nodes have for it. Taints and required node affinity are handed over, naming the taint and the
//! toleration, or the term. Lowering requests can starve a workload and moving it changes where it runs, so both
//! actions are high risk and, by default, wait for an operator's approval.

use super::{Engine, Plan, Planned};
use crate::cluster::{NodeFacts, pod_request, quantity};
use k8s_openapi::api::core::v1::{Taint, Toleration};
use reflexion_core::owner::WorkloadRef;
use reflexion_core::quantity::{format_bytes, format_millicores};
use reflexion_core::strategy::PlanSource;
use reflexion_core::{Action, Cause, Failure};
use serde_json::Value;
use std::collections::BTreeMap;

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

/// The smallest change to a nodeSelector after which some node matches it: `(keys to remove, keys to set)`. A key
/// no node has is removed; a key whose value no node has is set to the one value nodes have for it. `None` when
/// the selector is not the problem (a node matches it), when a key has several candidate values (which one is
/// meant is not ours to guess), or when no node would match even after the change.
pub(in crate::engine) fn selector_fix(
    selector: &BTreeMap<String, String>,
    nodes: &[BTreeMap<String, String>],
) -> Option<(Vec<String>, BTreeMap<String, String>)> {
    let matches = |sel: &BTreeMap<String, String>, labels: &BTreeMap<String, String>| {
        sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    };
    if nodes.is_empty() || nodes.iter().any(|n| matches(selector, n)) {
        return None;
    }
    let (mut remove, mut set) = (Vec::new(), BTreeMap::new());
    for (key, value) in selector {
        let mut values: Vec<&String> = nodes.iter().filter_map(|n| n.get(key)).collect();
        values.sort();
        values.dedup();
        match values.as_slice() {
            [] => remove.push(key.clone()),
            v if v.contains(&value) => {}
            [only] => {
                set.insert(key.clone(), (*only).clone());
            }
            _ => return None,
        }
    }
    let mut fixed = selector.clone();
    for k in &remove {
        fixed.remove(k);
    }
    fixed.extend(set.clone());
    ((!remove.is_empty() || !set.is_empty()) && nodes.iter().any(|n| matches(&fixed, n)))
        .then_some((remove, set))
}

/// Whether a toleration tolerates a taint, as the scheduler decides it.
fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or_default();
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => key.is_empty() || key == taint.key,
        _ => {
            key == taint.key
                && t.value.as_deref().unwrap_or_default()
                    == taint.value.as_deref().unwrap_or_default()
        }
    }
}

/// The taints, per node, that keep a pod with these tolerations off every node that has any.
pub(super) fn untolerated(tolerations: &[Toleration], nodes: &[NodeFacts]) -> Vec<(String, Taint)> {
    nodes
        .iter()
        .flat_map(|n| n.taints.iter().map(move |t| (n.name.clone(), t.clone())))
        .filter(|(_, taint)| !tolerations.iter().any(|t| tolerates(t, taint)))
        .collect()
}

impl Engine {
    /// `None` when the rule does not apply; the caller escalates with the scheduler's message.
    pub(super) async fn plan_requests(
        &self,
        failure: &Failure,
        target: &WorkloadRef,
        pod_name: &str,
        cause: Cause,
    ) -> Option<Plan> {
        let resource = match cause {
            Cause::InsufficientMemory => "memory",
            Cause::InsufficientCpu => "cpu",
            _ => return None,
        };
        let cluster = &self.scope.cluster;
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
            source: PlanSource::Rules,
            rationale: format!(
                "container {} requests {was} of {resource}, more than any node can allocate; {shown} fits node {node}'s free capacity",
                failure.container
            ),
            template: format!("set_requests:fit_largest_node_{resource}"),
            description: "Lower a request larger than any node's allocatable to what the roomiest node has free (needs approval by default)".into(),
            llm: Value::Null,
            payload: None,
            proposal: None,
        })
    }

    /// A nodeSelector no node satisfies, a required node affinity term, or a taint: the typed fix for the selector,
    /// else a precise hand-over.
    pub(super) async fn plan_placement(
        &self,
        failure: &Failure,
        target: &WorkloadRef,
        pod_name: &str,
        cause: Cause,
    ) -> Planned {
        let cluster = &self.scope.cluster;
        let (pod, nodes) = match (
            cluster.pod(&target.namespace, pod_name).await,
            cluster.schedulable_nodes().await,
        ) {
            (Ok(Some(p)), Ok(n)) => (p, n),
            (Err(e), _) | (_, Err(e)) => {
                return Planned::Escalate {
                    diagnosis: format!(
                        "no node can run {target} ({}), and reading the pod and nodes failed: {e}",
                        failure.message
                    ),
                    suggestion: "read the scheduler's message and adjust the pod or the nodes"
                        .into(),
                };
            }
            (Ok(None), _) => {
                return Planned::Escalate {
                    diagnosis: format!("no node can run {target}: {}", failure.message),
                    suggestion: "read the scheduler's message and adjust the pod or the nodes"
                        .into(),
                };
            }
        };
        let spec = pod.spec.clone().unwrap_or_default();
        if cause == Cause::Taint {
            let taints = untolerated(spec.tolerations.as_deref().unwrap_or_default(), &nodes);
            let shown: Vec<String> = taints
                .iter()
                .map(|(node, t)| {
                    format!(
                        "node {node} has taint {}{}:{}",
                        t.key,
                        t.value
                            .as_deref()
                            .map(|v| format!("={v}"))
                            .unwrap_or_default(),
                        t.effect
                    )
                })
                .collect();
            let tolerations: Vec<String> = taints
                .iter()
                .map(|(_, t)| match &t.value {
                    Some(v) => format!(
                        "{{key: {}, operator: Equal, value: {v}, effect: {}}}",
                        t.key, t.effect
                    ),
                    None => format!("{{key: {}, operator: Exists, effect: {}}}", t.key, t.effect),
                })
                .collect();
            return Planned::Escalate {
                diagnosis: format!(
                    "no node can run {target}: {}; {}",
                    failure.message,
                    if shown.is_empty() {
                        "no untolerated taint found on the schedulable nodes now".into()
                    } else {
                        shown.join(", ")
                    }
                ),
                suggestion: if tolerations.is_empty() {
                    "add the matching toleration, or remove the taint from a node".into()
                } else {
                    format!(
                        "if {target} is meant to run on those nodes, add the toleration {} to its pod template; otherwise remove the taint from a node (kube-reflexion does not add tolerations: a taint is a decision someone made)",
                        tolerations.join(", ")
                    )
                },
            };
        }
        let selector: BTreeMap<String, String> = spec.node_selector.clone().unwrap_or_default();
        let labels: Vec<BTreeMap<String, String>> =
            nodes.iter().map(|n| n.labels.clone()).collect();
        let values_of = |key: &str| {
            let mut v: Vec<&String> = labels.iter().filter_map(|l| l.get(key)).collect();
            v.sort();
            v.dedup();
            v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("|")
        };
        if let Some((remove, set)) = selector_fix(&selector, &labels) {
            let mut what = Vec::new();
            for k in &remove {
                what.push(format!(
                    "no node has label {k}, so {k}={} is removed",
                    selector[k]
                ));
            }
            for (k, v) in &set {
                what.push(format!(
                    "nodes have {k}={v} and no other value, not {k}={}",
                    selector[k]
                ));
            }
            return Planned::Plan(Box::new(Plan {
                action: Action::SetNodeSelector {
                    target: target.clone(),
                    remove,
                    set,
                },
                source: PlanSource::Rules,
                rationale: format!(
                    "no node matches the nodeSelector of {target} ({}): {}; the other keys are kept",
                    failure.message,
                    what.join("; ")
                ),
                template: "set_node_selector:satisfiable_keys".into(),
                description: "Remove nodeSelector keys no node has, or set the one value nodes have (needs approval by default)".into(),
                llm: Value::Null,
                payload: None,
                proposal: None,
            }));
        }
        let affinity = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            });
        let shown_selector: Vec<String> = selector
            .iter()
            .map(|(k, v)| {
                format!("{k}={v} (nodes have: {})", {
                    let have = values_of(k);
                    if have.is_empty() {
                        "none".to_string()
                    } else {
                        have
                    }
                })
            })
            .collect();
        Planned::Escalate {
            diagnosis: format!(
                "no node can run {target}: {}; nodeSelector: {}{}",
                failure.message,
                if shown_selector.is_empty() { "none".into() } else { shown_selector.join(", ") },
                affinity
                    .map(|a| format!("; required node affinity: {}", serde_json::to_string(a).unwrap_or_default()))
                    .unwrap_or_default()
            ),
            suggestion: "correct the nodeSelector or the required node affinity to values nodes have, or label a node to match (kube-reflexion only removes selector keys no node has or sets the one value nodes have)".into(),
        }
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

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_selector_is_fixed_only_by_what_nodes_have() {
        let nodes = vec![
            labels(&[
                ("kubernetes.io/hostname", "node-1"),
                ("zone", "a"),
                ("disk", "ssd"),
            ]),
            labels(&[
                ("kubernetes.io/hostname", "node-2"),
                ("zone", "b"),
                ("disk", "ssd"),
            ]),
        ];
        let cases = [
            // No node has the key: removed, the other keys stay.
            (
                labels(&[("disktype", "nvme"), ("zone", "a")]),
                Some((vec!["disktype".to_string()], labels(&[]))),
            ),
            // One value exists for the key: set to it.
            (
                labels(&[("disk", "nvme")]),
                Some((vec![], labels(&[("disk", "ssd")]))),
            ),
            // Several values exist (zone a or b): which is meant is not ours to guess.
            (labels(&[("zone", "c")]), None),
            // A node matches already: the selector is not the problem.
            (labels(&[("zone", "b"), ("disk", "ssd")]), None),
            (labels(&[]), None),
            // Each key exists, but no node has both values: nothing to remove or set that helps.
            (
                labels(&[("zone", "a"), ("kubernetes.io/hostname", "node-2")]),
                None,
            ),
        ];
        for (selector, want) in cases {
            assert_eq!(selector_fix(&selector, &nodes), want, "{selector:?}");
        }
        assert_eq!(selector_fix(&labels(&[("x", "y")]), &[]), None);
    }

    #[test]
    fn taints_are_matched_against_tolerations_as_the_scheduler_does() {
        let taint = |key: &str, value: Option<&str>, effect: &str| Taint {
            key: key.into(),
            value: value.map(String::from),
            effect: effect.into(),
            time_added: None,
        };
        let nodes = vec![NodeFacts {
            name: "node-1".into(),
            labels: BTreeMap::new(),
            taints: vec![
                taint("dedicated", Some("gpu"), "NoSchedule"),
                taint("maintenance", None, "NoExecute"),
            ],
        }];
        let tol = |key: &str, op: &str, value: Option<&str>, effect: Option<&str>| Toleration {
            key: Some(key.into()),
            operator: Some(op.into()),
            value: value.map(String::from),
            effect: effect.map(String::from),
            toleration_seconds: None,
        };
        let cases = [
            (vec![], vec!["dedicated", "maintenance"]),
            (
                vec![tol("dedicated", "Equal", Some("gpu"), Some("NoSchedule"))],
                vec!["maintenance"],
            ),
            (
                vec![tol("dedicated", "Equal", Some("cpu"), None)],
                vec!["dedicated", "maintenance"],
            ),
            (
                vec![tol("dedicated", "Exists", None, Some("NoExecute"))],
                vec!["dedicated", "maintenance"],
            ),
            (
                vec![tol("maintenance", "Exists", None, None)],
                vec!["dedicated"],
            ),
            (vec![tol("", "Exists", None, None)], vec![]),
        ];
        for (tolerations, want) in cases {
            let got: Vec<String> = untolerated(&tolerations, &nodes)
                .into_iter()
                .map(|(_, t)| t.key)
                .collect();
            assert_eq!(got, want, "{tolerations:?}");
        }
    }
}
