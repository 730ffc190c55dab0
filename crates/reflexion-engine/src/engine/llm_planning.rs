//! Planning with the LLM, and reusing what it taught: a verified LLM plan is stored as a strategy whose template is
//! the action with cluster names replaced by placeholders, so the next incident of that signature reuses it with no
//! LLM call. Every answer passes the same gates as a rule's plan, plus checks for what only a model gets wrong.

use super::{Engine, Plan};
use crate::db::Incident;
use crate::llm::{Llm, LlmMemory};
use reflexion_core::choices::Choices;
use reflexion_core::image::ImageRef;
use reflexion_core::llm::{
    NameKind, PromptInput, REFLECTION_SYSTEM_PROMPT, Redaction, ReflectionInput, SYSTEM_PROMPT,
    answer_schema_for, applicable_actions, build_prompt, build_reflection_prompt, parse_answer,
    parse_reflection, reflection_schema,
};
use reflexion_core::owner::WorkloadRef;
use reflexion_core::quantity::parse_bytes;
use reflexion_core::strategy::PlanSource;
use reflexion_core::{Action, EnvSource, Failure, FailureKind, Signature};
use serde_json::{Value, json};

/// Prefix of the template of a strategy the LLM proposed; the rest is the action with placeholders.
const LLM_TEMPLATE: &str = "llm:";

/// What the planner needs to know about the incident, beyond the failure.
pub(super) struct LlmContext<'a> {
    pub incident_id: &'a str,
    pub trial: u32,
    pub pod_name: &'a str,
    pub evidence: &'a Value,
    pub tried: &'a [Action],
    pub lessons: &'a [String],
    pub rules_diagnosis: Option<&'a str>,
}

impl Engine {
    /// Placeholders for this incident's names, always added in the same order so that they are stable across
    /// incidents of the same workload.
    fn redaction(
        failure: &Failure,
        target: &WorkloadRef,
        pod_name: &str,
        evidence: &Value,
    ) -> Redaction {
        let mut r = Redaction::default();
        r.add(NameKind::Namespace, &target.namespace);
        r.add(NameKind::Workload, &target.name);
        r.add(NameKind::Pod, pod_name);
        if let Some(node) = evidence["pod"]["node"].as_str() {
            r.add(NameKind::Node, node);
        }
        if let Ok(image) = ImageRef::parse(&failure.image)
            && failure.image.starts_with(&format!("{}/", image.registry))
        {
            r.add(NameKind::Registry, &image.registry);
        }
        r
    }

    /// A verified strategy the LLM proposed for this signature, applied to this workload: no LLM call.
    pub(super) async fn plan_learned_llm(
        &self,
        failure: &Failure,
        target: &WorkloadRef,
        pod_name: &str,
        evidence: &Value,
        tried: &[Action],
    ) -> Option<Plan> {
        if self
            .inner
            .config
            .llm
            .as_ref()
            .is_some_and(|l| l.config.memory != LlmMemory::Full)
        {
            return None;
        }
        let signature = Signature::of(failure).class();
        let strategies = self.inner.db.llm_strategies(&signature).await.ok()?;
        if strategies.is_empty() {
            return None;
        }
        let redaction = Self::redaction(failure, target, pod_name, evidence);
        for (template, payload, successes, failures) in strategies {
            let Some(mut value) = payload else {
                continue;
            };
            redaction.restore(&mut value);
            let Ok(action) = serde_json::from_value::<Action>(value) else {
                continue;
            };
            if self.vet(&action, target, tried).await.is_err() {
                continue;
            }
            return Some(Plan {
                rationale: format!(
                    "a strategy the LLM proposed held for {signature} before ({successes} verified, {failures} failed); reused without an LLM call"
                ),
                action,
                source: PlanSource::Learned,
                template,
                description: "An action the LLM proposed that was verified for this signature"
                    .into(),
                llm: Value::Null,
                payload: None,
                proposal: None,
            });
        }
        None
    }

