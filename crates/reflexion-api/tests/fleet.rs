//! Many clusters, one memory: two simclusters, a watcher each, one reflexion-api serving both. A fix learned on one
//! cluster is applied on the other in one trial with no LLM call, each incident's actions go to its own cluster
//! only, and a report from a cluster the API does not serve is refused and stored nowhere.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::{Value, json};
use support::storm::{PER_CLUSTER, assert_storm_resolved_once, audit_on, start_storm};
use support::{BAD_TAG_WEB, FIX_TIMEOUT, Options, Stack, free_port, template_container};

/// Wait until the cluster's incident is resolved; return it in full.
async fn resolved_on(stack: &Stack, cluster: &str) -> Value {
    let summary = stack
        .eventually(
            &format!("the incident on {cluster} to be resolved"),
            FIX_TIMEOUT,
            async || {
                let list = stack.get("/api/v1/reflexion/incidents").await;
                let found = list["incidents"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|i| i["cluster"] == cluster && i["state"] == "resolved")
                    .cloned();
                (found, list.to_string())
            },
        )
        .await;
    support::incident_detail(stack, &summary).await
}

/// Wait until the replica at `url` says `n` replicas share the Kubernetes budget (`reflexion_replicas`).
async fn sharing(stack: &Stack, url: &str, n: u32) {
    let want = format!("\nreflexion_replicas {n}\n");
    stack
        .eventually(
            &format!("{url} to share the Kubernetes budget with {n} replica(s)"),
            FIX_TIMEOUT,
            async || {
                let text = reqwest::get(format!("{url}/metrics"))
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                let seen = text
                    .lines()
                    .find(|l| l.starts_with("reflexion_replicas "))
                    .map(String::from);
                (text.contains(&want).then_some(()), format!("{seen:?}"))
            },
        )
        .await;
}

async fn create_web(client: kube::Client) -> Api<Deployment> {
    let api: Api<Deployment> = Api::namespaced(client, "default");
    let d: Deployment = serde_yaml::from_str(BAD_TAG_WEB).unwrap();
    api.create(&PostParams::default(), &d).await.unwrap();
    api
}

