//! The REST surface: every route is in the generated OpenAPI document and answers; tokens guard what they must;
//! statistics, learning progression and metrics carry real numbers; and an API killed with SIGKILL while verifying
//! finishes its incident after the restart without acting twice.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod support;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use std::time::Duration;
use support::{Options, Stack};

/// Every route of the server: (method, path). A route added to the server without a `#[utoipa::path]` cannot be
/// registered (routes only come through `routes!`); one added there but not here fails the comparison below.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/health"),
    ("get", "/livez"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/"),
    ("get", "/console/app.js"),
    ("get", "/console/app.css"),
    ("get", "/api/v1/events"),
    ("get", "/api/v1/settings"),
    ("get", "/api/v1/token"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/reflexion/incidents"),
    ("get", "/api/v1/reflexion/incidents/{id}"),
    ("get", "/api/v1/reflexion/incidents/{id}/events"),
    ("post", "/api/v1/reflexion/incidents/{id}/approve"),
    ("post", "/api/v1/reflexion/incidents/{id}/reject"),
    ("get", "/api/v1/reflexion/strategies"),
    ("get", "/api/v1/reflexion/memory/episodic"),
    ("get", "/api/v1/reflexion/metrics"),
    ("post", "/api/v1/reflexion/process"),
    ("post", "/api/v1/reflexion/process-with-k8s-data"),
    ("get", "/api/v1/memory/strategies"),
    ("delete", "/api/v1/memory/strategies"),
    ("get", "/api/v1/memory/episodes"),
    ("delete", "/api/v1/memory/episodes"),
    ("delete", "/api/v1/memory/clear"),
    ("get", "/api/v1/memory/statistics"),
    ("get", "/api/v1/memory/learned-values"),
    ("get", "/api/v1/memory/learning-progression"),
    ("post", "/api/v1/alerts/alertmanager"),
    ("get", "/api/v1/alerts"),
];

async fn scrape(stack: &Stack) -> String {
    reqwest::get(format!("{}/metrics", stack.api_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn call(stack: &Stack, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let url = format!(
        "{}{}",
        stack.api_url,
        path.replace("{id}", "no-such-incident")
    );
    let client = reqwest::Client::new();
    let mut req = match method {
        "get" => client.get(url),
        "post" => client.post(url).json(&json!({})),
        "delete" => client.delete(url),
        other => panic!("{other}"),
    };
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    // The live feed never ends: its status is the answer.
    if resp
        .headers()
        .get("content-type")
        .is_some_and(|c| c.as_bytes().starts_with(b"text/event-stream"))
    {
        return (status, Value::Null);
    }
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

e2e_test! {
async fn every_route_is_documented_answers_and_is_guarded() {
    let stack = Stack::start(Options {
        watcher: false,
        api_args: &["--api-token", "s3cret-token"],
        ..Options::default()
    })
    .await;
    let doc = stack.get("/api/v1/openapi.json").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let mut documented: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|m| ["get", "post", "put", "patch", "delete"].contains(&m.as_str()))
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    documented.sort();
    let mut expected: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    expected.sort();
    assert_eq!(
        documented, expected,
        "the OpenAPI document and the route list differ"
    );
    // Reads answer typed rows, and the document says which.
    for (path, schema) in [
        ("/api/v1/reflexion/incidents", "IncidentList"),
        ("/api/v1/reflexion/incidents/{id}", "IncidentDetail"),
        ("/api/v1/reflexion/strategies", "StrategyList"),
        ("/api/v1/reflexion/memory/episodic", "EpisodeList"),
        ("/api/v1/memory/statistics", "StatisticsBody"),
        ("/api/v1/memory/learning-progression", "Progression"),
        ("/api/v1/reflexion/metrics", "ReflexionMetrics"),
        ("/api/v1/alerts", "AlertList"),
    ] {
        let body = &doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
        assert_eq!(
            body["$ref"],
            format!("#/components/schemas/{schema}"),
            "{path}: {body}"
        );
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    for (schema, field) in [
        ("Episode", "lessons_learned"),
        ("IncidentDetail", "episodes"),
        ("Strategy", "confidence"),
        ("Statistics", "success_rate"),
    ] {
        let s = &doc["components"]["schemas"][schema];
        assert!(
            s.to_string().contains(&format!("\"{field}\"")),
            "{schema} lacks {field}: {s}"
        );
    }

    for (method, path) in ROUTES {
        let (status, body) = call(&stack, method, path, Some("s3cret-token")).await;
        assert!(
            status < 500 && body["error"]["code"] != "not_found" || path.contains("{id}"),
            "{method} {path}: {status} {body}"
        );
        assert_ne!(status, 405, "{method} {path}");
        // The token check is guarded like a write: it is how the console learns the token is right.
        let mutating = *method != "get" || *path == "/api/v1/token";
        for bad in [None, Some("wrong")] {
            let (status, body) = call(&stack, method, path, bad).await;
            if mutating {
                assert_eq!(
                    (status, body["error"]["code"].as_str()),
                    (401, Some("unauthorized")),
                    "{method} {path} with {bad:?}"
                );
            } else {
                assert_ne!(
                    status, 401,
                    "{method} {path}: reads are open without --auth-reads"
                );
            }
        }
    }
    // Error shape, everywhere.
    let (status, body) = call(&stack, "get", "/api/v1/reflexion/incidents?limit=0", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_query"))
    );
    let (status, body) = call(
        &stack,
        "get",
        "/api/v1/memory/learning-progression?days=999",
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_query")),
        "{body}"
    );
    let (status, body) = call(&stack, "get", "/api/v1/nope", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}
}

e2e_test! {
async fn with_auth_reads_only_health_metrics_and_the_console_page_stay_open() {
    let stack = Stack::start(Options {
        watcher: false,
        api_args: &["--api-token", "tok", "--auth-reads"],
        ..Options::default()
    })
    .await;
    for (method, path) in ROUTES {
        let (status, _) = call(&stack, method, path, None).await;
        if ["/health", "/livez", "/readyz", "/metrics", "/", "/console/app.js", "/console/app.css"].contains(path) {
            assert_eq!(status, 200, "{path}");
        } else {
            assert_eq!(status, 401, "{method} {path}");
        }
    }
    let (status, _) = call(&stack, "get", "/api/v1/reflexion/incidents", Some("tok")).await;
    assert_eq!(status, 200);
}
}

e2e_test! {
async fn statistics_progression_and_metrics_count_what_happened() {
    let stack = Stack::start(Options::default()).await;
    let deployments: Api<Deployment> = Api::namespaced(stack.kube().await, "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.27.O"}]}}}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    stack
        .eventually(
            "the incident to be resolved",
            Duration::from_secs(90),
            async || {
                let s = stack.get("/api/v1/memory/statistics").await;
                (
                    (s["incidents"]["by_state"]["resolved"] == 1).then_some(()),
                    s.to_string(),
                )
            },
        )
        .await;
    let s = stack.get("/api/v1/memory/statistics").await;
    assert_eq!(s["incidents"]["total"], 1.0, "{s}");
    assert_eq!(s["success_rate"], 1.0);
    assert_eq!(s["mean_trials_to_fix"], 1.0);
    assert_eq!(s["first_trial_fix_rate"], 1.0);
    assert_eq!(s["episodes"]["total"], 1.0);
    assert_eq!(s["cluster_writes"], 1.0);
    assert_eq!(s["llm"]["calls"], 0.0);
    let p = stack.get("/api/v1/memory/learning-progression").await;
    let today = &p["days"][0];
    assert_eq!(
        today["day"],
        chrono::Utc::now().format("%Y-%m-%d").to_string(),
        "{p}"
    );
    assert_eq!(
        (today["incidents"].as_f64(), today["success_rate"].as_f64()),
        (Some(1.0), Some(1.0))
    );
    assert_eq!(today["llm_free_share"], 1.0);
    assert_eq!(today["llm_calls_per_incident"], 0.0);
    let m = stack.get("/api/v1/reflexion/metrics").await;
    assert_eq!(
        (m["total_incidents"].as_f64(), m["resolved"].as_i64()),
        (Some(1.0), Some(1)),
        "{m}"
    );
    let prom = scrape(&stack).await;
    for line in [
        "reflexion_incidents{state=\"resolved\"} 1",
        "reflexion_episodes_successful_total 1",
        "reflexion_cluster_writes_total 1",
        "# TYPE reflexion_llm_calls_total counter",
    ] {
        assert!(prom.lines().any(|l| l == line), "{line} missing in\n{prom}");
    }
    // Clearing the memory deletes rows, not what was done: the counters do not go down.
    stack.delete("/api/v1/memory/clear").await;
    let prom = scrape(&stack).await;
    for line in [
        "reflexion_episodes_total 1",
        "reflexion_episodes_successful_total 1",
        "reflexion_cluster_writes_total 1",
    ] {
        assert!(prom.lines().any(|l| l == line), "{line} missing after clear in\n{prom}");
    }
}
}

e2e_test! {
async fn an_api_killed_while_verifying_finishes_the_incident_without_acting_twice() {
    // A long stability window keeps the incident in `verifying` long enough to kill the API there.
    let mut stack = Stack::start(Options {
        verify_window_secs: 6.0,
        ..Options::default()
    })
    .await;
    let deployments: Api<Deployment> = Api::namespaced(stack.kube().await, "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.27.O"}]}}}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let id = stack
        .eventually(
            "the incident to verify",
            Duration::from_secs(90),
            async || {
                let list = stack
                    .get("/api/v1/reflexion/incidents?state=verifying")
                    .await;
                (
                    list["incidents"][0]["id"].as_str().map(String::from),
                    list.to_string(),
                )
            },
        )
        .await;
    stack.kill_and_restart_api().await;
    let detail = stack
        .eventually(
            "the incident to finish after the restart",
            Duration::from_secs(90),
            async || {
                let d = stack
                    .get(&format!("/api/v1/reflexion/incidents/{id}"))
                    .await;
                (
                    (d["state"] == "resolved" || d["state"] == "escalated").then(|| d.clone()),
                    d["state"].to_string(),
                )
            },
        )
        .await;
    assert_eq!(detail["state"], "resolved", "{detail}");
    let writes: Vec<&str> = detail["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["verb"].as_str().unwrap())
        .collect();
    assert_eq!(
        writes,
        ["set_image"],
        "one action, not repeated after the restart"
    );
    assert!(
        detail["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["note"] == "resumed after restart: verifying without acting again"),
        "{detail}"
    );
    let image = support::template_container(&deployments, "web")
        .await
        .image
        .unwrap();
    assert_eq!(image, "nginx:1.27.3");
}
}

