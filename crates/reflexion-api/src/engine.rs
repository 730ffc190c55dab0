//! The incident loop: diagnose -> plan -> gate -> execute at the owner -> verify -> (revert, reflect, retry) ->
//! resolve or escalate. Every state transition is committed before the side effect it announces.

mod capacity;
mod llm_planning;
mod probe;

use crate::cluster::{Cluster, ClusterError};
use crate::db::{Db, DbError, Incident, NewEpisode};
use crate::llm::Llm;
use crate::registry::Registry;
use crate::verify::verify;
use kube::ResourceExt;
use reflexion_core::EnvSource;
use reflexion_core::classify::recovered;
use reflexion_core::image::ImageRef;
use reflexion_core::logs::missing_env_var;
use reflexion_core::owner::{WorkloadKind, WorkloadRef, fix_target};
use reflexion_core::policy::{Budget, Decision, Policy, check_scope};
use reflexion_core::quantity::{format_bytes, next_memory_limit, parse_bytes};
use reflexion_core::reflect::{TrialOutcome, reflect};
use reflexion_core::report::FailureReport;
use reflexion_core::strategy::{Record, choose};
use reflexion_core::tags::{TagRule, choose_tag};
use reflexion_core::{Action, Failure, FailureKind, Signature, classify};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// The learned-value key for the memory limit that held.
const MEMORY_LIMIT_KEY: &str = "memory_limit";

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub max_trials: u32,
    pub verify_window: Duration,
    pub verify_timeout: Duration,
    pub policy: Policy,
    /// The highest memory limit the OOM rule will set, in bytes.
    pub memory_ceiling: u64,
    pub budget: Budget,
    /// Share of choices between candidate strategies made at random rather than by their records.
    pub exploration_rate: f64,
    /// Minimum time between an action of one incident and an action of another on the same workload.
    pub workload_cooldown: Duration,
    pub llm: Option<Llm>,
    pub planner: PlannerMode,
}

/// Who plans first. Either way a learned strategy comes before a new LLM call, and every plan passes the same gates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlannerMode {
    /// Built-in rules; the LLM (when configured) only where the rules find no fix.
    Rules,
    /// The LLM first; the rules when it has no usable answer. For evaluating the LLM path.
    Llm,
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
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Plan {
    action: Action,
    /// `rules`, or `learned` when the plan reuses a value a verified fix used for this workload.
    source: String,
    rationale: String,
    template: String,
    description: String,
    /// The LLM calls behind this plan, when it came from the model.
    #[serde(default)]
    llm: Value,
}

/// What diagnosis found: the failure, where its fix belongs, the evidence, and the pod it was read from.
struct Diagnosis {
    failure: Failure,
    target: WorkloadRef,
    evidence: Value,
    pod: String,
}

enum Planned {
    Plan(Box<Plan>),
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

