//! The client both binaries use is kube-rs's stack rebuilt over a TCP_NODELAY connector: it must still send what
//! kube-rs sends (the server's path prefix, the kubeconfig's bearer token, the body) and read the answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 exchange: the request as text, answered with `answer` (JSON).
async fn answer_once(listener: tokio::net::TcpListener, answer: String) -> String {
    let (mut tcp, _) = listener.accept().await.unwrap();
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tcp.read(&mut buf).await.unwrap();
        request.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&request).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(String::from)
                })
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                break;
            }
        }
        assert!(n > 0, "connection closed mid-request: {text}");
    }
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
        answer.len()
    );
    tcp.write_all(response.as_bytes()).await.unwrap();
    String::from_utf8_lossy(&request).to_string()
}

#[tokio::test]
async fn a_patch_carries_the_prefix_the_token_and_the_body_and_its_answer_is_read() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "7"},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}});
    let server = tokio::spawn(answer_once(listener, pod.to_string()));
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: 'http://127.0.0.1:{port}/prefix'}}\n\
         contexts:\n- name: c\n  context: {{cluster: c, user: u, namespace: shop}}\ncurrent-context: c\n\
         users:\n- name: u\n  user: {{token: secret-token}}\n"
    );
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::from_yaml(&yaml).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = reflexion_k8s::client::client(config).unwrap();
    let pods: Api<Pod> = Api::default_namespaced(client);
    let patched = pods
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"containers": [{"name": "app", "image": "nginx:1.28"}]}})),
        )
        .await
        .unwrap();
    let request = server.await.unwrap();
    assert!(
        request.starts_with("PATCH /prefix/api/v1/namespaces/shop/pods/web?"),
        "{request}"
    );
    assert!(
        request
            .to_ascii_lowercase()
            .contains("authorization: bearer secret-token"),
        "{request}"
    );
    assert!(
        request.ends_with(r#"{"spec":{"containers":[{"image":"nginx:1.28","name":"app"}]}}"#),
        "{request}"
    );
    assert_eq!(patched.metadata.resource_version.as_deref(), Some("7"));
}
