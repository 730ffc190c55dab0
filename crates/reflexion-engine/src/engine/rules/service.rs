//! A Service that routes nothing: no pod fails, its clients get "connection refused". Either its selector matches
//! no pod — diagnosed from the workloads of its namespace (`reflexion_core::service`), fixed at the selector (medium
//! risk: a Service pointed at the wrong pods sends them traffic) — or it selects pods but one of its ports targets a
//! port name they do not declare — fixed at that port's `targetPort` (the port the pods declare). Verified by the
//! Service keeping ready endpoints with every port resolved. Several candidates, or none, are handed over naming them.

use super::super::diagnose::Examined;
use super::super::{Diagnosis, Engine, EngineError, Plan, Planned};
use crate::cluster::ClusterError;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Service, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ListParams;
use kube::{Api, Client};
use reflexion_core::action::edited_selector;
use reflexion_core::owner::{WorkloadKind, WorkloadRef};
use reflexion_core::service::{
    self, DeclaredPort, Finding, NO_ENDPOINTS, PortFinding, ServicePort, TARGET_PORT_NOT_FOUND,
    Workload, declares, selects,
};
use reflexion_core::strategy::PlanSource;
use reflexion_core::{Action, Failure, FailureKind, Signature};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The Deployments, StatefulSets and DaemonSets of a namespace, as far as selection goes.
async fn workloads(client: &Client, ns: &str) -> Result<Vec<Workload>, ClusterError> {
    let mut out = of_kind::<Deployment>(client, ns, WorkloadKind::Deployment).await?;
    out.extend(of_kind::<StatefulSet>(client, ns, WorkloadKind::StatefulSet).await?);
    out.extend(of_kind::<DaemonSet>(client, ns, WorkloadKind::DaemonSet).await?);
    Ok(out)
}

/// One kind's workloads: name, pod template labels, and selector.
async fn of_kind<K>(
    client: &Client,
    ns: &str,
    kind: WorkloadKind,
) -> Result<Vec<Workload>, ClusterError>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let labels = |v: &Value| serde_json::from_value(v.clone()).unwrap_or_default();
    let mut out = Vec::new();
    for o in Api::<K>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
    {
        let v = serde_json::to_value(o)?;
        out.push(Workload {
            kind,
            name: v["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            pod_labels: labels(&v["spec"]["template"]["metadata"]["labels"]),
            selector: labels(&v["spec"]["selector"]["matchLabels"]),
        });
    }
    Ok(out)
}

/// The ports a pod's containers declare (what `targetPort` names resolve against).
fn declared(pod: &Pod) -> Vec<DeclaredPort> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            Some(DeclaredPort {
                name: p.name.clone().filter(|n| !n.is_empty()),
                number: u16::try_from(p.container_port).ok()?,
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
            })
        })
        .collect()
}

/// A Service's ports, their target as written (absent: the port's own number, as the API defaults it).
fn service_ports(spec: &ServiceSpec) -> Vec<ServicePort> {
    spec.ports
        .iter()
        .flatten()
        .filter_map(|p| {
            let port = u16::try_from(p.port).ok()?;
            Some(ServicePort {
                name: p.name.clone().filter(|n| !n.is_empty()),
                port,
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                target: match &p.target_port {
                    Some(IntOrString::String(s)) => s.clone(),
                    Some(IntOrString::Int(n)) => n.to_string(),
                    None => port.to_string(),
                },
            })
        })
        .collect()
}

/// The first port of a Service whose named target none of the selected pods declares: the EndpointSlice controller
/// cannot resolve it and routes nothing for it. A numeric target is reached whether declared or not, so it is not one.
fn unrouted(spec: &ServiceSpec, pods: &[Vec<DeclaredPort>]) -> Option<ServicePort> {
    service_ports(spec).into_iter().find(|sp| {
        service::port_number(&sp.target).is_none()
            && !pods.iter().any(|d| declares(d, &sp.target, &sp.protocol))
    })
}

/// The rules' one fix for a Service, unless it was tried (then the hand-over says it did not help).
/// `(template, description)` name the rule.
fn once(
    action: Action,
    tried: &[Action],
    rationale: String,
    did_not_help: String,
    suggestion: &str,
    (template, description): (&str, &str),
) -> Planned {
    if tried.contains(&action) {
        return Planned::Escalate {
            diagnosis: did_not_help,
            suggestion: suggestion.into(),
        };
    }
    Planned::Plan(Box::new(Plan {
        action,
        source: PlanSource::Rules,
        rationale,
        template: template.into(),
        description: description.into(),
        llm: Value::Null,
        payload: None,
        proposal: None,
    }))
}

