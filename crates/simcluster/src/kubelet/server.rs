//! A fake node's kubelet API: HTTPS with a self-signed certificate, as a real kubelet serves it by default (and as a
//! real API server reaches it: over TLS, without verifying the certificate unless told to). It serves the container
//! logs that `kubectl logs` reaches through the control plane, which proxies `pods/log` here.

use super::logs::{LogQuery, container_logs};
use crate::error::ApiError;
use crate::{Cluster, resources};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum KubeletServerError {
    #[error("generating the kubelet's serving certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("setting up TLS: {0}")]
    Tls(#[from] rustls::Error),
}

fn router(cluster: Cluster) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_log),
        )
        .with_state(cluster)
}

async fn container_log(
    State(c): State<Cluster>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let mut q = LogQuery::from_params(&params);
    q.container = Some(container);
    let result = c
        .store
        .get(resources::pods(), &ns, &pod)
        .and_then(|p| container_logs(&c, &p, &q));
    match result {
        Ok(text) => text.into_response(),
        Err(e) => e.into_response(),
    }
}

/// The TLS configuration of a kubelet that serves a self-signed certificate for `address`.
fn tls(address: &str) -> Result<Arc<rustls::ServerConfig>, KubeletServerError> {
    let cert = rcgen::generate_simple_self_signed(vec![address.to_string(), "localhost".into()])?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)?;
    Ok(Arc::new(config))
}

/// Serve the kubelet API on `listener` until `shutdown` fires.
pub async fn serve(
    cluster: Cluster,
    listener: tokio::net::TcpListener,
    address: &str,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), KubeletServerError> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls(address)?);
    let app = router(cluster);
    loop {
        let (tcp, _) = tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "kubelet API: accept failed");
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
        });
    }
}

/// Where a node's kubelet API is: its InternalIP and the port it registered (`daemonEndpoints`).
fn kubelet_endpoint(node: &Value) -> Option<(String, u64)> {
    let ip = node["status"]["addresses"]
        .as_array()?
        .iter()
        .find(|a| a["type"] == "InternalIP")?["address"]
        .as_str()?
        .to_string();
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64()?;
    Some((ip, port))
}

/// `pods/log` for a pod on another node: the API server asks that node's kubelet, as a real one does.
pub async fn proxy_logs(c: &Cluster, pod: &Value, q: &LogQuery) -> Result<String, ApiError> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let container = q.container(pod)?;
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or_default();
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"
        )));
    }
    let node = c.store.get(resources::nodes(), "", node_name)?;
    let Some((ip, port)) = kubelet_endpoint(&node) else {
        return Err(ApiError::internal(format!(
            "node {node_name} has no kubelet endpoint to ask for the logs of pod {name}"
        )));
    };
    let mut url = format!(
        "https://{ip}:{port}/containerLogs/{ns}/{name}/{container}?previous={}",
        q.previous
    );
    if let Some(t) = q.tail_lines {
        url.push_str(&format!("&tailLines={t}"));
    }
    // A real API server does not verify kubelet serving certificates unless given a CA for them.
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let resp = client
        .get(&url)
        .send()
        .await
        .map_err(|e| ApiError::internal(format!("Get \"{url}\": {e}")))?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if status.is_success() {
        return Ok(text);
    }
    // The kubelet's own error, passed on as it said it.
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["message"].as_str().map(String::from))
        .unwrap_or(text);
    Err(ApiError::bad_request(message))
}
