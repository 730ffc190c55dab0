//! Container logs, as the runtime keeps them: the current instance's and the previous one's.

use crate::Cluster;
use crate::error::ApiError;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;

/// (namespace, pod, container) -> (current instance's lines, previous instance's lines)
type LogMap = HashMap<(String, String, String), (Vec<String>, Option<Vec<String>>)>;

/// Container logs, current and previous instance, readable through `pods/log`.
#[derive(Default)]
pub struct Logs {
    inner: Mutex<LogMap>,
}

impl Logs {
    pub(super) fn start_instance(&self, ns: &str, pod: &str, container: &str, lines: Vec<String>) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match m.get_mut(&(ns.into(), pod.into(), container.into())) {
            Some(entry) => entry.1 = Some(std::mem::replace(&mut entry.0, lines)),
            None => {
                m.insert((ns.into(), pod.into(), container.into()), (lines, None));
            }
        }
    }

    pub(super) fn forget(&self, ns: &str, pod: &str) {
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

/// What `pods/log` asks for.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub container: Option<String>,
    pub previous: bool,
    pub tail_lines: Option<usize>,
}

impl LogQuery {
    pub fn from_params(params: &std::collections::HashMap<String, String>) -> Self {
        Self {
            container: params.get("container").filter(|c| !c.is_empty()).cloned(),
            previous: params.get("previous").is_some_and(|p| p == "true"),
            tail_lines: params.get("tailLines").and_then(|t| t.parse().ok()),
        }
    }

    /// The container a request means: the one it names, else the pod's only one (the API server's rule).
    pub fn container(&self, pod: &Value) -> Result<String, ApiError> {
        let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let names: Vec<&str> = pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect();
        match &self.container {
            Some(cn) if names.contains(&cn.as_str()) => Ok(cn.clone()),
            Some(cn) => Err(ApiError::bad_request(format!(
                "container {cn} is not valid for pod {pod_name}"
            ))),
            None if names.len() == 1 => Ok(names[0].to_string()),
            None => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                names.join(" ")
            ))),
        }
    }
}

/// A container's log as this node's kubelet serves it, in the kubelet's words when there is none.
pub fn container_logs(c: &Cluster, pod: &Value, q: &LogQuery) -> Result<String, ApiError> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let container = q.container(pod)?;
    let status = pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == container.as_str());
    let lines = match c.logs.read(ns, name, &container, q.previous) {
        Some(lines) => lines,
        None if q.previous => {
            return Err(ApiError::bad_request(format!(
                "previous terminated container \"{container}\" in pod \"{name}\" not found"
            )));
        }
        None => {
            let waiting = status
                .and_then(|s| s["state"]["waiting"]["reason"].as_str())
                .unwrap_or("ContainerCreating");
            let why = match waiting {
                "ErrImagePull" | "ImagePullBackOff" => "trying and failing to pull image",
                "InvalidImageName" => "InvalidImageName",
                other => other,
            };
            return Err(ApiError::bad_request(format!(
                "container \"{container}\" in pod \"{name}\" is waiting to start: {why}"
            )));
        }
    };
    let start = lines
        .len()
        .saturating_sub(q.tail_lines.unwrap_or(usize::MAX));
    let mut text = lines[start..].join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    Ok(text)
}
