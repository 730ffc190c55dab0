//! The node lifecycle controller. A node is alive while its kubelet renews its Lease in `kube-node-lease` (or posts
//! status); one silent for the monitor grace period gets its conditions set to `Unknown`. The `not-ready` and
//! `unreachable` taints follow the Ready condition: a new node carries `not-ready:NoSchedule` from its creation
//! (the TaintNodesByCondition admission plugin) until it is Ready, so nothing is scheduled onto it before.
//!
//! Lease timings are real seconds, not scaled by `--time-scale`: a node process and its control plane may run with
//! different scales, and nothing waits on them.

use crate::resources;
use crate::store::{Store, now};
use serde_json::{Value, json};
use std::time::Duration;

/// How long a node may stay silent before it is considered lost (kube-controller-manager's
/// `--node-monitor-grace-period`).
pub const MONITOR_GRACE: Duration = Duration::from_secs(40);
/// How often a kubelet renews its node Lease (a quarter of its duration, as the real one does).
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
pub const LEASE_DURATION_SECS: i64 = 40;
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// The Lease a kubelet keeps in `kube-node-lease` for its node, renewed now.
pub fn lease_object(node: &str, node_uid: &str) -> Value {
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": node, "namespace": "kube-node-lease",
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid}]},
        "spec": {"holderIdentity": node, "leaseDurationSeconds": LEASE_DURATION_SECS, "renewTime": ts},
    })
}

/// The taints the controller owns, as they should be for a node whose Ready condition has this status.
fn condition_taints(ready: &str, current: &[Value]) -> Vec<Value> {
    let key = match ready {
        "True" => return Vec::new(),
        "Unknown" => UNREACHABLE,
        _ => NOT_READY,
    };
    ["NoSchedule", "NoExecute"]
        .iter()
        .map(|effect| {
            // Keep the time a NoExecute taint was added, so tolerationSeconds count from it.
            current
                .iter()
                .find(|t| t["key"] == key && t["effect"] == *effect)
                .cloned()
                .unwrap_or_else(|| {
                    let mut t = json!({"key": key, "effect": effect});
                    if *effect == "NoExecute" {
                        t["timeAdded"] = json!(now());
                    }
                    t
                })
        })
        .collect()
}

fn seconds_since(ts: &str) -> Option<f64> {
    let at = chrono::DateTime::parse_from_rfc3339(ts).ok()?;
    Some((chrono::Utc::now() - at.with_timezone(&chrono::Utc)).as_seconds_f64())
}

