//! The service's configuration: flags with environment fallbacks, and their validation into the engine's settings
//! — before anything binds a port, opens the database or reaches the cluster, with one precise error per bad value.

use crate::engine::{EngineConfig, PlannerMode};
use crate::llm::{Llm, LlmConfig, LlmMemory};
use clap::Parser;
use reflexion_core::policy::{Budget, Policy};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest policy file read.
const MAX_POLICY_BYTES: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} must be between 0 and 86400 seconds, got {value}")]
    Seconds { name: &'static str, value: f64 },
    #[error("{name} must be between {min} and {max}, got {value}")]
    Range {
        name: &'static str,
        min: f64,
        max: f64,
        value: f64,
    },
    #[error("{name} {value:?} is not a URL")]
    Url { name: &'static str, value: String },
    #[error("{0} is set but empty")]
    Empty(&'static str),
    #[error("--memory-ceiling {0:?} is not a memory quantity such as 2Gi")]
    MemoryCeiling(String),
    #[error("--auth-reads needs REFLEXION_API_TOKEN")]
    AuthReadsWithoutToken,
    #[error(
        "--listen {0} is reachable from other hosts and REFLEXION_API_TOKEN is not set: set a token, listen on \
         127.0.0.1, or pass --insecure-no-auth to let anyone who reaches it change the cluster"
    )]
    OpenWithoutToken(SocketAddr),
    #[error("policy file {path}: {why}")]
    Policy { path: PathBuf, why: String },
    #[error("building the LLM client: {0}")]
    Llm(String),
    #[error(
        "--cluster {0:?}: the name must be 1-253 ASCII letters, digits and -._:/@ (NAME or NAME=KUBECONFIG)"
    )]
    ClusterName(String),
    #[error("--cluster {0:?} is given twice")]
    ClusterTwice(String),
    #[error("--cluster-policy {0:?} must be NAME=POLICY_FILE")]
    ClusterPolicy(String),
    #[error("--cluster-policy names {0:?}, which no --cluster serves")]
    ClusterPolicyUnknown(String),
    #[error("{name} {path}: {why}")]
    File {
        name: &'static str,
        path: PathBuf,
        why: String,
    },
    #[error("--git-author-name and --git-author-email must be one line each, without <>")]
    Author,
    #[error("{0}")]
    Notify(String),
}

/// A cluster to serve, as `--cluster` names it; its policy is `--cluster-policy`'s for it, else `--policy-file`'s.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub name: String,
    /// That kubeconfig's current context; without one, the context `name` of the default kubeconfig.
    pub kubeconfig: Option<PathBuf>,
    pub policy: Policy,
}

