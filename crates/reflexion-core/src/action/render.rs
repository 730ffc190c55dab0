//! What an action does, in the words an SRE would type: the command shown for approval and in the audit.

use super::Action;

impl Action {
    /// The equivalent kubectl command, for humans: what the action does, in the words an SRE would type.
    pub fn render(&self) -> String {
        match self {
            Self::SetImage {
                target,
                container,
                image,
            } => kubectl_set(target, "image", &format!("{container}={image}")),
            Self::SetResources {
                target,
                container,
                memory_limit,
                memory_request,
            } => {
                let requests = memory_request
                    .as_ref()
                    .map(|r| format!(" --requests=memory={r}"))
                    .unwrap_or_default();
                kubectl_set(
                    target,
                    "resources",
                    &format!("-c {container} --limits=memory={memory_limit}{requests}"),
                )
            }
            Self::SetEnv {
                target,
                container,
                name,
                from,
            } => {
                let (kind, object, key) = from.parts();
                let alias = if key == name {
                    String::new()
                } else {
                    format!(" (as {name})")
                };
                kubectl_set(
                    target,
                    "env",
                    &format!("-c {container} --from={kind}/{object} --keys={key}{alias}"),
                )
            }
            Self::RolloutUndo {
                target,
                to_revision,
            } => {
                let rev = to_revision
                    .map(|r| format!(" --to-revision={r}"))
                    .unwrap_or_default();
                format!(
                    "kubectl rollout undo deployment/{}{rev} -n {}",
                    target.name, target.namespace
                )
            }
            Self::SetProbe {
                target,
                container,
                probe,
                handler,
            } => {
                let spec = serde_json::json!({"containers": [
                    {"name": container, probe.field(): handler.to_api()}
                ]});
                format!(
                    "{}  # {} probe: {}",
                    pod_spec_patch(target, spec),
                    probe.field().trim_end_matches("Probe"),
                    handler.describe()
                )
            }
            Self::SetRequests {
                target,
                container,
                memory,
                cpu,
            } => {
                let requests: Vec<String> = [("memory", memory), ("cpu", cpu)]
                    .into_iter()
                    .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
                    .collect();
                kubectl_set(
                    target,
                    "resources",
                    &format!("-c {container} --requests={}", requests.join(",")),
                )
            }
            Self::SetNodeSelector {
                target,
                remove,
                set,
            } => {
                let spec = serde_json::json!({"nodeSelector": selector_patch(remove, set)});
                pod_spec_patch(target, spec)
            }
            Self::SetServiceSelector {
                target,
                remove,
                set,
            } => {
                let patch = serde_json::json!({"spec": {"selector": selector_patch(remove, set)}});
                format!(
                    "kubectl patch service/{} -n {} --type=merge -p '{patch}'",
                    target.name, target.namespace
                )
            }
            Self::SetServiceTargetPort {
                target,
                port,
                target_port,
            } => {
                // A strategic merge patch: Service ports merge on `port`, so only that port's target changes.
                let patch = serde_json::json!({"spec": {"ports": [{"port": port,
                    "targetPort": crate::service::target_value(target_port)}]}});
                format!(
                    "kubectl patch service/{} -n {} -p '{patch}'",
                    target.name, target.namespace
                )
            }
            Self::GrantRoleRule {
                target,
                role,
                verb,
                api_group,
                resource,
                ..
            } => {
                let op = serde_json::json!([{"op": "add", "path": "/rules/-",
                    "value": crate::rbac::rule(verb, api_group, resource)}]);
                format!(
                    "kubectl patch role/{role} -n {} --type=json -p '{op}'",
                    target.namespace
                )
            }
            Self::DropCommand { target, container } => {
                let spec = serde_json::json!({"containers": [{"name": container, "command": null, "args": null}]});
                pod_spec_patch(target, spec)
            }
            Self::RecreateClaim {
                target,
                claim,
                storage_class,
            } => format!(
                "kubectl get pvc {claim} -n {ns} -o json | <storageClassName: {storage_class}, unbound> | kubectl replace --force -f -  # the claim {} mounts; unbound, it holds no data",
                target,
                ns = target.namespace
            ),
            Self::Escalate {
                diagnosis,
                suggestion,
            } => format!("escalate: {diagnosis} Suggested: {suggestion}"),
        }
    }
}

/// A strategic merge patch of the pod spec: a workload's template, or a bare pod (recreated: its spec is immutable).
fn pod_spec_patch(target: &crate::owner::WorkloadRef, spec: serde_json::Value) -> String {
    let kind = target.kind.kubectl_name();
    if target.kind == crate::owner::WorkloadKind::Pod {
        return format!(
            "kubectl get pod {name} -n {ns} -o json | <spec: {spec}> | kubectl replace --force -f -",
            name = target.name,
            ns = target.namespace
        );
    }
    let patch = serde_json::json!({"spec": {"template": {"spec": spec}}});
    if target.kind == crate::owner::WorkloadKind::Job {
        return recreated_job(
            target,
            &format!("kubectl patch --local -f - --type=strategic -p '{patch}' -o json"),
        );
    }
    format!(
        "kubectl patch {kind}/{} -n {} --type=strategic -p '{patch}'",
        target.name, target.namespace
    )
}

/// `kubectl set VERB` on the workload; a Job's template is immutable, so there the edit is made to the Job's JSON
/// and the Job recreated with it.
fn kubectl_set(target: &crate::owner::WorkloadRef, verb: &str, args: &str) -> String {
    if target.kind == crate::owner::WorkloadKind::Job {
        return recreated_job(
            target,
            &format!("kubectl set {verb} --local -f - {args} -o json"),
        );
    }
    format!(
        "kubectl set {verb} {}/{} {args} -n {}",
        target.kind.kubectl_name(),
        target.name,
        target.namespace
    )
}

/// A Job recreated with an edit: its JSON, edited offline, the selector and labels the API server generated for
/// the old Job dropped (it generates them again), replaced.
fn recreated_job(target: &crate::owner::WorkloadRef, edit: &str) -> String {
    format!(
        "kubectl get job/{name} -n {ns} -o json | {edit} | jq 'del(.spec.selector, .spec.template.metadata.labels[\"controller-uid\", \"batch.kubernetes.io/controller-uid\"])' | kubectl replace --force -f -",
        name = target.name,
        ns = target.namespace
    )
}

/// A merge patch of a label map: removed keys null, set keys their value.
fn selector_patch(
    remove: &[String],
    set: &std::collections::BTreeMap<String, String>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut selector = serde_json::Map::new();
    for k in remove {
        selector.insert(k.clone(), serde_json::Value::Null);
    }
    for (k, v) in set {
        selector.insert(k.clone(), serde_json::json!(v));
    }
    selector
}
