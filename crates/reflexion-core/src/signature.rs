//! Failure signatures: the key under which incidents are de-duplicated and strategies are learned.
//!
//! A signature is a failure family plus discriminators that change which fix is right: a tag that does not exist
//! and a registry that refuses credentials are both `ImagePullBackOff`, but only the first is fixed by a tag.

use crate::classify::{Failure, FailureKind};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Signature {
    pub kind: FailureKind,
    pub cause: String,
}

impl Signature {
    pub fn of(failure: &Failure) -> Self {
        let cause = match failure.kind {
            FailureKind::InvalidImageName => "invalid_reference",
            FailureKind::ImagePull => image_pull_cause(&failure.reason, &failure.message),
            FailureKind::OomKilled => "memory_limit",
            FailureKind::CrashLoop => {
                return Self {
                    kind: failure.kind,
                    cause: crash_cause(failure),
                };
            }
            FailureKind::ConfigError => config_cause(&failure.reason, &failure.message),
            FailureKind::Unschedulable => unschedulable_cause(&failure.message),
            FailureKind::Evicted => eviction_cause(&failure.message),
            FailureKind::NotReady => "readiness_probe",
        };
        Self {
            kind: failure.kind,
            cause: cause.to_string(),
        }
    }

    /// The signature class strategies are learned for (`image_pull/not_found`).
    pub fn class(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.cause)
    }
}

/// Exit codes discriminate crashes: 1 (application error), 127 (command not found), 139 (segfault), ...
fn crash_cause(f: &Failure) -> String {
    if f.message.contains(crate::classify::LIVENESS_KILL) {
        return "liveness_probe".into();
    }
    if f.message.contains("StartError") {
        return "start_error".into();
    }
    f.exit_code
        .map(|c| format!("exit_{c}"))
        .unwrap_or_else(|| "exit_unknown".into())
}

fn config_cause(reason: &str, message: &str) -> &'static str {
    if reason == "RunContainerError" {
        "run_container_error"
    } else if reason.ends_with("HookError") {
        "lifecycle_hook"
    } else if message.starts_with("secret ") {
        "missing_secret"
    } else if message.starts_with("configmap ") {
        "missing_configmap"
    } else if message.starts_with("couldn't find key") {
        "missing_key"
    } else {
        "other"
    }
}

fn eviction_cause(message: &str) -> &'static str {
    if message.contains("low on resource: memory") {
        "node_memory_pressure"
    } else if message.contains("ephemeral-storage") {
        "ephemeral_storage"
    } else {
        "other"
    }
}

fn unschedulable_cause(message: &str) -> &'static str {
    if message.contains("Insufficient memory") {
        "insufficient_memory"
    } else if message.contains("Insufficient cpu") {
        "insufficient_cpu"
    } else if message.contains("node affinity/selector") {
        "node_selector"
    } else if message.contains("untolerated taint") {
        "taint"
    } else if message.contains("PersistentVolumeClaim") || message.contains("persistentvolumeclaim")
    {
        "volume_claim"
    } else {
        "other"
    }
}

