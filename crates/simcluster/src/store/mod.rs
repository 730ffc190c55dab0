//! The object store behind the API server: one resourceVersion sequence for everything, a bounded history of
//! changes so a watch can resume from a resourceVersion (older than the history: 410 Gone), and a broadcast
//! of every change to watchers and controllers.

use crate::admission;
use crate::error::ApiError;
use crate::resources::{self, ResourceType};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

mod delete;

const HISTORY: usize = 20_000;
const BROADCAST_CAPACITY: usize = 16_384;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    Added,
    Modified,
    Deleted,
}

impl ChangeType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

#[derive(Debug)]
pub struct Change {
    pub rv: u64,
    pub type_: ChangeType,
    pub rt: &'static ResourceType,
    pub object: Value,
    pub old: Option<Value>,
}

type Key = (&'static str, &'static str);
pub const FOREGROUND: &str = "foregroundDeletion";
pub type ChangeReceiver = broadcast::Receiver<Arc<Change>>;

#[derive(Default)]
struct Inner {
    rv: u64,
    /// Shared, so that a list takes its snapshot under the lock by counting references and copies the objects
    /// after releasing it: the controllers list every pod on each pass, and copying 1,000 pods under the lock
    /// stalled every write meanwhile (a status PATCH waited ~30 ms; the real API server lists from its watch cache).
    objects: HashMap<Key, BTreeMap<(String, String), Arc<Value>>>,
    history: VecDeque<Arc<Change>>,
}

impl Inner {
    /// The stored object, by the key the store files it under (namespace "" for cluster-scoped objects).
    fn find(&self, rt: &ResourceType, ns_key: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&key(rt))
            .and_then(|m| m.get(&(ns_key.to_string(), name.to_string())))
            .map(|v| v.as_ref())
    }

    /// The objects of a type in one namespace.
    fn in_namespace(&self, rt: &ResourceType, ns: &str) -> Vec<&Value> {
        self.objects
            .get(&key(rt))
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(|((n, _), _)| n == ns)
            .map(|(_, v)| v.as_ref())
            .collect()
    }

    /// The StorageClass annotated as the cluster's default.
    fn default_storage_class(&self) -> Option<String> {
        self.objects
            .get(&key(resources::storage_classes()))?
            .values()
            .find(|sc| sc["metadata"]["annotations"][DEFAULT_CLASS] == "true")
            .and_then(|sc| sc["metadata"]["name"].as_str().map(String::from))
    }

    fn find_or_404(&self, rt: &ResourceType, ns_key: &str, name: &str) -> Result<Value, ApiError> {
        self.find(rt, ns_key, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.qualified(), name))
    }
}

pub struct Store {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<Change>>,
}

/// What a delete request asks for besides the name.
#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub orphan: bool,
    /// Foreground cascading deletion: the object stays (with the `foregroundDeletion` finalizer) until the
    /// garbage collector has deleted its dependents.
    pub foreground: bool,
    pub dry_run: bool,
    /// `gracePeriodSeconds`: `None` takes the object's own (a pod's `terminationGracePeriodSeconds`).
    pub grace_period: Option<i64>,
}

/// The namespace an object is filed under: its own, or "" for cluster-scoped kinds.
fn ns_key(rt: &ResourceType, ns: &str) -> String {
    if rt.namespaced {
        ns.to_string()
    } else {
        String::new()
    }
}

