//! A storm across two clusters (`Options::clusters` = staging, prod): a failing Deployment for each of
//! `PER_CLUSTER` names on each, and the checks that every one ends resolved with one write on its own cluster.

use super::{BAD_TAG_WEB, FIX_TIMEOUT, Stack};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

/// Every audit row of an incident names its cluster; returns the verbs.
pub fn audit_on(detail: &Value, cluster: &str) -> Vec<String> {
    let audit = detail["audit"].as_array().unwrap();
    assert!(!audit.is_empty(), "{detail}");
    for row in audit {
        assert_eq!(row["cluster"], cluster, "{row}");
    }
    super::audit_verbs(detail)
}

pub const PER_CLUSTER: usize = 25;

/// A failing Deployment for each of `PER_CLUSTER` names on each cluster, then wait until at least 10 incidents are
/// stored.
pub async fn start_storm(stack: &Stack) {
    for cluster in ["staging", "prod"] {
        let api: Api<Deployment> = Api::namespaced(stack.kube_of(cluster).await, "default");
        for i in 0..PER_CLUSTER {
            let mut d: Deployment = serde_yaml::from_str(BAD_TAG_WEB).unwrap();
            let name = format!("web-{i}");
            d.metadata.name = Some(name.clone());
            let spec = d.spec.as_mut().unwrap();
            let labels = json!({"app": name});
            spec.selector.match_labels = Some(serde_json::from_value(labels.clone()).unwrap());
            spec.template.metadata.as_mut().unwrap().labels =
                Some(serde_json::from_value(labels).unwrap());
            api.create(&PostParams::default(), &d).await.unwrap();
        }
    }
    stack
        .eventually("the storm to be under way", FIX_TIMEOUT, async || {
            let list = stack.get("/api/v1/reflexion/incidents?limit=1000").await;
            let n = list["total_count"].as_u64().unwrap_or(0);
            ((n >= 10).then_some(()), list["total_count"].to_string())
        })
        .await;
}

/// Every failing Deployment of the storm has one incident, resolved, whose audit shows one write, on its own
/// cluster; a slot reserved by a process killed before using it, or a write read back as never landed, says so.
pub async fn assert_storm_resolved_once(stack: &Stack) {
    let list = stack
        .eventually(
            "every incident to be resolved",
            std::time::Duration::from_secs(240),
            async || {
                let list = stack.get("/api/v1/reflexion/incidents?limit=1000").await;
                let incidents = list["incidents"].as_array().unwrap();
                let resolved = incidents
                    .iter()
                    .filter(|i| i["state"] == "resolved")
                    .count();
                (
                    (incidents.len() == 2 * PER_CLUSTER && resolved == incidents.len())
                        .then(|| list.clone()),
                    format!(
                        "{} incidents, {resolved} resolved, unresolved: {:?}",
                        incidents.len(),
                        incidents
                            .iter()
                            .filter(|i| i["state"] != "resolved")
                            .map(|i| (
                                i["cluster"].clone(),
                                i["workload"]["name"].clone(),
                                i["state"].clone(),
                                i["outcome"].clone()
                            ))
                            .collect::<Vec<_>>()
                    ),
                )
            },
        )
        .await;
    let mut seen = std::collections::BTreeSet::new();
    for summary in list["incidents"].as_array().unwrap() {
        let cluster = summary["cluster"].as_str().unwrap().to_string();
        let name = summary["workload"]["name"].as_str().unwrap().to_string();
        assert!(
            seen.insert((cluster.clone(), name.clone())),
            "two incidents for {cluster}/{name}"
        );
        let detail = super::incident_detail(stack, summary).await;
        audit_on(&detail, &cluster);
        let results: Vec<&str> = detail["audit"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["result"].as_str().unwrap())
            .filter(|r| {
                !r.starts_with("not run: ") && *r != "not applied (read back after a restart)"
            })
            .collect();
        assert!(
            matches!(
                results.as_slice(),
                ["ok" | "ok (read back after a restart)"]
            ),
            "{detail}"
        );
    }
    assert_eq!(seen.len(), 2 * PER_CLUSTER);
}
