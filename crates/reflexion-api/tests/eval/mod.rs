//! The LLM evaluation harness: scenarios on simcluster with the planner forced to the LLM (`--planner llm`),
//! against any OpenAI-compatible endpoint, and the Reflexion experiment's three memory arms. Shared by the bench
//! binary (`benches/llm_eval.rs`) and the opt-in test (`tests/llm_eval.rs`).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use crate::support::{Options, Stack};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A failure the planner must fix (or correctly hand over).
pub struct Scenario {
    pub name: &'static str,
    pub deployment: Value,
    pub config_map: Option<Value>,
    /// A PersistentVolumeClaim the Deployment mounts, created before it.
    pub claim: Option<Value>,
    /// Actions that are a right answer.
    pub acceptable: &'static [&'static str],
    /// Whether the right outcome is an escalation (nothing our actions can fix).
    pub escalation_expected: bool,
    /// More objects the scenario needs (a Service, a ServiceAccount and its Role, a quota, a CronJob), with their
    /// `apiVersion` and `kind`: created in order before the Deployment, deleted after.
    pub extra: Vec<Value>,
    /// The name of the workload the incident is for when it is not the Deployment (a Service, a CronJob); a
    /// scenario without a Deployment has `deployment: Value::Null`.
    pub incident_of: Option<&'static str>,
}

fn deployment(name: &str, container: Value) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}}}
    })
}