    /// An operator approved the pending plan: run exactly that trial. `Ok(false)` when the incident is not
    /// awaiting approval.
    pub async fn approve(&self, id: &str, by: &str) -> Result<bool, DbError> {
        let Some(pending) = self
            .inner
            .db
            .take_pending_plan(id, "planning", &format!("approved by {by}"))
            .await?
        else {
            return Ok(false);
        };
        let engine = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            if let Err(e) = engine.run_approved(&id, pending).await {
                tracing::error!(incident = %id, error = %e, "approved trial stopped by an error");
                let _ = engine
                    .inner
                    .db
                    .finish(&id, "failed", &format!("internal error: {e}"))
                    .await;
            }
        });
        Ok(true)
    }

    /// An operator rejected the pending plan: nothing is changed and the incident is handed over.
    pub async fn reject(&self, id: &str, by: &str, reason: &str) -> Result<bool, DbError> {
        let note = format!("rejected by {by}: {reason}");
        let Some(pending) = self
            .inner
            .db
            .take_pending_plan(id, "escalated", &note)
            .await?
        else {
            return Ok(false);
        };
        let command = pending["command"].as_str().unwrap_or_default();
        self.inner
            .db
            .set_outcome(id, &format!("{note}; the proposed `{command}` was not run"))
            .await?;
        Ok(true)
    }

    async fn run_approved(&self, id: &str, pending: Value) -> Result<(), EngineError> {
        let db = &self.inner.db;
        let Some(inc) = db.incident(id).await? else {
            return Ok(());
        };
        let plan: Plan = match serde_json::from_value(pending["plan"].clone()) {
            Ok(p) => p,
            Err(e) => {
                db.finish(
                    id,
                    "failed",
                    &format!("the approved plan is unreadable: {e}"),
                )
                .await?;
                return Ok(());
            }
        };
        let Some(Diagnosis {
            failure, target, ..
        }) = self.diagnose(&inc).await?
        else {
            return Ok(());
        };
        // The world may have moved while the plan waited: the same checks as before it was proposed.
        if let Err(why) = self.admissible(&plan.action, &target) {
            return self
                .escalate(
                    &inc,
                    &target,
                    &format!("refused `{}`: {why}", plan.action.render()),
                    "fix the workload by hand",
                )
                .await;
        }
        let trial = pending["trial"]
            .as_u64()
            .and_then(|t| u32::try_from(t).ok())
            .unwrap_or(1);
        let signature = Signature::of(&failure);
        let mut tried = Vec::new();
        if !self
            .trial(
                &inc, trial, &failure, &signature, &target, &plan, &mut tried,
            )
            .await?
        {
            let diagnosis = format!(
                "the approved `{}` did not fix {target}",
                plan.action.render()
            );
            return self
                .escalate(
                    &inc,
                    &target,
                    &diagnosis,
                    "see the episode's verification and reflection",
                )
                .await;
        }
        Ok(())
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
        let Some(Diagnosis {
            failure,
            target,
            evidence,
            pod,
        }) = self.diagnose(&inc).await?
        else {
            return Ok(());
        };
        let signature = Signature::of(&failure);
        db.set_evidence(id, &signature.class(), &evidence).await?;
        let lessons = db.lessons(&signature.class(), 3).await?;
        let mut tried: Vec<Action> = Vec::new();
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
            let ctx = llm_planning::LlmContext {
                incident_id: id,
                trial,
                pod_name: &pod,
                evidence: &evidence,
                tried: &tried,
                lessons: &lessons,
                rules_diagnosis: None,
            };
            let plan = match self.choose(&inc, &failure, &target, ctx).await {
                Ok(p) => p,
                Err((diagnosis, suggestion)) => {
                    return self.escalate(&inc, &target, &diagnosis, &suggestion).await;
                }
            };
            if let Action::Escalate {
                diagnosis,
                suggestion,
            } = &plan.action
            {
                let diagnosis = format!("{diagnosis} ({})", plan.rationale);
                return self.escalate(&inc, &target, &diagnosis, suggestion).await;
            }
            if let Err(why) = self.admissible(&plan.action, &target) {
                return self
                    .escalate(
                        &inc,
                        &target,
                        &format!("refused `{}`: {why}", plan.action.render()),
                        "fix the workload by hand",
                    )
                    .await;
            }
            match self.inner.config.policy.decide(&plan.action) {
                Decision::Execute => {}
                Decision::NeedsApproval { reason } => {
                    let pending =
                        json!({"plan": plan, "trial": trial, "command": plan.action.render()});
                    db.await_approval(
                        id,
                        &pending,
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
            let span = tracing::info_span!("incident_trial", incident = %inc.id, trial, workload = %target,
                signature = %signature, action = plan.action.name(), source = %plan.source);
            if !self
                .trial(
                    &inc, trial, &failure, &signature, &target, &plan, &mut tried,
                )
                .instrument(span)
                .await?
            {
                continue;
            }
            return Ok(());
        }
        let attempts: Vec<String> = tried.iter().map(|a| format!("`{}`", a.render())).collect();
        let diagnosis = format!(
            "{} trials did not fix {target}; tried {}",
            self.inner.config.max_trials,
            attempts.join(", ")
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
    #[allow(clippy::too_many_arguments)]
    async fn trial(
        &self,
        inc: &Incident,
        trial: u32,
        failure: &Failure,
        signature: &Signature,
        target: &WorkloadRef,
        plan: &Plan,
        tried: &mut Vec<Action>,
    ) -> Result<bool, EngineError> {
        let (db, cluster, config) = (&self.inner.db, &self.inner.cluster, &self.inner.config);
        let started = Instant::now();
        let command = plan.action.render();
        // The per-workload cooldown: a workload another incident changed moments ago is failing again, and changing
        // it again at once would make it flap.
        if !config.workload_cooldown.is_zero()
            && let Some((at, other)) = db.last_action_on(&target.to_string(), &inc.id).await?
            && let Ok(at) = chrono::DateTime::parse_from_rfc3339(&at)
        {
            let age = (chrono::Utc::now() - at.with_timezone(&chrono::Utc))
                .to_std()
                .unwrap_or_default();
            if age < config.workload_cooldown {
                self.escalate(
                    inc,
                    target,
                    &format!(
                        "not running `{command}`: incident {other} changed {target} {}s ago, within the {}s cooldown",
                        age.as_secs(),
                        config.workload_cooldown.as_secs()
                    ),
                    "the previous fix did not hold for long: look at the workload before letting more changes through",
                )
                .await?;
                return Ok(true);
            }
        }
        // The circuit breaker and the per-workload budget, from the audit log of the last hour.
        let hour_ago = (chrono::Utc::now() - chrono::Duration::hours(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let total = db.actions_since(&hour_ago, None).await?;
        let on_workload = db
            .actions_since(&hour_ago, Some(&target.to_string()))
            .await?;
        if let Err(why) = config.budget.check(total, on_workload) {
            self.escalate(
                inc,
                target,
                &format!("not running `{command}`: {why}"),
                "check what is failing across the cluster before letting more changes through",
            )
            .await?;
            return Ok(true);
        }
        let strategy_id = db
            .strategy_for(
                &signature.class(),
                signature.kind.error_type(),
                plan.action.name(),
                &plan.template,
                &plan.description,
                if plan.template.starts_with("llm:") {
                    "llm"
                } else {
                    "rules"
                },
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
        tried.push(plan.action.clone());
        let mut reflection = reflect(&TrialOutcome {
            signature: signature.class(),
            reason: inc.error_type.clone(),
            workload: target.to_string(),
            symptom: failure.message.clone(),
            action: command.clone(),
            rationale: plan.rationale.clone(),
            verified: v.verified,
            verification: v.detail.clone(),
            reverted: revert_note
                .as_deref()
                .is_some_and(|n| !n.starts_with("not reverted") && !n.starts_with("error")),
        });
        if !v.verified
            && let Some(text) = self
                .reflect_with_llm(inc, trial, failure, target, &command, &v.detail, tried)
                .await
        {
            // First, so that a prompt's bound on a reflection never cuts it off.
            reflection.text = format!(
                "The model's reflection: {text} What happened: {}",
                reflection.text
            );
        }
        let action_json = serde_json::to_value(&plan.action).unwrap_or(Value::Null);
        let execution = json!({"snapshot": snapshot, "revert": revert_note});
        let verification = serde_json::to_value(&v).unwrap_or(Value::Null);
        let episode_id = db
            .record_episode(&NewEpisode {
                incident: inc,
                trial: i64::from(trial),
                signature: &signature.class(),
                strategy_id: &strategy_id,
                source: &plan.source,
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
                llm: &plan.llm,
            })
            .await?;
        if let (true, Action::SetResources { memory_limit, .. }) = (v.verified, &plan.action) {
            let kind = target.kind.to_string();
            db.learn_value(
                &signature.class(),
                &target.namespace,
                &kind,
                &target.name,
                MEMORY_LIMIT_KEY,
                memory_limit,
                &episode_id,
            )
            .await?;
        }
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

    /// The gates every action passes, whoever proposed it and however long it waited for approval: valid
    /// parameters, and only the incident's own workload outside the protected namespaces.
    fn admissible(&self, action: &Action, target: &WorkloadRef) -> Result<(), String> {
        action
            .validate()
            .map_err(|e| format!("invalid action: {e}"))?;
        check_scope(
            action,
            target,
            &self.inner.config.policy.protected_namespaces,
        )
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

    /// Read the evidence: a pod that can prove the fix (the reported one while it is live and of the workload's
    /// current revision, else a current pod of the workload, a failing one first), its events and owner chain.
    /// Classify from live evidence, falling back to the report's pod when the failure is between two kubelet
    /// retries or the container is up between two deaths (a pod has only recovered when it is Ready and nothing
    /// died in it recently). `None` when there is nothing (left) to fix.
    async fn diagnose(&self, inc: &Incident) -> Result<Option<Diagnosis>, EngineError> {
        let (db, cluster) = (&self.inner.db, &self.inner.cluster);
        let report: FailureReport = match serde_json::from_value(inc.report.clone()) {
            Ok(r) => r,
            Err(e) => {
                db.finish(&inc.id, "failed", &format!("stored report unreadable: {e}"))
                    .await?;
                return Ok(None);
            }
        };
        let workload = WorkloadRef::new(
            WorkloadKind::parse(&inc.workload_kind).unwrap_or(WorkloadKind::Pod),
            &inc.namespace,
            &inc.workload_name,
        );
        let current = cluster.current_pods(&workload).await?;
        let pod = match current.iter().find(|p| p.name_any() == inc.pod_name) {
            Some(reported) => Some(reported.clone()),
            None => {
                let mut found = None;
                for p in &current {
                    if classify(p, &cluster.pod_events(p).await?).is_some() {
                        found = Some(p.clone());
                        break;
                    }
                }
                found.or_else(|| current.first().cloned())
            }
        };
        let Some(pod) = pod else {
            let why = match workload.kind {
                WorkloadKind::Pod => format!(
                    "pod {}/{} no longer exists or is being deleted",
                    inc.namespace, inc.pod_name
                ),
                _ => format!(
                    "{workload} has no live pod of its current revision; the failure was reported on pod {}",
                    inc.pod_name
                ),
            };
            db.finish(&inc.id, "dismissed", &why).await?;
            return Ok(None);
        };
        let pod_name = pod.name_any();
        let events = cluster.pod_events(&pod).await?;
        let chain = cluster.owner_chain(&pod).await?;
        let failure = classify(&pod, &events).or_else(|| {
            let reported: k8s_openapi::api::core::v1::Pod =
                serde_json::from_value(report.real_k8s_data.pod.clone()?).ok()?;
            if reported.metadata.uid != pod.metadata.uid
                || recovered(&pod, k8s_openapi::jiff::Timestamp::now())
            {
                None
            } else {
                classify(&reported, &events)
            }
        });
        let evidence = json!({
            "pod": {"name": pod_name, "phase": pod.status.as_ref().and_then(|s| s.phase.clone()),
                    "node": pod.spec.as_ref().and_then(|s| s.node_name.clone()),
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
        Ok(Some(Diagnosis {
            failure,
            target,
            evidence,
            pod: pod_name,
        }))
    }

    /// Choose this trial's plan: the rules (or, in `llm` mode, the model first); where the rules find no fix, a
    /// strategy the LLM taught before, then a new LLM call. `Err` is the escalation (diagnosis, suggestion), with
    /// why the LLM did not help when it was asked.
    async fn choose(
        &self,
        inc: &Incident,
        failure: &Failure,
        target: &WorkloadRef,
        mut ctx: llm_planning::LlmContext<'_>,
    ) -> Result<Plan, (String, String)> {
        let mut llm_refusal = None;
        if self.inner.config.planner == PlannerMode::Llm {
            if let Some(p) = self
                .plan_learned_llm(failure, target, ctx.pod_name, ctx.evidence, ctx.tried)
                .await
            {
                return Ok(p);
            }
            match self.plan_llm(failure, target, &ctx).await {
                Ok(p) => return Ok(p),
                Err(why) => {
                    tracing::info!(incident = %inc.id, %why, "no usable LLM plan; falling back to the rules");
                    llm_refusal = Some(why);
                }
            }
        }
        let (diagnosis, suggestion) = match self
            .plan(inc, failure, target, ctx.pod_name, ctx.evidence, ctx.tried)
            .await
        {
            Planned::Plan(p) => return Ok(*p),
            Planned::Escalate {
                diagnosis,
                suggestion,
            } => (diagnosis, suggestion),
        };
        if let Some(p) = self
            .plan_learned_llm(failure, target, ctx.pod_name, ctx.evidence, ctx.tried)
            .await
        {
            return Ok(p);
        }
        if llm_refusal.is_none() && self.inner.config.llm.is_some() {
            ctx.rules_diagnosis = Some(&diagnosis);
            match self.plan_llm(failure, target, &ctx).await {
                Ok(p) => return Ok(p),
                Err(why) => llm_refusal = Some(why),
            }
        }
        let diagnosis = match llm_refusal {
            Some(why) => format!("{diagnosis} (LLM: {why})"),
            None => diagnosis,
        };
        Err((diagnosis, suggestion))
    }

    /// Choose the fix for a failure from the built-in rules.
    async fn plan(
        &self,
        inc: &Incident,
        failure: &Failure,
        target: &WorkloadRef,
        pod: &str,
        evidence: &Value,
        tried: &[Action],
    ) -> Planned {
        let from_rollout = matches!(
            failure.kind,
            FailureKind::ImagePull | FailureKind::InvalidImageName | FailureKind::CrashLoop
        );
        if from_rollout
            && target.kind == WorkloadKind::Deployment
            && !tried
                .iter()
                .any(|a| matches!(a, Action::RolloutUndo { .. }))
            && let Some(rollback) = self.plan_rollback(failure, target, evidence).await
        {
            // A bad image can also be re-tagged: when both rules apply, the strategies' verified records decide
            // (Thompson sampling, with exploration), so the engine learns which works for this signature.
            if matches!(
                failure.kind,
                FailureKind::ImagePull | FailureKind::InvalidImageName
            ) && let Planned::Plan(retag) = self.plan_image(failure, target, tried).await
            {
                return Planned::Plan(self.pick(failure, vec![rollback, *retag]).await);
            }
            return Planned::Plan(Box::new(rollback));
        }
        match failure.kind {
            FailureKind::ImagePull | FailureKind::InvalidImageName => self.plan_image(failure, target, tried).await,
            FailureKind::OomKilled => self.plan_memory(failure, target, tried).await,
            FailureKind::CrashLoop => match probe::liveness_failing(evidence) {
                Some(message) => self.plan_probe(failure, target, &message, tried).await,
                None => self.diagnose_crash(inc, pod, failure, target, tried).await,
            },
            FailureKind::Evicted => Planned::Escalate {
                diagnosis: format!("the kubelet evicted a pod of {target}: {}", failure.message),
                suggestion: match Signature::of(failure).cause.as_str() {
                    "node_memory_pressure" => "set memory requests close to what the containers use, so the scheduler only places the pod where that memory exists",
                    "ephemeral_storage" => "set ephemeral-storage requests and limits, or write less to the container's filesystem",
                    _ => "read the eviction message and the node's conditions",
                }
                .into(),
            },
            FailureKind::NotReady => Planned::Escalate {
                diagnosis: format!("container {} of {target} runs but never becomes Ready: {}", failure.container, failure.message),
                suggestion: "check that the readiness probe asks a port and path the application serves, and what the application waits for before it is ready".into(),
            },
            FailureKind::ConfigError => Planned::Escalate {
                diagnosis: format!("container {} of {target} cannot be created: {}", failure.container, failure.message),
                suggestion: "create the missing object or key, or correct the reference in the workload; kube-reflexion never invents configuration or secrets".into(),
            },
            FailureKind::Unschedulable => match self
                .plan_requests(failure, target, pod, &Signature::of(failure).cause)
                .await
                .filter(|p| !tried.contains(&p.action))
            {
                Some(plan) => Planned::Plan(Box::new(plan)),
                None => Planned::Escalate {
                diagnosis: format!("no node can run {target}: {}", failure.message),
                suggestion: match Signature::of(failure).cause.as_str() {
                    "insufficient_memory" | "insufficient_cpu" => "lower the pod's resource requests to fit a node, or add capacity",
                    "node_selector" => "correct the nodeSelector/affinity, or label a node to match it",
                    "taint" => "add the matching toleration, or remove the taint from a node",
                    "volume_claim" => "create or bind the PersistentVolumeClaim the pod mounts",
                    _ => "read the scheduler's message and adjust the pod or the nodes",
                }
                .into(),
            }},
        }
    }

    /// The program says an environment variable is missing: take it from the one ConfigMap or Secret key of that
    /// name in the namespace, or say precisely why that is not possible.
    async fn plan_missing_env(
        &self,
        failure: &Failure,
        target: &WorkloadRef,
        var: &str,
        tried: &[Action],
    ) -> Planned {
        let cluster = &self.inner.cluster;
        let defined = cluster
            .container(target, &failure.container)
            .await
            .map(|c| {
                c["env"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|e| e["name"] == var)
            })
            .unwrap_or(false);
        if defined {
            return Planned::Escalate {
                diagnosis: format!(
                    "container {} of {target} exits saying {var} is missing, yet the workload sets {var}",
                    failure.container
                ),
                suggestion: format!(
                    "check the value {var} gets (an empty value, or the wrong key)"
                ),
            };
        }
        let sources: Vec<EnvSource> = match cluster.env_sources(&target.namespace, var).await {
            Ok(s) => s
                .into_iter()
                .filter(|s| {
                    !tried
                        .iter()
                        .any(|a| matches!(a, Action::SetEnv { from, .. } if from == s))
                })
                .collect(),
            Err(e) => {
                return Planned::Escalate {
                    diagnosis: format!(
                        "cannot list ConfigMaps and Secrets in {}: {e}",
                        target.namespace
                    ),
                    suggestion: format!("set {var} by hand"),
                };
            }
        };
        let describe = |s: &EnvSource| match s {
            EnvSource::ConfigMapKey { name, .. } => format!("ConfigMap {name}"),
            EnvSource::SecretKey { name, .. } => format!("Secret {name}"),
        };
        match sources.as_slice() {
            [only] => Planned::Plan(Box::new(Plan {
                action: Action::SetEnv {
                    target: target.clone(),
                    container: failure.container.clone(),
                    name: var.to_string(),
                    from: only.clone(),
                },
                source: "rules".into(),
                rationale: format!(
                    "container {} exits because {var} is not set (its log says so), and {} in namespace {} is the only object with a key {var}",
                    failure.container,
                    describe(only),
                    target.namespace
                ),
                template: "set_env:only_matching_key".into(),
                description: "Set the missing environment variable from the only ConfigMap or Secret key of that name in the namespace".into(),
                llm: Value::Null,
            })),
            [] => Planned::Escalate {
                diagnosis: format!(
                    "container {} of {target} exits because {var} is not set, and no ConfigMap or Secret in {} has a key {var}",
                    failure.container, target.namespace
                ),
                suggestion: format!(
                    "create a ConfigMap or Secret with {var}, or set {var} in the workload"
                ),
            },
            many => Planned::Escalate {
                diagnosis: format!(
                    "container {} of {target} exits because {var} is not set; several objects have a key {var}: {}",
                    failure.container,
                    many.iter().map(describe).collect::<Vec<_>>().join(", ")
                ),
                suggestion: format!(
                    "choose which one {var} should come from and set it in the workload"
                ),
            },
        }
    }

    /// Choose among candidate plans by their strategies' records.
    async fn pick(&self, failure: &Failure, mut candidates: Vec<Plan>) -> Box<Plan> {
        let signature = Signature::of(failure).class();
        let mut records = Vec::with_capacity(candidates.len());
        for c in &candidates {
            let (successes, failures) = self
                .inner
                .db
                .strategy_record(&signature, &c.template)
                .await
                .unwrap_or((0, 0));
            records.push(Record {
                successes,
                failures,
            });
        }
        let index = {
            let mut rng = rand::rng();
            choose(&records, self.inner.config.exploration_rate, &mut rng).unwrap_or(0)
        };
        let shown: Vec<String> = candidates
            .iter()
            .zip(&records)
            .map(|(c, r)| {
                format!(
                    "{} ({} verified, {} failed)",
                    c.template, r.successes, r.failures
                )
            })
            .collect();
        let mut chosen = candidates.swap_remove(index.min(candidates.len().saturating_sub(1)));
        chosen.rationale = format!(
            "{}; chosen by Thompson sampling among {}",
            chosen.rationale,
            shown.join(", ")
        );
        Box::new(chosen)
    }

    /// A failure that began with the latest rollout while the previous revision still runs is undone by rolling
    /// back to that revision: the change that broke it is known, the fix is proven.
    async fn plan_rollback(
        &self,
        failure: &Failure,
        target: &WorkloadRef,
        evidence: &Value,
    ) -> Option<Plan> {
        let chain = evidence["owner_chain"].as_array()?;
        let failing_rs = chain.iter().find(|l| l["kind"] == "ReplicaSet")?["name"].as_str()?;
        let revisions = self.inner.cluster.revisions(target).await.ok()?;
        let (newest, newest_rs, _, _) = revisions.first()?;
        if newest_rs != failing_rs {
            return None;
        }
        let (previous, previous_rs, available, _) = revisions.iter().skip(1).find(|r| r.2 > 0)?;
        Some(Plan {
            action: Action::RolloutUndo {
                target: target.clone(),
                to_revision: Some(*previous),
            },
            rationale: format!(
                "container {} started failing ({}) with revision {newest} (ReplicaSet {newest_rs}), while revision {previous} (ReplicaSet {previous_rs}) still runs {available} available pod(s)",
                failure.container, failure.reason
            ),
            source: "rules".into(),
            template: "rollout_undo:previous_running_revision".into(),
            description: "Roll back to the newest earlier revision that still runs when a failure began with the latest rollout".into(),
            llm: Value::Null,
        })
    }

    /// OOM-killed: raise the memory limit on the owner by the rule (2× or +256Mi, capped), from the highest limit
    /// already tried in this incident.
    async fn plan_memory(
        &self,
        failure: &Failure,
        target: &WorkloadRef,
        tried: &[Action],
    ) -> Planned {
        let (limit, request) = match self.inner.cluster.memory(target, &failure.container).await {
            Ok(m) => m,
            Err(e) => {
                return Planned::Escalate {
                    diagnosis: format!("cannot read the memory settings of {target}: {e}"),
                    suggestion: "raise the memory limit by hand".into(),
                };
            }
        };
        let Some(current) = limit.as_deref().and_then(parse_bytes) else {
            return Planned::Escalate {
                diagnosis: format!("container {} of {target} was OOM-killed without a memory limit of its own: the node ran out of memory", failure.container),
                suggestion: "set a memory request and limit that match what the container uses, or move it to a larger node".into(),
            };
        };
        let tried_max = tried
            .iter()
            .filter_map(|a| match a {
                Action::SetResources { memory_limit, .. } => parse_bytes(memory_limit),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        // Memory: a limit that held for this workload before is where the next occurrence starts.
        if tried.is_empty() {
            let signature = Signature::of(failure).class();
            let kind = target.kind.to_string();
            let learned = self
                .inner
                .db
                .learned_value(
                    &signature,
                    &target.namespace,
                    &kind,
                    &target.name,
                    MEMORY_LIMIT_KEY,
                )
                .await
                .ok()
                .flatten();
            if let Some((value, episode)) = learned.filter(|(v, _)| {
                parse_bytes(v).is_some_and(|b| b > current && b <= self.inner.config.memory_ceiling)
            }) {
                return Planned::Plan(Box::new(Plan {
                    action: Action::SetResources {
                        target: target.clone(),
                        container: failure.container.clone(),
                        memory_limit: value.clone(),
                        memory_request: None,
                    },
                    source: "learned".into(),
                    rationale: format!(
                        "a {value} memory limit held for {target} before ({episode}); the limit is {} again",
                        format_bytes(current)
                    ),
                    template: "set_resources:raise_memory_limit".into(),
                    description: "Raise the container's memory limit on the owner: the larger of 2x and +256Mi per trial, capped by the ceiling".into(),
                    llm: Value::Null,
                }));
            }
        }
        let base = current.max(tried_max);
        let ceiling = self.inner.config.memory_ceiling;
        let Some(next) = next_memory_limit(base, ceiling) else {
            return Planned::Escalate {
                diagnosis: format!("container {} of {target} is OOM-killed at a memory limit of {} and the ceiling is {}", failure.container, format_bytes(base), format_bytes(ceiling)),
                suggestion: "find out why it needs that much memory (a leak, a larger data set) before raising the limit further".into(),
            };
        };
        let new_limit = format_bytes(next);
        // Keep request <= limit: only touch the request if it would end up above the new limit.
        let memory_request = request
            .filter(|r| parse_bytes(r).is_some_and(|b| b > next))
            .map(|_| new_limit.clone());
        Planned::Plan(Box::new(Plan {
            action: Action::SetResources {
                target: target.clone(),
                container: failure.container.clone(),
                memory_limit: new_limit.clone(),
                memory_request,
            },
            rationale: format!(
                "container {} was OOM-killed at a {} limit; {new_limit} is the larger of twice the limit and the limit plus 256Mi (ceiling {})",
                failure.container,
                format_bytes(base),
                format_bytes(ceiling)
            ),
            source: "rules".into(),
            template: "set_resources:raise_memory_limit".into(),
            description: "Raise the container's memory limit on the owner: the larger of 2x and +256Mi per trial, capped by the ceiling".into(),
            llm: Value::Null,
        }))
    }

    /// A crash loop the built-in rules cannot fix safely: say precisely what happened, with the evidence.
    async fn diagnose_crash(
        &self,
        inc: &Incident,
        pod: &str,
        failure: &Failure,
        target: &WorkloadRef,
        tried: &[Action],
    ) -> Planned {
        let logs = self
            .inner
            .cluster
            .crash_logs(&inc.namespace, pod, &failure.container)
            .await
            .unwrap_or_default();
        if let Some(var) = missing_env_var(&logs) {
            return self.plan_missing_env(failure, target, &var, tried).await;
        }
        let excerpt = if logs.is_empty() {
            "no log output".to_string()
        } else {
            format!(
                "last log lines: {}",
                logs.lines()
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join(" | ")
            )
        };
        let code = failure
            .exit_code
            .map(|c| c.to_string())
            .unwrap_or_else(|| "unknown".into());
        let suggestion = match failure.exit_code {
            Some(127) => {
                "the command was not found in the image: check the container's command and args"
            }
            Some(126) => {
                "the command is not executable: check its path and permissions in the image"
            }
            Some(128) => {
                "the runtime could not start the process: check the command path exists in the image"
            }
            Some(137) => "the container was killed (SIGKILL): check liveness probes and memory",
            Some(139) => "the process crashed with a segmentation fault: check the image version",
            Some(143) => "the process was terminated (SIGTERM): check probes and what stops it",
            _ => {
                "read the logs above and fix the application or its configuration; if the crash began with the latest rollout, run `kubectl rollout undo`"
            }
        };
        Planned::Escalate {
            diagnosis: format!(
                "container {} of {target} keeps crashing with exit code {code} ({}); {excerpt}",
                failure.container, failure.message
            ),
            suggestion: suggestion.into(),
        }
    }

    /// The built-in rule for bad image references: ask the registry which tags exist and pick the one the
    /// reference was most likely meant to be. Never changes the repository.
    async fn plan_image(
        &self,
        failure: &Failure,
        target: &WorkloadRef,
        tried: &[Action],
    ) -> Planned {
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
                .filter_map(|a| match a {
                    Action::SetImage { image, .. } => ImageRef::parse(image).ok()?.tag,
                    _ => None,
                })
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
        // A bare pod's image changes in place like a workload's: the API allows it, and the pod keeps its uid.
        Planned::Plan(Box::new(Plan {
            action: Action::SetImage {
                target: target.clone(),
                container: failure.container.clone(),
                image: new_image,
            },
            source: "rules".into(),
            rationale,
            template: "set_image:registry_tag".into(),
            description: "Set the container image on the owner (in place on a bare pod) to the registry tag it was most likely meant to run (closest existing tag, else newest stable)".into(),
            llm: Value::Null,
        }))
    }
}
