//! What exists to choose from, for the planner's evidence: not only what failed, but the registry's closest tags,
//! the ports a container declares, which probe handlers pass and fail, the memory limits tried, the node label
//! values, taints, StorageClasses and claims. The rules read the same facts; the options record them in the
//! incident's evidence and put them in front of the LLM.

use super::rules::known_probes;
use super::{Diagnosis, Engine};
use reflexion_core::image::ImageRef;
use reflexion_core::tags::closest_tags;
use reflexion_core::{Action, Cause, FailureKind, ProbeKind, Signature};
use serde_json::Value;

/// Tags shown per image.
const TAGS_SHOWN: usize = 8;

impl Engine {
    pub(in crate::engine) async fn options(
        &self,
        diag: &Diagnosis,
        tried: &[Action],
    ) -> Vec<String> {
        let (failure, target) = (&diag.failure, &diag.target);
        let cluster = &self.inner.cluster;
        let mut out = Vec::new();
        let container = cluster
            .container(target, &failure.container)
            .await
            .unwrap_or(Value::Null);
        let ports: Vec<String> = container["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| match p["name"].as_str() {
                Some(name) => format!("{} ({name})", p["containerPort"]),
                None => p["containerPort"].to_string(),
            })
            .collect();
        out.push(format!(
            "container {} declares ports: {}",
            failure.container,
            if ports.is_empty() {
                "none".into()
            } else {
                ports.join(", ")
            }
        ));
        for r in known_probes(&diag.evidence) {
            out.push(format!(
                "{} probe {} of container {}: {} ({})",
                match r.probe {
                    ProbeKind::Liveness => "liveness",
                    ProbeKind::Readiness => "readiness",
                },
                serde_json::to_string(&r.handler).unwrap_or_default(),
                r.container,
                if r.passing { "passes" } else { "fails" },
                r.how
            ));
        }
        let cause = Signature::of(failure).cause;
        match failure.kind {
            FailureKind::ImagePull | FailureKind::InvalidImageName => {
                if let Ok(image) = ImageRef::parse(&failure.image)
                    && let Ok(tags) = self.inner.registry.tags(&image).await
                {
                    let intended = image.effective_tag().unwrap_or("latest");
                    out.push(format!(
                        "registry tags of {} closest to {intended}: {}",
                        image.full_name(),
                        closest_tags(intended, &tags, TAGS_SHOWN).join(", ")
                    ));
                }
            }
            FailureKind::OomKilled => {
                if let Ok((limit, request)) = cluster.memory(target, &failure.container).await {
                    out.push(format!(
                        "memory limit now {}, request {}; the highest limit kube-reflexion sets is {}",
                        limit.as_deref().unwrap_or("none"),
                        request.as_deref().unwrap_or("none"),
                        reflexion_core::quantity::format_bytes(self.inner.config.memory_ceiling)
                    ));
                }
                let limits: Vec<&str> = tried
                    .iter()
                    .filter_map(|a| match a {
                        Action::SetResources { memory_limit, .. } => Some(memory_limit.as_str()),
                        _ => None,
                    })
                    .collect();
                if !limits.is_empty() {
                    out.push(format!(
                        "memory limits tried in this incident: {}",
                        limits.join(", ")
                    ));
                }
            }
            FailureKind::CrashLoop if !container["command"].is_null() => {
                out.push(format!(
                    "container {} overrides the image's entrypoint with command {} and args {}",
                    failure.container, container["command"], container["args"]
                ));
            }
            FailureKind::Unschedulable => out.extend(self.placement_options(diag, cause).await),
            _ => {}
        }
        out
    }

    /// Node label values for the pod's nodeSelector keys, untolerated taints, StorageClasses and the claims it mounts.
    async fn placement_options(&self, diag: &Diagnosis, cause: Cause) -> Vec<String> {
        let cluster = &self.inner.cluster;
        let target = &diag.target;
        let mut out = Vec::new();
        let nodes = cluster.schedulable_nodes().await.unwrap_or_default();
        let pod = cluster
            .pod(&target.namespace, &diag.pod)
            .await
            .ok()
            .flatten();
        let spec = pod.and_then(|p| p.spec).unwrap_or_default();
        for (key, value) in spec.node_selector.unwrap_or_default() {
            let mut have: Vec<&str> = nodes
                .iter()
                .filter_map(|n| n.labels.get(&key).map(String::as_str))
                .collect();
            have.sort_unstable();
            have.dedup();
            out.push(format!(
                "nodeSelector {key}={value}; values nodes have for {key}: {}",
                if have.is_empty() {
                    "none (no node has the label)".into()
                } else {
                    have.join(", ")
                }
            ));
        }
        if cause == Cause::Taint {
            for n in &nodes {
                for t in &n.taints {
                    out.push(format!(
                        "node {} has taint {}={}:{}",
                        n.name,
                        t.key,
                        t.value.as_deref().unwrap_or_default(),
                        t.effect
                    ));
                }
            }
        }
        if cause == Cause::VolumeClaim {
            let classes = cluster.storage_classes().await.unwrap_or_default();
            let shown: Vec<String> = classes
                .iter()
                .map(|(c, d)| {
                    if *d {
                        format!("{c} (default)")
                    } else {
                        c.clone()
                    }
                })
                .collect();
            out.push(format!(
                "StorageClasses: {}",
                if shown.is_empty() {
                    "none".into()
                } else {
                    shown.join(", ")
                }
            ));
            for name in cluster.mounted_claims(target).await.unwrap_or_default() {
                let claim = cluster.claim(&target.namespace, &name).await.ok().flatten();
                out.push(match claim {
                    Some(c) => format!(
                        "claim {name}: {}, storageClassName {}",
                        c["status"]["phase"].as_str().unwrap_or("Pending"),
                        c["spec"]["storageClassName"].as_str().unwrap_or("(none)")
                    ),
                    None => format!("claim {name}: does not exist"),
                });
            }
        }
        out
    }
}
