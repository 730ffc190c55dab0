//! A bare pod's spec cannot change in place except its images: resources and env change by recreating the pod with
//! its whole spec preserved but the fix, after the old one has gone (its grace period, plus a margin).

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject, PostParams, Preconditions};
use kube::runtime::wait::{await_condition, conditions};
use reflexion_core::owner::WorkloadRef;

use super::{Cluster, ClusterError, FIELD_MANAGER, INCIDENT_ANNOTATION};
use serde_json::{Value, json};
use std::time::Duration;

/// How long past a pod's grace period a recreation waits for the old pod to go.
const DELETE_MARGIN: Duration = Duration::from_secs(30);

impl Cluster {
    /// A pod's spec cannot change in place, so for a recreation the API server validates the removal now and the
    /// new pod when it is created.
    pub(super) async fn dry_run_delete(&self, target: &WorkloadRef) -> Result<(), ClusterError> {
        let dp = DeleteParams {
            dry_run: true,
            ..DeleteParams::default()
        };
        Api::<Pod>::namespaced(self.client.clone(), &target.namespace)
            .delete(&target.name, &dp)
            .await?;
        Ok(())
    }
    pub(super) fn dynamic_pods(&self, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), ns, &ApiResource::erase::<Pod>(&()))
    }
    /// Delete `old` (only that exact pod, by uid) and create `fresh` in its place. If the create fails, the old
    /// pod is put back so nothing is lost.
    pub(super) async fn replace_pod(
        &self,
        ns: &str,
        old: &Value,
        fresh: Value,
    ) -> Result<String, ClusterError> {
        let api = self.dynamic_pods(ns);
        let name = old["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let uid = old["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        // A real API server only marks the pod; its kubelet stops the containers within the grace period and then
        // removes it. Wait as long as that may take, plus a margin.
        let grace = api
            .delete(&name, &dp)
            .await?
            .left()
            .map_or(Some(0), |marked| {
                marked.metadata.deletion_grace_period_seconds
            })
            .or(old["spec"]["terminationGracePeriodSeconds"].as_i64())
            .unwrap_or(30)
            .max(0) as u64;
        let wait = Duration::from_secs(grace) + DELETE_MARGIN;
        tokio::time::timeout(
            wait,
            await_condition(api.clone(), &name, conditions::is_deleted(&uid)),
        )
        .await
        .map_err(|_| {
            ClusterError::Timeout(format!(
                "pod {name} to go: still there {}s after the delete (its grace period is {grace}s); its node may be gone",
                wait.as_secs()
            ))
        })?
        .map_err(|e| ClusterError::Timeout(format!("pod {name} to be deleted: {e}")))?;
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        let obj: DynamicObject = serde_json::from_value(fresh)?;
        match api.create(&pp, &obj).await {
            Ok(created) => Ok(created.metadata.uid.unwrap_or_default()),
            Err(e) => {
                let back: DynamicObject = serde_json::from_value(fresh_pod(old, None, None)?)?;
                if let Err(restore) = api.create(&pp, &back).await {
                    tracing::error!(pod = %name, error = %restore, "could not restore the original pod after a failed recreate");
                }
                Err(e.into())
            }
        }
    }
}

/// The one change a recreated pod carries: to one container, or to one field of the pod spec.
#[derive(Debug, Clone, Copy)]
pub enum PodEdit<'a> {
    Container(&'a str, ContainerEdit<'a>),
    Spec { field: &'a str, value: &'a Value },
}

/// The one change a recreated pod's container may carry.
#[derive(Debug, Clone, Copy)]
pub enum ContainerEdit<'a> {
    Image(&'a str),
    Env {
        name: &'a str,
        value_from: &'a Value,
    },
    Memory {
        limit: &'a str,
        request: Option<&'a str>,
    },
    /// Replace one whole field of the container (a probe, the resources).
    Field {
        field: &'a str,
        value: &'a Value,
    },
    /// Drop the command override and its args: the image's own entrypoint runs.
    DropCommand,
}

