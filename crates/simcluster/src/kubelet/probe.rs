//! Liveness and readiness probes against what the container's process serves.

use super::Running;
use crate::process::Program;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Run the container's probes when due. Returns an exit if the liveness probe killed the container.
pub(super) fn probe(
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
    // Without a readiness probe a running container is ready — but one that exits at once (`sh -c
    // nonexistent_command`) is gone before the kubelet's next look, and is never reported Ready, not for an instant.
    let exits_at_once = matches!(r.program.outcome,
        crate::process::Outcome::Exits { after, .. } if after <= crate::shell::IMMEDIATE);
    if readiness.is_null() && !exits_at_once {
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