    /// Ask the LLM for one action: one call, and one repair call that quotes why the first answer was refused.
    /// `Err` says why there is no usable plan; every call is recorded either way.
    pub(super) async fn plan_llm(
        &self,
        failure: &Failure,
        target: &WorkloadRef,
        ctx: &LlmContext<'_>,
    ) -> Result<Plan, String> {
        let Some(llm) = self.inner.config.llm.as_ref() else {
            return Err("no LLM is configured".into());
        };
        self.llm_budget_left(llm, ctx.incident_id).await?;
        let db = &self.inner.db;
        let redaction = Self::redaction(failure, target, ctx.pod_name, ctx.evidence);
        let prompt_redaction = if llm.config.redact {
            redaction.clone()
        } else {
            Redaction::default()
        };
        let input = self.prompt_input(failure, target, ctx).await;
        let user = build_prompt(&input, &prompt_redaction);
        let choices: Choices =
            serde_json::from_value(ctx.evidence["choices"].clone()).unwrap_or_default();
        let offered = applicable_actions(&Signature::of(failure));
        let schema = choices
            .redacted(&prompt_redaction)
            .narrow(answer_schema_for(offered));
        let mut calls = Vec::new();
        let mut repair: Option<String> = None;
        for attempt in 1..=2 {
            let message = match &repair {
                None => user.clone(),
                Some(why) => format!(
                    "{user}\nYour previous answer was refused: {why}. Answer again with one JSON object that matches the schema."
                ),
            };
            let c = llm.complete(SYSTEM_PROMPT, &message, schema.clone()).await;
            tracing::debug!(incident = %ctx.incident_id, attempt, prompt = %message, response = ?c.text, "LLM call");
            let verdict = match &c.text {
                Err(e) => Err(e.clone()),
                Ok(text) => match parse_answer(text, &prompt_redaction) {
                    Err(e) => Err(e.to_string()),
                    // An endpoint that ignores the schema cannot widen what fits the failure.
                    Ok(answer) if !offered.contains(&answer.action.name()) => Err(format!(
                        "{} does not fit this failure: only {} were offered",
                        answer.action.name(),
                        offered.join(", ")
                    )),
                    Ok(answer) => self
                        .vet(&answer.action, target, ctx.tried)
                        .await
                        .map(|()| answer),
                },
            };
            let outcome = match &verdict {
                Ok(_) => "accepted".into(),
                Err(e) => format!("refused: {e}"),
            };
            let record = c.record(ctx.trial, &llm.config.model, message, outcome);
            db.record_llm_call(ctx.incident_id, &record)
                .await
                .map_err(|e| e.to_string())?;
            calls.push(serde_json::to_value(&record).unwrap_or(Value::Null));
            match verdict {
                Ok(answer) => {
                    let mut stored = serde_json::to_value(&answer.action).unwrap_or(Value::Null);
                    redaction.redact_value(&mut stored);
                    // Keyed by what the action does, stored with the names redacted for reuse elsewhere.
                    let key = serde_json::from_value::<Action>(stored.clone())
                        .map(|a| a.strategy_key())
                        .unwrap_or_else(|_| answer.action.strategy_key());
                    return Ok(Plan {
                        template: format!("{LLM_TEMPLATE}{key}"),
                        payload: Some(stored),
                        proposal: None,
                        description: format!(
                            "{} proposed by the LLM ({})",
                            answer.action.name(),
                            llm.config.model
                        ),
                        rationale: format!("LLM ({}): {}", llm.config.model, answer.rationale),
                        action: answer.action,
                        source: PlanSource::Llm,
                        llm: json!(calls),
                    });
                }
                // A transport error or timeout is not retried: the rules take over at once.
                Err(why) if c.text.is_err() => return Err(why),
                Err(why) => {
                    tracing::info!(incident = %ctx.incident_id, attempt, %why, "LLM answer refused");
                    repair = Some(why);
                }
            }
        }
        Err(format!(
            "the LLM's answer was refused twice; last: {}",
            repair.unwrap_or_default()
        ))
    }

