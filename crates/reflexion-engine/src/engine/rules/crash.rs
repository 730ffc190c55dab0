//! Crash loops: read the crashed instance's logs; a variable the program says is missing comes from the only
//! ConfigMap or Secret key of that name; a `command` override the image cannot run (exit 127, or the runtime's
//! StartError 128) is dropped so that the image's own entrypoint runs — unless the registry says that entrypoint
//! runs nothing (a bare shell, as in busybox), when the program is simply not in the image and a person must
//! choose the image that has it; a 403 the program logs for its own ServiceAccount is an RBAC denial (`rbac.rs`);
//! other crashes are handed over with the exit code and the last lines.

use crate::db::Incident;
use crate::engine::{Engine, Plan, Planned};
use reflexion_core::EnvSource;
use reflexion_core::image::{DefaultProcess, ImageRef};
use reflexion_core::logs::missing_env_var;
use reflexion_core::owner::WorkloadRef;
use reflexion_core::strategy::PlanSource;
use reflexion_core::{Action, Failure};
use serde_json::Value;

/// Whether a crash says the command could not be found or executed: the shell's exit 127 ("not found"), or the
/// runtime's StartError (exit 128, "executable file not found").
pub(super) fn command_not_found(failure: &Failure, logs: &str) -> bool {
    let said =
        |text: &str| text.contains("not found") || text.contains("no such file or directory");
    match failure.exit_code {
        Some(127) => true,
        Some(128) => failure.message.contains("StartError") || said(&failure.message) || said(logs),
        _ => false,
    }
}

impl Engine {
    /// What `image` runs by default, from its registry.
    pub(in crate::engine) async fn default_process(
        &self,
        image: &str,
    ) -> Result<DefaultProcess, String> {
        let image = ImageRef::parse(image).map_err(|e| e.to_string())?;
        self.inner
            .registry
            .default_process(&image)
            .await
            .map_err(|e| e.to_string())
    }

    /// The container overrides the image's entrypoint with a command the image cannot run: drop the override.
    async fn plan_drop_command(
        &self,
        failure: &Failure,
        target: &WorkloadRef,
        excerpt: &str,
        tried: &[Action],
    ) -> Option<Planned> {
        let container = self
            .scope
            .cluster
            .container(target, &failure.container)
            .await
            .ok()?;
        let command: Vec<&str> = container["command"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let action = Action::DropCommand {
            target: target.clone(),
            container: failure.container.clone(),
        };
        if command.is_empty() || tried.contains(&action) {
            return None;
        }
        let args = container["args"].as_array().map_or(0, Vec::len);
        let image = container["image"].as_str().unwrap_or(&failure.image);
        let runs = match self.default_process(image).await {
            Ok(p) if p.runs_nothing() => {
                return Some(Planned::Escalate {
                    diagnosis: format!(
                        "container {} of {target} runs `{}`, which image {image} does not contain ({}); the image's own entrypoint is `{}`, which runs nothing without a terminal, so dropping the override would not start a program either",
                        failure.container,
                        command.join(" "),
                        failure.message,
                        p.argv().join(" ")
                    ),
                    suggestion: format!(
                        "the program is not in {image}: set the image that contains `{}`, or build it into this one",
                        command.first().copied().unwrap_or_default()
                    ),
                });
            }
            Ok(p) => format!("`{}`", p.argv().join(" ")),
            Err(e) => format!("unknown: the registry did not say ({e})"),
        };
        Some(Planned::Plan(Box::new(Plan {
            action,
            source: PlanSource::Rules,
            rationale: format!(
                "container {} overrides the image's entrypoint with `{}`{}, which the image cannot run ({}; {excerpt}); without the override the image's own entrypoint runs: {runs}",
                failure.container,
                command.join(" "),
                if args > 0 { format!(" and {args} argument(s)") } else { String::new() },
                failure.message
            ),
            template: "drop_command:image_entrypoint".into(),
            description: "Drop a command override the image cannot run, so the image's own entrypoint runs (needs approval by default)".into(),
            llm: Value::Null,
            payload: None,
            proposal: None,
        })))
    }

    /// The program says an environment variable is missing: take it from the one ConfigMap or Secret key of that
    /// name in the namespace, or say precisely why that is not possible.
    pub(in crate::engine) async fn plan_missing_env(
        &self,
        failure: &Failure,
        target: &WorkloadRef,
        var: &str,
        tried: &[Action],
    ) -> Planned {
        let cluster = &self.scope.cluster;
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
                source: PlanSource::Rules,
                rationale: format!(
                    "container {} exits because {var} is not set (its log says so), and {} in namespace {} is the only object with a key {var}",
                    failure.container,
                    describe(only),
                    target.namespace
                ),
                template: "set_env:only_matching_key".into(),
                description: "Set the missing environment variable from the only ConfigMap or Secret key of that name in the namespace".into(),
                llm: Value::Null,
                payload: None,
                proposal: None,
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
            .scope
            .cluster
            .crash_logs(&inc.namespace, pod, &failure.container)
            .await
            .unwrap_or_default();
        if let Some(var) = missing_env_var(&logs) {
            return self.plan_missing_env(failure, target, &var, tried).await;
        }
        if let Some(denied) = reflexion_core::rbac::denial(&logs) {
            return self.plan_grant(failure, target, &denied, tried).await;
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
        if command_not_found(failure, &logs)
            && let Some(plan) = self
                .plan_drop_command(failure, target, &excerpt, tried)
                .await
        {
            return plan;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use reflexion_core::FailureKind;

    #[test]
    fn only_a_command_the_image_lacks_is_a_missing_command() {
        let crash = |code: Option<i32>, message: &str| Failure {
            kind: FailureKind::CrashLoop,
            reason: "CrashLoopBackOff".into(),
            container: "web".into(),
            init_container: false,
            image: "nginx".into(),
            message: message.into(),
            exit_code: code,
        };
        let cases = [
            (
                crash(Some(127), "last exit code 127 (Error)"),
                "/bin/sh: 1: start-my-server: not found",
                true,
            ),
            (
                crash(
                    Some(128),
                    "last exit code 128 (StartError): exec: \"start\": executable file not found in $PATH",
                ),
                "",
                true,
            ),
            (crash(Some(128), "last exit code 128 (Error)"), "", false),
            (
                crash(Some(1), "last exit code 1 (Error)"),
                "config file not found",
                false,
            ),
            (crash(None, "no exit recorded"), "", false),
        ];
        for (f, logs, want) in cases {
            assert_eq!(command_not_found(&f, logs), want, "{}", f.message);
        }
    }
}
