//! Flux's and Argo CD's contract, played so that everything that changes a GitOps-owned workload can be tested
//! without them. Flux: a `GitRepository` publishes the commit its branch points at (`status.artifact.revision`,
//! `main@sha1:<sha>`) every `spec.interval`; a `Kustomization` builds its `spec.path` at that commit and applies
//! every object server-side as `kustomize-controller`, forcing ownership (so a live change to a field in Git is put
//! back: drift correction), labels what it applies with its name and namespace, and publishes
//! `lastAppliedRevision`, every interval and at once when the source moves. Argo CD: an `Application` with
//! `syncPolicy.automated` syncs a new commit of `spec.source` as `argocd-controller`, annotating what it applies
//! with its tracking id; with `selfHeal` it also puts back drift every reconciliation period. Both read local
//! repositories only (`git`).

use crate::apply::apply_stored;
use crate::store::Store;
use crate::{Cluster, git, kustomize, resources};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub const FLUX_MANAGER: &str = "kustomize-controller";
pub const ARGO_MANAGER: &str = "argocd-controller";
const FLUX_NAME_LABEL: &str = "kustomize.toolkit.fluxcd.io/name";
const FLUX_NAMESPACE_LABEL: &str = "kustomize.toolkit.fluxcd.io/namespace";
const ARGO_TRACKING: &str = "argocd.argoproj.io/tracking-id";
const TICK: Duration = Duration::from_millis(200);

/// When each object is next due, by `kind/namespace/name`.
type Due = HashMap<String, Instant>;

pub async fn run(cluster: Cluster, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut due = Due::new();
    loop {
        flux_sources(&cluster, &mut due).await;
        flux_kustomizations(&cluster, &mut due).await;
        argo_applications(&cluster, &mut due).await;
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

fn key(o: &Value) -> String {
    format!(
        "{}/{}/{}",
        o["kind"].as_str().unwrap_or_default(),
        o["metadata"]["namespace"].as_str().unwrap_or_default(),
        o["metadata"]["name"].as_str().unwrap_or_default()
    )
}

fn meta<'a>(o: &'a Value, field: &str) -> &'a str {
    o["metadata"][field].as_str().unwrap_or_default()
}

/// A Go duration (`1m0s`, `30s`, `1h`, `500ms`); `None` when it is not one.
pub fn go_duration(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
        total += value * unit;
        rest = &rest[u..];
    }
    Some(Duration::from_secs_f64(total))
}

/// Whether the object is due: its interval passed, or `changed` says its inputs moved.
fn take_due(due: &mut Due, o: &Value, interval: Duration, changed: bool) -> bool {
    let k = key(o);
    let now = Instant::now();
    if changed || due.get(&k).is_none_or(|at| *at <= now) {
        due.insert(k, now + interval);
        true
    } else {
        false
    }
}

fn interval(cluster: &Cluster, o: &Value, default: &str) -> Duration {
    let simulated = o["spec"]["interval"]
        .as_str()
        .and_then(go_duration)
        .or_else(|| go_duration(default))
        .unwrap_or(Duration::from_secs(60))
        .max(Duration::from_secs(1));
    cluster.clock.real(simulated)
}

fn generation_moved(o: &Value) -> bool {
    o["metadata"]["generation"] != o["status"]["observedGeneration"]
}

fn condition(ready: bool, reason: &str, message: &str) -> Value {
    json!([{
        "type": "Ready", "status": if ready { "True" } else { "False" }, "reason": reason,
        "message": message, "lastTransitionTime": crate::store::now(),
    }])
}

fn write_status(store: &Store, rt: &'static resources::ResourceType, o: &Value, status: Value) {
    let (ns, name) = (meta(o, "namespace"), meta(o, "name"));
    let subresource = rt.has_status;
    let written = store.modify(rt, ns, name, subresource, false, |old| {
        let mut new = old.clone();
        new["status"] = status;
        new["metadata"]["resourceVersion"] = Value::Null;
        Ok(new)
    });
    if let Err(e) = written {
        tracing::warn!(error = %e.message, object = %key(o), "status not written");
    }
}

