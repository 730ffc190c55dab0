//! Node-pressure eviction: the kubelet fails a pod (`Evicted`) when its node runs short of memory.

use super::{Kubelet, State};
use crate::events::Source;
use crate::process;
use crate::resources;
use crate::store::now;
use serde_json::{Value, json};
use std::time::Duration;

impl Kubelet {
    /// Node-pressure eviction, driven by the `simcluster.io/evict-after` annotation (seconds after admission).
    pub(super) fn should_evict(&self, uid: &str, pod: &Value) -> bool {
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

    pub(super) fn evict(&mut self, uid: &str, pod: &Value) {
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
}
