//! `meta.k8s.io/v1` Table responses, which `kubectl get` asks for and prints as columns.

use serde_json::{Value, json};

fn age(obj: &Value) -> String {
    let Some(ts) = obj["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    else {
        return "<unknown>".into();
    };
    let secs = (chrono::Utc::now() - ts.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// The STATUS column of `kubectl get pods`: the most specific reason a container is waiting or terminated.
fn pod_status(p: &Value) -> String {
    if !p["metadata"]["deletionTimestamp"].is_null() {
        return "Terminating".into();
    }
    let inits = p["status"]["initContainerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (i, c) in inits.iter().enumerate() {
        let state = &c["state"];
        if let Some(code) = state["terminated"]["exitCode"].as_i64() {
            if code == 0 {
                continue;
            }
            return format!(
                "Init:{}",
                state["terminated"]["reason"].as_str().unwrap_or("Error")
            );
        }
        return match state["waiting"]["reason"].as_str() {
            Some(r) if r != "PodInitializing" => format!("Init:{r}"),
            _ => format!("Init:{i}/{}", inits.len()),
        };
    }
    let mut reason = p["status"]["reason"]
        .as_str()
        .or(p["status"]["phase"].as_str())
        .unwrap_or("Pending")
        .to_string();
    for c in p["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(r) = c["state"]["waiting"]["reason"].as_str() {
            reason = r.to_string();
        } else if let Some(r) = c["state"]["terminated"]["reason"].as_str() {
            reason = r.to_string();
        }
    }
    reason
}

pub fn table(kind: &str, items: &[Value], rv: u64) -> Value {
    type Columns = Vec<(&'static str, &'static str)>;
    type Rows<'a> = Vec<(Vec<Value>, &'a Value)>;
    let (columns, rows): (Columns, Rows<'_>) = match kind {
        "Pod" => (
            vec![
                ("Name", "string"),
                ("Ready", "string"),
                ("Status", "string"),
                ("Restarts", "string"),
                ("Age", "string"),
                ("IP", "string"),
                ("Node", "string"),
            ],
            items
                .iter()
                .map(|p| {
                    let cs = p["status"]["containerStatuses"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    let total = p["spec"]["containers"]
                        .as_array()
                        .map(Vec::len)
                        .unwrap_or(0);
                    let ready = cs.iter().filter(|c| c["ready"] == true).count();
                    let restarts: i64 = cs
                        .iter()
                        .map(|c| c["restartCount"].as_i64().unwrap_or(0))
                        .sum();
                    (
                        vec![
                            p["metadata"]["name"].clone(),
                            json!(format!("{ready}/{total}")),
                            json!(pod_status(p)),
                            json!(restarts.to_string()),
                            json!(age(p)),
                            json!(p["status"]["podIP"].as_str().unwrap_or("<none>")),
                            json!(p["spec"]["nodeName"].as_str().unwrap_or("<none>")),
                        ],
                        p,
                    )
                })
                .collect(),
        ),
        "Deployment" => (
            vec![
                ("Name", "string"),
                ("Ready", "string"),
                ("Up-to-date", "integer"),
                ("Available", "integer"),
                ("Age", "string"),
            ],
            items
                .iter()
                .map(|d| {
                    let st = &d["status"];
                    let ready = format!(
                        "{}/{}",
                        st["readyReplicas"].as_i64().unwrap_or(0),
                        d["spec"]["replicas"].as_i64().unwrap_or(0)
                    );
                    (
                        vec![
                            d["metadata"]["name"].clone(),
                            json!(ready),
                            json!(st["updatedReplicas"].as_i64().unwrap_or(0)),
                            json!(st["availableReplicas"].as_i64().unwrap_or(0)),
                            json!(age(d)),
                        ],
                        d,
                    )
                })
                .collect(),
        ),
        "ReplicaSet" => (
            vec![
                ("Name", "string"),
                ("Desired", "integer"),
                ("Current", "integer"),
                ("Ready", "integer"),
                ("Age", "string"),
            ],
            items
                .iter()
                .map(|r| {
                    (
                        vec![
                            r["metadata"]["name"].clone(),
                            json!(r["spec"]["replicas"].as_i64().unwrap_or(0)),
                            json!(r["status"]["replicas"].as_i64().unwrap_or(0)),
                            json!(r["status"]["readyReplicas"].as_i64().unwrap_or(0)),
                            json!(age(r)),
                        ],
                        r,
                    )
                })
                .collect(),
        ),
        "Event" => (
            vec![
                ("Last Seen", "string"),
                ("Type", "string"),
                ("Reason", "string"),
                ("Object", "string"),
                ("Message", "string"),
            ],
            items
                .iter()
                .map(|e| {
                    let obj = format!(
                        "{}/{}",
                        e["involvedObject"]["kind"]
                            .as_str()
                            .unwrap_or_default()
                            .to_lowercase(),
                        e["involvedObject"]["name"].as_str().unwrap_or_default()
                    );
                    (
                        vec![
                            json!(age(e)),
                            e["type"].clone(),
                            e["reason"].clone(),
                            json!(obj),
                            e["message"].clone(),
                        ],
                        e,
                    )
                })
                .collect(),
        ),
        "Node" => (
            vec![
                ("Name", "string"),
                ("Status", "string"),
                ("Roles", "string"),
                ("Age", "string"),
                ("Version", "string"),
            ],
            items
                .iter()
                .map(|n| {
                    let ready = n["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True");
                    let mut status = if ready {
                        "Ready".to_string()
                    } else {
                        "NotReady".to_string()
                    };
                    if n["spec"]["unschedulable"] == true {
                        status.push_str(",SchedulingDisabled");
                    }
                    let roles: Vec<&str> = n["metadata"]["labels"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
                        .collect();
                    let roles = if roles.is_empty() {
                        "<none>".to_string()
                    } else {
                        roles.join(",")
                    };
                    (
                        vec![
                            n["metadata"]["name"].clone(),
                            json!(status),
                            json!(roles),
                            json!(age(n)),
                            n["status"]["nodeInfo"]["kubeletVersion"].clone(),
                        ],
                        n,
                    )
                })
                .collect(),
        ),
        "PersistentVolumeClaim" => (
            vec![
                ("Name", "string"),
                ("Status", "string"),
                ("Volume", "string"),
                ("Capacity", "string"),
                ("Access Modes", "string"),
                ("StorageClass", "string"),
                ("Age", "string"),
            ],
            items
                .iter()
                .map(|c| {
                    let modes: Vec<&str> = c["spec"]["accessModes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(|m| match m {
                            "ReadWriteOnce" => "RWO",
                            "ReadOnlyMany" => "ROX",
                            "ReadWriteMany" => "RWX",
                            "ReadWriteOncePod" => "RWOP",
                            o => o,
                        })
                        .collect();
                    let bound = c["status"]["phase"] == "Bound";
                    (
                        vec![
                            c["metadata"]["name"].clone(),
                            c["status"]["phase"].clone(),
                            json!(c["spec"]["volumeName"].as_str().unwrap_or("")),
                            json!(if bound {
                                c["status"]["capacity"]["storage"].as_str().unwrap_or("")
                            } else {
                                ""
                            }),
                            json!(if bound {
                                modes.join(",")
                            } else {
                                String::new()
                            }),
                            json!(c["spec"]["storageClassName"].as_str().unwrap_or("<unset>")),
                            json!(age(c)),
                        ],
                        c,
                    )
                })
                .collect(),
        ),
        "Service" => (
            vec![
                ("Name", "string"),
                ("Type", "string"),
                ("Cluster-IP", "string"),
                ("External-IP", "string"),
                ("Port(s)", "string"),
                ("Age", "string"),
            ],
            items
                .iter()
                .map(|svc| {
                    let ports: Vec<String> = svc["spec"]["ports"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|p| {
                            format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("TCP"))
                        })
                        .collect();
                    (
                        vec![
                            svc["metadata"]["name"].clone(),
                            svc["spec"]["type"].clone(),
                            json!(svc["spec"]["clusterIP"].as_str().unwrap_or("None")),
                            json!("<none>"),
                            json!(if ports.is_empty() {
                                "<none>".to_string()
                            } else {
                                ports.join(",")
                            }),
                            json!(age(svc)),
                        ],
                        svc,
                    )
                })
                .collect(),
        ),
        _ => (
            vec![("Name", "string"), ("Age", "string")],
            items
                .iter()
                .map(|o| (vec![o["metadata"]["name"].clone(), json!(age(o))], o))
                .collect(),
        ),
    };
    let column_definitions: Vec<Value> = columns
        .iter()
        .enumerate()
        .map(|(i, (n, t))| json!({"name": n, "type": t, "format": if i == 0 { "name" } else { "" }, "description": n, "priority": if *n == "IP" || *n == "Node" { 1 } else { 0 }}))
        .collect();
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|(cells, obj)| {
            json!({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv.to_string()},
           "columnDefinitions": column_definitions, "rows": rows})
}
