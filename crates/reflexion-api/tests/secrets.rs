//! Secrets stay secret and the API is never served open by accident: a full run with a database password, an API
//! token, an LLM key (which the endpoint echoes back, as some proxies do), and Git and forge tokens leaves none of
//! them in any process's log; `--help` does not show them; a refused start does not print the database password;
//! and an API on an address beyond loopback without a token does not start.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use std::process::Command;
use support::{Options, Stack, finished_incident};

const TOKEN: &str = "tok-7d1e3f0a9b2c4d5e";
const LLM_KEY: &str = "sk-test-5f2a9c7e1b3d";
const GIT_TOKEN: &str = "ghp_gittoken0a1b2c3d4e";
const FORGE_TOKEN: &str = "glpat-forgetoken9z8y7x";
const DB_PASSWORD: &str = "pw-db-6c4b2a1908";

/// An OpenAI-compatible endpoint that refuses the key and echoes it back in the error, as a careless proxy does.
async fn echoing_llm() -> String {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|headers: HeaderMap| async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            (
                StatusCode::UNAUTHORIZED,
                axum::Json(serde_json::json!({"error": {"message": format!("Incorrect API key provided: {auth}"),
                    "type": "invalid_request_error", "code": "invalid_api_key"}})),
            )
                .into_response()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn assert_no_secret(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "{what} shows the secret {s:?}:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_over_a_whole_run() {
    let database_url = match support::postgres::database().await {
        Some(url) => url.replacen(
            "postgres://postgres@",
            &format!("postgres://postgres:{DB_PASSWORD}@"),
            1,
        ),
        None => {
            eprintln!(
                "PostgreSQL is not installed: the database password part runs on SQLite without one"
            );
            String::new()
        }
    };
    let llm = echoing_llm().await;
    let files = tempfile::tempdir().unwrap();
    let git_token = files.path().join("git-token");
    let forge_token = files.path().join("forge-token");
    std::fs::write(&git_token, GIT_TOKEN).unwrap();
    std::fs::write(&forge_token, FORGE_TOKEN).unwrap();
    let mut extra: Vec<String> = [
        "--openai-api-key",
        LLM_KEY,
        "--llm-base-url",
        &llm,
        "--planner",
        "llm",
        "--forge",
        "gitlab",
        "--forge-url",
        "http://127.0.0.1:9/api/v4",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    extra.extend([
        "--git-token-file".into(),
        git_token.display().to_string(),
        "--forge-token-file".into(),
        forge_token.display().to_string(),
    ]);
    let stack = Stack::start(Options {
        api_args: &["--api-token", TOKEN],
        extra_args: extra,
        database_url: (!database_url.is_empty()).then_some(database_url),
        ..Options::default()
    })
    .await;
    stack.create_deployment(support::BAD_TAG_WEB).await;
    // The LLM refuses; the rules fix the bad tag; the watcher delivered with the token.
    let detail = finished_incident(&stack).await;
    assert_eq!(detail["state"], "resolved", "{detail}");
    let calls = detail["llm_calls"].to_string();
    assert!(
        calls.contains("Incorrect API key"),
        "the LLM was asked and refused: {detail}"
    );
    assert_no_secret("the incident", &detail.to_string(), &[LLM_KEY, TOKEN]);
    drop(detail);
    let secrets = [TOKEN, LLM_KEY, GIT_TOKEN, FORGE_TOKEN, DB_PASSWORD];
    let mut logs = 0;
    for entry in std::fs::read_dir(stack.dir.path()).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert_no_secret(&path.display().to_string(), &text, &secrets);
            logs += 1;
        }
    }
    assert!(
        logs >= 3,
        "the logs of simcluster, the API and the watcher were read"
    );
}

#[test]
fn help_and_a_refused_start_show_no_secret() {
    let url = format!("postgres://app:{DB_PASSWORD}@127.0.0.1:9/reflexion");
    let help = Command::new(support::bin("reflexion-api"))
        .arg("--help")
        .env("DATABASE_URL", &url)
        .env("REFLEXION_API_TOKEN", TOKEN)
        .env("OPENAI_API_KEY", LLM_KEY)
        .output()
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("--database-url"), "{text}");
    assert_no_secret("--help", &text, &[DB_PASSWORD, TOKEN, LLM_KEY]);
    // Nothing listens on port 9: the start fails on the database, and says which one without its password.
    let kubeconfig = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        kubeconfig.path(),
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n\
         contexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\nusers: [{name: u, user: {}}]\n",
    )
    .unwrap();
    let out = Command::new(support::bin("reflexion-api"))
        .env("KUBECONFIG", kubeconfig.path())
        .env("DATABASE_URL", &url)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        err.contains("postgres://app:***@127.0.0.1:9/reflexion"),
        "{err}"
    );
    assert_no_secret("a refused start", &err, &[DB_PASSWORD]);
}

#[test]
fn an_api_beyond_loopback_without_a_token_does_not_start() {
    let out = Command::new(support::bin("reflexion-api"))
        .args(["--listen", "0.0.0.0:0"])
        .env_remove("REFLEXION_API_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains(
            "--listen 0.0.0.0:0 is reachable from other hosts and REFLEXION_API_TOKEN is not set"
        ),
        "{err}"
    );
}
