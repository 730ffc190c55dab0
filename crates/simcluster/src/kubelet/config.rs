//! What a container needs from the API before it can be created: its environment (values, ConfigMap and Secret
//! keys, the downward API) and the ConfigMaps and Secrets its volumes mount. What is missing is the kubelet's
//! `CreateContainerConfigError` or `FailedMount`.

use crate::{Cluster, resources};
use serde_json::Value;
use std::collections::BTreeMap;

pub(super) type ConfigError = (&'static str, String);

fn lookup(cluster: &Cluster, kind: &str, ns: &str, name: &str) -> Option<Value> {
    let rt = resources::by_kind(kind)?;
    cluster.store.get(rt, ns, name).ok()
}

fn config_value(obj: &Value, kind: &str, key: &str) -> Option<String> {
    if kind == "Secret" {
        obj["data"][key]
            .as_str()
            .map(base64_decode)
            .or_else(|| obj["stringData"][key].as_str().map(String::from))
    } else {
        obj["data"][key].as_str().map(String::from)
    }
}

/// The container's environment, or the kubelet's `CreateContainerConfigError` message.
pub(super) fn resolve_env(
    cluster: &Cluster,
    ns: &str,
    pod: &Value,
    spec: &Value,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut env = BTreeMap::new();
    for from in spec["envFrom"].as_array().into_iter().flatten() {
        for (field, kind) in [("configMapRef", "ConfigMap"), ("secretRef", "Secret")] {
            let r = &from[field];
            let Some(name) = r["name"].as_str() else {
                continue;
            };
            match lookup(cluster, kind, ns, name) {
                Some(obj) => {
                    let prefix = from["prefix"].as_str().unwrap_or("");
                    for key in obj["data"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, _)| k.clone())
                    {
                        if let Some(v) = config_value(&obj, kind, &key) {
                            env.insert(format!("{prefix}{key}"), v);
                        }
                    }
                }
                None if r["optional"] == true => {}
                None => {
                    return Err((
                        "CreateContainerConfigError",
                        format!("{} \"{name}\" not found", kind.to_lowercase()),
                    ));
                }
            }
        }
    }
    for e in spec["env"].as_array().into_iter().flatten() {
        let Some(var) = e["name"].as_str() else {
            continue;
        };
        if let Some(v) = e["value"].as_str() {
            env.insert(var.to_string(), v.to_string());
            continue;
        }
        let vf = &e["valueFrom"];
        if let Some(field) = vf["fieldRef"]["fieldPath"].as_str() {
            let v = match field {
                "metadata.name" => pod["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                "metadata.namespace" => ns.to_string(),
                "spec.nodeName" => cluster.node_name.clone(),
                "status.podIP" => pod["status"]["podIP"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                _ => String::new(),
            };
            env.insert(var.to_string(), v);
            continue;
        }
        for (field, kind) in [("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")] {
            let r = &vf[field];
            let (Some(name), Some(key)) = (r["name"].as_str(), r["key"].as_str()) else {
                continue;
            };
            let optional = r["optional"] == true;
            match lookup(cluster, kind, ns, name) {
                None if optional => {}
                None => {
                    return Err((
                        "CreateContainerConfigError",
                        format!("{} \"{name}\" not found", kind.to_lowercase()),
                    ));
                }
                Some(obj) => match config_value(&obj, kind, key) {
                    Some(v) => {
                        env.insert(var.to_string(), v);
                    }
                    None if optional => {}
                    None => {
                        return Err((
                            "CreateContainerConfigError",
                            format!("couldn't find key {key} in {kind} {ns}/{name}"),
                        ));
                    }
                },
            }
        }
    }
    Ok(env)
}

/// ConfigMap and Secret volumes must exist before containers can be created.
pub(super) fn mounts_ok(cluster: &Cluster, ns: &str, pod: &Value) -> Result<(), ConfigError> {
    for v in pod["spec"]["volumes"].as_array().into_iter().flatten() {
        let vol = v["name"].as_str().unwrap_or_default();
        for (field, kind, key) in [
            ("configMap", "ConfigMap", "name"),
            ("secret", "Secret", "secretName"),
        ] {
            let src = &v[field];
            let Some(name) = src[key].as_str() else {
                continue;
            };
            if src["optional"] != true && lookup(cluster, kind, ns, name).is_none() {
                return Err((
                    "FailedMount",
                    format!(
                        "MountVolume.SetUp failed for volume \"{vol}\" : {} \"{name}\" not found",
                        kind.to_lowercase()
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn base64_decode(s: &str) -> String {
    let mut bits: u32 = 0;
    let mut n = 0;
    let mut out = Vec::new();
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => continue,
        };
        bits = (bits << 6) | u32::from(v);
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_are_base64() {
        assert_eq!(base64_decode("cGFzc3dvcmQ="), "password");
        assert_eq!(base64_decode(""), "");
    }
}
