//! Whether an action may run automatically, needs a human's approval, or is only suggested. Decided by
//! configuration and code, never by anything a planner or a model says about itself.

use crate::action::{Action, Risk};
use crate::owner::WorkloadRef;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Auto,
    Approve,
    Suggest,
}

/// Where a fix to a workload that a GitOps controller owns lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GitopsMode {
    /// In its Git source, as a commit (auto) or a pull request (approve): where the truth lives.
    #[default]
    Git,
    /// On the live object, knowing the controller's next sync may undo it.
    Live,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    Execute,
    NeedsApproval { reason: String },
    SuggestOnly { reason: String },
    Refuse { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "PolicyFile")]
pub struct Policy {
    /// Mode for namespaces not listed in `namespaces`.
    pub default_mode: Mode,
    pub namespaces: BTreeMap<String, Mode>,
    /// Namespaces that are never touched, whatever the mode: the built-in ones (`BUILT_IN_PROTECTED`) and the
    /// file's, or only the file's with `protected_namespaces_replace: true`.
    pub protected_namespaces: Vec<String>,
    /// The file's list replaced the built-in one (kept, so the policy reads back as it was written).
    pub protected_namespaces_replace: bool,
    /// In `auto` mode, actions above this risk still need approval.
    pub max_auto_risk: Risk,
    /// Where fixes to GitOps-owned workloads land, for namespaces not listed in `gitops_namespaces`.
    pub gitops: GitopsMode,
    pub gitops_namespaces: BTreeMap<String, GitopsMode>,
    /// Whether a fix to a CronJob may be proven by a run kube-reflexion starts (`kubectl create job --from`), instead
    /// of waiting for the next scheduled one: a run has whatever effects the job has, so only when this says so.
    pub trigger_cronjob_runs: bool,
}

/// Namespaces no policy file unprotects by listing others: a file that names its own adds to these.
pub const BUILT_IN_PROTECTED: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

impl Default for Policy {
    fn default() -> Self {
        PolicyFile::default().into()
    }
}

/// A policy as its file says it: `protected_namespaces` adds to the built-in list, unless
/// `protected_namespaces_replace` says the file's list is the whole list.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct PolicyFile {
    default_mode: Mode,
    namespaces: BTreeMap<String, Mode>,
    protected_namespaces: Vec<String>,
    protected_namespaces_replace: bool,
    max_auto_risk: Risk,
    gitops: GitopsMode,
    gitops_namespaces: BTreeMap<String, GitopsMode>,
    trigger_cronjob_runs: bool,
}

impl Default for PolicyFile {
    fn default() -> Self {
        Self {
            default_mode: Mode::Auto,
            namespaces: BTreeMap::new(),
            protected_namespaces: Vec::new(),
            protected_namespaces_replace: false,
            max_auto_risk: Risk::Medium,
            gitops: GitopsMode::Git,
            gitops_namespaces: BTreeMap::new(),
            trigger_cronjob_runs: false,
        }
    }
}

impl From<PolicyFile> for Policy {
    fn from(f: PolicyFile) -> Self {
        let mut protected: Vec<String> = if f.protected_namespaces_replace {
            Vec::new()
        } else {
            BUILT_IN_PROTECTED.iter().map(|s| s.to_string()).collect()
        };
        for ns in f.protected_namespaces {
            if !protected.contains(&ns) {
                protected.push(ns);
            }
        }
        Self {
            default_mode: f.default_mode,
            namespaces: f.namespaces,
            protected_namespaces: protected,
            protected_namespaces_replace: f.protected_namespaces_replace,
            max_auto_risk: f.max_auto_risk,
            gitops: f.gitops,
            gitops_namespaces: f.gitops_namespaces,
            trigger_cronjob_runs: f.trigger_cronjob_runs,
        }
    }
}

/// The part of the never-list the action types do not already make unrepresentable (there is no action that
/// deletes namespaces, nodes, volumes or RBAC objects, execs, or changes a pod's privileges; the one RBAC write,
/// `grant_role_rule`, adds one rule to a Role of the workload's own namespace, `rbac::grantable` bounding it): an
/// action may only touch the incident's own workload, never another object, and never one in a protected
/// namespace.
pub fn check_scope(
    action: &Action,
    workload: &WorkloadRef,
    protected: &[String],
) -> Result<(), String> {
    let Some(target) = action.target() else {
        return Ok(());
    };
    if protected.contains(&target.namespace) {
        return Err(format!("namespace {} is protected", target.namespace));
    }
    if target != workload {
        return Err(format!(
            "{} touches {target}, not the incident's workload {workload}",
            action.name()
        ));
    }
    Ok(())
}

