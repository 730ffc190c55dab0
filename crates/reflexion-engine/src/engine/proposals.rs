//! Pull requests waiting for a person are watched on the forge: merged there, the incident is approved (its trial
//! runs: the merge commit is applied by the controller, then verified); closed without merging, it is rejected.
//! Either way the person decides where they already review changes, and the console stays in step.

use super::Engine;
use reflexion_core::IncidentState;
use reflexion_gitops::forge::PrState;
use reflexion_gitops::{Commit, Source};

impl Engine {
    /// Look at the pull requests of incidents awaiting approval, every `--gitops-poll-secs`, until the process
    /// ends. Only with a forge configured.
    pub fn watch_proposals(&self) {
        if self.inner.config.gitops.forge().is_none() {
            return;
        }
        let engine = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(engine.inner.config.gitops_poll).await;
                if let Err(e) = engine.look_at_proposals().await {
                    tracing::warn!(error = %e, "looking at pull requests failed");
                }
            }
        });
    }

    async fn look_at_proposals(&self) -> Result<(), crate::db::DbError> {
        let db = &self.inner.db;
        let waiting = db
            .incidents(Some(IncidentState::AwaitingApproval.as_str()), 500)
            .await?;
        for inc in waiting {
            // The proposal waiting for approval is on the incident's row (`git`), as await_approval stored it.
            let Ok(commit) = serde_json::from_value::<Commit>(inc.git.0["proposal"].clone()) else {
                continue;
            };
            let Some(pr) = &commit.pull_request else {
                continue;
            };
            let source = Source {
                url: commit.repo.clone(),
                branch: String::new(),
                path: String::new(),
            };
            match self.inner.config.gitops.pr_state(&source, pr).await {
                Ok(PrState::Merged(_)) => {
                    tracing::info!(incident = %inc.id, pr = %pr.url, "the pull request was merged on the forge: approved");
                    self.approve(&inc.id, &format!("merging {} on the forge", pr.url))
                        .await?;
                }
                Ok(PrState::Closed) => {
                    tracing::info!(incident = %inc.id, pr = %pr.url, "the pull request was closed: rejected");
                    self.reject(
                        &inc.id,
                        "the forge",
                        &format!("{} was closed without merging", pr.url),
                    )
                    .await?;
                }
                Ok(PrState::Open) => {}
                Err(e) => {
                    tracing::warn!(incident = %inc.id, error = %e, "reading a pull request failed")
                }
            }
        }
        Ok(())
    }
}
