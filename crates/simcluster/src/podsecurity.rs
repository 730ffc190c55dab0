//! Pod Security admission, as kube-apiserver enforces the Pod Security Standards: a namespace labelled
//! `pod-security.kubernetes.io/enforce: baseline|restricted` refuses a pod that violates that level, naming every
//! check it fails in the plugin's words (`violates PodSecurity "restricted:latest": ...`). `warn` and `audit` labels
//! and version pins are accepted and not acted on.

use serde_json::Value;

pub const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";

/// Capabilities the baseline level lets a container add.
const BASELINE_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Volume types the restricted level allows.
const RESTRICTED_VOLUMES: [&str; 8] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Every container of the pod, init and ephemeral ones included.
fn containers(pod: &Value) -> Vec<&Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|l| pod["spec"][l].as_array().into_iter().flatten())
        .collect()
}

fn name(c: &Value) -> &str {
    c["name"].as_str().unwrap_or_default()
}

/// `container "a"` or `containers "a", "b"`, as the plugin writes them.
fn named(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    let noun = if names.len() == 1 {
        "container"
    } else {
        "containers"
    };
    format!("{noun} {}", quoted.join(", "))
}

/// A check each container passes or fails: when some fail, `words` with `{}` naming them.
fn per_container(
    out: &mut Vec<String>,
    all: &[&Value],
    fails: impl Fn(&Value) -> bool,
    words: &str,
) {
    let failing: Vec<&str> = all.iter().filter(|c| fails(c)).map(|c| name(c)).collect();
    if !failing.is_empty() {
        out.push(words.replace("{}", &named(&failing)));
    }
}

/// The checks a pod fails at `level` (`baseline` or `restricted`), each as the plugin words it.
pub fn violations(level: &str, pod: &Value) -> Vec<String> {
    let spec = &pod["spec"];
    let all = containers(pod);
    let mut out = Vec::new();
    let host: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .iter()
        .filter(|f| spec[**f] == true)
        .map(|f| format!("{f}=true"))
        .collect();
    if !host.is_empty() {
        out.push(format!("host namespaces ({})", host.join(", ")));
    }
    per_container(
        &mut out,
        &all,
        |c| c["securityContext"]["privileged"] == true,
        "privileged ({} must not set securityContext.privileged=true)",
    );
    let mut added: Vec<String> = Vec::new();
    let mut adders: Vec<&str> = Vec::new();
    for c in &all {
        let bad: Vec<&str> = c["securityContext"]["capabilities"]["add"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|cap| !BASELINE_CAPABILITIES.contains(cap))
            .collect();
        if !bad.is_empty() {
            adders.push(name(c));
            for cap in bad {
                let q = format!("{cap:?}");
                if !added.contains(&q) {
                    added.push(q);
                }
            }
        }
    }
    if !adders.is_empty() {
        out.push(format!(
            "non-default capabilities ({} must not include {} in securityContext.capabilities.add)",
            named(&adders),
            added.join(", ")
        ));
    }
    let host_paths: Vec<String> = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v.get("hostPath").is_some())
        .map(|v| format!("{:?}", v["name"].as_str().unwrap_or_default()))
        .collect();
    if !host_paths.is_empty() {
        let noun = if host_paths.len() == 1 {
            "volume"
        } else {
            "volumes"
        };
        out.push(format!(
            "hostPath volumes ({noun} {})",
            host_paths.join(", ")
        ));
    }
    let mut ports: Vec<String> = Vec::new();
    let mut port_users: Vec<&str> = Vec::new();
    for c in &all {
        let used: Vec<String> = c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["hostPort"].as_i64().filter(|h| *h != 0))
            .map(|h| h.to_string())
            .collect();
        if !used.is_empty() {
            port_users.push(name(c));
            ports.extend(used);
        }
    }
    if !port_users.is_empty() {
        out.push(format!(
            "hostPort ({} uses hostPort {})",
            named(&port_users),
            ports.join(", ")
        ));
    }
    if level != "restricted" {
        return out;
    }
    let restricted_volumes: Vec<String> = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let kind = v.as_object()?.keys().find(|k| *k != "name")?.to_string();
            (!RESTRICTED_VOLUMES.contains(&kind.as_str())).then(|| {
                format!(
                    "{:?} uses restricted volume type {kind:?}",
                    v["name"].as_str().unwrap_or_default()
                )
            })
        })
        .collect();
    if !restricted_volumes.is_empty() {
        out.push(format!(
            "restricted volume types (volume {})",
            restricted_volumes.join(", ")
        ));
    }
    per_container(
        &mut out,
        &all,
        |c| c["securityContext"]["allowPrivilegeEscalation"] != false,
        "allowPrivilegeEscalation != false ({} must set securityContext.allowPrivilegeEscalation=false)",
    );
    per_container(
        &mut out,
        &all,
        |c| {
            let caps = &c["securityContext"]["capabilities"];
            let drops_all = caps["drop"]
                .as_array()
                .is_some_and(|d| d.iter().any(|x| x == "ALL"));
            let adds_only_bind = caps["add"]
                .as_array()
                .is_none_or(|a| a.iter().all(|x| x == "NET_BIND_SERVICE"));
            !(drops_all && adds_only_bind)
        },
        "unrestricted capabilities ({} must set securityContext.capabilities.drop=[\"ALL\"])",
    );
    let pod_non_root = spec["securityContext"]["runAsNonRoot"] == true;
    per_container(
        &mut out,
        &all,
        |c| match c["securityContext"]["runAsNonRoot"].as_bool() {
            Some(v) => !v,
            None => !pod_non_root,
        },
        "runAsNonRoot != true (pod or {} must set securityContext.runAsNonRoot=true)",
    );
    let as_root: Vec<&str> = all
        .iter()
        .filter(|c| c["securityContext"]["runAsUser"] == 0)
        .map(|c| name(c))
        .collect();
    if spec["securityContext"]["runAsUser"] == 0 {
        out.push("runAsUser=0 (pod must not set runAsUser=0)".into());
    } else if !as_root.is_empty() {
        out.push(format!(
            "runAsUser=0 ({} must not set runAsUser=0)",
            named(&as_root)
        ));
    }
    let confined = |sc: &Value| {
        matches!(
            sc["seccompProfile"]["type"].as_str(),
            Some("RuntimeDefault" | "Localhost")
        )
    };
    let pod_confined = confined(&spec["securityContext"]);
    per_container(
        &mut out,
        &all,
        |c| {
            let sc = &c["securityContext"];
            if sc["seccompProfile"].is_null() {
                !pod_confined
            } else {
                !confined(sc)
            }
        },
        "seccompProfile (pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")",
    );
    out
}

