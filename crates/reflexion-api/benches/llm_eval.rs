//! The LLM evaluation: every scenario of `tests/eval` on simcluster with the planner forced to the LLM, per memory
//! arm, K repetitions, against any OpenAI-compatible endpoint; prints a Markdown table and writes JSON, Markdown and
//! a PNG plot. Prints numbers, asserts nothing.
//!
//!   EVAL_BASE_URL=http://127.0.0.1:8080/v1 EVAL_MODEL=qwen2.5-coder-1.5b cargo bench -p reflexion-api --bench llm_eval
//!   EVAL_BASE_URL=stub cargo bench -p reflexion-api --bench llm_eval     # a scripted model: wrong first, right after a reflection
//!
//! EVAL_REPS (3), EVAL_ARMS (a,b,c), EVAL_SCENARIOS (all; comma-separated names), EVAL_OUT (target/llm-eval),
//! EVAL_TEMPERATURE (the API's default, 0; output files get a `-t<T>` suffix when set), OPENAI_API_KEY when the
//! endpoint needs one. The JSON is rewritten after every incident, so a stopped run keeps what it measured;
//! EVAL_FROM=<that.json> (and EVAL_TITLE) renders its tables and plot again without running anything.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/eval/mod.rs"]
mod eval;
#[path = "../tests/support/mod.rs"]
mod support;

use eval::{Arm, Endpoint, Run};
use serde_json::{Value, json};
use std::path::PathBuf;

