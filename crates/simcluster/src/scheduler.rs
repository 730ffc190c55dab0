//! The scheduler: binds pending pods to the node when they fit (resource requests against allocatable, nodeSelector,
//! taints and tolerations, bound PersistentVolumeClaims), and otherwise reports why exactly as kube-scheduler does:
//! `PodScheduled=False/Unschedulable` and a `FailedScheduling` event.

use crate::events::{Recorder, Source};
use crate::store::{Store, now};
use crate::{Clock, NODE_NAME, quantity, resources};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const RETRY: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct Scheduler {
    next_attempt: HashMap<String, Instant>,
}

/// Why the pod does not fit: a cluster-wide reason (a missing claim), or per-node reasons.
#[derive(Debug, PartialEq)]
enum Misfit {
    Cluster(String),
    Node {
        reasons: Vec<String>,
        preemption_helps: bool,
    },
}

impl Scheduler {
    pub fn pass(&mut self, store: &Store, recorder: &Recorder, clock: Clock) {
        let (pods, _) = store.list(resources::pods(), None);
        let Ok(node) = store.get(resources::nodes(), "", NODE_NAME) else {
            return;
        };
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
            match misfit(store, p, &node, &pods) {
                None => {
                    if let Ok(bound) = store.bind(ns, name, NODE_NAME) {
                        let msg = format!("Successfully assigned {ns}/{name} to {NODE_NAME}");
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
                Some(m) => {
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
        Misfit::Cluster(why) => {
            format!(
                "0/1 nodes are available: {why}. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
            )
        }
        Misfit::Node {
            reasons,
            preemption_helps,
        } => {
            let list: Vec<String> = reasons.iter().map(|r| format!("1 {r}")).collect();
            let preemption = if *preemption_helps {
                "1 No preemption victims found for incoming pod"
            } else {
                "1 Preemption is not helpful for scheduling"
            };
            format!(
                "0/1 nodes are available: {}. preemption: 0/1 nodes are available: {preemption}.",
                list.join(", ")
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

fn misfit(store: &Store, p: &Value, node: &Value, pods: &[Value]) -> Option<Misfit> {
    let ns = p["metadata"]["namespace"].as_str().unwrap_or("default");
    for v in p["spec"]["volumes"].as_array().into_iter().flatten() {
        let Some(claim) = v["persistentVolumeClaim"]["claimName"].as_str() else {
            continue;
        };
        match store.get(resources::pvcs(), ns, claim) {
            Err(_) => {
                return Some(Misfit::Cluster(format!(
                    "persistentvolumeclaim \"{claim}\" not found"
                )));
            }
            Ok(pvc) if pvc["status"]["phase"] != "Bound" => {
                return Some(Misfit::Cluster(
                    "pod has unbound immediate PersistentVolumeClaims".into(),
                ));
            }
            Ok(_) => {}
        }
    }
    let mut reasons = Vec::new();
    let labels = &node["metadata"]["labels"];
    let selector_ok = p["spec"]["nodeSelector"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    if !selector_ok {
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
        return Some(Misfit::Node {
            reasons,
            preemption_helps: false,
        });
    }
    let on_node: Vec<&Value> = pods
        .iter()
        .filter(|o| {
            o["spec"]["nodeName"] == NODE_NAME
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
    (!reasons.is_empty()).then_some(Misfit::Node {
        reasons,
        preemption_helps: true,
    })
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

/// The PersistentVolumeClaim binder: claims of the default class "standard" are provisioned and bound at once;
/// any other class has no provisioner here and stays Pending, as on a cluster without that StorageClass.
pub fn bind_claims(store: &Store, recorder: &Recorder) {
    for pvc in store.list(resources::pvcs(), None).0 {
        if pvc["status"]["phase"] != "Pending" {
            continue;
        }
        let (ns, name) = (
            pvc["metadata"]["namespace"].as_str().unwrap_or("default"),
            pvc["metadata"]["name"].as_str().unwrap_or_default(),
        );
        let class = pvc["spec"]["storageClassName"]
            .as_str()
            .unwrap_or("standard");
        if class != "standard" {
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
        let m = Misfit::Node {
            reasons: vec!["Insufficient memory".into()],
            preemption_helps: true,
        };
        assert_eq!(
            message(&m),
            "0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
        );
        let m = Misfit::Cluster("persistentvolumeclaim \"data\" not found".into());
        assert!(message(&m).starts_with(
            "0/1 nodes are available: persistentvolumeclaim \"data\" not found. preemption:"
        ));
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
