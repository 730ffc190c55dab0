//! The trial loop: for each trial, plan -> gate -> dry run -> execute -> verify -> revert if it did not hold ->
//! reflect and record; the incident ends resolved or handed over.

use super::{Diagnosis, Engine, EngineError, MEMORY_LIMIT_KEY, Plan, llm_planning};
use crate::db::{Incident, NewEpisode};
use crate::verify::verify;
use reflexion_core::owner::WorkloadRef;
use reflexion_core::policy::Decision;
use reflexion_core::reflect::{TrialOutcome, reflect};
use reflexion_core::{Action, Failure, Signature};
use serde_json::{Value, json};
use std::time::Instant;
use tracing::Instrument;

impl Engine {
    pub(in crate::engine) async fn run(&self, id: &str) -> Result<(), EngineError> {
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
    pub(in crate::engine) async fn trial(
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
}