fn image_pull_cause(reason: &str, message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if reason == "ErrImageNeverPull" {
        "never_pull"
    } else if m.contains("pull access denied")
        || m.contains("unauthorized")
        || m.contains("authorization failed")
    {
        // Registries answer a missing repository with the same "access denied" as a missing credential.
        "access_denied"
    } else if m.contains("not found") || m.contains("manifest unknown") {
        "not_found"
    } else if m.contains("no such host")
        || m.contains("i/o timeout")
        || m.contains("connection refused")
        || m.contains("tls")
    {
        "registry_unreachable"
    } else {
        "unknown"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(kind: FailureKind, reason: &str, message: &str) -> Failure {
        Failure {
            kind,
            reason: reason.into(),
            container: "c".into(),
            init_container: false,
            image: "nginx:x".into(),
            message: message.into(),
            exit_code: None,
        }
    }

    #[test]
    fn other_families_discriminate_too() {
        let with_code = |code: Option<i32>, message: &str| Failure {
            exit_code: code,
            ..failure(FailureKind::CrashLoop, "CrashLoopBackOff", message)
        };
        let cases = [
            (
                with_code(
                    Some(1),
                    "container c keeps exiting, last exit code 1 (Error)",
                ),
                "crash_loop/exit_1",
            ),
            (
                with_code(Some(127), "last exit code 127 (Error)"),
                "crash_loop/exit_127",
            ),
            (
                with_code(Some(128), "last exit code 128 (StartError): exec: \"/app\""),
                "crash_loop/start_error",
            ),
            (
                with_code(
                    Some(137),
                    "container c keeps being restarted by its liveness probe, last exit code 137 (Error): Liveness probe failed: x",
                ),
                "crash_loop/liveness_probe",
            ),
            (
                with_code(None, "no exit recorded"),
                "crash_loop/exit_unknown",
            ),
            (
                failure(FailureKind::OomKilled, "OOMKilled", "x"),
                "oom_killed/memory_limit",
            ),
            (
                failure(
                    FailureKind::ConfigError,
                    "CreateContainerConfigError",
                    "secret \"db\" not found",
                ),
                "config_error/missing_secret",
            ),
            (
                failure(
                    FailureKind::ConfigError,
                    "CreateContainerConfigError",
                    "configmap \"cfg\" not found",
                ),
                "config_error/missing_configmap",
            ),
            (
                failure(
                    FailureKind::ConfigError,
                    "CreateContainerConfigError",
                    "couldn't find key password in Secret default/db",
                ),
                "config_error/missing_key",
            ),
            (
                failure(
                    FailureKind::Unschedulable,
                    "Unschedulable",
                    "0/1 nodes are available: 1 Insufficient memory.",
                ),
                "unschedulable/insufficient_memory",
            ),
            (
                failure(
                    FailureKind::Unschedulable,
                    "Unschedulable",
                    "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.",
                ),
                "unschedulable/node_selector",
            ),
            (
                failure(
                    FailureKind::Unschedulable,
                    "Unschedulable",
                    "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims.",
                ),
                "unschedulable/volume_claim",
            ),
        ];
        for (f, want) in cases {
            assert_eq!(Signature::of(&f).class(), want, "{}", f.message);
        }
    }

    #[test]
    fn signatures_discriminate_causes() {
        let cases = [
            (
                FailureKind::ImagePull,
                "ErrImagePull",
                "rpc error: code = NotFound desc = ... docker.io/library/nginx:x: not found",
                "image_pull/not_found",
            ),
            (
                FailureKind::ImagePull,
                "ErrImagePull",
                "manifest unknown: manifest unknown",
                "image_pull/not_found",
            ),
            (
                FailureKind::ImagePull,
                "ImagePullBackOff",
                "pull access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed",
                "image_pull/access_denied",
            ),
            (
                FailureKind::ImagePull,
                "ErrImagePull",
                "401 Unauthorized",
                "image_pull/access_denied",
            ),
            (
                FailureKind::ImagePull,
                "ErrImagePull",
                "dial tcp: lookup registry.example: no such host",
                "image_pull/registry_unreachable",
            ),
            (
                FailureKind::ImagePull,
                "ImagePullBackOff",
                "Back-off pulling image \"nginx:x\"",
                "image_pull/unknown",
            ),
            (
                FailureKind::ImagePull,
                "ErrImageNeverPull",
                "Container image \"nginx:x\" is not present with pull policy of Never",
                "image_pull/never_pull",
            ),
            (
                FailureKind::InvalidImageName,
                "InvalidImageName",
                "couldn't parse image name",
                "invalid_image_name/invalid_reference",
            ),
        ];
        for (kind, reason, message, want) in cases {
            assert_eq!(
                Signature::of(&failure(kind, reason, message)).class(),
                want,
                "{message}"
            );
        }
    }

    #[test]
    fn err_image_pull_and_back_off_share_a_signature() {
        let a = Signature::of(&failure(
            FailureKind::ImagePull,
            "ErrImagePull",
            "x: not found",
        ));
        let b = Signature::of(&failure(
            FailureKind::ImagePull,
            "ImagePullBackOff",
            "x: not found",
        ));
        assert_eq!(a, b);
    }
}
