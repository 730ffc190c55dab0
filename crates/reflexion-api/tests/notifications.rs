//! Notifications (issue 29): a local HTTP receiver stands in for a Slack incoming webhook and a generic webhook. It
//! is down for the first 30 s after the fix starts waiting for approval, and the API is killed and restarted in
//! that time; once it is up, each notice arrives once per URL — signed, with the workload, the cause, the exact
//! command and a link to the console — and so does the resolution that follows the approval.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use axum::body::Bytes;
use axum::http::{HeaderMap, Uri};
use reflexion_notify::sign;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Options, Stack, awaiting_approval, finished_incident, free_port};

const SECRET: &str = "a-shared-secret-for-the-test-receiver";

/// What the receiver got: (path, headers, body as sent, body).
type Received = Arc<Mutex<Vec<(String, HeaderMap, Bytes, Value)>>>;

async fn receive(port: u16, got: Received) {
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
        let got = got.clone();
        async move {
            let json: Value = serde_json::from_slice(&body).expect("a JSON body");
            got.lock()
                .unwrap()
                .push((uri.path().to_string(), headers, body, json));
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the receiver's port");
    tokio::spawn(async move { axum::serve(listener, app).await });
}

/// The generic webhook's notices of `event`, each checked against its signature.
fn webhooks(got: &Received, event: &str) -> Vec<Value> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|(path, _, _, body)| path == "/hook" && body["event"] == event)
        .map(|(_, headers, raw, body)| {
            let h = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
            };
            let ts: i64 = h(sign::TIMESTAMP_HEADER).parse().expect("a timestamp");
            assert!(
                sign::verify(SECRET.as_bytes(), ts, raw, h(sign::SIGNATURE_HEADER)),
                "the signature holds for {body}"
            );
            assert!(
                !sign::verify(
                    b"not-the-secret-at-all-nope",
                    ts,
                    raw,
                    h(sign::SIGNATURE_HEADER)
                ),
                "and only under the shared secret"
            );
            assert_eq!(h(sign::DELIVERY_HEADER), body["id"].as_str().unwrap());
            assert_eq!(h(sign::EVENT_HEADER), event);
            body.clone()
        })
        .collect()
}

/// Slack messages whose header is `title`.
fn slack(got: &Received, title: &str) -> Vec<Value> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|(path, _, _, body)| path == "/slack" && body["blocks"][0]["text"]["text"] == title)
        .map(|(_, _, _, body)| body.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_30s_gets_each_signed_notice_once_after_an_api_restart() {
    let port = free_port();
    let mut stack = Stack::start(Options {
        extra_args: vec![
            "--notify".into(),
            format!("webhook=http://127.0.0.1:{port}/hook"),
            "--notify".into(),
            format!("slack=http://127.0.0.1:{port}/slack"),
            "--notify-secret".into(),
            SECRET.into(),
            "--console-url".into(),
            "https://reflexion.example/".into(),
        ],
        ..Options::default()
    })
    .await;
    stack
        .create_all(include_str!("../../../k8s/scenarios/selector-no-node.yaml"))
        .await;
    let waiting = awaiting_approval(&stack).await;
    let down_since = Instant::now();
    let id = waiting["id"].as_str().unwrap().to_string();
    // The notifier has tried (and failed) to deliver by now; a restart must not lose what it stored.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stack.kill_and_restart_api().await;
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(down_since.elapsed())).await;

    let got: Received = Arc::default();
    receive(port, got.clone()).await;
    let asked = stack
        .eventually(
            "the approval notices",
            Duration::from_secs(60),
            async || {
                let (hooks, msgs) = (
                    webhooks(&got, "awaiting_approval"),
                    slack(&got, "Fix awaiting approval"),
                );
                (
                    (!hooks.is_empty() && !msgs.is_empty())
                        .then(|| (hooks[0].clone(), msgs[0].clone())),
                    format!("{:?}", got.lock().unwrap()),
                )
            },
        )
        .await;
    let (hook, msg) = asked;
    assert_eq!(hook["version"], "kube-reflexion.notification/v1", "{hook}");
    assert_eq!(hook["incident"]["id"], id.as_str(), "{hook}");
    assert_eq!(hook["incident"]["workload"]["kind"], "Deployment", "{hook}");
    assert_eq!(hook["incident"]["workload"]["name"], "catalog", "{hook}");
    assert_eq!(
        hook["incident"]["signature"], "unschedulable/node_selector",
        "{hook}"
    );
    assert_eq!(
        hook["command"], waiting["pending_plan"]["command"],
        "{hook}"
    );
    assert_eq!(
        hook["console_url"],
        format!("https://reflexion.example/#/incidents/{id}").as_str(),
        "{hook}"
    );
    let text = msg.to_string();
    assert!(text.contains("Deployment default/catalog"), "{text}");
    assert!(text.contains("unschedulable/node_selector"), "{text}");
    assert!(text.contains("nodeSelector"), "the command: {text}");
    assert!(
        text.contains(&format!("https://reflexion.example/#/incidents/{id}")),
        "{text}"
    );

    stack.approve(&waiting).await;
    let done = finished_incident(&stack).await;
    assert_eq!(done["state"], "resolved", "{done}");
    let resolved = stack
        .eventually(
            "the resolution notices",
            Duration::from_secs(30),
            async || {
                let (hooks, msgs) = (webhooks(&got, "resolved"), slack(&got, "Incident resolved"));
                (
                    (!hooks.is_empty() && !msgs.is_empty()).then(|| hooks[0].clone()),
                    format!("{:?}", got.lock().unwrap()),
                )
            },
        )
        .await;
    assert_eq!(resolved["incident"]["state"], "resolved", "{resolved}");
    assert!(
        resolved["command"]
            .as_str()
            .unwrap()
            .contains("nodeSelector"),
        "the change that held: {resolved}"
    );

    // Once each per URL, the retries and the restart notwithstanding; nothing else was news.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(webhooks(&got, "awaiting_approval").len(), 1);
    assert_eq!(webhooks(&got, "resolved").len(), 1);
    assert_eq!(slack(&got, "Fix awaiting approval").len(), 1);
    assert_eq!(slack(&got, "Incident resolved").len(), 1);
    assert_eq!(got.lock().unwrap().len(), 4, "{:?}", got.lock().unwrap());
}
