//! The endpoints and EndpointSlice controllers: a Service with a selector gets the addresses of the pods it selects —
//! ready ones as `addresses`, the others as `notReadyAddresses` (a slice's `conditions`) — with its ports resolved
//! against each pod's named container ports. A named target port no selected pod declares is left out, as the real
//! controllers do (`podutil.FindPort` fails, the port is skipped): the slice has endpoints but no such port, and
//! kube-proxy routes nothing for it. A Service's endpoints go with it.

use super::{name, ns, uid};
use crate::resources;
use crate::selector::matches_selector_object;
use crate::store::{DeleteOptions, Store};
use serde_json::{Value, json};

fn ready(p: &Value) -> bool {
    p["metadata"]["deletionTimestamp"].is_null()
        && p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// A Service port's target on a pod: a number, or the pod's container port of that name.
fn target_port(port: &Value, pod: &Value) -> Option<i64> {
    match &port["targetPort"] {
        Value::Number(n) => n.as_i64(),
        Value::String(named) => pod["spec"]["containers"]
            .as_array()?
            .iter()
            .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
            .find(|cp| cp["name"] == named.as_str())?["containerPort"]
            .as_i64(),
        _ => port["port"].as_i64(),
    }
}

/// Put `obj` in place of what is stored under its name, if it differs.
fn put(store: &Store, rt: &'static resources::ResourceType, namespace: &str, obj: Value) {
    let obj_name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    match store.get(rt, namespace, &obj_name) {
        Err(_) => {
            let _ = store.create(rt, namespace, obj, false);
        }
        Ok(current) => {
            let unchanged = ["subsets", "endpoints", "ports"]
                .iter()
                .all(|f| current.get(*f) == obj.get(*f));
            if !unchanged {
                let _ = store.modify(rt, namespace, &obj_name, false, false, |cur| {
                    let mut new = obj.clone();
                    new["metadata"] = cur["metadata"].clone();
                    new["metadata"]["resourceVersion"] = Value::Null;
                    Ok(new)
                });
            }
        }
    }
}

pub fn reconcile(store: &Store) {
    let (services, _) = store.list(resources::services(), None);
    let (pods, _) = store.list_shared(resources::pods(), None);
    for svc in &services {
        let Some(selector) = svc["spec"]["selector"]
            .as_object()
            .filter(|s| !s.is_empty())
        else {
            continue;
        };
        let wanted = json!({"matchLabels": selector});
        let namespace = ns(svc);
        let selected: Vec<&Value> = pods
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| {
                ns(p) == namespace
                    && matches_selector_object(&wanted, p)
                    && p["status"]["podIP"].is_string()
                    && !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
            })
            .collect();
        let svc_ports = svc["spec"]["ports"].as_array().cloned().unwrap_or_default();
        let ports: Vec<Value> = svc_ports
            .iter()
            .filter_map(|sp| {
                let port = selected.iter().find_map(|p| target_port(sp, p))?;
                let mut out =
                    json!({"port": port, "protocol": sp["protocol"].as_str().unwrap_or("TCP")});
                if let Some(n) = sp["name"].as_str().filter(|n| !n.is_empty()) {
                    out["name"] = json!(n);
                }
                Some(out)
            })
            .collect();
        let address = |p: &Value| {
            json!({"ip": p["status"]["podIP"], "nodeName": p["spec"]["nodeName"],
                   "targetRef": {"kind": "Pod", "name": name(p), "namespace": namespace, "uid": uid(p)}})
        };
        let (up, down): (Vec<&&Value>, Vec<&&Value>) = selected.iter().partition(|p| ready(p));
        let mut subset = json!({"ports": ports});
        if !up.is_empty() {
            subset["addresses"] = json!(up.iter().map(|p| address(p)).collect::<Vec<_>>());
        }
        if !down.is_empty() {
            subset["notReadyAddresses"] =
                json!(down.iter().map(|p| address(p)).collect::<Vec<_>>());
        }
        // A pod is an address of the ports found on it; with no port found, of none.
        let mut endpoints = json!({"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": name(svc), "namespace": namespace, "labels": svc["metadata"]["labels"]}});
        // `subsets` is omitempty: an Endpoints with no address has none.
        if !selected.is_empty() && !ports.is_empty() {
            endpoints["subsets"] = json!([subset]);
        }
        put(store, resources::endpoints(), namespace, endpoints);
        let slice_endpoints: Vec<Value> = selected
            .iter()
            .map(|p| {
                let is_ready = ready(p);
                json!({"addresses": [p["status"]["podIP"]], "nodeName": p["spec"]["nodeName"],
                       "conditions": {"ready": is_ready, "serving": is_ready, "terminating": !p["metadata"]["deletionTimestamp"].is_null()},
                       "targetRef": {"kind": "Pod", "name": name(p), "namespace": namespace, "uid": uid(p)}})
            })
            .collect();
        let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": format!("{}-{}", name(svc), &uid(svc).get(..5).unwrap_or("slice")), "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": name(svc), "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name(svc), "uid": uid(svc), "controller": true, "blockOwnerDeletion": true}]},
            "endpoints": slice_endpoints,
            // No port resolved: `null`, as a slice reads back from etcd (an empty repeated field is nil).
            "ports": if ports.is_empty() { Value::Null } else { json!(ports) }});
        put(store, resources::endpoint_slices(), namespace, slice);
    }
    // Endpoints of a Service that is gone go too (slices go with their owner, through the garbage collector).
    for ep in store.list(resources::endpoints(), None).0 {
        let gone = !services
            .iter()
            .any(|s| ns(s) == ns(&ep) && name(s) == name(&ep));
        if gone {
            let _ = store.delete(
                resources::endpoints(),
                ns(&ep),
                name(&ep),
                &DeleteOptions::default(),
            );
        }
    }
}
