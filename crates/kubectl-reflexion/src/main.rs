//! `kubectl reflexion`: kube-reflexion from the command line. On PATH as `kubectl-reflexion`, kubectl runs it as a
//! plugin. It speaks to reflexion-api's REST API (`--api-url`, the token) and, for `explain`, to the cluster as
//! kubectl does (`--kubeconfig`, `KUBECONFIG`, `--context`, `-n`).

mod api;
mod explain;
mod render;

use api::{Api, ApiError};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};
use std::io::{BufRead, Write};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "kubectl-reflexion",
    bin_name = "kubectl-reflexion",
    version,
    about = "kube-reflexion's incidents, approvals and memory, from kubectl"
)]
struct Cli {
    /// reflexion-api's address.
    #[arg(
        long,
        env = "REFLEXION_API_URL",
        default_value = "http://127.0.0.1:8000",
        global = true
    )]
    api_url: String,
    /// The API's bearer token.
    #[arg(
        long,
        env = "REFLEXION_API_TOKEN",
        hide_env_values = true,
        global = true
    )]
    token: Option<String>,
    /// A file holding the API's bearer token.
    #[arg(long, env = "REFLEXION_API_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    /// The kubeconfig to read the cluster with (else KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    context: Option<String>,
    /// The namespace (default: the context's).
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Json,
    Yaml,
    Wide,
}

