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
    pub cause: Cause,
}

/// What discriminates failures of one family. Stored and shown as its snake_case name (`not_found`, `exit_127`):
/// signatures persisted by earlier versions read back unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Cause {
    // image_pull, invalid_image_name
    InvalidReference,
    NeverPull,
    AccessDenied,
    NotFound,
    RegistryUnreachable,
    Unknown,
    // oom_killed
    MemoryLimit,
    // crash_loop
    LivenessProbe,
    StartError,
    Exit(i32),
    ExitUnknown,
    // config_error
    RunContainerError,
    LifecycleHook,
    MissingSecret,
    MissingConfigmap,
    MissingKey,
    // unschedulable
    InsufficientMemory,
    InsufficientCpu,
    NodeSelector,
    Taint,
    VolumeClaim,
    // evicted
    NodeMemoryPressure,
    EphemeralStorage,
    // not_ready
    ReadinessProbe,
    // no_endpoints
    SelectorMismatch,
    TargetPort,
    // failed_create
    Quota,
    PodSecurity,
    ServiceAccount,
    // stalled
    ProgressDeadline,
    ActiveDeadline,
    /// Anything a family's discriminators do not name.
    Other,
}

const NAMED: [(Cause, &str); 31] = [
    (Cause::InvalidReference, "invalid_reference"),
    (Cause::NeverPull, "never_pull"),
    (Cause::AccessDenied, "access_denied"),
    (Cause::NotFound, "not_found"),
    (Cause::RegistryUnreachable, "registry_unreachable"),
    (Cause::Unknown, "unknown"),
    (Cause::MemoryLimit, "memory_limit"),
    (Cause::LivenessProbe, "liveness_probe"),
    (Cause::StartError, "start_error"),
    (Cause::ExitUnknown, "exit_unknown"),
    (Cause::RunContainerError, "run_container_error"),
    (Cause::LifecycleHook, "lifecycle_hook"),
    (Cause::MissingSecret, "missing_secret"),
    (Cause::MissingConfigmap, "missing_configmap"),
    (Cause::MissingKey, "missing_key"),
    (Cause::InsufficientMemory, "insufficient_memory"),
    (Cause::InsufficientCpu, "insufficient_cpu"),
    (Cause::NodeSelector, "node_selector"),
    (Cause::Taint, "taint"),
    (Cause::VolumeClaim, "volume_claim"),
    (Cause::NodeMemoryPressure, "node_memory_pressure"),
    (Cause::EphemeralStorage, "ephemeral_storage"),
    (Cause::ReadinessProbe, "readiness_probe"),
    (Cause::SelectorMismatch, "selector_mismatch"),
    (Cause::TargetPort, "target_port"),
    (Cause::Quota, "quota"),
    (Cause::PodSecurity, "pod_security"),
    (Cause::ServiceAccount, "service_account"),
    (Cause::ProgressDeadline, "progress_deadline"),
    (Cause::ActiveDeadline, "active_deadline"),
    (Cause::Other, "other"),
];

impl Cause {
    /// The container's command could not be started: not in the image (exit 127) or refused by the runtime.
    pub fn is_command_not_found(self) -> bool {
        matches!(self, Cause::Exit(127 | 128) | Cause::StartError)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Exit(code) => write!(f, "exit_{code}"),
            other => {
                let name = NAMED
                    .iter()
                    .find(|(c, _)| c == other)
                    .map_or("other", |(_, n)| n);
                f.write_str(name)
            }
        }
    }
}