/// Scenarios where a first guess is plausibly wrong.
pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "image-tag-typo",
            deployment: deployment("shop", json!({"name": "shop", "image": "nginx:1.27.O"})),
            config_map: None,
            claim: None,
            acceptable: &["set_image"],
            escalation_expected: false,
            extra: vec![],
            incident_of: None,
        },
        Scenario {
            name: "oom-two-raises",
            deployment: deployment(
                "cruncher",
                json!({"name": "cruncher", "image": "polinux/stress:1.0.4", "args": ["--vm", "1", "--vm-bytes", "500M"],
                       "resources": {"requests": {"memory": "64Mi"}, "limits": {"memory": "128Mi"}}}),
            ),
            config_map: None,
            claim: None,
            acceptable: &["set_resources"],
            escalation_expected: false,
            extra: vec![],
            incident_of: None,
        },
        Scenario {
            name: "missing-env-in-configmap",
            deployment: deployment(
                "billing",
                json!({"name": "billing", "image": "kubereflexion/demo-app:1.2.0"}),
            ),
            config_map: Some(json!({"metadata": {"name": "billing-config"},
                                    "data": {"DATABASE_URL": "postgres://db:5432/billing", "LOG_LEVEL": "info"}})),
            claim: None,
            acceptable: &["set_env"],
            escalation_expected: false,
            extra: vec![],
            incident_of: None,
        },
        Scenario {
            name: "liveness-wrong-path",
            deployment: deployment(
                "frontend",
                json!({"name": "frontend", "image": "nginx:1.27", "ports": [{"containerPort": 80}],
                       "livenessProbe": {"httpGet": {"path": "/healthz", "port": 80}, "periodSeconds": 5, "failureThreshold": 2}}),
            ),
            config_map: None,
            claim: None,
            acceptable: &["set_probe"],
            escalation_expected: false,
            extra: vec![],
            incident_of: None,
        },
        Scenario {
            name: "crash-127-command-override",
            deployment: deployment(
                "worker",
                json!({"name": "worker", "image": "busybox:1.36", "command": ["/usr/local/bin/worker-server", "--queue", "jobs"]}),
            ),
            config_map: None,
            claim: None,
            acceptable: &["escalate"],
            escalation_expected: true,
            extra: vec![],
            incident_of: None,
        },
        // Added with re-diagnosis and the high-risk repairs (the operator approves each proposal, as below).
        Scenario {
            name: "both-probes-wrong",
            deployment: deployment(
                "probes",
                json!({"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}],
                       "livenessProbe": {"httpGet": {"path": "/alive", "port": 80}, "periodSeconds": 5, "failureThreshold": 3},
                       "readinessProbe": {"httpGet": {"path": "/ready-now", "port": 80}, "periodSeconds": 5}}),
            ),
            config_map: None,
            claim: None,
            acceptable: &["set_probe"],
            escalation_expected: false,
            extra: vec![],
            incident_of: None,
        },
        Scenario {
            name: "node-selector-no-node",
            deployment: {
                let mut d = deployment(
                    "catalog",
                    json!({"name": "catalog", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}),
                );
                d["spec"]["template"]["spec"]["nodeSelector"] = json!({"disktype": "nvme"});
                d
            },
            config_map: None,
            claim: None,
            acceptable: &["set_node_selector"],
            escalation_expected: false,
            extra: vec![],
            incident_of: None,
        },
        Scenario {
            name: "pvc-missing-class",
            deployment: {
                let mut d = deployment(
                    "uploader",
                    json!({"name": "web", "image": "nginx:1.27",
                    "volumeMounts": [{"name": "uploads", "mountPath": "/usr/share/nginx/html/uploads"}]}),
                );
                d["spec"]["template"]["spec"]["volumes"] =
                    json!([{"name": "uploads", "persistentVolumeClaim": {"claimName": "uploads"}}]);
                d
            },
            config_map: None,
            claim: Some(
                json!({"metadata": {"name": "uploads"}, "spec": {"accessModes": ["ReadWriteOnce"],
                "storageClassName": "premium-ssd", "resources": {"requests": {"storage": "1Gi"}}}}),
            ),
            acceptable: &["recreate_claim"],
            escalation_expected: false,
            extra: vec![],
            incident_of: None,
        },
        Scenario {
            name: "command-not-in-image",
            deployment: deployment(
                "storefront",
                json!({"name": "web", "image": "nginx:1.27", "command": ["/bin/sh", "-c", "start-my-server"], "ports": [{"containerPort": 80}]}),
            ),
            config_map: None,
            claim: None,
            acceptable: &["drop_command"],
            escalation_expected: false,
            extra: vec![],
            incident_of: None,
        },
        // Added with the families no failing pod shows (issue 28).
        Scenario {
            name: "service-selects-nothing",
            deployment: deployment(
                "nginx",
                json!({"name": "nginx", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}),
            ),
            config_map: None,
            claim: None,
            acceptable: &["set_service_selector"],
            escalation_expected: false,
            extra: vec![
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "storefront"},
                               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
            ],
            incident_of: Some("storefront"),
        },
        Scenario {
            name: "service-targets-undeclared-port",
            deployment: deployment(
                "nginx",
                json!({"name": "nginx", "image": "nginx:1.27", "ports": [{"name": "http", "containerPort": 80}]}),
            ),
            config_map: None,
            claim: None,
            acceptable: &["set_service_target_port"],
            escalation_expected: false,
            extra: vec![
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "storefront"},
                       "spec": {"selector": {"app": "nginx"}, "ports": [{"name": "web", "port": 80, "targetPort": "web"}]}}),
            ],
            incident_of: Some("storefront"),
        },
        Scenario {
            name: "role-lacks-list",
            deployment: {
                let mut d = deployment(
                    "reporter",
                    json!({"name": "reporter", "image": "kubereflexion/pod-reporter:1.0.0"}),
                );
                d["spec"]["template"]["spec"]["serviceAccountName"] = json!("lister");
                d
            },
            config_map: None,
            claim: None,
            acceptable: &["grant_role_rule"],
            escalation_expected: false,
            extra: vec![
                json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "lister"}}),
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "lister"},
                       "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "lister"},
                       "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "lister"},
                       "subjects": [{"kind": "ServiceAccount", "name": "lister", "namespace": "default"}]}),
            ],
            incident_of: None,
        },
        Scenario {
            name: "cronjob-missing-env",
            deployment: Value::Null,
            config_map: Some(
                json!({"metadata": {"name": "reports"}, "data": {"REPORT_BUCKET": "s3://reports"}}),
            ),
            claim: None,
            acceptable: &["set_env"],
            escalation_expected: false,
            extra: vec![
                json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
                "spec": {"schedule": "*/1 * * * *", "jobTemplate": {"spec": {"backoffLimit": 0, "template": {"spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "report", "image": "kubereflexion/report-job:1.0.0"}]}}}}}}),
            ],
            incident_of: Some("nightly"),
        },
        Scenario {
            name: "over-quota-by-far",
            deployment: deployment(
                "batch",
                json!({"name": "batch", "image": "nginx:1.27", "resources": {"requests": {"memory": "2Gi"}}}),
            ),
            config_map: None,
            claim: None,
            // A quota a quarter of the request: no cut the rules would make fits, and a model may only hand over
            // (a namespace's quota is never changed).
            acceptable: &["escalate"],
            escalation_expected: true,
            extra: vec![
                json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "compute"},
                               "spec": {"hard": {"requests.memory": "512Mi"}}}),
            ],
            incident_of: None,
        },
    ]
}

