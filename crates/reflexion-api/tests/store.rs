//! The store holds the incident state machine: only allowed moves, each by compare-and-set, and no state outside it
//! even for a writer that bypasses the code. Every test runs on SQLite and on PostgreSQL (`support::postgres`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reflexion_api::db::{Db, DbError, Dialect, NewIncident};
use reflexion_api::metrics::Counters;
use reflexion_core::IncidentState::{self, *};
use serde_json::json;

/// An empty store of each kind: (its URL, the store); the SQLite file lives as long as the guard.
async fn stores() -> (tempfile::TempDir, Vec<(String, Db)>) {
    let dir = tempfile::tempdir().unwrap();
    let mut urls = vec![format!("sqlite://{}", dir.path().join("r.db").display())];
    urls.extend(support::postgres::database().await);
    let mut stores = Vec::new();
    for url in urls {
        let db = Db::connect(&url).await.unwrap();
        stores.push((url, db));
    }
    (dir, stores)
}

/// A writer beside the store's own, on the same database.
async fn side_pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(url).await.unwrap()
}

/// A report of a bad image tag on a Deployment's pod.
fn bad_tag<'a>(
    cluster: &'a str,
    pod_name: &'a str,
    workload_name: &'a str,
    idempotency_key: Option<&'a str>,
    report: &'a serde_json::Value,
) -> NewIncident<'a> {
    NewIncident {
        cluster,
        namespace: "default",
        pod_name,
        workload_kind: "Deployment",
        workload_name,
        error_type: "ImagePullBackOff",
        signature: "image_pull/not_found",
        idempotency_key,
        report,
        detected_at: None,
    }
}

