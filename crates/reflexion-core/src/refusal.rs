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

/// One container of a pod template, with the requests it sets (bytes, millicores).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requests {
    pub container: String,
    pub memory: Option<u64>,
    pub cpu: Option<u64>,
}

/// Requests lowered so that every replica fits the quota beside what it already counts: one container's memory
/// and/or cpu request, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Fit {
    pub container: String,
    pub memory: Option<String>,
    pub cpu: Option<String>,
    pub why: String,
}

/// A cut deeper than this share of a container's request is not proposed: nothing here measures what the container
/// uses (no metrics API), and halving a request is already a bet an operator should see.
const MAX_CUT: f64 = 0.5;

/// Lower one container's requests so that all `replicas` pods fit the quota beside everything it counts now
/// (`used` includes this workload's running pods: during a rolling update they stay until the new ones are
/// ready). `Err` says why no fit is proposed.
pub fn fit(
    over: &[(String, String, String, String)],
    replicas: u64,
    containers: &[Requests],
) -> Result<Fit, String> {
    use crate::quantity::{format_bytes, format_millicores, parse_bytes, parse_millicores};
    const MI: u64 = 1024 * 1024;
    let replicas = replicas.max(1);
    let (mut memory, mut cpu, mut chosen, mut why) = (None, None, None::<String>, Vec::new());
    for (resource, _, used, limited) in over {
        let is_memory = matches!(resource.as_str(), "requests.memory" | "memory");
        let is_cpu = matches!(resource.as_str(), "requests.cpu" | "cpu");
        if !is_memory && !is_cpu {
            return Err(format!(
                "the quota is over on {resource}, which lowering requests does not change"
            ));
        }
        let parse = |q: &str| {
            if is_memory {
                parse_bytes(q)
            } else {
                parse_millicores(q)
            }
        };
        let show = |n: u64| {
            if is_memory {
                format_bytes(n)
            } else {
                format_millicores(n)
            }
        };
        let (Some(used), Some(limited)) = (parse(used), parse(limited)) else {
            return Err(format!("the quota's {resource} numbers are unreadable"));
        };
        let request = |c: &Requests| if is_memory { c.memory } else { c.cpu };
        let total: u64 = containers.iter().filter_map(request).sum();
        let per_pod = limited.saturating_sub(used) / replicas;
        let Some(biggest) = containers
            .iter()
            .filter(|c| request(c).is_some_and(|r| r > 0))
            .max_by_key(|c| request(c))
        else {
            return Err(format!("no container sets a {resource} request to lower"));
        };
        let asked = request(biggest).unwrap_or(0);
        let cut = total.saturating_sub(per_pod);
        let mut new = asked.saturating_sub(cut);
        if is_memory {
            new = new / MI * MI;
        }
        if cut == 0 || new == 0 || (new as f64) < asked as f64 * (1.0 - MAX_CUT) {
            return Err(format!(
                "{replicas} pod{} fit beside the {} used of {} only at {} of {resource} each; container {}'s request would go from {} to {}, more than half",
                if replicas == 1 { "" } else { "s" },
                show(used),
                show(limited),
                show(per_pod),
                biggest.container,
                show(asked),
                show(new)
            ));
        }
        if chosen.as_ref().is_some_and(|c| *c != biggest.container) {
            return Err("memory and cpu would have to be lowered on different containers".into());
        }
        chosen = Some(biggest.container.clone());
        why.push(format!(
            "{resource}: {} used of {}, so {replicas} pod{} fit at {} each; container {} from {} to {}",
            show(used),
            show(limited),
            if replicas == 1 { "" } else { "s" },
            show(per_pod),
            biggest.container,
            show(asked),
            show(new)
        ));
        if is_memory {
            memory = Some(show(new));
        } else {
            cpu = Some(show(new));
        }
    }
    Ok(Fit {
        container: chosen.ok_or("the quota names no resource")?,
        memory,
        cpu,
        why: why.join("; "),
    })
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

    #[test]
    fn requests_are_lowered_only_where_every_replica_fits_and_the_cut_is_at_most_half() {
        let mi = |n: u64| n * 1024 * 1024;
        let over = |r: &str, used: &str, limited: &str| {
            vec![(
                r.to_string(),
                String::new(),
                used.to_string(),
                limited.to_string(),
            )]
        };
        let one = |memory: Option<u64>, cpu: Option<u64>| {
            vec![Requests {
                container: "web".into(),
                memory,
                cpu,
            }]
        };
        // (over, replicas, containers, want: (memory, cpu) or the start of why not)
        type Want<'a> = Result<(Option<&'a str>, Option<&'a str>), &'a str>;
        let cases: Vec<(_, u64, Vec<Requests>, Want)> = vec![
            (
                over("requests.memory", "0", "512Mi"),
                1,
                one(Some(mi(600)), None),
                Ok((Some("512Mi"), None)),
            ),
            (
                over("requests.memory", "100Mi", "1Gi"),
                2,
                one(Some(mi(600)), None),
                Ok((Some("462Mi"), None)),
            ),
            (
                over("requests.cpu", "500m", "2"),
                3,
                one(None, Some(700)),
                Ok((None, Some("500m"))),
            ),
            // The existing pod stays during the rollout: 2 x 106Mi, far below half of 300Mi.
            (
                over("requests.memory", "300Mi", "512Mi"),
                2,
                one(Some(mi(300)), None),
                Err("2 pods fit beside the 300Mi used of 512Mi only at 106Mi"),
            ),
            (
                over("limits.memory", "0", "1Gi"),
                1,
                one(Some(mi(300)), None),
                Err("the quota is over on limits.memory"),
            ),
            (
                over("requests.memory", "0", "1Gi"),
                1,
                one(None, Some(100)),
                Err("no container sets a requests.memory request"),
            ),
        ];
        for (over, replicas, containers, want) in cases {
            let got = fit(&over, replicas, &containers);
            match (&got, want) {
                (Ok(f), Ok((m, c))) => {
                    assert_eq!((f.memory.as_deref(), f.cpu.as_deref()), (m, c), "{over:?}");
                    assert_eq!(f.container, "web");
                }
                (Err(why), Err(start)) => assert!(why.starts_with(start), "{why}"),
                _ => panic!("{over:?}: got {got:?}, want {want:?}"),
            }
        }
        // Two containers: the biggest request absorbs the cut.
        let two = vec![
            Requests {
                container: "sidecar".into(),
                memory: Some(mi(100)),
                cpu: None,
            },
            Requests {
                container: "app".into(),
                memory: Some(mi(500)),
                cpu: None,
            },
        ];
        let f =
            fit(&over("requests.memory", "0", "512Mi"), 1, &two).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (f.container.as_str(), f.memory.as_deref()),
            ("app", Some("412Mi"))
        );
    }

    fn cases_first() -> &'static str {
        "pods \"x\" is forbidden: exceeded quota: compute, requested: requests.memory=300Mi, used: requests.memory=300Mi, limited: requests.memory=512Mi"
    }
}
