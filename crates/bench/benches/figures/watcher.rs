//! The watcher's figures: detection latency next to the seed's 10 s polling loop on the same stream of failures, a
//! storm, an API outage, and memory at 10,000 pods.

use crate::stack::{Mode, Stack, percentile, rss_mib, size};
use crate::{Figure, Series, Target};
use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn bare_pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"bench": "true"}},
        "spec": {"containers": [{"name": "app", "image": "nginx:no-such-tag"}]}
    }))
    .unwrap()
}

async fn create_pods(pods: &Api<Pod>, names: &[String]) {
    stream::iter(names)
        .for_each_concurrent(16, |n| async move {
            pods.create(&PostParams::default(), &bare_pod(n))
                .await
                .unwrap();
        })
        .await;
}

fn failing_deployment(name: &str, replicas: usize) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": "nginx:no-such-tag"}]}}}
    }))
    .unwrap()
}

fn ms_since(t: &Value, start: chrono::DateTime<chrono::Utc>) -> Option<f64> {
    chrono::DateTime::parse_from_rfc3339(t.as_str()?)
        .ok()
        .map(|t| {
            (t.with_timezone(&chrono::Utc) - start)
                .num_microseconds()
                .unwrap_or(0) as f64
                / 1000.0
        })
}

/// The seed's watcher: list every pod every `period` and report what fails. It runs in this process on the same
/// stream of failures as the watcher; it records when a failing pod was first seen.
async fn poll_every(
    pods: Api<Pod>,
    period: Duration,
    until: Instant,
) -> HashMap<String, chrono::DateTime<chrono::Utc>> {
    let mut seen = HashMap::new();
    let mut tick = tokio::time::interval(period);
    while Instant::now() < until {
        tick.tick().await;
        let Ok(list) = pods.list(&ListParams::default()).await else {
            continue;
        };
        let now = chrono::Utc::now();
        for p in list.items {
            if reflexion_core::classify(&p, &[]).is_some() {
                seen.entry(p.metadata.name.unwrap_or_default())
                    .or_insert(now);
            }
        }
    }
    seen
}

