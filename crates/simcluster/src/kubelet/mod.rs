//! The kubelet of the simulated node: runs the containers of pods bound to it through the image catalog and the
//! process model, and reports what a real kubelet (with containerd) reports: waiting reasons and messages, exit codes,
//! `lastState.terminated`, restart counts with the crash back-off, probe results, logs and events.

use crate::catalog::Pull;
use crate::controllers::node_lifecycle::{LEASE_RENEW, lease_object};
use crate::events::{Recorder, Source};
use crate::process::{self, Outcome, Program};
use crate::store::now;
use crate::{Cluster, quantity, resources};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_millis(50);
const PULL_TIME: Duration = Duration::from_millis(800);
/// How long `ErrImagePull` shows before the next sync turns it into `ImagePullBackOff`.
const ERR_IMAGE_PULL_SHOWN: Duration = Duration::from_secs(2);
/// How long a terminated container shows before the kubelet restarts it or puts it into `CrashLoopBackOff`.
const TERMINATED_SHOWN: Duration = Duration::from_secs(1);
/// The kubelet's periodic pod sync (`--sync-frequency`): in the current timeline, the only moment a container in
/// back-off is shown as `CrashLoopBackOff`.
const RESYNC: Duration = Duration::from_secs(60);
const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A process using more memory than its limit is killed this long after it starts.
const OOM_AFTER: Duration = Duration::from_millis(1500);
const CONFIG_RETRY: Duration = Duration::from_secs(2);

mod config;
mod eviction;
mod logs;
mod probe;
pub mod server;
mod status;
mod termination;

use config::{mounts_ok, resolve_env};
pub use logs::{LogQuery, Logs, container_logs};
use status::pod_status;

#[derive(Debug, Clone)]
struct Terminated {
    exit_code: i32,
    reason: String,
    message: Option<String>,
    started_at: String,
    finished_at: String,
    container_id: String,
}

impl Terminated {
    fn json(&self) -> Value {
        let mut t = json!({"exitCode": self.exit_code, "reason": self.reason, "startedAt": self.started_at,
                           "finishedAt": self.finished_at, "containerID": self.container_id});
        if let Some(m) = &self.message {
            t["message"] = json!(m);
        }
        t
    }
}

/// How a crash-looping container shows between restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum CrashTimeline {
    /// A current kubelet (v1.36, containerd 2): `terminated` (`Error`, RESTARTS n, `lastState` of attempt n-1)
    /// between restarts; `waiting: CrashLoopBackOff` only once a periodic resync lands inside a back-off.
    #[default]
    Current,
    /// `waiting: CrashLoopBackOff` from the first back-off on, one second after each exit.
    Classic,
}

/// What a container whose memory cgroup kills a process shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Cgroup {
    /// cgroup v2: the whole container is killed, exit code 137, reason `OOMKilled`.
    #[default]
    V2,
    /// cgroup v1: the largest process is killed, PID 1 survives it and exits 1; reason `OOMKilled`.
    V1,
}

/// Which kubelet and node this simulated kubelet behaves as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flavor {
    pub crash: CrashTimeline,
    pub cgroup: Cgroup,
}

#[derive(Debug, Clone)]
enum State {
    Waiting {
        reason: String,
        message: Option<String>,
        retry_at: Instant,
    },
    Pulling {
        until: Instant,
    },
    PullFailed {
        shown_until: Instant,
        retry_at: Instant,
        message: String,
    },
    PullBackOff {
        retry_at: Instant,
    },
    Running(Box<Running>),
    Terminated {
        t: Terminated,
        at: Instant,
        restart: bool,
    },
    CrashBackOff {
        retry_at: Instant,
        message: String,
        /// When the back-off began (the exit was shown).
        since: Instant,
        /// Whether the status says `CrashLoopBackOff` yet (else the last exit, as `terminated`).
        shown: bool,
    },
}

#[derive(Debug, Clone)]
struct Running {
    started_at: String,
    since: Instant,
    container_id: String,
    program: Program,
    ready: bool,
    liveness_failures: u32,
    readiness_failures: u32,
    next_probe: Instant,
}

