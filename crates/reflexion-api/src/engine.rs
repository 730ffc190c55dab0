//! The incident loop: diagnose -> plan -> gate -> execute at the owner -> verify -> (revert, reflect, retry) ->
//! resolve or escalate. Every state transition is committed before the side effect it announces.

use crate::cluster::{Cluster, ClusterError};
use crate::db::{Db, DbError, Incident, NewEpisode};
use crate::registry::Registry;
use crate::verify::verify;
use reflexion_core::image::ImageRef;
use reflexion_core::owner::{WorkloadKind, WorkloadRef, fix_target};
use reflexion_core::policy::{Decision, Policy};
use reflexion_core::reflect::{TrialOutcome, reflect};
use reflexion_core::report::FailureReport;
use reflexion_core::tags::{TagRule, choose_tag};
use reflexion_core::{Action, Failure, FailureKind, Signature, classify};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub max_trials: u32,
    pub verify_window: Duration,
    pub verify_timeout: Duration,
    pub policy: Policy,
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    cluster: Cluster,
    registry: Registry,
    config: EngineConfig,
}

#[derive(Debug, thiserror::Error)]
enum EngineError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// A concrete plan for one trial.
struct Plan {
    action: Action,
    rationale: String,
    template: &'static str,
    description: &'static str,
}

enum Planned {
    Plan(Plan),
    Escalate {
        diagnosis: String,
        suggestion: String,
    },
}