/// The kube-reflexion API: receives failure reports, fixes them at the owning workload, verifies, reverts what did
/// not work, and learns from every outcome.
#[derive(Parser, Debug)]
#[command(version)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "REFLEXION_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// SQLite database (created if missing), or postgres://USER:PASSWORD@HOST/DB. Its password is never shown.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://reflexion.db",
        hide_env_values = true
    )]
    pub database_url: String,
    /// Ask this registry (or mirror) for image tags instead of each image's own registry.
    #[arg(long, env = "REFLEXION_REGISTRY_URL")]
    pub registry_url: Option<String>,
    /// Trials per incident before escalating.
    #[arg(long, env = "REFLEXION_MAX_TRIALS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub max_trials: u32,
    /// Seconds a fixed workload must stay Ready to count as verified.
    #[arg(long, env = "REFLEXION_VERIFY_WINDOW_SECS", default_value_t = 30.0)]
    pub verify_window_secs: f64,
    /// Seconds to wait for a fix to verify before reverting it.
    #[arg(long, env = "REFLEXION_VERIFY_TIMEOUT_SECS", default_value_t = 180.0)]
    pub verify_timeout_secs: f64,
    /// The highest memory limit the OOM rule sets automatically.
    #[arg(long, env = "REFLEXION_MEMORY_CEILING", default_value = "2Gi")]
    pub memory_ceiling: String,
    /// Share of choices between candidate strategies made at random (exploration), 0 to 1.
    #[arg(long, env = "REFLEXION_EXPLORATION_RATE", default_value_t = 0.2)]
    pub exploration_rate: f64,
    /// Circuit breaker: at most this many writes to the cluster per hour, all workloads together.
    #[arg(long, env = "REFLEXION_MAX_ACTIONS_PER_HOUR", default_value_t = 30)]
    pub max_actions_per_hour: u32,
    /// At most this many writes to one workload per hour.
    #[arg(
        long,
        env = "REFLEXION_MAX_WORKLOAD_ACTIONS_PER_HOUR",
        default_value_t = 6
    )]
    pub max_workload_actions_per_hour: u32,
    /// Policy file (JSON): modes per namespace, protected namespaces, automatic risk limit.
    #[arg(long, env = "REFLEXION_POLICY_FILE")]
    pub policy_file: Option<PathBuf>,
    /// A cluster to serve: `NAME=KUBECONFIG` (that file's current context) or `NAME` (that context of the default
    /// kubeconfig). Repeat it (or separate with commas) for several; each report names its cluster (the watcher's
    /// `--cluster-name`) and is acted on there only. Default: the one cluster of the default configuration
    /// (KUBECONFIG, ~/.kube/config or in-cluster), named after its current context.
    #[arg(long = "cluster", env = "REFLEXION_CLUSTERS", value_delimiter = ',')]
    pub clusters: Vec<String>,
    /// A cluster's own policy file, `NAME=POLICY_FILE`; the other clusters use --policy-file.
    #[arg(
        long = "cluster-policy",
        env = "REFLEXION_CLUSTER_POLICIES",
        value_delimiter = ','
    )]
    pub cluster_policies: Vec<String>,
    /// Require `Authorization: Bearer <token>` on mutating endpoints.
    #[arg(long, env = "REFLEXION_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Seconds between an action of one incident and an action of another on the same workload; a workload that
    /// fails again sooner is handed to a human instead of being changed again.
    #[arg(
        long,
        env = "REFLEXION_WORKLOAD_COOLDOWN_SECS",
        default_value_t = 120.0
    )]
    pub workload_cooldown_secs: f64,
    /// Incidents worked at once; more wait their turn in `reported` (stored, so a restart loses none). It bounds
    /// what a storm of distinct failures asks of the Kubernetes API and keeps reports answered fast meanwhile.
    #[arg(long, env = "REFLEXION_MAX_CONCURRENT_INCIDENTS", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_concurrent_incidents: u32,
    /// This replica's name in the claims it takes on incidents it works (several replicas can share one
    /// PostgreSQL). A restarted process with the same name resumes its own incidents at once; give each replica its
    /// own (in Kubernetes, the pod name).
    #[arg(long, env = "REFLEXION_REPLICA_ID", default_value_t = default_replica())]
    pub replica_id: String,
    /// How long a claim on an incident lasts unless its replica renews it (every third of it): how soon another
    /// replica resumes the incidents of one that died or lost the database.
    #[arg(long, env = "REFLEXION_CLAIM_TTL_SECS", default_value_t = 60.0)]
    pub claim_ttl_secs: f64,
    /// Requests a second the engine may send each cluster's Kubernetes API on average (client-go's token bucket; the
    /// kube-controller-manager runs with 20). A storm's incidents wait for their reads instead of flooding the API
    /// server. It is the fleet's budget: replicas sharing a database split it (and the burst) evenly.
    #[arg(long, env = "REFLEXION_KUBE_QPS", default_value_t = 50.0)]
    pub kube_qps: f64,
    /// Requests the engine may send the Kubernetes API at once before `--kube-qps` paces it.
    #[arg(long, env = "REFLEXION_KUBE_BURST", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub kube_burst: u32,
    /// Who plans first: `rules` (the LLM only where they find no fix) or `llm` (the model first, rules as fallback).
    #[arg(long, env = "REFLEXION_PLANNER", value_enum, default_value = "rules")]
    pub planner: PlannerMode,
    /// API key of an OpenAI-compatible endpoint; without it (and without --llm-base-url) no LLM is used.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<String>,
    /// Base URL of the OpenAI-compatible API (OpenAI, Ollama, vLLM, llama.cpp), e.g. http://127.0.0.1:8080/v1.
    #[arg(long, env = "OPENAI_BASE_URL")]
    pub llm_base_url: Option<String>,
    /// Model name sent to the endpoint.
    #[arg(long, env = "REFLEXION_LLM_MODEL", default_value = "gpt-4o-mini")]
    pub llm_model: String,
    /// Seconds to wait for one LLM answer before falling back to the rules.
    #[arg(long, env = "REFLEXION_LLM_TIMEOUT_SECS", default_value_t = 30.0)]
    pub llm_timeout_secs: f64,
    /// Most tokens an answer may use.
    #[arg(long, env = "REFLEXION_LLM_MAX_TOKENS", default_value_t = 400, value_parser = clap::value_parser!(u32).range(16..=8192))]
    pub llm_max_tokens: u32,
    /// Sampling temperature.
    #[arg(long, env = "REFLEXION_LLM_TEMPERATURE", default_value_t = 0.0)]
    pub llm_temperature: f32,
    /// Do not send `response_format: json_schema` (for servers that reject it).
    #[arg(long, env = "REFLEXION_LLM_NO_JSON_SCHEMA")]
    pub llm_no_json_schema: bool,
    /// Send real namespace, workload, pod, node and registry names instead of placeholders.
    #[arg(long, env = "REFLEXION_LLM_NO_REDACT")]
    pub llm_no_redact: bool,
    /// What LLM prompts may recall: `full` (lessons, learned strategies, this incident's failed attempts and
    /// reflections), `incident` (only the latter) or `none`. For experiments; production uses `full`.
    #[arg(long, env = "REFLEXION_LLM_MEMORY", value_enum, default_value = "full")]
    pub llm_memory: LlmMemory,
    /// Most LLM tokens one incident may use.
    #[arg(long, env = "REFLEXION_LLM_INCIDENT_TOKENS", default_value_t = 20_000)]
    pub llm_incident_tokens: u64,
    /// Most LLM tokens all incidents together may use per UTC day.
    #[arg(long, env = "REFLEXION_LLM_DAILY_TOKENS", default_value_t = 1_000_000)]
    pub llm_daily_tokens: u64,
    /// Require the bearer token on read endpoints too (/health and /metrics stay open for probes and scrapers).
    #[arg(long, env = "REFLEXION_AUTH_READS")]
    pub auth_reads: bool,
    /// Serve without a token on an address other than loopback: anyone who reaches it can approve changes to the
    /// cluster. Without this flag such a start is refused.
    #[arg(long, env = "REFLEXION_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// Export traces (a span per incident trial and per LLM call) over OTLP/HTTP to this collector, e.g.
    /// http://127.0.0.1:4318 (Jaeger, Tempo, the OpenTelemetry Collector, LangSmith's OTLP endpoint).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "REFLEXION_LOG_JSON")]
    pub log_json: bool,
    /// Where clones of GitOps repositories are kept (a directory per replica, a clone per repository; a cache, safe
    /// to delete while stopped).
    #[arg(long, env = "REFLEXION_GITOPS_WORKDIR", default_value_os_t = std::env::temp_dir().join("kube-reflexion-gitops"))]
    pub gitops_workdir: PathBuf,
    /// A file holding the HTTPS token git pushes with (a mounted Secret); it reaches git through its environment
    /// only, never a URL, an argument, a log or the store.
    #[arg(long, env = "REFLEXION_GIT_TOKEN_FILE")]
    pub git_token_file: Option<PathBuf>,
    /// The HTTPS user the token is sent as (`x-access-token` for GitHub, `oauth2` for GitLab).
    #[arg(long, env = "REFLEXION_GIT_USERNAME", default_value = "x-access-token")]
    pub git_username: String,
    /// An SSH private key file for ssh:// and git@host: repositories.
    #[arg(long, env = "REFLEXION_GIT_SSH_KEY_FILE")]
    pub git_ssh_key_file: Option<PathBuf>,
    /// The known_hosts file SSH servers are checked against (host keys are always checked).
    #[arg(long, env = "REFLEXION_GIT_KNOWN_HOSTS_FILE")]
    pub git_known_hosts_file: Option<PathBuf>,
    /// The author of kube-reflexion's commits.
    #[arg(
        long,
        env = "REFLEXION_GIT_AUTHOR_NAME",
        default_value = "kube-reflexion"
    )]
    pub git_author_name: String,
    #[arg(
        long,
        env = "REFLEXION_GIT_AUTHOR_EMAIL",
        default_value = "kube-reflexion@noreply.invalid"
    )]
    pub git_author_email: String,
    /// Seconds one git command may take.
    #[arg(long, env = "REFLEXION_GIT_TIMEOUT_SECS", default_value_t = 120.0)]
    pub git_timeout_secs: f64,
    /// Allow GitOps sources that are local paths or file:// URLs (tests, single-host setups): off, a GitOps object
    /// could otherwise make the service read its own disk.
    #[arg(long, env = "REFLEXION_GITOPS_ALLOW_FILE_URLS")]
    pub gitops_allow_file_urls: bool,
    /// Seconds to wait for the GitOps controller to apply a commit before the trial counts as not verified.
    #[arg(
        long,
        env = "REFLEXION_GITOPS_SYNC_TIMEOUT_SECS",
        default_value_t = 300.0
    )]
    pub gitops_sync_timeout_secs: f64,
    /// Seconds between looks at the pull requests that wait for approval (merged there: approved; closed: rejected).
    #[arg(long, env = "REFLEXION_GITOPS_POLL_SECS", default_value_t = 15.0)]
    pub gitops_poll_secs: f64,
    /// The forge that opens and merges pull requests for fixes that need approval: `github` or `gitlab`. Without
    /// one, a proposal is a branch, and the console's Approve merges it.
    #[arg(long, env = "REFLEXION_FORGE")]
    pub forge: Option<reflexion_gitops::forge::ForgeKind>,
    /// The forge's API (default https://api.github.com or https://gitlab.com/api/v4).
    #[arg(long, env = "REFLEXION_FORGE_URL")]
    pub forge_url: Option<String>,
    /// A file holding the forge's API token.
    #[arg(long, env = "REFLEXION_FORGE_TOKEN_FILE")]
    pub forge_token_file: Option<PathBuf>,
    /// The namespace Argo CD's Applications live in, for workloads whose tracking id does not name one.
    #[arg(long, env = "REFLEXION_ARGOCD_NAMESPACE", default_value = "argocd")]
    pub argocd_namespace: String,
    /// Send the moves a person must see (awaiting approval, escalated, resolved after more than one trial or an
    /// approval, reverted, failed) to `slack=URL` (an incoming webhook) or `webhook=URL` (signed JSON); repeatable.
    #[arg(
        long = "notify",
        env = "REFLEXION_NOTIFY",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub notify: Vec<String>,
    /// The shared secret webhooks are signed with (at least 16 bytes).
    #[arg(long, env = "REFLEXION_NOTIFY_SECRET", hide_env_values = true)]
    pub notify_secret: Option<String>,
    /// A file holding the webhooks' shared secret.
    #[arg(long, env = "REFLEXION_NOTIFY_SECRET_FILE")]
    pub notify_secret_file: Option<PathBuf>,
    /// The console's address as people reach it (e.g. https://reflexion.example.com): notifications link to it.
    #[arg(long, env = "REFLEXION_CONSOLE_URL")]
    pub console_url: Option<String>,
}

