//! A container killed by its own liveness probe: point the probe at what the container serves — the readiness
//! probe's endpoint, the one declared port, the root path, or a TCP check of that port — never remove it.

use crate::engine::{Engine, Plan, Planned};
use reflexion_core::owner::WorkloadRef;
use reflexion_core::{Action, Failure, ProbeHandler, ProbeKind};
use serde_json::Value;

/// Whether the evidence shows the liveness probe failing.
pub(super) fn liveness_failing(evidence: &Value) -> Option<String> {
    evidence["events"]
        .as_array()?
        .iter()
        .rev()
        .find(|e| {
            e["reason"] == "Unhealthy"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("Liveness probe failed"))
        })
        .and_then(|e| e["message"].as_str().map(String::from))
}

/// A probe's handler as written, with a named port resolved against the container's ports.
fn handler_of(probe: &Value, container: &Value) -> Option<ProbeHandler> {
    let port_of = |p: &Value| -> Option<u16> {
        match p {
            Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            Value::String(name) => container["ports"]
                .as_array()?
                .iter()
                .find(|cp| cp["name"] == name.as_str())
                .and_then(|cp| cp["containerPort"].as_u64())
                .and_then(|n| u16::try_from(n).ok()),
            _ => None,
        }
    };
    if let Some(h) = probe.get("httpGet").filter(|h| h.is_object()) {
        return Some(ProbeHandler::HttpGet {
            path: h["path"].as_str().unwrap_or("/").to_string(),
            port: port_of(&h["port"])?,
        });
    }
    if let Some(t) = probe.get("tcpSocket").filter(|t| t.is_object()) {
        return Some(ProbeHandler::TcpSocket {
            port: port_of(&t["port"])?,
        });
    }
    None
}

/// The handlers to try, most evidence first, without the current one.
pub(super) fn probe_candidates(container: &Value) -> Vec<ProbeHandler> {
    let Some(current) = handler_of(&container["livenessProbe"], container) else {
        return Vec::new();
    };
    let declared: Vec<u16> = container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["containerPort"].as_u64())
        .filter_map(|n| u16::try_from(n).ok())
        .collect();
    let (current_port, current_path) = match &current {
        ProbeHandler::HttpGet { path, port } => (*port, Some(path.clone())),
        ProbeHandler::TcpSocket { port } => (*port, None),
    };
    // The port the container serves: the probed one if declared, else the only declared one.
    let served = if declared.contains(&current_port) {
        Some(current_port)
    } else if let [only] = declared.as_slice() {
        Some(*only)
    } else {
        None
    };
    let mut out = Vec::new();
    // The readiness probe's endpoint answers whenever the pod is Ready: it is what the container serves.
    if let Some(ready) = handler_of(&container["readinessProbe"], container) {
        out.push(ready);
    }
    if let Some(port) = served {
        if let Some(path) = &current_path {
            out.push(ProbeHandler::HttpGet {
                path: path.clone(),
                port,
            });
            out.push(ProbeHandler::HttpGet {
                path: "/".into(),
                port,
            });
        }
        out.push(ProbeHandler::TcpSocket { port });
    }
    let mut unique = Vec::new();
    for h in out {
        if h != current && !unique.contains(&h) {
            unique.push(h);
        }
    }
    unique
}

