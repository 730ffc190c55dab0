//! A Service whose selector matches no pod: no pod fails, the Service just has no endpoints and its clients get
//! "connection refused". Which workload it was meant for is read from the workloads of its namespace: one whose pod
//! labels would match if one selector key changed (a value, or a key the pods do not carry), or else one named like
//! the Service. Exactly one such workload is a fix; several, or none, are handed over naming them.
//!
//! A Service that selects pods but names a target port they do not declare (`targetPort: web` where the containers
//! call their port `http`) has endpoints and still routes nothing: the EndpointSlice controller cannot resolve the
//! name and leaves the port out. The port the pods do declare is the fix when there is exactly one to choose.

use crate::owner::WorkloadKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The watcher's `error_type` for a Service whose selector matches no pod.
pub const NO_ENDPOINTS: &str = "NoEndpoints";

/// The failure reason (and the watcher's `error_type`) of a Service port whose named target no selected pod declares.
pub const TARGET_PORT_NOT_FOUND: &str = "TargetPortNotFound";

/// A container port a pod declares.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeclaredPort {
    pub name: Option<String>,
    pub number: u16,
    pub protocol: String,
}

impl DeclaredPort {
    /// What a Service's `targetPort` says to reach it: its name when it has one (resolved per pod by Kubernetes,
    /// so it follows the pods if the number changes), else its number.
    pub fn as_target(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.number.to_string())
    }
}

/// One port of a Service, as far as routing goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: String,
    /// `targetPort` as written: a name, or a number as text.
    pub target: String,
}

/// Which port of the pods a Service port was meant for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum PortFinding {
    /// Point Service port `port` at `target`.
    Fix {
        port: u16,
        target: String,
        why: String,
    },
    /// The pods declare several ports and none is named or numbered like the Service port.
    Ambiguous { ports: Vec<String> },
    /// The pods declare no port of this protocol (every selected pod must declare it).
    NoCandidate,
}

/// A `targetPort` written as a number (`"8080"`), or `None` for a name.
pub fn port_number(target: &str) -> Option<u16> {
    target
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| target.parse().ok())
        .flatten()
        .filter(|n| *n > 0)
}

/// Whether `s` is a port name (IANA_SVC_NAME, as Kubernetes validates it): 1–15 lowercase letters, digits and
/// hyphens, at least one letter, no hyphen at either end or next to another.
pub fn is_port_name(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

/// A `targetPort` as the API writes it: a number, or a name.
pub fn target_value(target: &str) -> serde_json::Value {
    match port_number(target) {
        Some(n) => serde_json::json!(n),
        None => serde_json::json!(target),
    }
}

/// Whether `target` (a Service port's `targetPort`) is declared by a pod declaring `ports`. A number is always
/// reached on the pod's address, declared or not; this asks only whether it is declared.
pub fn declares(ports: &[DeclaredPort], target: &str, protocol: &str) -> bool {
    ports.iter().any(|p| {
        p.protocol == protocol
            && (p.name.as_deref() == Some(target) || p.number.to_string() == target)
    })
}

/// The port of the selected pods (`pods`: each pod's declared ports) a Service port whose target they do not declare
/// was meant for: the one port every pod declares with its protocol, or among several the one named or numbered like
/// the Service port.
pub fn diagnose_port(sp: &ServicePort, pods: &[Vec<DeclaredPort>]) -> PortFinding {
    let Some((first, rest)) = pods.split_first() else {
        return PortFinding::NoCandidate;
    };
    let mut common: Vec<&DeclaredPort> = first
        .iter()
        .filter(|p| p.protocol == sp.protocol && rest.iter().all(|other| other.contains(p)))
        .collect();
    common.sort();
    common.dedup();
    let shown = |p: &DeclaredPort| match &p.name {
        Some(n) => format!("{n} ({})", p.number),
        None => p.number.to_string(),
    };
    let fix = |p: &DeclaredPort, how: &str| PortFinding::Fix {
        port: sp.port,
        target: p.as_target(),
        why: format!(
            "the pods declare no port {:?}; {how} {}",
            sp.target,
            shown(p)
        ),
    };
    match common.as_slice() {
        [] => PortFinding::NoCandidate,
        [only] => fix(only, "the one port they declare is"),
        several => {
            let alike: Vec<&&DeclaredPort> = several
                .iter()
                .filter(|p| (p.name.is_some() && p.name == sp.name) || p.number == sp.port)
                .collect();
            match alike.as_slice() {
                [p] => fix(p, "the port they declare like the Service port is"),
                _ => PortFinding::Ambiguous {
                    ports: several.iter().map(|p| shown(p)).collect(),
                },
            }
        }
    }
}

/// A workload of the Service's namespace, as far as selection goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub name: String,
    /// The labels its pod template gives every pod.
    pub pod_labels: BTreeMap<String, String>,
    /// Its own selector (`spec.selector.matchLabels`): the labels all its pods keep across rollouts.
    pub selector: BTreeMap<String, String>,
}