/// What the flags configure, validated.
#[derive(Debug)]
pub struct Settings {
    pub engine: EngineConfig,
    /// The clusters `--cluster` names; empty for the one cluster of the default configuration.
    pub clusters: Vec<ClusterSpec>,
    pub api_token: Option<String>,
    pub auth_reads: bool,
    pub registry_url: Option<String>,
    /// The Kubernetes client's rate limit: (requests a second, burst).
    pub kube_rate: (f64, u32),
    /// Where notifications go; None without `--notify`.
    pub notify: Option<reflexion_notify::Settings>,
}

impl TryFrom<&Args> for Settings {
    type Error = ConfigError;

    fn try_from(args: &Args) -> Result<Self, ConfigError> {
        if args.api_token.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::Empty("REFLEXION_API_TOKEN"));
        }
        if args.auth_reads && args.api_token.is_none() {
            return Err(ConfigError::AuthReadsWithoutToken);
        }
        if args.api_token.is_none() && !args.listen.ip().is_loopback() && !args.insecure_no_auth {
            return Err(ConfigError::OpenWithoutToken(args.listen));
        }
        if let Some(u) = &args.registry_url {
            url("--registry-url", u)?;
        }
        let engine = EngineConfig {
            workload_cooldown: if args.workload_cooldown_secs == 0.0 {
                Duration::ZERO
            } else {
                seconds("--workload-cooldown-secs", args.workload_cooldown_secs)?
            },
            llm: llm_config(args)?
                .map(|c| Llm::new(c).map_err(|e| ConfigError::Llm(e.to_string())))
                .transpose()?,
            planner: args.planner,
            max_concurrent_incidents: args.max_concurrent_incidents as usize,
            replica: match args.replica_id.trim() {
                "" => return Err(ConfigError::Empty("REFLEXION_REPLICA_ID")),
                id => id.to_string(),
            },
            claim_ttl: seconds("--claim-ttl-secs", args.claim_ttl_secs)?,
            kube_share: crate::cluster::throttle::Share::new(),
            max_trials: args.max_trials,
            verify_window: seconds("--verify-window-secs", args.verify_window_secs)?,
            verify_timeout: seconds("--verify-timeout-secs", args.verify_timeout_secs)?,
            policy: load_policy(args.policy_file.as_deref())?,
            exploration_rate: range("--exploration-rate", args.exploration_rate, 0.0, 1.0)?,
            budget: Budget {
                actions_per_hour: args.max_actions_per_hour,
                workload_actions_per_hour: args.max_workload_actions_per_hour,
            },
            memory_ceiling: reflexion_core::quantity::parse_bytes(&args.memory_ceiling)
                .filter(|b| *b > 0)
                .ok_or_else(|| ConfigError::MemoryCeiling(args.memory_ceiling.clone()))?,
            gitops: std::sync::Arc::new(gitops(args)?),
            gitops_sync_timeout: seconds(
                "--gitops-sync-timeout-secs",
                args.gitops_sync_timeout_secs,
            )?,
            gitops_poll: seconds("--gitops-poll-secs", args.gitops_poll_secs)?,
            argocd_namespace: match args.argocd_namespace.trim() {
                ns if reflexion_core::names::is_dns1123_label(ns) => ns.to_string(),
                _ => return Err(ConfigError::Empty("REFLEXION_ARGOCD_NAMESPACE")),
            },
        };
        Ok(Self {
            clusters: clusters(args, &engine.policy)?,
            engine,
            api_token: args.api_token.clone(),
            auth_reads: args.auth_reads,
            registry_url: args.registry_url.clone(),
            kube_rate: (
                range("--kube-qps", args.kube_qps, 0.1, 100_000.0)?,
                args.kube_burst,
            ),
            notify: crate::notify::settings(args)?,
        })
    }
}

