//! A bare pod's spec cannot change in place except its images: resources and env change by recreating the pod with
//! its whole spec preserved but the fix, after the old one has gone (its grace period, plus a margin). A claim's class
//! the same way, and a bare Job's pod template (immutable: the Job is deleted with its pods and created again, which
//! runs it again). Every recreation is journaled before its delete (`Journal`, stored with the action), so a process
//! that dies, or an answer that is lost, between the delete and the create is finished from the journal.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, PostParams, Preconditions, PropagationPolicy,
};
use kube::runtime::wait::{await_condition, conditions};

use super::{Cluster, ClusterError, FIELD_MANAGER, INCIDENT_ANNOTATION};
use serde_json::{Value, json};
use std::time::Duration;

/// How long past a pod's grace period a recreation waits for the old pod to go.
const DELETE_MARGIN: Duration = Duration::from_secs(30);

impl Cluster {
    /// An object recreated cannot be created while it exists, so the API server validates the removal now (of that
    /// very uid) and the new object when it is created.
    pub(super) async fn dry_run_delete(&self, j: &Journal) -> Result<(), ClusterError> {
        let dp = DeleteParams {
            dry_run: true,
            preconditions: Some(Preconditions {
                uid: j.original["metadata"]["uid"].as_str().map(String::from),
                resource_version: j.original["metadata"]["resourceVersion"]
                    .as_str()
                    .map(String::from),
            }),
            ..DeleteParams::default()
        };
        let name = j.original["metadata"]["name"].as_str().unwrap_or_default();
        self.dynamic(j.kind, &j.namespace).delete(name, &dp).await?;
        Ok(())
    }
    pub(super) fn dynamic_pods(&self, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), ns, &ApiResource::erase::<Pod>(&()))
    }

    pub(super) fn dynamic(&self, kind: Recreated, ns: &str) -> Api<DynamicObject> {
        match kind {
            Recreated::Pod => self.dynamic_pods(ns),
            Recreated::Claim => Api::namespaced_with(
                self.client.clone(),
                ns,
                &ApiResource::erase::<PersistentVolumeClaim>(&()),
            ),
            Recreated::Job => {
                Api::namespaced_with(self.client.clone(), ns, &ApiResource::erase::<Job>(&()))
            }
        }
    }

    /// Bring a recreation to its end from wherever it stopped — in this process, or in one that died or lost its
    /// answer: the original (that very uid) still there → delete it and wait for it to go; gone and the new object
    /// absent → create it from the journal; the new object there → done. Never both gone: a create the API server
    /// refuses puts the original back. The new object's uid; `Timeout` or `Uncertain` leave the journal to be
    /// resumed.
    pub async fn recreate(&self, j: &Journal) -> Result<String, ClusterError> {
        let api = self.dynamic(j.kind, &j.namespace);
        let name = j.original["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let old_uid = j.original["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        let mut last = String::from("no answer");
        for round in 0..ROUNDS {
            if round > 0 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let now = match api.get_opt(&name).await {
                Ok(now) => now,
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            let Some(now) = now else {
                match api
                    .create(&pp, &serde_json::from_value(j.fresh.clone())?)
                    .await
                {
                    Ok(created) => return Ok(created.metadata.uid.unwrap_or_default()),
                    // Maybe made despite the error (read back next round), or made by someone meanwhile.
                    Err(e) if answer_lost(&e) || status(&e) == Some(409) => last = e.to_string(),
                    Err(refused) => {
                        let back = restored(j)?;
                        if let Err(restore) = api.create(&pp, &serde_json::from_value(back)?).await
                        {
                            tracing::error!(object = %name, error = %restore, "could not put the original back after a refused create");
                        }
                        return Err(refused.into());
                    }
                }
                continue;
            };
            let uid = now.metadata.uid.clone().unwrap_or_default();
            if uid != old_uid {
                let now = serde_json::to_value(&now)?;
                if j.made(&now) {
                    return Ok(uid);
                }
                return Err(ClusterError::Refused(format!(
                    "{} {name} was created again by someone else (uid {uid}): not touching it",
                    j.kind.noun()
                )));
            }
            let grace = match now.metadata.deletion_timestamp {
                Some(_) => now.metadata.deletion_grace_period_seconds.unwrap_or(0),
                None => {
                    // A claim that bound meanwhile may hold data: checked on what is stored now, and deleted only
                    // at that version.
                    let resource_version = match j.kind {
                        Recreated::Pod | Recreated::Job => None,
                        Recreated::Claim => {
                            if let Some(why) = super::claims::refusal(&serde_json::to_value(&now)?)
                            {
                                return Err(ClusterError::Refused(why));
                            }
                            now.metadata.resource_version.clone()
                        }
                    };
                    let dp = DeleteParams {
                        preconditions: Some(Preconditions {
                            uid: Some(old_uid.clone()),
                            resource_version,
                        }),
                        // A Job's pods go with it (the API's default for Jobs orphans them, to run on).
                        propagation_policy: (j.kind == Recreated::Job)
                            .then_some(PropagationPolicy::Background),
                        ..DeleteParams::default()
                    };
                    match api.delete(&name, &dp).await {
                        // A real API server only marks a pod; its kubelet stops the containers within the grace
                        // period and then removes it.
                        Ok(answer) => answer.left().map_or(0, |marked| {
                            marked.metadata.deletion_grace_period_seconds.unwrap_or(0)
                        }),
                        Err(e) if answer_lost(&e) || matches!(status(&e), Some(404 | 409)) => {
                            last = e.to_string();
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            let wait = match j.kind {
                Recreated::Pod => {
                    let grace = if grace > 0 {
                        grace
                    } else {
                        j.original["spec"]["terminationGracePeriodSeconds"]
                            .as_i64()
                            .unwrap_or(30)
                    };
                    Duration::from_secs(grace.max(0) as u64) + DELETE_MARGIN
                }
                Recreated::Claim | Recreated::Job => CLAIM_DELETE_TIMEOUT,
            };
            let gone = tokio::time::timeout(
                wait,
                await_condition(api.clone(), &name, conditions::is_deleted(&old_uid)),
            )
            .await;
            match gone {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => {
                    return Err(ClusterError::Timeout(format!(
                        "{} {name} to go: still there {}s after the delete{}; the object to create is journaled",
                        j.kind.noun(),
                        wait.as_secs(),
                        match j.kind {
                            Recreated::Pod => " (its node may be gone)",
                            Recreated::Claim => " (a pod running on a node still holds it)",
                            Recreated::Job => " (a finalizer holds it)",
                        }
                    )));
                }
            }
        }
        Err(ClusterError::Uncertain(format!(
            "recreating {} {name}: {last}",
            j.kind.noun()
        )))
    }
}

/// Rounds of read, act and read again before a recreation's outcome is called unknown.
const ROUNDS: u32 = 8;
/// How long the delete of an unbound claim (its protection finalizer waits for pods using it) or a Job may take.
const CLAIM_DELETE_TIMEOUT: Duration = Duration::from_secs(60);

fn status(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// A 5xx, a 429 or no answer: the request may have been carried out, or may pass if made again.
fn answer_lost(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code >= 500 || s.code == 429,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// What kind of object a recreation replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recreated {
    Pod,
    Claim,
    Job,
}

impl Recreated {
    fn noun(self) -> &'static str {
        match self {
            Self::Pod => "pod",
            Self::Claim => "claim",
            Self::Job => "job",
        }
    }
}

/// Everything a recreation needs to be finished by any process, stored with the action before the delete: the
/// object as it was (its uid says which one may be deleted) and the object to create.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Journal {
    pub kind: Recreated,
    pub namespace: String,
    pub original: Value,
    pub fresh: Value,
}

impl Journal {
    /// Whether `now` (another uid than the original's) is the object this recreation creates: a pod carries the
    /// same incident annotation, a claim the same class.
    fn made(&self, now: &Value) -> bool {
        match self.kind {
            Recreated::Pod | Recreated::Job => {
                now["metadata"]["annotations"][INCIDENT_ANNOTATION]
                    == self.fresh["metadata"]["annotations"][INCIDENT_ANNOTATION]
            }
            Recreated::Claim => {
                now["spec"]["storageClassName"] == self.fresh["spec"]["storageClassName"]
            }
        }
    }
}

/// The original, as it can be created again.
fn restored(j: &Journal) -> Result<Value, ClusterError> {
    match j.kind {
        Recreated::Pod => fresh_pod(&j.original, None, None),
        Recreated::Job => fresh_job(&j.original, None, None),
        Recreated::Claim => Ok(super::claims::fresh_claim(
            &j.original,
            j.original["spec"]["storageClassName"]
                .as_str()
                .unwrap_or_default(),
        )),
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

/// `obj` (a pod or a Job) as it can be created again: server-populated metadata and status removed, and the
/// incident's annotation when one is given.
fn created_again(original: &Value, incident: Option<&str>) -> Result<Value, ClusterError> {
    let mut obj = original.clone();
    let meta = obj["metadata"]
        .as_object_mut()
        .ok_or_else(|| ClusterError::NotFound("metadata".into()))?;
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
    if let Some(o) = obj.as_object_mut() {
        o.remove("status");
    }
    Ok(obj)
}

/// One change made to a pod spec (a pod's, or a template's) in place. `whose` names the object for the error.
fn edit_spec(spec: &mut Value, edit: PodEdit<'_>, whose: &str) -> Result<(), ClusterError> {
    match edit {
        PodEdit::Spec { field, value } => {
            if let Some(spec) = spec.as_object_mut() {
                if value.is_null() || value.as_object().is_some_and(|m| m.is_empty()) {
                    spec.remove(field);
                } else {
                    spec.insert(field.to_string(), value.clone());
                }
            }
            Ok(())
        }
        PodEdit::Container(container, edit) => {
            let mut found = false;
            for list in ["containers", "initContainers"] {
                // get_mut, not indexing: IndexMut would insert a null `initContainers` into the new spec.
                let containers = spec.get_mut(list).and_then(Value::as_array_mut);
                for c in containers.into_iter().flatten() {
                    if c["name"] == container {
                        edit.apply(c);
                        found = true;
                    }
                }
            }
            if found {
                Ok(())
            } else {
                Err(ClusterError::NoContainer {
                    workload: whose.to_string(),
                    container: container.into(),
                })
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
    let mut pod = created_again(original, incident)?;
    // The scheduler places the new pod: the old one's node may not fit it.
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("nodeName");
    }
    if let Some(edit) = edit {
        let name = original["metadata"]["name"].as_str().unwrap_or_default();
        edit_spec(&mut pod["spec"], edit, &format!("pod/{name}"))?;
    }
    Ok(pod)
}

/// The labels the API server puts on a Job's pod template (and selects by) when it generates the selector: they
/// name the old Job's uid, and a Job created with them and no `manualSelector` is refused.
const GENERATED_LABELS: [&str; 2] = ["controller-uid", "batch.kubernetes.io/controller-uid"];

/// A Job to create in place of `original`: its spec preserved but the selector and labels the API server generated
/// for the old one (unless the Job selects its pods by hand), and optionally one change to its pod template.
pub fn fresh_job(
    original: &Value,
    edit: Option<PodEdit<'_>>,
    incident: Option<&str>,
) -> Result<Value, ClusterError> {
    let mut job = created_again(original, incident)?;
    if job["spec"]["manualSelector"] != json!(true) {
        if let Some(spec) = job.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("selector");
        }
        if let Some(labels) = job
            .pointer_mut("/spec/template/metadata/labels")
            .and_then(Value::as_object_mut)
        {
            for l in GENERATED_LABELS {
                labels.remove(l);
            }
        }
    }
    if let Some(edit) = edit {
        let name = original["metadata"]["name"].as_str().unwrap_or_default();
        let spec = job
            .pointer_mut("/spec/template/spec")
            .ok_or_else(|| ClusterError::NotFound(format!("job/{name}'s pod template")))?;
        edit_spec(spec, edit, &format!("job/{name}"))?;
    }
    Ok(job)
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

    #[test]
    fn fresh_job_drops_what_the_api_server_generated_and_keeps_the_rest() {
        let original = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "report", "namespace": "default", "uid": "u1", "resourceVersion": "7",
                         "labels": {"team": "data"}},
            "spec": {"backoffLimit": 2, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}},
                     "template": {"metadata": {"labels": {"controller-uid": "u1", "batch.kubernetes.io/controller-uid": "u1",
                                                          "job-name": "report", "app": "report"}},
                                  "spec": {"restartPolicy": "Never", "containers": [{"name": "report", "image": "r:1"}]}}},
            "status": {"failed": 1}
        });
        let value_from = json!({"configMapKeyRef": {"name": "reports", "key": "REPORT_BUCKET"}});
        let fresh = fresh_job(
            &original,
            Some(PodEdit::Container(
                "report",
                ContainerEdit::Env {
                    name: "REPORT_BUCKET",
                    value_from: &value_from,
                },
            )),
            Some("inc-9"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(fresh["spec"].get("selector").is_none());
        assert_eq!(
            fresh["spec"]["template"]["metadata"]["labels"],
            json!({"job-name": "report", "app": "report"})
        );
        assert_eq!(fresh["spec"]["backoffLimit"], 2);
        assert_eq!(
            fresh["spec"]["template"]["spec"]["containers"][0]["env"],
            json!([{"name": "REPORT_BUCKET", "valueFrom": value_from}])
        );
        assert_eq!(
            fresh["metadata"]["annotations"][INCIDENT_ANNOTATION],
            "inc-9"
        );
        assert!(fresh.get("status").is_none() && fresh["metadata"].get("uid").is_none());
        // A Job that selects its pods by hand keeps its selector and labels.
        let mut manual = original.clone();
        manual["spec"]["manualSelector"] = json!(true);
        let kept = fresh_job(&manual, None, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(kept["spec"]["selector"], original["spec"]["selector"]);
        assert!(matches!(
            fresh_job(
                &original,
                Some(PodEdit::Container("nope", ContainerEdit::Image("x"))),
                None
            ),
            Err(ClusterError::NoContainer { .. })
        ));
    }
}
