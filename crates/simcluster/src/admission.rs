//! Defaulting and validation applied to every write, as the real API server's defaulters, validation and the
//! default admission plugins do for the fields the product touches.

use crate::error::ApiError;
use crate::resources::ResourceType;
use crate::store::cause;
use serde_json::{Value, json};

type Causes = Vec<(String, String, String)>;

/// JSON `null` decodes to "absent" in a real API server's typed structs; do the same, so that e.g. a template sent
/// with `creationTimestamp: null` (as kubectl does) equals the stored one.
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

pub fn admit(rt: &ResourceType, old: Option<&Value>, obj: &mut Value) -> Result<(), ApiError> {
    if let Some(spec) = obj.get_mut("spec") {
        strip_nulls(spec);
    }
    if let Some(meta) = obj.get_mut("metadata") {
        strip_nulls(meta);
    }
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut causes = Causes::new();
    let name_ok = if rt.kind == "Namespace" {
        is_dns1123_label(&name)
    } else {
        is_dns1123_subdomain(&name)
    };
    if old.is_none() && !name_ok {
        let what = if rt.kind == "Namespace" {
            "RFC 1123 label"
        } else {
            "RFC 1123 subdomain"
        };
        causes.push(cause(
            "FieldValueInvalid",
            "metadata.name",
            &format!(
                "Invalid value: \"{name}\": a lowercase {what} must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            ),
        ));
    }
    crate::defaults::apply(rt.kind, obj);
    match rt.kind {
        "Pod" => {
            default_toleration_seconds(&mut obj["spec"]);
            validate_pod_spec(&obj["spec"], "spec", &mut causes);
            match old {
                None => {
                    obj["status"] = json!({"phase": "Pending", "qosClass": qos_class(&obj["spec"])})
                }
                Some(old) => check_pod_update(&old["spec"], &obj["spec"], &mut causes),
            }
        }
        "Deployment" | "ReplicaSet" => validate_workload(obj, old, &mut causes),
        "Job" => {
            if old.is_none() {
                select_own_pods(obj, &mut causes);
            }
            validate_job_template(&obj["spec"]["template"], "spec.template", &mut causes);
            if let Some(old) = old
                && old["spec"]["selector"] != obj["spec"]["selector"]
            {
                causes.push(cause(
                    "FieldValueInvalid",
                    "spec.selector",
                    "Invalid value: field is immutable",
                ));
            }
            if old.is_none() {
                obj["status"] = json!({});
            }
        }
        "CronJob" => {
            let schedule = obj["spec"]["schedule"].as_str().unwrap_or_default();
            if let Err(why) = crate::cron::Schedule::parse(schedule) {
                causes.push(cause(
                    "FieldValueInvalid",
                    "spec.schedule",
                    &format!("Invalid value: {schedule:?}: {why}"),
                ));
            }
            validate_job_template(
                &obj["spec"]["jobTemplate"]["spec"]["template"],
                "spec.jobTemplate.spec.template",
                &mut causes,
            )
        }
        "Service" => allocate_cluster_ip(obj, old),
        "Namespace" if old.is_none() => obj["status"] = json!({"phase": "Active"}),
        // TaintNodesByCondition: nothing is scheduled onto a new node until it is Ready.
        "Node" if old.is_none() => taint_not_ready(obj),
        "PersistentVolumeClaim" => match old {
            None => {
                obj["status"] = json!({"phase": "Pending"});
                // StorageObjectInUseProtection: a claim in use is not removed before its pods are gone.
                protect_claim(obj);
            }
            Some(old) => {
                let (mut a, mut b) = (old["spec"].clone(), obj["spec"].clone());
                for v in [&mut a, &mut b] {
                    if let Some(m) = v.as_object_mut() {
                        m.remove("resources");
                        m.remove("volumeName");
                    }
                }
                if a != b {
                    causes.push(cause(
                            "FieldValueForbidden",
                            "spec",
                            "Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
                        ));
                }
            }
        },
        _ => {}
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(rt.kind, &name, causes))
    }
}

pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";

fn protect_claim(claim: &mut Value) {
    if !claim["metadata"]["finalizers"].is_array() {
        claim["metadata"]["finalizers"] = json!([]);
    }
    if let Some(f) = claim["metadata"]["finalizers"].as_array_mut()
        && !f.iter().any(|x| x == PVC_PROTECTION)
    {
        f.push(json!(PVC_PROTECTION));
    }
}

