//! The kubelet of the simulated node: runs the containers of pods bound to it through the image catalog and the
//! process model, and reports what a real kubelet (with containerd) reports: waiting reasons and messages, exit codes,
//! `lastState.terminated`, restart counts with the crash back-off, probe results, logs and events.

use crate::catalog::Pull;
use crate::events::{Recorder, Source};
use crate::process::{self, Outcome, Program};
use crate::store::now;
use crate::{Cluster, quantity, resources};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_millis(50);
const PULL_TIME: Duration = Duration::from_millis(800);
/// How long `ErrImagePull` shows before the next sync turns it into `ImagePullBackOff`.
const ERR_IMAGE_PULL_SHOWN: Duration = Duration::from_secs(2);
/// How long a terminated container shows before the kubelet restarts it or puts it into `CrashLoopBackOff`.
const TERMINATED_SHOWN: Duration = Duration::from_secs(1);
const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A process using more memory than its limit is killed this long after it starts.
const OOM_AFTER: Duration = Duration::from_millis(1500);
const CONFIG_RETRY: Duration = Duration::from_secs(2);

/// (namespace, pod, container) -> (current instance's lines, previous instance's lines)
type LogMap = HashMap<(String, String, String), (Vec<String>, Option<Vec<String>>)>;

/// Container logs, current and previous instance, readable through `pods/log`.
#[derive(Default)]
pub struct Logs {
    inner: Mutex<LogMap>,
}

impl Logs {
    fn start_instance(&self, ns: &str, pod: &str, container: &str, lines: Vec<String>) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match m.get_mut(&(ns.into(), pod.into(), container.into())) {
            Some(entry) => entry.1 = Some(std::mem::replace(&mut entry.0, lines)),
            None => {
                m.insert((ns.into(), pod.into(), container.into()), (lines, None));
            }
        }
    }

    fn forget(&self, ns: &str, pod: &str) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| !(k.0 == ns && k.1 == pod));
    }

    /// `None` when the container has no (previous) instance.
    pub fn read(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Option<Vec<String>> {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (current, prev) = m.get(&(ns.into(), pod.into(), container.into()))?;
        if previous {
            prev.clone()
        } else {
            Some(current.clone())
        }
    }
}

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
}

pub async fn run(cluster: Cluster, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut kubelet = Kubelet {
        cluster,
        pods: HashMap::new(),
        recorder: Recorder::default(),
        next_ip: 2,
        pulled: HashSet::new(),
    };
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = tick.tick() => kubelet.sync(),
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
}

/// Events produced by one step, recorded after the step.
type Emitted = Vec<(String, &'static str, &'static str, String)>;

