//! The trial loop: for each trial, plan -> gate -> dry run -> execute -> verify -> revert if it did not hold ->
//! reflect and record; the incident ends resolved or handed over.

use super::diagnose::Examined;
use super::route::Route;
use super::rules::{self, probe::ProbeResult};
use super::write::Prepared;
use super::{Diagnosis, Engine, EngineError, MEMORY_LIMIT_KEY, PendingPlan, Plan, llm_planning};
use crate::cluster::Reverted;
use crate::db::{Incident, NewEpisode};
use crate::verify::{Expected, Verification, verify};
use reflexion_core::IncidentState;
use reflexion_core::policy::Decision;
use reflexion_core::progress::{Verdict, judge};
use reflexion_core::reflect::{TrialOutcome, reflect};
use reflexion_core::strategy::PlanSource;
use reflexion_core::{Action, Signature};
use serde_json::{Value, json};
use std::time::Instant;
use tracing::Instrument;

impl Engine {
    pub(in crate::engine) async fn run(&self, id: &str) -> Result<(), EngineError> {
        let db = &self.inner.db;
        let Some(inc) = db.incident(id).await? else {
            return Ok(());
        };
        let this = self.on(&inc.cluster)?;
        db.transition(
            id,
            IncidentState::Diagnosing,
            "gathering evidence from the cluster",
        )
        .await?;
        let Some(mut diag) = this.diagnose(&inc).await? else {
            return Ok(());
        };
        // Where fixes land (live, Git, or by hand), from the workload's owner of record.
        let route = this.route_of(&inc, &mut diag).await?;
        db.set_evidence(id, &Signature::of(&diag.failure).class(), &diag.evidence)
            .await?;
        this.trials(&inc, diag, &route, 1, Vec::new(), None).await
    }

    /// The trial loop from trial `first`: plan from the latest diagnosis, gate, run, and look again. `approved` is
    /// an operator's approved plan, run as trial `first` without asking the policy again.
    pub(in crate::engine) async fn trials(
        &self,
        inc: &Incident,
        mut diag: Diagnosis,
        route: &Route,
        first: u32,
        mut tried: Vec<Action>,
        mut approved: Option<Plan>,
    ) -> Result<(), EngineError> {
        let (db, config) = (&self.inner.db, &self.inner.config);
        let id = inc.id.as_str();
        // Probe results stay known across trials: a handler that failed once is not a candidate again.
        let mut known: Vec<ProbeResult> = Vec::new();
        for trial in first..=config.max_trials {
            for r in &diag.probes {
                known.retain(|k| !(k.container == r.container && k.handler == r.handler));
                known.push(r.clone());
            }
            diag.evidence["probes"] = serde_json::to_value(&known).unwrap_or(Value::Null);
            let (options, choices) = self.options(&diag, &tried).await;
            diag.evidence["options"] = json!(options);
            diag.evidence["choices"] = serde_json::to_value(&choices).unwrap_or(Value::Null);
            let signature = Signature::of(&diag.failure);
            let target = diag.target.clone();
            let plan = match approved.take() {
                Some(plan) => plan,
                None => {
                    let lessons = db.lessons(&signature.class(), 3).await?;
                    db.transition(
                        id,
                        IncidentState::Planning,
                        &format!(
                            "trial {trial}: choosing a fix for {signature} ({} lessons recalled)",
                            lessons.len()
                        ),
                    )
                    .await?;
                    let ctx = llm_planning::LlmContext {
                        incident_id: id,
                        trial,
                        pod_name: &diag.pod,
                        evidence: &diag.evidence,
                        tried: &tried,
                        lessons: &lessons,
                        rules_diagnosis: None,
                    };
                    let plan = match self.choose(inc, &diag.failure, &target, ctx).await {
                        Ok(p) => p,
                        Err((diagnosis, suggestion)) => {
                            return self.escalate(inc, &target, &diagnosis, &suggestion).await;
                        }
                    };
                    if let Action::Escalate {
                        diagnosis,
                        suggestion,
                    } = &plan.action
                    {
                        let diagnosis = format!("{diagnosis} ({})", plan.rationale);
                        return self.escalate(inc, &target, &diagnosis, suggestion).await;
                    }
                    if let Err(why) = self.admissible(&plan.action, &target) {
                        return self
                            .escalate(
                                inc,
                                &target,
                                &format!("refused `{}`: {why}", plan.action.render()),
                                "fix the workload by hand",
                            )
                            .await;
                    }
                    if let Route::Hand { owner, why } = route {
                        let command = plan.action.render();
                        return self
                            .escalate(
                                inc,
                                &target,
                                &format!("{why}; the fix would be `{command}`"),
                                &by_hand(owner, &command),
                            )
                            .await;
                    }
                    match self.scope.policy.decide(&plan.action) {
                        Decision::Execute => plan,
                        Decision::NeedsApproval { reason } => {
                            return self
                                .await_approval(inc, trial, &diag, plan, route, &reason)
                                .await;
                        }
                        Decision::SuggestOnly { reason } | Decision::Refuse { reason } => {
                            return self
                                .escalate(
                                    inc,
                                    &target,
                                    &reason,
                                    &format!(
                                        "run by hand if appropriate: `{}`",
                                        plan.action.render()
                                    ),
                                )
                                .await;
                        }
                    }
                }
            };
            let span = tracing::info_span!("incident_trial", incident = %inc.id, trial, workload = %target,
                signature = %signature, action = plan.action.name(), source = %plan.source);
            match self
                .trial(inc, trial, &diag, &plan, &mut tried, route)
                .instrument(span)
                .await?
            {
                TrialEnd::Finished => return Ok(()),
                TrialEnd::Next(next) => diag = *next,
            }
        }
        let target = diag.target.clone();
        let attempts: Vec<String> = tried.iter().map(|a| format!("`{}`", a.render())).collect();
        let diagnosis = format!(
            "{} trials did not fix {target}, which now shows {}; tried {}",
            config.max_trials,
            Signature::of(&diag.failure),
            attempts.join(", ")
        );
        let next = rules::next_step(&Signature::of(&diag.failure));
        self.escalate(inc, &target, &diagnosis, next).await
    }

