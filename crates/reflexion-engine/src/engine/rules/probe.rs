//! Probes that fail: a liveness probe that gets the container killed, a readiness probe that never passes. Point
//! the failing probe at what the container serves — the other probe's endpoint, the probed path on the declared
//! port, the root path, a TCP check of that port — skipping every handler the evidence shows failing, and never
//! remove a probe.

use crate::engine::{Engine, Plan, Planned};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use reflexion_core::classify::PodEvent;
use reflexion_core::owner::WorkloadRef;
use reflexion_core::strategy::PlanSource;
use reflexion_core::{Action, Failure, ProbeHandler, ProbeKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the evidence says about one probe handler of one container: it failed (and how), or it passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(in crate::engine) struct ProbeResult {
    pub container: String,
    pub probe: ProbeKind,
    pub handler: ProbeHandler,
    pub passing: bool,
    /// The kubelet's probe output for a failure (`HTTP probe failed with statuscode: 404`), or why it passes.
    pub how: String,
}

/// The probe results a pod's status and events prove. A readiness probe fails when its `Unhealthy` events show
/// and the container is not Ready, and passes when the container is Ready; a liveness probe fails when its events
/// show, and passes once the container has run longer than the probe needs to kill it without one. Events do not
/// name the container, so only a probe kind exactly one container has is judged.
pub(in crate::engine) fn observe(
    pod: &Pod,
    events: &[PodEvent],
    now: Timestamp,
) -> Vec<ProbeResult> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default();
    let last_failure = |prefix: &str| {
        events
            .iter()
            .rev()
            .find(|e| e.reason == "Unhealthy" && e.message.starts_with(prefix))
            .map(|e| {
                e.message[prefix.len()..]
                    .trim_start_matches(':')
                    .trim()
                    .to_string()
            })
    };
    let mut out = Vec::new();
    for kind in [ProbeKind::Liveness, ProbeKind::Readiness] {
        let with: Vec<Value> = spec
            .containers
            .iter()
            .filter_map(|c| serde_json::to_value(c).ok())
            .filter(|c| c[kind.field()].is_object())
            .collect();
        let [container] = with.as_slice() else {
            continue;
        };
        let name = container["name"].as_str().unwrap_or_default();
        let Some(handler) = handler_of(&container[kind.field()], container) else {
            continue;
        };
        let status = statuses.iter().find(|s| s.name == name);
        let ready = status.is_some_and(|s| s.ready);
        let running_secs = status
            .and_then(|s| s.state.as_ref()?.running.as_ref()?.started_at.as_ref())
            .map(|t| now.as_second().saturating_sub(t.0.as_second()));
        let probe = &container[kind.field()];
        let kills_after = probe["initialDelaySeconds"].as_i64().unwrap_or(0)
            + probe["periodSeconds"].as_i64().unwrap_or(10)
                * probe["failureThreshold"].as_i64().unwrap_or(3);
        let (passing, how) = match (kind, last_failure(probe_prefix(kind))) {
            (ProbeKind::Readiness, Some(how)) if !ready => (false, how),
            (ProbeKind::Readiness, _) if ready => (true, "the container is Ready".to_string()),
            (ProbeKind::Liveness, Some(how)) => (false, how),
            (ProbeKind::Liveness, None) if running_secs.is_some_and(|s| s > kills_after) => (
                true,
                format!(
                    "the container has run {}s without a failure",
                    running_secs.unwrap_or(0)
                ),
            ),
            _ => continue,
        };
        out.push(ProbeResult {
            container: name.to_string(),
            probe: kind,
            handler,
            passing,
            how,
        });
    }
    out
}

fn probe_prefix(kind: ProbeKind) -> &'static str {
    match kind {
        ProbeKind::Liveness => "Liveness probe failed",
        ProbeKind::Readiness => "Readiness probe failed",
    }
}

fn other(kind: ProbeKind) -> ProbeKind {
    match kind {
        ProbeKind::Liveness => ProbeKind::Readiness,
        ProbeKind::Readiness => ProbeKind::Liveness,
    }
}

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

/// The handlers to try for one probe, most evidence first, without the current one and without any handler the
/// evidence shows failing (for either probe: a path readiness fails on will not keep liveness passing).
pub(in crate::engine) fn probe_candidates(
    container: &Value,
    kind: ProbeKind,
    known: &[ProbeResult],
) -> Vec<ProbeHandler> {
    let Some(current) = handler_of(&container[kind.field()], container) else {
        return Vec::new();
    };
    let name = container["name"].as_str().unwrap_or_default();
    let failing: Vec<&ProbeHandler> = known
        .iter()
        .filter(|r| !r.passing && r.container == name)
        .map(|r| &r.handler)
        .collect();
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
    // The other probe's endpoint: what the container answers on, as far as anyone wrote down.
    if let Some(h) = handler_of(&container[other(kind).field()], container) {
        out.push(h);
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
        if h != current && !failing.contains(&&h) && !unique.contains(&h) {
            unique.push(h);
        }
    }
    unique
}

