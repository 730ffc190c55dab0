//! The crash and OOM families against each kubelet simcluster can play (issue 31): a current kubelet shows a
//! crash-looping container as its last exit (`Error`) between restarts and `CrashLoopBackOff` only at a resync, the
//! classic one `CrashLoopBackOff` from the first back-off; a cgroup v1 node shows an OOM kill as exit 1, cgroup v2 as
//! 137. Each is handled the same: the crash escalated with its exit code and log, the OOM fixed by a higher limit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod support;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use support::{Options, Stack, finished_incident};

/// The kubelets played: the crash timeline and the cgroup version.
const KUBELETS: [[&str; 4]; 3] = [
    ["--kubelet-timeline", "current", "--cgroup", "v2"],
    ["--kubelet-timeline", "classic", "--cgroup", "v2"],
    ["--kubelet-timeline", "current", "--cgroup", "v1"],
];

async fn stack_on(kubelet: [&'static str; 4]) -> Stack {
    Stack::start(Options {
        kubelet_args: kubelet.to_vec(),
        ..Options::default()
    })
    .await
}

e2e_test! {
async fn a_crash_looping_deployment_is_escalated_with_its_exit_code_and_log_on_every_kubelet() {
    for kubelet in KUBELETS.into_iter().take(2) {
        let stack = stack_on(kubelet).await;
        let deployments: Api<Deployment> = Api::namespaced(stack.kube().await, "default");
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "crash-app"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "crash-app"}},
                     "template": {"metadata": {"labels": {"app": "crash-app"}},
                                  "spec": {"containers": [{"name": "crash-app", "image": "busybox",
                                           "args": ["sh", "-c", "echo 'Başladım'; sleep 5; exit 1"]}]}}}
        }))
        .unwrap();
        deployments.create(&PostParams::default(), &d).await.unwrap();
        let detail = finished_incident(&stack).await;
        let outcome = support::escalated(&detail, "crash_loop/exit_1", ("Deployment", "crash-app"));
        assert!(
            outcome.contains("keeps crashing with exit code 1") && outcome.contains("Başladım"),
            "{kubelet:?}: {outcome}"
        );
        assert!(support::audit_commands(&detail).is_empty(), "{kubelet:?}: {detail}");
        assert_eq!(deployments.get("crash-app").await.unwrap().metadata.generation, Some(1));
    }
}
}

e2e_test! {
async fn an_oom_killed_deployment_gets_a_higher_limit_on_every_kubelet() {
    for kubelet in KUBELETS {
        let stack = stack_on(kubelet).await;
        let deployments: Api<Deployment> = Api::namespaced(stack.kube().await, "default");
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "memory-app"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "memory-app"}},
                     "template": {"metadata": {"labels": {"app": "memory-app"}},
                                  "spec": {"containers": [{"name": "memory-app", "image": "polinux/stress:1.0.4",
                                           "args": ["--vm", "1", "--vm-bytes", "300M"],
                                           "resources": {"requests": {"memory": "64Mi"}, "limits": {"memory": "128Mi"}}}]}}}
        }))
        .unwrap();
        deployments.create(&PostParams::default(), &d).await.unwrap();
        let detail = finished_incident(&stack).await;
        assert_eq!(
            (detail["state"].as_str(), detail["signature"].as_str()),
            (Some("resolved"), Some("oom_killed/memory_limit")),
            "{kubelet:?}: {detail}"
        );
        assert_eq!(
            support::audit_commands(&detail),
            ["kubectl set resources deployment/memory-app -c memory-app --limits=memory=384Mi -n default"],
            "{kubelet:?}: {detail}"
        );
        // What the node showed is what was diagnosed: 137 on cgroup v2, 1 on v1.
        let code = if kubelet[3] == "v1" { 1 } else { 137 };
        assert!(
            detail.to_string().contains(&format!("was OOM-killed (exit code {code})")),
            "{kubelet:?}: {detail}"
        );
    }
}
}
