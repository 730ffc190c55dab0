//! RBAC authorization as kube-apiserver's RBAC authorizer decides it, for access reviews
//! (`authorization.k8s.io/v1` SubjectAccessReview, LocalSubjectAccessReview, and SelfSubjectAccessReview with
//! `Impersonate-User`, which `kubectl auth can-i --as=...` sends): a ClusterRoleBinding grants its ClusterRole's
//! rules everywhere; a RoleBinding grants its Role's or ClusterRole's rules in its own namespace only; a
//! ServiceAccount is the user `system:serviceaccount:NS:NAME` in the groups `system:serviceaccounts`,
//! `system:serviceaccounts:NS` and `system:authenticated`. The cluster's admin (simcluster's kubeconfig, unimpersonated)
//! may do anything.

use serde_json::{Value, json};

/// What a request asks: `namespace` empty for a cluster-scoped request or one across all namespaces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    pub namespace: String,
    pub non_resource_path: Option<String>,
}

impl Attributes {
    /// From a review's `spec.resourceAttributes` or `spec.nonResourceAttributes`.
    pub fn from_review(spec: &Value) -> Self {
        let r = &spec["resourceAttributes"];
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        Self {
            verb: s(if r.is_null() {
                &spec["nonResourceAttributes"]["verb"]
            } else {
                &r["verb"]
            }),
            group: s(&r["group"]),
            resource: s(&r["resource"]),
            subresource: s(&r["subresource"]),
            name: s(&r["name"]),
            namespace: s(&r["namespace"]),
            non_resource_path: spec["nonResourceAttributes"]["path"]
                .as_str()
                .map(String::from),
        }
    }
}

/// The user's groups, as the authenticator would give them.
pub fn groups_of(user: &str, asked: &[String]) -> Vec<String> {
    let mut groups: Vec<String> = asked.to_vec();
    if let Some(rest) = user.strip_prefix("system:serviceaccount:")
        && let Some((ns, _)) = rest.split_once(':')
    {
        groups.push("system:serviceaccounts".into());
        groups.push(format!("system:serviceaccounts:{ns}"));
    }
    groups.push("system:authenticated".into());
    groups
}

fn listed(list: &Value, want: &str) -> bool {
    list.as_array()
        .is_some_and(|l| l.iter().any(|v| v == "*" || v == want))
}

fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    if let Some(path) = &a.non_resource_path {
        let paths = rule["nonResourceURLs"].as_array();
        return listed(&rule["verbs"], &a.verb)
            && paths.is_some_and(|p| {
                p.iter().filter_map(Value::as_str).any(|u| {
                    u == "*"
                        || u == path
                        || u.strip_suffix('*').is_some_and(|pre| path.starts_with(pre))
                })
            });
    }
    let resource = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let names_ok = rule["resourceNames"]
        .as_array()
        .is_none_or(|n| n.is_empty() || n.iter().any(|x| x == a.name.as_str()));
    listed(&rule["verbs"], &a.verb)
        && listed(&rule["apiGroups"], &a.group)
        && listed(&rule["resources"], &resource)
        && names_ok
}

fn subject_matches(subject: &Value, user: &str, groups: &[String]) -> bool {
    match subject["kind"].as_str() {
        Some("User") => subject["name"] == user,
        Some("Group") => groups.iter().any(|g| subject["name"] == g.as_str()),
        Some("ServiceAccount") => {
            let ns = subject["namespace"].as_str().unwrap_or_default();
            let name = subject["name"].as_str().unwrap_or_default();
            user == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

/// The RBAC objects a decision reads.
pub struct Objects<'a> {
    pub roles: &'a [Value],
    pub cluster_roles: &'a [Value],
    pub role_bindings: &'a [Value],
    pub cluster_role_bindings: &'a [Value],
}

fn meta<'v>(o: &'v Value, field: &str) -> &'v str {
    o["metadata"][field].as_str().unwrap_or_default()
}

/// Whether `user` may, and the reason the RBAC authorizer gives when it may.
pub fn decide(
    objects: &Objects<'_>,
    user: &str,
    groups: &[String],
    a: &Attributes,
) -> (bool, String) {
    let role_rules = |kind: &str, name: &str, ns: &str| -> Vec<Value> {
        let found = match kind {
            "ClusterRole" => objects
                .cluster_roles
                .iter()
                .find(|r| meta(r, "name") == name),
            "Role" => objects
                .roles
                .iter()
                .find(|r| meta(r, "name") == name && meta(r, "namespace") == ns),
            _ => None,
        };
        found
            .and_then(|r| r["rules"].as_array().cloned())
            .unwrap_or_default()
    };
    for b in objects.cluster_role_bindings {
        let subjects = b["subjects"].as_array().cloned().unwrap_or_default();
        if !subjects.iter().any(|s| subject_matches(s, user, groups)) {
            continue;
        }
        let role = b["roleRef"]["name"].as_str().unwrap_or_default();
        if role_rules("ClusterRole", role, "")
            .iter()
            .any(|r| rule_allows(r, a))
        {
            return (
                true,
                format!(
                    "RBAC: allowed by ClusterRoleBinding \"{}\" of ClusterRole \"{role}\" to {user}",
                    meta(b, "name")
                ),
            );
        }
    }
    if a.namespace.is_empty() {
        return (false, String::new());
    }
    for b in objects
        .role_bindings
        .iter()
        .filter(|b| meta(b, "namespace") == a.namespace)
    {
        let subjects = b["subjects"].as_array().cloned().unwrap_or_default();
        if !subjects.iter().any(|s| subject_matches(s, user, groups)) {
            continue;
        }
        let kind = b["roleRef"]["kind"].as_str().unwrap_or_default();
        let role = b["roleRef"]["name"].as_str().unwrap_or_default();
        if role_rules(kind, role, &a.namespace)
            .iter()
            .any(|r| rule_allows(r, a))
        {
            return (
                true,
                format!(
                    "RBAC: allowed by RoleBinding \"{}/{}\" of {kind} \"{role}\" to {user}",
                    meta(b, "name"),
                    a.namespace
                ),
            );
        }
    }
    (false, String::new())
}

