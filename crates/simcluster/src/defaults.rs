//! Defaulting, as the real API server's `SetDefaults_*` functions do it on every write. Go decodes an empty string
//! and a missing field into the same zero value, so a string field sent as `""` is defaulted like an absent one;
//! pointer fields (`replicas`, `terminationGracePeriodSeconds`) are defaulted only when absent, since `0` is a value.

use serde_json::{Value, json};

/// Set `obj[field]` to `value` when it is absent, null, or (for string defaults) the empty string.
fn default(obj: &mut Value, field: &str, value: Value) {
    let Some(m) = obj.as_object_mut() else {
        return;
    };
    let unset = match m.get(field) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty() && value.is_string(),
        Some(_) => false,
    };
    if unset {
        m.insert(field.to_string(), value);
    }
}

/// The mutable elements of an array field, if it is an array (never inserting a null).
fn items<'a>(obj: &'a mut Value, field: &str) -> impl Iterator<Item = &'a mut Value> {
    obj.get_mut(field)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

/// Apply the defaults of `kind` to an object about to be stored.
pub fn apply(kind: &str, obj: &mut Value) {
    match kind {
        "Pod" if obj["spec"].is_object() => {
            pod_spec(&mut obj["spec"]);
            requests_from_limits(&mut obj["spec"]);
        }
        "Deployment" => {
            let spec = &mut obj["spec"];
            if !spec.is_object() {
                return;
            }
            default(spec, "replicas", json!(1));
            default(spec, "revisionHistoryLimit", json!(10));
            default(spec, "progressDeadlineSeconds", json!(600));
            if !spec["strategy"].is_object() {
                spec["strategy"] = json!({});
            }
            let strategy = &mut spec["strategy"];
            default(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                if !strategy["rollingUpdate"].is_object() {
                    strategy["rollingUpdate"] = json!({});
                }
                default(
                    &mut strategy["rollingUpdate"],
                    "maxUnavailable",
                    json!("25%"),
                );
                default(&mut strategy["rollingUpdate"], "maxSurge", json!("25%"));
            }
            template(spec);
        }
        "ReplicaSet" if obj["spec"].is_object() => {
            default(&mut obj["spec"], "replicas", json!(1));
            template(&mut obj["spec"]);
        }
        "Job" if obj["spec"].is_object() => job(&mut obj["spec"]),
        "CronJob" if obj["spec"].is_object() => {
            let spec = &mut obj["spec"];
            default(spec, "concurrencyPolicy", json!("Allow"));
            default(spec, "suspend", json!(false));
            default(spec, "successfulJobsHistoryLimit", json!(3));
            default(spec, "failedJobsHistoryLimit", json!(1));
            if spec["jobTemplate"]["spec"].is_object() {
                job(&mut spec["jobTemplate"]["spec"]);
            }
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            for subject in items(obj, "subjects") {
                let group = match subject["kind"].as_str() {
                    Some("User" | "Group") => "rbac.authorization.k8s.io",
                    _ => "",
                };
                default(subject, "apiGroup", json!(group));
            }
        }
        "Service" => service(obj),
        "Namespace" => {
            if !obj["spec"].is_object() {
                obj["spec"] = json!({});
            }
            default(&mut obj["spec"], "finalizers", json!(["kubernetes"]));
        }
        "Secret" => default(obj, "type", json!("Opaque")),
        "PersistentVolumeClaim" if obj["spec"].is_object() => {
            default(&mut obj["spec"], "volumeMode", json!("Filesystem"));
        }
        _ => {}
    }
}

/// `SetDefaults_Job`.
fn job(spec: &mut Value) {
    if spec.get("completions").is_none_or(Value::is_null)
        && spec.get("parallelism").is_none_or(Value::is_null)
    {
        spec["completions"] = json!(1);
    }
    default(spec, "parallelism", json!(1));
    default(spec, "backoffLimit", json!(6));
    default(spec, "completionMode", json!("NonIndexed"));
    default(spec, "suspend", json!(false));
    default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    template(spec);
}

fn template(spec: &mut Value) {
    if spec["template"]["spec"].is_object() {
        pod_spec(&mut spec["template"]["spec"]);
    }
}

