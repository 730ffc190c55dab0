//! What the scenario tests read from pods: apply a scenario file, wait for a pod in a state, its waiting reason,
//! last termination, scheduling condition, events and previous logs.

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{ApiResource, DynamicObject, ListParams, LogParams, PostParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client};
use serde::Deserialize;
use std::time::{Duration, Instant};

/// `kubectl apply -f k8s/scenarios/<file>` (create only), through kube-rs.
pub async fn apply(client: &Client, file: &str) {
    let path = format!("{}/../../k8s/scenarios/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let obj: serde_json::Value = serde_json::Value::deserialize(doc).unwrap();
        if obj.is_null() {
            continue;
        }
        let (group, version) = match obj["apiVersion"].as_str().unwrap().split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (
                String::new(),
                obj["apiVersion"].as_str().unwrap().to_string(),
            ),
        };
        let gvk = GroupVersionKind::gvk(&group, &version, obj["kind"].as_str().unwrap());
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), "default", &ApiResource::from_gvk(&gvk));
        let dynamic: DynamicObject = serde_json::from_value(obj).unwrap();
        api.create(&PostParams::default(), &dynamic)
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}

/// Wait until a pod matching `selector` satisfies `check`; return it.
pub async fn pod_where(
    client: &Client,
    selector: &str,
    what: &str,
    check: impl Fn(&Pod) -> bool,
) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let list = pods
            .list(&ListParams::default().labels(selector))
            .await
            .unwrap();
        if let Some(p) = list.items.iter().find(|p| check(p)) {
            return p.clone();
        }
        if Instant::now() > deadline {
            let states: Vec<_> = list
                .items
                .iter()
                .map(|p| serde_json::to_string(&p.status).unwrap())
                .collect();
            panic!("no pod with {selector} became {what}; pods: {states:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn waiting(p: &Pod) -> Option<(String, String)> {
    let w = p
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .waiting
        .as_ref()?;
    Some((
        w.reason.clone().unwrap_or_default(),
        w.message.clone().unwrap_or_default(),
    ))
}

pub fn reason_is(p: &Pod, reason: &str) -> bool {
    waiting(p).is_some_and(|(r, _)| r == reason)
}

/// (exit code, reason) of the last terminated instance, once the container restarted at least once.
pub fn last_terminated(p: &Pod) -> Option<(i32, String)> {
    let cs = p.status.as_ref()?.container_statuses.as_ref()?.first()?;
    let t = cs.last_state.as_ref()?.terminated.as_ref()?;
    (cs.restart_count >= 1).then(|| (t.exit_code, t.reason.clone().unwrap_or_default()))
}

pub fn unschedulable(p: &Pod) -> Option<String> {
    let c = p
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled")?;
    (c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
        .then(|| c.message.clone().unwrap_or_default())
}

pub async fn events_of(client: &Client, p: &Pod) -> Vec<(String, String, String)> {
    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    let lp = ListParams::default().fields(&format!(
        "involvedObject.uid={}",
        p.metadata.uid.clone().unwrap()
    ));
    api.list(&lp)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
            )
        })
        .collect()
}

pub fn has_event(
    events: &[(String, String, String)],
    type_: &str,
    reason: &str,
    needle: &str,
) -> bool {
    events
        .iter()
        .any(|(t, r, m)| t == type_ && r == reason && m.contains(needle))
}

pub async fn previous_logs(client: &Client, p: &Pod) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.logs(
        p.metadata.name.as_deref().unwrap(),
        &LogParams {
            previous: true,
            ..LogParams::default()
        },
    )
    .await
    .unwrap()
}
