//! The Kubernetes client the binaries use (`reflexion_k8s::client`) must build from a kubeconfig: a graph that
//! mixes rustls crypto providers (kube's `ring` with reqwest's `aws-lc-rs`) panics exactly here, which tests with
//! mock clients never notice.

use kube::config::{KubeConfigOptions, Kubeconfig};

fn client_from(yaml: &str) -> Result<kube::Client, String> {
    let kubeconfig = Kubeconfig::from_yaml(yaml).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| e.to_string())?;
        reflexion_k8s::client::client(config).map_err(|e| e.to_string())
    })
}

const KUBECONFIG: &str = "apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: SERVER
contexts:
- name: c
  context: {cluster: c, user: u}
current-context: c
users:
- name: u
  user: {token: abc}
";

#[test]
fn builds_a_tls_client_from_a_kubeconfig() {
    let yaml = KUBECONFIG.replace("SERVER", "https://127.0.0.1:6443");
    assert!(client_from(&yaml).is_ok());
}

#[test]
fn builds_a_plain_http_client_from_a_kubeconfig() {
    let yaml = KUBECONFIG.replace("SERVER", "http://127.0.0.1:6443");
    assert!(client_from(&yaml).is_ok());
}
