//! ResourceQuota, as kube-apiserver's admission plugin and kube-controller-manager's quota controller keep it: a pod
//! whose requests or limits would take a namespace's usage past a quota's `hard` is refused (403, `exceeded quota`),
//! a pod that leaves out a resource a quota tracks is refused (`failed quota: ... must specify`), and each quota's
//! `status.used` counts the namespace's pods that are not finished.

use crate::quantity;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The compute resources a quota on pods tracks; `cpu` and `memory` are `requests.*` by another name.
const TRACKED: [&str; 7] = [
    "pods",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
    "cpu",
    "memory",
];

/// What one pod counts against `resource`, `None` when a container leaves it out (a quota tracking it refuses the
/// pod).
fn pod_amount(pod: &Value, resource: &str) -> Option<f64> {
    if resource == "pods" {
        return Some(1.0);
    }
    let (kind, name) = match resource {
        "cpu" | "memory" => ("requests", resource),
        other => other.split_once('.')?,
    };
    // A container's request defaults to its limit, as the API server's defaulting does.
    let amount = |c: &Value| -> Option<f64> {
        let r = &c["resources"];
        let q = r[kind][name].as_str().or_else(|| {
            (kind == "requests")
                .then(|| r["limits"][name].as_str())
                .flatten()
        })?;
        quantity::parse(q)
    };
    let mut sum = 0.0;
    for c in pod["spec"]["containers"].as_array()? {
        sum += amount(c)?;
    }
    // An init container runs alone: its own amount counts when it is larger than the app containers' sum.
    for c in pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(q) = amount(c) {
            sum = sum.max(q);
        }
    }
    Some(sum)
}

fn counted(pod: &Value) -> bool {
    !matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    )
}

/// The quota's tracked resources and their hard limits.
fn hard(quota: &Value) -> BTreeMap<String, f64> {
    quota["spec"]["hard"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| TRACKED.contains(&k.as_str()))
        .filter_map(|(k, v)| Some((k.clone(), quantity::parse(v.as_str()?)?)))
        .collect()
}

/// What the namespace's pods use of each resource the quota tracks.
pub fn used(quota: &Value, pods: &[&Value]) -> BTreeMap<String, f64> {
    hard(quota)
        .into_keys()
        .map(|r| {
            let total = pods
                .iter()
                .filter(|p| counted(p))
                .filter_map(|p| pod_amount(p, &r))
                .sum();
            (r, total)
        })
        .collect()
}

/// A quantity as the API server prints it: bytes in binary units, cores in millicores, counts as they are.
fn render(resource: &str, v: f64) -> String {
    const MI: f64 = 1024.0 * 1024.0;
    if resource.ends_with("memory") || resource == "memory" {
        if v == 0.0 {
            "0".into()
        } else if (v / (1024.0 * MI)).fract() == 0.0 {
            format!("{}Gi", v / (1024.0 * MI))
        } else if (v / MI).fract() == 0.0 {
            format!("{}Mi", v / MI)
        } else {
            format!("{v}")
        }
    } else if resource.ends_with("cpu") && v.fract() != 0.0 {
        format!("{}m", (v * 1000.0).round())
    } else {
        format!("{v}")
    }
}

/// The quota's status: `hard` as the spec says it, `used` as the pods use it.
pub fn status(quota: &Value, pods: &[&Value]) -> Value {
    let used: serde_json::Map<String, Value> = used(quota, pods)
        .into_iter()
        .map(|(k, v)| {
            let shown = render(&k, v);
            (k, json!(shown))
        })
        .collect();
    json!({"hard": quota["spec"]["hard"].clone(), "used": used})
}

/// Admit a new pod against every quota of its namespace: `Err(why)` in the API server's words.
pub fn admit(quotas: &[&Value], pods: &[&Value], pod: &Value) -> Result<(), String> {
    for q in quotas {
        let name = q["metadata"]["name"].as_str().unwrap_or_default();
        let hard = hard(q);
        let missing: Vec<&str> = hard
            .keys()
            .filter(|r| pod_amount(pod, r).is_none())
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "failed quota: {name}: must specify {}",
                missing.join(",")
            ));
        }
        let used = used(q, pods);
        let over: Vec<(&String, f64, f64, f64)> = hard
            .iter()
            .filter_map(|(r, limit)| {
                let asked = pod_amount(pod, r)?;
                let now = used.get(r).copied().unwrap_or(0.0);
                (now + asked > *limit).then_some((r, asked, now, *limit))
            })
            .collect();
        if !over.is_empty() {
            let list = |f: &dyn Fn(&(&String, f64, f64, f64)) -> String| {
                over.iter().map(f).collect::<Vec<_>>().join(",")
            };
            let limited = |o: &(&String, f64, f64, f64)| {
                let written = q["spec"]["hard"][o.0.as_str()].as_str().map(String::from);
                format!("{}={}", o.0, written.unwrap_or_else(|| render(o.0, o.3)))
            };
            return Err(format!(
                "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
                list(&|o| format!("{}={}", o.0, render(o.0, o.1))),
                list(&|o| format!("{}={}", o.0, render(o.0, o.2))),
                list(&limited)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(memory_request: Option<&str>, memory_limit: Option<&str>) -> Value {
        let mut resources = json!({});
        if let Some(r) = memory_request {
            resources["requests"] = json!({"memory": r});
        }
        if let Some(l) = memory_limit {
            resources["limits"] = json!({"memory": l});
        }
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "resources": resources}]},
               "status": {"phase": "Running"}})
    }

    #[test]
    fn a_quota_refuses_what_would_pass_it_in_the_api_servers_words() {
        let quota = json!({"metadata": {"name": "compute"},
                           "spec": {"hard": {"requests.memory": "512Mi", "pods": "3"}}});
        let running = pod(Some("256Mi"), None);
        let done = {
            let mut p = pod(Some("1Gi"), None);
            p["status"]["phase"] = json!("Succeeded");
            p
        };
        let pods = [&running, &done];
        assert_eq!(
            status(&quota, &pods),
            json!({"hard": {"requests.memory": "512Mi", "pods": "3"},
                   "used": {"pods": "1", "requests.memory": "256Mi"}}),
            "a finished pod counts for nothing"
        );
        let cases = [
            (pod(Some("256Mi"), None), Ok(())),
            (
                pod(Some("600Mi"), None),
                Err(
                    "exceeded quota: compute, requested: requests.memory=600Mi, used: requests.memory=256Mi, limited: requests.memory=512Mi",
                ),
            ),
            // The request defaults to the limit.
            (
                pod(None, Some("1Gi")),
                Err(
                    "exceeded quota: compute, requested: requests.memory=1Gi, used: requests.memory=256Mi, limited: requests.memory=512Mi",
                ),
            ),
            (
                pod(None, None),
                Err("failed quota: compute: must specify requests.memory"),
            ),
        ];
        for (p, want) in cases {
            assert_eq!(
                admit(&[&quota], &pods, &p),
                want.map_err(String::from),
                "{p}"
            );
        }
        let full = json!({"metadata": {"name": "count"}, "spec": {"hard": {"pods": "1"}}});
        assert_eq!(
            admit(&[&full], &[&running], &pod(None, None)),
            Err("exceeded quota: count, requested: pods=1, used: pods=1, limited: pods=1".into())
        );
    }
}