/// A secret file: readable and not empty.
fn secret_file(
    name: &'static str,
    path: &Path,
) -> Result<reflexion_gitops::git::Secret, ConfigError> {
    let err = |why: String| ConfigError::File {
        name,
        path: path.to_path_buf(),
        why,
    };
    reflexion_gitops::git::Secret::from_file(path)
        .map_err(|e| err(e.to_string()))?
        .ok_or_else(|| err("is empty".into()))
}

/// The Git write path: credentials read now (a bad file stops the start, not the first fix), the forge's client.
fn gitops(args: &Args) -> Result<reflexion_gitops::Gitops, ConfigError> {
    use reflexion_gitops::forge::{Forge, ForgeKind};
    use reflexion_gitops::git::{Credentials, Git};
    let one_line = |s: &str| !s.trim().is_empty() && !s.contains(['\n', '<', '>']);
    if !one_line(&args.git_author_name) || !one_line(&args.git_author_email) {
        return Err(ConfigError::Author);
    }
    for (name, path) in [
        ("--git-ssh-key-file", &args.git_ssh_key_file),
        ("--git-known-hosts-file", &args.git_known_hosts_file),
    ] {
        if let Some(p) = path
            && !p.is_file()
        {
            return Err(ConfigError::File {
                name,
                path: p.clone(),
                why: "is not a readable file".into(),
            });
        }
    }
    let token = args
        .git_token_file
        .as_deref()
        .map(|p| secret_file("--git-token-file", p))
        .transpose()?;
    let forge = match args.forge {
        None => None,
        Some(kind) => {
            let base = args.forge_url.clone().unwrap_or_else(|| match kind {
                ForgeKind::Github => "https://api.github.com".into(),
                ForgeKind::Gitlab => "https://gitlab.com/api/v4".into(),
            });
            url("--forge-url", &base)?;
            let token = args
                .forge_token_file
                .as_deref()
                .map(|p| secret_file("--forge-token-file", p))
                .transpose()?;
            Some(
                Forge::new(kind, &base, token).map_err(|e| ConfigError::File {
                    name: "--forge",
                    path: PathBuf::from(&base),
                    why: e.to_string(),
                })?,
            )
        }
    };
    // One directory per replica: two processes never share a clone (each serializes its own changes to it).
    let replica: String = args
        .replica_id
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok(reflexion_gitops::Gitops::new(reflexion_gitops::Config {
        workdir: args.gitops_workdir.join(replica),
        git: Git {
            credentials: Credentials {
                username: args.git_username.clone(),
                token,
                ssh_key: args.git_ssh_key_file.clone(),
                known_hosts: args.git_known_hosts_file.clone(),
            },
            timeout: seconds("--git-timeout-secs", args.git_timeout_secs)?,
            allow_file: args.gitops_allow_file_urls,
        },
        author_name: args.git_author_name.trim().to_string(),
        author_email: args.git_author_email.trim().to_string(),
        forge,
    }))
}