fn key(rt: &ResourceType) -> Key {
    (rt.group, rt.plural)
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj["metadata"][field].as_str().unwrap_or_default()
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        Self {
            inner: Mutex::new(Inner::default()),
            tx,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving rather than poison every request.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.tx.subscribe()
    }

    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    pub fn get(&self, rt: &'static ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.lock().find_or_404(rt, ns, name)
    }

    /// All objects of a type (in one namespace, or all when `ns` is `None`), and the list's resourceVersion.
    pub fn list(&self, rt: &'static ResourceType, ns: Option<&str>) -> (Vec<Value>, u64) {
        let (shared, rv) = self.list_shared(rt, ns);
        (shared.into_iter().map(Arc::unwrap_or_clone).collect(), rv)
    }

    /// [`Store::list`] without copying the objects, for readers that only look.
    pub fn list_shared(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
    ) -> (Vec<Arc<Value>>, u64) {
        let inner = self.lock();
        let items = inner
            .objects
            .get(&key(rt))
            .map(|m| {
                m.iter()
                    .filter(|((n, _), _)| ns.is_none_or(|want| want == n))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default();
        (items, inner.rv)
    }

    /// Changes after `from_rv` still in history plus a receiver for what follows, taken atomically.
    /// `None` for `from_rv` gives the current objects as synthetic ADDED changes.
    pub fn watch(
        &self,
        rt: &'static ResourceType,
        from_rv: Option<u64>,
    ) -> Result<(Vec<Arc<Change>>, ChangeReceiver), ApiError> {
        let inner = self.lock();
        let rx = self.tx.subscribe();
        let backlog = match from_rv {
            None => inner
                .objects
                .get(&key(rt))
                .into_iter()
                .flat_map(|m| m.values())
                .map(|o| {
                    let rv = o["metadata"]["resourceVersion"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(inner.rv);
                    Arc::new(Change {
                        rv,
                        type_: ChangeType::Added,
                        rt,
                        object: Value::clone(o),
                        old: None,
                    })
                })
                .collect(),
            Some(rv) => {
                let oldest = inner.history.front().map(|c| c.rv).unwrap_or(inner.rv + 1);
                if rv < inner.rv && rv + 1 < oldest {
                    return Err(ApiError::gone(format!(
                        "too old resource version: {rv} ({})",
                        oldest.saturating_sub(1)
                    )));
                }
                inner
                    .history
                    .iter()
                    .filter(|c| c.rv > rv && std::ptr::eq(c.rt, rt))
                    .cloned()
                    .collect()
            }
        };
        Ok((backlog, rx))
    }

    pub fn create(
        &self,
        rt: &'static ResourceType,
        ns: &str,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request was not a JSON object",
            ));
        }
        let obj_ns = meta_str(&obj, "namespace").to_string();
        if rt.namespaced && !obj_ns.is_empty() && obj_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let mut name = meta_str(&obj, "name").to_string();
        if name.is_empty() {
            let prefix = meta_str(&obj, "generateName");
            if prefix.is_empty() {
                return Err(ApiError::invalid(
                    rt.kind,
                    "",
                    vec![cause(
                        "FieldValueRequired",
                        "metadata.name",
                        "Required value: name or generateName is required",
                    )],
                ));
            }
            name = format!("{prefix}{}", random_suffix(5));
        }
        let mut inner = self.lock();
        if rt.namespaced {
            match inner.find(resources::namespaces(), "", ns) {
                None => return Err(ApiError::not_found("namespaces", ns)),
                Some(n) if !n["metadata"]["deletionTimestamp"].is_null() => {
                    return Err(ApiError::forbidden(
                        &rt.qualified(),
                        &name,
                        &format!(
                            "unable to create new content in namespace {ns} because it is being terminated"
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        let ns_key = ns_key(rt, ns);
        if inner.find(rt, &ns_key, &name).is_some() {
            return Err(ApiError::already_exists(&rt.qualified(), &name));
        }
        {
            let meta = ensure_object(&mut obj, "metadata");
            meta.insert("name".into(), json!(name));
            if rt.namespaced {
                meta.insert("namespace".into(), json!(ns));
            } else {
                meta.remove("namespace");
            }
            meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            meta.insert("creationTimestamp".into(), json!(now()));
            meta.remove("deletionTimestamp");
            if rt.has_status && rt.kind != "Pod" {
                meta.insert("generation".into(), json!(1));
            }
        }
        obj["kind"] = json!(rt.kind);
        obj["apiVersion"] = json!(rt.api_version());
        admission::admit(rt, None, &mut obj)?;
        if rt.kind == "PersistentVolumeClaim"
            && obj["spec"]
                .get("storageClassName")
                .is_none_or(Value::is_null)
            && let Some(class) = inner.default_storage_class()
        {
            // The DefaultStorageClass admission plugin.
            obj["spec"]["storageClassName"] = json!(class);
        }
        if rt.kind == "Pod" {
            // The ServiceAccount admission plugin: a pod runs as an account that exists.
            let sa = obj["spec"]["serviceAccountName"]
                .as_str()
                .unwrap_or("default");
            if inner.find(resources::service_accounts(), ns, sa).is_none() {
                return Err(ApiError::forbidden(
                    "pods",
                    &name,
                    &format!(
                        "error looking up service account {ns}/{sa}: serviceaccount \"{sa}\" not found"
                    ),
                ));
            }
        }
        if rt.kind == "Pod" {
            // The PodSecurity admission plugin, then ResourceQuota (the last, as in kube-apiserver's order).
            if let Some(namespace) = inner.find(resources::namespaces(), "", ns) {
                crate::podsecurity::admit(&namespace["metadata"]["labels"], &obj)
                    .map_err(|why| ApiError::forbidden("pods", &name, &why))?;
            }
            let quotas = inner.in_namespace(resources::resource_quotas(), ns);
            if !quotas.is_empty() {
                let pods = inner.in_namespace(resources::pods(), ns);
                crate::quota::admit(&quotas, &pods, &obj)
                    .map_err(|why| ApiError::forbidden("pods", &name, &why))?;
            }
        }
        if dry_run {
            obj["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
            return Ok(obj);
        }
        Ok(self.commit(&mut inner, rt, ns_key, name, ChangeType::Added, obj, None))
    }

    /// PUT: replace the object (or only its status with `status_only`), refusing a stale resourceVersion.
    pub fn update(
        &self,
        rt: &'static ResourceType,
        ns: &str,
        name: &str,
        new: Value,
        status_only: bool,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        self.modify(rt, ns, name, status_only, dry_run, |_| Ok(new))
    }

    /// Read-modify-write under the store lock: `f` gets the current object and returns the new one. If the new
    /// object carries a resourceVersion, it must be the current one (optimistic concurrency).
    pub fn modify(
        &self,
        rt: &'static ResourceType,
        ns: &str,
        name: &str,
        status_only: bool,
        dry_run: bool,
        f: impl FnOnce(&Value) -> Result<Value, ApiError>,
    ) -> Result<Value, ApiError> {
        let ns_key = ns_key(rt, ns);
        let mut inner = self.lock();
        let old = inner.find_or_404(rt, &ns_key, name)?;
        let mut new = f(&old)?;
        if !new.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request was not a JSON object",
            ));
        }
        let sent_rv = meta_str(&new, "resourceVersion");
        if !sent_rv.is_empty() && sent_rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::conflict(
                &rt.qualified(),
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        let sent_name = meta_str(&new, "name");
        if !sent_name.is_empty() && sent_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({sent_name}) does not match the name on the URL ({name})"
            )));
        }
        if status_only {
            let status = new.get("status").cloned().unwrap_or(Value::Null);
            new = old.clone();
            new["status"] = status;
        } else if rt.has_status {
            new["status"] = old.get("status").cloned().unwrap_or(Value::Null);
        }
        // Fields the server owns.
        for field in [
            "uid",
            "creationTimestamp",
            "name",
            "namespace",
            "generation",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            match old["metadata"].get(field) {
                Some(v) => new["metadata"][field] = v.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(field);
                    }
                }
            }
        }
        new["kind"] = json!(rt.kind);
        new["apiVersion"] = json!(rt.api_version());
        if !status_only {
            admission::admit(rt, Some(&old), &mut new)?;
        }
        if rt.has_status && rt.kind != "Pod" && new.get("spec") != old.get("spec") {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            new["metadata"]["generation"] = json!(generation);
        }
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        if new == old || dry_run {
            return Ok(new);
        }
        // The last finalizer removed from an object whose deletion waits for nothing else removes it (a pod
        // that is still terminating waits for its kubelet's final delete).
        let deleting = !new["metadata"]["deletionTimestamp"].is_null()
            && finalizers_empty(&new)
            && new["metadata"]["deletionGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(0)
                == 0;
        if deleting {
            return Ok(self.commit(
                &mut inner,
                rt,
                ns_key,
                name.to_string(),
                ChangeType::Deleted,
                new,
                Some(old),
            ));
        }
        Ok(self.commit(
            &mut inner,
            rt,
            ns_key,
            name.to_string(),
            ChangeType::Modified,
            new,
            Some(old),
        ))
    }

    /// Assign a pod to a node (the `pods/binding` subresource): the one write that may set `spec.nodeName`.
    pub fn bind(&self, ns: &str, name: &str, node: &str) -> Result<Value, ApiError> {
        let rt = resources::pods();
        let mut inner = self.lock();
        let ns_key = ns.to_string();
        let old = inner.find_or_404(rt, &ns_key, name)?;
        if old["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty())
        {
            return Err(ApiError::conflict(
                "pods",
                name,
                "pod is already assigned to a node",
            ));
        }
        let mut new = old.clone();
        new["spec"]["nodeName"] = json!(node);
        Ok(self.commit(
            &mut inner,
            rt,
            ns_key,
            name.to_string(),
            ChangeType::Modified,
            new,
            Some(old),
        ))
    }

    /// Put an object read from another API server into this store as it is (uid, spec, metadata), keeping the
    /// local status of an object already here when `keep_status`: the kubelet of a fake node owns the status.
    pub fn mirror_put(&self, rt: &'static ResourceType, mut obj: Value, keep_status: bool) {
        let ns = meta_str(&obj, "namespace").to_string();
        let name = meta_str(&obj, "name").to_string();
        let mut inner = self.lock();
        if rt.namespaced && inner.find(resources::namespaces(), "", &ns).is_none() {
            let ns_obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "uid": uuid::Uuid::new_v4().to_string()}});
            self.commit(
                &mut inner,
                resources::namespaces(),
                String::new(),
                ns.clone(),
                ChangeType::Added,
                ns_obj,
                None,
            );
        }
        let ns_key = if rt.namespaced { ns } else { String::new() };
        let old = inner.find(rt, &ns_key, &name).cloned();
        if let (true, Some(o)) = (keep_status, &old)
            && o["metadata"]["uid"] == obj["metadata"]["uid"]
        {
            obj["status"] = o["status"].clone();
        }
        let type_ = if old.is_some() {
            ChangeType::Modified
        } else {
            ChangeType::Added
        };
        self.commit(&mut inner, rt, ns_key, name, type_, obj, old);
    }

    /// Remove a mirrored object that is gone from the other API server.
    pub fn mirror_remove(&self, rt: &'static ResourceType, ns: &str, name: &str) {
        let ns_key = ns_key(rt, ns);
        let mut inner = self.lock();
        if let Some(old) = inner.find(rt, &ns_key, name).cloned() {
            self.commit(
                &mut inner,
                rt,
                ns_key,
                name.to_string(),
                ChangeType::Deleted,
                old.clone(),
                Some(old),
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn commit(
        &self,
        inner: &mut Inner,
        rt: &'static ResourceType,
        ns_key: String,
        name: String,
        type_: ChangeType,
        mut obj: Value,
        old: Option<Value>,
    ) -> Value {
        inner.rv += 1;
        let rv = inner.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let map = inner.objects.entry(key(rt)).or_default();
        match type_ {
            ChangeType::Deleted => {
                map.remove(&(ns_key, name));
            }
            _ => {
                map.insert((ns_key, name), Arc::new(obj.clone()));
            }
        }
        let change = Arc::new(Change {
            rv,
            type_,
            rt,
            object: obj.clone(),
            old,
        });
        inner.history.push_back(change.clone());
        if inner.history.len() > HISTORY {
            inner.history.pop_front();
        }
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(change);
        obj
    }
}

fn finalizers_empty(obj: &Value) -> bool {
    obj["metadata"]["finalizers"]
        .as_array()
        .is_none_or(|f| f.is_empty())
}

fn orphan_dependents(inner: &mut Inner, owner_uid: &str) {
    for map in inner.objects.values_mut() {
        for obj in map.values_mut() {
            let owned = obj["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| refs.iter().any(|r| r["uid"].as_str() == Some(owner_uid)));
            if !owned {
                continue;
            }
            let refs = Arc::make_mut(obj)
                .get_mut("metadata")
                .and_then(|m| m.get_mut("ownerReferences"))
                .and_then(Value::as_array_mut);
            if let Some(refs) = refs {
                refs.retain(|r| r["uid"].as_str() != Some(owner_uid));
            }
        }
    }
}

fn ensure_object<'a>(v: &'a mut Value, field: &str) -> &'a mut serde_json::Map<String, Value> {
    if !v[field].is_object() {
        v[field] = json!({});
    }
    match &mut v[field] {
        Value::Object(m) => m,
        _ => unreachable!("just made it an object"),
    }
}

pub fn cause(reason: &str, field: &str, message: &str) -> (String, String, String) {
    (reason.to_string(), field.to_string(), message.to_string())
}

/// The alphabet Kubernetes uses for generated name suffixes (no vowels, no look-alikes).
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

pub fn random_suffix(n: usize) -> String {
    let bytes = uuid::Uuid::new_v4();
    bytes
        .as_bytes()
        .iter()
        .take(n)
        .map(|b| SUFFIX_ALPHABET[*b as usize % SUFFIX_ALPHABET.len()] as char)
        .collect()
}

/// The annotation that makes a StorageClass the cluster's default.
pub const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";

/// The namespaces every cluster starts with, each with its `default` ServiceAccount, and the default StorageClass
/// (`standard`, provisioned at once, as kind's and most local clusters' is).
pub fn bootstrap(store: &Store) {
    let _ = store.create(
        resources::storage_classes(),
        "",
        json!({"metadata": {"name": "standard", "annotations": {DEFAULT_CLASS: "true"}},
               "provisioner": "simcluster.io/local", "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"}),
        false,
    );
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let _ = store.create(
            resources::namespaces(),
            "",
            json!({"metadata": {"name": ns}}),
            false,
        );
        ensure_default_service_account(store, ns);
    }
}

