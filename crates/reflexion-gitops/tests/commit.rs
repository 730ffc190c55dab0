//! The Git write path against real repositories (Debian's git; bare repositories on disk) and a test server
//! speaking GitHub's API: a fix committed to the tracked branch changes only its line and is authored by
//! kube-reflexion; made again for the same trial it is found, not repeated; a proposal is a branch and a pull
//! request whose merge lands it; a revert commit undoes it; the commit that broke a template is found; links and
//! paths out of the repository are refused; the forge's token reaches only the forge.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::repo::{Repo, git};

use reflexion_core::Action;
use reflexion_core::owner::{WorkloadKind, WorkloadRef};
use reflexion_gitops::forge::{Forge, ForgeKind};
use reflexion_gitops::git::{Credentials, Git, Secret};
use reflexion_gitops::{Change, Config, Destination, Gitops, GitopsError, Source};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

const WEB: &str = "# the shop's web tier\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web # front\n  namespace: shop\nspec:\n  template:\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.27.O   # bad tag\n";

/// A repository (`support::repo`) and the work directory of the Gitops under test.
struct Fixture {
    _dir: tempfile::TempDir,
    repo: Repo,
    workdir: PathBuf,
}

impl Fixture {
    fn new(files: &[(&str, &str)]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::new(dir.path(), files);
        Fixture {
            workdir: dir.path().join("checkouts"),
            repo,
            _dir: dir,
        }
    }

    fn commit(&self, files: &[(&str, &str)], msg: &str) -> String {
        self.repo.commit(files, msg)
    }

    fn source(&self, path: &str) -> Source {
        Source {
            url: format!("file://{}", self.repo.bare.display()),
            branch: "main".into(),
            path: path.into(),
        }
    }

    fn gitops(&self, forge: Option<Forge>) -> Gitops {
        Gitops::new(Config {
            workdir: self.workdir.clone(),
            git: Git {
                credentials: Credentials::default(),
                timeout: Duration::from_secs(30),
                allow_file: true,
            },
            author_name: "kube-reflexion".into(),
            author_email: "kube-reflexion@noreply.invalid".into(),
            forge,
        })
    }

    fn log(&self, format: &str) -> Vec<String> {
        self.repo.log(format)
    }

    fn show(&self, rev: &str, path: &str) -> String {
        self.repo.show(rev, path)
    }
}

fn web() -> WorkloadRef {
    WorkloadRef::new(WorkloadKind::Deployment, "shop", "web")
}

fn fix() -> Action {
    Action::SetImage {
        target: web(),
        container: "web".into(),
        image: "nginx:1.27.3".into(),
    }
}

fn change<'a>(target: &'a WorkloadRef, action: &'a Action, trial: u32) -> Change<'a> {
    Change {
        target,
        action,
        message: "fix(shop/web): image nginx:1.27.3\n\nThe tag nginx:1.27.O does not exist.",
        incident: "inc-1",
        trial,
    }
}