async fn flux_sources(cluster: &Cluster, due: &mut Due) {
    let rt = resources::git_repositories();
    let (repos, _) = cluster.store.list(rt, None);
    for repo in &repos {
        let every = interval(cluster, repo, "1m");
        if !take_due(due, repo, every, generation_moved(repo)) {
            continue;
        }
        let url = repo["spec"]["url"].as_str().unwrap_or_default();
        // What the source follows, and how Flux names its revisions: `main@sha1:…`, `v1.2@sha1:…`, `sha1:…`.
        let r = &repo["spec"]["ref"];
        let (reference, name) = match (
            r["branch"].as_str(),
            r["tag"].as_str(),
            r["commit"].as_str(),
        ) {
            (Some(b), ..) => (b.to_string(), Some(b.to_string())),
            (None, Some(t), _) => (format!("refs/tags/{t}"), Some(t.to_string())),
            (None, None, Some(c)) => (c.to_string(), None),
            _ => ("master".to_string(), Some("master".to_string())),
        };
        let mut status = repo["status"].clone();
        if !status.is_object() {
            status = json!({});
        }
        status["observedGeneration"] = repo["metadata"]["generation"].clone();
        match git::resolve(url, &reference).await {
            Ok(sha) => {
                let revision = match &name {
                    Some(n) => format!("{n}@sha1:{sha}"),
                    None => format!("sha1:{sha}"),
                };
                if status["artifact"]["revision"] == revision.as_str()
                    && !generation_moved(repo)
                    && status["conditions"][0]["status"] == "True"
                {
                    continue;
                }
                status["artifact"] =
                    json!({"revision": revision, "lastUpdateTime": crate::store::now()});
                status["conditions"] = condition(
                    true,
                    "Succeeded",
                    &format!("stored artifact for revision '{revision}'"),
                );
            }
            Err(e) => {
                status["conditions"] = condition(false, "GitOperationFailed", &e.to_string());
            }
        }
        write_status(&cluster.store, rt, repo, status);
    }
}

async fn flux_kustomizations(cluster: &Cluster, due: &mut Due) {
    let rt = resources::kustomizations();
    let (ks, _) = cluster.store.list(rt, None);
    for k in &ks {
        if k["spec"]["suspend"] == true {
            continue;
        }
        let source_ns = k["spec"]["sourceRef"]["namespace"]
            .as_str()
            .unwrap_or(meta(k, "namespace"));
        let source_name = k["spec"]["sourceRef"]["name"].as_str().unwrap_or_default();
        let source = cluster
            .store
            .get(resources::git_repositories(), source_ns, source_name)
            .ok();
        let revision = source
            .as_ref()
            .and_then(|s| s["status"]["artifact"]["revision"].as_str())
            .unwrap_or_default()
            .to_string();
        let moved =
            !revision.is_empty() && k["status"]["lastAttemptedRevision"] != revision.as_str();
        let every = interval(cluster, k, "10m");
        if !take_due(due, k, every, moved || generation_moved(k)) {
            continue;
        }
        let mut status = k["status"].clone();
        if !status.is_object() {
            status = json!({});
        }
        status["observedGeneration"] = k["metadata"]["generation"].clone();
        let (Some(source), false) = (source, revision.is_empty()) else {
            status["conditions"] = condition(
                false,
                "ArtifactFailed",
                &format!("Source artifact not found: GitRepository {source_ns}/{source_name}"),
            );
            write_status(&cluster.store, rt, k, status);
            continue;
        };
        status["lastAttemptedRevision"] = json!(revision);
        let labels =
            json!({FLUX_NAME_LABEL: meta(k, "name"), FLUX_NAMESPACE_LABEL: meta(k, "namespace")});
        let target_ns = k["spec"]["targetNamespace"].as_str();
        let sync = Sync {
            store: &cluster.store,
            manager: FLUX_MANAGER,
            labels: &labels,
            annotate: None,
            default_namespace: target_ns,
            force_namespace: target_ns.is_some(),
        };
        let url = source["spec"]["url"].as_str().unwrap_or_default();
        let sha = revision.rsplit(':').next().unwrap_or_default();
        let path = k["spec"]["path"].as_str().unwrap_or("./");
        match sync.run(url, sha, path).await {
            Ok(inventory) => {
                status["lastAppliedRevision"] = json!(revision);
                status["inventory"] = json!({"entries": inventory});
                status["conditions"] = condition(
                    true,
                    "ReconciliationSucceeded",
                    &format!("Applied revision: {revision}"),
                );
            }
            Err(e) => {
                status["conditions"] = condition(false, "ReconciliationFailed", &e);
            }
        }
        write_status(&cluster.store, rt, k, status);
    }
}

