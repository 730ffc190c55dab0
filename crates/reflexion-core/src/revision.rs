//! Which pods can prove a fix. A pod being deleted is on its way out whatever it shows, and a Deployment's pods of an
//! older revision show what the old template did, not what the fix does: verification, diagnosis and the watcher
//! look only at live pods of the Deployment's current ReplicaSet.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// The label the deployment controller adds to a ReplicaSet's selector, template and pods.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// The pod is being deleted: its kubelet is stopping it, and it will go.
pub fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// The controller reference of an object.
pub fn controller(refs: Option<&Vec<OwnerReference>>) -> Option<&OwnerReference> {
    refs?.iter().find(|r| r.controller == Some(true))
}

/// Whether a ReplicaSet runs the Deployment's pod template: equal once the `pod-template-hash` label the controller
/// adds is set aside (the deployment controller's own test, `EqualIgnoreHash`).
pub fn runs_template(rs: &ReplicaSet, deployment: &Deployment) -> bool {
    let template = |t: Option<serde_json::Value>| {
        let mut t = t.unwrap_or_default();
        if let Some(labels) = t
            .pointer_mut("/metadata/labels")
            .and_then(serde_json::Value::as_object_mut)
        {
            labels.remove(POD_TEMPLATE_HASH);
            if labels.is_empty() {
                t["metadata"].as_object_mut().map(|m| m.remove("labels"));
            }
        }
        t
    };
    let of_rs = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| serde_json::to_value(t).ok());
    let of_deployment = deployment
        .spec
        .as_ref()
        .and_then(|s| serde_json::to_value(&s.template).ok());
    of_rs.is_some() && template(of_rs) == template(of_deployment)
}

/// The Deployment's current ReplicaSet: one it controls that runs its template. `None` right after the template
/// changed, until the controller has created the new one.
pub fn current_replicaset<'a>(
    deployment: &Deployment,
    replicasets: &'a [ReplicaSet],
) -> Option<&'a ReplicaSet> {
    let uid = deployment.metadata.uid.as_deref()?;
    replicasets.iter().find(|rs| {
        controller(rs.metadata.owner_references.as_ref()).is_some_and(|o| o.uid == uid)
            && runs_template(rs, deployment)
    })
}

/// Whether a pod can prove a fix: not terminating and, when `current` is given (a Deployment's current
/// ReplicaSet), controlled by it.
pub fn proves(pod: &Pod, current: Option<&ReplicaSet>) -> bool {
    if terminating(pod) {
        return false;
    }
    match current {
        None => true,
        Some(rs) => {
            let owner = controller(pod.metadata.owner_references.as_ref());
            owner.is_some_and(|o| Some(o.uid.as_str()) == rs.metadata.uid.as_deref())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(image: &str) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "uid": "d1"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": image}]}}}
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn rs(name: &str, uid: &str, owner: &str, image: &str, hash: &str) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": name, "uid": uid,
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": owner, "controller": true}]},
            "spec": {"selector": {"matchLabels": {"app": "web", POD_TEMPLATE_HASH: hash}},
                     "template": {"metadata": {"labels": {"app": "web", POD_TEMPLATE_HASH: hash}},
                                  "spec": {"containers": [{"name": "web", "image": image}]}}}
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn pod(owner_uid: &str, deleting: bool) -> Pod {
        let mut p = json!({"metadata": {"name": "web-x", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": owner_uid, "controller": true}]}});
        if deleting {
            p["metadata"]["deletionTimestamp"] = json!("2026-11-30T12:00:00Z");
        }
        serde_json::from_value(p).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn only_live_pods_of_the_current_replicaset_prove_a_fix() {
        let d = deployment("nginx:1.27");
        let sets = vec![
            rs("web-old", "r1", "d1", "nginx:bad", "aaa"),
            rs("web-new", "r2", "d1", "nginx:1.27", "bbb"),
            rs("other", "r3", "d2", "nginx:1.27", "ccc"),
        ];
        let current = current_replicaset(&d, &sets);
        assert_eq!(
            current.and_then(|r| r.metadata.name.as_deref()),
            Some("web-new")
        );
        // (pod's ReplicaSet uid, terminating, proves)
        for (owner, deleting, want) in [
            ("r2", false, true),
            ("r2", true, false),
            ("r1", false, false),
            ("r3", false, false),
        ] {
            assert_eq!(
                proves(&pod(owner, deleting), current),
                want,
                "{owner} {deleting}"
            );
        }
        assert!(!proves(&pod("r1", true), None), "a terminating bare pod");
        assert!(proves(&pod("r1", false), None));
        // Just patched, before the controller created the new ReplicaSet: no current one.
        assert!(current_replicaset(&deployment("nginx:1.28"), &sets).is_none());
    }
}
