//! Who plans a trial: the rules (or, in `llm` mode, the model first), a strategy the LLM taught before, then a new
//! LLM call; every plan passes the same gates.

use super::{Engine, Plan, Planned, PlannerMode, llm_planning};
use crate::db::Incident;
use reflexion_core::Failure;
use reflexion_core::owner::WorkloadRef;

impl Engine {
    /// Choose this trial's plan: the rules (or, in `llm` mode, the model first); where the rules find no fix, a
    /// strategy the LLM taught before, then a new LLM call. `Err` is the escalation (diagnosis, suggestion), with
    /// why the LLM did not help when it was asked.
    pub(in crate::engine) async fn choose(
        &self,
        inc: &Incident,
        failure: &Failure,
        target: &WorkloadRef,
        mut ctx: llm_planning::LlmContext<'_>,
    ) -> Result<Plan, (String, String)> {
        let mut llm_refusal = None;
        if self.inner.config.planner == PlannerMode::Llm {
            if let Some(p) = self
                .plan_learned_llm(failure, target, ctx.pod_name, ctx.evidence, ctx.tried)
                .await
            {
                return Ok(p);
            }
            match self.plan_llm(failure, target, &ctx).await {
                Ok(p) => return Ok(p),
                Err(why) => {
                    tracing::info!(incident = %inc.id, %why, "no usable LLM plan; falling back to the rules");
                    llm_refusal = Some(why);
                }
            }
        }
        let (diagnosis, suggestion) = match self
            .plan(inc, failure, target, ctx.pod_name, ctx.evidence, ctx.tried)
            .await
        {
            Planned::Plan(p) => return Ok(*p),
            Planned::Escalate {
                diagnosis,
                suggestion,
            } => (diagnosis, suggestion),
        };
        if let Some(p) = self
            .plan_learned_llm(failure, target, ctx.pod_name, ctx.evidence, ctx.tried)
            .await
        {
            return Ok(p);
        }
        if llm_refusal.is_none() && self.inner.config.llm.is_some() {
            ctx.rules_diagnosis = Some(&diagnosis);
            match self.plan_llm(failure, target, &ctx).await {
                Ok(p) => return Ok(p),
                Err(why) => llm_refusal = Some(why),
            }
        }
        let diagnosis = match llm_refusal {
            Some(why) => format!("{diagnosis} (LLM: {why})"),
            None => diagnosis,
        };
        Err((diagnosis, suggestion))
    }
}
