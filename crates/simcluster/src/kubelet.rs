//! The kubelet of the simulated node: drives the status of pods bound to it from the image catalog, with the
//! reason strings, messages, events and back-off a real kubelet (with containerd) produces.

use crate::catalog::Pull;
use crate::events::{Recorder, Source};
use crate::resources;
use crate::store::now;
use crate::{Cluster, NODE_NAME};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_millis(50);
const PULL_TIME: Duration = Duration::from_millis(800);
/// How long `ErrImagePull` shows before the next sync turns it into `ImagePullBackOff`.
const ERR_IMAGE_PULL_SHOWN: Duration = Duration::from_secs(2);
const IMAGE_BACKOFF_START: Duration = Duration::from_secs(10);
const IMAGE_BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Container logs, current and previous instance, readable through `pods/log`.
/// (namespace, pod, container) -> (current instance's lines, previous instance's lines)
type LogMap = HashMap<(String, String, String), (Vec<String>, Option<Vec<String>>)>;

#[derive(Default)]
pub struct Logs {
    inner: Mutex<LogMap>,
}

impl Logs {
    fn append(&self, ns: &str, pod: &str, container: &str, line: String) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.entry((ns.into(), pod.into(), container.into()))
            .or_default()
            .0
            .push(line);
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
enum State {
    Invalid {
        message: String,
    },
    Pulling {
        until: Instant,
    },
    PullFailed {
        shown_until: Instant,
        retry_at: Instant,
        message: String,
    },
    BackOff {
        retry_at: Instant,
    },
    Running {
        started_at: String,
        container_id: String,
    },
}

struct Container {
    image: String,
    state: State,
    restart_count: i64,
    pull_attempts: u32,
}

struct PodRuntime {
    ns: String,
    name: String,
    containers: BTreeMap<String, Container>,
    start_time: String,
    ip: String,
    transitions: HashMap<&'static str, (bool, String)>,
}

pub async fn run(cluster: Cluster, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut kubelet = Kubelet {
        cluster,
        pods: HashMap::new(),
        recorder: Recorder::default(),
        next_ip: 2,
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
}

impl Kubelet {
    fn sync(&mut self) {
        let (pods, _) = self.cluster.store.list(resources::pods(), None);
        let mut alive = Vec::with_capacity(pods.len());
        for pod in pods {
            if pod["spec"]["nodeName"].as_str() != Some(NODE_NAME)
                || !pod["metadata"]["deletionTimestamp"].is_null()
            {
                continue;
            }
            let uid = pod["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            alive.push(uid.clone());
            self.sync_pod(&uid, &pod);
        }
        let gone: Vec<String> = self
            .pods
            .keys()
            .filter(|u| !alive.contains(u))
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
            let rt = PodRuntime {
                ns: pod["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("default")
                    .to_string(),
                name: pod["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                containers: BTreeMap::new(),
                start_time: now(),
                ip,
                transitions: HashMap::new(),
            };
            self.pods.insert(uid.to_string(), rt);
        }
        let specs: Vec<(String, String)> = pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or_default().to_string(),
                    c["image"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        for (name, image) in &specs {
            self.step_container(uid, pod, name, image);
        }
        let Some(rt) = self.pods.get_mut(uid) else {
            return;
        };
        let status = pod_status(rt, pod, &specs);
        if status != pod["status"] {
            let ns = rt.ns.clone();
            let name = rt.name.clone();
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

    fn step_container(&mut self, uid: &str, pod: &Value, name: &str, image: &str) {
        let clock = self.cluster.clock;
        let now_i = Instant::now();
        let field_path = format!("spec.containers{{{name}}}");
        let mut events: Vec<(&str, &str, String)> = Vec::new();
        let Some(rt) = self.pods.get_mut(uid) else {
            return;
        };
        let (ns, pod_name) = (rt.ns.clone(), rt.name.clone());
        let fresh = match rt.containers.get(name) {
            None => Some(0),
            // The spec's image changed (the one in-place pod update): the kubelet kills and restarts the container.
            Some(c) if c.image != image => {
                Some(c.restart_count + i64::from(matches!(c.state, State::Running { .. })))
            }
            Some(_) => None,
        };
        if let Some(restart_count) = fresh {
            let state = match self.cluster.catalog.pull(image) {
                Pull::InvalidName(why) => {
                    let message = format!(
                        "Failed to apply default image tag \"{image}\": couldn't parse image name \"{image}\": {why}"
                    );
                    events.push(("Warning", "InspectFailed", message.clone()));
                    events.push(("Warning", "Failed", "Error: InvalidImageName".into()));
                    State::Invalid { message }
                }
                _ => {
                    events.push(("Normal", "Pulling", format!("Pulling image \"{image}\"")));
                    State::Pulling {
                        until: now_i + clock.real(PULL_TIME),
                    }
                }
            };
            rt.containers.insert(
                name.to_string(),
                Container {
                    image: image.to_string(),
                    state,
                    restart_count,
                    pull_attempts: 0,
                },
            );
        }
        let Some(c) = rt.containers.get_mut(name) else {
            return;
        };
        match c.state.clone() {
            State::Pulling { until } if now_i >= until => match self.cluster.catalog.pull(image) {
                Pull::Ok => {
                    let took = PULL_TIME.as_secs_f64();
                    events.push(("Normal", "Pulled", format!(
                        "Successfully pulled image \"{image}\" in {took:.3}s ({took:.3}s including waiting). Image size: 72099410 bytes."
                    )));
                    events.push(("Normal", "Created", format!("Created container: {name}")));
                    events.push(("Normal", "Started", format!("Started container {name}")));
                    let started_at = now();
                    self.cluster.logs.append(
                        &ns,
                        &pod_name,
                        name,
                        format!("{started_at} {image}: container {name} started"),
                    );
                    c.state = State::Running {
                        started_at,
                        container_id: format!("containerd://{}", uuid::Uuid::new_v4().simple()),
                    };
                }
                other => {
                    let message = pull_error(image, &other);
                    events.push((
                        "Warning",
                        "Failed",
                        format!("Failed to pull image \"{image}\": {message}"),
                    ));
                    events.push(("Warning", "Failed", "Error: ErrImagePull".into()));
                    let backoff = IMAGE_BACKOFF_START
                        .saturating_mul(1 << c.pull_attempts.min(8))
                        .min(IMAGE_BACKOFF_MAX);
                    c.pull_attempts += 1;
                    c.state = State::PullFailed {
                        shown_until: now_i + clock.real(ERR_IMAGE_PULL_SHOWN),
                        retry_at: now_i + clock.real(backoff),
                        message,
                    };
                }
            },
            State::PullFailed {
                shown_until,
                retry_at,
                ..
            } if now_i >= shown_until => {
                events.push((
                    "Normal",
                    "BackOff",
                    format!("Back-off pulling image \"{image}\""),
                ));
                events.push(("Warning", "Failed", "Error: ImagePullBackOff".into()));
                c.state = State::BackOff { retry_at };
            }
            State::BackOff { retry_at } if now_i >= retry_at => {
                events.push(("Normal", "Pulling", format!("Pulling image \"{image}\"")));
                c.state = State::Pulling {
                    until: now_i + clock.real(PULL_TIME),
                };
            }
            _ => {}
        }
        let source = Source {
            component: "kubelet",
            host: Some(NODE_NAME),
        };
        for (type_, reason, message) in events {
            self.recorder.record(
                &self.cluster.store,
                &source,
                pod,
                Some(&field_path),
                (type_, reason, &message),
            );
        }
    }
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

fn pod_status(rt: &mut PodRuntime, pod: &Value, specs: &[(String, String)]) -> Value {
    let mut statuses = Vec::new();
    let mut all_ready = !specs.is_empty();
    let mut unready = Vec::new();
    for (name, image) in specs {
        let Some(c) = rt.containers.get(name) else {
            continue;
        };
        let (state, ready, image_id, container_id) = match &c.state {
            State::Running {
                started_at,
                container_id,
            } => {
                let (repo, _) = crate::catalog::normalize(image).unwrap_or_default();
                (
                    json!({"running": {"startedAt": started_at}}),
                    true,
                    format!("{repo}@sha256:{:064x}", 0xabcdu64),
                    Some(container_id.clone()),
                )
            }
            State::Invalid { message } => (
                json!({"waiting": {"reason": "InvalidImageName", "message": message}}),
                false,
                String::new(),
                None,
            ),
            State::PullFailed { message, .. } => (
                json!({"waiting": {"reason": "ErrImagePull", "message": message}}),
                false,
                String::new(),
                None,
            ),
            State::BackOff { .. } => (
                json!({"waiting": {"reason": "ImagePullBackOff", "message": format!("Back-off pulling image \"{image}\"")}}),
                false,
                String::new(),
                None,
            ),
            State::Pulling { .. } => (
                json!({"waiting": {"reason": "ContainerCreating"}}),
                false,
                String::new(),
                None,
            ),
        };
        if !ready {
            all_ready = false;
            unready.push(name.clone());
        }
        let mut s = json!({
            "name": name, "image": image, "imageID": image_id, "ready": ready, "restartCount": c.restart_count,
            "started": ready, "state": state, "lastState": {},
        });
        if let Some(id) = container_id {
            s["containerID"] = json!(id);
        }
        statuses.push(s);
    }
    let phase = if all_ready { "Running" } else { "Pending" };
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
    let conditions = vec![
        condition("PodReadyToStartContainers", true, None, None),
        condition("Initialized", true, None, None),
        condition(
            "Ready",
            all_ready,
            Some("ContainersNotReady"),
            Some(unready_msg.clone()),
        ),
        condition(
            "ContainersReady",
            all_ready,
            Some("ContainersNotReady"),
            Some(unready_msg),
        ),
        condition("PodScheduled", true, None, None),
    ];
    json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": "10.0.0.10", "hostIPs": [{"ip": "10.0.0.10"}],
        "podIP": rt.ip, "podIPs": [{"ip": rt.ip}],
        "startTime": rt.start_time,
        "containerStatuses": statuses,
        "qosClass": pod["status"]["qosClass"].as_str().unwrap_or("BestEffort"),
    })
}
