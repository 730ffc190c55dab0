//! Crash loops: read the crashed instance's logs; a variable the program says is missing comes from the only
//! ConfigMap or Secret key of that name; other crashes are handed over with the exit code and the last lines.

use crate::db::Incident;
use crate::engine::{Engine, Plan, Planned};
use reflexion_core::EnvSource;
use reflexion_core::logs::missing_env_var;
use reflexion_core::owner::WorkloadRef;
use reflexion_core::{Action, Failure};
use serde_json::Value;

impl Engine {
    /// The program says an environment variable is missing: take it from the one ConfigMap or Secret key of that
    /// name in the namespace, or say precisely why that is not possible.
    pub(in crate::engine) async fn plan_missing_env(
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

    /// A crash loop the built-in rules cannot fix safely: say precisely what happened, with the evidence.
    pub(in crate::engine) async fn diagnose_crash(
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
}