async fn incident_in(db: &Db, path: &[IncidentState]) -> String {
    let report = json!({});
    let (id, created) = db
        .open_incident(&bad_tag(
            "a",
            "web-1",
            &format!("web-{}", uuid_like()),
            None,
            &report,
        ))
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
    let (_dir, stores) = stores().await;
    for (url, db) in stores {
        eprintln!("on {url}");
        let id = incident_in(&db, &[Diagnosing, Planning, Executing]).await;
        // Resolved only after verification.
        match db.finish(&id, Resolved, "too early").await {
            Err(DbError::IllegalMove { from, to, .. }) => {
                assert_eq!((from, to), (Executing, Resolved))
            }
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
}

#[tokio::test]
async fn of_two_writers_moving_one_incident_exactly_one_wins() {
    let (_dir, stores) = stores().await;
    for (url, db) in stores {
        eprintln!("on {url}");
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
}

#[tokio::test]
async fn a_state_outside_the_machine_is_refused_by_the_database_itself() {
    let (_dir, stores) = stores().await;
    for (url, db) in stores {
        eprintln!("on {url}");
        let id = incident_in(&db, &[]).await;
        drop(db);
        let pool = side_pool(&url).await;
        let e = sqlx::query("UPDATE incidents SET state = 'fixed' WHERE id = $1")
            .bind(&id)
            .execute(&pool)
            .await
            .unwrap_err();
        // SQLite's trigger, PostgreSQL's CHECK constraint.
        let e = e.to_string();
        assert!(
            e.contains("not an incident state") || e.contains("\"incidents_state\""),
            "{url}: {e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_action_left_in_the_hour_exactly_one_of_two_replicas_acts() {
    let (_dir, stores) = stores().await;
    for (url, db) in stores {
        eprintln!("on {url}");
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
                    std::time::Duration::ZERO,
                )
                .await
                .unwrap()
                .unwrap();
            db.settle_action(slot, "ok").await.unwrap();
        }
        // Two replicas, each its own pool (and, on SQLite, its own in-process writer lock) on the one database, 20
        // incidents asking at once.
        let other = Db::connect(&url).await.unwrap();
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let db = if i % 2 == 0 {
                    db.clone()
                } else {
                    other.clone()
                };
                tokio::spawn(async move {
                    db.reserve_action(
                        &format!("i{i}"),
                        "set_image",
                        &format!("deployment/w-{i}"),
                        &json!({}),
                        &budget,
                        std::time::Duration::ZERO,
                    )
                    .await
                    .unwrap()
                })
            })
            .collect();
        let mut granted = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => granted += 1,
                Err(refused) => assert!(
                    refused.contains("circuit breaker open: 3 actions"),
                    "{refused}"
                ),
            }
        }
        assert_eq!(granted, 1, "{url}");
        // Another incident's action on the same workload within the cooldown: refused in the reservation itself.
        let roomy = reflexion_core::policy::Budget {
            actions_per_hour: 100,
            workload_actions_per_hour: 100,
        };
        let cooldown = std::time::Duration::from_secs(120);
        let refused = db
            .reserve_action(
                "later",
                "set_image",
                "deployment/w0",
                &json!({}),
                &roomy,
                cooldown,
            )
            .await
            .unwrap()
            .err()
            .unwrap_or_default();
        assert!(
            refused.contains("incident earlier changed deployment/w0 at"),
            "{refused}"
        );
        assert!(refused.contains("within the 120s cooldown"), "{refused}");
        for (incident, target) in [("earlier", "deployment/w0"), ("later", "deployment/w9")] {
            assert!(
                db.reserve_action(incident, "set_image", target, &json!({}), &roomy, cooldown)
                    .await
                    .unwrap()
                    .is_ok(),
                "its own earlier action, or another workload, is no cooldown: {incident} {target}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_stored_together_keep_one_incident_per_workload_and_per_key() {
    let (_dir, stores) = stores().await;
    for (url, db) in stores {
        eprintln!("on {url}");
        let report = json!({});
        // 60 reports at once, stored in shared transactions by two writers (replicas) on the same database: 20
        // workloads x 3 reports, the first two of each workload re-sends of one key.
        let writers = [db.clone(), Db::connect(&url).await.unwrap()];
        let tasks: Vec<_> = (0..60)
            .map(|i| {
                let (db, report) = (writers[i % 2].clone(), report.clone());
                tokio::spawn(async move {
                    let (workload, key) = (
                        format!("w-{}", i % 20),
                        format!("k-{}-{}", i % 20, (i / 20).min(1)),
                    );
                    let r = db
                        .open_incident(&bad_tag(
                            "a",
                            &format!("p-{i}"),
                            &workload,
                            Some(&key),
                            &report,
                        ))
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
        let batched: u64 = writers
            .iter()
            .map(|w| Counters::get(&w.counters().ingest_reports))
            .sum();
        assert_eq!(
            batched, 60,
            "every report stored by a batch, none by the slow path"
        );
        for (w, results) in by_workload {
            let created: Vec<_> = results.iter().filter(|(_, c)| *c).collect();
            assert_eq!(created.len(), 1, "{w}: {results:?}");
            assert!(
                results.iter().all(|(id, _)| *id == created[0].0),
                "{w}: {results:?}"
            );
        }
        // Each incident stored with its first transition, whichever statements stored them.
        let side = side_pool(&url).await;
        let unmatched: Vec<(String, i64)> = sqlx::query_as(
            "SELECT i.id, (SELECT count(*) FROM incident_transitions t WHERE t.incident_id = i.id
                             AND t.state = 'reported') AS n FROM incidents i",
        )
        .fetch_all(&side)
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, n)| *n != 1)
        .collect();
        assert!(unmatched.is_empty(), "{unmatched:?}");
    }
}

/// Bad-tag reports of (workload, idempotency key), sent at once so that they are stored together where they can be;
/// each one's (incident, created), in the order sent.
async fn at_once(db: &Db, sent: &[(String, &str)]) -> Vec<(String, bool)> {
    let tasks: Vec<_> = sent
        .iter()
        .map(|(workload, key)| {
            let (db, workload, key) = (db.clone(), workload.clone(), key.to_string());
            tokio::spawn(async move {
                db.open_incident(&bad_tag("a", "p", &workload, Some(&key), &json!({})))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_sent_for_several_workloads_at_once_is_one_incident() {
    let (_dir, stores) = stores().await;
    for (url, db) in stores {
        eprintln!("on {url}");
        let sent: Vec<_> = (0..10).map(|i| (format!("w-{i}"), "shared")).collect();
        let results = at_once(&db, &sent).await;
        assert_eq!(results.iter().filter(|(_, c)| *c).count(), 1, "{results:?}");
        assert!(
            results.iter().all(|(id, _)| *id == results[0].0),
            "{results:?}"
        );
        assert_eq!(
            Counters::get(&db.counters().ingest_reports),
            10,
            "stored by batches, none by the slow path"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_that_share_no_key_and_no_workload_each_join_what_exists_or_open_their_own() {
    let (_dir, stores) = stores().await;
    for (url, db) in stores {
        eprintln!("on {url}");
        let report = json!({});
        let (open, _) = db
            .open_incident(&bad_tag("a", "p", "open", Some("stored-key"), &report))
            .await
            .unwrap();
        // No key and no workload twice.
        let sent = [
            ("elsewhere".to_string(), "stored-key"), // a re-send of a stored key, from another workload: its incident
            ("open".to_string(), "new-key"),         // the workload's open incident
            ("fresh".to_string(), "fresh-key"),      // neither: an incident of its own
        ];
        let results = at_once(&db, &sent).await;
        assert_eq!(results[0], (open.clone(), false), "{results:?}");
        assert_eq!(results[1], (open.clone(), false), "{results:?}");
        assert!(results[2].1 && results[2].0 != open, "{results:?}");
        assert_eq!(
            Counters::get(&db.counters().ingest_reports),
            4,
            "stored by batches, none by the slow path"
        );
        let side = side_pool(&url).await;
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT i.workload_name, i.idempotency_key, (SELECT count(*) FROM incident_transitions t
               WHERE t.incident_id = i.id) AS n FROM incidents i ORDER BY i.workload_name",
        )
        .fetch_all(&side)
        .await
        .unwrap();
        let want = [("fresh", "fresh-key", 1), ("open", "stored-key", 1)];
        let rows: Vec<_> = rows
            .iter()
            .map(|(w, k, n)| (w.as_str(), k.as_str(), *n))
            .collect();
        assert_eq!(rows, want);
    }
}

#[tokio::test]
async fn a_report_detected_before_the_workloads_last_incident_changed_joins_it_to_the_microsecond()
{
    let (_dir, stores) = stores().await;
    for (url, db) in stores {
        eprintln!("on {url}");
        let report = json!({});
        let workload = format!("late-{}", uuid_like());
        fn at<'a>(
            workload: &'a str,
            report: &'a serde_json::Value,
            detected: &'a str,
            key: &'a str,
        ) -> NewIncident<'a> {
            NewIncident {
                detected_at: Some(detected).filter(|d| !d.is_empty()),
                ..bad_tag("a", "p", workload, Some(key), report)
            }
        }
        let (first, _) = db
            .open_incident(&at(&workload, &report, "", "first"))
            .await
            .unwrap();
        db.finish(&first, Escalated, "handed over").await.unwrap();
        let side = side_pool(&url).await;
        let (changed,): (String,) =
            sqlx::query_as("SELECT updated_at FROM incidents WHERE id = $1")
                .bind(&first)
                .fetch_one(&side)
                .await
                .unwrap();
        let changed = chrono::DateTime::parse_from_rfc3339(&changed).unwrap();
        let shifted = |nanos: i64| {
            (changed + chrono::Duration::nanoseconds(nanos))
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
        };
        // Detected at the moment it last changed, or before (in another zone's notation too): that incident's.
        let before = (changed - chrono::Duration::nanoseconds(1))
            .with_timezone(&chrono::FixedOffset::east_opt(5 * 3600).unwrap())
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, false);
        let earlier = [shifted(0), shifted(-500), before];
        for (i, detected) in earlier.iter().enumerate() {
            let (id, created) = db
                .open_incident(&at(&workload, &report, detected, &format!("k{i}")))
                .await
                .unwrap();
            assert_eq!(
                (id.as_str(), created),
                (first.as_str(), false),
                "{detected}"
            );
        }
        // A nanosecond after: a new failure, a new incident; not a time at all: a new one too.
        let later = [shifted(1), "yesterday".to_string()];
        for (i, detected) in later.iter().enumerate() {
            let (id, created) = db
                .open_incident(&at(&workload, &report, detected, &format!("n{i}")))
                .await
                .unwrap();
            assert!(created && id != first, "{detected}");
            db.finish(&id, Escalated, "handed over").await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_the_database_refuses_leaves_the_reports_stored_with_it_stored() {
    let (_dir, stores) = stores().await;
    for (url, db) in stores {
        eprintln!("on {url}");
        // A writer outside the code refuses one pod's incident: the batch it shares fails, and each report is stored
        // again alone.
        let side = side_pool(&url).await;
        let refuse: &[&str] = match db.dialect() {
            Dialect::Sqlite => &["CREATE TRIGGER refuse BEFORE INSERT ON incidents WHEN NEW.pod_name = 'p-7'
                                  BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"],
            Dialect::Postgres => &[
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN IF NEW.pod_name = 'p-7' THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$",
                "CREATE TRIGGER refuse BEFORE INSERT ON incidents FOR EACH ROW EXECUTE FUNCTION refuse()",
            ],
        };
        for sql in refuse {
            sqlx::query(sqlx::AssertSqlSafe(*sql))
                .execute(&side)
                .await
                .unwrap();
        }
        let report = json!({"why": "stored as given"});
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let (db, report) = (db.clone(), report.clone());
                tokio::spawn(async move {
                    db.open_incident(&bad_tag(
                        "a",
                        &format!("p-{i}"),
                        &format!("w-{i}"),
                        Some(&format!("k-{i}")),
                        &report,
                    ))
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
        // The failed batch left no transaction behind: reports after it are stored by batches again (on SQLite a
        // transaction left open would hold the file's write lock and fail the next one after the busy timeout).
        let batched = Counters::get(&db.counters().ingest_reports);
        let later = at_once(&db, &[("w-later".to_string(), "k-later")]).await;
        assert!(later[0].1, "{later:?}");
        assert_eq!(
            Counters::get(&db.counters().ingest_reports),
            batched + 1,
            "stored by a batch, not by the slow path"
        );
        for id in stored {
            let (state, stored_report, transitions): (String, String, i64) = sqlx::query_as(
            "SELECT state, report, (SELECT count(*) FROM incident_transitions t WHERE t.incident_id = i.id
                                      AND t.state = 'reported') FROM incidents i WHERE id = $1",
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
}

#[tokio::test]
async fn one_open_incident_per_workload_is_per_cluster_and_unnamed_rows_are_adopted() {
    let (_dir, stores) = stores().await;
    for (url, db) in stores {
        eprintln!("on {url}");
        let report = json!({});
        let open = async |cluster: &str, pod: &str| {
            db.open_incident(&bad_tag(cluster, pod, "web", None, &report))
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
        // (It names a workload no named incident has open: the database allows one open incident per workload.)
        let legacy = db
            .open_incident(&bad_tag("", "api-1", "api", None, &report))
            .await
            .unwrap();
        assert!(legacy.1);
        assert_eq!(db.adopt_unnamed("a").await.unwrap(), 1);
        assert_eq!(db.incident(&legacy.0).await.unwrap().unwrap().cluster, "a");
        assert_eq!(db.adopt_unnamed("a").await.unwrap(), 0);
    }
}

#[tokio::test]
async fn a_recalled_lesson_says_which_cluster_taught_it() {
    let (_dir, stores) = stores().await;
    for (url, db) in stores {
        eprintln!("on {url}");
        let report = json!({});
        let (id, _) = db
            .open_incident(&bad_tag("staging", "web-1", "web", None, &report))
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
        // Clearing the memory keeps an open incident's trial trail; once it is finished, it goes too.
        let cleared = db.clear(true, true).await.unwrap();
        assert_eq!(cleared["episodes"], 0, "{cleared}");
        assert_eq!(db.episode_actions(&id).await.unwrap().len(), 1);
        db.transition(&id, Escalated, "test").await.unwrap();
        let cleared = db.clear(true, true).await.unwrap();
        assert_eq!(
            (cleared["episodes"].as_u64(), cleared["lessons"].as_u64()),
            (Some(1), Some(1)),
            "{cleared}"
        );
        assert!(db.episode_actions(&id).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn one_replica_holds_an_incident_until_its_claim_expires_or_it_lets_go() {
    let (_dir, stores) = stores().await;
    for (url, db) in stores {
        eprintln!("on {url}");
        let long = std::time::Duration::from_secs(60);
        let short = std::time::Duration::from_millis(300);
        let id = incident_in(&db, &[]).await;
        assert!(db.claim(&id, "a", long).await.unwrap());
        assert!(!db.claim(&id, "b", long).await.unwrap(), "a holds it");
        assert!(
            db.claim(&id, "a", long).await.unwrap(),
            "a restarted takes its own"
        );
        // Held and fresh: nobody's to resume but its own replica's (after a restart).
        let free = |db: Db, me: &'static str| async move {
            db.unclaimed(me, std::time::Duration::ZERO)
                .await
                .unwrap()
                .into_iter()
                .map(|(id, _, by)| (id, by))
                .collect::<Vec<_>>()
        };
        assert_eq!(free(db.clone(), "b").await, vec![]);
        assert_eq!(
            free(db.clone(), "a").await,
            vec![(id.clone(), Some("a".into()))]
        );
        // A claim renewed for a moment and then left to expire is anyone's.
        let held = [id.clone()];
        assert_eq!(
            db.renew_claims("a", long, &["another".to_string()])
                .await
                .unwrap(),
            0,
            "only what a live task holds is renewed"
        );
        assert_eq!(db.renew_claims("a", short, &held).await.unwrap(), 1);
        assert!(!db.claim(&id, "b", long).await.unwrap());
        tokio::time::sleep(short * 2).await;
        assert_eq!(
            free(db.clone(), "b").await,
            vec![(id.clone(), Some("a".into()))]
        );
        assert!(db.claim(&id, "b", long).await.unwrap(), "a's claim expired");
        assert_eq!(
            db.renew_claims("a", long, &held).await.unwrap(),
            0,
            "a lost it"
        );
        // Let go, it is free; a finished incident is nobody's to resume.
        db.release(&id, "a").await.unwrap();
        assert!(
            !db.claim(&id, "c", long).await.unwrap(),
            "only b lets it go"
        );
        db.release(&id, "b").await.unwrap();
        assert_eq!(free(db.clone(), "c").await, vec![(id.clone(), None)]);
        assert!(db.claim(&id, "c", long).await.unwrap());
        db.finish(&id, IncidentState::Escalated, "handed over")
            .await
            .unwrap();
        assert_eq!(free(db.clone(), "c").await, vec![]);
        // Never claimed: free once it has not moved for the idle time.
        let fresh = incident_in(&db, &[]).await;
        assert_eq!(
            db.unclaimed("c", std::time::Duration::from_secs(60))
                .await
                .unwrap(),
            vec![]
        );
        assert_eq!(free(db.clone(), "c").await, vec![(fresh, None)]);
    }
}

#[tokio::test]
async fn replicas_alive_are_counted_until_their_time_runs_out_or_they_retire() {
    let (_dir, stores) = stores().await;
    for (url, db) in stores {
        eprintln!("on {url}");
        let long = std::time::Duration::from_secs(60);
        let short = std::time::Duration::from_millis(300);
        assert_eq!(db.announce("a", long).await.unwrap(), 1, "alone");
        assert_eq!(db.announce("b", short).await.unwrap(), 2);
        assert_eq!(
            db.announce("a", long).await.unwrap(),
            2,
            "announcing again is not another replica"
        );
        tokio::time::sleep(short * 2).await;
        assert_eq!(db.announce("a", long).await.unwrap(), 1, "b's time ran out");
        assert_eq!(db.announce("b", long).await.unwrap(), 2, "b is back");
        db.retire("b").await.unwrap();
        assert_eq!(db.announce("a", long).await.unwrap(), 1, "b retired");
    }
}

#[tokio::test]
async fn a_postgres_url_that_requires_tls_is_served_over_tls() {
    let Some(url) = support::postgres::database().await else {
        return;
    };
    if !support::postgres::tls() {
        eprintln!("openssl is not installed: the server has no certificate, TLS is not tested");
        return;
    }
    let url = format!("{url}?sslmode=require");
    let db = Db::connect(&url).await.unwrap();
    db.ping().await.unwrap();
    let side = side_pool(&url).await;
    let (ssl,): (bool,) =
        sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&side)
            .await
            .unwrap();
    assert!(ssl, "the connection is not encrypted");
}

/// Notifications (issue 29): two replicas' notifiers offer the same moves and send together; the outbox keeps each
/// move once per target and each is sent by one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_notify_each_move_once_per_target() {
    use std::sync::{Arc, Mutex};
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = got.clone();
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let sink = sink.clone();
        async move {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            sink.lock()
                .unwrap()
                .push(v["id"].as_str().unwrap().to_string());
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("webhook=http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let target = reflexion_notify::Target::parse(&url).unwrap();
    let (_dir, stores) = stores().await;
    for (url, db) in stores {
        eprintln!("on {url}");
        got.lock().unwrap().clear();
        let replicas = [db.clone(), Db::connect(&url).await.unwrap()].map(|db| {
            let settings = reflexion_notify::Settings::new(
                vec![target.clone()],
                Some(b"a-secret-of-sixteen-bytes".to_vec()),
                None,
            );
            reflexion_notify::Notifier::new(db, settings).unwrap()
        });
        // A target's first look starts it at the newest move: the history before it is not news.
        let before = incident_in(&db, &[Diagnosing, Planning]).await;
        db.await_approval(&before, &json!({"command": "kubectl old"}), "asked before")
            .await
            .unwrap();
        assert_eq!(replicas[0].offer(&target).await.unwrap(), 0);
        let mut ids = Vec::new();
        for i in 0..5 {
            let id = incident_in(&db, &[Diagnosing, Planning]).await;
            db.await_approval(&id, &json!({"command": format!("kubectl {i}")}), "asked")
                .await
                .unwrap();
            ids.push(id);
        }
        // A move nobody needs to see is not offered.
        incident_in(&db, &[Diagnosing, Planning, Executing, Verifying, Resolved]).await;
        let (a, b) = tokio::join!(replicas[0].offer(&target), replicas[1].offer(&target));
        assert_eq!(a.unwrap() + b.unwrap(), 5, "five moves, each stored once");
        let (a, b) = tokio::join!(replicas[0].send_due(&target), replicas[1].send_due(&target));
        a.unwrap();
        b.unwrap();
        let mut sent = got.lock().unwrap().clone();
        sent.sort();
        let mut unique = sent.clone();
        unique.dedup();
        assert_eq!(sent.len(), 5, "{sent:?}");
        assert_eq!(unique, sent, "none sent twice");
        let stored = db.notifications(100).await.unwrap();
        assert_eq!(stored.len(), 5);
        assert!(
            stored.iter().all(|n| n.state == "sent" && n.attempts == 1),
            "{stored:?}"
        );
        assert!(stored.iter().all(|n| ids.contains(&n.incident_id)));
    }
}
