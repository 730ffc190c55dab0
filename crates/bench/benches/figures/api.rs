//! reflexion-api's figures: how many reports it stores per second from a concurrent load generator (the real binary
//! on loopback, `suggest` policy), its memory, and — in this process, on the product's own store — how long a known
//! failure waits for its plan and how recall behaves with 100,000 episodes.

use crate::cpulimit::CpuLimit;
use crate::stack::{Mode, Stack, percentile, rss_mib, size};
use crate::{Figure, Series, Target};
use futures::{StreamExt, stream};
use rand::SeedableRng;
use reflexion_api::db::{Db, NewIncident};
use reflexion_core::strategy::{Record, choose};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn report(i: usize) -> Value {
    json!({
        "pod_name": format!("load-{i:06}"), "namespace": "bench", "error_type": "ImagePullBackOff",
        "idempotency_key": format!("load-{i}"),
        "real_k8s_data": {"detected_at": chrono::Utc::now().to_rfc3339(), "image": "nginx:no-such-tag",
                          "container": "app", "signature": "image_pull/tag_not_found"}
    })
}

/// `n` distinct reports posted by `concurrency` clients at once, spread over `api_urls` in turn: the run's length
/// in seconds, and each report's (latency in ms, status).
async fn post_reports(api_urls: &[String], n: usize, concurrency: usize) -> (f64, Vec<(f64, u16)>) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let urls: Vec<String> = api_urls
        .iter()
        .map(|u| format!("{u}/api/v1/reflexion/process-with-k8s-data"))
        .collect();
    let started = Instant::now();
    let results: Vec<(f64, u16)> = stream::iter(0..n)
        .map(|i| {
            let (http, url) = (http.clone(), urls[i % urls.len()].clone());
            async move {
                let t = Instant::now();
                let status = http
                    .post(&url)
                    .json(&report(i))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                (t.elapsed().as_secs_f64() * 1000.0, status)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    (started.elapsed().as_secs_f64(), results)
}

/// Distinct reports posted by `concurrency` clients at once; each one's latency, and the rate over the run.
pub async fn ingest(figures: &mut Vec<Figure>, series: &mut Vec<Series>) {
    let n = size("BENCH_REPORTS", 20_000, 300);
    let concurrency = size("BENCH_CLIENTS", 32, 4);
    let stack = Stack::start(false, false, Mode::Suggest).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (idle, _) = rss_mib(stack.api_pid);
    let (secs, results) = post_reports(std::slice::from_ref(&stack.api_url), n, concurrency).await;
    let (end, peak) = rss_mib(stack.api_pid);
    let worked = incidents_past_reported(&stack.api_url).await;
    let stored = results.iter().filter(|(_, s)| *s == 202).count();
    let mut latency: Vec<f64> = results.iter().map(|(l, _)| *l).collect();
    latency.sort_by(f64::total_cmp);
    let part = "(f) API ingest";
    figures.push(
        Figure::new(
            part,
            format!("{n} distinct reports, {concurrency} clients: accepted (202)"),
            stored as f64,
            "",
        )
        .target(Target::Exactly(n as f64)),
    );
    figures.push(
        Figure::new(
            part,
            "reports stored per second",
            stored as f64 / secs,
            "/s",
        )
        .target(Target::AtLeast(5000.0)),
    );
    figures.push(Figure::new(
        part,
        "latency p50",
        percentile(&latency, 50.0),
        "ms",
    ));
    figures.push(
        Figure::new(part, "latency p99", percentile(&latency, 99.0), "ms")
            .target(Target::AtMost(20.0)),
    );
    // The engine works incidents meanwhile (paced by its Kubernetes rate limit): ingest is not measured alone.
    figures.push(Figure::new(
        part,
        "incidents the engine took up while the reports arrived",
        worked,
        "",
    ));
    figures.push(Figure::new(part, "API RSS idle", idle, "MiB"));
    figures.push(Figure::new(
        part,
        "API RSS at the end of the run",
        end,
        "MiB",
    ));
    figures.push(Figure::new(part, "API peak RSS", peak, "MiB"));
    series.push(Series::cdf("ingest", "report POST latency", latency));
}

/// An API process's Prometheus text.
async fn metrics_text(api_url: &str) -> String {
    reqwest::get(format!("{api_url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Incidents in any state but `reported`, from the API's own gauge.
async fn incidents_past_reported(api_url: &str) -> f64 {
    let text = metrics_text(api_url).await;
    text.lines()
        .filter_map(|l| l.strip_prefix("reflexion_incidents{state=\""))
        .filter(|l| !l.starts_with("reported\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn sqlite_url(dir: &std::path::Path) -> String {
    format!("sqlite://{}", dir.join("r.db").display())
}

const SIGNATURE: &str = "image_pull/tag_not_found";
const RETAG: &str = "set_image:closest_tag";
const UNDO: &str = "rollout_undo:previous";

/// Seed `episodes` trials of one signature (each with a lesson) and two learned strategies, in bulk, on either store.
async fn seed(url: &str, episodes: usize) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    let now = chrono::Utc::now().to_rfc3339();
    for (id, template, s, f) in [
        ("strategy_retag", RETAG, 40, 3),
        ("strategy_undo", UNDO, 12, 9),
    ] {
        sqlx::query("INSERT INTO strategies (id, signature_class, error_type, action, template, description, source, successes, failures, usage_count, created_at)
                     VALUES ($1, $2, 'ImagePullBackOff', 'set_image', $3, 'bench', 'rules', $4, $5, $6, $7)")
            .bind(id).bind(SIGNATURE).bind(template).bind(s as i64).bind(f as i64).bind((s + f) as i64).bind(&now)
            .execute(&mut *tx).await.unwrap();
    }
    let incidents = episodes.div_ceil(100).max(1);
    for i in 0..incidents {
        sqlx::query("INSERT INTO incidents (id, namespace, pod_name, workload_kind, workload_name, error_type, signature, state, created_at, updated_at, report)
                     VALUES ($1, 'bench', $2, 'Deployment', $3, 'ImagePullBackOff', $4, 'resolved', $5, $6, '{}')")
            .bind(format!("incident_seed_{i}")).bind(format!("p-{i}")).bind(format!("w-{i}"))
            .bind(SIGNATURE).bind(&now).bind(&now)
            .execute(&mut *tx).await.unwrap();
    }
    for e in 0..episodes {
        let id = format!("episode_seed_{e}");
        sqlx::query("INSERT INTO episodes (id, incident_id, trial, created_at, namespace, pod_name, error_type, signature, strategy_id, source, action, command, rationale, success, reflection, duration_ms)
                     VALUES ($1, $2, 1, $3, 'bench', 'p', 'ImagePullBackOff', $4, 'strategy_retag', 'rules', '{}', 'kubectl set image', 'bench', TRUE, 'bench', 5)")
            .bind(&id).bind(format!("incident_seed_{}", e / 100)).bind(&now).bind(SIGNATURE)
            .execute(&mut *tx).await.unwrap();
        sqlx::query("INSERT INTO lessons (episode_id, signature, text, verified_outcome, created_at) VALUES ($1, $2, $3, TRUE, $4)")
            .bind(&id).bind(SIGNATURE).bind(format!("lesson {e}: the closest existing tag held")).bind(&now)
            .execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    pool.close().await;
}

/// What the engine does with a known failure before it touches the cluster, `rounds` times on the store at `url`
/// seeded with `episodes` episodes: (seeding s, lessons ms, strategies ms, report stored -> plan chosen ms).
async fn decisions(
    url: &str,
    episodes: usize,
    rounds: usize,
) -> (f64, Vec<f64>, Vec<f64>, Vec<f64>) {
    drop(Db::connect(url).await.unwrap());
    let seeded = Instant::now();
    seed(url, episodes).await;
    let seed_secs = seeded.elapsed().as_secs_f64();
    let db = Db::connect(url).await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (mut lessons_ms, mut strategies_ms, mut decision_ms) = (Vec::new(), Vec::new(), Vec::new());
    let report = json!({});
    for i in 0..rounds {
        // A report stored, then what the engine does before it touches the cluster: recall the lessons, read the
        // verified records of the candidate strategies, and choose (Thompson sampling) — no LLM.
        let t = Instant::now();
        let pod = format!("decide-{i}");
        db.open_incident(&NewIncident {
            cluster: "bench",
            namespace: "bench",
            pod_name: &pod,
            workload_kind: "Deployment",
            workload_name: &pod,
            error_type: "ImagePullBackOff",
            signature: SIGNATURE,
            idempotency_key: Some(&pod),
            report: &report,
            detected_at: None,
        })
        .await
        .unwrap();
        let r0 = Instant::now();
        let lessons = db.lessons(SIGNATURE, 3).await.unwrap();
        lessons_ms.push(r0.elapsed().as_secs_f64() * 1000.0);
        let r1 = Instant::now();
        let mut records = Vec::new();
        for template in [RETAG, UNDO] {
            let (successes, failures) = db.strategy_record(SIGNATURE, template).await.unwrap();
            records.push(Record {
                successes,
                failures,
            });
        }
        let learned = db.llm_strategies(SIGNATURE).await.unwrap();
        strategies_ms.push(r1.elapsed().as_secs_f64() * 1000.0);
        let chosen = choose(&records, 0.1, &mut rng);
        decision_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(lessons.len() == 3 && chosen.is_some() && learned.is_empty());
    }
    for v in [&mut lessons_ms, &mut strategies_ms, &mut decision_ms] {
        v.sort_by(f64::total_cmp);
    }
    (seed_secs, lessons_ms, strategies_ms, decision_ms)
}

/// (g) decision and (h) recall, in this process on the product's store (`reflexion_api::db`), 100,000 episodes in it.
pub async fn decision_and_recall(figures: &mut Vec<Figure>) {
    let episodes = size("BENCH_EPISODES", 100_000, 2_000);
    let rounds = size("BENCH_ROUNDS", 2_000, 100);
    let dir = tempfile::tempdir().unwrap();
    let (seed_secs, lessons_ms, strategies_ms, decision_ms) =
        decisions(&sqlite_url(dir.path()), episodes, rounds).await;
    let part = "(g) decision";
    figures.push(Figure::new(
        part,
        "report stored -> plan chosen (learned strategy, 0 LLM calls), p50",
        percentile(&decision_ms, 50.0),
        "ms",
    ));
    figures.push(
        Figure::new(
            part,
            "report stored -> plan chosen (learned strategy, 0 LLM calls), p99",
            percentile(&decision_ms, 99.0),
            "ms",
        )
        .target(Target::AtMost(5.0)),
    );
    let part = "(h) recall";
    figures.push(Figure::new(
        part,
        format!("episodes in the store (seeded in {seed_secs:.1} s)"),
        episodes as f64,
        "",
    ));
    figures.push(
        Figure::new(
            part,
            "lessons for the signature, p99",
            percentile(&lessons_ms, 99.0),
            "ms",
        )
        .target(Target::AtMost(5.0)),
    );
    figures.push(
        Figure::new(
            part,
            "strategies for the signature, p99",
            percentile(&strategies_ms, 99.0),
            "ms",
        )
        .target(Target::AtMost(5.0)),
    );
    let plans = query_plans(&dir.path().join("r.db")).await;
    println!("recall query plans (SQLite EXPLAIN QUERY PLAN):\n{plans}");
    std::fs::write(crate::out_dir().join("recall-query-plans.txt"), plans).ok();
}

async fn query_plans(db_path: &std::path::Path) -> String {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db_path.display()))
        .await
        .unwrap();
    let mut out = String::new();
    for (what, q) in [
        (
            "lessons",
            "SELECT text FROM lessons WHERE signature = 'x' ORDER BY id DESC LIMIT 3",
        ),
        (
            "strategy record",
            "SELECT successes, failures FROM strategies WHERE signature_class = 'x' AND template = 'y'",
        ),
        (
            "learned LLM strategies",
            "SELECT template, payload, successes, failures FROM strategies WHERE signature_class = 'x' AND source = 'llm' AND successes > 0 ORDER BY (successes + 1.0) / (successes + failures + 2.0) DESC, last_used DESC",
        ),
    ] {
        let rows: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {q}")))
                .fetch_all(&pool)
                .await
                .unwrap_or_default();
        out.push_str(&format!(
            "  {what}: {}\n",
            rows.iter()
                .map(|r| r.3.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    out
}

/// One run of the stores part: the rate, the p99, the reports accepted, where the store's time went, and the
/// machine's CPU time while the reports arrived.
struct StoreRun {
    rate: f64,
    p99: f64,
    accepted: usize,
    profile: Profile,
    cpu: Cpu,
    /// The run's length in seconds.
    secs: f64,
}

/// The machine's CPU time (every process's, from /proc/stat), in seconds of one CPU, and the part of it spent by
/// each kind of process (from /proc/<pid>/stat, every thread's user and system time).
#[derive(Default, Clone, Copy)]
struct Cpu {
    busy: f64,
    all: f64,
    by: [f64; PROCESSES.len()],
}

/// The kinds of process counted apart: this bench (the clients), the API processes, PostgreSQL's, simcluster.
const PROCESSES: [&str; 4] = [
    "the clients (this bench)",
    "reflexion-api",
    "PostgreSQL",
    "simcluster",
];

/// Seconds of CPU each kind of process has used since it started; a process that ended is not counted.
fn by_process() -> [f64; PROCESSES.len()] {
    let mut by = [0.0; PROCESSES.len()];
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return by;
    };
    for entry in dir.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ...: the name may hold spaces, so the fields are counted after its closing parenthesis.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let kind = match comm {
            _ if pid == me => 0,
            "reflexion-api" => 1,
            "postgres" => 2,
            "simcluster" => 3,
            _ => continue,
        };
        let fields: Vec<f64> = stat[close + 1..]
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0.0))
            .collect();
        // After the name: state is field 3, utime field 14 and stime field 15 (proc(5)); in USER_HZ, 100 a second.
        by[kind] += (fields.get(11).copied().unwrap_or(0.0)
            + fields.get(12).copied().unwrap_or(0.0))
            / 100.0;
    }
    by
}

impl Cpu {
    /// Now, since boot; zero where /proc/stat cannot be read.
    fn now() -> Self {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let ticks: Vec<f64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|t| t.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal ...; /proc/stat counts in USER_HZ, 100 a second.
        let all: f64 = ticks.iter().take(8).sum();
        let idle = ticks.get(3).copied().unwrap_or(0.0) + ticks.get(4).copied().unwrap_or(0.0);
        Self {
            busy: (all - idle) / 100.0,
            all: all / 100.0,
            by: by_process(),
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            busy: self.busy - before.busy,
            all: self.all - before.all,
            by: std::array::from_fn(|i| self.by[i] - before.by[i]),
        }
    }
}

/// The store's own counters, summed over the replicas (`/metrics`, reflexion_store_*).
#[derive(Default, Clone, Copy)]
struct Profile {
    batches: f64,
    reports: f64,
    wait: f64,
    lookup: f64,
    insert: f64,
    commit: f64,
    write_txs: f64,
    write_wait: f64,
}

async fn profile(urls: &[String]) -> Profile {
    let mut p = Profile::default();
    for url in urls {
        let text = metrics_text(url).await;
        for line in text.lines().filter(|l| l.starts_with("reflexion_store_")) {
            let Some((name, v)) = line.rsplit_once(' ') else {
                continue;
            };
            let v: f64 = v.parse().unwrap_or(0.0);
            match name {
                "reflexion_store_ingest_batches_total" => p.batches += v,
                "reflexion_store_ingest_reports_total" => p.reports += v,
                "reflexion_store_ingest_seconds_total{phase=\"wait\"}" => p.wait += v,
                "reflexion_store_ingest_seconds_total{phase=\"lookup\"}" => p.lookup += v,
                "reflexion_store_ingest_seconds_total{phase=\"insert\"}" => p.insert += v,
                "reflexion_store_ingest_seconds_total{phase=\"commit\"}" => p.commit += v,
                "reflexion_store_write_transactions_total" => p.write_txs += v,
                "reflexion_store_write_wait_seconds_total" => p.write_wait += v,
                _ => {}
            }
        }
    }
    p
}

/// One run on the store at `url` (None: SQLite) with `replicas` API processes, each held to `cpus` of a CPU where
/// given; why not, where that quota cannot be set.
async fn store_run(
    url: Option<String>,
    replicas: usize,
    n: usize,
    concurrency: usize,
    cpus: Option<f64>,
) -> Result<StoreRun, String> {
    let mut stack = Stack::start_on(false, false, Mode::Suggest, url).await;
    let mut urls = vec![stack.api_url.clone()];
    let mut pids = vec![stack.api_pid];
    for r in 2..=replicas {
        urls.push(stack.start_replica(&format!("replica-{r}")).await);
        pids.push(stack.procs.last().map(|p| p.0.id()).unwrap_or_default());
    }
    let limits: Vec<_> = match cpus {
        Some(cpus) => pids.iter().map(|&pid| CpuLimit::new(pid, cpus)).collect(),
        None => Vec::new(),
    };
    if let Some(Err(why)) = limits.iter().find(|l| l.is_err()) {
        let why = why.clone();
        // The processes end before their cgroups are removed.
        drop(stack);
        drop(limits);
        return Err(why);
    }
    let limits: Vec<CpuLimit> = limits.into_iter().flatten().collect();
    // Each replica takes its part of the Kubernetes budget before the load starts (they announce every 5 s).
    for url in &urls {
        let want = format!("\nreflexion_replicas {replicas}\n");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !metrics_text(url).await.contains(&want) {
            assert!(
                std::time::Instant::now() < deadline,
                "{url} never counted {replicas} replicas"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    let before = Cpu::now();
    let (secs, results) = post_reports(&urls, n, concurrency).await;
    let cpu = Cpu::now().since(before);
    let accepted = results.iter().filter(|(_, s)| *s == 202).count();
    let mut latency: Vec<f64> = results.iter().map(|(l, _)| *l).collect();
    latency.sort_by(f64::total_cmp);
    let run = StoreRun {
        rate: accepted as f64 / secs,
        p99: percentile(&latency, 99.0),
        accepted,
        profile: profile(&urls).await,
        cpu,
        secs,
    };
    // The processes end before their cgroups are removed.
    drop(stack);
    drop(limits);
    Ok(run)
}

const AWAY_1: &str = "PostgreSQL across a network, 1 replica";
const AWAY_2: &str = "PostgreSQL across a network, 2 replicas";
/// Each replica held to a quarter of a CPU, as on a small machine of its own: what a replica adds when it brings its
/// own CPU, which on this one 2-CPU machine the unlimited replicas cannot. Four of them take one CPU and leave the
/// other to PostgreSQL and the clients. (Held to an eighth, a replica spends much of its share on the engine's work,
/// which goes by time, not by reports: the ratios then measure that, not the store.)
const QUARTER: f64 = 0.25;
const OWN_1: &str = "PostgreSQL, 1 replica of a quarter CPU";
const OWN_2: &str = "PostgreSQL, 2 replicas of a quarter CPU each";
const OWN_4: &str = "PostgreSQL, 4 replicas of a quarter CPU each";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// (i) stores: the same load on SQLite and on PostgreSQL with one, two and four API processes sharing it, each run
/// `BENCH_STORE_RUNS` times (the median is shown), with where the store's time went; then the learned-strategy path
/// on each store. One machine, one run of the bench: the ratios mean something.
pub async fn stores(figures: &mut Vec<Figure>) {
    let n = size("BENCH_STORE_REPORTS", 10_000, 300);
    let concurrency = size("BENCH_CLIENTS", 32, 4);
    let episodes = size("BENCH_STORE_EPISODES", 100_000, 1_000);
    let rounds = size("BENCH_ROUNDS", 2_000, 100);
    let runs = size("BENCH_STORE_RUNS", 3, 1);
    // Only the configurations whose label contains this text (to profile one of them); ratios need both sides.
    let only = std::env::var("BENCH_STORE_ONLY").unwrap_or_default();
    let part = "(i) stores";
    if crate::postgres::database().await.is_none() {
        println!("PostgreSQL is not installed: no store comparison");
        return;
    }
    let mut medians = std::collections::HashMap::new();
    // A database on another machine: each direction held back by a relay (tokio's timers round it up to whole
    // milliseconds), so that a round trip costs what it does across a network.
    let away = Duration::from_micros(500);
    let relayed_db = crate::relay::delayed_url(&crate::postgres::database().await.unwrap(), away);
    figures.push(Figure::new(
        part,
        "PostgreSQL across a network: a round trip (SELECT 1), median",
        crate::relay::round_trip_ms(&relayed_db).await,
        "ms",
    ));
    'configs: for (label, pg, replicas, target, relayed, cpus) in [
        ("SQLite", false, 1, Some(5000.0), false, None),
        ("PostgreSQL, 1 replica", true, 1, Some(5000.0), false, None),
        ("PostgreSQL, 2 replicas", true, 2, None, false, None),
        ("PostgreSQL, 4 replicas", true, 4, None, false, None),
        (AWAY_1, true, 1, None, true, None),
        (AWAY_2, true, 2, None, true, None),
        (OWN_1, true, 1, None, false, Some(QUARTER)),
        (OWN_2, true, 2, None, false, Some(QUARTER)),
        (OWN_4, true, 4, None, false, Some(QUARTER)),
    ] {
        if !label.contains(only.as_str()) {
            continue;
        }
        let mut done = Vec::new();
        for _ in 0..runs {
            let url = match pg {
                true => crate::postgres::database().await,
                false => None,
            }
            .map(|u| match relayed {
                true => crate::relay::delayed_url(&u, away),
                false => u,
            });
            match store_run(url, replicas, n, concurrency, cpus).await {
                Ok(run) => done.push(run),
                Err(why) => {
                    println!("{label}: no CPU quota ({why}): not measured");
                    continue 'configs;
                }
            }
        }
        let rate = median(done.iter().map(|r| r.rate).collect());
        let p99 = median(done.iter().map(|r| r.p99).collect());
        medians.insert(label, rate);
        let accepted = done.iter().map(|r| r.accepted).min().unwrap_or(0);
        figures.push(
            Figure::new(
                part,
                format!("{label}: {n} reports accepted (202), fewest of {runs} runs"),
                accepted as f64,
                "",
            )
            .target(Target::Exactly(n as f64)),
        );
        let mut f = Figure::new(
            part,
            format!("{label}: reports stored per second, median of {runs}"),
            rate,
            "/s",
        );
        if let Some(t) = target {
            f = f.target(Target::AtLeast(t));
        }
        figures.push(f);
        let mut f = Figure::new(
            part,
            format!("{label}: ingest latency p99, median of {runs}"),
            p99,
            "ms",
        );
        if label == "PostgreSQL, 1 replica" {
            f = f.target(Target::AtMost(25.0));
        }
        figures.push(f);
        // Where the time went, in the last run: the machine's CPUs (every process on them: the clients, the API
        // processes, PostgreSQL, simcluster), per batch of reports stored together, and every write's wait.
        let cpu = done.last().map(|r| r.cpu).unwrap_or_default();
        figures.push(Figure::new(
            part,
            format!("{label}: the machine's CPUs busy while the reports arrived"),
            100.0 * cpu.busy / cpu.all.max(f64::MIN_POSITIVE),
            "%",
        ));
        figures.push(Figure::new(
            part,
            format!("{label}: CPU time per 1,000 reports, all processes"),
            1000.0 * cpu.busy / n as f64,
            "s",
        ));
        for (name, secs) in PROCESSES.iter().zip(cpu.by) {
            figures.push(Figure::new(
                part,
                format!("{label}: CPU time per 1,000 reports, {name}"),
                1000.0 * secs / n as f64,
                "s",
            ));
        }
        if let (Some(cpus), Some(run)) = (cpus, done.last()) {
            figures.push(Figure::new(
                part,
                format!("{label}: the replicas' CPU time, share of their quota"),
                100.0 * run.cpu.by[1] / (cpus * replicas as f64 * run.secs),
                "%",
            ));
        }
        let p = done.last().map(|r| r.profile).unwrap_or_default();
        let per_batch = |secs: f64| secs * 1000.0 / p.batches.max(1.0);
        figures.push(Figure::new(
            part,
            format!("{label}: reports per batch"),
            p.reports / p.batches.max(1.0),
            "",
        ));
        let phases = if pg {
            // One call of the store's function: its locks, lookup, inserts and commit.
            vec![
                ("waiting for a connection", p.wait),
                ("the one call (locks, lookup, inserts, commit)", p.insert),
            ]
        } else {
            // Two round trips: BEGIN with the read, the inserts with the COMMIT (alone when nothing was new).
            vec![
                ("waiting for the writer lock", p.wait),
                ("BEGIN and reading what exists", p.lookup),
                ("inserting and committing", p.insert + p.commit),
            ]
        };
        for (phase, secs) in phases {
            figures.push(Figure::new(
                part,
                format!("{label}: per batch, {phase}"),
                per_batch(secs),
                "ms",
            ));
        }
        figures.push(Figure::new(
            part,
            format!("{label}: other write transactions (the engine's), mean wait for one"),
            (p.write_wait * 1000.0) / p.write_txs.max(1.0),
            "ms",
        ));
        figures.push(Figure::new(
            part,
            format!("{label}: other write transactions"),
            p.write_txs,
            "",
        ));
    }
    for (what, over, under, target) in [
        (
            "PostgreSQL across a network: 2 replicas over 1",
            AWAY_2,
            AWAY_1,
            1.6,
        ),
        (
            "PostgreSQL: 2 replicas over 1",
            "PostgreSQL, 2 replicas",
            "PostgreSQL, 1 replica",
            1.6,
        ),
        (
            "PostgreSQL: 4 replicas over 2",
            "PostgreSQL, 4 replicas",
            "PostgreSQL, 2 replicas",
            1.0,
        ),
        (
            "PostgreSQL, replicas of a quarter CPU each: 2 over 1",
            OWN_2,
            OWN_1,
            1.6,
        ),
        (
            "PostgreSQL, replicas of a quarter CPU each: 4 over 2",
            OWN_4,
            OWN_2,
            1.0,
        ),
    ] {
        if let (Some(over), Some(under)) = (medians.get(over), medians.get(under)) {
            figures.push(
                Figure::new(part, format!("{what} (medians)"), over / under, "×")
                    .target(Target::AtLeast(target)),
            );
        }
    }
    let dir = tempfile::tempdir().unwrap();
    for (label, url) in [
        ("SQLite", sqlite_url(dir.path())),
        ("PostgreSQL", crate::postgres::database().await.unwrap()),
    ] {
        if !label.contains(only.as_str()) && !only.contains(label) {
            continue;
        }
        let (_, _, _, decision_ms) = decisions(&url, episodes, rounds).await;
        figures.push(
            Figure::new(
                part,
                format!("{label} ({episodes} episodes): report stored -> plan chosen (learned strategy), p99"),
                percentile(&decision_ms, 99.0),
                "ms",
            )
            .target(Target::AtMost(5.0)),
        );
    }
}
