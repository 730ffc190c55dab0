//! What an image runs by default, read from a registry as a runtime reads it: a multi-platform index resolved to
//! linux/amd64, that manifest's config blob checked against its digest, and an anonymous bearer token when the
//! registry asks for one. The registry here is a small OCI server on loopback with Docker Hub's shapes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use reflexion_api::registry::{Registry, RegistryError};
use reflexion_core::image::ImageRef;
use serde_json::json;
use sha2::{Digest, Sha256};

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn config(cmd: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": cmd}}))
        .unwrap()
}

async fn serve(headers: HeaderMap, Path(rest): Path<String>) -> Response {
    // Docker Hub's challenge: no token, 401 with where to get one.
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer t0k") {
        return (
            StatusCode::UNAUTHORIZED,
            [(
                "www-authenticate",
                format!(r#"Bearer realm="http://{}/token",service="test",scope="repository:{rest}:pull""#,
                    headers["host"].to_str().unwrap()),
            )],
        )
            .into_response();
    }
    let amd = config(&["/usr/bin/app", "serve"]);
    let arm = config(&["/usr/bin/app-arm"]);
    let manifest = |c: &[u8]| {
        json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
               "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(c), "size": c.len()},
               "layers": []})
        .to_string()
    };
    let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"digest": digest(manifest(&arm).as_bytes()), "platform": {"os": "linux", "architecture": "arm64"}},
        {"digest": digest(manifest(&amd).as_bytes()), "platform": {"os": "linux", "architecture": "amd64"}}
    ]});
    let tampered = manifest(&config(&["sh"])).replace(&digest(&config(&["sh"])), &digest(&amd));
    match rest.as_str() {
        "library/app/manifests/1.0" => index.to_string().into_response(),
        r if r
            == format!(
                "library/app/manifests/{}",
                digest(manifest(&amd).as_bytes())
            ) =>
        {
            manifest(&amd).into_response()
        }
        r if r
            == format!(
                "library/app/manifests/{}",
                digest(manifest(&arm).as_bytes())
            ) =>
        {
            manifest(&arm).into_response()
        }
        r if r == format!("library/app/blobs/{}", digest(&amd)) => amd.into_response(),
        r if r == format!("library/app/blobs/{}", digest(&arm)) => arm.into_response(),
        // A manifest that names the amd64 config's digest, and a blob that is something else.
        "library/lying/manifests/1.0" => tampered.into_response(),
        r if r == format!("library/lying/blobs/{}", digest(&amd)) => {
            config(&["sh"]).into_response()
        }
        _ => (StatusCode::NOT_FOUND, "{}").into_response(),
    }
}

#[tokio::test]
async fn an_image_index_is_resolved_to_linux_amd64_and_its_config_is_checked_against_its_digest() {
    let app = Router::new()
        .route(
            "/token",
            get(|| async { axum::Json(json!({"token": "t0k"})) }),
        )
        .route("/v2/{*rest}", get(serve));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let registry = Registry::new(reqwest::Client::new(), Some(url));
    let image = |r: &str| ImageRef::parse(r).unwrap();

    let p = registry.default_process(&image("app:1.0")).await.unwrap();
    assert_eq!(p.argv(), ["/usr/bin/app", "serve"]);
    assert!(!p.runs_nothing());

    let lying = registry.default_process(&image("lying:1.0")).await;
    assert!(
        matches!(&lying, Err(RegistryError::Invalid { reason, .. }) if reason.contains("does not match its digest")),
        "{lying:?}"
    );
    let missing = registry.default_process(&image("app:2.0")).await;
    assert!(
        matches!(missing, Err(RegistryError::NotFound(_))),
        "{missing:?}"
    );
}