#[derive(Subcommand)]
enum Command {
    /// List incidents, newest first, as `kubectl get` would.
    Incidents {
        #[arg(short = 'o', long, value_enum)]
        output: Option<Output>,
        /// Only incidents in this state (e.g. awaiting_approval).
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// After the list, print each incident again as it moves (the API's live feed).
        #[arg(short = 'w', long)]
        watch: bool,
    },
    /// One incident: its timeline, trials, commands, verification and writes.
    Show {
        id: String,
        #[arg(short = 'o', long, value_enum)]
        output: Option<Output>,
    },
    /// Approve the fix an incident waits with: prints the exact command or Git change, then asks.
    Approve {
        id: String,
        /// Do not ask.
        #[arg(short = 'y', long)]
        yes: bool,
        /// Who approves (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Reject the fix an incident waits with; nothing runs.
    Reject {
        id: String,
        #[arg(long)]
        reason: String,
        #[arg(short = 'y', long)]
        yes: bool,
        #[arg(long)]
        by: Option<String>,
    },
    /// The memory: statistics, learned strategies, lessons; clearing it.
    Memory {
        #[command(subcommand)]
        what: Memory,
    },
    /// What kube-reflexion knows about a pod's workload: open incident, last fixes, learned strategies.
    Explain { pod: String },
    /// A shell completion script: `source <(kubectl-reflexion completion bash)`.
    Completion { shell: clap_complete::Shell },
}

#[derive(Subcommand)]
enum Memory {
    Stats {
        #[arg(short = 'o', long, value_enum)]
        output: Option<Output>,
    },
    Strategies {
        #[arg(short = 'o', long, value_enum)]
        output: Option<Output>,
    },
    Lessons {
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        #[arg(short = 'o', long, value_enum)]
        output: Option<Output>,
    },
    /// Forget: everything, or only the strategies or the episodes (with their lessons). Asks first.
    Clear {
        #[arg(long, value_parser = ["strategies", "episodes"])]
        only: Option<String>,
        #[arg(short = 'y', long)]
        yes: bool,
    },
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Explain(#[from] explain::ExplainError),
    #[error("incident {id} is {state}, not awaiting approval")]
    NotWaiting { id: String, state: String },
    #[error("not confirmed: nothing was done (answer y, or pass --yes)")]
    NotConfirmed,
    #[error("--token-file {path}: {why}")]
    TokenFile { path: String, why: String },
    #[error("-o {0} is not an output of this command")]
    Output(&'static str),
    #[error("writing the output: {0}")]
    Io(#[from] std::io::Error),
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("error: {}", api::one_line(&e.to_string()));
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    if let Command::Completion { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "kubectl-reflexion",
            &mut std::io::stdout(),
        );
        return Ok(());
    }
    let token = match &cli.token_file {
        Some(p) => Some(read_token(p)?),
        None => cli.token.clone(),
    };
    let api = Api::new(&cli.api_url, token)?;
    let now = chrono::Utc::now();
    match &cli.command {
        Command::Incidents {
            output,
            state,
            limit,
            watch,
        } => {
            let mut path = format!("/api/v1/reflexion/incidents?limit={limit}");
            if let Some(s) = state {
                path.push_str(&format!("&state={}", explain::path_segment(s)));
            }
            let list = api.get(&path).await?;
            let items: Vec<Value> = list["incidents"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|i| {
                    cli.namespace
                        .as_ref()
                        .is_none_or(|n| i["namespace"] == n.as_str())
                })
                .cloned()
                .collect();
            let wide = *output == Some(Output::Wide);
            match output {
                Some(Output::Json) => print_json(&json!({"incidents": items}))?,
                Some(Output::Yaml) => print_yaml(&json!({"incidents": items}))?,
                _ if items.is_empty() && !watch => eprintln!("No incidents found."),
                _ => println!("{}", render::incidents(&items, wide, now)),
            }
            if *watch {
                watch_incidents(&api, wide, *output, cli.namespace.as_deref()).await?;
            }
        }
        Command::Show { id, output } => {
            let d = incident(&api, id).await?;
            match output {
                Some(Output::Json) => print_json(&d)?,
                Some(Output::Yaml) => print_yaml(&d)?,
                Some(Output::Wide) => return Err(CliError::Output("wide")),
                None => println!("{}", render::detail(&d, now)),
            }
        }
        Command::Approve { id, yes, by } => {
            let d = waiting(&api, id).await?;
            println!(
                "Incident {id}: {} {}/{} ({})\nApproving runs:\n{}",
                d["workload"]["kind"].as_str().unwrap_or(""),
                d["namespace"].as_str().unwrap_or(""),
                d["workload"]["name"].as_str().unwrap_or(""),
                d["signature"].as_str().unwrap_or(""),
                render::pending(&d)
            );
            confirm("Approve?", *yes)?;
            let r = api
                .post(&decision_path(id, "approve"), &json!({"by": who(by)}))
                .await?;
            println!(
                "incident {id} {}",
                r["status"].as_str().unwrap_or("approved")
            );
        }
        Command::Reject {
            id,
            reason,
            yes,
            by,
        } => {
            let d = waiting(&api, id).await?;
            println!(
                "Incident {id}: rejecting, nothing will run:\n{}",
                render::pending(&d)
            );
            confirm("Reject?", *yes)?;
            let r = api
                .post(
                    &decision_path(id, "reject"),
                    &json!({"by": who(by), "reason": reason}),
                )
                .await?;
            println!(
                "incident {id} {}",
                r["status"].as_str().unwrap_or("rejected")
            );
        }
        Command::Memory { what } => memory(&api, what, now).await?,
        Command::Explain { pod } => {
            let (client, context_ns) =
                explain::client(cli.kubeconfig.as_deref(), cli.context.as_deref()).await?;
            let ns = cli.namespace.clone().unwrap_or(context_ns);
            println!("{}", explain::explain(&api, client, &ns, pod).await?);
        }
        Command::Completion { .. } => {}
    }
    Ok(())
}

async fn memory(
    api: &Api,
    what: &Memory,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), CliError> {
    let table = match what {
        Memory::Stats { output } => {
            let s = api.get("/api/v1/memory/statistics").await?;
            output.map_or_else(|| Ok(render::stats(&s)), formatted(&s))?
        }
        Memory::Strategies { output } => {
            let s = api.get("/api/v1/memory/strategies?limit=1000").await?;
            let list = s["strategies"].as_array().cloned().unwrap_or_default();
            output.map_or_else(|| Ok(render::strategies(&list)), formatted(&s))?
        }
        Memory::Lessons { limit, output } => {
            let e = api
                .get(&format!("/api/v1/memory/episodes?limit={limit}"))
                .await?;
            let list = e["episodes"].as_array().cloned().unwrap_or_default();
            output.map_or_else(|| Ok(render::lessons(&list, now)), formatted(&e))?
        }
        Memory::Clear { only, yes } => {
            let path = match only.as_deref() {
                Some("strategies") => "/api/v1/memory/strategies",
                Some(_) => "/api/v1/memory/episodes",
                None => "/api/v1/memory/clear",
            };
            let what = only
                .as_deref()
                .unwrap_or("all episodes, lessons and strategies");
            println!("This forgets {what}: kube-reflexion starts learning again from nothing.");
            confirm("Clear?", *yes)?;
            let r = api.delete(path).await?;
            format!("cleared: {}", r["deleted"])
        }
    };
    println!("{table}");
    Ok(())
}

/// `-o json|yaml` of a memory answer.
fn formatted(v: &Value) -> impl FnOnce(Output) -> Result<String, CliError> + '_ {
    move |o| match o {
        Output::Json => {
            serde_json::to_string_pretty(v).map_err(|e| CliError::Io(std::io::Error::other(e)))
        }
        Output::Yaml => {
            serde_yaml::to_string(v).map_err(|e| CliError::Io(std::io::Error::other(e)))
        }
        Output::Wide => Err(CliError::Output("wide")),
    }
}

async fn incident(api: &Api, id: &str) -> Result<Value, CliError> {
    Ok(api
        .get(&format!(
            "/api/v1/reflexion/incidents/{}",
            explain::path_segment(id)
        ))
        .await?)
}

async fn waiting(api: &Api, id: &str) -> Result<Value, CliError> {
    let d = incident(api, id).await?;
    match d["state"].as_str() {
        Some("awaiting_approval") => Ok(d),
        other => Err(CliError::NotWaiting {
            id: id.to_string(),
            state: other.unwrap_or("unknown").to_string(),
        }),
    }
}

fn decision_path(id: &str, verb: &str) -> String {
    format!(
        "/api/v1/reflexion/incidents/{}/{verb}",
        explain::path_segment(id)
    )
}

fn who(by: &Option<String>) -> String {
    by.clone()
        .or_else(|| std::env::var("USER").ok())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "kubectl-reflexion".into())
}

/// Ask on the terminal (or read the answer piped in); only `y`/`yes` goes on.
fn confirm(question: &str, yes: bool) -> Result<(), CliError> {
    if yes {
        return Ok(());
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(CliError::NotConfirmed),
    }
}

fn read_token(path: &std::path::Path) -> Result<String, CliError> {
    let err = |why: String| CliError::TokenFile {
        path: path.display().to_string(),
        why,
    };
    let len = std::fs::metadata(path)
        .map_err(|e| err(e.to_string()))?
        .len();
    if len > 4096 {
        return Err(err(format!("is {len} bytes; a token is one line")));
    }
    let t = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    match t.trim() {
        "" => Err(err("is empty".into())),
        t => Ok(t.to_string()),
    }
}

fn print_json(v: &Value) -> Result<(), CliError> {
    let text =
        serde_json::to_string_pretty(v).map_err(|e| CliError::Io(std::io::Error::other(e)))?;
    println!("{text}");
    Ok(())
}

fn print_yaml(v: &Value) -> Result<(), CliError> {
    let text = serde_yaml::to_string(v).map_err(|e| CliError::Io(std::io::Error::other(e)))?;
    print!("{text}");
    Ok(())
}

/// Each incident again whenever it moves, as `kubectl get -w` prints an object on each change.
async fn watch_incidents(
    api: &Api,
    wide: bool,
    output: Option<Output>,
    namespace: Option<&str>,
) -> Result<(), CliError> {
    api.follow(async |t: Value| {
        let Some(id) = t["incident_id"].as_str() else {
            return Ok(());
        };
        let i = api
            .get(&format!(
                "/api/v1/reflexion/incidents/{}",
                explain::path_segment(id)
            ))
            .await?;
        if namespace.is_some_and(|n| i["namespace"] != n) {
            return Ok(());
        }
        let line = match output {
            Some(Output::Json) => serde_json::to_string(&i).unwrap_or_default(),
            Some(Output::Yaml) => format!("---\n{}", serde_yaml::to_string(&i).unwrap_or_default()),
            _ => render::incidents(&[i], wide, chrono::Utc::now())
                .lines()
                .nth(1)
                .unwrap_or_default()
                .to_string(),
        };
        println!("{line}");
        let _ = std::io::stdout().flush();
        Ok(())
    })
    .await?;
    Ok(())
}
