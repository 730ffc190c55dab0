//! Fault injection: the API server answers chosen requests with an error — before it writes, or after it has
//! written (the client cannot tell whether its write landed) — or late, as a real API server does when etcd is slow
//! or it is overloaded. Set at run time on `/simcluster/faults` (a path no real API server serves), so a test can aim
//! at one step of a remediation. Dry runs are never hit: a fault aims at the write itself.

use crate::error::ApiError;
use axum::http::Method;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

/// Most faults pending at once.
const MAX_FAULTS: usize = 64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// `get`, `list`, `watch`, `create`, `update`, `patch` or `delete`. A `watch` fault also closes the watches of
    /// the resource that are open, as an API server restart does: their clients watch again (and meet the fault).
    pub verb: String,
    /// The resource's plural name, e.g. `deployments`.
    pub resource: String,
    /// Only requests on this object (any object when absent).
    #[serde(default)]
    pub name: Option<String>,
    /// Only requests on this subresource (`status`, `scale`); absent: only the object itself.
    #[serde(default)]
    pub subresource: Option<String>,
    /// The answer's HTTP status: 500, 503, 504 or 429.
    #[serde(default = "internal_error")]
    pub status: u16,
    /// Carry the request out, then answer with the error.
    #[serde(default)]
    pub after_write: bool,
    /// Answer this many milliseconds late (a client with a shorter timeout sees a timeout).
    #[serde(default)]
    pub delay_ms: u64,
    /// How many matching requests it hits.
    #[serde(default = "once")]
    pub times: u32,
}

fn internal_error() -> u16 {
    500
}

fn once() -> u32 {
    1
}

impl Fault {
    pub fn validate(&self) -> Result<(), ApiError> {
        if ![
            "get", "list", "watch", "create", "update", "patch", "delete",
        ]
        .contains(&self.verb.as_str())
        {
            return Err(ApiError::bad_request(format!(
                "fault verb {:?}: one of get, list, watch, create, update, patch, delete",
                self.verb
            )));
        }
        if reason(self.status).is_none() {
            return Err(ApiError::bad_request(format!(
                "fault status {}: one of 500, 503, 504, 429",
                self.status
            )));
        }
        if self.times == 0 || self.times > 1000 || self.delay_ms > 120_000 {
            return Err(ApiError::bad_request(
                "fault times must be 1-1000 and delay_ms at most 120000",
            ));
        }
        Ok(())
    }

    /// The error it answers with.
    pub fn error(&self) -> ApiError {
        let reason = reason(self.status).unwrap_or("InternalError");
        ApiError::with_status(self.status, reason, "injected fault (simcluster)")
    }
}

fn reason(status: u16) -> Option<&'static str> {
    match status {
        500 => Some("InternalError"),
        503 => Some("ServiceUnavailable"),
        504 => Some("Timeout"),
        429 => Some("TooManyRequests"),
        _ => None,
    }
}

/// The verb a request is, as RBAC names it.
pub fn verb(method: &Method, named: bool, watch: bool) -> Option<&'static str> {
    match (method, named) {
        (&Method::GET, _) if watch => Some("watch"),
        (&Method::GET, true) => Some("get"),
        (&Method::GET, false) => Some("list"),
        (&Method::POST, _) => Some("create"),
        (&Method::PUT, _) => Some("update"),
        (&Method::PATCH, _) => Some("patch"),
        (&Method::DELETE, _) => Some("delete"),
        _ => None,
    }
}

#[derive(Debug)]
pub struct Faults {
    pending: Mutex<Vec<Fault>>,
    /// Resources whose open watches are to be closed.
    close_watches: tokio::sync::broadcast::Sender<String>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            pending: Mutex::default(),
            close_watches: tokio::sync::broadcast::channel(16).0,
        }
    }
}

impl Faults {
    /// Told the plural of a resource whose open watches are closed by a `watch` fault.
    pub fn watch_closings(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.close_watches.subscribe()
    }

    pub fn add(&self, fault: Fault) -> Result<(), ApiError> {
        fault.validate()?;
        if fault.verb == "watch" {
            let _ = self.close_watches.send(fault.resource.clone());
        }
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() >= MAX_FAULTS {
            return Err(ApiError::bad_request(format!(
                "at most {MAX_FAULTS} faults pending"
            )));
        }
        pending.push(fault);
        Ok(())
    }

    pub fn clear(&self) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    pub fn pending(&self) -> Vec<Fault> {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The first pending fault that hits this request, counted down (and gone after its last hit).
    pub fn hit(
        &self,
        verb: &str,
        resource: &str,
        name: Option<&str>,
        subresource: Option<&str>,
    ) -> Option<Fault> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let i = pending.iter().position(|f| {
            f.verb == verb
                && f.resource == resource
                && f.name.as_deref().is_none_or(|n| Some(n) == name)
                && f.subresource.as_deref() == subresource
        })?;
        let f = pending.get_mut(i)?;
        f.times -= 1;
        let hit = f.clone();
        if f.times == 0 {
            pending.remove(i);
        }
        Some(hit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(json: serde_json::Value) -> Fault {
        serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_fault_hits_only_its_requests_and_only_as_often_as_asked() {
        let faults = Faults::default();
        faults
            .add(fault(serde_json::json!({"verb": "patch", "resource": "deployments", "name": "web", "times": 2})))
            .unwrap_or_else(|e| panic!("{e}"));
        let cases = [
            ("get", "deployments", Some("web"), None, false),
            ("patch", "pods", Some("web"), None, false),
            ("patch", "deployments", Some("api"), None, false),
            ("patch", "deployments", Some("web"), Some("status"), false),
            ("patch", "deployments", Some("web"), None, true),
            ("patch", "deployments", Some("web"), None, true),
            ("patch", "deployments", Some("web"), None, false),
        ];
        for (verb, resource, name, sub, hits) in cases {
            assert_eq!(
                faults.hit(verb, resource, name, sub).is_some(),
                hits,
                "{verb} {resource} {name:?} {sub:?}"
            );
        }
        assert!(faults.pending().is_empty());
    }

    #[test]
    fn bad_faults_are_refused() {
        let faults = Faults::default();
        for bad in [
            serde_json::json!({"verb": "exec", "resource": "pods"}),
            serde_json::json!({"verb": "get", "resource": "pods", "delay_ms": 1_000_000}),
            serde_json::json!({"verb": "get", "resource": "pods", "status": 404}),
            serde_json::json!({"verb": "get", "resource": "pods", "times": 0}),
        ] {
            assert!(faults.add(fault(bad.clone())).is_err(), "{bad}");
        }
        assert_eq!(
            fault(serde_json::json!({"verb": "get", "resource": "pods"}))
                .error()
                .code,
            500
        );
    }
}