/// (a) detection latency and (e) the polling baseline.
pub async fn latency(figures: &mut Vec<Figure>, series: &mut Vec<Series>) {
    let n = size("BENCH_FAILURES", 1000, 50).min(1000);
    let period = Duration::from_secs(size("BENCH_POLL_SECS", 10, 10) as u64);
    let stack = Stack::start(false, true, Mode::Suggest).await;
    let pods: Api<Pod> = Api::namespaced(stack.kube().await, "default");
    let names: Vec<String> = (0..n).map(|i| format!("lat-{i:05}")).collect();
    create_pods(&pods, &names).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The baseline polls for the stream's length plus two periods, so it sees every failure.
    let stream_len = Duration::from_millis(10 * n as u64);
    let poller = tokio::spawn(poll_every(
        pods.clone(),
        period,
        Instant::now() + stream_len + 2 * period,
    ));
    // One failure every 10 ms: each is measured on its own, not behind a queue of others.
    let mut t0: HashMap<String, chrono::DateTime<chrono::Utc>> = HashMap::new();
    for name in &names {
        let status = json!({"status": {"phase": "Pending", "containerStatuses": [{
            "name": "app", "image": "nginx:no-such-tag", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ErrImagePull",
                "message": "Failed to pull image \"nginx:no-such-tag\": rpc error: code = NotFound desc = not found"}}}]}});
        t0.insert(name.clone(), chrono::Utc::now());
        pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let incidents = loop {
        let i = stack.incidents().await;
        if i.len() >= n || Instant::now() > deadline {
            break i;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut total = Vec::new();
    let mut watched = Vec::new();
    for i in &incidents {
        let (Some(pod), Some(id)) = (i["pod_name"].as_str(), i["id"].as_str()) else {
            continue;
        };
        let Some(start) = t0.get(pod) else { continue };
        if let Some(stored) = ms_since(&i["created_at"], *start) {
            total.push(stored);
        }
        let detail = stack.incident(id).await;
        if let Some(seen) = ms_since(&detail["report"]["real_k8s_data"]["detected_at"], *start) {
            watched.push(seen);
        }
    }
    let polled = poller.await.unwrap_or_default();
    let mut baseline: Vec<f64> = t0
        .iter()
        .filter_map(|(name, start)| {
            polled
                .get(name)
                .map(|seen| (*seen - *start).num_microseconds().unwrap_or(0) as f64 / 1000.0)
        })
        .collect();
    for v in [&mut total, &mut watched, &mut baseline] {
        v.sort_by(f64::total_cmp);
    }
    let part = "(a) detection";
    figures.push(Figure::new(
        part,
        format!("failures measured (of {n})"),
        total.len() as f64,
        "",
    ));
    figures.push(Figure::new(
        part,
        "status written -> report stored, p50",
        percentile(&total, 50.0),
        "ms",
    ));
    figures.push(
        Figure::new(
            part,
            "status written -> report stored, p99",
            percentile(&total, 99.0),
            "ms",
        )
        .target(Target::AtMost(20.0)),
    );
    figures.push(Figure::new(
        part,
        "status written -> watcher saw it, p99",
        percentile(&watched, 99.0),
        "ms",
    ));
    let part = "(e) baseline";
    figures.push(Figure::new(
        part,
        format!("{} s polling loop, p50", period.as_secs()),
        percentile(&baseline, 50.0),
        "ms",
    ));
    figures.push(Figure::new(
        part,
        format!("{} s polling loop, p99", period.as_secs()),
        percentile(&baseline, 99.0),
        "ms",
    ));
    figures.push(Figure::new(
        part,
        "polling / watcher, p50",
        percentile(&baseline, 50.0) / percentile(&total, 50.0),
        "x",
    ));
    figures.push(Figure::new(
        part,
        "polling / watcher, p99",
        percentile(&baseline, 99.0) / percentile(&total, 99.0),
        "x",
    ));
    series.push(Series::cdf("detection", "watcher (report stored)", total));
    series.push(Series::cdf(
        "detection",
        &format!("{} s polling", period.as_secs()),
        baseline,
    ));
}

/// (b) a storm of failing Deployments.
pub async fn storm(figures: &mut Vec<Figure>) {
    let (d, r) = (
        size("BENCH_STORM_DEPLOYMENTS", 10, 2),
        size("BENCH_STORM_REPLICAS", 100, 5),
    );
    let stack = Stack::start(true, true, Mode::Suggest).await;
    let api: Api<Deployment> = Api::namespaced(stack.kube().await, "default");
    let start = Instant::now();
    for i in 0..d {
        api.create(
            &PostParams::default(),
            &failing_deployment(&format!("storm-{i}"), r),
        )
        .await
        .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last_report = None;
    while Instant::now() < deadline {
        let n = stack.incidents().await.len();
        if n >= d && last_report.is_none() {
            last_report = Some(start.elapsed());
        }
        // Keep watching a while after the last expected report: a duplicate would show up here.
        if last_report.is_some_and(|t| start.elapsed() > t + Duration::from_secs(10)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let part = "(b) storm";
    figures.push(
        Figure::new(
            part,
            format!("{} failing pods: incidents stored", d * r),
            stack.incidents().await.len() as f64,
            "",
        )
        .target(Target::Exactly(d as f64)),
    );
    figures.push(Figure::new(
        part,
        "reports sent",
        stack.metric("watcher_reports_sent_total").await,
        "",
    ));
    figures.push(Figure::new(
        part,
        "pod updates dropped as duplicates",
        stack
            .metric("watcher_reports_dropped_duplicate_total")
            .await,
        "",
    ));
    figures.push(Figure::new(
        part,
        "last report after",
        last_report.map(|t| t.as_secs_f64()).unwrap_or(f64::NAN),
        "s",
    ));
}

/// (d) the storm with reflexion-api killed for a while in the middle: every failure arrives, once.
pub async fn outage(figures: &mut Vec<Figure>) {
    let (d, r) = (
        size("BENCH_STORM_DEPLOYMENTS", 10, 2),
        size("BENCH_STORM_REPLICAS", 100, 5),
    );
    let down = Duration::from_secs(size("BENCH_OUTAGE_SECS", 60, 5) as u64);
    let mut stack = Stack::start(true, true, Mode::Suggest).await;
    let api: Api<Deployment> = Api::namespaced(stack.kube().await, "default");
    let create = async |range: std::ops::Range<usize>| {
        for i in range {
            api.create(
                &PostParams::default(),
                &failing_deployment(&format!("outage-{i}"), r),
            )
            .await
            .unwrap();
        }
    };
    create(0..d / 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // SIGKILL, while the first half fails and the second half is created.
    drop(stack.procs.remove(1));
    let killed = Instant::now();
    create(d / 2..d).await;
    tokio::time::sleep(down.saturating_sub(killed.elapsed())).await;
    let spooled = stack.metric("watcher_reports_spooled").await;
    stack.start_api();
    crate::stack::wait_http(&format!("{}/health", stack.api_url)).await;
    let back = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut all_in = None;
    while Instant::now() < deadline {
        if stack.incidents().await.len() >= d && all_in.is_none() {
            all_in = Some(back.elapsed());
        }
        if all_in.is_some_and(|t| back.elapsed() > t + Duration::from_secs(10)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let part = "(d) outage";
    figures.push(Figure::new(
        part,
        format!(
            "API down {} s: reports waiting in the spool",
            down.as_secs()
        ),
        spooled,
        "",
    ));
    figures.push(
        Figure::new(
            part,
            format!("incidents stored for {d} Deployments"),
            stack.incidents().await.len() as f64,
            "",
        )
        .target(Target::Exactly(d as f64)),
    );
    figures.push(Figure::new(
        part,
        "all stored after the API came back",
        all_in.map(|t| t.as_secs_f64()).unwrap_or(f64::NAN),
        "s",
    ));
}

/// (c) the watcher's memory: idle, then watching P pods listed at once at its start.
pub async fn memory(figures: &mut Vec<Figure>, series: &mut Vec<Series>) {
    let p = size("BENCH_PODS", 10_000, 300);
    let mut stack = Stack::start(false, false, Mode::Suggest).await;
    stack.start_watcher().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle, _) = rss_mib(stack.watcher_pid);
    let pods: Api<Pod> = Api::namespaced(stack.kube().await, "default");
    let names: Vec<String> = (0..p).map(|i| format!("mem-{i:05}")).collect();
    create_pods(&pods, &names).await;
    // Restart the watcher so it lists all pods at once (the worst case), then let it settle.
    stack.procs.pop();
    let started = Instant::now();
    stack.start_watcher().await;
    let mut peak = 0.0f64;
    let mut rss = 0.0;
    let mut timeline = Vec::new();
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (now, hwm) = rss_mib(stack.watcher_pid);
        timeline.push((started.elapsed().as_secs_f64(), now));
        rss = now;
        peak = peak.max(hwm);
    }
    let part = "(c) watcher memory";
    figures.push(Figure::new(part, "RSS watching no pods", idle, "MiB"));
    figures.push(
        Figure::new(part, format!("RSS watching {p} pods"), rss, "MiB")
            .target(Target::AtMost(30.0)),
    );
    figures.push(
        Figure::new(part, "peak RSS during the initial list", peak, "MiB")
            .target(Target::AtMost(60.0)),
    );
    series.push(Series::line(
        "watcher-rss",
        &format!("watcher RSS, {p} pods listed at start"),
        timeline,
    ));
}
