//! The scheduler: binds pending pods to the node when they fit (resource requests against allocatable, nodeSelector,
//! taints and tolerations, bound PersistentVolumeClaims), and otherwise reports why exactly as kube-scheduler does:
//! `PodScheduled=False/Unschedulable` and a `FailedScheduling` event.

use crate::events::{Recorder, Source};
use crate::store::{Store, now};
use crate::{Clock, quantity, resources};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const RETRY: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct Scheduler {
    next_attempt: HashMap<String, Instant>,
}

/// Why the pod does not fit: a cluster-wide reason (a missing claim), or per-node reasons.
#[derive(Debug, PartialEq)]
enum Misfit {
    NoNodes,
    /// A reason that holds for every node (a missing claim).
    Cluster {
        why: String,
        nodes: usize,
    },
    /// Per node: its reasons, and whether preempting other pods could make room.
    Nodes(Vec<(Vec<String>, bool)>),
}

impl Scheduler {
    pub fn pass(&mut self, store: &Store, recorder: &Recorder, clock: Clock) {
        let (pods, _) = store.list_shared(resources::pods(), None);
        let nodes: Vec<Value> = store
            .list(resources::nodes(), None)
            .0
            .into_iter()
            .filter(|n| n["spec"]["unschedulable"] != true)
            .filter(|n| {
                n["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .collect();
        let t = Instant::now();
        self.next_attempt.retain(|uid, _| {
            pods.iter()
                .any(|p| p["metadata"]["uid"].as_str() == Some(uid))
        });
        for p in &pods {
            let unbound = p["spec"]["nodeName"].as_str().is_none_or(str::is_empty);
            if !unbound
                || p["spec"]["schedulerName"] != "default-scheduler"
                || !p["metadata"]["deletionTimestamp"].is_null()
            {
                continue;
            }
            let uid = p["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if self.next_attempt.get(&uid).is_some_and(|at| t < *at) {
                continue;
            }
            let (ns, name) = (
                p["metadata"]["namespace"].as_str().unwrap_or("default"),
                p["metadata"]["name"].as_str().unwrap_or_default(),
            );
            match place(store, p, &nodes, &pods) {
                Ok(node) => {
                    if let Ok(bound) = store.bind(ns, name, &node) {
                        let msg = format!("Successfully assigned {ns}/{name} to {node}");
                        recorder.record(
                            store,
                            &Source {
                                component: "default-scheduler",
                                host: None,
                            },
                            &bound,
                            None,
                            ("Normal", "Scheduled", &msg),
                        );
                    }
                    self.next_attempt.remove(&uid);
                }
                Err(m) => {
                    let message = message(&m);
                    let cond = json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                                      "lastProbeTime": null, "lastTransitionTime": now()});
                    let current = p["status"]["conditions"]
                        .as_array()
                        .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled"))
                        .cloned();
                    if current
                        .as_ref()
                        .is_none_or(|c| c["message"] != message.as_str())
                    {
                        let _ = store.modify(resources::pods(), ns, name, true, false, |o| {
                            let mut o = o.clone();
                            o["status"]["phase"] = json!("Pending");
                            o["status"]["conditions"] = json!([cond]);
                            o["metadata"]["resourceVersion"] = Value::Null;
                            Ok(o)
                        });
                    }
                    recorder.record(
                        store,
                        &Source {
                            component: "default-scheduler",
                            host: None,
                        },
                        p,
                        None,
                        ("Warning", "FailedScheduling", &message),
                    );
                    self.next_attempt.insert(uid, t + clock.real(RETRY));
                }
            }
        }
    }
}

fn message(m: &Misfit) -> String {
    match m {
        Misfit::NoNodes => "no nodes available to schedule pods".into(),
        Misfit::Cluster { why, nodes } => format!(
            "0/{nodes} nodes are available: {why}. preemption: 0/{nodes} nodes are available: {nodes} Preemption is not helpful for scheduling."
        ),
        Misfit::Nodes(per_node) => {
            let n = per_node.len();
            let mut counts: std::collections::BTreeMap<&str, usize> =
                std::collections::BTreeMap::new();
            for (reasons, _) in per_node {
                for r in reasons {
                    *counts.entry(r.as_str()).or_default() += 1;
                }
            }
            let list: Vec<String> = counts.iter().map(|(r, c)| format!("{c} {r}")).collect();
            let helps = per_node.iter().filter(|(_, h)| *h).count();
            let mut preemption = Vec::new();
            if helps > 0 {
                preemption.push(format!(
                    "{helps} No preemption victims found for incoming pod"
                ));
            }
            if n - helps > 0 {
                preemption.push(format!(
                    "{} Preemption is not helpful for scheduling",
                    n - helps
                ));
            }
            format!(
                "0/{n} nodes are available: {}. preemption: 0/{n} nodes are available: {}.",
                list.join(", "),
                preemption.join(", ")
            )
        }
    }
}

/// Requests of a pod: the sum over app containers, or the largest init container if that is larger.
fn requests(p: &Value, resource: &str) -> f64 {
    let get = |c: &Value| {
        let r = &c["resources"];
        // A limit without a request defaults the request to the limit.
        r["requests"][resource]
            .as_str()
            .or(r["limits"][resource].as_str())
            .and_then(quantity::parse)
            .unwrap_or(0.0)
    };
    let apps: f64 = p["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(get)
        .sum();
    let init = p["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(get)
        .fold(0.0, f64::max);
    apps.max(init)
}

/// The node to bind the pod to, or why there is none.
fn place(store: &Store, p: &Value, nodes: &[Value], pods: &[Arc<Value>]) -> Result<String, Misfit> {
    if nodes.is_empty() {
        return Err(Misfit::NoNodes);
    }
    let ns = p["metadata"]["namespace"].as_str().unwrap_or("default");
    for v in p["spec"]["volumes"].as_array().into_iter().flatten() {
        let Some(claim) = v["persistentVolumeClaim"]["claimName"].as_str() else {
            continue;
        };
        match store.get(resources::pvcs(), ns, claim) {
            Err(_) => {
                let why = format!("persistentvolumeclaim \"{claim}\" not found");
                return Err(Misfit::Cluster {
                    why,
                    nodes: nodes.len(),
                });
            }
            Ok(pvc) if pvc["status"]["phase"] != "Bound" => {
                return Err(Misfit::Cluster {
                    why: "pod has unbound immediate PersistentVolumeClaims".into(),
                    nodes: nodes.len(),
                });
            }
            Ok(_) => {}
        }
    }
    let mut per_node = Vec::new();
    for node in nodes {
        match node_misfit(p, node, pods) {
            None => {
                return Ok(node["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string());
            }
            Some(m) => per_node.push(m),
        }
    }
    Err(Misfit::Nodes(per_node))
}

/// Why the pod does not fit on this node, and whether preemption could help.
fn node_misfit(p: &Value, node: &Value, pods: &[Arc<Value>]) -> Option<(Vec<String>, bool)> {
    let node_name = node["metadata"]["name"].as_str().unwrap_or_default();
    let mut reasons = Vec::new();
    let labels = &node["metadata"]["labels"];
    let selector_ok = p["spec"]["nodeSelector"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    if !selector_ok || !affinity_ok(p, node) {
        reasons.push("node(s) didn't match Pod's node affinity/selector".to_string());
    }
    let tolerations = p["spec"]["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for taint in node["spec"]["taints"].as_array().into_iter().flatten() {
        let effect = taint["effect"].as_str().unwrap_or_default();
        if effect == "PreferNoSchedule" || tolerations.iter().any(|t| tolerates(t, taint)) {
            continue;
        }
        let key = taint["key"].as_str().unwrap_or_default();
        let shown = match taint["value"].as_str() {
            Some(v) if !v.is_empty() => format!("{{{key}: {v}}}"),
            _ => format!("{{{key}: }}"),
        };
        reasons.push(format!("node(s) had untolerated taint {shown}"));
    }
    if !reasons.is_empty() {
        return Some((reasons, false));
    }
    let on_node: Vec<&Value> = pods
        .iter()
        .map(|o| o.as_ref())
        .filter(|o| {
            o["spec"]["nodeName"] == node_name
                && !matches!(o["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
        })
        .collect();
    let alloc = &node["status"]["allocatable"];
    for (resource, label) in [
        ("cpu", "Insufficient cpu"),
        ("memory", "Insufficient memory"),
    ] {
        let capacity = alloc[resource]
            .as_str()
            .and_then(quantity::parse)
            .unwrap_or(f64::MAX);
        let used: f64 = on_node.iter().map(|o| requests(o, resource)).sum();
        if used + requests(p, resource) > capacity {
            reasons.push(label.to_string());
        }
    }
    let max_pods = alloc["pods"]
        .as_str()
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(110);
    if on_node.len() >= max_pods {
        reasons.push("Too many pods".to_string());
    }
    (!reasons.is_empty()).then_some((reasons, true))
}

/// Required node affinity: some term (they are ORed) whose expressions (ANDed) all hold for the node's labels.
pub fn affinity_ok(p: &Value, node: &Value) -> bool {
    let terms = &p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"];
    let Some(terms) = terms.as_array().filter(|t| !t.is_empty()) else {
        return true;
    };
    let labels = &node["metadata"]["labels"];
    terms.iter().any(|term| {
        let exprs = term["matchExpressions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let fields = term["matchFields"].as_array().cloned().unwrap_or_default();
        (!exprs.is_empty() || !fields.is_empty())
            && exprs.iter().all(|e| expression_holds(e, labels))
            && fields.iter().all(|f| {
                // The only field a term may match on is the node's name.
                f["key"] == "metadata.name"
                    && expression_holds(f, &json!({"metadata.name": node["metadata"]["name"]}))
            })
    })
}

fn expression_holds(e: &Value, labels: &Value) -> bool {
    let key = e["key"].as_str().unwrap_or_default();
    let value = labels.get(key).and_then(Value::as_str);
    let values: Vec<&str> = e["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let number = |s: Option<&str>| s.and_then(|v| v.parse::<i64>().ok());
    match e["operator"].as_str().unwrap_or_default() {
        "In" => value.is_some_and(|v| values.contains(&v)),
        "NotIn" => value.is_none_or(|v| !values.contains(&v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => {
            matches!((number(value), number(values.first().copied())), (Some(a), Some(b)) if a > b)
        }
        "Lt" => {
            matches!((number(value), number(values.first().copied())), (Some(a), Some(b)) if a < b)
        }
        _ => false,
    }
}

fn tolerates(t: &Value, taint: &Value) -> bool {
    let effect_ok = t["effect"]
        .as_str()
        .is_none_or(|e| e.is_empty() || taint["effect"] == e);
    let key_ok = t["key"]
        .as_str()
        .is_none_or(|k| k.is_empty() || taint["key"] == k);
    let value_ok = match t["operator"].as_str().unwrap_or("Equal") {
        "Exists" => true,
        _ => t["value"].as_str().unwrap_or("") == taint["value"].as_str().unwrap_or(""),
    };
    effect_ok && key_ok && value_ok
}

/// The pvc-protection controller: a claim being deleted loses its protection once no scheduled pod uses it (a pod
/// that never reached a node never mounted it).
pub fn release_claims(store: &Store) {
    let mut pods = None;
    for pvc in store.list(resources::pvcs(), None).0 {
        if pvc["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        let pods = pods.get_or_insert_with(|| store.list_shared(resources::pods(), None).0);
        let (ns, name) = (
            pvc["metadata"]["namespace"].as_str().unwrap_or("default"),
            pvc["metadata"]["name"].as_str().unwrap_or_default(),
        );
        let in_use = pods.iter().any(|p| {
            p["metadata"]["namespace"] == ns
                && p["spec"]["nodeName"]
                    .as_str()
                    .is_some_and(|n| !n.is_empty())
                && !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
                && p["spec"]["volumes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|v| v["persistentVolumeClaim"]["claimName"] == name)
        });
        if !in_use {
            let _ = store.modify(resources::pvcs(), ns, name, false, false, |o| {
                let mut o = o.clone();
                if let Some(f) = o["metadata"]["finalizers"].as_array_mut() {
                    f.retain(|x| x != crate::admission::PVC_PROTECTION);
                }
                o["metadata"]["resourceVersion"] = Value::Null;
                Ok(o)
            });
        }
    }
}

/// The PersistentVolumeClaim binder: a claim of a StorageClass that exists is provisioned and bound at once; one of a
/// class that does not exist stays Pending with `ProvisioningFailed`, as on a real cluster.
pub fn bind_claims(store: &Store, recorder: &Recorder) {
    for pvc in store.list(resources::pvcs(), None).0 {
        if pvc["status"]["phase"] != "Pending" || !pvc["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        let (ns, name) = (
            pvc["metadata"]["namespace"].as_str().unwrap_or("default"),
            pvc["metadata"]["name"].as_str().unwrap_or_default(),
        );
        let class = pvc["spec"]["storageClassName"].as_str().unwrap_or_default();
        if class.is_empty() {
            // No class and no default: only a pre-provisioned volume could bind it.
            continue;
        }
        if store.get(resources::storage_classes(), "", class).is_err() {
            let msg = format!("storageclass.storage.k8s.io \"{class}\" not found");
            recorder.record(
                store,
                &Source {
                    component: "persistentvolume-controller",
                    host: None,
                },
                &pvc,
                None,
                ("Warning", "ProvisioningFailed", &msg),
            );
            continue;
        }
        let volume = format!(
            "pvc-{}",
            pvc["metadata"]["uid"].as_str().unwrap_or_default()
        );
        let bound = store.modify(resources::pvcs(), ns, name, false, false, |o| {
            let mut o = o.clone();
            o["spec"]["volumeName"] = json!(volume);
            o["metadata"]["resourceVersion"] = Value::Null;
            Ok(o)
        });
        if bound.is_ok() {
            let _ = store.modify(resources::pvcs(), ns, name, true, false, |o| {
                let mut o = o.clone();
                o["status"] = json!({"phase": "Bound", "accessModes": o["spec"]["accessModes"],
                                     "capacity": {"storage": o["spec"]["resources"]["requests"]["storage"]}});
                o["metadata"]["resourceVersion"] = Value::Null;
                Ok(o)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_match_kube_scheduler() {
        let one = Misfit::Nodes(vec![(vec!["Insufficient memory".into()], true)]);
        assert_eq!(
            message(&one),
            "0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
        );
        let two = Misfit::Nodes(vec![
            (
                vec!["Insufficient cpu".into(), "Insufficient memory".into()],
                true,
            ),
            (
                vec!["node(s) didn't match Pod's node affinity/selector".into()],
                false,
            ),
        ]);
        assert_eq!(
            message(&two),
            "0/2 nodes are available: 1 Insufficient cpu, 1 Insufficient memory, 1 node(s) didn't match Pod's node affinity/selector. preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling."
        );
        let claim = Misfit::Cluster {
            why: "persistentvolumeclaim \"data\" not found".into(),
            nodes: 1,
        };
        assert!(message(&claim).starts_with(
            "0/1 nodes are available: persistentvolumeclaim \"data\" not found. preemption:"
        ));
        assert_eq!(
            message(&Misfit::NoNodes),
            "no nodes available to schedule pods"
        );
    }

    #[test]
    fn required_node_affinity_is_a_disjunction_of_conjunctions() {
        let node = json!({"metadata": {"name": "n1", "labels": {"disktype": "ssd", "zone": "a", "cores": "8"}}});
        let pod = |terms: Value| json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}});
        let expr = |key: &str, op: &str, values: &[&str]| json!({"key": key, "operator": op, "values": values});
        let cases = [
            (
                json!([{"matchExpressions": [expr("disktype", "In", &["ssd", "nvme"])]}]),
                true,
            ),
            (
                json!([{"matchExpressions": [expr("disktype", "In", &["nvme"])]}]),
                false,
            ),
            (
                json!([{"matchExpressions": [expr("disktype", "In", &["nvme"])]}, {"matchExpressions": [expr("zone", "In", &["a"])]}]),
                true,
            ),
            (
                json!([{"matchExpressions": [expr("zone", "In", &["a"]), expr("gpu", "Exists", &[])]}]),
                false,
            ),
            (
                json!([{"matchExpressions": [expr("gpu", "DoesNotExist", &[]), expr("cores", "Gt", &["4"])]}]),
                true,
            ),
            (
                json!([{"matchExpressions": [expr("zone", "NotIn", &["a"])]}]),
                false,
            ),
            (
                json!([{"matchFields": [expr("metadata.name", "In", &["n1"])]}]),
                true,
            ),
        ];
        for (terms, want) in cases {
            assert_eq!(affinity_ok(&pod(terms.clone()), &node), want, "{terms}");
        }
        assert!(affinity_ok(&json!({"spec": {}}), &node));
    }

    #[test]
    fn a_claim_in_use_by_a_scheduled_pod_is_deleted_only_after_it() {
        let store = Store::new();
        crate::store::bootstrap(&store);
        let claim = json!({"metadata": {"name": "data"}, "spec": {"resources": {"requests": {"storage": "1Gi"}}}});
        let created = store
            .create(resources::pvcs(), "default", claim, false)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            created["metadata"]["finalizers"],
            json!(["kubernetes.io/pvc-protection"])
        );
        assert_eq!(
            created["spec"]["storageClassName"], "standard",
            "the default class"
        );
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}],
                         "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}});
        store
            .create(resources::pods(), "default", pod, false)
            .unwrap_or_else(|e| panic!("{e}"));
        let gone = || store.get(resources::pvcs(), "default", "data").is_err();
        // An unscheduled pod never mounted the claim: it does not hold it.
        let _ = store.delete(resources::pvcs(), "default", "data", &Default::default());
        release_claims(&store);
        assert!(gone());
        // A scheduled one does.
        let claim = json!({"metadata": {"name": "data"}, "spec": {"resources": {"requests": {"storage": "1Gi"}}}});
        let _ = store.create(resources::pvcs(), "default", claim, false);
        let _ = store.bind("default", "p", "n1");
        let _ = store.delete(resources::pvcs(), "default", "data", &Default::default());
        release_claims(&store);
        assert!(!gone(), "held while the pod runs");
        let _ = store.delete(
            resources::pods(),
            "default",
            "p",
            &crate::store::DeleteOptions {
                grace_period: Some(0),
                ..Default::default()
            },
        );
        release_claims(&store);
        assert!(gone());
    }

    #[test]
    fn tolerations_match_taints() {
        let taint = json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"});
        for (t, want) in [
            (
                json!({"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}),
                true,
            ),
            (json!({"key": "dedicated", "operator": "Exists"}), true),
            (json!({"operator": "Exists"}), true),
            (json!({"key": "dedicated", "value": "cpu"}), false),
            (json!({"key": "other", "operator": "Exists"}), false),
            (
                json!({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}),
                false,
            ),
        ] {
            assert_eq!(tolerates(&t, &taint), want, "{t}");
        }
    }

    #[test]
    fn requests_sum_containers_and_default_to_limits() {
        let p = json!({"spec": {"containers": [
            {"resources": {"requests": {"memory": "100Mi"}}},
            {"resources": {"limits": {"memory": "200Mi"}}}
        ], "initContainers": [{"resources": {"requests": {"memory": "1Gi"}}}]}});
        assert_eq!(requests(&p, "memory"), 1024.0 * 1024.0 * 1024.0);
        assert_eq!(requests(&json!({"spec": {"containers": [{}]}}), "cpu"), 0.0);
    }
}
