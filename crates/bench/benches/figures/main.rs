//! Every figure kube-reflexion claims, in one run: `cargo bench` (or `cargo bench -p bench -- <part>` for one of
//! detection | storm | outage | memory | ingest | decision | stores | recovery). It builds simcluster, reflexion-api and the
//! watcher in this bench's profile, starts them on loopback, prints one table of every figure with its target and
//! whether it was met, and writes `target/bench/figures.md` and PNG plots (latency CDFs, RSS over time) next to it.
//! It asserts nothing: these machines are shared, so read ratios within one run. `BENCH_SMALL=1` runs every part at
//! a small size (CI's smoke run); sizes are also set one by one (BENCH_FAILURES, BENCH_PODS, BENCH_REPORTS, ...).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod cpulimit;
// The tests' PostgreSQL harness: Debian's server, initdb in a temporary directory, a loopback port.
mod plot;
#[path = "../../../reflexion-api/tests/support/postgres.rs"]
mod postgres;
mod recovery;
mod relay;
mod stack;
mod watcher;

use stack::free_port;

use std::path::PathBuf;
use std::process::Command;

#[derive(Clone, Copy)]
pub enum Target {
    AtMost(f64),
    AtLeast(f64),
    Exactly(f64),
}

pub struct Figure {
    pub part: &'static str,
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
    pub target: Option<Target>,
}

impl Figure {
    pub fn new(
        part: &'static str,
        name: impl Into<String>,
        value: f64,
        unit: &'static str,
    ) -> Self {
        Self {
            part,
            name: name.into(),
            value,
            unit,
            target: None,
        }
    }

    pub fn target(mut self, t: Target) -> Self {
        self.target = Some(t);
        self
    }

    fn target_text(&self) -> String {
        let unit = if self.unit.is_empty() {
            String::new()
        } else {
            format!(" {}", self.unit)
        };
        match self.target {
            None => String::new(),
            Some(Target::AtMost(t)) => format!("≤ {}{unit}", number(t)),
            Some(Target::AtLeast(t)) => format!("≥ {}{unit}", number(t)),
            Some(Target::Exactly(t)) => format!("= {}{unit}", number(t)),
        }
    }

    fn verdict(&self) -> &'static str {
        let met = match self.target {
            None => return "",
            Some(_) if self.value.is_nan() => false,
            Some(Target::AtMost(t)) => self.value <= t,
            Some(Target::AtLeast(t)) => self.value >= t,
            Some(Target::Exactly(t)) => (self.value - t).abs() < 1e-9,
        };
        if met { "met" } else { "not met" }
    }
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if (v.fract() == 0.0 && v.abs() < 1e12) || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Points for a plot: a latency distribution (drawn as its CDF) or a line over time.
pub struct Series {
    pub plot: &'static str,
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub cdf: bool,
}

impl Series {
    pub fn cdf(plot: &'static str, label: &str, sorted_ms: Vec<f64>) -> Self {
        let n = sorted_ms.len().max(1) as f64;
        Self {
            plot,
            label: label.into(),
            points: sorted_ms
                .into_iter()
                .enumerate()
                .map(|(i, v)| (v, (i + 1) as f64 / n))
                .collect(),
            cdf: true,
        }
    }

    pub fn line(plot: &'static str, label: &str, points: Vec<(f64, f64)>) -> Self {
        Self {
            plot,
            label: label.into(),
            points,
            cdf: false,
        }
    }
}

pub fn out_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/figures-* -> target/bench
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .and_then(|d| d.parent())
        .map(|t| t.join("bench"))
        .unwrap_or_else(|| PathBuf::from("target/bench"));
    std::fs::create_dir_all(&dir).ok();
    dir
}

fn table(figures: &[Figure]) -> String {
    let mut out =
        String::from("| part | figure | value | target | |\n| --- | --- | --- | --- | --- |\n");
    for f in figures {
        out.push_str(&format!(
            "| {} | {} | {} {} | {} | {} |\n",
            f.part,
            f.name,
            number(f.value),
            f.unit,
            f.target_text(),
            f.verdict()
        ));
    }
    out
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").map(|m| m.trim().to_string()))
        .unwrap_or_default();
    format!("{cpus} CPUs ({model}), {mem} memory")
}

fn main() {
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let release = !cfg!(debug_assertions);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args([
        "build",
        "-p",
        "simcluster",
        "-p",
        "reflexion-api",
        "-p",
        "watcher",
        "--bins",
    ]);
    if release {
        build.arg("--release");
    }
    assert!(
        build.status().expect("cargo build").success(),
        "building the binaries failed"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let run = |part: &str| only.as_deref().is_none_or(|o| part.contains(o));
    let (mut figures, mut series) = (Vec::new(), Vec::new());
    let started = std::time::Instant::now();
    rt.block_on(async {
        if run("detection") {
            watcher::latency(&mut figures, &mut series).await;
        }
        if run("storm") {
            watcher::storm(&mut figures).await;
        }
        if run("memory") {
            watcher::memory(&mut figures, &mut series).await;
        }
        if run("outage") {
            watcher::outage(&mut figures).await;
        }
        if run("ingest") {
            api::ingest(&mut figures, &mut series).await;
        }
        if run("decision") {
            api::decision_and_recall(&mut figures).await;
        }
        if run("stores") {
            api::stores(&mut figures).await;
        }
        if run("recovery") {
            recovery::recovery(&mut figures).await;
        }
    });
    let date = chrono::Utc::now().format("%Y-%m-%d");
    let table = table(&figures);
    let header = format!(
        "Run on {date}, {} build, {}, in {:.0} s{}.\n\n",
        if release { "release" } else { "debug" },
        machine(),
        started.elapsed().as_secs_f64(),
        if std::env::var("BENCH_SMALL").is_ok_and(|v| v == "1") {
            ", small sizes (BENCH_SMALL=1)"
        } else {
            ""
        }
    );
    println!("\n{header}{table}");
    let dir = out_dir();
    std::fs::write(dir.join("figures.md"), format!("{header}{table}")).ok();
    match plot::all(&series, &dir) {
        Ok(files) => println!("plots: {}", files.join(", ")),
        Err(e) => println!("plots not drawn: {e}"),
    }
}
