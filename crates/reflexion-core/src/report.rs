//! The failure report the watcher sends to `POST /api/v1/reflexion/process-with-k8s-data`.
//!
//! Field names `pod_name`, `namespace`, `error_type` and `real_k8s_data` are the original system's; everything in
//! `real_k8s_data` is evidence, untrusted until validated here.

use crate::classify::PodEvent;
use crate::names::{is_cluster_name, is_dns1123_label, is_dns1123_subdomain};
use crate::owner::OwnerLink;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub const MAX_EVENTS: usize = 50;
pub const MAX_OWNER_CHAIN: usize = 8;
pub const MAX_MESSAGE_CHARS: usize = 4096;
pub const MAX_CONTAINER_STATUSES: usize = 64;
/// Signature, container name, image reference, timestamp.
pub const MAX_SHORT_FIELD: usize = 512;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureReport {
    pub pod_name: String,
    pub namespace: String,
    /// The kubelet reason the watcher saw (`ImagePullBackOff`); the API re-classifies from live evidence.
    pub error_type: String,
    /// Identical for every re-send of the same report, so the API can drop duplicates.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// The cluster the watcher watches (its `--cluster-name`); the API acts on that cluster only. Absent in the
    /// original system's reports: the API then uses its only cluster, and refuses the report if it has several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default)]
    pub real_k8s_data: K8sData,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct K8sData {
    /// The pod object as the watcher saw it.
    #[serde(default)]
    pub pod: Option<serde_json::Value>,
    #[serde(default)]
    pub container_statuses: Vec<serde_json::Value>,
    #[serde(default)]
    pub events: Vec<PodEvent>,
    /// Controller owner chain, pod first (`Pod`, `ReplicaSet`, `Deployment`).
    #[serde(default)]
    pub owner_chain: Vec<OwnerLink>,
    #[serde(default)]
    pub signature: Option<String>,
    #[serde(default)]
    pub container: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    /// RFC 3339 time the watcher saw the failing status.
    #[serde(default)]
    pub detected_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {problem}")]
pub struct ReportError {
    pub field: String,
    pub problem: String,
}

fn err(field: impl Into<String>, problem: impl Into<String>) -> ReportError {
    ReportError {
        field: field.into(),
        problem: problem.into(),
    }
}

impl FailureReport {
    pub fn validate(&self) -> Result<(), ReportError> {
        if !is_dns1123_subdomain(&self.pod_name) {
            return Err(err(
                "pod_name",
                format!(
                    "{:?} is not a valid pod name (DNS-1123 subdomain)",
                    truncate(&self.pod_name)
                ),
            ));
        }
        if !is_dns1123_label(&self.namespace) {
            return Err(err(
                "namespace",
                format!(
                    "{:?} is not a valid namespace name (DNS-1123 label)",
                    truncate(&self.namespace)
                ),
            ));
        }
        let et = &self.error_type;
        if et.is_empty() || et.len() > 64 || !et.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(err(
                "error_type",
                "must be 1-64 ASCII letters or digits, a kubelet reason such as ImagePullBackOff",
            ));
        }
        if let Some(key) = &self.idempotency_key
            && (key.is_empty() || key.len() > 128 || !key.chars().all(|c| c.is_ascii_graphic()))
        {
            return Err(err(
                "idempotency_key",
                "must be 1-128 printable ASCII characters",
            ));
        }
        if let Some(c) = &self.cluster
            && !is_cluster_name(c)
        {
            return Err(err(
                "cluster",
                format!(
                    "{:?} is not a cluster name (1-253 ASCII letters, digits and -._:/@)",
                    truncate(c)
                ),
            ));
        }
        self.real_k8s_data.validate()
    }
}

impl K8sData {
    fn validate(&self) -> Result<(), ReportError> {
        if self.events.len() > MAX_EVENTS {
            return Err(err(
                "real_k8s_data.events",
                format!("at most {MAX_EVENTS} events, got {}", self.events.len()),
            ));
        }
        for (i, e) in self.events.iter().enumerate() {
            if e.message.chars().count() > MAX_MESSAGE_CHARS {
                return Err(err(
                    format!("real_k8s_data.events[{i}].message"),
                    format!("longer than {MAX_MESSAGE_CHARS} characters"),
                ));
            }
        }
        if self.container_statuses.len() > MAX_CONTAINER_STATUSES {
            return Err(err(
                "real_k8s_data.container_statuses",
                format!("at most {MAX_CONTAINER_STATUSES} entries"),
            ));
        }
        let short_fields = [
            ("real_k8s_data.signature", &self.signature),
            ("real_k8s_data.container", &self.container),
            ("real_k8s_data.image", &self.image),
            ("real_k8s_data.detected_at", &self.detected_at),
        ];
        for (field, value) in short_fields {
            if value
                .as_ref()
                .is_some_and(|v| v.chars().count() > MAX_SHORT_FIELD)
            {
                return Err(err(
                    field,
                    format!("longer than {MAX_SHORT_FIELD} characters"),
                ));
            }
        }
        if self.owner_chain.len() > MAX_OWNER_CHAIN {
            return Err(err(
                "real_k8s_data.owner_chain",
                format!("at most {MAX_OWNER_CHAIN} links"),
            ));
        }
        for (i, link) in self.owner_chain.iter().enumerate() {
            if !is_dns1123_subdomain(&link.name) || link.kind.is_empty() || link.kind.len() > 63 {
                return Err(err(
                    format!("real_k8s_data.owner_chain[{i}]"),
                    "kind and a DNS-1123 name are required",
                ));
            }
        }
        if let Some(p) = &self.pod
            && !p.is_object()
        {
            return Err(err("real_k8s_data.pod", "must be a Pod object"));
        }
        Ok(())
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> FailureReport {
        FailureReport {
            pod_name: "test-nginx".into(),
            namespace: "default".into(),
            error_type: "ImagePullBackOff".into(),
            idempotency_key: Some("k-1".into()),
            cluster: Some("arn:aws:eks:eu-west-1:123456789012:cluster/prod".into()),
            real_k8s_data: K8sData::default(),
        }
    }

    #[test]
    fn validation_table() {
        let event = PodEvent {
            type_: "Warning".into(),
            reason: "Failed".into(),
            message: "m".into(),
            count: 1,
        };
        type Edit = fn(&mut FailureReport, &PodEvent);
        let cases: Vec<(&str, Edit, Option<&str>)> = vec![
            ("valid", |_, _| {}, None),
            (
                "bad pod",
                |r, _| r.pod_name = "Test_Nginx".into(),
                Some("pod_name"),
            ),
            ("empty pod", |r, _| r.pod_name.clear(), Some("pod_name")),
            (
                "bad ns",
                |r, _| r.namespace = "a.b".into(),
                Some("namespace"),
            ),
            (
                "bad error_type",
                |r, _| r.error_type = "Image Pull".into(),
                Some("error_type"),
            ),
            (
                "empty error_type",
                |r, _| r.error_type.clear(),
                Some("error_type"),
            ),
            (
                "bad key",
                |r, _| r.idempotency_key = Some("a b".into()),
                Some("idempotency_key"),
            ),
            ("no cluster", |r, _| r.cluster = None, None),
            (
                "empty cluster",
                |r, _| r.cluster = Some(String::new()),
                Some("cluster"),
            ),
            (
                "cluster with a space",
                |r, _| r.cluster = Some("prod eu".into()),
                Some("cluster"),
            ),
            (
                "long cluster",
                |r, _| r.cluster = Some("c".repeat(254)),
                Some("cluster"),
            ),
            (
                "too many events",
                |r, e| r.real_k8s_data.events = vec![e.clone(); MAX_EVENTS + 1],
                Some("real_k8s_data.events"),
            ),
            (
                "long message",
                |r, e| {
                    r.real_k8s_data.events = vec![PodEvent {
                        message: "x".repeat(MAX_MESSAGE_CHARS + 1),
                        ..e.clone()
                    }]
                },
                Some("real_k8s_data.events[0].message"),
            ),
            (
                "bad owner",
                |r, _| {
                    r.real_k8s_data.owner_chain = vec![OwnerLink {
                        kind: "Pod".into(),
                        name: "A B".into(),
                        uid: String::new(),
                    }]
                },
                Some("real_k8s_data.owner_chain[0]"),
            ),
            (
                "pod not object",
                |r, _| r.real_k8s_data.pod = Some(serde_json::json!("pod")),
                Some("real_k8s_data.pod"),
            ),
            (
                "long signature",
                |r, _| r.real_k8s_data.signature = Some("s".repeat(MAX_SHORT_FIELD + 1)),
                Some("real_k8s_data.signature"),
            ),
            (
                "long image",
                |r, _| r.real_k8s_data.image = Some("i".repeat(MAX_SHORT_FIELD + 1)),
                Some("real_k8s_data.image"),
            ),
        ];
        for (name, edit, want) in cases {
            let mut r = base();
            edit(&mut r, &event);
            assert_eq!(
                r.validate().err().map(|e| e.field),
                want.map(String::from),
                "{name}"
            );
        }
    }

    #[test]
    fn the_original_systems_minimal_body_parses_and_unknown_fields_are_refused() {
        let minimal =
            r#"{"pod_name":"test-nginx","namespace":"default","error_type":"ImagePullBackOff"}"#;
        let r: FailureReport = serde_json::from_str(minimal).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.validate(), Ok(()));
        assert!(
            serde_json::from_str::<FailureReport>(
                r#"{"pod_name":"a","namespace":"b","error_type":"c","x":1}"#
            )
            .is_err()
        );
    }
}