/// The ServiceAccounts controller's job: every namespace has a `default` ServiceAccount.
pub fn ensure_default_service_account(store: &Store, ns: &str) {
    let sa = resources::service_accounts();
    if store.get(sa, ns, "default").is_err() {
        let _ = store.create(sa, ns, json!({"metadata": {"name": "default"}}), false);
    }
}

/// A Ready node with 4 CPUs and 8Gi of memory, as a kubelet registers itself.
pub fn node_object(node: &str) -> Value {
    let ts = now();
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": node, "labels": {
            "kubernetes.io/hostname": node, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "type": "simcluster"}},
        "spec": {"podCIDR": "10.244.0.0/24"},
        "status": {
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "100Gi"},
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "100Gi"},
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                 "lastHeartbeatTime": ts, "lastTransitionTime": ts},
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "message": "kubelet has sufficient memory available",
                 "lastHeartbeatTime": ts, "lastTransitionTime": ts},
                {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure", "message": "kubelet has no disk pressure",
                 "lastHeartbeatTime": ts, "lastTransitionTime": ts},
                {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID", "message": "kubelet has sufficient PID available",
                 "lastHeartbeatTime": ts, "lastTransitionTime": ts}
            ],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.10"}, {"type": "Hostname", "address": node}],
            "nodeInfo": {"kubeletVersion": "v1.33.0-simcluster", "containerRuntimeVersion": "simcluster://1", "osImage": "simcluster",
                         "kernelVersion": "6.1.0", "operatingSystem": "linux", "architecture": "amd64",
                         "machineID": "", "systemUUID": "", "bootID": "", "kubeProxyVersion": ""}
        }
    })
}

