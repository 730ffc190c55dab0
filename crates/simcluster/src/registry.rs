//! A read-only OCI distribution endpoint over the image catalog: `GET /v2/`, `GET /v2/<name>/tags/list`,
//! `GET /v2/<name>/manifests/<tag>` (an OCI image manifest whose config is the image's ENTRYPOINT and CMD) and
//! `GET /v2/<name>/blobs/<digest>` (that config), so the product asks "which tags exist" and "what does this image
//! run" exactly as it would ask a real registry.

use crate::Cluster;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";

const API_VERSION: (&str, &str) = ("docker-distribution-api-version", "registry/2.0");

pub async fn base() -> Response {
    ([API_VERSION], Json(json!({}))).into_response()
}

#[derive(Deserialize)]
pub struct TagsQuery {
    n: Option<usize>,
    last: Option<String>,
}

/// `name` is the repository as a client of that registry names it: `library/nginx` (or `nginx`) for Docker Hub,
/// `ghcr.io/org/app` for any other registry this catalog mirrors.
pub async fn serve(
    State(cluster): State<Cluster>,
    Path(rest): Path<String>,
    Query(q): Query<TagsQuery>,
) -> Response {
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return tags(&cluster, name, q);
    }
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        return manifest(&cluster, name, reference);
    }
    if let Some((name, digest)) = rest.rsplit_once("/blobs/") {
        return blob(&cluster, name, digest);
    }
    oci_error(
        StatusCode::NOT_FOUND,
        "UNSUPPORTED",
        "only tags/list, manifests and blobs are served",
        &rest,
    )
}

/// The catalog's key for a repository name as a registry client writes it.
fn catalog_key(name: &str) -> String {
    let first = name.split('/').next().unwrap_or_default();
    if first.contains('.') || first.contains(':') || first == "localhost" {
        name.to_string()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    }
}

/// The image's config blob: what it runs by default. Every tag of a repository shares it, except that a tag with
/// `alpine` in it is another base (which the config does not show).
fn config_blob(cluster: &Cluster, key: &str) -> Vec<u8> {
    let b = cluster
        .catalog
        .repositories
        .get(key)
        .map(|r| r.behaviour.clone())
        .unwrap_or_default();
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": (!b.entrypoint.is_empty()).then_some(&b.entrypoint),
                   "Cmd": (!b.cmd.is_empty()).then_some(&b.cmd)},
        "rootfs": {"type": "layers", "diff_ids": []}
    });
    serde_json::to_vec(&config).unwrap_or_default()
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn manifest(cluster: &Cluster, name: &str, reference: &str) -> Response {
    let key = catalog_key(name);
    let known = cluster.catalog.tags(&key).is_some_and(|tags| {
        tags.iter().any(|t| t == reference) || reference.starts_with("sha256:")
    });
    if !known {
        return oci_error(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            "manifest unknown",
            name,
        );
    }
    let config = config_blob(cluster, &key);
    let body = json!({
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": sha256(&config), "size": config.len()},
        "layers": []
    });
    (
        [API_VERSION, ("content-type", MANIFEST_TYPE)],
        serde_json::to_vec(&body).unwrap_or_default(),
    )
        .into_response()
}

fn blob(cluster: &Cluster, name: &str, digest: &str) -> Response {
    let key = catalog_key(name);
    let config = config_blob(cluster, &key);
    if cluster.catalog.tags(&key).is_none() || sha256(&config) != digest {
        return oci_error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", "blob unknown", name);
    }
    (
        [API_VERSION, ("content-type", "application/octet-stream")],
        config,
    )
        .into_response()
}

fn tags(cluster: &Cluster, name: &str, q: TagsQuery) -> Response {
    let key = catalog_key(name);
    let Some(all) = cluster.catalog.tags(&key) else {
        return oci_error(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            "repository name not known to registry",
            name,
        );
    };
    let mut sorted: Vec<&String> = all.iter().collect();
    sorted.sort();
    let start = q
        .last
        .as_ref()
        .map(|l| sorted.partition_point(|t| *t <= l))
        .unwrap_or(0);
    let n = q.n.unwrap_or(usize::MAX).min(1000);
    let page: Vec<&String> = sorted.iter().skip(start).take(n).copied().collect();
    let mut headers = HeaderMap::new();
    headers.insert(API_VERSION.0, HeaderValue::from_static(API_VERSION.1));
    if start + page.len() < sorted.len()
        && let Some(last) = page.last()
    {
        let link = format!("</v2/{name}/tags/list?n={n}&last={last}>; rel=\"next\"");
        if let Ok(v) = HeaderValue::from_str(&link) {
            headers.insert("link", v);
        }
    }
    (headers, Json(json!({"name": name, "tags": page}))).into_response()
}

fn oci_error(status: StatusCode, code: &str, message: &str, name: &str) -> Response {
    (
        status,
        [API_VERSION],
        Json(json!({"errors": [{"code": code, "message": message, "detail": {"name": name}}]})),
    )
        .into_response()
}
