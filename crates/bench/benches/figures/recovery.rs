//! Time to recovery for the seed's bad-tag pod and its Deployment variant, under the shipped default policy (the
//! re-tag is low risk and runs at once): the product's own time — from the first failing status the API server
//! holds to the fix applied (the incident entering `verifying`) — apart from the verification window after it.

use crate::stack::{Mode, Stack};
use crate::{Figure, Target};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Seen = Arc<Mutex<HashMap<String, chrono::DateTime<chrono::Utc>>>>;

/// When each pod was first seen failing, by the bench's own watch.
fn watch_failures(pods: Api<Pod>) -> Seen {
    let seen: Seen = Arc::default();
    let out = seen.clone();
    tokio::spawn(async move {
        let stream = watcher(pods, watcher::Config::default()).applied_objects();
        futures::pin_mut!(stream);
        while let Some(Ok(p)) = stream.next().await {
            if reflexion_core::classify(&p, &[]).is_some() {
                let now = chrono::Utc::now();
                if let Ok(mut s) = out.lock() {
                    s.entry(p.metadata.name.unwrap_or_default()).or_insert(now);
                }
            }
        }
    });
    seen
}

fn at(v: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// (overhead s, verification s) of the incident of `workload`, once it is resolved.
async fn measure(stack: &Stack, seen: &Seen, workload: &str) -> Option<(f64, f64)> {
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline {
        let incidents = stack.incidents().await;
        if let Some(i) = incidents
            .iter()
            .find(|i| i["workload"]["name"] == workload && i["state"] == "resolved")
        {
            let detail = stack.incident(i["id"].as_str()?).await;
            let transitions = detail["transitions"].as_array()?;
            let when = |state: &str| {
                transitions
                    .iter()
                    .find(|t| t["state"] == state)
                    .and_then(|t| at(&t["at"]))
            };
            let (applied, resolved) = (when("verifying")?, when("resolved")?);
            let first = seen
                .lock()
                .ok()?
                .iter()
                .filter(|(pod, _)| pod.starts_with(workload))
                .map(|(_, t)| *t)
                .min()?;
            let secs = |d: chrono::TimeDelta| d.num_microseconds().unwrap_or(0) as f64 / 1e6;
            return Some((secs(applied - first), secs(resolved - applied)));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

pub async fn recovery(figures: &mut Vec<Figure>) {
    let stack = Stack::start(true, true, Mode::Default).await;
    let client = stack.kube().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let seen = watch_failures(pods.clone());
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "test-nginx", "labels": {"run": "test-nginx"}},
        "spec": {"containers": [{"name": "test-nginx", "image": "nginx:bu-tag-yok"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let bare = measure(&stack, &seen, "test-nginx").await;
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:bu-tag-yok", "ports": [{"containerPort": 80}]}]}}}
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client, "default")
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let owned = measure(&stack, &seen, "web").await;
    let part = "(i) time to recovery";
    for (what, m) in [("bad-tag pod", bare), ("bad-tag Deployment", owned)] {
        let (overhead, window) = m.unwrap_or((f64::NAN, f64::NAN));
        figures.push(
            Figure::new(
                part,
                format!("{what}: first failing status -> fix applied"),
                overhead,
                "s",
            )
            .target(Target::AtMost(1.0)),
        );
        figures.push(Figure::new(
            part,
            format!("{what}: fix applied -> verified (Ready, then a 5 s window)"),
            window,
            "s",
        ));
    }
}
