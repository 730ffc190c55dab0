//! The incident loop: diagnose -> plan -> gate -> execute at the owner -> verify -> (revert, reflect, retry) ->
//! resolve or escalate. Every state transition is committed before the side effect it announces.

mod approval;
mod claims;
mod diagnose;
mod llm_planning;
mod options;
mod plan;
mod proposals;
mod prove;
mod refused;
mod route;
mod rules;
mod stalled;
mod trial;
mod write;

use crate::cluster::{ClusterError, Fleet, Member};
use crate::db::{Db, DbError, Incident};
use crate::llm::Llm;
use crate::registry::Registry;
use crate::verify::verify;
pub use approval::Approval;
use claims::Hold;
use reflexion_core::IncidentState;
use reflexion_core::owner::{WorkloadKind, WorkloadRef};
use reflexion_core::policy::{Budget, Policy, check_scope};
use reflexion_core::strategy::PlanSource;
use reflexion_core::{Action, Failure, Signature};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// The learned-value key for the memory limit that held.
pub(super) const MEMORY_LIMIT_KEY: &str = "memory_limit";

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub max_trials: u32,
    pub verify_window: Duration,
    pub verify_timeout: Duration,
    pub policy: Policy,
    /// The highest memory limit the OOM rule will set, in bytes.
    pub memory_ceiling: u64,
    pub budget: Budget,
    /// Share of choices between candidate strategies made at random rather than by their records.
    pub exploration_rate: f64,
    /// Minimum time between an action of one incident and an action of another on the same workload.
    pub workload_cooldown: Duration,
    pub llm: Option<Llm>,
    pub planner: PlannerMode,
    /// Incidents worked at once.
    pub max_concurrent_incidents: usize,
    /// This replica's name in the claims it takes on incidents (`claims`).
    pub replica: String,
    /// How long a claim lasts unless renewed: how soon another replica resumes the incidents of one that died.
    pub claim_ttl: Duration,
    /// This replica's part of the Kubernetes request budget, given to every cluster's client: set from the replicas
    /// alive (`claims`).
    pub kube_share: Arc<crate::cluster::throttle::Share>,
    /// The Git write path, for workloads a GitOps controller owns.
    pub gitops: Arc<reflexion_gitops::Gitops>,
    /// How long a commit may wait for its controller to apply it.
    pub gitops_sync_timeout: Duration,
    /// How often proposals' pull requests are looked at.
    pub gitops_poll: Duration,
    /// Where Argo CD's Applications are, unless a tracking id says.
    pub argocd_namespace: String,
}

/// Who plans first. Either way a learned strategy comes before a new LLM call, and every plan passes the same gates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlannerMode {
    /// Built-in rules; the LLM (when configured) only where the rules find no fix.
    Rules,
    /// The LLM first; the rules when it has no usable answer. For evaluating the LLM path.
    Llm,
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
    /// The cluster an incident is worked on, and its policy: set from the incident (`Engine::on`) before anything
    /// reads or writes the cluster.
    scope: Member,
}

struct Inner {
    db: Db,
    fleet: Fleet,
    registry: Registry,
    config: EngineConfig,
    /// One permit per incident being worked.
    working: Arc<tokio::sync::Semaphore>,
    /// Incidents waiting for a permit, oldest first.
    waiting: std::sync::Mutex<std::collections::VecDeque<String>>,
    claims: claims::Claims,
}

#[derive(Debug, thiserror::Error)]
enum EngineError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("the incident's cluster {0:?} is not served by this API (see --cluster)")]
    NotServed(String),
}

/// A concrete plan for one trial.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Plan {
    action: Action,
    source: PlanSource,
    rationale: String,
    template: String,
    description: String,
    /// The LLM calls behind this plan, when it came from the model.
    #[serde(default)]
    llm: Value,
    /// For a plan the LLM proposed: the action with names redacted, kept with its strategy for reuse.
    #[serde(default)]
    payload: Option<Value>,
    /// On the Git route, the proposal (branch, commit, pull request) an approval merges.
    #[serde(default)]
    proposal: Option<reflexion_gitops::Commit>,
}

/// A plan waiting for a person: exactly the trial, and the command shown, that approval runs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct PendingPlan {
    plan: Plan,
    trial: u32,
    command: String,
    /// What the plan was made for (absent in plans stored before it was kept).
    #[serde(default)]
    diagnosis: Option<Diagnosis>,
}

/// What diagnosis found: the failure, where its fix belongs, the evidence, the pod it was read from, every cause
/// the workload's pods show, and what their probes are seen to do.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Diagnosis {
    failure: Failure,
    target: WorkloadRef,
    evidence: Value,
    pod: String,
    symptoms: Vec<Signature>,
    probes: Vec<rules::probe::ProbeResult>,
}

enum Planned {
    Plan(Box<Plan>),
    Escalate {
        diagnosis: String,
        suggestion: String,
    },
}