struct Container {
    image: String,
    state: State,
    restart_count: i64,
    pull_attempts: u32,
    crashes: u32,
    last_terminated: Option<Terminated>,
    /// The exit before `last_terminated`: `lastState` while the current timeline still shows the last exit.
    prior_terminated: Option<Terminated>,
    /// The back-off has expired: the next start is a restart (restartCount and logs move together).
    restarting: bool,
}

struct PodRuntime {
    ns: String,
    name: String,
    uid: String,
    containers: BTreeMap<String, Container>,
    start_time: String,
    ip: String,
    transitions: HashMap<&'static str, (bool, String)>,
    admitted: Instant,
    evicted: bool,
    /// Set once the pod is being deleted.
    stopping: Option<termination::Stopping>,
}

/// Where a container mounts the pod's memory-backed volumes (`emptyDir: {medium: Memory}`).
fn memory_mounts(pod: &Value, container: &Value) -> Vec<String> {
    let in_memory: Vec<&str> = pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["emptyDir"]["medium"] == "Memory")
        .filter_map(|v| v["name"].as_str())
        .collect();
    container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["name"].as_str().is_some_and(|n| in_memory.contains(&n)))
        .filter_map(|m| m["mountPath"].as_str().map(String::from))
        .collect()
}

/// A pod's init containers and app containers, as specs.
fn containers(pod: &Value) -> (Vec<Value>, Vec<Value>) {
    let list = |field: &str| pod["spec"][field].as_array().cloned().unwrap_or_default();
    (list("initContainers"), list("containers"))
}

pub async fn run(cluster: Cluster, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut kubelet = Kubelet {
        cluster,
        pods: HashMap::new(),
        recorder: Recorder::default(),
        next_ip: 2,
        pulled: HashSet::new(),
        serving: HashMap::new(),
    };
    let mut tick = tokio::time::interval(TICK);
    // A fake node renews its Lease on the API server it joined (`node::run`); the built-in one renews it here.
    let mut lease = tokio::time::interval(LEASE_RENEW);
    let own_lease = kubelet.cluster.upstream.is_none();
    loop {
        tokio::select! {
            _ = tick.tick() => kubelet.sync(),
            _ = lease.tick(), if own_lease => kubelet.renew_lease(),
            _ = shutdown.changed() => return,
        }
    }
}

struct Kubelet {
    cluster: Cluster,
    pods: HashMap<String, PodRuntime>,
    recorder: Recorder,
    next_ip: u32,
    /// Images present on the node.
    pulled: HashSet<String>,
    /// What each pod IP serves now (its running processes), for what containers reach over the network.
    serving: HashMap<String, Vec<crate::catalog::Serves>>,
}

/// Events produced by one step, recorded after the step.
type Emitted = Vec<(String, &'static str, &'static str, String)>;

