//! What the store answers, as typed rows: read from the database by column name (a missing or mistyped column is
//! a `DbError`, never a panic or a silent 0), served as JSON, and described in the OpenAPI document.

use reflexion_core::IncidentState;
use serde::Serialize;
use serde_json::Value;
use sqlx::FromRow;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A JSON document the store keeps as text (both databases hold JSON as text); null when the column is.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
pub struct Doc(pub Value);

impl TryFrom<Option<String>> for Doc {
    type Error = serde_json::Error;
    fn try_from(text: Option<String>) -> Result<Self, Self::Error> {
        text.map_or(Ok(Doc(Value::Null)), |t| serde_json::from_str(&t).map(Doc))
    }
}

/// The workload an incident is about.
#[derive(Debug, Clone, Serialize, FromRow, ToSchema)]
pub struct Workload {
    #[sqlx(rename = "workload_kind")]
    pub kind: String,
    #[sqlx(rename = "workload_name")]
    pub name: String,
}

/// One incident, as listed.
#[derive(Debug, Clone, Serialize, FromRow, ToSchema)]
pub struct IncidentSummary {
    pub id: String,
    /// The cluster the report came from (empty for incidents stored before clusters were named).
    pub cluster: String,
    pub created_at: String,
    pub updated_at: String,
    pub namespace: String,
    pub pod_name: String,
    #[sqlx(flatten)]
    pub workload: Workload,
    /// The kubelet's reason, e.g. `ImagePullBackOff`.
    pub error_type: String,
    /// `family/cause`, e.g. `image_pull/not_found`.
    pub signature: String,
    #[sqlx(try_from = "String")]
    #[schema(value_type = String, example = "resolved")]
    pub state: IncidentState,
    pub trials: i64,
    pub outcome: Option<String>,
    /// Where the verified fix came from (`rules`, `learned`, `llm`); null until one held.
    pub fixed_by: Option<String>,
    /// Who keeps the workload's desired state, read at diagnosis: `{owner: {kind: live|flux|argo_cd|helm, ...},
    /// controller, source, note, fix_lands: live|git|by_hand}`; null before diagnosis.
    #[schema(value_type = Option<Object>)]
    #[sqlx(try_from = "Option<String>")]
    pub owner: Doc,
    /// The Git change of the latest trial, or the proposal awaiting approval: `{repo, branch, sha, files, diff,
    /// pull_request}`; null when no fix went through Git.
    #[schema(value_type = Option<Object>)]
    #[sqlx(try_from = "Option<String>")]
    pub git: Doc,
}

/// An Alertmanager alert as received, and what became of it.
#[derive(Debug, Clone, Serialize, FromRow, ToSchema)]
pub struct AlertRow {
    pub id: i64,
    pub received_at: String,
    pub cluster: String,
    pub alertname: String,
    pub status: String,
    pub fingerprint: String,
    pub namespace: Option<String>,
    pub workload_kind: Option<String>,
    pub workload_name: Option<String>,
    /// `reported` (a report on the workload), `resolved` (recorded), or `ignored` (with `why`).
    pub outcome: String,
    pub why: Option<String>,
    pub incident_id: Option<String>,
    #[schema(value_type = Object)]
    #[sqlx(try_from = "Option<String>")]
    pub labels: Doc,
}

/// One move of an incident's state machine.
#[derive(Debug, Clone, Serialize, FromRow, ToSchema)]
pub struct Transition {
    pub at: String,
    pub state: String,
    pub note: String,
}

/// A move of any incident, as the live feed announces it; `id` orders them (and resumes a feed).
#[derive(Debug, Clone, Serialize, FromRow, ToSchema)]
pub struct TransitionEvent {
    pub id: i64,
    pub incident_id: String,
    pub at: String,
    pub state: String,
    pub note: String,
}

/// One write to the cluster (or its reservation, or a revert), as the audit log holds it.
#[derive(Debug, Clone, Serialize, FromRow, ToSchema)]
pub struct AuditEntry {
    pub at: String,
    /// The cluster written to.
    pub cluster: String,
    pub verb: String,
    pub target: String,
    #[schema(value_type = Object)]
    #[sqlx(try_from = "Option<String>")]
    pub detail: Doc,
    pub result: String,
}

/// One call to the model: the prompt, its answer, what it cost and what became of it.
#[derive(Debug, Clone, Serialize, FromRow, ToSchema)]
pub struct LlmCall {
    pub trial: i64,
    pub at: String,
    pub model: String,
    pub prompt: String,
    pub response: Option<String>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub latency_ms: i64,
    pub outcome: String,
}

/// One trial: the action, its dry run, execution and verification, and the reflection on it.
#[derive(Debug, Clone, Serialize, FromRow, ToSchema)]
pub struct Episode {
    pub id: String,
    pub incident_id: String,
    /// The cluster the trial ran on: its lessons were taught there.
    pub cluster: String,
    pub trial: i64,
    pub pod_name: String,
    pub namespace: String,
    pub error_type: String,
    pub signature: String,
    pub strategy_id: Option<String>,
    /// `rules`, `learned` or `llm`.
    pub source: String,
    #[schema(value_type = Object)]
    #[sqlx(try_from = "Option<String>")]
    pub action: Doc,
    /// The action as the kubectl command it amounts to.
    pub command: String,
    pub rationale: String,
    #[schema(value_type = Option<Object>)]
    #[sqlx(try_from = "Option<String>")]
    pub dry_run: Doc,
    #[schema(value_type = Option<Object>)]
    #[sqlx(try_from = "Option<String>")]
    pub execution: Doc,
    #[schema(value_type = Option<Object>)]
    #[sqlx(try_from = "Option<String>")]
    pub verification: Doc,
    pub success: bool,
    pub reverted: bool,
    pub reflection: String,
    #[sqlx(skip)]
    pub lessons_learned: Vec<String>,
    pub duration_ms: i64,
    /// The LLM calls behind the plan (null when it did not come from the model).
    #[schema(value_type = Option<Object>)]
    #[sqlx(try_from = "Option<String>")]
    pub llm: Doc,
    pub created_at: String,
}