/// Admit a pod into a namespace with these labels: `Err(why)` in the plugin's words.
pub fn admit(namespace_labels: &Value, pod: &Value) -> Result<(), String> {
    let level = match namespace_labels[ENFORCE_LABEL].as_str() {
        Some(l @ ("baseline" | "restricted")) => l,
        _ => return Ok(()),
    };
    let v = violations(level, pod);
    if v.is_empty() {
        return Ok(());
    }
    Err(format!(
        "violates PodSecurity \"{level}:latest\": {}",
        v.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_levels_refuse_what_the_standards_forbid_in_the_plugins_words() {
        let root = json!({"spec": {"containers": [{"name": "web", "image": "nginx"}]}});
        let hardened = json!({"spec": {
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "web", "image": "nginx", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}});
        let privileged = json!({"spec": {"hostNetwork": true,
            "volumes": [{"name": "host", "hostPath": {"path": "/"}}],
            "containers": [{"name": "agent", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}],
                            "securityContext": {"privileged": true, "capabilities": {"add": ["NET_ADMIN", "CHOWN"]}}}]}});
        let baseline = |labels: Value, pod: &Value| admit(&labels, pod);
        let enforce = |level: &str| json!({ENFORCE_LABEL: level});
        let cases: Vec<(Value, &Value, Result<(), &str>)> = vec![
            (json!({}), &privileged, Ok(())),
            (enforce("privileged"), &privileged, Ok(())),
            (enforce("baseline"), &root, Ok(())),
            (
                enforce("baseline"),
                &privileged,
                Err(
                    "violates PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true), privileged (container \"agent\" must not set securityContext.privileged=true), non-default capabilities (container \"agent\" must not include \"NET_ADMIN\" in securityContext.capabilities.add), hostPath volumes (volume \"host\"), hostPort (container \"agent\" uses hostPort 8080)",
                ),
            ),
            (
                enforce("restricted"),
                &root,
                Err(
                    "violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"web\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"web\" must set securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod or container \"web\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container \"web\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")",
                ),
            ),
            (enforce("restricted"), &hardened, Ok(())),
        ];
        for (labels, pod, want) in cases {
            assert_eq!(
                baseline(labels.clone(), pod),
                want.map_err(String::from),
                "{labels} {pod}"
            );
        }
        let two = json!({"spec": {"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {"name": "a", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}},
                {"name": "b"}, {"name": "c"}]}});
        assert_eq!(
            violations("restricted", &two),
            [
                "allowPrivilegeEscalation != false (containers \"b\", \"c\" must set securityContext.allowPrivilegeEscalation=false)",
                "unrestricted capabilities (containers \"b\", \"c\" must set securityContext.capabilities.drop=[\"ALL\"])"
            ]
        );
    }
}