pub fn reconcile(store: &Store) {
    let (nodes, _) = store.list(resources::nodes(), None);
    let (leases, _) = store.list(resources::leases(), Some("kube-node-lease"));
    for node in &nodes {
        let name = node["metadata"]["name"].as_str().unwrap_or_default();
        let conditions = node["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        // The last sign of life: the node's creation, a status heartbeat, or a Lease renewal.
        let since_seen = conditions
            .iter()
            .filter_map(|c| c["lastHeartbeatTime"].as_str())
            .chain(node["metadata"]["creationTimestamp"].as_str())
            .chain(
                leases
                    .iter()
                    .filter(|l| l["metadata"]["name"] == name)
                    .filter_map(|l| l["spec"]["renewTime"].as_str()),
            )
            .filter_map(seconds_since)
            .fold(f64::INFINITY, f64::min);
        let silent = since_seen > MONITOR_GRACE.as_secs_f64();
        if silent {
            mark_unknown(store, name);
        }
        let ready = match conditions.iter().find(|c| c["type"] == "Ready") {
            _ if silent => "Unknown".to_string(),
            Some(c) => c["status"].as_str().unwrap_or("Unknown").to_string(),
            // Not reported yet: the not-ready taint from its creation stays.
            None => continue,
        };
        let _ = store.modify(resources::nodes(), "", name, false, false, |n| {
            let mut n = n.clone();
            let current = n["spec"]["taints"].as_array().cloned().unwrap_or_default();
            let mut taints: Vec<Value> = current
                .iter()
                .filter(|t| t["key"] != NOT_READY && t["key"] != UNREACHABLE)
                .cloned()
                .collect();
            taints.extend(condition_taints(&ready, &current));
            match (taints.is_empty(), n["spec"].as_object_mut()) {
                (true, Some(spec)) => {
                    spec.remove("taints");
                }
                _ => n["spec"]["taints"] = json!(taints),
            }
            n["metadata"]["resourceVersion"] = Value::Null;
            Ok(n)
        });
    }
}

/// "Kubelet stopped posting node status": every condition becomes Unknown.
fn mark_unknown(store: &Store, name: &str) {
    let _ = store.modify(resources::nodes(), "", name, true, false, |n| {
        let mut n = n.clone();
        let ts = now();
        for c in n["status"]["conditions"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            if c["status"] != "Unknown" {
                c["status"] = json!("Unknown");
                c["reason"] = json!("NodeStatusUnknown");
                c["message"] = json!("Kubelet stopped posting node status.");
                c["lastTransitionTime"] = json!(ts);
            }
        }
        n["metadata"]["resourceVersion"] = Value::Null;
        Ok(n)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, heartbeat: &str, ready: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Node",
               "metadata": {"name": name, "uid": format!("uid-{name}"), "creationTimestamp": "2026-01-01T00:00:00Z"},
               "spec": {"taints": [{"key": NOT_READY, "effect": "NoSchedule"}, {"key": "dedicated", "value": "x", "effect": "NoSchedule"}]},
               "status": {"conditions": [{"type": "Ready", "status": ready, "lastHeartbeatTime": heartbeat}]}})
    }

    #[test]
    fn a_silent_node_is_unknown_and_unreachable_and_a_leased_one_is_ready() {
        let store = Store::new();
        crate::store::bootstrap(&store);
        let long_ago = "2026-01-01T00:00:00Z";
        store.mirror_put(resources::nodes(), node("silent", long_ago, "True"), false);
        store.mirror_put(resources::nodes(), node("leased", long_ago, "True"), false);
        store.mirror_put(resources::nodes(), node("starting", &now(), "False"), false);
        store.mirror_put(
            resources::leases(),
            lease_object("leased", "uid-leased"),
            false,
        );
        reconcile(&store);
        let get = |n: &str| store.get(resources::nodes(), "", n).unwrap_or_default();
        let taint_keys = |n: &Value| -> Vec<String> {
            n["spec"]["taints"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    format!(
                        "{}:{}",
                        t["key"].as_str().unwrap_or_default(),
                        t["effect"].as_str().unwrap_or_default()
                    )
                })
                .collect()
        };
        let silent = get("silent");
        assert_eq!(silent["status"]["conditions"][0]["status"], "Unknown");
        assert_eq!(
            silent["status"]["conditions"][0]["message"],
            "Kubelet stopped posting node status."
        );
        assert_eq!(
            taint_keys(&silent),
            [
                "dedicated:NoSchedule",
                &format!("{UNREACHABLE}:NoSchedule"),
                &format!("{UNREACHABLE}:NoExecute")
            ]
        );
        assert_eq!(get("leased")["status"]["conditions"][0]["status"], "True");
        assert_eq!(taint_keys(&get("leased")), ["dedicated:NoSchedule"]);
        assert_eq!(
            taint_keys(&get("starting")),
            [
                "dedicated:NoSchedule",
                &format!("{NOT_READY}:NoSchedule"),
                &format!("{NOT_READY}:NoExecute")
            ]
        );
    }

    #[test]
    fn taints_follow_the_ready_condition() {
        let user = json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"});
        let keys = |ready: &str| -> Vec<(String, String)> {
            condition_taints(ready, std::slice::from_ref(&user))
                .iter()
                .map(|t| {
                    (
                        t["key"].as_str().unwrap_or_default().to_string(),
                        t["effect"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        };
        assert!(keys("True").is_empty());
        assert_eq!(
            keys("False"),
            vec![
                (NOT_READY.into(), "NoSchedule".into()),
                (NOT_READY.into(), "NoExecute".into())
            ]
        );
        assert_eq!(
            keys("Unknown"),
            vec![
                (UNREACHABLE.into(), "NoSchedule".into()),
                (UNREACHABLE.into(), "NoExecute".into())
            ]
        );
        let added =
            json!({"key": NOT_READY, "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:00Z"});
        assert_eq!(
            condition_taints("False", std::slice::from_ref(&added))[1],
            added
        );
    }
}
