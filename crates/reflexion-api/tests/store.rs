//! The store holds the incident state machine: only allowed moves, each by compare-and-set, and no state outside it
//! even for a writer that bypasses the code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reflexion_api::db::{Db, DbError, NewIncident};
use reflexion_core::IncidentState::{self, *};
use serde_json::json;

async fn incident_in(db: &Db, path: &[IncidentState]) -> String {
    let report = json!({});
    let (id, created) = db
        .open_incident(&NewIncident {
            cluster: "a",
            namespace: "default",
            pod_name: "web-1",
            workload_kind: "Deployment",
            workload_name: &format!("web-{}", uuid_like()),
            error_type: "ImagePullBackOff",
            signature: "image_pull/not_found",
            idempotency_key: None,
            report: &report,
            detected_at: None,
        })
        .await
        .unwrap();
    assert!(created);
    for s in path {
        db.transition(&id, *s, "test").await.unwrap();
    }
    id
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[tokio::test]
async fn only_the_state_machines_moves_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&format!("sqlite://{}", dir.path().join("r.db").display()))
        .await
        .unwrap();
    let id = incident_in(&db, &[Diagnosing, Planning, Executing]).await;
    // Resolved only after verification.
    match db.finish(&id, Resolved, "too early").await {
        Err(DbError::IllegalMove { from, to, .. }) => assert_eq!((from, to), (Executing, Resolved)),
        other => panic!("{other:?}"),
    }
    db.transition(&id, Verifying, "t").await.unwrap();
    db.finish(&id, Resolved, "held").await.unwrap();
    // Nothing leaves a final state.
    assert!(matches!(
        db.transition(&id, Planning, "again").await,
        Err(DbError::IllegalMove { .. })
    ));
    assert_eq!(db.incident(&id).await.unwrap().unwrap().state, Resolved);
}

#[tokio::test]
async fn of_two_writers_moving_one_incident_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&format!("sqlite://{}", dir.path().join("r.db").display()))
        .await
        .unwrap();
    for _ in 0..20 {
        let id = incident_in(&db, &[Diagnosing, Planning, Executing, Verifying]).await;
        let (a, b) = tokio::join!(
            db.finish(&id, Resolved, "writer a"),
            db.finish(&id, Escalated, "writer b")
        );
        assert!(a.is_ok() != b.is_ok(), "{a:?} {b:?}");
        let state = db.incident(&id).await.unwrap().unwrap().state;
        assert_eq!(state, if a.is_ok() { Resolved } else { Escalated });
    }
}

#[tokio::test]
async fn a_state_outside_the_machine_is_refused_by_the_database_itself() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let db = Db::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let id = incident_in(&db, &[]).await;
    drop(db);
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let e = sqlx::query("UPDATE incidents SET state = 'fixed' WHERE id = ?")
        .bind(&id)
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not an incident state"), "{e}");
}

#[tokio::test]
async fn with_one_action_left_in_the_hour_exactly_one_of_two_concurrent_incidents_acts() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&format!("sqlite://{}", dir.path().join("r.db").display()))
        .await
        .unwrap();
    let budget = reflexion_core::policy::Budget {
        actions_per_hour: 3,
        workload_actions_per_hour: 10,
    };
    for i in 0..2 {
        let slot = db
            .reserve_action(
                "earlier",
                "set_image",
                &format!("deployment/w{i}"),
                &json!({}),
                &budget,
            )
            .await
            .unwrap()
            .unwrap();
        db.settle_action(slot, "ok").await.unwrap();
    }
    let detail = json!({});
    let (a, b) = tokio::join!(
        db.reserve_action("a", "set_image", "deployment/a", &detail, &budget),
        db.reserve_action("b", "set_image", "deployment/b", &detail, &budget)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.is_ok() != b.is_ok(), "{a:?} {b:?}");
    let refused = a.err().or(b.err()).unwrap();
    assert!(
        refused.contains("circuit breaker open: 3 actions"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_stored_together_keep_one_incident_per_workload_and_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&format!("sqlite://{}", dir.path().join("r.db").display()))
        .await
        .unwrap();
    let report = json!({});
    // 60 reports at once, stored in shared transactions: 20 workloads x 3 reports, the first two of each
    // workload re-sends of one key.
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let (db, report) = (db.clone(), report.clone());
            tokio::spawn(async move {
                let (workload, key) = (
                    format!("w-{}", i % 20),
                    format!("k-{}-{}", i % 20, (i / 20).min(1)),
                );
                let r = db
                    .open_incident(&NewIncident {
                        cluster: "a",
                        namespace: "default",
                        pod_name: &format!("p-{i}"),
                        workload_kind: "Deployment",
                        workload_name: &workload,
                        error_type: "ImagePullBackOff",
                        signature: "image_pull/not_found",
                        idempotency_key: Some(&key),
                        report: &report,
                        detected_at: None,
                    })
                    .await
                    .unwrap();
                (workload, r)
            })
        })
        .collect();
    let mut by_workload: std::collections::HashMap<String, Vec<(String, bool)>> =
        Default::default();
    for t in tasks {
        let (w, r) = t.await.unwrap();
        by_workload.entry(w).or_default().push(r);
    }
    assert_eq!(by_workload.len(), 20);
    for (w, results) in by_workload {
        let created: Vec<_> = results.iter().filter(|(_, c)| *c).collect();
        assert_eq!(created.len(), 1, "{w}: {results:?}");
        assert!(
            results.iter().all(|(id, _)| *id == created[0].0),
            "{w}: {results:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_the_database_refuses_leaves_the_reports_stored_with_it_stored() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("r.db").display());
    let db = Db::connect(&url).await.unwrap();
    // A writer outside the code refuses one pod's incident: the batch it shares fails, and each report is stored
    // again alone.
    let side = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse BEFORE INSERT ON incidents WHEN NEW.pod_name = 'p-7'
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
    )
    .execute(&side)
    .await
    .unwrap();
    let report = json!({"why": "stored as given"});
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let (db, report) = (db.clone(), report.clone());
            tokio::spawn(async move {
                db.open_incident(&NewIncident {
                    cluster: "a",
                    namespace: "default",
                    pod_name: &format!("p-{i}"),
                    workload_kind: "Deployment",
                    workload_name: &format!("w-{i}"),
                    error_type: "ImagePullBackOff",
                    signature: "image_pull/not_found",
                    idempotency_key: Some(&format!("k-{i}")),
                    report: &report,
                    detected_at: None,
                })
                .await
            })
        })
        .collect();
    let mut stored = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok((id, created)) => {
                assert!(created && i != 7, "p-{i}");
                stored.push(id);
            }
            Err(e) => assert!(
                i == 7 && e.to_string().contains("refused by the test"),
                "p-{i}: {e}"
            ),
        }
    }
    assert_eq!(stored.len(), 39);
    for id in stored {
        let (state, stored_report, transitions): (String, String, i64) = sqlx::query_as(
            "SELECT state, report, (SELECT count(*) FROM incident_transitions t WHERE t.incident_id = i.id
                                      AND t.state = 'reported') FROM incidents i WHERE id = ?",
        )
        .bind(&id)
        .fetch_one(&side)
        .await
        .unwrap();
        assert_eq!((state.as_str(), transitions), ("reported", 1), "{id}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&stored_report).unwrap(),
            report
        );
    }
}

