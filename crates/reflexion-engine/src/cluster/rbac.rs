//! The one write of RBAC: a rule added to a Role (`grant_role_rule`). One JSON patch of the Role's `rules`,
//! guarded by a `test` of the rules it replaces (read back like the other guarded patches), undone only if nobody
//! changed the rules since. And the reads a grant is planned and verified from: the Roles and RoleBindings of a
//! namespace, and a SubjectAccessReview of the denied request.

use super::change::Write;
use super::revert::{Reverted, Snapshot};
use super::template::{json_patch, set_ops};
use super::{Cluster, ClusterError, patch_params};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Api;
use kube::api::{ListParams, Patch, PostParams};
use reflexion_core::rbac::{Binding, Denial};
use serde_json::Value;

const RULES: &str = "/rules";

impl Cluster {
    /// The Role as stored, as JSON.
    pub(super) async fn role(&self, namespace: &str, name: &str) -> Result<Value, ClusterError> {
        let r = Api::<Role>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await?
            .ok_or_else(|| ClusterError::NotFound(format!("role/{name} in {namespace}")))?;
        Ok(serde_json::to_value(r)?)
    }

    /// `grant_role_rule` compiled against the Role as it is now: its rules with `rule` appended. Compiled again
    /// once the rule is there (a restart reading the write back), it is the same write: the rules without it, then
    /// with it.
    pub(super) async fn compile_role_rule(
        &self,
        namespace: &str,
        role: &str,
        rule: Value,
    ) -> Result<Write, ClusterError> {
        let rules = self.role(namespace, role).await?["rules"].clone();
        let mut without: Vec<Value> = rules.as_array().cloned().unwrap_or_default();
        let new = match without.iter().position(|r| *r == rule) {
            Some(i) => {
                without.remove(i);
                rules.clone()
            }
            None => Value::Array(without.iter().cloned().chain([rule]).collect()),
        };
        // A Role without `rules` stays without them when the write is undone.
        let old = if rules.is_null() {
            Value::Null
        } else {
            Value::Array(without)
        };
        Ok(Write::Role {
            name: role.to_string(),
            patch: json_patch(set_ops(RULES, &old, &new))?,
            snapshot: Snapshot::RoleRules {
                namespace: namespace.to_string(),
                role: role.to_string(),
                old,
                new,
            },
        })
    }

    pub(super) async fn patch_role(
        &self,
        namespace: &str,
        name: &str,
        patch: &Patch<Value>,
        dry_run: bool,
    ) -> Result<Value, ClusterError> {
        let r = Api::<Role>::namespaced(self.client.clone(), namespace)
            .patch(name, &patch_params(dry_run), patch)
            .await?;
        Ok(serde_json::to_value(r)?)
    }

    /// Put the rules back, unless someone else changed them since.
    pub(super) async fn revert_role_rules(
        &self,
        namespace: &str,
        role: &str,
        old: &Value,
        new: &Value,
    ) -> Result<Reverted, ClusterError> {
        let now = self.role(namespace, role).await?["rules"].clone();
        if now != *new {
            return Ok(Reverted::Skipped(format!(
                "role/{role}'s rules were changed by someone else"
            )));
        }
        self.patch_role(
            namespace,
            role,
            &json_patch(set_ops(RULES, new, old))?,
            false,
        )
        .await?;
        Ok(Reverted::Done(format!(
            "removed the rule from role/{role} in {namespace}"
        )))
    }

    /// The names of the namespace's Roles, and its RoleBindings as far as a grant goes.
    pub async fn role_bindings(
        &self,
        namespace: &str,
    ) -> Result<(Vec<String>, Vec<Binding>), ClusterError> {
        let lp = ListParams::default();
        let roles = Api::<Role>::namespaced(self.client.clone(), namespace)
            .list(&lp)
            .await?
            .items
            .into_iter()
            .filter_map(|r| r.metadata.name)
            .collect();
        let bindings = Api::<RoleBinding>::namespaced(self.client.clone(), namespace)
            .list(&lp)
            .await?
            .items
            .into_iter()
            .map(|b| Binding {
                name: b.metadata.name.unwrap_or_default(),
                role_kind: b.role_ref.kind,
                role_name: b.role_ref.name,
                service_accounts: b
                    .subjects
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|s| s.kind == "ServiceAccount")
                    .map(|s| (s.namespace.unwrap_or_else(|| namespace.to_string()), s.name))
                    .collect(),
            })
            .collect();
        Ok((roles, bindings))
    }

    /// Whether the API server now allows the denied request (a SubjectAccessReview), and why it says so.
    pub async fn allows(&self, d: &Denial) -> Result<(bool, String), ClusterError> {
        let (resource, subresource) = match d.resource.split_once('/') {
            Some((r, s)) => (r.to_string(), Some(s.to_string())),
            None => (d.resource.clone(), None),
        };
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(d.user()),
                groups: Some(vec![
                    "system:serviceaccounts".into(),
                    format!("system:serviceaccounts:{}", d.namespace),
                    "system:authenticated".into(),
                ]),
                resource_attributes: Some(ResourceAttributes {
                    namespace: d.scope.clone(),
                    verb: Some(d.verb.clone()),
                    group: Some(d.api_group.clone()),
                    resource: Some(resource),
                    subresource,
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answered = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await?;
        let status = answered.status.unwrap_or_default();
        Ok((status.allowed, status.reason.unwrap_or_default()))
    }
}