    /// Whether the incident's and today's token budgets leave room for another call.
    async fn llm_budget_left(&self, llm: &Llm, incident_id: &str) -> Result<(), String> {
        let db = &self.inner.db;
        let used = db
            .llm_tokens(Some(incident_id), None)
            .await
            .map_err(|e| e.to_string())?;
        if used >= llm.config.incident_token_budget {
            return Err(format!(
                "the incident's LLM token budget is spent ({used} of {})",
                llm.config.incident_token_budget
            ));
        }
        let midnight = chrono::Utc::now()
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map(|t| {
                t.and_utc()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            })
            .unwrap_or_default();
        let today = db
            .llm_tokens(None, Some(&midnight))
            .await
            .map_err(|e| e.to_string())?;
        if today >= llm.config.daily_token_budget {
            return Err(format!(
                "the daily LLM token budget is spent ({today} of {})",
                llm.config.daily_token_budget
            ));
        }
        Ok(())
    }

    /// The failing container as a prompt shows it: image, command, resources, env names, ports, probes.
    async fn container_summary(&self, target: &WorkloadRef, container: &str) -> Value {
        self.scope
            .cluster
            .container(target, container)
            .await
            .map(|c| {
                let env_names: Vec<Value> = c["env"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| e["name"].clone())
                    .collect();
                json!({"name": c["name"], "image": c["image"], "command": c["command"], "args": c["args"],
                       "ports": c["ports"], "resources": c["resources"], "env_names": env_names,
                       "livenessProbe": c["livenessProbe"], "readinessProbe": c["readinessProbe"]})
            })
            .unwrap_or(Value::Null)
    }

