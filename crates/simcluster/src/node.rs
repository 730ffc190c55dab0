//! Fake-node mode: play the kubelet of one node against any API server (another simcluster, or a real control
//! plane), so the same failures can be produced there. The node registers itself and heartbeats; the pods bound to
//! it, and the ConfigMaps and Secrets they read, are mirrored into a local store that the ordinary kubelet runs
//! against; the statuses and events it writes are pushed back to the API server.

use crate::controllers::node_lifecycle::{LEASE_RENEW, lease_object};
use crate::store::{Change, ChangeType, node_object};
use crate::{Cluster, resources};
use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const HEARTBEAT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("registering node {node}: {source}")]
    Register { node: String, source: kube::Error },
    #[error("the kubelet API's listener: {0}")]
    Listen(std::io::Error),
    #[error("the kubelet API: {0}")]
    KubeletApi(crate::kubelet::server::KubeletServerError),
}

fn resource(group: &str, version: &str, kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

fn as_value(o: &DynamicObject) -> Option<Value> {
    let mut v = serde_json::to_value(o).ok()?;
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    Some(v)
}

/// Register the node and run until `shutdown` fires.
/// Where the node's kubelet API listens, and the address the node reports (its InternalIP).
pub struct KubeletApi {
    pub listener: tokio::net::TcpListener,
    pub address: String,
}

pub async fn run(
    client: Client,
    mut cluster: Cluster,
    schedule: bool,
    kubelet_api: KubeletApi,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), NodeError> {
    let node = cluster.node_name.clone();
    let port = kubelet_api
        .listener
        .local_addr()
        .map_err(NodeError::Listen)?
        .port();
    register(&client, &node, &kubelet_api.address, port)
        .await
        .map_err(|source| NodeError::Register {
            node: node.clone(),
            source,
        })?;
    tracing::info!(%node, address = %kubelet_api.address, port, "node registered");
    cluster.upstream = Some(client.clone());
    cluster.spawn_kubelet(shutdown.clone());
    let server = crate::kubelet::server::serve(
        cluster.clone(),
        kubelet_api.listener,
        &kubelet_api.address,
        shutdown.clone(),
    );
    let mut tasks = vec![
        tokio::spawn(mirror(
            client.clone(),
            cluster.clone(),
            resource("", "v1", "Pod"),
            Some(format!("spec.nodeName={node}")),
            true,
        )),
        tokio::spawn(mirror(
            client.clone(),
            cluster.clone(),
            resource("", "v1", "ConfigMap"),
            None,
            false,
        )),
        tokio::spawn(mirror(
            client.clone(),
            cluster.clone(),
            resource("", "v1", "Secret"),
            None,
            false,
        )),
        tokio::spawn(push(client.clone(), cluster.clone())),
        tokio::spawn(heartbeat(client.clone(), node.clone())),
        tokio::spawn(renew_lease(client.clone(), node.clone())),
    ];
    if schedule {
        tasks.push(tokio::spawn(bind_unscheduled(client.clone(), node.clone())));
    }
    let served = tokio::select! {
        served = server => served.map_err(NodeError::KubeletApi),
        _ = shutdown.changed() => Ok(()),
    };
    for t in tasks {
        t.abort();
    }
    served
}

async fn register(
    client: &Client,
    node: &str,
    address: &str,
    port: u16,
) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource("", "v1", "Node"));
    let mut obj = node_object(node);
    // Where the control plane reaches this node's kubelet API (`kubectl logs`).
    obj["status"]["addresses"] =
        json!([{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": node}]);
    obj["status"]["daemonEndpoints"] = json!({"kubeletEndpoint": {"Port": port}});
    let mut spec_only = obj.clone();
    if let Some(m) = spec_only.as_object_mut() {
        m.remove("status");
    }
    let dynamic: DynamicObject =
        serde_json::from_value(spec_only).map_err(kube::Error::SerdeError)?;
    match api.create(&PostParams::default(), &dynamic).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e),
    }
    api.patch_status(
        node,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": obj["status"]})),
    )
    .await?;
    Ok(())
}

/// The part of a scheduler a bare API server lacks: bind every unscheduled pod to this node (`pods/binding`).
async fn bind_unscheduled(client: Client, node: String) {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::all(client.clone());
    let cfg = watcher::Config::default().fields("spec.nodeName=");
    let mut stream = watcher::watcher(pods, cfg).boxed();
    while let Some(ev) = stream.next().await {
        let pod = match ev {
            Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => p,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "watch of unscheduled pods failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let (Some(ns), Some(name)) = (pod.metadata.namespace.clone(), pod.metadata.name.clone())
        else {
            continue;
        };
        if pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .is_some_and(|s| s != "default-scheduler")
        {
            continue;
        }
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": ns},
                             "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
        let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns);
        match api
            .create_subresource::<Value, Value>("binding", &name, &PostParams::default(), &binding)
            .await
        {
            Ok(_) => tracing::info!(pod = %name, %node, "bound pod"),
            Err(e) => tracing::debug!(pod = %name, error = %e, "could not bind pod"),
        }
    }
}

