//! RBAC denials: a Deployment whose program lists pods with a ServiceAccount its Role does not allow to crash-loops
//! with the API server's 403 in its log (simcluster authorizes the pod's own token). The product waits for approval
//! with exactly one Role rule; once approved, a SubjectAccessReview and the pod's recovery verify it, and the
//! account still may not list pods anywhere else.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::rbac::v1::Role;
use kube::Api;
use kube::api::PostParams;
use support::{Options, Stack, awaiting_approval, finished_incident};

const REPORTER: &str = "
apiVersion: v1
kind: ServiceAccount
metadata: {name: lister}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: lister}
rules: [{apiGroups: [''], resources: [pods], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: lister}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: lister}
subjects: [{kind: ServiceAccount, name: lister, namespace: default}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reporter}
spec:
  selector: {matchLabels: {app: reporter}}
  template:
    metadata: {labels: {app: reporter}}
    spec:
      serviceAccountName: lister
      containers: [{name: reporter, image: 'kubereflexion/pod-reporter:1.0.0'}]
";

/// Whether the API server lets the account list pods in `namespace` (`None`: across all namespaces, as
/// `kubectl auth can-i list pods -A` asks).
async fn may_list_pods(client: &kube::Client, namespace: Option<&str>) -> bool {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some("system:serviceaccount:default:lister".into()),
            resource_attributes: Some(ResourceAttributes {
                namespace: namespace.map(String::from),
                verb: Some("list".into()),
                resource: Some("pods".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap()
        .status
        .unwrap()
        .allowed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_refused_by_rbac_waits_for_approval_of_one_role_rule_then_recovers() {
    let stack = Stack::start(Options::default()).await;
    let client = stack.kube().await;
    stack.create_all(REPORTER).await;
    let waiting = awaiting_approval(&stack).await;
    assert_eq!(
        waiting["pending_plan"]["command"],
        r#"kubectl patch role/lister -n default --type=json -p '[{"op":"add","path":"/rules/-","value":{"apiGroups":[""],"resources":["pods"],"verbs":["list"]}}]'"#,
        "{waiting}"
    );
    let roles: Api<Role> = Api::namespaced(client.clone(), "default");
    let rules = |r: Role| serde_json::to_value(r.rules.unwrap_or_default()).unwrap();
    assert_eq!(
        rules(roles.get("lister").await.unwrap())
            .as_array()
            .unwrap()
            .len(),
        1,
        "nothing changes before approval"
    );
    assert!(!may_list_pods(&client, Some("default")).await);
    stack.approve(&waiting).await;
    let done = finished_incident(&stack).await;
    assert_eq!(done["state"], "resolved", "{done}");
    let outcome = done["outcome"].as_str().unwrap();
    assert!(
        outcome.contains(
            "SubjectAccessReview: system:serviceaccount:default:lister may list pods in default"
        ),
        "{outcome}"
    );
    assert_eq!(
        rules(roles.get("lister").await.unwrap()),
        serde_json::json!([
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}
        ]),
        "exactly one rule added"
    );
    assert!(may_list_pods(&client, Some("default")).await);
    assert!(
        !may_list_pods(&client, None).await,
        "still no across all namespaces"
    );
}
