//! Deletion as the real API server does it: preconditions; graceful deletion of pods (the deletionTimestamp is set
//! to now plus the grace period and the kubelet deletes the pod with grace 0 once its containers have stopped);
//! finalizers that hold an object until they are removed; orphaning and foreground cascading; namespaces that
//! stay `Terminating` while the namespace controller empties them.

use super::{ChangeType, DeleteOptions, FOREGROUND, Inner, Store, finalizers_empty, meta_str};
use super::{ns_key, orphan_dependents};
use crate::error::ApiError;
use crate::resources::{self, ResourceType};
use serde_json::{Value, json};

/// The grace period a delete gets, as the pod strategy's `CheckGracefulDelete` decides it: the request's, else the
/// pod's `terminationGracePeriodSeconds`; 0 for a pod no node runs or that has finished; 0 for every other kind.
pub fn grace_period(rt: &ResourceType, obj: &Value, opts: &DeleteOptions) -> i64 {
    if rt.kind != "Pod" {
        return 0;
    }
    let mut period = opts
        .grace_period
        .or(obj["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(0);
    if obj["spec"]["nodeName"].as_str().is_none_or(str::is_empty)
        || matches!(
            obj["status"]["phase"].as_str(),
            Some("Failed" | "Succeeded")
        )
    {
        period = 0;
    }
    if period < 0 { 1 } else { period }
}

/// The object marked for deletion in `grace` seconds.
fn marked(old: &Value, grace: i64) -> Value {
    let mut new = old.clone();
    let at = chrono::Utc::now() + chrono::Duration::seconds(grace);
    new["metadata"]["deletionTimestamp"] =
        json!(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    new["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
    new
}

fn check_preconditions(
    rt: &ResourceType,
    name: &str,
    old: &Value,
    opts: &DeleteOptions,
) -> Result<(), ApiError> {
    if let Some(uid) = opts.uid.as_deref().filter(|u| *u != meta_str(old, "uid")) {
        let why = format!(
            "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
            meta_str(old, "uid")
        );
        return Err(ApiError::conflict(&rt.qualified(), name, &why));
    }
    if opts
        .resource_version
        .as_deref()
        .is_some_and(|rv| rv != meta_str(old, "resourceVersion"))
    {
        return Err(ApiError::conflict(
            &rt.qualified(),
            name,
            "Precondition failed: resourceVersion does not match",
        ));
    }
    Ok(())
}

/// What a delete request does to a live object.
enum Outcome {
    /// Nothing changes (a deletion already in progress with a grace period no longer than asked).
    Unchanged,
    /// The object stays, marked: graceful deletion, finalizers, a terminating namespace.
    Mark(Value),
    Remove,
}

fn outcome(rt: &ResourceType, old: &Value, grace: i64, opts: &DeleteOptions) -> Outcome {
    let held = !finalizers_empty(old);
    if !old["metadata"]["deletionTimestamp"].is_null() {
        // A deletion in progress changes only to a shorter grace period.
        let current = old["metadata"]["deletionGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(0);
        return match (grace < current, grace == 0 && !held) {
            (false, _) => Outcome::Unchanged,
            (true, true) => Outcome::Remove,
            (true, false) => Outcome::Mark(marked(old, grace)),
        };
    }
    let spec_finalizers = old["spec"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    if rt.kind == "Namespace" && spec_finalizers {
        let mut new = marked(old, 0);
        new["status"]["phase"] = json!("Terminating");
        return Outcome::Mark(new);
    }
    if opts.foreground && !held {
        let mut new = marked(old, 0);
        new["metadata"]["finalizers"] = json!([FOREGROUND]);
        return Outcome::Mark(new);
    }
    if grace > 0 || held {
        return Outcome::Mark(marked(old, grace));
    }
    Outcome::Remove
}

impl Store {
    pub fn delete(
        &self,
        rt: &'static ResourceType,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let ns_key = ns_key(rt, ns);
        let mut inner = self.lock();
        let old = inner.find_or_404(rt, &ns_key, name)?;
        check_preconditions(rt, name, &old, opts)?;
        let grace = grace_period(rt, &old, opts);
        let outcome = outcome(rt, &old, grace, opts);
        if opts.dry_run {
            return Ok(match outcome {
                Outcome::Mark(new) => new,
                _ => old,
            });
        }
        if opts.orphan {
            orphan_dependents(&mut inner, meta_str(&old, "uid"));
        }
        match outcome {
            Outcome::Unchanged => Ok(old),
            Outcome::Mark(new) => Ok(self.commit(
                &mut inner,
                rt,
                ns_key,
                name.to_string(),
                ChangeType::Modified,
                new,
                Some(old),
            )),
            Outcome::Remove => Ok(self.remove(&mut inner, rt, ns_key, name, old)),
        }
    }

    fn remove(
        &self,
        inner: &mut Inner,
        rt: &'static ResourceType,
        ns_key: String,
        name: &str,
        old: Value,
    ) -> Value {
        let mut gone = old.clone();
        if gone["metadata"]["deletionTimestamp"].is_null() {
            gone["metadata"]["deletionTimestamp"] = json!(super::now());
        }
        self.commit(
            inner,
            rt,
            ns_key,
            name.to_string(),
            ChangeType::Deleted,
            gone,
            Some(old),
        )
    }

    /// The namespace controller's last step: a terminating namespace with nothing left in it is removed.
    /// Returns how many objects it still holds (0 once removed).
    pub fn finalize_namespace(&self, name: &str) -> usize {
        let mut inner = self.lock();
        let Some(ns) = inner.find(resources::namespaces(), "", name).cloned() else {
            return 0;
        };
        if ns["metadata"]["deletionTimestamp"].is_null() {
            return 0;
        }
        let left: usize = resources::RESOURCES
            .iter()
            .filter(|r| r.namespaced)
            .filter_map(|r| inner.objects.get(&super::key(r)))
            .map(|m| m.keys().filter(|(n, _)| n == name).count())
            .sum();
        if left == 0 && finalizers_empty(&ns) {
            self.remove(&mut inner, resources::namespaces(), String::new(), name, ns);
        }
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::bootstrap;

    fn bound_pod(name: &str, grace: Option<i64>) -> Value {
        let mut spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
        if let Some(g) = grace {
            spec["terminationGracePeriodSeconds"] = json!(g);
        }
        json!({"metadata": {"name": name}, "spec": spec})
    }

    fn store_with_pod(name: &str, grace: Option<i64>, node: bool) -> Store {
        let s = Store::new();
        bootstrap(&s);
        s.create(resources::pods(), "default", bound_pod(name, grace), false)
            .unwrap_or_else(|e| panic!("{e}"));
        if node {
            s.bind("default", name, "n1")
                .unwrap_or_else(|e| panic!("{e}"));
        }
        s
    }

    fn grace(s: &Store, name: &str) -> Option<i64> {
        s.get(resources::pods(), "default", name).ok().map(|p| {
            p["metadata"]["deletionGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(-1)
        })
    }

    #[test]
    fn pods_are_deleted_gracefully_like_a_real_api_server() {
        let opts = |grace: Option<i64>| DeleteOptions {
            grace_period: grace,
            ..Default::default()
        };
        // (pod grace, bound to a node, request's grace, the grace the pod is marked with; None = removed at once)
        let cases = [
            (None, true, None, Some(30)),
            (Some(5), true, None, Some(5)),
            (Some(5), true, Some(60), Some(60)),
            (None, true, Some(0), None),
            (None, false, None, None),
            (None, true, Some(-3), Some(1)),
        ];
        for (pod_grace, node, asked, want) in cases {
            let s = store_with_pod("p", pod_grace, node);
            let deleted = s
                .delete(resources::pods(), "default", "p", &opts(asked))
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(grace(&s, "p"), want, "{pod_grace:?} {node} {asked:?}");
            if want.is_some() {
                assert!(deleted["metadata"]["deletionTimestamp"].is_string());
            }
        }
        // A deletion in progress only gets shorter; grace 0 (`--grace-period=0 --force`) removes it.
        let s = store_with_pod("p", None, true);
        let _ = s.delete(resources::pods(), "default", "p", &opts(None));
        let _ = s.delete(resources::pods(), "default", "p", &opts(Some(60)));
        assert_eq!(grace(&s, "p"), Some(30));
        let _ = s.delete(resources::pods(), "default", "p", &opts(Some(10)));
        assert_eq!(grace(&s, "p"), Some(10));
        // Status writes by the kubelet while it stops the containers do not remove the pod.
        let kept = s.modify(resources::pods(), "default", "p", true, false, |p| {
            let mut p = p.clone();
            p["status"]["phase"] = json!("Running");
            p["metadata"]["resourceVersion"] = Value::Null;
            Ok(p)
        });
        assert!(kept.is_ok() && grace(&s, "p") == Some(10));
        let _ = s.delete(resources::pods(), "default", "p", &opts(Some(0)));
        assert_eq!(grace(&s, "p"), None);
    }

    #[test]
    fn finalizers_hold_an_object_until_they_are_removed() {
        let s = Store::new();
        bootstrap(&s);
        let rt = resources::by_kind("ConfigMap").unwrap_or_else(|| panic!("configmaps"));
        let cm = json!({"metadata": {"name": "a", "finalizers": ["example.com/hold"]}});
        s.create(rt, "default", cm, false)
            .unwrap_or_else(|e| panic!("{e}"));
        let marked = s
            .delete(rt, "default", "a", &DeleteOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(marked["metadata"]["deletionTimestamp"].is_string());
        assert!(s.get(rt, "default", "a").is_ok());
        let _ = s.modify(rt, "default", "a", false, false, |o| {
            let mut o = o.clone();
            o["metadata"]["finalizers"] = json!([]);
            o["metadata"]["resourceVersion"] = Value::Null;
            Ok(o)
        });
        assert_eq!(s.get(rt, "default", "a").err().map(|e| e.code), Some(404));
    }

    #[test]
    fn a_namespace_terminates_until_it_is_empty_and_refuses_new_content() {
        let s = store_with_pod("p", None, true);
        let rt = resources::namespaces();
        let ns = s
            .delete(rt, "", "default", &DeleteOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ns["status"]["phase"], "Terminating");
        let refused = s.create(resources::pods(), "default", bound_pod("q", None), false);
        assert_eq!(
            refused.as_ref().err().map(|e| e.code),
            Some(403),
            "{refused:?}"
        );
        // The pod and the namespace's default ServiceAccount.
        assert_eq!(s.finalize_namespace("default"), 2);
        let _ = s.delete(
            resources::service_accounts(),
            "default",
            "default",
            &DeleteOptions::default(),
        );
        let _ = s.delete(
            resources::pods(),
            "default",
            "p",
            &DeleteOptions {
                grace_period: Some(0),
                ..Default::default()
            },
        );
        assert_eq!(s.finalize_namespace("default"), 0);
        assert_eq!(s.get(rt, "", "default").err().map(|e| e.code), Some(404));
    }
}