fn seconds(name: &'static str, value: f64) -> Result<Duration, ConfigError> {
    if !(value.is_finite() && value > 0.0 && value <= 86_400.0) {
        return Err(ConfigError::Seconds { name, value });
    }
    Ok(Duration::from_secs_f64(value))
}

fn range(name: &'static str, value: f64, min: f64, max: f64) -> Result<f64, ConfigError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::Range {
            name,
            min,
            max,
            value,
        })
    }
}

pub(crate) fn url(name: &'static str, value: &str) -> Result<(), ConfigError> {
    reqwest::Url::parse(value)
        .map(|_| ())
        .map_err(|_| ConfigError::Url {
            name,
            value: value.to_string(),
        })
}

/// `--cluster` and `--cluster-policy`, each name checked, each policy file read.
fn clusters(args: &Args, default_policy: &Policy) -> Result<Vec<ClusterSpec>, ConfigError> {
    let mut specs: Vec<ClusterSpec> = Vec::new();
    for c in &args.clusters {
        let (name, kubeconfig) = match c.split_once('=') {
            Some((n, path)) if !path.is_empty() => (n, Some(PathBuf::from(path))),
            Some(_) => return Err(ConfigError::ClusterName(c.clone())),
            None => (c.as_str(), None),
        };
        if !reflexion_core::names::is_cluster_name(name) {
            return Err(ConfigError::ClusterName(c.clone()));
        }
        if specs.iter().any(|s| s.name == name) {
            return Err(ConfigError::ClusterTwice(name.to_string()));
        }
        specs.push(ClusterSpec {
            name: name.to_string(),
            kubeconfig,
            policy: default_policy.clone(),
        });
    }
    for p in &args.cluster_policies {
        let Some((name, path)) = p
            .split_once('=')
            .filter(|(n, f)| !n.is_empty() && !f.is_empty())
        else {
            return Err(ConfigError::ClusterPolicy(p.clone()));
        };
        let spec = specs
            .iter_mut()
            .find(|s| s.name == name)
            .ok_or_else(|| ConfigError::ClusterPolicyUnknown(name.to_string()))?;
        spec.policy = load_policy(Some(Path::new(path)))?;
    }
    Ok(specs)
}