impl From<Cause> for String {
    fn from(c: Cause) -> String {
        c.to_string()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown failure cause {0:?}")]
pub struct UnknownCause(pub String);

impl std::str::FromStr for Cause {
    type Err = UnknownCause;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some((c, _)) = NAMED.iter().find(|(_, n)| *n == s) {
            return Ok(*c);
        }
        s.strip_prefix("exit_")
            .and_then(|code| code.parse().ok())
            .map(Cause::Exit)
            .ok_or_else(|| UnknownCause(s.to_string()))
    }
}

impl TryFrom<String> for Cause {
    type Error = UnknownCause;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl Signature {
    pub fn new(kind: FailureKind, cause: Cause) -> Self {
        Self { kind, cause }
    }

    pub fn of(failure: &Failure) -> Self {
        let cause = match failure.kind {
            FailureKind::InvalidImageName => Cause::InvalidReference,
            FailureKind::ImagePull => image_pull_cause(&failure.reason, &failure.message),
            FailureKind::OomKilled => Cause::MemoryLimit,
            FailureKind::CrashLoop => crash_cause(failure),
            FailureKind::ConfigError => config_cause(&failure.reason, &failure.message),
            FailureKind::Unschedulable => unschedulable_cause(&failure.message),
            FailureKind::Evicted => eviction_cause(&failure.message),
            FailureKind::NotReady => Cause::ReadinessProbe,
            FailureKind::NoEndpoints if failure.reason == crate::service::TARGET_PORT_NOT_FOUND => {
                Cause::TargetPort
            }
            FailureKind::NoEndpoints => Cause::SelectorMismatch,
            FailureKind::Stalled if failure.reason == crate::stalled::ACTIVE_DEADLINE => {
                Cause::ActiveDeadline
            }
            FailureKind::Stalled => Cause::ProgressDeadline,
            FailureKind::FailedCreate => {
                match crate::refusal::Refusal::of(&failure.message).cause() {
                    "quota" => Cause::Quota,
                    "pod_security" => Cause::PodSecurity,
                    "service_account" => Cause::ServiceAccount,
                    _ => Cause::Other,
                }
            }
        };
        Self::new(failure.kind, cause)
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
fn crash_cause(f: &Failure) -> Cause {
    if f.message.contains(crate::classify::LIVENESS_KILL) {
        return Cause::LivenessProbe;
    }
    if f.message.contains("StartError") {
        return Cause::StartError;
    }
    f.exit_code.map_or(Cause::ExitUnknown, Cause::Exit)
}

fn config_cause(reason: &str, message: &str) -> Cause {
    if reason == "RunContainerError" {
        Cause::RunContainerError
    } else if reason.ends_with("HookError") {
        Cause::LifecycleHook
    } else if message.starts_with("secret ") {
        Cause::MissingSecret
    } else if message.starts_with("configmap ") {
        Cause::MissingConfigmap
    } else if message.starts_with("couldn't find key") {
        Cause::MissingKey
    } else {
        Cause::Other
    }
}

fn eviction_cause(message: &str) -> Cause {
    if message.contains("low on resource: memory") {
        Cause::NodeMemoryPressure
    } else if message.contains("ephemeral-storage") {
        Cause::EphemeralStorage
    } else {
        Cause::Other
    }
}

fn unschedulable_cause(message: &str) -> Cause {
    if message.contains("Insufficient memory") {
        Cause::InsufficientMemory
    } else if message.contains("Insufficient cpu") {
        Cause::InsufficientCpu
    } else if message.contains("node affinity/selector") {
        Cause::NodeSelector
    } else if message.contains("untolerated taint") {
        Cause::Taint
    } else if message.contains("PersistentVolumeClaim") || message.contains("persistentvolumeclaim")
    {
        Cause::VolumeClaim
    } else {
        Cause::Other
    }
}

fn image_pull_cause(reason: &str, message: &str) -> Cause {
    let m = message.to_ascii_lowercase();
    if reason == "ErrImageNeverPull" {
        Cause::NeverPull
    } else if m.contains("pull access denied")
        || m.contains("unauthorized")
        || m.contains("authorization failed")
    {
        // Registries answer a missing repository with the same "access denied" as a missing credential.
        Cause::AccessDenied
    } else if m.contains("not found") || m.contains("manifest unknown") {
        Cause::NotFound
    } else if m.contains("no such host")
        || m.contains("i/o timeout")
        || m.contains("connection refused")
        || m.contains("tls")
    {
        Cause::RegistryUnreachable
    } else {
        Cause::Unknown
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

    #[test]
    fn causes_read_back_as_they_are_written() {
        for (c, name) in NAMED {
            assert_eq!(c.to_string(), name);
            assert_eq!(name.parse::<Cause>(), Ok(c));
        }
        for code in [0, 1, 127, 137, 255] {
            let c = Cause::Exit(code);
            assert_eq!(c.to_string().parse::<Cause>(), Ok(c));
        }
        let sig = Signature::new(FailureKind::CrashLoop, Cause::Exit(127));
        let stored = serde_json::to_value(&sig).ok();
        assert_eq!(
            stored.as_ref().map(|v| v["cause"].clone()),
            Some("exit_127".into())
        );
        let read = stored.and_then(|v| serde_json::from_value::<Signature>(v).ok());
        assert_eq!(read, Some(sig));
        for bad in ["", "exit_", "exit_x", "Not_Found", "nope"] {
            assert!(bad.parse::<Cause>().is_err(), "{bad}");
        }
        assert!(Cause::Exit(127).is_command_not_found());
        assert!(!Cause::Exit(1).is_command_not_found());
    }
}