fn generation(d: &Deployment) -> i64 {
    d.metadata.generation.unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fix_learned_on_one_cluster_is_applied_on_another_each_action_on_its_own_cluster() {
    // An LLM is configured (a port nobody listens on): a call would be recorded, so "no LLM call" is observed.
    let dead_llm = format!("http://127.0.0.1:{}/v1", free_port());
    // One memory for the fleet: the API's store is PostgreSQL where it is installed (always in CI).
    let stack = Stack::start(Options {
        clusters: &["staging", "prod"],
        extra_args: vec!["--llm-base-url".into(), dead_llm],
        database_url: support::postgres::database().await,
        ..Options::default()
    })
    .await;
    let health = stack.get("/health").await;
    if support::postgres::installed() {
        assert_eq!(health["store"], "postgres", "{health}");
    }
    assert_eq!(
        (
            &health["clusters"]["staging"]["status"],
            &health["clusters"]["prod"]["status"]
        ),
        (&json!("ok"), &json!("ok")),
        "{health}"
    );

    // The seed's bad tag on staging: fixed by the rules, and the strategy recorded.
    let staging = create_web(stack.kube_of("staging").await).await;
    let first = resolved_on(&stack, "staging").await;
    assert_eq!(first["trials"], 1, "{first}");
    let verbs = audit_on(&first, "staging");
    assert!(verbs.contains(&"set_image".to_string()), "{verbs:?}");
    let strategy = first["episodes"][0]["strategy_id"].clone();
    assert!(strategy.is_string(), "{first}");
    assert_eq!(first["llm_calls"], json!([]), "{first}");
    let fixed_image = template_container(&staging, "web").await.image;
    assert_ne!(fixed_image.as_deref(), Some("nginx:1.27.O"));
    let staging_generation = generation(&staging.get("web").await.unwrap());

    // The same failure on prod: one trial, the strategy staging taught, no LLM call.
    let prod = create_web(stack.kube_of("prod").await).await;
    let second = resolved_on(&stack, "prod").await;
    assert_ne!(second["id"], first["id"]);
    assert_eq!(second["trials"], 1, "{second}");
    assert_eq!(second["episodes"][0]["strategy_id"], strategy, "{second}");
    assert_eq!(second["llm_calls"], json!([]), "{second}");
    assert_eq!(audit_on(&second, "prod"), verbs);
    assert_eq!(template_container(&prod, "web").await.image, fixed_image);
    let strategies = stack.get("/api/v1/reflexion/strategies").await;
    let record = strategies["strategies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == strategy)
        .cloned()
        .unwrap_or_else(|| panic!("{strategies}"));
    assert_eq!(
        (record["successes"].as_i64(), record["usage_count"].as_i64()),
        (Some(2), Some(2)),
        "{record}"
    );

    // One memory: both trials, each saying where it ran (and so where its lessons were taught).
    let episodes = stack.get("/api/v1/reflexion/memory/episodic").await;
    let mut taught: Vec<(String, usize)> = episodes["episodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["cluster"].as_str().unwrap().to_string(),
                e["lessons_learned"].as_array().unwrap().len(),
            )
        })
        .collect();
    taught.sort();
    assert_eq!(
        taught,
        [("prod".to_string(), 1), ("staging".to_string(), 1)],
        "{episodes}"
    );

    // Each incident's writes went to its own cluster: staging's Deployment was not changed again for prod's.
    assert_eq!(
        generation(&staging.get("web").await.unwrap()),
        staging_generation
    );
    let events: Api<Event> = Api::namespaced(stack.kube_of("prod").await, "default");
    let fixed: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("ReflexionFixed"))
        .collect();
    assert_eq!(fixed.len(), 1, "{fixed:?}");
    assert_eq!(
        fixed[0]
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("kube-reflexion.io/cluster"))
            .map(String::as_str),
        Some("prod")
    );

    // A report from a cluster the API does not serve, or naming none while it serves two: refused, stored nowhere.
    let report = |cluster: Option<&str>| {
        let mut r = json!({"pod_name": "web-1", "namespace": "default", "error_type": "ImagePullBackOff",
                           "idempotency_key": format!("k-{cluster:?}")});
        if let Some(c) = cluster {
            r["cluster"] = json!(c);
        }
        r
    };
    for (cluster, said) in [
        (Some("dev"), "serves no cluster named \"dev\""),
        (None, "names no cluster"),
    ] {
        let (status, body) = stack
            .post("/api/v1/reflexion/process-with-k8s-data", report(cluster))
            .await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["code"], "unknown_cluster", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(said) && message.contains("prod, staging"),
            "{message}"
        );
    }
    let all = stack.get("/api/v1/reflexion/incidents").await;
    assert_eq!(all["total_count"], 2, "{all}");

    let metrics = reqwest::get(format!("{}/metrics", stack.api_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for c in ["staging", "prod"] {
        let line = format!("reflexion_cluster_incidents{{cluster=\"{c}\",state=\"resolved\"}} 1");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_cluster_is_gated_by_its_own_policy() {
    // prod asks a person first; staging runs on the shared policy (auto).
    let policies = tempfile::tempdir().unwrap();
    let prod_policy = policies.path().join("prod.json");
    std::fs::write(&prod_policy, r#"{"default_mode": "approve"}"#).unwrap();
    let stack = Stack::start(Options {
        clusters: &["staging", "prod"],
        extra_args: vec![
            "--cluster-policy".into(),
            format!("prod={}", prod_policy.display()),
        ],
        ..Options::default()
    })
    .await;
    let staging = create_web(stack.kube_of("staging").await).await;
    let prod = create_web(stack.kube_of("prod").await).await;
    let fixed = resolved_on(&stack, "staging").await;
    assert_eq!(audit_on(&fixed, "staging"), ["set_image"]);
    let waiting = support::awaiting_approval(&stack).await;
    assert_eq!(waiting["cluster"], "prod", "{waiting}");
    assert_eq!(
        waiting["audit"],
        json!([]),
        "nothing written before approval"
    );
    assert_eq!(
        template_container(&prod, "web").await.image.as_deref(),
        Some("nginx:1.27.O")
    );
    assert_ne!(
        template_container(&staging, "web").await.image.as_deref(),
        Some("nginx:1.27.O")
    );
    // Approved, prod's trial runs on prod.
    stack.approve(&waiting).await;
    let approved = resolved_on(&stack, "prod").await;
    assert_eq!(audit_on(&approved, "prod"), ["set_image"]);
    assert_ne!(
        template_container(&prod, "web").await.image.as_deref(),
        Some("nginx:1.27.O")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_across_two_clusters_with_the_api_killed_midway_resolves_every_incident_with_each_write_once()
 {
    let mut stack = Stack::start(Options {
        clusters: &["staging", "prod"],
        api_args: &["--max-actions-per-hour", "500"],
        database_url: support::postgres::database().await,
        ..Options::default()
    })
    .await;
    start_storm(&stack).await;
    stack.kill_and_restart_api().await;
    assert_storm_resolved_once(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_postgres_with_one_killed_midway_resolve_every_incident_with_each_write_once()
 {
    let Some(database_url) = support::postgres::database().await else {
        return;
    };
    // Each watcher reports to its own replica; replica-1 is SIGKILLed for good mid-storm, and replica-2 takes over
    // its incidents once their claims (3 s) expire.
    let mut stack = Stack::start(Options {
        clusters: &["staging", "prod"],
        api_args: &["--max-actions-per-hour", "500", "--claim-ttl-secs", "3"],
        database_url: Some(database_url),
        replicas: 2,
        ..Options::default()
    })
    .await;
    // Each takes half of the Kubernetes request budget.
    for (_, url) in &stack.replicas {
        sharing(&stack, url, 2).await;
    }
    start_storm(&stack).await;
    // Every report delivered (the killed replica's watcher has nowhere else to send), some incidents unfinished.
    stack
        .eventually(
            "all reports stored, the storm not over",
            FIX_TIMEOUT,
            async || {
                let list = stack.get("/api/v1/reflexion/incidents?limit=1000").await;
                let incidents = list["incidents"].as_array().unwrap();
                let open = incidents
                    .iter()
                    .filter(|i| {
                        !["resolved", "escalated", "failed"].contains(&i["state"].as_str().unwrap())
                    })
                    .count();
                (
                    (incidents.len() == 2 * PER_CLUSTER && open > 0).then_some(()),
                    format!("{} stored, {open} open", incidents.len()),
                )
            },
        )
        .await;
    stack.kill_replica("reflexion-api");
    assert_storm_resolved_once(&stack).await;
    // The survivor has the whole budget once the dead replica's time ran out.
    sharing(&stack, &stack.api_url, 1).await;
    let log = std::fs::read_to_string(stack.dir.path().join("reflexion-api-2.log")).unwrap();
    assert!(
        log.lines().any(
            |l| l.contains("resuming an incident whose replica's claim expired")
                && l.contains("\"replica-1\"")
        ),
        "replica-2 took nothing over from replica-1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_stops_gives_its_part_of_the_kubernetes_budget_back_at_once() {
    let Some(database_url) = support::postgres::database().await else {
        return;
    };
    // Claims (and a replica's announced life) last ten minutes: only the stopping replica's own goodbye can make
    // the other see it gone within the wait below.
    let mut stack = Stack::start(Options {
        watcher: false,
        api_args: &["--claim-ttl-secs", "600"],
        database_url: Some(database_url),
        replicas: 2,
        ..Options::default()
    })
    .await;
    for (_, url) in &stack.replicas {
        sharing(&stack, url, 2).await;
    }
    stack.stop_replica("reflexion-api");
    sharing(&stack, &stack.api_url, 1).await;
    let log = std::fs::read_to_string(stack.dir.path().join("reflexion-api-2.log")).unwrap();
    // The log is coloured: its fields' names and values are apart by escape codes.
    let mut parts = log.split('\u{1b}');
    let plain: String = parts
        .next()
        .into_iter()
        .chain(parts.map(|s| s.split_once('m').map_or(s, |(_, t)| t)))
        .collect();
    assert!(
        plain
            .lines()
            .any(|l| l.contains("replicas sharing the Kubernetes request budget replicas=1")),
        "replica-2 did not say it has the whole budget again:\n{plain}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_asked_by_a_replica_that_died_is_approved_on_another_and_runs_once() {
    let Some(database_url) = support::postgres::database().await else {
        return;
    };
    let mut stack = Stack::start(Options {
        policy: Some(r#"{"default_mode": "approve"}"#),
        database_url: Some(database_url),
        replicas: 2,
        api_args: &["--claim-ttl-secs", "3"],
        ..Options::default()
    })
    .await;
    let api = create_web(stack.kube().await).await;
    // The watcher reports to replica-1, which plans and asks.
    let waiting = stack
        .eventually("a plan awaiting approval", FIX_TIMEOUT, async || {
            let list = stack
                .get("/api/v1/reflexion/incidents?state=awaiting_approval")
                .await;
            (
                list["incidents"][0]["id"].as_str().map(String::from),
                list.to_string(),
            )
        })
        .await;
    stack.kill_replica("reflexion-api");
    let summary = stack
        .get(&format!("/api/v1/reflexion/incidents/{waiting}"))
        .await;
    assert_eq!(summary["state"], "awaiting_approval", "{summary}");
    stack.approve(&summary).await;
    let detail = stack
        .eventually("the approved incident to finish", FIX_TIMEOUT, async || {
            let d = stack
                .get(&format!("/api/v1/reflexion/incidents/{waiting}"))
                .await;
            let done =
                ["resolved", "escalated", "failed"].contains(&d["state"].as_str().unwrap_or(""));
            (done.then(|| d.clone()), d["state"].to_string())
        })
        .await;
    assert_eq!(detail["state"], "resolved", "{detail}");
    assert_eq!(support::audit_verbs(&detail), ["set_image"], "{detail}");
    assert_eq!(
        generation(&api.get("web").await.unwrap()),
        2,
        "written once"
    );
}