/// The full trail of one incident.
#[derive(Debug, Clone, Serialize, FromRow, ToSchema)]
pub struct IncidentDetail {
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub summary: IncidentSummary,
    /// The failure report as the watcher sent it.
    #[schema(value_type = Object)]
    #[sqlx(try_from = "Option<String>")]
    pub report: Doc,
    /// What diagnosis read from the cluster.
    #[schema(value_type = Option<Object>)]
    #[sqlx(try_from = "Option<String>")]
    pub evidence: Doc,
    /// The plan waiting for approval: `{plan, trial, command}`.
    #[schema(value_type = Option<Object>)]
    #[sqlx(try_from = "Option<String>")]
    pub pending_plan: Doc,
    #[sqlx(skip)]
    pub transitions: Vec<Transition>,
    /// Trials, oldest first.
    #[sqlx(skip)]
    pub episodes: Vec<Episode>,
    #[sqlx(skip)]
    pub llm_calls: Vec<LlmCall>,
    #[sqlx(skip)]
    pub audit: Vec<AuditEntry>,
}

/// A learned strategy and its verified record.
#[derive(Debug, Clone, Serialize, FromRow, ToSchema)]
pub struct Strategy {
    pub id: String,
    #[serde(rename = "type")]
    pub error_type: String,
    #[sqlx(rename = "signature_class")]
    pub signature: String,
    pub action: String,
    pub template: String,
    /// Posterior mean of its success probability, Beta(1, 1) prior.
    #[sqlx(skip)]
    pub confidence: f64,
    #[sqlx(skip)]
    pub success_rate: f64,
    pub successes: i64,
    pub failures: i64,
    pub usage_count: i64,
    pub source: String,
    pub description: String,
    pub created_at: String,
    pub last_used: Option<String>,
}

impl Strategy {
    /// Fill in the scores, which the domain computes from the counts.
    pub(super) fn scored(mut self) -> Self {
        let (s, f) = (self.successes.max(0) as u64, self.failures.max(0) as u64);
        self.confidence = reflexion_core::strategy::confidence(s, f);
        self.success_rate = reflexion_core::strategy::success_rate(s, f);
        self
    }
}

/// A value a verified fix used on one workload (the memory limit that held), where the next fix of that signature
/// there starts.
#[derive(Debug, Clone, Serialize, FromRow, ToSchema)]
pub struct LearnedValue {
    pub signature: String,
    pub namespace: String,
    #[sqlx(flatten)]
    pub workload: Workload,
    pub key: String,
    pub value: String,
    pub episode_id: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, FromRow, ToSchema)]
pub struct ErrorTypeCount {
    pub error_type: String,
    pub incidents: i64,
    pub resolved: i64,
    pub mean_trials_to_fix: Option<f64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IncidentCounts {
    pub total: i64,
    /// Being worked on or awaiting approval.
    pub open: i64,
    /// Resolved, escalated or failed: what the success rate is over.
    pub decided: i64,
    /// Nothing to fix.
    pub dismissed: i64,
    pub by_state: BTreeMap<String, i64>,
    pub by_error_type: Vec<ErrorTypeCount>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EpisodeCounts {
    pub total: i64,
    pub successful: i64,
    pub reverted: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LlmUse {
    pub calls: i64,
    pub accepted: i64,
    pub tokens: i64,
    pub mean_latency_ms: Option<f64>,
}

/// What the engine did and learned, counted from the store.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Statistics {
    pub incidents: IncidentCounts,
    /// Resolved over decided; null before anything was decided.
    pub success_rate: Option<f64>,
    pub mean_trials_to_fix: Option<f64>,
    pub first_trial_fix_rate: Option<f64>,
    pub episodes: EpisodeCounts,
    pub strategies: i64,
    pub lessons: i64,
    pub cluster_writes: i64,
    pub reverts: i64,
    pub llm: LlmUse,
}

/// One UTC day of the learning curve.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Day {
    pub day: String,
    pub incidents: i64,
    pub resolved: i64,
    pub success_rate: Option<f64>,
    pub mean_trials_to_fix: Option<f64>,
    pub llm_calls_per_incident: f64,
    /// Of the incidents resolved that day, the share that needed no LLM call.
    pub llm_free_share: Option<f64>,
}

/// A day's counts as the query returns them.
#[derive(Debug, FromRow)]
pub(super) struct DayCounts {
    pub day: String,
    pub incidents: i64,
    pub resolved: Option<i64>,
    pub finished: Option<i64>,
    pub trials: Option<f64>,
    pub llm_calls: Option<i64>,
    pub resolved_without_llm: Option<i64>,
}

impl From<DayCounts> for Day {
    fn from(r: DayCounts) -> Self {
        let n = r.incidents as f64;
        let resolved = r.resolved.unwrap_or(0);
        let finished = r.finished.unwrap_or(0);
        let free = r.resolved_without_llm.unwrap_or(0);
        Day {
            day: r.day,
            incidents: r.incidents,
            resolved,
            success_rate: (finished > 0).then(|| resolved as f64 / finished as f64),
            mean_trials_to_fix: r.trials,
            llm_calls_per_incident: r.llm_calls.unwrap_or(0) as f64 / n.max(1.0),
            llm_free_share: (resolved > 0).then(|| free as f64 / resolved as f64),
        }
    }
}