impl Engine {
    pub fn new(db: Db, fleet: Fleet, registry: Registry, config: EngineConfig) -> Self {
        Self {
            scope: fleet.first().clone(),
            inner: Arc::new(Inner {
                db,
                fleet,
                registry,
                working: Arc::new(tokio::sync::Semaphore::new(
                    config.max_concurrent_incidents.max(1),
                )),
                waiting: Default::default(),
                claims: claims::Claims::new(),
                config,
            }),
        }
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The clusters this API serves.
    pub fn fleet(&self) -> &Fleet {
        &self.inner.fleet
    }

    /// The engine scoped to an incident's cluster: its client and its policy.
    fn on(&self, cluster: &str) -> Result<Engine, EngineError> {
        let member = self
            .inner
            .fleet
            .serving(cluster)
            .ok_or_else(|| EngineError::NotServed(cluster.to_string()))?;
        Ok(Engine {
            inner: self.inner.clone(),
            scope: member.clone(),
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Run an incident to its end in the background: at once when fewer than `max_concurrent_incidents` are
    /// being worked, else after them. A waiting incident costs its id in a queue (and its row, stored as
    /// `reported`), not a task: 20,000 spawned incident futures held 250 MiB.
    pub fn spawn(&self, id: String) {
        // Queued or worked here already.
        if !self.inner.claims.hold_new(&id) {
            return;
        }
        let Ok(permit) = self.inner.working.clone().try_acquire_owned() else {
            self.waiting().push_back(id);
            return;
        };
        let engine = self.clone();
        tokio::spawn(async move {
            let mut permit = permit;
            let mut next = Some(id);
            loop {
                while let Some(id) = next.take() {
                    engine.work(&id).await;
                    next = engine.waiting().pop_front();
                }
                drop(permit);
                // An id queued while this worker was finishing must not wait for the next report.
                loop {
                    let Ok(p) = engine.inner.working.clone().try_acquire_owned() else {
                        return;
                    };
                    if let Some(id) = engine.waiting().pop_front() {
                        (permit, next) = (p, Some(id));
                        break;
                    }
                    drop(p);
                    if engine.waiting().is_empty() {
                        return;
                    }
                }
            }
        });
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<String>> {
        self.inner.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Work the incident under this replica's claim, from where it stands (held since `spawn`).
    async fn work(&self, id: &str) {
        let _hold = Hold::held(self, id);
        self.claimed(id, self.take_up(id)).await;
    }

    /// Resume what a restart interrupted, and from then on what any replica left (`claims`). Returns the incidents
    /// resumed now.
    pub async fn resume(&self) -> Result<usize, DbError> {
        self.announce().await?;
        let n = self.adopt_unclaimed(Duration::ZERO).await?;
        self.keep_claims();
        self.watch_proposals();
        Ok(n)
    }

    async fn reverify(&self, id: &str, state: IncidentState) -> Result<(), EngineError> {
        let db = &self.inner.db;
        let Some(inc) = db.incident(id).await? else {
            return Ok(());
        };
        let this = self.on(&inc.cluster)?;
        let target = WorkloadRef::new(
            WorkloadKind::parse(&inc.workload_kind).unwrap_or(WorkloadKind::Pod),
            &inc.namespace,
            &inc.workload_name,
        );
        let (route, _) = this.route(&inc, &target).await?;
        // The commit a Git fix made, to be applied before the workload can prove it.
        let mut commit: Option<String> = db
            .incident_summary(id)
            .await?
            .and_then(|s| s.git.0["commit"]["sha"].as_str().map(String::from));
        // A write that was under way when the process died may or may not have landed: read it back first.
        let unsettled = if state == IncidentState::Executing {
            db.unsettled_action(id).await?
        } else {
            None
        };
        if let (Some((slot, detail)), route::Route::Git { source, .. }) = (&unsettled, &route)
            && detail["route"] == "git"
        {
            let trial = detail["trial"].as_u64().unwrap_or(1) as u32;
            match self.inner.config.gitops.landed(source, id, trial).await {
                Ok(Some(sha)) => {
                    db.settle_action(
                        *slot,
                        &format!(
                            "ok: commit {sha} on {} (read back after a restart)",
                            source.branch
                        ),
                    )
                    .await?;
                    commit = Some(sha);
                }
                Ok(None) => {
                    db.settle_action(*slot, "not applied (read back after a restart)")
                        .await?;
                    tracing::info!(incident = %id, "the commit did not land before the restart; diagnosing again");
                    return self.run(id).await;
                }
                Err(e) => {
                    tracing::warn!(incident = %id, error = %e, "reading back the commit failed")
                }
            }
        } else if let Some((slot, detail)) = &unsettled
            && let Ok(journal) =
                serde_json::from_value::<crate::cluster::Journal>(detail["journal"].clone())
        {
            // A recreation: finished from its journal, whatever step it stopped at.
            match this.scope.cluster.recreate(&journal).await {
                Ok(_) => {
                    db.settle_action(*slot, "ok (finished from the journal)")
                        .await?
                }
                Err(e @ (ClusterError::Timeout(_) | ClusterError::Uncertain(_))) => {
                    // Still half made: the slot stays reserved, and the incident is taken up again (by any
                    // replica) once its claim has been idle for the claim TTL.
                    tracing::warn!(incident = %id, error = %e, "the journaled recreation is not finished yet");
                    db.transition(
                        id,
                        IncidentState::Executing,
                        &format!("the recreation is not finished ({e}); it is taken up again from its journal"),
                    )
                    .await?;
                    return Ok(());
                }
                Err(e) => {
                    db.settle_action(*slot, &format!("error: {e}")).await?;
                    db.finish(
                        id,
                        IncidentState::Escalated,
                        &format!("finishing the journaled recreation failed: {e}; the original object is in the audit row's journal"),
                    )
                    .await?;
                    return Ok(());
                }
            }
        } else if let Some((slot, detail)) = unsettled
            && let Ok(action) = serde_json::from_value::<Action>(detail["action"].clone())
        {
            let command = action.render();
            match this.landed_after_restart(&action, id).await {
                Some(true) => {
                    db.settle_action(slot, "ok (read back after a restart)")
                        .await?
                }
                Some(false) => {
                    // It never landed: nothing was changed, and the incident starts its trial again from a fresh look.
                    db.settle_action(slot, "not applied (read back after a restart)")
                        .await?;
                    tracing::info!(incident = %id, %command, "the write did not land before the restart; diagnosing again");
                    return self.run(id).await;
                }
                // Not readable back: the slot is settled as such, and verification says whether the workload holds.
                None => {
                    db.settle_action(
                        slot,
                        "outcome unknown (not readable back); the workload was verified as it stands",
                    )
                    .await?
                }
            }
        }
        db.transition(
            id,
            IncidentState::Verifying,
            "resumed after restart: verifying without acting again",
        )
        .await?;
        if let (route::Route::Git { source, controller }, Some(sha)) = (&route, &commit)
            && let Err(why) = this.applied(source, controller, sha).await
        {
            db.finish(
                id,
                IncidentState::Escalated,
                &format!("after restart: {why}"),
            )
            .await?;
            return Ok(());
        }
        let v = verify(
            this.scope.cluster.client(),
            &target,
            crate::verify::Expected::default(),
            self.inner.config.verify_window,
            self.inner.config.verify_timeout,
        )
        .await;
        let (state, outcome) = if v.verified {
            (IncidentState::Resolved, v.detail)
        } else {
            (
                IncidentState::Escalated,
                format!("after restart: {}", v.detail),
            )
        };
        db.finish(id, state, &outcome).await?;
        Ok(())
    }

    /// Whether the action's write is in place, read back for up to 60 s: a request the API server still held when
    /// this process died lands within kube-apiserver's request timeout (`--request-timeout`, 1 minute) or never. `None`: it cannot be read back, or the cluster does
    /// not answer.
    async fn landed_after_restart(&self, action: &Action, id: &str) -> Option<bool> {
        let cluster = &self.scope.cluster;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut landed = None;
        while tokio::time::Instant::now() < deadline {
            let read = match cluster.compile(action, id).await {
                Ok(change) => cluster.landed(&change).await,
                Err(e) => Err(e),
            };
            match read {
                Ok(Some(true)) => return Some(true),
                Ok(None) => return None,
                Ok(Some(false)) => landed = Some(false),
                Err(e) => {
                    tracing::warn!(incident = %id, error = %e, "reading back the write failed")
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        landed
    }

    /// The gates every action passes, whoever proposed it and however long it waited for approval: valid
    /// parameters, and only the incident's own workload outside the protected namespaces.
    fn admissible(&self, action: &Action, target: &WorkloadRef) -> Result<(), String> {
        action
            .validate()
            .map_err(|e| format!("invalid action: {e}"))?;
        check_scope(action, target, &self.scope.policy.protected_namespaces)
    }

    async fn escalate(
        &self,
        inc: &Incident,
        target: &WorkloadRef,
        diagnosis: &str,
        suggestion: &str,
    ) -> Result<(), EngineError> {
        // A change kept because it made progress stays in place when the incident is handed over: say so.
        let kept = self.inner.db.kept_changes(&inc.id).await?;
        let kept = if kept.is_empty() {
            String::new()
        } else {
            format!(
                " Kept from earlier trials because they made progress: {}.",
                kept.iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let text = format!("{diagnosis}. Suggested: {suggestion}{kept}");
        self.inner
            .db
            .finish(&inc.id, IncidentState::Escalated, &text)
            .await?;
        self.scope
            .cluster
            .record_event(target, "Warning", "ReflexionEscalated", &text)
            .await;
        tracing::warn!(incident = %inc.id, workload = %target, %text, "incident escalated");
        Ok(())
    }
}
