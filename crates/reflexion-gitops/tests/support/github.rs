//! A test server speaking the part of GitHub's REST API kube-reflexion uses (pulls: create, get, merge, close), over
//! real bare repositories: a merge is a real `git merge --no-ff` pushed to the base branch, as GitHub makes it. No
//! forge runs here; this stands in for one, and the README says so.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct Pr {
    pub number: u64,
    pub head: String,
    pub base: String,
    pub title: String,
    pub body: String,
    pub state: String,
    pub merged: bool,
    pub merge_sha: Option<String>,
}

#[derive(Default)]
pub struct Inner {
    /// `owner/repo` -> the bare repository.
    pub repos: HashMap<String, PathBuf>,
    pub pulls: Vec<(String, Pr)>,
    pub token: String,
    /// Every request's `Authorization` header, to check no other credential was sent.
    pub auth_seen: Vec<String>,
    /// While set, reading a pull request answers from this earlier state: what a person did since is not yet seen
    /// by the product's polls (its next look comes after the controller has synced).
    pub stale: Option<Vec<(String, Pr)>>,
}

#[derive(Clone)]
pub struct Github {
    pub url: String,
    pub inner: Arc<Mutex<Inner>>,
}

impl Github {
    pub fn pulls(&self) -> Vec<Pr> {
        self.inner
            .lock()
            .unwrap()
            .pulls
            .iter()
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// From now until `answer_live`, reads of pull requests answer as of now.
    pub fn answer_as_now(&self) {
        let mut inner = self.inner.lock().unwrap();
        inner.stale = Some(inner.pulls.clone());
    }

    pub fn answer_live(&self) {
        self.inner.lock().unwrap().stale = None;
    }

    /// Merge a pull request as a person would on the forge's page.
    pub fn merge_by_hand(&self, number: u64) -> String {
        let mut inner = self.inner.lock().unwrap();
        merge(&mut inner, number).unwrap()
    }
}

fn git(dir: &std::path::Path, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=GitHub",
            "-c",
            "user.email=noreply@github.com",
        ])
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn merge(inner: &mut Inner, number: u64) -> Result<String, String> {
    let (repo, pr) = inner
        .pulls
        .iter()
        .find(|(_, p)| p.number == number)
        .cloned()
        .ok_or("no such pull request")?;
    let bare = inner
        .repos
        .get(&repo)
        .cloned()
        .ok_or("no such repository")?;
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let work = tmp.path().join("w");
    git(tmp.path(), &["clone", "-q", bare.to_str().unwrap(), "w"])?;
    git(&work, &["checkout", "-q", &pr.base])?;
    git(&work, &["fetch", "-q", "origin", &pr.head])?;
    let msg = format!("Merge pull request #{number} from {}", pr.head);
    git(&work, &["merge", "-q", "--no-ff", "-m", &msg, "FETCH_HEAD"])?;
    git(&work, &["push", "-q", "origin", &pr.base])?;
    let sha = git(&work, &["rev-parse", "HEAD"])?;
    let p = &mut inner
        .pulls
        .iter_mut()
        .find(|(_, p)| p.number == number)
        .unwrap()
        .1;
    p.merged = true;
    p.state = "closed".into();
    p.merge_sha = Some(sha.clone());
    Ok(sha)
}

fn view(p: &Pr, base_url: &str, repo: &str) -> Value {
    json!({"number": p.number, "html_url": format!("{base_url}/{repo}/pull/{}", p.number), "state": p.state,
           "merged": p.merged, "merge_commit_sha": p.merge_sha, "title": p.title, "body": p.body,
           "head": {"ref": p.head}, "base": {"ref": p.base}})
}

type S = (Github, String);

fn authorized(s: &S, headers: &HeaderMap) -> bool {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut inner = s.0.inner.lock().unwrap();
    inner.auth_seen.push(auth.clone());
    inner.token.is_empty() || auth == format!("Bearer {}", inner.token)
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"message": "Bad credentials"})),
    )
        .into_response()
}