/// The RBAC objects of a store, for [`decide`].
pub struct Stored {
    roles: Vec<Value>,
    cluster_roles: Vec<Value>,
    role_bindings: Vec<Value>,
    cluster_role_bindings: Vec<Value>,
}

impl Stored {
    pub fn of(store: &crate::store::Store) -> Self {
        use crate::resources::by_kind;
        let list = |k: &str| {
            by_kind(k)
                .map(|rt| store.list(rt, None).0)
                .unwrap_or_default()
        };
        Self {
            roles: list("Role"),
            cluster_roles: list("ClusterRole"),
            role_bindings: list("RoleBinding"),
            cluster_role_bindings: list("ClusterRoleBinding"),
        }
    }

    pub fn objects(&self) -> Objects<'_> {
        Objects {
            roles: &self.roles,
            cluster_roles: &self.cluster_roles,
            role_bindings: &self.role_bindings,
            cluster_role_bindings: &self.cluster_role_bindings,
        }
    }
}

/// Why the authorizer refuses `user` a request, worded as kube-apiserver's `forbiddenMessage`.
pub fn forbidden_message(user: &str, a: &Attributes) -> String {
    if let Some(path) = &a.non_resource_path {
        return format!("User \"{user}\" cannot {} path \"{path}\"", a.verb);
    }
    let resource = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", a.namespace)
    };
    format!(
        "User \"{user}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
        a.verb, a.group
    )
}

/// Authorize a ServiceAccount's (or any non-admin user's) request against the store's RBAC objects: `Err` is
/// the 403 kube-apiserver answers.
pub fn authorize(
    store: &crate::store::Store,
    user: &str,
    a: &Attributes,
) -> Result<(), crate::error::ApiError> {
    let stored = Stored::of(store);
    if decide(&stored.objects(), user, &groups_of(user, &[]), a).0 {
        return Ok(());
    }
    let qualified = if a.group.is_empty() {
        a.resource.clone()
    } else {
        format!("{}.{}", a.resource, a.group)
    };
    Err(crate::error::ApiError::denied(
        &qualified,
        &a.name,
        &forbidden_message(user, a),
    ))
}

/// A review answered: the request's spec, with the decision as its status.
pub fn answer(review: &Value, allowed: bool, reason: &str) -> Value {
    let mut out = review.clone();
    out["status"] = if allowed {
        json!({"allowed": true, "reason": reason})
    } else {
        json!({"allowed": false})
    };
    if let Some(m) = out["metadata"].as_object_mut() {
        m.insert("creationTimestamp".into(), Value::Null);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rbac_grants_exactly_what_the_bindings_say() {
        let roles = vec![
            json!({"metadata": {"name": "pod-reader", "namespace": "shop"},
            "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]}]}),
        ];
        let cluster_roles = vec![json!({"metadata": {"name": "node-reader"},
            "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"], "resourceNames": ["n1"]},
                      {"nonResourceURLs": ["/healthz", "/metrics*"], "verbs": ["get"]}]})];
        let role_bindings = vec![
            json!({"metadata": {"name": "read-pods", "namespace": "shop"},
            "roleRef": {"kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": "shop"}]}),
        ];
        let cluster_role_bindings = vec![json!({"metadata": {"name": "nodes"},
            "roleRef": {"kind": "ClusterRole", "name": "node-reader"},
            "subjects": [{"kind": "Group", "name": "system:serviceaccounts:ops"}]})];
        let objects = Objects {
            roles: &roles,
            cluster_roles: &cluster_roles,
            role_bindings: &role_bindings,
            cluster_role_bindings: &cluster_role_bindings,
        };
        let app = "system:serviceaccount:shop:app";
        let ops = "system:serviceaccount:ops:bot";
        let ask = |verb: &str, resource: &str, sub: &str, ns: &str, name: &str| Attributes {
            verb: verb.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            name: name.into(),
            ..Attributes::default()
        };
        let cases = [
            (app, ask("list", "pods", "", "shop", ""), true),
            (app, ask("get", "pods", "log", "shop", "web"), true),
            (app, ask("delete", "pods", "", "shop", "web"), false),
            (app, ask("list", "pods", "", "other", ""), false),
            (app, ask("list", "pods", "", "", ""), false),
            (app, ask("list", "secrets", "", "shop", ""), false),
            (ops, ask("get", "nodes", "", "", "n1"), true),
            (ops, ask("get", "nodes", "", "", "n2"), false),
            (
                "system:serviceaccount:shop:other",
                ask("list", "pods", "", "shop", ""),
                false,
            ),
        ];
        for (user, a, want) in cases {
            let (allowed, reason) = decide(&objects, user, &groups_of(user, &[]), &a);
            assert_eq!(allowed, want, "{user} {a:?}");
            assert_eq!(reason.is_empty(), !want, "{reason}");
        }
        let health = Attributes {
            verb: "get".into(),
            non_resource_path: Some("/metrics/cadvisor".into()),
            ..Attributes::default()
        };
        assert!(decide(&objects, ops, &groups_of(ops, &[]), &health).0);
        let (_, reason) = decide(
            &objects,
            app,
            &groups_of(app, &[]),
            &ask("list", "pods", "", "shop", ""),
        );
        assert_eq!(
            reason,
            "RBAC: allowed by RoleBinding \"read-pods/shop\" of Role \"pod-reader\" to system:serviceaccount:shop:app"
        );
    }
}