    /// One trial: dry run, execute, verify; when the change did not hold, look at the workload again and keep the
    /// change if it made progress, else revert it; reflect, record. `Finished` when the incident ended (fixed, or
    /// escalated because the change could not be made); `Next` carries the diagnosis the next trial starts from.
    pub(in crate::engine) async fn trial(
        &self,
        inc: &Incident,
        trial: u32,
        diag: &Diagnosis,
        plan: &Plan,
        tried: &mut Vec<Action>,
        route: &Route,
    ) -> Result<TrialEnd, EngineError> {
        let (failure, target) = (&diag.failure, &diag.target);
        let signature = Signature::of(failure);
        let (db, cluster, config) = (&self.inner.db, &self.scope.cluster, &self.inner.config);
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
                return Ok(TrialEnd::Finished);
            }
        }
        let strategy_id = db
            .strategy_for(
                &signature.class(),
                signature.kind.error_type(),
                plan.action.name(),
                &plan.template,
                &plan.description,
                // A strategy is the model's when its template came from the model, even when reused as learned.
                if plan.template.starts_with("llm:") {
                    PlanSource::Llm
                } else {
                    PlanSource::Rules
                },
                plan.payload.as_ref(),
            )
            .await?;
        // Compiled once: the dry run and the execution make the same write.
        let (prepared, dry_run) = match self.prepare(route, inc, plan).await {
            Ok(v) => v,
            Err(e) => {
                let diagnosis = match route {
                    Route::Git { .. } => format!("`{command}` cannot be made in Git: {e}"),
                    _ => format!("the API server refused a dry run of `{command}`: {e}"),
                };
                self.escalate(inc, target, &diagnosis, "fix the workload by hand")
                    .await?;
                return Ok(TrialEnd::Finished);
            }
        };
        // The circuit breaker and the per-workload budget: the slot is taken in the same transaction that counts
        // the last hour's actions, so concurrent incidents cannot pass the limit together.
        let slot = match db
            .reserve_action(
                &inc.id,
                plan.action.name(),
                &target.to_string(),
                &json!({"command": command, "action": plan.action, "trial": trial,
                        "route": if matches!(route, Route::Git { .. }) { "git" } else { "live" },
                        // A recreation's journal: stored before its delete, so any process can finish it.
                        "journal": match &prepared { Prepared::Live(c) => c.journal(), _ => None }}),
                &config.budget,
                config.workload_cooldown,
            )
            .await?
        {
            Ok(slot) => slot,
            Err(why) => {
                self.escalate(
                    inc,
                    target,
                    &format!("not running `{command}`: {why}"),
                    "check what is failing across the cluster before letting more changes through",
                )
                .await?;
                return Ok(TrialEnd::Finished);
            }
        };
        db.transition(
            &inc.id,
            IncidentState::Executing,
            &format!("trial {trial}: {command}"),
        )
        .await?;
        let message = match route {
            Route::Git { controller, .. } => {
                self.commit_message(inc, trial, diag, plan, controller)
            }
            _ => String::new(),
        };
        let executed = self.execute(prepared, inc, trial, plan, &message).await;
        if let Err(e) = &executed
            && e.outcome_unknown()
        {
            // The write may be in place, half made (a recreation between its delete and its create) or not made:
            // the slot stays reserved and the incident goes on through the read-back path, as after a restart.
            tracing::warn!(incident = %inc.id, %command, error = %e, "the write's outcome is unknown; reading it back");
            db.transition(
                &inc.id,
                IncidentState::Executing,
                &format!(
                    "trial {trial}: the outcome of `{command}` is unknown ({e}); reading it back"
                ),
            )
            .await?;
            Box::pin(self.reverify(&inc.id, IncidentState::Executing)).await?;
            return Ok(TrialEnd::Finished);
        }
        db.settle_action(
            slot,
            &executed
                .as_ref()
                .map(|d| d.settled())
                .unwrap_or_else(|e| format!("error: {e}")),
        )
        .await?;
        let done = match executed {
            Ok(d) => d,
            Err(e) => {
                self.escalate(
                    inc,
                    target,
                    &format!("executing `{command}` failed: {e}"),
                    "fix the workload by hand",
                )
                .await?;
                return Ok(TrialEnd::Finished);
            }
        };
        let waiting = match &done {
            super::write::Done::Git {
                commit, controller, ..
            } => {
                db.set_git(&inc.id, &done.execution()).await?;
                format!(
                    "trial {trial}: waiting for {controller} to apply commit {}, then for Ready and stable for {}s",
                    commit.sha,
                    config.verify_window.as_secs_f64()
                )
            }
            _ => format!(
                "trial {trial}: waiting for Ready and stable for {}s",
                config.verify_window.as_secs_f64()
            ),
        };
        db.transition(&inc.id, IncidentState::Verifying, &waiting)
            .await?;
        let checked = match self.synced(&done).await {
            Ok(applied) => self
                .before_verifying(inc, &plan.action, target)
                .await
                .map(|b| (applied, b)),
            Err(why) => Err(why),
        };
        let v = match checked {
            Ok((applied, before)) => {
                let expected = Expected {
                    pod_uid: done.new_uid(),
                    run: before.run.as_deref(),
                };
                let mut v = verify(
                    cluster.client(),
                    target,
                    expected,
                    config.verify_window,
                    config.verify_timeout + before.extra,
                )
                .await;
                for said in [before.said, applied].into_iter().flatten() {
                    v.detail = format!("{said}; {}", v.detail);
                }
                v
            }
            Err(why) => Verification {
                verified: false,
                detail: why,
                ready_after_ms: None,
                stable_for_secs: 0.0,
            },
        };
        let mut revert_note = None;
        let mut verdict = None;
        let mut now_showing: Vec<String> = Vec::new();
        let mut next = None;
        if !v.verified {
            // Look again: what the pods that can prove the fix show now decides between keeping and reverting, and
            // is what the next trial plans from.
            let seen = self.examine(target, &diag.pod, None).await?;
            let judged = judge(&signature, &diag.symptoms, seen.symptoms());
            now_showing = seen.symptoms().iter().map(Signature::class).collect();
            verdict = Some(judged);
            tracing::info!(incident = %inc.id, verdict = judged.as_str(), now = ?now_showing, "judged the change");
            match seen {
                Examined::Failing(d) if judged == Verdict::Progress => next = Some(d),
                seen => {
                    let r = self.undo(inc, trial, &done).await;
                    let undone = match &done {
                        super::write::Done::Live(s) => {
                            serde_json::to_value(s).unwrap_or(Value::Null)
                        }
                        git => git.execution(),
                    };
                    db.audit(
                        &inc.id,
                        "revert",
                        &target.to_string(),
                        &undone,
                        &r.describe(),
                    )
                    .await?;
                    revert_note = Some(r);
                    if judged == Verdict::Progress {
                        // Progress without a failing pod to plan from (the new cause shows only in events): the
                        // change is undone like any other that did not hold.
                        verdict = Some(Verdict::NoProgress);
                    }
                    // The same cause, seen again: fresher evidence than the trial started from.
                    next = match seen {
                        Examined::Failing(d) if Signature::of(&d.failure) == signature => Some(d),
                        _ => None,
                    };
                }
            }
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
            reverted: revert_note.as_ref().is_some_and(Reverted::is_done),
            verdict,
            now_showing,
        });
        // A change that made progress is kept, not a failure to reflect on: the template says what it revealed.
        if !v.verified
            && verdict != Some(Verdict::Progress)
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
        let mut execution = done.execution();
        execution["revert"] = json!(revert_note);
        let mut verification = serde_json::to_value(&v).unwrap_or(Value::Null);
        if let Some(verdict) = verdict {
            verification["progress"] = json!(verdict.as_str());
        }
        let episode_id = db
            .record_episode(&NewEpisode {
                incident: inc,
                trial: i64::from(trial),
                signature: &signature.class(),
                strategy_id: &strategy_id,
                source: plan.source,
                action: &action_json,
                command: &command,
                rationale: &plan.rationale,
                dry_run: &dry_run,
                execution: &execution,
                verification: &verification,
                success: v.verified,
                progress: verdict == Some(Verdict::Progress),
                reverted: revert_note.as_ref().is_some_and(Reverted::is_done),
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
            let what = done.describe(&command);
            db.finish(
                &inc.id,
                IncidentState::Resolved,
                &format!("fixed by {what}: {}", v.detail),
            )
            .await?;
            cluster
                .record_event(
                    target,
                    "Normal",
                    "ReflexionFixed",
                    &match &done {
                        super::write::Done::Live(_) => {
                            format!("kube-reflexion ran `{command}`; {}", v.detail)
                        }
                        _ => format!("kube-reflexion fixed it by {what}; {}", v.detail),
                    },
                )
                .await;
            tracing::info!(incident = %inc.id, workload = %target, %command, "incident resolved");
            return Ok(TrialEnd::Finished);
        }
        tracing::warn!(incident = %inc.id, workload = %target, %command, detail = %v.detail, "trial not verified");
        Ok(TrialEnd::Next(
            next.unwrap_or_else(|| Box::new(diag.clone())),
        ))
    }
}