async fn create(
    State(s): State<S>,
    Path((o, r)): Path<(String, String)>,
    headers: HeaderMap,
    Json(b): Json<Value>,
) -> Response {
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    let repo = format!("{o}/{r}");
    let mut inner = s.0.inner.lock().unwrap();
    if !inner.repos.contains_key(&repo) {
        return (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response();
    }
    let number = inner.pulls.len() as u64 + 1;
    let pr = Pr {
        number,
        head: b["head"].as_str().unwrap_or_default().into(),
        base: b["base"].as_str().unwrap_or_default().into(),
        title: b["title"].as_str().unwrap_or_default().into(),
        body: b["body"].as_str().unwrap_or_default().into(),
        state: "open".into(),
        merged: false,
        merge_sha: None,
    };
    let v = view(&pr, &s.1, &repo);
    inner.pulls.push((repo, pr));
    (StatusCode::CREATED, Json(v)).into_response()
}

async fn show(
    State(s): State<S>,
    Path((o, r, n)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    let inner = s.0.inner.lock().unwrap();
    match inner
        .stale
        .as_ref()
        .unwrap_or(&inner.pulls)
        .iter()
        .find(|(repo, p)| p.number == n && *repo == format!("{o}/{r}"))
    {
        Some((repo, p)) => Json(view(p, &s.1, repo)).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response(),
    }
}

async fn close(
    State(s): State<S>,
    Path((_o, _r, n)): Path<(String, String, u64)>,
    headers: HeaderMap,
    Json(b): Json<Value>,
) -> Response {
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    let mut inner = s.0.inner.lock().unwrap();
    let Some((repo, p)) = inner.pulls.iter_mut().find(|(_, p)| p.number == n) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if b["state"] == "closed" {
        p.state = "closed".into();
    }
    let v = view(p, &s.1, repo);
    Json(v).into_response()
}

async fn do_merge(
    State(s): State<S>,
    Path((_o, _r, n)): Path<(String, String, u64)>,
    headers: HeaderMap,
    Json(b): Json<Value>,
) -> Response {
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    let mut inner = s.0.inner.lock().unwrap();
    let Some((repo, pr)) = inner.pulls.iter().find(|(_, p)| p.number == n).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if pr.merged || pr.state != "open" {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            Json(json!({"message": "Pull Request is not mergeable"})),
        )
            .into_response();
    }
    // GitHub refuses a merge whose expected head is not the branch's.
    let bare = inner.repos[&repo].clone();
    let head = git(&bare, &["rev-parse", &format!("refs/heads/{}", pr.head)]).unwrap_or_default();
    if b["sha"].as_str().is_some_and(|sha| sha != head) {
        return (
            StatusCode::CONFLICT,
            Json(json!({"message": "Head branch was modified. Review and try the merge again."})),
        )
            .into_response();
    }
    match merge(&mut inner, n) {
        Ok(sha) => {
            Json(json!({"sha": sha, "merged": true, "message": "Pull Request successfully merged"}))
                .into_response()
        }
        Err(e) => (StatusCode::CONFLICT, Json(json!({"message": e}))).into_response(),
    }
}

/// Serve on a free loopback port: repositories by `owner/repo`, and the token requests must carry (empty: none).
pub async fn start(repos: HashMap<String, PathBuf>, token: &str) -> Github {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let gh = Github {
        url: url.clone(),
        inner: Arc::new(Mutex::new(Inner {
            repos,
            token: token.to_string(),
            ..Default::default()
        })),
    };
    let app = Router::new()
        .route("/repos/{o}/{r}/pulls", post(create))
        .route("/repos/{o}/{r}/pulls/{n}", get(show).patch(close))
        .route("/repos/{o}/{r}/pulls/{n}/merge", put(do_merge))
        .with_state((gh.clone(), url));
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    gh
}
