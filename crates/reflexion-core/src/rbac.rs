//! A program refused by RBAC: its log quotes the API server's 403 (`pods is forbidden: User
//! "system:serviceaccount:NS:SA" cannot list resource "pods" in API group "" in the namespace "NS"`). The fix is the
//! one rule that allows exactly that request, added to the one Role of that namespace already bound to that
//! ServiceAccount. What is never granted: anything at the cluster scope or in another namespace (a ClusterRole),
//! wildcards, the verbs that hand out more power (`escalate`, `bind`, `impersonate`, ...), writes to RBAC objects,
//! and the subresources that reach into pods and nodes (`exec`, `attach`, `portforward`, `proxy`) or mint tokens.
//! Secrets only when the denial names them, as every grant is exactly the denied request.

use crate::names::{is_dns1123_label, is_dns1123_subdomain};
use serde::{Deserialize, Serialize};

/// Logs longer than this are not read further.
const MAX_LOG_BYTES: usize = 16 * 1024;

/// The verbs a grant may carry: those of the resource API, nothing that hands out power.
pub const GRANTABLE_VERBS: [&str; 8] = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

/// One request the API server refused a ServiceAccount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denial {
    /// The ServiceAccount's namespace and name.
    pub namespace: String,
    pub service_account: String,
    pub verb: String,
    /// `""` for the core group.
    pub api_group: String,
    /// The resource, with its subresource (`pods/log`).
    pub resource: String,
    /// The namespace the request was made in; `None` at the cluster scope.
    pub scope: Option<String>,
}

/// The rule of one verb on one resource of one API group, as a Role writes it.
pub fn rule(verb: &str, api_group: &str, resource: &str) -> serde_json::Value {
    serde_json::json!({"apiGroups": [api_group], "resources": [resource], "verbs": [verb]})
}

impl Denial {
    pub fn user(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.namespace, self.service_account
        )
    }

    /// "list pods" / "get deployments.apps".
    pub fn request(&self) -> String {
        if self.api_group.is_empty() {
            format!("{} {}", self.verb, self.resource)
        } else {
            format!("{} {}.{}", self.verb, self.resource, self.api_group)
        }
    }
}

/// The first ServiceAccount denial a log quotes, with its quotes plain or escaped (a JSON body, a structured log).
pub fn denial(logs: &str) -> Option<Denial> {
    let mut end = logs.len().min(MAX_LOG_BYTES);
    while !logs.is_char_boundary(end) {
        end -= 1;
    }
    logs[..end].lines().find_map(|line| {
        let mut plain = line.to_string();
        while plain.contains("\\\"") {
            plain = plain.replace("\\\"", "\"").replace("\\\\", "\\");
        }
        parse(&plain)
    })
}

/// The text between the quotes that follow `prefix` at the start of `s`, and the rest after the closing quote.
fn quoted<'a>(s: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    let rest = s.strip_prefix(prefix)?.strip_prefix('"')?;
    rest.split_once('"')
}

fn parse(line: &str) -> Option<Denial> {
    let at = line.find("User \"system:serviceaccount:")?;
    let (user, rest) = quoted(&line[at..], "User ")?;
    let (namespace, service_account) = user
        .strip_prefix("system:serviceaccount:")?
        .split_once(':')?;
    let rest = rest.strip_prefix(" cannot ")?;
    let (verb, rest) = rest.split_once(' ')?;
    let (resource, rest) = quoted(rest, "resource ")?;
    let (api_group, rest) = quoted(rest, " in API group ")?;
    let scope = if rest.starts_with(" at the cluster scope") {
        None
    } else {
        Some(quoted(rest, " in the namespace ")?.0.to_string())
    };
    Some(Denial {
        namespace: namespace.into(),
        service_account: service_account.into(),
        verb: verb.into(),
        api_group: api_group.into(),
        resource: resource.into(),
        scope,
    })
}