impl Kubelet {
    fn sync(&mut self) {
        let (pods, _) = self.cluster.store.list(resources::pods(), None);
        let mut alive = HashSet::with_capacity(pods.len());
        for pod in pods {
            if pod["spec"]["nodeName"].as_str() != Some(self.cluster.node_name.as_str())
                || !pod["metadata"]["deletionTimestamp"].is_null()
            {
                continue;
            }
            let uid = pod["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            alive.insert(uid.clone());
            self.sync_pod(&uid, &pod);
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

    fn sync_pod(&mut self, uid: &str, pod: &Value) {
        if !self.pods.contains_key(uid) {
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
                },
            );
        }
        if self.pods.get(uid).is_some_and(|rt| rt.evicted) {
            return;
        }
        if self.should_evict(uid, pod) {
            self.evict(uid, pod);
            return;
        }
        let inits: Vec<Value> = pod["spec"]["initContainers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let apps: Vec<Value> = pod["spec"]["containers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
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
        let Some(rt) = self.pods.get_mut(uid) else {
            return;
        };
        let status = pod_status(rt, pod, &inits, &apps, initialized);
        if status != pod["status"] {
            let (ns, name) = (rt.ns.clone(), rt.name.clone());
            let _ = self
                .cluster
                .store
                .modify(resources::pods(), &ns, &name, true, false, |p| {
                    let mut p = p.clone();
                    p["status"] = status;
                    p["metadata"]["resourceVersion"] = Value::Null;
                    Ok(p)
                });
        }
    }

    /// Node-pressure eviction, driven by the `simcluster.io/evict-after` annotation (seconds after admission).
    fn should_evict(&self, uid: &str, pod: &Value) -> bool {
        let Some(rt) = self.pods.get(uid) else {
            return false;
        };
        let after = pod["metadata"]["annotations"][process::ANN_EVICT_AFTER]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok());
        after.is_some_and(|s| {
            s.is_finite()
                && s >= 0.0
                && rt.admitted.elapsed() >= self.cluster.clock.real(Duration::from_secs_f64(s))
        })
    }

    fn evict(&mut self, uid: &str, pod: &Value) {
        let Some(rt) = self.pods.get_mut(uid) else {
            return;
        };
        rt.evicted = true;
        let containers: Vec<String> = pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(String::from))
            .collect();
        let first = containers.first().cloned().unwrap_or_default();
        let message = format!(
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 63Mi. Container {first} was using 412Mi, request is 0, has larger consumption of memory. "
        );
        let ts = now();
        let statuses: Vec<Value> = containers
            .iter()
            .map(|c| {
                let started = rt.containers.get(c).and_then(|x| match &x.state {
                    State::Running(r) => Some(r.started_at.clone()),
                    _ => None,
                });
                json!({"name": c, "image": pod["spec"]["containers"].as_array().into_iter().flatten().find(|x| x["name"] == c.as_str()).map(|x| x["image"].clone()).unwrap_or_default(),
                       "imageID": "", "ready": false, "started": false, "restartCount": rt.containers.get(c).map(|x| x.restart_count).unwrap_or(0),
                       "state": {"terminated": {"exitCode": 137, "reason": "Error", "startedAt": started.unwrap_or_else(|| ts.clone()), "finishedAt": ts}},
                       "lastState": {}})
            })
            .collect();
        let status = json!({
            "phase": "Failed", "reason": "Evicted", "message": message,
            "conditions": [
                {"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet", "message": message, "lastProbeTime": null, "lastTransitionTime": ts},
                {"type": "Ready", "status": "False", "reason": "PodFailed", "lastProbeTime": null, "lastTransitionTime": ts},
                {"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": ts}
            ],
            "hostIP": "10.0.0.10", "podIP": rt.ip, "startTime": rt.start_time, "containerStatuses": statuses,
            "qosClass": pod["status"]["qosClass"].as_str().unwrap_or("BestEffort"),
        });
        let (ns, name) = (rt.ns.clone(), rt.name.clone());
        let source = Source {
            component: "kubelet",
            host: Some(&self.cluster.node_name),
        };
        self.recorder.record(
            &self.cluster.store,
            &source,
            pod,
            None,
            ("Warning", "Evicted", &message),
        );
        for c in &containers {
            let fp = format!("spec.containers{{{c}}}");
            self.recorder.record(
                &self.cluster.store,
                &source,
                pod,
                Some(&fp),
                ("Normal", "Killing", &format!("Stopping container {c}")),
            );
        }
        let _ = self
            .cluster
            .store
            .modify(resources::pods(), &ns, &name, true, false, |p| {
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
                        let program = process::program(
                            spec,
                            &behaviour,
                            &env,
                            &pod["metadata"]["annotations"],
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
                        Some((137, "OOMKilled".to_string(), None))
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
                let exit = exit.or_else(|| probe(&mut r, spec, &rt.ip, t, clock, &name, &mut emit));
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
                c.last_terminated = Some(term);
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

/// Run the container's probes when due. Returns an exit if the liveness probe killed the container.
fn probe(
    r: &mut Running,
    spec: &Value,
    ip: &str,
    t: Instant,
    clock: crate::Clock,
    name: &str,
    emit: &mut impl FnMut(&'static str, &'static str, String),
) -> Option<(i32, String, Option<String>)> {
    let liveness = &spec["livenessProbe"];
    let readiness = &spec["readinessProbe"];
    let secs = |p: &Value, field: &str, default: u64| {
        Duration::from_secs(p[field].as_u64().unwrap_or(default))
    };
    if readiness.is_null() {
        r.ready = true;
    }
    if t < r.next_probe {
        return None;
    }
    let period = [liveness, readiness]
        .iter()
        .filter(|p| !p.is_null())
        .map(|p| secs(p, "periodSeconds", 10))
        .min()
        .unwrap_or(Duration::from_secs(10));
    r.next_probe = t + clock.real(period);
    let running_for = t.saturating_duration_since(r.since);
    if !readiness.is_null() && running_for >= clock.real(secs(readiness, "initialDelaySeconds", 0))
    {
        match probe_result(readiness, spec, &r.program, ip) {
            Ok(()) => {
                r.readiness_failures = 0;
                r.ready = true;
            }
            Err(why) => {
                r.readiness_failures += 1;
                if r.readiness_failures
                    >= readiness["failureThreshold"].as_u64().unwrap_or(3) as u32
                {
                    r.ready = false;
                }
                emit(
                    "Warning",
                    "Unhealthy",
                    format!("Readiness probe failed: {why}"),
                );
            }
        }
    }
    if !liveness.is_null() && running_for >= clock.real(secs(liveness, "initialDelaySeconds", 0)) {
        match probe_result(liveness, spec, &r.program, ip) {
            Ok(()) => r.liveness_failures = 0,
            Err(why) => {
                r.liveness_failures += 1;
                emit(
                    "Warning",
                    "Unhealthy",
                    format!("Liveness probe failed: {why}"),
                );
                if r.liveness_failures >= liveness["failureThreshold"].as_u64().unwrap_or(3) as u32
                {
                    emit(
                        "Normal",
                        "Killing",
                        format!("Container {name} failed liveness probe, will be restarted"),
                    );
                    return Some((137, "Error".into(), None));
                }
            }
        }
    }
    None
}

/// Whether a probe passes against what the process serves; the error is the kubelet's probe output.
fn probe_result(p: &Value, spec: &Value, program: &Program, ip: &str) -> Result<(), String> {
    let port_of = |v: &Value| -> Option<u16> {
        match v {
            Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            Value::String(s) => s.parse().ok().or_else(|| {
                spec["ports"]
                    .as_array()?
                    .iter()
                    .find(|cp| cp["name"] == s.as_str())?["containerPort"]
                    .as_u64()
                    .and_then(|n| u16::try_from(n).ok())
            }),
            _ => None,
        }
    };
    if let Some(http) = p.get("httpGet").filter(|v| v.is_object()) {
        let port = port_of(&http["port"]).unwrap_or(0);
        let path = http["path"].as_str().unwrap_or("/");
        let scheme = http["scheme"].as_str().unwrap_or("HTTP").to_lowercase();
        let Some(served) = program.serves.iter().find(|s| s.port == port) else {
            return Err(format!(
                "Get \"{scheme}://{ip}:{port}{path}\": dial tcp {ip}:{port}: connect: connection refused"
            ));
        };
        return match &served.paths {
            Some(paths) if !paths.iter().any(|x| x == path) => {
                Err("HTTP probe failed with statuscode: 404".into())
            }
            _ => Ok(()),
        };
    }
    if let Some(tcp) = p.get("tcpSocket").filter(|v| v.is_object()) {
        let port = port_of(&tcp["port"]).unwrap_or(0);
        return if program.serves.iter().any(|s| s.port == port) {
            Ok(())
        } else {
            Err(format!("dial tcp {ip}:{port}: connect: connection refused"))
        };
    }
    if let Some(exec) = p.get("exec").filter(|v| v.is_object()) {
        let cmd: Vec<&str> = exec["command"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let fails = cmd.iter().any(|w| *w == "false" || w.contains("exit 1"));
        return if fails { Err(String::new()) } else { Ok(()) };
    }
    Ok(())
}

type ConfigError = (&'static str, String);

fn lookup(cluster: &Cluster, kind: &str, ns: &str, name: &str) -> Option<Value> {
    let rt = resources::by_kind(kind)?;
    cluster.store.get(rt, ns, name).ok()
}

fn config_value(obj: &Value, kind: &str, key: &str) -> Option<String> {
    if kind == "Secret" {
        obj["data"][key]
            .as_str()
            .map(base64_decode)
            .or_else(|| obj["stringData"][key].as_str().map(String::from))
    } else {
        obj["data"][key].as_str().map(String::from)
    }
}

/// The container's environment, or the kubelet's `CreateContainerConfigError` message.
fn resolve_env(
    cluster: &Cluster,
    ns: &str,
    pod: &Value,
    spec: &Value,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut env = BTreeMap::new();
    for from in spec["envFrom"].as_array().into_iter().flatten() {
        for (field, kind) in [("configMapRef", "ConfigMap"), ("secretRef", "Secret")] {
            let r = &from[field];
            let Some(name) = r["name"].as_str() else {
                continue;
            };
            match lookup(cluster, kind, ns, name) {
                Some(obj) => {
                    let prefix = from["prefix"].as_str().unwrap_or("");
                    for key in obj["data"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, _)| k.clone())
                    {
                        if let Some(v) = config_value(&obj, kind, &key) {
                            env.insert(format!("{prefix}{key}"), v);
                        }
                    }
                }
                None if r["optional"] == true => {}
                None => {
                    return Err((
                        "CreateContainerConfigError",
                        format!("{} \"{name}\" not found", kind.to_lowercase()),
                    ));
                }
            }
        }
    }
    for e in spec["env"].as_array().into_iter().flatten() {
        let Some(var) = e["name"].as_str() else {
            continue;
        };
        if let Some(v) = e["value"].as_str() {
            env.insert(var.to_string(), v.to_string());
            continue;
        }
        let vf = &e["valueFrom"];
        if let Some(field) = vf["fieldRef"]["fieldPath"].as_str() {
            let v = match field {
                "metadata.name" => pod["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                "metadata.namespace" => ns.to_string(),
                "spec.nodeName" => cluster.node_name.clone(),
                "status.podIP" => pod["status"]["podIP"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                _ => String::new(),
            };
            env.insert(var.to_string(), v);
            continue;
        }
        for (field, kind) in [("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")] {
            let r = &vf[field];
            let (Some(name), Some(key)) = (r["name"].as_str(), r["key"].as_str()) else {
                continue;
            };
            let optional = r["optional"] == true;
            match lookup(cluster, kind, ns, name) {
                None if optional => {}
                None => {
                    return Err((
                        "CreateContainerConfigError",
                        format!("{} \"{name}\" not found", kind.to_lowercase()),
                    ));
                }
                Some(obj) => match config_value(&obj, kind, key) {
                    Some(v) => {
                        env.insert(var.to_string(), v);
                    }
                    None if optional => {}
                    None => {
                        return Err((
                            "CreateContainerConfigError",
                            format!("couldn't find key {key} in {kind} {ns}/{name}"),
                        ));
                    }
                },
            }
        }
    }
    Ok(env)
}

/// ConfigMap and Secret volumes must exist before containers can be created.
fn mounts_ok(cluster: &Cluster, ns: &str, pod: &Value) -> Result<(), ConfigError> {
    for v in pod["spec"]["volumes"].as_array().into_iter().flatten() {
        let vol = v["name"].as_str().unwrap_or_default();
        for (field, kind, key) in [
            ("configMap", "ConfigMap", "name"),
            ("secret", "Secret", "secretName"),
        ] {
            let src = &v[field];
            let Some(name) = src[key].as_str() else {
                continue;
            };
            if src["optional"] != true && lookup(cluster, kind, ns, name).is_none() {
                return Err((
                    "FailedMount",
                    format!(
                        "MountVolume.SetUp failed for volume \"{vol}\" : {} \"{name}\" not found",
                        kind.to_lowercase()
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn base64_decode(s: &str) -> String {
    let mut bits: u32 = 0;
    let mut n = 0;
    let mut out = Vec::new();
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => continue,
        };
        bits = (bits << 6) | u32::from(v);
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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

fn container_status(c: Option<&Container>, spec: &Value) -> (Value, bool, bool) {
    let name = spec["name"].as_str().unwrap_or_default();
    let image = spec["image"].as_str().unwrap_or_default();
    let Some(c) = c else {
        let s = json!({"name": name, "image": image, "imageID": "", "ready": false, "restartCount": 0, "started": false,
                       "state": {"waiting": {"reason": "PodInitializing"}}, "lastState": {}});
        return (s, false, false);
    };
    let waiting = |reason: &str, message: Option<&str>| {
        let mut w = json!({"reason": reason});
        if let Some(m) = message {
            w["message"] = json!(m);
        }
        json!({"waiting": w})
    };
    let (state, ready, running, container_id) = match &c.state {
        State::Running(r) => (
            json!({"running": {"startedAt": r.started_at}}),
            r.ready,
            true,
            Some(r.container_id.clone()),
        ),
        State::Waiting {
            reason, message, ..
        } => (waiting(reason, message.as_deref()), false, false, None),
        State::Pulling { .. } => (waiting("ContainerCreating", None), false, false, None),
        State::PullFailed { message, .. } => {
            (waiting("ErrImagePull", Some(message)), false, false, None)
        }
        State::PullBackOff { .. } => (
            waiting(
                "ImagePullBackOff",
                Some(&format!("Back-off pulling image \"{image}\"")),
            ),
            false,
            false,
            None,
        ),
        State::Terminated { t, .. } => (
            json!({"terminated": t.json()}),
            false,
            false,
            Some(t.container_id.clone()),
        ),
        State::CrashBackOff { message, .. } => (
            waiting("CrashLoopBackOff", Some(message)),
            false,
            false,
            None,
        ),
    };
    let pulled = !matches!(
        c.state,
        State::Pulling { .. } | State::PullFailed { .. } | State::PullBackOff { .. }
    ) && !matches!(&c.state, State::Waiting { reason, .. } if reason == "InvalidImageName");
    let image_id = if pulled {
        let (repo, _) = crate::catalog::normalize(image).unwrap_or_default();
        format!("{repo}@sha256:{:064x}", 0xabcd_u64)
    } else {
        String::new()
    };
    let mut s = json!({
        "name": name, "image": image, "imageID": image_id, "ready": ready, "restartCount": c.restart_count,
        "started": running, "state": state,
        "lastState": c.last_terminated.as_ref().map(|t| json!({"terminated": t.json()})).unwrap_or(json!({})),
    });
    if let Some(id) = container_id {
        s["containerID"] = json!(id);
    }
    let terminated_ok =
        matches!(&c.state, State::Terminated { t, restart: false, .. } if t.exit_code == 0);
    (s, ready, terminated_ok)
}

fn pod_status(
    rt: &mut PodRuntime,
    pod: &Value,
    inits: &[Value],
    apps: &[Value],
    initialized: bool,
) -> Value {
    let mut init_statuses = Vec::new();
    for spec in inits {
        let name = spec["name"].as_str().unwrap_or_default();
        init_statuses.push(container_status(rt.containers.get(name), spec).0);
    }
    let mut statuses = Vec::new();
    let (mut all_ready, mut unready) = (!apps.is_empty(), Vec::new());
    let (mut any_running, mut all_terminated, mut all_succeeded, mut all_started) =
        (false, true, true, true);
    for spec in apps {
        let name = spec["name"].as_str().unwrap_or_default();
        let c = if initialized {
            rt.containers.get(name)
        } else {
            None
        };
        let (s, ready, succeeded) = container_status(c, spec);
        if !ready {
            all_ready = false;
            unready.push(name.to_string());
        }
        match c.map(|c| &c.state) {
            Some(State::Running(_)) => {
                any_running = true;
                all_terminated = false;
                all_succeeded = false;
            }
            Some(State::Terminated { restart: false, .. }) => all_succeeded &= succeeded,
            Some(State::Terminated { restart: true, .. } | State::CrashBackOff { .. }) => {
                any_running = true;
                all_terminated = false;
                all_succeeded = false;
            }
            Some(State::Waiting { .. }) if c.is_some_and(|c| c.restart_count > 0) => {
                any_running = true;
                all_terminated = false;
                all_succeeded = false;
            }
            _ => {
                all_terminated = false;
                all_succeeded = false;
                all_started = false;
            }
        }
        statuses.push(s);
    }
    let phase = if !initialized {
        "Pending"
    } else if all_terminated && !apps.is_empty() {
        if all_succeeded { "Succeeded" } else { "Failed" }
    } else if any_running || (all_started && !apps.is_empty()) {
        "Running"
    } else {
        "Pending"
    };
    let mut condition = |t: &'static str,
                         ok: bool,
                         reason: Option<&str>,
                         message: Option<String>| {
        let entry = rt.transitions.entry(t).or_insert_with(|| (ok, now()));
        if entry.0 != ok {
            *entry = (ok, now());
        }
        let mut c = json!({"type": t, "status": if ok { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": entry.1});
        if let (false, Some(r)) = (ok, reason) {
            c["reason"] = json!(r);
            c["message"] = json!(message.unwrap_or_default());
        }
        c
    };
    let unready_msg = format!("containers with unready status: [{}]", unready.join(" "));
    let ready_reason = if phase == "Succeeded" || phase == "Failed" {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let pending_inits: Vec<&str> = inits
        .iter()
        .filter_map(|s| s["name"].as_str())
        .filter(|n| !rt.containers.get(*n).is_some_and(|c| matches!(&c.state, State::Terminated { t, restart: false, .. } if t.exit_code == 0)))
        .collect();
    let conditions = vec![
        condition("PodReadyToStartContainers", true, None, None),
        condition(
            "Initialized",
            initialized,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                pending_inits.join(" ")
            )),
        ),
        condition(
            "Ready",
            all_ready,
            Some(ready_reason),
            Some(unready_msg.clone()),
        ),
        condition(
            "ContainersReady",
            all_ready,
            Some(ready_reason),
            Some(unready_msg),
        ),
        condition("PodScheduled", true, None, None),
    ];
    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": "10.0.0.10", "hostIPs": [{"ip": "10.0.0.10"}],
        "podIP": rt.ip, "podIPs": [{"ip": rt.ip}],
        "startTime": rt.start_time,
        "containerStatuses": statuses,
        "qosClass": pod["status"]["qosClass"].as_str().unwrap_or("BestEffort"),
    });
    if !inits.is_empty() {
        status["initContainerStatuses"] = json!(init_statuses);
    }
    status
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
    fn base64_and_durations() {
        assert_eq!(base64_decode("cGFzc3dvcmQ="), "password");
        assert_eq!(base64_decode(""), "");
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