e2e_test! {
async fn traces_reach_an_otlp_collector_with_a_span_per_trial() {
    // A minimal OTLP/HTTP collector: it keeps every body POSTed to /v1/traces.
    let bodies: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>> = Default::default();
    let sink = bodies.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(body.to_vec());
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let stack = Stack::start(Options {
        extra_args: vec!["--otlp-endpoint".into(), collector],
        ..Options::default()
    })
    .await;
    let deployments: Api<Deployment> = Api::namespaced(stack.kube().await, "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.27.O"}]}}}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    // The batch exporter sends every few seconds: wait for the span of the trial.
    stack
        .eventually(
            "an incident_trial span at the collector",
            Duration::from_secs(60),
            async || {
                let got = bodies.lock().unwrap().iter().any(|b| {
                    b.windows(b"incident_trial".len())
                        .any(|w| w == b"incident_trial")
                        && b.windows(b"reflexion-api".len())
                            .any(|w| w == b"reflexion-api")
                });
                (
                    got.then_some(()),
                    format!("{} bodies", bodies.lock().unwrap().len()),
                )
            },
        )
        .await;
}
}

/// Read the live feed until `want` transitions arrived (or panic after 60 s); each as (id, parsed data).
async fn feed(
    api_url: &str,
    query: &str,
    last_event_id: Option<&str>,
    want: usize,
) -> Vec<(i64, Value)> {
    let mut req = reqwest::Client::new().get(format!("{api_url}/api/v1/events{query}"));
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id);
    }
    let mut resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut text = String::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while out.len() < want {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .expect("the feed went quiet")
            .unwrap()
            .expect("the feed ended");
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            };
            if field("event:").as_deref() == Some("transition") {
                let id = field("id:").unwrap().parse().unwrap();
                out.push((id, serde_json::from_str(&field("data:").unwrap()).unwrap()));
            }
        }
    }
    out
}