fn load_policy(path: Option<&Path>) -> Result<Policy, ConfigError> {
    let Some(path) = path else {
        return Ok(Policy::default());
    };
    let err = |why: String| ConfigError::Policy {
        path: path.to_path_buf(),
        why,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.len() > MAX_POLICY_BYTES {
        return Err(err(format!("larger than {MAX_POLICY_BYTES} bytes")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| err(format!("not a valid policy: {e}")))
}

/// The LLM's settings, when an endpoint is configured (a key, or a base URL for local servers that need none).
fn llm_config(args: &Args) -> Result<Option<LlmConfig>, ConfigError> {
    if args.openai_api_key.is_none() && args.llm_base_url.is_none() {
        return Ok(None);
    }
    if args.openai_api_key.as_deref().is_some_and(str::is_empty) {
        return Err(ConfigError::Empty("OPENAI_API_KEY"));
    }
    let base_url = args
        .llm_base_url
        .clone()
        .unwrap_or_else(|| "https://api.openai.com/v1".into());
    url("--llm-base-url", &base_url)?;
    range(
        "--llm-temperature",
        f64::from(args.llm_temperature),
        0.0,
        2.0,
    )?;
    Ok(Some(LlmConfig {
        base_url,
        api_key: args.openai_api_key.clone().unwrap_or_else(|| "none".into()),
        model: args.llm_model.clone(),
        timeout: seconds("--llm-timeout-secs", args.llm_timeout_secs)?,
        max_tokens: args.llm_max_tokens,
        temperature: args.llm_temperature,
        json_schema: !args.llm_no_json_schema,
        redact: !args.llm_no_redact,
        incident_token_budget: args.llm_incident_tokens,
        daily_token_budget: args.llm_daily_tokens,
        memory: args.llm_memory,
    }))
}

/// The host's name (a pod's name in Kubernetes), else one name for every process on the machine.
fn default_replica() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "reflexion-api".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<Settings, String> {
        let mut argv = vec!["reflexion-api"];
        argv.extend_from_slice(extra);
        let args = Args::try_parse_from(argv).map_err(|e| e.to_string())?;
        Settings::try_from(&args).map_err(|e| e.to_string())
    }

    #[test]
    fn every_bad_value_is_refused_with_its_own_reason() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--verify-window-secs", "0"],
                "--verify-window-secs must be between 0 and 86400 seconds, got 0",
            ),
            (
                &["--verify-timeout-secs", "NaN"],
                "--verify-timeout-secs must be between",
            ),
            (
                &["--workload-cooldown-secs=-1"],
                "--workload-cooldown-secs must be between",
            ),
            (
                &["--exploration-rate", "1.5"],
                "--exploration-rate must be between 0 and 1, got 1.5",
            ),
            (
                &["--memory-ceiling", "lots"],
                "--memory-ceiling \"lots\" is not a memory quantity",
            ),
            (&["--memory-ceiling", "0"], "is not a memory quantity"),
            (
                &["--registry-url", "not a url"],
                "--registry-url \"not a url\" is not a URL",
            ),
            (&["--api-token", ""], "REFLEXION_API_TOKEN is set but empty"),
            (
                &["--replica-id", " "],
                "REFLEXION_REPLICA_ID is set but empty",
            ),
            (&["--claim-ttl-secs", "0"], "--claim-ttl-secs"),
            (&["--auth-reads"], "--auth-reads needs REFLEXION_API_TOKEN"),
            (
                &["--listen", "0.0.0.0:8000"],
                "--listen 0.0.0.0:8000 is reachable from other hosts and REFLEXION_API_TOKEN is not set",
            ),
            (
                &["--listen", "[::]:8000"],
                "--listen [::]:8000 is reachable from other hosts",
            ),
            (
                &["--listen", "10.0.0.5:8000"],
                "REFLEXION_API_TOKEN is not set",
            ),
            (
                &["--llm-base-url", "::"],
                "--llm-base-url \"::\" is not a URL",
            ),
            (&["--openai-api-key", ""], "OPENAI_API_KEY is set but empty"),
            (
                &["--openai-api-key", "k", "--llm-temperature", "3"],
                "--llm-temperature must be between 0 and 2",
            ),
            (
                &["--openai-api-key", "k", "--llm-timeout-secs", "0"],
                "--llm-timeout-secs must be between",
            ),
            (
                &["--policy-file", "/nonexistent/policy.json"],
                "policy file /nonexistent/policy.json",
            ),
            (
                &["--cluster", "prod eu"],
                "--cluster \"prod eu\": the name must be",
            ),
            (
                &["--cluster", "=/tmp/kc"],
                "--cluster \"=/tmp/kc\": the name must be",
            ),
            (
                &["--cluster", "prod="],
                "--cluster \"prod=\": the name must be",
            ),
            (
                &["--cluster", "prod=/a", "--cluster", "prod=/b"],
                "--cluster \"prod\" is given twice",
            ),
            (
                &["--cluster", "prod", "--cluster-policy", "prod"],
                "--cluster-policy \"prod\" must be NAME=POLICY_FILE",
            ),
            (
                &["--cluster", "prod", "--cluster-policy", "dev=/tmp/p.json"],
                "--cluster-policy names \"dev\", which no --cluster serves",
            ),
            (
                &[
                    "--cluster",
                    "prod",
                    "--cluster-policy",
                    "prod=/nonexistent/p.json",
                ],
                "policy file /nonexistent/p.json",
            ),
            (
                &["--notify", "teams=https://example.com"],
                "--notify \"teams\": unknown kind",
            ),
            (
                &["--notify", "webhook=ftp://example.com/x"],
                "scheme \"ftp\"",
            ),
            (
                &["--notify", "webhook=https://example.com/x"],
                "needs --notify-secret or --notify-secret-file",
            ),
            (
                &[
                    "--notify",
                    "slack=https://hooks.slack.com/x",
                    "--notify-secret",
                    "short",
                ],
                "at least 16 bytes, got 5",
            ),
            (
                &["--notify-secret-file", "/nonexistent/secret"],
                "--notify-secret-file /nonexistent/secret",
            ),
            (
                &["--console-url", "::"],
                "--console-url \"::\" is not a URL",
            ),
        ];
        for (argv, want) in cases {
            match parse(argv) {
                Ok(_) => panic!("{argv:?} was accepted"),
                Err(e) => assert!(e.contains(want), "{argv:?}: {e}"),
            }
        }
    }

    #[test]
    fn defaults_and_good_values_are_accepted() {
        let s = parse(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert!(s.engine.llm.is_none() && s.api_token.is_none());
        assert_eq!(s.engine.verify_window, Duration::from_secs(30));
        assert_eq!(s.engine.memory_ceiling, 2 * 1024 * 1024 * 1024);
        let s = parse(&[
            "--api-token",
            "t",
            "--auth-reads",
            "--llm-base-url",
            "http://127.0.0.1:8080/v1",
            "--workload-cooldown-secs",
            "0",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(s.auth_reads && s.engine.llm.is_some());
        assert_eq!(s.engine.workload_cooldown, Duration::ZERO);
        assert!(s.clusters.is_empty());
        for open in [
            &["--listen", "0.0.0.0:8000", "--api-token", "t"][..],
            &["--listen", "0.0.0.0:8000", "--insecure-no-auth"],
            &["--listen", "[::1]:8000"],
        ] {
            parse(open).unwrap_or_else(|e| panic!("{open:?}: {e}"));
        }
        let s = parse(&[
            "--cluster",
            "staging=/etc/kube/staging",
            "--cluster",
            "arn:aws:eks:eu-west-1:1:cluster/prod,kind-dev",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<_> = s
            .clusters
            .iter()
            .map(|c| (c.name.as_str(), c.kubeconfig.as_deref()))
            .collect();
        assert_eq!(
            names,
            [
                ("staging", Some(Path::new("/etc/kube/staging"))),
                ("arn:aws:eks:eu-west-1:1:cluster/prod", None),
                ("kind-dev", None)
            ]
        );
    }

    #[test]
    fn a_policy_file_is_read_and_bounded() {
        let dir = std::env::temp_dir().join(format!("reflexion-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let good = dir.join("good.json");
        std::fs::write(&good, r#"{"default_mode": "approve"}"#).unwrap_or_else(|e| panic!("{e}"));
        let bad = dir.join("bad.json");
        std::fs::write(&bad, r#"{"default_mode": "yolo"}"#).unwrap_or_else(|e| panic!("{e}"));
        let big = dir.join("big.json");
        std::fs::write(&big, vec![b' '; 2 * 1024 * 1024]).unwrap_or_else(|e| panic!("{e}"));
        assert!(load_policy(Some(&good)).is_ok());
        let e = load_policy(Some(&bad))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("not a valid policy"), "{e}");
        let e = load_policy(Some(&big))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("larger than"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
