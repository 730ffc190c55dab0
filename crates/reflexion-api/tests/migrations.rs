//! Migrations are forward-only: a database made by the previous release (schema 3) opens with this one, keeps
//! its data, and gains the new schema.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reflexion_api::db::Db;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use std::str::FromStr;

#[tokio::test]
async fn a_database_from_the_previous_schema_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    {
        let pool = SqlitePoolOptions::new()
            .connect_with(
                SqliteConnectOptions::from_str(&url)
                    .unwrap()
                    .create_if_missing(true),
            )
            .await
            .unwrap();
        let mut previous = sqlx::migrate!("../../migrations/sqlite");
        let all = previous.migrations.len();
        assert!(all >= 4, "{all} migrations");
        previous.migrations = std::borrow::Cow::Owned(previous.migrations[..3].to_vec());
        previous.run(&pool).await.unwrap();
        sqlx::query(
            "INSERT INTO incidents (id, created_at, updated_at, namespace, pod_name, workload_kind, workload_name, error_type, signature, state, report)
             VALUES ('old-1', '2026-11-01T00:00:00.000Z', '2026-11-01T00:00:00.000Z', 'default', 'web-1', 'Deployment', 'web', 'ImagePullBackOff', 'image_pull/not_found', 'resolved', '{}')",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO episodes (id, incident_id, trial, created_at, namespace, pod_name, error_type, signature, strategy_id, source, action, command, rationale, dry_run, execution, verification, success, reverted, reflection, duration_ms)
             VALUES ('ep-1', 'old-1', 1, '2026-11-01T00:00:01.000Z', 'default', 'web-1', 'ImagePullBackOff', 'image_pull/not_found', NULL, 'rules', '{}', 'kubectl set image', 'r', '{}', '{}', '{}', 1, 0, 'it held', 5)",
        )
        .execute(&pool)
        .await
        .unwrap();
        // A strategy the LLM taught, stored the old way: the action itself as the template.
        sqlx::query(
            r#"INSERT INTO strategies (id, signature_class, error_type, action, template, description, source, successes, failures, usage_count, created_at)
             VALUES ('s-1', 'image_pull/not_found', 'ImagePullBackOff', 'set_image',
                     'llm:{"action":"set_image","container":"web","image":"nginx:1.27.3","target":{"kind":"Deployment","name":"WORKLOAD_1","namespace":"NAMESPACE_1"}}',
                     'd', 'llm', 2, 0, 2, '2026-11-01T00:00:00.000Z')"#,
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    // This release opens it: the remaining migrations run, the data is still there.
    let db = Db::connect(&url).await.unwrap();
    let incident = serde_json::to_value(
        db.incident_detail("old-1")
            .await
            .unwrap()
            .expect("the old incident"),
    )
    .unwrap();
    assert_eq!(incident["state"], "resolved");
    assert_eq!(incident["episodes"][0]["reflection"], "it held");
    assert!(incident["episodes"][0]["llm"].is_null());
    assert_eq!(incident["llm_calls"], serde_json::json!([]));
    // The old strategy is still reusable: its action is read from the template.
    let learned = db.llm_strategies("image_pull/not_found").await.unwrap();
    assert_eq!(learned.len(), 1);
    assert_eq!(
        learned[0].1.as_ref().map(|a| a["image"].clone()),
        Some(serde_json::json!("nginx:1.27.3"))
    );
    let stats = db.statistics().await.unwrap();
    assert_eq!(stats.incidents.total, 1);
    // Opening again is a no-op.
    drop(db);
    let db = Db::connect(&url).await.unwrap();
    assert!(db.incident_detail("old-1").await.unwrap().is_some());
    let pool = SqlitePoolOptions::new().connect(&url).await.unwrap();
    let applied: i64 = sqlx::query("SELECT COUNT(*) AS n FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap()
        .get("n");
    assert_eq!(
        applied as usize,
        sqlx::migrate!("../../migrations/sqlite").migrations.len()
    );
}