/// What the selector and the namespace's workloads say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum Finding {
    /// One workload's pods match once these keys are removed and these set.
    Fix {
        kind: WorkloadKind,
        workload: String,
        remove: Vec<String>,
        set: BTreeMap<String, String>,
        /// Why this workload: one key differs, or it is named like the Service.
        why: String,
    },
    /// Several workloads would match as well as each other.
    Ambiguous { workloads: Vec<String> },
    /// No workload is close.
    NoCandidate,
}

fn describe(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The one change of `selector` that makes it match `labels`: a key whose value differs (set it), or a key the
/// labels lack (remove it, if others are left). `None` unless exactly one key stands in the way.
fn one_key_off(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> Option<(Vec<String>, BTreeMap<String, String>)> {
    let off: Vec<&String> = selector
        .iter()
        .filter(|(k, v)| labels.get(*k) != Some(*v))
        .map(|(k, _)| k)
        .collect();
    let [key] = off.as_slice() else {
        return None;
    };
    match labels.get(*key) {
        Some(value) => Some((
            Vec::new(),
            BTreeMap::from([((*key).clone(), value.clone())]),
        )),
        None if selector.len() > 1 => Some((vec![(*key).clone()], BTreeMap::new())),
        None => None,
    }
}

/// Which workload a Service selecting no pod was meant for, and the smallest selector change that selects it.
pub fn diagnose(
    service: &str,
    selector: &BTreeMap<String, String>,
    workloads: &[Workload],
) -> Finding {
    let label = |w: &Workload| format!("{}/{}", w.kind.kubectl_name(), w.name);
    let close: Vec<(&Workload, (Vec<String>, BTreeMap<String, String>))> = workloads
        .iter()
        .filter_map(|w| one_key_off(selector, &w.pod_labels).map(|c| (w, c)))
        .collect();
    match close.as_slice() {
        [(w, (remove, set))] => {
            let what = match (remove.first(), set.iter().next()) {
                (Some(k), _) => format!("its pods have no {k} label"),
                (_, Some((k, v))) => format!("its pods have {k}={v}, not {k}={}", selector[k]),
                _ => String::new(),
            };
            return Finding::Fix {
                kind: w.kind,
                workload: w.name.clone(),
                remove: remove.clone(),
                set: set.clone(),
                why: format!(
                    "selector {} is one key from the pods of {}: {what}",
                    describe(selector),
                    label(w)
                ),
            };
        }
        [] => {}
        several => {
            return Finding::Ambiguous {
                workloads: several.iter().map(|(w, _)| label(w)).collect(),
            };
        }
    }
    let named: Vec<&Workload> = workloads
        .iter()
        .filter(|w| w.name == service && !w.selector.is_empty())
        .collect();
    match named.as_slice() {
        [w] => {
            let remove: Vec<String> = selector
                .keys()
                .filter(|k| !w.selector.contains_key(*k))
                .cloned()
                .collect();
            let set: BTreeMap<String, String> = w
                .selector
                .iter()
                .filter(|(k, v)| selector.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Finding::Fix {
                kind: w.kind,
                workload: w.name.clone(),
                remove,
                set,
                why: format!(
                    "no workload's pods are one key from selector {}; {} is named like the Service and selects its pods by {}",
                    describe(selector),
                    label(w),
                    describe(&w.selector)
                ),
            }
        }
        [] => Finding::NoCandidate,
        several => Finding::Ambiguous {
            workloads: several.iter().map(|w| label(w)).collect(),
        },
    }
}

/// Whether a label selector (equality only, as a Service's is) matches a set of labels. An empty selector
/// matches nothing here: a Service without one is not managed by the endpoints controller.
pub fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn deploy(name: &str, labels: &[(&str, &str)]) -> Workload {
        Workload {
            kind: WorkloadKind::Deployment,
            name: name.into(),
            pod_labels: m(labels),
            selector: m(labels),
        }
    }

    fn fix(
        name: &str,
        remove: &[&str],
        set: &[(&str, &str)],
    ) -> (String, Vec<String>, BTreeMap<String, String>) {
        (
            name.into(),
            remove.iter().map(|s| s.to_string()).collect(),
            m(set),
        )
    }

    #[test]
    fn the_workload_a_service_was_meant_for() {
        type Want = Option<(String, Vec<String>, BTreeMap<String, String>)>;
        let cases: Vec<(&str, &str, Vec<(&str, &str)>, Vec<Workload>, Want)> = vec![
            (
                "one value differs: the issue's task (app: web, pods app: nginx)",
                "nginx",
                vec![("app", "web")],
                vec![deploy("nginx", &[("app", "nginx")])],
                Some(fix("nginx", &[], &[("app", "nginx")])),
            ),
            (
                "one value of two differs; the other key narrows to one workload",
                "api",
                vec![("app", "shop"), ("tier", "backend")],
                vec![
                    deploy("api", &[("app", "shop"), ("tier", "api")]),
                    deploy("db", &[("app", "store"), ("tier", "db")]),
                ],
                Some(fix("api", &[], &[("tier", "api")])),
            ),
            (
                "a key the pods lack is removed when another key remains",
                "web",
                vec![("app", "web"), ("version", "v2")],
                vec![deploy("frontend", &[("app", "web")])],
                Some(fix("frontend", &["version"], &[])),
            ),
            (
                "two workloads one key off: ambiguous",
                "web",
                vec![("app", "web")],
                vec![deploy("a", &[("app", "a")]), deploy("b", &[("app", "b")])],
                None,
            ),
            (
                "none close, but one named like the Service: its selector, keys it lacks removed",
                "cart",
                vec![("name", "cart"), ("role", "x")],
                vec![
                    deploy("cart", &[("app", "cart")]),
                    deploy("other", &[("team", "z")]),
                ],
                Some(fix("cart", &["name", "role"], &[("app", "cart")])),
            ),
            (
                "nothing close and nothing named alike",
                "ghost",
                vec![("app", "ghost"), ("tier", "x")],
                vec![deploy("web", &[("app", "web")])],
                None,
            ),
            (
                "a one-key selector whose key the pods lack is not emptied",
                "svc",
                vec![("component", "web")],
                vec![deploy("web2", &[("app", "web")])],
                None,
            ),
        ];
        for (what, service, selector, workloads, want) in cases {
            let got = diagnose(service, &m(&selector), &workloads);
            match (&got, &want) {
                (
                    Finding::Fix {
                        workload,
                        remove,
                        set,
                        ..
                    },
                    Some(w),
                ) => assert_eq!(
                    &(workload.clone(), remove.clone(), set.clone()),
                    w,
                    "{what}"
                ),
                (Finding::Ambiguous { .. } | Finding::NoCandidate, None) => {}
                _ => panic!("{what}: got {got:?}, want {want:?}"),
            }
        }
        assert_eq!(
            diagnose(
                "web",
                &m(&[("app", "web")]),
                &[deploy("a", &[("app", "a")]), deploy("b", &[("app", "b")])]
            ),
            Finding::Ambiguous {
                workloads: vec!["deployment/a".into(), "deployment/b".into()]
            }
        );
        let Finding::Fix { why, .. } = diagnose(
            "nginx",
            &m(&[("app", "web")]),
            &[deploy("nginx", &[("app", "nginx")])],
        ) else {
            panic!("a fix");
        };
        assert_eq!(
            why,
            "selector app=web is one key from the pods of deployment/nginx: its pods have app=nginx, not app=web"
        );
    }

    #[test]
    fn the_port_a_service_port_was_meant_for() {
        let dp = |name: Option<&str>, number: u16| DeclaredPort {
            name: name.map(str::to_string),
            number,
            protocol: "TCP".into(),
        };
        let sp = |name: Option<&str>, port: u16, target: &str| ServicePort {
            name: name.map(str::to_string),
            port,
            protocol: "TCP".into(),
            target: target.into(),
        };
        let udp = DeclaredPort {
            protocol: "UDP".into(),
            ..dp(Some("dns"), 53)
        };
        let cases: Vec<(
            &str,
            ServicePort,
            Vec<Vec<DeclaredPort>>,
            Option<(u16, &str)>,
        )> = vec![
            (
                "the one port, by its name",
                sp(Some("web"), 80, "web"),
                vec![vec![dp(Some("http"), 80)], vec![dp(Some("http"), 80)]],
                Some((80, "http")),
            ),
            (
                "the one port has no name: its number",
                sp(None, 80, "web"),
                vec![vec![dp(None, 8080)]],
                Some((80, "8080")),
            ),
            (
                "another protocol's port is not a candidate",
                sp(None, 80, "web"),
                vec![vec![dp(Some("http"), 8080), udp.clone()]],
                Some((80, "http")),
            ),
            (
                "several: the one named like the Service port",
                sp(Some("metrics"), 9000, "prom"),
                vec![vec![dp(Some("http"), 8080), dp(Some("metrics"), 9090)]],
                Some((9000, "metrics")),
            ),
            (
                "several: the one numbered like the Service port",
                sp(None, 8080, "web"),
                vec![vec![dp(Some("http"), 8080), dp(Some("admin"), 9090)]],
                Some((8080, "http")),
            ),
            (
                "several and none alike",
                sp(None, 80, "web"),
                vec![vec![dp(Some("http"), 8080), dp(Some("admin"), 9090)]],
                None,
            ),
            (
                "a port only some pods declare is not one to route to",
                sp(None, 80, "web"),
                vec![vec![dp(Some("http"), 8080)], vec![dp(Some("http2"), 8081)]],
                None,
            ),
            ("no pods", sp(None, 80, "web"), vec![], None),
            (
                "pods that declare nothing",
                sp(None, 80, "web"),
                vec![vec![]],
                None,
            ),
        ];
        for (what, service_port, pods, want) in cases {
            match (diagnose_port(&service_port, &pods), want) {
                (PortFinding::Fix { port, target, .. }, Some((p, t))) => {
                    assert_eq!((port, target.as_str()), (p, t), "{what}")
                }
                (PortFinding::Ambiguous { .. } | PortFinding::NoCandidate, None) => {}
                (got, want) => panic!("{what}: got {got:?}, want {want:?}"),
            }
        }
        let PortFinding::Fix { why, .. } =
            diagnose_port(&sp(Some("web"), 80, "web"), &[vec![dp(Some("http"), 80)]])
        else {
            panic!("a fix")
        };
        assert_eq!(
            why,
            "the pods declare no port \"web\"; the one port they declare is http (80)"
        );
        assert!(declares(&[dp(Some("http"), 80)], "http", "TCP"));
        assert!(declares(&[dp(Some("http"), 80)], "80", "TCP"));
        assert!(!declares(&[dp(Some("http"), 80)], "web", "TCP"));
        assert!(!declares(&[udp], "dns", "TCP"));
    }

    #[test]
    fn an_empty_selector_selects_nothing() {
        assert!(!selects(&m(&[]), &m(&[("app", "x")])));
        assert!(selects(
            &m(&[("app", "x")]),
            &m(&[("app", "x"), ("pod-template-hash", "1")])
        ));
        assert!(!selects(
            &m(&[("app", "x"), ("tier", "y")]),
            &m(&[("app", "x")])
        ));
    }
}