async fn argo_applications(cluster: &Cluster, due: &mut Due) {
    let rt = resources::applications();
    let (apps, _) = cluster.store.list(rt, None);
    for app in &apps {
        let every = cluster.clock.real(cluster.argocd_reconcile);
        if !take_due(due, app, every, app["status"]["observedAt"].is_null()) {
            continue;
        }
        let src = &app["spec"]["source"];
        let url = src["repoURL"].as_str().unwrap_or_default();
        let reference = src["targetRevision"].as_str().unwrap_or("HEAD");
        let path = src["path"].as_str().unwrap_or(".");
        let automated = app["spec"]["syncPolicy"]["automated"].is_object();
        let self_heal = app["spec"]["syncPolicy"]["automated"]["selfHeal"] == true;
        let mut status = app["status"].clone();
        if !status.is_object() {
            status = json!({});
        }
        status["observedAt"] = json!(crate::store::now());
        let sha = match git::resolve(url, reference).await {
            Ok(sha) => sha,
            Err(e) => {
                status["conditions"] =
                    json!([{"type": "ComparisonError", "message": e.to_string()}]);
                write_status(&cluster.store, rt, app, status);
                continue;
            }
        };
        let new_commit = status["sync"]["revision"] != sha.as_str();
        if automated && (new_commit || self_heal) {
            let app_name = meta(app, "name");
            let sync = Sync {
                store: &cluster.store,
                manager: ARGO_MANAGER,
                labels: &json!({}),
                annotate: Some(app_name),
                default_namespace: app["spec"]["destination"]["namespace"].as_str(),
                force_namespace: false,
            };
            match sync.run(url, &sha, path).await {
                Ok(_) => {
                    status["sync"] = json!({"status": "Synced", "revision": sha});
                    status["operationState"] = json!({"phase": "Succeeded", "message": "successfully synced",
                        "syncResult": {"revision": sha}, "finishedAt": crate::store::now()});
                    status["conditions"] = json!([]);
                }
                Err(e) => {
                    status["sync"] = json!({"status": "OutOfSync", "revision": sha});
                    status["operationState"] = json!({"phase": "Failed", "message": e,
                        "syncResult": {"revision": sha}, "finishedAt": crate::store::now()});
                }
            }
        } else if new_commit {
            status["sync"] = json!({"status": "OutOfSync", "revision": sha});
        }
        write_status(&cluster.store, rt, app, status);
    }
}

/// One controller's apply of a built path.
struct Sync<'a> {
    store: &'a Store,
    manager: &'a str,
    labels: &'a Value,
    /// Argo CD: the Application whose tracking id goes on every object.
    annotate: Option<&'a str>,
    default_namespace: Option<&'a str>,
    /// Flux's `targetNamespace` overrides what the manifests say.
    force_namespace: bool,
}

impl Sync<'_> {
    /// Build the path at the commit and apply every object. The inventory (`ns_name_group_Kind`), or why not.
    async fn run(&self, url: &str, sha: &str, path: &str) -> Result<Vec<Value>, String> {
        let files = git::files(url, sha, "").await.map_err(|e| e.to_string())?;
        let objects = kustomize::build(&files, path)?;
        let mut inventory = Vec::new();
        // Everything is checked before anything is applied, as a server-side dry run of the set would.
        let mut ready = Vec::new();
        for mut o in objects {
            let kind = o["kind"].as_str().unwrap_or_default().to_string();
            let rt = resources::by_kind(&kind).ok_or_else(|| {
                format!(
                    "no matches for kind \"{kind}\" in version \"{}\"",
                    o["apiVersion"].as_str().unwrap_or_default()
                )
            })?;
            let name = meta(&o, "name").to_string();
            if rt.namespaced {
                let ns = match (
                    self.force_namespace,
                    self.default_namespace,
                    o["metadata"]["namespace"].as_str(),
                ) {
                    (true, Some(t), _) => t.to_string(),
                    (false, _, Some(ns)) => ns.to_string(),
                    (false, Some(t), None) => t.to_string(),
                    _ => return Err(format!("{kind}/{name}: namespace not specified")),
                };
                o["metadata"]["namespace"] = json!(ns);
            }
            if let Some(labels) = self.labels.as_object() {
                for (k, v) in labels {
                    o["metadata"]["labels"][k] = v.clone();
                }
            }
            if let Some(app) = self.annotate {
                let group = rt.group;
                let ns = meta(&o, "namespace").to_string();
                o["metadata"]["annotations"][ARGO_TRACKING] =
                    json!(format!("{app}:{group}/{kind}:{ns}/{name}"));
            }
            ready.push((rt, o));
        }
        for (rt, o) in ready {
            let (ns, name) = (
                meta(&o, "namespace").to_string(),
                meta(&o, "name").to_string(),
            );
            apply_stored(self.store, rt, &ns, &name, &o, self.manager, true, false)
                .map_err(|e| format!("{} {ns}/{name}: {}", rt.kind, e.message))?;
            inventory.push(
                json!({"id": format!("{ns}_{name}_{}_{}", rt.group, rt.kind), "v": rt.version}),
            );
        }
        Ok(inventory)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        for (s, want) in [
            ("1m0s", Some(60.0)),
            ("30s", Some(30.0)),
            ("1h30m", Some(5400.0)),
            ("500ms", Some(0.5)),
            ("2.5s", Some(2.5)),
            ("", None),
            ("5", None),
            ("1d", None),
        ] {
            assert_eq!(go_duration(s).map(|d| d.as_secs_f64()), want, "{s}");
        }
    }
}
