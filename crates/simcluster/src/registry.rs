//! A read-only OCI distribution endpoint over the image catalog: `GET /v2/` and `GET /v2/<name>/tags/list`,
//! so the product asks "which tags exist" exactly as it would ask a real registry.

use crate::Cluster;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

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
pub async fn tags(
    State(cluster): State<Cluster>,
    Path(rest): Path<String>,
    Query(q): Query<TagsQuery>,
) -> Response {
    let Some(name) = rest.strip_suffix("/tags/list") else {
        return oci_error(
            StatusCode::NOT_FOUND,
            "UNSUPPORTED",
            "only tags/list is served",
            &rest,
        );
    };
    let first = name.split('/').next().unwrap_or_default();
    let key = if first.contains('.') || first.contains(':') || first == "localhost" {
        name.to_string()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
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