    /// The paper's self-reflection: after a trial that did not hold, the model says in a sentence or two why, and
    /// what to try instead; the next prompt of this incident carries it. Only when an LLM is configured and its
    /// prompts recall this incident; `None` (the template reflection stands alone) on any failure. Recorded.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn reflect_with_llm(
        &self,
        inc: &Incident,
        trial: u32,
        failure: &Failure,
        target: &WorkloadRef,
        command: &str,
        verification: &str,
        tried: &[Action],
    ) -> Option<String> {
        let llm = self.inner.config.llm.as_ref()?;
        if llm.config.memory == LlmMemory::None {
            return None;
        }
        if let Err(why) = self.llm_budget_left(llm, &inc.id).await {
            tracing::info!(incident = %inc.id, %why, "no LLM reflection");
            return None;
        }
        let node = &inc.report["real_k8s_data"]["pod"]["spec"]["nodeName"];
        let redaction = if llm.config.redact {
            Self::redaction(
                failure,
                target,
                &inc.pod_name,
                &json!({"pod": {"node": node}}),
            )
        } else {
            Redaction::default()
        };
        let input = ReflectionInput {
            target: json!({"kind": target.kind, "namespace": target.namespace, "name": target.name}),
            failure: serde_json::to_value(failure).unwrap_or(Value::Null),
            container: self.container_summary(target, &failure.container).await,
            action: command.to_string(),
            verification: verification.to_string(),
            earlier: tried
                .iter()
                .map(Action::render)
                .filter(|c| c != command)
                .collect(),
        };
        let user = build_reflection_prompt(&input, &redaction);
        let c = llm
            .complete_with(
                REFLECTION_SYSTEM_PROMPT,
                &user,
                "kube_reflexion_reflection",
                reflection_schema(),
            )
            .await;
        let verdict = match &c.text {
            Err(e) => Err(e.clone()),
            Ok(text) => parse_reflection(text, &redaction).map_err(|e| e.to_string()),
        };
        let outcome = match &verdict {
            Ok(_) => "reflection".into(),
            Err(e) => format!("reflection refused: {e}"),
        };
        let record = c.record(trial, &llm.config.model, user, outcome);
        if let Err(e) = self.inner.db.record_llm_call(&inc.id, &record).await {
            tracing::warn!(incident = %inc.id, error = %e, "could not record an LLM reflection call");
        }
        verdict.ok()
    }

    async fn prompt_input(
        &self,
        failure: &Failure,
        target: &WorkloadRef,
        ctx: &LlmContext<'_>,
    ) -> PromptInput {
        let cluster = &self.scope.cluster;
        let container = self.container_summary(target, &failure.container).await;
        let events = ctx.evidence["events"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                format!(
                    "{} {}: {}",
                    e["type"].as_str().unwrap_or_default(),
                    e["reason"].as_str().unwrap_or_default(),
                    e["message"].as_str().unwrap_or_default()
                )
            })
            .collect();
        let logs = if failure.kind == FailureKind::CrashLoop {
            cluster
                .crash_logs(&target.namespace, ctx.pod_name, &failure.container)
                .await
                .unwrap_or_default()
        } else {
            String::new()
        };
        let config_keys = if matches!(
            failure.kind,
            FailureKind::CrashLoop | FailureKind::ConfigError
        ) {
            cluster
                .config_keys(&target.namespace)
                .await
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let memory = self
            .inner
            .config
            .llm
            .as_ref()
            .map(|l| l.config.memory)
            .unwrap_or(LlmMemory::Full);
        let failed_attempts: Vec<(String, String)> = if memory == LlmMemory::None {
            Vec::new()
        } else {
            self.inner
                .db
                .episodes(None, Some(ctx.incident_id), 10)
                .await
                .unwrap_or_default()
                .into_iter()
                .rev()
                .filter(|e| !e.success)
                .map(|e| (e.command, e.reflection))
                .collect()
        };
        PromptInput {
            target: json!({"kind": target.kind, "namespace": target.namespace, "name": target.name}),
            failure: serde_json::to_value(failure).unwrap_or(Value::Null),
            container,
            events,
            logs,
            config_keys,
            options: ctx.evidence["options"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|o| o.as_str().map(String::from))
                .collect(),
            rules_diagnosis: ctx.rules_diagnosis.map(String::from),
            lessons: if memory == LlmMemory::Full {
                ctx.lessons.to_vec()
            } else {
                Vec::new()
            },
            failed_attempts,
        }
    }

    /// The gates a planned action passes before policy: valid, in scope, not a repeat, and — for what only a model
    /// proposes — no new image repository, memory within the ceiling, values only from objects that exist.
    pub(super) async fn vet(
        &self,
        action: &Action,
        target: &WorkloadRef,
        tried: &[Action],
    ) -> Result<(), String> {
        self.admissible(action, target)?;
        if tried.contains(action) {
            return Err(format!(
                "`{}` already failed in this incident",
                action.render()
            ));
        }
        match action {
            Action::SetImage {
                image, container, ..
            } => {
                let current = self
                    .scope
                    .cluster
                    .container(target, container)
                    .await
                    .map_err(|e| e.to_string())?;
                let old = current["image"].as_str().unwrap_or_default();
                let same_repo = match (ImageRef::parse(old), ImageRef::parse(image)) {
                    (Ok(a), Ok(b)) => a.full_name() == b.full_name(),
                    _ => false,
                };
                if !same_repo {
                    return Err(format!(
                        "changing the image repository ({old} -> {image}) is never done automatically"
                    ));
                }
                if old == image {
                    return Err(format!(
                        "{container} already runs {image}: the action changes nothing"
                    ));
                }
            }
            Action::SetResources { memory_limit, .. } => {
                let ceiling = self.inner.config.memory_ceiling;
                if parse_bytes(memory_limit).is_some_and(|b| b > ceiling) {
                    return Err(format!(
                        "memory limit {memory_limit} is above the ceiling {}",
                        reflexion_core::quantity::format_bytes(ceiling)
                    ));
                }
            }
            Action::SetEnv { name, from, .. } => {
                let (object, key) = match from {
                    EnvSource::ConfigMapKey { name, key } => (format!("ConfigMap {name}"), key),
                    EnvSource::SecretKey { name, key } => (format!("Secret {name}"), key),
                };
                let exists = self
                    .scope
                    .cluster
                    .env_sources(&target.namespace, key)
                    .await
                    .map_err(|e| e.to_string())?
                    .contains(from);
                if !exists {
                    return Err(format!(
                        "{object} has no key {key} in {}: values only come from objects that exist (for {name})",
                        target.namespace
                    ));
                }
            }
            Action::SetNodeSelector { remove, set, .. } => {
                self.vet_node_selector(target, remove, set).await?
            }
            Action::SetServiceSelector { remove, set, .. } => {
                self.vet_service_selector(target, remove, set).await?
            }
            Action::SetServiceTargetPort {
                port, target_port, ..
            } => {
                self.vet_service_target_port(target, *port, target_port)
                    .await?
            }
            Action::RecreateClaim {
                claim,
                storage_class,
                ..
            } => self.vet_claim(target, claim, storage_class).await?,
            Action::DropCommand { container, .. } => {
                let c = self
                    .scope
                    .cluster
                    .container(target, container)
                    .await
                    .map_err(|e| e.to_string())?;
                if c["command"].as_array().is_none_or(Vec::is_empty) {
                    return Err(format!(
                        "container {container} has no command override: dropping it changes nothing"
                    ));
                }
                let image = c["image"].as_str().unwrap_or_default();
                if let Ok(p) = self.default_process(image).await
                    && p.runs_nothing()
                {
                    return Err(format!(
                        "image {image} runs `{}` by default, which runs nothing without a terminal: dropping the command would not start a program",
                        p.argv().join(" ")
                    ));
                }
            }
            Action::SetProbe {
                container, probe, ..
            } => {
                // Pointing a probe elsewhere, never adding one: a new probe changes when the pod is killed or
                // served, which no failure of a probe that is not there calls for.
                let c = self
                    .scope
                    .cluster
                    .container(target, container)
                    .await
                    .map_err(|e| e.to_string())?;
                if !c[probe.field()].is_object() {
                    return Err(format!(
                        "container {container} has no {} to point elsewhere: kube-reflexion does not add probes",
                        probe.field()
                    ));
                }
            }
            Action::GrantRoleRule { .. } => self.vet_grant(target, action).await?,
            Action::RolloutUndo { .. } | Action::SetRequests { .. } | Action::Escalate { .. } => {}
        }
        Ok(())
    }
}