impl Engine {
    /// Point the failing probe of `kind` at the next candidate the evidence and this incident's trials leave.
    pub(super) async fn plan_probe(
        &self,
        failure: &Failure,
        target: &WorkloadRef,
        kind: ProbeKind,
        message: &str,
        known: &[ProbeResult],
        tried: &[Action],
    ) -> Planned {
        let (field, what) = match kind {
            ProbeKind::Liveness => ("liveness", "the kubelet kills container"),
            ProbeKind::Readiness => ("readiness", "never Ready: container"),
        };
        let container = match self
            .scope
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
                    suggestion: format!("check the {field} probe by hand"),
                };
            }
        };
        let next = probe_candidates(&container, kind, known)
            .into_iter()
            .find(|h| {
                !tried.iter().any(
                    |a| matches!(a, Action::SetProbe { handler, probe, .. } if handler == h && *probe == kind),
                )
            });
        let Some(handler) = next else {
            let failing: Vec<String> = known
                .iter()
                .filter(|r| !r.passing)
                .map(|r| format!("{} ({})", describe(&r.handler), r.how))
                .collect();
            return Planned::Escalate {
                diagnosis: format!(
                    "the {field} probe of container {} of {target} fails ({message}) and no port or path the container declares is left to try; failing: {}",
                    failure.container,
                    if failing.is_empty() {
                        "none recorded".into()
                    } else {
                        failing.join(", ")
                    }
                ),
                suggestion: format!(
                    "point the {field} probe at an endpoint the application serves (never remove it)"
                ),
            };
        };
        let action = Action::SetProbe {
            target: target.clone(),
            container: failure.container.clone(),
            probe: kind,
            handler: handler.clone(),
        };
        let probe = &container[kind.field()];
        let other_field = match other(kind) {
            ProbeKind::Liveness => "liveness",
            ProbeKind::Readiness => "readiness",
        };
        let passing = known.iter().any(|r| r.passing && r.handler == handler);
        let (template, why) = match &handler {
            h if handler_of(&container[other(kind).field()], &container).as_ref() == Some(h) => (
                format!("set_probe:{other_field}_endpoint"),
                format!(
                    "the {other_field} probe's endpoint{}",
                    if passing { ", which passes" } else { "" }
                ),
            ),
            ProbeHandler::HttpGet { path, .. } if probe["httpGet"]["path"] == path.as_str() => (
                "set_probe:declared_port".to_string(),
                "the same path on the port the container declares".to_string(),
            ),
            ProbeHandler::HttpGet { .. } => (
                "set_probe:root_path".to_string(),
                "the root path of the port the container serves".to_string(),
            ),
            ProbeHandler::TcpSocket { .. } => (
                "set_probe:tcp_served_port".to_string(),
                "a TCP check of the port the container serves".to_string(),
            ),
        };
        let skipped: Vec<String> = known
            .iter()
            .filter(|r| !r.passing)
            .map(|r| describe(&r.handler))
            .collect();
        let skipped = if skipped.is_empty() {
            String::new()
        } else {
            format!(
                " (skipping {}, which the evidence shows failing)",
                skipped.join(", ")
            )
        };
        Planned::Plan(Box::new(Plan {
            action,
            source: PlanSource::Rules,
            rationale: format!(
                "{what} {} because its {field} probe fails ({message}); the probe now checks {why}, with its timings kept{skipped}",
                failure.container
            ),
            template,
            description: format!(
                "Point a failing {field} probe at what the container serves (never remove it)"
            ),
            llm: Value::Null,
            payload: None,
            proposal: None,
        }))
    }
}