impl Engine {
    /// Look at a Service now: `Failing` while its selector matches no pod; `Quiet` once it matches some (pods that
    /// are selected but not ready fail on their own, and are reported as pods); `NoPods` when it is gone.
    pub(in crate::engine) async fn examine_service(
        &self,
        target: &WorkloadRef,
    ) -> Result<Examined, EngineError> {
        let client = self.scope.cluster.client().clone();
        let ns = &target.namespace;
        let Some(svc) = Api::<Service>::namespaced(client.clone(), ns)
            .get_opt(&target.name)
            .await
            .map_err(ClusterError::from)?
        else {
            return Ok(Examined::NoPods);
        };
        let spec = svc.spec.unwrap_or_default();
        let selector: BTreeMap<String, String> = spec.selector.clone().unwrap_or_default();
        let pods = Api::<Pod>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .map_err(ClusterError::from)?;
        let chosen: Vec<&Pod> = pods
            .items
            .iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && selects(
                        &selector,
                        p.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()),
                    )
            })
            .collect();
        let selected = chosen.len();
        let shown = |m: &BTreeMap<String, String>| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut evidence = json!({
            "service": {"name": target.name, "selector": selector, "type": spec.type_,
                        "ports": spec.ports, "selected_pods": selected},
        });
        if selector.is_empty() {
            return Ok(Examined::Quiet {
                symptoms: Vec::new(),
                evidence,
            });
        }
        if selected > 0 {
            let declared: Vec<Vec<DeclaredPort>> = chosen.iter().map(|p| declared(p)).collect();
            let Some(sp) = unrouted(&spec, &declared) else {
                return Ok(Examined::Quiet {
                    symptoms: Vec::new(),
                    evidence,
                });
            };
            let mut all: Vec<DeclaredPort> = declared.iter().flatten().cloned().collect();
            all.sort();
            all.dedup();
            let shown: Vec<String> = all
                .iter()
                .map(|p| format!("{} ({}/{})", p.as_target(), p.number, p.protocol))
                .collect();
            evidence["declared_ports"] = json!(all);
            evidence["port_finding"] = json!(service::diagnose_port(&sp, &declared));
            let failure = Failure {
                kind: FailureKind::NoEndpoints,
                reason: TARGET_PORT_NOT_FOUND.into(),
                container: String::new(),
                init_container: false,
                image: String::new(),
                message: format!(
                    "service {} port {} targets port {:?}, which none of the {selected} pods it selects declares (they declare {}): its EndpointSlices carry no such port",
                    target.name,
                    sp.port,
                    sp.target,
                    if shown.is_empty() {
                        "no port".to_string()
                    } else {
                        shown.join(", ")
                    }
                ),
                exit_code: None,
            };
            return Ok(self.failing_service(target, failure, evidence));
        }
        let workloads = workloads(&client, ns).await?;
        let finding = service::diagnose(&target.name, &selector, &workloads);
        evidence["workloads"] = json!(workloads);
        evidence["finding"] = json!(finding);
        let failure = Failure {
            kind: FailureKind::NoEndpoints,
            reason: NO_ENDPOINTS.into(),
            container: String::new(),
            init_container: false,
            image: String::new(),
            message: format!(
                "service {} selects no pod: none of the {} pods in namespace {ns} has {}",
                target.name,
                pods.items.len(),
                shown(&selector)
            ),
            exit_code: None,
        };
        Ok(self.failing_service(target, failure, evidence))
    }

    fn failing_service(
        &self,
        target: &WorkloadRef,
        failure: Failure,
        mut evidence: Value,
    ) -> Examined {
        evidence["failure"] = json!(failure);
        let symptoms = vec![Signature::of(&failure)];
        Examined::Failing(Box::new(Diagnosis {
            failure,
            target: target.clone(),
            evidence,
            pod: target.name.clone(),
            symptoms,
            probes: Vec::new(),
        }))
    }

    /// The target port the pods declare, unless it was tried; else hand over naming the ports they declare.
    fn plan_service_port(
        &self,
        failure: &Failure,
        target: &WorkloadRef,
        evidence: &Value,
        tried: &[Action],
    ) -> Planned {
        let finding: Option<PortFinding> =
            serde_json::from_value(evidence["port_finding"].clone()).ok();
        let suggestion =
            "point the Service port's targetPort at a port name or number its pods declare";
        match finding {
            Some(PortFinding::Fix {
                port,
                target: to,
                why,
            }) => {
                let action = Action::SetServiceTargetPort {
                    target: target.clone(),
                    port,
                    target_port: to.clone(),
                };
                once(
                    action,
                    tried,
                    format!("{}; {why}", failure.message),
                    format!(
                        "{}; pointing port {port} at {to} did not give the Service ready endpoints",
                        failure.message
                    ),
                    suggestion,
                    (
                        "set_service_target_port:declared_port",
                        "Point a Service port whose named target its pods do not declare at the port they do declare",
                    ),
                )
            }
            Some(PortFinding::Ambiguous { ports }) => Planned::Escalate {
                diagnosis: format!(
                    "{}; its pods declare several ports and none is named or numbered like the Service port: {}",
                    failure.message,
                    ports.join(", ")
                ),
                suggestion: suggestion.into(),
            },
            Some(PortFinding::NoCandidate) | None => Planned::Escalate {
                diagnosis: format!(
                    "{}; no port of that protocol is declared by every pod it selects",
                    failure.message
                ),
                suggestion: suggestion.into(),
            },
        }
    }

    /// A model's target port must be one every selected pod declares, on a port the Service has.
    pub(in crate::engine) async fn vet_service_target_port(
        &self,
        target: &WorkloadRef,
        port: u16,
        target_port: &str,
    ) -> Result<(), String> {
        let client = self.scope.cluster.client().clone();
        let svc = Api::<Service>::namespaced(client.clone(), &target.namespace)
            .get(&target.name)
            .await
            .map_err(|e| e.to_string())?;
        let spec = svc.spec.unwrap_or_default();
        let Some(sp) = service_ports(&spec).into_iter().find(|p| p.port == port) else {
            return Err(format!("{target} has no port {port}"));
        };
        let selector = spec.selector.unwrap_or_default();
        let pods = Api::<Pod>::namespaced(client, &target.namespace)
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let declared: Vec<Vec<DeclaredPort>> = pods
            .items
            .iter()
            .filter(|p| {
                selects(
                    &selector,
                    p.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()),
                )
            })
            .map(declared)
            .collect();
        if declared.is_empty() {
            return Err(format!("{target} selects no pod"));
        }
        if !declared
            .iter()
            .all(|d| declares(d, target_port, &sp.protocol))
        {
            return Err(format!(
                "not every pod {target} selects declares port {target_port:?} ({})",
                sp.protocol
            ));
        }
        Ok(())
    }

    /// The selector change the diagnosis found, unless it was tried; else hand over naming the candidates.
    pub(in crate::engine) fn plan_service(
        &self,
        failure: &Failure,
        target: &WorkloadRef,
        evidence: &Value,
        tried: &[Action],
    ) -> Planned {
        if failure.reason == TARGET_PORT_NOT_FOUND {
            return self.plan_service_port(failure, target, evidence, tried);
        }
        let finding: Option<Finding> = serde_json::from_value(evidence["finding"].clone()).ok();
        let suggestion =
            "set the Service's selector to the labels of the pods it should send traffic to";
        match finding {
            Some(Finding::Fix {
                kind,
                workload,
                remove,
                set,
                why,
            }) => {
                let action = Action::SetServiceSelector {
                    target: target.clone(),
                    remove,
                    set,
                };
                once(
                    action,
                    tried,
                    format!("{}; {why}", failure.message),
                    format!(
                        "{}; pointing it at the pods of {}/{workload} did not give it ready endpoints",
                        failure.message,
                        kind.kubectl_name()
                    ),
                    suggestion,
                    (
                        "set_service_selector:closest_workload",
                        "Point a Service that selects no pod at the one workload whose pods are one selector key away (or that is named like it)",
                    ),
                )
            }
            Some(Finding::Ambiguous { workloads }) => Planned::Escalate {
                diagnosis: format!(
                    "{}; the pods of several workloads are as close to its selector: {}",
                    failure.message,
                    workloads.join(", ")
                ),
                suggestion: suggestion.into(),
            },
            Some(Finding::NoCandidate) | None => Planned::Escalate {
                diagnosis: format!(
                    "{}; no workload's pods are one selector key away, and no workload is named {}",
                    failure.message, target.name
                ),
                suggestion: suggestion.into(),
            },
        }
    }

    /// A model's selector change must leave a selector that matches the pods of exactly one workload.
    pub(in crate::engine) async fn vet_service_selector(
        &self,
        target: &WorkloadRef,
        remove: &[String],
        set: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        let client = self.scope.cluster.client();
        let selector =
            reflexion_k8s::pods::service_selector(client, &target.namespace, &target.name)
                .await
                .map_err(|e| e.to_string())?;
        let new: BTreeMap<String, String> = serde_json::from_value(Value::Object(edited_selector(
            &json!(selector),
            remove,
            set,
        )))
        .unwrap_or_default();
        let matched: Vec<String> = workloads(client, &target.namespace)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|w| selects(&new, &w.pod_labels))
            .map(|w| format!("{}/{}", w.kind.kubectl_name(), w.name))
            .collect();
        match matched.as_slice() {
            [_] => Ok(()),
            [] => Err(format!(
                "the new selector of {target} matches the pods of no workload"
            )),
            several => Err(format!(
                "the new selector of {target} matches the pods of several workloads: {}",
                several.join(", ")
            )),
        }
    }
}