impl Engine {
    /// A model's selector change must be no more than the rules would make: remove only keys no node has, set only
    /// the one value nodes have for a key.
    async fn vet_node_selector(
        &self,
        target: &WorkloadRef,
        remove: &[String],
        set: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), String> {
        let cluster = &self.scope.cluster;
        let spec = cluster.pod_spec(target).await.map_err(|e| e.to_string())?;
        let selector: std::collections::BTreeMap<String, String> =
            serde_json::from_value(spec["nodeSelector"].clone()).unwrap_or_default();
        let labels: Vec<_> = cluster
            .schedulable_nodes()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|n| n.labels)
            .collect();
        let Some((allowed_remove, allowed_set)) =
            super::rules::scheduling::selector_fix(&selector, &labels)
        else {
            return Err(format!(
                "the nodeSelector of {target} is not one kube-reflexion may change: a node matches it, or which value is meant is ambiguous"
            ));
        };
        if let Some(k) = remove.iter().find(|k| !allowed_remove.contains(k)) {
            return Err(format!(
                "removing nodeSelector key {k} is refused: only keys no node has are removed"
            ));
        }
        if let Some((k, v)) = set.iter().find(|(k, v)| allowed_set.get(*k) != Some(*v)) {
            return Err(format!(
                "setting nodeSelector {k}={v} is refused: only the one value nodes have for a key the selector asks is set"
            ));
        }
        Ok(())
    }

    /// A model's claim replacement must be what the storage rule would do: a claim the workload mounts, unbound,
    /// of a class that does not exist, replaced by one that does.
    async fn vet_claim(
        &self,
        target: &WorkloadRef,
        claim: &str,
        storage_class: &str,
    ) -> Result<(), String> {
        let cluster = &self.scope.cluster;
        let err = |e: crate::cluster::ClusterError| e.to_string();
        if !cluster
            .mounted_claims(target)
            .await
            .map_err(err)?
            .iter()
            .any(|c| c == claim)
        {
            return Err(format!("{target} does not mount claim {claim}"));
        }
        let found = cluster
            .claim(&target.namespace, claim)
            .await
            .map_err(err)?
            .ok_or_else(|| format!("claim {claim} does not exist"))?;
        if let Some(why) = crate::cluster::claim_refusal(&found) {
            return Err(why);
        }
        let classes = cluster.storage_classes().await.map_err(err)?;
        let current = found["spec"]["storageClassName"]
            .as_str()
            .unwrap_or_default();
        if classes.iter().any(|(c, _)| c == current) {
            return Err(format!(
                "claim {claim}'s StorageClass {current} exists: recreating it would not bind it"
            ));
        }
        if !classes.iter().any(|(c, _)| c == storage_class) {
            return Err(format!("StorageClass {storage_class} does not exist"));
        }
        Ok(())
    }
}
