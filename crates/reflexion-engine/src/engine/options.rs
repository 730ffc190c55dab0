//! What exists to choose from, for the planner's evidence: not only what failed, but the registry's closest tags,
//! the ports a container declares, which probe handlers pass and fail, the memory limits tried, the node label
//! values, taints, StorageClasses and claims. The rules read the same facts; the options record them in the
//! incident's evidence and put them in front of the LLM, and the same facts, minus what this incident already tried,
//! become the [`Choices`] the LLM's answer schema is narrowed to.

use super::rules::known_probes;
use super::rules::probe::probe_candidates;
use super::{Diagnosis, Engine};
use reflexion_core::choices::{Choices, ProbeChoice};
use reflexion_core::image::ImageRef;
use reflexion_core::quantity::{format_bytes, next_memory_limit, parse_bytes};
use reflexion_core::tags::closest_tags;
use reflexion_core::{Action, Cause, FailureKind, ProbeKind, Signature};
use serde_json::Value;

/// Tags shown per image.
const TAGS_SHOWN: usize = 8;

impl Engine {
    /// The options as evidence lines, and as the choices the LLM's answer schema is narrowed to.
    pub(in crate::engine) async fn options(
        &self,
        diag: &Diagnosis,
        tried: &[Action],
    ) -> (Vec<String>, Choices) {
        let (failure, target) = (&diag.failure, &diag.target);
        let cluster = &self.scope.cluster;
        let mut out = Vec::new();
        let mut choices = Choices {
            target: Some(target.clone()),
            containers: vec![failure.container.clone()],
            ..Choices::default()
        };
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
        let known = known_probes(&diag.evidence);
        for probe in [ProbeKind::Liveness, ProbeKind::Readiness] {
            let handlers: Vec<_> = probe_candidates(&container, probe, &known)
                .into_iter()
                .filter(|h| {
                    !tried.iter().any(|a| {
                        matches!(a, Action::SetProbe { probe: p, handler, .. } if *p == probe && handler == h)
                    })
                })
                .collect();
            choices.probes.push(ProbeChoice { probe, handlers });
        }
        for r in known {
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
                    let closest = closest_tags(intended, &tags, TAGS_SHOWN);
                    out.push(format!(
                        "registry tags of {} closest to {intended}: {}",
                        image.full_name(),
                        closest.join(", ")
                    ));
                    choices.images = closest
                        .iter()
                        .map(|t| image.with_tag(t).to_string())
                        .filter(|i| {
                            *i != failure.image
                                && !tried.iter().any(
                                    |a| matches!(a, Action::SetImage { image, .. } if image == i),
                                )
                        })
                        .collect();
                }
            }
            FailureKind::OomKilled => {
                let limits: Vec<&str> = tried
                    .iter()
                    .filter_map(|a| match a {
                        Action::SetResources { memory_limit, .. } => Some(memory_limit.as_str()),
                        _ => None,
                    })
                    .collect();
                if let Ok((limit, request)) = cluster.memory(target, &failure.container).await {
                    let ceiling = self.inner.config.memory_ceiling;
                    out.push(format!(
                        "memory limit now {}, request {}; the highest limit kube-reflexion sets is {}",
                        limit.as_deref().unwrap_or("none"),
                        request.as_deref().unwrap_or("none"),
                        format_bytes(ceiling)
                    ));
                    // The rules' ladder from the highest limit tried: what is left to try, up to the ceiling.
                    let mut at = limits
                        .iter()
                        .chain(limit.as_deref().as_slice())
                        .filter_map(|l| parse_bytes(l))
                        .max();
                    while let Some(next) = at.and_then(|b| next_memory_limit(b, ceiling)) {
                        choices.memory_limits.push(format_bytes(next));
                        at = Some(next);
                    }
                }
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
                let image = container["image"].as_str().unwrap_or(&failure.image);
                if let Ok(p) = self.default_process(image).await {
                    let nothing = p.runs_nothing();
                    out.push(format!(
                        "without the override image {image} runs `{}`{}",
                        p.argv().join(" "),
                        if nothing {
                            ", which runs nothing without a terminal (dropping the command would not start a program)"
                        } else {
                            ""
                        }
                    ));
                    if nothing {
                        choices.ruled_out.push("drop_command".into());
                    }
                }
            }
            FailureKind::Unschedulable => {
                out.extend(self.placement_options(diag, cause, &mut choices).await)
            }
            _ => {}
        }
        (out, choices)
    }

    /// Node label values for the pod's nodeSelector keys, untolerated taints, StorageClasses and the claims it mounts.
    async fn placement_options(
        &self,
        diag: &Diagnosis,
        cause: Cause,
        choices: &mut Choices,
    ) -> Vec<String> {
        let cluster = &self.scope.cluster;
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
            if !have.contains(&value.as_str()) {
                choices.selector_keys.push(key.clone());
                choices
                    .selector_values
                    .insert(key.clone(), have.iter().map(|v| v.to_string()).collect());
            }
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
            choices.storage_classes = classes.iter().map(|(c, _)| c.clone()).collect();
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
                // Only an unbound claim may be recreated.
                if claim
                    .as_ref()
                    .is_some_and(|c| c["status"]["phase"].as_str() != Some("Bound"))
                {
                    choices.claims.push(name.clone());
                }
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
