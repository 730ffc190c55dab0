//! Who makes a request and whether they may, as kube-apiserver's authentication and authorization filters decide:
//! a request with no credentials is simcluster's kubeconfig user, the cluster admin (it listens on loopback); a
//! bearer token must be a ServiceAccount token (`tokens`), else 401; `Impersonate-User` acts as that user, which
//! the admin may and anyone else only with the `impersonate` verb. Everyone but the admin is then authorized by
//! RBAC (`rbac`): discovery is open to every authenticated user (the `system:discovery` role), the rest needs a rule.

use crate::Cluster;
use crate::error::ApiError;
use crate::rbac::{self, Attributes};
use crate::resources;
use axum::http::{HeaderMap, Method, header};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Admin,
    User { name: String, groups: Vec<String> },
}

fn headers_of(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok().map(String::from))
        .collect()
}

/// Authenticate a request, then apply its impersonation headers.
pub fn caller(c: &Cluster, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let authenticated = match headers.get(header::AUTHORIZATION) {
        None => Caller::Admin,
        Some(value) => {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or_else(ApiError::unauthorized)?;
            Caller::User {
                name: c.tokens.authenticate(&c.store, token)?,
                groups: Vec::new(),
            }
        }
    };
    let Some(user) = headers_of(headers, "impersonate-user").into_iter().next() else {
        return Ok(authenticated);
    };
    if let Caller::User { name, .. } = &authenticated {
        let asked = Attributes {
            verb: "impersonate".into(),
            resource: "users".into(),
            name: user.clone(),
            ..Attributes::default()
        };
        rbac::authorize(&c.store, name, &asked)?;
    }
    Ok(Caller::User {
        name: user,
        groups: headers_of(headers, "impersonate-group"),
    })
}

/// What a resource request asks, as the authorizer sees it; `None` for discovery (`/api/v1`, `/apis/apps/v1`).
pub fn attributes(
    group: &str,
    version: &str,
    segs: &[&str],
    method: &Method,
    params: &HashMap<String, String>,
) -> Option<Attributes> {
    let namespaced =
        |plural: &str| resources::find(group, version, plural).filter(|r| r.namespaced);
    let (resource, namespace, rest) = match segs {
        ["namespaces", ns, plural, rest @ ..] if namespaced(plural).is_some() => {
            (*plural, *ns, rest)
        }
        [plural, rest @ ..] => (*plural, "", rest),
        [] => return None,
    };
    // A namespace is itself a named, cluster-scoped object.
    let (namespace, name, sub) = match (resource, rest) {
        ("namespaces", []) if !namespace.is_empty() => ("", namespace, ""),
        (_, []) => (namespace, "", ""),
        (_, [name]) => (namespace, *name, ""),
        (_, [name, sub, ..]) => (namespace, *name, *sub),
    };
    let watch = params.get("watch").is_some_and(|w| w == "true" || w == "1");
    let verb = match (method, name.is_empty()) {
        (&Method::GET, _) if watch => "watch",
        (&Method::GET, false) => "get",
        (&Method::GET, true) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, false) => "delete",
        (&Method::DELETE, true) => "deletecollection",
        _ => return None,
    };
    Some(Attributes {
        verb: verb.into(),
        group: group.into(),
        resource: resource.into(),
        subresource: sub.into(),
        name: name.into(),
        namespace: namespace.into(),
        non_resource_path: None,
    })
}

/// Whether the caller may make this request: `Err` is the 403 to answer.
pub fn authorize(c: &Cluster, caller: &Caller, asked: Option<Attributes>) -> Result<(), ApiError> {
    match (caller, asked) {
        (Caller::Admin, _) | (_, None) => Ok(()),
        (Caller::User { name, .. }, Some(a)) => rbac::authorize(&c.store, name, &a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// verb, resource, subresource, name, namespace.
    type Asked<'a> = Option<(&'a str, &'a str, &'a str, &'a str, &'a str)>;

    #[test]
    fn requests_read_as_the_authorizer_reads_them() {
        let none = HashMap::new();
        let watch = HashMap::from([("watch".to_string(), "true".to_string())]);
        let cases: Vec<(&str, Vec<&str>, Method, &HashMap<String, String>, Asked)> = vec![
            (
                "",
                vec!["namespaces", "default", "pods"],
                Method::GET,
                &none,
                Some(("list", "pods", "", "", "default")),
            ),
            (
                "",
                vec!["pods"],
                Method::GET,
                &watch,
                Some(("watch", "pods", "", "", "")),
            ),
            (
                "",
                vec!["namespaces", "default", "pods", "web", "log"],
                Method::GET,
                &none,
                Some(("get", "pods", "log", "web", "default")),
            ),
            (
                "apps",
                vec!["namespaces", "shop", "deployments", "web"],
                Method::PATCH,
                &none,
                Some(("patch", "deployments", "", "web", "shop")),
            ),
            (
                "",
                vec!["namespaces", "default", "pods"],
                Method::DELETE,
                &none,
                Some(("deletecollection", "pods", "", "", "default")),
            ),
            (
                "",
                vec!["namespaces", "shop"],
                Method::GET,
                &none,
                Some(("get", "namespaces", "", "shop", "")),
            ),
            ("", vec![], Method::GET, &none, None),
        ];
        for (group, segs, method, params, want) in cases {
            let got = attributes(group, "v1", &segs, &method, params);
            let got = got.as_ref().map(|a| {
                (
                    a.verb.as_str(),
                    a.resource.as_str(),
                    a.subresource.as_str(),
                    a.name.as_str(),
                    a.namespace.as_str(),
                )
            });
            assert_eq!(got, want, "{method} {segs:?}");
        }
    }

    #[test]
    fn a_refusal_reads_as_kube_apiserver_words_it() {
        let a = Attributes {
            verb: "list".into(),
            resource: "pods".into(),
            namespace: "default".into(),
            ..Attributes::default()
        };
        let e = rbac::authorize(
            &crate::store::Store::new(),
            "system:serviceaccount:default:lister",
            &a,
        );
        assert_eq!(
            e.map_err(|e| (e.code, e.message)),
            Err((403, r#"pods is forbidden: User "system:serviceaccount:default:lister" cannot list resource "pods" in API group "" in the namespace "default""#.to_string()))
        );
    }
}