/// Create or renew the node's Lease in `kube-node-lease`, as a kubelet does every 10 s: without it, a real node
/// lifecycle controller declares the node lost after 40 s.
async fn renew_lease(client: Client, node: String) {
    let nodes: Api<DynamicObject> = Api::all_with(client.clone(), &resource("", "v1", "Node"));
    let leases: Api<DynamicObject> = Api::namespaced_with(
        client,
        "kube-node-lease",
        &resource("coordination.k8s.io", "v1", "Lease"),
    );
    loop {
        let uid = match nodes.get(&node).await {
            Ok(n) => n.metadata.uid.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the node for its Lease");
                tokio::time::sleep(LEASE_RENEW).await;
                continue;
            }
        };
        let lease = lease_object(&node, &uid);
        let renew =
            json!({"spec": {"renewTime": lease["spec"]["renewTime"], "holderIdentity": node}});
        let result = match leases
            .patch(&node, &PatchParams::default(), &Patch::Merge(renew))
            .await
        {
            Err(kube::Error::Api(s)) if s.code == 404 => {
                match serde_json::from_value::<DynamicObject>(lease) {
                    Ok(obj) => leases
                        .create(&PostParams::default(), &obj)
                        .await
                        .map(|_| ()),
                    Err(e) => Err(kube::Error::SerdeError(e)),
                }
            }
            other => other.map(|_| ()),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "node Lease renewal failed");
        }
        tokio::time::sleep(LEASE_RENEW).await;
    }
}

async fn heartbeat(client: Client, node: String) {
    let api: Api<DynamicObject> = Api::all_with(client, &resource("", "v1", "Node"));
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        let mut status = node_object(&node)["status"].clone();
        if let Some(m) = status.as_object_mut() {
            m.retain(|k, _| k == "conditions");
        }
        if let Err(e) = api
            .patch_status(
                &node,
                &PatchParams::default(),
                &Patch::Strategic(json!({"status": status})),
            )
            .await
        {
            tracing::warn!(error = %e, "node heartbeat failed");
        }
    }
}

/// Keep the local store in step with the API server for one kind of object.
async fn mirror(
    client: Client,
    cluster: Cluster,
    ar: ApiResource,
    fields: Option<String>,
    keep_status: bool,
) {
    let Some(rt) = resources::by_kind(&ar.kind) else {
        return;
    };
    let api: Api<DynamicObject> = Api::all_with(client, &ar);
    let mut cfg = watcher::Config::default();
    if let Some(f) = &fields {
        cfg = cfg.fields(f);
    }
    let mut seen: std::collections::HashSet<(String, String)> = Default::default();
    let mut relisting: std::collections::HashSet<(String, String)> = Default::default();
    let mut stream = watcher::watcher(api, cfg).boxed();
    while let Some(ev) = stream.next().await {
        let key = |o: &DynamicObject| {
            (
                o.metadata.namespace.clone().unwrap_or_default(),
                o.metadata.name.clone().unwrap_or_default(),
            )
        };
        match ev {
            Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::InitApply(o)) => {
                relisting.insert(key(&o));
                seen.insert(key(&o));
                if let Some(v) = as_value(&o) {
                    cluster.store.mirror_put(rt, v, keep_status);
                }
            }
            Ok(watcher::Event::Delete(o)) => {
                let (ns, name) = key(&o);
                seen.remove(&(ns.clone(), name.clone()));
                cluster.store.mirror_remove(rt, &ns, &name);
            }
            Ok(watcher::Event::Init) => relisting.clear(),
            Ok(watcher::Event::InitDone) => {
                // Whatever was here before the re-list and is not in it any more was deleted meanwhile.
                for (ns, name) in seen.difference(&relisting).cloned().collect::<Vec<_>>() {
                    cluster.store.mirror_remove(rt, &ns, &name);
                }
                seen = relisting.clone();
            }
            Err(e) => {
                tracing::warn!(kind = %ar.kind, error = %e, "watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Push what the local kubelet writes (pod statuses, events) to the API server.
async fn push(client: Client, cluster: Cluster) {
    let pods = resource("", "v1", "Pod");
    let events = resource("", "v1", "Event");
    let mut rx = cluster.store.subscribe();
    loop {
        let change: Arc<Change> = match rx.recv().await {
            Ok(c) => c,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                // Missed some changes: push every pod's current status.
                for p in cluster.store.list(resources::pods(), None).0 {
                    push_status(&client, &pods, &p).await;
                }
                continue;
            }
            Err(_) => return,
        };
        match (change.rt.kind, change.type_) {
            ("Pod", ChangeType::Modified)
                if change
                    .old
                    .as_ref()
                    .is_some_and(|o| o["status"] != change.object["status"]) =>
            {
                push_status(&client, &pods, &change.object).await;
            }
            ("Event", ChangeType::Added | ChangeType::Modified) => {
                push_event(&client, &events, &change.object).await
            }
            _ => {}
        }
    }
}

async fn push_status(client: &Client, ar: &ApiResource, pod: &Value) {
    let (Some(ns), Some(name)) = (
        pod["metadata"]["namespace"].as_str(),
        pod["metadata"]["name"].as_str(),
    ) else {
        return;
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
    let patch = json!({"status": pod["status"]});
    if let Err(e) = api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        tracing::debug!(pod = %name, error = %e, "could not push pod status");
    }
}

async fn push_event(client: &Client, ar: &ApiResource, event: &Value) {
    let (Some(ns), Some(name)) = (
        event["metadata"]["namespace"].as_str(),
        event["metadata"]["name"].as_str(),
    ) else {
        return;
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
    let mut fresh = event.clone();
    if let Some(m) = fresh["metadata"].as_object_mut() {
        m.retain(|k, _| k == "name" || k == "namespace");
    }
    let Ok(obj) = serde_json::from_value::<DynamicObject>(fresh) else {
        return;
    };
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let bump = json!({"count": event["count"], "lastTimestamp": event["lastTimestamp"]});
            let _ = api
                .patch(name, &PatchParams::default(), &Patch::Merge(bump))
                .await;
        }
        Err(e) => tracing::debug!(event = %name, error = %e, "could not push event"),
    }
}