/// A scripted OpenAI-compatible model for the harness itself: a plausible wrong first answer, and the right one once
/// the prompt carries a failed attempt — what the Reflexion loop is supposed to exploit.
async fn stub() -> String {
    async fn answer(axum::Json(body): axum::Json<Value>) -> axum::Json<Value> {
        let prompt = body["messages"][1]["content"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let system = body["messages"][0]["content"].as_str().unwrap_or("");
        let usage = json!({"prompt_tokens": prompt.len() / 4, "completion_tokens": 40, "total_tokens": prompt.len() / 4 + 40});
        if system.contains("You review a failed repair") {
            let reflection = json!({"reflection": "That value did not hold; the next attempt must use a different one."});
            return axum::Json(json!({
                "id": "stub", "object": "chat.completion", "created": 0, "model": "stub",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reflection.to_string()}, "finish_reason": "stop"}],
                "usage": usage
            }));
        }
        let reflected = prompt.contains("Failed attempt in this incident");
        let target =
            json!({"kind": "Deployment", "namespace": "NAMESPACE_1", "name": "WORKLOAD_1"});
        let answer = if prompt.contains("nginx:1.27.O") {
            json!({"action": "set_image", "target": target, "container": "WORKLOAD_1",
                   "image": if reflected { "nginx:1.27.3" } else { "nginx:1.27.9" }, "rationale": "fix the tag"})
        } else if prompt.contains("polinux/stress") {
            json!({"action": "set_resources", "target": target, "container": "WORKLOAD_1",
                   "memory_limit": if reflected { "1Gi" } else { "256Mi" }, "memory_request": null, "rationale": "raise the limit"})
        } else if prompt.contains("demo-app") {
            json!({"action": "set_env", "target": target, "container": "WORKLOAD_1", "name": "DATABASE_URL",
                   "from": {"kind": "config_map_key", "name": "billing-config", "key": "DATABASE_URL"}, "rationale": "the ConfigMap has it"})
        } else if prompt.contains("/alive") {
            // Both probes wrong: liveness first; once it is fixed, the failure is the readiness probe.
            let probe = if prompt.contains("\"not_ready\"") {
                "readiness"
            } else {
                "liveness"
            };
            json!({"action": "set_probe", "target": target, "container": "web", "probe": probe,
                   "handler": {"type": "http_get", "path": "/", "port": 80}, "rationale": "probe a served path"})
        } else if prompt.contains("disktype") {
            json!({"action": "set_node_selector", "target": target, "remove": ["disktype"], "set": {},
                   "rationale": "no node has the label"})
        } else if prompt.contains("premium-ssd") {
            json!({"action": "recreate_claim", "target": target, "claim": "uploads", "storage_class": "standard",
                   "rationale": "the class does not exist; standard is the default"})
        } else if prompt.contains("start-my-server") {
            json!({"action": "drop_command", "target": target, "container": "web",
                   "rationale": "the image has no such program; its own entrypoint serves"})
        } else if prompt.contains("REPORT_BUCKET") {
            json!({"action": "set_env", "target": {"kind": "CronJob", "namespace": "NAMESPACE_1", "name": "WORKLOAD_1"},
                   "container": "report", "name": "REPORT_BUCKET",
                   "from": {"kind": "config_map_key", "name": "reports", "key": "REPORT_BUCKET"}, "rationale": "the ConfigMap has it"})
        } else if prompt.contains("targets port") {
            json!({"action": "set_service_target_port", "target": {"kind": "Service", "namespace": "NAMESPACE_1", "name": "WORKLOAD_1"},
                   "port": 80, "target_port": "http", "rationale": "the pods declare http, not web"})
        } else if prompt.contains("no_endpoints") {
            json!({"action": "set_service_selector", "target": {"kind": "Service", "namespace": "NAMESPACE_1", "name": "WORKLOAD_1"},
                   "remove": [], "set": {"app": "nginx"}, "rationale": "the nginx pods are the ones one key away"})
        } else if prompt.contains("cannot list resource") {
            json!({"action": "grant_role_rule", "target": target, "role": "lister", "service_account": "lister",
                   "verb": "list", "api_group": "", "resource": "pods", "rationale": "exactly the refused request"})
        } else if prompt.contains("/healthz") {
            json!({"action": "set_probe", "target": target, "container": "WORKLOAD_1", "probe": "liveness",
                   "handler": {"type": "http_get", "path": if reflected { "/" } else { "/health" }, "port": 80}, "rationale": "probe a served path"})
        } else {
            json!({"action": "escalate", "diagnosis": "the command does not exist in the image",
                   "suggestion": "fix the container's command", "rationale": "no action fixes a command"})
        };
        axum::Json(json!({
            "id": "stub", "object": "chat.completion", "created": 0, "model": "stub",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.to_string()}, "finish_reason": "stop"}],
            "usage": usage
        }))
    }
    let app = axum::Router::new().route("/v1/chat/completions", axum::routing::post(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn plot(runs: &[Run], title: &str, path: &std::path::Path) -> Result<(), String> {
    use plotters::prelude::*;
    let font = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
    ]
    .iter()
    .find_map(|p| std::fs::read(p).ok())
    .ok_or("no DejaVuSans.ttf to draw text with")?;
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| "bad font")?;
    let root = BitMapBackend::new(path, (900, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root
        .titled(title, ("sans-serif", 18))
        .map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(450);
    let arms = Arm::all();
    let summaries: Vec<_> = arms.iter().map(|a| eval::arm_summary(runs, *a)).collect();
    for (area, what) in [(left, "success rate (%)"), (right, "mean trials to fix")] {
        let max = if what.starts_with("success") {
            100.0
        } else {
            3.5
        };
        let mut chart = ChartBuilder::on(&area)
            .caption(what, ("sans-serif", 15))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(40)
            .build_cartesian_2d(-0.5f64..2.5f64, 0f64..max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(3)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() > 0.01 || i < 0.0 {
                    return String::new();
                }
                ["(a) none", "(b) reflections", "(c) + lessons"]
                    .get(i as usize)
                    .unwrap_or(&"")
                    .to_string()
            })
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| e.to_string())?;
        let colors = [
            RGBColor(200, 80, 60),
            RGBColor(60, 120, 200),
            RGBColor(60, 160, 90),
        ];
        for (i, s) in summaries.iter().enumerate() {
            let v = if what.starts_with("success") {
                s.1 * 100.0
            } else {
                s.2.unwrap_or(0.0)
            };
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(i as f64 - 0.3, 0.0), (i as f64 + 0.3, v)],
                    colors[i].filled(),
                )))
                .map_err(|e| e.to_string())?;
        }
    }
    root.present().map_err(|e| e.to_string())
}

