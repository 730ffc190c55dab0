//! Classification against realistic pod objects (as `kubectl get pod -o json` shows them) and their events: every
//! waiting reason, OOM kills in state and lastState, init containers, Pending, evictions and readiness failures,
//! and the precedence between them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::core::v1::Pod;
use reflexion_core::classify::PodEvent;
use reflexion_core::{Signature, classify};
use serde_json::Value;

#[test]
fn every_fixture_classifies_as_expected() {
    let cases: Vec<Value> = serde_json::from_str(include_str!("fixtures/pods.json")).unwrap();
    assert!(cases.len() >= 25);
    let mut failures = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let pod: Pod = serde_json::from_value(case["pod"].clone())
            .unwrap_or_else(|e| panic!("{name}: fixture is not a Pod: {e}"));
        let events: Vec<PodEvent> = serde_json::from_value(case["events"].clone()).unwrap();
        let got = classify(&pod, &events);
        let want = &case["expect"];
        let got_view = got.as_ref().map(|f| {
            serde_json::json!({
                "kind": f.kind, "reason": f.reason, "container": f.container,
                "init_container": f.init_container, "exit_code": f.exit_code,
                "signature": Signature::of(f).class(),
            })
        });
        let matches = match (want.is_null(), &got_view) {
            (true, None) => true,
            (false, Some(g)) => {
                want.as_object().unwrap().iter().all(|(k, v)| g[k] == *v)
                    && (want.get("init_container").is_some() || g["init_container"] == false)
            }
            _ => false,
        };
        if !matches {
            failures.push(format!("{name}: want {want}, got {got_view:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
