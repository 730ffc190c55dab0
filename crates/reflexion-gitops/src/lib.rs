//! The Git write path: where a GitOps controller (Flux, Argo CD) owns a workload, a typed action becomes a
//! line-minimal commit to the repository the controller syncs — pushed to the tracked branch, or to a branch of its
//! own with a pull request whose merge is the approval — and a failed fix is undone by a revert commit. Every write
//! is read back: a push whose answer was lost is looked for by the incident's trailer before anything is written
//! again. Never a force push, never a rewritten history, never a path outside the repository or through a link,
//! never another repository than the one the owner names.

mod checkout;
pub mod forge;
pub mod git;

use checkout::Checkout;
use forge::{Forge, PrState, PullRequest};
use git::Git;
use reflexion_core::Action;
use reflexion_core::gitops::kustomize::{self, FileEdit, KustomizeError, Target};
use reflexion_core::owner::WorkloadRef;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub use checkout::check_branch;

/// Pushes tried when the branch keeps moving under us.
const ATTEMPTS: usize = 3;
/// Longest diff kept with a commit (for the approval view and the store).
const MAX_DIFF: usize = 8 * 1024;
pub const INCIDENT_TRAILER: &str = "Kube-Reflexion-Incident";
pub const TRIAL_TRAILER: &str = "Kube-Reflexion-Trial";
pub const REVERTS_TRAILER: &str = "Kube-Reflexion-Reverts";

#[derive(Debug, thiserror::Error)]
pub enum GitopsError {
    #[error("repository {0}: {1}")]
    Url(String, String),
    #[error("git {0}: {1}")]
    Git(String, String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}: the path {1}")]
    Path(String, &'static str),
    #[error("{0} is not a branch name kube-reflexion pushes to")]
    Branch(String),
    #[error("the branch {0} moved on while the change was made")]
    Rejected(String),
    #[error("the repository is too large: {0}")]
    TooLarge(String),
    #[error(transparent)]
    Manifest(#[from] KustomizeError),
    #[error("the edit changes nothing in the repository: the field already has that value")]
    Unchanged,
    #[error("forge: {0}")]
    Forge(String),
    #[error("no forge is configured (--forge) to open or merge a pull request")]
    NoForge,
    #[error("reverting {0} does not apply cleanly: {1}")]
    Conflict(String, String),
}

/// Where a GitOps controller reads a workload from: a repository, its tracked branch, the path it builds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub url: String,
    pub branch: String,
    pub path: String,
}

/// A change as it would be committed, computed before anything is written: the Git path's dry run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Planned {
    /// The commit it was computed against.
    pub base: String,
    pub files: Vec<String>,
    pub diff: String,
}

/// A commit kube-reflexion pushed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// The repository, without credentials.
    pub repo: String,
    /// The branch it was pushed to.
    pub branch: String,
    pub sha: String,
    pub files: Vec<String>,
    pub diff: String,
    #[serde(default)]
    pub pull_request: Option<PullRequest>,
}

/// A fix to commit: the action on its workload, the message (its trailers are added), and the incident's trial it
/// belongs to.
pub struct Change<'a> {
    pub target: &'a WorkloadRef,
    pub action: &'a Action,
    pub message: &'a str,
    pub incident: &'a str,
    pub trial: u32,
}

/// Where a commit goes.
pub enum Destination<'a> {
    /// The tracked branch: the controller applies it.
    Tracked,
    /// A branch of its own, with a pull request into the tracked branch when a forge is configured.
    Proposal { branch: &'a str, title: &'a str },
}

pub struct Config {
    pub workdir: PathBuf,
    pub git: Git,
    pub author_name: String,
    pub author_email: String,
    pub forge: Option<Forge>,
}

