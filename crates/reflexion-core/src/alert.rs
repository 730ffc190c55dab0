//! Alertmanager's webhook (payload version 4) as a second source of incidents. An alert names its workload by
//! labels, as kube-prometheus' rules set them: `namespace` and one of `pod`, `deployment`, `statefulset`,
//! `daemonset`, `job_name` (not `job`: that is Prometheus' scrape job, `kube-state-metrics`). A firing alert that
//! names one becomes a report on it; a resolved one is recorded; any other is kept as ignored, with why.

use crate::names::{is_dns1123_label, is_dns1123_subdomain};
use crate::owner::WorkloadKind;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The payload versions understood.
pub const VERSION: &str = "4";
/// Alerts taken from one payload (Alertmanager's `max_alerts` is unbounded by default).
pub const MAX_ALERTS: usize = 500;

/// Alertmanager's webhook body; fields not read here (`receiver`, `groupLabels`, `externalURL`, ...) are ignored.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    pub version: String,
    #[serde(default)]
    pub alerts: Vec<Alert>,
    #[serde(default)]
    pub truncated_alerts: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub starts_at: String,
    #[serde(default)]
    pub fingerprint: String,
}

/// What an alert means to kube-reflexion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Meaning {
    /// A firing alert on a workload (or a pod): a report on it.
    Failing {
        namespace: String,
        kind: WorkloadKind,
        name: String,
    },
    /// A resolved alert on a workload: recorded, nothing opened.
    Resolved {
        namespace: String,
        kind: WorkloadKind,
        name: String,
    },
    /// Not about a workload kube-reflexion can act on: kept, with why.
    Ignored(String),
}

/// The labels that name a workload, most specific first.
const NAMING: [(&str, WorkloadKind); 5] = [
    ("pod", WorkloadKind::Pod),
    ("deployment", WorkloadKind::Deployment),
    ("statefulset", WorkloadKind::StatefulSet),
    ("daemonset", WorkloadKind::DaemonSet),
    ("job_name", WorkloadKind::Job),
];

impl Alert {
    pub fn name(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }

    /// The report's `error_type`: the alert's name when it reads as one (ASCII letters and digits, as
    /// kube-prometheus names them), else `PrometheusAlert`.
    pub fn error_type(&self) -> String {
        let n = self.name();
        if !n.is_empty() && n.len() <= 64 && n.chars().all(|c| c.is_ascii_alphanumeric()) {
            n.to_string()
        } else {
            "PrometheusAlert".into()
        }
    }

    pub fn meaning(&self) -> Meaning {
        let Some(namespace) = self.labels.get("namespace") else {
            return Meaning::Ignored("no namespace label".into());
        };
        if !is_dns1123_label(namespace) {
            return Meaning::Ignored(format!(
                "namespace label {:?} is not a namespace name",
                clip(namespace)
            ));
        }
        let Some((label, kind, name)) = NAMING
            .iter()
            .find_map(|(l, k)| self.labels.get(*l).map(|v| (*l, *k, v)))
        else {
            return Meaning::Ignored(
                "names no workload: none of the labels pod, deployment, statefulset, daemonset, job_name".into(),
            );
        };
        if !is_dns1123_subdomain(name) {
            return Meaning::Ignored(format!(
                "{label} label {:?} is not an object name",
                clip(name)
            ));
        }
        let (namespace, name) = (namespace.clone(), name.clone());
        match self.status.as_str() {
            "firing" => Meaning::Failing {
                namespace,
                kind,
                name,
            },
            "resolved" => Meaning::Resolved {
                namespace,
                kind,
                name,
            },
            other => Meaning::Ignored(format!(
                "status {:?} is neither firing nor resolved",
                clip(other)
            )),
        }
    }
}

/// A label value quoted in a reason, bounded.
fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

