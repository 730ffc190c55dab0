//! Why the API server refused a workload's pods (a ReplicaSet's or Job's `FailedCreate`, its `ReplicaFailure`
//! condition): a ResourceQuota, Pod Security admission, or a missing ServiceAccount — read from the admission
//! plugin's own words into what an SRE needs to act. No pod exists to fix, and none of these may be weakened
//! automatically (a quota or a namespace's security level is a decision, an identity is never created), so each is
//! handed over naming the exact numbers or fields.

use serde::Serialize;

/// The watcher's `error_type` for a workload whose pods the API server refuses.
pub const FAILED_CREATE: &str = "FailedCreate";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Refusal {
    /// `exceeded quota: NAME, requested: r=q,..., used: ..., limited: ...`
    Quota {
        quota: String,
        /// (resource, requested, used, limited) per resource over the quota.
        over: Vec<(String, String, String, String)>,
    },
    /// `failed quota: NAME: must specify r1,r2`
    QuotaUnspecified {
        quota: String,
        resources: Vec<String>,
    },
    /// `violates PodSecurity "LEVEL:VERSION": check (detail), ...`
    PodSecurity { level: String, checks: Vec<String> },
    /// `error looking up service account NS/NAME: serviceaccount "NAME" not found`
    ServiceAccount { namespace: String, name: String },
    /// Anything else the API server said.
    Other { message: String },
}

impl Refusal {
    /// Read the admission error out of an event's or condition's message (`Error creating: pods "x" is
    /// forbidden: ...`, or the bare reason).
    pub fn of(message: &str) -> Self {
        let why = message
            .split_once("is forbidden: ")
            .map_or(message, |(_, w)| w)
            .trim();
        if let Some(rest) = why.strip_prefix("exceeded quota: ")
            && let Some(r) = quota(rest)
        {
            return r;
        }
        if let Some(rest) = why.strip_prefix("failed quota: ")
            && let Some((name, list)) = rest.split_once(": must specify ")
        {
            return Self::QuotaUnspecified {
                quota: name.to_string(),
                resources: list.split(',').map(|s| s.trim().to_string()).collect(),
            };
        }
        if let Some(rest) = why.strip_prefix("violates PodSecurity \"")
            && let Some((level, checks)) = rest.split_once("\": ")
        {
            return Self::PodSecurity {
                level: level.to_string(),
                checks: split_checks(checks),
            };
        }
        if let Some(rest) = why.strip_prefix("error looking up service account ")
            && let Some((account, _)) = rest.split_once(':')
            && let Some((ns, name)) = account.split_once('/')
        {
            return Self::ServiceAccount {
                namespace: ns.to_string(),
                name: name.to_string(),
            };
        }
        Self::Other {
            message: why.chars().take(1000).collect(),
        }
    }

    /// The signature's cause (`failed_create/<cause>`).
    pub fn cause(&self) -> &'static str {
        match self {
            Self::Quota { .. } | Self::QuotaUnspecified { .. } => "quota",
            Self::PodSecurity { .. } => "pod_security",
            Self::ServiceAccount { .. } => "service_account",
            Self::Other { .. } => "other",
        }
    }

    /// What is wrong, with the numbers or fields, for an operator.
    pub fn diagnosis(&self, workload: &str) -> String {
        match self {
            Self::Quota { quota, over } => {
                let each: Vec<String> = over
                    .iter()
                    .map(|(r, asked, used, limit)| {
                        format!("{r}: a pod asks {asked}, {used} is used of {limit}")
                    })
                    .collect();
                format!(
                    "{workload} cannot create its pods: ResourceQuota {quota} would be exceeded ({})",
                    each.join("; ")
                )
            }
            Self::QuotaUnspecified { quota, resources } => format!(
                "{workload} cannot create its pods: ResourceQuota {quota} tracks {} and the pod template does not set {}",
                resources.join(", "),
                if resources.len() == 1 { "it" } else { "them" }
            ),
            Self::PodSecurity { level, checks } => format!(
                "{workload} cannot create its pods: the namespace enforces Pod Security \"{level}\" and the pod template fails {}: {}",
                if checks.len() == 1 {
                    "one check"
                } else {
                    "these checks"
                },
                checks.join("; ")
            ),
            Self::ServiceAccount { namespace, name } => format!(
                "{workload} cannot create its pods: its ServiceAccount {namespace}/{name} does not exist"
            ),
            Self::Other { message } => {
                format!("{workload} cannot create its pods: the API server refuses them: {message}")
            }
        }
    }

    /// What a person can do; never something kube-reflexion does on its own.
    pub fn suggestion(&self) -> String {
        match self {
            Self::Quota { quota, .. } => format!(
                "lower the pod template's requests (or replicas) to fit, or raise ResourceQuota {quota}'s hard limits if the namespace should have more"
            ),
            Self::QuotaUnspecified { resources, .. } => format!(
                "set {} on every container of the pod template (or give the namespace a LimitRange with defaults)",
                resources.join(", ")
            ),
            Self::PodSecurity { .. } => "set those fields in the pod template's securityContext; kube-reflexion never weakens a namespace's security level".into(),
            Self::ServiceAccount { namespace, name } => format!(
                "create ServiceAccount {namespace}/{name} (with only the permissions it needs), or point the pod template at an existing one; identities are never created automatically"
            ),
            Self::Other { .. } => "read the workload's FailedCreate events and fix the pod template".into(),
        }
    }
}

