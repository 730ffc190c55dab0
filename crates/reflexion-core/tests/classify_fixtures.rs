//! Classification against realistic pod objects (as `kubectl get pod -o json` shows them) and their events: every
//! waiting reason, OOM kills in state and lastState, init containers, Pending, evictions and readiness failures,
//! and the precedence between them. Every crash and OOM fixture also comes as a current kubelet shows it (the last
//! exit as `terminated` between restarts, not `CrashLoopBackOff`) and as a cgroup v1 node shows an OOM kill (exit 1),
//! and classifies the same.

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

#[test]
fn crash_and_oom_fixtures_come_in_every_kubelets_form_and_classify_the_same() {
    let cases: Vec<Value> = serde_json::from_str(include_str!("fixtures/pods.json")).unwrap();
    let by_name = |n: &str| cases.iter().find(|c| c["name"] == n).unwrap();
    for case in &cases {
        let kind = case["expect"]["kind"].as_str().unwrap_or_default();
        let name = case["name"].as_str().unwrap();
        if case["expect"]["init_container"] == true || case.get("twin_of").is_some() {
            continue;
        }
        let restarts = case["pod"]["spec"]["restartPolicy"] != "Never";
        let wanted: Vec<String> = match kind {
            "crash_loop" if restarts => vec![format!("{name}@current_kubelet")],
            "oom_killed" if restarts => vec![
                format!("{name}@current_kubelet"),
                format!("{name}@cgroup_v1"),
                format!("{name}@current_kubelet@cgroup_v1"),
            ],
            "oom_killed" => vec![format!("{name}@cgroup_v1")],
            _ => continue,
        };
        for twin in wanted {
            let t = by_name(&twin);
            assert_eq!(t["twin_of"], name, "{twin}");
            // The same family and signature; only the reason (CrashLoopBackOff or Error) and an OOM's exit code
            // say which kubelet it was.
            for k in ["kind", "signature", "container"] {
                assert_eq!(t["expect"][k], case["expect"][k], "{twin}: {k}");
            }
        }
    }
}
