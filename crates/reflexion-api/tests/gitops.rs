//! GitOps-owned workloads, end to end: simcluster plays Flux and Argo CD over a real Git repository (a bare one on
//! disk, Debian's git), the watcher reports the failure, reflexion-api fixes it where the truth lives.
//!
//! - Flux, policy auto: one commit that changes only the image line, applied by the controller, Ready across three
//!   sync intervals, the incident showing the commit; nothing patched live.
//! - The same workload with `gitops: live`: the live fix is undone by the next sync (why the Git route exists).
//! - Policy approve: a branch and a pull request on a test server speaking GitHub's API; approving (as the
//!   console's Approve does) merges it; merging it on the forge approves it too.
//! - Argo CD with selfHeal: fixed through Git the same way.
//! - A Helm release: handed over naming the release; nothing pushed, nothing patched.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use k8s_openapi::api::apps::v1::Deployment;
use std::collections::HashMap;
use std::time::Duration;
use support::gitops::{argo, flux, kustomizations, web_manifest};
use support::repo::Repo;
use support::{Options, Stack, audit_verbs, awaiting_approval, finished_incident, incident_detail};

const BAD: &str = "nginx:1.27.O";
const GOOD: &str = "nginx:1.27.3";
/// Flux's interval: 10 simulated seconds, 1 s at simcluster's time scale.
const INTERVAL: &str = "10s";
const INTERVAL_REAL: Duration = Duration::from_secs(1);

fn gitops_args() -> Vec<String> {
    vec![
        "--gitops-allow-file-urls".into(),
        "--gitops-sync-timeout-secs".into(),
        "60".into(),
        "--gitops-poll-secs".into(),
        "1".into(),
    ]
}

/// A stack whose API commits to local repositories (its clones in the stack's own directory), with `more` flags.
async fn stack(
    policy: Option<&'static str>,
    more: Vec<String>,
    sim_args: &'static [&'static str],
) -> Stack {
    let mut extra = gitops_args();
    extra.extend(more);
    Stack::start(Options {
        policy,
        extra_args: extra,
        sim_args,
        ..Options::default()
    })
    .await
}

/// The Deployment's image; empty while it does not exist (the controller has not applied it yet).
async fn image(api: &kube::Api<Deployment>) -> String {
    image_of(api.get_opt("web").await.unwrap().as_ref())
}

fn image_of(d: Option<&Deployment>) -> String {
    d.and_then(|d| {
        d.spec
            .as_ref()?
            .template
            .spec
            .as_ref()?
            .containers
            .first()?
            .image
            .clone()
    })
    .unwrap_or_default()
}

/// The Deployment runs `want` with a Ready replica, checked every interval for three intervals.
async fn stays_ready(api: &kube::Api<Deployment>, want: &str) {
    for _ in 0..4 {
        let d = api.get("web").await.unwrap();
        let available = d.status.and_then(|s| s.available_replicas).unwrap_or(0);
        assert_eq!(image(api).await, want);
        assert!(available >= 1, "web has no available replica");
        tokio::time::sleep(INTERVAL_REAL).await;
    }
}

fn managers(d: &Deployment) -> Vec<String> {
    d.metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect()
}

