//! Graceful termination. A deleted pod keeps running until its kubelet has stopped it: each running container gets
//! SIGTERM (a `Killing` event), a process that handles it exits, one that ignores it is killed when the grace period
//! ends (exit 137). Then the kubelet writes the final status, with a terminal phase, and deletes the pod with grace
//! 0 — the delete that removes it from the API.

use super::status::pod_status;
use super::{Emitted, Kubelet, State, Terminated, containers};
use crate::process::Sigterm;
use crate::resources;
use crate::store::{DeleteOptions, now};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a process that handles SIGTERM takes to shut down.
const SHUTDOWN_TIME: Duration = Duration::from_millis(500);
/// A final delete the API server did not take is sent again after this long.
const DELETE_RETRY: Duration = Duration::from_secs(2);
/// The exit code of a process killed by SIGKILL.
const KILLED: i32 = 137;

pub(super) struct Stopping {
    /// When SIGKILL ends whatever still runs; a shorter grace period brings it forward.
    deadline: Instant,
    /// Per container: when it exits and with which code.
    exits: HashMap<String, (Instant, i32)>,
    /// When the final delete was last sent.
    deleted_at: Option<Instant>,
}

impl Kubelet {
    pub(super) fn terminate(&mut self, uid: &str, pod: &Value) {
        self.admit(uid, pod);
        let t = Instant::now();
        let clock = self.cluster.clock;
        let grace = pod["metadata"]["deletionGracePeriodSeconds"]
            .as_u64()
            .unwrap_or(0);
        let deadline = t + clock.real(Duration::from_secs(grace));
        let (inits, apps) = containers(pod);
        let mut events: Emitted = Vec::new();
        let Some(rt) = self.pods.get_mut(uid) else {
            return;
        };
        let stopping = rt.stopping.get_or_insert_with(|| {
            let mut exits = HashMap::new();
            for (name, c) in &rt.containers {
                let State::Running(r) = &c.state else {
                    continue;
                };
                let list = if inits.iter().any(|i| i["name"] == name.as_str()) {
                    "initContainers"
                } else {
                    "containers"
                };
                events.push((
                    format!("spec.{list}{{{name}}}"),
                    "Normal",
                    "Killing",
                    format!("Stopping container {name}"),
                ));
                let exit = match r.program.on_sigterm {
                    Sigterm::Exits(code) => (t + clock.real(SHUTDOWN_TIME), code),
                    Sigterm::Ignored => (deadline, KILLED),
                };
                exits.insert(name.clone(), exit);
            }
            Stopping {
                deadline,
                exits,
                deleted_at: None,
            }
        });
        stopping.deadline = stopping.deadline.min(deadline);
        let mut running = false;
        for (name, c) in rt.containers.iter_mut() {
            let State::Running(r) = &c.state else {
                continue;
            };
            let (at, code) = stopping
                .exits
                .get(name)
                .copied()
                .unwrap_or((stopping.deadline, KILLED));
            let (at, code) = if at >= stopping.deadline {
                (stopping.deadline, KILLED)
            } else {
                (at, code)
            };
            if t < at {
                running = true;
                continue;
            }
            let term = Terminated {
                exit_code: code,
                reason: if code == 0 { "Completed" } else { "Error" }.into(),
                message: None,
                started_at: r.started_at.clone(),
                finished_at: now(),
                container_id: r.container_id.clone(),
            };
            c.state = State::Terminated {
                t: term,
                at: t,
                restart: false,
            };
        }
        let due = stopping
            .deleted_at
            .is_none_or(|at| t >= at + clock.real(DELETE_RETRY));
        let delete = !running && due;
        if delete {
            stopping.deleted_at = Some(t);
        }
        let started = !rt.containers.is_empty();
        let mut status = None;
        if started {
            let initialized = inits.iter().all(|i| {
                rt.containers
                    .get(i["name"].as_str().unwrap_or_default())
                    .is_some_and(
                        |c| matches!(&c.state, State::Terminated { t, .. } if t.exit_code == 0),
                    )
            });
            let mut s = pod_status(rt, pod, &inits, &apps, initialized);
            if !running {
                s["phase"] = json!(terminal_phase(&s));
            }
            status = Some(s);
        }
        self.record(pod, events);
        if let Some(s) = status {
            self.write_status(pod, s);
        }
        if delete {
            self.final_delete(pod);
        }
    }

    /// The kubelet's own delete, once nothing of the pod runs: grace 0, only for this very pod (uid).
    fn final_delete(&self, pod: &Value) {
        let ns = pod["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let name = pod["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let uid = pod["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match &self.cluster.upstream {
            None => {
                let opts = DeleteOptions {
                    grace_period: Some(0),
                    uid: Some(uid),
                    ..Default::default()
                };
                let _ = self
                    .cluster
                    .store
                    .delete(resources::pods(), &ns, &name, &opts);
            }
            Some(client) => {
                let api: kube::Api<k8s_openapi::api::core::v1::Pod> =
                    kube::Api::namespaced(client.clone(), &ns);
                tokio::spawn(async move {
                    let dp = kube::api::DeleteParams {
                        grace_period_seconds: Some(0),
                        preconditions: Some(kube::api::Preconditions {
                            uid: Some(uid),
                            resource_version: None,
                        }),
                        ..Default::default()
                    };
                    if let Err(e) = api.delete(&name, &dp).await {
                        tracing::debug!(pod = %name, error = %e, "final delete of a terminated pod failed; retrying");
                    }
                });
            }
        }
    }
}

/// The phase a stopped pod ends in: `Succeeded` when every container exited 0, else `Failed`.
fn terminal_phase(status: &Value) -> &'static str {
    let all_zero = status["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|c| c["state"]["terminated"]["exitCode"] == 0);
    if all_zero { "Succeeded" } else { "Failed" }
}