pub struct Gitops {
    cfg: Config,
    /// One change at a time per repository clone.
    locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

/// The trailers that say which incident and trial a commit belongs to: how a commit is found again.
pub fn trailers(incident: &str, trial: u32) -> Vec<String> {
    vec![
        format!("{INCIDENT_TRAILER}: {incident}"),
        format!("{TRIAL_TRAILER}: {trial}"),
    ]
}

/// A diff of the changed lines of each file (bounded).
fn diff(edits: &[FileEdit]) -> String {
    let mut out = String::new();
    for e in edits {
        let (b, a): (Vec<&str>, Vec<&str>) =
            (e.before.lines().collect(), e.after.lines().collect());
        let head = b.iter().zip(&a).take_while(|(x, y)| x == y).count();
        let tail = b[head..]
            .iter()
            .rev()
            .zip(a[head..].iter().rev())
            .take_while(|(x, y)| x == y)
            .count();
        out.push_str(&format!(
            "--- a/{0}\n+++ b/{0}\n@@ -{1} +{1} @@\n",
            e.path,
            head + 1
        ));
        for l in &b[head..b.len() - tail] {
            out.push_str(&format!("-{l}\n"));
        }
        for l in &a[head..a.len() - tail] {
            out.push_str(&format!("+{l}\n"));
        }
    }
    if out.len() > MAX_DIFF {
        let mut cut = MAX_DIFF;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("\n[diff cut]\n");
    }
    out
}

fn target_of(w: &WorkloadRef) -> Target {
    Target {
        kind: w.kind,
        namespace: w.namespace.clone(),
        name: w.name.clone(),
    }
}

impl std::fmt::Debug for Gitops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gitops")
            .field("workdir", &self.cfg.workdir)
            .field(
                "forge",
                &self.cfg.forge.as_ref().map(|f| (f.kind, &f.base_url)),
            )
            .finish()
    }
}

impl Gitops {
    pub fn new(cfg: Config) -> Self {
        Self {
            cfg,
            locks: Mutex::new(HashMap::new()),
        }
    }

    pub fn forge(&self) -> Option<&Forge> {
        self.cfg.forge.as_ref()
    }

