//! Flux's and Argo CD's contract as simcluster plays it, driven through the API with kube-rs against a real Git
//! repository (Debian's `git`, a bare repository on disk): a Kustomization applies its path at the branch's commit
//! as `kustomize-controller`, labels what it applies, publishes `lastAppliedRevision`, puts back a live change and
//! follows a new commit; an Application with selfHeal does the same with its tracking annotation, one without it
//! leaves drift alone; a path it cannot build says why in the Kustomization's Ready condition.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
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

/// A bare repository `origin.git` with a clone `work` on branch main.
struct Repo {
    origin: PathBuf,
    work: PathBuf,
}

impl Repo {
    fn new(dir: &Path) -> Repo {
        let origin = dir.join("origin.git");
        let work = dir.join("work");
        std::fs::create_dir_all(&origin).unwrap();
        git(&origin, &["init", "-q", "--bare", "-b", "main"]);
        git(dir, &["clone", "-q", origin.to_str().unwrap(), "work"]);
        git(&work, &["checkout", "-q", "-b", "main"]);
        Repo { origin, work }
    }

    fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, text) in files {
            let p = self.work.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", message]);
        git(&self.work, &["push", "-q", "origin", "main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    fn url(&self) -> String {
        format!("file://{}", self.origin.display())
    }
}

fn deployment(image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: default\nspec:\n  replicas: 1\n  \
         selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      \
         containers:\n      - name: web\n        image: {image}\n"
    )
}

fn api(
    client: &kube::Client,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
) -> Api<DynamicObject> {
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    Api::namespaced_with(client.clone(), "default", &ar)
}

async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn image(deploys: &Api<Deployment>) -> Option<String> {
    let d = deploys.get_opt("web").await.unwrap()?;
    d.spec?.template.spec?.containers.first()?.image.clone()
}

async fn create(api: &Api<DynamicObject>, obj: Value) {
    let obj: DynamicObject = serde_json::from_value(obj).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
}