/// Whether a rule of one verb on one resource of one API group may be granted by kube-reflexion; `Err` says why not.
pub fn grantable(verb: &str, api_group: &str, resource: &str) -> Result<(), String> {
    if !GRANTABLE_VERBS.contains(&verb) {
        return Err(format!(
            "the verb {verb:?} is never granted (only {})",
            GRANTABLE_VERBS.join(", ")
        ));
    }
    if !(api_group.is_empty() || is_dns1123_subdomain(api_group)) {
        return Err(format!("{api_group:?} is not an API group"));
    }
    let (plural, sub) = match resource.split_once('/') {
        Some((p, s)) => (p, Some(s)),
        None => (resource, None),
    };
    if !is_dns1123_label(plural) || sub.is_some_and(|s| !is_dns1123_label(s)) {
        return Err(format!(
            "{resource:?} is not one resource (wildcards are never granted)"
        ));
    }
    if let Some(sub) = sub
        && [
            "exec",
            "attach",
            "portforward",
            "proxy",
            "token",
            "approval",
        ]
        .contains(&sub)
    {
        return Err(format!(
            "{resource} reaches into what it names and is never granted"
        ));
    }
    let rbac_object = api_group == "rbac.authorization.k8s.io";
    if rbac_object && !["get", "list", "watch"].contains(&verb) {
        return Err(format!(
            "changing RBAC objects ({verb} {resource}) is never granted"
        ));
    }
    Ok(())
}

/// A RoleBinding, as far as a grant goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub name: String,
    /// `Role` or `ClusterRole`.
    pub role_kind: String,
    pub role_name: String,
    /// The ServiceAccounts it binds, as (namespace, name).
    pub service_accounts: Vec<(String, String)>,
}