/// Limits on how much the engine may change, counted over the last hour of the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// All writes to the cluster, every workload together: the circuit breaker.
    pub actions_per_hour: u32,
    /// Writes to one workload.
    pub workload_actions_per_hour: u32,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            actions_per_hour: 30,
            workload_actions_per_hour: 6,
        }
    }
}

impl Budget {
    /// Whether one more action may run, given the actions of the last hour in total and on this workload.
    pub fn check(&self, last_hour_total: u32, last_hour_workload: u32) -> Result<(), String> {
        if last_hour_total >= self.actions_per_hour {
            return Err(format!(
                "circuit breaker open: {last_hour_total} actions in the last hour, the limit is {}",
                self.actions_per_hour
            ));
        }
        if last_hour_workload >= self.workload_actions_per_hour {
            return Err(format!(
                "attempt budget spent: {last_hour_workload} actions on this workload in the last hour, the limit is {}",
                self.workload_actions_per_hour
            ));
        }
        Ok(())
    }
}

impl Policy {
    /// Where a fix in `namespace` to a GitOps-owned workload lands.
    pub fn gitops_mode(&self, namespace: &str) -> GitopsMode {
        self.gitops_namespaces
            .get(namespace)
            .copied()
            .unwrap_or(self.gitops)
    }

    pub fn decide(&self, action: &Action) -> Decision {
        let Some(target) = action.target() else {
            return Decision::Execute;
        };
        let ns = &target.namespace;
        if self.protected_namespaces.iter().any(|p| p == ns) {
            return Decision::Refuse {
                reason: format!("namespace {ns} is protected"),
            };
        }
        match self
            .namespaces
            .get(ns)
            .copied()
            .unwrap_or(self.default_mode)
        {
            Mode::Suggest => Decision::SuggestOnly {
                reason: format!("namespace {ns} is in suggest mode"),
            },
            Mode::Approve => Decision::NeedsApproval {
                reason: format!("namespace {ns} requires approval"),
            },
            Mode::Auto if action.risk() > self.max_auto_risk => Decision::NeedsApproval {
                reason: format!(
                    "{} is {:?} risk, above the automatic limit {:?}",
                    action.name(),
                    action.risk(),
                    self.max_auto_risk
                ),
            },
            Mode::Auto => Decision::Execute,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::owner::{WorkloadKind, WorkloadRef};

    fn set_image(ns: &str) -> Action {
        Action::SetImage {
            target: WorkloadRef::new(WorkloadKind::Deployment, ns, "web"),
            container: "web".into(),
            image: "nginx:1.27".into(),
        }
    }
    /// A medium-risk action on a bare pod (its resources change by recreating it).
    fn recreate(ns: &str) -> Action {
        Action::SetResources {
            target: WorkloadRef::new(WorkloadKind::Pod, ns, "p"),
            container: "p".into(),
            memory_limit: "256Mi".into(),
            memory_request: None,
        }
    }

    #[test]
    fn decision_table() {
        let strict = Policy {
            namespaces: BTreeMap::from([
                ("prod".to_string(), Mode::Approve),
                ("audit".to_string(), Mode::Suggest),
            ]),
            max_auto_risk: Risk::Low,
            ..Policy::default()
        };
        let escalate = Action::Escalate {
            diagnosis: "d".into(),
            suggestion: "s".into(),
        };
        let cases = [
            (Policy::default(), set_image("default"), "execute"),
            (Policy::default(), recreate("default"), "execute"),
            (Policy::default(), set_image("kube-system"), "refuse"),
            (Policy::default(), escalate.clone(), "execute"),
            (strict.clone(), set_image("default"), "execute"),
            (strict.clone(), recreate("default"), "needs_approval"),
            (strict.clone(), set_image("prod"), "needs_approval"),
            (strict.clone(), set_image("audit"), "suggest_only"),
            (strict.clone(), set_image("kube-public"), "refuse"),
            (strict, escalate, "execute"),
        ];
        for (policy, action, want) in cases {
            let got = serde_json::to_value(policy.decide(&action)).unwrap_or_default();
            assert_eq!(got["decision"], want, "{action:?}");
        }
    }

    #[test]
    fn actions_may_only_touch_the_incidents_workload() {
        let web = WorkloadRef::new(WorkloadKind::Deployment, "shop", "web");
        let protected = Policy::default().protected_namespaces;
        let on = |target: WorkloadRef| Action::SetImage {
            target,
            container: "web".into(),
            image: "nginx:1.27".into(),
        };
        let cases = [
            (on(web.clone()), true),
            (
                on(WorkloadRef::new(WorkloadKind::Deployment, "shop", "api")),
                false,
            ),
            (
                on(WorkloadRef::new(WorkloadKind::Deployment, "other", "web")),
                false,
            ),
            (
                on(WorkloadRef::new(WorkloadKind::StatefulSet, "shop", "web")),
                false,
            ),
            (
                Action::Escalate {
                    diagnosis: "d".into(),
                    suggestion: "s".into(),
                },
                true,
            ),
        ];
        for (action, ok) in cases {
            assert_eq!(
                check_scope(&action, &web, &protected).is_ok(),
                ok,
                "{action:?}"
            );
        }
        let system = WorkloadRef::new(WorkloadKind::Deployment, "kube-system", "coredns");
        assert_eq!(
            check_scope(&on(system.clone()), &system, &protected),
            Err("namespace kube-system is protected".to_string())
        );
    }

    #[test]
    fn budgets() {
        let b = Budget {
            actions_per_hour: 3,
            workload_actions_per_hour: 2,
        };
        for (total, workload, ok) in [
            (0, 0, true),
            (2, 1, true),
            (3, 0, false),
            (1, 2, false),
            (10, 10, false),
        ] {
            assert_eq!(b.check(total, workload).is_ok(), ok, "{total} {workload}");
        }
        assert!(
            b.check(3, 0)
                .is_err_and(|e| e.starts_with("circuit breaker open: 3 actions"))
        );
        assert!(
            b.check(0, 2)
                .is_err_and(|e| e.starts_with("attempt budget spent"))
        );
    }

    #[test]
    fn policy_files_are_strict() {
        let ok: Policy =
            serde_json::from_str(r#"{"default_mode":"approve","namespaces":{"dev":"auto"}}"#)
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (ok.default_mode, ok.protected_namespaces.len()),
            (Mode::Approve, 3)
        );
        assert!(serde_json::from_str::<Policy>(r#"{"default_mode":"yolo"}"#).is_err());
        // A file's protected namespaces add to the built-in ones; replacing them must be said.
        let cases: [(&str, &[&str]); 4] = [
            (r#"{}"#, &["kube-system", "kube-public", "kube-node-lease"]),
            (
                r#"{"protected_namespaces": ["payments", "kube-system"]}"#,
                &["kube-system", "kube-public", "kube-node-lease", "payments"],
            ),
            (
                r#"{"protected_namespaces": ["payments"], "protected_namespaces_replace": true}"#,
                &["payments"],
            ),
            (r#"{"protected_namespaces_replace": true}"#, &[]),
        ];
        for (text, want) in cases {
            let p: Policy = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(p.protected_namespaces, want, "{text}");
            let again: Policy =
                serde_json::from_str(&serde_json::to_string(&p).unwrap_or_default())
                    .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(again, p, "reads back as written");
        }
        assert!(serde_json::from_str::<Policy>(r#"{"protected_namespace": ["x"]}"#).is_err());
        let live: Policy =
            serde_json::from_str(r#"{"gitops":"git","gitops_namespaces":{"lab":"live"}}"#)
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(live.gitops_mode("lab"), GitopsMode::Live);
        assert_eq!(live.gitops_mode("shop"), GitopsMode::Git);
        assert_eq!(Policy::default().gitops_mode("shop"), GitopsMode::Git);
        assert!(serde_json::from_str::<Policy>(r#"{"gitops":"push"}"#).is_err());
        assert!(serde_json::from_str::<Policy>(r#"{"unknown":1}"#).is_err());
    }
}
