//! The ReplicaSet controller: pods created and deleted to the wanted count, as kube-controller-manager's does — a
//! create the API server refuses (a quota, PodSecurity, a missing ServiceAccount) is a `FailedCreate` Event and the
//! `ReplicaFailure` condition, which the deployment controller copies to the Deployment.

use super::{
    DeleteOptions, Recorder, Store, is_pod_ready, name, ns, owned_by, owner_ref, resources, source,
    write_status,
};
use serde_json::{Value, json};

pub(super) fn reconcile(store: &Store, recorder: &Recorder, rs: &Value) {
    if !rs["metadata"]["deletionTimestamp"].is_null() {
        return;
    }
    let (pods, _) = store.list(resources::pods(), Some(ns(rs)));
    let mine = owned_by(&pods, rs);
    let want = rs["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
    let src = source("replicaset-controller");
    // The first error creating or deleting a pod this pass: the ReplicaFailure condition says it until a pass
    // manages the replicas without one.
    let mut failure: Option<(&str, String)> = None;
    if mine.len() < want {
        for _ in mine.len()..want {
            let template = &rs["spec"]["template"];
            let mut meta = template["metadata"].clone();
            if !meta.is_object() {
                meta = json!({});
            }
            meta["generateName"] = json!(format!("{}-", name(rs)));
            meta["ownerReferences"] = json!([owner_ref(rs)]);
            let pod = json!({"metadata": meta, "spec": template["spec"]});
            match store.create(resources::pods(), ns(rs), pod, false) {
                Ok(p) => recorder.record(
                    store,
                    &src,
                    rs,
                    None,
                    (
                        "Normal",
                        "SuccessfulCreate",
                        &format!("Created pod: {}", name(&p)),
                    ),
                ),
                Err(e) => {
                    let message = e.message.clone();
                    recorder.record(
                        store,
                        &src,
                        rs,
                        None,
                        (
                            "Warning",
                            "FailedCreate",
                            &format!("Error creating: {message}"),
                        ),
                    );
                    failure.get_or_insert(("FailedCreate", message));
                    // The controller stops this pass's creates at the first error (its slow-start batches).
                    break;
                }
            }
        }
    } else if mine.len() > want {
        let mut doomed: Vec<&Value> = mine.clone();
        // Not-ready pods go first, then the newest.
        doomed.sort_by_key(|p| {
            (
                is_pod_ready(p),
                std::cmp::Reverse(
                    p["metadata"]["creationTimestamp"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                ),
            )
        });
        for p in doomed.into_iter().take(mine.len() - want) {
            if store
                .delete(resources::pods(), ns(p), name(p), &DeleteOptions::default())
                .is_ok()
            {
                recorder.record(
                    store,
                    &src,
                    rs,
                    None,
                    (
                        "Normal",
                        "SuccessfulDelete",
                        &format!("Deleted pod: {}", name(p)),
                    ),
                );
            }
        }
    }
    let (pods, _) = store.list(resources::pods(), Some(ns(rs)));
    let mine = owned_by(&pods, rs);
    let ready = mine.iter().filter(|p| is_pod_ready(p)).count();
    let mut status = json!({
        "replicas": mine.len(), "fullyLabeledReplicas": mine.len(), "readyReplicas": ready, "availableReplicas": ready,
        "observedGeneration": rs["metadata"]["generation"],
    });
    if let Some(conditions) = conditions(rs, failure) {
        status["conditions"] = conditions;
    }
    write_status(store, resources::replicasets(), rs, status);
}

/// The ReplicaSet's conditions after a pass: `ReplicaFailure` set at the first failure, kept while the failures
/// go on, removed once a pass manages the replicas without one (`None`: the status has no conditions).
fn conditions(rs: &Value, failure: Option<(&str, String)>) -> Option<Value> {
    let mut conditions: Vec<Value> = rs["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let had = conditions
        .iter()
        .position(|c| c["type"] == "ReplicaFailure");
    match (failure, had) {
        (Some((reason, message)), None) => conditions.push(json!({
            "type": "ReplicaFailure", "status": "True", "reason": reason, "message": message,
            "lastTransitionTime": crate::store::now(),
        })),
        (Some(_), Some(_)) => {}
        (None, Some(i)) => {
            conditions.remove(i);
        }
        (None, None) => {}
    }
    (!conditions.is_empty()).then_some(Value::Array(conditions))
}

#[cfg(test)]
mod tests {
    use super::conditions;
    use serde_json::json;

    #[test]
    fn replica_failure_is_set_at_the_first_failure_and_removed_after_a_clean_pass() {
        let clean = json!({"status": {}});
        assert_eq!(conditions(&clean, None), None);
        let failed = conditions(&clean, Some(("FailedCreate", "exceeded quota: q".into())));
        let c = &failed.clone().unwrap_or_default()[0];
        assert_eq!(
            (&c["type"], &c["status"], &c["reason"], &c["message"]),
            (
                &json!("ReplicaFailure"),
                &json!("True"),
                &json!("FailedCreate"),
                &json!("exceeded quota: q")
            )
        );
        let rs = json!({"status": {"conditions": failed}});
        assert_eq!(
            conditions(&rs, Some(("FailedCreate", "another".into()))),
            rs["status"]["conditions"]
                .as_array()
                .cloned()
                .map(serde_json::Value::Array),
            "kept as first set while the failures go on"
        );
        assert_eq!(conditions(&rs, None), None, "removed by a clean pass");
    }
}
