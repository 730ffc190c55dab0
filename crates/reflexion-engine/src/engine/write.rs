//! Each trial's write, by route. Live: the action compiled once into a patch, dry-run by the API server, made and
//! read back (`cluster::change`). Git: the same action planned as a line-minimal edit against the tracked branch's
//! tip (with the API server's dry run of the equivalent live change), committed and pushed — or, approved, its pull
//! request merged; `rollout_undo` reverts the commit that changed the template — and verified only once the
//! controller reports it applied (`reflexion_gitops`). A fix that did not hold is undone the same way it was made:
//! a live revert, or a revert commit.

use super::route::Route;
use super::{Diagnosis, Engine, Plan};
use crate::cluster::{Change, ClusterError, Controller, Reverted, Snapshot};
use crate::db::Incident;
use reflexion_core::gitops::revision_sha;
use reflexion_core::owner::WorkloadRef;
use reflexion_core::{Action, Signature};
use reflexion_gitops::{Commit, Destination, Source};
use serde_json::{Value, json};
use std::time::Duration;

/// A trial's write, compiled and checked, not yet made.
pub(in crate::engine) enum Prepared {
    Live(Change),
    Git {
        source: Source,
        controller: Controller,
        how: GitWrite,
    },
}

pub(in crate::engine) enum GitWrite {
    /// The action as a commit to the tracked branch.
    Commit,
    /// An approved proposal, merged.
    Merge(Commit),
    /// `rollout_undo`: a revert of the commit that last changed the template.
    Undo(String),
}

/// A write that failed; `unknown` when it may be in place or half made (a lost answer, a recreation whose old
/// object has not gone yet): then it is read back, never reported as not made.
#[derive(Debug)]
pub(in crate::engine) struct Failed {
    why: String,
    unknown: bool,
}