    async fn lock(&self, source: &Source) -> tokio::sync::OwnedMutexGuard<()> {
        let dir = checkout::dir_for(&self.cfg.workdir, &source.url);
        let m = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(dir).or_default().clone()
        };
        m.lock_owned().await
    }

    async fn checkout(&self, source: &Source) -> Result<Checkout<'_>, GitopsError> {
        check_branch(&source.branch)?;
        Checkout::sync(&self.cfg.git, &self.cfg.workdir, source).await
    }

    /// The clone with the tracked branch fetched, its work tree untouched: for reading history only.
    async fn fetched(&self, source: &Source) -> Result<Checkout<'_>, GitopsError> {
        check_branch(&source.branch)?;
        Checkout::fetched(&self.cfg.git, &self.cfg.workdir, source).await
    }

    async fn edits(
        &self,
        c: &Checkout<'_>,
        source: &Source,
        target: &WorkloadRef,
        action: &Action,
    ) -> Result<Vec<FileEdit>, GitopsError> {
        let tree = c.tree("HEAD").await?;
        let edits = kustomize::plan(&tree, &source.path, &target_of(target), action)?;
        if edits.is_empty() {
            return Err(GitopsError::Unchanged);
        }
        Ok(edits)
    }

    /// What committing the action would change, against the tracked branch's tip. Nothing is written.
    pub async fn plan(
        &self,
        source: &Source,
        target: &WorkloadRef,
        action: &Action,
    ) -> Result<Planned, GitopsError> {
        let _held = self.lock(source).await;
        let c = self.checkout(source).await?;
        let edits = self.edits(&c, source, target, action).await?;
        Ok(Planned {
            base: c.head().await?,
            files: edits.iter().map(|e| e.path.clone()).collect(),
            diff: diff(&edits),
        })
    }

    /// Commit the action's edit with `message` (the trailers are added here) and push it; a proposal also gets its
    /// pull request. A push the branch refused because it moved on is made again on the new tip; a push whose
    /// answer was lost is read back by the trailers before it is made again.
    pub async fn commit(
        &self,
        source: &Source,
        change: &Change<'_>,
        to: Destination<'_>,
    ) -> Result<Commit, GitopsError> {
        let _held = self.lock(source).await;
        let (target, action) = (change.target, change.action);
        let lines = trailers(change.incident, change.trial);
        let message = format!("{}\n\n{}\n", change.message.trim_end(), lines.join("\n"));
        let branch = match &to {
            Destination::Tracked => source.branch.clone(),
            Destination::Proposal { branch, .. } => branch.to_string(),
        };
        check_branch(&branch)?;
        let mut last = GitopsError::Rejected(branch.clone());
        for _ in 0..ATTEMPTS {
            let c = self.checkout(source).await?;
            if let Some(sha) = self.pushed(&c, source, &branch, &lines).await? {
                tracing::info!(%sha, %branch, "the commit is on the branch already: not made again");
                let pr = self.proposal(source, &branch, &to, &message).await?;
                return Ok(self.record(source, &branch, sha, Vec::new(), String::new(), pr));
            }
            let edits = self.edits(&c, source, target, action).await?;
            for e in &edits {
                c.write(&e.path, &e.after)?;
            }
            let mut add = vec!["add", "--"];
            add.extend(edits.iter().map(|e| e.path.as_str()));
            c.ok(&add).await?;
            let sha = c
                .commit(&self.cfg.author_name, &self.cfg.author_email, &message)
                .await?;
            match c.push(&branch).await {
                Ok(()) => {}
                Err(GitopsError::Rejected(b)) => {
                    last = GitopsError::Rejected(b);
                    continue;
                }
                Err(e) => {
                    // The answer may be lost while the push landed: look before saying it failed.
                    if c.fetch(&branch).await.is_ok()
                        && c.is_ancestor(&sha, &format!("origin/{branch}")).await?
                    {
                        tracing::warn!(error = %e, %sha, "the push answered with an error but landed");
                    } else {
                        return Err(e);
                    }
                }
            }
            let pr = self.proposal(source, &branch, &to, &message).await?;
            let files = edits.iter().map(|e| e.path.clone()).collect();
            return Ok(self.record(source, &branch, sha, files, diff(&edits), pr));
        }
        Err(last)
    }

    fn record(
        &self,
        source: &Source,
        branch: &str,
        sha: String,
        files: Vec<String>,
        diff: String,
        pull_request: Option<PullRequest>,
    ) -> Commit {
        Commit {
            repo: git::redact(&source.url),
            branch: branch.to_string(),
            sha,
            files,
            diff,
            pull_request,
        }
    }

    /// The commit with these trailers on `branch` of the remote, if one is there.
    async fn pushed(
        &self,
        c: &Checkout<'_>,
        source: &Source,
        branch: &str,
        lines: &[String],
    ) -> Result<Option<String>, GitopsError> {
        // The tracked branch was fetched by the checkout; a proposal's branch may not exist yet.
        if branch != source.branch && c.fetch(branch).await.is_err() {
            // No such branch yet.
            return Ok(None);
        }
        c.find(&format!("origin/{branch}"), lines).await
    }

    async fn proposal(
        &self,
        source: &Source,
        branch: &str,
        to: &Destination<'_>,
        message: &str,
    ) -> Result<Option<PullRequest>, GitopsError> {
        let Destination::Proposal { title, .. } = to else {
            return Ok(None);
        };
        let Some(forge) = &self.cfg.forge else {
            return Ok(None);
        };
        forge
            .open(&source.url, branch, &source.branch, title, message)
            .await
            .map(Some)
    }

    /// Whether a commit with the incident's trial trailers is on the tracked branch: a write read back.
    pub async fn landed(
        &self,
        source: &Source,
        incident: &str,
        trial: u32,
    ) -> Result<Option<String>, GitopsError> {
        let _held = self.lock(source).await;
        let c = self.fetched(source).await?;
        c.find(
            &format!("origin/{}", source.branch),
            &trailers(incident, trial),
        )
        .await
    }

    /// Merge a proposal into the tracked branch: through the forge's pull request, or, without a forge, by a merge
    /// commit pushed to the tracked branch. The commit that lands it (already merged on the forge: that one).
    pub async fn merge(&self, source: &Source, proposal: &Commit) -> Result<String, GitopsError> {
        if let Some(pr) = &proposal.pull_request {
            let forge = self.cfg.forge.as_ref().ok_or(GitopsError::NoForge)?;
            return match forge.state(&source.url, pr.number).await? {
                PrState::Merged(sha) if !sha.is_empty() => Ok(sha),
                PrState::Closed => Err(GitopsError::Forge(format!(
                    "pull request {} was closed",
                    pr.url
                ))),
                _ => forge.merge(&source.url, pr.number, &proposal.sha).await,
            };
        }
        let _held = self.lock(source).await;
        let mut last = GitopsError::Rejected(source.branch.clone());
        for _ in 0..ATTEMPTS {
            let c = self.checkout(source).await?;
            if c.is_ancestor(&proposal.sha, "HEAD").await? {
                return c.head().await;
            }
            c.fetch(&proposal.branch).await?;
            let from = format!("origin/{}", proposal.branch);
            let user = format!("user.name={}", self.cfg.author_name);
            let mail = format!("user.email={}", self.cfg.author_email);
            let msg = format!("Merge {} (approved)", proposal.branch);
            c.ok(&[
                "-c",
                &user,
                "-c",
                &mail,
                "merge",
                "--no-ff",
                "--no-verify",
                "-m",
                &msg,
                &from,
            ])
            .await?;
            match c.push(&source.branch).await {
                Ok(()) => return c.head().await,
                Err(GitopsError::Rejected(b)) => last = GitopsError::Rejected(b),
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Undo a commit on the tracked branch with a revert commit (a merge is reverted against its first parent);
    /// `trailers` (an incident's trial, when the revert is itself the fix) go with its own.
    pub async fn revert(
        &self,
        source: &Source,
        sha: &str,
        message: &str,
        trailers: &[String],
    ) -> Result<Commit, GitopsError> {
        let _held = self.lock(source).await;
        let marker = format!("{REVERTS_TRAILER}: {sha}");
        let mut last = GitopsError::Rejected(source.branch.clone());
        for _ in 0..ATTEMPTS {
            let c = self.checkout(source).await?;
            if let Some(done) = c.find("HEAD", std::slice::from_ref(&marker)).await? {
                return Ok(self.record(
                    source,
                    &source.branch,
                    done,
                    Vec::new(),
                    String::new(),
                    None,
                ));
            }
            let parents = c.parents(sha).await?;
            let mut args = vec!["revert", "--no-edit", "--no-commit"];
            if parents > 1 {
                args.extend(["-m", "1"]);
            }
            args.push(sha);
            let out = c.git.run(Some(&c.dir), &args, None).await?;
            if !out.ok {
                let _ = c.ok(&["revert", "--abort"]).await;
                return Err(GitopsError::Conflict(
                    sha.to_string(),
                    out.stderr.trim().chars().take(500).collect(),
                ));
            }
            let mut lines = trailers.to_vec();
            lines.push(marker.clone());
            let full = format!("{}\n\n{}\n", message.trim_end(), lines.join("\n"));
            let new = c
                .commit(&self.cfg.author_name, &self.cfg.author_email, &full)
                .await?;
            let diff_text = c
                .ok(&["show", "--format=", "--unified=0", &new])
                .await
                .unwrap_or_default();
            match c.push(&source.branch).await {
                Ok(()) => {
                    let mut d = diff_text;
                    d.truncate(d.char_indices().nth(MAX_DIFF).map_or(d.len(), |(i, _)| i));
                    return Ok(self.record(source, &source.branch, new, Vec::new(), d, None));
                }
                Err(GitopsError::Rejected(b)) => last = GitopsError::Rejected(b),
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Whether the commit `sha` is in the history of `applied` (what the controller says it applied).
    pub async fn includes(
        &self,
        source: &Source,
        sha: &str,
        applied: &str,
    ) -> Result<bool, GitopsError> {
        if sha == applied {
            return Ok(true);
        }
        let _held = self.lock(source).await;
        let c = self.fetched(source).await?;
        c.is_ancestor(sha, applied).await
    }

    /// The commit on the tracked branch that last changed the object's pod template, for `rollout_undo` as a
    /// revert: `None` when the newest change to the files that define it did not change the template.
    pub async fn breaking_commit(
        &self,
        source: &Source,
        target: &WorkloadRef,
    ) -> Result<Option<String>, GitopsError> {
        let _held = self.lock(source).await;
        let c = self.checkout(source).await?;
        let t = target_of(target);
        let now = kustomize::find(&c.tree("HEAD").await?, &source.path, &t)?;
        let mut files: Vec<String> = now.layers.iter().map(|l| l.file.clone()).collect();
        files.extend(now.images.iter().map(|i| i.file.clone()));
        let mut args = vec!["log", "-n", "1", "--no-merges", "--format=%H", "HEAD", "--"];
        args.extend(files.iter().map(String::as_str));
        let sha = c.ok(&args).await?.trim().to_string();
        if sha.is_empty() {
            return Ok(None);
        }
        let before = match kustomize::find(&c.tree(&format!("{sha}^")).await?, &source.path, &t) {
            Ok(f) => f.effective,
            Err(_) => return Ok(None),
        };
        let spec = reflexion_core::gitops::edit::pod_spec_path(target.kind);
        let template = |v: &serde_json::Value| reflexion_core::gitops::edit::get(v, &spec).cloned();
        Ok((template(&before) != template(&now.effective)).then_some(sha))
    }

    /// The branch an Argo CD `targetRevision` names: `HEAD` (or nothing) is the remote's default branch; another
    /// name is a branch only if the remote has a branch by that name (else it is a tag or a commit: `None`).
    pub async fn branch_of(
        &self,
        url: &str,
        revision: &str,
    ) -> Result<Option<String>, GitopsError> {
        let git = &self.cfg.git;
        git.check_url(url)?;
        if revision.is_empty() || revision == "HEAD" {
            let out = git
                .ok(None, &["ls-remote", "--symref", "--", url, "HEAD"])
                .await?;
            return Ok(out
                .lines()
                .find_map(|l| l.strip_prefix("ref: refs/heads/"))
                .and_then(|l| l.split('\t').next())
                .map(String::from));
        }
        if check_branch(revision).is_err() {
            return Ok(None);
        }
        let head = format!("refs/heads/{revision}");
        let out = git
            .ok(None, &["ls-remote", "--heads", "--", url, &head])
            .await?;
        Ok((!out.trim().is_empty()).then(|| revision.to_string()))
    }

    /// A pull request's state on the forge.
    pub async fn pr_state(
        &self,
        source: &Source,
        pr: &PullRequest,
    ) -> Result<PrState, GitopsError> {
        self.cfg
            .forge
            .as_ref()
            .ok_or(GitopsError::NoForge)?
            .state(&source.url, pr.number)
            .await
    }

    /// Close a pull request that was rejected.
    pub async fn close(&self, source: &Source, pr: &PullRequest) -> Result<(), GitopsError> {
        self.cfg
            .forge
            .as_ref()
            .ok_or(GitopsError::NoForge)?
            .close(&source.url, pr.number)
            .await
    }
}