impl Engine {
    pub(super) async fn plan_probe(
        &self,
        failure: &Failure,
        target: &WorkloadRef,
        message: &str,
        tried: &[Action],
    ) -> Planned {
        let container = match self
            .inner
            .cluster
            .container(target, &failure.container)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                return Planned::Escalate {
                    diagnosis: format!(
                        "cannot read container {} of {target}: {e}",
                        failure.container
                    ),
                    suggestion: "check the liveness probe by hand".into(),
                };
            }
        };
        let next = probe_candidates(&container).into_iter().find(|h| {
            !tried.iter().any(|a| {
                matches!(a, Action::SetProbe { handler, probe: ProbeKind::Liveness, .. } if handler == h)
            })
        });
        let Some(handler) = next else {
            return Planned::Escalate {
                diagnosis: format!(
                    "the liveness probe of container {} of {target} fails ({message}) and no port or path the container declares is left to try",
                    failure.container
                ),
                suggestion: "point the liveness probe at an endpoint the application serves (never remove it)".into(),
            };
        };
        let action = Action::SetProbe {
            target: target.clone(),
            container: failure.container.clone(),
            probe: ProbeKind::Liveness,
            handler: handler.clone(),
        };
        let probe = &container["livenessProbe"];
        let (template, why) = match &handler {
            h if handler_of(&container["readinessProbe"], &container).as_ref() == Some(h) => (
                "set_probe:readiness_endpoint",
                "the readiness probe's endpoint, which answers whenever the pod is Ready",
            ),
            ProbeHandler::HttpGet { path, .. } if probe["httpGet"]["path"] == path.as_str() => (
                "set_probe:declared_port",
                "the same path on the port the container declares",
            ),
            ProbeHandler::HttpGet { .. } => (
                "set_probe:root_path",
                "the root path of the port the container serves",
            ),
            ProbeHandler::TcpSocket { .. } => (
                "set_probe:tcp_served_port",
                "a TCP check of the port the container serves",
            ),
        };
        Planned::Plan(Box::new(Plan {
            action,
            source: "rules".into(),
            rationale: format!(
                "the kubelet kills container {} because its liveness probe fails ({message}); the probe now checks {why}, with its timings kept",
                failure.container
            ),
            template: template.into(),
            description:
                "Point a failing liveness probe at what the container serves (never remove it)"
                    .into(),
            llm: Value::Null,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn http(path: &str, port: u16) -> ProbeHandler {
        ProbeHandler::HttpGet {
            path: path.into(),
            port,
        }
    }

    #[test]
    fn candidates_follow_the_evidence() {
        let cases = [
            // The seed-like case: nginx declares 80, the probe asks 8080.
            (
                json!({"ports": [{"containerPort": 80}], "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}}}),
                vec![
                    http("/healthz", 80),
                    http("/", 80),
                    ProbeHandler::TcpSocket { port: 80 },
                ],
            ),
            // A readiness probe that works is the first choice.
            (
                json!({"ports": [{"containerPort": 8080}], "livenessProbe": {"httpGet": {"path": "/live", "port": 8080}},
                       "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}}}),
                vec![
                    http("/ready", 8080),
                    http("/", 8080),
                    ProbeHandler::TcpSocket { port: 8080 },
                ],
            ),
            // Named ports resolve.
            (
                json!({"ports": [{"name": "web", "containerPort": 80}], "livenessProbe": {"tcpSocket": {"port": 81}}}),
                vec![ProbeHandler::TcpSocket { port: 80 }],
            ),
            // Several declared ports and the probed one is not among them: nothing is certain but the readiness probe.
            (
                json!({"ports": [{"containerPort": 80}, {"containerPort": 443}], "livenessProbe": {"httpGet": {"path": "/", "port": 8080}}}),
                vec![],
            ),
            // No liveness probe: nothing to fix here.
            (json!({"ports": [{"containerPort": 80}]}), vec![]),
        ];
        for (container, want) in cases {
            assert_eq!(probe_candidates(&container), want, "{container}");
        }
    }

    #[test]
    fn liveness_failures_are_found_in_events() {
        let ev = json!({"events": [
            {"type": "Warning", "reason": "Unhealthy", "message": "Readiness probe failed: x"},
            {"type": "Warning", "reason": "Unhealthy", "message": "Liveness probe failed: connection refused"}
        ]});
        assert_eq!(
            liveness_failing(&ev).as_deref(),
            Some("Liveness probe failed: connection refused")
        );
        assert_eq!(liveness_failing(&json!({"events": []})), None);
    }
}