#[tokio::test]
async fn one_open_incident_per_workload_is_per_cluster_and_unnamed_rows_are_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&format!("sqlite://{}", dir.path().join("r.db").display()))
        .await
        .unwrap();
    let report = json!({});
    let open = async |cluster: &str, pod: &str| {
        db.open_incident(&NewIncident {
            cluster,
            namespace: "default",
            pod_name: pod,
            workload_kind: "Deployment",
            workload_name: "web",
            error_type: "ImagePullBackOff",
            signature: "image_pull/not_found",
            idempotency_key: None,
            report: &report,
            detected_at: None,
        })
        .await
        .unwrap()
    };
    // Reports arriving together and one by one: the same Deployment name in two clusters is two workloads.
    let (a1, b1, a2) = tokio::join!(open("a", "web-1"), open("b", "web-1"), open("a", "web-2"));
    assert!(a1.1 && b1.1, "{a1:?} {b1:?}");
    assert_ne!(a1.0, b1.0);
    assert_eq!(a2, (a1.0.clone(), false));
    assert_eq!(open("b", "web-3").await, (b1.0.clone(), false));
    let inc = db.incident(&b1.0).await.unwrap().unwrap();
    assert_eq!(inc.cluster, "b");
    // An incident stored before clusters were named joins the cluster a single-cluster API names.
    let legacy = open("", "web-4").await;
    assert!(legacy.1);
    assert_eq!(db.adopt_unnamed("a").await.unwrap(), 1);
    assert_eq!(db.incident(&legacy.0).await.unwrap().unwrap().cluster, "a");
    assert_eq!(db.adopt_unnamed("a").await.unwrap(), 0);
}

#[tokio::test]
async fn a_recalled_lesson_says_which_cluster_taught_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&format!("sqlite://{}", dir.path().join("r.db").display()))
        .await
        .unwrap();
    let report = json!({});
    let (id, _) = db
        .open_incident(&NewIncident {
            cluster: "staging",
            namespace: "default",
            pod_name: "web-1",
            workload_kind: "Deployment",
            workload_name: "web",
            error_type: "ImagePullBackOff",
            signature: "image_pull/not_found",
            idempotency_key: None,
            report: &report,
            detected_at: None,
        })
        .await
        .unwrap();
    let incident = db.incident(&id).await.unwrap().unwrap();
    let nothing = json!(null);
    db.record_episode(&reflexion_api::db::NewEpisode {
        incident: &incident,
        trial: 1,
        signature: "image_pull/not_found",
        strategy_id: "s-1",
        source: reflexion_core::strategy::PlanSource::Rules,
        action: &json!({"type": "set_image"}),
        command: "kubectl set image deployment/web web=nginx:1.27.0",
        rationale: "the closest tag",
        dry_run: &nothing,
        execution: &nothing,
        verification: &nothing,
        success: true,
        progress: false,
        reverted: false,
        reflection: "held",
        lessons: &["The closest existing tag fixed a mistyped one.".to_string()],
        duration_ms: 10,
        llm: &nothing,
    })
    .await
    .unwrap();
    assert_eq!(
        db.lessons("image_pull/not_found", 3).await.unwrap(),
        ["The closest existing tag fixed a mistyped one. (learned on cluster staging)"]
    );
}