/// The payload, or why it is refused as a whole.
pub fn parse(value: serde_json::Value) -> Result<Payload, String> {
    let p: Payload = serde_json::from_value(value).map_err(|e| e.to_string())?;
    if p.version != VERSION {
        return Err(format!(
            "version {:?}: only Alertmanager's webhook version {VERSION} is understood",
            clip(&p.version)
        ));
    }
    if p.alerts.len() > MAX_ALERTS {
        return Err(format!(
            "{} alerts: at most {MAX_ALERTS} per payload (set max_alerts on the receiver)",
            p.alerts.len()
        ));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn alert(status: &str, labels: serde_json::Value) -> Alert {
        serde_json::from_value(
            json!({"status": status, "labels": labels, "startsAt": "2026-12-06T10:00:00Z",
                                       "fingerprint": "f1"}),
        )
        .unwrap_or_else(|e| panic!("alert: {e}"))
    }

    #[test]
    fn what_an_alert_means() {
        let failing = |kind, name: &str| Meaning::Failing {
            namespace: "shop".into(),
            kind,
            name: name.into(),
        };
        let cases = vec![
            (
                "KubePodCrashLooping names the pod (and its container)",
                alert("firing", json!({"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": "web-7d9c-x2x",
                                       "container": "web", "job": "kube-state-metrics"})),
                failing(WorkloadKind::Pod, "web-7d9c-x2x"),
            ),
            (
                "KubeDeploymentReplicasMismatch names the Deployment",
                alert("firing", json!({"alertname": "KubeDeploymentReplicasMismatch", "namespace": "shop", "deployment": "web"})),
                failing(WorkloadKind::Deployment, "web"),
            ),
            (
                "KubeJobFailed names the Job by job_name, never by the scrape job",
                alert("firing", json!({"alertname": "KubeJobFailed", "namespace": "shop", "job_name": "export",
                                       "job": "kube-state-metrics"})),
                failing(WorkloadKind::Job, "export"),
            ),
            (
                "a StatefulSet",
                alert("firing", json!({"alertname": "KubeStatefulSetReplicasMismatch", "namespace": "shop", "statefulset": "db"})),
                failing(WorkloadKind::StatefulSet, "db"),
            ),
            (
                "resolved",
                alert("resolved", json!({"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": "p"})),
                Meaning::Resolved { namespace: "shop".into(), kind: WorkloadKind::Pod, name: "p".into() },
            ),
            (
                "a node alert names no workload",
                alert("firing", json!({"alertname": "KubeNodeNotReady", "node": "n1", "job": "kube-state-metrics"})),
                Meaning::Ignored("no namespace label".into()),
            ),
            (
                "a namespace alone is not a workload",
                alert("firing", json!({"alertname": "KubeQuotaExceeded", "namespace": "shop"})),
                Meaning::Ignored("names no workload: none of the labels pod, deployment, statefulset, daemonset, job_name".into()),
            ),
            (
                "a name that is no object name",
                alert("firing", json!({"alertname": "X", "namespace": "shop", "pod": "Web; rm"})),
                Meaning::Ignored("pod label \"Web; rm\" is not an object name".into()),
            ),
        ];
        for (what, a, want) in cases {
            assert_eq!(a.meaning(), want, "{what}");
        }
        assert_eq!(
            alert("firing", json!({"alertname": "Kube Pod-Crash"})).error_type(),
            "PrometheusAlert"
        );
        assert_eq!(
            alert("firing", json!({"alertname": "KubePodCrashLooping"})).error_type(),
            "KubePodCrashLooping"
        );
    }

    #[test]
    fn only_version_4_and_a_bounded_number_of_alerts() {
        assert!(parse(json!({"version": "4", "alerts": []})).is_ok());
        assert_eq!(
            parse(json!({"version": "3", "alerts": []}))
                .err()
                .as_deref(),
            Some("version \"3\": only Alertmanager's webhook version 4 is understood")
        );
        let many: Vec<serde_json::Value> = (0..=MAX_ALERTS)
            .map(|_| json!({"status": "firing", "labels": {}}))
            .collect();
        assert!(
            parse(json!({"version": "4", "alerts": many}))
                .err()
                .is_some_and(|e| e.starts_with("501 alerts"))
        );
        assert!(
            parse(json!({"alerts": []})).is_err(),
            "a version is required"
        );
    }
}