/// Where the rule goes: the Role to add it to, or why no Role can take it.
pub fn choose_role(
    denial: &Denial,
    bindings: &[Binding],
    roles: &[String],
) -> Result<String, String> {
    let who = format!(
        "ServiceAccount {}/{}",
        denial.namespace, denial.service_account
    );
    match &denial.scope {
        None => {
            return Err(format!(
                "{who} was refused {} at the cluster scope: only a ClusterRole can allow that, and kube-reflexion never grants one",
                denial.request()
            ));
        }
        Some(ns) if *ns != denial.namespace => {
            return Err(format!(
                "{who} was refused {} in namespace {ns}, not its own: kube-reflexion grants only in the ServiceAccount's namespace",
                denial.request()
            ));
        }
        Some(_) => {}
    }
    grantable(&denial.verb, &denial.api_group, &denial.resource)?;
    let bound: Vec<&Binding> = bindings
        .iter()
        .filter(|b| {
            b.service_accounts
                .iter()
                .any(|(ns, n)| *ns == denial.namespace && *n == denial.service_account)
        })
        .collect();
    let mut candidates: Vec<&str> = bound
        .iter()
        .filter(|b| b.role_kind == "Role" && roles.contains(&b.role_name))
        .map(|b| b.role_name.as_str())
        .collect();
    candidates.sort_unstable();
    candidates.dedup();
    match candidates.as_slice() {
        [one] => Ok((*one).to_string()),
        [] if bound.is_empty() => Err(format!(
            "no RoleBinding in {} binds {who}: creating a Role and binding is a person's decision",
            denial.namespace
        )),
        [] => Err(format!(
            "{who} is bound only to {}: kube-reflexion adds rules only to a Role that exists",
            bound
                .iter()
                .map(|b| format!("{} {}", b.role_kind, b.role_name))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        many => Err(format!(
            "{who} is bound to several Roles ({}): which one should allow {} is a person's decision",
            many.join(", "),
            denial.request()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods(verb: &str, scope: Option<&str>) -> Denial {
        Denial {
            namespace: "default".into(),
            service_account: "lister".into(),
            verb: verb.into(),
            api_group: String::new(),
            resource: "pods".into(),
            scope: scope.map(String::from),
        }
    }

    #[test]
    fn denials_are_read_from_logs_as_programs_print_them() {
        let plain = r#"failed to list pods: pods is forbidden: User "system:serviceaccount:default:lister" cannot list resource "pods" in API group "" in the namespace "default""#;
        let klog = r#"E1206 12:00:00.000000       1 reflector.go:158] "Unhandled Error" err="failed to list *v1.Pod: pods is forbidden: User \"system:serviceaccount:default:lister\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"""#;
        let python = r#"HTTP response body: {"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"deployments.apps \"web\" is forbidden: User \"system:serviceaccount:shop:deployer\" cannot patch resource \"deployments\" in API group \"apps\" in the namespace \"shop\"","reason":"Forbidden","code":403}"#;
        let cluster = r#"nodes is forbidden: User "system:serviceaccount:default:lister" cannot list resource "nodes" in API group "" at the cluster scope"#;
        let cases: Vec<(&str, Option<Denial>)> = vec![
            (plain, Some(pods("list", Some("default")))),
            (klog, Some(pods("list", Some("default")))),
            (
                python,
                Some(Denial {
                    namespace: "shop".into(),
                    service_account: "deployer".into(),
                    verb: "patch".into(),
                    api_group: "apps".into(),
                    resource: "deployments".into(),
                    scope: Some("shop".into()),
                }),
            ),
            (
                cluster,
                Some(Denial {
                    resource: "nodes".into(),
                    ..pods("list", None)
                }),
            ),
            (r#"User "jane" cannot list resource "pods""#, None),
            ("connection refused", None),
        ];
        for (logs, want) in cases {
            assert_eq!(denial(&format!("starting\n{logs}\n")), want, "{logs}");
        }
    }

    #[test]
    fn only_one_plain_request_is_grantable() {
        let cases = [
            ("list", "", "pods", true),
            ("get", "", "pods/log", true),
            ("get", "", "secrets", true),
            ("patch", "apps", "deployments", true),
            ("list", "rbac.authorization.k8s.io", "roles", true),
            ("*", "", "pods", false),
            ("escalate", "rbac.authorization.k8s.io", "roles", false),
            ("bind", "rbac.authorization.k8s.io", "clusterroles", false),
            ("impersonate", "", "users", false),
            ("create", "rbac.authorization.k8s.io", "rolebindings", false),
            ("list", "", "*", false),
            ("create", "", "pods/exec", false),
            ("create", "", "serviceaccounts/token", false),
            ("get", "", "nodes/proxy", false),
            ("list", "*", "pods", false),
        ];
        for (verb, group, resource, want) in cases {
            assert_eq!(
                grantable(verb, group, resource).is_ok(),
                want,
                "{verb} {group} {resource}"
            );
        }
    }

    #[test]
    fn the_rule_goes_to_the_one_role_bound_to_the_account() {
        let binding = |name: &str, kind: &str, role: &str, sa: (&str, &str)| Binding {
            name: name.into(),
            role_kind: kind.into(),
            role_name: role.into(),
            service_accounts: vec![(sa.0.into(), sa.1.into())],
        };
        let lister = ("default", "lister");
        let roles = vec!["lister".to_string(), "reader".to_string()];
        let cases: Vec<(Denial, Vec<Binding>, Result<&str, &str>)> = vec![
            (
                pods("list", Some("default")),
                vec![binding("b", "Role", "lister", lister)],
                Ok("lister"),
            ),
            (
                pods("list", Some("default")),
                vec![binding("b", "Role", "lister", ("default", "other"))],
                Err("no RoleBinding in default binds"),
            ),
            (
                pods("list", Some("default")),
                vec![binding("b", "ClusterRole", "view", lister)],
                Err("bound only to ClusterRole view"),
            ),
            (
                pods("list", Some("default")),
                vec![
                    binding("a", "Role", "lister", lister),
                    binding("b", "Role", "reader", lister),
                ],
                Err("several Roles (lister, reader)"),
            ),
            (
                pods("list", None),
                vec![binding("b", "Role", "lister", lister)],
                Err("at the cluster scope"),
            ),
            (
                pods("list", Some("kube-system")),
                vec![binding("b", "Role", "lister", lister)],
                Err("not its own"),
            ),
            (
                pods("escalate", Some("default")),
                vec![binding("b", "Role", "lister", lister)],
                Err("never granted"),
            ),
        ];
        for (d, bindings, want) in cases {
            let got = choose_role(&d, &bindings, &roles);
            match (&got, want) {
                (Ok(role), Ok(w)) => assert_eq!(role, w),
                (Err(why), Err(w)) => assert!(why.contains(w), "{why} lacks {w}"),
                _ => panic!("{d:?}: {got:?}, wanted {want:?}"),
            }
        }
    }
}