impl Engine {
    /// Park the incident for a person: on the Git route the fix is proposed first (a branch, and a pull request
    /// where a forge is configured), so that what is approved is exactly the commit shown.
    async fn await_approval(
        &self,
        inc: &Incident,
        trial: u32,
        diag: &Diagnosis,
        mut plan: Plan,
        route: &Route,
        reason: &str,
    ) -> Result<(), EngineError> {
        let db = &self.inner.db;
        let command = plan.action.render();
        let proposal = match self.propose(route, inc, trial, diag, &plan).await {
            Ok(p) => p,
            Err(why) => {
                return self
                    .escalate(
                        inc,
                        &diag.target,
                        &format!("{reason}, but the fix could not be proposed in Git: {why}"),
                        &format!(
                            "make the change `{command}` in the workload's Git source by hand"
                        ),
                    )
                    .await;
            }
        };
        let note = match &proposal {
            Some(c) => {
                db.set_git(&inc.id, &json!({"proposal": c})).await?;
                db.audit(
                    &inc.id,
                    "propose",
                    &diag.target.to_string(),
                    &json!({"command": command, "commit": c}),
                    "ok",
                )
                .await?;
                match &c.pull_request {
                    Some(pr) => format!(
                        "{reason}: merge {} or approve here, which merges it (`{command}` as commit {} on {})",
                        pr.url, c.sha, c.branch
                    ),
                    None => format!(
                        "{reason}: approve here to merge branch {} (`{command}` as commit {})",
                        c.branch, c.sha
                    ),
                }
            }
            None => format!("{reason}: `{command}`"),
        };
        plan.proposal = proposal;
        let pending = PendingPlan {
            command,
            plan,
            trial,
            diagnosis: Some(diag.clone()),
        };
        db.await_approval(&inc.id, &pending, &note).await?;
        Ok(())
    }
}

/// What a person does with a fix kube-reflexion may not make itself.
fn by_hand(owner: &reflexion_core::gitops::OwnerOfRecord, command: &str) -> String {
    use reflexion_core::gitops::OwnerOfRecord;
    match owner {
        OwnerOfRecord::Helm {
            release,
            namespace,
            helm_release: Some(hr),
        } => format!(
            "in the values of Flux HelmRelease {hr} (release {namespace}/{release}), set the value that makes what `{command}` makes, and let helm-controller upgrade it"
        ),
        OwnerOfRecord::Helm {
            release, namespace, ..
        } => format!(
            "set the value of Helm release {namespace}/{release} that makes what `{command}` makes, then `helm upgrade {release} -n {namespace} --reuse-values --set <that value>`"
        ),
        other => format!(
            "make what `{command}` makes in the source of {}, which the cluster is synced from",
            other.describe()
        ),
    }
}

/// How a trial ended.
pub(in crate::engine) enum TrialEnd {
    /// Fixed, or handed over.
    Finished,
    /// Not fixed: the next trial starts from this diagnosis.
    Next(Box<Diagnosis>),
}