/// What kube-reflexion does to a live object: a strategic-merge patch of the image as its own field manager.
async fn patch_live(deploys: &Api<Deployment>, image: &str) {
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}}});
    deploys
        .patch(
            "web",
            &PatchParams {
                field_manager: Some("kube-reflexion".into()),
                ..Default::default()
            },
            &Patch::Strategic(patch),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flux_kustomization_applies_labels_corrects_drift_and_follows_commits() {
    let sim = common::start().await;
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::new(dir.path());
    let first = repo.commit(
        &[("apps/web/deployment.yaml", &deployment("nginx:1.27.3"))],
        "web",
    );
    let sources = api(
        &sim.client,
        "source.toolkit.fluxcd.io",
        "v1",
        "GitRepository",
        "gitrepositories",
    );
    let ks = api(
        &sim.client,
        "kustomize.toolkit.fluxcd.io",
        "v1",
        "Kustomization",
        "kustomizations",
    );
    create(&sources, json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": "apps"}, "spec": {"url": repo.url(), "interval": "10s", "ref": {"branch": "main"}}})).await;
    create(
        &ks,
        json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": "apps"}, "spec": {"interval": "10s", "path": "./apps", "prune": true,
        "sourceRef": {"kind": "GitRepository", "name": "apps"}}}),
    )
    .await;

    let deploys: Api<Deployment> = Api::namespaced(sim.client.clone(), "default");
    let applied = eventually("the Kustomization applied the first commit", async || {
        let k = ks.get("apps").await.ok()?;
        (k.data["status"]["lastAppliedRevision"] == format!("main@sha1:{first}").as_str())
            .then_some(k)
    })
    .await;
    assert_eq!(applied.data["status"]["conditions"][0]["status"], "True");
    let d = deploys.get("web").await.unwrap();
    let labels = d.metadata.labels.clone().unwrap();
    assert_eq!(labels["kustomize.toolkit.fluxcd.io/name"], "apps");
    assert_eq!(labels["kustomize.toolkit.fluxcd.io/namespace"], "default");
    let managers: Vec<String> = d
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(
        managers.contains(&"kustomize-controller".to_string()),
        "{managers:?}"
    );

    // A live change to a field Git sets is put back at the next interval.
    patch_live(&deploys, "nginx:1.27.4").await;
    assert_eq!(image(&deploys).await.as_deref(), Some("nginx:1.27.4"));
    eventually("the drift was corrected", async || {
        (image(&deploys).await.as_deref() == Some("nginx:1.27.3")).then_some(())
    })
    .await;

    // A new commit is applied and published.
    let second = repo.commit(
        &[("apps/web/deployment.yaml", &deployment("nginx:1.27.5"))],
        "bump",
    );
    eventually("the second commit was applied", async || {
        let k = ks.get("apps").await.ok()?;
        (k.data["status"]["lastAppliedRevision"] == format!("main@sha1:{second}").as_str())
            .then_some(())
    })
    .await;
    assert_eq!(image(&deploys).await.as_deref(), Some("nginx:1.27.5"));
    let source = sources.get("apps").await.unwrap();
    assert_eq!(
        source.data["status"]["artifact"]["revision"],
        format!("main@sha1:{second}").as_str()
    );

    // What it cannot build is not applied, and the Kustomization says why.
    let third = repo.commit(
        &[(
            "apps/kustomization.yaml",
            "resources: [web/deployment.yaml]\nhelmCharts: [{name: x}]\n",
        )],
        "unsupported",
    );
    let failed = eventually("the Kustomization reported the failure", async || {
        let k = ks.get("apps").await.ok()?;
        (k.data["status"]["lastAttemptedRevision"] == format!("main@sha1:{third}").as_str()
            && k.data["status"]["conditions"][0]["status"] == "False")
            .then_some(k)
    })
    .await;
    let message = failed.data["status"]["conditions"][0]["message"]
        .as_str()
        .unwrap();
    assert!(message.contains("helmCharts"), "{message}");
    assert_eq!(
        failed.data["status"]["lastAppliedRevision"],
        format!("main@sha1:{second}").as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_argo_application_with_self_heal_tracks_and_heals_one_without_does_not() {
    let sim = common::start_with(&["--argocd-reconcile-secs", "20"]).await;
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::new(dir.path());
    let sha = repo.commit(
        &[
            ("guestbook/deployment.yaml", &deployment("nginx:1.27.3")),
            (
                "manual/deployment.yaml",
                &deployment("nginx:1.27.3").replacen("name: web", "name: manual", 1),
            ),
        ],
        "apps",
    );
    let apps = api(
        &sim.client,
        "argoproj.io",
        "v1alpha1",
        "Application",
        "applications",
    );
    for (name, path, heal) in [
        ("guestbook", "guestbook", true),
        ("manual", "manual", false),
    ] {
        create(&apps, json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": name},
            "spec": {"source": {"repoURL": repo.url(), "targetRevision": "main", "path": path},
                     "destination": {"namespace": "default"},
                     "syncPolicy": {"automated": {"selfHeal": heal}}}}))
        .await;
    }
    let deploys: Api<Deployment> = Api::namespaced(sim.client.clone(), "default");
    for name in ["guestbook", "manual"] {
        eventually("the Application synced", async || {
            let a = apps.get(name).await.ok()?;
            (a.data["status"]["sync"]["revision"] == sha.as_str()
                && a.data["status"]["sync"]["status"] == "Synced")
                .then_some(())
        })
        .await;
    }
    let d = deploys.get("web").await.unwrap();
    assert_eq!(
        d.metadata.annotations.unwrap()["argocd.argoproj.io/tracking-id"],
        "guestbook:apps/Deployment:default/web"
    );
    patch_live(&deploys, "nginx:1.27.4").await;
    let manual = Patch::Strategic(
        json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27.4"}]}}}}),
    );
    deploys
        .patch(
            "manual",
            &PatchParams {
                field_manager: Some("kube-reflexion".into()),
                ..Default::default()
            },
            &manual,
        )
        .await
        .unwrap();
    eventually("selfHeal put the image back", async || {
        (image(&deploys).await.as_deref() == Some("nginx:1.27.3")).then_some(())
    })
    .await;
    // Three reconciliation periods later the Application without selfHeal still has the live change.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let m = deploys.get("manual").await.unwrap();
    assert_eq!(
        m.spec.unwrap().template.spec.unwrap().containers[0]
            .image
            .as_deref(),
        Some("nginx:1.27.4")
    );
}
