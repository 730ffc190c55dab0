//! The operator console in a real browser (Debian's Chromium through ChromeDriver) against the real stack:
//! simcluster, reflexion-api with a token and the approve policy, and the watcher. Screenshots of each view go to
//! `target/console/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod browser;
mod support;

use browser::Browser;
use std::path::PathBuf;
use std::time::Duration;
use support::{FIX_TIMEOUT, Options, Stack};

const TOKEN: &str = "console-s3cret";
const SHORT: Duration = Duration::from_secs(20);

fn shots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/console");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_watches_approves_and_reads_in_the_console() {
    let browser = match Browser::start().await {
        Ok(b) => b,
        Err(why) => {
            eprintln!("SKIPPED: no browser can be had here: {why}");
            return;
        }
    };
    let stack = Stack::start(Options {
        policy: Some(r#"{"default_mode": "approve"}"#),
        api_args: &["--api-token", TOKEN],
        ..Options::default()
    })
    .await;
    let shots = shots();

    // The token first: nothing is shown before it is given, a wrong one is refused.
    browser.goto(&format!("{}/", stack.api_url)).await;
    browser.wait_for("#token-input", SHORT).await;
    assert_eq!(
        browser
            .eval("return document.querySelectorAll('#main *').length")
            .await,
        0,
        "the console showed data before the token was given"
    );
    browser.screenshot(&shots.join("token.png")).await;
    browser.type_into("#token-input", "wrong-token").await;
    browser.click("#token-submit").await;
    browser
        .wait_text("#login-error", SHORT, |t| t.contains("refused"))
        .await;
    browser.type_into("#token-input", TOKEN).await;
    browser.click("#token-submit").await;
    browser.wait_for("#no-incidents", SHORT).await;
    // The header: health, the policy in force, no LLM.
    browser
        .wait_text("#policy", SHORT, |t| t == "policy approve")
        .await;
    browser.wait_text("#llm", SHORT, |t| t == "no LLM").await;
    browser
        .wait_text("#health-db", SHORT, |t| t == "database ok")
        .await;
    // Marks this page load: every later check must find it, so nothing below reloads the page.
    browser.eval("window.__sameLoad = true; return null").await;

    // A bad tag appears live, waiting for approval, with exactly the command that will run.
    stack
        .create_all(
            "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx:1.27.O}]}
---
apiVersion: v1
kind: Pod
metadata: {name: shouty}
spec:
  restartPolicy: Always
  containers:
  - name: shouty
    image: busybox:1.36
    command: [sh, -c, \"echo '<script>window.__injected = 1</script><img src=x onerror=alert(1)>'; exit 1\"]
",
        )
        .await;
    browser
        .wait_for("tr[data-state=awaiting_approval]", FIX_TIMEOUT)
        .await;
    browser.screenshot(&shots.join("incidents.png")).await;
    browser.click("tr[data-state=awaiting_approval]").await;
    let command = browser
        .wait_text("#pending-command", SHORT, |t| !t.is_empty())
        .await;
    assert!(
        command.starts_with("kubectl set image deployment/web web=nginx:1.27"),
        "{command}"
    );
    browser.screenshot(&shots.join("approval.png")).await;
    browser.click("#approve").await;
    browser
        .wait_text("#incident-state", FIX_TIMEOUT, |t| t == "resolved")
        .await;
    browser
        .wait_text("#audit", SHORT, |t| t.contains("set_image"))
        .await;
    // The Event written on the Deployment, read from the cluster (the page refreshes on the next transition or poll).
    browser
        .eval("location.hash = '#/incidents'; return null")
        .await;
    browser.click("tr[data-state=resolved]").await;
    browser
        .wait_text("#written-events", SHORT, |t| {
            t.contains(
                "Normal ReflexionFixed: kube-reflexion ran `kubectl set image deployment/web",
            )
        })
        .await;
    // Who owns the workload of record, and where its fix landed.
    browser
        .wait_text("#owner", SHORT, |t| {
            t.contains("Owner of record: nobody (live object)") && t.contains("fixes land: live")
        })
        .await;
    browser.screenshot(&shots.join("incident.png")).await;

    // The crafted log is shown as text, never run as HTML.
    browser
        .eval("location.hash = '#/incidents'; return null")
        .await;
    browser
        .wait_text("#incidents-table", FIX_TIMEOUT, |t| {
            t.contains("Pod/shouty") && !t.contains("reported") && !t.contains("diagnosing")
        })
        .await;
    let id = browser
        .eval("return [...document.querySelectorAll('tr[data-id]')].find(r => r.innerText.includes('Pod/shouty')).dataset.id")
        .await;
    browser
        .eval(&format!(
            "location.hash = '#/incidents/{}'; return null",
            id.as_str().unwrap()
        ))
        .await;
    browser
        .wait_text("main", SHORT, |t| {
            t.contains("<script>window.__injected = 1</script>")
        })
        .await;
    assert_eq!(
        browser
            .eval("return [window.__injected === undefined, document.querySelectorAll('main script, main img').length]")
            .await,
        serde_json::json!([true, 0]),
        "text from the cluster became HTML"
    );

    // Memory and learning, with the chart of today's incidents.
    browser
        .eval("location.hash = '#/memory'; return null")
        .await;
    browser
        .wait_text("#strategies", SHORT, |t| t.contains("image_pull/not_found"))
        .await;
    browser.screenshot(&shots.join("memory.png")).await;
    browser
        .eval("location.hash = '#/learning'; return null")
        .await;
    browser.wait_for("#chart-incidents rect", SHORT).await;
    browser
        .wait_text("#learning-summary", SHORT, |t| {
            t.contains("incidents · success rate")
        })
        .await;
    browser.screenshot(&shots.join("learning.png")).await;
    // The chart moves as incidents happen, without a reload.
    let count = |t: &str| -> u32 { t.split(' ').next().unwrap().parse().unwrap() };
    let before = count(
        &browser
            .wait_text("#learning-summary", SHORT, |_| true)
            .await,
    );
    let bar =
        "return document.querySelector('#chart-incidents rect:last-of-type title').textContent";
    assert!(
        browser
            .eval(bar)
            .await
            .as_str()
            .unwrap()
            .ends_with(&format!(": {before}")),
        "today's bar"
    );
    stack
        .create_deployment(&support::BAD_TAG_WEB.replace("web", "api"))
        .await;
    browser
        .wait_text("#learning-summary", FIX_TIMEOUT, |t| count(t) == before + 1)
        .await;
    assert!(
        browser
            .eval(bar)
            .await
            .as_str()
            .unwrap()
            .ends_with(&format!(": {}", before + 1)),
        "today's bar grew"
    );

    // A phone's width: nothing wider than the screen.
    browser.set_size(390, 844).await;
    browser
        .eval("location.hash = '#/incidents'; return null")
        .await;
    browser.wait_for("#incidents-table", SHORT).await;
    assert_eq!(
        browser
            .eval("return document.documentElement.scrollWidth <= window.innerWidth + 1")
            .await,
        true,
        "the page is wider than a phone"
    );
    browser.screenshot(&shots.join("incidents-phone.png")).await;

    assert_eq!(
        browser.eval("return window.__sameLoad === true").await,
        true,
        "the page was reloaded"
    );
    // The wrong token's 401 is the test's own doing; nothing else may reach the console.
    let errors: Vec<String> = browser
        .console_errors()
        .await
        .into_iter()
        .filter(|e| !(e.contains("/api/v1/token") && e.contains("401")))
        .collect();
    assert!(errors.is_empty(), "browser console errors: {errors:?}");
}