/// The experiment's memory arms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Arm {
    /// (a) the LLM with no memory.
    NoMemory,
    /// (b) in-incident reflections: fail, reflect, retry with the reflection.
    Reflections,
    /// (c) (b) plus cross-incident lessons and learned strategies.
    ReflectionsAndLessons,
}

impl Arm {
    pub fn all() -> [Arm; 3] {
        [Arm::NoMemory, Arm::Reflections, Arm::ReflectionsAndLessons]
    }
    pub fn flag(self) -> &'static str {
        match self {
            Arm::NoMemory => "none",
            Arm::Reflections => "incident",
            Arm::ReflectionsAndLessons => "full",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Arm::NoMemory => "(a) no memory",
            Arm::Reflections => "(b) reflections",
            Arm::ReflectionsAndLessons => "(c) reflections + lessons",
        }
    }
}

/// One incident's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    pub scenario: String,
    pub arm: Arm,
    pub rep: usize,
    pub state: String,
    /// The planner behind the verified fix (`llm`, `learned`, or `rules` when the model failed and the rules fell in).
    pub fixed_by: Option<String>,
    /// A verified fix the model (or what it taught) made, or the escalation the model chose where that is right.
    pub success: bool,
    pub trials: i64,
    /// Every model call, reflections included.
    pub llm_calls: usize,
    /// Of those, reflection calls after a failed trial (prose, not actions; not counted as answers).
    #[serde(default)]
    pub reflections: usize,
    pub valid_json: usize,
    pub schema_valid: usize,
    pub accepted: usize,
    /// Actions the model proposed and the gates accepted, in order.
    pub actions: Vec<String>,
    /// Whether the first accepted action is one of the acceptable ones.
    pub first_action_acceptable: Option<bool>,
    pub mean_latency_ms: f64,
    pub tokens: i64,
    pub seconds: f64,
    pub outcome: String,
    /// Proposals the harness approved as an operator would (high-risk actions wait for one).
    #[serde(default)]
    pub approvals: usize,
    /// Every model call of the incident: its trial, what the model answered (bounded) and what the gates made of it.
    #[serde(default)]
    pub calls: Vec<Value>,
}

pub struct Endpoint {
    pub base_url: String,
    pub model: String,
    pub api_key: Option<String>,
    /// Sampling temperature (`--llm-temperature`); `None` keeps the API's default of 0.
    pub temperature: Option<f64>,
}

fn api_args(endpoint: &Endpoint, arm: Arm) -> Vec<String> {
    let mut a: Vec<String> = [
        "--planner",
        "llm",
        "--llm-base-url",
        &endpoint.base_url,
        "--llm-model",
        &endpoint.model,
        "--llm-timeout-secs",
        "180",
        "--llm-max-tokens",
        "300",
        "--llm-memory",
        arm.flag(),
        "--max-trials",
        "3",
        "--llm-incident-tokens",
        "100000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(k) = &endpoint.api_key {
        a.extend(["--openai-api-key".to_string(), k.clone()]);
    }
    if let Some(t) = endpoint.temperature {
        a.extend(["--llm-temperature".to_string(), t.to_string()]);
    }
    a
}

/// Start a stack for one arm: the watcher reports, the API plans with the LLM first.
pub async fn stack(endpoint: &Endpoint, arm: Arm) -> Stack {
    Stack::start(Options {
        extra_args: api_args(endpoint, arm),
        verify_window_secs: 3.0,
        ..Options::default()
    })
    .await
}