e2e_test! {
    async fn a_flux_owned_deployment_is_fixed_by_one_commit_that_flux_applies() {
        let stack = stack(None, vec![], &[]).await;
        let repo = Repo::new(stack.dir.path(), &[
            ("apps/web/deployment.yaml", &web_manifest(BAD)),
            ("apps/README.md", "The shop.\n"),
        ]);
        let before = repo.head();
        let client = stack.kube().await;
        flux(&client, &repo, "./apps", INTERVAL).await;

        let inc = finished_incident(&stack).await;
        assert_eq!(inc["state"], "resolved", "{}", inc["outcome"]);
        assert_eq!(inc["owner"]["owner"]["kind"], "flux");
        assert_eq!(inc["owner"]["fix_lands"], "git");
        assert_eq!(inc["owner"]["source"]["branch"], "main");
        assert_eq!(inc["evidence"]["owner_of_record"]["owner"]["name"], "apps");

        // Exactly one commit, by kube-reflexion, changing only the image line; the incident names it.
        let log = repo.log("%H");
        assert_eq!(log.len(), 2, "{log:?}");
        assert_eq!(log[1], before);
        let sha = &log[0];
        assert_eq!(inc["git"]["commit"]["sha"], sha.as_str());
        assert_eq!(repo.log("%an")[0], "kube-reflexion");
        let changed = support::repo::git(&repo.bare, &["show", "--format=", "--numstat", "main"]);
        assert_eq!(changed, "1\t1\tapps/web/deployment.yaml");
        assert_eq!(
            repo.show("main", "apps/web/deployment.yaml"),
            web_manifest(GOOD).trim_end()
        );
        let message = support::repo::git(&repo.bare, &["log", "-1", "--format=%B", "main"]);
        let id = inc["id"].as_str().unwrap();
        for needle in [id, "image_pull/not_found", "Verification to come", "Kube-Reflexion-Trial: 1"] {
            assert!(message.contains(needle), "{needle} missing from {message}");
        }
        assert!(inc["outcome"].as_str().unwrap().contains(&sha[..12]), "{}", inc["outcome"]);

        // Flux applied that commit; nothing was patched live.
        let k = kustomizations(&client).get("apps").await.unwrap();
        assert_eq!(k.data["status"]["lastAppliedRevision"], format!("main@sha1:{sha}").as_str());
        let api: kube::Api<Deployment> = kube::Api::namespaced(client.clone(), "default");
        let d = api.get("web").await.unwrap();
        assert!(!managers(&d).contains(&"kube-reflexion".to_string()), "{:?}", managers(&d));
        let audit = &inc["audit"][0];
        assert_eq!(audit["verb"], "set_image");
        assert!(audit["result"].as_str().unwrap().starts_with(&format!("ok: commit {sha}")), "{audit}");
        stays_ready(&api, GOOD).await;
        assert_eq!(repo.log("%H").len(), 2, "nothing more was committed");
    }
}

/// `stress` allocating 500M under a 10Mi limit: the first raise (266Mi) is not enough, the second (532Mi) is.
const HUNGRY: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: memory-app
  namespace: default