impl Kubelet {
    fn sync(&mut self) {
        self.serving = self
            .pods
            .values()
            .map(|rt| {
                let served = rt
                    .containers
                    .values()
                    .filter_map(|c| match &c.state {
                        State::Running(r) => Some(r.program.serves.iter().cloned()),
                        _ => None,
                    })
                    .flatten()
                    .collect();
                (rt.ip.clone(), served)
            })
            .collect();
        let (pods, _) = self.cluster.store.list_shared(resources::pods(), None);
        let mut alive = HashSet::with_capacity(pods.len());
        for pod in pods {
            if pod["spec"]["nodeName"].as_str() != Some(self.cluster.node_name.as_str()) {
                continue;
            }
            let pod = std::sync::Arc::unwrap_or_clone(pod);
            let uid = pod["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            alive.insert(uid.clone());
            if pod["metadata"]["deletionTimestamp"].is_null() {
                self.sync_pod(&uid, &pod);
            } else {
                self.terminate(&uid, &pod);
            }
        }
        let gone: Vec<String> = self
            .pods
            .keys()
            .filter(|u| !alive.contains(*u))
            .cloned()
            .collect();
        for uid in gone {
            if let Some(rt) = self.pods.remove(&uid) {
                self.cluster.logs.forget(&rt.ns, &rt.name);
            }
            self.recorder.forget(&uid);
        }
    }

    /// Create or renew this node's Lease in `kube-node-lease`: the heartbeat the node lifecycle controller reads.
    fn renew_lease(&self) {
        let store = &self.cluster.store;
        let node = &self.cluster.node_name;
        let Ok(n) = store.get(resources::nodes(), "", node) else {
            return;
        };
        let lease = lease_object(node, n["metadata"]["uid"].as_str().unwrap_or_default());
        let renewed = store.modify(
            resources::leases(),
            "kube-node-lease",
            node,
            false,
            false,
            |l| {
                let mut l = l.clone();
                l["spec"]["renewTime"] = lease["spec"]["renewTime"].clone();
                l["metadata"]["resourceVersion"] = Value::Null;
                Ok(l)
            },
        );
        if renewed.is_err() {
            let _ = store.create(resources::leases(), "kube-node-lease", lease, false);
        }
    }

    /// The kubelet's state for a pod it has not seen before.
    fn admit(&mut self, uid: &str, pod: &Value) {
        if self.pods.contains_key(uid) {
            return;
        }
        let ip = format!("10.244.0.{}", self.next_ip % 250 + 2);
        self.next_ip += 1;
        self.pods.insert(
            uid.to_string(),
            PodRuntime {
                ns: pod["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("default")
                    .to_string(),
                name: pod["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                uid: uid.to_string(),
                containers: BTreeMap::new(),
                start_time: now(),
                ip,
                transitions: HashMap::new(),
                admitted: Instant::now(),
                evicted: false,
                stopping: None,
            },
        );
    }

    fn sync_pod(&mut self, uid: &str, pod: &Value) {
        self.admit(uid, pod);
        if self.pods.get(uid).is_some_and(|rt| rt.evicted) {
            return;
        }
        if self.should_evict(uid, pod) {
            self.evict(uid, pod);
            return;
        }
        let (inits, apps) = containers(pod);
        let mut events: Emitted = Vec::new();
        let mut initialized = true;
        for c in &inits {
            if !initialized {
                break;
            }
            self.step(uid, pod, c, true, &mut events);
            initialized = self.init_done(uid, c);
        }
        if initialized {
            for c in &apps {
                self.step(uid, pod, c, false, &mut events);
            }
        }
        self.record(pod, events);
        let Some(rt) = self.pods.get_mut(uid) else {
            return;
        };
        let status = pod_status(rt, pod, &inits, &apps, initialized);
        self.write_status(pod, status);
    }

    fn record(&self, pod: &Value, events: Emitted) {
        let source = Source {
            component: "kubelet",
            host: Some(&self.cluster.node_name),
        };
        for (field_path, type_, reason, message) in events {
            self.recorder.record(
                &self.cluster.store,
                &source,
                pod,
                Some(&field_path),
                (type_, reason, &message),
            );
        }
    }

    fn write_status(&self, pod: &Value, status: Value) {
        if status == pod["status"] {
            return;
        }
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let _ = self
            .cluster
            .store
            .modify(resources::pods(), ns, name, true, false, |p| {
                let mut p = p.clone();
                p["status"] = status;
                p["metadata"]["resourceVersion"] = Value::Null;
                Ok(p)
            });
    }

    fn init_done(&self, uid: &str, spec: &Value) -> bool {
        let name = spec["name"].as_str().unwrap_or_default();
        self.pods
            .get(uid)
            .and_then(|rt| rt.containers.get(name))
            .is_some_and(|c| matches!(&c.state, State::Terminated { t, restart: false, .. } if t.exit_code == 0))
    }

    fn step(&mut self, uid: &str, pod: &Value, spec: &Value, init: bool, events: &mut Emitted) {
        let clock = self.cluster.clock;
        let t = Instant::now();
        let name = spec["name"].as_str().unwrap_or_default().to_string();
        let image = spec["image"].as_str().unwrap_or_default().to_string();
        let field_path = format!(
            "spec.{}{{{name}}}",
            if init { "initContainers" } else { "containers" }
        );
        let mut emit = |type_: &'static str, reason: &'static str, message: String| {
            events.push((field_path.clone(), type_, reason, message))
        };
        let restart_policy = pod["spec"]["restartPolicy"]
            .as_str()
            .unwrap_or("Always")
            .to_string();
        let Some(rt) = self.pods.get_mut(uid) else {
            return;
        };
        let (ns, pod_name, pod_uid) = (rt.ns.clone(), rt.name.clone(), rt.uid.clone());
        let (admitted, flavor) = (rt.admitted, self.cluster.kubelet);
        let fresh = match rt.containers.get(&name) {
            None => Some(0),
            // A changed image (the one in-place pod update) makes the kubelet kill and restart the container.
            Some(c) if c.image != image => {
                Some(c.restart_count + i64::from(matches!(c.state, State::Running(_))))
            }
            Some(_) => None,
        };
        if let Some(restart_count) = fresh {
            let state = match self.cluster.catalog.pull(&image) {
                Pull::InvalidName(why) => {
                    let message = format!(
                        "Failed to apply default image tag \"{image}\": couldn't parse image name \"{image}\": {why}"
                    );
                    emit("Warning", "InspectFailed", message.clone());
                    emit("Warning", "Failed", "Error: InvalidImageName".into());
                    State::Waiting {
                        reason: "InvalidImageName".into(),
                        message: Some(message),
                        retry_at: t + Duration::from_secs(1_000_000),
                    }
                }
                _ if self.pulled.contains(&image) && spec["imagePullPolicy"] != "Always" => {
                    emit(
                        "Normal",
                        "Pulled",
                        format!("Container image \"{image}\" already present on machine"),
                    );
                    State::Waiting {
                        reason: "ContainerCreating".into(),
                        message: None,
                        retry_at: t,
                    }
                }
                _ => {
                    emit("Normal", "Pulling", format!("Pulling image \"{image}\""));
                    State::Pulling {
                        until: t + clock.real(PULL_TIME),
                    }
                }
            };
            rt.containers.insert(
                name.clone(),
                Container {
                    image: image.clone(),
                    state,
                    restart_count,
                    pull_attempts: 0,
                    crashes: 0,
                    last_terminated: None,
                    prior_terminated: None,
                    restarting: false,
                },
            );
        }
        let Some(c) = rt.containers.get_mut(&name) else {
            return;
        };
        match c.state.clone() {
            State::Pulling { until } if t >= until => match self.cluster.catalog.pull(&image) {
                Pull::Ok => {
                    let took = PULL_TIME.as_secs_f64();
                    emit(
                        "Normal",
                        "Pulled",
                        format!(
                            "Successfully pulled image \"{image}\" in {took:.3}s ({took:.3}s including waiting). Image size: 72099410 bytes."
                        ),
                    );
                    self.pulled.insert(image.clone());
                    c.state = State::Waiting {
                        reason: "ContainerCreating".into(),
                        message: None,
                        retry_at: t,
                    };
                }
                other => {
                    let message = pull_error(&image, &other);
                    emit(
                        "Warning",
                        "Failed",
                        format!("Failed to pull image \"{image}\": {message}"),
                    );
                    emit("Warning", "Failed", "Error: ErrImagePull".into());
                    let backoff = BACKOFF_START
                        .saturating_mul(1 << c.pull_attempts.min(8))
                        .min(BACKOFF_MAX);
                    c.pull_attempts += 1;
                    c.state = State::PullFailed {
                        shown_until: t + clock.real(ERR_IMAGE_PULL_SHOWN),
                        retry_at: t + clock.real(backoff),
                        message,
                    };
                }
            },
            State::PullFailed {
                shown_until,
                retry_at,
                ..
            } if t >= shown_until => {
                emit(
                    "Normal",
                    "BackOff",
                    format!("Back-off pulling image \"{image}\""),
                );
                emit("Warning", "Failed", "Error: ImagePullBackOff".into());
                c.state = State::PullBackOff { retry_at };
            }
            State::PullBackOff { retry_at } if t >= retry_at => {
                emit("Normal", "Pulling", format!("Pulling image \"{image}\""));
                c.state = State::Pulling {
                    until: t + clock.real(PULL_TIME),
                };
            }
            State::Waiting {
                reason, retry_at, ..
            } if t >= retry_at && reason != "InvalidImageName" => {
                // Create (or re-create after a config error) and start the container.
                match resolve_env(&self.cluster, &ns, pod, spec)
                    .and_then(|env| mounts_ok(&self.cluster, &ns, pod).map(|_| env))
                {
                    Err((reason, message)) => {
                        if reason == "FailedMount" {
                            emit("Warning", "FailedMount", message);
                            c.state = State::Waiting {
                                reason: "ContainerCreating".into(),
                                message: None,
                                retry_at: t + clock.real(CONFIG_RETRY),
                            };
                        } else {
                            emit("Warning", "Failed", format!("Error: {message}"));
                            c.state = State::Waiting {
                                reason: "CreateContainerConfigError".into(),
                                message: Some(message),
                                retry_at: t + clock.real(CONFIG_RETRY),
                            };
                        }
                    }
                    Ok(env) => {
                        let behaviour = self.cluster.catalog.behaviour(&image);
                        let network = crate::network::Cluster {
                            store: &self.cluster.store,
                            namespace: &ns,
                            serving: &self.serving,
                            tokens: &self.cluster.tokens,
                            token: crate::tokens::for_pod(
                                &self.cluster.tokens,
                                &self.cluster.store,
                                pod,
                            ),
                        };
                        let program = process::program(
                            spec,
                            &behaviour,
                            &env,
                            &pod["metadata"]["annotations"],
                            &memory_mounts(pod, spec),
                            &network,
                        );
                        if std::mem::take(&mut c.restarting) {
                            c.restart_count += 1;
                        }
                        c.state = start(c, program, &name, t, &mut emit);
                        if let State::Running(r) = &c.state {
                            self.cluster.logs.start_instance(
                                &ns,
                                &pod_name,
                                &name,
                                r.program.logs.clone(),
                            );
                        }
                    }
                }
            }
            State::Running(mut r) => {
                let limit = spec["resources"]["limits"]["memory"]
                    .as_str()
                    .and_then(quantity::parse);
                let exit = match &r.program.outcome {
                    _ if limit.is_some_and(|l| r.program.memory_bytes > l)
                        && t >= r.since + clock.real(OOM_AFTER) =>
                    {
                        let code = match flavor.cgroup {
                            Cgroup::V2 => 137,
                            Cgroup::V1 => 1,
                        };
                        Some((code, "OOMKilled".to_string(), None))
                    }
                    Outcome::Exits { after, code } if t >= r.since + clock.real(*after) => Some((
                        *code,
                        if *code == 0 {
                            "Completed".to_string()
                        } else {
                            "Error".to_string()
                        },
                        None,
                    )),
                    _ => None,
                };
                let exit =
                    exit.or_else(|| probe::probe(&mut r, spec, &rt.ip, t, clock, &name, &mut emit));
                match exit {
                    Some((code, reason, message)) => {
                        let term = Terminated {
                            exit_code: code,
                            reason,
                            message,
                            started_at: r.started_at.clone(),
                            finished_at: now(),
                            container_id: r.container_id.clone(),
                        };
                        let restart = match restart_policy.as_str() {
                            "Never" => false,
                            "OnFailure" => code != 0,
                            // Init containers of an Always pod are restarted only when they fail.
                            _ => !init || code != 0,
                        };
                        // The kubelet forgets a container's back-off once it ran for twice the longest back-off.
                        if t.saturating_duration_since(r.since) >= clock.real(BACKOFF_MAX * 2) {
                            c.crashes = 0;
                        }
                        c.crashes += 1;
                        c.state = State::Terminated {
                            t: term,
                            at: t,
                            restart,
                        };
                    }
                    None => c.state = State::Running(r),
                }
            }
            State::Terminated {
                t: term,
                at,
                restart: true,
            } if t >= at + clock.real(TERMINATED_SHOWN) => {
                c.prior_terminated = c.last_terminated.replace(term);
                // The first restart is immediate; from the second on, the back-off doubles from 10 s, counted from
                // the exit (kubelet's `doBackOff`).
                let Some(backoff) = crash_backoff(c.crashes) else {
                    c.restarting = true;
                    c.state = State::Waiting {
                        reason: "ContainerCreating".into(),
                        message: None,
                        retry_at: t,
                    };
                    return;
                };
                let message = format!(
                    "back-off {} restarting failed container={name} pod={pod_name}_{ns}({pod_uid})",
                    human(backoff)
                );
                emit(
                    "Warning",
                    "BackOff",
                    format!(
                        "Back-off restarting failed container {name} in pod {pod_name}_{ns}({pod_uid})"
                    ),
                );
                c.state = State::CrashBackOff {
                    retry_at: at + clock.real(backoff),
                    message,
                    since: t,
                    shown: flavor.crash == CrashTimeline::Classic,
                };
            }
            State::CrashBackOff {
                retry_at,
                message,
                since,
                shown: false,
            } if t < retry_at && resynced(admitted, since, t, clock) => {
                c.state = State::CrashBackOff {
                    retry_at,
                    message,
                    since,
                    shown: true,
                };
            }
            State::CrashBackOff { retry_at, .. } if t >= retry_at => {
                c.restarting = true;
                emit(
                    "Normal",
                    "Pulled",
                    format!("Container image \"{image}\" already present on machine"),
                );
                c.state = State::Waiting {
                    reason: "ContainerCreating".into(),
                    message: None,
                    retry_at: t,
                };
            }
            _ => {}
        }
    }
}

/// Whether a periodic pod sync (every `RESYNC` from the pod's admission) fell between `since` and `t`.
fn resynced(admitted: Instant, since: Instant, t: Instant, clock: crate::Clock) -> bool {
    let period = clock.real(RESYNC).as_secs_f64().max(f64::EPSILON);
    let syncs =
        |at: Instant| (at.saturating_duration_since(admitted).as_secs_f64() / period).floor();
    syncs(t) > syncs(since)
}

/// The back-off before restarting a container that has exited `crashes` times in a row: none after the first exit.
fn crash_backoff(crashes: u32) -> Option<Duration> {
    let doublings = crashes.checked_sub(2)?;
    Some(
        BACKOFF_START
            .saturating_mul(1 << doublings.min(8))
            .min(BACKOFF_MAX),
    )
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 && s.is_multiple_of(60) {
        format!("{}m0s", s / 60)
    } else if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

fn start(
    c: &mut Container,
    program: Program,
    name: &str,
    t: Instant,
    emit: &mut impl FnMut(&'static str, &'static str, String),
) -> State {
    let container_id = format!("containerd://{}", uuid::Uuid::new_v4().simple());
    emit("Normal", "Created", format!("Created container: {name}"));
    if let Outcome::StartError { message } = &program.outcome {
        emit("Warning", "Failed", format!("Error: {message}"));
        c.crashes += 1;
        let ts = now();
        let term = Terminated {
            exit_code: 128,
            reason: "StartError".into(),
            message: Some(message.clone()),
            started_at: "1970-01-01T00:00:00Z".into(),
            finished_at: ts,
            container_id,
        };
        return State::Terminated {
            t: term,
            at: t,
            restart: true,
        };
    }
    emit("Normal", "Started", format!("Started container {name}"));
    State::Running(Box::new(Running {
        started_at: now(),
        since: t,
        container_id,
        program,
        ready: false,
        liveness_failures: 0,
        readiness_failures: 0,
        next_probe: t,
    }))
}

/// containerd's error text for a failed pull, as the kubelet reports it.
fn pull_error(image: &str, pull: &Pull) -> String {
    match pull {
        Pull::TagNotFound { full } => format!(
            "rpc error: code = NotFound desc = failed to pull and unpack image \"{full}\": failed to resolve reference \"{full}\": {full}: not found"
        ),
        Pull::RepositoryNotFound { full } => format!(
            "failed to pull and unpack image \"{full}\": failed to resolve reference \"{full}\": pull access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed"
        ),
        Pull::InvalidName(why) => format!("couldn't parse image name \"{image}\": {why}"),
        Pull::Ok => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_restart_is_immediate_then_the_back_off_doubles() {
        let got: Vec<Option<u64>> = (1..=8)
            .map(|n| crash_backoff(n).map(|d| d.as_secs()))
            .collect();
        assert_eq!(
            got,
            vec![
                None,
                Some(10),
                Some(20),
                Some(40),
                Some(80),
                Some(160),
                Some(300),
                Some(300)
            ]
        );
    }

    #[test]
    fn durations_read_like_the_kubelets() {
        assert_eq!(
            (
                human(Duration::from_secs(10)),
                human(Duration::from_secs(300)),
                human(Duration::from_secs(90))
            ),
            ("10s".into(), "5m0s".into(), "1m30s".into())
        );
    }
}