/// `exceeded quota: NAME, requested: a=1,b=2, used: a=0,b=1, limited: a=1,b=2`
fn quota(rest: &str) -> Option<Refusal> {
    let (name, rest) = rest.split_once(", requested: ")?;
    let (requested, rest) = rest.split_once(", used: ")?;
    let (used, limited) = rest.split_once(", limited: ")?;
    let pairs = |s: &str| -> Vec<(String, String)> {
        s.split(',')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect()
    };
    let (requested, used, limited) = (pairs(requested), pairs(used), pairs(limited));
    let find = |list: &[(String, String)], r: &str| {
        list.iter()
            .find(|(k, _)| k == r)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    Some(Refusal::Quota {
        quota: name.to_string(),
        over: requested
            .iter()
            .map(|(r, asked)| (r.clone(), asked.clone(), find(&used, r), find(&limited, r)))
            .collect(),
    })
}

/// `a (x, y), b (z)` → [`a (x, y)`, `b (z)`]: commas inside parentheses stay.
fn split_checks(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0i32);
    for ch in s.chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_admission_refusal_is_read_into_its_numbers_and_fields() {
        let cases = [
            (
                "Error creating: pods \"web-7d9-x\" is forbidden: exceeded quota: compute, requested: requests.memory=300Mi, used: requests.memory=300Mi, limited: requests.memory=512Mi",
                Refusal::Quota {
                    quota: "compute".into(),
                    over: vec![("requests.memory".into(), "300Mi".into(), "300Mi".into(), "512Mi".into())],
                },
            ),
            (
                "pods \"x\" is forbidden: failed quota: compute: must specify limits.memory,requests.memory",
                Refusal::QuotaUnspecified {
                    quota: "compute".into(),
                    resources: vec!["limits.memory".into(), "requests.memory".into()],
                },
            ),
            (
                "Error creating: pods \"api-1\" is forbidden: violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"web\" must set securityContext.allowPrivilegeEscalation=false), runAsNonRoot != true (pod or containers \"a\", \"b\" must set securityContext.runAsNonRoot=true)",
                Refusal::PodSecurity {
                    level: "restricted:latest".into(),
                    checks: vec![
                        "allowPrivilegeEscalation != false (container \"web\" must set securityContext.allowPrivilegeEscalation=false)".into(),
                        "runAsNonRoot != true (pod or containers \"a\", \"b\" must set securityContext.runAsNonRoot=true)".into(),
                    ],
                },
            ),
            (
                "Error creating: pods \"w\" is forbidden: error looking up service account shop/builder: serviceaccount \"builder\" not found",
                Refusal::ServiceAccount { namespace: "shop".into(), name: "builder".into() },
            ),
            (
                "Error creating: Internal error occurred: resource quota evaluation timed out",
                Refusal::Other {
                    message: "Error creating: Internal error occurred: resource quota evaluation timed out".into(),
                },
            ),
        ];
        for (message, want) in cases {
            assert_eq!(Refusal::of(message), want, "{message}");
        }
        let q = Refusal::of(cases_first());
        assert_eq!(
            q.diagnosis("deployment/web -n shop"),
            "deployment/web -n shop cannot create its pods: ResourceQuota compute would be exceeded (requests.memory: a pod asks 300Mi, 300Mi is used of 512Mi)"
        );
        assert_eq!(q.cause(), "quota");
        assert!(q.suggestion().contains("raise ResourceQuota compute"));
    }

    fn cases_first() -> &'static str {
        "pods \"x\" is forbidden: exceeded quota: compute, requested: requests.memory=300Mi, used: requests.memory=300Mi, limited: requests.memory=512Mi"
    }
}
