//! The namespace and ServiceAccounts controllers: every namespace gets its `default` ServiceAccount; a namespace being deleted stays `Terminating` while everything in it is deleted (pods
//! gracefully, so their kubelets stop them first); once nothing is left, the namespace itself goes.

use crate::resources;
use crate::store::{DeleteOptions, Store, ensure_default_service_account};

pub fn reconcile(store: &Store) {
    let (namespaces, _) = store.list(resources::namespaces(), None);
    for ns in namespaces
        .iter()
        .filter(|n| n["metadata"]["deletionTimestamp"].is_null())
    {
        ensure_default_service_account(store, ns["metadata"]["name"].as_str().unwrap_or_default());
    }
    for ns in namespaces
        .iter()
        .filter(|n| !n["metadata"]["deletionTimestamp"].is_null())
    {
        let name = ns["metadata"]["name"].as_str().unwrap_or_default();
        for rt in resources::RESOURCES.iter().filter(|r| r.namespaced) {
            for obj in store.list(rt, Some(name)).0 {
                if obj["metadata"]["deletionTimestamp"].is_null() {
                    let obj_name = obj["metadata"]["name"].as_str().unwrap_or_default();
                    let _ = store.delete(rt, name, obj_name, &DeleteOptions::default());
                }
            }
        }
        store.finalize_namespace(name);
    }
}