spec:
  replicas: 1
  selector:
    matchLabels: {app: memory-app}
  template:
    metadata:
      labels: {app: memory-app}
    spec:
      containers:
      - name: memory-app
        image: polinux/stress:1.0.4
        args: [--vm, \"1\", --vm-bytes, 500M]
        resources:
          limits:
            memory: 10Mi # far too little
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fix_that_does_not_hold_is_undone_by_a_revert_commit() {
    let stack = stack(None, vec![], &[]).await;
    let repo = Repo::new(stack.dir.path(), &[("apps/memory-app.yaml", HUNGRY)]);
    let client = stack.kube().await;
    flux(&client, &repo, "apps", INTERVAL).await;
    let inc = finished_incident(&stack).await;
    assert_eq!(inc["state"], "resolved", "{}", inc["outcome"]);
    assert_eq!(inc["trials"], 2);
    // base, trial 1's raise, its revert, trial 2's raise: newest first.
    let subjects = repo.log("%s");
    assert_eq!(subjects.len(), 4, "{subjects:?}");
    assert!(
        subjects[0].starts_with("fix(default/memory-app)"),
        "{subjects:?}"
    );
    assert!(subjects[1].starts_with("revert(apps)"), "{subjects:?}");
    assert!(
        subjects[2].starts_with("fix(default/memory-app)"),
        "{subjects:?}"
    );
    let log = repo.log("%H");
    let limit = |rev: &str| {
        let text = repo.show(rev, "apps/memory-app.yaml");
        text.lines()
            .find(|l| l.contains("memory:"))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(limit(&log[2]), "memory: 266Mi # far too little");
    assert_eq!(limit(&log[1]), "memory: 10Mi # far too little");
    assert_eq!(limit(&log[0]), "memory: 532Mi # far too little");
    let body = support::repo::git(&repo.bare, &["log", "-1", "--format=%B", &log[1]]);
    assert!(
        body.contains(&format!("Kube-Reflexion-Reverts: {}", log[2])),
        "{body}"
    );
    let first = &inc["episodes"][0];
    assert_eq!(first["reverted"], true);
    assert!(
        first["execution"]["revert"]["detail"]
            .as_str()
            .unwrap()
            .contains("reverted by commit"),
        "{first}"
    );
    assert_eq!(
        inc["audit"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["verb"] == "revert")
            .count(),
        1
    );
}

/// A worker that runs, and the same worker with a command that exits 1 at once.
fn worker(script: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: worker\n  namespace: default\nspec:\n  replicas: 1\n  \
         selector:\n    matchLabels: {{app: worker}}\n  template:\n    metadata:\n      labels: {{app: worker}}\n    spec:\n      \
         containers:\n      - name: worker\n        image: busybox:1.36\n        command: [sh, -c, \"{script}\"]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_rollout_is_rolled_back_by_reverting_the_commit_that_broke_it() {
    let stack = stack(None, vec![], &[]).await;
    let repo = Repo::new(
        stack.dir.path(),
        &[("apps/worker.yaml", &worker("sleep 3600"))],
    );
    let client = stack.kube().await;
    let api: kube::Api<Deployment> = kube::Api::namespaced(client.clone(), "default");
    flux(&client, &repo, "apps", INTERVAL).await;
    stack
        .eventually("the worker to run", support::FIX_TIMEOUT, async || {
            let d = api.get_opt("worker").await.unwrap();
            let available = d.and_then(|d| d.status?.available_replicas).unwrap_or(0);
            (
                (available == 1).then_some(()),
                format!("{available} available"),
            )
        })
        .await;
    // A developer pushes a change that crashes; the old ReplicaSet keeps running while the new one fails.
    let broke = repo.commit(
        &[("apps/worker.yaml", &worker("exit 1"))],
        "worker: new entrypoint",
    );
    let inc = finished_incident(&stack).await;
    assert_eq!(inc["state"], "resolved", "{}", inc["outcome"]);
    assert!(
        inc["episodes"][0]["command"]
            .as_str()
            .unwrap()
            .starts_with("kubectl rollout undo"),
        "{}",
        inc["episodes"][0]["command"]
    );
    // The rollback is a revert of exactly that commit, by kube-reflexion.
    let subjects = repo.log("%s");
    assert_eq!(subjects.len(), 3, "{subjects:?}");
    let body = support::repo::git(&repo.bare, &["log", "-1", "--format=%B", "main"]);
    assert!(
        body.contains(&format!("Kube-Reflexion-Reverts: {broke}")),
        "{body}"
    );
    assert!(body.contains("Kube-Reflexion-Trial: 1"), "{body}");
    assert_eq!(
        repo.show("main", "apps/worker.yaml"),
        worker("sleep 3600").trim_end()
    );
    assert_eq!(inc["git"]["commit"]["sha"], repo.head().as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_while_the_commit_waits_for_its_sync_verifies_without_committing_again() {
    let mut stack = stack(None, vec![], &[]).await;
    let repo = Repo::new(stack.dir.path(), &[("apps/web.yaml", &web_manifest(BAD))]);
    let client = stack.kube().await;
    // The source is fetched every 8 s (real): the commit waits for it.
    support::gitops::flux_with(&client, &repo, "apps", "80s", INTERVAL).await;
    stack
        .eventually(
            "the fix to wait for its sync",
            support::FIX_TIMEOUT,
            async || {
                let list = stack.get("/api/v1/reflexion/incidents").await;
                let i = list["incidents"][0].clone();
                (
                    (i["state"] == "verifying" && i["git"]["commit"]["sha"].is_string())
                        .then_some(()),
                    list.to_string(),
                )
            },
        )
        .await;
    assert_eq!(repo.log("%H").len(), 2);
    stack.kill_and_restart_api().await;
    let inc = finished_incident(&stack).await;
    assert_eq!(inc["state"], "resolved", "{}", inc["outcome"]);
    assert_eq!(repo.log("%H").len(), 2, "committed once");
    let notes: Vec<&str> = inc["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["note"].as_str().unwrap())
        .collect();
    assert!(
        notes.iter().any(|n| n.contains("resumed after restart")),
        "{notes:?}"
    );
    let api: kube::Api<Deployment> = kube::Api::namespaced(client, "default");
    assert_eq!(image(&api).await, GOOD);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_gitops_live_the_live_fix_is_undone_by_the_next_sync() {
    let stack = stack(Some(r#"{"gitops": "live"}"#), vec![], &[]).await;
    let repo = Repo::new(stack.dir.path(), &[("apps/web.yaml", &web_manifest(BAD))]);
    let client = stack.kube().await;
    flux(&client, &repo, "apps", INTERVAL).await;
    let api: kube::Api<Deployment> = kube::Api::namespaced(client.clone(), "default");
    // The live fix lands...
    stack
        .eventually("the live fix", support::FIX_TIMEOUT, async || {
            let img = image(&api).await;
            ((img == GOOD).then_some(()), img)
        })
        .await;
    // ...and Flux's next sync puts Git's bad tag back.
    stack
        .eventually(
            "Flux to undo the live fix",
            Duration::from_secs(30),
            async || {
                let img = image(&api).await;
                ((img == BAD).then_some(()), img)
            },
        )
        .await;
    let inc = support::incident_detail(
        &stack,
        &stack.get("/api/v1/reflexion/incidents").await["incidents"][0],
    )
    .await;
    assert_eq!(inc["owner"]["owner"]["kind"], "flux");
    assert_eq!(inc["owner"]["fix_lands"], "live");
    assert_eq!(repo.log("%H").len(), 1, "nothing was committed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_approval_a_pull_request_is_proposed_and_approving_merges_it() {
    let dir = tempfile::tempdir().unwrap();
    let repo_dir = dir.path().to_path_buf();
    let token = dir.path().join("forge-token");
    std::fs::write(&token, "ghp_forge_token_for_tests\n").unwrap();
    let gh = support::github::start(
        HashMap::from([(
            "acme/apps".to_string(),
            repo_dir.join("acme").join("apps.git"),
        )]),
        "ghp_forge_token_for_tests",
    )
    .await;
    let more = vec![
        "--forge".into(),
        "github".into(),
        "--forge-url".into(),
        gh.url.clone(),
        "--forge-token-file".into(),
        token.display().to_string(),
    ];
    let stack = stack(Some(r#"{"default_mode": "approve"}"#), more, &[]).await;
    let repo = Repo::new(&repo_dir, &[("apps/web.yaml", &web_manifest(BAD))]);
    let client = stack.kube().await;
    flux(&client, &repo, "apps", INTERVAL).await;

    let waiting = awaiting_approval(&stack).await;
    let id = waiting["id"].as_str().unwrap().to_string();
    let proposal = &waiting["pending_plan"]["plan"]["proposal"];
    assert_eq!(proposal["branch"], format!("kube-reflexion/{id}").as_str());
    let pr = &proposal["pull_request"];
    assert_eq!(pr["number"], 1);
    assert_eq!(waiting["git"]["proposal"]["sha"], proposal["sha"]);
    let pulls = gh.pulls();
    assert_eq!(pulls.len(), 1);
    assert_eq!(
        (pulls[0].head.as_str(), pulls[0].base.as_str()),
        (format!("kube-reflexion/{id}").as_str(), "main")
    );
    assert!(pulls[0].title.contains("web"), "{}", pulls[0].title);
    // Nothing reached the tracked branch or the live object yet.
    assert_eq!(repo.log("%H").len(), 1);
    let api: kube::Api<Deployment> = kube::Api::namespaced(client.clone(), "default");
    assert_eq!(image(&api).await, BAD);
    let note = waiting["transitions"].as_array().unwrap().last().unwrap()["note"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(note.contains(pr["url"].as_str().unwrap()), "{note}");

    stack.approve(&waiting).await;
    let inc = finished_incident(&stack).await;
    assert_eq!(inc["state"], "resolved", "{}", inc["outcome"]);
    // The pull request was merged on the forge: a merge commit whose second parent is the proposal.
    assert!(gh.pulls()[0].merged);
    let merge = repo.head();
    assert_eq!(
        support::repo::git(&repo.bare, &["rev-parse", &format!("{merge}^2")]),
        proposal["sha"].as_str().unwrap()
    );
    assert_eq!(inc["git"]["commit"]["sha"], merge.as_str());
    assert_eq!(inc["git"]["commit"]["pull_request"]["number"], 1);
    stays_ready(&api, GOOD).await;
    let seen = gh.inner.lock().unwrap().auth_seen.clone();
    assert!(
        seen.iter().all(|a| a == "Bearer ghp_forge_token_for_tests"),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_request_merged_on_the_forge_approves_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let gh = support::github::start(
        HashMap::from([(
            "acme/apps".to_string(),
            dir.path().join("acme").join("apps.git"),
        )]),
        "",
    )
    .await;
    let more = vec![
        "--forge".into(),
        "github".into(),
        "--forge-url".into(),
        gh.url.clone(),
    ];
    let stack = stack(Some(r#"{"default_mode": "approve"}"#), more, &[]).await;
    let repo = Repo::new(dir.path(), &[("apps/web.yaml", &web_manifest(BAD))]);
    let client = stack.kube().await;
    flux(&client, &repo, "apps", INTERVAL).await;
    let waiting = awaiting_approval(&stack).await;
    // A person merges it where they review changes, and Flux applies it before the product's next look at the pull
    // request: the workload is healthy when the approval arrives, which is the fix to verify, not a recovery.
    gh.answer_as_now();
    gh.merge_by_hand(1);
    let api: kube::Api<Deployment> = kube::Api::namespaced(client.clone(), "default");
    stack
        .eventually(
            "Flux to apply the merge and web to recover",
            support::FIX_TIMEOUT,
            async || {
                let d = api.get("web").await.unwrap();
                let image = image_of(Some(&d));
                let available = d.status.and_then(|s| s.available_replicas).unwrap_or(0);
                let good = image == GOOD && available >= 1;
                (
                    good.then_some(()),
                    format!("image {image}, {available} available"),
                )
            },
        )
        .await;
    let still = incident_detail(&stack, &waiting).await;
    assert_eq!(
        still["state"], "awaiting_approval",
        "the merge is not seen yet"
    );
    gh.answer_live();
    let inc = finished_incident(&stack).await;
    assert_eq!(inc["state"], "resolved", "{}", inc["outcome"]);
    let verified = inc["episodes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["verification"]["verified"] == true);
    assert!(
        verified,
        "the merged change was verified: {}",
        inc["episodes"]
    );
    let approved = inc["transitions"].as_array().unwrap().iter().any(|t| {
        t["note"].as_str().unwrap_or_default().contains("merging")
            && t["note"]
                .as_str()
                .unwrap_or_default()
                .contains("on the forge")
    });
    assert!(approved, "{}", inc["transitions"]);
    stays_ready(&api, GOOD).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_argo_cd_application_with_self_heal_is_fixed_through_git() {
    let stack = stack(None, vec![], &["--argocd-reconcile-secs", "10"]).await;
    let repo = Repo::new(
        stack.dir.path(),
        &[("guestbook/web.yaml", &web_manifest(BAD))],
    );
    let client = stack.kube().await;
    argo(&client, &repo, "guestbook", true).await;
    let inc = finished_incident(&stack).await;
    assert_eq!(inc["state"], "resolved", "{}", inc["outcome"]);
    assert_eq!(inc["owner"]["owner"]["kind"], "argo_cd");
    assert_eq!(inc["owner"]["owner"]["name"], "guestbook");
    assert_eq!(
        inc["owner"]["source"]["branch"], "main",
        "HEAD resolved to the default branch"
    );
    let log = repo.log("%H");
    assert_eq!(log.len(), 2);
    let app = support::gitops::applications(&client)
        .get("guestbook")
        .await
        .unwrap();
    assert_eq!(app.data["status"]["sync"]["revision"], log[0].as_str());
    let api: kube::Api<Deployment> = kube::Api::namespaced(client, "default");
    let d = api.get("web").await.unwrap();
    assert_eq!(
        d.metadata.annotations.unwrap()["argocd.argoproj.io/tracking-id"],
        "guestbook:apps/Deployment:default/web"
    );
    stays_ready(&api, GOOD).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helm_managed_workload_is_handed_over_naming_the_release() {
    let stack = stack(None, vec![], &[]).await;
    let helm = web_manifest(BAD).replace(
        "    app: web # keep in sync with the Service\n",
        "    app: web\n    app.kubernetes.io/managed-by: Helm\n  annotations:\n    meta.helm.sh/release-name: shop\n    meta.helm.sh/release-namespace: default\n",
    );
    let api = stack.create_deployment(&helm).await;
    let inc = finished_incident(&stack).await;
    assert_eq!(inc["state"], "escalated", "{}", inc["outcome"]);
    let outcome = inc["outcome"].as_str().unwrap();
    assert!(outcome.contains("Helm release default/shop"), "{outcome}");
    assert!(outcome.contains("helm upgrade shop"), "{outcome}");
    assert!(
        outcome.contains(GOOD),
        "the fix it would make is named: {outcome}"
    );
    assert_eq!(inc["owner"]["owner"]["kind"], "helm");
    assert_eq!(inc["owner"]["fix_lands"], "by_hand");
    assert!(
        audit_verbs(&inc).is_empty(),
        "nothing written: {:?}",
        audit_verbs(&inc)
    );
    assert_eq!(image(&api).await, BAD);
}
