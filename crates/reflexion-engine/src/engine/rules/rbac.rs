//! RBAC denials: a crashing program whose log quotes the API server's 403 for its own ServiceAccount is allowed
//! exactly that request, by one rule added to the one Role of its namespace bound to the account (`grant_role_rule`,
//! high risk: a person approves it under the default policy). Everything `reflexion_core::rbac` never grants, a
//! denial for another account, and no or several Roles to add to are handed over with the denial quoted.

use crate::engine::{Engine, Plan, Planned};
use reflexion_core::owner::WorkloadRef;
use reflexion_core::rbac::{Denial, choose_role, denial};
use reflexion_core::strategy::PlanSource;
use reflexion_core::{Action, Failure};
use serde_json::Value;

/// Pods whose logs are read for a denial when a model's grant is checked.
const PODS_READ: usize = 5;

/// The kubelet's longest crash back-off: a container refused before the grant restarts at most this long after.
pub(in crate::engine) const CRASH_BACKOFF_MAX: std::time::Duration =
    std::time::Duration::from_secs(300);

impl Engine {
    /// The pods' ServiceAccount was refused a request (their log says so): one rule allowing exactly that on the
    /// one Role bound to the account, or precisely why not.
    pub(in crate::engine) async fn plan_grant(
        &self,
        failure: &Failure,
        target: &WorkloadRef,
        denied: &Denial,
        tried: &[Action],
    ) -> Planned {
        let quoted = format!(
            "{} may not {} in {} (the API server's 403 in its log)",
            denied.user(),
            denied.request(),
            denied.scope.as_deref().unwrap_or("the cluster scope")
        );
        let hand_over = |why: String| Planned::Escalate {
            diagnosis: format!(
                "container {} of {target} crashes because {quoted}: {why}",
                failure.container
            ),
            suggestion: format!(
                "grant exactly `{}` to {} if it should have it, or change what the program asks for",
                denied.request(),
                denied.user()
            ),
        };
        let account = match self.scope.cluster.pod_spec(target).await {
            Ok(spec) => spec["serviceAccountName"]
                .as_str()
                .unwrap_or("default")
                .to_string(),
            Err(e) => return hand_over(format!("cannot read its pod spec: {e}")),
        };
        if denied.namespace != target.namespace || denied.service_account != account {
            return hand_over(format!(
                "its pods run as ServiceAccount {}/{account}, not the account refused",
                target.namespace
            ));
        }
        let role = match self.role_for(denied, target).await {
            Ok(role) => role,
            Err(why) => return hand_over(why),
        };
        let action = Action::GrantRoleRule {
            target: target.clone(),
            role: role.clone(),
            service_account: account,
            verb: denied.verb.clone(),
            api_group: denied.api_group.clone(),
            resource: denied.resource.clone(),
        };
        if tried.contains(&action) {
            return hand_over(format!(
                "adding that rule to role/{role} did not bring the pods back"
            ));
        }
        Planned::Plan(Box::new(Plan {
            action,
            source: PlanSource::Rules,
            rationale: format!(
                "container {} crashes because {quoted}; role/{role} is the one Role in {} bound to that account, and one rule allows exactly that request and nothing more",
                failure.container, target.namespace
            ),
            template: "grant_role_rule:denied_request".into(),
            description: "Add the one Role rule a ServiceAccount's logged 403 asks for, to the Role bound to it (needs approval by default)".into(),
            llm: Value::Null,
            payload: None,
            proposal: None,
        }))
    }

    /// A model's (or a learned) grant must be exactly what the rules grant for a denial the workload's pods log now.
    pub(in crate::engine) async fn vet_grant(
        &self,
        target: &WorkloadRef,
        action: &Action,
    ) -> Result<(), String> {
        let Some((granted, role)) = action.grant() else {
            return Ok(());
        };
        let cluster = &self.scope.cluster;
        let pods = cluster
            .current_pods(target)
            .await
            .map_err(|e| e.to_string())?;
        let mut denials = Vec::new();
        for pod in pods.iter().take(PODS_READ) {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            let containers = pod
                .spec
                .as_ref()
                .map(|s| s.containers.as_slice())
                .unwrap_or_default();
            for c in containers {
                if let Some(d) = cluster
                    .crash_logs(&target.namespace, name, &c.name)
                    .await
                    .and_then(|logs| denial(&logs))
                {
                    denials.push(d);
                }
            }
        }
        let Some(d) = denials.iter().find(|d| **d == granted) else {
            return Err(format!(
                "no pod of {target} logs a 403 for {} on `{}`: a grant is only ever the request a log shows refused",
                granted.user(),
                granted.request()
            ));
        };
        match self.role_for(d, target).await {
            Ok(r) if r == role => Ok(()),
            Ok(r) => Err(format!(
                "the Role bound to {} is {r}, not {role}",
                granted.user()
            )),
            Err(why) => Err(why),
        }
    }

    /// After a grant: whether the API server now allows the request (a SubjectAccessReview), said as the first
    /// line of the verification; `Ok(None)` for any other action. `Err` is why the grant is not verified.
    pub(in crate::engine) async fn granted(
        &self,
        action: &Action,
    ) -> Result<Option<String>, String> {
        let Some((d, role)) = action.grant() else {
            return Ok(None);
        };
        let ns = d.scope.clone().unwrap_or_default();
        match self.scope.cluster.allows(&d).await {
            Ok((true, why)) => Ok(Some(format!(
                "SubjectAccessReview: {} may {} in {ns} ({why})",
                d.user(),
                d.request(),
            ))),
            Ok((false, _)) => Err(format!(
                "SubjectAccessReview: {} still may not {} in {ns} after the rule was added to role/{role}",
                d.user(),
                d.request(),
            )),
            Err(e) => Err(format!("the SubjectAccessReview failed: {e}")),
        }
    }

    /// The one Role of the target's namespace a rule for this denial goes to, or why there is none.
    async fn role_for(&self, d: &Denial, target: &WorkloadRef) -> Result<String, String> {
        let (roles, bindings) = self
            .scope
            .cluster
            .role_bindings(&target.namespace)
            .await
            .map_err(|e| format!("cannot read the namespace's Roles: {e}"))?;
        choose_role(d, &bindings, &roles)
    }
}
