//! A Service that selects no pod: no pod fails, its clients get "connection refused". Diagnosed from the Service
//! and the workloads of its namespace (`reflexion_core::service`), fixed at the Service's selector (medium risk:
//! a Service pointed at the wrong pods sends them traffic), verified by the Service keeping ready endpoints. Several
//! candidates, or none, are handed over naming them.

use super::super::diagnose::Examined;
use super::super::{Diagnosis, Engine, EngineError, Plan, Planned};
use crate::cluster::ClusterError;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::ListParams;
use kube::{Api, Client};
use reflexion_core::action::edited_selector;
use reflexion_core::owner::{WorkloadKind, WorkloadRef};
use reflexion_core::service::{self, Finding, NO_ENDPOINTS, Workload, selects};
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
        let selector: BTreeMap<String, String> = spec.selector.unwrap_or_default();
        let pods = Api::<Pod>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .map_err(ClusterError::from)?;
        let selected = pods
            .items
            .iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && selects(
                        &selector,
                        p.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()),
                    )
            })
            .count();
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
        if selected > 0 || selector.is_empty() {
            return Ok(Examined::Quiet {
                symptoms: Vec::new(),
                evidence,
            });
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
        evidence["failure"] = json!(failure);
        let symptoms = vec![Signature::of(&failure)];
        Ok(Examined::Failing(Box::new(Diagnosis {
            failure,
            target: target.clone(),
            evidence,
            pod: target.name.clone(),
            symptoms,
            probes: Vec::new(),
        })))
    }

    /// The selector change the diagnosis found, unless it was tried; else hand over naming the candidates.
    pub(in crate::engine) fn plan_service(
        &self,
        failure: &Failure,
        target: &WorkloadRef,
        evidence: &Value,
        tried: &[Action],
    ) -> Planned {
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
                if tried.contains(&action) {
                    return Planned::Escalate {
                        diagnosis: format!(
                            "{}; pointing it at the pods of {}/{workload} did not give it ready endpoints",
                            failure.message,
                            kind.kubectl_name()
                        ),
                        suggestion: suggestion.into(),
                    };
                }
                Planned::Plan(Box::new(Plan {
                    action,
                    source: PlanSource::Rules,
                    rationale: format!("{}; {why}", failure.message),
                    template: "set_service_selector:closest_workload".into(),
                    description: "Point a Service that selects no pod at the one workload whose pods are one selector key away (or that is named like it)".into(),
                    llm: Value::Null,
                    payload: None,
                    proposal: None,
                }))
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