fn describe(h: &ProbeHandler) -> String {
    match h {
        ProbeHandler::HttpGet { path, port } => format!("{path} on port {port}"),
        ProbeHandler::TcpSocket { port } => format!("TCP port {port}"),
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

    fn failing(probe: ProbeKind, handler: ProbeHandler) -> ProbeResult {
        ProbeResult {
            container: "web".into(),
            probe,
            handler,
            passing: false,
            how: "HTTP probe failed with statuscode: 404".into(),
        }
    }

    #[test]
    fn candidates_follow_the_evidence() {
        let both = json!({"name": "web", "ports": [{"containerPort": 80}],
            "livenessProbe": {"httpGet": {"path": "/alive", "port": 80}},
            "readinessProbe": {"httpGet": {"path": "/ready-now", "port": 80}}});
        let cases = [
            // The seed-like case: nginx declares 80, the probe asks 8080.
            (
                json!({"name": "web", "ports": [{"containerPort": 80}], "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}}}),
                ProbeKind::Liveness,
                vec![],
                vec![
                    http("/healthz", 80),
                    http("/", 80),
                    ProbeHandler::TcpSocket { port: 80 },
                ],
            ),
            // The readiness probe's endpoint is the first choice for liveness...
            (
                json!({"name": "web", "ports": [{"containerPort": 8080}], "livenessProbe": {"httpGet": {"path": "/live", "port": 8080}},
                       "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}}}),
                ProbeKind::Liveness,
                vec![],
                vec![
                    http("/ready", 8080),
                    http("/", 8080),
                    ProbeHandler::TcpSocket { port: 8080 },
                ],
            ),
            // ...unless the evidence shows it failing: both probes wrong.
            (
                both.clone(),
                ProbeKind::Liveness,
                vec![failing(ProbeKind::Readiness, http("/ready-now", 80))],
                vec![http("/", 80), ProbeHandler::TcpSocket { port: 80 }],
            ),
            // Readiness gets the same candidates, and skips the path liveness fails on.
            (
                both.clone(),
                ProbeKind::Readiness,
                vec![failing(ProbeKind::Liveness, http("/alive", 80))],
                vec![http("/", 80), ProbeHandler::TcpSocket { port: 80 }],
            ),
            (
                both,
                ProbeKind::Readiness,
                vec![],
                vec![
                    http("/alive", 80),
                    http("/", 80),
                    ProbeHandler::TcpSocket { port: 80 },
                ],
            ),
            // Named ports resolve.
            (
                json!({"name": "web", "ports": [{"name": "web", "containerPort": 80}], "livenessProbe": {"tcpSocket": {"port": 81}}}),
                ProbeKind::Liveness,
                vec![],
                vec![ProbeHandler::TcpSocket { port: 80 }],
            ),
            // Several declared ports and the probed one is not among them: nothing is certain but the other probe.
            (
                json!({"name": "web", "ports": [{"containerPort": 80}, {"containerPort": 443}], "livenessProbe": {"httpGet": {"path": "/", "port": 8080}}}),
                ProbeKind::Liveness,
                vec![],
                vec![],
            ),
            // No such probe: nothing to fix here.
            (
                json!({"name": "web", "ports": [{"containerPort": 80}]}),
                ProbeKind::Readiness,
                vec![],
                vec![],
            ),
        ];
        for (container, kind, known, want) in cases {
            assert_eq!(
                probe_candidates(&container, kind, &known),
                want,
                "{container} {kind:?}"
            );
        }
    }

    #[test]
    fn probe_results_come_from_status_and_events() {
        let now: Timestamp = "2026-11-30T12:10:00Z"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let pod = |ready: bool, started: &str| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "p"},
                "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}],
                    "livenessProbe": {"httpGet": {"path": "/alive", "port": 80}, "periodSeconds": 5, "failureThreshold": 3},
                    "readinessProbe": {"httpGet": {"path": "/ready-now", "port": 80}}}]},
                "status": {"phase": "Running", "containerStatuses": [{"name": "web", "image": "nginx", "imageID": "",
                    "ready": ready, "restartCount": 0, "state": {"running": {"startedAt": started}}}]}}))
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let ev = |message: &str| PodEvent {
            type_: "Warning".into(),
            reason: "Unhealthy".into(),
            message: message.into(),
            count: 3,
        };
        let live = ev("Liveness probe failed: HTTP probe failed with statuscode: 404");
        let ready =
            ev("Readiness probe failed: Get \"http://10.0.0.5:80/ready-now\": connection refused");
        // Both fail.
        let got = observe(
            &pod(false, "2026-11-30T12:09:50Z"),
            &[live.clone(), ready.clone()],
            now,
        );
        assert_eq!(
            got,
            vec![
                failing(ProbeKind::Liveness, http("/alive", 80)),
                ProbeResult {
                    how: "Get \"http://10.0.0.5:80/ready-now\": connection refused".into(),
                    ..failing(ProbeKind::Readiness, http("/ready-now", 80))
                },
            ]
        );
        // Ready, running for 10 minutes with no liveness failure: both pass.
        let got = observe(&pod(true, "2026-11-30T12:00:00Z"), &[ready], now);
        assert_eq!(
            got.iter().map(|r| r.passing).collect::<Vec<_>>(),
            vec![true, true]
        );
        // Running 10 s: too early to say liveness passes; not Ready and no readiness event: nothing known.
        assert!(observe(&pod(false, "2026-11-30T12:09:50Z"), &[], now).is_empty());
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