/// The job registry gives a Job a selector of its own uid (unless `manualSelector`) and labels its template so:
/// each label and the selector's key only where absent (`generateSelector`), and then every one must name this Job
/// (`validateGeneratedSelector`): a Job created from another's JSON with its generated labels is refused.
fn select_own_pods(job: &mut Value, causes: &mut Causes) {
    if job["spec"]["manualSelector"] == true {
        return;
    }
    let uid = job["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let name = job["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let wanted = [
        ("batch.kubernetes.io/controller-uid", &uid),
        ("batch.kubernetes.io/job-name", &name),
        ("controller-uid", &uid),
        ("job-name", &name),
    ];
    if !job["spec"]["template"]["metadata"]["labels"].is_object() {
        job["spec"]["template"]["metadata"]["labels"] = json!({});
    }
    if let Some(l) = job["spec"]["template"]["metadata"]["labels"].as_object_mut() {
        for (k, v) in wanted {
            l.entry(k).or_insert_with(|| json!(v));
        }
    }
    if !job["spec"]["selector"]["matchLabels"].is_object() {
        job["spec"]["selector"] = json!({"matchLabels": {}});
    }
    if let Some(m) = job["spec"]["selector"]["matchLabels"].as_object_mut() {
        m.entry("batch.kubernetes.io/controller-uid")
            .or_insert_with(|| json!(uid));
    }
    let labels = &job["spec"]["template"]["metadata"]["labels"];
    for (k, v) in wanted {
        let has = labels[k].as_str().unwrap_or_default();
        if has != v.as_str() {
            causes.push(cause(
                "FieldValueInvalid",
                &format!("spec.template.metadata.labels[{k}]"),
                &format!("Invalid value: \"{has}\": must be '{v}'"),
            ));
        }
    }
}

/// A Job's pods run to completion: their restart policy cannot be `Always`.
fn validate_job_template(template: &Value, path: &str, causes: &mut Causes) {
    validate_pod_spec(&template["spec"], &format!("{path}.spec"), causes);
    if let Some(rp) = template["spec"]["restartPolicy"].as_str()
        && !["OnFailure", "Never"].contains(&rp)
    {
        causes.push(cause(
            "FieldValueNotSupported",
            &format!("{path}.spec.restartPolicy"),
            &format!("Unsupported value: \"{rp}\": supported values: \"OnFailure\", \"Never\""),
        ));
    }
}

/// The service registry allocates a cluster IP once; it is immutable after.
fn allocate_cluster_ip(obj: &mut Value, old: Option<&Value>) {
    let spec = &mut obj["spec"];
    match old.and_then(|o| o["spec"]["clusterIP"].as_str()) {
        Some(ip) => {
            spec["clusterIP"] = json!(ip);
            spec["clusterIPs"] = json!([ip]);
        }
        None if spec["clusterIP"].as_str().is_none_or(str::is_empty)
            && spec["type"] != "ExternalName" =>
        {
            let n = uuid::Uuid::new_v4();
            let ip = format!("10.96.{}.{}", n.as_bytes()[0], n.as_bytes()[1].max(1));
            spec["clusterIP"] = json!(ip);
            spec["clusterIPs"] = json!([ip]);
        }
        None => {}
    }
    if old.is_none() {
        obj["status"] = json!({"loadBalancer": {}});
    }
}

fn taint_not_ready(node: &mut Value) {
    let key = crate::controllers::node_lifecycle::NOT_READY;
    if !node["spec"].is_object() {
        node["spec"] = json!({});
    }
    if !node["spec"]["taints"].is_array() {
        node["spec"]["taints"] = json!([]);
    }
    if let Some(taints) = node["spec"]["taints"].as_array_mut()
        && !taints
            .iter()
            .any(|t| t["key"] == key && t["effect"] == "NoSchedule")
    {
        taints.push(json!({"key": key, "effect": "NoSchedule"}));
    }
}

/// The DefaultTolerationSeconds admission plugin.
fn default_toleration_seconds(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    if !spec["tolerations"].is_array() {
        spec["tolerations"] = json!([]);
    }
    if let Some(tols) = spec["tolerations"].as_array_mut() {
        for key in [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
        ] {
            if !tols.iter().any(|t| t["key"] == key) {
                tols.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
            }
        }
    }
}

fn validate_pod_spec(spec: &Value, path: &str, causes: &mut Causes) {
    let containers = spec["containers"].as_array();
    if containers.is_none_or(|c| c.is_empty()) {
        causes.push(cause(
            "FieldValueRequired",
            &format!("{path}.containers"),
            "Required value",
        ));
        return;
    }
    let mut seen = Vec::new();
    for list in ["initContainers", "containers"] {
        for (i, c) in spec[list].as_array().into_iter().flatten().enumerate() {
            let name = c["name"].as_str().unwrap_or_default();
            let field = format!("{path}.{list}[{i}]");
            if name.is_empty() {
                causes.push(cause(
                    "FieldValueRequired",
                    &format!("{field}.name"),
                    "Required value",
                ));
            } else if !is_dns1123_label(name) {
                causes.push(cause(
                    "FieldValueInvalid",
                    &format!("{field}.name"),
                    &format!("Invalid value: \"{name}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"),
                ));
            } else if seen.contains(&name) {
                causes.push(cause(
                    "FieldValueDuplicate",
                    &format!("{field}.name"),
                    &format!("Duplicate value: \"{name}\""),
                ));
            }
            seen.push(name);
            if c["image"].as_str().is_none_or(|i| i.trim().is_empty()) {
                causes.push(cause(
                    "FieldValueRequired",
                    &format!("{field}.image"),
                    "Required value",
                ));
            }
        }
    }
    if let Some(rp) = spec["restartPolicy"].as_str()
        && !["Always", "OnFailure", "Never"].contains(&rp)
    {
        causes.push(cause(
                "FieldValueNotSupported",
                &format!("{path}.restartPolicy"),
                &format!("Unsupported value: \"{rp}\": supported values: \"Always\", \"OnFailure\", \"Never\""),
            ));
    }
}

/// Pod specs are immutable except container images, activeDeadlineSeconds and added tolerations.
fn check_pod_update(old: &Value, new: &Value, causes: &mut Causes) {
    let mut a = old.clone();
    let mut b = new.clone();
    for v in [&mut a, &mut b] {
        for list in ["initContainers", "containers"] {
            for c in v[list].as_array_mut().into_iter().flatten() {
                c["image"] = Value::Null;
            }
        }
        if let Some(m) = v.as_object_mut() {
            m.remove("activeDeadlineSeconds");
            m.remove("tolerations");
        }
    }
    let old_tols = old["tolerations"].as_array().cloned().unwrap_or_default();
    let new_tols = new["tolerations"].as_array().cloned().unwrap_or_default();
    let tolerations_only_added = old_tols.iter().all(|t| new_tols.contains(t));
    if a != b || !tolerations_only_added {
        causes.push(cause(
            "FieldValueForbidden",
            "spec",
            "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
        ));
    }
}

fn validate_workload(obj: &Value, old: Option<&Value>, causes: &mut Causes) {
    let spec = &obj["spec"];
    if spec["replicas"].as_i64().is_some_and(|r| r < 0) {
        causes.push(cause(
            "FieldValueInvalid",
            "spec.replicas",
            "Invalid value: must be greater than or equal to 0",
        ));
    }
    let selector = &spec["selector"];
    if selector["matchLabels"]
        .as_object()
        .is_none_or(|m| m.is_empty())
        && selector["matchExpressions"]
            .as_array()
            .is_none_or(|m| m.is_empty())
    {
        causes.push(cause(
            "FieldValueRequired",
            "spec.selector",
            "Required value",
        ));
    } else if !crate::selector::matches_selector_object(selector, &spec["template"]) {
        causes.push(cause(
            "FieldValueInvalid",
            "spec.template.metadata.labels",
            &format!(
                "Invalid value: {}: `selector` does not match template `labels`",
                spec["template"]["metadata"]["labels"]
            ),
        ));
    }
    if let Some(old) = old
        && old["spec"]["selector"] != *selector
    {
        causes.push(cause(
            "FieldValueInvalid",
            "spec.selector",
            &format!("Invalid value: {selector}: field is immutable"),
        ));
    }
    validate_pod_spec(&spec["template"]["spec"], "spec.template.spec", causes);
}

/// Guaranteed when every container has equal cpu and memory requests and limits; BestEffort with none at all.
pub fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .flat_map(|l| spec[*l].as_array().into_iter().flatten())
        .collect();
    let any = containers.iter().any(|c| {
        let r = &c["resources"];
        r["requests"].as_object().is_some_and(|m| !m.is_empty())
            || r["limits"].as_object().is_some_and(|m| !m.is_empty())
    });
    if !any {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        let limits = &c["resources"]["limits"];
        let requests = &c["resources"]["requests"];
        ["cpu", "memory"].iter().all(|k| {
            !limits[*k].is_null() && (requests[*k].is_null() || requests[*k] == limits[*k])
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources;

    fn pod() -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}})
    }

    #[test]
    fn pods_get_real_defaults() {
        let mut p = pod();
        assert_eq!(admit(resources::pods(), None, &mut p), Ok(()));
        assert_eq!(p["spec"]["restartPolicy"], "Always");
        assert_eq!(
            p["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(p["status"]["phase"], "Pending");
        assert_eq!(p["status"]["qosClass"], "BestEffort");
        assert_eq!(p["spec"]["tolerations"].as_array().map(Vec::len), Some(2));
        let mut latest = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
        assert_eq!(admit(resources::pods(), None, &mut latest), Ok(()));
        assert_eq!(latest["spec"]["containers"][0]["imagePullPolicy"], "Always");
    }

    #[test]
    fn pod_updates_may_only_change_images() {
        let mut old = pod();
        assert_eq!(admit(resources::pods(), None, &mut old), Ok(()));
        let mut image = old.clone();
        image["spec"]["containers"][0]["image"] = json!("nginx:1.26");
        assert_eq!(admit(resources::pods(), Some(&old), &mut image), Ok(()));

        let mut resources_change = old.clone();
        resources_change["spec"]["containers"][0]["resources"] =
            json!({"limits": {"memory": "256Mi"}});
        let err = admit(resources::pods(), Some(&old), &mut resources_change).err();
        assert_eq!(err.as_ref().map(|e| e.code), Some(422));
        assert!(err.is_some_and(|e| e.message.starts_with(
            "Pod \"p\" is invalid: spec: Forbidden: pod updates may not change fields"
        )));
    }

    #[test]
    fn invalid_objects_list_their_causes() {
        let mut bad = json!({"metadata": {"name": "Bad_Name"}, "spec": {"containers": [{"name": "c"}, {"name": "c", "image": "x"}]}});
        let err = admit(resources::pods(), None, &mut bad)
            .err()
            .unwrap_or_else(|| panic!("must fail"));
        let fields: Vec<String> = err
            .details
            .iter()
            .flat_map(|d| d["causes"].as_array().cloned().unwrap_or_default())
            .map(|c| c["field"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(
            fields,
            vec![
                "metadata.name",
                "spec.containers[0].image",
                "spec.containers[1].name"
            ]
        );

        // A Job created from another Job's JSON, its generated labels kept: refused, as kube-apiserver does.
        let mut copy = json!({"metadata": {"name": "report", "uid": "new-uid"}, "spec": {
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "old-uid"}},
            "template": {"metadata": {"labels": {"batch.kubernetes.io/controller-uid": "old-uid", "controller-uid": "old-uid",
                                                 "batch.kubernetes.io/job-name": "report", "job-name": "report"}},
                         "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}});
        let err = admit(resources::jobs(), None, &mut copy).err();
        assert!(
            err.as_ref().is_some_and(|e| e.message.contains(
                "spec.template.metadata.labels[batch.kubernetes.io/controller-uid]: Invalid value: \"old-uid\": must be 'new-uid'"
            )),
            "{err:?}"
        );
        let mut fresh = json!({"metadata": {"name": "report", "uid": "new-uid"}, "spec": {
            "template": {"metadata": {"labels": {"job-name": "report"}},
                         "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}});
        assert_eq!(admit(resources::jobs(), None, &mut fresh), Ok(()));
        assert_eq!(
            fresh["spec"]["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "new-uid"}})
        );

        let mut d = json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "other"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}});
        let err = admit(resources::deployments(), None, &mut d).err();
        assert!(err.is_some_and(|e| {
            e.message
                .contains("`selector` does not match template `labels`")
        }));
    }
}