#[tokio::test]
async fn a_fix_is_one_commit_of_one_line_and_is_not_made_twice() {
    let f = Fixture::new(&[("apps/web.yaml", WEB), ("apps/README.md", "docs\n")]);
    let g = f.gitops(None);
    let (t, a) = (web(), fix());
    let planned = g.plan(&f.source("./apps"), &t, &a).await.unwrap();
    assert_eq!(planned.files, vec!["apps/web.yaml"]);
    assert!(
        planned.diff.contains(
            "-        image: nginx:1.27.O   # bad tag\n+        image: nginx:1.27.3   # bad tag"
        ),
        "{}",
        planned.diff
    );
    // Planning writes nothing.
    assert_eq!(f.log("%H").len(), 1);

    let c = g
        .commit(
            &f.source("./apps"),
            &change(&t, &a, 1),
            Destination::Tracked,
        )
        .await
        .unwrap();
    assert_eq!(f.log("%H"), vec![c.sha.clone(), f.log("%H")[1].clone()]);
    assert_eq!(
        f.show("main", "apps/web.yaml"),
        WEB.replace("nginx:1.27.O", "nginx:1.27.3").trim_end()
    );
    assert_eq!(
        f.log("%an <%ae>")[0],
        "kube-reflexion <kube-reflexion@noreply.invalid>"
    );
    let body = git(&f.repo.bare, &["log", "-1", "--format=%B", "main"]);
    assert!(
        body.contains("Kube-Reflexion-Incident: inc-1") && body.contains("Kube-Reflexion-Trial: 1"),
        "{body}"
    );
    let changed = git(&f.repo.bare, &["show", "--format=", "--numstat", "main"]);
    assert_eq!(changed, "1\t1\tapps/web.yaml");

    // The same trial again (a retry after a lost answer): found on the branch, not committed again.
    let again = g
        .commit(
            &f.source("./apps"),
            &change(&t, &a, 1),
            Destination::Tracked,
        )
        .await
        .unwrap();
    assert_eq!(again.sha, c.sha);
    assert_eq!(f.log("%H").len(), 2);
    assert_eq!(
        g.landed(&f.source("./apps"), "inc-1", 1).await.unwrap(),
        Some(c.sha.clone())
    );
    assert_eq!(
        g.landed(&f.source("./apps"), "inc-1", 2).await.unwrap(),
        None
    );

    // Someone pushed meanwhile: the next fix lands on their commit, nothing of theirs is lost.
    let theirs = f.commit(
        &[(
            "apps/other.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other, namespace: shop}\n",
        )],
        "theirs",
    );
    let res = Action::SetResources {
        target: web(),
        container: "web".into(),
        memory_limit: "128Mi".into(),
        memory_request: None,
    };
    let c2 = g
        .commit(
            &f.source("./apps"),
            &change(&t, &res, 2),
            Destination::Tracked,
        )
        .await
        .unwrap();
    assert_eq!(
        git(&f.repo.bare, &["rev-parse", &format!("{}^", c2.sha)]),
        theirs
    );

    // A revert commit undoes a fix, and is found rather than made twice.
    let r = g
        .revert(
            &f.source("./apps"),
            &c2.sha,
            "revert: the limit did not help",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        f.show("main", "apps/web.yaml"),
        WEB.replace("nginx:1.27.O", "nginx:1.27.3").trim_end()
    );
    let r2 = g
        .revert(&f.source("./apps"), &c2.sha, "revert again", &[])
        .await
        .unwrap();
    assert_eq!(r.sha, r2.sha);
    assert!(
        g.includes(&f.source("./apps"), &c.sha, &r.sha)
            .await
            .unwrap()
    );
    assert!(
        !g.includes(&f.source("./apps"), &r.sha, &c.sha)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_proposal_is_a_branch_and_a_pull_request_whose_merge_lands_it() {
    let f = Fixture::new(&[("apps/web.yaml", WEB)]);
    let gh = support::github::start(
        HashMap::from([("acme/apps".to_string(), f.repo.bare.clone())]),
        "forge-token-123",
    )
    .await;
    let forge = Forge::new(
        ForgeKind::Github,
        &gh.url,
        Some(Secret::new("forge-token-123")),
    )
    .unwrap();
    let g = f.gitops(Some(forge));
    let (t, a) = (web(), fix());
    let c = g
        .commit(
            &f.source("apps"),
            &change(&t, &a, 1),
            Destination::Proposal {
                branch: "kube-reflexion/inc-1",
                title: "kube-reflexion: set image nginx:1.27.3 on shop/web",
            },
        )
        .await
        .unwrap();
    // Nothing on the tracked branch yet: the pull request waits for a person.
    assert_eq!(f.log("%H").len(), 1);
    let pr = c.pull_request.clone().unwrap();
    assert_eq!(pr.number, 1);
    let pulls = gh.pulls();
    assert_eq!(
        (pulls[0].head.as_str(), pulls[0].base.as_str()),
        ("kube-reflexion/inc-1", "main")
    );
    assert!(pulls[0].body.contains("Kube-Reflexion-Incident: inc-1"));
    assert_eq!(
        git(&f.repo.bare, &["rev-parse", "kube-reflexion/inc-1"]),
        c.sha
    );

    let merged = g.merge(&f.source("apps"), &c).await.unwrap();
    assert_eq!(git(&f.repo.bare, &["rev-parse", "main"]), merged);
    assert!(
        f.show("main", "apps/web.yaml")
            .contains("image: nginx:1.27.3")
    );
    // Merged already: asking again answers the same commit.
    assert_eq!(g.merge(&f.source("apps"), &c).await.unwrap(), merged);
    // The merge is reverted against its first parent.
    g.revert(
        &f.source("apps"),
        &merged,
        "revert",
        &reflexion_gitops::trailers("inc-1", 2),
    )
    .await
    .unwrap();
    assert!(
        f.show("main", "apps/web.yaml")
            .contains("image: nginx:1.27.O")
    );
    // A revert that is itself a trial's fix carries the trial's trailers: it can be read back.
    assert!(
        g.landed(&f.source("apps"), "inc-1", 2)
            .await
            .unwrap()
            .is_some()
    );
    // The token went to the forge as a bearer token, and nothing else did.
    let seen = gh.inner.lock().unwrap().auth_seen.clone();
    assert!(
        !seen.is_empty() && seen.iter().all(|a| a == "Bearer forge-token-123"),
        "{seen:?}"
    );
}

#[tokio::test]
async fn without_a_forge_the_approval_merges_the_branch_itself() {
    let f = Fixture::new(&[("apps/web.yaml", WEB)]);
    let g = f.gitops(None);
    let (t, a) = (web(), fix());
    let c = g
        .commit(
            &f.source("apps"),
            &change(&t, &a, 1),
            Destination::Proposal {
                branch: "kube-reflexion/inc-1",
                title: "t",
            },
        )
        .await
        .unwrap();
    assert!(c.pull_request.is_none());
    let merged = g.merge(&f.source("apps"), &c).await.unwrap();
    assert_eq!(git(&f.repo.bare, &["rev-parse", "main"]), merged);
    assert_eq!(
        git(&f.repo.bare, &["rev-parse", &format!("{merged}^2")]),
        c.sha
    );
}

#[tokio::test]
async fn the_commit_that_broke_the_template_is_found() {
    let good = WEB.replace("nginx:1.27.O", "nginx:1.27.3");
    let f = Fixture::new(&[("apps/web.yaml", &good)]);
    let bad = f.commit(&[("apps/web.yaml", WEB)], "bump nginx");
    f.commit(
        &[(
            "apps/other.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: shop}\n",
        )],
        "unrelated",
    );
    let g = f.gitops(None);
    assert_eq!(
        g.breaking_commit(&f.source("apps"), &web()).await.unwrap(),
        Some(bad)
    );
}

#[tokio::test]
async fn links_and_paths_out_of_the_repository_are_refused() {
    let f = Fixture::new(&[("real/web.yaml", WEB)]);
    std::os::unix::fs::symlink("../real/web.yaml", f.repo.work.join("linked.yaml")).unwrap();
    std::fs::create_dir_all(f.repo.work.join("apps")).unwrap();
    std::os::unix::fs::symlink("../real", f.repo.work.join("apps/dir")).unwrap();
    f.commit(
        &[("k/kustomization.yaml", "resources: [../linked.yaml]\n")],
        "links",
    );
    let g = f.gitops(None);
    let (t, a) = (web(), fix());
    for (path, want) in [
        ("k", "symbolic link"),
        ("apps/dir", "symbolic link"),
        ("../etc", "leaves the repository"),
    ] {
        let err = g.plan(&f.source(path), &t, &a).await.unwrap_err();
        assert!(err.to_string().contains(want), "{path}: {err}");
    }
    let unsafe_url = Source {
        url: "ext::sh -c touch% /tmp/owned".into(),
        branch: "main".into(),
        path: ".".into(),
    };
    assert!(matches!(
        g.plan(&unsafe_url, &t, &a).await.unwrap_err(),
        GitopsError::Url(..)
    ));
    let bad_branch = Source {
        branch: "--upload-pack=x".into(),
        ..f.source("real")
    };
    assert!(matches!(
        g.plan(&bad_branch, &t, &a).await.unwrap_err(),
        GitopsError::Branch(_)
    ));
}