/// Register a node in this store (the control-plane label marks the built-in one).
pub fn register_node(store: &Store, node: &str) {
    let mut obj = node_object(node);
    obj["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] = json!("");
    if let Ok(created) = store.create(resources::nodes(), "", obj.clone(), false) {
        let mut with_status = created;
        with_status["status"] = obj["status"].clone();
        let _ = store.update(resources::nodes(), "", node, with_status, true, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(name: &str) -> Value {
        json!({"metadata": {"name": name}, "data": {"k": "v"}})
    }

    #[test]
    fn create_get_conflict_and_delete() {
        let s = Store::new();
        bootstrap(&s);
        let rt = crate::resources::by_kind("ConfigMap").unwrap_or_else(|| panic!("configmaps"));
        let created = s
            .create(rt, "default", cm("a"), false)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(created["kind"], "ConfigMap");
        assert!(created["metadata"]["uid"].is_string());
        assert_eq!(
            s.create(rt, "default", cm("a"), false)
                .err()
                .map(|e| e.code),
            Some(409)
        );
        assert_eq!(
            s.create(rt, "nope", cm("a"), false)
                .err()
                .map(|e| e.message),
            Some("namespaces \"nope\" not found".into())
        );
        // dry run stores nothing
        assert!(s.create(rt, "default", cm("b"), true).is_ok());
        assert_eq!(s.get(rt, "default", "b").err().map(|e| e.code), Some(404));
        // stale resourceVersion -> 409
        let mut stale = created.clone();
        stale["data"]["k"] = json!("w");
        assert!(
            s.update(rt, "default", "a", stale.clone(), false, false)
                .is_ok()
        );
        assert_eq!(
            s.update(rt, "default", "a", stale, false, false)
                .err()
                .map(|e| e.code),
            Some(409)
        );
        // delete with a wrong uid precondition -> 409, then for real
        let wrong = DeleteOptions {
            uid: Some("x".into()),
            ..Default::default()
        };
        assert_eq!(
            s.delete(rt, "default", "a", &wrong).err().map(|e| e.code),
            Some(409)
        );
        assert!(
            s.delete(rt, "default", "a", &DeleteOptions::default())
                .is_ok()
        );
        assert_eq!(s.get(rt, "default", "a").err().map(|e| e.code), Some(404));
    }

    #[test]
    fn watch_resumes_from_history_and_reports_gone() {
        let s = Store::new();
        bootstrap(&s);
        let rt = crate::resources::by_kind("ConfigMap").unwrap_or_else(|| panic!("configmaps"));
        let rv0 = s.resource_version();
        for i in 0..3 {
            let _ = s.create(rt, "default", cm(&format!("c{i}")), false);
        }
        let (backlog, _rx) = s.watch(rt, Some(rv0)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(backlog.len(), 3);
        let (backlog, _rx) = s.watch(rt, Some(rv0 + 2)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(backlog.len(), 1);
        let (backlog, _rx) = s.watch(rt, None).unwrap_or_else(|e| panic!("{e}"));
        assert!(backlog.iter().all(|c| c.type_ == ChangeType::Added) && backlog.len() == 3);
        for i in 0..HISTORY + 10 {
            let _ = s.modify(rt, "default", "c0", false, false, |o| {
                let mut o = o.clone();
                o["data"]["k"] = json!(i.to_string());
                o["metadata"]["resourceVersion"] = Value::Null;
                Ok(o)
            });
        }
        assert_eq!(s.watch(rt, Some(rv0)).err().map(|e| e.code), Some(410));
    }
}