/// `SetDefaults_PodSpec` and everything under it: containers, ports, probes, volumes, env.
fn pod_spec(spec: &mut Value) {
    for (field, value) in [
        ("restartPolicy", json!("Always")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("dnsPolicy", json!("ClusterFirst")),
        ("schedulerName", json!("default-scheduler")),
        ("securityContext", json!({})),
        ("enableServiceLinks", json!(true)),
        ("serviceAccountName", json!("default")),
        ("preemptionPolicy", json!("PreemptLowerPriority")),
        ("priority", json!(0)),
    ] {
        default(spec, field, value);
    }
    for list in ["initContainers", "containers"] {
        items(spec, list).for_each(container);
    }
    for v in items(spec, "volumes") {
        let has_source = v.as_object().is_some_and(|m| m.keys().any(|k| k != "name"));
        if !has_source {
            v["emptyDir"] = json!({});
        }
        for source in ["secret", "configMap"] {
            if v[source].is_object() {
                default(&mut v[source], "defaultMode", json!(420));
            }
        }
    }
}

fn container(c: &mut Value) {
    let image = c["image"].as_str().unwrap_or_default();
    let latest = image
        .rsplit_once(':')
        .is_none_or(|(_, t)| t == "latest" || t.contains('/'))
        && !image.contains('@');
    default(
        c,
        "imagePullPolicy",
        json!(if latest { "Always" } else { "IfNotPresent" }),
    );
    default(c, "terminationMessagePath", json!("/dev/termination-log"));
    default(c, "terminationMessagePolicy", json!("File"));
    default(c, "resources", json!({}));
    for p in items(c, "ports") {
        default(p, "protocol", json!("TCP"));
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let p = &mut c[probe];
        if !p.is_object() {
            if p.is_null()
                && let Some(m) = c.as_object_mut()
            {
                m.remove(probe);
            }
            continue;
        }
        for (field, value) in [
            ("timeoutSeconds", 1),
            ("periodSeconds", 10),
            ("successThreshold", 1),
            ("failureThreshold", 3),
        ] {
            default(p, field, json!(value));
        }
        if p["httpGet"].is_object() {
            default(&mut p["httpGet"], "path", json!("/"));
            default(&mut p["httpGet"], "scheme", json!("HTTP"));
        }
    }
    for e in items(c, "env") {
        if e["valueFrom"]["fieldRef"].is_object() {
            default(&mut e["valueFrom"]["fieldRef"], "apiVersion", json!("v1"));
        }
    }
}

/// `SetDefaults_Pod`: a container with limits and no request for that resource requests its limit.
fn requests_from_limits(spec: &mut Value) {
    for list in ["initContainers", "containers"] {
        for c in items(spec, list) {
            let Some(limits) = c["resources"]["limits"].as_object().cloned() else {
                continue;
            };
            if !c["resources"]["requests"].is_object() {
                c["resources"]["requests"] = json!({});
            }
            for (k, v) in limits {
                default(&mut c["resources"]["requests"], &k, v);
            }
        }
    }
}

fn service(obj: &mut Value) {
    let spec = &mut obj["spec"];
    if !spec.is_object() {
        *spec = json!({});
    }
    default(spec, "type", json!("ClusterIP"));
    default(spec, "sessionAffinity", json!("None"));
    if spec["type"] != "ExternalName" {
        default(spec, "internalTrafficPolicy", json!("Cluster"));
        default(spec, "ipFamilyPolicy", json!("SingleStack"));
        default(spec, "ipFamilies", json!(["IPv4"]));
    }
    for p in items(spec, "ports") {
        default(p, "protocol", json!("TCP"));
        if p.get("targetPort").is_none_or(Value::is_null) {
            p["targetPort"] = p["port"].clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (kind, object as sent, JSON pointers and the values the API server stores there)
    #[test]
    fn defaults_like_the_api_server() {
        let cases: Vec<(&str, Value, Vec<(&str, Value)>)> = vec![
            // `kubectl create deployment` sends `strategy: {}`.
            (
                "Deployment",
                json!({"spec": {"strategy": {}, "template": {"spec": {"containers": [{"name": "w", "image": "nginx"}]}}}}),
                vec![
                    ("/spec/replicas", json!(1)),
                    ("/spec/strategy/type", json!("RollingUpdate")),
                    ("/spec/strategy/rollingUpdate/maxSurge", json!("25%")),
                    ("/spec/strategy/rollingUpdate/maxUnavailable", json!("25%")),
                    ("/spec/revisionHistoryLimit", json!(10)),
                    ("/spec/progressDeadlineSeconds", json!(600)),
                    (
                        "/spec/template/spec/containers/0/imagePullPolicy",
                        json!("Always"),
                    ),
                    (
                        "/spec/template/spec/terminationGracePeriodSeconds",
                        json!(30),
                    ),
                ],
            ),
            (
                "Deployment",
                json!({"spec": {"replicas": 0, "strategy": {"type": "", "rollingUpdate": {"maxSurge": 0}}}}),
                vec![
                    ("/spec/replicas", json!(0)),
                    ("/spec/strategy/type", json!("RollingUpdate")),
                    ("/spec/strategy/rollingUpdate/maxSurge", json!(0)),
                    ("/spec/strategy/rollingUpdate/maxUnavailable", json!("25%")),
                ],
            ),
            (
                "Deployment",
                json!({"spec": {"strategy": {"type": "Recreate"}}}),
                vec![("/spec/strategy", json!({"type": "Recreate"}))],
            ),
            (
                "Pod",
                json!({"spec": {"restartPolicy": "", "containers": [{"name": "c", "image": "nginx:1.27", "imagePullPolicy": "",
                    "ports": [{"containerPort": 80}],
                    "livenessProbe": {"httpGet": {"port": 80}},
                    "resources": {"limits": {"memory": "64Mi", "cpu": "1"}, "requests": {"cpu": "100m"}}}],
                    "volumes": [{"name": "scratch"}, {"name": "cfg", "configMap": {"name": "x"}}]}}),
                vec![
                    ("/spec/restartPolicy", json!("Always")),
                    ("/spec/containers/0/imagePullPolicy", json!("IfNotPresent")),
                    ("/spec/containers/0/ports/0/protocol", json!("TCP")),
                    (
                        "/spec/containers/0/livenessProbe",
                        json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                               "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}),
                    ),
                    (
                        "/spec/containers/0/resources/requests",
                        json!({"cpu": "100m", "memory": "64Mi"}),
                    ),
                    ("/spec/volumes/0/emptyDir", json!({})),
                    ("/spec/volumes/1/configMap/defaultMode", json!(420)),
                    ("/spec/dnsPolicy", json!("ClusterFirst")),
                ],
            ),
            (
                "Service",
                json!({"spec": {"ports": [{"port": 8080}], "type": ""}}),
                vec![
                    ("/spec/type", json!("ClusterIP")),
                    ("/spec/ports/0/targetPort", json!(8080)),
                    ("/spec/ports/0/protocol", json!("TCP")),
                    ("/spec/internalTrafficPolicy", json!("Cluster")),
                    ("/spec/ipFamilies", json!(["IPv4"])),
                ],
            ),
            (
                "Namespace",
                json!({"metadata": {"name": "x"}}),
                vec![("/spec/finalizers", json!(["kubernetes"]))],
            ),
            (
                "Secret",
                json!({"type": ""}),
                vec![("/type", json!("Opaque"))],
            ),
            (
                "Job",
                json!({"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "j", "image": "busybox:1.36"}]}}}}),
                vec![
                    ("/spec/completions", json!(1)),
                    ("/spec/parallelism", json!(1)),
                    ("/spec/backoffLimit", json!(6)),
                    ("/spec/completionMode", json!("NonIndexed")),
                    ("/spec/template/spec/restartPolicy", json!("Never")),
                ],
            ),
            (
                "Job",
                json!({"spec": {"parallelism": 3}}),
                vec![
                    ("/spec/parallelism", json!(3)),
                    ("/spec/backoffLimit", json!(6)),
                ],
            ),
            (
                "RoleBinding",
                json!({"subjects": [{"kind": "User", "name": "jane"}, {"kind": "ServiceAccount", "name": "api", "namespace": "x"}]}),
                vec![
                    ("/subjects/0/apiGroup", json!("rbac.authorization.k8s.io")),
                    ("/subjects/1/apiGroup", json!("")),
                ],
            ),
            (
                "ReplicaSet",
                json!({"spec": {"template": {}}}),
                vec![("/spec/replicas", json!(1))],
            ),
        ];
        for (kind, mut obj, want) in cases {
            let sent = obj.clone();
            apply(kind, &mut obj);
            for (pointer, value) in want {
                assert_eq!(
                    obj.pointer(pointer),
                    Some(&value),
                    "{kind} {sent} at {pointer}"
                );
            }
        }
    }
}