impl Engine {
    pub fn new(db: Db, cluster: Cluster, registry: Registry, config: EngineConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                cluster,
                registry,
                config,
            }),
        }
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    pub fn cluster(&self) -> &Cluster {
        &self.inner.cluster
    }

    /// Run an incident to its end in the background.
    pub fn spawn(&self, id: String) {
        let engine = self.clone();
        tokio::spawn(async move {
            if let Err(e) = engine.run(&id).await {
                tracing::error!(incident = %id, error = %e, "incident stopped by an error");
                let _ = engine
                    .inner
                    .db
                    .finish(&id, "failed", &format!("internal error: {e}"))
                    .await;
            }
        });
    }

    /// Resume what a restart interrupted. An incident that was executing or verifying is not acted on again:
    /// its change may already be in place, so it is only verified.
    pub async fn resume(&self) -> Result<usize, DbError> {
        let unfinished = self.inner.db.unfinished().await?;
        let n = unfinished.len();
        for (id, state) in unfinished {
            tracing::info!(incident = %id, %state, "resuming incident after restart");
            if state == "executing" || state == "verifying" {
                let engine = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = engine.reverify(&id).await {
                        tracing::error!(incident = %id, error = %e, "resumed verification failed");
                    }
                });
            } else {
                self.spawn(id);
            }
        }
        Ok(n)
    }

    async fn reverify(&self, id: &str) -> Result<(), EngineError> {
        let db = &self.inner.db;
        let Some(inc) = db.incident(id).await? else {
            return Ok(());
        };
        let target = WorkloadRef::new(
            WorkloadKind::parse(&inc.workload_kind).unwrap_or(WorkloadKind::Pod),
            &inc.namespace,
            &inc.workload_name,
        );
        db.transition(
            id,
            "verifying",
            "resumed after restart: verifying without acting again",
        )
        .await?;
        let v = verify(
            self.inner.cluster.client(),
            &target,
            None,
            self.inner.config.verify_window,
            self.inner.config.verify_timeout,
        )
        .await;
        let (state, outcome) = if v.verified {
            ("resolved", v.detail)
        } else {
            ("escalated", format!("after restart: {}", v.detail))
        };
        db.finish(id, state, &outcome).await?;
        Ok(())
    }

    async fn run(&self, id: &str) -> Result<(), EngineError> {
        let db = &self.inner.db;
        let Some(inc) = db.incident(id).await? else {
            return Ok(());
        };
        db.transition(id, "diagnosing", "gathering evidence from the cluster")
            .await?;
        let Some((failure, target, evidence)) = self.diagnose(&inc).await? else {
            return Ok(());
        };
        let signature = Signature::of(&failure);
        db.set_evidence(id, &signature.class(), &evidence).await?;
        let lessons = db.lessons(&signature.class(), 3).await?;
        let mut tried: Vec<String> = Vec::new();
        for trial in 1..=self.inner.config.max_trials {
            db.transition(
                id,
                "planning",
                &format!(
                    "trial {trial}: choosing a fix ({} lessons recalled)",
                    lessons.len()
                ),
            )
            .await?;
            let plan = match self.plan(&failure, &target, &tried).await {
                Planned::Plan(p) => p,
                Planned::Escalate {
                    diagnosis,
                    suggestion,
                } => {
                    return self.escalate(&inc, &target, &diagnosis, &suggestion).await;
                }
            };
            if let Err(e) = plan.action.validate() {
                return self
                    .escalate(
                        &inc,
                        &target,
                        &format!("the planned action is invalid: {e}"),
                        "fix the workload by hand",
                    )
                    .await;
            }
            match self.inner.config.policy.decide(&plan.action) {
                Decision::Execute => {}
                Decision::NeedsApproval { reason } => {
                    db.transition(
                        id,
                        "awaiting_approval",
                        &format!("{reason}: `{}`", plan.action.render()),
                    )
                    .await?;
                    return Ok(());
                }
                Decision::SuggestOnly { reason } | Decision::Refuse { reason } => {
                    return self
                        .escalate(
                            &inc,
                            &target,
                            &reason,
                            &format!("run by hand if appropriate: `{}`", plan.action.render()),
                        )
                        .await;
                }
            }
            if !self
                .trial(&inc, trial, &signature, &target, &plan, &mut tried)
                .await?
            {
                continue;
            }
            return Ok(());
        }
        let diagnosis = format!(
            "{} trials did not fix {target}; tried images {}",
            self.inner.config.max_trials,
            tried.join(", ")
        );
        self.escalate(
            &inc,
            &target,
            &diagnosis,
            "check which image tag the workload is meant to run",
        )
        .await
    }

    /// One trial: dry run, execute, verify, revert if needed, reflect, record. Returns whether the incident is
    /// finished (fixed, or escalated because the change could not be made); `false` means try the next candidate.
    async fn trial(
        &self,
        inc: &Incident,
        trial: u32,
        signature: &Signature,
        target: &WorkloadRef,
        plan: &Plan,
        tried: &mut Vec<String>,
    ) -> Result<bool, EngineError> {
        let (db, cluster, config) = (&self.inner.db, &self.inner.cluster, &self.inner.config);
        let started = Instant::now();
        let command = plan.action.render();
        let strategy_id = db
            .strategy_for(
                &signature.class(),
                signature.kind.error_type(),
                plan.action.name(),
                plan.template,
                plan.description,
            )
            .await?;
        let dry_run = match cluster.dry_run(&plan.action).await {
            Ok(v) => v,
            Err(e) => {
                let diagnosis = format!("the API server refused a dry run of `{command}`: {e}");
                self.escalate(inc, target, &diagnosis, "fix the workload by hand")
                    .await?;
                return Ok(true);
            }
        };
        db.transition(&inc.id, "executing", &format!("trial {trial}: {command}"))
            .await?;
        let executed = cluster.execute(&plan.action, &inc.id).await;
        db.audit(
            &inc.id,
            plan.action.name(),
            &target.to_string(),
            &json!({"command": command, "action": plan.action}),
            &executed
                .as_ref()
                .map(|_| "ok".to_string())
                .unwrap_or_else(|e| format!("error: {e}")),
        )
        .await?;
        let snapshot = match executed {
            Ok(s) => s,
            Err(e) => {
                self.escalate(
                    inc,
                    target,
                    &format!("executing `{command}` failed: {e}"),
                    "fix the workload by hand",
                )
                .await?;
                return Ok(true);
            }
        };
        db.transition(
            &inc.id,
            "verifying",
            &format!(
                "trial {trial}: waiting for Ready and stable for {}s",
                config.verify_window.as_secs_f64()
            ),
        )
        .await?;
        let new_uid = match &snapshot {
            crate::cluster::Snapshot::RecreatedPod { new_uid, .. } => Some(new_uid.as_str()),
            _ => None,
        };
        let v = verify(
            cluster.client(),
            target,
            new_uid,
            config.verify_window,
            config.verify_timeout,
        )
        .await;
        let mut revert_note = None;
        if !v.verified {
            let r = cluster.revert(&snapshot).await;
            let result = r
                .as_ref()
                .map(String::clone)
                .unwrap_or_else(|e| format!("error: {e}"));
            db.audit(
                &inc.id,
                "revert",
                &target.to_string(),
                &serde_json::to_value(&snapshot).unwrap_or(Value::Null),
                &result,
            )
            .await?;
            revert_note = Some(result);
        }
        if let Action::SetImage { image, .. } | Action::RecreatePod { image, .. } = &plan.action {
            tried.push(image.clone());
        }
        let reflection = reflect(&TrialOutcome {
            signature: signature.class(),
            reason: inc.error_type.clone(),
            workload: target.to_string(),
            symptom: inc.report["real_k8s_data"]["image"]
                .as_str()
                .map(|i| format!("image {i} could not be pulled"))
                .unwrap_or_else(|| "image could not be pulled".into()),
            action: command.clone(),
            rationale: plan.rationale.clone(),
            verified: v.verified,
            verification: v.detail.clone(),
            reverted: revert_note
                .as_deref()
                .is_some_and(|n| !n.starts_with("not reverted") && !n.starts_with("error")),
        });
        let action_json = serde_json::to_value(&plan.action).unwrap_or(Value::Null);
        let execution = json!({"snapshot": snapshot, "revert": revert_note});
        let verification = serde_json::to_value(&v).unwrap_or(Value::Null);
        db.record_episode(&NewEpisode {
            incident: inc,
            trial: i64::from(trial),
            signature: &signature.class(),
            strategy_id: &strategy_id,
            source: "rules",
            action: &action_json,
            command: &command,
            rationale: &plan.rationale,
            dry_run: &dry_run,
            execution: &execution,
            verification: &verification,
            success: v.verified,
            reverted: revert_note.is_some(),
            reflection: &reflection.text,
            lessons: &reflection.lessons,
            duration_ms: started.elapsed().as_millis() as i64,
        })
        .await?;
        if v.verified {
            db.finish(
                &inc.id,
                "resolved",
                &format!("fixed by `{command}`: {}", v.detail),
            )
            .await?;
            cluster
                .record_event(
                    target,
                    "Normal",
                    "ReflexionFixed",
                    &format!("kube-reflexion ran `{command}`; {}", v.detail),
                )
                .await;
            tracing::info!(incident = %inc.id, workload = %target, %command, "incident resolved");
            return Ok(true);
        }
        tracing::warn!(incident = %inc.id, workload = %target, %command, detail = %v.detail, "trial not verified");
        Ok(false)
    }

    async fn escalate(
        &self,
        inc: &Incident,
        target: &WorkloadRef,
        diagnosis: &str,
        suggestion: &str,
    ) -> Result<(), EngineError> {
        let text = format!("{diagnosis}. Suggested: {suggestion}");
        self.inner.db.finish(&inc.id, "escalated", &text).await?;
        self.inner
            .cluster
            .record_event(target, "Warning", "ReflexionEscalated", &text)
            .await;
        tracing::warn!(incident = %inc.id, workload = %target, %text, "incident escalated");
        Ok(())
    }

    /// Read the live pod and its owner chain; classify from live evidence, falling back to the report's pod when
    /// the failure is between two kubelet retries. `None` when there is nothing (left) to fix.
    async fn diagnose(
        &self,
        inc: &Incident,
    ) -> Result<Option<(Failure, WorkloadRef, Value)>, EngineError> {
        let (db, cluster) = (&self.inner.db, &self.inner.cluster);
        let report: FailureReport = match serde_json::from_value(inc.report.clone()) {
            Ok(r) => r,
            Err(e) => {
                db.finish(&inc.id, "failed", &format!("stored report unreadable: {e}"))
                    .await?;
                return Ok(None);
            }
        };
        let Some(pod) = cluster.pod(&inc.namespace, &inc.pod_name).await? else {
            db.finish(
                &inc.id,
                "dismissed",
                &format!("pod {}/{} no longer exists", inc.namespace, inc.pod_name),
            )
            .await?;
            return Ok(None);
        };
        let events = cluster.pod_events(&pod).await?;
        let chain = cluster.owner_chain(&pod).await?;
        let failure = classify(&pod, &events).or_else(|| {
            let reported: k8s_openapi::api::core::v1::Pod =
                serde_json::from_value(report.real_k8s_data.pod.clone()?).ok()?;
            let ready = pod
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if ready {
                None
            } else {
                classify(&reported, &events)
            }
        });
        let evidence = json!({
            "pod": {"name": inc.pod_name, "phase": pod.status.as_ref().and_then(|s| s.phase.clone()),
                    "container_statuses": pod.status.as_ref().and_then(|s| s.container_statuses.clone())},
            "events": events,
            "owner_chain": chain,
            "failure": failure,
        });
        let Some(failure) = failure else {
            db.set_evidence(&inc.id, &inc.signature, &evidence).await?;
            db.finish(
                &inc.id,
                "dismissed",
                "the pod shows no failure any more (recovered before any action)",
            )
            .await?;
            return Ok(None);
        };
        let Some(target) = fix_target(&inc.namespace, &chain) else {
            db.set_evidence(&inc.id, &inc.signature, &evidence).await?;
            db.finish(&inc.id, "escalated", "the pod is owned by a controller kube-reflexion does not manage; fix it at that controller").await?;
            return Ok(None);
        };
        Ok(Some((failure, target, evidence)))
    }

    /// The built-in rule for bad image references: ask the registry which tags exist and pick the one the
    /// reference was most likely meant to be. Never changes the repository.
    async fn plan(&self, failure: &Failure, target: &WorkloadRef, tried: &[String]) -> Planned {
        if !matches!(
            failure.kind,
            FailureKind::ImagePull | FailureKind::InvalidImageName
        ) {
            return Planned::Escalate {
                diagnosis: format!("no rule for {}", failure.reason),
                suggestion: "inspect the pod".into(),
            };
        }
        let image = match ImageRef::parse(&failure.image) {
            Ok(i) => i,
            Err(e) => {
                return Planned::Escalate {
                    diagnosis: format!(
                        "image reference {:?} of container {} cannot be parsed: {e}",
                        failure.image, failure.container
                    ),
                    suggestion: "correct the image reference in the workload spec".into(),
                };
            }
        };
        let signature = Signature::of(failure);
        if signature.cause != "not_found" && signature.cause != "unknown" {
            return Planned::Escalate {
                diagnosis: format!("pulling {} fails with {} ({}): {}", failure.image, failure.reason, signature.cause, failure.message),
                suggestion: "check the registry credentials (imagePullSecrets), the repository name and the registry's reachability".into(),
            };
        }
        let tags = match self.inner.registry.tags(&image).await {
            Ok(t) => t,
            Err(e) => {
                return Planned::Escalate {
                    diagnosis: format!("{e}; kube-reflexion never changes an image's repository"),
                    suggestion: format!(
                        "check that {} is the right repository and that the cluster can pull from it",
                        image.full_name()
                    ),
                };
            }
        };
        let intended = image.effective_tag().unwrap_or("latest");
        if tags.iter().any(|t| t == intended) {
            return Planned::Escalate {
                diagnosis: format!(
                    "tag {intended} exists in {}, yet the pull fails: {}",
                    image.full_name(),
                    failure.message
                ),
                suggestion: "check node-to-registry connectivity and pull credentials".into(),
            };
        }
        let Some(choice) = choose_tag(
            intended,
            &tags,
            &tried
                .iter()
                .filter_map(|t| ImageRef::parse(t).ok()?.tag)
                .collect::<Vec<_>>(),
        ) else {
            return Planned::Escalate {
                diagnosis: format!(
                    "{} has no tag close to tag {intended} and no stable release tag left to try",
                    image.full_name()
                ),
                suggestion: "set the image tag by hand".into(),
            };
        };
        let new_image = image.with_tag(&choice.tag).to_string();
        let rationale = match choice.rule {
            TagRule::Closest { distance } => format!(
                "{} is {distance} edit(s) from tag {intended}, which does not exist in {}",
                choice.tag,
                image.full_name()
            ),
            TagRule::NewestStable => format!(
                "tag {intended} does not exist in {}; {} is its newest stable release",
                image.full_name(),
                choice.tag
            ),
            TagRule::Latest => format!(
                "tag {intended} does not exist in {} and it has no version tags; using latest",
                image.full_name()
            ),
        };
        let (action, template, description) = match target.kind {
            WorkloadKind::Pod => (
                Action::RecreatePod {
                    target: target.clone(),
                    container: failure.container.clone(),
                    image: new_image,
                },
                "recreate_pod:registry_tag",
                "Recreate the bare pod with the registry tag it was most likely meant to run (closest existing tag, else newest stable)",
            ),
            _ => (
                Action::SetImage {
                    target: target.clone(),
                    container: failure.container.clone(),
                    image: new_image,
                },
                "set_image:registry_tag",
                "Set the owner's container image to the registry tag it was most likely meant to run (closest existing tag, else newest stable)",
            ),
        };
        Planned::Plan(Plan {
            action,
            rationale,
            template,
            description,
        })
    }
}