impl ContainerEdit<'_> {
    fn apply(&self, c: &mut Value) {
        match self {
            Self::Image(image) => c["image"] = json!(image),
            Self::Env { name, value_from } => {
                if !c["env"].is_array() {
                    c["env"] = json!([]);
                }
                if let Some(env) = c["env"].as_array_mut() {
                    env.retain(|e| e["name"] != *name);
                    env.push(json!({"name": name, "valueFrom": value_from}));
                }
            }
            Self::Memory { limit, request } => {
                if !c["resources"].is_object() {
                    c["resources"] = json!({});
                }
                c["resources"]["limits"]["memory"] = json!(limit);
                if let Some(r) = request {
                    c["resources"]["requests"]["memory"] = json!(r);
                }
            }
            Self::Field { field, value } => c[*field] = (*value).clone(),
            Self::DropCommand => {
                if let Some(m) = c.as_object_mut() {
                    m.remove("command");
                    m.remove("args");
                }
            }
        }
    }
}

/// A pod object to create in place of `original`: the whole spec and user metadata preserved, server-populated
/// fields and status removed, and optionally one container edited.
pub fn fresh_pod(
    original: &Value,
    edit: Option<PodEdit<'_>>,
    incident: Option<&str>,
) -> Result<Value, ClusterError> {
    let mut pod = original.clone();
    let meta = pod["metadata"]
        .as_object_mut()
        .ok_or_else(|| ClusterError::NotFound("pod metadata".into()))?;
    for server_field in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "generation",
        "selfLink",
    ] {
        meta.remove(server_field);
    }
    if let Some(id) = incident {
        let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
        if !annotations.is_object() {
            *annotations = json!({});
        }
        annotations[INCIDENT_ANNOTATION] = json!(id);
    }
    if let Some(obj) = pod.as_object_mut() {
        obj.remove("status");
    }
    // The scheduler places the new pod: the old one's node may not fit it.
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("nodeName");
    }
    if let Some(PodEdit::Spec { field, value }) = edit
        && let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut)
    {
        if value.is_null() || value.as_object().is_some_and(|m| m.is_empty()) {
            spec.remove(field);
        } else {
            spec.insert(field.to_string(), value.clone());
        }
    }
    if let Some(PodEdit::Container(container, edit)) = edit {
        let mut found = false;
        for list in ["containers", "initContainers"] {
            // get_mut, not indexing: IndexMut would insert a null `initContainers` into the new pod.
            let containers = pod
                .get_mut("spec")
                .and_then(|s| s.get_mut(list))
                .and_then(Value::as_array_mut);
            for c in containers.into_iter().flatten() {
                if c["name"] == container {
                    edit.apply(c);
                    found = true;
                }
            }
        }
        if !found {
            let name = original["metadata"]["name"].as_str().unwrap_or_default();
            return Err(ClusterError::NoContainer {
                workload: format!("pod/{name}"),
                container: container.into(),
            });
        }
    }
    Ok(pod)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_pod_preserves_everything_but_the_fix() {
        let original = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "test-nginx", "namespace": "default", "uid": "u1", "resourceVersion": "42",
                         "creationTimestamp": "2026-01-01T00:00:00Z", "labels": {"run": "test-nginx"},
                         "annotations": {"team": "web"}, "managedFields": [{}]},
            "spec": {"containers": [{"name": "test-nginx", "image": "nginx:bu-tag-yok", "env": [{"name": "A", "value": "1"}],
                                     "resources": {"limits": {"memory": "64Mi"}}}],
                     "nodeSelector": {"disk": "ssd"}, "restartPolicy": "Always", "someFutureField": {"x": 1}},
            "status": {"phase": "Pending"}
        });
        let fresh = fresh_pod(
            &original,
            Some(PodEdit::Container(
                "test-nginx",
                ContainerEdit::Image("nginx:1.27.3"),
            )),
            Some("inc-1"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut expected_spec = original["spec"].clone();
        expected_spec["containers"][0]["image"] = json!("nginx:1.27.3");
        assert_eq!(fresh["spec"], expected_spec);
        assert_eq!(fresh["metadata"]["labels"], original["metadata"]["labels"]);
        assert_eq!(
            fresh["metadata"]["annotations"],
            json!({"team": "web", INCIDENT_ANNOTATION: "inc-1"})
        );
        for gone in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
        ] {
            assert!(fresh["metadata"].get(gone).is_none(), "{gone}");
        }
        assert!(fresh.get("status").is_none());
        assert!(matches!(
            fresh_pod(
                &original,
                Some(PodEdit::Container("nope", ContainerEdit::Image("x"))),
                None
            ),
            Err(ClusterError::NoContainer { .. })
        ));
    }
}
