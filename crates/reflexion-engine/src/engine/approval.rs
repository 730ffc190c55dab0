//! Approvals and rejections of a plan that waits for a person: the approved plan runs on this replica, under its
//! claim, exactly as proposed (checked again against the world as it is now); a rejected one never runs.

use super::{Engine, EngineError, Hold, PendingPlan};
use crate::db::DbError;
use reflexion_core::{Action, IncidentState};

/// What an approval did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    /// The incident was not awaiting approval.
    NotWaiting,
    /// The approved plan runs now.
    Running,
    /// Another replica holds the incident's claim: the plan runs here once it is free.
    Queued,
}

impl Engine {
    /// An operator approved the pending plan: run exactly that trial, on this replica. Never waits on another
    /// replica: when one holds the incident's claim (it is finishing its look, or died holding it), the approval is
    /// accepted and runs in the background as soon as the claim is free (`Approval::Queued`).
    pub async fn approve(&self, id: &str, by: &str) -> Result<Approval, DbError> {
        // Held here meanwhile, else this replica's look for unclaimed incidents could plan it again; let go on every
        // path, a dropped request and a panic included.
        let hold = Hold::new(self, id);
        let config = &self.inner.config;
        if self
            .inner
            .db
            .claim(id, &config.replica, config.claim_ttl)
            .await?
        {
            return self.run_approval(hold, by).await;
        }
        let waiting = self
            .inner
            .db
            .incident(id)
            .await?
            .is_some_and(|i| i.state == IncidentState::AwaitingApproval);
        if !waiting {
            return Ok(Approval::NotWaiting);
        }
        let engine = self.clone();
        let by = by.to_string();
        tokio::spawn(async move {
            let id = hold.id.clone();
            match engine.claim_patiently(&id).await {
                Ok(true) => match engine.run_approval(hold, &by).await {
                    Ok(Approval::Running) => {}
                    Ok(_) => {
                        tracing::info!(incident = %id, "the queued approval found nothing awaiting it")
                    }
                    Err(e) => {
                        tracing::warn!(incident = %id, error = %e, "the queued approval did not run")
                    }
                },
                Ok(false) => {
                    tracing::warn!(incident = %id, "the queued approval did not run: another replica kept the incident's claim; approve again")
                }
                Err(e) => {
                    tracing::warn!(incident = %id, error = %e, "the queued approval did not run")
                }
            }
        });
        Ok(Approval::Queued)
    }

    /// With the claim taken: take the pending plan and run it in the background.
    async fn run_approval(&self, hold: Hold, by: &str) -> Result<Approval, DbError> {
        let id = hold.id.clone();
        let taken = self
            .inner
            .db
            .take_pending_plan::<PendingPlan>(
                &id,
                IncidentState::Planning,
                &format!("approved by {by}"),
            )
            .await;
        let pending = match taken {
            Ok(Some(pending)) => pending,
            other => {
                let _ = self.inner.db.release(&id, &self.inner.config.replica).await;
                return other.map(|_| Approval::NotWaiting);
            }
        };
        let engine = self.clone();
        tokio::spawn(async move {
            let approved = async {
                let worked = engine.run_approved(&id, pending).await;
                engine.fail_on_error(&id, worked).await;
            };
            engine.claimed(&id, approved).await;
            drop(hold);
        });
        Ok(Approval::Running)
    }

    /// An operator rejected the pending plan: nothing is changed and the incident is handed over.
    pub async fn reject(&self, id: &str, by: &str, reason: &str) -> Result<bool, DbError> {
        let note = format!("rejected by {by}: {reason}");
        let Some(pending) = self
            .inner
            .db
            .take_pending_plan::<PendingPlan>(id, IncidentState::Escalated, &note)
            .await?
        else {
            return Ok(false);
        };
        let outcome = match pending {
            Ok(p) => {
                let mut outcome = format!("{note}; the proposed `{}` was not run", p.command);
                if let Some(c) = &p.plan.proposal
                    && let Some(pr) = &c.pull_request
                {
                    let source = reflexion_gitops::Source {
                        url: c.repo.clone(),
                        branch: String::new(),
                        path: String::new(),
                    };
                    match self.inner.config.gitops.close(&source, pr).await {
                        Ok(()) => outcome.push_str(&format!("; pull request {} closed", pr.url)),
                        Err(e) => {
                            outcome.push_str(&format!("; pull request {} left open: {e}", pr.url))
                        }
                    }
                }
                outcome
            }
            Err(_) => format!("{note}; the proposed plan was not run"),
        };
        self.inner.db.set_outcome(id, &outcome).await?;
        Ok(true)
    }

    async fn run_approved(
        &self,
        id: &str,
        pending: Result<PendingPlan, String>,
    ) -> Result<(), EngineError> {
        let db = &self.inner.db;
        let Some(inc) = db.incident(id).await? else {
            return Ok(());
        };
        let this = &self.on(&inc.cluster)?;
        let PendingPlan {
            plan,
            trial,
            diagnosis,
            ..
        } = match pending {
            Ok(p) => p,
            Err(e) => {
                db.finish(
                    id,
                    IncidentState::Failed,
                    &format!("the approved plan is unreadable: {e}"),
                )
                .await?;
                return Ok(());
            }
        };
        // A proposal a person merged on the forge may run already when this replica hears of it: its healthy pods
        // are then the fix to verify, not a recovery before any action. It goes on from the diagnosis it was made for.
        let diag = match (&plan.proposal, diagnosis) {
            (Some(_), Some(d)) => Some(d),
            _ => this.diagnose(&inc).await?,
        };
        let Some(mut diag) = diag else {
            return Ok(());
        };
        let route = this.route_of(&inc, &mut diag).await?;
        // The world may have moved while the plan waited: the same checks as before it was proposed.
        if let Err(why) = this.admissible(&plan.action, &diag.target) {
            return this
                .escalate(
                    &inc,
                    &diag.target,
                    &format!("refused `{}`: {why}", plan.action.render()),
                    "fix the workload by hand",
                )
                .await;
        }
        // The incident goes on after the approved trial, with what its earlier trials tried.
        let tried: Vec<Action> = db
            .episode_actions(id)
            .await?
            .into_iter()
            .filter_map(|a| serde_json::from_value(a).ok())
            .collect();
        this.trials(&inc, diag, &route, trial, tried, Some(plan))
            .await
    }
}
