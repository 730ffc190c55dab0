//! The database unreachable for 30 s in the middle of a storm (PostgreSQL frozen, its connections open and silent,
//! as behind a network partition): no report lost, no action run twice, every incident resolved once it answers
//! again. Its own test binary, so that no other test shares the frozen server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::storm::{assert_storm_resolved_once, start_storm};
use support::{Options, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_silent_for_30_s_mid_storm_loses_no_report_and_runs_no_action_twice() {
    let Some(database_url) = support::postgres::database().await else {
        return;
    };
    let stack = Stack::start(Options {
        clusters: &["staging", "prod"],
        api_args: &["--max-actions-per-hour", "500"],
        database_url: Some(database_url),
        ..Options::default()
    })
    .await;
    start_storm(&stack).await;
    support::postgres::freeze(true);
    let frozen_at = std::time::Instant::now();
    // The outage is real: the API cannot say its database is fine.
    let health = reqwest::Client::new()
        .get(format!("{}/health", stack.api_url))
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await;
    assert!(
        health.as_ref().map_or(true, |r| r.status() == 503),
        "{health:?}"
    );
    // Not ready (the Service sends nothing here), but alive: the outage does not get the pod restarted.
    let probe = |path: &'static str| {
        let url = format!("{}{path}", stack.api_url);
        async move {
            reqwest::Client::new()
                .get(url)
                .timeout(std::time::Duration::from_secs(5))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    };
    let ready = probe("/readyz").await;
    assert!(ready.as_ref().map_or(true, |s| *s == 503), "{ready:?}");
    assert_eq!(probe("/livez").await.ok(), Some(200));
    tokio::time::sleep(std::time::Duration::from_secs(30).saturating_sub(frozen_at.elapsed()))
        .await;
    support::postgres::freeze(false);
    assert_storm_resolved_once(&stack).await;
}
