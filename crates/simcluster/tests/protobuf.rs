//! Protobuf request bodies: objects encoded with the Kubernetes protobuf messages (kube-rs's k8s-pb), the way Go
//! clients such as kubectl encode them (every non-pointer field written, zero or not), are read into the JSON a client
//! would have sent — through the real simcluster binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::Value;

/// `k8s\0` + runtime.Unknown{typeMeta, raw}, as the API machinery frames a protobuf body.
fn envelope(api_version: &str, kind: &str, obj: &impl Message) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(obj.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    [b"k8s\0".as_slice(), &unknown.encode_to_vec()].concat()
}

/// ObjectMeta as Go writes it for a new object: every string field, generation 0, the zero creationTimestamp.
fn meta(name: &str, labels: &[(&str, &str)]) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: Some(name.into()),
        generate_name: Some(String::new()),
        namespace: Some(String::new()),
        self_link: Some(String::new()),
        uid: Some(String::new()),
        resource_version: Some(String::new()),
        generation: Some(0),
        creation_timestamp: Some(meta::Time::default()),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

async fn post(sim: &common::Sim, path: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", sim.url))
        .header("Content-Type", "application/vnd.kubernetes.protobuf")
        .header(
            "Accept",
            "application/vnd.kubernetes.protobuf,application/json",
        )
        .body(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_sent_as_protobuf_are_stored_as_their_json() {
    let sim = common::start().await;
    let container = core::Container {
        name: Some("web".into()),
        image: Some("nginx:1.27".into()),
        working_dir: Some(String::new()),
        image_pull_policy: Some(String::new()),
        stdin: Some(false),
        tty: Some(false),
        ports: vec![core::ContainerPort {
            container_port: Some(80),
            protocol: Some("TCP".into()),
            host_port: Some(0),
            name: Some(String::new()),
            host_ip: Some(String::new()),
        }],
        resources: Some(core::ResourceRequirements {
            limits: [(
                "memory".to_string(),
                Quantity {
                    string: Some("256Mi".into()),
                },
            )]
            .into(),
            ..Default::default()
        }),
        liveness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                http_get: Some(core::HttpGetAction {
                    path: Some("/".into()),
                    port: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(80),
                        str_val: Some(String::new()),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            period_seconds: Some(5),
            ..Default::default()
        }),
        env: vec![core::EnvVar {
            name: Some("DB".into()),
            value: Some(String::new()),
            value_from: Some(core::EnvVarSource {
                config_map_key_ref: Some(core::ConfigMapKeySelector {
                    local_object_reference: Some(core::LocalObjectReference {
                        name: Some("cfg".into()),
                    }),
                    key: Some("url".into()),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
        }],
        ..Default::default()
    };
    let deployment = apps::Deployment {
        metadata: Some(meta("web", &[("app", "web")])),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            selector: Some(meta::LabelSelector {
                match_labels: [("app".to_string(), "web".to_string())].into(),
                ..Default::default()
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta("", &[("app", "web")])),
                spec: Some(core::PodSpec {
                    containers: vec![container],
                    restart_policy: Some(String::new()),
                    host_network: Some(false),
                    volumes: vec![core::Volume {
                        name: Some("scratch".into()),
                        volume_source: Some(core::VolumeSource {
                            empty_dir: Some(core::EmptyDirVolumeSource {
                                medium: Some("Memory".into()),
                                size_limit: None,
                            }),
                            ..Default::default()
                        }),
                    }],
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy::default()),
            min_ready_seconds: Some(0),
            paused: Some(false),
            ..Default::default()
        }),
        status: Some(apps::DeploymentStatus::default()),
    };
    let (code, created) = post(
        &sim,
        "/apis/apps/v1/namespaces/default/deployments",
        envelope("apps/v1", "Deployment", &deployment),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    let d: Deployment = serde_json::from_value(created.clone()).unwrap();
    let spec = d.spec.unwrap();
    assert_eq!(spec.replicas, Some(0), "an explicit zero is kept");
    // `strategy: {}` is defaulted as a real API server does; zero non-pointer fields are not shown.
    assert_eq!(
        created["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
        "25%"
    );
    assert!(
        created["spec"].get("paused").is_none() && created["spec"].get("minReadySeconds").is_none()
    );
    let pod = spec.template.spec.unwrap();
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("nginx:1.27"));
    assert_eq!(
        c.image_pull_policy.as_deref(),
        Some("IfNotPresent"),
        "empty string defaulted"
    );
    assert_eq!(
        c.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"].0,
        "256Mi"
    );
    let probe = created["spec"]["template"]["spec"]["containers"][0]["livenessProbe"].clone();
    assert_eq!(probe["httpGet"]["port"], 80, "{probe}");
    assert_eq!(probe["periodSeconds"], 5);
    assert_eq!(
        created["spec"]["template"]["spec"]["containers"][0]["env"][0]["valueFrom"]["configMapKeyRef"],
        serde_json::json!({"name": "cfg", "key": "url", "optional": false})
    );
    assert_eq!(
        created["spec"]["template"]["spec"]["volumes"][0],
        serde_json::json!({"name": "scratch", "emptyDir": {"medium": "Memory"}})
    );
    assert!(
        created["spec"]["template"]["spec"]["containers"][0]["ports"][0]
            .get("hostPort")
            .is_none()
    );
    assert!(
        created["metadata"]["creationTimestamp"].is_string(),
        "the server's, not the zero time"
    );

    let secret = core::Secret {
        metadata: Some(meta("creds", &[])),
        data: [("password".to_string(), b"s3cr3t".to_vec())].into(),
        r#type: Some("Opaque".into()),
        ..Default::default()
    };
    let (code, created) = post(
        &sim,
        "/api/v1/namespaces/default/secrets",
        envelope("v1", "Secret", &secret),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    let s: Secret = serde_json::from_value(created).unwrap();
    assert_eq!(s.data.unwrap()["password"].0, b"s3cr3t");

    let service = core::Service {
        metadata: Some(meta("web", &[])),
        spec: Some(core::ServiceSpec {
            ports: vec![core::ServicePort {
                name: Some("80-8080".into()),
                protocol: Some("TCP".into()),
                port: Some(80),
                target_port: Some(IntOrString {
                    r#type: Some(1),
                    int_val: Some(0),
                    str_val: Some("http".into()),
                }),
                node_port: Some(0),
                ..Default::default()
            }],
            selector: [("app".to_string(), "web".to_string())].into(),
            r#type: Some("ClusterIP".into()),
            ..Default::default()
        }),
        status: Some(core::ServiceStatus::default()),
    };
    let (code, created) = post(
        &sim,
        "/api/v1/namespaces/default/services",
        envelope("v1", "Service", &service),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    let svc: Service = serde_json::from_value(created).unwrap();
    let port = &svc.spec.unwrap().ports.unwrap()[0];
    assert_eq!(
        (port.port, port.target_port.clone()),
        (
            80,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("http".into()))
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_bodies_that_cannot_be_read_get_precise_errors() {
    let sim = common::start().await;
    let widget = meta::Status::default();
    let (code, body) = post(
        &sim,
        "/api/v1/namespaces/default/pods",
        envelope("example.com/v1", "Widget", &widget),
    )
    .await;
    assert_eq!(code, 415, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Widget (example.com/v1)"),
        "{body}"
    );
    let (code, body) = post(
        &sim,
        "/api/v1/namespaces/default/pods",
        b"k8s\0\x0a\xff".to_vec(),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = post(&sim, "/api/v1/namespaces/default/pods", b"{}".to_vec()).await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (400, Some("BadRequest")),
        "{body}"
    );
    // Answers are JSON; a client that takes only protobuf is told so.
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/namespaces/default/pods", sim.url))
        .header("Accept", "application/vnd.kubernetes.protobuf")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 406);
}
