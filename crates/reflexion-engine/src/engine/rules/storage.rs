//! Pods waiting on a PersistentVolumeClaim. A claim that can never bind because its StorageClass does not exist is
//! replaced by the same claim of the default class (or the only one): unbound, it holds no data. A claim that is
//! missing, bound, or Pending for another reason is handed over. Replacing a claim is high risk: by default it waits
//! for an operator's approval, and a bound claim is never deleted.

use super::{Engine, Plan, Planned};
use reflexion_core::owner::WorkloadRef;
use reflexion_core::strategy::PlanSource;
use reflexion_core::{Action, Failure};
use serde_json::Value;

/// What to do about one claim the workload mounts.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ClaimFix {
    /// Recreate it with this class.
    Recreate { class: String },
    /// Nothing kube-reflexion may do; why.
    HandOver(String),
    /// The claim is fine (bound, or of a class that exists): not the one the pod waits on.
    Fine,
}

/// Judge one claim against the StorageClasses that exist: `(name, is default)`.
pub(super) fn claim_fix(claim: Option<&Value>, name: &str, classes: &[(String, bool)]) -> ClaimFix {
    let Some(claim) = claim else {
        return ClaimFix::HandOver(format!(
            "claim {name} does not exist: create it (kube-reflexion does not invent storage)"
        ));
    };
    if let Some(why) = crate::cluster::claim_refusal(claim) {
        return if claim["status"]["phase"] == "Bound" {
            ClaimFix::Fine
        } else {
            ClaimFix::HandOver(why)
        };
    }
    let class = claim["spec"]["storageClassName"]
        .as_str()
        .unwrap_or_default();
    if class.is_empty() {
        return ClaimFix::HandOver(format!(
            "claim {name} names no StorageClass and there is no default one: create a default StorageClass or a volume for it"
        ));
    }
    if classes.iter().any(|(c, _)| c == class) {
        return ClaimFix::Fine;
    }
    let defaults: Vec<&String> = classes.iter().filter(|(_, d)| *d).map(|(c, _)| c).collect();
    let chosen = match (defaults.as_slice(), classes) {
        ([only_default], _) => Some((*only_default).clone()),
        ([], [(only, _)]) => Some(only.clone()),
        _ => None,
    };
    match chosen {
        Some(class) => ClaimFix::Recreate { class },
        None => ClaimFix::HandOver(format!(
            "claim {name} asks for StorageClass {class}, which does not exist, and there is no single default class to use instead (classes: {})",
            if classes.is_empty() {
                "none".to_string()
            } else {
                classes
                    .iter()
                    .map(|(c, _)| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )),
    }
}

impl Engine {
    /// The workload waits on a claim: recreate an unbound claim of a missing class with the default one.
    pub(super) async fn plan_claim(
        &self,
        failure: &Failure,
        target: &WorkloadRef,
        tried: &[Action],
    ) -> Planned {
        let cluster = &self.scope.cluster;
        let read = async {
            let claims = cluster.mounted_claims(target).await?;
            let classes = cluster.storage_classes().await?;
            let mut found = Vec::new();
            for name in claims {
                let claim = cluster.claim(&target.namespace, &name).await?;
                found.push((name, claim));
            }
            Ok::<_, crate::cluster::ClusterError>((found, classes))
        };
        let (claims, classes) = match read.await {
            Ok(x) => x,
            Err(e) => {
                return Planned::Escalate {
                    diagnosis: format!(
                        "{target} waits on a PersistentVolumeClaim ({}), and reading its claims failed: {e}",
                        failure.message
                    ),
                    suggestion: "check the claims the pod mounts and the StorageClasses".into(),
                };
            }
        };
        let mut handed_over = Vec::new();
        for (name, claim) in &claims {
            match claim_fix(claim.as_ref(), name, &classes) {
                ClaimFix::Fine => {}
                ClaimFix::HandOver(why) => handed_over.push(why),
                ClaimFix::Recreate { class } => {
                    let action = Action::RecreateClaim {
                        target: target.clone(),
                        claim: name.clone(),
                        storage_class: class.clone(),
                    };
                    if tried.contains(&action) {
                        handed_over.push(format!(
                            "recreating claim {name} with class {class} was tried already"
                        ));
                        continue;
                    }
                    let missing = claim
                        .as_ref()
                        .and_then(|c| c["spec"]["storageClassName"].as_str())
                        .unwrap_or_default()
                        .to_string();
                    return Planned::Plan(Box::new(Plan {
                        action,
                        source: PlanSource::Rules,
                        rationale: format!(
                            "{target} waits on claim {name}, which can never bind: its StorageClass {missing} does not exist; the claim is unbound (it holds no data), so it is recreated as it was with class {class}, the {}",
                            if classes.iter().any(|(c, d)| *d && *c == class) { "default one" } else { "only one there is" }
                        ),
                        template: "recreate_claim:default_class".into(),
                        description: "Recreate an unbound claim of a StorageClass that does not exist with the default class (needs approval by default)".into(),
                        llm: Value::Null,
                        payload: None,
                        proposal: None,
                    }));
                }
            }
        }
        Planned::Escalate {
            diagnosis: format!(
                "{target} cannot be scheduled: {}; {}",
                failure.message,
                if handed_over.is_empty() {
                    format!("its claims ({}) look bound or bindable", claims.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", "))
                } else {
                    handed_over.join("; ")
                }
            ),
            suggestion: "create or bind the PersistentVolumeClaim the pod mounts; kube-reflexion never deletes a bound claim".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_an_unbound_claim_of_a_missing_class_is_recreated() {
        let claim = |class: Option<&str>, phase: &str| {
            json!({"metadata": {"name": "data"}, "spec": {"storageClassName": class, "accessModes": ["ReadWriteOnce"]},
                   "status": {"phase": phase}})
        };
        let standard = vec![("standard".to_string(), true), ("fast".to_string(), false)];
        let only = vec![("local".to_string(), false)];
        let two_plain = vec![("a".to_string(), false), ("b".to_string(), false)];
        let cases: Vec<(Option<Value>, &Vec<(String, bool)>, &str)> = vec![
            (
                Some(claim(Some("premium-ssd"), "Pending")),
                &standard,
                "recreate standard",
            ),
            (
                Some(claim(Some("premium-ssd"), "Pending")),
                &only,
                "recreate local",
            ),
            (
                Some(claim(Some("premium-ssd"), "Pending")),
                &two_plain,
                "hand over",
            ),
            (Some(claim(Some("premium-ssd"), "Bound")), &standard, "fine"),
            (Some(claim(Some("fast"), "Pending")), &standard, "fine"),
            (Some(claim(None, "Pending")), &standard, "hand over"),
            (None, &standard, "hand over"),
        ];
        for (c, classes, want) in cases {
            let got = match claim_fix(c.as_ref(), "data", classes) {
                ClaimFix::Recreate { class } => format!("recreate {class}"),
                ClaimFix::HandOver(_) => "hand over".into(),
                ClaimFix::Fine => "fine".into(),
            };
            assert_eq!(got, want, "{c:?} {classes:?}");
        }
        // A bound claim is refused in any case by the executor's own check.
        let bound = json!({"metadata": {"name": "data"}, "spec": {"volumeName": "pv-1"}, "status": {"phase": "Bound"}});
        assert!(crate::cluster::claim_refusal(&bound).is_some());
    }
}
