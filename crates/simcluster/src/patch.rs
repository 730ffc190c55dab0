//! JSON merge patch (RFC 7386), Kubernetes strategic merge patch, and JSON patch (RFC 6902).

use serde_json::{Map, Value};

/// RFC 7386: objects merge recursively, `null` deletes, everything else (lists included) replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// The merge key of a list field, as Kubernetes' `patchMergeKey` tags define it for the built-in types.
/// `None` means the list is replaced wholesale (`tolerations`, `args`, ...).
pub(crate) fn merge_key(field: &str, sample: Option<&Value>) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "ownerReferences" => Some("uid"),
        "conditions" => Some("type"),
        "hostAliases" => Some("ip"),
        "topologySpreadConstraints" => Some("topologyKey"),
        // Container ports merge on containerPort, Service ports on port.
        "ports" => Some(
            if sample.is_some_and(|s| s.get("containerPort").is_some()) {
                "containerPort"
            } else {
                "port"
            },
        ),
        _ => None,
    }
}

/// Primitive lists whose patch strategy is `merge` (union) rather than replace.
pub(crate) fn is_merged_primitive_list(field: &str) -> bool {
    field == "finalizers"
}

/// Strategic merge patch for the built-in types: like a merge patch, except that lists with a merge key merge
/// element by element (`$patch: delete` removes one, `$patch: replace` replaces the list), and the ordering
/// directives kubectl sends (`$setElementOrder/...`, `$retainKeys`) are accepted.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replacement = patch.clone();
        strip_directives(&mut replacement);
        *target = replacement;
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if k.starts_with('$') {
            continue;
        }
        match v {
            Value::Null => {
                t.remove(k);
            }
            Value::Array(items) => {
                let key = merge_key(k, items.iter().find(|i| i.is_object()));
                match (key, t.get_mut(k)) {
                    (Some(key), Some(Value::Array(existing))) => merge_list(existing, items, key),
                    (_, Some(Value::Array(existing))) if is_merged_primitive_list(k) => {
                        for item in items {
                            if !existing.contains(item) {
                                existing.push(item.clone());
                            }
                        }
                    }
                    _ => {
                        let mut fresh: Vec<Value> = items
                            .iter()
                            .filter(|i| i.get("$patch").and_then(Value::as_str) != Some("delete"))
                            .cloned()
                            .collect();
                        fresh.iter_mut().for_each(strip_directives);
                        t.insert(k.clone(), Value::Array(fresh));
                    }
                }
            }
            Value::Object(_) => strategic_merge_patch(t.entry(k.clone()).or_insert(Value::Null), v),
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
    }
}

fn merge_list(existing: &mut Vec<Value>, patch_items: &[Value], key: &str) {
    if patch_items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        *existing = patch_items
            .iter()
            .filter(|i| i.get("$patch").is_none())
            .cloned()
            .collect();
        return;
    }
    for item in patch_items {
        let Some(id) = item.get(key) else {
            existing.push(item.clone());
            continue;
        };
        let pos = existing.iter().position(|e| e.get(key) == Some(id));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                existing.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => strategic_merge_patch(&mut existing[i], item),
            (None, false) => {
                let mut fresh = item.clone();
                strip_directives(&mut fresh);
                existing.push(fresh);
            }
        }
    }
}

fn strip_directives(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.starts_with('$'));
            m.values_mut().for_each(strip_directives);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

/// RFC 6902 JSON patch.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| e.to_string())?;
    json_patch::patch(target, &ops.0).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386_examples() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
        ];
        for (mut target, patch, want) in cases {
            merge_patch(&mut target, &patch);
            assert_eq!(target, want, "{patch}");
        }
    }

    #[test]
    fn strategic_merge_keys_containers_by_name() {
        let pod = json!({"spec": {"containers": [
            {"name": "web", "image": "nginx:bad", "env": [{"name": "A", "value": "1"}], "ports": [{"containerPort": 80}]},
            {"name": "side", "image": "busybox"}
        ], "tolerations": [{"key": "a"}]}});
        let cases = [
            // kubectl set image
            (
                json!({"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}),
                json!({"spec": {"containers": [
                 {"name": "web", "image": "nginx:1.27", "env": [{"name": "A", "value": "1"}], "ports": [{"containerPort": 80}]},
                 {"name": "side", "image": "busybox"}], "tolerations": [{"key": "a"}]}}),
            ),
            // env merges by name, ports by containerPort; tolerations replace
            (
                json!({"spec": {"containers": [{"name": "web", "env": [{"name": "B", "value": "2"}], "ports": [{"containerPort": 80, "name": "http"}]}],
                             "tolerations": [{"key": "b"}]}}),
                json!({"spec": {"containers": [
                 {"name": "web", "image": "nginx:bad", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}], "ports": [{"containerPort": 80, "name": "http"}]},
                 {"name": "side", "image": "busybox"}], "tolerations": [{"key": "b"}]}}),
            ),
            // $patch: delete and kubectl apply's ordering directive
            (
                json!({"spec": {"$setElementOrder/containers": [{"name": "web"}], "containers": [{"name": "side", "$patch": "delete"}]}}),
                json!({"spec": {"containers": [
                 {"name": "web", "image": "nginx:bad", "env": [{"name": "A", "value": "1"}], "ports": [{"containerPort": 80}]}],
                 "tolerations": [{"key": "a"}]}}),
            ),
            // $patch: replace on a list
            (
                json!({"spec": {"containers": [{"name": "only", "image": "redis"}, {"$patch": "replace"}]}}),
                json!({"spec": {"containers": [{"name": "only", "image": "redis"}], "tolerations": [{"key": "a"}]}}),
            ),
        ];
        for (patch, want) in cases {
            let mut target = pod.clone();
            strategic_merge_patch(&mut target, &patch);
            assert_eq!(target, want, "{patch}");
        }
    }

    #[test]
    fn strategic_merge_unions_finalizers_and_deletes_nulls() {
        let mut o = json!({"metadata": {"finalizers": ["a"], "labels": {"x": "1", "y": "2"}}});
        strategic_merge_patch(
            &mut o,
            &json!({"metadata": {"finalizers": ["b", "a"], "labels": {"y": null}}}),
        );
        assert_eq!(
            o,
            json!({"metadata": {"finalizers": ["a", "b"], "labels": {"x": "1"}}})
        );
    }

    #[test]
    fn json_patch_ops() {
        let mut o = json!({"spec": {"replicas": 1, "containers": [{"name": "a", "image": "x"}]}});
        let ok = json_patch(
            &mut o,
            &json!([
                {"op": "test", "path": "/spec/replicas", "value": 1},
                {"op": "replace", "path": "/spec/containers/0/image", "value": "y"},
                {"op": "add", "path": "/spec/paused", "value": true}
            ]),
        );
        assert_eq!(ok, Ok(()));
        assert_eq!(
            o,
            json!({"spec": {"replicas": 1, "paused": true, "containers": [{"name": "a", "image": "y"}]}})
        );
        assert!(
            json_patch(
                &mut o,
                &json!([{"op": "test", "path": "/spec/replicas", "value": 2}])
            )
            .is_err()
        );
        assert!(json_patch(&mut o, &json!({"op": "add"})).is_err());
    }
}