impl Failed {
    pub(in crate::engine) fn outcome_unknown(&self) -> bool {
        self.unknown
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

impl From<String> for Failed {
    fn from(why: String) -> Self {
        Self {
            why,
            unknown: false,
        }
    }
}

impl From<&str> for Failed {
    fn from(why: &str) -> Self {
        why.to_string().into()
    }
}

/// A write that was made, and what undoing it needs.
pub(in crate::engine) enum Done {
    Live(Snapshot),
    Git {
        source: Source,
        controller: Controller,
        commit: Commit,
    },
}

impl Done {
    /// What the episode keeps of the write.
    pub(in crate::engine) fn execution(&self) -> Value {
        match self {
            Done::Live(s) => json!({"snapshot": s}),
            Done::Git {
                commit, controller, ..
            } => json!({"commit": commit, "controller": controller}),
        }
    }

    /// A recreated pod's (or bare Job's) uid: only it can prove the fix.
    pub(in crate::engine) fn new_uid(&self) -> Option<&str> {
        match self {
            Done::Live(
                Snapshot::RecreatedPod { new_uid, .. } | Snapshot::RecreatedJob { new_uid, .. },
            ) => Some(new_uid),
            _ => None,
        }
    }

    /// How the audit row settles.
    pub(in crate::engine) fn settled(&self) -> String {
        match self {
            Done::Live(_) => "ok".into(),
            Done::Git { commit, .. } => format!("ok: commit {} on {}", commit.sha, commit.branch),
        }
    }

    /// How the incident's Event and outcome say what was done.
    pub(in crate::engine) fn describe(&self, command: &str) -> String {
        match self {
            Done::Live(_) => format!("`{command}`"),
            Done::Git {
                commit, controller, ..
            } => format!(
                "commit {} to {} ({}), applied by {controller}: the change `{command}` made in Git",
                short(&commit.sha),
                commit.branch,
                commit.repo
            ),
        }
    }
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// Text from the cluster put in a commit message: one line, bounded.
fn line(text: &str, max: usize) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect()
}

impl Engine {
    /// The commit message of a trial's fix: the incident, the failure, the evidence, and the verification to come.
    pub(in crate::engine) fn commit_message(
        &self,
        inc: &Incident,
        trial: u32,
        diag: &Diagnosis,
        plan: &Plan,
        controller: &Controller,
    ) -> String {
        let cfg = &self.inner.config;
        let target = &diag.target;
        format!(
            "fix({}/{}): {}\n\n\
             kube-reflexion incident {} (trial {trial}): {target} shows {} ({}).\n\
             Failure: {}\n\
             Evidence: {}\n\
             Change: `{}`, made here because {controller} applies this repository; a live patch would be\n\
             undone by its next sync.\n\
             Verification to come: once {controller} applies this commit, {target} must be Ready and\n\
             stay Ready for {}s (within {}s); otherwise kube-reflexion reverts this commit.",
            target.namespace,
            target.name,
            line(&plan.description, 72),
            inc.id,
            Signature::of(&diag.failure),
            line(&inc.error_type, 64),
            line(&diag.failure.message, 300),
            line(&plan.rationale, 400),
            plan.action.render(),
            cfg.verify_window.as_secs_f64(),
            (cfg.gitops_sync_timeout + cfg.verify_timeout).as_secs(),
        )
    }

    /// Compile and check a trial's write: the API server's dry run, and for Git the edit planned against the
    /// tracked tip. Nothing is written. `Err` says why the write cannot be made.
    pub(in crate::engine) async fn prepare(
        &self,
        route: &Route,
        inc: &Incident,
        plan: &Plan,
    ) -> Result<(Prepared, Value), String> {
        let cluster = &self.scope.cluster;
        let Route::Git { source, controller } = route else {
            // A write compiled against an object that changed before the dry run (a kubelet's status update
            // between the read and a delete's resourceVersion precondition) is compiled again.
            let mut attempt = 0;
            loop {
                attempt += 1;
                let change = cluster
                    .compile(&plan.action, &inc.id)
                    .await
                    .map_err(|e| e.to_string())?;
                match cluster.dry_run(&change).await {
                    Ok(dry) => return Ok((Prepared::Live(change), dry)),
                    Err(crate::cluster::ClusterError::Kube(kube::Error::Api(s)))
                        if s.code == 409 && attempt < 3 =>
                    {
                        tracing::info!(incident = %inc.id, attempt, "the object changed before the dry run; compiling again");
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
        };
        let gitops = &self.inner.config.gitops;
        let Some(target) = plan.action.target() else {
            return Err("an escalation writes nothing".into());
        };
        let (how, dry) = match (&plan.action, &plan.proposal) {
            (_, Some(p)) => (
                GitWrite::Merge(p.clone()),
                json!({"dry_run": "merge of the approved proposal", "commit": p.sha, "pull_request": p.pull_request}),
            ),
            (Action::RolloutUndo { .. }, None) => {
                match gitops.breaking_commit(source, target).await {
                    Ok(Some(sha)) => (
                        GitWrite::Undo(sha.clone()),
                        json!({"dry_run": "revert of the commit that last changed the template", "commit": sha}),
                    ),
                    Ok(None) => {
                        return Err(format!(
                            "the newest commit on {} that touched {target} did not change its pod template: no commit to revert",
                            source.branch
                        ));
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            (Action::GrantRoleRule { role, .. }, None) => {
                return Err(format!(
                    "{target} is deployed from Git: add the rule to role/{role} there, where a live change would be undone by the next sync"
                ));
            }
            (Action::RecreateClaim { .. }, None) => {
                return Err("a claim's storage class cannot change in place: change the claim's storageClassName in Git and let the controller replace it".into());
            }
            (action, None) => {
                // The API server's verdict on the result, as for a live fix, where the executor compiles the kind.
                let server = match cluster.compile(action, &inc.id).await {
                    Ok(change) => Some(cluster.dry_run(&change).await.map_err(|e| {
                        format!("the API server refused a dry run of the change: {e}")
                    })?),
                    Err(ClusterError::Unsupported(_)) => None,
                    Err(e) => return Err(e.to_string()),
                };
                let planned = gitops
                    .plan(source, target, action)
                    .await
                    .map_err(|e| e.to_string())?;
                (
                    GitWrite::Commit,
                    json!({"dry_run": "commit planned", "repository": reflexion_gitops::git::redact(&source.url),
                           "branch": source.branch, "base": planned.base, "files": planned.files,
                           "diff": planned.diff, "server": server}),
                )
            }
        };
        Ok((
            Prepared::Git {
                source: source.clone(),
                controller: controller.clone(),
                how,
            },
            dry,
        ))
    }

    /// Make a prepared write.
    pub(in crate::engine) async fn execute(
        &self,
        prepared: Prepared,
        inc: &Incident,
        trial: u32,
        plan: &Plan,
        message: &str,
    ) -> Result<Done, Failed> {
        let (source, controller, how) = match prepared {
            Prepared::Live(change) => {
                return self
                    .scope
                    .cluster
                    .apply(change)
                    .await
                    .map(Done::Live)
                    .map_err(|e| Failed {
                        unknown: matches!(
                            e,
                            crate::cluster::ClusterError::Uncertain(_)
                                | crate::cluster::ClusterError::Timeout(_)
                        ),
                        why: e.to_string(),
                    });
            }
            Prepared::Git {
                source,
                controller,
                how,
            } => (source, controller, how),
        };
        let gitops = &self.inner.config.gitops;
        let commit = match how {
            GitWrite::Commit => {
                let target = plan.action.target().ok_or("an escalation writes nothing")?;
                let change = reflexion_gitops::Change {
                    target,
                    action: &plan.action,
                    message,
                    incident: &inc.id,
                    trial,
                };
                gitops
                    .commit(&source, &change, Destination::Tracked)
                    .await
                    .map_err(|e| e.to_string())?
            }
            GitWrite::Merge(proposal) => {
                let sha = gitops
                    .merge(&source, &proposal)
                    .await
                    .map_err(|e| e.to_string())?;
                Commit {
                    sha,
                    branch: source.branch.clone(),
                    ..proposal
                }
            }
            GitWrite::Undo(sha) => gitops
                .revert(
                    &source,
                    &sha,
                    message,
                    &reflexion_gitops::trailers(&inc.id, trial),
                )
                .await
                .map_err(|e| e.to_string())?,
        };
        Ok(Done::Git {
            source,
            controller,
            commit,
        })
    }

    /// Wait until what a write changed is what the cluster runs: at once for a live write; for a commit, until its
    /// controller reports a revision that includes it. `Ok` says what was applied; `Err` why it was not.
    pub(in crate::engine) async fn synced(&self, done: &Done) -> Result<Option<String>, String> {
        let Done::Git {
            source,
            controller,
            commit,
        } = done
        else {
            return Ok(None);
        };
        self.applied(source, controller, &commit.sha)
            .await
            .map(Some)
    }

    /// Wait for `controller` to apply a revision that includes `sha`.
    pub(in crate::engine) async fn applied(
        &self,
        source: &Source,
        controller: &Controller,
        sha: &str,
    ) -> Result<String, String> {
        let (cluster, cfg) = (&self.scope.cluster, &self.inner.config);
        let deadline = tokio::time::Instant::now() + cfg.gitops_sync_timeout;
        // The last revision checked, and whether it includes the commit: each new one is asked of git once.
        let mut checked: Option<(String, bool)> = None;
        let mut last = String::from("nothing yet");
        while tokio::time::Instant::now() < deadline {
            match cluster.applied(controller).await {
                Ok(a) => {
                    if let Some(rev) = &a.revision {
                        last = rev.clone();
                        let applied_sha = revision_sha(rev).unwrap_or_default().to_string();
                        let includes = match &checked {
                            Some((r, inc)) if *r == applied_sha => *inc,
                            _ => {
                                let inc = cfg
                                    .gitops
                                    .includes(source, sha, &applied_sha)
                                    .await
                                    .unwrap_or(false);
                                checked = Some((applied_sha.clone(), inc));
                                inc
                            }
                        };
                        if includes {
                            return Ok(format!("{controller} applied {rev}"));
                        }
                    }
                    if let Some((rev, why)) = &a.failed
                        && revision_sha(rev).is_some_and(|s| s == sha)
                    {
                        return Err(format!(
                            "{controller} could not apply commit {}: {}",
                            short(sha),
                            line(why, 500)
                        ));
                    }
                }
                Err(e) => last = format!("status unreadable: {e}"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Err(format!(
            "{controller} did not apply commit {} within {}s (last applied: {last})",
            short(sha),
            cfg.gitops_sync_timeout.as_secs()
        ))
    }

    /// Undo a write that did not hold: a live revert, or a revert commit the controller is given time to apply.
    pub(in crate::engine) async fn undo(
        &self,
        inc: &Incident,
        trial: u32,
        done: &Done,
    ) -> Reverted {
        let Done::Git {
            source,
            controller,
            commit,
        } = done
        else {
            let Done::Live(snapshot) = done else {
                return Reverted::Skipped("nothing to undo".into());
            };
            return self.scope.cluster.revert(snapshot).await;
        };
        let message = format!(
            "revert({}): kube-reflexion incident {} trial {trial} did not hold\n\n\
             Reverts {} because the workload was not Ready and stable after {controller} applied it.",
            source.path, inc.id, commit.sha
        );
        let reverted = match self
            .inner
            .config
            .gitops
            .revert(source, &commit.sha, &message, &[])
            .await
        {
            Ok(r) => r,
            Err(e) => return Reverted::Failed(format!("the revert commit could not be made: {e}")),
        };
        match self.applied(source, controller, &reverted.sha).await {
            Ok(applied) => Reverted::Done(format!(
                "reverted by commit {} on {}; {applied}",
                short(&reverted.sha),
                reverted.branch
            )),
            Err(why) => Reverted::Done(format!(
                "reverted by commit {} on {}, not yet applied: {why}",
                short(&reverted.sha),
                reverted.branch
            )),
        }
    }

    /// Propose a fix that needs approval as a branch of its own (and a pull request where a forge is
    /// configured): nothing reaches the tracked branch until it is merged.
    pub(in crate::engine) async fn propose(
        &self,
        route: &Route,
        inc: &Incident,
        trial: u32,
        diag: &Diagnosis,
        plan: &Plan,
    ) -> Result<Option<Commit>, String> {
        let Route::Git { source, controller } = route else {
            return Ok(None);
        };
        let target: &WorkloadRef = &diag.target;
        if matches!(
            plan.action,
            Action::RolloutUndo { .. } | Action::RecreateClaim { .. }
        ) {
            return Err(format!(
                "`{}` is not proposed as a pull request: make the change in Git by hand",
                plan.action.render()
            ));
        }
        let branch = if trial == 1 {
            format!("kube-reflexion/{}", inc.id)
        } else {
            format!("kube-reflexion/{}-{trial}", inc.id)
        };
        let message = self.commit_message(inc, trial, diag, plan, controller);
        let title = format!(
            "kube-reflexion: {} on {}/{}",
            line(&plan.description, 80),
            target.namespace,
            target.name
        );
        let change = reflexion_gitops::Change {
            target,
            action: &plan.action,
            message: &message,
            incident: &inc.id,
            trial,
        };
        self.inner
            .config
            .gitops
            .commit(
                source,
                &change,
                Destination::Proposal {
                    branch: &branch,
                    title: &title,
                },
            )
            .await
            .map(Some)
            .map_err(|e| e.to_string())
    }
}
