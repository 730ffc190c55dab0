//! The Git route and the live route make the same change. For each typed action, one Deployment is fixed live by
//! the executor (`Cluster::compile` + `apply`, the product's own write) and a twin is created from the manifest as
//! the Git route edits it (`kustomize::plan`, the product's own edit); the API server stores both, defaults
//! included, and their pod templates must be equal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};
use reflexion_api::cluster::Cluster;
use reflexion_core::gitops::kustomize::{MemTree, Target, plan};
use reflexion_core::owner::{WorkloadKind, WorkloadRef};
use reflexion_core::{Action, EnvSource, ProbeHandler, ProbeKind};
use std::collections::BTreeMap;
use support::{Options, Stack};

/// A Deployment with something for every action to change; no replicas, so that the twins run no pods.
fn manifest(name: &str) -> String {
    format!(
        "# The web tier.\n\
         apiVersion: apps/v1\n\
         kind: Deployment\n\
         metadata:\n  name: {name}\n  namespace: default\n\
         spec:\n  replicas: 0\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n\
         \x20   spec:\n      nodeSelector:\n        disktype: nvme # no node has it\n        kubernetes.io/os: linux\n      containers:\n\
         \x20     - name: web\n        image: \"nginx:1.27.O\"\n        command: [nginx-debug]\n        args:\n          - -g\n          - daemon off;\n\
         \x20       livenessProbe:\n          httpGet: {{path: /healthz, port: 8080, scheme: HTTP}}\n          periodSeconds: 5\n\
         \x20       resources:\n          limits: {{memory: 64Mi}}\n"
    )
}

fn cases(target: &WorkloadRef) -> Vec<Action> {
    let t = || target.clone();
    let c = || "web".to_string();
    vec![
        Action::SetImage {
            target: t(),
            container: c(),
            image: "nginx:1.27.3".into(),
        },
        Action::SetResources {
            target: t(),
            container: c(),
            memory_limit: "128Mi".into(),
            memory_request: Some("96Mi".into()),
        },
        Action::SetEnv {
            target: t(),
            container: c(),
            name: "TOKEN".into(),
            from: EnvSource::SecretKey {
                name: "web".into(),
                key: "token".into(),
            },
        },
        Action::SetProbe {
            target: t(),
            container: c(),
            probe: ProbeKind::Liveness,
            handler: ProbeHandler::HttpGet {
                path: "/".into(),
                port: 80,
            },
        },
        Action::SetProbe {
            target: t(),
            container: c(),
            probe: ProbeKind::Liveness,
            handler: ProbeHandler::TcpSocket { port: 80 },
        },
        Action::SetProbe {
            target: t(),
            container: c(),
            probe: ProbeKind::Readiness,
            handler: ProbeHandler::TcpSocket { port: 80 },
        },
        Action::SetRequests {
            target: t(),
            container: c(),
            memory: Some("32Mi".into()),
            cpu: Some("100m".into()),
        },
        Action::SetNodeSelector {
            target: t(),
            remove: vec!["disktype".into()],
            set: BTreeMap::new(),
        },
        Action::SetNodeSelector {
            target: t(),
            remove: vec![],
            set: BTreeMap::from([("disktype".to_string(), "ssd".to_string())]),
        },
        Action::SetNodeSelector {
            target: t(),
            remove: vec!["disktype".into(), "kubernetes.io/os".into()],
            set: BTreeMap::new(),
        },
        Action::DropCommand {
            target: t(),
            container: c(),
        },
    ]
}

fn retarget(action: &Action, to: &WorkloadRef) -> Action {
    let mut v = serde_json::to_value(action).unwrap();
    v["target"] = serde_json::to_value(to).unwrap();
    serde_json::from_value(v).unwrap()
}

async fn create(api: &Api<Deployment>, yaml: &str) {
    let d: Deployment = serde_yaml::from_str(yaml).unwrap();
    api.create(&PostParams::default(), &d).await.unwrap();
}

/// The stored pod template's spec, with the container's name-derived labels out of the way.
async fn template(api: &Api<Deployment>, name: &str) -> serde_json::Value {
    let d = api.get(name).await.unwrap();
    serde_json::to_value(d.spec.unwrap().template.spec.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_makes_the_same_object_live_and_through_git() {
    let stack = Stack::start(Options {
        watcher: false,
        ..Options::default()
    })
    .await;
    let client = stack.kube().await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let cluster = Cluster::new(client);
    let proto = WorkloadRef::new(WorkloadKind::Deployment, "default", "x");
    let mut failures = Vec::new();
    for (i, action) in cases(&proto).into_iter().enumerate() {
        let (live, git) = (format!("live-{i}"), format!("git-{i}"));
        // Live: the executor's own write.
        create(&api, &manifest(&live)).await;
        let before = template(&api, &live).await;
        let live_ref = WorkloadRef::new(WorkloadKind::Deployment, "default", &live);
        let change = cluster
            .compile(&retarget(&action, &live_ref), "test")
            .await
            .unwrap();
        cluster.apply(change).await.unwrap();
        // Git: the route's own edit of the manifest, created as the controller would apply it.
        let git_ref = WorkloadRef::new(WorkloadKind::Deployment, "default", &git);
        let tree = MemTree(BTreeMap::from([(
            "apps/web.yaml".to_string(),
            manifest(&git),
        )]));
        let target = Target {
            kind: WorkloadKind::Deployment,
            namespace: "default".into(),
            name: git.clone(),
        };
        let edits = plan(&tree, "apps", &target, &retarget(&action, &git_ref)).unwrap();
        assert_eq!(edits.len(), 1, "{action:?}");
        create(&api, &edits[0].after).await;
        let (l, g) = (template(&api, &live).await, template(&api, &git).await);
        assert_ne!(
            l,
            before,
            "{}: the live write changed nothing",
            action.render()
        );
        if l != g {
            failures.push(format!("{}:\n  live {l}\n  git  {g}", action.render()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
