//! The Flux and Argo CD objects that point simcluster's controllers at a test repository (`repo::Repo`).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use super::repo::Repo;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::{Value, json};

fn api(
    client: &kube::Client,
    ns: &str,
    gvk: (&str, &str, &str),
    plural: &str,
) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(gvk.0, gvk.1, gvk.2), plural);
    Api::namespaced_with(client.clone(), ns, &ar)
}

pub fn kustomizations(client: &kube::Client) -> Api<DynamicObject> {
    api(
        client,
        "flux-system",
        ("kustomize.toolkit.fluxcd.io", "v1", "Kustomization"),
        "kustomizations",
    )
}

pub fn applications(client: &kube::Client) -> Api<DynamicObject> {
    api(
        client,
        "argocd",
        ("argoproj.io", "v1alpha1", "Application"),
        "applications",
    )
}

async fn create(api: &Api<DynamicObject>, obj: Value) {
    let o: DynamicObject = serde_json::from_value(obj).unwrap();
    api.create(&PostParams::default(), &o).await.unwrap();
}

async fn namespace(client: &kube::Client, name: &str) {
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let obj = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    let _ = ns.create(&PostParams::default(), &obj).await;
}

/// A GitRepository and a Kustomization named `apps` in flux-system, applying `path` of `repo`'s main branch
/// every `interval`.
pub async fn flux(client: &kube::Client, repo: &Repo, path: &str, interval: &str) {
    flux_with(client, repo, path, interval, interval).await
}

/// `flux` with the GitRepository fetching every `source_interval` (how soon a new commit is seen).
pub async fn flux_with(
    client: &kube::Client,
    repo: &Repo,
    path: &str,
    source_interval: &str,
    interval: &str,
) {
    namespace(client, "flux-system").await;
    let sources = api(
        client,
        "flux-system",
        ("source.toolkit.fluxcd.io", "v1", "GitRepository"),
        "gitrepositories",
    );
    create(
        &sources,
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": "apps", "namespace": "flux-system"},
        "spec": {"url": repo.url(), "interval": source_interval, "ref": {"branch": "main"}}}),
    )
    .await;
    create(
        &kustomizations(client),
        json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": "apps", "namespace": "flux-system"},
        "spec": {"interval": interval, "path": path, "prune": true,
                 "sourceRef": {"kind": "GitRepository", "name": "apps"}}}),
    )
    .await;
}

/// An Argo CD Application `guestbook` in argocd syncing `path` of `repo` (targetRevision HEAD), automated.
pub async fn argo(client: &kube::Client, repo: &Repo, path: &str, self_heal: bool) {
    namespace(client, "argocd").await;
    create(&applications(client), json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "guestbook", "namespace": "argocd"},
        "spec": {"project": "default",
                 "source": {"repoURL": repo.url(), "targetRevision": "HEAD", "path": path},
                 "destination": {"server": "https://kubernetes.default.svc", "namespace": "default"},
                 "syncPolicy": {"automated": {"selfHeal": self_heal, "prune": true}}}}))
    .await;
}

/// A Deployment `web` in `default`, as a developer would write it: comments, and a bad image tag.
pub fn web_manifest(image: &str) -> String {
    format!(
        "# The shop's web tier.\n\
         apiVersion: apps/v1\n\
         kind: Deployment\n\
         metadata:\n  name: web\n  namespace: default\n  labels:\n    app: web # keep in sync with the Service\n\
         spec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n\
         \x20   spec:\n      containers:\n      - name: web\n        image: {image}   # pinned by the release bot\n\
         \x20       ports:\n        - containerPort: 80\n"
    )
}