e2e_test! {
async fn the_live_feed_announces_transitions_and_resumes_where_it_stopped() {
    let stack = Stack::start(Options::default()).await;
    // Opened before anything happens (from the start of the store: no race with the first report), it announces
    // each transition as it is committed.
    let url = stack.api_url.clone();
    let live = tokio::spawn(async move { feed(&url, "?after=0", None, 3).await });
    stack
        .create_deployment(
            support::BAD_TAG_WEB,
        )
        .await;
    let seen = live.await.unwrap();
    let states: Vec<&str> = seen.iter().map(|(_, t)| t["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["reported", "diagnosing", "planning"], "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "ids grow: {seen:?}");
    let incident = seen[0].1["incident_id"].as_str().unwrap().to_string();
    assert!(seen.iter().all(|(_, t)| t["incident_id"] == incident.as_str()));
    // Resumed after the first: the same second and third, by query or by Last-Event-ID.
    let first = seen[0].0.to_string();
    for (query, header) in [(format!("?after={first}"), None), (String::new(), Some(first.as_str()))] {
        let again = feed(&stack.api_url, &query, header, 2).await;
        assert_eq!(
            again.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            seen[1..].iter().map(|(id, _)| *id).collect::<Vec<_>>()
        );
    }
    // A bad resume point is a precise error, not a stream.
    let (status, body) = call(&stack, "get", "/api/v1/events?after=-1", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_query")), "{body}");
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/events", stack.api_url))
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}
}

/// `/process` names a pod, as a person would: the incident is its workload's (the owner chain read as the watcher
/// reads it), so asking again — for that pod or another of the workload — joins it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_opens_the_incident_of_the_pods_workload_and_joins_it_after() {
    let stack = Stack::start(Options {
        watcher: false,
        // The incident waits for a person: still open when asked again.
        policy: Some(r#"{"default_mode": "approve"}"#),
        ..Options::default()
    })
    .await;
    stack.create_deployment(support::BAD_TAG_WEB).await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(stack.kube().await, "default");
    let pod = stack
        .eventually(
            "the web pod failing to pull",
            support::FIX_TIMEOUT,
            async || {
                let list = pods.list(&Default::default()).await.unwrap();
                let failing = list.items.iter().find(|p| {
                    let waiting = p
                        .status
                        .as_ref()
                        .and_then(|s| s.container_statuses.as_ref())
                        .and_then(|c| c.first())
                        .and_then(|c| c.state.as_ref())
                        .and_then(|s| s.waiting.as_ref())
                        .and_then(|w| w.reason.clone());
                    waiting.is_some_and(|r| r.contains("ImagePull"))
                });
                (
                    failing.and_then(|p| p.metadata.name.clone()),
                    format!("{:?}", list.items.first().map(|p| &p.status)),
                )
            },
        )
        .await;
    let ask = json!({"pod_name": pod, "namespace": "default", "error_type": "ImagePullBackOff"});
    let (status, first) = stack.post("/api/v1/reflexion/process", ask.clone()).await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(
        first["workload"],
        json!({"kind": "Deployment", "name": "web", "namespace": "default"}),
        "{first}"
    );
    let (status, again) = stack.post("/api/v1/reflexion/process", ask).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(
        (again["duplicate"].as_bool(), &again["incident_id"]),
        (Some(true), &first["incident_id"]),
        "{again}"
    );
}
