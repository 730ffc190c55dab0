//! A Service whose selector matches no pod: no pod fails, the Service just has no endpoints and its clients get
//! "connection refused". Which workload it was meant for is read from the workloads of its namespace: one whose pod
//! labels would match if one selector key changed (a value, or a key the pods do not carry), or else one named like
//! the Service. Exactly one such workload is a fix; several, or none, are handed over naming them.

use crate::owner::WorkloadKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The watcher's `error_type` for a Service whose selector matches no pod.
pub const NO_ENDPOINTS: &str = "NoEndpoints";

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