fn main() {
    // EVAL_FROM=<runs.json>: render the tables and the plot of a recorded run again, without running anything.
    if let Ok(from) = std::env::var("EVAL_FROM") {
        let path = PathBuf::from(from);
        let runs: Vec<Run> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let title = std::env::var("EVAL_TITLE").unwrap_or_else(|_| "model".into());
        let md = eval::markdown(&runs, &title);
        println!("{md}");
        std::fs::write(path.with_extension("md"), &md).unwrap();
        if let Err(e) = plot(&runs, &title, &path.with_extension("png")) {
            println!("no plot: {e}");
        }
        return;
    }
    let base = std::env::var("EVAL_BASE_URL").unwrap_or_else(|_| "stub".into());
    let reps: usize = std::env::var("EVAL_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let arms: Vec<Arm> = std::env::var("EVAL_ARMS")
        .unwrap_or_else(|_| "a,b,c".into())
        .split(',')
        .filter_map(|a| match a.trim() {
            "a" => Some(Arm::NoMemory),
            "b" => Some(Arm::Reflections),
            "c" => Some(Arm::ReflectionsAndLessons),
            _ => None,
        })
        .collect();
    let only: Option<Vec<String>> = std::env::var("EVAL_SCENARIOS")
        .ok()
        .map(|v| v.split(',').map(String::from).collect());
    let temperature: Option<f64> = std::env::var("EVAL_TEMPERATURE")
        .ok()
        .map(|v| v.parse().expect("EVAL_TEMPERATURE must be a number"));
    let out = PathBuf::from(
        std::env::var("EVAL_OUT")
            .unwrap_or_else(|_| format!("{}/../../target/llm-eval", env!("CARGO_MANIFEST_DIR"))),
    );
    std::fs::create_dir_all(&out).unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = std::process::Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "simcluster",
            "-p",
            "watcher",
            "--bins",
        ])
        .status()
        .expect("cargo build");
    assert!(built.success());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (base_url, model) = if base == "stub" {
            (stub().await, "stub".to_string())
        } else {
            (
                base.clone(),
                std::env::var("EVAL_MODEL").unwrap_or_else(|_| "local".into()),
            )
        };
        let endpoint = Endpoint {
            base_url,
            model: model.clone(),
            api_key: std::env::var("OPENAI_API_KEY").ok(),
            temperature,
        };
        let mut slug: String = model
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        if let Some(t) = temperature {
            slug.push_str(&format!("-t{t}"));
        }
        let json_path = out.join(format!("{slug}.json"));
        let scenarios: Vec<_> = eval::scenarios()
            .into_iter()
            .filter(|s| only.as_ref().is_none_or(|o| o.iter().any(|n| n == s.name)))
            .collect();
        let mut runs = Vec::new();
        for arm in &arms {
            for s in &scenarios {
                // Arm (c) keeps one memory across repetitions; (a) and (b) start each repetition fresh.
                let mut shared = None;
                for rep in 1..=reps {
                    let fresh;
                    let stack = if *arm == Arm::ReflectionsAndLessons {
                        if shared.is_none() {
                            shared = Some(eval::stack(&endpoint, *arm).await);
                        }
                        shared.as_ref().unwrap()
                    } else {
                        fresh = eval::stack(&endpoint, *arm).await;
                        &fresh
                    };
                    let r = eval::run(stack, s, *arm, rep).await;
                    eprintln!(
                        "{} {} rep {}: {} in {} trial(s), {} LLM call(s), actions {:?}, {:.0} s",
                        r.scenario,
                        r.arm.label(),
                        r.rep,
                        r.state,
                        r.trials,
                        r.llm_calls,
                        r.actions,
                        r.seconds
                    );
                    runs.push(r);
                    std::fs::write(&json_path, serde_json::to_string_pretty(&runs).unwrap())
                        .unwrap();
                }
            }
        }
        let title = match temperature {
            Some(t) => format!("model {model}, temperature {t}"),
            None => format!("model {model}"),
        };
        let md = eval::markdown(&runs, &title);
        println!("{md}");
        std::fs::write(out.join(format!("{slug}.md")), &md).unwrap();
        let png = out.join(format!("{slug}.png"));
        match plot(&runs, &title, &png) {
            Ok(()) => println!("wrote {}", png.display()),
            Err(e) => println!("no plot: {e}"),
        }
    });
}