/// Run one scenario once on a stack and clean up after it.
pub async fn run(stack: &Stack, s: &Scenario, arm: Arm, rep: usize) -> Run {
    let started = Instant::now();
    let client = stack.kube().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    if let Some(cm) = &s.config_map {
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(cm.clone()).unwrap(),
        )
        .await
        .unwrap();
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(stack.kube().await, "default");
    if let Some(c) = &s.claim {
        claims
            .create(
                &PostParams::default(),
                &serde_json::from_value(c.clone()).unwrap(),
            )
            .await
            .unwrap();
    }
    let client = stack.kube().await;
    for o in &s.extra {
        dynamic(&client, o)
            .create(
                &PostParams::default(),
                &serde_json::from_value(o.clone()).unwrap(),
            )
            .await
            .unwrap();
    }
    let before: Vec<String> = ids(stack).await;
    if !s.deployment.is_null() {
        deployments
            .create(
                &PostParams::default(),
                &serde_json::from_value(s.deployment.clone()).unwrap(),
            )
            .await
            .unwrap();
    }
    let name = s
        .incident_of
        .or(s.deployment["metadata"]["name"].as_str())
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut detail = Value::Null;
    let mut approvals = 0;
    while Instant::now() < deadline {
        let list = stack.get("/api/v1/reflexion/incidents?limit=1000").await;
        let new = list["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| {
                !before.contains(&i["id"].as_str().unwrap().to_string())
                    && i["workload"]["name"] == name.as_str()
            })
            .cloned();
        // The operator approves every proposal: the experiment measures the planner, not the policy.
        if let Some(i) = &new
            && i["state"] == "awaiting_approval"
        {
            let (status, _) = stack
                .post(
                    &format!(
                        "/api/v1/reflexion/incidents/{}/approve",
                        i["id"].as_str().unwrap()
                    ),
                    json!({"by": "llm-eval"}),
                )
                .await;
            if status == 202 {
                approvals += 1;
            }
        }
        if let Some(i) = new
            && ["resolved", "escalated", "failed", "dismissed"]
                .contains(&i["state"].as_str().unwrap_or(""))
        {
            detail = stack
                .get(&format!(
                    "/api/v1/reflexion/incidents/{}",
                    i["id"].as_str().unwrap()
                ))
                .await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let deployment = s.deployment["metadata"]["name"]
        .as_str()
        .unwrap_or_default();
    let _ = deployments
        .delete(deployment, &DeleteParams::foreground())
        .await;
    for o in s.extra.iter().rev() {
        let _ = dynamic(&client, o)
            .delete(
                o["metadata"]["name"].as_str().unwrap(),
                &DeleteParams::foreground(),
            )
            .await;
    }
    if let Some(cm) = &s.config_map {
        let _ = cms
            .delete(
                cm["metadata"]["name"].as_str().unwrap(),
                &DeleteParams::default(),
            )
            .await;
    }
    for _ in 0..120 {
        if deployment.is_empty() || deployments.get_opt(deployment).await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if let Some(c) = &s.claim {
        let claim = c["metadata"]["name"].as_str().unwrap();
        let _ = claims.delete(claim, &DeleteParams::default()).await;
        for _ in 0..120 {
            if claims.get_opt(claim).await.unwrap().is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let mut run = summarize(s, arm, rep, &detail, started.elapsed().as_secs_f64());
    run.approvals = approvals;
    run
}

/// The API of one object of a scenario, from its `apiVersion` and `kind`, in `default`.
fn dynamic(client: &kube::Client, o: &Value) -> Api<kube::api::DynamicObject> {
    let kind = o["kind"].as_str().unwrap();
    let gvk = kube::api::GroupVersionKind::try_from(&kube::core::TypeMeta {
        api_version: o["apiVersion"].as_str().unwrap().to_string(),
        kind: kind.to_string(),
    })
    .unwrap();
    // Every kind a scenario creates is pluralized by adding an s.
    let plural = format!("{}s", kind.to_ascii_lowercase());
    let resource = kube::api::ApiResource::from_gvk_with_plural(&gvk, &plural);
    Api::namespaced_with(client.clone(), "default", &resource)
}

async fn ids(stack: &Stack) -> Vec<String> {
    stack.get("/api/v1/reflexion/incidents?limit=1000").await["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["id"].as_str().map(String::from))
        .collect()
}

/// What one incident's record says about the model's answers.
pub fn summarize(s: &Scenario, arm: Arm, rep: usize, detail: &Value, seconds: f64) -> Run {
    let all_calls = detail["llm_calls"].as_array().cloned().unwrap_or_default();
    let outcome = |c: &Value| c["outcome"].as_str().unwrap_or("").to_string();
    // Reflection calls (after a failed trial) answer in prose, not actions: they cost tokens but are no answers.
    let (reflections, calls): (Vec<Value>, Vec<Value>) = all_calls
        .iter()
        .cloned()
        .partition(|c| outcome(c).starts_with("reflection"));
    // Refusals by the parser come before the schema; refusals by the gates come after it.
    let not_json = |o: &str| {
        o.contains("contains no JSON object")
            || o.contains("is not valid JSON")
            || o.contains("answer is empty")
            || o.contains("bytes, more than")
            || o.contains("LLM endpoint failed")
            || o.contains("timed out")
            || o.contains("has no content")
    };
    let not_schema = |o: &str| {
        o.contains("not one of the typed actions") || o.contains("placeholder that does not exist")
    };
    let valid_json = calls.iter().filter(|c| !not_json(&outcome(c))).count();
    let schema_valid = calls
        .iter()
        .filter(|c| {
            let o = outcome(c);
            !not_json(&o) && !not_schema(&o)
        })
        .count();
    let accepted = calls.iter().filter(|c| outcome(c) == "accepted").count();
    let mut actions: Vec<String> = detail["episodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["action"]["action"].as_str().map(String::from))
        .collect();
    let state = detail["state"].as_str().unwrap_or("timeout").to_string();
    let outcome_text = detail["outcome"].as_str().unwrap_or("").to_string();
    // An escalation the model chose is an action too (it has no episode).
    if state == "escalated" && accepted > actions.len() {
        actions.push("escalate".into());
    }
    let fixed_by = detail["episodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["success"] == true)
        .and_then(|e| e["source"].as_str().map(String::from));
    let success = if s.escalation_expected {
        state == "escalated" && actions.last().is_some_and(|a| a == "escalate")
    } else {
        state == "resolved"
            && fixed_by
                .as_deref()
                .is_some_and(|f| f == "llm" || f == "learned")
    };
    let latencies: Vec<f64> = all_calls
        .iter()
        .filter_map(|c| c["latency_ms"].as_f64())
        .collect();
    Run {
        scenario: s.name.into(),
        arm,
        rep,
        state,
        fixed_by,
        success,
        trials: detail["trials"].as_i64().unwrap_or(0),
        llm_calls: all_calls.len(),
        reflections: reflections.len(),
        valid_json,
        schema_valid,
        accepted,
        first_action_acceptable: actions.first().map(|a| s.acceptable.contains(&a.as_str())),
        actions,
        mean_latency_ms: if latencies.is_empty() {
            0.0
        } else {
            latencies.iter().sum::<f64>() / latencies.len() as f64
        },
        tokens: all_calls
            .iter()
            .map(|c| {
                c["prompt_tokens"].as_i64().unwrap_or(0)
                    + c["completion_tokens"].as_i64().unwrap_or(0)
            })
            .sum(),
        seconds,
        outcome: outcome_text.chars().take(300).collect(),
        approvals: 0,
        calls: all_calls
            .iter()
            .map(|c| {
                json!({
                    "trial": c["trial"],
                    "response": c["response"].as_str().unwrap_or("").chars().take(600).collect::<String>(),
                    "outcome": c["outcome"],
                    "latency_ms": c["latency_ms"],
                })
            })
            .collect(),
    }
}

/// Per arm: success rate, mean trials to fix (successful fixes only), schema-valid share, LLM calls.
pub fn arm_summary(runs: &[Run], arm: Arm) -> (usize, f64, Option<f64>, f64, usize) {
    let r: Vec<&Run> = runs.iter().filter(|r| r.arm == arm).collect();
    let n = r.len();
    let ok = r.iter().filter(|r| r.success).count();
    let fixes: Vec<f64> = r
        .iter()
        .filter(|r| r.success && r.trials > 0)
        .map(|r| r.trials as f64)
        .collect();
    let calls: usize = r.iter().map(|r| r.llm_calls).sum();
    let answers: usize = r.iter().map(|r| r.llm_calls - r.reflections).sum();
    let valid: usize = r.iter().map(|r| r.schema_valid).sum();
    (
        n,
        if n == 0 { 0.0 } else { ok as f64 / n as f64 },
        (!fixes.is_empty()).then(|| fixes.iter().sum::<f64>() / fixes.len() as f64),
        if answers == 0 {
            1.0
        } else {
            valid as f64 / answers as f64
        },
        calls,
    )
}

/// The Markdown tables: per run, and per arm.
pub fn markdown(runs: &[Run], title: &str) -> String {
    let mut out = format!(
        "### {title}\n\n| scenario | arm | rep | outcome | trials | LLM calls | valid JSON | schema-valid | accepted | actions | first action acceptable | mean latency | tokens |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    );
    for r in runs {
        out.push_str(&format!(
            "| {} | {} | {} | {}{}{} | {} | {} | {} | {} | {} | {} | {} | {:.0} ms | {} |\n",
            r.scenario,
            r.arm.label(),
            r.rep,
            r.state,
            r.fixed_by
                .as_deref()
                .map(|f| format!(" by {f}"))
                .unwrap_or_default(),
            if r.success { " ✓" } else { " ✗" },
            r.trials,
            if r.reflections == 0 {
                r.llm_calls.to_string()
            } else {
                format!(
                    "{} + {} reflection",
                    r.llm_calls - r.reflections,
                    r.reflections
                )
            },
            r.valid_json,
            r.schema_valid,
            r.accepted,
            r.actions.join(", "),
            r.first_action_acceptable
                .map(|b| if b { "yes" } else { "no" })
                .unwrap_or("-"),
            r.mean_latency_ms,
            r.tokens
        ));
    }
    out.push_str("\n| arm | runs | success rate | mean trials to fix | schema-valid answers | LLM calls | fixed after a failed trial | answers repeating a failed action |\n|---|---|---|---|---|---|---|---|\n");
    for arm in Arm::all() {
        let (n, rate, trials, valid, calls) = arm_summary(runs, arm);
        if n == 0 {
            continue;
        }
        let these = runs.iter().filter(|r| r.arm == arm);
        // What the Reflexion loop is for: a model fix in a later trial, after its own failed one.
        let recovered = these
            .clone()
            .filter(|r| r.success && r.trials > 1 && r.fixed_by.as_deref() == Some("llm"))
            .count();
        let repeats = these
            .flat_map(|r| &r.calls)
            .filter(|c| {
                c["outcome"]
                    .as_str()
                    .is_some_and(|o| o.contains("already failed in this incident"))
            })
            .count();
        out.push_str(&format!(
            "| {} | {n} | {:.0} % | {} | {:.0} % | {calls} | {recovered} | {repeats} |\n",
            arm.label(),
            rate * 100.0,
            trials
                .map(|t| format!("{t:.2}"))
                .unwrap_or_else(|| "-".into()),
            valid * 100.0
        ));
    }
    // The same scenarios side by side: where memory helps, it shows per scenario before it shows in a mean.
    let arms: Vec<Arm> = Arm::all()
        .into_iter()
        .filter(|a| runs.iter().any(|r| r.arm == *a))
        .collect();
    out.push_str("\n| scenario |");
    for a in &arms {
        out.push_str(&format!(" {} |", a.label()));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(arms.len()));
    out.push('\n');
    let mut names: Vec<&str> = Vec::new();
    for r in runs {
        if !names.contains(&r.scenario.as_str()) {
            names.push(&r.scenario);
        }
    }
    for name in names {
        out.push_str(&format!("| {name} |"));
        for a in &arms {
            let these: Vec<&Run> = runs
                .iter()
                .filter(|r| r.arm == *a && r.scenario == name)
                .collect();
            let ok = these.iter().filter(|r| r.success).count();
            // Trials to fix, as in the arm table: a right escalation before any trial has none.
            let fixes: Vec<f64> = these
                .iter()
                .filter(|r| r.success && r.trials > 0)
                .map(|r| r.trials as f64)
                .collect();
            let trials = if fixes.is_empty() {
                String::new()
            } else {
                format!(
                    ", {:.2} trials",
                    fixes.iter().sum::<f64>() / fixes.len() as f64
                )
            };
            out.push_str(&format!(" {ok}/{}{trials} |", these.len()));
        }
        out.push('\n');
    }
    out
}
