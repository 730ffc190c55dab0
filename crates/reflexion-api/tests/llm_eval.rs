//! Opt-in: the evaluation harness against a real model. Set REFLEXION_LLM_E2E_BASE_URL (e.g.
//! http://127.0.0.1:8080/v1 from `../shared/tools/local-llm.sh start`) and optionally REFLEXION_LLM_E2E_MODEL;
//! without it the test says so and passes, so CI never depends on a model.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod eval;
mod support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_runs_every_scenario_against_a_real_model() {
    let Ok(base_url) = std::env::var("REFLEXION_LLM_E2E_BASE_URL") else {
        eprintln!(
            "skipped: set REFLEXION_LLM_E2E_BASE_URL to run the LLM evaluation against a real model"
        );
        return;
    };
    let endpoint = eval::Endpoint {
        base_url,
        model: std::env::var("REFLEXION_LLM_E2E_MODEL").unwrap_or_else(|_| "local".into()),
        api_key: std::env::var("OPENAI_API_KEY").ok(),
        temperature: None,
    };
    let arm = eval::Arm::Reflections;
    let mut runs = Vec::new();
    for s in eval::scenarios() {
        let stack = eval::stack(&endpoint, arm).await;
        let r = eval::run(&stack, &s, arm, 1).await;
        // Every incident finished, the model was asked, and whatever ran was one of the typed actions.
        assert_ne!(
            r.state, "timeout",
            "{}: the incident did not finish",
            s.name
        );
        assert!(r.llm_calls > 0, "{}: the model was never asked", s.name);
        for a in &r.actions {
            assert!(
                [
                    "set_image",
                    "set_resources",
                    "set_env",
                    "set_probe",
                    "rollout_undo",
                    "set_requests",
                    "escalate"
                ]
                .contains(&a.as_str()),
                "{}: {a}",
                s.name
            );
        }
        runs.push(r);
    }
    println!("{}", eval::markdown(&runs, &endpoint.model));
}
