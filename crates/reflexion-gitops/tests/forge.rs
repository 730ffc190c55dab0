//! The forge clients against test servers speaking the documented APIs: GitLab's merge requests (project by its
//! URL-encoded path, `PRIVATE-TOKEN`), GitHub's pulls (bearer token, API version header); answers that are not
//! what the API documents are refused, never used.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post, put};
use reflexion_gitops::forge::{Forge, ForgeKind, PrState};
use reflexion_gitops::git::Secret;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn header(h: &HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn gitlab_merge_requests_are_opened_merged_read_and_closed() {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route(
            "/api/v4/projects/{project}/merge_requests",
            post(|State(s): State<Seen>, Path(p): Path<String>, h: HeaderMap, Json(b): Json<Value>| async move {
                s.lock().unwrap().push((format!("POST {p}"), header(&h, "private-token"), b));
                Json(json!({"iid": 7, "web_url": "https://gitlab.example.com/platform/apps/-/merge_requests/7"}))
            }),
        )
        .route(
            "/api/v4/projects/{project}/merge_requests/{iid}/merge",
            put(|State(s): State<Seen>, Path((p, iid)): Path<(String, u64)>, h: HeaderMap, Json(b): Json<Value>| async move {
                s.lock().unwrap().push((format!("MERGE {p} {iid}"), header(&h, "private-token"), b));
                Json(json!({"state": "merged", "merge_commit_sha": "0123456789abcdef0123456789abcdef01234567"}))
            }),
        )
        .route(
            "/api/v4/projects/{project}/merge_requests/{iid}",
            get(|Path((_p, iid)): Path<(String, u64)>| async move {
                Json(if iid == 7 {
                    json!({"state": "merged", "merge_commit_sha": "0123456789abcdef0123456789abcdef01234567"})
                } else {
                    json!({"state": "closed"})
                })
            })
            .put(|State(s): State<Seen>, Path((p, iid)): Path<(String, u64)>, Json(b): Json<Value>| async move {
                s.lock().unwrap().push((format!("PUT {p} {iid}"), String::new(), b));
                Json(json!({"state": "closed"}))
            }),
        )
        .with_state(seen.clone());
    let base = format!("{}/api/v4", serve(app).await);
    let forge = Forge::new(ForgeKind::Gitlab, &base, Some(Secret::new("glpat-test"))).unwrap();
    let url = "ssh://git@gitlab.example.com/platform/apps.git";
    let mr = forge
        .open(url, "kube-reflexion/abc", "main", "fix web", "body")
        .await
        .unwrap();
    assert_eq!(mr.number, 7);
    assert_eq!(
        mr.url,
        "https://gitlab.example.com/platform/apps/-/merge_requests/7"
    );
    let sha = forge
        .merge(url, 7, "fedcba9876543210fedcba9876543210fedcba98")
        .await
        .unwrap();
    assert_eq!(sha, "0123456789abcdef0123456789abcdef01234567");
    assert_eq!(
        forge.state(url, 7).await.unwrap(),
        PrState::Merged(sha.clone())
    );
    assert_eq!(forge.state(url, 8).await.unwrap(), PrState::Closed);
    forge.close(url, 8).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0].0, "POST platform/apps");
    assert_eq!(seen[0].1, "glpat-test");
    assert_eq!(
        seen[0].2,
        json!({"title": "fix web", "source_branch": "kube-reflexion/abc", "target_branch": "main", "description": "body"})
    );
    assert_eq!(seen[1].0, "MERGE platform/apps 7");
    assert_eq!(
        seen[1].2,
        json!({"sha": "fedcba9876543210fedcba9876543210fedcba98"})
    );
    assert_eq!(
        seen[2],
        (
            "PUT platform/apps 8".to_string(),
            String::new(),
            json!({"state_event": "close"})
        )
    );
}

#[tokio::test]
async fn answers_that_are_not_what_the_api_documents_are_refused() {
    let app = axum::Router::new()
        .route(
            "/repos/{o}/{r}/pulls",
            post(|h: HeaderMap| async move {
                assert_eq!(header(&h, "authorization"), "Bearer ghp_x");
                assert_eq!(header(&h, "x-github-api-version"), "2022-11-28");
                // A link that is not a web address: never shown to a person.
                Json(json!({"number": 3, "html_url": "javascript:alert(1)"}))
            }),
        )
        .route(
            "/repos/{o}/{r}/pulls/{n}/merge",
            put(|| async { Json(json!({"merged": true, "sha": "not-a-sha"})) }),
        )
        .route(
            "/repos/{o}/{r}/pulls/{n}",
            get(|| async {
                (
                    axum::http::StatusCode::NOT_FOUND,
                    Json(json!({"message": "Not Found"})),
                )
            }),
        );
    let base = serve(app).await;
    let forge = Forge::new(ForgeKind::Github, &base, Some(Secret::new("ghp_x"))).unwrap();
    let url = "https://github.com/acme/apps.git";
    assert!(
        forge
            .open(url, "h", "main", "t", "b")
            .await
            .unwrap_err()
            .to_string()
            .contains("no link")
    );
    assert!(
        forge
            .merge(url, 3, "x")
            .await
            .unwrap_err()
            .to_string()
            .contains("no commit")
    );
    let e = forge.state(url, 3).await.unwrap_err().to_string();
    assert!(e.contains("404") && e.contains("Not Found"), "{e}");
    assert!(
        forge
            .open("https://github.com/nope", "h", "main", "t", "b")
            .await
            .is_err()
    );
}
