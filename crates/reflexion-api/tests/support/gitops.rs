//! A Git repository as a GitOps source (a bare repository on disk, changed through a clone as a developer would,
//! with Debian's git), and the Flux and Argo CD objects that point simcluster's controllers at it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=dev", "-c", "user.email=dev@example.com"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `<dir>/acme/apps.git` (bare, branch main) and a clone of it.
pub struct Repo {
    pub bare: PathBuf,
    work: PathBuf,
}

impl Repo {
    pub fn new(dir: &Path, files: &[(&str, &str)]) -> Repo {
        let bare = dir.join("acme").join("apps.git");
        std::fs::create_dir_all(&bare).unwrap();
        git(&bare, &["init", "-q", "--bare", "-b", "main"]);
        let work = dir.join("apps-work");
        git(dir, &["clone", "-q", bare.to_str().unwrap(), "apps-work"]);
        git(&work, &["checkout", "-q", "-b", "main"]);
        let repo = Repo { bare, work };
        repo.commit(files, "apps");
        repo
    }

    pub fn commit(&self, files: &[(&str, &str)], msg: &str) -> String {
        if !git(&self.bare, &["branch", "--list", "main"]).is_empty() {
            git(&self.work, &["pull", "-q", "--ff-only", "origin", "main"]);
        }
        for (p, text) in files {
            let path = self.work.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", msg]);
        git(&self.work, &["push", "-q", "origin", "main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// `git log --format=<format> main` of the remote, newest first.
    pub fn log(&self, format: &str) -> Vec<String> {
        git(&self.bare, &["log", &format!("--format={format}"), "main"])
            .lines()
            .map(String::from)
            .collect()
    }

    pub fn show(&self, rev: &str, path: &str) -> String {
        git(&self.bare, &["show", &format!("{rev}:{path}")])
    }

    pub fn head(&self) -> String {
        git(&self.bare, &["rev-parse", "main"])
    }
}

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
